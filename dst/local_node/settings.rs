// SPDX-License-Identifier: GPL-2.0

//! A device's settings: the documented defaults, the timeouts and limits an
//! admin may change while the device runs, and what `dstcfg -a local`
//! asks for when it creates one.

use kernel::sync::atomic::{Atomic, Relaxed};

use crate::{netns::HomeNet, proto::Name, security::SecurityConfig, socket::SockAddr};

/// Default number of requests in flight.
pub(super) const DEFAULT_QUEUE_DEPTH: u32 = 128;

/// Default number of queues, each with its own connection.
pub(super) const DEFAULT_QUEUES: u32 = 1;

/// Default largest request, in pages (1 MiB).
pub(super) const DEFAULT_MAX_IO_PAGES: u32 = 256;
/// Largest DISCARD or WRITE_ZEROES request (64 MiB). The export runs each
/// as one synchronous call, and a request must end well within the request
/// timeout (15 s by default) also where the backing device zeroes by
/// writing zeroes (at 100 MB/s: under a second), or a large discard, mkfs's
/// for one, would time out and be resent forever.
pub(super) const MAX_ZEROING_BYTES: u32 = 64 << 20;

/// The loss timeout that never expires (`dstcfg --loss-timeout infinite`, as
/// NVMe's `ctrl_loss_tmo=-1`): IO waits for the export as long as it takes.
pub(crate) const LOSS_TIMEOUT_INFINITE: u32 = u32::MAX;
/// The longest finite loss timeout (a day, in ms).
pub(crate) const LOSS_TIMEOUT_MAX_MS: u32 = 86_400_000;

/// Timeouts and limits of a device; all changeable while it runs.
pub(crate) struct Settings {
    /// A request unanswered this long: reconnect and resend (ms).
    pub(crate) req_timeout_ms: Atomic<u32>,
    /// Resends of one request before it fails with EIO.
    pub(crate) max_resends: Atomic<u32>,
    /// Pause between reconnect attempts (ms).
    pub(crate) reconnect_delay_ms: Atomic<u32>,
    /// Ping an idle connection this often (ms); 0 = never.
    pub(crate) ping_interval_ms: Atomic<u32>,
    /// A ping unanswered this long: reconnect (ms).
    pub(crate) ping_timeout_ms: Atomic<u32>,
    /// Disconnected this long: queued and new IO fail until reconnected
    /// (ms); [`LOSS_TIMEOUT_INFINITE`]: never.
    pub(crate) loss_timeout_ms: Atomic<u32>,
}

/// One setting change; `None` leaves the value as it is.
#[derive(Default, Clone, Copy)]
pub(crate) struct SettingsUpdate {
    pub(crate) req_timeout_ms: Option<u32>,
    pub(crate) max_resends: Option<u32>,
    pub(crate) reconnect_delay_ms: Option<u32>,
    pub(crate) ping_interval_ms: Option<u32>,
    pub(crate) ping_timeout_ms: Option<u32>,
    pub(crate) loss_timeout_ms: Option<u32>,
}

impl Settings {
    /// The documented defaults (Documentation/design.md).
    pub(super) fn new() -> Self {
        Settings {
            req_timeout_ms: Atomic::new(15_000),
            max_resends: Atomic::new(10),
            reconnect_delay_ms: Atomic::new(1_000),
            ping_interval_ms: Atomic::new(5_000),
            ping_timeout_ms: Atomic::new(10_000),
            loss_timeout_ms: Atomic::new(60_000),
        }
    }

    /// Applies the values an update carries.
    pub(crate) fn apply(&self, u: &SettingsUpdate) {
        let set = |a: &Atomic<u32>, v: Option<u32>| {
            if let Some(v) = v {
                a.store(v, Relaxed);
            }
        };
        set(&self.req_timeout_ms, u.req_timeout_ms);
        set(&self.max_resends, u.max_resends);
        set(&self.reconnect_delay_ms, u.reconnect_delay_ms);
        set(&self.ping_interval_ms, u.ping_interval_ms);
        set(&self.ping_timeout_ms, u.ping_timeout_ms);
        set(&self.loss_timeout_ms, u.loss_timeout_ms);
    }

    /// The loss timeout in ms, `None` if infinite.
    pub(super) fn loss_timeout(&self) -> Option<u64> {
        match self.loss_timeout_ms.load(Relaxed) {
            LOSS_TIMEOUT_INFINITE => None,
            ms => Some(u64::from(ms)),
        }
    }

    /// How long a delete lets IO in flight drain before failing it: the
    /// loss timeout, or the request timeout if the loss timeout is
    /// infinite (a delete must end; it is the admin's own request).
    pub(super) fn delete_grace_ms(&self) -> u64 {
        self.loss_timeout()
            .unwrap_or_else(|| Self::get(&self.req_timeout_ms))
    }

    /// How long any one send on a connection may wait for room: the
    /// request timeout, but no longer than the loss timeout. A send blocked
    /// on a peer that takes nothing holds the sender thread, which is also
    /// the watchdog that enforces the loss timeout and a delete's grace;
    /// those must not wait for a longer send.
    pub(super) fn send_timeout_ms(&self) -> u32 {
        self.req_timeout_ms
            .load(Relaxed)
            .min(self.loss_timeout_ms.load(Relaxed))
    }

    pub(super) fn get(a: &Atomic<u32>) -> u64 {
        u64::from(a.load(Relaxed))
    }
}

/// What `dstcfg -a local` asks for.
pub(crate) struct DeviceConfig {
    /// Namespace to connect from, which the device belongs to.
    pub(crate) net: HomeNet,
    /// The export node.
    pub(crate) addr: SockAddr,
    /// N of /dev/dstN, chosen by the registry.
    pub(crate) index: u32,
    /// Largest request in pages; 0 = default.
    pub(crate) max_io_pages: u32,
    /// Requests in flight; 0 = default.
    pub(crate) queue_depth: u32,
    /// Connections (hardware queues) wanted; 0 = default (1).
    pub(crate) queues: u32,
    /// Identity the export fences by; 0 = a random one. An admin who sets
    /// it (the same on every creation of this device, and unlike any other
    /// device's) makes the fencing hold across re-creation and reboots.
    pub(crate) client_id: u64,
    /// This node's identity in the handshake.
    pub(crate) client: Name,
    /// The identity of the export to accept; empty: the first one reached,
    /// which the device is then bound to.
    pub(crate) export: Name,
    /// Ask for reads only: the device is read-only, and never holds the
    /// export's write access.
    pub(crate) read_only: bool,
    /// Timeouts different from the defaults.
    pub(crate) settings: SettingsUpdate,
    /// Protection mode, algorithm and key; must match the export's.
    pub(crate) security: SecurityConfig,
}
