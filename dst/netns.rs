// SPDX-License-Identifier: GPL-2.0

//! Network namespaces: who holds them, and what happens when one goes away.
//!
//! C header: [`include/net/net_namespace.h`](srctree/include/net/net_namespace.h)
//!
//! A configuration request holds a counted reference ([`Net`]) on the
//! namespace it was sent from, for as long as it runs. Exports and devices
//! belong to the namespace they were created in, but hold no reference on
//! it ([`HomeNet`]), as kernel sockets hold none: a counted one would keep a
//! namespace whose last process has left alive for ever, with its exports
//! and devices unreachable by any `dstcfg`. Instead, when the namespace goes
//! away, its pre-exit hook ([`Pernet`]) takes every export and device of it
//! down, before the namespace is dismantled.

use core::ptr::NonNull;

use kernel::{bindings, error::to_result, prelude::*};

use crate::registry;

mod ffi {
    use kernel::{bindings, ffi::c_int};

    extern "C" {
        pub(super) fn dst_shim_put_net(net: *mut bindings::net);
        pub(super) fn dst_shim_pernet_register() -> c_int;
        pub(super) fn dst_shim_pernet_unregister();
    }
}

/// A counted reference to a network namespace.
///
/// # Invariants
///
/// `ptr` points to a `struct net` on which this value holds one reference
/// (taken with `get_net`), dropped with `put_net`.
pub(crate) struct Net {
    ptr: NonNull<bindings::net>,
}

// SAFETY: a `struct net` reference may be used and dropped from any thread.
unsafe impl Send for Net {}
// SAFETY: `Net` only hands out the pointer to functions that are thread-safe.
unsafe impl Sync for Net {}

impl Net {
    /// Takes ownership of a reference the caller already holds.
    ///
    /// # Safety
    ///
    /// `ptr` must be a valid `struct net` on which the caller owns one
    /// reference, which is transferred to the returned value.
    pub(crate) unsafe fn from_raw(ptr: *mut bindings::net) -> Option<Self> {
        // INVARIANT: the caller transfers one reference.
        NonNull::new(ptr).map(|ptr| Net { ptr })
    }

    /// The namespace, as the home of an export or device created under
    /// this reference.
    pub(crate) fn home(&self) -> HomeNet {
        HomeNet { ptr: self.ptr }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // SAFETY: by the type invariant this value owns one reference.
        unsafe { ffi::dst_shim_put_net(self.ptr.as_ptr()) };
    }
}

/// The namespace an export or device belongs to; holds no reference.
///
/// It stays valid while the object that holds it exists: the object is
/// created under a configuration request's [`Net`], is then listed in the
/// registry, and a namespace is dismantled only after its pre-exit hook has
/// taken every listed object of it down ([`Pernet`]); an object is removed
/// from the registry only by a request from its own namespace (which holds
/// a [`Net`] until the object is stopped), by that hook, or at module
/// unload, before the hook is unregistered. Also a token: two homes are
/// equal when they are the same namespace.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct HomeNet {
    ptr: NonNull<bindings::net>,
}

// SAFETY: the pointer is only passed to C functions that are thread-safe.
unsafe impl Send for HomeNet {}
// SAFETY: as for `Send`.
unsafe impl Sync for HomeNet {}

impl HomeNet {
    /// The namespace, for C functions that take it (see the type's
    /// documentation for why it is live).
    pub(crate) fn as_raw(&self) -> *mut bindings::net {
        self.ptr.as_ptr()
    }
}

/// The registered pre-exit hook: a namespace that goes away takes its
/// exports and devices with it. Unregistered on drop.
pub(crate) struct Pernet(());

impl Pernet {
    /// Registers the hook.
    pub(crate) fn register() -> Result<Self> {
        // SAFETY: no precondition; undone by `Drop`.
        to_result(unsafe { ffi::dst_shim_pernet_register() })?;
        Ok(Pernet(()))
    }
}

impl Drop for Pernet {
    fn drop(&mut self) {
        // SAFETY: registered by `register`, by the type invariant.
        unsafe { ffi::dst_shim_pernet_unregister() };
    }
}

/// Called by the shim's `pre_exit` of every namespace going away (its last
/// reference is gone, its network still works): stops every export and
/// deletes every device that belongs to it.
///
/// # Safety
///
/// `net` must be the namespace being dismantled.
#[no_mangle]
pub(crate) unsafe extern "C" fn dst_rs_net_pre_exit(net: *mut bindings::net) {
    if let Some(ptr) = NonNull::new(net) {
        registry::take_down(HomeNet { ptr });
    }
}
