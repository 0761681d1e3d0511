#!/usr/bin/env bash
#
# export_named.sh - several exports on one address and port, told apart by
# name: alpha, beta and gamma listen on 127.0.0.1:1025 (/dev/ram0..2), three
# devices attach by name (local -n) and a parallel fio verify on them
# passes, each device's data landing on its own RAM disk; discover lists
# exactly the three; an unknown name, local without a name and unexport
# without a name are refused with messages that say so; unexport -n beta
# leaves alpha and gamma serving; an allow-list that excludes this node
# hides gamma from discover and refuses it; the single-export form works
# unchanged on another port.
# timeout: 900
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

A=127.0.0.1
names=(alpha beta gamma)

for i in 0 1 2; do
    out=$(dstcfg export -r $A -f /dev/ram$i -n "${names[$i]}")
    log "$out"
done
n=$(dstcfg list --json | grep -o '"kind": "export"' | wc -l)
assert_eq "$n" 3 "exports listed"

# discover: exactly the three names, as lines and as JSON.
got=$(dstcfg discover -r $A | sort | tr '\n' ' ')
assert_eq "$got" "alpha beta gamma " "discover -r $A"
json=$(dstcfg discover -r $A --json)
for name in "${names[@]}"; do assert_contains "$json" "\"$name\"" "discover --json"; done
log "discover --json: $json"

# Refusals: an unknown name, no name while three listen.
expect_fail dstcfg local -r $A -n delta
log "local -n delta: $ERR"
assert_contains "$ERR" "no export of that name here" "local -n delta"
assert_contains "$ERR" "did not answer as delta" "hint of local -n delta"
expect_fail dstcfg local -r $A
log "local without -n: $ERR"
assert_contains "$ERR" "no export of that name here" "local without -n"
assert_contains "$ERR" "dstcfg discover -r $A" "hint of local without -n"
[ ! -e /sys/block/dst0 ] || fail "a refused local left a device"

# Three devices, by name.
declare -A dev
for name in "${names[@]}"; do
    dev[$name]=$(dstcfg local -r $A -n "$name")
    log "$name: ${dev[$name]}"
done

# A parallel fio verify on the three; then each device reads what its own
# RAM disk holds, and the three differ (different seeds).
pids=()
seed=1
for name in "${names[@]}"; do
    fio_verify "fio-$name" --filename="${dev[$name]}" --rw=randwrite --bsrange=4k-256k \
        --size=64m --iodepth=16 --randseed=$seed &
    pids+=($!)
    seed=$((seed + 1))
done
for pid in "${pids[@]}"; do wait "$pid" || fail "a parallel fio verify failed"; done
declare -A sha
for i in 0 1 2; do
    name=${names[$i]}
    sha[$name]=$(dev_sha "${dev[$name]}" 64)
    assert_eq "$(dev_sha /dev/ram$i 64)" "${sha[$name]}" "$name's data on /dev/ram$i"
done
[ "${sha[alpha]}" != "${sha[beta]}" ] && [ "${sha[beta]}" != "${sha[gamma]}" ] &&
    [ "${sha[alpha]}" != "${sha[gamma]}" ] || fail "two devices hold the same data"

# unexport without a name: refused, naming the way out; nothing stopped.
expect_fail dstcfg unexport -r $A
log "unexport without -n: $ERR"
assert_contains "$ERR" "name one" "unexport without -n"
assert_contains "$ERR" "-n NAME" "hint of unexport without -n"
assert_eq "$(dstcfg discover -r $A | wc -l)" 3 "exports after the refused unexport"
expect_fail dstcfg unexport -r $A -n delta
assert_contains "$ERR" "no export named delta listens on $A:1025" "unexport -n delta"

# unexport -n beta: alpha and gamma keep serving.
dstcfg unexport -r $A -n beta
got=$(dstcfg discover -r $A | sort | tr '\n' ' ')
assert_eq "$got" "alpha gamma " "discover after unexport -n beta"
dstcfg delete -d "${dev[beta]#/dev/}" --force >/dev/null
for i in 0 2; do
    name=${names[$i]}
    dd if=/dev/urandom of="$DST_TEST_OUT/$name" bs=1M count=2 status=none
    dd if="$DST_TEST_OUT/$name" of="${dev[$name]}" bs=1M seek=100 oflag=direct status=none
    dd if="${dev[$name]}" bs=1M count=2 skip=100 iflag=direct status=none |
        cmp - "$DST_TEST_OUT/$name" || fail "$name after unexport -n beta"
    dd if=/dev/ram$i bs=1M count=2 skip=100 status=none | cmp - "$DST_TEST_OUT/$name" ||
        fail "$name's write after unexport -n beta is not on /dev/ram$i"
    assert_eq "$(dst_field "${dev[$name]#/dev/}" state)" connected "$name's device"
done

# gamma again, with an allow-list that excludes this node: discover no
# longer names it, and local -n gamma is refused.
dstcfg delete -d "${dev[gamma]#/dev/}" >/dev/null
dstcfg unexport -r $A -n gamma
dstcfg export -r $A -f /dev/ram2 -n gamma --allow 192.0.2.0/24 >/dev/null
assert_eq "$(dstcfg discover -r $A)" alpha "discover with gamma's allow-list"
expect_fail dstcfg local -r $A -n gamma
log "local -n gamma from outside its allow-list: $ERR"
# alpha is the only export this node may use, yet two listen: without a
# name, still refused.
expect_fail dstcfg local -r $A --duplicate

# The single-export form, on another port.
dstcfg -r $A -p 1026 -a export -f /dev/ram3
d3=$(dstcfg -r $A -p 1026 -a local)
assert_eq "$(dstcfg discover -r $A -p 1026)" "$(hostname):ram3" "discover on port 1026"
dd if=/dev/urandom of="$DST_TEST_OUT/ram3" bs=1M count=2 status=none
dd if="$DST_TEST_OUT/ram3" of="$d3" bs=1M oflag=direct status=none
dd if=/dev/ram3 bs=1M count=2 status=none | cmp - "$DST_TEST_OUT/ram3" ||
    fail "the single export's data is not on /dev/ram3"

# Teardown: every device, then every export, by name where needed.
dstcfg delete -d "${d3#/dev/}" >/dev/null
dstcfg delete -d "${dev[alpha]#/dev/}" >/dev/null
dstcfg unexport -r $A -p 1026
dstcfg unexport -r $A -n gamma
dstcfg unexport -r $A
expect_fail dstcfg discover -r $A
assert_contains "$ERR" "connection refused" "discover with no export left"
log "all stopped"
