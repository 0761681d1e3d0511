#!/usr/bin/env bash
# demo-guest.sh - the guest half of demo.sh (runs inside the VM, as root, with
# dst.ko loaded and dstcfg on PATH).
set -euo pipefail
step() { printf '\n== %s\n' "$*"; }

step "export /dev/ram0 (a 512 MiB RAM disk) on 127.0.0.1, port 1025"
dstcfg -r 127.0.0.1 -a export -f /dev/ram0

step "local node: connect to it"
dev=$(dstcfg -r 127.0.0.1 -a local)
echo "$dev"
dstcfg -a list

step "ext4 on $dev, a tree of files written"
mkfs.ext4 -q -F "$dev"
mnt=$(mktemp -d) src=$(mktemp -d)
for d in docs photos logs; do
    mkdir -p "$src/$d"
    for i in $(seq 1 20); do
        head -c $(( (i * 7919) % 200000 + 1000 )) /dev/urandom >"$src/$d/file$i"
    done
done
dd if=/dev/urandom of="$src/big.bin" bs=1M count=32 status=none
mount "$dev" "$mnt"
start=$(date +%s.%N)
cp -a "$src/." "$mnt/"
sync
end=$(date +%s.%N)
bytes=$(du -sb "$src" | cut -f1)
umount "$mnt"

step "remount and compare with the originals"
mount "$dev" "$mnt"
if diff -r -x lost+found "$src" "$mnt" >/dev/null; then same=yes; else same=NO; fi
files=$(find "$mnt" -path "$mnt/lost+found" -prune -o -type f -print | wc -l)
umount "$mnt"
fsck.ext4 -f -n "$dev" >/dev/null 2>&1 && fsck=clean || fsck=ERRORS

step "tear down"
dstcfg -a delete -d "${dev#/dev/}"
dstcfg -r 127.0.0.1 -a unexport

step "summary"
printf '%-28s %s\n' "device" "$dev (export /dev/ram0 over 127.0.0.1:1025)" \
    "files written" "$files ($((bytes / 1024)) KiB)" \
    "write + sync" "$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f s", b - a}')" \
    "read back identical" "$same" \
    "fsck" "$fsck" \
    "kernel warnings" "$(dmesg | grep -E 'WARNING:|BUG:|lockdep' | grep -vc 'RCU lockdep checking is enabled' || true)"
[ "$same" = yes ] && [ "$fsck" = clean ]
