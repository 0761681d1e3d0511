#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# run.sh - the DST benchmark (`make bench`): boots the test kernel once
# (scripts/vm.sh), runs bench/guest.sh in it (fio on brd, DST with each data
# protection mode, NVMe/TCP and NBD, all over loopback), then writes the
# report with bench/report.py and prints the DST / NVMe-TCP and DST / NBD
# ratios. Documentation/performance.md explains the jobs, targets and outputs.
#
# usage: bench/run.sh          (after `make all`; `make bench` does both)
#
# Environment:
#   BENCH_RUNTIME          measured seconds per fio job (default 8)
#   BENCH_RAMP             ramp seconds before that (default 2)
#   BENCH_ROUNDS           repeat the whole job x target matrix (default 1;
#                          the report takes the median of the rounds)
#   BENCH_TARGETS          targets, in order (default: brd nvme-tcp nbd
#                          dst-none dst-crc32c dst-aead)
#   BENCH_JOBS             jobs (default: seqread seqwrite randread randwrite
#                          randread-qd1)
#   BENCH_DST_QUEUES       --queues for DST local nodes: auto (= vCPUs, if
#                          dstcfg has --queues; the default), N, or 0 (never)
#   BENCH_PROFILE=1        also profile (perf record -a -g) the jobs in
#                          BENCH_PROFILE_JOBS (default: seqwrite randread) on
#                          BENCH_PROFILE_TARGETS (default: dst-none dst-crc32c
#                          nvme-tcp), BENCH_PROFILE_RUNTIME s each (default 15);
#                          needs perf (Debian package linux-perf) on the host
#   BENCH_CONNECTS         connect (and delete) a DST device this many times
#                          per DST target after the jobs (default 10)
#   BENCH_BASELINE=REV     also run everything with the module and dstcfg of
#                          commit REV (built against the same kernel, cached):
#                          one VM per round, REV's and this tree's in turn;
#                          the report compares the two
#   BENCH_OUT              output folder (default: bench/out; emptied first;
#                          the baseline's run in BENCH_OUT/baseline)
#
# The guest has one 512 MiB RAM disk per target (brd.rd_nr is raised above the
# default 4 if needed); all targets are set up at once and the jobs run
# interleaved across them (see bench/guest.sh).
#   BENCH_WAIT_QUIET=SECS  first wait up to SECS seconds for the host to calm
#                          down (1-minute load average below half its cores);
#                          numbers from an overloaded host mostly measure how
#                          late the host runs the guest's vCPU threads
#   DST_VM_CPUS            guest vCPUs (default 2)
#   DST_VM_MEMORY          guest memory (default here: 1.5 GiB + 640 MiB per
#                          target, as each target has its own filled RAM disk)
#
# Output in BENCH_OUT: results.json, results.md, throughput.svg, guest.log,
# dmesg.log, raw/ (fio JSON per job), profile/ (with BENCH_PROFILE=1).
# Exit status: 0 if the report was written (targets that are not available
# are listed as such), 1 otherwise.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${BENCH_OUT:-$repo/bench/out}
runtime=${BENCH_RUNTIME:-8}
ramp=${BENCH_RAMP:-2}
rounds=${BENCH_ROUNDS:-1}
targets=${BENCH_TARGETS:-brd nvme-tcp nbd dst-none dst-crc32c dst-aead}
jobs=${BENCH_JOBS:-seqread seqwrite randread randwrite randread-qd1}
profile=${BENCH_PROFILE:-0}
profile_runtime=${BENCH_PROFILE_RUNTIME:-15}
connects=${BENCH_CONNECTS:-10}
baseline=${BENCH_BASELINE:-}
cache=${DST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dst}
python=$(command -v python3)

for v in "$runtime" "$ramp" "$rounds" "$profile_runtime" "$connects"; do
    [[ $v =~ ^[0-9]+$ ]] || {
        echo "run.sh: BENCH_RUNTIME, BENCH_RAMP, BENCH_ROUNDS, BENCH_PROFILE_RUNTIME, BENCH_CONNECTS want whole numbers" >&2
        exit 1
    }
done
[ -f "$repo/dst.ko" ] || { echo "run.sh: dst.ko not built; run make (or make bench)" >&2; exit 1; }

mkdir -p "$out"
out=$(cd "$out" && pwd)

# One RAM disk per target; memory for them (filled) and the rest.
ntargets=$(wc -w <<<"$targets")
njobs=$(wc -w <<<"$jobs")
nram=$((ntargets > 4 ? ntargets : 4))
export DST_VM_MEMORY=${DST_VM_MEMORY:-$((1536 + 640 * ntargets))M}

# Time budget: per job start-up, ramp, runtime and slack under emulation;
# per target set-up, fill and teardown; the profile runs (perf script is
# slow under emulation); boot.
per_job=$((runtime + ramp + 25))
budget=$((rounds * ntargets * njobs * per_job + ntargets * 90))
if [ "$profile" = 1 ]; then
    budget=$((budget + 6 * (profile_runtime + ramp + 25 + 180)))
fi
limit=$((budget * 2 + 600))

# A busy host (other VMs, builds) delays the guest's vCPUs: cross-CPU
# wake-ups then take milliseconds. Optionally wait for a quieter moment.
cores=$(nproc)
quiet() { awk -v c="$cores" '{ exit !($1 < c / 2) }' /proc/loadavg; }
if [ "${BENCH_WAIT_QUIET:-0}" -gt 0 ] && ! quiet; then
    echo "bench: host load $(cut -d' ' -f1-3 /proc/loadavg) on $cores cores; waiting up to ${BENCH_WAIT_QUIET}s for it to drop"
    waited=0
    while ! quiet && [ "$waited" -lt "$BENCH_WAIT_QUIET" ]; do
        sleep 10
        waited=$((waited + 10))
    done
fi
if ! awk -v c="$cores" '{ exit !($1 < c) }' /proc/loadavg; then
    echo "bench: warning: host load $(cut -d' ' -f1-3 /proc/loadavg) on $cores cores: expect distorted numbers" >&2
fi

# measure OUT BUILD [ROUND]: one VM run of bench/guest.sh with BUILD's dst.ko
# and dstcfg, raw results in OUT/raw (emptied first). With ROUND, the VM
# runs that one round only, and OUT/raw is emptied only for round 1.
measure() {
    local out=$1 build=$2 round=${3:-} start status elapsed vm_rounds=$rounds
    mkdir -p "$out"
    if [ -z "$round" ] || [ "$round" = 1 ]; then
        rm -rf "${out:?}/raw" "$out/profile" "$out"/results.* "$out"/*.svg "$out"/*.log
    fi
    [ -z "$round" ] || vm_rounds=1
    mkdir -p "$out/raw"
    {
        echo "host_cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
        echo "host_cores=$(nproc)"
        echo "host_load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
        echo "qemu=$(qemu-system-x86_64 --version 2>/dev/null | head -1)"
        echo "emulation=QEMU TCG (software emulation, vng --disable-kvm)"
        echo "vm_memory=$DST_VM_MEMORY"
    } >"$out/raw/host.txt"

    # The host's load during the run, every 10 s (the report shows it per job).
    ( while :; do
          echo "$(date +%s) $(cut -d' ' -f1-3 /proc/loadavg)"
          sleep 10
      done ) >>"$out/raw/hostload.txt" 2>/dev/null &
    sampler=$!
    trap 'kill "${sampler:-}" 2>/dev/null || true' EXIT

    printf 'bench: %s target(s) x %s job(s) x %s round(s), %ss + %ss ramp each; one VM, %s, timeout %ss\n' \
        "$ntargets" "$njobs" "$vm_rounds" "$runtime" "$ramp" "$DST_VM_MEMORY" "$limit"
    start=$SECONDS
    status=0
    DST_VM_BUILD="$build" "$repo/scripts/vm.sh" --rwdir "$out" --timeout "$limit" --append "brd.rd_nr=$nram" -- \
        BENCH_RUNTIME="$runtime" BENCH_RAMP="$ramp" BENCH_ROUNDS="$vm_rounds" \
        BENCH_ROUND_OFFSET="$(( ${round:-1} - 1 ))" \
        BENCH_TARGETS="'$targets'" BENCH_JOBS="'$jobs'" \
        BENCH_DST_QUEUES="${BENCH_DST_QUEUES:-auto}" BENCH_CONNECTS="$connects" \
        BENCH_PROFILE="$profile" BENCH_PROFILE_RUNTIME="$profile_runtime" \
        BENCH_PROFILE_TARGETS="'${BENCH_PROFILE_TARGETS:-dst-none dst-crc32c nvme-tcp}'" \
        BENCH_PROFILE_JOBS="'${BENCH_PROFILE_JOBS:-seqwrite randread}'" \
        bash "$repo/bench/guest.sh" "$out" || status=$?
    elapsed=$((SECONDS - start))
    kill "$sampler" 2>/dev/null || true
    {
        echo "host_load_after=$(cut -d' ' -f1-3 /proc/loadavg)"
        echo "vm_seconds=$elapsed"
        echo "vm_status=$status"
    } >>"$out/raw/host.txt"
    [ "$status" = 0 ] || echo "bench: the VM ended with status $status (124: timed out); reporting what was measured" >&2
    printf 'bench: %d min %d s in the VM\n' $((elapsed / 60)) $((elapsed % 60))
}

# BENCH_BASELINE=REV: the same run first with REV's module and dstcfg, built
# from `git archive REV` against the same kernel tree and cached.
if [ -n "$baseline" ]; then
    rev=$(git -C "$repo" rev-parse --verify --quiet "$baseline^{commit}") ||
        { echo "run.sh: BENCH_BASELINE=$baseline: no such commit" >&2; exit 1; }
    kdir=${KDIR:-$(cat "$cache/kdir" 2>/dev/null || true)}
    [ -d "$kdir" ] || { echo "run.sh: no kernel tree (run make)" >&2; exit 1; }
    base_src=$cache/bench-base/${rev:0:12}-$(basename "$kdir")
    if [ ! -f "$base_src/dst.ko" ] || [ ! -x "$base_src/tools/dstcfg/target/release/dstcfg" ]; then
        echo "bench: building the baseline ${rev:0:12} in $base_src"
        rm -rf "$base_src" && mkdir -p "$base_src"
        git -C "$repo" archive "$rev" | tar -x -C "$base_src"
        make -s -C "$kdir" M="$base_src" modules >/dev/null
        cargo build --release --quiet --manifest-path "$base_src/tools/dstcfg/Cargo.toml"
    fi
    echo "baseline=$rev" >"$out/baseline.txt"
    # One VM per round, the baseline's and this tree's in turn, so that a
    # host whose load drifts weighs on both alike.
    for r in $(seq 1 "$rounds"); do
        measure "$out/baseline" "$base_src" "$r"
        measure "$out" "$repo" "$r"
    done
    "$python" "$repo/bench/report.py" "$out/baseline" >/dev/null
else
    rm -rf "$out/baseline" "$out/baseline.txt"
    measure "$out" "$repo"
fi
"$python" "$repo/bench/report.py" "$out" ${baseline:+--baseline "$out/baseline"}
printf 'bench: outputs in %s\n' "${out#"$repo"/}"
