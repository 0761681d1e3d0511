#!/usr/bin/env bash
#
# install_packages.sh - building and installing DST for real machines.
#
# On the host (--host, before the VM boots):
#   - scripts/check-kdir.sh passes the test kernel's tree, and refuses fake
#     trees with one message that lists every missing thing: a folder that
#     does not exist; headers without the Rust metadata (as Debian's are);
#     a 6.1 tree without GCM and keyrings, built by another rustc; an unbuilt
#     tree without Rust. `make module KDIR=<fake>` stops at that message and
#     does not set up the test kernel.
#   - `make packages KDIR=<test tree>` makes the four packages; their contents
#     go into a scratch root (dpkg-deb -x) and dst.ko builds against the
#     headers package's tree (Rust metadata included), for the same kernel.
#   - `make install DESTDIR=...` installs the expected files and
#     `make uninstall DESTDIR=...` removes them all.
# In the VM (the module not loaded first):
#   - from each scratch root: depmod -b, modprobe -d finds dst.ko (and loads
#     the packaged one), modinfo shows the generic netlink family alias,
#     dstcfg --version (and list) run;
#   - dpkg -i of the dstcfg package: man renders dstcfg(8) without warnings,
#     systemd-analyze verify accepts dst.service, the bash completion loads;
#   - its udev rules make /dev/disk/by-path/dst-127.0.0.1:1025 (and -part1
#     for a partition) and, over IPv6, by-path/dst-_0:0:0:0:0:0:0:1_:1025;
#     by-id/dst-<export> from /sys/block/dstN/serial (none for an identity
#     with a "/"); the links go when the devices are deleted;
#   - `make install` without DESTDIR: dst.ko in /lib/modules/RELEASE/updates,
#     depmod, `modprobe dst` finds it, and with the module unloaded the first
#     `dstcfg -a status` loads it (the kernel's request for the family's
#     alias); systemd-analyze verify accepts the installed unit;
#     `make uninstall` removes it all, after which modprobe dst fails.
# insmod: no
# host-part: yes
# timeout: 600
# udev: yes
set -euo pipefail
# shellcheck source=tests/lib/guest.sh
. "${DST_REPO:-.}/tests/lib/guest.sh"

out=${DST_TEST_OUT:?}
pkgroot=$out/pkgroot
destroot=$out/destroot
family_alias=net-pf-16-proto-16-family-dst

# check_refusal KDIR LINES PHRASE...: check-kdir.sh refuses KDIR with one
# message of LINES listed problems that contains every PHRASE.
check_refusal() {
    local kdir=$1 lines=$2 phrase
    shift 2
    expect_fail "$DST_REPO/scripts/check-kdir.sh" "$kdir"
    log "check-kdir $kdir refused (status $RC):"
    printf '%s\n' "$ERR" | sed 's/^/#   /'
    assert_eq "$RC" 1 "check-kdir status for $kdir"
    assert_eq "$(grep -c '^check-kdir: cannot build dst.ko against KDIR=' <<<"$ERR")" 1 \
        "header lines of the message for $kdir"
    assert_eq "$(grep -c '^  - ' <<<"$ERR")" "$lines" "problems listed for $kdir"
    for phrase in "$@"; do
        assert_contains "$ERR" "$phrase" "check-kdir message for $kdir"
    done
}

# fake_tree DIR FROM: the files of a built tree that the checks read (no
# sources, no rust/): what a distribution's headers package holds.
fake_tree() {
    local dir=$1 from=$2 f
    rm -rf "$dir"
    for f in Makefile Module.symvers include/generated/autoconf.h include/generated/utsrelease.h \
             include/generated/rustc_cfg include/config/auto.conf include/config/kernel.release \
             scripts/mod/modpost scripts/basic/fixdep scripts/target.json; do
        install -D "$from/$f" "$dir/$f"
    done
}

host_part() {
    local kdir rel f missing
    kdir=$(cat "${DST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dst}/kdir")
    rel=$(cat "$kdir/include/config/kernel.release")
    cd "$DST_REPO"

    log "pre-check of the test kernel's tree"
    scripts/check-kdir.sh "$kdir" || fail "check-kdir refused the test kernel's tree $kdir"

    check_refusal "$out/no-such-tree" 1 "no such folder"
    fake_tree "$out/fake-headers" "$kdir"
    check_refusal "$out/fake-headers" 1 "Rust metadata is missing" "rust/libkernel.rmeta" \
        "rust/libmacros.so"
    fake_tree "$out/fake-old" "$kdir"
    # Its Rust metadata present (empty stand-ins: only their names count).
    mkdir -p "$out/fake-old/rust"
    for f in "$kdir"/rust/*.rmeta "$kdir"/rust/*.so; do : >"$out/fake-old/rust/${f##*/}"; done
    echo 6.1.0-13-amd64 >"$out/fake-old/include/config/kernel.release"
    sed -i -e '/^CONFIG_CRYPTO_GCM=/d' -e '/^CONFIG_KEYS=/d' \
        -e 's/^CONFIG_RUSTC_VERSION_TEXT=.*/CONFIG_RUSTC_VERSION_TEXT="rustc 1.85.0 (4d91de4e4 2025-02-17)"/' \
        "$out/fake-old/include/config/auto.conf"
    check_refusal "$out/fake-old" 3 "kernel version 6.1.0-13-amd64" \
        "CONFIG_CRYPTO_GCM CONFIG_KEYS" "the tree was built with 'rustc 1.85.0"
    rm -rf "$out/fake-unbuilt" && mkdir -p "$out/fake-unbuilt/include/config"
    cp "$kdir/Makefile" "$out/fake-unbuilt/"
    grep -v -e '^CONFIG_RUST=' -e '^CONFIG_CRYPTO_LIB_CURVE25519=' "$kdir/include/config/auto.conf" \
        >"$out/fake-unbuilt/include/config/auto.conf"
    check_refusal "$out/fake-unbuilt" 4 "not built: no Module.symvers" "kernel version unknown" \
        "no Rust support" "CONFIG_CRYPTO_LIB_CURVE25519"

    log "make module KDIR=<fake>: the pre-check's message, no set-up"
    expect_fail make -s module KDIR="$out/fake-headers"
    assert_contains "$ERR" "Rust metadata is missing" "make module KDIR=<fake>"
    case $OUT$ERR in *"[setup]"*) fail "make module KDIR=<fake> ran the set-up: $OUT$ERR" ;; esac

    log "make packages KDIR=$kdir"
    local t0=$SECONDS
    make -s packages KDIR="$kdir" PKGDIR="$out/debs" || fail "make packages failed"
    log "make packages took $((SECONDS - t0)) s"
    for f in "linux-image-${rel}_$rel-1" "linux-headers-${rel}_$rel-1" \
             "dst-modules-${rel}_0.1.0+$rel" dstcfg_0.1.0; do
        [ -f "$out/debs/${f}_amd64.deb" ] || fail "no package $f: $(ls "$out/debs")"
    done
    rm -rf "$pkgroot" && mkdir -p "$pkgroot"
    for f in "$out"/debs/*.deb; do
        dpkg-deb -x "$f" "$pkgroot"
        log "$(basename "$f"): $(dpkg-deb -f "$f" Package Version Depends | tr '\n' ' ')"
    done
    assert_eq "$(dpkg-deb -f "$out/debs/dst-modules-${rel}_0.1.0+${rel}_amd64.deb" Depends)" \
        "linux-image-$rel" "dst-modules' dependency"
    missing=""
    for f in "boot/vmlinuz-$rel" "boot/config-$rel" "lib/modules/$rel/modules.builtin" \
             "lib/modules/$rel/updates/dst.ko" "usr/src/linux-headers-$rel/rust/libkernel.rmeta" \
             "usr/src/linux-headers-$rel/rust/libmacros.so" "usr/src/linux-headers-$rel/Module.symvers" \
             usr/sbin/dstcfg usr/share/man/man8/dstcfg.8.gz \
             usr/share/bash-completion/completions/dstcfg usr/share/zsh/vendor-completions/_dstcfg \
             usr/share/fish/vendor_completions.d/dstcfg.fish usr/lib/systemd/system/dst.service \
             usr/lib/udev/rules.d/60-dst.rules usr/share/doc/dstcfg/admin-guide.md; do
        [ -e "$pkgroot/$f" ] || missing="$missing $f"
    done
    [ -z "$missing" ] || fail "not in the packages:$missing"
    assert_eq "$(readlink "$pkgroot/lib/modules/$rel/build")" "/usr/src/linux-headers-$rel" \
        "the headers package's build link"
    assert_contains "$(cat "$pkgroot/usr/lib/systemd/system/dst.service")" \
        "ExecStart=/usr/sbin/dstcfg apply" "the packaged unit"

    log "dst.ko against the headers package's tree"
    rm -rf "$out/hdrbuild" && mkdir -p "$out/hdrbuild"
    git ls-files -z Kbuild dst include | xargs -0 cp --parents -t "$out/hdrbuild"
    make -s -C "$pkgroot/usr/src/linux-headers-$rel" M="$out/hdrbuild" modules ||
        fail "dst.ko does not build against the packaged headers"
    assert_eq "$(/sbin/modinfo -F vermagic "$out/hdrbuild/dst.ko" | awk '{ print $1 }')" "$rel" \
        "vermagic of dst.ko built against the packaged headers"
    rm -rf "$out/hdrbuild" "$pkgroot/usr/src"

    log "make install DESTDIR=..., make uninstall DESTDIR=..."
    rm -rf "$destroot"
    make -s install DESTDIR="$destroot" >"$out/install.log" || fail "make install DESTDIR failed"
    missing=""
    for f in "lib/modules/$rel/updates/dst.ko" usr/local/sbin/dstcfg usr/local/share/man/man8/dstcfg.8 \
             usr/local/share/bash-completion/completions/dstcfg usr/local/share/zsh/site-functions/_dstcfg \
             usr/local/share/fish/vendor_completions.d/dstcfg.fish \
             usr/local/lib/systemd/system/dst.service usr/local/lib/udev/rules.d/60-dst.rules \
             usr/local/share/doc/dst/README.md; do
        [ -e "$destroot/$f" ] || missing="$missing $f"
    done
    [ -z "$missing" ] || fail "not installed by make install DESTDIR:$missing"
    assert_contains "$(cat "$destroot/usr/local/lib/systemd/system/dst.service")" \
        "ExecStart=/usr/local/sbin/dstcfg apply" "the unit installed with PREFIX=/usr/local"
    assert_contains "$(cat "$out/install.log")" "depmod not run" "make install DESTDIR output"
    make -s uninstall DESTDIR="$destroot" >/dev/null || fail "make uninstall DESTDIR failed"
    f=$(find "$destroot" -type f)
    [ -z "$f" ] || fail "make uninstall left: $f"
    make -s install DESTDIR="$destroot" PREFIX=/opt/dst >/dev/null
    [ -x "$destroot/opt/dst/sbin/dstcfg" ] || fail "make install PREFIX=/opt/dst: no /opt/dst/sbin/dstcfg"
    make -s uninstall DESTDIR="$destroot" PREFIX=/opt/dst >/dev/null
    make -s install DESTDIR="$destroot" >/dev/null
    log "host part ok"
}

if [ "${1:-}" = --host ]; then
    host_part
    exit 0
fi

# Progress lines carry the seconds since the start (steps are slow under
# emulation; this shows which).
log() { printf '# [%3d s] %s\n' "$SECONDS" "$*"; }
rel=$(uname -r)
! dst_loaded || fail "dst is loaded before the test (insmod: no)"

# A. The module and dstcfg from each scratch root. Loading dst.ko takes
# seconds under emulation (its crypto self-test): it is loaded from the
# packages' root and kept for the udev part; modprobe only resolves the
# make install one (dry run), which part D loads for real.
depmod -b "$destroot" "$rel" 2>"$DST_TEST_OUT/depmod.log" || fail "depmod -b $destroot failed"
assert_contains "$(modprobe -n -v -d "$destroot" dst)" "insmod $destroot/lib/modules/$rel/updates/dst.ko" \
    "modprobe -n -v -d $destroot dst"
assert_contains "$(modinfo -b "$destroot" -F alias dst)" "$family_alias" "modinfo alias of $destroot's dst.ko"
assert_eq "$("$destroot/usr/local/sbin/dstcfg" --version)" "dstcfg 0.1.0" "$destroot/usr/local/sbin/dstcfg --version"
log "$destroot: modprobe -n -d resolves dst.ko, modinfo alias and dstcfg --version ok"
depmod -b "$pkgroot" "$rel" || fail "depmod -b $pkgroot failed"
modprobe -d "$pkgroot" dst || fail "modprobe -d $pkgroot dst failed"
dst_loaded || fail "modprobe -d $pkgroot dst: /sys/module/dst missing"
assert_contains "$(modinfo -b "$pkgroot" -F alias dst)" "$family_alias" "modinfo alias of $pkgroot's dst.ko"
assert_eq "$("$pkgroot/usr/sbin/dstcfg" --version)" "dstcfg 0.1.0" "$pkgroot/usr/sbin/dstcfg --version"
"$pkgroot/usr/sbin/dstcfg" -a list >/dev/null || fail "$pkgroot/usr/sbin/dstcfg -a list failed"
log "$pkgroot: modprobe -d, modinfo alias, dstcfg --version and list ok"

# B. The dstcfg package installed for real.
# man-db's trigger would index every man page (minutes under emulation).
rm -f /var/lib/man-db/auto-update
dpkg -i "$out"/debs/dstcfg_*.deb >"$DST_TEST_OUT/dpkg.log" 2>&1 ||
    fail "dpkg -i dstcfg failed: $(tail -n 5 "$DST_TEST_OUT/dpkg.log")"
# The system's PATH: the test's own PATH starts with the checkout's build
# folder, whose man/ man would find first.
syspath=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
log "dpkg -i dstcfg done"
assert_eq "$(PATH=$syspath command -v dstcfg)" /usr/sbin/dstcfg "dstcfg on the system's PATH"
assert_eq "$(/usr/sbin/dstcfg --version)" "dstcfg 0.1.0" "/usr/sbin/dstcfg --version"
assert_eq "$(PATH=$syspath man -w dstcfg)" /usr/share/man/man8/dstcfg.8.gz "man -w dstcfg"
man_err=$(MANWIDTH=80 man --warnings -l /usr/share/man/man8/dstcfg.8.gz 2>&1 >"$DST_TEST_OUT/man.txt") ||
    fail "man -l dstcfg.8.gz failed: $man_err"
[ -z "$man_err" ] || fail "man --warnings -l dstcfg.8.gz: $man_err"
assert_contains "$(cat "$DST_TEST_OUT/man.txt")" "dstcfg - " "the rendered man page's NAME"
log "man page: $(wc -l <"$DST_TEST_OUT/man.txt") lines, no warnings"
log "man page checked"
verify=$(PATH=$syspath systemd-analyze verify /usr/lib/systemd/system/dst.service 2>&1) ||
    fail "systemd-analyze verify dst.service: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify dst.service says: $verify"
bash -c '. /usr/share/bash-completion/completions/dstcfg && complete -p dstcfg' >/dev/null ||
    fail "the bash completion does not register for dstcfg"
log "dpkg -i dstcfg: dstcfg, man, systemd-analyze verify, bash completion ok"

# C. Its udev rules.
udevadm control --reload
dstcfg -r 127.0.0.1 -a export -f /dev/ram0 >/dev/null
dstcfg -r ::1 -a export -f /dev/ram1 >/dev/null
dev4=$(dstcfg -r 127.0.0.1 -a local)
dev6=$(dstcfg -r ::1 -a local)
udevadm settle
link_of() { readlink "$1" 2>/dev/null || echo "(no link)"; }
assert_eq "$(link_of /dev/disk/by-path/dst-127.0.0.1:1025)" "../../${dev4#/dev/}" "by-path link over IPv4"
assert_eq "$(link_of /dev/disk/by-path/dst-_0:0:0:0:0:0:0:1_:1025)" "../../${dev6#/dev/}" \
    "by-path link over IPv6 (peer $(cat "/sys/block/${dev6#/dev/}/dst/peer"))"
# One Linux partition from sector 2048 to the end, as an MBR (no
# partitioning tool in the image).
"$PYTHON" - "$dev4" "$(blockdev --getsz "$dev4")" <<'EOF_MBR'
import struct, sys
dev, sectors = sys.argv[1], int(sys.argv[2])
mbr = bytearray(512)
mbr[446:462] = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x83, b"\0\0\0", 2048, sectors - 2048)
mbr[510:512] = b"\x55\xaa"
with open(dev, "r+b") as f:
    f.write(mbr)
EOF_MBR
blockdev --rereadpt "$dev4"
udevadm settle
assert_eq "$(link_of /dev/disk/by-path/dst-127.0.0.1:1025-part1)" "../../${dev4#/dev/}p1" "by-path link of the partition"
bad=$(udevadm test "/sys/block/${dev4#/dev/}" 2>&1 | grep -i '60-dst.rules' | grep -iE 'invalid|error|fail|unknown|ignor' || true)
[ -z "$bad" ] || fail "udevadm test complains about 60-dst.rules: $bad"
serial=$(cat "/sys/block/${dev4#/dev/}/serial")
assert_eq "$(link_of "/dev/disk/by-id/dst-$serial")" "../../${dev4#/dev/}" "by-id link of export $serial"
assert_eq "$(link_of "/dev/disk/by-id/dst-$serial-part1")" "../../${dev4#/dev/}p1" "by-id link of the partition"
dstcfg -r 127.0.0.1 -p 1026 -a export -f /dev/ram2 -n rack1/disk2 >/dev/null
devs=$(dstcfg -r 127.0.0.1 -p 1026 -a local)
udevadm settle
assert_eq "$(link_of /dev/disk/by-path/dst-127.0.0.1:1026)" "../../${devs#/dev/}" "by-path link of rack1/disk2"
[ ! -e /dev/disk/by-id/dst-rack1 ] || fail "an identity with a / made a by-id folder"
dstcfg -a delete -d "$devs" >/dev/null
dstcfg -r 127.0.0.1 -p 1026 -a unexport >/dev/null
log "udev: by-id/dst-$serial and its -part1 link ok; none for rack1/disk2"
log "udev: by-path links for IPv4, IPv6 and a partition ok"
dstcfg -a delete -d "$dev4" >/dev/null
dstcfg -a delete -d "$dev6" >/dev/null
dstcfg -r 127.0.0.1 -a unexport >/dev/null
dstcfg -r ::1 -a unexport >/dev/null
udevadm settle
[ ! -e /dev/disk/by-path/dst-127.0.0.1:1025 ] || fail "by-path link left after the device was deleted"
[ ! -e "/dev/disk/by-id/dst-$serial" ] || fail "by-id link left after the device was deleted"
modprobe -r -d "$pkgroot" dst

# D. make install for real, and the family alias loading the module.
mods=$(readlink -f "/lib/modules/$rel")
if [ -L "/lib/modules/$rel" ]; then
    # virtme-ng links the modules folder to the read-only kernel tree: a
    # writable copy takes its place.
    rm "/lib/modules/$rel"
    cp -a "$mods" "/lib/modules/$rel"
fi
log "make install"
make -s -C "$DST_REPO" install >"$DST_TEST_OUT/make-install.log" 2>&1 ||
    fail "make install failed: $(tail -n 5 "$DST_TEST_OUT/make-install.log")"
assert_contains "$(cat "$DST_TEST_OUT/make-install.log")" "depmod -a $rel" "make install output"
[ -f "/lib/modules/$rel/updates/dst.ko" ] || fail "make install: no /lib/modules/$rel/updates/dst.ko"
assert_contains "$(modprobe -n -v dst)" "insmod /lib/modules/$rel/updates/dst.ko" "modprobe -n -v dst"
/usr/local/sbin/dstcfg -a status >"$DST_TEST_OUT/status.log" 2>&1 ||
    fail "dstcfg -a status with the module not loaded failed: $(cat "$DST_TEST_OUT/status.log")"
dst_loaded || fail "dstcfg -a status succeeded but dst is not loaded"
log "the first dstcfg -a status loaded dst.ko (alias $family_alias)"
verify=$(PATH=$syspath systemd-analyze verify /usr/local/lib/systemd/system/dst.service 2>&1) ||
    fail "systemd-analyze verify of the unit make install installed: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify of the unit make install installed says: $verify"
rmmod dst
make -s -C "$DST_REPO" uninstall >"$DST_TEST_OUT/make-uninstall.log" 2>&1 || fail "make uninstall failed"
for f in "/lib/modules/$rel/updates/dst.ko" /usr/local/sbin/dstcfg /usr/local/lib/systemd/system/dst.service \
         /usr/local/lib/udev/rules.d/60-dst.rules /usr/local/share/man/man8/dstcfg.8; do
    [ ! -e "$f" ] || fail "make uninstall left $f"
done
expect_fail modprobe dst
log "make install, modprobe, auto-load, make uninstall ok"
log "ok"
