#!/usr/bin/env bash
#
# dstcfg_help.sh - `dstcfg --help` exits 0 and documents the short options
# -r, -a and -f. Needs no module.
# insmod: no
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

out=$(dstcfg --help) || fail "dstcfg --help exited $?"
printf '%s\n' "$out"
for opt in r a f; do
    # The option as a word of its own ("-r," or "-r <X>"), not part of "--rw".
    grep -Eq -- "(^|[^-[:alnum:]])-$opt([^[:alnum:]-]|\$)" <<<"$out" ||
        fail "dstcfg --help does not document -$opt"
done
log "ok"
