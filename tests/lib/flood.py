#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""flood.py - hold many idle TCP connections to an export, as someone who
can merely reach its port could (tests/vm/security_dos.sh).

usage: flood.py ADDR PORT COUNT SECONDS [SOURCE]

Opens COUNT connections to ADDR:PORT (from the address SOURCE if given)
that send nothing, opens each one again as soon as the export closes it,
and keeps doing so for SECONDS, or until SIGTERM. Then prints "opened N,
closed by the export M, failed F". Standard library only.
"""

import select
import signal
import socket
import sys
import time


class Flood:
    """COUNT idle connections to ADDR:PORT, kept open."""

    def __init__(self, addr, port, count, source):
        self.addr, self.port, self.count, self.source = addr, port, count, source
        self.conns = []
        self.opened = self.closed = self.failed = 0

    def connect(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(1.0)
        try:
            if self.source:
                s.bind((self.source, 0))
            s.connect((self.addr, self.port))
        except OSError:
            s.close()
            self.failed += 1
            return False
        s.setblocking(False)
        self.conns.append(s)
        self.opened += 1
        return True

    def run(self, end):
        while time.monotonic() < end:
            while len(self.conns) < self.count and time.monotonic() < end:
                if not self.connect():
                    time.sleep(0.05)
                    break
            if not self.conns:
                continue
            readable, _, _ = select.select(self.conns, [], [], 0.2)
            for s in readable:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    self.conns.remove(s)
                    s.close()
                    self.closed += 1

    def close(self):
        for s in self.conns:
            s.close()
        self.conns = []


def main(argv):
    if len(argv) not in (5, 6):
        print(__doc__, file=sys.stderr)
        return 2
    addr, port, count, seconds = argv[1], int(argv[2]), int(argv[3]), float(argv[4])
    flood = Flood(addr, port, count, argv[5] if len(argv) == 6 else None)
    # Stopped early: report all the same.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        flood.run(time.monotonic() + seconds)
    finally:
        flood.close()
        print(f"opened {flood.opened}, closed by the export {flood.closed}, "
              f"failed {flood.failed}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
