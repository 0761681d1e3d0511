// SPDX-License-Identifier: GPL-2.0

//! The example messages of `Documentation/protocol.md`, "Examples", as hex
//! dumps; the unit tests check that the document shows exactly these.

use crate::proto::{
    AlgName, Header, HelloBody, HelloReplyBody, Kind, Op, Protection, Security, Status, AUTH_LEN,
    FEATURES_ALL, FLAG_FUA, PERM_READ, PERM_WRITE, VERSION,
};
use crate::sec::{self, SecConfig};

/// The pre-shared key of the examples (32 ASCII bytes).
pub(crate) const EXAMPLE_PSK: &[u8; 32] = b"an example key, 32 bytes long!!!";

/// The local node's nonce `Nc` of the examples: bytes 0x00..=0x1f.
pub(crate) fn example_nc() -> [u8; AUTH_LEN] {
    core::array::from_fn(|i| i as u8)
}

/// The export's nonce `Ns` of the examples: bytes 0x20..=0x3f.
pub(crate) fn example_ns() -> [u8; AUTH_LEN] {
    core::array::from_fn(|i| 0x20 + i as u8)
}

/// The example HELLO: versions 1..=1, every feature, 1 MiB IOs, 4 queues of
/// depth 128, client id 0x0123456789abcdef, this connection for queue 1,
/// protection aead with `gcm(aes)` and a key, nonce `Nc`.
pub(crate) fn example_hello() -> (Header, HelloBody) {
    let body = HelloBody {
        min_version: 1,
        max_version: VERSION,
        features: FEATURES_ALL,
        max_io_bytes: 1 << 20,
        queues: 4,
        queue_depth: 128,
        client_id: 0x0123_4567_89ab_cdef,
        queue_index: 1,
        epoch: 0,
        security: Security {
            protection: Protection::Aead,
            auth: true,
            alg: AlgName::new(b"gcm(aes)").expect("valid name"),
        },
        nonce: example_nc(),
    };
    (Header::hello(), body)
}

/// The example grant: version 1, read-write, every feature, 1 GiB with
/// 512-byte logical and 4096-byte physical blocks, 1 MiB IOs, 4 queues of
/// depth 128; its proof is filled in by [`example_reply`].
pub(crate) fn example_grant() -> HelloReplyBody {
    HelloReplyBody {
        version: 1,
        perms: PERM_READ | PERM_WRITE,
        features: FEATURES_ALL,
        size: 1 << 30,
        logical_block_size: 512,
        physical_block_size: 4096,
        max_io_bytes: 1 << 20,
        queues: 4,
        queue_depth: 128,
        proof: [0; AUTH_LEN],
    }
}

/// The example HELLO_REPLY body with its `proof_export`.
pub(crate) fn example_reply() -> HelloReplyBody {
    let (_, hello) = example_hello();
    let mut g = example_grant();
    g.proof = sec::proof_export(
        EXAMPLE_PSK,
        &hello.encode(),
        &example_ns(),
        &g.grant_bytes(),
    );
    g
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
    hex_dump(&message(&Header::auth(Kind::Challenge), &example_ns()))
}

/// The AUTH of the example handshake.
pub(crate) fn auth_dump() -> String {
    let (_, hello) = example_hello();
    let proof = sec::proof_local(EXAMPLE_PSK, &hello.encode(), &example_ns());
    hex_dump(&message(&Header::auth(Kind::Auth), &proof))
}

/// The HELLO_REPLY of the example handshake.
pub(crate) fn reply_dump() -> String {
    hex_dump(&message(
        &Header::hello_reply(Status::Ok),
        &example_reply().encode(),
    ))
}

/// The session keys of the example handshake, one `K_xx = hex` line each.
pub(crate) fn keys_text() -> String {
    let (le, el) = sec::session_keys(EXAMPLE_PSK, &example_nc(), &example_ns());
    format!("K_le = {}\nK_el = {}\n", hex(&le), hex(&el))
}

/// What `encode-handshake` prints.
pub(crate) fn handshake_dump() -> String {
    format!(
        "CHALLENGE:\n{}\nAUTH:\n{}\nHELLO_REPLY:\n{}\n{}",
        challenge_dump(),
        auth_dump(),
        reply_dump(),
        keys_text()
    )
}

/// A PING with cookie 1 sent by the local node with the example session
/// keys, protected as `protection` (default algorithm) says, at `seq`.
pub(crate) fn sealed_ping(protection: Protection, seq: u64) -> Vec<u8> {
    let cfg = SecConfig::new(protection.as_str(), None, Some(EXAMPLE_PSK.to_vec()))
        .expect("valid example configuration");
    let (le, el) = sec::session_keys(EXAMPLE_PSK, &example_nc(), &example_ns());
    let (mut tx, _) = cfg.channel(&le, &el);
    tx.seq = seq;
    let hb = Header::ping(1).encode();
    let trailer = tx.seal(&hb, &mut []);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The protocol document: its examples are what this tool prints.
    const DOC: &str = include_str!("../../../Documentation/protocol.md");

    #[test]
    fn doc_examples_match() {
        for (what, dump) in [
            ("HELLO", hello_dump()),
            ("WRITE", write_dump()),
            ("CHALLENGE", challenge_dump()),
            ("AUTH", auth_dump()),
            ("HELLO_REPLY", reply_dump()),
            ("session keys", keys_text()),
            ("crc32c PING", crc_ping_dump()),
            ("hmac PING", hmac_ping_dump()),
            ("aead PING", aead_ping_dump()),
        ] {
            assert!(DOC.contains(&dump), "{what} example:\n{dump}");
        }
    }

    #[test]
    fn examples_are_valid() {
        let (header, body) = example_hello();
        assert_eq!(Header::decode(&header.encode()), Ok(header));
        assert_eq!(HelloBody::decode(&body.encode()), Ok(body));
        assert_eq!(body.validate(), Ok(()));
        let write = example_write();
        assert_eq!(Header::decode(&write.encode()), Ok(write));
        let reply = example_reply();
        assert_eq!(HelloReplyBody::decode(&reply.encode()), Ok(reply));
        assert_eq!(reply.validate(&body), Ok(()));
    }

    /// The example vectors, computed once with Python's `hmac`, `hashlib`
    /// and `cryptography` (an implementation independent of this one) and
    /// pinned here.
    #[test]
    fn example_vectors_pinned() {
        let (_, hello) = example_hello();
        let hb = hello.encode();
        assert_eq!(
            hex(&sec::proof_local(EXAMPLE_PSK, &hb, &example_ns())),
            PINNED_PROOF_LOCAL
        );
        assert_eq!(hex(&example_reply().proof), PINNED_PROOF_EXPORT);
        let (le, el) = sec::session_keys(EXAMPLE_PSK, &example_nc(), &example_ns());
        assert_eq!(hex(&le), PINNED_K_LE);
        assert_eq!(hex(&el), PINNED_K_EL);
        assert_eq!(
            hex(&sealed_ping(Protection::Crc32c, 0)[40..]),
            PINNED_CRC_TRAILER
        );
        assert_eq!(
            hex(&sealed_ping(Protection::Hmac, 0)[40..]),
            PINNED_HMAC_TRAILER
        );
        assert_eq!(
            hex(&sealed_ping(Protection::Aead, 1)[40..]),
            PINNED_AEAD_TRAILER
        );
    }

    const PINNED_PROOF_LOCAL: &str =
        "37d27d855d7dca568fb845c1328df18340a2a02b00c9aae5a8d90548381e916a";
    const PINNED_PROOF_EXPORT: &str =
        "223a5e2f75162a1c3df12951a87e3ff13f07af1b000db3de79ba8fb1147ff668";
    const PINNED_K_LE: &str = "b34a29e42307ad0e76d6b80cd454e875a0000763a7c68ab154d4614b417c7af1";
    const PINNED_K_EL: &str = "943e0271d94d6b093e1d3f938ec03dc8e64ed22cf0b34e30cc74112575e2f93d";
    const PINNED_CRC_TRAILER: &str = "5e8c23a9";
    const PINNED_HMAC_TRAILER: &str =
        "00000000000000003738e436fa39a60e1ce10631f530605fda135bc196a3c091d0d601db635c2932";
    const PINNED_AEAD_TRAILER: &str = "00000000000000012d3d19e2d6b8c67791039786d85a1761";

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
