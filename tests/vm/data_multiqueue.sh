#!/usr/bin/env bash
#
# data_multiqueue.sh - a device with two hardware queues, each its own TCP
# connection: the export shows two sessions (sysfs clients), blk-mq has two
# hardware queues, fio with crc32c verify from two jobs passes and the data
# equals the RAM disk's. Then the export restarts under load: both queues
# reconnect by themselves (neither fences the other), the device reports one
# "lost" and one "reconnected" event for the whole device, and verify passes
# again with no IO error. Last, --queues above the CPU count gives one queue
# (and connection) per CPU. First, a device of one queue (the default) has
# no I/O scheduler, as one of several queues has none, and its receive
# threads run at nice -20 while it serves one request at a time (QD1), and
# at nice 0 again once requests queue up (QD32); a receiver the admin pinned
# and reniced keeps that CPU and nice value through both.
# timeout: 600
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

dstcfg -r 127.0.0.1 -a export -f /dev/ram0
dev=$(dstcfg -r 127.0.0.1 -a local)
assert_eq "$(cat /sys/block/dst0/dst/queues)" 1 "queues of a default device"
assert_contains "$(cat /sys/block/dst0/queue/scheduler)" "[none]" "I/O scheduler of a one-queue device"

# ps's field $1 (ni, pid) of the (first) thread whose whole name matches the
# extended regular expression $2 (ps, as pgrep refuses patterns over 15
# characters; awk reads to the end, so that ps never writes into a closed
# pipe).
thread_ps() {
    local v
    v=$(ps -e -o "$1=,comm=" | RE="^($2)\$" awk '$2 ~ ENVIRON["RE"] && !found++ { print $1 }')
    [ -n "$v" ] || fail "no thread $2"
    echo "$v"
}
thread_nice() { thread_ps ni "$1"; }
qd() {
    fio --name=qd"$1" --filename="$dev" --rw=randread --bs=4k --iodepth="$1" \
        --ioengine=libaio --direct=1 --runtime=3 --time_based --size=64m >/dev/null
}
qd 1
assert_eq "$(thread_nice dst0.0-rx)" -20 "receiver's nice value after QD1"
assert_eq "$(thread_nice 'dst-exp-[0-9]+\.[0-9]+')" -20 "export session's nice value after QD1"
assert_eq "$(thread_nice dst0.0-tx)" 0 "sender's nice value after QD1"
qd 32
assert_eq "$(thread_nice dst0.0-rx)" 0 "receiver's nice value after QD32"
# The admin pins the receiver to CPU 1 and renices it: DST leaves both as
# they are, idle (QD1) and busy (QD32), and says so in the kernel log.
rx=$(thread_ps pid dst0.0-rx)
taskset -p -c 1 "$rx" >/dev/null
renice -n 5 -p "$rx" >/dev/null
qd 1
assert_eq "$(thread_nice dst0.0-rx)" 5 "receiver's nice value set by the admin, after QD1"
qd 32
assert_eq "$(thread_nice dst0.0-rx)" 5 "receiver's nice value set by the admin, after QD32"
assert_eq "$(taskset -p "$rx" | awk '{ print $NF }')" 2 "receiver's affinity mask set by the admin"
in_kernel_log "thread $rx: affinity or nice value set from outside" ||
    fail "no kernel log line of the receiver's placement taken over"
dstcfg -a delete -d dst0

dev=$(dstcfg -r 127.0.0.1 -a local --queues 2)
assert_eq "$dev" /dev/dst0 "device created"
assert_eq "$(cat /sys/block/dst0/dst/queues)" 2 "queues in sysfs"
assert_eq "$(ls /sys/block/dst0/mq | wc -l)" 2 "blk-mq hardware queues"
assert_eq "$(cat /sys/kernel/dst/export0/sessions)" 2 "export sessions"
assert_eq "$(wc -l </sys/kernel/dst/export0/clients)" 2 "export clients"

fio_verify mq --filename="$dev" --rw=randwrite --bs=4k-128k --iodepth=16 --numjobs=2 \
    --offset_increment=64m --size=32m --group_reporting
for i in 0 1; do
    assert_eq "$(dev_sha "$dev" 32 $((i * 64)))" "$(dev_sha /dev/ram0 32 $((i * 64)))" \
        "data of job $i"
done

events=$DST_TEST_OUT/events.log
dstcfg -a monitor >"$events" 2>"$DST_TEST_OUT/monitor.err" &
mon=$!
for _ in $(seq 50); do
    grep -q 'listening for events' "$DST_TEST_OUT/monitor.err" && break
    sleep 0.2
done
errors0=$(dst_io_errors)
fio_verify mq-restart --filename="$dev" --rw=randwrite --bs=64k --iodepth=16 --numjobs=2 \
    --offset_increment=128m --size=48m --rate=,4m --group_reporting &
fio_pid=$!
wait_io_flowing dst0
dstcfg -r 127.0.0.1 -a unexport
sleep 2
dstcfg -r 127.0.0.1 -a export -f /dev/ram0
rc=0
wait "$fio_pid" || rc=$?
[ "$rc" = 0 ] || fail "fio verify failed (status $rc) across an export restart with 2 queues"
wait_dst_state dst0 connected 30
assert_eq "$(cat /sys/kernel/dst/export0/sessions)" 2 "export sessions after the restart"
errors=$(( $(dst_io_errors) - errors0 ))
assert_eq "$errors" 0 "I/O errors across the restart"
sleep 1
kill "$mon" 2>/dev/null || true
wait "$mon" 2>/dev/null || true
log "events: $(tr '\n' ';' <"$events")"
assert_eq "$(grep -c ' lost' "$events")" 1 "device-level lost events"
assert_eq "$(grep -c ' reconnected' "$events")" 1 "device-level reconnected events"
in_kernel_log "dst0: reconnected to .* (queue 1)" || fail "queue 1 did not reconnect"

dstcfg -a delete -d dst0

# More queues than CPUs: blk-mq gives one per CPU, and the device opens no
# connection it could not use.
cpus=$(nproc)
dev=$(dstcfg -r 127.0.0.1 -a local --queues $((cpus + 2)))
assert_eq "$(cat /sys/block/dst0/dst/queues)" "$cpus" "queues in sysfs with --queues $((cpus + 2))"
assert_eq "$(ls /sys/block/dst0/mq | wc -l)" "$cpus" "blk-mq hardware queues"
for _ in $(seq 50); do
    # The deleted device's sessions end as their connections are reset.
    [ "$(cat /sys/kernel/dst/export0/sessions)" = "$cpus" ] && break
    sleep 0.1
done
assert_eq "$(cat /sys/kernel/dst/export0/sessions)" "$cpus" "export sessions"
dstcfg -a delete -d dst0
dstcfg -r 127.0.0.1 -a unexport
log "ok"
