#!/usr/bin/env bash
#
# module_load_unload.sh - dst.ko survives repeated insmod/rmmod (50 cycles):
# after every load /sys/module/dst exists (state "live") and lsmod lists dst,
# after every unload neither does; the generic netlink family "dst" goes away
# with the module (dstcfg -a status then fails saying "not loaded") and comes
# back with it; unreclaimable slab, vmalloc and percpu memory grow by less than
# 2 MiB each over all cycles (a gross leak check, not an exact one).
# The runner loads the module before the test, so unloading that instance is
# the first thing tested.
# timeout: 900
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

cycles=${DST_CYCLES:-50}
raw=$DST_REPO/tests/netlink_raw.py

in_lsmod() { lsmod | awk '$1 == "dst" { found = 1 } END { exit !found }'; }

check_loaded() {
    dst_loaded || fail "cycle $1: /sys/module/dst missing after insmod"
    assert_eq "$(cat /sys/module/dst/initstate)" live "cycle $1: /sys/module/dst/initstate"
    in_lsmod || fail "cycle $1: dst not in lsmod after insmod"
}

check_unloaded() {
    ! dst_loaded || fail "cycle $1: /sys/module/dst still present after rmmod"
    ! in_lsmod || fail "cycle $1: dst still in lsmod after rmmod"
}

# The netlink family follows the module (checked on some cycles: each check
# starts python and dstcfg, slow under emulation).
check_family() {
    local cycle=$1 want=$2
    if [ "$want" = present ]; then
        "$PYTHON" "$raw" --family-present >/dev/null || fail "cycle $cycle: family dst not registered while loaded"
        dstcfg -a status >/dev/null || fail "cycle $cycle: dstcfg -a status failed while loaded"
    else
        "$PYTHON" "$raw" --family-absent >/dev/null || fail "cycle $cycle: family dst still registered after rmmod"
        expect_fail dstcfg -a status
        assert_contains "$ERR$OUT" "not loaded" "cycle $cycle: dstcfg -a status without the module"
    fi
}

# Memory counters, after letting RCU callbacks and caches settle.
snapshot() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
    sleep 2
    echo "$(meminfo_kb SUnreclaim) $(meminfo_kb VmallocUsed) $(meminfo_kb Percpu) $(meminfo_kb MemAvailable)"
}

if dst_loaded; then
    log "unloading the dst.ko the runner loaded"
    dst_unload
fi
check_unloaded 0
check_family 0 absent

log "warm-up cycle"
dst_load
check_loaded 0
check_family 0 present
dst_unload

read -r slab0 vmalloc0 percpu0 avail0 < <(snapshot)
log "before: SUnreclaim ${slab0} kB, VmallocUsed ${vmalloc0} kB, Percpu ${percpu0} kB, MemAvailable ${avail0} kB"

for i in $(seq 1 "$cycles"); do
    dst_load
    check_loaded "$i"
    if [ "$i" = 1 ] || [ $((i % 10)) = 0 ]; then check_family "$i" present; fi
    dst_unload
    check_unloaded "$i"
    if [ "$i" = 1 ] || [ $((i % 10)) = 0 ]; then check_family "$i" absent; fi
done
log "$cycles insmod/rmmod cycles done"

read -r slab1 vmalloc1 percpu1 avail1 < <(snapshot)
log "after:  SUnreclaim ${slab1} kB, VmallocUsed ${vmalloc1} kB, Percpu ${percpu1} kB, MemAvailable ${avail1} kB"
log "growth: SUnreclaim $((slab1 - slab0)) kB, VmallocUsed $((vmalloc1 - vmalloc0)) kB, Percpu $((percpu1 - percpu0)) kB, MemAvailable $((avail0 - avail1)) kB less"
[ $((slab1 - slab0)) -lt 2048 ] || fail "unreclaimable slab grew by $((slab1 - slab0)) kB over $cycles cycles"
[ $((vmalloc1 - vmalloc0)) -lt 2048 ] || fail "vmalloc use grew by $((vmalloc1 - vmalloc0)) kB over $cycles cycles"
[ $((percpu1 - percpu0)) -lt 2048 ] || fail "percpu use grew by $((percpu1 - percpu0)) kB over $cycles cycles"
[ $((avail0 - avail1)) -lt 16384 ] || fail "MemAvailable dropped by $((avail0 - avail1)) kB over $cycles cycles"

# Leave the module loaded, as the test found it.
dst_load
check_family end present
log "ok"
