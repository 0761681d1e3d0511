/* SPDX-License-Identifier: GPL-2.0 */
/*
 * shim_bdev.h - C helpers of the export node (bdev.rs): inline block device
 * queries and the memalloc_noio scope, which bindgen cannot reach. Mirrored
 * by the `extern "C"` block of dst/bdev.rs.
 */
#ifndef DST_SHIM_BDEV_H
#define DST_SHIM_BDEV_H

#include <linux/types.h>

struct block_device;
struct bio;
struct page;

unsigned int dst_bdev_logical_block_size(struct block_device *bdev);
unsigned int dst_bdev_physical_block_size(struct block_device *bdev);
u64 dst_bdev_nr_bytes(struct block_device *bdev);
bool dst_bdev_can_discard(struct block_device *bdev);
bool dst_bdev_write_cache(struct block_device *bdev);

int dst_bdev_bioset_init(void);
void dst_bdev_bioset_exit(void);
struct bio *dst_bdev_bio_alloc(struct block_device *bdev, unsigned short nr_vecs,
			       unsigned int opf);
struct bio *dst_bdev_bio_next(struct bio *prev, struct block_device *bdev,
			      unsigned short nr_vecs, unsigned int opf);

struct page *dst_bdev_page_alloc(bool retry);
void dst_bdev_page_free(struct page *page);

struct llist_head;
struct llist_node;
struct wait_queue_head;
void dst_handoff_init_list(struct llist_head *list);
void dst_handoff_init_wait(struct wait_queue_head *wait);
void dst_handoff_push(struct llist_head *list, struct wait_queue_head *wait,
		      atomic_t *held, struct llist_node *node);
void dst_handoff_hold(atomic_t *held);
void dst_handoff_unhold(struct llist_head *list, struct wait_queue_head *wait,
			atomic_t *held);
struct llist_node *dst_handoff_release(struct llist_head *list, atomic_t *held);
struct llist_node *dst_handoff_take(struct llist_head *list);
void dst_handoff_quiesce(void);
struct llist_node *dst_handoff_wait(struct llist_head *list,
				    struct wait_queue_head *wait, atomic_t *kicked);
void dst_handoff_kick(struct wait_queue_head *wait, atomic_t *kicked);
bool dst_handoff_kicked(atomic_t *kicked);

unsigned int dst_bdev_noio_save(void);
void dst_bdev_noio_restore(unsigned int flags);

#endif /* DST_SHIM_BDEV_H */
