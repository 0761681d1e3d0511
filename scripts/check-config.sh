#!/usr/bin/env bash
# check-config.sh FRAGMENT CONFIG - fail if any option set in FRAGMENT did not
# keep its value in CONFIG after olddefconfig (a dependency silently dropped it).
set -euo pipefail
frag=$1 config=$2 bad=0
while IFS= read -r line; do
    case $line in CONFIG_*=*) ;; *) continue ;; esac
    opt=${line%%=*} want=${line#*=}
    have=$(grep -E "^$opt=" "$config" | cut -d= -f2- || true)
    if [ "$want" = n ]; then
        [ -z "$have" ] || { echo "config: $opt wanted n, got $have" >&2; bad=1; }
    elif [ "$have" != "$want" ]; then
        echo "config: $opt wanted $want, got ${have:-unset}" >&2; bad=1
    fi
done < "$frag"
exit $bad
