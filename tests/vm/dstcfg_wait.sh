#!/usr/bin/env bash
#
# dstcfg_wait.sh - a device configured before its export exists, and asking
# twice: `dstcfg local --wait=60s` started while nothing listens keeps
# trying, and connects once the export appears (the device works: data
# written through it reads back, and is on the export's RAM disk); the same
# request again, in the subcommand and in the -a form, prints the same
# /dev/dst0 and creates nothing (--duplicate does); `--wait=3s` to nothing
# gives up after 3 s with exit status 1 and a message naming the address and
# the refusal, and an error of this node (an index in use) ends --wait at
# once; the -a forms still work (status, list, set, check), as do the new
# ones (monitor --now, status --json with every counter, --loss-timeout in
# humantime units and infinite).
# timeout: 300
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

out=$DST_TEST_OUT
# devices: the number of devices dstcfg list --json shows.
devices() {
    dstcfg list --json | "$PYTHON" -c '
import json, sys
print(sum(1 for e in json.load(sys.stdin) if e["kind"] == "device"))'
}

# 1. The device is asked for before its export exists.
t0=$(now_ms)
dstcfg local -r 127.0.0.1 -p 1030 --wait=60s >"$out/wait.out" 2>"$out/wait.err" &
wait_pid=$!
sleep 4
kill -0 "$wait_pid" 2>/dev/null ||
    fail "local --wait=60s ended before the export existed: $(cat "$out/wait.out" "$out/wait.err")"
assert_eq "$(devices)" 0 "devices while the export does not exist"
dstcfg export -r 127.0.0.1 -p 1030 -f /dev/ram0
t_export=$(now_ms)
wait "$wait_pid" || fail "local --wait=60s failed: $(cat "$out/wait.err")"
t1=$(now_ms)
cat "$out/wait.err"
dev=$(cat "$out/wait.out")
assert_eq "$dev" /dev/dst0 "device of local --wait"
log "local --wait connected $((t1 - t_export)) ms after the export started ($((t1 - t0)) ms in all)"
# The pauses between attempts grow to 5 s at most.
[ $((t1 - t_export)) -le 15000 ] ||
    fail "local --wait connected $((t1 - t_export)) ms after the export started; expected within 15 s"
assert_contains "$(cat "$out/wait.err")" "waiting for the export node at 127.0.0.1:1030" "progress of --wait"
assert_contains "$(cat "$out/wait.err")" "ECONNREFUSED" "what --wait waited for"
wait_dst_state dst0 connected 10
head -c 4M /dev/urandom >"$out/data"
dd if="$out/data" of="$dev" bs=1M oflag=direct status=none
assert_eq "$(dev_sha "$dev" 4)" "$(sha256sum <"$out/data" | cut -d' ' -f1)" "data read back through $dev"
assert_eq "$(dev_sha /dev/ram0 4)" "$(sha256sum <"$out/data" | cut -d' ' -f1)" "data on the export's disk"

# 2. Asking again returns the same device, in both forms.
again=$(dstcfg local -r 127.0.0.1 -p 1030 --wait=60s 2>"$out/again.err") ||
    fail "second local failed: $(cat "$out/again.err")"
assert_eq "$again" /dev/dst0 "second identical local"
assert_contains "$(cat "$out/again.err")" "already" "note of the second local"
again=$(dstcfg -r 127.0.0.1 -p 1030 -a local) || fail "dstcfg -r 127.0.0.1 -p 1030 -a local failed"
assert_eq "$again" /dev/dst0 "the same request in the -a form"
again=$(dstcfg -r 127.0.0.1:1030 local --loss-timeout 5m) || fail "local with other settings failed"
assert_eq "$again" /dev/dst0 "the same export with other settings"
assert_eq "$(dst_field dst0 loss_timeout_ms)" 60000 "loss timeout of dst0 (not re-applied)"
assert_eq "$(devices)" 1 "devices after asking three times"
[ ! -e /dev/dst1 ] || fail "/dev/dst1 exists after asking again"
dup=$(dstcfg local -r 127.0.0.1 -p 1030 --duplicate)
assert_eq "$dup" /dev/dst1 "local --duplicate"
assert_eq "$(devices)" 2 "devices after --duplicate"
dstcfg delete -d dst1

# 3. Waiting for nothing ends, and says why.
t0=$(now_ms)
expect_fail dstcfg local -r 127.0.0.1 -p 1031 --wait=3s
t1=$(now_ms)
log "local --wait=3s to nothing: exit $RC after $((t1 - t0)) ms: $ERR"
assert_eq "$RC" 1 "exit status of local --wait=3s to nothing"
[ $((t1 - t0)) -ge 3000 ] || fail "local --wait=3s gave up after $((t1 - t0)) ms, before 3 s"
[ $((t1 - t0)) -le 15000 ] || fail "local --wait=3s took $((t1 - t0)) ms to give up; expected within 15 s"
assert_contains "$ERR" "gave up waiting for the export node at 127.0.0.1:1031 after" "message of --wait=3s"
assert_contains "$ERR" "Connection refused (ECONNREFUSED)" "the last refusal"
assert_contains "$ERR" "hint: no export listens at 127.0.0.1:1031" "hint after --wait"
# An error of this node is not waited for: index 0 is dst0's.
t0=$(now_ms)
expect_fail dstcfg local -r 127.0.0.1 -p 1031 -i 0 --wait=60s
t1=$(now_ms)
log "local -i 0 --wait=60s: exit $RC after $((t1 - t0)) ms: $ERR"
assert_eq "$RC" 1 "exit status of local -i 0 --wait"
[ $((t1 - t0)) -le 10000 ] || fail "local -i 0 --wait=60s took $((t1 - t0)) ms; a local error must end it at once"
assert_contains "$ERR" "EEXIST" "local -i 0 with dst0 present"
# Without --wait, one attempt.
expect_fail dstcfg -r 127.0.0.1 -p 1031 -a local
assert_contains "$ERR" "ECONNREFUSED" "-a local to nothing"
assert_eq "$(devices)" 1 "devices after the failed requests"

# 4. The -a forms and the new output.
dstcfg -a status | tee "$out/status.txt"
assert_contains "$(cat "$out/status.txt")" "/dev/dst0" "dstcfg -a status"
dstcfg -a check -d dst0 || fail "dstcfg -a check -d dst0 exited $?"
dstcfg -a set -d dst0 --loss-timeout 5m
assert_eq "$(dst_field dst0 loss_timeout_ms)" 300000 "loss timeout after -a set --loss-timeout 5m"
dstcfg set -d dst0 --req-timeout 1500ms --reconnect-delay 0.5s
assert_eq "$(dst_field dst0 req_timeout_ms)" 1500 "request timeout after set --req-timeout 1500ms"
assert_eq "$(dst_field dst0 reconnect_delay_ms)" 500 "reconnect delay after set --reconnect-delay 0.5s"
dstcfg set -d dst0 --loss-timeout infinite
assert_eq "$(dst_field dst0 loss_timeout_ms)" infinite "loss timeout after --loss-timeout infinite"
assert_eq "$(cat /sys/block/dst0/dst/loss_timeout_ms)" infinite "sysfs loss_timeout_ms"
assert_contains "$(dstcfg list)" "loss-timeout infinite" "dstcfg list"
dstcfg status --json >"$out/status.json"
"$PYTHON" - "$out/status.json" <<'EOF' || fail "dstcfg status --json lacks the counters"
import json, sys
doc = json.load(open(sys.argv[1]))
dev, = doc["devices"]
exp, = doc["exports"]
assert dev["device"] == "/dev/dst0", dev
for key in ("in_flight", "reconnects", "resends", "timeouts", "io_errors", "bytes_read",
            "bytes_written", "integrity_errors"):
    assert isinstance(dev[key], int), (key, dev)
assert dev["bytes_written"] >= 4 << 20, dev
assert exp["sessions"] >= 1 and isinstance(exp["refused"], int), exp
EOF
timeout 10 dstcfg monitor --now --json >"$out/monitor.jsonl" 2>/dev/null || true
"$PYTHON" - "$out/monitor.jsonl" <<'EOF' || fail "dstcfg monitor --now did not show dst0 and the export"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
names = {(l["name"], l["state"]) for l in lines if l["event"] == "exists"}
assert ("dst0", "connected") in names, lines
assert any(l["kind"] == "export" and l["state"] == "listening" for l in lines), lines
EOF

dstcfg -a delete -d dst0
dstcfg -r 127.0.0.1 -p 1030 -a unexport
assert_eq "$(dstcfg -a list --json)" "[]" "nothing left"
log "ok"
