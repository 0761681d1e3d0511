#!/usr/bin/env bash
#
# data_filesystems.sh - ext4 and xfs on /dev/dst0 (export of /dev/ram0 over
# loopback): mkfs, mount, write a tree of files, unmount, fsck clean, mount
# again and compare checksums with those taken before the unmount.
# timeout: 900
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

dstcfg -r 127.0.0.1 -a export -f /dev/ram0
dev=$(dstcfg -r 127.0.0.1 -a local)
mnt=$(mktemp -d)

for fs in ext4 xfs; do
    log "$fs on $dev"
    case $fs in
        ext4) mkfs.ext4 -q -F "$dev" ;;
        xfs) mkfs.xfs -q -f "$dev" ;;
    esac
    mount "$dev" "$mnt"
    for d in 1 2 3 4; do
        mkdir -p "$mnt/dir$d/sub"
        for f in 1 2 3 4 5 6 7 8; do
            head -c $(( (d * 37 + f * 4099) * 16 )) /dev/urandom >"$mnt/dir$d/sub/file$f"
        done
    done
    dd if=/dev/urandom of="$mnt/big" bs=1M count=64 status=none
    (cd "$mnt" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$DST_TEST_OUT/$fs.sums"
    umount "$mnt"
    case $fs in
        ext4) fsck.ext4 -f -n "$dev" || fail "fsck.ext4 found errors" ;;
        xfs) xfs_repair -n "$dev" || fail "xfs_repair -n found errors" ;;
    esac
    mount "$dev" "$mnt"
    (cd "$mnt" && sha256sum --quiet -c "$DST_TEST_OUT/$fs.sums") || fail "$fs: checksums differ after remount"
    umount "$mnt"
    log "$fs: $(wc -l <"$DST_TEST_OUT/$fs.sums") files verified after remount"
done

dstcfg -a delete -d dst0
dstcfg -r 127.0.0.1 -a unexport
log "ok"
