// SPDX-License-Identifier: GPL-2.0

//! Fencing epochs of local devices: numbers that only grow, across device
//! re-creation and reboots too, so that an export can tell a device's newer
//! connections from older ones (Documentation/protocol.md, "Reconnecting
//! and fencing").
//!
//! An epoch is the wall clock's seconds when it was taken, or one more than
//! the previous epoch if that is larger. A device that supersedes its epoch
//! more than once a second runs ahead of the clock by that much; the
//! guarantee across re-creation holds as long as it does not run ahead by
//! more than the time until it is created again, and the clock does not go
//! back.

use kernel::sync::atomic::{Acquire, Atomic, Full};

mod ffi {
    extern "C" {
        pub(super) fn dst_shim_wall_seconds() -> u32;
    }
}

fn wall_seconds() -> u32 {
    // SAFETY: no preconditions; reads the wall clock.
    unsafe { ffi::dst_shim_wall_seconds() }
}

/// A device's current fencing epoch.
pub(crate) struct Epoch(Atomic<u32>);

impl Epoch {
    /// A fresh epoch, newer than any this host took before (clock allowing).
    pub(crate) fn new() -> Self {
        Epoch(Atomic::new(wall_seconds().max(1)))
    }

    /// The current epoch.
    pub(crate) fn get(&self) -> u32 {
        self.0.load(Acquire)
    }

    /// Moves on from epoch `from`, if it is still the current one: the
    /// device's connections of `from` and older are then superseded. Several
    /// callers superseding the same epoch move it on once.
    pub(crate) fn supersede(&self, from: u32) {
        let next = wall_seconds().max(from.saturating_add(1));
        let _ = self.0.cmpxchg(from, next, Full);
    }
}
