// SPDX-License-Identifier: GPL-2.0

//! The export node's IO plumbing: the backing store (a block device, or a
//! regular file through `backing_file.rs`), asynchronous bios over page
//! buffers (`pages.rs`) with a completion callback, and the workqueue that
//! runs blocking device operations.
//!
//! C headers: [`include/linux/blkdev.h`](srctree/include/linux/blkdev.h),
//! [`include/linux/bio.h`](srctree/include/linux/bio.h),
//! [`include/linux/workqueue.h`](srctree/include/linux/workqueue.h)
//!
//! This file and `backing_file.rs` are the only ones of the export node that
//! call C directly; the protocol and session logic in `export/` is safe
//! Rust. Inline helpers the bindings lack live in `shim_bdev.c` (and
//! `shim_file.c`).
//!
//! Memory on the IO path: the `kernel::alloc` flags have no `GFP_NOIO`, so
//! allocations made on behalf of the network (page buffers, per-request state)
//! run inside [`noio`], the kernel's scope API (`memalloc_noio_save`), which
//! turns every allocation of the task into `GFP_NOIO`. Raw C calls take
//! [`GFP_NOIO`] explicitly.

use core::{
    pin::Pin,
    ptr::NonNull, //
};

use kernel::{
    bindings,
    error::{
        from_err_ptr,
        to_result, //
    },
    ffi::{
        c_int,
        c_void, //
    },
    prelude::*,
    sync::Arc,
    workqueue::Queue,
};

use crate::{
    backing_file::{self, Aio, BackingFile},
    error::code,
    pages::PageBuf,
};

/// `shim_bdev.c`. A `struct block_device *` or `struct bio *` is passed as
/// `*mut c_void`: their bindgen types hold a zero-sized field that the
/// FFI-safety lint refuses.
mod ffi {
    use kernel::ffi::{c_int, c_uint, c_void};

    extern "C" {
        pub(super) fn dst_bdev_logical_block_size(bdev: *mut c_void) -> c_uint;
        pub(super) fn dst_bdev_physical_block_size(bdev: *mut c_void) -> c_uint;
        pub(super) fn dst_bdev_nr_bytes(bdev: *mut c_void) -> u64;
        pub(super) fn dst_bdev_can_discard(bdev: *mut c_void) -> bool;
        pub(super) fn dst_bdev_write_cache(bdev: *mut c_void) -> bool;
        pub(super) fn dst_bdev_bioset_init() -> c_int;
        pub(super) fn dst_bdev_bioset_exit();
        pub(super) fn dst_bdev_bio_alloc(
            bdev: *mut c_void,
            nr_vecs: u16,
            opf: c_uint,
        ) -> *mut c_void;
        pub(super) fn dst_bdev_bio_next(
            prev: *mut c_void,
            bdev: *mut c_void,
            nr_vecs: u16,
            opf: c_uint,
        ) -> *mut c_void;
        pub(super) fn dst_bdev_noio_save() -> c_uint;
        pub(super) fn dst_bdev_noio_restore(flags: c_uint);
    }
}

/// `GFP_NOIO` (`include/linux/gfp_types.h`): `GFP_KERNEL` without `__GFP_IO`
/// and `__GFP_FS`. The macro itself is not in the bindings.
const GFP_NOIO: bindings::gfp_t =
    bindings::GFP_KERNEL & !((1 << bindings::___GFP_IO_BIT) | (1 << bindings::___GFP_FS_BIT));

/// `BLK_OPEN_READ` (`include/linux/blkdev.h`; not in the bindings).
const BLK_OPEN_READ: bindings::blk_mode_t = 1 << 0;

/// `BLK_OPEN_WRITE` (`include/linux/blkdev.h`; not in the bindings).
const BLK_OPEN_WRITE: bindings::blk_mode_t = 1 << 1;

/// `BLK_STS_IOERR` (`include/linux/blk_types.h`; not in the bindings).
const BLK_STS_IOERR: bindings::blk_status_t = 10;

/// Bytes per sector, the unit of bio addresses.
const SECTOR_SHIFT: u32 = bindings::SECTOR_SHIFT;

/// The export's bio set, for the module's lifetime (see `shim_bdev.c`).
///
/// # Invariants
///
/// The set is initialised while this value lives; there is one per module.
pub(crate) struct BioSet(());

impl BioSet {
    /// Initialises the set; called once, from module init.
    pub(crate) fn init() -> Result<Self> {
        // SAFETY: called once, before any export exists.
        to_result(unsafe { ffi::dst_bdev_bioset_init() })?;
        Ok(BioSet(()))
    }
}

impl Drop for BioSet {
    fn drop(&mut self) {
        // SAFETY: initialised (type invariant); the module state drops its
        // exports, whose bios have all ended, before this.
        unsafe { ffi::dst_bdev_bioset_exit() };
    }
}

/// Runs `f` with every allocation of the current task made as `GFP_NOIO`, so
/// that serving block IO never waits on reclaim that may need this very IO.
pub(crate) fn noio<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: sets PF_MEMALLOC_NOIO on the current task; restored below.
    let flags = unsafe { ffi::dst_bdev_noio_save() };
    let r = f();
    // SAFETY: `flags` came from the matching save on this task.
    unsafe { ffi::dst_bdev_noio_restore(flags) };
    r
}

/// What an export serves: a block device, or a regular file.
pub(crate) enum Backing {
    /// Opened exclusively; READ and WRITE are bios.
    Block(BlockDevice),
    /// Claimed by one export; READ and WRITE are kiocbs.
    File(BackingFile),
}

impl Backing {
    /// Opens the block device at `path` (see [`BlockDevice::open`]).
    pub(crate) fn open_block(path: &CStr, write: bool, holder: *const c_void) -> Result<Self> {
        BlockDevice::open(path, write, holder).map(Backing::Block)
    }

    /// Opens the regular file at `path` (see [`BackingFile::open`]).
    pub(crate) fn open_file(path: &CStr, write: bool) -> Result<Self> {
        BackingFile::open(path, write).map(Backing::File)
    }

    /// What is served, for log lines.
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Backing::Block(_) => "block device",
            Backing::File(f) if f.is_direct() => "file, direct IO",
            Backing::File(_) => "file, buffered IO",
        }
    }

    /// Size in bytes.
    pub(crate) fn size(&self) -> u64 {
        match self {
            Backing::Block(b) => b.size(),
            Backing::File(f) => f.size(),
        }
    }

    /// Logical block size in bytes: the addressing unit of IO.
    pub(crate) fn logical_block_size(&self) -> u32 {
        match self {
            Backing::Block(b) => b.logical_block_size(),
            Backing::File(f) => f.logical_block_size(),
        }
    }

    /// Physical block size in bytes.
    pub(crate) fn physical_block_size(&self) -> u32 {
        match self {
            Backing::Block(b) => b.physical_block_size(),
            Backing::File(f) => f.physical_block_size(),
        }
    }

    /// Whether DISCARD may be offered.
    pub(crate) fn can_discard(&self) -> bool {
        match self {
            Backing::Block(b) => b.can_discard(),
            Backing::File(f) => f.can_fallocate(),
        }
    }

    /// Whether completed writes need a flush to be durable, so that FLUSH
    /// and FUA are offered (as NVMe/TCP's target reports a volatile write
    /// cache only for a device that has one): a block device's write-cache
    /// setting when the export starts; a file always (its page cache, or
    /// the cache of its file system's device).
    pub(crate) fn has_write_cache(&self) -> bool {
        match self {
            Backing::Block(b) => b.has_write_cache(),
            Backing::File(_) => true,
        }
    }

    /// Whether WRITE_ZEROES may be offered: a block device always can (the
    /// block layer writes zeroes if it has nothing better), a file where
    /// its file system has `fallocate`.
    pub(crate) fn can_write_zeroes(&self) -> bool {
        match self {
            Backing::Block(_) => true,
            Backing::File(f) => f.can_fallocate(),
        }
    }

    /// Whether READ and WRITE block (buffered file IO): they then run on
    /// the export's workqueue through [`rw_blocking`] instead of [`submit`].
    pub(crate) fn blocking_rw(&self) -> bool {
        matches!(self, Backing::File(f) if !f.is_direct())
    }

    /// Makes every completed write durable. Blocks.
    pub(crate) fn flush(&self) -> Result {
        match self {
            Backing::Block(b) => b.flush(),
            Backing::File(f) => f.flush(),
        }
    }

    /// Discards `len` bytes at `offset` (sector multiples). Blocks.
    pub(crate) fn discard(&self, offset: u64, len: u64) -> Result {
        match self {
            Backing::Block(b) => b.discard(offset, len),
            Backing::File(f) => f.discard(offset, len),
        }
    }

    /// Makes `len` bytes at `offset` (sector multiples) read as zeroes,
    /// deallocating them if `unmap` and the store can. Blocks.
    pub(crate) fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> Result {
        match self {
            Backing::Block(b) => b.write_zeroes(offset, len, unmap),
            Backing::File(f) => f.write_zeroes(offset, len, unmap),
        }
    }

    /// Makes what was written durable before the store is released.
    pub(crate) fn sync(&self) -> Result {
        match self {
            Backing::Block(b) => b.sync(),
            Backing::File(f) => f.flush(),
        }
    }
}

/// A block device opened exclusively by one owner.
///
/// # Invariants
///
/// `file` is a block device file returned by `bdev_file_open_by_path` with a
/// holder, owned by this value and released (`bdev_fput`) on drop; `bdev` is
/// its block device, valid as long as the file is open.
pub(crate) struct BlockDevice {
    file: NonNull<bindings::file>,
    bdev: NonNull<bindings::block_device>,
}

// SAFETY: an open block device may be used and released from any task.
unsafe impl Send for BlockDevice {}
// SAFETY: every method only submits IO or reads limits, which the block layer
// allows concurrently.
unsafe impl Sync for BlockDevice {}

impl BlockDevice {
    /// Opens the block device at `path` for reading (and writing if `write`),
    /// claimed exclusively for `holder`: a later exclusive open by anyone else
    /// (a mount, another export, `O_EXCL`) fails with `EBUSY` until this value
    /// is dropped. `holder` only identifies the owner; it is never
    /// dereferenced (no holder operations are registered).
    pub(crate) fn open(path: &CStr, write: bool, holder: *const c_void) -> Result<Self> {
        let mode = BLK_OPEN_READ | if write { BLK_OPEN_WRITE } else { 0 };
        // SAFETY: `path` is NUL-terminated; a non-null `holder` asks for an
        // exclusive claim; NULL holder operations are allowed.
        let file = unsafe {
            bindings::bdev_file_open_by_path(
                path.as_char_ptr(),
                mode,
                holder.cast_mut(),
                core::ptr::null(),
            )
        };
        let file = NonNull::new(from_err_ptr(file)?).ok_or(ENODEV)?;
        // SAFETY: `file` is an open block device file.
        let bdev = unsafe { bindings::file_bdev(file.as_ptr()) };
        let Some(bdev) = NonNull::new(bdev) else {
            // SAFETY: `file` is open and owned here; nothing else uses it.
            unsafe { bindings::bdev_fput(file.as_ptr()) };
            return Err(ENODEV);
        };
        // INVARIANT: the open succeeded; we own the file.
        Ok(BlockDevice { file, bdev })
    }

    fn raw(&self) -> *mut bindings::block_device {
        self.bdev.as_ptr()
    }

    /// Size in bytes.
    pub(crate) fn size(&self) -> u64 {
        // SAFETY: the device is open (type invariant).
        unsafe { ffi::dst_bdev_nr_bytes(self.raw().cast()) }
    }

    /// Logical block size in bytes: the addressing unit of IO.
    pub(crate) fn logical_block_size(&self) -> u32 {
        // SAFETY: the device is open (type invariant).
        unsafe { ffi::dst_bdev_logical_block_size(self.raw().cast()) }
    }

    /// Physical block size in bytes.
    pub(crate) fn physical_block_size(&self) -> u32 {
        // SAFETY: the device is open (type invariant).
        unsafe { ffi::dst_bdev_physical_block_size(self.raw().cast()) }
    }

    /// Whether the device accepts discards.
    pub(crate) fn can_discard(&self) -> bool {
        // SAFETY: the device is open (type invariant).
        unsafe { ffi::dst_bdev_can_discard(self.raw().cast()) }
    }

    /// Whether completed writes may sit in a volatile cache until a flush.
    pub(crate) fn has_write_cache(&self) -> bool {
        // SAFETY: the device is open (type invariant).
        unsafe { ffi::dst_bdev_write_cache(self.raw().cast()) }
    }

    /// Makes every completed write durable. Blocks.
    pub(crate) fn flush(&self) -> Result {
        // SAFETY: the device is open (type invariant); may sleep, and the
        // callers run in process context.
        to_result(unsafe { bindings::blkdev_issue_flush(self.raw()) })
    }

    /// Discards `len` bytes at `offset` (sector multiples). Blocks.
    pub(crate) fn discard(&self, offset: u64, len: u64) -> Result {
        // SAFETY: the device is open (type invariant); the range was checked
        // against the device size by the caller, and the block layer checks
        // it again.
        to_result(unsafe {
            bindings::blkdev_issue_discard(
                self.raw(),
                offset >> SECTOR_SHIFT,
                len >> SECTOR_SHIFT,
                GFP_NOIO,
            )
        })
    }

    /// Makes `len` bytes at `offset` (sector multiples) read as zeroes,
    /// deallocating them if `unmap` and the device can. Blocks.
    pub(crate) fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> Result {
        let flags = if unmap {
            0
        } else {
            bindings::BLKDEV_ZERO_NOUNMAP
        };
        // SAFETY: as for `discard`.
        to_result(unsafe {
            bindings::blkdev_issue_zeroout(
                self.raw(),
                offset >> SECTOR_SHIFT,
                len >> SECTOR_SHIFT,
                GFP_NOIO,
                flags,
            )
        })
    }

    /// Writes dirty page cache of the device back and waits for it.
    pub(crate) fn sync(&self) -> Result {
        // SAFETY: the device is open (type invariant).
        to_result(unsafe { bindings::sync_blockdev(self.raw()) })
    }
}

impl Drop for BlockDevice {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we own the open file; `bdev_fput`
        // gives up the claim at once, so the device can be opened
        // exclusively again as soon as this returns.
        unsafe { bindings::bdev_fput(self.file.as_ptr()) };
    }
}

/// Whether `e` is `EOPNOTSUPP`.
pub(crate) fn is_not_supported(e: Error) -> bool {
    e == code::eopnotsupp()
}

/// What a READ or WRITE works on: the backing store and the pages, and for
/// a file the kiocb.
///
/// Owned by the [`BioOwner`] while the IO is in flight, so none of them can
/// go away under the IO.
pub(crate) struct IoData {
    dev: Arc<Backing>,
    pages: PageBuf,
    aio: Aio,
}

impl IoData {
    /// Bundles the backing store and the buffer of one IO.
    pub(crate) fn new(dev: Arc<Backing>, pages: PageBuf) -> Self {
        IoData {
            dev,
            pages,
            aio: Aio::new(),
        }
    }

    /// The buffer.
    pub(crate) fn pages(&self) -> &PageBuf {
        &self.pages
    }

    /// The backing store.
    pub(crate) fn backing(&self) -> &Backing {
        &self.dev
    }

    /// Room for a file IO's kiocb.
    pub(crate) fn aio(&self) -> &Aio {
        &self.aio
    }

    /// The buffer, to check, protect or send its data.
    pub(crate) fn pages_mut(&mut self) -> &mut PageBuf {
        &mut self.pages
    }
}

/// Direction of a bio.
#[derive(Clone, Copy)]
pub(crate) enum BioOp {
    /// Read the device into the pages.
    Read,
    /// Write the pages to the device; `fua`: durable before completion.
    Write {
        /// Force unit access.
        fua: bool,
    },
}

/// Owner of an asynchronous READ or WRITE: what [`submit`] takes and hands
/// back, with the result, once the IO has completed.
pub(crate) trait BioOwner: Sized + Send + 'static {
    /// The device and pages of the IO; `None` makes [`submit`] fail.
    fn io_data(&self) -> Option<&IoData>;

    /// Takes the owner back with the result of the IO. Runs in interrupt
    /// context: must not sleep, take a mutex or drop anything that does.
    fn complete(this: Pin<KBox<Self>>, result: Result);
}

/// Submits a READ or WRITE of the owner's pages at byte `offset` (a sector
/// multiple). On success the owner is handed to [`BioOwner::complete`] once
/// the IO has completed; on failure it is returned at once.
///
/// On a block device, requests larger than one bio (`BIO_MAX_VECS` pages)
/// become a chain of bios; the owner completes when the last one has, with
/// the first error. On a file, the IO is one kiocb
/// (`backing_file::submit`); a file served buffered
/// ([`Backing::blocking_rw`]) takes [`rw_blocking`] instead.
pub(crate) fn submit<T: BioOwner>(
    this: Pin<KBox<T>>,
    op: BioOp,
    offset: u64,
) -> Result<(), (Pin<KBox<T>>, Error)> {
    let Some(data) = this.io_data() else {
        return Err((this, EINVAL));
    };
    let bdev = match &*data.dev {
        Backing::Block(b) => b.raw(),
        Backing::File(_) => return backing_file::submit(this, op, offset),
    };
    let pages = &data.pages;
    if pages.len() % (1 << SECTOR_SHIFT) != 0 {
        return Err((this, EINVAL));
    }
    let opf = match op {
        BioOp::Read => bindings::req_op_REQ_OP_READ,
        BioOp::Write { fua: false } => bindings::req_op_REQ_OP_WRITE,
        BioOp::Write { fua: true } => {
            bindings::req_op_REQ_OP_WRITE | (1 << bindings::req_flag_bits___REQ_FUA)
        }
    };
    let vecs = |left: usize| left.min(bindings::BIO_MAX_VECS as usize);
    let mut left = pages.bvecs().len();
    // SAFETY: the device is open while `data.dev` lives, which the owner
    // keeps until completion; the bio set lives while the module is loaded
    // ([`BioSet`]). `vecs` is at most BIO_MAX_VECS, which fits u16.
    let mut bio: *mut bindings::bio =
        unsafe { ffi::dst_bdev_bio_alloc(bdev.cast(), vecs(left) as u16, opf) }.cast();
    if bio.is_null() {
        return Err((this, ENOMEM));
    }
    let mut sector = offset >> SECTOR_SHIFT;
    let mut failed = false;
    // SAFETY: `bio` is a new bio we own.
    unsafe { (*bio).bi_iter.bi_sector = sector };
    for v in pages.bvecs() {
        let (page, ulen) = (v.bv_page, v.bv_len);
        // At most PAGE_SIZE: these conversions are lossless.
        let len = ulen as usize;
        // SAFETY: `bio` is ours and not submitted; the page is held by the
        // owner until completion.
        let mut added = unsafe { bindings::bio_add_page(bio, page, ulen, 0) };
        if added != len as c_int {
            // The bio is full: chain a new one to it and submit the old one.
            // This cannot fail: it allocates from the bio set's mempool with
            // direct reclaim allowed.
            // SAFETY: as above; `bio` is handed over to the block layer.
            bio =
                unsafe { ffi::dst_bdev_bio_next(bio.cast(), bdev.cast(), vecs(left) as u16, opf) }
                    .cast();
            // SAFETY: `bio` is the new bio, ours until submitted.
            unsafe { (*bio).bi_iter.bi_sector = sector };
            // SAFETY: as for the first `bio_add_page`.
            added = unsafe { bindings::bio_add_page(bio, page, ulen, 0) };
            if added != len as c_int {
                // Cannot happen for a fresh bio with room for a page; if it
                // does, fail the whole IO rather than write a partial one.
                failed = true;
                break;
            }
        }
        sector += (len as u64) >> SECTOR_SHIFT;
        left -= 1;
    }
    // SAFETY: not moved out of the box; the pointer is given back, pinned,
    // exactly once by `end_io`.
    let owner = KBox::into_raw(unsafe { Pin::into_inner_unchecked(this) });
    // SAFETY: `bio` is ours until submitted or ended. `owner` stays valid
    // until `end_io` takes it back.
    unsafe {
        (*bio).bi_end_io = Some(end_io::<T>);
        (*bio).bi_private = owner.cast();
    }
    if failed {
        // SAFETY: `bio` is ours; ending it with an error completes the chain
        // once the bios already submitted have completed.
        unsafe {
            (*bio).bi_status = BLK_STS_IOERR;
            bindings::bio_endio(bio);
        }
    } else {
        // SAFETY: `bio` is fully built; the block layer owns it from here
        // and calls `end_io` exactly once.
        unsafe { bindings::submit_bio(bio) };
    }
    Ok(())
}

/// Reads or writes the pages of `data` at byte `offset` synchronously: the
/// READ or WRITE of a file served buffered ([`Backing::blocking_rw`]), run
/// on the export's workqueue. Blocks.
pub(crate) fn rw_blocking(data: &IoData, op: BioOp, offset: u64) -> Result {
    match &*data.dev {
        Backing::File(f) => f.rw_blocking(&data.pages, op, offset),
        Backing::Block(_) => Err(EINVAL),
    }
}

/// The `bi_end_io` of the last bio of an IO.
///
/// # Safety
///
/// `bio` is a completed bio built by [`submit`] for owner type `T`; its
/// `bi_private` is the owner leaked there, not yet taken back.
unsafe extern "C" fn end_io<T: BioOwner>(bio: *mut bindings::bio) {
    // SAFETY: `bio` is valid until we put it below (function contract).
    let (status, owner) = unsafe { ((*bio).bi_status, (*bio).bi_private.cast::<T>()) };
    // SAFETY: we hold the only reference to the completed bio.
    unsafe { bindings::bio_put(bio) };
    let result = if status == bindings::BLK_STS_OK as bindings::blk_status_t {
        Ok(())
    } else {
        // SAFETY: pure table lookup; callable in any context.
        Err(Error::from_errno(unsafe {
            bindings::blk_status_to_errno(status)
        }))
    };
    // SAFETY: `owner` came from `KBox::into_raw` of a pinned box in `submit`
    // and is taken back exactly once, here.
    let this = unsafe { Pin::new_unchecked(KBox::from_raw(owner)) };
    T::complete(this, result);
}

/// A workqueue owned by one export: blocking device operations (and the
/// replies of requests that fail before reaching the device) run on it, and
/// draining it waits for all of them.
///
/// # Invariants
///
/// `wq` was returned by `alloc_workqueue` and is destroyed on drop.
pub(crate) struct IoQueue {
    wq: NonNull<bindings::workqueue_struct>,
}

// SAFETY: workqueues are used from any context; the pointer is owned.
unsafe impl Send for IoQueue {}
// SAFETY: queueing and draining are thread-safe.
unsafe impl Sync for IoQueue {}

impl IoQueue {
    /// Creates a queue named `name` that may run during memory reclaim
    /// (`WQ_MEM_RECLAIM`: it serves block IO), not bound to the CPU that
    /// queued the work (`WQ_UNBOUND`: replies may block on the network).
    pub(crate) fn new(name: &CStr) -> Result<Self> {
        // SAFETY: the format is "%s" with a NUL-terminated string argument.
        let wq = unsafe {
            bindings::alloc_workqueue_noprof(
                c"%s".as_char_ptr(),
                bindings::wq_flags_WQ_MEM_RECLAIM | bindings::wq_flags_WQ_UNBOUND,
                0,
                name.as_char_ptr(),
            )
        };
        // INVARIANT: allocation succeeded if non-null.
        Ok(IoQueue {
            wq: NonNull::new(wq).ok_or(ENOMEM)?,
        })
    }

    /// The queue, to enqueue work items on.
    pub(crate) fn queue(&self) -> &Queue {
        // SAFETY: the workqueue lives as long as `self` (type invariant).
        unsafe { Queue::from_raw(self.wq.as_ptr()) }
    }

    /// Waits until the queue is empty, including work queued meanwhile.
    pub(crate) fn drain(&self) {
        // SAFETY: the workqueue is valid (type invariant).
        unsafe { bindings::drain_workqueue(self.wq.as_ptr()) };
    }
}

impl Drop for IoQueue {
    fn drop(&mut self) {
        // SAFETY: we own the workqueue; it drains itself first. Callers
        // never drop the queue from one of its own work items (the export
        // drains it in `stop`, before its last reference can go away).
        unsafe { bindings::destroy_workqueue(self.wq.as_ptr()) };
    }
}
