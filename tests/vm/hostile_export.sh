#!/usr/bin/env bash
#
# hostile_export.sh - a hostile local node against the kernel's export:
# `dstpeer attack-export --case all` (tools/dstpeer/src/attack.rs) sends bad
# headers, bad HELLOs, wrong keys, truncated and oversized frames, misaligned
# and out-of-range IO, tampered, replayed and too old frames, a slow loris
# and a swarm of half-open connections. Each case must end as specified (a
# refusal status, a closed connection within its bound, a refused request on
# a session that goes on), followed by a fresh session that writes and reads
# back.
#
# Run against four exports of 64 MiB RAM disks: no protection, hmac with a
# key, aead with a key, and read-only. Meanwhile a well-behaved session
# (`dstpeer client soak`) keeps writing and verifying at 48 MiB and must
# carry on unharmed; afterwards the RAM disk outside the scratch ranges
# (0..16 MiB and 20..48 MiB) must hold exactly the data it held before.
#
# DST_HOSTILE_MODES selects the exports (default "none hmac aead readonly";
# hmac and aead are skipped with a note if dstcfg has no --protection).
#
# Then a client that stops reading its replies (`dstpeer client stall`): it
# sends READs of the largest size as fast as the export takes them and reads
# nothing. A DST device on the same export must keep at least half its
# throughput meanwhile (fio random reads, measured before and during the
# stall), the export's request memory (`memory_bytes` in sysfs) must stay
# within its budget plus one largest IO per session, and the export must
# end the stalled session by its send timeout (30 s) while the device goes
# on.
# timeout: 1500
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

peer=$DST_REPO/tools/dstpeer/target/release/dstpeer
[ -x "$peer" ] || fail "$peer not built: run make dstpeer"
modes=${DST_HOSTILE_MODES:-none hmac aead readonly}
tmp=$(mktemp -d)

key=$tmp/psk
psk_file "$key"

# sha256 of MIB MiB of /dev/ramN from SKIP MiB.
ram_sha() {
    dd if="$1" bs=1M count="$2" skip="$3" status=none | sha256sum | cut -d' ' -f1
}

port=2200
ram=0
failures=()
for mode in $modes; do
    case $mode in
        none) sec=() ro=() ;;
        readonly) sec=() ro=(--read-only) ;;
        hmac|aead)
            if ! has_security; then
                log "SKIP $mode: dstcfg has no --protection (the kernel side is not there yet)"
                continue
            fi
            sec=(--protection "$mode" --key-file "$key") ro=() ;;
        *) fail "unknown mode $mode in DST_HOSTILE_MODES" ;;
    esac
    port=$((port + 1))
    dev=/dev/ram$ram
    ram=$((ram + 1))
    log "=== $mode: export of $dev on port $port"
    "$peer" pattern 0 64M 11 | dd of="$dev" bs=1M iflag=fullblock status=none
    low0=$(ram_sha "$dev" 16 0)
    mid0=$(ram_sha "$dev" 28 20)
    dstcfg -r 127.0.0.1 -p "$port" -a export -f "$dev" --size 64M "${ro[@]}" "${sec[@]}"

    stop=$tmp/stop-$mode
    soak_args=(soak 48M 1M --stop-file "$stop" --max-secs 1200)
    [ "$mode" != readonly ] || soak_args+=(--verify-only 11)
    "$peer" client "127.0.0.1:$port" "${soak_args[@]}" "${sec[@]}" >"$tmp/soak-$mode.log" 2>&1 &
    soak=$!
    sleep 1
    kill -0 "$soak" 2>/dev/null || { cat "$tmp/soak-$mode.log"; fail "$mode: the soak session did not start"; }

    rc=0
    "$peer" attack-export "127.0.0.1:$port" --case all --scratch 16M --victim 4M \
        --half-open 64 "${sec[@]}" >"$tmp/attack-$mode.log" 2>&1 || rc=$?
    sed 's/^/# /' "$tmp/attack-$mode.log"
    [ "$rc" = 0 ] || failures+=("$mode: $(tail -n 1 "$tmp/attack-$mode.log")")

    touch "$stop"
    src=0
    wait "$soak" || src=$?
    log "soak ($mode): $(tail -n 1 "$tmp/soak-$mode.log")"
    [ "$src" = 0 ] || failures+=("$mode: the concurrent session failed: $(tail -n 1 "$tmp/soak-$mode.log")")

    dstcfg -r 127.0.0.1 -p "$port" -a unexport
    low1=$(ram_sha "$dev" 16 0)
    mid1=$(ram_sha "$dev" 28 20)
    [ "$low1" = "$low0" ] || failures+=("$mode: $dev 0..16 MiB changed")
    [ "$mid1" = "$mid0" ] || failures+=("$mode: $dev 20..48 MiB changed")
    if [ "$mode" = readonly ] &&
        [ "$(ram_sha "$dev" 64 0)" != "$("$peer" pattern 0 64M 11 | sha256sum | cut -d' ' -f1)" ]; then
        failures+=("readonly: $dev changed")
    fi
done

log "=== a client that stops reading"
port=$((port + 1))
# --shared: the stall client is another local node identity.
dstcfg -r 127.0.0.1 -p "$port" -a export -f /dev/ram0 --size 64M --shared
exp=$(grep -l "127.0.0.1:$port" /sys/kernel/dst/export*/listen | head -1)
exp=${exp%/listen}
dev=$(dstcfg -r 127.0.0.1 -p "$port" -a local)
# Random 64 KiB reads for SECS seconds; prints KiB/s.
read_bw() {
    fio --name=bw --filename="$dev" --ioengine=libaio --direct=1 --rw=randread --bs=64k \
        --iodepth=16 --runtime="$1" --time_based --size=32m \
        --output-format=terse --terse-version=3 | awk -F';' '{print $7}'
}
bw0=$(read_bw 8)
own=$(cat "$exp/sessions")
"$peer" client "127.0.0.1:$port" stall 45 >"$tmp/stall.log" 2>&1 &
stall=$!
sleep 3
log "stall client: $(cat "$tmp/stall.log")"
[ "$(cat "$exp/sessions")" -gt "$own" ] || failures+=("stall: the stall client has no session")
bw1=$(read_bw 8)
read -r held budget <"$exp/memory_bytes"
max_io=$(cat "$exp/max_io_bytes")
log "device read throughput: $bw0 KiB/s alone, $bw1 KiB/s beside the stalled client; export memory $held of $budget bytes (max IO $max_io)"
[ $((bw1 * 2)) -ge "$bw0" ] || failures+=("stall: throughput fell from $bw0 to $bw1 KiB/s")
[ "$held" -le $((budget + 2 * max_io)) ] || failures+=("stall: export holds $held bytes, budget $budget")
# The export gives up on the stalled session within its send timeout.
closed=
for _ in $(seq 60); do
    if [ "$(cat "$exp/sessions")" = "$own" ]; then closed=1; break; fi
    sleep 1
done
[ -n "$closed" ] || failures+=("stall: the export still has $(cat "$exp/sessions") sessions")
log "stalled session ended by the export; memory now $(cut -d' ' -f1 "$exp/memory_bytes") bytes"
dd if="$dev" of=/dev/null bs=1M count=16 iflag=direct status=none ||
    failures+=("stall: the device failed after the stalled session ended")
kill "$stall" 2>/dev/null || true
wait "$stall" 2>/dev/null || true
dstcfg -a delete -d "${dev#/dev/}" || failures+=("stall: delete $dev failed")
dstcfg -r 127.0.0.1 -p "$port" -a unexport

if [ ${#failures[@]} -gt 0 ]; then
    printf 'FAIL: %s\n' "${failures[@]}" >&2
    exit 1
fi
log "ok"
