#!/usr/bin/env bash
#
# netlink_status.sh - DST_CMD_STATUS through dstcfg: `dstcfg -a status` exits 0
# and prints the module version the kernel reports (read independently with
# tests/netlink_raw.py) and "wire protocol"; `dstcfg -a status --json` is valid
# JSON with "protocol": 2 (and, if it has "version", the same version).
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

dst_loaded || fail "dst.ko is not loaded"

# What the kernel says, straight from netlink: "version=<v> proto=<n>".
raw=$("$PYTHON" "$DST_REPO/tests/netlink_raw.py" --status) || fail "raw DST_CMD_STATUS failed: $raw"
version=$(sed -n 's/^version=\(.*\) proto=[0-9]*$/\1/p' <<<"$raw")
proto=$(sed -n 's/^version=.* proto=\([0-9]*\)$/\1/p' <<<"$raw")
log "kernel reports version '$version', wire protocol $proto"
[ -n "$version" ] || fail "no version in: $raw"
assert_eq "$proto" 2 "DST_A_PROTO_VERSION"

out=$(dstcfg -a status) || fail "dstcfg -a status exited $?: $out"
printf '%s\n' "$out"
assert_contains "$out" "wire protocol" "dstcfg -a status"
assert_contains "$out" "$version" "dstcfg -a status (module version)"

json=$(dstcfg -a status --json) || fail "dstcfg -a status --json exited $?: $json"
printf '%s\n' "$json"
"$PYTHON" -m json.tool <<<"$json" >/dev/null || fail "dstcfg -a status --json is not valid JSON"
check_json='
import json, sys
doc = json.load(sys.stdin)
assert isinstance(doc, dict), f"top level is {type(doc).__name__}, not an object"
proto = doc.get("protocol")
assert proto == 2, f"protocol is {proto!r}, not 2"
version = doc.get("version", sys.argv[1])
assert version == sys.argv[1], f"version is {version!r}, the kernel says {sys.argv[1]!r}"
'
"$PYTHON" -c "$check_json" "$version" <<<"$json" || fail "unexpected JSON content"
log "ok"
