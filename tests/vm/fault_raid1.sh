#!/usr/bin/env bash
#
# fault_raid1.sh - md raid1 over two DST devices (exports of /dev/ram0 and
# /dev/ram1 on ports 1025 and 1026). Asserts:
# 1. an outage of one export (unexported for 10 s, then exported again) under
#    fio load, shorter than the loss timeout (default 60 s), is invisible to
#    md: the array stays undegraded ([UU], "Failed Devices : 0", the member
#    in_sync), fio's verification passes, the device counts a reconnect;
# 2. after `dstcfg -a set -d dst1 --loss-timeout 3000` (shown in the list),
#    an outage of that export past the loss timeout makes dst1 "failed" and md
#    marks it faulty (within 30 s) while fio on md0 goes on and passes;
# 3. with the export back, dst1 is "connected" again on its own, and
#    `mdadm --remove` + `--re-add` (or `--add`) resyncs it (within 300 s);
#    then the array is [UU] with no failed device, both fio data sets verify
#    on md0, and both legs hold identical data.
# timeout: 900
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

netns_pair
ip netns exec exp dstcfg -r 10.9.0.1 -p 1025 -a export -f /dev/ram0
ip netns exec exp dstcfg -r 10.9.0.1 -p 1026 -a export -f /dev/ram1
d0=$(ip netns exec loc dstcfg -r 10.9.0.1 -p 1025 -a local)
d1=$(ip netns exec loc dstcfg -r 10.9.0.1 -p 1026 -a local)
assert_eq "$d0 $d1" "/dev/dst0 /dev/dst1" "devices created"

echo 50000 >/proc/sys/dev/raid/speed_limit_min
mdadm --create /dev/md0 --level=1 --raid-devices=2 --metadata=1.2 --assume-clean \
    --bitmap=internal --run /dev/dst0 /dev/dst1 </dev/null
md=/sys/block/md0/md
[ -d "$md" ] || fail "/dev/md0 was not created"
cat /proc/mdstat

# undegraded WHAT: the array has both members in sync and nothing failed.
undegraded() {
    local detail
    grep -q '\[UU\]' <(grep -A2 '^md0' /proc/mdstat) || { cat /proc/mdstat; fail "$1: /proc/mdstat does not show [UU]"; }
    detail=$(mdadm --detail /dev/md0)
    grep -Eq 'Failed Devices : 0$' <<<"$detail" || { echo "$detail"; fail "$1: mdadm --detail shows failed devices"; }
    assert_eq "$(cat "$md/degraded")" 0 "$1: $md/degraded"
    assert_contains "$(cat "$md/dev-dst1/state")" in_sync "$1: state of dst1 in md0"
}

# unexport1: stop the export of /dev/ram1 (port 1026).
unexport1() { ip netns exec exp dstcfg -r 10.9.0.1 -p 1026 -a unexport >/dev/null; }
export1() { ip netns exec exp dstcfg -r 10.9.0.1 -p 1026 -a export -f /dev/ram1 >/dev/null; }

# fio on md0, writes paced to 4 MiB/s (64 MiB: a write phase of ~16 s).
md_fio() {
    fio_verify "$1" --filename=/dev/md0 --rw=randwrite --bs=64k --iodepth=16 \
        --offset="$2" --size=64m --rate=,4m --randseed="$3" "${@:4}"
}

log "phase 1: export of dst1 gone for 10 s, shorter than the loss timeout"
assert_eq "$(dst_field dst1 loss_timeout_ms || echo 60000)" 60000 "default loss timeout of dst1"
md_fio raid1-short 0 1 &
fio_pid=$!
wait_io_flowing dst1
kill -0 "$fio_pid" 2>/dev/null || fail "fio ended before the outage began"
t0=$(now_ms)
unexport1
sleep 10
export1
log "export of dst1 back after $(( ($(now_ms) - t0) / 1000 )) s; dst1 $(dst_field dst1 state)"
rc=0
wait "$fio_pid" || rc=$?
[ "$rc" = 0 ] || fail "fio on md0 failed (status $rc) across a 10 s outage of one leg"
wait_dst_state dst1 connected 30
undegraded "after the 10 s outage"
reconnects=$(dst_field dst1 reconnects) || fail "no \"reconnects\" for dst1"
log "dst1: reconnects $reconnects, resends $(dst_field dst1 resends || echo '?')"
[ "$reconnects" -ge 1 ] || fail "dst1 counts $reconnects reconnects after its export was restarted"

log "phase 2: loss timeout of dst1 set to 3 s, export gone past it"
out=$(ip netns exec loc dstcfg -a set -d dst1 --loss-timeout 3000)
assert_eq "$out" "updated /dev/dst1" "dstcfg -a set output"
assert_eq "$(dst_field dst1 loss_timeout_ms)" 3000 "loss_timeout_ms of dst1 after -a set"
assert_eq "$(dst_field dst0 loss_timeout_ms)" 60000 "loss_timeout_ms of dst0 (unchanged)"
md_fio raid1-degrade 64m 2 &
fio_pid=$!
wait_io_flowing dst1
kill -0 "$fio_pid" 2>/dev/null || fail "fio ended before the outage began"
t0=$(now_ms)
unexport1
while [ "$(cat "$md/degraded")" = 0 ]; do
    [ $(( $(now_ms) - t0 )) -lt 30000 ] || { cat /proc/mdstat; fail "md0 not degraded 30 s after the export of dst1 went away (loss timeout 3 s)"; }
    sleep 0.2
done
log "md0 degraded $(( $(now_ms) - t0 )) ms after the export went away; dst1 $(dst_field dst1 state), in md0: $(cat "$md/dev-dst1/state")"
assert_contains "$(cat "$md/dev-dst1/state")" faulty "state of dst1 in md0"
assert_eq "$(dst_field dst1 state)" failed "state of dst1 past its loss timeout"
assert_eq "$(dst_field dst0 state)" connected "state of dst0"
cat /proc/mdstat
# Some writes on the degraded array, then the export comes back.
sleep 3
export1
rc=0
wait "$fio_pid" || rc=$?
[ "$rc" = 0 ] || fail "fio on md0 failed (status $rc) while one leg failed"
wait_dst_state dst1 connected 15
log "dst1 connected again (waited ${WAITED_MS} ms); reconnects $(dst_field dst1 reconnects || echo '?')"

log "phase 3: re-add dst1 and resync"
removed=0
for _ in 1 2 3 4 5 6 7 8 9 10; do
    if mdadm /dev/md0 --remove /dev/dst1; then removed=1; break; fi
    sleep 1
done
[ "$removed" = 1 ] || fail "mdadm --remove /dev/dst1 failed"
t0=$(now_ms)
if mdadm /dev/md0 --re-add /dev/dst1; then
    how=re-add
else
    log "--re-add refused; adding dst1 as a new member"
    mdadm /dev/md0 --add /dev/dst1
    how=add
fi
sleep 1
while :; do
    action=$(cat "$md/sync_action")
    if [ "$action" = idle ] && [ "$(cat "$md/degraded")" = 0 ]; then break; fi
    [ $(( $(now_ms) - t0 )) -lt 300000 ] || { cat /proc/mdstat; fail "resync after --$how not done in 300 s"; }
    sleep 1
done
log "resync after --$how took $(( ($(now_ms) - t0) / 1000 )) s"
cat /proc/mdstat
undegraded "after the resync"

log "verify both data sets on md0"
md_fio raid1-short 0 1 --verify_only || fail "data of phase 1 does not verify on md0"
md_fio raid1-degrade 64m 2 --verify_only || fail "data of phase 2 does not verify on md0"
off=$(mdadm --examine /dev/dst0 | awk '/Data Offset/ { print $4 }')
[[ $off =~ ^[0-9]+$ ]] || fail "no data offset in mdadm --examine /dev/dst0"
# leg_sha DEV: sha256 of the first 128 MiB of array data on the leg DEV.
leg_sha() {
    dd if="$1" bs=1M count=128 skip=$((off * 512)) iflag=direct,skip_bytes status=none |
        sha256sum | cut -d' ' -f1
}
s0=$(leg_sha /dev/ram0)
s1=$(leg_sha /dev/ram1)
smd=$(dev_sha /dev/md0 128)
log "data offset $off sectors; sha256 ram0 ${s0:0:16}, ram1 ${s1:0:16}, md0 ${smd:0:16}"
assert_eq "$s1" "$s0" "first 128 MiB of data on the two legs"
assert_eq "$smd" "$s0" "md0 vs its leg on ram0"

mdadm --stop /dev/md0
ip netns exec loc dstcfg -a delete -d dst0
ip netns exec loc dstcfg -a delete -d dst1
ip netns exec exp dstcfg -r 10.9.0.1 -p 1025 -a unexport
unexport1
log "ok"
