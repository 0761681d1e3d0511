#!/usr/bin/env bash
#
# guide_quickstart.sh - the quick start of Documentation/admin-guide.md, run as
# written: every fenced block with the info string "sh guide-test=quickstart/STEP"
# is taken from the guide and run in this shell, in the guide's order, on one
# machine (the guide's loopback variant: EXPORT_ADDR=127.0.0.1,
# EXPORT_DISK=/dev/ram0; MNT is a folder under /tmp). Nothing in the blocks
# is substituted; only the guide's placeholders are set here. Between the
# steps it asserts: the module answers, the export is listed, the device
# exists with the export's size and is connected (-a check exits 0, sysfs
# says so), a file written on it survives a remount, and the teardown leaves
# nothing behind. Along the way `dstcfg -a monitor --json` runs in the
# background and must report dst0 connected and deleted, and exit 0 on SIGINT.
# A block added to the guide's quick start without being run here fails the
# test.
# timeout: 600
# The guide's placeholders are set here and used by the guide's blocks (eval).
# shellcheck disable=SC2034
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

# shellcheck source=tests/lib/guide.sh
. "$DST_REPO/tests/lib/guide.sh"

# The guide's placeholders, loopback variant (used by the guide's blocks).
EXPORT_ADDR=127.0.0.1
EXPORT_DISK=/dev/ram0
MNT=$(mktemp -d /tmp/guide-mnt.XXXXXX)
disk_size=$(blockdev --getsize64 "$EXPORT_DISK")

# Events, for the monitoring section's claims.
events=$DST_TEST_OUT/monitor.jsonl
dstcfg -a monitor --json >"$events" 2>"$DST_TEST_OUT/monitor.err" &
monitor=$!
for _ in $(seq 100); do
    grep -q 'listening for events' "$DST_TEST_OUT/monitor.err" && break
    sleep 0.2
done
grep -q 'listening for events' "$DST_TEST_OUT/monitor.err" ||
    fail "dstcfg -a monitor did not subscribe within 20 s: $(cat "$DST_TEST_OUT/monitor.err")"

guide_step quickstart/status
assert_contains "$(dstcfg -a status)" "wire protocol" "dstcfg -a status"

guide_step quickstart/export
[ "$(dstcfg -a list --json | "$PYTHON" -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 1 ] ||
    fail "the export is not listed: $(dstcfg -a list)"

guide_step quickstart/local
assert_eq "$DEV" /dev/dst0 "device of the quick start"
[ -b "$DEV" ] || fail "$DEV is not a block device"
assert_eq "$(blockdev --getsize64 "$DEV")" "$disk_size" "size of $DEV (the size of $EXPORT_DISK)"
assert_eq "$(dst_field dst0 state)" connected "state of dst0"
assert_eq "$(cat /sys/block/dst0/dst/state)" connected "/sys/block/dst0/dst/state"
out=$(dstcfg -a check -d "$DEV") || fail "dstcfg -a check -d $DEV exited $? for a connected device: $out"
assert_contains "$out" "/dev/dst0 connected" "dstcfg -a check"
status_text=$(dstcfg -a status)
assert_contains "$status_text" "/dev/dst0" "dstcfg -a status lists the device"
assert_contains "$status_text" "/dev/ram0" "dstcfg -a status lists the export"

guide_step quickstart/filesystem
want="hello from $(hostname)"
assert_eq "$(cat "$MNT/hello.txt")" "$want" "the file written"
written=$(cat /sys/block/dst0/dst/bytes_written)
[ "$written" -gt 0 ] || fail "bytes_written of dst0 is $written after mkfs and a file"

guide_step quickstart/remount
assert_eq "$(cat "$MNT/hello.txt")" "$want" "the file after a remount"
# And from the export's disk itself: the ext4 image on ram0, read with
# debugfs (read-only, not exclusive, so while it is exported).
sync
assert_eq "$(debugfs -R 'cat /hello.txt' "$EXPORT_DISK" 2>/dev/null)" "$want" \
    "the file read from the export's disk"

guide_step quickstart/teardown
assert_eq "$(dstcfg -a list --json)" "[]" "nothing left after the teardown"
[ ! -e /dev/dst0 ] || fail "/dev/dst0 still exists after the teardown"
rc=0
dstcfg -a check -d dst0 >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "exit status of dstcfg -a check for a deleted device"

guide_all_run quickstart

# The monitor saw the device come and go; SIGINT ends it with status 0.
for _ in $(seq 50); do
    grep -q '"event": "deleted"' "$events" && break
    sleep 0.2
done
kill -INT "$monitor"
rc=0
wait "$monitor" || rc=$?
assert_eq "$rc" 0 "exit status of dstcfg -a monitor after SIGINT"
log "events: $(tr '\n' ' ' <"$events")"
"$PYTHON" - "$events" <<'EOF' || fail "unexpected events from dstcfg -a monitor --json"
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
seen = [(e["name"], e["event"]) for e in events if e["kind"] == "device"]
assert ("dst0", "connected") in seen, seen
assert ("dst0", "deleted") in seen, seen
assert seen.index(("dst0", "connected")) < seen.index(("dst0", "deleted")), seen
for e in events:
    assert e["time"][:2] == "20" and "T" in e["time"], e
EOF
rmdir "$MNT"
log "ok"
