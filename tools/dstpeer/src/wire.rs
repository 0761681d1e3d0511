// SPDX-License-Identifier: GPL-2.0

//! A framed connection: headers, payloads and trailers over a TCP stream,
//! and the local node's side of the handshake (the export's side, with its
//! hostile variants, lives in `server.rs`).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::proto::{
    ChallengeBody, Header, HelloBody, HelloReplyBody, Kind, ProtoError, Status, AUTH_LEN,
    CHALLENGE_LEN, FEATURES_ALL, HEADER_LEN, HELLO_REPLY_LEN, KEY_SHARE_LEN, MIN_VERSION, VERSION,
};
use crate::sec::{self, Ephemeral, Opener, Sealer, SecConfig, SessionKeys};

/// Why receiving a message failed.
#[derive(Debug)]
pub(crate) enum RecvError {
    /// The connection failed or was closed.
    Io(io::Error),
    /// The message broke the protocol (header, trailer, order).
    Proto(ProtoError),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Io(e) if is_closed(e) => f.write_str("connection closed by the peer"),
            RecvError::Io(e) => write!(f, "I/O error: {e}"),
            RecvError::Proto(e) => write!(f, "protocol error: {}", e.as_str()),
        }
    }
}

impl From<io::Error> for RecvError {
    fn from(e: io::Error) -> Self {
        RecvError::Io(e)
    }
}

/// Whether an I/O error means the peer closed (or reset) the connection.
pub(crate) fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Whether an I/O error is a receive timeout.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// One received message.
#[derive(Debug)]
pub(crate) struct Msg {
    pub(crate) h: Header,
    /// The header as received.
    pub(crate) raw: [u8; HEADER_LEN],
    /// The payload, decrypted in aead mode.
    pub(crate) payload: Vec<u8>,
}

/// A connection with the protection of its direction.
pub(crate) struct Wire {
    pub(crate) sock: TcpStream,
    pub(crate) tx: Sealer,
    pub(crate) rx: Opener,
    /// Bytes received and not yet consumed: small messages are read many at
    /// a time, one system call for a batch.
    rbuf: Vec<u8>,
    rpos: usize,
}

/// How much [`Wire`] reads ahead.
const READ_AHEAD: usize = 64 << 10;

impl Wire {
    /// Wraps a connected socket; no protection until the handshake is done.
    pub(crate) fn new(sock: TcpStream) -> io::Result<Self> {
        sock.set_nodelay(true)?;
        Ok(Wire {
            sock,
            tx: Sealer::plain(),
            rx: Opener::plain(),
            rbuf: Vec::new(),
            rpos: 0,
        })
    }

    /// Connects to `addr` within `timeout`; reads time out after `timeout`.
    pub(crate) fn connect(addr: &str, timeout: Duration) -> io::Result<Self> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(s) => {
                    s.set_read_timeout(Some(timeout))?;
                    s.set_write_timeout(Some(timeout))?;
                    return Wire::new(s);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Limits how long a send may block.
    pub(crate) fn set_write_timeout(&self, t: Duration) -> io::Result<()> {
        self.sock.set_write_timeout(Some(t))
    }

    /// The bytes of one message: header, payload and trailer, sealed with
    /// the next seq. The receiver takes messages only in the order of their
    /// seqs: frames must be sent in the order they are made, and none
    /// dropped. Fails once the seqs are used up.
    ///
    /// If the sending key is due for replacement (`--rekey-after`,
    /// `--rekey-interval`), a KEY_UPDATE sealed with it comes first, in the
    /// same bytes, and the message is sealed with the next key. Never
    /// right after a KEY_UPDATE: a caller that changes the frame by offsets
    /// sends [`Wire::key_update_if_due`] first.
    pub(crate) fn frame(&mut self, h: &Header, payload: &[u8]) -> io::Result<Vec<u8>> {
        self.frame_raw(&h.encode(), payload)
    }

    /// Like [`Wire::frame`], from raw (possibly invalid) header bytes.
    pub(crate) fn frame_raw(
        &mut self,
        hb: &[u8; HEADER_LEN],
        payload: &[u8],
    ) -> io::Result<Vec<u8>> {
        let mut msg = self.key_update_if_due()?;
        msg.reserve(HEADER_LEN + payload.len() + 88);
        let at = msg.len() + HEADER_LEN;
        msg.extend_from_slice(hb);
        msg.extend_from_slice(payload);
        let trailer = self.tx.seal(hb, &mut msg[at..])?;
        msg.extend_from_slice(&trailer);
        Ok(msg)
    }

    /// A KEY_UPDATE sealed with the current sending key, after which the
    /// next key seals ([`Sealer::key_update`]): its bytes, to be sent
    /// before anything framed later. Fails without keys (none, crc32c).
    pub(crate) fn key_update(&mut self) -> io::Result<Vec<u8>> {
        Ok(self.tx.key_update()?)
    }

    /// [`Wire::key_update`] if the sending key is due for replacement;
    /// otherwise nothing (no bytes).
    pub(crate) fn key_update_if_due(&mut self) -> io::Result<Vec<u8>> {
        if self.tx.update_due() {
            self.key_update()
        } else {
            Ok(Vec::new())
        }
    }

    /// Sends one message.
    pub(crate) fn send(&mut self, h: &Header, payload: &[u8]) -> io::Result<()> {
        let msg = self.frame(h, payload)?;
        self.sock.write_all(&msg)
    }

    /// Sends bytes as they are.
    pub(crate) fn send_bytes(&mut self, b: &[u8]) -> io::Result<()> {
        self.sock.write_all(b)
    }

    /// Bytes received and not consumed yet.
    pub(crate) fn buffered(&self) -> usize {
        self.rbuf.len() - self.rpos
    }

    /// Fills `out` from the read-ahead buffer and the socket.
    pub(crate) fn read_exact(&mut self, out: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < out.len() {
            if self.rpos < self.rbuf.len() {
                let n = (out.len() - done).min(self.rbuf.len() - self.rpos);
                out[done..done + n].copy_from_slice(&self.rbuf[self.rpos..self.rpos + n]);
                self.rpos += n;
                done += n;
                continue;
            }
            let big = out.len() - done >= READ_AHEAD;
            let r = if big {
                self.sock.read(&mut out[done..])
            } else {
                self.rbuf.resize(READ_AHEAD, 0);
                self.rpos = 0;
                let r = self.sock.read(&mut self.rbuf);
                self.rbuf.truncate(*r.as_ref().unwrap_or(&0));
                r
            };
            match r {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) if big => done += n,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Receives one message: the header is decoded (framing checks), the
    /// payload and trailer read, the trailer checked (payload decrypted).
    ///
    /// KEY_UPDATEs are taken here and not returned: once one verified, the
    /// opener moves to the next key (what follows must carry seq 0 under
    /// it), and the next message is received. Without keys (none, crc32c)
    /// a KEY_UPDATE breaks the protocol ([`ProtoError::BadKind`]).
    pub(crate) fn recv(&mut self) -> Result<Msg, RecvError> {
        loop {
            let m = self.recv_any()?;
            if m.h.kind != Kind::KeyUpdate {
                return Ok(m);
            }
            self.rx.update_key().map_err(RecvError::Proto)?;
        }
    }

    /// Receives one message as [`Wire::recv`] does, but returns a
    /// KEY_UPDATE (checked under the current key) without acting on it.
    pub(crate) fn recv_any(&mut self) -> Result<Msg, RecvError> {
        let mut raw = [0u8; HEADER_LEN];
        self.read_exact(&mut raw)?;
        let h = Header::decode(&raw).map_err(RecvError::Proto)?;
        let n = h.payload as usize;
        let mut buf = vec![0u8; n + self.rx.trailer_len()];
        self.read_exact(&mut buf)?;
        let trailer = buf.split_off(n);
        self.rx
            .open(&raw, &mut buf, &trailer)
            .map_err(RecvError::Proto)?;
        Ok(Msg {
            h,
            raw,
            payload: buf,
        })
    }

    /// Waits up to `limit` for the peer to close; returns how long that took
    /// and how many bytes arrived meanwhile, or `None` if it did not close.
    pub(crate) fn wait_closed(&mut self, limit: Duration) -> io::Result<Option<(Duration, usize)>> {
        let start = std::time::Instant::now();
        let mut got = self.buffered();
        self.rbuf.clear();
        self.rpos = 0;
        let mut buf = [0u8; 65536];
        loop {
            let left = limit.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Ok(None);
            }
            self.sock.set_read_timeout(Some(left))?;
            match self.sock.read(&mut buf) {
                Ok(0) => return Ok(Some((start.elapsed(), got))),
                Ok(n) => got += n,
                Err(e) if is_closed(&e) => return Ok(Some((start.elapsed(), got))),
                Err(e) if is_timeout(&e) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The HELLO of a well-behaved local node with `sec`, asking for
/// `queue_depth` (0: the export's choice) and 1 MiB IOs, with `key_share`
/// (`E_c`) if `sec` has a key.
pub(crate) fn hello_for(
    sec: &SecConfig,
    queue_depth: u16,
    key_share: &[u8; KEY_SHARE_LEN],
) -> HelloBody {
    HelloBody {
        min_version: MIN_VERSION,
        max_version: VERSION,
        features: FEATURES_ALL,
        max_io_bytes: 1 << 20,
        queues: 1,
        queue_depth,
        client_id: 0,
        queue_index: 0,
        epoch: 0,
        read_only: false,
        security: sec.security(),
        key_share: if sec.auth() {
            *key_share
        } else {
            [0; KEY_SHARE_LEN]
        },
        client: sec.client,
        export: sec.want,
    }
}

/// What the local node's successful handshake established.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Established {
    /// The export's grant, checked.
    pub(crate) grant: HelloReplyBody,
    /// The export's key share `E_s`; zero without a key.
    pub(crate) export_share: [u8; KEY_SHARE_LEN],
    /// The session keys; unused (zero) without a key.
    pub(crate) keys: SessionKeys,
}

/// How the local node's handshake ended.
#[derive(Debug)]
pub(crate) enum HsError {
    /// The export refused with this status (and closes).
    Refused(Status),
    /// The export broke the protocol or lied; what was wrong.
    Bad(String),
    /// The connection failed.
    Io(io::Error),
}

impl fmt::Display for HsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HsError::Refused(s) => write!(f, "handshake refused: {}", s.as_str()),
            HsError::Bad(what) => write!(f, "bad handshake from the export: {what}"),
            HsError::Io(e) if is_closed(e) => {
                f.write_str("the export closed the connection during the handshake")
            }
            HsError::Io(e) => write!(f, "I/O error during the handshake: {e}"),
        }
    }
}

impl From<io::Error> for HsError {
    fn from(e: io::Error) -> Self {
        HsError::Io(e)
    }
}

impl From<RecvError> for HsError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Io(e) => HsError::Io(e),
            RecvError::Proto(p) => HsError::Bad(p.as_str().to_string()),
        }
    }
}

/// The local node's handshake with `hello`: HELLO, then with a key
/// CHALLENGE (the export's identity checked against the one asked for, `DH`
/// with `eph`) and AUTH, then HELLO_REPLY, checked before anything in it is
/// trusted: with a key its identity must be the CHALLENGE's and its proof
/// must verify; then the grant is validated against `hello`. On success the
/// connection is protected as `sec` says.
///
/// `eph` is normally the pair whose public key is `hello.key_share`; a
/// caller that sends another share on purpose gets a wrong proof.
pub(crate) fn client_handshake(
    w: &mut Wire,
    sec: &SecConfig,
    hello: &HelloBody,
    eph: &Ephemeral,
) -> Result<Established, HsError> {
    let bad = |e: ProtoError| HsError::Bad(e.as_str().into());
    let hb = hello.encode();
    let mut msg = Header::hello().encode().to_vec();
    msg.extend_from_slice(&hb);
    w.send_bytes(&msg)?;
    let mut m = w.recv()?;
    // With a key: the CHALLENGE, its body and the schedule it leads to.
    let mut auth = None;
    if m.h.kind == Kind::Challenge {
        let Some(key) = &sec.key else {
            return Err(HsError::Bad("CHALLENGE without a key".into()));
        };
        // `Header::decode` checked that the payload is CHALLENGE_LEN.
        let cb: [u8; CHALLENGE_LEN] = m
            .payload
            .as_slice()
            .try_into()
            .map_err(|_| bad(ProtoError::BadPayload))?;
        let challenge = ChallengeBody::decode(&cb).map_err(bad)?;
        if !hello.export.is_empty() && challenge.export != hello.export {
            return Err(HsError::Bad(format!(
                "{}: the CHALLENGE names {:?}, the HELLO asked for {:?}",
                ProtoError::WrongExport.as_str(),
                String::from_utf8_lossy(challenge.export.as_bytes()),
                String::from_utf8_lossy(hello.export.as_bytes())
            )));
        }
        let Some(dh) = eph.agree(&challenge.key_share) else {
            return Err(HsError::Bad(
                "the export's key share gives an all-zero DH (a point of small order)".into(),
            ));
        };
        let schedule = sec::Schedule::new(key, &hello.client, &challenge.export, &dh);
        let proof = schedule.proof_local(&sec::th1(&hb, &cb));
        w.send(&Header::auth(), &proof)?;
        auth = Some((challenge, cb, schedule, proof));
        m = w.recv()?;
    } else if sec.auth() && m.h.kind == Kind::HelloReply && m.h.status == Status::Ok {
        return Err(HsError::Bad("HELLO_REPLY OK without a CHALLENGE".into()));
    }
    if m.h.kind != Kind::HelloReply {
        return Err(HsError::Bad(format!(
            "{:?} instead of HELLO_REPLY",
            m.h.kind
        )));
    }
    if m.h.status != Status::Ok {
        return Err(HsError::Refused(m.h.status));
    }
    let body: [u8; HELLO_REPLY_LEN] = m
        .payload
        .as_slice()
        .try_into()
        .map_err(|_| bad(ProtoError::BadPayload))?;
    let grant = HelloReplyBody::decode(&body).map_err(bad)?;
    let (export_share, keys) = match &auth {
        Some((challenge, cb, schedule, proof_local)) => {
            if grant.export != challenge.export {
                return Err(HsError::Bad(format!(
                    "{}: the HELLO_REPLY names {:?}, the CHALLENGE {:?}",
                    ProtoError::WrongExport.as_str(),
                    String::from_utf8_lossy(grant.export.as_bytes()),
                    String::from_utf8_lossy(challenge.export.as_bytes())
                )));
            }
            let th2 = sec::th2(&hb, cb, proof_local, &grant.proven_bytes());
            if !sec::ct_eq(&schedule.proof_export(&th2), &grant.proof) {
                return Err(bad(ProtoError::BadProof));
            }
            (challenge.key_share, schedule.session_keys(&th2))
        }
        None => {
            if grant.proof != [0; AUTH_LEN] {
                return Err(HsError::Bad("a proof without a key".into()));
            }
            ([0; KEY_SHARE_LEN], SessionKeys::UNUSED)
        }
    };
    grant
        .validate(hello)
        .map_err(|e| HsError::Bad(format!("the grant is invalid: {}", e.as_str())))?;
    let (tx, rx) = sec.channel(&keys.le, &keys.el);
    w.tx = tx;
    w.rx = rx;
    Ok(Established {
        grant,
        export_share,
        keys,
    })
}
