// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/dst/exportN/`: a read-only directory per export, next to
//! the devices' `/sys/block/dstN/dst/` (which `blk.rs` provides).
//!
//! The kobjects and attribute tables are static C in `shim_sysfs.c`; each
//! `show` calls `dst_rs_export_show` (in `export/mod.rs`), and the export
//! formats the value into a [`PageWriter`].

use core::ptr::NonNull;

use kernel::{
    error::{from_err_ptr, to_result},
    ffi::c_void,
    fmt,
    prelude::*,
};

use crate::proto::Name;

mod ffi {
    use kernel::ffi::{c_int, c_void};

    extern "C" {
        pub(super) fn dst_shim_sysfs_init() -> c_int;
        pub(super) fn dst_shim_sysfs_exit();
        pub(super) fn dst_shim_export_dir_add(index: u32, data: *mut c_void) -> *mut c_void;
        pub(super) fn dst_shim_export_dir_del(kobj: *mut c_void);
    }
}

/// `/sys/kernel/dst`, for the module's lifetime.
///
/// # Invariants
///
/// The directory exists while this value lives; only module init makes one.
pub(crate) struct Root(());

impl Root {
    /// Creates `/sys/kernel/dst`.
    pub(crate) fn create() -> Result<Self> {
        // SAFETY: called once, from module init, before any export exists.
        to_result(unsafe { ffi::dst_shim_sysfs_init() })?;
        // INVARIANT: created above.
        Ok(Root(()))
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        // SAFETY: the directory exists (type invariant); the module state
        // drops the root after the registry, so no export directory is left.
        unsafe { ffi::dst_shim_sysfs_exit() }
    }
}

/// `/sys/kernel/dst/exportN/`, removed on drop.
///
/// # Invariants
///
/// `kobj` is the directory's kobject, made by `dst_shim_export_dir_add` with
/// a data pointer that stays valid while this value lives.
pub(crate) struct ExportDir {
    kobj: NonNull<c_void>,
}

// SAFETY: the kobject may be removed from any task.
unsafe impl Send for ExportDir {}
// SAFETY: `ExportDir` offers no methods through `&self`.
unsafe impl Sync for ExportDir {}

impl ExportDir {
    /// Creates `exportN`, whose `show` calls get `data`.
    ///
    /// # Safety
    ///
    /// `data` must stay valid until the returned value is dropped.
    pub(crate) unsafe fn add(index: u32, data: *const c_void) -> Result<Self> {
        // SAFETY: the root exists while exports do; `data` stays valid as
        // the caller guarantees.
        let kobj = from_err_ptr(unsafe { ffi::dst_shim_export_dir_add(index, data.cast_mut()) })?;
        let kobj = NonNull::new(kobj).ok_or(ENOMEM)?;
        // INVARIANT: made above with `data`.
        Ok(ExportDir { kobj })
    }
}

impl Drop for ExportDir {
    fn drop(&mut self) {
        // SAFETY: the kobject is ours (type invariant). Removal waits for
        // running `show` calls, so none uses `data` after this.
        unsafe { ffi::dst_shim_export_dir_del(self.kobj.as_ptr()) };
    }
}

/// A `fmt::Write` into a sysfs page buffer; output past the end is cut.
pub(crate) struct PageWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> PageWriter<'a> {
    /// A writer into the `PAGE_SIZE` buffer sysfs passes to `show`.
    ///
    /// # Safety
    ///
    /// `buf` must be a sysfs buffer of `PAGE_SIZE` bytes for exclusive use
    /// during `'a`.
    pub(crate) unsafe fn new(buf: *mut u8) -> Self {
        // SAFETY: guaranteed by the caller.
        let buf = unsafe { core::slice::from_raw_parts_mut(buf, kernel::page::PAGE_SIZE) };
        PageWriter { buf, len: 0 }
    }

    /// Ends the value with a newline; returns what `show` returns.
    pub(crate) fn finish(mut self, r: kernel::fmt::Result) -> isize {
        if r.is_err() {
            return EINVAL.to_errno() as isize;
        }
        let _ = kernel::fmt::Write::write_str(&mut self, "\n");
        self.len as isize
    }
}

impl kernel::fmt::Write for PageWriter<'_> {
    fn write_str(&mut self, s: &str) -> kernel::fmt::Result {
        let room = self.buf.len().saturating_sub(self.len);
        let n = s.len().min(room);
        if let (Some(d), Some(src)) = (
            self.buf.get_mut(self.len..self.len + n),
            s.as_bytes().get(..n),
        ) {
            d.copy_from_slice(src);
            self.len += n;
        }
        Ok(())
    }
}

/// For log lines (`pr_*!`): a name's bytes (a valid name is printable
/// ASCII). Here, beside `write_name`, because `proto.rs` is shared with
/// userspace and knows nothing of the kernel's formatting trait.
impl kernel::fmt::Display for Name {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        write_name(f, self)
    }
}

/// Writes `name` (an algorithm, an identity) into a sysfs attribute.
pub(crate) fn write_name(out: &mut dyn fmt::Write, name: &Name) -> fmt::Result {
    name.as_bytes()
        .iter()
        .try_for_each(|&c| out.write_char(char::from(c)))
}
