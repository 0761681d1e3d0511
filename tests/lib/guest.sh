# shellcheck shell=bash
#
# guest.sh - helper functions for the guest tests in tests/vm/ (source it:
#   . "$DST_REPO/tests/lib/guest.sh"). Runs inside the VM, as root.
#
#   log MSG...            print a progress line
#   fail MSG...           print "FAIL: MSG" to stderr and exit 1
#   assert_eq ACTUAL EXPECTED [WHAT]
#   assert_contains TEXT NEEDLE [WHAT]
#   expect_fail CMD...    run CMD, require a non-zero exit; its stderr is left
#                         in $ERR, its stdout in $OUT and its status in $RC
#   dst_loaded            true if dst.ko is loaded
#   dst_load / dst_unload insmod "$DST_KO" / rmmod dst, checked
#   as_user CMD...        run CMD as uid/gid 65534 with no capabilities
#   kmsg MSG...           write a marker line into the kernel log
#   meminfo_kb FIELD      a /proc/meminfo value in KiB
#   PYTHON                a python3 that unprivileged users can run too
#
# For the fault tests (tests/vm/fault_*.sh):
#   netns_pair            namespaces "exp" and "loc" joined by veth-exp
#                         (10.9.0.1/24, fd00:9::1/64) and veth-loc (10.9.0.2/24,
#                         fd00:9::2/64), all links up; sets DST_DEVICE_NS=loc
#   DST_DEVICE_NS         the namespace the tests' devices live in (empty: the
#                         initial one); dst_field and wait_dst_state look
#                         there, as a namespace sees only its own devices
#   now_ms                wall clock in milliseconds
#   dst_field DEV KEY     a key of DEV's object in `dstcfg -a list --json`
#                         (DEV: dstN or /dev/dstN); status 2: no such device,
#                         3: no such key
#   wait_dst_state DEV STATE SECONDS
#                         wait until DEV is in STATE, else fail; $WAITED_MS is
#                         how long it took
#   dst_io_errors         number of "I/O error, dev dst" lines in the kernel log
#   dev_inflight DEV      requests in flight on DEV (reads + writes)
#   dev_done DEV          requests completed on DEV so far (reads + writes)
#   wait_done_after DEV COUNT SECONDS
#                         wait until DEV completed more than COUNT requests,
#                         else fail; $WAITED_MS is how long it took
#   dev_sha DEV MIB [SKIP_MIB]
#                         sha256 of MIB MiB of DEV (from SKIP_MIB), direct IO
#   fio_verify NAME ARGS...
#                         fio with crc32c verification, direct IO and libaio,
#                         plus ARGS; terse output in $DST_TEST_OUT/NAME.terse,
#                         errors in $DST_TEST_OUT/NAME.err; logs its bandwidth;
#                         returns fio's status (124: not done in $FIO_TIMEOUT s,
#                         default 600)

: "${DST_REPO:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${DST_KO:=$DST_REPO/dst.ko}"
export DST_REPO DST_KO

# Prefer the system python: a per-user install (pyenv shims under $HOME) is
# not reachable for the unprivileged user of as_user.
if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=$(command -v python3); fi
export PYTHON

log() { printf '# %s\n' "$*"; }

fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

assert_eq() {
    [ "$1" = "$2" ] || fail "${3:-value}: expected '$2', got '$1'"
}

assert_contains() {
    case $1 in
        *"$2"*) ;;
        *) fail "${3:-output}: '$2' not found in: $1" ;;
    esac
}

expect_fail() {
    local out err
    out=$(mktemp) err=$(mktemp)
    RC=0
    "$@" >"$out" 2>"$err" || RC=$?
    # shellcheck disable=SC2034 # OUT, ERR and RC are for the caller
    OUT=$(cat "$out") ERR=$(cat "$err")
    rm -f "$out" "$err"
    [ "$RC" -ne 0 ] || fail "expected failure, but succeeded: $* (stdout: $OUT)"
}

dst_loaded() { [ -d /sys/module/dst ]; }

dst_load() {
    [ -f "$DST_KO" ] || fail "dst_load: $DST_KO not found"
    insmod "$DST_KO" || fail "dst_load: insmod $DST_KO failed"
    dst_loaded || fail "dst_load: /sys/module/dst missing after insmod"
}

dst_unload() {
    rmmod dst || fail "dst_unload: rmmod dst failed (refcnt $(cat /sys/module/dst/refcnt 2>/dev/null))"
    ! dst_loaded || fail "dst_unload: /sys/module/dst still present after rmmod"
}

as_user() {
    command -v setpriv >/dev/null || fail "as_user: setpriv (util-linux) not found"
    setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
        env HOME=/ USER=nobody "$@"
}

kmsg() { printf 'dst-test: %s\n' "$*" >/dev/kmsg; }

# in_kernel_log [GREP-OPTION...] PATTERN: a line of the kernel log matches.
# Not `dmesg | grep -q`: grep quits at the first match, which can kill dmesg
# with SIGPIPE, and pipefail then fails the check although the line is there.
in_kernel_log() { grep -q "$@" <(dmesg); }

# has_security: whether this dstcfg has the data protection options.
has_security() { grep -q -- '--protection' <(dstcfg --help 2>&1); }

# psk_file PATH: a pre-shared key at PATH, mode 0600 (`dstcfg -a genkey`;
# 32 random bytes if dstcfg has no --protection, for peers that need one).
psk_file() {
    if has_security; then
        dstcfg -a genkey -f "$1" >/dev/null || fail "dstcfg -a genkey -f $1 failed"
    else
        head -c 32 /dev/urandom >"$1"
    fi
    chmod 600 "$1"
}

meminfo_kb() {
    awk -v f="$1:" '$1 == f { print $2; found = 1 } END { if (!found) exit 1 }' /proc/meminfo ||
        fail "meminfo_kb: no field $1 in /proc/meminfo"
}

# netns_pair: namespaces exp (10.9.0.1, fd00:9::1) and loc (10.9.0.2,
# fd00:9::2) joined by the veth pair veth-exp/veth-loc, all links up.
netns_pair() {
    ip netns add exp
    ip netns add loc
    ip link add veth-exp type veth peer name veth-loc
    ip link set veth-exp netns exp
    ip link set veth-loc netns loc
    ip -n exp addr add 10.9.0.1/24 dev veth-exp
    ip -n loc addr add 10.9.0.2/24 dev veth-loc
    ip -n exp addr add fd00:9::1/64 dev veth-exp nodad
    ip -n loc addr add fd00:9::2/64 dev veth-loc nodad
    local ns
    for ns in exp loc; do
        ip -n "$ns" link set lo up
    done
    ip -n exp link set veth-exp up
    ip -n loc link set veth-loc up
    DST_DEVICE_NS=loc
}

now_ms() { date +%s%3N; }

dst_field() {
    ${DST_DEVICE_NS:+ip netns exec "$DST_DEVICE_NS"} dstcfg -a list --json | "$PYTHON" -c '
import json, sys
dev, key = "/dev/" + sys.argv[1], sys.argv[2]
for entry in json.load(sys.stdin):
    if entry.get("kind") == "device" and entry.get("device") == dev:
        if key not in entry:
            sys.exit(3)
        value = entry[key]
        print(str(value).lower() if isinstance(value, bool) else value)
        sys.exit(0)
sys.exit(2)
' "${1#/dev/}" "$2"
}

wait_dst_state() {
    local dev=$1 want=$2 limit=$3 start state=""
    start=$(now_ms)
    while :; do
        state=$(dst_field "$dev" state) || state="(not listed)"
        WAITED_MS=$(( $(now_ms) - start ))
        [ "$state" != "$want" ] || return 0
        [ "$WAITED_MS" -lt $((limit * 1000)) ] ||
            fail "$dev: state '$state', not '$want', after ${limit} s"
        sleep 0.2
    done
}

dst_io_errors() {
    dmesg | grep -c 'I/O error, dev dst' || true
}

dev_inflight() {
    local r w
    read -r r w <"/sys/block/${1#/dev/}/inflight"
    echo $((r + w))
}

dev_done() {
    awk '{ print $1 + $5 }' "/sys/block/${1#/dev/}/stat"
}

wait_done_after() {
    local dev=$1 count=$2 limit=$3 start
    start=$(now_ms)
    while [ "$(dev_done "$dev")" -le "$count" ]; do
        WAITED_MS=$(( $(now_ms) - start ))
        [ "$WAITED_MS" -lt $((limit * 1000)) ] ||
            fail "$dev: no request completed within ${limit} s (still $count)"
        sleep 0.1
    done
    WAITED_MS=$(( $(now_ms) - start ))
}

dev_sha() {
    dd if="$1" bs=1M count="$2" skip="${3:-0}" iflag=direct status=none | sha256sum | cut -d' ' -f1
}

fio_verify() {
    local name=$1 rc=0 start
    shift
    start=$(now_ms)
    timeout "${FIO_TIMEOUT:-600}" fio --name="$name" --ioengine=libaio --direct=1 \
        --verify=crc32c --verify_fatal=1 --verify_state_save=0 --do_verify=1 \
        --output-format=terse --terse-version=3 "$@" \
        >"$DST_TEST_OUT/$name.terse" 2>"$DST_TEST_OUT/$name.err" || rc=$?
    if [ "$rc" = 0 ]; then
        awk -F';' -v n="$name" -v s="$(( ($(now_ms) - start) / 1000 ))" \
            '{ printf "# fio %s: %s s, write %s KiB/s, read (verify) %s KiB/s\n", n, s, $48, $7 }' \
            "$DST_TEST_OUT/$name.terse"
    else
        log "fio $name: exit status $rc after $(( ($(now_ms) - start) / 1000 )) s; last errors:"
        tail -n 5 "$DST_TEST_OUT/$name.err" | sed 's/^/#   /'
    fi
    return "$rc"
}

# wait_io_flowing DSTN: wait (at most 60 s) until writes reach /dev/DSTN, seen
# as its bytes_written counter growing by 1 MiB. Under software emulation fio
# can take seconds to start; a fault injected before IO flows tests nothing.
wait_io_flowing() {
    local f=/sys/block/$1/dst/bytes_written start t0
    start=$(cat "$f") t0=$(now_ms)
    while [ $(( $(cat "$f") - start )) -lt 1048576 ]; do
        [ $(( $(now_ms) - t0 )) -lt 60000 ] || fail "no writes reached $1 within 60 s"
        sleep 0.2
    done
}
