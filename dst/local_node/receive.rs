// SPDX-License-Identifier: GPL-2.0

//! The receiving half of a queue: the receiver thread reads replies,
//! claims the request each answers (only among its own queue's), takes in
//! READ data, has protected data checked on the crypto pool, and ends the
//! request; when the connection fails it requeues and reconnects.

use kernel::{
    prelude::*,
    sync::{atomic::Relaxed, Arc},
    workqueue::{impl_has_work, new_work, Work, WorkItem},
};

use crate::{
    bdev,
    blk::{Request, SegmentBuf, Started},
    kthread,
    proto::{self, Header, Kind, Status},
    security::{self, Check, Opener, Segments},
    socket::Socket,
    thread_pool,
    trans::{ConnState, Trailer},
};

use super::{
    connect::reconnect, send::request_header, status_result, Ctx, Router, RxStart, Shared, Shut,
    TAG_BITS, TAG_MASK,
};

impl Shared {
    /// Verifies (and decrypts in place) the READ data of `rq`, which the
    /// caller holds: the receiver, or the one worker it handed `rq` to.
    fn check_read(
        &self,
        rq: &Request<Router>,
        check: &Check,
        vecs: &mut SegmentBuf,
    ) -> core::result::Result<(), &'static str> {
        let data = rq.segments(vecs).map_err(|_| "request segments")?;
        check.verify(&data).map_err(|e| {
            // A local failure to check says nothing about the reply.
            if e.is_integrity() {
                self.dev.integrity_errors.add(1, Relaxed);
            }
            e.as_str()
        })
    }

    /// Waits until no reply is being checked by a crypto worker.
    fn wait_checks(&self) {
        self.checks.wait_idle();
    }
}

/// The check of one READ reply's data on a crypto worker: verifies (and
/// decrypts) the data in the request's pages and ends the request, or, if
/// it does not verify (or cannot be checked: a local error, not counted as
/// an integrity error), ends the connection so that the request is resent.
///
/// Each protected queue keeps [`CHECK_JOBS`] of them, allocated with the
/// queue and reused ([`Shared::spare_checks`]): a reply needs no memory to
/// be checked off the receiver. When all are busy, the receiver checks the
/// next reply itself, which also holds it back from reading further.
#[pin_data]
pub(super) struct ReplyCheck {
    #[pin]
    work: Work<ReplyCheck>,
    /// Room for the request's data segments.
    vecs: SegmentBuf,
    /// What is being checked; `None` while the job is spare.
    reply: Option<Reply>,
}

/// A READ reply a [`ReplyCheck`] is checking.
struct Reply {
    /// The queue, whose spare jobs this one goes back to.
    shared: Arc<Shared>,
    /// The connection the reply came on; let go of before the receiver is
    /// told the job is done (it releases the socket next).
    sock: Arc<Socket>,
    rq: Request<Router>,
    status: Status,
    check: Check,
}

/// Check jobs per protected queue: enough to keep the crypto workers of a
/// few queues busy; beyond them, the receiver checks replies itself.
pub(super) const CHECK_JOBS: usize = 4;

impl_has_work! {
    impl HasWork<Self> for ReplyCheck { self.work }
}

impl ReplyCheck {
    /// The spare jobs of a queue whose requests have up to `max_segments`
    /// data segments.
    pub(super) fn spares(max_segments: usize) -> Result<KVec<Pin<KBox<Self>>>> {
        let mut jobs = KVec::with_capacity(CHECK_JOBS, GFP_KERNEL)?;
        for _ in 0..CHECK_JOBS {
            let job = KBox::pin_init(
                try_pin_init!(ReplyCheck {
                    work <- new_work!("ReplyCheck::work"),
                    vecs: SegmentBuf::new(max_segments)?,
                    reply: None,
                }),
                GFP_KERNEL,
            )?;
            jobs.push(job, GFP_KERNEL)?;
        }
        Ok(jobs)
    }
}

impl WorkItem for ReplyCheck {
    type Pointer = Pin<KBox<ReplyCheck>>;

    fn run(mut this: Pin<KBox<ReplyCheck>>) {
        let job = this.as_mut().project();
        // Never spare when queued.
        let Some(reply) = job.reply.take() else {
            return;
        };
        let Reply {
            shared,
            sock,
            rq,
            status,
            check,
        } = reply;
        bdev::noio(|| match shared.check_read(&rq, &check, job.vecs) {
            Ok(()) => shared.finish(rq, status_result(status)),
            Err(why) => {
                // Parked again: the receiver requeues it once the
                // connection has ended (it waits for this job).
                rq.park();
                pr_warn!(
                    "dst{}: reply from {} rejected: {}\n",
                    shared.dev.index,
                    shared.dev.addr,
                    why
                );
                shared.shut(&sock, Shut::BadReply);
            }
        });
        drop((sock, check));
        // Room was made for every job when the queue was created.
        let _ = shared.spare_checks.lock().push_within_capacity(this);
        shared.checks.end();
    }
}

/// The receiver thread: owns the connection. Serves replies until the
/// connection fails, then reconnects, until the device is deleted.
pub(super) fn receiver_main(ctx: &Ctx) {
    let shared = &ctx.shared;
    let Some(start) = shared.tx.lock().first.take() else {
        return;
    };
    let RxStart {
        mut sock,
        mut opener,
        mut vecs,
    } = start;
    shared.last_rx.store(shared.now(), Relaxed);
    loop {
        let why = serve(ctx, &sock, &mut opener, &mut vecs);
        // Replies of this connection still being checked finish first (they
        // may fail and need the requeue below).
        shared.wait_checks();
        if shared.conn.get() == ConnState::Closing || kthread::should_stop() {
            return;
        }
        let why = match Shut::take(&shared.shut) {
            Some(shut) => shut.as_str(),
            None => why,
        };
        shared.conn_lost(&ctx.tags, sock, why);
        match reconnect(ctx) {
            Some((s, o)) => (sock, opener) = (s, o),
            None => return,
        }
        // A reason recorded while reconnecting was about the old socket.
        let _ = Shut::take(&shared.shut);
    }
}

/// Reads and handles replies until the connection fails; returns why.
/// `vecs` has room for one request's data segments.
fn serve(
    ctx: &Ctx,
    sock: &Arc<Socket>,
    opener: &mut Opener,
    vecs: &mut SegmentBuf,
) -> &'static str {
    let shared = &ctx.shared;
    loop {
        let mut hb = [0u8; proto::HEADER_LEN];
        if sock.recv_exact(&mut hb).is_err() {
            return "receive failed";
        }
        shared.last_rx.store(shared.now(), Relaxed);
        let h = match Header::decode(&hb) {
            Ok(h) => h,
            Err(e) => return e.as_str(),
        };
        let r = match h.kind {
            Kind::IoReply => ctx.complete(sock, &h, &hb, opener, vecs),
            Kind::Ping => open(shared, sock, opener, &hb, &security::no_data()).and_then(|()| {
                let mut tx = shared.tx.lock();
                shared
                    .send_control(&mut tx, sock, &Header::pong(h.id))
                    .map_err(|_| "send failed")
            }),
            Kind::KeyUpdate => {
                open(shared, sock, opener, &hb, &security::no_data()).and_then(|()| {
                    opener.update_key().map_err(|e| {
                        if e.is_integrity() {
                            shared.dev.integrity_errors.add(1, Relaxed);
                        }
                        e.as_str()
                    })?;
                    shared.dev.rekeys.add(1, Relaxed);
                    Ok(())
                })
            }
            Kind::Pong => open(shared, sock, opener, &hb, &security::no_data()).map(|()| {
                let mut tx = shared.tx.lock();
                if matches!(tx.ping, Some((cookie, _)) if cookie == h.id) {
                    tx.ping = None;
                }
            }),
            _ => Err("unexpected message kind"),
        };
        if let Err(why) = r {
            return why;
        }
    }
}

/// Receives a message's trailer and checks the message (header `hb`, payload
/// in `data`, decrypted in place for AEAD). Failures end the connection.
fn open(
    shared: &Shared,
    sock: &Socket,
    opener: &mut Opener,
    hb: &[u8; proto::HEADER_LEN],
    data: &Segments<'_>,
) -> core::result::Result<(), &'static str> {
    let Some(t) = Trailer::recv(sock, opener).map_err(|_| "receive failed")? else {
        return Ok(());
    };
    opener.open(hb, data, t).map_err(|e| {
        if e.is_integrity() {
            shared.dev.integrity_errors.add(1, Relaxed);
        }
        e.as_str()
    })
}

impl Ctx {
    /// Checks a READ reply in the receiver, then ends the request. Errors
    /// end the connection; the request is parked again and resent.
    fn finish_checked(
        &self,
        rq: Request<Router>,
        status: Status,
        check: &Check,
        vecs: &mut SegmentBuf,
    ) -> core::result::Result<(), &'static str> {
        self.shared.check_read(&rq, check, vecs)?;
        self.shared.finish(rq, status_result(status));
        Ok(())
    }

    /// Completes the request a reply answers. Errors end the connection.
    fn complete(
        &self,
        sock: &Arc<Socket>,
        h: &Header,
        hb: &[u8; proto::HEADER_LEN],
        opener: &mut Opener,
        vecs: &mut SegmentBuf,
    ) -> core::result::Result<(), &'static str> {
        let shared = &self.shared;
        // A reply answers a request of this connection's queue only.
        // `TAG_MASK` keeps 16 bits: the casts are lossless.
        let unique_tag = (shared.qid << TAG_BITS) | (h.id & TAG_MASK) as u32;
        let found = || self.tags.find(shared.qid, unique_tag);
        let rq = found().ok_or("reply for another queue or an unknown tag")?;
        if rq.pdu().id.load(Relaxed) != h.id {
            return Err("reply for an unknown transaction");
        }
        let rq = match rq.claim() {
            Some(rq) => rq,
            None => {
                // The sender may still be sending it (it parks the request
                // before it lets go of the send lock); wait for it.
                drop(shared.tx.lock());
                found()
                    .and_then(Started::claim)
                    .ok_or("reply for a request not in flight")?
            }
        };
        // Held from here on: every early return parks it again, to be
        // resent. The id is checked again now that nobody can change it.
        let pdu = rq.pdu();
        if pdu.id.load(Relaxed) != h.id {
            return Err("reply for an unknown transaction");
        }
        let req = request_header(&rq.info(), h.id).ok_or("reply for an unknown op")?;
        proto::validate_reply(h, &req).map_err(|e| e.as_str())?;
        if matches!(
            h.status,
            Status::Version | Status::Mismatch | Status::AuthFailed | Status::NotAllowed
        ) {
            return Err("a handshake status on an IO reply");
        }
        if h.payload > 0 {
            rq.bvecs(vecs).map_err(|_| "request segments")?;
            rq.recv_data(sock, vecs)
                .map_err(|_| "receive of read data failed")?;
        }
        // Nothing of the reply counts until it is checked: on failure the
        // request is parked again and resent on the next connection.
        if opener.protected() && h.payload > 0 {
            // READ data: a crypto worker checks (and decrypts) it, then ends
            // the request; the receiver goes on with the next reply.
            let trailer = Trailer::recv(sock, opener)
                .map_err(|_| "receive failed")?
                .ok_or("no trailer")?;
            let check = opener.admit(hb, trailer).map_err(|e| {
                shared.dev.integrity_errors.add(1, Relaxed);
                e.as_str()
            })?;
            let spare = match thread_pool::workers() {
                0 => None,
                _ => shared.spare_checks.lock().pop(),
            };
            let Some(mut job) = spare else {
                // All jobs busy (or the pool is inline): check right here.
                return self.finish_checked(rq, h.status, &check, vecs);
            };
            *job.as_mut().project().reply = Some(Reply {
                shared: shared.clone(),
                sock: sock.clone(),
                rq,
                status: h.status,
                check,
            });
            // The gate is never closed: checks are only waited for.
            let _ = shared.checks.begin();
            thread_pool::submit_boxed(job);
            return Ok(());
        }
        open(shared, sock, opener, hb, &security::no_data())?;
        if h.status == Status::Busy {
            shared.busy(rq);
            return Ok(());
        }
        shared.finish(rq, status_result(h.status));
        Ok(())
    }
}
