// SPDX-License-Identifier: GPL-2.0

//! The local node: `/dev/dstN`, a blk-mq disk whose requests become
//! transactions on a TCP connection to an export node.
//!
//! Data flow:
//!
//! - `queue_rq` (any task, must not sleep) marks the request QUEUED, puts it
//!   on the send ring and wakes the sender thread. It never waits on the
//!   network.
//! - The sender thread takes requests off the ring and, under the send lock,
//!   marks each SENDING, sends header and data (straight from the request
//!   pages), then marks it SENT.
//! - The receiver thread reads replies, finds the request by the tag in the
//!   transaction id, checks the id's sequence number and the echoed fields,
//!   receives READ data straight into the request pages and ends the request
//!   with the status the export sent.
//! - When the connection fails, the receiver marks it dead, shuts the socket
//!   down, waits for the sender to leave the send lock and fails every SENT
//!   request; the sender fails every QUEUED request it takes from then on, and
//!   `queue_rq` fails new ones at once. A per-request state changed only by
//!   compare-and-exchange guarantees each request is ended exactly once.

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
    time::msecs_to_jiffies, //
};

use crate::{
    blk::{Disk, DiskParams, Driver, Request, TagSet},
    kthread::{self, Thread},
    netlink::Refusal,
    proto::{self, Header, HelloBody, HelloReplyBody, Kind, Op, Status},
    socket::{errno, Net, SockAddr, Socket},
};

/// Default number of requests in flight.
pub(crate) const DEFAULT_QUEUE_DEPTH: u32 = 128;
/// Default largest request, in pages (1 MiB).
pub(crate) const DEFAULT_MAX_IO_PAGES: u32 = 256;
/// Handshake and send timeout.
const NET_TIMEOUT_MS: u32 = 10_000;

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

/// Connection states.
const CONN_UP: u32 = 1;
const CONN_DEAD: u32 = 2;

/// State shared by `queue_rq`, the sender and the receiver.
#[pin_data]
pub(crate) struct Shared {
    index: u32,
    addr: SockAddr,
    sock: Socket,
    /// What the export granted.
    granted: HelloReplyBody,
    /// `CONN_UP` or `CONN_DEAD`.
    conn: Atomic<u32>,
    /// Sequence numbers for transaction ids: a late or duplicate reply for a
    /// tag that has since been reused does not match the new id.
    next_seq: Atomic<u32>,
    /// Requests for the sender; a spinlock because `queue_rq` may not sleep.
    #[pin]
    ring: SpinLock<Ring>,
    #[pin]
    ring_cv: CondVar,
    /// Serialises whole frames on the socket. Held while a request is
    /// SENDING; whoever fails requests takes it to know no send is running.
    #[pin]
    send_lock: Mutex<()>,
}

/// The receiver's view: the shared state plus the tag set, to look up
/// requests by tag. (The tag set refers to `Shared`, not the other way round.)
struct Rx {
    shared: Arc<Shared>,
    tags: Arc<TagSet<Shared>>,
}

/// A local node device. Dropping it deletes `/dev/dstN` (draining IO first),
/// then ends the connection.
pub(crate) struct Device {
    // Drop order matters: the disk first (del_gendisk waits for in-flight IO,
    // which needs the threads), then the threads, then the tag set.
    disk: Disk,
    _receiver: Thread<Rx>,
    sender: Thread<Arc<Shared>>,
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

/// Opens the connection and runs the handshake.
fn handshake(cfg: DeviceConfig) -> Result<(Socket, HelloReplyBody), Refusal> {
    let sock = Socket::connect(cfg.net, cfg.addr, true)
        .map_err(|e| Refusal::new(e, c"cannot connect to the export node"))?;
    sock.set_timeouts(NET_TIMEOUT_MS, NET_TIMEOUT_MS);
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
    };
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
        return Err(Refusal::new(
            errno(bindings::EPROTO),
            c"the export node answered with an invalid handshake",
        ));
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
    granted.validate(&hello).map_err(bad)?;
    // Replies may take as long as the export's IO; only sends are bounded.
    sock.set_timeouts(NET_TIMEOUT_MS, 0);
    Ok((sock, granted))
}

impl Device {
    /// Connects, negotiates and creates `/dev/dst<index>`.
    pub(crate) fn create(cfg: DeviceConfig) -> Result<Self, Refusal> {
        let (index, addr) = (cfg.index, cfg.addr);
        let (sock, granted) = handshake(cfg)?;
        let depth = u32::from(granted.queue_depth);
        let shared = Arc::pin_init(
            try_pin_init!(Shared {
                index,
                addr,
                sock,
                granted,
                conn: Atomic::new(CONN_UP),
                next_seq: Atomic::new(1),
                ring <- new_spinlock!(Ring::new(depth as usize)?, "dst::Shared::ring"),
                ring_cv <- new_condvar!("dst::Shared::ring_cv"),
                send_lock <- new_mutex!((), "dst::Shared::send_lock"),
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
        let sender = Thread::spawn(fmt!("dst{}-tx", index), shared.clone(), sender_loop)?;
        let rx = Rx {
            shared: shared.clone(),
            tags: tags.clone(),
        };
        let receiver = Thread::spawn(fmt!("dst{}-rx", index), rx, receiver_loop)?;
        let disk = Disk::add(&tags, &params).map_err(|e| {
            shared.sock.shutdown();
            Refusal::new(e, c"cannot create the block device")
        })?;
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
            _receiver: receiver,
            sender,
            tags,
        })
    }

    /// N of /dev/dstN.
    pub(crate) fn index(&self) -> u32 {
        self.sender.data().index
    }

    /// The export node's address.
    pub(crate) fn addr(&self) -> SockAddr {
        self.sender.data().addr
    }

    /// Size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.sender.data().granted.size
    }

    /// Whether the export granted only reads.
    pub(crate) fn read_only(&self) -> bool {
        self.sender.data().granted.perms & proto::PERM_WRITE == 0
    }

    /// Whether the connection is up.
    pub(crate) fn connected(&self) -> bool {
        self.sender.data().conn.load(Relaxed) == CONN_UP
    }

    /// Requests in flight at most.
    pub(crate) fn queue_depth(&self) -> u32 {
        self.sender.data().granted.queue_depth.into()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let shared = self.sender.data();
        // `disk` is dropped after this body; del_gendisk must run while the
        // threads still serve IO, so it is done explicitly here first.
        self.disk.delete();
        shared.conn.store(CONN_DEAD, Release);
        shared.sock.shutdown();
        shared.ring_cv.notify_all();
        // The threads are stopped when `receiver` and `sender` drop; nothing
        // can be left in flight after del_gendisk, but fail whatever is, so a
        // bug here shows as an IO error rather than a hang.
        self.tags.fail_started();
        pr_info!("dst{}: deleted\n", shared.index);
    }
}

impl Shared {
    /// Marks the connection dead and fails every request sent on it.
    fn conn_lost(&self, tags: &TagSet<Shared>, why: &str) {
        if self.conn.xchg(CONN_DEAD, Full) == CONN_UP {
            pr_warn!(
                "dst{}: connection to {} lost: {}\n",
                self.index,
                self.addr,
                why
            );
        }
        self.sock.shutdown();
        {
            // Once we hold the send lock, no request is SENDING and the
            // sender sees the dead connection for every later one.
            let _send = self.send_lock.lock();
            tags.fail_started();
        }
        self.ring_cv.notify_all();
    }

    /// Sends one request; on failure the connection is shut down and the
    /// receiver fails the request with the others.
    fn send_one(&self, rq: Request<Shared>, more: bool) {
        let _send = self.send_lock.lock();
        let pdu = rq.pdu();
        if self.conn.load(Acquire) != CONN_UP {
            if pdu.state.cmpxchg(RQ_QUEUED, RQ_DONE, Full).is_ok() {
                rq.end(-(bindings::EIO as c_int));
            }
            return;
        }
        let info = rq.info();
        let Some(op) = wire_op(info.op) else {
            if pdu.state.cmpxchg(RQ_QUEUED, RQ_DONE, Full).is_ok() {
                rq.end(-(bindings::EOPNOTSUPP as c_int));
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
        pdu.state.store(RQ_SENDING, Release);
        let h = Header::io(op, flags, id, offset, length);
        let data = op == Op::Write;
        let r = self
            .sock
            .send_all(&h.encode(), more || data)
            .and_then(|()| {
                if data {
                    rq.xfer(&self.sock, true, more)
                } else {
                    Ok(())
                }
            });
        // From here on the receiver (or the failure path) owns the request.
        pdu.state.store(RQ_SENT, Release);
        if r.is_err() {
            self.sock.shutdown();
        }
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
        if self.conn.load(Acquire) != CONN_UP {
            return Err(EIO);
        }
        let pdu = rq.pdu();
        pdu.id.store(0, Relaxed);
        pdu.state.store(RQ_QUEUED, Release);
        // Full ring cannot happen (it holds the queue depth); refuse rather
        // than lose the request.
        self.ring.lock().push(rq).map_err(|_| EIO)?;
        self.ring_cv.notify_one();
        Ok(())
    }

    fn fail_rq(&self, rq: Request<Self>) {
        // Only SENT requests belong to the failure path; QUEUED ones are
        // failed by the sender as it takes them.
        if rq.pdu().state.cmpxchg(RQ_SENT, RQ_DONE, Full).is_ok() {
            rq.end(-(bindings::EIO as c_int));
        }
    }
}

fn sender_loop(shared: &Arc<Shared>) {
    loop {
        let (rq, more) = {
            let mut ring = shared.ring.lock();
            loop {
                if let Some(rq) = ring.pop() {
                    break (rq, ring.len > 0);
                }
                if kthread::should_stop() {
                    return;
                }
                // Woken by `queue_rq`, by `kthread_stop` or by the timeout:
                // each case just looks again.
                let _ = shared
                    .ring_cv
                    .wait_interruptible_timeout(&mut ring, msecs_to_jiffies(1000));
            }
        };
        shared.send_one(rq, more);
    }
}

fn receiver_loop(rx: &Rx) {
    let shared = &rx.shared;
    let why = loop {
        let mut hb = [0u8; proto::HEADER_LEN];
        if shared.sock.recv_exact(&mut hb).is_err() {
            break "receive failed";
        }
        let h = match Header::decode(&hb) {
            Ok(h) => h,
            Err(e) => break e.as_str(),
        };
        let r = match h.kind {
            Kind::IoReply => rx.complete(&h),
            Kind::Ping => {
                let _send = shared.send_lock.lock();
                shared
                    .sock
                    .send_all(&Header::pong(h.id).encode(), false)
                    .map_err(|_| "send failed")
            }
            _ => Err("unexpected message kind"),
        };
        if let Err(why) = r {
            break why;
        }
    };
    // The thread may end here: its handle reaps it when the device goes.
    rx.shared.conn_lost(&rx.tags, why);
}

impl Rx {
    /// Completes the request a reply answers. Errors end the connection.
    fn complete(&self, h: &Header) -> core::result::Result<(), &'static str> {
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
            drop(shared.send_lock.lock());
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
            rq.xfer(&shared.sock, false, false)
                .map_err(|_| "receive of read data failed")?;
        }
        if pdu.state.cmpxchg(RQ_SENT, RQ_DONE, Full).is_ok() {
            rq.end(status_errno(h.status));
        }
        Ok(())
    }
}
