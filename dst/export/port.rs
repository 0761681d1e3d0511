// SPDX-License-Identifier: GPL-2.0

//! A listening address shared by exports: which export a connection is for.
//!
//! Any number of exports listen on one address and port, told apart by
//! name, as NBD exports and NVMe subsystems are. A [`Port`] owns the
//! listening socket and its accept thread, and knows the exports it
//! serves. Each accepted connection gets a short-lived thread of its own
//! ([`pending_main`]) that reads the first message within `HELLO_MS`: a
//! HELLO names the export wanted (or none, which is right when only one
//! listens here), and the connection is handed to that export, which runs
//! the rest of the handshake in a session thread of its own
//! (`listener.rs`); a DISCOVER is answered with the names of the exports
//! the client's address may use, and closed.
//!
//! What the port bounds: connections that have not sent their first message
//! yet (the unauthenticated, unidentified ones). Beyond [`MAX_PENDING`] a
//! new connection cuts the oldest silent one short; beyond twice that, new
//! connections are answered BUSY, which bounds the threads a flood costs.
//! What happens after the first message is each export's to bound.

use kernel::{
    new_mutex,
    prelude::*,
    sync::{
        atomic::{Acquire, Atomic, Full, Release},
        Arc, Mutex,
    },
    time::{delay::fsleep, Delta, Instant, Monotonic},
};

use crate::{
    acl::Verdict,
    kthread::{self, Thread},
    netns::HomeNet,
    proto::{
        Header, HelloBody, Kind, Name, Status, HEADER_LEN, HELLO_LEN, MAX_DISCOVERED, NAME_LEN,
    },
    socket::{Peer, SockAddr, Socket},
};

use super::{listener::answer_at_accept, Inner, HELLO_MS, SEND_TIMEOUT_MS};

/// Listen backlog.
const BACKLOG: i32 = 128;

/// Most connections waiting for their first message at once.
const MAX_PENDING: usize = 16;

/// A listening address and the exports it serves.
#[pin_data]
pub(crate) struct Port {
    addr: SockAddr,
    /// The exports listening here, told apart by name.
    #[pin]
    exports: Mutex<KVec<Arc<Inner>>>,
    /// Threads of connections waiting for their first message, finished
    /// ones included until reaped.
    #[pin]
    pending: Mutex<KVec<Thread<Arc<Pending>>>>,
    /// The accept thread; `None` once stopped.
    #[pin]
    accept: Mutex<Option<Thread<Arc<Port>>>>,
    /// Set before the listener is shut down; the accept loop then ends.
    stopping: Atomic<bool>,
    listener: Socket,
}

/// A connection waiting for its first message.
#[pin_data]
struct Pending {
    /// Until handed to an export (a mutex: shutting it down may sleep).
    #[pin]
    sock: Mutex<Option<Arc<Socket>>>,
    peer: Peer,
    accepted: Instant<Monotonic>,
    port: Arc<Port>,
    /// [`WAITING`], then [`HANDED`] by its thread or [`CUT`] by the port,
    /// whichever comes first: a connection handed to an export is never
    /// cut by the port, one cut is never handed over.
    state: Atomic<u32>,
    /// Set by its thread as its last step.
    finished: Atomic<bool>,
}

/// [`Pending::state`]: the first message has not been handled yet.
const WAITING: u32 = 0;
/// [`Pending::state`]: the connection belongs to an export now.
const HANDED: u32 = 1;
/// [`Pending::state`]: the port shut the connection down.
const CUT: u32 = 2;

impl Pending {
    /// Shuts the connection down, unless it was handed to an export.
    fn cut(&self) {
        if self.state.cmpxchg(WAITING, CUT, Full).is_ok() {
            if let Some(sock) = &*self.sock.lock() {
                sock.shutdown();
            }
        }
    }

    /// Whether the peer has sent anything yet.
    fn heard(&self) -> bool {
        self.sock.lock().as_ref().is_some_and(|s| s.has_data())
    }
}

impl Port {
    /// Listens on `addr` in namespace `net` and starts the accept thread.
    pub(super) fn open(net: HomeNet, addr: SockAddr) -> Result<Arc<Port>> {
        let listener = Socket::listen(net, addr, BACKLOG)?;
        let port = Arc::pin_init(
            try_pin_init!(Port {
                addr,
                exports <- new_mutex!(KVec::new(), "Port::exports"),
                pending <- new_mutex!(KVec::new(), "Port::pending"),
                accept <- new_mutex!(None, "Port::accept"),
                stopping: Atomic::new(false),
                listener,
            }),
            GFP_KERNEL,
        )?;
        let thread = Thread::spawn(
            fmt!("dst-port-{}", addr.parts().1),
            port.clone(),
            accept_main,
        )?;
        *port.accept.lock() = Some(thread);
        Ok(port)
    }

    /// Serves `export` here too; fails with `EEXIST` if an export of its
    /// name already does.
    pub(super) fn add(&self, export: Arc<Inner>) -> Result {
        let mut exports = self.exports.lock();
        if exports.iter().any(|e| e.name == export.name) {
            return Err(EEXIST);
        }
        exports.push(export, GFP_KERNEL)?;
        Ok(())
    }

    /// Stops serving `export`; whether any export is left here.
    pub(super) fn remove(&self, export: &Inner) -> bool {
        let mut exports = self.exports.lock();
        exports.retain(|e| !core::ptr::eq(&**e, export));
        !exports.is_empty()
    }

    /// Stops listening if no export is served here (one that failed to
    /// start was the only one).
    pub(super) fn stop_if_unused(&self) {
        if self.exports.lock().is_empty() {
            self.stop();
        }
    }

    /// Stops listening: no connection is accepted or handed over once
    /// this returns. The exports' sessions are theirs to end.
    pub(super) fn stop(&self) {
        let mut accept = self.accept.lock();
        self.stopping.store(true, Release);
        self.listener.shutdown();
        drop(accept.take());
        let pending = core::mem::take(&mut *self.pending.lock());
        for p in pending.iter() {
            p.data().cut();
        }
        drop(pending);
    }

    /// The export a HELLO asking for `name` is for: the only one here,
    /// whatever the name (its handshake refuses, counts and logs another
    /// name, as before ports were shared), or the one of that name.
    fn export_for(&self, name: &Name) -> Option<Arc<Inner>> {
        let exports = self.exports.lock();
        match exports.as_slice() {
            [only] => Some(only.clone()),
            several => several.iter().find(|e| e.name == *name).cloned(),
        }
    }

    /// Refuses a connection from an address no export here allows, before
    /// any thread exists for it (each export counts and reports it).
    fn refused_by_all(&self, peer: Option<&SockAddr>) -> bool {
        self.exports
            .lock()
            .iter()
            .all(|e| e.allow.check(peer) == Verdict::Refused)
    }

    /// Starts the thread of a connection just accepted, unless too many are
    /// pending. Reaps the threads that have ended.
    fn add_pending(self: &Arc<Self>, sock: Socket) {
        let mut pending = self.pending.lock();
        pending.retain(|p| !p.data().finished.load(Acquire));
        if pending.len() >= 2 * MAX_PENDING {
            drop(pending);
            answer_at_accept(&sock, Status::Busy);
            return;
        }
        let waiting = || {
            pending
                .iter()
                .filter(|p| p.data().state.load(Acquire) == WAITING)
        };
        if waiting().count() >= MAX_PENDING {
            // Cut short the oldest that has sent nothing, else the oldest;
            // its thread ends on its own.
            let victim = waiting().max_by_key(|p| {
                let p = p.data();
                (!p.heard(), p.accepted.elapsed())
            });
            if let Some(victim) = victim {
                victim.data().cut();
            }
        }
        let peer = Peer(sock.peer());
        let started = pending
            .reserve(1, GFP_KERNEL)
            .map_err(|_| ENOMEM)
            .and_then(|()| {
                let sock = Arc::new(sock, GFP_KERNEL)?;
                let p = Arc::pin_init(
                    try_pin_init!(Pending {
                        sock <- new_mutex!(Some(sock), "Pending::sock"),
                        peer,
                        accepted: Instant::<Monotonic>::now(),
                        port: self.clone(),
                        state: Atomic::new(WAITING),
                        finished: Atomic::new(false),
                    }),
                    GFP_KERNEL,
                )?;
                Thread::spawn(fmt!("dst-port-{}.p", self.addr.parts().1), p, pending_main)
            });
        if let Ok(thread) = started {
            // Capacity was reserved above, so this cannot fail.
            let _ = pending.push_within_capacity(thread);
        }
    }
}

/// The accept thread: a pending connection per accepted one, until the port
/// stops. An address no export here allows is refused at once.
fn accept_main(port: &Arc<Port>) {
    loop {
        let accepted = port.listener.accept();
        if port.stopping.load(Acquire) || kthread::should_stop() {
            return;
        }
        match accepted {
            Ok(sock) if port.refused_by_all(sock.peer().as_ref()) => {
                for e in port.exports.lock().iter() {
                    e.refuse_client(Peer(sock.peer()), c"address not on the allow-list");
                }
                answer_at_accept(&sock, Status::NotAllowed);
            }
            Ok(sock) => port.add_pending(sock),
            Err(e) => {
                pr_warn!("port {}: accept failed: {:?}\n", Peer(Some(port.addr)), e);
                // Do not spin on a persistent error.
                fsleep(Delta::from_millis(100));
            }
        }
    }
}

/// The thread of a pending connection: reads its first message and hands
/// it over, or answers a DISCOVER, or refuses it.
fn pending_main(p: &Arc<Pending>) {
    let deadline = p.accepted + Delta::from_millis(HELLO_MS.into());
    let sock = p.sock.lock().clone();
    if let Some(sock) = sock {
        let _ = first_message(p, &sock, deadline);
    }
    // Handed over or not, the port is done with it (if not handed over,
    // this closes it).
    let sock = p.sock.lock().take();
    drop(sock);
    p.finished.store(true, Release);
}

/// Why a pending connection was dropped without an answer.
struct Dropped;

fn first_message(
    p: &Pending,
    sock: &Arc<Socket>,
    deadline: Instant<Monotonic>,
) -> Result<(), Dropped> {
    let port = &p.port;
    let mut hb = [0u8; HEADER_LEN];
    sock.recv_exact_by(&mut hb, deadline).map_err(|_| Dropped)?;
    let h = Header::decode(&hb).map_err(|_| Dropped)?;
    sock.set_timeouts(SEND_TIMEOUT_MS, 0);
    match h.kind {
        Kind::Discover => {
            discover(p, sock);
            Err(Dropped)
        }
        Kind::Hello => {
            let mut body = [0u8; HELLO_LEN];
            sock.recv_exact_by(&mut body, deadline)
                .map_err(|_| Dropped)?;
            // The export checks the rest; the name picks it.
            let refuse = |status| {
                let _ = sock.send_all(&Header::hello_reply(status).encode(), false);
                Err(Dropped)
            };
            let Ok(hello) = HelloBody::decode(&body).and_then(|h| h.validate().map(|()| h)) else {
                return refuse(Status::Invalid);
            };
            let Some(export) = port.export_for(&hello.export) else {
                return refuse(Status::UnknownExport);
            };
            if p.state.cmpxchg(WAITING, HANDED, Full).is_err() {
                return Err(Dropped);
            }
            export.add_session(sock.clone(), p.peer, p.accepted, body);
            Ok(())
        }
        _ => Err(Dropped),
    }
}

/// Answers a DISCOVER: the names of the exports here whose allow-list
/// admits the client's address, at most [`MAX_DISCOVERED`].
fn discover(p: &Pending, sock: &Socket) {
    // 4 KiB: not on the thread's stack.
    let Ok(mut body) = KVec::from_elem(0u8, MAX_DISCOVERED * NAME_LEN, GFP_KERNEL) else {
        return;
    };
    let mut n = 0;
    for e in p.port.exports.lock().iter() {
        if n == MAX_DISCOVERED || e.allow.check(p.peer.0.as_ref()) == Verdict::Refused {
            continue;
        }
        if let Some(d) = body.get_mut(n * NAME_LEN..(n + 1) * NAME_LEN) {
            d.copy_from_slice(e.name.padded());
            n += 1;
        }
    }
    let h = Header::discover_reply(n as u32);
    let _ = sock.send_all(&h.encode(), true);
    let _ = sock.send_all(body.get(..n * NAME_LEN).unwrap_or(&[]), false);
}
