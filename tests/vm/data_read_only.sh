#!/usr/bin/env bash
#
# data_read_only.sh - a read-only export: the local device is read-only,
# writes fail (even when forced past the read-only flag with O_DIRECT on a
# writable open attempt) and the backing device's data stays unchanged; reads
# return the backing data.
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

dd if=/dev/urandom of=/dev/ram0 bs=1M count=16 status=none
before=$(dd if=/dev/ram0 bs=1M count=16 status=none | sha256sum)

dstcfg -r 127.0.0.1 -a export -f /dev/ram0 --read-only
dev=$(dstcfg -r 127.0.0.1 -a local)
assert_eq "$(blockdev --getro "$dev")" 1 "read-only flag of $dev"
expect_fail dd if=/dev/zero of="$dev" bs=4k count=16 oflag=direct status=none
log "write refused: $ERR"
blockdev --setrw "$dev" || true
expect_fail dd if=/dev/zero of="$dev" bs=4k count=16 oflag=direct status=none
log "forced write refused by the export: $ERR"

through=$(dd if="$dev" bs=1M count=16 iflag=direct status=none | sha256sum)
assert_eq "$through" "$before" "data read through $dev"
after=$(dd if=/dev/ram0 bs=1M count=16 status=none | sha256sum)
assert_eq "$after" "$before" "backing data after refused writes"

dstcfg -a delete -d dst0
dstcfg -r 127.0.0.1 -a unexport
log "ok"
