// SPDX-License-Identifier: GPL-2.0

//! blk-mq for the local node: a tag set, a gendisk and request accessors,
//! wrapped over the C shim (`shim_blk.c`).
//!
//! C header: [`include/linux/blk-mq.h`](srctree/include/linux/blk-mq.h)
//!
//! The Rust blk-mq abstraction of 7.2 has no error completion, no per-request
//! driver data and no position/length/segment accessors, so DST wraps the C
//! API itself. The ops table is a static C table whose `queue_rq` calls
//! [`dst_rs_queue_rq`], which hands the request to the [`Driver`] (core.rs).

use core::ptr::NonNull;

use kernel::{
    error::{from_err_ptr, to_result},
    ffi::{c_int, c_uint, c_void},
    prelude::*,
    sync::Arc, //
};

use crate::{socket::Socket, sysfs::PageWriter};

/// `struct blk_mq_tag_set`, only handled by pointer.
#[repr(C)]
pub(crate) struct RawTagSet {
    _private: [u8; 0],
}

/// `struct gendisk`, only handled by pointer.
#[repr(C)]
pub(crate) struct RawDisk {
    _private: [u8; 0],
}

/// `struct request`, only handled by pointer.
#[repr(C)]
pub(crate) struct RawRequest {
    _private: [u8; 0],
}

/// Disk geometry and features decided by the handshake.
///
/// Mirrors `struct dst_disk_params` in `shim_blk.h`.
#[repr(C)]
pub(crate) struct DiskParams {
    pub(crate) size: u64,
    pub(crate) logical_block_size: u32,
    pub(crate) physical_block_size: u32,
    pub(crate) max_io_bytes: u32,
    pub(crate) queue_depth: u32,
    pub(crate) nr_hw_queues: u32,
    pub(crate) index: u32,
    pub(crate) cmd_size: u32,
    pub(crate) read_only: bool,
    pub(crate) flush: bool,
    pub(crate) fua: bool,
    pub(crate) discard: bool,
    pub(crate) write_zeroes: bool,
    /// Pages must not change while being written (the data is checksummed
    /// or authenticated before it goes out).
    pub(crate) stable_writes: bool,
}

/// What a request asks for. Mirrors `struct dst_rq_info` in `shim_blk.h`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct RqInfo {
    /// Byte offset on the device.
    pub(crate) offset: u64,
    /// Byte length.
    pub(crate) length: u32,
    /// `blk_mq_unique_tag`: queue number and tag.
    pub(crate) tag: u32,
    /// `REQ_OP_*`.
    pub(crate) op: u8,
    /// Forced unit access requested.
    pub(crate) fua: bool,
}

mod ffi {
    use super::{DiskParams, RawDisk, RawRequest, RawTagSet, RqInfo};
    use kernel::ffi::{c_int, c_uint, c_void};

    extern "C" {
        pub(super) fn dst_shim_blk_register() -> c_int;
        pub(super) fn dst_shim_blk_unregister();
        pub(super) fn dst_shim_tagset_alloc(
            p: *const DiskParams,
            driver_data: *mut c_void,
        ) -> *mut RawTagSet;
        pub(super) fn dst_shim_tagset_free(set: *mut RawTagSet);
        pub(super) fn dst_shim_disk_alloc(
            set: *mut RawTagSet,
            p: *const DiskParams,
        ) -> *mut RawDisk;
        pub(super) fn dst_shim_disk_add(disk: *mut RawDisk) -> c_int;
        pub(super) fn dst_shim_disk_del(disk: *mut RawDisk);
        pub(super) fn dst_shim_disk_put(disk: *mut RawDisk);
        pub(super) fn dst_shim_rq_pdu(rq: *mut RawRequest) -> *mut c_void;
        pub(super) fn dst_shim_rq_bvecs(
            rq: *mut RawRequest,
            out: *mut c_void,
            max: c_uint,
        ) -> c_int;
        pub(super) fn dst_shim_rq_info(rq: *mut RawRequest, info: *mut RqInfo);
        pub(super) fn dst_shim_tag_to_rq(set: *mut RawTagSet, unique_tag: u32) -> *mut RawRequest;
        pub(super) fn dst_shim_bvecs_spliceable(bv: *const c_void, n: c_uint) -> bool;
        pub(super) fn dst_shim_rq_end(rq: *mut RawRequest, err: c_int);
        pub(super) fn dst_shim_for_each_started(
            set: *mut RawTagSet,
            f: unsafe extern "C" fn(ctx: *mut c_void, rq: *mut RawRequest),
            ctx: *mut c_void,
        );
    }
}

/// The "dst" block major, registered for the module's lifetime.
///
/// # Invariants
///
/// The major is registered while this value lives; there is one per module.
pub(crate) struct Major(());

impl Major {
    /// Registers a dynamic block major named "dst".
    pub(crate) fn register() -> Result<Self> {
        // SAFETY: no preconditions; called once from module init.
        to_result(unsafe { ffi::dst_shim_blk_register() })?;
        Ok(Major(()))
    }
}

impl Drop for Major {
    fn drop(&mut self) {
        // SAFETY: registered (type invariant); every disk is gone by now
        // because the module state drops its devices first.
        unsafe { ffi::dst_shim_blk_unregister() };
    }
}

/// What the local node does with requests. Implemented by core.rs.
pub(crate) trait Driver: Send + Sync {
    /// Per-request driver data, stored in the request's PDU. All-zero bytes
    /// must be a valid value (the shim zeroes it when requests are created);
    /// it is shared between tasks, so it uses interior mutability.
    type Pdu: Sync;
    /// Takes a started request; it must be completed later exactly once,
    /// with [`Request::end`]. Must not sleep. On error the request was not
    /// kept, and the block layer ends it with the error.
    fn queue_rq(&self, rq: Request<Self>, last: bool) -> Result;
    /// Writes the value of sysfs attribute `id` (see `shim_blk.c`), without
    /// the trailing newline.
    fn sysfs_show(&self, id: u32, out: &mut dyn kernel::fmt::Write) -> kernel::fmt::Result;
}

/// A started request, owned by the driver until it is ended.
///
/// # Invariants
///
/// `rq` is a started request of a tag set whose driver is `D`, not yet ended;
/// its PDU holds a `D::Pdu`.
pub(crate) struct Request<D: Driver + ?Sized> {
    rq: NonNull<RawRequest>,
    _d: core::marker::PhantomData<D>,
}

// SAFETY: a started request may be handled and ended from any task.
unsafe impl<D: Driver + ?Sized> Send for Request<D> {}

impl<D: Driver + ?Sized> Request<D> {
    /// # Safety
    ///
    /// `rq` must satisfy the type invariant, and the caller must own it.
    unsafe fn from_raw(rq: *mut RawRequest) -> Option<Self> {
        NonNull::new(rq).map(|rq| Request {
            rq,
            _d: core::marker::PhantomData,
        })
    }

    /// Position, length, tag and op of the request.
    pub(crate) fn info(&self) -> RqInfo {
        let mut info = RqInfo::default();
        // SAFETY: the request is live (type invariant); `info` is writable.
        unsafe { ffi::dst_shim_rq_info(self.rq.as_ptr(), &mut info) };
        info
    }

    /// The driver's per-request data.
    pub(crate) fn pdu(&self) -> &D::Pdu {
        // SAFETY: the PDU area holds a `D::Pdu` (zeroed at request creation,
        // which `Driver::Pdu` requires to be valid) and lives as long as the
        // request; access is shared only (interior mutability).
        unsafe { &*ffi::dst_shim_rq_pdu(self.rq.as_ptr()).cast::<D::Pdu>() }
    }

    /// Sends the request's data, described in `segs` by [`Request::bvecs`],
    /// in one go; without copying when every page may be spliced (file
    /// system metadata in slab memory may not).
    pub(crate) fn send_data(&self, sock: &Socket, segs: &SegmentBuf, more: bool) -> Result {
        let vecs = segs.as_slice();
        // SAFETY: `vecs` is a valid array of `vecs.len()` bio_vecs.
        let splice =
            unsafe { ffi::dst_shim_bvecs_spliceable(vecs.as_ptr().cast(), vecs.len() as c_uint) };
        // SAFETY: the pages belong to this request, which stays live (and,
        // with stable writes, unchanged) until its reply, after the socket
        // has sent them.
        unsafe { sock.send_pages(vecs, more, splice) }
    }

    /// Receives the request's data (a READ reply) straight into its pages,
    /// described in `segs` by [`Request::bvecs`].
    pub(crate) fn recv_data(&self, sock: &Socket, segs: &SegmentBuf) -> Result {
        // SAFETY: the caller owns the request (it is in flight and matched
        // to this reply); nobody else uses its pages until it ends.
        unsafe { sock.recv_pages(segs.as_slice()) }
    }

    /// Describes the request's data segments in `out` (whose capacity must
    /// hold them: the disk's max segments plus one) for the crypto
    /// wrappers. The pages stay valid until the request ends.
    pub(crate) fn bvecs(&self, out: &mut SegmentBuf) -> Result {
        let out = &mut out.0;
        out.clear();
        let cap = out.capacity();
        // SAFETY: the request is live; `out` has room for `cap` entries,
        // which the shim never exceeds, and it returns how many it wrote.
        let n = unsafe {
            ffi::dst_shim_rq_bvecs(self.rq.as_ptr(), out.as_mut_ptr().cast(), cap as c_uint)
        };
        let n = usize::try_from(n).map_err(|_| Error::from_errno(n))?;
        if n > cap {
            return Err(EINVAL);
        }
        // SAFETY: the shim initialised the first `n` entries, `n <= cap`.
        unsafe { out.inc_len(n) };
        Ok(())
    }

    /// Ends the request with `err` (0 for success). Consumes the handle.
    pub(crate) fn end(self, err: c_int) {
        // SAFETY: we own the started request (type invariant) and give it up.
        unsafe { ffi::dst_shim_rq_end(self.rq.as_ptr(), err) };
    }
}

/// Room for the data segments of one request ([`Request::bvecs`]).
pub(crate) struct SegmentBuf(KVec<kernel::bindings::bio_vec>);

// SAFETY: a `bio_vec` only describes pages (pointer, offset, length); the
// buffer owns no page and may be filled and read from any thread. Whoever
// uses the pages it names must own them (see `crypto::Segments`).
unsafe impl Send for SegmentBuf {}
// SAFETY: see `Send`; shared access only reads the descriptors.
unsafe impl Sync for SegmentBuf {}

impl SegmentBuf {
    /// Room for `n` segments.
    pub(crate) fn new(n: usize) -> Result<Self> {
        Ok(SegmentBuf(KVec::with_capacity(n, GFP_KERNEL)?))
    }

    /// The segments last described.
    pub(crate) fn as_slice(&self) -> &[kernel::bindings::bio_vec] {
        &self.0
    }
}

/// A blk-mq tag set whose requests go to driver `D`.
///
/// # Invariants
///
/// `set` was allocated by `dst_shim_tagset_alloc` with `driver_data` =
/// `driver`, which is kept alive (one `Arc` reference, from `into_raw`) until
/// the set is freed in `Drop`.
pub(crate) struct TagSet<D: Driver> {
    set: NonNull<RawTagSet>,
    driver: *const D,
}

// SAFETY: the tag set may be used and freed from any task; `D: Send + Sync`.
unsafe impl<D: Driver> Send for TagSet<D> {}
// SAFETY: shared use only looks requests up, which blk-mq makes thread-safe.
unsafe impl<D: Driver> Sync for TagSet<D> {}

impl<D: Driver> TagSet<D> {
    /// Allocates the tag set; `p.cmd_size` is set here from `D::Pdu`.
    pub(crate) fn new(p: &mut DiskParams, driver: Arc<D>) -> Result<Self> {
        p.cmd_size = size_of::<D::Pdu>() as u32;
        let driver = Arc::into_raw(driver);
        // SAFETY: `p` is valid; `driver` is a valid pointer kept alive by
        // the reference we leaked above.
        let set = unsafe { ffi::dst_shim_tagset_alloc(p, driver.cast_mut().cast()) };
        match from_err_ptr(set).ok().and_then(NonNull::new) {
            // INVARIANT: allocated with our driver pointer.
            Some(set) => Ok(TagSet { set, driver }),
            None => {
                // SAFETY: taking back the reference leaked above.
                drop(unsafe { Arc::from_raw(driver) });
                Err(from_err_ptr(set).err().unwrap_or(ENOMEM))
            }
        }
    }

    /// The started request with this unique tag, if any. A tag from the
    /// network is untrusted: out-of-range tags give `None`.
    ///
    /// # Safety
    ///
    /// The caller must own the request that carries this tag (it was handed
    /// to the driver and has not been ended).
    pub(crate) unsafe fn request(&self, unique_tag: u32) -> Option<Request<D>> {
        // SAFETY: the set is live; the lookup checks the tag's range.
        let rq = unsafe { ffi::dst_shim_tag_to_rq(self.set.as_ptr(), unique_tag) };
        // SAFETY: the caller owns the request.
        unsafe { Request::from_raw(rq) }
    }

    /// Offers every started request to `f`. The handles are owned only in
    /// the sense the driver's PDU state says: `f` must claim a request (by a
    /// state change) before keeping or ending it, and otherwise drop it.
    pub(crate) fn for_each_started<F: FnMut(Request<D>)>(&self, mut f: F) {
        /// # Safety
        ///
        /// `ctx` must point to an `F`; `rq` must be a started request.
        unsafe extern "C" fn each<D: Driver, F: FnMut(Request<D>)>(
            ctx: *mut c_void,
            rq: *mut RawRequest,
        ) {
            // SAFETY: `ctx` is the `&mut F` below, live for the iteration.
            let f = unsafe { &mut *ctx.cast::<F>() };
            // SAFETY: blk-mq passes started requests of our tag set.
            if let Some(rq) = unsafe { Request::from_raw(rq) } {
                f(rq);
            }
        }
        // SAFETY: the set is live; `each::<D, F>` matches the callback type
        // and `ctx` points to `f`, which outlives the call.
        unsafe {
            ffi::dst_shim_for_each_started(self.set.as_ptr(), each::<D, F>, (&raw mut f).cast())
        };
    }
}

impl<D: Driver> Drop for TagSet<D> {
    fn drop(&mut self) {
        // SAFETY: the set is live and no disk uses it any more (the disk is
        // dropped first by its owner).
        unsafe { ffi::dst_shim_tagset_free(self.set.as_ptr()) };
        // SAFETY: taking back the reference leaked in `new`.
        drop(unsafe { Arc::from_raw(self.driver) });
    }
}

/// A gendisk on a [`TagSet`], visible as `/dev/dstN` once added.
///
/// # Invariants
///
/// `disk` came from `dst_shim_disk_alloc`; `added` says whether `add_disk`
/// succeeded. The tag set outlives the disk (the owner drops the disk first).
pub(crate) struct Disk {
    disk: NonNull<RawDisk>,
    added: bool,
}

// SAFETY: gendisk operations used here may run from any task.
unsafe impl Send for Disk {}
// SAFETY: `&Disk` offers no operations.
unsafe impl Sync for Disk {}

impl Disk {
    /// Allocates the disk and makes it visible.
    pub(crate) fn add<D: Driver>(set: &TagSet<D>, p: &DiskParams) -> Result<Self> {
        // SAFETY: the tag set is live; `p` is valid.
        let disk = from_err_ptr(unsafe { ffi::dst_shim_disk_alloc(set.set.as_ptr(), p) })?;
        let disk = NonNull::new(disk).ok_or(ENOMEM)?;
        let mut this = Disk { disk, added: false };
        // SAFETY: the disk is allocated and not yet added.
        to_result(unsafe { ffi::dst_shim_disk_add(disk.as_ptr()) })?;
        this.added = true;
        Ok(this)
    }
}

impl Disk {
    /// Removes `/dev/dstN`: new IO fails, in-flight IO is waited for (the
    /// driver must still be able to complete it). Idempotent.
    pub(crate) fn delete(&mut self) {
        if self.added {
            // SAFETY: the disk was added and is deleted only once.
            unsafe { ffi::dst_shim_disk_del(self.disk.as_ptr()) };
            self.added = false;
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.delete();
        // SAFETY: drops the allocation reference of the disk.
        unsafe { ffi::dst_shim_disk_put(self.disk.as_ptr()) };
    }
}

/// Called by the shim's `queue_rq`.
///
/// # Safety
///
/// `driver` must be the driver pointer of the request's tag set and `rq` a
/// request the shim just started, owned by the caller.
#[no_mangle]
pub(crate) unsafe extern "C" fn dst_rs_queue_rq(
    driver: *mut c_void,
    rq: *mut RawRequest,
    last: bool,
) -> c_int {
    // The driver type is erased in C; core.rs has the only driver.
    type D = crate::local_node::Router;
    // SAFETY: the tag set keeps the driver alive while requests exist.
    let driver = unsafe { &*driver.cast::<D>() };
    // SAFETY: the request is started and owned by us.
    let Some(req) = (unsafe { Request::<D>::from_raw(rq) }) else {
        return EINVAL.to_errno();
    };
    match driver.queue_rq(req, last) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// Called by the shim's sysfs `show` for `/sys/block/dstN/dst/*`.
///
/// # Safety
///
/// `driver` must be the driver pointer of a live tag set, and `buf` a sysfs
/// buffer of `PAGE_SIZE` bytes.
#[no_mangle]
pub(crate) unsafe extern "C" fn dst_rs_sysfs_show(
    driver: *mut c_void,
    id: u32,
    buf: *mut u8,
) -> isize {
    type D = crate::local_node::Router;
    // SAFETY: the tag set (whose disk is being read) keeps the driver alive.
    let driver = unsafe { &*driver.cast::<D>() };
    // SAFETY: sysfs hands us a page-sized buffer for exclusive use.
    let mut w = unsafe { PageWriter::new(buf) };
    let r = driver.sysfs_show(id, &mut w);
    w.finish(r)
}
