//! Numbers of the `dst` generic netlink ABI, mirroring
//! `include/uapi/linux/dst.h`.
//!
//! The header is the source of truth. The test at the bottom of this file
//! parses it and checks that every enum and `#define` in it is mirrored here
//! with the same value, and nothing more: add a command or an attribute to the
//! header and this crate's tests fail until it is added below as well (a
//! constant plus a row in [`ENUMS`] or [`DEFINES`]).

/// Name of the generic netlink family (`DST_GENL_NAME`).
pub const DST_GENL_NAME: &str = "dst";
/// Version of the family (`DST_GENL_VERSION`), sent in every genl header.
pub const DST_GENL_VERSION: u8 = 1;
/// Multicast group of the `DST_CMD_EVENT` notifications
/// (`DST_GENL_MCGRP_EVENTS`).
pub const DST_GENL_MCGRP_EVENTS: &str = "events";

/// [`DST_A_LOSS_TIMEOUT_MS`] that never expires (`DST_LOSS_TIMEOUT_INFINITE`).
pub const DST_LOSS_TIMEOUT_INFINITE: u32 = u32::MAX;

// enum dst_cmd
/// Unused command 0.
pub const DST_CMD_UNSPEC: u8 = 0;
/// Module status; the reply carries [`DST_A_VERSION`] and
/// [`DST_A_PROTO_VERSION`].
pub const DST_CMD_STATUS: u8 = 1;
/// Serve [`DST_A_PATH`] on [`DST_A_ADDR`]/[`DST_A_PORT`].
pub const DST_CMD_EXPORT_ADD: u8 = 2;
/// Stop the export listening on [`DST_A_ADDR`]/[`DST_A_PORT`].
pub const DST_CMD_EXPORT_DEL: u8 = 3;
/// Connect to [`DST_A_ADDR`]/[`DST_A_PORT`] and create `/dev/dstN`; the
/// reply carries [`DST_A_INDEX`] and [`DST_A_DISK_NAME`].
pub const DST_CMD_DEV_ADD: u8 = 4;
/// Delete `/dev/dst<DST_A_INDEX>`.
pub const DST_CMD_DEV_DEL: u8 = 5;
/// Dump: one message per export and device.
pub const DST_CMD_LIST: u8 = 6;
/// Change the timeouts of the live device `/dev/dst<DST_A_INDEX>`.
pub const DST_CMD_DEV_SET: u8 = 7;
/// Multicast notification: [`DST_A_EVENT`] happened to [`DST_A_INDEX`].
pub const DST_CMD_EVENT: u8 = 8;
/// Module-wide settings: any non-empty subset of [`DST_A_CRYPTO_THREADS`],
/// [`DST_A_REKEY_MIB`] and [`DST_A_REKEY_SECONDS`].
pub const DST_CMD_CONFIG: u8 = 9;
/// Take the write access of the export on [`DST_A_ADDR`]/[`DST_A_PORT`]
/// from the local node that holds it: its sessions end, and the next local
/// node to ask for read-write gets it.
pub const DST_CMD_EXPORT_RELEASE: u8 = 10;
/// Grow the export on [`DST_A_ADDR`]/[`DST_A_PORT`] to [`DST_A_SIZE`] (its
/// new cap), or without it to what its device holds now; never shrinks. The
/// reply carries [`DST_A_SIZE`], the size exported.
pub const DST_CMD_EXPORT_RESIZE: u8 = 11;
/// Highest command number (`DST_CMD_MAX`).
pub const DST_CMD_MAX: u8 = DST_CMD_EXPORT_RESIZE;

// enum dst_attr
/// Unused attribute 0.
pub const DST_A_UNSPEC: u16 = 0;
/// Alignment padding for 64-bit values.
pub const DST_A_PAD: u16 = 1;
/// String: module version.
pub const DST_A_VERSION: u16 = 2;
/// u32: wire protocol version spoken by the module.
pub const DST_A_PROTO_VERSION: u16 = 3;
/// Binary: IPv4 (4 bytes) or IPv6 (16 bytes) address, network order.
pub const DST_A_ADDR: u16 = 4;
/// u16: TCP port (host order).
pub const DST_A_PORT: u16 = 5;
/// String: backing block device of an export.
pub const DST_A_PATH: u16 = 6;
/// Flag: `DST_CMD_EXPORT_ADD`: serve read-only; `DST_CMD_DEV_ADD`: ask for
/// reads only (the device is read-only and never holds the export's write
/// access); in replies: served or provided read-only.
pub const DST_A_READ_ONLY: u16 = 7;
/// u64: export: size cap in bytes; replies: size.
pub const DST_A_SIZE: u16 = 8;
/// u32: largest request, in 4 KiB pages (1..1024).
pub const DST_A_MAX_IO_PAGES: u16 = 9;
/// u32: device index N of /dev/dstN.
pub const DST_A_INDEX: u16 = 10;
/// u32: [`enum dst_kind`](DST_KIND_EXPORT), in `DST_CMD_LIST` replies.
pub const DST_A_KIND: u16 = 11;
/// String: "dstN", in replies.
pub const DST_A_DISK_NAME: u16 = 12;
/// u32: [`enum dst_state`](DST_STATE_CONNECTED), in replies.
pub const DST_A_STATE: u16 = 13;
/// u32: export: connected local nodes.
pub const DST_A_SESSIONS: u16 = 14;
/// u32: requests in flight per queue.
pub const DST_A_QUEUE_DEPTH: u16 = 15;
/// u32: a request unanswered this long (ms): reconnect and resend.
pub const DST_A_REQ_TIMEOUT_MS: u16 = 16;
/// u32: resends of one request before it fails.
pub const DST_A_MAX_RESENDS: u16 = 17;
/// u32: pause between reconnect attempts (ms).
pub const DST_A_RECONNECT_DELAY_MS: u16 = 18;
/// u32: ping an idle connection this often (ms); 0 = never.
pub const DST_A_PING_INTERVAL_MS: u16 = 19;
/// u32: no answer to a ping this long (ms): reconnect.
pub const DST_A_PING_TIMEOUT_MS: u16 = 20;
/// u32: disconnected this long (ms): IO fails until reconnected.
pub const DST_A_LOSS_TIMEOUT_MS: u16 = 21;
/// u64: counter of reconnects, in replies.
pub const DST_A_RECONNECTS: u16 = 22;
/// u64: counter of resent requests, in replies.
pub const DST_A_RESENDS: u16 = 23;
/// u32: [`enum dst_event`](DST_EVENT_CONNECTED), in `DST_CMD_EVENT`.
pub const DST_A_EVENT: u16 = 24;
/// u32: requests queued or sent, in replies.
pub const DST_A_IN_FLIGHT: u16 = 25;
/// u64: counter of request or ping timeouts, in replies.
pub const DST_A_TIMEOUTS: u16 = 26;
/// u64: counter of requests ended with an error, in replies.
pub const DST_A_IO_ERRORS: u16 = 27;
/// u64: counter of bytes read, in replies.
pub const DST_A_BYTES_READ: u16 = 28;
/// u64: counter of bytes written, in replies.
pub const DST_A_BYTES_WRITTEN: u16 = 29;
/// u32: device: connections, one per hardware queue (1..16).
pub const DST_A_QUEUES: u16 = 30;
/// u32: [`enum dst_protection`](DST_PROT_NONE); must match on both sides.
pub const DST_A_PROTECTION: u16 = 31;
/// String: kernel crypto name for hmac/aead (at most 63 bytes).
pub const DST_A_ALG: u16 = 32;
/// Binary: pre-shared key, 16..64 bytes; never sent back.
pub const DST_A_KEY: u16 = 33;
/// Nested, repeatable: export allow-list entry (`DST_ALLOW_A_*`).
pub const DST_A_ALLOW: u16 = 34;
/// u32: workers of the crypto pool (0 = inline, 1..64).
pub const DST_A_CRYPTO_THREADS: u16 = 35;
/// Binary: events: address of an export's client.
pub const DST_A_PEER_ADDR: u16 = 36;
/// u16: events: port of an export's client.
pub const DST_A_PEER_PORT: u16 = 37;
/// String: events: why a client was refused.
pub const DST_A_MESSAGE: u16 = 38;
/// u64: counter of frames whose checksum/tag or sequence number failed.
pub const DST_A_INTEGRITY_ERRORS: u16 = 39;
/// u64: export: counter of refused clients.
pub const DST_A_REFUSED: u16 = 40;
/// u64: device: the identity the export fences by (not 0); random unless
/// `DST_CMD_DEV_ADD` gives one, reported by `DST_CMD_LIST`.
pub const DST_A_CLIENT_ID: u16 = 41;
/// Flag: `DST_CMD_DEV_DEL`: delete the device even if it is open (else
/// EBUSY); data not yet written is lost.
pub const DST_A_FORCE: u16 = 42;
/// String: an export's identity, 1..63 printable ASCII bytes without
/// spaces, NUL-terminated. `DST_CMD_EXPORT_ADD`: the export's (default
/// `<host name>:<device name>`); `DST_CMD_DEV_ADD`: the identity of the
/// export to accept (default: the first one reached, then pinned); in
/// `DST_CMD_LIST` replies.
pub const DST_A_NAME: u16 = 43;
/// String: `DST_CMD_DEV_ADD`: this node's identity in the handshake
/// (default: the host name); in `DST_CMD_LIST` replies of devices.
pub const DST_A_CLIENT_NAME: u16 = 44;
/// u32: `DST_CMD_CONFIG`, `DST_CMD_STATUS`: each direction of a keyed
/// connection replaces its key after protecting this many MiB (1..1048576;
/// default 65536, 64 GiB).
pub const DST_A_REKEY_MIB: u16 = 45;
/// u32: `DST_CMD_CONFIG`, `DST_CMD_STATUS`: ... or after this many seconds
/// (1..86400; default 3600).
pub const DST_A_REKEY_SECONDS: u16 = 46;
/// String: instead of [`DST_A_KEY`]: the description of a "logon" (or
/// "user") key in the caller's keyrings whose 16..64 byte payload is the
/// key (`--key-desc`).
pub const DST_A_KEY_DESC: u16 = 47;
/// Nested, repeatable: `DST_CMD_EXPORT_ADD`: a client identity with a key
/// of its own (`DST_CLIENT_A_*`, `--client`).
pub const DST_A_CLIENT: u16 = 48;
/// Flag: `DST_CMD_EXPORT_ADD`, `DST_CMD_LIST` replies: any number of local
/// nodes may write (cluster file systems only); else one identity at a
/// time (`--shared`).
pub const DST_A_SHARED: u16 = 49;
/// String: `DST_CMD_LIST` replies of exports: the identity holding the
/// write access, when one does.
pub const DST_A_WRITER_NAME: u16 = 50;
/// Binary: `DST_CMD_LIST` replies of exports: the address (4 or 16 bytes)
/// the holder last connected from.
pub const DST_A_WRITER_ADDR: u16 = 51;
/// u16: `DST_CMD_LIST` replies of exports: the port it connected from.
pub const DST_A_WRITER_PORT: u16 = 52;
/// Highest attribute number (`DST_A_MAX`).
pub const DST_A_MAX: u16 = DST_A_WRITER_PORT;

// enum dst_allow_attr: attributes nested in one DST_A_ALLOW entry.
/// Unused nested attribute 0.
pub const DST_ALLOW_A_UNSPEC: u16 = 0;
/// Binary: IPv4 (4 bytes) or IPv6 (16 bytes) prefix.
pub const DST_ALLOW_A_ADDR: u16 = 1;
/// u8: prefix length, 0..32 (IPv4) or 0..128 (IPv6).
pub const DST_ALLOW_A_PREFIX_LEN: u16 = 2;
/// Flag: clients in this prefix may only read.
pub const DST_ALLOW_A_READ_ONLY: u16 = 3;
/// Highest nested allow-list attribute (`DST_ALLOW_A_MAX`).
pub const DST_ALLOW_A_MAX: u16 = DST_ALLOW_A_READ_ONLY;

// enum dst_client_attr: attributes nested in one DST_A_CLIENT entry.
/// Unused nested attribute 0.
pub const DST_CLIENT_A_UNSPEC: u16 = 0;
/// String: the client's identity (required), 1..63 printable ASCII bytes
/// without spaces, NUL-terminated.
pub const DST_CLIENT_A_NAME: u16 = 1;
/// Binary: its key, 16..64 bytes (or [`DST_CLIENT_A_KEY_DESC`]).
pub const DST_CLIENT_A_KEY: u16 = 2;
/// String: instead of [`DST_CLIENT_A_KEY`], a keyring key's description
/// (as [`DST_A_KEY_DESC`]).
pub const DST_CLIENT_A_KEY_DESC: u16 = 3;
/// Flag: this client may only read.
pub const DST_CLIENT_A_READ_ONLY: u16 = 4;
/// Highest nested client attribute (`DST_CLIENT_A_MAX`).
pub const DST_CLIENT_A_MAX: u16 = DST_CLIENT_A_READ_ONLY;

// enum dst_protection
/// Clear text; a key, if given, authenticates the handshake.
pub const DST_PROT_NONE: u32 = 0;
/// crc32c of every message: accidental corruption only.
pub const DST_PROT_CRC32C: u32 = 1;
/// Keyed MAC of every message (needs a key).
pub const DST_PROT_HMAC: u32 = 2;
/// Encrypted and authenticated (needs a key).
pub const DST_PROT_AEAD: u32 = 3;

/// Default TCP port of an export (`DST_DEFAULT_PORT`).
pub const DST_DEFAULT_PORT: u16 = 1025;

// enum dst_kind
/// A `DST_CMD_LIST` message describing an export.
pub const DST_KIND_EXPORT: u32 = 1;
/// A `DST_CMD_LIST` message describing a device.
pub const DST_KIND_DEVICE: u32 = 2;

// enum dst_state
/// Device: connected; export: listening.
pub const DST_STATE_CONNECTED: u32 = 1;
/// Device: connection lost; IO waits and is resent once reconnected.
pub const DST_STATE_RECONNECTING: u32 = 2;
/// Being deleted.
pub const DST_STATE_CLOSING: u32 = 3;
/// Device: lost past the loss timeout; IO fails, reconnect attempts go on.
pub const DST_STATE_FAILED: u32 = 4;

// enum dst_event
/// Device created and connected.
pub const DST_EVENT_CONNECTED: u32 = 1;
/// Connection lost; reconnecting, IO waits.
pub const DST_EVENT_LOST: u32 = 2;
/// Connection back; waiting IO resent.
pub const DST_EVENT_RECONNECTED: u32 = 3;
/// Lost past the loss timeout: IO fails.
pub const DST_EVENT_FAILED: u32 = 4;
/// Device deleted.
pub const DST_EVENT_DELETED: u32 = 5;
/// Export: a client connected ([`DST_A_PEER_ADDR`], [`DST_A_PEER_PORT`]).
pub const DST_EVENT_SESSION_OPENED: u32 = 6;
/// Export: a client's session ended.
pub const DST_EVENT_SESSION_CLOSED: u32 = 7;
/// Export: a client was refused ([`DST_A_MESSAGE`] says why).
pub const DST_EVENT_SESSION_REFUSED: u32 = 8;

/// One enum of the header: its C name and its enumerators in order.
pub type EnumTable = (&'static str, &'static [(&'static str, u32)]);

/// Every enum of the header (without the `__*_MAX` sentinels).
pub const ENUMS: &[EnumTable] = &[
    (
        "dst_cmd",
        &[
            ("DST_CMD_UNSPEC", DST_CMD_UNSPEC as u32),
            ("DST_CMD_STATUS", DST_CMD_STATUS as u32),
            ("DST_CMD_EXPORT_ADD", DST_CMD_EXPORT_ADD as u32),
            ("DST_CMD_EXPORT_DEL", DST_CMD_EXPORT_DEL as u32),
            ("DST_CMD_DEV_ADD", DST_CMD_DEV_ADD as u32),
            ("DST_CMD_DEV_DEL", DST_CMD_DEV_DEL as u32),
            ("DST_CMD_LIST", DST_CMD_LIST as u32),
            ("DST_CMD_DEV_SET", DST_CMD_DEV_SET as u32),
            ("DST_CMD_EVENT", DST_CMD_EVENT as u32),
            ("DST_CMD_CONFIG", DST_CMD_CONFIG as u32),
            ("DST_CMD_EXPORT_RELEASE", DST_CMD_EXPORT_RELEASE as u32),
            ("DST_CMD_EXPORT_RESIZE", DST_CMD_EXPORT_RESIZE as u32),
        ],
    ),
    (
        "dst_attr",
        &[
            ("DST_A_UNSPEC", DST_A_UNSPEC as u32),
            ("DST_A_PAD", DST_A_PAD as u32),
            ("DST_A_VERSION", DST_A_VERSION as u32),
            ("DST_A_PROTO_VERSION", DST_A_PROTO_VERSION as u32),
            ("DST_A_ADDR", DST_A_ADDR as u32),
            ("DST_A_PORT", DST_A_PORT as u32),
            ("DST_A_PATH", DST_A_PATH as u32),
            ("DST_A_READ_ONLY", DST_A_READ_ONLY as u32),
            ("DST_A_SIZE", DST_A_SIZE as u32),
            ("DST_A_MAX_IO_PAGES", DST_A_MAX_IO_PAGES as u32),
            ("DST_A_INDEX", DST_A_INDEX as u32),
            ("DST_A_KIND", DST_A_KIND as u32),
            ("DST_A_DISK_NAME", DST_A_DISK_NAME as u32),
            ("DST_A_STATE", DST_A_STATE as u32),
            ("DST_A_SESSIONS", DST_A_SESSIONS as u32),
            ("DST_A_QUEUE_DEPTH", DST_A_QUEUE_DEPTH as u32),
            ("DST_A_REQ_TIMEOUT_MS", DST_A_REQ_TIMEOUT_MS as u32),
            ("DST_A_MAX_RESENDS", DST_A_MAX_RESENDS as u32),
            ("DST_A_RECONNECT_DELAY_MS", DST_A_RECONNECT_DELAY_MS as u32),
            ("DST_A_PING_INTERVAL_MS", DST_A_PING_INTERVAL_MS as u32),
            ("DST_A_PING_TIMEOUT_MS", DST_A_PING_TIMEOUT_MS as u32),
            ("DST_A_LOSS_TIMEOUT_MS", DST_A_LOSS_TIMEOUT_MS as u32),
            ("DST_A_RECONNECTS", DST_A_RECONNECTS as u32),
            ("DST_A_RESENDS", DST_A_RESENDS as u32),
            ("DST_A_EVENT", DST_A_EVENT as u32),
            ("DST_A_IN_FLIGHT", DST_A_IN_FLIGHT as u32),
            ("DST_A_TIMEOUTS", DST_A_TIMEOUTS as u32),
            ("DST_A_IO_ERRORS", DST_A_IO_ERRORS as u32),
            ("DST_A_BYTES_READ", DST_A_BYTES_READ as u32),
            ("DST_A_BYTES_WRITTEN", DST_A_BYTES_WRITTEN as u32),
            ("DST_A_QUEUES", DST_A_QUEUES as u32),
            ("DST_A_PROTECTION", DST_A_PROTECTION as u32),
            ("DST_A_ALG", DST_A_ALG as u32),
            ("DST_A_KEY", DST_A_KEY as u32),
            ("DST_A_ALLOW", DST_A_ALLOW as u32),
            ("DST_A_CRYPTO_THREADS", DST_A_CRYPTO_THREADS as u32),
            ("DST_A_PEER_ADDR", DST_A_PEER_ADDR as u32),
            ("DST_A_PEER_PORT", DST_A_PEER_PORT as u32),
            ("DST_A_MESSAGE", DST_A_MESSAGE as u32),
            ("DST_A_INTEGRITY_ERRORS", DST_A_INTEGRITY_ERRORS as u32),
            ("DST_A_REFUSED", DST_A_REFUSED as u32),
            ("DST_A_CLIENT_ID", DST_A_CLIENT_ID as u32),
            ("DST_A_FORCE", DST_A_FORCE as u32),
            ("DST_A_NAME", DST_A_NAME as u32),
            ("DST_A_CLIENT_NAME", DST_A_CLIENT_NAME as u32),
            ("DST_A_REKEY_MIB", DST_A_REKEY_MIB as u32),
            ("DST_A_REKEY_SECONDS", DST_A_REKEY_SECONDS as u32),
            ("DST_A_KEY_DESC", DST_A_KEY_DESC as u32),
            ("DST_A_CLIENT", DST_A_CLIENT as u32),
            ("DST_A_SHARED", DST_A_SHARED as u32),
            ("DST_A_WRITER_NAME", DST_A_WRITER_NAME as u32),
            ("DST_A_WRITER_ADDR", DST_A_WRITER_ADDR as u32),
            ("DST_A_WRITER_PORT", DST_A_WRITER_PORT as u32),
        ],
    ),
    (
        "dst_allow_attr",
        &[
            ("DST_ALLOW_A_UNSPEC", DST_ALLOW_A_UNSPEC as u32),
            ("DST_ALLOW_A_ADDR", DST_ALLOW_A_ADDR as u32),
            ("DST_ALLOW_A_PREFIX_LEN", DST_ALLOW_A_PREFIX_LEN as u32),
            ("DST_ALLOW_A_READ_ONLY", DST_ALLOW_A_READ_ONLY as u32),
        ],
    ),
    (
        "dst_client_attr",
        &[
            ("DST_CLIENT_A_UNSPEC", DST_CLIENT_A_UNSPEC as u32),
            ("DST_CLIENT_A_NAME", DST_CLIENT_A_NAME as u32),
            ("DST_CLIENT_A_KEY", DST_CLIENT_A_KEY as u32),
            ("DST_CLIENT_A_KEY_DESC", DST_CLIENT_A_KEY_DESC as u32),
            ("DST_CLIENT_A_READ_ONLY", DST_CLIENT_A_READ_ONLY as u32),
        ],
    ),
    (
        "dst_protection",
        &[
            ("DST_PROT_NONE", DST_PROT_NONE),
            ("DST_PROT_CRC32C", DST_PROT_CRC32C),
            ("DST_PROT_HMAC", DST_PROT_HMAC),
            ("DST_PROT_AEAD", DST_PROT_AEAD),
        ],
    ),
    (
        "dst_kind",
        &[
            ("DST_KIND_EXPORT", DST_KIND_EXPORT),
            ("DST_KIND_DEVICE", DST_KIND_DEVICE),
        ],
    ),
    (
        "dst_state",
        &[
            ("DST_STATE_CONNECTED", DST_STATE_CONNECTED),
            ("DST_STATE_RECONNECTING", DST_STATE_RECONNECTING),
            ("DST_STATE_CLOSING", DST_STATE_CLOSING),
            ("DST_STATE_FAILED", DST_STATE_FAILED),
        ],
    ),
    (
        "dst_event",
        &[
            ("DST_EVENT_CONNECTED", DST_EVENT_CONNECTED),
            ("DST_EVENT_LOST", DST_EVENT_LOST),
            ("DST_EVENT_RECONNECTED", DST_EVENT_RECONNECTED),
            ("DST_EVENT_FAILED", DST_EVENT_FAILED),
            ("DST_EVENT_DELETED", DST_EVENT_DELETED),
            ("DST_EVENT_SESSION_OPENED", DST_EVENT_SESSION_OPENED),
            ("DST_EVENT_SESSION_CLOSED", DST_EVENT_SESSION_CLOSED),
            ("DST_EVENT_SESSION_REFUSED", DST_EVENT_SESSION_REFUSED),
        ],
    ),
];

/// Value of a `#define`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Define {
    /// A string literal.
    Str(&'static str),
    /// An integer.
    Int(i64),
}

/// Every `#define DST_*` of the header except the include guard.
pub const DEFINES: &[(&str, Define)] = &[
    ("DST_GENL_NAME", Define::Str(DST_GENL_NAME)),
    ("DST_GENL_VERSION", Define::Int(DST_GENL_VERSION as i64)),
    ("DST_GENL_MCGRP_EVENTS", Define::Str(DST_GENL_MCGRP_EVENTS)),
    ("DST_CMD_MAX", Define::Int(DST_CMD_MAX as i64)),
    ("DST_A_MAX", Define::Int(DST_A_MAX as i64)),
    ("DST_ALLOW_A_MAX", Define::Int(DST_ALLOW_A_MAX as i64)),
    ("DST_CLIENT_A_MAX", Define::Int(DST_CLIENT_A_MAX as i64)),
    ("DST_DEFAULT_PORT", Define::Int(DST_DEFAULT_PORT as i64)),
    (
        "DST_LOSS_TIMEOUT_INFINITE",
        Define::Int(DST_LOSS_TIMEOUT_INFINITE as i64),
    ),
];

fn enumerator_name(enum_name: &str, value: u32) -> Option<&'static str> {
    ENUMS
        .iter()
        .find(|(name, _)| *name == enum_name)
        .and_then(|(_, items)| items.iter().find(|(_, v)| *v == value))
        .map(|(name, _)| *name)
}

/// C name of a top-level attribute number, for error messages.
pub fn attr_name(kind: u16) -> Option<&'static str> {
    enumerator_name("dst_attr", kind.into())
}

/// C name of an attribute nested in `DST_A_ALLOW`, for error messages.
pub fn allow_attr_name(kind: u16) -> Option<&'static str> {
    enumerator_name("dst_allow_attr", kind.into())
}

/// C name of an attribute nested in `DST_A_CLIENT`, for error messages.
pub fn client_attr_name(kind: u16) -> Option<&'static str> {
    enumerator_name("dst_client_attr", kind.into())
}

/// C name of a command number, for error messages.
pub fn cmd_name(cmd: u8) -> Option<&'static str> {
    enumerator_name("dst_cmd", cmd.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const HEADER: &str = include_str!("../../../include/uapi/linux/dst.h");

    /// Removes `/* */` and `//` comments.
    fn strip_comments(src: &str) -> String {
        let mut out = String::with_capacity(src.len());
        let mut rest = src;
        while let Some(start) = rest.find("/*") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find("*/").expect("unterminated comment");
            rest = &rest[start + end + 2..];
            out.push(' ');
        }
        out.push_str(rest);
        out.lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn parse_int(s: &str) -> i64 {
        let s = s.trim();
        let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) => i64::from_str_radix(hex, 16),
            None => s.parse(),
        };
        parsed.unwrap_or_else(|_| panic!("cannot parse integer {s:?}"))
    }

    /// `enum name { A, B = 5, C, }` -> name -> [(A, 0), (B, 5), (C, 6)],
    /// sentinels included.
    fn parse_enums(src: &str) -> BTreeMap<String, Vec<(String, i64)>> {
        let mut enums = BTreeMap::new();
        let mut rest = src;
        while let Some(pos) = rest.find("enum ") {
            rest = &rest[pos + 5..];
            let open = rest.find('{').expect("enum without body");
            let name = rest[..open].trim().to_string();
            let close = rest.find('}').expect("unterminated enum");
            let body = &rest[open + 1..close];
            rest = &rest[close + 1..];
            let mut next = 0i64;
            let mut items = Vec::new();
            for item in body.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (ident, value) = match item.split_once('=') {
                    Some((i, v)) => (i.trim(), parse_int(v)),
                    None => (item, next),
                };
                items.push((ident.to_string(), value));
                next = value + 1;
            }
            assert!(enums.insert(name.clone(), items).is_none(), "{name} twice");
        }
        enums
    }

    /// Every `#define NAME VALUE` with a value (the include guard has none).
    fn parse_defines(src: &str, enumerators: &BTreeMap<String, i64>) -> BTreeMap<String, Define> {
        let mut defines = BTreeMap::new();
        for line in src.lines() {
            let Some(rest) = line.trim().strip_prefix("#define") else {
                continue;
            };
            let mut parts = rest.trim().splitn(2, char::is_whitespace);
            let name = parts.next().unwrap().to_string();
            let value = parts.next().map(str::trim).unwrap_or("");
            if value.is_empty() {
                continue;
            }
            let value = if let Some(s) = value.strip_prefix('"') {
                let s = s.strip_suffix('"').expect("unterminated string");
                Define::Str(Box::leak(s.to_string().into_boxed_str()))
            } else if let Some(expr) = value.strip_prefix('(') {
                // Only the form used for *_MAX: (__ENUMERATOR - N).
                let expr = expr.strip_suffix(')').expect("unbalanced ()");
                let (ident, minus) = expr
                    .split_once('-')
                    .unwrap_or_else(|| panic!("unsupported #define {name}: {value}"));
                let base = enumerators
                    .get(ident.trim())
                    .unwrap_or_else(|| panic!("{name}: unknown {ident}"));
                Define::Int(base - parse_int(minus))
            } else {
                Define::Int(parse_int(value))
            };
            defines.insert(name, value);
        }
        defines
    }

    #[test]
    fn header_enums_match() {
        let src = strip_comments(HEADER);
        let enums = parse_enums(&src);
        let c_names: Vec<_> = enums.keys().cloned().collect();
        let mut rust_names: Vec<_> = ENUMS.iter().map(|(n, _)| n.to_string()).collect();
        rust_names.sort();
        assert_eq!(c_names, rust_names, "enums in dst.h vs uapi::ENUMS");

        for (name, rust_items) in ENUMS {
            let c_items: Vec<(String, i64)> = enums[*name]
                .iter()
                .filter(|(ident, _)| !ident.starts_with("__"))
                .cloned()
                .collect();
            let rust_items: Vec<(String, i64)> = rust_items
                .iter()
                .map(|(ident, v)| (ident.to_string(), i64::from(*v)))
                .collect();
            assert_eq!(c_items, rust_items, "enum {name}: dst.h vs uapi.rs");
        }
    }

    #[test]
    fn header_defines_match() {
        let src = strip_comments(HEADER);
        let enumerators: BTreeMap<String, i64> =
            parse_enums(&src).into_values().flatten().collect();
        let c_defines = parse_defines(&src, &enumerators);
        let rust_defines: BTreeMap<String, Define> =
            DEFINES.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        assert_eq!(
            c_defines, rust_defines,
            "#defines in dst.h vs uapi::DEFINES"
        );
    }

    #[test]
    fn header_parser_counts_from_zero_and_honours_assignments() {
        let enums = parse_enums(&strip_comments("enum e { A, B /* c */, C = 0x10, D, };"));
        assert_eq!(
            enums["e"],
            vec![
                ("A".to_string(), 0),
                ("B".to_string(), 1),
                ("C".to_string(), 16),
                ("D".to_string(), 17)
            ]
        );
        let stripped = strip_comments("enum e { A, /* x, y */ B };");
        assert_eq!(parse_enums(&stripped)["e"].len(), 2);
    }

    #[test]
    fn names_for_messages() {
        assert_eq!(attr_name(DST_A_VERSION), Some("DST_A_VERSION"));
        assert_eq!(enumerator_name("dst_cmd", 1), Some("DST_CMD_STATUS"));
        assert_eq!(attr_name(DST_A_QUEUE_DEPTH), Some("DST_A_QUEUE_DEPTH"));
        assert_eq!(cmd_name(DST_CMD_LIST), Some("DST_CMD_LIST"));
        assert_eq!(cmd_name(DST_CMD_MAX + 1), None);
        assert_eq!(enumerator_name("dst_kind", 2), Some("DST_KIND_DEVICE"));
        assert_eq!(enumerator_name("dst_state", 3), Some("DST_STATE_CLOSING"));
        assert_eq!(enumerator_name("dst_state", 4), Some("DST_STATE_FAILED"));
        assert_eq!(cmd_name(DST_CMD_DEV_SET), Some("DST_CMD_DEV_SET"));
        assert_eq!(cmd_name(DST_CMD_EVENT), Some("DST_CMD_EVENT"));
        assert_eq!(attr_name(DST_A_BYTES_WRITTEN), Some("DST_A_BYTES_WRITTEN"));
        assert_eq!(enumerator_name("dst_event", 5), Some("DST_EVENT_DELETED"));
        assert_eq!(attr_name(DST_A_RESENDS), Some("DST_A_RESENDS"));
        assert_eq!(
            attr_name(DST_A_LOSS_TIMEOUT_MS),
            Some("DST_A_LOSS_TIMEOUT_MS")
        );
        assert_eq!(attr_name(999), None);
        assert_eq!(cmd_name(DST_CMD_CONFIG), Some("DST_CMD_CONFIG"));
        assert_eq!(
            cmd_name(DST_CMD_EXPORT_RELEASE),
            Some("DST_CMD_EXPORT_RELEASE")
        );
        assert_eq!(
            cmd_name(DST_CMD_EXPORT_RESIZE),
            Some("DST_CMD_EXPORT_RESIZE")
        );
        assert_eq!(attr_name(DST_A_SHARED), Some("DST_A_SHARED"));
        assert_eq!(attr_name(DST_A_WRITER_PORT), Some("DST_A_WRITER_PORT"));
        assert_eq!(attr_name(DST_A_REFUSED), Some("DST_A_REFUSED"));
        assert_eq!(attr_name(DST_A_CLIENT_ID), Some("DST_A_CLIENT_ID"));
        assert_eq!(attr_name(DST_A_FORCE), Some("DST_A_FORCE"));
        assert_eq!(attr_name(DST_A_NAME), Some("DST_A_NAME"));
        assert_eq!(attr_name(DST_A_CLIENT_NAME), Some("DST_A_CLIENT_NAME"));
        assert_eq!(attr_name(DST_A_REKEY_MIB), Some("DST_A_REKEY_MIB"));
        assert_eq!(attr_name(DST_A_REKEY_SECONDS), Some("DST_A_REKEY_SECONDS"));
        assert_eq!(attr_name(DST_A_KEY), Some("DST_A_KEY"));
        assert_eq!(
            allow_attr_name(DST_ALLOW_A_PREFIX_LEN),
            Some("DST_ALLOW_A_PREFIX_LEN")
        );
        assert_eq!(attr_name(DST_A_CLIENT), Some("DST_A_CLIENT"));
        assert_eq!(
            client_attr_name(DST_CLIENT_A_KEY_DESC),
            Some("DST_CLIENT_A_KEY_DESC")
        );
        assert_eq!(client_attr_name(DST_CLIENT_A_MAX + 1), None);
        assert_eq!(enumerator_name("dst_protection", 3), Some("DST_PROT_AEAD"));
        assert_eq!(
            enumerator_name("dst_event", 8),
            Some("DST_EVENT_SESSION_REFUSED")
        );
    }
}
