#!/usr/bin/env bash
#
# netlink_permission.sh - the dst family refuses callers without CAP_NET_ADMIN:
# as uid/gid 65534 with an empty capability set, `dstcfg -a status` exits
# non-zero with a message saying the operation is "not permitted" or naming
# CAP_NET_ADMIN, and a raw DST_CMD_STATUS is answered with EPERM by the kernel;
# as root both succeed.
# The commands that give block device access need CAP_SYS_ADMIN as well: as
# uid/gid 65534 with CAP_NET_ADMIN alone (ambient), `-a status` and `-a list`
# work, but export, unexport, resize, local and delete fail with EPERM and the
# kernel's message naming CAP_SYS_ADMIN, and change nothing (root's export and
# device stay, no new ones appear); `-a set -d` (timeouts) still works.
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

dst_loaded || fail "dst.ko is not loaded"

# The unprivileged user may not reach files under a private home folder:
# run copies from a world-readable scratch folder.
scratch=$(mktemp -d)
chmod 755 "$scratch"
cp "$(command -v dstcfg)" "$DST_REPO/tests/netlink_raw.py" "$scratch/"
chmod 755 "$scratch/dstcfg" "$scratch/netlink_raw.py"

caps=$(as_user grep '^CapEff:' /proc/self/status)
assert_eq "${caps##*[[:space:]]}" 0000000000000000 "effective capabilities of as_user"
assert_eq "$(as_user id -u)" 65534 "uid of as_user"

# Root first: the same binaries work with privileges.
"$scratch/dstcfg" -a status >/dev/null || fail "dstcfg -a status failed as root"
"$PYTHON" "$scratch/netlink_raw.py" --status >/dev/null || fail "raw STATUS failed as root"

expect_fail as_user "$scratch/dstcfg" -a status
log "unprivileged dstcfg -a status: exit $RC, stderr: $ERR"
case $ERR$OUT in
    *"not permitted"* | *CAP_NET_ADMIN*) ;;
    *) fail "unprivileged dstcfg -a status: no permission message in: $ERR$OUT" ;;
esac

as_user "$PYTHON" "$scratch/netlink_raw.py" --expect-errno EPERM ||
    fail "the kernel did not refuse an unprivileged DST_CMD_STATUS with EPERM"

# Still fine for root afterwards.
"$scratch/dstcfg" -a status >/dev/null || fail "dstcfg -a status failed as root afterwards"

# CAP_NET_ADMIN without CAP_SYS_ADMIN: the capability of network daemons and
# many containers, not enough to open block devices or create them.
as_net_admin() {
    setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all,+net_admin \
        --ambient-caps=-all,+net_admin env HOME=/ USER=nobody "$@"
}
caps=$(as_net_admin grep '^CapEff:' /proc/self/status)
assert_eq "${caps##*[[:space:]]}" 0000000000001000 "effective capabilities of as_net_admin (CAP_NET_ADMIN only)"

dstcfg -r 127.0.0.1 -a export -f /dev/ram0
dev=$(dstcfg -r 127.0.0.1 -a local)
assert_eq "$dev" /dev/dst0 "root's device"

as_net_admin "$scratch/dstcfg" -a status >/dev/null || fail "dstcfg -a status failed with CAP_NET_ADMIN"
as_net_admin "$scratch/dstcfg" -a set -d dst0 --loss-timeout 30000 ||
    fail "dstcfg -a set -d dst0 failed with CAP_NET_ADMIN"
assert_eq "$(dst_field dst0 loss_timeout_ms)" 30000 "loss timeout set with CAP_NET_ADMIN"
before=$(dstcfg -a list)
listed=$(as_net_admin "$scratch/dstcfg" -a list) || fail "dstcfg -a list failed with CAP_NET_ADMIN"
assert_eq "$listed" "$before" "dstcfg -a list with CAP_NET_ADMIN"

# needs_sys_admin WHAT CMD...: dstcfg CMD run with CAP_NET_ADMIN alone fails
# with EPERM, the kernel's message naming CAP_SYS_ADMIN, and a hint naming it.
needs_sys_admin() {
    local what=$1
    shift
    expect_fail as_net_admin "$scratch/dstcfg" "$@"
    log "$what with CAP_NET_ADMIN only: exit $RC, stderr: $ERR"
    assert_eq "$RC" 1 "exit status of $what with CAP_NET_ADMIN only"
    # "dstcfg: ACTION: Operation not permitted (EPERM): <kernel message>"
    case $(head -n 1 <<<"$ERR") in
        *"(EPERM): "*CAP_SYS_ADMIN*) ;;
        *) fail "$what with CAP_NET_ADMIN only: no EPERM with a kernel message naming CAP_SYS_ADMIN in: $ERR" ;;
    esac
    assert_contains "$(sed -n 2p <<<"$ERR")" "hint: needs CAP_SYS_ADMIN" "dstcfg's hint for $what"
}
needs_sys_admin export -r 127.0.0.1 -p 1026 -a export -f /dev/ram1
needs_sys_admin unexport -r 127.0.0.1 -a unexport
needs_sys_admin resize -r 127.0.0.1 -a resize
# Port 1026: for 1025, where root's dst0 connects, local returns dst0.
needs_sys_admin local -r 127.0.0.1 -p 1026 -a local
needs_sys_admin delete -a delete -d dst0

assert_eq "$(dstcfg -a list)" "$before" "exports and devices after the refused commands"
[ -b "$dev" ] || fail "$dev is gone after the refused delete"
assert_eq "$(dst_field dst0 state)" connected "state of dst0 after the refused commands"

# Root can still do all of it.
dstcfg -a delete -d dst0 || fail "root's delete failed"
dstcfg -r 127.0.0.1 -a unexport || fail "root's unexport failed"
assert_eq "$(dstcfg -a list --json)" "[]" "nothing left"
rm -rf "$scratch"
log "ok"
