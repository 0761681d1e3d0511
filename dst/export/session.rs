// SPDX-License-Identifier: GPL-2.0

//! A connected local node: its [`Session`], receive loop and sender.
//!
//! The receive thread ([`session_main`]) reads each message after the
//! handshake, checks it and starts its request. Back-pressure keeps the
//! session within its queue depth (`wait_room`, its [`InFlight`] count) and its
//! share of the export's memory budget ([`Charge`]); a fence stops it for a
//! newer connection of the same local node. A request whose bio completes
//! inline is answered by the receive thread itself; the sender thread
//! ([`sender_main`]) answers the others.
//!
//! This is the state of one connection and its two threads, and what bounds
//! what the connection may hold. It is apart from admission (`listener.rs`:
//! the accept thread and the handshake, run once per connection) and from a
//! request's execution (`io.rs`: work items and bio completions, which run
//! outside the session's threads and only hand their result back).

use kernel::{
    fmt,
    prelude::*,
    sync::{
        atomic::{
            Acquire,
            Atomic,
            Full,
            Relaxed,
            Release, //
        },
        Arc,
        CondVar,
        Mutex,
        SpinLock, //
    },
    time::{
        Instant,
        Monotonic, //
    },
    workqueue::Queue,
};

use crate::{
    bdev::{
        self,
        Backing,
        BioOp,
        IoData, //
    },
    error::code,
    handoff::{Batch, Handoff},
    kthread::{
        self,
        Thread, //
    },
    netlink::{self, event},
    pages::PageBuf,
    placement::Placement,
    proto::{
        self,
        validate_request,
        Header,
        Kind,
        Limits,
        Name,
        Op,
        Status,
        HEADER_LEN,
        HELLO_LEN, //
    },
    security::{Opener, Rejected, Sealer, MAX_TRAILER},
    socket::{
        self,
        Socket, //
    },
    spares::Spares,
    thread_pool,
    trans::{self, Closed, InFlight, Trailer},
};

use super::{
    io::{start_bio, verify, Io},
    Inner, Peer, HANDSHAKE_MS, HELLO_MS, IDLE_TIMEOUT_MS, MEMORY_BUDGET,
};

/// Size of the buffer into which refused payloads are read and dropped.
const SCRATCH_LEN: usize = 4096;

/// Why a session ended.
pub(super) enum End {
    /// The peer closed the connection, or the export is stopping.
    Closed,
    /// Receiving or sending failed.
    Net(Error),
    /// The handshake timed out.
    Timeout,
    /// The peer broke the protocol.
    Proto(&'static str),
    /// The peer sent nothing for the idle timeout.
    Idle,
    /// The handshake was refused with this status (sent to the peer).
    Refused(Status),
    /// A local allocation failed.
    NoMem,
    /// A newer connection of the same local node fenced this one.
    Fenced,
    /// A message failed its integrity check (trailer or sequence number).
    Integrity(&'static str),
    /// A message could not be checked: a local crypto error (not ENOMEM,
    /// which is `NoMem`), not the peer's fault.
    Local(Error),
}

impl End {
    /// Classifies a receive error after the handshake, where a timeout
    /// means the peer was silent for the idle timeout.
    fn recv_idle(e: Error) -> Self {
        match End::recv(e) {
            End::Timeout => End::Idle,
            end => end,
        }
    }

    /// Classifies a receive error.
    pub(super) fn recv(e: Error) -> Self {
        if e == code::econnreset() {
            End::Closed
        } else if e == EAGAIN {
            End::Timeout
        } else {
            End::Net(e)
        }
    }
}

impl From<Rejected> for End {
    /// A message that was not accepted: the peer's integrity error, or a
    /// local failure to check it.
    fn from(e: Rejected) -> Self {
        match e {
            Rejected::Message(e) => End::Integrity(e.as_str()),
            Rejected::Local(e) if e == ENOMEM => End::NoMem,
            Rejected::Local(e) => End::Local(e),
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Closed => f.write_str("connection closed"),
            End::Net(e) => write!(f, "network error {:?}", e),
            End::Timeout => write!(
                f,
                "handshake not done in time (HELLO within {} ms, all within {} ms)",
                HELLO_MS, HANDSHAKE_MS
            ),
            End::Proto(what) => write!(f, "protocol violation: {}", what),
            End::Idle => write!(f, "nothing received for {} ms", IDLE_TIMEOUT_MS),
            End::Refused(s) => write!(f, "handshake refused: {}", s.as_str()),
            End::NoMem => f.write_str("out of memory"),
            End::Fenced => f.write_str("fenced by a newer connection of the same client"),
            End::Integrity(what) => write!(f, "integrity check failed: {}", what),
            End::Local(e) => write!(f, "local error {:?} while checking a message", e),
        }
    }
}

/// What follows a header in a frame.
pub(super) enum Body<'a> {
    None,
    Bytes(&'a [u8]),
    /// A READ reply's pages: its request is done with them, so they are
    /// the reply's, to protect in place and send.
    Pages(&'a mut PageBuf),
}

/// One connected local node.
#[pin_data]
pub(super) struct Session {
    /// Shared with the port's pending connection that handed it over.
    pub(super) sock: Arc<Socket>,
    pub(super) peer: Peer,
    pub(super) id: u32,
    pub(super) backing: Arc<Backing>,
    /// The sending half: held while a frame is protected and sent, so that
    /// frames never interleave and their sequence numbers go out in order.
    /// The sealer is set once by the handshake, before any request exists;
    /// `None` before that (the handshake's own frames are not protected).
    #[pin]
    pub(super) tx: Mutex<Option<Sealer>>,
    /// Requests started and not yet answered: a request counts until its
    /// reply has been sent, so the queue depth bounds the session's memory
    /// also when the peer does not read its replies. Only taken in process
    /// context: the receive thread and work items. Its gate closes when a
    /// newer connection of the same client fences this one: no request of
    /// this session may start any more.
    #[pin]
    pub(super) inflight: InFlight,
    /// Bytes of request data this session holds, part of the export's
    /// `memory`; only changed under that lock.
    pub(super) held: Atomic<usize>,
    /// Signalled (under the export's `memory` lock) when `held` drops or
    /// the session is fenced: a receive thread waiting for memory holds
    /// some, so its own requests completing is what it waits for.
    #[pin]
    pub(super) memory_room: CondVar,
    /// Finished requests, for the sender thread to answer.
    #[pin]
    pub(super) replies: Handoff<Io>,
    /// Set by the receive thread as its very last step.
    pub(super) finished: Atomic<bool>,
    /// The local node's `client_id` from its HELLO (0 = none).
    pub(super) client_id: Atomic<u64>,
    /// The local node's identity from its HELLO, proven by its key; set
    /// with `client_id`, under the export's session lock.
    #[pin]
    pub(super) client: SpinLock<Name>,
    /// The identity and device id this session holds the export's write
    /// access as (see [`Writer`]); `None` if it was granted no writes, or
    /// the export is shared.
    ///
    /// [`Writer`]: super::Writer
    #[pin]
    pub(super) writer: SpinLock<Option<(Name, u64)>>,
    /// Which of the local node's queues this connection serves.
    pub(super) queue_index: Atomic<u32>,
    /// The local node's fencing epoch from its HELLO.
    pub(super) epoch: Atomic<u32>,
    /// Requests refused so far (only the first is logged).
    pub(super) refused: Atomic<u32>,
    /// The size the local node knows: granted, then sent in RESIZEs by the
    /// sender thread, the only one to change it once serving. `u64::MAX`
    /// while it cannot be told (before the grant, or it did not ask for
    /// RESIZE).
    pub(super) told: Atomic<u64>,
    /// How far the handshake got: until it succeeded the session holds one
    /// of the export's few handshake slots.
    pub(super) stage: AtomicStage,
    /// When the connection was accepted: the handshake's deadline counts
    /// from here, however late the session thread starts.
    pub(super) accepted: Instant<Monotonic>,
    /// The HELLO body, read by the port (which picked the export by it).
    pub(super) hello: [u8; HELLO_LEN],
    /// Memory for requests ([`Io`]): one per slot of the queue depth,
    /// made after the handshake, so a request needs none.
    #[pin]
    pub(super) spare_ios: Spares<Io>,
    /// Last: the socket above must go before the export's namespace reference.
    pub(super) export: Arc<Inner>,
}

/// How far a session's handshake got, for admission (`listener.rs`).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum Stage {
    /// Handed over by the port with its HELLO; in the handshake.
    Heard = 0,
    /// Cut short to make room for a newer connection: its socket is shut
    /// down and its thread ends soon.
    Cut = 1,
    /// The handshake succeeded.
    Admitted = 2,
}

/// A [`Stage`] that the session thread moves on and the accept thread may
/// cut.
pub(super) struct AtomicStage(Atomic<u32>);

impl AtomicStage {
    pub(super) fn new() -> Self {
        AtomicStage(Atomic::new(Stage::Heard as u32))
    }

    pub(super) fn get(&self) -> Stage {
        match self.0.load(Acquire) {
            0 => Stage::Heard,
            1 => Stage::Cut,
            _ => Stage::Admitted,
        }
    }

    /// Moves from `from` to `to`; whether the stage was `from` (a session
    /// that was cut stays cut).
    pub(super) fn advance(&self, from: Stage, to: Stage) -> bool {
        self.0.cmpxchg(from as u32, to as u32, Full).is_ok()
    }

    /// Whether the handshake is under way (not cut, not done).
    pub(super) fn in_handshake(&self) -> bool {
        self.get() == Stage::Heard
    }
}

/// The receive thread of a session, from handshake to teardown.
pub(super) fn session_main(s: &Arc<Session>) {
    // Everything this thread allocates serves block IO.
    bdev::noio(|| {
        let export = &s.export;
        export.live.add(1, Relaxed);
        let mut sender = None;
        let end = s.serve(&mut sender);
        s.sock.shutdown();
        // The sender answers (or, the socket being shut, drops) what is
        // still in flight; then it is stopped.
        s.inflight.wait_idle();
        drop(sender);
        // A completion may still be waking the sender; the session must
        // outlive it.
        s.replies.quiesce();
        export.live.fetch_sub(1, Relaxed);
        if export.may_log() {
            let refused = s.refused.load(Relaxed);
            pr_info!(
                "export {}: session {} with {} ended: {} ({} requests refused)\n",
                export.shown(),
                s.id,
                s.peer,
                end,
                refused
            );
        }
        s.finished.store(true, Release);
    })
}

impl Session {
    /// Runs the session until it ends; returns why. Starts the sender
    /// thread into `sender` once the handshake has succeeded.
    fn serve(self: &Arc<Self>, sender: &mut Option<Thread<Arc<Session>>>) -> End {
        // The grant tells the device's size as it is now.
        self.export.refresh(&self.backing);
        // A peer on this host may be serving its swap: its session is set
        // up (crypto transforms and their reserves) without reclaim.
        let handshake = if self.sock.memalloc() {
            socket::noreclaim(|| self.handshake())
        } else {
            self.handshake()
        };
        let (grant, mut opener) = match handshake {
            Ok(r) => r,
            Err(end) => return end,
        };
        self.stage.advance(Stage::Heard, Stage::Admitted);
        // Before the sender starts: a growth from now on kicks it, and one
        // since the grant finds it told less than the export's size.
        if grant.features & proto::FEATURE_RESIZE != 0 {
            self.told.store(grant.size, Relaxed);
            self.replies.kick();
        }
        let port = self.export.addr.parts().1;
        match Thread::spawn(
            fmt!("dst-exp-{}.{}s", port, self.id),
            self.clone(),
            sender_main,
        ) {
            Ok(thread) => *sender = Some(thread),
            Err(_) => return End::NoMem,
        }
        if self.export.may_log() {
            pr_info!(
                "export {}: session {} with {} opened (max IO {} KiB, queue depth {})\n",
                self.export.shown(),
                self.id,
                self.peer,
                grant.max_io_bytes / 1024,
                grant.queue_depth
            );
        }
        let Ok(mut scratch) = KVec::from_elem(0u8, SCRATCH_LEN, GFP_KERNEL) else {
            return End::NoMem;
        };
        if self.spare_ios.fill(grant.queue_depth.into()).is_err() {
            return End::NoMem;
        }
        let limits = grant.limits();
        self.notify(event::SESSION_OPENED);
        self.export.serving.add(1, Relaxed);
        // Idle, it runs where its requests arrive (see `Placement`).
        let mut placement = Placement::default();
        let end = loop {
            if let Err(end) = self.step(&limits, grant.queue_depth, &mut scratch, &mut opener) {
                break end;
            }
            // Its in-flight count alone does not show the queue depth: a
            // device that completes inside `submit_bio` keeps it near 0.
            // Read (under its lock) only when nothing waits.
            let waiting = self.sock.has_data();
            let idle = !waiting && self.inflight.count() == 0;
            placement.update(&self.sock, idle, waiting);
        };
        self.export.serving.fetch_sub(1, Relaxed);
        if matches!(end, End::Integrity(_)) {
            self.export.integrity_errors.add(1, Relaxed);
        }
        self.notify(event::SESSION_CLOSED);
        end
    }

    /// Multicasts an event about this session.
    fn notify(&self, ev: u32) {
        let export = &self.export;
        netlink::notify_export(export.net, export.index, ev, self.peer.0, None);
    }

    /// Receives exactly `buf.len()` bytes, after the handshake: a peer
    /// silent for the idle timeout ends the session.
    fn recv(&self, buf: &mut [u8]) -> Result<(), End> {
        self.sock.recv_exact(buf).map_err(End::recv_idle)
    }

    /// Sends one frame (`more`: another follows at once). A failure shuts
    /// the connection down, which ends the session.
    /// After the handshake every frame gets its trailer; for AEAD a READ
    /// reply's pages are encrypted in place first (they belong to the
    /// request, which is done with them). Protection runs under the send
    /// lock, so that the receive thread's frames (pongs, refusals) and the
    /// sender's replies go out in the order of their sequence numbers.
    pub(super) fn send(&self, h: &Header, mut body: Body<'_>, more: bool) -> Result<(), End> {
        let hb = h.encode();
        let mut trailer = [0u8; MAX_TRAILER];
        let mut tx = self.tx.lock();
        if let Some(sealer) = &mut *tx {
            match trans::update_key_if_due(&self.sock, sealer) {
                Ok(true) => {
                    self.export.rekeys.add(1, Relaxed);
                }
                Ok(false) => {}
                Err(e) => {
                    self.sock.shutdown();
                    return Err(End::Net(e));
                }
            }
        }
        let tlen = match (&mut *tx, &mut body) {
            (None, _) => Ok(0),
            (Some(sealer), Body::None) => sealer.seal_header(&hb, &mut trailer),
            (Some(sealer), Body::Pages(p)) => {
                let data = p.segments();
                sealer.seal(&hb, &data, &data, &mut trailer)
            }
            // Only the handshake sends bytes, before there is a sealer.
            (Some(_), Body::Bytes(_)) => Err(EINVAL),
        }
        .map_err(End::Net)?;
        let payload = |more: bool| match &body {
            Body::None => Ok(()),
            Body::Bytes(b) => self.sock.send_all(b, more),
            Body::Pages(p) => p.send(&self.sock, more),
        };
        let payload = (!matches!(body, Body::None)).then_some(&payload as trans::Payload<'_>);
        let trailer = trailer.get(..tlen).unwrap_or(&[]);
        let r = trans::send_frame(&self.sock, &hb, payload, trailer, more);
        drop(tx);
        r.map_err(|e| {
            self.sock.shutdown();
            End::Net(e)
        })
    }

    /// Receives the trailer of a message without payload (header `hb`) and
    /// checks the message.
    fn open(&self, opener: &mut Opener, hb: &[u8; HEADER_LEN]) -> Result<(), End> {
        match Trailer::recv(&self.sock, opener).map_err(End::recv_idle)? {
            None => Ok(()),
            Some(t) => {
                let check = opener
                    .admit(hb, t)
                    .map_err(|e| End::Integrity(e.as_str()))?;
                verify(&check, None)
            }
        }
    }

    /// Receives and handles one message.
    fn step(
        self: &Arc<Self>,
        limits: &Limits,
        depth: u16,
        scratch: &mut [u8],
        opener: &mut Opener,
    ) -> Result<(), End> {
        let mut hb = [0u8; HEADER_LEN];
        self.recv(&mut hb)?;
        let h = Header::decode(&hb).map_err(|e| End::Proto(e.as_str()))?;
        self.export.refresh(&self.backing);
        match h.kind {
            Kind::Io => {
                // Checked against the export's size now, which may have
                // grown since the grant.
                let limits = Limits {
                    size: self.export.size(),
                    ..*limits
                };
                self.request(h, &hb, &limits, depth, scratch, opener)
            }
            Kind::Ping => {
                self.open(opener, &hb)?;
                self.send(&Header::pong(h.id), Body::None, false)
            }
            Kind::Pong => self.open(opener, &hb),
            Kind::Release => {
                self.open(opener, &hb)?;
                self.release_write();
                Ok(())
            }
            Kind::KeyUpdate => {
                self.open(opener, &hb)?;
                opener.update_key()?;
                self.export.rekeys.add(1, Relaxed);
                Ok(())
            }
            Kind::Hello
            | Kind::HelloReply
            | Kind::IoReply
            | Kind::Challenge
            | Kind::Auth
            | Kind::Resize
            | Kind::Discover
            | Kind::DiscoverReply => Err(End::Proto("unexpected message kind after the handshake")),
        }
    }

    /// Reads and drops `n` payload bytes.
    fn skip(&self, n: u32, scratch: &mut [u8]) -> Result<(), End> {
        let mut left = n as usize;
        while left > 0 {
            let k = left.min(scratch.len());
            self.recv(&mut scratch[..k])?;
            left -= k;
        }
        Ok(())
    }

    /// Answers a request that is not executed.
    fn refuse(&self, h: &Header, status: Status) -> Result<(), End> {
        if status != Status::Busy
            && self.refused.fetch_add(1, Relaxed) == 0
            && self.export.may_log()
        {
            pr_warn!(
                "export {}: session {} with {}: {} of {} bytes at {} refused: {} (further refusals only counted)\n",
                self.export.shown(),
                self.id,
                self.peer,
                h.op.map_or("?", Op::as_str),
                h.length,
                h.offset,
                status.as_str()
            );
        }
        self.send(&h.reply(status), Body::None, false)
    }

    /// Handles one IO request: checks it, then starts it or refuses it.
    /// With protection, the whole message (payload included) is checked
    /// before anything in it is believed, refused requests too.
    fn request(
        self: &Arc<Self>,
        h: Header,
        hb: &[u8; HEADER_LEN],
        limits: &Limits,
        depth: u16,
        scratch: &mut [u8],
        opener: &mut Opener,
    ) -> Result<(), End> {
        // Only this thread adds to `inflight`, so the count cannot grow
        // between this wait and `begin` below.
        self.wait_room(depth)?;
        let mut payload = if h.payload == 0 {
            None
        } else if opener.protected() || validate_request(&h, limits).is_ok() {
            let len = h.payload as usize;
            let charge = self.charge(len)?;
            // The pool fails only a payload larger than the largest IO: a
            // protected one is still read and checked before it is refused,
            // into pages of its own (no reserve for a peer's mistakes).
            let mut pages = match self.export.pool.alloc(len) {
                Ok(pages) => pages,
                Err(_) => PageBuf::alloc(len, false).map_err(|_| End::NoMem)?,
            };
            pages.recv(&self.sock).map_err(End::recv_idle)?;
            Some((pages, charge))
        } else {
            self.skip(h.payload, scratch)?;
            None
        };
        let trailer = Trailer::recv(&self.sock, opener).map_err(End::recv_idle)?;
        let valid = validate_request(&h, limits);
        // A valid WRITE is checked by a crypto worker, which then starts it,
        // while more requests wait on the socket; everything else is
        // checked here, before anything in it is used. (With the pool in
        // inline mode, or nothing more to receive, the check runs here all
        // the same: this thread would only wait, and a worker's wake-up is
        // saved.)
        let on_pool = matches!((&trailer, h.op), (Some(_), Some(Op::Write)))
            && valid.is_ok()
            && thread_pool::workers() > 0
            && self.sock.has_data();
        let mut pending = None;
        if let Some(t) = trailer {
            let check = opener
                .admit(hb, t)
                .map_err(|e| End::Integrity(e.as_str()))?;
            if on_pool {
                pending = Some(check);
            } else {
                verify(&check, payload.as_mut().map(|p| &mut p.0))?;
            }
        }
        let op = match (valid, h.op) {
            (Ok(()), Some(op)) => op,
            (Err(status), _) => return self.refuse(&h, status),
            // `validate_request` accepts IO requests only, which have an op.
            (Ok(()), None) => return Err(End::Proto("IO request without an op")),
        };
        let (data, charge) = match (op, payload) {
            (Op::Write, Some((pages, charge))) => (Some(pages), Some(charge)),
            (Op::Read, _) => {
                let len = h.length as usize;
                let charge = self.charge(len)?;
                // `validate_request` bounds the length by the largest IO.
                let Ok(pages) = self.export.pool.alloc(len) else {
                    return self.refuse(&h, Status::Invalid);
                };
                (Some(pages), Some(charge))
            }
            _ => (None, None),
        };
        let data = data.map(|pages| IoData::new(self.backing.clone(), pages));
        let Ok(io) = Io::new(self.clone(), h, data, charge, pending) else {
            return self.refuse(&h, Status::Busy);
        };
        let alone = self.inflight.begin().map_err(|Closed| End::Fenced)? == 1;
        if on_pool {
            thread_pool::submit_boxed(io);
            return Ok(());
        }
        let bio_op = match op {
            Op::Read => BioOp::Read,
            Op::Write => BioOp::Write {
                fua: h.flags & proto::FLAG_FUA != 0,
            },
            Op::Flush | Op::Discard | Op::WriteZeroes => {
                // Blocking operations run in the work item.
                self.queue().enqueue(io);
                return Ok(());
            }
        };
        // The only request of an idle session, with nothing more to
        // receive, is answered from here if its bio completes inline (a RAM
        // disk, a cache hit), without waking the sender. Otherwise the
        // reply is the sender's: it batches replies (`MSG_MORE`) while this
        // thread goes on receiving.
        if !alone || self.sock.has_data() {
            start_bio(io, bio_op);
            return Ok(());
        }
        let hold = self.replies.hold();
        start_bio(io, bio_op);
        self.answer(hold.release());
        Ok(())
    }

    /// The queue blocking device operations run on.
    fn queue(&self) -> &Queue {
        self.export.wq.queue()
    }

    /// Reserves `bytes` of the export's memory budget for a request's data,
    /// waiting while this session holds its share (the budget divided
    /// among the sessions past their handshake, at least one largest IO)
    /// or the export the whole budget. A session holding nothing always gets its bytes, so
    /// each can make progress; the budget is overrun by at most one
    /// largest IO per session. Fails once the session is fenced.
    fn charge(self: &Arc<Self>, bytes: usize) -> Result<Charge, End> {
        let export = &self.export;
        let mut used = export.memory.lock();
        loop {
            let held = self.held.load(Relaxed);
            let serving = (export.serving.load(Relaxed) as usize).max(1);
            let share = (MEMORY_BUDGET / serving).max(export.max_io as usize);
            if held == 0 || (held + bytes <= share && *used + bytes <= MEMORY_BUDGET) {
                break;
            }
            if self.inflight.is_closed() {
                return Err(End::Fenced);
            }
            self.memory_room.wait(&mut used);
        }
        *used += bytes;
        self.held.store(self.held.load(Relaxed) + bytes, Relaxed);
        Ok(Charge {
            session: self.clone(),
            bytes,
        })
    }

    /// Whether this session holds the write access as `writer`.
    pub(super) fn writes_as(&self, writer: &super::Writer) -> bool {
        self.writer
            .lock()
            .is_some_and(|(client, _)| client == writer.client)
    }

    /// A RELEASE: the local node's device (`client_id`) is being deleted
    /// after its last IO. The write access its identity holds goes back to
    /// the export, unless another device of the identity still writes.
    fn release_write(&self) {
        let export = &self.export;
        // Under the export's writer lock, as claims are: no device of the
        // identity can start writing between the check and the release.
        let mut writer = export.writer.lock();
        let Some((client, client_id)) = self.writer.lock().take() else {
            return;
        };
        let others = export.sessions.lock().iter().any(|t| {
            let s = t.data();
            !s.finished.load(Acquire)
                && s.writer
                    .lock()
                    .is_some_and(|(c, id)| c == client && id != client_id)
        });
        if others {
            return;
        }
        if writer.is_some_and(|w| w.client == client) {
            *writer = None;
            drop(writer);
            pr_info!(
                "export{} {}: write access released by {} at {}\n",
                export.index,
                export.shown(),
                client,
                self.peer
            );
        }
    }

    /// Stops this session from starting requests, ends its connection and
    /// waits until every request it started has completed.
    pub(super) fn fence(&self) {
        // No request starts once this has returned (`InFlight::begin`).
        self.inflight.close();
        // Its receive thread may be waiting for memory. Taking the lock
        // orders the wake-up after its check of the gate; it is let go of
        // before the wait below, since a completing request needs it to
        // give its memory back (`Charge::drop`).
        {
            let _used = self.export.memory.lock();
            self.memory_room.notify_all();
        }
        self.sock.shutdown();
        self.inflight.wait_idle();
    }

    /// Back-pressure: waits until fewer than `depth` requests are in flight
    /// before the next one is read. A peer that does not read its replies
    /// is thereby not read from either (TCP pushes back on it), and its
    /// session holds at most `depth` requests' memory. Fails once the
    /// session is fenced.
    fn wait_room(&self, depth: u16) -> Result<(), End> {
        self.inflight
            .wait_below(depth.into())
            .map_err(|Closed| End::Fenced)
    }
}

/// The sender thread of a session: answers finished requests, a batch at a
/// time, until the session stops it (once nothing is in flight).
fn sender_main(s: &Arc<Session>) {
    loop {
        let batch = s.replies.wait();
        if s.replies.kicked() {
            s.tell_size();
        }
        if batch.is_empty() {
            if kthread::should_stop() {
                return;
            }
            continue;
        }
        s.answer(batch);
    }
}

impl Session {
    /// Sends the replies of finished requests, and frees the requests.
    fn answer(&self, mut batch: Batch<Io>) {
        while let Some(mut io) = batch.next() {
            let read_ok = io.req.op == Some(Op::Read) && io.status == Some(Status::Ok);
            let reply = io.req.reply(io.status.unwrap_or(Status::IoError));
            let body = match io.as_mut().project().data {
                Some(data) if read_ok => Body::Pages(data.pages_mut()),
                _ => Body::None,
            };
            // A failed send shuts the connection down; the receive thread
            // then ends the session, and later replies fail at once.
            let _ = self.send(&reply, body, !batch.is_empty());
            // Its pages and memory budget go back here, and its memory to
            // the spares before its slot is free: the peer may send the
            // next request as soon as it sees this reply, and the receive
            // thread waits for room until then (`Session::wait_room`).
            Io::recycle(io);
            self.inflight.end();
        }
    }

    /// Sends a RESIZE if the export has grown beyond what the local node
    /// was told (never if it did not ask for RESIZE). The sender's: it
    /// goes out between replies, sealed in order with them; a failed send
    /// ends the session as a reply's does.
    fn tell_size(&self) {
        let size = self.export.size();
        if size <= self.told.load(Relaxed) {
            return;
        }
        self.told.store(size, Relaxed);
        let _ = self.send(&Header::resize(size), Body::None, false);
    }
}

/// A request's share of its export's memory budget, given back on drop.
pub(super) struct Charge {
    session: Arc<Session>,
    bytes: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        let (s, export) = (&self.session, &self.session.export);
        let mut used = export.memory.lock();
        *used = used.saturating_sub(self.bytes);
        s.held
            .store(s.held.load(Relaxed).saturating_sub(self.bytes), Relaxed);
        s.memory_room.notify_one();
        drop(used);
    }
}
