/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * dst.h - generic netlink interface of DST, the network block device.
 *
 * The family is named "dst" (DST_GENL_NAME). Every command needs
 * CAP_NET_ADMIN; DST_CMD_EXPORT_ADD, DST_CMD_EXPORT_DEL, DST_CMD_DEV_ADD,
 * DST_CMD_DEV_DEL and DST_CMD_EXPORT_RESIZE, which open, create or expose
 * block devices, need CAP_SYS_ADMIN as
 * well (EPERM, with an extended-ack message naming it). Both in the initial
 * user namespace (netlink_capable). Attributes are validated by
 * a strict policy: unknown attributes, wrong types and out-of-range values are
 * refused with an extended-ack message naming the attribute.
 *
 * tools/dstcfg/src/uapi.rs mirrors these numbers; a host test compares both.
 */
#ifndef _UAPI_LINUX_DST_H
#define _UAPI_LINUX_DST_H

#define DST_GENL_NAME		"dst"
#define DST_GENL_VERSION	1
#define DST_GENL_MCGRP_EVENTS	"events"	/* DST_CMD_EVENT notifications */

/* DST_A_LOSS_TIMEOUT_MS: a loss timeout that never expires. */
#define DST_LOSS_TIMEOUT_INFINITE	0xFFFFFFFF

/* Commands. Append only: numbers are ABI. */
enum dst_cmd {
	DST_CMD_UNSPEC,
	DST_CMD_STATUS,		/* module status: replies DST_A_VERSION... */
	DST_CMD_EXPORT_ADD,	/* serve DST_A_PATH on DST_A_ADDR/PORT */
	DST_CMD_EXPORT_DEL,	/* stop the export listening on DST_A_ADDR/PORT */
	DST_CMD_DEV_ADD,	/* connect to DST_A_ADDR/PORT, create /dev/dstN */
	DST_CMD_DEV_DEL,	/* delete /dev/dst<DST_A_INDEX> */
	DST_CMD_LIST,		/* dump: one message per export and device */
	DST_CMD_DEV_SET,	/* change timeouts of /dev/dst<DST_A_INDEX> live */
	DST_CMD_EVENT,		/* multicast: DST_A_EVENT happened to DST_A_INDEX */
	DST_CMD_CONFIG,		/* module-wide settings: DST_A_CRYPTO_THREADS, */
				/* DST_A_REKEY_MIB, DST_A_REKEY_SECONDS */
	DST_CMD_EXPORT_RELEASE,	/* take the write access of the export on */
				/* DST_A_ADDR/PORT from its holder */
	DST_CMD_EXPORT_RESIZE,	/* grow the export on DST_A_ADDR/PORT to DST_A_SIZE */
				/* (its new cap), or without it to what its */
				/* device holds now; never shrinks; replies */
				/* DST_A_SIZE, the size exported */
	__DST_CMD_MAX,
};
#define DST_CMD_MAX (__DST_CMD_MAX - 1)

/* Attributes. Append only: numbers are ABI. */
enum dst_attr {
	DST_A_UNSPEC,
	DST_A_PAD,		/* alignment padding for 64-bit values */
	DST_A_VERSION,		/* string: module version */
	DST_A_PROTO_VERSION,	/* u32: wire protocol version spoken */
	DST_A_ADDR,		/* binary: IPv4 (4 bytes) or IPv6 (16 bytes) address */
	DST_A_PORT,		/* u16: TCP port (host order) */
	DST_A_PATH,		/* string: backing block device of an export */
	DST_A_READ_ONLY,	/* flag: EXPORT_ADD: serve read-only; DEV_ADD: ask for */
				/*      reads only (never the writer); in replies */
	DST_A_SIZE,		/* u64: export: size cap in bytes; replies: size */
	DST_A_MAX_IO_PAGES,	/* u32: largest request, in 4 KiB pages (1..1024) */
	DST_A_INDEX,		/* u32: device index N of /dev/dstN */
	DST_A_KIND,		/* u32: enum dst_kind, in DST_CMD_LIST replies */
	DST_A_DISK_NAME,	/* string: "dstN", in replies */
	DST_A_STATE,		/* u32: enum dst_state, in replies */
	DST_A_SESSIONS,		/* u32: export: connected local nodes */
	DST_A_QUEUE_DEPTH,	/* u32: requests in flight per queue */
	DST_A_REQ_TIMEOUT_MS,	/* u32: unanswered this long: reconnect, resend */
	DST_A_MAX_RESENDS,	/* u32: resends of one request before it fails */
	DST_A_RECONNECT_DELAY_MS, /* u32: pause between reconnect attempts */
	DST_A_PING_INTERVAL_MS,	/* u32: ping an idle connection this often; 0 = never */
	DST_A_PING_TIMEOUT_MS,	/* u32: no answer to a ping this long: reconnect */
	DST_A_LOSS_TIMEOUT_MS,	/* u32: disconnected this long: IO fails until reconnected; */
				/* at most 86400000, or 4294967295 = infinite (never) */
	DST_A_RECONNECTS,	/* u64: counter, in replies */
	DST_A_RESENDS,		/* u64: counter, in replies */
	DST_A_EVENT,		/* u32: enum dst_event, in DST_CMD_EVENT */
	DST_A_IN_FLIGHT,	/* u32: requests queued or sent, in replies */
	DST_A_TIMEOUTS,		/* u64: counter: request or ping timeouts */
	DST_A_IO_ERRORS,	/* u64: counter: requests ended with an error */
	DST_A_BYTES_READ,	/* u64: counter */
	DST_A_BYTES_WRITTEN,	/* u64: counter */
	DST_A_QUEUES,		/* u32: device: connections, one per hardware queue (1..16) */
	DST_A_PROTECTION,	/* u32: enum dst_protection; must match on both sides */
	DST_A_ALG,		/* string: kernel crypto name for hmac/aead (at most 63 bytes) */
	DST_A_KEY,		/* binary: pre-shared key, 16..64 bytes; never sent back */
	DST_A_ALLOW,		/* nested, repeatable: export allow-list entry (DST_ALLOW_A_*) */
	DST_A_CRYPTO_THREADS,	/* u32: workers of the crypto pool (0 = inline, 1..64) */
	DST_A_PEER_ADDR,	/* binary: events: address of an export's client */
	DST_A_PEER_PORT,	/* u16: events: port of an export's client */
	DST_A_MESSAGE,		/* string: events: why a client was refused */
	DST_A_INTEGRITY_ERRORS,	/* u64: counter: frames whose checksum/tag or seq failed */
	DST_A_REFUSED,		/* u64: export: counter of refused clients */
	DST_A_CLIENT_ID,	/* u64: device: identity the export fences by (not 0); */
				/*      stable across re-creation and reboots if set */
	DST_A_FORCE,		/* flag: DST_CMD_DEV_DEL: delete even if the device is */
				/*      open (else EBUSY); its unwritten data is lost */
	DST_A_NAME,		/* string: an export's identity (EXPORT_ADD: default */
				/*      "<host name>:<device name>"); DEV_ADD: the */
				/*      identity of the export to accept (default: the */
				/*      first one reached, then pinned); in replies */
	DST_A_CLIENT_NAME,	/* string: DEV_ADD: this node's identity in the */
				/*      handshake (default: the host name); in replies */
	DST_A_REKEY_MIB,	/* u32: CONFIG, STATUS: a connection's key is replaced */
				/*      after protecting this many MiB (1..1048576; */
				/*      default 65536, 64 GiB) */
	DST_A_REKEY_SECONDS,	/* u32: CONFIG, STATUS: ... or after this long */
				/*      (1..86400; default 3600) */
	DST_A_KEY_DESC,		/* string: instead of DST_A_KEY: the description of */
				/*      a "logon" (or "user") key in the caller's */
				/*      keyrings whose 16..64 byte payload is the key */
	DST_A_CLIENT,		/* nested, repeatable: EXPORT_ADD: a client identity */
				/*      with a key of its own (DST_CLIENT_A_*) */
	DST_A_SHARED,		/* flag: EXPORT_ADD, replies: any number of local */
				/*      nodes may write (cluster file systems only); */
				/*      else one at a time */
	DST_A_WRITER_NAME,	/* string: export replies: identity holding the */
				/*      write access */
	DST_A_WRITER_ADDR,	/* binary: export replies: its address (4 or 16 bytes) */
	DST_A_WRITER_PORT,	/* u16: export replies: its port */
	__DST_A_MAX,
};
#define DST_A_MAX (__DST_A_MAX - 1)

/* Attributes nested in one DST_A_ALLOW entry. */
enum dst_allow_attr {
	DST_ALLOW_A_UNSPEC,
	DST_ALLOW_A_ADDR,	/* binary: IPv4 (4 bytes) or IPv6 (16 bytes) prefix */
	DST_ALLOW_A_PREFIX_LEN,	/* u8: 0..32 (IPv4) or 0..128 (IPv6) */
	DST_ALLOW_A_READ_ONLY,	/* flag: clients in this prefix may only read */
	__DST_ALLOW_A_MAX,
};
#define DST_ALLOW_A_MAX (__DST_ALLOW_A_MAX - 1)

/*
 * Attributes nested in one DST_A_CLIENT entry: the client identity that
 * authenticates with this key (and no other), and whether it may only read.
 */
enum dst_client_attr {
	DST_CLIENT_A_UNSPEC,
	DST_CLIENT_A_NAME,	/* string: the client's identity (required) */
	DST_CLIENT_A_KEY,	/* binary: its key, 16..64 bytes, or: */
	DST_CLIENT_A_KEY_DESC,	/* string: a keyring key's description (as DST_A_KEY_DESC) */
	DST_CLIENT_A_READ_ONLY,	/* flag: this client may only read */
	__DST_CLIENT_A_MAX,
};
#define DST_CLIENT_A_MAX (__DST_CLIENT_A_MAX - 1)

/* Data-channel protection (Documentation/protocol.md, "Security"). */
enum dst_protection {
	DST_PROT_NONE = 0,	/* clear text; a key, if given, authenticates the handshake */
	DST_PROT_CRC32C = 1,	/* crc32c of every message: accidental corruption only */
	DST_PROT_HMAC = 2,	/* keyed MAC of every message (needs a key) */
	DST_PROT_AEAD = 3,	/* encrypted and authenticated (needs a key) */
};

/* Default TCP port of an export. */
#define DST_DEFAULT_PORT	1025

/* What a DST_CMD_LIST message describes. */
enum dst_kind {
	DST_KIND_EXPORT = 1,
	DST_KIND_DEVICE = 2,
};

/* Connection state of a device, or of an export's listener. */
enum dst_state {
	DST_STATE_CONNECTED = 1,	/* device: connected; export: listening */
	DST_STATE_RECONNECTING = 2,	/* connection lost; IO waits, resent later */
	DST_STATE_CLOSING = 3,		/* being deleted */
	DST_STATE_FAILED = 4,		/* lost past the loss timeout: IO fails, reconnecting */
};

/* What a DST_CMD_EVENT reports about a device. */
enum dst_event {
	DST_EVENT_CONNECTED = 1,	/* created and connected */
	DST_EVENT_LOST = 2,		/* connection lost; reconnecting, IO waits */
	DST_EVENT_RECONNECTED = 3,	/* connection back; waiting IO resent */
	DST_EVENT_FAILED = 4,		/* lost past the loss timeout: IO fails */
	DST_EVENT_DELETED = 5,		/* device deleted */
	/* Export events: DST_A_KIND = DST_KIND_EXPORT, DST_A_INDEX = export index. */
	DST_EVENT_SESSION_OPENED = 6,	/* a client connected: DST_A_PEER_ADDR/PORT */
	DST_EVENT_SESSION_CLOSED = 7,	/* a client's session ended */
	DST_EVENT_SESSION_REFUSED = 8,	/* a client was refused: DST_A_MESSAGE says why */
};

#endif /* _UAPI_LINUX_DST_H */
