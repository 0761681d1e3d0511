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
//! export's reaction; they are the seed of a hostile-peer suite.
//!
//! Exit status: 0 as expected, 1 not as expected, 2 usage or connection
//! error.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::proto::{
    validate_reply, Header, HelloBody, HelloReplyBody, Kind, Op, Status, FEATURES_ALL, FLAG_FUA,
    HEADER_LEN, HELLO_REPLY_LEN, MAGIC, VERSION,
};

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
    hold SECS                 stay connected and idle; report if the export closes
    bad-magic                 garbage header: expect the export to close
    bad-kind                  HELLO after the handshake: expect a close
    bad-hello                 HELLO with min_version 0: expect INVALID, then a close
    bad-payload               WRITE whose payload differs from its length:
                              expect INVALID, and the session to go on
    bad-depth                 queue depth 1, two requests at once: expect a close
                              (destroys data: zeroes the whole export)
    no-hello                  send nothing: expect a close within the handshake timeout
  pattern OFF LEN SEED        write the pattern bytes to stdout
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

fn usage(msg: impl Into<String>) -> Failure {
    Failure {
        msg: msg.into(),
        code: 2,
    }
}

fn unexpected(msg: impl Into<String>) -> Failure {
    Failure {
        msg: msg.into(),
        code: 1,
    }
}

type Res<T = ()> = Result<T, Failure>;

/// Parses a size or offset with an optional K, M or G suffix.
fn parse_size(s: &str) -> Res<u64> {
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

fn parse_status(s: &str) -> Res<Status> {
    (0..=8)
        .filter_map(Status::from_u32)
        .find(|st| {
            st.as_str().replace(' ', "-") == s.to_lowercase()
                || format!("{st:?}").eq_ignore_ascii_case(s)
        })
        .ok_or_else(|| usage(format!("unknown status: {s}")))
}

/// The 8 pattern bytes of word `word` (bytes `8 * word..`) for `seed`.
fn pattern_word(word: u64, seed: u64) -> [u8; 8] {
    // splitmix64
    let mut z = word
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(seed ^ 0xd1b5_4a32_d192_ed03);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).to_le_bytes()
}

/// Fills `buf` with the pattern of `seed` for the bytes at `off..`.
fn fill_pattern(buf: &mut [u8], off: u64, seed: u64) {
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

fn fnv1a(hash: u64, data: &[u8]) -> u64 {
    data.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Whether an I/O error means the peer closed the connection.
fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// A connection to an export.
struct Conn {
    sock: TcpStream,
    grant: Option<HelloReplyBody>,
    next_id: u64,
}

impl Conn {
    fn connect(addr: &str) -> Res<Self> {
        let sock = TcpStream::connect(addr)
            .map_err(|e| usage(format!("cannot connect to {addr}: {e}")))?;
        sock.set_nodelay(true)?;
        sock.set_read_timeout(Some(READ_TIMEOUT))?;
        Ok(Conn {
            sock,
            grant: None,
            next_id: 1,
        })
    }

    fn hello_body(queue_depth: u16) -> HelloBody {
        HelloBody {
            min_version: 1,
            max_version: VERSION,
            features: FEATURES_ALL,
            max_io_bytes: 1 << 20,
            queues: 1,
            queue_depth,
            client_id: 0,
        }
    }

    fn send_hello(&mut self, body: &HelloBody) -> Res {
        let mut msg = Header::hello().encode().to_vec();
        msg.extend_from_slice(&body.encode());
        self.sock.write_all(&msg)?;
        Ok(())
    }

    fn read_header(&mut self) -> io::Result<Header> {
        let mut b = [0u8; HEADER_LEN];
        self.sock.read_exact(&mut b)?;
        Header::decode(&b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.as_str()))
    }

    /// Reads the HELLO_REPLY: the grant, or the refusal status.
    fn read_hello_reply(&mut self, hello: &HelloBody) -> Res<Result<HelloReplyBody, Status>> {
        let h = self.read_header()?;
        if h.kind != Kind::HelloReply {
            return Err(unexpected(format!(
                "expected HELLO_REPLY, got {:?}",
                h.kind
            )));
        }
        if h.status != Status::Ok {
            return Ok(Err(h.status));
        }
        let mut b = [0u8; HELLO_REPLY_LEN];
        self.sock.read_exact(&mut b)?;
        let grant = HelloReplyBody::decode(&b)
            .and_then(|g| g.validate(hello).map(|()| g))
            .map_err(|e| unexpected(format!("bad HELLO_REPLY: {}", e.as_str())))?;
        Ok(Ok(grant))
    }

    /// Runs the handshake asking for `queue_depth` (0: the export's choice).
    fn handshake(&mut self, queue_depth: u16) -> Res<HelloReplyBody> {
        let hello = Self::hello_body(queue_depth);
        self.send_hello(&hello)?;
        match self.read_hello_reply(&hello)? {
            Ok(grant) => {
                self.grant = Some(grant);
                Ok(grant)
            }
            Err(status) => Err(unexpected(format!(
                "handshake refused: {}",
                status.as_str()
            ))),
        }
    }

    fn grant(&self) -> HelloReplyBody {
        // Set by `handshake`, which every caller runs first.
        self.grant.expect("handshake done")
    }

    fn request(&mut self, op: Op, flags: u16, offset: u64, length: u32) -> Header {
        let h = Header::io(op, flags, self.next_id, offset, length);
        self.next_id += 1;
        h
    }

    /// Reads one IO_REPLY for one of `pending`; returns it, the request and
    /// the data of a successful READ.
    fn read_reply(&mut self, pending: &mut HashMap<u64, Header>) -> Res<(Header, Header, Vec<u8>)> {
        let h = self.read_header()?;
        if h.kind != Kind::IoReply {
            return Err(unexpected(format!("expected IO_REPLY, got {:?}", h.kind)));
        }
        let req = pending
            .remove(&h.id)
            .ok_or_else(|| unexpected(format!("reply with unknown id {}", h.id)))?;
        validate_reply(&h, &req).map_err(|e| unexpected(format!("bad reply: {}", e.as_str())))?;
        let mut data = vec![0u8; h.payload as usize];
        self.sock.read_exact(&mut data)?;
        Ok((h, req, data))
    }

    /// Splits `off..off+len` into requests of at most the granted size and
    /// runs them with up to [`WINDOW`] in flight. `payload` gives a WRITE's
    /// data; `done` sees every reply with its request and data.
    fn run_range(
        &mut self,
        op: Op,
        flags: u16,
        off: u64,
        len: u64,
        payload: impl Fn(u64, usize) -> Vec<u8>,
        mut done: impl FnMut(&Header, &Header, &[u8]) -> Res,
    ) -> Res {
        let chunk = u64::from(self.grant().max_io_bytes);
        let end = off
            .checked_add(len)
            .ok_or_else(|| usage("range overflows"))?;
        let mut next = off;
        let mut pending = HashMap::new();
        while next < end || !pending.is_empty() {
            while next < end && pending.len() < WINDOW {
                let n = chunk.min(end - next);
                let h = self.request(op, flags, next, n as u32);
                let mut msg = h.encode().to_vec();
                if op == Op::Write {
                    msg.extend_from_slice(&payload(next, n as usize));
                }
                self.sock.write_all(&msg)?;
                pending.insert(h.id, h);
                next += n;
            }
            let (reply, req, data) = self.read_reply(&mut pending)?;
            done(&reply, &req, &data)?;
        }
        Ok(())
    }

    /// Sends one request (with `payload` if any) and returns its reply.
    fn one(&mut self, h: Header, payload: &[u8]) -> Res<(Header, Vec<u8>)> {
        let mut msg = h.encode().to_vec();
        msg.extend_from_slice(payload);
        self.sock.write_all(&msg)?;
        let mut pending = HashMap::from([(h.id, h)]);
        let (reply, _, data) = self.read_reply(&mut pending)?;
        Ok((reply, data))
    }

    /// Waits up to `limit` for the export to close the connection; returns
    /// how long that took. Anything received meanwhile is dropped.
    fn wait_closed(&mut self, limit: Duration) -> Res<Duration> {
        let start = Instant::now();
        self.sock.set_read_timeout(Some(limit))?;
        let mut buf = [0u8; 4096];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => return Ok(start.elapsed()),
                Ok(_) => {}
                Err(e) if is_closed(&e) => return Ok(start.elapsed()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(unexpected(format!(
                        "the export did not close the connection within {limit:?}"
                    )))
                }
                Err(e) => return Err(e.into()),
            }
            if start.elapsed() > limit {
                return Err(unexpected(format!(
                    "the export did not close the connection within {limit:?}"
                )));
            }
        }
    }
}

/// Splits `args` into positional arguments and the `--fua` / `--expect`
/// options.
fn options(args: &[&str]) -> Res<(Vec<String>, bool, Status)> {
    let mut pos = Vec::new();
    let mut fua = false;
    let mut expect = Status::Ok;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--fua" => fua = true,
            "--expect" => {
                let s = it.next().ok_or_else(|| usage("--expect needs a status"))?;
                expect = parse_status(s)?;
            }
            _ => pos.push((*a).to_string()),
        }
    }
    Ok((pos, fua, expect))
}

/// Checks a reply status against the expected one.
fn check_status(reply: &Header, expect: Status) -> Res {
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

/// `dstpeer client ADDR:PORT COMMAND ARGS`.
pub(crate) fn main(addr: &str, args: &[&str]) -> Res {
    let Some((&cmd, rest)) = args.split_first() else {
        return Err(usage("client: missing command"));
    };
    let (pos, fua, expect) = options(rest)?;
    let num = |i: usize| -> Res<u64> {
        parse_size(
            pos.get(i)
                .ok_or_else(|| usage(format!("{cmd}: missing argument")))?,
        )
    };
    let mut c = Conn::connect(addr)?;
    match cmd {
        "no-hello" => {
            let took = c.wait_closed(Duration::from_secs(25))?;
            println!("closed by the export after {:.1} s", took.as_secs_f64());
            return Ok(());
        }
        "bad-hello" => {
            let mut hello = Conn::hello_body(0);
            hello.min_version = 0;
            c.send_hello(&hello)?;
            match c.read_hello_reply(&hello)? {
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
    let depth = if cmd == "bad-depth" { 1 } else { 0 };
    let grant = c.handshake(depth)?;
    match cmd {
        "hello" => {
            println!(
                "version {} perms {:#x} features {:#x} size {} logical_block {} physical_block {} max_io {} queues {} queue_depth {}",
                grant.version,
                grant.perms,
                grant.features,
                grant.size,
                grant.logical_block_size,
                grant.physical_block_size,
                grant.max_io_bytes,
                grant.queues,
                grant.queue_depth
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
            c.run_range(
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
            )?;
            report("verified", len, start);
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
            c.sock.write_all(&Header::ping(0x1234_5678).encode())?;
            let h = c.read_header()?;
            if h.kind != Kind::Pong || h.id != 0x1234_5678 {
                return Err(unexpected(format!(
                    "expected PONG, got {:?} id {}",
                    h.kind, h.id
                )));
            }
            println!("pong");
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
            c.sock.write_all(&b)?;
            let took = c.wait_closed(Duration::from_secs(5))?;
            println!("closed by the export after {:.1} s", took.as_secs_f64());
        }
        "bad-kind" => {
            let hello = Conn::hello_body(0);
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
            let mut msg = c.request(Op::WriteZeroes, 0, 0, len).encode().to_vec();
            msg.extend_from_slice(&c.request(Op::Read, 0, 0, 4096).encode());
            c.sock.write_all(&msg)?;
            c.wait_closed(Duration::from_secs(20))?;
            println!("closed by the export");
        }
        _ => return Err(usage(format!("client: unknown command {cmd}"))),
    }
    c.sock.shutdown(Shutdown::Both).ok();
    Ok(())
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
