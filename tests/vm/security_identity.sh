#!/usr/bin/env bash
# timeout: 600
#
# security_identity.sh - identities and forward secrecy (protocol version 2):
#   - misbinding: exports A and B share one key file. A device made through
#     a forwarding proxy (`dstpeer proxy`, standing for an on-path attacker)
#     binds itself to A. When the proxy sends its connections to B, B refuses
#     the device (it asks for A), the device keeps reconnecting, a write
#     issued meanwhile waits and lands on A once the proxy points at A again,
#     and no byte of B changes. A device asking for A by name through the
#     proxy pointed at B is refused at creation, with a key and without;
#   - default identities: `<host name>:<device>` for an export, the host
#     name for a device, and what -n / --client-name set, as `list` shows;
#   - forward secrecy: a recorded aead connection between the module's two
#     nodes is not decrypted by `dstpeer decrypt-capture` with the key file;
#     one of `dstpeer client` is, given its ephemeral secret (so the tool
#     would have decrypted the first if the key file sufficed);
#   - clients with keys of their own (`--client NAME=KEYFILE[,ro]`): each
#     connects only with its own key; the read-only one gets a read-only
#     device whose writes fail; an identity without a key is refused; and
#     the read-only client, even with the other's client id, cannot fence
#     the read-write client's connection;
#   - order: a proxy drops, then swaps, one protected frame the export sends
#     (a WRITE's reply): the local node counts an integrity error,
#     reconnects and resends, and the data is right, with no IO error.
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

peer=$DST_REPO/tools/dstpeer/target/release/dstpeer
[ -x "$peer" ] || fail "$peer not built: run make dstpeer"
dir=$(mktemp -d)
dstcfg -a genkey -f "$dir/key"
sec=(--protection aead --key-file "$dir/key")
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

# proxy PORT TARGET_FILE [--record FILE]: a forwarder on 127.0.0.1:PORT to
# the address in TARGET_FILE (re-read for every connection; when it changes,
# the proxy closes the connections it carries).
proxy() {
    local port=$1 target=$2
    shift 2
    "$peer" proxy --listen "127.0.0.1:$port" --to-file "$target" "$@" \
        >"$dir/proxy-$port.log" 2>&1 &
    pids+=($!)
    # Not by connecting: the proxy records the first connection.
    for _ in $(seq 50); do
        grep -q '^proxy: listening' "$dir/proxy-$port.log" && return 0
        sleep 0.1
    done
    fail "proxy on port $port did not start: $(cat "$dir/proxy-$port.log")"
}

# export_refused PORT: clients the export on PORT refused so far.
export_refused() {
    dstcfg -a list --json | "$PYTHON" -c '
import json, sys
print(sum(e.get("refused", 0) for e in json.load(sys.stdin)
          if e["kind"] == "export" and e["port"] == int(sys.argv[1])))' "$1"
}

dd if=/dev/urandom of=/dev/ram1 bs=1M count=16 status=none
b_before=$(dev_sha /dev/ram1 16)
dstcfg -r 127.0.0.1 -p 7001 -a export -f /dev/ram0 -n exp-a "${sec[@]}"
dstcfg -r 127.0.0.1 -p 7002 -a export -f /dev/ram1 -n exp-b "${sec[@]}"

# 1. Misbinding at reconnect.
echo 127.0.0.1:7001 >"$dir/target"
proxy 7000 "$dir/target" --record "$dir/module.cap"
dev=$(dstcfg -r 127.0.0.1 -p 7000 -a local "${sec[@]}" --reconnect-delay 200)
assert_eq "$(dst_field "$dev" export)" exp-a "the export the device bound itself to"
assert_eq "$(dst_field "$dev" client)" "$(hostname)" "the device's default identity"
head -c 8M /dev/urandom >"$dir/data"
dd if="$dir/data" of="$dev" bs=1M count=4 oflag=direct status=none

refused_b=$(export_refused 7002)
echo 127.0.0.1:7002 >"$dir/target"
wait_dst_state "$dev" reconnecting 30
dd if="$dir/data" of="$dev" bs=1M skip=4 seek=4 count=4 oflag=direct status=none &
writer=$!
pids+=("$writer")
for _ in $(seq 100); do
    [ "$(export_refused 7002)" -ge $((refused_b + 3)) ] && break
    sleep 0.1
done
[ "$(export_refused 7002)" -ge $((refused_b + 3)) ] ||
    fail "export B refused $(($(export_refused 7002) - refused_b)) reconnects of the device, not 3"
kill -0 "$writer" 2>/dev/null || fail "the write finished while only export B was reachable"
in_kernel_log "refused 127.0.0.1.*another export identity" ||
    fail "export B did not log why it refused the device"
log "export B refused $(($(export_refused 7002) - refused_b)) reconnects of the device bound to A"

echo 127.0.0.1:7001 >"$dir/target"
wait "$writer" || fail "the write waiting through the redirect failed"
wait_dst_state "$dev" connected 30
assert_eq "$(dev_sha "$dev" 8)" "$(sha256sum <"$dir/data" | cut -d' ' -f1)" "data on the device"
assert_eq "$(dev_sha /dev/ram0 8)" "$(sha256sum <"$dir/data" | cut -d' ' -f1)" "data on export A"
assert_eq "$(dev_sha /dev/ram1 16)" "$b_before" "export B's data"
dstcfg -a delete -d "$(basename "$dev")"

# 2. Misbinding at creation: a device asks for A, the proxy leads to B.
echo 127.0.0.1:7002 >"$dir/target"
expect_fail dstcfg -r 127.0.0.1 -p 7000 -a local -n exp-a "${sec[@]}"
assert_contains "$ERR" "exp-a" "device asking for A, reaching B"
[ ! -e /dev/dst0 ] || fail "a refused device was left behind"
# Without a key the identity still catches the mistake.
dstcfg -r 127.0.0.1 -p 7003 -a export -f /dev/ram2 -n exp-c
dstcfg -r 127.0.0.1 -p 7004 -a export -f /dev/ram3
assert_eq "$(dstcfg -a list --json | "$PYTHON" -c '
import json, sys
print([e["name"] for e in json.load(sys.stdin) if e["kind"] == "export" and e["port"] == 7004][0])')" \
    "$(hostname):ram3" "an export's default identity"
echo 127.0.0.1:7004 >"$dir/target"
expect_fail dstcfg -r 127.0.0.1 -p 7000 -a local -n exp-c
assert_contains "$ERR" "exp-c" "keyless device asking for C, reaching D"
echo 127.0.0.1:7003 >"$dir/target"
dev=$(dstcfg -r 127.0.0.1 -p 7000 -a local -n exp-c --client-name web-1)
assert_eq "$(dst_field "$dev" client)" web-1 "a device's identity set with --client-name"
dstcfg -a delete -d "$(basename "$dev")"
assert_eq "$(dev_sha /dev/ram1 16)" "$b_before" "export B's data at the end"

# 3. Forward secrecy. The first connection the proxy carried (the device's
# queue 0, aead, with the writes above) was recorded.
kill "${pids[0]}"
if out=$("$peer" decrypt-capture --key "$dir/key" "$dir/module.cap" 2>&1); then
    fail "a recorded connection was decrypted with the key file alone: $out"
fi
assert_contains "$out" "not decrypted" "the key file alone"
log "module connection, key file only: $(tail -n 1 <<<"$out")"
echo 127.0.0.1:7001 >"$dir/target2"
proxy 7010 "$dir/target2" --record "$dir/peer.cap"
"$peer" client 127.0.0.1:7010 write 0 64K 7 "${sec[@]}" --client-name fs-test \
    --dump-secrets "$dir/secrets" >/dev/null
secret=$(awk '$1 == "e_c" { print $2 }' "$dir/secrets")
[ -n "$secret" ] || fail "dstpeer client wrote no ephemeral secret: $(cat "$dir/secrets")"
out=$("$peer" decrypt-capture --key "$dir/key" --secret "$secret" "$dir/peer.cap" 2>&1) ||
    fail "the recorded dstpeer connection was not decrypted with its secret: $out"
assert_contains "$out" "decrypted" "the key file and the ephemeral secret"
if out=$("$peer" decrypt-capture --key "$dir/key" "$dir/peer.cap" 2>&1); then
    fail "the recorded dstpeer connection was decrypted without its secret: $out"
fi

for p in 7001 7002 7003 7004; do dstcfg -r 127.0.0.1 -p "$p" -a unexport; done

# 4. Clients with keys of their own.
dstcfg -a genkey -f "$dir/web1"
dstcfg -a genkey -f "$dir/backup"
dstcfg -r 127.0.0.1 -p 7006 -a export -f /dev/ram2 -n exp-k --protection aead \
    --client web1="$dir/web1" --client backup="$dir/backup",ro
local_as() { # NAME KEYFILE [ARGS...]: a device of exp-k as client NAME
    local name=$1 key=$2
    shift 2
    dstcfg -r 127.0.0.1 -p 7006 -a local --protection aead --key-file "$key" \
        --client-name "$name" "$@"
}
web1=$(local_as web1 "$dir/web1")
dd if=/dev/urandom of="$web1" bs=1M count=4 oflag=direct status=none
assert_eq "$(blockdev --getro "$web1")" 0 "web1's device"
expect_fail local_as backup "$dir/web1"
assert_contains "$ERR" "keys differ" "backup with web1's key"
expect_fail local_as other "$dir/key"
assert_contains "$ERR" "keys differ" "an identity without a key of its own"
id=$(dst_field "$(basename "$web1")" client_id)
backup=$(local_as backup "$dir/backup" --client-id "$id")
assert_eq "$(blockdev --getro "$backup")" 1 "backup's device (read-only key)"
blockdev --setrw "$backup" || true
expect_fail dd if=/dev/zero of="$backup" bs=4k count=1 oflag=direct status=none
sleep 2
assert_eq "$(dst_field "$(basename "$web1")" state)" connected "web1 after backup connected with its id"
assert_eq "$(dst_field "$(basename "$web1")" reconnects)" 0 "web1 reconnects (not fenced by backup)"
dd if="$web1" of=/dev/null bs=1M count=4 iflag=direct status=none
assert_eq "$(dev_sha "$backup" 4)" "$(dev_sha "$web1" 4)" "backup reads what web1 wrote"
dstcfg -a delete -d "$(basename "$backup")"
dstcfg -a delete -d "$(basename "$web1")"
dstcfg -r 127.0.0.1 -p 7006 -a unexport

# 5. A dropped and a reordered frame (aead trailers are 24 bytes).
echo 127.0.0.1:7007 >"$dir/target3"
dstcfg -r 127.0.0.1 -p 7007 -a export -f /dev/ram3 -n exp-o "${sec[@]}"
for tamper in drop-frame swap-frames; do
    proxy 7008 "$dir/target3" "--$tamper" 40 --trailer 24
    # Pings every 500 ms: a swapped frame waits for the one after it.
    dev=$(dstcfg -r 127.0.0.1 -p 7008 -a local "${sec[@]}" --reconnect-delay 200 \
        --ping-interval 500)
    dd if="$dir/data" of="$dev" bs=64k count=128 oflag=direct status=none
    assert_eq "$(dev_sha "$dev" 8)" "$(sha256sum <"$dir/data" | cut -d' ' -f1)" "data after --$tamper"
    name=$(basename "$dev")
    grep -q "proxy: \(dropped\|swapped\)" "$dir/proxy-7008.log" ||
        fail "--$tamper: the proxy did not tamper: $(cat "$dir/proxy-7008.log")"
    [ "$(dst_field "$name" integrity_errors)" -ge 1 ] || fail "--$tamper: no integrity error counted"
    [ "$(dst_field "$name" reconnects)" -ge 1 ] || fail "--$tamper: no reconnect"
    assert_eq "$(dst_field "$name" io_errors)" 0 "IO errors after --$tamper"
    log "--$tamper: $(dst_field "$name" integrity_errors) integrity error(s), $(dst_field "$name" reconnects) reconnect(s), data right"
    dstcfg -a delete -d "$name"
    kill "${pids[-1]}"
    wait "${pids[-1]}" 2>/dev/null || true
done
dstcfg -r 127.0.0.1 -p 7007 -a unexport
log "ok"
