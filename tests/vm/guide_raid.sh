#!/usr/bin/env bash
#
# guide_raid.sh - the network RAID recipe of Documentation/admin-guide.md, run
# as written: every fenced block with the info string "sh guide-test=raid/STEP"
# is taken from the guide and run in this shell, in the guide's order, on one
# machine playing export node A (127.0.0.1:1025, /dev/ram1), export node B
# (127.0.0.1:1026, /dev/ram2) and the local node; MNT is a folder under /tmp.
# Nothing in the blocks is substituted; only the guide's placeholders are set
# here. Between the steps it asserts: two exports, two devices with the 10 s
# loss timeout, md0 a raid1 of both, the LVM volume mounted; after the
# initial sync [UU]; when export B goes away, md0 degraded with dst1 faulty and
# "failed"; when B is back and dst1 re-added, [UU] again with no mismatch; the
# data written before and during the outage reads back after a remount; after
# the teardown nothing is left and both legs hold the same array data. A block
# added to the guide's recipe without being run here fails the test.
# The RAM disks are 128 MiB here instead of 512 MiB: under software emulation
# md's initial sync and its check of two 512 MiB legs over TCP take minutes.
# timeout: 1200
# udev: yes
# append: brd.rd_size=131072
# The guide's placeholders are set here and used by the guide's blocks (eval).
# shellcheck disable=SC2034
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

# shellcheck source=tests/lib/guide.sh
. "$DST_REPO/tests/lib/guide.sh"

md=/sys/block/md0/md
# mdstat_md0: the lines of md0 in /proc/mdstat.
mdstat_md0() { grep -A2 '^md0' /proc/mdstat; }
# undegraded WHAT: both members in sync, nothing failed, nothing running.
undegraded() {
    grep -q '\[UU\]' <(mdstat_md0) || { cat /proc/mdstat; fail "$1: /proc/mdstat does not show [UU]"; }
    assert_eq "$(cat "$md/degraded")" 0 "$1: $md/degraded"
    assert_eq "$(cat "$md/sync_action")" idle "$1: $md/sync_action"
    grep -Eq 'Failed Devices : 0$' <<<"$(mdadm --detail /dev/md0)" ||
        { mdadm --detail /dev/md0; fail "$1: mdadm --detail shows failed devices"; }
}
# file_sha FILE: sha256 of FILE.
file_sha() { sha256sum "$1" | cut -d' ' -f1; }

# The guide's placeholders, one machine for all three nodes (used by the
# guide's blocks).
EXPORT_A=127.0.0.1:1025
DISK_A=/dev/ram1
EXPORT_B=127.0.0.1:1026
DISK_B=/dev/ram2
MNT=$(mktemp -d /tmp/guide-raid.XXXXXX)
# LVM warns about the descriptors the VM's init leaves open; not the guide's.
export LVM_SUPPRESS_FD_WARNINGS=1
disk_bytes=$(blockdev --getsize64 "$DISK_A")
# md resyncs as fast as it can (no competing IO here anyway).
echo 50000 >/proc/sys/dev/raid/speed_limit_min

guide_step raid/export
n=$(dstcfg -a list --json | "$PYTHON" -c 'import json,sys; print(sum(e["kind"] == "export" for e in json.load(sys.stdin)))')
assert_eq "$n" 2 "exports listed"

guide_step raid/local
assert_eq "$DEV_A $DEV_B" "/dev/dst0 /dev/dst1" "devices of the recipe"
for d in dst0 dst1; do
    assert_eq "$(dst_field "$d" loss_timeout_ms)" 10000 "loss timeout of $d"
    assert_eq "$(dst_field "$d" state)" connected "state of $d"
done

guide_step raid/mdadm
[ -d "$md" ] || fail "/dev/md0 was not created"
assert_eq "$(cat "$md/level")" raid1 "level of md0"
for d in dst0 dst1; do
    [ -e "$md/dev-$d" ] || fail "md0 does not have $d: $(ls "$md")"
done

guide_step raid/lvm
[ -b /dev/dstvg/data ] || fail "/dev/dstvg/data is not a block device"
mountpoint -q "$MNT" || fail "$MNT is not mounted"
assert_eq "$(findmnt -n -o SOURCE "$MNT")" /dev/mapper/dstvg-data "what is mounted on $MNT"
lv_bytes=$(blockdev --getsize64 /dev/dstvg/data)
log "LV dstvg/data: $((lv_bytes >> 20)) MiB"
[ "$lv_bytes" -gt $((disk_bytes * 9 / 10)) ] ||
    fail "dstvg/data is only $lv_bytes bytes of $disk_bytes"
# Data before the outage.
dd if=/dev/urandom of="$MNT/before" bs=1M count=16 conv=fsync status=none
sha_before=$(file_sha "$MNT/before")

guide_step raid/sync
undegraded "after the initial sync"

guide_step raid/fail
t0=$(now_ms)
guide_step raid/degraded
while [ "$(cat "$md/degraded")" = 0 ]; do
    [ $(( $(now_ms) - t0 )) -lt 60000 ] || { cat /proc/mdstat; fail "md0 not degraded 60 s after export B went away"; }
    sleep 0.2
done
log "md0 degraded $(( $(now_ms) - t0 )) ms after export B went away"
grep -q '\[U_\]' <(mdstat_md0) || { cat /proc/mdstat; fail "/proc/mdstat does not show [U_]"; }
assert_contains "$(cat "$md/dev-dst1/state")" faulty "state of dst1 in md0"
assert_eq "$(dst_field dst1 state)" failed "state of dst1 past its loss timeout"
assert_eq "$(dst_field dst0 state)" connected "state of dst0"
rc=0
dstcfg -a check -d dst1 >/dev/null || rc=$?
assert_eq "$rc" 1 "exit status of dstcfg -a check for the failed dst1"
sha_degraded=$(file_sha "$MNT/written-while-degraded")

guide_step raid/return
t0=$(now_ms)
guide_step raid/readd
log "dst1 back in sync $(( $(now_ms) - t0 )) ms after export B came back"
undegraded "after the re-add"
reconnects=$(dst_field dst1 reconnects)
[ "$reconnects" -ge 1 ] || fail "dst1 counts $reconnects reconnects"

# The data survives a remount (the file system reads it back from md0).
umount "$MNT"
mount /dev/dstvg/data "$MNT"
assert_eq "$(file_sha "$MNT/before")" "$sha_before" "data written before the outage, after a remount"
assert_eq "$(file_sha "$MNT/written-while-degraded")" "$sha_degraded" \
    "data written during the outage, after a remount"

guide_step raid/verify
assert_eq "$(cat "$md/mismatch_cnt")" 0 "mismatch_cnt after md's check"

component_kib=$(cat "$md/component_size")
guide_step raid/teardown
assert_eq "$(dstcfg -a list --json)" "[]" "nothing left after the teardown"
[ ! -e /dev/md0 ] || [ ! -d "$md" ] || fail "md0 still exists after the teardown"

# Both legs hold the same array data (from the data offset on).
off=$(mdadm --examine "$DISK_A" | awk '/Data Offset/ { print $4 }')
[[ $off =~ ^[0-9]+$ ]] || fail "no data offset in mdadm --examine $DISK_A"
leg_sha() {
    dd if="$1" bs=1M iflag=direct,skip_bytes,count_bytes skip=$((off * 512)) \
        count=$((component_kib * 1024)) status=none | sha256sum | cut -d' ' -f1
}
sa=$(leg_sha "$DISK_A")
sb=$(leg_sha "$DISK_B")
log "legs: data offset $off sectors, $((component_kib >> 10)) MiB; sha256 A ${sa:0:16}, B ${sb:0:16}"
assert_eq "$sb" "$sa" "array data on the two legs"

guide_all_run raid
rmdir "$MNT"
log "ok"
