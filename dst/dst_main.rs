// SPDX-License-Identifier: GPL-2.0

//! DST, a network block device: the crate root of `dst.ko`.
//!
//! An export node serves a local block device over TCP; a local node connects
//! to it and provides `/dev/dstN`. Both halves live in this module and are
//! configured from userspace over the generic netlink family `dst`
//! (`include/uapi/linux/dst.h`, tool: `tools/dstcfg`).
//!
//! This file only declares the modules and holds the module state; each concern
//! lives in its own file.

use kernel::prelude::*;

mod acl;
mod backing_file;
mod bdev;
mod blk;
mod crypto;
mod epoch;
mod error;
mod export;
mod handoff;
mod handshake;
mod kthread;
mod local_node;
mod netlink;
mod netns;
mod pages;
mod placement;
mod proto;
mod registry;
mod rekey;
mod security;
mod socket;
mod spares;
mod sysfs;
mod thread_pool;
mod trans;

module! {
    type: Dst,
    name: "dst",
    authors: ["DST developers"],
    description: "DST network block device: export and local nodes over TCP",
    license: "GPL",
    params: {
        crypto_bench: u32 {
            default: 0,
            description: "1: time sealing 256 MiB per protection mode at load",
        },
    },
}

/// The module version reported over netlink (`DST_A_VERSION`).
pub(crate) const VERSION: &CStr = c"0.1.0";

/// Module state. Dropping it tears everything down in field order: first no
/// new commands, then every device and export, then the block major.
struct Dst {
    /// Cuts device creations under way short, before the family waits for
    /// them.
    _unload: registry::Unload,
    /// The registered generic netlink family; unregistered on unload.
    _genl: netlink::Family,
    /// Deletes every device and export when dropped.
    _registry: registry::Owner,
    /// The namespace pre-exit hook; after the registry, which it empties
    /// namespace by namespace.
    _pernet: netns::Pernet,
    /// The "dst" block major.
    _major: blk::Major,
    /// The export's bio set; after the registry, whose exports use it.
    _bios: bdev::BioSet,
    /// The crypto worker pool; after the registry, whose devices and
    /// exports are its only users.
    _pool: thread_pool::Pool,
    /// `/sys/kernel/dst`; after the registry, whose exports live in it.
    _sysfs: sysfs::Root,
}

impl kernel::Module for Dst {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        registry::init();
        let pool = thread_pool::Pool::create(kernel::cpu::nr_cpu_ids())?;
        crypto::self_test(*module_parameters::crypto_bench.value() != 0)?;
        let sysfs = sysfs::Root::create()?;
        let major = blk::Major::register()?;
        let bios = bdev::BioSet::init()?;
        let pernet = netns::Pernet::register()?;
        let genl = netlink::Family::register()?;
        pr_info!(
            "dst {} loaded (wire protocol {})\n",
            VERSION,
            proto::VERSION
        );
        Ok(Dst {
            _unload: registry::Unload,
            _genl: genl,
            _registry: registry::Owner,
            _pernet: pernet,
            _major: major,
            _bios: bios,
            _pool: pool,
            _sysfs: sysfs,
        })
    }
}

impl Drop for Dst {
    fn drop(&mut self) {
        pr_info!("dst unloading\n");
    }
}
