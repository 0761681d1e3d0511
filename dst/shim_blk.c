// SPDX-License-Identifier: GPL-2.0
/*
 * shim_blk.c - blk-mq glue Rust cannot reach in 7.2: the static blk_mq_ops and
 * block_device_operations tables, blk_mq_alloc_disk() (a macro), queue
 * limits, and the inline per-request helpers (pdu, position, tag lookup,
 * segment iteration). Decisions are made in Rust (local_node); each function
 * here does one mechanical thing.
 */
#include <linux/blk-mq.h>
#include <linux/blkdev.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/sched/mm.h>
#include <linux/socket.h>
#include <linux/uio.h>

#include "shim_blk.h"

#define DST_MINORS 16

static int dst_major;

static blk_status_t dst_blk_queue_rq(struct blk_mq_hw_ctx *hctx,
				     const struct blk_mq_queue_data *bd)
{
	blk_mq_start_request(bd->rq);
	return errno_to_blk_status(dst_rs_queue_rq(hctx->queue->tag_set->driver_data,
						   bd->rq, bd->last));
}

/*
 * The driver never ends a request from here: its own paths end or resend
 * it (a timed-out request means a dead connection, which Rust drops).
 */
static enum blk_eh_timer_return dst_blk_timeout(struct request *rq)
{
	dst_rs_timeout(rq->q->tag_set->driver_data, rq);
	return BLK_EH_RESET_TIMER;
}

/* Driver data starts zeroed: all-zero is a valid "idle" PDU for Rust. */
static int dst_blk_init_request(struct blk_mq_tag_set *set, struct request *rq,
				unsigned int hctx_idx, int numa_node)
{
	memset(blk_mq_rq_to_pdu(rq), 0, set->cmd_size);
	return 0;
}

static const struct blk_mq_ops dst_blk_mq_ops = {
	.queue_rq	= dst_blk_queue_rq,
	.timeout	= dst_blk_timeout,
	.init_request	= dst_blk_init_request,
};

/*
 * sysfs: /sys/block/dstN/dst/<name>, read-only; Rust formats each value.
 * Names and numbers match blk.rs `SysfsAttr`.
 */
struct dst_sysfs_attr {
	struct device_attribute attr;
	u32 id;
};

static ssize_t dst_sysfs_show(struct device *dev, struct device_attribute *attr,
			      char *buf)
{
	struct gendisk *disk = dev_to_disk(dev);
	struct dst_sysfs_attr *a = container_of(attr, struct dst_sysfs_attr, attr);

	return dst_rs_sysfs_show(disk->queue->tag_set->driver_data, a->id, buf);
}

#define DST_ATTR(_name, _id)						\
	static struct dst_sysfs_attr dst_attr_##_name = {		\
		.attr = __ATTR(_name, 0444, dst_sysfs_show, NULL),	\
		.id = _id,						\
	}

DST_ATTR(peer, 0);
DST_ATTR(state, 1);
DST_ATTR(size, 2);
DST_ATTR(read_only, 3);
DST_ATTR(queue_depth, 4);
DST_ATTR(queued, 5);
DST_ATTR(reconnects, 6);
DST_ATTR(resends, 7);
DST_ATTR(timeouts, 8);
DST_ATTR(io_errors, 9);
DST_ATTR(bytes_read, 10);
DST_ATTR(bytes_written, 11);
DST_ATTR(req_timeout_ms, 12);
DST_ATTR(max_resends, 13);
DST_ATTR(reconnect_delay_ms, 14);
DST_ATTR(ping_interval_ms, 15);
DST_ATTR(ping_timeout_ms, 16);
DST_ATTR(loss_timeout_ms, 17);
DST_ATTR(integrity_errors, 18);
DST_ATTR(protection, 19);
DST_ATTR(queues, 20);
DST_ATTR(rekeys, 21);
DST_ATTR(export_name, 22);
DST_ATTR(serial, 23);

static struct attribute *dst_sysfs_attrs[] = {
	&dst_attr_peer.attr.attr,
	&dst_attr_state.attr.attr,
	&dst_attr_size.attr.attr,
	&dst_attr_read_only.attr.attr,
	&dst_attr_queue_depth.attr.attr,
	&dst_attr_queued.attr.attr,
	&dst_attr_reconnects.attr.attr,
	&dst_attr_resends.attr.attr,
	&dst_attr_timeouts.attr.attr,
	&dst_attr_io_errors.attr.attr,
	&dst_attr_bytes_read.attr.attr,
	&dst_attr_bytes_written.attr.attr,
	&dst_attr_req_timeout_ms.attr.attr,
	&dst_attr_max_resends.attr.attr,
	&dst_attr_reconnect_delay_ms.attr.attr,
	&dst_attr_ping_interval_ms.attr.attr,
	&dst_attr_ping_timeout_ms.attr.attr,
	&dst_attr_loss_timeout_ms.attr.attr,
	&dst_attr_integrity_errors.attr.attr,
	&dst_attr_protection.attr.attr,
	&dst_attr_queues.attr.attr,
	&dst_attr_rekeys.attr.attr,
	&dst_attr_export_name.attr.attr,
	NULL,
};

static const struct attribute_group dst_sysfs_group = {
	.name = "dst",
	.attrs = dst_sysfs_attrs,
};

/*
 * /sys/block/dstN/serial: the export's identity, where udev looks for a
 * disk's serial (as for virtio-blk), for /dev/disk/by-id/dst-<identity>.
 */
static struct attribute *dst_disk_attrs[] = {
	&dst_attr_serial.attr.attr,
	NULL,
};

static const struct attribute_group dst_disk_group = {
	.attrs = dst_disk_attrs,
};

static const struct attribute_group *dst_sysfs_groups[] = {
	&dst_disk_group,
	&dst_sysfs_group,
	NULL,
};

/*
 * The address of this marks a disk closed to new opens, in disk->private_data
 * (unused otherwise): set under open_mutex by dst_shim_disk_close_opens() once
 * a delete has been accepted.
 */
static char dst_disk_closed;

/* bdev_open() calls this with disk->open_mutex held, for every open. */
static int dst_blk_open(struct gendisk *disk, blk_mode_t mode)
{
	return disk->private_data == &dst_disk_closed ? -ENXIO : 0;
}

/* Holding the module while a disk is open makes rmmod fail with EBUSY. */
static const struct block_device_operations dst_blk_fops = {
	.owner		= THIS_MODULE,
	.open		= dst_blk_open,
};

int dst_shim_blk_register(void)
{
	int major = register_blkdev(0, "dst");

	if (major < 0)
		return major;
	dst_major = major;
	return 0;
}

void dst_shim_blk_unregister(void)
{
	unregister_blkdev(dst_major, "dst");
}

struct blk_mq_tag_set *dst_shim_tagset_alloc(const struct dst_disk_params *p,
					     void *driver_data)
{
	struct blk_mq_tag_set *set = kzalloc(sizeof(*set), GFP_KERNEL);
	int err;

	if (!set)
		return ERR_PTR(-ENOMEM);
	set->ops = &dst_blk_mq_ops;
	set->nr_hw_queues = p->nr_hw_queues;
	set->queue_depth = p->queue_depth;
	set->numa_node = NUMA_NO_NODE;
	set->cmd_size = p->cmd_size;
	set->timeout = msecs_to_jiffies(p->timeout_ms);
	set->driver_data = driver_data;
	/*
	 * queue_rq may send on the socket (dst/local_node/send.rs). No I/O
	 * scheduler by default, even with one hardware queue: the export's
	 * device has its own; here mq-deadline only added work and moved
	 * dispatch to kblockd (random 4 KiB reads at queue depth 32: 20 to 45 %
	 * fewer IOPS with it, one queue). The admin may still set one.
	 */
	set->flags = BLK_MQ_F_BLOCKING | BLK_MQ_F_NO_SCHED_BY_DEFAULT;
	err = blk_mq_alloc_tag_set(set);
	if (err) {
		kfree(set);
		return ERR_PTR(err);
	}
	return set;
}

/* blk_mq_alloc_tag_set() gives at most one hardware queue per CPU id. */
u32 dst_shim_max_hw_queues(void)
{
	return nr_cpu_ids;
}

void dst_shim_tagset_free(struct blk_mq_tag_set *set)
{
	blk_mq_free_tag_set(set);
	kfree(set);
}

struct gendisk *dst_shim_disk_alloc(struct blk_mq_tag_set *set,
				    const struct dst_disk_params *p)
{
	struct queue_limits lim = {
		.logical_block_size	= p->logical_block_size,
		.physical_block_size	= p->physical_block_size,
		.max_hw_sectors		= p->max_io_bytes >> SECTOR_SHIFT,
		.max_segments		= p->max_io_bytes >> PAGE_SHIFT,
		/*
		 * The request's data is described page by page
		 * (rq_for_each_segment) in a table of max_segments entries:
		 * a segment must neither exceed nor cross a page, or one
		 * segment would take two entries.
		 */
		.max_segment_size	= PAGE_SIZE,
		.seg_boundary_mask	= PAGE_SIZE - 1,
	};
	struct gendisk *disk;

	if (p->flush)
		lim.features |= BLK_FEAT_WRITE_CACHE;
	if (p->flush && p->fua)
		lim.features |= BLK_FEAT_FUA;
	if (p->stable_writes)
		lim.features |= BLK_FEAT_STABLE_WRITES;
	if (p->discard) {
		lim.max_hw_discard_sectors = p->max_zeroing_bytes >> SECTOR_SHIFT;
		lim.discard_granularity = p->logical_block_size;
	}
	if (p->write_zeroes)
		lim.max_write_zeroes_sectors = p->max_zeroing_bytes >> SECTOR_SHIFT;

	disk = blk_mq_alloc_disk(set, &lim, NULL);
	if (IS_ERR(disk))
		return disk;
	disk->major = dst_major;
	disk->first_minor = p->index * DST_MINORS;
	disk->minors = DST_MINORS;
	disk->fops = &dst_blk_fops;
	snprintf(disk->disk_name, sizeof(disk->disk_name), "dst%u", p->index);
	set_capacity(disk, p->size >> SECTOR_SHIFT);
	set_disk_ro(disk, p->read_only);
	return disk;
}

int dst_shim_disk_add(struct gendisk *disk)
{
	return device_add_disk(NULL, disk, dst_sysfs_groups);
}

void dst_shim_disk_del(struct gendisk *disk)
{
	del_gendisk(disk);
}

void dst_shim_disk_put(struct gendisk *disk)
{
	put_disk(disk);
}

void dst_shim_disk_open_lock(struct gendisk *disk)
{
	mutex_lock(&disk->open_mutex);
}

void dst_shim_disk_open_unlock(struct gendisk *disk)
{
	mutex_unlock(&disk->open_mutex);
}

/*
 * Opens of the disk and of its partitions (each open partition counts once
 * more on the whole disk); stable while open_mutex is held.
 */
u32 dst_shim_disk_openers(struct gendisk *disk)
{
	lockdep_assert_held(&disk->open_mutex);
	return disk_openers(disk);
}

/* From now on every open fails with ENXIO (dst_blk_open). */
void dst_shim_disk_close_opens(struct gendisk *disk)
{
	lockdep_assert_held(&disk->open_mutex);
	disk->private_data = &dst_disk_closed;
}

/*
 * A KOBJ_CHANGE uevent on the disk with one extra variable (env, "KEY=value").
 * kobject_uevent_env() allocates with GFP_KERNEL; the caller may be on the
 * device's IO path, so allocations here may not start IO.
 */
void dst_shim_disk_uevent(struct gendisk *disk, const char *env)
{
	char *envp[] = { (char *)env, NULL };
	unsigned int noio = memalloc_noio_save();

	kobject_uevent_env(&disk_to_dev(disk)->kobj, KOBJ_CHANGE, envp);
	memalloc_noio_restore(noio);
}

/*
 * Grows the disk to @bytes, never shrinks it: set_capacity_and_notify()
 * updates the size openers see (a mounted file system can then be grown
 * online) and sends the "RESIZE=1" change uevent, allocating without IO as
 * above. Returns whether it grew.
 */
bool dst_shim_disk_grow(struct gendisk *disk, u64 bytes)
{
	sector_t sectors = bytes >> SECTOR_SHIFT;
	unsigned int noio;
	bool grew;

	if (sectors <= get_capacity(disk))
		return false;
	noio = memalloc_noio_save();
	grew = set_capacity_and_notify(disk, sectors);
	memalloc_noio_restore(noio);
	return grew;
}

void dst_shim_disk_set_timeout(struct gendisk *disk, u32 ms)
{
	blk_queue_rq_timeout(disk->queue, msecs_to_jiffies(ms));
}

void *dst_shim_rq_pdu(struct request *rq)
{
	return blk_mq_rq_to_pdu(rq);
}

void dst_shim_rq_info(struct request *rq, struct dst_rq_info *info)
{
	info->offset = blk_rq_pos(rq) << SECTOR_SHIFT;
	info->length = blk_rq_bytes(rq);
	info->tag = blk_mq_unique_tag(rq);
	info->op = req_op(rq);
	info->fua = rq->cmd_flags & REQ_FUA;
	info->no_unmap = rq->cmd_flags & REQ_NOUNMAP;
}

/* The request with this unique tag, or NULL if the tag is out of range. */
struct request *dst_shim_tag_to_rq(struct blk_mq_tag_set *set, u32 unique_tag)
{
	u32 hwq = blk_mq_unique_tag_to_hwq(unique_tag);
	u32 tag = blk_mq_unique_tag_to_tag(unique_tag);

	if (hwq >= set->nr_hw_queues || !set->tags[hwq])
		return NULL;
	if (tag >= set->tags[hwq]->nr_tags)
		return NULL;
	return blk_mq_tag_to_rq(set->tags[hwq], tag);
}

/* Whether every page of bv[0..n] may be spliced into a socket. */
bool dst_shim_bvecs_spliceable(const struct bio_vec *bv, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (!sendpage_ok(bv[i].bv_page))
			return false;
	return true;
}

/* The request's data segments into out[0..max]: their number, or -E2BIG. */
int dst_shim_rq_bvecs(struct request *rq, struct bio_vec *out, unsigned int max)
{
	struct req_iterator iter;
	struct bio_vec bvec;
	unsigned int n = 0;

	rq_for_each_segment(bvec, rq, iter) {
		if (n == max)
			return -E2BIG;
		out[n++] = bvec;
	}
	return n;
}

void dst_shim_rq_end(struct request *rq, int err)
{
	blk_mq_end_request(rq, errno_to_blk_status(err));
}

/* Gives a started request back to the block layer, to be queued again in
 * delay_ms. */
void dst_shim_rq_requeue(struct request *rq, u32 delay_ms)
{
	blk_mq_requeue_request(rq, false);
	blk_mq_delay_kick_requeue_list(rq->q, delay_ms);
}

struct dst_iter {
	void (*fn)(void *ctx, struct request *rq);
	void *ctx;
};

static bool dst_iter_one(struct request *rq, void *data)
{
	struct dst_iter *it = data;

	it->fn(it->ctx, rq);
	return true;
}

/* Call fn on every started request of the set. */
void dst_shim_for_each_started(struct blk_mq_tag_set *set,
			       void (*fn)(void *ctx, struct request *rq),
			       void *ctx)
{
	struct dst_iter it = { .fn = fn, .ctx = ctx };

	blk_mq_tagset_busy_iter(set, dst_iter_one, &it);
}
