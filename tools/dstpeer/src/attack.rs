// SPDX-License-Identifier: GPL-2.0

//! `dstpeer attack-export ADDR:PORT --case NAME|all|list`: a hostile local
//! node against an export, one named scenario at a time.
//!
//! Every case checks the export's reaction (a refusal status, a closed
//! connection within a bound, a request refused while the session goes on)
//! and then that a fresh well-behaved session still works: a write and a
//! read back at the scratch offset, or two equal reads on a read-only
//! export. Cases that try to write where they must not (bit flips, refused
//! writes) read the victim range before and after, through fresh sessions,
//! and require it unchanged.
//!
//! `--protection`, `--alg` and `--key-file` give the export's settings;
//! `--case all` runs every case these settings allow (see `--case list`).
//! With `--rekey-after` or `--rekey-interval` every session of the run
//! (fresh ones included) replaces its sending key on its own; the
//! `key-update-*` cases send their KEY_UPDATEs whatever these say.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::client::{check_status, parse_size, unexpected, usage, Conn, Res};
use crate::examples::hex;
use crate::proto::{
    ChallengeBody, Header, HelloBody, Kind, Name, Op, Protection, Status, AUTH_LEN, CHALLENGE_LEN,
    FLAG_FUA, HEADER_LEN, HELLO_LEN, KEY_SHARE_LEN, MAGIC, MAX_IO_BYTES_LIMIT, NAME_LEN,
    PERM_WRITE, VERSION,
};
use crate::sec::{self, Ephemeral, Schedule, SecConfig};
use crate::wire::{self, Wire};

pub(crate) const USAGE: &str = "  attack-export ADDR:PORT --case NAME|all|list [OPTIONS]
                              hostile local node against an export (the security
                              options give the export's settings)
    --scratch OFF (16M)       where fresh sessions write and read back (64 KiB)
    --victim OFF (4M)         where refused and tampered writes aim (64 KiB)
    --half-open N (64)        connections of the half-open case (the session cap)
    --skip NAME[,NAME...]     cases --case all leaves out
";

/// What a case needs of the export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Needs {
    Any,
    /// The export uses a key.
    Key,
    /// The export uses no key.
    NoKey,
    /// The export's mode has a trailer (crc32c, hmac, aead).
    Trailer,
    /// The export's mode has sequence numbers (hmac, aead).
    Seq,
    /// The export's mode has no keys to replace (none, crc32c).
    NoSeq,
    /// The export's mode has an algorithm (hmac, aead).
    Alg,
    /// The export is read-only.
    ReadOnly,
    /// The export is read-write.
    ReadWrite,
}

impl Needs {
    fn as_str(self) -> &'static str {
        match self {
            Needs::Any => "any export",
            Needs::Key => "an export with a key",
            Needs::NoKey => "an export without a key",
            Needs::Trailer => "crc32c, hmac or aead",
            Needs::Seq => "hmac or aead",
            Needs::NoSeq => "none or crc32c",
            Needs::Alg => "hmac or aead",
            Needs::ReadOnly => "a read-only export",
            Needs::ReadWrite => "a read-write export",
        }
    }
}

/// The state of an attack run.
struct Ctx {
    addr: String,
    sec: SecConfig,
    scratch: u64,
    victim: u64,
    half_open: usize,
    /// Whether the export grants WRITE (from a first handshake).
    writable: bool,
    /// The export's size.
    size: u64,
    /// The export's logical block size.
    block: u32,
    /// Fresh-session checks done (the seed of the next one).
    checks: u64,
    /// The export's identity (from the first handshake).
    identity: Name,
}

type Case = fn(&mut Ctx) -> Res<String>;

/// Every case: name, what it needs, what it does and expects, the code.
#[rustfmt::skip]
const CASES: &[(&str, Needs, &str, Case)] = &[
    ("first-bad-magic", Needs::Any, "a header with a bad magic first: close", first_bad_magic),
    ("first-bad-kind", Needs::Any, "an undefined kind (0x7f) first: close", first_bad_kind),
    ("first-key-update", Needs::Any, "a KEY_UPDATE before HELLO: close", first_key_update),
    ("first-io", Needs::Any, "an IO request before HELLO: close", first_io),
    ("first-ping", Needs::Any, "a PING before HELLO: close", first_ping),
    ("first-auth", Needs::Any, "an AUTH before HELLO: close", first_auth),
    ("first-hello-reply", Needs::Any, "a HELLO_REPLY before HELLO: close", first_hello_reply),
    ("hello-bad-op", Needs::Any, "HELLO header with op 1: close", hello_bad_op),
    ("hello-bad-flags", Needs::Any, "HELLO header with flags 1: close", hello_bad_flags),
    ("hello-bad-status", Needs::Any, "HELLO header with status 1: close", hello_bad_status),
    ("hello-undefined-status", Needs::Any, "HELLO header with status 99: close", hello_undefined_status),
    ("hello-reserved", Needs::Any, "HELLO header with reserved bytes: close", hello_reserved),
    ("hello-id", Needs::Any, "HELLO header with an id: close", hello_id),
    ("hello-old-size", Needs::Any, "HELLO of 32 bytes (before security): close", hello_old_size),
    ("hello-v1-size", Needs::Any, "HELLO of 136 bytes (version 1's): close", hello_v1_size),
    ("hello-oversized", Needs::Any, "HELLO claiming 4 MiB + 1: close", hello_oversized),
    ("truncated-header", Needs::Any, "20 header bytes, then EOF: close", truncated_header),
    ("truncated-hello", Needs::Any, "HELLO header and 60 body bytes, then EOF: close", truncated_hello),
    ("version-above", Needs::Any, "versions 3..=5: VERSION", version_above),
    ("version-1", Needs::Any, "versions 1..=1 (no longer spoken): VERSION", version_1),
    ("version-zero", Needs::Any, "versions 0..=0: INVALID", version_zero),
    ("version-inverted", Needs::Any, "versions 3..=2: INVALID", version_inverted),
    ("hello-max-io", Needs::Any, "max IO 1000: INVALID", hello_max_io),
    ("hello-queues", Needs::Any, "65 queues: INVALID", hello_queues),
    ("hello-depth", Needs::Any, "queue depth 1025: INVALID", hello_depth),
    ("hello-queue-index", Needs::Any, "queue index 4 of 4: INVALID", hello_queue_index),
    ("epoch-stale", Needs::Any, "HELLO of an epoch below a live session's (same client): BUSY, the live session goes on", epoch_stale),
    ("epoch-fences-device", Needs::Any, "sessions of queues 0 and 1 of one client, epoch E: both live; a HELLO of epoch E+1: both closed", epoch_fences_device),
    ("hello-protection", Needs::Any, "protection mode 9: INVALID", hello_protection),
    ("hello-flags", Needs::Any, "an undefined HELLO flag (bit 2): INVALID", hello_flags),
    ("hello-alg-no-nul", Needs::Any, "64 non-NUL alg bytes: INVALID", hello_alg_no_nul),
    ("hello-alg-junk", Needs::Any, "bytes after the alg's NUL: INVALID", hello_alg_junk),
    ("hello-share-no-key", Needs::Any, "a key share without a key: INVALID", hello_share_no_key),
    ("hello-zero-share", Needs::Key, "an all-zero key share: INVALID", hello_zero_share),
    ("hello-small-order-share", Needs::Key, "each key share of small order (7): INVALID", hello_small_order_share),
    ("hello-empty-client", Needs::Any, "an empty client identity: INVALID", hello_empty_client),
    ("hello-client-junk", Needs::Any, "bytes after the client identity's NUL: INVALID", hello_client_junk),
    ("hello-export-no-nul", Needs::Any, "64 non-NUL export name bytes: INVALID", hello_export_no_nul),
    ("hello-client-space", Needs::Any, "a client identity with a space: INVALID", hello_client_space),
    ("hello-other-export", Needs::Any, "a HELLO for another export identity: UNKNOWN_EXPORT", hello_other_export),
    ("hello-own-export", Needs::Any, "a HELLO naming the export's identity (from the first handshake): a session", hello_own_export),
    ("hello-hmac-no-key", Needs::Any, "hmac without a key: INVALID", hello_hmac_no_key),
    ("mismatch-protection", Needs::Any, "another protection mode: MISMATCH", mismatch_protection),
    ("mismatch-alg", Needs::Alg, "another algorithm: MISMATCH", mismatch_alg),
    ("unauthenticated", Needs::Key, "no key against an export with a key: MISMATCH", unauthenticated),
    ("unasked-key", Needs::NoKey, "a key against an export without: MISMATCH", unasked_key),
    ("wrong-key", Needs::Key, "a proof made with another key: AUTH_FAILED", wrong_key),
    ("auth-replayed", Needs::Key, "the HELLO and AUTH of an earlier connection: a new key share, AUTH_FAILED", auth_replayed),
    ("auth-other-client", Needs::Key, "a proof made for another client identity than the HELLO's: AUTH_FAILED", auth_other_client),
    ("auth-other-export", Needs::Key, "a proof made for another export identity than the CHALLENGE's: AUTH_FAILED", auth_other_export),
    ("auth-unbound-dh", Needs::Key, "a proof made with an all-zero DH: AUTH_FAILED", auth_unbound_dh),
    ("auth-not-auth", Needs::Key, "a PING instead of AUTH: close", auth_not_auth),
    ("auth-truncated", Needs::Key, "AUTH header and 10 bytes, then EOF: close", auth_truncated),
    ("auth-twice", Needs::Key, "AUTH twice before the reply: close", auth_twice),
    ("second-hello", Needs::Any, "HELLO after the handshake: close", second_hello),
    ("after-hello-reply", Needs::Any, "HELLO_REPLY from the local node: close", after_hello_reply),
    ("after-io-reply", Needs::Any, "IO_REPLY from the local node: close", after_io_reply),
    ("after-challenge", Needs::Any, "CHALLENGE after the handshake: close", after_challenge),
    ("after-auth", Needs::Any, "AUTH after the handshake: close", after_auth),
    ("io-bad-magic", Needs::Any, "IO with a bad magic: close", io_bad_magic),
    ("io-bad-kind", Needs::Any, "an undefined kind (0x7f) after the handshake: close", io_bad_kind),
    ("io-bad-op", Needs::Any, "IO with op 6: close", io_bad_op),
    ("io-bad-flags", Needs::Any, "IO with flag bit 5: close", io_bad_flags),
    ("io-undefined-status", Needs::Any, "IO with status 99: close", io_undefined_status),
    ("io-reserved", Needs::Any, "IO with reserved bytes: close", io_reserved),
    ("io-payload-limit", Needs::Any, "IO claiming 4 MiB + 1 of payload: close", io_payload_limit),
    ("ping-payload", Needs::Any, "PING with 8 bytes of payload: close", ping_payload),
    ("io-status-set", Needs::Any, "READ with status IO_ERROR: INVALID, session goes on", io_status_set),
    ("io-read-fua", Needs::Any, "READ with FUA: INVALID, session goes on", io_read_fua),
    ("io-read-payload", Needs::Any, "READ carrying 4 KiB: INVALID, session goes on", io_read_payload),
    ("io-zero-length", Needs::Any, "READ of 0 bytes: INVALID, session goes on", io_zero_length),
    ("io-flush-range", Needs::Any, "FLUSH with a range: INVALID, session goes on", io_flush_range),
    ("io-too-long", Needs::Any, "READ above the max IO: INVALID, session goes on", io_too_long),
    ("io-misaligned", Needs::Any, "READs at offset 1 and of 100 bytes: INVALID", io_misaligned),
    ("io-out-of-range", Needs::Any, "READs past the end, overflowing: RANGE", io_out_of_range),
    ("write-payload-mismatch", Needs::ReadWrite, "WRITE of 4 KiB carrying 512: INVALID, data unchanged", write_payload_mismatch),
    ("write-oversized", Needs::ReadWrite, "WRITE of 2 MiB (above max IO): INVALID, data unchanged", write_oversized),
    ("write-misaligned", Needs::ReadWrite, "WRITE at a misaligned offset: INVALID, data unchanged", write_misaligned),
    ("write-out-of-range", Needs::ReadWrite, "WRITE across the end: RANGE", write_out_of_range),
    ("read-only-writes", Needs::ReadOnly, "WRITE, FUA, DISCARD, WRITE_ZEROES on a read-only export: refused, data unchanged", read_only_writes),
    ("bitflip-payload", Needs::Trailer, "WRITE with a payload bit flipped after sealing: close, data unchanged", bitflip_payload),
    ("bitflip-header", Needs::Trailer, "WRITE with a header bit (id) flipped after sealing: close, data unchanged", bitflip_header),
    ("bitflip-tag", Needs::Trailer, "WRITE with a trailer bit flipped: close, data unchanged", bitflip_tag),
    ("bitflip-seq", Needs::Seq, "WRITE with a bit of its seq flipped: close, data unchanged", bitflip_seq),
    ("no-trailer", Needs::Trailer, "WRITE without its trailer: close, data unchanged", no_trailer),
    ("replay-write", Needs::Seq, "an earlier sealed WRITE again: close, the later data stays", replay_write),
    ("replay-old-seq", Needs::Seq, "1100 PINGs, then a new one sealed with the long used seq 5: close", replay_old_seq),
    ("seq-reuse", Needs::Seq, "a new PING sealed with a used seq: close", seq_reuse),
    ("reorder", Needs::Seq, "seqs 1 then 0: close, neither answered", reorder),
    ("gap", Needs::Seq, "seq 0 (answered), then seq 2 (1 never sent): close", gap),
    ("key-update-keyless", Needs::NoSeq, "a KEY_UPDATE in a mode without keys: close", key_update_keyless),
    ("key-update-malformed", Needs::Any, "a KEY_UPDATE with an id, one with 8 bytes of payload: close", key_update_malformed),
    ("key-update-old-key", Needs::Seq, "3 PINGs, a good KEY_UPDATE, then a PING still sealed with the old key at its next seq (and on a second session at seq 0): close, not answered", key_update_old_key),
    ("key-update-seq-not-reset", Needs::Seq, "a good KEY_UPDATE, then a PING sealed with the new key but at the old key's next seq: close", key_update_seq_not_reset),
    ("key-update-reorder", Needs::Seq, "a KEY_UPDATE sealed with the seq after the next (one skipped): close", key_update_reorder),
    ("key-update-every-message", Needs::Seq, "5 good KEY_UPDATEs in a row, then one before each of about 300 messages (PINGs, 100 in one write, 4 KiB WRITEs and READs): all answered right", key_update_every_message),
    ("slow-loris", Needs::Any, "HELLO one byte every 250 ms: closed within the 10 s handshake timeout", slow_loris),
    ("slow-loris-auth", Needs::Key, "AUTH one byte every 250 ms: closed within 10 s of connecting", slow_loris_auth),
    ("half-open", Needs::Any, "--half-open connections that never send: all closed within 15 s", half_open),
];

/// The case list for `--case list`.
fn case_list() -> String {
    CASES
        .iter()
        .map(|(n, needs, what, _)| format!("{n:24} needs {:22} {what}\n", needs.as_str()))
        .collect()
}

/// `dstpeer attack-export ADDR:PORT ...`.
pub(crate) fn main(addr: &str, args: &[&str], sec: &SecConfig) -> Res {
    let mut names = Vec::new();
    let mut skip: Vec<String> = Vec::new();
    let mut ctx = Ctx {
        addr: addr.to_string(),
        sec: sec.clone(),
        scratch: 16 << 20,
        victim: 4 << 20,
        half_open: 64,
        writable: false,
        size: 0,
        block: 512,
        checks: 0,
        identity: Name::EMPTY,
    };
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        let mut val = || {
            it.next()
                .copied()
                .ok_or_else(|| usage(format!("{a} needs a value")))
        };
        match a {
            "--case" => names.push(val()?.to_string()),
            "--scratch" => ctx.scratch = parse_size(val()?)?,
            "--victim" => ctx.victim = parse_size(val()?)?,
            "--half-open" => ctx.half_open = parse_size(val()?)? as usize,
            "--skip" => skip.extend(val()?.split(',').map(str::to_string)),
            _ => return Err(usage(format!("attack-export: unknown argument {a}"))),
        }
    }
    if names.iter().any(|n| n == "list") {
        print!("{}", case_list());
        return Ok(());
    }
    if names.is_empty() {
        return Err(usage("attack-export needs --case NAME, all or list"));
    }
    // What the export grants decides the read-only cases.
    let mut c = Conn::connect(&ctx.addr, &ctx.sec)?;
    let g = c.handshake(0)?;
    drop(c);
    ctx.writable = g.perms & PERM_WRITE != 0;
    ctx.size = g.size;
    ctx.block = g.logical_block_size;
    ctx.identity = g.export;
    let mut run: Vec<(&str, Needs, Case)> = Vec::new();
    for name in &names {
        if name == "all" {
            for &(n, needs, _, f) in CASES {
                if ctx.meets(needs) && !skip.iter().any(|s| s == n) && !run.iter().any(|r| r.0 == n)
                {
                    run.push((n, needs, f));
                }
            }
            continue;
        }
        let &(n, needs, _, f) = CASES
            .iter()
            .find(|c| c.0 == name)
            .ok_or_else(|| usage(format!("unknown case {name} (see --case list)")))?;
        if !ctx.meets(needs) {
            return Err(usage(format!("case {n} needs {}", needs.as_str())));
        }
        run.push((n, needs, f));
    }
    println!(
        "attack-export {}: protection {}{}, {} export, {} cases",
        ctx.addr,
        ctx.sec.protection.as_str(),
        if ctx.sec.auth() { " with a key" } else { "" },
        if ctx.writable {
            "read-write"
        } else {
            "read-only"
        },
        run.len()
    );
    let mut failed = Vec::new();
    let start = Instant::now();
    for (name, _, f) in run.iter().copied() {
        let t0 = Instant::now();
        let r = f(&mut ctx).and_then(|outcome| {
            ctx.fresh_session()
                .map(|fresh| format!("{outcome}; {fresh}"))
                .map_err(|e| unexpected(format!("{outcome}; but then: {}", e.msg)))
        });
        let secs = t0.elapsed().as_secs_f64();
        match r {
            Ok(outcome) => println!("PASS {name}: {outcome} ({secs:.1} s)"),
            Err(e) => {
                println!("FAIL {name}: {} ({secs:.1} s)", e.msg);
                failed.push(name);
            }
        }
        io::stdout().flush()?;
    }
    println!(
        "{} passed, {} failed in {:.1} s{}",
        run.len() - failed.len(),
        failed.len(),
        start.elapsed().as_secs_f64(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(": {}", failed.join(" "))
        }
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(unexpected(format!("{} cases failed", failed.len())))
    }
}

/// How long the export may take to close after a violation.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// The export's handshake timeout (Documentation/protocol.md, "Security").
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Slack on top of the handshake timeout (a loaded, emulated guest).
const SLACK: Duration = Duration::from_secs(4);

impl Ctx {
    fn meets(&self, needs: Needs) -> bool {
        let p = self.sec.protection;
        match needs {
            Needs::Any => true,
            Needs::Key => self.sec.auth(),
            Needs::NoKey => !self.sec.auth(),
            Needs::Trailer => p != Protection::None,
            Needs::Seq | Needs::Alg => p.needs_key(),
            Needs::NoSeq => !p.needs_key(),
            Needs::ReadOnly => !self.writable,
            Needs::ReadWrite => self.writable,
        }
    }

    /// A well-behaved HELLO body for the export's settings, with a fresh
    /// key share (whose private key is dropped: for HELLOs that are never
    /// answered with a CHALLENGE).
    fn hello(&self) -> HelloBody {
        wire::hello_for(&self.sec, 0, Ephemeral::generate().public())
    }

    /// A new connection, before the handshake.
    fn connect(&self) -> Res<Conn> {
        Conn::connect(&self.addr, &self.sec)
    }

    /// A new connection after a successful handshake.
    fn session(&self) -> Res<Conn> {
        let mut c = self.connect()?;
        c.handshake(0)?;
        Ok(c)
    }

    /// The fresh-session check after each case.
    fn fresh_session(&mut self) -> Res<String> {
        self.checks += 1;
        let mut c = self.session()?;
        let len = 64 << 10;
        if self.writable {
            let seed = 0xf2e5_0000 + self.checks;
            c.write_pattern(self.scratch, len, seed)?;
            c.verify_pattern(self.scratch, len, seed)?;
            Ok("a fresh session wrote and read back 64 KiB".into())
        } else {
            let a = c.read_all(self.scratch, len)?;
            let b = c.read_all(self.scratch, len)?;
            if a != b {
                return Err(unexpected("two reads of the same range differ"));
            }
            Ok("a fresh session read 64 KiB twice, equal".into())
        }
    }

    /// The 64 KiB victim range, read through a fresh session.
    fn victim_data(&self) -> Res<Vec<u8>> {
        self.session()?.read_all(self.victim, 64 << 10)
    }

    /// Runs `attack`, requiring the victim range unchanged afterwards.
    fn victim_unchanged(&self, attack: impl FnOnce(&Ctx) -> Res<String>) -> Res<String> {
        let before = self.victim_data()?;
        let outcome = attack(self)?;
        if self.victim_data()? != before {
            return Err(unexpected(format!(
                "{outcome}; but the victim range at {} changed",
                self.victim
            )));
        }
        Ok(format!("{outcome}; victim data unchanged"))
    }
}

/// Requires the export to close `w` within `limit`: the outcome text.
fn expect_close(w: &mut Wire, limit: Duration) -> Res<String> {
    match w.wait_closed(limit)? {
        Some((t, 0)) => Ok(format!("closed after {:.1} s", t.as_secs_f64())),
        Some((t, n)) => Ok(format!(
            "closed after {:.1} s ({n} bytes received first)",
            t.as_secs_f64()
        )),
        None => Err(unexpected(format!(
            "the export did not close the connection within {limit:?}"
        ))),
    }
}

/// Like [`expect_close`], but nothing may arrive first.
fn expect_silent_close(w: &mut Wire, limit: Duration) -> Res<String> {
    match w.wait_closed(limit)? {
        Some((t, 0)) => Ok(format!("closed after {:.1} s", t.as_secs_f64())),
        Some((_, n)) => Err(unexpected(format!(
            "the export sent {n} bytes instead of just closing"
        ))),
        None => Err(unexpected(format!(
            "the export did not close the connection within {limit:?}"
        ))),
    }
}

/// Sends `bytes` on a fresh connection and requires a silent close.
fn raw_first(ctx: &Ctx, bytes: &[u8]) -> Res<String> {
    let mut c = ctx.connect()?;
    c.w.send_bytes(bytes)?;
    expect_silent_close(&mut c.w, CLOSE_LIMIT)
}

/// A valid HELLO header with `f` applied to its bytes, and a valid body.
fn hello_patched(ctx: &Ctx, f: impl FnOnce(&mut [u8; HEADER_LEN])) -> Res<String> {
    let mut h = Header::hello().encode();
    f(&mut h);
    let mut msg = h.to_vec();
    msg.extend_from_slice(&ctx.hello().encode());
    raw_first(ctx, &msg)
}

fn first_bad_magic(ctx: &mut Ctx) -> Res<String> {
    let mut h = Header::hello().encode();
    h[..4].copy_from_slice(&(MAGIC ^ 0x0100_0000).to_be_bytes());
    let mut msg = h.to_vec();
    msg.extend_from_slice(&[0u8; HELLO_LEN]);
    raw_first(ctx, &msg)
}

fn first_bad_kind(ctx: &mut Ctx) -> Res<String> {
    let mut h = Header::ping(0).encode();
    h[4] = 0x7f;
    raw_first(ctx, &h)
}

fn first_key_update(ctx: &mut Ctx) -> Res<String> {
    raw_first(ctx, &Header::key_update().encode())
}

fn first_io(ctx: &mut Ctx) -> Res<String> {
    raw_first(ctx, &Header::io(Op::Read, 0, 1, 0, 4096).encode())
}

fn first_ping(ctx: &mut Ctx) -> Res<String> {
    raw_first(ctx, &Header::ping(1).encode())
}

fn first_auth(ctx: &mut Ctx) -> Res<String> {
    let mut msg = Header::auth().encode().to_vec();
    msg.extend_from_slice(&[0u8; AUTH_LEN]);
    raw_first(ctx, &msg)
}

fn first_hello_reply(ctx: &mut Ctx) -> Res<String> {
    raw_first(ctx, &Header::hello_reply(Status::Busy).encode())
}

fn hello_bad_op(ctx: &mut Ctx) -> Res<String> {
    hello_patched(ctx, |h| h[5] = 1)
}

fn hello_bad_flags(ctx: &mut Ctx) -> Res<String> {
    hello_patched(ctx, |h| h[7] = 1)
}

fn hello_bad_status(ctx: &mut Ctx) -> Res<String> {
    hello_patched(ctx, |h| h[11] = 1)
}

fn hello_undefined_status(ctx: &mut Ctx) -> Res<String> {
    hello_patched(ctx, |h| h[11] = 99)
}

fn hello_reserved(ctx: &mut Ctx) -> Res<String> {
    hello_patched(ctx, |h| h[39] = 1)
}

fn hello_id(ctx: &mut Ctx) -> Res<String> {
    hello_patched(ctx, |h| h[23] = 1)
}

/// A HELLO whose header and body claim `len` bytes, the first `len` of a
/// valid body.
fn hello_sized(ctx: &Ctx, len: usize) -> Res<String> {
    let mut h = Header::hello().encode();
    h[12..16].copy_from_slice(&(len as u32).to_be_bytes());
    let mut msg = h.to_vec();
    msg.extend_from_slice(&ctx.hello().encode()[..len]);
    raw_first(ctx, &msg)
}

fn hello_old_size(ctx: &mut Ctx) -> Res<String> {
    hello_sized(ctx, 32)
}

fn hello_v1_size(ctx: &mut Ctx) -> Res<String> {
    hello_sized(ctx, 136)
}

fn hello_oversized(ctx: &mut Ctx) -> Res<String> {
    hello_patched(ctx, |h| {
        h[12..16].copy_from_slice(&(MAX_IO_BYTES_LIMIT + 1).to_be_bytes())
    })
}

/// Sends `bytes`, closes our sending side and waits for the export to close.
fn truncated(ctx: &Ctx, bytes: &[u8]) -> Res<String> {
    let mut c = ctx.connect()?;
    c.w.send_bytes(bytes)?;
    c.w.sock.shutdown(Shutdown::Write)?;
    expect_silent_close(&mut c.w, CLOSE_LIMIT)
        .map(|s| format!("sent {} bytes, EOF; {s}", bytes.len()))
}

fn truncated_header(ctx: &mut Ctx) -> Res<String> {
    truncated(ctx, &Header::hello().encode()[..20])
}

fn truncated_hello(ctx: &mut Ctx) -> Res<String> {
    let mut msg = Header::hello().encode().to_vec();
    msg.extend_from_slice(&ctx.hello().encode()[..60]);
    truncated(ctx, &msg)
}

/// Sends a HELLO changed by `f` and requires the refusal `want`, then a
/// close.
fn refused_hello(ctx: &Ctx, want: Status, f: impl FnOnce(&mut HelloBody)) -> Res<String> {
    let mut c = ctx.connect()?;
    let mut hello = c.hello_body(0);
    f(&mut hello);
    refused_with(&mut c, &hello.encode(), want)
}

/// Sends the HELLO body `body` (bytes) and requires the refusal `want`.
fn refused_with(c: &mut Conn, body: &[u8; HELLO_LEN], want: Status) -> Res<String> {
    let mut msg = Header::hello().encode().to_vec();
    msg.extend_from_slice(body);
    c.w.send_bytes(&msg)?;
    let m = c.w.recv()?;
    if m.h.kind != Kind::HelloReply {
        return Err(unexpected(format!(
            "{:?} instead of HELLO_REPLY {}",
            m.h.kind,
            want.as_str()
        )));
    }
    if m.h.status != want {
        return Err(unexpected(format!(
            "HELLO_REPLY {}, expected {}",
            m.h.status.as_str(),
            want.as_str()
        )));
    }
    let closed = expect_silent_close(&mut c.w, CLOSE_LIMIT)?;
    Ok(format!("refused: {}; {closed}", want.as_str()))
}

/// Like [`refused_hello`] on the encoded bytes.
fn refused_bytes(ctx: &Ctx, want: Status, f: impl FnOnce(&mut [u8; HELLO_LEN])) -> Res<String> {
    let mut c = ctx.connect()?;
    let mut body = c.hello_body(0).encode();
    f(&mut body);
    refused_with(&mut c, &body, want)
}

fn version_above(ctx: &mut Ctx) -> Res<String> {
    refused_hello(ctx, Status::Version, |h| {
        h.min_version = VERSION + 1;
        h.max_version = VERSION + 3;
    })
}

fn version_1(ctx: &mut Ctx) -> Res<String> {
    refused_hello(ctx, Status::Version, |h| {
        h.min_version = 1;
        h.max_version = 1;
    })
}

fn version_zero(ctx: &mut Ctx) -> Res<String> {
    refused_hello(ctx, Status::Invalid, |h| {
        h.min_version = 0;
        h.max_version = 0;
    })
}

fn version_inverted(ctx: &mut Ctx) -> Res<String> {
    refused_hello(ctx, Status::Invalid, |h| {
        h.min_version = 3;
        h.max_version = 2;
    })
}

fn hello_max_io(ctx: &mut Ctx) -> Res<String> {
    refused_hello(ctx, Status::Invalid, |h| h.max_io_bytes = 1000)
}

fn hello_queues(ctx: &mut Ctx) -> Res<String> {
    refused_hello(ctx, Status::Invalid, |h| h.queues = 65)
}

fn hello_depth(ctx: &mut Ctx) -> Res<String> {
    refused_hello(ctx, Status::Invalid, |h| h.queue_depth = 1025)
}

fn hello_queue_index(ctx: &mut Ctx) -> Res<String> {
    refused_hello(ctx, Status::Invalid, |h| {
        h.queues = 4;
        h.queue_index = 4;
    })
}

/// A random client id for the fencing cases, so that they fence nothing
/// but their own sessions.
fn fencing_client() -> u64 {
    u64::from_ne_bytes(sec::random_bytes::<8>()) | 1
}

/// A session of `client` on queue `queue` of 2, in `epoch`; or the refusal.
fn epoch_session(ctx: &Ctx, client: u64, queue: u16, epoch: u32) -> Res<Result<Conn, Status>> {
    let mut c = ctx.connect()?;
    let hello = HelloBody {
        queues: 2,
        client_id: client,
        queue_index: queue,
        epoch,
        ..c.hello_body(0)
    };
    Ok(c.try_handshake(&hello)?.map(|_| c))
}

/// Whether a session still answers: one 4 KiB READ.
fn answers(c: &mut Conn) -> Res {
    c.read_all(0, 4096).map(|_| ())
}

fn epoch_stale(ctx: &mut Ctx) -> Res<String> {
    let client = fencing_client();
    let mut live = epoch_session(ctx, client, 0, 1000)?
        .map_err(|s| unexpected(format!("epoch 1000 refused: {}", s.as_str())))?;
    match epoch_session(ctx, client, 0, 999)? {
        Err(Status::Busy) => {}
        Err(s) => {
            return Err(unexpected(format!(
                "stale HELLO refused with {}",
                s.as_str()
            )))
        }
        Ok(_) => {
            return Err(unexpected(
                "a HELLO of epoch 999 was accepted after one of 1000",
            ))
        }
    }
    answers(&mut live).map_err(|e| unexpected(format!("the live session was hit: {}", e.msg)))?;
    Ok("stale HELLO refused BUSY; the live session still answers".into())
}

fn epoch_fences_device(ctx: &mut Ctx) -> Res<String> {
    let client = fencing_client();
    let open = |q, e| {
        epoch_session(ctx, client, q, e)?
            .map_err(|s| unexpected(format!("queue {q} epoch {e} refused: {}", s.as_str())))
    };
    let mut q0 = open(0, 2000)?;
    let mut q1 = open(1, 2000)?;
    answers(&mut q0).map_err(|e| {
        unexpected(format!(
            "queue 1 of the same epoch fenced queue 0: {}",
            e.msg
        ))
    })?;
    let mut next = open(0, 2001)?;
    // The export answered the new HELLO only after fencing: both are closed.
    let t0 = q0.wait_closed(CLOSE_LIMIT)?;
    let t1 = q1.wait_closed(CLOSE_LIMIT)?;
    answers(&mut next)?;
    Ok(format!(
        "queues 0 and 1 of epoch 2000 coexisted; epoch 2001 closed both ({:.0} and {:.0} ms)",
        t0.as_secs_f64() * 1000.0,
        t1.as_secs_f64() * 1000.0
    ))
}

fn hello_protection(ctx: &mut Ctx) -> Res<String> {
    refused_bytes(ctx, Status::Invalid, |b| b[32] = 9)
}

fn hello_flags(ctx: &mut Ctx) -> Res<String> {
    refused_bytes(ctx, Status::Invalid, |b| b[33] |= 4)
}

fn hello_alg_no_nul(ctx: &mut Ctx) -> Res<String> {
    refused_bytes(ctx, Status::Invalid, |b| b[40..104].fill(b'x'))
}

fn hello_alg_junk(ctx: &mut Ctx) -> Res<String> {
    refused_bytes(ctx, Status::Invalid, |b| b[100] = b'j')
}

fn hello_share_no_key(ctx: &mut Ctx) -> Res<String> {
    refused_hello(ctx, Status::Invalid, |h| {
        h.security.auth = false;
        if h.security.protection.needs_key() {
            h.security.protection = Protection::None;
            h.security.alg = Name::EMPTY;
        }
        h.key_share = *Ephemeral::generate().public();
    })
}

fn hello_zero_share(ctx: &mut Ctx) -> Res<String> {
    refused_hello(ctx, Status::Invalid, |h| h.key_share = [0; KEY_SHARE_LEN])
}

fn hello_small_order_share(ctx: &mut Ctx) -> Res<String> {
    let points = sec::small_order_points();
    for p in points {
        refused_hello(ctx, Status::Invalid, |h| h.key_share = p)
            .map_err(|e| unexpected(format!("key share {}: {}", hex(&p), e.msg)))?;
    }
    Ok(format!(
        "all {} refused: INVALID, then closed",
        points.len()
    ))
}

/// Offset of the client identity in a HELLO body.
const CLIENT_AT: usize = 136;

/// Offset of the export identity in a HELLO body.
const EXPORT_AT: usize = CLIENT_AT + NAME_LEN;

fn hello_empty_client(ctx: &mut Ctx) -> Res<String> {
    refused_bytes(ctx, Status::Invalid, |b| b[CLIENT_AT..EXPORT_AT].fill(0))
}

fn hello_client_junk(ctx: &mut Ctx) -> Res<String> {
    // The client name is shorter than 62 bytes: byte 62 is padding.
    refused_bytes(ctx, Status::Invalid, |b| b[EXPORT_AT - 2] = b'j')
}

fn hello_export_no_nul(ctx: &mut Ctx) -> Res<String> {
    refused_bytes(ctx, Status::Invalid, |b| b[EXPORT_AT..].fill(b'x'))
}

fn hello_client_space(ctx: &mut Ctx) -> Res<String> {
    refused_bytes(ctx, Status::Invalid, |b| b[CLIENT_AT + 1] = b' ')
}

fn hello_other_export(ctx: &mut Ctx) -> Res<String> {
    let other: &[u8] = if ctx.identity.as_bytes() == b"another.export" {
        b"yet.another.export"
    } else {
        b"another.export"
    };
    let other = Name::new(other).unwrap_or(Name::EMPTY);
    refused_hello(ctx, Status::UnknownExport, |h| h.export = other)
}

fn hello_own_export(ctx: &mut Ctx) -> Res<String> {
    let mut c = ctx.connect()?;
    let hello = HelloBody {
        export: ctx.identity,
        ..c.hello_body(0)
    };
    match c.try_handshake(&hello)? {
        Ok(_) => {}
        Err(s) => return Err(unexpected(format!("refused: {}", s.as_str()))),
    }
    answers(&mut c)?;
    Ok(format!(
        "a HELLO for {:?} got a session",
        String::from_utf8_lossy(ctx.identity.as_bytes())
    ))
}

fn hello_hmac_no_key(ctx: &mut Ctx) -> Res<String> {
    refused_hello(ctx, Status::Invalid, |h| {
        h.security.protection = Protection::Hmac;
        h.security.auth = false;
        h.security.alg = Name::new(b"hmac(sha256)").expect("valid name");
        h.key_share = [0; KEY_SHARE_LEN];
    })
}

fn mismatch_protection(ctx: &mut Ctx) -> Res<String> {
    let (auth, p) = (ctx.sec.auth(), ctx.sec.protection);
    // Another mode that is valid with the same key use.
    let other = match (p, auth) {
        (Protection::None, _) => Protection::Crc32c,
        (_, false) => Protection::None,
        (Protection::Aead, true) => Protection::Hmac,
        (_, true) => Protection::Aead,
    };
    refused_hello(ctx, Status::Mismatch, |h| {
        h.security.protection = other;
        h.security.alg = Name::new(other.default_alg().as_bytes()).expect("valid default name");
    })
}

fn mismatch_alg(ctx: &mut Ctx) -> Res<String> {
    let other: &[u8] = match (ctx.sec.protection, ctx.sec.alg.as_bytes()) {
        (Protection::Hmac, b"hmac(sha512)") => b"hmac(sha256)",
        (Protection::Hmac, _) => b"hmac(sha512)",
        (_, b"gcm(aes)") => b"rfc7539(chacha20,poly1305)",
        _ => b"gcm(aes)",
    };
    refused_hello(ctx, Status::Mismatch, |h| {
        h.security.alg = Name::new(other).expect("valid name")
    })
}

fn unauthenticated(ctx: &mut Ctx) -> Res<String> {
    let same_mode = !ctx.sec.protection.needs_key();
    refused_hello(ctx, Status::Mismatch, |h| {
        if !same_mode {
            h.security.protection = Protection::None;
            h.security.alg = Name::EMPTY;
        }
        h.security.auth = false;
        h.key_share = [0; KEY_SHARE_LEN];
    })
}

fn unasked_key(ctx: &mut Ctx) -> Res<String> {
    refused_hello(ctx, Status::Mismatch, |h| {
        h.security.auth = true;
        h.key_share = *Ephemeral::generate().public();
    })
}

fn wrong_key(ctx: &mut Ctx) -> Res<String> {
    let mut wrong = ctx.sec.clone();
    wrong.key = Some(b"not the export's key, 32 bytes!!".to_vec());
    let mut c = Conn::connect(&ctx.addr, &wrong)?;
    match c.try_handshake(&c.hello_body(0))? {
        Err(Status::AuthFailed) => {}
        Err(s) => {
            return Err(unexpected(format!(
                "refused {}, expected AUTH_FAILED",
                s.as_str()
            )))
        }
        Ok(_) => return Err(unexpected("the wrong key was accepted")),
    }
    let closed = expect_silent_close(&mut c.w, CLOSE_LIMIT)?;
    Ok(format!("refused: AUTH_FAILED; {closed}"))
}

/// HELLO and the CHALLENGE body, on a fresh connection.
fn until_challenge(ctx: &Ctx) -> Res<(Conn, HelloBody, [u8; CHALLENGE_LEN])> {
    let mut c = ctx.connect()?;
    let hello = c.hello_body(0);
    c.send_hello(&hello)?;
    let cb = challenge_of(&mut c)?;
    Ok((c, hello, cb))
}

/// The next message on `c`, which must be a CHALLENGE: its body.
fn challenge_of(c: &mut Conn) -> Res<[u8; CHALLENGE_LEN]> {
    let m = c.w.recv()?;
    if m.h.kind != Kind::Challenge {
        return Err(unexpected(format!("{:?} instead of CHALLENGE", m.h.kind)));
    }
    // `Header::decode` checked the payload length.
    m.payload
        .as_slice()
        .try_into()
        .map_err(|_| unexpected("a CHALLENGE of the wrong size"))
}

/// `proof_local` of `c` for `hello` and the CHALLENGE body `cb`, computed
/// for the identities `client` and `export` (the right ones: the HELLO's
/// and the CHALLENGE's), or with `DH` all zero if `zero_dh`.
fn proof_as(
    c: &Conn,
    hello: &HelloBody,
    cb: &[u8; CHALLENGE_LEN],
    names: Option<(Name, Name)>,
    zero_dh: bool,
) -> Res<[u8; AUTH_LEN]> {
    let key = c
        .sec
        .key
        .as_deref()
        .ok_or_else(|| usage("this case needs a key"))?;
    let ch = ChallengeBody::decode(cb)
        .map_err(|e| unexpected(format!("bad CHALLENGE: {}", e.as_str())))?;
    let dh = if zero_dh {
        [0; sec::HASH_LEN]
    } else {
        c.eph
            .agree(&ch.key_share)
            .ok_or_else(|| unexpected("the export's key share gives an all-zero DH"))?
    };
    let (client, export) = names.unwrap_or((hello.client, ch.export));
    let schedule = Schedule::new(key, &client, &export, &dh);
    Ok(schedule.proof_local(&sec::th1(&hello.encode(), cb)))
}

/// `proof_local` of `c`, as a well-behaved local node computes it.
fn proof(c: &Conn, hello: &HelloBody, cb: &[u8; CHALLENGE_LEN]) -> Res<[u8; AUTH_LEN]> {
    proof_as(c, hello, cb, None, false)
}

/// Sends `proof` as AUTH on `c` and requires AUTH_FAILED, then a close.
fn auth_refused(c: &mut Conn, proof: &[u8; AUTH_LEN]) -> Res<String> {
    c.w.send(&Header::auth(), proof)?;
    let m = c.w.recv()?;
    if m.h.kind != Kind::HelloReply || m.h.status != Status::AuthFailed {
        return Err(unexpected(format!(
            "got {:?} {}, expected HELLO_REPLY AUTH_FAILED",
            m.h.kind,
            m.h.status.as_str()
        )));
    }
    let closed = expect_silent_close(&mut c.w, CLOSE_LIMIT)?;
    Ok(format!("refused: AUTH_FAILED; {closed}"))
}

fn auth_replayed(ctx: &mut Ctx) -> Res<String> {
    // A complete, good handshake, recorded.
    let (mut c, hello, cb) = until_challenge(ctx)?;
    let good = proof(&c, &hello, &cb)?;
    c.w.send(&Header::auth(), &good)?;
    let m = c.w.recv()?;
    if m.h.kind != Kind::HelloReply || m.h.status != Status::Ok {
        return Err(unexpected("the recorded handshake failed"));
    }
    drop(c);
    // The same HELLO (same key share) and AUTH on a new connection.
    let mut c = ctx.connect()?;
    c.send_hello(&hello)?;
    let cb2 = challenge_of(&mut c)?;
    if cb2[NAME_LEN..] == cb[NAME_LEN..] {
        return Err(unexpected("the export sent the same key share E_s twice"));
    }
    auth_refused(&mut c, &good).map(|r| format!("replayed AUTH {r}"))
}

fn auth_other_client(ctx: &mut Ctx) -> Res<String> {
    let (mut c, hello, cb) = until_challenge(ctx)?;
    let ch = ChallengeBody::decode(&cb)
        .map_err(|e| unexpected(format!("bad CHALLENGE: {}", e.as_str())))?;
    let other = Name::new(b"another.client").unwrap_or(Name::EMPTY);
    let p = proof_as(&c, &hello, &cb, Some((other, ch.export)), false)?;
    auth_refused(&mut c, &p)
}

fn auth_other_export(ctx: &mut Ctx) -> Res<String> {
    let (mut c, hello, cb) = until_challenge(ctx)?;
    let other = Name::new(b"another.export").unwrap_or(Name::EMPTY);
    let p = proof_as(&c, &hello, &cb, Some((hello.client, other)), false)?;
    auth_refused(&mut c, &p)
}

fn auth_unbound_dh(ctx: &mut Ctx) -> Res<String> {
    let (mut c, hello, cb) = until_challenge(ctx)?;
    let p = proof_as(&c, &hello, &cb, None, true)?;
    auth_refused(&mut c, &p)
}

fn auth_not_auth(ctx: &mut Ctx) -> Res<String> {
    let (mut c, _, _) = until_challenge(ctx)?;
    c.w.send(&Header::ping(1), &[])?;
    expect_silent_close(&mut c.w, CLOSE_LIMIT)
}

fn auth_truncated(ctx: &mut Ctx) -> Res<String> {
    let (mut c, _, _) = until_challenge(ctx)?;
    let mut msg = Header::auth().encode().to_vec();
    msg.extend_from_slice(&[0u8; 10]);
    c.w.send_bytes(&msg)?;
    c.w.sock.shutdown(Shutdown::Write)?;
    expect_silent_close(&mut c.w, CLOSE_LIMIT)
}

fn auth_twice(ctx: &mut Ctx) -> Res<String> {
    let (mut c, hello, cb) = until_challenge(ctx)?;
    let mut msg = Header::auth().encode().to_vec();
    msg.extend_from_slice(&proof(&c, &hello, &cb)?);
    let again = msg.clone();
    msg.extend(again);
    // Room for a trailer, in case the export reads one before it looks at
    // the kind of the second message.
    msg.extend_from_slice(&[0u8; 128]);
    c.w.send_bytes(&msg)?;
    // The first AUTH is good: the export may answer OK, then must close on
    // the second message, which is no valid message after the handshake.
    expect_close(&mut c.w, CLOSE_LIMIT)
}

/// A session, then a sealed message with header bytes `hb` and `payload`:
/// the export must close without answering.
fn after_handshake(ctx: &Ctx, hb: [u8; HEADER_LEN], payload: &[u8]) -> Res<String> {
    let mut c = ctx.session()?;
    let f = c.w.frame_raw(&hb, payload)?;
    c.w.send_bytes(&f)?;
    expect_silent_close(&mut c.w, CLOSE_LIMIT)
}

fn second_hello(ctx: &mut Ctx) -> Res<String> {
    let body = ctx.hello().encode();
    after_handshake(ctx, Header::hello().encode(), &body)
}

fn after_hello_reply(ctx: &mut Ctx) -> Res<String> {
    after_handshake(ctx, Header::hello_reply(Status::Busy).encode(), &[])
}

fn after_io_reply(ctx: &mut Ctx) -> Res<String> {
    let h = Header::io(Op::Write, 0, 5, 0, 4096).reply(Status::Ok);
    after_handshake(ctx, h.encode(), &[])
}

fn after_challenge(ctx: &mut Ctx) -> Res<String> {
    after_handshake(ctx, Header::challenge().encode(), &[0u8; CHALLENGE_LEN])
}

fn after_auth(ctx: &mut Ctx) -> Res<String> {
    after_handshake(ctx, Header::auth().encode(), &[0u8; AUTH_LEN])
}

/// A valid READ header changed by `f`.
fn read_patched(f: impl FnOnce(&mut [u8; HEADER_LEN])) -> [u8; HEADER_LEN] {
    let mut h = Header::io(Op::Read, 0, 77, 0, 4096).encode();
    f(&mut h);
    h
}

fn io_bad_magic(ctx: &mut Ctx) -> Res<String> {
    after_handshake(ctx, read_patched(|h| h[3] = b'2'), &[])
}

fn io_bad_kind(ctx: &mut Ctx) -> Res<String> {
    after_handshake(ctx, read_patched(|h| h[4] = 0x7f), &[])
}

fn io_bad_op(ctx: &mut Ctx) -> Res<String> {
    after_handshake(ctx, read_patched(|h| h[5] = 6), &[])
}

fn io_bad_flags(ctx: &mut Ctx) -> Res<String> {
    after_handshake(ctx, read_patched(|h| h[7] = 0x20), &[])
}

fn io_undefined_status(ctx: &mut Ctx) -> Res<String> {
    after_handshake(ctx, read_patched(|h| h[11] = 99), &[])
}

fn io_reserved(ctx: &mut Ctx) -> Res<String> {
    after_handshake(ctx, read_patched(|h| h[36] = 0x80), &[])
}

fn io_payload_limit(ctx: &mut Ctx) -> Res<String> {
    let mut c = ctx.session()?;
    let mut h = Header::io(Op::Write, 0, 9, 0, 4096).encode();
    h[12..16].copy_from_slice(&(MAX_IO_BYTES_LIMIT + 1).to_be_bytes());
    c.w.send_bytes(&h)?;
    expect_silent_close(&mut c.w, CLOSE_LIMIT)
}

fn ping_payload(ctx: &mut Ctx) -> Res<String> {
    let mut h = Header::ping(3).encode();
    h[15] = 8;
    after_handshake(ctx, h, &[0u8; 8])
}

/// On one session: the request `h` with `payload` must be refused with
/// `want`; then a good READ on the same session must work.
fn refused_request(ctx: &Ctx, want: Status, h: Header, payload: &[u8]) -> Res<String> {
    let mut c = ctx.session()?;
    refused_on(&mut c, want, h, payload)?;
    let ok = c.request(Op::Read, 0, 0, 4096);
    let (r, _) = c.one(ok, &[])?;
    check_status(&r, Status::Ok)?;
    Ok(format!("refused: {}; the session goes on", want.as_str()))
}

/// Sends `h` with `payload` on `c` and requires the reply status `want`.
fn refused_on(c: &mut Conn, want: Status, h: Header, payload: &[u8]) -> Res {
    let (r, data) = c.one(h, payload)?;
    check_status(&r, want)?;
    if !data.is_empty() {
        return Err(unexpected("a refused request carried data"));
    }
    Ok(())
}

/// A request on `c`'s next id.
fn req(c: &mut Conn, op: Op, flags: u16, offset: u64, length: u32) -> Header {
    c.request(op, flags, offset, length)
}

fn io_status_set(ctx: &mut Ctx) -> Res<String> {
    let mut h = Header::io(Op::Read, 0, 1000, 0, 4096);
    h.status = Status::IoError;
    refused_request(ctx, Status::Invalid, h, &[])
}

fn io_read_fua(ctx: &mut Ctx) -> Res<String> {
    refused_request(
        ctx,
        Status::Invalid,
        Header::io(Op::Read, FLAG_FUA, 1000, 0, 4096),
        &[],
    )
}

fn io_read_payload(ctx: &mut Ctx) -> Res<String> {
    let mut h = Header::io(Op::Read, 0, 1000, 0, 4096);
    h.payload = 4096;
    refused_request(ctx, Status::Invalid, h, &[0x33; 4096])
}

fn io_zero_length(ctx: &mut Ctx) -> Res<String> {
    refused_request(
        ctx,
        Status::Invalid,
        Header::io(Op::Read, 0, 1000, 0, 0),
        &[],
    )
}

fn io_flush_range(ctx: &mut Ctx) -> Res<String> {
    refused_request(
        ctx,
        Status::Invalid,
        Header::io(Op::Flush, 0, 1000, 4096, 4096),
        &[],
    )
}

fn io_too_long(ctx: &mut Ctx) -> Res<String> {
    let mut c = ctx.session()?;
    let max = c.grant().max_io_bytes;
    let over = max + ctx.block;
    let h = req(&mut c, Op::Read, 0, 0, over);
    refused_on(&mut c, Status::Invalid, h, &[])?;
    Ok(format!(
        "READ of {over} refused: INVALID; the session goes on"
    ))
}

fn io_misaligned(ctx: &mut Ctx) -> Res<String> {
    let mut c = ctx.session()?;
    for (off, len) in [
        (1, 4096),
        (4096, 100),
        (511, 512),
        (ctx.block as u64 / 2, ctx.block),
    ] {
        let h = req(&mut c, Op::Read, 0, off, len);
        refused_on(&mut c, Status::Invalid, h, &[])?;
    }
    let h = req(&mut c, Op::Read, 0, 0, 4096);
    let (r, _) = c.one(h, &[])?;
    check_status(&r, Status::Ok)?;
    Ok("4 misaligned READs refused: INVALID; the session goes on".into())
}

fn io_out_of_range(ctx: &mut Ctx) -> Res<String> {
    let mut c = ctx.session()?;
    let (size, b) = (ctx.size, u64::from(ctx.block));
    let top = u64::MAX / b * b;
    for (off, len) in [
        (size, 4096u32),
        (size - b, 2 * ctx.block),
        (top, ctx.block),
        (1 << 62, 4096),
    ] {
        let h = req(&mut c, Op::Read, 0, off, len);
        refused_on(&mut c, Status::Range, h, &[])?;
    }
    let h = req(&mut c, Op::Read, 0, size - b, ctx.block);
    let (r, _) = c.one(h, &[])?;
    check_status(&r, Status::Ok)?;
    Ok("4 READs past the end refused: RANGE; the last block reads".into())
}

fn write_payload_mismatch(ctx: &mut Ctx) -> Res<String> {
    let v = ctx.victim;
    ctx.victim_unchanged(|ctx| {
        let mut h = Header::io(Op::Write, 0, 1000, v, 4096);
        h.payload = 512;
        refused_request(ctx, Status::Invalid, h, &[0xaa; 512])
    })
}

fn write_oversized(ctx: &mut Ctx) -> Res<String> {
    let v = ctx.victim;
    ctx.victim_unchanged(|ctx| {
        let len = 2 << 20;
        refused_request(
            ctx,
            Status::Invalid,
            Header::io(Op::Write, 0, 1000, v, len),
            &vec![0xbb; len as usize],
        )
    })
}

fn write_misaligned(ctx: &mut Ctx) -> Res<String> {
    let v = ctx.victim;
    ctx.victim_unchanged(|ctx| {
        refused_request(
            ctx,
            Status::Invalid,
            Header::io(Op::Write, 0, 1000, v + 1, 4096),
            &[0xcc; 4096],
        )
    })
}

fn write_out_of_range(ctx: &mut Ctx) -> Res<String> {
    let start = ctx.size - 4096;
    let before = ctx.session()?.read_all(start, 4096)?;
    let r = refused_request(
        ctx,
        Status::Range,
        Header::io(Op::Write, 0, 1000, start, 8192),
        &[0xdd; 8192],
    )?;
    if ctx.session()?.read_all(start, 4096)? != before {
        return Err(unexpected("the last 4 KiB changed"));
    }
    Ok(format!("{r}; the last 4 KiB unchanged"))
}

fn read_only_writes(ctx: &mut Ctx) -> Res<String> {
    let v = ctx.victim;
    ctx.victim_unchanged(|ctx| {
        let mut c = ctx.session()?;
        let h = req(&mut c, Op::Write, 0, v, 4096);
        refused_on(&mut c, Status::Permission, h, &[0xee; 4096])?;
        // FUA, DISCARD and WRITE_ZEROES are not granted to a read-only
        // local node: refused before the permission check.
        let h = req(&mut c, Op::Write, FLAG_FUA, v, 4096);
        refused_on(&mut c, Status::NotSupported, h, &[0xee; 4096])?;
        let h = req(&mut c, Op::Discard, 0, v, 4096);
        refused_on(&mut c, Status::NotSupported, h, &[])?;
        let h = req(&mut c, Op::WriteZeroes, 0, v, 4096);
        refused_on(&mut c, Status::NotSupported, h, &[])?;
        let h = req(&mut c, Op::Flush, 0, 0, 0);
        let (r, _) = c.one(h, &[])?;
        check_status(&r, Status::Ok)?;
        Ok("WRITE refused: PERMISSION; FUA WRITE, DISCARD, WRITE_ZEROES refused: NOT_SUPPORTED; FLUSH ok".into())
    })
}

/// A sealed 64 KiB WRITE of a fresh pattern at the victim offset, changed
/// by `f` (frame bytes, payload length), then a silent close is required
/// and the victim range unchanged.
fn tampered_write(ctx: &Ctx, f: impl FnOnce(&mut Vec<u8>, usize)) -> Res<String> {
    let v = ctx.victim;
    ctx.victim_unchanged(|ctx| {
        let mut c = ctx.session()?;
        let len = 64 << 10;
        let mut data = vec![0u8; len];
        crate::client::fill_pattern(&mut data, v, 0x7a3b_0000 + ctx.checks);
        let h = c.request(Op::Write, 0, v, len as u32);
        let mut frame = c.w.frame(&h, &data)?;
        f(&mut frame, len);
        c.w.send_bytes(&frame)?;
        expect_silent_close(&mut c.w, CLOSE_LIMIT)
    })
}

fn bitflip_payload(ctx: &mut Ctx) -> Res<String> {
    tampered_write(ctx, |f, len| f[HEADER_LEN + len / 3] ^= 0x08)
}

fn bitflip_header(ctx: &mut Ctx) -> Res<String> {
    tampered_write(ctx, |f, _| f[20] ^= 0x01)
}

fn bitflip_tag(ctx: &mut Ctx) -> Res<String> {
    tampered_write(ctx, |f, _| {
        let last = f.len() - 1;
        f[last] ^= 0x40
    })
}

fn bitflip_seq(ctx: &mut Ctx) -> Res<String> {
    tampered_write(ctx, |f, len| f[HEADER_LEN + len + 7] ^= 0x02)
}

fn no_trailer(ctx: &mut Ctx) -> Res<String> {
    // Without its trailer the export reads the next message's first bytes
    // (a PING) as the trailer, which does not verify.
    let v = ctx.victim;
    ctx.victim_unchanged(|ctx| {
        let mut c = ctx.session()?;
        let len = 64 << 10;
        let h = c.request(Op::Write, 0, v, len as u32);
        let mut frame = c.w.frame(&h, &vec![0x5c; len])?;
        frame.truncate(HEADER_LEN + len);
        frame.extend(c.w.frame(&Header::ping(4), &[])?);
        frame.extend(c.w.frame(&Header::ping(5), &[])?);
        c.w.send_bytes(&frame)?;
        expect_close(&mut c.w, CLOSE_LIMIT)
    })
}

fn replay_write(ctx: &mut Ctx) -> Res<String> {
    let mut c = ctx.session()?;
    let (off, len) = (ctx.scratch, 64u32 << 10);
    let (a, b) = (0xaaaa_0000 + ctx.checks, 0xbbbb_0000 + ctx.checks);
    let mut da = vec![0u8; len as usize];
    crate::client::fill_pattern(&mut da, off, a);
    let ha = c.request(Op::Write, 0, off, len);
    let frame_a = c.w.frame(&ha, &da)?;
    c.w.send_bytes(&frame_a)?;
    let mut pending = std::collections::HashMap::from([(ha.id, ha)]);
    let (r, _, _) = c.read_reply(&mut pending)?;
    check_status(&r, Status::Ok)?;
    c.write_pattern(off, u64::from(len), b)?;
    c.w.send_bytes(&frame_a)?;
    let closed = expect_silent_close(&mut c.w, CLOSE_LIMIT)?;
    ctx.session()?
        .verify_pattern(off, u64::from(len), b)
        .map_err(|e| {
            unexpected(format!(
                "{closed}; but the replayed WRITE landed: {}",
                e.msg
            ))
        })?;
    Ok(format!("replayed WRITE: {closed}; the later data stays"))
}

/// Sends PINGs `cookies` (sealed in order) and reads their PONGs.
fn pings(c: &mut Conn, cookies: impl Iterator<Item = u64>) -> Res<usize> {
    let mut msg = Vec::new();
    let mut n = 0;
    for k in cookies {
        msg.extend(c.w.frame(&Header::ping(k), &[])?);
        n += 1;
    }
    c.w.send_bytes(&msg)?;
    for _ in 0..n {
        let m = c.w.recv()?;
        if m.h.kind != Kind::Pong {
            return Err(unexpected(format!("{:?} instead of PONG", m.h.kind)));
        }
    }
    Ok(n)
}

fn replay_old_seq(ctx: &mut Ctx) -> Res<String> {
    let mut c = ctx.session()?;
    pings(&mut c, 0..5)?;
    pings(&mut c, 100..1200)?;
    // Seq 5 was used long ago; a new message sealed with it.
    let hb = Header::ping(7777).encode();
    let t = c.w.tx.seal_at(5, &hb, &mut []);
    let mut f = hb.to_vec();
    f.extend(t);
    c.w.send_bytes(&f)?;
    let closed = expect_silent_close(&mut c.w, CLOSE_LIMIT)?;
    Ok(format!("seq 5 after seq 1104: {closed}"))
}

fn seq_reuse(ctx: &mut Ctx) -> Res<String> {
    let mut c = ctx.session()?;
    pings(&mut c, 0..3)?;
    let hb = Header::ping(4242).encode();
    let t = c.w.tx.seal_at(1, &hb, &mut []);
    let mut f = hb.to_vec();
    f.extend(t);
    c.w.send_bytes(&f)?;
    expect_silent_close(&mut c.w, CLOSE_LIMIT)
}

fn reorder(ctx: &mut Ctx) -> Res<String> {
    let mut c = ctx.session()?;
    let h0 = Header::ping(10).encode();
    let h1 = Header::ping(11).encode();
    let t0 = c.w.tx.seal_at(0, &h0, &mut []);
    let t1 = c.w.tx.seal_at(1, &h1, &mut []);
    c.w.tx.seq = 2;
    let mut f = h1.to_vec();
    f.extend(t1);
    f.extend_from_slice(&h0);
    f.extend(t0);
    c.w.send_bytes(&f)?;
    let closed = expect_silent_close(&mut c.w, CLOSE_LIMIT)?;
    Ok(format!("seq 1 before seq 0: {closed}"))
}

fn gap(ctx: &mut Ctx) -> Res<String> {
    let mut c = ctx.session()?;
    pings(&mut c, 20..21)?;
    // Seq 1 is skipped: as if it had been dropped on the way.
    let hb = Header::ping(22).encode();
    let t = c.w.tx.seal_at(2, &hb, &mut []);
    c.w.tx.seq = 3;
    let mut f = hb.to_vec();
    f.extend(t);
    c.w.send_bytes(&f)?;
    let closed = expect_silent_close(&mut c.w, CLOSE_LIMIT)?;
    Ok(format!("seq 2 after seq 0: {closed}"))
}

fn key_update_keyless(ctx: &mut Ctx) -> Res<String> {
    // Sealed as every message of the mode is (crc32c, or nothing).
    after_handshake(ctx, Header::key_update().encode(), &[])
        .map(|closed| format!("KEY_UPDATE in {}: {closed}", ctx.sec.protection.as_str()))
}

fn key_update_malformed(ctx: &mut Ctx) -> Res<String> {
    let mut with_id = Header::key_update().encode();
    with_id[23] = 1;
    let a = after_handshake(ctx, with_id, &[])?;
    let mut with_payload = Header::key_update().encode();
    with_payload[15] = 8;
    let b = after_handshake(ctx, with_payload, &[0u8; 8])?;
    Ok(format!("with an id: {a}; with a payload: {b}"))
}

/// A session past `pings` answered PINGs, then a good KEY_UPDATE and, in
/// the same write, the PING `bad`: its sealed bytes from `seal` (given the
/// sealer before the update and the one after it). The export must close
/// without answering.
fn after_key_update(
    ctx: &Ctx,
    pings_first: u64,
    seal: impl FnOnce(&mut sec::Sealer, &mut sec::Sealer, &[u8; HEADER_LEN]) -> Res<Vec<u8>>,
) -> Res<String> {
    let mut c = ctx.session()?;
    pings(&mut c, 0..pings_first)?;
    let mut old = c.w.tx.clone();
    let mut f = c.w.key_update()?;
    // The KEY_UPDATE took the old key's next seq.
    old.seq += 1;
    let hb = Header::ping(0xbad).encode();
    let t = seal(&mut old, &mut c.w.tx, &hb)?;
    f.extend_from_slice(&hb);
    f.extend(t);
    c.w.send_bytes(&f)?;
    expect_silent_close(&mut c.w, CLOSE_LIMIT)
}

fn key_update_old_key(ctx: &mut Ctx) -> Res<String> {
    // Its next seq: an export that ignored the KEY_UPDATE would take it.
    let a = after_key_update(ctx, 3, |old, _, hb| {
        Ok(old.seal(hb, &mut []).map_err(io::Error::from)?)
    })?;
    // Seq 0, what the new key starts with: an export that reset the seq
    // but kept the key would take it.
    let b = after_key_update(ctx, 3, |old, _, hb| Ok(old.seal_at(0, hb, &mut [])))?;
    Ok(format!("old key, its next seq: {a}; old key, seq 0: {b}"))
}

fn key_update_seq_not_reset(ctx: &mut Ctx) -> Res<String> {
    after_key_update(ctx, 3, |old, new, hb| Ok(new.seal_at(old.seq, hb, &mut [])))
        .map(|closed| format!("new key, seq 4 instead of 0: {closed}"))
}

fn key_update_reorder(ctx: &mut Ctx) -> Res<String> {
    let mut c = ctx.session()?;
    pings(&mut c, 0..2)?;
    // Seq 3 instead of 2; the PING after it sealed as if it had been taken.
    let hb = Header::key_update().encode();
    let t = c.w.tx.seal_at(3, &hb, &mut []);
    let mut f = hb.to_vec();
    f.extend(t);
    let mut next =
        c.w.tx
            .rekeyed()
            .ok_or_else(|| usage("this case needs hmac or aead"))?;
    let ping = Header::ping(0xbad).encode();
    f.extend_from_slice(&ping);
    f.extend(next.seal(&ping, &mut []).map_err(io::Error::from)?);
    c.w.send_bytes(&f)?;
    let closed = expect_silent_close(&mut c.w, CLOSE_LIMIT)?;
    Ok(format!("KEY_UPDATE at seq 3 after seq 1: {closed}"))
}

fn key_update_every_message(ctx: &mut Ctx) -> Res<String> {
    let mut c = ctx.session()?;
    // A key update before every message this session frames from now on.
    c.w.tx.rekey.bytes = Some(1);
    let mut five = Vec::new();
    for _ in 0..5 {
        five.extend(c.w.key_update()?);
    }
    c.w.send_bytes(&five)?;
    let mut n = pings(&mut c, 0..20)?;
    // A batch: 100 PINGs, each after its KEY_UPDATE, in one write.
    n += pings(&mut c, 100..200)?;
    let (base, block) = (ctx.scratch, 4096u32);
    let blocks = 48u64;
    let seed = 0x6e77_0000 + ctx.checks;
    let mut want = vec![0u8; (blocks * u64::from(block)) as usize];
    if ctx.writable {
        crate::client::fill_pattern(&mut want, base, seed);
        for (i, d) in want.chunks(block as usize).enumerate() {
            let h = req(
                &mut c,
                Op::Write,
                0,
                base + i as u64 * u64::from(block),
                block,
            );
            let (r, _) = c.one(h, d)?;
            check_status(&r, Status::Ok)?;
            n += 1;
        }
    }
    for pass in 0..2 {
        for i in 0..blocks {
            let off = base + i * u64::from(block);
            let h = req(&mut c, Op::Read, 0, off, block);
            let (r, d) = c.one(h, &[])?;
            check_status(&r, Status::Ok)?;
            let at = (i * u64::from(block)) as usize;
            let w = &mut want[at..at + block as usize];
            if ctx.writable || pass > 0 {
                if d != *w {
                    return Err(unexpected(format!(
                        "READ at {off} after {} key updates: other data",
                        c.w.tx.updates
                    )));
                }
            } else {
                w.copy_from_slice(&d);
            }
            n += 1;
        }
    }
    n += pings(&mut c, 1000..1030)?;
    // The burst of 5, then one before every message but the first (the
    // burst's last key is fresh).
    let sent = c.w.tx.updates;
    if sent != n as u64 + 4 {
        return Err(unexpected(format!(
            "{sent} key updates for {n} messages, not {}",
            n + 4
        )));
    }
    Ok(format!(
        "{sent} KEY_UPDATEs before {n} messages, all answered right ({} received from the export)",
        c.w.rx.updates
    ))
}

/// Sends `bytes` one at a time every `gap`, on `sock`; returns how long
/// after `start` the export closed, or an error if it never did.
fn trickle(sock: &mut TcpStream, bytes: &[u8], gap: Duration, start: Instant) -> Res<Duration> {
    sock.set_read_timeout(Some(gap))?;
    let mut buf = [0u8; 256];
    for &b in bytes {
        if sock.write_all(&[b]).is_err() {
            return Ok(start.elapsed());
        }
        match sock.read(&mut buf) {
            Ok(0) => return Ok(start.elapsed()),
            Ok(n) => {
                return Err(unexpected(format!(
                    "the export answered {n} bytes to a trickled handshake after {:.1} s",
                    start.elapsed().as_secs_f64()
                )))
            }
            Err(e) if wire::is_timeout(&e) => {}
            Err(e) if wire::is_closed(&e) => return Ok(start.elapsed()),
            Err(e) => return Err(e.into()),
        }
        if start.elapsed() > HANDSHAKE_TIMEOUT + SLACK {
            return Err(unexpected(format!(
                "still open {:.1} s after connecting, with a handshake trickling in",
                start.elapsed().as_secs_f64()
            )));
        }
    }
    Err(unexpected(format!(
        "the whole trickled message went through in {:.1} s without a close",
        start.elapsed().as_secs_f64()
    )))
}

fn slow_loris(ctx: &mut Ctx) -> Res<String> {
    let start = Instant::now();
    let mut c = ctx.connect()?;
    let mut msg = Header::hello().encode().to_vec();
    msg.extend_from_slice(&c.hello_body(0).encode());
    let took = trickle(&mut c.w.sock, &msg, Duration::from_millis(250), start)?;
    Ok(format!(
        "closed {:.1} s after connecting (HELLO at 4 bytes/s)",
        took.as_secs_f64()
    ))
}

fn slow_loris_auth(ctx: &mut Ctx) -> Res<String> {
    let start = Instant::now();
    let (mut c, hello, cb) = until_challenge(ctx)?;
    let mut msg = Header::auth().encode().to_vec();
    msg.extend_from_slice(&proof(&c, &hello, &cb)?);
    let took = trickle(&mut c.w.sock, &msg, Duration::from_millis(250), start)?;
    Ok(format!(
        "closed {:.1} s after connecting (AUTH at 4 bytes/s)",
        took.as_secs_f64()
    ))
}

fn half_open(ctx: &mut Ctx) -> Res<String> {
    let start = Instant::now();
    let mut socks = Vec::new();
    for i in 0..ctx.half_open {
        let w = Wire::connect(&ctx.addr, Duration::from_secs(10))
            .map_err(|e| unexpected(format!("connection {i} failed: {e}")))?;
        socks.push(w);
    }
    let opened = start.elapsed();
    let limit = HANDSHAKE_TIMEOUT + SLACK;
    // Watch every connection at once: when did each close?
    let watchers: Vec<_> = socks
        .into_iter()
        .map(|mut w| {
            std::thread::spawn(move || {
                let left = limit.saturating_sub(start.elapsed());
                w.wait_closed(left)
                    .map(|r| r.map(|(_, n)| (start.elapsed(), n)))
            })
        })
        .collect();
    let mut times = Vec::new();
    for (i, t) in watchers.into_iter().enumerate() {
        match t
            .join()
            .map_err(|_| unexpected("a watcher thread panicked"))??
        {
            Some((at, 0)) => times.push(at),
            Some((_, n)) => {
                return Err(unexpected(format!(
                    "half-open connection {i} received {n} bytes"
                )))
            }
            None => {
                return Err(unexpected(format!(
                    "half-open connection {i} still open {:.1} s after connecting",
                    start.elapsed().as_secs_f64()
                )))
            }
        }
    }
    let early = times
        .iter()
        .filter(|t| **t < Duration::from_secs(3))
        .count();
    let last = times.iter().max().copied().unwrap_or_default();
    Ok(format!(
        "{} connections opened in {:.1} s; {early} closed within 3 s (over the session cap), \
         the last after {:.1} s",
        ctx.half_open,
        opened.as_secs_f64(),
        last.as_secs_f64()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A `dstpeer server` of 32 MiB with `sec` on a free port, up: its
    /// address.
    fn server(sec: &SecConfig) -> String {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .to_string();
        let (a, s) = (addr.clone(), sec.clone());
        std::thread::spawn(move || crate::server::main(&a, &["--size", "32M"], &s).is_ok());
        for _ in 0..100 {
            if TcpStream::connect(&addr).is_ok() {
                return addr;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server at {addr} not up");
    }

    /// Runs the attack cases `cases` against a `dstpeer server` in `mode`.
    fn attack(mode: &str, cases: &[&str]) {
        let key = (mode == "hmac" || mode == "aead")
            .then(|| b"a test key of 32 bytes, exactly.".to_vec());
        let sec = SecConfig::new(mode, None, key).expect("valid");
        let addr = server(&sec);
        let mut args = Vec::new();
        for c in cases {
            args.extend(["--case", c]);
        }
        if let Err(f) = main(&addr, &args, &sec) {
            panic!("{mode}: {}", f.msg);
        }
    }

    /// The key update cases against this tool's export, which implements
    /// KEY_UPDATE on its own (`sec.rs`): the attacks and the export check
    /// each other.
    #[test]
    fn key_update_cases_against_dstpeer_server() {
        for mode in ["aead", "hmac"] {
            attack(
                mode,
                &[
                    "first-key-update",
                    "first-bad-kind",
                    "io-bad-kind",
                    "key-update-malformed",
                    "key-update-old-key",
                    "key-update-seq-not-reset",
                    "key-update-reorder",
                    "key-update-every-message",
                ],
            );
        }
        for mode in ["none", "crc32c"] {
            attack(
                mode,
                &[
                    "first-key-update",
                    "key-update-malformed",
                    "key-update-keyless",
                ],
            );
        }
    }

    #[test]
    fn cases_have_unique_names() {
        for (i, c) in CASES.iter().enumerate() {
            assert!(
                CASES[i + 1..].iter().all(|d| d.0 != c.0),
                "case {} twice",
                c.0
            );
        }
    }
}
