// SPDX-License-Identifier: GPL-2.0

//! The local node: `/dev/dstN`, a blk-mq disk whose requests become
//! transactions on a TCP connection to an export node, resent on a new
//! connection when the old one fails.
//!
//! Data flow:
//!
//! - `queue_rq` (any task, must not sleep) marks the request QUEUED, puts it
//!   on the send ring and wakes the sender thread. It never waits on the
//!   network.
//! - The sender thread takes requests off the ring while the connection is
//!   up and, under the send lock, marks each SENDING, sends header and data
//!   (straight from the request pages), then marks it SENT with the time.
//! - The receiver thread reads replies, finds the request by the tag in the
//!   transaction id, checks the id's sequence number and the echoed fields,
//!   receives READ data straight into the request pages and ends the request
//!   with the status the export sent.
//!
//! Faults (see Documentation/design.md, "Failure semantics"):
//!
//! - The sender thread is also the watchdog: a request unanswered for the
//!   request timeout, or a ping unanswered for the ping timeout, shuts the
//!   socket down. Idle connections are pinged every ping interval.
//! - When the connection fails, the receiver thread (which owns connections)
//!   puts every SENT request back on the ring (counting a resend; past the
//!   resend limit it fails), then reconnects every reconnect delay with a
//!   fresh handshake. A changed export (size, block size, permissions) is
//!   refused. The HELLO carries this device's client id, so the export fences
//!   the old connection before the new one may send anything.
//! - Disconnected for longer than the loss timeout, the device FAILS: queued
//!   and new requests end with EIO at once, until a reconnect succeeds.
//!
//! A per-request state changed only by compare-and-exchange where two parties
//! race guarantees each request is ended exactly once.

use kernel::{
    bindings,
    ffi::c_int,
    new_condvar,
    new_mutex,
    new_spinlock,
    prelude::*,
    sync::{
        atomic::{Acquire, Atomic, Full, Relaxed, Release},
        Arc, CondVar, Mutex, SpinLock,
    },
    time::{msecs_to_jiffies, Instant, Monotonic}, //
};

use crate::{
    blk::{Disk, DiskParams, Driver, Request, TagSet},
    kthread::{self, Thread},
    netlink::{self, event, Refusal},
    proto::{self, Header, HelloBody, HelloReplyBody, Kind, Op, Status},
    socket::{errno, Net, SockAddr, Socket},
};

/// Default number of requests in flight.
pub(crate) const DEFAULT_QUEUE_DEPTH: u32 = 128;
/// Default largest request, in pages (1 MiB).
pub(crate) const DEFAULT_MAX_IO_PAGES: u32 = 256;
/// The sender thread's watchdog looks at least this often (ms).
const WATCHDOG_MS: u32 = 200;

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
    /// Timeouts different from the defaults.
    pub(crate) settings: SettingsUpdate,
}

/// Request states, kept in the PDU. Zero (the value at creation) is idle.
const RQ_QUEUED: u32 = 1;
const RQ_SENDING: u32 = 2;
const RQ_SENT: u32 = 3;
const RQ_DONE: u32 = 4;

/// Per-request driver data. All-zero is valid (idle, no id).
pub(crate) struct Pdu {
    /// One of `RQ_*`; changed by compare-and-exchange where two parties race.
    state: Atomic<u32>,
    /// The transaction id on the wire: sequence << 32 | unique tag.
    id: Atomic<u64>,
    /// When it was last sent (device clock, ms).
    sent_at: Atomic<u64>,
    /// Times it was sent again after a connection failed.
    resends: Atomic<u32>,
}

/// Requests waiting for the sender; never holds more than the queue depth.
struct Ring {
    slots: KVec<Option<Request<Shared>>>,
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

    fn push(&mut self, rq: Request<Shared>) -> core::result::Result<(), Request<Shared>> {
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

    fn pop(&mut self) -> Option<Request<Shared>> {
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
    /// Requests queued or sent, not yet ended.
    pub(crate) in_flight: u32,
}

/// Connection states (values of `enum dst_state` in the uapi header).
pub(crate) const CONN_UP: u32 = 1;
pub(crate) const CONN_RECONNECTING: u32 = 2;
pub(crate) const CONN_CLOSING: u32 = 3;
pub(crate) const CONN_FAILED: u32 = 4;

/// The sending half of the current connection.
struct Tx {
    /// `None` while disconnected.
    sock: Option<Arc<Socket>>,
    /// Cookie of the unanswered PING, and when it was sent.
    ping: Option<(u64, u64)>,
}

/// State shared by `queue_rq`, the sender and the receiver.
#[pin_data]
pub(crate) struct Shared {
    index: u32,
    addr: SockAddr,
    /// Namespace to reconnect from.
    net: Net,
    /// Sent in every HELLO so the export can fence older connections.
    client_id: u64,
    /// What the export granted at creation; later grants must match.
    granted: HelloReplyBody,
    /// What the first HELLO asked for; reconnects ask the same.
    hello: HelloBody,
    pub(crate) settings: Settings,
    /// `CONN_*`.
    conn: Atomic<u32>,
    /// Device clock origin; times below are ms since then.
    created: Instant<Monotonic>,
    /// When something was last received, or the connection came up.
    last_rx: Atomic<u64>,
    /// When the connection was lost.
    lost_at: Atomic<u64>,
    /// Sequence numbers for transaction ids: a late or duplicate reply for a
    /// tag that has since been reused does not match the new id.
    next_seq: Atomic<u32>,
    /// Counters for `dstcfg -a list` and sysfs.
    reconnects: Atomic<u64>,
    resends: Atomic<u64>,
    timeouts: Atomic<u64>,
    io_errors: Atomic<u64>,
    bytes_read: Atomic<u64>,
    bytes_written: Atomic<u64>,
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
    /// the connection. Held while a request is SENDING, so whoever requeues
    /// or fails requests takes it to know no send is running.
    #[pin]
    tx: Mutex<Tx>,
}

/// What the threads work on: the shared state plus the tag set, to find
/// requests by tag. (The tag set refers to `Shared`, not the other way round.)
struct Ctx {
    shared: Arc<Shared>,
    tags: Arc<TagSet<Shared>>,
}

/// What the receiver thread starts with: the context and the first socket.
struct RxCtx {
    ctx: Ctx,
    first: Arc<Socket>,
}

/// A local node device. Dropping it deletes `/dev/dstN` (draining IO first),
/// then ends the connection.
pub(crate) struct Device {
    // Drop order matters: the disk first (del_gendisk waits for in-flight IO,
    // which needs the threads), then the threads, then the tag set.
    disk: Disk,
    receiver: Thread<RxCtx>,
    sender: Thread<Ctx>,
    tags: Arc<TagSet<Shared>>,
}

fn status_errno(status: Status) -> c_int {
    let e = match status {
        Status::Ok => return 0,
        Status::NotSupported => bindings::EOPNOTSUPP,
        Status::NoSpace => bindings::ENOSPC,
        // The export refused the request: a target error, not worth retrying.
        Status::Invalid | Status::Permission | Status::Range | Status::Version => {
            bindings::EREMOTEIO
        }
        Status::IoError | Status::Busy => bindings::EIO,
    };
    -(e as c_int)
}

const EIO_ERRNO: c_int = -(bindings::EIO as c_int);

/// Opens a connection and runs the handshake; every wait is bounded by
/// `timeout_ms`.
fn handshake(
    net: Net,
    addr: SockAddr,
    hello: &HelloBody,
    timeout_ms: u32,
) -> Result<(Socket, HelloReplyBody), Refusal> {
    let sock = Socket::connect(net, addr, true, timeout_ms)
        .map_err(|e| Refusal::new(e, c"cannot connect to the export node"))?;
    let lost = |e| {
        Refusal::new(
            e,
            c"connection to the export node failed during the handshake",
        )
    };
    sock.send_all(&Header::hello().encode(), true)
        .map_err(lost)?;
    sock.send_all(&hello.encode(), false).map_err(lost)?;
    let mut hb = [0u8; proto::HEADER_LEN];
    sock.recv_exact(&mut hb).map_err(lost)?;
    let bad = |_| {
        Refusal::new(
            errno(bindings::EPROTO),
            c"the export node answered with an invalid handshake",
        )
    };
    let h = Header::decode(&hb).map_err(bad)?;
    if h.kind != Kind::HelloReply {
        return Err(bad(proto::ProtoError::BadKind));
    }
    match h.status {
        Status::Ok => {}
        Status::Version => {
            return Err(Refusal::new(
                errno(bindings::EPROTO),
                c"no protocol version in common with the export",
            ))
        }
        Status::Permission => {
            return Err(Refusal::new(EACCES, c"the export node refused this client"))
        }
        Status::Busy => return Err(Refusal::new(EBUSY, c"the export node is busy")),
        _ => return Err(Refusal::new(EIO, c"the export node refused the connection")),
    }
    let mut body = [0u8; proto::HELLO_REPLY_LEN];
    sock.recv_exact(&mut body).map_err(lost)?;
    let granted = HelloReplyBody::decode(&body).map_err(bad)?;
    granted.validate(hello).map_err(bad)?;
    // Replies may take as long as the export's IO; only sends are bounded
    // here. Silence is caught by the request timeout and pings.
    sock.set_timeouts(timeout_ms, 0);
    Ok((sock, granted))
}

/// A random id for this device's connections.
fn random_client_id() -> u64 {
    let mut id = 0u64;
    // SAFETY: `get_random_bytes` fills the 8 bytes of `id`.
    unsafe { bindings::get_random_bytes((&raw mut id).cast(), size_of::<u64>()) };
    id | 1
}

impl Device {
    /// Connects, negotiates and creates `/dev/dst<index>`.
    pub(crate) fn create(cfg: DeviceConfig) -> Result<Self, Refusal> {
        let settings = Settings::new();
        settings.apply(&cfg.settings);
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
        let hello = HelloBody {
            min_version: proto::MIN_VERSION,
            max_version: proto::VERSION,
            features: proto::FEATURES_ALL,
            max_io_bytes: pages * 4096,
            queues: 1,
            queue_depth: depth as u16,
            client_id: random_client_id(),
        };
        let (index, addr) = (cfg.index, cfg.addr);
        let timeout = settings.req_timeout_ms.load(Relaxed);
        let (sock, granted) = handshake(cfg.net.clone_ref(), addr, &hello, timeout)?;
        let sock = Arc::new(sock, GFP_KERNEL)?;
        let tx_sock = sock.clone();
        let depth = u32::from(granted.queue_depth);
        let shared = Arc::pin_init(
            try_pin_init!(Shared {
                index,
                addr,
                net: cfg.net,
                client_id: hello.client_id,
                granted,
                hello,
                settings,
                conn: Atomic::new(CONN_UP),
                created: Instant::now(),
                last_rx: Atomic::new(0),
                lost_at: Atomic::new(0),
                next_seq: Atomic::new(1),
                reconnects: Atomic::new(0),
                resends: Atomic::new(0),
                timeouts: Atomic::new(0),
                io_errors: Atomic::new(0),
                bytes_read: Atomic::new(0),
                bytes_written: Atomic::new(0),
                ring <- new_spinlock!(Ring::new(depth as usize)?, "dst::Shared::ring"),
                wake <- new_condvar!("dst::Shared::wake"),
                rewake <- new_condvar!("dst::Shared::rewake"),
                tx <- new_mutex!(
                    Tx {
                        sock: Some(tx_sock),
                        ping: None,
                    },
                    "dst::Shared::tx"
                ),
            }),
            GFP_KERNEL,
        )?;
        let has = |f| granted.features & f != 0;
        let mut params = DiskParams {
            size: granted.size,
            logical_block_size: granted.logical_block_size,
            physical_block_size: granted.physical_block_size,
            max_io_bytes: granted.max_io_bytes,
            queue_depth: depth,
            index,
            cmd_size: 0,
            read_only: granted.perms & proto::PERM_WRITE == 0,
            flush: has(proto::FEATURE_FLUSH),
            fua: has(proto::FEATURE_FUA),
            discard: has(proto::FEATURE_DISCARD),
            write_zeroes: has(proto::FEATURE_WRITE_ZEROES),
        };
        let tags = Arc::new(TagSet::new(&mut params, shared.clone())?, GFP_KERNEL)?;
        let ctx = || Ctx {
            shared: shared.clone(),
            tags: tags.clone(),
        };
        let sender = Thread::spawn(fmt!("dst{}-tx", index), ctx(), sender_main)?;
        let rx = RxCtx {
            ctx: ctx(),
            first: sock.clone(),
        };
        let receiver = Thread::spawn(fmt!("dst{}-rx", index), rx, receiver_main)?;
        let disk = Disk::add(&tags, &params).map_err(|e| {
            shared.conn.store(CONN_CLOSING, Release);
            sock.shutdown();
            Refusal::new(e, c"cannot create the block device")
        })?;
        netlink::notify(&shared.net, index, event::CONNECTED);
        pr_info!(
            "dst{}: connected to {}, {} bytes{}, max IO {} KiB, depth {}\n",
            index,
            addr,
            granted.size,
            if params.read_only { ", read-only" } else { "" },
            granted.max_io_bytes / 1024,
            depth
        );
        Ok(Device {
            disk,
            receiver,
            sender,
            tags,
        })
    }

    fn shared(&self) -> &Shared {
        &self.sender.data().shared
    }

    /// N of /dev/dstN.
    pub(crate) fn index(&self) -> u32 {
        self.shared().index
    }

    /// The export node's address.
    pub(crate) fn addr(&self) -> SockAddr {
        self.shared().addr
    }

    /// Size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.shared().granted.size
    }

    /// Whether the export granted only reads.
    pub(crate) fn read_only(&self) -> bool {
        self.shared().granted.perms & proto::PERM_WRITE == 0
    }

    /// The connection state (`CONN_*`, the uapi `enum dst_state`).
    pub(crate) fn state(&self) -> u32 {
        self.shared().conn.load(Relaxed)
    }

    /// Requests in flight at most.
    pub(crate) fn queue_depth(&self) -> u32 {
        self.shared().granted.queue_depth.into()
    }

    /// The device's timeouts and limits.
    pub(crate) fn settings(&self) -> &Settings {
        &self.shared().settings
    }

    /// The device's counters.
    pub(crate) fn counters(&self) -> Counters {
        self.shared().counters(&self.tags)
    }

    /// Changes timeouts while the device runs; wakes the threads so that
    /// shorter ones take effect at once.
    pub(crate) fn update(&self, u: &SettingsUpdate) {
        let s = self.shared();
        s.settings.apply(u);
        s.wake.notify_all();
        s.rewake.notify_all();
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let shared = &self.sender.data().shared;
        // A device that is not connected fails its IO now instead of waiting
        // for the loss timeout: nobody will use it after this delete.
        if shared.conn.load(Acquire) != CONN_UP {
            shared.set_failed(&self.tags);
        }
        // del_gendisk runs while the threads still serve IO, so in-flight IO
        // drains (or fails, above).
        self.disk.delete();
        shared.conn.store(CONN_CLOSING, Release);
        if let Some(sock) = shared.tx.lock().sock.take() {
            sock.shutdown();
        }
        self.receiver.data().first.shutdown();
        shared.wake.notify_all();
        shared.rewake.notify_all();
        // The threads stop when their handles drop, after this body. Nothing
        // can be in flight after del_gendisk, but fail whatever is, so a bug
        // shows as an IO error rather than a hang.
        self.tags
            .for_each_started(|rq| shared.fail_claimed(rq, RQ_SENT));
        shared.fail_queued();
        netlink::notify(&shared.net, shared.index, event::DELETED);
        pr_info!("dst{}: deleted\n", shared.index);
    }
}

impl Shared {
    /// Milliseconds on the device clock.
    fn now(&self) -> u64 {
        self.created.elapsed().as_millis() as u64
    }

    /// Ends a request this task has claimed (state DONE), counting it.
    fn finish(&self, rq: Request<Shared>, err: c_int) {
        if err != 0 {
            self.io_errors.add(1, Relaxed);
        } else {
            let info = rq.info();
            match wire_op(info.op) {
                Some(Op::Read) => self.bytes_read.add(u64::from(info.length), Relaxed),
                Some(Op::Write) => self.bytes_written.add(u64::from(info.length), Relaxed),
                _ => {}
            }
        }
        rq.end(err);
    }

    /// Ends `rq` with EIO if it is in state `from` (claiming it).
    fn fail_claimed(&self, rq: Request<Shared>, from: u32) {
        if rq.pdu().state.cmpxchg(from, RQ_DONE, Full).is_ok() {
            self.finish(rq, EIO_ERRNO);
        }
    }

    /// A snapshot of the counters; `tags` counts the requests in flight.
    fn counters(&self, tags: &TagSet<Shared>) -> Counters {
        let mut in_flight = 0;
        tags.for_each_started(|_| in_flight += 1);
        Counters {
            reconnects: self.reconnects.load(Relaxed),
            resends: self.resends.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            io_errors: self.io_errors.load(Relaxed),
            bytes_read: self.bytes_read.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            in_flight,
        }
    }

    /// Fails every request waiting on the ring.
    fn fail_queued(&self) {
        loop {
            let Some(rq) = self.ring.lock().pop() else {
                break;
            };
            self.fail_claimed(rq, RQ_QUEUED);
        }
    }

    /// Past the loss timeout (or on delete): pending and new IO fail.
    fn set_failed(&self, tags: &TagSet<Shared>) {
        let _tx = self.tx.lock();
        self.set_failed_locked(tags);
    }

    /// The connection failed: requeue what was sent on it (or fail what was
    /// resent too often), and leave reconnecting to the receiver thread.
    fn conn_lost(&self, tags: &TagSet<Shared>, sock: &Socket, why: &str) {
        sock.shutdown();
        let mut tx = self.tx.lock();
        // Once we hold the send lock, no request is SENDING and the sender
        // cannot start one: the socket is gone.
        tx.sock = None;
        tx.ping = None;
        if self.conn.cmpxchg(CONN_UP, CONN_RECONNECTING, Full).is_ok() {
            self.lost_at.store(self.now(), Relaxed);
            netlink::notify(&self.net, self.index, event::LOST);
            pr_warn!(
                "dst{}: connection to {} lost: {}; reconnecting\n",
                self.index,
                self.addr,
                why
            );
        }
        let max = self.settings.max_resends.load(Relaxed);
        let failed = self.conn.load(Acquire) != CONN_RECONNECTING;
        tags.for_each_started(|rq| {
            let pdu = rq.pdu();
            if pdu.state.cmpxchg(RQ_SENT, RQ_QUEUED, Full).is_err() {
                return;
            }
            if failed || pdu.resends.fetch_add(1, Relaxed) >= max {
                pdu.state.store(RQ_DONE, Release);
                self.finish(rq, EIO_ERRNO);
                return;
            }
            self.resends.add(1, Relaxed);
            if let Err(rq) = self.ring.lock().push(rq) {
                // Cannot happen: the ring holds the whole queue depth.
                self.fail_claimed(rq, RQ_QUEUED);
            }
        });
        drop(tx);
        self.wake.notify_all();
    }

    /// Sends one request; on failure the connection is shut down and the
    /// receiver requeues the request with the others.
    fn send_one(&self, tx: &mut Tx, rq: Request<Shared>, more: bool) {
        let pdu = rq.pdu();
        let Some(sock) = tx.sock.clone() else {
            // Disconnected after it was taken off the ring: put it back.
            if let Err(rq) = self.ring.lock().push(rq) {
                self.fail_claimed(rq, RQ_QUEUED);
            }
            return;
        };
        let info = rq.info();
        let Some(op) = wire_op(info.op) else {
            if pdu.state.cmpxchg(RQ_QUEUED, RQ_DONE, Full).is_ok() {
                self.finish(rq, -(bindings::EOPNOTSUPP as c_int));
            }
            return;
        };
        let flags = if info.fua { proto::FLAG_FUA } else { 0 };
        let (offset, length) = if op == Op::Flush {
            (0, 0)
        } else {
            (info.offset, info.length)
        };
        let seq = self.next_seq.fetch_add(1, Relaxed);
        let id = (u64::from(seq) << 32) | u64::from(info.tag);
        pdu.id.store(id, Relaxed);
        if pdu.state.cmpxchg(RQ_QUEUED, RQ_SENDING, Full).is_err() {
            return;
        }
        let h = Header::io(op, flags, id, offset, length);
        let data = op == Op::Write;
        let r = sock.send_all(&h.encode(), more || data).and_then(|()| {
            if data {
                rq.xfer(&sock, true, more)
            } else {
                Ok(())
            }
        });
        pdu.sent_at.store(self.now(), Relaxed);
        // From here on the receiver (or the failure path) owns the request.
        pdu.state.store(RQ_SENT, Release);
        if r.is_err() {
            sock.shutdown();
        }
    }

    /// The watchdog: times out requests and pings, sends pings, and fails
    /// IO past the loss timeout. Runs in the sender thread.
    fn watchdog(&self, tags: &TagSet<Shared>, tx: &mut Tx) {
        let now = self.now();
        let state = self.conn.load(Acquire);
        if state == CONN_RECONNECTING {
            let lost = now.saturating_sub(self.lost_at.load(Relaxed));
            if lost >= Settings::get(&self.settings.loss_timeout_ms) {
                self.set_failed_locked(tags);
            }
            return;
        }
        let Some(sock) = tx.sock.clone() else {
            return;
        };
        let req_timeout = Settings::get(&self.settings.req_timeout_ms);
        let mut late = false;
        tags.for_each_started(|rq| {
            let pdu = rq.pdu();
            if pdu.state.load(Acquire) == RQ_SENT
                && now.saturating_sub(pdu.sent_at.load(Relaxed)) >= req_timeout
            {
                late = true;
            }
        });
        if late {
            self.timeouts.add(1, Relaxed);
            pr_warn!(
                "dst{}: a request to {} is unanswered after {} ms\n",
                self.index,
                self.addr,
                req_timeout
            );
            sock.shutdown();
            return;
        }
        let quiet = now.saturating_sub(self.last_rx.load(Relaxed));
        match tx.ping {
            Some((_, sent)) => {
                if now.saturating_sub(sent) >= Settings::get(&self.settings.ping_timeout_ms)
                    && self.last_rx.load(Relaxed) < sent
                {
                    self.timeouts.add(1, Relaxed);
                    pr_warn!(
                        "dst{}: no answer to a ping from {}\n",
                        self.index,
                        self.addr
                    );
                    sock.shutdown();
                }
            }
            None => {
                let every = Settings::get(&self.settings.ping_interval_ms);
                if every > 0 && quiet >= every {
                    let cookie = now | 1;
                    if sock
                        .send_all(&Header::ping(cookie).encode(), false)
                        .is_err()
                    {
                        sock.shutdown();
                    }
                    tx.ping = Some((cookie, now));
                }
            }
        }
    }

    /// [`Shared::set_failed`] for a caller that holds the send lock (so no
    /// request is SENDING).
    fn set_failed_locked(&self, tags: &TagSet<Shared>) {
        if self.conn.xchg(CONN_FAILED, Full) == CONN_RECONNECTING {
            netlink::notify(&self.net, self.index, event::FAILED);
            pr_warn!(
                "dst{}: no connection to {} for {} ms: failing IO until it is back\n",
                self.index,
                self.addr,
                self.now().saturating_sub(self.lost_at.load(Relaxed))
            );
        }
        self.fail_queued();
        tags.for_each_started(|rq| self.fail_claimed(rq, RQ_SENT));
    }
}

/// The wire op of a block-layer op, if DST carries it.
fn wire_op(op: u8) -> Option<Op> {
    match u32::from(op) {
        bindings::req_op_REQ_OP_READ => Some(Op::Read),
        bindings::req_op_REQ_OP_WRITE => Some(Op::Write),
        bindings::req_op_REQ_OP_FLUSH => Some(Op::Flush),
        bindings::req_op_REQ_OP_DISCARD => Some(Op::Discard),
        bindings::req_op_REQ_OP_WRITE_ZEROES => Some(Op::WriteZeroes),
        _ => None,
    }
}

impl Driver for Shared {
    type Pdu = Pdu;

    fn queue_rq(&self, rq: Request<Self>, _last: bool) -> Result {
        let state = self.conn.load(Acquire);
        if state == CONN_FAILED || state == CONN_CLOSING {
            return Err(EIO);
        }
        let pdu = rq.pdu();
        pdu.id.store(0, Relaxed);
        pdu.resends.store(0, Relaxed);
        pdu.state.store(RQ_QUEUED, Release);
        // Full ring cannot happen (it holds the queue depth); refuse rather
        // than lose the request.
        self.ring.lock().push(rq).map_err(|_| EIO)?;
        self.wake.notify_all();
        Ok(())
    }

    fn sysfs_show(&self, id: u32, out: &mut dyn kernel::fmt::Write) -> kernel::fmt::Result {
        let s = &self.settings;
        let get = |a: &Atomic<u32>| a.load(Relaxed);
        match id {
            0 => self.addr.write_to(out),
            1 => out.write_str(match self.conn.load(Relaxed) {
                CONN_UP => "connected",
                CONN_RECONNECTING => "reconnecting",
                CONN_CLOSING => "closing",
                _ => "failed",
            }),
            2 => write!(out, "{}", self.granted.size),
            3 => write!(
                out,
                "{}",
                u8::from(self.granted.perms & proto::PERM_WRITE == 0)
            ),
            4 => write!(out, "{}", self.granted.queue_depth),
            5 => write!(out, "{}", self.ring.lock().len), // queued for the sender
            6 => write!(out, "{}", self.reconnects.load(Relaxed)),
            7 => write!(out, "{}", self.resends.load(Relaxed)),
            8 => write!(out, "{}", self.timeouts.load(Relaxed)),
            9 => write!(out, "{}", self.io_errors.load(Relaxed)),
            10 => write!(out, "{}", self.bytes_read.load(Relaxed)),
            11 => write!(out, "{}", self.bytes_written.load(Relaxed)),
            12 => write!(out, "{}", get(&s.req_timeout_ms)),
            13 => write!(out, "{}", get(&s.max_resends)),
            14 => write!(out, "{}", get(&s.reconnect_delay_ms)),
            15 => write!(out, "{}", get(&s.ping_interval_ms)),
            16 => write!(out, "{}", get(&s.ping_timeout_ms)),
            17 => write!(out, "{}", get(&s.loss_timeout_ms)),
            _ => Err(kernel::fmt::Error),
        }
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
        let state = shared.conn.load(Acquire);
        if state == CONN_FAILED || state == CONN_CLOSING {
            shared.fail_queued();
        }
        let next = if state == CONN_UP {
            let mut ring = shared.ring.lock();
            ring.pop().map(|rq| (rq, ring.len > 0))
        } else {
            None
        };
        let mut tx = shared.tx.lock();
        match next {
            Some((rq, more)) => shared.send_one(&mut tx, rq, more),
            None => {
                shared.watchdog(&ctx.tags, &mut tx);
                drop(tx);
                let mut ring = shared.ring.lock();
                if ring.len == 0 || shared.conn.load(Acquire) != CONN_UP {
                    // Woken by `queue_rq`, state changes and `kthread_stop`;
                    // the timeout paces the watchdog.
                    let _ = shared
                        .wake
                        .wait_interruptible_timeout(&mut ring, msecs_to_jiffies(WATCHDOG_MS));
                }
                continue;
            }
        }
        drop(tx);
    }
}

/// The receiver thread: owns the connection. Serves replies until the
/// connection fails, then reconnects, until the device is deleted.
fn receiver_main(rx: &RxCtx) {
    let ctx = &rx.ctx;
    let shared = &ctx.shared;
    let mut sock = rx.first.clone();
    shared.last_rx.store(shared.now(), Relaxed);
    loop {
        let why = serve(ctx, &sock);
        if shared.conn.load(Acquire) == CONN_CLOSING || kthread::should_stop() {
            return;
        }
        shared.conn_lost(&ctx.tags, &sock, why);
        match reconnect(ctx) {
            Some(s) => sock = s,
            None => return,
        }
    }
}

/// Reads and handles replies until the connection fails; returns why.
fn serve(ctx: &Ctx, sock: &Socket) -> &'static str {
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
            Kind::IoReply => ctx.complete(sock, &h),
            Kind::Ping => {
                let _tx = shared.tx.lock();
                sock.send_all(&Header::pong(h.id).encode(), false)
                    .map_err(|_| "send failed")
            }
            Kind::Pong => {
                let mut tx = shared.tx.lock();
                if matches!(tx.ping, Some((cookie, _)) if cookie == h.id) {
                    tx.ping = None;
                }
                Ok(())
            }
            _ => Err("unexpected message kind"),
        };
        if let Err(why) = r {
            return why;
        }
    }
}

/// Reconnects until it succeeds (returns the new socket) or the device is
/// being deleted (returns `None`).
fn reconnect(ctx: &Ctx) -> Option<Arc<Socket>> {
    let shared = &ctx.shared;
    let mut attempts = 0u32;
    let mut told_changed = false;
    loop {
        {
            let delay = shared.settings.reconnect_delay_ms.load(Relaxed);
            let mut ring = shared.ring.lock();
            let _ = shared
                .rewake
                .wait_interruptible_timeout(&mut ring, msecs_to_jiffies(delay));
        }
        if shared.conn.load(Acquire) == CONN_CLOSING || kthread::should_stop() {
            return None;
        }
        attempts += 1;
        let timeout = shared.settings.req_timeout_ms.load(Relaxed);
        let Ok((sock, grant)) =
            handshake(shared.net.clone_ref(), shared.addr, &shared.hello, timeout)
        else {
            continue;
        };
        let was = &shared.granted;
        if grant.size != was.size
            || grant.logical_block_size != was.logical_block_size
            || grant.physical_block_size != was.physical_block_size
            || grant.perms != was.perms
            || grant.max_io_bytes != was.max_io_bytes
            || grant.queue_depth != was.queue_depth
        {
            if !told_changed {
                pr_err!(
                    "dst{}: the export at {} changed (size {} -> {}, perms {} -> {}): refusing it\n",
                    shared.index,
                    shared.addr,
                    was.size,
                    grant.size,
                    was.perms,
                    grant.perms
                );
                told_changed = true;
            }
            continue;
        }
        let Ok(sock) = Arc::new(sock, GFP_KERNEL) else {
            continue;
        };
        {
            let mut tx = shared.tx.lock();
            if shared.conn.load(Acquire) == CONN_CLOSING {
                return None;
            }
            tx.sock = Some(sock.clone());
            tx.ping = None;
            shared.last_rx.store(shared.now(), Relaxed);
            shared.conn.store(CONN_UP, Release);
        }
        shared.reconnects.add(1, Relaxed);
        netlink::notify(&shared.net, shared.index, event::RECONNECTED);
        pr_info!(
            "dst{}: reconnected to {} after {} attempts\n",
            shared.index,
            shared.addr,
            attempts
        );
        shared.wake.notify_all();
        return Some(sock);
    }
}

impl Ctx {
    /// Completes the request a reply answers. Errors end the connection.
    fn complete(&self, sock: &Socket, h: &Header) -> core::result::Result<(), &'static str> {
        let shared = &self.shared;
        // SAFETY: replies are matched to requests only here, in the receiver;
        // the id and state checks below make sure the request is SENT on
        // this device, which means it is owned by the receiver.
        let rq = unsafe { self.tags.request(h.id as u32) }.ok_or("reply for an unknown tag")?;
        let pdu = rq.pdu();
        if pdu.id.load(Relaxed) != h.id {
            return Err("reply for an unknown transaction");
        }
        if pdu.state.load(Acquire) == RQ_SENDING {
            // The sender is still in `send_one`; wait for it to finish.
            drop(shared.tx.lock());
        }
        if pdu.state.load(Acquire) != RQ_SENT {
            return Err("reply for a request not in flight");
        }
        let info = rq.info();
        let op = wire_op(info.op).ok_or("reply for an unknown op")?;
        let (offset, length) = if op == Op::Flush {
            (0, 0)
        } else {
            (info.offset, info.length)
        };
        let flags = if info.fua { proto::FLAG_FUA } else { 0 };
        let req = Header::io(op, flags, h.id, offset, length);
        proto::validate_reply(h, &req).map_err(|e| e.as_str())?;
        if h.payload > 0 {
            rq.xfer(sock, false, false)
                .map_err(|_| "receive of read data failed")?;
        }
        if pdu.state.cmpxchg(RQ_SENT, RQ_DONE, Full).is_ok() {
            shared.finish(rq, status_errno(h.status));
        }
        Ok(())
    }
}
