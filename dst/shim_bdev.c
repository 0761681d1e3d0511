// SPDX-License-Identifier: GPL-2.0
/*
 * shim_bdev.c - inline helpers the export node needs and bindgen cannot
 * reach: block device limits, the bio set, page allocation with the flags
 * DST needs, the completion hand-off (dst/handoff.rs) and the memalloc_noio
 * scope. Each function is a small wrapper; every decision is made in Rust.
 */
#include <linux/blkdev.h>
#include <linux/kthread.h>
#include <linux/llist.h>
#include <linux/rcupdate.h>
#include <linux/wait.h>
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

/* Whether completed writes may sit in a volatile cache until a flush. */
bool dst_bdev_write_cache(struct block_device *bdev)
{
	return bdev_write_cache(bdev);
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

/* Pages of the export's buffers (dst/pages.rs): NOIO; without @retry, no
 * direct reclaim at all (kswapd is woken), so that the caller falls back on
 * its reserve at once. Not __GFP_NORETRY: that still runs one round of
 * direct reclaim per page: for a 1 MiB buffer under swap pressure the
 * export's receiver was found there (fault_swap, aead) while the local
 * node's requests timed out (15 s). */
struct page *dst_bdev_page_alloc(bool retry)
{
	return alloc_page(retry ? GFP_NOIO | __GFP_NOWARN : GFP_NOWAIT | __GFP_NOWARN);
}

void dst_bdev_page_free(struct page *page)
{
	__free_page(page);
}

/* The hand-off of dst/handoff.rs: an llist with a wait queue. */
void dst_handoff_init_list(struct llist_head *list)
{
	init_llist_head(list);
}

void dst_handoff_init_wait(struct wait_queue_head *wait)
{
	init_waitqueue_head(wait);
}

/*
 * Any context. The consumer may take and free the item as soon as it is on
 * the list, and with it what keeps @wait alive: the push is an RCU read-side
 * section, and the owner waits for it with dst_handoff_quiesce() before
 * freeing the hand-off.
 */
void dst_handoff_push(struct llist_head *list, struct wait_queue_head *wait,
		      atomic_t *held, struct llist_node *node)
{
	rcu_read_lock();
	/*
	 * llist_add() is fully ordered, as is dst_handoff_release(): either
	 * this sees the hold ended and wakes the consumer, or the holder's
	 * take sees the item.
	 */
	llist_add(node, list);
	if (!atomic_read(held))
		wake_up(wait);
	rcu_read_unlock();
}

/* Pushes until the matching release leave the consumer asleep. */
void dst_handoff_hold(atomic_t *held)
{
	atomic_inc(held);
}

/* Ends a hold, leaving what was pushed to the consumer. */
void dst_handoff_unhold(struct llist_head *list, struct wait_queue_head *wait,
			atomic_t *held)
{
	atomic_dec(held);
	smp_mb__after_atomic();
	if (!llist_empty(list))
		wake_up(wait);
}

/* Ends a hold and takes what was pushed, oldest first. */
struct llist_node *dst_handoff_release(struct llist_head *list, atomic_t *held)
{
	atomic_dec(held);
	smp_mb__after_atomic();
	return dst_handoff_take(list);
}

void dst_handoff_quiesce(void)
{
	synchronize_rcu();
}

/* Oldest first. */
struct llist_node *dst_handoff_take(struct llist_head *list)
{
	return llist_reverse_order(llist_del_all(list));
}

/*
 * Process context, by a caller that holds a reference on what contains
 * @wait: wakes the consumer without an item (dst_handoff_kicked() then
 * says so once).
 */
void dst_handoff_kick(struct wait_queue_head *wait, atomic_t *kicked)
{
	/* What the caller stored before is seen by a consumer that sees this. */
	atomic_set_release(kicked, 1);
	wake_up(wait);
}

/* Whether the consumer was kicked since it last asked. */
bool dst_handoff_kicked(atomic_t *kicked)
{
	return atomic_xchg(kicked, 0);
}

/* TASK_IDLE: an idle consumer neither counts as load nor as a hung task. */
struct llist_node *dst_handoff_wait(struct llist_head *list,
				    struct wait_queue_head *wait, atomic_t *kicked)
{
	wait_event_idle(*wait, !llist_empty(list) || atomic_read(kicked) ||
			       kthread_should_stop());
	return dst_handoff_take(list);
}
