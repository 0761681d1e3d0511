// SPDX-License-Identifier: GPL-2.0

//! Where a connection's receive thread runs (an export session's, a local
//! queue's). While its connection is idle (one request at a time, each
//! answered before the next is sent) the thread runs on the CPU that handles
//! the connection's incoming segments, as nvmet-tcp runs a queue's
//! `io_work` on `sk_incoming_cpu` (nvme-tcp on its queue's CPU): a request
//! then wakes no thread on another CPU, and its completion needs no
//! interrupt to another CPU. Once several requests are in flight the
//! thread may run anywhere again, beside the other threads of its
//! connection and the crypto pool.
//!
//! On one host (loopback, 2 vCPUs) that took random 4 KiB reads at queue
//! depth 1 from 1,002-1,540 IOPS to 1,985-2,510, level with NVMe/TCP
//! (`Documentation/performance.md`). An affinity the admin gave the thread
//! does not survive its next idle moment.

use crate::{kthread, socket::Socket};

/// The binding of the current kthread, which is a connection's receive
/// thread. Owned by that thread.
#[derive(Default)]
pub(crate) struct Placement {
    /// The CPU the thread is bound to, if any.
    on: Option<u32>,
}

impl Placement {
    /// From this many requests in flight on, the thread is unbound.
    const SPREAD_AT: u32 = 4;

    /// Binds the current thread to `sock`'s incoming CPU when nothing is
    /// in flight, unbinds it when `in_flight` reaches [`Self::SPREAD_AT`];
    /// in between, leaves it as it is (no rebinding back and forth at low
    /// queue depths). A failed binding (the CPU went offline) is left out.
    pub(crate) fn update(&mut self, sock: &Socket, in_flight: u32) {
        let want = match in_flight {
            0 => sock.incoming_cpu(),
            n if n >= Self::SPREAD_AT => None,
            _ => return,
        };
        if want != self.on && kthread::run_on(want).is_ok() {
            self.on = want;
        }
    }
}
