#!/usr/bin/env bash
#
# data_teardown.sh - ending things with IO in flight, and refusing to end what
# is in use: deleting a device while fio writes to it is refused (it is open)
# and, forced, finishes (the IO drains or fails cleanly); deleting a mounted
# device, or one a program holds open, is refused with EBUSY and leaves it
# working, and succeeds once it is unmounted (or, for the open one, with
# --force); unloading the module with an export and a device present removes
# both; unloading while the device is mounted is refused with EBUSY and leaves
# everything working.
# timeout: 600
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

dstcfg -r 127.0.0.1 -a export -f /dev/ram0
dev=$(dstcfg -r 127.0.0.1 -a local)
fio --name=busy --filename="$dev" --ioengine=libaio --direct=1 --rw=randwrite \
    --bs=64k --iodepth=32 --time_based --runtime=60 --output=/dev/null &
fio_pid=$!
# fio takes seconds to start under emulation: wait for its writes, so that
# the deletes below really find the device open with IO in flight.
wait_io_flowing dst0
kill -0 "$fio_pid" || fail "fio is not running"
# fio has it open: refused (after dstcfg's retries), fio goes on.
expect_fail timeout 60 dstcfg -a delete -d dst0
assert_contains "$ERR" "(EBUSY)" "delete while fio has the device open"
kill -0 "$fio_pid" || fail "fio ended after a refused delete"
start=$(date +%s)
timeout 60 dstcfg -a delete -d dst0 --force || fail "forced delete with IO in flight failed or hung"
log "deleted with IO in flight in $(( $(date +%s) - start )) s"
wait "$fio_pid" || log "fio ended with an error, as expected after the delete"
[ ! -e "$dev" ] || fail "$dev still exists"

dev=$(dstcfg -r 127.0.0.1 -a local)
mkfs.ext4 -q -F "$dev"
mnt=$(mktemp -d)
mount "$dev" "$mnt"

# Mounted: the delete is refused with the module's reason and dstcfg's hint,
# and the device goes on working, not closing.
echo before >"$mnt/before"
sync
t0=$(now_ms)
expect_fail dstcfg -a delete -d dst0
log "delete while mounted refused after $(( $(now_ms) - t0 )) ms: $ERR"
assert_eq "$RC" 1 "exit status of a refused delete"
assert_contains "$ERR" "Device or resource busy (EBUSY)" "delete while mounted"
assert_contains "$ERR" "the device is open (mounted or in use)" "delete while mounted"
assert_contains "$ERR" "unmount it" "hint of a refused delete"
assert_contains "$ERR" "--force" "hint of a refused delete"
[ $(( $(now_ms) - t0 )) -ge 4000 ] || fail "dstcfg gave up on the open device before 5 s"
assert_eq "$(dst_field dst0 state)" connected "state of dst0 after a refused delete"
assert_eq "$(cat /sys/block/dst0/dst/state)" connected "sysfs state after a refused delete"
dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none ||
    fail "$dev cannot be opened and read after a refused delete"
echo after >"$mnt/after"
sync
echo 3 >/proc/sys/vm/drop_caches
assert_eq "$(cat "$mnt/before" "$mnt/after" | tr '\n' ' ')" "before after " \
    "files written before and after the refused delete"
umount "$mnt"
timeout 60 dstcfg -a delete -d dst0 || fail "delete after umount failed"
[ ! -e "$dev" ] || fail "$dev still exists after the delete"

# Held open by a program: refused; --force deletes it under the open file.
dev=$(dstcfg -r 127.0.0.1 -a local)
sleep 2 # udev's probe of the new device, which dstcfg would wait out anyway
exec 3<>"$dev"
expect_fail dstcfg -a delete -d dst0
assert_contains "$ERR" "(EBUSY)" "delete while held open"
assert_eq "$(dst_field dst0 state)" connected "state of dst0 after a refused delete"
printf 'still open' >&3 || fail "write through the open file after a refused delete failed"
dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none ||
    fail "$dev cannot be opened and read after a refused delete"
timeout 60 dstcfg -a delete -d dst0 --force || fail "forced delete of an open device failed"
[ ! -e "$dev" ] || fail "$dev still exists after the forced delete"
[ ! -d /sys/block/dst0 ] || fail "/sys/block/dst0 still exists after the forced delete"
exec 3>&-
rc=0
dst_field dst0 state >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "dst0 listed after the forced delete (dst_field's status)"

dev=$(dstcfg -r 127.0.0.1 -a local)
mkfs.ext4 -q -F "$dev"
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
