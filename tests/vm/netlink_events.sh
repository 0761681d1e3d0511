#!/usr/bin/env bash
#
# netlink_events.sh - device events are multicast to the "events" group of the
# generic netlink family: creating a device gives "connected", stopping its
# export "lost", exporting again "reconnected", deleting it "deleted", in
# that order. A listener without CAP_NET_ADMIN cannot join the group. The
# disk's serial is the export's identity, and the outage and the reconnect
# send change uevents with DST_STATE=reconnecting, then connected.
# timeout: 300
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

events=$DST_TEST_OUT/events.txt
"$PYTHON" "$DST_REPO/tests/netlink_raw.py" --events 40 >"$events" &
listener=$!
for _ in $(seq 100); do
    grep -q '^listening$' "$events" && break
    sleep 0.2
done
grep -q '^listening$' "$events" || fail "the event listener did not subscribe within 20 s"
uevents=$DST_TEST_OUT/uevents.txt
udevadm monitor --kernel --property --subsystem-match=block >"$uevents" 2>&1 &
monitor=$!
sleep 1
dstcfg -r 127.0.0.1 -a export -f /dev/ram0 -n host-a:ram0
dstcfg -r 127.0.0.1 -a local
assert_eq "$(cat /sys/block/dst0/serial)" host-a:ram0 "/sys/block/dst0/serial (the export's identity)"
dstcfg -r 127.0.0.1 -a unexport
sleep 2
dstcfg -r 127.0.0.1 -a export -f /dev/ram0 -n host-a:ram0
for _ in $(seq 30); do
    grep -q "dst0 reconnected" "$events" && break
    sleep 1
done
dstcfg -a delete -d dst0
sleep 1
kill "$listener" "$monitor" 2>/dev/null || true
wait "$listener" "$monitor" 2>/dev/null || true
log "events: $(grep -v '^listening$' "$events" | tr '\n' ' ')"
# Device events only: the export's session events (numbers 6 to 8, which
# this listener prints as numbers) come in between.
assert_eq "$(grep -E ' (connected|lost|reconnected|failed|deleted)$' "$events" | tr '\n' ' ')" \
    "dst0 connected dst0 lost dst0 reconnected dst0 deleted " "device event sequence"
assert_contains "$(cat "$events")" "dst0 6" "an export session-opened event"
# The same changes as uevents on the disk, for udev, md and systemd.
states=$(awk '/^KERNEL.* change .*\/dst0 / { c = 1 } /^$/ { c = 0 }
              c && /^DST_STATE=/ { sub("DST_STATE=", ""); printf "%s ", $0 }' "$uevents")
log "uevent states: $states"
assert_eq "$states" "reconnecting connected " "DST_STATE of the change uevents on dst0"

expect_fail as_user "$PYTHON" "$DST_REPO/tests/netlink_raw.py" --events 1
log "unprivileged listener refused: $ERR"
dstcfg -r 127.0.0.1 -a unexport
log "ok"
