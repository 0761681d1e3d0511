#!/usr/bin/env bash
#
# data_netns.sh - export and local node in two network namespaces joined by a
# veth pair (IPv4 and IPv6): the export lives in the namespace of the dstcfg
# that created it; fio verify passes across the link; two exports and two
# devices at once. Management is scoped to the caller's namespace: each lists
# only its own exports and devices, and cannot delete or unexport another's;
# the same address and port serve two exports in two namespaces, and
# unexporting one leaves the other; a namespace that goes away with a
# connected device (open, IO running) and an export takes them down cleanly.
# timeout: 900
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

netns_pair

ip netns exec exp dstcfg -r 10.9.0.1 -a export -f /dev/ram0
ip netns exec exp dstcfg -r fd00:9::1 -p 2000 -a export -f /dev/ram1
# The export is not reachable from the initial namespace.
expect_fail dstcfg -r 10.9.0.1 -a local
log "from the wrong namespace: $ERR"

d0=$(ip netns exec loc dstcfg -r 10.9.0.1 -a local)
d1=$(ip netns exec loc dstcfg -r '[fd00:9::2]' -p 2000 -a local 2>/dev/null ||
     ip netns exec loc dstcfg -r fd00:9::1 -p 2000 -a local)
assert_eq "$d0" /dev/dst0 "first device"
assert_eq "$d1" /dev/dst1 "second device"
# Each namespace lists what belongs to it, and only that.
kinds() {
    ${1:+ip netns exec "$1"} dstcfg -a list --json |
        "$PYTHON" -c 'import json,sys; print(" ".join(e["kind"] for e in json.load(sys.stdin)))'
}
assert_eq "$(kinds exp)" "export export" "list in the export's namespace"
assert_eq "$(kinds loc)" "device device" "list in the local node's namespace"
assert_eq "$(kinds)" "" "list in the initial namespace"
expect_fail dstcfg -a delete -d dst0
assert_contains "$ERR" "no such device in this network namespace" "delete from another namespace"
expect_fail dstcfg -r 10.9.0.1 -a unexport
log "unexport from another namespace: $ERR"

pids=()
for d in "$d0" "$d1"; do
    fio --name=verify-"$(basename "$d")" --filename="$d" --ioengine=libaio --direct=1 \
        --rw=randwrite --bsrange=4k-512k --size=128m --iodepth=16 \
        --verify=crc32c --verify_fatal=1 --verify_state_save=0 --output=/dev/null &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "fio verify failed on one device"; done

a=$(dd if="$d0" bs=1M count=128 iflag=direct status=none | sha256sum)
b=$(dd if=/dev/ram0 bs=1M count=128 iflag=direct status=none | sha256sum)
assert_eq "$a" "$b" "dst0 vs ram0"

ip netns exec loc dstcfg -a delete -d dst0
ip netns exec loc dstcfg -a delete -d dst1
ip netns exec exp dstcfg -r 10.9.0.1 -a unexport
ip netns exec exp dstcfg -r fd00:9::1 -p 2000 -a unexport

# The same address and port in two namespaces: two exports, each its own.
ip netns add ns2
ip -n ns2 link set lo up
ip netns exec exp dstcfg -r 127.0.0.1 -a export -f /dev/ram2
ip netns exec ns2 dstcfg -r 127.0.0.1 -a export -f /dev/ram3
da=$(ip netns exec exp dstcfg -r 127.0.0.1 -a local)
db=$(ip netns exec ns2 dstcfg -r 127.0.0.1 -a local)
dd if=/dev/urandom of="$DST_TEST_OUT/a" bs=1M count=4 status=none
dd if=/dev/urandom of="$DST_TEST_OUT/b" bs=1M count=4 status=none
dd if="$DST_TEST_OUT/a" of="$da" bs=1M oflag=direct status=none
dd if="$DST_TEST_OUT/b" of="$db" bs=1M oflag=direct status=none
assert_eq "$(dev_sha /dev/ram2 4)" "$(sha256sum <"$DST_TEST_OUT/a" | cut -d' ' -f1)" "$da wrote to ram2 (namespace exp)"
assert_eq "$(dev_sha /dev/ram3 4)" "$(sha256sum <"$DST_TEST_OUT/b" | cut -d' ' -f1)" "$db wrote to ram3 (namespace ns2)"
assert_eq "$(kinds ns2)" "export device" "list in ns2"
assert_eq "$(kinds exp)" "export device" "list in exp"
ip netns exec ns2 dstcfg -a delete -d "${db#/dev/}"
ip netns exec ns2 dstcfg -r 127.0.0.1 -a unexport
assert_eq "$(kinds exp)" "export device" "list in exp after ns2's unexport"
assert_eq "$(dev_sha "$da" 4)" "$(dev_sha /dev/ram2 4)" "$da after ns2's unexport"

# A namespace that goes away takes its export and device with it: fio runs
# on the device, held open, when the last process leaves the namespace.
ip netns exec ns2 dstcfg -r 127.0.0.1 -a export -f /dev/ram3
db=$(ip netns exec ns2 dstcfg -r 127.0.0.1 -a local)
fio --name=gone --filename="$db" --ioengine=libaio --direct=1 --rw=randwrite --bs=64k \
    --iodepth=8 --time_based --runtime=600 --output=/dev/null 2>/dev/null &
fio_pid=$!
wait_io_flowing "${db#/dev/}"
kmsg "deleting namespace ns2"
ip netns del ns2
t0=$(now_ms)
while [ -e "$db" ] && [ $(( $(now_ms) - t0 )) -lt 60000 ]; do sleep 0.2; done
[ ! -e "$db" ] || fail "$db still exists 60 s after its namespace was deleted"
log "$db gone $(( $(now_ms) - t0 )) ms after its namespace was deleted"
wait "$fio_pid" && fail "fio on $db did not see its device go away"
in_kernel_log "its network namespace is going away" || fail "no log line of the namespace's teardown"
# The export released ram3: it can be exported again.
dstcfg -r 127.0.0.1 -p 1030 -a export -f /dev/ram3
dstcfg -r 127.0.0.1 -p 1030 -a unexport
ip netns exec exp dstcfg -a delete -d "${da#/dev/}"
ip netns exec exp dstcfg -r 127.0.0.1 -a unexport
log "ok"
