// SPDX-License-Identifier: GPL-2.0

//! The device's life: creating it (a connection per queue, the tag set,
//! the threads, `/dev/dstN`), what `dstcfg` reads and changes, deleting it,
//! and the block driver (`queue_rq`, `timeout`, sysfs) that routes each
//! request to its queue.

use kernel::{
    new_condvar, new_mutex, new_spinlock,
    page::PAGE_SIZE,
    prelude::*,
    sync::{
        atomic::{Acquire, Atomic, Full, Relaxed, Release},
        Arc,
    },
    time::Instant,
};

use crate::{
    blk::{self, Disk, DiskEvents, DiskParams, Driver, Request, SegmentBuf, Started, TagSet},
    epoch::Epoch,
    error::{code, Refusal},
    kthread::Thread,
    netlink::{self, event},
    netns::HomeNet,
    pages::Bounce,
    proto::{self, HelloBody, Name, Protection, Security},
    socket::{SockAddr, Socket},
    sysfs,
    trans::{AtomicConnState, ConnState, InFlight},
};

use super::{
    connect::{handshake, random_client_id, same_grant},
    receive::{receiver_main, ReplyCheck},
    send::sender_main,
    settings::{DEFAULT_MAX_IO_PAGES, DEFAULT_QUEUES, DEFAULT_QUEUE_DEPTH, MAX_ZEROING_BYTES},
    Common, Counters, Ctx, Device, DeviceConfig, Pdu, QueueThreads, Ring, Router, RxStart,
    Settings, SettingsUpdate, Shared, Tx,
};

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
        let mut hello = HelloBody {
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
            read_only: cfg.read_only,
            security: cfg.security.security,
            key_share: [0; proto::KEY_SHARE_LEN],
            client: cfg.client,
            export: cfg.export,
        };
        let (index, addr) = (cfg.index, cfg.addr);
        let connect = |hello: &HelloBody, queue_index| {
            let mut h = *hello;
            h.queue_index = queue_index;
            handshake(cfg.net, addr, &h, &cfg.security, &settings, Some(index))
        };
        // Queue 0 learns the grant and the export's identity, which every
        // later connection then asks for: the device is bound to the export
        // it was created with, whatever answers at that address later.
        let mut first = connect(&hello, 0)?;
        let granted = first.granted;
        hello.export = granted.export;
        let mut conns = KVec::with_capacity(granted.queues.into(), GFP_KERNEL)?;
        // The export may grow while the queues connect: the device starts
        // with the largest size granted (the other connections hear of it
        // in a RESIZE).
        let mut size = granted.size;
        let others = (1..granted.queues).try_for_each(|qid| {
            let c = connect(&hello, qid)?;
            size = size.max(c.granted.size);
            if !same_grant(&granted, &c.granted) {
                return Err(Refusal::new(
                    code::eproto(),
                    c"the export granted the queues of one device differently",
                ));
            }
            Ok(conns.push(c, GFP_KERNEL)?)
        });
        if let Err(e) = others {
            // The first connection may have been given the write access:
            // give it back, as the device will never be.
            first.release();
            return Err(e);
        }
        conns
            .insert_within_capacity(0, first)
            .map_err(|_| Refusal::from(ENOMEM))?;
        // The disk's segments neither exceed nor cross a page (shim_blk.c),
        // and there are at most max_io / PAGE_SIZE of them: one entry each.
        let max_segments = (granted.max_io_bytes as usize).div_ceil(PAGE_SIZE);
        let depth = u32::from(granted.queue_depth);
        let events = DiskEvents::new()?;
        let common = Arc::new(
            Common {
                index,
                addr,
                net: cfg.net,
                granted,
                size: Atomic::new(size),
                hello,
                epoch,
                security: cfg.security,
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
                rekeys: Atomic::new(0),
                events: events.clone(),
            },
            GFP_KERNEL,
        )?;
        let mut queues = KVec::with_capacity(conns.len(), GFP_KERNEL)?;
        let mut socks = KVec::with_capacity(conns.len(), GFP_KERNEL)?;
        for (qid, c) in conns.into_iter().enumerate() {
            let sock = c.sock;
            let (tx_sock, rx_sock) = (sock.clone(), sock.clone());
            let q_dev = common.clone();
            let vecs = SegmentBuf::new(max_segments)?;
            let rx_vecs = SegmentBuf::new(max_segments)?;
            // With protection, data is protected and checked only in the
            // kernel's own pages: one bounce buffer for the sender, one for
            // the receiver and one per check job.
            let protected = hello.security.protection != Protection::None;
            let max_io = granted.max_io_bytes as usize;
            let bounce = || protected.then(|| Bounce::new(max_io)).transpose();
            let spare_checks = if protected {
                ReplyCheck::spares(max_segments, max_io)?
            } else {
                KVec::new()
            };
            let (tx_bounce, rx_bounce) = (bounce()?, bounce()?);
            let q = Arc::pin_init(
                try_pin_init!(Shared {
                    qid: qid as u32,
                    dev: q_dev,
                    conn: AtomicConnState::new(ConnState::Up),
                    last_rx: Atomic::new(0),
                    lost_at: Atomic::new(0),
                    shut: Atomic::new(0),
                    late: Atomic::new(false),
                    active: Atomic::new(0),
                    integrity_lost: Atomic::new(false),
                    checks <- InFlight::new(),
                    spare_checks <- new_spinlock!(spare_checks, "dst::Shared::spare_checks"),
                    ring <- new_spinlock!(Ring::new(depth as usize)?, "dst::Shared::ring"),
                    wake <- new_condvar!("dst::Shared::wake"),
                    rewake <- new_condvar!("dst::Shared::rewake"),
                    tx <- new_mutex!(
                        Tx {
                            sock: Some(tx_sock),
                            sealer: Some(c.sealer),
                            ping: None,
                            vecs,
                            bounce: tx_bounce,
                            epoch: hello.epoch,
                            first: Some(RxStart {
                                sock: rx_sock,
                                opener: c.opener,
                                vecs: rx_vecs,
                                bounce: rx_bounce,
                            }),
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
            size,
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
            max_zeroing_bytes: MAX_ZEROING_BYTES,
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
        let disk = Disk::add(&tags, &params, events.clone())
            .map_err(|e| Refusal::new(e, c"cannot create the block device"))?;
        // A RESIZE the receivers took in before the disk was added.
        events.grow(common.size());
        closing.disarm();
        netlink::notify(common.net, index, event::CONNECTED);
        pr_info!(
            "dst{}: connected to {}, {} bytes{}, max IO {} KiB, {} queue(s) of depth {}, protection {}{}\n",
            index,
            addr,
            size,
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

    /// The namespace the device belongs to.
    pub(crate) fn net(&self) -> HomeNet {
        self.dev().net
    }

    /// The export node's address.
    pub(crate) fn addr(&self) -> SockAddr {
        self.dev().addr
    }

    /// Size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.dev().size()
    }

    /// The identity the export fences this device's connections by.
    pub(crate) fn client_id(&self) -> u64 {
        self.dev().hello.client_id
    }

    /// The identity of the export the device is bound to.
    pub(crate) fn export_name(&self) -> &Name {
        &self.dev().hello.export
    }

    /// The device's own identity in the handshake.
    pub(crate) fn client_name(&self) -> &Name {
        &self.dev().hello.client
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
            // The device will never be: give back the write access.
            if let Some(q) = queues.first() {
                q.release_export();
            }
            for (q, sock) in queues.iter().zip(socks.iter()) {
                q.conn.set(ConnState::Closing);
                sock.shutdown();
            }
        }
    }
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
        // After the last IO: the write access this device held is free.
        let _ = queues.iter().any(|q| q.release_export());
        for q in queues.iter() {
            q.conn.set(ConnState::Closing);
            let mut tx = q.tx.lock();
            if let Some(sock) = tx.sock.take() {
                sock.shutdown();
            }
            if let Some(start) = tx.first.take() {
                start.sock.shutdown();
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
        netlink::notify(dev.net, dev.index, event::DELETED);
        pr_info!("dst{}: deleted\n", dev.index);
    }
}

impl Common {
    /// Announces a change of the device's state: a netlink event (for
    /// `dstcfg monitor`) and, once the disk exists, a change uevent whose
    /// `DST_STATE` is the new state as sysfs `dst/state` shows it (for udev,
    /// md and systemd).
    pub(super) fn announce(&self, ev: u32) {
        netlink::notify(self.net, self.index, ev);
        let state = match ev {
            event::LOST => c"DST_STATE=reconnecting",
            event::RECONNECTED => c"DST_STATE=connected",
            event::FAILED => c"DST_STATE=failed",
            _ => return,
        };
        self.events.change(state);
    }

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

impl Driver for Router {
    type Pdu = Pdu;

    fn timeout(&self, rq: Started<'_, Self>) {
        if let Some(q) = self.queues.get((rq.info().tag >> 16) as usize) {
            q.timed_out(&rq);
        }
    }

    fn queue_rq(&self, rq: Request<Self>, last: bool) -> Result<(), (Request<Self>, Error)> {
        let qid = (rq.info().tag >> 16) as usize;
        match self.queues.get(qid) {
            Some(q) => q.queue_rq(rq, last),
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
            2 => write!(out, "{}", dev.size()),
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
            17 => match s.loss_timeout() {
                Some(ms) => write!(out, "{ms}"),
                None => out.write_str("infinite"),
            },
            18 => write!(out, "{}", dev.integrity_errors.load(Relaxed)),
            19 => {
                let sec = &dev.security.security;
                out.write_str(sec.protection.as_str())?;
                if !sec.alg.is_empty() {
                    out.write_str(" ")?;
                    sysfs::write_name(out, &sec.alg)?;
                }
                Ok(())
            }
            20 => write!(out, "{}", self.queues.len()),
            21 => write!(out, "{}", dev.rekeys.load(Relaxed)),
            22 | 23 => sysfs::write_name(out, &dev.hello.export),
            _ => Err(kernel::fmt::Error),
        }
    }
}
