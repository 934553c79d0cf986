"""Boot a large real-kernel guest with the real-kernel harness and dump it (ELF + kdump-zlib).

The guest is the harness's Debian 6.1 cloud kernel configuration with more memory (16 GiB by
default). The ELF dump is made sparse right after QEMU writes it, so that it costs on disk
about what the guest used. Results go to ``$PINSPECT_CACHE/bench/real-<kernel>-<N>g/``::

    python3 -m benchmarks.realdump [--kernel deb61] [--gib 16]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import bench_dir, disk_usage, log, make_sparse
from tests.realkernel import harness


def dump_dir(kernel: str, gib: int) -> Path:
    return bench_dir() / f"real-{kernel}-{gib}g"


def paths(kernel: str, gib: int) -> dict[str, Any] | None:
    """The dump's paths.json if a complete dump exists, else None."""
    p = dump_dir(kernel, gib) / "paths.json"
    if not p.exists():
        return None
    return json.loads(p.read_text())  # type: ignore[no-any-return]


def prepared_kernel(spec: harness.KernelSpec) -> harness.Kernel:
    """The harness's kernel for *spec*; a custom kernel already built in the cache is used as
    it is (prepare_kernel would first wait for any other build-kernel.sh on the machine)."""
    if spec.kind == "custom":
        kdir = harness.cache_dir() / "kernels" / f"linux-{spec.version}-cma"
        if (kdir / "bzImage").exists() and (kdir / "vmlinux").exists():
            release = f"{spec.version}-cma"
            return harness.Kernel(spec, kdir / "bzImage", kdir / "vmlinux", release, ())
    return harness.prepare_kernel(spec)


def boot(kernel: str, gib: int | None, workdir: Path) -> Any:
    """A started :class:`harness.Guest` (use as a context manager: it stops the guest);
    *gib* overrides the memory size of the harness's configuration."""
    # no virtio-fs share (the Debian kernels' in-guest runs): the benchmarks measure dumps and
    # QMP, and virtio-fs would put guest RAM on a shared memfd
    spec = dataclasses.replace(harness.KERNELS[kernel], virtiofs=False)
    if gib is not None:
        spec = dataclasses.replace(spec, name=f"{kernel}-{gib}g", mem_mib=gib * 1024)
    guest = harness.Guest(prepared_kernel(spec), workdir)
    try:
        guest.start(timeout=1200)
    except BaseException:
        guest.stop()
        raise
    return guest


def make(kernel: str = "deb61", gib: int = 16,
         while_running: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Boot, optionally run *while_running(guest)* (the live QMP measurement), then dump."""
    out = dump_dir(kernel, gib)
    out.mkdir(parents=True, exist_ok=True)
    (out / "paths.json").unlink(missing_ok=True)
    with boot(kernel, gib, out / "run") as guest:
        if while_running is not None:
            while_running(guest)
        elf, kdump = out / "vmcore.elf", out / "vmcore.kdump"
        guest.dump(elf, "elf")
        make_sparse(elf)
        log(f"{elf}: {elf.stat().st_size >> 20} MiB, {disk_usage(elf) >> 20} MiB on disk")
        guest.dump(kdump, "kdump-zlib")
        gt = out / "ground-truth.json"
        gt.write_text(json.dumps(guest.ground_truth.to_json(), indent=1) + "\n")
        entry = {"kernel": kernel, "gib": gib, "release": guest.kernel.release,
                 "elf": str(elf), "kdump": str(kdump), "vmlinux": str(guest.kernel.vmlinux),
                 "ground_truth": str(gt), "boot_seconds": guest.boot_seconds}
    (out / "paths.json").write_text(json.dumps(entry, indent=1) + "\n")
    return entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="deb61")
    ap.add_argument("--gib", type=int, default=16)
    args = ap.parse_args()
    print(json.dumps(make(args.kernel, args.gib), indent=1))


if __name__ == "__main__":
    main()
