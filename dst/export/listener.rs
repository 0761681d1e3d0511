// SPDX-License-Identifier: GPL-2.0

//! Admission: how a connection becomes a serving session.
//!
//! The accept thread ([`accept_main`]) takes each connection and starts a
//! [`Session`] for it, unless the export is full. The session's thread then
//! runs the handshake here: the HELLO is checked (allow-list, values,
//! version, export identity, protection), with a key the key exchange and
//! proofs are run, the older sessions of the same local node are fenced, and
//! the grant is answered.
//!
//! What is here runs once per connection, before any request is read, and
//! decides whether and on what terms the connection is served; what runs
//! for every request is in `session.rs` and `io.rs`.

use kernel::{
    new_condvar, new_mutex, new_spinlock,
    prelude::*,
    sync::{
        atomic::{
            Acquire,
            Atomic,
            Relaxed,
            Release, //
        },
        Arc, //
    },
    time::{
        Delta,
        Instant,
        Monotonic, //
    },
};

use crate::{
    acl::Verdict,
    crypto::{self, Key},
    handoff::Handoff,
    handshake::{self, Ephemeral, Schedule},
    kthread::Thread,
    netlink::{self, event},
    proto::{
        self,
        negotiate_version,
        ChallengeBody,
        Header,
        HelloBody,
        HelloReplyBody,
        HolderBody,
        Kind,
        Name,
        Status,
        AUTH_LEN,
        HEADER_LEN,
        HELLO_LEN, //
    },
    security::{self, Opener, Role},
    socket::Socket,
    spares::Spares,
    trans::InFlight,
};

use super::{
    session::{session_main, AtomicStage, Body, End, Session, Stage},
    Inner, Peer, Writer, HANDSHAKE_MS, IDLE_TIMEOUT_MS, SEND_TIMEOUT_MS,
};

/// How long a refusal at accept (an address not on the allow-list, an
/// export too busy) may wait to be sent; it is 40 bytes on a new
/// connection, so it never has to.
const REFUSE_SEND_MS: u32 = 100;

/// Answers a connection just accepted (or handed over) with a HELLO_REPLY
/// refusal `status`, without reading further; the caller closes it.
pub(super) fn answer_at_accept(sock: &Socket, status: Status) {
    sock.set_timeouts(REFUSE_SEND_MS, 0);
    let _ = sock.send_all(&Header::hello_reply(status).encode(), false);
}

/// Queue depth granted to a local node that leaves the choice to us.
const DEFAULT_DEPTH: u16 = 128;

/// Largest queue depth granted. With the largest IO this bounds the data a
/// session can hold in memory to `MAX_DEPTH * max_io` bytes.
const MAX_DEPTH: u16 = 256;

/// Most queues (connections) granted to one local node's device.
const MAX_QUEUES: u16 = 16;

/// Most sessions past their handshake (connected local nodes) one export
/// serves at once.
const MAX_SESSIONS: usize = 64;

/// Most connections in their handshake at once: the unauthenticated ones.
/// A new connection beyond this cuts short the oldest that has sent nothing
/// (or else the oldest), so that idle connections from anyone who can reach
/// the port never keep a local node from reconnecting, and no handshake
/// takes a slot of an admitted session. A connection cut short holds its
/// thread until it notices; with twice this many threads pending, new
/// connections are answered BUSY, which bounds the threads a flood costs.
const MAX_HANDSHAKES: usize = 16;

impl Inner {
    /// What a local node that sent `hello` is granted, in `version`: read
    /// only if it asks for that, if the export is read-only, or if its
    /// address (`verdict`) or its key (`key_read_only`) allow only reads.
    fn grant(
        &self,
        hello: &HelloBody,
        version: u32,
        verdict: Verdict,
        key_read_only: bool,
    ) -> HelloReplyBody {
        HelloReplyBody {
            version,
            perms: if hello.read_only
                || self.read_only
                || verdict == Verdict::ReadOnly
                || key_read_only
            {
                proto::PERM_READ
            } else {
                proto::PERM_READ | proto::PERM_WRITE
            },
            features: self.features & hello.features,
            size: self.size(),
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
            export: self.name,
            proof: [0; AUTH_LEN],
        }
    }

    /// Counts and reports a refused client: a log line, an event.
    pub(super) fn refuse_client(&self, peer: Peer, why: &'static CStr) {
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
        netlink::notify_export(
            self.net,
            self.index,
            event::SESSION_REFUSED,
            peer.0,
            Some(why),
        );
    }

    /// Fences the older sessions of the local node `client_id` (identity
    /// `client`: a session of another identity is never fenced, and with a
    /// key of its own only its key's holder can claim an identity) that
    /// `me` (its HELLO: `queue`, `epoch`) supersedes: every session of a lower
    /// epoch, whatever its queue, and the other sessions of the same queue
    /// and epoch (see Documentation/protocol.md, "Reconnecting and
    /// fencing"). When this returns, none of their requests runs or will
    /// run on the device. Fails with [`NotFenced::Stale`] if a live session
    /// of the client has a higher epoch: `me` comes from a connection the
    /// local node has given up, and must not fence anything.
    fn fence(
        &self,
        me: &Session,
        client: &Name,
        client_id: u64,
        queue: u16,
        epoch: u32,
    ) -> Result<(), NotFenced> {
        // Room for every session, taken before the lock: the sessions to
        // fence are listed under it, and fenced (which waits for their IO)
        // only after it is let go of.
        let mut old = KVec::with_capacity(MAX_SESSIONS + 2 * MAX_HANDSHAKES, GFP_KERNEL)
            .map_err(|_| NotFenced::NoMemory)?;
        {
            let sessions = self.sessions.lock();
            let of_client = || {
                sessions.iter().map(|t| t.data()).filter(|s| {
                    !core::ptr::eq(&***s, me)
                        && s.client_id.load(Acquire) == client_id
                        && *s.client.lock() == *client
                        && !s.finished.load(Acquire)
                })
            };
            if of_client().any(|s| s.epoch.load(Acquire) > epoch) {
                return Err(NotFenced::Stale);
            }
            // Published under the lock: a HELLO of a higher epoch handled
            // after this point fences `me`, one of a lower epoch is stale.
            me.epoch.store(epoch, Release);
            me.queue_index.store(queue.into(), Release);
            *me.client.lock() = *client;
            me.client_id.store(client_id, Release);
            for s in of_client() {
                let e = s.epoch.load(Acquire);
                let same_queue = s.queue_index.load(Acquire) == u32::from(queue);
                if e < epoch || same_queue {
                    // Never full: it has room for every session.
                    let _ = old.push_within_capacity(s.clone());
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

    /// Gives the write access to the local node that sent `hello` on
    /// session `s`, unless another identity holds it: then fails with the
    /// holder. The holder's own devices (a reconnect, another queue, a
    /// device created again) get it again. The session is marked as
    /// writing under the same lock (see `Session::release_write`).
    fn claim_write(&self, s: &Session, hello: &HelloBody) -> Result<(), Writer> {
        let peer = s.peer;
        let mut writer = self.writer.lock();
        let claimed = match &mut *writer {
            Some(w) if w.client == hello.client => {
                w.peer = peer.0.or(w.peer);
                Ok(())
            }
            Some(w) => Err(*w),
            None => {
                *writer = Some(Writer {
                    client: hello.client,
                    peer: peer.0,
                });
                pr_info!(
                    "export{} {}: write access given to {} at {}\n",
                    self.index,
                    self.shown(),
                    hello.client,
                    peer
                );
                Ok(())
            }
        };
        if claimed.is_ok() {
            *s.writer.lock() = Some((hello.client, hello.client_id));
        }
        claimed
    }

    /// Ends the sessions that hold the write access as `writer` (see
    /// [`Export::release`]): when this returns, none of their requests runs
    /// or will run on the device.
    ///
    /// [`Export::release`]: super::Export::release
    pub(super) fn end_sessions_of(&self, writer: &Writer) {
        let Ok(mut ending) = KVec::with_capacity(MAX_SESSIONS + 2 * MAX_HANDSHAKES, GFP_KERNEL)
        else {
            // Without memory to list them, shut them all down: each then
            // ends on its own (its IO completing in the background).
            for t in self.sessions.lock().iter() {
                if t.data().writes_as(writer) {
                    t.data().sock.shutdown();
                }
            }
            return;
        };
        for t in self.sessions.lock().iter() {
            if t.data().writes_as(writer) {
                // Never full: it has room for every session.
                let _ = ending.push_within_capacity(t.data().clone());
            }
        }
        for s in ending.iter() {
            s.fence();
        }
    }

    /// Starts a session on an accepted connection, unless the export is
    /// full. Reaps the sessions that have ended.
    pub(super) fn add_session(
        self: &Arc<Self>,
        sock: Arc<Socket>,
        peer: Peer,
        accepted: Instant<Monotonic>,
        hello: [u8; HELLO_LEN],
    ) {
        let mut sessions = self.sessions.lock();
        // Checked under the lock `stop` takes the sessions with.
        if self.stopping.load(Acquire) {
            sock.shutdown();
            return;
        }
        sessions.retain(|s| !s.data().finished.load(Acquire));
        let stage = |s: &Thread<Arc<Session>>| s.data().stage.get();
        let admitted = sessions
            .iter()
            .filter(|s| stage(s) == Stage::Admitted)
            .count();
        // Threads of handshakes, those cut short and still ending included.
        let pending = sessions.len() - admitted;
        if admitted >= MAX_SESSIONS || pending >= 2 * MAX_HANDSHAKES {
            if self.may_log() {
                pr_warn!(
                    "export {}: busy, refusing {}: {} sessions, {} handshakes\n",
                    self.shown(),
                    peer,
                    admitted,
                    pending
                );
            }
            drop(sessions);
            // A local node tries again after its reconnect delay.
            answer_at_accept(&sock, Status::Busy);
            sock.shutdown();
            return;
        }
        let handshakes = || sessions.iter().filter(|s| s.data().stage.in_handshake());
        if handshakes().count() >= MAX_HANDSHAKES {
            // Cut short the oldest; its thread ends on its own.
            let victim = handshakes().max_by_key(|s| s.data().accepted.elapsed());
            if let Some(victim) = victim {
                let s = victim.data();
                if s.stage.advance(Stage::Heard, Stage::Cut) {
                    s.sock.shutdown();
                }
            }
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
                        tx <- new_mutex!(None, "Session::tx"),
                        inflight <- InFlight::new(),
                        held: Atomic::new(0),
                        memory_room <- new_condvar!("Session::memory_room"),
                        replies <- Handoff::new(),
                        finished: Atomic::new(false),
                        client_id: Atomic::new(0),
                        queue_index: Atomic::new(0),
                        epoch: Atomic::new(0),
                        refused: Atomic::new(0),
                        told: Atomic::new(u64::MAX),
                        stage: AtomicStage::new(),
                        client <- new_spinlock!(Name::EMPTY, "Session::client"),
                        writer <- new_spinlock!(None, "Session::writer"),
                        accepted,
                        hello,
                        spare_ios <- Spares::new(),
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

/// What the keyed part of a handshake leaves for the HELLO_REPLY and the
/// session keys: the CHALLENGE's bytes, the key schedule, and the client's
/// proof, which verified.
struct Authenticated {
    challenge: [u8; proto::CHALLENGE_LEN],
    schedule: Schedule,
    proof: [u8; AUTH_LEN],
}

/// Why a HELLO may not fence its client's older sessions (see
/// [`Inner::fence`]); it is answered BUSY and the local node tries again.
enum NotFenced {
    /// The HELLO is older than a live session of its client.
    Stale,
    /// No memory to list the sessions to fence.
    NoMemory,
}

impl Session {
    /// Checks the client of the HELLO its port read (allow-list, values,
    /// version, export identity, protection), runs the key exchange and
    /// proofs with a key, fences, and answers. The whole handshake must be
    /// done within `HANDSHAKE_MS` of the accept, however slowly the peer
    /// trickles it (a slow or half-open client only holds a handshake slot
    /// that long).
    pub(super) fn handshake(&self) -> Result<(HelloReplyBody, Opener), End> {
        let export = &self.export;
        let deadline = self.accepted + Delta::from_millis(HANDSHAKE_MS.into());
        let body = &self.hello;
        self.sock.set_timeouts(SEND_TIMEOUT_MS, 0);
        let verdict = export.allow.check(self.peer.0.as_ref());
        if verdict == Verdict::Refused {
            export.refuse_client(self.peer, c"address not on the allow-list");
            return self.refuse_hello(Status::NotAllowed);
        }
        let hello = match HelloBody::decode(body).and_then(|b| b.validate().map(|()| b)) {
            Ok(hello) => hello,
            Err(_) => return self.refuse_hello(Status::Invalid),
        };
        let Some(version) = negotiate_version(hello.min_version, hello.max_version) else {
            return self.refuse_hello(Status::Version);
        };
        if !hello.export.is_empty() && hello.export != export.name {
            export.refuse_client(self.peer, c"the client asked for another export identity");
            return self.refuse_hello(Status::UnknownExport);
        }
        let cfg = &export.security;
        if !cfg.security.matches(&hello.security) {
            export.refuse_client(
                self.peer,
                c"protection mode, algorithm or key use differs from the export's",
            );
            return self.refuse_hello(Status::Mismatch);
        }
        // A client with a key of its own proves that one; any other the
        // export's, if it has one.
        let (key, key_read_only) = match export.clients.get(&hello.client) {
            Some(c) => (Some(&c.key), c.read_only),
            None => (cfg.key.as_ref(), false),
        };
        let keyed = match key {
            Some(key) => Some(self.authenticate(key, &hello, body, deadline)?),
            None if cfg.security.auth => {
                export.refuse_client(self.peer, c"no key for this client identity");
                return self.refuse_hello(Status::AuthFailed);
            }
            None => None,
        };
        self.sock.set_timeouts(SEND_TIMEOUT_MS, IDLE_TIMEOUT_MS);
        let mut grant = export.grant(&hello, version, verdict, key_read_only);
        if grant.perms & proto::PERM_WRITE != 0 && !export.shared {
            if let Err(holder) = export.claim_write(self, &hello) {
                return self.refuse_in_use(&hello, &holder);
            }
        }
        let keys = match keyed {
            Some(a) => {
                let th2 =
                    handshake::transcript(&[body, &a.challenge, &a.proof, &grant.proven_bytes()]);
                grant.proof = a.schedule.proof_export(&th2);
                Some(a.schedule.session_keys(&th2).map_err(End::Net)?)
            }
            None => None,
        };
        let (sealer, opener) =
            security::session(&cfg.security, Role::Export, keys).map_err(End::Net)?;
        if hello.client_id != 0
            && export
                .fence(
                    self,
                    &hello.client,
                    hello.client_id,
                    hello.queue_index,
                    hello.epoch,
                )
                .is_err()
        {
            return self.refuse_hello(Status::Busy);
        }
        self.send(
            &Header::hello_reply(Status::Ok),
            Body::Bytes(&grant.encode()),
            false,
        )?;
        // From the first message after the HELLO_REPLY on, everything is
        // protected.
        *self.tx.lock() = Some(sealer);
        Ok((grant, opener))
    }

    /// The keyed part of the handshake, after the HELLO (`body`) passed its
    /// checks: the key exchange (a key share of small order is refused
    /// before any CHALLENGE), the CHALLENGE, and the client's AUTH, which
    /// must arrive by `deadline` and prove `key` for this transcript.
    fn authenticate(
        &self,
        key: &Key,
        hello: &HelloBody,
        body: &[u8; HELLO_LEN],
        deadline: Instant<Monotonic>,
    ) -> Result<Authenticated, End> {
        let export = &self.export;
        let ephemeral = Ephemeral::new().map_err(End::Net)?;
        let challenge = ChallengeBody {
            export: export.name,
            key_share: *ephemeral.public(),
        }
        .encode();
        let Ok(dh) = ephemeral.agree(&hello.key_share) else {
            export.refuse_client(self.peer, c"invalid key share");
            return self.refuse_hello(Status::Invalid);
        };
        self.send(&Header::challenge(), Body::Bytes(&challenge), false)?;
        let h = self.recv_header(deadline)?;
        if h.kind != Kind::Auth {
            return Err(End::Proto("expected AUTH after CHALLENGE"));
        }
        let mut proof = [0u8; AUTH_LEN];
        self.recv_by(&mut proof, deadline)?;
        self.sock.set_timeouts(SEND_TIMEOUT_MS, 0);
        let schedule = Schedule::new(key, &hello.client, &export.name, &dh).map_err(End::Net)?;
        let want = schedule.proof_local(&handshake::transcript(&[body, &challenge]));
        if !crypto::ct_eq(&proof, &want) {
            export.refuse_client(self.peer, c"authentication failed: the keys differ");
            return self.refuse_hello(Status::AuthFailed);
        }
        Ok(Authenticated {
            challenge,
            schedule,
            proof,
        })
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

    /// Refuses write access to the local node of `hello`: another, `holder`,
    /// has it. The answer names the holder.
    fn refuse_in_use<T>(&self, hello: &HelloBody, holder: &Writer) -> Result<T, End> {
        let export = &self.export;
        export.refused.add(1, Relaxed);
        if export.may_log() {
            pr_warn!(
                "export{} {}: refused write access to {} at {}: held by {} at {}\n",
                export.index,
                export.shown(),
                hello.client,
                self.peer,
                holder.client,
                Peer(holder.peer)
            );
        }
        netlink::notify_export(
            export.net,
            export.index,
            event::SESSION_REFUSED,
            self.peer.0,
            Some(c"another local node holds the write access"),
        );
        let (addr_len, port, addr) = match holder.peer {
            Some(a) => {
                let (bytes, port) = a.parts();
                let mut addr = [0u8; 16];
                if let Some(d) = addr.get_mut(..bytes.len()) {
                    d.copy_from_slice(bytes);
                }
                (bytes.len() as u8, port, addr)
            }
            None => (0, 0, [0; 16]),
        };
        let body = HolderBody {
            client: holder.client,
            addr_len,
            port,
            addr,
        };
        self.send(
            &Header::hello_reply(Status::InUse),
            Body::Bytes(&body.encode()),
            false,
        )?;
        Err(End::Refused(Status::InUse))
    }

    /// Answers a HELLO with a refusal; the session then ends.
    fn refuse_hello<T>(&self, status: Status) -> Result<T, End> {
        self.send(&Header::hello_reply(status), Body::None, false)?;
        Err(End::Refused(status))
    }
}
