#!/usr/bin/env bash
#
# dstcfg_bad_input.sh - bad dstcfg input gives a clear error and changes
# nothing: a missing backing device, a non-block file, a port in use, a local
# node with nothing listening, deleting what does not exist, duplicate exports.
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

expect_fail dstcfg -r 127.0.0.1 -a export -f /dev/does-not-exist
log "missing device: $ERR"
expect_fail dstcfg -r 127.0.0.1 -a export -f /etc/hostname
log "not a block device: $ERR"
expect_fail dstcfg -r 127.0.0.1 -a local
log "nothing listening: $ERR"
expect_fail dstcfg -a delete -d dst7
log "no such device: $ERR"
expect_fail dstcfg -r 127.0.0.1 -a unexport
log "no such export: $ERR"
assert_eq "$(dstcfg -a list --json)" "[]" "nothing was created"

dstcfg -r 127.0.0.1 -a export -f /dev/ram0
expect_fail dstcfg -r 127.0.0.1 -a export -f /dev/ram1
log "duplicate listen address: $ERR"
expect_fail dstcfg -r 127.0.0.1 -p 1026 -a export -f /dev/ram0
log "device already exported: $ERR"
n=$(dstcfg -a list --json | "$PYTHON" -c 'import json,sys; print(len(json.load(sys.stdin)))')
assert_eq "$n" 1 "exactly one export after the refused ones"
dstcfg -r 127.0.0.1 -a unexport
log "ok"
