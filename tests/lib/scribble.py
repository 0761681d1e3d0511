#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""scribble.py - a process that keeps changing its own O_DIRECT buffer while
its IO runs (security review M2), as any local user who can open a file on a
DST-backed file system could (tests/vm/security_modes.sh).

usage: scribble.py DEV OFFSET_MIB SIZE_MIB SECONDS

Writes and reads back SIZE_MIB MiB of DEV from OFFSET_MIB on, 1 MiB per
request with O_DIRECT, all from one buffer, for SECONDS; meanwhile a second
thread changes bytes of that buffer without pause. Its own data is torn,
which is its own business; nothing else may be: no integrity error, no IO
error elsewhere. Prints how many requests and changes it made. Standard
library only.
"""

import mmap
import os
import sys
import threading
import time

MIB = 1 << 20


def main(argv):
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    dev, offset, size, seconds = argv[1], int(argv[2]), int(argv[3]), float(argv[4])
    fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
    buf = mmap.mmap(-1, MIB)  # page aligned, as O_DIRECT wants
    done = threading.Event()
    changes = 0

    def scribble():
        nonlocal changes
        i = 0
        while not done.is_set():
            # Runs while the other thread is in a system call (the GIL is
            # released there): exactly while the kernel works on the buffer.
            buf[i] = (buf[i] + 1) & 0xFF
            i = (i + 4099) % MIB
            changes += 1

    worker = threading.Thread(target=scribble)
    worker.start()
    end = time.monotonic() + seconds
    requests = 0
    try:
        while time.monotonic() < end:
            at = (offset + requests % size) * MIB
            os.pwritev(fd, [buf], at)
            os.preadv(fd, [buf], at)
            requests += 2
    finally:
        done.set()
        worker.join()
        os.close(fd)
    print(f"scribble: {requests} requests of 1 MiB, {changes} changes to the buffer meanwhile")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
