// SPDX-License-Identifier: GPL-2.0

//! The receiving half of a queue: the receiver thread reads replies,
//! claims the request each answers (only among its own queue's), takes in
//! READ data (protected data into the kernel's own pages, where it is
//! checked, on the crypto pool, before it is copied to the request), and
//! ends the request; when the connection fails it requeues and reconnects.
//! It also takes in the export's PINGs, KEY_UPDATEs and RESIZEs (the device
//! grows).

use kernel::{
    prelude::*,
    sync::{atomic::Relaxed, Arc},
    workqueue::{impl_has_work, new_work, Work, WorkItem},
};

use crate::{
    bdev,
    blk::{Request, SegmentBuf, Started},
    crypto, kthread,
    pages::Bounce,
    placement::Placement,
    proto::{self, Header, Kind, Status},
    security::{self, Check, Opener},
    socket::Socket,
    thread_pool,
    trans::{ConnState, Trailer},
};

use super::{
    connect::reconnect, send::request_header, status_result, Ctx, Router, RxStart, Shared, Shut,
    TAG_BITS, TAG_MASK,
};

impl Shared {
    /// Verifies (and decrypts) the READ data of `rq` in `data`, kernel
    /// pages it was received into, then copies it to the request's pages:
    /// they may be a process's O_DIRECT buffer, which it may change at any
    /// time, so nothing is checked there, and nothing that did not verify
    /// reaches them. The caller holds `rq`: the receiver, or the one worker
    /// it handed `rq` to. A reply that does not verify marks `rq` as the one
    /// to charge a resend ([`Shared::blame`]).
    fn check_read(
        &self,
        rq: &Request<Router>,
        check: &Check,
        vecs: &mut SegmentBuf,
        data: &mut Bounce,
    ) -> core::result::Result<(), &'static str> {
        check.verify(&data.data()).map_err(|e| {
            // A local failure to check says nothing about the reply.
            if e.is_integrity() {
                self.blame(Some(rq));
            }
            e.as_str()
        })?;
        let dst = rq.segments(vecs).map_err(|_| "request segments")?;
        crypto::copy(&dst, &data.data()).map_err(|_| "copy of read data")
    }

    /// Counts an integrity error on the current connection, caused by the
    /// reply to `rq` if any: when the connection then ends, only that
    /// request is charged a resend (see `conn_lost`), so that a bad reply
    /// costs no other request anything.
    pub(super) fn blame(&self, rq: Option<&Request<Router>>) {
        self.dev.integrity_errors.add(1, Relaxed);
        self.integrity_lost.store(true, Relaxed);
        if let Some(rq) = rq {
            rq.pdu().blamed.store(true, Relaxed);
        }
    }

    /// Gives a check job back to the queue's spares.
    fn spare(&self, job: Pin<KBox<ReplyCheck>>) {
        // Room was made for every job when the queue was created.
        let _ = self.spare_checks.lock().push_within_capacity(job);
    }

    /// Waits until no reply is being checked by a crypto worker.
    fn wait_checks(&self) {
        self.checks.wait_idle();
    }
}

/// The check of one READ reply's data on a crypto worker: verifies (and
/// decrypts) the data in the job's own pages, copies it to the request's
/// and ends the request, or, if it does not verify (or cannot be checked: a
/// local error, not counted as an integrity error), ends the connection so
/// that the request is resent.
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
    /// Where the reply's data is received and checked.
    data: Bounce,
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

/// Requests taken and not ended from which a queue counts as busy for its
/// receiver's placement: replies then keep coming.
const BUSY_IN_FLIGHT: u32 = 4;

/// Check jobs per protected queue: enough to keep the crypto workers of a
/// few queues busy; beyond them, the receiver checks replies itself.
pub(super) const CHECK_JOBS: usize = 4;

impl_has_work! {
    impl HasWork<Self> for ReplyCheck { self.work }
}

impl ReplyCheck {
    /// The spare jobs of a queue whose requests have up to `max_segments`
    /// data segments and `max_io` bytes.
    pub(super) fn spares(max_segments: usize, max_io: usize) -> Result<KVec<Pin<KBox<Self>>>> {
        let mut jobs = KVec::with_capacity(CHECK_JOBS, GFP_KERNEL)?;
        for _ in 0..CHECK_JOBS {
            let job = KBox::pin_init(
                try_pin_init!(ReplyCheck {
                    work <- new_work!("ReplyCheck::work"),
                    vecs: SegmentBuf::new(max_segments)?,
                    data: Bounce::new(max_io)?,
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
        bdev::noio(
            || match shared.check_read(&rq, &check, job.vecs, job.data) {
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
            },
        );
        drop((sock, check));
        shared.spare(this);
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
        mut bounce,
    } = start;
    shared.last_rx.store(shared.now(), Relaxed);
    // Idle, the thread runs where its replies arrive (see `Placement`).
    let mut placement = Placement::default();
    loop {
        let why = serve(
            ctx,
            &sock,
            &mut opener,
            &mut vecs,
            &mut bounce,
            &mut placement,
        );
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
/// `vecs` has room for one request's data segments, `bounce` (with
/// protection) for its data.
fn serve(
    ctx: &Ctx,
    sock: &Arc<Socket>,
    opener: &mut Opener,
    vecs: &mut SegmentBuf,
    bounce: &mut Option<Bounce>,
    placement: &mut Placement,
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
            Kind::IoReply => ctx.complete(sock, &h, &hb, opener, vecs, bounce),
            Kind::Ping => open(shared, sock, opener, &hb, None).and_then(|()| {
                let mut tx = shared.tx.lock();
                shared
                    .send_control(&mut tx, sock, &Header::pong(h.id))
                    .map_err(|_| "send failed")
            }),
            Kind::KeyUpdate => open(shared, sock, opener, &hb, None).and_then(|()| {
                opener.update_key().map_err(|e| {
                    if e.is_integrity() {
                        shared.blame(None);
                    }
                    e.as_str()
                })?;
                shared.dev.rekeys.add(1, Relaxed);
                Ok(())
            }),
            // The export grew: checked like any message, then against the
            // grant (the feature, block alignment, the protocol's limit).
            Kind::Resize => open(shared, sock, opener, &hb, None).and_then(|()| {
                let size = proto::validate_resize(&h, &shared.dev.granted.limits()).map_err(
                    |e| match e {
                        proto::ProtoError::BadKind => "RESIZE without the resize feature",
                        e => e.as_str(),
                    },
                )?;
                shared.dev.grow(size);
                Ok(())
            }),
            Kind::Pong => open(shared, sock, opener, &hb, None).map(|()| {
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
        let active = shared.active.load(Relaxed);
        placement.update(sock, active == 0, active >= BUSY_IN_FLIGHT);
    }
}

/// Receives the trailer of a message without payload (header `hb`), the
/// reply to `rq` if it is one, and checks the message. Failures end the
/// connection.
fn open(
    shared: &Shared,
    sock: &Socket,
    opener: &mut Opener,
    hb: &[u8; proto::HEADER_LEN],
    rq: Option<&Request<Router>>,
) -> core::result::Result<(), &'static str> {
    let Some(t) = Trailer::recv(sock, opener).map_err(|_| "receive failed")? else {
        return Ok(());
    };
    opener.open(hb, &security::no_data(), t).map_err(|e| {
        if e.is_integrity() {
            shared.blame(rq);
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
        data: &mut Bounce,
    ) -> core::result::Result<(), &'static str> {
        self.shared.check_read(&rq, check, vecs, data)?;
        self.shared.finish(rq, status_result(status));
        Ok(())
    }

    /// Takes in the data and trailer of a protected READ reply to `rq`
    /// (header `h`, wire form `hb`): the data into `job`'s pages, or into
    /// `bounce` without a job, and the trailer's sequence number through
    /// `opener`. Returns the check the data must then pass.
    #[expect(clippy::too_many_arguments)]
    fn receive_checked(
        &self,
        sock: &Socket,
        h: &Header,
        hb: &[u8; proto::HEADER_LEN],
        opener: &mut Opener,
        rq: &Request<Router>,
        job: &mut Option<Pin<KBox<ReplyCheck>>>,
        bounce: &mut Option<Bounce>,
    ) -> core::result::Result<Check, &'static str> {
        let data = match job.as_mut() {
            Some(job) => job.as_mut().project().data,
            None => bounce.as_mut().ok_or("no buffer for read data")?,
        };
        data.recv(sock, h.payload as usize)
            .map_err(|_| "receive of read data failed")?;
        let trailer = Trailer::recv(sock, opener)
            .map_err(|_| "receive failed")?
            .ok_or("no trailer")?;
        opener.admit(hb, trailer).map_err(|e| {
            self.shared.blame(Some(rq));
            e.as_str()
        })
    }

    /// Completes the request a reply answers. Errors end the connection.
    fn complete(
        &self,
        sock: &Arc<Socket>,
        h: &Header,
        hb: &[u8; proto::HEADER_LEN],
        opener: &mut Opener,
        vecs: &mut SegmentBuf,
        bounce: &mut Option<Bounce>,
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
            Status::Version
                | Status::Mismatch
                | Status::AuthFailed
                | Status::NotAllowed
                | Status::UnknownExport
        ) {
            return Err("a handshake status on an IO reply");
        }
        // Nothing of the reply counts until it is checked: on failure the
        // request is parked again and resent on the next connection.
        if opener.protected() && h.payload > 0 {
            // READ data: into the kernel's pages (a check job's, or the
            // receiver's own when every job is busy), checked there, then
            // copied to the request; a crypto worker does that and ends the
            // request, while the receiver goes on with the next reply.
            let mut job = match thread_pool::workers() {
                0 => None,
                _ => shared.spare_checks.lock().pop(),
            };
            let received = self.receive_checked(sock, h, hb, opener, &rq, &mut job, bounce);
            let check = match received {
                Ok(check) => check,
                Err(why) => {
                    if let Some(job) = job {
                        shared.spare(job);
                    }
                    return Err(why);
                }
            };
            let Some(mut job) = job else {
                // All jobs busy (or the pool is inline): check right here.
                let data = bounce.as_mut().ok_or("no buffer for read data")?;
                return self.finish_checked(rq, h.status, &check, vecs, data);
            };
            if !sock.has_data() {
                // Nothing more to receive yet: the receiver would only wait,
                // so it checks this reply itself and saves a worker's
                // wake-up (every reply, at queue depth 1).
                let j = job.as_mut().project();
                let r = self.finish_checked(rq, h.status, &check, j.vecs, j.data);
                shared.spare(job);
                return r;
            }
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
        if h.payload > 0 {
            rq.bvecs(vecs).map_err(|_| "request segments")?;
            rq.recv_data(sock, vecs)
                .map_err(|_| "receive of read data failed")?;
        }
        open(shared, sock, opener, hb, Some(&rq))?;
        if h.status == Status::Busy {
            shared.busy(rq);
            return Ok(());
        }
        shared.finish(rq, status_result(h.status));
        Ok(())
    }
}
