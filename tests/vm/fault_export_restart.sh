#!/usr/bin/env bash
#
# fault_export_restart.sh - the export is stopped under load and started again
# 3 s later on the same device and address. Asserts: unexport finishes
# promptly (within 20 s) with a local node connected and IO in flight; the
# device reports "reconnecting" while the export is gone; the local node
# reconnects by itself (IO resumes within 20 s of the new export); fio's
# crc32c verification passes; the device ends "connected" with at least one
# reconnect counted; the kernel logged no "I/O error, dev dst"; /dev/dst0 and
# the RAM disk hold the same data.
# timeout: 600
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

netns_pair
ip netns exec exp dstcfg -r 10.9.0.1 -a export -f /dev/ram0
dev=$(ip netns exec loc dstcfg -r 10.9.0.1 -a local)
assert_eq "$dev" /dev/dst0 "device created"
errors0=$(dst_io_errors)

# Writes paced to 8 MiB/s: the write phase lasts ~12 s plus the outage.
fio_verify export-restart --filename="$dev" --rw=randwrite --bs=64k --iodepth=16 \
    --size=96m --rate=,8m --randseed=3 &
fio_pid=$!
wait_io_flowing dst0
kill -0 "$fio_pid" 2>/dev/null || fail "fio ended before the export was stopped"

t0=$(now_ms)
timeout 60 ip netns exec exp dstcfg -r 10.9.0.1 -a unexport ||
    fail "unexport with a connected local node failed or hung"
t1=$(now_ms)
log "unexport took $((t1 - t0)) ms; $(dev_inflight "$dev") requests in flight"
[ $((t1 - t0)) -le 20000 ] || fail "unexport took $((t1 - t0)) ms with a local node connected"
sleep 1.5
state=$(dst_field dst0 state)
log "state without the export: $state"
assert_eq "$state" reconnecting "state of dst0 while the export is gone"
sleep 1.5
done_before=$(dev_done "$dev")

ip netns exec exp dstcfg -r 10.9.0.1 -a export -f /dev/ram0
log "export back after $(( ($(now_ms) - t0) / 1000 )) s"
if kill -0 "$fio_pid" 2>/dev/null; then
    wait_done_after "$dev" "$done_before" 20
    log "IO resumed ${WAITED_MS} ms after the export came back"
fi
rc=0
wait "$fio_pid" || rc=$?
[ "$rc" = 0 ] || fail "fio verify failed (status $rc) across an export restart"
wait_dst_state dst0 connected 30

reconnects=$(dst_field dst0 reconnects) || fail "dstcfg -a list --json has no \"reconnects\" for dst0"
log "reconnects $reconnects, resends $(dst_field dst0 resends || echo '?')"
[ "$reconnects" -ge 1 ] || fail "reconnects is $reconnects after an export restart; expected >= 1"
errors=$(( $(dst_io_errors) - errors0 ))
[ "$errors" = 0 ] || fail "$errors I/O errors on dst across an export restart"
if io_errors=$(dst_field dst0 io_errors); then
    assert_eq "$io_errors" 0 "io_errors of dst0 across an export restart"
fi

log "compare the first 96 MiB of $dev with /dev/ram0"
assert_eq "$(dev_sha "$dev" 96)" "$(dev_sha /dev/ram0 96)" "checksum of $dev vs /dev/ram0"

ip netns exec loc dstcfg -a delete -d dst0
ip netns exec exp dstcfg -r 10.9.0.1 -a unexport
log "ok"
