#!/usr/bin/env bash
#
# vm.sh - boot the DST test kernel in a virtme-ng VM and run a command in it
# (or open a shell), with dst.ko loaded first.
#
# usage: scripts/vm.sh [--rwdir DIR]... [--timeout SECS] [--append KERNEL_ARGS]...
#                      [--no-udev] [--pidfile FILE] [-v|--verbose] [-- CMD...]
#
#   --rwdir DIR     give the guest write access to DIR (same path inside); repeatable
#   --timeout SECS  kill the VM after SECS seconds (exit status 124)
#   --append ARGS   extra kernel command line arguments, after the defaults
#                   ("brd.rd_nr=4 brd.rd_size=524288": 4 RAM disks of 512 MiB;
#                   a later brd.* value overrides the default); repeatable
#   --no-udev       boot without udev: no udevd, no coldplug of all devices
#                   and no wait for it to settle (about half the boot time);
#                   device nodes still appear (devtmpfs), but no /dev/disk/by-*
#                   links, no udev rules, no udevadm settle
#   --pidfile FILE  QEMU writes its process id to FILE, for a caller that
#                   stops the VM early (tests/run.sh when a boot hangs)
#   -v, --verbose   show the kernel console (vng -v; it is written to stderr)
#   CMD...          run in the guest by sh (dash), words joined by spaces (like ssh);
#                   without CMD an interactive shell is started
#
# The guest sees the host's root file system read-only (vng lays throwaway
# writable overlays over /tmp, /etc, /var, /usr, ...; only --rwdir folders write
# through to the host), starts in the repository root (the same path as on
# the host), has tools/dstcfg/target/release first on PATH and
# DST_KO=<repo>/dst.ko, DST_REPO=<repo> in its environment. The VM uses software emulation (KVM hangs
# guests on the development machines), 2 vCPUs and 2 GiB of memory.
# With --no-udev, scripts/vm-boot/systemd-tmpfiles stands in for
# systemd-tmpfiles at boot (an empty tmpfs on /tmp and a few /run folders, in
# a fraction of the time) and keeps udev from starting; see that file.
#
# Environment:
#   KDIR           kernel tree (default: the tree recorded by scripts/setup.sh
#                  in $DST_CACHE/kdir)
#   DST_CACHE      cache folder (default: $XDG_CACHE_HOME/dst or ~/.cache/dst)
#   DST_NO_INSMOD  1: do not load dst.ko before CMD
#   DST_VM_BUILD   another source tree whose dst.ko and dstcfg the guest uses
#                  (default: this repository; bench/run.sh BENCH_BASELINE)
#   DST_VM_CPUS    guest vCPUs (default 2)
#   DST_VM_MEMORY  guest memory (default 2G)
#   DST_VM_CPU     guest CPU model (default max,avx2=off; see below)
#
# Exit status: CMD's exit status; 124 if --timeout expired; 125 if the VM could
# not be set up or dst.ko failed to load.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${DST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dst}

die() { printf 'vm.sh: %s\n' "$*" >&2; exit 125; }

rwdirs=()
appends=()
timeout_s=""
pidfile=""
verbose=0
udev=1
cmd=()
while [ $# -gt 0 ]; do
    case $1 in
        --rwdir) [ $# -ge 2 ] || die "--rwdir needs a folder"; rwdirs+=("$2"); shift 2 ;;
        --rwdir=*) rwdirs+=("${1#*=}"); shift ;;
        --timeout) [ $# -ge 2 ] || die "--timeout needs seconds"; timeout_s=$2; shift 2 ;;
        --timeout=*) timeout_s=${1#*=}; shift ;;
        --append) [ $# -ge 2 ] || die "--append needs kernel arguments"; appends+=("$2"); shift 2 ;;
        --append=*) appends+=("${1#*=}"); shift ;;
        --no-udev) udev=0; shift ;;
        --pidfile) [ $# -ge 2 ] || die "--pidfile needs a file"; pidfile=$2; shift 2 ;;
        --pidfile=*) pidfile=${1#*=}; shift ;;
        -v|--verbose) verbose=1; shift ;;
        -h|--help) sed -n '3,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        --) shift; cmd=("$@"); break ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
if [ -n "$timeout_s" ] && ! [[ $timeout_s =~ ^[0-9]+$ ]]; then
    die "--timeout wants whole seconds, not '$timeout_s'"
fi
# vng joins its QEMU options into one command line and splits it again at
# spaces: an unusual path cannot go through, and the caller finds no file.
if [ -n "$pidfile" ] && ! [[ $pidfile =~ ^[A-Za-z0-9._/+-]+$ ]]; then
    printf 'vm.sh: note: the path %s is not plain: no --pidfile\n' "$pidfile" >&2
    pidfile=""
fi

# The kernel tree: $KDIR, else the one scripts/setup.sh recorded.
kdir=${KDIR:-}
if [ -z "$kdir" ] && [ -s "$cache/kdir" ]; then
    kdir=$(cat "$cache/kdir")
fi
[ -n "$kdir" ] || die "no kernel tree: set KDIR or run scripts/setup.sh (it records $cache/kdir)"
bzimage=$kdir/arch/x86/boot/bzImage
[ -f "$bzimage" ] || die "no kernel image at $bzimage (is the kernel build finished?)"
command -v vng >/dev/null 2>&1 || die "vng (virtme-ng) not found; run scripts/setup.sh"

build=${DST_VM_BUILD:-$repo}
dst_ko=$build/dst.ko
no_insmod=${DST_NO_INSMOD:-0}
if [ "$no_insmod" != 1 ] && [ ! -f "$dst_ko" ]; then
    die "$dst_ko not found: run make (or set DST_NO_INSMOD=1)"
fi

for d in "${rwdirs[@]}"; do
    [ -d "$d" ] || die "--rwdir $d: not a folder"
done

# --no-udev: the guest's init gets scripts/vm-boot first on its PATH (an
# unknown "NAME=value" kernel argument is an environment variable of init),
# and the guest's shell (sh, not bash) takes it off again. A kernel argument
# cannot hold a space: in a folder with a space or another unusual character
# the hook is left out (a slower boot, with udev). A boot with udev is
# unchanged.
boot_dir=$repo/scripts/vm-boot
boot_args=""
prelude=""
if [ "$udev" = 0 ] && [[ $boot_dir =~ ^[A-Za-z0-9._/+-]+$ ]]; then
    boot_args="PATH=$boot_dir dst_vm_udev=no"
    prelude="PATH=\${PATH#\"$boot_dir:\"}; "
elif [ "$udev" = 0 ]; then
    printf 'vm.sh: note: the path %s is not plain: booting with udev (slower)\n' "$repo" >&2
fi

# What the guest runs first: environment, then the module.
q() { printf '%q' "$1"; }
prelude+="export PATH=$(q "$build/tools/dstcfg/target/release"):\$PATH"
prelude+=" DST_KO=$(q "$dst_ko") DST_REPO=$(q "$repo") DST_NO_INSMOD=$(q "$no_insmod")"
if [ "$no_insmod" != 1 ]; then
    # shellcheck disable=SC2016 # expanded by the guest
    prelude+='; insmod "$DST_KO" || { echo "vm.sh: insmod $DST_KO failed" >&2; exit 125; }'
fi

# no_timer_check: under software emulation on a loaded host the boot-time
# check that the IO-APIC timer ticks can miss its window and panic the guest
# ("IO-APIC + timer doesn't work!"); the emulated timer is fine.
#
# initcall_blacklist=ahci_pci_driver_init: the machine's built-in AHCI
# controller has no disks, yet probing it resets six SATA links; once, on a
# loaded host, those resets stalled the boot for minutes (hung-task reports
# from scsi_eh_N in ata_eh_reset), which fails a test. The tests use RAM
# disks only; the kernel keeps the driver, it is just not started.
#
# rootflags=...,cache=loose: the guest's root is the host's file system over
# 9p, which virtme-ng mounts without a cache, so every exec reads its binary
# and libraries from the host again: under software emulation that made
# /bin/true take 110 ms and dstcfg 600 ms, the bulk of many tests' time.
# With the loose cache the guest keeps what it read (dstcfg: 110 ms, a
# boot to the test 15 s shorter). The root is read-only to the guest and
# nothing on the host changes the files a test uses while it runs; the
# results folder (--rwdir) is a mount of its own, still uncached. The
# kernel takes the last rootflags= given, so this one replaces vng's.
#
# avx2=off: QEMU 10.0's software emulation of vinserti128/vinsertf128 with a
# memory operand loads 32 bytes where the instruction reads 16. The kernel's
# poly1305_blocks_avx2 does that load on the last 16 bytes of each 64-byte
# block, so hashing data at the end of the page before KFENCE's pool faults
# on the pool's guard page: a KFENCE "invalid read" that no real CPU makes
# (tests/vm/security_modes.sh saw it in about one run in three with
# chacha20-poly1305). Without AVX2 the kernel picks poly1305_blocks_avx,
# which the emulator runs correctly. DST_VM_CPU overrides the model.
qemu_opts="-cpu ${DST_VM_CPU:-max,avx2=off}${pidfile:+ -pidfile $pidfile}"
vng_args=(-r "$bzimage" --disable-kvm --qemu-opts="$qemu_opts"
          --cpus "${DST_VM_CPUS:-2}" --memory "${DST_VM_MEMORY:-2G}"
          --append "brd.rd_nr=4 brd.rd_size=524288 no_timer_check initcall_blacklist=ahci_pci_driver_init"
          --append "rootflags=version=9p2000.L,trans=virtio,access=any,msize=524288,cache=loose")
[ -z "$boot_args" ] || vng_args+=(--append "$boot_args")
for a in "${appends[@]}"; do
    [ -z "$a" ] || vng_args+=(--append "$a")
done
for d in "${rwdirs[@]}"; do
    vng_args+=("--rwdir=$(cd "$d" && pwd)")
done
[ "$verbose" = 1 ] && vng_args+=(-v)

cd "$repo"
if [ ${#cmd[@]} -eq 0 ]; then
    # Interactive: vng's console shell (a real terminal, unlike --exec), with
    # vng --shell pointing at a wrapper that runs the prelude from an rc file.
    # Both files are on the host's file system, which the guest sees.
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/dst-vm.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    {
        printf '[ -f /etc/bash.bashrc ] && . /etc/bash.bashrc\n'
        printf '[ -f ~/.bashrc ] && . ~/.bashrc\n'
        printf '%s\n' "${prelude//exit 125/return}"
        printf 'echo "vm.sh: dst.ko %s; dstcfg on PATH; Ctrl-D or poweroff to leave"\n' \
            "$([ "$no_insmod" = 1 ] && echo "not loaded (DST_NO_INSMOD=1)" || echo loaded)"
    } >"$tmp/rc"
    printf '#!/bin/bash\nexec bash --rcfile %s -i\n' "$(q "$tmp/rc")" >"$tmp/shell"
    chmod 755 "$tmp" "$tmp/shell"
    chmod 644 "$tmp/rc"
    status=0
    vng "${vng_args[@]}" --shell "$tmp/shell" || status=$?
    exit "$status"
fi

guest_cmd="$prelude; ${cmd[*]}"
runner=()
# timeout signals its whole process group, which takes qemu down with vng.
[ -z "$timeout_s" ] || runner=(timeout --kill-after=15 "$timeout_s")
# qemu reopens /proc/self/fd/1 and /proc/self/fd/2 for the guest's output and
# the console, truncating them and writing from offset 0 if they are files:
# output redirected to a file would be clobbered. Hand it pipes instead.
set +e
{
    "${runner[@]}" vng "${vng_args[@]}" --exec "$guest_cmd" 2>&1 >&3 3>&- | cat >&2
    exit "${PIPESTATUS[0]}"
} 3>&1 | cat
exit "${PIPESTATUS[0]}"
