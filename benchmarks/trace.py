"""Benchmark of ``pinspect trace`` on a generated trace (not a timed test).

    python3 -m benchmarks.trace [--mib 1024]

Generates (once) a ftrace text trace of page_pinner and page_ref events with stacks
(:mod:`benchmarks.tracegen`) in ``~/.cache/pinspect/bench/``, then runs ``pinspect trace`` on
it in a fresh process and on an empty-ish trace for the start-up baseline, and prints lines/s
and the peak RSS above start-up (the issue's bound: 200 MiB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import tracegen
from benchmarks.common import bench_dir, log


def child_peak_kib(cmd: list[str]) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of *cmd* run to completion in a child process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, _, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - t
    return took, int(usage.ru_maxrss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=float, default=1024)
    ap.add_argument("--distinct", type=int, default=65536,
                    help="distinct failing pfns (default: a 256 MiB CMA area's)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    path = args.out or bench_dir() / f"trace-{int(args.mib)}m-{args.distinct}.txt"
    meta = path.with_suffix(".json")
    if not path.exists() or not meta.exists():
        log(f"generating {path} ({args.mib:.0f} MiB)")
        info = tracegen.write(path, mib=args.mib, distinct=args.distinct)
        meta.write_text(json.dumps(info))
    info = json.loads(meta.read_text())
    small = bench_dir() / "trace-small.txt"
    tracegen.write(small, pfns=4)
    base = [sys.executable, "-m", "pinspect", "trace", "--format", "json", "-o", "/dev/null"]
    _, start_kib = child_peak_kib(base + [str(small)])
    took, peak_kib = child_peak_kib(base + [str(path)])
    result = {
        "bytes": info["bytes"], "lines": info["lines"], "failures": info["failures"],
        "failing_pfns": info["pfns"],
        "seconds": round(took, 1), "lines_per_s": int(info["lines"] / took),
        "mib_per_s": round(info["bytes"] / took / (1 << 20), 1),
        "startup_rss_mib": round(start_kib / 1024, 1), "peak_rss_mib": round(peak_kib / 1024, 1),
        "above_startup_mib": round((peak_kib - start_kib) / 1024, 1),
        "load": open("/proc/loadavg").read().split()[0],
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
