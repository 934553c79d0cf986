"""One measurement, run in a subprocess of its own so that its peak RSS is its own.

Modes (each prints one JSON object on stdout):

``pinspect``
    (a) the library: ``open_program`` (target + debug info), the probe (``probe``, zones,
    valid pfn ranges: what ``find_pinned`` computes once per program), then ``find_pinned``
    over all zones, each timed separately.
``cli``
    (a) the command line: ``pinspect -c CORE -s VMLINUX pinned --format json``, end to end.
``drgn``
    (b) drgn's idiomatic loop: ``for page in for_each_page(prog)`` reading ``page.flags`` and
    ``page._refcount`` from each page Object, stopped after ``--sample`` pages.
``read``
    (c) a bare ``prog.read`` of the same struct page bytes as (a), in 4 MiB chunks, no decoding.

Every mode reports ``startup_s`` (interpreter and imports), ``open_s`` (target and debug info)
and ``peak_rss_kib`` (VmHWM, or the child's ru_maxrss for ``cli``).

    python3 -m benchmarks.measure pinspect --core VMCORE --vmlinux VMLINUX
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

T0 = time.perf_counter()

import drgn  # noqa: E402
import numpy  # noqa: E402, F401  (part of the start-up cost pinspect pays)

import pinspect.report  # noqa: E402, F401
from pinspect.kernel import probe  # noqa: E402
from pinspect.scan import clip_ranges, valid_ranges  # noqa: E402
from pinspect.target import open_program  # noqa: E402
from pinspect.zones import zones  # noqa: E402

CHUNK_BYTES = 4 << 20


def process_age() -> float:
    """Seconds since this process started (from /proc, 10 ms resolution)."""
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def open_target(args: argparse.Namespace) -> tuple[drgn.Program, float]:
    t = time.perf_counter()
    prog = open_program(core=args.core, vmlinux=args.vmlinux, qemu=args.qemu)
    return prog, time.perf_counter() - t


def scan_ranges(prog: drgn.Program) -> list[tuple[int, int, int]]:
    """The pfn ranges find_pinned reads with no zone filter: valid pfns inside the zones."""
    kernel = probe(prog)
    return clip_ranges(valid_ranges(kernel), [(z.start_pfn, z.end_pfn) for z in zones(kernel)])


def run_pinspect(args: argparse.Namespace, result: dict[str, Any]) -> None:
    from pinspect.report import find_pinned

    prog, result["open_s"] = open_target(args)
    result["rss_after_open_kib"] = status_kib("VmRSS")
    t = time.perf_counter()
    scan_ranges(prog)  # the probe, zones and valid pfn ranges, cached for find_pinned
    result["probe_s"] = time.perf_counter() - t
    t = time.perf_counter()
    report = find_pinned(prog)
    result["scan_s"] = time.perf_counter() - t
    result["pages"] = report.scanned + report.skipped_free  # pages covered by the scan
    result["unreadable"] = report.unreadable
    result["folios"] = len(report.pages)
    result["found"] = [[p.pfn, p.nr_pages, p.evidence] for p in report.pages]


def run_cli(args: argparse.Namespace, result: dict[str, Any]) -> None:
    cmd = ["pinspect"]
    if args.core:
        cmd += ["-c", args.core]
    if args.qemu:
        cmd += ["--qemu", args.qemu]
    for v in args.vmlinux:
        cmd += ["-s", v]
    out = f"/tmp/pinspect-bench-cli-{os.getpid()}.json"
    cmd += ["pinned", "--format", "json", "-o", out]
    t = time.perf_counter()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    result["wall_s"] = time.perf_counter() - t
    result["child_peak_rss_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(out) as f:
        doc = json.load(f)
    os.unlink(out)
    result["pages"] = doc["scanned"] + doc["skipped_free"]
    result["folios"] = len(doc["pages"])


def run_drgn(args: argparse.Namespace, result: dict[str, Any]) -> None:
    from drgn.helpers.linux.mm import for_each_page

    prog, result["open_s"] = open_target(args)
    total = sum(end - start for start, end, _ in scan_ranges(prog))
    n = 0
    t = time.perf_counter()
    for page in for_each_page(prog):
        try:
            page.flags.value_()
            page._refcount.counter.value_()
        except drgn.FaultError:
            pass
        n += 1
        if n >= args.sample:
            break
    result["sample_s"] = time.perf_counter() - t
    result["sampled"] = n
    result["pages"] = total
    result["scan_s"] = result["sample_s"] * total / n  # extrapolated


def run_read(args: argparse.Namespace, result: dict[str, Any]) -> None:
    prog, result["open_s"] = open_target(args)
    ranges = scan_ranges(prog)
    size = probe(prog).layout.size
    step = CHUNK_BYTES // size
    pages = faults = 0
    t = time.perf_counter()
    for start, end, base in ranges:
        for pfn in range(start, end, step):
            n = min(step, end - pfn)
            try:
                prog.read(base + pfn * size, n * size)
                pages += n
            except drgn.FaultError:
                faults += n
    result["scan_s"] = time.perf_counter() - t
    result["pages"] = pages
    result["unreadable"] = faults


MODES = {"pinspect": run_pinspect, "cli": run_cli, "drgn": run_drgn, "read": run_read}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=sorted(MODES))
    ap.add_argument("--core")
    ap.add_argument("--qemu")
    ap.add_argument("--vmlinux", action="append", default=[])
    ap.add_argument("--sample", type=int, default=200_000)
    args = ap.parse_args()
    result: dict[str, Any] = {"mode": args.mode, "startup_s": process_age(),
                              "imports_s": time.perf_counter() - T0}
    MODES[args.mode](args, result)
    result["peak_rss_kib"] = status_kib("VmHWM")
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
