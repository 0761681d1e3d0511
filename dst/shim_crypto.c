// SPDX-License-Identifier: GPL-2.0
/*
 * shim_crypto.c - the kernel crypto API over bio_vec arrays, for the data
 * channel protection of crypto.rs. AEAD requests need scatterlists and a
 * synchronous wait (macros and inline helpers), with per-message state from
 * a mempool of the transform, keyed hashes need a descriptor on the stack (a
 * macro), and crc32c and the handshake helpers are inline; Rust reaches none
 * of that. Every decision is made in crypto.rs.
 */
#include <crypto/aead.h>
#include <crypto/curve25519.h>
#include <crypto/hash.h>
#include <crypto/sha2.h>
#include <crypto/utils.h>
#include <linux/bvec.h>
#include <linux/crc32.h>
#include <linux/err.h>
#include <linux/highmem.h>
#include <linux/mempool.h>
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

/*
 * Per-message state of one AEAD operation, sized for the largest message
 * and kept in the transform's mempool (see struct dst_aead). Not on the
 * stack: with CONFIG_VMAP_STACK a stack address has no linear-map page, so
 * sg_set_buf() cannot describe iv, aad or tag.
 *
 * The scatterlists come from sg_alloc_table(), once per element: it chains
 * page-sized chunks (SG_MAX_SINGLE_ALLOC entries each), so an element for
 * a thousand segments needs no allocation above order 0, and lib/scatterlist
 * owns the chaining and its freeing. Each message then only rewrites the
 * entries it uses and moves the end mark (dst_sg_fill()).
 */
struct dst_aead_op {
	struct aead_request *req;	/* for the pool's tfm; reused */
	struct sg_table src;		/* max_segs + 2 entries */
	struct sg_table dst;		/* the same; used when not in place */
	u8 iv[DST_AEAD_IV_LEN];
	u8 aad[DST_AEAD_MAX_AAD];
	u8 aad_out[DST_AEAD_MAX_AAD];	/* room the API wants in dst; unread */
	u8 tag[DST_AEAD_MAX_TAG];
};

/*
 * A keyed transform and the mempool of its per-message state. Every
 * operation takes exactly one element and gives it back before it returns,
 * and nothing else is allocated per message, so mempool_alloc(GFP_NOIO)
 * always makes progress: the allocator, else a reserved element, else wait
 * for one of the (at most a few) elements in use to come back. Nobody holds
 * an element while waiting for another one, so this cannot deadlock.
 */
struct dst_aead {
	struct crypto_aead *tfm;
	mempool_t *pool;
	unsigned int max_segs;		/* payload segments an element takes */
};

static void dst_aead_op_destroy(void *element, void *data)
{
	struct dst_aead_op *op = element;

	sg_free_table(&op->src);
	sg_free_table(&op->dst);
	aead_request_free(op->req);	/* zeroes it: it held cipher state */
	kfree(op);
}

/* mempool_alloc_t: one element, for the largest message of @data. */
static void *dst_aead_op_create(gfp_t gfp, void *data)
{
	struct dst_aead *a = data;
	unsigned int n = a->max_segs + 2;	/* aad, payload, tag */
	struct dst_aead_op *op = kzalloc_obj(*op, gfp);

	if (!op)
		return NULL;
	op->req = aead_request_alloc(a->tfm, gfp);
	if (!op->req || sg_alloc_table(&op->src, n, gfp) ||
	    sg_alloc_table(&op->dst, n, gfp)) {
		/* A failed sg_alloc_table() leaves an empty table. */
		dst_aead_op_destroy(op, a);
		return NULL;
	}
	return op;
}

void dst_aead_free(struct dst_aead *a)
{
	if (!a)
		return;
	/* Every element is back: no operation runs any more. */
	mempool_destroy(a->pool);
	if (a->tfm)
		crypto_free_aead(a->tfm);
	kfree(a);
}

struct dst_aead *dst_aead_alloc(const char *name, const u8 *key,
				unsigned int key_len, unsigned int tag_len,
				unsigned int max_segs, unsigned int reserve)
{
	struct crypto_aead *tfm;
	struct dst_aead *a;
	int err;

	if (tag_len > DST_AEAD_MAX_TAG || !max_segs || max_segs > UINT_MAX - 2 ||
	    !reserve || reserve > INT_MAX)
		return ERR_PTR(-EINVAL);
	a = kzalloc_obj(*a, GFP_KERNEL);
	if (!a)
		return ERR_PTR(-ENOMEM);
	tfm = crypto_alloc_aead(name, 0, 0);
	if (IS_ERR(tfm)) {
		kfree(a);
		return ERR_CAST(tfm);
	}
	a->tfm = tfm;
	a->max_segs = max_segs;
	err = crypto_aead_setkey(tfm, key, key_len);
	if (!err)
		err = crypto_aead_setauthsize(tfm, tag_len);
	/* The op's iv buffer is what the tfm reads. */
	if (!err && crypto_aead_ivsize(tfm) != DST_AEAD_IV_LEN)
		err = -EINVAL;
	if (!err) {
		/* Needs tfm and max_segs: builds @reserve elements now. */
		a->pool = mempool_create(reserve, dst_aead_op_create,
					 dst_aead_op_destroy, a);
		if (!a->pool)
			err = -ENOMEM;
	}
	if (err) {
		dst_aead_free(a);
		return ERR_PTR(err);
	}
	return a;
}

unsigned int dst_aead_ivsize(struct dst_aead *a)
{
	return crypto_aead_ivsize(a->tfm);
}

/*
 * Takes an element for one message: a reserved one if the pool holds one
 * (no allocation: building an element takes about twenty page and slab
 * allocations, too many for every message), else
 * mempool_alloc(), which allocates one, takes one freed meanwhile or waits
 * for one. Beyond the reserve, elements are allocated when more messages
 * of this tfm are in flight at once, and freed when they come back.
 */
static struct dst_aead_op *dst_aead_op_get(struct dst_aead *a,
					   const u8 *iv, const u8 *aad,
					   unsigned int aad_len)
{
	struct dst_aead_op *op;

	if (aad_len > DST_AEAD_MAX_AAD)
		return ERR_PTR(-EINVAL);
	op = mempool_alloc_preallocated(a->pool);
	if (!op)
		op = mempool_alloc(a->pool, GFP_NOIO);
	/* Never NULL: GFP_NOIO may wait. */
	if (!op)
		return ERR_PTR(-ENOMEM);
	memcpy(op->iv, iv, DST_AEAD_IV_LEN);
	memcpy(op->aad, aad, aad_len);
	return op;
}

static void dst_aead_op_put(struct dst_aead *a, struct dst_aead_op *op)
{
	mempool_free(op, a->pool);
}

/* Non-empty bvecs of @bv[0..@nr]: one scatterlist entry each. */
static unsigned int dst_bvec_segs(const struct bio_vec *bv, unsigned int nr)
{
	unsigned int i, n = 0;

	for (i = 0; i < nr; i++)
		n += bv[i].bv_len != 0;
	return n;
}

/*
 * Describes [@head][@bv...][@tail] (no tail if @tail is NULL) in @t,
 * skipping empty bvecs, and ends the list after the last entry. @t was
 * allocated for at least that many entries (the caller checks the count
 * against max_segs); entries after the end keep stale values nobody reads.
 * sg_next() follows the chain links sg_alloc_table() made.
 */
static void dst_sg_fill(struct sg_table *t, void *head, unsigned int head_len,
			const struct bio_vec *bv, unsigned int nr, void *tail,
			unsigned int tail_len)
{
	struct scatterlist *sg = t->sgl;
	unsigned int i;

	/* Each entry set is unmarked: a previous message may have ended there. */
	sg_set_buf(sg, head, head_len);
	sg_unmark_end(sg);
	for (i = 0; i < nr; i++) {
		if (!bv[i].bv_len)
			continue;
		sg = sg_next(sg);
		sg_set_page(sg, bv[i].bv_page, bv[i].bv_len, bv[i].bv_offset);
		sg_unmark_end(sg);
	}
	if (tail) {
		sg = sg_next(sg);
		sg_set_buf(sg, tail, tail_len);
		sg_unmark_end(sg);
	}
	sg_mark_end(sg);
}

/* Runs one request and waits for it, also if the tfm is asynchronous. */
static int dst_aead_run(struct dst_aead_op *op, bool encrypt, bool in_place,
			unsigned int aad_len, unsigned int cryptlen)
{
	struct aead_request *req = op->req;
	DECLARE_CRYPTO_WAIT(wait);

	aead_request_set_callback(req, CRYPTO_TFM_REQ_MAY_BACKLOG |
				  CRYPTO_TFM_REQ_MAY_SLEEP,
				  crypto_req_done, &wait);
	aead_request_set_ad(req, aad_len);
	aead_request_set_crypt(req, op->src.sgl,
			       in_place ? op->src.sgl : op->dst.sgl,
			       cryptlen, op->iv);
	return crypto_wait_req(encrypt ? crypto_aead_encrypt(req) :
			       crypto_aead_decrypt(req), &wait);
}

int dst_aead_seal(struct dst_aead *a, const u8 *iv, const u8 *aad,
		  unsigned int aad_len, const struct bio_vec *src,
		  unsigned int nr_src, const struct bio_vec *dst,
		  unsigned int nr_dst, u8 *tag)
{
	unsigned int tag_len = crypto_aead_authsize(a->tfm);
	bool in_place = src == dst && nr_src == nr_dst;
	int len = dst_bvec_bytes(src, nr_src);
	struct dst_aead_op *op;
	int err;

	if (len < 0 || (!in_place && dst_bvec_bytes(dst, nr_dst) != len) ||
	    dst_bvec_segs(src, nr_src) > a->max_segs ||
	    (!in_place && dst_bvec_segs(dst, nr_dst) > a->max_segs))
		return -EINVAL;
	op = dst_aead_op_get(a, iv, aad, aad_len);
	if (IS_ERR(op))
		return PTR_ERR(op);
	/* The tag follows the ciphertext in dst. */
	if (in_place) {
		dst_sg_fill(&op->src, op->aad, aad_len, src, nr_src, op->tag,
			    tag_len);
	} else {
		dst_sg_fill(&op->src, op->aad, aad_len, src, nr_src, NULL, 0);
		dst_sg_fill(&op->dst, op->aad_out, aad_len, dst, nr_dst,
			    op->tag, tag_len);
	}
	err = dst_aead_run(op, true, in_place, aad_len, len);
	if (!err)
		memcpy(tag, op->tag, tag_len);
	dst_aead_op_put(a, op);
	return err;
}

int dst_aead_open(struct dst_aead *a, const u8 *iv, const u8 *aad,
		  unsigned int aad_len, const struct bio_vec *data,
		  unsigned int nr, const u8 *tag)
{
	unsigned int tag_len = crypto_aead_authsize(a->tfm);
	int len = dst_bvec_bytes(data, nr);
	struct dst_aead_op *op;
	int err;

	if (len < 0 || dst_bvec_segs(data, nr) > a->max_segs)
		return -EINVAL;
	op = dst_aead_op_get(a, iv, aad, aad_len);
	if (IS_ERR(op))
		return PTR_ERR(op);
	memcpy(op->tag, tag, tag_len);
	/* Decryption input: ciphertext || tag; cryptlen counts both. */
	dst_sg_fill(&op->src, op->aad, aad_len, data, nr, op->tag, tag_len);
	err = dst_aead_run(op, false, true, aad_len, len + tag_len);
	dst_aead_op_put(a, op);
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

/*
 * Copies the bytes of @src[0..@nsrc] into @dst[0..@ndst], which must hold as
 * many; -EINVAL otherwise (nothing copied). A bio_vec may span pages; the
 * copy goes a page piece at a time, as memcpy_page() maps one page.
 */
int dst_bvec_copy(const struct bio_vec *dst, unsigned int ndst,
		  const struct bio_vec *src, unsigned int nsrc)
{
	unsigned int di = 0, si = 0, doff = 0, soff = 0;
	int len = dst_bvec_bytes(dst, ndst);

	if (len < 0 || len != dst_bvec_bytes(src, nsrc))
		return -EINVAL;
	while (di < ndst && si < nsrc) {
		const struct bio_vec *d = &dst[di], *s = &src[si];
		size_t dpos = d->bv_offset + doff, spos = s->bv_offset + soff;
		unsigned int n = min3(d->bv_len - doff, s->bv_len - soff,
				      (unsigned int)min(PAGE_SIZE - offset_in_page(dpos),
							PAGE_SIZE - offset_in_page(spos)));

		memcpy_page(d->bv_page + dpos / PAGE_SIZE, offset_in_page(dpos),
			    s->bv_page + spos / PAGE_SIZE, offset_in_page(spos), n);
		doff += n;
		soff += n;
		if (doff == d->bv_len) {
			di++;
			doff = 0;
		}
		if (soff == s->bv_len) {
			si++;
			soff = 0;
		}
	}
	return 0;
}

/* Handshake helpers: inline in the kernel headers. */

void dst_sha256_update(struct sha256_ctx *ctx, const u8 *data, size_t len)
{
	sha256_update(ctx, data, len);
}

/*
 * A fresh X25519 key pair. Waits for the CRNG to be seeded first (a node
 * that connects early in boot must not use predictable keys); fails only if
 * a signal interrupts that wait.
 */
int dst_x25519_keypair(u8 secret[32], u8 pub[32])
{
	int err = wait_for_random_bytes();

	if (err)
		return err;
	get_random_bytes(secret, CURVE25519_KEY_SIZE);
	curve25519_clamp_secret(secret);
	return curve25519_generate_public(pub, secret) ? 0 : -EINVAL;
}

/* X25519(@secret, @pub); false if the result is all zero (@pub of small order). */
bool dst_x25519(u8 out[32], const u8 secret[32], const u8 pub[32])
{
	return curve25519(out, secret, pub);
}

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
