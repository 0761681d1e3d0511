#!/usr/bin/env bash
#
# fault_link_down.sh - the link between local and export node goes down under
# load and comes back, twice: for 5 s and for 30 s (the device has the default
# settings: request timeout 15 s, loss timeout 60 s). Asserts: the outage hits
# IO in flight; IO resumes by itself after the link is back (within 25 s);
# fio's crc32c verification passes both times; afterwards the device is
# "connected", `dstcfg -a list --json` counts at least one reconnect, the
# kernel logged no "I/O error, dev dst", and /dev/dst0 and the exported RAM
# disk hold the same data.
# Then a reconnect storm: an aead device with two queues, a 200 ms request
# timeout and a resend limit of 1000, under a verifying fio load (paced to
# outlast the storm), for 40 s: its link goes down for 0.4 s, then the
# export's side sends at 2 Mbit/s for 1 s, again and again, so that
# reconnects fence old sessions
# that still hold requests and their share of the export's memory (this
# once deadlocked the export: a fence waited for requests with the memory
# lock held). Asserts:
# fio's verification passes, no IO error, at least 3 reconnects (a flap
# with nothing in flight costs none; 4 to 49 were seen), and the export
# ends with no more sessions than the device has queues.
# timeout: 900
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

netns_pair
ip netns exec exp dstcfg -r 10.9.0.1 -a export -f /dev/ram0
dev=$(ip netns exec loc dstcfg -r 10.9.0.1 -a local)
assert_eq "$dev" /dev/dst0 "device created"
assert_eq "$(dst_field dst0 state)" connected "state before the outages"
log "settings: req_timeout_ms $(dst_field dst0 req_timeout_ms || echo '?'), loss_timeout_ms $(dst_field dst0 loss_timeout_ms || echo '?')"
errors0=$(dst_io_errors)

# outage SECONDS OFFSET_MIB: fio (writes paced to 8 MiB/s, so that the write
# phase lasts ~12 s) on 96 MiB at OFFSET_MIB; 3 s in, the link goes down for
# SECONDS.
outage() {
    local secs=$1 offset=$2 fio_pid inflight done_before t_down t_up rc=0
    log "outage of ${secs} s under fio load (96 MiB at ${offset} MiB)"
    fio_verify "link-down-${secs}s" --filename="$dev" --rw=randwrite --bs=64k --iodepth=16 \
        --offset="${offset}m" --size=96m --rate=,8m --randseed="$secs" &
    fio_pid=$!
    wait_io_flowing dst0
    kill -0 "$fio_pid" 2>/dev/null || fail "fio ended before the outage began"
    t_down=$(now_ms)
    ip -n loc link set veth-loc down
    sleep 2
    inflight=$(dev_inflight "$dev")
    log "link down; $inflight requests in flight on $dev, state $(dst_field dst0 state)"
    [ "$inflight" -gt 0 ] || fail "no IO in flight during the outage: the test did not test anything"
    sleep $((secs - 2))
    done_before=$(dev_done "$dev")
    log "state before link up: $(dst_field dst0 state)"
    ip -n loc link set veth-loc up
    t_up=$(now_ms)
    log "link was down for $(( (t_up - t_down) / 1000 )).$(( (t_up - t_down) % 1000 / 100 )) s"
    if kill -0 "$fio_pid" 2>/dev/null; then
        wait_done_after "$dev" "$done_before" 25
        log "IO resumed ${WAITED_MS} ms after link up"
    fi
    wait "$fio_pid" || rc=$?
    [ "$rc" = 0 ] || fail "fio verify failed (status $rc) after a ${secs} s outage"
    wait_dst_state dst0 connected 30
    log "after the ${secs} s outage: reconnects $(dst_field dst0 reconnects || echo '?'), resends $(dst_field dst0 resends || echo '?')"
}

outage 5 0
outage 30 96

reconnects=$(dst_field dst0 reconnects) || fail "dstcfg -a list --json has no \"reconnects\" for dst0"
[ "$reconnects" -ge 1 ] || fail "reconnects is $reconnects after a 30 s outage (request timeout 15 s); expected >= 1"
errors=$(( $(dst_io_errors) - errors0 ))
log "kernel log: $errors I/O errors on dst; io_errors $(dst_field dst0 io_errors || echo '?'), timeouts $(dst_field dst0 timeouts || echo '?')"
if io_errors=$(dst_field dst0 io_errors); then
    assert_eq "$io_errors" 0 "io_errors of dst0 after outages shorter than the loss timeout"
fi
[ "$errors" = 0 ] || { dmesg | grep 'I/O error, dev dst' | tail -n 5; fail "$errors I/O errors on dst during outages shorter than the loss timeout"; }

log "compare the first 192 MiB of $dev with /dev/ram0"
assert_eq "$(dev_sha "$dev" 192)" "$(dev_sha /dev/ram0 192)" "checksum of $dev vs /dev/ram0"

ip netns exec loc dstcfg -a delete -d dst0
ip netns exec exp dstcfg -r 10.9.0.1 -a unexport

log "reconnect storm: aead, 2 queues, request timeout 200 ms, link flapping and throttled"
key=$(mktemp -d)/psk
dstcfg -a genkey -f "$key" >/dev/null
ip netns exec exp dstcfg -r 10.9.0.1 -a export -f /dev/ram1 --protection aead --key-file "$key"
# The resend limit is raised: a request in flight across many flaps is
# resent each time, and what is tested here is fencing, not the limit.
dev=$(ip netns exec loc dstcfg -r 10.9.0.1 -a local --queues 2 --req-timeout 200 \
    --max-resends 1000 --reconnect-delay 100 --protection aead --key-file "$key")
fio_verify storm --filename="$dev" --rw=randwrite --bs=4k-256k --size=48m --iodepth=32 \
    --rate=,1m &
fio_pid=$!
wait_io_flowing "${dev#/dev/}"
# Flaps, and spells of a slow export link: replies then wait in the
# export's sender, holding their memory, when the request timeout makes the
# local node reconnect and the new session fences the old one.
end=$(( $(now_ms) + 40000 ))
while [ "$(now_ms)" -lt "$end" ] && kill -0 "$fio_pid" 2>/dev/null; do
    ip -n loc link set veth-loc down
    sleep 0.4
    ip -n loc link set veth-loc up
    ip netns exec exp tc qdisc replace dev veth-exp root netem rate 2mbit
    sleep 1
    ip netns exec exp tc qdisc del dev veth-exp root
    sleep 0.4
done
rc=0
wait "$fio_pid" || rc=$?
[ "$rc" = 0 ] || fail "fio verify failed (status $rc) in the reconnect storm"
wait_dst_state "${dev#/dev/}" connected 30
reconnects=$(dst_field "${dev#/dev/}" reconnects)
log "storm: reconnects $reconnects, resends $(dst_field "${dev#/dev/}" resends), timeouts $(dst_field "${dev#/dev/}" timeouts)"
[ "$reconnects" -ge 3 ] || fail "only $reconnects reconnects in the storm: it tested nothing"
assert_eq "$(dst_field "${dev#/dev/}" io_errors)" 0 "io_errors after the reconnect storm"
sessions=$(ip netns exec exp dstcfg -a list --json | "$PYTHON" -c '
import json, sys
print(sum(e.get("sessions", 0) for e in json.load(sys.stdin) if e.get("kind") == "export"))')
[ "$sessions" -le 2 ] || fail "the export has $sessions sessions after the storm; the device has 2 queues"
ip netns exec loc dstcfg -a delete -d "${dev#/dev/}"
ip netns exec exp dstcfg -r 10.9.0.1 -a unexport
log "ok"
