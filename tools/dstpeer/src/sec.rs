// SPDX-License-Identifier: GPL-2.0

//! The security layer of the wire protocol, in userspace: the ephemeral
//! X25519 exchange, the HKDF key schedule bound to the transcript (pair key,
//! proofs, session keys) and the per-message trailers (crc32c, HMAC, AEAD)
//! with their sequence numbers, accepted in strict order; and the key
//! updates of hmac and aead (as TLS 1.3's KeyUpdate, per direction): a
//! KEY_UPDATE sealed with key K, after which `K' = HKDF-Expand(K, "DST2 key
//! update")` seals from seq 0 ([`Sealer::key_update`],
//! [`Opener::update_key`]), sent on its own after `--rekey-after` bytes or
//! `--rekey-interval` ([`Rekey`]).
//!
//! It is a second implementation of what the module does (`dst/handshake.rs`
//! and `dst/crypto.rs`), on RustCrypto instead of the kernel's crypto API,
//! so that the two check each other.
//!
//! `Documentation/protocol.md`, "Security", is the specification; the labels
//! and lengths come from `dst/proto.rs`.

use std::fmt;
use std::time::{Duration, Instant};

use aes_gcm::{
    aead::{generic_array::GenericArray, AeadInPlace, KeyInit},
    Aes256Gcm,
};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};

use hkdf::Hkdf;
use sha2::Digest;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::proto::{
    Header, Name, Protection, ProtoError, Security, AEAD_TAG_LEN, AUTH_LEN, CHALLENGE_LEN, CRC_LEN,
    HEADER_LEN, HELLO_LEN, KEY_SHARE_LEN, LABEL_EXPORT_PROOF, LABEL_KEY_EL, LABEL_KEY_LE,
    LABEL_KEY_UPDATE, LABEL_LOCAL_PROOF, LABEL_PAIR_KEY, REPLY_PROVEN_LEN, SEQ_LEN,
};

/// Shortest and longest pre-shared key, in bytes.
pub(crate) const KEY_MIN: usize = 16;
pub(crate) const KEY_MAX: usize = 64;

/// Length of a session key.
pub(crate) const SESSION_KEY_LEN: usize = 32;

/// The CRC of the crc32c mode: Castagnoli, reflected, init and final xor
/// all ones (the kernel's `crc32c(~0, ...) ^ ~0`).
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// crc32c of the concatenation of `parts`.
pub(crate) fn crc32c(parts: &[&[u8]]) -> u32 {
    let mut d = CRC32C.digest();
    for p in parts {
        d.update(p);
    }
    d.finalize()
}

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Length of `PSK_pair`, `DH`, `PRK`, the transcript hashes and the proofs:
/// everything in the key schedule is 32 bytes (SHA-256).
pub(crate) const HASH_LEN: usize = 32;

/// `HKDF-Expand(prk, info)` for one 32-byte output block, `info` being the
/// concatenation of `info`.
fn expand(prk: &[u8; HASH_LEN], info: &[&[u8]]) -> [u8; HASH_LEN] {
    // A 32-byte PRK is always long enough for HKDF-SHA256.
    let hk = Hkdf::<Sha256>::from_prk(prk).expect("a 32-byte PRK");
    let mut out = [0u8; HASH_LEN];
    // One block is always within HKDF's output limit.
    hk.expand_multi_info(info, &mut out)
        .expect("32 bytes of output");
    out
}

/// `PSK_pair = HKDF-Expand(HKDF-Extract("DST2 pair key", key file),
/// len(C) || C || len(X) || X)`: the key of one client and one export,
/// from the key file and both identities (without padding).
pub(crate) fn psk_pair(key: &[u8], client: &Name, export: &Name) -> [u8; HASH_LEN] {
    let (c, x) = (client.as_bytes(), export.as_bytes());
    // Names are shorter than NAME_LEN (64): their lengths fit a byte.
    let (cl, xl) = ([c.len() as u8], [x.len() as u8]);
    let (prk, _) = Hkdf::<Sha256>::extract(Some(LABEL_PAIR_KEY), key);
    expand(&prk.into(), &[&cl, c, &xl, x])
}

/// `TH1 = SHA-256(HELLO body || CHALLENGE body)`.
pub(crate) fn th1(hello: &[u8; HELLO_LEN], challenge: &[u8; CHALLENGE_LEN]) -> [u8; HASH_LEN] {
    Sha256::new()
        .chain_update(hello)
        .chain_update(challenge)
        .finalize()
        .into()
}

/// `TH2 = SHA-256(HELLO body || CHALLENGE body || proof_local ||
/// HELLO_REPLY body bytes 0..112)`.
pub(crate) fn th2(
    hello: &[u8; HELLO_LEN],
    challenge: &[u8; CHALLENGE_LEN],
    proof_local: &[u8; AUTH_LEN],
    proven: &[u8; REPLY_PROVEN_LEN],
) -> [u8; HASH_LEN] {
    Sha256::new()
        .chain_update(hello)
        .chain_update(challenge)
        .chain_update(proof_local)
        .chain_update(proven)
        .finalize()
        .into()
}

/// The keyed part of one handshake: `PRK = HKDF-Extract(PSK_pair, DH)`,
/// from which both proofs and the session keys are expanded.
#[derive(Clone)]
pub(crate) struct Schedule {
    prk: [u8; HASH_LEN],
}

impl Schedule {
    /// The schedule of a connection between `client` and `export` whose
    /// key exchange gave `dh`, with the key file `key`.
    pub(crate) fn new(key: &[u8], client: &Name, export: &Name, dh: &[u8; HASH_LEN]) -> Self {
        Self::from_pair(&psk_pair(key, client, export), dh)
    }

    /// The schedule from `PSK_pair` and `DH` directly.
    pub(crate) fn from_pair(psk_pair: &[u8; HASH_LEN], dh: &[u8; HASH_LEN]) -> Self {
        let (prk, _) = Hkdf::<Sha256>::extract(Some(psk_pair), dh);
        Schedule { prk: prk.into() }
    }

    /// The schedule with `prk` as `PRK` (for the capture decrypter's
    /// guesses of a flawed derivation).
    pub(crate) fn from_prk(prk: &[u8; HASH_LEN]) -> Self {
        Schedule { prk: *prk }
    }

    /// `PRK`.
    pub(crate) fn prk(&self) -> &[u8; HASH_LEN] {
        &self.prk
    }

    /// `proof_local = HKDF-Expand(PRK, "DST2 local proof" || TH1)`.
    pub(crate) fn proof_local(&self, th1: &[u8; HASH_LEN]) -> [u8; AUTH_LEN] {
        expand(&self.prk, &[LABEL_LOCAL_PROOF, th1])
    }

    /// `proof_export = HKDF-Expand(PRK, "DST2 export proof" || TH2)`.
    pub(crate) fn proof_export(&self, th2: &[u8; HASH_LEN]) -> [u8; AUTH_LEN] {
        expand(&self.prk, &[LABEL_EXPORT_PROOF, th2])
    }

    /// The session keys `(K_le, K_el)` over `TH2`.
    pub(crate) fn session_keys(&self, th2: &[u8; HASH_LEN]) -> SessionKeys {
        SessionKeys {
            le: expand(&self.prk, &[LABEL_KEY_LE, th2]),
            el: expand(&self.prk, &[LABEL_KEY_EL, th2]),
        }
    }
}

/// The session keys of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SessionKeys {
    /// `K_le`: protects what the local node sends.
    pub(crate) le: [u8; SESSION_KEY_LEN],
    /// `K_el`: protects what the export sends.
    pub(crate) el: [u8; SESSION_KEY_LEN],
}

impl SessionKeys {
    /// The keys of a connection without a key file: unused by the modes
    /// that may run without one (none, crc32c).
    pub(crate) const UNUSED: SessionKeys = SessionKeys {
        le: [0; SESSION_KEY_LEN],
        el: [0; SESSION_KEY_LEN],
    };
}

/// The key that replaces session key `key` after a KEY_UPDATE:
/// `K' = HKDF-Expand(K, "DST2 key update")`, one block, that is
/// `HMAC-SHA256(K, "DST2 key update" || 0x01)`. One way: a key does not
/// reveal the ones before it.
pub(crate) fn next_key(key: &[u8; SESSION_KEY_LEN]) -> [u8; SESSION_KEY_LEN] {
    expand(key, &[LABEL_KEY_UPDATE])
}

/// `X25519(secret, public)`, the raw function (RFC 7748: the scalar is
/// clamped, the u-coordinate's top bit ignored).
pub(crate) fn x25519(secret: &[u8; KEY_SHARE_LEN], public: &[u8; KEY_SHARE_LEN]) -> [u8; HASH_LEN] {
    x25519_dalek::x25519(*secret, *public)
}

/// One side's ephemeral X25519 key pair, made for one connection.
pub(crate) struct Ephemeral {
    secret: StaticSecret,
    public: [u8; KEY_SHARE_LEN],
}

impl Ephemeral {
    /// A fresh key pair from the kernel's random numbers.
    pub(crate) fn generate() -> Self {
        Self::from_secret(random_bytes())
    }

    /// The key pair with private key `secret` (the examples' fixed keys,
    /// or `--secret` of the capture decrypter).
    pub(crate) fn from_secret(secret: [u8; KEY_SHARE_LEN]) -> Self {
        let secret = StaticSecret::from(secret);
        let public = PublicKey::from(&secret).to_bytes();
        Ephemeral { secret, public }
    }

    /// The public key: the key share this side sends.
    pub(crate) fn public(&self) -> &[u8; KEY_SHARE_LEN] {
        &self.public
    }

    /// The private key, as given (unclamped), for `--dump-secrets`.
    pub(crate) fn secret(&self) -> [u8; KEY_SHARE_LEN] {
        self.secret.to_bytes()
    }

    /// `DH` with the peer's key share `peer`; `None` if it is all zero,
    /// which a key share of small order gives whatever our key: then `DH`
    /// is known to anyone and the handshake must be refused.
    pub(crate) fn agree(&self, peer: &[u8; KEY_SHARE_LEN]) -> Option<[u8; HASH_LEN]> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*peer));
        shared.was_contributory().then(|| shared.to_bytes())
    }
}

/// Encodings of X25519 points of small order (RFC 7748, section 6.1, and
/// the list libsodium refuses): `X25519(k, P)` is all zero for every
/// clamped `k`. A key share equal to one of these must be refused.
pub(crate) fn small_order_points() -> [[u8; KEY_SHARE_LEN]; 7] {
    const HEX: [&str; 7] = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ];
    HEX.map(|h| {
        // The table above is well-formed hex of 32 bytes.
        parse_hex(h)
            .and_then(|v| v.try_into().ok())
            .expect("a 32-byte hex constant")
    })
}

/// A fixed scalar for the two predicates below. Every clamped scalar is a
/// multiple of the cofactor 8 and below the prime subgroup's order, so
/// what holds for this one holds for every peer's private key.
const PROBE_SCALAR: [u8; KEY_SHARE_LEN] = [0x5a; KEY_SHARE_LEN];

/// Whether `share` is of small order, whatever its encoding: `DH` with it
/// is all zero for every private key.
pub(crate) fn is_small_order(share: &[u8; KEY_SHARE_LEN]) -> bool {
    x25519(&PROBE_SCALAR, share) == [0; HASH_LEN]
}

/// Whether the shares `a` and `b` give the same `DH` with every private key
/// (the same point up to the ignored top bit, a non-canonical encoding or a
/// small-order component).
pub(crate) fn same_point(a: &[u8; KEY_SHARE_LEN], b: &[u8; KEY_SHARE_LEN]) -> bool {
    x25519(&PROBE_SCALAR, a) == x25519(&PROBE_SCALAR, b)
}

/// The bytes of the hex string `s` (upper or lower case, no separators).
pub(crate) fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|p| {
            let d = |c: u8| char::from(c).to_digit(16);
            Some((d(p[0])? * 16 + d(p[1])?) as u8)
        })
        .collect()
}

/// Constant-time comparison of two equal-length byte strings.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `n` random bytes from the kernel.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    use std::io::Read;
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("reading /dev/urandom");
    b
}

/// The HMAC algorithms of the hmac mode, by kernel crypto API name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MacAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl MacAlg {
    fn from_name(name: &[u8]) -> Option<Self> {
        Some(match name {
            b"hmac(sha256)" => Self::Sha256,
            b"hmac(sha384)" => Self::Sha384,
            b"hmac(sha512)" => Self::Sha512,
            _ => return None,
        })
    }

    /// Digest length in bytes.
    pub(crate) fn digest_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// The MAC of the concatenation of `parts` under `key`.
    fn mac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            let mut m = <M as Mac>::new_from_slice(key).expect("any key length");
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Self::Sha256 => run::<Hmac<Sha256>>(key, parts),
            Self::Sha384 => run::<Hmac<Sha384>>(key, parts),
            Self::Sha512 => run::<Hmac<Sha512>>(key, parts),
        }
    }
}

/// The AEAD algorithms of the aead mode, by kernel crypto API name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AeadAlg {
    /// `gcm(aes)` with a 32-byte key: AES-256-GCM.
    AesGcm,
    /// `rfc7539(chacha20,poly1305)`.
    ChaCha20Poly1305,
}

impl AeadAlg {
    fn from_name(name: &[u8]) -> Option<Self> {
        Some(match name {
            b"gcm(aes)" => Self::AesGcm,
            b"rfc7539(chacha20,poly1305)" => Self::ChaCha20Poly1305,
            _ => return None,
        })
    }
}

/// A configuration error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ConfigError(pub(crate) String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity `dstpeer server` has unless `--name` says otherwise.
pub(crate) const DEFAULT_EXPORT_NAME: &[u8] = b"dstpeer";

/// The identity `dstpeer client` (and every other local-node role) has
/// unless `--client-name` says otherwise.
pub(crate) const DEFAULT_CLIENT_NAME: &[u8] = b"dstpeer-client";

/// When a sealer replaces its key on its own, sending a KEY_UPDATE before
/// the next message (`--rekey-after`, `--rekey-interval`): never unless
/// set. Only the modes with keys (hmac, aead) replace keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rekey {
    /// After this many bytes (headers and payloads, as the module counts
    /// them) sealed under one key; at least 1.
    pub(crate) bytes: Option<u64>,
    /// After a key has been in use this long.
    pub(crate) interval: Option<Duration>,
}

/// What one side is configured with: mode, algorithm, optional key, and the
/// identities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SecConfig {
    pub(crate) protection: Protection,
    pub(crate) alg: Name,
    pub(crate) key: Option<Vec<u8>>,
    /// This peer's identity as a local node (`--client-name`).
    pub(crate) client: Name,
    /// The export a local node asks for (`--export-name`); empty: any.
    pub(crate) want: Name,
    /// This peer's identity as an export (`--name`).
    pub(crate) identity: Name,
    /// When this peer replaces its sending key on its own.
    pub(crate) rekey: Rekey,
}

/// A name known to be valid at compile time.
fn const_name(s: &[u8]) -> Name {
    // Only called with the constants above.
    Name::new(s).expect("a valid built-in name")
}

impl Default for SecConfig {
    fn default() -> Self {
        SecConfig {
            protection: Protection::None,
            alg: Name::EMPTY,
            key: None,
            client: const_name(DEFAULT_CLIENT_NAME),
            want: Name::EMPTY,
            identity: const_name(DEFAULT_EXPORT_NAME),
            rekey: Rekey::default(),
        }
    }
}

/// Parses an identity given on the command line for `what` (an option
/// name); `empty_ok` allows the empty name.
pub(crate) fn parse_name(what: &str, s: &str, empty_ok: bool) -> Result<Name, ConfigError> {
    match Name::new(s.as_bytes()) {
        Some(n) if empty_ok || !n.is_empty() => Ok(n),
        _ => Err(ConfigError(format!(
            "{what} {s:?}: a name is 1 to 63 printable ASCII characters without spaces"
        ))),
    }
}

/// Parses a protection mode name.
pub(crate) fn parse_protection(s: &str) -> Option<Protection> {
    (0..=3)
        .filter_map(Protection::from_u8)
        .find(|p| p.as_str().eq_ignore_ascii_case(s))
}

impl SecConfig {
    /// A configuration from the command line values: the mode name, the
    /// algorithm (default: the mode's) and the key (raw bytes).
    pub(crate) fn new(
        protection: &str,
        alg: Option<&str>,
        key: Option<Vec<u8>>,
    ) -> Result<Self, ConfigError> {
        let protection = parse_protection(protection)
            .ok_or_else(|| ConfigError(format!("unknown protection mode: {protection}")))?;
        let alg_name = match alg {
            Some(a) if !protection.has_alg() => {
                return Err(ConfigError(format!(
                    "--alg {a}: the {} mode takes no algorithm",
                    protection.as_str()
                )))
            }
            Some(a) => a,
            None => protection.default_alg(),
        };
        let alg = Name::new(alg_name.as_bytes())
            .ok_or_else(|| ConfigError(format!("bad algorithm name: {alg_name}")))?;
        if let Some(k) = &key {
            if !(KEY_MIN..=KEY_MAX).contains(&k.len()) {
                return Err(ConfigError(format!(
                    "the key is {} bytes; it must be {KEY_MIN} to {KEY_MAX}",
                    k.len()
                )));
            }
        }
        if protection.needs_key() && key.is_none() {
            return Err(ConfigError(format!(
                "the {} mode needs a key (--key-file)",
                protection.as_str()
            )));
        }
        let cfg = SecConfig {
            protection,
            alg,
            key,
            ..SecConfig::default()
        };
        // Refuse algorithms this tool cannot run.
        Cipher::new(&cfg, &[0; SESSION_KEY_LEN])?;
        Ok(cfg)
    }

    /// Reads a key file: its raw contents.
    pub(crate) fn read_key(path: &str) -> Result<Vec<u8>, ConfigError> {
        std::fs::read(path).map_err(|e| ConfigError(format!("cannot read key file {path}: {e}")))
    }

    /// What a HELLO carries about this configuration.
    pub(crate) fn security(&self) -> Security {
        Security {
            protection: self.protection,
            auth: self.key.is_some(),
            alg: self.alg,
        }
    }

    /// Whether the handshake is authenticated (CHALLENGE and AUTH).
    pub(crate) fn auth(&self) -> bool {
        self.key.is_some()
    }

    /// The sealer and opener of one side once the handshake is done: `tx_key`
    /// for what this side sends, `rx_key` for what it receives. Without a key
    /// the session keys are unused (zero).
    pub(crate) fn channel(
        &self,
        tx_key: &[u8; SESSION_KEY_LEN],
        rx_key: &[u8; SESSION_KEY_LEN],
    ) -> (Sealer, Opener) {
        // `new` checked that the algorithm is known.
        let tx = Cipher::new(self, tx_key).expect("algorithm checked");
        let rx = Cipher::new(self, rx_key).expect("algorithm checked");
        // Only the modes with keys replace them (KEY_UPDATE).
        let keyed = tx.has_seq();
        let mut sealer = Sealer::with(tx, keyed.then_some(*tx_key));
        sealer.rekey = self.rekey;
        (
            sealer,
            Opener {
                cipher: rx,
                key: keyed.then_some(*rx_key),
                next: 0,
                updates: 0,
            },
        )
    }
}

/// The keyed transform of one direction.
#[derive(Clone)]
enum Cipher {
    None,
    Crc,
    Hmac(MacAlg, [u8; SESSION_KEY_LEN]),
    AesGcm(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
}

impl Cipher {
    fn new(cfg: &SecConfig, key: &[u8; SESSION_KEY_LEN]) -> Result<Self, ConfigError> {
        let name = cfg.alg.as_bytes();
        let unknown = || {
            ConfigError(format!(
                "algorithm {} is not supported for {} (dstpeer knows hmac(sha256), \
                 hmac(sha384), hmac(sha512), gcm(aes), rfc7539(chacha20,poly1305))",
                String::from_utf8_lossy(name),
                cfg.protection.as_str()
            ))
        };
        Ok(match cfg.protection {
            Protection::None => Cipher::None,
            Protection::Crc32c => Cipher::Crc,
            Protection::Hmac => Cipher::Hmac(MacAlg::from_name(name).ok_or_else(unknown)?, *key),
            Protection::Aead => match AeadAlg::from_name(name).ok_or_else(unknown)? {
                AeadAlg::AesGcm => {
                    Cipher::AesGcm(Box::new(Aes256Gcm::new(GenericArray::from_slice(key))))
                }
                AeadAlg::ChaCha20Poly1305 => Cipher::ChaCha(Box::new(ChaCha20Poly1305::new(
                    GenericArray::from_slice(key),
                ))),
            },
        })
    }

    fn trailer_len(&self) -> usize {
        match self {
            Cipher::None => 0,
            Cipher::Crc => CRC_LEN,
            Cipher::Hmac(alg, _) => SEQ_LEN + alg.digest_len(),
            Cipher::AesGcm(_) | Cipher::ChaCha(_) => SEQ_LEN + AEAD_TAG_LEN,
        }
    }

    /// Whether the trailer carries a sequence number.
    fn has_seq(&self) -> bool {
        matches!(
            self,
            Cipher::Hmac(..) | Cipher::AesGcm(_) | Cipher::ChaCha(_)
        )
    }

    /// The same transform under `key`; `None` for the modes without keys
    /// (none, crc32c).
    fn with_key(&self, key: &[u8; SESSION_KEY_LEN]) -> Option<Self> {
        Some(match self {
            Cipher::None | Cipher::Crc => return None,
            Cipher::Hmac(alg, _) => Cipher::Hmac(*alg, *key),
            Cipher::AesGcm(_) => {
                Cipher::AesGcm(Box::new(Aes256Gcm::new(GenericArray::from_slice(key))))
            }
            Cipher::ChaCha(_) => Cipher::ChaCha(Box::new(ChaCha20Poly1305::new(
                GenericArray::from_slice(key),
            ))),
        })
    }
}

/// The AEAD nonce of `seq`: 4 zero bytes and the big-endian seq.
fn aead_iv(seq: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[4..].copy_from_slice(&seq.to_be_bytes());
    iv
}

/// A sealer refused to seal: its direction's sequence numbers are used up
/// (the connection must end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SeqsUsedUp;

impl fmt::Display for SeqsUsedUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sequence numbers used up: no more messages on this connection")
    }
}

impl std::error::Error for SeqsUsedUp {}

impl From<SeqsUsedUp> for std::io::Error {
    fn from(e: SeqsUsedUp) -> Self {
        std::io::Error::other(e)
    }
}

/// A sealer could not send a KEY_UPDATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpdateError {
    /// The mode has no keys to replace (none, crc32c).
    NoKey,
    /// The current key's sequence numbers are used up.
    SeqsUsedUp,
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateError::NoKey => f.write_str("no key to replace: KEY_UPDATE needs hmac or aead"),
            UpdateError::SeqsUsedUp => SeqsUsedUp.fmt(f),
        }
    }
}

impl std::error::Error for UpdateError {}

impl From<SeqsUsedUp> for UpdateError {
    fn from(_: SeqsUsedUp) -> Self {
        UpdateError::SeqsUsedUp
    }
}

impl From<UpdateError> for std::io::Error {
    fn from(e: UpdateError) -> Self {
        std::io::Error::other(e)
    }
}

/// Protects the messages one side sends.
#[derive(Clone)]
pub(crate) struct Sealer {
    cipher: Cipher,
    /// The key `cipher` seals with (hmac, aead), from which the next one
    /// derives; `None` in the modes without keys.
    key: Option<[u8; SESSION_KEY_LEN]>,
    /// The seq of the next message.
    pub(crate) seq: u64,
    /// Bytes (headers and payloads) sealed under the current key.
    pub(crate) sealed: u64,
    /// When the current key was taken.
    since: Instant,
    /// When the key is due to be replaced ([`Sealer::update_due`]).
    pub(crate) rekey: Rekey,
    /// KEY_UPDATEs sent: keys replaced so far.
    pub(crate) updates: u64,
}

impl Sealer {
    /// A sealer of the none mode.
    pub(crate) fn plain() -> Self {
        Sealer::with(Cipher::None, None)
    }

    fn with(cipher: Cipher, key: Option<[u8; SESSION_KEY_LEN]>) -> Self {
        Sealer {
            cipher,
            key,
            seq: 0,
            sealed: 0,
            since: Instant::now(),
            rekey: Rekey::default(),
            updates: 0,
        }
    }

    /// Whether the key is due to be replaced ([`Rekey`]): the owner then
    /// sends a KEY_UPDATE ([`Sealer::key_update`]) before its next message.
    /// Never in the modes without keys.
    pub(crate) fn update_due(&self) -> bool {
        self.key.is_some()
            && (self.rekey.bytes.is_some_and(|b| self.sealed >= b.max(1))
                || self
                    .rekey
                    .interval
                    .is_some_and(|t| self.since.elapsed() >= t))
    }

    /// The sealer after a KEY_UPDATE, without sealing one: the next key,
    /// from seq 0. `None` without keys. (For the hostile cases; a
    /// well-behaved peer uses [`Sealer::key_update`].)
    pub(crate) fn rekeyed(&self) -> Option<Sealer> {
        let key = next_key(self.key.as_ref()?);
        let cipher = self.cipher.with_key(&key)?;
        Some(Sealer {
            updates: self.updates + 1,
            rekey: self.rekey,
            ..Sealer::with(cipher, Some(key))
        })
    }

    /// Seals the KEY_UPDATE header `hb` with the current key at the next
    /// seq, then moves to the next key: what is sealed after it uses that
    /// one, from seq 0. Returns the KEY_UPDATE's trailer. Fails, changing
    /// nothing, without keys (none, crc32c) or once the seqs are used up.
    pub(crate) fn update_key(&mut self, hb: &[u8; HEADER_LEN]) -> Result<Vec<u8>, UpdateError> {
        let next = self.rekeyed().ok_or(UpdateError::NoKey)?;
        let trailer = self.seal(hb, &mut [])?;
        *self = next;
        Ok(trailer)
    }

    /// A whole KEY_UPDATE message (header and trailer) sealed with the
    /// current key, after which this sealer uses the next key
    /// ([`Sealer::update_key`]).
    pub(crate) fn key_update(&mut self) -> Result<Vec<u8>, UpdateError> {
        let hb = Header::key_update().encode();
        let trailer = self.update_key(&hb)?;
        let mut f = hb.to_vec();
        f.extend(trailer);
        Ok(f)
    }

    /// Seals the next message: encrypts `payload` in place (aead) and
    /// returns the trailer. Fails with [`SeqsUsedUp`] once the seqs are used
    /// up: they never wrap, and, as in the module, the last one sealed is
    /// `u64::MAX - 1` (the message that would take `u64::MAX` is refused).
    pub(crate) fn seal(
        &mut self,
        header: &[u8; HEADER_LEN],
        payload: &mut [u8],
    ) -> Result<Vec<u8>, SeqsUsedUp> {
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(SeqsUsedUp)?;
        self.sealed = self
            .sealed
            .saturating_add((HEADER_LEN + payload.len()) as u64);
        Ok(self.seal_at(seq, header, payload))
    }

    /// Seals a message with an explicit `seq`, not touching the counter.
    pub(crate) fn seal_at(
        &self,
        seq: u64,
        header: &[u8; HEADER_LEN],
        payload: &mut [u8],
    ) -> Vec<u8> {
        let s = seq.to_be_bytes();
        match &self.cipher {
            Cipher::None => Vec::new(),
            Cipher::Crc => crc32c(&[header, payload]).to_be_bytes().to_vec(),
            Cipher::Hmac(alg, key) => {
                let mut t = s.to_vec();
                t.extend(alg.mac(key, &[&s, header, payload]));
                t
            }
            Cipher::AesGcm(c) => aead_seal(&**c, seq, header, payload),
            Cipher::ChaCha(c) => aead_seal(&**c, seq, header, payload),
        }
    }
}

fn aead_seal<A: AeadInPlace>(
    c: &A,
    seq: u64,
    header: &[u8; HEADER_LEN],
    payload: &mut [u8],
) -> Vec<u8> {
    let iv = aead_iv(seq);
    let tag = c
        .encrypt_in_place_detached(GenericArray::from_slice(&iv), header, payload)
        .expect("payload within the AEAD limits");
    let mut t = seq.to_be_bytes().to_vec();
    t.extend_from_slice(&tag);
    t
}

fn aead_open<A: AeadInPlace>(
    c: &A,
    seq: u64,
    header: &[u8; HEADER_LEN],
    payload: &mut [u8],
    tag: &[u8],
) -> bool {
    let iv = aead_iv(seq);
    c.decrypt_in_place_detached(
        GenericArray::from_slice(&iv),
        header,
        payload,
        GenericArray::from_slice(tag),
    )
    .is_ok()
}

/// Checks and unprotects the messages one side receives.
#[derive(Clone)]
pub(crate) struct Opener {
    cipher: Cipher,
    /// The key `cipher` opens with (hmac, aead), from which the next one
    /// derives; `None` in the modes without keys.
    key: Option<[u8; SESSION_KEY_LEN]>,
    /// The seq the next message must carry (hmac, aead): messages are
    /// accepted in strict order only, as TLS records are.
    pub(crate) next: u64,
    /// KEY_UPDATEs received: keys replaced so far.
    pub(crate) updates: u64,
}

impl Opener {
    /// An opener of the none mode.
    pub(crate) fn plain() -> Self {
        Opener {
            cipher: Cipher::None,
            key: None,
            next: 0,
            updates: 0,
        }
    }

    /// A KEY_UPDATE arrived and verified ([`Opener::open`]): what follows
    /// is opened with the next key, from seq 0. Without keys (none, crc32c)
    /// a KEY_UPDATE breaks the protocol: [`ProtoError::BadKind`], as the
    /// module answers it, and nothing changes.
    pub(crate) fn update_key(&mut self) -> Result<(), ProtoError> {
        let key = next_key(self.key.as_ref().ok_or(ProtoError::BadKind)?);
        self.cipher = self.cipher.with_key(&key).ok_or(ProtoError::BadKind)?;
        self.key = Some(key);
        self.next = 0;
        self.updates += 1;
        Ok(())
    }

    pub(crate) fn trailer_len(&self) -> usize {
        self.cipher.trailer_len()
    }

    /// Checks a received message and decrypts its payload in place (aead).
    /// Fails with [`ProtoError::OutOfOrder`] (its seq is not the next one:
    /// replayed, reordered, or one before it dropped) or
    /// [`ProtoError::BadTag`]; then the message must not be used and the
    /// connection is closed.
    pub(crate) fn open(
        &mut self,
        header: &[u8; HEADER_LEN],
        payload: &mut [u8],
        trailer: &[u8],
    ) -> Result<(), ProtoError> {
        if trailer.len() != self.trailer_len() {
            return Err(ProtoError::BadTag);
        }
        let seq = if self.cipher.has_seq() {
            let mut s = [0u8; SEQ_LEN];
            s.copy_from_slice(&trailer[..SEQ_LEN]);
            u64::from_be_bytes(s)
        } else {
            0
        };
        // The seq is checked before the tag, and the next one expected only
        // once the tag verified.
        if self.cipher.has_seq() && seq != self.next {
            return Err(ProtoError::OutOfOrder);
        }
        let ok = match &self.cipher {
            Cipher::None => true,
            Cipher::Crc => crc32c(&[header, payload]).to_be_bytes() == trailer,
            Cipher::Hmac(alg, key) => {
                let s = &trailer[..SEQ_LEN];
                ct_eq(&alg.mac(key, &[s, header, payload]), &trailer[SEQ_LEN..])
            }
            Cipher::AesGcm(c) => aead_open(&**c, seq, header, payload, &trailer[SEQ_LEN..]),
            Cipher::ChaCha(c) => aead_open(&**c, seq, header, payload, &trailer[SEQ_LEN..]),
        };
        if !ok {
            return Err(ProtoError::BadTag);
        }
        if self.cipher.has_seq() {
            // A sealer never takes u64::MAX (see [`Sealer::seal`]); as the
            // module does, the count saturates there.
            self.next = seq.saturating_add(1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples::{hex, EXAMPLE_PSK};
    use crate::proto::{Header, Op};

    /// Session keys for the record-layer tests: fixed values (version 1's
    /// example keys), so that the trailer vectors pinned below, computed
    /// once with Python, stay independent of the handshake.
    fn test_keys() -> ([u8; 32], [u8; 32]) {
        let k = |h: &str| -> [u8; 32] {
            parse_hex(h)
                .and_then(|v| v.try_into().ok())
                .expect("32 bytes of hex")
        };
        (
            k("b34a29e42307ad0e76d6b80cd454e875a0000763a7c68ab154d4614b417c7af1"),
            k("943e0271d94d6b093e1d3f938ec03dc8e64ed22cf0b34e30cc74112575e2f93d"),
        )
    }

    fn cfg(protection: &str, alg: Option<&str>) -> SecConfig {
        SecConfig::new(protection, alg, Some(EXAMPLE_PSK.to_vec())).expect("valid")
    }

    /// Sealer of the local node and opener of the export for the example
    /// keys, in `protection` with `alg`.
    fn pair(protection: &str, alg: Option<&str>) -> (Sealer, Opener) {
        let c = cfg(protection, alg);
        let (le, el) = test_keys();
        let (tx, _) = c.channel(&le, &el);
        let (_, rx) = c.channel(&el, &le);
        (tx, rx)
    }

    /// The example WRITE of 32 bytes (0..16 twice) at 4096, id 7.
    fn write_frame() -> ([u8; HEADER_LEN], Vec<u8>) {
        let h = Header::io(Op::Write, 0, 7, 4096, 32);
        let payload: Vec<u8> = (0..32).map(|i| (i % 16) as u8).collect();
        (h.encode(), payload)
    }

    /// The trailer length of `cfg`'s messages.
    fn trailer_len(cfg: &SecConfig) -> usize {
        cfg.channel(&[0; 32], &[0; 32]).1.trailer_len()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c(&[b"123456789"]), 0xe306_9283);
        assert_eq!(crc32c(&[b"1234", b"56789"]), 0xe306_9283);
        assert_eq!(crc32c(&[]), 0);
    }

    #[test]
    fn hmac_sha256_rfc4231() {
        // RFC 4231, test case 2.
        assert_eq!(
            hex(&hmac_sha256(
                b"Jefe",
                &[b"what do ya want ", b"for nothing?"]
            )),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// Vectors computed with Python's `cryptography`, `hmac` and `hashlib`.
    #[test]
    fn trailers_pinned() {
        let (hb, payload) = write_frame();
        let (le, el) = test_keys();
        let seal = |protection: &str, alg: Option<&str>, key: &[u8; 32]| {
            let (mut tx, _) = cfg(protection, alg).channel(key, key);
            tx.seq = 5;
            let mut p = payload.clone();
            let t = tx.seal(&hb, &mut p).expect("seqs left");
            assert_eq!(tx.seq, 6);
            (hex(&p), hex(&t))
        };
        let (p, t) = seal("aead", None, &le);
        assert_eq!(
            p,
            "d6744c1997501be7e7969713d186a746f65aaa8214389b2ea09824464dad7e31"
        );
        assert_eq!(t, "0000000000000005a9be2f71d39a0a61366d73e1d2a751f3");
        let (p, t) = seal("aead", Some("rfc7539(chacha20,poly1305)"), &el);
        assert_eq!(
            p,
            "64e8102b4bf0dd386dafec0c651b51c3841d31cebcc45b2ea97e5a3a34927493"
        );
        assert_eq!(t, "000000000000000509bfc6473bb620ea2c2b92a4c4e7e402");
        let (p, t) = seal("hmac", Some("hmac(sha384)"), &el);
        assert_eq!(p, hex(&payload), "hmac leaves the payload in clear");
        assert_eq!(
            t,
            "0000000000000005ef3017a79a62b96ae1ff1dfcb3de3500655f44c3a161a60a\
             a9d1847b04313aa2b8e5bd135c19b7d8dfdd77cd1e6f7474"
        );
        let (_, t) = seal("hmac", Some("hmac(sha512)"), &el);
        assert_eq!(
            t,
            "00000000000000059f40772c15782822db5d4188f1d4ecf995aabd702cdba183\
             cfedc16136d9eddbeabc6f5cb182dd70bb9ec18a81a0f62a9311373a2f34054e\
             6af89e6733d29e17"
        );
        let (p, t) = seal("crc32c", None, &le);
        assert_eq!(p, hex(&payload));
        assert_eq!(t, "18f58de9");
        assert_eq!(unhex(&t), crc32c(&[&hb, &payload]).to_be_bytes());
    }

    const MODES: [(&str, Option<&str>); 7] = [
        ("crc32c", None),
        ("hmac", None),
        ("hmac", Some("hmac(sha384)")),
        ("hmac", Some("hmac(sha512)")),
        ("aead", None),
        ("aead", Some("rfc7539(chacha20,poly1305)")),
        ("none", None),
    ];

    #[test]
    fn seal_open_round_trip() {
        for (mode, alg) in MODES {
            let (mut tx, mut rx) = pair(mode, alg);
            assert_eq!(tx.cipher.trailer_len(), rx.trailer_len());
            for n in [0usize, 1, 512, 4096, 65536] {
                let h = Header::io(Op::Write, 0, n as u64, 0, n as u32).encode();
                let data: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
                let mut p = data.clone();
                let t = tx.seal(&h, &mut p).expect("seqs left");
                assert_eq!(t.len(), rx.trailer_len(), "{mode} {alg:?}");
                if mode == "aead" && n > 0 {
                    assert_ne!(p, data, "{mode}: payload encrypted");
                } else {
                    assert_eq!(p, data, "{mode}: payload in clear");
                }
                assert_eq!(rx.open(&h, &mut p, &t), Ok(()), "{mode} {alg:?} {n}");
                assert_eq!(p, data, "{mode} {alg:?} {n}");
            }
        }
    }

    #[test]
    fn bit_flips_are_refused() {
        for (mode, alg) in MODES {
            if mode == "none" {
                continue;
            }
            let (hb, payload) = write_frame();
            let (mut tx, rx) = pair(mode, alg);
            let mut sealed = payload.clone();
            let t = tx.seal(&hb, &mut sealed).expect("seqs left");
            // Every single-bit flip of header, payload or trailer.
            let total = (HEADER_LEN + sealed.len() + t.len()) * 8;
            for bit in 0..total {
                let (mut h, mut p, mut tr) = (hb, sealed.clone(), t.clone());
                let (byte, mask) = (bit / 8, 1u8 << (bit % 8));
                // A flipped seq is not the next one: refused before the tag.
                let seq_at = HEADER_LEN + sealed.len();
                let in_seq = tx.cipher.has_seq() && (seq_at..seq_at + SEQ_LEN).contains(&byte);
                let want = if in_seq {
                    ProtoError::OutOfOrder
                } else {
                    ProtoError::BadTag
                };
                if byte < HEADER_LEN {
                    h[byte] ^= mask;
                } else if byte < HEADER_LEN + p.len() {
                    p[byte - HEADER_LEN] ^= mask;
                } else {
                    tr[byte - HEADER_LEN - sealed.len()] ^= mask;
                }
                let mut rx = rx.clone();
                let r = rx.open(&h, &mut p, &tr);
                assert_eq!(r, Err(want), "{mode} {alg:?}: flip of bit {bit}");
            }
            // A truncated trailer, a wrong key, the other direction's key.
            let mut rx2 = rx.clone();
            let mut p = sealed.clone();
            assert_eq!(
                rx2.open(&hb, &mut p, &t[..t.len() - 1]),
                Err(ProtoError::BadTag)
            );
            if mode != "crc32c" {
                let c = cfg(mode, alg);
                let (_, mut wrong) = c.channel(&[1; 32], &[2; 32]);
                let mut p = sealed.clone();
                assert_eq!(wrong.open(&hb, &mut p, &t), Err(ProtoError::BadTag));
                let (le, el) = test_keys();
                let (_, mut reverse) = c.channel(&le, &el);
                let mut p = sealed.clone();
                assert_eq!(reverse.open(&hb, &mut p, &t), Err(ProtoError::BadTag));
            }
            // Sealed once more, the original opens.
            let mut rx = rx.clone();
            let mut p = sealed.clone();
            assert_eq!(rx.open(&hb, &mut p, &t), Ok(()));
            assert_eq!(p, payload);
        }
    }

    /// Modes whose trailers carry a seq.
    const SEQ_MODES: [(&str, Option<&str>); 3] = [
        ("hmac", None),
        ("aead", None),
        ("aead", Some("rfc7539(chacha20,poly1305)")),
    ];

    /// PINGs sealed with seqs 0, 1, 2, ...: `n` trailers, and the header.
    fn sealed_pings(tx: &mut Sealer, n: usize) -> ([u8; HEADER_LEN], Vec<Vec<u8>>) {
        let h = Header::ping(9).encode();
        let frames = (0..n)
            .map(|_| tx.seal(&h, &mut []).expect("seqs left"))
            .collect();
        (h, frames)
    }

    #[test]
    fn in_order_is_accepted() {
        for (mode, alg) in SEQ_MODES {
            let (mut tx, mut rx) = pair(mode, alg);
            let (h, frames) = sealed_pings(&mut tx, 100);
            for (i, f) in frames.iter().enumerate() {
                assert_eq!(rx.open(&h, &mut [], f), Ok(()), "{mode} {alg:?} seq {i}");
                assert_eq!(rx.next, i as u64 + 1);
            }
        }
    }

    #[test]
    fn replays_are_refused() {
        for (mode, alg) in SEQ_MODES {
            let (mut tx, mut rx) = pair(mode, alg);
            let (h, frames) = sealed_pings(&mut tx, 4);
            assert_eq!(rx.open(&h, &mut [], &frames[0]), Ok(()));
            // The same message again.
            assert_eq!(
                rx.open(&h, &mut [], &frames[0]),
                Err(ProtoError::OutOfOrder)
            );
            assert_eq!(rx.open(&h, &mut [], &frames[1]), Ok(()));
            assert_eq!(rx.open(&h, &mut [], &frames[2]), Ok(()));
            // An old seq, and a new message sealed with it.
            assert_eq!(
                rx.open(&h, &mut [], &frames[0]),
                Err(ProtoError::OutOfOrder)
            );
            let reused = tx.seal_at(1, &h, &mut []);
            assert_eq!(rx.open(&h, &mut [], &reused), Err(ProtoError::OutOfOrder));
            // A refusal moves nothing: the next one is still taken.
            assert_eq!(rx.next, 3);
            assert_eq!(rx.open(&h, &mut [], &frames[3]), Ok(()));
            // A seq changed in the trailer does not verify: the seq is
            // covered by the MAC, or is the AEAD nonce.
            let good = tx.seal(&h, &mut []).expect("seqs left");
            let mut forged = frames[3].clone();
            forged[7] = 4;
            assert_eq!(rx.open(&h, &mut [], &forged), Err(ProtoError::BadTag));
            // A failed message does not use up its seq.
            assert_eq!(rx.next, 4);
            assert_eq!(rx.open(&h, &mut [], &good), Ok(()));
        }
    }

    #[test]
    fn reorders_are_refused() {
        for (mode, alg) in SEQ_MODES {
            let (mut tx, mut rx) = pair(mode, alg);
            let (h, frames) = sealed_pings(&mut tx, 4);
            // 1 before 0.
            assert_eq!(
                rx.open(&h, &mut [], &frames[1]),
                Err(ProtoError::OutOfOrder)
            );
            assert_eq!(rx.open(&h, &mut [], &frames[0]), Ok(()));
            assert_eq!(rx.open(&h, &mut [], &frames[1]), Ok(()));
            // 3 before 2.
            assert_eq!(
                rx.open(&h, &mut [], &frames[3]),
                Err(ProtoError::OutOfOrder)
            );
            assert_eq!(rx.next, 2);
        }
    }

    #[test]
    fn gaps_are_refused() {
        for (mode, alg) in SEQ_MODES {
            let (mut tx, mut rx) = pair(mode, alg);
            let (h, frames) = sealed_pings(&mut tx, 3);
            // 0, then 2: 1 was dropped.
            assert_eq!(rx.open(&h, &mut [], &frames[0]), Ok(()));
            assert_eq!(
                rx.open(&h, &mut [], &frames[2]),
                Err(ProtoError::OutOfOrder)
            );
            // Far ahead, and the largest seq.
            for seq in [1000, u64::MAX - 1, u64::MAX] {
                let t = tx.seal_at(seq, &h, &mut []);
                assert_eq!(rx.open(&h, &mut [], &t), Err(ProtoError::OutOfOrder));
            }
            // The first message must carry seq 0.
            let (_, mut fresh) = pair(mode, alg);
            assert_eq!(
                fresh.open(&h, &mut [], &frames[1]),
                Err(ProtoError::OutOfOrder)
            );
            assert_eq!(fresh.open(&h, &mut [], &frames[0]), Ok(()));
        }
    }

    /// Without a seq (none, crc32c) there is no order to check.
    #[test]
    fn no_seq_no_order() {
        for mode in ["none", "crc32c"] {
            let (mut tx, mut rx) = pair(mode, None);
            let (h, frames) = sealed_pings(&mut tx, 2);
            for i in [1, 0, 0, 1] {
                assert_eq!(rx.open(&h, &mut [], &frames[i]), Ok(()), "{mode}");
            }
        }
    }

    /// A sealer never wraps: the last seq it seals is u64::MAX - 1, then it
    /// refuses, and keeps refusing.
    #[test]
    fn seqs_never_wrap() {
        for (mode, alg) in SEQ_MODES {
            let (mut tx, mut rx) = pair(mode, alg);
            let h = Header::ping(9).encode();
            tx.seq = u64::MAX - 2;
            rx.next = u64::MAX - 2;
            for seq in [u64::MAX - 2, u64::MAX - 1] {
                let t = tx.seal(&h, &mut []).expect("seqs left");
                assert_eq!(t[..SEQ_LEN], seq.to_be_bytes());
                assert_eq!(rx.open(&h, &mut [], &t), Ok(()));
            }
            assert_eq!(tx.seal(&h, &mut []), Err(SeqsUsedUp));
            assert_eq!(tx.seal(&h, &mut []), Err(SeqsUsedUp));
            assert_eq!(tx.seq, u64::MAX);
            // Nothing wrapped around to 0.
            let zero = tx.seal_at(0, &h, &mut []);
            assert_eq!(rx.open(&h, &mut [], &zero), Err(ProtoError::OutOfOrder));
        }
    }

    /// `K' = HKDF-Expand(K, "DST2 key update")`, pinned: computed with
    /// Python's `hmac` as `HMAC-SHA256(K, "DST2 key update" || 0x01)` for
    /// K = 0x00..0x1f, and once more from K' (the module's self-test pins
    /// the first 8 bytes of K').
    #[test]
    fn next_key_pinned() {
        let k: [u8; 32] = core::array::from_fn(|i| i as u8);
        let k1 = next_key(&k);
        assert_eq!(k1[..8], [0x09, 0xd6, 0xab, 0x3b, 0x2c, 0x95, 0x9c, 0xde]);
        assert_eq!(
            hex(&k1),
            "09d6ab3b2c959cde2994573d7e7dc700461502d46a3cf136c93f73f7bc76daaa"
        );
        assert_eq!(
            hex(&next_key(&k1)),
            "d7f0cded0e18ec796a4839053ce6ee2feb380e169afab6af35658377e5ef976f"
        );
        let mut b = [0u8; 32];
        crate::sec::hmac_sha256(&k, &[b"DST2 key update", &[1]])
            .iter()
            .zip(b.iter_mut())
            .for_each(|(s, d)| *d = *s);
        assert_eq!(k1, b);
    }

    /// A KEY_UPDATE and the first message after it, on the wire, pinned
    /// (Python's `hmac` and `cryptography`): the KEY_UPDATE sealed with K at
    /// the next seq (5), the PING after it with K' at seq 0.
    #[test]
    fn key_update_pinned() {
        let k: [u8; 32] = core::array::from_fn(|i| i as u8);
        let ping = Header::ping(9).encode();
        for (mode, ping_trailer) in [
            (
                "hmac",
                "000000000000000031bd3c6dd6e3395053ebda00bf860d13746a978f330de75b845ad0a6ded78da8",
            ),
            ("aead", "000000000000000052d9e00083989a820a9e054f8a597836"),
        ] {
            let (mut tx, _) = cfg(mode, None).channel(&k, &k);
            tx.seq = 5;
            let f = tx.key_update().expect("a key to replace");
            assert_eq!(
                hex(&f[..HEADER_LEN]),
                "4453543109000000000000000000000000000000000000000000000000000000\
                 0000000000000000"
            );
            if mode == "hmac" {
                assert_eq!(
                    hex(&f[HEADER_LEN..]),
                    "0000000000000005679c835fa8e828c3a8bdb88bb530d44c38906a14ccb374d0\
                     26e08ff7177aab66"
                );
            }
            assert_eq!((tx.seq, tx.sealed, tx.updates), (0, 0, 1));
            assert_eq!(tx.key, Some(next_key(&k)));
            let t = tx.seal(&ping, &mut []).expect("seqs left");
            assert_eq!(hex(&t), ping_trailer, "{mode}");
        }
    }

    /// Seals `n` PINGs (cookies from `first`) with `tx` and opens them with
    /// `rx`, which must take them all.
    fn ping_through(tx: &mut Sealer, rx: &mut Opener, first: u64, n: u64) {
        for cookie in first..first + n {
            let h = Header::ping(cookie).encode();
            let t = tx.seal(&h, &mut []).expect("seqs left");
            assert_eq!(rx.open(&h, &mut [], &t), Ok(()), "PING {cookie}");
        }
    }

    /// Receives the KEY_UPDATE `f` (header and trailer) with `rx`.
    fn take_update(rx: &mut Opener, f: &[u8]) -> Result<(), ProtoError> {
        let hb: [u8; HEADER_LEN] = f[..HEADER_LEN].try_into().expect("a header");
        rx.open(&hb, &mut [], &f[HEADER_LEN..])?;
        rx.update_key()
    }

    #[test]
    fn key_update_round_trip() {
        for (mode, alg) in MODES.into_iter().filter(|m| m.0 == "hmac" || m.0 == "aead") {
            let (mut tx, mut rx) = pair(mode, alg);
            ping_through(&mut tx, &mut rx, 0, 3);
            for round in 1..=20u64 {
                let f = tx.key_update().expect("a key to replace");
                assert_eq!(f.len(), HEADER_LEN + rx.trailer_len());
                assert_eq!(take_update(&mut rx, &f), Ok(()), "{mode} {alg:?} {round}");
                assert_eq!((tx.seq, rx.next), (0, 0));
                assert_eq!((tx.updates, rx.updates), (round, round));
                assert_eq!(tx.key, rx.key);
                // Payloads across the switch, encrypted under the new key.
                for n in [0usize, 1, 4096] {
                    let h = Header::io(Op::Write, 0, n as u64, 0, n as u32).encode();
                    let data: Vec<u8> = (0..n).map(|i| (i * 3 + round as usize) as u8).collect();
                    let mut p = data.clone();
                    let t = tx.seal(&h, &mut p).expect("seqs left");
                    assert_eq!(rx.open(&h, &mut p, &t), Ok(()), "{mode} {round} {n}");
                    assert_eq!(p, data);
                }
                // Some rounds update several times in a row.
                if round % 4 == 0 {
                    continue;
                }
                ping_through(&mut tx, &mut rx, round * 100, round % 3);
            }
            // Twenty updates later the key is none of the earlier ones.
            let (first, _) = pair(mode, alg);
            assert_ne!(tx.key, first.key);
        }
    }

    /// After a KEY_UPDATE, a message still sealed with the old key is
    /// refused (at the old key's next seq: out of order; at seq 0: the tag),
    /// as is one sealed with the new key at another seq than 0; and a
    /// refusal changes nothing.
    #[test]
    fn old_key_after_update_is_refused() {
        for (mode, alg) in SEQ_MODES {
            let (mut tx, mut rx) = pair(mode, alg);
            ping_through(&mut tx, &mut rx, 0, 3);
            let old = tx.clone();
            let f = tx.key_update().expect("a key to replace");
            assert_eq!(take_update(&mut rx, &f), Ok(()));
            let h = Header::ping(0xbad).encode();
            let t = old.seal_at(4, &h, &mut []);
            assert_eq!(rx.open(&h, &mut [], &t), Err(ProtoError::OutOfOrder));
            let t = old.seal_at(0, &h, &mut []);
            assert_eq!(rx.open(&h, &mut [], &t), Err(ProtoError::BadTag));
            let t = tx.seal_at(4, &h, &mut []);
            assert_eq!(rx.open(&h, &mut [], &t), Err(ProtoError::OutOfOrder));
            // The KEY_UPDATE again (a replay) is refused too.
            assert_eq!(take_update(&mut rx, &f), Err(ProtoError::OutOfOrder));
            assert_eq!((rx.next, rx.updates), (0, 1));
            ping_through(&mut tx, &mut rx, 10, 2);
        }
    }

    /// A KEY_UPDATE is taken in strict order like any message: one sealed
    /// with a seq that is not the next, or the messages around it swapped,
    /// are refused, and move nothing.
    #[test]
    fn reordered_key_update_is_refused() {
        for (mode, alg) in SEQ_MODES {
            let (mut tx, mut rx) = pair(mode, alg);
            let ku = Header::key_update().encode();
            ping_through(&mut tx, &mut rx, 0, 2);
            // Ahead (seq 3 instead of 2), and a used seq.
            for seq in [3, 1, u64::MAX - 1] {
                let mut r = rx.clone();
                let t = tx.seal_at(seq, &ku, &mut []);
                assert_eq!(r.open(&ku, &mut [], &t), Err(ProtoError::OutOfOrder));
                assert_eq!((r.next, r.updates), (2, 0));
            }
            // PING a (seq 2, K), KEY_UPDATE (seq 3, K), PING b (seq 0, K').
            let ha = Header::ping(0xa).encode();
            let ta = tx.seal(&ha, &mut []).expect("seqs left");
            let f = tx.key_update().expect("a key to replace");
            let hb = Header::ping(0xb).encode();
            let tb = tx.seal(&hb, &mut []).expect("seqs left");
            // The KEY_UPDATE before a, and b before the KEY_UPDATE.
            let mut r = rx.clone();
            assert_eq!(take_update(&mut r, &f), Err(ProtoError::OutOfOrder));
            let mut r = rx.clone();
            assert_eq!(r.open(&ha, &mut [], &ta), Ok(()));
            assert_eq!(r.open(&hb, &mut [], &tb), Err(ProtoError::OutOfOrder));
            // b under K at seq 3 would not be b: the tags differ.
            assert_eq!(r.updates, 0);
            // In order, all three.
            assert_eq!(rx.open(&ha, &mut [], &ta), Ok(()));
            assert_eq!(take_update(&mut rx, &f), Ok(()));
            assert_eq!(rx.open(&hb, &mut [], &tb), Ok(()));
            assert_eq!((rx.next, rx.updates), (1, 1));
        }
    }

    /// Without keys (none, crc32c) no KEY_UPDATE is sent, and one received
    /// is a protocol error; nothing changes either way.
    #[test]
    fn keyless_modes_have_no_key_update() {
        for mode in ["none", "crc32c"] {
            let (mut tx, mut rx) = pair(mode, None);
            tx.rekey.bytes = Some(1);
            ping_through(&mut tx, &mut rx, 0, 2);
            assert!(!tx.update_due(), "{mode}");
            assert_eq!(tx.key_update(), Err(UpdateError::NoKey));
            assert!(tx.rekeyed().is_none());
            assert_eq!((tx.seq, tx.updates), (2, 0));
            let ku = Header::key_update().encode();
            let t = tx.seal(&ku, &mut []).expect("seqs left");
            assert_eq!(
                rx.open(&ku, &mut [], &t),
                Ok(()),
                "{mode}: the trailer itself is good"
            );
            assert_eq!(rx.update_key(), Err(ProtoError::BadKind));
            assert_eq!(rx.updates, 0);
            ping_through(&mut tx, &mut rx, 5, 1);
        }
        assert_eq!(Opener::plain().update_key(), Err(ProtoError::BadKind));
        assert_eq!(Sealer::plain().key_update(), Err(UpdateError::NoKey));
    }

    /// When a sealer's key is due: after `--rekey-after` bytes (headers and
    /// payloads, as the module counts), or `--rekey-interval`; the count
    /// starts again with the next key.
    #[test]
    fn key_update_limits() {
        let mut c = cfg("aead", None);
        c.rekey.bytes = Some(4096 + 2 * HEADER_LEN as u64);
        let (mut tx, _) = c.channel(&[7; 32], &[8; 32]);
        assert!(!tx.update_due());
        tx.seal(&Header::ping(1).encode(), &mut [])
            .expect("seqs left");
        let h = Header::io(Op::Write, 0, 2, 0, 4096).encode();
        tx.seal(&h, &mut [0u8; 4095]).expect("seqs left");
        assert_eq!(tx.sealed, 4095 + 2 * HEADER_LEN as u64);
        assert!(!tx.update_due());
        tx.seal(&Header::ping(3).encode(), &mut [])
            .expect("seqs left");
        assert!(tx.update_due());
        tx.key_update().expect("a key to replace");
        assert!(!tx.update_due());
        assert_eq!((tx.sealed, tx.rekey), (0, c.rekey));
        // Every message: a limit of one byte.
        tx.rekey.bytes = Some(1);
        assert!(!tx.update_due());
        tx.seal(&Header::ping(4).encode(), &mut [])
            .expect("seqs left");
        assert!(tx.update_due());
        // By time.
        let mut c = cfg("hmac", None);
        c.rekey.interval = Some(Duration::from_millis(30));
        let (mut tx, _) = c.channel(&[7; 32], &[8; 32]);
        assert!(!tx.update_due());
        std::thread::sleep(Duration::from_millis(40));
        assert!(tx.update_due());
        tx.key_update().expect("a key to replace");
        assert!(!tx.update_due());
        // Seqs used up: no KEY_UPDATE either, and nothing changes.
        tx.seq = u64::MAX;
        let key = tx.key;
        assert_eq!(tx.key_update(), Err(UpdateError::SeqsUsedUp));
        assert_eq!((tx.key, tx.updates), (key, 1));
    }

    /// HKDF-SHA256 of this crate against RFC 5869, test case 1 (first 32
    /// bytes of the output): the construction the schedule relies on.
    #[test]
    fn hkdf_rfc5869() {
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let (prk, _) = Hkdf::<Sha256>::extract(Some(&salt), &ikm);
        assert_eq!(
            hex(&prk),
            "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
        );
        assert_eq!(
            hex(&expand(&prk.into(), &[&info[..4], &info[4..]])),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        );
    }

    /// X25519 against RFC 7748, section 6.1 (Alice and Bob).
    #[test]
    fn x25519_rfc7748() {
        let k = |h: &str| -> [u8; 32] {
            parse_hex(h)
                .and_then(|v| v.try_into().ok())
                .expect("32 bytes of hex")
        };
        let a = Ephemeral::from_secret(k(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let b = Ephemeral::from_secret(k(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ));
        assert_eq!(
            hex(a.public()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        assert_eq!(
            hex(b.public()),
            "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
        );
        let shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
        assert_eq!(
            a.agree(b.public()).map(|d| hex(&d)).as_deref(),
            Some(shared)
        );
        assert_eq!(
            b.agree(a.public()).map(|d| hex(&d)).as_deref(),
            Some(shared)
        );
        assert_eq!(
            a.secret(),
            k("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
        );
    }

    /// Every key share of small order, whatever its encoding, gives an
    /// all-zero DH, which `agree` refuses; ordinary shares do not.
    #[test]
    fn small_order_shares_are_refused() {
        for _ in 0..8 {
            let e = Ephemeral::generate();
            for p in small_order_points() {
                assert_eq!(e.agree(&p), None, "{}", hex(&p));
                let mut high = p;
                high[31] |= 0x80;
                assert_eq!(e.agree(&high), None, "{}", hex(&high));
                assert!(is_small_order(&p) && is_small_order(&high));
            }
            let other = Ephemeral::generate();
            assert!(e.agree(other.public()).is_some());
            assert!(!is_small_order(other.public()));
        }
    }

    #[test]
    fn same_point_up_to_encoding() {
        let a = *Ephemeral::generate().public();
        let b = *Ephemeral::generate().public();
        let mut top = a;
        top[31] ^= 0x80;
        assert!(same_point(&a, &a) && same_point(&a, &top));
        assert!(!same_point(&a, &b));
        let mut flipped = a;
        flipped[3] ^= 4;
        assert!(!same_point(&a, &flipped));
        // p + 1 encodes the point 1.
        let p1 = small_order_points()[6];
        assert!(same_point(&p1, &small_order_points()[1]));
    }

    #[test]
    fn parse_hex_rules() {
        assert_eq!(parse_hex("00ff7A"), Some(vec![0, 0xff, 0x7a]));
        assert_eq!(parse_hex(""), Some(vec![]));
        assert_eq!(parse_hex("0"), None);
        assert_eq!(parse_hex("0g"), None);
        assert_eq!(parse_hex("+1"), None);
    }

    /// The proofs and keys depend on every input: the key file, each
    /// identity, DH, and every byte of the transcript.
    #[test]
    fn schedule_depends_on_everything() {
        let (_, hello) = crate::examples::example_hello();
        let cb = crate::examples::example_challenge().encode();
        let hb = hello.encode();
        let dh = [0x42u8; 32];
        let (c, x) = (hello.client, hello.export);
        let base = Schedule::new(EXAMPLE_PSK, &c, &x, &dh);
        let t1 = th1(&hb, &cb);
        let p = base.proof_local(&t1);
        let other = Name::new(b"other").expect("valid");
        for s in [
            Schedule::new(b"another key, 32 bytes long......", &c, &x, &dh),
            Schedule::new(EXAMPLE_PSK, &other, &x, &dh),
            Schedule::new(EXAMPLE_PSK, &c, &other, &dh),
            Schedule::new(EXAMPLE_PSK, &x, &c, &dh),
            Schedule::new(EXAMPLE_PSK, &c, &x, &[0x43; 32]),
        ] {
            assert_ne!(s.proof_local(&t1), p);
        }
        // The length prefixes keep "ab" + "c" apart from "a" + "bc".
        let n = |s: &[u8]| Name::new(s).expect("valid");
        assert_ne!(
            psk_pair(EXAMPLE_PSK, &n(b"ab"), &n(b"c")),
            psk_pair(EXAMPLE_PSK, &n(b"a"), &n(b"bc"))
        );
        for at in [0, 104, 135, 136, 263] {
            let mut h2 = hb;
            h2[at] ^= 1;
            assert_ne!(base.proof_local(&th1(&h2, &cb)), p, "HELLO byte {at}");
        }
        for at in [0, 63, 64, 95] {
            let mut c2 = cb;
            c2[at] ^= 1;
            assert_ne!(base.proof_local(&th1(&hb, &c2)), p, "CHALLENGE byte {at}");
        }
        // The export's proof is not the local node's: the labels differ.
        let proven = crate::examples::example_grant().proven_bytes();
        let t2 = th2(&hb, &cb, &p, &proven);
        assert_ne!(t2, t1);
        assert_ne!(base.proof_export(&t2), p);
        for at in [0, 23, 48, 111] {
            let mut g2 = proven;
            g2[at] ^= 1;
            assert_ne!(th2(&hb, &cb, &p, &g2), t2, "grant byte {at}");
        }
        let mut p2 = p;
        p2[0] ^= 1;
        assert_ne!(th2(&hb, &cb, &p2, &proven), t2);
        let k = base.session_keys(&t2);
        assert_ne!(k.le, k.el);
        assert_ne!(k.le, base.proof_export(&t2));
    }

    #[test]
    fn config_rules() {
        let key = Some(vec![7u8; 32]);
        assert!(SecConfig::new("none", None, None).is_ok());
        assert!(SecConfig::new("NONE", None, key.clone()).is_ok());
        assert!(SecConfig::new("crc32c", None, None).is_ok());
        assert!(SecConfig::new("hmac", None, None).is_err());
        assert!(SecConfig::new("aead", None, None).is_err());
        assert!(SecConfig::new("rot13", None, None).is_err());
        assert!(SecConfig::new("none", Some("gcm(aes)"), None).is_err());
        assert!(SecConfig::new("aead", Some("ccm(aes)"), key.clone()).is_err());
        assert!(SecConfig::new("hmac", Some("gcm(aes)"), key.clone()).is_err());
        assert!(SecConfig::new("hmac", None, Some(vec![1; 15])).is_err());
        assert!(SecConfig::new("hmac", None, Some(vec![1; 16])).is_ok());
        assert!(SecConfig::new("hmac", None, Some(vec![1; 64])).is_ok());
        assert!(SecConfig::new("hmac", None, Some(vec![1; 65])).is_err());
        let c = SecConfig::new("aead", None, key).expect("valid");
        assert_eq!(c.alg.as_bytes(), b"gcm(aes)");
        assert!(c.security().valid());
        assert_eq!(trailer_len(&c), 24);
        assert_eq!(SecConfig::default().security(), Security::NONE);
        let h = SecConfig::new("hmac", Some("hmac(sha512)"), Some(vec![1; 20])).expect("valid");
        assert_eq!(trailer_len(&h), 72);
        assert_eq!(
            trailer_len(&h),
            h.protection.trailer_len(MacAlg::Sha512.digest_len())
        );
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }
}
