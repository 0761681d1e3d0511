// SPDX-License-Identifier: GPL-2.0

//! A hardware queue's requests: the send ring `queue_rq` fills (or sends
//! from at once, see `send.rs`), ending requests and counting them, and
//! what happens to the requests of a lost connection (resent, or failed
//! past the resend limit) or of a BUSY answer (requeued with backoff).

use kernel::{
    prelude::*,
    sync::{atomic::Relaxed, Arc},
};

use crate::{
    blk::{BlockOp, Request, Started, TagSet},
    netlink::event,
    socket::Socket,
    trans::ConnState,
};

use super::{Ring, Router, Shared};

impl Ring {
    pub(super) fn new(cap: usize) -> Result<Self> {
        let mut slots = KVec::with_capacity(cap, GFP_KERNEL)?;
        for _ in 0..cap {
            slots.push(None, GFP_KERNEL)?;
        }
        Ok(Ring {
            slots,
            head: 0,
            len: 0,
        })
    }

    pub(super) fn push(
        &mut self,
        rq: Request<Router>,
    ) -> core::result::Result<(), Request<Router>> {
        let cap = self.slots.len();
        if self.len == cap {
            return Err(rq);
        }
        let i = (self.head + self.len) % cap;
        match self.slots.get_mut(i) {
            Some(slot) => {
                *slot = Some(rq);
                self.len += 1;
                Ok(())
            }
            None => Err(rq),
        }
    }

    /// The request [`Ring::pop`] would take.
    pub(super) fn head(&self) -> Option<&Request<Router>> {
        self.slots.get(self.head)?.as_ref()
    }

    pub(super) fn pop(&mut self) -> Option<Request<Router>> {
        if self.len == 0 {
            return None;
        }
        let rq = self.slots.get_mut(self.head)?.take();
        self.head = (self.head + 1) % self.slots.len();
        self.len -= 1;
        rq
    }
}

impl Shared {
    /// Milliseconds on the device clock.
    pub(super) fn now(&self) -> u64 {
        self.dev.created.elapsed().as_millis() as u64
    }

    /// Ends a request this task holds, counting it.
    pub(super) fn finish(&self, rq: Request<Router>, result: Result) {
        // What a request carries across resends and requeues starts afresh
        // with the next request of the tag.
        let pdu = rq.pdu();
        pdu.resends.store(0, Relaxed);
        pdu.blamed.store(false, Relaxed);
        pdu.busy.store(0, Relaxed);
        if result.is_err() {
            self.dev.io_errors.add(1, Relaxed);
        } else {
            let info = rq.info();
            match info.op() {
                Some(BlockOp::Read) => self.dev.bytes_read.add(u64::from(info.length), Relaxed),
                Some(BlockOp::Write) => self.dev.bytes_written.add(u64::from(info.length), Relaxed),
                _ => {}
            }
        }
        self.active.fetch_sub(1, Relaxed);
        rq.end(result);
    }

    /// Whether `rq` belongs to this hardware queue.
    fn owns(&self, rq: &Started<'_, Router>) -> bool {
        rq.info().tag >> 16 == self.qid
    }

    /// Fails every request waiting on the ring.
    pub(super) fn fail_queued(&self) {
        loop {
            let Some(rq) = self.ring.lock().pop() else {
                break;
            };
            self.finish(rq, Err(EIO));
        }
    }

    /// Fails every request of this queue that awaits its reply.
    pub(super) fn fail_parked(&self, tags: &TagSet<Router>) {
        tags.for_each_started(|rq| {
            if self.owns(&rq) {
                if let Some(rq) = rq.claim() {
                    self.finish(rq, Err(EIO));
                }
            }
        });
    }

    /// Puts a request on the ring for the sender; the caller wakes it.
    pub(super) fn push(&self, rq: Request<Router>) {
        let full = self.ring.lock().push(rq);
        if let Err(rq) = full {
            // Cannot happen: the ring holds the whole queue depth.
            self.finish(rq, Err(EIO));
        }
    }

    /// The connection failed: requeue what was sent on it (or fail what was
    /// resent too often), and leave reconnecting to the receiver thread.
    ///
    /// `sock` is the receiver's, by then the last reference to the socket:
    /// it is released (and reset, as sockets do not linger) before any
    /// request fails, so that none of the connection's unsent bytes, of a
    /// WRITE that is about to fail for example, can still reach the export.
    pub(super) fn conn_lost(&self, tags: &TagSet<Router>, sock: Arc<Socket>, why: &str) {
        sock.shutdown();
        let mut tx = self.tx.lock();
        // Once we hold the send lock, no request is being sent and the
        // sender cannot start one: the socket is gone.
        tx.sock = None;
        tx.sealer = None;
        tx.ping = None;
        let epoch = tx.epoch;
        drop(sock);
        if self.conn.advance(ConnState::Up, ConnState::Reconnecting) {
            self.lost_at.store(self.now(), Relaxed);
            // The device is lost when its first queue is.
            if self.dev.lost_queues.fetch_add(1, Relaxed) == 0 {
                self.dev.announce(event::LOST);
            }
            pr_warn!(
                "dst{}: connection to {} lost: {}; reconnecting (queue {})\n",
                self.dev.index,
                self.dev.addr,
                why,
                self.qid
            );
        }
        let failed = self.conn.get() != ConnState::Reconnecting;
        // After an integrity error only the request it was about pays: a
        // bad reply must not use up the resends of every other request.
        let integrity = self.integrity_lost.xchg(false, Relaxed);
        tags.for_each_started(|rq| {
            if self.owns(&rq) {
                if let Some(rq) = rq.claim() {
                    let charge = !integrity || rq.pdu().blamed.xchg(false, Relaxed);
                    self.resend(rq, failed, epoch, charge);
                }
            }
        });
        drop(tx);
        self.wake.notify_all();
    }

    /// Puts a request sent in `epoch` back on the ring to be sent again,
    /// counting a resend against its limit if `charge`; fails it instead
    /// past the resend limit or if `fail`. The caller wakes the sender.
    fn resend(&self, rq: Request<Router>, fail: bool, epoch: u32, charge: bool) {
        let max = self.dev.settings.max_resends.load(Relaxed);
        if fail || (charge && rq.pdu().resends.fetch_add(1, Relaxed) >= max) {
            self.dev.epoch.supersede(epoch);
            self.finish(rq, Err(EIO));
            return;
        }
        self.dev.resends.add(1, Relaxed);
        self.push(rq);
    }

    /// A BUSY answer, "retry later" (the export could not allocate for the
    /// request): the block layer queues the request again after a delay
    /// that doubles with each BUSY in a row, from 1 ms up to 1 s. It is not
    /// a failure and does not count as a resend; but an export that stays
    /// busy for the loss timeout fails the request, as a lost one would.
    pub(super) fn busy(&self, rq: Request<Router>) {
        let pdu = rq.pdu();
        let now = self.now();
        let n = pdu.busy.fetch_add(1, Relaxed);
        if n == 0 {
            pdu.busy_since.store(now, Relaxed);
        }
        let busy_for = now.saturating_sub(pdu.busy_since.load(Relaxed));
        if self
            .dev
            .settings
            .loss_timeout()
            .is_some_and(|limit| busy_for >= limit)
        {
            self.finish(rq, Err(EIO));
            return;
        }
        // Back through `queue_rq` when the delay is over.
        self.active.fetch_sub(1, Relaxed);
        rq.requeue(1u32 << n.min(10));
    }

    /// Takes a request of this queue from the block layer (`last`: the
    /// last of its batch); never waits. The only request of an idle queue
    /// is sent at once from here if the socket has room for it; all others
    /// go to the sender thread, which batches them (`MSG_MORE`) while the
    /// submitters go on: sending each from its submitter would cost a TCP
    /// segment, and a wake-up at the export, per request.
    pub(super) fn queue_rq(
        &self,
        rq: Request<Router>,
        last: bool,
    ) -> Result<(), (Request<Router>, Error)> {
        let state = self.conn.get();
        if state == ConnState::Failed || state == ConnState::Closing {
            return Err((rq, EIO));
        }
        rq.pdu().id.store(0, Relaxed);
        // Counted before anyone can end it.
        let idle = self.active.fetch_add(1, Relaxed) == 0;
        let mut ring = self.ring.lock();
        // Full ring cannot happen (it holds the queue depth); refuse rather
        // than lose the request.
        if let Err(rq) = ring.push(rq) {
            self.active.fetch_sub(1, Relaxed);
            return Err((rq, EIO));
        }
        drop(ring);
        if !(idle && last && self.send_from_submitter()) {
            self.wake.notify_all();
        }
        Ok(())
    }
}
