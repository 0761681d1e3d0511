#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# guest.sh - the guest half of the DST benchmark (bench/run.sh boots the VM and
# runs it there, as root, with dstcfg on PATH and DST_KO naming dst.ko).
#
# usage: bench/guest.sh OUTDIR
#
# The settings (BENCH_* below) come from the environment, or from
# OUTDIR/raw/guest.env, which bench/run.sh writes and this script reads first.
#
# 0. dst.ko is loaded with crypto_bench=1 (bench/run.sh boots with
#    DST_NO_INSMOD=1 for this): at load the module times sealing 256 MiB in
#    1 MiB messages with each protection mode's transform, on one vCPU, and
#    logs one "crypto bench:" line per transform; they are kept in
#    OUTDIR/raw/cipher.txt, the cipher's own speed on this machine. If dst.ko
#    is already loaded, whatever "crypto bench:" lines the kernel log has are
#    kept (none if it was loaded without the parameter).
# 1. Every target is set up on its own 512 MiB brd RAM disk (/dev/ram0..N-1,
#    filled once so that reads copy real pages), all at the same time.
# 2. The jobs run interleaved: for each job, every target in turn (the order
#    rotates from job to job), so that the targets compared in one table were
#    measured within a minute or two of each other. On a shared host whose
#    load drifts, that matters more than anything else. BENCH_ROUNDS > 1
#    repeats the whole matrix (the report takes medians).
#    With a baseline (BENCH_BASELINE_KO, BENCH_BASELINE_BIN: another
#    build's dst.ko and the folder of its dstcfg; bench/run.sh
#    BENCH_BASELINE), each job then runs once more on the DST targets with
#    the other build: the DST targets are taken down, dst.ko is swapped
#    (rmmod, insmod) and the targets are set up again on the same, filled,
#    RAM disks. Which build runs a job first alternates from job to job,
#    and from round to round.
#    Both builds are thus measured in one VM, minutes apart, as the peers
#    are: separate VM boots differed by 15 % and more on this kind of host.
#    The baseline's results go to OUTDIR/baseline/raw/ under the same names.
# 3. With BENCH_PROFILE=1, some jobs run once more under perf (see below).
# 4. Everything is torn down.
# A target that cannot be set up is recorded as "not available" with the
# reason; a failing job is recorded as an error; a job whose IO does not
# complete marks its target broken (its other jobs are skipped); the run goes
# on in every case.
#
# Targets (BENCH_TARGETS, in this order by default):
#   brd         the RAM disk itself (the baseline)
#   nvme-tcp    in-kernel nvmet + nvmet-tcp on 127.0.0.1:4420 (configfs), nvme connect
#               (BENCH_NVME_QUEUES: --nr-io-queues, default nvme's: one per CPU)
#   nvme-tcp-tls NVMe/TCP with TLS (PSK), the encrypted peer of dst-aead: needs
#               tlshd (ktls-utils), nvme-cli with connect --tls and a kernel with
#               NVME_TCP_TLS; bench/run.sh checks those on the host and passes the
#               target on only if all are there (the guest runs the host's tools)
#   nbd         nbdkit file plugin on 127.0.0.1:10809, kernel nbd + nbd-client
#   dst-none    dstcfg export + local on 127.0.0.1:1025, no data protection
#   dst-crc32c  the same on port 1026 with --protection crc32c (if dstcfg and
#               dst.ko have it)
#   dst-aead    the same on port 1027 with --protection aead --key-file F
#   dst-hmac    (not in the default list) port 1028, --protection hmac --key-file F
#
# Jobs (BENCH_JOBS): seqread, seqwrite (1 MiB, QD16), randread, randwrite
# (4 KiB, QD32), randread-qd1 (4 KiB, QD1, latency); mixed (70 % reads, 30 %
# writes, random, 4-64 KiB, QD16); jobs4 (4 KiB random reads from 4 fio jobs
# at QD8 each: the same 32 IOs in flight as randread, from 4 submitters, so
# that a multi-queue device uses several queues); fs (ext4 made on the device
# for the job, 4 KiB random writes to a 64 MiB file, each followed by fsync:
# journal commits and cache flushes, QD1). fio: libaio, direct=1 (fs:
# psync, buffered, then fsync), time_based, BENCH_RAMP s of ramp then
# BENCH_RUNTIME s measured.
#
# CPU per IO: /proc/stat is read twice inside the measured part of each job
# (after the ramp, and BENCH_RUNTIME - 1.5 s later); busy time (user, nice,
# system, irq, softirq, steal, all CPUs) divided by the IOs completed in that
# window (from /sys/block/DEV/stat, or fio's IOPS times the window for brd,
# which keeps no IO statistics, and for fs, whose unit is fio's write with
# its fsync, not the journal's device IOs). All fields are recorded, idle
# included, so the report can tell how much of the window the guest's tick
# accounting saw, and so is whether fio still ran at the window's end (if
# not, the report drops the window: the job was too short for this shell's
# delays on a busy host).
#
# BENCH_PROFILE=1: after the measured jobs, the jobs in BENCH_PROFILE_JOBS
# (default: seqwrite randread) run again on the targets in
# BENCH_PROFILE_TARGETS (default: dst-none dst-crc32c nvme-tcp) for BENCH_PROFILE_RUNTIME
# s (default 15) under `perf record -a -g -e cpu-clock -F 499`. Written to
# OUTDIR/profile/: T__J.report.txt (perf report, self time by symbol) and
# T__J.script.gz (every sample with its call chain, Rust symbols demangled),
# which bench/report.py summarises.
#
# Output, in OUTDIR/raw/ (bench/report.py turns it into results.json/md/svg):
#   env.txt                      key=value lines about the guest
#   cipher.txt                   the module's "crypto bench:" lines
#   target-T.txt                 status=ok|unavailable|error, reason=, device=, setup=,
#                                hw_queues= (the device's blk-mq hardware queues)
#   T__J__rN.fio.json, .meta     fio's JSON output; the CPU window numbers (round N)
# and OUTDIR/guest.log (progress), OUTDIR/dmesg.log (kernel log at the end).
#
# Functions setup_T/teardown_T are called by name.
# shellcheck disable=SC2317
set -uo pipefail

out=${1:?usage: guest.sh OUTDIR}
raw=$out/raw
mkdir -p "$raw"
# bench/run.sh's settings (the environment, when run by hand).
# shellcheck disable=SC1091
[ ! -f "$raw/guest.env" ] || . "$raw/guest.env"
runtime=${BENCH_RUNTIME:-8}
ramp=${BENCH_RAMP:-2}
rounds=${BENCH_ROUNDS:-1}
targets=${BENCH_TARGETS:-brd nvme-tcp nbd dst-none dst-crc32c dst-aead}
jobs=${BENCH_JOBS:-seqread seqwrite randread randwrite randread-qd1}
profile=${BENCH_PROFILE:-0}
profile_targets=${BENCH_PROFILE_TARGETS:-dst-none dst-crc32c nvme-tcp}
profile_jobs=${BENCH_PROFILE_JOBS:-seqwrite randread}
profile_runtime=${BENCH_PROFILE_RUNTIME:-15}
dst_queues=${BENCH_DST_QUEUES:-auto}
nvme_queues=${BENCH_NVME_QUEUES:-}
connects=${BENCH_CONNECTS:-10}
base_ko=${BENCH_BASELINE_KO:-}
base_bin=${BENCH_BASELINE_BIN:-}
braw=$out/baseline/raw
# The build whose dst.ko is loaded and whose dstcfg is first on PATH: now
# (this tree's) or base (the baseline's).
build=now
now_path=$PATH
tmp=$(mktemp -d)
ncpu=$(nproc)
hz=$(getconf CLK_TCK)

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" | tee -a "$out/guest.log"; }
kmsg() { printf 'dst-bench: %s\n' "$*" >/dev/kmsg 2>/dev/null || true; }

# wait_bounded PID SECS: wait for PID, at most SECS seconds. Returns its exit
# status; 124 if it had to be killed; 125 if it could not be killed (stuck in
# the kernel): it is then abandoned.
wait_bounded() {
    local pid=$1 secs=$2 me=$BASHPID wd rc=0
    trap ':' USR1
    (
        sleep "$secs"
        : >"$tmp/killed.$pid"
        kill -TERM "$pid" 2>/dev/null
        sleep 10
        kill -KILL "$pid" 2>/dev/null
        sleep 5
        kill -USR1 "$me" 2>/dev/null
    ) </dev/null >/dev/null 2>&1 &
    wd=$!
    wait "$pid" || rc=$?
    if kill -0 "$pid" 2>/dev/null; then
        rc=125
        disown "$pid" 2>/dev/null
    elif [ -e "$tmp/killed.$pid" ]; then
        rc=124
    fi
    kill "$wd" 2>/dev/null
    wait "$wd" 2>/dev/null
    trap - USR1
    return "$rc"
}

# run_bounded SECS CMD...: run CMD (stdout/stderr as given by the caller) for
# at most SECS seconds; status as for wait_bounded.
run_bounded() {
    local secs=$1
    shift
    "$@" &
    wait_bounded $! "$secs"
}

# The helpers that run_job calls while fio runs store their result in the
# variable VAR instead of printing it: a command substitution forks, and
# under emulation on a busy host a fork can take a good part of a second,
# which a short job cannot spare.

# cpu_stat VAR: jiffies of all CPUs so far: busy (user nice system irq softirq
# steal), user, system, softirq, idle + iowait.
cpu_stat() {
    local _c us ni sy id io irq sirq st _rest
    read -r _c us ni sy id io irq sirq st _rest </proc/stat
    printf -v "$1" '%s' "$((us + ni + sy + irq + sirq + st)) $us $sy $sirq $((id + io))"
}

# dev_ios VAR DEV: requests completed on DEV (reads + writes), from its stat
# file (0 without one).
dev_ios() {
    local f=/sys/block/${2#/dev/}/stat r=0 w=0
    [ ! -r "$f" ] || read -r r _ _ _ w _ <"$f"
    printf -v "$1" '%s' $((r + w))
}

# dev_started VAR DEV: requests completed plus in flight on DEV (moves as
# soon as the first request is issued, even if it takes long to complete).
dev_started() {
    local f=/sys/block/${2#/dev/}/stat r=0 w=0 inflight=0
    [ ! -r "$f" ] || read -r r _ _ _ w _ _ _ inflight _ <"$f"
    printf -v "$1" '%s' $((r + w + inflight))
}

# now_us: the time in microseconds, in $now_us.
now_us() { now_us=${EPOCHREALTIME/[.,]/}; }

# hw_queues DEV: DEV's blk-mq hardware queues (empty if it has none: brd is
# bio-based). An NVMe namespace with native multipath is bio-based too; its
# controller's queue_count counts the admin queue as well.
hw_queues() {
    local name=${1#/dev/} n ctrl
    if [ -d "/sys/block/$name/mq" ]; then
        find "/sys/block/$name/mq" -mindepth 1 -maxdepth 1 -type d | wc -l
    elif [[ $name =~ ^nvme([0-9]+)n[0-9]+$ ]]; then
        ctrl=/sys/class/nvme/nvme${BASH_REMATCH[1]}
        n=$(cat "$ctrl/queue_count" 2>/dev/null) && echo $((n - 1))
    fi
}

# one_line FILE: FILE's text on one line (for reasons).
one_line() { tr '\n' ' ' <"$1" | sed 's/ *$//'; }

# ---------------------------------------------------------------------------
# The module, with its cipher timings. A load that fails ends the run (exit
# status 125, as scripts/vm.sh's own insmod).
if grep -q '^dst ' /proc/modules; then
    log "dst.ko already loaded: cipher speeds only if it was loaded with crypto_bench=1"
else
    log "loading dst.ko with crypto_bench=1 (times each transform on 256 MiB)"
    insmod "${DST_KO:?DST_KO not set: run me through bench/run.sh}" crypto_bench=1 ||
        { log "insmod $DST_KO crypto_bench=1 failed"; exit 125; }
fi
dmesg | sed -n 's/.*\(crypto bench: .*\)/\1/p' >"$raw/cipher.txt"
log "cipher speeds: $(wc -l <"$raw/cipher.txt") transform(s) timed"

# ---------------------------------------------------------------------------
# Environment
{
    echo "kernel=$(uname -r)"
    echo "vcpus=$ncpu"
    echo "memory_kib=$(awk '$1 == "MemTotal:" {print $2}' /proc/meminfo)"
    echo "cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "fio=$(fio --version 2>/dev/null)"
    echo "nvme_cli=$(nvme version 2>/dev/null | head -1)"
    echo "nbdkit=$(nbdkit --version 2>/dev/null | head -1)"
    echo "nbd_client=$(nbd-client -V 2>&1 | head -1)"
    echo "perf=$(perf --version 2>/dev/null)"
    echo "dst=$(dstcfg -a status 2>/dev/null | head -1)"
    echo "lockdep=$([ -e /proc/lockdep ] && echo yes || echo no)"
    echo "runtime_s=$runtime"
    echo "ramp_s=$ramp"
    echo "rounds=$rounds"
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$raw/env.txt"

# read_dst_help: the help texts of the dstcfg on PATH, which dst_has searches.
read_dst_help() { dst_help=$( { dstcfg --help; dstcfg -a local --help; dstcfg -a export --help; } 2>&1); }
read_dst_help
dst_has() { grep -q -- "$1" <<<"$dst_help"; }

# ---------------------------------------------------------------------------
# Targets. setup_T RAM sets $dev and $setup_desc, or sets $reason and fails;
# teardown_T DEV undoes it (bounded, best effort).

dev="" reason="" setup_desc=""

setup_brd() { dev=$1; setup_desc="the RAM disk itself"; }
teardown_brd() { :; }

nqn=nqn.2026-11.org.dst.bench:ram
cfs=/sys/kernel/config/nvmet
setup_nvme-tcp() {
    local ram=$1 d name hostnqn qopt
    mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config 2>/dev/null
    [ -d "$cfs" ] || { reason="no nvmet in configfs (CONFIG_NVME_TARGET)"; return 1; }
    if ! {
        mkdir "$cfs/subsystems/$nqn" &&
        echo 1 >"$cfs/subsystems/$nqn/attr_allow_any_host" &&
        mkdir "$cfs/subsystems/$nqn/namespaces/1" &&
        printf '%s' "$ram" >"$cfs/subsystems/$nqn/namespaces/1/device_path" &&
        echo 1 >"$cfs/subsystems/$nqn/namespaces/1/enable" &&
        mkdir "$cfs/ports/1" &&
        echo 127.0.0.1 >"$cfs/ports/1/addr_traddr" &&
        echo tcp >"$cfs/ports/1/addr_trtype" &&
        echo 4420 >"$cfs/ports/1/addr_trsvcid" &&
        echo ipv4 >"$cfs/ports/1/addr_adrfam" &&
        ln -s "$cfs/subsystems/$nqn" "$cfs/ports/1/subsystems/$nqn"
    } 2>"$tmp/err"; then
        reason="nvmet configfs set-up failed: $(one_line "$tmp/err")"
        return 1
    fi
    hostnqn=nqn.2014-08.org.nvmexpress:uuid:$(cat /proc/sys/kernel/random/uuid)
    qopt=()
    [ -z "$nvme_queues" ] || qopt=(--nr-io-queues="$nvme_queues")
    if ! run_bounded 60 nvme connect -t tcp -a 127.0.0.1 -s 4420 -n "$nqn" --hostnqn="$hostnqn" \
        "${qopt[@]}" >"$tmp/err" 2>&1; then
        reason="nvme connect failed: $(one_line "$tmp/err")"
        return 1
    fi
    for _ in $(seq 1 100); do
        for d in /sys/block/nvme*; do
            name=${d##*/}
            [[ $name =~ ^nvme[0-9]+n[0-9]+$ ]] || continue
            [ "$(cat "$d/device/subsysnqn" 2>/dev/null)" = "$nqn" ] || continue
            [ -b "/dev/$name" ] || continue
            dev=/dev/$name
        done
        [ -z "$dev" ] || break
        sleep 0.2
    done
    [ -n "$dev" ] || { reason="no /dev/nvmeXnY for $nqn after nvme connect"; return 1; }
    setup_desc="nvmet-tcp on 127.0.0.1:4420, namespace $ram; nvme connect -t tcp${qopt:+ ${qopt[*]}} (defaults${qopt:+ otherwise}: one IO queue per CPU, queue size 128)"
}
teardown_nvme-tcp() {
    run_bounded 60 nvme disconnect -n "$nqn" >/dev/null 2>&1
    rm -f "$cfs/ports/1/subsystems/$nqn" 2>/dev/null
    echo 0 >"$cfs/subsystems/$nqn/namespaces/1/enable" 2>/dev/null
    rmdir "$cfs/subsystems/$nqn/namespaces/1" "$cfs/subsystems/$nqn" "$cfs/ports/1" 2>/dev/null
    return 0
}

# Only reached when bench/run.sh found tlshd, nvme connect --tls and a
# kernel with NVME_TCP_TLS; no development machine had them (see
# Documentation/performance.md), so the set-up is not written yet.
setup_nvme-tcp-tls() {
    reason="set-up not written yet: no machine this was developed on had tlshd, nvme connect --tls and NVME_TCP_TLS"
    return 1
}
teardown_nvme-tcp-tls() { :; }

setup_nbd() {
    local ram=$1
    command -v nbdkit >/dev/null || { reason="nbdkit not installed"; return 1; }
    command -v nbd-client >/dev/null || { reason="nbd-client not installed"; return 1; }
    if ! nbdkit -P "$tmp/nbdkit.pid" -i 127.0.0.1 -p 10809 file file="$ram" >"$tmp/err" 2>&1; then
        reason="nbdkit failed: $(one_line "$tmp/err")"
        return 1
    fi
    for _ in $(seq 1 50); do
        run_bounded 60 nbd-client 127.0.0.1 10809 /dev/nbd0 >"$tmp/err" 2>&1 && break
        sleep 0.2
    done
    if [ "$(cat /sys/block/nbd0/size 2>/dev/null || echo 0)" = 0 ]; then
        reason="nbd-client failed: $(one_line "$tmp/err")"
        return 1
    fi
    dev=/dev/nbd0
    setup_desc="nbdkit file plugin on $ram, 127.0.0.1:10809 (default 16 threads); nbd-client, one connection"
}
teardown_nbd() {
    run_bounded 60 nbd-client -d /dev/nbd0 >/dev/null 2>&1
    if [ -s "$tmp/nbdkit.pid" ]; then
        kill "$(cat "$tmp/nbdkit.pid")" 2>/dev/null
        sleep 1
        rm -f "$tmp/nbdkit.pid"
    fi
    return 0
}

# setup_dst MODE PORT RAM: export RAM on 127.0.0.1:PORT and connect a local
# node to it, with data protection MODE (none, crc32c, hmac, aead; the
# algorithms are dstcfg's defaults: hmac(sha256), gcm(aes)).
setup_dst() {
    local mode=$1 port=$2 ram=$3 prot=() qopt=() key=$tmp/dst-$1.key
    if [ "$mode" != none ]; then
        dst_has --protection || { reason="dstcfg has no --protection option"; return 1; }
        prot=(--protection "$mode")
        if [ "$mode" = aead ] || [ "$mode" = hmac ]; then
            dst_has --key-file || { reason="dstcfg has no --key-file option"; return 1; }
            rm -f "$key"
            if dst_has genkey; then
                dstcfg -a genkey -f "$key" >"$tmp/err" 2>&1 ||
                    { reason="dstcfg -a genkey failed: $(one_line "$tmp/err")"; return 1; }
            else
                (umask 077 && head -c 32 /dev/urandom >"$key")
            fi
            chmod 600 "$key"
            prot+=(--key-file "$key")
        fi
    fi
    if ! run_bounded 60 dstcfg -r 127.0.0.1 -p "$port" -a export -f "$ram" "${prot[@]}" \
        >"$tmp/err" 2>&1; then
        reason="dstcfg export --protection $mode failed: $(one_line "$tmp/err")"
        return 1
    fi
    if [ "$dst_queues" = auto ]; then
        ! dst_has --queues || qopt=(--queues "$ncpu")
    elif [ -n "$dst_queues" ] && [ "$dst_queues" != 0 ]; then
        qopt=(--queues "$dst_queues")
    fi
    if ! run_bounded 60 dstcfg -r 127.0.0.1 -p "$port" -a local "${prot[@]}" "${qopt[@]}" \
        >"$tmp/dev" 2>"$tmp/err"; then
        if [ ${#qopt[@]} -gt 0 ] &&
            run_bounded 60 dstcfg -r 127.0.0.1 -p "$port" -a local "${prot[@]}" \
                >"$tmp/dev" 2>"$tmp/err2"; then
            log "dst-$mode: local ${qopt[*]} refused ($(one_line "$tmp/err")); using one queue"
            qopt=()
        else
            reason="dstcfg local --protection $mode ${qopt[*]} failed: $(one_line "$tmp/err")"
            run_bounded 60 dstcfg -r 127.0.0.1 -p "$port" -a unexport >/dev/null 2>&1
            return 1
        fi
    fi
    dev=$(tail -1 "$tmp/dev")
    [ -b "$dev" ] || { reason="dstcfg local printed '$dev', not a block device"; return 1; }
    [ "$build" != now ] || LOCAL_ARGS[dst-$mode]="-r 127.0.0.1 -p $port -a local ${prot[*]} ${qopt[*]}"
    setup_desc="dstcfg export + local on 127.0.0.1:$port, protection $mode (defaults otherwise: queue depth 128, max IO 1 MiB${qopt:+; ${qopt[*]}})"
}
teardown_dst() {
    local port=$1 d=$2
    [ -z "$d" ] || run_bounded 60 dstcfg -a delete -d "${d#/dev/}" >/dev/null 2>&1
    run_bounded 60 dstcfg -r 127.0.0.1 -p "$port" -a unexport >/dev/null 2>&1
}
setup_dst-none() { setup_dst none 1025 "$1"; }
setup_dst-crc32c() { setup_dst crc32c 1026 "$1"; }
setup_dst-aead() { setup_dst aead 1027 "$1"; }
setup_dst-hmac() { setup_dst hmac 1028 "$1"; }
teardown_dst-none() { teardown_dst 1025 "$1"; }
teardown_dst-crc32c() { teardown_dst 1026 "$1"; }
teardown_dst-aead() { teardown_dst 1027 "$1"; }
teardown_dst-hmac() { teardown_dst 1028 "$1"; }

# measure_connect T DEV: the connect time of DST target T (the handshake and
# the creation of the device, as `dstcfg -a local` takes it, until it prints
# the device) and the delete time, $connects times; the measured device DEV
# is deleted first, and so is each new one. One "connect_ms delete_ms" line
# per try in raw/T__connect.txt.
measure_connect() {
    local t=$1 d=$2 i t0 t1 t2 new
    [ "$connects" -gt 0 ] || return 0
    log "$t: connect time, $connects tries"
    run_bounded 60 dstcfg -a delete -d "${d#/dev/}" >/dev/null 2>&1
    DEV[$t]=""
    for i in $(seq 1 "$connects"); do
        t0=$EPOCHREALTIME
        # shellcheck disable=SC2086 # split on purpose (no spaces in the words)
        if ! run_bounded 60 dstcfg ${LOCAL_ARGS[$t]} >"$tmp/dev" 2>"$tmp/err"; then
            log "$t: connect $i failed: $(one_line "$tmp/err")"
            return 0
        fi
        t1=$EPOCHREALTIME
        new=$(tail -1 "$tmp/dev")
        run_bounded 60 dstcfg -a delete -d "${new#/dev/}" >/dev/null 2>&1
        t2=$EPOCHREALTIME
        awk -v a="$t0" -v b="$t1" -v c="$t2" \
            'BEGIN { printf "%.1f %.1f\n", (b - a) * 1000, (c - b) * 1000 }' >>"$raw/${t}__connect.txt"
    done
}

# ---------------------------------------------------------------------------
# Jobs

# job_args J: fio's options for job J (the engine, depth and number of jobs
# included; run_job adds the timing and reporting options).
job_args() {
    local aio="--ioengine=libaio --direct=1 --numjobs=1"
    case $1 in
        seqread) echo "$aio --rw=read --bs=1M --iodepth=16" ;;
        seqwrite) echo "$aio --rw=write --bs=1M --iodepth=16" ;;
        randread) echo "$aio --rw=randread --bs=4k --iodepth=32" ;;
        randwrite) echo "$aio --rw=randwrite --bs=4k --iodepth=32" ;;
        randread-qd1) echo "$aio --rw=randread --bs=4k --iodepth=1" ;;
        # Small blocks most often, up to 64 KiB, as databases and VM images
        # issue them.
        mixed) echo "$aio --rw=randrw --rwmixread=70 --bssplit=4k/40:8k/20:16k/20:32k/10:64k/10 --iodepth=16" ;;
        # 4 x QD8 = randread's 32 in flight, from four processes that the
        # scheduler spreads over the vCPUs (and so over blk-mq's queues);
        # reads, so that the difference to randread is the submitters alone.
        jobs4) echo "--ioengine=libaio --direct=1 --numjobs=4 --group_reporting --rw=randread --bs=4k --iodepth=8" ;;
        # Through ext4: each 4 KiB write is followed by fsync, so every IO
        # commits the journal and flushes the device's cache. The file is
        # allocated but never written first: the writes also convert extents.
        fs) echo "--ioengine=psync --direct=0 --numjobs=1 --rw=randwrite --bs=4k --iodepth=1 --fsync=1 --size=64M" ;;
        *) return 1 ;;
    esac
}

# fs_prepare T DEV: a fresh ext4 on DEV, mounted; prints the mount point.
# Inode tables and journal are written now (no lazy init), so that no
# background initialisation runs during the measurement; no discard, so
# that the RAM disk keeps its pages.
fs_prepare() {
    local mnt=$tmp/mnt-$1 d=$2
    mkdir -p "$mnt"
    run_bounded 120 mkfs.ext4 -q -F -N 8192 -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 \
        "$d" >&2 || return 1
    run_bounded 60 mount -t ext4 "$d" "$mnt" >&2 || return 1
    echo "$mnt"
}

# fs_release T: unmount what fs_prepare mounted (bounded).
fs_release() {
    local mnt=$tmp/mnt-$1
    mountpoint -q "$mnt" || return 0
    run_bounded 120 umount "$mnt" || log "$1: umount $mnt failed"
}

# run_job T J DEV BASE [PERFDATA]: one fio job on DEV; fio's JSON and the CPU
# window in BASE.*. With PERFDATA, the job runs for the profile runtime and
# perf record -a -g samples the measured part instead.
run_job() {
    local t=$1 j=$2 d=$3 base=$4 perfdata=${5:-} args fpid rc=0 io0 io a="" b="" ta tb ioa iob
    local rt=$runtime win file mnt alive=0 until
    [ -z "$perfdata" ] || rt=$profile_runtime
    # shellcheck disable=SC2207
    args=($(job_args "$j")) || { log "unknown job $j"; return 1; }
    file=$d
    if [ "$j" = fs ]; then
        if ! mnt=$(fs_prepare "$t" "$d" 2>"$base.fio.err"); then
            fs_release "$t"
            printf 'status=1\ndevice=%s\n' "$d" >"$base.meta"
            return 1
        fi
        file=$mnt/fio.dat
    fi
    kmsg "$t $j start${perfdata:+ (profiled)}"
    dev_started io0 "$d"
    fio --name="$j" --filename="$file" \
        --time_based --runtime="$rt" --ramp_time="$ramp" "${args[@]}" \
        --norandommap --randrepeat=0 --lat_percentiles=1 --percentile_list=50:99 \
        --output-format=json --output="$base.fio.json" >"$base.fio.err" 2>&1 &
    fpid=$!
    # Wait for IO to flow (the device's counters move; brd keeps none: 1 s),
    # then for the ramp to end. The window then lasts the runtime less 1.5 s
    # (at least 1 s), which leaves that much for the delays of this shell.
    if [ "$t" != brd ] && [ -r "/sys/block/${d#/dev/}/stat" ]; then
        now_us
        until=$((now_us + 60000000))
        io=$io0
        while [ "$io" = "$io0" ] && [ "$now_us" -lt "$until" ] && kill -0 "$fpid" 2>/dev/null; do
            sleep 0.05
            dev_started io "$d"
            now_us
        done
    else
        sleep 1
    fi
    sleep "$ramp.3"
    win=1
    [ "$rt" -lt 3 ] || win=$((rt - 2)).5
    if kill -0 "$fpid" 2>/dev/null; then
        cpu_stat a
        dev_ios ioa "$d"
        ta=$EPOCHREALTIME
        if [ -n "$perfdata" ]; then
            perf record -a -g -e cpu-clock -F 499 -o "$perfdata" -- sleep "$win" \
                >"$tmp/perf.err" 2>&1 || log "perf record failed: $(tail -2 "$tmp/perf.err")"
        else
            sleep "$win"
        fi
        cpu_stat b
        dev_ios iob "$d"
        tb=$EPOCHREALTIME
        # Whether fio still ran at the window's end: if not, the window
        # took in time after the job (the report then drops it).
        ! kill -0 "$fpid" 2>/dev/null || alive=1
    fi
    wait_bounded "$fpid" $((rt + ramp + 120)) || rc=$?
    kmsg "$t $j end, status $rc"
    if [ "$j" = fs ]; then
        # CPU per IO of fs is per fio operation (a write and its fsync).
        ioa=0 iob=0
        fs_release "$t"
    fi
    {
        echo "status=$rc"
        echo "device=$d"
        if [ -n "$a" ] && [ -n "$b" ]; then
            # shellcheck disable=SC2086 # split on purpose
            set -- $a
            echo "busy0=$1 user0=$2 sys0=$3 softirq0=$4 idle0=$5"
            # shellcheck disable=SC2086
            set -- $b
            echo "busy1=$1 user1=$2 sys1=$3 softirq1=$4 idle1=$5"
            echo "ios0=$ioa"
            echo "ios1=$iob"
            echo "t0=$ta"
            echo "t1=$tb"
            echo "fio_running_at_t1=$alive"
        fi
        echo "hz=$hz"
        echo "ncpu=$ncpu"
    } >"$base.meta"
    return "$rc"
}

# profile_job T J DEV: run J on DEV under perf; reports in $out/profile/.
profile_job() {
    local t=$1 j=$2 d=$3 pd=$tmp/perf.data p=$out/profile/${1}__$2 demangle=(cat)
    mkdir -p "$out/profile"
    rm -f "$pd"
    log "$t $j: profiling (perf record -a -g, ${profile_runtime}s)"
    run_job "$t" "$j" "$d" "$p" "$pd"
    [ -s "$pd" ] || { log "$t $j: no perf data"; return 0; }
    command -v c++filt >/dev/null && demangle=(c++filt)
    # Rust v0 symbols are demangled by c++filt; crate hashes ([0123abcd]) dropped.
    # --kallsyms: dst.ko is not under /lib/modules, so perf finds its symbols
    # only there.
    perf report -i "$pd" --kallsyms=/proc/kallsyms --stdio --no-children --sort sym -g none \
        --percent-limit 0.05 2>/dev/null |
        "${demangle[@]}" | sed -E 's/\[[0-9a-f]{5,16}\]//g' >"$p.report.txt"
    perf script -i "$pd" --kallsyms=/proc/kallsyms -F comm,tid,cpu,ip,sym 2>/dev/null |
        "${demangle[@]}" | sed -E 's/\[[0-9a-f]{5,16}\]//g' | gzip -c >"$p.script.gz"
    rm -f "$pd"
}

# ---------------------------------------------------------------------------
# Set up every target, each on its own RAM disk.

# Per target T: this tree's under T, the baseline's under base:T.
declare -A DEV=() STATUS=() REASON=() DESC=() LOCAL_ARGS=() QUEUES=() RAM=()
ready=()

# setup_target T KEY: set up target T on its RAM disk, recorded under KEY.
setup_target() {
    local t=$1 key=$2 sched
    dev="" reason="" setup_desc=""
    if ! "setup_$t" "${RAM[$t]}"; then
        log "$key: not available: $reason"
        STATUS[$key]=unavailable REASON[$key]=$reason
        "teardown_$t" "" >/dev/null 2>&1
        return 1
    fi
    sched=$(sed -n 's/.*\[\(.*\)\].*/\1/p' "/sys/block/${dev#/dev/}/queue/scheduler" 2>/dev/null)
    setup_desc+="; IO scheduler ${sched:-none}"
    log "$key: $dev ($setup_desc)"
    STATUS[$key]=ok REASON[$key]="" DEV[$key]=$dev DESC[$key]=$setup_desc QUEUES[$key]=$(hw_queues "$dev")
}

log "targets: $targets; jobs: $jobs; ${runtime}s + ${ramp}s ramp per job, $rounds round(s); $ncpu vCPUs${base_ko:+; baseline $base_ko}"
index=0
for t in $targets; do
    RAM[$t]=/dev/ram$index
    index=$((index + 1))
    if ! declare -F "setup_$t" >/dev/null; then
        STATUS[$t]=unavailable REASON[$t]="unknown target"
        continue
    fi
    size=$(blockdev --getsize64 "${RAM[$t]}" 2>/dev/null || echo 0)
    if [ "$size" = 0 ]; then
        STATUS[$t]=unavailable REASON[$t]="${RAM[$t]} missing (brd.rd_nr too small?)"
        continue
    fi
    log "set up $t on ${RAM[$t]}"
    # Fill the RAM disk, so that reads copy real pages on every target.
    run_bounded 180 dd if=/dev/zero of="${RAM[$t]}" bs=1M count=$((size >> 20)) oflag=direct status=none
    setup_target "$t" "$t" && ready+=("$t")
done
dst_ready=()
for t in "${ready[@]}"; do
    [[ $t != dst-* ]] || dst_ready+=("$t")
done
[ ${#dst_ready[@]} -gt 0 ] || base_ko=""

# key T: the key of target T's entries for the loaded build.
key() {
    if [ "$build" = base ] && [[ $1 == dst-* ]]; then key=base:$1; else key=$1; fi
}

# use_build B: the DST targets taken down, dst.ko swapped for build B's
# (now or base), its dstcfg first on PATH, and the DST targets set up again.
# A baseline that cannot be loaded is given up (this tree's build is loaded
# again); if this tree's cannot be loaded again, the run ends.
use_build() {
    local b=$1 t ko=$DST_KO
    [ "$b" != "$build" ] || return 0
    for t in "${dst_ready[@]}"; do
        key "$t"
        [ -z "${DEV[$key]:-}" ] || [ "${STATUS[$key]}" = broken ] || "teardown_$t" "${DEV[$key]}"
        DEV[$key]=""
    done
    [ "$b" = now ] || ko=$base_ko
    log "dst.ko: swapping in the $b build ($ko)"
    if ! run_bounded 60 rmmod dst; then
        log "rmmod dst failed: the baseline is given up"
        base_ko="" b=$build
    elif ! run_bounded 60 insmod "$ko"; then
        log "insmod $ko failed: the baseline is given up"
        base_ko=""
        [ "$b" = base ] && run_bounded 60 insmod "$DST_KO" ||
            { log "this tree's dst.ko could not be loaded again: the run ends"; exit 125; }
        b=now
    fi
    build=$b
    if [ "$b" = base ]; then PATH=$base_bin:$now_path; else PATH=$now_path; fi
    read_dst_help
    for t in "${dst_ready[@]}"; do
        key "$t"
        [ "${STATUS[$key]:-}" = broken ] || setup_target "$t" "$key" ||
            [ "$b" = base ] || STATUS[$t]=error
    done
}

# run_targets R J T...: job J of round R on each target T in turn (the
# order rotating with k), the DST targets with the loaded build.
run_targets() {
    local r=$1 j=$2 n i t dir rc
    shift 2
    local list=("$@")
    n=${#list[@]}
    for i in $(seq 0 $((n - 1))); do
        t=${list[$(((i + k) % n))]}
        key "$t"
        [ -n "${DEV[$key]:-}" ] && [ "${STATUS[$key]}" != broken ] || continue
        dir=$raw
        [ "$key" = "$t" ] || dir=$braw
        mkdir -p "$dir"
        log "round $r: $j on $key"
        rc=0
        run_job "$t" "$j" "${DEV[$key]}" "$dir/${t}__${j}__r$r" || rc=$?
        if [ "$rc" != 0 ]; then
            log "$key $j: fio failed (status $rc): $(tail -3 "$dir/${t}__${j}__r$r.fio.err" | tr '\n' ' ')"
            [ "${STATUS[$key]}" = ok ] && STATUS[$key]=error REASON[$key]="$j: fio status $rc"
            if [ "$rc" = 125 ]; then
                STATUS[$key]=broken REASON[$key]="IO stuck in $j: the target's other jobs were skipped"
            fi
        fi
    done
}

# ---------------------------------------------------------------------------
# Measure: for each round and job, every target in turn, the order rotating;
# with a baseline, then the DST targets again with the other build.

# The build that runs a job first alternates from job to job and, for the
# same job, from round to round: a build that always ran a job second
# would always run it on targets set up just before, and always after the
# same neighbours.
k=0
for r in $(seq 1 "$rounds"); do
    n=0
    for j in $jobs; do
        if [ -n "$base_ko" ]; then
            if [ $(((r + n) % 2)) = 1 ]; then use_build now; else use_build base; fi
        fi
        run_targets "$r" "$j" "${ready[@]}"
        if [ -n "$base_ko" ]; then
            if [ "$build" = now ]; then use_build base; else use_build now; fi
            run_targets "$r" "$j" "${dst_ready[@]}"
        fi
        k=$((k + 1)) n=$((n + 1))
    done
done
use_build now

if [ "$profile" = 1 ]; then
    if command -v perf >/dev/null; then
        for t in $profile_targets; do
            case " ${ready[*]} " in *" $t "*) ;; *) continue ;; esac
            [ "${STATUS[$t]}" != broken ] || continue
            for j in $profile_jobs; do
                profile_job "$t" "$j" "${DEV[$t]}"
            done
        done
    else
        log "perf not installed: no profiles"
    fi
fi

for key in "${!STATUS[@]}"; do
    t=${key#base:} dir=$raw
    [ "$key" = "$t" ] || dir=$braw
    mkdir -p "$dir"
    printf 'status=%s\nreason=%s\ndevice=%s\nsetup=%s\nhw_queues=%s\n' "${STATUS[$key]}" \
        "${REASON[$key]}" "${DEV[$key]:-}" "${DESC[$key]:-}" "${QUEUES[$key]:-}" >"$dir/target-$t.txt"
done

# The baseline's report describes the same VM.
[ ! -d "$braw" ] || cp "$raw/env.txt" "$raw/cipher.txt" "$braw/"

# Connect times (this tree's build), once the measured devices are no longer needed.
for t in "${ready[@]}"; do
    [ "$build" = now ] && [ -n "${LOCAL_ARGS[$t]:-}" ] && [ "${STATUS[$t]}" != broken ] || continue
    measure_connect "$t" "${DEV[$t]}"
done

# ---------------------------------------------------------------------------
# Tear down (a broken target is left alone: its IO does not complete).

for t in "${ready[@]}"; do
    [ "${STATUS[$t]}" != broken ] || { log "$t left in place (stuck IO)"; continue; }
    "teardown_$t" "${DEV[$t]}"
done

dmesg >"$out/dmesg.log" 2>/dev/null
bad=$(grep -cE 'WARNING:|BUG:|Oops|possible circular locking|possible recursive locking|inconsistent lock state|blocked for more than' "$out/dmesg.log")
echo "kernel_warnings=$bad" >>"$raw/env.txt"
log "done; kernel log: $bad warning line(s)"
rm -rf "$tmp"
exit 0
