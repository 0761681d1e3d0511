#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""report.py - turn the raw output of bench/guest.sh into the benchmark report.

usage: bench/report.py OUTDIR [--baseline BASEDIR]
       bench/report.py --scaling SCALINGDIR
       (bench/run.sh runs it; so can you, again)

Reads OUTDIR/raw/ (env.txt, host.txt, target-T.txt, T__J__rN.fio.json,
T__J__rN.meta, T__connect.txt, cipher.txt) and OUTDIR/profile/ (if
profiled), writes:

  OUTDIR/results.json   every job x target: bw MB/s, IOPS, p50/p99 total
                        latency (us), CPU us per IO and ms per MiB, CPU
                        busy %, each the median of the rounds with its range
                        (min, max) and per-round values; the environment (the
                        kernel measured, production or test), the targets'
                        set-up, the ratios (median, min, max of the
                        per-round ratios), the cipher's own speed (dst.ko's
                        crypto_bench=1 timings, raw/cipher.txt) and the
                        protected modes against it
  OUTDIR/results.md     a table per job (targets as columns) with ratio rows
                        DST / NVMe-TCP, DST / NBD and DST aead / NVMe-TCP TLS,
                        a summary of the ratios (each "median (min–max)",
                        flagged when the spread crosses 1.0), the protected
                        modes against the cipher's own speed and DST none,
                        and the profile summary if there is one; the DST
                        connect and delete times; with --baseline, every number against
                        BASEDIR's results.json (the same run with an older
                        module: bench/run.sh BENCH_BASELINE)
  OUTDIR/throughput.svg grouped bars: each job's throughput normalised to
                        NVMe/TCP, whiskers min–max over the rounds (standard
                        library only, no plotting package)

and prints the ratio summary. Exit status 1 if no job produced a result.

With --scaling: SCALINGDIR/qN/ are runs with N queues (bench/run.sh
BENCH_SCALING=1); each gets its report as above, and SCALINGDIR gets
scaling.md (per job, each target's throughput and CPU per IO at each N),
scaling.json and scaling.svg (the same drawn: lines over N, whiskers
min–max).
Standard library only (Python 3.9+).
"""

import gzip
import json
import math
import os
import re
import sys

TARGETS = [
    ("brd", "brd (local)"),
    ("nvme-tcp", "NVMe/TCP"),
    ("nvme-tcp-tls", "NVMe/TCP TLS"),
    ("nbd", "NBD"),
    ("dst-none", "DST none"),
    ("dst-crc32c", "DST crc32c"),
    ("dst-hmac", "DST hmac"),  # not in the default target list
    ("dst-aead", "DST aead"),
]
JOBS = [
    # id, label, side(s) of fio's result counted ("read", "write" or "both":
    # their sum; latency then from the reads), metric used as "throughput"
    ("seqread", "seq read 1 MiB QD16", "read", "bw_MBps"),
    ("seqwrite", "seq write 1 MiB QD16", "write", "bw_MBps"),
    ("randread", "rand read 4 KiB QD32", "read", "iops"),
    ("randwrite", "rand write 4 KiB QD32", "write", "iops"),
    ("randread-qd1", "rand read 4 KiB QD1", "read", "iops"),
    ("mixed", "mixed 70/30 4–64 KiB QD16", "both", "bw_MBps"),
    ("jobs4", "rand read 4 KiB 4 jobs × QD8", "read", "iops"),
    ("fs", "ext4 4 KiB write + fsync", "write", "iops"),
]
PEERS = ["nvme-tcp", "nbd"]
DST_MODES = [t for t, _ in TARGETS if t.startswith("dst-")]
# DST / peer pairs with a ratio: every mode against the plain peers, and the
# encrypted mode against the encrypted peer.
PAIRS = [(d, p) for d in DST_MODES for p in PEERS] + [("dst-aead", "nvme-tcp-tls")]
LABEL = dict(TARGETS)
JOB_LABEL = {j[0]: j[1] for j in JOBS}
JOB_SIDE = {j[0]: j[2] for j in JOBS}
# Jobs at queue depth 1, whose latency is the figure of interest.
LATENCY_JOBS = ("randread-qd1", "fs")
# Keys of a result that are not measured numbers (no median, no spread).
NOT_MEASURED = ("rounds", "failed_rounds", "round_ids", "ios")


def read_kv(path):
    """key=value lines of a file into a dict ({} if the file is missing)."""
    kv = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.rstrip("\n").partition("=")
                if sep:
                    # lines like "busy0=1 user0=2" hold several pairs
                    if " " in value and re.fullmatch(r"(\w+=\S+ ?)+", line.strip()):
                        for pair in line.split():
                            k, _, v = pair.partition("=")
                            kv[k] = v
                    else:
                        kv[key] = value
    except FileNotFoundError:
        pass
    return kv


def load_fio(path):
    """fio's JSON output (anything fio printed before the JSON is skipped)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    start = text.find("{")
    if start < 0:
        return None
    try:
        return json.loads(text[start:])
    except ValueError:
        return None


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def one_round(base, side, hostload):
    """The result of one round of one job on one target (files BASE.*); SIDE:
    fio's "read" or "write" figures, or "both" (summed; latency of the reads)."""
    meta = read_kv(base + ".meta")
    fio = load_fio(base + ".fio.json")
    res = {}
    if not fio or not fio.get("jobs"):
        err = ""
        try:
            with open(base + ".fio.err", encoding="utf-8", errors="replace") as f:
                err = " ".join(f.read().split())[-300:]
        except FileNotFoundError:
            pass
        res["error"] = f"no fio result (status {meta.get('status', '?')}) {err}".strip()
        return res
    fj = fio["jobs"][0]
    sides = [fj.get(x, {}) for x in (("read", "write") if side == "both" else (side,))]
    if fj.get("error"):
        res["error"] = f"fio error {fj['error']}"
    res["bw_MBps"] = sum(x.get("bw_bytes", 0) for x in sides) / 1e6
    res["iops"] = sum(x.get("iops", 0.0) for x in sides)
    res["ios"] = sum(x.get("total_ios", 0) for x in sides)
    side = sides[0]
    # Total latency (submission + completion): NVMe/TCP sends from
    # queue_rq, inside io_submit, so its completion latency alone (clat)
    # leaves most of its time out. Older results have clat only.
    lat = side.get("lat_ns", {})
    if "percentile" not in lat:
        lat = side.get("clat_ns", {})
    pct = lat.get("percentile", {})
    for name, key in (("lat_p50_us", "50.000000"), ("lat_p99_us", "99.000000")):
        v = pct.get(key)
        res[name] = v / 1000.0 if v is not None else None
    res["lat_mean_us"] = lat.get("mean", 0) / 1000.0
    sync = fj.get("sync", {})
    if sync.get("total_ios") and "percentile" in sync.get("lat_ns", {}):
        # A job that syncs (fs: a write, then fsync): the percentiles are
        # the fsync's, which take nearly all of the time (the buffered
        # write only copies to the page cache); the mean is the two's sum.
        pct = sync["lat_ns"]["percentile"]
        for name, key in (("lat_p50_us", "50.000000"), ("lat_p99_us", "99.000000")):
            v = pct.get(key)
            res[name] = v / 1000.0 if v is not None else None
        res["lat_mean_us"] += sync["lat_ns"].get("mean", 0) / 1000.0
        res["lat_of"] = "fsync"
    res["fio_usr_pct"] = fj.get("usr_cpu")
    res["fio_sys_pct"] = fj.get("sys_cpu")
    # CPU per IO over the window guest.sh sampled inside the measured part.
    hz, ncpu = num(meta.get("hz")), num(meta.get("ncpu"))
    t0, t1 = num(meta.get("t0")), num(meta.get("t1"))
    b0, b1 = num(meta.get("busy0")), num(meta.get("busy1"))
    i0, i1 = num(meta.get("idle0")), num(meta.get("idle1"))
    res["cpu_us_per_io"] = None
    io0, io1 = num(meta.get("ios0")) or 0, num(meta.get("ios1")) or 0
    if None not in (t0, t1) and meta.get("fio_running_at_t1") == "0":
        # The window ran past the job: its CPU time is not the job's.
        res["cpu_window_missed"] = "fio ended inside the CPU window"
    elif None not in (t0, t1) and io0 > 0 and io1 == io0:
        # The device counts its IOs, and none completed in the window.
        res["cpu_window_missed"] = "no IO completed in the CPU window"
    elif t0 is None or t1 is None:
        res["cpu_window_missed"] = "no CPU window: fio ended before it"
    if "cpu_window_missed" in res:
        # The host's load over fio's run instead (fio's time stamp is its
        # end; elapsed: its seconds, start-up included).
        end, elapsed = num(fio.get("timestamp_ms")), num(fj.get("elapsed"))
        if end is not None:
            res["host_load"] = host_load(hostload, end / 1e3 - (elapsed or 0), end / 1e3)
    elif None not in (hz, ncpu, t0, t1, b0, b1) and t1 > t0:
        window = t1 - t0
        busy_s = (b1 - b0) / hz
        ios = io1 - io0
        source = "device"
        if ios <= 0:
            ios = res["iops"] * window
            source = "fio"
        res["cpu_window_s"] = round(window, 3)
        res["cpu_busy_pct"] = 100.0 * busy_s / (window * ncpu)
        if i0 is not None and i1 is not None:
            # Ticks the guest accounted (busy + idle) against wall time: well
            # below 100 % means the host did not run the vCPUs for a while
            # (ticks lost) and CPU time is undercounted.
            res["cpu_accounted_pct"] = 100.0 * (busy_s + (i1 - i0) / hz) / (window * ncpu)
        res["cpu_ios_from"] = source
        if ios > 0:
            res["cpu_us_per_io"] = busy_s * 1e6 / ios
            for part in ("user", "sys", "softirq"):
                p0, p1 = num(meta.get(part + "0")), num(meta.get(part + "1"))
                if p0 is not None and p1 is not None:
                    res[f"cpu_{part}_us_per_io"] = (p1 - p0) / hz * 1e6 / ios
        # CPU per MiB moved: the bytes of the window from fio's bandwidth
        # (the device's counters count requests, not bytes).
        moved_mib = sum(x.get("bw_bytes", 0) for x in sides) * window / 2**20
        if moved_mib > 0:
            res["cpu_ms_per_MiB"] = busy_s * 1e3 / moved_mib
        res["host_load"] = host_load(hostload, t0, t1)
    return res


def host_load(samples, t0, t1):
    """Mean 1-minute host load average over [t0, t1] (nearest sample if none)."""
    if not samples:
        return None
    inside = [l for t, l in samples if t0 - 5 <= t <= t1 + 5]
    if inside:
        return sum(inside) / len(inside)
    return min(samples, key=lambda s: abs(s[0] - (t0 + t1) / 2))[1]


def median(values):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def one_result(raw, target, job, side, hostload):
    """One job on one target over its rounds: every number is the median of
    the rounds, with range[key] = [min, max] and per_round[key] the values in
    the order of round_ids (None for a failed round), so that ratios can be
    taken round by round (the targets of one round ran interleaved)."""
    prefix = f"{target}__{job}__r"
    rounds = sorted({f[len(prefix):].split(".")[0] for f in os.listdir(raw)
                     if f.startswith(prefix)}, key=lambda r: int(r) if r.isdigit() else 0)
    if not rounds:
        return {"error": "not run"}
    per = [one_round(os.path.join(raw, prefix + r), side, hostload) for r in rounds]
    good = [r for r in per if "error" not in r]
    if not good:
        return per[0]
    res, rng, values = {}, {}, {}
    keys = list(dict.fromkeys(k for r in good for k in r))
    for key in keys:
        sample = next((r[key] for r in good if r.get(key) is not None), None)
        if sample is None or is_number(sample):
            vals = [r.get(key) for r in good]
            res[key] = median(vals)
            if key in NOT_MEASURED or res[key] is None:
                continue
            known = [v for v in vals if v is not None]
            rng[key] = [min(known), max(known)]
            values[key] = [r.get(key) if "error" not in r else None for r in per]
        else:
            res[key] = sample
    res["rounds"] = len(good)
    res["round_ids"] = [int(r) if r.isdigit() else r for r in rounds]
    res["range"] = rng
    res["per_round"] = values
    if len(good) < len(per):
        res["failed_rounds"] = len(per) - len(good)
    return res


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def stat(values):
    """Median, min, max and count of the known values (None if there are none)."""
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"median": median(v), "min": min(v), "max": max(v), "n": len(v)}


def ratio_stat(a, b, key, op=ratio):
    """a[key] / b[key] for two results (of one_result) as a stat: round by
    round over the rounds both have, if both carry per-round values (the
    numbers of one round were measured minutes apart, in the same host
    conditions); else the ratio of the medians (n = 1: no spread known;
    older results.json files, as a baseline's may be, have no rounds).
    OP(x, y) instead of x / y: another pairing (difference)."""
    if not a or not b or "error" in a or "error" in b:
        return None
    pa, pb = (a.get("per_round") or {}).get(key), (b.get("per_round") or {}).get(key)
    if pa and pb:
        ra = dict(zip(a.get("round_ids", []), pa))
        rb = dict(zip(b.get("round_ids", []), pb))
        got = stat(op(ra[r], rb[r]) for r in ra if r in rb)
        if got:
            return got
    r = op(a.get(key), b.get(key))
    return None if r is None else {"median": r, "min": r, "max": r, "n": 1}


def difference(a, b):
    if a is None or b is None:
        return None
    return a - b


def scaled_stat(r, key, divisor):
    """r[key] / DIVISOR, round by round, as a stat."""
    if not r or "error" in r or not divisor:
        return None
    per = (r.get("per_round") or {}).get(key)
    got = stat(v / divisor for v in per if v is not None) if per else None
    if got:
        return got
    v = r.get(key)
    return None if v is None else {"median": v / divisor, "min": v / divisor,
                                   "max": v / divisor, "n": 1}


def crosses_one(st):
    """Whether a ratio's spread straddles 1.0: its rounds disagree about
    which side is ahead."""
    return bool(st) and st["min"] < 1.0 < st["max"]


# The transform each protected target uses (dstcfg's default algorithms),
# as dst.ko's crypto bench names it: mode (Protection's Debug name), algorithm.
CIPHER = {
    "dst-crc32c": ("Crc32c", "crc32c"),
    "dst-hmac": ("Hmac", "hmac(sha256)"),
    "dst-aead": ("Aead", "gcm(aes)"),
}
# Jobs in the protected-mode table: large IOs, where the per-byte cost
# (the cipher's) weighs most against the per-IO costs.
SEQ_JOBS = ("seqread", "seqwrite")
CIPHER_RE = re.compile(r"crypto bench: (\w+) (.+?): sealed (\d+) MiB in (\d+) MiB messages "
                       r"in (\d+) ms \((\d+) MiB/s\)")


def load_cipher(path):
    """dst.ko's "crypto bench:" lines (guest.sh's raw/cipher.txt) as a list
    of {mode, alg, MiB, ms, MBps, ms_per_MiB}: each transform sealing MiB
    MiB on one vCPU ([] if the file is missing or has none)."""
    found = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = CIPHER_RE.search(line)
                if not m:
                    continue
                mib, ms = int(m.group(3)), int(m.group(5))
                found.append({"mode": m.group(1), "alg": m.group(2), "MiB": mib, "ms": ms,
                              "message_MiB": int(m.group(4)),
                              "MBps": mib * 2**20 / (ms / 1e3) / 1e6,
                              "ms_per_MiB": ms / mib})
    except FileNotFoundError:
        pass
    return found


def protected(results, cipher, run):
    """Per protected target and sequential job: throughput, CPU per MiB (and
    its excess over DST none's, round by round), the cipher's own speed, and
    the throughput as a fraction of the cipher's speed and of DST none's
    (each fraction a stat over the rounds)."""
    out = {}
    by_name = {(c["mode"], c["alg"]): c for c in cipher}
    for t in [t for t in DST_MODES if t in CIPHER and t in run]:
        c = by_name.get(CIPHER[t])
        rows = {}
        for job in SEQ_JOBS:
            r = results.get(job, {}).get(t)
            if r is None:
                continue
            if "error" in r:
                rows[job] = {"error": r["error"]}
                continue
            none = results.get(job, {}).get("dst-none")
            rows[job] = {
                "throughput_MBps": result_stat(r, "bw_MBps"),
                "cpu_ms_per_MiB": result_stat(r, "cpu_ms_per_MiB"),
                "cpu_ms_per_MiB_over_none": ratio_stat(r, none, "cpu_ms_per_MiB", difference),
                "of_cipher": scaled_stat(r, "bw_MBps", c and c["MBps"]),
                "of_none": ratio_stat(r, none, "bw_MBps"),
                "rounds": r.get("rounds"),
                "cpu_window_missed": r.get("cpu_window_missed"),
            }
        out[t] = {"cipher": c, "jobs": rows}
    return out


def load_connect(path):
    """Connect and delete times (ms) from guest.sh's T__connect.txt."""
    conn, dele = [], []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    conn.append(float(parts[0]))
                    dele.append(float(parts[1]))
    except (FileNotFoundError, ValueError):
        return None
    if not conn:
        return None
    return {"tries": len(conn),
            "connect_ms": {"median": median(conn), "min": min(conn), "max": max(conn)},
            "delete_ms": {"median": median(dele), "min": min(dele), "max": max(dele)}}


def build(outdir):
    raw = os.path.join(outdir, "raw")
    env = read_kv(os.path.join(raw, "env.txt"))
    host = read_kv(os.path.join(raw, "host.txt"))
    hostload = []
    try:
        with open(os.path.join(raw, "hostload.txt"), encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2:
                    hostload.append((float(parts[0]), float(parts[1])))
    except (FileNotFoundError, ValueError):
        pass
    targets = {}
    for t, label in TARGETS:
        info = read_kv(os.path.join(raw, f"target-{t}.txt"))
        if not info:
            info = {"status": "not run"}
        if info.get("status") == "unavailable":
            info["status"] = "not available"
        for k in ("reason", "device", "setup"):
            if not info.get(k):
                info.pop(k, None)
        info["label"] = label
        targets[t] = info
    results = {}
    count = 0
    for job, _label, side, _metric in JOBS:
        results[job] = {}
        for t, _ in TARGETS:
            st = targets[t]["status"]
            if st in ("not available", "not run"):
                results[job][t] = {"error": st}
                continue
            r = one_result(raw, t, job, side, hostload)
            results[job][t] = r
            if "error" not in r:
                count += 1
    ratios = {}
    for job, _label, _s, metric in JOBS:
        ratios[job] = {}
        for d, p in PAIRS:
            rd, rp = results[job].get(d, {}), results[job].get(p, {})
            if "error" in rd or "error" in rp:
                continue
            e = {"throughput": ratio_stat(rd, rp, metric),
                 "cpu_per_io": ratio_stat(rd, rp, "cpu_us_per_io")}
            if job in LATENCY_JOBS:
                e["lat_p50"] = ratio_stat(rd, rp, "lat_p50_us")
                e["lat_p99"] = ratio_stat(rd, rp, "lat_p99_us")
            ratios[job][f"{d}/{p}"] = e
    connect = {}
    for t in DST_MODES:
        times = load_connect(os.path.join(raw, f"{t}__connect.txt"))
        if times:
            connect[t] = times
    cipher = load_cipher(os.path.join(raw, "cipher.txt"))
    memory_kib = num(env.get("memory_kib"))
    environment = {
        "date": env.get("date"),
        "kernel": env.get("kernel"),
        "bench_kernel": host.get("bench_kernel"),
        "kernel_tree": host.get("kernel_tree"),
        "kernel_debug_options": host.get("kernel_debug_options"),
        "vcpus": int(env["vcpus"]) if env.get("vcpus", "").isdigit() else None,
        "memory_mib": round(memory_kib / 1024) if memory_kib else None,
        "vm_memory": host.get("vm_memory"),
        "guest_cpu_model": env.get("cpu_model"),
        "emulation": host.get("emulation"),
        "qemu": host.get("qemu"),
        "host_cpu_model": host.get("host_cpu_model"),
        "host_cores": host.get("host_cores"),
        "host_load_before": host.get("host_load_before"),
        "host_load_after": host.get("host_load_after"),
        "fio": env.get("fio"),
        "nvme_cli": env.get("nvme_cli"),
        "nbdkit": env.get("nbdkit"),
        "nbd_client": env.get("nbd_client"),
        "dst": env.get("dst"),
        "lockdep": env.get("lockdep"),
        "rounds": num(env.get("rounds")),
        "runtime_s": num(env.get("runtime_s")),
        "ramp_s": num(env.get("ramp_s")),
        "vm_seconds": num(host.get("vm_seconds")),
        "vm_status": host.get("vm_status"),
        "kernel_warnings": num(env.get("kernel_warnings")),
    }
    run = [t for t, _ in TARGETS if targets[t]["status"] != "not run"]
    ran = [j for j, *_ in JOBS
           if any(results[j][t].get("error") not in ("not run", "not available") for t in run)]
    jobs = [{"id": j, "label": l, "throughput_metric": m} for j, l, _s, m in JOBS if j in ran]
    targets = {t: targets[t] for t in run}
    results = {j: {t: r for t, r in v.items() if t in run} for j, v in results.items() if j in ran}
    ratios = {j: v for j, v in ratios.items() if j in ran}
    doc = {
        "target_order": run,
        "environment": environment,
        "jobs": jobs,
        "targets": targets,
        "results": results,
        "ratios": ratios,
        "connect": connect,
        "cipher": cipher,
        "protected": protected(results, cipher, run),
        "notes": {
            "bw_MBps": "10^6 bytes per second",
            "lat": "fio total latency (submission + completion) percentiles, microseconds; "
            "for a job that fsyncs (fs, lat_of = fsync) the fsync's, and lat_mean_us the "
            "write's mean plus the fsync's",
            "cpu_us_per_io": "busy CPU time of the whole guest (all vCPUs: user, nice, "
            "system, irq, softirq, steal) per completed IO, sampled inside the measured window",
            "cpu_accounted_pct": "guest CPU ticks accounted (busy + idle) against wall time x "
            "vCPUs; well below 100 means the host did not run the vCPUs part of the time, "
            "so CPU time is undercounted",
            "host_load": "the host's 1-minute load average during the job",
            "rounds": "every number is the median of this many rounds; range[key] is its "
            "[min, max] over the rounds, per_round[key] its value in each of round_ids",
            "ratios": "DST mode / peer, each a stat: median, min, max of the per-round ratios "
            "(n rounds; a round's targets ran interleaved); throughput >1 is better for DST, "
            "cpu_per_io and lat <1 are better for DST; a spread from below to above 1.0 means "
            "the rounds disagree about which is ahead",
            "connect": "ms for dstcfg -a local (handshake and device creation, until the "
            "device path is printed) and for dstcfg -a delete; median, min, max of the tries",
            "cpu_ms_per_MiB": "busy CPU time of the whole guest per MiB moved (fio's bandwidth "
            "times the sampled window), milliseconds",
            "cipher": "dst.ko's own timing at load (crypto_bench=1): one vCPU sealing MiB MiB "
            "in message_MiB messages, in place, with each transform; MBps in 10^6 bytes/s",
            "protected": "per protected target and sequential job: throughput_MBps, "
            "cpu_ms_per_MiB, cpu_ms_per_MiB_over_none (minus DST none's, round by round), "
            "cipher (the target's transform, from cipher), of_cipher (throughput / the "
            "cipher's MBps) and of_none (throughput / DST none's, round by round); each "
            "a stat {median, min, max, n}",
        },
    }
    prof = load_profiles(outdir)
    if prof:
        doc["profile"] = prof
    return doc, count


# --------------------------------------------------------------------------
# Profiles (perf report text from guest.sh)

CATEGORIES = [
    ("idle", r"^(default_idle|pv_native_safe_halt|native_safe_halt|arch_cpu_idle|"
     r"default_idle_call|cpu_idle_poll|do_idle|acpi_idle|intel_idle|poll_idle|cpuidle|"
     r"mwait_idle|cpu_startup_entry)"),
    ("lockdep / lock debugging", r"^(__?lock_acquire|__?lock_release|lock_acquired|lock_contended|"
     r"mark_lock|mark_usage|mark_held_locks|validate_chain|check_prev_add|check_noncircular|"
     r"check_irq_usage|lookup_chain_cache|add_chain_cache|hlock_class|__?lockdep|lockdep_|"
     r"match_held_lock|lock_is_held|find_held_lock|debug_lockdep|__bfs|__lock_|"
     r"trace_hardirqs_|lockdep_hardirqs|lockdep_softirqs|rcu_lockdep|rcu_read_lock_held|"
     r"rcu_read_lock_any_held|lock_pin_lock|lock_unpin_lock|debug_check_no_locks|"
     r"do_raw_spin_|do_raw_read_|do_raw_write_|debug_spin|check_chain_key|print_lock|"
     r"__might_sleep|__might_resched|__might_fault|__cant_sleep|usage_match|"
     r"reacquire_held_locks|__rcu_read_lock|__rcu_read_unlock)"),
    ("DST module", r"^\[dst\] "),
    ("crypto / checksums", r"(crc32|aes|gcm|ghash|chacha|poly1305|crypto_|csum_partial|"
     r"sha256|blake)"),
    ("memory copies", r"^(memcpy|__memcpy|memmove|__memmove|copy_user|rep_movs|"
     r"_copy_to_iter|_copy_from_iter|copy_page|__copy_|copy_to_user|copy_from_user|"
     r"skb_copy|copy_mc|memcpy_orig|memcpy_to_page|memcpy_from_page|"
     r"csum_and_copy|_copy_mc|simple_copy_to_iter)"),
    ("memset / zeroing", r"^(memset|__memset|clear_page|clear_user|rep_stos|memset_orig)"),
    ("network stack (TCP/IP, sockets, skb)", r"^(tcp|__tcp|ip_|__ip|ipv4|inet|__inet|sk_|__sk_|"
     r"sock_|__sock|skb_|__skb|__alloc_skb|alloc_skb|kfree_skb|__kfree_skb|consume_skb|"
     r"__dev_queue_xmit|dev_hard_start_xmit|loopback_xmit|__netif|netif_|net_rx_action|"
     r"process_backlog|napi_|lock_sock|release_sock|__release_sock|kernel_sendmsg|"
     r"kernel_recvmsg|sk_stream|__sys_sendto|__sys_recvfrom|nf_|raw_local_deliver|"
     r"dst_release|dst_hold|__dst|sch_direct|__qdisc|qdisc_|pfifo|validate_xmit|"
     r"neigh_|__neigh|ip6_|eth_type_trans|__napi|page_frag|skb_|sendmsg|recvmsg)"),
    ("block layer / drivers", r"^(blk_|__blk|bio_|__bio|submit_bio|bvec_|brd_|"
     r"__submit_bio|bdev_|nvme|nbd_|dio_|__blkdev|blkdev_|iomap_|aio_|io_submit|"
     r"__x64_sys_io_|rq_qos|elv_|dd_|kyber|sbitmap|__sbitmap|__sbq|sbq_)"),
    ("scheduler / wake-ups", r"^(try_to_wake_up|ttwu|__schedule|schedule|finish_task_switch|"
     r"enqueue_|dequeue_|pick_next|pick_task|put_prev|set_next|update_curr|__switch_to|"
     r"switch_mm|__wake_up|wake_up|autoremove_wake|woken_wake|select_task_rq|psi_|"
     r"update_load_avg|update_rq_clock|sched_|__sched|prepare_task_switch|"
     r"kthread|worker_thread|process_one_work|__queue_work|queue_work|insert_work|"
     r"complete|wait_for_completion|__wait_for|prepare_to_wait|finish_wait|"
     r"check_preempt|resched|__resched|available_idle_cpu|newidle_balance|"
     r"sched_balance|load_balance|update_sd|idle_cpu|wakeup_preempt|ttwu_|"
     r"__mutex|mutex_|__rt_mutex|rwsem|down_|up_|osq_|_raw_spin_lock|_raw_spin_unlock|"
     r"raw_spin_rq|queued_spin|native_queued|__pv_queued)"),
    ("memory allocation", r"^(kmem_cache|__kmem_cache|__kmalloc|kmalloc|kfree|__slab|"
     r"___slab|slab_|alloc_pages|__alloc_pages|get_page_from_freelist|free_unref|"
     r"free_pages|__free_pages|mempool|__folio|folio_|rmqueue|kmalloc_|__put_page|"
     r"put_page|get_page|alloc_slab|memcg|__memcg|mod_memcg|obj_cgroup|refill_obj)"),
    ("IRQ / softirq / syscall entry", r"^(__do_softirq|handle_softirqs|irq_exit|"
     r"__irq_exit|asm_|sysvec_|do_syscall|entry_SYSCALL|syscall_|__x64_sys|"
     r"irqentry|do_softirq|__local_bh|local_bh|hrtimer|__hrtimer|tick_|"
     r"timekeeping|ktime_get|read_tsc|native_read_msr|native_write_msr|"
     r"lapic|x2apic|native_apic|handle_irq|__sysvec|clockevents|run_timer)"),
    ("RCU", r"^(rcu_|__rcu|call_rcu)"),
]
CATEGORY_RE = [(name, re.compile(rx)) for name, rx in CATEGORIES]


def categorize(sym, kind):
    if kind == ".":
        return "user space"
    for name, rx in CATEGORY_RE:
        if rx.search(sym):
            return name
    return "other kernel"


# Markers looked for anywhere in a sample's call chain (inclusive shares):
# "how much of the busy time was spent under X".
INCLUSIVE = [
    ("DST module code", r"^\[dst\] "),
    ("lockdep (lock_acquire/lock_release and below)",
     r"^(lock_acquire|lock_release|lock_acquired|lock_contended|lockdep_|__lock_acquire|"
     r"__lock_release|mark_lock|validate_chain|trace_hardirqs_|lock_is_held)"),
    ("socket send (tcp_sendmsg)", r"^(tcp_sendmsg|tcp_sendmsg_locked|tcp_sendpage|"
     r"sock_sendmsg|kernel_sendmsg|__sys_sendto|__sys_sendmsg)"),
    ("socket receive (tcp_recvmsg)", r"^(tcp_recvmsg|tcp_recvmsg_locked|sock_recvmsg|"
     r"kernel_recvmsg|__sys_recvfrom|tcp_read_sock)"),
    ("TCP/IP receive path (net_rx_action, tcp_v4_rcv)", r"^(net_rx_action|__netif_receive_skb|"
     r"tcp_v4_rcv|process_backlog|ip_rcv)"),
    ("memory copies", CATEGORIES[4][1]),
    ("crypto / checksums", CATEGORIES[3][1]),
    ("wake-ups (try_to_wake_up)", r"^(try_to_wake_up|__wake_up|wake_up_process|wake_up_q)"),
    ("context switches (__schedule)", r"^(__schedule|schedule$|schedule_timeout|"
     r"finish_task_switch)"),
    ("block layer (blk_mq_*, submit_bio)", r"^(blk_mq_|__blk_mq_|submit_bio|__submit_bio|"
     r"blk_finish_plug|bio_endio|blk_update_request)"),
    ("RAM disk (brd_submit_bio)", r"^brd_"),
    ("fio's io_submit / io_getevents", r"^(__x64_sys_io_submit|__x64_sys_io_getevents|"
     r"__x64_sys_io_pgetevents|io_submit_one|aio_)"),
]
INCLUSIVE_RE = [(n, re.compile(rx)) for n, rx in INCLUSIVE]
IDLE_RE = CATEGORY_RE[0][1]


# x86_64 module space (MODULES_VADDR with KASLR); everything else in the test
# kernel is built in.
MODULES_START = 0xFFFFFFFFC0000000


def parse_script(path):
    """Samples of a perf script dump: [(comm, [frames leaf first])]."""
    samples = []
    comm, frames = None, []
    head = re.compile(r"^(\S.*?)\s+(\d+)\s+\[(\d+)\]")
    frame = re.compile(r"^\s+([0-9a-f]+)\s+(.*?)\s*$")
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                if comm is not None:
                    samples.append((comm, frames))
                comm, frames = None, []
                continue
            m = frame.match(line)
            if m and comm is not None:
                addr, sym = m.group(1), m.group(2)
                sym = re.sub(r"\s+\([^()]*\)$", "", sym)  # a dso, if printed
                if int(addr, 16) >= MODULES_START:
                    # dst.ko is the test kernel's only loadable module
                    sym = "[dst] " + sym
                elif not addr.startswith("ffff"):
                    sym = "[user] " + (sym if sym and sym != "[unknown]" else "")
                frames.append(sym.strip())
                continue
            m = head.match(line)
            if m:
                if comm is not None:
                    samples.append((comm, frames))
                comm, frames = m.group(1).strip(), []
    if comm is not None:
        samples.append((comm, frames))
    return samples


def analyse(samples):
    total = len(samples)
    busy = [(c, fr) for c, fr in samples if fr and not IDLE_RE.search(fr[0])]
    nb = len(busy) or 1
    selfc, cats, comms, incl, dst_self = {}, {}, {}, {}, {}
    for comm, fr in busy:
        leaf = fr[0]
        selfc[leaf] = selfc.get(leaf, 0) + 1
        cat = "user space" if leaf.startswith("[user]") else categorize(leaf, "k")
        cats[cat] = cats.get(cat, 0) + 1
        name = re.sub(r"(kworker/[^-]*)-.*", r"\1", comm)
        name = re.sub(r"^kworker/\d+:\d+", "kworker/N:M", name)
        name = re.sub(r"^kworker/u\d+:\d+", "kworker/uN:M", name)
        comms[name] = comms.get(name, 0) + 1
        seen = set()
        for sym in fr:
            for n, rx in INCLUSIVE_RE:
                if n not in seen and rx.search(sym):
                    seen.add(n)
        for n in seen:
            incl[n] = incl.get(n, 0) + 1
        mod = next((sym for sym in fr if INCLUSIVE_RE[0][1].search(sym)), None)
        if mod:
            dst_self[mod] = dst_self.get(mod, 0) + 1

    def pct(d, limit=None):
        items = sorted(d.items(), key=lambda kv: -kv[1])[:limit]
        return [{"name": k, "pct_of_busy": 100.0 * v / nb} for k, v in items]

    return {
        "samples": total,
        "busy_samples": len(busy),
        "busy_pct_of_samples": 100.0 * len(busy) / total if total else 0.0,
        "self_categories": pct(cats),
        "top_symbols": pct(selfc, 20),
        "inclusive": [{"name": n, "pct_of_busy": 100.0 * incl.get(n, 0) / nb}
                      for n, _ in INCLUSIVE],
        "threads": pct(comms, 10),
        "dst_functions": pct(dst_self, 10),
    }


def short(sym, width=90):
    sym = re.sub(r"\s+", " ", sym)
    return sym if len(sym) <= width else sym[: width - 1] + "…"


def load_profiles(outdir):
    pdir = os.path.join(outdir, "profile")
    if not os.path.isdir(pdir):
        return None
    prof = {}
    for name in sorted(os.listdir(pdir)):
        if not name.endswith(".script.gz"):
            continue
        key = name[: -len(".script.gz")]
        try:
            samples = parse_script(os.path.join(pdir, name))
        except (OSError, EOFError):
            continue
        if samples:
            a = analyse(samples)
            r = one_round(os.path.join(pdir, key),
                          JOB_SIDE.get(key.partition("__")[2], "read"), [])
            a["fio"] = {k: r.get(k) for k in ("bw_MBps", "iops", "lat_p50_us", "cpu_busy_pct")}
            prof[key] = a
    return prof


# --------------------------------------------------------------------------
# Markdown

def fmt(v, kind):
    if v is None:
        return "—"
    if kind == "MBps":
        return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
    if kind == "iops":
        return f"{v:,.0f}"
    if kind == "us":
        return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
    if kind == "pct":
        return f"{v:.0f} %"
    if kind == "ratio":
        return f"{v:.2f}"
    if kind == "load":
        return f"{v:.1f}"
    return str(v)


def known_rounds(r, key):
    """How many of a result's rounds have KEY."""
    per = (r.get("per_round") or {}).get(key)
    if per is None:
        return (r.get("rounds") or 1) if r.get(key) is not None else 0
    return sum(v is not None for v in per)


def fmt_num(r, key, kind):
    """A result's number: its median, and over several rounds (min–max);
    "[n of m rounds]" if only some rounds have it."""
    v = r.get(key)
    rng = (r.get("range") or {}).get(key)
    rounds, known = r.get("rounds") or 1, known_rounds(r, key)
    if v is None or not rng or rounds < 2:
        return fmt(v, kind)
    if known < 2:
        text = fmt(v, kind)
    elif kind == "pct":
        text = f"{v:.0f} % ({rng[0]:.0f}–{rng[1]:.0f})"
    else:
        text = f"{fmt(v, kind)} ({fmt(rng[0], kind)}–{fmt(rng[1], kind)})"
    return text + (f" [{known} of {rounds} rounds]" if known < rounds else "")


CROSSES = "⚠ crosses 1.0"
# The numbers of guest.sh's CPU window ("no window" where it missed the job).
CPU_KEYS = ("cpu_us_per_io", "cpu_busy_pct", "cpu_accounted_pct")


def fmt_ratio(st, missing="—"):
    """A ratio stat: median (min–max), flagged when the spread crosses 1.0."""
    if not st:
        return missing
    if st["n"] < 2:
        return fmt(st["median"], "ratio")
    text = f"{fmt(st['median'], 'ratio')} ({fmt(st['min'], 'ratio')}–{fmt(st['max'], 'ratio')})"
    return f"{text} {CROSSES}" if crosses_one(st) else text


def doc_jobs(doc):
    """JOBS entries of the jobs this document has results for."""
    return [j for j in JOBS if j[0] in doc.get("results", {})]


def kernel_text(env):
    """Which kernel was measured, for the report's first line."""
    kind = env.get("bench_kernel")
    text = f"kernel {env.get('kernel')}"
    extra = []
    if kind:
        extra.append(f"{kind} kernel")
    if env.get("kernel_tree"):
        extra.append(f"tree {env['kernel_tree']}")
    if env.get("kernel_debug_options") is not None:
        extra.append("debug options: " + (env["kernel_debug_options"] or "none"))
    else:
        extra.append(f"lockdep {'on' if env.get('lockdep') == 'yes' else 'off'}")
    return text + " (" + "; ".join(extra) + ")"


SPREAD_NOTE = ("Each number is the median of the rounds, with the lowest and highest "
               "round in brackets; a ratio is taken round by round (the targets of one "
               "round ran interleaved, within minutes) and shown the same way. "
               f"\"{CROSSES}\": some rounds put one side ahead and some the other, so "
               "the run does not say which is faster.")


def markdown(doc):
    env = doc["environment"]
    res = doc["results"]
    tg = doc["targets"]
    cols = doc["target_order"]
    rounds = int(env.get("rounds") or 1)
    out = ["# DST benchmark results", ""]
    out.append(
        f"One run, {env.get('date') or '?'}: {kernel_text(env)}, "
        f"{env.get('vcpus')} vCPUs, {env.get('memory_mib')} MiB, {env.get('emulation')}; "
        f"{env.get('fio')}; "
        f"{env.get('runtime_s'):.0f} s per job after {env.get('ramp_s'):.0f} s ramp"
        f"{'' if rounds == 1 else ', median (min–max) of %d rounds' % rounds}; "
        f"host {env.get('host_cpu_model')} ({env.get('host_cores')} cores, load "
        f"{env.get('host_load_before')} before, {env.get('host_load_after')} after)."
        if env.get("runtime_s") is not None else "Environment unknown (no env.txt).")
    out.append("")
    if env.get("vm_status") not in (None, "0"):
        out.append(f"**The VM ended with status {env['vm_status']}** (124: timed out) after "
                   f"{env.get('vm_seconds') or 0:.0f} s: the tables have what was measured "
                   "before (guest.log and dmesg.log say how far the guest got).")
        out.append("")
    out.append("Targets, each on its own 512 MiB brd RAM disk, all over 127.0.0.1:")
    out.append("")
    for t in cols:
        info, label = tg[t], LABEL[t]
        if info["status"] in ("ok", "error"):
            extra = f" — {info.get('setup', '')}"
            if info.get("hw_queues"):
                extra += f"; {info['hw_queues']} hardware queue(s)"
            if info["status"] == "error":
                extra += f" (**errors**: {info.get('reason') or 'see the job tables'})"
        else:
            extra = f" — **{info['status']}**" + (f": {info.get('reason')}" if info.get("reason") else "")
        out.append(f"- {label}{extra}")
    out.append("")
    out.append("## Ratios (throughput, DST / peer; above 1: DST faster)")
    out.append("")
    out.extend(ratio_table(doc))
    out.append("")
    if rounds > 1:
        out.append(SPREAD_NOTE)
        out.append("")
    out.extend(protected_markdown(doc))
    for job, label, side, _metric in doc_jobs(doc):
        out.append(f"## {label}")
        out.append("")
        out.append("| | " + " | ".join(LABEL[c] for c in cols) + " |")
        out.append("|---|" + "---:|" * len(cols))

        def row(name, key, kind):
            vals = []
            for c in cols:
                r = res[job][c]
                if "error" in r and key == "bw_MBps":
                    vals.append(r["error"][:40] if r["error"] in ("not available", "not run")
                                else "error")
                elif "error" in r:
                    vals.append("")
                elif r.get(key) is None and key in CPU_KEYS and r.get("cpu_window_missed"):
                    vals.append("no window")
                else:
                    vals.append(fmt_num(r, key, kind))
            out.append(f"| {name} | " + " | ".join(vals) + " |")

        row("MB/s", "bw_MBps", "MBps")
        row("IOPS", "iops", "iops")
        lat = " (reads)" if side == "both" else " (fsync)" if job == "fs" else ""
        row(f"latency p50{lat} (µs)", "lat_p50_us", "us")
        row(f"latency p99{lat} (µs)", "lat_p99_us", "us")
        row("CPU per IO (µs)", "cpu_us_per_io", "us")
        row("CPU busy (all vCPUs)", "cpu_busy_pct", "pct")
        row("CPU ticks accounted", "cpu_accounted_pct", "pct")
        row("host load (1 min)", "host_load", "load")
        ratio_rows = [("throughput", "throughput"), ("CPU per IO", "cpu_per_io")]
        if job in LATENCY_JOBS:
            ratio_rows += [("latency p50", "lat_p50"), ("latency p99", "lat_p99")]
        for peer in sorted({p for d, p in PAIRS if p in cols}, key=cols.index):
            if not any(f"{c}/{peer}" in doc["ratios"][job] for c in cols):
                continue
            for rname, rkey in ratio_rows:
                vals = []
                for c in cols:
                    e = doc["ratios"][job].get(f"{c}/{peer}")
                    vals.append(fmt_ratio(e.get(rkey)) if e else "")
                out.append(f"| {rname} ÷ {LABEL[peer]} | " + " | ".join(vals) + " |")
        out.append("")
    out.extend(connect_markdown(doc))
    out.append("Throughput is MB/s for the 1 MiB and mixed-size jobs and IOPS for the 4 KiB "
               "jobs (the same ratio either way); the mixed job counts reads and writes "
               "together, its latency is that of its reads; the ext4 job's latency is that "
               "of its fsyncs (the buffered write before each only fills the page "
               "cache). Latency: fio total latency (submission + completion). CPU per IO: "
               "busy time of "
               "all vCPUs per completed IO (the whole guest: fio, the target's threads, the "
               "network stack, the RAM disk). CPU ticks accounted: the guest's busy + idle "
               "ticks against wall time; far below 100 % means the host did not run the "
               "vCPUs part of the time, and CPU per IO is undercounted. \"no window\": "
               "the CPU window guest.sh takes inside each job missed it (fio had ended, "
               "or no IO completed in it: a runtime too short for the host's load), "
               "\"[n of m rounds]\": only n rounds had one. Host load: the "
               "host's 1-minute load average while the job ran.")
    prof = doc.get("profile")
    if prof:
        out.append("")
        out.extend(profile_markdown(prof))
    return "\n".join(out) + "\n"


def protected_markdown(doc):
    """The protected modes against the cipher's own speed and DST none."""
    prot = doc.get("protected") or {}
    if not prot:
        return []
    out = ["## Protected modes against the cipher's own speed", "",
           "Per protected mode and sequential job: its throughput, the guest's CPU time per "
           "MiB moved and how much of it is beyond DST none's (round by round), the "
           "speed of the mode's transform alone (dst.ko sealing 256 MiB in 1 MiB messages "
           "at load, `crypto_bench=1`, on one vCPU), and the throughput as a fraction of "
           "that speed and of DST none's. Each MiB moved is sealed at one end and opened "
           "at the other, both in this guest, so the transform's own CPU time per MiB "
           "moved is about twice its time to seal one MiB (column \"seal + open\"); "
           "what \"beyond DST none\" has above that is the mode's overhead around the "
           "cipher (copies, hand-offs, waits). On a loaded host, whose scheduler does not "
           "always run the vCPUs, the cipher's timing (wall time) comes out slow and the "
           "CPU per MiB (the guest's ticks) low: \"beyond DST none\" can then stay below "
           "\"seal + open\".", "",
           "| mode | job | MB/s | CPU per MiB (ms) | beyond DST none (ms/MiB) "
           "| cipher MB/s (1 vCPU) | seal + open (ms/MiB) | ÷ cipher | ÷ DST none |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for t, p in prot.items():
        c = p.get("cipher")
        if c:
            cspeed = f"{fmt(c['MBps'], 'MBps')} ({c['alg']})"
            cms = f"{2 * c['ms_per_MiB']:.2f}"
        else:
            cspeed, cms = "not measured", "—"
        if not p["jobs"]:
            out.append(f"| {LABEL[t]} | (no sequential job run) | | | | {cspeed} | {cms} | | |")
        for job, e in p["jobs"].items():
            if "error" in e:
                out.append(f"| {LABEL[t]} | {JOB_LABEL[job]} | {e['error'][:40]} | | | "
                           f"{cspeed} | {cms} | | |")
                continue
            rounds = e.get("rounds") or 1

            def ms(st, sign="", missing=None):
                if not st:
                    return missing or ("no window" if e.get("cpu_window_missed") else "—")
                text = f"{st['median']:{sign}.2f}"
                if st["n"] >= 2:
                    text += f" ({st['min']:.2f}–{st['max']:.2f})"
                return text + (f" [{st['n']} of {rounds} rounds]" if st["n"] < rounds else "")

            cpu_text = ms(e.get("cpu_ms_per_MiB"))
            over_text = ms(e.get("cpu_ms_per_MiB_over_none"), "+",
                           "no window (DST none)" if e.get("cpu_ms_per_MiB") else None)
            out.append(f"| {LABEL[t]} | {JOB_LABEL[job]} | "
                       f"{fmt_stat(e.get('throughput_MBps'), 'MBps')} | {cpu_text} | "
                       f"{over_text} | {cspeed} | {cms} | "
                       f"{fmt_stat(e.get('of_cipher'), 'ratio')} | {fmt_ratio(e.get('of_none'))} |")
    if not doc.get("cipher"):
        out += ["", "No cipher speeds: the run's dst.ko logged no \"crypto bench:\" lines "
                "(loaded without `crypto_bench=1`, or a module without the parameter)."]
    out.extend(aead_target_markdown(doc))
    out.append("")
    return out


def aead_target_markdown(doc):
    """The AEAD target, per sequential job: at least 0.6 of DST none's
    throughput, or within 20 % of what the cipher allows (every vCPU busy
    with it, each MiB sealed and opened: vCPUs / 2 x its MB/s), whichever is
    lower; says which bound applied and whether the median met it."""
    p = (doc.get("protected") or {}).get("dst-aead")
    vcpus = doc["environment"].get("vcpus")
    if not p or not p.get("cipher") or not vcpus:
        return []
    cipher_bound = 0.8 * vcpus / 2 * p["cipher"]["MBps"]
    out = ["", "AEAD target (at least 0.6 of DST none's throughput, or within 20 % of what "
           f"the cipher allows: 0.8 x {vcpus} vCPUs / 2 x {fmt(p['cipher']['MBps'], 'MBps')} MB/s "
           f"= {fmt(cipher_bound, 'MBps')} MB/s, whichever is lower):", ""]
    for job, e in p["jobs"].items():
        got = (e.get("throughput_MBps") or {}).get("median")
        none = (doc["results"].get(job, {}).get("dst-none") or {}).get("bw_MBps")
        if got is None or none is None:
            continue
        none_bound = 0.6 * none
        bound, which = min((none_bound, "0.6 x DST none"), (cipher_bound, "the cipher's"))
        verdict = "met" if got >= bound else "missed"
        out.append(f"- {JOB_LABEL[job]}: {fmt(got, 'MBps')} MB/s against {which} bound of "
                   f"{fmt(bound, 'MBps')} MB/s (0.6 x DST none: {fmt(none_bound, 'MBps')}): "
                   f"**{verdict}** ({got / bound:.2f} of it)")
    return out


def connect_markdown(doc):
    conn = doc.get("connect") or {}
    if not conn:
        return []
    out = ["## DST connect time", "",
           "`dstcfg -a local` until it prints the device (the handshake, the device's "
           "creation and its first reads by the kernel's partition scan), and `dstcfg -a "
           "delete`, in ms: median (min–max).", "",
           "| | connect (ms) | delete (ms) | tries |", "|---|---:|---:|---:|"]
    for t in DST_MODES:
        c = conn.get(t)
        if not c:
            continue
        span = [f"{fmt(c[k]['median'], 'us')} ({fmt(c[k]['min'], 'us')}–{fmt(c[k]['max'], 'us')})"
                for k in ("connect_ms", "delete_ms")]
        out.append(f"| {LABEL[t]} | {span[0]} | {span[1]} | {c['tries']} |")
    out.append("")
    return out


def baseline_markdown(doc, base, rev):
    """Every DST number of this run against the same run of an older module."""
    out = [f"## Against the baseline {rev[:12] if rev else ''}", "",
           "The same jobs with the baseline's module and dstcfg on the same kernel, "
           "in the same VM: after each job dst.ko is swapped and the job runs again "
           "on the DST targets, the build that goes first alternating from job to job; "
           "medians of the rounds (min–max). Ratio = this tree ÷ baseline, round by "
           "round (each pair ran minutes apart): above 1 is faster for throughput, "
           "below 1 is better for CPU per IO, latency and connect time.", "",
           "| job | target | throughput | ÷ base | CPU/IO (µs) | ÷ base | p50 (µs) | ÷ base "
           "| p99 (µs) | ÷ base |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    bres = base.get("results", {})
    jobs = [j for j in doc_jobs(doc) if j[0] in bres]
    for job, label, _s, metric in jobs:
        for t in DST_MODES:
            now = doc["results"].get(job, {}).get(t)
            old = bres.get(job, {}).get(t)
            if not now or not old or "error" in now or "error" in old:
                continue
            kind = "MBps" if metric == "bw_MBps" else "iops"
            cells = []
            for key, k in ((metric, kind), ("cpu_us_per_io", "us"), ("lat_p50_us", "us"),
                           ("lat_p99_us", "us")):
                cells += [f"{fmt_num(now, key, k)} vs {fmt_num(old, key, k)}",
                          fmt_ratio(ratio_stat(now, old, key))]
            out.append(f"| {label} | {LABEL[t]} | " + " | ".join(cells) + " |")
    # Each mode against DST none of the same run: the jobs of one VM run
    # interleaved, so this cost does not move with the host's load between
    # VM boots, as the ratios above do.
    out += ["", "Cost of each mode: its throughput ÷ DST none's in the same run, "
            "round by round, this tree and baseline (1 = free; a lower number now = "
            "dearer now).", "",
            "| job | " + " | ".join(f"{LABEL[t]} now | base" for t in DST_MODES[1:]) + " |",
            "|---|" + "---:|---:|" * len(DST_MODES[1:])]
    for job, label, _s, metric in jobs:
        cells = []
        for t in DST_MODES[1:]:
            for res in (doc.get("results", {}), bres):
                mode, none = res.get(job, {}).get(t, {}), res.get(job, {}).get("dst-none", {})
                cells.append(fmt_ratio(ratio_stat(mode, none, metric)))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    bc, nc = base.get("connect") or {}, doc.get("connect") or {}
    rows = [t for t in DST_MODES if t in bc and t in nc]
    if rows:
        out += ["", "| connect (ms, median) | now | baseline | ÷ base |", "|---|---:|---:|---:|"]
        for t in rows:
            a, b = nc[t]["connect_ms"]["median"], bc[t]["connect_ms"]["median"]
            out.append(f"| {LABEL[t]} | {fmt(a, 'us')} | {fmt(b, 'us')} | "
                       f"{fmt(ratio(a, b), 'ratio')} |")
    out.append("")
    return out


def ratio_table(doc):
    run = doc["target_order"]
    cols = [(d, p) for d, p in PAIRS if d in run and p in run
            and any(f"{d}/{p}" in v for v in doc["ratios"].values())]
    if not cols:
        return ["(no ratios: DST or the peers NVMe/TCP and NBD were not run)"]
    lines = ["| job | " + " | ".join(f"{LABEL[d]} ÷ {LABEL[p]}" for d, p in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for job, label, _s, _m in doc_jobs(doc):
        vals = []
        for d, p in cols:
            e = doc["ratios"][job].get(f"{d}/{p}")
            vals.append(fmt_ratio(e["throughput"], "n/a") if e else "n/a")
        lines.append(f"| {label} | " + " | ".join(vals) + " |")
    for job in [j for j in LATENCY_JOBS if j in doc["ratios"]]:
        for key, name in (("lat_p50", "latency p50 (below 1: DST faster)"),
                          ("lat_p99", "latency p99")):
            vals = []
            for d, p in cols:
                e = doc["ratios"][job].get(f"{d}/{p}")
                vals.append(fmt_ratio(e.get(key), "n/a") if e else "n/a")
            lines.append(f"| {JOB_LABEL[job]}, {name} | " + " | ".join(vals) + " |")
    return lines


def profile_markdown(prof):
    out = ["## Profiles (perf record -a -g, cpu-clock at 499 Hz, all vCPUs)", ""]
    out.append("Each profiled job ran again after the measured ones. Shares are of the "
               "*busy* samples (idle samples removed); \"self\" is where the sample "
               "landed, \"inclusive\" counts a sample once if the marker is anywhere in "
               "its call chain.")
    for key, p in prof.items():
        t, _, j = key.partition("__")
        f = p.get("fio", {})
        out.append("")
        out.append(f"### {LABEL.get(t, t)}, {JOB_LABEL.get(j, j)}")
        out.append("")
        out.append(f"{p['samples']} samples, {p['busy_samples']} busy "
                   f"({p['busy_pct_of_samples']:.0f} %); during the profile: "
                   f"{fmt(f.get('bw_MBps'), 'MBps')} MB/s, {fmt(f.get('iops'), 'iops')} IOPS.")
        out.append("")
        out.append("| self, by category | % of busy |")
        out.append("|---|---:|")
        for c in p["self_categories"]:
            out.append(f"| {c['name']} | {c['pct_of_busy']:.1f} |")
        out.append("")
        out.append("| inclusive | % of busy |")
        out.append("|---|---:|")
        for c in p["inclusive"]:
            out.append(f"| {c['name']} | {c['pct_of_busy']:.1f} |")
        out.append("")
        out.append("| top symbols (self) | % of busy |")
        out.append("|---|---:|")
        for c in p["top_symbols"][:15]:
            out.append(f"| `{short(c['name'], 80)}` | {c['pct_of_busy']:.1f} |")
        if p["dst_functions"]:
            out.append("")
            out.append("| innermost DST function on the stack | % of busy |")
            out.append("|---|---:|")
            for c in p["dst_functions"][:8]:
                out.append(f"| `{short(c['name'], 80)}` | {c['pct_of_busy']:.1f} |")
        out.append("")
        out.append("Threads (busy samples): " + ", ".join(
            f"{c['name']} {c['pct_of_busy']:.0f} %" for c in p["threads"][:8]) + ".")
    return out


# --------------------------------------------------------------------------
# SVG

COLORS = {
    "nvme-tcp": "#4e79a7", "nvme-tcp-tls": "#2b4a6f", "nbd": "#9c9c9c", "dst-none": "#f28e2b",
    "dst-crc32c": "#e15759", "dst-hmac": "#b07aa1", "dst-aead": "#76b7b2",
}


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def two_lines(text, width):
    """TEXT in one line, or two split at the space nearest its middle if it
    is longer than WIDTH characters."""
    if len(text) <= width or " " not in text:
        return [text]
    spaces = [i for i, c in enumerate(text) if c == " "]
    cut = min(spaces, key=lambda i: abs(i - len(text) / 2))
    return [text[:cut], text[cut + 1:]]


def svg(doc):
    res = doc["results"]
    jobs = doc_jobs(doc)
    run = [t for t in ["nvme-tcp", "nvme-tcp-tls", "nbd"] + DST_MODES if t in doc["target_order"]]
    shown = [t for t in run if any("error" not in res[j][t] for j, *_ in jobs)]
    ref = next((t for t in ["nvme-tcp", "nbd", "dst-none"] if t in shown), None)
    W, H = max(960, 70 + 20 + 140 * len(jobs)), 460
    left, right, top, bottom = 70, 20, 80, 70
    pw, ph = W - left - right, H - top - bottom
    vals = {}
    for job, _l, _s, metric in jobs:
        base = res[job].get(ref, {}) if ref else {}
        for t in shown:
            vals[(job, t)] = ratio_stat(res[job][t], base, metric)
    vmax = max([v["max"] for v in vals.values() if v] + [1.0])
    ymax = max(1.0, math.ceil(vmax * 4 + 0.5) / 4)
    step = 0.25 if ymax <= 2 else 0.5 if ymax <= 4 else 1.0 if ymax <= 8 else 2.0
    env = doc["environment"]
    rounds = int(env.get("rounds") or 1)
    e = []
    e.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">')
    e.append(f'<rect width="{W}" height="{H}" fill="white"/>')
    title = f"Throughput normalised to {LABEL.get(ref, '?')} (= 1.0), higher is better"
    e.append(f'<text x="{W/2}" y="22" text-anchor="middle" font-size="16" '
             f'font-weight="bold">{esc(title)}</text>')
    spread = "one round" if rounds < 2 else f"median of {rounds} rounds, whiskers min–max"
    sub = (f"{env.get('date') or ''}, {spread}, {env.get('kernel')} "
           f"({env.get('bench_kernel') or ('lockdep' if env.get('lockdep') == 'yes' else '?')} "
           f"kernel), {env.get('vcpus')} vCPUs, software emulation; fio libaio direct, "
           f"loopback; brd baseline not drawn")
    e.append(f'<text x="{W/2}" y="40" text-anchor="middle" fill="#555">{esc(sub)}</text>')
    # legend
    lx = left
    for t in shown:
        e.append(f'<rect x="{lx}" y="52" width="12" height="12" fill="{COLORS[t]}"/>')
        e.append(f'<text x="{lx + 16}" y="62">{esc(LABEL[t])}</text>')
        lx += 30 + 8 * len(LABEL[t])
    # axes and grid
    y = 0.0
    while y <= ymax + 1e-9:
        py = top + ph - y / ymax * ph
        dash = "" if abs(y - 1.0) > 1e-9 else ' stroke-width="1.5"'
        color = "#ddd" if abs(y - 1.0) > 1e-9 else "#333"
        e.append(f'<line x1="{left}" y1="{py:.1f}" x2="{left + pw}" y2="{py:.1f}" '
                 f'stroke="{color}"{dash}/>')
        e.append(f'<text x="{left - 6}" y="{py + 4:.1f}" text-anchor="end">{y:.2f}</text>')
        y += step
    e.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#333"/>')
    gw = pw / max(1, len(jobs))
    bw = min(28.0, (gw - 20) / max(1, len(shown)))

    def ypos(v):
        return top + ph - v / ymax * ph

    for gi, (job, label, _s, _m) in enumerate(jobs):
        gx = left + gi * gw + (gw - bw * len(shown)) / 2
        for ti, t in enumerate(shown):
            v = vals[(job, t)]
            x = gx + ti * bw
            if v is None:
                e.append(f'<text x="{x + bw/2:.1f}" y="{top + ph - 4}" text-anchor="middle" '
                         f'font-size="9" fill="#999">n/a</text>')
                continue
            m = v["median"]
            h = m / ymax * ph
            tip = f"{LABEL[t]}, {label}: {fmt_ratio(v)}"
            e.append(f'<rect x="{x + 1:.1f}" y="{top + ph - h:.1f}" width="{bw - 2:.1f}" '
                     f'height="{h:.1f}" fill="{COLORS[t]}"><title>{esc(tip)}</title></rect>')
            top_y = ypos(m)
            if v["n"] > 1 and v["max"] > v["min"]:
                cx = x + bw / 2
                e.append(f'<line x1="{cx:.1f}" y1="{ypos(v["min"]):.1f}" x2="{cx:.1f}" '
                         f'y2="{ypos(v["max"]):.1f}" stroke="#222"/>')
                for w in (v["min"], v["max"]):
                    e.append(f'<line x1="{cx - 3:.1f}" y1="{ypos(w):.1f}" x2="{cx + 3:.1f}" '
                             f'y2="{ypos(w):.1f}" stroke="#222"/>')
                top_y = min(top_y, ypos(v["max"]))
            e.append(f'<text x="{x + bw/2:.1f}" y="{top_y - 3:.1f}" '
                     f'text-anchor="middle" font-size="9">{m:.2f}</text>')
        cx = left + gi * gw + gw / 2
        for li, part in enumerate(two_lines(label, 18)):
            e.append(f'<text x="{cx:.1f}" y="{top + ph + 18 + 14 * li}" '
                     f'text-anchor="middle" font-size="11">{esc(part)}</text>')
    e.append(f'<text x="{left + pw/2}" y="{H - 12}" text-anchor="middle" fill="#555">'
             f'MB/s for the 1 MiB and mixed jobs, IOPS for the others, each divided by '
             f'{esc(LABEL.get(ref, "?"))} in the same job and round</text>')
    missing = [LABEL[t] for t in run if t not in shown]
    if missing:
        e.append(f'<text x="{W - right}" y="62" text-anchor="end" fill="#999">'
                 f'not available: {esc(", ".join(missing))}</text>')
    e.append("</svg>")
    return "\n".join(e) + "\n"


# --------------------------------------------------------------------------
# Scaling (bench/run.sh BENCH_SCALING=1): one run per number of queues


def write_report(outdir, doc, base_lines=()):
    with open(os.path.join(outdir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    with open(os.path.join(outdir, "results.md"), "w", encoding="utf-8") as f:
        f.write(markdown(doc))
        if base_lines:
            f.write("\n" + "\n".join(base_lines))
    with open(os.path.join(outdir, "throughput.svg"), "w", encoding="utf-8") as f:
        f.write(svg(doc))


def result_stat(r, key):
    """A result's number as a stat (median, min, max over its rounds)."""
    if not r or "error" in r or r.get(key) is None:
        return None
    lo, hi = (r.get("range") or {}).get(key, [r[key], r[key]])
    return {"median": r[key], "min": lo, "max": hi, "n": max(1, known_rounds(r, key))}


def build_scaling(sdir):
    """The runs in SDIR/qN (N queues each), their reports written, and the
    series of each job x target over N."""
    steps = []
    for name in os.listdir(sdir):
        m = re.fullmatch(r"q(\d+)", name)
        if m and os.path.isdir(os.path.join(sdir, name, "raw")):
            steps.append((int(m.group(1)), name))
    steps.sort()
    docs = []
    for n, name in steps:
        doc, _count = build(os.path.join(sdir, name))
        write_report(os.path.join(sdir, name), doc)
        docs.append((n, name, doc))
    jobs = [j for j in JOBS if any(j[0] in d["results"] for _n, _name, d in docs)]
    targets = [t for t, _ in TARGETS if any(d["targets"].get(t, {}).get("status") in ("ok", "error")
                                            for _n, _name, d in docs)]
    out = {"steps": [], "jobs": [{"id": j, "label": l, "throughput_metric": m}
                                 for j, l, _s, m in jobs], "series": {}}
    for n, name, doc in docs:
        env = doc["environment"]
        out["steps"].append({
            "queues": n, "folder": name, "vcpus": env.get("vcpus"),
            "kernel": env.get("kernel"), "bench_kernel": env.get("bench_kernel"),
            "rounds": env.get("rounds"), "date": env.get("date"),
            "hw_queues": {t: doc["targets"][t].get("hw_queues") for t in doc["target_order"]},
            "status": {t: doc["targets"][t]["status"] for t in doc["target_order"]}})
    for job, _l, _s, metric in jobs:
        for t in targets:
            pts = []
            for n, _name, doc in docs:
                r = doc["results"].get(job, {}).get(t)
                pts.append({"queues": n, "throughput": result_stat(r, metric),
                            "cpu_us_per_io": result_stat(r, "cpu_us_per_io")})
            out["series"][f"{t}/{job}"] = pts
    out["targets"] = targets
    return out


def scaling_markdown(sc):
    steps = sc["steps"]
    out = ["# DST benchmark: scaling with queues", ""]
    if not steps:
        return "\n".join(out + ["No runs (no qN/raw folders).", ""])
    first = steps[0]
    out.append(f"One VM per step, {first.get('kernel')} ({first.get('bench_kernel')} kernel), "
               f"median (min–max) of {first.get('rounds') or '?':.0f} round(s); DST "
               "`--queues N` and `nvme connect --nr-io-queues N` at step N. The step's "
               "folder (qN/results.md) has every number of its run.")
    out.append("")
    out.append("| step | vCPUs | hardware queues (" + ", ".join(LABEL[t] for t in sc["targets"])
               + ") |")
    out.append("|---:|---:|---|")
    for s in steps:
        hq = ", ".join(str(s["hw_queues"].get(t) or s["status"].get(t, "—"))
                       for t in sc["targets"])
        out.append(f"| {s['queues']} | {s.get('vcpus')} | {hq} |")
    out.append("")
    for job in sc["jobs"]:
        kind = "MBps" if job["throughput_metric"] == "bw_MBps" else "iops"
        unit = "MB/s" if kind == "MBps" else "IOPS"
        out.append(f"## {job['label']}")
        out.append("")
        out.append("| queues | " + " | ".join(
            f"{LABEL[t]} {unit} | × first | CPU per IO (µs)" for t in sc["targets"]) + " |")
        out.append("|---:|" + "---:|---:|---:|" * len(sc["targets"]))
        for i, s in enumerate(steps):
            cells = []
            for t in sc["targets"]:
                pts = sc["series"].get(f"{t}/{job['id']}", [])
                p = pts[i] if i < len(pts) else {}
                tp, cpu = p.get("throughput"), p.get("cpu_us_per_io")
                base = pts[0].get("throughput") if pts else None
                cells.append(fmt_stat(tp, kind))
                cells.append(fmt(ratio(tp and tp["median"], base and base["median"]), "ratio"))
                rounds = int(s.get("rounds") or 1)
                if cpu is None and tp is not None:
                    cells.append("no window")
                elif cpu is not None and cpu["n"] < rounds:
                    cells.append(f"{fmt_stat(cpu, 'us')} [{cpu['n']} of {rounds} rounds]")
                else:
                    cells.append(fmt_stat(cpu, "us"))
            out.append(f"| {s['queues']} | " + " | ".join(cells) + " |")
        out.append("")
    out.append("\"× first\": the median against the first step's (separate VM boots: "
               "no round-by-round pairing). CPU per IO: busy time of all vCPUs per IO; "
               "\"no window\": the CPU window missed the job in every round, \"[n of m "
               "rounds]\": only n rounds had one (see Documentation/performance.md).")
    return "\n".join(out) + "\n"


def fmt_stat(st, kind):
    if not st:
        return "—"
    if st["n"] < 2:
        return fmt(st["median"], kind)
    return f"{fmt(st['median'], kind)} ({fmt(st['min'], kind)}–{fmt(st['max'], kind)})"


def line_panel(x0, y0, w, h, title, xs, series, kind):
    """One line chart: SERIES [(label, color, dash, [stat or None per x])]."""
    e = [f'<text x="{x0 + w / 2:.1f}" y="{y0 - 8:.1f}" text-anchor="middle" '
         f'font-weight="bold">{esc(title)}</text>']
    vals = [p["max"] for _l, _c, _d, pts in series for p in pts if p]
    vmax = max(vals) if vals else 1.0
    mag = 10 ** math.floor(math.log10(vmax)) if vmax > 0 else 1
    step = next(m * mag for m in (0.2, 0.5, 1, 2, 5) if vmax / (m * mag) <= 6)
    ymax = step * math.ceil(vmax / step) if vmax > 0 else 1
    y = 0.0
    while y <= ymax + step / 1e6:
        py = y0 + h - y / ymax * h
        e.append(f'<line x1="{x0}" y1="{py:.1f}" x2="{x0 + w}" y2="{py:.1f}" stroke="#ddd"/>')
        e.append(f'<text x="{x0 - 6}" y="{py + 4:.1f}" text-anchor="end" font-size="10">'
                 f'{esc(fmt(y, kind))}</text>')
        y += step
    e.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 + h}" stroke="#333"/>')
    e.append(f'<line x1="{x0}" y1="{y0 + h}" x2="{x0 + w}" y2="{y0 + h}" stroke="#333"/>')

    def px(i):
        return x0 + (i + 0.5) * w / max(1, len(xs))

    def py(v):
        return y0 + h - v / ymax * h

    for i, x in enumerate(xs):
        e.append(f'<text x="{px(i):.1f}" y="{y0 + h + 16}" text-anchor="middle" '
                 f'font-size="11">{esc(x)}</text>')
    for label, color, dash, pts in series:
        coords = [(px(i), py(p["median"])) for i, p in enumerate(pts) if p]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            e.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                     f'stroke-width="2"{dash}/>')
        for i, p in enumerate(pts):
            if not p:
                continue
            if p["max"] > p["min"]:
                e.append(f'<line x1="{px(i):.1f}" y1="{py(p["min"]):.1f}" x2="{px(i):.1f}" '
                         f'y2="{py(p["max"]):.1f}" stroke="{color}"/>')
            e.append(f'<circle cx="{px(i):.1f}" cy="{py(p["median"]):.1f}" r="3.5" '
                     f'fill="{color}"><title>{esc(label)}, {esc(xs[i])}: '
                     f'{esc(fmt_stat(p, kind))}</title></circle>')
    return e


def scaling_svg(sc):
    steps, jobs, targets = sc["steps"], sc["jobs"], sc["targets"]
    xs = [f"{s['queues']} q / {s.get('vcpus')} vCPU" for s in steps]
    pw, ph, gap = 380, 200, 90
    W = 70 + 2 * pw + gap + 30
    H = 90 + len(jobs) * (ph + 80)
    e = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
         f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">'
         'Throughput and CPU per IO against queues (and vCPUs)</text>']
    first = steps[0] if steps else {}
    e.append(f'<text x="{W / 2}" y="40" text-anchor="middle" fill="#555">'
             f'{esc(first.get("kernel"))} ({esc(first.get("bench_kernel"))} kernel), one VM '
             'per step, median and min–max of the rounds; software emulation, loopback</text>')
    lx = 70
    for t in targets:
        e.append(f'<rect x="{lx}" y="52" width="12" height="12" fill="{COLORS.get(t, "#000")}"/>')
        e.append(f'<text x="{lx + 16}" y="62">{esc(LABEL[t])}</text>')
        lx += 30 + 8 * len(LABEL[t])
    for ji, job in enumerate(jobs):
        y0 = 100 + ji * (ph + 80)
        kind = "MBps" if job["throughput_metric"] == "bw_MBps" else "iops"
        unit = "MB/s" if kind == "MBps" else "IOPS"
        for pi, (key, title, k) in enumerate(
                (("throughput", f"{job['label']}: {unit}", kind),
                 ("cpu_us_per_io", f"{job['label']}: CPU per IO (µs)", "us"))):
            series = [(LABEL[t], COLORS.get(t, "#000"), "",
                       [p.get(key) for p in sc["series"].get(f"{t}/{job['id']}", [])])
                      for t in targets]
            e += line_panel(70 + pi * (pw + gap), y0, pw, ph, title, xs, series, k)
    e.append("</svg>")
    return "\n".join(e) + "\n"


def main_scaling(sdir):
    sc = build_scaling(sdir)
    with open(os.path.join(sdir, "scaling.json"), "w", encoding="utf-8") as f:
        json.dump(sc, f, indent=1)
        f.write("\n")
    text = scaling_markdown(sc)
    with open(os.path.join(sdir, "scaling.md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(sdir, "scaling.svg"), "w", encoding="utf-8") as f:
        f.write(scaling_svg(sc))
    print()
    print(text)
    print("report in scaling.md, scaling.json, scaling.svg (and qN/results.md per step)")
    return 0 if sc["steps"] else 1


def main():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--scaling":
        return main_scaling(args[1])
    basedir = None
    if len(args) == 3 and args[1] == "--baseline":
        basedir = args[2]
        args = args[:1]
    if len(args) != 1:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        print(__doc__.strip().splitlines()[3], file=sys.stderr)
        return 2
    outdir = args[0]
    doc, count = build(outdir)
    base_lines = []
    if basedir:
        try:
            with open(os.path.join(basedir, "results.json"), encoding="utf-8") as f:
                base = json.load(f)
            rev = read_kv(os.path.join(outdir, "baseline.txt")).get("baseline", "")
            doc["baseline"] = {"revision": rev, "results": base.get("results"),
                               "connect": base.get("connect"),
                               "environment": base.get("environment")}
            base_lines = baseline_markdown(doc, base, rev)
        except (OSError, ValueError) as e:
            base_lines = [f"(baseline {basedir}: not readable: {e})", ""]
    write_report(outdir, doc, base_lines)
    print()
    print("DST / peer, throughput (above 1: DST faster); QD1 latency (below 1: DST faster):")
    print()
    print("\n".join(ratio_table(doc)))
    for t in doc["target_order"]:
        label = LABEL[t]
        st = doc["targets"][t]["status"]
        if st != "ok":
            print(f"\n{label}: {st}" + (f" ({doc['targets'][t].get('reason')})"
                                        if doc["targets"][t].get("reason") else ""), end="")
    print()
    if base_lines:
        print()
        print("\n".join(base_lines))
    print(f"\n{count} job results; report in results.md, results.json, throughput.svg")
    return 0 if count else 1


if __name__ == "__main__":
    sys.exit(main())
