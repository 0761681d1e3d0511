// SPDX-License-Identifier: GPL-2.0

//! A regular file as an export's backing store: opened with direct IO where
//! its file system allows it, READ and WRITE as asynchronous kiocbs over the
//! request's pages, FLUSH as `fsync`, DISCARD and WRITE_ZEROES as
//! `fallocate`.
//!
//! C headers: [`include/linux/fs.h`](srctree/include/linux/fs.h),
//! [`include/linux/uio.h`](srctree/include/linux/uio.h),
//! [`include/uapi/linux/falloc.h`](srctree/include/uapi/linux/falloc.h)
//!
//! Direct IO. With `O_DIRECT` the data goes between the request's pages and
//! the file's storage, as a block device's bios do: no second copy in the
//! export node's page cache, no writeback of it to wait for, and a completion
//! that may come in interrupt context, like a bio's (the same
//! [`BioOwner::complete`] takes it). Its offsets and lengths must be aligned
//! to what the file system asks (`statx`'s `STATX_DIOALIGN`, else the
//! logical block of the device under it, as loop does), so that alignment
//! becomes the export's logical block. A file system without direct IO (or
//! one asking for more than 4 KiB alignment) gets buffered IO instead, with
//! 512-byte blocks: each READ and WRITE then runs synchronously on the
//! export's workqueue, never in the session's receive thread, since it may
//! wait for the page cache's writeback.
//!
//! Exclusive use. A regular file has no exclusive open like a block
//! device's; the module keeps the set of inodes its exports serve instead
//! (`shim_file.c`), so one file is served by one export at a time.
//!
//! Memory on the IO path: the kiocb lives in the request's own state
//! ([`Aio`], part of `bdev::IoData`) and the pages' `bio_vec` array in its
//! [`PageBuf`], so an IO allocates nothing here (the file system may, in
//! the NOIO scope of the export's threads).

use core::{pin::Pin, ptr::NonNull};

use kernel::{
    bindings,
    error::{
        from_err_ptr,
        to_result, //
    },
    ffi::{
        c_int,
        c_long,
        c_uint,
        c_void, //
    },
    prelude::*,
    types::Opaque,
};

use crate::{
    bdev::{Backing, BioOp, BioOwner},
    pages::PageBuf,
    proto,
};

/// `shim_file.c`. A `struct file *` or `struct kiocb *` is passed as
/// `*mut c_void`, and a `struct bio_vec *` as `*const c_void`: their bindgen
/// types hold zero-sized fields that the FFI-safety lint refuses (as in
/// `bdev.rs`).
mod ffi {
    use kernel::ffi::{c_char, c_int, c_long, c_uint, c_void};

    extern "C" {
        pub(super) fn dst_file_path_mode(path: *const c_char, mode: *mut c_uint) -> c_int;
        pub(super) fn dst_file_mode(file: *mut c_void) -> c_uint;
        pub(super) fn dst_file_size(file: *mut c_void) -> u64;
        pub(super) fn dst_file_dio_align(file: *mut c_void) -> c_uint;
        pub(super) fn dst_file_block_size(file: *mut c_void) -> c_uint;
        pub(super) fn dst_file_can_fallocate(file: *mut c_void) -> bool;
        pub(super) fn dst_file_claim(file: *mut c_void) -> c_int;
        pub(super) fn dst_file_unclaim(file: *mut c_void);
        pub(super) fn dst_file_rw(
            file: *mut c_void,
            iocb: *mut c_void,
            bvec: *const c_void,
            nr: c_uint,
            count: usize,
            pos: i64,
            write: bool,
            fua: bool,
            done: Option<unsafe extern "C" fn(*mut c_void, c_long)>,
        ) -> isize;
        pub(super) fn dst_file_end_write(iocb: *mut c_void);
    }
}

/// `FALLOC_FL_KEEP_SIZE` (`include/uapi/linux/falloc.h`; not in the
/// bindings): the file's size stays.
const FALLOC_FL_KEEP_SIZE: c_int = 0x01;

/// `FALLOC_FL_PUNCH_HOLE`: deallocates the range (with `KEEP_SIZE`).
const FALLOC_FL_PUNCH_HOLE: c_int = 0x02;

/// `FALLOC_FL_ZERO_RANGE`: the range reads as zeroes and stays allocated.
const FALLOC_FL_ZERO_RANGE: c_int = 0x10;

/// `-EIOCBQUEUED`: an asynchronous kiocb was queued, its completion follows.
const EIOCBQUEUED: isize = -(bindings::EIOCBQUEUED as isize);

/// Bytes in a sector: the smallest logical block.
const SECTOR_SIZE: u32 = 1 << bindings::SECTOR_SHIFT;

/// What a path names.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathKind {
    /// A block device: served through the block layer (`bdev.rs`).
    Block,
    /// A regular file: served by [`BackingFile`].
    Regular,
    /// A directory: not servable.
    Directory,
    /// A character device, FIFO or socket: not servable.
    Other,
}

/// What `path` names, symbolic links followed.
pub(crate) fn path_kind(path: &CStr) -> Result<PathKind> {
    let mut mode: c_uint = 0;
    // SAFETY: `path` is NUL-terminated; `mode` is writable.
    to_result(unsafe { ffi::dst_file_path_mode(path.as_char_ptr(), &mut mode) })?;
    Ok(kind_of(mode))
}

/// The kind of an inode of type `mode` (its `S_IFMT` bits).
fn kind_of(mode: c_uint) -> PathKind {
    match mode {
        bindings::S_IFBLK => PathKind::Block,
        bindings::S_IFREG => PathKind::Regular,
        bindings::S_IFDIR => PathKind::Directory,
        _ => PathKind::Other,
    }
}

/// An open file, closed on drop.
///
/// # Invariants
///
/// `0` was returned by `filp_open` and is owned by this value.
struct OpenFile(NonNull<bindings::file>);

impl OpenFile {
    /// `filp_open(path, flags)`, with the caller's permissions.
    fn open(path: &CStr, flags: u32) -> Result<Self> {
        // SAFETY: `path` is NUL-terminated; the mode is unused without
        // O_CREAT. The flags are small constants: the cast is lossless.
        let file = unsafe { bindings::filp_open(path.as_char_ptr(), flags as c_int, 0) };
        let file = NonNull::new(from_err_ptr(file)?).ok_or(ENOENT)?;
        // INVARIANT: the open succeeded; we own the file.
        Ok(OpenFile(file))
    }

    fn raw(&self) -> *mut c_void {
        self.0.as_ptr().cast()
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        // SAFETY: we own the file (type invariant); it is released once.
        unsafe { bindings::fput(self.0.as_ptr()) };
    }
}

/// A regular file served by one export.
///
/// # Invariants
///
/// `file` is a regular file, and its inode is claimed (`dst_file_claim`)
/// by this value until it is dropped. `logical_block` is a power of two from
/// 512 to 4096, a multiple of the direct IO alignment if `direct`.
pub(crate) struct BackingFile {
    file: OpenFile,
    direct: bool,
    logical_block: u32,
    /// The file system's block size.
    fs_block: u32,
    can_fallocate: bool,
}

// SAFETY: an open file may be used and released from any task.
unsafe impl Send for BackingFile {}
// SAFETY: file IO, fsync and fallocate may run concurrently on one file;
// the fields are not changed after `open`.
unsafe impl Sync for BackingFile {}

impl BackingFile {
    /// Opens the regular file at `path` for reading (and writing if
    /// `write`), with direct IO if its file system allows it, and claims
    /// it: `EBUSY` if another export serves it already.
    pub(crate) fn open(path: &CStr, write: bool) -> Result<Self> {
        let flags = bindings::O_LARGEFILE
            | if write {
                bindings::O_RDWR
            } else {
                bindings::O_RDONLY
            };
        // Direct IO first. A file system without it refuses the open with
        // EINVAL (no FMODE_CAN_ODIRECT); one that cannot do it on this file,
        // or needs more alignment than a logical block may have, says so
        // to `direct_block`. Either way the file is served buffered.
        let direct = match OpenFile::open(path, flags | bindings::O_DIRECT) {
            Ok(file) => direct_block(&file).map(|block| (file, block)),
            Err(e) if e == EINVAL => None,
            Err(e) => return Err(e),
        };
        let (file, direct, logical_block) = match direct {
            Some((file, block)) => (file, true, block),
            None => (OpenFile::open(path, flags)?, false, SECTOR_SIZE),
        };
        // The path was a regular file when looked up; it still must be.
        // SAFETY: the file is open.
        if kind_of(unsafe { ffi::dst_file_mode(file.raw()) }) != PathKind::Regular {
            return Err(EINVAL);
        }
        // SAFETY: the file is open.
        to_result(unsafe { ffi::dst_file_claim(file.raw()) })?;
        // SAFETY: the file is open.
        let (fs_block, can_fallocate) = unsafe {
            (
                ffi::dst_file_block_size(file.raw()),
                ffi::dst_file_can_fallocate(file.raw()),
            )
        };
        // INVARIANT: a regular file, claimed above; `logical_block` checked
        // by `direct_block` or 512.
        Ok(BackingFile {
            file,
            direct,
            logical_block,
            fs_block,
            can_fallocate,
        })
    }

    fn raw(&self) -> *mut c_void {
        self.file.raw()
    }

    /// Whether READ and WRITE go to the storage directly (asynchronously);
    /// otherwise they go through the page cache and block.
    pub(crate) fn is_direct(&self) -> bool {
        self.direct
    }

    /// The file's size in bytes, now.
    pub(crate) fn size(&self) -> u64 {
        // SAFETY: the file is open (type invariant).
        unsafe { ffi::dst_file_size(self.raw()) }
    }

    /// Logical block size: the direct IO alignment, or 512.
    pub(crate) fn logical_block_size(&self) -> u32 {
        self.logical_block
    }

    /// The file system's block size: smaller or unaligned writes cost it
    /// a read-modify-write (and make direct IO synchronous on some).
    pub(crate) fn physical_block_size(&self) -> u32 {
        self.fs_block
    }

    /// Whether the file system has `fallocate`, for DISCARD (punching
    /// holes) and WRITE_ZEROES. Whether it supports the modes used is
    /// known only when they are tried: an answer of `EOPNOTSUPP` becomes
    /// NOT_SUPPORTED for that request.
    pub(crate) fn can_fallocate(&self) -> bool {
        self.can_fallocate
    }

    /// Makes every completed write durable, data and metadata (allocations
    /// in a sparse file included). Blocks.
    pub(crate) fn flush(&self) -> Result {
        // SAFETY: the file is open (type invariant); may sleep, and the
        // callers run in process context.
        to_result(unsafe { bindings::vfs_fsync(self.raw().cast(), 0) })
    }

    fn fallocate(&self, mode: c_int, offset: u64, len: u64) -> Result {
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(EINVAL);
        };
        // SAFETY: the file is open (type invariant); the range was checked
        // against the export's size by the caller, and the VFS checks it
        // again.
        to_result(unsafe { bindings::vfs_fallocate(self.raw().cast(), mode, offset, len) })
    }

    /// Discards `len` bytes at `offset` by punching a hole: they read as
    /// zeroes and take no space. Blocks.
    pub(crate) fn discard(&self, offset: u64, len: u64) -> Result {
        self.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len)
    }

    /// Makes `len` bytes at `offset` read as zeroes: a hole if `unmap`,
    /// else zeroed allocated space. Falls back on the other mode, or for
    /// `!unmap` on a hole then an allocation, where the file system has
    /// only one of them. Blocks.
    pub(crate) fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> Result {
        let punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
        let zero = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
        let unsupported = |r: &Result| matches!(r, Err(e) if crate::bdev::is_not_supported(*e));
        if unmap {
            let r = self.fallocate(punch, offset, len);
            if unsupported(&r) {
                return self.fallocate(zero, offset, len);
            }
            return r;
        }
        let r = self.fallocate(zero, offset, len);
        if !unsupported(&r) {
            return r;
        }
        self.fallocate(punch, offset, len)?;
        self.fallocate(FALLOC_FL_KEEP_SIZE, offset, len)
    }

    /// Synchronously reads or writes the pages at byte `offset` (a
    /// multiple of the logical block): for buffered IO, on the export's
    /// workqueue. Blocks.
    pub(crate) fn rw_blocking(&self, pages: &PageBuf, op: BioOp, offset: u64) -> Result {
        let (write, fua) = parts(op);
        let pos = i64::try_from(offset).map_err(|_| EINVAL)?;
        let vecs = pages.bvecs();
        // SAFETY: the file is open; the pages are held by the caller, which
        // owns the IO, until this returns; the count is their length. With
        // no `done` the IO is synchronous on the shim's own kiocb.
        let ret = unsafe {
            ffi::dst_file_rw(
                self.raw(),
                core::ptr::null_mut(),
                vecs.as_ptr().cast(),
                vecs.len() as c_uint,
                pages.len(),
                pos,
                write,
                fua,
                None,
            )
        };
        result_of(ret, pages.len())
    }
}

impl Drop for BackingFile {
    fn drop(&mut self) {
        // SAFETY: the file is open and its inode claimed by us (type
        // invariant); `file` is closed after this.
        unsafe { ffi::dst_file_unclaim(self.raw()) };
    }
}

/// Starts an asynchronous READ or WRITE of the owner's pages at byte
/// `offset` on its file, served with direct IO (`bdev::submit` for a file).
/// On success the owner goes to [`BioOwner::complete`] once the IO has
/// completed (maybe within this call already, if the file system did it
/// synchronously); on failure it is returned at once.
pub(crate) fn submit<T: BioOwner>(
    owner: Pin<KBox<T>>,
    op: BioOp,
    offset: u64,
) -> Result<(), (Pin<KBox<T>>, Error)> {
    let (write, fua) = parts(op);
    let Some(data) = owner.io_data() else {
        return Err((owner, EINVAL));
    };
    let file = match data.backing() {
        Backing::File(f) if f.direct => f.raw(),
        _ => return Err((owner, EINVAL)),
    };
    let Ok(pos) = i64::try_from(offset) else {
        return Err((owner, EINVAL));
    };
    let pages = data.pages();
    let (bvec, nr, count) = (
        pages.bvecs().as_ptr().cast::<c_void>(),
        pages.bvecs().len() as c_uint,
        pages.len(),
    );
    let state = data.aio().0.get();
    // From here on only raw pointers into the owner are used: it is leaked,
    // then owned by the completion, or taken back below.
    // SAFETY: not moved out of the box; the pointer is given back, pinned,
    // exactly once: by `aio_done` or below.
    let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(owner) });
    // SAFETY: `state` is the owner's `Aio`, which lives as long as the
    // owner; no other IO of the owner is in flight.
    unsafe { core::ptr::addr_of_mut!((*state).owner).write(raw.cast()) };
    // SAFETY: the file stays open while the owner holds its backing store
    // (until its completion), and its session holds it during this call;
    // the kiocb (the first field of `state`, `repr(C)`), the bio_vecs and
    // the pages, `count` bytes, are the owner's, which the shim leaves alone
    // once the IO is queued.
    let ret = unsafe {
        ffi::dst_file_rw(
            file,
            state.cast(),
            bvec,
            nr,
            count,
            pos,
            write,
            fua,
            Some(aio_done::<T>),
        )
    };
    if ret == EIOCBQUEUED {
        return Ok(());
    }
    // Done without the completion (the file system ran it synchronously,
    // or refused it): the owner is ours again.
    // SAFETY: `raw` came from `KBox::into_raw` above, and `aio_done` is
    // never called for a kiocb that was not queued.
    let owner = unsafe { Pin::new_unchecked(KBox::from_raw(raw)) };
    T::complete(owner, result_of(ret, count));
    Ok(())
}

/// The logical block size direct IO on `file` allows, if it does: its
/// alignment, at least 512, at most 4096.
fn direct_block(file: &OpenFile) -> Option<u32> {
    // SAFETY: the file is open.
    let align = unsafe { ffi::dst_file_dio_align(file.raw()) };
    let block = align.max(SECTOR_SIZE);
    (align != 0 && block.is_power_of_two() && block <= proto::MAX_LOGICAL_BLOCK_SIZE)
        .then_some(block)
}

/// Direction and FUA of an IO.
fn parts(op: BioOp) -> (bool, bool) {
    match op {
        BioOp::Read => (false, false),
        BioOp::Write { fua } => (true, fua),
    }
}

/// The result of a file IO of `count` bytes that returned `ret`. A short
/// one (the file was truncated under the export) is an IO error: the rest
/// of the pages hold nothing of it.
fn result_of(ret: isize, count: usize) -> Result {
    match usize::try_from(ret) {
        Ok(n) if n == count => Ok(()),
        Ok(_) => Err(EIO),
        // A negative errno, in -4095..-1 for any file system.
        Err(_) => Err(Error::from_errno(ret as c_int)),
    }
}

/// One file IO's kiocb, and the owner its completion hands back: in the
/// request's state, so an IO allocates nothing for it.
#[repr(C)]
struct AioState {
    /// First: the completion finds the state from the kiocb.
    iocb: bindings::kiocb,
    owner: *mut c_void,
}

/// Room for the asynchronous state of one file IO, in its owner.
pub(crate) struct Aio(Opaque<AioState>);

// SAFETY: the state is only used by the IO of its owner, which runs on one
// task at a time (then in its completion); the raw pointers in it are the
// owner's own and the file's.
unsafe impl Send for Aio {}
// SAFETY: shared references never touch the state; only an IO of the
// owner does (through `submit`, which is given it by its sole user).
unsafe impl Sync for Aio {}

impl Aio {
    /// Room for a state, set up by `submit`.
    pub(crate) fn new() -> Self {
        Aio(Opaque::uninit())
    }
}

/// The `ki_complete` of a queued file IO of owner type `T`.
///
/// # Safety
///
/// `iocb` is the kiocb of an [`AioState`] set up by [`submit`]
/// for owner type `T`, whose IO was queued and has completed; called once.
unsafe extern "C" fn aio_done<T: BioOwner>(iocb: *mut c_void, ret: c_long) {
    // SAFETY: the kiocb is valid until the owner is given back below; the
    // file it names is held open by the owner.
    unsafe { ffi::dst_file_end_write(iocb) };
    // SAFETY: the kiocb is the first field of its `AioState` (function
    // contract), whose `owner` `submit` set before queuing.
    let raw = unsafe { (*iocb.cast::<AioState>()).owner }.cast::<T>();
    // SAFETY: `raw` came from `KBox::into_raw` of a pinned box in `submit`
    // and is taken back exactly once, here.
    let owner = unsafe { Pin::new_unchecked(KBox::from_raw(raw)) };
    let count = owner.io_data().map_or(0, |d| d.pages().len());
    T::complete(owner, result_of(ret, count));
}
