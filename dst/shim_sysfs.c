// SPDX-License-Identifier: GPL-2.0
/*
 * shim_sysfs.c - /sys/kernel/dst/exportN/: one read-only directory per
 * export. The kobject type and its attribute table are static C; Rust
 * (sysfs.rs, export/mod.rs) formats each value. Names and numbers match
 * export/mod.rs `Inner::sysfs_show`.
 */
#include <linux/kobject.h>
#include <linux/slab.h>
#include <linux/sysfs.h>

#include "shim_sysfs.h"

/* /sys/kernel/dst, while the module is loaded. */
static struct kobject *dst_kobj;

struct dst_export_kobj {
	struct kobject kobj;
	void *data;		/* the export; valid until dst_shim_export_dir_del() */
};

struct dst_export_attr {
	struct kobj_attribute attr;
	u32 id;
};

static ssize_t dst_export_show(struct kobject *kobj, struct kobj_attribute *attr,
			       char *buf)
{
	struct dst_export_kobj *e = container_of(kobj, struct dst_export_kobj, kobj);
	struct dst_export_attr *a = container_of(attr, struct dst_export_attr, attr);

	return dst_rs_export_show(e->data, a->id, buf);
}

#define DST_EXPORT_ATTR(_name, _id)					\
	static struct dst_export_attr dst_export_attr_##_name = {	\
		.attr = __ATTR(_name, 0444, dst_export_show, NULL),	\
		.id = _id,						\
	}

DST_EXPORT_ATTR(listen, 0);
DST_EXPORT_ATTR(path, 1);
DST_EXPORT_ATTR(size, 2);
DST_EXPORT_ATTR(read_only, 3);
DST_EXPORT_ATTR(sessions, 4);
DST_EXPORT_ATTR(clients, 5);
DST_EXPORT_ATTR(protection, 6);
DST_EXPORT_ATTR(allow, 7);
DST_EXPORT_ATTR(refused, 8);
DST_EXPORT_ATTR(integrity_errors, 9);
DST_EXPORT_ATTR(max_io_bytes, 10);
DST_EXPORT_ATTR(memory_bytes, 11);
DST_EXPORT_ATTR(rekeys, 12);
DST_EXPORT_ATTR(name, 13);
DST_EXPORT_ATTR(writer, 14);
DST_EXPORT_ATTR(shared, 15);

static struct attribute *dst_export_attrs[] = {
	&dst_export_attr_listen.attr.attr,
	&dst_export_attr_path.attr.attr,
	&dst_export_attr_size.attr.attr,
	&dst_export_attr_read_only.attr.attr,
	&dst_export_attr_sessions.attr.attr,
	&dst_export_attr_clients.attr.attr,
	&dst_export_attr_protection.attr.attr,
	&dst_export_attr_allow.attr.attr,
	&dst_export_attr_refused.attr.attr,
	&dst_export_attr_integrity_errors.attr.attr,
	&dst_export_attr_max_io_bytes.attr.attr,
	&dst_export_attr_memory_bytes.attr.attr,
	&dst_export_attr_rekeys.attr.attr,
	&dst_export_attr_name.attr.attr,
	&dst_export_attr_writer.attr.attr,
	&dst_export_attr_shared.attr.attr,
	NULL,
};
ATTRIBUTE_GROUPS(dst_export);

static void dst_export_release(struct kobject *kobj)
{
	kfree(container_of(kobj, struct dst_export_kobj, kobj));
}

static const struct kobj_type dst_export_ktype = {
	.release	= dst_export_release,
	.sysfs_ops	= &kobj_sysfs_ops,
	.default_groups	= dst_export_groups,
};

int dst_shim_sysfs_init(void)
{
	dst_kobj = kobject_create_and_add("dst", kernel_kobj);
	return dst_kobj ? 0 : -ENOMEM;
}

void dst_shim_sysfs_exit(void)
{
	kobject_put(dst_kobj);
}

struct kobject *dst_shim_export_dir_add(u32 index, void *data)
{
	struct dst_export_kobj *e = kzalloc(sizeof(*e), GFP_KERNEL);
	int err;

	if (!e)
		return ERR_PTR(-ENOMEM);
	e->data = data;
	err = kobject_init_and_add(&e->kobj, &dst_export_ktype, dst_kobj,
				   "export%u", index);
	if (err) {
		kobject_put(&e->kobj);
		return ERR_PTR(err);
	}
	return &e->kobj;
}

/*
 * Removes the directory; once this returns no show() runs or will run, so
 * the export may go away.
 */
void dst_shim_export_dir_del(struct kobject *kobj)
{
	kobject_del(kobj);
	kobject_put(kobj);
}
