// SPDX-License-Identifier: GPL-2.0

//! Time on a queue: requests blk-mq timed out, pings of idle connections,
//! the loss timeout after which IO fails, and the grace a delete gives IO
//! still in flight. Run by the sender thread, which sleeps until the next
//! deadline.

use kernel::{
    prelude::*,
    sync::atomic::{Acquire, Full, Relaxed, Release},
};

use crate::{
    blk::{Started, TagSet},
    netlink::event,
    proto::Header,
    trans::ConnState,
};

use super::{Router, Settings, Shared, Shut, Tx};

impl Shared {
    /// The watchdog: acts on timed-out requests (blk-mq's timeout marks
    /// them), times out and sends pings, and fails IO past the loss timeout
    /// or a delete's grace. Runs in the sender thread; returns how many ms
    /// may pass before it must run again (`None`: only when woken), so an
    /// idle device wakes no more often than its ping interval.
    pub(super) fn watchdog(&self, tags: &TagSet<Router>, tx: &mut Tx) -> Option<u64> {
        let now = self.now();
        let left = |since: u64, limit: u64| limit.saturating_sub(now.saturating_sub(since));
        let settings = &self.dev.settings;
        let mut next = None;
        if self.dev.deleting.load(Acquire) && self.conn.get() != ConnState::Closing {
            let grace_ms = settings.delete_grace_ms();
            let grace = left(self.dev.deleting_at.load(Acquire), grace_ms);
            if grace > 0 {
                next = Some(grace);
            } else {
                // Deleted and not drained within the loss timeout: what is
                // left fails, and the queue ends.
                self.conn.set(ConnState::Closing);
                pr_warn!(
                    "dst{}: deleted, IO still in flight after {} ms: failing it (queue {})\n",
                    self.dev.index,
                    grace_ms,
                    self.qid
                );
                self.drop_conn(tx);
                self.fail_queued();
                self.fail_parked(tags);
                self.rewake.notify_all();
                return None;
            }
        }
        let earliest = |a: Option<u64>, b: u64| Some(a.map_or(b, |a| a.min(b)));
        let state = self.conn.get();
        if state == ConnState::Reconnecting {
            let Some(loss_timeout) = settings.loss_timeout() else {
                return next;
            };
            let lost = left(self.lost_at.load(Relaxed), loss_timeout);
            if lost == 0 {
                self.set_failed_locked(tags, tx);
                return next;
            }
            return earliest(next, lost);
        }
        let Some(sock) = tx.sock.clone() else {
            return next;
        };
        if tx.epoch != self.dev.epoch.get() {
            self.drop_conn(tx);
            return next;
        }
        if self.late.xchg(false, Full) {
            self.dev.timeouts.add(1, Relaxed);
            pr_warn!(
                "dst{}: a request to {} is unanswered after {} ms\n",
                self.dev.index,
                self.dev.addr,
                self.dev.settings.req_timeout_ms.load(Relaxed)
            );
            self.shut(&sock, Shut::RequestTimeout);
            return next;
        }
        if let Some((_, sent)) = tx.ping {
            let wait = left(sent, Settings::get(&self.dev.settings.ping_timeout_ms));
            if wait > 0 {
                return earliest(next, wait);
            }
            if self.last_rx.load(Relaxed) < sent {
                self.dev.timeouts.add(1, Relaxed);
                pr_warn!(
                    "dst{}: no answer to a ping from {}\n",
                    self.dev.index,
                    self.dev.addr
                );
                self.shut(&sock, Shut::PingTimeout);
                return next;
            }
            // Unanswered, but other messages came since: the connection
            // lives. Ping afresh when it is quiet again.
            tx.ping = None;
        }
        let every = Settings::get(&self.dev.settings.ping_interval_ms);
        if every == 0 {
            return next;
        }
        let wait = left(self.last_rx.load(Relaxed), every);
        if wait > 0 {
            return earliest(next, wait);
        }
        let cookie = now | 1;
        if self.send_control(tx, &sock, &Header::ping(cookie)).is_err() {
            self.shut(&sock, Shut::SendFailed);
        }
        tx.ping = Some((cookie, now));
        earliest(next, Settings::get(&self.dev.settings.ping_timeout_ms))
    }

    /// blk-mq's timeout for a request of this queue: one that awaits its
    /// reply (parked) means the connection is dead; the sender drops it and
    /// the request is resent. Requests still queued, or being received,
    /// wait on.
    pub(super) fn timed_out(&self, rq: &Started<'_, Router>) {
        if rq.is_parked() && self.conn.get() == ConnState::Up {
            self.late.store(true, Release);
            self.wake.notify_all();
        }
    }

    /// Past the loss timeout (or on delete): pending and new IO fail.
    pub(super) fn set_failed(&self, tags: &TagSet<Router>) {
        let tx = self.tx.lock();
        self.set_failed_locked(tags, &tx);
    }

    /// [`Shared::set_failed`] for a caller that holds the send lock `tx` (so
    /// no request is being sent).
    fn set_failed_locked(&self, tags: &TagSet<Router>, tx: &Tx) {
        if self
            .conn
            .advance(ConnState::Reconnecting, ConnState::Failed)
        {
            if self.dev.failed_queues.fetch_add(1, Relaxed) == 0 {
                self.dev.announce(event::FAILED);
            }
            pr_warn!(
                "dst{}: no connection to {} for {} ms: failing IO until it is back (queue {})\n",
                self.dev.index,
                self.dev.addr,
                self.now().saturating_sub(self.lost_at.load(Relaxed)),
                self.qid
            );
        } else if self.conn.get() == ConnState::Up {
            // Delete of a connected device: nothing to fail for.
            return;
        }
        self.dev.epoch.supersede(tx.epoch);
        self.fail_queued();
        self.fail_parked(tags);
    }
}
