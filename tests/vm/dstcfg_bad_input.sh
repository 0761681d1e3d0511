#!/usr/bin/env bash
#
# dstcfg_bad_input.sh - bad dstcfg input gives a clear error and changes
# nothing: a missing backing device, a character device, a port in use, a local
# node with nothing listening, deleting what does not exist, duplicate exports
# (a name taken on the port, a device exported twice),
# --client-id 0 (usage error, exit 2) and --client-id on an action other than
# local. The accepted form is checked too: a device made with --client-id
# 0x1234 is listed with that id (JSON and table), one made without gets a
# random one other than 0.
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

expect_fail dstcfg -r 127.0.0.1 -a export -f /dev/does-not-exist
log "missing device: $ERR"
expect_fail dstcfg -r 127.0.0.1 -a export -f /dev/null
assert_contains "$ERR" "neither a block device nor a regular file" "export of /dev/null"
log "not a block device or file: $ERR"
expect_fail dstcfg -r 127.0.0.1 -a local
log "nothing listening: $ERR"
expect_fail dstcfg -a delete -d dst7
log "no such device: $ERR"
expect_fail dstcfg -r 127.0.0.1 -a unexport
log "no such export: $ERR"
expect_fail dstcfg -r 127.0.0.1 -a local --client-id 0
log "client id 0: $ERR"
assert_eq "$RC" 2 "exit status of --client-id 0 (usage error)"
assert_contains "$ERR" "invalid value '0' for '--client-id <ID>': 0 is not a client id" "--client-id 0"
expect_fail dstcfg -a set -d dst0 --client-id 0x1234
log "client id on -a set: $ERR"
assert_eq "$RC" 2 "exit status of -a set --client-id (usage error)"
assert_contains "$ERR" "--client-id cannot be used with -a set" "-a set --client-id"
expect_fail dstcfg set -d dst0 --client-id 0x1234
assert_eq "$RC" 2 "exit status of set --client-id (usage error)"
assert_contains "$ERR" "--client-id cannot be used with set" "set --client-id"
assert_eq "$(dstcfg -a list --json)" "[]" "nothing was created"

dstcfg -r 127.0.0.1 -a export -f /dev/ram0 -n first
expect_fail dstcfg -r 127.0.0.1 -a export -f /dev/ram1 -n first
log "duplicate name on one port: $ERR"
# A port another program listens on.
"$PYTHON" -c 'import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 1027)); s.listen(); time.sleep(60)' &
squatter=$!
for _ in $(seq 100); do ss -ltn | grep -q '127.0.0.1:1027 ' && break; sleep 0.1; done
expect_fail dstcfg -r 127.0.0.1 -p 1027 -a export -f /dev/ram1
kill "$squatter"
log "port in use by another program: $ERR"
expect_fail dstcfg -r 127.0.0.1 -p 1026 -a export -f /dev/ram0
log "device already exported: $ERR"
n=$(dstcfg -a list --json | "$PYTHON" -c 'import json,sys; print(len(json.load(sys.stdin)))')
assert_eq "$n" 1 "exactly one export after the refused ones"

expect_fail dstcfg -r 127.0.0.1 -a local --client-id 0
assert_contains "$ERR" "0 is not a client id" "--client-id 0 with an export listening"
assert_eq "$(dstcfg -a list --json | grep -c '"kind": "device"' || true)" 0 "no device after --client-id 0"
dev=$(dstcfg -r 127.0.0.1 -a local --client-id 0x1234)
assert_eq "$dev" /dev/dst0 "device made with --client-id 0x1234"
dstcfg -a list --json
dstcfg -a list
assert_eq "$(dst_field dst0 client_id)" 0x0000000000001234 "client_id of dst0 in dstcfg -a list --json"
assert_contains "$(dstcfg -a list)" "client-id 0x0000000000001234" "dstcfg -a list"
dev=$(dstcfg -r 127.0.0.1 -a local --duplicate)
assert_eq "$dev" /dev/dst1 "device made without --client-id"
id=$(dst_field dst1 client_id) || fail "no client_id for dst1 in dstcfg -a list --json"
log "random client id of dst1: $id"
[[ $id =~ ^0x[0-9a-f]{16}$ && $id != 0x0000000000000000 && $id != 0x0000000000001234 ]] ||
    fail "client_id of dst1 is '$id', not a random id"
dstcfg -a delete -d dst1
dstcfg -a delete -d dst0
dstcfg -r 127.0.0.1 -a unexport
log "ok"
