// SPDX-License-Identifier: GPL-2.0

//! `dstpeer fuzz ADDR:PORT --frames N --seed S`: randomized frames against
//! an export, mostly near-valid mutations of valid frames.
//!
//! Every frame's fate is predicted with the protocol code the export runs
//! (`Header::decode`, `validate_request`, the HELLO checks) and checked:
//!
//! - a header that does not decode, a kind the export never accepts, a
//!   tampered or replayed trailer, a truncated frame: the export must close
//!   the connection (and send nothing for it);
//! - an IO request that decodes: exactly one IO_REPLY echoing it, with the
//!   status `validate_request` gives (a request it accepts may also get BUSY,
//!   and DISCARD or WRITE_ZEROES NOT_SUPPORTED), and a successful READ its
//!   data;
//! - a PING: a PONG with its cookie; a PONG: nothing;
//! - a mutated HELLO: the refusal the HELLO checks give, or a session.
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
    negotiate_version, validate_request, Header, HelloBody, HelloReplyBody, Kind, Limits, Op,
    Status, AUTH_LEN, FLAGS_ALL, HEADER_LEN, HELLO_LEN, MAX_IO_BYTES_LIMIT,
};
use crate::sec::{self, SecConfig};
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
    /// Closing the connection.
    Close,
}

/// The fate of a frame with header `hb`, after a handshake granting `limits`.
fn predict(hb: &[u8; HEADER_LEN], limits: &Limits) -> Expect {
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
    /// What a first handshake granted (size, block, ...).
    size: u64,
    block: u32,
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
         ({} refusals, {} busy), {} pongs, {} closes checked, {} HELLOs refused; \
         a fresh session wrote and read back {len} bytes",
        s.frames, s.connections, s.replies, s.refusals, s.busy, s.pongs, s.closes, s.hello_refusals
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
        if self.left > 0 && self.rng.pct(85) {
            self.fatal(&mut c, &limits)?;
        }
        let _ = c.w.sock.shutdown(Shutdown::Both);
        Ok(())
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
        match self.rng.below(10) {
            0 => {
                let bit = self.rng.below(HEADER_LEN as u64 * 8) as usize;
                hb[bit / 8] ^= 1 << (bit % 8);
            }
            1..=6 => {
                for _ in 0..1 + self.rng.below(3) {
                    let bit = self.rng.below(HELLO_LEN as u64 * 8) as usize;
                    body[bit / 8] ^= 1 << (bit % 8);
                }
            }
            7 => {
                let at = self
                    .rng
                    .pick(&[0usize, 4, 16, 20, 22, 32, 33, 34, 36, 40, 103]);
                body[at] = self.rng.pick(&[0u8, 1, 2, 3, 4, 0x40, 0x80, 0xff]);
            }
            8 => {
                // Versions.
                let v = |r: &mut Rng| r.pick(&[0u32, 1, 2, 7, u32::MAX]);
                let (a, b) = (v(&mut self.rng), v(&mut self.rng));
                body[0..4].copy_from_slice(&a.to_be_bytes());
                body[4..8].copy_from_slice(&b.to_be_bytes());
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
        if !header_ok {
            let mut msg = hb.to_vec();
            msg.extend_from_slice(&body);
            c.w.send_bytes(&msg)?;
            return self.expect_close(c, &hb).map(|()| None);
        }
        let parsed = HelloBody::decode(&body).and_then(|b| b.validate().map(|()| b));
        let refusal = match parsed {
            Err(_) => Some(Status::Invalid),
            Ok(b) if negotiate_version(b.min_version, b.max_version).is_none() => {
                Some(Status::Version)
            }
            Ok(b) if !b.security.matches(&self.sec.security()) => Some(Status::Mismatch),
            Ok(_) => None,
        };
        match (refusal, parsed) {
            (None, Ok(b)) => {
                *hello = b;
                Ok(Some(()))
            }
            (want, _) => {
                let want = want.unwrap_or(Status::Invalid);
                let mut msg = hb.to_vec();
                msg.extend_from_slice(&body);
                c.w.send_bytes(&msg)?;
                let m = c.w.recv()?;
                if m.h.kind != Kind::HelloReply || m.h.status != want {
                    return Err(unexpected(format!(
                        "mutated HELLO body {}: got {:?} {}, expected HELLO_REPLY {}",
                        hex(&body),
                        m.h.kind,
                        m.h.status.as_str(),
                        want.as_str()
                    )));
                }
                self.stats.hello_refusals += 1;
                self.expect_close(c, &[]).map(|()| None)
            }
        }
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
        let mut out = Vec::new();
        let mut expects = Vec::new();
        let mut i = 0;
        while i < n {
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
            let e = predict(&hb, limits);
            if matches!(e, Expect::Close) {
                // Fatal frames come last, one per connection.
                continue;
            }
            let claim = u32::from_be_bytes([hb[12], hb[13], hb[14], hb[15]]) as usize;
            if claim > 256 << 10 && !self.rng.pct(2) {
                continue;
            }
            let mut payload = payload;
            payload.resize(claim, self.rng.next() as u8);
            out.extend(c.w.frame_raw(&hb, &payload));
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
                Expect::Nothing | Expect::Close => {}
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
        let bytes = match what {
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
                req[8..12].copy_from_slice(&self.rng.pick(&[12u32, 99, u32::MAX]).to_be_bytes());
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
                    2 => (Header::auth(Kind::Challenge), &[0u8; AUTH_LEN]),
                    3 => (Header::auth(Kind::Auth), &[0u8; AUTH_LEN]),
                    _ => (Header::io(Op::Write, 0, 1, 0, 4096).reply(Status::Ok), &[]),
                };
                c.w.frame(&h, body)
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
                let f = c.w.frame_raw(&req, &data);
                let n = HEADER_LEN + self.rng.below(4096) as usize;
                c.w.send_bytes(&f[..n])?;
                c.w.sock.shutdown(Shutdown::Write)?;
                self.count(1);
                return self.expect_close(c, &req);
            }
            8 => {
                // A bit flipped after sealing, anywhere in the frame.
                let mut f = c.w.frame_raw(&req, &data);
                let bit = self.rng.below(f.len() as u64 * 8) as usize;
                f[bit / 8] ^= 1 << (bit % 8);
                f
            }
            9 => {
                // The trailer dropped (the next bytes read as one).
                let mut f = c.w.frame_raw(&req, &data);
                f.truncate(HEADER_LEN + data.len());
                f.extend(c.w.frame(&Header::ping(1), &[]));
                f.extend_from_slice(&[0u8; 96]);
                f
            }
            _ if seq => {
                // A seq used before (a replay of the PING sealed first).
                let h = Header::ping(self.rng.next()).encode();
                let used = self.rng.below(c.w.tx.seq.max(1));
                let t = c.w.tx.seal_at(used, &h, &mut []);
                let mut f = h.to_vec();
                f.extend(t);
                f
            }
            _ => {
                // crc32c: the trailer of another message.
                let mut f = c.w.frame_raw(&req, &data);
                let n = f.len();
                f[n - 1] ^= 0xff;
                f
            }
        };
        // A bit flip may leave a decodable header: then the frame is not
        // fatal (without a trailer to catch it) and is checked as usual.
        let hb: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap_or([0; HEADER_LEN]);
        if !protected && !matches!(predict(&hb, limits), Expect::Close) {
            return Ok(());
        }
        c.w.send_bytes(&bytes)?;
        self.count(1);
        self.expect_close(c, &hb)
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
            predict(&Header::ping(5).encode(), &l),
            Expect::Pong(5)
        ));
        assert!(matches!(
            predict(&Header::pong(5).encode(), &l),
            Expect::Nothing
        ));
        assert!(matches!(
            predict(&Header::hello().encode(), &l),
            Expect::Close
        ));
        let mut bad = Header::ping(5).encode();
        bad[0] = 0;
        assert!(matches!(predict(&bad, &l), Expect::Close));
        match predict(&Header::io(Op::Read, 0, 1, 64 << 20, 512).encode(), &l) {
            Expect::Reply { statuses, .. } => assert_eq!(statuses, [Status::Range]),
            e => panic!("{e:?}"),
        }
        match predict(&Header::io(Op::Discard, 0, 1, 0, 512).encode(), &l) {
            Expect::Reply { statuses, .. } => assert!(statuses.contains(&Status::NotSupported)),
            e => panic!("{e:?}"),
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
            match predict(&hb, &l) {
                Expect::Close => close += 1,
                Expect::Reply { .. } => reply += 1,
                _ => {}
            }
        }
        // Most mutations stay decodable (near-valid); some are fatal.
        assert!(reply > 25_000 && close > 2_000, "{reply} {close}");
    }
}
