#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# install.sh - install (or remove) what `make` built: `make install`,
# `make uninstall`, and the contents of the packages of `make packages`.
#
# usage: scripts/install.sh install|uninstall [module|tools]...
#
#   module  dst.ko as MODDIR/RELEASE/updates/dst.ko, then depmod
#   tools   dstcfg, its man page, bash/zsh/fish completions, the systemd
#           unit, the udev rules, the example configuration and the docs
#   (no part named: both)
#
# Environment (make passes its variables of the same names):
#   DESTDIR        staging root prepended to every path (default: none). With
#                  DESTDIR, depmod and the reloads of systemd and udev are left
#                  to whoever installs the staged files on the target system.
#   PREFIX         /usr/local; dstcfg goes to PREFIX/sbin
#   DST_KO         the module to install (default: dst.ko of the checkout)
#   MODDIR         /lib/modules
#   KERNELRELEASE  the kernel dst.ko is for (default: the release in dst.ko's
#                  vermagic, i.e. the kernel tree it was built against)
#   UNITDIR        PREFIX/lib/systemd/system
#   UDEVRULESDIR   PREFIX/lib/udev/rules.d
#   MANDIR         PREFIX/share/man
#   BASHCOMPDIR    PREFIX/share/bash-completion/completions
#   ZSHCOMPDIR     PREFIX/share/zsh/site-functions
#   FISHCOMPDIR    PREFIX/share/fish/vendor_completions.d
#   DOCDIR         PREFIX/share/doc/dst
#   MANCOMPRESS    1: install the man page gzip-compressed (packages do)
#
# Prints each file installed or removed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: install.sh install|uninstall [module|tools]..."
verb=$1
shift
case $verb in install | uninstall) ;; *) die "unknown action '$verb' (install or uninstall)" ;; esac
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(module tools)
for p in "${parts[@]}"; do
    case $p in module | tools) ;; *) die "unknown part '$p' (module or tools)" ;; esac
done
wants() { [[ " ${parts[*]} " == *" $1 "* ]]; }

destdir=${DESTDIR:-}
prefix=${PREFIX:-/usr/local}
moddir=${MODDIR:-/lib/modules}
unitdir=${UNITDIR:-$prefix/lib/systemd/system}
udevdir=${UDEVRULESDIR:-$prefix/lib/udev/rules.d}
mandir=${MANDIR:-$prefix/share/man}
bashdir=${BASHCOMPDIR:-$prefix/share/bash-completion/completions}
zshdir=${ZSHCOMPDIR:-$prefix/share/zsh/site-functions}
fishdir=${FISHCOMPDIR:-$prefix/share/fish/vendor_completions.d}
docdir=${DOCDIR:-$prefix/share/doc/dst}
sbindir=$prefix/sbin

ko=${DST_KO:-$repo/dst.ko}
release=/tools/dstcfg/target/release
bin=$repo$release/dstcfg
gen=$repo$release

# kernel_release: the kernel dst.ko belongs to.
kernel_release() {
    local rel=${KERNELRELEASE:-}
    if [ -z "$rel" ]; then
        [ -f "$ko" ] || die "$ko is not built: run make (or make KDIR=/path/to/tree) first, or give KERNELRELEASE"
        rel=$(/sbin/modinfo -F vermagic "$ko" | awk '{ print $1 }')
        [ -n "$rel" ] || die "cannot read the kernel release from $ko (modinfo -F vermagic)"
    fi
    echo "$rel"
}

# What goes where: "SOURCE DESTINATION MODE" per line.
tools_files() {
    local man=man8/dstcfg.8
    [ "${MANCOMPRESS:-0}" = 1 ] && man=$man.gz
    echo "$bin $sbindir/dstcfg 755"
    echo "$gen/man/dstcfg.8 $mandir/$man 644"
    echo "$gen/completions/dstcfg.bash $bashdir/dstcfg 644"
    echo "$gen/completions/_dstcfg $zshdir/_dstcfg 644"
    echo "$gen/completions/dstcfg.fish $fishdir/dstcfg.fish 644"
    echo "$repo/packaging/systemd/dst.service $unitdir/dst.service 644"
    echo "$repo/packaging/udev/60-dst.rules $udevdir/60-dst.rules 644"
    # Written by the persistent-configuration work; installed once it exists.
    if [ -f "$repo/Documentation/examples/dst.toml" ] || [ "$verb" = uninstall ]; then
        echo "$repo/Documentation/examples/dst.toml $docdir/examples/dst.toml 644"
    fi
    for doc in README.md Documentation/admin-guide.md Documentation/dstcfg.md; do
        echo "$repo/$doc $docdir/$(basename "$doc") 644"
    done
}

# put SOURCE DEST MODE: one file, with the unit's @SBINDIR@ filled in and the
# man page compressed if asked for.
put() {
    local src=$1 dest=$destdir$2 mode=$3
    [ -f "$src" ] || die "$src is missing: run make first"
    install -d -m 755 "$(dirname "$dest")"
    case $dest in
        *.service) sed "s|@SBINDIR@|$sbindir|g" "$src" >"$dest.tmp" ;;
        *.gz) gzip -9n <"$src" >"$dest.tmp" ;;
        *) cp "$src" "$dest.tmp" ;;
    esac
    chmod "$mode" "$dest.tmp"
    mv -f "$dest.tmp" "$dest"
    echo "installed $dest"
}

remove() {
    local dest=$destdir$2
    [ -e "$dest" ] || return 0
    rm -f "$dest"
    echo "removed $dest"
}

files=()
krel=""
if wants module; then
    krel=$(kernel_release)
    files+=("$ko $moddir/$krel/updates/dst.ko 644")
fi
if wants tools; then
    mapfile -t -O "${#files[@]}" files < <(tools_files)
fi

for f in "${files[@]}"; do
    # shellcheck disable=SC2086 # three words
    if [ "$verb" = install ]; then put $f; else remove $f; fi
done
# Only the folders that are DST's own.
if [ "$verb" = uninstall ]; then
    rmdir "$destdir$docdir/examples" "$destdir$docdir" 2>/dev/null || true
fi

# The running system learns of the change; a staged one, when installed.
if [ -z "$destdir" ]; then
    if [ -n "$krel" ]; then
        /sbin/depmod -a "$krel" && echo "depmod -a $krel"
    fi
    if wants tools && [ -d /run/systemd/system ]; then
        systemctl daemon-reload && echo "systemctl daemon-reload"
    fi
    if wants tools && udevadm control --reload 2>/dev/null; then
        echo "udevadm control --reload"
    fi
elif [ -n "$krel" ]; then
    echo "DESTDIR set: depmod not run (run depmod -a $krel where the files land)"
fi
