// SPDX-License-Identifier: GPL-2.0
/*
 * shim.c - what the Rust half of dst.ko cannot reach: the generic netlink
 * family (a static C table with its strict policy) and the inline
 * genlmsg/nla helpers. Each handler turns attributes into plain values, calls
 * the Rust dst_nl_* function that decides, and turns the result into a reply.
 */
#include <keys/user-type.h>
#include <linux/blkdev.h>
#include <linux/key.h>
#include <linux/module.h>
#include <linux/sched/isolation.h>
#include <linux/sched/mm.h>
#include <linux/tcp.h>
#include <linux/timekeeping.h>
#include <linux/utsname.h>
#include <net/genetlink.h>
#include <net/net_namespace.h>
#include <net/sock.h>

#include "../include/uapi/linux/dst.h"
#include "shim.h"

/*
 * Strict policy: attributes the kernel only ever sends are NLA_REJECT, so a
 * request carrying them is refused with a message naming the attribute.
 */
/* Ranges of the timeouts, in ms (documented in Documentation/dstcfg.md). */
static const struct netlink_range_validation dst_range_timeout = { .min = 100, .max = 3600000 };
static const struct netlink_range_validation dst_range_delay = { .min = 10, .max = 600000 };
static const struct netlink_range_validation dst_range_interval = { .min = 0, .max = 3600000 };
/* Up to a day, or U32_MAX for "infinite": netlink.rs refuses what lies between. */
static const struct netlink_range_validation dst_range_loss = { .min = 100, .max = U32_MAX };
static const struct netlink_range_validation dst_range_rekey_mib = { .min = 1, .max = 1 << 20 };
static const struct netlink_range_validation dst_range_rekey_seconds = { .min = 1, .max = 86400 };

static const struct nla_policy dst_allow_policy[DST_ALLOW_A_MAX + 1] = {
	[DST_ALLOW_A_ADDR]	 = NLA_POLICY_MAX_LEN(16),
	[DST_ALLOW_A_PREFIX_LEN] = NLA_POLICY_MAX(NLA_U8, 128),
	[DST_ALLOW_A_READ_ONLY]	 = { .type = NLA_FLAG },
};

static const struct nla_policy dst_client_policy[DST_CLIENT_A_MAX + 1] = {
	[DST_CLIENT_A_NAME]	 = { .type = NLA_NUL_STRING, .len = DST_NL_NAME_MAX - 1 },
	[DST_CLIENT_A_KEY]	 = NLA_POLICY_RANGE(NLA_BINARY, 16, DST_NL_KEY_MAX),
	[DST_CLIENT_A_KEY_DESC]	 = { .type = NLA_NUL_STRING, .len = 255 },
	[DST_CLIENT_A_READ_ONLY] = { .type = NLA_FLAG },
};

static const struct nla_policy dst_genl_policy[DST_A_MAX + 1] = {
	[DST_A_PAD]		= { .type = NLA_REJECT },
	[DST_A_VERSION]		= { .type = NLA_REJECT },
	[DST_A_PROTO_VERSION]	= { .type = NLA_REJECT },
	[DST_A_ADDR]		= NLA_POLICY_MAX_LEN(16),
	[DST_A_PORT]		= NLA_POLICY_MIN(NLA_U16, 1),
	[DST_A_PATH]		= { .type = NLA_NUL_STRING, .len = 255 },
	[DST_A_READ_ONLY]	= { .type = NLA_FLAG },
	[DST_A_SIZE]		= { .type = NLA_U64 },
	[DST_A_MAX_IO_PAGES]	= NLA_POLICY_RANGE(NLA_U32, 1, 1024),
	[DST_A_INDEX]		= NLA_POLICY_MAX(NLA_U32, 1023),
	[DST_A_KIND]		= { .type = NLA_REJECT },
	[DST_A_DISK_NAME]	= { .type = NLA_REJECT },
	[DST_A_STATE]		= { .type = NLA_REJECT },
	[DST_A_SESSIONS]	= { .type = NLA_REJECT },
	[DST_A_QUEUE_DEPTH]	= NLA_POLICY_RANGE(NLA_U32, 1, 1024),
	[DST_A_REQ_TIMEOUT_MS]	= NLA_POLICY_FULL_RANGE(NLA_U32, &dst_range_timeout),
	[DST_A_MAX_RESENDS]	= NLA_POLICY_MAX(NLA_U32, 1000),
	[DST_A_RECONNECT_DELAY_MS] = NLA_POLICY_FULL_RANGE(NLA_U32, &dst_range_delay),
	[DST_A_PING_INTERVAL_MS] = NLA_POLICY_FULL_RANGE(NLA_U32, &dst_range_interval),
	[DST_A_PING_TIMEOUT_MS]	= NLA_POLICY_FULL_RANGE(NLA_U32, &dst_range_timeout),
	[DST_A_LOSS_TIMEOUT_MS]	= NLA_POLICY_FULL_RANGE(NLA_U32, &dst_range_loss),
	[DST_A_RECONNECTS]	= { .type = NLA_REJECT },
	[DST_A_RESENDS]		= { .type = NLA_REJECT },
	[DST_A_EVENT]		= { .type = NLA_REJECT },
	[DST_A_IN_FLIGHT]	= { .type = NLA_REJECT },
	[DST_A_TIMEOUTS]	= { .type = NLA_REJECT },
	[DST_A_IO_ERRORS]	= { .type = NLA_REJECT },
	[DST_A_BYTES_READ]	= { .type = NLA_REJECT },
	[DST_A_BYTES_WRITTEN]	= { .type = NLA_REJECT },
	[DST_A_QUEUES]		= NLA_POLICY_RANGE(NLA_U32, 1, 16),
	[DST_A_PROTECTION]	= NLA_POLICY_MAX(NLA_U32, DST_PROT_AEAD),
	[DST_A_ALG]		= { .type = NLA_NUL_STRING, .len = DST_NL_ALG_MAX - 1 },
	[DST_A_NAME]		= { .type = NLA_NUL_STRING, .len = DST_NL_NAME_MAX - 1 },
	[DST_A_CLIENT_NAME]	= { .type = NLA_NUL_STRING, .len = DST_NL_NAME_MAX - 1 },
	[DST_A_REKEY_MIB]	= NLA_POLICY_FULL_RANGE(NLA_U32, &dst_range_rekey_mib),
	[DST_A_REKEY_SECONDS]	= NLA_POLICY_FULL_RANGE(NLA_U32, &dst_range_rekey_seconds),
	[DST_A_KEY_DESC]	= { .type = NLA_NUL_STRING, .len = 255 },
	[DST_A_CLIENT]		= NLA_POLICY_NESTED(dst_client_policy),
	[DST_A_KEY]		= NLA_POLICY_RANGE(NLA_BINARY, 16, DST_NL_KEY_MAX),
	[DST_A_ALLOW]		= NLA_POLICY_NESTED(dst_allow_policy),
	[DST_A_CRYPTO_THREADS]	= NLA_POLICY_MAX(NLA_U32, 64),
	[DST_A_PEER_ADDR]	= { .type = NLA_REJECT },
	[DST_A_PEER_PORT]	= { .type = NLA_REJECT },
	[DST_A_MESSAGE]		= { .type = NLA_REJECT },
	[DST_A_INTEGRITY_ERRORS] = { .type = NLA_REJECT },
	[DST_A_REFUSED]		= { .type = NLA_REJECT },
	[DST_A_CLIENT_ID]	= NLA_POLICY_MIN(NLA_U64, 1),
	[DST_A_FORCE]		= { .type = NLA_FLAG },
	[DST_A_SHARED]		= { .type = NLA_FLAG },
	[DST_A_WRITER_NAME]	= { .type = NLA_REJECT },
	[DST_A_WRITER_ADDR]	= { .type = NLA_REJECT },
	[DST_A_WRITER_PORT]	= { .type = NLA_REJECT },
};

/* The per-device settings, in the order of dst_nl_req.settings[]. */
static const int dst_nl_setting_attrs[DST_NL_SETTINGS] = {
	DST_A_REQ_TIMEOUT_MS,
	DST_A_MAX_RESENDS,
	DST_A_RECONNECT_DELAY_MS,
	DST_A_PING_INTERVAL_MS,
	DST_A_PING_TIMEOUT_MS,
	DST_A_LOSS_TIMEOUT_MS,
};

static struct genl_family dst_genl_family;

static int dst_genl_status_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct dst_nl_status st = {};
	struct sk_buff *msg;
	void *hdr;

	dst_nl_status(&st);

	msg = genlmsg_new(NLMSG_DEFAULT_SIZE, GFP_KERNEL);
	if (!msg)
		return -ENOMEM;
	hdr = genlmsg_put_reply(msg, info, &dst_genl_family, 0, DST_CMD_STATUS);
	if (!hdr)
		goto too_big;
	if (nla_put_string(msg, DST_A_VERSION, st.version) ||
	    nla_put_u32(msg, DST_A_PROTO_VERSION, st.proto_version) ||
	    nla_put_u32(msg, DST_A_CRYPTO_THREADS, st.crypto_threads) ||
	    nla_put_u32(msg, DST_A_REKEY_MIB, st.rekey_mib) ||
	    nla_put_u32(msg, DST_A_REKEY_SECONDS, st.rekey_seconds))
		goto too_big;
	genlmsg_end(msg, hdr);
	return genlmsg_reply(msg, info);

too_big:
	nlmsg_free(msg);
	return -EMSGSIZE;
}

/*
 * NL_SET_ERR_MSG() takes only a C literal; the messages come from Rust, so
 * they are copied into the ACK's own buffer (at most 79 characters).
 */
void dst_shim_extack(struct netlink_ext_ack *extack, const char *msg)
{
	NL_SET_ERR_MSG_FMT(extack, "%s", msg);
}

/* The nested DST_A_ALLOW entries into req->allow (lengths checked in Rust). */
static int dst_genl_parse_allow(struct genl_info *info, struct dst_nl_req *req)
{
	struct nlattr *tb[DST_ALLOW_A_MAX + 1];
	struct nlattr *attr;
	int rem, err;

	nlmsg_for_each_attr_type(attr, DST_A_ALLOW, info->nlhdr,
				 GENL_HDRLEN + info->family->hdrsize, rem) {
		struct dst_nl_allow *e;

		if (req->allow_len == DST_NL_ALLOW_MAX) {
			NL_SET_ERR_MSG_ATTR(info->extack, attr,
					    "at most 32 allow-list entries");
			return -E2BIG;
		}
		err = nla_parse_nested(tb, DST_ALLOW_A_MAX, attr, dst_allow_policy,
				       info->extack);
		if (err)
			return err;
		if (!tb[DST_ALLOW_A_ADDR]) {
			NL_SET_ERR_MSG_ATTR(info->extack, attr,
					    "allow-list entry without an address");
			return -EINVAL;
		}
		e = &req->allow[req->allow_len++];
		e->addr_len = nla_len(tb[DST_ALLOW_A_ADDR]);
		nla_memcpy(e->addr, tb[DST_ALLOW_A_ADDR], sizeof(e->addr));
		e->prefix_len = tb[DST_ALLOW_A_PREFIX_LEN] ?
			nla_get_u8(tb[DST_ALLOW_A_PREFIX_LEN]) : e->addr_len * 8;
		e->read_only = nla_get_flag(tb[DST_ALLOW_A_READ_ONLY]);
	}
	return 0;
}

/*
 * The key whose description is in @attr, of type logon (readable only by
 * the kernel: the way to keep a key out of every process) or else user,
 * found in the caller's keyrings with its search permission, copied to
 * @out (DST_NL_KEY_MAX bytes) and its length to @out_len. As NVMe/TCP does
 * for its TLS keys.
 */
static int dst_genl_keyring_key(struct genl_info *info, const struct nlattr *attr,
				u8 *out, u32 *out_len)
{
	const char *desc = nla_data(attr);
	const struct user_key_payload *payload;
	struct key *key;
	int err = 0;

	key = request_key(&key_type_logon, desc, NULL);
	if (IS_ERR(key))
		key = request_key(&key_type_user, desc, NULL);
	if (IS_ERR(key)) {
		NL_SET_ERR_MSG_ATTR(info->extack, attr,
				    "no logon or user key of that description in your keyrings");
		return PTR_ERR(key) == -EACCES ? -EACCES : -ENOKEY;
	}
	down_read(&key->sem);
	payload = user_key_payload_locked(key);
	if (!payload || payload->datalen < 16 || payload->datalen > DST_NL_KEY_MAX) {
		NL_SET_ERR_MSG_ATTR(info->extack, attr,
				    "the keyring key must hold 16 to 64 bytes");
		err = -EINVAL;
	} else {
		memcpy(out, payload->data, payload->datalen);
		*out_len = payload->datalen;
	}
	up_read(&key->sem);
	key_put(key);
	return err;
}

/*
 * The nested DST_A_CLIENT entries into req->clients, each key copied out
 * and wiped from the message as DST_A_KEY is (names checked in Rust).
 */
static int dst_genl_parse_clients(struct genl_info *info, struct dst_nl_req *req)
{
	struct nlattr *tb[DST_CLIENT_A_MAX + 1];
	struct nlattr *attr;
	int rem, err;

	nlmsg_for_each_attr_type(attr, DST_A_CLIENT, info->nlhdr,
				 GENL_HDRLEN + info->family->hdrsize, rem) {
		struct dst_nl_client *c;

		if (req->clients_len == DST_NL_CLIENTS_MAX) {
			NL_SET_ERR_MSG_ATTR(info->extack, attr, "at most 16 clients with keys");
			return -E2BIG;
		}
		err = nla_parse_nested(tb, DST_CLIENT_A_MAX, attr, dst_client_policy,
				       info->extack);
		if (err)
			return err;
		if (!tb[DST_CLIENT_A_NAME] || !tb[DST_CLIENT_A_KEY] == !tb[DST_CLIENT_A_KEY_DESC]) {
			NL_SET_ERR_MSG_ATTR(info->extack, attr,
					    "a client needs a name and one key (or key description)");
			return -EINVAL;
		}
		c = &req->clients[req->clients_len++];
		nla_strscpy(c->name, tb[DST_CLIENT_A_NAME], sizeof(c->name));
		c->read_only = nla_get_flag(tb[DST_CLIENT_A_READ_ONLY]);
		if (tb[DST_CLIENT_A_KEY]) {
			c->key_len = nla_len(tb[DST_CLIENT_A_KEY]);
			nla_memcpy(c->key, tb[DST_CLIENT_A_KEY], sizeof(c->key));
			memzero_explicit(nla_data(tb[DST_CLIENT_A_KEY]),
					 nla_len(tb[DST_CLIENT_A_KEY]));
		} else {
			err = dst_genl_keyring_key(info, tb[DST_CLIENT_A_KEY_DESC], c->key,
						   &c->key_len);
			if (err)
				return err;
		}
	}
	return 0;
}

/*
 * Attributes into a plain struct; the namespace reference goes to Rust. The
 * key (from the message, wiped there, or from a keyring) is copied out so
 * that it lives in one place, which dst_genl_req_done() wipes. Fails only on
 * a bad allow-list or key, before the namespace reference is taken.
 */
static int dst_genl_parse(struct genl_info *info, struct dst_nl_req *req)
{
	struct nlattr **a = info->attrs;
	int i, err;

	memset(req, 0, sizeof(*req));
	err = dst_genl_parse_allow(info, req);
	if (err)
		return err;
	if (a[DST_A_KEY] && a[DST_A_KEY_DESC]) {
		NL_SET_ERR_MSG_ATTR(info->extack, a[DST_A_KEY_DESC],
				    "give a key or a keyring key's description, not both");
		return -EINVAL;
	}
	if (a[DST_A_KEY]) {
		req->key_len = nla_len(a[DST_A_KEY]);
		nla_memcpy(req->key, a[DST_A_KEY], sizeof(req->key));
		memzero_explicit(nla_data(a[DST_A_KEY]), nla_len(a[DST_A_KEY]));
	}
	if (a[DST_A_KEY_DESC]) {
		err = dst_genl_keyring_key(info, a[DST_A_KEY_DESC], req->key, &req->key_len);
		if (err)
			return err;
	}
	err = dst_genl_parse_clients(info, req);
	if (err)
		return err;
	req->queues = a[DST_A_QUEUES] ? nla_get_u32(a[DST_A_QUEUES]) : 0;
	req->client_id = a[DST_A_CLIENT_ID] ? nla_get_u64(a[DST_A_CLIENT_ID]) : 0;
	req->has_protection = !!a[DST_A_PROTECTION];
	req->protection = a[DST_A_PROTECTION] ? nla_get_u32(a[DST_A_PROTECTION]) : 0;
	req->alg = a[DST_A_ALG] ? nla_data(a[DST_A_ALG]) : NULL;
	req->name = a[DST_A_NAME] ? nla_data(a[DST_A_NAME]) : NULL;
	req->client_name = a[DST_A_CLIENT_NAME] ? nla_data(a[DST_A_CLIENT_NAME]) : NULL;
	req->has_crypto_threads = !!a[DST_A_CRYPTO_THREADS];
	req->crypto_threads = a[DST_A_CRYPTO_THREADS] ?
		nla_get_u32(a[DST_A_CRYPTO_THREADS]) : 0;
	req->rekey_mib = a[DST_A_REKEY_MIB] ? nla_get_u32(a[DST_A_REKEY_MIB]) : 0;
	req->rekey_seconds = a[DST_A_REKEY_SECONDS] ? nla_get_u32(a[DST_A_REKEY_SECONDS]) : 0;
	req->net = get_net(genl_info_net(info));
	req->extack = info->extack;
	if (a[DST_A_ADDR]) {
		req->addr_len = nla_len(a[DST_A_ADDR]);
		nla_memcpy(req->addr, a[DST_A_ADDR], sizeof(req->addr));
	}
	req->port = a[DST_A_PORT] ? nla_get_u16(a[DST_A_PORT]) : DST_DEFAULT_PORT;
	req->path = a[DST_A_PATH] ? nla_data(a[DST_A_PATH]) : NULL;
	req->read_only = nla_get_flag(a[DST_A_READ_ONLY]);
	req->force = nla_get_flag(a[DST_A_FORCE]);
	req->shared = nla_get_flag(a[DST_A_SHARED]);
	req->size = a[DST_A_SIZE] ? nla_get_u64(a[DST_A_SIZE]) : 0;
	req->has_index = !!a[DST_A_INDEX];
	req->index = a[DST_A_INDEX] ? nla_get_u32(a[DST_A_INDEX]) : 0;
	req->max_io_pages = a[DST_A_MAX_IO_PAGES] ? nla_get_u32(a[DST_A_MAX_IO_PAGES]) : 0;
	req->queue_depth = a[DST_A_QUEUE_DEPTH] ? nla_get_u32(a[DST_A_QUEUE_DEPTH]) : 0;
	for (i = 0; i < DST_NL_SETTINGS; i++) {
		struct nlattr *attr = a[dst_nl_setting_attrs[i]];

		if (attr) {
			req->settings_mask |= 1U << i;
			req->settings[i] = nla_get_u32(attr);
		}
	}
	return 0;
}

/*
 * A parsed request on the heap (it holds the allow-list and key, too big for
 * the stack); NULL with *err set on failure. Free with dst_genl_req_done().
 */
static struct dst_nl_req *dst_genl_req(struct genl_info *info, int *err)
{
	struct dst_nl_req *req = kzalloc(sizeof(*req), GFP_KERNEL);

	if (!req) {
		*err = -ENOMEM;
		return NULL;
	}
	*err = dst_genl_parse(info, req);
	if (*err) {
		kfree_sensitive(req);
		return NULL;
	}
	return req;
}

/* Frees a request, wiping the key it may hold. */
static void dst_genl_req_done(struct dst_nl_req *req)
{
	kfree_sensitive(req);
}

/* Parses the request and hands it to the Rust handler `fn`. */
static int dst_genl_call(struct genl_info *info, int (*fn)(struct dst_nl_req *))
{
	struct dst_nl_req *req;
	int err;

	req = dst_genl_req(info, &err);
	if (!req)
		return err;
	err = fn(req);
	dst_genl_req_done(req);
	return err;
}

static int dst_genl_export_add_doit(struct sk_buff *skb, struct genl_info *info)
{
	if (GENL_REQ_ATTR_CHECK(info, DST_A_ADDR) || GENL_REQ_ATTR_CHECK(info, DST_A_PATH))
		return -EINVAL;
	return dst_genl_call(info, dst_nl_export_add);
}

static int dst_genl_export_del_doit(struct sk_buff *skb, struct genl_info *info)
{
	if (GENL_REQ_ATTR_CHECK(info, DST_A_ADDR))
		return -EINVAL;
	return dst_genl_call(info, dst_nl_export_del);
}

static int dst_genl_export_release_doit(struct sk_buff *skb, struct genl_info *info)
{
	if (GENL_REQ_ATTR_CHECK(info, DST_A_ADDR))
		return -EINVAL;
	return dst_genl_call(info, dst_nl_export_release);
}

static int dst_genl_dev_add_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct dst_nl_req *req;
	struct sk_buff *msg;
	char name[DISK_NAME_LEN];
	u32 index;
	void *hdr;
	int err;

	if (GENL_REQ_ATTR_CHECK(info, DST_A_ADDR))
		return -EINVAL;
	msg = genlmsg_new(NLMSG_DEFAULT_SIZE, GFP_KERNEL);
	if (!msg)
		return -ENOMEM;
	req = dst_genl_req(info, &err);
	if (req) {
		err = dst_nl_dev_add(req, &index);
		dst_genl_req_done(req);
	}
	if (err) {
		nlmsg_free(msg);
		return err;
	}
	/* The device exists now; the reply only tells its name. */
	snprintf(name, sizeof(name), "dst%u", index);
	hdr = genlmsg_put_reply(msg, info, &dst_genl_family, 0, DST_CMD_DEV_ADD);
	if (!hdr || nla_put_u32(msg, DST_A_INDEX, index) ||
	    nla_put_string(msg, DST_A_DISK_NAME, name)) {
		nlmsg_free(msg);
		return -EMSGSIZE;
	}
	genlmsg_end(msg, hdr);
	return genlmsg_reply(msg, info);
}

static int dst_genl_export_resize_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct dst_nl_req *req;
	struct sk_buff *msg;
	u64 size;
	void *hdr;
	int err;

	if (GENL_REQ_ATTR_CHECK(info, DST_A_ADDR))
		return -EINVAL;
	msg = genlmsg_new(NLMSG_DEFAULT_SIZE, GFP_KERNEL);
	if (!msg)
		return -ENOMEM;
	req = dst_genl_req(info, &err);
	if (req) {
		err = dst_nl_export_resize(req, &size);
		dst_genl_req_done(req);
	}
	if (err) {
		nlmsg_free(msg);
		return err;
	}
	/* The export has its new size; the reply only tells it. */
	hdr = genlmsg_put_reply(msg, info, &dst_genl_family, 0, DST_CMD_EXPORT_RESIZE);
	if (!hdr || nla_put_u64_64bit(msg, DST_A_SIZE, size, DST_A_PAD)) {
		nlmsg_free(msg);
		return -EMSGSIZE;
	}
	genlmsg_end(msg, hdr);
	return genlmsg_reply(msg, info);
}

static int dst_genl_config_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr **a = info->attrs;

	if (!a[DST_A_CRYPTO_THREADS] && !a[DST_A_REKEY_MIB] && !a[DST_A_REKEY_SECONDS]) {
		NL_SET_ERR_MSG(info->extack,
			       "nothing to set: give DST_A_CRYPTO_THREADS or DST_A_REKEY_*");
		return -EINVAL;
	}
	return dst_genl_call(info, dst_nl_config);
}

static int dst_genl_dev_del_doit(struct sk_buff *skb, struct genl_info *info)
{
	if (GENL_REQ_ATTR_CHECK(info, DST_A_INDEX))
		return -EINVAL;
	return dst_genl_call(info, dst_nl_dev_del);
}

static int dst_genl_dev_set_doit(struct sk_buff *skb, struct genl_info *info)
{
	if (GENL_REQ_ATTR_CHECK(info, DST_A_INDEX))
		return -EINVAL;
	return dst_genl_call(info, dst_nl_dev_set);
}

/* An export's allow-list, one nested DST_A_ALLOW per entry. */
static int dst_genl_put_allow(struct sk_buff *skb, const struct dst_nl_entry *e)
{
	u32 i;

	for (i = 0; i < e->allow_len && i < DST_NL_ALLOW_MAX; i++) {
		const struct dst_nl_allow *a = &e->allow[i];
		struct nlattr *nest = nla_nest_start(skb, DST_A_ALLOW);

		if (!nest || nla_put(skb, DST_ALLOW_A_ADDR, a->addr_len, a->addr) ||
		    nla_put_u8(skb, DST_ALLOW_A_PREFIX_LEN, a->prefix_len) ||
		    (a->read_only && nla_put_flag(skb, DST_ALLOW_A_READ_ONLY)))
			return -EMSGSIZE;
		nla_nest_end(skb, nest);
	}
	return 0;
}

static int dst_genl_put_entry(struct sk_buff *skb, struct netlink_callback *cb,
			      const struct dst_nl_entry *e)
{
	void *hdr = genlmsg_put(skb, NETLINK_CB(cb->skb).portid, cb->nlh->nlmsg_seq,
				&dst_genl_family, NLM_F_MULTI, DST_CMD_LIST);

	if (!hdr)
		return -EMSGSIZE;
	if (nla_put_u32(skb, DST_A_KIND, e->kind) ||
	    nla_put_u32(skb, DST_A_STATE, e->state) ||
	    nla_put(skb, DST_A_ADDR, e->addr_len, e->addr) ||
	    nla_put_u16(skb, DST_A_PORT, e->port) ||
	    nla_put_u64_64bit(skb, DST_A_SIZE, e->size, DST_A_PAD) ||
	    (e->read_only && nla_put_flag(skb, DST_A_READ_ONLY)) ||
	    nla_put_u32(skb, DST_A_PROTECTION, e->protection) ||
	    (e->alg[0] && nla_put_string(skb, DST_A_ALG, e->alg)) ||
	    (e->name[0] && nla_put_string(skb, DST_A_NAME, e->name)) ||
	    nla_put_u64_64bit(skb, DST_A_INTEGRITY_ERRORS, e->integrity_errors, DST_A_PAD))
		goto cancel;
	if (e->kind == DST_KIND_EXPORT &&
	    ((e->shared && nla_put_flag(skb, DST_A_SHARED)) ||
	     (e->writer_name[0] &&
	      (nla_put_string(skb, DST_A_WRITER_NAME, e->writer_name) ||
	       (e->writer_addr_len &&
		(nla_put(skb, DST_A_WRITER_ADDR, e->writer_addr_len, e->writer_addr) ||
		 nla_put_u16(skb, DST_A_WRITER_PORT, e->writer_port))))) ||
	     nla_put_u32(skb, DST_A_INDEX, e->index) ||
	     nla_put_string(skb, DST_A_PATH, e->path) ||
	     nla_put_u32(skb, DST_A_SESSIONS, e->sessions) ||
	     nla_put_u64_64bit(skb, DST_A_REFUSED, e->refused, DST_A_PAD) ||
	     dst_genl_put_allow(skb, e)))
		goto cancel;
	if (e->kind == DST_KIND_DEVICE) {
		char name[DISK_NAME_LEN];
		int i;

		snprintf(name, sizeof(name), "dst%u", e->index);
		if (nla_put_u32(skb, DST_A_INDEX, e->index) ||
		    nla_put_string(skb, DST_A_DISK_NAME, name) ||
		    nla_put_u32(skb, DST_A_QUEUE_DEPTH, e->queue_depth) ||
		    nla_put_u32(skb, DST_A_QUEUES, e->queues) ||
		    nla_put_u64_64bit(skb, DST_A_CLIENT_ID, e->client_id, DST_A_PAD) ||
		    nla_put_string(skb, DST_A_CLIENT_NAME, e->client_name) ||
		    nla_put_u64_64bit(skb, DST_A_RECONNECTS, e->reconnects, DST_A_PAD) ||
		    nla_put_u64_64bit(skb, DST_A_RESENDS, e->resends, DST_A_PAD) ||
		    nla_put_u32(skb, DST_A_IN_FLIGHT, e->in_flight) ||
		    nla_put_u64_64bit(skb, DST_A_TIMEOUTS, e->timeouts, DST_A_PAD) ||
		    nla_put_u64_64bit(skb, DST_A_IO_ERRORS, e->io_errors, DST_A_PAD) ||
		    nla_put_u64_64bit(skb, DST_A_BYTES_READ, e->bytes_read, DST_A_PAD) ||
		    nla_put_u64_64bit(skb, DST_A_BYTES_WRITTEN, e->bytes_written, DST_A_PAD))
			goto cancel;
		for (i = 0; i < DST_NL_SETTINGS; i++)
			if (nla_put_u32(skb, dst_nl_setting_attrs[i], e->settings[i]))
				goto cancel;
	}
	genlmsg_end(skb, hdr);
	return 0;
cancel:
	genlmsg_cancel(skb, hdr);
	return -EMSGSIZE;
}

static int dst_genl_list_dumpit(struct sk_buff *skb, struct netlink_callback *cb)
{
	/* With its allow-list an entry is too big for the stack. */
	struct dst_nl_entry *e = kmalloc(sizeof(*e), GFP_KERNEL);

	if (!e)
		return -ENOMEM;
	/* cb->args[0]: the next entry to dump, across calls. */
	for (;; cb->args[0]++) {
		memset(e, 0, sizeof(*e));
		if (!dst_nl_list_entry(sock_net(cb->skb->sk), cb->args[0], e))
			break;
		if (dst_genl_put_entry(skb, cb, e))
			break;
	}
	kfree(e);
	return skb->len;
}

/* internal_flags of an op: the caller needs CAP_SYS_ADMIN too. */
#define DST_GENL_SYS_ADMIN	BIT(0)

/*
 * Runs before every doit, after GENL_ADMIN_PERM (CAP_NET_ADMIN) was checked.
 * An export opens a block device read-write and a device creates one: raw
 * disk access, which (as for nbd) CAP_SYS_ADMIN guards, in the initial user
 * namespace, of both the socket's opener and the caller.
 */
static int dst_genl_pre_doit(const struct genl_split_ops *ops, struct sk_buff *skb,
			     struct genl_info *info)
{
	if ((ops->internal_flags & DST_GENL_SYS_ADMIN) &&
	    !netlink_capable(skb, CAP_SYS_ADMIN)) {
		NL_SET_ERR_MSG(info->extack,
			       "needs CAP_SYS_ADMIN: exports and devices give block device access");
		return -EPERM;
	}
	return 0;
}

/*
 * GENL_ADMIN_PERM: every command needs CAP_NET_ADMIN; DST_GENL_SYS_ADMIN:
 * adding and removing exports and devices, and growing an export (more of
 * its device reachable), needs CAP_SYS_ADMIN as well (see
 * dst_genl_pre_doit). validate = 0 with resv_start_op above every command
 * means strict validation throughout.
 */
static const struct genl_small_ops dst_genl_ops[] = {
	{
		.cmd	= DST_CMD_STATUS,
		.flags	= GENL_ADMIN_PERM,
		.doit	= dst_genl_status_doit,
	},
	{
		.cmd		= DST_CMD_EXPORT_ADD,
		.flags		= GENL_ADMIN_PERM,
		.internal_flags	= DST_GENL_SYS_ADMIN,
		.doit		= dst_genl_export_add_doit,
	},
	{
		.cmd		= DST_CMD_EXPORT_DEL,
		.flags		= GENL_ADMIN_PERM,
		.internal_flags	= DST_GENL_SYS_ADMIN,
		.doit		= dst_genl_export_del_doit,
	},
	{
		.cmd		= DST_CMD_DEV_ADD,
		.flags		= GENL_ADMIN_PERM,
		.internal_flags	= DST_GENL_SYS_ADMIN,
		.doit		= dst_genl_dev_add_doit,
	},
	{
		.cmd		= DST_CMD_DEV_DEL,
		.flags		= GENL_ADMIN_PERM,
		.internal_flags	= DST_GENL_SYS_ADMIN,
		.doit		= dst_genl_dev_del_doit,
	},
	{
		.cmd	= DST_CMD_LIST,
		.flags	= GENL_ADMIN_PERM,
		.dumpit	= dst_genl_list_dumpit,
	},
	{
		.cmd	= DST_CMD_DEV_SET,
		.flags	= GENL_ADMIN_PERM,
		.doit	= dst_genl_dev_set_doit,
	},
	{
		.cmd	= DST_CMD_CONFIG,
		.flags	= GENL_ADMIN_PERM,
		.doit	= dst_genl_config_doit,
	},
	{
		.cmd		= DST_CMD_EXPORT_RELEASE,
		.flags		= GENL_ADMIN_PERM,
		.internal_flags	= DST_GENL_SYS_ADMIN,
		.doit		= dst_genl_export_release_doit,
	},
	{
		.cmd		= DST_CMD_EXPORT_RESIZE,
		.flags		= GENL_ADMIN_PERM,
		.internal_flags	= DST_GENL_SYS_ADMIN,
		.doit		= dst_genl_export_resize_doit,
	},
};

static const struct genl_multicast_group dst_genl_mcgrps[] = {
	{ .name = DST_GENL_MCGRP_EVENTS, .flags = GENL_MCAST_CAP_NET_ADMIN },
};

static struct genl_family dst_genl_family __ro_after_init = {
	.name		= DST_GENL_NAME,
	.version	= DST_GENL_VERSION,
	.maxattr	= DST_A_MAX,
	.policy		= dst_genl_policy,
	.netnsok	= true,
	/* Handlers connect and drain IO: they must not hold genl_mutex. */
	.parallel_ops	= true,
	.module		= THIS_MODULE,
	.pre_doit	= dst_genl_pre_doit,
	.small_ops	= dst_genl_ops,
	.n_small_ops	= ARRAY_SIZE(dst_genl_ops),
	.mcgrps		= dst_genl_mcgrps,
	.n_mcgrps	= ARRAY_SIZE(dst_genl_mcgrps),
	.resv_start_op	= DST_CMD_MAX + 1,
};

int dst_genl_register(void)
{
	return genl_register_family(&dst_genl_family);
}

void dst_genl_unregister(void)
{
	genl_unregister_family(&dst_genl_family);
}

MODULE_ALIAS_GENL_FAMILY(DST_GENL_NAME);

/*
 * Multicast a DST_CMD_EVENT to the "events" group of the device's namespace.
 * Best effort: runs on the IO path (NOIO), and a lost event only costs a
 * listener a notification; `dstcfg -a list` always tells the state.
 */
void dst_shim_event(struct net *net, const struct dst_nl_event *ev)
{
	struct sk_buff *skb = genlmsg_new(NLMSG_GOODSIZE, GFP_NOIO);
	void *hdr;

	if (!skb)
		return;
	hdr = genlmsg_put(skb, 0, 0, &dst_genl_family, 0, DST_CMD_EVENT);
	if (!hdr || nla_put_u32(skb, DST_A_KIND, ev->kind) ||
	    nla_put_u32(skb, DST_A_INDEX, ev->index) ||
	    nla_put_u32(skb, DST_A_EVENT, ev->event) ||
	    (ev->peer_len && (nla_put(skb, DST_A_PEER_ADDR, ev->peer_len, ev->peer) ||
			      nla_put_u16(skb, DST_A_PEER_PORT, ev->peer_port))) ||
	    (ev->message && nla_put_string(skb, DST_A_MESSAGE, ev->message))) {
		nlmsg_free(skb);
		return;
	}
	genlmsg_end(skb, hdr);
	genlmsg_multicast_netns(&dst_genl_family, net, skb, 0, 0, GFP_NOIO);
}

/*
 * Socket policy in one place. Block IO must not wait on memory reclaim that
 * may itself need this socket: allocations are GFP_NOIO, and a local node's
 * socket may use the emergency reserves (the nbd/swap-over-network idiom).
 * Requests go out at once (no Nagle); dead peers are found by keepalive until
 * the transaction layer's own pings take over.
 */
void dst_shim_sock_configure(struct socket *sock, bool memalloc)
{
	struct sock *sk = sock->sk;

	sk->sk_allocation = GFP_NOIO;
	/* Socket memory from the task's page fragment could be reclaimable
	 * page cache of the very device being written back (nbd, nvme-tcp). */
	sk->sk_use_task_frag = false;
	if (memalloc)
		sk_set_memalloc(sk);
	tcp_sock_set_nodelay(sk);
	sock_set_keepalive(sk);
	/* Released sockets are reset, not drained: no byte of an abandoned
	 * connection may still reach the peer after its requests failed. */
	sock_no_linger(sk);
}

/* Releases a socket; undoes sk_set_memalloc (it counts in a static key). */
void dst_shim_sock_release(struct socket *sock, bool memalloc)
{
	if (memalloc) {
		lock_sock(sock->sk);
		sk_clear_memalloc(sock->sk);
		release_sock(sock->sk);
	}
	sock_release(sock);
}

/* Send and receive timeouts in ms; 0 means wait forever. */
void dst_shim_sock_timeouts(struct socket *sock, u32 snd_ms, u32 rcv_ms)
{
	struct sock *sk = sock->sk;

	lock_sock(sk);
	WRITE_ONCE(sk->sk_sndtimeo, snd_ms ? msecs_to_jiffies(snd_ms) : MAX_SCHEDULE_TIMEOUT);
	WRITE_ONCE(sk->sk_rcvtimeo, rcv_ms ? msecs_to_jiffies(rcv_ms) : MAX_SCHEDULE_TIMEOUT);
	release_sock(sk);
}

/* Whether bytes have arrived that nobody has read yet. */
bool dst_shim_sock_has_data(struct socket *sock)
{
	return !skb_queue_empty_lockless(&sock->sk->sk_receive_queue);
}

/* The CPU that handled the socket's last incoming segment, or -1. */
int dst_shim_sock_incoming_cpu(struct socket *sock)
{
	return READ_ONCE(sock->sk->sk_incoming_cpu);
}

/*
 * Lets the calling kernel thread run only on @cpu, or with @cpu < 0 on any
 * CPU kernel threads may use. An offline @cpu is refused.
 */
int dst_shim_current_run_on(int cpu)
{
	if (cpu < 0)
		return set_cpus_allowed_ptr(current, housekeeping_cpumask(HK_TYPE_KTHREAD));
	if (cpu >= nr_cpu_ids || !cpu_online(cpu))
		return -EINVAL;
	return set_cpus_allowed_ptr(current, cpumask_of(cpu));
}

/*
 * Whether the calling kernel thread is still where dst_shim_current_run_on(@cpu)
 * put it, at nice value @nice: false once anything else (sched_setaffinity,
 * setpriority, CPU hotplug) has changed either.
 */
bool dst_shim_current_placed(int cpu, int nice)
{
	const struct cpumask *mask = cpu < 0 ? housekeeping_cpumask(HK_TYPE_KTHREAD) :
					       cpumask_of(cpu);

	return task_nice(current) == nice && cpumask_equal(current->cpus_ptr, mask);
}

/*
 * Bytes a send can queue now without waiting for memory (a snapshot; only
 * acknowledgements make it grow while the caller is the only sender).
 */
int dst_shim_sock_send_room(struct socket *sock)
{
	struct sock *sk = sock->sk;

	if (!sk_stream_memory_free(sk))
		return 0;
	return max(sk_stream_wspace(sk), 0);
}

void dst_shim_put_net(struct net *net)
{
	put_net(net);
}

/*
 * Exports and devices hold no reference on their namespace (see netns.rs):
 * before one is dismantled, while its network still works, they are taken
 * down.
 */
static void __net_exit dst_net_pre_exit(struct net *net)
{
	dst_rs_net_pre_exit(net);
}

static struct pernet_operations dst_net_ops = {
	.pre_exit = dst_net_pre_exit,
};

int dst_shim_pernet_register(void)
{
	return register_pernet_subsys(&dst_net_ops);
}

void dst_shim_pernet_unregister(void)
{
	unregister_pernet_subsys(&dst_net_ops);
}

int dst_shim_noreclaim_save(void)
{
	return memalloc_noreclaim_save();
}

void dst_shim_noreclaim_restore(int flags)
{
	memalloc_noreclaim_restore(flags);
}

/* Seconds of the wall clock (the fencing epoch's source). */
u32 dst_shim_wall_seconds(void)
{
	return (u32)ktime_get_real_seconds();
}

/*
 * The caller's host name (its UTS namespace's), NUL-terminated in @buf. As
 * ceph and nfsd do, without uts_sem (not exported): a concurrent sethostname
 * can at worst give a mix of the old and new name, which is still a name.
 */
void dst_shim_nodename(char *buf, size_t len)
{
	strscpy(buf, utsname()->nodename, len);
}
