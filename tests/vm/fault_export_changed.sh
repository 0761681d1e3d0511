#!/usr/bin/env bash
#
# fault_export_changed.sh - a reconnect re-checks the grant: an export that
# comes back with a different size or as read-only is refused and reported
# (the device stays "reconnecting" and its size is unchanged); once the export
# is back as it was, the device reconnects by itself and the data is intact.
# timeout: 600
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

dstcfg -r 127.0.0.1 -a export -f /dev/ram0 --size 256M
dev=$(dstcfg -r 127.0.0.1 -a local)
dd if=/dev/urandom of="$DST_TEST_OUT/data" bs=1M count=4 status=none
dd if="$DST_TEST_OUT/data" of="$dev" bs=1M oflag=direct status=none

for changed in "--size 128M" "--size 256M --read-only"; do
    dstcfg -r 127.0.0.1 -a unexport
    # shellcheck disable=SC2086 # word splitting wanted
    dstcfg -r 127.0.0.1 -a export -f /dev/ram0 $changed
    # The refusal is logged once per outage; several attempts must fail.
    sleep 6
    state=$(dst_field dst0 state)
    [ "$state" != connected ] || fail "dst0 reconnected to an export changed by '$changed'"
    assert_eq "$(blockdev --getsize64 "$dev")" $((256 << 20)) "size of $dev"
    assert_eq "$(blockdev --getro "$dev")" 0 "read-only flag of $dev"
    log "export back with '$changed': refused, dst0 $state"
done
in_kernel_log "dst0: the export at 127.0.0.1:1025 changed" ||
    fail "no 'the export ... changed ... refusing it' in the kernel log"

dstcfg -r 127.0.0.1 -a unexport
dstcfg -r 127.0.0.1 -a export -f /dev/ram0 --size 256M
wait_dst_state dst0 connected 30
dd if="$dev" of="$DST_TEST_OUT/back" bs=1M count=4 iflag=direct status=none
cmp "$DST_TEST_OUT/data" "$DST_TEST_OUT/back" || fail "data differs after reconnecting"
log "export back unchanged: reconnected, data intact"
dstcfg -a delete -d dst0
dstcfg -r 127.0.0.1 -a unexport
log "ok"
