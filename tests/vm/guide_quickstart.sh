#!/usr/bin/env bash
#
# guide_quickstart.sh - the quick start of Documentation/admin-guide.md, run as
# written on two machines: every fenced block with the info string
# "sh guide-test=quickstart/STEP" is taken from the guide and run, in the
# guide's order, in the shell of the machine the guide says (tests/lib/guide.sh:
# guide_step_on). The machines are the network namespaces exp (10.9.0.1) and
# loc (10.9.0.2) joined by a veth pair, each with its own /etc/dst/dst.toml,
# /etc/fstab and /run/dst. Nothing in the blocks is substituted; only the
# guide's placeholders are set here, and systemctl is a stand-in, as systemd
# is not PID 1 in the VM: it runs the commands of the installed dst.service
# (packaging/systemd/dst.service with its @SBINDIR@ filled in) as systemd
# would, ExecStart for enable --now and start, ExecStop for stop, after the
# unit's ConditionPathExists. udev is the VM's, with packaging/udev's rules.
#
# Between the steps it asserts: the module answers; the export is listed,
# and recorded on the export node only; the device is /dev/dst0, connected,
# with the export's size, and /dev/disk/by-id/dst-EXPORT_NAME points to it;
# starting the units again creates nothing; a file written through the
# fstab line survives a remount and is on the export's disk; the upgrade of
# the export node (its service stopped and started while the local node
# writes) loses nothing, the device reconnects and goes back to the file's
# loss timeout; the shutdown removes the device (and its link), then the
# export. Then a boot in the wrong order: the local node's service starts
# first and waits (apply --wait) until the export node's starts, and the
# fstab line mounts the file again. `dstcfg monitor --json` on the local
# node sees dst0 connected, reconnected and deleted, and exits 0 on SIGINT.
# A block added to the guide's quick start without being run here fails the
# test.
# timeout: 600
# udev: yes
# The commands for the machines' shells expand there, in single quotes here.
# shellcheck disable=SC2016
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"
# shellcheck source=tests/lib/guide.sh
. "$DST_REPO/tests/lib/guide.sh"

EXPORT_DISK=/dev/ram0
EXPORT_NAME=store1:ram0
MNT=$(mktemp -d /tmp/guide-mnt.XXXXXX)
LINK=/dev/disk/by-id/dst-$EXPORT_NAME
disk_size=$(blockdev --getsize64 "$EXPORT_DISK")

# The installed unit and udev rules.
UNIT=/etc/systemd/system/dst.service
mkdir -p "$(dirname "$UNIT")" /etc/udev/rules.d
sed "s|@SBINDIR@|$(dirname "$(command -v dstcfg)")|" "$DST_REPO/packaging/systemd/dst.service" >"$UNIT"
cp "$DST_REPO/packaging/udev/60-dst.rules" /etc/udev/rules.d/
udevadm control --reload || fail "udevadm control --reload: is udevd running?"

# Two machines, each with its own /etc/dst and /etc/fstab (bound over the
# VM's by ip netns exec, so those must exist too).
netns_pair
mkdir -p /etc/dst
for m in exp loc; do
    mkdir -p "/etc/netns/$m/dst"
    grep -v dst /etc/fstab >"/etc/netns/$m/fstab" 2>/dev/null || : >"/etc/netns/$m/fstab"
    machine_start "$m"
done

# systemctl, for dst.service only: the unit's commands, in their order.
# shellcheck disable=SC2329 # run in the machines' shells
systemctl() {
    local verb=$1 unit="" arg now=0
    shift
    for arg; do
        case $arg in
            --now) now=1 ;;
            *) unit=${arg%.service}.service ;;
        esac
    done
    [ "$verb" = daemon-reload ] && return 0
    [ "$unit" = dst.service ] || { echo "systemctl stand-in: only dst.service, not '$unit'" >&2; return 1; }
    case $verb in
        enable) [ "$now" = 0 ] || unit_run ExecStart ;;
        start) unit_run ExecStart ;;
        stop) unit_run ExecStop ;;
        reload) unit_run ExecReload ;;
        *) echo "systemctl stand-in: no $verb" >&2; return 1 ;;
    esac
}
# unit_run KEY: each KEY= command of the unit, split into words as systemd
# does for these (no quotes in them), the first failure ending it.
unit_run() {
    local cond line words
    cond=$(sed -n 's/^ConditionPathExists=//p' "$UNIT")
    if [ "$1" != ExecStop ] && [ -n "$cond" ] && [ ! -e "$cond" ]; then
        echo "dst.service: condition $cond failed, not started"
        return 0
    fi
    while IFS= read -r line; do
        read -ra words <<<"$line"
        "${words[@]}" || return
    done < <(sed -n "s/^$1=//p" "$UNIT")
}
placeholders="EXPORT_ADDR=10.9.0.1 LOCAL_ADDR=10.9.0.2 EXPORT_DISK=$EXPORT_DISK EXPORT_NAME=$EXPORT_NAME MNT=$MNT"
for m in exp loc; do
    machine_run "$m" "$placeholders; UNIT=$UNIT; $(declare -f systemctl unit_run)"
done

# Events of the local node's namespace (where its device lives).
events=$DST_TEST_OUT/monitor.jsonl
ip netns exec loc dstcfg monitor --json >"$events" 2>"$DST_TEST_OUT/monitor.err" &
monitor=$!
for _ in $(seq 100); do
    grep -q 'listening for events' "$DST_TEST_OUT/monitor.err" && break
    sleep 0.2
done
grep -q 'listening for events' "$DST_TEST_OUT/monitor.err" ||
    fail "dstcfg monitor did not subscribe within 20 s: $(cat "$DST_TEST_OUT/monitor.err")"

# entries: what runs on both machines, without the counters: kind, name and
# address (each namespace lists only its own).
entries() {
    local ns
    for ns in exp loc; do
        ip netns exec "$ns" dstcfg list --json | "$PYTHON" -c '
import json, sys
for e in json.load(sys.stdin):
    print(e["kind"], e.get("device", e.get("path")), e["address"], e["port"], e["state"])'
    done
}

guide_step_on exp quickstart/status
assert_contains "$MACHINE_OUT" "wire protocol" "dstcfg status on the export node"
guide_step_on loc quickstart/status
assert_contains "$MACHINE_OUT" "wire protocol" "dstcfg status on the local node"

guide_step_on exp quickstart/export
assert_contains "$MACHINE_OUT" "created the export $EXPORT_NAME on 10.9.0.1:1025" "the export node's service"
assert_eq "$(entries)" "export $EXPORT_DISK 10.9.0.1 1025 listening" "running after the export node's service"
[ -s /run/dst-exp/applied.json ] || fail "the export node has no record of what its file made"
[ ! -e /run/dst-loc/applied.json ] || fail "the local node has a record before it applied anything"

guide_step_on loc quickstart/local
assert_contains "$MACHINE_OUT" "created a device for 10.9.0.1:1025 (export store1:ram0) (line 1): /dev/dst0" "the local node's service"
[ -b /dev/dst0 ] || fail "/dev/dst0 is not a block device"
assert_eq "$(blockdev --getsize64 /dev/dst0)" "$disk_size" "size of /dev/dst0 (the size of $EXPORT_DISK)"
assert_eq "$(dst_field dst0 state)" connected "state of dst0"
assert_eq "$(cat /sys/block/dst0/dst/state)" connected "/sys/block/dst0/dst/state"
assert_eq "$(cat /sys/block/dst0/serial)" "$EXPORT_NAME" "/sys/block/dst0/serial"
out=$(ip netns exec loc dstcfg check -d dst0) || fail "dstcfg check -d dst0 exited $? for a connected device: $out"
assert_eq "$(readlink -f "$LINK")" /dev/dst0 "$LINK"
assert_contains "$(on loc cat /etc/dst/dst.toml)" "export_name = \"$EXPORT_NAME\"" "the local node's file"
assert_contains "$(on exp cat /etc/dst/dst.toml)" "[[export]]" "the export node's file"

# Starting again (a restart, a second boot's apply) creates nothing.
before=$(entries)
machine_run exp 'systemctl start dst.service'
assert_contains "$MACHINE_OUT" "the running state matches" "the export node's service, started again"
machine_run loc 'systemctl start dst.service'
assert_contains "$MACHINE_OUT" "the running state matches" "the local node's service, started again"
assert_eq "$(entries)" "$before" "running after starting both services again"

guide_step_on loc quickstart/filesystem
want="hello from $(hostname)"
assert_eq "$(on loc cat "$MNT/hello.txt")" "$want" "the file written"
assert_contains "$(on loc cat /etc/fstab)" "$LINK $MNT ext4 _netdev,nofail,x-systemd.requires=dst.service" \
    "the local node's fstab"
! grep -q "$MNT" /etc/fstab || fail "the local node's fstab line is in the VM's /etc/fstab"
written=$(cat /sys/block/dst0/dst/bytes_written)
[ "$written" -gt 0 ] || fail "bytes_written of dst0 is $written after mkfs and a file"

guide_step_on loc quickstart/remount
assert_contains "$MACHINE_OUT" "$want" "the file after a remount"
# And from the export's disk itself: the ext4 image on ram0, read with
# debugfs (read-only, not exclusive, so while it is exported).
sync
assert_eq "$(debugfs -R 'cat /hello.txt' "$EXPORT_DISK" 2>/dev/null)" "$want" \
    "the file read from the export's disk"

# Upgrading the export node while the local node writes: 24 chunks of
# 128 KiB, direct, 0.1 s apart, the later ones through the outage.
guide_step_on loc quickstart/upgrade-hold
assert_eq "$(dst_field dst0 loss_timeout_ms)" infinite "loss timeout of dst0 for the upgrade"
head -c 3M /dev/urandom >"$DST_TEST_OUT/upgrade.data"
machine_run loc "for i in \$(seq 0 23); do
    dd if=$DST_TEST_OUT/upgrade.data of=\$MNT/written-during-upgrade bs=128k skip=\$i seek=\$i count=1 \\
        oflag=direct conv=notrunc status=none || exit 1
    sleep 0.1
done >$DST_TEST_OUT/writer.log 2>&1 &
WRITER=\$!"
sleep 0.5
guide_step_on exp quickstart/upgrade-stop
! grep -q '^export' <(entries) || fail "the export is still listed after the export node's service stopped"
[ "$(dst_field dst0 state)" != connected ] || fail "dst0 connected while its export is stopped"
sleep 1
guide_step_on exp quickstart/upgrade-start
assert_contains "$MACHINE_OUT" "wire protocol" "dstcfg status after the upgrade"
guide_step_on loc quickstart/upgrade-done
assert_eq "$(dst_field dst0 state)" connected "state of dst0 after the upgrade"
assert_eq "$(dst_field dst0 loss_timeout_ms)" 60000 "loss timeout of dst0 back to the file's"
[ "$(dst_field dst0 reconnects)" -ge 1 ] || fail "dst0 did not reconnect during the upgrade"
machine_run loc 'wait "$WRITER"'
machine_run loc 'umount "$MNT"; mount "$MNT"; sha256sum <"$MNT/written-during-upgrade"'
assert_eq "$MACHINE_OUT" "$(sha256sum <"$DST_TEST_OUT/upgrade.data")" \
    "the file written during the upgrade, read back after a remount"
assert_eq "$(dst_io_errors)" 0 "IO errors during the upgrade"

guide_step_on loc quickstart/shutdown
assert_eq "$(entries)" "export $EXPORT_DISK 10.9.0.1 1025 listening" "running after the local node's shutdown"
[ ! -e /dev/dst0 ] || fail "/dev/dst0 still exists after the local node's shutdown"
udevadm settle
[ ! -e "$LINK" ] || fail "$LINK still exists after the device was deleted"
guide_step_on exp quickstart/shutdown-export
assert_eq "$(entries)" "" "nothing left after the shutdown"
rc=0
ip netns exec loc dstcfg check -d dst0 >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "exit status of dstcfg check for a deleted device"
# Then the network, last, as systemd does.
ip -n loc link set veth-loc down
ip -n exp link set veth-exp down

# A boot in the wrong order: the local node first. Its service waits for
# the export node (apply --wait) instead of failing.
ip -n exp link set veth-exp up
ip -n loc link set veth-loc up
machine_run loc "systemctl start dst.service >$DST_TEST_OUT/boot-loc.log 2>&1 & BOOT=\$!"
sleep 3
[ ! -e /dev/dst0 ] || fail "/dev/dst0 exists before the export node's service started"
assert_contains "$(cat "$DST_TEST_OUT/boot-loc.log")" "waiting for the export node at 10.9.0.1:1025" \
    "the local node's service before the export node's"
machine_run exp 'systemctl start dst.service'
machine_run loc 'wait "$BOOT"; udevadm settle; mount "$MNT"; cat "$MNT/hello.txt"'
log "the local node's boot: $(tr '\n' '|' <"$DST_TEST_OUT/boot-loc.log")"
assert_contains "$(cat "$DST_TEST_OUT/boot-loc.log")" "created a device for 10.9.0.1:1025 (export store1:ram0) (line 1): /dev/dst0" \
    "the local node's service after the export node's"
assert_eq "$MACHINE_OUT" "$want" "the file after the boot, mounted by its fstab line"
machine_run loc 'umount "$MNT"; systemctl stop dst.service'
machine_run exp 'systemctl stop dst.service'
assert_eq "$(entries)" "" "nothing left after the second shutdown"

guide_all_run quickstart

# The monitor saw the device come, ride out the upgrade, and go.
for _ in $(seq 50); do
    [ "$(grep -c '"event": "deleted"' "$events")" -ge 2 ] && break
    sleep 0.2
done
kill -INT "$monitor"
rc=0
wait "$monitor" || rc=$?
assert_eq "$rc" 0 "exit status of dstcfg monitor after SIGINT"
log "events: $(tr '\n' ' ' <"$events")"
"$PYTHON" - "$events" <<'EOF' || fail "unexpected events from dstcfg monitor --json"
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
seen = [(e["name"], e["event"]) for e in events if e["kind"] == "device"]
for want in ("connected", "reconnected", "deleted"):
    assert ("dst0", want) in seen, (want, seen)
assert seen.index(("dst0", "connected")) < seen.index(("dst0", "reconnected")) \
    < seen.index(("dst0", "deleted")), seen
for e in events:
    assert e["time"][:2] == "20" and "T" in e["time"], e
EOF
rmdir "$MNT"
log "ok"
