#!/usr/bin/env bash
#
# dstcfg_apply.sh - the configuration file, dstcfg apply/save/down: a file
# with module settings, two exports and two devices applies (everything
# created); applied again it changes nothing and exits 0 (no duplicates); a
# changed loss timeout changes the live device (list and sysfs), the same
# device; an entry taken out removes its device and export, and nothing made
# by hand; a bad file fails with the file, line and key named and changes
# nothing; save writes what runs; down removes what the file manages,
# devices first, and leaves what was made by hand. The older form, -a
# apply, is checked once.
# timeout: 300
set -euo pipefail
. "${DST_REPO:-.}/tests/lib/guest.sh"

dir=$(mktemp -d)
conf=$dir/dst.toml

# How many exports or devices run: count export|device.
count() {
    dstcfg list --json |
        "$PYTHON" -c 'import json, sys; print(sum(e["kind"] == sys.argv[1] for e in json.load(sys.stdin)))' "$1"
}

# What runs, without counters: kind, address, index, settings, one per line.
shape() {
    dstcfg list --json | "$PYTHON" -c '
import json, sys
for e in json.load(sys.stdin):
    print(e["kind"], e.get("address"), e.get("port"), e.get("index"), e.get("path"),
          e.get("loss_timeout_ms"), e.get("client_id"))'
}

# Made by hand before any apply: an export on port 1026 and its device
# (/dev/dst0). No apply or down may touch them.
dstcfg export -r 127.0.0.1 -p 1026 -f /dev/ram1 >/dev/null
hand=$(dstcfg local -r 127.0.0.1:1026)
assert_eq "$hand" /dev/dst0 "the device made by hand"

cat >"$conf" <<'EOF'
# Two exports of this node and a device of each (loopback).
[module]
crypto_threads = 1

[[export]]
listen = "127.0.0.1"
path = "/dev/ram0"

[[export]]
listen = "127.0.0.1:1027"
path = "/dev/ram2"
read_only = true

[[device]]
remote = "127.0.0.1"
index = 5
loss_timeout = "30s"

[[device]]
remote = "127.0.0.1:1027"
index = 6
EOF

log "first apply"
out=$(dstcfg apply -f "$conf") || fail "dstcfg apply exited $?: $out"
printf '%s\n' "$out"
assert_contains "$out" "changed the module: crypto_threads" "apply: module"
assert_contains "$out" "created the export on 127.0.0.1:1025 (/dev/ram0" "apply: export"
assert_contains "$out" "created the export on 127.0.0.1:1027 (/dev/ram2" "apply: export 2"
assert_contains "$out" ": /dev/dst5" "apply: device"
assert_contains "$out" ": /dev/dst6" "apply: device 2"
assert_eq "$(count export)" 3 "exports after apply"
assert_eq "$(count device)" 3 "devices after apply"
assert_eq "$(cat /sys/block/dst5/dst/loss_timeout_ms)" 30000 "loss timeout of dst5 (sysfs)"
assert_eq "$(cat /sys/block/dst6/dst/read_only)" 1 "dst6 of a read-only export"
threads=$(dstcfg status --json | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["crypto_threads"])')
assert_eq "$threads" 1 "crypto_threads after apply"
id5=$(dst_field dst5 client_id)

log "apply again: nothing to do"
before=$(shape)
out=$(dstcfg apply -f "$conf") || fail "second dstcfg apply exited $?: $out"
printf '%s\n' "$out"
assert_eq "$out" "$conf: the running state matches" "second apply"
assert_eq "$(shape)" "$before" "running state after the second apply"
# The -a form and --dry-run say the same.
out=$(dstcfg -a apply -f "$conf" --dry-run) || fail "dstcfg -a apply --dry-run exited $?: $out"
assert_eq "$out" "$conf: the running state matches" "apply --dry-run in sync"

log "a changed loss timeout changes live"
sed -i 's/loss_timeout = "30s"/loss_timeout = "2m"/' "$conf"
expect_fail dstcfg apply --dry-run -f "$conf"
assert_eq "$OUT" "would change /dev/dst5: loss_timeout 30s -> 2m" "apply --dry-run of the change"
assert_eq "$(cat /sys/block/dst5/dst/loss_timeout_ms)" 30000 "a dry run changes nothing"
out=$(dstcfg apply -f "$conf") || fail "dstcfg apply of the change exited $?: $out"
printf '%s\n' "$out"
assert_eq "$out" "changed /dev/dst5: loss_timeout 30s -> 2m" "apply of the change"
assert_eq "$(cat /sys/block/dst5/dst/loss_timeout_ms)" 120000 "loss timeout of dst5 (sysfs) after the change"
assert_eq "$(dst_field dst5 loss_timeout_ms)" 120000 "loss timeout of dst5 (list) after the change"
assert_eq "$(dst_field dst5 client_id)" "$id5" "dst5 is the same device (client id)"
assert_eq "$(count device)" 3 "devices after the change"

log "an entry taken out: its device and export go, nothing else"
# The file without its second export and second device.
"$PYTHON" - "$conf" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
text = re.sub(r'\[\[export\]\]\nlisten = "127.0.0.1:1027".*?\n\n', '', text, flags=re.S)
text = re.sub(r'\n\[\[device\]\]\nremote = "127.0.0.1:1027"\nindex = 6\n', '\n', text)
open(sys.argv[1], 'w').write(text)
EOF
cat "$conf"
out=$(dstcfg apply -f "$conf") || fail "dstcfg apply without the entries exited $?: $out"
printf '%s\n' "$out"
assert_contains "$out" "deleted /dev/dst6 (device for 127.0.0.1:1027)" "apply: removed device"
assert_contains "$out" "stopped the export on 127.0.0.1:1027 (/dev/ram2)" "apply: removed export"
[ ! -e /sys/block/dst6 ] || fail "/dev/dst6 still exists"
assert_eq "$(count export)" 2 "exports after taking one out"
assert_eq "$(count device)" 2 "devices after taking one out"
[ -e /sys/block/dst0 ] || fail "the device made by hand is gone"
assert_contains "$(shape)" "export 127.0.0.1 1026" "the export made by hand"

log "a bad file: the line and the key, nothing changed"
before=$(shape)
bad=$dir/bad.toml
sed 's/loss_timeout = "2m"/loss_timeout = "5ms"/; s/^crypto_threads = 1$/crypto_threads = 3/' "$conf" >"$bad"
printf '\n[[device]]\nremote = "127.0.0.1:1028"\n' >>"$bad"
line=$(grep -n 'loss_timeout' "$bad" | cut -d: -f1)
expect_fail dstcfg apply -f "$bad"
log "bad file: $ERR"
assert_eq "$RC" 1 "exit status of apply with a bad file"
assert_contains "$ERR" "$bad:$line: device #1: loss_timeout: 5 ms is out of range" "apply with a bad file"
assert_eq "$OUT" "" "nothing done with a bad file"
assert_eq "$(shape)" "$before" "running state after a bad file"
threads=$(dstcfg status --json | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["crypto_threads"])')
assert_eq "$threads" 1 "crypto_threads after a bad file"
cp "$conf" "$bad"
printf '\n[[device]]\nremote = "127.0.0.1:1028"\ncolour = "blue"\n' >>"$bad"
expect_fail dstcfg apply -f "$bad"
assert_contains "$ERR" "$bad:$(wc -l <"$bad"): device #2: colour: unknown key \`colour\`" "unknown key"
assert_eq "$(shape)" "$before" "running state after an unknown key"

log "save"
saved=$(dstcfg save -f -) || fail "dstcfg save -f - exited $?"
printf '%s\n' "$saved"
assert_contains "$saved" 'listen = "127.0.0.1:1026"' "save: the export made by hand"
assert_contains "$saved" 'index = 5' "save: dst5"
assert_contains "$saved" 'loss_timeout = "2m"' "save: dst5's loss timeout"
dstcfg save -f "$dir/saved.toml" >/dev/null || fail "dstcfg save -f FILE failed"
expect_fail dstcfg save -f "$dir/saved.toml"
assert_contains "$ERR" "exists; give --force" "save over an existing file"
# The saved file parses; what $conf manages is its, not the saved file's.
expect_fail dstcfg apply --dry-run -f "$dir/saved.toml"
assert_contains "$ERR" "is managed by $conf; left alone" "apply of the saved file"
assert_contains "$OUT" "would adopt /dev/dst0" "apply of the saved file adopts what was made by hand"

log "down"
out=$(dstcfg down -f "$conf") || fail "dstcfg down exited $?: $out"
printf '%s\n' "$out"
assert_eq "$out" "deleted /dev/dst5 (device for 127.0.0.1:1025)
stopped the export on 127.0.0.1:1025 (/dev/ram0)" "down"
assert_eq "$(count export)" 1 "exports after down"
assert_eq "$(count device)" 1 "devices after down"
[ -e /sys/block/dst0 ] || fail "down removed the device made by hand"
out=$(dstcfg down -f "$conf") || fail "second dstcfg down exited $?: $out"
assert_eq "$out" "$conf: nothing to remove" "second down"
if grep -q "$conf" /run/dst/applied.json; then fail "the record still lists $conf"; fi

dstcfg delete -d dst0 >/dev/null
dstcfg unexport -r 127.0.0.1:1026 >/dev/null
assert_eq "$(dstcfg list --json)" "[]" "nothing left"
log "ok"
