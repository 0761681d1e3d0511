// SPDX-License-Identifier: GPL-2.0

//! The module's exports and devices, behind one global mutex.
//!
//! Configuration commands take the lock to look things up and change the
//! lists, never across network IO or a drain: a device being created has
//! only its index reserved while it connects, and a device being deleted
//! stays listed (as closing) while its IO drains. The IO path never takes
//! this lock.

use kernel::{prelude::*, sync::Arc};

use crate::{export::Export, local_node::Device, socket::SockAddr};

/// Largest device index (the policy's limit for DST_A_INDEX).
const MAX_INDEX: u32 = 1023;

/// Every export and device of the module.
pub(crate) struct Registry {
    exports: KVec<Arc<Export>>,
    devices: KVec<Arc<Device>>,
    /// Indexes of devices being created.
    creating: KVec<u32>,
}

kernel::sync::global_lock! {
    // SAFETY: initialised by `init`, from module init, before the netlink
    // family (its only user) is registered.
    unsafe(uninit) static REGISTRY: Mutex<Registry> = Registry {
        exports: KVec::new(),
        devices: KVec::new(),
        creating: KVec::new(),
    };
}

/// Initialises the registry lock. Called once, from module init.
pub(crate) fn init() {
    // SAFETY: called once, before any other use of the lock.
    unsafe { REGISTRY.init() };
}

/// Locks the registry.
pub(crate) fn lock() -> impl core::ops::DerefMut<Target = Registry> {
    REGISTRY.lock()
}

/// Owner of the registry's contents: dropping it, on module unload after the
/// netlink family is gone (so no command can race with it), deletes every
/// device and stops every export.
pub(crate) struct Owner;

impl Drop for Owner {
    fn drop(&mut self) {
        clear();
    }
}

fn clear() {
    let mut reg = lock();
    while let Some(dev) = reg.devices.pop() {
        drop(dev);
    }
    while let Some(export) = reg.exports.pop() {
        export.stop();
    }
}

impl Registry {
    /// The exports, in creation order.
    pub(crate) fn exports(&self) -> &[Arc<Export>] {
        &self.exports
    }

    /// The devices, in creation order.
    pub(crate) fn devices(&self) -> &[Arc<Device>] {
        &self.devices
    }

    /// The export listening on `addr`.
    pub(crate) fn export_by_addr(&self, addr: &SockAddr) -> Option<&Arc<Export>> {
        self.exports.iter().find(|e| e.addr() == *addr)
    }

    /// Adds a started export.
    pub(crate) fn add_export(&mut self, export: Arc<Export>) -> Result {
        self.exports.push(export, GFP_KERNEL).map_err(|_| ENOMEM)
    }

    /// Removes the export listening on `addr`; the caller stops it.
    pub(crate) fn remove_export(&mut self, addr: &SockAddr) -> Option<Arc<Export>> {
        let i = self.exports.iter().position(|e| e.addr() == *addr)?;
        self.exports.remove(i).ok()
    }

    /// The device /dev/dst<index>.
    pub(crate) fn device(&self, index: u32) -> Option<&Arc<Device>> {
        self.devices.iter().find(|d| d.index() == index)
    }

    /// Whether a device has this index, or is being created with it.
    pub(crate) fn index_used(&self, index: u32) -> bool {
        self.device(index).is_some() || self.creating.contains(&index)
    }

    /// The lowest unused device index.
    pub(crate) fn free_index(&self) -> Option<u32> {
        (0..=MAX_INDEX).find(|&i| !self.index_used(i))
    }

    /// Reserves an unused index for a device about to be created.
    pub(crate) fn reserve_index(&mut self, index: u32) -> Result {
        self.creating.push(index, GFP_KERNEL).map_err(|_| ENOMEM)
    }

    /// Gives up a reservation (the device was added, or not created).
    pub(crate) fn release_index(&mut self, index: u32) {
        self.creating.retain(|i| *i != index);
    }

    /// The lowest index no export uses (exports are numbered apart from
    /// devices: exportN in events, lists and sysfs).
    pub(crate) fn free_export_index(&self) -> Option<u32> {
        (0..=MAX_INDEX).find(|&i| self.exports.iter().all(|e| e.index() != i))
    }

    /// Adds a created device.
    pub(crate) fn add_device(&mut self, dev: Arc<Device>) -> Result {
        self.devices.push(dev, GFP_KERNEL).map_err(|_| ENOMEM)
    }

    /// Removes /dev/dst<index>; dropping the last reference deletes the
    /// device.
    pub(crate) fn remove_device(&mut self, index: u32) -> Option<Arc<Device>> {
        let i = self.devices.iter().position(|d| d.index() == index)?;
        self.devices.remove(i).ok()
    }
}
