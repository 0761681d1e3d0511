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

meminfo_kb() {
    awk -v f="$1:" '$1 == f { print $2; found = 1 } END { if (!found) exit 1 }' /proc/meminfo ||
        fail "meminfo_kb: no field $1 in /proc/meminfo"
}
