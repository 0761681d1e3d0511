// SPDX-License-Identifier: GPL-2.0

//! `dstpeer server ADDR:PORT`: an export node in userspace, serving a RAM
//! buffer to the kernel's local node, well-behaved or hostile.
//!
//! The buffer starts as the pattern of `--seed` (see `dstpeer pattern`), so a
//! test can check what the device reads. With `--case NAME` the export
//! misbehaves in one way (see [`CASES`]):
//!
//! - handshake cases lie in, or break, every handshake;
//! - IO cases misbehave on the first `--times` READs (default 1) that cover
//!   the `--trigger` offset (default 24 MiB), then the export behaves, so the
//!   local node can reconnect and resend: it must never complete the request
//!   with wrong data. A list of IO cases acts one case per MiB from the
//!   trigger offset on, each once. The cross-queue cases answer on the
//!   connection of another queue of the same local node (it has one per
//!   queue: `--queues 2` or more), where the reply must be refused;
//! - probe cases (protected modes) send the local node a bad frame (tampered,
//!   replayed, an old seq, reordered, one after a gap, one still sealed with
//!   the key a KEY_UPDATE just replaced) after a good PING, which it must
//!   refuse (it accepts seqs in strict order only), on the first `--times`
//!   connections (a list: one case per connection), and log how the local
//!   node reacted: `verdict: closed` (correct) or `verdict: ACCEPTED` /
//!   `verdict: IGNORED` (wrong);
//! - write cases act on the first `--times` WRITEs covering the trigger
//!   offset: `hold-write` keeps such a WRITE, neither executed nor answered,
//!   until its connection is fenced, then executes it: an old request that
//!   completes late at the export. A local node that moved on must not have
//!   sent a newer WRITE to the same blocks before that (see below).
//!
//! With `--rekey-after BYTES` (or `--rekey-interval SECS`; hmac and aead)
//! the export replaces its sending key on its own: a KEY_UPDATE goes out
//! before the next message once its key has sealed that much, as the
//! module's export does at its (far larger) limits. KEY_UPDATEs from the
//! local node are always taken (in none and crc32c they end the
//! connection).
//!
//! Each connection is served by its own thread, in order: requests are
//! executed and answered one at a time. Sends go through a lock per
//! connection, so that another connection's thread (the cross-queue cases)
//! can send on it too without splitting a message.
//!
//! The server fences as Documentation/protocol.md ("Reconnecting and
//! fencing") says: a HELLO with a non-zero `client_id` is refused with BUSY
//! if a live connection of that client has a higher epoch; otherwise every
//! other connection of the client with a lower epoch, and those of the same
//! queue and epoch, are ended, and the HELLO_REPLY goes out only once the
//! request they were executing (at most one each) has finished.

use std::io::{self, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{
    AtomicBool, AtomicU32,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{fill_pattern, parse_size, unexpected, usage, Res};
use crate::proto::{
    negotiate_version, validate_request, ChallengeBody, Header, HelloBody, HelloReplyBody, Kind,
    Limits, Name, Op, Status, AUTH_LEN, CHALLENGE_LEN, FEATURES_ALL, FEATURE_DISCARD,
    FEATURE_FLUSH, FEATURE_FUA, FEATURE_RESIZE, FEATURE_WRITE_ZEROES, HEADER_LEN, HELLO_LEN,
    HELLO_REPLY_LEN, KEY_SHARE_LEN, MAX_IO_BYTES_LIMIT, NAME_LEN, PERM_READ, PERM_WRITE,
    REPLY_PROVEN_LEN, VERSION,
};
use crate::sec::{self, Ephemeral, SecConfig, SessionKeys, HASH_LEN};
use crate::wire::{self, RecvError, Wire};

pub(crate) const USAGE: &str =
    "  server ADDR:PORT [OPTIONS]       an export in userspace for the kernel's local node
    --size SIZE (64M)  --block N (512)  --physical N (4096)  --seed S (1)
    --read-only  --max-io BYTES (1M)  --depth N (128)
    --case NAME[,NAME...]
                       misbehave (--case list prints the cases: name, phase,
                       what the security settings must have, what it does);
                       io and probe cases may be listed: io case i acts on the
                       first READ covering OFF + i MiB, probe case i on the
                       i-th connection
    --times N          a single io or probe case: misbehave N times (default 1;
                       0 = always)
    --trigger OFF      io cases: the first READs covering OFF (default 24M);
                       write cases: the first WRITEs covering OFF
";

/// When a case acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// In every handshake.
    Handshake,
    /// On READs covering the trigger offset.
    Io,
    /// Right after the handshake: a good PING, then a bad frame.
    Probe,
    /// On reconnection: the first connection behaves, later ones differ.
    Reconnect,
    /// On WRITEs covering the trigger offset.
    Write,
}

/// What a case needs of the security settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Needs {
    /// Any settings.
    Any,
    /// A key (authenticated handshake).
    Key,
    /// No key.
    NoKey,
    /// A trailer: crc32c, hmac or aead.
    Trailer,
    /// A trailer with a sequence number: hmac or aead.
    Seq,
}

impl Needs {
    pub(crate) fn met(self, sec: &SecConfig) -> bool {
        let t = sec.protection.trailer_len(32) > 0;
        match self {
            Needs::Any => true,
            Needs::Key => sec.auth(),
            Needs::NoKey => !sec.auth(),
            Needs::Trailer => t,
            Needs::Seq => sec.protection.needs_key(),
        }
    }

    /// A one-word name, for `--case list`.
    fn code(self) -> &'static str {
        match self {
            Needs::Any => "any",
            Needs::Key => "key",
            Needs::NoKey => "no-key",
            Needs::Trailer => "trailer",
            Needs::Seq => "seq",
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Needs::Any => "any",
            Needs::Key => "a key",
            Needs::NoKey => "no key",
            Needs::Trailer => "crc32c, hmac or aead",
            Needs::Seq => "hmac or aead",
        }
    }
}

/// The hostile cases: name, phase, what it needs, what it does.
#[rustfmt::skip]
const CASES: &[(&str, Phase, Needs, &str)] = &[
    ("size-unaligned", Phase::Handshake, Needs::Any, "size not a multiple of the logical block"),
    ("size-huge", Phase::Handshake, Needs::Any, "size 2^63 (above the limit)"),
    ("block-1000", Phase::Handshake, Needs::Any, "logical block 1000 (not a power of two)"),
    ("block-256", Phase::Handshake, Needs::Any, "logical block 256 (too small)"),
    ("block-8192", Phase::Handshake, Needs::Any, "logical block 8192 (too large)"),
    ("physical-small", Phase::Handshake, Needs::Any, "physical block below the logical one"),
    ("physical-huge", Phase::Handshake, Needs::Any, "physical block 128 KiB"),
    ("max-io-over", Phase::Handshake, Needs::Any, "max IO above the one asked for"),
    ("max-io-unaligned", Phase::Handshake, Needs::Any, "max IO not a multiple of 4096"),
    ("max-io-zero", Phase::Handshake, Needs::Any, "max IO 0"),
    ("depth-over", Phase::Handshake, Needs::Any, "queue depth above the one asked for"),
    ("depth-zero", Phase::Handshake, Needs::Any, "queue depth 0"),
    ("queues-over", Phase::Handshake, Needs::Any, "more queues than asked for"),
    ("queues-zero", Phase::Handshake, Needs::Any, "0 queues"),
    ("features-extra", Phase::Handshake, Needs::Any, "a feature that was not asked for"),
    ("perms-no-read", Phase::Handshake, Needs::Any, "permissions without READ"),
    ("perms-unknown", Phase::Handshake, Needs::Any, "an unknown permission bit"),
    ("version-above", Phase::Handshake, Needs::Any, "version 3, outside the offered range"),
    ("version-1", Phase::Handshake, Needs::Any, "version 1, no longer spoken"),
    ("version-0", Phase::Handshake, Needs::Any, "version 0"),
    ("reserved", Phase::Handshake, Needs::Any, "reserved HELLO_REPLY bytes not zero"),
    ("proof-nonzero", Phase::Handshake, Needs::NoKey, "a proof without a key"),
    ("proof-bad", Phase::Handshake, Needs::Key, "a wrong proof_export"),
    ("proof-zero", Phase::Handshake, Needs::Key, "a zero proof_export"),
    ("proof-wrong-key", Phase::Handshake, Needs::Key, "a proof made with another key"),
    ("challenge-unasked", Phase::Handshake, Needs::NoKey, "a CHALLENGE to a local node without a key"),
    ("challenge-twice", Phase::Handshake, Needs::Key, "two CHALLENGEs"),
    ("no-challenge", Phase::Handshake, Needs::Key, "HELLO_REPLY OK without a CHALLENGE"),
    ("challenge-other-export", Phase::Handshake, Needs::Key, "CHALLENGE and HELLO_REPLY (with good proofs) name another export than the HELLO asked for (honest if it asked for none)"),
    ("challenge-zero-share", Phase::Handshake, Needs::Key, "CHALLENGE with an all-zero key share"),
    ("challenge-small-order", Phase::Handshake, Needs::Key, "CHALLENGE with a key share of small order (order 8)"),
    ("challenge-empty-name", Phase::Handshake, Needs::Key, "CHALLENGE with an empty export name"),
    ("challenge-name-junk", Phase::Handshake, Needs::Key, "CHALLENGE whose name field lacks its terminating NUL"),
    ("challenge-old-size", Phase::Handshake, Needs::Key, "CHALLENGE of 32 bytes (version 1's nonce)"),
    ("reply-other-export", Phase::Handshake, Needs::Any, "HELLO_REPLY naming another export than the CHALLENGE (proof valid over it); without a key: than the HELLO asked for (honest if it asked for none)"),
    ("reply-empty-name", Phase::Handshake, Needs::Any, "HELLO_REPLY with an empty export name (proof valid over it)"),
    ("status-invalid", Phase::Handshake, Needs::Any, "refusal INVALID"),
    ("status-version", Phase::Handshake, Needs::Any, "refusal VERSION"),
    ("status-busy", Phase::Handshake, Needs::Any, "refusal BUSY"),
    ("status-permission", Phase::Handshake, Needs::Any, "refusal PERMISSION"),
    ("status-mismatch", Phase::Handshake, Needs::Any, "refusal MISMATCH"),
    ("status-auth-failed", Phase::Handshake, Needs::Any, "refusal AUTH_FAILED"),
    ("status-not-allowed", Phase::Handshake, Needs::Any, "refusal NOT_ALLOWED"),
    ("status-io-error", Phase::Handshake, Needs::Any, "HELLO_REPLY with status IO_ERROR"),
    ("status-undefined", Phase::Handshake, Needs::Any, "HELLO_REPLY with status 77"),
    ("reply-kind", Phase::Handshake, Needs::Any, "an IO_REPLY instead of HELLO_REPLY"),
    ("reply-magic", Phase::Handshake, Needs::Any, "HELLO_REPLY with a bad magic"),
    ("reply-old-size", Phase::Handshake, Needs::Any, "HELLO_REPLY OK of 80 bytes (version 1's)"),
    ("reply-truncated", Phase::Handshake, Needs::Any, "half a HELLO_REPLY, then close"),
    ("reply-none", Phase::Handshake, Needs::Any, "no HELLO_REPLY; the connection stays open"),
    ("reply-close", Phase::Handshake, Needs::Any, "close instead of answering"),
    ("reply-twice", Phase::Handshake, Needs::Any, "HELLO_REPLY OK twice (--times connections)"),
    ("io-wrong-id", Phase::Io, Needs::Any, "reply with the id of no request (same tag)"),
    ("io-other-id", Phase::Io, Needs::Any, "reply with the id + 1"),
    ("io-wrong-op", Phase::Io, Needs::Any, "reply with op WRITE to a READ"),
    ("io-wrong-offset", Phase::Io, Needs::Any, "reply with another offset"),
    ("io-wrong-length", Phase::Io, Needs::Any, "reply and data 512 bytes shorter"),
    ("io-wrong-flags", Phase::Io, Needs::Any, "reply with FUA set"),
    ("io-oversized", Phase::Io, Needs::Any, "READ reply carrying 4 KiB more than asked"),
    ("io-short", Phase::Io, Needs::Any, "READ reply carrying 512 bytes less (length kept)"),
    ("io-payload-limit", Phase::Io, Needs::Any, "READ reply claiming a payload over 4 MiB"),
    ("io-no-data", Phase::Io, Needs::Any, "READ reply OK without data"),
    ("io-data-on-error", Phase::Io, Needs::Any, "IO_ERROR reply carrying data"),
    ("io-unsolicited", Phase::Io, Needs::Any, "a reply for a request never sent, first"),
    ("io-duplicate", Phase::Io, Needs::Any, "the right reply, then the same again"),
    ("io-status-error", Phase::Io, Needs::Any, "IO_ERROR (the READ must fail, not return data)"),
    ("io-status-busy", Phase::Io, Needs::Any, "BUSY"),
    ("io-status-auth", Phase::Io, Needs::Any, "AUTH_FAILED, a handshake status, on an IO_REPLY (a protocol violation)"),
    ("io-status-undefined", Phase::Io, Needs::Any, "status 77"),
    ("io-kind-hello", Phase::Io, Needs::Any, "a HELLO instead of the reply"),
    ("io-kind-reply", Phase::Io, Needs::Any, "a HELLO_REPLY instead of the reply"),
    ("io-kind-challenge", Phase::Io, Needs::Any, "a CHALLENGE instead of the reply"),
    ("io-kind-io", Phase::Io, Needs::Any, "an IO request instead of the reply"),
    ("io-magic", Phase::Io, Needs::Any, "a header with a bad magic"),
    ("io-reserved", Phase::Io, Needs::Any, "reply with reserved bytes set"),
    ("io-no-reply", Phase::Io, Needs::Any, "no reply; the connection stays open (request timeout)"),
    ("io-close", Phase::Io, Needs::Any, "close instead of replying"),
    ("io-close-mid-reply", Phase::Io, Needs::Any, "header and half the data, then close"),
    ("io-tamper-data", Phase::Io, Needs::Trailer, "a bit flipped in the READ data after sealing"),
    ("io-tamper-header", Phase::Io, Needs::Trailer, "the sealed READ reply turned into IO_ERROR without data, trailer kept"),
    ("io-tamper-trailer", Phase::Io, Needs::Trailer, "a bit flipped in the trailer"),
    ("io-no-trailer", Phase::Io, Needs::Trailer, "the reply without its trailer"),
    ("io-replay", Phase::Io, Needs::Seq, "a PONG, then the same sealed PONG again, then the reply"),
    ("io-replay-reply", Phase::Io, Needs::Seq, "the previous sealed frame again instead of the reply"),
    ("io-seq-reuse", Phase::Io, Needs::Seq, "the right reply sealed with an already used seq"),
    ("io-seq-gap", Phase::Io, Needs::Seq, "the right reply sealed with the seq after the next (one before it never sent)"),
    ("io-cross-queue", Phase::Io, Needs::NoKey, "the reply's header on another queue's connection; 0.5 s later the right reply on the READ's own; 1.5 s later the data, 0xa5 bytes, on the other (needs 2 queues)"),
    ("io-both-queues", Phase::Io, Needs::NoKey, "the right reply on the READ's connection and at once on another queue's (needs 2 queues)"),
    ("io-resize-unaligned", Phase::Io, Needs::Any, "a RESIZE to a size not a multiple of the logical block, then the right reply"),
    ("io-resize-zero", Phase::Io, Needs::Any, "a RESIZE to size 0, then the right reply"),
    ("io-resize-huge", Phase::Io, Needs::Any, "a RESIZE to 2^63 (above the limit), then the right reply"),
    ("io-key-update-keyless", Phase::Io, Needs::NoKey, "a KEY_UPDATE (a protocol violation in none and crc32c, which have no keys), then the right reply"),
    ("probe-tamper", Phase::Probe, Needs::Trailer, "a PING with a flipped trailer bit"),
    ("probe-replay", Phase::Probe, Needs::Seq, "the good PING's bytes again"),
    ("probe-old-seq", Phase::Probe, Needs::Seq, "1100 PINGs, then one sealed with seq 5 (long used)"),
    ("probe-reorder", Phase::Probe, Needs::Seq, "two PINGs sealed with the next two seqs, the second sent first"),
    ("probe-gap", Phase::Probe, Needs::Seq, "a PING sealed with the seq after the next (one before it never sent)"),
    ("probe-clear", Phase::Probe, Needs::Trailer, "a PING without its trailer"),
    ("probe-key-update-old-key", Phase::Probe, Needs::Seq, "a good KEY_UPDATE, then a PING still sealed with the old key, at its next seq"),
    ("probe-key-update-old-key-zero", Phase::Probe, Needs::Seq, "a good KEY_UPDATE, then a PING still sealed with the old key, at seq 0 (the one the new key starts with)"),
    ("reconnect-changed", Phase::Reconnect, Needs::Any, "the first connection closes on the trigger READ; later ones grant another size"),
    ("hold-write", Phase::Write, Needs::Any, "the WRITE covering the trigger offset is held, neither executed nor answered, until its connection is fenced (at most 60 s), then executed and answered: an old request completing late"),
];

/// Handshake cases that act only `--times` times (default once), so that
/// the local node's next connection works.
const ONCE: &[&str] = &["reply-twice"];

/// The case called `name`.
fn find_case(name: &str) -> Option<(&'static str, Phase, Needs, &'static str)> {
    CASES.iter().copied().find(|c| c.0 == name)
}

/// Every case, one per line: name, phase, what it needs (any, key, no-key,
/// trailer, seq) and what it does, separated by tabs (for scripts).
pub(crate) fn case_list() -> String {
    let mut out = String::new();
    for (name, phase, needs, what) in CASES {
        out.push_str(&format!(
            "{name}\t{}\t{}\t{what}\n",
            format!("{phase:?}").to_lowercase(),
            needs.code()
        ));
    }
    out
}

/// The server's configuration.
struct Opts {
    size: u64,
    block: u32,
    physical: u32,
    read_only: bool,
    max_io: u32,
    depth: u16,
    /// The cases, all of one phase; empty: well-behaved.
    cases: Vec<&'static str>,
    phase: Option<Phase>,
    times: u32,
    trigger: u64,
}

/// The served buffer. It holds the pattern of `seed`, written into each
/// 1 MiB chunk when it is first touched (filling 64 MiB up front takes
/// seconds in an emulated guest).
struct Disk {
    data: Vec<u8>,
    /// Whether each chunk holds its pattern (or what was written since).
    filled: Vec<bool>,
    seed: u64,
}

/// Size of a [`Disk`] chunk.
const CHUNK: usize = 1 << 20;

impl Disk {
    /// The bytes `off..off + len`, their chunks filled first. The caller
    /// checked the range (`validate_request`).
    fn range(&mut self, off: usize, len: usize) -> &mut [u8] {
        for c in off / CHUNK..(off + len).div_ceil(CHUNK) {
            if !self.filled[c] {
                let end = ((c + 1) * CHUNK).min(self.data.len());
                fill_pattern(
                    &mut self.data[c * CHUNK..end],
                    (c * CHUNK) as u64,
                    self.seed,
                );
                self.filled[c] = true;
            }
        }
        &mut self.data[off..off + len]
    }
}

/// State shared by the connections.
struct Server {
    opts: Opts,
    sec: SecConfig,
    disk: Mutex<Disk>,
    /// Connections accepted so far.
    conns: AtomicU32,
    /// Times the case has acted.
    acted: AtomicU32,
    /// Connections being served.
    live: AtomicU32,
    /// Which IO cases of a list have acted.
    done: Mutex<Vec<bool>>,
    /// The connections whose HELLO was accepted (about to be answered, or
    /// answered), for fencing and the cross-queue cases.
    peers: Mutex<Vec<Arc<Peer>>>,
}

/// A connection whose HELLO was accepted, as the other connections see it.
struct Peer {
    n: u32,
    /// `queue_index`, `client_id` and `epoch` of its HELLO.
    queue: u16,
    client: u64,
    epoch: u32,
    /// Its HELLO_REPLY went out: requests may come.
    up: AtomicBool,
    /// Its socket, for sending: every send on the connection holds the lock.
    out: Arc<Mutex<TcpStream>>,
    /// A newer connection of the same client fenced this one: no request of
    /// it may start any more.
    fenced: AtomicBool,
    /// Its socket, for the fencer to shut it down (not through `out`, whose
    /// lock a blocked send may hold).
    sock: TcpStream,
    /// Held while one of its requests executes: the fencer sets `fenced`,
    /// shuts the socket down, then takes this lock, so it waits for the
    /// request being executed, and no other starts after it.
    exec: Mutex<()>,
}

impl Peer {
    /// Whether a newer connection fenced this one.
    fn is_fenced(&self) -> bool {
        self.fenced.load(SeqCst)
    }

    /// Ends this connection for a newer one and waits until the request it
    /// is executing, if any, has finished.
    fn fence(&self) {
        self.fenced.store(true, SeqCst);
        let _ = self.sock.shutdown(Shutdown::Both);
        drop(self.exec.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// The `(n, client, queue, epoch)` of a live connection, for [`fence_plan`].
type Live = (u32, u64, u16, u32);

/// Which live connections a HELLO of `client` (not 0), `queue` and `epoch`
/// supersedes (Documentation/protocol.md, "Reconnecting and fencing"):
/// every one of the client with a lower epoch, whatever its queue, and
/// those of the same queue and epoch. `Err(n)`: the HELLO is stale, as
/// connection `n` of the client has a higher epoch; it fences nothing.
fn fence_plan(live: &[Live], client: u64, queue: u16, epoch: u32) -> Result<Vec<u32>, u32> {
    let of_client = || live.iter().filter(|l| l.1 == client);
    if let Some(l) = of_client().find(|l| l.3 > epoch) {
        return Err(l.0);
    }
    Ok(of_client()
        .filter(|l| l.3 < epoch || l.2 == queue)
        .map(|l| l.0)
        .collect())
}

/// Sends `b` on a connection's socket, under its lock.
fn send_on(out: &Mutex<TcpStream>, b: &[u8]) -> io::Result<()> {
    out.lock().unwrap_or_else(|p| p.into_inner()).write_all(b)
}

/// How long a cross-queue case waits for a connection of another queue.
const PEER_WAIT: Duration = Duration::from_secs(5);

/// How a fenced connection ends, in the log.
const FENCED: &str = "fenced by a newer connection of the same client";

/// The longest `hold-write` holds a WRITE if its connection is not fenced.
const HOLD_LIMIT: Duration = Duration::from_secs(60);

/// The whole handshake must be done within this (like the kernel's export).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most connections served at once (like the kernel's export).
const MAX_SESSIONS: u32 = 64;

/// `dstpeer server ADDR:PORT OPTIONS`.
pub(crate) fn main(addr: &str, args: &[&str], sec: &SecConfig) -> Res {
    if addr == "list" || args.first() == Some(&"list") {
        print!("{}", case_list());
        return Ok(());
    }
    let mut opts = Opts {
        size: 64 << 20,
        block: 512,
        physical: 4096,
        read_only: false,
        max_io: 1 << 20,
        depth: 128,
        cases: Vec::new(),
        phase: None,
        times: 1,
        trigger: 24 << 20,
    };
    let mut seed = 1;
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        let mut val = || {
            it.next()
                .copied()
                .ok_or_else(|| usage(format!("{a} needs a value")))
        };
        match a {
            "--size" => opts.size = parse_size(val()?)?,
            "--block" => opts.block = parse_size(val()?)? as u32,
            "--physical" => opts.physical = parse_size(val()?)? as u32,
            "--seed" => seed = parse_size(val()?)?,
            "--read-only" => opts.read_only = true,
            "--max-io" => opts.max_io = parse_size(val()?)? as u32,
            "--depth" => opts.depth = parse_size(val()?)? as u16,
            "--times" => opts.times = parse_size(val()?)? as u32,
            "--trigger" => opts.trigger = parse_size(val()?)?,
            "--case" => {
                let names = val()?;
                if names == "list" {
                    print!("{}", case_list());
                    return Ok(());
                }
                for name in names.split(',') {
                    let (name, phase, needs, _) =
                        find_case(name).ok_or_else(|| usage(format!("unknown case {name}")))?;
                    if !needs.met(sec) {
                        return Err(usage(format!("case {name} needs {}", needs.as_str())));
                    }
                    if opts.phase.is_some_and(|p| p != phase) {
                        return Err(usage("a list of cases must be of one phase"));
                    }
                    opts.phase = Some(phase);
                    opts.cases.push(name);
                }
                let list_ok = matches!(opts.phase, Some(Phase::Io | Phase::Probe));
                if opts.cases.len() > 1 && !list_ok {
                    return Err(usage("only io and probe cases can be given as a list"));
                }
            }
            _ => return Err(usage(format!("server: unknown argument {a}"))),
        }
    }
    let len = usize::try_from(opts.size).map_err(|_| usage("size too large"))?;
    let disk = Disk {
        data: vec![0u8; len],
        filled: vec![false; len.div_ceil(CHUNK)],
        seed,
    };
    let listener =
        TcpListener::bind(addr).map_err(|e| usage(format!("cannot listen on {addr}: {e}")))?;
    println!(
        "server: listening on {}, {} bytes, seed {seed}, protection {}{}, case {}{}",
        listener.local_addr()?,
        opts.size,
        sec.protection.as_str(),
        if sec.auth() { " with a key" } else { "" },
        if opts.cases.is_empty() {
            "none".to_string()
        } else {
            opts.cases.join(",")
        },
        rekey_text(sec)
    );
    io::stdout().flush()?;
    let opts_cases = opts.cases.len();
    let server = Arc::new(Server {
        opts,
        sec: sec.clone(),
        disk: Mutex::new(disk),
        conns: AtomicU32::new(0),
        acted: AtomicU32::new(0),
        live: AtomicU32::new(0),
        done: Mutex::new(vec![false; opts_cases]),
        peers: Mutex::new(Vec::new()),
    });
    for sock in listener.incoming() {
        let sock = match sock {
            Ok(s) => s,
            Err(e) => {
                log(0, format!("accept failed: {e}"));
                continue;
            }
        };
        let n = server.conns.fetch_add(1, Relaxed) + 1;
        if server.live.fetch_add(1, Relaxed) >= MAX_SESSIONS {
            server.live.fetch_sub(1, Relaxed);
            log(n, format!("refused: {MAX_SESSIONS} sessions already"));
            continue;
        }
        let s = server.clone();
        thread::spawn(move || {
            let peer = sock
                .peer_addr()
                .map_or("(unknown)".to_string(), |a| a.to_string());
            log(n, format!("connected from {peer}"));
            let end = s.serve(n, sock);
            s.live.fetch_sub(1, Relaxed);
            log(n, format!("ended: {end}"));
        });
    }
    Err(unexpected("the listener stopped"))
}

/// The key replacement of `sec` for the listening line: empty if never.
fn rekey_text(sec: &SecConfig) -> String {
    if !sec.protection.needs_key() {
        return String::new();
    }
    let mut parts = Vec::new();
    if let Some(b) = sec.rekey.bytes {
        parts.push(format!("every {b} bytes"));
    }
    if let Some(t) = sec.rekey.interval {
        parts.push(format!("every {} s", t.as_secs()));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(", key update {}", parts.join(" or "))
    }
}

/// Prints a log line of connection `n` and flushes it.
fn log(n: u32, msg: String) {
    println!("conn {n}: {msg}");
    let _ = io::stdout().flush();
}

/// What a connection ends with: a message for the log.
type End = String;

/// The keyed state of an authenticated handshake once AUTH verified.
struct Auth {
    /// The CHALLENGE body sent.
    challenge: [u8; CHALLENGE_LEN],
    /// `DH`, for the case that proves with another key.
    dh: [u8; HASH_LEN],
    schedule: sec::Schedule,
    proof_local: [u8; AUTH_LEN],
}

/// How the export's side of the authentication ended.
enum AuthOutcome {
    /// AUTH verified: the reply may be sent.
    Verified(Auth),
    /// Refuse with this status and close.
    Refuse(Status),
    /// A CHALLENGE case broke the handshake on purpose; the connection is
    /// done.
    Broken,
}

/// Version 1's HELLO_REPLY body size, for the case that sends one.
const V1_REPLY_LEN: u32 = 80;

/// Another export identity than `name`, for the cases that lie about it.
fn other_name(name: &Name) -> Name {
    let other: &[u8] = if name.as_bytes() == b"another.export" {
        b"yet.another.export"
    } else {
        b"another.export"
    };
    Name::new(other).unwrap_or(Name::EMPTY)
}

impl Server {
    /// The case that acts now in `phase` (handshake, probe), counting it:
    /// a single case acts `--times` times (handshake cases always, but for
    /// [`ONCE`]); a list of cases acts one after the other, once each.
    fn act(&self, phase: Phase) -> Option<&'static str> {
        if self.opts.phase != Some(phase) {
            return None;
        }
        let cases = &self.opts.cases;
        if let [name] = cases[..] {
            if phase == Phase::Handshake && !ONCE.contains(&name) {
                return Some(name);
            }
            let n = self.acted.fetch_add(1, Relaxed);
            return (self.opts.times == 0 || n < self.opts.times).then_some(name);
        }
        let n = self.acted.fetch_add(1, Relaxed);
        cases.get(n as usize).copied()
    }

    /// The IO case that acts on the READ `h`, marking it done: a single case
    /// on the first `--times` READs covering the trigger offset; case `i` of
    /// a list on the first READ covering the trigger offset plus `i` MiB.
    fn act_io(&self, h: &Header) -> Option<&'static str> {
        if self.opts.phase != Some(Phase::Io) || h.op != Some(Op::Read) {
            return None;
        }
        let covers = |t: u64| h.offset <= t && t < h.offset + u64::from(h.length);
        let cases = &self.opts.cases;
        if let [name] = cases[..] {
            if !covers(self.opts.trigger) {
                return None;
            }
            let n = self.acted.fetch_add(1, Relaxed);
            return (self.opts.times == 0 || n < self.opts.times).then_some(name);
        }
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        for (i, name) in cases.iter().enumerate() {
            if !done[i] && covers(self.opts.trigger + ((i as u64) << 20)) {
                done[i] = true;
                return Some(name);
            }
        }
        None
    }

    /// The write case that acts on the IO request `h`, counting it: on the
    /// first `--times` WRITEs covering the trigger offset.
    fn act_write(&self, h: &Header) -> Option<&'static str> {
        let t = self.opts.trigger;
        let name = self.case_of(Phase::Write)?;
        if h.op != Some(Op::Write) || !(h.offset <= t && t < h.offset + u64::from(h.length)) {
            return None;
        }
        let n = self.acted.fetch_add(1, Relaxed);
        (self.opts.times == 0 || n < self.opts.times).then_some(name)
    }

    /// Fencing for the HELLO `hello` of connection `n` (see [`fence_plan`]):
    /// registers the connection, ends the ones it supersedes and waits for
    /// the requests they are executing. `Err`: the HELLO is stale; nothing
    /// was fenced or registered.
    fn fence(&self, n: u32, hello: &HelloBody, sock: &TcpStream) -> Result<Arc<Peer>, String> {
        let (client, queue, epoch) = (hello.client_id, hello.queue_index, hello.epoch);
        let peer = Arc::new(Peer {
            n,
            queue,
            client,
            epoch,
            up: AtomicBool::new(false),
            out: Arc::new(Mutex::new(sock.try_clone().map_err(|e| e.to_string())?)),
            fenced: AtomicBool::new(false),
            sock: sock.try_clone().map_err(|e| e.to_string())?,
            exec: Mutex::new(()),
        });
        let old: Vec<Arc<Peer>> = {
            let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            let plan = if client == 0 {
                Ok(Vec::new())
            } else {
                let live: Vec<Live> = peers
                    .iter()
                    .map(|p| (p.n, p.client, p.queue, p.epoch))
                    .collect();
                fence_plan(&live, client, queue, epoch)
            };
            let plan = match plan {
                Ok(plan) => plan,
                Err(m) => {
                    let e = peers.iter().find(|p| p.n == m).map_or(0, |p| p.epoch);
                    return Err(format!(
                        "stale HELLO: epoch {epoch} below conn {m}'s {e} (same client)"
                    ));
                }
            };
            // Registered under the lock: a later HELLO of a higher epoch
            // fences this connection, one of a lower epoch is stale.
            peers.push(peer.clone());
            peers
                .iter()
                .filter(|p| plan.contains(&p.n))
                .cloned()
                .collect()
        };
        for p in old {
            let start = Instant::now();
            log(
                n,
                format!(
                    "fencing conn {} (queue {}, epoch {}) for this HELLO (queue {queue}, epoch {epoch})",
                    p.n, p.queue, p.epoch
                ),
            );
            p.fence();
            log(
                n,
                format!(
                    "conn {} fenced after {} ms: none of its requests runs any more",
                    p.n,
                    start.elapsed().as_millis()
                ),
            );
        }
        Ok(peer)
    }

    /// The single case if it is of `phase` (without counting).
    fn case_of(&self, phase: Phase) -> Option<&'static str> {
        match self.opts.cases[..] {
            [name] if self.opts.phase == Some(phase) => Some(name),
            _ => None,
        }
    }

    /// A connection of another queue than `queue` of local node `client`
    /// (the newest), waiting up to [`PEER_WAIT`] for one: its number and
    /// socket.
    fn other_peer(&self, queue: u16, client: u64) -> Option<(u32, Arc<Mutex<TcpStream>>)> {
        let start = Instant::now();
        loop {
            {
                let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
                let other = peers.iter().rev().find(|p| {
                    p.client == client && p.queue != queue && p.up.load(SeqCst) && !p.is_fenced()
                });
                if let Some(p) = other {
                    return Some((p.n, p.out.clone()));
                }
            }
            if start.elapsed() > PEER_WAIT {
                return None;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Serves one connection until it ends.
    fn serve(&self, n: u32, sock: TcpStream) -> End {
        let mut w = match Wire::new(sock) {
            Ok(w) => w,
            Err(e) => return format!("socket setup failed: {e}"),
        };
        let _ = w.sock.set_read_timeout(Some(Duration::from_secs(60)));
        // Like the kernel's export: a bounded handshake.
        let done = Arc::new(AtomicBool::new(false));
        if let Ok(sock) = w.sock.try_clone() {
            let done = done.clone();
            thread::spawn(move || {
                let start = Instant::now();
                while start.elapsed() < HANDSHAKE_TIMEOUT {
                    if done.load(Relaxed) {
                        return;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
                if !done.load(Relaxed) {
                    let _ = sock.shutdown(Shutdown::Both);
                }
            });
        }
        let mut peer = None;
        let grant = self.handshake(n, &mut w, &mut peer);
        done.store(true, Relaxed);
        let end = match (grant, peer) {
            (Ok(Some((grant, hello))), Some(peer)) => {
                peer.up.store(true, SeqCst);
                Conn {
                    srv: self,
                    n,
                    w,
                    out: peer.out.clone(),
                    peer,
                    queue: hello.queue_index,
                    client: hello.client_id,
                    limits: grant.limits(),
                    last_frame: Vec::new(),
                    probe: Probe::Idle,
                    probe_case: "",
                    good_ping: Vec::new(),
                }
                .serve()
            }
            (Ok(Some(_)), None) => "no connection state".into(),
            (Ok(None), _) => "refused or broken on purpose".into(),
            (Err(e), _) => e,
        };
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.retain(|p| p.n != n);
        end
    }

    /// The grant for `hello`, honest.
    fn grant(&self, hello: &HelloBody, version: u32) -> HelloReplyBody {
        let o = &self.opts;
        // RESIZE granted, though this export never grows: the io-resize-*
        // cases send bad ones.
        let features = if o.read_only {
            FEATURE_FLUSH | FEATURE_RESIZE
        } else {
            FEATURE_FLUSH | FEATURE_FUA | FEATURE_DISCARD | FEATURE_WRITE_ZEROES | FEATURE_RESIZE
        };
        let within = |ours: u32, wanted: u32| if wanted == 0 { ours } else { ours.min(wanted) };
        HelloReplyBody {
            version,
            perms: if o.read_only {
                PERM_READ
            } else {
                PERM_READ | PERM_WRITE
            },
            features: features & hello.features,
            size: o.size,
            logical_block_size: o.block,
            physical_block_size: o.physical,
            max_io_bytes: within(o.max_io, hello.max_io_bytes),
            queues: hello.queues.max(1),
            queue_depth: within(u32::from(o.depth), u32::from(hello.queue_depth)) as u16,
            export: self.sec.identity,
            proof: [0; AUTH_LEN],
        }
    }

    /// The export's side of the handshake, with the handshake cases: the
    /// grant and the HELLO. `Ok(None)`: refused or broken on purpose; the
    /// connection is done. Once the HELLO is accepted, `peer` holds the
    /// connection's registration (see [`Server::fence`]).
    fn handshake(
        &self,
        n: u32,
        w: &mut Wire,
        peer: &mut Option<Arc<Peer>>,
    ) -> Result<Option<(HelloReplyBody, HelloBody)>, End> {
        let case = self.act(Phase::Handshake);
        let mut hb = [0u8; HEADER_LEN];
        w.read_exact(&mut hb)
            .map_err(|e| format!("no HELLO: {e}"))?;
        let h = Header::decode(&hb).map_err(|e| format!("bad first header: {}", e.as_str()))?;
        if h.kind != Kind::Hello {
            return Err(format!("first message {:?}, not HELLO", h.kind));
        }
        let mut body = [0u8; HELLO_LEN];
        w.read_exact(&mut body)
            .map_err(|e| format!("no HELLO body: {e}"))?;
        let refuse =
            |w: &mut Wire, s: Status| -> Result<Option<(HelloReplyBody, HelloBody)>, End> {
                w.send_bytes(&Header::hello_reply(s).encode())
                    .map_err(|e| e.to_string())?;
                Err(format!("refused: {}", s.as_str()))
            };
        let hello = match HelloBody::decode(&body).and_then(|b| b.validate().map(|()| b)) {
            Ok(b) => b,
            Err(_) => return refuse(w, Status::Invalid),
        };
        let Some(version) = negotiate_version(hello.min_version, hello.max_version) else {
            return refuse(w, Status::Version);
        };
        if !hello.export.is_empty() && hello.export != self.sec.identity {
            log(
                n,
                format!(
                    "HELLO for export {:?}, this is {:?}",
                    String::from_utf8_lossy(hello.export.as_bytes()),
                    String::from_utf8_lossy(self.sec.identity.as_bytes())
                ),
            );
            return refuse(w, Status::UnknownExport);
        }
        if !hello.security.matches(&self.sec.security()) {
            return refuse(w, Status::Mismatch);
        }
        log(
            n,
            format!(
                "HELLO from {:?}: queue {} of {}, depth {}, max IO {}, client {:#x}, epoch {}",
                String::from_utf8_lossy(hello.client.as_bytes()),
                hello.queue_index,
                hello.queues,
                hello.queue_depth,
                hello.max_io_bytes,
                hello.client_id,
                hello.epoch
            ),
        );
        if let Some(c) = case {
            log(n, format!("case {c}"));
        }
        // Refusals and broken replies.
        let status = match case {
            Some("status-invalid") => Some(Status::Invalid),
            Some("status-version") => Some(Status::Version),
            Some("status-busy") => Some(Status::Busy),
            Some("status-permission") => Some(Status::Permission),
            Some("status-mismatch") => Some(Status::Mismatch),
            Some("status-auth-failed") => Some(Status::AuthFailed),
            Some("status-not-allowed") => Some(Status::NotAllowed),
            Some("status-io-error") => Some(Status::IoError),
            _ => None,
        };
        if let Some(s) = status {
            w.send_bytes(&Header::hello_reply(s).encode())
                .map_err(|e| e.to_string())?;
            return self.await_close(n, w, "after the refusal");
        }
        match case {
            Some("status-undefined") => {
                let mut b = Header::hello_reply(Status::Invalid).encode();
                b[8..12].copy_from_slice(&77u32.to_be_bytes());
                w.send_bytes(&b).map_err(|e| e.to_string())?;
                return self.await_close(n, w, "after status 77");
            }
            Some("reply-close") => {
                let _ = w.sock.shutdown(Shutdown::Both);
                return Ok(None);
            }
            Some("reply-none") => return self.await_close(n, w, "waiting without a HELLO_REPLY"),
            Some("challenge-unasked") => {
                let cb = ChallengeBody {
                    export: self.sec.identity,
                    key_share: *Ephemeral::generate().public(),
                };
                w.send(&Header::challenge(), &cb.encode())
                    .map_err(|e| e.to_string())?;
                return self.await_close(n, w, "after the unasked CHALLENGE");
            }
            _ => {}
        }
        // The identity this export claims: its own, or a lie.
        let asked = (!hello.export.is_empty()).then_some(hello.export);
        let mut identity = self.sec.identity;
        if case == Some("challenge-other-export")
            || (!self.sec.auth() && case == Some("reply-other-export"))
        {
            match asked {
                Some(a) => identity = other_name(&a),
                None => log(
                    n,
                    "the HELLO asks for no export: this case is honest".into(),
                ),
            }
        }
        // The authentication: the exchange, CHALLENGE and AUTH.
        let auth = if self.sec.auth() && case != Some("no-challenge") {
            match self.authenticate(n, w, case, &hello, &body, &identity)? {
                AuthOutcome::Verified(a) => Some(a),
                AuthOutcome::Refuse(status) => return refuse(w, status),
                AuthOutcome::Broken => return Ok(None),
            }
        } else {
            None
        };
        // Fencing, before anything is granted (like the kernel's export).
        match self.fence(n, &hello, &w.sock) {
            Ok(p) => *peer = Some(p),
            Err(why) => {
                log(n, format!("{why}: refused BUSY"));
                return refuse(w, Status::Busy);
            }
        }
        // The grant, perhaps a lie.
        let mut grant = self.grant(&hello, version);
        if self.case_of(Phase::Reconnect) == Some("reconnect-changed") && n > 1 {
            grant.size -= u64::from(grant.logical_block_size) * 8;
            log(n, format!("case reconnect-changed: size {}", grant.size));
        }
        match case {
            Some("size-unaligned") => grant.size += 100,
            Some("size-huge") => grant.size = 1 << 63,
            Some("block-1000") => grant.logical_block_size = 1000,
            Some("block-256") => grant.logical_block_size = 256,
            Some("block-8192") => {
                grant.logical_block_size = 8192;
                grant.physical_block_size = 8192;
            }
            Some("physical-small") => {
                grant.logical_block_size = 4096;
                grant.physical_block_size = 512;
            }
            Some("physical-huge") => grant.physical_block_size = 128 << 10,
            Some("max-io-over") => {
                grant.max_io_bytes = match hello.max_io_bytes {
                    0 => MAX_IO_BYTES_LIMIT * 2,
                    w => (w + 4096).min(MAX_IO_BYTES_LIMIT * 2),
                }
            }
            Some("max-io-unaligned") => grant.max_io_bytes -= 512,
            Some("max-io-zero") => grant.max_io_bytes = 0,
            Some("depth-over") => {
                grant.queue_depth = match hello.queue_depth {
                    0 => 1025,
                    w => w + 1,
                }
            }
            Some("depth-zero") => grant.queue_depth = 0,
            Some("queues-over") => grant.queues = hello.queues.max(1) + 1,
            Some("queues-zero") => grant.queues = 0,
            Some("features-extra") => grant.features |= 1 << 9,
            Some("perms-no-read") => grant.perms = PERM_WRITE,
            Some("perms-unknown") => grant.perms |= 1 << 5,
            Some("version-above") => grant.version = VERSION + 1,
            Some("version-1") => grant.version = 1,
            Some("version-0") => grant.version = 0,
            _ => {}
        }
        grant.export = match (case, &auth) {
            (Some("reply-other-export"), Some(_)) => other_name(&identity),
            (Some("reply-empty-name"), _) => Name::EMPTY,
            _ => identity,
        };
        let mut rb = grant.encode();
        if case == Some("reserved") {
            rb[44] = 1;
        }
        let mut proven = [0u8; REPLY_PROVEN_LEN];
        proven.copy_from_slice(&rb[..REPLY_PROVEN_LEN]);
        let mut keys = SessionKeys::UNUSED;
        match &auth {
            Some(a) => {
                let th2 = sec::th2(&body, &a.challenge, &a.proof_local, &proven);
                keys = a.schedule.session_keys(&th2);
                let schedule = if case == Some("proof-wrong-key") {
                    let other: &[u8] = b"not the key of the local node...";
                    sec::Schedule::new(other, &hello.client, &identity, &a.dh)
                } else {
                    a.schedule.clone()
                };
                let proof = &mut rb[REPLY_PROVEN_LEN..];
                proof.copy_from_slice(&schedule.proof_export(&th2));
                match case {
                    Some("proof-bad") => proof[12] ^= 0x10,
                    Some("proof-zero") => proof.fill(0),
                    _ => {}
                }
            }
            None if case == Some("proof-nonzero") => rb[REPLY_PROVEN_LEN..].fill(0x5a),
            None => {}
        }
        let mut msg = Header::hello_reply(Status::Ok).encode().to_vec();
        msg.extend_from_slice(&rb);
        match case {
            Some("reply-kind") => msg[4] = Kind::IoReply.as_u8(),
            Some("reply-magic") => msg[0] ^= 0x40,
            Some("reply-old-size") => {
                // Version 1's HELLO_REPLY: 48 bytes of grant and a proof.
                msg[12..16].copy_from_slice(&V1_REPLY_LEN.to_be_bytes());
                msg.truncate(HEADER_LEN + V1_REPLY_LEN as usize);
            }
            Some("reply-truncated") => msg.truncate(HEADER_LEN + HELLO_REPLY_LEN / 2),
            Some("reply-twice") => {
                let again = msg.clone();
                msg.extend(again);
            }
            _ => {}
        }
        w.send_bytes(&msg).map_err(|e| e.to_string())?;
        if case == Some("reply-truncated") {
            let _ = w.sock.shutdown(Shutdown::Both);
            return Ok(None);
        }
        if case.is_some() && case != Some("reply-twice") {
            return self.await_close(n, w, "after the lying HELLO_REPLY");
        }
        let (tx, rx) = self.sec.channel(&keys.el, &keys.le);
        w.tx = tx;
        w.rx = rx;
        log(
            n,
            format!(
                "granted: size {}, blocks {}/{}, max IO {}, depth {}, queues {}, perms {:#x}",
                grant.size,
                grant.logical_block_size,
                grant.physical_block_size,
                grant.max_io_bytes,
                grant.queue_depth,
                grant.queues,
                grant.perms
            ),
        );
        Ok(Some((grant, hello)))
    }

    /// The export's side of the authentication, with the CHALLENGE cases:
    /// the exchange with the HELLO's key share, CHALLENGE naming `identity`,
    /// AUTH checked. Called only with a key.
    fn authenticate(
        &self,
        n: u32,
        w: &mut Wire,
        case: Option<&'static str>,
        hello: &HelloBody,
        body: &[u8; HELLO_LEN],
        identity: &Name,
    ) -> Result<AuthOutcome, End> {
        let key = self.sec.key.as_deref().unwrap_or_default();
        let eph = Ephemeral::generate();
        let Some(dh) = eph.agree(&hello.key_share) else {
            log(n, "the HELLO's key share gives an all-zero DH".into());
            return Ok(AuthOutcome::Refuse(Status::Invalid));
        };
        let mut challenge = ChallengeBody {
            export: *identity,
            key_share: *eph.public(),
        };
        match case {
            Some("challenge-zero-share") => challenge.key_share = [0; KEY_SHARE_LEN],
            Some("challenge-small-order") => challenge.key_share = sec::small_order_points()[2],
            Some("challenge-empty-name") => challenge.export = Name::EMPTY,
            _ => {}
        }
        let mut cb = challenge.encode();
        if case == Some("challenge-name-junk") {
            cb[NAME_LEN - 1] = b'j';
        }
        let mut msg = Header::challenge().encode().to_vec();
        msg.extend_from_slice(&cb);
        match case {
            Some("challenge-old-size") => {
                msg[12..16].copy_from_slice(&(AUTH_LEN as u32).to_be_bytes());
                msg.truncate(HEADER_LEN + AUTH_LEN);
            }
            Some("challenge-twice") => {
                let again = msg.clone();
                msg.extend(again);
            }
            _ => {}
        }
        w.send_bytes(&msg).map_err(|e| e.to_string())?;
        // Another export's name is a lie only when the HELLO asked for one.
        let lied = case.is_some_and(|c| {
            c.starts_with("challenge-")
                && (c != "challenge-other-export" || !hello.export.is_empty())
        });
        if lied {
            return self
                .await_close::<()>(n, w, "after the bad CHALLENGE")
                .map(|_| AuthOutcome::Broken);
        }
        let m = w.recv().map_err(|e| format!("no AUTH: {e}"))?;
        if m.h.kind != Kind::Auth {
            return Err(format!("{:?} instead of AUTH", m.h.kind));
        }
        let schedule = sec::Schedule::new(key, &hello.client, identity, &dh);
        let proof_local = schedule.proof_local(&sec::th1(body, &cb));
        if !sec::ct_eq(&m.payload, &proof_local) {
            return Ok(AuthOutcome::Refuse(Status::AuthFailed));
        }
        Ok(AuthOutcome::Verified(Auth {
            challenge: cb,
            dh,
            schedule,
            proof_local,
        }))
    }

    /// Waits (up to 60 s) for the local node to close after a refusal or a
    /// lie, logging how long it took and whether it sent anything.
    fn await_close<T>(&self, n: u32, w: &mut Wire, what: &str) -> Result<Option<T>, End> {
        match w.wait_closed(Duration::from_secs(60)) {
            Ok(Some((t, got))) => log(
                n,
                format!(
                    "verdict: closed by the local node {what} after {} ms ({got} bytes received)",
                    t.as_millis()
                ),
            ),
            Ok(None) => log(n, format!("verdict: IGNORED: still open 60 s {what}")),
            Err(e) => log(n, format!("error {what}: {e}")),
        }
        Ok(None)
    }
}

/// The probe of the probe cases.
enum Probe {
    Idle,
    /// Waiting for the PONG of the good PING.
    Pong(u64),
    /// The bad frame was sent at this time; a PONG for `cookie` means it
    /// was accepted.
    Sent {
        cookie: u64,
        at: Instant,
    },
    Done,
}

/// Cookie of the good PING of a probe.
const GOOD_COOKIE: u64 = 0x600d_0000_0000_0001;
/// Cookie of the bad PING of a probe.
const BAD_COOKIE: u64 = 0xbad0_0000_0000_0002;

/// One connection after the handshake.
struct Conn<'a> {
    srv: &'a Server,
    n: u32,
    w: Wire,
    /// The socket for sending, shared with the other connections (see
    /// [`Peer`]): all sends go through it.
    out: Arc<Mutex<TcpStream>>,
    /// The connection as the others see it (fencing).
    peer: Arc<Peer>,
    /// `queue_index` and `client_id` of the HELLO.
    queue: u16,
    client: u64,
    limits: Limits,
    /// The last frame sent, as sent (for the replay cases).
    last_frame: Vec<u8>,
    probe: Probe,
    /// The probe case of this connection.
    probe_case: &'static str,
    /// The good PING of a probe, as sent.
    good_ping: Vec<u8>,
}

impl Conn<'_> {
    fn log(&self, msg: String) {
        log(self.n, msg);
    }

    /// Sends bytes as they are, under the connection's send lock.
    fn send_bytes(&self, b: &[u8]) -> io::Result<()> {
        send_on(&self.out, b)
    }

    /// Sends a frame, remembering it.
    fn send_frame(&mut self, frame: Vec<u8>) -> io::Result<()> {
        self.send_bytes(&frame)?;
        self.last_frame = frame;
        Ok(())
    }

    /// Runs the connection until it ends; logs the keys replaced, if any.
    fn serve(mut self) -> End {
        let end = self.run();
        let (rx, tx) = (self.w.rx.updates, self.w.tx.updates);
        if rx + tx > 0 {
            self.log(format!(
                "key updates: {rx} received from the local node, {tx} sent"
            ));
        }
        end
    }

    fn run(&mut self) -> End {
        if let Some(case) = self.srv.act(Phase::Probe) {
            self.probe_case = case;
            self.log(format!("case {case}: good PING first"));
            let sent = self.w.frame(&Header::ping(GOOD_COOKIE), &[]).and_then(|f| {
                self.good_ping = f.clone();
                self.send_frame(f)
            });
            if let Err(e) = sent {
                return format!("send failed: {e}");
            }
            self.probe = Probe::Pong(GOOD_COOKIE);
        }
        loop {
            if let Probe::Sent { at, .. } = self.probe {
                if at.elapsed() > Duration::from_secs(15) {
                    self.log(
                        "verdict: IGNORED: the bad frame left the connection open for 15 s".into(),
                    );
                    self.probe = Probe::Done;
                }
            }
            // Wait for data without consuming it, so the receive timeout
            // never splits a message.
            let _ = self.w.sock.set_read_timeout(Some(Duration::from_secs(1)));
            let ready = if self.w.buffered() > 0 {
                Ok(1)
            } else {
                self.w.sock.peek(&mut [0u8; 1])
            };
            match ready {
                Ok(0) => return self.closed("connection closed by the local node".into()),
                Ok(_) => {}
                Err(e) if wire::is_timeout(&e) => continue,
                Err(e) => return self.closed(format!("receive failed: {e}")),
            }
            let _ = self.w.sock.set_read_timeout(Some(Duration::from_secs(60)));
            let m = match self.w.recv() {
                Ok(m) => m,
                Err(e @ RecvError::Proto(_)) => {
                    let _ = self.w.sock.shutdown(Shutdown::Both);
                    return format!("the local node broke the protocol: {e}");
                }
                Err(e) => return self.closed(e.to_string()),
            };
            let r = match m.h.kind {
                Kind::Io => self.io(m.h, m.payload),
                Kind::Ping => self
                    .w
                    .frame(&Header::pong(m.h.id), &[])
                    .and_then(|f| self.send_frame(f)),
                Kind::Pong => self.pong(m.h.id),
                // The local node's device is being deleted; it closes next.
                Kind::Release => Ok(()),
                k => {
                    let _ = self.w.sock.shutdown(Shutdown::Both);
                    return format!("the local node sent {k:?} after the handshake");
                }
            };
            match r {
                Ok(()) => {}
                Err(_) if self.peer.is_fenced() => return FENCED.into(),
                Err(e)
                    if e.kind() == io::ErrorKind::Other && e.to_string() == "closed on purpose" =>
                {
                    return "closed on purpose".into()
                }
                Err(e) => return self.closed(format!("send failed: {e}")),
            }
            if self.peer.is_fenced() {
                return FENCED.into();
            }
        }
    }

    /// The connection ended (closed by the peer or failed, or fenced): logs
    /// the verdict of a pending probe.
    fn closed(&mut self, why: String) -> End {
        let why = if self.peer.is_fenced() {
            FENCED.to_string()
        } else {
            why
        };
        if let Probe::Sent { at, .. } = self.probe {
            self.log(format!(
                "verdict: closed by the local node {} ms after the bad frame",
                at.elapsed().as_millis()
            ));
            self.probe = Probe::Done;
        }
        why
    }

    /// A PONG arrived.
    fn pong(&mut self, cookie: u64) -> io::Result<()> {
        match self.probe {
            Probe::Pong(c) if c == cookie => {
                let case = self.probe_case;
                let frame = match case {
                    "probe-tamper" => {
                        let mut f = self.w.frame(&Header::ping(BAD_COOKIE), &[])?;
                        let last = f.len() - 1;
                        f[last] ^= 0x01;
                        f
                    }
                    "probe-replay" => self.good_ping.clone(),
                    "probe-clear" => Header::ping(BAD_COOKIE).encode().to_vec(),
                    "probe-old-seq" => {
                        for i in 0..1100 {
                            let f = self.w.frame(&Header::ping(GOOD_COOKIE + 1 + i), &[])?;
                            self.send_bytes(&f)?;
                        }
                        let hb = Header::ping(BAD_COOKIE).encode();
                        let t = self.w.tx.seal_at(5, &hb, &mut []);
                        let mut f = hb.to_vec();
                        f.extend(t);
                        f
                    }
                    "probe-key-update-old-key" | "probe-key-update-old-key-zero" => {
                        // The KEY_UPDATE is good: the local node must move
                        // to the next key; the PING after it is sealed
                        // with the one it replaced.
                        let mut old = self.w.tx.clone();
                        let mut f = self.w.key_update()?;
                        // The KEY_UPDATE took the old key's next seq.
                        old.seq += 1;
                        let hb = Header::ping(BAD_COOKIE).encode();
                        let t = if case == "probe-key-update-old-key-zero" {
                            old.seal_at(0, &hb, &mut [])
                        } else {
                            old.seal(&hb, &mut [])?
                        };
                        f.extend_from_slice(&hb);
                        f.extend(t);
                        f
                    }
                    "probe-reorder" | "probe-gap" => {
                        // The next seq and the one after it; the PING that
                        // must not be answered (BAD_COOKIE) carries the
                        // latter and goes first.
                        let next = self.w.tx.seq;
                        self.w.tx.seq = next + 2;
                        let hb = Header::ping(BAD_COOKIE).encode();
                        let mut f = hb.to_vec();
                        f.extend(self.w.tx.seal_at(next + 1, &hb, &mut []));
                        if case == "probe-reorder" {
                            let hb = Header::ping(BAD_COOKIE + 1).encode();
                            f.extend_from_slice(&hb);
                            f.extend(self.w.tx.seal_at(next, &hb, &mut []));
                        }
                        f
                    }
                    _ => return Ok(()),
                };
                let cookie = if case == "probe-replay" {
                    GOOD_COOKIE
                } else {
                    BAD_COOKIE
                };
                self.send_bytes(&frame)?;
                self.log(format!("case {case}: bad frame sent"));
                self.probe = Probe::Sent {
                    cookie,
                    at: Instant::now(),
                };
            }
            Probe::Sent { cookie: c, at } if c == cookie => {
                self.log(format!(
                    "verdict: ACCEPTED: the local node answered the bad frame after {} ms",
                    at.elapsed().as_millis()
                ));
                self.probe = Probe::Done;
            }
            _ => {}
        }
        Ok(())
    }

    /// Executes an IO request on the buffer: the status and READ data.
    fn execute(&self, h: &Header, payload: &[u8]) -> (Status, Vec<u8>) {
        if let Err(s) = validate_request(h, &self.limits) {
            return (s, Vec::new());
        }
        let (off, len) = (h.offset as usize, h.length as usize);
        let mut guard = self.srv.disk.lock().unwrap_or_else(|p| p.into_inner());
        let range = guard.range(off, len);
        match h.op {
            Some(Op::Read) => (Status::Ok, range.to_vec()),
            Some(Op::Write) => {
                range.copy_from_slice(payload);
                (Status::Ok, Vec::new())
            }
            Some(Op::Discard | Op::WriteZeroes) => {
                range.fill(0);
                (Status::Ok, Vec::new())
            }
            _ => (Status::Ok, Vec::new()),
        }
    }

    /// Handles one IO request, with the IO cases.
    fn io(&mut self, h: Header, payload: Vec<u8>) -> io::Result<()> {
        if let Some(case) = self.srv.act_write(&h) {
            return self.hold_write(case, &h, &payload);
        }
        let t = self.srv.opts.trigger;
        let at_trigger = h.offset <= t && t < h.offset + u64::from(h.length);
        let (status, data) = {
            let peer = self.peer.clone();
            let _started = peer.exec.lock().unwrap_or_else(|p| p.into_inner());
            if peer.is_fenced() {
                return Err(self.not_started(&h));
            }
            let r = self.execute(&h, &payload);
            // The other WRITEs there, for the order of execution.
            if let (Some(case), Some(Op::Write), true) =
                (self.srv.case_of(Phase::Write), h.op, at_trigger)
            {
                self.log(format!(
                    "case {case}: another WRITE of {} at {} (id {:#x}, queue {}, epoch {}) executed ({})",
                    h.length,
                    h.offset,
                    h.id,
                    self.queue,
                    peer.epoch,
                    r.0.as_str()
                ));
            }
            r
        };
        let covers = h.op == Some(Op::Read) && status == Status::Ok && at_trigger;
        // The trigger READ on the first connection of reconnect-changed.
        if covers && self.n == 1 && self.srv.case_of(Phase::Reconnect).is_some() {
            self.log("case reconnect-changed: closing on the trigger READ".into());
            let _ = self.w.sock.shutdown(Shutdown::Both);
            return Err(io::Error::other("closed on purpose"));
        }
        let case = if status == Status::Ok {
            self.srv.act_io(&h)
        } else {
            None
        };
        let Some(case) = case else {
            let f = self.w.frame(&h.reply(status), &data)?;
            return self.send_frame(f);
        };
        self.log(format!(
            "case {case}: READ of {} at {} (id {:#x}) gets the bad reply",
            h.length, h.offset, h.id
        ));
        // A KEY_UPDATE that is due goes out first, on its own: the cases
        // below change their frames by offsets.
        let due = self.w.key_update_if_due()?;
        if !due.is_empty() {
            self.send_bytes(&due)?;
        }
        let ok = h.reply(Status::Ok);
        let bad = |f: &mut dyn FnMut(&mut Header, &mut Vec<u8>)| {
            let (mut r, mut d) = (ok, data.clone());
            f(&mut r, &mut d);
            (r, d)
        };
        let closed = || Err(io::Error::other("closed on purpose"));
        let (reply, body): (Header, Vec<u8>) = match case {
            "io-wrong-id" => bad(&mut |r, _| r.id ^= 0x4000_0000_0000_0000),
            "io-other-id" => bad(&mut |r, _| r.id = r.id.wrapping_add(1)),
            "io-wrong-op" => bad(&mut |r, d| {
                r.op = Some(Op::Write);
                r.payload = 0;
                d.clear();
            }),
            "io-wrong-offset" => bad(&mut |r, _| r.offset += 4096),
            "io-wrong-length" => bad(&mut |r, d| {
                r.length -= 512;
                r.payload -= 512;
                d.truncate(d.len() - 512);
            }),
            "io-wrong-flags" => bad(&mut |r, _| r.flags = crate::proto::FLAG_FUA),
            "io-oversized" => bad(&mut |r, d| {
                r.payload += 4096;
                d.extend_from_slice(&[0xee; 4096]);
            }),
            "io-short" => bad(&mut |r, d| {
                r.payload -= 512;
                d.truncate(d.len() - 512);
            }),
            "io-no-data" => bad(&mut |r, d| {
                r.payload = 0;
                d.clear();
            }),
            "io-data-on-error" => bad(&mut |r, _| r.status = Status::IoError),
            "io-status-error" => (h.reply(Status::IoError), Vec::new()),
            "io-status-busy" => (h.reply(Status::Busy), Vec::new()),
            "io-status-auth" => (h.reply(Status::AuthFailed), Vec::new()),
            "io-payload-limit" => {
                let mut hb = ok.encode();
                hb[12..16].copy_from_slice(&(MAX_IO_BYTES_LIMIT + 1).to_be_bytes());
                let f = self.w.frame_raw(&hb, &data)?;
                return self.send_frame(f);
            }
            "io-status-undefined" => {
                let mut hb = h.reply(Status::IoError).encode();
                hb[8..12].copy_from_slice(&77u32.to_be_bytes());
                let f = self.w.frame_raw(&hb, &[])?;
                return self.send_frame(f);
            }
            "io-reserved" => {
                let mut hb = ok.encode();
                hb[38] = 1;
                let f = self.w.frame_raw(&hb, &data)?;
                return self.send_frame(f);
            }
            "io-magic" => {
                let mut hb = ok.encode();
                hb[1] = b'X';
                let f = self.w.frame_raw(&hb, &data)?;
                return self.send_frame(f);
            }
            "io-kind-hello" => {
                let mut f = Header::hello().encode().to_vec();
                f.extend_from_slice(&[0u8; HELLO_LEN]);
                return self.send_frame(f);
            }
            "io-kind-reply" => {
                let g = HelloReplyBody::decode(&[0u8; HELLO_REPLY_LEN])
                    .unwrap_or_else(|_| unreachable!("zero reserved bytes"));
                let f = self
                    .w
                    .frame(&Header::hello_reply(Status::Ok), &g.encode())?;
                return self.send_frame(f);
            }
            "io-kind-challenge" => {
                let cb = ChallengeBody {
                    export: self.srv.sec.identity,
                    key_share: [7; KEY_SHARE_LEN],
                };
                let f = self.w.frame(&Header::challenge(), &cb.encode())?;
                return self.send_frame(f);
            }
            "io-kind-io" => {
                let f = self
                    .w
                    .frame(&Header::io(Op::Read, 0, h.id, h.offset, h.length), &[])?;
                return self.send_frame(f);
            }
            "io-unsolicited" => {
                let other = Header::io(Op::Read, 0, h.id ^ 0x0000_0001_0000_0000, 0, 4096);
                let mut zeros = vec![0u8; 4096];
                fill_pattern(&mut zeros, 0, 0xdead);
                let f = self.w.frame(&other.reply(Status::Ok), &zeros)?;
                self.send_frame(f)?;
                (ok, data)
            }
            "io-duplicate" => {
                let f = self.w.frame(&ok, &data)?;
                self.send_frame(f)?;
                let again = self.last_frame.clone();
                return self.send_bytes(&again);
            }
            "io-cross-queue" | "io-both-queues" => return self.cross_queue(case, &h, &data),
            "io-resize-unaligned" | "io-resize-zero" | "io-resize-huge" => {
                let size = match case {
                    "io-resize-unaligned" => self.srv.opts.size + 100,
                    "io-resize-zero" => 0,
                    _ => 1 << 63,
                };
                let f = self.w.frame(&Header::resize(size), &[])?;
                self.send_bytes(&f)?;
                (ok, data)
            }
            "io-key-update-keyless" => {
                // Sealed as any message of the mode (crc32c, or nothing):
                // Sealer::key_update refuses a mode without keys.
                let f = self.w.frame(&Header::key_update(), &[])?;
                self.send_bytes(&f)?;
                (ok, data)
            }
            "io-no-reply" => {
                self.log("case io-no-reply: holding the reply".into());
                return Ok(());
            }
            "io-close" => {
                let _ = self.w.sock.shutdown(Shutdown::Both);
                return closed();
            }
            "io-close-mid-reply" => {
                let f = self.w.frame(&ok, &data)?;
                let half = HEADER_LEN + data.len() / 2;
                self.send_bytes(&f[..half])?;
                thread::sleep(Duration::from_millis(100));
                let _ = self.w.sock.shutdown(Shutdown::Both);
                return closed();
            }
            "io-tamper-data" => {
                let mut f = self.w.frame(&ok, &data)?;
                f[HEADER_LEN + data.len() / 2] ^= 0x04;
                return self.send_frame(f);
            }
            "io-tamper-header" => {
                // A valid-looking failure instead of the data: only the
                // trailer (made for the OK reply) can tell.
                let f = self.w.frame(&ok, &data)?;
                let mut hb = h.reply(Status::IoError).encode().to_vec();
                hb.extend_from_slice(&f[HEADER_LEN + data.len()..]);
                return self.send_frame(hb);
            }
            "io-tamper-trailer" => {
                let mut f = self.w.frame(&ok, &data)?;
                let last = f.len() - 1;
                f[last] ^= 0x80;
                return self.send_frame(f);
            }
            "io-no-trailer" => {
                // The local node reads the next frame's first bytes as the
                // trailer, which must not verify.
                let mut f = self.w.frame(&ok, &data)?;
                f.truncate(HEADER_LEN + data.len());
                f.extend(self.w.frame(&Header::pong(1), &[])?);
                f.extend(self.w.frame(&Header::pong(2), &[])?);
                return self.send_frame(f);
            }
            "io-replay" => {
                let pong = self.w.frame(&Header::pong(0x0dd), &[])?;
                self.send_bytes(&pong)?;
                self.send_bytes(&pong)?;
                (ok, data)
            }
            "io-replay-reply" => {
                if self.last_frame.is_empty() {
                    let f = self.w.frame(&Header::pong(0x0dd), &[])?;
                    self.send_frame(f)?;
                }
                let f = self.last_frame.clone();
                return self.send_bytes(&f);
            }
            "io-seq-reuse" => {
                if self.w.tx.seq == 0 {
                    let f = self.w.frame(&Header::pong(0x0dd), &[])?;
                    self.send_frame(f)?;
                }
                let hb = ok.encode();
                let mut d = data.clone();
                let seq = self.w.tx.seq - 1;
                let t = self.w.tx.seal_at(seq, &hb, &mut d);
                let mut f = hb.to_vec();
                f.extend(d);
                f.extend(t);
                return self.send_frame(f);
            }
            "io-seq-gap" => {
                let hb = ok.encode();
                let mut d = data.clone();
                let seq = self.w.tx.seq + 1;
                self.w.tx.seq = seq + 1;
                let t = self.w.tx.seal_at(seq, &hb, &mut d);
                let mut f = hb.to_vec();
                f.extend(d);
                f.extend(t);
                return self.send_frame(f);
            }
            _ => (ok, data),
        };
        let f = self.w.frame(&reply, &body)?;
        self.send_frame(f)
    }

    /// A request that arrived on a fenced connection: not executed; the
    /// connection ends.
    fn not_started(&self, h: &Header) -> io::Error {
        self.log(format!(
            "fenced: {} of {} at {} (id {:#x}) not executed",
            h.op.map_or("request", Op::as_str),
            h.length,
            h.offset,
            h.id
        ));
        io::Error::other("closed on purpose")
    }

    /// `hold-write` on the WRITE `h` (data `payload`): holds it, started but
    /// neither executed nor answered, until this connection is fenced (or
    /// [`HOLD_LIMIT`] passes); then executes it, as an old request finishing
    /// late would, and tries to answer it. The fencer waits for it.
    fn hold_write(&mut self, case: &str, h: &Header, payload: &[u8]) -> io::Result<()> {
        let peer = self.peer.clone();
        let started = peer.exec.lock().unwrap_or_else(|p| p.into_inner());
        if peer.is_fenced() {
            return Err(self.not_started(h));
        }
        let what = format!(
            "WRITE of {} at {} (id {:#x}, queue {}, epoch {})",
            h.length, h.offset, h.id, self.queue, peer.epoch
        );
        self.log(format!(
            "case {case}: {what} held, neither executed nor answered, until this connection is fenced (at most {} s)",
            HOLD_LIMIT.as_secs()
        ));
        let start = Instant::now();
        while !peer.is_fenced() && start.elapsed() < HOLD_LIMIT {
            thread::sleep(Duration::from_millis(10));
        }
        let by = if peer.is_fenced() {
            "by a fence"
        } else {
            "by the time limit, NOT fenced"
        };
        let (status, _) = self.execute(h, payload);
        self.log(format!(
            "case {case}: {what} released {by} after {} ms: executed now ({})",
            start.elapsed().as_millis(),
            status.as_str()
        ));
        drop(started);
        let f = self.w.frame(&h.reply(status), &[])?;
        let r = self.send_frame(f);
        self.log(format!(
            "case {case}: {what}: reply {}",
            match r {
                Ok(()) => "sent".to_string(),
                Err(e) => format!("not sent ({e})"),
            }
        ));
        Ok(())
    }

    /// The cross-queue cases on the READ `h` (data `data`): its reply also
    /// goes to the connection of another queue of the same local node, whose
    /// receiver must refuse it (the request is not of its queue) and never
    /// touch the request. Frames are made with this connection's sealer:
    /// right for the other connection too without a seq (none, crc32c).
    fn cross_queue(&mut self, case: &'static str, h: &Header, data: &[u8]) -> io::Result<()> {
        let ok = h.reply(Status::Ok);
        let right = self.w.frame(&ok, data)?;
        let Some((m, other)) = self.srv.other_peer(self.queue, self.client) else {
            self.log(format!(
                "case {case}: no connection of another queue within {} s: the right reply only",
                PEER_WAIT.as_secs()
            ));
            return self.send_frame(right);
        };
        let n = self.n;
        let what = format!("READ of queue {} (id {:#x})", self.queue, h.id);
        if case == "io-both-queues" {
            let r = send_on(&other, &right);
            let own = self.send_frame(right);
            self.log(format!(
                "case {case}: {what}: right reply sent on conn {m} (another queue){} and on conn {n}{}",
                sent(&r),
                sent(&own)
            ));
            return own;
        }
        // The data the other queue's receiver would put into the request's
        // pages if it took the header: whatever it writes after the right
        // reply completed the request lands in pages already handed back.
        let bad = self.w.frame(&ok, &vec![0xa5; data.len()])?;
        let r = send_on(&other, &bad[..HEADER_LEN]);
        self.log(format!(
            "case {case}: {what}: reply header sent on conn {m} (another queue){}",
            sent(&r)
        ));
        let own = self.out.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(500));
            let r = send_on(&own, &right);
            log(
                n,
                format!(
                    "case {case}: {what}: right reply sent on conn {n}{}",
                    sent(&r)
                ),
            );
            thread::sleep(Duration::from_millis(1500));
            let r = send_on(&other, &bad[HEADER_LEN..]);
            log(
                n,
                format!(
                    "case {case}: {what}: {} bytes of 0xa5 sent on conn {m}{}",
                    bad.len() - HEADER_LEN,
                    sent(&r)
                ),
            );
        });
        Ok(())
    }
}

/// How a send of a cross-queue case went, for its log line.
fn sent(r: &io::Result<()>) -> String {
    match r {
        Ok(()) => String::new(),
        Err(e) => format!(" (failed: {e})"),
    }
}

/// Whether `FEATURES_ALL` covers what the server grants (a compile-time
/// reminder when features are added).
const _: () = assert!(FEATURES_ALL == 0x1f);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ProtoError;
    use crate::wire::{client_handshake, hello_for, Established, HsError};

    /// A server with `case` (trigger at 1 MiB) on a free port: its address.
    fn start(case: &'static str) -> String {
        start_args(vec!["--case", case])
    }

    /// A server of 4 MiB (trigger at 1 MiB) with `args` on a free port: its
    /// address.
    fn start_args(args: Vec<&'static str>) -> String {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .to_string();
        let a = addr.clone();
        thread::spawn(move || {
            let sec = SecConfig::new("none", None, None).expect("none");
            let mut all = vec!["--size", "4M", "--trigger", "1M"];
            all.extend(args);
            let _ = main(&a, &all, &sec);
        });
        addr
    }

    /// Connection `queue` of 2 of a local node, past the handshake.
    fn connect(addr: &str, queue: u16) -> Wire {
        hello_in(addr, queue, 0).expect("handshake refused")
    }

    /// Connection `queue` of 2 of a local node in fencing `epoch`: past the
    /// handshake, or the status it was refused with.
    fn hello_in(addr: &str, queue: u16, epoch: u32) -> Result<Wire, Status> {
        let sec = SecConfig::new("none", None, None).expect("none");
        let mut hello = hello_for(&sec, 0, &[0; KEY_SHARE_LEN]);
        hello.queues = 2;
        hello.queue_index = queue;
        hello.client_id = 0x5eed;
        hello.epoch = epoch;
        for _ in 0..100 {
            if let Ok(mut w) = Wire::connect(addr, Duration::from_secs(5)) {
                return match client_handshake(&mut w, &sec, &hello, &Ephemeral::generate()) {
                    Ok(_) => Ok(w),
                    Err(crate::wire::HsError::Refused(s)) => Err(s),
                    Err(e) => panic!("handshake: {e}"),
                };
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("server at {addr} not up");
    }

    /// 4 KiB of the pattern of `seed` at 1 MiB.
    fn block(seed: u64) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        fill_pattern(&mut b, 1 << 20, seed);
        b
    }

    /// Reads 4 KiB at 1 MiB on `w` (request `id`): the seed of the
    /// pattern it holds (1: the server's; 77, 78: written), or `None`.
    fn read_block(w: &mut Wire, id: u64) -> Option<u64> {
        w.send(&Header::io(Op::Read, 0, id, 1 << 20, 4096), &[])
            .expect("send READ");
        let m = w.recv().expect("READ reply");
        assert_eq!((m.h.id, m.h.status), (id, Status::Ok));
        [1, 77, 78].into_iter().find(|&s| m.payload == block(s))
    }

    /// Sends the WRITE of `data` (4 KiB) at 1 MiB on `w` (request `id`).
    fn send_write(w: &mut Wire, id: u64, data: &[u8]) {
        w.send(&Header::io(Op::Write, 0, id, 1 << 20, 4096), data)
            .expect("send WRITE");
    }

    /// Whether the server closed `w` within 5 s.
    fn closed(w: &mut Wire) -> bool {
        matches!(w.wait_closed(Duration::from_secs(5)), Ok(Some(_)))
    }

    #[test]
    fn plans() {
        let live: &[Live] = &[(1, 7, 0, 10), (2, 7, 1, 10), (3, 8, 0, 20), (4, 7, 0, 9)];
        // A new epoch fences every queue of its client, no other client.
        assert_eq!(fence_plan(live, 7, 0, 11), Ok(vec![1, 2, 4]));
        assert_eq!(fence_plan(live, 7, 1, 11), Ok(vec![1, 2, 4]));
        // The same epoch: its own queue only (and older epochs).
        assert_eq!(fence_plan(live, 7, 0, 10), Ok(vec![1, 4]));
        assert_eq!(fence_plan(live, 7, 1, 10), Ok(vec![2, 4]));
        // Below a live connection's epoch: stale.
        assert_eq!(fence_plan(live, 7, 1, 9), Err(1));
        assert_eq!(fence_plan(live, 8, 1, 19), Err(3));
        // A new client fences nothing.
        assert_eq!(fence_plan(live, 9, 0, 0), Ok(vec![]));
        // Epoch 0 (a local node without epochs): per queue.
        let old: &[Live] = &[(1, 7, 0, 0), (2, 7, 1, 0)];
        assert_eq!(fence_plan(old, 7, 0, 0), Ok(vec![1]));
        assert_eq!(fence_plan(old, 7, 1, 0), Ok(vec![2]));
    }

    #[test]
    fn new_epoch_fences_every_queue() {
        let addr = start_args(vec![]);
        let mut q0 = hello_in(&addr, 0, 5).expect("queue 0");
        let mut q1 = hello_in(&addr, 1, 5).expect("queue 1");
        assert_eq!(read_block(&mut q0, 1), Some(1));
        assert_eq!(read_block(&mut q1, 2), Some(1));
        let mut next = hello_in(&addr, 1, 6).expect("epoch 6");
        assert!(closed(&mut q0), "queue 0 of epoch 5 not fenced");
        assert!(closed(&mut q1), "queue 1 of epoch 5 not fenced");
        assert_eq!(read_block(&mut next, 3), Some(1));
    }

    #[test]
    fn stale_hello_is_refused_busy() {
        let addr = start_args(vec![]);
        let mut q0 = hello_in(&addr, 0, 5).expect("queue 0");
        assert_eq!(hello_in(&addr, 1, 4).err(), Some(Status::Busy));
        assert_eq!(hello_in(&addr, 0, 4).err(), Some(Status::Busy));
        assert_eq!(read_block(&mut q0, 1), Some(1));
    }

    #[test]
    fn epoch_zero_fences_its_queue_only() {
        let addr = start_args(vec![]);
        let mut q0 = hello_in(&addr, 0, 0).expect("queue 0");
        let mut q1 = hello_in(&addr, 1, 0).expect("queue 1");
        let mut again = hello_in(&addr, 0, 0).expect("queue 0 again");
        assert!(closed(&mut q0), "queue 0 not fenced by its reconnection");
        assert_eq!(read_block(&mut q1, 1), Some(1));
        assert_eq!(read_block(&mut again, 2), Some(1));
    }

    #[test]
    fn held_write_finishes_before_the_fencing_hello_is_answered() {
        let addr = start("hold-write");
        let mut q0 = hello_in(&addr, 0, 5).expect("queue 0");
        let mut q1 = hello_in(&addr, 1, 5).expect("queue 1");
        send_write(&mut q0, 1, &block(77));
        thread::sleep(Duration::from_millis(300));
        // Held: not executed, so the other queue still reads the pattern.
        assert_eq!(read_block(&mut q1, 2), Some(1));
        // The next epoch's HELLO is answered once the held WRITE executed.
        let mut next = hello_in(&addr, 1, 6).expect("epoch 6");
        assert_eq!(read_block(&mut next, 3), Some(77));
        assert!(closed(&mut q0), "queue 0 of epoch 5 not fenced");
        assert!(closed(&mut q1), "queue 1 of epoch 5 not fenced");
        // A newer WRITE stays.
        send_write(&mut next, 4, &block(78));
        let m = next.recv().expect("WRITE reply");
        assert_eq!((m.h.id, m.h.status), (4, Status::Ok));
        assert_eq!(read_block(&mut next, 5), Some(78));
    }

    /// Sends the READ of 64 KiB at 1 MiB on `w`: its id and the right data.
    fn read(w: &mut Wire) -> (u64, Vec<u8>) {
        let id = 0x1234_0001_0007;
        w.send(&Header::io(Op::Read, 0, id, 1 << 20, 64 << 10), &[])
            .expect("send");
        let mut want = vec![0u8; 64 << 10];
        fill_pattern(&mut want, 1 << 20, 1);
        (id, want)
    }

    #[test]
    fn cross_queue_splits_the_reply() {
        let addr = start("io-cross-queue");
        let mut q0 = connect(&addr, 0);
        let mut q1 = connect(&addr, 1);
        let (id, want) = read(&mut q1);
        // The other queue's connection gets the header alone first.
        let mut hb = [0u8; HEADER_LEN];
        q0.read_exact(&mut hb).expect("header on queue 0");
        let h = Header::decode(&hb).expect("a header");
        assert_eq!((h.kind, h.id, h.payload), (Kind::IoReply, id, 64 << 10));
        let start = Instant::now();
        let m = q1.recv().expect("reply on queue 1");
        assert_eq!((m.h.id, m.h.status), (id, Status::Ok));
        assert_eq!(m.payload, want);
        let mut data = vec![0u8; 64 << 10];
        q0.read_exact(&mut data).expect("data on queue 0");
        assert!(start.elapsed() >= Duration::from_millis(1000));
        assert!(data.iter().all(|&b| b == 0xa5));
    }

    #[test]
    fn both_queues_get_the_reply() {
        let addr = start("io-both-queues");
        let mut q0 = connect(&addr, 0);
        let mut q1 = connect(&addr, 1);
        let (id, want) = read(&mut q0);
        for w in [&mut q0, &mut q1] {
            let m = w.recv().expect("reply");
            assert_eq!((m.h.id, m.h.status), (id, Status::Ok));
            assert_eq!(m.payload, want);
        }
    }

    /// A server with a key (aead) and `args`, named `dstpeer`, on a free
    /// port: its address and the configuration of a local node that
    /// matches it.
    fn start_keyed(args: Vec<&'static str>) -> (String, SecConfig) {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .to_string();
        let sec = SecConfig::new(
            "aead",
            None,
            Some(b"a test key of 32 bytes, exactly.".to_vec()),
        )
        .expect("valid");
        let (a, s) = (addr.clone(), sec.clone());
        thread::spawn(move || {
            let mut all = vec!["--size", "4M", "--trigger", "1M"];
            all.extend(args);
            let _ = main(&a, &all, &s);
        });
        (addr, sec)
    }

    /// The local node's handshake with `sec` at `addr`: what it
    /// established, or why it failed.
    fn keyed_handshake(addr: &str, sec: &SecConfig) -> Result<(Wire, Established), HsError> {
        for _ in 0..100 {
            if let Ok(mut w) = Wire::connect(addr, Duration::from_secs(5)) {
                let eph = Ephemeral::generate();
                let hello = hello_for(sec, 0, eph.public());
                return client_handshake(&mut w, sec, &hello, &eph).map(|e| (w, e));
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("server at {addr} not up");
    }

    /// The whole version 2 handshake between the two roles of this tool,
    /// then protected traffic; fresh key shares on every connection.
    #[test]
    fn keyed_session_works() {
        let (addr, sec) = start_keyed(vec![]);
        let (mut w, est) = keyed_handshake(&addr, &sec).expect("handshake");
        assert_eq!(est.grant.export.as_bytes(), b"dstpeer");
        w.send(&Header::ping(77), &[]).expect("send");
        let m = w.recv().expect("PONG");
        assert_eq!((m.h.kind, m.h.id), (Kind::Pong, 77));
        assert_eq!(read_block(&mut w, 5), Some(1));
        let (_, again) = keyed_handshake(&addr, &sec).expect("second handshake");
        assert_ne!(again.export_share, est.export_share);
        assert_ne!(again.keys, est.keys);
        // Asking for the export by its name works too.
        let mut named = sec.clone();
        named.want = Name::new(b"dstpeer").expect("valid");
        keyed_handshake(&addr, &named).expect("named handshake");
    }

    #[test]
    fn unknown_export_is_refused() {
        let (addr, mut sec) = start_keyed(vec![]);
        sec.want = Name::new(b"not.this.one").expect("valid");
        assert!(matches!(
            keyed_handshake(&addr, &sec),
            Err(HsError::Refused(Status::UnknownExport))
        ));
        let (addr, mut sec) = start_args_none_named();
        sec.want = Name::new(b"not.this.one").expect("valid");
        assert!(matches!(
            keyed_handshake(&addr, &sec),
            Err(HsError::Refused(Status::UnknownExport))
        ));
    }

    /// A server without a key named `dstpeer` and a matching configuration.
    fn start_args_none_named() -> (String, SecConfig) {
        (
            start_args(vec![]),
            SecConfig::new("none", None, None).expect("none"),
        )
    }

    #[test]
    fn wrong_key_is_refused() {
        let (addr, mut sec) = start_keyed(vec![]);
        sec.key = Some(b"another test key of 32 bytes....".to_vec());
        assert!(matches!(
            keyed_handshake(&addr, &sec),
            Err(HsError::Refused(Status::AuthFailed))
        ));
    }

    /// A server in `mode` (with a key for hmac and aead), replacing its
    /// key after `rekey` bytes if given, with `args`, on a free port: its
    /// address and the configuration of a local node that matches it.
    fn start_mode(mode: &str, rekey: Option<u64>, args: Vec<&'static str>) -> (String, SecConfig) {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .to_string();
        let key = (mode == "hmac" || mode == "aead")
            .then(|| b"a test key of 32 bytes, exactly.".to_vec());
        let sec = SecConfig::new(mode, None, key).expect("valid");
        let mut server_sec = sec.clone();
        server_sec.rekey.bytes = rekey;
        let a = addr.clone();
        thread::spawn(move || {
            let mut all = vec!["--size", "4M", "--trigger", "1M"];
            all.extend(args);
            let _ = main(&a, &all, &server_sec);
        });
        (addr, sec)
    }

    /// Both roles replace their keys, often: the client before every
    /// message, the server every 4 KiB; the traffic goes on, right.
    #[test]
    fn key_updates_both_ways() {
        for mode in ["aead", "hmac"] {
            let (addr, sec) = start_mode(mode, Some(4096), vec![]);
            let (mut w, _) = keyed_handshake(&addr, &sec).expect("handshake");
            w.tx.rekey.bytes = Some(1);
            let mut sent = 0;
            for i in 0..10u64 {
                let seed = if i % 2 == 0 { 77 } else { 78 };
                send_write(&mut w, 100 + i, &block(seed));
                let m = w.recv().expect("WRITE reply");
                assert_eq!((m.h.id, m.h.status), (100 + i, Status::Ok));
                assert_eq!(read_block(&mut w, 200 + i), Some(seed), "{mode}");
                sent += 2;
            }
            // Pipelined: 20 PINGs in one write, a KEY_UPDATE before each.
            let mut f = Vec::new();
            for k in 0..20 {
                f.extend(w.frame(&Header::ping(k), &[]).expect("frame"));
            }
            w.send_bytes(&f).expect("send");
            for k in 0..20 {
                let m = w.recv().expect("PONG");
                assert_eq!((m.h.kind, m.h.id), (Kind::Pong, k));
            }
            sent += 20;
            // Every message after the first had its own key.
            assert_eq!(w.tx.updates, sent - 1, "{mode}");
            // Every READ reply (4 KiB) used up the server's key.
            assert!(w.rx.updates >= 9, "{mode}: {} key updates", w.rx.updates);
        }
    }

    /// The probe cases with a KEY_UPDATE: this tool's local node takes the
    /// KEY_UPDATE and refuses the PING sealed with the old key after it.
    #[test]
    fn old_key_after_key_update_is_refused() {
        for (case, want) in [
            ("probe-key-update-old-key", ProtoError::OutOfOrder),
            ("probe-key-update-old-key-zero", ProtoError::BadTag),
        ] {
            let (addr, sec) = start_mode("aead", None, vec!["--case", case]);
            let (mut w, _) = keyed_handshake(&addr, &sec).expect("handshake");
            let m = w.recv().expect("the good PING");
            assert_eq!((m.h.kind, m.h.id), (Kind::Ping, GOOD_COOKIE));
            w.send(&Header::pong(m.h.id), &[]).expect("PONG");
            match w.recv() {
                Err(RecvError::Proto(e)) => assert_eq!(e, want, "{case}"),
                Err(e) => panic!("{case}: {e}"),
                Ok(m) => panic!("{case}: {:?} accepted", m.h.kind),
            }
            assert_eq!(w.rx.updates, 1, "{case}");
        }
    }

    /// In none and crc32c a KEY_UPDATE breaks the protocol.
    #[test]
    fn keyless_key_update_is_refused() {
        for mode in ["none", "crc32c"] {
            let (addr, sec) = start_mode(mode, None, vec!["--case", "io-key-update-keyless"]);
            let (mut w, _) = keyed_handshake(&addr, &sec).expect("handshake");
            w.send(&Header::io(Op::Read, 0, 1, 1 << 20, 4096), &[])
                .expect("READ");
            match w.recv() {
                Err(RecvError::Proto(e)) => assert_eq!(e, ProtoError::BadKind, "{mode}"),
                Err(e) => panic!("{mode}: {e}"),
                Ok(m) => panic!("{mode}: {:?} accepted", m.h.kind),
            }
        }
        // The server refuses one from the local node alike, and closes.
        let (addr, sec) = start_mode("crc32c", None, vec![]);
        let (mut w, _) = keyed_handshake(&addr, &sec).expect("handshake");
        let f = w.frame(&Header::key_update(), &[]).expect("frame");
        w.send_bytes(&f).expect("send");
        assert!(closed(&mut w), "a KEY_UPDATE in crc32c was taken");
    }

    /// The io-resize-* cases: a RESIZE of a bad size, sealed in order in
    /// every mode, which this tool's check refuses; then the right reply.
    #[test]
    fn bad_resizes_are_refused() {
        for mode in ["none", "crc32c", "aead"] {
            for case in ["io-resize-unaligned", "io-resize-zero", "io-resize-huge"] {
                let (addr, sec) = start_mode(mode, None, vec!["--case", case]);
                let (mut w, est) = keyed_handshake(&addr, &sec).expect("handshake");
                assert_ne!(est.grant.features & FEATURE_RESIZE, 0, "{mode} {case}");
                w.send(&Header::io(Op::Read, 0, 1, 1 << 20, 4096), &[])
                    .expect("READ");
                let m = w.recv().expect("the RESIZE, opened");
                assert_eq!(m.h.kind, Kind::Resize, "{mode} {case}");
                let limits = est.grant.limits();
                assert!(
                    crate::proto::validate_resize(&m.h, &limits).is_err(),
                    "{mode} {case}: {} accepted",
                    m.h.offset
                );
                let m = w.recv().expect("the reply after it");
                assert_eq!((m.h.kind, m.h.status), (Kind::IoReply, Status::Ok));
            }
        }
    }

    /// The lying exports' cases that the local node of this tool must
    /// refuse, each with the reason it gives.
    #[test]
    fn lying_exports_are_refused() {
        for (case, want, named) in [
            ("challenge-other-export", "not the one asked for", true),
            ("reply-other-export", "not the one asked for", false),
            ("reply-empty-name", "not the one asked for", false),
            ("challenge-zero-share", "all-zero DH", false),
            ("challenge-small-order", "all-zero DH", false),
            ("challenge-empty-name", "out of range", false),
            ("challenge-name-junk", "out of range", false),
            ("challenge-old-size", "payload", false),
            ("proof-bad", "proof", false),
            ("proof-wrong-key", "proof", false),
            ("no-challenge", "without a CHALLENGE", false),
        ] {
            let (addr, mut sec) = start_keyed(vec!["--case", case]);
            if named {
                sec.want = Name::new(b"dstpeer").expect("valid");
            }
            match keyed_handshake(&addr, &sec) {
                Err(HsError::Bad(why)) => assert!(why.contains(want), "{case}: {why}"),
                Err(e) => panic!("{case}: {e}"),
                Ok(_) => panic!("{case}: the lying export was accepted"),
            }
        }
        // Asked for no name, the other export's CHALLENGE is honest.
        let (addr, sec) = start_keyed(vec!["--case", "challenge-other-export"]);
        keyed_handshake(&addr, &sec).expect("honest when not asked");
    }
}
