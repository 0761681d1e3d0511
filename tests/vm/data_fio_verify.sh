#!/usr/bin/env bash
#
# data_fio_verify.sh - the data path over loopback: an export of /dev/ram0 and
# a local node on it. /dev/dst0 has the export's size; fio random writes with
# crc32c verification (block sizes 4 KiB..1 MiB, 256 MiB, iodepth 32 and 1)
# pass; afterwards the export's backing device holds exactly what was read
# back through /dev/dst0.
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

log "compare the first 256 MiB of $dev with /dev/ram0"
a=$(dd if="$dev" bs=1M count=256 iflag=direct status=none | sha256sum)
b=$(dd if=/dev/ram0 bs=1M count=256 iflag=direct status=none | sha256sum)
assert_eq "$a" "$b" "checksum of $dev vs /dev/ram0"

dstcfg -a delete -d dst0
[ ! -e "$dev" ] || fail "$dev still exists after delete"
dstcfg -r 127.0.0.1 -a unexport
log "ok"
