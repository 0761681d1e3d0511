#!/usr/bin/env bash
#
# run.sh - the DST test runner.
#
# usage: tests/run.sh [PATTERN | FILE.sh]
#
# 1. Host tests: cargo test of tools/dstcfg and tools/dstpeer (named
#    host:dstcfg-unit, host:dstpeer-unit; every cargo test counts), in the
#    background beside the first guest tests; their lines come with the
#    first guest test to end after them.
# 2. Guest tests: each tests/vm/*.sh whose name matches PATTERN (a substring,
#    or a glob if it contains * ? or [; no PATTERN = all, host tests included)
#    runs in its own fresh VM (scripts/vm.sh) through tests/lib/guest-run.sh.
#    A guest test fails if it exits non-zero, times out, leaves tasks stuck in
#    D state, or if the kernel log shows a warning, BUG, lockdep report, hung
#    task, ... (see kernel_bad below). Test script header lines understood:
#      # timeout: N          per-test timeout in seconds (default 300)
#      # append: ARGS        extra kernel command line arguments
#      # insmod: no          do not load dst.ko before the test
#      # udev: yes           boot with udev (udevd, coldplug, settle): for
#                            tests of udev rules, /dev/disk/by-* links,
#                            udevadm; the others boot without it (scripts/vm.sh
#                            --no-udev), which halves the boot time
#      # suite: no REASON    left out of the whole suite (no PATTERN: make
#                            check), e.g. a test of a known open defect; it
#                            runs when named
#      # host-part: yes      before the VM boots, the script runs on the host
#                            with --host as its argument (DST_TEST_OUT and
#                            DST_REPO set; output in results/<test>/host.log):
#                            for work the guest cannot do, such as building
#                            packages; if it fails, so does the test, unbooted
#      # exclusive: yes      run alone, not beside another guest test (see
#                            DST_TEST_JOBS): for tests whose bounds on time
#                            a second VM on the host's cores could break
#      # oom-kill: ok        the test may cause an OOM kill: the stack dump of
#                            an OOM-killer report (its first "Call Trace:" to
#                            "</TASK>" after "invoked oom-killer:") does not
#                            fail it
# 3. An argument that is a path to a .sh file runs that one script as a guest
#    test (e.g. a scratch test outside the tree); host tests are skipped.
#
# Results go to results/ at the repository root (wiped on each run):
#   results/host-dstcfg-unit/output.log          cargo's output
#   results/<test>/{output,dmesg,console}.log    test output, guest kernel log,
#                                               whole VM console (host side)
#   results/<test>/{status,note}                 exit status, and why
#
# Environment: DST_NO_INSMOD=1 never loads dst.ko (to try the harness without
# a module); DST_TEST_JOBS=N runs up to N guest tests at once (default 2, on
# a host with two cores: a third VM made each test about twice as slow, the
# emulated guests being bound by the cores; "# exclusive: yes" tests still
# run alone); DST_BOOT_LIMIT=SECS stops and boots again a VM that has not
# reached its test in SECS seconds (default 300); KDIR, DST_CACHE,
# DST_VM_CPUS, DST_VM_MEMORY as for scripts/vm.sh.
#
# Prints one line per test as it ends (PASS name (time) / FAIL name (reason),
# with the last 30 lines of output for failures) and, last, "N passed, M
# failed". Exit status 1 if anything failed or nothing ran.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pattern=${1:-}
single=""
if [[ $pattern == *.sh && -f $pattern ]]; then
    single=$(realpath "$pattern")
fi
cd "$repo"
results=$repo/results
default_timeout=300
# How long the host waits beyond a test's own timeout before killing the VM
# (boot, module load, the D-state check and saving the logs).
vm_grace=60
# How long a VM may take to boot to the test's start before it is stopped
# and booted again (see run_guest_test). Boots take 10-40 s here, under load.
boot_limit=${DST_BOOT_LIMIT:-300}
[[ $boot_limit =~ ^[1-9][0-9]*$ ]] || boot_limit=300

# Kernel log lines that fail a test, as fixed, case-sensitive strings.
kernel_bad=(
    'WARNING:' 'BUG:' 'Oops' 'Kernel panic' 'possible circular locking'
    'possible recursive locking' 'inconsistent lock state' 'lockdep' 'KASAN'
    'KFENCE' 'blocked for more than' 'hung_task' 'soft lockup' 'hard LOCKUP'
    'Call Trace:' 'UBSAN' 'refcount_t:' 'list_add corruption'
    'list_del corruption' 'general protection fault'
)
# Lines that match kernel_bad but are normal (boot banners of the debug options).
kernel_benign=(
    'RCU lockdep checking is enabled'
)

passed=0
failed=0
jobs_max=${DST_TEST_JOBS:-2}
[[ $jobs_max =~ ^[1-9][0-9]*$ ]] || jobs_max=1
# Guest tests running in the background: pid -> name.
declare -A running=()
# The host tests' background subshell, until collected.
host_pid=""
trap 'echo "interrupted"; for p in "${!running[@]}" $host_pid; do kill -- "$p" 2>/dev/null; done
      echo "$passed passed, $((failed + 1)) failed"; exit 130' INT TERM

now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1f", e - s }'; }

matches() {
    local name=$1
    [ -n "$pattern" ] || return 0
    if [[ $pattern == *[*?[]* ]]; then
        # shellcheck disable=SC2053 # unquoted on purpose: a glob
        [[ $name == $pattern || $name.sh == $pattern ]]
    else
        [[ $name == *"${pattern%.sh}"* ]]
    fi
}

# show_tail FILE: the last 30 lines of FILE, indented.
show_tail() {
    [ -s "$1" ] || return 0
    echo "    --- last 30 lines of ${1#"$repo"/} ---"
    tail -n 30 "$1" | sed 's/^/    | /'
}

# header_value SCRIPT KEY: the value of a "# KEY: value" line in the header
# (the comment block the script starts with, however long).
header_value() {
    awk -v key="$2" 'NR > 1 && !/^#/ { exit }
        { sub(/^# */, ""); if (index($0, key ": ") == 1) { print substr($0, length(key) + 3); exit } }' "$1"
}

# kernel_hits FILE [kernel-only]: lines of FILE matching kernel_bad. With
# kernel-only, only lines that look like kernel messages ("[   12.345678] ...")
# count: the console also carries the harness' own lines. With oom_ok=1 (the
# test's "# oom-kill: ok"), the stack dump of each OOM-killer report is left
# out (with lockdep its frames can match 'lockdep'); the rest of the report,
# and lines of other CPUs after the dump, still count.
oom_ok=0
kernel_hits() {
    local file=$1 filter=${2:-} bad=() ok=() p
    [ -f "$file" ] || return 0
    for p in "${kernel_bad[@]}"; do bad+=(-e "$p"); done
    for p in "${kernel_benign[@]}"; do ok+=(-e "$p"); done
    if [ "$filter" = kernel-only ]; then
        grep -a -E '^\[ *[0-9]+\.[0-9]+\]' "$file" || true
    else
        cat "$file"
    fi | if [ "$oom_ok" = 1 ]; then
        awk '/invoked oom-killer: / { oom = 1; print; next }
             oom == 1 && /Call Trace:/ { oom = 2; next }
             oom == 2 { if (/<\/TASK>|Mem-Info:|Out of memory/) oom = 0; else next }
             /Out of memory/ { oom = 0 }
             { print }'
    else
        cat
    fi | grep -a -F "${bad[@]}" | grep -a -v -F "${ok[@]}" || true
}

record_pass() { passed=$((passed + 1)); echo "PASS $1 ($2s)"; }
record_fail() { failed=$((failed + 1)); echo "FAIL $1 ($2)"; }

# run_host_tests TOOL: cargo test of tools/TOOL, as test host:TOOL-unit.
run_host_tests() {
    local tool=$1
    local name=host:$tool-unit dir=$results/host-$tool-unit t0 rc=0 p f
    matches "$name" || return 0
    mkdir -p "$dir"
    local log=$dir/output.log
    t0=$(now)
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found" >"$log"
        record_fail "$name" "cargo not found"
        return 0
    fi
    cargo test --release --manifest-path "tools/$tool/Cargo.toml" >"$log" 2>&1 || rc=$?
    # "test result: ok. 12 passed; 0 failed; 0 ignored; ..." per test binary
    read -r p f < <(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$log" |
                    awk '{ p += $1; f += $2 } END { print p + 0, f + 0 }')
    if ! grep -q '^test result: ' "$log"; then
        record_fail "$name" "cargo test exited $rc without running tests"
        show_tail "$log"
        return 0
    fi
    passed=$((passed + p))
    if [ "$f" -gt 0 ]; then
        failed=$((failed + f))
        sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' "$log" | while read -r t; do
            echo "FAIL host:$tool::$t (cargo test)"
        done
        show_tail "$log"
    elif [ "$rc" -ne 0 ]; then
        record_fail "$name" "cargo test exited $rc"
        show_tail "$log"
    else
        echo "PASS $name ($p tests, $(since "$t0")s)"
    fi
}

run_guest_test() {
    local script=$1 name dir limit append insmod_flag=() udev_flag=() t0 rc=0 reason="" st note hits
    name=$(basename "$script" .sh)
    dir=$results/$name
    mkdir -p "$dir"
    limit=$(header_value "$script" timeout)
    [[ $limit =~ ^[0-9]+$ ]] || limit=$default_timeout
    append=$(header_value "$script" append)
    oom_ok=0
    [ "$(header_value "$script" oom-kill)" != ok ] || oom_ok=1
    [ "$(header_value "$script" udev)" = yes ] || udev_flag=(--no-udev)
    if [ "${DST_NO_INSMOD:-0}" = 1 ] || [ "$(header_value "$script" insmod)" = no ]; then
        insmod_flag=(--no-insmod)
    elif [ ! -f "$repo/dst.ko" ]; then
        record_fail "$name" "dst.ko not built: run make"
        return 0
    fi

    # A script from outside the tree may not be visible in the guest (its
    # /tmp is private): run a copy from the test's results folder.
    case $(realpath "$script") in
        "$repo"/tests/vm/*) ;;
        *) cp "$script" "$dir/test.sh"; script=$dir/test.sh ;;
    esac

    t0=$(now)
    if [ "$(header_value "$script" host-part)" = yes ]; then
        rc=0
        DST_TEST_OUT=$dir DST_REPO=$repo timeout "$limit" bash "$script" --host \
            >"$dir/host.log" 2>&1 </dev/null || rc=$?
        if [ "$rc" != 0 ]; then
            record_fail "$name" "host part exited $rc, $(since "$t0")s"
            show_tail "$dir/host.log"
            return 0
        fi
    fi
    local guest_cmd
    guest_cmd=$(printf '%q ' tests/lib/guest-run.sh "${insmod_flag[@]}" "$script" "$dir" "$limit")
    # guest-run.sh loads the module itself so that a failing insmod is logged
    # with the test; vm.sh only sets up the environment.
    # A VM that never reached the test's start did not run DST: the module
    # is loaded after that line. Under software emulation such boots fail
    # now and then, and not because of DST: QEMU's own assertions (in its
    # PCI/MSI-X and IOTLB code, during PCI enumeration; three times in one CI
    # run, twice in a row for one test), and a guest Oops on an int3 that
    # the kernel's own code patching left in an idle CPU's path (before any
    # module was loaded). Such a run is tried again, up to three times in
    # all, and says so. So is a boot that hangs (once in a CI run the guest
    # went silent after mounting the results folder): a VM that has not
    # reached the test's start after boot_limit seconds is stopped, through
    # the process id QEMU wrote, instead of holding its slot for the whole
    # limit. A VM killed by the test's own timeout is not tried again.
    local attempt attempts=3 why vm_pid t_boot
    for attempt in $(seq "$attempts"); do
        rc=0
        rm -f "$dir/qemu.pid"
        # Appended to, not written over: the line below says why a VM was stopped.
        : >"$dir/console.log"
        DST_NO_INSMOD=1 scripts/vm.sh --verbose "${udev_flag[@]}" --rwdir "$dir" --pidfile "$dir/qemu.pid" \
            --timeout $((limit + vm_grace)) --append "$append" -- "$guest_cmd" >>"$dir/console.log" 2>&1 </dev/null &
        vm_pid=$!
        t_boot=$SECONDS
        while kill -0 "$vm_pid" 2>/dev/null && ! grep -aq "guest-run: $name: start" "$dir/console.log"; do
            if [ $((SECONDS - t_boot)) -ge "$boot_limit" ]; then
                printf '\ntests/run.sh: the guest did not reach the test in %ss\n' "$boot_limit" >>"$dir/console.log"
                kill "$(cat "$dir/qemu.pid" 2>/dev/null)" 2>/dev/null || true
                break
            fi
            sleep 1
        done
        wait "$vm_pid" || rc=$?
        rm -f "$dir/qemu.pid"
        if [ -s "$dir/status" ] || [ "$attempt" = "$attempts" ] || [ "$rc" = 124 ] ||
            grep -aq "guest-run: $name: start" "$dir/console.log"; then
            break
        fi
        # QEMU's message may follow a console line the guest had begun, so
        # it is looked for anywhere in a line.
        why=$(grep -a -m1 -o -e 'tests/run.sh: .*' -e 'qemu-system-x86_64: .*' -e 'Kernel panic - .*' -e 'Oops: .*' \
            "$dir/console.log" || echo "VM exit status $rc")
        echo "    (the VM failed before $name started: $why; attempt $attempt of $attempts)"
        mv "$dir/console.log" "$dir/console-boot-failure-$attempt.log"
    done

    if [ ! -s "$dir/status" ]; then
        if [ "$rc" = 124 ]; then
            reason="VM killed after $((limit + vm_grace))s"
        elif grep -aq '^tests/run.sh: ' "$dir/console.log"; then
            reason=$(grep -a -m1 '^tests/run.sh: ' "$dir/console.log")
            reason=${reason#tests/run.sh: }
        elif grep -aq 'Kernel panic' "$dir/console.log"; then
            reason="kernel panic"
        elif grep -aq '^vm.sh: ' "$dir/console.log"; then
            reason=$(grep -a -m1 '^vm.sh: ' "$dir/console.log")
        else
            reason="no result from the guest (VM exit status $rc)"
        fi
    else
        st=$(cat "$dir/status")
        note=$(cat "$dir/note" 2>/dev/null || true)
        if [ "$st" != 0 ]; then
            reason=${note:-exit status $st}
        elif [ -n "$note" ]; then
            reason=$note
        fi
    fi

    # Kernel health: the guest's dmesg, and the console in case the guest died
    # (or something happened after dmesg was saved).
    hits=$(kernel_hits "$dir/dmesg.log")
    [ -n "$hits" ] || hits=$(kernel_hits "$dir/console.log" kernel-only)
    if [ -n "$hits" ]; then
        reason="${reason:+$reason; }kernel log: $(grep -c . <<<"$hits") bad lines"
    fi

    if [ -z "$reason" ]; then
        record_pass "$name" "$(since "$t0")"
        return 0
    fi
    record_fail "$name" "$reason, $(since "$t0")s"
    if [ -n "$hits" ]; then
        echo "    --- kernel log lines ---"
        head -n 40 <<<"$hits" | sed 's/^/    ! /'
    fi
    if [ -s "$dir/output.log" ]; then
        show_tail "$dir/output.log"
    else
        show_tail "$dir/console.log"
    fi
}

# A guest test run in the background: its lines go to a file of its own,
# printed and counted when it ends (collect_one).
start_guest_test() {
    local script=$1 name
    name=$(basename "$script" .sh)
    mkdir -p "$results/$name"
    (
        trap - INT TERM
        run_guest_test "$script"
    ) >"$results/$name/runner.out" 2>&1 &
    running[$!]=$name
}

# Waits for one background test to end; prints its lines and counts them.
collect_one() {
    local pid name
    wait -n -p pid "${!running[@]}" || true
    name=${running[$pid]}
    unset "running[$pid]"
    cat "$results/$name/runner.out"
    passed=$((passed + $(grep -c '^PASS ' "$results/$name/runner.out" || true)))
    failed=$((failed + $(grep -c '^FAIL ' "$results/$name/runner.out" || true)))
    rm -f "$results/$name/runner.out"
}

# Waits for the host tests (if still running in the background), then prints
# their lines and counts them.
collect_host_tests() {
    [ -n "$host_pid" ] || return 0
    wait "$host_pid" || true
    host_pid=""
    cat "$results/host.out"
    local p f
    if ! read -r p f 2>/dev/null <"$results/host.counts"; then
        echo "FAIL host tests (they ended without a count)"
        p=0 f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    rm -f "$results/host.out" "$results/host.counts"
}

# run_order SCRIPT...: the order to start them in, one per line: the longest
# first by their timeout, so that a long test does not start last and run on
# alone, and the exclusive ones last: the host tests (cargo builds on every
# core) run beside the first guest tests, never beside an exclusive one, and
# the slots drain only once, at the end.
run_order() {
    local script limit
    for script in "$@"; do
        limit=$(header_value "$script" timeout)
        [[ $limit =~ ^[0-9]+$ ]] || limit=$default_timeout
        if [ "$(header_value "$script" exclusive)" = yes ]; then
            limit=0
        fi
        printf '%s %s\n' "$limit" "$script"
    done | sort -k1,1nr -k2,2 | cut -d' ' -f2
}

rm -rf "$results"
mkdir -p "$results"

if [ -n "$single" ]; then
    run_guest_test "$single"
else
    # The host tests, in the background beside the first guest tests (most
    # of a guest test's first minute is its boot).
    (
        trap - INT TERM
        run_host_tests dstcfg
        run_host_tests dstpeer
        echo "$passed $failed" >"$results/host.counts"
    ) >"$results/host.out" 2>&1 &
    host_pid=$!
    shopt -s nullglob
    for script in $(run_order tests/vm/*.sh); do
        matches "$(basename "$script" .sh)" || continue
        suite=$(header_value "$script" suite)
        if [ -z "$pattern" ] && [[ $suite == no* ]]; then
            echo "SKIP $(basename "$script" .sh) (not in the suite: ${suite#no}; run it by name)"
            continue
        fi
        if [ "$jobs_max" = 1 ] || [ "$(header_value "$script" exclusive)" = yes ]; then
            collect_host_tests
            while [ "${#running[@]}" -gt 0 ]; do collect_one; done
            run_guest_test "$script"
            continue
        fi
        while [ "${#running[@]}" -ge "$jobs_max" ]; do collect_one; done
        # The host tests' lines as soon as they are done.
        if [ -n "$host_pid" ] && ! kill -0 "$host_pid" 2>/dev/null; then
            collect_host_tests
        fi
        start_guest_test "$script"
    done
    while [ "${#running[@]}" -gt 0 ]; do collect_one; done
    collect_host_tests
fi

trap - INT TERM
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
