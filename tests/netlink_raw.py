#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""netlink_raw.py - talk to the "dst" generic netlink family with raw sockets.

Uses only the Python standard library (AF_NETLINK/NETLINK_GENERIC sockets and
struct), so it checks the kernel side independently of dstcfg. Numbers mirror
include/uapi/linux/dst.h.

Modes:
  (default)        run the malformed-input suite:
                     a. well-formed DST_CMD_STATUS -> reply with DST_A_VERSION
                     b. unknown attribute type 200 -> EINVAL + extack message
                     c. DST_A_VERSION (output only) sent as input -> error + extack
                     d. attribute with nla_len < 4, and one running past the
                        end of the message -> error
                     e. unknown command 250 -> EOPNOTSUPP
                     g. DST_A_FORCE (a flag) with a payload -> error + extack;
                        DST_CMD_DEV_DEL of a missing device with the flag ->
                        ENOENT (the flag itself is accepted)
                     f. (with NETLINK_EXT_ACK on) extack strings for b and c
                   then (a) again to prove the module still answers.
  --status         send one STATUS and print "version=<v> proto=<n>"
  --events SECS    print "listening" once subscribed, then "dstN EVENT" for
                   each event multicast, for SECS seconds
  --expect-errno N send one STATUS and require it to fail with errno N
                   (e.g. EPERM when run without CAP_NET_ADMIN)
  --export-alg ADDR PATH PROT ALG KEYHEX
                   send one DST_CMD_EXPORT_ADD with protection PROT (none,
                   crc32c, hmac, aead), algorithm ALG and key KEYHEX, bypassing
                   dstcfg's checks; print the kernel's answer; exit 0 if the
                   kernel refused it, 1 if it accepted it
  --export-path ADDR PATH
                   send one DST_CMD_EXPORT_ADD of PATH (no other options),
                   bypassing dstcfg's checks of the path; print the kernel's
                   answer; exit 0 if the kernel refused it, 1 if it accepted
                   it
  --set-loss N MS  send one DST_CMD_DEV_SET of /dev/dstN's loss timeout (MS, or
                   "infinite"), bypassing dstcfg; print the kernel's answer;
                   exit 0 if it accepted it, 1 if it refused it
  --family-absent  require that the "dst" family is not registered
  --family-present require that the "dst" family is registered

Exit status 0 when every expectation holds; 1 with a message otherwise.
"""

import errno
import os
import socket
import struct
import sys

# <linux/netlink.h>
NETLINK_GENERIC = 16
SOL_NETLINK = 270
NETLINK_EXT_ACK = 11
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSG_ERROR = 0x2
NLMSG_DONE = 0x3
NLMSGERR_ATTR_MSG = 1
NLMSGERR_ATTR_OFFS = 2

# <linux/genetlink.h>
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
CTRL_ATTR_MCAST_GROUPS = 7
CTRL_ATTR_MCAST_GRP_NAME = 1
CTRL_ATTR_MCAST_GRP_ID = 2
SOL_NETLINK_ADD_MEMBERSHIP = 1

# <linux/dst.h>
DST_GENL_NAME = "dst"
DST_GENL_VERSION = 1
DST_CMD_STATUS = 1
DST_CMD_EXPORT_ADD = 2
DST_A_ADDR = 4
DST_A_PATH = 6
DST_A_PROTECTION = 31
DST_A_ALG = 32
DST_A_KEY = 33
DST_PROT = {"none": 0, "crc32c": 1, "hmac": 2, "aead": 3}
DST_A_VERSION = 2
DST_A_PROTO_VERSION = 3
DST_CMD_EVENT = 8
DST_CMD_DEV_DEL = 5
DST_CMD_DEV_SET = 7
DST_A_LOSS_TIMEOUT_MS = 21
LOSS_TIMEOUT_INFINITE = 0xFFFFFFFF
DST_A_INDEX = 10
DST_A_FORCE = 42
DST_A_EVENT = 24
DST_EVENTS = {1: "connected", 2: "lost", 3: "reconnected", 4: "failed", 5: "deleted"}

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
GENLMSGHDR = struct.Struct("=BBH")  # cmd, version, reserved
NLATTR = struct.Struct("=HH")  # len, type


class Failure(Exception):
    """An expectation of the suite did not hold."""


def align4(n):
    return (n + 3) & ~3


def nla(atype, payload):
    """One well-formed attribute, padded to 4 bytes."""
    raw = NLATTR.pack(NLATTR.size + len(payload), atype) + payload
    return raw + b"\0" * (align4(len(raw)) - len(raw))


def nla_str(atype, text):
    return nla(atype, text.encode() + b"\0")


def nla_u32(atype, value):
    return nla(atype, struct.pack("=I", value))


def parse_attrs(buf):
    """Attributes of buf as {type: payload} (last one wins)."""
    attrs = {}
    off = 0
    while off + NLATTR.size <= len(buf):
        alen, atype = NLATTR.unpack_from(buf, off)
        if alen < NLATTR.size or off + alen > len(buf):
            break
        attrs[atype & 0x3FFF] = buf[off + NLATTR.size:off + alen]
        off += align4(alen)
    return attrs


def cstr(payload):
    return payload.split(b"\0", 1)[0].decode(errors="replace")


class Reply:
    """What the kernel answered to one request."""

    def __init__(self):
        self.messages = []  # (nlmsg_type, payload) of non-error messages
        self.error = None  # 0 for an ACK, negative errno for an error
        self.extack_msg = None
        self.extack_offs = None

    def describe(self):
        if self.error is None:
            return "no ACK/error"
        if self.error == 0:
            return "success"
        name = "EOPNOTSUPP" if -self.error == errno.EOPNOTSUPP else errno.errorcode.get(-self.error, str(-self.error))
        text = f"error {name} ({self.error})"
        if self.extack_msg:
            text += f', extack "{self.extack_msg}"'
        return text


class GenlSocket:
    def __init__(self, ext_ack=True):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self.sock.settimeout(10)
        self.sock.bind((0, 0))
        if ext_ack:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        self.seq = 1000

    def close(self):
        self.sock.close()

    def request(self, msg_type, payload, flags=NLM_F_REQUEST | NLM_F_ACK, length=None):
        """Send one message; collect replies up to the ACK/error. length, if
        given, overrides nlmsg_len (only for deliberately broken messages)."""
        self.seq += 1
        seq = self.seq
        total = NLMSGHDR.size + len(payload)
        hdr = NLMSGHDR.pack(total if length is None else length, msg_type, flags, seq, 0)
        self.sock.send(hdr + payload)
        reply = Reply()
        while reply.error is None:
            data = self.sock.recv(65536)
            off = 0
            while off + NLMSGHDR.size <= len(data):
                mlen, mtype, mflags, mseq, _ = NLMSGHDR.unpack_from(data, off)
                if mlen < NLMSGHDR.size or off + mlen > len(data):
                    raise Failure(f"kernel sent a truncated netlink message (len {mlen})")
                body = data[off + NLMSGHDR.size:off + mlen]
                off += align4(mlen)
                if mseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    self._parse_error(reply, body, mflags)
                elif mtype == NLMSG_DONE:
                    reply.error = 0
                else:
                    reply.messages.append((mtype, body))
        return reply

    @staticmethod
    def _parse_error(reply, body, mflags):
        (err,) = struct.unpack_from("=i", body, 0)
        reply.error = err
        if not mflags & NLM_F_ACK_TLVS:
            return
        # struct nlmsgerr = error + the original header (and, unless capped,
        # the original payload); the TLVs follow.
        orig_len = NLMSGHDR.unpack_from(body, 4)[0]
        skip = 4 + (NLMSGHDR.size if mflags & NLM_F_CAPPED else align4(orig_len))
        tlvs = parse_attrs(body[skip:])
        if NLMSGERR_ATTR_MSG in tlvs:
            reply.extack_msg = cstr(tlvs[NLMSGERR_ATTR_MSG])
        if NLMSGERR_ATTR_OFFS in tlvs:
            reply.extack_offs = struct.unpack("=I", tlvs[NLMSGERR_ATTR_OFFS][:4])[0]

    def family_id(self, name):
        """The id of a generic netlink family, or None if not registered."""
        payload = GENLMSGHDR.pack(CTRL_CMD_GETFAMILY, 1, 0) + nla_str(CTRL_ATTR_FAMILY_NAME, name)
        reply = self.request(GENL_ID_CTRL, payload)
        if reply.error == -errno.ENOENT:
            return None
        if reply.error != 0 or not reply.messages:
            raise Failure(f"resolving family {name!r}: {reply.describe()}")
        attrs = parse_attrs(reply.messages[0][1][GENLMSGHDR.size:])
        if CTRL_ATTR_FAMILY_ID not in attrs:
            raise Failure(f"resolving family {name!r}: reply without CTRL_ATTR_FAMILY_ID")
        return struct.unpack("=H", attrs[CTRL_ATTR_FAMILY_ID][:2])[0]

    def mcast_group(self, family, group):
        """The id of a family's multicast group."""
        payload = GENLMSGHDR.pack(CTRL_CMD_GETFAMILY, 1, 0) + nla_str(CTRL_ATTR_FAMILY_NAME, family)
        reply = self.request(GENL_ID_CTRL, payload)
        if reply.error != 0 or not reply.messages:
            raise Failure(f"resolving family {family!r}: {reply.describe()}")
        attrs = parse_attrs(reply.messages[0][1][GENLMSGHDR.size:])
        for grp in parse_attrs(attrs.get(CTRL_ATTR_MCAST_GROUPS, b"")).values():
            g = parse_attrs(grp)
            if cstr(g.get(CTRL_ATTR_MCAST_GRP_NAME, b"")) == group:
                return struct.unpack("=I", g[CTRL_ATTR_MCAST_GRP_ID][:4])[0]
        raise Failure(f"family {family!r} has no multicast group {group!r}")

    def dst(self, fam, cmd, attrs=b"", **kw):
        return self.request(fam, GENLMSGHDR.pack(cmd, DST_GENL_VERSION, 0) + attrs, **kw)


def check_status_reply(reply, what):
    """(a): a reply carrying DST_A_VERSION and DST_A_PROTO_VERSION, then the ACK."""
    if reply.error != 0:
        raise Failure(f"{what}: expected success, got {reply.describe()}")
    if not reply.messages:
        raise Failure(f"{what}: ACK without a STATUS reply message")
    attrs = parse_attrs(reply.messages[0][1][GENLMSGHDR.size:])
    if DST_A_VERSION not in attrs:
        raise Failure(f"{what}: reply lacks DST_A_VERSION (got attribute types {sorted(attrs)})")
    version = cstr(attrs[DST_A_VERSION])
    if not version:
        raise Failure(f"{what}: DST_A_VERSION is empty")
    if DST_A_PROTO_VERSION not in attrs or len(attrs[DST_A_PROTO_VERSION]) != 4:
        raise Failure(f"{what}: reply lacks a 4-byte DST_A_PROTO_VERSION")
    proto = struct.unpack("=I", attrs[DST_A_PROTO_VERSION])[0]
    return version, proto


def expect_error(reply, what, allowed, need_extack=False):
    if reply.error is None or reply.error == 0:
        raise Failure(f"{what}: expected an error ({'/'.join(allowed)}), got {reply.describe()}")
    # By number: EOPNOTSUPP and ENOTSUP are the same errno on Linux.
    if -reply.error not in {getattr(errno, name) for name in allowed}:
        raise Failure(f"{what}: expected {'/'.join(allowed)}, got {reply.describe()}")
    if need_extack and not reply.extack_msg:
        raise Failure(f"{what}: {reply.describe()} without an extack message (NETLINK_EXT_ACK is on)")
    print(f"ok   {what}: {reply.describe()}")


def resolve(sock):
    fam = sock.family_id(DST_GENL_NAME)
    if fam is None:
        raise Failure(f'generic netlink family "{DST_GENL_NAME}" is not registered (is dst.ko loaded?)')
    return fam


def suite():
    sock = GenlSocket(ext_ack=True)
    fam = resolve(sock)
    print(f'family "{DST_GENL_NAME}" has id {fam}')

    # (a) well-formed STATUS
    version, proto = check_status_reply(sock.dst(fam, DST_CMD_STATUS), "a. STATUS")
    print(f"ok   a. STATUS: version={version!r} proto={proto}")

    # (b) unknown attribute type 200 (beyond the policy's maxtype)
    r = sock.dst(fam, DST_CMD_STATUS, nla_u32(200, 1))
    expect_error(r, "b. unknown attribute 200", ["EINVAL"], need_extack=True)

    # (c) an output-only attribute sent as input
    r = sock.dst(fam, DST_CMD_STATUS, nla_str(DST_A_VERSION, "evil"))
    expect_error(r, "c. DST_A_VERSION as input", ["EINVAL", "ERANGE"], need_extack=True)
    r = sock.dst(fam, DST_CMD_STATUS, nla_u32(DST_A_PROTO_VERSION, 7))
    expect_error(r, "c. DST_A_PROTO_VERSION as input", ["EINVAL", "ERANGE"], need_extack=True)

    # (d) malformed attribute headers. The netlink message itself stays
    # consistent (nlmsg_len covers exactly what is sent); only the attribute
    # stream inside it is broken.
    short = struct.pack("=HH", 2, DST_A_PROTO_VERSION) + b"\0\0\0\0"
    r = sock.dst(fam, DST_CMD_STATUS, short)
    expect_error(r, "d. nla_len 2 (< header)", ["EINVAL", "ERANGE"])
    past_end = struct.pack("=HH", 64, DST_A_PROTO_VERSION) + struct.pack("=I", 1)
    r = sock.dst(fam, DST_CMD_STATUS, past_end)
    expect_error(r, "d. nla_len 64 past the end", ["EINVAL", "ERANGE"])
    trailing = nla_u32(DST_A_PROTO_VERSION, 1)[:6]  # 6 bytes: header + 2 stray
    r = sock.dst(fam, DST_CMD_STATUS, trailing)
    expect_error(r, "d. truncated attribute (6 of 8 bytes)", ["EINVAL", "ERANGE"])

    # (e) unknown command
    r = sock.dst(fam, 250)
    expect_error(r, "e. unknown command 250", ["EOPNOTSUPP"])

    # (g) DST_A_FORCE is a flag: no payload. With none, a delete of a device
    # that does not exist gets as far as the lookup.
    r = sock.dst(fam, DST_CMD_DEV_DEL, nla_u32(DST_A_INDEX, 1023) + nla_u32(DST_A_FORCE, 1))
    expect_error(r, "g. DST_A_FORCE with a payload", ["EINVAL", "ERANGE"], need_extack=True)
    r = sock.dst(fam, DST_CMD_DEV_DEL, nla_u32(DST_A_INDEX, 1023) + nla(DST_A_FORCE, b""))
    expect_error(r, "g. DST_CMD_DEV_DEL of no device, forced", ["ENOENT"], need_extack=True)

    # (a) again: the module must still answer after all of the above
    version2, proto2 = check_status_reply(sock.dst(fam, DST_CMD_STATUS), "a. STATUS again")
    if (version2, proto2) != (version, proto):
        raise Failure(f"STATUS changed: {(version, proto)} -> {(version2, proto2)}")
    print("ok   a. STATUS again")
    # and on a fresh socket without extended acks
    plain = GenlSocket(ext_ack=False)
    check_status_reply(plain.dst(fam, DST_CMD_STATUS), "a. STATUS on a new socket")
    plain.close()
    sock.close()
    print("ok   a. STATUS on a new socket without NETLINK_EXT_ACK")
    print("netlink_raw: all checks passed")


def main(argv):
    mode = argv[1] if len(argv) > 1 else "--suite"
    try:
        if mode == "--suite":
            suite()
        elif mode == "--status":
            sock = GenlSocket()
            version, proto = check_status_reply(sock.dst(resolve(sock), DST_CMD_STATUS), "STATUS")
            print(f"version={version} proto={proto}")
        elif mode == "--expect-errno" and len(argv) == 3:
            want = argv[2]
            sock = GenlSocket()
            r = sock.dst(resolve(sock), DST_CMD_STATUS)
            expect_error(r, f"STATUS as uid {os.getuid()}", [want])
        elif mode == "--events" and len(argv) == 3:
            # Print "dstN EVENT" for every DST_CMD_EVENT for argv[2] seconds.
            sock = GenlSocket()
            fam = resolve(sock)
            grp = sock.mcast_group(DST_GENL_NAME, "events")
            sock.sock.setsockopt(SOL_NETLINK, SOL_NETLINK_ADD_MEMBERSHIP, grp)
            sock.sock.settimeout(float(argv[2]))
            print("listening", flush=True)
            try:
                while True:
                    data = sock.sock.recv(65536)
                    off = 0
                    while off + NLMSGHDR.size <= len(data):
                        mlen, mtype = NLMSGHDR.unpack_from(data, off)[:2]
                        body = data[off + NLMSGHDR.size:off + mlen]
                        off += align4(mlen)
                        if mtype != fam or body[0] != DST_CMD_EVENT:
                            continue
                        a = parse_attrs(body[GENLMSGHDR.size:])
                        index = struct.unpack("=I", a[DST_A_INDEX][:4])[0]
                        event = struct.unpack("=I", a[DST_A_EVENT][:4])[0]
                        print(f"dst{index} {DST_EVENTS.get(event, event)}", flush=True)
            except socket.timeout:
                pass
        elif mode == "--export-alg" and len(argv) == 7:
            addr, path, prot, alg, key = argv[2:]
            sock = GenlSocket()
            attrs = (nla(DST_A_ADDR, socket.inet_aton(addr)) + nla_str(DST_A_PATH, path)
                     + nla_u32(DST_A_PROTECTION, DST_PROT[prot]) + nla_str(DST_A_ALG, alg)
                     + nla(DST_A_KEY, bytes.fromhex(key)))
            r = sock.dst(resolve(sock), DST_CMD_EXPORT_ADD, attrs)
            print(f"EXPORT_ADD {prot} {alg}: {r.describe()}")
            if r.error == 0:
                raise Failure(f"the kernel accepted {alg}")
        elif mode == "--export-path" and len(argv) == 4:
            addr, path = argv[2:]
            sock = GenlSocket()
            attrs = nla(DST_A_ADDR, socket.inet_aton(addr)) + nla_str(DST_A_PATH, path)
            r = sock.dst(resolve(sock), DST_CMD_EXPORT_ADD, attrs)
            print(f"EXPORT_ADD {path}: {r.describe()}")
            if r.error == 0:
                raise Failure(f"the kernel accepted {path}")
        elif mode == "--set-loss" and len(argv) == 4:
            index, ms = int(argv[2]), argv[3]
            ms = LOSS_TIMEOUT_INFINITE if ms == "infinite" else int(ms)
            sock = GenlSocket()
            attrs = nla_u32(DST_A_INDEX, index) + nla_u32(DST_A_LOSS_TIMEOUT_MS, ms)
            r = sock.dst(resolve(sock), DST_CMD_DEV_SET, attrs)
            print(f"DEV_SET dst{index} loss timeout {ms}: {r.describe()}")
            if r.error != 0:
                raise Failure(f"the kernel refused loss timeout {ms}")
        elif mode in ("--family-absent", "--family-present"):
            sock = GenlSocket()
            present = sock.family_id(DST_GENL_NAME) is not None
            if present != (mode == "--family-present"):
                raise Failure(f'family "{DST_GENL_NAME}" is {"" if present else "not "}registered')
            print(f'family "{DST_GENL_NAME}" {"present" if present else "absent"}')
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except Failure as exc:
        print(f"netlink_raw: FAIL: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"netlink_raw: FAIL: socket error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
