// SPDX-License-Identifier: GPL-2.0

//! The export node: serves a local block device, or a regular file, over TCP
//! to local nodes.
//!
//! An [`Export`] owns the backing device (opened exclusively; a regular file
//! is claimed, see `backing_file.rs`) and has a name; it listens on a [`Port`], an address it may share with other
//! exports of other names. A connection whose HELLO names it (or names none
//! where it listens alone) becomes a [`Session`] of it, with its own receive
//! thread, which runs the rest of the handshake and then reads requests,
//! checks each one against what was granted, and submits it.
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
//! completion, so they are never freed under IO. [`Export::stop`] leaves its
//! port (the last export of an address closes it), ends every session and
//! joins its threads, drains the workqueue (the last blocking operations)
//! and only then syncs and releases the device.
//!
//! Nothing read from the network is trusted: headers go through
//! `Header::decode`, requests through `validate_request`, and at most the
//! granted queue depth of requests may be in flight per session. A message that
//! breaks the framing or the protocol ends that session only; a request that is
//! merely refused (range, permission, unsupported, invalid values) has its
//! payload skipped and is answered with the status, and the session goes on.
//!
//! Size. The exported size only grows while the export runs: the admin
//! grows it (`DST_CMD_EXPORT_RESIZE`), or the export notices that its
//! backing device grew ([`Inner::refresh`], run before every message a
//! session receives and before every handshake). Each serving session's
//! sender then tells its local node ([`proto::Kind::Resize`]). A device
//! that shrinks under the export is not followed: the export keeps its
//! size, and requests beyond the device's new end fail as IO errors.
//!
//! Files. The export is split by concern, each part in its own file:
//! - this one: the [`Export`] and its lifecycle ([`Export::start`],
//!   [`Export::stop`]), what netlink, the registry and sysfs read of it, its
//!   log rate limit, and the limits its parts share (the memory budget, the
//!   timeouts);
//! - [`port`]: a listening address shared by exports. The accept thread, and
//!   which export a connection is for (its HELLO's name), or the answer to
//!   a DISCOVER;
//! - [`listener`]: admission. The handshake of a connection handed to the
//!   export (what the client is granted), the fencing of a client's older
//!   sessions, and the write access;
//! - [`session`]: a connected local node. Its receive loop, the
//!   back-pressure that bounds what it holds (queue depth, memory budget),
//!   and its sender thread;
//! - [`io`]: one request's execution once it has been read: the crypto
//!   worker's check of a protected WRITE, the bio or blocking device
//!   operation, and the completion that hands it to the sender.
//!
//! [`Io`]: io::Io
//! [`Handoff`]: crate::handoff::Handoff

use core::pin::Pin;

use kernel::{
    ffi::c_void,
    fmt, new_mutex, new_spinlock,
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
        Mutex,
        SpinLock,
        UniqueArc, //
    },
    time::{
        Delta,
        Instant,
        Monotonic, //
    },
};

use crate::{
    acl::AllowList,
    backing_file::{path_kind, PathKind},
    bdev::{
        Backing,
        IoQueue, //
    },
    error::{code, Refusal},
    kthread::Thread,
    netns::HomeNet,
    pages::PagePool,
    proto::{
        self,
        Name,
        Security, //
    },
    security::{ClientKeys, SecurityConfig},
    socket::{
        Peer,
        SockAddr, //
    },
    sysfs::{self, ExportDir, PageWriter},
};

mod io;
mod listener;
mod port;
mod session;

pub(crate) use port::Port;
use session::Session;

/// Largest IO when the configuration does not say: 256 pages (1 MiB).
const DEFAULT_IO_PAGES: u32 = 256;

/// Largest configurable IO: 1024 pages (4 MiB, the protocol's limit).
const MAX_IO_PAGES: u32 = 1024;

/// Most memory the data of one export's requests may hold at once (READ
/// buffers until their reply is sent, WRITE payloads until written). Each
/// session gets an equal share, at least one largest IO, so a peer that
/// stops reading cannot take the others' memory.
const MEMORY_BUDGET: usize = 64 << 20;

/// Buffers of the largest IO an export keeps in reserve for when the page
/// allocator fails (see `pages.rs`).
const RESERVED_IOS: usize = 2;

/// How long the whole handshake may take, from the accept.
const HANDSHAKE_MS: u32 = 10_000;

/// How long after the accept the HELLO must have arrived. A local node
/// sends it at once; a connection that stays silent only holds a handshake
/// slot this long.
const HELLO_MS: u32 = 3_000;

/// How long a send may wait for room in the socket buffer: a peer that stops
/// reading its replies for this long is dropped.
const SEND_TIMEOUT_MS: u32 = 30_000;

/// A session that receives nothing for this long ends (ms). The local node
/// pings an idle connection every 5 s by default; a local node that does
/// not ping reconnects when it has IO again.
const IDLE_TIMEOUT_MS: u32 = 60_000;

/// Log lines per export allowed in each [`LOG_WINDOW_SECS`] window; the rest
/// are counted and reported.
const LOG_BURST: u32 = 10;

/// Length of a logging window in seconds.
const LOG_WINDOW_SECS: i64 = 5;

/// What `DST_CMD_EXPORT_ADD` asks for.
pub(crate) struct ExportConfig {
    /// Network namespace to listen in, which the export belongs to.
    pub(crate) net: HomeNet,
    /// Address and port to listen on.
    pub(crate) addr: SockAddr,
    /// Path of the backing block device or regular file, e.g. `/dev/ram0`.
    pub(crate) path: CString,
    /// Serve reads only.
    pub(crate) read_only: bool,
    /// Size cap in bytes; 0 exports the whole device. A ceiling: the export
    /// follows its device's growth up to it, and only an explicit resize
    /// moves it.
    pub(crate) size_cap: u64,
    /// Largest IO in 4 KiB pages; 0 for the default (256).
    pub(crate) max_io_pages: u32,
    /// exportN: names the export in events and lists.
    pub(crate) index: u32,
    /// The export's identity in the handshake.
    pub(crate) name: Name,
    /// Protection mode, algorithm and key; clients must match them.
    pub(crate) security: SecurityConfig,
    /// Clients with keys of their own (used instead of `security`'s key).
    pub(crate) clients: ClientKeys,
    /// Which clients may connect, and whether they may write.
    pub(crate) allow: AllowList,
    /// Any number of local nodes may write at once (for cluster file
    /// systems); otherwise one at a time (see [`Writer`]).
    pub(crate) shared: bool,
}

/// The local node identity that holds an export's write access: only its
/// devices are granted writes, until it gives them up (its last device of
/// the export is deleted: RELEASE) or the admin releases the export. It
/// keeps them across reconnects and reboots: a device whose link broke, or
/// that is created again, comes back as the same identity. Two hosts
/// writing one export that is not a cluster file system corrupt it (two md
/// arrays, two ext4 mounts), which this prevents; two devices of one host
/// are that host's business (like two opens of one disk).
#[derive(Clone, Copy)]
pub(crate) struct Writer {
    /// Its identity.
    pub(crate) client: Name,
    /// Where it last connected from.
    pub(crate) peer: Option<SockAddr>,
}

/// A running export. Dropping it stops it.
#[pin_data(PinnedDrop)]
pub(crate) struct Export {
    inner: Arc<Inner>,
    /// Where it listens; `None` once stopped. Held for the whole of
    /// [`Export::stop`], so concurrent stops return only once it is done.
    #[pin]
    port: Mutex<Option<Arc<Port>>>,
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
    /// The namespace the export belongs to.
    net: HomeNet,
    /// The export's identity, which clients may ask for and which enters
    /// the key schedule.
    name: Name,
    addr: SockAddr,
    security: SecurityConfig,
    /// Clients with keys of their own, by identity.
    clients: ClientKeys,
    allow: AllowList,
    /// Any number of writers (see [`ExportConfig::shared`]).
    shared: bool,
    /// Who holds the write access, unless `shared`.
    #[pin]
    writer: Mutex<Option<Writer>>,
    /// Clients refused (allow-list, protection mismatch, failed proof).
    refused: Atomic<u64>,
    /// Messages whose trailer or sequence number did not verify.
    integrity_errors: Atomic<u64>,
    /// Keys replaced (KEY_UPDATEs sent and received), all sessions.
    rekeys: Atomic<u64>,
    path: CString,
    /// The exported size in bytes: only grows, under `sizing`.
    size: Atomic<u64>,
    /// The backing device's size when it was last looked at (see
    /// [`Inner::refresh`]): while it stays the same, nothing is to do.
    seen_backing: Atomic<u64>,
    /// The size cap and the shrink last reported; taken to change `size`.
    #[pin]
    sizing: Mutex<Sizing>,
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
    /// Set when the export stops: no session is added any more.
    stopping: Atomic<bool>,
    /// Sessions whose receive thread is running.
    live: Atomic<u32>,
    /// Sessions past the handshake, which share the memory budget.
    serving: Atomic<u32>,
    /// Number for the next session (thread names, logs).
    next_id: Atomic<u32>,
    #[pin]
    log: SpinLock<LogWindow>,
}

/// What decides an export's size besides its device.
struct Sizing {
    /// Ceiling in bytes; 0 for none. The export follows its device's
    /// growth up to it; an explicit resize sets it.
    cap: u64,
    /// The device size whose shrink below the export was last logged, so
    /// that it is logged once.
    shrink_logged: u64,
}

/// The size to export, in bytes: the device's `bytes`, at most `cap` (0: no
/// cap) and [`proto::MAX_SIZE`], in whole `block`s.
fn fit(bytes: u64, cap: u64, block: u64) -> u64 {
    let bytes = if cap == 0 { bytes } else { bytes.min(cap) };
    match bytes.min(proto::MAX_SIZE).checked_div(block) {
        Some(blocks) => blocks * block,
        None => 0,
    }
}

/// Rate limiting state of an export's log lines.
struct LogWindow {
    start: Option<Instant<Monotonic>>,
    printed: u32,
    suppressed: u32,
}

/// Opens what `path` names: a block device exclusively, for `holder`, or a
/// regular file; anything else is refused.
fn open_backing(path: &CStr, write: bool, holder: *const c_void) -> Result<Backing, Refusal> {
    let kind = path_kind(path).map_err(|e| {
        let msg = if e == ENOENT || e == ENOTDIR {
            c"no such block device or file"
        } else {
            c"cannot look up the path"
        };
        Refusal::new(e, msg)
    })?;
    match kind {
        PathKind::Block => Backing::open_block(path, write, holder).map_err(open_refusal),
        PathKind::Regular => Backing::open_file(path, write).map_err(file_refusal),
        PathKind::Directory => Err(Refusal::new(
            EISDIR,
            c"the path is a directory; export a block device or a regular file",
        )),
        PathKind::Other => Err(Refusal::new(
            EINVAL,
            c"the path is neither a block device nor a regular file",
        )),
    }
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

/// Maps an error from opening a backing file to a refusal.
fn file_refusal(e: Error) -> Refusal {
    let msg = if e == EBUSY {
        c"the file is exported already"
    } else if e == EROFS || e == ETXTBSY {
        c"the file cannot be written; export it read-only"
    } else if e == EACCES || e == EPERM {
        c"permission denied opening the file"
    } else {
        c"cannot open the backing file"
    };
    Refusal::new(e, msg)
}

/// Maps an error from creating the listening socket to a refusal.
fn listen_refusal(e: Error) -> Refusal {
    let msg = if e == code::eaddrinuse() {
        c"address already in use"
    } else if e == code::eaddrnotavail() {
        c"address not available on this host"
    } else if e == code::eafnosupport() {
        c"address family not supported"
    } else {
        c"cannot listen on the address"
    };
    Refusal::new(e, msg)
}

/// The port an export being started serves on, until the export owns it:
/// if the start fails, the export is taken off the port again, and a port
/// left with no export stops (its accept thread holds it, so dropping it
/// would not).
struct PortClaim {
    port: Arc<Port>,
    /// The export, once the port serves it.
    added: Option<Arc<Inner>>,
    /// The start succeeded.
    kept: bool,
}

impl PortClaim {
    /// The start succeeded: the port, for the export to keep.
    fn keep(mut self) -> Arc<Port> {
        self.kept = true;
        self.port.clone()
    }
}

impl Drop for PortClaim {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        if let Some(inner) = self.added.take() {
            self.port.remove(&inner);
        }
        self.port.stop_if_unused();
    }
}

impl Export {
    /// Opens the device exclusively (read-write unless read-only, the export
    /// being the holder) or the file, and listens: on `port`, the address's port if other
    /// exports listen there already, else on a port of its own.
    pub(crate) fn start(
        cfg: ExportConfig,
        port: Option<Arc<Port>>,
    ) -> Result<Arc<Export>, Refusal> {
        let ExportConfig {
            net,
            addr,
            path,
            read_only,
            size_cap,
            max_io_pages,
            index,
            name,
            security,
            clients,
            allow,
            shared,
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
        let backing = open_backing(&path, !read_only, holder)?;
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
        let backing_size = backing.size();
        let size = fit(backing_size, size_cap, block);
        if size == 0 {
            return Err(Refusal::new(
                EINVAL,
                c"nothing to export: the device or size cap is smaller than one block",
            ));
        }
        // Without a volatile write cache every completed write is durable:
        // the local node's device then has none either, and its file
        // systems send no flushes, which would cost a round trip each.
        let cache = if backing.has_write_cache() {
            proto::FEATURE_FLUSH | proto::FEATURE_FUA
        } else {
            0
        };
        let features = if read_only {
            proto::FEATURE_FLUSH | proto::FEATURE_RESIZE
        } else {
            let discard = if backing.can_discard() {
                proto::FEATURE_DISCARD
            } else {
                0
            };
            let zeroes = if backing.can_write_zeroes() {
                proto::FEATURE_WRITE_ZEROES
            } else {
                0
            };
            cache | proto::FEATURE_RESIZE | zeroes | discard
        };
        let kind = backing.describe();
        let backing = Arc::new(backing, GFP_KERNEL).map_err(|_| ENOMEM)?;
        let mut claim = PortClaim {
            port: match port {
                Some(port) => port,
                None => Port::open(net, addr).map_err(listen_refusal)?,
            },
            added: None,
            kept: false,
        };
        let wq = IoQueue::new(c"dst-export")?;
        let max_io = pages * proto::IO_BYTES_ALIGN;
        let pool = PagePool::new(max_io as usize, RESERVED_IOS)?;
        let inner = slot.write_pin_init(try_pin_init!(Inner {
            index,
            net,
            name,
            addr,
            security,
            clients,
            allow,
            shared,
            writer <- new_mutex!(None, "Export::writer"),
            refused: Atomic::new(0),
            integrity_errors: Atomic::new(0),
            rekeys: Atomic::new(0),
            path,
            size: Atomic::new(size),
            seen_backing: Atomic::new(backing_size),
            sizing <- new_mutex!(
                Sizing {
                    cap: size_cap,
                    shrink_logged: 0,
                },
                "Export::sizing"
            ),
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
        }))?;
        let inner: Arc<Inner> = inner.into();
        claim.port.add(inner.clone()).map_err(|e| match e {
            EEXIST => Refusal::new(e, c"an export of this name already listens on this address"),
            e => Refusal::from(e),
        })?;
        claim.added = Some(inner.clone());
        let export = Arc::pin_init(
            try_pin_init!(Export {
                inner,
                port <- new_mutex!(None, "Export::port"),
                sysfs <- new_mutex!(None, "Export::sysfs"),
            }),
            GFP_KERNEL,
        )?;
        // From here on the export's own `stop` leaves the port.
        *export.port.lock() = Some(claim.keep());
        let data = core::ptr::from_ref::<Inner>(&export.inner).cast::<c_void>();
        // SAFETY: `export.inner` lives as long as `export`, whose `stop`
        // (also run by its drop) removes the directory first.
        *export.sysfs.lock() = Some(unsafe { ExportDir::add(index, data) }?);
        let inner = &export.inner;
        let sec = &inner.security.security;
        pr_info!(
            "export{} {}: serving {} as {} ({}, {} bytes, block {}/{}, {}, max IO {} KiB, protection {}{}{}, {})\n",
            inner.index,
            inner.shown(),
            inner.path_str(),
            &inner.name,
            kind,
            inner.size(),
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
            &sec.alg,
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
        let mut port = self.port.lock();
        let inner = &self.inner;
        // No connection is handed to it any more; the last export of an
        // address closes its port.
        if let Some(port) = port.take() {
            if !port.remove(inner) {
                port.stop();
            }
        }
        inner.stopping.store(true, Release);
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

    /// The namespace the export belongs to.
    pub(crate) fn net(&self) -> HomeNet {
        self.inner.net
    }

    /// The port it listens on; `None` once stopped.
    pub(crate) fn port(&self) -> Option<Arc<Port>> {
        self.port.lock().clone()
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
        self.inner.size()
    }

    /// Grows the export (`DST_CMD_EXPORT_RESIZE`) to `size` bytes (in whole
    /// blocks), which becomes its cap; with `None`, to what its device now
    /// holds, within its cap. Refused if that would shrink it, or `size`
    /// exceeds the device. Returns the exported size.
    pub(crate) fn resize(&self, size: Option<u64>) -> Result<u64, Refusal> {
        let inner = &self.inner;
        let backing = inner
            .backing
            .lock()
            .clone()
            .ok_or(Refusal::new(ENODEV, c"the export is stopping"))?;
        let now = backing.size();
        let block = u64::from(inner.logical_block);
        let mut sizing = inner.sizing.lock();
        let current = inner.size();
        let (new, cap) = match size {
            None => (fit(now, sizing.cap, block), sizing.cap),
            Some(want) if want > now => {
                return Err(Refusal::new(
                    EINVAL,
                    c"the backing device is smaller than the size asked for",
                ))
            }
            Some(want) => (fit(now, want, block), want),
        };
        if new < current {
            return Err(Refusal::new(
                EINVAL,
                c"an export cannot shrink: that is below its current size",
            ));
        }
        sizing.cap = cap;
        inner.seen_backing.store(now, Relaxed);
        inner.size.store(new, Release);
        drop(sizing);
        inner.announce(current, new);
        Ok(new)
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

    /// The export's identity.
    pub(crate) fn name(&self) -> &Name {
        &self.inner.name
    }

    /// Whether any number of local nodes may write.
    pub(crate) fn shared(&self) -> bool {
        self.inner.shared
    }

    /// Who holds the write access.
    pub(crate) fn writer(&self) -> Option<Writer> {
        *self.inner.writer.lock()
    }

    /// Takes the write access from its holder (the admin's `release`): its
    /// sessions end, so that it cannot write any more, and the next local
    /// node to ask gets it. `None` if nobody held it.
    pub(crate) fn release(&self) -> Option<Writer> {
        let inner = &self.inner;
        let was = inner.writer.lock().take()?;
        inner.end_sessions_of(&was);
        pr_info!(
            "export{} {}: write access of {} taken back by the admin\n",
            inner.index,
            inner.shown(),
            &was.client
        );
        Some(was)
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

#[pinned_drop]
impl PinnedDrop for Export {
    fn drop(self: Pin<&mut Self>) {
        self.stop();
    }
}

impl Inner {
    /// The exported size in bytes.
    fn size(&self) -> u64 {
        self.size.load(Acquire)
    }

    /// Follows a change of the backing device's size: a growth grows the
    /// export (within its cap), a shrink below it is logged once and
    /// otherwise ignored. Run before each message a session receives and
    /// before each handshake: a local node pings an idle connection every
    /// few seconds and a busy one sends requests, so a growth is seen within
    /// a ping interval, by the very connections that need to hear of it,
    /// at the cost of reading one word of the device per message; the
    /// device layer has no notification of size changes to wait on instead.
    fn refresh(&self, backing: &Backing) {
        let now = backing.size();
        if now == self.seen_backing.load(Relaxed) {
            return;
        }
        let mut sizing = self.sizing.lock();
        if now == self.seen_backing.load(Relaxed) {
            return;
        }
        self.seen_backing.store(now, Relaxed);
        let current = self.size();
        let new = fit(now, sizing.cap, u64::from(self.logical_block));
        if new < current {
            if sizing.shrink_logged != now {
                sizing.shrink_logged = now;
                pr_warn!(
                    "export {}: {} shrank to {} bytes, below the {} exported: keeping that size; IO beyond the device's end fails\n",
                    self.shown(),
                    self.path_str(),
                    now,
                    current
                );
            }
            return;
        }
        self.size.store(new, Release);
        drop(sizing);
        self.announce(current, new);
    }

    /// Tells every session that the size, stored already, grew from `old`
    /// to `new` bytes: its sender then sends the size to its local node.
    fn announce(&self, old: u64, new: u64) {
        if new <= old {
            return;
        }
        pr_info!(
            "export {}: {} grew from {} to {} bytes\n",
            self.shown(),
            self.path_str(),
            old,
            new
        );
        for t in self.sessions.lock().iter() {
            t.data().replies.kick();
        }
    }

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

    /// Writes sysfs attribute `id` (numbered as in `shim_sysfs.c`).
    fn sysfs_show(&self, id: u32, out: &mut dyn fmt::Write) -> fmt::Result {
        let sec = &self.security.security;
        match id {
            0 => self.addr.write_to(out),
            1 => out.write_str(self.path_str()),
            2 => write!(out, "{}", self.size()),
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
                    sysfs::write_name(out, &sec.alg)?;
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
            12 => write!(out, "{}", self.rekeys.load(Relaxed)),
            13 => sysfs::write_name(out, &self.name),
            14 => match *self.writer.lock() {
                Some(w) => {
                    sysfs::write_name(out, &w.client)?;
                    out.write_str(" ")?;
                    match w.peer {
                        Some(a) => a.write_to(out),
                        None => out.write_str("?"),
                    }
                }
                None => Ok(()),
            },
            15 => write!(out, "{}", u8::from(self.shared)),
            _ => Err(fmt::Error),
        }
    }
}
