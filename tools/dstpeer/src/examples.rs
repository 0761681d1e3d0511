// SPDX-License-Identifier: GPL-2.0

//! The example messages and values of `Documentation/protocol.md`,
//! "Examples", as printed by `encode-hello`, `encode-write`,
//! `encode-handshake` and `encode-sealed`. The ephemeral private keys are
//! fixed here (a real peer makes fresh ones per connection) so that the
//! examples are reproducible; `proto_tests.rs` pins every value to vectors
//! computed independently, and checks that the document shows exactly what
//! is printed here.

use crate::proto::{
    ChallengeBody, Header, HelloBody, HelloReplyBody, Name, Op, Protection, Security, Status,
    AUTH_LEN, CHALLENGE_LEN, FEATURE_DISCARD, FEATURE_FLUSH, FEATURE_FUA, FEATURE_WRITE_ZEROES,
    FLAG_FUA, HELLO_LEN, KEY_SHARE_LEN, MIN_VERSION, PERM_READ, PERM_WRITE, VERSION,
};
use crate::sec::{self, Ephemeral, Schedule, SecConfig, SessionKeys, HASH_LEN};

/// The key file of the examples (32 ASCII bytes).
pub(crate) const EXAMPLE_PSK: &[u8; 32] = b"an example key, 32 bytes long!!!";

/// The local node's identity in the examples.
pub(crate) const EXAMPLE_CLIENT: &[u8] = b"client.example";

/// The export's identity in the examples.
pub(crate) const EXAMPLE_EXPORT: &[u8] = b"export.example";

/// A name of the examples (known valid).
fn name(s: &[u8]) -> Name {
    Name::new(s).expect("a valid example name")
}

/// The local node's ephemeral private key `e_c` of the examples: bytes
/// 0x00..=0x1f.
pub(crate) fn example_e_c() -> Ephemeral {
    Ephemeral::from_secret(core::array::from_fn(|i| i as u8))
}

/// The export's ephemeral private key `e_s` of the examples: bytes
/// 0x20..=0x3f.
pub(crate) fn example_e_s() -> Ephemeral {
    Ephemeral::from_secret(core::array::from_fn(|i| 0x20 + i as u8))
}

/// The four features of the examples, which predate RESIZE (so that their
/// dumps and key schedule stay as published).
const EXAMPLE_FEATURES: u64 = FEATURE_FLUSH | FEATURE_FUA | FEATURE_DISCARD | FEATURE_WRITE_ZEROES;

/// The example HELLO: versions 2..=2, the four IO features, 1 MiB IOs, 4 queues of
/// depth 128, client id 0x0123456789abcdef, this connection for queue 1,
/// epoch 0, protection aead with `gcm(aes)` and a key, key share `E_c`,
/// from `client.example` for `export.example`.
pub(crate) fn example_hello() -> (Header, HelloBody) {
    let body = HelloBody {
        min_version: MIN_VERSION,
        max_version: VERSION,
        features: EXAMPLE_FEATURES,
        max_io_bytes: 1 << 20,
        queues: 4,
        queue_depth: 128,
        client_id: 0x0123_4567_89ab_cdef,
        queue_index: 1,
        epoch: 0,
        read_only: false,
        security: Security {
            protection: Protection::Aead,
            auth: true,
            alg: name(b"gcm(aes)"),
        },
        key_share: *example_e_c().public(),
        client: name(EXAMPLE_CLIENT),
        export: name(EXAMPLE_EXPORT),
    };
    (Header::hello(), body)
}

/// The example CHALLENGE body: `export.example` and `E_s`.
pub(crate) fn example_challenge() -> ChallengeBody {
    ChallengeBody {
        export: name(EXAMPLE_EXPORT),
        key_share: *example_e_s().public(),
    }
}

/// The example grant: version 2, read-write, the four IO features, 1 GiB with
/// 512-byte logical and 4096-byte physical blocks, 1 MiB IOs, 4 queues of
/// depth 128, `export.example`; its proof is filled in by
/// [`example_reply`].
pub(crate) fn example_grant() -> HelloReplyBody {
    HelloReplyBody {
        version: VERSION,
        perms: PERM_READ | PERM_WRITE,
        features: EXAMPLE_FEATURES,
        size: 1 << 30,
        logical_block_size: 512,
        physical_block_size: 4096,
        max_io_bytes: 1 << 20,
        queues: 4,
        queue_depth: 128,
        export: name(EXAMPLE_EXPORT),
        proof: [0; AUTH_LEN],
    }
}

/// Every value of the example handshake's key schedule.
pub(crate) struct ExampleValues {
    pub(crate) e_c_pub: [u8; KEY_SHARE_LEN],
    pub(crate) e_s_pub: [u8; KEY_SHARE_LEN],
    pub(crate) psk_pair: [u8; HASH_LEN],
    pub(crate) dh: [u8; HASH_LEN],
    pub(crate) prk: [u8; HASH_LEN],
    pub(crate) th1: [u8; HASH_LEN],
    pub(crate) proof_local: [u8; AUTH_LEN],
    pub(crate) th2: [u8; HASH_LEN],
    pub(crate) proof_export: [u8; AUTH_LEN],
    pub(crate) keys: SessionKeys,
}

/// The example handshake computed as the local node does: from `e_c` and
/// the export's share, the HELLO and CHALLENGE bodies and the grant.
pub(crate) fn example_values() -> ExampleValues {
    let (e_c, e_s) = (example_e_c(), example_e_s());
    let (_, hello) = example_hello();
    let hb: [u8; HELLO_LEN] = hello.encode();
    let cb: [u8; CHALLENGE_LEN] = example_challenge().encode();
    // The example key shares are not of small order.
    let dh = e_c.agree(e_s.public()).expect("a contributory DH");
    let psk_pair = sec::psk_pair(EXAMPLE_PSK, &hello.client, &hello.export);
    let schedule = Schedule::from_pair(&psk_pair, &dh);
    let th1 = sec::th1(&hb, &cb);
    let proof_local = schedule.proof_local(&th1);
    let th2 = sec::th2(&hb, &cb, &proof_local, &example_grant().proven_bytes());
    ExampleValues {
        e_c_pub: *e_c.public(),
        e_s_pub: *e_s.public(),
        psk_pair,
        dh,
        prk: *schedule.prk(),
        th1,
        proof_local,
        th2,
        proof_export: schedule.proof_export(&th2),
        keys: schedule.session_keys(&th2),
    }
}

/// The example HELLO_REPLY body with its `proof_export`.
pub(crate) fn example_reply() -> HelloReplyBody {
    HelloReplyBody {
        proof: example_values().proof_export,
        ..example_grant()
    }
}

/// The example WRITE: id 1, 4096 bytes at offset 1 MiB, with FUA.
pub(crate) fn example_write() -> Header {
    Header::io(Op::Write, FLAG_FUA, 1, 1 << 20, 4096)
}

/// `hexdump -C`-style dump of `bytes`, one line per 16 bytes, offsets from 0.
pub(crate) fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (line, chunk) in bytes.chunks(16).enumerate() {
        out.push_str(&format!("{:08x} ", line * 16));
        for i in 0..16 {
            if i == 8 {
                out.push(' ');
            }
            match chunk.get(i) {
                Some(b) => out.push_str(&format!(" {b:02x}")),
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        for &b in chunk {
            out.push(if b == b' ' || b.is_ascii_graphic() {
                char::from(b)
            } else {
                '.'
            });
        }
        out.push_str("|\n");
    }
    out
}

/// Lower-case hex of `bytes`, no separators.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Header and body as one byte string.
fn message(h: &Header, body: &[u8]) -> Vec<u8> {
    let mut v = h.encode().to_vec();
    v.extend_from_slice(body);
    v
}

/// The dump printed by `encode-hello`.
pub(crate) fn hello_dump() -> String {
    let (header, body) = example_hello();
    hex_dump(&message(&header, &body.encode()))
}

/// The dump printed by `encode-write`.
pub(crate) fn write_dump() -> String {
    hex_dump(&example_write().encode())
}

/// The CHALLENGE of the example handshake.
pub(crate) fn challenge_dump() -> String {
    hex_dump(&message(
        &Header::challenge(),
        &example_challenge().encode(),
    ))
}

/// The AUTH of the example handshake.
pub(crate) fn auth_dump() -> String {
    hex_dump(&message(&Header::auth(), &example_values().proof_local))
}

/// The HELLO_REPLY of the example handshake.
pub(crate) fn reply_dump() -> String {
    hex_dump(&message(
        &Header::hello_reply(Status::Ok),
        &example_reply().encode(),
    ))
}

/// The values of the example key schedule, one `name = hex` line each.
pub(crate) fn values_text() -> String {
    let v = example_values();
    let e_c = example_e_c().secret();
    let e_s = example_e_s().secret();
    [
        ("e_c", &e_c),
        ("E_c", &v.e_c_pub),
        ("e_s", &e_s),
        ("E_s", &v.e_s_pub),
        ("PSK_pair", &v.psk_pair),
        ("DH", &v.dh),
        ("PRK", &v.prk),
        ("TH1", &v.th1),
        ("proof_local", &v.proof_local),
        ("TH2", &v.th2),
        ("proof_export", &v.proof_export),
        ("K_le", &v.keys.le),
        ("K_el", &v.keys.el),
    ]
    .iter()
    .map(|(n, b)| format!("{n:<12} = {}\n", hex(&b[..])))
    .collect()
}

/// What `encode-handshake` prints.
pub(crate) fn handshake_dump() -> String {
    format!(
        "CHALLENGE:\n{}\nAUTH:\n{}\nHELLO_REPLY:\n{}\n{}",
        challenge_dump(),
        auth_dump(),
        reply_dump(),
        values_text()
    )
}

/// A PING with cookie 1 sent by the local node with the example session
/// key `K_le`, protected as `protection` (default algorithm) says, at `seq`.
pub(crate) fn sealed_ping(protection: Protection, seq: u64) -> Vec<u8> {
    let cfg = SecConfig::new(protection.as_str(), None, Some(EXAMPLE_PSK.to_vec()))
        .expect("valid example configuration");
    let keys = example_values().keys;
    let (tx, _) = cfg.channel(&keys.le, &keys.el);
    let hb = Header::ping(1).encode();
    let trailer = tx.seal_at(seq, &hb, &mut []);
    let mut v = hb.to_vec();
    v.extend(trailer);
    v
}

/// The dump of the example hmac PING (seq 0).
pub(crate) fn hmac_ping_dump() -> String {
    hex_dump(&sealed_ping(Protection::Hmac, 0))
}

/// The dump of the example aead PING (seq 1).
pub(crate) fn aead_ping_dump() -> String {
    hex_dump(&sealed_ping(Protection::Aead, 1))
}

/// The dump of the example crc32c PING.
pub(crate) fn crc_ping_dump() -> String {
    hex_dump(&sealed_ping(Protection::Crc32c, 0))
}

/// What `encode-sealed` prints.
pub(crate) fn sealed_dump() -> String {
    format!(
        "crc32c:\n{}\nhmac(sha256), seq 0:\n{}\ngcm(aes), seq 1:\n{}",
        crc_ping_dump(),
        hmac_ping_dump(),
        aead_ping_dump()
    )
}

/// The example key update (hmac(sha256)): the local node's KEY_UPDATE
/// sealed with `K_le` at seq 2, and the PING (cookie 1) after it, sealed
/// with the next key `K_le'` at seq 0.
pub(crate) fn key_update_frames() -> (Vec<u8>, Vec<u8>) {
    let cfg = SecConfig::new("hmac", None, Some(EXAMPLE_PSK.to_vec()))
        .expect("valid example configuration");
    let keys = example_values().keys;
    let (mut tx, _) = cfg.channel(&keys.le, &keys.el);
    tx.seq = 2;
    let ku = tx.key_update().expect("hmac has keys");
    let hb = Header::ping(1).encode();
    let mut ping = hb.to_vec();
    ping.extend(tx.seal(&hb, &mut []).expect("seqs left"));
    (ku, ping)
}

/// What `encode-key-update` prints.
pub(crate) fn key_update_dump() -> String {
    let keys = example_values().keys;
    let (ku, ping) = key_update_frames();
    format!(
        "K_le  = {}\nK_le' = {}  (HKDF-Expand(K_le, \"DST2 key update\"))\n\
         KEY_UPDATE, hmac(sha256), seq 2 under K_le:\n{}\n\
         the PING after it, seq 0 under K_le':\n{}",
        hex(&keys.le),
        hex(&sec::next_key(&keys.le)),
        hex_dump(&ku),
        hex_dump(&ping)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example key update opens at the export: KEY_UPDATE under K_le
    /// at seq 2, then the PING under the next key at seq 0.
    #[test]
    fn key_update_example_opens() {
        let cfg = SecConfig::new("hmac", None, Some(EXAMPLE_PSK.to_vec())).expect("valid");
        let keys = example_values().keys;
        let (_, mut rx) = cfg.channel(&keys.el, &keys.le);
        rx.next = 2;
        let (ku, ping) = key_update_frames();
        for (f, kind) in [
            (&ku, crate::proto::Kind::KeyUpdate),
            (&ping, crate::proto::Kind::Ping),
        ] {
            let hb: [u8; crate::proto::HEADER_LEN] =
                f[..crate::proto::HEADER_LEN].try_into().expect("a header");
            assert_eq!(Header::decode(&hb).map(|h| h.kind), Ok(kind));
            assert_eq!(
                rx.open(&hb, &mut [], &f[crate::proto::HEADER_LEN..]),
                Ok(())
            );
            if kind == crate::proto::Kind::KeyUpdate {
                assert_eq!(rx.update_key(), Ok(()));
            }
        }
        assert_eq!(rx.next, 1);
        // Computed with Python's hmac.
        assert_eq!(
            hex(&ku[crate::proto::HEADER_LEN..]),
            "0000000000000002936fda02a99c24b14caa20eb93d0ee6feea07db79ea6cc7b5d9460cab4762b4e"
        );
        assert_eq!(
            hex(&ping[crate::proto::HEADER_LEN..]),
            "00000000000000003b5b5180fd1e41b8337771b0fa6eae6327b5778ff79c6f14eef0848be883bb37"
        );
        assert!(key_update_dump()
            .contains("K_le' = 27cd6ab10b94dad8a2147f214b3f27cd3b8373592a132d4253cc5a6cc773cdbd"));
    }

    #[test]
    fn examples_are_valid() {
        let (header, body) = example_hello();
        assert_eq!(Header::decode(&header.encode()), Ok(header));
        assert_eq!(HelloBody::decode(&body.encode()), Ok(body));
        assert_eq!(body.validate(), Ok(()));
        let challenge = example_challenge();
        assert_eq!(ChallengeBody::decode(&challenge.encode()), Ok(challenge));
        let write = example_write();
        assert_eq!(Header::decode(&write.encode()), Ok(write));
        let reply = example_reply();
        assert_eq!(HelloReplyBody::decode(&reply.encode()), Ok(reply));
        assert_eq!(reply.validate(&body), Ok(()));
    }

    /// The export computes the same schedule from its side: `e_s` and the
    /// local node's share.
    #[test]
    fn both_sides_agree() {
        let v = example_values();
        let dh = example_e_s().agree(&v.e_c_pub).expect("contributory");
        assert_eq!(dh, v.dh);
        let (_, hello) = example_hello();
        let s = Schedule::new(EXAMPLE_PSK, &hello.client, &example_challenge().export, &dh);
        assert_eq!(s.proof_local(&v.th1), v.proof_local);
        assert_eq!(s.proof_export(&v.th2), v.proof_export);
        assert_eq!(s.session_keys(&v.th2), v.keys);
    }

    #[test]
    fn hex_dump_format() {
        let bytes: Vec<u8> = (0x41..0x41 + 20).collect();
        assert_eq!(
            hex_dump(&bytes),
            "00000000  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP|\n\
             00000010  51 52 53 54                                       |QRST|\n"
        );
    }
}
