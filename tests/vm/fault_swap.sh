#!/usr/bin/env bash
# timeout: 900
# oom-kill: ok
#
# fault_swap.sh - swap on a DST device makes forward progress and keeps its
# data, with protection none and then aead (aead skipped, with a note, if
# dstcfg has no --protection). In each mode the export serves /dev/ram0 on
# 127.0.0.1 and /dev/dst0, the only active swap, is swapped on; then:
#
# 1. A pattern process fills 32 MiB of anonymous memory (each page distinct:
#    seed and page index) and pushes all of it out with madvise(MADV_PAGEOUT).
#    Asserts: pages went to swap (VmSwap > 0) and the writes finished.
# 2. A hog process touches more memory than the guest has available
#    (MemAvailable + SwapCached + 64 MiB), pattern-filled, and verifies it
#    all at the end, bounded by `timeout`. The pattern process then reads
#    its 32 MiB back (mostly from /dev/dst0: the hog evicted the swap cache)
#    and verifies them. Asserts: no page differs, in either process; the hog
#    finishes (having been pushed into swap) or is OOM-killed, within its
#    time bound; nothing but the hog is OOM-killed; no swap or DST I/O error
#    is logged and (aead) no integrity error is counted; every phase,
#    swapoff, delete and unexport included, finishes within its bound (else
#    where tasks are blocked is logged).
# After a failed check a mode goes on where it can (to see, say, whether the
# data comes back after a stall); a failed mode is cleaned up and the next
# one still runs; the test fails at the end if any mode failed.
#
# Why an OOM kill of the hog is acceptable here: the export runs in the same
# guest, so it competes with the hog for the same memory (its request pages,
# socket buffers, TCP receive queue) while the local node writes swap through
# it. The guest as a whole may then legitimately run out of memory. What may
# not happen is a hang: the local node has to make progress by itself (with
# the export on another machine it is the only party under pressure), so a
# stall fails the test: it shows up as the hog outliving its time bound, I/O
# errors once the device gives up on its export, "page allocation stall"
# reports (their stack dumps fail the kernel log check), a hung-task report
# or tasks left in D state. When all of user space waits for swap (this
# shell too), an mlocked watchdog process notices instead: it logs the
# stall, dumps blocked tasks and memory, has the kernel OOM-kill the hog
# (which may get the guest going again: that mode fails, the next one runs)
# and, if nothing moves 90 s later, powers the guest off. Wrong data always
# fails the test.
# The "oom-kill: ok" line at the top lets the runner accept the stack dump that
# is part of an OOM-killer report (and only that; see tests/run.sh).
#
# To keep the run short under emulation (filling memory from Python runs at
# about 16 MiB/s there), part of the guest's memory is set aside as huge
# pages (neither reclaimable nor swappable) so that about 200 MiB are
# available to the workloads, the swap area is the first 256 MiB of
# /dev/dst0 and the hog overshoots by 64 MiB.
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

addr=127.0.0.1
prog=$DST_REPO/tests/lib/swap_mem.py
pattern_mib=32
swap_mib=256
avail_target_mib=200
overshoot_mib=64
hog_timeout=150      # the hog's own bound (timeout(1))
phase_limit=150      # bound of every other phase (fill + pageout, read-back, swapoff)
out=$DST_TEST_OUT
pids=$out/pids       # processes a mode started, for the clean-up after a failure

mib_of() { echo $(( $1 / 1024 )); }

# The waiting loops fork nothing (no date, ps or sleep): when the guest is out
# of memory a fork can stall for minutes, and the loop has to notice that its
# deadline passed. NOW: milliseconds since the epoch.
exec {sleep_fd}<> <(:)
nap() { read -r -t "$1" -u "$sleep_fd" _ || true; }
now() { local t=${EPOCHREALTIME/./}; NOW=$((t / 1000)); }

# running PID: PID exists and is not a zombie.
running() {
    local line=""
    read -r line 2>/dev/null <"/proc/$1/stat" || return 1
    line=${line##*) }
    [ "${line%% *}" != Z ]
}

# dump_blocked: what the guest looks like when something does not finish.
dump_blocked() {
    echo w >/proc/sysrq-trigger 2>/dev/null || true
    log "meminfo: $(grep -E '^(MemFree|MemAvailable|SwapCached|SwapFree|Dirty|Writeback):' /proc/meminfo |
        tr -s ' ' | paste -sd ' ')"
    log "swaps: $(tail -n +2 /proc/swaps | tr -s ' ' | paste -sd ';')"
    if [ -e /sys/block/dst0/inflight ]; then
        log "dst0: in flight $(tr -s ' ' </sys/block/dst0/inflight), state $(dst_field dst0 state || true)"
    fi
    local pid comm
    while read -r _ pid comm; do
        log "D state: $pid $comm"
        sed 's/^/#     /' "/proc/$pid/stack" 2>/dev/null || true
    done < <(ps -eo stat=,pid=,comm= | awk '$1 ~ /^D/')
}

# watch SECS WHAT / watch_end: a phase that must end within SECS seconds.
# The shell's own deadlines cannot act when all of user space waits for swap
# (the shell's pages are swapped out too); an mlocked watchdog (swap_mem.py
# watchdog, one per mode, started by watch_start) then logs, dumps blocked
# tasks and memory into the kernel log and has the kernel OOM-kill the hog,
# which may get the guest going again (the shell then fails the mode and the
# next mode runs); if that does not help, it powers the guest off. The end
# of its input (the mode's subshell ending) ends it: background processes
# must not inherit that pipe ({wd_fd}>&-).
watchdog_lines() { dmesg | grep -c 'fault_swap watchdog:' || true; }
watch_start() { WD0=$(watchdog_lines); exec {wd_fd}> >(exec "$PYTHON" "$prog" watchdog); }
watch() { echo "arm $1 $2" >&"$wd_fd"; }
watch_end() {
    echo disarm >&"$wd_fd"
    [ "$(watchdog_lines)" = "$WD0" ] || {
        problem "the guest was stuck: the watchdog fired (see the kernel log)"
        WD0=$(watchdog_lines)
    }
}

# problem MSG: a failure of the mode that does not stop it, so that what
# comes after (data read back after a stall, say) is still checked.
PROBLEMS=()
problem() {
    printf 'FAIL: %s\n' "$*" >&2
    PROBLEMS+=("$*")
}

# wait_bounded PID SECS WHAT [soft]: wait for the background child PID at
# most SECS seconds; its exit status in $RC, how long it took in $TOOK_S.
# Past the deadline (also when the loop itself could not run for a while),
# log where tasks are blocked and fail; with soft, record the problem, kill
# PID (and its process group, if it leads one) and wait for it (at most
# $phase_limit s more) instead.
wait_bounded() {
    local pid=$1 limit=$2 what=$3 soft=${4:-} start
    now; start=$NOW
    while running "$pid"; do
        now
        if [ $((NOW - start)) -ge $((limit * 1000)) ]; then
            log "$what: not finished after $(( (NOW - start) / 1000 )) s"
            dump_blocked
            [ -n "$soft" ] || fail "$what: no forward progress within $limit s"
            problem "$what: no forward progress within $limit s"
            # timeout(1) leads a process group of its own: end the hog with it.
            kill -9 -- "-$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
            soft="" limit=$((limit + phase_limit)) what="$what, after SIGKILL"
        fi
        nap 0.5
    done
    RC=0
    wait "$pid" || RC=$?
    now; TOOK_S=$(( (NOW - start) / 1000 ))
}

# wait_line FILE REGEX PID SECS WHAT: wait until FILE has a line matching
# REGEX; fail if PID exits first or SECS pass.
wait_line() {
    local file=$1 re=$2 pid=$3 limit=$4 what=$5 start line found=0
    now; start=$NOW
    while :; do
        while read -r line; do
            [[ $line =~ $re ]] && found=1
        done <"$file"
        [ "$found" = 0 ] || return 0
        if ! running "$pid"; then
            sed 's/^/#   /' "$file"
            RC=0
            wait "$pid" || RC=$?
            fail "$what: exited with status $RC"
        fi
        now
        if [ $((NOW - start)) -ge $((limit * 1000)) ]; then
            sed 's/^/#   /' "$file"
            log "$what: not done after $(( (NOW - start) / 1000 )) s"
            dump_blocked
            fail "$what: no forward progress within $limit s"
        fi
        nap 0.5
    done
}

oom_kills() { dmesg | grep -c 'Out of memory: Killed process' || true; }
# oom_killed PID: the kernel log shows an OOM kill of PID.
oom_killed() { in_kernel_log "Out of memory: Killed process $1 "; }
swap_error_re='I/O error, dev dst|(Write|Read)-error on swap-device'
swap_errors() { dmesg | grep -cE "$swap_error_re" || true; }

# run_mode NAME SEED [DSTCFG-OPTIONS...]: one mode, in a subshell (fail ends
# only the mode).
run_mode() {
    local name=$1 seed=$2 t0 ts dev kills0 errs0 swap_kb hold apid hpid hogpid hog_mib
    local rc kills peak read0 written0 avail cached sfree
    shift 2
    now; t0=$NOW
    log "=== protection $name"
    kmsg "fault_swap: protection $name"
    watch_start
    kills0=$(oom_kills) errs0=$(swap_errors)
    dstcfg -r "$addr" -a export -f /dev/ram0 "$@" >/dev/null
    dev=$(dstcfg -r "$addr" -a local "$@")
    assert_eq "$dev" /dev/dst0 "device of protection $name"
    mkswap "$dev" $((swap_mib * 1024)) >/dev/null
    swapon "$dev"
    [ "$(tail -n +2 /proc/swaps | awk '{ print $1 }' | paste -sd ' ')" = "$dev" ] ||
        fail "expected $dev as the only swap: $(cat /proc/swaps)"
    swap_kb=$(awk -v d="$dev" '$1 == d { print $3 }' /proc/swaps)
    read0=$(cat /sys/block/dst0/dst/bytes_read) written0=$(cat /sys/block/dst0/dst/bytes_written)
    log "swap on $dev: $(mib_of "$swap_kb") MiB"

    # 1. Fill, page out, hold.
    hold=$out/hold-$name
    rm -f "$hold"
    : >"$out/pattern-$name.log"
    watch $((phase_limit + 60)) "protection $name, fill and page-out"
    "$PYTHON" "$prog" pageout --mib "$pattern_mib" --seed "$seed" --dev dst0 --hold "$hold" \
        >"$out/pattern-$name.log" 2>&1 {wd_fd}>&- &
    apid=$!
    echo "$apid" >>"$pids"
    wait_line "$out/pattern-$name.log" '^holding' "$apid" "$phase_limit" "pattern process (fill, MADV_PAGEOUT)"
    watch_end
    grep -E '^(filled|paged out)' "$out/pattern-$name.log" | sed 's/^/# pattern: /'

    # 2. Global memory pressure. The pattern's pages still in the swap cache
    # can be dropped without IO but MemAvailable does not count them: the
    # hog covers them too, so that its own pages have to go to swap.
    avail=$(mib_of "$(meminfo_kb MemAvailable)") cached=$(mib_of "$(meminfo_kb SwapCached)")
    sfree=$(mib_of "$(meminfo_kb SwapFree)")
    hog_mib=$(( avail + cached + overshoot_mib ))
    log "hog: $hog_mib MiB (MemAvailable $avail MiB + SwapCached $cached MiB" \
        "+ $overshoot_mib MiB; SwapFree $sfree MiB), at most $hog_timeout s"
    kmsg "fault_swap: protection $name: hog of $hog_mib MiB"
    watch $((hog_timeout + 60)) "protection $name, hog"
    timeout -k 10 "$hog_timeout" "$PYTHON" "$prog" hog --mib "$hog_mib" --seed "$((seed + 1))" \
        >"$out/hog-$name.log" 2>&1 {wd_fd}>&- &
    hpid=$!
    echo "$hpid" >>"$pids"
    wait_bounded "$hpid" $((hog_timeout + 30)) "hog" soft
    rc=$RC
    kmsg "fault_swap: protection $name: hog ended, status $rc after $TOOK_S s"
    sed 's/^/# hog: /' "$out/hog-$name.log"
    watch_end
    hogpid=$(sed -n 's/^pid \([0-9]*\),.*/\1/p' "$out/hog-$name.log")
    case $rc in
        0)
            peak=$(sed -n 's/^peak VmSwap \([0-9]*\) MiB$/\1/p' "$out/hog-$name.log")
            log "hog completed and verified in $TOOK_S s, peak VmSwap ${peak:-?} MiB"
            [ "${peak:-0}" -gt 0 ] || fail "the hog finished without being pushed into swap: no pressure"
            ;;
        1) problem "hog: data read back differs (protection $name)" ;;
        135) problem "hog killed by SIGBUS: a page could not be read back from swap (protection $name)" ;;
        *)
            if [ -n "$hogpid" ] && oom_killed "$hogpid"; then
                log "hog OOM-killed after $TOOK_S s (acceptable: the export shares the guest's memory)"
            elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
                problem "hog: not finished within $hog_timeout s (protection $name)"
            else
                problem "hog: exit status $rc (protection $name)"
            fi
            ;;
    esac
    # timeout(1) sends SIGTERM at $hog_timeout s and SIGKILL 10 s later: a hog
    # that lived longer was stuck in the kernel (an allocation that never
    # returned), whatever ended it in the end.
    [ "$TOOK_S" -le $((hog_timeout + 20)) ] ||
        problem "hog: lived $TOOK_S s, beyond its time bound of $hog_timeout s: the guest was stuck (protection $name)"

    # 1, continued: read back what was paged out.
    watch $((phase_limit + 60)) "protection $name, pattern read-back"
    touch "$hold"
    wait_bounded "$apid" "$phase_limit" "pattern process read-back"
    watch_end
    grep -E '^(read back|MISMATCH)' "$out/pattern-$name.log" | sed 's/^/# pattern: /'
    case $RC in
        0) ;;
        1) problem "pattern process: data read back differs (protection $name)" ;;
        135) problem "pattern process killed by SIGBUS: a page could not be read back from swap (protection $name)" ;;
        *) sed 's/^/#   /' "$out/pattern-$name.log"; problem "pattern process: exit status $RC" ;;
    esac

    kills=$(( $(oom_kills) - kills0 ))
    if [ "$kills" -gt 0 ]; then
        dmesg | grep 'Out of memory: Killed process' | tail -n "$kills" | sed 's/^/# /'
        if [ "$kills" != 1 ] || ! oom_killed "${hogpid:-none}"; then
            problem "the OOM killer killed something else than the hog"
        fi
    fi
    if [ "$(swap_errors)" != "$errs0" ]; then
        log "$(( $(swap_errors) - errs0 )) swap or DST I/O error lines in the kernel log, the first:"
        dmesg | grep -E "$swap_error_re" | tail -n +$((errs0 + 1)) | head -n 3 | sed 's/^/# /'
        problem "swap or DST I/O errors logged (protection $name)"
    fi
    if [ -e /sys/block/dst0/dst/integrity_errors ] && [ "$(cat /sys/block/dst0/dst/integrity_errors)" != 0 ]; then
        problem "$(cat /sys/block/dst0/dst/integrity_errors) integrity errors (protection $name)"
    fi
    log "through dst0: $(( ($(cat /sys/block/dst0/dst/bytes_written) - written0) / 1048576 )) MiB written," \
        "$(( ($(cat /sys/block/dst0/dst/bytes_read) - read0) / 1048576 )) MiB read"

    # 3. Tear down.
    now; ts=$NOW
    watch $((phase_limit + 60)) "protection $name, swapoff"
    swapoff "$dev" {wd_fd}>&- &
    wait_bounded $! "$phase_limit" "swapoff"
    watch_end
    [ "$RC" = 0 ] || fail "swapoff $dev: exit status $RC"
    now; log "swapoff took $((NOW - ts)) ms"
    dstcfg -a delete -d dst0 >/dev/null
    dstcfg -r "$addr" -a unexport >/dev/null
    [ ! -e /sys/block/dst0 ] || fail "dst0 still present after delete"
    now
    [ ${#PROBLEMS[@]} = 0 ] ||
        fail "protection $name: ${#PROBLEMS[@]} problem(s) in $(( (NOW - t0) / 1000 )) s: ${PROBLEMS[*]}"
    log "protection $name: passed in $(( (NOW - t0) / 1000 )) s"
}

# clean_up NAME: after mode NAME failed, end what it started (by pid: the
# ones in $pids and the hog's python), then swapoff, delete and unexport, each
# bounded.
clean_up() {
    local pid start
    log "cleaning up after the failed mode"
    sed -n 's/^pid \([0-9]*\),.*/\1/p' "$out/hog-$1.log" 2>/dev/null >>"$pids" || true
    while read -r pid; do
        kill -9 "$pid" 2>/dev/null || true
    done <"$pids"
    now; start=$NOW
    while read -r pid; do
        while running "$pid"; do
            now
            [ $((NOW - start)) -lt $((phase_limit * 1000)) ] || {
                dump_blocked
                fail "clean-up: pid $pid not gone $phase_limit s after SIGKILL"
            }
            nap 0.5
        done
    done <"$pids"
    if grep -q '^/dev/dst0 ' /proc/swaps; then
        swapoff /dev/dst0 &
        wait_bounded $! "$phase_limit" "swapoff in the clean-up"
    fi
    [ ! -e /sys/block/dst0 ] || dstcfg -a delete -d dst0 >/dev/null || true
    dstcfg -r "$addr" -a unexport >/dev/null 2>&1 || true
}

now; test_t0=$NOW
# Only DST swap: nothing else may take the pages.
swapoff -a
[ "$(tail -n +2 /proc/swaps | grep -c .)" = 0 ] || fail "swap still active after swapoff -a: $(cat /proc/swaps)"

# brd allocates its pages on first write: allocate the swap area's part of
# /dev/ram0 now, so that swap writes need no memory on the export's side of
# brd. Then set memory aside in huge pages until about $avail_target_mib MiB
# are available.
dd if=/dev/zero of=/dev/ram0 bs=1M count=$((swap_mib + 1)) oflag=direct status=none
echo 3 >/proc/sys/vm/drop_caches
avail=$(mib_of "$(meminfo_kb MemAvailable)")
huge_mib=$(( $(meminfo_kb Hugepagesize) / 1024 ))
if [ "$avail" -gt "$avail_target_mib" ]; then
    echo $(( (avail - avail_target_mib) / huge_mib )) >/proc/sys/vm/nr_hugepages
fi
log "MemTotal $(mib_of "$(meminfo_kb MemTotal)") MiB, MemAvailable $avail MiB with" \
    "$((swap_mib + 1)) MiB of /dev/ram0 allocated; $(( $(meminfo_kb HugePages_Total) * huge_mib ))" \
    "MiB set aside in huge pages: MemAvailable now $(mib_of "$(meminfo_kb MemAvailable)") MiB"

key=$(mktemp -d)/psk
psk_file "$key"

modes=("none 0x5a0100")
if has_security; then
    modes+=("aead 0x5a0200 --protection aead --key-file $key")
else
    log "NOTE: dstcfg has no --protection: aead skipped"
fi
failed=()
for m in "${modes[@]}"; do
    read -r -a args <<<"$m"
    : >"$pids"
    # A subshell with errexit of its own (in an if or || list it would be off).
    set +e
    (set -e; run_mode "${args[@]}")
    rc=$?
    set -e
    if [ "$rc" != 0 ]; then
        # The test's own pages are swapped out too: a swap-in that fails
        # kills the subshell with SIGBUS.
        [ "$rc" != 135 ] || log "the mode's shell was killed by SIGBUS: a page could not be read back from swap"
        log "protection ${args[0]}: FAILED"
        failed+=("${args[0]}")
        clean_up "${args[0]}"
    fi
done
echo 0 >/proc/sys/vm/nr_hugepages
[ "$(tail -n +2 /proc/swaps | grep -c .)" = 0 ] || fail "swap still active at the end: $(cat /proc/swaps)"
now; log "all modes done in $(( (NOW - test_t0) / 1000 )) s"
[ ${#failed[@]} = 0 ] || fail "failed with protection: ${failed[*]}"
log "ok"
