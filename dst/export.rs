// SPDX-License-Identifier: GPL-2.0

//! The export node: serves a local block device over TCP to local nodes.
//!
//! An [`Export`] owns the backing device (opened exclusively), a listening
//! socket and an accept thread. Every accepted connection becomes a
//! [`Session`] with its own receive thread, which runs the handshake and then
//! reads requests, checks each one against what was granted, and submits it.
//!
//! Reply path. A bio completes in interrupt context, where nothing may sleep,
//! so the completion only records the status in the request's [`Io`] and
//! queues that `Io` (a work item) on the export's workqueue. The work item
//! sends the reply (header, plus the data of a READ) under the session's send
//! mutex, so frames never interleave; replies leave as IOs complete, in any
//! order. One work item per IO is the simplest correct hand-off: queueing work
//! is interrupt-safe and needs no lock of ours in interrupt context. FLUSH,
//! DISCARD and WRITE_ZEROES use the blocking `blkdev_issue_*` helpers, so their
//! `Io` is queued at once and its work item runs the operation and replies;
//! the receive thread never blocks on the device.
//!
//! Teardown. A session ends when its peer closes, breaks the protocol, or the
//! export stops: the socket is shut down (waking anything blocked on it), and
//! the receive thread waits until every IO the session started has completed
//! (a counter under a mutex, with a condition variable). Pages belong to their
//! `Io`, which the bio owns until completion, so they are never freed under
//! IO. [`Export::stop`] shuts the listener, joins the accept thread, ends
//! every session and joins its thread, drains the workqueue (the last replies)
//! and only then syncs and releases the device.
//!
//! Nothing read from the network is trusted: headers go through
//! `Header::decode`, requests through `validate_request`, and at most the
//! granted queue depth of requests may be in flight per session. A message that
//! breaks the framing or the protocol ends that session only; a request that is
//! merely refused (range, permission, unsupported, invalid values) has its
//! payload skipped and is answered with the status, and the session goes on.

use core::pin::Pin;

use kernel::{
    bindings::{
        EADDRINUSE,
        EADDRNOTAVAIL,
        EAFNOSUPPORT,
        ECONNRESET, //
    },
    ffi::c_void,
    fmt, new_condvar, new_mutex, new_spinlock,
    prelude::*,
    str::CString,
    sync::{
        atomic::{
            Acquire,
            Atomic,
            Relaxed,
            Release, //
        },
        Arc,
        CondVar,
        Mutex,
        SpinLock,
        UniqueArc, //
    },
    time::{
        delay::fsleep,
        Delta,
        Instant,
        Monotonic, //
    },
    workqueue::{
        impl_has_work,
        new_work,
        Queue,
        Work,
        WorkItem, //
    },
};

use crate::{
    bdev::{
        self,
        Backing,
        BioOp,
        BioOwner,
        IoData,
        IoQueue,
        PageBuf, //
    },
    kthread::{
        self,
        Thread, //
    },
    netlink::Refusal,
    proto::{
        self,
        negotiate_version,
        validate_request,
        Header,
        HelloBody,
        HelloReplyBody,
        Kind,
        Limits,
        Op,
        Status,
        HEADER_LEN,
        HELLO_LEN, //
    },
    socket::{
        errno,
        Net,
        SockAddr,
        Socket, //
    },
};

/// Largest IO when the configuration does not say: 256 pages (1 MiB).
const DEFAULT_IO_PAGES: u32 = 256;

/// Largest configurable IO: 1024 pages (4 MiB, the protocol's limit).
const MAX_IO_PAGES: u32 = 1024;

/// Queue depth granted to a local node that leaves the choice to us.
const DEFAULT_DEPTH: u16 = 128;

/// Largest queue depth granted. With the largest IO this bounds the data a
/// session can hold in memory to `MAX_DEPTH * max_io` bytes.
const MAX_DEPTH: u16 = 256;

/// How long each handshake read may wait for its bytes.
const HANDSHAKE_MS: u32 = 10_000;

/// How long a send may wait for room in the socket buffer: a peer that stops
/// reading its replies for this long is dropped.
const SEND_TIMEOUT_MS: u32 = 30_000;

/// Listen backlog.
const BACKLOG: i32 = 128;

/// Most sessions (connected local nodes) one export serves at once.
const MAX_SESSIONS: usize = 64;

/// Size of the buffer into which refused payloads are read and dropped.
const SCRATCH_LEN: usize = 4096;

/// Log lines per export allowed in each [`LOG_WINDOW_SECS`] window; the rest
/// are counted and reported.
const LOG_BURST: u32 = 10;

/// Length of a logging window in seconds.
const LOG_WINDOW_SECS: i64 = 5;

/// What `DST_CMD_EXPORT_ADD` asks for.
pub(crate) struct ExportConfig {
    /// Network namespace to listen in.
    pub(crate) net: Net,
    /// Address and port to listen on.
    pub(crate) addr: SockAddr,
    /// Path of the backing block device, e.g. `/dev/ram0`.
    pub(crate) path: CString,
    /// Serve reads only.
    pub(crate) read_only: bool,
    /// Size cap in bytes; 0 exports the whole device.
    pub(crate) size_cap: u64,
    /// Largest IO in 4 KiB pages; 0 for the default (256).
    pub(crate) max_io_pages: u32,
}

/// A running export. Dropping it stops it.
#[pin_data(PinnedDrop)]
pub(crate) struct Export {
    inner: Arc<Inner>,
    /// The accept thread; `None` once stopped. Held for the whole of
    /// [`Export::stop`], so concurrent stops return only once it is done.
    #[pin]
    accept: Mutex<Option<Thread<Arc<Inner>>>>,
}

/// The shared state of an export, referenced by its threads and sessions.
///
/// Reference cycles (`sessions` holds sessions that hold the export) are
/// broken by [`Export::stop`], which [`Export`]'s drop always runs.
#[pin_data]
struct Inner {
    addr: SockAddr,
    path: CString,
    size: u64,
    read_only: bool,
    logical_block: u32,
    physical_block: u32,
    max_io: u32,
    features: u64,
    /// Replies and blocking device operations run here; drained by `stop`.
    wq: IoQueue,
    /// The device; `None` once stopped. Sessions hold their own reference.
    #[pin]
    backing: Mutex<Option<Arc<Backing>>>,
    /// Session threads, finished ones included until reaped.
    #[pin]
    sessions: Mutex<KVec<Thread<Arc<Session>>>>,
    /// Set before the listener is shut down; the accept loop then ends.
    stopping: Atomic<bool>,
    /// Sessions whose receive thread is running.
    live: Atomic<u32>,
    /// Number for the next session (thread names, logs).
    next_id: Atomic<u32>,
    #[pin]
    log: SpinLock<LogWindow>,
    /// Last: accepted sockets rely on the namespace reference it holds.
    listener: Socket,
}

/// Rate limiting state of an export's log lines.
struct LogWindow {
    start: Option<Instant<Monotonic>>,
    printed: u32,
    suppressed: u32,
}

/// Maps an error from opening the backing device to a refusal.
fn open_refusal(e: Error) -> Refusal {
    let msg = if e == EBUSY {
        c"the device is in use (opened exclusively elsewhere)"
    } else if e == EACCES || e == EROFS {
        c"the device is read-only; export it read-only"
    } else if e == ENOENT || e == ENOTBLK || e == ENXIO || e == ENODEV {
        c"cannot open the backing device: no such block device"
    } else {
        c"cannot open the backing device"
    };
    Refusal::new(e, msg)
}

/// Maps an error from creating the listening socket to a refusal.
fn listen_refusal(e: Error) -> Refusal {
    let msg = match e.to_errno().unsigned_abs() {
        EADDRINUSE => c"address already in use",
        EADDRNOTAVAIL => c"address not available on this host",
        EAFNOSUPPORT => c"address family not supported",
        _ => c"cannot listen on the address",
    };
    Refusal::new(e, msg)
}

impl Export {
    /// Opens the device exclusively (read-write unless read-only, the export
    /// being the holder), listens, and starts the accept thread.
    pub(crate) fn start(cfg: ExportConfig) -> Result<Arc<Export>, Refusal> {
        let ExportConfig {
            net,
            addr,
            path,
            read_only,
            size_cap,
            max_io_pages,
        } = cfg;
        let pages = match max_io_pages {
            0 => DEFAULT_IO_PAGES,
            1..=MAX_IO_PAGES => max_io_pages,
            _ => {
                return Err(Refusal::new(
                    EINVAL,
                    c"the largest IO must be 1 to 1024 pages",
                ))
            }
        };
        // The allocation that will hold the export identifies it as the
        // device's holder, so each export claims the device for itself.
        let slot = UniqueArc::<Inner>::new_uninit(GFP_KERNEL).map_err(|_| ENOMEM)?;
        let holder = slot.as_ptr().cast::<c_void>();
        let backing = Backing::open(&path, !read_only, holder).map_err(open_refusal)?;
        let logical_block = backing.logical_block_size();
        if !logical_block.is_power_of_two()
            || !(proto::MIN_BLOCK_SIZE..=proto::MAX_LOGICAL_BLOCK_SIZE).contains(&logical_block)
        {
            return Err(Refusal::new(
                EINVAL,
                c"the device's logical block size is not supported (512 to 4096 bytes)",
            ));
        }
        let physical_block = backing.physical_block_size();
        let physical_block = if physical_block.is_power_of_two() {
            physical_block.clamp(logical_block, proto::MAX_PHYSICAL_BLOCK_SIZE)
        } else {
            logical_block
        };
        let block = u64::from(logical_block);
        let size = match size_cap {
            0 => backing.size(),
            cap => cap.min(backing.size()),
        }
        .min(proto::MAX_SIZE)
            / block
            * block;
        if size == 0 {
            return Err(Refusal::new(
                EINVAL,
                c"nothing to export: the device or size cap is smaller than one block",
            ));
        }
        let features = if read_only {
            proto::FEATURE_FLUSH
        } else {
            let discard = if backing.can_discard() {
                proto::FEATURE_DISCARD
            } else {
                0
            };
            proto::FEATURE_FLUSH | proto::FEATURE_FUA | proto::FEATURE_WRITE_ZEROES | discard
        };
        let backing = Arc::new(backing, GFP_KERNEL).map_err(|_| ENOMEM)?;
        let listener = Socket::listen(net, addr, BACKLOG).map_err(listen_refusal)?;
        let wq = IoQueue::new(c"dst-export")?;
        let inner = slot.write_pin_init(try_pin_init!(Inner {
            addr,
            path,
            size,
            read_only,
            logical_block,
            physical_block,
            max_io: pages * proto::IO_BYTES_ALIGN,
            features,
            wq,
            backing <- new_mutex!(Some(backing), "Export::backing"),
            sessions <- new_mutex!(KVec::new(), "Export::sessions"),
            stopping: Atomic::new(false),
            live: Atomic::new(0),
            next_id: Atomic::new(0),
            log <- new_spinlock!(
                LogWindow {
                    start: None,
                    printed: 0,
                    suppressed: 0,
                },
                "Export::log"
            ),
            listener,
        }))?;
        let inner: Arc<Inner> = inner.into();
        let for_thread = inner.clone();
        let export = Arc::pin_init(
            try_pin_init!(Export {
                inner,
                accept <- new_mutex!(None, "Export::accept"),
            }),
            GFP_KERNEL,
        )?;
        let port = addr.parts().1;
        let thread = Thread::spawn(fmt!("dst-exp-{}", port), for_thread, accept_main)?;
        *export.accept.lock() = Some(thread);
        let inner = &export.inner;
        pr_info!(
            "export {}: serving {} ({} bytes, block {}/{}, {}, max IO {} KiB)\n",
            inner.shown(),
            inner.path_str(),
            inner.size,
            inner.logical_block,
            inner.physical_block,
            if inner.read_only {
                "read-only"
            } else {
                "read-write"
            },
            inner.max_io / 1024
        );
        Ok(export)
    }

    /// Stops the export; idempotent. Stops accepting, ends every session
    /// (its socket shut down, its thread joined, its IO completed), waits for
    /// the last replies, then syncs and releases the device. Once this returns
    /// nothing of the export runs.
    pub(crate) fn stop(&self) {
        let mut accept = self.accept.lock();
        let inner = &self.inner;
        inner.stopping.store(true, Release);
        inner.listener.shutdown();
        drop(accept.take());
        let sessions = core::mem::take(&mut *inner.sessions.lock());
        for session in sessions.iter() {
            session.data().sock.shutdown();
        }
        drop(sessions);
        inner.wq.drain();
        let backing = inner.backing.lock().take();
        if let Some(backing) = backing {
            if let Err(e) = backing.sync() {
                pr_warn!(
                    "export {}: syncing the device failed: {:?}\n",
                    inner.shown(),
                    e
                );
            }
            drop(backing);
            pr_info!(
                "export {}: stopped, {} released\n",
                inner.shown(),
                inner.path_str()
            );
        }
    }

    /// The address the export listens on.
    pub(crate) fn addr(&self) -> SockAddr {
        self.inner.addr
    }

    /// The backing device's path.
    pub(crate) fn path(&self) -> &CStr {
        &self.inner.path
    }

    /// The exported size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.inner.size
    }

    /// Whether the export serves reads only.
    pub(crate) fn read_only(&self) -> bool {
        self.inner.read_only
    }

    /// Number of connected local nodes.
    pub(crate) fn sessions(&self) -> u32 {
        self.inner.live.load(Relaxed)
    }
}

#[pinned_drop]
impl PinnedDrop for Export {
    fn drop(self: Pin<&mut Self>) {
        self.stop();
    }
}

impl Inner {
    /// The listening address, for log lines.
    fn shown(&self) -> Peer {
        Peer(Some(self.addr))
    }

    /// The device path, for log lines.
    fn path_str(&self) -> &str {
        self.path.to_str().unwrap_or("(non-UTF-8 path)")
    }

    /// Whether a log line may be printed now (per-export rate limit).
    fn may_log(&self) -> bool {
        let mut w = self.log.lock();
        let now = Instant::<Monotonic>::now();
        let expired = match w.start {
            None => true,
            Some(start) => now - start > Delta::from_secs(LOG_WINDOW_SECS),
        };
        if expired {
            if w.suppressed > 0 {
                pr_warn!(
                    "export {}: {} log messages suppressed\n",
                    self.shown(),
                    w.suppressed
                );
            }
            *w = LogWindow {
                start: Some(now),
                printed: 0,
                suppressed: 0,
            };
        }
        if w.printed < LOG_BURST {
            w.printed += 1;
            true
        } else {
            w.suppressed += 1;
            false
        }
    }

    /// What a local node that sent `hello` is granted, in `version`.
    fn grant(&self, hello: &HelloBody, version: u32) -> HelloReplyBody {
        HelloReplyBody {
            version,
            perms: if self.read_only {
                proto::PERM_READ
            } else {
                proto::PERM_READ | proto::PERM_WRITE
            },
            features: self.features & hello.features,
            size: self.size,
            logical_block_size: self.logical_block,
            physical_block_size: self.physical_block,
            max_io_bytes: match hello.max_io_bytes {
                0 => self.max_io,
                wanted => wanted.min(self.max_io),
            },
            queues: 1,
            queue_depth: match hello.queue_depth {
                0 => DEFAULT_DEPTH,
                wanted => wanted.min(MAX_DEPTH),
            },
        }
    }

    /// Fences every other session of the local node `client_id` (see
    /// Documentation/protocol.md, "Reconnecting and fencing"): when this
    /// returns, none of their requests runs or will run on the device.
    fn fence(&self, me: &Session, client_id: u64) {
        let mut old = KVec::new();
        for t in self.sessions.lock().iter() {
            let s = t.data();
            if !core::ptr::eq(&**s, me)
                && s.client_id.load(Acquire) == client_id
                && !s.finished.load(Acquire)
                && old.push(s.clone(), GFP_KERNEL).is_err()
            {
                // Cannot track it: fence it right here, under the lock.
                s.fence();
            }
        }
        for s in old.iter() {
            pr_info!(
                "export {}: session {} with {} fenced by session {}\n",
                self.shown(),
                s.id,
                s.peer,
                me.id
            );
            s.fence();
        }
    }

    /// Starts a session on an accepted connection, unless the export is
    /// full. Reaps the sessions that have ended.
    fn add_session(self: &Arc<Self>, sock: Socket) {
        let peer = Peer(sock.peer());
        let mut sessions = self.sessions.lock();
        sessions.retain(|s| !s.data().finished.load(Acquire));
        if sessions.len() >= MAX_SESSIONS {
            if self.may_log() {
                pr_warn!(
                    "export {}: refusing {}: {} sessions already\n",
                    self.shown(),
                    peer,
                    MAX_SESSIONS
                );
            }
            return;
        }
        let Some(backing) = self.backing.lock().clone() else {
            return;
        };
        let id = self.next_id.fetch_add(1, Relaxed);
        let started = sessions
            .reserve(1, GFP_KERNEL)
            .map_err(|_| ENOMEM)
            .and_then(|()| {
                let session = Arc::pin_init(
                    try_pin_init!(Session {
                        sock,
                        peer,
                        id,
                        backing,
                        send_lock <- new_mutex!((), "Session::send"),
                        inflight <- new_mutex!(0, "Session::inflight"),
                        idle <- new_condvar!("Session::idle"),
                        finished: Atomic::new(false),
                        client_id: Atomic::new(0),
                        fenced: Atomic::new(false),
                        refused: Atomic::new(0),
                        export: self.clone(),
                    }),
                    GFP_KERNEL,
                )?;
                let port = self.addr.parts().1;
                Thread::spawn(fmt!("dst-exp-{}.{}", port, id), session, session_main)
            });
        match started {
            // Capacity was reserved above, so this cannot fail.
            Ok(thread) => {
                if let Err(err) = sessions.push_within_capacity(thread) {
                    // Not reachable; stop the thread cleanly all the same.
                    let thread = err.0;
                    thread.data().sock.shutdown();
                    drop(thread);
                }
            }
            Err(e) => {
                if self.may_log() {
                    pr_warn!(
                        "export {}: cannot start a session for {}: {:?}\n",
                        self.shown(),
                        peer,
                        e
                    );
                }
            }
        }
    }
}

/// The accept thread: one session per connection until the export stops.
fn accept_main(inner: &Arc<Inner>) {
    loop {
        let accepted = inner.listener.accept();
        if inner.stopping.load(Acquire) || kthread::should_stop() {
            return;
        }
        match accepted {
            Ok(sock) => inner.add_session(sock),
            Err(e) => {
                if inner.may_log() {
                    pr_warn!("export {}: accept failed: {:?}\n", inner.shown(), e);
                }
                // Do not spin on a persistent error.
                fsleep(Delta::from_millis(100));
            }
        }
    }
}

/// An address for log lines (`kernel::fmt::Display`, which `pr_*!` needs).
#[derive(Clone, Copy)]
struct Peer(Option<SockAddr>);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(a) => fmt::Display::fmt(a, f),
            None => f.write_str("(unknown address)"),
        }
    }
}

/// Why a session ended.
enum End {
    /// The peer closed the connection, or the export is stopping.
    Closed,
    /// Receiving or sending failed.
    Net(Error),
    /// The handshake timed out.
    Timeout,
    /// The peer broke the protocol.
    Proto(&'static str),
    /// The handshake was refused with this status (sent to the peer).
    Refused(Status),
    /// A local allocation failed.
    NoMem,
    /// A newer connection of the same local node fenced this one.
    Fenced,
}

impl End {
    /// Classifies a receive error.
    fn recv(e: Error) -> Self {
        if e == errno(ECONNRESET) {
            End::Closed
        } else if e == EAGAIN {
            End::Timeout
        } else {
            End::Net(e)
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Closed => f.write_str("connection closed"),
            End::Net(e) => write!(f, "network error {:?}", e),
            End::Timeout => write!(f, "no HELLO within {} ms", HANDSHAKE_MS),
            End::Proto(what) => write!(f, "protocol violation: {}", what),
            End::Refused(s) => write!(f, "handshake refused: {}", s.as_str()),
            End::NoMem => f.write_str("out of memory"),
            End::Fenced => f.write_str("fenced by a newer connection of the same client"),
        }
    }
}

/// What follows a header in a frame.
enum Body<'a> {
    None,
    Bytes(&'a [u8]),
    Pages(&'a PageBuf),
}

/// One connected local node.
#[pin_data]
struct Session {
    sock: Socket,
    peer: Peer,
    id: u32,
    backing: Arc<Backing>,
    /// Held while a frame is sent, so frames never interleave.
    #[pin]
    send_lock: Mutex<()>,
    /// Requests started and not yet completed (bounded by the queue depth).
    /// Only taken in process context: the receive thread and work items.
    #[pin]
    inflight: Mutex<u32>,
    /// Signalled when `inflight` drops to 0.
    #[pin]
    idle: CondVar,
    /// Set by the receive thread as its very last step.
    finished: Atomic<bool>,
    /// The local node's `client_id` from its HELLO (0 = none).
    client_id: Atomic<u64>,
    /// Set (under `inflight`) when a newer connection of the same client
    /// fences this one: no request of this session may start any more.
    fenced: Atomic<bool>,
    /// Requests refused so far (only the first is logged).
    refused: Atomic<u32>,
    /// Last: the socket above must go before the export's namespace reference.
    export: Arc<Inner>,
}

/// The receive thread of a session, from handshake to teardown.
fn session_main(s: &Arc<Session>) {
    // Everything this thread allocates serves block IO.
    bdev::noio(|| {
        let export = &s.export;
        export.live.add(1, Relaxed);
        let end = s.serve();
        s.sock.shutdown();
        s.wait_idle();
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
    /// Runs the session until it ends; returns why.
    fn serve(self: &Arc<Self>) -> End {
        let grant = match self.handshake() {
            Ok(grant) => grant,
            Err(end) => return end,
        };
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
        let limits = grant.limits();
        loop {
            if let Err(end) = self.step(&limits, grant.queue_depth, &mut scratch) {
                return end;
            }
        }
    }

    /// Receives exactly `buf.len()` bytes.
    fn recv(&self, buf: &mut [u8]) -> Result<(), End> {
        self.sock.recv_exact(buf).map_err(End::recv)
    }

    /// Sends one frame. A failure shuts the connection down, which ends the
    /// session.
    fn send(&self, h: &Header, body: Body<'_>) -> Result<(), End> {
        let more = !matches!(body, Body::None);
        let guard = self.send_lock.lock();
        let r = self
            .sock
            .send_all(&h.encode(), more)
            .and_then(|()| match body {
                Body::None => Ok(()),
                Body::Bytes(b) => self.sock.send_all(b, false),
                Body::Pages(p) => p.send(&self.sock, false),
            });
        drop(guard);
        r.map_err(|e| {
            self.sock.shutdown();
            End::Net(e)
        })
    }

    /// Reads the HELLO and answers it. Each of its two reads waits at most
    /// `HANDSHAKE_MS` (the socket's receive timeout, lifted afterwards); a
    /// peer trickling bytes can stretch that, but every read must make
    /// progress within the timeout, so the wait stays bounded.
    fn handshake(&self) -> Result<HelloReplyBody, End> {
        self.sock.set_timeouts(SEND_TIMEOUT_MS, HANDSHAKE_MS);
        let mut hb = [0u8; HEADER_LEN];
        self.recv(&mut hb)?;
        let h = Header::decode(&hb).map_err(|e| End::Proto(e.as_str()))?;
        if h.kind != Kind::Hello {
            return Err(End::Proto("the first message is not HELLO"));
        }
        let mut body = [0u8; HELLO_LEN];
        self.recv(&mut body)?;
        self.sock.set_timeouts(SEND_TIMEOUT_MS, 0);
        let hello = HelloBody::decode(&body).and_then(|b| b.validate().map(|()| b));
        let status = match hello {
            Err(_) => Status::Invalid,
            Ok(hello) => match negotiate_version(hello.min_version, hello.max_version) {
                None => Status::Version,
                Some(version) => {
                    if hello.client_id != 0 {
                        self.client_id.store(hello.client_id, Release);
                        self.export.fence(self, hello.client_id);
                    }
                    let grant = self.export.grant(&hello, version);
                    self.send(
                        &Header::hello_reply(Status::Ok),
                        Body::Bytes(&grant.encode()),
                    )?;
                    return Ok(grant);
                }
            },
        };
        self.send(&Header::hello_reply(status), Body::None)?;
        Err(End::Refused(status))
    }

    /// Receives and handles one message.
    fn step(self: &Arc<Self>, limits: &Limits, depth: u16, scratch: &mut [u8]) -> Result<(), End> {
        let mut hb = [0u8; HEADER_LEN];
        self.recv(&mut hb)?;
        let h = Header::decode(&hb).map_err(|e| End::Proto(e.as_str()))?;
        match h.kind {
            Kind::Io => self.request(h, limits, depth, scratch),
            Kind::Ping => self.send(&Header::pong(h.id), Body::None),
            Kind::Pong => Ok(()),
            Kind::Hello | Kind::HelloReply | Kind::IoReply => {
                Err(End::Proto("unexpected message kind after the handshake"))
            }
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
        self.send(&h.reply(status), Body::None)
    }

    /// Handles one IO request: checks it, then starts it or refuses it.
    fn request(
        self: &Arc<Self>,
        h: Header,
        limits: &Limits,
        depth: u16,
        scratch: &mut [u8],
    ) -> Result<(), End> {
        // Only this thread adds to `inflight`, so the count cannot grow
        // between this check and `begin` below.
        if *self.inflight.lock() >= u32::from(depth) {
            return Err(End::Proto(
                "more requests in flight than the granted queue depth",
            ));
        }
        let op = match (validate_request(&h, limits), h.op) {
            (Ok(()), Some(op)) => op,
            (Err(status), _) => {
                self.skip(h.payload, scratch)?;
                return self.refuse(&h, status);
            }
            // `validate_request` accepts IO requests only, which have an op.
            (Ok(()), None) => return Err(End::Proto("IO request without an op")),
        };
        let data = match op {
            Op::Read | Op::Write => {
                let Ok(mut pages) = PageBuf::alloc(h.length as usize) else {
                    self.skip(h.payload, scratch)?;
                    return self.refuse(&h, Status::Busy);
                };
                if op == Op::Write {
                    pages.recv(&self.sock).map_err(End::recv)?;
                }
                Some(IoData::new(self.backing.clone(), pages))
            }
            Op::Flush | Op::Discard | Op::WriteZeroes => None,
        };
        let Ok(mut io) = Io::new(self.clone(), h, data) else {
            return self.refuse(&h, Status::Busy);
        };
        if !self.begin() {
            return Err(End::Fenced);
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
        if let Err((failed, e)) = bdev::submit(io, bio_op, h.offset) {
            io = failed;
            io.as_mut().set_result(Err(e));
            self.queue().enqueue(io);
        }
        Ok(())
    }

    /// The queue replies are sent from.
    fn queue(&self) -> &Queue {
        self.export.wq.queue()
    }

    /// Counts a started request; refuses once the session is fenced. The
    /// check and the count share the `inflight` lock with [`Session::fence`],
    /// so no request starts after a fence has begun waiting.
    fn begin(&self) -> bool {
        let mut n = self.inflight.lock();
        if self.fenced.load(Relaxed) {
            return false;
        }
        *n += 1;
        true
    }

    /// Stops this session from starting requests, ends its connection and
    /// waits until every request it started has completed.
    fn fence(&self) {
        {
            let _n = self.inflight.lock();
            self.fenced.store(true, Relaxed);
        }
        self.sock.shutdown();
        self.wait_idle();
    }

    /// Counts a completed request; wakes teardown when none is left.
    fn end_one(&self) {
        let mut n = self.inflight.lock();
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.idle.notify_all();
        }
    }

    /// Waits until every started request has completed.
    fn wait_idle(&self) {
        let mut n = self.inflight.lock();
        while *n > 0 {
            self.idle.wait(&mut n);
        }
    }
}

/// Maps the result of a device operation to a reply status.
fn status_of(r: Result) -> Status {
    match r {
        Ok(()) => Status::Ok,
        Err(e) if e == ENOSPC => Status::NoSpace,
        Err(e) if bdev::is_not_supported(e) => Status::NotSupported,
        Err(e) if e == ENOMEM || e == EAGAIN || e == EBUSY => Status::Busy,
        Err(_) => Status::IoError,
    }
}

/// One request being executed; a work item that sends the reply.
#[pin_data]
struct Io {
    #[pin]
    work: Work<Io>,
    session: Arc<Session>,
    req: Header,
    /// Pages and device of a READ or WRITE.
    data: Option<IoData>,
    /// The result, once the operation has run.
    status: Option<Status>,
}

impl_has_work! {
    impl HasWork<Self> for Io { self.work }
}

impl Io {
    /// Allocates the request state (in the receive thread's NOIO scope).
    fn new(session: Arc<Session>, req: Header, data: Option<IoData>) -> Result<Pin<KBox<Self>>> {
        KBox::pin_init(
            try_pin_init!(Io {
                work <- new_work!("Io::work"),
                session,
                req,
                data,
                status: None,
            }),
            GFP_KERNEL,
        )
    }

    /// Runs a FLUSH, DISCARD or WRITE_ZEROES on the device. Blocks.
    fn execute(&self) -> Status {
        let dev = &self.session.backing;
        let (offset, len) = (self.req.offset, u64::from(self.req.length));
        let r = match self.req.op {
            Some(Op::Flush) => dev.flush(),
            Some(Op::Discard) => dev.discard(offset, len),
            Some(Op::WriteZeroes) => {
                dev.write_zeroes(offset, len, self.req.flags & proto::FLAG_NO_UNMAP == 0)
            }
            _ => Err(EINVAL),
        };
        let fua = self.req.flags & proto::FLAG_FUA != 0 && self.req.op != Some(Op::Flush);
        status_of(r.and_then(|()| if fua { dev.flush() } else { Ok(()) }))
    }
}

impl WorkItem for Io {
    type Pointer = Pin<KBox<Io>>;

    fn run(this: Pin<KBox<Io>>) {
        bdev::noio(|| {
            let status = match this.status {
                Some(status) => status,
                None => this.execute(),
            };
            // The device is done with this request: free its slot before the
            // reply goes out, so the peer may reuse it as soon as it sees it.
            this.session.end_one();
            let body = match &this.data {
                Some(data) if status == Status::Ok && this.req.op == Some(Op::Read) => {
                    Body::Pages(data.pages())
                }
                _ => Body::None,
            };
            // A failed send shuts the connection down; the receive thread
            // then ends the session.
            let _ = this.session.send(&this.req.reply(status), body);
        })
    }
}

impl BioOwner for Io {
    fn io_data(&self) -> Option<&IoData> {
        self.data.as_ref()
    }

    fn queue(&self) -> &Queue {
        self.session.queue()
    }

    fn set_result(self: Pin<&mut Self>, result: Result) {
        *self.project().status = Some(status_of(result));
    }
}
