# SPDX-License-Identifier: GPL-2.0
#
# DST entry points (see README.md):
#   make                 build dst.ko (against the cached test kernel) and dstcfg
#   make check [T=pat]   set up if needed, run every test (or those matching pat)
#   make vm [CMD='...']  boot the test kernel with dst.ko loaded; run CMD or a shell
#   make demo            the main job, end to end, in a VM
#   make bench           fio benchmark in one VM: brd, DST, NVMe/TCP, NBD (bench/out/),
#                        on the production kernel (built and cached the first
#                        time; BENCH_KERNEL=test: the test kernel)
#   make bench-scaling   the benchmark with 1, 2 and 4 queues and vCPUs
#                        (bench/out/scaling/)
#   make setup           install the toolchain and build the test kernel (cached)
#   make CLIPPY=1        build the module with clippy lints
#   make lint            rustfmt + clippy for the module and dstcfg
#   make KDIR=/path      build dst.ko against another built 7.2 tree (after
#                        scripts/check-kdir.sh; the test kernel is not set up)
#   make install         install dst.ko (then depmod), dstcfg, its man page,
#                        completions, systemd unit and udev rules; DESTDIR,
#                        PREFIX (/usr/local) and scripts/install.sh's other
#                        variables are honoured; make uninstall removes them
#   make packages        Debian packages in packages/: kernel image and headers
#                        (with the Rust metadata), dst-modules-RELEASE, dstcfg;
#                        against KDIR if given, else the production kernel
#                        (scripts/setup.sh --production)
#
# The kernel module itself is built by Kbuild (file Kbuild), invoked below as
# make -C $(KDIR) M=$(CURDIR).

DST_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/dst
export DST_CACHE
# KDIR: the built 7.2 tree; recorded by scripts/setup.sh. One given on the
# command line or in the environment is checked and used as it is.
KDIR_GIVEN := $(filter command line environment,$(origin KDIR))
KDIR ?= $(shell cat $(DST_CACHE)/kdir 2>/dev/null)
.PHONY: all module dstcfg dstpeer setup check vm demo lint clean bench bench-scaling install \
	uninstall packages

all: module dstcfg

setup:
	@scripts/setup.sh >/dev/null

module:
ifneq ($(KDIR_GIVEN),)
	@scripts/check-kdir.sh "$(KDIR)" >/dev/null
	$(MAKE) -C "$(KDIR)" M=$(CURDIR) $(if $(CLIPPY),CLIPPY=1) modules
else
	@kdir="$(KDIR)"; \
	if [ -z "$$kdir" ] || [ ! -f "$$kdir/.dst-built" ]; then kdir=$$(scripts/setup.sh | tail -1); fi; \
	$(MAKE) -C "$$kdir" M=$(CURDIR) $(if $(CLIPPY),CLIPPY=1) modules
endif

dstcfg:
	cargo build --release --quiet --manifest-path tools/dstcfg/Cargo.toml

# The userspace protocol peer used by tests.
dstpeer:
	cargo build --release --quiet --manifest-path tools/dstpeer/Cargo.toml

check: setup
	@$(MAKE) --no-print-directory all dstpeer
	@tests/run.sh $(T)

vm: all
	@scripts/vm.sh $(if $(CMD),-- $(CMD))

demo: all
	@scripts/demo.sh

# bench/run.sh builds dst.ko against the kernel it boots (the production
# kernel's in a folder of its own), so only dstcfg is built here.
bench: dstcfg
	@bench/run.sh

bench-scaling: dstcfg
	@BENCH_SCALING=1 bench/run.sh

lint:
	rustfmt --check dst/*.rs dst/*/*.rs
	$(MAKE) --no-print-directory module CLIPPY=1
	for t in dstcfg dstpeer; do \
		cargo fmt --check --manifest-path tools/$$t/Cargo.toml && \
		cargo clippy --quiet --all-targets --manifest-path tools/$$t/Cargo.toml -- -D warnings || exit 1; \
	done

# Installs what was built (it builds nothing: run make first).
install:
	@scripts/install.sh install

uninstall:
	@scripts/install.sh uninstall

packages:
	@KDIR="$(if $(KDIR_GIVEN),$(KDIR))" scripts/packages.sh

clean:
	@kdir="$(KDIR)"; [ -z "$$kdir" ] || $(MAKE) -C "$$kdir" M=$(CURDIR) clean
	cargo clean --manifest-path tools/dstcfg/Cargo.toml
	cargo clean --manifest-path tools/dstpeer/Cargo.toml
	rm -rf results
