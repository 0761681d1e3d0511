// SPDX-License-Identifier: GPL-2.0

//! The export node: serves a local block device over TCP to local nodes.
//!
//! An [`Export`] owns the backing device (opened exclusively), a listening
//! socket and an accept thread. Every accepted connection becomes a
//! [`Session`] with its own receive thread, which runs the handshake and then
//! reads requests, checks each one against what was granted, and submits it.
//!
//! Reply path. A bio completes in interrupt context, where nothing may sleep,
//! so the completion records the status in the request's [`Io`] and hands the
//! `Io` to its session's sender thread ([`Handoff`]: a lock-free list, usable
//! in interrupts). The sender takes every finished `Io` there is and sends
//! the replies (header, plus the data of a READ) under the session's send
//! mutex, so frames never interleave; replies leave as IOs complete, in any
//! order, in batches when several are ready. Each session has its own
//! sender, so a peer that does not read its replies blocks only its own
//! session, never another's. FLUSH, DISCARD and WRITE_ZEROES use the blocking
//! `blkdev_issue_*` helpers, so their `Io` runs as a work item on the
//! export's workqueue, which then hands it to the sender; the receive thread
//! never blocks on the device.
//!
//! Memory. A request counts against its session's queue depth until its
//! reply has been sent, and its data against the export's memory budget
//! ([`MEMORY_BUDGET`], shared fairly between the sessions). Buffers come from
//! the export's [`PagePool`], whose reserve guarantees progress when the page
//! allocator fails: memory pressure slows the export down, it never ends a
//! session.
//!
//! Teardown. A session ends when its peer closes, breaks the protocol, or the
//! export stops: the socket is shut down (waking anything blocked on it), and
//! the receive thread waits until every IO the session started has been
//! answered (a counter under a mutex, with a condition variable), then stops
//! the sender. Pages belong to their `Io`, which the bio owns until
//! completion, so they are never freed under IO. [`Export::stop`] shuts the
//! listener, joins the accept thread, ends every session and joins its
//! threads, drains the workqueue (the last blocking operations) and only
//! then syncs and releases the device.
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
    acl::{AllowList, Verdict},
    bdev::{
        self,
        Backing,
        BioOp,
        BioOwner,
        IoData,
        IoQueue, //
    },
    handoff::{
        Handoff,
        Link,
        Linked, //
    },
    kthread::{
        self,
        Thread, //
    },
    netlink::{self, event, Refusal},
    pages::{
        PageBuf,
        PagePool, //
    },
    proto::{
        self,
        negotiate_version,
        validate_request,
        AlgName,
        Header,
        HelloBody,
        HelloReplyBody,
        Kind,
        Limits,
        Op,
        Security,
        Status,
        AUTH_LEN,
        HEADER_LEN,
        HELLO_LEN, //
    },
    security::{
        self, Check, Opener, Rejected, Role, Sealer, SecurityConfig, Segments, MAX_TRAILER,
    },
    socket::{
        self,
        errno,
        Net,
        SockAddr,
        Socket, //
    },
    sysfs::{ExportDir, PageWriter},
    thread_pool, trans,
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

/// Most queues (connections) granted to one local node's device.
const MAX_QUEUES: u16 = 16;

/// Most memory the data of one export's requests may hold at once (READ
/// buffers until their reply is sent, WRITE payloads until written). Each
/// session gets an equal share, at least one largest IO, so a peer that
/// stops reading cannot take the others' memory.
const MEMORY_BUDGET: usize = 64 << 20;

/// Buffers of the largest IO an export keeps in reserve for when the page
/// allocator fails (see `pages.rs`).
const RESERVED_IOS: usize = 2;

/// How long each handshake read may wait for its bytes.
const HANDSHAKE_MS: u32 = 10_000;

/// How long a send may wait for room in the socket buffer: a peer that stops
/// reading its replies for this long is dropped.
const SEND_TIMEOUT_MS: u32 = 30_000;

/// A session that receives nothing for this long ends (ms). The local node
/// pings an idle connection every 5 s by default; a local node that does
/// not ping reconnects when it has IO again.
const IDLE_TIMEOUT_MS: u32 = 60_000;

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
    /// exportN: names the export in events and lists.
    pub(crate) index: u32,
    /// Protection mode, algorithm and key; clients must match them.
    pub(crate) security: SecurityConfig,
    /// Which clients may connect, and whether they may write.
    pub(crate) allow: AllowList,
}

/// A running export. Dropping it stops it.
#[pin_data(PinnedDrop)]
pub(crate) struct Export {
    inner: Arc<Inner>,
    /// The accept thread; `None` once stopped. Held for the whole of
    /// [`Export::stop`], so concurrent stops return only once it is done.
    #[pin]
    accept: Mutex<Option<Thread<Arc<Inner>>>>,
    /// `/sys/kernel/dst/exportN/`; removed by [`Export::stop`].
    #[pin]
    sysfs: Mutex<Option<ExportDir>>,
}

/// The shared state of an export, referenced by its threads and sessions.
///
/// Reference cycles (`sessions` holds sessions that hold the export) are
/// broken by [`Export::stop`], which [`Export`]'s drop always runs.
#[pin_data]
struct Inner {
    index: u32,
    addr: SockAddr,
    security: SecurityConfig,
    allow: AllowList,
    /// Clients refused (allow-list, protection mismatch, failed proof).
    refused: Atomic<u64>,
    /// Messages whose trailer or sequence number did not verify.
    integrity_errors: Atomic<u64>,
    path: CString,
    size: u64,
    read_only: bool,
    logical_block: u32,
    physical_block: u32,
    max_io: u32,
    features: u64,
    /// Blocking device operations run here; drained by `stop`.
    wq: IoQueue,
    /// Buffers for READ and WRITE data, with a reserve.
    pool: Arc<PagePool>,
    /// Bytes of request data held by all sessions (see [`MEMORY_BUDGET`]).
    #[pin]
    memory: Mutex<usize>,
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
    /// Sessions past the handshake, which share the memory budget.
    serving: Atomic<u32>,
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
            index,
            security,
            allow,
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
        let max_io = pages * proto::IO_BYTES_ALIGN;
        let pool = PagePool::new(max_io as usize, RESERVED_IOS)?;
        let inner = slot.write_pin_init(try_pin_init!(Inner {
            index,
            addr,
            security,
            allow,
            refused: Atomic::new(0),
            integrity_errors: Atomic::new(0),
            path,
            size,
            read_only,
            logical_block,
            physical_block,
            max_io,
            features,
            wq,
            pool,
            memory <- new_mutex!(0, "Export::memory"),
            backing <- new_mutex!(Some(backing), "Export::backing"),
            sessions <- new_mutex!(KVec::new(), "Export::sessions"),
            stopping: Atomic::new(false),
            live: Atomic::new(0),
            serving: Atomic::new(0),
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
                sysfs <- new_mutex!(None, "Export::sysfs"),
            }),
            GFP_KERNEL,
        )?;
        let port = addr.parts().1;
        let thread = Thread::spawn(fmt!("dst-exp-{}", port), for_thread, accept_main)?;
        *export.accept.lock() = Some(thread);
        let data = core::ptr::from_ref::<Inner>(&export.inner).cast::<c_void>();
        // SAFETY: `export.inner` lives as long as `export`, whose `stop`
        // (also run by its drop) removes the directory first.
        *export.sysfs.lock() = Some(unsafe { ExportDir::add(index, data) }?);
        let inner = &export.inner;
        let sec = &inner.security.security;
        pr_info!(
            "export{} {}: serving {} ({} bytes, block {}/{}, {}, max IO {} KiB, protection {}{}{}, {})\n",
            inner.index,
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
            inner.max_io / 1024,
            sec.protection.as_str(),
            if sec.alg.is_empty() { "" } else { " " },
            AlgStr(&sec.alg),
            if sec.auth { "key" } else { "no key" },
        );
        if !inner.allow.is_empty() {
            pr_info!(
                "export{}: {} allow-list entries\n",
                inner.index,
                inner.allow.len()
            );
        }
        Ok(export)
    }

    /// Stops the export; idempotent. Stops accepting, ends every session
    /// (its socket shut down, its thread joined, its IO completed), waits for
    /// the last replies, then syncs and releases the device. Once this returns
    /// nothing of the export runs.
    pub(crate) fn stop(&self) {
        drop(self.sysfs.lock().take());
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

    /// N of exportN.
    pub(crate) fn index(&self) -> u32 {
        self.inner.index
    }

    /// Clients refused so far.
    pub(crate) fn refused(&self) -> u64 {
        self.inner.refused.load(Relaxed)
    }

    /// Messages that failed their integrity check so far.
    pub(crate) fn integrity_errors(&self) -> u64 {
        self.inner.integrity_errors.load(Relaxed)
    }

    /// Which clients may connect.
    pub(crate) fn allow(&self) -> &AllowList {
        &self.inner.allow
    }

    /// The protection clients must match.
    pub(crate) fn security(&self) -> &Security {
        &self.inner.security.security
    }
}

/// Called by the shim's `show` for `/sys/kernel/dst/exportN/*`.
///
/// # Safety
///
/// `data` must be the pointer given to [`ExportDir::add`], and `buf` a
/// sysfs buffer of `PAGE_SIZE` bytes.
#[no_mangle]
pub(crate) unsafe extern "C" fn dst_rs_export_show(
    data: *mut c_void,
    id: u32,
    buf: *mut u8,
) -> isize {
    // SAFETY: the directory, and so this call, ends before the export does.
    let inner = unsafe { &*data.cast::<Inner>() };
    // SAFETY: sysfs hands us a page-sized buffer for exclusive use.
    let mut w = unsafe { PageWriter::new(buf) };
    let r = inner.sysfs_show(id, &mut w);
    w.finish(r)
}

/// An algorithm name for log lines.
struct AlgStr<'a>(&'a AlgName);

impl fmt::Display for AlgStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &c in self.0.as_bytes() {
            fmt::Write::write_char(f, char::from(c))?;
        }
        Ok(())
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
    fn grant(&self, hello: &HelloBody, version: u32, verdict: Verdict) -> HelloReplyBody {
        HelloReplyBody {
            version,
            perms: if self.read_only || verdict == Verdict::ReadOnly {
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
            queues: match hello.queues {
                0 => 1,
                wanted => wanted.min(MAX_QUEUES),
            },
            queue_depth: match hello.queue_depth {
                0 => DEFAULT_DEPTH,
                wanted => wanted.min(MAX_DEPTH),
            },
            proof: [0; AUTH_LEN],
        }
    }

    /// Writes sysfs attribute `id` (numbered as in `shim_sysfs.c`).
    fn sysfs_show(&self, id: u32, out: &mut dyn fmt::Write) -> fmt::Result {
        let sec = &self.security.security;
        match id {
            0 => self.addr.write_to(out),
            1 => out.write_str(self.path_str()),
            2 => write!(out, "{}", self.size),
            3 => write!(out, "{}", u8::from(self.read_only)),
            4 => write!(out, "{}", self.live.load(Relaxed)),
            5 => {
                // One line per connected client.
                let mut first = true;
                for t in self.sessions.lock().iter() {
                    let s = t.data();
                    if s.finished.load(Acquire) {
                        continue;
                    }
                    if !first {
                        out.write_str("\n")?;
                    }
                    first = false;
                    match &s.peer.0 {
                        Some(a) => a.write_to(out)?,
                        None => out.write_str("?")?,
                    }
                }
                Ok(())
            }
            6 => {
                out.write_str(sec.protection.as_str())?;
                if !sec.alg.is_empty() {
                    out.write_str(" ")?;
                    for &c in sec.alg.as_bytes() {
                        out.write_char(char::from(c))?;
                    }
                }
                if sec.auth {
                    out.write_str(" key")?;
                }
                Ok(())
            }
            7 => self.allow.write_to(out),
            8 => write!(out, "{}", self.refused.load(Relaxed)),
            9 => write!(out, "{}", self.integrity_errors.load(Relaxed)),
            10 => write!(out, "{}", self.max_io),
            11 => write!(out, "{} {}", *self.memory.lock(), MEMORY_BUDGET),
            _ => Err(fmt::Error),
        }
    }

    /// Counts and reports a refused client: a log line, an event.
    fn refuse_client(&self, peer: Peer, why: &'static CStr) {
        self.refused.add(1, Relaxed);
        if self.may_log() {
            pr_warn!(
                "export{} {}: refused {}: {}\n",
                self.index,
                self.shown(),
                peer,
                why.to_str().unwrap_or("?")
            );
        }
        if let Some(net) = self.listener.net() {
            netlink::notify_export(net, self.index, event::SESSION_REFUSED, peer.0, Some(why));
        }
    }

    /// Fences the older sessions of the local node `client_id` that `me`
    /// (its HELLO: `queue`, `epoch`) supersedes: every session of a lower
    /// epoch, whatever its queue, and the other sessions of the same queue
    /// and epoch (see Documentation/protocol.md, "Reconnecting and
    /// fencing"). When this returns, none of their requests runs or will
    /// run on the device. Fails with `Stale` if a live session of the
    /// client has a higher epoch: `me` comes from a connection the local
    /// node has given up, and must not fence anything.
    fn fence(&self, me: &Session, client_id: u64, queue: u16, epoch: u32) -> Result<(), Stale> {
        let mut old = KVec::new();
        {
            let sessions = self.sessions.lock();
            let of_client = || {
                sessions.iter().map(|t| t.data()).filter(|s| {
                    !core::ptr::eq(&***s, me)
                        && s.client_id.load(Acquire) == client_id
                        && !s.finished.load(Acquire)
                })
            };
            if of_client().any(|s| s.epoch.load(Acquire) > epoch) {
                return Err(Stale);
            }
            // Published under the lock: a HELLO of a higher epoch handled
            // after this point fences `me`, one of a lower epoch is stale.
            me.epoch.store(epoch, Release);
            me.queue_index.store(queue.into(), Release);
            me.client_id.store(client_id, Release);
            for s in of_client() {
                let e = s.epoch.load(Acquire);
                let same_queue = s.queue_index.load(Acquire) == u32::from(queue);
                if (e < epoch || same_queue) && old.push(s.clone(), GFP_KERNEL).is_err() {
                    // Cannot track it: fence it right here, under the lock.
                    s.fence();
                }
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
        Ok(())
    }

    /// Starts a session on an accepted connection, unless the export is
    /// full. Reaps the sessions that have ended.
    fn add_session(self: &Arc<Self>, sock: Socket) {
        let accepted = Instant::<Monotonic>::now();
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
                        held: Atomic::new(0),
                        memory_room <- new_condvar!("Session::memory_room"),
                        replies <- Handoff::new(),
                        finished: Atomic::new(false),
                        client_id: Atomic::new(0),
                        queue_index: Atomic::new(0),
                        epoch: Atomic::new(0),
                        fenced: Atomic::new(false),
                        refused: Atomic::new(0),
                        accepted,
                        sealer <- new_spinlock!(None, "Session::sealer"),
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
            End::Timeout => write!(f, "handshake not done within {} ms", HANDSHAKE_MS),
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
enum Body<'a> {
    None,
    Bytes(&'a [u8]),
    Pages(&'a PageBuf),
}

/// A HELLO older than a live session of its client (see [`Inner::fence`]).
struct Stale;

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
    /// Requests started and not yet answered: a request counts until its
    /// reply has been sent, so the queue depth bounds the session's memory
    /// also when the peer does not read its replies. Only taken in process
    /// context: the receive thread and work items.
    #[pin]
    inflight: Mutex<u32>,
    /// Signalled when `inflight` drops.
    #[pin]
    idle: CondVar,
    /// Bytes of request data this session holds, part of the export's
    /// `memory`; only changed under that lock.
    held: Atomic<usize>,
    /// Signalled (under the export's `memory` lock) when `held` drops or
    /// the session is fenced: a receive thread waiting for memory holds
    /// some, so its own requests completing is what it waits for.
    #[pin]
    memory_room: CondVar,
    /// Finished requests, for the sender thread to answer.
    #[pin]
    replies: Handoff<Io>,
    /// Set by the receive thread as its very last step.
    finished: Atomic<bool>,
    /// The local node's `client_id` from its HELLO (0 = none).
    client_id: Atomic<u64>,
    /// Which of the local node's queues this connection serves.
    queue_index: Atomic<u32>,
    /// The local node's fencing epoch from its HELLO.
    epoch: Atomic<u32>,
    /// Set (under `inflight`) when a newer connection of the same client
    /// fences this one: no request of this session may start any more.
    fenced: Atomic<bool>,
    /// Requests refused so far (only the first is logged).
    refused: Atomic<u32>,
    /// When the connection was accepted: the handshake's deadline counts
    /// from here, however late the session thread starts.
    accepted: Instant<Monotonic>,
    /// Protects what this session sends; set once by the handshake (before
    /// any request exists), so senders only clone it out.
    #[pin]
    sealer: SpinLock<Option<Arc<Sealer>>>,
    /// Last: the socket above must go before the export's namespace reference.
    export: Arc<Inner>,
}

/// The receive thread of a session, from handshake to teardown.
fn session_main(s: &Arc<Session>) {
    // Everything this thread allocates serves block IO.
    bdev::noio(|| {
        let export = &s.export;
        export.live.add(1, Relaxed);
        let mut sender = None;
        let end = s.serve(&mut sender);
        s.sock.shutdown();
        // The sender answers (or, the socket being shut, drops) what is
        // still in flight; then it is stopped.
        s.wait_idle();
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
        let limits = grant.limits();
        self.notify(event::SESSION_OPENED);
        self.export.serving.add(1, Relaxed);
        let end = loop {
            if let Err(end) = self.step(&limits, grant.queue_depth, &mut scratch, &mut opener) {
                break end;
            }
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
        if let Some(net) = self.export.listener.net() {
            netlink::notify_export(net, self.export.index, ev, self.peer.0, None);
        }
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
    /// request, which is done with them). Protection runs before the send
    /// lock is taken: the receive thread's frames (pongs, refusals) and the
    /// sender's replies are protected independently, so their sequence
    /// numbers may go out of order, which the replay window allows.
    fn send(&self, h: &Header, body: Body<'_>, more: bool) -> Result<(), End> {
        let hb = h.encode();
        let sealer = self.sealer.lock().clone();
        let mut trailer = [0u8; MAX_TRAILER];
        let tlen = match &sealer {
            None => 0,
            Some(sealer) => {
                let vecs = match body {
                    Body::Pages(p) => p.bvecs(),
                    Body::None | Body::Bytes(_) => &[],
                };
                // SAFETY: a READ reply's pages belong to its request, which
                // the device is done with; only this reply uses them now.
                let data = unsafe { Segments::from_raw(vecs) };
                sealer
                    .seal(&hb, &data, &data, &mut trailer)
                    .map_err(End::Net)?
            }
        };
        let payload = |more: bool| match body {
            Body::None => Ok(()),
            Body::Bytes(b) => self.sock.send_all(b, more),
            Body::Pages(p) => p.send(&self.sock, more),
        };
        let payload = match body {
            Body::None => None,
            Body::Bytes(_) | Body::Pages(_) => Some(&payload as trans::Payload<'_>),
        };
        let trailer = trailer.get(..tlen).unwrap_or(&[]);
        let guard = self.send_lock.lock();
        let r = trans::send_frame(&self.sock, &hb, payload, trailer, more);
        drop(guard);
        r.map_err(|e| {
            self.sock.shutdown();
            End::Net(e)
        })
    }

    /// Receives a message's trailer and checks the message (header `hb`,
    /// payload in `data`, decrypted in place for AEAD).
    fn open(
        &self,
        opener: &mut Opener,
        hb: &[u8; HEADER_LEN],
        data: Option<&PageBuf>,
    ) -> Result<(), End> {
        match self.recv_trailer(opener)? {
            None => Ok(()),
            Some(t) => {
                let check = opener
                    .admit(t.bytes())
                    .map_err(|e| End::Integrity(e.as_str()))?;
                verify(&check, hb, data, t.bytes())
            }
        }
    }

    /// Receives a message's trailer, if the connection is protected.
    fn recv_trailer(&self, opener: &Opener) -> Result<Option<Trailer>, End> {
        if !opener.protected() {
            return Ok(None);
        }
        let mut t = Trailer {
            buf: [0; MAX_TRAILER],
            len: opener.trailer_len(),
        };
        let buf = t
            .buf
            .get_mut(..t.len)
            .ok_or(End::Proto("trailer too long"))?;
        self.recv(buf)?;
        Ok(Some(t))
    }

    /// Reads the HELLO, checks the client (allow-list, values, version,
    /// protection), runs the challenge-response with a key, and answers.
    /// The whole handshake must arrive within `HANDSHAKE_MS` of the accept,
    /// however slowly the peer trickles it (a slow or half-open client only
    /// holds a session slot that long).
    fn handshake(&self) -> Result<(HelloReplyBody, Opener), End> {
        let export = &self.export;
        let deadline = self.accepted + Delta::from_millis(HANDSHAKE_MS.into());
        let h = self.recv_header(deadline)?;
        if h.kind != Kind::Hello {
            return Err(End::Proto("the first message is not HELLO"));
        }
        let mut body = [0u8; HELLO_LEN];
        self.recv_by(&mut body, deadline)?;
        self.sock.set_timeouts(SEND_TIMEOUT_MS, 0);
        let verdict = export.allow.check(self.peer.0.as_ref());
        if verdict == Verdict::Refused {
            export.refuse_client(self.peer, c"address not on the allow-list");
            return self.refuse_hello(Status::NotAllowed);
        }
        let hello = match HelloBody::decode(&body).and_then(|b| b.validate().map(|()| b)) {
            Ok(hello) => hello,
            Err(_) => return self.refuse_hello(Status::Invalid),
        };
        let Some(version) = negotiate_version(hello.min_version, hello.max_version) else {
            return self.refuse_hello(Status::Version);
        };
        let cfg = &export.security;
        if !cfg.security.matches(&hello.security) {
            export.refuse_client(
                self.peer,
                c"protection mode, algorithm or key use differs from the export's",
            );
            return self.refuse_hello(Status::Mismatch);
        }
        let mut ns = [0u8; AUTH_LEN];
        if let Some(key) = &cfg.key {
            ns = security::nonce(cfg);
            self.send(&Header::auth(Kind::Challenge), Body::Bytes(&ns), false)?;
            let h = self.recv_header(deadline)?;
            if h.kind != Kind::Auth {
                return Err(End::Proto("expected AUTH after CHALLENGE"));
            }
            let mut proof = [0u8; AUTH_LEN];
            self.recv_by(&mut proof, deadline)?;
            self.sock.set_timeouts(SEND_TIMEOUT_MS, 0);
            let want = security::proof_local(key, &body, &ns);
            if !security::proof_ok(&proof, &want) {
                export.refuse_client(self.peer, c"authentication failed: the keys differ");
                return self.refuse_hello(Status::AuthFailed);
            }
        }
        self.sock.set_timeouts(SEND_TIMEOUT_MS, IDLE_TIMEOUT_MS);
        let (sealer, opener) =
            security::session(cfg, Role::Export, &hello.nonce, &ns).map_err(End::Net)?;
        if hello.client_id != 0
            && export
                .fence(self, hello.client_id, hello.queue_index, hello.epoch)
                .is_err()
        {
            return self.refuse_hello(Status::Busy);
        }
        let mut grant = export.grant(&hello, version, verdict);
        if let Some(key) = &cfg.key {
            grant.proof = security::proof_export(key, &body, &ns, &grant.grant_bytes());
        }
        self.send(
            &Header::hello_reply(Status::Ok),
            Body::Bytes(&grant.encode()),
            false,
        )?;
        // From the first message after the HELLO_REPLY on, everything is
        // protected.
        *self.sealer.lock() = Some(Arc::new(sealer, GFP_KERNEL).map_err(|_| End::NoMem)?);
        Ok((grant, opener))
    }

    /// Receives exactly `buf.len()` bytes by `deadline`.
    fn recv_by(&self, buf: &mut [u8], deadline: Instant<Monotonic>) -> Result<(), End> {
        self.sock.recv_exact_by(buf, deadline).map_err(End::recv)
    }

    /// Receives and decodes a handshake header by `deadline`.
    fn recv_header(&self, deadline: Instant<Monotonic>) -> Result<Header, End> {
        let mut hb = [0u8; HEADER_LEN];
        self.recv_by(&mut hb, deadline)?;
        Header::decode(&hb).map_err(|e| End::Proto(e.as_str()))
    }

    /// Answers a HELLO with a refusal; the session then ends.
    fn refuse_hello<T>(&self, status: Status) -> Result<T, End> {
        self.send(&Header::hello_reply(status), Body::None, false)?;
        Err(End::Refused(status))
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
        match h.kind {
            Kind::Io => self.request(h, &hb, limits, depth, scratch, opener),
            Kind::Ping => {
                self.open(opener, &hb, None)?;
                self.send(&Header::pong(h.id), Body::None, false)
            }
            Kind::Pong => self.open(opener, &hb, None),
            Kind::Hello | Kind::HelloReply | Kind::IoReply | Kind::Challenge | Kind::Auth => {
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
        let payload = if h.payload == 0 {
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
        let trailer = self.recv_trailer(opener)?;
        let valid = validate_request(&h, limits);
        // A valid WRITE is checked by a crypto worker, which then starts it;
        // everything else is checked here, before anything in it is used.
        let pool = match (&trailer, h.op) {
            (Some(_), Some(Op::Write)) if valid.is_ok() => thread_pool::queue(),
            _ => None,
        };
        let mut pending = None;
        if let Some(t) = trailer {
            let check = opener
                .admit(t.bytes())
                .map_err(|e| End::Integrity(e.as_str()))?;
            if pool.is_some() {
                pending = Some(Pending {
                    check,
                    header: *hb,
                    trailer: t,
                });
            } else {
                verify(&check, hb, payload.as_ref().map(|p| &p.0), t.bytes())?;
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
        if !self.begin() {
            return Err(End::Fenced);
        }
        if let Some(q) = pool {
            q.enqueue(io);
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
        start_bio(io, bio_op);
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
            if self.fenced.load(Relaxed) {
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
        // Its receive thread may be waiting for memory. Taking the lock
        // orders the wake-up after its check of `fenced`; it is let go of
        // before the wait below, since a completing request needs it to
        // give its memory back (`Charge::drop`).
        {
            let _used = self.export.memory.lock();
            self.memory_room.notify_all();
        }
        self.sock.shutdown();
        self.wait_idle();
    }

    /// Counts an answered request; wakes the receive thread waiting for
    /// room and teardown waiting for none to be left.
    fn end_one(&self) {
        let mut n = self.inflight.lock();
        *n = n.saturating_sub(1);
        self.idle.notify_all();
    }

    /// Back-pressure: waits until fewer than `depth` requests are in flight
    /// before the next one is read. A peer that does not read its replies
    /// is thereby not read from either (TCP pushes back on it), and its
    /// session holds at most `depth` requests' memory. Fails once the
    /// session is fenced.
    fn wait_room(&self, depth: u16) -> Result<(), End> {
        let mut n = self.inflight.lock();
        while *n >= u32::from(depth) {
            if self.fenced.load(Relaxed) {
                return Err(End::Fenced);
            }
            self.idle.wait(&mut n);
        }
        Ok(())
    }

    /// Waits until every started request has completed.
    fn wait_idle(&self) {
        let mut n = self.inflight.lock();
        while *n > 0 {
            self.idle.wait(&mut n);
        }
    }
}

/// Starts a READ or WRITE on the device; its completion hands the request
/// to the sender.
fn start_bio(io: Pin<KBox<Io>>, op: BioOp) {
    let offset = io.req.offset;
    if let Err((io, e)) = bdev::submit(io, op, offset) {
        Io::complete(io, Err(e));
    }
}

/// The sender thread of a session: answers finished requests, a batch at a
/// time, until the session stops it (once nothing is in flight).
fn sender_main(s: &Arc<Session>) {
    loop {
        let mut batch = s.replies.wait();
        if batch.is_empty() {
            if kthread::should_stop() {
                return;
            }
            continue;
        }
        while let Some(io) = batch.next() {
            let body = match (&io.data, io.status) {
                (Some(data), Some(Status::Ok)) if io.req.op == Some(Op::Read) => {
                    Body::Pages(data.pages())
                }
                _ => Body::None,
            };
            let status = io.status.unwrap_or(Status::IoError);
            // A failed send shuts the connection down; the receive thread
            // then ends the session, and later replies fail at once.
            let _ = s.send(&io.req.reply(status), body, !batch.is_empty());
            // Only now is its slot free: the peer may send the next request
            // as soon as it sees this reply, and the receive thread waits
            // for room until then (`Session::wait_room`).
            s.end_one();
            // Its pages and memory budget go back here.
            drop(io);
        }
    }
}

/// A request's share of its export's memory budget, given back on drop.
struct Charge {
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

/// A received trailer.
struct Trailer {
    buf: [u8; MAX_TRAILER],
    len: usize,
}

impl Trailer {
    /// The trailer's bytes.
    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

/// A WRITE whose check was handed to a crypto worker: it runs once the
/// message verified.
struct Pending {
    check: Check,
    header: [u8; HEADER_LEN],
    trailer: Trailer,
}

/// Verifies an admitted message whose payload is `data` (decrypting it in
/// place for AEAD).
fn verify(
    check: &Check,
    hb: &[u8; HEADER_LEN],
    data: Option<&PageBuf>,
    trailer: &[u8],
) -> Result<(), End> {
    let vecs = data.map_or(&[][..], PageBuf::bvecs);
    // SAFETY: the pages were received for this request, which has not
    // started: nobody else uses them until it does.
    let data = unsafe { Segments::from_raw(vecs) };
    check.verify(hb, &data, trailer).map_err(|e| match e {
        Rejected::Message(e) => End::Integrity(e.as_str()),
        Rejected::Local(e) if e == ENOMEM => End::NoMem,
        Rejected::Local(e) => End::Local(e),
    })
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

/// One request being executed. A work item for what runs in process context
/// (checking a WRITE on the crypto pool, blocking device operations), then
/// handed to the session's sender ([`Linked`]), which answers it.
#[pin_data]
struct Io {
    #[pin]
    work: Work<Io>,
    link: Link,
    session: Arc<Session>,
    req: Header,
    /// Pages and device of a READ or WRITE.
    data: Option<IoData>,
    /// The memory budget `data` holds; after it, so the pages go back first.
    charge: Option<Charge>,
    /// The result, once the operation has run.
    status: Option<Status>,
    /// A WRITE not yet verified: a crypto worker runs it first.
    pending: Option<Pending>,
}

impl_has_work! {
    impl HasWork<Self> for Io { self.work }
}

// SAFETY: `link` is a `Link` field of `Io`. The session outlives every push
// to its `replies`: `session_main` quiesces them before the session can go.
unsafe impl Linked for Io {
    const NODE_OFFSET: usize = core::mem::offset_of!(Io, link);

    fn handoff(&self) -> &Handoff<Io> {
        &self.session.replies
    }
}

impl Io {
    /// Allocates the request state (in the receive thread's NOIO scope).
    fn new(
        session: Arc<Session>,
        req: Header,
        data: Option<IoData>,
        charge: Option<Charge>,
        pending: Option<Pending>,
    ) -> Result<Pin<KBox<Self>>> {
        KBox::pin_init(
            try_pin_init!(Io {
                work <- new_work!("Io::work"),
                link: Link::new(),
                session,
                req,
                data,
                charge,
                status: None,
                pending,
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

    fn run(mut this: Pin<KBox<Io>>) {
        bdev::noio(|| {
            if let Some(p) = this.as_mut().project().pending.take() {
                let pages = this.data.as_ref().map(IoData::pages);
                if let Err(end) = verify(&p.check, &p.header, pages, p.trailer.bytes()) {
                    // Never written: end the session, which the local node
                    // sees as a lost connection, and resends.
                    let s = &this.session;
                    if matches!(end, End::Integrity(_)) {
                        s.export.integrity_errors.add(1, Relaxed);
                    }
                    if s.export.may_log() {
                        pr_warn!(
                            "export {}: session {} with {}: {}\n",
                            s.export.shown(),
                            s.id,
                            s.peer,
                            end
                        );
                    }
                    s.sock.shutdown();
                    s.end_one();
                    return;
                }
                let fua = this.req.flags & proto::FLAG_FUA != 0;
                start_bio(this, BioOp::Write { fua });
                return;
            }
            let status = this.execute();
            *this.as_mut().project().status = Some(status);
            Handoff::push(this);
        })
    }
}

impl BioOwner for Io {
    fn io_data(&self) -> Option<&IoData> {
        self.data.as_ref()
    }

    fn complete(mut this: Pin<KBox<Self>>, result: Result) {
        *this.as_mut().project().status = Some(status_of(result));
        Handoff::push(this);
    }
}
