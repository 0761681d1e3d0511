#!/usr/bin/env bash
#
# setup.sh - install everything DST needs on a fresh Debian 12 machine and build
# the test kernel. Idempotent: each step checks whether it is already done, and
# the built kernel tree is cached outside the checkout, keyed by kernel version
# and configuration hash.
#
# usage: scripts/setup.sh [--production]
#
#   --production  build the production kernel instead: the same source and
#                 steps, configured with kernel/required.config and
#                 kernel/production.config (no debug options) in place of
#                 kernel/dst.config; for `make packages` (and `make bench`)
#
# Environment:
#   DST_CACHE   cache folder (default: $XDG_CACHE_HOME/dst or ~/.cache/dst)
#   DST_JOBS    make -j for the kernel build (default: nproc)
#
# Prints the kernel tree to use (KDIR) as the last line of output on success, and
# records it in $DST_CACHE/kdir (the production kernel's in
# $DST_CACHE/kdir-production).
set -euo pipefail

flavour=test
case ${1:-} in
    "") ;;
    --production) flavour=production ;;
    *) echo "usage: setup.sh [--production]" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${DST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dst}
jobs=${DST_JOBS:-$(nproc)}
mkdir -p "$cache"

log() { printf '[setup] %s\n' "$*" >&2; }
sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. Debian packages -----------------------------------------------------------
pkgs=(build-essential gcc make flex bison bc libelf-dev libssl-dev cpio kmod
      libclang-19-dev clang-19 xz-utils rsync fio nbdkit nbd-client nvme-cli
      xfsprogs e2fsprogs iproute2 mdadm lvm2 dmsetup busybox-static dwarves udev)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    sudo_ apt-get update -qq >&2
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# The Debian mirror this machine already uses (deb822 or one-line sources);
# the throw-away apt configurations below point at it.
debian_mirror() {
    local m
    m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$m" ] || m=$(awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
    [ -n "$m" ] || { log "no Debian mirror found in the apt sources"; exit 1; }
    echo "$m"
}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

# QEMU comes from bookworm-backports (10.x): it matches the machine's qemu-utils
# from backports, which bookworm's qemu-system-x86 7.2 would uninstall. The
# system's own sources plus backports are used through a throw-away apt
# configuration; the system's configuration is not changed.
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    log "installing qemu-system-x86 from bookworm-backports"
    bpo="$cache/apt-bpo"
    rm -rf "$bpo/parts" && mkdir -p "$bpo/lists/partial" "$bpo/parts"
    cp /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list "$bpo/parts/" 2>/dev/null || true
    [ ! -f /etc/apt/sources.list ] || cp /etc/apt/sources.list "$bpo/parts/system.list"
    echo "deb [signed-by=$keyring] $(debian_mirror) bookworm-backports main" > "$bpo/parts/bpo.list"
    bopts=(-o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts="$bpo/parts"
           -o Dir::State::Lists="$bpo/lists")
    sudo_ apt-get "${bopts[@]}" update -qq >&2
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get "${bopts[@]}" install -y -qq \
        --no-install-recommends -t bookworm-backports qemu-system-x86 >&2
fi

# 2. Rust toolchain pieces -----------------------------------------------------
if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
    log "adding rustup component rust-src"
    rustup component add rust-src >&2
fi
bindgen_version=0.72.1
if ! bindgen --version 2>/dev/null | grep -q "$bindgen_version"; then
    log "installing bindgen-cli $bindgen_version"
    cargo install bindgen-cli --version "$bindgen_version" --locked >&2
fi

# 3. virtme-ng -----------------------------------------------------------------
if ! command -v vng >/dev/null 2>&1; then
    log "installing virtme-ng"
    python3 -m pip install -q virtme-ng >&2
fi

# 4. Linux 7.2 source ----------------------------------------------------------
# Debian ships the source as a .deb in sid/forky/trixie-backports; fetch it with a
# throw-away apt configuration so the system's sources stay untouched. Whatever
# 7.2.x the first suite serves is accepted and recorded.
src_tar="$cache/src/linux-source-7.2.tar.xz"
if [ ! -f "$src_tar" ]; then
    apt_dir="$cache/apt"
    mkdir -p "$apt_dir/lists/partial" "$cache/src"
    got=""
    for suite in sid forky trixie-backports; do
        echo "deb [signed-by=$keyring] $(debian_mirror) $suite main" > "$apt_dir/sources.list"
        aopts=(-o Dir::Etc::sourcelist="$apt_dir/sources.list" -o Dir::Etc::sourceparts=/dev/null
               -o Dir::State::Lists="$apt_dir/lists" -o APT::Get::List-Cleanup=0)
        rm -f "$apt_dir"/linux-source-7.2_*.deb
        if apt-get "${aopts[@]}" update -qq >/dev/null 2>&1 &&
           (cd "$apt_dir" && apt-get "${aopts[@]}" download linux-source-7.2 >/dev/null 2>&1); then
            got=$suite; break
        fi
        log "linux-source-7.2 not available from $suite, trying the next suite"
    done
    [ -n "$got" ] || { log "could not download linux-source-7.2 from any suite"; exit 1; }
    deb=$(ls "$apt_dir"/linux-source-7.2_*.deb | head -1)
    log "fetched $(basename "$deb") from $got"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -O ./usr/src/linux-source-7.2.tar.xz > "$src_tar.tmp"
    mv "$src_tar.tmp" "$src_tar"
    basename "$deb" > "$cache/src/deb-name"
    tar -xJOf "$src_tar" linux-source-7.2/Makefile | awk '
        /^VERSION =/ {v=$3} /^PATCHLEVEL =/ {p=$3} /^SUBLEVEL =/ {s=$3} END {print v "." p "." s}' \
        > "$cache/src/version"
    rm -f "$deb"
fi

# 5. Kernel configuration and build ---------------------------------------------
# The tree is built in place (out-of-tree modules build against it with
# make -C KDIR M=...). The cache key is the kernel version plus a hash of the
# config fragments: editing kernel/dst.config yields a fresh build. The
# production kernel takes the same steps with its own fragments, key, folder
# and record.
kver=$(cat "$cache/src/version")
if [ "$flavour" = test ]; then
    frags=("$here/kernel/dst.config")
    key=$(sha256sum "${frags[0]}" | cut -c1-12)
    kdir="$cache/build/linux-$kver-$key"
    record="$cache/kdir"
else
    frags=("$here/kernel/required.config" "$here/kernel/production.config")
    key=$(cat "${frags[@]}" | sha256sum | cut -c1-12)
    kdir="$cache/build/linux-$kver-production-$key"
    record="$cache/kdir-production"
fi
if [ ! -f "$kdir/.dst-built" ]; then
    log "building the $flavour kernel Linux $kver (config $key) in $kdir: a one-time cost per machine"
    # Unpacked beside its final place, so that two set-ups (test and
    # production) never share a folder.
    rm -rf "$kdir" "$kdir.unpack" && mkdir -p "$kdir.unpack"
    tar -xJf "$src_tar" -C "$kdir.unpack"
    mv "$kdir.unpack/linux-source-7.2" "$kdir" && rmdir "$kdir.unpack"
    (cd "$kdir" && vng --kconfig >/dev/null 2>&1)
    (cd "$kdir" && scripts/kconfig/merge_config.sh -m .config "${frags[@]}" >/dev/null &&
        make -s olddefconfig >/dev/null)
    for frag in "${frags[@]}"; do
        "$here/scripts/check-config.sh" "$frag" "$kdir/.config"
    done
    start=$(date +%s)
    if ! make -C "$kdir" -j"$jobs" bzImage modules >"$kdir/build.log" 2>&1; then
        tail -50 "$kdir/build.log" >&2; log "kernel build failed (log: $kdir/build.log)"; exit 1
    fi
    secs=$(( $(date +%s) - start ))
    echo "$secs" > "$kdir/.dst-build-seconds"
    log "kernel built in $((secs / 60)) min $((secs % 60)) s"
    touch "$kdir/.dst-built"
fi

log "versions: kernel $kver ($(cat "$cache/src/deb-name" 2>/dev/null)), $(rustc --version), \
bindgen $(bindgen --version 2>/dev/null | awk '{print $2}'), $(clang-19 --version | head -1), \
$(qemu-system-x86_64 --version | head -1), virtme-ng $(vng --version 2>&1 | awk '{print $NF}')"
echo "$kdir" > "$record"
echo "$kdir"
