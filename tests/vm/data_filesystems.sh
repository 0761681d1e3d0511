#!/usr/bin/env bash
#
# data_filesystems.sh - ext4 and xfs on /dev/dst0 (export of /dev/ram0 over
# loopback): mkfs, mount, write a tree of files, unmount, fsck clean, mount
# again and compare checksums with those taken before the unmount. Then
# discards and zeroing of the whole device: the device offers DISCARD and
# WRITE_ZEROES of at most 64 MiB per request (each runs as one synchronous
# call at the export and must end within the request timeout); blkdiscard
# and blkdiscard -z of all 512 MiB succeed without a request timing out,
# and the zeroed device reads back as zeroes.
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

q=/sys/block/dst0/queue
for f in discard_max_hw_bytes write_zeroes_max_bytes; do
    v=$(cat "$q/$f")
    log "$f: $v"
    [ "$v" = 0 ] || assert_eq "$v" 67108864 "$f of dst0 (64 MiB)"
done
[ "$(cat "$q/discard_max_hw_bytes")" != 0 ] || fail "dst0 offers no discard (the export's RAM disk does)"
blkdiscard "$dev" || fail "blkdiscard of the whole device failed"
dd if=/dev/urandom of="$dev" bs=1M count=64 seek=200 oflag=direct status=none
blkdiscard -z "$dev" || fail "blkdiscard -z of the whole device failed"
assert_eq "$(dev_sha "$dev" 512)" "$(head -c 512M /dev/zero | sha256sum | cut -d' ' -f1)" "sha of $dev after blkdiscard -z"
assert_eq "$(dst_field dst0 timeouts)" 0 "request timeouts of dst0 after whole-device discards"

dstcfg -a delete -d dst0
dstcfg -r 127.0.0.1 -a unexport
log "ok"
