/* SPDX-License-Identifier: GPL-2.0 */
/*
 * shim.h - the C side of dst.ko: prototypes shared by shim.c and mirrored by
 * Rust `extern "C"` blocks. Functions named dst_genl_* / dst_shim_* are C,
 * called from Rust; functions named dst_nl_* are Rust, called from C.
 */
#ifndef DST_SHIM_H
#define DST_SHIM_H

#include <linux/types.h>

/* Mirrors netlink.rs `DstNlStatus`. */
struct dst_nl_status {
	const char *version;
	u32 proto_version;
	u32 crypto_threads;
	u32 rekey_mib;
	u32 rekey_seconds;
};

struct net;
struct netlink_ext_ack;

/* Per-device settings, in this order: see dst_nl_setting_attrs in shim.c. */
#define DST_NL_SETTINGS 6

/* A DST_CMD_EVENT notification. Mirrors netlink.rs `NlEvent`. */
struct dst_nl_event {
	u32 kind;			/* enum dst_kind */
	u32 index;
	u32 event;			/* enum dst_event */
	u32 peer_len;			/* 0: no peer, else 4 or 16 */
	u8 peer[16];
	u16 peer_port;
	const char *message;		/* NULL or NUL-terminated */
};

/* Largest pre-shared key, allow-list, algorithm name and identity. */
#define DST_NL_KEY_MAX		64
#define DST_NL_ALLOW_MAX	32
#define DST_NL_ALG_MAX		64
#define DST_NL_NAME_MAX		64
#define DST_NL_CLIENTS_MAX	16

/* One allow-list entry. Mirrors netlink.rs `NlAllow`. */
struct dst_nl_allow {
	u8 addr_len;			/* 4 or 16 */
	u8 prefix_len;
	bool read_only;
	u8 addr[16];
};

/* One DST_A_CLIENT entry. Mirrors netlink.rs `NlClient`. */
struct dst_nl_client {
	char name[DST_NL_NAME_MAX];	/* NUL-terminated */
	u32 key_len;
	u8 key[DST_NL_KEY_MAX];
	bool read_only;
};

/* A parsed configuration request. Mirrors netlink.rs `NlRequest`. */
struct dst_nl_req {
	struct net *net;		/* referenced; the callee takes it over */
	struct netlink_ext_ack *extack;
	const char *path;		/* NUL-terminated, NULL if absent */
	u64 size;
	u32 addr_len;			/* 0 if absent, else 4 or 16 (checked in Rust) */
	u8 addr[16];
	u16 port;
	bool read_only;
	bool force;			/* DST_CMD_DEV_DEL: even if open */
	bool shared;			/* DST_CMD_EXPORT_ADD: any number of writers */
	bool has_index;
	u32 index;
	u32 max_io_pages;		/* 0 if absent */
	u32 queue_depth;		/* 0 if absent */
	u32 settings_mask;		/* bit i: settings[i] given */
	u32 settings[DST_NL_SETTINGS];	/* in dst_nl_setting_attrs order */
	u32 queues;			/* 0 if absent */
	u64 client_id;			/* 0 if absent */
	bool has_protection;
	u32 protection;			/* enum dst_protection */
	const char *alg;		/* NUL-terminated, NULL if absent */
	const char *name;		/* NUL-terminated, NULL if absent */
	const char *client_name;	/* NUL-terminated, NULL if absent */
	u32 key_len;			/* 0 if absent; zeroed after the request */
	u8 key[DST_NL_KEY_MAX];
	bool has_crypto_threads;
	u32 crypto_threads;
	u32 rekey_mib;			/* 0 if absent */
	u32 rekey_seconds;		/* 0 if absent */
	u32 allow_len;
	struct dst_nl_allow allow[DST_NL_ALLOW_MAX];
	u32 clients_len;
	struct dst_nl_client clients[DST_NL_CLIENTS_MAX];
};

/* One export or device, for DST_CMD_LIST. Mirrors netlink.rs `NlEntry`. */
struct dst_nl_entry {
	u32 kind;			/* enum dst_kind */
	u32 index;
	u32 state;			/* enum dst_state */
	u32 sessions;
	u32 queue_depth;
	u32 addr_len;
	u8 addr[16];
	u16 port;
	bool read_only;
	u64 size;
	u64 reconnects;
	u64 resends;
	u64 timeouts;
	u64 io_errors;
	u64 bytes_read;
	u64 bytes_written;
	u32 in_flight;
	u32 settings[DST_NL_SETTINGS];	/* devices only */
	char path[256];			/* NUL-terminated, truncated */
	u32 queues;
	u32 protection;			/* enum dst_protection */
	char alg[DST_NL_ALG_MAX];	/* NUL-terminated; empty: none */
	u64 integrity_errors;
	u64 refused;			/* exports only */
	u64 client_id;			/* devices only */
	u32 allow_len;			/* exports only */
	struct dst_nl_allow allow[DST_NL_ALLOW_MAX];
	char name[DST_NL_NAME_MAX];	/* the export's identity; empty: none yet */
	char client_name[DST_NL_NAME_MAX]; /* devices only */
	bool shared;			/* exports only */
	char writer_name[DST_NL_NAME_MAX]; /* exports: the write access's holder; empty: none */
	u32 writer_addr_len;		/* 0, 4 or 16 */
	u8 writer_addr[16];
	u16 writer_port;
};

/* C, called from Rust. */
void dst_shim_extack(struct netlink_ext_ack *extack, const char *msg);
int dst_genl_register(void);
void dst_genl_unregister(void);

struct socket;
struct net;
void dst_shim_sock_configure(struct socket *sock, bool memalloc);
void dst_shim_sock_release(struct socket *sock, bool memalloc);
void dst_shim_sock_timeouts(struct socket *sock, u32 snd_ms, u32 rcv_ms);
bool dst_shim_sock_has_data(struct socket *sock);
int dst_shim_sock_send_room(struct socket *sock);
int dst_shim_sock_incoming_cpu(struct socket *sock);
int dst_shim_current_run_on(int cpu);
bool dst_shim_current_placed(int cpu, int nice);
u32 dst_shim_wall_seconds(void);
void dst_shim_nodename(char *buf, size_t len);
void dst_shim_event(struct net *net, const struct dst_nl_event *ev);
void dst_shim_put_net(struct net *net);
int dst_shim_pernet_register(void);
void dst_shim_pernet_unregister(void);
int dst_shim_noreclaim_save(void);
void dst_shim_noreclaim_restore(int flags);

/* Rust, called from C. Return 0 or a negative errno. */
void dst_nl_status(struct dst_nl_status *out);
int dst_nl_export_add(struct dst_nl_req *req);
int dst_nl_export_del(struct dst_nl_req *req);
int dst_nl_export_release(struct dst_nl_req *req);
int dst_nl_dev_add(struct dst_nl_req *req, u32 *index);
int dst_nl_dev_del(struct dst_nl_req *req);
int dst_nl_dev_set(struct dst_nl_req *req);
int dst_nl_config(struct dst_nl_req *req);
int dst_nl_export_resize(struct dst_nl_req *req, u64 *size);
/* Fills entry number pos of those of net; returns 1 if filled, 0 past the end. */
int dst_nl_list_entry(struct net *net, unsigned long pos, struct dst_nl_entry *entry);
/* A namespace is going away: its exports and devices go with it. */
void dst_rs_net_pre_exit(struct net *net);

#endif /* DST_SHIM_H */
