#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# packages.sh - Debian packages of DST for real machines (`make packages`).
#
# usage: scripts/packages.sh      (make packages [KDIR=/path] [PKGDIR=/path])
#
# Builds, from the kernel tree KDIR (default: the production kernel, built
# and cached by `scripts/setup.sh --production`), into PKGDIR (default:
# packages/ in the repository; emptied first):
#
#   linux-image-RELEASE     the kernel, its modules and configuration
#   linux-headers-RELEASE   what an out-of-tree module build needs, the Rust
#                           metadata included (rust/*.rmeta and the macro
#                           libraries, which Debian's own headers lack);
#                           /lib/modules/RELEASE/build points at it
#   dst-modules-RELEASE     dst.ko for that kernel, built from a clean copy of
#                           the module's sources (the checkout's own build is
#                           left alone); depmod when installed or removed
#   dstcfg                  dstcfg, its man page, completions, the systemd
#                           unit, the udev rules, the example configuration
#                           and the documentation (scripts/install.sh)
#
# Nothing is written into KDIR. Install on each machine with
# `apt install ./linux-image-*.deb ./dst-modules-*.deb ./dstcfg_*.deb`
# (add linux-headers to build modules there).
#
# Environment: KDIR, PKGDIR; DST_DEB_COMPRESS (dpkg-deb compression, default
# zstd); DST_CACHE as for scripts/setup.sh.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${PKGDIR:-$repo/packages}
compress=${DST_DEB_COMPRESS:-zstd}
log() { printf '[packages] %s\n' "$*" >&2; }
die() { printf 'packages.sh: %s\n' "$*" >&2; exit 1; }

kdir=${KDIR:-}
if [ -z "$kdir" ]; then
    log "no KDIR: using the production kernel (scripts/setup.sh --production)"
    kdir=$("$repo/scripts/setup.sh" --production | tail -n 1)
fi
kdir=$(cd "$kdir" && pwd)
"$repo/scripts/check-kdir.sh" "$kdir" >&2
rel=$(head -n 1 "$kdir/include/config/kernel.release")
arch=$(dpkg --print-architecture)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/tools/dstcfg/Cargo.toml" | head -n 1)
kversion=$rel-1
maintainer="DST developers <dst@localhost>"

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/*.deb
work=$(mktemp -d "${TMPDIR:-/tmp}/dst-packages.XXXXXX")
trap 'rm -rf "$work"' EXIT

# deb NAME VERSION SECTION DEPENDS DESCRIPTION: control file for the staged
# root $work/NAME, then the package in $out.
deb() {
    local name=$1 ver=$2 section=$3 depends=$4 desc=$5 root=$work/$1
    mkdir -p "$root/DEBIAN"
    {
        echo "Package: $name"
        echo "Version: $ver"
        echo "Architecture: $arch"
        echo "Maintainer: $maintainer"
        echo "Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)"
        [ -z "$depends" ] || echo "Depends: $depends"
        echo "Section: $section"
        echo "Priority: optional"
        printf 'Description: %s\n' "$desc"
    } >"$root/DEBIAN/control"
    dpkg-deb --root-owner-group -Z"$compress" --build "$root" "$out/${name}_${ver}_$arch.deb" >/dev/null
    log "built ${name}_${ver}_$arch.deb ($(du -h "$out/${name}_${ver}_$arch.deb" | cut -f1))"
}

# maint_script NAME SCRIPT BODY: a maintainer script of the staged package.
maint_script() {
    mkdir -p "$work/$1/DEBIAN"
    printf '#!/bin/sh\nset -e\n%s\nexit 0\n' "$3" >"$work/$1/DEBIAN/$2"
    chmod 755 "$work/$1/DEBIAN/$2"
}

# 1. The kernel: image, modules (with their depmod files), configuration.
img=linux-image-$rel
root=$work/$img
mkdir -p "$root/boot"
image=$(make -s -C "$kdir" image_name)
cp "$kdir/$image" "$root/boot/vmlinuz-$rel"
cp "$kdir/System.map" "$root/boot/System.map-$rel"
cp "$kdir/.config" "$root/boot/config-$rel"
make -s -C "$kdir" INSTALL_MOD_PATH="$root" INSTALL_MOD_STRIP=1 modules_install >/dev/null
# The links into the build tree belong to the headers package, if to any.
rm -f "$root/lib/modules/$rel/build" "$root/lib/modules/$rel/source"
# The distribution's kernel hooks (initramfs, boot loader), as the kernel's
# own bindeb-pkg runs them.
for script in postinst postrm preinst prerm; do
    maint_script "$img" "$script" "export DEB_MAINT_PARAMS=\"\$*\"
export INITRD=$(grep -q '^CONFIG_BLK_DEV_INITRD=y' "$kdir/.config" && echo Yes || echo No)
test -d /etc/kernel/$script.d && run-parts --arg=$rel --arg=/boot/vmlinuz-$rel /etc/kernel/$script.d"
done
deb "$img" "$kversion" kernel "" "Linux $rel, configured for DST
 The Linux kernel the DST module packages are built for: Rust support and
 the block, network and crypto options dst.ko needs."

# 2. Headers for out-of-tree modules, with the Rust metadata.
hdr=linux-headers-$rel
hroot=$work/$hdr/usr/src/$hdr
# The kernel's own list of those files (as its bindeb-pkg uses it), run with
# the variables Kbuild would give it.
# shellcheck disable=SC2016 # expanded by make and the shell it runs
srcarch=$(make -s -C "$kdir" --no-print-directory run-command KBUILD_RUN_COMMAND='echo $$SRCARCH')
(cd "$kdir" && srctree=. SRCARCH=$srcarch CC=gcc HOSTCC=gcc MAKE=make \
    sh scripts/package/install-extmod-build "$hroot")
cp "$kdir/.config" "$hroot/.config"
mkdir -p "$hroot/rust"
cp "$kdir"/rust/*.rmeta "$kdir"/rust/*.so "$hroot/rust/"
[ ! -f "$kdir/rust/helpers/helpers_module.bc" ] ||
    install -D -m 644 "$kdir/rust/helpers/helpers_module.bc" "$hroot/rust/helpers/helpers_module.bc"
mkdir -p "$work/$hdr/lib/modules/$rel"
ln -s "/usr/src/$hdr" "$work/$hdr/lib/modules/$rel/build"
"$repo/scripts/check-kdir.sh" "$hroot" >/dev/null || die "the staged headers fail the pre-check"
deb "$hdr" "$kversion" kernel "" "Headers of Linux $rel, with its Rust metadata
 What building an out-of-tree module against Linux $rel needs, including
 the Rust crates' metadata (rust/*.rmeta) and procedural macro libraries
 that out-of-tree Rust modules such as dst.ko are compiled against."

# 3. dst.ko, built against KDIR from a clean copy of its sources.
src=$work/src
mkdir -p "$src"
(cd "$repo" && tar -c --exclude='*.o' --exclude='.*.cmd' --exclude='*.ko' --exclude='*.mod' \
    --exclude='*.mod.c' --exclude='*.rmeta' --exclude='*.d' --exclude=modules.order \
    --exclude=Module.symvers Kbuild dst include) | tar -x -C "$src"
log "building dst.ko against $kdir"
make -s -C "$kdir" M="$src" modules >&2
mod=dst-modules-$rel
DESTDIR=$work/$mod DST_KO=$src/dst.ko "$repo/scripts/install.sh" install module >/dev/null
for script in postinst postrm; do
    maint_script "$mod" "$script" "if [ -d /lib/modules/$rel/kernel ]; then depmod -a $rel; fi"
done
deb "$mod" "$version+${rel//-/.}" kernel "$img" "DST network block device module for Linux $rel
 dst.ko: an export node serves a block device over TCP, a local node uses it
 as /dev/dstN. Loads by itself when dstcfg first asks for it."

# 4. dstcfg and everything it ships.
log "building dstcfg"
make -s -C "$repo" dstcfg >&2
cfg=dstcfg
DESTDIR=$work/$cfg PREFIX=/usr UNITDIR=/usr/lib/systemd/system UDEVRULESDIR=/usr/lib/udev/rules.d \
    ZSHCOMPDIR=/usr/share/zsh/vendor-completions DOCDIR=/usr/share/doc/dstcfg MANCOMPRESS=1 \
    "$repo/scripts/install.sh" install tools >/dev/null
maint_script "$cfg" postinst "if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
udevadm control --reload 2>/dev/null || true"
maint_script "$cfg" postrm "if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi"
deb "$cfg" "$version" admin "libc6" "configuration tool of DST, the network block device
 dstcfg creates and removes DST exports and devices over generic netlink,
 applies /etc/dst/dst.toml at boot (dst.service) and reports their state.
 Also: man page, bash/zsh/fish completions, udev rules for
 /dev/disk/by-id/dst-* and /dev/disk/by-path/dst-* links."

log "packages for Linux $rel in $out"
ls -1 "$out"/*.deb
