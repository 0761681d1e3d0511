/* SPDX-License-Identifier: GPL-2.0 */
/*
 * shim_crypto.h - the crypto side of the C shim: AEAD and keyed-hash
 * transforms of the kernel crypto API applied to data given as bio_vec arrays,
 * crc32c, and the inline helpers the handshake needs. Mirrored by the
 * `extern "C"` block in crypto.rs, which makes every protocol decision (IV
 * layout, what is hashed, trailer layout); these functions only move bytes.
 *
 * Every function taking bio_vecs may sleep and must run in process context.
 * They run on the IO path: the AEAD ones take their per-message state from
 * the transform's mempool (GFP_NOIO, which waits rather than fails), the
 * others allocate nothing.
 */
#ifndef DST_SHIM_CRYPTO_H
#define DST_SHIM_CRYPTO_H

#include <linux/types.h>

struct bio_vec;
struct crypto_shash;
struct dst_aead;
struct hmac_sha256_ctx;

/* Length of the AEAD IV DST uses (4 zero bytes || 8-byte seq). */
#define DST_AEAD_IV_LEN 12

/*
 * Returns a keyed AEAD transform with a @tag_len tag and a mempool of
 * @reserve (at least 1) preallocated per-message states, each for a message
 * of up to @max_segs non-empty payload bio_vecs; or an ERR_PTR (-ENOENT: no
 * such alg; -EINVAL: the alg does not fit, e.g. its IV is not
 * DST_AEAD_IV_LEN bytes). GFP_KERNEL: call it in a NOIO scope where needed.
 */
struct dst_aead *dst_aead_alloc(const char *name, const u8 *key,
				unsigned int key_len, unsigned int tag_len,
				unsigned int max_segs, unsigned int reserve);
/* Frees @a (NULL is ignored); no operation on it may be running. */
void dst_aead_free(struct dst_aead *a);
unsigned int dst_aead_ivsize(struct dst_aead *a);
/*
 * Encrypts @src into @dst (the same array: in place; else of equal length),
 * with @aad as associated data, and writes the tag (the tfm's authsize) to
 * @tag. @iv (DST_AEAD_IV_LEN bytes), @aad (at most 64 bytes) and @tag may be
 * anywhere, also on the stack: they are copied to and from the mempool
 * element. -EINVAL if @src or @dst has more than max_segs non-empty
 * bio_vecs. Concurrent calls on one @a are allowed; each may wait for an
 * element (never fails for lack of memory).
 */
int dst_aead_seal(struct dst_aead *a, const u8 *iv, const u8 *aad,
		  unsigned int aad_len, const struct bio_vec *src,
		  unsigned int nr_src, const struct bio_vec *dst,
		  unsigned int nr_dst, u8 *tag);
/*
 * Decrypts @data in place and checks @tag: 0, or -EBADMSG if the tag does
 * not verify (the data is then garbage). Any other error is local (-EINVAL
 * for too many bio_vecs, or the crypto driver's) and says nothing about
 * the message.
 */
int dst_aead_open(struct dst_aead *a, const u8 *iv, const u8 *aad,
		  unsigned int aad_len, const struct bio_vec *data,
		  unsigned int nr, const u8 *tag);

/* Returns the keyed tfm, or an ERR_PTR (-ENOENT: no such alg). */
struct crypto_shash *dst_shash_alloc(const char *name, const u8 *key,
				     unsigned int key_len);
void dst_shash_free(struct crypto_shash *tfm);
unsigned int dst_shash_digestsize(struct crypto_shash *tfm);
/* Writes the digest of @pre || @bv[0..@nr] to @out (digestsize bytes). */
int dst_shash_digest(struct crypto_shash *tfm, const u8 *pre,
		     unsigned int pre_len, const struct bio_vec *bv,
		     unsigned int nr, u8 *out);

/* Copies @src into @dst (the same number of bytes); 0 or -EINVAL. */
int dst_bvec_copy(const struct bio_vec *dst, unsigned int ndst,
		  const struct bio_vec *src, unsigned int nsrc);

/* crc32c(@crc, @pre || @bv[0..@nr]), without any inversion. */
u32 dst_crc32c(u32 crc, const u8 *pre, unsigned int pre_len,
	       const struct bio_vec *bv, unsigned int nr);

struct sha256_ctx;
void dst_sha256_update(struct sha256_ctx *ctx, const u8 *data, size_t len);
int dst_x25519_keypair(u8 secret[32], u8 pub[32]);
bool dst_x25519(u8 out[32], const u8 secret[32], const u8 pub[32]);
void dst_hmac_sha256_update(struct hmac_sha256_ctx *ctx, const u8 *data,
			    size_t len);
/* 0 if equal, in time independent of the contents. */
int dst_crypto_memneq(const void *a, const void *b, size_t len);
void dst_memzero_explicit(void *p, size_t len);

#endif /* DST_SHIM_CRYPTO_H */
