// SPDX-License-Identifier: GPL-2.0

//! When a connection's keys are replaced: the module-wide limits on what
//! one key may protect, in bytes, messages and time, and why they are what
//! they are. Each direction of a connection replaces its key on its own,
//! with a KEY_UPDATE message (`Documentation/protocol.md`, "Key update"),
//! as TLS 1.3's KeyUpdate does; `security.rs` does the replacing.

use kernel::{
    sync::atomic::{Atomic, Relaxed},
    time::{Delta, Instant, Monotonic},
};

/// Default bytes one key protects before it is replaced: 64 GiB. AES-GCM's
/// confidentiality advantage after σ 16-byte blocks under one key is about
/// σ²/2^129 (the CFRG's AEAD usage limits); TLS 1.3 keeps it below 2^-57,
/// which allows 2^36 blocks (1 TiB). 64 GiB (2^32 blocks) gives 2^-65 and
/// leaves the margin a late replacement needs ([`HARD_FACTOR`]).
/// ChaCha20-Poly1305 and HMAC-SHA2 allow far more; one rule serves all.
pub(crate) const DEFAULT_BYTES: u64 = 64 << 30;

/// Default time one key is used: an hour. It bounds what a key read out of
/// a host's memory reveals, since the next key derives one way from it:
/// traffic under earlier keys stays protected.
pub(crate) const DEFAULT_SECONDS: u32 = 3600;

/// Messages one key protects at most, whatever their size: a sequence
/// number never comes near wrapping.
const MAX_MESSAGES: u64 = 1 << 32;

/// A key whose replacement could not be made (no memory for the next
/// transform: it is tried again with each message) protects at most this
/// many times the limits; then sealing fails, the connection ends, and the
/// reconnect's handshake makes new keys.
const HARD_FACTOR: u64 = 2;

static BYTES: Atomic<u64> = Atomic::new(DEFAULT_BYTES);
static SECONDS: Atomic<u32> = Atomic::new(DEFAULT_SECONDS);

/// Sets the limits (`DST_CMD_CONFIG`); `None` keeps one. Applies to every
/// key from its next message on.
pub(crate) fn set(bytes: Option<u64>, seconds: Option<u32>) {
    if let Some(b) = bytes {
        BYTES.store(b.max(1), Relaxed);
    }
    if let Some(s) = seconds {
        SECONDS.store(s.max(1), Relaxed);
    }
}

/// The limits: bytes and seconds per key.
pub(crate) fn limits() -> (u64, u32) {
    (BYTES.load(Relaxed), SECONDS.load(Relaxed))
}

/// Whether a key that sealed `bytes` in `messages` messages since `since`
/// is due to be replaced.
pub(crate) fn due(bytes: u64, messages: u64, since: Instant<Monotonic>) -> bool {
    let (max_bytes, seconds) = limits();
    bytes >= max_bytes
        || messages >= MAX_MESSAGES
        || since.elapsed() >= Delta::from_secs(seconds.into())
}

/// Whether a key that sealed `bytes` in `messages` messages may seal no
/// more: its replacement is long overdue.
pub(crate) fn expired(bytes: u64, messages: u64) -> bool {
    let (max_bytes, _) = limits();
    bytes >= max_bytes.saturating_mul(HARD_FACTOR) || messages >= MAX_MESSAGES * HARD_FACTOR
}
