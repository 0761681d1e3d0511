// SPDX-License-Identifier: GPL-2.0

//! `dstpeer client ADDR:PORT ...`: a userspace local node for testing an
//! export node over the real wire protocol.
//!
//! Data commands (`write`, `read`, `verify`) split a range into requests of
//! the granted maximum size and keep up to [`WINDOW`] of them in flight.
//! The data written by `write` and checked by `verify` is a deterministic
//! pattern of the absolute byte offset and a seed, so any sub-range can be
//! checked, and `pattern` prints the same bytes for comparing with the device.
//!
//! The `bad-*` commands send one kind of malformed traffic and check the
//! export's reaction; the full hostile suite is `attack-export`
//! (`attack.rs`). `soak` is the well-behaved session that must carry on
//! while the hostile suite runs.
//!
//! Every command speaks the peer's security settings (`--protection`,
//! `--alg`, `--key-file`) and identities (`--client-name`, `--export-name`):
//! the authenticated handshake of protocol version 2 (a fresh X25519 key
//! pair per connection) and the trailers. `--dump-secrets` writes what a
//! recorded connection needs to be decrypted (`decrypt-capture --secret`).
//!
//! Exit status: 0 as expected, 1 not as expected, 2 usage or connection
//! error.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use crate::examples::hex;
use crate::proto::{
    validate_reply, validate_resize, Header, HelloBody, HelloReplyBody, Kind, Op, Status, FLAG_FUA,
    MAGIC,
};
use crate::sec::{Ephemeral, SecConfig};
use crate::wire::{self, Established, HsError, Wire};

/// Requests kept in flight by the data commands.
const WINDOW: usize = 16;

/// How long any read from the export may take before we give up.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) const USAGE: &str =
    "  client ADDR:PORT COMMAND [ARGS]   act as a local node (sizes take K, M, G suffixes)
    hello                     print what the export grants
    write OFF LEN SEED [--fua] [--expect STATUS]
                              write the pattern of SEED at OFF
    read OFF LEN [--expect STATUS]
                              read and print an FNV-1a checksum
    verify OFF LEN SEED       read back and compare with the pattern of SEED
    flush | discard OFF LEN | zeroes OFF LEN [--expect STATUS]
    ping                      send PING, expect PONG
    soak OFF LEN --stop-file F [--max-secs N] [--verify-only SEED]
                              write and verify OFF..OFF+LEN in rounds, each
                              with a new seed, until F exists (or only verify
                              the pattern of SEED, e.g. on a read-only export)
    hold SECS                 stay connected and idle; report if the export closes
    stall SECS                a reader that stops reading: send READs of the
                              largest size until the export stops taking them,
                              read no reply for SECS, then close
    bad-magic                 garbage header: expect the export to close
    bad-kind                  HELLO after the handshake: expect a close
    bad-hello                 HELLO with min_version 0: expect INVALID, then a close
    bad-payload               WRITE whose payload differs from its length:
                              expect INVALID, and the session to go on
    bad-depth                 queue depth 1, two requests at once: expect a close
                              (destroys data: zeroes the whole export)
    no-hello                  send nothing: expect a close within the handshake timeout
  pattern OFF LEN SEED        write the pattern bytes to stdout
  client options: --dump-secrets FILE  after the handshake, write e_c, E_c, E_s,
                              K_le and K_el to FILE as `name hex` lines
                              (a forward-secrecy test's positive control)
";

/// A command's failure: a message and the exit status.
pub(crate) struct Failure {
    pub(crate) msg: String,
    pub(crate) code: u8,
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure {
            msg: format!("I/O error: {e}"),
            code: 2,
        }
    }
}

impl From<wire::RecvError> for Failure {
    fn from(e: wire::RecvError) -> Self {
        Failure {
            msg: e.to_string(),
            code: if matches!(e, wire::RecvError::Io(ref io) if !wire::is_closed(io)) {
                2
            } else {
                1
            },
        }
    }
}

impl From<HsError> for Failure {
    fn from(e: HsError) -> Self {
        Failure {
            msg: e.to_string(),
            code: if matches!(e, HsError::Io(ref io) if !wire::is_closed(io)) {
                2
            } else {
                1
            },
        }
    }
}

pub(crate) fn usage(msg: impl Into<String>) -> Failure {
    Failure {
        msg: msg.into(),
        code: 2,
    }
}

pub(crate) fn unexpected(msg: impl Into<String>) -> Failure {
    Failure {
        msg: msg.into(),
        code: 1,
    }
}

pub(crate) type Res<T = ()> = Result<T, Failure>;

/// Parses a size or offset with an optional K, M or G suffix.
pub(crate) fn parse_size(s: &str) -> Res<u64> {
    let (num, shift) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| usage(format!("bad size: {s}")))
}

pub(crate) fn parse_status(s: &str) -> Res<Status> {
    (0..=u32::from(u8::MAX))
        .map_while(Status::from_u32)
        .find(|st| {
            st.as_str().replace(' ', "-") == s.to_lowercase()
                || format!("{st:?}").eq_ignore_ascii_case(s)
        })
        .ok_or_else(|| usage(format!("unknown status: {s}")))
}

/// The 8 pattern bytes of word `word` (bytes `8 * word..`) for `seed`.
pub(crate) fn pattern_word(word: u64, seed: u64) -> [u8; 8] {
    // splitmix64
    let mut z = word
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(seed ^ 0xd1b5_4a32_d192_ed03);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).to_le_bytes()
}

/// Fills `buf` with the pattern of `seed` for the bytes at `off..`.
pub(crate) fn fill_pattern(buf: &mut [u8], off: u64, seed: u64) {
    let mut at = off;
    let mut rest = buf;
    while !rest.is_empty() {
        let word = pattern_word(at / 8, seed);
        let skip = (at % 8) as usize;
        let n = (8 - skip).min(rest.len());
        rest[..n].copy_from_slice(&word[skip..skip + n]);
        rest = &mut rest[n..];
        at += n as u64;
    }
}

pub(crate) fn fnv1a(hash: u64, data: &[u8]) -> u64 {
    data.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A connection to an export.
pub(crate) struct Conn {
    pub(crate) w: Wire,
    pub(crate) sec: SecConfig,
    /// This connection's ephemeral key pair (used only with a key): fresh
    /// for every connection, as the protocol requires.
    pub(crate) eph: Ephemeral,
    established: Option<Established>,
    pub(crate) next_id: u64,
}

impl Conn {
    pub(crate) fn connect(addr: &str, sec: &SecConfig) -> Res<Self> {
        let w = Wire::connect(addr, READ_TIMEOUT)
            .map_err(|e| usage(format!("cannot connect to {addr}: {e}")))?;
        Ok(Conn {
            w,
            sec: sec.clone(),
            eph: Ephemeral::generate(),
            established: None,
            next_id: 1,
        })
    }

    /// A well-behaved HELLO carrying this connection's key share.
    pub(crate) fn hello_body(&self, queue_depth: u16) -> HelloBody {
        wire::hello_for(&self.sec, queue_depth, self.eph.public())
    }

    /// Sends a HELLO (plain, as every HELLO is).
    pub(crate) fn send_hello(&mut self, body: &HelloBody) -> Res {
        let mut msg = Header::hello().encode().to_vec();
        msg.extend_from_slice(&body.encode());
        self.w.send_bytes(&msg)?;
        Ok(())
    }

    /// Runs the handshake with `hello`: the grant, or the refusal status.
    pub(crate) fn try_handshake(
        &mut self,
        hello: &HelloBody,
    ) -> Res<Result<HelloReplyBody, Status>> {
        match wire::client_handshake(&mut self.w, &self.sec, hello, &self.eph) {
            Ok(est) => {
                self.established = Some(est);
                Ok(Ok(est.grant))
            }
            Err(HsError::Refused(s)) => Ok(Err(s)),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs the handshake asking for `queue_depth` (0: the export's choice).
    pub(crate) fn handshake(&mut self, queue_depth: u16) -> Res<HelloReplyBody> {
        let hello = self.hello_body(queue_depth);
        match self.try_handshake(&hello)? {
            Ok(grant) => Ok(grant),
            Err(status) => Err(unexpected(format!(
                "handshake refused: {}",
                status.as_str()
            ))),
        }
    }

    pub(crate) fn grant(&self) -> HelloReplyBody {
        // Set by `handshake`, which every caller runs first.
        self.established.expect("handshake done").grant
    }

    /// Writes this connection's secrets to `path` as `name hex` lines:
    /// `e_c`, `E_c`, `E_s`, `K_le`, `K_el`. For a forward-secrecy test: with
    /// `e_c` a recorded connection decrypts, without it it must not.
    pub(crate) fn dump_secrets(&self, path: &str) -> Res {
        let est = self
            .established
            .ok_or_else(|| unexpected("no handshake to dump the secrets of"))?;
        if !self.sec.auth() {
            return Err(usage("--dump-secrets needs a key (--key-file)"));
        }
        let text = format!(
            "e_c {}\nE_c {}\nE_s {}\nK_le {}\nK_el {}\n",
            hex(&self.eph.secret()),
            hex(self.eph.public()),
            hex(&est.export_share),
            hex(&est.keys.le),
            hex(&est.keys.el)
        );
        std::fs::write(path, text)
            .map_err(|e| usage(format!("cannot write the secrets to {path}: {e}")))
    }

    /// Takes in a RESIZE: checked against the grant, it moves the size up
    /// (a smaller one is ignored, as the module's local node does).
    fn resized(&mut self, h: &Header) -> Res {
        let est = self
            .established
            .as_mut()
            .ok_or_else(|| unexpected("RESIZE before the handshake"))?;
        let size = validate_resize(h, &est.grant.limits())
            .map_err(|e| unexpected(format!("bad RESIZE: {}", e.as_str())))?;
        if size > est.grant.size {
            est.grant.size = size;
        }
        Ok(())
    }

    pub(crate) fn request(&mut self, op: Op, flags: u16, offset: u64, length: u32) -> Header {
        let h = Header::io(op, flags, self.next_id, offset, length);
        self.next_id += 1;
        h
    }

    /// Reads one IO_REPLY for one of `pending`; returns it, the request and
    /// the data of a successful READ. PONGs are skipped; a RESIZE is
    /// checked and, if it grows the device, taken as its new size.
    pub(crate) fn read_reply(
        &mut self,
        pending: &mut HashMap<u64, Header>,
    ) -> Res<(Header, Header, Vec<u8>)> {
        let m = loop {
            let m = self.w.recv()?;
            match m.h.kind {
                Kind::Pong => {}
                Kind::Resize => self.resized(&m.h)?,
                _ => break m,
            }
        };
        let h = m.h;
        if h.kind != Kind::IoReply {
            return Err(unexpected(format!("expected IO_REPLY, got {:?}", h.kind)));
        }
        let req = pending
            .remove(&h.id)
            .ok_or_else(|| unexpected(format!("reply with unknown id {}", h.id)))?;
        validate_reply(&h, &req).map_err(|e| unexpected(format!("bad reply: {}", e.as_str())))?;
        Ok((h, req, m.payload))
    }

    /// Splits `off..off+len` into requests of at most the granted size and
    /// runs them with up to [`WINDOW`] in flight. `payload` gives a WRITE's
    /// data; `done` sees every reply with its request and data.
    pub(crate) fn run_range(
        &mut self,
        op: Op,
        flags: u16,
        off: u64,
        len: u64,
        payload: impl Fn(u64, usize) -> Vec<u8>,
        mut done: impl FnMut(&Header, &Header, &[u8]) -> Res,
    ) -> Res {
        let chunk = u64::from(self.grant().max_io_bytes);
        let window = WINDOW.min(usize::from(self.grant().queue_depth));
        let end = off
            .checked_add(len)
            .ok_or_else(|| usage("range overflows"))?;
        let mut next = off;
        let mut pending = HashMap::new();
        while next < end || !pending.is_empty() {
            while next < end && pending.len() < window {
                let n = chunk.min(end - next);
                let h = self.request(op, flags, next, n as u32);
                let data = if op == Op::Write {
                    payload(next, n as usize)
                } else {
                    Vec::new()
                };
                self.w.send(&h, &data)?;
                pending.insert(h.id, h);
                next += n;
            }
            let (reply, req, data) = self.read_reply(&mut pending)?;
            done(&reply, &req, &data)?;
        }
        Ok(())
    }

    /// Sends one request (with `payload` if any) and returns its reply.
    pub(crate) fn one(&mut self, h: Header, payload: &[u8]) -> Res<(Header, Vec<u8>)> {
        self.w.send(&h, payload)?;
        let mut pending = HashMap::from([(h.id, h)]);
        let (reply, _, data) = self.read_reply(&mut pending)?;
        Ok((reply, data))
    }

    /// Writes the pattern of `seed` at `off..off+len`, expecting OK.
    pub(crate) fn write_pattern(&mut self, off: u64, len: u64, seed: u64) -> Res {
        self.run_range(
            Op::Write,
            0,
            off,
            len,
            |at, n| {
                let mut v = vec![0u8; n];
                fill_pattern(&mut v, at, seed);
                v
            },
            |reply, _, _| check_status(reply, Status::Ok),
        )
    }

    /// Reads `off..off+len` back and compares it with the pattern of `seed`.
    pub(crate) fn verify_pattern(&mut self, off: u64, len: u64, seed: u64) -> Res {
        self.run_range(
            Op::Read,
            0,
            off,
            len,
            |_, _| Vec::new(),
            |reply, req, d| {
                check_status(reply, Status::Ok)?;
                let mut want = vec![0u8; d.len()];
                fill_pattern(&mut want, req.offset, seed);
                match d.iter().zip(&want).position(|(a, b)| a != b) {
                    None => Ok(()),
                    Some(i) => Err(unexpected(format!(
                        "mismatch at byte {}: {:#04x}, expected {:#04x}",
                        req.offset + i as u64,
                        d[i],
                        want[i]
                    ))),
                }
            },
        )
    }

    /// Reads `off..off+len` into a buffer, expecting OK.
    pub(crate) fn read_all(&mut self, off: u64, len: u64) -> Res<Vec<u8>> {
        let mut data = vec![0u8; len as usize];
        self.run_range(
            Op::Read,
            0,
            off,
            len,
            |_, _| Vec::new(),
            |reply, req, d| {
                check_status(reply, Status::Ok)?;
                let at = (req.offset - off) as usize;
                if let Some(dst) = data.get_mut(at..at + d.len()) {
                    dst.copy_from_slice(d);
                }
                Ok(())
            },
        )?;
        Ok(data)
    }

    /// Waits up to `limit` for the export to close the connection; returns
    /// how long that took. Anything received meanwhile is dropped.
    pub(crate) fn wait_closed(&mut self, limit: Duration) -> Res<Duration> {
        match self.w.wait_closed(limit)? {
            Some((took, _)) => Ok(took),
            None => Err(unexpected(format!(
                "the export did not close the connection within {limit:?}"
            ))),
        }
    }
}

/// The options of a client command.
struct Options {
    /// Positional arguments.
    pos: Vec<String>,
    fua: bool,
    expect: Status,
    /// `--dump-secrets FILE`.
    dump: Option<String>,
}

/// Splits `args` into positional arguments and the options.
fn options(args: &[&str]) -> Res<Options> {
    let mut pos = Vec::new();
    let mut fua = false;
    let mut expect = Status::Ok;
    let mut dump = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--fua" => fua = true,
            "--dump-secrets" => {
                let f = it
                    .next()
                    .ok_or_else(|| usage("--dump-secrets needs a file"))?;
                dump = Some(f.to_string());
            }
            "--stop-file" | "--max-secs" | "--verify-only" => {
                it.next();
            }
            "--expect" => {
                let s = it.next().ok_or_else(|| usage("--expect needs a status"))?;
                expect = parse_status(s)?;
            }
            _ => pos.push((*a).to_string()),
        }
    }
    Ok(Options {
        pos,
        fua,
        expect,
        dump,
    })
}

/// Checks a reply status against the expected one.
pub(crate) fn check_status(reply: &Header, expect: Status) -> Res {
    if reply.status == expect {
        Ok(())
    } else {
        Err(unexpected(format!(
            "{} at {} (+{}): got {}, expected {}",
            reply.op.map_or("?", Op::as_str),
            reply.offset,
            reply.length,
            reply.status.as_str(),
            expect.as_str()
        )))
    }
}

/// `dstpeer client ADDR:PORT COMMAND ARGS`, with the peer's security
/// settings `sec`.
pub(crate) fn main(addr: &str, args: &[&str], sec: &SecConfig) -> Res {
    // `--dump-secrets FILE` may come before the command too.
    let mut args = args.to_vec();
    let mut early_dump = None;
    if let Some(i) = args.iter().position(|a| *a == "--dump-secrets") {
        if args
            .iter()
            .position(|a| !a.starts_with("--"))
            .is_some_and(|c| c > i)
        {
            let file = args
                .get(i + 1)
                .ok_or_else(|| usage("--dump-secrets needs a file"))?;
            early_dump = Some(file.to_string());
            args.drain(i..i + 2);
        }
    }
    let Some((&cmd, rest)) = args.split_first() else {
        return Err(usage("client: missing command"));
    };
    let Options {
        pos,
        fua,
        expect,
        dump,
    } = options(rest)?;
    let dump = dump.or(early_dump);
    let num = |i: usize| -> Res<u64> {
        parse_size(
            pos.get(i)
                .ok_or_else(|| usage(format!("{cmd}: missing argument")))?,
        )
    };
    let mut c = Conn::connect(addr, sec)?;
    match cmd {
        "no-hello" => {
            let took = c.wait_closed(Duration::from_secs(25))?;
            println!("closed by the export after {:.1} s", took.as_secs_f64());
            return Ok(());
        }
        "bad-hello" => {
            let mut hello = c.hello_body(0);
            hello.min_version = 0;
            match c.try_handshake(&hello)? {
                Err(Status::Invalid) => {}
                Err(s) => return Err(unexpected(format!("got {}, expected INVALID", s.as_str()))),
                Ok(_) => return Err(unexpected("a bad HELLO was granted")),
            }
            c.wait_closed(Duration::from_secs(5))?;
            println!("refused with INVALID and closed");
            return Ok(());
        }
        _ => {}
    }
    let depth = match cmd {
        "bad-depth" => 1,
        // The most a HELLO may ask for; the export grants what it allows.
        "stall" => 1024,
        _ => 0,
    };
    let grant = c.handshake(depth)?;
    if let Some(path) = &dump {
        c.dump_secrets(path)?;
    }
    match cmd {
        "hello" => {
            println!(
                "version {} perms {:#x} features {:#x} size {} logical_block {} physical_block {} max_io {} queues {} queue_depth {} export {}",
                grant.version,
                grant.perms,
                grant.features,
                grant.size,
                grant.logical_block_size,
                grant.physical_block_size,
                grant.max_io_bytes,
                grant.queues,
                grant.queue_depth,
                String::from_utf8_lossy(grant.export.as_bytes())
            );
        }
        "write" => {
            let (off, len, seed) = (num(0)?, num(1)?, num(2)?);
            let flags = if fua { FLAG_FUA } else { 0 };
            let start = Instant::now();
            c.run_range(
                Op::Write,
                flags,
                off,
                len,
                |at, n| {
                    let mut v = vec![0u8; n];
                    fill_pattern(&mut v, at, seed);
                    v
                },
                |reply, _, _| check_status(reply, expect),
            )?;
            report("wrote", len, start);
        }
        "read" => {
            let (off, len) = (num(0)?, num(1)?);
            let mut data = vec![
                0u8;
                if expect == Status::Ok {
                    len as usize
                } else {
                    0
                }
            ];
            let start = Instant::now();
            c.run_range(
                Op::Read,
                0,
                off,
                len,
                |_, _| Vec::new(),
                |reply, req, d| {
                    check_status(reply, expect)?;
                    let at = (req.offset - off) as usize;
                    if let Some(dst) = data.get_mut(at..at + d.len()) {
                        dst.copy_from_slice(d);
                    }
                    Ok(())
                },
            )?;
            report("read", len, start);
            if expect == Status::Ok {
                println!("fnv1a {:016x}", fnv1a(0xcbf2_9ce4_8422_2325, &data));
            }
        }
        "verify" => {
            let (off, len, seed) = (num(0)?, num(1)?, num(2)?);
            let start = Instant::now();
            c.verify_pattern(off, len, seed)?;
            report("verified", len, start);
        }
        "soak" => {
            let (off, len) = (num(0)?, num(1)?);
            let stop = stop_file(rest)?;
            let max = max_secs(rest)?;
            let verify_only = match rest.iter().position(|a| *a == "--verify-only") {
                None => None,
                Some(i) => Some(parse_size(
                    rest.get(i + 1)
                        .ok_or_else(|| usage("--verify-only needs a seed"))?,
                )?),
            };
            let start = Instant::now();
            let mut rounds = 0u64;
            while !std::path::Path::new(&stop).exists() {
                if start.elapsed() > max {
                    return Err(unexpected(format!(
                        "soak: {stop} did not appear within {max:?}"
                    )));
                }
                let r = match verify_only {
                    Some(seed) => c.verify_pattern(off, len, seed),
                    None => {
                        let seed = 0x50a6_0000 + rounds;
                        c.write_pattern(off, len, seed)
                            .and_then(|()| c.verify_pattern(off, len, seed))
                    }
                };
                r.map_err(|f| unexpected(format!("soak round {rounds}: {}", f.msg)))?;
                rounds += 1;
            }
            println!(
                "soak: {rounds} rounds of {} in {:.1} s, all good",
                if verify_only.is_some() {
                    "verify"
                } else {
                    "write and verify"
                },
                start.elapsed().as_secs_f64()
            );
        }
        "flush" | "discard" | "zeroes" => {
            let (op, off, len) = match cmd {
                "flush" => (Op::Flush, 0, 0),
                "discard" => (Op::Discard, num(0)?, num(1)?),
                _ => (Op::WriteZeroes, num(0)?, num(1)?),
            };
            let len = u32::try_from(len).map_err(|_| usage("length must fit 32 bits"))?;
            let h = c.request(op, if fua { FLAG_FUA } else { 0 }, off, len);
            let (reply, _) = c.one(h, &[])?;
            check_status(&reply, expect)?;
            println!("{}: {}", op.as_str(), reply.status.as_str());
        }
        "ping" => {
            c.w.send(&Header::ping(0x1234_5678), &[])?;
            let m = c.w.recv()?;
            if m.h.kind != Kind::Pong || m.h.id != 0x1234_5678 {
                return Err(unexpected(format!(
                    "expected PONG, got {:?} id {}",
                    m.h.kind, m.h.id
                )));
            }
            println!("pong");
        }
        "stall" => {
            let secs = num(0)?;
            let len = grant.max_io_bytes;
            let blocks = grant.size / u64::from(len);
            // Sending blocks once the export stops reading (its queue depth
            // or memory budget is reached and our receive window is full).
            c.w.set_write_timeout(Duration::from_secs(2))?;
            let mut sent = 0u64;
            while sent < u64::from(grant.queue_depth) {
                let off = (sent % blocks.max(1)) * u64::from(len);
                let h = c.request(Op::Read, 0, off, len);
                if c.w.send(&h, &[]).is_err() {
                    break;
                }
                sent += 1;
            }
            println!(
                "sent {sent} READs of {} KiB; not reading for {secs} s",
                len / 1024
            );
            std::thread::sleep(Duration::from_secs(secs));
        }
        "hold" => {
            let secs = num(0)?;
            let took = c.wait_closed(Duration::from_secs(secs));
            match took {
                Ok(t) => println!("closed by the export after {:.1} s", t.as_secs_f64()),
                Err(_) => println!("still connected after {secs} s"),
            }
        }
        "bad-magic" => {
            let mut b = c.request(Op::Read, 0, 0, 4096).encode();
            b[..4].copy_from_slice(&(MAGIC ^ 0xffff_ffff).to_be_bytes());
            let msg = c.w.frame_raw(&b, &[])?;
            c.w.send_bytes(&msg)?;
            let took = c.wait_closed(Duration::from_secs(5))?;
            println!("closed by the export after {:.1} s", took.as_secs_f64());
        }
        "bad-kind" => {
            let hello = c.hello_body(0);
            c.send_hello(&hello)?;
            c.wait_closed(Duration::from_secs(5))?;
            println!("closed by the export");
        }
        "bad-payload" => {
            // A WRITE of 4096 bytes that carries 512: validation fails, the
            // 512 bytes are skipped, the answer is INVALID.
            let mut h = c.request(Op::Write, 0, 0, 4096);
            h.payload = 512;
            let (reply, _) = c.one(h, &[0u8; 512])?;
            check_status(&reply, Status::Invalid)?;
            let h = c.request(Op::Read, 0, 0, 4096);
            let (reply, _) = c.one(h, &[])?;
            check_status(&reply, Status::Ok)?;
            println!("refused with INVALID; the session goes on");
        }
        "bad-depth" => {
            let len = u32::try_from(grant.size).unwrap_or(u32::MAX) / grant.logical_block_size
                * grant.logical_block_size;
            let a = c.request(Op::WriteZeroes, 0, 0, len);
            let b = c.request(Op::Read, 0, 0, 4096);
            let mut msg = c.w.frame(&a, &[])?;
            msg.extend(c.w.frame(&b, &[])?);
            c.w.send_bytes(&msg)?;
            c.wait_closed(Duration::from_secs(20))?;
            println!("closed by the export");
        }
        _ => return Err(usage(format!("client: unknown command {cmd}"))),
    }
    c.w.sock.shutdown(Shutdown::Both).ok();
    Ok(())
}

/// The value of `--stop-file` in `args`.
fn stop_file(args: &[&str]) -> Res<String> {
    args.iter()
        .position(|a| *a == "--stop-file")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.to_string())
        .ok_or_else(|| usage("soak needs --stop-file PATH"))
}

/// The value of `--max-secs` in `args` (default 1800).
fn max_secs(args: &[&str]) -> Res<Duration> {
    match args.iter().position(|a| *a == "--max-secs") {
        None => Ok(Duration::from_secs(1800)),
        Some(i) => Ok(Duration::from_secs(parse_size(
            args.get(i + 1)
                .ok_or_else(|| usage("--max-secs needs a number"))?,
        )?)),
    }
}

fn report(what: &str, len: u64, start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{what} {len} bytes in {secs:.2} s ({:.1} MB/s)",
        len as f64 / secs.max(1e-9) / 1e6
    );
}

/// `dstpeer pattern OFF LEN SEED`: the pattern bytes on stdout.
pub(crate) fn pattern(args: &[&str]) -> Res {
    let [off, len, seed] = args else {
        return Err(usage("pattern OFF LEN SEED"));
    };
    let (off, len, seed) = (parse_size(off)?, parse_size(len)?, parse_size(seed)?);
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut at = off;
    let mut buf = vec![0u8; 1 << 20];
    while at < off + len {
        let n = (off + len - at).min(buf.len() as u64) as usize;
        fill_pattern(&mut buf[..n], at, seed);
        out.write_all(&buf[..n])?;
        at += n as u64;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").ok(), Some(4096));
        assert_eq!(parse_size("64M").ok(), Some(64 << 20));
        assert_eq!(parse_size("1k").ok(), Some(1024));
        assert!(parse_size("x").is_err());
    }

    #[test]
    fn statuses() {
        assert_eq!(parse_status("range").ok(), Some(Status::Range));
        assert_eq!(parse_status("PERMISSION").ok(), Some(Status::Permission));
        assert_eq!(
            parse_status("not-supported").ok(),
            Some(Status::NotSupported)
        );
        assert_eq!(parse_status("io-error").ok(), Some(Status::IoError));
    }

    #[test]
    fn pattern_is_positional() {
        let mut whole = vec![0u8; 64];
        fill_pattern(&mut whole, 512, 7);
        let mut part = vec![0u8; 20];
        fill_pattern(&mut part, 512 + 13, 7);
        assert_eq!(&whole[13..33], &part[..]);
        let mut other = vec![0u8; 64];
        fill_pattern(&mut other, 512, 8);
        assert_ne!(whole, other);
    }
}
