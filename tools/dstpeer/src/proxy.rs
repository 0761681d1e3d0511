// SPDX-License-Identifier: GPL-2.0

//! `dstpeer proxy --listen ADDR:PORT [--to ADDR:PORT] [--to-file PATH]
//! [--record FILE] [--drop-frame N | --swap-frames N] [--trailer LEN]`: a
//! TCP forwarder for tests (one of `--to` and `--to-file` is needed).
//!
//! Every accepted connection is forwarded to the target, byte for byte, in
//! both directions, by two threads; a half-close is passed on as one. With
//! `--to-file` the target is read from that file (one `ADDR:PORT`, blanks
//! around it ignored) for every new connection, so a test can send later
//! connections elsewhere; and once the file's content changes, the
//! connections open at that moment are closed, so that their client
//! reconnects (to the new target).
//!
//! With `--record FILE` the first connection's traffic is appended to FILE
//! as records, in the order the proxy received it:
//!
//! ```text
//! direction (1 byte: 'C' from the client, 'S' from the target)
//! length    (4 bytes, big-endian)
//! bytes     (length bytes)
//! ```
//!
//! Concatenating the bytes of one direction's records gives that
//! direction's stream (`dstpeer decrypt-capture` reads it), as received,
//! before any tampering.
//!
//! With `--drop-frame N` or `--swap-frames N` (and `--trailer LEN`, the
//! trailer length of a protected message in the connection's mode: 4 in
//! crc32c, 40 in hmac(sha256), 24 in aead) the first connection's stream
//! from the target is tampered with, to test that the local node detects a
//! lost or reordered protected message. That stream is then cut into
//! messages (a [`HEADER_LEN`]-byte header, its payload, and for kinds other
//! than the handshake's HELLO, HELLO_REPLY, CHALLENGE and AUTH a trailer of
//! LEN bytes); the protected messages (all but the handshake's) are counted
//! from 1, and:
//!
//! - `--drop-frame N`: protected message N is not forwarded;
//! - `--swap-frames N`: protected message N is held back and forwarded
//!   right after message N + 1.
//!
//! Everything else is forwarded unchanged, as it arrives (a message's
//! header once complete). A header that does not start with [`MAGIC`]
//! stops the cutting: the rest is forwarded raw. At the end of the stream a
//! message still held back is forwarded. Other connections, and the
//! direction from the client, are never tampered with. It runs until
//! killed.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::client::{unexpected, usage, Res};
use crate::proto::{Kind, HEADER_LEN, MAGIC};

pub(crate) const USAGE: &str =
    "  proxy --listen ADDR:PORT [--to ADDR:PORT] [--to-file PATH] [--record FILE]
        [--drop-frame N | --swap-frames N] [--trailer LEN]
                              forward every connection to the target; --to-file:
                              read the target from PATH for each new connection
                              (--to if PATH is empty or unreadable), and close
                              the open ones when PATH's content changes;
                              --record: append the first connection's traffic to
                              FILE as records ('C' or 'S', 4-byte big-endian
                              length, bytes), as received; --drop-frame: drop
                              the first connection's N-th protected message
                              (1-based, not counting the handshake's) from the
                              target; --swap-frames: forward its protected
                              messages N and N+1 from the target in swapped
                              order; --trailer: the trailer length of a
                              protected message (crc32c 4, hmac 40, aead 24),
                              needed with either; runs until killed
";

/// How often the target file is looked at.
const WATCH_PERIOD: Duration = Duration::from_millis(100);

/// How long connecting to the target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The proxy's state, shared by its threads.
struct Proxy {
    /// `--to`: the target while `--to-file` names none.
    to: Option<String>,
    to_file: Option<String>,
    /// The record file, until the first connection took it.
    record: Mutex<Option<File>>,
    /// The tampering, until the first connection took it.
    tamper: Mutex<Option<Framer>>,
    /// Connections accepted so far.
    conns: AtomicU64,
    /// The open connections: number, client side, target side.
    live: Mutex<Vec<(u64, TcpStream, TcpStream)>>,
}

/// `dstpeer proxy ...`.
pub(crate) fn main(args: &[&str]) -> Res {
    let (mut listen, mut to, mut to_file, mut record) = (None, None, None, None);
    let (mut drop_frame, mut swap_frames, mut trailer) = (None, None, None);
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        let slot = match a {
            "--listen" => &mut listen,
            "--to" => &mut to,
            "--to-file" => &mut to_file,
            "--record" => &mut record,
            "--drop-frame" => &mut drop_frame,
            "--swap-frames" => &mut swap_frames,
            "--trailer" => &mut trailer,
            _ => return Err(usage(format!("proxy: unknown argument {a}"))),
        };
        let v = it
            .next()
            .ok_or_else(|| usage(format!("{a} needs a value")))?;
        *slot = Some(v.to_string());
    }
    let listen = listen.ok_or_else(|| usage("proxy needs --listen ADDR:PORT"))?;
    if to.is_none() && to_file.is_none() {
        return Err(usage("proxy needs --to ADDR:PORT or --to-file PATH"));
    }
    let tamper = tamper_options(
        drop_frame.as_deref(),
        swap_frames.as_deref(),
        trailer.as_deref(),
    )?;
    let record = match &record {
        Some(path) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| usage(format!("cannot open {path}: {e}")))?,
        ),
        None => None,
    };
    let listener =
        TcpListener::bind(&listen).map_err(|e| usage(format!("cannot listen on {listen}: {e}")))?;
    println!(
        "proxy: listening on {}, to {}{}{}",
        listener.local_addr()?,
        to.as_deref().unwrap_or("(none)"),
        to_file
            .as_deref()
            .map_or(String::new(), |f| format!(" (or what {f} says)")),
        tamper.map_or(String::new(), |(t, len)| format!(
            "; first connection from the target: {}, trailer {len}",
            t.describe()
        ))
    );
    io::stdout().flush()?;
    let proxy = Arc::new(Proxy {
        to,
        to_file,
        record: Mutex::new(record),
        tamper: Mutex::new(tamper.map(|(t, len)| Framer::new(t, len))),
        conns: AtomicU64::new(0),
        live: Mutex::new(Vec::new()),
    });
    if let Some(path) = proxy.to_file.clone() {
        let p = proxy.clone();
        thread::spawn(move || p.watch(&path));
    }
    for sock in listener.incoming() {
        match sock {
            Ok(s) => {
                let n = proxy.conns.fetch_add(1, SeqCst) + 1;
                let p = proxy.clone();
                thread::spawn(move || p.forward(n, s));
            }
            Err(e) => log(format!("accept failed: {e}")),
        }
    }
    Err(unexpected("the listener stopped"))
}

/// The tampering that `--drop-frame`, `--swap-frames` and `--trailer`
/// ask for, with the trailer length.
fn tamper_options(
    drop_frame: Option<&str>,
    swap_frames: Option<&str>,
    trailer: Option<&str>,
) -> Res<Option<(Tamper, usize)>> {
    let frame = |what: &str, v: &str| match v.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(usage(format!(
            "{what} {v}: a protected message number, from 1"
        ))),
    };
    let tamper = match (drop_frame, swap_frames) {
        (Some(_), Some(_)) => {
            return Err(usage("--drop-frame and --swap-frames exclude each other"))
        }
        (Some(v), None) => Tamper::Drop(frame("--drop-frame", v)?),
        (None, Some(v)) => Tamper::Swap(frame("--swap-frames", v)?),
        (None, None) if trailer.is_some() => {
            return Err(usage("--trailer goes with --drop-frame or --swap-frames"))
        }
        (None, None) => return Ok(None),
    };
    let trailer = trailer.ok_or_else(|| {
        usage("--drop-frame and --swap-frames need --trailer LEN (crc32c 4, hmac 40, aead 24)")
    })?;
    let len = trailer
        .parse::<usize>()
        .map_err(|_| usage(format!("--trailer {trailer}: a length in bytes")))?;
    Ok(Some((tamper, len)))
}

/// Prints a log line and flushes it.
fn log(msg: String) {
    println!("proxy: {msg}");
    let _ = io::stdout().flush();
}

/// Locks `m`, whether or not a thread panicked holding it (the data is
/// still consistent: every critical section here is a push, a retain or a
/// whole write).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Proxy {
    /// The target for a new connection: what `--to-file` says, else `--to`.
    fn target(&self) -> Option<String> {
        self.to_file
            .as_deref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| self.to.clone())
    }

    /// Closes every open connection once the content of `path` changes.
    fn watch(&self, path: &str) {
        let mut last = std::fs::read(path).ok();
        loop {
            thread::sleep(WATCH_PERIOD);
            let now = std::fs::read(path).ok();
            if now == last {
                continue;
            }
            last = now;
            let live = lock(&self.live);
            log(format!(
                "{path} changed (target now {}): closing {} connections",
                self.target().as_deref().unwrap_or("(none)"),
                live.len()
            ));
            for (_, a, b) in live.iter() {
                let _ = a.shutdown(Shutdown::Both);
                let _ = b.shutdown(Shutdown::Both);
            }
        }
    }

    /// Forwards connection `n` until both directions are done.
    fn forward(&self, n: u64, client: TcpStream) {
        let Some(target) = self.target() else {
            log(format!(
                "conn {n}: no target (--to-file is empty or unreadable)"
            ));
            return;
        };
        let server = match connect(&target) {
            Ok(s) => s,
            Err(e) => {
                log(format!("conn {n}: cannot connect to {target}: {e}"));
                return;
            }
        };
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let record = lock(&self.record).take().map(|f| Arc::new(Mutex::new(f)));
        let framer = lock(&self.tamper).take();
        log(format!(
            "conn {n}: {} -> {target}{}{}",
            client
                .peer_addr()
                .map_or("(unknown)".to_string(), |a| a.to_string()),
            if record.is_some() { ", recorded" } else { "" },
            framer.as_ref().map_or(String::new(), |f| format!(
                ", from the target: {}",
                f.tamper.describe()
            ))
        ));
        // Clones for the pump of the other direction, and for the watcher
        // to close the connection with.
        let (c2, s2, c3, s3) = match clone_pair(&client, &server)
            .and_then(|(c2, s2)| clone_pair(&client, &server).map(|(c3, s3)| (c2, s2, c3, s3)))
        {
            Ok(c) => c,
            Err(e) => {
                log(format!("conn {n}: {e}"));
                return;
            }
        };
        lock(&self.live).push((n, c3, s3));
        let rec = record.clone();
        let up = thread::spawn(move || pump(client, server, b'C', rec.as_deref(), None));
        let down = pump(s2, c2, b'S', record.as_deref(), framer);
        let up = up.join().unwrap_or(0);
        lock(&self.live).retain(|l| l.0 != n);
        log(format!(
            "conn {n}: closed after {up} bytes from the client, {down} from the target"
        ));
    }
}

/// Second handles of both sockets of a connection.
fn clone_pair(a: &TcpStream, b: &TcpStream) -> io::Result<(TcpStream, TcpStream)> {
    Ok((a.try_clone()?, b.try_clone()?))
}

/// Connects to `addr` within [`CONNECT_TIMEOUT`].
fn connect(addr: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Copies `from` to `to` until `from` ends, recording each chunk as
/// direction `dir` (as received), tampering with the stream through
/// `framer` if given; passes an orderly end on as a half-close, and an
/// error as a reset of both. Returns the bytes received.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    dir: u8,
    record: Option<&Mutex<File>>,
    mut framer: Option<Framer>,
) -> u64 {
    let mut buf = vec![0u8; 64 << 10];
    let mut out = Vec::new();
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => {
                if let Some(f) = framer.as_mut() {
                    out.clear();
                    f.finish(&mut out);
                    f.flush_log();
                    let _ = to.write_all(&out);
                }
                let _ = to.shutdown(Shutdown::Write);
                return total;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = &buf[..n];
        if let Some(f) = record {
            let mut rec = Vec::with_capacity(5 + n);
            rec.push(dir);
            rec.extend_from_slice(&(n as u32).to_be_bytes());
            rec.extend_from_slice(chunk);
            if let Err(e) = lock(f).write_all(&rec) {
                log(format!("recording failed: {e}"));
            }
        }
        total += n as u64;
        let sent = match framer.as_mut() {
            Some(f) => {
                out.clear();
                f.feed(chunk, &mut out);
                f.flush_log();
                to.write_all(&out)
            }
            None => to.write_all(chunk),
        };
        if sent.is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    total
}

/// What to do to one direction's stream of messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tamper {
    /// Drop protected message N (1-based).
    Drop(u64),
    /// Forward protected message N after protected message N + 1.
    Swap(u64),
}

impl Tamper {
    /// For the log.
    fn describe(&self) -> String {
        match self {
            Self::Drop(n) => format!("dropping protected message {n}"),
            Self::Swap(n) => format!("swapping protected messages {n} and {}", n + 1),
        }
    }
}

/// What becomes of the body (payload and trailer) of the message being cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Forward,
    Drop,
    /// Held back (message N of a swap).
    Hold,
    /// Forwarded, then the held message after it (message N + 1 of a swap).
    ForwardThenHeld,
}

/// Cuts a stream into messages, and tampers with one of them.
struct Framer {
    tamper: Tamper,
    /// Trailer length of a protected message.
    trailer: usize,
    /// Protected messages seen so far (the current one included).
    protected: u64,
    /// The header being read (complete ones are handed on at once).
    hdr: Vec<u8>,
    /// Bytes left of the current message's body; 0 between messages.
    left: u64,
    fate: Fate,
    /// The message held back by a swap.
    held: Vec<u8>,
    /// Out of sync: everything is forwarded raw.
    raw: bool,
    /// Log lines not printed yet.
    log: Vec<String>,
}

impl Framer {
    fn new(tamper: Tamper, trailer: usize) -> Self {
        Self {
            tamper,
            trailer,
            protected: 0,
            hdr: Vec::with_capacity(HEADER_LEN),
            left: 0,
            fate: Fate::Forward,
            held: Vec::new(),
            raw: false,
            log: Vec::new(),
        }
    }

    /// Prints the log lines gathered.
    fn flush_log(&mut self) {
        for l in self.log.drain(..) {
            log(l);
        }
    }

    /// Takes `data`, the next bytes of the stream; appends what to forward
    /// now to `out`.
    fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        while !data.is_empty() {
            if self.raw {
                out.extend_from_slice(data);
                return;
            }
            if self.left == 0 {
                let k = (HEADER_LEN - self.hdr.len()).min(data.len());
                self.hdr.extend_from_slice(&data[..k]);
                data = &data[k..];
                if self.hdr.len() == HEADER_LEN {
                    self.header(out);
                }
                continue;
            }
            let k = data
                .len()
                .min(usize::try_from(self.left).unwrap_or(usize::MAX));
            self.body(&data[..k], out);
            data = &data[k..];
            self.left -= k as u64;
            if self.left == 0 {
                self.end(out);
            }
        }
    }

    /// The stream ended: appends what is left to forward to `out` (a held
    /// message, a partial header).
    fn finish(&mut self, out: &mut Vec<u8>) {
        self.release_unswapped("the stream ended", out);
        out.append(&mut self.hdr);
    }

    /// Forwards the held message, if any, unswapped, because of `why`.
    fn release_unswapped(&mut self, why: &str, out: &mut Vec<u8>) {
        if let (Tamper::Swap(n), false) = (self.tamper, self.held.is_empty()) {
            self.log.push(format!(
                "{why} before frame {}: frame {n} forwarded unswapped",
                n + 1
            ));
            out.append(&mut self.held);
        }
    }

    /// The header in `self.hdr` is complete: decides the message's fate.
    fn header(&mut self, out: &mut Vec<u8>) {
        let h = std::mem::take(&mut self.hdr);
        if h[..4] != MAGIC.to_be_bytes() {
            self.log.push(format!(
                "bad magic {:02x?} after {} protected frames: forwarding the rest raw",
                &h[..4],
                self.protected
            ));
            self.release_unswapped("out of sync", out);
            out.extend_from_slice(&h);
            self.raw = true;
            return;
        }
        let kind = h[4];
        let payload = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let protected = !matches!(
            Kind::from_u8(kind),
            Some(Kind::Hello | Kind::HelloReply | Kind::Challenge | Kind::Auth)
        );
        let mut body = u64::from(payload);
        if protected {
            body += self.trailer as u64;
            self.protected += 1;
        }
        let i = self.protected;
        self.fate = match self.tamper {
            _ if !protected => Fate::Forward,
            Tamper::Drop(n) if i == n => Fate::Drop,
            Tamper::Swap(n) if i == n => Fate::Hold,
            Tamper::Swap(n) if i == n + 1 && !self.held.is_empty() => Fate::ForwardThenHeld,
            _ => Fate::Forward,
        };
        if self.fate == Fate::Drop {
            self.log.push(format!(
                "dropped frame {i} (kind {kind}, {} bytes)",
                HEADER_LEN as u64 + body
            ));
        }
        self.body(&h, out);
        self.hdr = h;
        self.hdr.clear();
        self.left = body;
        if body == 0 {
            self.end(out);
        }
    }

    /// Bytes of the current message.
    fn body(&mut self, b: &[u8], out: &mut Vec<u8>) {
        match self.fate {
            Fate::Forward | Fate::ForwardThenHeld => out.extend_from_slice(b),
            Fate::Drop => {}
            Fate::Hold => self.held.extend_from_slice(b),
        }
    }

    /// The current message is complete.
    fn end(&mut self, out: &mut Vec<u8>) {
        if self.fate == Fate::ForwardThenHeld {
            out.append(&mut self.held);
            let n = self.protected - 1;
            self.log.push(format!("swapped frames {n} and {}", n + 1));
        }
        self.fate = Fate::Forward;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message of `kind` with a payload of `len` bytes of `fill`, and a
    /// trailer of `trailer` bytes if it is protected.
    fn msg(kind: u8, len: usize, fill: u8, trailer: usize) -> Vec<u8> {
        let mut m = vec![0u8; HEADER_LEN];
        m[..4].copy_from_slice(&MAGIC.to_be_bytes());
        m[4] = kind;
        m[8..12].copy_from_slice(&u32::from(fill).to_be_bytes());
        m[12..16].copy_from_slice(&(len as u32).to_be_bytes());
        m.resize(HEADER_LEN + len, fill);
        if !matches!(kind, 1 | 2 | 7 | 8) {
            m.resize(m.len() + trailer, !fill);
        }
        m
    }

    /// A handshake (HELLO_REPLY, CHALLENGE) then protected messages
    /// 1..=5 (IO_REPLYs, a PING with no payload, a KEY_UPDATE).
    fn stream(trailer: usize) -> Vec<Vec<u8>> {
        vec![
            msg(2, 144, 0xa0, trailer),
            msg(7, 100, 0xa1, trailer),
            msg(4, 0, 0x01, trailer),
            msg(4, 4096, 0x02, trailer),
            msg(5, 0, 0x03, trailer),
            msg(9, 33, 0x04, trailer),
            msg(4, 512, 0x05, trailer),
        ]
    }

    /// What `tamper` makes of `input`, fed in pieces of `piece` bytes.
    fn run(tamper: Tamper, trailer: usize, input: &[u8], piece: usize) -> (Vec<u8>, Vec<String>) {
        let mut f = Framer::new(tamper, trailer);
        let mut out = Vec::new();
        for c in input.chunks(piece) {
            f.feed(c, &mut out);
        }
        f.finish(&mut out);
        (out, f.log)
    }

    const PIECES: [usize; 6] = [1, 3, 39, 40, 41, 1 << 20];

    #[test]
    fn drop_each() {
        for trailer in [0, 4, 24, 40] {
            let s = stream(trailer);
            for n in 1..=6u64 {
                // Message n is s[n + 1]; there is no message 6.
                let want: Vec<u8> = s
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i as u64 != n + 1)
                    .flat_map(|(_, m)| m.clone())
                    .collect();
                for piece in PIECES {
                    let (out, log) = run(Tamper::Drop(n), trailer, &s.concat(), piece);
                    assert!(out == want, "drop {n}, trailer {trailer}, piece {piece}");
                    if n <= 5 {
                        let m = &s[n as usize + 1];
                        assert_eq!(
                            log,
                            [format!(
                                "dropped frame {n} (kind {}, {} bytes)",
                                m[4],
                                m.len()
                            )]
                        );
                    } else {
                        assert!(log.is_empty());
                    }
                }
            }
        }
    }

    #[test]
    fn swap_each() {
        for trailer in [0, 4, 24, 40] {
            let s = stream(trailer);
            for n in 1..=4u64 {
                let mut want = s.clone();
                want.swap(n as usize + 1, n as usize + 2);
                for piece in PIECES {
                    let (out, log) = run(Tamper::Swap(n), trailer, &s.concat(), piece);
                    assert!(
                        out == want.concat(),
                        "swap {n}, trailer {trailer}, piece {piece}"
                    );
                    assert_eq!(log, [format!("swapped frames {n} and {}", n + 1)]);
                }
            }
        }
    }

    #[test]
    fn swap_at_the_end() {
        // Message 5 is the last: it is held, then forwarded at the end.
        let s = stream(24);
        for piece in PIECES {
            let (out, log) = run(Tamper::Swap(5), 24, &s.concat(), piece);
            assert!(out == s.concat());
            assert_eq!(
                log,
                ["the stream ended before frame 6: frame 5 forwarded unswapped"]
            );
        }
        // Beyond the stream: nothing happens.
        let (out, log) = run(Tamper::Swap(6), 24, &s.concat(), 7);
        assert!(out == s.concat() && log.is_empty());
    }

    #[test]
    fn the_trailer_counts() {
        // Cut with the wrong trailer length, the stream goes out of sync.
        let s = stream(40);
        let (out, log) = run(Tamper::Drop(3), 4, &s.concat(), 1000);
        assert!(out == s.concat());
        assert_eq!(log.len(), 1);
        assert!(log[0].starts_with("bad magic"), "{log:?}");
    }

    #[test]
    fn bad_magic_goes_raw() {
        let s = stream(4);
        let mut input = [s[0].clone(), s[1].clone(), s[2].clone()].concat();
        let junk: Vec<u8> = (0..200u8).collect();
        input.extend_from_slice(&junk);
        input.extend_from_slice(&s[3]);
        for piece in PIECES {
            // Message 1 is s[2]; nothing after the junk is cut.
            let (out, log) = run(Tamper::Drop(2), 4, &input, piece);
            assert!(out == input);
            assert_eq!(
                log,
                ["bad magic [00, 01, 02, 03] after 1 protected frames: forwarding the rest raw"]
            );
            // A held message goes out before the junk.
            let (out, log) = run(Tamper::Swap(1), 4, &input, piece);
            assert!(out == input);
            assert_eq!(log.len(), 2);
            assert_eq!(
                log[1],
                "out of sync before frame 2: frame 1 forwarded unswapped"
            );
        }
    }

    #[test]
    fn partial_header_at_the_end() {
        let s = stream(4);
        let mut input = s.concat();
        input.extend_from_slice(&MAGIC.to_be_bytes());
        input.push(4);
        let (out, _) = run(Tamper::Drop(9), 4, &input, 5);
        assert!(out == input);
    }

    #[test]
    fn options() {
        assert_eq!(tamper_options(None, None, None).ok(), Some(None));
        assert_eq!(
            tamper_options(Some("2"), None, Some("40")).ok(),
            Some(Some((Tamper::Drop(2), 40)))
        );
        assert_eq!(
            tamper_options(None, Some("1"), Some("4")).ok(),
            Some(Some((Tamper::Swap(1), 4)))
        );
        for (d, s, t) in [
            (Some("1"), None, None),
            (None, None, Some("4")),
            (Some("1"), Some("2"), Some("4")),
            (Some("0"), None, Some("4")),
            (None, Some("x"), Some("4")),
            (Some("1"), None, Some("-1")),
        ] {
            assert!(tamper_options(d, s, t).is_err(), "{d:?} {s:?} {t:?}");
        }
    }
}
