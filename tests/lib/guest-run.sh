#!/usr/bin/env bash
#
# guest-run.sh - run one guest test inside the VM; tests/run.sh starts it
# through scripts/vm.sh, one VM per test.
#
# usage: guest-run.sh [--no-insmod] TEST OUTDIR TIMEOUT
#
# Loads dst.ko (unless --no-insmod), runs the bash script TEST with a timeout of
# TIMEOUT seconds and its stdout/stderr in OUTDIR/output.log, looks for tasks
# left stuck in D state (and dumps their stacks into the kernel log if so), then
# writes OUTDIR/status (the test's exit status; 124 = timed out, 125 = dst.ko did
# not load), OUTDIR/note (why, when it is not the test's own verdict) and
# OUTDIR/dmesg.log (the whole kernel log). Only short progress lines go to the
# VM console, so the console log holds kernel messages, not test output.
# The test's name (in log lines and kernel log markers) is OUTDIR's basename.
set -uo pipefail

insmod_first=1
if [ "${1:-}" = --no-insmod ]; then insmod_first=0; shift; fi
[ $# -eq 3 ] || { echo "usage: guest-run.sh [--no-insmod] TEST OUTDIR TIMEOUT" >&2; exit 2; }
test_script=$1 outdir=$2 limit=$3
name=$(basename "$outdir")

mkdir -p "$outdir"
out=$outdir/output.log
: >"$out"
note=""
kmsg() { printf 'dst-test: %s\n' "$*" >/dev/kmsg 2>/dev/null || true; }
say() { printf 'guest-run: %s\n' "$*"; }

export DST_TEST_NAME=$name DST_TEST_OUT=$outdir
# The guest's uptime at the start: how long the boot took (run.sh's boot cost).
read -r booted _ </proc/uptime || booted="?"
say "$name: start (timeout ${limit}s, ${booted}s after boot)"
kmsg "$name: start"
start=$(date +%s.%N)

status=0
if [ "$insmod_first" = 1 ]; then
    if ! insmod "${DST_KO:?DST_KO is not set}" >>"$out" 2>&1; then
        echo "guest-run: insmod $DST_KO failed" >>"$out"
        status=125 note="insmod dst.ko failed"
    fi
fi

if [ "$status" = 0 ]; then
    # timeout runs the test in its own process group and kills all of it.
    timeout --kill-after=10 "$limit" bash "$test_script" >>"$out" 2>&1 </dev/null
    status=$?
    if [ "$status" = 124 ] || [ "$status" = 137 ]; then
        status=124 note="timed out after ${limit}s"
    fi
fi
kmsg "$name: end, status $status"

# Tasks that stay in uninterruptible sleep after the test are stuck on
# something (the hung task detector would only notice after 60 s).
stuck=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
    stuck=$(ps -eo stat=,pid=,comm= | awk '$1 ~ /^D/')
    [ -n "$stuck" ] || break
    sleep 1
done
if [ -n "$stuck" ]; then
    printf 'guest-run: tasks stuck in D state after the test:\n%s\n' "$stuck" >>"$out"
    echo w >/proc/sysrq-trigger 2>/dev/null || true
    note="${note:+$note; }tasks stuck in D state"
    [ "$status" != 0 ] || status=1
fi

elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
printf '%s\n' "$note" >"$outdir/note"
printf '%s\n' "$status" >"$outdir/status"
dmesg >"$outdir/dmesg.log" 2>&1
sync
say "$name: status $status after ${elapsed}s${note:+ ($note)}"
exit "$status"
