#!/usr/bin/env bash
#
# fault_netem.sh - a bad network between local and export node (netem on both
# ends of the veth pair): 5 % packet loss, then 20 % loss (on the local
# node's end), then 200 ms delay
# each way. Asserts: fio's crc32c verification passes under each; the device
# is "connected" after each; at the end (netem removed) /dev/dst0 and the
# exported RAM disk hold the same data. Logs bandwidth, reconnects and resends
# of each phase (reconnects may happen under 20 % loss: the request timeout
# can expire; the data must survive them).
# timeout: 900
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

netns_pair
ip netns exec exp dstcfg -r 10.9.0.1 -a export -f /dev/ram0
dev=$(ip netns exec loc dstcfg -r 10.9.0.1 -a local)
assert_eq "$dev" /dev/dst0 "device created"

# netem SPEC...: the same netem qdisc on both ends.
netem() {
    ip netns exec loc tc qdisc replace dev veth-loc root netem "$@"
    ip netns exec exp tc qdisc replace dev veth-exp root netem "$@"
    log "netem $* on veth-loc and veth-exp"
}

# netem_one NS DEV SPEC...: a netem qdisc on one end only.
netem_one() {
    local ns=$1 dev=$2
    shift 2
    ip netns exec "$ns" tc qdisc replace dev "$dev" root netem "$@"
    log "netem $* on $dev only"
}

counters() {
    log "$1: state $(dst_field dst0 state), reconnects $(dst_field dst0 reconnects || echo '?'), resends $(dst_field dst0 resends || echo '?')"
}

netem loss 5%
fio_verify netem-loss5 --filename="$dev" --rw=randwrite --bs=64k --iodepth=16 \
    --offset=0 --size=32m --randseed=5 || fail "fio verify failed under 5 % loss"
wait_dst_state dst0 connected 60
counters "after 5 % loss"

# 20 % on both ends loses a third of all round trips: TCP backs off so far
# that even a few MiB take minutes under emulation. The local node's side
# (requests and write data) carries the loss here.
netem_one loc veth-loc loss 20%
fio_verify netem-loss20 --filename="$dev" --rw=randwrite --bs=16k --iodepth=8 \
    --offset=32m --size=4m --randseed=20 || fail "fio verify failed under 20 % loss"
ip netns exec loc tc qdisc del dev veth-loc root
wait_dst_state dst0 connected 60
counters "after 20 % loss"

netem delay 200ms
fio_verify netem-delay200 --filename="$dev" --rw=randwrite --bs=64k --iodepth=16 \
    --offset=48m --size=32m --randseed=200 || fail "fio verify failed with 200 ms delay"
wait_dst_state dst0 connected 60
counters "after 200 ms delay"

ip netns exec loc tc qdisc del dev veth-loc root
ip netns exec exp tc qdisc del dev veth-exp root
log "netem removed; compare the first 80 MiB of $dev with /dev/ram0"
assert_eq "$(dev_sha "$dev" 80)" "$(dev_sha /dev/ram0 80)" "checksum of $dev vs /dev/ram0"

ip netns exec loc dstcfg -a delete -d dst0
ip netns exec exp dstcfg -r 10.9.0.1 -a unexport
log "ok"
