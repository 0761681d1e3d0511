#!/usr/bin/env bash
#
# fault_dead_peer_teardown.sh - tearing down with the export node silent or
# unreachable.
# First a silent export, twice: a device with fio writing to it, when every
# packet the export node sends is dropped (netem loss 100% on its link):
# (a) without pings (--loss-timeout 5000 --req-timeout 60000), so that the
# device stays "connected" and only the delete's grace, the loss timeout, can
# end the IO in flight; (b) with pings (1 s, timeout 1 s; --loss-timeout
# 20000 --req-timeout 120000), so that the device is reconnecting, its
# handshake waiting for an answer, when it is deleted.
# Asserts each time: IO is in flight when `dstcfg -a delete --force` runs (fio
# has the device open: a delete without --force would be refused); the delete
# succeeds within the loss timeout + 15 s; fio then ends within 30 s with an
# IO error (EIO: its requests in flight failed; the kernel does not log I/O
# errors of a disk being deleted), and /dev/dst0 is gone.
# Then two devices (--loss-timeout 5000 --req-timeout 2000) on one export; the link
# goes down with fio writing to dst0. Asserts: IO is in flight on dst0 when
# `dstcfg -a delete -d dst0 --force` runs; the delete succeeds within 20 s; fio then
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

# silent_delete CASE: /dev/dst0 with fio writing to it; the export node goes silent (netem drops whatever it
# sends: the device's connection stays established, new ones never get past
# the SYN), then the device is deleted. CASE connected: no pings, so nothing
# notices the silence and the IO in flight waits for its reply until the
# delete's grace (the loss timeout, 5 s; request timeout 60 s) ends; CASE
# reconnecting: pings (1 s, timeout 1 s) notice it, and the delete comes
# while the device reconnects (loss timeout 20 s), its handshake waiting for
# an answer (for up to the request timeout, 120 s).
silent_delete() {
    local case=$1 loss_ms dev opts fio_err fio_pid fio_rc=0 inflight state t0 t1 rc=0
    case $case in
        connected) loss_ms=5000 opts=(--req-timeout 60000 --ping-interval 0) ;;
        reconnecting) loss_ms=20000 opts=(--req-timeout 120000 --ping-interval 1000 --ping-timeout 1000) ;;
    esac
    log "silent export, delete while $case"
    dev=$(ip netns exec loc dstcfg -r 10.9.0.1 -a local --loss-timeout "$loss_ms" "${opts[@]}")
    assert_eq "$dev" /dev/dst0 "device for the silent export ($case)"
    fio_err=$DST_TEST_OUT/silent-$case.err
    fio --name="silent-$case" --filename="$dev" --ioengine=libaio --direct=1 --rw=randwrite \
        --bs=64k --iodepth=16 --time_based --runtime=120 --output=/dev/null 2>"$fio_err" &
    fio_pid=$!
    wait_io_flowing dst0
    kill -0 "$fio_pid" 2>/dev/null || fail "fio ended before the export went silent ($case)"
    ip netns exec exp tc qdisc add dev veth-exp root netem loss 100%
    sleep 2
    if [ "$case" = reconnecting ]; then
        wait_dst_state dst0 reconnecting 30
        # Past the reconnect delay (1 s): in the handshake.
        sleep 2
    fi
    inflight=$(dev_inflight "$dev")
    state=$(dst_field dst0 state)
    log "export silent; $inflight requests in flight on $dev, state $state"
    [ "$inflight" -gt 0 ] || fail "no IO in flight on $dev with the export silent: the test did not test anything"
    if [ "$case" = connected ]; then
        assert_eq "$state" connected "state of dst0 with the export silent and no pings"
    fi

    t0=$(now_ms)
    timeout 150 ip netns exec loc dstcfg -a delete -d dst0 --force || rc=$?
    t1=$(now_ms)
    log "delete ($case, export silent, IO in flight): status $rc after $((t1 - t0)) ms (loss timeout $loss_ms ms)"
    [ "$rc" != 124 ] || fail "dstcfg -a delete hung for 150 s with the export silent ($case)"
    [ "$rc" = 0 ] || fail "dstcfg -a delete failed (status $rc) with the export silent ($case)"
    [ $((t1 - t0)) -le $((loss_ms + 15000)) ] ||
        fail "dstcfg -a delete took $((t1 - t0)) ms with the export silent ($case); expected within the loss timeout ($loss_ms ms) + 15 s"
    while kill -0 "$fio_pid" 2>/dev/null; do
        [ $(( $(now_ms) - t1 )) -lt 30000 ] || fail "fio still running 30 s after its device was deleted ($case)"
        sleep 0.2
    done
    wait "$fio_pid" || fio_rc=$?
    log "fio ended $(( $(now_ms) - t1 )) ms after the delete, status $fio_rc; its errors:"
    sed 's/^/#   /' "$fio_err"
    [ "$fio_rc" != 0 ] || fail "fio succeeded although its IO in flight could not complete ($case)"
    grep -q 'Input/output error' "$fio_err" || fail "fio reported no IO error (EIO) for its IO in flight ($case)"
    [ ! -e "$dev" ] || fail "$dev still exists after the delete ($case)"
    [ ! -d /sys/block/dst0 ] || fail "/sys/block/dst0 still exists after the delete ($case)"
    ip netns exec exp tc qdisc del dev veth-exp root
}
silent_delete connected
silent_delete reconnecting

opts=(--loss-timeout 5000 --req-timeout 2000)
d0=$(ip netns exec loc dstcfg -r 10.9.0.1 -a local "${opts[@]}")
# A second device of the same export: local would return dst0 again.
d1=$(ip netns exec loc dstcfg -r 10.9.0.1 -a local --duplicate "${opts[@]}")
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
timeout 60 ip netns exec loc dstcfg -a delete -d dst0 --force || rc=$?
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

log "before rmmod: dst1 $(dst_field dst1 state); $(ip netns exec loc dstcfg -a list | tail -n +2 | tr -s ' ' | tr '\n' ';')"
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
