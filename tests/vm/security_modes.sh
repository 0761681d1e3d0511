#!/usr/bin/env bash
# timeout: 900
#
# security_modes.sh - every data-channel protection mode carries data
# correctly: for none, crc32c, hmac(sha256), gcm(aes) and
# rfc7539(chacha20,poly1305) (the last three with a pre-shared key), an
# export and a local node with the same settings connect, fio with crc32c
# verify passes through /dev/dst0, and the data on the export's RAM disk is
# what was written. Keys are replaced every 4 MiB (`dstcfg -a set
# --rekey-after 4M`): in the keyed modes both the device and the export
# must count key updates (KEY_UPDATE each way) while fio verifies, in the
# others none. Beside fio, tests/lib/scribble.py writes and reads its own
# region with O_DIRECT while it keeps changing its buffer (security review
# M2: checks over pages a process can change): the local node must protect
# and check only its own copies, so no integrity error may be counted in
# any mode, at the device or the export, and fio must pass. Then the
# module-wide crypto pool is resized and the status reply reports the new
# worker count and key update limits.
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

key=$(mktemp -d)/psk
dstcfg -a genkey -f "$key"
assert_eq "$(stat -c %a "$key")" 600 "mode of the generated key file"
dstcfg -a set --rekey-after 4M

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
    "$PYTHON" "$DST_REPO/tests/lib/scribble.py" "$dev" 64 16 20 >"$DST_TEST_OUT/scribble.log" &
    scribbler=$!
    fio_verify "verify-${m%% *}" --filename="$dev" --rw=randwrite --bs=4k-256k \
        --size=32M --iodepth=16
    wait "$scribbler" || fail "the scribbler failed ($m): $(cat "$DST_TEST_OUT/scribble.log")"
    log "$(cat "$DST_TEST_OUT/scribble.log") ($m)"
    assert_eq "$(dev_sha "$dev" 32)" "$(dev_sha /dev/ram0 32)" "data through $dev ($m)"
    json=$(dstcfg -a list --json)
    assert_contains "$json" "\"protection\"" "list --json of mode $m"
    errors=$(cat /sys/block/dst0/dst/integrity_errors 2>/dev/null || echo 0)
    assert_eq "$errors" 0 "integrity errors in mode $m"
    assert_eq "$(cat /sys/kernel/dst/export0/integrity_errors)" 0 \
        "integrity errors at the export in mode $m"
    assert_eq "$(dst_field dst0 io_errors)" 0 "IO errors in mode $m"
    assert_eq "$(dst_field dst0 reconnects)" 0 "reconnects in mode $m"
    dev_rekeys=$(cat /sys/block/dst0/dst/rekeys)
    exp_rekeys=$(cat /sys/kernel/dst/export0/rekeys)
    log "key updates in mode $m: device $dev_rekeys, export $exp_rekeys"
    case $m in
        hmac* | aead*)
            # 32 MiB written and read back, each way in 4 MiB keys.
            [ "$dev_rekeys" -ge 8 ] || fail "only $dev_rekeys key updates at the device ($m)"
            [ "$exp_rekeys" -ge 8 ] || fail "only $exp_rekeys key updates at the export ($m)"
            ;;
        *)
            assert_eq "$dev_rekeys $exp_rekeys" "0 0" "key updates without keys ($m)"
            ;;
    esac
    dstcfg -a delete -d dst0
    dstcfg -r 127.0.0.1 -a unexport
done

dstcfg -a set --crypto-threads 3
assert_contains "$(dstcfg -a status --json)" '"crypto_threads": 3' "status after --crypto-threads 3"
dstcfg -a set --rekey-after 64G --rekey-interval 600
status=$(dstcfg -a status --json)
assert_contains "$status" '"rekey_mib": 65536' "status after --rekey-after 64G"
assert_contains "$status" '"rekey_seconds": 600' "status after --rekey-interval 600"
log "ok"
