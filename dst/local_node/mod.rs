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
//!   fresh handshake. A changed export (smaller, another block size or
//!   permissions) is refused; a grown one grows the device. The HELLO
//!   carries this device's client id and fencing epoch, so the export
//!   fences the old connection before the new one may send anything; a request fails only after its connection is reset and the
//!   device has moved to a new epoch (see [`Common::epoch`]).
//! - Disconnected for longer than the loss timeout, the device FAILS: queued
//!   and new requests end with EIO at once, until a reconnect succeeds.
//!
//! Only the holder of a request's handle may touch its pages or end it, and
//! parked requests are claimed by compare-and-exchange (`dst/blk.rs`), so
//! each request is ended exactly once.
//!
//! This file holds the state the parts share: the device ([`Device`],
//! [`Common`]), a hardware queue ([`Shared`]) with its send ring and the
//! sending half of its connection ([`Tx`]), and the per-request data
//! ([`Pdu`]). The behaviour lives beside it, a concern per file:
//! `device.rs` (creating and deleting, the block driver), `queue.rs` (the
//! ring, ending and requeueing requests), `send.rs` (the sender thread),
//! `receive.rs` (the receiver thread, reply checks), `watchdog.rs`
//! (timeouts, pings, the loss timeout), `connect.rs` (handshake and
//! reconnect) and `settings.rs` (defaults and tunables).

use kernel::{
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc, CondVar, Mutex, SpinLock,
    },
    time::{Instant, Monotonic},
};

use crate::{
    blk::{Disk, DiskEvents, Request, SegmentBuf, TagSet},
    epoch::Epoch,
    error::code,
    kthread::Thread,
    netns::HomeNet,
    pages::Bounce,
    proto::{self, HelloBody, HelloReplyBody, Status},
    security::{Opener, Sealer, SecurityConfig},
    socket::{SockAddr, Socket},
    trans::{AtomicConnState, InFlight},
};

mod connect;
mod device;
mod queue;
mod receive;
mod send;
mod settings;
mod watchdog;

use receive::ReplyCheck;

pub(crate) use settings::{
    DeviceConfig, Settings, SettingsUpdate, LOSS_TIMEOUT_INFINITE, LOSS_TIMEOUT_MAX_MS,
};

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
    /// Its reply did not verify: it is charged the resend when the
    /// connection ends (see [`Shared::blame`]).
    blamed: Atomic<bool>,
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
    /// With protection, where WRITE data is copied or encrypted to and
    /// protected (one request is sent at a time): allocated with the queue,
    /// for the largest request.
    bounce: Option<Bounce>,
    /// The fencing epoch the connection was made in (its HELLO's).
    epoch: u32,
    /// What the receiver thread starts with, until it takes it.
    first: Option<RxStart>,
}

/// What a queue's receiver thread starts with: the first connection and the
/// receiving half of its protection (later connections are its own), and
/// room for one request's data segments and data. Allocated with the device, so that
/// a failed allocation fails the creation instead of leaving a queue
/// without a receiver (its requests then waited forever).
struct RxStart {
    sock: Arc<Socket>,
    opener: Opener,
    vecs: SegmentBuf,
    /// With protection, where the receiver takes in READ data it checks
    /// itself (when every check job is busy).
    bounce: Option<Bounce>,
}

/// A connection as the handshake leaves it.
struct Conn {
    sock: Arc<Socket>,
    granted: HelloReplyBody,
    sealer: Sealer,
    opener: Opener,
}

/// What every queue of a device shares: identity, configuration, the grant,
/// settings and counters.
pub(crate) struct Common {
    index: u32,
    addr: SockAddr,
    /// Namespace to reconnect from, which the device belongs to.
    net: HomeNet,
    /// What the export granted at creation; later grants must match, but
    /// for the size, which may have grown (see `size`).
    granted: HelloReplyBody,
    /// The device's size in bytes: granted, then grown by the export's
    /// RESIZEs and by reconnects that find it larger; never shrinks.
    size: Atomic<u64>,
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
    /// Keys replaced (KEY_UPDATEs sent and received).
    rekeys: Atomic<u64>,
    /// Set when the device is being deleted, and when (device clock, ms).
    deleting: Atomic<bool>,
    deleting_at: Atomic<u64>,
    /// Queues not connected (reconnecting or failed), and failed: the
    /// device-level events fire when these leave or reach 0.
    lost_queues: Atomic<u32>,
    failed_queues: Atomic<u32>,
    /// Uevents about the disk, once it exists.
    events: Arc<DiskEvents>,
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
    /// The current connection ends for an integrity error: only the
    /// request whose reply failed, if any, is charged a resend.
    integrity_lost: Atomic<bool>,
    /// Replies being checked by crypto workers (see [`ReplyCheck`]); the
    /// receiver waits for none to be left before it requeues requests.
    #[pin]
    checks: InFlight,
    /// Check jobs not in use (none without protection).
    #[pin]
    spare_checks: SpinLock<KVec<Pin<KBox<ReplyCheck>>>>,
    /// Requests this queue took and has not ended (or given back to the
    /// block layer to retry): sent, on the ring, or being answered. 0 when
    /// the queue is idle (see `queue_rq`).
    active: Atomic<u32>,
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

impl Common {
    /// The device's size in bytes.
    fn size(&self) -> u64 {
        self.size.load(Relaxed)
    }

    /// Grows the device to `bytes` if that is larger (the export grew: a
    /// RESIZE, or a reconnect's grant); a smaller size is ignored, as it
    /// may come late, on another queue's connection, after a larger one.
    /// Those who have the disk open see the new size at once. Sleeps.
    fn grow(&self, bytes: u64) {
        let mut cur = self.size();
        while bytes > cur {
            match self.size.cmpxchg(cur, bytes, Relaxed) {
                Ok(_) => {
                    // Before the disk is added, `Device::create` grows it
                    // once added, to what this stored.
                    self.events.grow(bytes);
                    pr_info!(
                        "dst{}: the export grew: {} -> {} bytes\n",
                        self.index,
                        cur,
                        bytes
                    );
                    return;
                }
                Err(now) => cur = now,
            }
        }
    }
}

/// How a request ends for the status of its reply.
fn status_result(status: Status) -> Result {
    Err(match status {
        Status::Ok => return Ok(()),
        Status::NotSupported => code::eopnotsupp(),
        Status::NoSpace => code::enospc(),
        // The export refused the request: a target error, not worth retrying.
        Status::Invalid
        | Status::Permission
        | Status::Range
        | Status::Version
        | Status::Mismatch
        | Status::AuthFailed
        | Status::NotAllowed
        | Status::UnknownExport
        | Status::InUse => code::eremoteio(),
        Status::IoError | Status::Busy => EIO,
    })
}
