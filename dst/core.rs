// SPDX-License-Identifier: GPL-2.0

//! The local node: `/dev/dstN`, a blk-mq disk whose requests become
//! transactions on a TCP connection to an export node, resent on a new
//! connection when the old one fails.
//!
//! Data flow:
//!
//! - `queue_rq` (any task, must not sleep) puts the request on the send ring
//!   and wakes the sender thread. It never waits on the network.
//! - The sender thread takes requests off the ring while the connection is
//!   up and, under the send lock, sends header and data (straight from the
//!   request pages), then parks the request ([`Request::park`]) with the
//!   time until its reply.
//! - The receiver thread reads replies, finds the request by the tag in the
//!   transaction id among its own queue's requests, claims it, checks the
//!   id's sequence number and the echoed fields, receives READ data straight
//!   into the request pages and ends the request with the status the export
//!   sent.
//!
//! Faults (see Documentation/design.md, "Failure semantics"):
//!
//! - The sender thread is also the watchdog: a request unanswered for the
//!   request timeout, or a ping unanswered for the ping timeout, shuts the
//!   socket down. Idle connections are pinged every ping interval.
//! - When the connection fails, the receiver thread (which owns connections)
//!   puts every parked request back on the ring (counting a resend; past the
//!   resend limit it fails), then reconnects every reconnect delay with a
//!   fresh handshake. A changed export (size, block size, permissions) is
//!   refused. The HELLO carries this device's client id and fencing epoch,
//!   so the export fences the old connection before the new one may send
//!   anything; a request fails only after its connection is reset and the
//!   device has moved to a new epoch (see [`Common::epoch`]).
//! - Disconnected for longer than the loss timeout, the device FAILS: queued
//!   and new requests end with EIO at once, until a reconnect succeeds.
//!
//! Only the holder of a request's handle may touch its pages or end it, and
//! parked requests are claimed by compare-and-exchange (`dst/blk.rs`), so
//! each request is ended exactly once.

use kernel::{
    bindings,
    ffi::c_int,
    new_condvar,
    new_mutex,
    new_spinlock,
    page::PAGE_SIZE,
    prelude::*,
    sync::{
        atomic::{Acquire, Atomic, Full, Relaxed, Release},
        Arc, CondVar, Mutex, SpinLock,
    },
    time::{msecs_to_jiffies, Delta, Instant, Monotonic},
    workqueue::{impl_has_work, new_work, Work, WorkItem}, //
};

use crate::{
    bdev,
    blk::{self, BlockOp, Disk, DiskParams, Driver, Request, RqInfo, SegmentBuf, Started, TagSet},
    crypto,
    epoch::Epoch,
    kthread::{self, Thread},
    netlink::{self, event, Refusal},
    pages::Bounce,
    proto::{self, Header, HelloBody, HelloReplyBody, Kind, Op, Protection, Security, Status},
    security::{self, Check, Opener, Role, Sealer, SecurityConfig, Segments, MAX_TRAILER},
    socket::{self, errno, Net, SockAddr, Socket},
    thread_pool,
    trans::{self, AtomicConnState, ConnState},
};

/// Default number of requests in flight.
pub(crate) const DEFAULT_QUEUE_DEPTH: u32 = 128;
/// Default number of queues, each with its own connection.
pub(crate) const DEFAULT_QUEUES: u32 = 1;
/// Default largest request, in pages (1 MiB).
pub(crate) const DEFAULT_MAX_IO_PAGES: u32 = 256;

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
    /// Disconnected this long: queued and new IO fail until reconnected (ms).
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
    fn new() -> Self {
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

    fn get(a: &Atomic<u32>) -> u64 {
        u64::from(a.load(Relaxed))
    }
}

/// What `dstcfg -a local` asks for.
pub(crate) struct DeviceConfig {
    /// Namespace to connect from.
    pub(crate) net: Net,
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
    /// Timeouts different from the defaults.
    pub(crate) settings: SettingsUpdate,
    /// Protection mode, algorithm and key; must match the export's.
    pub(crate) security: SecurityConfig,
}

/// Per-request driver data. All-zero is valid (idle, no id).
///
/// Low bits of a transaction id that hold the request's tag within its
/// queue (the queue is the connection's, so its number is not sent): tags
/// are below the queue depth, at most [`proto::MAX_QUEUE_DEPTH`].
const TAG_BITS: u32 = 16;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
const _: () = assert!(proto::MAX_QUEUE_DEPTH as u64 <= TAG_MASK + 1);

/// Where a request is shows who owns it ([`Request`]): on the ring, with the
/// sender while it is sent, parked while its reply is awaited (the sender
/// parks it once sent), with the receiver or one crypto worker while its
/// reply is taken in and checked. Replies, requeues and failures claim
/// parked requests, so each is ended exactly once.
pub(crate) struct Pdu {
    /// The transaction id on the wire: generation << [`TAG_BITS`] | tag.
    id: Atomic<u64>,
    /// Times it was sent again after a connection failed.
    resends: Atomic<u32>,
    /// BUSY answers in a row, and when the first came (device clock, ms);
    /// see [`Shared::busy`].
    busy: Atomic<u32>,
    busy_since: Atomic<u64>,
}

/// Requests waiting for the sender; never holds more than the queue depth.
struct Ring {
    slots: KVec<Option<Request<Router>>>,
    head: usize,
    len: usize,
}

impl Ring {
    fn new(cap: usize) -> Result<Self> {
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

    fn push(&mut self, rq: Request<Router>) -> core::result::Result<(), Request<Router>> {
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

    fn pop(&mut self) -> Option<Request<Router>> {
        if self.len == 0 {
            return None;
        }
        let rq = self.slots.get_mut(self.head)?.take();
        self.head = (self.head + 1) % self.slots.len();
        self.len -= 1;
        rq
    }
}

/// A snapshot of a device's counters.
pub(crate) struct Counters {
    pub(crate) reconnects: u64,
    pub(crate) resends: u64,
    pub(crate) timeouts: u64,
    pub(crate) io_errors: u64,
    pub(crate) bytes_read: u64,
    pub(crate) bytes_written: u64,
    /// Replies whose trailer or sequence number did not verify.
    pub(crate) integrity_errors: u64,
    /// Requests queued or sent, not yet ended.
    pub(crate) in_flight: u32,
}

/// The sending half of the current connection.
struct Tx {
    /// `None` while disconnected.
    sock: Option<Arc<Socket>>,
    /// Protects what is sent on `sock`; replaced with each connection.
    sealer: Option<Sealer>,
    /// Cookie of the unanswered PING, and when it was sent.
    ping: Option<(u64, u64)>,
    /// Room for one request's data segments, for the sealer.
    vecs: SegmentBuf,
    /// With AEAD, where WRITE data is encrypted to (one request is sent at
    /// a time): allocated with the queue, for the largest request.
    bounce: Option<Bounce>,
    /// The fencing epoch the connection was made in (its HELLO's).
    epoch: u32,
    /// The first connection and the receiving half of its protection, until
    /// the receiver thread takes them (later connections are its own).
    first: Option<(Arc<Socket>, Opener)>,
}

/// A connection as the handshake leaves it.
struct Conn {
    sock: Socket,
    granted: HelloReplyBody,
    sealer: Sealer,
    opener: Opener,
}

/// What every queue of a device shares: identity, configuration, the grant,
/// settings and counters.
pub(crate) struct Common {
    index: u32,
    addr: SockAddr,
    /// Namespace to reconnect from.
    net: Net,
    /// What the export granted at creation; later grants must match.
    granted: HelloReplyBody,
    /// What the first HELLO asked for; reconnects ask the same (with a
    /// fresh nonce, their queue's index and the current epoch). Its
    /// `client_id` and `epoch` let the export fence older connections.
    hello: HelloBody,
    /// The fencing epoch new connections are made in. Moved on before a
    /// request fails while the connection it was sent on may not have been
    /// fenced: nothing is sent in an older epoch after that, and the first
    /// connection of the new one fences every older connection of the
    /// device at the export, whatever its queue. So a WRITE that failed
    /// cannot be overtaken there by a newer one to the same blocks.
    epoch: Epoch,
    /// Protection and key, for reconnects.
    security: SecurityConfig,
    /// Largest number of data segments of one request.
    max_segments: usize,
    pub(crate) settings: Settings,
    /// Device clock origin; times below are ms since then.
    created: Instant<Monotonic>,
    /// Generations for transaction ids: a late or duplicate reply for a tag
    /// that has since been reused does not match the new id. 48 bits: at a
    /// million requests a second they last nine years.
    next_seq: Atomic<u64>,
    /// Counters for `dstcfg -a list` and sysfs.
    reconnects: Atomic<u64>,
    resends: Atomic<u64>,
    timeouts: Atomic<u64>,
    io_errors: Atomic<u64>,
    bytes_read: Atomic<u64>,
    bytes_written: Atomic<u64>,
    integrity_errors: Atomic<u64>,
    /// Set when the device is being deleted, and when (device clock, ms).
    deleting: Atomic<bool>,
    deleting_at: Atomic<u64>,
    /// Queues not connected (reconnecting or failed), and failed: the
    /// device-level events fire when these leave or reach 0.
    lost_queues: Atomic<u32>,
    failed_queues: Atomic<u32>,
}

/// Why the local node shut a connection down itself.
#[derive(Clone, Copy)]
#[repr(u32)]
enum Shut {
    SendFailed = 1,
    Stale,
    RequestTimeout,
    PingTimeout,
    BadReply,
}

impl Shut {
    /// Takes the reason recorded in `slot`, if any.
    fn take(slot: &Atomic<u32>) -> Option<Self> {
        Some(match slot.xchg(0, Relaxed) {
            1 => Shut::SendFailed,
            2 => Shut::Stale,
            3 => Shut::RequestTimeout,
            4 => Shut::PingTimeout,
            5 => Shut::BadReply,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Shut::SendFailed => "send failed",
            Shut::Stale => "superseded by a newer epoch",
            Shut::RequestTimeout => "request timed out",
            Shut::PingTimeout => "ping unanswered",
            Shut::BadReply => "reply rejected",
        }
    }
}

/// One hardware queue and its connection: the state shared by `queue_rq`,
/// the queue's sender thread and its receiver thread.
#[pin_data]
pub(crate) struct Shared {
    /// Hardware queue number, also the HELLO's `queue_index`.
    qid: u32,
    dev: Arc<Common>,
    conn: AtomicConnState,
    /// When something was last received, or the connection came up.
    last_rx: Atomic<u64>,
    /// When the connection was lost.
    lost_at: Atomic<u64>,
    /// Why this side shut the connection down ([`Shut`] as `u32`, 0 for
    /// none), for the receiver's log line: it only sees its receive fail.
    shut: Atomic<u32>,
    /// blk-mq timed a request out that awaits its reply on the current
    /// connection: the sender drops the connection (see `timed_out`).
    late: Atomic<bool>,
    /// Replies being checked by crypto workers (see [`ReplyCheck`]); the
    /// receiver waits for none to be left before it requeues requests.
    #[pin]
    checks: Mutex<u32>,
    /// Signalled when `checks` drops to 0.
    #[pin]
    checks_done: CondVar,
    /// Requests for the sender; a spinlock because `queue_rq` may not sleep.
    #[pin]
    ring: SpinLock<Ring>,
    /// Wakes the sender: new request, state change.
    #[pin]
    wake: CondVar,
    /// Wakes the reconnect wait early: settings changed, device deleted.
    #[pin]
    rewake: CondVar,
    /// Serialises whole frames on the socket and guards the sending half of
    /// the connection. Held while a request is sent, so whoever requeues or
    /// fails requests takes it to know no send is running.
    #[pin]
    tx: Mutex<Tx>,
}

/// The block driver of a device: routes each request to its hardware
/// queue's connection.
pub(crate) struct Router {
    dev: Arc<Common>,
    queues: KVec<Arc<Shared>>,
}

/// What the threads work on: the shared state plus the tag set, to find
/// requests by tag. (The tag set refers to `Shared`, not the other way round.)
struct Ctx {
    shared: Arc<Shared>,
    tags: Arc<TagSet<Router>>,
}

/// A local node device. Dropping it deletes `/dev/dstN` (draining IO first),
/// then ends the connection.
pub(crate) struct Device {
    // Drop order matters: the disk first (del_gendisk waits for in-flight IO,
    // which needs the threads), then the threads, then the tag set.
    disk: Disk,
    /// Only held: dropping them stops the threads.
    _threads: KVec<QueueThreads>,
    router: Arc<Router>,
    tags: Arc<TagSet<Router>>,
}

/// The two threads of one queue's connection (only held: dropping them
/// stops them).
struct QueueThreads {
    _receiver: Thread<Ctx>,
    _sender: Thread<Ctx>,
}

fn status_errno(status: Status) -> c_int {
    let e = match status {
        Status::Ok => return 0,
        Status::NotSupported => bindings::EOPNOTSUPP,
        Status::NoSpace => bindings::ENOSPC,
        // The export refused the request: a target error, not worth retrying.
        Status::Invalid
        | Status::Permission
        | Status::Range
        | Status::Version
        | Status::Mismatch
        | Status::AuthFailed
        | Status::NotAllowed => bindings::EREMOTEIO,
        Status::IoError | Status::Busy => bindings::EIO,
    };
    -(e as c_int)
}

const EIO_ERRNO: c_int = -(bindings::EIO as c_int);

/// Opens a connection and runs the handshake (with the challenge-response
/// when a key is configured); the whole of it, connect included, is bounded
/// by `timeout_ms`, however slowly the export trickles its answers.
fn handshake(
    net: Net,
    addr: SockAddr,
    hello: &HelloBody,
    sec: &SecurityConfig,
    timeout_ms: u32,
) -> Result<Conn, Refusal> {
    let deadline = Instant::<Monotonic>::now() + Delta::from_millis(timeout_ms.into());
    let sock = Socket::connect(net, addr, true, timeout_ms)
        .map_err(|e| Refusal::new(e, c"cannot connect to the export node"))?;
    let lost = |e| {
        Refusal::new(
            e,
            c"connection to the export node failed during the handshake",
        )
    };
    let bad = |_| {
        Refusal::new(
            errno(bindings::EPROTO),
            c"the export node answered with an invalid handshake",
        )
    };
    // Every connection gets a fresh nonce, hence fresh session keys.
    let hello = HelloBody {
        nonce: security::nonce(sec),
        ..*hello
    };
    let body = hello.encode();
    sock.send_all(&Header::hello().encode(), true)
        .map_err(lost)?;
    sock.send_all(&body, false).map_err(lost)?;
    let recv_header = || -> Result<Header, Refusal> {
        let mut hb = [0u8; proto::HEADER_LEN];
        sock.recv_exact_by(&mut hb, deadline).map_err(lost)?;
        Header::decode(&hb).map_err(bad)
    };
    let mut h = recv_header()?;
    let mut ns = [0u8; proto::AUTH_LEN];
    if let (Kind::Challenge, Some(key)) = (h.kind, &sec.key) {
        sock.recv_exact_by(&mut ns, deadline).map_err(lost)?;
        let proof = security::proof_local(key, &body, &ns);
        sock.send_all(&Header::auth(Kind::Auth).encode(), true)
            .map_err(lost)?;
        sock.send_all(&proof, false).map_err(lost)?;
        h = recv_header()?;
    }
    if h.kind != Kind::HelloReply {
        return Err(bad(proto::ProtoError::BadKind));
    }
    let refused = |e, msg| Err(Refusal::new(e, msg));
    match h.status {
        Status::Ok => {}
        Status::Version => {
            return refused(
                errno(bindings::EPROTO),
                c"no protocol version in common with the export",
            )
        }
        Status::Permission => return refused(EACCES, c"the export node refused this client"),
        Status::NotAllowed => {
            return refused(EACCES, c"this address is not on the export's allow-list")
        }
        Status::Mismatch => {
            return refused(
                EINVAL,
                c"protection mode, algorithm or key use differs from the export's",
            )
        }
        Status::AuthFailed => return refused(EACCES, c"authentication failed: the keys differ"),
        Status::Busy => return refused(EBUSY, c"the export node is busy"),
        _ => return refused(EIO, c"the export node refused the connection"),
    }
    let mut reply = [0u8; proto::HELLO_REPLY_LEN];
    sock.recv_exact_by(&mut reply, deadline).map_err(lost)?;
    let granted = HelloReplyBody::decode(&reply).map_err(bad)?;
    if sec.key.is_none() && granted.proof != [0; proto::AUTH_LEN] {
        // Without a key the proof field is reserved.
        return Err(bad(proto::ProtoError::Reserved));
    }
    if let Some(key) = &sec.key {
        let want = security::proof_export(key, &body, &ns, &granted.grant_bytes());
        if ns == [0; proto::AUTH_LEN] || !security::proof_ok(&granted.proof, &want) {
            return refused(
                EACCES,
                c"the export node failed authentication: its key differs",
            );
        }
    }
    granted.validate(&hello).map_err(bad)?;
    let (sealer, opener) =
        security::session(sec, Role::Local, &hello.nonce, &ns).map_err(Refusal::from)?;
    // Replies may take as long as the export's IO; only sends are bounded
    // here. Silence is caught by the request timeout and pings.
    sock.set_timeouts(timeout_ms, 0);
    Ok(Conn {
        sock,
        granted,
        sealer,
        opener,
    })
}

/// A random id for this device's connections.
fn random_client_id() -> u64 {
    let mut id = [0u8; 8];
    crypto::random_bytes(&mut id);
    u64::from_ne_bytes(id) | 1
}

impl Device {
    /// Connects every queue, negotiates and creates `/dev/dst<index>`.
    pub(crate) fn create(cfg: DeviceConfig) -> Result<Self, Refusal> {
        let settings = Settings::new();
        settings.apply(&cfg.settings);
        let epoch = Epoch::new();
        let pages = if cfg.max_io_pages == 0 {
            DEFAULT_MAX_IO_PAGES
        } else {
            cfg.max_io_pages
        };
        let depth = if cfg.queue_depth == 0 {
            DEFAULT_QUEUE_DEPTH
        } else {
            cfg.queue_depth
        };
        // More queues than blk-mq would give the disk would be connections
        // that never carry IO.
        let wanted = if cfg.queues == 0 {
            DEFAULT_QUEUES
        } else {
            cfg.queues
        }
        .min(blk::max_hw_queues().max(1));
        let hello = HelloBody {
            min_version: proto::MIN_VERSION,
            max_version: proto::VERSION,
            features: proto::FEATURES_ALL,
            max_io_bytes: pages * PAGE_SIZE as u32,
            queues: wanted as u16,
            queue_depth: depth as u16,
            client_id: match cfg.client_id {
                0 => random_client_id(),
                id => id,
            },
            queue_index: 0,
            epoch: epoch.get(),
            security: cfg.security.security,
            nonce: [0; proto::AUTH_LEN],
        };
        let (index, addr) = (cfg.index, cfg.addr);
        let timeout = settings.req_timeout_ms.load(Relaxed);
        // Queue 0 learns the grant; the others must get the same one.
        let first = handshake(cfg.net.clone_ref(), addr, &hello, &cfg.security, timeout)?;
        let granted = first.granted;
        let mut conns = KVec::with_capacity(granted.queues.into(), GFP_KERNEL)?;
        conns.push(first, GFP_KERNEL)?;
        for qid in 1..granted.queues {
            let h = HelloBody {
                queue_index: qid,
                ..hello
            };
            let c = handshake(cfg.net.clone_ref(), addr, &h, &cfg.security, timeout)?;
            if !same_grant(&granted, &c.granted) {
                return Err(Refusal::new(
                    errno(bindings::EPROTO),
                    c"the export granted the queues of one device differently",
                ));
            }
            conns.push(c, GFP_KERNEL)?;
        }
        // The disk's segments neither exceed nor cross a page (shim_blk.c),
        // and there are at most max_io / PAGE_SIZE of them: one entry each.
        let max_segments = (granted.max_io_bytes as usize).div_ceil(PAGE_SIZE);
        let depth = u32::from(granted.queue_depth);
        let common = Arc::new(
            Common {
                index,
                addr,
                net: cfg.net,
                granted,
                hello,
                epoch,
                security: cfg.security,
                max_segments,
                settings,
                created: Instant::now(),
                next_seq: Atomic::new(1),
                deleting: Atomic::new(false),
                deleting_at: Atomic::new(0),
                lost_queues: Atomic::new(0),
                failed_queues: Atomic::new(0),
                reconnects: Atomic::new(0),
                resends: Atomic::new(0),
                timeouts: Atomic::new(0),
                io_errors: Atomic::new(0),
                bytes_read: Atomic::new(0),
                bytes_written: Atomic::new(0),
                integrity_errors: Atomic::new(0),
            },
            GFP_KERNEL,
        )?;
        let mut queues = KVec::with_capacity(conns.len(), GFP_KERNEL)?;
        let mut socks = KVec::with_capacity(conns.len(), GFP_KERNEL)?;
        for (qid, c) in conns.into_iter().enumerate() {
            let sock = Arc::new(c.sock, GFP_KERNEL)?;
            let (tx_sock, rx_sock) = (sock.clone(), sock.clone());
            let q_dev = common.clone();
            let vecs = SegmentBuf::new(max_segments)?;
            let bounce = match hello.security.protection {
                Protection::Aead => Some(Bounce::new(granted.max_io_bytes as usize)?),
                _ => None,
            };
            let q = Arc::pin_init(
                try_pin_init!(Shared {
                    qid: qid as u32,
                    dev: q_dev,
                    conn: AtomicConnState::new(ConnState::Up),
                    last_rx: Atomic::new(0),
                    lost_at: Atomic::new(0),
                    shut: Atomic::new(0),
                    late: Atomic::new(false),
                    checks <- new_mutex!(0, "dst::Shared::checks"),
                    checks_done <- new_condvar!("dst::Shared::checks_done"),
                    ring <- new_spinlock!(Ring::new(depth as usize)?, "dst::Shared::ring"),
                    wake <- new_condvar!("dst::Shared::wake"),
                    rewake <- new_condvar!("dst::Shared::rewake"),
                    tx <- new_mutex!(
                        Tx {
                            sock: Some(tx_sock),
                            sealer: Some(c.sealer),
                            ping: None,
                            vecs,
                            bounce,
                            epoch: hello.epoch,
                            first: Some((rx_sock, c.opener)),
                        },
                        "dst::Shared::tx"
                    ),
                }),
                GFP_KERNEL,
            )?;
            queues.push(q, GFP_KERNEL)?;
            socks.push(sock, GFP_KERNEL)?;
        }
        let nr_queues = queues.len() as u32;
        let router = Arc::new(
            Router {
                dev: common.clone(),
                queues,
            },
            GFP_KERNEL,
        )?;
        let has = |f| granted.features & f != 0;
        let mut params = DiskParams {
            size: granted.size,
            logical_block_size: granted.logical_block_size,
            physical_block_size: granted.physical_block_size,
            max_io_bytes: granted.max_io_bytes,
            queue_depth: depth,
            nr_hw_queues: nr_queues,
            index,
            cmd_size: 0,
            timeout_ms: common.settings.req_timeout_ms.load(Relaxed),
            read_only: granted.perms & proto::PERM_WRITE == 0,
            flush: has(proto::FEATURE_FLUSH),
            fua: has(proto::FEATURE_FUA),
            discard: has(proto::FEATURE_DISCARD),
            write_zeroes: has(proto::FEATURE_WRITE_ZEROES),
            stable_writes: hello.security.protection != Protection::None,
        };
        let tags = Arc::new(TagSet::new(&mut params, router.clone())?, GFP_KERNEL)?;
        let mut threads = KVec::with_capacity(router.queues.len(), GFP_KERNEL)?;
        // Declared after `threads`, so dropped first: on an error below, the
        // threads are stopped (when `threads` drops) only after their
        // sockets were shut down, or receivers would wait in `recvmsg`.
        let closing = CloseOnError(Some((&router.queues, &socks)));
        for q in router.queues.iter() {
            let ctx = || Ctx {
                shared: q.clone(),
                tags: tags.clone(),
            };
            let sender = Thread::spawn(fmt!("dst{}.{}-tx", index, q.qid), ctx(), sender_main)?;
            let receiver = Thread::spawn(fmt!("dst{}.{}-rx", index, q.qid), ctx(), receiver_main)?;
            threads.push(
                QueueThreads {
                    _receiver: receiver,
                    _sender: sender,
                },
                GFP_KERNEL,
            )?;
        }
        let disk = Disk::add(&tags, &params)
            .map_err(|e| Refusal::new(e, c"cannot create the block device"))?;
        closing.disarm();
        netlink::notify(&common.net, index, event::CONNECTED);
        pr_info!(
            "dst{}: connected to {}, {} bytes{}, max IO {} KiB, {} queue(s) of depth {}, protection {}{}\n",
            index,
            addr,
            granted.size,
            if params.read_only { ", read-only" } else { "" },
            granted.max_io_bytes / 1024,
            nr_queues,
            depth,
            hello.security.protection.as_str(),
            if hello.security.auth {
                ", authenticated"
            } else {
                ""
            }
        );
        Ok(Device {
            disk,
            _threads: threads,
            router,
            tags,
        })
    }

    fn dev(&self) -> &Common {
        &self.router.dev
    }

    /// Connections (hardware queues).
    pub(crate) fn queues(&self) -> u32 {
        self.router.queues.len() as u32
    }

    /// The protection in use.
    pub(crate) fn security(&self) -> &Security {
        &self.dev().security.security
    }

    /// N of /dev/dstN.
    pub(crate) fn index(&self) -> u32 {
        self.dev().index
    }

    /// The export node's address.
    pub(crate) fn addr(&self) -> SockAddr {
        self.dev().addr
    }

    /// Size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.dev().granted.size
    }

    /// The identity the export fences this device's connections by.
    pub(crate) fn client_id(&self) -> u64 {
        self.dev().hello.client_id
    }

    /// Whether the export granted only reads.
    pub(crate) fn read_only(&self) -> bool {
        self.dev().granted.perms & proto::PERM_WRITE == 0
    }

    /// The device's state: closing while it is deleted, else the worst of
    /// its queues'.
    pub(crate) fn state(&self) -> ConnState {
        self.router.state()
    }

    /// Requests in flight at most, per queue.
    pub(crate) fn queue_depth(&self) -> u32 {
        self.dev().granted.queue_depth.into()
    }

    /// The device's timeouts and limits.
    pub(crate) fn settings(&self) -> &Settings {
        &self.dev().settings
    }

    /// The device's counters.
    pub(crate) fn counters(&self) -> Counters {
        self.dev().counters(&self.tags)
    }

    /// Changes timeouts while the device runs; wakes the threads so that
    /// shorter ones take effect at once.
    pub(crate) fn update(&self, u: &SettingsUpdate) {
        self.dev().settings.apply(u);
        if let Some(ms) = u.req_timeout_ms {
            self.disk.set_timeout(ms);
        }
        for q in self.router.queues.iter() {
            q.wake.notify_all();
            q.rewake.notify_all();
        }
    }
}

/// Closes the queues and shuts their sockets down when device creation
/// fails after the threads started (see [`Device::create`]); disarmed by
/// taking its contents out.
struct CloseOnError<'a>(Option<QueuesAndSockets<'a>>);

/// The queues of a device being created, and their sockets.
type QueuesAndSockets<'a> = (&'a KVec<Arc<Shared>>, &'a KVec<Arc<Socket>>);

impl CloseOnError<'_> {
    /// Creation succeeded: nothing to close.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CloseOnError<'_> {
    fn drop(&mut self) {
        if let Some((queues, socks)) = self.0 {
            for (q, sock) in queues.iter().zip(socks.iter()) {
                q.conn.set(ConnState::Closing);
                sock.shutdown();
            }
        }
    }
}

/// Whether two grants describe the same device (what reconnects and the
/// queues of one device must agree on): everything that shaped the disk's
/// limits and the protocol spoken.
fn same_grant(a: &HelloReplyBody, b: &HelloReplyBody) -> bool {
    a.version == b.version
        && a.features == b.features
        && a.size == b.size
        && a.logical_block_size == b.logical_block_size
        && a.physical_block_size == b.physical_block_size
        && a.perms == b.perms
        && a.max_io_bytes == b.max_io_bytes
        && a.queue_depth == b.queue_depth
        && a.queues == b.queues
}

impl Device {
    /// Starts deleting the device: it reports itself closing, a queue that
    /// is not connected fails its IO now instead of waiting for the loss
    /// timeout (nobody will use the device after this delete), and the
    /// others fail what is still in flight once the loss timeout has passed
    /// from now (see [`Shared::watchdog`]). `false` if a delete had begun.
    pub(crate) fn begin_delete(&self) -> bool {
        let dev = self.dev();
        if dev.deleting.xchg(true, Full) {
            return false;
        }
        if let Some(q) = self.router.queues.first() {
            dev.deleting_at.store(q.now(), Release);
        }
        for q in self.router.queues.iter() {
            if q.conn.get() != ConnState::Up {
                q.set_failed(&self.tags);
            }
            q.wake.notify_all();
        }
        true
    }

    /// Whether a delete has begun ([`Device::begin_delete`]).
    pub(crate) fn deleting(&self) -> bool {
        self.dev().deleting.load(Acquire)
    }

    /// Closes `/dev/dstN` to new opens (they fail with ENXIO), the first
    /// step of a delete; unless the disk is open (mounted, or open in a
    /// program; a partition counts) and `force` is not given: then `false`,
    /// and nothing changed. The count is read and the disk closed under its
    /// open lock, so no open can slip in between and a refused delete leaves
    /// the device as it was.
    pub(crate) fn close_opens(&self, force: bool) -> bool {
        let opens = self.disk.lock_opens();
        if !force && opens.openers() > 0 {
            return false;
        }
        opens.close_opens();
        true
    }

    /// Removes `/dev/dstN`: new IO fails, and in-flight IO drains while the
    /// threads still serve it (bounded: see [`Device::begin_delete`]).
    pub(crate) fn drain(&self) {
        self.begin_delete();
        self.disk.delete();
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let queues = &self.router.queues;
        self.drain();
        for q in queues.iter() {
            q.conn.set(ConnState::Closing);
            let mut tx = q.tx.lock();
            if let Some(sock) = tx.sock.take() {
                sock.shutdown();
            }
            if let Some((sock, _)) = tx.first.take() {
                sock.shutdown();
            }
        }
        for q in queues.iter() {
            q.wake.notify_all();
            q.rewake.notify_all();
        }
        // The threads stop when their handles drop, after this body. Nothing
        // can be in flight after del_gendisk, but fail whatever is, so a bug
        // shows as an IO error rather than a hang.
        for q in queues.iter() {
            q.fail_queued();
            q.fail_parked(&self.tags);
        }
        let dev = self.dev();
        netlink::notify(&dev.net, dev.index, event::DELETED);
        pr_info!("dst{}: deleted\n", dev.index);
    }
}

impl Common {
    /// A snapshot of the counters; `tags` counts the requests in flight.
    fn counters(&self, tags: &TagSet<Router>) -> Counters {
        let mut in_flight = 0;
        tags.for_each_started(|_| in_flight += 1);
        Counters {
            reconnects: self.reconnects.load(Relaxed),
            resends: self.resends.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            io_errors: self.io_errors.load(Relaxed),
            bytes_read: self.bytes_read.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            integrity_errors: self.integrity_errors.load(Relaxed),
            in_flight,
        }
    }
}

impl Router {
    /// The device's state: the worst of its queues' (failed, closing,
    /// reconnecting, connected).
    fn state(&self) -> ConnState {
        if self.dev.deleting.load(Relaxed) {
            return ConnState::Closing;
        }
        self.queues
            .iter()
            .map(|q| q.conn.get())
            .max_by_key(|s| s.severity())
            .unwrap_or(ConnState::Closing)
    }
}

impl Shared {
    /// Milliseconds on the device clock.
    fn now(&self) -> u64 {
        self.dev.created.elapsed().as_millis() as u64
    }

    /// Ends a request this task holds, counting it.
    fn finish(&self, rq: Request<Router>, err: c_int) {
        // What a request carries across resends and requeues starts afresh
        // with the next request of the tag.
        let pdu = rq.pdu();
        pdu.resends.store(0, Relaxed);
        pdu.busy.store(0, Relaxed);
        if err != 0 {
            self.dev.io_errors.add(1, Relaxed);
        } else {
            let info = rq.info();
            match info.op() {
                Some(BlockOp::Read) => self.dev.bytes_read.add(u64::from(info.length), Relaxed),
                Some(BlockOp::Write) => self.dev.bytes_written.add(u64::from(info.length), Relaxed),
                _ => {}
            }
        }
        rq.end(err);
    }

    /// Whether `rq` belongs to this hardware queue.
    fn owns(&self, rq: &Started<'_, Router>) -> bool {
        rq.info().tag >> 16 == self.qid
    }

    /// Fails every request waiting on the ring.
    fn fail_queued(&self) {
        loop {
            let Some(rq) = self.ring.lock().pop() else {
                break;
            };
            self.finish(rq, EIO_ERRNO);
        }
    }

    /// Fails every request of this queue that awaits its reply.
    fn fail_parked(&self, tags: &TagSet<Router>) {
        tags.for_each_started(|rq| {
            if self.owns(&rq) {
                if let Some(rq) = rq.claim() {
                    self.finish(rq, EIO_ERRNO);
                }
            }
        });
    }

    /// Puts a request on the ring for the sender; the caller wakes it.
    fn push(&self, rq: Request<Router>) {
        let full = self.ring.lock().push(rq);
        if let Err(rq) = full {
            // Cannot happen: the ring holds the whole queue depth.
            self.finish(rq, EIO_ERRNO);
        }
    }

    /// Past the loss timeout (or on delete): pending and new IO fail.
    fn set_failed(&self, tags: &TagSet<Router>) {
        let tx = self.tx.lock();
        self.set_failed_locked(tags, &tx);
    }

    /// The connection failed: requeue what was sent on it (or fail what was
    /// resent too often), and leave reconnecting to the receiver thread.
    ///
    /// `sock` is the receiver's, by then the last reference to the socket:
    /// it is released (and reset, as sockets do not linger) before any
    /// request fails, so that none of the connection's unsent bytes, of a
    /// WRITE that is about to fail for example, can still reach the export.
    fn conn_lost(&self, tags: &TagSet<Router>, sock: Arc<Socket>, why: &str) {
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
                netlink::notify(&self.dev.net, self.dev.index, event::LOST);
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
        tags.for_each_started(|rq| {
            if self.owns(&rq) {
                if let Some(rq) = rq.claim() {
                    self.resend(rq, failed, epoch);
                }
            }
        });
        drop(tx);
        self.wake.notify_all();
    }

    /// Puts a request sent in `epoch` back on the ring to be sent again,
    /// counting a resend; fails it instead past the resend limit or if
    /// `fail`. The caller wakes the sender.
    fn resend(&self, rq: Request<Router>, fail: bool, epoch: u32) {
        let max = self.dev.settings.max_resends.load(Relaxed);
        if fail || rq.pdu().resends.fetch_add(1, Relaxed) >= max {
            self.dev.epoch.supersede(epoch);
            self.finish(rq, EIO_ERRNO);
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
    fn busy(&self, rq: Request<Router>) {
        let pdu = rq.pdu();
        let now = self.now();
        let n = pdu.busy.fetch_add(1, Relaxed);
        if n == 0 {
            pdu.busy_since.store(now, Relaxed);
        }
        let busy_for = now.saturating_sub(pdu.busy_since.load(Relaxed));
        if busy_for >= Settings::get(&self.dev.settings.loss_timeout_ms) {
            self.finish(rq, EIO_ERRNO);
            return;
        }
        rq.requeue(1u32 << n.min(10));
    }

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
            self.finish(rq, -(bindings::EOPNOTSUPP as c_int));
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

    /// Shuts the connection down for `why`; the receiver finds its socket
    /// shut down, logs `why` and reconnects.
    fn shut(&self, sock: &Socket, why: Shut) {
        self.shut.store(why as u32, Relaxed);
        sock.shutdown();
    }

    /// Ends the sending half of the connection because its epoch is over:
    /// the receiver finds the socket shut down and reconnects.
    fn drop_conn(&self, tx: &mut Tx) {
        if let Some(sock) = tx.sock.take() {
            self.shut(&sock, Shut::Stale);
        }
    }

    /// Sends a request's frame: header, data (WRITE) and trailer. With AEAD
    /// the data is encrypted into the queue's bounce pages, as the request's
    /// own pages belong to the caller and may be needed again for a resend.
    fn send_request(
        &self,
        tx: &mut Tx,
        sock: &Socket,
        rq: &Request<Router>,
        h: &Header,
        more: bool,
    ) -> Result {
        let hb = h.encode();
        let data = h.payload > 0;
        if data {
            rq.bvecs(&mut tx.vecs)?;
        }
        let mut trailer = [0u8; MAX_TRAILER];
        let mut bounce = None;
        let tlen = match &tx.sealer {
            None => 0,
            Some(sealer) if data => {
                // SAFETY: the sender holds the request, so only this thread
                // touches it and its pages stay until it ends; the disk asks for stable
                // writes when protected, so their data does not change while it
                // is protected and sent.
                let src = unsafe { Segments::from_raw(tx.vecs.as_slice()) };
                if sealer.protection() == Protection::Aead {
                    let pages = tx.bounce.as_mut().ok_or(EINVAL)?;
                    pages.describe(h.payload as usize)?;
                    // SAFETY: the queue's bounce pages, used only by the sender
                    // under the send lock (held), `h.payload` bytes like the
                    // request's data.
                    let dst = unsafe { Segments::from_raw(pages.vecs()) };
                    let n = sealer.seal(&hb, &src, &dst, &mut trailer)?;
                    bounce = Some(&*pages);
                    n
                } else {
                    sealer.seal(&hb, &src, &src, &mut trailer)?
                }
            }
            Some(sealer) => sealer.seal(
                &hb,
                &security::no_data(),
                &security::no_data(),
                &mut trailer,
            )?,
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
    fn send_control(tx: &Tx, sock: &Socket, h: &Header) -> Result {
        let hb = h.encode();
        let mut trailer = [0u8; MAX_TRAILER];
        let tlen = match &tx.sealer {
            Some(sealer) => sealer.seal(
                &hb,
                &security::no_data(),
                &security::no_data(),
                &mut trailer,
            )?,
            None => 0,
        };
        trans::send_frame(sock, &hb, None, trailer.get(..tlen).unwrap_or(&[]), false)
    }

    /// The watchdog: acts on timed-out requests (blk-mq's timeout marks
    /// them), times out and sends pings, and fails IO past the loss timeout
    /// or a delete's grace. Runs in the sender thread; returns how many ms
    /// may pass before it must run again (`None`: only when woken), so an
    /// idle device wakes no more often than its ping interval.
    fn watchdog(&self, tags: &TagSet<Router>, tx: &mut Tx) -> Option<u64> {
        let now = self.now();
        let left = |since: u64, limit: u64| limit.saturating_sub(now.saturating_sub(since));
        let loss_timeout = Settings::get(&self.dev.settings.loss_timeout_ms);
        let mut next = None;
        if self.dev.deleting.load(Acquire) && self.conn.get() != ConnState::Closing {
            let grace = left(self.dev.deleting_at.load(Acquire), loss_timeout);
            if grace > 0 {
                next = Some(grace);
            } else {
                // Deleted and not drained within the loss timeout: what is
                // left fails, and the queue ends.
                self.conn.set(ConnState::Closing);
                pr_warn!(
                    "dst{}: deleted, IO still in flight after {} ms: failing it (queue {})\n",
                    self.dev.index,
                    loss_timeout,
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
        if Self::send_control(tx, &sock, &Header::ping(cookie)).is_err() {
            self.shut(&sock, Shut::SendFailed);
        }
        tx.ping = Some((cookie, now));
        earliest(next, Settings::get(&self.dev.settings.ping_timeout_ms))
    }

    /// blk-mq's timeout for a request of this queue: one that awaits its
    /// reply (parked) means the connection is dead; the sender drops it and
    /// the request is resent. Requests still queued, or being received,
    /// wait on.
    fn timed_out(&self, rq: &Started<'_, Router>) {
        if rq.is_parked() && self.conn.get() == ConnState::Up {
            self.late.store(true, Release);
            self.wake.notify_all();
        }
    }

    /// [`Shared::set_failed`] for a caller that holds the send lock `tx` (so
    /// no request is being sent).
    fn set_failed_locked(&self, tags: &TagSet<Router>, tx: &Tx) {
        if self
            .conn
            .advance(ConnState::Reconnecting, ConnState::Failed)
        {
            if self.dev.failed_queues.fetch_add(1, Relaxed) == 0 {
                netlink::notify(&self.dev.net, self.dev.index, event::FAILED);
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

impl Shared {
    /// Verifies (and decrypts in place) the READ data of `rq`, which the
    /// caller holds: the receiver, or the one worker it handed `rq` to.
    fn check_read(
        &self,
        rq: &Request<Router>,
        hb: &[u8; proto::HEADER_LEN],
        trailer: &[u8],
        check: &Check,
        vecs: &mut SegmentBuf,
    ) -> core::result::Result<(), &'static str> {
        rq.bvecs(vecs).map_err(|_| "request segments")?;
        // SAFETY: the caller owns the request, so only this task touches it;
        // its pages stay until it ends and nobody reads them before then.
        let data = unsafe { Segments::from_raw(vecs.as_slice()) };
        check.verify(hb, &data, trailer).map_err(|e| {
            // A local failure to check says nothing about the reply.
            if e.is_integrity() {
                self.dev.integrity_errors.add(1, Relaxed);
            }
            e.as_str()
        })
    }

    /// Waits until no reply is being checked by a crypto worker.
    fn wait_checks(&self) {
        let mut n = self.checks.lock();
        while *n > 0 {
            self.checks_done.wait(&mut n);
        }
    }
}

/// The check of one READ reply's data on a crypto worker: verifies (and
/// decrypts) the data in the request's pages and ends the request, or, if
/// it does not verify (or cannot be checked: a local error, not counted as
/// an integrity error), ends the connection so that the request is resent.
#[pin_data]
struct ReplyCheck {
    #[pin]
    work: Work<ReplyCheck>,
    /// Room for the request's data segments.
    vecs: SegmentBuf,
    shared: Arc<Shared>,
    /// The connection the reply came on; let go of before the receiver is
    /// told the job is done (it releases the socket next).
    sock: Option<Arc<Socket>>,
    /// The request, held by the job; taken when the job runs.
    rq: Option<Request<Router>>,
    status: Status,
    header: [u8; proto::HEADER_LEN],
    trailer: [u8; MAX_TRAILER],
    trailer_len: usize,
    check: Check,
}

impl_has_work! {
    impl HasWork<Self> for ReplyCheck { self.work }
}

impl ReplyCheck {
    /// A job for `rq`; gives the request and check back if there is no
    /// memory for it.
    #[allow(clippy::too_many_arguments)]
    fn new(
        ctx: &Ctx,
        sock: &Arc<Socket>,
        rq: Request<Router>,
        status: Status,
        header: [u8; proto::HEADER_LEN],
        trailer: [u8; MAX_TRAILER],
        trailer_len: usize,
        check: Check,
    ) -> core::result::Result<Pin<KBox<Self>>, (Request<Router>, Check)> {
        // Allocate first, so that a failure gives the request back (the
        // receiver then checks it itself): the job needs no memory later.
        let alloc = || -> Result<_> {
            let slot = KBox::<Self>::new_uninit(GFP_KERNEL)?;
            Ok((slot, SegmentBuf::new(ctx.shared.dev.max_segments)?))
        };
        let Ok((slot, vecs)) = bdev::noio(alloc) else {
            return Err((rq, check));
        };
        let Ok(job) = slot.write_pin_init(pin_init!(ReplyCheck {
            work <- new_work!("ReplyCheck::work"),
            vecs,
            shared: ctx.shared.clone(),
            sock: Some(sock.clone()),
            rq: Some(rq),
            status,
            header,
            trailer,
            trailer_len,
            check,
        }));
        Ok(job)
    }
}

impl WorkItem for ReplyCheck {
    type Pointer = Pin<KBox<ReplyCheck>>;

    fn run(mut this: Pin<KBox<ReplyCheck>>) {
        bdev::noio(|| {
            let shared = this.shared.clone();
            let job = this.as_mut().project();
            let sock = job.sock.take();
            if let Some(rq) = job.rq.take() {
                let trailer = job.trailer.get(..*job.trailer_len).unwrap_or(&[]);
                let r = shared.check_read(&rq, job.header, trailer, job.check, job.vecs);
                match r {
                    Ok(()) => shared.finish(rq, status_errno(*job.status)),
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
                        if let Some(sock) = &sock {
                            shared.shut(sock, Shut::BadReply);
                        }
                    }
                }
            }
            drop(sock);
            let mut n = shared.checks.lock();
            *n -= 1;
            if *n == 0 {
                shared.checks_done.notify_all();
            }
        })
    }
}

/// The IO header of a request with transaction id `id`; `None` for an op
/// DST does not carry.
fn request_header(info: &RqInfo, id: u64) -> Option<Header> {
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

impl Driver for Router {
    type Pdu = Pdu;

    fn timeout(&self, rq: Started<'_, Self>) {
        if let Some(q) = self.queues.get((rq.info().tag >> 16) as usize) {
            q.timed_out(&rq);
        }
    }

    fn queue_rq(&self, rq: Request<Self>, _last: bool) -> Result<(), (Request<Self>, Error)> {
        let qid = (rq.info().tag >> 16) as usize;
        match self.queues.get(qid) {
            Some(q) => q.queue_rq(rq),
            None => Err((rq, EIO)),
        }
    }

    fn sysfs_show(&self, id: u32, out: &mut dyn kernel::fmt::Write) -> kernel::fmt::Result {
        let dev = &self.dev;
        let s = &dev.settings;
        let get = |a: &Atomic<u32>| a.load(Relaxed);
        match id {
            0 => dev.addr.write_to(out),
            1 => out.write_str(self.state().as_str()),
            2 => write!(out, "{}", dev.granted.size),
            3 => write!(
                out,
                "{}",
                u8::from(dev.granted.perms & proto::PERM_WRITE == 0)
            ),
            4 => write!(out, "{}", dev.granted.queue_depth),
            // Requests waiting for a sender.
            5 => write!(
                out,
                "{}",
                self.queues.iter().map(|q| q.ring.lock().len).sum::<usize>()
            ),
            6 => write!(out, "{}", dev.reconnects.load(Relaxed)),
            7 => write!(out, "{}", dev.resends.load(Relaxed)),
            8 => write!(out, "{}", dev.timeouts.load(Relaxed)),
            9 => write!(out, "{}", dev.io_errors.load(Relaxed)),
            10 => write!(out, "{}", dev.bytes_read.load(Relaxed)),
            11 => write!(out, "{}", dev.bytes_written.load(Relaxed)),
            12 => write!(out, "{}", get(&s.req_timeout_ms)),
            13 => write!(out, "{}", get(&s.max_resends)),
            14 => write!(out, "{}", get(&s.reconnect_delay_ms)),
            15 => write!(out, "{}", get(&s.ping_interval_ms)),
            16 => write!(out, "{}", get(&s.ping_timeout_ms)),
            17 => write!(out, "{}", get(&s.loss_timeout_ms)),
            18 => write!(out, "{}", dev.integrity_errors.load(Relaxed)),
            19 => {
                let sec = &dev.security.security;
                out.write_str(sec.protection.as_str())?;
                if !sec.alg.is_empty() {
                    out.write_str(" ")?;
                    for &c in sec.alg.as_bytes() {
                        out.write_char(char::from(c))?;
                    }
                }
                Ok(())
            }
            20 => write!(out, "{}", self.queues.len()),
            _ => Err(kernel::fmt::Error),
        }
    }
}

impl Shared {
    /// Takes a request of this queue from the block layer; never waits.
    fn queue_rq(&self, rq: Request<Router>) -> Result<(), (Request<Router>, Error)> {
        let state = self.conn.get();
        if state == ConnState::Failed || state == ConnState::Closing {
            return Err((rq, EIO));
        }
        rq.pdu().id.store(0, Relaxed);
        // Full ring cannot happen (it holds the queue depth); refuse rather
        // than lose the request.
        let full = self.ring.lock().push(rq);
        full.map_err(|rq| (rq, EIO))?;
        self.wake.notify_all();
        Ok(())
    }
}

/// The sender thread: sends queued requests while connected and runs the
/// watchdog.
fn sender_main(ctx: &Ctx) {
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

/// The receiver thread: owns the connection. Serves replies until the
/// connection fails, then reconnects, until the device is deleted.
fn receiver_main(ctx: &Ctx) {
    let shared = &ctx.shared;
    let Some((mut sock, mut opener)) = shared.tx.lock().first.take() else {
        return;
    };
    let Ok(mut vecs) = SegmentBuf::new(shared.dev.max_segments) else {
        return;
    };
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
                let tx = shared.tx.lock();
                Shared::send_control(&tx, sock, &Header::pong(h.id)).map_err(|_| "send failed")
            }),
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
    if !opener.protected() {
        return Ok(());
    }
    let mut trailer = [0u8; MAX_TRAILER];
    let t = trailer
        .get_mut(..opener.trailer_len())
        .ok_or("trailer too long")?;
    sock.recv_exact(t).map_err(|_| "receive failed")?;
    opener.open(hb, data, t).map_err(|e| {
        if e.is_integrity() {
            shared.dev.integrity_errors.add(1, Relaxed);
        }
        e.as_str()
    })
}

/// Reconnects until it succeeds (returns the new socket) or the device is
/// being deleted (returns `None`).
fn reconnect(ctx: &Ctx) -> Option<(Arc<Socket>, Opener)> {
    let shared = &ctx.shared;
    let mut attempts = 0u32;
    let mut told_changed = false;
    loop {
        {
            let delay = shared.dev.settings.reconnect_delay_ms.load(Relaxed);
            let mut ring = shared.ring.lock();
            let _ = shared
                .rewake
                .wait_interruptible_timeout(&mut ring, msecs_to_jiffies(delay));
        }
        if shared.conn.get() == ConnState::Closing || kthread::should_stop() {
            return None;
        }
        attempts += 1;
        let timeout = shared.dev.settings.req_timeout_ms.load(Relaxed);
        let hello = HelloBody {
            queue_index: shared.qid as u16,
            epoch: shared.dev.epoch.get(),
            ..shared.dev.hello
        };
        // The device may be what reclaim waits for: set the connection up
        // (socket, crypto transforms and their reserves) without reclaim.
        let Ok(conn) = socket::noreclaim(|| {
            handshake(
                shared.dev.net.clone_ref(),
                shared.dev.addr,
                &hello,
                &shared.dev.security,
                timeout,
            )
        }) else {
            continue;
        };
        let grant = conn.granted;
        let was = &shared.dev.granted;
        if !same_grant(&grant, was) {
            if !told_changed {
                pr_err!(
                    "dst{}: the export at {} changed (size {} -> {}, perms {} -> {}): refusing it\n",
                    shared.dev.index,
                    shared.dev.addr,
                    was.size,
                    grant.size,
                    was.perms,
                    grant.perms
                );
                told_changed = true;
            }
            continue;
        }
        let Ok(sock) = Arc::new(conn.sock, GFP_KERNEL) else {
            continue;
        };
        {
            let mut tx = shared.tx.lock();
            if shared.conn.get() == ConnState::Closing {
                return None;
            }
            tx.sock = Some(sock.clone());
            tx.sealer = Some(conn.sealer);
            tx.ping = None;
            tx.epoch = hello.epoch;
            shared.late.store(false, Relaxed);
            shared.last_rx.store(shared.now(), Relaxed);
            let was = shared.conn.replace(ConnState::Up);
            let dev = &shared.dev;
            if was == ConnState::Failed {
                dev.failed_queues.fetch_sub(1, Relaxed);
            }
            // The device is back when its last lost queue is.
            if (was == ConnState::Failed || was == ConnState::Reconnecting)
                && dev.lost_queues.fetch_sub(1, Relaxed) == 1
            {
                netlink::notify(&dev.net, dev.index, event::RECONNECTED);
            }
        }
        shared.dev.reconnects.add(1, Relaxed);
        pr_info!(
            "dst{}: reconnected to {} after {} attempts (queue {})\n",
            shared.dev.index,
            shared.dev.addr,
            attempts,
            shared.qid
        );
        shared.wake.notify_all();
        return Some((sock, conn.opener));
    }
}

impl Ctx {
    /// Checks a READ reply in the receiver, then ends the request. Errors
    /// end the connection; the request is parked again and resent.
    fn finish_checked(
        &self,
        rq: Request<Router>,
        status: Status,
        hb: &[u8; proto::HEADER_LEN],
        trailer: &[u8],
        check: &Check,
        vecs: &mut SegmentBuf,
    ) -> core::result::Result<(), &'static str> {
        self.shared.check_read(&rq, hb, trailer, check, vecs)?;
        self.shared.finish(rq, status_errno(status));
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
            let mut trailer = [0u8; MAX_TRAILER];
            let tlen = opener.trailer_len();
            let t = trailer.get_mut(..tlen).ok_or("trailer too long")?;
            sock.recv_exact(t).map_err(|_| "receive failed")?;
            let t = trailer.get(..tlen).unwrap_or(&[]);
            let check = opener.admit(t).map_err(|e| {
                shared.dev.integrity_errors.add(1, Relaxed);
                e.as_str()
            })?;
            if let Some(q) = thread_pool::queue() {
                let job = ReplyCheck::new(self, sock, rq, h.status, *hb, trailer, tlen, check);
                match job {
                    Ok(job) => {
                        *shared.checks.lock() += 1;
                        q.enqueue(job);
                        return Ok(());
                    }
                    // No memory for the job: check right here.
                    Err((rq, check)) => {
                        return self.finish_checked(rq, h.status, hb, t, &check, vecs)
                    }
                }
            }
            return self.finish_checked(rq, h.status, hb, t, &check, vecs);
        }
        open(shared, sock, opener, hb, &security::no_data())?;
        if h.status == Status::Busy {
            shared.busy(rq);
            return Ok(());
        }
        shared.finish(rq, status_errno(h.status));
        Ok(())
    }
}
