// SPDX-License-Identifier: GPL-2.0

//! The module's exports and devices, behind one global mutex.
//!
//! Configuration commands take the lock to look things up and change the
//! lists, never across network IO or a drain: a device being created has
//! only its index reserved while it connects, and a device being deleted
//! stays listed (as closing) while its IO drains. The IO path never takes
//! this lock.

use kernel::{
    prelude::*,
    sync::Arc,
    time::{delay::fsleep, Delta},
};

use crate::{
    error::Refusal,
    export::{Export, Port},
    local_node::Device,
    netns::HomeNet,
    proto::Name,
    socket::{SockAddr, Socket},
};

/// Largest device index (the policy's limit for DST_A_INDEX).
const MAX_INDEX: u32 = 1023;

/// Every export and device of the module.
pub(crate) struct Registry {
    exports: KVec<Arc<Export>>,
    devices: KVec<Arc<Device>>,
    /// Indexes of devices being created.
    creating: KVec<u32>,
    /// The sockets of the handshakes under way of devices being created,
    /// with the device's index (see [`Handshake`]).
    handshakes: KVec<(u32, Arc<Socket>)>,
    /// The module is being unloaded: no device creation starts a handshake.
    unloading: bool,
}

kernel::sync::global_lock! {
    // SAFETY: initialised by `init`, from module init, before the netlink
    // family (its only user) is registered.
    unsafe(uninit) static REGISTRY: Mutex<Registry> = Registry {
        exports: KVec::new(),
        devices: KVec::new(),
        creating: KVec::new(),
        handshakes: KVec::new(),
        unloading: false,
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

/// Dropped first on module unload, before the netlink family is
/// unregistered (which waits for the commands under way): cuts the device
/// creations under way short by shutting their handshakes' sockets down, so
/// that unloading does not wait for a silent export node for up to the
/// request timeout of every queue, and lets no new handshake start.
pub(crate) struct Unload;

impl Drop for Unload {
    fn drop(&mut self) {
        loop {
            {
                let mut reg = lock();
                reg.unloading = true;
                if reg.creating.is_empty() {
                    return;
                }
                for (_, sock) in reg.handshakes.iter() {
                    sock.shutdown();
                }
            }
            // A connect that began after its socket was shut down still
            // waits: shut down again until every creation has ended.
            fsleep(Delta::from_millis(20));
        }
    }
}

/// A handshake of a device being created, tracked while it runs so that
/// unloading the module can cut it short (see [`Unload`]).
pub(crate) struct Handshake(u32);

impl Handshake {
    /// Tracks `sock`, the socket of a handshake for device `index`; fails
    /// with `ENODEV` if the module is being unloaded.
    pub(crate) fn track(index: u32, sock: &Arc<Socket>) -> Result<Self> {
        let mut reg = lock();
        if reg.unloading {
            return Err(ENODEV);
        }
        reg.handshakes.push((index, sock.clone()), GFP_KERNEL)?;
        Ok(Handshake(index))
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        lock().handshakes.retain(|(i, _)| *i != self.0);
    }
}

/// Takes down every export and device of namespace `net`, which is going
/// away (see `netns.rs`): devices first (their IO may still complete
/// through an export of the same namespace), whatever is open on them sees
/// its IO fail; then the exports.
pub(crate) fn take_down(net: HomeNet) {
    loop {
        let dev = {
            let mut reg = lock();
            let Some(i) = reg.devices.iter().position(|d| d.net() == net) else {
                break;
            };
            reg.devices.remove(i).ok()
        };
        if let Some(dev) = dev {
            dev.close_opens(true);
            pr_info!(
                "dst{}: its network namespace is going away: deleting it\n",
                dev.index()
            );
            // The last reference: drains, stops the threads, frees.
            drop(dev);
        }
    }
    loop {
        let export = {
            let mut reg = lock();
            let Some(i) = reg.exports.iter().position(|e| e.net() == net) else {
                break;
            };
            reg.exports.remove(i).ok()
        };
        if let Some(export) = export {
            export.stop();
        }
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

    /// The port other exports of namespace `net` listen on at `addr`.
    pub(crate) fn port_at(&self, net: HomeNet, addr: &SockAddr) -> Option<Arc<Port>> {
        self.exports
            .iter()
            .filter(|e| e.net() == net && e.addr() == *addr)
            .find_map(|e| e.port())
    }

    /// Where in `exports` the export of namespace `net` at `addr` is: the
    /// one named `name`, or without a name the only one there.
    fn position(
        &self,
        net: HomeNet,
        addr: &SockAddr,
        name: Option<&Name>,
    ) -> Result<usize, Refusal> {
        let at = |e: &Arc<Export>| e.net() == net && e.addr() == *addr;
        if let Some(name) = name {
            return self
                .exports
                .iter()
                .position(|e| at(e) && e.name() == name)
                .ok_or(Refusal::new(
                    ENOENT,
                    c"no export of this name listens on this address and port",
                ));
        }
        let mut there = self.exports.iter().enumerate().filter(|(_, e)| at(e));
        match (there.next(), there.next()) {
            (Some((i, _)), None) => Ok(i),
            (None, _) => Err(Refusal::new(
                ENOENT,
                c"no export listens on this address and port",
            )),
            (Some(_), Some(_)) => Err(Refusal::new(
                EINVAL,
                c"several exports listen on this address and port: name one",
            )),
        }
    }

    /// The export of namespace `net` at `addr`: the one named `name`, or
    /// without a name the only one there.
    pub(crate) fn export_at(
        &self,
        net: HomeNet,
        addr: &SockAddr,
        name: Option<&Name>,
    ) -> Result<&Arc<Export>, Refusal> {
        let i = self.position(net, addr, name)?;
        self.exports.get(i).ok_or(Refusal::from(ENOENT))
    }

    /// Adds a started export.
    pub(crate) fn add_export(&mut self, export: Arc<Export>) -> Result {
        self.exports.push(export, GFP_KERNEL).map_err(|_| ENOMEM)
    }

    /// Removes the export [`Registry::export_at`] finds; the caller stops
    /// it.
    pub(crate) fn remove_export(
        &mut self,
        net: HomeNet,
        addr: &SockAddr,
        name: Option<&Name>,
    ) -> Result<Arc<Export>, Refusal> {
        let i = self.position(net, addr, name)?;
        self.exports.remove(i).map_err(|_| Refusal::from(ENOENT))
    }

    /// The device /dev/dst<index>, if it belongs to namespace `net`. The
    /// index is unique across namespaces (the disk's name is), but a
    /// namespace sees and changes only its own devices.
    pub(crate) fn device(&self, net: HomeNet, index: u32) -> Option<&Arc<Device>> {
        self.devices
            .iter()
            .find(|d| d.index() == index && d.net() == net)
    }

    /// Whether a device has this index, or is being created with it.
    pub(crate) fn index_used(&self, index: u32) -> bool {
        self.devices.iter().any(|d| d.index() == index) || self.creating.contains(&index)
    }

    /// The lowest unused device index.
    pub(crate) fn free_index(&self) -> Option<u32> {
        (0..=MAX_INDEX).find(|&i| !self.index_used(i))
    }

    /// Reserves an unused index for a device about to be created.
    pub(crate) fn reserve_index(&mut self, index: u32) -> Result {
        self.creating.push(index, GFP_KERNEL).map_err(|_| ENOMEM)
    }

    /// Whether the module is being unloaded (see [`Unload`]).
    pub(crate) fn unloading(&self) -> bool {
        self.unloading
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
