// SPDX-License-Identifier: GPL-2.0

//! Cryptography of the protocol's security extension (the "Security" section
//! of `Documentation/protocol.md`): protection of every message after the
//! handshake, keys, and the primitives the handshake (`handshake.rs`) builds
//! on.
//!
//! C headers: [`include/crypto/aead.h`](srctree/include/crypto/aead.h),
//! [`include/crypto/hash.h`](srctree/include/crypto/hash.h),
//! [`include/crypto/sha2.h`](srctree/include/crypto/sha2.h),
//! [`include/linux/crc32.h`](srctree/include/linux/crc32.h)
//!
//! - [`Protector`]: the protection of one direction of one connection
//!   (mode, algorithm and that direction's session key). It seals a message
//!   (computes its trailer; encrypts its payload in aead mode) and opens one
//!   (checks the trailer; decrypts in aead mode).
//! - [`Key`], [`SessionKeys`], [`hmac_sha256`], [`random_bytes`],
//!   [`ct_eq`]: secrets and what the handshake computes them with.
//!
//! The kernel crypto API is reached through `shim_crypto.c`; the protocol
//! decisions (IV layout, what is authenticated, trailer layout) are made
//! here. Sealing and opening sleep: they run in process context, on the IO
//! path. No allocation of theirs can fail: aead mode takes its per-message
//! state from a mempool of the transform (see [`Aead`]), the other modes
//! need none.

use core::ptr::NonNull;

use kernel::{
    bindings,
    error::{from_err_ptr, to_result},
    ffi::{c_char, c_uint, c_void},
    prelude::*,
};

use crate::{
    bdev::noio,
    error::code,
    proto::{Protection, HEADER_LEN, MAX_IO_BYTES_LIMIT},
};

/// Length of a session key (`K_le`, `K_el`), which keys the data channel.
pub(crate) const KEY_LEN: usize = 32;
/// Shortest pre-shared key.
pub(crate) const MIN_PSK_LEN: usize = 16;
/// Longest pre-shared key, and of any [`Key`].
pub(crate) const MAX_PSK_LEN: usize = 64;
/// Length of a SHA-256 or HMAC-SHA256 value: transcript hashes, proofs.
pub(crate) const SHA256_LEN: usize = 32;
/// Longest algorithm name (the HELLO field is 64 bytes with a NUL).
pub(crate) const MAX_ALG_LEN: usize = 63;
/// Length of the sequence number that starts the hmac and aead trailers.
pub(crate) const SEQ_LEN: usize = 8;
/// Length of the aead tag.
pub(crate) const TAG_LEN: usize = 16;
/// Length of the crc32c trailer.
pub(crate) const CRC_LEN: usize = 4;
/// Longest digest of a keyed hash (`HASH_MAX_DIGESTSIZE`: sha512).
pub(crate) const MAX_DIGEST_LEN: usize = 64;
/// Longest trailer of any mode.
pub(crate) const MAX_TRAILER_LEN: usize = SEQ_LEN + MAX_DIGEST_LEN;

/// Length of the AEAD IV: 4 zero bytes and the sequence number.
const IV_LEN: usize = 12;

/// Most non-empty [`Segments`] of one message that aead mode takes: the
/// protocol's largest payload (4 MiB) in page-sized segments. A device's
/// request segments neither exceed nor cross a page and number at most
/// `max_io_bytes / PAGE_SIZE` (`local_node`); an export's buffers are whole
/// pages.
pub(crate) const MAX_SEGMENTS: usize = MAX_IO_BYTES_LIMIT as usize / kernel::page::PAGE_SIZE;

/// Per-message states an [`Aead`] keeps in reserve: what its mempool
/// guarantees under memory pressure, and how many messages of it are
/// sealed or opened at once without allocating.
const AEAD_RESERVE: u32 = 2;

/// `struct dst_aead` of `shim_crypto.c` (a `crypto_aead` and the mempool of
/// its per-message state), only handled by pointer.
#[repr(C)]
struct RawAead {
    _private: [u8; 0],
}

/// `struct crypto_shash`, only handled by pointer.
#[repr(C)]
struct RawShash {
    _private: [u8; 0],
}

/// `shim_crypto.c`. A `struct bio_vec *` is passed as `*const c_void`: its
/// bindgen type reaches (through `struct page`) a zero-sized field that the
/// FFI-safety lint refuses.
mod ffi {
    use super::{RawAead, RawShash};
    use kernel::{
        bindings::hmac_sha256_ctx,
        ffi::{c_char, c_int, c_uint, c_void},
    };

    extern "C" {
        pub(super) fn dst_aead_alloc(
            name: *const c_char,
            key: *const u8,
            key_len: c_uint,
            tag_len: c_uint,
            max_segs: c_uint,
            reserve: c_uint,
        ) -> *mut RawAead;
        pub(super) fn dst_aead_free(aead: *mut RawAead);
        pub(super) fn dst_aead_ivsize(aead: *mut RawAead) -> c_uint;
        pub(super) fn dst_aead_seal(
            aead: *mut RawAead,
            iv: *const u8,
            aad: *const u8,
            aad_len: c_uint,
            src: *const c_void,
            nr_src: c_uint,
            dst: *const c_void,
            nr_dst: c_uint,
            tag: *mut u8,
        ) -> c_int;
        pub(super) fn dst_aead_open(
            aead: *mut RawAead,
            iv: *const u8,
            aad: *const u8,
            aad_len: c_uint,
            data: *const c_void,
            nr: c_uint,
            tag: *const u8,
        ) -> c_int;
        pub(super) fn dst_shash_alloc(
            name: *const c_char,
            key: *const u8,
            key_len: c_uint,
        ) -> *mut RawShash;
        pub(super) fn dst_shash_free(tfm: *mut RawShash);
        pub(super) fn dst_shash_digestsize(tfm: *mut RawShash) -> c_uint;
        pub(super) fn dst_shash_digest(
            tfm: *mut RawShash,
            pre: *const u8,
            pre_len: c_uint,
            bv: *const c_void,
            nr: c_uint,
            out: *mut u8,
        ) -> c_int;
        pub(super) fn dst_bvec_copy(
            dst: *const c_void,
            ndst: c_uint,
            src: *const c_void,
            nsrc: c_uint,
        ) -> c_int;
        pub(super) fn dst_crc32c(
            crc: u32,
            pre: *const u8,
            pre_len: c_uint,
            bv: *const c_void,
            nr: c_uint,
        ) -> u32;
        pub(super) fn dst_hmac_sha256_update(
            ctx: *mut hmac_sha256_ctx,
            data: *const u8,
            len: usize,
        );
        pub(super) fn dst_crypto_memneq(a: *const c_void, b: *const c_void, len: usize) -> c_int;
        pub(super) fn dst_memzero_explicit(p: *mut c_void, len: usize);
    }
}

/// The error of a message that does not verify.
pub(crate) fn ebadmsg() -> Error {
    code::ebadmsg()
}

/// Whether `e` is [`ebadmsg`]: the peer sent a forged or corrupted message.
/// Any other error of [`Protector::open`] is local and says nothing about
/// the message.
pub(crate) fn is_bad_msg(e: Error) -> bool {
    e == ebadmsg()
}

/// The payload of one message as page segments, for [`Protector`].
///
/// # Invariants
///
/// For `'a`, every segment describes `bv_len` bytes at `bv_offset` from
/// `bv_page` on (possibly across physically contiguous pages) that stay
/// allocated and that nobody else writes, nor reads while they are being
/// written (decrypted or encrypted in place).
///
/// Aead mode takes at most [`MAX_SEGMENTS`] non-empty segments (`EINVAL`
/// beyond).
pub(crate) struct Segments<'a> {
    bv: &'a [bindings::bio_vec],
}

impl<'a> Segments<'a> {
    /// Wraps page segments of a message payload.
    ///
    /// # Safety
    ///
    /// The type invariant must hold for `'a`. The pages of a block request
    /// do not meet it for protection in place (a process may change its
    /// O_DIRECT buffer at any time): they are only copied or encrypted from,
    /// and copied into ([`copy`]), never sealed or opened in place.
    pub(crate) unsafe fn from_raw(bv: &'a [bindings::bio_vec]) -> Self {
        // INVARIANT: guaranteed by the caller.
        Segments { bv }
    }

    /// Total bytes.
    pub(crate) fn len(&self) -> usize {
        self.bv.iter().map(|b| b.bv_len as usize).sum()
    }

    /// Whether `self` and `other` are the same segment list (in place).
    fn same(&self, other: &Segments<'_>) -> bool {
        core::ptr::eq(self.bv, other.bv)
    }

    fn ptr(&self) -> *const c_void {
        self.bv.as_ptr().cast()
    }

    fn nr(&self) -> Result<c_uint> {
        c_uint::try_from(self.bv.len()).map_err(|_| EINVAL)
    }
}

/// An algorithm name checked before it reaches the crypto API: 1 to
/// [`MAX_ALG_LEN`] printable ASCII bytes, stored NUL-terminated.
struct AlgName([u8; MAX_ALG_LEN + 1]);

impl AlgName {
    fn new(alg: &[u8]) -> Result<Self> {
        if alg.is_empty()
            || alg.len() > MAX_ALG_LEN
            || !alg.iter().all(|b| (0x20..0x7f).contains(b))
        {
            return Err(EINVAL);
        }
        let mut name = [0; MAX_ALG_LEN + 1];
        // `alg` is shorter than `name`, so the last byte stays NUL.
        for (d, s) in name.iter_mut().zip(alg) {
            *d = *s;
        }
        Ok(AlgName(name))
    }

    fn as_ptr(&self) -> *const c_char {
        self.0.as_ptr().cast()
    }
}

/// A keyed AEAD transform with its own `mempool_t` of per-message state
/// (the `aead_request`, IV, AAD and tag buffers, and scatterlists for
/// [`MAX_SEGMENTS`] segments): each seal or open takes one element and gives
/// it back before it returns. [`AEAD_RESERVE`] elements are reserved, so an
/// operation never fails for lack of memory under pressure: it waits for an
/// element instead, which the operations holding one give back without
/// waiting for anything but the cipher.
///
/// # Invariants
///
/// `0` is a `struct dst_aead` from `dst_aead_alloc`: a keyed transform with
/// an [`IV_LEN`] IV and a [`TAG_LEN`] tag, and its mempool for
/// [`MAX_SEGMENTS`]; owned and freed on drop. C keeps no pointer to this
/// value, only to the heap `struct dst_aead`, which does not move.
struct Aead(NonNull<RawAead>);

// SAFETY: a transform and its mempool may be used and freed from any task.
unsafe impl Send for Aead {}
// SAFETY: after `setkey` the transform is only read; each operation has its
// own request (in its own mempool element; the mempool has its own lock), so
// concurrent operations are allowed by the crypto API.
unsafe impl Sync for Aead {}

impl Aead {
    fn new(name: &AlgName, key: &[u8; KEY_LEN]) -> Result<Self> {
        // SAFETY: `name` is NUL-terminated, `key` readable for KEY_LEN bytes.
        let tfm = from_err_ptr(unsafe {
            ffi::dst_aead_alloc(
                name.as_ptr(),
                key.as_ptr(),
                KEY_LEN as c_uint,
                TAG_LEN as c_uint,
                MAX_SEGMENTS as c_uint,
                AEAD_RESERVE,
            )
        })
        .map_err(alloc_error)?;
        let tfm = NonNull::new(tfm).ok_or(ENOMEM)?;
        // SAFETY: `tfm` is a live `dst_aead`.
        let iv_len = unsafe { ffi::dst_aead_ivsize(tfm.as_ptr()) };
        // INVARIANT: keyed with TAG_LEN and a mempool for MAX_SEGMENTS
        // above; freed on drop even if the IV size is wrong (which
        // `dst_aead_alloc` refuses already, e.g. "ccm(aes)", whose IV is 16
        // bytes).
        let aead = Aead(tfm);
        if iv_len as usize != IV_LEN {
            return Err(EINVAL);
        }
        Ok(aead)
    }

    fn seal(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8; HEADER_LEN],
        src: &Segments<'_>,
        dst: &Segments<'_>,
        tag: &mut [u8; TAG_LEN],
    ) -> Result {
        // In place: the C side sees the same array twice.
        let dst = if src.same(dst) { src } else { dst };
        // SAFETY: the transform is live (type invariant); `iv`, `aad` and
        // `tag` are valid for their lengths (TAG_LEN is the transform's
        // tag size) and only used during the call; the segments are valid
        // and not used by others (their invariant); the C side checks their
        // count against the mempool elements' capacity.
        to_result(unsafe {
            ffi::dst_aead_seal(
                self.0.as_ptr(),
                iv.as_ptr(),
                aad.as_ptr(),
                HEADER_LEN as c_uint,
                src.ptr(),
                src.nr()?,
                dst.ptr(),
                dst.nr()?,
                tag.as_mut_ptr(),
            )
        })
    }

    fn open(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8; HEADER_LEN],
        data: &Segments<'_>,
        tag: &[u8; TAG_LEN],
    ) -> Result {
        // SAFETY: as in `seal`.
        to_result(unsafe {
            ffi::dst_aead_open(
                self.0.as_ptr(),
                iv.as_ptr(),
                aad.as_ptr(),
                HEADER_LEN as c_uint,
                data.ptr(),
                data.nr()?,
                tag.as_ptr(),
            )
        })
    }
}

impl Drop for Aead {
    fn drop(&mut self) {
        // SAFETY: we own the transform (type invariant), and no operation
        // runs (they borrow `self`), so every mempool element is back.
        // Freeing zeroes the expanded key.
        unsafe { ffi::dst_aead_free(self.0.as_ptr()) };
    }
}

/// A keyed hash transform (an HMAC).
///
/// # Invariants
///
/// `tfm` is a keyed `crypto_shash` from `dst_shash_alloc`, owned and freed
/// on drop; `digest_len` is its digest size, 1 to [`MAX_DIGEST_LEN`].
struct Shash {
    tfm: NonNull<RawShash>,
    digest_len: usize,
}

// SAFETY: a transform may be used and freed from any task.
unsafe impl Send for Shash {}
// SAFETY: after `setkey` the transform is only read; the hash state lives
// in a per-call descriptor.
unsafe impl Sync for Shash {}

impl Shash {
    fn new(name: &AlgName, key: &[u8; KEY_LEN]) -> Result<Self> {
        // SAFETY: `name` is NUL-terminated, `key` readable for KEY_LEN bytes.
        let tfm = from_err_ptr(unsafe {
            ffi::dst_shash_alloc(name.as_ptr(), key.as_ptr(), KEY_LEN as c_uint)
        })
        .map_err(alloc_error)?;
        let tfm = NonNull::new(tfm).ok_or(ENOMEM)?;
        // SAFETY: `tfm` is a live transform.
        let digest_len = unsafe { ffi::dst_shash_digestsize(tfm.as_ptr()) } as usize;
        if digest_len == 0 || digest_len > MAX_DIGEST_LEN {
            // SAFETY: `tfm` is ours and unused.
            unsafe { ffi::dst_shash_free(tfm.as_ptr()) };
            return Err(EINVAL);
        }
        // INVARIANT: checked above.
        Ok(Shash { tfm, digest_len })
    }

    /// The digest of `pre || data` into `out` (exactly `digest_len` bytes).
    fn digest(&self, pre: &[u8], data: &Segments<'_>, out: &mut [u8]) -> Result {
        if out.len() != self.digest_len {
            return Err(EINVAL);
        }
        // SAFETY: the transform is live (type invariant); `pre` and `out`
        // are valid for their lengths (`out` holds the digest, checked
        // above; `pre` is a short prefix); the segments are valid.
        to_result(unsafe {
            ffi::dst_shash_digest(
                self.tfm.as_ptr(),
                pre.as_ptr(),
                pre.len() as c_uint,
                data.ptr(),
                data.nr()?,
                out.as_mut_ptr(),
            )
        })
    }
}

impl Drop for Shash {
    fn drop(&mut self) {
        // SAFETY: we own the transform (type invariant).
        unsafe { ffi::dst_shash_free(self.tfm.as_ptr()) };
    }
}

/// The error of a failed transform allocation: `ENOENT` (no algorithm of
/// that name), `ENOMEM`, or `EINVAL` for everything else the crypto API
/// reports when the name exists but does not fit (an AEAD template asked
/// for as a hash, a hash without a key, a key size the cipher refuses).
fn alloc_error(e: Error) -> Error {
    if e == ENOENT || e == ENOMEM {
        e
    } else {
        EINVAL
    }
}

/// crc32c as the protocol uses it: initial value ~0, final xor ~0, over
/// `pre || data`.
/// Copies the bytes of `src` into `dst`, which holds as many (`EINVAL`
/// otherwise): READ data checked in kernel pages goes to the request's.
pub(crate) fn copy(dst: &Segments<'_>, src: &Segments<'_>) -> Result {
    // SAFETY: both describe valid pages (their type's invariant), `dst`'s
    // writable; the shim checks that the lengths agree before it copies.
    to_result(unsafe { ffi::dst_bvec_copy(dst.ptr(), dst.nr()?, src.ptr(), src.nr()?) })
}

fn crc32c(pre: &[u8], data: &Segments<'_>) -> Result<u32> {
    let pre_len = c_uint::try_from(pre.len()).map_err(|_| EINVAL)?;
    // SAFETY: `pre` is readable for its length; the segments are valid.
    Ok(!unsafe { ffi::dst_crc32c(!0, pre.as_ptr(), pre_len, data.ptr(), data.nr()?) })
}

/// What [`Protector`] runs.
enum Transform {
    None,
    Crc32c,
    Hmac(Shash),
    Aead(Aead),
}

/// The protection of one direction of one connection: seals the messages
/// sent, or opens the messages received, with that direction's session key.
///
/// Trailer layouts (the protocol's "Framing after the handshake"):
///
/// | mode   | trailer |
/// |--------|---------|
/// | none   | none |
/// | crc32c | crc32c(header \|\| payload), big-endian |
/// | hmac   | seq (8, big-endian) \|\| HMAC(key, seq \|\| header \|\| payload) |
/// | aead   | seq (8) \|\| tag (16); payload encrypted, IV = 0 (4) \|\| seq (8), AAD = header |
///
/// One value may seal (or open) several messages at once from several
/// tasks.
pub(crate) struct Protector {
    t: Transform,
}

impl Protector {
    /// Sets up `mode` with algorithm `alg` (a kernel crypto API name as in
    /// the HELLO, without NUL; empty for none and crc32c) and `key`, the
    /// direction's session key, which hmac and aead need.
    ///
    /// Errors: `EINVAL` for a malformed name, a name where none belongs, a
    /// missing key or an algorithm that does not fit its mode (an AEAD
    /// without a 12-byte IV); `ENOENT` if the crypto API has no such
    /// algorithm (of the mode's type).
    pub(crate) fn new(mode: Protection, alg: &[u8], key: Option<&Key>) -> Result<Self> {
        let keyed = |alg: &[u8]| -> Result<(AlgName, &[u8; KEY_LEN])> {
            let key = key.and_then(|k| k.as_bytes().try_into().ok());
            Ok((AlgName::new(alg)?, key.ok_or(EINVAL)?))
        };
        // A reconnect sets up a connection while block IO waits for it.
        let t = match mode {
            Protection::None | Protection::Crc32c if !alg.is_empty() => return Err(EINVAL),
            Protection::None => Transform::None,
            Protection::Crc32c => Transform::Crc32c,
            Protection::Hmac => {
                let (name, key) = keyed(alg)?;
                Transform::Hmac(noio(|| Shash::new(&name, key))?)
            }
            Protection::Aead => {
                let (name, key) = keyed(alg)?;
                Transform::Aead(noio(|| Aead::new(&name, key))?)
            }
        };
        Ok(Protector { t })
    }

    /// The mode.
    pub(crate) fn mode(&self) -> Protection {
        match self.t {
            Transform::None => Protection::None,
            Transform::Crc32c => Protection::Crc32c,
            Transform::Hmac(_) => Protection::Hmac,
            Transform::Aead(_) => Protection::Aead,
        }
    }

    /// Whether sealing rewrites the payload (aead). Only then does
    /// [`Protector::seal`] write `dst`: a sender that must not change the
    /// source pages (a WRITE's page cache pages) needs bounce pages then.
    pub(crate) fn encrypts(&self) -> bool {
        matches!(self.t, Transform::Aead(_))
    }

    /// Bytes that follow the payload of every message.
    pub(crate) fn trailer_len(&self) -> usize {
        match &self.t {
            Transform::None => 0,
            Transform::Crc32c => CRC_LEN,
            Transform::Hmac(h) => SEQ_LEN + h.digest_len,
            Transform::Aead(_) => SEQ_LEN + TAG_LEN,
        }
    }

    /// The sequence number a received trailer carries (hmac and aead; `None`
    /// for the other modes or a trailer that is too short). The receiver
    /// checks that it is the next one, then calls [`Protector::open`] with
    /// it.
    pub(crate) fn trailer_seq(&self, trailer: &[u8]) -> Option<u64> {
        match self.t {
            Transform::Hmac(_) | Transform::Aead(_) => {
                trailer.first_chunk().map(|s| u64::from_be_bytes(*s))
            }
            Transform::None | Transform::Crc32c => None,
        }
    }

    /// Protects message number `seq` of this direction: computes the
    /// trailer into `trailer` (exactly [`Protector::trailer_len`] bytes) and,
    /// in aead mode, encrypts the payload `src` into `dst`. `dst` is `src`
    /// itself (in place) or other pages of the same total length (not
    /// overlapping `src`); modes that do not encrypt ignore it.
    pub(crate) fn seal(
        &self,
        seq: u64,
        header: &[u8; HEADER_LEN],
        src: &Segments<'_>,
        dst: &Segments<'_>,
        trailer: &mut [u8],
    ) -> Result {
        if trailer.len() != self.trailer_len() {
            return Err(EINVAL);
        }
        match &self.t {
            Transform::None => Ok(()),
            Transform::Crc32c => {
                let crc = crc32c(header, src)?;
                let out: &mut [u8; CRC_LEN] = trailer.try_into().map_err(|_| EINVAL)?;
                *out = crc.to_be_bytes();
                Ok(())
            }
            Transform::Hmac(h) => {
                let (s, mac) = split_seq(trailer)?;
                *s = seq.to_be_bytes();
                h.digest(&mac_prefix(seq, header), src, mac)
            }
            Transform::Aead(a) => {
                if !src.same(dst) && src.len() != dst.len() {
                    return Err(EINVAL);
                }
                let (s, tag) = split_seq(trailer)?;
                *s = seq.to_be_bytes();
                let tag = tag.try_into().map_err(|_| EINVAL)?;
                a.seal(&iv(seq), header, src, dst, tag)
            }
        }
    }

    /// Checks received message number `seq` (for hmac and aead, from
    /// [`Protector::trailer_seq`]) and, in aead mode, decrypts `data` in
    /// place. Fails with [`ebadmsg`] if the message does not verify,
    /// including a trailer carrying another seq; `data` must then not be
    /// used (in aead mode it is garbage). Any other error (`EINVAL` for a
    /// trailer of the wrong length or too many segments, a crypto driver
    /// error) is a local failure that says nothing about the message; `data`
    /// must not be used then either.
    pub(crate) fn open(
        &self,
        seq: u64,
        header: &[u8; HEADER_LEN],
        data: &Segments<'_>,
        trailer: &[u8],
    ) -> Result {
        if trailer.len() != self.trailer_len() {
            return Err(EINVAL);
        }
        if self.trailer_seq(trailer).is_some_and(|s| s != seq) {
            return Err(ebadmsg());
        }
        let ok = match &self.t {
            Transform::None => true,
            Transform::Crc32c => ct_eq(&crc32c(header, data)?.to_be_bytes(), trailer),
            Transform::Hmac(h) => {
                let mut mac = [0; MAX_DIGEST_LEN];
                let mac = mac.get_mut(..h.digest_len).ok_or(EINVAL)?;
                h.digest(&mac_prefix(seq, header), data, mac)?;
                ct_eq(mac, trailer.get(SEQ_LEN..).ok_or(EINVAL)?)
            }
            Transform::Aead(a) => {
                let tag = trailer.get(SEQ_LEN..).ok_or(EINVAL)?;
                return a.open(&iv(seq), header, data, tag.try_into().map_err(|_| EINVAL)?);
            }
        };
        if ok {
            Ok(())
        } else {
            Err(ebadmsg())
        }
    }
}

/// Splits a hmac or aead trailer into its seq and the rest.
fn split_seq(trailer: &mut [u8]) -> Result<(&mut [u8; SEQ_LEN], &mut [u8])> {
    trailer.split_first_chunk_mut().ok_or(EINVAL)
}

/// `seq || header`, what the keyed hash covers before the payload.
fn mac_prefix(seq: u64, header: &[u8; HEADER_LEN]) -> [u8; SEQ_LEN + HEADER_LEN] {
    let mut pre = [0; SEQ_LEN + HEADER_LEN];
    for (d, s) in pre
        .iter_mut()
        .zip(Iterator::chain(seq.to_be_bytes().iter(), header))
    {
        *d = *s;
    }
    pre
}

/// The AEAD IV of message `seq`: 4 zero bytes, then seq big-endian.
fn iv(seq: u64) -> [u8; IV_LEN] {
    let mut iv = [0; IV_LEN];
    for (d, s) in iv.iter_mut().skip(IV_LEN - SEQ_LEN).zip(seq.to_be_bytes()) {
        *d = s;
    }
    iv
}

/// A secret key: a pre-shared key ([`MIN_PSK_LEN`] to [`MAX_PSK_LEN`]
/// bytes) or a [`KEY_LEN`] session key. Kept on the heap so that moving the
/// value leaves no copy behind, and zeroed when dropped.
///
/// # Invariants
///
/// `len` is in `MIN_PSK_LEN..=MAX_PSK_LEN`.
pub(crate) struct Key {
    bytes: KBox<[u8; MAX_PSK_LEN]>,
    len: usize,
}

impl Key {
    /// A copy of `bytes` (the contents of a key file, or a key received
    /// over netlink). `EINVAL` unless 16 to 64 bytes.
    pub(crate) fn new(bytes: &[u8]) -> Result<Self> {
        let mut key = Self::zeroed(bytes.len())?;
        for (d, s) in key.bytes.iter_mut().zip(bytes) {
            *d = *s;
        }
        Ok(key)
    }

    fn zeroed(len: usize) -> Result<Self> {
        if !(MIN_PSK_LEN..=MAX_PSK_LEN).contains(&len) {
            return Err(EINVAL);
        }
        // Also used by a reconnect, which block IO may wait for.
        let bytes = noio(|| KBox::new([0; MAX_PSK_LEN], GFP_KERNEL))?;
        // INVARIANT: checked above.
        Ok(Key { bytes, len })
    }

    /// The key.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }

    /// A [`KEY_LEN`]-byte key that `fill` computes in place (a derived or
    /// exchanged secret never exists outside a `Key`).
    pub(crate) fn derived(fill: impl FnOnce(&mut [u8; KEY_LEN]) -> Result) -> Result<Self> {
        let mut key = Self::zeroed(KEY_LEN)?;
        fill(key.bytes.first_chunk_mut().ok_or(EINVAL)?)?;
        Ok(key)
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        // SAFETY: the buffer is ours and writable for its length. A plain
        // write could be elided as dead; memzero_explicit cannot.
        unsafe { ffi::dst_memzero_explicit(self.bytes.as_mut_ptr().cast::<c_void>(), MAX_PSK_LEN) };
    }
}

/// The two session keys of a connection.
pub(crate) struct SessionKeys {
    /// `K_le`: protects messages from the local node to the export.
    pub(crate) local_to_export: Key,
    /// `K_el`: protects messages from the export to the local node.
    pub(crate) export_to_local: Key,
}

/// HMAC-SHA256 of the concatenation of `parts` with `key`. Uses the
/// library implementation: no transform to allocate, cannot fail.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; SHA256_LEN] {
    let mut out = [0; SHA256_LEN];
    hmac_sha256_into(key, parts, &mut out);
    out
}

/// [`hmac_sha256`] into `out`.
pub(crate) fn hmac_sha256_into(key: &[u8], parts: &[&[u8]], out: &mut [u8; SHA256_LEN]) {
    let mut ctx = bindings::hmac_sha256_ctx::default();
    // SAFETY: `ctx` is writable; `key` is readable for its length.
    unsafe { bindings::hmac_sha256_init_usingrawkey(&mut ctx, key.as_ptr(), key.len()) };
    for p in parts {
        // SAFETY: `ctx` was initialised above; `p` is readable for its
        // length.
        unsafe { ffi::dst_hmac_sha256_update(&mut ctx, p.as_ptr(), p.len()) };
    }
    // SAFETY: `ctx` is initialised; `out` holds SHA256_LEN bytes. This also
    // zeroes `ctx`, which holds key material.
    unsafe { bindings::hmac_sha256_final(&mut ctx, out.as_mut_ptr()) };
}

/// Fills `buf` with random bytes from the kernel's CSPRNG (nonces).
pub(crate) fn random_bytes(buf: &mut [u8]) {
    // SAFETY: `buf` is writable for its length.
    unsafe { bindings::get_random_bytes(buf.as_mut_ptr().cast(), buf.len()) };
}

/// Whether `a` equals `b`, in time that depends on the length only (for
/// proofs and MACs, where early exit would leak how much of a forgery is
/// right).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    // SAFETY: both are readable for `a.len()` bytes when the lengths match.
    a.len() == b.len()
        && unsafe { ffi::dst_crypto_memneq(a.as_ptr().cast(), b.as_ptr().cast(), a.len()) } == 0
}

pub(crate) use self_test::self_test;

/// The self-test run at module load: every algorithm DST offers by default
/// must work on this kernel and give the protocol's bytes before any peer
/// relies on it. It also keeps every wrapper of this file in use.
mod self_test {
    use super::*;
    use crate::thread_pool;
    use kernel::{
        page::{Page, PAGE_SIZE},
        str::BStr,
        time::{Instant, Monotonic},
    };

    /// An algorithm under test and the first bytes of the MAC, tag or crc it
    /// gives for the test message (computed independently, with Python's
    /// `cryptography` and `hmac`): the interoperability check.
    struct TestAlg {
        mode: Protection,
        alg: &'static [u8],
        known: &'static [u8],
    }

    const TEST_ALGS: [TestAlg; 6] = [
        TestAlg {
            mode: Protection::Aead,
            alg: b"gcm(aes)",
            known: &[
                0xb8, 0xcb, 0xfa, 0x62, 0xa8, 0x58, 0xbd, 0xb9, 0xe9, 0xdc, 0x4e, 0xa9, 0x06, 0xfc,
                0xcd, 0x4e,
            ],
        },
        TestAlg {
            mode: Protection::Aead,
            alg: b"rfc7539(chacha20,poly1305)",
            known: &[
                0x31, 0x65, 0x39, 0xc0, 0xf0, 0x4a, 0xce, 0xf9, 0x1a, 0x0a, 0xc7, 0x2a, 0x9e, 0x24,
                0xd0, 0x42,
            ],
        },
        TestAlg {
            mode: Protection::Hmac,
            alg: b"hmac(sha256)",
            known: &[
                0x60, 0x3b, 0xc7, 0xa8, 0x4d, 0x0c, 0x16, 0x5b, 0x08, 0xc8, 0xaa, 0xaf, 0x32, 0x6e,
                0xf6, 0x5b,
            ],
        },
        TestAlg {
            mode: Protection::Hmac,
            alg: b"hmac(sha512)",
            known: &[
                0xe7, 0x31, 0x53, 0x27, 0xac, 0x8b, 0x4c, 0x59, 0xbf, 0xe8, 0x54, 0x6c, 0x33, 0x4d,
                0xf3, 0x2b,
            ],
        },
        TestAlg {
            mode: Protection::Crc32c,
            alg: b"",
            known: &[0x8c, 0xd5, 0x8b, 0x9c],
        },
        TestAlg {
            mode: Protection::None,
            alg: b"",
            known: &[],
        },
    ];

    /// Seq of the test message.
    const TEST_SEQ: u64 = 5;

    /// Byte `i` of the test payload.
    fn test_byte(i: usize) -> u8 {
        (i % 251) as u8
    }

    /// Header of the test message: 0x40, 0x41, ...
    fn test_header() -> [u8; HEADER_LEN] {
        let mut h = [0; HEADER_LEN];
        for (i, b) in h.iter_mut().enumerate() {
            *b = 0x40 + i as u8;
        }
        h
    }

    /// Fails the self-test with `what` unless `ok`.
    fn expect(ok: bool, alg: &[u8], what: &str) -> Result {
        if !ok {
            pr_err!(
                "crypto self-test failed: {}: {}\n",
                BStr::from_bytes(alg),
                what
            );
            return Err(EIO);
        }
        Ok(())
    }

    /// Whether `r` is the verification failure.
    fn rejected(r: Result) -> bool {
        r.is_err_and(is_bad_msg)
    }

    /// Pages for the test payload (two pages of [`test_byte`]s) and two more
    /// for out-of-place encryption.
    struct TestPages {
        src: [Page; 2],
        dst: [Page; 2],
    }

    impl TestPages {
        fn new() -> Result<Self> {
            let page = || Page::alloc_page(GFP_KERNEL);
            Ok(TestPages {
                src: [page()?, page()?],
                dst: [page()?, page()?],
            })
        }

        /// Writes the payload into `pages`.
        fn fill(pages: &[Page]) -> Result {
            let mut chunk = [0u8; 256];
            for (p, page) in pages.iter().enumerate() {
                for off in (0..PAGE_SIZE).step_by(chunk.len()) {
                    for (j, b) in chunk.iter_mut().enumerate() {
                        *b = test_byte(p * PAGE_SIZE + off + j);
                    }
                    // SAFETY: `chunk` is readable; the test owns the page and
                    // nothing else uses it.
                    unsafe { page.write_raw(chunk.as_ptr(), off, chunk.len())? };
                }
            }
            Ok(())
        }

        /// Whether `pages` hold the payload.
        fn holds_payload(pages: &[Page]) -> Result<bool> {
            let mut chunk = [0u8; 256];
            for (p, page) in pages.iter().enumerate() {
                for off in (0..PAGE_SIZE).step_by(chunk.len()) {
                    // SAFETY: `chunk` is writable; the test owns the page.
                    unsafe { page.read_raw(chunk.as_mut_ptr(), off, chunk.len())? };
                    let mut want = (0..chunk.len()).map(|j| test_byte(p * PAGE_SIZE + off + j));
                    if !chunk.iter().all(|b| Some(*b) == want.next()) {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        }

        /// Flips bit 0 of byte `off` of `page`.
        fn flip(page: &Page, off: usize) -> Result {
            let mut b = 0u8;
            // SAFETY: `b` is one writable byte; the test owns the page.
            unsafe { page.read_raw(&mut b, off, 1)? };
            b ^= 1;
            // SAFETY: as above.
            unsafe { page.write_raw(&b, off, 1) }
        }
    }

    /// A segment of `len` bytes at `off` in `page`.
    fn bvec(page: &Page, off: usize, len: usize) -> bindings::bio_vec {
        bindings::bio_vec {
            bv_page: page.as_ptr(),
            // Both are at most PAGE_SIZE.
            bv_len: len as c_uint,
            bv_offset: off as c_uint,
        }
    }

    /// Seals and opens the test message with `t`, checks the known answer, and
    /// checks that a flipped bit in payload, header or trailer, or another seq,
    /// is rejected.
    fn test_alg(t: &TestAlg, key: &Key, pages: &TestPages) -> Result {
        let name = t.alg;
        let p = Protector::new(t.mode, t.alg, Some(key))?;
        expect(p.mode() == t.mode, name, "mode")?;
        // The payload: 2 pages as 3 segments, and 2 other pages as 2 segments.
        let [s0, s1] = &pages.src;
        let [d0, d1] = &pages.dst;
        let src_bv = [
            bvec(s0, 0, 1500),
            bvec(s0, 1500, PAGE_SIZE - 1500),
            bvec(s1, 0, PAGE_SIZE),
        ];
        let dst_bv = [bvec(d0, 0, PAGE_SIZE), bvec(d1, 0, PAGE_SIZE)];
        // SAFETY: the segments lie in pages the test owns and nothing else uses.
        let (src, dst) = unsafe { (Segments::from_raw(&src_bv), Segments::from_raw(&dst_bv)) };
        let hdr = test_header();
        let mut buf = [0; MAX_TRAILER_LEN];
        let trailer = buf.get_mut(..p.trailer_len()).ok_or(EINVAL)?;
        let keyed = matches!(t.mode, Protection::Hmac | Protection::Aead);
        let value_at = if keyed { SEQ_LEN } else { 0 };

        // Round trip in place, with the known answer.
        TestPages::fill(&pages.src)?;
        p.seal(TEST_SEQ, &hdr, &src, &src, trailer)?;
        let value = trailer.get(value_at..).unwrap_or(&[]);
        expect(value.starts_with(t.known), name, "known answer")?;
        expect(
            p.trailer_seq(trailer) == keyed.then_some(TEST_SEQ),
            name,
            "trailer seq",
        )?;
        expect(
            TestPages::holds_payload(&pages.src)? != p.encrypts(),
            name,
            "payload after seal",
        )?;
        p.open(TEST_SEQ, &hdr, &src, trailer)?;
        expect(
            TestPages::holds_payload(&pages.src)?,
            name,
            "payload after open",
        )?;
        if t.mode == Protection::None {
            return Ok(());
        }

        // Out of place: the source stays, the copy opens to the same payload.
        if p.encrypts() {
            let mut again = [0; MAX_TRAILER_LEN];
            let again = again.get_mut(..p.trailer_len()).ok_or(EINVAL)?;
            p.seal(TEST_SEQ, &hdr, &src, &dst, again)?;
            expect(TestPages::holds_payload(&pages.src)?, name, "source kept")?;
            expect(*again == *trailer, name, "same trailer out of place")?;
            p.open(TEST_SEQ, &hdr, &dst, again)?;
            expect(TestPages::holds_payload(&pages.dst)?, name, "copy opened")?;
        }

        // Each corruption must be rejected. Sealing again restores the payload
        // (an aead open that fails leaves garbage).
        let reseal = |trailer: &mut [u8]| -> Result {
            TestPages::fill(&pages.src)?;
            p.seal(TEST_SEQ, &hdr, &src, &src, trailer)
        };
        reseal(trailer)?;
        TestPages::flip(s1, 100)?;
        expect(
            rejected(p.open(TEST_SEQ, &hdr, &src, trailer)),
            name,
            "payload bit",
        )?;

        reseal(trailer)?;
        let mut bad_hdr = hdr;
        bad_hdr[7] ^= 0x10;
        expect(
            rejected(p.open(TEST_SEQ, &bad_hdr, &src, trailer)),
            name,
            "header bit",
        )?;

        reseal(trailer)?;
        if let Some(last) = trailer.last_mut() {
            *last ^= 0x80;
        }
        expect(
            rejected(p.open(TEST_SEQ, &hdr, &src, trailer)),
            name,
            "trailer bit",
        )?;

        if keyed {
            reseal(trailer)?;
            let other = TEST_SEQ + 1;
            expect(
                rejected(p.open(other, &hdr, &src, trailer)),
                name,
                "other seq",
            )?;
            // The seq is authenticated, not just compared.
            if let Some(s) = trailer.first_chunk_mut() {
                *s = other.to_be_bytes();
            }
            expect(
                rejected(p.open(other, &hdr, &src, trailer)),
                name,
                "forged seq",
            )?;
        }
        Ok(())
    }

    /// Seals a message of [`MAX_SEGMENTS`] page segments out of place and
    /// opens the copy in place, which fills both scatterlists of a mempool
    /// element (aad, payload, tag) to capacity. The source is the two
    /// payload pages of `pages` over and over (it is only read), the copy
    /// [`MAX_SEGMENTS`] pages of its own. One segment more is refused as a
    /// local error (`EINVAL`), not as a message that does not verify.
    fn test_max_message(key: &Key, pages: &TestPages) -> Result {
        let name = b"gcm(aes), largest message";
        let p = Protector::new(Protection::Aead, b"gcm(aes)", Some(key))?;
        let mut copy = KVec::with_capacity(MAX_SEGMENTS, GFP_KERNEL)?;
        let mut src_bv = KVec::with_capacity(MAX_SEGMENTS, GFP_KERNEL)?;
        let mut dst_bv = KVec::with_capacity(MAX_SEGMENTS + 1, GFP_KERNEL)?;
        for i in 0..MAX_SEGMENTS {
            let page = Page::alloc_page(GFP_KERNEL)?;
            dst_bv.push(bvec(&page, 0, PAGE_SIZE), GFP_KERNEL)?;
            copy.push(page, GFP_KERNEL)?;
            let s = pages.src.get(i % 2).ok_or(EINVAL)?;
            src_bv.push(bvec(s, 0, PAGE_SIZE), GFP_KERNEL)?;
        }
        TestPages::fill(&pages.src)?;
        // SAFETY: the segments lie in pages the test owns, which outlive them;
        // the source pages are only read, the copy's are distinct.
        let (src, dst) = unsafe { (Segments::from_raw(&src_bv), Segments::from_raw(&dst_bv)) };
        let hdr = test_header();
        let mut trailer = [0; SEQ_LEN + TAG_LEN];
        p.seal(TEST_SEQ, &hdr, &src, &dst, &mut trailer)?;
        expect(TestPages::holds_payload(&pages.src)?, name, "source kept")?;
        p.open(TEST_SEQ, &hdr, &dst, &trailer)?;
        for pair in copy.chunks(2) {
            expect(TestPages::holds_payload(pair)?, name, "copy opened")?;
        }

        let [extra, _] = &pages.dst;
        dst_bv.push(bvec(extra, 0, 512), GFP_KERNEL)?;
        // SAFETY: as above; `extra` is not one of the copy's pages.
        let over = unsafe { Segments::from_raw(&dst_bv) };
        let r = p.open(TEST_SEQ, &hdr, &over, &trailer);
        expect(r == Err(EINVAL), name, "one segment too many")
    }

    /// Checks the handshake primitives: HMAC-SHA256 against RFC 4231 test case
    /// 2, the handshake's own tests with `key`, and the alg name checks.
    fn test_handshake(key: &Key, psk: &Key) -> Result {
        let name = b"handshake";
        let want = [
            0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
            0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9,
            0x64, 0xec, 0x38, 0x43,
        ];
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        expect(ct_eq(&mac, &want), name, "RFC 4231 case 2")?;
        expect(
            !ct_eq(&mac, &want[1..]) && !ct_eq(&mac, &[0; 32]),
            name,
            "ct_eq",
        )?;

        crate::handshake::self_test(key)?;
        let check_err = |mode, alg: &[u8], want: Error| {
            let got = Protector::new(mode, alg, Some(key)).err();
            expect(got == Some(want), alg, "wrong error")
        };
        check_err(Protection::Aead, b"no-such-alg(aes)", ENOENT)?;
        check_err(Protection::Hmac, b"gcm(aes)", EINVAL)?;
        check_err(Protection::Hmac, b"sha256", EINVAL)?;
        check_err(Protection::Aead, b"gcm(aes)\n", EINVAL)?;
        check_err(Protection::Aead, b"", EINVAL)?;
        check_err(Protection::Crc32c, b"crc32c", EINVAL)?;
        // A PSK is not a session key.
        let got = Protector::new(Protection::Aead, b"gcm(aes)", Some(psk)).err();
        expect(got == Some(EINVAL), name, "psk as session key")?;
        Ok(())
    }

    /// Runs the self-test and logs one line; an error makes module load fail.
    /// With `bench`, also times sealing 256 MiB in 1 MiB messages per mode.
    pub(crate) fn self_test(bench: bool) -> Result {
        // Key 0, 1, ..., 31, as in the known answers.
        let mut raw = [0; KEY_LEN];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = i as u8;
        }
        let key = Key::new(&raw)?;
        let psk = Key::new(b"a pre-shared key, 39 bytes in all here")?;
        let pages = TestPages::new()?;
        for t in &TEST_ALGS {
            test_alg(t, &key, &pages).inspect_err(|e| {
                pr_err!("crypto self-test: {}: {:?}\n", BStr::from_bytes(t.alg), e)
            })?;
        }
        test_max_message(&key, &pages)?;
        test_handshake(&key, &psk)?;
        thread_pool::self_test()?;
        pr_info!(
            "crypto self-test passed (gcm(aes), rfc7539(chacha20,poly1305), hmac(sha256), \
             hmac(sha512), crc32c, none: seal/open, known answers, tamper and seq checks; \
             gcm(aes) {}-segment message through the mempool; HMAC-SHA256 RFC 4231; \
             X25519 RFC 7748, SHA-256, key schedule; pool: 64 jobs on 2 workers, 8 inline)\n",
            MAX_SEGMENTS
        );
        if bench {
            self_bench(&key)?;
        }
        Ok(())
    }

    /// Times sealing 256 MiB, in place, in 1 MiB messages, for each mode.
    fn self_bench(key: &Key) -> Result {
        const MSG_PAGES: usize = (1 << 20) / PAGE_SIZE;
        const MSGS: u64 = 256;
        let mut pages = KVec::with_capacity(MSG_PAGES, GFP_KERNEL)?;
        let mut bv = KVec::with_capacity(MSG_PAGES, GFP_KERNEL)?;
        for _ in 0..MSG_PAGES {
            let page = Page::alloc_page(GFP_KERNEL)?;
            // SAFETY: the page is ours and unused; its contents do not matter
            // but must be initialised.
            unsafe { page.fill_zero_raw(0, PAGE_SIZE)? };
            bv.push(bvec(&page, 0, PAGE_SIZE), GFP_KERNEL)?;
            pages.push(page, GFP_KERNEL)?;
        }
        // SAFETY: the segments lie in `pages`, which outlive them and which
        // nothing else uses.
        let data = unsafe { Segments::from_raw(&bv) };
        let hdr = test_header();
        for t in TEST_ALGS.iter().filter(|t| t.mode != Protection::None) {
            let p = Protector::new(t.mode, t.alg, Some(key))?;
            let mut buf = [0; MAX_TRAILER_LEN];
            let trailer = buf.get_mut(..p.trailer_len()).ok_or(EINVAL)?;
            let start = Instant::<Monotonic>::now();
            for seq in 0..MSGS {
                p.seal(seq, &hdr, &data, &data, trailer)?;
            }
            let ms = start.elapsed().as_millis().max(1);
            pr_info!(
                "crypto bench: {:?} {}: sealed 256 MiB in 1 MiB messages in {} ms ({} MiB/s)\n",
                t.mode,
                BStr::from_bytes(if t.alg.is_empty() { b"crc32c" } else { t.alg }),
                ms,
                256 * 1000 / ms
            );
        }
        Ok(())
    }
}
