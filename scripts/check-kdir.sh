#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# check-kdir.sh KDIR - can dst.ko be built against the kernel tree KDIR?
#
# KDIR is a built Linux 7.2 tree, or an installed headers folder made from one
# (such as /lib/modules/VERSION/build from `make packages`). Checks, and lists
# together in one message whatever is missing:
#   - the tree is built: Makefile, Module.symvers, include/generated,
#     include/config/auto.conf, scripts/mod/modpost;
#   - the kernel version is 7.2.x (include/config/kernel.release);
#   - the options of kernel/required.config are set (built in or modules);
#   - the Rust metadata an out-of-tree Rust module is compiled against:
#     rust/lib*.rmeta, the procedural macro libraries rust/lib*.so,
#     include/generated/rustc_cfg and (x86_64) scripts/target.json; Debian's
#     own linux-headers packages do not ship these;
#   - the rustc on PATH is the one the tree was built with (the metadata is
#     only readable by the same compiler), and the C compiler exists.
#
# Exit status 0 and one line on stdout ("KDIR: Linux VERSION, ... ok") if the
# tree will do; 1 and the message on stderr if not; 2 on a usage error.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
required=${DST_REQUIRED_CONFIG:-$here/kernel/required.config}

if [ $# -ne 1 ] || [ -z "$1" ]; then echo "usage: check-kdir.sh KDIR" >&2; exit 2; fi
kdir=$1

missing=()
miss() { missing+=("$*"); }

report() {
    {
        echo "check-kdir: cannot build dst.ko against KDIR=$kdir:"
        printf '  - %s\n' "${missing[@]}"
        echo "DST needs a built Linux 7.2 tree with CONFIG_RUST=y and its Rust metadata, or"
        echo "the headers package of one (README.md, \"Kernels\"; \`make packages\` makes both)."
    } >&2
    exit 1
}

if [ ! -d "$kdir" ]; then
    miss "no such folder"
    report
fi
if [ ! -f "$kdir/Makefile" ]; then
    miss "no Makefile: not a kernel tree or headers folder"
    report
fi

# Built, and with what an external module build reads.
unbuilt=()
for f in Module.symvers include/generated/autoconf.h include/generated/utsrelease.h \
         include/config/auto.conf include/config/kernel.release scripts/mod/modpost \
         scripts/basic/fixdep; do
    [ -e "$kdir/$f" ] || unbuilt+=("$f")
done
[ ${#unbuilt[@]} -eq 0 ] ||
    miss "not built: no ${unbuilt[*]} (build it: make -C KDIR olddefconfig all)"

# Version: 7.2.x, from kernel.release or else utsrelease.h.
release=""
if [ -s "$kdir/include/config/kernel.release" ]; then
    release=$(head -n 1 "$kdir/include/config/kernel.release")
elif [ -f "$kdir/include/generated/utsrelease.h" ]; then
    release=$(sed -n 's/^#define UTS_RELEASE "\(.*\)"$/\1/p' "$kdir/include/generated/utsrelease.h")
fi
if [ -z "$release" ]; then
    miss "kernel version unknown (no include/config/kernel.release)"
elif ! [[ $release =~ ^7\.2(\.[0-9]+)?([^0-9.]|$) ]]; then
    miss "kernel version $release: DST is written for Linux 7.2.x"
fi

# Options: every CONFIG_X=y of the required list must be y (or m) here.
conf=$kdir/include/config/auto.conf
if [ -f "$conf" ]; then
    off=()
    while IFS= read -r line; do
        case $line in CONFIG_*=*) ;; *) continue ;; esac
        opt=${line%%=*}
        have=$(grep -E "^$opt=" "$conf" | cut -d= -f2- || true)
        case $have in
            y | m) ;;
            *) if [ "$opt" = CONFIG_RUST ]; then
                   miss "no Rust support: CONFIG_RUST is not set (it needs the Rust toolchain when the kernel is configured: make -C KDIR rustavailable)"
               else
                   off+=("$opt")
               fi ;;
        esac
    done <"$required"
    [ ${#off[@]} -eq 0 ] || miss "options not set (each needs =y, or =m where it can be a module): ${off[*]}"
fi
conf_value() { [ -f "$conf" ] && sed -n "s/^$1=\"\{0,1\}\([^\"]*\)\"\{0,1\}\$/\1/p" "$conf" | head -n 1; }

# Rust metadata: what `rustc --extern kernel -L KDIR/rust` needs for a module
# (scripts/Makefile.build), and the crates those depend on.
if [ "$(conf_value CONFIG_RUST)" = y ]; then
    absent=()
    for lib in core compiler_builtins ffi build_error bindings uapi kernel pin_init zerocopy; do
        [ -f "$kdir/rust/lib$lib.rmeta" ] || absent+=("rust/lib$lib.rmeta")
    done
    for lib in macros pin_init_internal zerocopy_derive; do
        [ -f "$kdir/rust/lib$lib.so" ] || absent+=("rust/lib$lib.so")
    done
    [ -f "$kdir/include/generated/rustc_cfg" ] || absent+=(include/generated/rustc_cfg)
    if [ "$(conf_value CONFIG_X86_64)" = y ] && [ ! -f "$kdir/scripts/target.json" ]; then
        absent+=(scripts/target.json)
    fi
    [ ${#absent[@]} -eq 0 ] ||
        miss "the Rust metadata is missing (${absent[*]}): build the tree with CONFIG_RUST=y, or use headers that include rust/ (Debian's linux-headers packages do not)"

    # The metadata is only readable by the compiler that wrote it.
    want=$(conf_value CONFIG_RUSTC_VERSION_TEXT)
    rustc=${RUSTC:-rustc}
    if ! have=$("$rustc" --version 2>/dev/null); then
        miss "no rustc on PATH; the tree was built with ${want:-an unknown rustc}"
    elif [ -n "$want" ] && [ "$have" != "$want" ]; then
        miss "rustc on PATH is '$have', the tree was built with '$want' (the Rust metadata needs the same compiler)"
    fi
fi

cc=${CC:-gcc}
if [ "$(conf_value CONFIG_CC_IS_CLANG)" = y ]; then cc=${CC:-clang}; fi
command -v "$cc" >/dev/null 2>&1 || miss "no C compiler '$cc' (the tree was built with: $(conf_value CONFIG_CC_VERSION_TEXT))"

[ ${#missing[@]} -eq 0 ] || report
echo "$kdir: Linux $release, Rust metadata and the options DST needs present, $(rustc --version 2>/dev/null)"
