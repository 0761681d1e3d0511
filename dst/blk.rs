// SPDX-License-Identifier: GPL-2.0

//! blk-mq for the local node: a tag set, a gendisk and request accessors,
//! wrapped over the C shim (`shim_blk.c`).
//!
//! C header: [`include/linux/blk-mq.h`](srctree/include/linux/blk-mq.h)
//!
//! The Rust blk-mq abstraction of 7.2 has no error completion, no per-request
//! driver data and no position/length/segment accessors, so DST wraps the C
//! API itself. The ops table is a static C table whose `queue_rq` calls
//! [`dst_rs_queue_rq`], which hands the request to the [`Driver`] (`local_node`).

use core::{marker::PhantomData, ptr::NonNull};

use kernel::{
    error::{from_err_ptr, to_result},
    ffi::{c_int, c_uint, c_void},
    new_mutex,
    prelude::*,
    sync::{
        atomic::{Acquire, Atomic, Full, Release},
        Arc, Mutex,
    },
};

use crate::{security::Segments, socket::Socket, sysfs::PageWriter};

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
    /// blk-mq's request timeout (ms).
    pub(crate) timeout_ms: u32,
    pub(crate) read_only: bool,
    pub(crate) flush: bool,
    pub(crate) fua: bool,
    pub(crate) discard: bool,
    pub(crate) write_zeroes: bool,
    /// Largest DISCARD or WRITE_ZEROES request, in bytes.
    pub(crate) max_zeroing_bytes: u32,
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
    /// `REQ_OP_*`: see [`RqInfo::op`].
    op: u8,
    /// Forced unit access requested.
    pub(crate) fua: bool,
    /// A WRITE_ZEROES that must keep the blocks allocated (`REQ_NOUNMAP`).
    pub(crate) no_unmap: bool,
}

/// The operations DST carries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockOp {
    Read,
    Write,
    Flush,
    Discard,
    WriteZeroes,
}

impl RqInfo {
    /// What the request does; `None` for an operation DST does not carry.
    pub(crate) fn op(&self) -> Option<BlockOp> {
        use kernel::bindings;
        match u32::from(self.op) {
            bindings::req_op_REQ_OP_READ => Some(BlockOp::Read),
            bindings::req_op_REQ_OP_WRITE => Some(BlockOp::Write),
            bindings::req_op_REQ_OP_FLUSH => Some(BlockOp::Flush),
            bindings::req_op_REQ_OP_DISCARD => Some(BlockOp::Discard),
            bindings::req_op_REQ_OP_WRITE_ZEROES => Some(BlockOp::WriteZeroes),
            _ => None,
        }
    }
}

mod ffi {
    use super::{DiskParams, RawDisk, RawRequest, RawTagSet, RqInfo};
    use kernel::ffi::{c_char, c_int, c_uint, c_void};

    extern "C" {
        pub(super) fn dst_shim_blk_register() -> c_int;
        pub(super) fn dst_shim_blk_unregister();
        pub(super) fn dst_shim_tagset_alloc(
            p: *const DiskParams,
            driver_data: *mut c_void,
        ) -> *mut RawTagSet;
        pub(super) fn dst_shim_tagset_free(set: *mut RawTagSet);
        pub(super) fn dst_shim_max_hw_queues() -> u32;
        pub(super) fn dst_shim_disk_alloc(
            set: *mut RawTagSet,
            p: *const DiskParams,
        ) -> *mut RawDisk;
        pub(super) fn dst_shim_disk_add(disk: *mut RawDisk) -> c_int;
        pub(super) fn dst_shim_disk_del(disk: *mut RawDisk);
        pub(super) fn dst_shim_disk_put(disk: *mut RawDisk);
        pub(super) fn dst_shim_disk_open_lock(disk: *mut RawDisk);
        pub(super) fn dst_shim_disk_open_unlock(disk: *mut RawDisk);
        pub(super) fn dst_shim_disk_openers(disk: *mut RawDisk) -> u32;
        pub(super) fn dst_shim_disk_close_opens(disk: *mut RawDisk);
        pub(super) fn dst_shim_disk_set_timeout(disk: *mut RawDisk, ms: u32);
        pub(super) fn dst_shim_disk_uevent(disk: *mut RawDisk, env: *const c_char);
        pub(super) fn dst_shim_disk_grow(disk: *mut RawDisk, bytes: u64) -> bool;
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
        pub(super) fn dst_shim_rq_requeue(rq: *mut RawRequest, delay_ms: u32);
        pub(super) fn dst_shim_for_each_started(
            set: *mut RawTagSet,
            f: unsafe extern "C" fn(ctx: *mut c_void, rq: *mut RawRequest),
            ctx: *mut c_void,
        );
    }
}

/// The most hardware queues a tag set gets (one per possible CPU id):
/// blk-mq silently caps a larger request.
pub(crate) fn max_hw_queues() -> u32 {
    // SAFETY: no preconditions; reads a boot-time constant.
    unsafe { ffi::dst_shim_max_hw_queues() }
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

/// What the local node does with requests. Implemented by `local_node`.
pub(crate) trait Driver: Send + Sync {
    /// Per-request driver data, stored in the request's PDU. All-zero bytes
    /// must be a valid value (the shim zeroes it when requests are created);
    /// it is shared between tasks, so it uses interior mutability.
    type Pdu: Sync;
    /// Takes a started request. Must not sleep. The driver now owns it and
    /// must end it exactly once ([`Request::end`]); a request it cannot take
    /// is handed back with the error, and the block layer ends it.
    fn queue_rq(&self, rq: Request<Self>, last: bool) -> Result<(), (Request<Self>, Error)>;
    /// blk-mq timed out a started request (it was started longer than the
    /// request timeout ago). May sleep. The block layer restarts its timer;
    /// the driver ends or resends the request on its own paths.
    fn timeout(&self, rq: Started<'_, Self>)
    where
        Self: Sized;
    /// Writes the value of sysfs attribute `id` (see `shim_blk.c`), without
    /// the trailing newline.
    fn sysfs_show(&self, id: u32, out: &mut dyn kernel::fmt::Write) -> kernel::fmt::Result;
}

/// Who owns a request, kept in its PDU.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Owner {
    /// Held by a [`Request`] handle, or idle (never started, or ended).
    /// Zero, the value the shim gives a new request: not claimable.
    Held = 0,
    /// Started and held by nobody: [`Started::claim`] may take it.
    Parked = 1,
}

/// An [`Owner`] that tasks change concurrently.
#[repr(transparent)]
struct AtomicOwner(Atomic<u32>);

impl AtomicOwner {
    fn set(&self, owner: Owner) {
        self.0.store(owner as u32, Release);
    }

    fn is(&self, owner: Owner) -> bool {
        self.0.load(Acquire) == owner as u32
    }

    /// Moves a parked request to held; whether it was parked.
    fn claim(&self) -> bool {
        self.0
            .cmpxchg(Owner::Parked as u32, Owner::Held as u32, Full)
            .is_ok()
    }
}

/// The PDU of every request: who owns it, then the driver's data.
#[repr(C)]
struct Pdu<T> {
    /// Only the holder of a [`Request`] parks it, only a successful
    /// [`Started::claim`] takes it back.
    owner: AtomicOwner,
    data: T,
}

/// A started request, owned by whoever holds this handle: only the holder
/// may receive into its pages, send them, end or requeue it.
///
/// Handles come from `queue_rq` and from [`Started::claim`]. Giving one up
/// ([`Request::park`], or dropping it) leaves the request started and
/// claimable, for example while it waits for its reply; ending it
/// ([`Request::end`]) consumes the handle. So a request is either held by
/// exactly one handle or parked, and it is ended at most once.
///
/// # Invariants
///
/// `rq` is a started request of a tag set whose driver is `D`, not yet
/// ended, whose PDU holds a `Pdu<D::Pdu>` with `owner` [`Owner::Held`]; no other
/// handle to it exists.
pub(crate) struct Request<D: Driver + ?Sized> {
    rq: NonNull<RawRequest>,
    _d: core::marker::PhantomData<D>,
}

// SAFETY: a started request may be handled and ended from any task.
unsafe impl<D: Driver + ?Sized> Send for Request<D> {}

/// The PDU of `rq`.
///
/// # Safety
///
/// `rq` must be a request (started or not) of a live tag set whose driver
/// is `D`; the returned reference must not outlive that tag set.
unsafe fn pdu_of<'a, D: Driver + ?Sized>(rq: NonNull<RawRequest>) -> &'a Pdu<D::Pdu> {
    // SAFETY: every request of the set has a PDU of `cmd_size` bytes
    // ([`TagSet::new`]) holding a `Pdu<D::Pdu>`, zeroed at creation, which
    // `Driver::Pdu` requires to be valid; it lives as long as the set.
    // Access is shared only (interior mutability).
    unsafe { &*ffi::dst_shim_rq_pdu(rq.as_ptr()).cast::<Pdu<D::Pdu>>() }
}

/// Position, length, tag and op of `rq`.
///
/// # Safety
///
/// `rq` must be a request of a live tag set.
unsafe fn info_of(rq: NonNull<RawRequest>) -> RqInfo {
    let mut info = RqInfo::default();
    // SAFETY: the request's memory lives as long as its set; `info` is
    // writable. An idle request gives stale but harmless values.
    unsafe { ffi::dst_shim_rq_info(rq.as_ptr(), &mut info) };
    info
}

impl<D: Driver + ?Sized> Request<D> {
    /// # Safety
    ///
    /// `rq` must be a started request of a tag set with driver `D`, not yet
    /// ended, and the caller must own it: nobody else holds or may claim it.
    unsafe fn from_raw(rq: *mut RawRequest) -> Option<Self> {
        let rq = NonNull::new(rq)?;
        // SAFETY: a request of a live set (caller); the caller owns it.
        unsafe { pdu_of::<D>(rq) }.owner.set(Owner::Held);
        // INVARIANT: started, owned, and now held.
        Some(Request {
            rq,
            _d: core::marker::PhantomData,
        })
    }

    /// Position, length, tag and op of the request.
    pub(crate) fn info(&self) -> RqInfo {
        // SAFETY: the request is live (type invariant).
        unsafe { info_of(self.rq) }
    }

    /// The driver's per-request data.
    pub(crate) fn pdu(&self) -> &D::Pdu {
        // SAFETY: the request is live (type invariant) and its set outlives
        // the borrow of `self`.
        &unsafe { pdu_of::<D>(self.rq) }.data
    }

    /// Sends the request's data, described in `segs` by [`Request::bvecs`],
    /// in one go; without copying when every page may be spliced (file
    /// system metadata in slab memory may not).
    pub(crate) fn send_data(&self, sock: &Socket, segs: &SegmentBuf, more: bool) -> Result {
        let vecs = segs.as_slice();
        // SAFETY: `vecs` is a valid array of `vecs.len()` bio_vecs.
        let splice =
            unsafe { ffi::dst_shim_bvecs_spliceable(vecs.as_ptr().cast(), vecs.len() as c_uint) };
        // SAFETY: the pages belong to this request, which we hold; spliced
        // pages are referenced by the socket for as long as it needs them.
        unsafe { sock.send_pages(vecs, more, splice) }
    }

    /// Receives the request's data (a READ reply) straight into its pages,
    /// described in `segs` by [`Request::bvecs`].
    pub(crate) fn recv_data(&self, sock: &Socket, segs: &SegmentBuf) -> Result {
        // SAFETY: we hold the request (type invariant), so nobody else
        // touches its pages, and they stay until it ends.
        unsafe { sock.recv_pages(segs.as_slice()) }
    }

    /// Describes the request's data in `segs` (as [`Request::bvecs`]) for
    /// the crypto layer to copy or encrypt from (WRITE) or copy into (READ).
    pub(crate) fn segments<'a>(&'a self, segs: &'a mut SegmentBuf) -> Result<Segments<'a>> {
        self.bvecs(segs)?;
        // SAFETY: `segs` now describes this request's pages, and we hold
        // the request (type invariant): no other kernel code touches its
        // pages while `self` is borrowed, and they stay until it ends. They
        // may be a process's O_DIRECT buffer, which it may change at any
        // time: the local node never protects or checks data in them, it
        // only copies or encrypts out of them and copies checked data in.
        Ok(unsafe { Segments::from_raw(segs.as_slice()) })
    }

    /// Describes the request's data segments in `out` (whose capacity must
    /// hold them: the disk's max segments) for the crypto wrappers. The
    /// pages stay valid until the request ends.
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

    /// Ends the request with `result`. Consumes the handle.
    pub(crate) fn end(self, result: Result) {
        let err = result.err().map_or(0, Error::to_errno);
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: we own the started request (type invariant) and give it
        // up; it stays held, so nobody can claim it until it is started
        // again (`from_raw`).
        unsafe { ffi::dst_shim_rq_end(this.rq.as_ptr(), err) };
    }

    /// Hands the request back to the block layer, which queues it again
    /// (`queue_rq`) after `delay_ms`. Consumes the handle; the PDU is kept.
    pub(crate) fn requeue(self, delay_ms: u32) {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: we own the started request (type invariant) and give it
        // back; it stays held until `queue_rq` hands it out again.
        unsafe { ffi::dst_shim_rq_requeue(this.rq.as_ptr(), delay_ms) };
    }

    /// Gives the handle up and leaves the request started: the next
    /// [`Started::claim`] takes it. The same as dropping the handle.
    pub(crate) fn park(self) {}

    /// Gives the handle up without parking: for a request the block layer
    /// ends itself (an error from `queue_rq`).
    fn into_raw(self) -> *mut RawRequest {
        core::mem::ManuallyDrop::new(self).rq.as_ptr()
    }
}

impl<D: Driver + ?Sized> Drop for Request<D> {
    /// A handle given up parks its request, so that it cannot be lost: the
    /// request is claimed again by whoever handles parked requests (a reply,
    /// a requeue after a lost connection, a failure).
    fn drop(&mut self) {
        // SAFETY: the request is live (type invariant). After this store we
        // no longer touch it.
        unsafe { pdu_of::<D>(self.rq) }.owner.set(Owner::Parked);
    }
}

/// A started request seen through its tag set, not owned: it may be looked
/// at, or claimed. It may have ended (and even been started again) since it
/// was found; [`Started::claim`] only succeeds on a parked request.
pub(crate) struct Started<'a, D: Driver> {
    rq: NonNull<RawRequest>,
    _set: core::marker::PhantomData<&'a TagSet<D>>,
}

impl<D: Driver> Started<'_, D> {
    /// Position, length, tag and op of the request (stale if it ended).
    pub(crate) fn info(&self) -> RqInfo {
        // SAFETY: a request of the set, which outlives `'a`.
        unsafe { info_of(self.rq) }
    }

    /// The driver's per-request data.
    pub(crate) fn pdu(&self) -> &D::Pdu {
        // SAFETY: a request of the set, which outlives the borrow.
        &unsafe { pdu_of::<D>(self.rq) }.data
    }

    /// Whether the request is parked (started, nobody holds it).
    pub(crate) fn is_parked(&self) -> bool {
        // SAFETY: a request of the set, which outlives the borrow.
        unsafe { pdu_of::<D>(self.rq) }.owner.is(Owner::Parked)
    }

    /// Takes a parked request: the caller now holds it. `None` if it is
    /// held by someone else, idle or ended.
    pub(crate) fn claim(self) -> Option<Request<D>> {
        // SAFETY: a request of the set, which outlives the borrow.
        let pdu = unsafe { pdu_of::<D>(self.rq) };
        if !pdu.owner.claim() {
            return None;
        }
        // INVARIANT: only a started request is parked (handles exist only
        // for started requests and `end` leaves it held); the exchange made
        // us its only owner.
        Some(Request {
            rq: self.rq,
            _d: core::marker::PhantomData,
        })
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
        p.cmd_size = size_of::<Pdu<D::Pdu>>() as u32;
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

    /// The request of hardware queue `hwq` with this unique tag, if the tag
    /// is in range and belongs to `hwq`: a reply on one queue's connection
    /// may only answer that queue's requests. Tags from the network are
    /// untrusted; this is where they are checked.
    pub(crate) fn find(&self, hwq: u32, unique_tag: u32) -> Option<Started<'_, D>> {
        if unique_tag >> 16 != hwq {
            return None;
        }
        // SAFETY: the set is live; the lookup checks the tag's range.
        let rq = unsafe { ffi::dst_shim_tag_to_rq(self.set.as_ptr(), unique_tag) };
        Some(Started {
            rq: NonNull::new(rq)?,
            _set: core::marker::PhantomData,
        })
    }

    /// Offers every started request to `f`, which may look at it or claim it.
    pub(crate) fn for_each_started<F: FnMut(Started<'_, D>)>(&self, mut f: F) {
        /// # Safety
        ///
        /// `ctx` must point to an `F`; `rq` must be a request of the set.
        unsafe extern "C" fn each<D: Driver, F: FnMut(Started<'_, D>)>(
            ctx: *mut c_void,
            rq: *mut RawRequest,
        ) {
            // SAFETY: `ctx` is the `&mut F` below, live for the iteration.
            let f = unsafe { &mut *ctx.cast::<F>() };
            if let Some(rq) = NonNull::new(rq) {
                f(Started {
                    rq,
                    _set: core::marker::PhantomData,
                });
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

/// A disk's pointer, handed to [`DiskEvents`].
struct Visible(NonNull<RawDisk>);

// SAFETY: the pointer is only used under the `DiskEvents` lock, while the
// disk is added; a uevent may be sent from any task.
unsafe impl Send for Visible {}

/// Change uevents about a disk, and its growth, for those that outlive its
/// visibility (a device's threads, which announce connection losses and
/// the export's growth): a [`Disk`] attaches itself once added and detaches
/// before it is deleted, so an event sent later goes nowhere.
///
/// # Invariants
///
/// While `disk` holds a pointer, that disk is added (not yet deleted).
#[pin_data]
pub(crate) struct DiskEvents {
    #[pin]
    disk: Mutex<Option<Visible>>,
}

impl DiskEvents {
    /// No disk attached yet.
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(DiskEvents {
                disk <- new_mutex!(None, "DiskEvents::disk"),
            }),
            GFP_KERNEL,
        )
    }

    /// Sends a `KOBJ_CHANGE` uevent with `env` ("KEY=value") about the
    /// attached disk, if there is one. May sleep; allocates without IO.
    pub(crate) fn change(&self, env: &CStr) {
        let disk = self.disk.lock();
        if let Some(Visible(d)) = &*disk {
            // SAFETY: the disk is added (type invariant) and cannot be
            // deleted while the lock is held; `env` is NUL-terminated.
            unsafe { ffi::dst_shim_disk_uevent(d.as_ptr(), env.as_char_ptr()) };
        }
    }

    /// Grows the attached disk to `bytes` (a multiple of its logical block
    /// size), if there is a disk and it is smaller; never shrinks it. Those
    /// who have it open see the new size at once, and udev a change uevent
    /// with `RESIZE=1`. Returns whether it grew. May sleep; allocates
    /// without IO. Under the lock, so that growths from several threads
    /// leave the largest size.
    pub(crate) fn grow(&self, bytes: u64) -> bool {
        let disk = self.disk.lock();
        match &*disk {
            // SAFETY: the disk is added (type invariant) and cannot be
            // deleted while the lock is held.
            Some(Visible(d)) => unsafe { ffi::dst_shim_disk_grow(d.as_ptr(), bytes) },
            None => false,
        }
    }
}

/// A gendisk on a [`TagSet`], visible as `/dev/dstN` once added.
///
/// # Invariants
///
/// `disk` came from `dst_shim_disk_alloc`; `added` says whether `add_disk`
/// succeeded and the disk was not deleted since. The tag set outlives the
/// disk (the owner drops the disk first). `events` has this disk attached
/// exactly while it is added.
pub(crate) struct Disk {
    disk: NonNull<RawDisk>,
    added: Atomic<bool>,
    events: Arc<DiskEvents>,
}

// SAFETY: gendisk operations used here may run from any task.
unsafe impl Send for Disk {}
// SAFETY: what `&Disk` offers may run from any task at once: the request
// timeout is a plain store, the open lock is the block layer's mutex, and
// `delete` is claimed by an atomic exchange.
unsafe impl Sync for Disk {}

impl Disk {
    /// Allocates the disk and makes it visible; `events` reaches it from
    /// then on until it is deleted.
    pub(crate) fn add<D: Driver>(
        set: &TagSet<D>,
        p: &DiskParams,
        events: Arc<DiskEvents>,
    ) -> Result<Self> {
        // SAFETY: the tag set is live; `p` is valid.
        let disk = from_err_ptr(unsafe { ffi::dst_shim_disk_alloc(set.set.as_ptr(), p) })?;
        let disk = NonNull::new(disk).ok_or(ENOMEM)?;
        let this = Disk {
            disk,
            added: Atomic::new(false),
            events,
        };
        // SAFETY: the disk is allocated and not yet added.
        to_result(unsafe { ffi::dst_shim_disk_add(disk.as_ptr()) })?;
        this.added.store(true, Release);
        // INVARIANT: added just above; detached in `delete`.
        *this.events.disk.lock() = Some(Visible(disk));
        Ok(this)
    }
}

impl Disk {
    /// Sets the request timeout of requests started from now on.
    pub(crate) fn set_timeout(&self, ms: u32) {
        // SAFETY: the disk is allocated (type invariant); its queue lives
        // as long as the disk.
        unsafe { ffi::dst_shim_disk_set_timeout(self.disk.as_ptr(), ms) };
    }

    /// Takes the disk's open lock (`open_mutex`): until the guard drops,
    /// nobody opens or closes the disk or one of its partitions. May sleep;
    /// the lock is taken on every open and close of the disk, so it must not
    /// be held across IO to it.
    pub(crate) fn lock_opens(&self) -> OpenLock<'_> {
        // SAFETY: the disk is allocated (type invariant), so its
        // `open_mutex` is initialised.
        unsafe { ffi::dst_shim_disk_open_lock(self.disk.as_ptr()) };
        // INVARIANT: locked just above.
        OpenLock {
            disk: self,
            _not_send: PhantomData,
        }
    }

    /// Removes `/dev/dstN`: new IO fails, in-flight IO is waited for (the
    /// driver must still be able to complete it). Idempotent.
    pub(crate) fn delete(&self) {
        if self.added.xchg(false, Full) {
            // INVARIANT: detached, and no event is being sent, before the
            // disk goes.
            *self.events.disk.lock() = None;
            // SAFETY: the disk was added, and the exchange makes this the
            // only deletion.
            unsafe { ffi::dst_shim_disk_del(self.disk.as_ptr()) };
        }
    }
}

/// The open lock of a [`Disk`], held: the count of openers is stable.
///
/// # Invariants
///
/// This task holds `open_mutex` of `disk` until the value drops.
pub(crate) struct OpenLock<'a> {
    disk: &'a Disk,
    /// A mutex is released by the task that took it: not `Send`.
    _not_send: PhantomData<*mut ()>,
}

impl OpenLock<'_> {
    /// How many have the disk open, a partition of it included (the block
    /// layer counts each open partition once on the whole disk). A mounted
    /// file system is one.
    pub(crate) fn openers(&self) -> u32 {
        // SAFETY: the disk is allocated and its open lock held (type
        // invariants), which the count needs to be stable.
        unsafe { ffi::dst_shim_disk_openers(self.disk.disk.as_ptr()) }
    }

    /// Every open from now on fails with ENXIO: the disk is going away.
    /// Those who have it open keep it. Cannot be undone.
    pub(crate) fn close_opens(&self) {
        // SAFETY: the disk is allocated and its open lock held (type
        // invariants): the open callback, which reads the mark, runs under
        // the same lock.
        unsafe { ffi::dst_shim_disk_close_opens(self.disk.disk.as_ptr()) };
    }
}

impl Drop for OpenLock<'_> {
    fn drop(&mut self) {
        // SAFETY: this task holds the lock (type invariant).
        unsafe { ffi::dst_shim_disk_open_unlock(self.disk.disk.as_ptr()) };
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
    // The driver type is erased in C; `local_node` has the only driver.
    type D = crate::local_node::Router;
    // SAFETY: the tag set keeps the driver alive while requests exist.
    let driver = unsafe { &*driver.cast::<D>() };
    // SAFETY: the request is started and owned by us.
    let Some(req) = (unsafe { Request::<D>::from_raw(rq) }) else {
        return EINVAL.to_errno();
    };
    match driver.queue_rq(req, last) {
        Ok(()) => 0,
        Err((req, e)) => {
            // The block layer ends the request with this error.
            req.into_raw();
            e.to_errno()
        }
    }
}

/// Called by the shim's `timeout`.
///
/// # Safety
///
/// `driver` must be the driver pointer of the request's tag set and `rq` a
/// started request of it.
#[no_mangle]
pub(crate) unsafe extern "C" fn dst_rs_timeout(driver: *mut c_void, rq: *mut RawRequest) {
    type D = crate::local_node::Router;
    // SAFETY: the tag set keeps the driver alive while requests exist.
    let driver = unsafe { &*driver.cast::<D>() };
    if let Some(rq) = NonNull::new(rq) {
        driver.timeout(Started {
            rq,
            _set: core::marker::PhantomData,
        });
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
