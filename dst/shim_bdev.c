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

unsigned int dst_bdev_noio_save(void)
{
	return memalloc_noio_save();
}

void dst_bdev_noio_restore(unsigned int flags)
{
	memalloc_noio_restore(flags);
}
