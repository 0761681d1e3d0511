/* SPDX-License-Identifier: GPL-2.0 */
/*
 * shim_file.h - C helpers of a file-backed export (backing_file.rs): path
 * lookup, file limits, the kiocb set-up around vfs_iocb_iter_{read,write},
 * fallocate support and the module's claims on served inodes, which bindgen
 * cannot reach (inline helpers, on-stack kernel structures). Mirrored by the
 * `extern "C"` block of dst/backing_file.rs.
 */
#ifndef DST_SHIM_FILE_H
#define DST_SHIM_FILE_H

#include <linux/types.h>

struct file;
struct kiocb;
struct bio_vec;

int dst_file_path_mode(const char *path, unsigned int *mode);
unsigned int dst_file_mode(struct file *file);
u64 dst_file_size(struct file *file);
unsigned int dst_file_dio_align(struct file *file);
unsigned int dst_file_block_size(struct file *file);
bool dst_file_can_fallocate(struct file *file);
int dst_file_claim(struct file *file);
void dst_file_unclaim(struct file *file);
ssize_t dst_file_rw(struct file *file, struct kiocb *iocb,
		    const struct bio_vec *bvec, unsigned int nr, size_t count,
		    loff_t pos, bool write, bool fua,
		    void (*done)(struct kiocb *iocb, long ret));
void dst_file_end_write(struct kiocb *iocb);

#endif /* DST_SHIM_FILE_H */
