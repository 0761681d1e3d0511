#!/usr/bin/env bash
#
# export_single_writer.sh - an export grants writes to one local node
# identity at a time: a second identity attaching read-write is refused with
# a message naming the holder (identity and address), a read-only attach
# works, the holder's own second device works; when the holder's last device
# is deleted the write access is free and the second identity gets it;
# `dstcfg release` takes it from a holder that cannot give it back, without
# restarting the export; an export created --shared lets both write.
# dstcfg's side: list --json shows the holder (writer) and the shared flag,
# the refusal comes with a hint (--read-only, release), local --wait gives
# up on it at once instead of waiting, and release says whom it took the
# write access from.
# timeout: 600
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

writer() { cat /sys/kernel/dst/export0/writer; }

# export_json PORT: "shared writer" of the export on PORT in dstcfg list
# --json, each as JSON.
export_json() {
    dstcfg list --json | "$PYTHON" -c '
import json, sys
e = [x for x in json.load(sys.stdin) if x["kind"] == "export" and x["port"] == int(sys.argv[1])][0]
print(json.dumps(e["shared"]), json.dumps(e["writer"]))' "$1"
}

dstcfg export -r 127.0.0.1 -f /dev/ram0
a=$(dstcfg local -r 127.0.0.1 --client-name node-a)
dd if=/dev/urandom of="$DST_TEST_OUT/a" bs=1M count=4 status=none
dd if="$DST_TEST_OUT/a" of="$a" bs=1M oflag=direct status=none
assert_contains "$(writer)" "node-a 127.0.0.1:" "writer after node-a's attach"
assert_contains "$(export_json 1025)" 'false {"name": "node-a", "address": "127.0.0.1", "port": ' "list --json: shared, writer"
assert_contains "$(dstcfg list)" "writer node-a at 127.0.0.1:" "list: writer"

# A second identity, read-write: refused, naming the holder.
expect_fail dstcfg local -r 127.0.0.1 --client-name node-b --duplicate
log "node-b read-write while node-a holds it: $ERR"
assert_contains "$ERR" "in use read-write by node-a at 127.0.0.1:" "refusal message"
assert_contains "$ERR" "dstcfg: hint: another local node writes to this export" "hint of the refusal"
assert_contains "$ERR" "dstcfg local -r 127.0.0.1 --read-only" "hint: read-only"
assert_contains "$ERR" "dstcfg release -r 127.0.0.1" "hint: release"
# --wait does not wait for another's write access: it does not pass.
t0=$(now_ms)
expect_fail dstcfg local -r 127.0.0.1 --client-name node-b --duplicate --wait=30s
t=$(( $(now_ms) - t0 ))
log "node-b read-write with --wait=30s: failed after $t ms"
[ "$t" -lt 20000 ] || fail "local --wait waited $t ms for another's write access"
assert_contains "$ERR" "in use read-write by node-a" "refusal with --wait"
in_kernel_log "refused write access to node-b at 127.0.0.1:.*held by node-a" ||
    fail "the export did not log the refusal"

# Read-only: allowed, and it reads what node-a wrote.
b=$(dstcfg local -r 127.0.0.1 --client-name node-b --read-only --duplicate)
assert_eq "$(blockdev --getro "$b")" 1 "read-only flag of node-b's $b"
assert_eq "$(dev_sha "$b" 4)" "$(sha256sum <"$DST_TEST_OUT/a" | cut -d' ' -f1)" "node-b reads node-a's data"
expect_fail dd if=/dev/zero of="$b" bs=4k count=1 oflag=direct status=none
dstcfg delete -d "${b#/dev/}"

# node-a's second device writes too; deleting it keeps node-a the holder.
a2=$(dstcfg local -r 127.0.0.1 --client-name node-a --duplicate)
dd if=/dev/zero of="$a2" bs=4k count=1 seek=2048 oflag=direct status=none
dstcfg delete -d "${a2#/dev/}"
assert_contains "$(writer)" "node-a" "writer after deleting node-a's second device"
expect_fail dstcfg local -r 127.0.0.1 --client-name node-b --duplicate

# node-a deletes its device: the write access is free, node-b gets it.
dstcfg delete -d "${a#/dev/}"
assert_eq "$(writer)" "" "writer after node-a deleted its last device"
b=$(dstcfg local -r 127.0.0.1 --client-name node-b --reconnect-delay 10s)
dd if=/dev/urandom of="$DST_TEST_OUT/b" bs=1M count=1 status=none
dd if="$DST_TEST_OUT/b" of="$b" bs=1M oflag=direct status=none
assert_contains "$(writer)" "node-b" "writer after node-b's attach"
log "handover node-a -> node-b: $(writer)"

# The admin takes it back (node-b's host died, say): node-b's sessions end,
# node-a attaches before node-b reconnects, and node-b is then refused.
out=$(dstcfg release -r 127.0.0.1)
assert_contains "$out" "took the write access of the export on 127.0.0.1:1025 from node-b at 127.0.0.1:" "release"
a=$(dstcfg local -r 127.0.0.1 --client-name node-a)
assert_contains "$(writer)" "node-a" "writer after release and node-a's attach"
sleep 12
assert_eq "$(dst_field "${b#/dev/}" state)" reconnecting "node-b after the release"
in_kernel_log "write access of node-b taken back" || fail "no log line of the release"
dd if="$a" bs=1M count=1 skip=0 iflag=direct status=none | cmp - "$DST_TEST_OUT/b" ||
    fail "node-a does not read what node-b wrote before the release"
dstcfg delete -d "${b#/dev/}"
dstcfg delete -d "${a#/dev/}"
expect_fail dstcfg release -r 127.0.0.1
log "release with no holder: $ERR"
assert_contains "$ERR" "hint: no local node holds the write access" "release with no holder: hint"
dstcfg unexport -r 127.0.0.1

# --shared: both identities write, each to its own half.
dstcfg export -r 127.0.0.1 -p 1026 -f /dev/ram1 --shared
a=$(dstcfg local -r 127.0.0.1 -p 1026 --client-name node-a)
b=$(dstcfg local -r 127.0.0.1 -p 1026 --client-name node-b --duplicate)
dd if="$DST_TEST_OUT/a" of="$a" bs=1M oflag=direct status=none
dd if="$DST_TEST_OUT/b" of="$b" bs=1M seek=8 oflag=direct status=none
assert_eq "$(dev_sha /dev/ram1 4)" "$(sha256sum <"$DST_TEST_OUT/a" | cut -d' ' -f1)" "node-a's write to the shared export"
assert_eq "$(dev_sha /dev/ram1 1 8)" "$(sha256sum <"$DST_TEST_OUT/b" | cut -d' ' -f1)" "node-b's write to the shared export"
assert_eq "$(cat /sys/kernel/dst/export*/writer | tr -d '\n')" "" "no writer recorded for a shared export"
assert_eq "$(export_json 1026)" "true null" "list --json of a shared export: shared, no writer"
expect_fail dstcfg release -r 127.0.0.1 -p 1026
assert_contains "$ERR" "made --shared" "release of a shared export: hint"
dstcfg delete -d "${a#/dev/}"
dstcfg delete -d "${b#/dev/}"
dstcfg unexport -r 127.0.0.1 -p 1026
log "ok"
