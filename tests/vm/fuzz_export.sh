#!/usr/bin/env bash
#
# fuzz_export.sh - `dstpeer fuzz` (tools/dstpeer/src/fuzz.rs) against the
# kernel's export: at least 100,000 frames, mostly near-valid mutations of
# valid frames (bit flips, changed lengths and fields, swapped fields, bad
# HELLOs, truncations), over many connections. Every frame's fate is predicted
# with the protocol code the export runs and checked (the refusal status of a
# refused request, one reply per request, a PONG per PING, a close after a
# fatal frame); at the end a fresh session writes and reads back 1 MiB, and
# the export still unexports cleanly. The runner fails the test on any kernel
# warning.
#
# DST_FUZZ_FRAMES (default 100000) and DST_FUZZ_SEED (default: random,
# printed) set the run; the seed reproduces the frames. With the security
# protocol available, DST_FUZZ_PROTECTED_FRAMES (default 10000) more frames
# go to an aead export with a key (0 skips it).
# timeout: 600
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

peer=$DST_REPO/tools/dstpeer/target/release/dstpeer
[ -x "$peer" ] || fail "$peer not built: run make dstpeer"
frames=${DST_FUZZ_FRAMES:-100000}
seed=${DST_FUZZ_SEED:-$(( $(od -An -N4 -tu4 /dev/urandom) ))}
protected=${DST_FUZZ_PROTECTED_FRAMES:-10000}
log "seed $seed (DST_FUZZ_SEED=$seed reproduces this run)"

# fuzz_run NAME PORT FRAMES ARGS...: an export of 64 MiB of /dev/ram<N> and
# the fuzzer against it.
fuzz_run() {
    local name=$1 port=$2 n=$3 dev=$4 start rc=0
    shift 4
    # --shared: the fuzzer mutates the client name of its HELLOs, so many
    # identities ask for write access, and its predictions (the protocol
    # code) know no holder; the one-writer rule has a test of its own
    # (export_single_writer.sh).
    dstcfg -r 127.0.0.1 -p "$port" -a export -f "$dev" --size 64M --shared "$@"
    start=$(now_ms)
    "$peer" fuzz "127.0.0.1:$port" --frames "$n" --seed "$seed" --verify-at 32M \
        --max-secs 700 "$@" >"$DST_TEST_OUT/fuzz-$name.log" 2>&1 || rc=$?
    sed 's/^/# /' "$DST_TEST_OUT/fuzz-$name.log"
    [ "$rc" = 0 ] || fail "fuzz $name failed (seed $seed): $(tail -n 1 "$DST_TEST_OUT/fuzz-$name.log")"
    log "fuzz $name: $n frames in $(( ($(now_ms) - start) / 1000 )) s"
    timeout 60 dstcfg -r 127.0.0.1 -p "$port" -a unexport || fail "unexport after fuzz $name failed"
}

fuzz_run none 2400 "$frames" /dev/ram0

if [ "$protected" -gt 0 ]; then
    if has_security; then
        key=$(mktemp -d)/psk
        psk_file "$key"
        fuzz_run aead 2401 "$protected" /dev/ram1 --protection aead --key-file "$key"
    else
        log "SKIP aead: dstcfg has no --protection"
    fi
fi
log "ok"
