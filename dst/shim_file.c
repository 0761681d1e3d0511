// SPDX-License-Identifier: GPL-2.0
/*
 * shim_file.c - inline helpers a file-backed export (dst/backing_file.rs)
 * needs and bindgen cannot reach: what a path names, a file's size and
 * direct IO alignment, the kiocb and bvec iterator around
 * vfs_iocb_iter_{read,write}, and the module-wide set of inodes served by
 * an export. Each function is a small wrapper; every decision is made in
 * Rust.
 */
#include <linux/blkdev.h>
#include <linux/fs.h>
#include <linux/namei.h>
#include <linux/stat.h>
#include <linux/uio.h>
#include <linux/xarray.h>

#include "shim_file.h"

/* The S_IFMT bits of what @path names (symbolic links followed). */
int dst_file_path_mode(const char *path, unsigned int *mode)
{
	struct path p;
	int err = kern_path(path, LOOKUP_FOLLOW, &p);

	if (err)
		return err;
	*mode = d_inode(p.dentry)->i_mode & S_IFMT;
	path_put(&p);
	return 0;
}

unsigned int dst_file_mode(struct file *file)
{
	return file_inode(file)->i_mode & S_IFMT;
}

u64 dst_file_size(struct file *file)
{
	loff_t size = i_size_read(file_inode(file));

	return size > 0 ? size : 0;
}

/*
 * The alignment direct IO on @file needs, for offsets and lengths: the file
 * system's own answer (statx STATX_DIOALIGN; 0 if it cannot do direct IO on
 * this file), else the logical block size of the device it lives on, as
 * loop does, else 512.
 */
unsigned int dst_file_dio_align(struct file *file)
{
	struct block_device *sb_bdev = file_inode(file)->i_sb->s_bdev;
	struct kstat st;

	if (!vfs_getattr(&file->f_path, &st, STATX_DIOALIGN, 0) &&
	    (st.result_mask & STATX_DIOALIGN))
		return st.dio_offset_align;
	if (sb_bdev)
		return bdev_logical_block_size(sb_bdev);
	return SECTOR_SIZE;
}

/* The file system's block size: smaller writes cost it a read-modify-write. */
unsigned int dst_file_block_size(struct file *file)
{
	return i_blocksize(file_inode(file));
}

bool dst_file_can_fallocate(struct file *file)
{
	return file->f_op->fallocate != NULL;
}

/*
 * Inodes served by an export, indexed by the inode's address (the export
 * holds the file open, so the inode, and its address, stay while claimed).
 * Two exports of one file would let two sets of clients, unaware of each
 * other, write one image: what a block device's exclusive claim prevents.
 */
static DEFINE_XARRAY(dst_file_claims);

/* -EBUSY if another export serves the inode. */
int dst_file_claim(struct file *file)
{
	struct inode *inode = file_inode(file);

	return xa_insert(&dst_file_claims, (unsigned long)inode, inode, GFP_KERNEL);
}

void dst_file_unclaim(struct file *file)
{
	xa_erase(&dst_file_claims, (unsigned long)file_inode(file));
}

/*
 * Reads or writes @count bytes at @pos between @file and the pages of
 * @bvec. With @done, asynchronously: @iocb is the caller's, and if this
 * returns -EIOCBQUEUED, @done is called with the result once the IO has
 * completed (in any context, interrupts included) and nothing here touches
 * @iocb or the pages any more; any other return value is the result, and
 * @done is not called. Without @done, synchronously, on a kiocb of our own
 * (@iocb is NULL). @fua: the data is durable before the IO completes.
 */
ssize_t dst_file_rw(struct file *file, struct kiocb *iocb,
		    const struct bio_vec *bvec, unsigned int nr, size_t count,
		    loff_t pos, bool write, bool fua,
		    void (*done)(struct kiocb *iocb, long ret))
{
	struct kiocb sync;
	struct iov_iter iter;

	if (!done)
		iocb = &sync;
	init_sync_kiocb(iocb, file);
	iocb->ki_pos = pos;
	iocb->ki_complete = done;
	if (fua)
		iocb->ki_flags |= IOCB_DSYNC;
	iov_iter_bvec(&iter, write ? ITER_SOURCE : ITER_DEST, bvec, nr, count);
	if (!write)
		return vfs_iocb_iter_read(file, iocb, &iter);
	/* Marks the kiocb, so that the completion drops freeze protection. */
	iocb->ki_flags |= IOCB_WRITE;
	return vfs_iocb_iter_write(file, iocb, &iter);
}

/*
 * Called first by an asynchronous completion: a write that was queued holds
 * the file system's freeze protection (taken by vfs_iocb_iter_write), which
 * its completion must drop.
 */
void dst_file_end_write(struct kiocb *iocb)
{
	if (iocb->ki_flags & IOCB_WRITE)
		kiocb_end_write(iocb);
}
