#!/usr/bin/env bash
# timeout: 900
#
# security_modes.sh - every data-channel protection mode carries data
# correctly: for none, crc32c, hmac(sha256), gcm(aes) and
# rfc7539(chacha20,poly1305) (the last three with a pre-shared key), an
# export and a local node with the same settings connect, fio with crc32c
# verify passes through /dev/dst0, and the data on the export's RAM disk is
# what was written. Then the module-wide crypto pool is resized and the
# status reply reports the new worker count. No integrity error may be
# counted in any mode.
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

key=$(mktemp -d)/psk
dstcfg -a genkey -f "$key"
assert_eq "$(stat -c %a "$key")" 600 "mode of the generated key file"

# mode  extra-options
modes=(
    "none"
    "crc32c"
    "hmac --key-file $key"
    "aead --key-file $key"
    "aead --alg rfc7539(chacha20,poly1305) --key-file $key"
)
for m in "${modes[@]}"; do
    read -r -a opts <<<"--protection $m"
    log "mode: ${opts[*]}"
    dstcfg -r 127.0.0.1 -a export -f /dev/ram0 "${opts[@]}"
    dev=$(dstcfg -r 127.0.0.1 -a local "${opts[@]}")
    assert_eq "$dev" /dev/dst0 "device of mode $m"
    fio_verify "verify-${m%% *}" --filename="$dev" --rw=randwrite --bs=4k-256k \
        --size=32M --iodepth=16
    assert_eq "$(dev_sha "$dev" 32)" "$(dev_sha /dev/ram0 32)" "data through $dev ($m)"
    json=$(dstcfg -a list --json)
    assert_contains "$json" "\"protection\"" "list --json of mode $m"
    errors=$(cat /sys/block/dst0/dst/integrity_errors 2>/dev/null || echo 0)
    assert_eq "$errors" 0 "integrity errors in mode $m"
    dstcfg -a delete -d dst0
    dstcfg -r 127.0.0.1 -a unexport
done

dstcfg -a set --crypto-threads 3
assert_contains "$(dstcfg -a status --json)" '"crypto_threads": 3' "status after --crypto-threads 3"
log "ok"
