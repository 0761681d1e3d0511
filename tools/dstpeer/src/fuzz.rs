// SPDX-License-Identifier: GPL-2.0

//! `dstpeer fuzz ADDR:PORT --frames N --seed S`: randomized frames against
//! an export, mostly near-valid mutations of valid frames.
//!
//! Every frame's fate is predicted with the protocol code the export runs
//! (`Header::decode`, `validate_request`, the HELLO checks) and checked:
//!
//! - a header that does not decode, a kind the export never accepts, a
//!   tampered trailer, a seq that is not the next one (replayed, or ahead:
//!   one before it dropped), a truncated frame: the export must close the
//!   connection (and send nothing for it);
//! - an IO request that decodes: exactly one IO_REPLY echoing it, with the
//!   status `validate_request` gives (a request it accepts may also get BUSY,
//!   and DISCARD or WRITE_ZEROES NOT_SUPPORTED), and a successful READ its
//!   data;
//! - a PING: a PONG with its cookie; a PONG: nothing;
//! - in hmac and aead, KEY_UPDATEs at random points of the traffic: nothing
//!   (what follows is sealed with the next key, from seq 0); a KEY_UPDATE
//!   followed by a message still sealed with the old key, or with the new
//!   key at a seq other than 0, or one sealed with a seq that is not the
//!   next: a close; in none and crc32c any KEY_UPDATE: a close;
//! - a mutated HELLO (anywhere, and aimed at the key share and both
//!   identities): the refusal the HELLO checks give (INVALID for a key
//!   share of small order, UNKNOWN_EXPORT for another export's name), or
//!   with a key share whose private key we do not hold AUTH_FAILED after
//!   the CHALLENGE, or a session;
//! - a mutated AUTH (flipped proof bits, wrong size, truncated, another
//!   kind): AUTH_FAILED, or a close;
//!
//! Each connection carries a run of frames in batches, and usually ends with
//! one fatal frame. At the end a fresh session must write and read back
//! 1 MiB. The count, seed and duration are printed; the same seed replays the
//! same frames (nonces aside).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use crate::client::{parse_size, unexpected, usage, Conn, Res};
use crate::proto::{
    negotiate_version, validate_request, ChallengeBody, Header, HelloBody, HelloReplyBody, Kind,
    Limits, Name, Op, Status, AUTH_LEN, CHALLENGE_LEN, FLAGS_ALL, HEADER_LEN, HELLO_LEN,
    KEY_SHARE_LEN, MAX_IO_BYTES_LIMIT, NAME_LEN,
};
use crate::sec::{self, Ephemeral, SecConfig};

/// Offsets of the key share and the identities in a HELLO body.
const KEY_SHARE_AT: usize = 104;
const CLIENT_AT: usize = KEY_SHARE_AT + KEY_SHARE_LEN;
const EXPORT_AT: usize = CLIENT_AT + NAME_LEN;
use crate::wire::RecvError;

pub(crate) const USAGE: &str =
    "  fuzz ADDR:PORT --frames N [--seed S] [--verify-at OFF] [--max-secs N]
       [--mix PINGS,PONGS,MUTATE] [--per-conn N] [--batch N] [--jobs N]
                              random near-valid frames against an export; the
                              security options give the export's settings;
                              --mix: percent of PINGs and of unasked PONGs among
                              the frames, percent of the IO requests mutated
                              (default 10,10,70); --per-conn: average frames on
                              a connection (default 500); --batch: most frames
                              sent before reading the answers (default 64);
                              --jobs: connections fuzzed at once (default 2)
";

/// splitmix64: small, fast, and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `pct` percent.
    fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

/// Counters of a run.
#[derive(Default)]
struct Stats {
    frames: u64,
    connections: u64,
    replies: u64,
    refusals: u64,
    closes: u64,
    hello_refusals: u64,
    pongs: u64,
    busy: u64,
    /// KEY_UPDATEs sent (at random, fatal ones, and any `--rekey-after`
    /// makes) and received from the export.
    key_updates: u64,
    key_updates_in: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.frames += o.frames;
        self.connections += o.connections;
        self.replies += o.replies;
        self.refusals += o.refusals;
        self.closes += o.closes;
        self.hello_refusals += o.hello_refusals;
        self.pongs += o.pongs;
        self.busy += o.busy;
        self.key_updates += o.key_updates;
        self.key_updates_in += o.key_updates_in;
    }
}

/// What the export must answer a HELLO with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HelloFate {
    /// A refusal with this status, then a close.
    Refused(Status),
    /// A CHALLENGE; then AUTH_FAILED, since our proof is made with a key
    /// share the export did not get.
    AuthFails,
    /// A session.
    Accepted,
}

/// The fate of the HELLO body `body` at an export with `sec` and the
/// identity `identity`, whose HELLO would carry `ours` as its key share:
/// the checks in the order Documentation/protocol.md gives them.
fn predict_hello(
    body: &[u8; HELLO_LEN],
    sec: &SecConfig,
    identity: &Name,
    ours: &[u8; KEY_SHARE_LEN],
) -> HelloFate {
    let Ok(b) = HelloBody::decode(body).and_then(|b| b.validate().map(|()| b)) else {
        return HelloFate::Refused(Status::Invalid);
    };
    if negotiate_version(b.min_version, b.max_version).is_none() {
        return HelloFate::Refused(Status::Version);
    }
    if !b.export.is_empty() && b.export != *identity {
        return HelloFate::Refused(Status::UnknownExport);
    }
    if !b.security.matches(&sec.security()) {
        return HelloFate::Refused(Status::Mismatch);
    }
    if !b.security.auth {
        return HelloFate::Accepted;
    }
    if sec::is_small_order(&b.key_share) {
        return HelloFate::Refused(Status::Invalid);
    }
    if sec::same_point(&b.key_share, ours) {
        HelloFate::Accepted
    } else {
        HelloFate::AuthFails
    }
}

/// What the export must do with one frame.
#[derive(Debug)]
enum Expect {
    /// An IO_REPLY echoing `req`, with one of `statuses`.
    Reply { req: Header, statuses: Vec<Status> },
    /// A PONG with this cookie.
    Pong(u64),
    /// Nothing.
    Nothing,
    /// Nothing, and what follows is opened with the next key: a KEY_UPDATE
    /// (hmac, aead), which only [`Wire::key_update`] may make.
    ///
    /// [`Wire::key_update`]: crate::wire::Wire::key_update
    KeyUpdate,
    /// Closing the connection.
    Close,
}

/// The fate of a frame with header `hb`, after a handshake granting `limits`,
/// in a mode with keys (hmac, aead) if `keyed`.
fn predict(hb: &[u8; HEADER_LEN], limits: &Limits, keyed: bool) -> Expect {
    let Ok(h) = Header::decode(hb) else {
        return Expect::Close;
    };
    match h.kind {
        Kind::Io => {
            let statuses = match validate_request(&h, limits) {
                Err(s) => vec![s],
                Ok(()) => match h.op {
                    Some(Op::Discard | Op::WriteZeroes) => {
                        vec![Status::Ok, Status::Busy, Status::NotSupported]
                    }
                    _ => vec![Status::Ok, Status::Busy],
                },
            };
            Expect::Reply { req: h, statuses }
        }
        Kind::Ping => Expect::Pong(h.id),
        Kind::Pong => Expect::Nothing,
        // Gives up the write access; the session goes on until closed.
        Kind::Release => Expect::Nothing,
        // Without keys a KEY_UPDATE breaks the protocol.
        Kind::KeyUpdate if keyed => Expect::KeyUpdate,
        _ => Expect::Close,
    }
}

/// One run.
struct Fuzz {
    addr: String,
    sec: SecConfig,
    rng: Rng,
    stats: Stats,
    /// Frames still to send.
    left: u64,
    /// What a first handshake granted (size, block, the export's identity).
    size: u64,
    block: u32,
    identity: Name,
    mix: Mix,
    /// Average frames per connection.
    per_conn: u64,
    /// Largest batch (frames sent before the answers are read).
    batch: u64,
}

/// The shares of the frames of a batch, in percent.
#[derive(Clone, Copy)]
struct Mix {
    /// PINGs.
    pings: u64,
    /// Unasked PONGs.
    pongs: u64,
    /// Of the IO requests: mutated ones (the others are valid).
    mutate: u64,
}

/// `dstpeer fuzz ADDR:PORT ...`.
pub(crate) fn main(addr: &str, args: &[&str], sec: &SecConfig) -> Res {
    let mut frames = None;
    let mut seed = None;
    let mut verify_at = 0;
    let mut max_secs = 3600;
    let mut per_conn = 500;
    let mut batch = 64;
    let mut jobs = 2;
    // Replies cost the export (and the emulated guest) far more than
    // frames without one; this mix keeps 100,000 frames within minutes.
    let mut mix = Mix {
        pings: 10,
        pongs: 10,
        mutate: 70,
    };
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        let mut val = || {
            it.next()
                .copied()
                .ok_or_else(|| usage(format!("{a} needs a value")))
        };
        match a {
            "--frames" => frames = Some(parse_size(val()?)?),
            "--seed" => seed = Some(parse_size(val()?)?),
            "--verify-at" => verify_at = parse_size(val()?)?,
            "--max-secs" => max_secs = parse_size(val()?)?,
            "--per-conn" => per_conn = parse_size(val()?)?.max(1),
            "--batch" => batch = parse_size(val()?)?.clamp(1, 128),
            "--jobs" => jobs = parse_size(val()?)?.clamp(1, 32),
            "--mix" => {
                let v: Vec<u64> = val()?
                    .split(',')
                    .map(|x| x.parse().map_err(|_| usage("--mix PINGS,PONGS,MUTATE")))
                    .collect::<Result<_, _>>()?;
                let [pings, pongs, mutate] = v[..] else {
                    return Err(usage("--mix PINGS,PONGS,MUTATE"));
                };
                if pings + pongs > 100 || mutate > 100 {
                    return Err(usage("--mix: percentages"));
                }
                mix = Mix {
                    pings,
                    pongs,
                    mutate,
                };
            }
            _ => return Err(usage(format!("fuzz: unknown argument {a}"))),
        }
    }
    let frames = frames.ok_or_else(|| usage("fuzz needs --frames N"))?;
    let seed = seed.unwrap_or_else(|| u64::from_le_bytes(sec::random_bytes()) >> 16);
    let mut c = Conn::connect(addr, sec)?;
    let g = c.handshake(0)?;
    drop(c);
    println!(
        "fuzz {addr}: {frames} frames in {jobs} jobs, seed {seed}, protection {}{}",
        sec.protection.as_str(),
        if sec.auth() { " with a key" } else { "" }
    );
    io::stdout().flush()?;
    let start = Instant::now();
    let limit = Duration::from_secs(max_secs);
    // Job `j` draws from its own stream of the seed, so a seed gives the
    // same frames whatever the interleaving of the jobs.
    let workers: Vec<_> = (0..jobs)
        .map(|j| {
            let mut f = Fuzz {
                addr: addr.to_string(),
                sec: sec.clone(),
                rng: Rng(seed ^ j.wrapping_mul(0xa076_1d64_78bd_642f)),
                stats: Stats::default(),
                left: frames / jobs + u64::from(j < frames % jobs),
                size: g.size,
                block: g.logical_block_size,
                identity: g.export,
                mix,
                per_conn,
                batch,
            };
            std::thread::spawn(move || -> Result<Stats, String> {
                let mut next_report = 10_000;
                while f.left > 0 {
                    if start.elapsed() > limit {
                        return Err(format!(
                            "job {j}: only {} frames in {max_secs} s",
                            f.stats.frames
                        ));
                    }
                    let conn = f.stats.connections;
                    f.connection().map_err(|e| {
                        format!(
                            "job {j}, connection {conn}, after {} frames: {}",
                            f.stats.frames, e.msg
                        )
                    })?;
                    if f.stats.frames >= next_report {
                        println!(
                            "fuzz: job {j}: {} frames, {} connections, {:.1} s",
                            f.stats.frames,
                            f.stats.connections,
                            start.elapsed().as_secs_f64()
                        );
                        let _ = io::stdout().flush();
                        next_report += 10_000;
                    }
                }
                Ok(f.stats)
            })
        })
        .collect();
    let mut s = Stats::default();
    let mut errors = Vec::new();
    for w in workers {
        match w.join() {
            Ok(Ok(t)) => s.add(&t),
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("a job panicked".into()),
        }
    }
    if !errors.is_empty() {
        return Err(unexpected(format!(
            "fuzz (seed {seed}): {}",
            errors.join("; ")
        )));
    }
    let secs = start.elapsed().as_secs_f64();
    // The export must still serve a well-behaved session.
    let mut c = Conn::connect(addr, sec)?;
    c.handshake(0)?;
    let len = (1u64 << 20).min(g.size - verify_at.min(g.size));
    c.write_pattern(verify_at, len, seed)?;
    c.verify_pattern(verify_at, len, seed)?;
    println!(
        "fuzz: {} frames over {} connections in {secs:.1} s, seed {seed}: {} replies checked \
         ({} refusals, {} busy), {} pongs, {} closes checked, {} HELLOs refused, \
         {} key updates sent and {} received; a fresh session wrote and read back {len} bytes",
        s.frames,
        s.connections,
        s.replies,
        s.refusals,
        s.busy,
        s.pongs,
        s.closes,
        s.hello_refusals,
        s.key_updates,
        s.key_updates_in
    );
    Ok(())
}

impl Fuzz {
    /// One connection: maybe a mutated HELLO, a run of frames, maybe a
    /// fatal frame at the end.
    fn connection(&mut self) -> Res {
        self.stats.connections += 1;
        let mut c = Conn::connect(&self.addr, &self.sec)?;
        let mut hello = c.hello_body(0);
        if self.rng.pct(6) {
            match self.fuzz_hello(&mut c, &mut hello)? {
                Some(()) => {}
                None => return Ok(()),
            }
        } else if self.sec.auth() && self.rng.pct(3) {
            return self.fuzz_auth(&mut c, &hello);
        } else {
            self.count(1);
        }
        let grant = match c.try_handshake(&hello)? {
            Ok(g) => g,
            Err(s) => {
                return Err(unexpected(format!(
                    "a valid HELLO was refused: {}",
                    s.as_str()
                )))
            }
        };
        if self.sec.auth() {
            self.count(1);
        }
        let limits = grant.limits();
        let depth = u64::from(grant.queue_depth).min(self.batch);
        let mut run = 1 + self.rng.below(2 * self.per_conn);
        while run > 0 && self.left > 0 {
            let n = (1 + self.rng.below(depth)).min(run).min(self.left);
            self.batch(&mut c, &limits, &grant, n)?;
            run -= n;
        }
        let r = if self.left > 0 && self.rng.pct(85) {
            self.fatal(&mut c, &limits)
        } else {
            Ok(())
        };
        self.stats.key_updates += c.w.tx.updates;
        self.stats.key_updates_in += c.w.rx.updates;
        let _ = c.w.sock.shutdown(Shutdown::Both);
        r
    }

    fn count(&mut self, n: u64) {
        self.stats.frames += n;
        self.left = self.left.saturating_sub(n);
    }

    /// Sends a mutated HELLO. `Some(())` if it is still acceptable (then
    /// `hello` is it and the caller runs the handshake with it), `None` once
    /// the expected refusal or close was checked.
    fn fuzz_hello(&mut self, c: &mut Conn, hello: &mut HelloBody) -> Res<Option<()>> {
        let mut hb = Header::hello().encode();
        let mut body = hello.encode();
        match self.rng.below(14) {
            0 => {
                let bit = self.rng.below(HEADER_LEN as u64 * 8) as usize;
                hb[bit / 8] ^= 1 << (bit % 8);
            }
            1..=5 => {
                for _ in 0..1 + self.rng.below(3) {
                    let bit = self.rng.below(HELLO_LEN as u64 * 8) as usize;
                    body[bit / 8] ^= 1 << (bit % 8);
                }
            }
            6 => {
                let at = self.rng.pick(&[
                    0usize, 4, 16, 20, 22, 32, 33, 34, 36, 40, 103, 104, 135, 136, 199, 200, 263,
                ]);
                body[at] = self
                    .rng
                    .pick(&[0u8, 1, 2, 3, 4, 0x20, 0x40, 0x7f, 0x80, 0xff]);
            }
            7 => {
                // Versions.
                let v = |r: &mut Rng| r.pick(&[0u32, 1, 2, 3, 7, u32::MAX]);
                let (a, b) = (v(&mut self.rng), v(&mut self.rng));
                body[0..4].copy_from_slice(&a.to_be_bytes());
                body[4..8].copy_from_slice(&b.to_be_bytes());
            }
            8 | 9 => {
                // The key share: of small order, zero, another point,
                // the same point in another encoding.
                let mut share = *c.eph.public();
                match self.rng.below(4) {
                    0 => share = self.rng.pick(&sec::small_order_points()),
                    1 => share = *Ephemeral::generate().public(),
                    2 => share[31] ^= 0x80,
                    _ => share[self.rng.below(32) as usize] ^= 1 << self.rng.below(8),
                }
                body[KEY_SHARE_AT..CLIENT_AT].copy_from_slice(&share);
            }
            10 | 11 => {
                // An identity: the client's or the export's.
                let at = if self.rng.pct(50) {
                    CLIENT_AT
                } else {
                    EXPORT_AT
                };
                let field = &mut body[at..at + NAME_LEN];
                let name: &[u8] = match self.rng.below(8) {
                    0 => b"",
                    1 => b"a",
                    2 => b"another.export",
                    3 => self.identity.as_bytes(),
                    4 => b"with space",
                    5 => b"tab\tin",
                    6 => b"del\x7f",
                    _ => b"x",
                };
                field.fill(0);
                field[..name.len()].copy_from_slice(name);
                match self.rng.below(4) {
                    // Junk after the NUL, or no NUL at all.
                    0 => field[NAME_LEN - 1 - self.rng.below(3) as usize] = b'j',
                    1 => field.fill(b'n'),
                    _ => {}
                }
            }
            12 => {
                // The security settings, consistent or not.
                body[32] = self.rng.below(5) as u8;
                body[33] = self.rng.below(3) as u8;
            }
            _ => {
                // Truncated: part of the HELLO, then EOF.
                let mut msg = hb.to_vec();
                msg.extend_from_slice(&body);
                msg.truncate(self.rng.below(msg.len() as u64) as usize);
                c.w.send_bytes(&msg)?;
                c.w.sock.shutdown(Shutdown::Write)?;
                self.count(1);
                return self.expect_close(c, &[]).map(|()| None);
            }
        }
        self.count(1);
        let header_ok = matches!(Header::decode(&hb), Ok(h) if h.kind == Kind::Hello);
        let mut msg = hb.to_vec();
        msg.extend_from_slice(&body);
        if !header_ok {
            c.w.send_bytes(&msg)?;
            return self.expect_close(c, &hb).map(|()| None);
        }
        let fate = predict_hello(&body, &self.sec, &self.identity, c.eph.public());
        let what = |got: String| {
            unexpected(format!(
                "mutated HELLO body {}: got {got}, expected {fate:?}",
                hex(&body)
            ))
        };
        match fate {
            HelloFate::Accepted => {
                // Decodes: the prediction said so.
                *hello = HelloBody::decode(&body)
                    .map_err(|_| what("a body that does not decode".into()))?;
                Ok(Some(()))
            }
            HelloFate::Refused(want) => {
                c.w.send_bytes(&msg)?;
                let m = c.w.recv()?;
                if m.h.kind != Kind::HelloReply || m.h.status != want {
                    return Err(what(format!("{:?} {}", m.h.kind, m.h.status.as_str())));
                }
                self.stats.hello_refusals += 1;
                self.expect_close(c, &[]).map(|()| None)
            }
            HelloFate::AuthFails => {
                c.w.send_bytes(&msg)?;
                let m = c.w.recv()?;
                if m.h.kind != Kind::Challenge {
                    return Err(what(format!("{:?} {}", m.h.kind, m.h.status.as_str())));
                }
                // Our proof, for the share we hold, not the one sent.
                let hello = HelloBody::decode(&body)
                    .map_err(|_| what("a body that does not decode".into()))?;
                let proof = self.proof(c, &hello, &m.payload)?;
                self.auth_refused(c, &proof).map(|()| None)
            }
        }
    }

    /// `proof_local` of `c` for `hello` and the CHALLENGE body `payload`,
    /// the CHALLENGE checked as a local node checks it.
    fn proof(&self, c: &Conn, hello: &HelloBody, payload: &[u8]) -> Res<[u8; AUTH_LEN]> {
        let bad = |what: &str| unexpected(format!("bad CHALLENGE {}: {what}", hex(payload)));
        let cb: [u8; CHALLENGE_LEN] = payload.try_into().map_err(|_| bad("size"))?;
        let ch = ChallengeBody::decode(&cb).map_err(|e| bad(e.as_str()))?;
        if ch.export != self.identity {
            return Err(bad("another export identity than the first handshake's"));
        }
        let dh = c
            .eph
            .agree(&ch.key_share)
            .ok_or_else(|| bad("all-zero DH"))?;
        let key = self.sec.key.as_deref().unwrap_or_default();
        let schedule = sec::Schedule::new(key, &hello.client, &ch.export, &dh);
        Ok(schedule.proof_local(&sec::th1(&hello.encode(), &cb)))
    }

    /// Sends `proof` as AUTH and requires AUTH_FAILED, then a close.
    fn auth_refused(&mut self, c: &mut Conn, proof: &[u8; AUTH_LEN]) -> Res {
        c.w.send(&Header::auth(), proof)?;
        self.count(1);
        let m = c.w.recv()?;
        if m.h.kind != Kind::HelloReply || m.h.status != Status::AuthFailed {
            return Err(unexpected(format!(
                "AUTH with proof {}: got {:?} {}, expected HELLO_REPLY AUTH_FAILED",
                hex(proof),
                m.h.kind,
                m.h.status.as_str()
            )));
        }
        self.stats.hello_refusals += 1;
        self.expect_close(c, &[])
    }

    /// A good HELLO, then a mutated AUTH: AUTH_FAILED for a wrong proof, a
    /// close for a message that is no AUTH of the right size.
    fn fuzz_auth(&mut self, c: &mut Conn, hello: &HelloBody) -> Res {
        c.send_hello(hello)?;
        self.count(1);
        let m = c.w.recv()?;
        if m.h.kind != Kind::Challenge {
            return Err(unexpected(format!("{:?} instead of CHALLENGE", m.h.kind)));
        }
        let mut proof = self.proof(c, hello, &m.payload)?;
        let mut msg = Header::auth().encode().to_vec();
        match self.rng.below(5) {
            0 | 1 => {
                for _ in 0..1 + self.rng.below(3) {
                    let bit = self.rng.below(AUTH_LEN as u64 * 8) as usize;
                    proof[bit / 8] ^= 1 << (bit % 8);
                }
                return self.auth_refused(c, &proof);
            }
            2 => {
                // Another payload size claimed and sent.
                let n = self.rng.pick(&[0u32, 16, 31, 33, 64, CHALLENGE_LEN as u32]);
                msg[12..16].copy_from_slice(&n.to_be_bytes());
                msg.extend(std::iter::repeat_n(0x5au8, n as usize));
            }
            3 => {
                // Truncated, then EOF.
                msg.extend_from_slice(&proof);
                msg.truncate(self.rng.below(msg.len() as u64) as usize);
                c.w.send_bytes(&msg)?;
                c.w.sock.shutdown(Shutdown::Write)?;
                self.count(1);
                return self.expect_close(c, &[]);
            }
            _ => {
                // The proof under another kind.
                let kind = self.rng.pick(&[
                    Kind::Hello,
                    Kind::Challenge,
                    Kind::Ping,
                    Kind::HelloReply,
                    Kind::KeyUpdate,
                ]);
                msg[4] = kind.as_u8();
                msg.extend_from_slice(&proof);
            }
        }
        c.w.send_bytes(&msg)?;
        self.count(1);
        let hb: [u8; HEADER_LEN] = msg[..HEADER_LEN].try_into().unwrap_or([0; HEADER_LEN]);
        self.expect_close(c, &hb)
    }

    /// A valid request of a random op, within the device and max IO.
    fn valid_request(&mut self, c: &mut Conn, g: &HelloReplyBody) -> Header {
        let b = u64::from(self.block);
        let max = u64::from(g.max_io_bytes).min(64 << 10);
        let op = self.rng.pick(&[
            Op::Read,
            Op::Read,
            Op::Read,
            Op::Read,
            Op::Write,
            Op::Write,
            Op::Write,
            Op::Flush,
            Op::Discard,
            Op::WriteZeroes,
        ]);
        // Mostly small: the frames are about the headers, and data costs
        // time in an emulated guest.
        let blocks = 1 + match self.rng.below(100) {
            0..=79 => self.rng.below(8),
            80..=94 => self.rng.below(32),
            _ => self.rng.below(max / b),
        };
        let len = (b * blocks).min(max / b * b);
        let off = self.rng.below((self.size - len) / b + 1) * b;
        let flags = match op {
            Op::Write | Op::Discard if self.rng.pct(20) => crate::proto::FLAG_FUA,
            Op::WriteZeroes => self.rng.below(u64::from(FLAGS_ALL) + 1) as u16,
            _ => 0,
        };
        match op {
            Op::Flush => c.request(op, 0, 0, 0),
            _ => c.request(op, flags, off, len as u32),
        }
    }

    /// Mutates the header bytes of a near-valid frame.
    fn mutate(&mut self, hb: &mut [u8; HEADER_LEN]) {
        let size = self.size;
        let b = u64::from(self.block);
        for _ in 0..1 + self.rng.below(2) {
            match self.rng.below(12) {
                0 | 1 => {
                    // A bit flip outside the magic.
                    let bit = 32 + self.rng.below((HEADER_LEN as u64 - 4) * 8) as usize;
                    hb[bit / 8] ^= 1 << (bit % 8);
                }
                2 => hb[5] = self.rng.below(7) as u8,
                3 => {
                    let f = self.rng.pick(&[0u16, 1, 2, 3, 4, 0x8000]);
                    hb[6..8].copy_from_slice(&f.to_be_bytes());
                }
                4 => {
                    let s = self.rng.pick(&[0u32, 0, 0, 1, 2, 8, 9, 11, 12, 99]);
                    hb[8..12].copy_from_slice(&s.to_be_bytes());
                }
                5 | 6 => {
                    let random = self.rng.below(size / b) * b;
                    let off = self.rng.pick(&[
                        0,
                        size,
                        size - b,
                        size - 4096,
                        size + b,
                        u64::MAX / b * b,
                        u64::MAX,
                        1,
                        b - 1,
                        1 << 62,
                        random,
                    ]);
                    hb[24..32].copy_from_slice(&off.to_be_bytes());
                }
                7 | 8 => {
                    let len = self.rng.pick(&[
                        0u32,
                        1,
                        511,
                        512,
                        4096,
                        4096 + 512,
                        1 << 20,
                        (1 << 20) + 4096,
                        MAX_IO_BYTES_LIMIT,
                        u32::MAX,
                        u32::MAX - 511,
                    ]);
                    hb[32..36].copy_from_slice(&len.to_be_bytes());
                }
                9 => {
                    // The payload claim: another small size.
                    let p = self.rng.pick(&[0u32, 1, 511, 512, 4096, 8192]);
                    hb[12..16].copy_from_slice(&p.to_be_bytes());
                }
                10 => {
                    // Field swaps: payload with length, or kind with op.
                    if self.rng.pct(50) {
                        let (p, l) = (hb[12..16].to_vec(), hb[32..36].to_vec());
                        hb[12..16].copy_from_slice(&l);
                        hb[32..36].copy_from_slice(&p);
                    } else {
                        hb.swap(4, 5);
                    }
                }
                _ => hb[36 + self.rng.below(4) as usize] = 1 + self.rng.below(255) as u8,
            }
        }
    }

    /// Sends `n` frames in one write, then checks every answer.
    fn batch(&mut self, c: &mut Conn, limits: &Limits, g: &HelloReplyBody, n: u64) -> Res {
        let keyed = self.sec.protection.needs_key();
        let mut out = Vec::new();
        let mut expects = Vec::new();
        let mut i = 0;
        while i < n {
            // Now and then a key update (sometimes several in a row): the
            // frames after it are sealed with the next key.
            if keyed && self.rng.pct(4) {
                for _ in 0..1 + self.rng.below(3) / 2 {
                    out.extend(c.w.key_update()?);
                }
            }
            let r = self.rng.below(100);
            let (hb, payload) = if r < self.mix.pings {
                (Header::ping(self.rng.next()).encode(), Vec::new())
            } else if r < self.mix.pings + self.mix.pongs {
                (Header::pong(self.rng.next()).encode(), Vec::new())
            } else {
                let h = self.valid_request(c, g);
                let mut hb = h.encode();
                if self.rng.pct(self.mix.mutate) {
                    self.mutate(&mut hb);
                }
                (hb, Vec::new())
            };
            let e = predict(&hb, limits, keyed);
            // Fatal frames come last, one per connection; a mutation that
            // made a KEY_UPDATE is left out (the sealer would not follow).
            if matches!(e, Expect::Close | Expect::KeyUpdate) {
                continue;
            }
            let claim = u32::from_be_bytes([hb[12], hb[13], hb[14], hb[15]]) as usize;
            if claim > 256 << 10 && !self.rng.pct(2) {
                continue;
            }
            let mut payload = payload;
            payload.resize(claim, self.rng.next() as u8);
            out.extend(c.w.frame_raw(&hb, &payload)?);
            expects.push((e, hb));
            i += 1;
        }
        c.w.send_bytes(&out)?;
        self.count(n);
        let mut pending: VecDeque<(Header, Vec<Status>, [u8; HEADER_LEN])> = VecDeque::new();
        let mut pongs = Vec::new();
        for (e, hb) in expects {
            match e {
                Expect::Reply { req, statuses } => pending.push_back((req, statuses, hb)),
                Expect::Pong(k) => pongs.push(k),
                Expect::Nothing | Expect::KeyUpdate | Expect::Close => {}
            }
        }
        while !pending.is_empty() || !pongs.is_empty() {
            let m = c.w.recv().map_err(|e| {
                unexpected(format!(
                    "waiting for {} replies and {} pongs: {e}; first pending request {}",
                    pending.len(),
                    pongs.len(),
                    pending.front().map_or(String::new(), |p| hex(&p.2))
                ))
            })?;
            match m.h.kind {
                Kind::Pong => {
                    let Some(i) = pongs.iter().position(|&k| k == m.h.id) else {
                        return Err(unexpected(format!("PONG for unknown cookie {:#x}", m.h.id)));
                    };
                    pongs.swap_remove(i);
                    self.stats.pongs += 1;
                }
                Kind::IoReply => {
                    let r = m.h;
                    let Some(i) = pending.iter().position(|(q, st, _)| {
                        q.id == r.id
                            && q.op == r.op
                            && q.flags == r.flags
                            && q.offset == r.offset
                            && q.length == r.length
                            && st.contains(&r.status)
                    }) else {
                        return Err(unexpected(format!(
                            "unexpected IO_REPLY {}: {:?} status {}; pending: {}",
                            hex(&m.raw),
                            r.op,
                            r.status.as_str(),
                            pending
                                .iter()
                                .map(|p| format!(
                                    "{} -> {:?}",
                                    hex(&p.2),
                                    p.1.iter().map(|s| s.as_str()).collect::<Vec<_>>()
                                ))
                                .collect::<Vec<_>>()
                                .join("; ")
                        )));
                    };
                    let (q, _, _) = pending.remove(i).unwrap_or_else(|| unreachable!());
                    let want = if q.op == Some(Op::Read) && r.status == Status::Ok {
                        q.length as usize
                    } else {
                        0
                    };
                    if m.payload.len() != want {
                        return Err(unexpected(format!(
                            "IO_REPLY {} carries {} bytes, expected {want}",
                            hex(&m.raw),
                            m.payload.len()
                        )));
                    }
                    self.stats.replies += 1;
                    match r.status {
                        Status::Ok => {}
                        Status::Busy => self.stats.busy += 1,
                        _ => self.stats.refusals += 1,
                    }
                }
                // The export may grow the device at any time.
                Kind::Resize => {}
                k => return Err(unexpected(format!("unexpected {k:?} from the export"))),
            }
        }
        Ok(())
    }

    /// One fatal frame: the export must close without answering it.
    fn fatal(&mut self, c: &mut Conn, limits: &Limits) -> Res {
        let protected = self.sec.protection.trailer_len(32) > 0;
        let seq = self.sec.protection.needs_key();
        let mut req = c.request(Op::Write, 0, 0, 4096).encode();
        let data = vec![0x3cu8; 4096];
        let what = self.rng.below(if protected { 12 } else { 8 });
        let bytes = if self.rng.pct(12) {
            self.fatal_key_update(c, seq)?
        } else {
            match what {
                0 => {
                    let bit = self.rng.below(32) as usize;
                    req[bit / 8] ^= 1 << (bit % 8);
                    req.to_vec()
                }
                1 => {
                    req[4] = self.rng.pick(&[0u8, 9, 0x80, 0xff]);
                    req.to_vec()
                }
                2 => {
                    req[5] = self.rng.pick(&[0u8, 6, 0xff]);
                    req.to_vec()
                }
                3 => {
                    req[8..12]
                        .copy_from_slice(&self.rng.pick(&[14u32, 99, u32::MAX]).to_be_bytes());
                    req.to_vec()
                }
                4 => {
                    let p = MAX_IO_BYTES_LIMIT + 1 + self.rng.below(1 << 20) as u32;
                    req[12..16].copy_from_slice(&p.to_be_bytes());
                    req.to_vec()
                }
                5 => {
                    // A kind the export never accepts after the handshake.
                    let (h, body): (Header, &[u8]) = match self.rng.below(5) {
                        0 => (Header::hello(), &[0u8; HELLO_LEN]),
                        1 => (Header::hello_reply(Status::Busy), &[]),
                        2 => (Header::challenge(), &[0u8; CHALLENGE_LEN]),
                        3 => (Header::auth(), &[0u8; AUTH_LEN]),
                        _ => (Header::io(Op::Write, 0, 1, 0, 4096).reply(Status::Ok), &[]),
                    };
                    c.w.frame(&h, body)?
                }
                6 => {
                    // A truncated header, then EOF.
                    let n = 1 + self.rng.below(HEADER_LEN as u64 - 1) as usize;
                    c.w.send_bytes(&req[..n])?;
                    c.w.sock.shutdown(Shutdown::Write)?;
                    self.count(1);
                    return self.expect_close(c, &req);
                }
                7 => {
                    // A WRITE cut short in its data, then EOF.
                    let f = c.w.frame_raw(&req, &data)?;
                    let n = HEADER_LEN + self.rng.below(4096) as usize;
                    c.w.send_bytes(&f[..n])?;
                    c.w.sock.shutdown(Shutdown::Write)?;
                    self.count(1);
                    return self.expect_close(c, &req);
                }
                8 => {
                    // A bit flipped after sealing, anywhere in the frame.
                    let mut f = c.w.frame_raw(&req, &data)?;
                    let bit = self.rng.below(f.len() as u64 * 8) as usize;
                    f[bit / 8] ^= 1 << (bit % 8);
                    f
                }
                9 => {
                    // The trailer dropped (the next bytes read as one).
                    let mut f = c.w.frame_raw(&req, &data)?;
                    f.truncate(HEADER_LEN + data.len());
                    f.extend(c.w.frame(&Header::ping(1), &[])?);
                    f.extend_from_slice(&[0u8; 96]);
                    f
                }
                _ if seq => {
                    // A seq that is not the next one: one used before (a
                    // replay), or one ahead (those before it dropped).
                    let h = Header::ping(self.rng.next()).encode();
                    let next = c.w.tx.seq;
                    let wrong = if next > 0 && self.rng.pct(50) {
                        self.rng.below(next)
                    } else {
                        next + 1 + self.rng.below(3)
                    };
                    let t = c.w.tx.seal_at(wrong, &h, &mut []);
                    let mut f = h.to_vec();
                    f.extend(t);
                    f
                }
                _ => {
                    // crc32c: the trailer of another message.
                    let mut f = c.w.frame_raw(&req, &data)?;
                    let n = f.len();
                    f[n - 1] ^= 0xff;
                    f
                }
            }
        };
        // A bit flip may leave a decodable header: then the frame is not
        // fatal (without a trailer to catch it) and is checked as usual.
        let hb: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap_or([0; HEADER_LEN]);
        if !protected && !matches!(predict(&hb, limits, seq), Expect::Close) {
            return Ok(());
        }
        c.w.send_bytes(&bytes)?;
        self.count(1);
        self.expect_close(c, &hb)
    }

    /// A fatal frame about key updates. In hmac and aead a good KEY_UPDATE
    /// followed by a PING still sealed with the old key (at its next seq,
    /// or at seq 0) or sealed with the new key at a seq other than 0, or a
    /// KEY_UPDATE sealed with a seq that is not the next; in none and
    /// crc32c any KEY_UPDATE.
    fn fatal_key_update(&mut self, c: &mut Conn, keyed: bool) -> Res<Vec<u8>> {
        if !keyed {
            return Ok(c.w.frame(&Header::key_update(), &[])?);
        }
        let ping = Header::ping(self.rng.next()).encode();
        let mut old = c.w.tx.clone();
        let sealed = |s: Result<Vec<u8>, sec::SeqsUsedUp>| s.map_err(io::Error::from);
        let (mut f, t) = match self.rng.below(4) {
            0 | 1 => {
                let f = c.w.key_update()?;
                // The KEY_UPDATE took the old key's next seq.
                old.seq += 1;
                let t = if self.rng.pct(50) {
                    sealed(old.seal(&ping, &mut []))?
                } else {
                    old.seal_at(0, &ping, &mut [])
                };
                (f, t)
            }
            2 => {
                let f = c.w.key_update()?;
                let seq = 1 + self.rng.below(old.seq + 2);
                (f, c.w.tx.seal_at(seq, &ping, &mut []))
            }
            _ => {
                // A replayed or skipped seq for the KEY_UPDATE; the PING
                // after it sealed as if it had been taken.
                let next = old.seq;
                let wrong = if next > 0 && self.rng.pct(50) {
                    self.rng.below(next)
                } else {
                    next + 1 + self.rng.below(3)
                };
                let hb = Header::key_update().encode();
                let mut f = hb.to_vec();
                f.extend(old.seal_at(wrong, &hb, &mut []));
                let mut new = old
                    .rekeyed()
                    .ok_or_else(|| unexpected("no key to replace"))?;
                (f, sealed(new.seal(&ping, &mut []))?)
            }
        };
        f.extend_from_slice(&ping);
        f.extend(t);
        Ok(f)
    }

    /// The export must close `c` without sending anything more.
    fn expect_close(&mut self, c: &mut Conn, what: &[u8]) -> Res {
        match c.w.wait_closed(Duration::from_secs(20))? {
            Some((_, 0)) => {
                self.stats.closes += 1;
                Ok(())
            }
            Some((_, n)) => Err(unexpected(format!(
                "the export sent {n} bytes before closing, after fatal frame {}",
                hex(what)
            ))),
            None => Err(unexpected(format!(
                "the export did not close within 20 s after fatal frame {}",
                hex(what)
            ))),
        }
    }
}

fn hex(b: &[u8]) -> String {
    crate::examples::hex(b)
}

impl From<RecvError> for io::Error {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Io(e) => e,
            RecvError::Proto(p) => io::Error::other(p.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            size: 64 << 20,
            logical_block: 512,
            max_io: 1 << 20,
            perms: 3,
            features: 0xf,
        }
    }

    #[test]
    fn predictions() {
        let l = limits();
        assert!(matches!(
            predict(&Header::ping(5).encode(), &l, false),
            Expect::Pong(5)
        ));
        assert!(matches!(
            predict(&Header::pong(5).encode(), &l, true),
            Expect::Nothing
        ));
        assert!(matches!(
            predict(&Header::hello().encode(), &l, true),
            Expect::Close
        ));
        let mut bad = Header::ping(5).encode();
        bad[0] = 0;
        assert!(matches!(predict(&bad, &l, false), Expect::Close));
        // A KEY_UPDATE: taken with keys, a protocol violation without; a
        // malformed one never taken.
        let ku = Header::key_update().encode();
        assert!(matches!(predict(&ku, &l, true), Expect::KeyUpdate));
        assert!(matches!(predict(&ku, &l, false), Expect::Close));
        let mut with_id = ku;
        with_id[23] = 1;
        assert!(matches!(predict(&with_id, &l, true), Expect::Close));
        match predict(
            &Header::io(Op::Read, 0, 1, 64 << 20, 512).encode(),
            &l,
            false,
        ) {
            Expect::Reply { statuses, .. } => assert_eq!(statuses, [Status::Range]),
            e => panic!("{e:?}"),
        }
        match predict(&Header::io(Op::Discard, 0, 1, 0, 512).encode(), &l, false) {
            Expect::Reply { statuses, .. } => assert!(statuses.contains(&Status::NotSupported)),
            e => panic!("{e:?}"),
        }
    }

    /// A short run against this tool's export, in each mode, the export
    /// replacing its keys every 64 KiB: the fuzzer's KEY_UPDATEs (good and
    /// fatal) and its predictions hold against an independent peer.
    #[test]
    fn short_run_against_dstpeer_server() {
        for mode in ["aead", "hmac", "crc32c", "none"] {
            let addr = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .to_string();
            let key = (mode == "hmac" || mode == "aead")
                .then(|| b"a test key of 32 bytes, exactly.".to_vec());
            let sec = SecConfig::new(mode, None, key).expect("valid");
            let mut server_sec = sec.clone();
            server_sec.rekey.bytes = Some(64 << 10);
            let a = addr.clone();
            std::thread::spawn(move || {
                crate::server::main(&a, &["--size", "16M"], &server_sec).is_ok()
            });
            for _ in 0..100 {
                if std::net::TcpStream::connect(&addr).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let args = ["--frames", "1500", "--seed", "11", "--per-conn", "60"];
            if let Err(f) = main(&addr, &args, &sec) {
                panic!("{mode}: {}", f.msg);
            }
        }
    }

    #[test]
    fn rng_is_deterministic() {
        let (mut a, mut b) = (Rng(7), Rng(7));
        for _ in 0..100 {
            assert_eq!(a.next(), b.next());
        }
        assert!((0..1000).all(|_| a.below(10) < 10));
    }

    #[test]
    fn mutations_decode_or_not_but_never_panic() {
        let mut f = Fuzz {
            addr: String::new(),
            sec: SecConfig::default(),
            rng: Rng(1),
            stats: Stats::default(),
            left: 0,
            size: 64 << 20,
            block: 512,
            identity: Name::EMPTY,
            mix: Mix {
                pings: 8,
                pongs: 3,
                mutate: 55,
            },
            per_conn: 500,
            batch: 64,
        };
        let l = limits();
        let (mut close, mut reply) = (0, 0);
        for i in 0..50_000u64 {
            let mut hb = Header::io(Op::Write, 0, i, 4096, 4096).encode();
            f.mutate(&mut hb);
            match predict(&hb, &l, true) {
                Expect::Close => close += 1,
                Expect::Reply { .. } => reply += 1,
                _ => {}
            }
        }
        // Most mutations stay decodable (near-valid); some are fatal.
        assert!(reply > 25_000 && close > 2_000, "{reply} {close}");
    }
}
