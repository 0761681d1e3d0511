// SPDX-License-Identifier: GPL-2.0
/*
 * shim_crypto.c - the kernel crypto API over bio_vec arrays, for the data
 * channel protection of crypto.rs. AEAD requests need scatterlists and a
 * synchronous wait (macros and inline helpers), keyed hashes need a
 * descriptor on the stack (a macro), and crc32c and the handshake helpers are
 * inline; Rust reaches none of that. Every decision is made in crypto.rs.
 */
#include <crypto/aead.h>
#include <crypto/hash.h>
#include <crypto/sha2.h>
#include <crypto/utils.h>
#include <linux/bvec.h>
#include <linux/crc32.h>
#include <linux/err.h>
#include <linux/highmem.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "shim_crypto.h"

/* Largest associated data and tag an operation carries (DST: 40 and 16). */
#define DST_AEAD_MAX_AAD 64
#define DST_AEAD_MAX_TAG 16

/* Total bytes of @bv[0..@nr], or -EINVAL if it does not fit an int. */
static int dst_bvec_bytes(const struct bio_vec *bv, unsigned int nr)
{
	size_t len = 0;
	unsigned int i;

	for (i = 0; i < nr; i++)
		len += bv[i].bv_len;
	return len > INT_MAX ? -EINVAL : len;
}

/*
 * Calls @fn on each mapped single-page piece of @bv[0..@nr]. A bio_vec may
 * span pages (multi-page bvecs), and kmap_local_page() maps one page.
 */
static int dst_bvec_walk(const struct bio_vec *bv, unsigned int nr,
			 int (*fn)(void *arg, const u8 *p, unsigned int len),
			 void *arg)
{
	unsigned int i;

	for (i = 0; i < nr; i++) {
		size_t off = bv[i].bv_offset;
		unsigned int left = bv[i].bv_len;

		while (left) {
			unsigned int poff = offset_in_page(off);
			unsigned int n = min_t(unsigned int, left, PAGE_SIZE - poff);
			const u8 *p = kmap_local_page(bv[i].bv_page + off / PAGE_SIZE);
			int err = fn(arg, p + poff, n);

			kunmap_local(p);
			if (err)
				return err;
			off += n;
			left -= n;
		}
	}
	return 0;
}

/* AEAD */

struct crypto_aead *dst_aead_alloc(const char *name, const u8 *key,
				   unsigned int key_len, unsigned int tag_len)
{
	struct crypto_aead *tfm = crypto_alloc_aead(name, 0, 0);
	int err;

	if (IS_ERR(tfm))
		return tfm;
	err = crypto_aead_setkey(tfm, key, key_len);
	if (!err)
		err = crypto_aead_setauthsize(tfm, tag_len);
	if (err) {
		crypto_free_aead(tfm);
		return ERR_PTR(err);
	}
	return tfm;
}

void dst_aead_free(struct crypto_aead *tfm)
{
	crypto_free_aead(tfm);
}

unsigned int dst_aead_ivsize(struct crypto_aead *tfm)
{
	return crypto_aead_ivsize(tfm);
}

/*
 * What the scatterlists of one operation point at besides the data. Not on
 * the stack: with CONFIG_VMAP_STACK a stack address has no linear-map page,
 * so sg_set_buf() cannot describe it.
 */
struct dst_aead_op {
	struct sg_table src;
	struct sg_table dst;		/* unused (NULL sgl) when in place */
	u8 iv[DST_AEAD_IV_LEN];
	u8 aad[DST_AEAD_MAX_AAD];
	u8 aad_out[DST_AEAD_MAX_AAD];	/* room the API wants in dst; unread */
	u8 tag[DST_AEAD_MAX_TAG];
};

static struct dst_aead_op *dst_aead_op_alloc(struct crypto_aead *tfm,
					     const u8 *iv, const u8 *aad,
					     unsigned int aad_len)
{
	struct dst_aead_op *op;

	if (aad_len > DST_AEAD_MAX_AAD ||
	    crypto_aead_authsize(tfm) > DST_AEAD_MAX_TAG ||
	    crypto_aead_ivsize(tfm) != DST_AEAD_IV_LEN)
		return ERR_PTR(-EINVAL);
	op = kzalloc_obj(*op, GFP_NOIO);
	if (!op)
		return ERR_PTR(-ENOMEM);
	memcpy(op->iv, iv, DST_AEAD_IV_LEN);
	memcpy(op->aad, aad, aad_len);
	return op;
}

static void dst_aead_op_free(struct dst_aead_op *op)
{
	sg_free_table(&op->src);
	sg_free_table(&op->dst);
	kfree(op);
}

/*
 * Builds @t = [@head][@bv...][@tail] (no tail if @tail is NULL), skipping
 * empty bvecs. sg_alloc_table() chains page-sized chunks, so a request of
 * a thousand segments needs no large contiguous allocation.
 */
static int dst_sg_build(struct sg_table *t, void *head, unsigned int head_len,
			const struct bio_vec *bv, unsigned int nr, void *tail,
			unsigned int tail_len)
{
	unsigned int i, n = 1 + (tail ? 1 : 0);
	struct scatterlist *sg;
	int err;

	for (i = 0; i < nr; i++)
		n += bv[i].bv_len != 0;
	err = sg_alloc_table(t, n, GFP_NOIO);
	if (err)
		return err;
	sg = t->sgl;
	sg_set_buf(sg, head, head_len);
	for (i = 0; i < nr; i++) {
		if (!bv[i].bv_len)
			continue;
		sg = sg_next(sg);
		sg_set_page(sg, bv[i].bv_page, bv[i].bv_len, bv[i].bv_offset);
	}
	if (tail) {
		sg = sg_next(sg);
		sg_set_buf(sg, tail, tail_len);
	}
	return 0;
}

/* Runs one request and waits for it, also if the tfm is asynchronous. */
static int dst_aead_run(struct crypto_aead *tfm, struct dst_aead_op *op,
			bool encrypt, unsigned int aad_len,
			unsigned int cryptlen)
{
	struct aead_request *req = aead_request_alloc(tfm, GFP_NOIO);
	DECLARE_CRYPTO_WAIT(wait);
	int err;

	if (!req)
		return -ENOMEM;
	aead_request_set_callback(req, CRYPTO_TFM_REQ_MAY_BACKLOG |
				  CRYPTO_TFM_REQ_MAY_SLEEP,
				  crypto_req_done, &wait);
	aead_request_set_ad(req, aad_len);
	aead_request_set_crypt(req, op->src.sgl, op->dst.sgl ?: op->src.sgl,
			       cryptlen, op->iv);
	err = crypto_wait_req(encrypt ? crypto_aead_encrypt(req) :
				crypto_aead_decrypt(req), &wait);
	aead_request_free(req);
	return err;
}

int dst_aead_seal(struct crypto_aead *tfm, const u8 *iv, const u8 *aad,
		  unsigned int aad_len, const struct bio_vec *src,
		  unsigned int nr_src, const struct bio_vec *dst,
		  unsigned int nr_dst, u8 *tag)
{
	unsigned int tag_len = crypto_aead_authsize(tfm);
	bool in_place = src == dst && nr_src == nr_dst;
	int len = dst_bvec_bytes(src, nr_src);
	struct dst_aead_op *op;
	int err;

	if (len < 0 || (!in_place && dst_bvec_bytes(dst, nr_dst) != len))
		return -EINVAL;
	op = dst_aead_op_alloc(tfm, iv, aad, aad_len);
	if (IS_ERR(op))
		return PTR_ERR(op);
	/* The tag follows the ciphertext in dst. */
	err = dst_sg_build(&op->src, op->aad, aad_len, src, nr_src,
			   in_place ? op->tag : NULL, tag_len);
	if (!err && !in_place)
		err = dst_sg_build(&op->dst, op->aad_out, aad_len, dst, nr_dst,
				   op->tag, tag_len);
	if (!err)
		err = dst_aead_run(tfm, op, true, aad_len, len);
	if (!err)
		memcpy(tag, op->tag, tag_len);
	dst_aead_op_free(op);
	return err;
}

int dst_aead_open(struct crypto_aead *tfm, const u8 *iv, const u8 *aad,
		  unsigned int aad_len, const struct bio_vec *data,
		  unsigned int nr, const u8 *tag)
{
	unsigned int tag_len = crypto_aead_authsize(tfm);
	int len = dst_bvec_bytes(data, nr);
	struct dst_aead_op *op;
	int err;

	if (len < 0)
		return -EINVAL;
	op = dst_aead_op_alloc(tfm, iv, aad, aad_len);
	if (IS_ERR(op))
		return PTR_ERR(op);
	memcpy(op->tag, tag, tag_len);
	/* Decryption input: ciphertext || tag; cryptlen counts both. */
	err = dst_sg_build(&op->src, op->aad, aad_len, data, nr, op->tag,
			   tag_len);
	if (!err)
		err = dst_aead_run(tfm, op, false, aad_len, len + tag_len);
	dst_aead_op_free(op);
	return err;
}

/* Keyed hash */

struct crypto_shash *dst_shash_alloc(const char *name, const u8 *key,
				     unsigned int key_len)
{
	struct crypto_shash *tfm = crypto_alloc_shash(name, 0, 0);
	int err;

	if (IS_ERR(tfm))
		return tfm;
	err = crypto_shash_setkey(tfm, key, key_len);
	if (err) {
		crypto_free_shash(tfm);
		return ERR_PTR(err);
	}
	return tfm;
}

void dst_shash_free(struct crypto_shash *tfm)
{
	crypto_free_shash(tfm);
}

unsigned int dst_shash_digestsize(struct crypto_shash *tfm)
{
	return crypto_shash_digestsize(tfm);
}

static int dst_shash_update(void *desc, const u8 *p, unsigned int len)
{
	return crypto_shash_update(desc, p, len);
}

int dst_shash_digest(struct crypto_shash *tfm, const u8 *pre,
		     unsigned int pre_len, const struct bio_vec *bv,
		     unsigned int nr, u8 *out)
{
	SHASH_DESC_ON_STACK(desc, tfm);
	int err;

	desc->tfm = tfm;
	err = crypto_shash_init(desc);
	if (!err)
		err = crypto_shash_update(desc, pre, pre_len);
	if (!err)
		err = dst_bvec_walk(bv, nr, dst_shash_update, desc);
	if (!err)
		err = crypto_shash_final(desc, out);
	shash_desc_zero(desc);
	return err;
}

/* crc32c */

static int dst_crc32c_update(void *crc, const u8 *p, unsigned int len)
{
	*(u32 *)crc = crc32c(*(u32 *)crc, p, len);
	return 0;
}

u32 dst_crc32c(u32 crc, const u8 *pre, unsigned int pre_len,
	       const struct bio_vec *bv, unsigned int nr)
{
	crc = crc32c(crc, pre, pre_len);
	dst_bvec_walk(bv, nr, dst_crc32c_update, &crc);
	return crc;
}

/* Handshake helpers: inline in the kernel headers. */

void dst_hmac_sha256_update(struct hmac_sha256_ctx *ctx, const u8 *data,
			    size_t len)
{
	hmac_sha256_update(ctx, data, len);
}

int dst_crypto_memneq(const void *a, const void *b, size_t len)
{
	return crypto_memneq(a, b, len);
}

void dst_memzero_explicit(void *p, size_t len)
{
	memzero_explicit(p, len);
}
