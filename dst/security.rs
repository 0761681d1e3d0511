// SPDX-License-Identifier: GPL-2.0

//! The security layer of a connection: the authenticated handshake's proofs
//! and keys, and the protection of every message after it (trailers with
//! checksums, MACs or AEAD tags, sequence numbers and the replay window).
//!
//! `Documentation/protocol.md` ("Security") specifies the bytes; `proto.rs`
//! holds the layouts and `crypto.rs` the kernel crypto wrappers. This file
//! decides what is computed over what, for both the local node and the
//! export.

use kernel::{
    prelude::*,
    sync::{atomic::Atomic, atomic::Relaxed, Arc},
};

use crate::{
    crypto::{self, Key, Protector, ReplayWindow},
    proto::{Protection, ProtoError, Security, AUTH_LEN, HEADER_LEN, HELLO_LEN},
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
    /// number is a replay. An integrity error, the peer's or the network's.
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

/// A [`Protector`] for `sec` with the session key `key` (ignored by modes
/// without a key).
fn protector(sec: &Security, key: &Key) -> Result<Protector> {
    let key = sec.protection.needs_key().then_some(key);
    Protector::new(sec.protection, sec.alg.as_bytes(), key)
}

/// The protection settings of an export or a device.
pub(crate) struct SecurityConfig {
    /// Mode, key use and algorithm, as carried in the HELLO.
    pub(crate) security: Security,
    /// The pre-shared key, if any; zeroed when dropped.
    pub(crate) key: Option<Key>,
}

/// Checks that the kernel has the algorithm `sec` names, so that a typo is
/// refused when the export or device is configured, not at connect time.
pub(crate) fn check_alg(sec: &Security) -> Result {
    protector(sec, &Key::new(&[0u8; crypto::KEY_LEN])?).map(drop)
}

/// A fresh nonce: random with a key, zero without.
pub(crate) fn nonce(cfg: &SecurityConfig) -> [u8; AUTH_LEN] {
    let mut n = [0u8; AUTH_LEN];
    if cfg.key.is_some() {
        crypto::random_bytes(&mut n);
    }
    n
}

/// `proof_local` over the HELLO body and the export's nonce.
pub(crate) fn proof_local(
    key: &Key,
    hello: &[u8; HELLO_LEN],
    ns: &[u8; AUTH_LEN],
) -> [u8; AUTH_LEN] {
    crypto::proof_local(key, hello, ns)
}

/// `proof_export` over the HELLO body, the export's nonce and the first 48
/// bytes of the HELLO_REPLY body.
pub(crate) fn proof_export(
    key: &Key,
    hello: &[u8; HELLO_LEN],
    ns: &[u8; AUTH_LEN],
    grant: &[u8; 48],
) -> [u8; AUTH_LEN] {
    crypto::proof_export(key, hello, ns, grant)
}

/// Whether two proofs are equal, in constant time.
pub(crate) fn proof_ok(a: &[u8; AUTH_LEN], b: &[u8; AUTH_LEN]) -> bool {
    crypto::ct_eq(a, b)
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
/// handshake with nonces `nc` (local) and `ns` (export; zero without a key).
pub(crate) fn session(
    cfg: &SecurityConfig,
    role: Role,
    nc: &[u8; AUTH_LEN],
    ns: &[u8; AUTH_LEN],
) -> Result<(Sealer, Opener)> {
    let sec = &cfg.security;
    let keys = match &cfg.key {
        Some(psk) => crypto::derive_session_keys(psk, nc, ns)?,
        // Modes without a key ignore it; any valid key will do.
        None => crypto::SessionKeys {
            local_to_export: Key::new(&[0u8; crypto::KEY_LEN])?,
            export_to_local: Key::new(&[0u8; crypto::KEY_LEN])?,
        },
    };
    let (tx_key, rx_key) = match role {
        Role::Local => (&keys.local_to_export, &keys.export_to_local),
        Role::Export => (&keys.export_to_local, &keys.local_to_export),
    };
    let sealer = Sealer {
        protector: protector(sec, tx_key)?,
        protection: sec.protection,
        seq: Atomic::new(0),
    };
    let opener = Opener {
        protector: Arc::new(protector(sec, rx_key)?, GFP_KERNEL)?,
        window: ReplayWindow::new(),
    };
    Ok((sealer, opener))
}

/// The sending half: protects messages. Safe to use from several threads;
/// each message takes the next sequence number.
pub(crate) struct Sealer {
    protector: Protector,
    protection: Protection,
    seq: Atomic<u64>,
}

impl Sealer {
    /// The mode.
    pub(crate) fn protection(&self) -> Protection {
        self.protection
    }

    /// Protects one message: computes its trailer into `trailer` and, for
    /// AEAD, encrypts the payload from `src` into `dst` (which may be the
    /// same pages). Returns the trailer length.
    pub(crate) fn seal(
        &self,
        header: &[u8; HEADER_LEN],
        src: &Segments<'_>,
        dst: &Segments<'_>,
        trailer: &mut [u8; MAX_TRAILER],
    ) -> Result<usize> {
        let n = self.protector.trailer_len();
        if n == 0 {
            return Ok(0);
        }
        let seq = self.seq.fetch_add(1, Relaxed);
        let out = trailer.get_mut(..n).ok_or(EINVAL)?;
        self.protector.seal(seq, header, src, dst, out)?;
        Ok(n)
    }

    /// Protects a message without payload: [`Sealer::seal`] of the header
    /// alone.
    pub(crate) fn seal_header(
        &self,
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
    window: ReplayWindow,
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
    /// in stream order: the sequence number against the replay window.
    /// The returned [`Check`] holds the message's header and trailer and
    /// verifies it, in any task: this is how a receiver hands a message's
    /// check to the crypto pool (the local node's READ replies, the
    /// export's WRITEs).
    pub(crate) fn admit(
        &mut self,
        header: &[u8; HEADER_LEN],
        trailer: Trailer,
    ) -> Result<Check, ProtoError> {
        // A forged seq may move the window, but then the message does not
        // verify and the connection ends with it.
        let seq = self.protector.trailer_seq(trailer.bytes());
        if let Some(seq) = seq {
            if !self.window.accept(seq) {
                return Err(ProtoError::Replay);
            }
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
