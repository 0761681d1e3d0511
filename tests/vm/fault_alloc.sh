#!/usr/bin/env bash
#
# fault_alloc.sh - allocation failures injected into the module's own
# allocations: failslab and fail_page_alloc, filtered to call stacks that pass
# through dst.ko (the stacktrace filter over the module's address range), so
# the rest of the guest allocates normally.
#
# 1. Under load: while fio writes and verifies through /dev/dst0 (protection
#    none, then aead with a key), 5 % of the module's allocations fail. No IO
#    may fail, the data must verify, the device may reconnect only a few
#    times (no reconnect storm), and injections must really have happened.
# 2. Creation at each step: device creation (`dstcfg -a local`) and export
#    start (`dstcfg -a export`) run again and again with one failure injected
#    at a later allocation each time (the `space` byte budget, stepped through
#    everything one successful run allocates). Each run must either succeed
#    or fail with a message, leaving no device, export or thread behind; the
#    module must unload at the end.
# timeout: 1500
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

dbg=/sys/kernel/debug
mountpoint -q "$dbg" || mount -t debugfs none "$dbg"
{ [ -d "$dbg/failslab" ] && [ -d "$dbg/fail_page_alloc" ]; } ||
    fail "the kernel has no failslab/fail_page_alloc (CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC)"
[ -e "$dbg/failslab/require-start" ] ||
    fail "the kernel has no stacktrace filter (CONFIG_FAULT_INJECTION_STACKTRACE_FILTER)"

read -r _ mod_size _ _ _ mod_base _ < <(grep '^dst ' /proc/modules)
mod_end=$(printf '%#x' $((mod_base + mod_size)))
log "dst.ko at $mod_base, $mod_size bytes"

# inject PROBABILITY TIMES SPACE: fail allocations made from dst.ko.
inject() {
    local d
    for d in "$dbg/failslab" "$dbg/fail_page_alloc"; do
        echo 0 >"$d/probability"
        echo N >"$d/ignore-gfp-wait"
        [ ! -e "$d/ignore-gfp-highmem" ] || echo N >"$d/ignore-gfp-highmem"
        [ ! -e "$d/min-order" ] || echo 0 >"$d/min-order"
        [ ! -e "$d/cache-filter" ] || echo N >"$d/cache-filter"
        echo "$mod_base" >"$d/require-start"
        echo "$mod_end" >"$d/require-end"
        echo 0 >"$d/reject-start"
        echo 0 >"$d/reject-end"
        echo 1 >"$d/interval"
        echo 0 >"$d/verbose"
        echo "$2" >"$d/times"
        echo "$3" >"$d/space"
        echo "$1" >"$d/probability"
    done
}
no_inject() {
    echo 0 >"$dbg/failslab/probability"
    echo 0 >"$dbg/fail_page_alloc/probability"
}
# Injections left of a TIMES budget, both kinds together.
times_left() {
    echo $(( $(cat "$dbg/failslab/times") + $(cat "$dbg/fail_page_alloc/times") ))
}
trap no_inject EXIT

tmp=$(mktemp -d)
psk_file "$tmp/psk"
port=2400
# brd allocates a page on the first write to it, from the export's call stack
# when the export submits the bio: touch the RAM disk first, so that only
# DST's own allocations (and the network's on its behalf) can fail.
dd if=/dev/zero of=/dev/ram0 bs=1M count=256 status=none

# --- 1. a verifying load with 5 % of the module's allocations failing ---------
for mode in none aead; do
    sec=()
    [ "$mode" = none ] || sec=(--protection aead --key-file "$tmp/psk")
    port=$((port + 1))
    dstcfg -r 127.0.0.1 -p "$port" -a export -f /dev/ram0 --size 256M "${sec[@]}"
    dev=$(dstcfg -r 127.0.0.1 -p "$port" -a local "${sec[@]}")
    errors0=$(dst_io_errors)
    inject 5 1000000000 0
    rc=0
    fio_verify "alloc-$mode" --filename="$dev" --rw=randwrite --bsrange=4k-256k \
        --size=64m --iodepth=16 --randseed=7 || rc=$?
    left=$(times_left)
    no_inject
    injected=$(( 2000000000 - left ))
    reconnects=$(dst_field "$dev" reconnects)
    errors=$(( $(dst_io_errors) - errors0 ))
    log "$mode: $injected allocations failed under fio; $reconnects reconnects, $errors IO errors"
    [ "$rc" = 0 ] || fail "$mode: fio verify failed with allocations failing"
    [ "$errors" = 0 ] || fail "$mode: $errors IO errors with allocations failing"
    [ "$injected" -gt 0 ] || fail "$mode: no allocation failure was injected (the filter matched nothing)"
    [ "$reconnects" -le 5 ] || fail "$mode: $reconnects reconnects: a reconnect storm"
    dstcfg -a delete -d "${dev#/dev/}"
    dstcfg -r 127.0.0.1 -p "$port" -a unexport
done

# --- 2. creation with a failure at each step ----------------------------------
# dst_threads: how many of the module's kernel threads run.
dst_threads() { pgrep -c '^dst' || true; }

# clean_state WHAT KEEP: no device, no export (unless KEEP is keep-export), and
# no more threads than $threads0 (session threads end shortly after their peer
# goes, so wait a little for them).
clean_state() {
    local what=$1 n
    for _ in $(seq 50); do
        n=$(dst_threads)
        [ "$n" -gt "$threads0" ] || break
        sleep 0.1
    done
    [ "$n" -le "$threads0" ] || fail "$what: $n module threads, $threads0 before"
    ! ls /dev/dst[0-9]* >/dev/null 2>&1 || fail "$what: a device node is left: $(ls /dev/dst[0-9]*)"
    [ "$2" = keep-export ] || ! compgen -G '/sys/kernel/dst/export*' >/dev/null ||
        fail "$what: an export is left"
}

# step_through NAME SETUP RUN UNDO: RUN once without injection to learn how many
# bytes it allocates, then once per step with the first failure at that byte.
step_through() {
    local name=$1 setup=$2 run=$3 undo=$4 keep=$5 total space step ok=0 failed=0 out=
    $setup
    threads0=$(dst_threads)
    inject 100 1 1000000000
    $run >/dev/null
    total=$(( 1000000000 - $(cat "$dbg/failslab/space") ))
    no_inject
    $undo
    step=$(( total / 20 ))
    [ "$step" -ge 64 ] || step=64
    log "$name: a successful run allocates $total bytes in dst.ko call stacks; failing at every $step bytes"
    for space in $(seq 0 "$step" "$total"); do
        inject 100 1 "$space"
        if out=$($run 2>&1); then
            no_inject
            ok=$((ok + 1))
            $undo
        else
            no_inject
            failed=$((failed + 1))
            [ -n "$out" ] || fail "$name: failed at byte $space without a message"
            [ "$failed" -gt 1 ] || log "$name: first failure says: $out"
        fi
        clean_state "$name at byte $space" "$keep"
    done
    log "$name: $failed runs failed cleanly, $ok succeeded"
    [ "$failed" -gt 0 ] || fail "$name: no run failed: nothing was injected"
}

port=$((port + 1))
export_up() { dstcfg -r 127.0.0.1 -p "$port" -a export -f /dev/ram0 --size 64M; }
export_down() { dstcfg -r 127.0.0.1 -p "$port" -a unexport >/dev/null; }
device_up() { dstcfg -r 127.0.0.1 -p "$port" -a local; }
device_down() { dstcfg -a delete -d dst0 >/dev/null; }

step_through "device creation" export_up device_up device_down keep-export
export_down
step_through "export start" : export_up export_down none

dst_unload
dst_load
log "ok"
