// SPDX-License-Identifier: GPL-2.0

//! The security layer of the wire protocol, in userspace: the handshake
//! proofs, the session keys and the per-message trailers (crc32c, HMAC,
//! AEAD) with their sequence numbers and replay window.
//!
//! `Documentation/protocol.md`, "Security", is the specification; the labels
//! and lengths come from `dst/proto.rs`.

use std::fmt;

use aes_gcm::{
    aead::{generic_array::GenericArray, AeadInPlace, KeyInit},
    Aes256Gcm,
};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};

use crate::proto::{
    AlgName, Protection, ProtoError, Security, AEAD_TAG_LEN, AUTH_LEN, CRC_LEN, HEADER_LEN,
    HELLO_LEN, LABEL_EXPORT_PROOF, LABEL_KEY_EL, LABEL_KEY_LE, LABEL_LOCAL_PROOF, REPLAY_WINDOW,
    SEQ_LEN,
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

/// `proof_local = HMAC-SHA256(PSK, "DST1 local proof" || HELLO body || Ns)`.
pub(crate) fn proof_local(psk: &[u8], hello: &[u8; HELLO_LEN], ns: &[u8; AUTH_LEN]) -> [u8; 32] {
    hmac_sha256(psk, &[LABEL_LOCAL_PROOF, hello, ns])
}

/// `proof_export = HMAC-SHA256(PSK, "DST1 export proof" || HELLO body || Ns
/// || HELLO_REPLY body bytes 0..48)`.
pub(crate) fn proof_export(
    psk: &[u8],
    hello: &[u8; HELLO_LEN],
    ns: &[u8; AUTH_LEN],
    grant: &[u8; 48],
) -> [u8; 32] {
    hmac_sha256(psk, &[LABEL_EXPORT_PROOF, hello, ns, grant])
}

/// The session keys `(K_le, K_el)` of a connection with nonces `nc`, `ns`.
pub(crate) fn session_keys(
    psk: &[u8],
    nc: &[u8; AUTH_LEN],
    ns: &[u8; AUTH_LEN],
) -> ([u8; SESSION_KEY_LEN], [u8; SESSION_KEY_LEN]) {
    (
        hmac_sha256(psk, &[LABEL_KEY_LE, nc, ns]),
        hmac_sha256(psk, &[LABEL_KEY_EL, nc, ns]),
    )
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

/// What one side is configured with: mode, algorithm and optional key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SecConfig {
    pub(crate) protection: Protection,
    pub(crate) alg: AlgName,
    pub(crate) key: Option<Vec<u8>>,
}

impl Default for SecConfig {
    fn default() -> Self {
        SecConfig {
            protection: Protection::None,
            alg: AlgName::EMPTY,
            key: None,
        }
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
        let alg = AlgName::new(alg_name.as_bytes())
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
        (
            Sealer { cipher: tx, seq: 0 },
            Opener {
                cipher: rx,
                window: ReplayWindow::default(),
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
}

/// The AEAD nonce of `seq`: 4 zero bytes and the big-endian seq.
fn aead_iv(seq: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[4..].copy_from_slice(&seq.to_be_bytes());
    iv
}

/// Protects the messages one side sends.
#[derive(Clone)]
pub(crate) struct Sealer {
    cipher: Cipher,
    /// The seq of the next message.
    pub(crate) seq: u64,
}

impl Sealer {
    /// A sealer of the none mode.
    pub(crate) fn plain() -> Self {
        Sealer {
            cipher: Cipher::None,
            seq: 0,
        }
    }

    /// Seals the next message: encrypts `payload` in place (aead) and
    /// returns the trailer.
    pub(crate) fn seal(&mut self, header: &[u8; HEADER_LEN], payload: &mut [u8]) -> Vec<u8> {
        let seq = self.seq;
        self.seq += 1;
        self.seal_at(seq, header, payload)
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

/// The sequence numbers seen by a receiver: the highest one and a bitmap of
/// the [`REPLAY_WINDOW`] below and including it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReplayWindow {
    highest: Option<u64>,
    /// Bit `i` set: `highest - i` was seen.
    bits: [u64; (REPLAY_WINDOW / 64) as usize],
}

impl ReplayWindow {
    /// Whether `seq` may be accepted: never seen and larger than
    /// `highest - REPLAY_WINDOW`.
    pub(crate) fn check(&self, seq: u64) -> bool {
        let Some(h) = self.highest else {
            return true;
        };
        if seq > h {
            return true;
        }
        let d = h - seq;
        d < REPLAY_WINDOW && self.bits[(d / 64) as usize] & (1 << (d % 64)) == 0
    }

    /// Records `seq` as seen (after [`ReplayWindow::check`] and the tag).
    pub(crate) fn mark(&mut self, seq: u64) {
        let h = match self.highest {
            Some(h) if seq <= h => h,
            Some(h) => {
                self.shift(seq - h);
                self.highest = Some(seq);
                seq
            }
            None => {
                self.highest = Some(seq);
                seq
            }
        };
        let d = h - seq;
        if d < REPLAY_WINDOW {
            self.bits[(d / 64) as usize] |= 1 << (d % 64);
        }
    }

    /// Moves the window up by `n`: bit `i` becomes bit `i + n`.
    fn shift(&mut self, n: u64) {
        if n >= REPLAY_WINDOW {
            self.bits = Default::default();
            return;
        }
        let (words, bits) = ((n / 64) as usize, (n % 64) as u32);
        let len = self.bits.len();
        for i in (0..len).rev() {
            let lo = if i >= words { self.bits[i - words] } else { 0 };
            let below = if bits > 0 && i > words {
                self.bits[i - words - 1] >> (64 - bits)
            } else {
                0
            };
            self.bits[i] = if bits > 0 { lo << bits } else { lo } | below;
        }
    }
}

/// Checks and unprotects the messages one side receives.
#[derive(Clone)]
pub(crate) struct Opener {
    cipher: Cipher,
    pub(crate) window: ReplayWindow,
}

impl Opener {
    /// An opener of the none mode.
    pub(crate) fn plain() -> Self {
        Opener {
            cipher: Cipher::None,
            window: ReplayWindow::default(),
        }
    }

    pub(crate) fn trailer_len(&self) -> usize {
        self.cipher.trailer_len()
    }

    /// Checks a received message and decrypts its payload in place (aead).
    /// Fails with [`ProtoError::BadTag`] or [`ProtoError::Replay`]; then the
    /// message must not be used and the connection is closed.
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
        if self.cipher.has_seq() && !self.window.check(seq) {
            return Err(ProtoError::Replay);
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
            self.window.mark(seq);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples::{example_nc, example_ns, hex, EXAMPLE_PSK};
    use crate::proto::{Header, Op};

    fn cfg(protection: &str, alg: Option<&str>) -> SecConfig {
        SecConfig::new(protection, alg, Some(EXAMPLE_PSK.to_vec())).expect("valid")
    }

    /// Sealer of the local node and opener of the export for the example
    /// keys, in `protection` with `alg`.
    fn pair(protection: &str, alg: Option<&str>) -> (Sealer, Opener) {
        let c = cfg(protection, alg);
        let (le, el) = session_keys(EXAMPLE_PSK, &example_nc(), &example_ns());
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
        let (le, el) = session_keys(EXAMPLE_PSK, &example_nc(), &example_ns());
        let seal = |protection: &str, alg: Option<&str>, key: &[u8; 32]| {
            let (mut tx, _) = cfg(protection, alg).channel(key, key);
            tx.seq = 5;
            let mut p = payload.clone();
            let t = tx.seal(&hb, &mut p);
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
                let t = tx.seal(&h, &mut p);
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
            let t = tx.seal(&hb, &mut sealed);
            // Every single-bit flip of header, payload or trailer.
            let total = (HEADER_LEN + sealed.len() + t.len()) * 8;
            for bit in 0..total {
                let (mut h, mut p, mut tr) = (hb, sealed.clone(), t.clone());
                let (byte, mask) = (bit / 8, 1u8 << (bit % 8));
                if byte < HEADER_LEN {
                    h[byte] ^= mask;
                } else if byte < HEADER_LEN + p.len() {
                    p[byte - HEADER_LEN] ^= mask;
                } else {
                    tr[byte - HEADER_LEN - sealed.len()] ^= mask;
                }
                let mut rx = rx.clone();
                let r = rx.open(&h, &mut p, &tr);
                assert!(
                    matches!(r, Err(ProtoError::BadTag)),
                    "{mode} {alg:?}: flip of bit {bit} accepted: {r:?}"
                );
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
                let (le, el) = session_keys(EXAMPLE_PSK, &example_nc(), &example_ns());
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

    #[test]
    fn replays_are_refused() {
        for (mode, alg) in [
            ("hmac", None),
            ("aead", None),
            ("aead", Some("rfc7539(chacha20,poly1305)")),
        ] {
            let (mut tx, mut rx) = pair(mode, alg);
            let h = Header::ping(9).encode();
            let frames: Vec<Vec<u8>> = (0..4).map(|_| tx.seal(&h, &mut [])).collect();
            assert_eq!(rx.open(&h, &mut [], &frames[0]), Ok(()));
            assert_eq!(rx.open(&h, &mut [], &frames[0]), Err(ProtoError::Replay));
            // Out of order within the window is fine, each once.
            assert_eq!(rx.open(&h, &mut [], &frames[3]), Ok(()));
            assert_eq!(rx.open(&h, &mut [], &frames[1]), Ok(()));
            assert_eq!(rx.open(&h, &mut [], &frames[3]), Err(ProtoError::Replay));
            assert_eq!(rx.open(&h, &mut [], &frames[2]), Ok(()));
            assert_eq!(rx.open(&h, &mut [], &frames[1]), Err(ProtoError::Replay));
            // A seq changed in the trailer does not verify: the seq is
            // covered by the MAC, or is the AEAD nonce.
            let mut forged = frames[2].clone();
            forged[7] = 200;
            assert_eq!(rx.open(&h, &mut [], &forged), Err(ProtoError::BadTag));
            // A failed frame does not mark its seq as seen.
            let good = tx.seal_at(200, &h, &mut []);
            assert_eq!(rx.open(&h, &mut [], &good), Ok(()));
        }
    }

    #[test]
    fn replay_window_edges() {
        let (tx, mut rx) = pair("hmac", None);
        let h = Header::ping(1).encode();
        let at = |seq: u64| tx.seal_at(seq, &h, &mut []);
        assert_eq!(rx.open(&h, &mut [], &at(5000)), Ok(()));
        // Larger than highest - 1024: 3977..=4999 are in the window.
        assert_eq!(rx.open(&h, &mut [], &at(3977)), Ok(()));
        assert_eq!(rx.open(&h, &mut [], &at(3976)), Err(ProtoError::Replay));
        assert_eq!(rx.open(&h, &mut [], &at(0)), Err(ProtoError::Replay));
        assert_eq!(rx.open(&h, &mut [], &at(4999)), Ok(()));
        assert_eq!(rx.open(&h, &mut [], &at(3977)), Err(ProtoError::Replay));
        // Moving the top moves the bottom.
        assert_eq!(rx.open(&h, &mut [], &at(5001)), Ok(()));
        assert_eq!(rx.open(&h, &mut [], &at(3977)), Err(ProtoError::Replay));
        assert_eq!(rx.open(&h, &mut [], &at(3978)), Ok(()));
        assert_eq!(rx.open(&h, &mut [], &at(u64::MAX)), Ok(()));
        assert_eq!(rx.open(&h, &mut [], &at(5002)), Err(ProtoError::Replay));
        assert_eq!(rx.open(&h, &mut [], &at(u64::MAX - 1023)), Ok(()));
        assert_eq!(
            rx.open(&h, &mut [], &at(u64::MAX - 1024)),
            Err(ProtoError::Replay)
        );
    }

    /// The window against a model (a set of seen seqs) under random traffic.
    #[test]
    fn replay_window_model() {
        let mut w = ReplayWindow::default();
        let mut seen = std::collections::BTreeSet::new();
        let mut highest: Option<u64> = None;
        let mut x = 0x1234_5678_9abc_def1u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let base = highest.unwrap_or(0);
            let seq = match x % 8 {
                0 => base + 1 + (x >> 8) % 3000,
                1 => base.saturating_sub((x >> 8) % 2048),
                _ => base.saturating_sub((x >> 8) % 1100) + (x >> 40) % 4,
            };
            let ok = !seen.contains(&seq) && highest.is_none_or(|h| seq + REPLAY_WINDOW > h);
            assert_eq!(w.check(seq), ok, "seq {seq} highest {highest:?}");
            if ok {
                w.mark(seq);
                seen.insert(seq);
                highest = Some(highest.map_or(seq, |h| h.max(seq)));
            }
        }
    }

    #[test]
    fn handshake_proofs_depend_on_everything() {
        let (_, hello) = crate::examples::example_hello();
        let hb = hello.encode();
        let ns = example_ns();
        let p = proof_local(EXAMPLE_PSK, &hb, &ns);
        let mut other = hb;
        other[135] ^= 1;
        assert_ne!(proof_local(EXAMPLE_PSK, &other, &ns), p);
        let mut ns2 = ns;
        ns2[0] ^= 1;
        assert_ne!(proof_local(EXAMPLE_PSK, &hb, &ns2), p);
        assert_ne!(
            proof_local(b"another key, 32 bytes long......", &hb, &ns),
            p
        );
        // The export's proof is not the local node's: the labels differ.
        let grant = crate::examples::example_grant().grant_bytes();
        assert_ne!(proof_export(EXAMPLE_PSK, &hb, &ns, &grant), p);
        let mut g2 = grant;
        g2[23] ^= 1;
        assert_ne!(
            proof_export(EXAMPLE_PSK, &hb, &ns, &g2),
            proof_export(EXAMPLE_PSK, &hb, &ns, &grant)
        );
        let (le, el) = session_keys(EXAMPLE_PSK, &example_nc(), &ns);
        assert_ne!(le, el);
        assert_ne!(session_keys(EXAMPLE_PSK, &example_nc(), &ns2).0, le);
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
