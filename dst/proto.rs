// SPDX-License-Identifier: GPL-2.0

//! The DST wire protocol, version 2: the one definition shared by the module
//! and by the userspace tools, which include this file with
//! `#[path = "../../../dst/proto.rs"] mod proto;`.
//!
//! `Documentation/protocol.md` is the prose specification. The byte layout is
//! defined here, once; the document must match this file.
//!
//! Every message is a [`HEADER_LEN`]-byte [`Header`] followed by
//! [`Header::payload`] bytes. All multi-byte fields are big-endian.
//!
//! Rules for this file, because it is compiled both into the kernel crate and
//! into userspace programs: only `core`, no allocation, no `unsafe`, and no
//! panic on any input. Decoders take fixed-size arrays and read them with
//! helpers that cannot panic; arithmetic on wire values is checked.

// Each side (export node, local node, userspace peers) uses only part of the
// definitions, so unused items are expected in every build.
#![allow(dead_code)]

/// Magic number at the start of every header: `"DST1"` in ASCII.
pub(crate) const MAGIC: u32 = 0x4453_5431;

/// The newest wire protocol version this code speaks.
pub(crate) const VERSION: u32 = 2;

/// The oldest wire protocol version this code speaks. Version 1's handshake
/// bound no identities and had no forward secrecy; it is not spoken any more.
pub(crate) const MIN_VERSION: u32 = 2;

/// Size of the message header in bytes.
pub(crate) const HEADER_LEN: usize = 40;

/// Size of the HELLO body ([`HelloBody`]) in bytes.
pub(crate) const HELLO_LEN: usize = 264;

/// Size of the HELLO_REPLY body ([`HelloReplyBody`]) in bytes.
pub(crate) const HELLO_REPLY_LEN: usize = 144;

/// Size of the part of a HELLO_REPLY body the export's proof covers: all
/// but the proof.
pub(crate) const REPLY_PROVEN_LEN: usize = HELLO_REPLY_LEN - AUTH_LEN;

/// Size of the body of a HELLO_REPLY refusing with [`Status::InUse`]
/// ([`HolderBody`]) in bytes.
pub(crate) const HOLDER_LEN: usize = NAME_LEN + 20;

/// Most export names a DISCOVER_REPLY carries.
pub(crate) const MAX_DISCOVERED: usize = 64;

/// Size of the CHALLENGE payload ([`ChallengeBody`]) in bytes.
pub(crate) const CHALLENGE_LEN: usize = NAME_LEN + KEY_SHARE_LEN;

/// Size of the AUTH payload (the local node's proof) and of the export's
/// proof in bytes.
pub(crate) const AUTH_LEN: usize = 32;

/// Size of an X25519 public key, the ephemeral key share each side sends.
pub(crate) const KEY_SHARE_LEN: usize = 32;

/// Size of a name field (algorithm, export and client identities); names
/// are NUL-padded and at most `NAME_LEN - 1` bytes long.
pub(crate) const NAME_LEN: usize = 64;

/// Size of the algorithm name field of a HELLO.
pub(crate) const ALG_LEN: usize = NAME_LEN;

/// Size of the explicit sequence number at the start of an hmac or aead
/// trailer.
pub(crate) const SEQ_LEN: usize = 8;

/// Size of a crc32c trailer.
pub(crate) const CRC_LEN: usize = 4;

/// Size of an AEAD tag.
pub(crate) const AEAD_TAG_LEN: usize = 16;

/// HKDF salt that turns a key file into the pair key of one client and one
/// export (ASCII, no NUL); see `Documentation/protocol.md`, "Security".
pub(crate) const LABEL_PAIR_KEY: &[u8] = b"DST2 pair key";
/// Label of the local node's proof.
pub(crate) const LABEL_LOCAL_PROOF: &[u8] = b"DST2 local proof";
/// Label of the export's proof.
pub(crate) const LABEL_EXPORT_PROOF: &[u8] = b"DST2 export proof";
/// Label of the local-to-export session key.
pub(crate) const LABEL_KEY_LE: &[u8] = b"DST2 key local-to-export";
/// Label of the export-to-local session key.
pub(crate) const LABEL_KEY_EL: &[u8] = b"DST2 key export-to-local";
/// Label of the key that replaces a session key after a KEY_UPDATE.
pub(crate) const LABEL_KEY_UPDATE: &[u8] = b"DST2 key update";

/// Largest `payload` of any message and largest grantable `max_io_bytes`
/// (4 MiB).
pub(crate) const MAX_IO_BYTES_LIMIT: u32 = 4 << 20;

/// Smallest grantable `max_io_bytes`; granted values are multiples of it.
pub(crate) const IO_BYTES_ALIGN: u32 = 4096;

/// Smallest logical block size an export may announce.
pub(crate) const MIN_BLOCK_SIZE: u32 = 512;

/// Largest logical block size an export may announce.
pub(crate) const MAX_LOGICAL_BLOCK_SIZE: u32 = 4096;

/// Largest physical block size an export may announce.
pub(crate) const MAX_PHYSICAL_BLOCK_SIZE: u32 = 65536;

/// Largest number of queues an export may grant.
pub(crate) const MAX_QUEUES: u16 = 64;

/// Largest queue depth an export may grant.
pub(crate) const MAX_QUEUE_DEPTH: u16 = 1024;

/// Largest device size an export may announce (`i64::MAX`, the limit of a
/// kernel `loff_t`).
pub(crate) const MAX_SIZE: u64 = u64::MAX >> 1;

/// IO flag: the data must be on stable storage before the reply is sent.
pub(crate) const FLAG_FUA: u16 = 1 << 0;

/// IO flag: WRITE_ZEROES must not deallocate the range.
pub(crate) const FLAG_NO_UNMAP: u16 = 1 << 1;

/// Every IO flag defined in this version.
pub(crate) const FLAGS_ALL: u16 = FLAG_FUA | FLAG_NO_UNMAP;

/// Feature: the export honours FLUSH.
pub(crate) const FEATURE_FLUSH: u64 = 1 << 0;

/// Feature: the export honours [`FLAG_FUA`].
pub(crate) const FEATURE_FUA: u64 = 1 << 1;

/// Feature: the export honours DISCARD.
pub(crate) const FEATURE_DISCARD: u64 = 1 << 2;

/// Feature: the export honours WRITE_ZEROES.
pub(crate) const FEATURE_WRITE_ZEROES: u64 = 1 << 3;

/// Feature: the export tells the local node when the device grows, with
/// [`Kind::Resize`]. A local node that does not ask for it never gets one
/// (and sees a grown export only when it reconnects).
pub(crate) const FEATURE_RESIZE: u64 = 1 << 4;

/// Every feature defined in this version.
pub(crate) const FEATURES_ALL: u64 =
    FEATURE_FLUSH | FEATURE_FUA | FEATURE_DISCARD | FEATURE_WRITE_ZEROES | FEATURE_RESIZE;

/// Permission: the local node may read.
pub(crate) const PERM_READ: u32 = 1 << 0;

/// Permission: the local node may write (WRITE, DISCARD, WRITE_ZEROES).
pub(crate) const PERM_WRITE: u32 = 1 << 1;

/// Every permission defined in this version.
pub(crate) const PERMS_ALL: u32 = PERM_READ | PERM_WRITE;

/// HELLO flag (body byte 33): a pre-shared key is used.
pub(crate) const HELLO_FLAG_AUTH: u8 = 1 << 0;

/// HELLO flag: the local node asks for reads only. It is then never the
/// export's writer, and never refused for another's holding it.
pub(crate) const HELLO_FLAG_READ_ONLY: u8 = 1 << 1;

/// Every HELLO flag defined in this version.
pub(crate) const HELLO_FLAGS_ALL: u8 = HELLO_FLAG_AUTH | HELLO_FLAG_READ_ONLY;

/// Message kind, header byte 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// Handshake request, local node to export, body [`HelloBody`].
    Hello = 1,
    /// Handshake answer, export to local node, body [`HelloReplyBody`] if OK.
    HelloReply = 2,
    /// IO request, local node to export.
    Io = 3,
    /// IO answer, export to local node.
    IoReply = 4,
    /// Liveness probe; `id` carries a cookie.
    Ping = 5,
    /// Answer to [`Kind::Ping`] with the same cookie.
    Pong = 6,
    /// Export to local node, when a key is used: the export's identity and
    /// key share, body [`ChallengeBody`].
    Challenge = 7,
    /// Local node to export: the local node's proof of the key.
    Auth = 8,
    /// Either way, after the handshake with a key: what the sender sends
    /// after this is protected with the next key, from sequence number 0.
    KeyUpdate = 9,
    /// Local node to export, after its device's last IO: the device is
    /// being deleted, so the export's write access it held is free for
    /// another local node.
    Release = 10,
    /// Export to local node, after the handshake and only if
    /// [`FEATURE_RESIZE`] was granted: the device's size is now `offset`
    /// bytes ([`validate_resize`]).
    Resize = 11,
    /// Local node (or a tool) to an export address, instead of a HELLO:
    /// which exports listen here for me?
    Discover = 12,
    /// Export to local node: the names (each a [`NAME_LEN`]-byte name
    /// field) of the exports listening there that the client's address may
    /// use; then the export closes.
    DiscoverReply = 13,
}

impl Kind {
    /// The kind with wire value `v`, if any.
    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Hello,
            2 => Self::HelloReply,
            3 => Self::Io,
            4 => Self::IoReply,
            5 => Self::Ping,
            6 => Self::Pong,
            7 => Self::Challenge,
            8 => Self::Auth,
            9 => Self::KeyUpdate,
            10 => Self::Release,
            11 => Self::Resize,
            12 => Self::Discover,
            13 => Self::DiscoverReply,
            _ => return None,
        })
    }

    /// The wire value.
    pub(crate) fn as_u8(self) -> u8 {
        self as u8
    }

    /// Whether messages of this kind carry an [`Op`].
    pub(crate) fn has_op(self) -> bool {
        matches!(self, Self::Io | Self::IoReply)
    }
}

/// IO operation, header byte 5 of IO and IO_REPLY messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Op {
    /// Read `length` bytes at `offset`.
    Read = 1,
    /// Write the `length` bytes of payload at `offset`.
    Write = 2,
    /// Make every write completed before this request durable.
    Flush = 3,
    /// Deallocate `length` bytes at `offset`; their content becomes undefined.
    Discard = 4,
    /// Make `length` bytes at `offset` read as zeroes.
    WriteZeroes = 5,
}

impl Op {
    /// The op with wire value `v`, if any.
    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Read,
            2 => Self::Write,
            3 => Self::Flush,
            4 => Self::Discard,
            5 => Self::WriteZeroes,
            _ => return None,
        })
    }

    /// The wire value.
    pub(crate) fn as_u8(self) -> u8 {
        self as u8
    }

    /// A name for log messages.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Flush => "flush",
            Self::Discard => "discard",
            Self::WriteZeroes => "write-zeroes",
        }
    }

    /// Whether the op modifies the device and so needs [`PERM_WRITE`].
    pub(crate) fn needs_write(self) -> bool {
        matches!(self, Self::Write | Self::Discard | Self::WriteZeroes)
    }

    /// The feature bit the op needs to be granted; 0 if none.
    pub(crate) fn feature(self) -> u64 {
        match self {
            Self::Read | Self::Write => 0,
            Self::Flush => FEATURE_FLUSH,
            Self::Discard => FEATURE_DISCARD,
            Self::WriteZeroes => FEATURE_WRITE_ZEROES,
        }
    }

    /// The IO flags a request with this op may carry.
    pub(crate) fn allowed_flags(self) -> u16 {
        match self {
            Self::Read | Self::Flush => 0,
            Self::Write | Self::Discard => FLAG_FUA,
            Self::WriteZeroes => FLAG_FUA | FLAG_NO_UNMAP,
        }
    }
}

/// Status of a reply, header bytes 8..12. Portable codes, not errno values;
/// each side maps them to its own error numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Status {
    /// Success; also the value every request carries.
    Ok = 0,
    /// The export's backing device failed the operation.
    IoError = 1,
    /// Malformed request.
    Invalid = 2,
    /// Not permitted, e.g. a write to a read-only export.
    Permission = 3,
    /// The range lies (partly) outside the device.
    Range = 4,
    /// The operation or flag was not granted in the handshake.
    NotSupported = 5,
    /// The backing device ran out of space.
    NoSpace = 6,
    /// No protocol version in common (HELLO_REPLY only).
    Version = 7,
    /// The export cannot take the request now; the local node may retry.
    Busy = 8,
    /// Protection mode, algorithm or key use differs (HELLO_REPLY only).
    Mismatch = 9,
    /// The local node's proof did not verify: the keys differ.
    AuthFailed = 10,
    /// The client's address is not on the export's allow-list.
    NotAllowed = 11,
    /// The export's identity is not the one the HELLO asks for (HELLO_REPLY
    /// only).
    UnknownExport = 12,
    /// Another local node holds the export's write access (HELLO_REPLY
    /// only, with a [`HolderBody`] naming it).
    InUse = 13,
}

impl Status {
    /// The status with wire value `v`, if any.
    pub(crate) fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Ok,
            1 => Self::IoError,
            2 => Self::Invalid,
            3 => Self::Permission,
            4 => Self::Range,
            5 => Self::NotSupported,
            6 => Self::NoSpace,
            7 => Self::Version,
            8 => Self::Busy,
            9 => Self::Mismatch,
            10 => Self::AuthFailed,
            11 => Self::NotAllowed,
            12 => Self::UnknownExport,
            13 => Self::InUse,
            _ => return None,
        })
    }

    /// The wire value.
    pub(crate) fn as_u32(self) -> u32 {
        self as u32
    }

    /// A name for log messages.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::IoError => "io error",
            Self::Invalid => "invalid request",
            Self::Permission => "permission denied",
            Self::Range => "out of range",
            Self::NotSupported => "not supported",
            Self::NoSpace => "no space",
            Self::Version => "no common protocol version",
            Self::Busy => "busy",
            Self::Mismatch => "protection mode, algorithm or key use differs from the export's",
            Self::AuthFailed => "authentication failed: the keys differ",
            Self::NotAllowed => "this address is not on the export's allow-list",
            Self::UnknownExport => "no export of the requested name at this address",
            Self::InUse => "another local node holds the export's write access",
        }
    }
}

/// Why a message was refused. Any of these closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProtoError {
    /// The header does not start with [`MAGIC`]: the stream is out of sync.
    BadMagic,
    /// Unknown message kind.
    BadKind,
    /// Unknown op, or an op on a kind that has none.
    BadOp,
    /// Unknown flag bits, or flags on a kind that has none.
    BadFlags,
    /// Unknown status code, or a non-zero status where none is allowed.
    BadStatus,
    /// The payload length does not fit the message.
    BadPayload,
    /// A reserved or unused field is not zero.
    Reserved,
    /// An IO_REPLY does not match the request it answers.
    BadReply,
    /// A HELLO or HELLO_REPLY body holds values out of range.
    BadHello,
    /// No version in common, or a chosen version outside the offered range.
    BadVersion,
    /// A trailer (checksum, MAC or AEAD tag) did not verify.
    BadTag,
    /// A sequence number is not the next one: the message was replayed or
    /// reordered, or one before it was dropped.
    OutOfOrder,
    /// The export's proof did not verify: its key differs.
    BadProof,
    /// The export is not the one asked for: its identity differs.
    WrongExport,
}

impl ProtoError {
    /// A description for log messages.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Self::BadMagic => "bad magic (stream out of sync)",
            Self::BadKind => "unknown message kind",
            Self::BadOp => "bad op for message kind",
            Self::BadFlags => "bad flags",
            Self::BadStatus => "bad status",
            Self::BadPayload => "bad payload length",
            Self::Reserved => "reserved or unused field not zero",
            Self::BadReply => "reply does not match request",
            Self::BadHello => "handshake value out of range",
            Self::BadVersion => "no common protocol version",
            Self::BadTag => "checksum or authentication tag mismatch",
            Self::OutOfOrder => {
                "message out of order: replayed, reordered or one before it dropped"
            }
            Self::BadProof => "the export's proof of the key is wrong: the keys differ",
            Self::WrongExport => "the export's identity is not the one asked for",
        }
    }
}

/// Reads `N` bytes at `at`; bytes beyond the end of `buf` read as zero (never
/// the case for the constant offsets used in this file).
fn get<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    for (d, s) in out.iter_mut().zip(buf.iter().skip(at)) {
        *d = *s;
    }
    out
}

/// Writes `bytes` at `at`; bytes beyond the end of `buf` are dropped (never the
/// case for the constant offsets used in this file).
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    for (d, s) in buf.iter_mut().skip(at).zip(bytes) {
        *d = *s;
    }
}

/// Reads the big-endian `u16` at `at`.
fn get_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(get(buf, at))
}

/// Reads the big-endian `u32` at `at`.
fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(get(buf, at))
}

/// Reads the big-endian `u64` at `at`.
fn get_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(get(buf, at))
}

/// Whether `v` is a multiple of `align`; false if `align` is 0.
fn aligned(v: u64, align: u64) -> bool {
    v.checked_rem(align) == Some(0)
}

/// Whether `v` is a power of two within `lo..=hi`.
fn pow2_within(v: u32, lo: u32, hi: u32) -> bool {
    v.is_power_of_two() && (lo..=hi).contains(&v)
}

/// Whether `v` is a valid granted `max_io_bytes`: a multiple of
/// [`IO_BYTES_ALIGN`] in [`IO_BYTES_ALIGN`]`..=`[`MAX_IO_BYTES_LIMIT`].
fn io_bytes_ok(v: u32) -> bool {
    (IO_BYTES_ALIGN..=MAX_IO_BYTES_LIMIT).contains(&v)
        && aligned(u64::from(v), u64::from(IO_BYTES_ALIGN))
}

/// Whether a granted value is at most the wanted one, 0 meaning no wish.
fn within(granted: u32, wanted: u32) -> bool {
    wanted == 0 || granted <= wanted
}

/// The body length of a HELLO_REPLY with `status`.
fn hello_reply_len(status: Status) -> u32 {
    match status {
        Status::Ok => HELLO_REPLY_LEN as u32,
        Status::InUse => HOLDER_LEN as u32,
        _ => 0,
    }
}

/// A decoded message header.
///
/// [`Header::decode`] guarantees the properties a receiver needs to frame the
/// stream (see its documentation); [`validate_request`] and
/// [`validate_reply`] check the meaning of IO messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// Message kind.
    pub(crate) kind: Kind,
    /// The op of IO and IO_REPLY messages; `None` for every other kind.
    pub(crate) op: Option<Op>,
    /// IO flags ([`FLAG_FUA`], [`FLAG_NO_UNMAP`]); 0 for non-IO kinds.
    pub(crate) flags: u16,
    /// Reply status; [`Status::Ok`] in requests.
    pub(crate) status: Status,
    /// Number of bytes following the header.
    pub(crate) payload: u32,
    /// Transaction id (IO), echoed in the reply; cookie (PING, PONG).
    pub(crate) id: u64,
    /// Byte offset on the device (IO); 0 otherwise.
    pub(crate) offset: u64,
    /// Byte length of the operation (IO); 0 for FLUSH and non-IO kinds.
    pub(crate) length: u32,
}

impl Header {
    /// A header of `kind` with every other field zero.
    fn blank(kind: Kind) -> Self {
        Header {
            kind,
            op: None,
            flags: 0,
            status: Status::Ok,
            payload: 0,
            id: 0,
            offset: 0,
            length: 0,
        }
    }

    /// The header of a HELLO; a [`HelloBody`] follows it.
    pub(crate) fn hello() -> Self {
        Header {
            payload: HELLO_LEN as u32,
            ..Self::blank(Kind::Hello)
        }
    }

    /// The header of a HELLO_REPLY; a [`HelloReplyBody`] follows it if
    /// `status` is [`Status::Ok`], a [`HolderBody`] if it is
    /// [`Status::InUse`], nothing otherwise.
    pub(crate) fn hello_reply(status: Status) -> Self {
        Header {
            status,
            payload: hello_reply_len(status),
            ..Self::blank(Kind::HelloReply)
        }
    }

    /// The header of a RELEASE.
    pub(crate) fn release() -> Self {
        Self::blank(Kind::Release)
    }

    /// The header of a DISCOVER.
    pub(crate) fn discover() -> Self {
        Self::blank(Kind::Discover)
    }

    /// The header of a DISCOVER_REPLY carrying `n` names (at most
    /// [`MAX_DISCOVERED`]).
    pub(crate) fn discover_reply(n: u32) -> Self {
        Header {
            payload: n.min(MAX_DISCOVERED as u32) * NAME_LEN as u32,
            ..Self::blank(Kind::DiscoverReply)
        }
    }

    /// The header of an IO request; for [`Op::Write`] the `length` bytes of
    /// data follow it.
    pub(crate) fn io(op: Op, flags: u16, id: u64, offset: u64, length: u32) -> Self {
        Header {
            op: Some(op),
            flags,
            payload: if op == Op::Write { length } else { 0 },
            id,
            offset,
            length,
            ..Self::blank(Kind::Io)
        }
    }

    /// The IO_REPLY answering this IO request with `status`: id, op, flags,
    /// offset and length are echoed; the payload is `length` for a successful
    /// READ (the data follows) and 0 otherwise.
    pub(crate) fn reply(&self, status: Status) -> Self {
        Header {
            kind: Kind::IoReply,
            status,
            payload: if self.op == Some(Op::Read) && status == Status::Ok {
                self.length
            } else {
                0
            },
            ..*self
        }
    }

    /// The header of a CHALLENGE; a [`ChallengeBody`] follows it.
    pub(crate) fn challenge() -> Self {
        Header {
            payload: CHALLENGE_LEN as u32,
            ..Self::blank(Kind::Challenge)
        }
    }

    /// The header of an AUTH; the [`AUTH_LEN`]-byte proof follows it.
    pub(crate) fn auth() -> Self {
        Header {
            payload: AUTH_LEN as u32,
            ..Self::blank(Kind::Auth)
        }
    }

    /// A KEY_UPDATE.
    pub(crate) fn key_update() -> Self {
        Self::blank(Kind::KeyUpdate)
    }

    /// A RESIZE announcing that the device is now `size` bytes.
    pub(crate) fn resize(size: u64) -> Self {
        Header {
            offset: size,
            ..Self::blank(Kind::Resize)
        }
    }

    /// A PING carrying `cookie`.
    pub(crate) fn ping(cookie: u64) -> Self {
        Header {
            id: cookie,
            ..Self::blank(Kind::Ping)
        }
    }

    /// A PONG answering the PING that carried `cookie`.
    pub(crate) fn pong(cookie: u64) -> Self {
        Header {
            id: cookie,
            ..Self::blank(Kind::Pong)
        }
    }

    /// The wire form of the header.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        put(&mut b, 0, &MAGIC.to_be_bytes());
        put(&mut b, 4, &[self.kind.as_u8()]);
        put(&mut b, 5, &[self.op.map_or(0, Op::as_u8)]);
        put(&mut b, 6, &self.flags.to_be_bytes());
        put(&mut b, 8, &self.status.as_u32().to_be_bytes());
        put(&mut b, 12, &self.payload.to_be_bytes());
        put(&mut b, 16, &self.id.to_be_bytes());
        put(&mut b, 24, &self.offset.to_be_bytes());
        put(&mut b, 32, &self.length.to_be_bytes());
        // Bytes 36..40 are reserved and stay zero.
        b
    }

    /// Parses a header. Checks, in this order, everything that does not need
    /// connection state:
    ///
    /// - magic ([`ProtoError::BadMagic`]) and kind ([`ProtoError::BadKind`]);
    /// - op: a known op for IO and IO_REPLY, 0 otherwise ([`ProtoError::BadOp`]);
    /// - flags: only known bits, and 0 for non-IO kinds ([`ProtoError::BadFlags`]);
    /// - status: a known code ([`ProtoError::BadStatus`]);
    /// - reserved bytes zero ([`ProtoError::Reserved`]);
    /// - payload at most [`MAX_IO_BYTES_LIMIT`] ([`ProtoError::BadPayload`]);
    /// - for every kind but IO and IO_REPLY, the exact shape of the kind:
    ///   status OK where no status is carried ([`ProtoError::BadStatus`]),
    ///   the body size as payload ([`ProtoError::BadPayload`]), unused `id`,
    ///   `offset` (all but RESIZE) and `length` zero
    ///   ([`ProtoError::Reserved`]).
    ///
    /// The meaning of IO and IO_REPLY fields is checked by
    /// [`validate_request`] and [`validate_reply`]; a header that decodes
    /// frames the stream, so the receiver can skip its payload and answer.
    pub(crate) fn decode(b: &[u8; HEADER_LEN]) -> Result<Self, ProtoError> {
        if get_u32(b, 0) != MAGIC {
            return Err(ProtoError::BadMagic);
        }
        let [kind, op] = get::<2>(b, 4);
        let kind = Kind::from_u8(kind).ok_or(ProtoError::BadKind)?;
        let op = if kind.has_op() {
            Some(Op::from_u8(op).ok_or(ProtoError::BadOp)?)
        } else if op != 0 {
            return Err(ProtoError::BadOp);
        } else {
            None
        };
        let flags = get_u16(b, 6);
        if flags & !FLAGS_ALL != 0 || (flags != 0 && !kind.has_op()) {
            return Err(ProtoError::BadFlags);
        }
        let status = Status::from_u32(get_u32(b, 8)).ok_or(ProtoError::BadStatus)?;
        if get_u32(b, 36) != 0 {
            return Err(ProtoError::Reserved);
        }
        let h = Header {
            kind,
            op,
            flags,
            status,
            payload: get_u32(b, 12),
            id: get_u64(b, 16),
            offset: get_u64(b, 24),
            length: get_u32(b, 32),
        };
        if h.payload > MAX_IO_BYTES_LIMIT {
            return Err(ProtoError::BadPayload);
        }
        let (payload, id_used) = match kind {
            Kind::Io | Kind::IoReply => return Ok(h),
            Kind::Hello => (HELLO_LEN as u32, false),
            Kind::HelloReply => (hello_reply_len(status), false),
            Kind::Ping | Kind::Pong => (0, true),
            Kind::KeyUpdate | Kind::Release | Kind::Resize | Kind::Discover => (0, false),
            Kind::DiscoverReply
                if h.payload as usize % NAME_LEN == 0
                    && h.payload as usize <= MAX_DISCOVERED * NAME_LEN =>
            {
                (h.payload, false)
            }
            Kind::DiscoverReply => return Err(ProtoError::BadPayload),
            Kind::Challenge => (CHALLENGE_LEN as u32, false),
            Kind::Auth => (AUTH_LEN as u32, false),
        };
        // RESIZE carries the new size in `offset`.
        let offset_used = kind == Kind::Resize;
        if kind != Kind::HelloReply && status != Status::Ok {
            return Err(ProtoError::BadStatus);
        }
        if h.payload != payload {
            return Err(ProtoError::BadPayload);
        }
        if (!id_used && h.id != 0) || (!offset_used && h.offset != 0) || h.length != 0 {
            return Err(ProtoError::Reserved);
        }
        Ok(h)
    }
}

/// Checks a RESIZE received by the local node after a handshake that
/// granted `limits`: [`FEATURE_RESIZE`] was granted
/// ([`ProtoError::BadKind`]: the export may not send it otherwise), and the
/// size is a multiple of the logical block size, not 0 and at most
/// [`MAX_SIZE`] ([`ProtoError::BadHello`], as a grant with such a size
/// would be). Returns the new size. Whether it grows the device is the
/// local node's business: a RESIZE may arrive after a later one that came
/// on another connection of the device.
pub(crate) fn validate_resize(h: &Header, limits: &Limits) -> Result<u64, ProtoError> {
    if h.kind != Kind::Resize || limits.features & FEATURE_RESIZE == 0 {
        return Err(ProtoError::BadKind);
    }
    let size = h.offset;
    if size == 0 || size > MAX_SIZE || !aligned(size, u64::from(limits.logical_block)) {
        return Err(ProtoError::BadHello);
    }
    Ok(size)
}

/// What the export granted in the handshake, against which every IO request
/// is checked by [`validate_request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Device size in bytes.
    pub(crate) size: u64,
    /// Logical block size: offsets and lengths are multiples of it.
    pub(crate) logical_block: u32,
    /// Largest READ or WRITE length.
    pub(crate) max_io: u32,
    /// Granted permissions ([`PERM_READ`], [`PERM_WRITE`]).
    pub(crate) perms: u32,
    /// Granted features (`FEATURE_*`).
    pub(crate) features: u64,
}

/// Checks an IO request received by the export against the granted
/// [`Limits`]. Returns the status to answer with if the request must not be
/// executed. The first failing check, in this order, decides:
///
/// 1. [`Status::Invalid`]: kind is not IO or has no op; status is not OK;
///    flags not allowed for the op ([`Op::allowed_flags`]); payload is not
///    `length` for WRITE or not 0 otherwise; FLUSH with non-zero offset or
///    length; READ or WRITE with length 0 or above `max_io`; DISCARD or
///    WRITE_ZEROES with length 0; offset or length not a multiple of the
///    logical block size.
/// 2. [`Status::NotSupported`]: the op needs a feature that was not granted,
///    or [`FLAG_FUA`] is set without [`FEATURE_FUA`].
/// 3. [`Status::Permission`]: WRITE, DISCARD or WRITE_ZEROES without
///    [`PERM_WRITE`]; READ or FLUSH without [`PERM_READ`].
/// 4. [`Status::Range`]: `offset + length` overflows or exceeds the size.
pub(crate) fn validate_request(h: &Header, limits: &Limits) -> Result<(), Status> {
    let op = match (h.kind, h.op) {
        (Kind::Io, Some(op)) => op,
        _ => return Err(Status::Invalid),
    };
    if h.status != Status::Ok || h.flags & !op.allowed_flags() != 0 {
        return Err(Status::Invalid);
    }
    let payload = if op == Op::Write { h.length } else { 0 };
    if h.payload != payload {
        return Err(Status::Invalid);
    }
    let length_ok = match op {
        Op::Flush => h.offset == 0 && h.length == 0,
        Op::Read | Op::Write => h.length != 0 && h.length <= limits.max_io,
        Op::Discard | Op::WriteZeroes => h.length != 0,
    };
    let block = u64::from(limits.logical_block);
    if !length_ok || !aligned(h.offset, block) || !aligned(u64::from(h.length), block) {
        return Err(Status::Invalid);
    }
    let feature = op.feature();
    if limits.features & feature != feature
        || (h.flags & FLAG_FUA != 0 && limits.features & FEATURE_FUA == 0)
    {
        return Err(Status::NotSupported);
    }
    let perm = if op.needs_write() {
        PERM_WRITE
    } else {
        PERM_READ
    };
    if limits.perms & perm == 0 {
        return Err(Status::Permission);
    }
    match h.offset.checked_add(u64::from(h.length)) {
        Some(end) if end <= limits.size => Ok(()),
        _ => Err(Status::Range),
    }
}

/// Checks an IO_REPLY received by the local node against the request it
/// answers (found by `id`): kind IO_REPLY, and id, op, flags, offset and
/// length equal to the request's ([`ProtoError::BadReply`]); payload `length`
/// for a successful READ and 0 otherwise ([`ProtoError::BadPayload`]).
pub(crate) fn validate_reply(h: &Header, request: &Header) -> Result<(), ProtoError> {
    if h.kind != Kind::IoReply
        || request.kind != Kind::Io
        || h.id != request.id
        || h.op != request.op
        || h.flags != request.flags
        || h.offset != request.offset
        || h.length != request.length
    {
        return Err(ProtoError::BadReply);
    }
    let payload = if h.op == Some(Op::Read) && h.status == Status::Ok {
        h.length
    } else {
        0
    };
    if h.payload != payload {
        return Err(ProtoError::BadPayload);
    }
    Ok(())
}

/// The version both sides speak, given the range `min..=max` offered by the
/// local node: the highest version in that range and in
/// [`MIN_VERSION`]`..=`[`VERSION`], or `None` if there is none.
pub(crate) fn negotiate_version(min: u32, max: u32) -> Option<u32> {
    let hi = max.min(VERSION);
    (min.max(MIN_VERSION) <= hi).then_some(hi)
}

/// Data-channel protection mode, HELLO byte 32 (`enum dst_protection` in
/// the uapi header has the same values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Protection {
    /// Clear text, no trailer.
    None = 0,
    /// A crc32c of header and payload: accidental corruption only.
    Crc32c = 1,
    /// A keyed MAC of sequence number, header and payload.
    Hmac = 2,
    /// Payload encrypted, header and payload authenticated.
    Aead = 3,
}

impl Protection {
    /// The mode with wire value `v`, if any.
    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::None,
            1 => Self::Crc32c,
            2 => Self::Hmac,
            3 => Self::Aead,
            _ => return None,
        })
    }

    /// The wire value.
    pub(crate) fn as_u8(self) -> u8 {
        self as u8
    }

    /// The name used by dstcfg and in log messages.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Crc32c => "crc32c",
            Self::Hmac => "hmac",
            Self::Aead => "aead",
        }
    }

    /// Whether the mode derives keys from a pre-shared key (and needs one).
    pub(crate) fn needs_key(self) -> bool {
        matches!(self, Self::Hmac | Self::Aead)
    }

    /// Whether the mode is configured with an algorithm name.
    pub(crate) fn has_alg(self) -> bool {
        self.needs_key()
    }

    /// The algorithm used when none is configured.
    pub(crate) fn default_alg(self) -> &'static str {
        match self {
            Self::None | Self::Crc32c => "",
            Self::Hmac => "hmac(sha256)",
            Self::Aead => "gcm(aes)",
        }
    }

    /// Trailer length after each message, given the digest size of the
    /// HMAC algorithm (ignored by the other modes).
    pub(crate) fn trailer_len(self, digest: usize) -> usize {
        match self {
            Self::None => 0,
            Self::Crc32c => CRC_LEN,
            Self::Hmac => SEQ_LEN + digest,
            Self::Aead => SEQ_LEN + AEAD_TAG_LEN,
        }
    }
}

/// A name as carried in the handshake (an algorithm, an export or client
/// identity): printable ASCII without spaces, NUL-padded, at most
/// [`NAME_LEN`]` - 1` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Name([u8; NAME_LEN]);

impl Name {
    /// The empty name.
    pub(crate) const EMPTY: Name = Name([0; NAME_LEN]);

    /// A name from `s`: printable ASCII without spaces, at most
    /// [`NAME_LEN`]` - 1` bytes; `None` otherwise.
    pub(crate) fn new(s: &[u8]) -> Option<Self> {
        if s.len() >= NAME_LEN || !s.iter().all(|c| c.is_ascii_graphic()) {
            return None;
        }
        let mut b = [0u8; NAME_LEN];
        put(&mut b, 0, s);
        Some(Name(b))
    }

    /// The name without padding.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        let n = self.0.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
        self.0.get(..n).unwrap_or(&[])
    }

    /// Whether the name is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.0[0] == 0
    }

    /// A name as it came off the wire (a DISCOVER_REPLY's); check it with
    /// [`Name::valid`].
    pub(crate) fn from_wire(b: [u8; NAME_LEN]) -> Self {
        Name(b)
    }

    /// The name with its NUL padding (always NUL-terminated once valid).
    pub(crate) fn padded(&self) -> &[u8; NAME_LEN] {
        &self.0
    }

    /// Whether the field is well formed: NUL-terminated, the name printable
    /// ASCII, only NULs after it.
    pub(crate) fn valid(&self) -> bool {
        let name = self.as_bytes();
        name.len() < NAME_LEN
            && name.iter().all(|c| c.is_ascii_graphic())
            && self.0.iter().skip(name.len()).all(|&c| c == 0)
    }
}

/// The security part of a HELLO: what protection the local node uses. The
/// export compares it with its own ([`Security::matches`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Security {
    /// The protection mode.
    pub(crate) protection: Protection,
    /// Whether a pre-shared key is used (authenticated handshake).
    pub(crate) auth: bool,
    /// Algorithm name; empty for [`Protection::None`] and
    /// [`Protection::Crc32c`].
    pub(crate) alg: Name,
}

impl Security {
    /// No protection, no key.
    pub(crate) const NONE: Security = Security {
        protection: Protection::None,
        auth: false,
        alg: Name::EMPTY,
    };

    /// Whether the combination is allowed: hmac and aead need a key and an
    /// algorithm; none and crc32c have no algorithm.
    pub(crate) fn valid(&self) -> bool {
        self.alg.valid()
            && (!self.protection.needs_key() || self.auth)
            && self.protection.has_alg() != self.alg.is_empty()
    }

    /// Whether a peer's settings equal ours (the only accepted case).
    pub(crate) fn matches(&self, other: &Security) -> bool {
        self.protection == other.protection
            && self.auth == other.auth
            && self.alg.as_bytes() == other.alg.as_bytes()
    }
}

/// Body of a HELLO: what the local node offers and wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HelloBody {
    /// Oldest protocol version the local node speaks.
    pub(crate) min_version: u32,
    /// Newest protocol version the local node speaks.
    pub(crate) max_version: u32,
    /// Wanted features (`FEATURE_*`); unknown bits are ignored.
    pub(crate) features: u64,
    /// Largest IO the local node wants; 0 leaves the choice to the export.
    pub(crate) max_io_bytes: u32,
    /// Queues wanted; 0 leaves the choice to the export.
    pub(crate) queues: u16,
    /// Queue depth wanted; 0 leaves the choice to the export.
    pub(crate) queue_depth: u16,
    /// Identifies the local device across its connections (0 = none). A
    /// HELLO with a non-zero id fences older connections with the same id:
    /// the export ends them and waits for their requests to finish before
    /// it answers (see `epoch`).
    pub(crate) client_id: u64,
    /// Which queue this connection serves (below `queues`, or 0).
    pub(crate) queue_index: u16,
    /// The device's fencing epoch (0 = none). A HELLO fences every
    /// connection of its `client_id` with a lower epoch, whatever its
    /// queue, and those of its own queue with the same epoch; a HELLO whose
    /// epoch is below that of a live connection of its `client_id` is
    /// stale and refused with BUSY.
    pub(crate) epoch: u32,
    /// Reads only are wanted ([`HELLO_FLAG_READ_ONLY`]).
    pub(crate) read_only: bool,
    /// Protection, key use and algorithm; must equal the export's.
    pub(crate) security: Security,
    /// With a key, the local node's ephemeral X25519 public key `E_c`
    /// (fresh for every connection); zero without.
    pub(crate) key_share: [u8; KEY_SHARE_LEN],
    /// The local node's identity (never empty).
    pub(crate) client: Name,
    /// The identity of the export this connection is for; empty: whichever
    /// export listens there (a device's first connection, which then pins
    /// the identity it got for all later ones).
    pub(crate) export: Name,
}

impl HelloBody {
    /// The wire form of the body.
    pub(crate) fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        put(&mut b, 0, &self.min_version.to_be_bytes());
        put(&mut b, 4, &self.max_version.to_be_bytes());
        put(&mut b, 8, &self.features.to_be_bytes());
        put(&mut b, 16, &self.max_io_bytes.to_be_bytes());
        put(&mut b, 20, &self.queues.to_be_bytes());
        put(&mut b, 22, &self.queue_depth.to_be_bytes());
        put(&mut b, 24, &self.client_id.to_be_bytes());
        put(&mut b, 32, &[self.security.protection.as_u8()]);
        let auth = if self.security.auth {
            HELLO_FLAG_AUTH
        } else {
            0
        };
        let read_only = if self.read_only {
            HELLO_FLAG_READ_ONLY
        } else {
            0
        };
        put(&mut b, 33, &[auth | read_only]);
        put(&mut b, 34, &self.queue_index.to_be_bytes());
        put(&mut b, 36, &self.epoch.to_be_bytes());
        put(&mut b, 40, self.security.alg.padded());
        put(&mut b, 104, &self.key_share);
        put(&mut b, 136, self.client.padded());
        put(&mut b, 200, self.export.padded());
        b
    }

    /// Parses a body. Fails with [`ProtoError::BadHello`] if the protection
    /// mode or a flag is unknown. Check the values with
    /// [`HelloBody::validate`].
    pub(crate) fn decode(b: &[u8; HELLO_LEN]) -> Result<Self, ProtoError> {
        let [prot, flags] = get::<2>(b, 32);
        let protection = Protection::from_u8(prot).ok_or(ProtoError::BadHello)?;
        if flags & !HELLO_FLAGS_ALL != 0 {
            return Err(ProtoError::BadHello);
        }
        Ok(HelloBody {
            min_version: get_u32(b, 0),
            max_version: get_u32(b, 4),
            features: get_u64(b, 8),
            max_io_bytes: get_u32(b, 16),
            queues: get_u16(b, 20),
            queue_depth: get_u16(b, 22),
            client_id: get_u64(b, 24),
            queue_index: get_u16(b, 34),
            epoch: get_u32(b, 36),
            read_only: flags & HELLO_FLAG_READ_ONLY != 0,
            security: Security {
                protection,
                auth: flags & HELLO_FLAG_AUTH != 0,
                alg: Name(get::<ALG_LEN>(b, 40)),
            },
            key_share: get::<KEY_SHARE_LEN>(b, 104),
            client: Name(get::<NAME_LEN>(b, 136)),
            export: Name(get::<NAME_LEN>(b, 200)),
        })
    }

    /// Checks the values, as the export does before answering:
    /// `1 <= min_version <= max_version`; `max_io_bytes` 0 or a multiple of
    /// [`IO_BYTES_ALIGN`] up to [`MAX_IO_BYTES_LIMIT`]; `queues` at most
    /// [`MAX_QUEUES`] and `queue_depth` at most [`MAX_QUEUE_DEPTH`];
    /// `queue_index` below `queues` (or 0); the security settings consistent
    /// ([`Security::valid`]) and the key share zero without a key; both
    /// names well formed and the client's not empty. Fails with
    /// [`ProtoError::BadHello`]; the export answers [`Status::Invalid`].
    pub(crate) fn validate(&self) -> Result<(), ProtoError> {
        let ok = self.min_version >= 1
            && self.min_version <= self.max_version
            && (self.max_io_bytes == 0 || io_bytes_ok(self.max_io_bytes))
            && self.queues <= MAX_QUEUES
            && self.queue_depth <= MAX_QUEUE_DEPTH
            && self.queue_index < self.queues.max(1)
            && self.security.valid()
            && (self.security.auth || self.key_share == [0; KEY_SHARE_LEN])
            && self.client.valid()
            && !self.client.is_empty()
            && self.export.valid();
        if ok {
            Ok(())
        } else {
            Err(ProtoError::BadHello)
        }
    }
}

/// Body of a CHALLENGE: the export's identity and its ephemeral key share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChallengeBody {
    /// The export's identity.
    pub(crate) export: Name,
    /// The export's ephemeral X25519 public key `E_s`.
    pub(crate) key_share: [u8; KEY_SHARE_LEN],
}

impl ChallengeBody {
    /// The wire form of the body.
    pub(crate) fn encode(&self) -> [u8; CHALLENGE_LEN] {
        let mut b = [0u8; CHALLENGE_LEN];
        put(&mut b, 0, self.export.padded());
        put(&mut b, NAME_LEN, &self.key_share);
        b
    }

    /// Parses a body; fails with [`ProtoError::BadHello`] unless the name
    /// is well formed and not empty.
    pub(crate) fn decode(b: &[u8; CHALLENGE_LEN]) -> Result<Self, ProtoError> {
        let export = Name(get::<NAME_LEN>(b, 0));
        if !export.valid() || export.is_empty() {
            return Err(ProtoError::BadHello);
        }
        Ok(ChallengeBody {
            export,
            key_share: get::<KEY_SHARE_LEN>(b, NAME_LEN),
        })
    }
}

/// Body of a HELLO_REPLY refusing with [`Status::InUse`]: who holds the
/// export's write access. Informative only (it is not authenticated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HolderBody {
    /// The holder's identity.
    pub(crate) client: Name,
    /// Length of the holder's address: 4 (IPv4), 16 (IPv6) or 0 (unknown).
    pub(crate) addr_len: u8,
    /// The holder's port.
    pub(crate) port: u16,
    /// The holder's address, its first `addr_len` bytes.
    pub(crate) addr: [u8; 16],
}

impl HolderBody {
    /// The wire form of the body.
    pub(crate) fn encode(&self) -> [u8; HOLDER_LEN] {
        let mut b = [0u8; HOLDER_LEN];
        put(&mut b, 0, self.client.padded());
        put(&mut b, NAME_LEN, &[self.addr_len]);
        put(&mut b, NAME_LEN + 2, &self.port.to_be_bytes());
        put(&mut b, NAME_LEN + 4, &self.addr);
        b
    }

    /// Parses a body; fails with [`ProtoError::BadHello`] unless the name
    /// is well formed and the address length is 0, 4 or 16.
    pub(crate) fn decode(b: &[u8; HOLDER_LEN]) -> Result<Self, ProtoError> {
        let client = Name(get::<NAME_LEN>(b, 0));
        let [addr_len, reserved] = get::<2>(b, NAME_LEN);
        if !client.valid() || !matches!(addr_len, 0 | 4 | 16) || reserved != 0 {
            return Err(ProtoError::BadHello);
        }
        Ok(HolderBody {
            client,
            addr_len,
            port: get_u16(b, NAME_LEN + 2),
            addr: get::<16>(b, NAME_LEN + 4),
        })
    }
}

/// Body of a successful HELLO_REPLY: what the export grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HelloReplyBody {
    /// The chosen protocol version.
    pub(crate) version: u32,
    /// Granted permissions ([`PERM_READ`], [`PERM_WRITE`]).
    pub(crate) perms: u32,
    /// Granted features, a subset of the wanted ones.
    pub(crate) features: u64,
    /// Device size in bytes, a multiple of the logical block size.
    pub(crate) size: u64,
    /// Logical block size in bytes.
    pub(crate) logical_block_size: u32,
    /// Physical block size in bytes.
    pub(crate) physical_block_size: u32,
    /// Largest READ or WRITE length in bytes.
    pub(crate) max_io_bytes: u32,
    /// Granted number of queues.
    pub(crate) queues: u16,
    /// Granted queue depth.
    pub(crate) queue_depth: u16,
    /// The export's identity.
    pub(crate) export: Name,
    /// With a key: the export's proof of it over the handshake; zero without.
    pub(crate) proof: [u8; AUTH_LEN],
}

impl HelloReplyBody {
    /// The wire form of the body.
    pub(crate) fn encode(&self) -> [u8; HELLO_REPLY_LEN] {
        let mut b = [0u8; HELLO_REPLY_LEN];
        put(&mut b, 0, &self.version.to_be_bytes());
        put(&mut b, 4, &self.perms.to_be_bytes());
        put(&mut b, 8, &self.features.to_be_bytes());
        put(&mut b, 16, &self.size.to_be_bytes());
        put(&mut b, 24, &self.logical_block_size.to_be_bytes());
        put(&mut b, 28, &self.physical_block_size.to_be_bytes());
        put(&mut b, 32, &self.max_io_bytes.to_be_bytes());
        put(&mut b, 36, &self.queues.to_be_bytes());
        put(&mut b, 38, &self.queue_depth.to_be_bytes());
        // Bytes 40..48 are reserved and stay zero.
        put(&mut b, 48, self.export.padded());
        put(&mut b, REPLY_PROVEN_LEN, &self.proof);
        b
    }

    /// The wire form without the proof: what the export's proof covers.
    pub(crate) fn proven_bytes(&self) -> [u8; REPLY_PROVEN_LEN] {
        get::<REPLY_PROVEN_LEN>(&self.encode(), 0)
    }

    /// Parses a body; fails only if the reserved bytes are not zero
    /// ([`ProtoError::Reserved`]). Check the values with
    /// [`HelloReplyBody::validate`].
    pub(crate) fn decode(b: &[u8; HELLO_REPLY_LEN]) -> Result<Self, ProtoError> {
        if get_u64(b, 40) != 0 {
            return Err(ProtoError::Reserved);
        }
        Ok(HelloReplyBody {
            version: get_u32(b, 0),
            perms: get_u32(b, 4),
            features: get_u64(b, 8),
            size: get_u64(b, 16),
            logical_block_size: get_u32(b, 24),
            physical_block_size: get_u32(b, 28),
            max_io_bytes: get_u32(b, 32),
            queues: get_u16(b, 36),
            queue_depth: get_u16(b, 38),
            export: Name(get::<NAME_LEN>(b, 48)),
            proof: get::<AUTH_LEN>(b, REPLY_PROVEN_LEN),
        })
    }

    /// Checks the grant against the `hello` that asked for it, so that the
    /// local node refuses an export that lies:
    ///
    /// - version within `hello`'s range and spoken here
    ///   ([`ProtoError::BadVersion`]);
    /// - and, failing with [`ProtoError::BadHello`]: perms include
    ///   [`PERM_READ`] and no unknown bit; features a subset of the wanted
    ///   ones; logical block size a power of two in 512..=4096; physical block
    ///   size a power of two from the logical one to 65536; size a multiple of
    ///   the logical block size, at most [`MAX_SIZE`]; `max_io_bytes` a
    ///   multiple of 4096 in 4096..=[`MAX_IO_BYTES_LIMIT`]; `queues` in
    ///   1..=64 and `queue_depth` in 1..=1024; `max_io_bytes`, `queues`,
    ///   `queue_depth` at most the wanted values where those are not 0; the
    ///   export's name well formed and not empty;
    /// - and the export's name the one `hello` asked for, if it named one
    ///   ([`ProtoError::WrongExport`]).
    pub(crate) fn validate(&self, hello: &HelloBody) -> Result<(), ProtoError> {
        let v = self.version;
        if v < hello.min_version || v > hello.max_version || v < MIN_VERSION || v > VERSION {
            return Err(ProtoError::BadVersion);
        }
        let lb = self.logical_block_size;
        let ok = self.perms & PERM_READ != 0
            && self.perms & !PERMS_ALL == 0
            && self.features & !(hello.features & FEATURES_ALL) == 0
            && pow2_within(lb, MIN_BLOCK_SIZE, MAX_LOGICAL_BLOCK_SIZE)
            && pow2_within(self.physical_block_size, lb, MAX_PHYSICAL_BLOCK_SIZE)
            && aligned(self.size, u64::from(lb))
            && self.size <= MAX_SIZE
            && io_bytes_ok(self.max_io_bytes)
            && (1..=MAX_QUEUES).contains(&self.queues)
            && (1..=MAX_QUEUE_DEPTH).contains(&self.queue_depth)
            && within(self.max_io_bytes, hello.max_io_bytes)
            && within(self.queues.into(), hello.queues.into())
            && within(self.queue_depth.into(), hello.queue_depth.into())
            && self.export.valid()
            && !self.export.is_empty();
        if !ok {
            return Err(ProtoError::BadHello);
        }
        if !hello.export.is_empty() && hello.export != self.export {
            return Err(ProtoError::WrongExport);
        }
        Ok(())
    }

    /// The limits IO requests are checked against.
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            size: self.size,
            logical_block: self.logical_block_size,
            max_io: self.max_io_bytes,
            perms: self.perms,
            features: self.features,
        }
    }
}
