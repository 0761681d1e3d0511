#!/usr/bin/env bash
# demo.sh - the main job, end to end, in a VM: a RAM-backed export, a local
# node on it over TCP, a file system on /dev/dst0, files written, read back
# after a remount and compared with the originals, and a short summary.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
exec "$repo/scripts/vm.sh" --timeout 600 -- bash "$repo/scripts/demo-guest.sh"
