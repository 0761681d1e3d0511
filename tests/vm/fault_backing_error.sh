#!/usr/bin/env bash
#
# fault_backing_error.sh - errors of the export's backing device reach the
# local node as IO errors of that request only. The export serves a
# device-mapper device over /dev/ram0 whose sectors 8192..16383 (4..8 MiB) are
# an `error` target, linear elsewhere. Asserts: direct reads and writes
# through /dev/dst0 inside the bad range (whole MiB, single 4 KiB blocks at
# both edges, and a write straddling its start) fail with an I/O error, and
# promptly (within 10 s: an error reply, not a timeout); next to it (the 4 KiB
# blocks just before and just after) and elsewhere they succeed and read back
# what was written; fio verify outside the range passes; the device stays
# "connected" with no reconnect counted.
# timeout: 600
# exclusive: yes
# udev: yes
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

sectors=$(blockdev --getsz /dev/ram0)
dmsetup create dst-bad <<EOF
0 8192 linear /dev/ram0 0
8192 8192 error
16384 $((sectors - 16384)) linear /dev/ram0 16384
EOF
bad=/dev/mapper/dst-bad
[ -b "$bad" ] || dmsetup mknodes dst-bad
[ -b "$bad" ] || fail "$bad was not created"
log "$bad: $(dmsetup table dst-bad | tr '\n' ';')"

netns_pair
ip netns exec exp dstcfg -r 10.9.0.1 -a export -f "$bad"
dev=$(ip netns exec loc dstcfg -r 10.9.0.1 -a local)
assert_eq "$dev" /dev/dst0 "device created"
assert_eq "$(blockdev --getsz "$dev")" "$sectors" "size of $dev in sectors"

tmp=$(mktemp -d)
head -c 1M /dev/urandom >"$tmp/pattern"

# must_fail WHAT DD-ARGS...: dd must fail with an I/O error within 10 s.
must_fail() {
    local what=$1 s t
    shift
    s=$(now_ms)
    expect_fail timeout 60 dd status=none "$@"
    t=$(( $(now_ms) - s ))
    log "$what: failed (status $RC) after $t ms: $ERR"
    [ "$RC" != 124 ] || fail "$what: hung"
    assert_contains "$ERR" "Input/output error" "$what"
    [ "$t" -le 10000 ] || fail "$what: the error took $t ms; expected an error reply, not a timeout"
}

# must_work WHAT 4K-BLOCK: a 4 KiB write and read-back at that block.
must_work() {
    local what=$1 blk=$2
    dd if="$tmp/pattern" of="$dev" bs=4k count=1 seek="$blk" oflag=direct status=none ||
        fail "$what: write of 4 KiB block $blk failed"
    dd if="$dev" of="$tmp/check" bs=4k count=1 skip="$blk" iflag=direct status=none ||
        fail "$what: read of 4 KiB block $blk failed"
    cmp -s <(head -c 4096 "$tmp/pattern") "$tmp/check" || fail "$what: block $blk reads back different data"
    log "$what: 4 KiB block $blk written and read back"
}

# 4 KiB blocks 1024..2047 are bad (sectors 8192..16383).
dd if="$tmp/pattern" of="$dev" bs=1M count=1 oflag=direct status=none || fail "write of the first MiB failed"
dd if="$dev" of="$tmp/check" bs=1M count=1 iflag=direct status=none || fail "read of the first MiB failed"
cmp -s "$tmp/pattern" "$tmp/check" || fail "first MiB reads back different data"

must_fail "1 MiB write at 4 MiB" if="$tmp/pattern" of="$dev" bs=1M count=1 seek=4 oflag=direct
must_fail "1 MiB read at 6 MiB" if="$dev" of=/dev/null bs=1M count=1 skip=6 iflag=direct
must_fail "4 KiB write at the first bad block" if="$tmp/pattern" of="$dev" bs=4k count=1 seek=1024 oflag=direct
must_fail "4 KiB read at the last bad block" if="$dev" of=/dev/null bs=4k count=1 skip=2047 iflag=direct
must_fail "1 MiB write at 3.5 MiB, across the start of the bad range" \
    if="$tmp/pattern" of="$dev" bs=1M count=1 seek=$((3584 * 1024)) oflag=direct,seek_bytes
must_work "just before the bad range" 1023
must_work "just after the bad range" 2048

fio_verify backing-good --filename="$dev" --rw=randwrite --bsrange=4k-256k --iodepth=16 \
    --offset=16m --size=32m --randseed=7 || fail "fio verify outside the bad range failed"

state=$(dst_field dst0 state)
reconnects=$(dst_field dst0 reconnects) || fail "dstcfg -a list --json has no \"reconnects\" for dst0"
log "after the errors: state $state, reconnects $reconnects, resends $(dst_field dst0 resends || echo '?'), kernel log: $(dst_io_errors) I/O errors on dst"
assert_eq "$state" connected "state after backing errors"
assert_eq "$reconnects" 0 "reconnects after backing errors (an IO error is no connection error)"
# The module's own count, if it reports one: at least the 5 failed requests.
if io_errors=$(dst_field dst0 io_errors); then
    log "io_errors: $io_errors"
    [ "$io_errors" -ge 5 ] || fail "io_errors is $io_errors after 5 failed requests"
fi
must_work "after the errors" 4096

rm -rf "$tmp"
ip netns exec loc dstcfg -a delete -d dst0
ip netns exec exp dstcfg -r 10.9.0.1 -a unexport
dmsetup remove dst-bad
log "ok"
