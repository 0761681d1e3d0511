#!/usr/bin/env bash
# timeout: 600
#
# security_refusals.sh - what must be refused is refused, clearly, on both
# sides, before any IO:
#   - a local node with the wrong key (AUTH_FAILED), without a key, with a
#     different mode or algorithm (MISMATCH): dstcfg fails with a message
#     saying so, no /dev/dst0 appears, the export logs the refusal and
#     counts it;
#   - an algorithm off the allow-list (weak or unknown), or hmac/aead
#     without a key: refused by dstcfg, and by the kernel for a request that
#     bypasses dstcfg, when the export is configured;
#   - the allow-list, across two network namespaces: an address that is not
#     listed is refused (NOT_ALLOWED), a read-only entry gives a read-only
#     device whose forced writes fail and leave the data unchanged;
#   - a key from the kernel keyring (a logon key, `--key-desc`) serves like
#     the key file with the same bytes; a missing one is refused clearly;
#   - the key never appears in the kernel log or in `dstcfg -a list`.
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

dir=$(mktemp -d)
dstcfg -a genkey -f "$dir/right"
dstcfg -a genkey -f "$dir/wrong"
keyhex=$(od -An -tx1 "$dir/right" | tr -d ' \n')

dstcfg -r 127.0.0.1 -a export -f /dev/ram0 --protection aead --key-file "$dir/right"

expect_fail dstcfg -r 127.0.0.1 -a local --protection aead --key-file "$dir/wrong"
assert_contains "$ERR" "keys differ" "local node with the wrong key"
expect_fail dstcfg -r 127.0.0.1 -a local
assert_contains "$ERR" "differs from the export" "local node without protection"
expect_fail dstcfg -r 127.0.0.1 -a local --protection hmac --key-file "$dir/right"
assert_contains "$ERR" "differs from the export" "local node with another mode"
expect_fail dstcfg -r 127.0.0.1 -a local --protection aead \
    --alg 'rfc7539(chacha20,poly1305)' --key-file "$dir/right"
assert_contains "$ERR" "differs from the export" "local node with another algorithm"
[ ! -e /dev/dst0 ] || fail "a refused local node left /dev/dst0 behind"
refused=$(dstcfg -a list --json | python3 -c '
import json, sys
print(sum(e.get("refused", 0) for e in json.load(sys.stdin) if e["kind"] == "export"))')
assert_eq "$refused" 4 "clients refused by the export"
in_kernel_log "refused 127.0.0.1.*keys differ" || fail "no export log line for the wrong key"

dev=$(dstcfg -r 127.0.0.1 -a local --protection aead --key-file "$dir/right")
dd if=/dev/urandom of="$dev" bs=1M count=4 oflag=direct status=none
assert_eq "$(dev_sha "$dev" 4)" "$(dev_sha /dev/ram0 4)" "data with the right key"
dstcfg -a delete -d dst0
dstcfg -r 127.0.0.1 -a unexport

# The same key as a logon key in the user keyring (add_key(2): no keyutils
# needed), which a process without a session keyring of its own (dstcfg
# here) searches: the export takes it from there, the device from the file.
"$PYTHON" - "$dir/right" <<'EOF'
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
key = open(sys.argv[1], "rb").read()
SYS_add_key, KEY_SPEC_USER_KEYRING = 248, -4
if libc.syscall(SYS_add_key, b"logon", b"dst:test", key, len(key), KEY_SPEC_USER_KEYRING) < 0:
    sys.exit(f"add_key: errno {ctypes.get_errno()}")
EOF
dstcfg -r 127.0.0.1 -a export -f /dev/ram0 --protection aead --key-desc dst:test
dev=$(dstcfg -r 127.0.0.1 -a local --protection aead --key-file "$dir/right")
dd if=/dev/urandom of="$dev" bs=1M count=4 oflag=direct status=none
assert_eq "$(dev_sha "$dev" 4)" "$(dev_sha /dev/ram0 4)" "data with the export's key from the keyring"
dstcfg -a delete -d dst0
dstcfg -r 127.0.0.1 -a unexport
expect_fail dstcfg -r 127.0.0.1 -a export -f /dev/ram0 --protection aead --key-desc dst:missing
assert_contains "$ERR" "no logon or user key" "a keyring key that does not exist"

expect_fail dstcfg -r 127.0.0.1 -a export -f /dev/ram0 --protection aead --alg 'nosuch(alg)' \
    --key-file "$dir/right"
assert_contains "$ERR" "not allowed" "unknown algorithm"
expect_fail dstcfg -r 127.0.0.1 -a export -f /dev/ram0 --protection hmac --alg 'hmac(md5)' \
    --key-file "$dir/right"
assert_contains "$ERR" "not allowed" "weak algorithm"
# The kernel's own check, without dstcfg: hmac(md5) exists in no allow-list.
out=$("$PYTHON" "$DST_REPO/tests/netlink_raw.py" --export-alg 127.0.0.1 /dev/ram0 hmac \
    'hmac(md5)' "$keyhex") || fail "raw netlink export with hmac(md5): $out"
assert_contains "$out" "algorithm not allowed" "weak algorithm, raw netlink"
expect_fail dstcfg -r 127.0.0.1 -a export -f /dev/ram0 --protection hmac
log "hmac without a key: $ERR"
[ -z "$(dstcfg -a list --json | grep -o /dev/ram0 || true)" ] || fail "a refused export was left configured"

if in_kernel_log -i "$keyhex"; then fail "the key appears in the kernel log"; fi

# Allow-list across two namespaces: exp serves, loc is 10.9.0.2.
netns_pair
dd if=/dev/urandom of=/dev/ram1 bs=1M count=8 status=none
before=$(dev_sha /dev/ram1 8)
ip netns exec exp dstcfg -r 10.9.0.1 -a export -f /dev/ram1 --allow 10.9.0.99/32
expect_fail ip netns exec loc dstcfg -r 10.9.0.1 -a local
assert_contains "$ERR" "allow-list" "unlisted address"
ip netns exec exp dstcfg -r 10.9.0.1 -a unexport

ip netns exec exp dstcfg -r 10.9.0.1 -a export -f /dev/ram1 --allow 10.9.0.0/24:ro
dev=$(ip netns exec loc dstcfg -r 10.9.0.1 -a local)
assert_eq "$(blockdev --getro "$dev")" 1 "read-only flag for a read-only entry"
blockdev --setrw "$dev" || true
expect_fail dd if=/dev/zero of="$dev" bs=4k count=16 oflag=direct status=none
log "write from a read-only client refused: $ERR"
assert_eq "$(dev_sha "$dev" 8)" "$before" "reads from a read-only client"
assert_eq "$(dev_sha /dev/ram1 8)" "$before" "backing data after refused writes"
ip netns exec loc dstcfg -a delete -d "$(basename "$dev")"
ip netns exec exp dstcfg -r 10.9.0.1 -a unexport
log "ok"
