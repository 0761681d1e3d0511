#!/usr/bin/env bash
#
# export_file.sh - file-backed exports (dstcfg export -f IMAGE). A sparse
# 32 MiB image on ext4 and on xfs, both served with direct IO, and on ext4
# mounted data=journal (no direct IO: served through the page cache, READ
# and WRITE on the export's workqueue); each file system on a device-mapper
# device over a RAM disk (/dev/ram1..3), whose IO statistics show what
# reaches the storage. For each: the export's log line says how it serves
# the file; /dev/dst0 has the image's size; a second export of the image is
# refused; fio random writes with crc32c verification pass (first 12 MiB);
# a flush (fsync of /dev/dst0) reaches the storage (through the page cache,
# 1 MiB written through /dev/dst0 reaches it only with the flush; with
# direct IO, at once); blkdiscard of 4 MiB just written punches a hole in
# the image (its allocated blocks drop by 4 MiB; the range reads as zeroes
# through /dev/dst0 and in the file); the image holds what /dev/dst0 reads.
# /dev/dst0 has a write cache, as the file has; an export of a RAM disk,
# which has none, gives a device without one.
# Refusals, with their messages: a directory and /dev/null (by dstcfg, and
# by the module when dstcfg is bypassed), an image on a read-only mount
# exported read-write. That image exported --read-only serves its data and
# refuses writes forced past the device's read-only flag.
# timeout: 900
# udev: yes
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

MiB=$((1 << 20))
img_mib=32
fio_mib=12     # fio uses 0..12 MiB, the flush check 16..17, the discard 20..24

# Refusals of what is neither a block device nor a regular file.
dir=$(mktemp -d)
expect_fail dstcfg -r 127.0.0.1 -a export -f "$dir"
assert_contains "$ERR" "is a directory" "dstcfg export of a directory"
expect_fail dstcfg -r 127.0.0.1 -a export -f /dev/null
assert_contains "$ERR" "neither a block device nor a regular file" "dstcfg export of /dev/null"
out=$("$PYTHON" "$DST_REPO/tests/netlink_raw.py" --export-path 127.0.0.1 "$dir") ||
    fail "the module accepted a directory: $out"
assert_contains "$out" "the path is a directory" "module's refusal of a directory"
log "$out"
out=$("$PYTHON" "$DST_REPO/tests/netlink_raw.py" --export-path 127.0.0.1 /dev/null) ||
    fail "the module accepted /dev/null: $out"
assert_contains "$out" "neither a block device nor a regular file" "module's refusal of /dev/null"
log "$out"

# sectors_written DISK: sectors written to /dev/DISK so far.
sectors_written() { awk '{ print $7 }' "/sys/block/$1/stat"; }

# fs_disk RAM: a device-mapper device on all of /dev/RAM, for a file system
# (brd keeps no IO statistics; device-mapper does); prints its dm-N.
fs_disk() {
    dmsetup create "dst-$1" --table "0 $(blockdev --getsz "/dev/$1") linear /dev/$1 0"
    [ -b "/dev/mapper/dst-$1" ] || dmsetup mknodes "dst-$1"
    basename "$(readlink -f "/dev/mapper/dst-$1")"
}

# A block device without a volatile write cache (a RAM disk) gives a device
# without one, as NVMe/TCP's target does: every completed write is durable,
# and file systems on it send no flushes (a round trip each).
dstcfg -r 127.0.0.1 -p 1027 -a export -f /dev/ram0 --size 16M >/dev/null
dev=$(dstcfg -r 127.0.0.1 -p 1027 -a local)
assert_eq "$(cat /sys/block/ram0/queue/write_cache)" "write through" "write cache of /dev/ram0"
assert_eq "$(cat "/sys/block/${dev#/dev/}/queue/write_cache")" "write through" "write cache of $dev on /dev/ram0"
dstcfg -a delete -d "${dev#/dev/}"
dstcfg -r 127.0.0.1 -p 1027 -a unexport

# Periodic writeback and journal commits would write the page cache's data
# without a flush; the flush check below needs them out of the way.
echo 360000 >/proc/sys/vm/dirty_expire_centisecs

# serve_image FS RAM MOUNT_OPTIONS MODE: the whole check of one file system,
# made on a device over /dev/RAM.
serve_image() {
    local fs=$1 disk opts=$3 mode=$4
    local mnt img dev line w0 w1 w2 before after
    disk=$(fs_disk "$2")
    log "--- $fs${opts:+ -o $opts} on /dev/$disk (over /dev/$2): expect $mode ($SECONDS s)"
    case $fs in
        ext4) mkfs.ext4 -q -F "/dev/$disk" ;;
        xfs) mkfs.xfs -q -f "/dev/$disk" ;;
    esac
    mnt=$(mktemp -d)
    mount ${opts:+-o "$opts"} "/dev/$disk" "$mnt"
    img=$mnt/vm1.img
    truncate -s "${img_mib}M" "$img"
    assert_eq "$(stat -c %b "$img")" 0 "blocks of the new sparse image"

    dstcfg -r 127.0.0.1 -a export -f "$img" >/dev/null
    line=$(dmesg | grep "serving $img " | tail -n 1)
    log "${line#*] }"
    assert_contains "$line" "($mode," "how the export serves $img"
    dev=$(dstcfg -r 127.0.0.1 -a local)
    assert_eq "$(blockdev --getsize64 "$dev")" $((img_mib * MiB)) "size of $dev"
    # A file's writes are durable only after a flush (its page cache, or
    # its file system's device): the device has a write cache.
    assert_eq "$(cat "/sys/block/${dev#/dev/}/queue/write_cache")" "write back" "write cache of $dev"

    # Only one export serves a file.
    expect_fail dstcfg -r 127.0.0.1 -p 1026 -a export -f "$img"
    assert_contains "$ERR" "the file is exported already" "second export of $img"

    fio --name="verify-$fs" --filename="$dev" --ioengine=libaio --direct=1 \
        --rw=randwrite --bsrange=4k-256k --size="${fio_mib}m" --iodepth=16 \
        --verify=crc32c --verify_fatal=1 --verify_state_save=0 --do_verify=1 \
        --randseed=7 --output-format=terse --terse-version=3 \
        >"$DST_TEST_OUT/fio-$fs.terse" || fail "$fs: fio verify failed"
    awk -F';' '{ printf "# fio: write %s KiB/s, read %s KiB/s\n", $48, $7 }' "$DST_TEST_OUT/fio-$fs.terse"
    log "fio verify done ($SECONDS s)"

    # Flush: everything so far first, then 1 MiB more and a flush of it.
    sync "$dev"
    w0=$(sectors_written "$disk")
    dd if=/dev/urandom of="$dev" bs=1M count=1 seek=16 oflag=direct status=none
    w1=$(sectors_written "$disk")
    sync "$dev"
    w2=$(sectors_written "$disk")
    log "written to /dev/$disk: $((w1 - w0)) sectors by a 1 MiB write, $((w2 - w1)) by the flush ($SECONDS s)"
    if [ "$mode" = "file, buffered IO" ]; then
        [ $((w1 - w0)) -lt 2048 ] || fail "$fs: the write reached /dev/$disk before the flush"
        [ $((w2 - w1)) -ge 2048 ] || fail "$fs: the flush did not write the data to /dev/$disk"
    else
        [ $((w1 - w0)) -ge 2048 ] || fail "$fs: a direct IO write did not reach /dev/$disk"
    fi

    # Discard: a hole in the image.
    dd if=/dev/urandom of="$dev" bs=1M count=4 seek=20 oflag=direct status=none
    before=$(stat -c %b "$img")
    blkdiscard -o $((20 * MiB)) -l $((4 * MiB)) "$dev"
    after=$(stat -c %b "$img")
    log "image blocks: $before before the discard of 4 MiB, $after after ($SECONDS s)"
    [ $((before - after)) -ge $((4 * MiB / 512)) ] || fail "$fs: the discard punched no 4 MiB hole"
    cmp -n $((4 * MiB)) <(dd if="$dev" bs=1M skip=20 count=4 iflag=direct status=none) /dev/zero ||
        fail "$fs: discarded range of $dev does not read as zeroes"
    cmp -n $((4 * MiB)) <(dd if="$img" bs=1M skip=20 count=4 status=none) /dev/zero ||
        fail "$fs: discarded range of $img does not read as zeroes"

    assert_eq "$(dd if="$dev" bs=1M iflag=direct status=none | sha256sum)" \
        "$(sha256sum <"$img")" "$fs: data of $dev vs $img"
    dstcfg -a delete -d dst0 >/dev/null
    dstcfg -r 127.0.0.1 -a unexport >/dev/null
    IMG=$img MNT=$mnt
}

serve_image ext4 ram1 "" "file, direct IO"
umount "$MNT"
serve_image xfs ram2 "" "file, direct IO"

# Read-only: on a read-only mount the image cannot be served read-write;
# read-only it serves its data and refuses writes.
mount -o remount,ro "$MNT"
expect_fail dstcfg -r 127.0.0.1 -a export -f "$IMG"
assert_contains "$ERR" "export it read-only" "read-write export of $IMG on a read-only mount"
log "read-write export refused: $ERR"
want=$(sha256sum <"$IMG")
dstcfg -r 127.0.0.1 -a export -f "$IMG" --read-only >/dev/null
dev=$(dstcfg -r 127.0.0.1 -a local)
assert_eq "$(blockdev --getro "$dev")" 1 "read-only flag of $dev"
blockdev --setrw "$dev" || true
expect_fail dd if=/dev/zero of="$dev" bs=4k count=16 oflag=direct status=none
log "forced write refused by the export: $ERR"
assert_eq "$(dd if="$dev" bs=1M iflag=direct status=none | sha256sum)" "$want" "data read through $dev"
dstcfg -a delete -d dst0 >/dev/null
dstcfg -r 127.0.0.1 -a unexport >/dev/null
umount "$MNT"

# No direct IO on data=journal: the page cache (and a long commit interval,
# so that only the flush commits).
serve_image ext4 ram3 "data=journal,commit=300" "file, buffered IO"
umount "$MNT"
log "ok ($SECONDS s)"
