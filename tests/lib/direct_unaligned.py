#!/usr/bin/env python3
"""direct_unaligned.py - O_DIRECT requests of up to 1 MiB from buffers that
are not page aligned, with verified data.

usage: direct_unaligned.py DEVICE OFFSET_MIB

Opens DEVICE (a block device with 512-byte logical blocks) with O_DIRECT and,
in 8 MiB of it from OFFSET_MIB on, writes a known pseudo-random pattern with
one os.pwritev per case, reads it back with os.preadv into buffers placed
differently from the written ones, and compares. Cases:

  a-plain   one contiguous 1 MiB buffer at page offset 512 (ordinary pages;
            read back at page offset 3584)
  a-huge    the same in physically contiguous memory (see below)
  b-gaps    256 iovecs of 4 KiB at page offset 2048 with 4 KiB gaps between
            them (1 MiB in all), in physically contiguous memory: every iovec
            is one physical segment that spans two pages, and the gaps keep
            neighbours from merging; read back at page offset 3072
  c-odd-N   iovecs of odd sizes (multiples of 512 up to 20 KiB) at 512-byte
            aligned addresses with gaps of 0..8 KiB (0: the iovec continues
            the previous one), up to 1 MiB in all, at a 512-byte aligned
            device offset; four seeds

"Physically contiguous memory" is a 2 MiB-aligned anonymous mapping with
madvise(MADV_HUGEPAGE) if the kernel has transparent huge pages (THP mode
"never" is changed to "madvise" and restored afterwards); if that is not
physically contiguous (no THP in the kernel, or no huge page to be had), a
MAP_HUGETLB mapping of 2 MiB pages (vm.nr_hugepages is raised for it and
restored afterwards); else ordinary pages. The first output line says which,
how many of the 2 MiB regions are physically contiguous according to
/proc/self/pagemap (needs root) and the AnonHugePages / hugetlb figures of
/proc/self/smaps_rollup. With ordinary pages a-huge and b-gaps still verify
data but no longer build requests whose segments each span two pages.

Prints one line per case ("ok NAME ..." or "FAIL NAME ..."). Exit status 0 if
every case passed, 1 if any failed (a mismatch, a short transfer, or an error
such as EIO from the device), 2 on bad usage or setup. Run by
tests/vm/data_fio_verify.sh.
"""

import ctypes
import mmap
import os
import random
import sys
import time

PAGE = mmap.PAGESIZE
HUGE = 2 << 20
MIB = 1 << 20
SECTOR = 512
MAP_HUGETLB = 0x40000  # not exported by the mmap module
THP = "/sys/kernel/mm/transparent_hugepage/enabled"
NR_HUGEPAGES = "/proc/sys/vm/nr_hugepages"
FREE_HUGEPAGES = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"
REGIONS = 3  # 2 MiB regions of physically contiguous memory


def read_text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def write_text(path, text):
    try:
        with open(path, "w") as f:
            f.write(text)
        return True
    except OSError:
        return False


def address(m):
    """Virtual address of the first byte of mmap m."""
    c = ctypes.c_char.from_buffer(m)
    try:
        return ctypes.addressof(c)
    finally:
        del c


def pfns(addr, npages):
    """Page frame numbers of npages pages from addr (None where unknown)."""
    out = []
    try:
        with open("/proc/self/pagemap", "rb") as f:
            f.seek((addr // PAGE) * 8)
            raw = f.read(npages * 8)
    except OSError:
        return [None] * npages
    for i in range(npages):
        e = int.from_bytes(raw[i * 8:i * 8 + 8], "little")
        pfn = e & ((1 << 55) - 1)
        out.append(pfn if e >> 63 and pfn else None)
    return out


def contiguous_regions(addr):
    """How many of the REGIONS 2 MiB regions from addr are physically
    contiguous, or None if pagemap shows no frame numbers."""
    n = 0
    for r in range(REGIONS):
        p = pfns(addr + r * HUGE, HUGE // PAGE)
        if None in p:
            return None
        if all(p[i] == p[0] + i for i in range(len(p))):
            n += 1
    return n


def rollup():
    """AnonHugePages and hugetlb figures of /proc/self/smaps_rollup."""
    keep = ("AnonHugePages", "Private_Hugetlb", "Shared_Hugetlb")
    text = read_text("/proc/self/smaps_rollup") or ""
    parts = []
    for line in text.splitlines():
        key = line.split(":")[0]
        if key in keep:
            parts.append(f"{key} {' '.join(line.split()[1:])}")
    return ", ".join(parts) or "no smaps_rollup"


class Memory:
    """REGIONS 2 MiB regions (huge), physically contiguous if the kernel lets
    us, and a small-page area of the same size (plain)."""

    def __init__(self):
        self.restore = []  # (path, old value)
        self.huge_map = None
        self.contiguous = None
        size = REGIONS * HUGE
        kinds = []
        thp = read_text(THP)
        if thp is not None:
            if "[never]" in thp and write_text(THP, "madvise"):
                self.restore.append((THP, "never"))
            m = mmap.mmap(-1, size + HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            skip = -address(m) % HUGE
            m.madvise(mmap.MADV_HUGEPAGE, skip, size)
            self._use(m, skip)
            kinds.append(f"THP ({read_text(THP)})")
        else:
            kinds.append("no THP in this kernel")
        if self.contiguous != REGIONS:
            free = int(read_text(FREE_HUGEPAGES) or 0)
            nr = read_text(NR_HUGEPAGES)
            if free < REGIONS and nr is not None:
                if write_text(NR_HUGEPAGES, str(int(nr) + REGIONS - free)):
                    self.restore.append((NR_HUGEPAGES, nr))
            try:
                m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_HUGETLB)
                self._use(m, 0)
                kinds.append("hugetlb 2 MiB pages")
            except OSError as e:
                kinds.append(f"MAP_HUGETLB failed: {e.strerror}")
        if self.huge_map is None:
            m = mmap.mmap(-1, size + HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            self._use(m, -address(m) % HUGE)
            kinds.append("ordinary pages")
        self.kind = ", ".join(kinds)
        self.plain_map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if thp is not None:
            self.plain_map.madvise(mmap.MADV_NOHUGEPAGE)
        self.plain = memoryview(self.plain_map)
        self.plain[:] = bytes(size)

    def _use(self, m, skip):
        """Use REGIONS * 2 MiB of m from skip as huge (in place of any
        earlier mapping)."""
        if self.huge_map is not None:
            self.huge.release()
            self.huge_map.close()
        self.huge_map = m
        self.huge = memoryview(m)[skip:skip + REGIONS * HUGE]
        self.huge[:] = bytes(len(self.huge))  # fault everything in
        self.huge_addr = address(m) + skip
        self.contiguous = contiguous_regions(self.huge_addr)

    def describe(self):
        c = self.contiguous
        cont = "unknown (no frame numbers in pagemap)" if c is None else f"{c}/{REGIONS}"
        return f"buffer: {self.kind}; physically contiguous 2 MiB regions: {cont}; {rollup()}"

    def close(self):
        try:
            for v in (self.huge, self.plain):
                v.release()
            self.huge_map.close()
            self.plain_map.close()
        except BufferError:
            pass  # a view still in use: the process ends soon anyway
        for path, old in reversed(self.restore):
            write_text(path, old)


def run_case(fd, name, offset, wbufs, rbufs, seed, note=""):
    """Write a pattern from the views wbufs at offset, read it back into the
    views rbufs (same total length), compare. Returns True if all went well."""
    total = sum(len(b) for b in wbufs)
    assert total == sum(len(b) for b in rbufs) and total % SECTOR == 0
    pattern = random.Random(seed).randbytes(total)
    pos = 0
    for b in wbufs:
        b[:] = pattern[pos:pos + len(b)]
        pos += len(b)
    for b in rbufs:
        b[:] = b"\xa5" * len(b)
    what = f"{name}: {total} bytes at {offset}, {len(wbufs)} iovecs{note}"
    t0 = time.monotonic()
    try:
        n = os.pwritev(fd, wbufs, offset)
        if n != total:
            print(f"FAIL {what}: short write, {n} bytes", flush=True)
            return False
    except OSError as e:
        # Try the read anyway, to show whether reads of this layout fail too.
        try:
            n = os.preadv(fd, rbufs, offset)
            read = f"{n} bytes read back" if n == total else f"short read, {n} bytes"
        except OSError as e2:
            read = f"read: {e2.strerror} (errno {e2.errno})"
        print(f"FAIL {what}: write: {e.strerror} (errno {e.errno}); {read}", flush=True)
        return False
    try:
        n = os.preadv(fd, rbufs, offset)
        if n != total:
            print(f"FAIL {what}: short read, {n} bytes", flush=True)
            return False
    except OSError as e:
        print(f"FAIL {what}: read: {e.strerror} (errno {e.errno})", flush=True)
        return False
    got = b"".join(bytes(b) for b in rbufs)
    if got != pattern:
        bad = next(i for i in range(total) if got[i] != pattern[i])
        print(f"FAIL {what}: data differs from byte {bad} on", flush=True)
        return False
    print(f"ok {what} ({(time.monotonic() - t0) * 1000:.0f} ms)", flush=True)
    return True


def gapped(view, page_offset, count, size, gap):
    """count views of size bytes from page_offset, gap bytes apart."""
    return [view[page_offset + i * (size + gap):page_offset + i * (size + gap) + size]
            for i in range(count)]


def odd_layout(view, rng, total):
    """iovecs of random multiples of 512 bytes (up to 20 KiB; the last one
    takes the rest), total bytes in all, at 512-aligned places in view with
    gaps of 0..8 KiB (0: the iovec continues the previous one)."""
    out, at, left = [], rng.randrange(0, PAGE, SECTOR), total
    while left:
        size = min(rng.randrange(1, 41) * SECTOR, left)
        if at + size > len(view) or len(out) == 1024:  # 1024: IOV_MAX
            raise ValueError("odd_layout: no room for the iovecs")
        out.append(view[at:at + size])
        left -= size
        at += size + rng.choice([0, 0, rng.randrange(1, 17) * SECTOR])
    return out


def main():
    if len(sys.argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    dev, base = sys.argv[1], int(sys.argv[2]) * MIB
    lbs = read_text(f"/sys/class/block/{os.path.basename(dev)}/queue/logical_block_size")
    if lbs != str(SECTOR):
        print(f"{dev}: logical block size {lbs}, these cases need {SECTOR}", file=sys.stderr)
        return 2
    mem = Memory()
    ok = True
    try:
        print(f"# {mem.describe()}", flush=True)
        fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
        try:
            h, p = mem.huge, mem.plain
            ok &= run_case(fd, "a-plain", base, [p[512:512 + MIB]],
                           [p[HUGE + 3584:HUGE + 3584 + MIB]], 1)
            ok &= run_case(fd, "a-huge", base + MIB, [h[512:512 + MIB]],
                           [h[HUGE + 3584:HUGE + 3584 + MIB]], 2)
            note = ", each spanning 2 pages" if mem.contiguous == REGIONS else ""
            ok &= run_case(fd, "b-gaps", base + 2 * MIB,
                           gapped(h[:HUGE], 2048, 256, 4096, 4096),
                           gapped(h[HUGE:2 * HUGE], 3072, 256, 4096, 4096), 3, note)
            for i in range(4):
                rng = random.Random(100 + i)
                total = rng.randrange(1, MIB // SECTOR + 1) * SECTOR
                off = base + 4 * MIB + rng.randrange(0, MIB // SECTOR) * SECTOR
                ok &= run_case(fd, f"c-odd-{i}", off, odd_layout(h[:HUGE], rng, total),
                               odd_layout(h[HUGE:], rng, total), 10 + i)
        finally:
            os.close(fd)
    finally:
        mem.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
