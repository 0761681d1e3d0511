#!/usr/bin/env bash
# demo.sh - the main job, end to end, in a VM: load dst.ko and talk to it with
# dstcfg. (Grows into export + local node + file system with the data path.)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
exec "$repo/scripts/vm.sh" --timeout 300 -- '
set -e
echo "== dst.ko loaded:"; grep -w dst /proc/modules
echo "== dstcfg -a status:"; dstcfg -a status
echo "== dstcfg -a status --json:"; dstcfg -a status --json
echo "== kernel log:"; dmesg | grep -w dst
'
