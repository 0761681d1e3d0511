#!/usr/bin/env bash
#
# data_fio_verify.sh - the data path over loopback: an export of /dev/ram0 and
# a local node on it. /dev/dst0 has the export's size; fio random writes with
# crc32c verification (block sizes 4 KiB..1 MiB, 256 MiB, iodepth 32 and 1)
# pass; O_DIRECT requests of up to 1 MiB from buffers that are not page
# aligned (tests/lib/direct_unaligned.py: one contiguous buffer, 256 iovecs
# that each span two pages of physically contiguous memory, odd sizes) read
# back what was written with no IO error and no reconnect; afterwards the
# export's backing device holds exactly what was read back through /dev/dst0.
# timeout: 900
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

dstcfg -r 127.0.0.1 -a export -f /dev/ram0
dev=$(dstcfg -r 127.0.0.1 -a local)
assert_eq "$dev" /dev/dst0 "device created"
[ -b "$dev" ] || fail "$dev is not a block device"

want=$(blockdev --getsize64 /dev/ram0)
got=$(blockdev --getsize64 "$dev")
assert_eq "$got" "$want" "size of $dev"
log "$dev: $got bytes, logical block $(blockdev --getss "$dev")"

for qd in 32 1; do
    log "fio randwrite+verify iodepth=$qd"
    fio --name=verify-qd$qd --filename="$dev" --ioengine=libaio --direct=1 \
        --rw=randwrite --bsrange=4k-1m --size=256m --iodepth=$qd \
        --verify=crc32c --verify_fatal=1 --verify_state_save=0 --do_verify=1 --randseed=$qd \
        --output-format=terse --terse-version=3 >"$DST_TEST_OUT/fio-qd$qd.terse" ||
        fail "fio verify failed at iodepth $qd"
    awk -F';' '{printf "# write %s KiB/s, read %s KiB/s\n", $48, $7}' "$DST_TEST_OUT/fio-qd$qd.terse"
done

# Requests whose segments span page boundaries: the local node describes a
# request as single-page pieces, and every such piece must fit its segment
# table whatever the queue limits let through. A phase of this test (verified
# O_DIRECT data on the plain loopback device) rather than a VM of its own; it
# takes 10-20 s under software emulation, mostly Python starting (python -S:
# the script needs only the standard library). Short resend settings for the
# phase: a request the node cannot send or receive then fails after a few
# quick reconnects (about a second) rather than after 10 resends a second
# apart. It writes 8 MiB at 128 MiB, which the comparison with /dev/ram0
# below also covers.
log "O_DIRECT from buffers that are not page aligned (direct_unaligned.py)"
old_resends=$(cat /sys/block/dst0/dst/max_resends)
old_delay=$(cat /sys/block/dst0/dst/reconnect_delay_ms)
dstcfg -a set -d dst0 --max-resends 2 --reconnect-delay 100 >/dev/null
errors0=$(cat /sys/block/dst0/dst/io_errors)
reconnects0=$(cat /sys/block/dst0/dst/reconnects)
t0=$(now_ms)
rc=0
"$PYTHON" -S "$DST_REPO/tests/lib/direct_unaligned.py" "$dev" 128 || rc=$?
errors=$(( $(cat /sys/block/dst0/dst/io_errors) - errors0 ))
reconnects=$(( $(cat /sys/block/dst0/dst/reconnects) - reconnects0 ))
log "direct_unaligned.py: status $rc after $(( $(now_ms) - t0 )) ms, io_errors +$errors, reconnects +$reconnects"
[ "$rc" = 0 ] || fail "O_DIRECT from buffers that are not page aligned: direct_unaligned.py status $rc"
assert_eq "$errors" 0 "io_errors during direct_unaligned.py"
assert_eq "$reconnects" 0 "reconnects during direct_unaligned.py"
dstcfg -a set -d dst0 --max-resends "$old_resends" --reconnect-delay "$old_delay" >/dev/null

log "compare the first 256 MiB of $dev with /dev/ram0"
a=$(dd if="$dev" bs=1M count=256 iflag=direct status=none | sha256sum)
b=$(dd if=/dev/ram0 bs=1M count=256 iflag=direct status=none | sha256sum)
assert_eq "$a" "$b" "checksum of $dev vs /dev/ram0"

dstcfg -a delete -d dst0
[ ! -e "$dev" ] || fail "$dev still exists after delete"
dstcfg -r 127.0.0.1 -a unexport
log "ok"
