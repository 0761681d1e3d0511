// SPDX-License-Identifier: GPL-2.0
/*
 * shim_bdev.c - inline helpers the export node needs and bindgen cannot
 * reach: block device limits and the memalloc_noio scope. Each function is a
 * one-line wrapper; every decision is made in Rust (dst/bdev.rs).
 */
#include <linux/blkdev.h>
#include <linux/sched/mm.h>

#include "shim_bdev.h"

unsigned int dst_bdev_logical_block_size(struct block_device *bdev)
{
	return bdev_logical_block_size(bdev);
}

unsigned int dst_bdev_physical_block_size(struct block_device *bdev)
{
	return bdev_physical_block_size(bdev);
}

u64 dst_bdev_nr_bytes(struct block_device *bdev)
{
	return bdev_nr_bytes(bdev);
}

bool dst_bdev_can_discard(struct block_device *bdev)
{
	return bdev_max_discard_sectors(bdev) != 0;
}

/*
 * The export's own bio set. Its bios must not come from fs_bio_set: with both
 * nodes on one machine, writeback through /dev/dstN (swap included) can take
 * every bio of that reserve while it waits for the export, which then could
 * not get one to complete it.
 */
static struct bio_set dst_bio_set;

/* Bios (with room for BIO_MAX_VECS pages) kept in reserve. */
#define DST_BIO_POOL 16

int dst_bdev_bioset_init(void)
{
	return bioset_init(&dst_bio_set, DST_BIO_POOL, 0, BIOSET_NEED_BVECS);
}

void dst_bdev_bioset_exit(void)
{
	bioset_exit(&dst_bio_set);
}

/* Never fails: GFP_NOIO may sleep, and the reserve refills as bios end. */
struct bio *dst_bdev_bio_alloc(struct block_device *bdev, unsigned short nr_vecs,
			       unsigned int opf)
{
	return bio_alloc_bioset(bdev, nr_vecs, opf, GFP_NOIO, &dst_bio_set);
}

/* blk_next_bio() from our set: chains a new bio after @prev, submits @prev. */
struct bio *dst_bdev_bio_next(struct bio *prev, struct block_device *bdev,
			      unsigned short nr_vecs, unsigned int opf)
{
	struct bio *new = dst_bdev_bio_alloc(bdev, nr_vecs, opf);

	bio_chain(prev, new);
	submit_bio(prev);
	return new;
}

unsigned int dst_bdev_noio_save(void)
{
	return memalloc_noio_save();
}

void dst_bdev_noio_restore(unsigned int flags)
{
	memalloc_noio_restore(flags);
}
