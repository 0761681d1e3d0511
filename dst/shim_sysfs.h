/* SPDX-License-Identifier: GPL-2.0 */
/*
 * shim_sysfs.h - /sys/kernel/dst: prototypes shared by shim_sysfs.c and the
 * Rust `extern "C"` block in sysfs.rs.
 */
#ifndef DST_SHIM_SYSFS_H
#define DST_SHIM_SYSFS_H

#include <linux/types.h>

struct kobject;

/* C, called from Rust. */
int dst_shim_sysfs_init(void);
void dst_shim_sysfs_exit(void);
struct kobject *dst_shim_export_dir_add(u32 index, void *data);
void dst_shim_export_dir_del(struct kobject *kobj);

/* Rust, called from C: formats attribute id of export data into buf. */
ssize_t dst_rs_export_show(void *data, u32 id, char *buf);

#endif /* DST_SHIM_SYSFS_H */
