"""A real dump with many pinned pages in many processes, with page_owner and a big CMA area.

Boots the real-kernel harness's custom 6.1 kernel (``cma61``: page_owner=on, CMA, the host's
``/`` over 9p) with more memory and a bigger CMA area than the tier uses (8 GiB, ``cma=4G`` by
default), runs :file:`benchwork.c` (built static on the host, run from the 9p share) with
``PROCS`` processes pinning ``PAGES`` small pages each (half io_uring fixed buffers, half
vmsplice), then takes a kdump-zlib dump and a sparse ELF dump into
``$PINSPECT_CACHE/bench/real-cma61-manypins/`` (or ``--out``)::

    python3 -m benchmarks.manypins [--procs 50] [--pages 2000] [--gib 8] [--cma 4G]

The benchmarks of ``pinned --stacks``, ``stacks``, ``pinned --owners`` and ``cma`` run on it
(``python3 -m benchmarks.commands``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, bench_dir, disk_usage, log, make_sparse
from benchmarks.kcore import MOUNT
from benchmarks.realdump import prepared_kernel
from tests.realkernel import harness

KERNEL = "cma61"


def build_benchwork() -> Path:
    src = REPO / "benchmarks" / "benchwork.c"
    out = bench_dir() / f"benchwork-{harness._digest(src.read_bytes())}"
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        subprocess.run(["gcc", "-static", "-O2", "-Wall", "-o", str(tmp), str(src)], check=True)
        tmp.rename(out)
    return out


def default_out() -> Path:
    return bench_dir() / f"real-{KERNEL}-manypins"


def paths(out: Path | None = None) -> dict[str, Any] | None:
    """The dump's paths.json if a complete dump exists, else None."""
    p = (out or default_out()) / "paths.json"
    return json.loads(p.read_text()) if p.exists() else None


def make(procs: int, pages: int, gib: int, cma: str, out: Path, elf: bool = True) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "paths.json").unlink(missing_ok=True)
    work = build_benchwork()
    spec = harness.KERNELS[KERNEL]
    spec = dataclasses.replace(spec, name=f"{KERNEL}-manypins", mem_mib=gib * 1024,
                               append=f"page_owner=on cma={cma}")
    kernel = prepared_kernel(spec)
    with harness.Guest(kernel, out / "run") as guest:
        guest.start(timeout=1800)
        status, text = guest.shell(MOUNT, timeout=300)
        if status != 0 or "mounted" not in text:
            raise harness.HarnessError(f"cannot mount the host root in the guest: {text}")
        status, text = guest.shell(f"/host{shlex.quote(str(work))} {procs} {pages}",
                                   timeout=3600)
        log(f"benchwork: {text.strip()}")
        if status != 0 or "BENCH-READY" not in text:
            raise harness.HarnessError(f"benchwork failed ({status}): {text[-2000:]}")
        _, meminfo = guest.shell("grep -E 'MemTotal|MemFree|Cma' /proc/meminfo")
        entry: dict[str, Any] = {
            "kernel": KERNEL, "release": kernel.release, "vmlinux": str(kernel.vmlinux),
            "procs": procs, "pages_per_proc": pages, "gib": gib, "cma": cma,
            "benchwork": text.strip(), "meminfo": meminfo.split("\n"),
            "boot_seconds": guest.boot_seconds,
        }
        kdump = out / "vmcore.kdump"
        guest.dump(kdump, "kdump-zlib")
        entry["kdump"] = str(kdump)
        if elf:
            path = out / "vmcore.elf"
            guest.dump(path, "elf")
            make_sparse(path)
            log(f"{path}: {path.stat().st_size >> 20} MiB, {disk_usage(path) >> 20} MiB on disk")
            entry["elf"] = str(path)
        assert guest.ground_truth is not None
        gt = out / "ground-truth.json"
        gt.write_text(json.dumps(guest.ground_truth.to_json(), indent=1) + "\n")
        entry["ground_truth"] = str(gt)
    (out / "paths.json").write_text(json.dumps(entry, indent=1) + "\n")
    return entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=50)
    ap.add_argument("--pages", type=int, default=2000, help="pinned pages per process")
    ap.add_argument("--gib", type=int, default=8, help="guest memory")
    ap.add_argument("--cma", default="4G", help="the kernel's cma= size")
    ap.add_argument("--no-elf", action="store_true", help="only the kdump-zlib dump")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    entry = make(args.procs, args.pages, args.gib, args.cma, args.out or default_out(),
                 elf=not args.no_elf)
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    main()
