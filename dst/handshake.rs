// SPDX-License-Identifier: GPL-2.0

//! The cryptography of the authenticated handshake (protocol version 2): the
//! ephemeral X25519 exchange, the transcript hashes and the HKDF key
//! schedule that turns the key file, both identities and the exchange into
//! the two proofs and the session keys.
//!
//! `Documentation/protocol.md` ("Handshake with security") gives the
//! formulas; the names here follow them. The handshake's messages are sent
//! and checked by `local_node/connect.rs` and `export/listener.rs`; this
//! file only computes. Every secret lives in a [`Key`], which erases itself.

use kernel::{bindings, error::to_result, prelude::*};

use crate::{
    crypto::{self, Key, SessionKeys, KEY_LEN, SHA256_LEN},
    proto::{
        Name, KEY_SHARE_LEN, LABEL_EXPORT_PROOF, LABEL_KEY_EL, LABEL_KEY_LE, LABEL_KEY_UPDATE,
        LABEL_LOCAL_PROOF, LABEL_PAIR_KEY,
    },
};

mod ffi {
    use kernel::{bindings, ffi::c_int};

    extern "C" {
        pub(super) fn dst_sha256_update(
            ctx: *mut bindings::sha256_ctx,
            data: *const u8,
            len: usize,
        );
        pub(super) fn dst_x25519_keypair(secret: *mut u8, public: *mut u8) -> c_int;
        pub(super) fn dst_x25519(out: *mut u8, secret: *const u8, public: *const u8) -> bool;
    }
}

/// A transcript hash: SHA-256 of the concatenation of `parts`.
pub(crate) fn transcript(parts: &[&[u8]]) -> [u8; SHA256_LEN] {
    let mut ctx = bindings::sha256_ctx::default();
    let mut out = [0; SHA256_LEN];
    // SAFETY: `ctx` is writable.
    unsafe { bindings::sha256_init(&mut ctx) };
    for p in parts {
        // SAFETY: `ctx` was initialised above; `p` is readable for its
        // length.
        unsafe { ffi::dst_sha256_update(&mut ctx, p.as_ptr(), p.len()) };
    }
    // SAFETY: `ctx` is initialised; `out` holds SHA256_LEN bytes.
    unsafe { bindings::sha256_final(&mut ctx, out.as_mut_ptr()) };
    out
}

/// One side's ephemeral X25519 key pair, made for one handshake. The
/// private half is erased when this is dropped, which is what makes a
/// recorded connection undecryptable with the key file alone.
pub(crate) struct Ephemeral {
    secret: Key,
    public: [u8; KEY_SHARE_LEN],
}

impl Ephemeral {
    /// A fresh key pair. Waits until the kernel's random number generator
    /// is seeded (early in boot); fails only if a signal ends that wait.
    pub(crate) fn new() -> Result<Self> {
        let mut public = [0; KEY_SHARE_LEN];
        let secret = Key::derived(|s| {
            // SAFETY: both buffers hold 32 bytes and are writable.
            to_result(unsafe { ffi::dst_x25519_keypair(s.as_mut_ptr(), public.as_mut_ptr()) })
        })?;
        Ok(Ephemeral { secret, public })
    }

    /// The public key: the key share this side sends.
    pub(crate) fn public(&self) -> &[u8; KEY_SHARE_LEN] {
        &self.public
    }

    /// `DH`, the secret shared with the peer whose key share is `peer`.
    /// Consumes the pair: a private key serves one exchange only. `EINVAL`
    /// if the result is all zero (a key share of small order, which would
    /// make `DH` known to anyone).
    pub(crate) fn agree(self, peer: &[u8; KEY_SHARE_LEN]) -> Result<Key> {
        x25519(&self.secret, peer)
    }
}

/// `X25519(secret, public)`; `EINVAL` if the result is all zero.
fn x25519(secret: &Key, public: &[u8; KEY_SHARE_LEN]) -> Result<Key> {
    let secret = secret.as_bytes().first_chunk::<KEY_LEN>().ok_or(EINVAL)?;
    Key::derived(|out| {
        // SAFETY: `out`, `secret` and `public` each hold 32 bytes.
        let ok = unsafe { ffi::dst_x25519(out.as_mut_ptr(), secret.as_ptr(), public.as_ptr()) };
        if ok {
            Ok(())
        } else {
            Err(EINVAL)
        }
    })
}

/// The keyed part of one handshake: `PRK`, from which both proofs and the
/// session keys are expanded.
pub(crate) struct Schedule {
    prk: Key,
}

/// The last byte of `HKDF-Expand`'s input for its first (and here only)
/// 32-byte block: `HKDF-Expand(PRK, info)` is `HMAC(PRK, info || 0x01)`.
const FIRST_BLOCK: &[u8] = &[1];

impl Schedule {
    /// `PSK_pair` from the key file `psk` and the identities of the client
    /// and the export, then `PRK = HKDF-Extract(PSK_pair, DH)`.
    pub(crate) fn new(psk: &Key, client: &Name, export: &Name, dh: &Key) -> Result<Self> {
        let (c, x) = (client.as_bytes(), export.as_bytes());
        // Names are shorter than NAME_LEN (64), so their lengths fit a byte.
        let (c_len, x_len) = ([c.len() as u8], [x.len() as u8]);
        let extracted = Key::derived(|out| {
            crypto::hmac_sha256_into(LABEL_PAIR_KEY, &[psk.as_bytes()], out);
            Ok(())
        })?;
        let pair = Key::derived(|out| {
            let info: [&[u8]; 5] = [&c_len, c, &x_len, x, FIRST_BLOCK];
            crypto::hmac_sha256_into(extracted.as_bytes(), &info, out);
            Ok(())
        })?;
        let prk = Key::derived(|out| {
            crypto::hmac_sha256_into(pair.as_bytes(), &[dh.as_bytes()], out);
            Ok(())
        })?;
        Ok(Schedule { prk })
    }

    /// `HKDF-Expand(PRK, label || th)` into `out`.
    fn expand_into(&self, label: &[u8], th: &[u8; SHA256_LEN], out: &mut [u8; KEY_LEN]) {
        crypto::hmac_sha256_into(self.prk.as_bytes(), &[label, th, FIRST_BLOCK], out);
    }

    /// `HKDF-Expand(PRK, label || th)`.
    fn expand(&self, label: &[u8], th: &[u8; SHA256_LEN]) -> [u8; KEY_LEN] {
        let mut out = [0; KEY_LEN];
        self.expand_into(label, th, &mut out);
        out
    }

    /// `proof_local` over `TH1`.
    pub(crate) fn proof_local(&self, th1: &[u8; SHA256_LEN]) -> [u8; KEY_LEN] {
        self.expand(LABEL_LOCAL_PROOF, th1)
    }

    /// `proof_export` over `TH2`.
    pub(crate) fn proof_export(&self, th2: &[u8; SHA256_LEN]) -> [u8; KEY_LEN] {
        self.expand(LABEL_EXPORT_PROOF, th2)
    }

    /// The session keys `K_le` and `K_el` over `TH2`.
    pub(crate) fn session_keys(&self, th2: &[u8; SHA256_LEN]) -> Result<SessionKeys> {
        let key = |label: &[u8]| {
            Key::derived(|out| {
                self.expand_into(label, th2, out);
                Ok(())
            })
        };
        Ok(SessionKeys {
            local_to_export: key(LABEL_KEY_LE)?,
            export_to_local: key(LABEL_KEY_EL)?,
        })
    }
}

/// The key that replaces session key `key` after a KEY_UPDATE:
/// `HKDF-Expand(key, "DST2 key update")`. One way: a key does not reveal
/// the ones before it.
pub(crate) fn next_key(key: &Key) -> Result<Key> {
    Key::derived(|out| {
        crypto::hmac_sha256_into(key.as_bytes(), &[LABEL_KEY_UPDATE, FIRST_BLOCK], out);
        Ok(())
    })
}

/// The load-time known-answer tests of this file, against independent
/// implementations (RFC 7748, FIPS 180-2, and Python's `hmac` and
/// `cryptography` for the schedule): the handshake must give the
/// protocol's bytes before any peer relies on it.
pub(crate) fn self_test(psk: &Key) -> Result {
    let fail = |what: &str| {
        pr_err!("crypto self-test failed: handshake: {}\n", what);
        Err(EIO)
    };
    const SHA256_ABC: [u8; SHA256_LEN] = [
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22,
        0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00,
        0x15, 0xad,
    ];
    if transcript(&[b"a", b"bc"]) != SHA256_ABC {
        return fail("SHA-256");
    }

    // RFC 7748, section 6.1: Alice's private key and Bob's public key.
    let alice = Key::new(&[
        0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2, 0x66,
        0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5, 0x1d, 0xb9,
        0x2c, 0x2a,
    ])?;
    let bob = [
        0xde, 0x9e, 0xdb, 0x7d, 0x7b, 0x7d, 0xc1, 0xb4, 0xd3, 0x5b, 0x61, 0xc2, 0xec, 0xe4, 0x35,
        0x37, 0x3f, 0x83, 0x43, 0xc8, 0x5b, 0x78, 0x67, 0x4d, 0xad, 0xfc, 0x7e, 0x14, 0x6f, 0x88,
        0x2b, 0x4f,
    ];
    let shared = [
        0x4a, 0x5d, 0x9d, 0x5b, 0xa4, 0xce, 0x2d, 0xe1, 0x72, 0x8e, 0x3b, 0xf4, 0x80, 0x35, 0x0f,
        0x25, 0xe0, 0x7e, 0x21, 0xc9, 0x47, 0xd1, 0x9e, 0x33, 0x76, 0xf0, 0x9b, 0x3c, 0x1e, 0x16,
        0x17, 0x42,
    ];
    if x25519(&alice, &bob)?.as_bytes() != shared {
        return fail("X25519 (RFC 7748)");
    }
    let (a, b) = (Ephemeral::new()?, Ephemeral::new()?);
    let (a_pub, b_pub) = (*a.public(), *b.public());
    if a_pub == b_pub || a.agree(&b_pub)?.as_bytes() != b.agree(&a_pub)?.as_bytes() {
        return fail("X25519 agreement");
    }
    if Ephemeral::new()?.agree(&[0; KEY_SHARE_LEN]).is_ok() {
        return fail("all-zero X25519 result accepted");
    }

    // The schedule for key 0..31, identities `client.test` and
    // `export.test`, DH = 0x40..0x5f and a transcript hash 0x60..0x7f.
    let name = |s: &[u8]| Name::new(s).ok_or(EINVAL);
    let mut dh = [0u8; KEY_LEN];
    let mut th = [0u8; SHA256_LEN];
    for (i, (d, t)) in dh.iter_mut().zip(th.iter_mut()).enumerate() {
        *d = 0x40 + i as u8;
        *t = 0x60 + i as u8;
    }
    let s = Schedule::new(
        psk,
        &name(b"client.test")?,
        &name(b"export.test")?,
        &Key::new(&dh)?,
    )?;
    let keys = s.session_keys(&th)?;
    let known: [(&[u8], &[u8]); 4] = [
        (
            &s.proof_local(&th),
            &[0xe1, 0x17, 0x2d, 0x03, 0x18, 0x5c, 0x6f, 0x3e],
        ),
        (
            &s.proof_export(&th),
            &[0x17, 0xe6, 0xa8, 0x93, 0x3e, 0xac, 0xa8, 0x81],
        ),
        (
            keys.local_to_export.as_bytes(),
            &[0x4e, 0xad, 0x3c, 0x2a, 0x94, 0xc4, 0x6d, 0xd6],
        ),
        (
            keys.export_to_local.as_bytes(),
            &[0x38, 0xda, 0xdf, 0x4d, 0x27, 0x5b, 0x1f, 0x61],
        ),
    ];
    if known.iter().any(|(got, want)| !got.starts_with(want)) {
        return fail("key schedule");
    }
    if !next_key(psk)?
        .as_bytes()
        .starts_with(&[0x09, 0xd6, 0xab, 0x3b, 0x2c, 0x95, 0x9c, 0xde])
    {
        return fail("key update");
    }
    // Either identity changes every output.
    let other = Schedule::new(
        psk,
        &name(b"client.test")?,
        &name(b"export.tesT")?,
        &Key::new(&dh)?,
    )?;
    if other.proof_local(&th) == s.proof_local(&th) {
        return fail("identities not bound");
    }
    Ok(())
}
