// SPDX-License-Identifier: GPL-2.0

//! `dstpeer proxy --listen ADDR:PORT [--to ADDR:PORT] [--to-file PATH]
//! [--record FILE]`: a TCP forwarder for tests (one of `--to` and
//! `--to-file` is needed).
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
//! direction's stream (`dstpeer decrypt-capture` reads it). It runs until
//! killed.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::client::{unexpected, usage, Res};

pub(crate) const USAGE: &str =
    "  proxy --listen ADDR:PORT [--to ADDR:PORT] [--to-file PATH] [--record FILE]
                              forward every connection to the target; --to-file:
                              read the target from PATH for each new connection
                              (--to if PATH is empty or unreadable), and close
                              the open ones when PATH's content changes;
                              --record: append the first connection's traffic to
                              FILE as records ('C' or 'S', 4-byte big-endian
                              length, bytes); runs until killed
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
    /// Connections accepted so far.
    conns: AtomicU64,
    /// The open connections: number, client side, target side.
    live: Mutex<Vec<(u64, TcpStream, TcpStream)>>,
}

/// `dstpeer proxy ...`.
pub(crate) fn main(args: &[&str]) -> Res {
    let (mut listen, mut to, mut to_file, mut record) = (None, None, None, None);
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        let slot = match a {
            "--listen" => &mut listen,
            "--to" => &mut to,
            "--to-file" => &mut to_file,
            "--record" => &mut record,
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
        "proxy: listening on {}, to {}{}",
        listener.local_addr()?,
        to.as_deref().unwrap_or("(none)"),
        to_file
            .as_deref()
            .map_or(String::new(), |f| format!(" (or what {f} says)"))
    );
    io::stdout().flush()?;
    let proxy = Arc::new(Proxy {
        to,
        to_file,
        record: Mutex::new(record),
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
        log(format!(
            "conn {n}: {} -> {target}{}",
            client
                .peer_addr()
                .map_or("(unknown)".to_string(), |a| a.to_string()),
            if record.is_some() { ", recorded" } else { "" }
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
        let up = thread::spawn(move || pump(client, server, b'C', rec.as_deref()));
        let down = pump(s2, c2, b'S', record.as_deref());
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
/// direction `dir`; passes an orderly end on as a half-close, and an error
/// as a reset of both. Returns the bytes copied.
fn pump(mut from: TcpStream, mut to: TcpStream, dir: u8, record: Option<&Mutex<File>>) -> u64 {
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => {
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
        if to.write_all(chunk).is_err() {
            break;
        }
        total += n as u64;
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    total
}
