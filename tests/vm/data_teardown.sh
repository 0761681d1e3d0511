#!/usr/bin/env bash
#
# data_teardown.sh - ending things with IO in flight: deleting a device while
# fio writes to it finishes (the IO drains or fails cleanly); unloading the
# module with an export and a device present removes both; unloading while the
# device is mounted is refused with EBUSY and leaves everything working.
# timeout: 600
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

dstcfg -r 127.0.0.1 -a export -f /dev/ram0
dev=$(dstcfg -r 127.0.0.1 -a local)
fio --name=busy --filename="$dev" --ioengine=libaio --direct=1 --rw=randwrite \
    --bs=64k --iodepth=32 --time_based --runtime=60 --output=/dev/null &
fio_pid=$!
sleep 3
start=$(date +%s)
timeout 60 dstcfg -a delete -d dst0 || fail "delete with IO in flight failed or hung"
log "deleted with IO in flight in $(( $(date +%s) - start )) s"
wait "$fio_pid" || log "fio ended with an error, as expected after the delete"
[ ! -e "$dev" ] || fail "$dev still exists"

dev=$(dstcfg -r 127.0.0.1 -a local)
mkfs.ext4 -q -F "$dev"
mnt=$(mktemp -d)
mount "$dev" "$mnt"
expect_fail rmmod dst
log "rmmod while mounted refused: $ERR"
echo hello >"$mnt/still-works"
sync
umount "$mnt"

timeout 60 rmmod dst || fail "rmmod with an export and a device present failed"
[ ! -e "$dev" ] || fail "$dev still exists after rmmod"
dst_load
log "ok"
