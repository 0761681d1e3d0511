#!/usr/bin/env bash
#
# fault_dead_peer_teardown.sh - tearing down with the export node unreachable.
# Two devices (--loss-timeout 5000 --req-timeout 2000) on one export; the link
# goes down with fio writing to dst0. Asserts: IO is in flight on dst0 when
# `dstcfg -a delete -d dst0` runs; the delete succeeds within 20 s; fio then
# ends (within 30 s) and /dev/dst0 is gone; `rmmod dst` with dst1 still
# present (its export unreachable; connected, reconnecting or failed by then)
# and the export whose sessions lost their peer succeeds within 20 s and
# removes /dev/dst1; the module loads again with nothing configured. (Tasks
# left in D state are caught by the harness.)
# timeout: 600
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

netns_pair
ip netns exec exp dstcfg -r 10.9.0.1 -a export -f /dev/ram0
opts=(--loss-timeout 5000 --req-timeout 2000)
d0=$(ip netns exec loc dstcfg -r 10.9.0.1 -a local "${opts[@]}")
d1=$(ip netns exec loc dstcfg -r 10.9.0.1 -a local "${opts[@]}")
assert_eq "$d0 $d1" "/dev/dst0 /dev/dst1" "devices created"
# dst1 has been used before the outage.
dd if=/dev/urandom of="$d1" bs=64k count=16 oflag=direct status=none

fio --name=busy --filename="$d0" --ioengine=libaio --direct=1 --rw=randwrite \
    --bs=64k --iodepth=16 --time_based --runtime=120 --output=/dev/null 2>/dev/null &
fio_pid=$!
wait_io_flowing dst0
kill -0 "$fio_pid" 2>/dev/null || fail "fio ended before the link went down"
ip -n loc link set veth-loc down
t_down=$(now_ms)
sleep 1
inflight=$(dev_inflight "$d0")
log "link down; $inflight requests in flight on $d0; dst0 $(dst_field dst0 state), dst1 $(dst_field dst1 state)"
[ "$inflight" -gt 0 ] || fail "no IO in flight on $d0 with the link down: the test did not test anything"

t0=$(now_ms) rc=0
timeout 60 dstcfg -a delete -d dst0 || rc=$?
t1=$(now_ms)
log "delete with the export unreachable and IO in flight: status $rc after $((t1 - t0)) ms ($((t1 - t_down)) ms after link down)"
[ "$rc" != 124 ] || fail "dstcfg -a delete hung for 60 s with the export unreachable"
[ "$rc" = 0 ] || fail "dstcfg -a delete failed (status $rc) with the export unreachable"
[ $((t1 - t0)) -le 20000 ] || fail "dstcfg -a delete took $((t1 - t0)) ms; expected within 20 s (loss timeout 5 s, request timeout 2 s)"

while kill -0 "$fio_pid" 2>/dev/null; do
    [ $(( $(now_ms) - t1 )) -lt 30000 ] || fail "fio still running 30 s after its device was deleted"
    sleep 0.2
done
fio_rc=0
wait "$fio_pid" || fio_rc=$?
log "fio ended $(( $(now_ms) - t1 )) ms after the delete, status $fio_rc (an error is expected)"
[ ! -e "$d0" ] || fail "$d0 still exists after the delete"
[ ! -d /sys/block/dst0 ] || fail "/sys/block/dst0 still exists after the delete"

log "before rmmod: dst1 $(dst_field dst1 state); $(dstcfg -a list | tail -n +2 | tr -s ' ' | tr '\n' ';')"
t0=$(now_ms) rc=0
timeout 60 rmmod dst || rc=$?
t1=$(now_ms)
log "rmmod with the export unreachable: status $rc after $((t1 - t0)) ms"
[ "$rc" != 124 ] || fail "rmmod dst hung for 60 s with the export unreachable"
[ "$rc" = 0 ] || fail "rmmod dst failed (status $rc) with the export unreachable"
[ $((t1 - t0)) -le 20000 ] || fail "rmmod dst took $((t1 - t0)) ms; expected within 20 s"
! dst_loaded || fail "/sys/module/dst still present after rmmod"
[ ! -e "$d1" ] || fail "$d1 still exists after rmmod"

ip -n loc link set veth-loc up
dst_load
assert_eq "$(dstcfg -a list --json)" "[]" "nothing left after reloading the module"
log "ok"
