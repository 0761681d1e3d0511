#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# memory.sh - what a DST device and its export cost in memory, measured in
# the guest against the bound stated in Documentation/design.md ("Memory").
#
# usage (host): scripts/vm.sh --timeout 900 -- bench/memory.sh
#        DST_MEM_CYCLES=N (in the guest's environment: prefix the command) sets
#        the number of cycles (default 2).
#
# Exports /dev/ram0 over loopback and reads the kernel's free memory (with
# the page cache dropped, so only kernel allocations count):
#   1. before and after `dstcfg -a local` (one queue of depth 128, 1 MiB max
#      IO), with the export already serving: the device's fixed cost, its
#      export session included;
#   2. the lowest value while fio keeps N 1 MiB IOs in flight (N = 16 and
#      128), reads and writes with direct IO: the in-flight cost, which the
#      design bounds by N x 1 MiB at the export (its data pages) plus the
#      socket buffers;
#   3. after the device is deleted and the export stopped: what is left;
#      all of it twice, so that kept caches and a leak can be told apart.
# Prints one line per figure, in KiB. Sampling every 0.2 s can miss short
# peaks; the in-flight figures are lower bounds of the peak.
set -euo pipefail

[ -n "${DST_KO:-}" ] || { echo "run me in the VM: scripts/vm.sh -- bench/memory.sh" >&2; exit 2; }
grep -q '^dst ' /proc/modules || insmod "$DST_KO"

# Free memory in KiB once caches are dropped and slabs shrunk.
free_kb() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
    awk '/^MemFree:/ {print $2}' /proc/meminfo
}
# Lowest MemFree (KiB) while fio runs with $1 IOs of 1 MiB in flight ($2: rw).
low_during_fio() {
    local depth=$1 rw=$2 low cur pid
    fio --name=mem --filename="$dev" --ioengine=libaio --direct=1 --rw="$rw" \
        --bs=1M --iodepth="$depth" --time_based --runtime=8 --output=/dev/null &
    pid=$!
    low=$(awk '/^MemFree:/ {print $2}' /proc/meminfo)
    while kill -0 "$pid" 2>/dev/null; do
        cur=$(awk '/^MemFree:/ {print $2}' /proc/meminfo)
        [ "$cur" -lt "$low" ] && low=$cur
        sleep 0.2
    done
    wait "$pid"
    echo "$low"
}

dd if=/dev/zero of=/dev/ram0 bs=1M count=512 status=none
base=$(free_kb)
# Twice: what the first cycle leaves behind may be caches the kernel keeps
# (slab, per-CPU page lists, worker threads); a leak would grow again.
for cycle in $(seq "${DST_MEM_CYCLES:-2}"); do
    dstcfg -r 127.0.0.1 -a export -f /dev/ram0 >/dev/null
    before=$(free_kb)
    dev=$(dstcfg -r 127.0.0.1 -a local)
    sleep 1
    with_dev=$(free_kb)
    echo "cycle $cycle: export + device (1 queue, depth 128): $((before - with_dev)) KiB"
    for depth in 16 128; do
        for rw in read write; do
            idle=$(free_kb)
            low=$(low_during_fio "$depth" "$rw")
            echo "cycle $cycle: in flight $depth x 1 MiB $rw: $((idle - low)) KiB" \
                "(fio's own buffers $((depth * 1024)) KiB; the export's pages at most $((depth * 1024)) KiB; plus socket buffers)"
        done
    done
    dstcfg -a delete -d "${dev#/dev/}" >/dev/null
    dstcfg -r 127.0.0.1 -a unexport >/dev/null
    echo "cycle $cycle: free memory below the start after delete and unexport: $((base - $(free_kb))) KiB"
done
