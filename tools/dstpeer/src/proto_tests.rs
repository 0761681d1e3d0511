// SPDX-License-Identifier: GPL-2.0

//! Unit tests of the wire protocol definition (`dst/proto.rs`).

use crate::proto::*;

const ALL_KINDS: [Kind; 13] = [
    Kind::Hello,
    Kind::HelloReply,
    Kind::Io,
    Kind::IoReply,
    Kind::Ping,
    Kind::Pong,
    Kind::Challenge,
    Kind::Auth,
    Kind::KeyUpdate,
    Kind::Release,
    Kind::Resize,
    Kind::Discover,
    Kind::DiscoverReply,
];

const ALL_OPS: [Op; 5] = [Op::Read, Op::Write, Op::Flush, Op::Discard, Op::WriteZeroes];

const ALL_STATUSES: [Status; 14] = [
    Status::Ok,
    Status::IoError,
    Status::Invalid,
    Status::Permission,
    Status::Range,
    Status::NotSupported,
    Status::NoSpace,
    Status::Version,
    Status::Busy,
    Status::Mismatch,
    Status::AuthFailed,
    Status::NotAllowed,
    Status::UnknownExport,
    Status::InUse,
];

const ALL_ERRORS: [ProtoError; 14] = [
    ProtoError::BadMagic,
    ProtoError::BadKind,
    ProtoError::BadOp,
    ProtoError::BadFlags,
    ProtoError::BadStatus,
    ProtoError::BadPayload,
    ProtoError::Reserved,
    ProtoError::BadReply,
    ProtoError::BadHello,
    ProtoError::BadVersion,
    ProtoError::BadTag,
    ProtoError::OutOfOrder,
    ProtoError::BadProof,
    ProtoError::WrongExport,
];

const ALL_PROTECTIONS: [Protection; 4] = [
    Protection::None,
    Protection::Crc32c,
    Protection::Hmac,
    Protection::Aead,
];

/// A 1 GiB read-write export with 512-byte blocks, 1 MiB IOs, every feature.
fn limits() -> Limits {
    Limits {
        size: 1 << 30,
        logical_block: 512,
        max_io: 1 << 20,
        perms: PERM_READ | PERM_WRITE,
        features: FEATURES_ALL,
    }
}

/// A valid request of `op` (4096 bytes at 8192, or the FLUSH shape).
fn request(op: Op) -> Header {
    match op {
        Op::Flush => Header::io(op, 0, 7, 0, 0),
        _ => Header::io(op, 0, 7, 8192, 4096),
    }
}

/// A name (known valid).
fn name(s: &[u8]) -> Name {
    Name::new(s).expect("valid name")
}

fn hello() -> HelloBody {
    HelloBody {
        min_version: 2,
        max_version: 2,
        features: FEATURES_ALL,
        max_io_bytes: 1 << 20,
        queues: 4,
        queue_depth: 128,
        client_id: 0,
        queue_index: 0,
        epoch: 0,
        read_only: false,
        security: Security::NONE,
        key_share: [0; KEY_SHARE_LEN],
        client: name(b"client"),
        export: Name::EMPTY,
    }
}

/// The security settings of `protection` with its default algorithm and,
/// if `auth`, a key.
fn security(protection: Protection, auth: bool) -> Security {
    Security {
        protection,
        auth,
        alg: Name::new(protection.default_alg().as_bytes()).expect("valid default"),
    }
}

/// A valid HELLO of an authenticated aead local node, on queue 2 of 4.
fn hello_aead() -> HelloBody {
    HelloBody {
        queue_index: 2,
        security: security(Protection::Aead, true),
        key_share: [0x5a; KEY_SHARE_LEN],
        ..hello()
    }
}

fn grant() -> HelloReplyBody {
    HelloReplyBody {
        version: 2,
        perms: PERM_READ | PERM_WRITE,
        features: FEATURE_FLUSH | FEATURE_FUA,
        size: 1 << 30,
        logical_block_size: 512,
        physical_block_size: 4096,
        max_io_bytes: 1 << 20,
        queues: 4,
        queue_depth: 128,
        export: name(b"export"),
        proof: [0; AUTH_LEN],
    }
}

/// Encodes `h`, lets `f` corrupt the bytes, and decodes the result.
fn decode_patched(h: Header, f: impl FnOnce(&mut [u8; HEADER_LEN])) -> Result<Header, ProtoError> {
    let mut b = h.encode();
    f(&mut b);
    Header::decode(&b)
}

/// Applies `f` to a valid request of `op` and validates it against `limits`.
fn check(op: Op, limits: &Limits, f: impl FnOnce(&mut Header)) -> Result<(), Status> {
    let mut h = request(op);
    f(&mut h);
    validate_request(&h, limits)
}

/// xorshift64: a tiny deterministic pseudo-random generator.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

// ---- constants and enums ---------------------------------------------------

#[test]
fn constants() {
    assert_eq!(MAGIC.to_be_bytes(), *b"DST1");
    assert_eq!((VERSION, MIN_VERSION), (2, 2));
    assert_eq!(HEADER_LEN, 40);
    assert_eq!(HELLO_LEN, 264);
    assert_eq!(HELLO_REPLY_LEN, 144);
    assert_eq!(REPLY_PROVEN_LEN, 112);
    assert_eq!(CHALLENGE_LEN, 96);
    assert_eq!((AUTH_LEN, KEY_SHARE_LEN), (32, 32));
    assert_eq!((ALG_LEN, NAME_LEN), (64, 64));
    assert_eq!((SEQ_LEN, CRC_LEN, AEAD_TAG_LEN), (8, 4, 16));
    assert_eq!(LABEL_PAIR_KEY, b"DST2 pair key");
    assert_eq!(LABEL_LOCAL_PROOF, b"DST2 local proof");
    assert_eq!(LABEL_EXPORT_PROOF, b"DST2 export proof");
    assert_eq!(LABEL_KEY_LE, b"DST2 key local-to-export");
    assert_eq!(LABEL_KEY_EL, b"DST2 key export-to-local");
    assert_eq!(MAX_IO_BYTES_LIMIT, 4 * 1024 * 1024);
    assert_eq!((FLAG_FUA, FLAG_NO_UNMAP, FLAGS_ALL), (1, 2, 3));
    assert_eq!(
        (
            FEATURE_FLUSH,
            FEATURE_FUA,
            FEATURE_DISCARD,
            FEATURE_WRITE_ZEROES,
            FEATURE_RESIZE
        ),
        (1, 2, 4, 8, 16)
    );
    assert_eq!(FEATURES_ALL, 0x1f);
    assert_eq!((PERM_READ, PERM_WRITE, PERMS_ALL), (1, 2, 3));
    assert_eq!(MAX_SIZE, i64::MAX as u64);
}

#[test]
fn kind_values() {
    for (i, k) in ALL_KINDS.iter().enumerate() {
        assert_eq!(usize::from(k.as_u8()), i + 1);
    }
    for v in 0..=u8::MAX {
        match Kind::from_u8(v) {
            Some(k) => assert_eq!(k.as_u8(), v),
            None => assert!(v == 0 || v > 13, "{v}"),
        }
    }
}

#[test]
fn op_values_and_properties() {
    for (i, op) in ALL_OPS.iter().enumerate() {
        assert_eq!(usize::from(op.as_u8()), i + 1);
        assert!(!op.as_str().is_empty());
    }
    for v in 0..=u8::MAX {
        match Op::from_u8(v) {
            Some(op) => assert_eq!(op.as_u8(), v),
            None => assert!(v == 0 || v > 5, "{v}"),
        }
    }
    let writes: Vec<Op> = ALL_OPS.into_iter().filter(|o| o.needs_write()).collect();
    assert_eq!(writes, [Op::Write, Op::Discard, Op::WriteZeroes]);
    assert_eq!(Op::Read.feature() | Op::Write.feature(), 0);
    assert_eq!(Op::Flush.feature(), FEATURE_FLUSH);
    assert_eq!(Op::Discard.feature(), FEATURE_DISCARD);
    assert_eq!(Op::WriteZeroes.feature(), FEATURE_WRITE_ZEROES);
    assert_eq!(Op::WriteZeroes.allowed_flags(), FLAGS_ALL);
}

#[test]
fn status_values() {
    for (i, s) in ALL_STATUSES.iter().enumerate() {
        assert_eq!(s.as_u32() as usize, i);
        assert_eq!(Status::from_u32(s.as_u32()), Some(*s));
        assert!(!s.as_str().is_empty());
    }
    for v in [14, 15, 255, 256, 0x0100_0000, u32::MAX] {
        assert_eq!(Status::from_u32(v), None);
    }
}

#[test]
fn error_strings_distinct() {
    let names: std::collections::HashSet<&str> = ALL_ERRORS.iter().map(|e| e.as_str()).collect();
    assert_eq!(names.len(), ALL_ERRORS.len());
}

// ---- header encoding -------------------------------------------------------

#[test]
fn header_layout() {
    let h = Header {
        kind: Kind::IoReply,
        op: Some(Op::WriteZeroes),
        flags: 0x0003,
        status: Status::Busy,
        payload: 0x0102_0304,
        id: 0x1112_1314_1516_1718,
        offset: 0x2122_2324_2526_2728,
        length: 0x3132_3334,
    };
    let expected: [u8; HEADER_LEN] = [
        0x44, 0x53, 0x54, 0x31, // magic
        0x04, 0x05, 0x00, 0x03, // kind, op, flags
        0x00, 0x00, 0x00, 0x08, // status
        0x01, 0x02, 0x03, 0x04, // payload
        0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, // id
        0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, // offset
        0x31, 0x32, 0x33, 0x34, // length
        0x00, 0x00, 0x00, 0x00, // reserved
    ];
    assert_eq!(h.encode(), expected);
    // decode() caps the payload; the layout test uses a larger one.
    assert_eq!(Header::decode(&expected), Err(ProtoError::BadPayload));
    let small = Header {
        payload: 0x0304,
        ..h
    };
    assert_eq!(Header::decode(&small.encode()), Ok(small));
}

#[test]
fn round_trip_every_kind() {
    let mut headers = vec![
        Header::hello(),
        Header::ping(0),
        Header::ping(u64::MAX),
        Header::pong(0xdead_beef),
        Header::challenge(),
        Header::auth(),
        Header::key_update(),
        Header::release(),
        Header::resize(4096),
        Header::resize(MAX_SIZE),
        Header::discover(),
        Header::discover_reply(0),
        Header::discover_reply(3),
        Header::discover_reply(MAX_DISCOVERED as u32),
    ];
    headers.extend(ALL_STATUSES.map(Header::hello_reply));
    for op in ALL_OPS {
        let req = request(op);
        headers.push(req);
        headers.extend(ALL_STATUSES.map(|s| req.reply(s)));
    }
    headers.push(Header::io(
        Op::WriteZeroes,
        FLAGS_ALL,
        u64::MAX,
        u64::MAX,
        u32::MAX,
    ));
    headers.push(Header::io(Op::Write, FLAG_FUA, 1, 0, MAX_IO_BYTES_LIMIT));
    for k in ALL_KINDS {
        assert!(headers.iter().any(|h| h.kind == k), "{k:?} not covered");
    }
    for h in headers {
        let b = h.encode();
        assert_eq!(Header::decode(&b), Ok(h), "{h:?}");
        assert_eq!(Header::decode(&b).map(|d| d.encode()), Ok(b));
    }
}

#[test]
fn discover_shapes() {
    // DISCOVER: the 40-byte header alone, kind 12, every other field zero.
    let b = Header::discover().encode();
    let mut want = [0u8; HEADER_LEN];
    want[..4].copy_from_slice(&MAGIC.to_be_bytes());
    want[4] = 12;
    assert_eq!(b, want);
    let set_payload =
        |v: u32| move |b: &mut [u8; HEADER_LEN]| b[12..16].copy_from_slice(&v.to_be_bytes());
    let bad_payload = Err(ProtoError::BadPayload);
    assert_eq!(
        decode_patched(Header::discover(), set_payload(64)),
        bad_payload
    );
    assert_eq!(
        decode_patched(Header::discover(), |b| b[16] = 1),
        Err(ProtoError::Reserved)
    );
    assert_eq!(
        decode_patched(Header::discover(), |b| b[11] =
            Status::Invalid.as_u32() as u8),
        Err(ProtoError::BadStatus)
    );
    // DISCOVER_REPLY: whole names, at most MAX_DISCOVERED of them.
    let r = Header::discover_reply(2);
    assert_eq!((r.kind.as_u8(), r.payload), (13, 2 * NAME_LEN as u32));
    assert_eq!(
        Header::discover_reply(u32::MAX).payload,
        (MAX_DISCOVERED * NAME_LEN) as u32
    );
    let max = (MAX_DISCOVERED * NAME_LEN) as u32;
    for n in [0, 64, 128, max] {
        assert!(decode_patched(r, set_payload(n)).is_ok(), "{n}");
    }
    for n in [1, 63, 65, 100, max + 64, MAX_IO_BYTES_LIMIT] {
        assert_eq!(decode_patched(r, set_payload(n)), bad_payload, "{n}");
    }
    assert_eq!(decode_patched(r, |b| b[24] = 1), Err(ProtoError::Reserved));
}

#[test]
fn discovered_names_from_the_wire() {
    let mut f = [0u8; NAME_LEN];
    f[..5].copy_from_slice(b"alpha");
    let n = Name::from_wire(f);
    assert!(n.valid());
    assert_eq!(n.as_bytes(), b"alpha");
    assert_eq!(Some(n), Name::new(b"alpha"));
    let mut junk = f;
    junk[10] = b'x';
    assert!(!Name::from_wire(junk).valid(), "bytes after the NUL");
    let mut space = f;
    space[2] = b' ';
    assert!(!Name::from_wire(space).valid(), "a space");
    assert!(!Name::from_wire([b'a'; NAME_LEN]).valid(), "no NUL");
    assert!(Name::from_wire([0; NAME_LEN]).is_empty());
}

#[test]
fn constructors() {
    let hello = Header::hello();
    assert_eq!((hello.kind, hello.payload), (Kind::Hello, HELLO_LEN as u32));
    assert_eq!(
        Header::hello_reply(Status::Ok).payload,
        HELLO_REPLY_LEN as u32
    );
    assert_eq!(Header::hello_reply(Status::Version).payload, 0);
    assert_eq!(Header::io(Op::Write, 0, 1, 0, 512).payload, 512);
    assert_eq!(Header::io(Op::Read, 0, 1, 0, 512).payload, 0);
    let req = Header::io(Op::Read, 0, 9, 4096, 512);
    let ok = req.reply(Status::Ok);
    assert_eq!(ok.kind, Kind::IoReply);
    assert_eq!(
        (ok.id, ok.op, ok.offset, ok.length),
        (9, Some(Op::Read), 4096, 512)
    );
    assert_eq!(ok.payload, 512);
    assert_eq!(req.reply(Status::IoError).payload, 0);
    let w = Header::io(Op::Write, FLAG_FUA, 3, 0, 512);
    assert_eq!(w.reply(Status::Ok).payload, 0);
    assert_eq!(w.reply(Status::Ok).flags, FLAG_FUA);
    assert_eq!(Header::ping(5).id, 5);
    let ku = Header::key_update();
    assert_eq!(
        (ku.kind, ku.op, ku.flags, ku.status, ku.payload),
        (Kind::KeyUpdate, None, 0, Status::Ok, 0)
    );
    assert_eq!((ku.id, ku.offset, ku.length), (0, 0, 0));
    assert_eq!(Kind::KeyUpdate.as_u8(), 9);
    assert_eq!(Header::pong(5).kind, Kind::Pong);
    let rs = Header::resize(1 << 40);
    assert_eq!(
        (rs.kind, rs.op, rs.flags, rs.status, rs.payload),
        (Kind::Resize, None, 0, Status::Ok, 0)
    );
    assert_eq!((rs.id, rs.offset, rs.length), (0, 1 << 40, 0));
    assert_eq!(Kind::Resize.as_u8(), 11);
}

// ---- RESIZE -----------------------------------------------------------------

#[test]
fn resize_decode() {
    // The size travels in `offset`; every other field is as for KEY_UPDATE.
    let b = Header::resize(MAX_SIZE).encode();
    assert_eq!(&b[4..5], &[11]);
    assert_eq!(&b[24..32], &MAX_SIZE.to_be_bytes());
    assert_eq!(Header::decode(&b), Ok(Header::resize(MAX_SIZE)));
    let with = |at: usize, v: u8| {
        let mut c = b;
        c[at] = v;
        Header::decode(&c)
    };
    assert_eq!(with(19, 1), Err(ProtoError::Reserved)); // id
    assert_eq!(with(35, 1), Err(ProtoError::Reserved)); // length
    assert_eq!(with(15, 1), Err(ProtoError::BadPayload)); // payload
    assert_eq!(with(11, 1), Err(ProtoError::BadStatus)); // status
    assert_eq!(with(5, 1), Err(ProtoError::BadOp));
    assert_eq!(with(7, 1), Err(ProtoError::BadFlags));
    // Other kinds still need offset 0.
    let mut ku = Header::key_update().encode();
    ku[31] = 1;
    assert_eq!(Header::decode(&ku), Err(ProtoError::Reserved));
}

#[test]
fn resize_validation() {
    let limits = Limits {
        size: 1 << 30,
        logical_block: 4096,
        max_io: 1 << 20,
        perms: PERMS_ALL,
        features: FEATURES_ALL,
    };
    let check = |size: u64, l: &Limits| validate_resize(&Header::resize(size), l);
    assert_eq!(check(2 << 30, &limits), Ok(2 << 30));
    // Smaller than the grant is the local node's decision, not an error.
    assert_eq!(check(4096, &limits), Ok(4096));
    let max = MAX_SIZE / 4096 * 4096;
    assert_eq!(check(max, &limits), Ok(max));
    assert_eq!(check(0, &limits), Err(ProtoError::BadHello));
    assert_eq!(check((1 << 30) + 512, &limits), Err(ProtoError::BadHello));
    assert_eq!(check(max + 4096, &limits), Err(ProtoError::BadHello));
    assert_eq!(check(u64::MAX, &limits), Err(ProtoError::BadHello));
    // Only with the feature granted, and only a RESIZE.
    let without = Limits {
        features: FEATURES_ALL & !FEATURE_RESIZE,
        ..limits
    };
    assert_eq!(check(2 << 30, &without), Err(ProtoError::BadKind));
    assert_eq!(
        validate_resize(&Header::ping(2 << 30), &limits),
        Err(ProtoError::BadKind)
    );
}

// ---- header decoding failures ----------------------------------------------

#[test]
fn decode_bad_magic() {
    for i in 0..4 {
        let r = decode_patched(Header::ping(1), |b| b[i] ^= 0x20);
        assert_eq!(r, Err(ProtoError::BadMagic));
    }
    assert_eq!(Header::decode(&[0; HEADER_LEN]), Err(ProtoError::BadMagic));
}

#[test]
fn decode_bad_kind() {
    for k in [0, 14, 0x80, 0xff] {
        assert_eq!(
            decode_patched(Header::ping(1), |b| b[4] = k),
            Err(ProtoError::BadKind)
        );
    }
}

#[test]
fn decode_bad_op() {
    for op in [0, 6, 0xff] {
        for h in [request(Op::Read), request(Op::Read).reply(Status::Ok)] {
            let r = decode_patched(h, |b| b[5] = op);
            assert_eq!(r, Err(ProtoError::BadOp), "op {op} {h:?}");
        }
    }
    for h in [
        Header::hello(),
        Header::hello_reply(Status::Ok),
        Header::ping(1),
        Header::pong(1),
        Header::challenge(),
        Header::auth(),
        Header::key_update(),
    ] {
        assert_eq!(
            decode_patched(h, |b| b[5] = 1),
            Err(ProtoError::BadOp),
            "{h:?}"
        );
    }
}

#[test]
fn decode_bad_flags() {
    for bit in 2..16 {
        let r = decode_patched(request(Op::WriteZeroes), |b| {
            b[6..8].copy_from_slice(&(1u16 << bit).to_be_bytes())
        });
        assert_eq!(r, Err(ProtoError::BadFlags), "bit {bit}");
    }
    for h in [
        Header::hello(),
        Header::hello_reply(Status::Ok),
        Header::ping(1),
        Header::pong(1),
        Header::challenge(),
        Header::auth(),
        Header::key_update(),
    ] {
        assert_eq!(
            decode_patched(h, |b| b[7] = 1),
            Err(ProtoError::BadFlags),
            "{h:?}"
        );
    }
}

#[test]
fn decode_bad_status() {
    for v in [14u32, 0x100, u32::MAX] {
        for h in [
            request(Op::Read),
            request(Op::Read).reply(Status::Ok),
            Header::pong(1),
        ] {
            let r = decode_patched(h, |b| b[8..12].copy_from_slice(&v.to_be_bytes()));
            assert_eq!(r, Err(ProtoError::BadStatus), "{v} {h:?}");
        }
    }
    // No status is carried by HELLO, PING, PONG, CHALLENGE, AUTH and
    // KEY_UPDATE.
    for h in [
        Header::hello(),
        Header::ping(1),
        Header::pong(1),
        Header::challenge(),
        Header::auth(),
        Header::key_update(),
    ] {
        assert_eq!(
            decode_patched(h, |b| b[11] = 1),
            Err(ProtoError::BadStatus),
            "{h:?}"
        );
    }
    // An IO request with a defined non-zero status decodes; the export answers
    // INVALID (validate_request).
    let r = decode_patched(request(Op::Read), |b| b[11] = 1).map(|h| h.status);
    assert_eq!(r, Ok(Status::IoError));
}

#[test]
fn decode_reserved() {
    for i in 36..40 {
        for h in [
            request(Op::Read),
            Header::hello(),
            Header::pong(1),
            Header::auth(),
        ] {
            assert_eq!(
                decode_patched(h, |b| b[i] = 1),
                Err(ProtoError::Reserved),
                "{i}"
            );
        }
    }
}

#[test]
fn decode_payload_limit() {
    let mut w = Header::io(Op::Write, 0, 1, 0, MAX_IO_BYTES_LIMIT);
    assert!(Header::decode(&w.encode()).is_ok());
    w.payload = MAX_IO_BYTES_LIMIT + 1;
    assert_eq!(Header::decode(&w.encode()), Err(ProtoError::BadPayload));
    let mut r = request(Op::Read).reply(Status::Ok);
    r.payload = u32::MAX;
    assert_eq!(Header::decode(&r.encode()), Err(ProtoError::BadPayload));
}

#[test]
fn decode_fixed_shapes() {
    let set_payload =
        |v: u32| move |b: &mut [u8; HEADER_LEN]| b[12..16].copy_from_slice(&v.to_be_bytes());
    let bad_payload = Err(ProtoError::BadPayload);
    // HELLO: 136 bytes only (32 was the size before the security fields).
    for n in [0, 32, 48, 135, 137, 4096] {
        assert_eq!(
            decode_patched(Header::hello(), set_payload(n)),
            bad_payload,
            "{n}"
        );
    }
    // HELLO_REPLY OK: 80 bytes only (48 was the size before the proof).
    for n in [0, 32, 48, 79, 81, 136] {
        assert_eq!(
            decode_patched(Header::hello_reply(Status::Ok), set_payload(n)),
            bad_payload,
            "{n}"
        );
    }
    for s in [
        Status::Version,
        Status::Mismatch,
        Status::AuthFailed,
        Status::NotAllowed,
    ] {
        for n in [48, 80] {
            assert_eq!(
                decode_patched(Header::hello_reply(s), set_payload(n)),
                bad_payload,
                "{s:?} {n}"
            );
        }
        assert_eq!(
            Header::decode(&Header::hello_reply(s).encode()),
            Ok(Header::hello_reply(s))
        );
    }
    // CHALLENGE: 96 bytes only; AUTH: 32 bytes only (version 1's 32-byte
    // CHALLENGE included).
    for n in [0, 16, 32, 64, 95, 97, 128] {
        assert_eq!(
            decode_patched(Header::challenge(), set_payload(n)),
            bad_payload,
            "CHALLENGE {n}"
        );
    }
    for n in [0, 16, 31, 33, 64, 96] {
        assert_eq!(
            decode_patched(Header::auth(), set_payload(n)),
            bad_payload,
            "AUTH {n}"
        );
    }
    assert_eq!(decode_patched(Header::ping(1), set_payload(8)), bad_payload);
    assert_eq!(decode_patched(Header::pong(1), set_payload(1)), bad_payload);
    for n in [1, 8, 32, 4096] {
        assert_eq!(
            decode_patched(Header::key_update(), set_payload(n)),
            bad_payload,
            "KEY_UPDATE {n}"
        );
    }

    let reserved = Err(ProtoError::Reserved);
    for h in [
        Header::hello(),
        Header::hello_reply(Status::Ok),
        Header::hello_reply(Status::Busy),
        Header::challenge(),
        Header::auth(),
        Header::key_update(),
    ] {
        assert_eq!(decode_patched(h, |b| b[23] = 1), reserved, "id {h:?}");
        assert_eq!(decode_patched(h, |b| b[16] = 0x80), reserved, "id {h:?}");
    }
    for h in [
        Header::hello(),
        Header::hello_reply(Status::Ok),
        Header::ping(1),
        Header::pong(1),
        Header::challenge(),
        Header::auth(),
        Header::key_update(),
    ] {
        assert_eq!(decode_patched(h, |b| b[31] = 1), reserved, "offset {h:?}");
        assert_eq!(decode_patched(h, |b| b[35] = 1), reserved, "length {h:?}");
    }
}

// ---- request validation ----------------------------------------------------

#[test]
fn valid_requests_accepted() {
    for op in ALL_OPS {
        assert_eq!(validate_request(&request(op), &limits()), Ok(()), "{op:?}");
    }
    let l = limits();
    let ok = |h: Header| assert_eq!(validate_request(&h, &l), Ok(()), "{h:?}");
    ok(Header::io(Op::Write, FLAG_FUA, 1, 0, l.max_io));
    ok(Header::io(Op::Read, 0, 1, l.size - 512, 512));
    // DISCARD and WRITE_ZEROES may exceed max_io.
    let big = Limits { size: 1 << 40, ..l };
    let r = validate_request(&Header::io(Op::Discard, FLAG_FUA, 1, 0, 0xffff_fe00), &big);
    assert_eq!(r, Ok(()));
    ok(Header::io(Op::WriteZeroes, FLAGS_ALL, 1, 512, 1 << 29));
}

#[test]
fn request_not_io() {
    let l = limits();
    for h in [
        request(Op::Read).reply(Status::Ok),
        Header::hello(),
        Header::ping(1),
        Header {
            op: None,
            ..request(Op::Read)
        },
    ] {
        assert_eq!(validate_request(&h, &l), Err(Status::Invalid), "{h:?}");
    }
}

#[test]
fn request_status_not_zero() {
    for s in &ALL_STATUSES[1..] {
        assert_eq!(
            check(Op::Read, &limits(), |h| h.status = *s),
            Err(Status::Invalid)
        );
    }
}

#[test]
fn request_flags_per_op() {
    let l = limits();
    for op in ALL_OPS {
        for flags in 0..=FLAGS_ALL {
            let r = check(op, &l, |h| h.flags = flags);
            let allowed = flags & !op.allowed_flags() == 0;
            assert_eq!(r.is_ok(), allowed, "{op:?} {flags}");
            if !allowed {
                assert_eq!(r, Err(Status::Invalid));
            }
        }
    }
    assert_eq!(
        check(Op::Read, &l, |h| h.flags = FLAG_FUA),
        Err(Status::Invalid)
    );
    assert_eq!(
        check(Op::Write, &l, |h| h.flags = FLAG_NO_UNMAP),
        Err(Status::Invalid)
    );
    assert_eq!(
        check(Op::Flush, &l, |h| h.flags = FLAG_FUA),
        Err(Status::Invalid)
    );
}

#[test]
fn request_payload() {
    let l = limits();
    assert_eq!(
        check(Op::Write, &l, |h| h.payload = 0),
        Err(Status::Invalid)
    );
    assert_eq!(
        check(Op::Write, &l, |h| h.payload -= 512),
        Err(Status::Invalid)
    );
    assert_eq!(
        check(Op::Write, &l, |h| h.payload += 512),
        Err(Status::Invalid)
    );
    for op in [Op::Read, Op::Flush, Op::Discard, Op::WriteZeroes] {
        assert_eq!(
            check(op, &l, |h| h.payload = 512),
            Err(Status::Invalid),
            "{op:?}"
        );
    }
}

#[test]
fn request_length() {
    let l = limits();
    for op in [Op::Read, Op::Write, Op::Discard, Op::WriteZeroes] {
        let r = check(op, &l, |h| {
            h.length = 0;
            h.payload = 0;
        });
        assert_eq!(r, Err(Status::Invalid), "{op:?}");
    }
    let over = l.max_io + 512;
    assert_eq!(
        check(Op::Read, &l, |h| h.length = over),
        Err(Status::Invalid)
    );
    let r = check(Op::Write, &l, |h| {
        h.length = over;
        h.payload = over;
    });
    assert_eq!(r, Err(Status::Invalid));
    assert_eq!(check(Op::Discard, &l, |h| h.length = over), Ok(()));
    assert_eq!(check(Op::WriteZeroes, &l, |h| h.length = over), Ok(()));
    assert_eq!(
        check(Op::Flush, &l, |h| h.length = 512),
        Err(Status::Invalid)
    );
    assert_eq!(
        check(Op::Flush, &l, |h| h.offset = 512),
        Err(Status::Invalid)
    );
}

#[test]
fn request_alignment() {
    let l = Limits {
        logical_block: 4096,
        ..limits()
    };
    for op in [Op::Read, Op::Write, Op::Discard, Op::WriteZeroes] {
        assert_eq!(
            check(op, &l, |h| h.offset += 512),
            Err(Status::Invalid),
            "{op:?}"
        );
        assert_eq!(
            check(op, &l, |h| h.offset += 1),
            Err(Status::Invalid),
            "{op:?}"
        );
        let r = check(op, &l, |h| {
            h.length -= 512;
            if op == Op::Write {
                h.payload = h.length;
            }
        });
        assert_eq!(r, Err(Status::Invalid), "{op:?}");
        assert_eq!(check(op, &l, |_| {}), Ok(()), "{op:?}");
    }
    // A zero block size in the limits is a caller bug; it must not panic.
    let zero = Limits {
        logical_block: 0,
        ..limits()
    };
    assert_eq!(check(Op::Read, &zero, |_| {}), Err(Status::Invalid));
}

#[test]
fn request_features() {
    let none = Limits {
        features: 0,
        ..limits()
    };
    for op in [Op::Flush, Op::Discard, Op::WriteZeroes] {
        assert_eq!(
            check(op, &none, |_| {}),
            Err(Status::NotSupported),
            "{op:?}"
        );
        let only = Limits {
            features: op.feature(),
            ..limits()
        };
        assert_eq!(check(op, &only, |_| {}), Ok(()), "{op:?}");
    }
    assert_eq!(check(Op::Read, &none, |_| {}), Ok(()));
    assert_eq!(check(Op::Write, &none, |_| {}), Ok(()));
    assert_eq!(
        check(Op::Write, &none, |h| h.flags = FLAG_FUA),
        Err(Status::NotSupported)
    );
    let no_fua = Limits {
        features: FEATURES_ALL & !FEATURE_FUA,
        ..limits()
    };
    for op in [Op::Write, Op::Discard, Op::WriteZeroes] {
        let r = check(op, &no_fua, |h| h.flags = FLAG_FUA);
        assert_eq!(r, Err(Status::NotSupported), "{op:?}");
    }
    // NO_UNMAP needs no feature of its own.
    assert_eq!(
        check(Op::WriteZeroes, &no_fua, |h| h.flags = FLAG_NO_UNMAP),
        Ok(())
    );
}

#[test]
fn request_permissions() {
    let ro = Limits {
        perms: PERM_READ,
        ..limits()
    };
    for op in ALL_OPS {
        let expected = if op.needs_write() {
            Err(Status::Permission)
        } else {
            Ok(())
        };
        assert_eq!(check(op, &ro, |_| {}), expected, "{op:?}");
    }
    let none = Limits {
        perms: 0,
        ..limits()
    };
    for op in ALL_OPS {
        assert_eq!(check(op, &none, |_| {}), Err(Status::Permission), "{op:?}");
    }
    let wo = Limits {
        perms: PERM_WRITE,
        ..limits()
    };
    assert_eq!(check(Op::Write, &wo, |_| {}), Ok(()));
    assert_eq!(check(Op::Read, &wo, |_| {}), Err(Status::Permission));
}

#[test]
fn request_range() {
    let l = limits();
    for op in [Op::Read, Op::Write, Op::Discard, Op::WriteZeroes] {
        assert_eq!(
            check(op, &l, |h| h.offset = l.size - 4096),
            Ok(()),
            "{op:?}"
        );
        assert_eq!(
            check(op, &l, |h| h.offset = l.size - 512),
            Err(Status::Range),
            "{op:?}"
        );
        assert_eq!(
            check(op, &l, |h| h.offset = l.size),
            Err(Status::Range),
            "{op:?}"
        );
        assert_eq!(
            check(op, &l, |h| h.offset = 1 << 40),
            Err(Status::Range),
            "{op:?}"
        );
    }
    let empty = Limits {
        size: 0,
        ..limits()
    };
    assert_eq!(
        check(Op::Read, &empty, |h| h.offset = 0),
        Err(Status::Range)
    );
    assert_eq!(check(Op::Flush, &empty, |_| {}), Ok(()));
}

#[test]
fn request_overflow_near_u64_max() {
    // size u64::MAX: only the overflow check can refuse these.
    let huge = Limits {
        size: u64::MAX,
        ..limits()
    };
    let top = u64::MAX - 511; // aligned to 512
    assert_eq!(top % 512, 0);
    for op in [Op::Read, Op::Write, Op::Discard, Op::WriteZeroes] {
        assert_eq!(
            check(op, &huge, |h| h.offset = top),
            Err(Status::Range),
            "{op:?}"
        );
    }
    let r = check(Op::Discard, &huge, |h| {
        h.offset = top;
        h.length = 0xffff_fe00;
    });
    assert_eq!(r, Err(Status::Range));
    // Ends exactly at u64::MAX + 1 - 512 + 512: overflow by one.
    assert_eq!(
        check(Op::Read, &huge, |h| {
            h.offset = top;
            h.length = 512;
        }),
        Err(Status::Range)
    );
    // The last block below the overflow is in range.
    assert_eq!(
        check(Op::Read, &huge, |h| {
            h.offset = top - 512;
            h.length = 512;
        }),
        Ok(())
    );
}

#[test]
fn request_check_order() {
    // INVALID before NOT_SUPPORTED before PERMISSION before RANGE.
    let ro_nofeat = Limits {
        perms: PERM_READ,
        features: 0,
        ..limits()
    };
    let r = check(Op::Discard, &ro_nofeat, |h| {
        h.offset = u64::MAX - 511;
        h.payload = 512;
    });
    assert_eq!(r, Err(Status::Invalid));
    let r = check(Op::Discard, &ro_nofeat, |h| h.offset = u64::MAX - 511);
    assert_eq!(r, Err(Status::NotSupported));
    let ro = Limits {
        perms: PERM_READ,
        ..limits()
    };
    assert_eq!(
        check(Op::Discard, &ro, |h| h.offset = u64::MAX - 511),
        Err(Status::Permission)
    );
    assert_eq!(
        check(Op::Discard, &limits(), |h| h.offset = u64::MAX - 511),
        Err(Status::Range)
    );
}

// ---- reply validation ------------------------------------------------------

#[test]
fn valid_replies_accepted() {
    for op in ALL_OPS {
        let req = request(op);
        for s in ALL_STATUSES {
            assert_eq!(validate_reply(&req.reply(s), &req), Ok(()), "{op:?} {s:?}");
        }
    }
}

#[test]
fn reply_payload() {
    let read = request(Op::Read);
    let ok = read.reply(Status::Ok);
    assert_eq!(ok.payload, read.length);
    let bad = Err(ProtoError::BadPayload);
    assert_eq!(validate_reply(&Header { payload: 0, ..ok }, &read), bad);
    assert_eq!(validate_reply(&Header { payload: 512, ..ok }, &read), bad);
    let err = read.reply(Status::IoError);
    assert_eq!(
        validate_reply(
            &Header {
                payload: read.length,
                ..err
            },
            &read
        ),
        bad
    );
    for op in [Op::Write, Op::Flush, Op::Discard, Op::WriteZeroes] {
        let req = request(op);
        let r = Header {
            payload: 4096,
            ..req.reply(Status::Ok)
        };
        assert_eq!(validate_reply(&r, &req), bad, "{op:?}");
    }
}

#[test]
fn reply_mismatch() {
    let req = Header::io(Op::Write, FLAG_FUA, 42, 8192, 4096);
    let ok = req.reply(Status::Ok);
    let bad = Err(ProtoError::BadReply);
    assert_eq!(
        validate_reply(
            &Header {
                kind: Kind::Io,
                ..ok
            },
            &req
        ),
        bad
    );
    assert_eq!(
        validate_reply(
            &Header {
                kind: Kind::Pong,
                ..ok
            },
            &req
        ),
        bad
    );
    assert_eq!(validate_reply(&Header { id: 43, ..ok }, &req), bad);
    assert_eq!(
        validate_reply(
            &Header {
                op: Some(Op::Read),
                ..ok
            },
            &req
        ),
        bad
    );
    assert_eq!(validate_reply(&Header { op: None, ..ok }, &req), bad);
    assert_eq!(validate_reply(&Header { flags: 0, ..ok }, &req), bad);
    assert_eq!(validate_reply(&Header { offset: 0, ..ok }, &req), bad);
    assert_eq!(validate_reply(&Header { length: 512, ..ok }, &req), bad);
    // The "request" must be an IO request.
    assert_eq!(validate_reply(&ok, &ok), bad);
}

// ---- handshake -------------------------------------------------------------

#[test]
fn negotiation() {
    assert_eq!(negotiate_version(2, 2), Some(2));
    assert_eq!(negotiate_version(1, 7), Some(2));
    assert_eq!(negotiate_version(0, 2), Some(2));
    assert_eq!(negotiate_version(0, u32::MAX), Some(2));
    // Version 1 is not spoken any more.
    assert_eq!(negotiate_version(1, 1), None);
    assert_eq!(negotiate_version(0, 0), None);
    assert_eq!(negotiate_version(3, 4), None);
    assert_eq!(negotiate_version(2, 1), None);
    assert_eq!(negotiate_version(u32::MAX, u32::MAX), None);
}

#[test]
fn hello_layout_and_round_trip() {
    let h = HelloBody {
        min_version: 0x0102_0304,
        max_version: 0x0506_0708,
        features: 0x1112_1314_1516_1718,
        max_io_bytes: 0x2122_2324,
        queues: 0x3132,
        queue_depth: 0x3334,
        client_id: 0x4142_4344_4546_4748,
        queue_index: 0x5152,
        epoch: 0x6162_6364,
        read_only: true,
        security: Security {
            protection: Protection::Aead,
            auth: true,
            alg: Name::new(b"rfc7539(chacha20,poly1305)").expect("valid name"),
        },
        key_share: core::array::from_fn(|i| 0x80 + i as u8),
        client: name(b"the.client"),
        export: name(b"the:export"),
    };
    let b = h.encode();
    assert_eq!(
        b[..24],
        [
            1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x21, 0x22,
            0x23, 0x24, 0x31, 0x32, 0x33, 0x34
        ]
    );
    assert_eq!(b[24..32], [0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48]);
    // protection 3, flags (auth 1 | read-only 2), queue_index, epoch.
    assert_eq!(b[32..40], [3, 3, 0x51, 0x52, 0x61, 0x62, 0x63, 0x64]);
    assert_eq!(&b[40..66], b"rfc7539(chacha20,poly1305)");
    assert_eq!(b[66..104], [0; 38]);
    let share: Vec<u8> = (0x80..0xa0).collect();
    assert_eq!(b[104..136], share[..]);
    assert_eq!(&b[136..146], b"the.client");
    assert_eq!(b[146..200], [0; 54]);
    assert_eq!(&b[200..210], b"the:export");
    assert_eq!(b[210..264], [0; 54]);
    assert_eq!(HelloBody::decode(&b), Ok(h));
    assert_eq!(HelloBody::decode(&hello().encode()), Ok(hello()));
    assert_eq!(HelloBody::decode(&hello_aead().encode()), Ok(hello_aead()));
    // Without security everything from byte 32 to the client name is zero.
    assert_eq!(hello().encode()[32..136], [0; 104]);
    // Unknown flags are refused.
    let mut b = hello().encode();
    b[33] = 4;
    assert_eq!(HelloBody::decode(&b), Err(ProtoError::BadHello));
}

#[test]
fn holder_layout_and_round_trip() {
    let h = HolderBody {
        client: name(b"node-a"),
        addr_len: 4,
        port: 0x1234,
        addr: [10, 9, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    };
    let b = h.encode();
    assert_eq!(&b[..6], b"node-a");
    assert_eq!(b[64..70], [4, 0, 0x12, 0x34, 10, 9]);
    assert_eq!(HolderBody::decode(&b), Ok(h));
    let mut bad = b;
    bad[64] = 5;
    assert_eq!(HolderBody::decode(&bad), Err(ProtoError::BadHello));
    assert_eq!(
        Header::hello_reply(Status::InUse).payload,
        HOLDER_LEN as u32
    );
    let hb = Header::hello_reply(Status::InUse).encode();
    assert_eq!(
        Header::decode(&hb).map(|h| h.payload),
        Ok(HOLDER_LEN as u32)
    );
    let rb = Header::release().encode();
    assert_eq!(Header::decode(&rb).map(|h| h.kind), Ok(Kind::Release));
}

#[test]
fn hello_validate() {
    assert_eq!(hello().validate(), Ok(()));
    let ok = |f: fn(&mut HelloBody)| {
        let mut h = hello();
        f(&mut h);
        assert_eq!(h.validate(), Ok(()), "{h:?}");
    };
    ok(|h| h.max_io_bytes = 0);
    ok(|h| h.max_io_bytes = MAX_IO_BYTES_LIMIT);
    ok(|h| h.max_io_bytes = 3 * 4096);
    ok(|h| h.queues = 0);
    ok(|h| h.queue_depth = 0);
    ok(|h| h.features = u64::MAX); // unknown wanted features are ignored
    ok(|h| h.max_version = 9);
    let bad = |f: fn(&mut HelloBody)| {
        let mut h = hello();
        f(&mut h);
        assert_eq!(h.validate(), Err(ProtoError::BadHello), "{h:?}");
    };
    bad(|h| h.min_version = 0);
    bad(|h| h.min_version = 3);
    bad(|h| h.max_io_bytes = 100);
    bad(|h| h.max_io_bytes = 4096 + 512);
    bad(|h| h.max_io_bytes = MAX_IO_BYTES_LIMIT + 4096);
    bad(|h| h.queues = MAX_QUEUES + 1);
    bad(|h| h.queue_depth = MAX_QUEUE_DEPTH + 1);
}

#[test]
fn hello_validate_queue_index() {
    let with = |queues: u16, queue_index: u16| HelloBody {
        queues,
        queue_index,
        ..hello()
    };
    assert_eq!(with(4, 0).validate(), Ok(()));
    assert_eq!(with(4, 3).validate(), Ok(()));
    assert_eq!(with(1, 0).validate(), Ok(()));
    assert_eq!(with(0, 0).validate(), Ok(()));
    assert_eq!(with(MAX_QUEUES, MAX_QUEUES - 1).validate(), Ok(()));
    for (q, i) in [(4, 4), (4, 5), (1, 1), (0, 1), (0, u16::MAX), (64, 64)] {
        assert_eq!(with(q, i).validate(), Err(ProtoError::BadHello), "{q} {i}");
    }
}

#[test]
fn hello_validate_security() {
    assert_eq!(hello_aead().validate(), Ok(()));
    for p in ALL_PROTECTIONS {
        for auth in [false, true] {
            let h = HelloBody {
                security: security(p, auth),
                key_share: if auth {
                    [7; KEY_SHARE_LEN]
                } else {
                    [0; KEY_SHARE_LEN]
                },
                ..hello()
            };
            // hmac and aead need a key; none and crc32c may have one.
            let ok = auth || !p.needs_key();
            assert_eq!(h.validate().is_ok(), ok, "{p:?} {auth}");
        }
    }
    let bad = |f: fn(&mut HelloBody)| {
        let mut h = hello_aead();
        f(&mut h);
        assert_eq!(h.validate(), Err(ProtoError::BadHello), "{h:?}");
    };
    // A key share without a key.
    bad(|h| {
        h.security = security(Protection::Crc32c, false);
        h.key_share[31] = 1;
    });
    // hmac and aead need an algorithm; none and crc32c take none.
    bad(|h| h.security.alg = Name::EMPTY);
    bad(|h| {
        h.security = security(Protection::None, true);
        h.security.alg = Name::new(b"gcm(aes)").expect("valid name");
    });
    bad(|h| {
        h.security = security(Protection::Crc32c, false);
        h.security.alg = Name::new(b"crc32c").expect("valid name");
        h.key_share = [0; KEY_SHARE_LEN];
    });
    // hmac without a key.
    bad(|h| {
        h.security = security(Protection::Hmac, false);
        h.key_share = [0; KEY_SHARE_LEN];
    });
    // Any algorithm name is accepted here (the export compares it with its own).
    let mut h = hello_aead();
    h.security.alg = Name::new(b"x").expect("valid name");
    assert_eq!(h.validate(), Ok(()));
    // A key share of small order is not checked here: only the X25519
    // exchange finds it (an all-zero DH), and refuses it.
    h.key_share = [0; KEY_SHARE_LEN];
    assert_eq!(h.validate(), Ok(()));
}

#[test]
fn hello_validate_identities() {
    let bad = |f: &dyn Fn(&mut [u8; HELLO_LEN])| {
        let mut b = hello_aead().encode();
        f(&mut b);
        let h = HelloBody::decode(&b).expect("decodes");
        assert_eq!(h.validate(), Err(ProtoError::BadHello), "{h:?}");
    };
    for at in [136usize, 200] {
        bad(&|b| b[at..at + 64].fill(b'a')); // no NUL at all
        bad(&|b| b[at + 63] = b'a'); // a non-NUL last byte
        bad(&|b| b[at + 40] = b'z'); // something after the padding
        bad(&|b| b[at + 1] = b' '); // a space
        bad(&|b| b[at + 1] = 0x7f); // not printable
        bad(&|b| b[at + 1] = 0xe9); // not ASCII
    }
    bad(&|b| b[136..200].fill(0)); // no client identity
                                   // An empty export name asks for any export; a full-length name is fine.
    let mut h = hello_aead();
    h.export = Name::EMPTY;
    assert_eq!(h.validate(), Ok(()));
    h.client = name(&[b'c'; NAME_LEN - 1]);
    h.export = name(&[b'~'; NAME_LEN - 1]);
    assert_eq!(h.validate(), Ok(()));
    assert_eq!(HelloBody::decode(&h.encode()), Ok(h));
}

#[test]
fn challenge_layout_and_decode() {
    let c = ChallengeBody {
        export: name(b"host:dev"),
        key_share: core::array::from_fn(|i| 0x40 + i as u8),
    };
    let b = c.encode();
    assert_eq!(&b[..8], b"host:dev");
    assert_eq!(b[8..64], [0; 56]);
    let share: Vec<u8> = (0x40..0x60).collect();
    assert_eq!(b[64..], share[..]);
    assert_eq!(ChallengeBody::decode(&b), Ok(c));
    let bad = |f: &dyn Fn(&mut [u8; CHALLENGE_LEN])| {
        let mut b = b;
        f(&mut b);
        assert_eq!(ChallengeBody::decode(&b), Err(ProtoError::BadHello));
    };
    bad(&|b| b[..64].fill(0)); // empty
    bad(&|b| b[63] = b'x'); // no NUL
    bad(&|b| b[20] = b'x'); // after the padding
    bad(&|b| b[2] = b'\t'); // not printable
                            // The key share is taken as it is; the exchange judges it.
    let mut z = b;
    z[64..].fill(0);
    assert!(ChallengeBody::decode(&z).is_ok());
}

#[test]
fn hello_decode_security_fields() {
    let b = hello_aead().encode();
    let decode = |f: &dyn Fn(&mut [u8; HELLO_LEN])| {
        let mut b = b;
        f(&mut b);
        HelloBody::decode(&b)
    };
    // Bytes 36..40 are the epoch: any value decodes.
    for i in 36..40 {
        assert!(decode(&|b| b[i] = 1).is_ok(), "{i}");
    }
    // Protection mode 0..=3 only; flags: auth 1, read-only 2.
    for v in [4u8, 5, 0x80, 0xff] {
        assert_eq!(
            decode(&|b| b[32] = v),
            Err(ProtoError::BadHello),
            "mode {v}"
        );
    }
    for v in 0..4u8 {
        let h = decode(&|b| b[32] = v).expect("known mode");
        assert_eq!(h.security.protection.as_u8(), v);
    }
    for v in [4u8, 5, 0xff] {
        assert_eq!(
            decode(&|b| b[33] = v),
            Err(ProtoError::BadHello),
            "flags {v}"
        );
    }
    assert!(decode(&|b| b[33] = 2).expect("read-only").read_only);
    assert!(!decode(&|b| b[33] = 0).expect("auth 0").security.auth);
    // queue_index is big-endian at 34.
    let h = decode(&|b| b[34..36].copy_from_slice(&[1, 2])).expect("decodes");
    assert_eq!(h.queue_index, 0x0102);
    // The algorithm field: decode keeps it as it is, validate checks it.
    let bad_alg = |f: &dyn Fn(&mut [u8; HELLO_LEN])| {
        let h = decode(f).expect("decodes");
        assert_eq!(h.validate(), Err(ProtoError::BadHello), "{h:?}");
    };
    bad_alg(&|b| b[40..104].fill(b'a')); // no NUL at all
    bad_alg(&|b| b[103] = b'a'); // a non-NUL last byte
    bad_alg(&|b| b[60] = b'z'); // something after the padding
    bad_alg(&|b| b[41] = b' '); // a space in the name
    bad_alg(&|b| b[41] = 0x7f); // not printable
    bad_alg(&|b| b[41] = 0xc3); // not ASCII
    bad_alg(&|b| b[40] = 0); // empty name for aead
    let h = decode(&|b| {
        b[40..103].fill(b'a');
        b[103] = 0;
    })
    .expect("decodes");
    assert_eq!(h.security.alg.as_bytes().len(), ALG_LEN - 1);
    assert_eq!(h.validate(), Ok(()));
    // The key share is taken as it is.
    let h = decode(&|b| b[104..136].fill(0xee)).expect("decodes");
    assert_eq!(h.key_share, [0xee; KEY_SHARE_LEN]);
}

#[test]
fn protection_values() {
    for (i, p) in ALL_PROTECTIONS.iter().enumerate() {
        assert_eq!(usize::from(p.as_u8()), i);
        assert_eq!(Protection::from_u8(p.as_u8()), Some(*p));
    }
    for v in 4..=u8::MAX {
        assert_eq!(Protection::from_u8(v), None, "{v}");
    }
    let names: Vec<&str> = ALL_PROTECTIONS.iter().map(|p| p.as_str()).collect();
    assert_eq!(names, ["none", "crc32c", "hmac", "aead"]);
    let keyed: Vec<bool> = ALL_PROTECTIONS.iter().map(|p| p.needs_key()).collect();
    assert_eq!(keyed, [false, false, true, true]);
    let algs: Vec<bool> = ALL_PROTECTIONS.iter().map(|p| p.has_alg()).collect();
    assert_eq!(algs, [false, false, true, true]);
    let defaults: Vec<&str> = ALL_PROTECTIONS.iter().map(|p| p.default_alg()).collect();
    assert_eq!(defaults, ["", "", "hmac(sha256)", "gcm(aes)"]);
    let trailers: Vec<usize> = ALL_PROTECTIONS.iter().map(|p| p.trailer_len(32)).collect();
    assert_eq!(trailers, [0, 4, 40, 24]);
    assert_eq!(Protection::Hmac.trailer_len(64), 72);
    assert_eq!(Protection::Aead.trailer_len(64), 24);
}

#[test]
fn alg_names() {
    let gcm = Name::new(b"gcm(aes)").expect("valid");
    assert_eq!(gcm.as_bytes(), b"gcm(aes)");
    assert!(!gcm.is_empty());
    assert_eq!(&gcm.padded()[..8], b"gcm(aes)");
    assert_eq!(gcm.padded()[8..], [0; ALG_LEN - 8]);
    assert!(Name::EMPTY.is_empty());
    assert_eq!(Name::EMPTY.as_bytes(), b"");
    assert_eq!(Name::new(b""), Some(Name::EMPTY));
    assert!(Name::new(&[b'a'; ALG_LEN - 1]).is_some());
    assert_eq!(Name::new(&[b'a'; ALG_LEN]), None);
    for bad in [
        &b"gcm aes"[..],
        b"gcm\0aes",
        b"\x01",
        b"caf\xc3\xa9",
        b"tab\t",
    ] {
        assert_eq!(Name::new(bad), None, "{bad:?}");
    }
}

#[test]
fn security_matches() {
    let aead = security(Protection::Aead, true);
    assert!(aead.valid());
    assert!(aead.matches(&aead));
    assert!(Security::NONE.matches(&Security::NONE));
    assert!(Security::NONE.valid());
    // Each of mode, key use and algorithm must be equal.
    assert!(!aead.matches(&security(Protection::Hmac, true)));
    assert!(!Security::NONE.matches(&security(Protection::None, true)));
    assert!(!security(Protection::None, true).matches(&Security::NONE));
    assert!(!Security::NONE.matches(&security(Protection::Crc32c, false)));
    let chacha = Security {
        alg: Name::new(b"rfc7539(chacha20,poly1305)").expect("valid"),
        ..aead
    };
    assert!(chacha.valid());
    assert!(!aead.matches(&chacha));
    assert!(!chacha.matches(&aead));
    // Names are compared without their padding; case matters.
    let upper = Security {
        alg: Name::new(b"GCM(AES)").expect("valid"),
        ..aead
    };
    assert!(!aead.matches(&upper));
    let prefix = Security {
        alg: Name::new(b"gcm(aes").expect("valid"),
        ..aead
    };
    assert!(!aead.matches(&prefix));
    // Every pair of distinct settings differs.
    let all: Vec<Security> = ALL_PROTECTIONS
        .iter()
        .flat_map(|&p| [security(p, false), security(p, true)])
        .collect();
    for (i, a) in all.iter().enumerate() {
        for (j, b) in all.iter().enumerate() {
            assert_eq!(a.matches(b), i == j, "{a:?} {b:?}");
        }
    }
}

#[test]
fn hello_reply_layout_and_round_trip() {
    let g = HelloReplyBody {
        version: 0x0102_0304,
        perms: 0x0506_0708,
        features: 0x1112_1314_1516_1718,
        size: 0x2122_2324_2526_2728,
        logical_block_size: 0x3132_3334,
        physical_block_size: 0x3536_3738,
        max_io_bytes: 0x4142_4344,
        queues: 0x4546,
        queue_depth: 0x4748,
        export: name(b"the:export"),
        proof: core::array::from_fn(|i| 0xc0 + i as u8),
    };
    let b = g.encode();
    // version, perms: 01..08; features 11..18; size 21..28; block sizes
    // 31..38; max_io, queues, queue_depth 41..48.
    let expected: Vec<u8> = [1, 0x11, 0x21, 0x31, 0x41]
        .iter()
        .flat_map(|&s| s..s + 8)
        .collect();
    assert_eq!(b[..40], expected[..]);
    assert_eq!(b[40..48], [0; 8]);
    assert_eq!(&b[48..58], b"the:export");
    assert_eq!(b[58..112], [0; 54]);
    let proof: Vec<u8> = (0xc0..0xe0).collect();
    assert_eq!(b[112..], proof[..]);
    assert_eq!(g.proven_bytes()[..], b[..112]);
    assert_eq!(HelloReplyBody::decode(&b), Ok(g));
    assert_eq!(HelloReplyBody::decode(&grant().encode()), Ok(grant()));
    for i in 40..48 {
        let mut b = grant().encode();
        b[i] = 1;
        assert_eq!(HelloReplyBody::decode(&b), Err(ProtoError::Reserved), "{i}");
    }
}

#[test]
fn hello_reply_validate_accepts_honest_grants() {
    let h = hello();
    assert_eq!(grant().validate(&h), Ok(()));
    let ok = |f: fn(&mut HelloReplyBody), h: &HelloBody| {
        let mut g = grant();
        f(&mut g);
        assert_eq!(g.validate(h), Ok(()), "{g:?}");
    };
    ok(|g| g.perms = PERM_READ, &h);
    ok(|g| g.features = 0, &h);
    ok(|g| g.features = FEATURES_ALL, &h);
    ok(|g| g.size = 0, &h);
    ok(|g| g.size = MAX_SIZE - 511, &h);
    ok(|g| g.logical_block_size = 4096, &h);
    ok(|g| g.physical_block_size = 512, &h);
    ok(|g| g.physical_block_size = 65536, &h);
    ok(|g| g.max_io_bytes = 4096, &h);
    ok(|g| g.queues = 1, &h);
    ok(|g| g.queue_depth = 1, &h);
    // Wishes of 0 leave the whole range to the export.
    let open = HelloBody {
        max_io_bytes: 0,
        queues: 0,
        queue_depth: 0,
        ..hello()
    };
    ok(|g| g.max_io_bytes = MAX_IO_BYTES_LIMIT, &open);
    // The proof is checked by the local node with the key, not by validate.
    ok(|g| g.proof = [0xff; AUTH_LEN], &h);
    ok(|g| g.queues = MAX_QUEUES, &open);
    ok(|g| g.queue_depth = MAX_QUEUE_DEPTH, &open);
}

#[test]
fn hello_reply_validate_rejects_lies() {
    let h = hello();
    let bad = |f: fn(&mut HelloReplyBody), err: ProtoError| {
        let mut g = grant();
        f(&mut g);
        assert_eq!(g.validate(&h), Err(err), "{g:?}");
    };
    use ProtoError::{BadHello, BadVersion};
    bad(|g| g.version = 0, BadVersion);
    bad(|g| g.version = 1, BadVersion);
    bad(|g| g.version = 3, BadVersion);
    bad(|g| g.perms = 0, BadHello);
    bad(|g| g.perms = PERM_WRITE, BadHello);
    bad(|g| g.perms = PERMS_ALL | 4, BadHello);
    bad(|g| g.features = 1 << 5, BadHello);
    bad(|g| g.size = (1 << 30) + 100, BadHello); // not a multiple of 512
    bad(|g| g.size = 4096 + 512 * 3 + 1, BadHello);
    bad(|g| g.size = MAX_SIZE + 1, BadHello); // 2^63, a multiple of 512
    bad(|g| g.logical_block_size = 0, BadHello);
    bad(|g| g.logical_block_size = 1000, BadHello); // not a power of two
    bad(|g| g.logical_block_size = 1536, BadHello);
    bad(|g| g.logical_block_size = 256, BadHello);
    bad(|g| g.logical_block_size = 8192, BadHello);
    bad(|g| g.physical_block_size = 0, BadHello);
    bad(|g| g.physical_block_size = 6144, BadHello);
    bad(|g| g.physical_block_size = 1 << 17, BadHello);
    bad(
        |g| {
            g.logical_block_size = 4096;
            g.physical_block_size = 512; // below logical
        },
        BadHello,
    );
    bad(|g| g.max_io_bytes = 0, BadHello);
    bad(|g| g.max_io_bytes = 512, BadHello);
    bad(|g| g.max_io_bytes = 4096 + 512, BadHello);
    bad(|g| g.max_io_bytes = MAX_IO_BYTES_LIMIT + 4096, BadHello);
    bad(|g| g.max_io_bytes = 2 << 20, BadHello); // above the 1 MiB wanted
    bad(|g| g.queues = 0, BadHello);
    bad(|g| g.queues = 5, BadHello); // above the 4 wanted
    bad(|g| g.queue_depth = 0, BadHello);
    bad(|g| g.queue_depth = 129, BadHello); // above the 128 wanted
                                            // Above the absolute limits even when the local node left the choice open.
    let open = HelloBody {
        max_io_bytes: 0,
        queues: 0,
        queue_depth: 0,
        client_id: 0,
        ..hello()
    };
    for g in [
        HelloReplyBody {
            queues: MAX_QUEUES + 1,
            ..grant()
        },
        HelloReplyBody {
            queue_depth: MAX_QUEUE_DEPTH + 1,
            ..grant()
        },
        HelloReplyBody {
            max_io_bytes: 8 << 20,
            ..grant()
        },
    ] {
        assert_eq!(g.validate(&open), Err(BadHello), "{g:?}");
    }
    // Features must be a subset of the wanted ones.
    let few = HelloBody {
        features: FEATURE_FLUSH,
        client_id: 0,
        ..hello()
    };
    assert_eq!(grant().validate(&few), Err(BadHello));
    // The version must lie in the offered range.
    let v3 = HelloBody {
        min_version: 3,
        max_version: 4,
        client_id: 0,
        ..hello()
    };
    assert_eq!(grant().validate(&v3), Err(BadVersion));
    // The export's identity: well formed, not empty, and the one asked for.
    bad(|g| g.export = Name::EMPTY, BadHello);
    let mut g = grant();
    let mut b = g.encode();
    b[48 + 20] = b'x'; // after the name's padding started
    g = HelloReplyBody::decode(&b).expect("decodes");
    assert_eq!(g.validate(&h), Err(BadHello));
    let asking = HelloBody {
        export: name(b"export"),
        ..hello()
    };
    assert_eq!(grant().validate(&asking), Ok(()));
    let other = HelloBody {
        export: name(b"exporT"),
        ..hello()
    };
    assert_eq!(grant().validate(&other), Err(ProtoError::WrongExport));
}

#[test]
fn limits_from_grant() {
    let g = grant();
    assert_eq!(
        g.limits(),
        Limits {
            size: g.size,
            logical_block: g.logical_block_size,
            max_io: g.max_io_bytes,
            perms: g.perms,
            features: g.features,
        }
    );
}

// ---- robustness ------------------------------------------------------------

#[test]
fn random_headers_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let l = limits();
    let tiny = Limits {
        size: 0,
        logical_block: 0,
        max_io: 0,
        perms: 0,
        features: 0,
    };
    let mut decoded = 0;
    for i in 0..100_000 {
        let mut b = [0u8; HEADER_LEN];
        rng.fill(&mut b);
        // Three quarters of the buffers get the magic and small field values,
        // so that decoding gets past the first checks.
        if i % 4 != 0 {
            b[..4].copy_from_slice(&MAGIC.to_be_bytes());
            b[4] %= 8;
            b[5] %= 7;
            b[6] = 0;
            b[7] %= 4;
            b[8..11].fill(0);
            b[11] %= 10;
            b[12] = 0;
            b[13] %= 0x48;
            if i % 3 == 0 {
                b[36..40].fill(0);
            }
            if i % 5 == 0 {
                let near_max = u64::MAX - u64::from(b[24]);
                b[24..32].copy_from_slice(&near_max.to_be_bytes());
            }
        }
        let Ok(h) = Header::decode(&b) else { continue };
        decoded += 1;
        // A header that decodes re-encodes to the same bytes.
        assert_eq!(h.encode(), b);
        let _ = validate_request(&h, &l);
        let _ = validate_request(&h, &tiny);
        if h.kind == Kind::IoReply {
            let req = Header {
                kind: Kind::Io,
                payload: 0,
                status: Status::Ok,
                ..h
            };
            let _ = validate_reply(&h, &req);
        }
        let _ = validate_reply(&h, &h);
    }
    assert!(decoded > 1000, "only {decoded} random headers decoded");
}

#[test]
fn random_bodies_never_panic() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    for _ in 0..20_000 {
        let mut hb = [0u8; HELLO_LEN];
        rng.fill(&mut hb);
        let mut rb = [0u8; HELLO_REPLY_LEN];
        rng.fill(&mut rb);
        let hello = HelloBody::decode(&hb);
        let _ = hello.map(|h| h.validate());
        hb[32] %= 4;
        hb[33] %= 2;
        hb[36..40].fill(0);
        rb[40..48].fill(0);
        let mut cb = [0u8; CHALLENGE_LEN];
        rng.fill(&mut cb);
        let _ = ChallengeBody::decode(&cb);
        let hello = HelloBody::decode(&hb).expect("reserved zero, known mode");
        assert_eq!(hello.encode(), hb);
        let _ = hello.validate();
        let _ = negotiate_version(hello.min_version, hello.max_version);
        let grant = HelloReplyBody::decode(&rb).expect("reserved zero");
        assert_eq!(grant.encode(), rb);
        let _ = grant.validate(&hello);
    }
}

// ---- the examples of Documentation/protocol.md -----------------------------

/// The protocol document: its examples are what this tool prints.
const DOC: &str = include_str!("../../../Documentation/protocol.md");

#[test]
fn doc_examples_match() {
    use crate::examples::*;
    let start = DOC.find("## Examples").expect("an Examples section");
    let end = DOC
        .find("## Where this is implemented")
        .expect("the next section");
    let section = &DOC[start..end];
    for (what, dump) in [
        ("HELLO", hello_dump()),
        ("WRITE", write_dump()),
        ("CHALLENGE", challenge_dump()),
        ("AUTH", auth_dump()),
        ("HELLO_REPLY", reply_dump()),
        ("key schedule values", values_text()),
        ("crc32c PING", crc_ping_dump()),
        ("hmac PING", hmac_ping_dump()),
        ("aead PING", aead_ping_dump()),
    ] {
        assert!(section.contains(&dump), "{what} example:\n{dump}");
    }
}

/// Every value of the example handshake, computed once with Python's
/// `hmac`, `hashlib` and `cryptography` (X25519PrivateKey, AESGCM): an
/// implementation independent of this one and of the module's.
#[test]
fn example_vectors_pinned() {
    use crate::examples::*;
    let hex = crate::examples::hex;
    let v = example_values();
    let pinned = [
        (
            "E_c",
            hex(&v.e_c_pub),
            "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f",
        ),
        (
            "E_s",
            hex(&v.e_s_pub),
            "358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254",
        ),
        (
            "PSK_pair",
            hex(&v.psk_pair),
            "c6f9771a93b72c2092be89b109ae65be354c7f368b46639b993f4fc4b8874c42",
        ),
        (
            "DH",
            hex(&v.dh),
            "9663aa1da97e848a914a436d04163dfbb89178f107f1b5b77ed3854203382854",
        ),
        (
            "PRK",
            hex(&v.prk),
            "395d5343e3666cd3cc5364edd1f931798c17bd6cbb24b1e681891f6752df63f8",
        ),
        (
            "TH1",
            hex(&v.th1),
            "147f25b51347b5b4b08d7574b29e594ed556523261e202a2aae3da6fdb1ed1ae",
        ),
        (
            "proof_local",
            hex(&v.proof_local),
            "5d3cddfdca8942d4a7f539db726caf5f1b832bf293dbf0e827d290bffde40a20",
        ),
        (
            "TH2",
            hex(&v.th2),
            "2ed1a6b2ab64817ca8e727bd0a714f949222890e48317633a05a6fda84a0084a",
        ),
        (
            "proof_export",
            hex(&v.proof_export),
            "b9789b0491bbe0856e59f54ec6e7c2be209371e4aac5998c9c2f89179920b56b",
        ),
        (
            "K_le",
            hex(&v.keys.le),
            "f50f0f929a602b9f691920946da74551ecb4b40614c02a3cc8ea08605d4e7d57",
        ),
        (
            "K_el",
            hex(&v.keys.el),
            "d396215a17b4611dbe2f876ca2443db927c2cbda1268367f512f584ddcd9a9ef",
        ),
        (
            "crc32c trailer",
            hex(&sealed_ping(Protection::Crc32c, 0)[HEADER_LEN..]),
            "5e8c23a9",
        ),
        (
            "hmac trailer",
            hex(&sealed_ping(Protection::Hmac, 0)[HEADER_LEN..]),
            "0000000000000000edc11e7ec8942b1d79eb18dfb85d88a1eba2a56dcd75a3911c6bd3809445114f",
        ),
        (
            "aead trailer",
            hex(&sealed_ping(Protection::Aead, 1)[HEADER_LEN..]),
            "00000000000000014572d8fe873aa8b72918df9373c52c80",
        ),
    ];
    for (what, got, want) in &pinned {
        assert_eq!(got, want, "{what}");
    }
    // The messages carry them where the layout says.
    let (_, hello) = example_hello();
    assert_eq!(hex(&hello.encode()[104..136]), pinned[0].2);
    assert_eq!(hex(&example_challenge().encode()[64..]), pinned[1].2);
    assert_eq!(hex(&example_reply().encode()[112..]), pinned[8].2);
}
