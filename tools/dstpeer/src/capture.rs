// SPDX-License-Identifier: GPL-2.0

//! `dstpeer decrypt-capture --key FILE [--secret HEX] CAPTURE`: tries to
//! open a recorded connection (the record format of `dstpeer proxy --record`)
//! — the forward-secrecy check of protocol version 2.
//!
//! It walks the handshake (HELLO, CHALLENGE, AUTH, HELLO_REPLY), then tries
//! to open the protected messages after HELLO_REPLY in each direction, in
//! order (hmac: verify the MACs; aead: decrypt and verify), following the
//! KEY_UPDATEs (after one, the next key, from seq 0), with session keys
//! derived in several ways:
//!
//! - with `--secret`, the local node's ephemeral private key `e_c` (from
//!   `dstpeer client --dump-secrets`): the real schedule, the positive
//!   control;
//! - without it, everything the key file alone allows: the version 2
//!   schedule with `DH` all zero, with `DH = X25519(k, E_s)` and
//!   `X25519(k, E_c)` for scalars `k` made from the key file (the key file
//!   itself, `PSK_pair`, their hashes), with `DH` replaced by a public or
//!   key-file value, with `PRK` replaced by `PSK_pair`; and version 1's
//!   derivation `HMAC(PSK, "DST1 key ..." || E_c || E_s)`. An implementation
//!   that really uses fresh ephemeral keys opens with none of them.
//!
//! It prints what opened with what (the first message of each direction,
//! and how many after it), then `decrypted` (exit 0) if any message opened,
//! or `not decrypted` (exit 1). A connection whose mode neither encrypts nor
//! authenticates its messages (none, crc32c) counts as decrypted: it is in
//! clear; a KEY_UPDATE in it is reported as the protocol violation it is.

use sha2::{Digest, Sha256};

use crate::client::{unexpected, usage, Failure, Res};
use crate::examples::hex;
use crate::proto::{
    ChallengeBody, Header, HelloBody, HelloReplyBody, Kind, ProtoError, Status, AUTH_LEN,
    CHALLENGE_LEN, HEADER_LEN, HELLO_LEN, HELLO_REPLY_LEN, KEY_SHARE_LEN, REPLY_PROVEN_LEN,
};
use crate::sec::{self, Ephemeral, Opener, Schedule, SecConfig, SessionKeys, HASH_LEN};

pub(crate) const USAGE: &str = "  decrypt-capture --key FILE [--secret HEX] CAPTURE
                              walk the handshake of a connection recorded by
                              proxy --record and try to open the first protected
                              message in each direction: with --secret (e_c from
                              client --dump-secrets) with the real keys, without
                              it with everything the key file alone allows;
                              prints `decrypted` (exit 0) or `not decrypted` (1)
";

/// Version 1's labels of the session keys (`DST1 key ...`), for the guess
/// that an implementation still derives them that way.
const V1_LABEL_KEY_LE: &[u8] = b"DST1 key local-to-export";
const V1_LABEL_KEY_EL: &[u8] = b"DST1 key export-to-local";

/// One direction of a recorded connection: its bytes and how far they
/// have been read.
struct Stream {
    name: &'static str,
    data: Vec<u8>,
    pos: usize,
}

/// A message read from a [`Stream`].
struct Message {
    h: Header,
    raw: [u8; HEADER_LEN],
    payload: Vec<u8>,
}

impl Stream {
    /// The next `n` bytes, if recorded.
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len())?;
        let b = &self.data[self.pos..end];
        self.pos = end;
        Some(b)
    }

    /// The next message of the handshake (no trailer), which must be of
    /// `kind`.
    fn handshake_message(&mut self, kind: Kind) -> Res<Message> {
        let name = self.name;
        let m = self
            .message(0)?
            .ok_or_else(|| unexpected(format!("the capture ends before the {kind:?} ({name})")))?;
        if m.h.kind != kind {
            return Err(unexpected(format!(
                "{:?} (status {}) where the {kind:?} belongs ({name})",
                m.h.kind,
                m.h.status.as_str()
            )));
        }
        Ok(m)
    }

    /// The next message with a trailer of `trailer` bytes (the payload then
    /// holds payload and trailer); `None` if the capture ends before it.
    fn message(&mut self, trailer: usize) -> Res<Option<Message>> {
        let Some(hb) = self.take(HEADER_LEN) else {
            return Ok(None);
        };
        let raw: [u8; HEADER_LEN] = hb.try_into().unwrap_or([0; HEADER_LEN]);
        let h = Header::decode(&raw).map_err(|e| {
            unexpected(format!(
                "bad header {} ({}): {}",
                hex(&raw),
                self.name,
                e.as_str()
            ))
        })?;
        // The payload is at most MAX_IO_BYTES_LIMIT (checked by decode).
        let n = h.payload as usize + trailer;
        Ok(self.take(n).map(|p| Message {
            h,
            raw,
            payload: p.to_vec(),
        }))
    }

    /// Every message left, each with a trailer of `trailer` bytes: up to
    /// the end of the capture (a message cut short there is left out) or
    /// to a header that does not decode (noted).
    fn messages(&mut self, trailer: usize) -> Vec<Message> {
        let mut out = Vec::new();
        loop {
            match self.message(trailer) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => return out,
                Err(e) => {
                    println!(
                        "note: {}: the {} messages before it are walked",
                        e.msg,
                        out.len()
                    );
                    return out;
                }
            }
        }
    }
}

/// How far the messages of one direction opened.
struct Walk {
    /// Messages opened, the first ones.
    opened: usize,
    /// KEY_UPDATEs among them.
    updates: usize,
    /// The message that did not open, and why.
    stopped: Option<(Kind, ProtoError)>,
}

/// Opens `msgs` in order with `rx`, following the KEY_UPDATEs, until one
/// does not open.
fn walk(mut rx: Opener, msgs: &[Message]) -> Walk {
    let mut w = Walk {
        opened: 0,
        updates: 0,
        stopped: None,
    };
    for m in msgs {
        let mut p = m.payload.clone();
        let t = p.split_off(m.h.payload as usize);
        let r = rx.open(&m.raw, &mut p, &t).and_then(|()| {
            if m.h.kind == Kind::KeyUpdate {
                rx.update_key()
            } else {
                Ok(())
            }
        });
        if let Err(e) = r {
            w.stopped = Some((m.h.kind, e));
            break;
        }
        w.opened += 1;
        w.updates += usize::from(m.h.kind == Kind::KeyUpdate);
    }
    w
}

/// Without keys (none, crc32c): the handshake's end, then the messages of
/// both directions checked as the mode checks them; a KEY_UPDATE among
/// them is a protocol violation (noted).
fn walk_clear(c: &mut Stream, s: &mut Stream, cfg: &SecConfig, auth: bool) -> Res {
    if auth {
        s.handshake_message(Kind::Challenge)?;
        c.handshake_message(Kind::Auth)?;
    }
    let m = s.handshake_message(Kind::HelloReply)?;
    if m.h.status != Status::Ok {
        return Err(unexpected(format!(
            "the handshake was refused: {}",
            m.h.status.as_str()
        )));
    }
    let (_, rx) = cfg.channel(&[0; 32], &[0; 32]);
    for st in [c, s] {
        let msgs = st.messages(rx.trailer_len());
        let w = walk(rx.clone(), &msgs);
        let what = match w.stopped {
            None => "all checked".to_string(),
            Some((Kind::KeyUpdate, _)) => format!(
                "then a KEY_UPDATE: a protocol violation in {}, which has no keys",
                cfg.protection.as_str()
            ),
            Some((k, e)) => format!("then a {k:?} that failed: {}", e.as_str()),
        };
        println!(
            "{} messages {}: {} in clear, {what}",
            msgs.len(),
            st.name,
            w.opened
        );
    }
    Ok(())
}

/// Splits a capture into the client's and the target's streams.
fn parse_capture(bytes: &[u8]) -> Res<(Stream, Stream)> {
    let mut c = Vec::new();
    let mut s = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let bad = |what: &str| unexpected(format!("bad capture record at byte {at}: {what}"));
        let head = bytes
            .get(at..at + 5)
            .ok_or_else(|| bad("truncated record header"))?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let body = bytes
            .get(at + 5..at + 5 + len)
            .ok_or_else(|| bad("truncated record"))?;
        match head[0] {
            b'C' => c.extend_from_slice(body),
            b'S' => s.extend_from_slice(body),
            d => return Err(bad(&format!("direction {d:#04x}, not 'C' or 'S'"))),
        }
        at += 5 + len;
    }
    Ok((
        Stream {
            name: "from the client",
            data: c,
            pos: 0,
        },
        Stream {
            name: "from the export",
            data: s,
            pos: 0,
        },
    ))
}

/// `dstpeer decrypt-capture ...`.
pub(crate) fn main(args: &[&str], sec: &SecConfig) -> Res {
    let (mut key_file, mut secret, mut path) = (None, None, None);
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        match a {
            "--key" | "--secret" => {
                let v = it
                    .next()
                    .ok_or_else(|| usage(format!("{a} needs a value")))?;
                if a == "--key" {
                    key_file = Some(*v);
                } else {
                    secret = Some(*v);
                }
            }
            _ if path.is_none() && !a.starts_with("--") => path = Some(a),
            _ => return Err(usage(format!("decrypt-capture: unknown argument {a}"))),
        }
    }
    let path = path.ok_or_else(|| usage("decrypt-capture needs a CAPTURE file"))?;
    let key = match key_file {
        Some(f) => SecConfig::read_key(f).map_err(|e| usage(e.0))?,
        None => sec
            .key
            .clone()
            .ok_or_else(|| usage("decrypt-capture needs --key FILE"))?,
    };
    let secret = match secret {
        Some(h) => Some(
            sec::parse_hex(h.trim())
                .and_then(|v| <[u8; KEY_SHARE_LEN]>::try_from(v).ok())
                .ok_or_else(|| usage("--secret: 64 hex digits (e_c)"))?,
        ),
        None => None,
    };
    let bytes =
        std::fs::read(path).map_err(|e| usage(format!("cannot read the capture {path}: {e}")))?;
    match decrypt(&bytes, &key, secret.as_ref())? {
        true => {
            println!("decrypted");
            Ok(())
        }
        false => {
            println!("not decrypted");
            Err(Failure {
                msg: "no message of the capture opened".into(),
                code: 1,
            })
        }
    }
}

/// The handshake of a capture, as recorded.
struct Handshake {
    hello: HelloBody,
    hb: [u8; HELLO_LEN],
    challenge: ChallengeBody,
    cb: [u8; CHALLENGE_LEN],
    proof_local: [u8; AUTH_LEN],
    proven: [u8; REPLY_PROVEN_LEN],
    proof_export: [u8; AUTH_LEN],
}

/// A way to derive the session keys.
struct Candidate {
    what: String,
    /// The schedule, for the version 2 guesses (its proofs are checked
    /// against the capture's too).
    schedule: Option<Schedule>,
    keys: SessionKeys,
}

/// Walks the capture's handshake and tries every candidate on the first
/// protected message of each direction: whether one opened.
fn decrypt(bytes: &[u8], key: &[u8], secret: Option<&[u8; KEY_SHARE_LEN]>) -> Res<bool> {
    let (mut c, mut s) = parse_capture(bytes)?;
    println!(
        "capture: {} bytes from the client, {} from the export",
        c.data.len(),
        s.data.len()
    );
    let m = c.handshake_message(Kind::Hello)?;
    let hb: [u8; HELLO_LEN] = m
        .payload
        .as_slice()
        .try_into()
        .map_err(|_| unexpected("a HELLO of the wrong size"))?;
    let hello = HelloBody::decode(&hb).map_err(|e| unexpected(format!("HELLO: {}", e.as_str())))?;
    let name = |n: &crate::proto::Name| String::from_utf8_lossy(n.as_bytes()).into_owned();
    println!(
        "HELLO: client {:?}, export asked {:?}, protection {} {:?}{}, E_c {}",
        name(&hello.client),
        name(&hello.export),
        hello.security.protection.as_str(),
        name(&hello.security.alg),
        if hello.security.auth {
            " with a key"
        } else {
            ""
        },
        hex(&hello.key_share)
    );
    let protection = hello.security.protection;
    let alg = String::from_utf8_lossy(hello.security.alg.as_bytes()).into_owned();
    let cfg = SecConfig::new(
        protection.as_str(),
        protection.has_alg().then_some(alg.as_str()),
        Some(key.to_vec()),
    )
    .map_err(|e| unexpected(format!("the HELLO's settings: {e}")))?;
    if !protection.needs_key() {
        println!(
            "the mode is {}: the messages are in clear, nothing to decrypt",
            protection.as_str()
        );
        if let Err(e) = walk_clear(&mut c, &mut s, &cfg, hello.security.auth) {
            println!("note: {}", e.msg);
        }
        return Ok(true);
    }
    let m = s.handshake_message(Kind::Challenge)?;
    let cb: [u8; CHALLENGE_LEN] = m
        .payload
        .as_slice()
        .try_into()
        .map_err(|_| unexpected("a CHALLENGE of the wrong size"))?;
    let challenge =
        ChallengeBody::decode(&cb).map_err(|e| unexpected(format!("CHALLENGE: {}", e.as_str())))?;
    println!(
        "CHALLENGE: export {:?}, E_s {}",
        name(&challenge.export),
        hex(&challenge.key_share)
    );
    let m = c.handshake_message(Kind::Auth)?;
    let proof_local: [u8; AUTH_LEN] = m
        .payload
        .as_slice()
        .try_into()
        .map_err(|_| unexpected("an AUTH of the wrong size"))?;
    let m = s.handshake_message(Kind::HelloReply)?;
    if m.h.status != Status::Ok {
        return Err(unexpected(format!(
            "the handshake was refused: {}",
            m.h.status.as_str()
        )));
    }
    let rb: [u8; HELLO_REPLY_LEN] = m
        .payload
        .as_slice()
        .try_into()
        .map_err(|_| unexpected("a HELLO_REPLY of the wrong size"))?;
    let reply = HelloReplyBody::decode(&rb)
        .map_err(|e| unexpected(format!("HELLO_REPLY: {}", e.as_str())))?;
    println!("HELLO_REPLY: OK, export {:?}", name(&reply.export));
    let hs = Handshake {
        hello,
        hb,
        challenge,
        cb,
        proof_local,
        proven: reply.proven_bytes(),
        proof_export: reply.proof,
    };
    let candidates = match secret {
        Some(e_c) => with_secret(&hs, key, e_c)?,
        None => guesses(&hs, key),
    };
    // The opener of each direction starts at seq 0, as the connection's
    // first message after the handshake carries: the messages are opened
    // from there, in order.
    let trailer = cfg.channel(&[0; 32], &[0; 32]).1.trailer_len();
    let msgs_c = c.messages(trailer);
    let msgs_s = s.messages(trailer);
    if msgs_c.is_empty() && msgs_s.is_empty() {
        println!("no protected message recorded after the handshake");
    }
    let mut opened = false;
    for cand in &candidates {
        let th2 = sec::th2(&hs.hb, &hs.cb, &hs.proof_local, &hs.proven);
        let proofs = cand.schedule.as_ref().map(|sch| {
            let lp = sch.proof_local(&sec::th1(&hs.hb, &hs.cb)) == hs.proof_local;
            let ep = sch.proof_export(&th2) == hs.proof_export;
            format!(
                "; proof_local {}, proof_export {}",
                if lp { "matches" } else { "differs" },
                if ep { "matches" } else { "differs" }
            )
        });
        let mut results = Vec::new();
        for (msgs, from_client) in [(&msgs_c, true), (&msgs_s, false)] {
            let Some(first) = msgs.first() else {
                continue;
            };
            // The receiver's opener: K_le opens what the client sent.
            let (rx_key, other) = if from_client {
                (&cand.keys.le, &cand.keys.el)
            } else {
                (&cand.keys.el, &cand.keys.le)
            };
            let (_, rx) = cfg.channel(other, rx_key);
            let w = walk(rx, msgs);
            let ok = w.opened > 0;
            opened |= ok;
            let mut detail = String::new();
            if ok {
                detail = format!(
                    " ({} of {} messages, {} key updates",
                    w.opened,
                    msgs.len(),
                    w.updates
                );
                if let Some((k, e)) = w.stopped {
                    detail.push_str(&format!("; then a {k:?} did not open: {}", e.as_str()));
                }
                detail.push(')');
            }
            results.push(format!(
                "{} {:?} {}{detail}",
                if from_client { "client's" } else { "export's" },
                first.h.kind,
                if ok { "OPENED" } else { "not opened" }
            ));
        }
        if results.is_empty() {
            results.push("no message to open".into());
        }
        println!(
            "{}: {}{}",
            cand.what,
            results.join(", "),
            proofs.unwrap_or_default()
        );
    }
    Ok(opened)
}

/// The real keys, from the local node's ephemeral private key.
fn with_secret(hs: &Handshake, key: &[u8], e_c: &[u8; KEY_SHARE_LEN]) -> Res<Vec<Candidate>> {
    let eph = Ephemeral::from_secret(*e_c);
    if eph.public() != &hs.hello.key_share {
        println!(
            "warning: --secret's public key {} is not the HELLO's E_c",
            hex(eph.public())
        );
    }
    let dh = eph
        .agree(&hs.challenge.key_share)
        .ok_or_else(|| unexpected("E_s gives an all-zero DH"))?;
    let sch = Schedule::new(key, &hs.hello.client, &hs.challenge.export, &dh);
    Ok(vec![v2(
        "the real schedule (e_c from --secret)".into(),
        sch,
        hs,
    )])
}

/// A version 2 candidate from its schedule.
fn v2(what: String, schedule: Schedule, hs: &Handshake) -> Candidate {
    let th2 = sec::th2(&hs.hb, &hs.cb, &hs.proof_local, &hs.proven);
    Candidate {
        what,
        keys: schedule.session_keys(&th2),
        schedule: Some(schedule),
    }
}

/// Everything the key file alone gives.
fn guesses(hs: &Handshake, key: &[u8]) -> Vec<Candidate> {
    let (client, export) = (&hs.hello.client, &hs.challenge.export);
    let (e_c, e_s) = (&hs.hello.key_share, &hs.challenge.key_share);
    let pair = sec::psk_pair(key, client, export);
    let mut key32 = [0u8; HASH_LEN];
    for (d, s) in key32.iter_mut().zip(key) {
        *d = *s;
    }
    let sha = |b: &[u8]| -> [u8; HASH_LEN] { Sha256::digest(b).into() };
    let scalars: [(&str, [u8; HASH_LEN]); 4] = [
        ("PSK_pair", pair),
        ("the key file", key32),
        ("SHA-256(key file)", sha(key)),
        ("SHA-256(PSK_pair)", sha(&pair)),
    ];
    let mut out = vec![v2(
        "v2 with DH all zero".into(),
        Schedule::from_pair(&pair, &[0; HASH_LEN]),
        hs,
    )];
    for (name, k) in &scalars {
        for (share, peer) in [("E_s", e_s), ("E_c", e_c)] {
            let dh = sec::x25519(k, peer);
            out.push(v2(
                format!("v2 with DH = X25519({name}, {share})"),
                Schedule::from_pair(&pair, &dh),
                hs,
            ));
        }
    }
    for (name, dh) in [
        ("E_c", *e_c),
        ("E_s", *e_s),
        ("PSK_pair", pair),
        ("the key file", key32),
    ] {
        out.push(v2(
            format!("v2 with DH replaced by {name}"),
            Schedule::from_pair(&pair, &dh),
            hs,
        ));
    }
    out.push(v2(
        "v2 with PRK = PSK_pair (no DH)".into(),
        Schedule::from_prk(&pair),
        hs,
    ));
    for (name, psk) in [("the key file", key), ("PSK_pair", &pair[..])] {
        out.push(Candidate {
            what: format!("v1 derivation with {name}: HMAC(PSK, \"DST1 key ...\" || E_c || E_s)"),
            schedule: None,
            keys: v1_session_keys(psk, e_c, e_s),
        });
    }
    out
}

/// Version 1's session keys `HMAC-SHA256(PSK, "DST1 key ..." || Nc || Ns)`,
/// with the key shares in place of the nonces.
pub(crate) fn v1_session_keys(psk: &[u8], nc: &[u8; 32], ns: &[u8; 32]) -> SessionKeys {
    SessionKeys {
        le: sec::hmac_sha256(psk, &[V1_LABEL_KEY_LE, nc, ns]),
        el: sec::hmac_sha256(psk, &[V1_LABEL_KEY_EL, nc, ns]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples::{self, EXAMPLE_PSK};
    use crate::proto::Protection;

    /// A capture of the example handshake and one PING each way, sealed
    /// with `keys`, in aead.
    fn example_capture(keys: &SessionKeys) -> Vec<u8> {
        let cfg = SecConfig::new(Protection::Aead.as_str(), None, Some(EXAMPLE_PSK.to_vec()))
            .expect("valid");
        let (mut tx_c, _) = cfg.channel(&keys.le, &keys.el);
        let (mut tx_s, _) = cfg.channel(&keys.el, &keys.le);
        let ping = Header::ping(1).encode();
        let mut c = ping.to_vec();
        c.extend(tx_c.seal(&ping, &mut []).expect("seqs left"));
        let pong = Header::pong(1).encode();
        let mut s = pong.to_vec();
        s.extend(tx_s.seal(&pong, &mut []).expect("seqs left"));
        capture_of(&c, &s)
    }

    /// A capture of the example handshake (aead), then `after_c` from the
    /// client and `after_s` from the export.
    fn capture_of(after_c: &[u8], after_s: &[u8]) -> Vec<u8> {
        let (_, hello) = examples::example_hello();
        let mut c = Header::hello().encode().to_vec();
        c.extend_from_slice(&hello.encode());
        c.extend_from_slice(&Header::auth().encode());
        c.extend_from_slice(&examples::example_values().proof_local);
        let mut s = Header::challenge().encode().to_vec();
        s.extend_from_slice(&examples::example_challenge().encode());
        s.extend_from_slice(&Header::hello_reply(Status::Ok).encode());
        s.extend_from_slice(&examples::example_reply().encode());
        c.extend_from_slice(after_c);
        s.extend_from_slice(after_s);
        // Records of odd sizes, interleaved.
        let mut rec = Vec::new();
        for (dir, data) in [(b'C', &c), (b'S', &s)] {
            for chunk in data.chunks(77) {
                rec.push(dir);
                rec.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
                rec.extend_from_slice(chunk);
            }
        }
        rec
    }

    #[test]
    fn the_secret_decrypts_and_the_key_file_alone_does_not() {
        let keys = examples::example_values().keys;
        let cap = example_capture(&keys);
        let e_c = examples::example_e_c().secret();
        assert_eq!(decrypt(&cap, EXAMPLE_PSK, Some(&e_c)).ok(), Some(true));
        assert_eq!(decrypt(&cap, EXAMPLE_PSK, None).ok(), Some(false));
        // Another e_c does not open it either.
        assert_eq!(decrypt(&cap, EXAMPLE_PSK, Some(&[9; 32])).ok(), Some(false));
    }

    /// The guesses do open a connection whose keys came from one of the
    /// flawed derivations they model (a negative control of the negative
    /// control).
    #[test]
    fn guesses_catch_flawed_derivations() {
        let (_, hello) = examples::example_hello();
        let ch = examples::example_challenge();
        let v1 = v1_session_keys(EXAMPLE_PSK, &hello.key_share, &ch.key_share);
        assert_eq!(
            decrypt(&example_capture(&v1), EXAMPLE_PSK, None).ok(),
            Some(true)
        );
        let pair = sec::psk_pair(EXAMPLE_PSK, &hello.client, &ch.export);
        let v = examples::example_values();
        let zero = Schedule::from_pair(&pair, &[0; HASH_LEN]).session_keys(&v.th2);
        assert_eq!(
            decrypt(&example_capture(&zero), EXAMPLE_PSK, None).ok(),
            Some(true)
        );
        let dh = sec::x25519(&pair, &ch.key_share);
        let scalar = Schedule::from_pair(&pair, &dh).session_keys(&v.th2);
        assert_eq!(
            decrypt(&example_capture(&scalar), EXAMPLE_PSK, None).ok(),
            Some(true)
        );
    }

    /// Version 1's derivation, pinned to the session keys version 1's
    /// examples had (Nc = 0x00..0x1f, Ns = 0x20..0x3f).
    #[test]
    fn v1_derivation_pinned() {
        let nc: [u8; 32] = core::array::from_fn(|i| i as u8);
        let ns: [u8; 32] = core::array::from_fn(|i| 0x20 + i as u8);
        let k = v1_session_keys(EXAMPLE_PSK, &nc, &ns);
        assert_eq!(
            hex(&k.le),
            "b34a29e42307ad0e76d6b80cd454e875a0000763a7c68ab154d4614b417c7af1"
        );
        assert_eq!(
            hex(&k.el),
            "943e0271d94d6b093e1d3f938ec03dc8e64ed22cf0b34e30cc74112575e2f93d"
        );
    }

    /// The messages of a capture are opened in order across KEY_UPDATEs;
    /// a message still sealed with the old key after one stops the walk.
    #[test]
    fn key_updates_are_followed() {
        let keys = examples::example_values().keys;
        let cfg = SecConfig::new("aead", None, Some(EXAMPLE_PSK.to_vec())).expect("valid");
        let (mut tx_c, _) = cfg.channel(&keys.le, &keys.el);
        let (mut tx_s, _) = cfg.channel(&keys.el, &keys.le);
        let frame = |tx: &mut sec::Sealer, h: Header, out: &mut Vec<u8>| {
            let hb = h.encode();
            let mut p = vec![0x5au8; h.payload as usize];
            let t = tx.seal(&hb, &mut p).expect("seqs left");
            out.extend_from_slice(&hb);
            out.extend(p);
            out.extend(t);
        };
        let (mut c, mut s) = (Vec::new(), Vec::new());
        frame(&mut tx_c, Header::ping(1), &mut c);
        c.extend(tx_c.key_update().expect("a key"));
        frame(
            &mut tx_c,
            Header::io(crate::proto::Op::Write, 0, 2, 0, 512),
            &mut c,
        );
        s.extend(tx_s.key_update().expect("a key"));
        s.extend(tx_s.key_update().expect("a key"));
        frame(&mut tx_s, Header::pong(1), &mut s);
        // After that the export's old key again: not opened.
        let mut old = tx_s.clone();
        s.extend(tx_s.key_update().expect("a key"));
        old.seq += 1;
        frame(&mut old, Header::pong(2), &mut s);
        let cap = capture_of(&c, &s);
        let e_c = examples::example_e_c().secret();
        assert_eq!(decrypt(&cap, EXAMPLE_PSK, Some(&e_c)).ok(), Some(true));
        assert_eq!(decrypt(&cap, EXAMPLE_PSK, None).ok(), Some(false));
        let ok = |r: Res<Message>| {
            if let Err(f) = r {
                panic!("{}", f.msg);
            }
        };
        let Ok((mut sc, mut ss)) = parse_capture(&cap) else {
            panic!("not a capture");
        };
        let trailer = cfg.channel(&[0; 32], &[0; 32]).1.trailer_len();
        ok(sc.handshake_message(Kind::Hello));
        ok(ss.handshake_message(Kind::Challenge));
        ok(sc.handshake_message(Kind::Auth));
        ok(ss.handshake_message(Kind::HelloReply));
        let (_, rx) = cfg.channel(&keys.el, &keys.le);
        let w = walk(rx, &sc.messages(trailer));
        assert_eq!((w.opened, w.updates, w.stopped), (3, 1, None));
        let (_, rx) = cfg.channel(&keys.le, &keys.el);
        let w = walk(rx, &ss.messages(trailer));
        assert_eq!((w.opened, w.updates), (4, 3));
        assert_eq!(w.stopped, Some((Kind::Pong, ProtoError::OutOfOrder)));
        // Without keys a KEY_UPDATE stops the walk: a protocol violation.
        for mode in ["none", "crc32c"] {
            let cfg = SecConfig::new(mode, None, None).expect("valid");
            let (mut tx, rx) = cfg.channel(&[0; 32], &[0; 32]);
            let mut b = Vec::new();
            frame(&mut tx, Header::ping(1), &mut b);
            frame(&mut tx, Header::key_update(), &mut b);
            frame(&mut tx, Header::ping(2), &mut b);
            let mut st = Stream {
                name: "test",
                data: b,
                pos: 0,
            };
            let w = walk(rx.clone(), &st.messages(rx.trailer_len()));
            assert_eq!((w.opened, w.updates), (1, 0), "{mode}");
            assert_eq!(w.stopped, Some((Kind::KeyUpdate, ProtoError::BadKind)));
        }
    }

    #[test]
    fn bad_captures_are_refused() {
        assert!(parse_capture(b"X\0\0\0\x01a").is_err());
        assert!(parse_capture(b"C\0\0\0\x05ab").is_err());
        assert!(parse_capture(b"C\0\0").is_err());
        assert!(decrypt(b"", EXAMPLE_PSK, None).is_err());
        let cap = example_capture(&examples::example_values().keys);
        // Every truncation fails or decides, but never panics.
        for n in (0..cap.len()).step_by(7) {
            let _ = decrypt(&cap[..n], EXAMPLE_PSK, None);
        }
    }
}
