#!/usr/bin/env bash
#
# hostile_local.sh - a hostile export against the kernel's local node:
# `dstpeer server --case ...` (tools/dstpeer/src/server.rs) serves a 64 MiB
# buffer holding a known pattern and lies or breaks the protocol; DST devices
# are created on it and read through it. Expected, by the phase of the case:
#
#   handshake  lies in the grant (size, block sizes, max IO, depth, queues,
#              features, permissions, version, reserved bytes), bad or
#              missing proofs, unasked or repeated CHALLENGEs, refusals, a
#              broken, truncated or missing HELLO_REPLY: `dstcfg -a local`
#              fails, no device is left, and the local node closed the
#              connection (the server logs its verdict). One server per case.
#   io         wrong id/op/offset/length/flags, oversized, short or missing
#              data, a reply never asked for, a duplicate, bad kinds and
#              statuses, no reply (request timeout), a close mid-reply,
#              tampered, replayed or trailer-less replies: one device reads
#              1 MiB per case (case i acts on the READ at 24 + i MiB, once);
#              the local node must drop the connection, reconnect and resend,
#              and the read returns exactly the pattern (tampered and replayed
#              frames must count an integrity error); an IO_ERROR or
#              AUTH_FAILED status fails the read instead (BUSY may do either).
#   probe      a tampered, replayed, too old or trailer-less PING from the
#              export, one per connection: the local node closes each (the
#              server logs the verdicts), reconnects, and still reads right.
#   reconnect  the export comes back with another size: the local node
#              refuses it and the read fails after the loss timeout.
#   reply-twice  a second HELLO_REPLY on the first connection: closed,
#              reconnected, the read is right.
# Never may a read complete with other data; the runner fails the test on any
# kernel warning.
#
# Cases needing a key or a trailer run with hmac and aead exports (the trailer
# ones with crc32c too). DST_HOSTILE_MODES selects the modes (default
# "none crc32c hmac aead"; the protected ones are skipped with a note if
# dstcfg has no --protection); DST_HOSTILE_CASES, if set, lists the only cases
# to run. Server logs are kept in hostile-local/ of the test's results.
# timeout: 2400
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

peer=$DST_REPO/tools/dstpeer/target/release/dstpeer
[ -x "$peer" ] || fail "$peer not built: run make dstpeer"
modes=${DST_HOSTILE_MODES:-none crc32c hmac aead}
only=${DST_HOSTILE_CASES:-}
tmp=${DST_TEST_OUT:-$(mktemp -d)}/hostile-local
mkdir -p "$tmp"
seed=23
trigger=24
settings=(--req-timeout 3000 --reconnect-delay 200 --max-resends 5)

key=$tmp/psk
psk_file "$key"

# The cases worth running in mode $2, by what they need ($1): protected modes
# run only the cases that need their protection.
wanted() {
    case $2/$1 in
        none/any|none/no-key) return 0 ;;
        crc32c/trailer) return 0 ;;
        hmac/key|hmac/trailer|hmac/seq|aead/key|aead/trailer|aead/seq) return 0 ;;
        *) return 1 ;;
    esac
}

# Cases whose frame must fail the trailer or replay check of the local node.
integrity_case() {
    case $1 in
        io-tamper-*|io-no-trailer|io-replay|io-seq-reuse|probe-*) return 0 ;;
        *) return 1 ;;
    esac
}

server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
cleanup() {
    stop_server
    dstcfg -a delete -d dst0 >/dev/null 2>&1 || true
}
trap cleanup EXIT

port=2300
# start_server LOG ARGS...: a dstpeer server on the next port, listening.
start_server() {
    local slog=$1
    shift
    port=$((port + 1))
    "$peer" server "127.0.0.1:$port" --size 64M --seed "$seed" --trigger "${trigger}M" "$@" \
        >"$slog" 2>&1 &
    server_pid=$!
    for _ in $(seq 100); do
        grep -q '^server: listening' "$slog" && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$slog" >&2
    fail "dstpeer server did not start"
}

# new_device ARGS...: dstcfg -a local on the server's port; the device path,
# or nothing (then $ERRMSG says why).
new_device() {
    local dev
    if dev=$(dstcfg -r 127.0.0.1 -p "$port" -a local "${settings[@]}" "$@" 2>"$tmp/err"); then
        echo "$dev"
    fi
}
errmsg() { tr '\n' ' ' <"$tmp/err"; }

delete_device() { timeout 60 dstcfg -a delete -d dst0 || bad "delete of dst0 failed"; }

# read_mib DEV MIB: sha256 of 1 MiB of DEV at MIB MiB (direct IO), or fails.
read_mib() {
    timeout 120 dd if="$1" bs=1M skip="$2" count=1 iflag=direct status=none |
        sha256sum | cut -d' ' -f1
}
# The pattern's sha256 at MIB.
want_mib() { "$peer" pattern "${1}M" 1M "$seed" | sha256sum | cut -d' ' -f1; }

# verdict LOG CONN SECONDS: the server's verdict on connection CONN.
verdict() {
    local slog=$1 conn=$2 limit=$3
    for _ in $(seq $((limit * 10))); do
        if grep -q "^conn $conn: verdict:" "$slog"; then
            grep -m1 "^conn $conn: verdict:" "$slog" | sed 's/^conn [0-9]*: verdict: //'
            return 0
        fi
        sleep 0.1
    done
    echo "no verdict within ${limit} s"
}

# The connection number a case acted on, from the server log.
conn_of() { sed -n "s/^conn \([0-9]*\): case $2[: ].*/\1/p" "$1" | head -n 1; }

sysfs() { cat "/sys/block/dst0/dst/$1" 2>/dev/null || echo 0; }

results=()
failures=()
note() { results+=("ok $1"); log "ok $1"; }
bad() { failures+=("$1"); results+=("FAIL $1"); log "FAIL $1"; }

mapfile -t all < <("$peer" server list)

for mode in $modes; do
    case $mode in
        none) sec=() ;;
        crc32c) sec=(--protection crc32c) ;;
        hmac|aead) sec=(--protection "$mode" --key-file "$key") ;;
        *) fail "unknown mode $mode in DST_HOSTILE_MODES" ;;
    esac
    if [ "$mode" != none ] && ! has_security; then
        results+=("SKIP $mode: dstcfg has no --protection")
        log "SKIP $mode: dstcfg has no --protection (the kernel side is not there yet)"
        continue
    fi
    hs=() ios=() probes=() singles=()
    for line in "${all[@]}"; do
        IFS=$'\t' read -r name phase needs _ <<<"$line"
        wanted "$needs" "$mode" || continue
        if [ -n "$only" ] && ! [[ " $only " == *" $name "* ]]; then continue; fi
        case $phase/$name in
            handshake/reply-twice|reconnect/*) singles+=("$name") ;;
            handshake/*) hs+=("$name") ;;
            io/*) ios+=("$name") ;;
            probe/*) probes+=("$name") ;;
        esac
    done
    log "=== $mode: ${#hs[@]} handshake, ${#ios[@]} io, ${#probes[@]} probe, ${#singles[@]} other cases"

    # Handshake cases: one server and one device creation each.
    for name in "${hs[@]}"; do
        slog=$tmp/$mode-$name.log
        kmsg "hostile_local: $mode $name"
        start_server "$slog" --case "$name" "${sec[@]}"
        t0=$(now_ms)
        dev=$(new_device "${sec[@]}")
        took=$(( $(now_ms) - t0 ))
        if [ -n "$dev" ]; then
            bad "$mode $name: the lying export was accepted as $dev"
            delete_device
        else
            case $name in
                reply-close|reply-truncated) v="closed (by the export)" ;;
                *) v=$(verdict "$slog" 1 10) ;;
            esac
            case $v in
                closed*) note "$mode $name: refused in $took ms ($(errmsg)); $v" ;;
                *) bad "$mode $name: refused ($(errmsg)) but $v" ;;
            esac
        fi
        stop_server
    done

    # IO cases: one device, case i on the READ at trigger + i MiB.
    if [ ${#ios[@]} -gt 0 ]; then
        list=$(IFS=,; echo "${ios[*]}")
        slog=$tmp/$mode-io.log
        kmsg "hostile_local: $mode io cases"
        start_server "$slog" --case "$list" "${sec[@]}"
        dev=$(new_device "${sec[@]}")
        [ -n "$dev" ] || fail "$mode: device on the io cases' server not created: $(errmsg)"
        i=0
        for name in "${ios[@]}"; do
            mib=$((trigger + i))
            i=$((i + 1))
            want=$(want_mib "$mib")
            r0=$(sysfs reconnects) e0=$(sysfs integrity_errors)
            rc=0
            got=$(read_mib "$dev" "$mib") || rc=$?
            case $name in
                io-status-error|io-status-auth) expect=fail ;;
                io-status-busy) expect=either ;;
                *) expect=data ;;
            esac
            # A duplicate is noticed after the read completed.
            [ "$name" != io-duplicate ] || for _ in $(seq 50); do
                [ "$(sysfs reconnects)" -gt "$r0" ] && break
                sleep 0.1
            done
            r=$(( $(sysfs reconnects) - r0 )) e=$(( $(sysfs integrity_errors) - e0 ))
            what="$mode $name (READ at $mib MiB)"
            if [ -z "$(conn_of "$slog" "$name")" ]; then
                bad "$what: the case never acted"
            elif [ "$rc" = 0 ] && [ "$got" != "$want" ]; then
                bad "$what: the read returned OTHER DATA"
            elif [ "$rc" != 0 ] && [ "$expect" = data ]; then
                bad "$what: the read failed"
            elif [ "$rc" = 0 ] && [ "$expect" = fail ]; then
                bad "$what: the read succeeded despite the error status"
            elif [ "$expect" = data ] && [ "$r" -lt 1 ]; then
                bad "$what: right data but no reconnect: the bad reply was accepted"
            elif integrity_case "$name" && [ "$e" -lt 1 ]; then
                bad "$what: right data but no integrity error counted"
            elif [ "$rc" = 0 ]; then
                note "$what: right data; $r reconnects, $e integrity errors"
            else
                note "$what: the read failed; $r reconnects"
            fi
        done
        # The device still reads right where no case acted.
        got=$(read_mib "$dev" 4 || echo "read failed")
        [ "$got" = "$(want_mib 4)" ] || bad "$mode: a read after the io cases: $got"
        log "$mode io cases: $(grep -c ': connected from' "$slog") connections, counters: reconnects $(sysfs reconnects), resends $(sysfs resends), timeouts $(sysfs timeouts), io_errors $(sysfs io_errors), integrity_errors $(sysfs integrity_errors)"
        delete_device
        stop_server
    fi

    # Probe cases: one device, probe i on connection i.
    if [ ${#probes[@]} -gt 0 ]; then
        list=$(IFS=,; echo "${probes[*]}")
        slog=$tmp/$mode-probe.log
        kmsg "hostile_local: $mode probe cases"
        start_server "$slog" --case "$list" "${sec[@]}"
        dev=$(new_device "${sec[@]}")
        [ -n "$dev" ] || fail "$mode: device on the probe cases' server not created: $(errmsg)"
        for name in "${probes[@]}"; do
            conn=""
            for _ in $(seq 300); do
                conn=$(conn_of "$slog" "$name")
                [ -z "$conn" ] || break
                sleep 0.1
            done
            if [ -z "$conn" ]; then
                bad "$mode $name: the case never acted (no new connection)"
                continue
            fi
            v=$(verdict "$slog" "$conn" 30)
            case $v in
                closed*) note "$mode $name (connection $conn): $v" ;;
                *) bad "$mode $name (connection $conn): $v" ;;
            esac
        done
        got=$(read_mib "$dev" "$trigger" || echo "read failed")
        [ "$got" = "$(want_mib "$trigger")" ] || bad "$mode: a read after the probes: $got"
        e=$(sysfs integrity_errors)
        [ "$e" -ge "${#probes[@]}" ] || bad "$mode: $e integrity errors after ${#probes[@]} probes"
        log "$mode probes: $(sysfs reconnects) reconnects, $e integrity errors"
        delete_device
        stop_server
    fi

    for name in "${singles[@]}"; do
        slog=$tmp/$mode-$name.log
        kmsg "hostile_local: $mode $name"
        start_server "$slog" --case "$name" "${sec[@]}"
        extra=()
        [ "$name" != reconnect-changed ] || extra=(--loss-timeout 3000)
        dev=$(new_device "${extra[@]}" "${sec[@]}")
        if [ -z "$dev" ]; then
            bad "$mode $name: device not created: $(errmsg)"
            stop_server
            continue
        fi
        rc=0
        got=$(read_mib "$dev" "$trigger") || rc=$?
        want=$(want_mib "$trigger")
        case $name in
            reply-twice)
                if [ "$rc" != 0 ] || [ "$got" != "$want" ]; then
                    bad "$mode $name: the read failed or returned other data"
                elif [ "$(sysfs reconnects)" -lt 1 ]; then
                    bad "$mode $name: no reconnect: the second HELLO_REPLY was accepted"
                else
                    note "$mode $name: right data after $(sysfs reconnects) reconnects"
                fi
                ;;
            reconnect-changed)
                if [ "$rc" = 0 ] && [ "$got" = "$want" ]; then
                    bad "$mode $name: the read was served by the changed export"
                elif [ "$rc" = 0 ]; then
                    bad "$mode $name: the read returned OTHER DATA"
                else
                    note "$mode $name: the read failed after the loss timeout; $(( $(grep -c 'granted:' "$slog") - 1 )) changed grants refused"
                fi
                ;;
        esac
        delete_device
        stop_server
    done
done

log "--- summary"
printf '# %s\n' "${results[@]}"
if [ ${#failures[@]} -gt 0 ]; then
    printf 'FAIL: %s\n' "${failures[@]}" >&2
    exit 1
fi
log "ok: ${#results[@]} results"
