// SPDX-License-Identifier: GPL-2.0

//! Where a connection's receive thread runs (an export session's, a local
//! queue's). While its connection is idle (one request at a time, each
//! answered before the next is sent) the thread runs on the CPU that handles
//! the connection's incoming segments, as nvmet-tcp runs a queue's
//! `io_work` on `sk_incoming_cpu` (nvme-tcp on its queue's CPU): a request
//! then wakes no thread on another CPU, and its completion needs no
//! interrupt to another CPU. It also runs at high priority then
//! ([`Priority::High`]), so that the task it wakes by ending a request does
//! not preempt it before it is back waiting for the next reply: that cost
//! two more thread switches per IO. Once requests queue up on the
//! connection the thread may run anywhere again, beside the other threads
//! of its connection and the crypto pool, at normal priority, so that it
//! does not preempt a submitter at every reply.
//!
//! On one host (loopback, 2 vCPUs) the binding took random 4 KiB reads at
//! queue depth 1 from 1,002-1,540 IOPS to 1,985-2,510, level with NVMe/TCP,
//! and the priority cut their p50 latency by 6 % and their p99 by 20 %
//! (medians of 8 interleaved rounds; `Documentation/performance.md`).
//!
//! An admin who pins or renices the thread (`taskset`, `renice`) takes it
//! over: before each change the thread checks that its affinity and nice
//! value are still the ones it set, and if not, leaves them alone from then
//! on, as it says in the kernel log.

use kernel::prelude::*;

use crate::{
    kthread::{self, Priority},
    socket::Socket,
};

/// The binding of the current kthread, which is a connection's receive
/// thread. Owned by that thread.
#[derive(Default)]
pub(crate) struct Placement {
    /// The CPU the thread is bound to, if any.
    on: Option<u32>,
    /// The thread's priority.
    priority: Priority,
    /// Observations in a row that the connection was idle (above 0) or
    /// busy (below 0).
    streak: i8,
    /// Something else set the thread's affinity or nice value: it is left
    /// as it is.
    taken_over: bool,
}

impl Placement {
    /// Observations in a row it takes to bind or unbind: a queue depth of
    /// 2 or 3, idle now and busy next, changes nothing.
    const STREAK: i8 = 4;

    /// Records whether the connection is `idle` (nothing in flight,
    /// nothing waiting) or `busy` (requests queue up behind the one being
    /// handled); after [`Self::STREAK`] of the same in a row, binds the
    /// current thread to `sock`'s incoming CPU at high priority (idle) or
    /// unbinds it at normal priority (busy). A failed binding (the CPU went
    /// offline) is left out. Does nothing once the placement was taken over.
    pub(crate) fn update(&mut self, sock: &Socket, idle: bool, busy: bool) {
        if self.taken_over {
            return;
        }
        self.streak = match (idle, busy) {
            (true, _) => self.streak.max(0).saturating_add(1),
            (false, true) => self.streak.min(0).saturating_sub(1),
            (false, false) => 0,
        };
        let (want, priority) = match self.streak {
            n if n >= Self::STREAK => (sock.incoming_cpu(), Priority::High),
            n if n <= -Self::STREAK => (None, Priority::Normal),
            _ => return,
        };
        if priority == self.priority && want == self.on {
            return;
        }
        if !kthread::is_placed(self.on, self.priority) {
            self.taken_over = true;
            pr_info!(
                "thread {}: affinity or nice value set from outside; left as it is\n",
                kernel::current!().pid()
            );
            return;
        }
        if priority != self.priority {
            kthread::set_priority(priority);
            self.priority = priority;
        }
        if want != self.on && kthread::run_on(want).is_ok() {
            self.on = want;
        }
    }
}
