// SPDX-License-Identifier: GPL-2.0

//! The security layer of a connection: its protection settings, and the
//! protection of every message after the handshake (trailers with
//! checksums, MACs or AEAD tags, and sequence numbers that must arrive in
//! order), with each direction's key replaced as `rekey.rs` says.
//!
//! `Documentation/protocol.md` ("Security") specifies the bytes; `proto.rs`
//! holds the layouts, `handshake.rs` the key exchange that yields the
//! session keys and `crypto.rs` the kernel crypto wrappers. This file
//! decides what is computed over what, for both the local node and the
//! export.

use kernel::{
    prelude::*,
    sync::Arc,
    time::{Instant, Monotonic},
};

use crate::{
    crypto::{self, Key, Protector, SessionKeys},
    error::code,
    handshake,
    proto::{Name, Protection, ProtoError, Security, HEADER_LEN},
    rekey,
    trans::Trailer,
};

pub(crate) use crate::crypto::Segments;

/// Longest trailer: a sequence number and an HMAC-SHA512 digest.
pub(crate) const MAX_TRAILER: usize = crypto::MAX_TRAILER_LEN;

/// The payload of a message that has none.
pub(crate) fn no_data() -> Segments<'static> {
    // SAFETY: no segments, so no pages to keep valid.
    unsafe { Segments::from_raw(&[]) }
}

/// Why a received message was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// The message is bad: its trailer did not verify or its sequence
    /// number is not the next one. An integrity error, the peer's or the
    /// network's.
    Message(ProtoError),
    /// The message could not be checked here (a local failure: no memory, a
    /// crypto driver error). It says nothing about the message and is not an
    /// integrity error; the message must not be used all the same.
    Local(Error),
}

impl Rejected {
    /// Whether this counts as an integrity error.
    pub(crate) fn is_integrity(&self) -> bool {
        matches!(self, Rejected::Message(_))
    }

    /// A description for log messages.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Rejected::Message(e) => e.as_str(),
            Rejected::Local(e) if *e == ENOMEM => "no memory to check the message",
            Rejected::Local(_) => "local crypto error while checking the message",
        }
    }
}

impl From<ProtoError> for Rejected {
    fn from(e: ProtoError) -> Self {
        Rejected::Message(e)
    }
}

/// A [`Protector`] for `sec` with the session key `key` (`None` for the
/// modes without a key).
fn protector(sec: &Security, key: Option<&Key>) -> Result<Protector> {
    Protector::new(sec.protection, sec.alg.as_bytes(), key)
}

/// The protection settings of an export or a device.
pub(crate) struct SecurityConfig {
    /// Mode, key use and algorithm, as carried in the HELLO.
    pub(crate) security: Security,
    /// The pre-shared key, if any; zeroed when dropped.
    pub(crate) key: Option<Key>,
}

/// A client identity with a key of its own at an export: only the holder
/// of that key can connect as that client, and what it may do (read only,
/// fence its own older connections) is bound to the key, not to an address.
pub(crate) struct ClientKey {
    pub(crate) name: Name,
    pub(crate) key: Key,
    pub(crate) read_only: bool,
}

/// An export's clients with keys of their own, by identity; any other
/// client uses the export's key, if it has one.
pub(crate) struct ClientKeys(KVec<ClientKey>);

impl ClientKeys {
    /// Room for `n` clients.
    pub(crate) fn with_capacity(n: usize) -> Result<Self> {
        Ok(ClientKeys(KVec::with_capacity(n, GFP_KERNEL)?))
    }

    /// Adds a client; `EEXIST` if one has that name already.
    pub(crate) fn add(&mut self, name: Name, key: Key, read_only: bool) -> Result {
        if self.get(&name).is_some() {
            return Err(EEXIST);
        }
        self.0.push(
            ClientKey {
                name,
                key,
                read_only,
            },
            GFP_KERNEL,
        )?;
        Ok(())
    }

    /// The client named `name`, if it has a key of its own.
    pub(crate) fn get(&self, name: &Name) -> Option<&ClientKey> {
        self.0.iter().find(|c| c.name == *name)
    }

    /// Whether any client has a key of its own.
    pub(crate) fn has_any(&self) -> bool {
        !self.0.is_empty()
    }
}

/// The algorithms hmac and aead modes accept: keyed hashes with a full
/// 256-bit or longer tag, and AEADs with a 128-bit tag, all with a
/// 96-bit nonce where they take one. Anything else the kernel may offer
/// under those types (`hmac(md5)`, `vmac64(aes)`, raw CBC-MAC, ...) is
/// refused rather than analysed.
const ALLOWED_ALGS: [(Protection, &[u8]); 5] = [
    (Protection::Hmac, b"hmac(sha256)"),
    (Protection::Hmac, b"hmac(sha384)"),
    (Protection::Hmac, b"hmac(sha512)"),
    (Protection::Aead, b"gcm(aes)"),
    (Protection::Aead, b"rfc7539(chacha20,poly1305)"),
];

/// Checks that `sec` names an allowed algorithm ([`ALLOWED_ALGS`]; `EPERM`
/// otherwise) which the kernel has, so that a typo is refused when the
/// export or device is configured, not at connect time.
pub(crate) fn check_alg(sec: &Security) -> Result {
    let alg = sec.alg.as_bytes();
    if sec.protection.has_alg()
        && !ALLOWED_ALGS
            .iter()
            .any(|&(mode, name)| mode == sec.protection && name == alg)
    {
        return Err(EPERM);
    }
    let key = Key::new(&[0u8; crypto::KEY_LEN])?;
    protector(sec, sec.protection.needs_key().then_some(&key)).map(drop)
}

/// Which end of the connection this is; decides which key seals.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The local node (seals with `K_le`, opens with `K_el`).
    Local,
    /// The export (seals with `K_el`, opens with `K_le`).
    Export,
}

/// Builds the two halves of a connection's protection after a successful
/// handshake, which gave session `keys` if it was authenticated.
pub(crate) fn session(
    sec: &Security,
    role: Role,
    keys: Option<SessionKeys>,
) -> Result<(Sealer, Opener)> {
    let (tx_key, rx_key) = match keys {
        // Only hmac and aead use keys.
        Some(k) if sec.protection.needs_key() => match role {
            Role::Local => (Some(k.local_to_export), Some(k.export_to_local)),
            Role::Export => (Some(k.export_to_local), Some(k.local_to_export)),
        },
        // hmac and aead need a key file, hence an authenticated handshake.
        None if sec.protection.needs_key() => return Err(EINVAL),
        _ => (None, None),
    };
    let sealer = Sealer {
        protector: protector(sec, tx_key.as_ref())?,
        sec: *sec,
        key: tx_key,
        next: 0,
        sealed: 0,
        since: Instant::now(),
    };
    let opener = Opener {
        protector: Arc::new(protector(sec, rx_key.as_ref())?, GFP_KERNEL)?,
        sec: *sec,
        key: rx_key,
        next: 0,
    };
    Ok((sealer, opener))
}

/// The sending half: protects messages, each with the next sequence number.
/// Sealing takes `&mut self`, so its owner seals under the lock it sends
/// under, and messages go out in the order of their sequence numbers, which
/// is the only order the receiver accepts.
pub(crate) struct Sealer {
    protector: Protector,
    sec: Security,
    /// The key `protector` seals with (hmac and aead), from which the next
    /// one derives.
    key: Option<Key>,
    /// The sequence number of the next message.
    next: u64,
    /// Bytes sealed with the key, and since when it is in use.
    sealed: u64,
    since: Instant<Monotonic>,
}

impl Sealer {
    /// The mode.
    pub(crate) fn protection(&self) -> Protection {
        self.sec.protection
    }

    /// Protects one message: computes its trailer into `trailer` and, for
    /// AEAD, encrypts the payload from `src` into `dst` (which may be the
    /// same pages). Returns the trailer length. The message must be sent
    /// before the next one is sealed. Fails with `EKEYEXPIRED` once the
    /// key is long overdue for replacement (see [`Sealer::update_due`]):
    /// sequence numbers never wrap, and no key protects more than
    /// `rekey.rs` allows.
    pub(crate) fn seal(
        &mut self,
        header: &[u8; HEADER_LEN],
        src: &Segments<'_>,
        dst: &Segments<'_>,
        trailer: &mut [u8; MAX_TRAILER],
    ) -> Result<usize> {
        let n = self.protector.trailer_len();
        if n == 0 {
            return Ok(0);
        }
        // Only keys wear out: crc32c has none.
        if self.key.is_some() && rekey::expired(self.sealed, self.next) {
            return Err(code::ekeyexpired());
        }
        let out = trailer.get_mut(..n).ok_or(EINVAL)?;
        self.protector.seal(self.next, header, src, dst, out)?;
        self.next += 1;
        self.sealed = self.sealed.saturating_add((HEADER_LEN + src.len()) as u64);
        Ok(n)
    }

    /// Whether the key is due to be replaced: the owner then sends a
    /// KEY_UPDATE ([`Sealer::update_key`]) before its next message.
    pub(crate) fn update_due(&self) -> bool {
        self.key.is_some() && rekey::due(self.sealed, self.next, self.since)
    }

    /// Seals a KEY_UPDATE (header `hb`) with the current key into `trailer`
    /// and moves to the next key: what is sealed after it uses that one,
    /// from sequence number 0. Returns the trailer length. The next key's
    /// transform is made first, so that on failure (`ENOMEM`) nothing
    /// changed.
    pub(crate) fn update_key(
        &mut self,
        hb: &[u8; HEADER_LEN],
        trailer: &mut [u8; MAX_TRAILER],
    ) -> Result<usize> {
        let key = handshake::next_key(self.key.as_ref().ok_or(EINVAL)?)?;
        let protector = protector(&self.sec, Some(&key))?;
        let n = self.seal_header(hb, trailer)?;
        self.protector = protector;
        self.key = Some(key);
        self.next = 0;
        self.sealed = 0;
        self.since = Instant::now();
        Ok(n)
    }

    /// Protects a message without payload: [`Sealer::seal`] of the header
    /// alone.
    pub(crate) fn seal_header(
        &mut self,
        header: &[u8; HEADER_LEN],
        trailer: &mut [u8; MAX_TRAILER],
    ) -> Result<usize> {
        self.seal(header, &no_data(), &no_data(), trailer)
    }
}

/// The receiving half: checks messages. Used by the receiving thread; the
/// check itself may be handed to another task ([`Opener::admit`]).
pub(crate) struct Opener {
    protector: Arc<Protector>,
    sec: Security,
    /// The key `protector` opens with (hmac and aead), from which the next
    /// one derives.
    key: Option<Key>,
    /// The sequence number the next message must carry.
    next: u64,
}

impl Opener {
    /// The trailer length of every message.
    pub(crate) fn trailer_len(&self) -> usize {
        self.protector.trailer_len()
    }

    /// Whether messages carry a trailer at all.
    pub(crate) fn protected(&self) -> bool {
        self.protector.trailer_len() > 0
    }

    /// A KEY_UPDATE arrived and verified: what follows is opened with the
    /// next key, from sequence number 0. Checks of earlier messages still
    /// pending keep the key they were admitted with. Without keys (modes
    /// none and crc32c) a KEY_UPDATE is a protocol error.
    pub(crate) fn update_key(&mut self) -> Result<(), Rejected> {
        let key = self
            .key
            .as_ref()
            .ok_or(Rejected::Message(ProtoError::BadKind))?;
        let key = handshake::next_key(key).map_err(Rejected::Local)?;
        let protector = protector(&self.sec, Some(&key)).map_err(Rejected::Local)?;
        self.protector = Arc::new(protector, GFP_KERNEL).map_err(|e| Rejected::Local(e.into()))?;
        self.key = Some(key);
        self.next = 0;
        Ok(())
    }

    /// Checks one received message, whose header is `header`, payload in
    /// `data` and trailer `trailer`; for AEAD it decrypts `data` in place.
    /// Nothing of the message may be used unless this succeeds.
    pub(crate) fn open(
        &mut self,
        header: &[u8; HEADER_LEN],
        data: &Segments<'_>,
        trailer: Trailer,
    ) -> Result<(), Rejected> {
        self.admit(header, trailer)?.verify(data)
    }

    /// The part of [`Opener::open`] that must run in the receiving thread,
    /// in stream order: the sequence number must be the next one. A message
    /// replayed, reordered, or following a dropped one is refused.
    /// The returned [`Check`] holds the message's header and trailer and
    /// verifies it, in any task: this is how a receiver hands a message's
    /// check to the crypto pool (the local node's READ replies, the
    /// export's WRITEs).
    pub(crate) fn admit(
        &mut self,
        header: &[u8; HEADER_LEN],
        trailer: Trailer,
    ) -> Result<Check, ProtoError> {
        // The seq is checked before the tag: a wrong one ends the
        // connection either way.
        let seq = self.protector.trailer_seq(trailer.bytes());
        if let Some(seq) = seq {
            if seq != self.next {
                return Err(ProtoError::OutOfOrder);
            }
            // At u64::MAX the sender refuses to seal more.
            self.next = seq.saturating_add(1);
        }
        Ok(Check {
            protector: self.protector.clone(),
            seq: seq.unwrap_or(0),
            header: *header,
            trailer,
        })
    }
}

/// One admitted message, to be verified, which may happen on a crypto
/// worker: its header and trailer, and what checks them.
pub(crate) struct Check {
    protector: Arc<Protector>,
    seq: u64,
    header: [u8; HEADER_LEN],
    trailer: Trailer,
}

impl Check {
    /// Verifies the message, whose payload is `data` (decrypting it in
    /// place for AEAD). Only a message that does not verify is
    /// [`ProtoError::BadTag`]; a failure to check it is [`Rejected::Local`].
    pub(crate) fn verify(&self, data: &Segments<'_>) -> Result<(), Rejected> {
        self.protector
            .open(self.seq, &self.header, data, self.trailer.bytes())
            .map_err(|e| {
                if crypto::is_bad_msg(e) {
                    Rejected::Message(ProtoError::BadTag)
                } else {
                    Rejected::Local(e)
                }
            })
    }
}
