#!/usr/bin/env bash
#
# export_resize.sh - online resize. The export serves a dm-linear device
# over /dev/ram0 (64 MiB at first); /dev/dst0 (aead with a key, two queues,
# so RESIZE is sealed like every message and reaches each connection)
# carries a mounted ext4 with fio verifying a file in it throughout:
#   1. the dm device grows to 128 MiB: dst0 follows by itself, no dstcfg;
#   2. it grows to 192 MiB and `dstcfg resize` grows the export at once;
#   3. `dstcfg resize --size 192M` caps the export: the dm device grows to
#      256 MiB and the export stays at 192 MiB, until `dstcfg resize --size
#      224M` moves the cap and grows it;
#   4. shrinking (--size below) and a size beyond the device are refused;
#   5. resize2fs grows the mounted ext4 online, df shows it, fio verifies;
#   6. the export is stopped, the dm device grows to 320 MiB while dst0 is
#      disconnected, the export comes back: dst0 reconnects and takes the
#      larger size (a smaller export stays refused: fault_export_changed);
#   7. delete and create dst0 again: the new device is 320 MiB, fsck clean;
#   8. the dm device shrinks under the export: logged once, the export
#      keeps its size, reads beyond the device's new end fail.
# Sizes before and after are logged (lines "size ...").
# timeout: 600
# udev: yes
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

mib=$((1 << 20))
# table MIB: dm device "grow" as the first MIB MiB of /dev/ram0.
table() { echo "0 $(($1 * 2048)) linear /dev/ram0 0"; }
# regrow MIB: reload the dm table with IO running (suspend waits for it).
regrow() {
    dmsetup reload grow --table "$(table "$1")"
    dmsetup resume grow
}
# wait_size DEV BYTES LIMIT: until DEV is BYTES long; logs how long it took.
wait_size() {
    local dev=$1 want=$2 limit=$3 start size
    start=$(now_ms)
    while size=$(blockdev --getsize64 "$dev") && [ "$size" != "$want" ]; do
        [ $(($(now_ms) - start)) -lt $((limit * 1000)) ] ||
            fail "$dev is $size bytes, not $want, after $limit s"
        sleep 0.1
    done
    log "size $dev: $size bytes after $(($(now_ms) - start)) ms"
    kmsg "export_resize: $dev is $size bytes"
}
# step TEXT: log TEXT, and mark it in the kernel log (for timings).
step() {
    log "$*"
    kmsg "export_resize: $*"
}

dmsetup create grow --table "$(table 64)"
key=$DST_TEST_OUT/psk
psk_file "$key"
sec=(--protection aead --key-file "$key")
dstcfg export -r 127.0.0.1 -f /dev/mapper/grow "${sec[@]}"
dev=$(dstcfg local -r 127.0.0.1 --queues 2 "${sec[@]}")
assert_eq "$(blockdev --getsize64 "$dev")" $((64 * mib)) "size of $dev at first"
log "size $dev: $((64 * mib)) bytes at first"
mkfs.ext4 -q -F "$dev"
mnt=$(mktemp -d)
mount "$dev" "$mnt"
fs_before=$(df -B1 --output=size "$mnt" | tail -1)

# Rate-limited: IO flows through the resizes below without taking the
# (emulated) CPUs from them; writes for about 20 s, then reads and verifies.
FIO_TIMEOUT=240 fio_verify resize --filename="$mnt/fio.dat" --size=8M --bs=4k \
    --rw=randwrite --iodepth=4 --rate_iops=100 &
fio_pid=$!
# Until fio's writes flow (wait_io_flowing, with more patience: fio can take
# long to start on a loaded host).
written=/sys/block/dst0/dst/bytes_written
w0=$(cat "$written") t0=$(now_ms)
while [ $(($(cat "$written") - w0)) -lt $mib ]; do
    [ $(($(now_ms) - t0)) -lt 240000 ] || fail "no writes reached dst0 within 240 s"
    sleep 0.5
done

# 1. Grown by itself.
step "step 1"
regrow 128
wait_size "$dev" $((128 * mib)) 20
assert_eq "$(cat /sys/block/dst0/dst/size)" $((128 * mib)) "dst/size of dst0"
assert_eq "$(cat /sys/kernel/dst/export0/size)" $((128 * mib)) "export0 size"

# 2. Grown by dstcfg resize (the export may have noticed first: the same).
step "step 2"
regrow 192
step "device grown to 192 MiB, dstcfg resize next"
out=$(dstcfg resize -r 127.0.0.1)
step "dstcfg resize returned: $out"
assert_contains "$out" "$((192 * mib)) bytes"
wait_size "$dev" $((192 * mib)) 20

# 3. An explicit size is a cap: the export follows its device up to it.
step "step 3"
out=$(dstcfg resize -r 127.0.0.1 --size 192M)
assert_contains "$out" "$((192 * mib)) bytes"
regrow 256
# A read: a message, before which the export looks at its device.
dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none
assert_eq "$(cat /sys/kernel/dst/export0/size)" $((192 * mib)) "export0 size at its cap"
out=$(dstcfg resize -r 127.0.0.1 --size 224M)
assert_contains "$out" "$((224 * mib)) bytes"
wait_size "$dev" $((224 * mib)) 20

# 4. Refusals, with the kernel's reason.
step "step 4"
expect_fail dstcfg resize -r 127.0.0.1 --size 100M
assert_contains "$ERR" "cannot shrink"
expect_fail dstcfg resize -r 127.0.0.1 --size 1G
assert_contains "$ERR" "backing device is smaller"
expect_fail dstcfg resize -r 127.0.0.1 -p 2000
assert_contains "$ERR" "no export"
log "refused: shrink, beyond the device, no such export"

# 5. The file system grows online; fio verified throughout.
step "step 5"
resize2fs "$dev" >"$DST_TEST_OUT/resize2fs.log" 2>&1 || fail "resize2fs failed: $(cat "$DST_TEST_OUT/resize2fs.log")"
fs_after=$(df -B1 --output=size "$mnt" | tail -1)
log "size ext4: $fs_before -> $fs_after bytes"
[ "$fs_after" -gt $((fs_before + 128 * mib)) ] || fail "ext4 did not grow: $fs_before -> $fs_after"
wait "$fio_pid" || fail "fio verify failed during the resizes"
assert_eq "$(dst_io_errors)" 0 "I/O errors on dst devices"
assert_eq "$(blockdev --getsize64 "$dev")" $((224 * mib)) "size of $dev after the cap"

# 6. A reconnect accepts a grown export.
step "step 6"
sync
dstcfg unexport -r 127.0.0.1
regrow 320
dstcfg export -r 127.0.0.1 -f /dev/mapper/grow "${sec[@]}"
wait_dst_state dst0 connected 30
wait_size "$dev" $((320 * mib)) 20
resize2fs "$dev" >>"$DST_TEST_OUT/resize2fs.log" 2>&1 || fail "resize2fs after the reconnect failed"
log "size ext4 after the reconnect: $(df -B1 --output=size "$mnt" | tail -1) bytes"
umount "$mnt"

# 7. A new device gets the grown size.
step "step 7"
dstcfg delete -d dst0
dev=$(dstcfg local -r 127.0.0.1 --queues 2 "${sec[@]}")
assert_eq "$(blockdev --getsize64 "$dev")" $((320 * mib)) "size of the new $dev"
fsck.ext4 -f -n "$dev" >"$DST_TEST_OUT/fsck.log" 2>&1 || fail "fsck.ext4 found errors"

# 8. A device that shrinks under the export is not followed.
step "step 8"
regrow 288
dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none
expect_fail dd if="$dev" of=/dev/null bs=4k count=1 skip=$((300 * 256)) iflag=direct status=none
assert_eq "$(blockdev --getsize64 "$dev")" $((320 * mib)) "size of $dev after the shrink"
assert_eq "$(dmesg | grep -c 'export .* shrank to')" 1 "shrink log lines"
expect_fail dstcfg resize -r 127.0.0.1
assert_contains "$ERR" "cannot shrink"

dstcfg delete -d dst0
dstcfg unexport -r 127.0.0.1
dmsetup remove grow
# The kernel's view: each growth at the export, then at dst0.
dmesg | grep -E 'grew|capacity change|shrank' | sed 's/^/# /'
log "ok"
