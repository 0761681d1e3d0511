//! `dstcfg discover -r ADDR`: which exports listen at an export address for
//! this node. Plain userspace TCP, no module needed: a DISCOVER header as
//! the first message, the export's DISCOVER_REPLY (the names of the exports
//! whose allow-list admits this node's address), and the export closes. The
//! wire definitions are the module's own (`dst/proto.rs`, included by
//! `main.rs`); everything read is checked before it is printed.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::proto::{Header, Kind, Name, ProtoError, HEADER_LEN, MAX_DISCOVERED, NAME_LEN};

/// How long connecting, and then each read and write, may take: an export
/// answers at once.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the export address `addr` for its export names.
pub fn discover(addr: SocketAddr) -> Result<Vec<String>> {
    let mut stream =
        TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| connect_error(addr, &e))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    ask(&mut stream, addr)
}

/// What a failed connect means here.
fn connect_error(addr: SocketAddr, e: &io::Error) -> anyhow::Error {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => anyhow::anyhow!(
            "{addr}: connection refused: no export listens on this address and port"
        ),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => anyhow::anyhow!(
            "{addr}: no answer within {} s: the export node is down or unreachable, or a \
             firewall drops the connection",
            TIMEOUT.as_secs()
        ),
        _ => anyhow::anyhow!("{addr}: cannot connect: {e}"),
    }
}

/// What a failed read means here.
fn read_error(addr: SocketAddr, e: &io::Error) -> anyhow::Error {
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => anyhow::anyhow!(
            "{addr} closed the connection without an answer: not a DST export, or one too old \
             to answer DISCOVER"
        ),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => anyhow::anyhow!(
            "{addr} accepted the connection but sent no answer within {} s: not a DST export?",
            TIMEOUT.as_secs()
        ),
        _ => anyhow::anyhow!("{addr}: reading the answer: {e}"),
    }
}

/// Sends a DISCOVER on `stream` and reads the DISCOVER_REPLY; `addr` is for
/// messages.
pub fn ask<S: Read + Write>(stream: &mut S, addr: SocketAddr) -> Result<Vec<String>> {
    stream
        .write_all(&Header::discover().encode())
        .map_err(|e| anyhow::anyhow!("{addr}: sending DISCOVER: {e}"))?;
    let mut hb = [0u8; HEADER_LEN];
    stream
        .read_exact(&mut hb)
        .map_err(|e| read_error(addr, &e))?;
    let h = match Header::decode(&hb) {
        Ok(h) => h,
        Err(ProtoError::BadMagic) => {
            bail!("{addr} is not a DST export: its answer does not start with DST's magic")
        }
        Err(ProtoError::BadKind) => {
            bail!("{addr} answered a message of a kind this dstcfg does not know")
        }
        Err(e) => bail!("{addr} sent an invalid DISCOVER_REPLY: {}", e.as_str()),
    };
    if h.kind != Kind::DiscoverReply {
        bail!(
            "{addr} answered {:?} instead of DISCOVER_REPLY: a DST export too old to answer \
             DISCOVER?",
            h.kind
        );
    }
    // decode() checked the payload: whole names, at most MAX_DISCOVERED.
    let n = h.payload as usize / NAME_LEN;
    let mut names = Vec::with_capacity(n.min(MAX_DISCOVERED));
    for _ in 0..n {
        let mut field = [0u8; NAME_LEN];
        stream.read_exact(&mut field).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                anyhow::anyhow!("{addr} closed the connection in the middle of its answer")
            } else {
                read_error(addr, &e)
            }
        })?;
        let name = Name::from_wire(field);
        if !name.valid() || name.is_empty() {
            bail!("{addr} sent an invalid export name in its DISCOVER_REPLY");
        }
        // valid(): printable ASCII, so UTF-8.
        names.push(String::from_utf8_lossy(name.as_bytes()).into_owned());
    }
    Ok(names)
}

/// The names as `discover` prints them: one per line.
pub fn text(names: &[String]) -> String {
    names.iter().map(|n| format!("{n}\n")).collect()
}

/// The names as `discover --json` prints them: one array on one line.
pub fn json(names: &[String]) -> String {
    crate::json::to_line(&names) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::net::TcpListener;

    /// A stream that reads `answer` and records what is written.
    struct Fake {
        answer: Cursor<Vec<u8>>,
        sent: Vec<u8>,
    }

    impl Read for Fake {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.answer.read(buf)
        }
    }

    impl Write for Fake {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.sent.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    const A: &str = "127.0.0.1:1025";

    fn reply(names: &[&str]) -> Vec<u8> {
        let mut b = Header::discover_reply(names.len() as u32).encode().to_vec();
        for n in names {
            b.extend_from_slice(Name::new(n.as_bytes()).unwrap().padded());
        }
        b
    }

    fn run(answer: Vec<u8>) -> (Result<Vec<String>>, Vec<u8>) {
        let mut fake = Fake {
            answer: Cursor::new(answer),
            sent: Vec::new(),
        };
        let r = ask(&mut fake, A.parse().unwrap());
        (r, fake.sent)
    }

    fn err(answer: Vec<u8>) -> String {
        format!("{:#}", run(answer).0.unwrap_err())
    }

    #[test]
    fn sends_a_discover_header_and_reads_the_names() {
        let (names, sent) = run(reply(&["alpha", "beta", "node1:ram2"]));
        assert_eq!(names.unwrap(), ["alpha", "beta", "node1:ram2"]);
        // 40 bytes: the magic "DST1", kind 12, everything else zero.
        let mut want = [0u8; HEADER_LEN];
        want[..4].copy_from_slice(b"DST1");
        want[4] = 12;
        assert_eq!(sent, want);
        assert_eq!(run(reply(&[])).0.unwrap(), Vec::<String>::new());
    }

    #[test]
    fn prints_one_name_per_line_or_a_json_list() {
        let names = vec!["alpha".to_string(), "a\"b".to_string()];
        assert_eq!(text(&names), "alpha\na\"b\n");
        assert_eq!(json(&names), "[\"alpha\", \"a\\\"b\"]\n");
        assert_eq!(json(&[]), "[]\n");
    }

    #[test]
    fn refuses_what_is_not_a_discover_reply() {
        assert!(
            err(b"HTTP/1.1 400 Bad Request\r\n\r\n0123456789abcdef".to_vec())
                .contains("is not a DST export"),
        );
        assert!(err(Vec::new()).contains("closed the connection without an answer"));
        assert!(err(reply(&["alpha"])[..20].to_vec()).contains("without an answer"));
        let hello_reply = Header::hello_reply(crate::proto::Status::Invalid).encode();
        let e = err(hello_reply.to_vec());
        assert!(e.contains("instead of DISCOVER_REPLY"), "{e}");
        // A payload that is not whole names.
        let mut bad = reply(&["alpha"]);
        bad[15] = 65;
        let e = err(bad);
        assert!(e.contains("invalid DISCOVER_REPLY"), "{e}");
        // Fewer names than announced.
        let mut short = reply(&["alpha", "beta"]);
        short.truncate(HEADER_LEN + NAME_LEN + 3);
        assert!(err(short).contains("in the middle of its answer"));
    }

    #[test]
    fn refuses_invalid_names() {
        for field in [
            [0u8; NAME_LEN],  // empty
            [b'a'; NAME_LEN], // no NUL
            {
                let mut f = [0u8; NAME_LEN];
                f[..3].copy_from_slice(b"a b"); // a space
                f
            },
            {
                let mut f = [0u8; NAME_LEN];
                f[0] = b'a';
                f[5] = b'x'; // not NUL after the NUL
                f
            },
        ] {
            let mut b = Header::discover_reply(1).encode().to_vec();
            b.extend_from_slice(&field);
            assert!(err(b).contains("invalid export name"));
        }
    }

    #[test]
    fn over_tcp_and_a_refused_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut hb = [0u8; HEADER_LEN];
            s.read_exact(&mut hb).unwrap();
            assert_eq!(Header::decode(&hb).unwrap().kind, Kind::Discover);
            s.write_all(&reply(&["gamma"])).unwrap();
        });
        assert_eq!(discover(addr).unwrap(), ["gamma"]);
        server.join().unwrap();
        // Nothing listens there any more.
        let e = format!("{:#}", discover(addr).unwrap_err());
        assert!(e.contains("connection refused: no export listens"), "{e}");
    }

    #[test]
    fn silent_peer_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut stream = TcpStream::connect(addr).unwrap();
        let _held = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let e = format!("{:#}", ask(&mut stream, addr).unwrap_err());
        assert!(e.contains("sent no answer within"), "{e}");
    }
}
