#!/usr/bin/env bash
#
# hostile_local.sh - a hostile export against the kernel's local node:
# `dstpeer server --case ...` (tools/dstpeer/src/server.rs) serves a 64 MiB
# buffer holding a known pattern and lies or breaks the protocol; DST devices
# are created on it and read through it. Expected, by the phase of the case:
#
#   handshake  lies in the grant (size, block sizes, max IO, depth, queues,
#              features, permissions, version, reserved bytes), bad or
#              missing proofs, unasked or repeated CHALLENGEs, key shares of
#              small order, another export identity than the one asked for
#              (the device names the server's), refusals, a broken, truncated
#              or missing HELLO_REPLY: `dstcfg -a local`
#              fails, no device is left, and the local node closed the
#              connection (the server logs its verdict). One server per case.
#   io         wrong id/op/offset/length/flags, oversized, short or missing
#              data, a reply never asked for, a duplicate, bad kinds and
#              statuses, a RESIZE of a bad size (unaligned, 0, above the
#              limit), no reply (request timeout), a close mid-reply,
#              tampered, replayed or trailer-less replies: one device reads
#              1 MiB per case (case i acts on the READ at 24 + i MiB, once);
#              the local node must drop the connection, reconnect and resend,
#              and the read returns exactly the pattern (tampered and replayed
#              frames must count an integrity error; a handshake status
#              such as AUTH_FAILED is a protocol violation too); an IO_ERROR
#              status fails the read instead (BUSY may do either).
#   cross-queue  2 queues; a READ answered on another queue's connection too:
#              reconnected, the read right, and in the page cache 4 s later.
#   probe      a tampered, replayed, too old or trailer-less PING from the
#              export, one per connection: the local node closes each (the
#              server logs the verdicts), reconnects, and still reads right.
#   reconnect  the export comes back with another size: the local node
#              refuses it and the read fails after the loss timeout.
#   reply-twice  a second HELLO_REPLY on the first connection: closed,
#              reconnected, the read is right.
#   write      hold-write (fencing epochs, audit finding C2), 2 queues,
#              no resend, a request timeout of 2 s, reconnects after 5 s:
#              the export holds the first WRITE at the trigger offset (W1,
#              4 KiB of pattern A, sent from a CPU of queue 0), neither
#              executed nor answered, until its connection is fenced. W1
#              must fail (EIO); W2 (pattern B, the same blocks, from a CPU of
#              queue 1) must succeed, but only once the export has executed
#              the held W1: the local node moved to a new epoch before it
#              failed W1, and the new epoch's first HELLO fenced W1's
#              connection. The blocks must then read B: A means the failed
#              write landed after the newer one (silent corruption).
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
# The servers' logs, polled while the servers write them, live in the
# guest's own /tmp and are copied into the results at the end: a read of a
# file being appended to on the results folder's uncached 9p mount once
# failed with ENODATA ("No data available"), which ended the test.
tmp=$(mktemp -d)/hostile-local
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

# Cases answering on the connection of another queue: a device of 2 queues.
cross_queue_case() {
    case $1 in
        io-cross-queue|io-both-queues) return 0 ;;
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
    # Whatever state a failure left the device in: forced.
    dstcfg -a delete -d dst0 --force >/dev/null 2>&1 || true
    [ -z "${DST_TEST_OUT:-}" ] || cp -a "$tmp" "$DST_TEST_OUT/" || true
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
# read_cached DEV MIB: like read_mib, buffered (through the page cache), from
# the last CPU (its hardware queue).
read_cached() {
    timeout 120 taskset -c "$(($(nproc) - 1))" dd if="$1" bs=1M skip="$2" count=1 status=none |
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
# Whether connection CONN has ended, from the server log LOG.
conn_ended() { grep -q "^conn $2: ended" "$1"; }

sysfs() { cat "/sys/block/dst0/dst/$1" 2>/dev/null || echo 0; }

# two_queue_device NAME: a server with case NAME (its log $tmp/$mode-NAME.log)
# and a device of 2 queues on it, in $dev; if the device cannot be created,
# counts the case as failed, stops the server and returns 1.
two_queue_device() {
    kmsg "hostile_local: $mode $1"
    start_server "$tmp/$mode-$1.log" --case "$1" "${sec[@]}"
    dev=$(new_device --queues 2 "${sec[@]}")
    [ -z "$dev" ] || return 0
    bad "$mode $1: device of 2 queues not created: $(errmsg)"
    stop_server
    return 1
}

# stale_write NAME: the write case NAME (hold-write; see the header) in
# $mode. The device's settings replace the common ones (dynamic scope:
# new_device sees this function's $settings).
stale_write() {
    local name=$1 settings=(--req-timeout 2000 --max-resends 0 --reconnect-delay 5000)
    local slog=$tmp/$mode-$1.log what="$mode $1 (4 KiB WRITEs at $trigger MiB, 2 queues)"
    local mark="hostile_local: $mode $name" seek=$((trigger * 256)) a=$tmp/pattern-a b=$tmp/pattern-b
    local cpus=() q t0 rc1 rc2 w1_ms w2_ms held_then got klog lines released later
    two_queue_device "$name" || return
    # A CPU of each hardware queue (the first of its list).
    for q in 0 1; do
        cpus+=("$(sed 's/[,-].*//' "/sys/block/dst0/mq/$q/cpu_list" 2>/dev/null)")
    done
    log "$what: CPUs of the hardware queues: 0:${cpus[0]} 1:${cpus[1]}"
    if [ -z "${cpus[0]}" ] || [ -z "${cpus[1]}" ]; then
        bad "$what: no CPU for each of the 2 hardware queues"
        delete_device
        stop_server
        return
    fi
    "$peer" pattern "${trigger}M" 4096 101 >"$a"
    "$peer" pattern "${trigger}M" 4096 102 >"$b"
    # W1, held by the export: must fail after the request timeout.
    kmsg "$mark: W1 from CPU ${cpus[0]}"
    t0=$(now_ms) rc1=0
    timeout 120 taskset -c "${cpus[0]}" dd if="$a" of="$dev" bs=4096 seek="$seek" count=1 \
        oflag=direct conv=notrunc status=none 2>"$tmp/w1.err" || rc1=$?
    w1_ms=$(( $(now_ms) - t0 ))
    # W2, the same blocks from the other queue: must succeed.
    kmsg "$mark: W2 from CPU ${cpus[1]}"
    t0=$(now_ms) rc2=0
    timeout 120 taskset -c "${cpus[1]}" dd if="$b" of="$dev" bs=4096 seek="$seek" count=1 \
        oflag=direct conv=notrunc status=none 2>"$tmp/w2.err" || rc2=$?
    w2_ms=$(( $(now_ms) - t0 ))
    # Whether the export still held W1 when W2 completed.
    if grep -q "^conn [0-9]*: case $name: .* released" "$slog"; then held_then=no; else held_then=yes; fi
    log "$what: W1 (pattern A, CPU ${cpus[0]}): exit $rc1 after $w1_ms ms ($(tr '\n' ' ' <"$tmp/w1.err")); W2 (pattern B, CPU ${cpus[1]}): exit $rc2 after $w2_ms ms"
    # The held W1 is released when its connection is fenced.
    for _ in $(seq 150); do
        grep -q "^conn [0-9]*: case $name: .* released" "$slog" && break
        sleep 0.1
    done
    kmsg "$mark: read back"
    got=$(timeout 60 dd if="$dev" bs=4096 skip="$seek" count=1 iflag=direct status=none | sha256sum | cut -d' ' -f1) ||
        got="read failed"
    # Both queues reconnect in the new epoch (W2's queue before it sends W2).
    for _ in $(seq 100); do
        klog=$(dmesg | sed -n "/dst-test: $mark\$/,\$p")
        grep -q "reconnected to .*(queue 0)" <<<"$klog" && grep -q "reconnected to .*(queue 1)" <<<"$klog" && break
        sleep 0.1
    done
    sed -n "s/^\(conn [0-9]*: \(case $name\|fencing\|conn [0-9]* fenced\|stale\|fenced\).*\)/server: \1/p" "$slog" |
        while read -r l; do log "$l"; done
    # The server log's order of execution: the held W1, and W2.
    released=$(grep -n "^conn [0-9]*: case $name: .* released" "$slog" | head -n 1 | cut -d: -f1)
    later=$(grep -n "^conn [0-9]*: case $name: another WRITE" "$slog" | head -n 1 | cut -d: -f1)
    lines=$(grep -E "unanswered|connection to .* lost|reconnected to|I/O error, dev dst0" <<<"$klog" | sed 's/^\[[^]]*\] //' || true)
    while read -r l; do [ -z "$l" ] || log "kernel: $l"; done <<<"$lines"
    if ! grep -q "^conn [0-9]*: case $name: .* held" "$slog"; then
        bad "$what: the case never acted (no WRITE held)"
    elif [ "$rc1" = 0 ]; then
        bad "$what: W1 succeeded although the export never answered it"
    elif [ "$rc2" != 0 ]; then
        bad "$what: W2 failed ($(tr '\n' ' ' <"$tmp/w2.err"))"
    elif [ "$got" = "$(sha256sum <"$a" | cut -d' ' -f1)" ]; then
        bad "$what: the blocks read W1's data (pattern A): the FAILED WRITE landed after the newer W2 (stale write not fenced)"
    elif [ "$got" != "$(sha256sum <"$b" | cut -d' ' -f1)" ]; then
        bad "$what: the blocks read neither W2's data nor W1's ($got)"
    elif [ "$held_then" = yes ]; then
        bad "$what: right data, but W2 completed while the export still held the failed W1 (not fenced)"
    elif [ -z "$released" ] || [ -z "$later" ] || [ "$later" -lt "$released" ]; then
        bad "$what: right data, but the export did not execute W1, then W2 (server log lines ${released:-none}, ${later:-none})"
    elif ! grep -q "^conn [0-9]*: case $name: .* released by a fence" "$slog"; then
        bad "$what: right data, but W1 was not released by a fence"
    elif ! grep -q "is unanswered after 2000 ms" <<<"$klog"; then
        bad "$what: right data, but no request timeout in the kernel log"
    elif ! grep -q "I/O error, dev dst0" <<<"$klog"; then
        bad "$what: right data, but no I/O error of dst0 in the kernel log"
    elif ! grep -q "reconnected to .*(queue 0)" <<<"$klog" || ! grep -q "reconnected to .*(queue 1)" <<<"$klog"; then
        bad "$what: right data, but not both queues reconnected (a new epoch moves every queue)"
    else
        note "$what: W1 failed after $w1_ms ms, W2 succeeded after $w2_ms ms, once the export had executed the held W1 (fenced); the blocks read W2's data"
    fi
    delete_device
    stop_server
}

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
    hs=() ios=() xqs=() probes=() singles=() writes=()
    for line in "${all[@]}"; do
        IFS=$'\t' read -r name phase needs _ <<<"$line"
        wanted "$needs" "$mode" || continue
        if [ -n "$only" ] && ! [[ " $only " == *" $name "* ]]; then continue; fi
        case $phase/$name in
            handshake/reply-twice|reconnect/*) singles+=("$name") ;;
            handshake/*) hs+=("$name") ;;
            io/*) if cross_queue_case "$name"; then xqs+=("$name"); else ios+=("$name"); fi ;;
            probe/*) probes+=("$name") ;;
            write/*) writes+=("$name") ;;
        esac
    done
    log "=== $mode: ${#hs[@]} handshake, ${#ios[@]} io, ${#xqs[@]} cross-queue, ${#probes[@]} probe, ${#writes[@]} write, ${#singles[@]} other cases"

    # Handshake cases: one server and one device creation each.
    for name in "${hs[@]}"; do
        slog=$tmp/$mode-$name.log
        kmsg "hostile_local: $mode $name"
        # The device asks for the server by name, so that the cases that
        # answer with another export identity lie.
        start_server "$slog" --case "$name" --name hostile "${sec[@]}"
        t0=$(now_ms)
        dev=$(new_device -n hostile "${sec[@]}")
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
                io-status-error) expect=fail ;;
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

    # Cross-queue cases (mode none): one server and one device of 2 queues
    # (one connection each) per case. The READ of the trigger MiB, buffered
    # from the last CPU, is answered on another queue's connection too:
    # io-cross-queue sends the reply's header there, the right reply on the
    # READ's own connection 0.5 s later and 0xa5 bytes as the data on the
    # other 1.5 s after that; io-both-queues the right reply on both at once.
    # A reply on the wrong queue breaks the protocol (reconnect), and no
    # receiver may touch a request of another queue, let alone write into its
    # pages after it completed: the MiB is read again 4 s later from the page
    # cache, kept by the fd held open (the last close drops it).
    for name in "${xqs[@]}"; do
        slog=$tmp/$mode-$name.log
        two_queue_device "$name" || continue
        want=$(want_mib "$trigger")
        log "$mode $name: CPUs of the hardware queues: $(for q in /sys/block/dst0/mq/*; do
            printf '%s:%s ' "${q##*/}" "$(cat "$q/cpu_list")"; done)"
        exec {hold}<"$dev"
        rc=0
        first=$(read_cached "$dev" "$trigger") || rc=$?
        sleep 4
        again=$(read_cached "$dev" "$trigger") || rc=$?
        exec {hold}<&-
        r=$(sysfs reconnects)
        sed -n "s/^\(conn [0-9]*: case $name: .*\)/server: \1/p" "$slog" | while read -r l; do log "$l"; done
        # The READ's connection, and the other queue's one the case used.
        own=$(conn_of "$slog" "$name")
        other=$(sed -n "s/^conn [0-9]*: case $name: .* on conn \([0-9]*\) (another queue).*/\1/p" "$slog" | head -n 1)
        what="$mode $name (buffered READ at $trigger MiB, 2 queues)"
        if [ -z "$own" ] || [ -z "$other" ]; then
            bad "$what: the case never acted on two connections"
        elif [ "$rc" != 0 ]; then
            bad "$what: a read failed"
        elif [ "$first" != "$want" ]; then
            bad "$what: the read returned OTHER DATA"
        elif [ "$again" != "$want" ]; then
            bad "$what: right data, but 4 s later the page cache holds OTHER DATA: written after the request completed"
        elif conn_ended "$slog" "$own"; then
            bad "$what: right data, but the READ's own connection $own was dropped: the reply on connection $other (another queue) was taken"
        elif ! conn_ended "$slog" "$other"; then
            bad "$what: right data but connection $other (another queue) was kept: its reply was accepted"
        else
            note "$what: right data, and still 4 s later; connection $other (another queue) dropped; $r reconnects"
        fi
        delete_device
        stop_server
    done

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

    for name in "${writes[@]}"; do
        stale_write "$name"
    done

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
