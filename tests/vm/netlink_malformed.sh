#!/usr/bin/env bash
#
# netlink_malformed.sh - the dst family's strict policy, probed with raw
# netlink (tests/netlink_raw.py, Python stdlib only): a well-formed STATUS gets
# DST_A_VERSION; an unknown attribute (type 200) gets EINVAL; output-only
# attributes sent as input, attributes shorter than their header or running
# past the message end are refused; an unknown command (250) gets EOPNOTSUPP;
# the flag DST_A_FORCE with a payload is refused, without one accepted (a
# forced delete of no device gets ENOENT); with NETLINK_EXT_ACK the refusals
# of bad attributes carry a message. The
# module must still answer STATUS afterwards, also from a new process.
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

dst_loaded || fail "dst.ko is not loaded"
"$PYTHON" "$DST_REPO/tests/netlink_raw.py" || fail "netlink_raw.py suite failed"
"$PYTHON" "$DST_REPO/tests/netlink_raw.py" --status || fail "STATUS from a new process failed afterwards"
dstcfg -a status >/dev/null || fail "dstcfg -a status failed afterwards"
log "ok"
