#!/usr/bin/env bash
#
# module_load_unload.sh - dst.ko survives repeated insmod/rmmod (20 cycles):
# after every load /sys/module/dst exists (state "live") and lsmod lists dst,
# after every unload neither does; the generic netlink family "dst" goes away
# with the module (dstcfg -a status then fails saying "not loaded") and comes
# back with it; unreclaimable slab, vmalloc and percpu memory grow by less than
# 2 MiB each over all cycles (a gross leak check, not an exact one).
# Then unloading with something in every state (DST_STATE_CYCLES, default 2,
# times): export A (127.0.0.1:1025) with sessions of dst0 (connected, idle),
# dst1 (connected), a userspace client writing and verifying and one holding
# an idle session (`dstpeer client soak` / `hold`); dst2 (loss timeout 1 h)
# reconnecting and dst3 (loss timeout 1 s) failed, their export B gone; a
# device being created (`dstcfg -a local`, request timeout 60 s) whose
# handshake a silent listener never answers. While fio writes to dst1,
# `rmmod dst` is refused ("in use") and disturbs nothing: fio succeeds, every
# device keeps its state, dst1 did not reconnect and data written through it
# afterwards reaches the export's disk. Idle again, `rmmod dst` succeeds
# within 20 s (it cuts the handshake of the device being created short);
# afterwards no /dev/dst*, /sys/block/dst*, dst threads, "dst"
# block major or /sys/kernel/dst is left, the device being created was not
# created (its dstcfg failed: "the dst module is being unloaded"), TCP sockets in use and allocated are back to
# their numbers before (sockstat), no socket on the ports used is left, and
# the userspace clients saw their sessions end (within 10 s). Unreclaimable
# slab, vmalloc and percpu memory grow by less than 1 MiB each over these
# cycles but the first (which fills kernel caches: its growth is no leak).
# The runner loads the module before the test, so unloading that instance is
# the first thing tested.
# timeout: 1200
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

cycles=${DST_CYCLES:-20}
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

# Unloading with devices in every state and an export with sessions.
peer=$DST_REPO/tools/dstpeer/target/release/dstpeer
[ -x "$peer" ] || fail "$peer not built: run make dstpeer"
state_cycles=${DST_STATE_CYCLES:-2}

# TCP sockets hashed (inuse, this namespace) and allocated (alloc: every
# TCP socket not yet destroyed, kernel ones and orphans included).
tcp_inuse() { awk '$1 == "TCP:" { print $3 }' /proc/net/sockstat; }
tcp_alloc() { awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "alloc") print $(i + 1) }' /proc/net/sockstat; }
# The module's threads and workqueue rescuers: dstN.Q-tx/rx, dst-exp-*,
# dst-export, dst_crypto (not the dstpeer and dstcfg processes).
# shellcheck disable=SC2009 # pgrep refuses patterns longer than 15 characters
dst_threads() { ps -e -o comm= | grep -cE '^dst([0-9]|-exp|_crypto)' || true; }

# wait_gone PID SECONDS: wait until process PID has exited, else fail.
wait_gone() {
    local pid=$1 limit=$2 start
    start=$(now_ms)
    while kill -0 "$pid" 2>/dev/null; do
        [ $(( $(now_ms) - start )) -lt $((limit * 1000)) ] || return 1
        sleep 0.2
    done
}

# states: "dst0 STATE dst1 STATE ..." of every device.
states() {
    dstcfg -a list --json | "$PYTHON" -c '
import json, sys
print(" ".join(e["device"][5:] + " " + e["state"] for e in json.load(sys.stdin) if e["kind"] == "device"))'
}

export_sessions() {
    dstcfg -a list --json | "$PYTHON" -c '
import json, sys
print(sum(e["sessions"] for e in json.load(sys.stdin) if e["kind"] == "export" and e["port"] == 1025))'
}

# wait_sessions N: wait (at most 20 s) until export A has N sessions.
wait_sessions() {
    local start
    start=$(now_ms)
    while [ "$(export_sessions)" -lt "$1" ]; do
        [ $(( $(now_ms) - start )) -lt 20000 ] ||
            fail "export A has $(export_sessions) sessions after 20 s, expected $1"
        sleep 0.2
    done
}

state_cycle() {
    local c=$1 out d hold_pid soak_pid fio_pid add_pid silent_pid rc=0 t0 t1 t_add want inflight left=""
    out=$DST_TEST_OUT/state-$c
    mkdir -p "$out"
    dst_load
    # Export A --shared: the dstpeer clients below (identity
    # "dstpeer-client") write beside dst0 and dst1 (this host's name), and
    # an export lets one identity write at a time unless shared.
    dstcfg -r 127.0.0.1 -a export -f /dev/ram0 --shared >/dev/null
    dstcfg -r 127.0.0.1 -p 1026 -a export -f /dev/ram1 >/dev/null
    d=$(dstcfg -r 127.0.0.1 -a local)
    # Second devices of the same exports: --duplicate (local is idempotent).
    d="$d $(dstcfg -r 127.0.0.1 -a local --duplicate)"
    d="$d $(dstcfg -r 127.0.0.1 -p 1026 -a local --loss-timeout 3600000)"
    d="$d $(dstcfg -r 127.0.0.1 -p 1026 -a local --duplicate --loss-timeout 1000)"
    assert_eq "$d" "/dev/dst0 /dev/dst1 /dev/dst2 /dev/dst3" "state cycle $c: devices"
    dd if=/dev/urandom of=/dev/dst0 bs=64k count=16 seek=2048 oflag=direct status=none
    # A userspace client writing and verifying: a busy session of export A.
    "$peer" client 127.0.0.1:1025 soak 256M 32M --stop-file "$out/stop" --max-secs 300 \
        >"$out/soak.log" 2>&1 &
    soak_pid=$!
    dstcfg -r 127.0.0.1 -p 1026 -a unexport >/dev/null
    wait_dst_state dst3 failed 30
    wait_dst_state dst2 reconnecting 10
    want="dst0 connected dst1 connected dst2 reconnecting dst3 failed"

    # IO in flight on dst1, which is open: rmmod must refuse and change
    # nothing.
    fio --name="busy-$c" --filename=/dev/dst1 --ioengine=libaio --direct=1 --rw=randwrite \
        --bs=64k --iodepth=16 --size=32m --time_based --runtime=15 \
        --output="$out/fio.log" >/dev/null 2>&1 &
    fio_pid=$!
    wait_io_flowing dst1
    inflight=$(dev_inflight dst1)
    expect_fail rmmod dst
    inflight="$inflight and $(dev_inflight dst1)"
    log "state cycle $c: rmmod with IO in flight on dst1 ($inflight requests before and after) refused: $ERR"
    assert_contains "$ERR" "in use" "state cycle $c: rmmod with a device open"
    dst_loaded || fail "state cycle $c: module gone after a refused rmmod"
    kill -0 "$fio_pid" 2>/dev/null || fail "state cycle $c: fio ended before rmmod: nothing was in flight"
    assert_eq "$(states)" "$want" "state cycle $c: states after the refused rmmod, with IO in flight"
    wait "$fio_pid" || rc=$?
    [ "$rc" = 0 ] || fail "state cycle $c: fio failed (status $rc) after the refused rmmod: $(tail -n 5 "$out/fio.log")"
    # dst1 still works: data written through it reaches the export's disk.
    head -c 1M /dev/urandom >"$out/pattern"
    dd if="$out/pattern" of=/dev/dst1 bs=64k seek=1024 oflag=direct status=none
    assert_eq "$(dev_sha /dev/ram0 1 64)" "$(sha256sum <"$out/pattern" | cut -d' ' -f1)" \
        "state cycle $c: data written through dst1 after the refused rmmod"
    assert_eq "$(states)" "$want" "state cycle $c: states after fio"
    assert_eq "$(dst_field dst1 reconnects)" 0 "state cycle $c: reconnects of dst1"
    kill -0 "$soak_pid" 2>/dev/null || fail "state cycle $c: dstpeer soak ended early: $(tail -n 3 "$out/soak.log")"

    # An idle client session (the export ends sessions idle for 60 s: start
    # it now), and a device being created: its handshake waits for an answer
    # from a listener that never gives one (request timeout 60 s: rmmod must
    # not wait for it).
    "$peer" client 127.0.0.1:1025 hold 300 >"$out/hold.log" 2>&1 &
    hold_pid=$!
    wait_sessions 4
    log "state cycle $c: export A has $(export_sessions) sessions (dst0, dst1, soak, hold); $(states)"
    "$PYTHON" -c '
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 1027))
s.listen(8)
time.sleep(300)' &
    silent_pid=$!
    t0=$(now_ms)
    until ss -Hltn '( sport = :1027 )' | grep -q .; do
        [ $(( $(now_ms) - t0 )) -lt 30000 ] || fail "state cycle $c: the silent listener does not listen"
        sleep 0.1
    done
    dstcfg -r 127.0.0.1 -p 1027 -a local --req-timeout 60000 >"$out/add.log" 2>&1 &
    add_pid=$!
    t_add=$(now_ms)
    until ss -Htn state established '( dport = :1027 )' | grep -q .; do
        [ $(( $(now_ms) - t_add )) -lt 10000 ] || fail "state cycle $c: no connection to the silent listener"
        sleep 0.1
    done

    t0=$(now_ms) rc=0
    timeout 120 rmmod dst || rc=$?
    t1=$(now_ms)
    log "state cycle $c: rmmod with every state: status $rc after $((t1 - t0)) ms ($((t1 - t_add)) ms after the device creation began; its request timeout: 60000 ms)"
    [ "$rc" != 124 ] || fail "state cycle $c: rmmod dst hung for 120 s"
    [ "$rc" = 0 ] || fail "state cycle $c: rmmod dst failed (status $rc)"
    [ $((t1 - t0)) -le 20000 ] || fail "state cycle $c: rmmod dst took $((t1 - t0)) ms; expected within 20 s"
    check_unloaded "state $c"
    ! compgen -G '/dev/dst*' >/dev/null || fail "state cycle $c: $(compgen -G '/dev/dst*') left after rmmod"
    ! compgen -G '/sys/block/dst*' >/dev/null || fail "state cycle $c: $(compgen -G '/sys/block/dst*') left after rmmod"
    [ ! -e /sys/kernel/dst ] || fail "state cycle $c: /sys/kernel/dst left after rmmod"
    ! grep -qw dst /proc/devices || fail "state cycle $c: the dst block major is still registered"
    assert_eq "$(dst_threads)" 0 "state cycle $c: dst threads left after rmmod"
    wait_gone "$add_pid" 10 || fail "state cycle $c: dstcfg -a local still running 10 s after rmmod"
    rc=0
    wait "$add_pid" || rc=$?
    log "state cycle $c: the device being created: dstcfg status $rc: $(head -n 1 "$out/add.log")"
    [ "$rc" != 0 ] || fail "state cycle $c: the device on the silent listener was created: $(cat "$out/add.log")"
    assert_contains "$(cat "$out/add.log")" "being unloaded" "state cycle $c: why the device creation failed"
    kill "$silent_pid"
    wait "$silent_pid" 2>/dev/null || true
    wait_gone "$hold_pid" 10 || fail "state cycle $c: dstpeer hold still connected 10 s after rmmod"
    wait_gone "$soak_pid" 10 || fail "state cycle $c: dstpeer soak still running 10 s after rmmod"
    wait "$hold_pid" || true
    wait "$soak_pid" || true
    assert_contains "$(cat "$out/hold.log")" "closed by the export" "state cycle $c: dstpeer hold"
    log "state cycle $c: dstpeer soak: $(tail -n 1 "$out/soak.log")"
    # Sockets: the module's are released (sock_no_linger: reset, no orphans).
    for _ in $(seq 1 50); do
        left=$(ss -Htan state established state syn-sent state syn-recv state close-wait \
            state listening state fin-wait-1 state fin-wait-2 state last-ack \
            '( sport = :1025 or dport = :1025 or sport = :1026 or dport = :1026 or dport = :1027 )')
        [ -n "$left" ] || [ "$(tcp_inuse)" -gt "$tcp0" ] || [ "$(tcp_alloc)" -gt "$alloc0" ] || break
        sleep 0.2
    done
    [ -z "$left" ] || fail "state cycle $c: sockets left after rmmod: $left"
    assert_eq "$(tcp_inuse)" "$tcp0" "state cycle $c: TCP sockets in use after rmmod"
    assert_eq "$(tcp_alloc)" "$alloc0" "state cycle $c: TCP sockets allocated after rmmod"
}

tcp0=$(tcp_inuse) alloc0=$(tcp_alloc)
log "TCP sockets before the state cycles: $tcp0 in use, $alloc0 allocated"
# The first cycle warms the kernel's caches up (the first fio, aio context,
# TCP connection, debugfs entry of a disk, ...: about 1.3 MiB of slab that
# stays); the memory check, a gross one, counts the cycles after it.
state_cycle 1
read -r slab0 vmalloc0 percpu0 avail0 < <(snapshot)
log "after state cycle 1: SUnreclaim ${slab0} kB, VmallocUsed ${vmalloc0} kB, Percpu ${percpu0} kB"
for i in $(seq 2 "$state_cycles"); do
    state_cycle "$i"
    log "after state cycle $i: SUnreclaim $(meminfo_kb SUnreclaim) kB, VmallocUsed $(meminfo_kb VmallocUsed) kB, Percpu $(meminfo_kb Percpu) kB (before dropping caches)"
done
read -r slab1 vmalloc1 percpu1 avail1 < <(snapshot)
log "after $state_cycles state cycles: SUnreclaim ${slab1} kB, VmallocUsed ${vmalloc1} kB, Percpu ${percpu1} kB"
log "growth over cycles 2..$state_cycles: SUnreclaim $((slab1 - slab0)) kB, VmallocUsed $((vmalloc1 - vmalloc0)) kB, Percpu $((percpu1 - percpu0)) kB, MemAvailable $((avail0 - avail1)) kB less"
[ $((slab1 - slab0)) -lt 1024 ] || fail "unreclaimable slab grew by $((slab1 - slab0)) kB over state cycles 2..$state_cycles"
[ $((vmalloc1 - vmalloc0)) -lt 1024 ] || fail "vmalloc use grew by $((vmalloc1 - vmalloc0)) kB over state cycles 2..$state_cycles"
[ $((percpu1 - percpu0)) -lt 1024 ] || fail "percpu use grew by $((percpu1 - percpu0)) kB over state cycles 2..$state_cycles"

# Leave the module loaded, as the test found it, and working.
dst_load
check_family end present
dstcfg -r 127.0.0.1 -a export -f /dev/ram0 >/dev/null
dev=$(dstcfg -r 127.0.0.1 -a local)
assert_eq "$dev" /dev/dst0 "device after the state cycles"
dd if=/dev/urandom of=/dev/dst0 bs=64k count=16 oflag=direct status=none
assert_eq "$(dev_sha /dev/dst0 1)" "$(dev_sha /dev/ram0 1)" "data written through dst0 after reloading"
dstcfg -a delete -d dst0 >/dev/null
dstcfg -r 127.0.0.1 -a unexport >/dev/null
log "ok"
