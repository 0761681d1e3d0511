#!/usr/bin/env bash
#
# fault_memory_pressure.sh - nothing on the IO path deadlocks on memory
# reclaim: with most of the guest's memory pinned in tmpfs (no swap, so it
# cannot be reclaimed), buffered writes through /dev/dst0 (the page cache must
# be written back through DST to free memory) complete, and fio's crc32c
# verification passes. The harness fails the test on a hung task.
# timeout: 900
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

dstcfg -r 127.0.0.1 -a export -f /dev/ram0
dev=$(dstcfg -r 127.0.0.1 -a local)
# Touch the whole RAM disk first, so brd's own pages are allocated up front.
dd if=/dev/zero of=/dev/ram0 bs=1M count=512 status=none

avail=$(meminfo_kb MemAvailable)
hog_mb=$(( avail / 1024 - 400 ))
log "MemAvailable $((avail / 1024)) MiB: pinning ${hog_mb} MiB in tmpfs"
hog=$(mktemp -d)
mount -t tmpfs -o size=$((hog_mb + 16))m tmpfs "$hog"
dd if=/dev/zero of="$hog/fill" bs=1M count="$hog_mb" status=none || true
log "MemAvailable now $(( $(meminfo_kb MemAvailable) / 1024 )) MiB"

fio --name=pressure --filename="$dev" --ioengine=psync --direct=0 \
    --rw=randwrite --bs=64k --size=256m --fsync_on_close=1 \
    --verify=crc32c --verify_fatal=1 --verify_state_save=0 \
    --output-format=terse --terse-version=3 >"$DST_TEST_OUT/fio.terse" ||
    fail "fio with buffered writes under memory pressure failed"
awk -F';' '{printf "# buffered write %s KiB/s, verify read %s KiB/s\n", $48, $7}' "$DST_TEST_OUT/fio.terse"

umount "$hog"
dstcfg -a delete -d "${dev#/dev/}"
dstcfg -r 127.0.0.1 -a unexport
log "ok"
