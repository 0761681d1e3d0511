#!/usr/bin/env bash
#
# fault_loss_timeout.sh - the loss timeout: a device created with
# --loss-timeout 5000 --req-timeout 2000 --ping-interval 1000 --ping-timeout
# 2000 loses its link. Asserts: the settings show in `dstcfg -a list --json`;
# a direct write issued right after the link went down waits first (fails no
# sooner than 4 s) and then fails with an I/O error within 15 s (loss timeout
# + request timeout + slack), without hanging; the device goes "reconnecting"
# and then "failed"; in the failed state new reads and writes fail at once
# (within 5 s); once the link is back the device is "connected" again within
# 15 s on its own, a write + read-back works, the data written before the
# outage is intact and a reconnect is counted; `dstcfg -a set` changes the
# loss timeout of the live device; an infinite loss timeout (set through raw
# netlink) lets a write wait out a 12 s outage and succeed, and a loss timeout
# between a day and infinite is refused. (Hung tasks are caught by the
# harness.)
# timeout: 600
# exclusive: yes
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

netns_pair
ip netns exec exp dstcfg -r 10.9.0.1 -a export -f /dev/ram0
dev=$(ip netns exec loc dstcfg -r 10.9.0.1 -a local --loss-timeout 5000 \
    --req-timeout 2000 --ping-interval 1000 --ping-timeout 2000)
assert_eq "$dev" /dev/dst0 "device created"
for kv in req_timeout_ms=2000 ping_interval_ms=1000 ping_timeout_ms=2000 loss_timeout_ms=5000 \
          max_resends=10 reconnect_delay_ms=1000; do
    got=$(dst_field dst0 "${kv%=*}") || fail "dstcfg -a list --json has no \"${kv%=*}\" for dst0"
    assert_eq "$got" "${kv#*=}" "${kv%=*} of dst0"
done
assert_eq "$(dst_field dst0 state)" connected "state before the outage"

tmp=$(mktemp -d)
head -c 1M /dev/urandom >"$tmp/before"
head -c 1M /dev/urandom >"$tmp/after"
dd if="$tmp/before" of="$dev" bs=1M count=1 oflag=direct status=none
dd if="$dev" of="$tmp/check" bs=1M count=1 iflag=direct status=none
cmp -s "$tmp/before" "$tmp/check" || fail "read-back before the outage differs"

ip -n loc link set veth-loc down
t_down=$(now_ms)
log "link down"
# The write, timed by itself, in the background; its status and duration go
# to $tmp/dd.result.
(
    s=$(now_ms) rc=0
    timeout 60 dd if="$tmp/after" of="$dev" bs=64k count=1 seek=100 oflag=direct status=none \
        2>"$tmp/dd.err" || rc=$?
    echo "$rc $(( $(now_ms) - s ))" >"$tmp/dd.result"
) &
dd_pid=$!
# Watch the state while the write waits: the transitions and when they came.
seen="" last=""
while kill -0 "$dd_pid" 2>/dev/null; do
    st=$(dst_field dst0 state || echo "(not listed)")
    if [ "$st" != "$last" ]; then
        seen="$seen $st@$(( $(now_ms) - t_down ))ms"
        last=$st
    fi
    sleep 0.2
done
wait "$dd_pid" || true
read -r rc elapsed <"$tmp/dd.result"
log "states after link down:$seen"
log "write during the outage: status $rc after $elapsed ms: $(cat "$tmp/dd.err")"
[ "$rc" != 124 ] || fail "the write hung for 60 s with the export unreachable (loss timeout 5 s)"
[ "$rc" != 0 ] || fail "the write succeeded with the export unreachable"
assert_contains "$(cat "$tmp/dd.err")" "Input/output error" "dd error during the outage"
[ "$elapsed" -ge 4000 ] || fail "the write failed after $elapsed ms, before the loss timeout (5 s): IO must wait for a reconnect first"
[ "$elapsed" -le 15000 ] || fail "the write failed only after $elapsed ms; expected within 15 s (loss 5 s + request timeout 2 s + slack)"
# The state poll is slow under emulation and may miss the reconnecting
# phase; the kernel log records it for certain.
in_kernel_log "dst0: connection to .* lost: .*; reconnecting" ||
    fail "no 'connection lost; reconnecting' in the kernel log before the failure"
wait_dst_state dst0 failed 5
log "state failed, $(( $(now_ms) - t_down )) ms after link down"

# Failed: new IO fails at once. "At once" is measured against the same dd on
# a local RAM disk, so that a slow guest (starting dd can take seconds under
# a loaded host) does not count as waiting.
s=$(now_ms)
dd if="$tmp/after" of=/dev/ram3 bs=4k count=1 seek=300 oflag=direct status=none
base=$(( $(now_ms) - s ))
for io in write read; do
    s=$(now_ms)
    if [ "$io" = write ]; then
        expect_fail timeout 60 dd if="$tmp/after" of="$dev" bs=4k count=1 seek=300 oflag=direct status=none
    else
        expect_fail timeout 60 dd if="$dev" of=/dev/null bs=4k count=1 skip=300 iflag=direct status=none
    fi
    t=$(( $(now_ms) - s ))
    log "new $io while failed: status $RC after $t ms: $ERR"
    [ "$RC" != 124 ] || fail "a new $io hung on a failed device"
    assert_contains "$ERR" "Input/output error" "new $io on a failed device"
    [ "$t" -le $((base + 3000)) ] ||
        fail "a new $io on a failed device took $t ms to fail (dd on a RAM disk: $base ms); expected at once"
done
assert_eq "$(dst_field dst0 state)" failed "state after IO failed"

ip -n loc link set veth-loc up
t_up=$(now_ms)
log "link up after $(( (t_up - t_down) / 1000 )) s"
wait_dst_state dst0 connected 15
log "connected again ${WAITED_MS} ms after link up"

dd if="$tmp/after" of="$dev" bs=1M count=1 seek=2 oflag=direct status=none ||
    fail "write after the reconnect failed"
dd if="$dev" of="$tmp/check" bs=1M count=1 skip=2 iflag=direct status=none ||
    fail "read after the reconnect failed"
cmp -s "$tmp/after" "$tmp/check" || fail "read-back after the reconnect differs"
dd if="$dev" of="$tmp/check" bs=1M count=1 iflag=direct status=none
cmp -s "$tmp/before" "$tmp/check" || fail "data written before the outage changed"
reconnects=$(dst_field dst0 reconnects) || fail "dstcfg -a list --json has no \"reconnects\" for dst0"
log "reconnects $reconnects, resends $(dst_field dst0 resends || echo '?')"
[ "$reconnects" -ge 1 ] || fail "reconnects is $reconnects after the outage; expected >= 1"

# An infinite loss timeout: IO waits out an outage longer than the 5 s that
# failed it above, and completes once the link is back. Values between a day
# and infinite are refused.
expect_fail ip netns exec loc "$PYTHON" "$DST_REPO/tests/netlink_raw.py" --set-loss 0 86400001
log "loss timeout above a day: $OUT"
assert_contains "$OUT" "at most a day" "the refusal of a loss timeout above a day"
ip netns exec loc "$PYTHON" "$DST_REPO/tests/netlink_raw.py" --set-loss 0 infinite
assert_eq "$(cat /sys/block/dst0/dst/loss_timeout_ms)" infinite "sysfs loss_timeout_ms"
ip -n loc link set veth-loc down
t_down=$(now_ms)
( rc=0
  timeout 120 dd if="$tmp/before" of="$dev" bs=64k count=1 seek=200 oflag=direct status=none \
      2>"$tmp/dd.err" || rc=$?
  echo "$rc" >"$tmp/dd.result" ) &
dd_pid=$!
sleep 12
kill -0 "$dd_pid" 2>/dev/null || fail "the write ended during the outage with an infinite loss timeout: $(cat "$tmp/dd.err")"
assert_eq "$(dst_field dst0 state)" reconnecting "state 12 s into an outage with an infinite loss timeout"
ip -n loc link set veth-loc up
wait "$dd_pid" || true
assert_eq "$(cat "$tmp/dd.result")" 0 "status of the write that waited out the outage"
log "write waited $(( $(now_ms) - t_down )) ms and succeeded"
dd if="$dev" of="$tmp/check" bs=64k count=1 skip=200 iflag=direct status=none
cmp -s <(head -c 64k "$tmp/before") "$tmp/check" || fail "the write that waited out the outage reads back wrong"

# The live device takes new settings.
out=$(ip netns exec loc dstcfg -a set -d dst0 --loss-timeout 60s --ping-interval 0)
assert_eq "$out" "updated /dev/dst0" "dstcfg -a set output"
assert_eq "$(dst_field dst0 loss_timeout_ms)" 60000 "loss_timeout_ms after -a set"
assert_eq "$(dst_field dst0 ping_interval_ms)" 0 "ping_interval_ms after -a set"
assert_eq "$(dst_field dst0 req_timeout_ms)" 2000 "req_timeout_ms (unchanged by -a set)"
expect_fail ip netns exec loc dstcfg -a set -d dst7 --loss-timeout 60s
log "set on a missing device: $ERR"
assert_eq "$(dst_field dst0 state)" connected "state at the end"

rm -rf "$tmp"
ip netns exec loc dstcfg -a delete -d dst0
ip netns exec exp dstcfg -r 10.9.0.1 -a unexport
log "ok"
