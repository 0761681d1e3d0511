// SPDX-License-Identifier: GPL-2.0

//! The sending half of a queue: the sender thread takes requests off the
//! ring and sends each as one frame (header, WRITE data, sealed with the
//! connection's protection, and trailer), then parks it until its reply.
//! The only request of an idle queue (none other in flight) is sent by the
//! task that submits it instead, when the socket has room for it at once.

use kernel::{prelude::*, sync::atomic::Relaxed, time::msecs_to_jiffies};

use crate::{
    blk::{BlockOp, Request, RqInfo},
    crypto,
    error::code,
    kthread,
    proto::{self, Header, Op, Protection},
    security::MAX_TRAILER,
    socket::Socket,
    trans::{self, ConnState},
};

use super::{Ctx, Router, Shared, Shut, Tx, TAG_BITS, TAG_MASK};

impl Shared {
    /// Sends one request, then parks it until its reply; on failure the
    /// connection is shut down and the receiver requeues the request with
    /// the others.
    fn send_one(&self, tx: &mut Tx, rq: Request<Router>, more: bool) {
        let pdu = rq.pdu();
        let Some(sock) = tx.sock.clone() else {
            // Disconnected after it was taken off the ring: put it back.
            self.push(rq);
            return;
        };
        if tx.epoch != self.dev.epoch.get() {
            // Superseded: a request of this device failed, and this
            // connection has not been fenced since. Nothing more goes out on
            // it; the receiver reconnects in the new epoch.
            self.push(rq);
            self.drop_conn(tx);
            return;
        }
        let info = rq.info();
        let seq = self.dev.next_seq.fetch_add(1, Relaxed);
        // The queue is the connection's: only the tag within it goes out.
        let id = (seq << TAG_BITS) | (u64::from(info.tag) & TAG_MASK);
        let Some(h) = request_header(&info, id) else {
            self.finish(rq, Err(code::eopnotsupp()));
            return;
        };
        pdu.id.store(id, Relaxed);
        let r = self.send_request(tx, &sock, &rq, &h, more);
        // From here on the receiver (or the failure path) claims it.
        rq.park();
        if r.is_err() {
            self.shut(&sock, Shut::SendFailed);
        }
    }

    /// Sends the request at the head of the ring from the submitting task,
    /// as NVMe/TCP's `queue_rq` does when its queue is idle: if the
    /// connection is up, the sender thread is not sending, and the socket
    /// has room for the whole frame now, so that the submitter never waits
    /// on the network. Saves a wake-up and a thread switch per request at
    /// low queue depth. Whether it was sent (or failed and was dealt with);
    /// if not, the sender thread's.
    pub(super) fn send_from_submitter(&self) -> bool {
        if self.conn.get() != ConnState::Up {
            return false;
        }
        let Some(mut tx) = self.tx.try_lock() else {
            return false;
        };
        let Some(room) = tx.sock.as_ref().map(|s| s.send_room()) else {
            return false;
        };
        let mut ring = self.ring.lock();
        let Some(info) = ring.head().map(|rq| rq.info()) else {
            // Taken meanwhile: failed, the device closing.
            return true;
        };
        let data = match info.op() {
            Some(BlockOp::Write) => info.length as usize,
            _ => 0,
        };
        // The frame, and a KEY_UPDATE before it if one is due.
        let frames = 2 * (proto::HEADER_LEN + MAX_TRAILER);
        if room < frames + data {
            return false;
        }
        let Some(rq) = ring.pop() else {
            return true;
        };
        drop(ring);
        self.send_one(&mut tx, rq, false);
        drop(tx);
        // Put back (superseded, or disconnected): the sender's to wake.
        self.ring.lock().len == 0
    }

    /// Shuts the connection down for `why`; the receiver finds its socket
    /// shut down, logs `why` and reconnects.
    pub(super) fn shut(&self, sock: &Socket, why: Shut) {
        self.shut.store(why as u32, Relaxed);
        sock.shutdown();
    }

    /// Ends the sending half of the connection because its epoch is over:
    /// the receiver finds the socket shut down and reconnects.
    pub(super) fn drop_conn(&self, tx: &mut Tx) {
        if let Some(sock) = tx.sock.take() {
            self.shut(&sock, Shut::Stale);
        }
    }

    /// Sends a request's frame: header, data (WRITE) and trailer. With
    /// protection the data is protected and sent from the queue's bounce
    /// pages, encrypted into them (aead) or copied there first (crc32c,
    /// hmac): the request's own pages belong to the caller, who may change
    /// them meanwhile (an O_DIRECT buffer; a checksum over them would then
    /// fail at the export), and may be needed again for a resend.
    fn send_request(
        &self,
        tx: &mut Tx,
        sock: &Socket,
        rq: &Request<Router>,
        h: &Header,
        more: bool,
    ) -> Result {
        self.update_key_if_due(tx, sock)?;
        let hb = h.encode();
        let data = h.payload > 0;
        let mut trailer = [0u8; MAX_TRAILER];
        let mut bounce = None;
        let tlen = match &mut tx.sealer {
            Some(sealer) if data && sealer.protection() != Protection::None => {
                let src = rq.segments(&mut tx.vecs)?;
                // The queue's bounce pages, `h.payload` bytes like the
                // request's data; the sender (under the send lock) is their
                // only user.
                let pages = tx.bounce.as_mut().ok_or(EINVAL)?;
                let dst = pages.segments(h.payload as usize)?;
                let n = if sealer.protection() == Protection::Aead {
                    sealer.seal(&hb, &src, &dst, &mut trailer)?
                } else {
                    crypto::copy(&dst, &src)?;
                    sealer.seal(&hb, &dst, &dst, &mut trailer)?
                };
                bounce = Some(&*pages);
                n
            }
            Some(sealer) if !data => sealer.seal_header(&hb, &mut trailer)?,
            _ => {
                if data {
                    rq.bvecs(&mut tx.vecs)?;
                }
                0
            }
        };
        let trailer = trailer.get(..tlen).unwrap_or(&[]);
        let vecs = &tx.vecs;
        let payload = |more: bool| match bounce {
            Some(pages) => pages.send(sock, more),
            None => rq.send_data(sock, vecs, more),
        };
        trans::send_frame(
            sock,
            &hb,
            data.then_some(&payload as trans::Payload<'_>),
            trailer,
            more,
        )
    }

    /// Sends a message without payload (PING, PONG) on the current
    /// connection, with its trailer. The caller holds the send lock.
    pub(super) fn send_control(&self, tx: &mut Tx, sock: &Socket, h: &Header) -> Result {
        self.update_key_if_due(tx, sock)?;
        let hb = h.encode();
        let mut trailer = [0u8; MAX_TRAILER];
        let tlen = match &mut tx.sealer {
            Some(sealer) => sealer.seal_header(&hb, &mut trailer)?,
            None => 0,
        };
        trans::send_frame(sock, &hb, None, trailer.get(..tlen).unwrap_or(&[]), false)
    }
}

impl Shared {
    /// Tells the export, on this queue's connection if it is up, that the
    /// device is being deleted after its last IO (RELEASE): the write
    /// access it held is free for another local node. Best effort: an
    /// export that never hears it keeps the access for this device until
    /// its admin releases it. Whether it was sent.
    pub(super) fn release_export(&self) -> bool {
        if self.conn.get() != ConnState::Up {
            return false;
        }
        let mut tx = self.tx.lock();
        let Some(sock) = tx.sock.clone() else {
            return false;
        };
        self.send_control(&mut tx, &sock, &Header::release())
            .is_ok()
    }

    /// Replaces the sending key first if it is due (a KEY_UPDATE goes out
    /// under the old one); counted in the device's `rekeys`.
    fn update_key_if_due(&self, tx: &mut Tx, sock: &Socket) -> Result {
        if let Some(sealer) = &mut tx.sealer {
            if trans::update_key_if_due(sock, sealer)? {
                self.dev.rekeys.add(1, Relaxed);
            }
        }
        Ok(())
    }
}

/// The IO header of a request with transaction id `id`; `None` for an op
/// DST does not carry.
pub(super) fn request_header(info: &RqInfo, id: u64) -> Option<Header> {
    let op = match info.op()? {
        BlockOp::Read => Op::Read,
        BlockOp::Write => Op::Write,
        BlockOp::Flush => return Some(Header::io(Op::Flush, 0, id, 0, 0)),
        BlockOp::Discard => Op::Discard,
        BlockOp::WriteZeroes => Op::WriteZeroes,
    };
    let mut flags = 0;
    if info.fua {
        flags |= proto::FLAG_FUA;
    }
    if info.no_unmap && op == Op::WriteZeroes {
        flags |= proto::FLAG_NO_UNMAP;
    }
    Some(Header::io(op, flags, id, info.offset, info.length))
}

/// The sender thread: sends queued requests while connected and runs the
/// watchdog.
pub(super) fn sender_main(ctx: &Ctx) {
    let shared = &ctx.shared;
    loop {
        if kthread::should_stop() {
            return;
        }
        let state = shared.conn.get();
        if state == ConnState::Failed || state == ConnState::Closing {
            shared.fail_queued();
        }
        let mut tx = shared.tx.lock();
        let sendable = state == ConnState::Up && tx.sock.is_some();
        let next = if sendable {
            let mut ring = shared.ring.lock();
            ring.pop().map(|rq| (rq, ring.len > 0))
        } else {
            None
        };
        match next {
            Some((rq, more)) => shared.send_one(&mut tx, rq, more),
            None => {
                let next = shared.watchdog(&ctx.tags, &mut tx);
                drop(tx);
                let mut ring = shared.ring.lock();
                if ring.len == 0 || !sendable {
                    // Woken by `queue_rq`, blk-mq timeouts, state and
                    // setting changes and `kthread_stop`; otherwise when
                    // the watchdog is next due.
                    let ms = next.map_or(u32::MAX, |ms| u32::try_from(ms).unwrap_or(u32::MAX));
                    let _ = shared
                        .wake
                        .wait_interruptible_timeout(&mut ring, msecs_to_jiffies(ms));
                }
                continue;
            }
        }
        drop(tx);
    }
}
