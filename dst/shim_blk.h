/* SPDX-License-Identifier: GPL-2.0 */
/*
 * shim_blk.h - the blk-mq side of the C shim: the static ops tables, the
 * disk set-up that goes through macros and inline helpers, and the per-request
 * accessors. Mirrored by the `extern "C"` block in blk.rs.
 */
#ifndef DST_SHIM_BLK_H
#define DST_SHIM_BLK_H

#include <linux/types.h>

struct blk_mq_tag_set;
struct gendisk;
struct request;
struct bio_vec;
struct socket;

/* What the handshake decided about the disk. Mirrors blk.rs `DiskParams`. */
struct dst_disk_params {
	u64 size;			/* bytes */
	u32 logical_block_size;
	u32 physical_block_size;
	u32 max_io_bytes;
	u32 queue_depth;
	u32 nr_hw_queues;		/* one connection each */
	u32 index;			/* N of /dev/dstN */
	u32 cmd_size;			/* bytes of driver data per request */
	u32 timeout_ms;			/* blk-mq request timeout */
	bool read_only;
	bool flush;			/* volatile write cache: FLUSH carried */
	bool fua;
	bool discard;
	bool write_zeroes;
	u32 max_zeroing_bytes;		/* largest DISCARD or WRITE_ZEROES */
	bool stable_writes;		/* data is checksummed before it is sent */
};

/* What a request asks for. Mirrors blk.rs `RqInfo`. */
struct dst_rq_info {
	u64 offset;			/* bytes */
	u32 length;			/* bytes */
	u32 tag;			/* blk_mq_unique_tag() */
	u8 op;				/* REQ_OP_* */
	bool fua;
	bool no_unmap;			/* REQ_NOUNMAP */
};

int dst_shim_blk_register(void);
void dst_shim_blk_unregister(void);
struct blk_mq_tag_set *dst_shim_tagset_alloc(const struct dst_disk_params *p,
					     void *driver_data);
void dst_shim_tagset_free(struct blk_mq_tag_set *set);
u32 dst_shim_max_hw_queues(void);
struct gendisk *dst_shim_disk_alloc(struct blk_mq_tag_set *set,
				    const struct dst_disk_params *p);
int dst_shim_disk_add(struct gendisk *disk);
void dst_shim_disk_del(struct gendisk *disk);
void dst_shim_disk_put(struct gendisk *disk);
void dst_shim_disk_open_lock(struct gendisk *disk);
void dst_shim_disk_open_unlock(struct gendisk *disk);
u32 dst_shim_disk_openers(struct gendisk *disk);
void dst_shim_disk_close_opens(struct gendisk *disk);
void dst_shim_disk_set_timeout(struct gendisk *disk, u32 ms);
void dst_shim_disk_uevent(struct gendisk *disk, const char *env);
bool dst_shim_disk_grow(struct gendisk *disk, u64 bytes);
void *dst_shim_rq_pdu(struct request *rq);
void dst_shim_rq_info(struct request *rq, struct dst_rq_info *info);
struct request *dst_shim_tag_to_rq(struct blk_mq_tag_set *set, u32 unique_tag);
bool dst_shim_bvecs_spliceable(const struct bio_vec *bv, unsigned int n);
int dst_shim_rq_bvecs(struct request *rq, struct bio_vec *out, unsigned int max);
void dst_shim_rq_end(struct request *rq, int err);
void dst_shim_rq_requeue(struct request *rq, u32 delay_ms);
void dst_shim_for_each_started(struct blk_mq_tag_set *set,
			       void (*fn)(void *ctx, struct request *rq),
			       void *ctx);

/* Rust, called from C. */
int dst_rs_queue_rq(void *driver_data, struct request *rq, bool last);
void dst_rs_timeout(void *driver_data, struct request *rq);
ssize_t dst_rs_sysfs_show(void *driver_data, u32 id, char *buf);

#endif /* DST_SHIM_BLK_H */
