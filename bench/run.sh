#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# run.sh - the DST benchmark (`make bench`): boots the production kernel once
# (scripts/vm.sh), runs bench/guest.sh in it (fio on brd, DST with each data
# protection mode, NVMe/TCP (also with TLS, where it can be set up) and NBD,
# all over loopback), then writes the report with bench/report.py and prints
# the DST / peer ratios. Documentation/performance.md explains the jobs,
# targets and outputs.
#
# usage: bench/run.sh          (after building dstcfg; `make bench` does both)
#
# The kernel: the production kernel (kernel/production.config, no debug
# options), which scripts/setup.sh --production builds and caches the first
# time (about 20 minutes of every core); dst.ko is built against it from a
# copy of the module's sources in a folder of its own in the cache, so the
# tree's own dst.ko, built against the test kernel, is not touched. BENCH_KERNEL=test measures
# the test kernel (lockdep and the other bug catchers on: slower, for quick
# iterations) with the tree's own dst.ko. The report records the kernel's
# release, its tree (configuration hash) and which debug options it has.
#
# Environment:
#   BENCH_KERNEL           production (default) or test
#   BENCH_RUNTIME          measured seconds per fio job (default 8)
#   BENCH_RAMP             ramp seconds before that (default 2)
#   BENCH_ROUNDS           repeat the whole job x target matrix (default 3;
#                          the report shows the median and min-max of the
#                          rounds, and of each ratio taken round by round)
#   BENCH_TARGETS          targets, in order (default: brd nvme-tcp
#                          nvme-tcp-tls nbd dst-none dst-crc32c dst-aead;
#                          nvme-tcp-tls is reported as not available, with
#                          the reason, unless this host has tlshd, nvme-cli
#                          with connect --tls and the kernel NVME_TCP_TLS)
#   BENCH_JOBS             jobs (default: seqread seqwrite randread randwrite
#                          randread-qd1 mixed jobs4 fs)
#   BENCH_DST_QUEUES       --queues for DST local nodes: auto (= vCPUs, if
#                          dstcfg has --queues; the default), N, or 0 (never)
#   BENCH_NVME_QUEUES      nvme connect --nr-io-queues (default: nvme's, one
#                          per vCPU)
#   BENCH_PROFILE=1        also profile (perf record -a -g) the jobs in
#                          BENCH_PROFILE_JOBS (default: seqwrite randread) on
#                          BENCH_PROFILE_TARGETS (default: dst-none dst-crc32c
#                          nvme-tcp), BENCH_PROFILE_RUNTIME s each (default 15);
#                          needs perf (Debian package linux-perf) on the host
#   BENCH_CONNECTS         connect (and delete) a DST device this many times
#                          per DST target after the jobs (default 10)
#   BENCH_BASELINE=REV     also run the DST targets with the module and dstcfg
#                          of commit REV (built against the same kernel,
#                          cached), in the same VM: after each job, dst.ko is
#                          swapped and the job runs again on the DST targets
#                          (see bench/guest.sh); the report compares the two
#   BENCH_SCALING=1        instead of the matrix, the scaling series (`make
#                          bench-scaling`): one VM per step of
#                          BENCH_SCALING_QUEUES (default: 1 2 4), with that
#                          many vCPUs and DST and NVMe/TCP queues, running
#                          BENCH_SCALING_JOBS (default: jobs4 randread) on
#                          BENCH_SCALING_TARGETS (default: nvme-tcp
#                          dst-none); BENCH_SCALING_CPUS=N keeps N vCPUs at
#                          every step instead. Outputs in BENCH_OUT/scaling/:
#                          qN/ per step, scaling.md, scaling.json,
#                          scaling.svg
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
#   KDIR                   measure this built kernel tree instead (dst.ko is
#                          built against it like the production kernel's)
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
rounds=${BENCH_ROUNDS:-3}
targets=${BENCH_TARGETS:-brd nvme-tcp nvme-tcp-tls nbd dst-none dst-crc32c dst-aead}
jobs=${BENCH_JOBS:-seqread seqwrite randread randwrite randread-qd1 mixed jobs4 fs}
profile=${BENCH_PROFILE:-0}
profile_runtime=${BENCH_PROFILE_RUNTIME:-15}
connects=${BENCH_CONNECTS:-10}
baseline=${BENCH_BASELINE:-}
kernel=${BENCH_KERNEL:-production}
scaling=${BENCH_SCALING:-0}
scaling_queues=${BENCH_SCALING_QUEUES:-1 2 4}
scaling_cpus=${BENCH_SCALING_CPUS:-}
cache=${DST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dst}
python=$(command -v python3)

die() { echo "run.sh: $*" >&2; exit 1; }
for v in "$runtime" "$ramp" "$rounds" "$profile_runtime" "$connects" $scaling_queues $scaling_cpus; do
    [[ $v =~ ^[0-9]+$ ]] ||
        die "BENCH_RUNTIME, BENCH_RAMP, BENCH_ROUNDS, BENCH_PROFILE_RUNTIME, BENCH_CONNECTS, BENCH_SCALING_QUEUES, BENCH_SCALING_CPUS want whole numbers"
done
[ "$rounds" -ge 1 ] || die "BENCH_ROUNDS wants at least 1"
case $kernel in production | test) ;; *) die "BENCH_KERNEL is production or test, not '$kernel'" ;; esac
[ "$scaling" != 1 ] || [ -z "$baseline" ] || die "BENCH_SCALING and BENCH_BASELINE do not go together"

# The kernel to boot, and a dst.ko built against it ($build: the folder
# whose dst.ko and tools/dstcfg/target/release/dstcfg the guest uses).
if [ -n "${KDIR:-}" ]; then
    kernel=given
    kdir=$(cd "$KDIR" && pwd)
    "$repo/scripts/check-kdir.sh" "$kdir" >/dev/null
elif [ "$kernel" = production ]; then
    kdir=$(cat "$cache/kdir-production" 2>/dev/null || true)
    if [ -z "$kdir" ] || [ ! -f "$kdir/.dst-built" ]; then
        echo "bench: building the production kernel first (scripts/setup.sh --production; once per machine, about 20 min of every core)"
        kdir=$("$repo/scripts/setup.sh" --production | tail -n 1)
    fi
else
    kdir=$(cat "$cache/kdir" 2>/dev/null || true)
    if [ -z "$kdir" ] || [ ! -f "$kdir/.dst-built" ]; then
        kdir=$("$repo/scripts/setup.sh" | tail -n 1)
    fi
fi
[ -f "$kdir/arch/x86/boot/bzImage" ] || die "no kernel image in $kdir"
dstcfg_bin=$repo/tools/dstcfg/target/release/dstcfg
[ -x "$dstcfg_bin" ] || die "dstcfg not built; run make dstcfg (or make bench)"
if [ "$kernel" = test ]; then
    # The tree's own dst.ko is the test kernel's.
    build=$repo
    make -s -C "$repo" module >/dev/null
else
    # A copy of the module's sources as they are in this tree (committed or
    # not), built in a folder of the cache, one per kernel tree, with
    # dstcfg linked in beside it for scripts/vm.sh. A copy, not Kbuild's
    # MO=: that refuses a source folder with a build of its own in it, and
    # this tree has the test kernel's. Build products (.gitignore) are
    # neither copied nor deleted in the copy, so rebuilds are incremental:
    # the receiving side knows them from the copied .gitignore, which it
    # reads only with --delete-after.
    build=$cache/bench-module/$(basename "$kdir")
    mkdir -p "$build/tools/dstcfg/target"
    rsync -a --delete-after --filter=':- .gitignore' --include=/.gitignore --include=/Kbuild \
        --include='/dst/***' --include='/include/***' --exclude='*' "$repo/" "$build/"
    ln -sfn "$repo/tools/dstcfg/target/release" "$build/tools/dstcfg/target/release"
    echo "bench: building dst.ko against $(basename "$kdir") in the cache"
    make -s -C "$kdir" M="$build" modules >/dev/null
fi
[ -f "$build/dst.ko" ] || die "no dst.ko in $build"

# NVMe/TCP with TLS needs the TLS handshake daemon, an nvme-cli that can ask
# for TLS, and a kernel with NVMe/TCP TLS; the guest runs the host's
# programs, so they are looked for here.
tls_missing() {
    local miss=() help o
    command -v tlshd >/dev/null 2>&1 || miss+=("no tlshd (Debian package ktls-utils)")
    help=$(nvme connect --help 2>&1 || true)
    grep -q -- '--tls' <<<"$help" ||
        miss+=("nvme-cli $(nvme version 2>/dev/null | awk 'NR == 1 {print $3}') has no connect --tls")
    for o in CONFIG_TLS CONFIG_NVME_TCP_TLS CONFIG_NVME_TARGET_TCP_TLS; do
        grep -q "^$o=[ym]" "$kdir/.config" 2>/dev/null || miss+=("kernel without $o")
    done
    local text="" m
    for m in "${miss[@]}"; do
        text+="${text:+; }$m"
    done
    echo "$text"
}

cores=$(nproc)
quiet() { awk -v c="$cores" '{ exit !($1 < c / 2) }' /proc/loadavg; }

# measure OUT BUILD [BASE]: one VM run of bench/guest.sh with BUILD's dst.ko
# and dstcfg, raw results in OUT/raw (emptied first); with BASE (a build of
# the baseline), its DST targets' in OUT/baseline/raw.
# What it measures: $m_targets, $m_jobs, $m_dst_queues, $m_nvme_queues,
# $m_cpus (vCPUs).
measure() {
    local out=$1 build=$2 base=${3:-} start status elapsed vm_rounds=$rounds
    local guest_targets="" t tls_reason="" ntargets njobs nram memory per_job budget limit fs_jobs ndst
    for t in $m_targets; do
        if [ "$t" = nvme-tcp-tls ] && tls_reason=$(tls_missing) && [ -n "$tls_reason" ]; then
            continue
        fi
        guest_targets+="${guest_targets:+ }$t"
    done
    # One RAM disk per target; memory for them (filled) and the rest.
    ntargets=$(wc -w <<<"$guest_targets")
    njobs=$(wc -w <<<"$m_jobs")
    nram=$((ntargets > 4 ? ntargets : 4))
    memory=${DST_VM_MEMORY:-$((1536 + 640 * ntargets))M}
    # Time budget: per job start-up, ramp, runtime and slack under emulation
    # (fs also makes a file system); per target set-up, fill and teardown;
    # the profile runs (perf script is slow under emulation); boot.
    fs_jobs=$(grep -ow fs <<<"$m_jobs" | wc -l || true)
    per_job=$((runtime + ramp + 25))
    budget=$((vm_rounds * ntargets * (njobs * per_job + fs_jobs * 30) + ntargets * 90))
    if [ -n "$base" ]; then
        # The DST targets once more per job, and a module swap (their
        # teardown and set-up) per job.
        ndst=$(tr ' ' '\n' <<<"$guest_targets" | grep -c '^dst-' || true)
        budget=$((budget + vm_rounds * njobs * (ndst * (per_job + 20) + 30) + fs_jobs * vm_rounds * ndst * 30))
    fi
    if [ "$profile" = 1 ]; then
        budget=$((budget + 6 * (profile_runtime + ramp + 25 + 180)))
    fi
    limit=$((budget * 2 + 600))

    mkdir -p "$out"
    rm -rf "${out:?}/raw" "$out/baseline" "$out/profile" "$out"/results.* "$out"/*.svg "$out"/*.log
    mkdir -p "$out/raw"
    {
        echo "host_cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
        echo "host_cores=$(nproc)"
        echo "host_load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
        echo "qemu=$(qemu-system-x86_64 --version 2>/dev/null | head -1)"
        echo "emulation=QEMU TCG (software emulation, vng --disable-kvm)"
        echo "vm_memory=$memory"
        echo "bench_kernel=$kernel"
        echo "kernel_tree=$(basename "$kdir")"
        echo "kernel_release=$(head -n 1 "$kdir/include/config/kernel.release" 2>/dev/null)"
        echo "kernel_debug_options=$(grep -oE '^CONFIG_(PROVE_LOCKING|DEBUG_ATOMIC_SLEEP|KFENCE|KASAN|DEBUG_LIST|FAULT_INJECTION)=y' \
            "$kdir/.config" 2>/dev/null | sed 's/^CONFIG_//; s/=y$//' | paste -sd' ')"
    } >"$out/raw/host.txt"
    # What guest.sh measures, in a file it reads: vng hands the command to
    # the guest on the kernel command line, which has room for 2 KiB, and
    # fails without a word (status 255) beyond.
    local v
    for v in BENCH_RUNTIME="$runtime" BENCH_RAMP="$ramp" BENCH_ROUNDS="$vm_rounds" \
        BENCH_BASELINE_KO="${base:+$base/dst.ko}" \
        BENCH_BASELINE_BIN="${base:+$base/tools/dstcfg/target/release}" \
        BENCH_TARGETS="$guest_targets" BENCH_JOBS="$m_jobs" \
        BENCH_DST_QUEUES="$m_dst_queues" BENCH_NVME_QUEUES="$m_nvme_queues" \
        BENCH_CONNECTS="$connects" BENCH_PROFILE="$profile" BENCH_PROFILE_RUNTIME="$profile_runtime" \
        BENCH_PROFILE_TARGETS="${BENCH_PROFILE_TARGETS:-dst-none dst-crc32c nvme-tcp}" \
        BENCH_PROFILE_JOBS="${BENCH_PROFILE_JOBS:-seqwrite randread}"; do
        printf 'export %s=%q\n' "${v%%=*}" "${v#*=}"
    done >"$out/raw/guest.env"
    if [ -n "$tls_reason" ]; then
        printf 'status=unavailable\nreason=%s\n' "$tls_reason" >"$out/raw/target-nvme-tcp-tls.txt"
    fi

    # The host's load during the run, every 10 s (the report shows it per job).
    ( while :; do
          echo "$(date +%s) $(cut -d' ' -f1-3 /proc/loadavg)"
          sleep 10
      done ) >>"$out/raw/hostload.txt" 2>/dev/null &
    sampler=$!
    trap 'kill "${sampler:-}" 2>/dev/null || true' EXIT

    printf 'bench: %s target(s) x %s job(s) x %s round(s), %ss + %ss ramp each; one VM (%s kernel, %s vCPUs, %s), timeout %ss\n' \
        "$ntargets" "$njobs" "$vm_rounds" "$runtime" "$ramp" "$kernel" "$m_cpus" "$memory" "$limit"
    start=$SECONDS
    status=0
    # DST_NO_INSMOD: guest.sh loads dst.ko itself, with crypto_bench=1.
    KDIR="$kdir" DST_VM_BUILD="$build" DST_VM_CPUS="$m_cpus" DST_VM_MEMORY="$memory" \
        DST_NO_INSMOD=1 "$repo/scripts/vm.sh" --rwdir "$out" --timeout "$limit" --append "brd.rd_nr=$nram" -- \
        bash "$repo/bench/guest.sh" "$out" || status=$?
    elapsed=$((SECONDS - start))
    kill "$sampler" 2>/dev/null || true
    {
        echo "host_load_after=$(cut -d' ' -f1-3 /proc/loadavg)"
        echo "vm_seconds=$elapsed"
        echo "vm_status=$status"
    } >>"$out/raw/host.txt"
    [ ! -d "$out/baseline/raw" ] || cp "$out/raw/host.txt" "$out/raw/hostload.txt" "$out/baseline/raw/"
    [ "$status" = 0 ] || echo "bench: the VM ended with status $status (124: timed out); reporting what was measured" >&2
    printf 'bench: %d min %d s in the VM\n' $((elapsed / 60)) $((elapsed % 60))
}

# A busy host (other VMs, builds) delays the guest's vCPUs: cross-CPU
# wake-ups then take milliseconds. Optionally wait for a quieter moment.
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

mkdir -p "$out"
out=$(cd "$out" && pwd)

# BENCH_SCALING=1: one VM per number of queues (and as many vCPUs), DST and
# NVMe/TCP given that many queues.
if [ "$scaling" = 1 ]; then
    m_targets=${BENCH_SCALING_TARGETS:-nvme-tcp dst-none}
    m_jobs=${BENCH_SCALING_JOBS:-jobs4 randread}
    rm -rf "${out:?}/scaling"
    for n in $scaling_queues; do
        m_cpus=${scaling_cpus:-$n} m_dst_queues=$n m_nvme_queues=$n
        measure "$out/scaling/q$n" "$build"
    done
    "$python" "$repo/bench/report.py" --scaling "$out/scaling"
    printf 'bench: outputs in %s\n' "${out#"$repo"/}/scaling"
    exit 0
fi

m_targets=$targets m_jobs=$jobs m_cpus=${DST_VM_CPUS:-2}
m_dst_queues=${BENCH_DST_QUEUES:-auto} m_nvme_queues=${BENCH_NVME_QUEUES:-}

# BENCH_BASELINE=REV: the same run first with REV's module and dstcfg, built
# from `git archive REV` against the same kernel tree and cached.
if [ -n "$baseline" ]; then
    rev=$(git -C "$repo" rev-parse --verify --quiet "$baseline^{commit}") ||
        die "BENCH_BASELINE=$baseline: no such commit"
    base_src=$cache/bench-base/${rev:0:12}-$(basename "$kdir")
    if [ ! -f "$base_src/dst.ko" ] || [ ! -x "$base_src/tools/dstcfg/target/release/dstcfg" ]; then
        echo "bench: building the baseline ${rev:0:12} in $base_src"
        rm -rf "$base_src" && mkdir -p "$base_src"
        git -C "$repo" archive "$rev" | tar -x -C "$base_src"
        make -s -C "$kdir" M="$base_src" modules >/dev/null
        cargo build --release --quiet --manifest-path "$base_src/tools/dstcfg/Cargo.toml"
    fi
    grep -qw 'dst-[a-z0-9]*' <<<"$targets" || die "BENCH_BASELINE: BENCH_TARGETS has no DST target to compare"
    measure "$out" "$build" "$base_src"
    echo "baseline=$rev" >"$out/baseline.txt"
    if [ -d "$out/baseline/raw" ]; then
        "$python" "$repo/bench/report.py" "$out/baseline" >/dev/null || true
    else
        echo "bench: the baseline was not measured (see guest.log)" >&2
    fi
else
    rm -rf "$out/baseline" "$out/baseline.txt"
    measure "$out" "$build"
fi
"$python" "$repo/bench/report.py" "$out" ${baseline:+--baseline "$out/baseline"}
printf 'bench: outputs in %s\n' "${out#"$repo"/}"
