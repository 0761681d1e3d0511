// SPDX-License-Identifier: GPL-2.0

//! Connections to the export node: the handshake (HELLO, the key exchange
//! and proofs when a key is set, the grant), and the receiver thread's
//! reconnect loop, which accepts only the export identity and the grant the
//! device was created with.

use kernel::{
    prelude::*,
    sync::{atomic::Relaxed, Arc},
    time::{msecs_to_jiffies, Delta, Instant, Monotonic},
};

use crate::{
    crypto::{self, Key},
    error::{code, Refusal},
    handshake::{self, Ephemeral, Schedule},
    kthread,
    netlink::{self, event},
    netns::HomeNet,
    proto::{
        self, ChallengeBody, Header, HelloBody, HelloReplyBody, HolderBody, Kind, Name, Status,
    },
    registry::Handshake,
    security::{self, Opener, Role, SecurityConfig, MAX_TRAILER},
    socket::{self, Peer, SockAddr, Socket},
    trans::{self, ConnState},
};

use super::{Conn, Ctx, Settings};

/// The handshake failed: the connection did.
fn lost(e: Error) -> Refusal {
    Refusal::new(
        e,
        c"connection to the export node failed during the handshake",
    )
}

/// The export broke the protocol in the handshake.
fn bad<E>(_: E) -> Refusal {
    Refusal::new(
        code::eproto(),
        c"the export node answered with an invalid handshake",
    )
}

/// The export is not the one asked for.
fn wrong_export() -> Refusal {
    Refusal::new(
        code::eproto(),
        c"the export node is not the export asked for: its identity differs",
    )
}

/// What a HELLO_REPLY with `status` means for the user; `None` for OK.
/// Refusals are not authenticated (anyone on the path can forge one), so
/// they say what the export answered, not what is true.
fn refusal(status: Status) -> Option<Refusal> {
    let (e, msg) = match status {
        Status::Ok => return None,
        Status::Version => (
            code::eproto(),
            c"the export answered: no protocol version in common",
        ),
        Status::Permission => (EACCES, c"the export answered: this client is refused"),
        Status::NotAllowed => (
            EACCES,
            c"the export answered: this address is not on its allow-list",
        ),
        Status::UnknownExport => (ENOENT, c"the export answered: no export of that name here"),
        Status::Mismatch => (
            EINVAL,
            c"the export answered: mode, algorithm or key use differs from the export's",
        ),
        Status::AuthFailed => (
            EACCES,
            c"the export answered: authentication failed, the keys differ",
        ),
        Status::Busy => (EBUSY, c"the export answered: busy"),
        _ => (EIO, c"the export node refused the connection"),
    };
    Some(Refusal::new(e, msg))
}

/// The refusal of a HELLO_REPLY saying another local node, `holder`, holds
/// the export's write access (as the export says: unauthenticated).
fn in_use(holder: &HolderBody) -> Refusal {
    let addr = holder
        .addr
        .get(..usize::from(holder.addr_len))
        .and_then(|a| SockAddr::from_bytes(a, holder.port).ok());
    let at = Peer(addr);
    let name = &holder.client;
    pr_warn!(
        "the export answered: its write access is held by {} at {}; ask for read-only access, or release the export's write access on the export node\n",
        name,
        at
    );
    Refusal::formatted(
        EBUSY,
        c"the export answered: another local node writes to it",
        fmt!("the export is in use read-write by {} at {}", name, at),
    )
}

/// What the keyed part of a handshake leaves for checking the HELLO_REPLY
/// and making the session keys: the CHALLENGE's bytes, the export's
/// identity it named, the key schedule, and our proof.
struct Exchange {
    challenge: [u8; proto::CHALLENGE_LEN],
    export: Name,
    schedule: Schedule,
    proof: [u8; proto::AUTH_LEN],
}

/// Answers a CHALLENGE (its header read; its body next on `sock`) for the
/// HELLO `hello` (wire form `body`) with our key and key pair: checks the
/// export's identity and key share, sends AUTH.
fn answer_challenge(
    sock: &Socket,
    deadline: Instant<Monotonic>,
    key: &Key,
    ephemeral: Ephemeral,
    hello: &HelloBody,
    body: &[u8; proto::HELLO_LEN],
) -> Result<Exchange, Refusal> {
    let mut cb = [0u8; proto::CHALLENGE_LEN];
    sock.recv_exact_by(&mut cb, deadline).map_err(lost)?;
    let challenge = ChallengeBody::decode(&cb).map_err(bad)?;
    if !hello.export.is_empty() && challenge.export != hello.export {
        return Err(wrong_export());
    }
    let dh = ephemeral
        .agree(&challenge.key_share)
        .map_err(|_| Refusal::new(code::eproto(), c"the export node sent an invalid key share"))?;
    let schedule = Schedule::new(key, &hello.client, &challenge.export, &dh)?;
    let proof = schedule.proof_local(&handshake::transcript(&[body, &cb]));
    sock.send_all(&Header::auth().encode(), true)
        .map_err(lost)?;
    sock.send_all(&proof, false).map_err(lost)?;
    Ok(Exchange {
        challenge: cb,
        export: challenge.export,
        schedule,
        proof,
    })
}

/// Opens a connection and runs the handshake (with the key exchange and
/// proofs when a key is configured); the whole of it, connect included, is
/// bounded by the request timeout of `settings`, however slowly the export
/// trickles its answers; sends on the connection then by its send timeout.
/// With `creating`, the index of a device being created, the socket is
/// tracked meanwhile, so that unloading the module can cut the handshake
/// short (reconnects, in the device's threads, are cut short by
/// `kthread_stop`).
pub(super) fn handshake(
    net: HomeNet,
    addr: SockAddr,
    hello: &HelloBody,
    sec: &SecurityConfig,
    settings: &Settings,
    creating: Option<u32>,
) -> Result<Conn, Refusal> {
    let timeout_ms = settings.req_timeout_ms.load(Relaxed);
    let deadline = Instant::<Monotonic>::now() + Delta::from_millis(timeout_ms.into());
    let cannot = |e| Refusal::new(e, c"cannot connect to the export node");
    let sock = Arc::new(
        Socket::client(net, addr, true, timeout_ms).map_err(cannot)?,
        GFP_KERNEL,
    )?;
    let _tracked = creating
        .map(|index| Handshake::track(index, &sock))
        .transpose()
        .map_err(|e| match e {
            ENODEV => Refusal::new(e, netlink::UNLOADING),
            e => Refusal::from(e),
        })?;
    sock.connect(addr).map_err(cannot)?;
    // Every connection gets a fresh key pair, hence fresh session keys.
    let ephemeral = sec.key.as_ref().map(|_| Ephemeral::new()).transpose()?;
    let hello = HelloBody {
        key_share: ephemeral
            .as_ref()
            .map_or([0; proto::KEY_SHARE_LEN], |e| *e.public()),
        ..*hello
    };
    let body = hello.encode();
    let recv_header = || -> Result<Header, Refusal> {
        let mut hb = [0u8; proto::HEADER_LEN];
        sock.recv_exact_by(&mut hb, deadline).map_err(lost)?;
        Header::decode(&hb).map_err(bad)
    };
    if let Err(e) = sock
        .send_all(&Header::hello().encode(), true)
        .and_then(|()| sock.send_all(&body, false))
    {
        // An export that refuses at accept (an address not on its
        // allow-list) answers before reading our HELLO and closes with a
        // reset, which can fail this send. Its answer then waits in our
        // receive queue and says more than the reset does.
        let answer = if sock.has_data() {
            recv_header().ok()
        } else {
            None
        };
        return Err(answer
            .filter(|h| h.kind == Kind::HelloReply)
            .and_then(|h| refusal(h.status))
            .unwrap_or_else(|| lost(e)));
    }
    let mut h = recv_header()?;
    let mut exchange = None;
    if let (Kind::Challenge, Some(key), Some(ephemeral)) = (h.kind, &sec.key, ephemeral) {
        exchange = Some(answer_challenge(
            &sock, deadline, key, ephemeral, &hello, &body,
        )?);
        h = recv_header()?;
    }
    if h.kind != Kind::HelloReply {
        return Err(bad(proto::ProtoError::BadKind));
    }
    if h.status == Status::InUse {
        let mut b = [0u8; proto::HOLDER_LEN];
        sock.recv_exact_by(&mut b, deadline).map_err(lost)?;
        return Err(in_use(&HolderBody::decode(&b).map_err(bad)?));
    }
    if let Some(refused) = refusal(h.status) {
        return Err(refused);
    }
    let mut reply = [0u8; proto::HELLO_REPLY_LEN];
    sock.recv_exact_by(&mut reply, deadline).map_err(lost)?;
    let granted = HelloReplyBody::decode(&reply).map_err(bad)?;
    let keys = match (&sec.key, exchange) {
        (None, _) if granted.proof != [0; proto::AUTH_LEN] => {
            // Without a key the proof field is reserved.
            return Err(bad(proto::ProtoError::Reserved));
        }
        (None, _) => None,
        (Some(_), None) => {
            // An OK without the key exchange: the export has no key, or
            // someone answers in its place.
            return Err(Refusal::new(
                EACCES,
                c"the export node did not authenticate: it has no key",
            ));
        }
        (Some(_), Some(x)) => {
            if granted.export != x.export {
                return Err(wrong_export());
            }
            let th2 =
                handshake::transcript(&[&body, &x.challenge, &x.proof, &granted.proven_bytes()]);
            if !crypto::ct_eq(&granted.proof, &x.schedule.proof_export(&th2)) {
                return Err(Refusal::new(
                    EACCES,
                    c"the export node failed authentication: its key differs",
                ));
            }
            Some(x.schedule.session_keys(&th2)?)
        }
    };
    granted.validate(&hello).map_err(|e| match e {
        proto::ProtoError::WrongExport => wrong_export(),
        e => bad(e),
    })?;
    let (sealer, opener) =
        security::session(&sec.security, Role::Local, keys).map_err(Refusal::from)?;
    // Replies may take as long as the export's IO; only sends are bounded
    // here. Silence is caught by the request timeout and pings.
    sock.set_timeouts(settings.send_timeout_ms(), 0);
    Ok(Conn {
        sock,
        granted,
        sealer,
        opener,
    })
}

impl Conn {
    /// Tells the export the device this connection was made for will not
    /// be (RELEASE; see `Shared::release_export`). Best effort.
    pub(super) fn release(&mut self) {
        let hb = Header::release().encode();
        let mut trailer = [0u8; MAX_TRAILER];
        if let Ok(n) = self.sealer.seal_header(&hb, &mut trailer) {
            let _ = trans::send_frame(
                &self.sock,
                &hb,
                None,
                trailer.get(..n).unwrap_or(&[]),
                false,
            );
        }
    }
}

/// A random id for this device's connections.
pub(super) fn random_client_id() -> u64 {
    let mut id = [0u8; 8];
    crypto::random_bytes(&mut id);
    u64::from_ne_bytes(id) | 1
}

/// Whether two grants describe the same device (what reconnects and the
/// queues of one device must agree on): everything that shaped the disk's
/// limits and the protocol spoken, but the size, which may grow (the
/// caller compares it).
pub(super) fn same_grant(a: &HelloReplyBody, b: &HelloReplyBody) -> bool {
    a.version == b.version
        && a.features == b.features
        && a.logical_block_size == b.logical_block_size
        && a.physical_block_size == b.physical_block_size
        && a.perms == b.perms
        && a.max_io_bytes == b.max_io_bytes
        && a.queue_depth == b.queue_depth
        && a.queues == b.queues
}

/// Reconnects until it succeeds (returns the new socket) or the device is
/// being deleted (returns `None`).
pub(super) fn reconnect(ctx: &Ctx) -> Option<(Arc<Socket>, Opener)> {
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
        let hello = HelloBody {
            queue_index: shared.qid as u16,
            epoch: shared.dev.epoch.get(),
            ..shared.dev.hello
        };
        // The device may be what reclaim waits for: set the connection up
        // (socket, crypto transforms and their reserves) without reclaim.
        let Ok(conn) = socket::noreclaim(|| {
            handshake(
                shared.dev.net,
                shared.dev.addr,
                &hello,
                &shared.dev.security,
                &shared.dev.settings,
                None,
            )
        }) else {
            continue;
        };
        let grant = conn.granted;
        let was = &shared.dev.granted;
        // A grown export is the same device, larger; a smaller one is not:
        // what the device holds beyond its end would be lost.
        let size = shared.dev.size();
        if !same_grant(&grant, was) || grant.size < size {
            if !told_changed {
                pr_err!(
                    "dst{}: the export at {} changed (size {} -> {}, perms {} -> {}): refusing it\n",
                    shared.dev.index,
                    shared.dev.addr,
                    size,
                    grant.size,
                    was.perms,
                    grant.perms
                );
                told_changed = true;
            }
            continue;
        }
        shared.dev.grow(grant.size);
        let sock = conn.sock;
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
                dev.announce(event::RECONNECTED);
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
