#!/usr/bin/env bash
#
# data_netns.sh - export and local node in two network namespaces joined by a
# veth pair (IPv4 and IPv6): the export lives in the namespace of the dstcfg
# that created it; fio verify passes across the link; two exports and two
# devices at once.
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
dstcfg -a list
dstcfg -a list --json >"$DST_TEST_OUT/list.json"
"$PYTHON" -c 'import json,sys; l=json.load(open(sys.argv[1])); assert len(l)==4, l' "$DST_TEST_OUT/list.json" ||
    fail "list does not show 2 exports and 2 devices"

pids=()
for d in "$d0" "$d1"; do
    fio --name=verify-$(basename $d) --filename="$d" --ioengine=libaio --direct=1 \
        --rw=randwrite --bsrange=4k-512k --size=128m --iodepth=16 \
        --verify=crc32c --verify_fatal=1 --verify_state_save=0 --output=/dev/null &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "fio verify failed on one device"; done

a=$(dd if="$d0" bs=1M count=128 iflag=direct status=none | sha256sum)
b=$(dd if=/dev/ram0 bs=1M count=128 iflag=direct status=none | sha256sum)
assert_eq "$a" "$b" "dst0 vs ram0"

dstcfg -a delete -d dst0
dstcfg -a delete -d dst1
ip netns exec exp dstcfg -r 10.9.0.1 -a unexport
ip netns exec exp dstcfg -r fd00:9::1 -p 2000 -a unexport
log "ok"
