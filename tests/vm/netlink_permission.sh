#!/usr/bin/env bash
#
# netlink_permission.sh - the dst family refuses callers without CAP_NET_ADMIN:
# as uid/gid 65534 with an empty capability set, `dstcfg -a status` exits
# non-zero with a message saying the operation is "not permitted" or naming
# CAP_NET_ADMIN, and a raw DST_CMD_STATUS is answered with EPERM by the kernel;
# as root both succeed.
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
rm -rf "$scratch"
log "ok"
