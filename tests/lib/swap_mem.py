#!/usr/bin/env python3
"""swap_mem.py - anonymous-memory workloads for tests/vm/fault_swap.sh.

Standard library only. Every 4 KiB page gets its own content: the 16 bytes
(seed, page index) repeated over the page, so a lost, zeroed, stale or
misplaced page is told apart from the right one.

  swap_mem.py pageout --mib N --seed S --dev DSTN [--hold FILE]
      Map N MiB of anonymous memory, fill it, push all of it out with
      madvise(MADV_PAGEOUT), wait until the writes have left (DSTN has
      nothing in flight, /proc/meminfo Writeback is near zero), report how
      much went to swap (VmSwap, SwapFree, what was written to DSTN). With
      --hold, wait until FILE exists before reading back (the caller puts
      memory pressure on the guest meanwhile, which evicts the swap cache,
      so the read-back comes from the device). Then read everything back,
      verify it and report how much was read from DSTN (and the swap
      readahead counters of /proc/vmstat). Protects itself from
      the OOM killer (oom_score_adj -1000): the hog is the one to kill.
      Exit status 1: a page differs; 2: nothing went to swap, or the
      writeback did not finish.

  swap_mem.py hog --mib N --seed S
      Prints "pid P, started T s ago", makes itself the OOM killer's first choice
      (oom_score_adj 1000), then fills N MiB of anonymous memory and
      verifies all of it, last page first (what was filled last is still in
      memory; a forward scan of an area larger than memory makes LRU
      reclaim evict every page just before it is read: all of it would be
      swapped in), asking for each 16 MiB with MADV_WILLNEED before reading
      it (batched swap-in: faulting page by page reads about 32 KiB per
      request, slow under emulation). Progress lines every 32 MiB; last
      line "peak VmSwap M MiB" (sampled at the progress lines). Exit status
      1: a page differs.

  swap_mem.py watchdog [--grace G]
      Locks itself in memory (mlockall) and reads commands from stdin:
      "arm S TEXT" (phase TEXT must end within S seconds), "disarm"; end of
      input ends it. If an armed deadline passes, the guest's user space is
      taken to be stuck (a shell waiting with a deadline would have acted by
      then): it writes a line saying so (with TEXT) to the kernel log, has
      the kernel dump blocked tasks and memory (sysrq w, m), then has it
      OOM-kill the biggest process (sysrq f: the hog, oom_score_adj 1000),
      which may get the guest going again. Unless it gets a command within
      G seconds (default 90), it powers the guest off (sysrq o), so that the
      run ends with the evidence instead of waiting for the runner to kill
      the VM.
"""

import argparse
import ctypes
import mmap
import os
import select
import struct
import sys
import time

PAGE = mmap.PAGESIZE
MIB = 1 << 20
# Linux 5.4; Python's mmap module only has the constant if its build saw it.
MADV_PAGEOUT = getattr(mmap, "MADV_PAGEOUT", 21)


def say(msg):
    print(msg, flush=True)


def page(seed, index):
    return struct.pack("<QQ", seed, index) * (PAGE // 16)


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])
    return out


def vmswap_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSwap:"):
                return int(line.split()[1])
    return 0


class DevIO:
    """Reads and writes completed on /sys/block/DEV since creation."""

    def __init__(self, dev):
        self.dev = dev
        with open(f"/sys/block/{dev}/stat") as f:
            x = [int(v) for v in f.read().split()]
        self.reads, self.rbytes = x[0], x[2] * 512
        self.writes, self.wbytes = x[4], x[6] * 512

    def since(self, old, what):
        """'X MiB read from DEV in N requests (avg K KiB)' for what = 'read'
        or 'written'."""
        if what == "read":
            n, b = self.reads - old.reads, self.rbytes - old.rbytes
        else:
            n, b = self.writes - old.writes, self.wbytes - old.wbytes
        avg = f"{b / n / 1024:.0f}" if n else "-"
        prep = "from" if what == "read" else "to"
        return b, f"{mib(b)} MiB {what} {prep} {self.dev} in {n} requests (avg {avg} KiB)"


def vmstat():
    out = {}
    with open("/proc/vmstat") as f:
        for line in f:
            key, value = line.split()
            out[key] = int(value)
    return out


def vmstat_since(old, keys=("pswpout", "pswpin", "swap_ra", "swap_ra_hit")):
    new = vmstat()
    return ", ".join(f"{k} +{new.get(k, 0) - old.get(k, 0)}" for k in keys)


def dev_inflight(dev):
    with open(f"/sys/block/{dev}/inflight") as f:
        return sum(int(x) for x in f.read().split())


def oom_adj(value):
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(value))


def fill(mm, npages, seed, progress=None):
    for i in range(npages):
        off = i * PAGE
        mm[off:off + PAGE] = page(seed, i)
        if progress and (i + 1) % progress[0] == 0:
            progress[1](i + 1)


def verify(mm, npages, seed, progress=None, reverse=False, willneed=0):
    """Number of pages that differ; the first few are described. With
    willneed=N, madvise(MADV_WILLNEED) each N pages before reading them:
    their swapped-out pages are read in batches instead of one fault (and
    its readahead window) at a time."""
    bad = 0
    order = range(npages - 1, -1, -1) if reverse else range(npages)
    for n, i in enumerate(order, 1):
        if progress and n % progress[0] == 0:
            progress[1](n)
        if willneed and (n - 1) % willneed == 0:
            first = i - willneed + 1 if reverse else i
            first = max(first, 0)
            mm.madvise(mmap.MADV_WILLNEED, first * PAGE,
                       min(willneed, npages - first) * PAGE)
        off = i * PAGE
        got = mm[off:off + PAGE]
        if got != page(seed, i):
            bad += 1
            if bad <= 5:
                s, idx = struct.unpack_from("<QQ", got)
                zero = "all zero" if got == bytes(PAGE) else "not zero"
                say(f"MISMATCH page {i}: starts with seed {s:#x} index {idx} "
                    f"({zero}), expected seed {seed:#x} index {i}")
    return bad


def mib(n):
    return f"{n / MIB:.1f}"


def cmd_pageout(args):
    oom_adj(-1000)
    size = args.mib * MIB
    npages = size // PAGE
    mm = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    t0 = time.monotonic()
    fill(mm, npages, args.seed)
    t1 = time.monotonic()
    say(f"filled {args.mib} MiB in {t1 - t0:.1f} s")

    free0 = meminfo()["SwapFree"]
    io0, vm0 = DevIO(args.dev), vmstat()
    mm.madvise(MADV_PAGEOUT)
    t2 = time.monotonic()
    # MADV_PAGEOUT only starts the writes; wait for them.
    deadline = t2 + args.writeback_timeout
    while dev_inflight(args.dev) or meminfo()["Writeback"] > 1024:
        if time.monotonic() > deadline:
            say(f"writeback not finished {args.writeback_timeout} s after "
                f"MADV_PAGEOUT: {dev_inflight(args.dev)} requests in flight on "
                f"{args.dev}, Writeback {meminfo()['Writeback']} kB")
            return 2
        time.sleep(0.1)
    t3 = time.monotonic()
    swapped = vmswap_kb() * 1024
    info = meminfo()
    _, written = DevIO(args.dev).since(io0, "written")
    say(f"paged out: VmSwap {mib(swapped)} MiB of {args.mib} MiB, SwapFree "
        f"down {mib((free0 - info['SwapFree']) * 1024)} MiB, {written}; "
        f"madvise {t2 - t1:.1f} s, writeback done {t3 - t2:.1f} s later; "
        f"{vmstat_since(vm0, ('pswpout',))}")
    if swapped == 0:
        say("nothing was swapped out")
        return 2

    if args.hold:
        say(f"holding until {args.hold} exists")
        while not os.path.exists(args.hold):
            time.sleep(0.2)
    info = meminfo()
    cached = info["SwapCached"] * 1024
    still = vmswap_kb() * 1024
    io0, vm0 = DevIO(args.dev), vmstat()
    t4 = time.monotonic()
    bad = verify(mm, npages, args.seed)
    t5 = time.monotonic()
    nread, read = DevIO(args.dev).since(io0, "read")
    say(f"read back {args.mib} MiB in {t5 - t4:.1f} s "
        f"({mib(nread / max(t5 - t4, 0.001))} MiB/s from the device): VmSwap "
        f"before {mib(still)} MiB, SwapCached before {mib(cached)} MiB; {read}; "
        f"{vmstat_since(vm0)}; {bad} of {npages} pages differ")
    return 1 if bad else 0


def age():
    """Seconds since this process started (its start-up under emulation
    takes a while)."""
    with open("/proc/self/stat") as f:
        start = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        up = float(f.read().split()[0])
    return up - start / os.sysconf("SC_CLK_TCK")


def cmd_hog(args):
    say(f"pid {os.getpid()}, started {age():.1f} s ago")
    oom_adj(1000)
    size = args.mib * MIB
    npages = size // PAGE
    mm = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    t0 = time.monotonic()
    vm0 = vmstat()
    peak = [0]

    def progress(what):
        def report(done):
            info = meminfo()
            swapped = vmswap_kb()
            peak[0] = max(peak[0], swapped)
            say(f"{time.monotonic() - t0:6.1f} s: {done * PAGE // MIB} MiB {what}, "
                f"MemFree {info['MemFree'] // 1024} MiB, SwapFree "
                f"{info['SwapFree'] // 1024} MiB, VmSwap {swapped // 1024} MiB")
        return (32 * MIB // PAGE, report)

    fill(mm, npages, args.seed, progress("filled"))
    t1 = time.monotonic()
    swapped = vmswap_kb()
    peak[0] = max(peak[0], swapped)
    say(f"filled {args.mib} MiB in {t1 - t0:.1f} s, VmSwap {swapped // 1024} MiB; "
        f"{vmstat_since(vm0, ('pswpout', 'pswpin'))}")
    vm1 = vmstat()
    bad = verify(mm, npages, args.seed, progress("verified"), reverse=True,
                 willneed=16 * MIB // PAGE)
    t2 = time.monotonic()
    say(f"verified {args.mib} MiB in {t2 - t1:.1f} s: {bad} of {npages} pages "
        f"differ; VmSwap now {vmswap_kb() // 1024} MiB; {vmstat_since(vm1)}")
    say(f"peak VmSwap {peak[0] // 1024} MiB")
    return 1 if bad else 0


def cmd_watchdog(args):
    """Locked in memory, so that it runs when nothing else in user space can
    (all of it waiting for pages to come back from swap)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlockall(1 | 2) != 0:  # MCL_CURRENT | MCL_FUTURE
        say(f"watchdog: mlockall failed: {os.strerror(ctypes.get_errno())}")
    kmsg = os.open("/dev/kmsg", os.O_WRONLY)
    sysrq = os.open("/proc/sysrq-trigger", os.O_WRONLY)
    deadline, what, buf, fired = None, "", b"", False
    while True:
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0)
        if select.select([0], [], [], timeout)[0]:
            data = os.read(0, 4096)
            if not data:
                return 0
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                words = line.decode().split(maxsplit=2)
                if words[:1] == ["arm"]:
                    deadline = time.monotonic() + float(words[1])
                    what, fired = (words[2] if len(words) > 2 else ""), False
                    limit = float(words[1])
                elif words[:1] == ["disarm"]:
                    deadline = None
            continue
        if not fired:
            os.write(kmsg, f"dst-test: fault_swap watchdog: {what}: not done after "
                     f"{limit:.0f} s, the guest makes no progress; blocked tasks "
                     f"and memory follow, then an OOM kill (sysrq f); power-off "
                     f"in {args.grace:.0f} s unless the test goes on\n".encode())
            os.write(sysrq, b"w")
            os.write(sysrq, b"m")
            os.write(sysrq, b"f")
            deadline, fired = time.monotonic() + args.grace, True
            continue
        os.write(kmsg, b"dst-test: fault_swap watchdog: powering off\n")
        os.write(sysrq, b"o")
        return 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pageout")
    p.add_argument("--mib", type=int, required=True)
    p.add_argument("--seed", type=lambda s: int(s, 0), required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--hold")
    p.add_argument("--writeback-timeout", type=float, default=120)
    h = sub.add_parser("hog")
    h.add_argument("--mib", type=int, required=True)
    h.add_argument("--seed", type=lambda s: int(s, 0), required=True)
    w = sub.add_parser("watchdog")
    w.add_argument("--grace", type=float, default=90)
    args = ap.parse_args()
    return {"pageout": cmd_pageout, "hog": cmd_hog, "watchdog": cmd_watchdog}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
