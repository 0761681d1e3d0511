#!/usr/bin/env bash
#
# netlink_events.sh - device events are multicast to the "events" group of the
# generic netlink family: creating a device gives "connected", stopping its
# export "lost", exporting again "reconnected", deleting it "deleted", in
# that order. A listener without CAP_NET_ADMIN cannot join the group.
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
dstcfg -r 127.0.0.1 -a export -f /dev/ram0
dstcfg -r 127.0.0.1 -a local
dstcfg -r 127.0.0.1 -a unexport
sleep 2
dstcfg -r 127.0.0.1 -a export -f /dev/ram0
for _ in $(seq 30); do
    grep -q "dst0 reconnected" "$events" && break
    sleep 1
done
dstcfg -a delete -d dst0
sleep 1
kill "$listener" 2>/dev/null || true
wait "$listener" 2>/dev/null || true
log "events: $(grep -v '^listening$' "$events" | tr '\n' ' ')"
# Device events only: the export's session events (numbers 6 to 8, which
# this listener prints as numbers) come in between.
assert_eq "$(grep -E ' (connected|lost|reconnected|failed|deleted)$' "$events" | tr '\n' ' ')" \
    "dst0 connected dst0 lost dst0 reconnected dst0 deleted " "device event sequence"
assert_contains "$(cat "$events")" "dst0 6" "an export session-opened event"

expect_fail as_user "$PYTHON" "$DST_REPO/tests/netlink_raw.py" --events 1
log "unprivileged listener refused: $ERR"
dstcfg -r 127.0.0.1 -a unexport
log "ok"
