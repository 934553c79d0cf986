"""The measurements against ``/proc/kcore``, inside a guest (a kernel reading itself).

The real-kernel harness's custom 6.1 kernel (``cma61``) shares the host's ``/`` read-only over
9p; the guest mounts it, chroots into it and runs :mod:`benchmarks.measure` there without
``--core``, so pinspect and drgn open the running kernel. Everything runs under QEMU TCG on
one emulated CPU: the numbers say what bounds a live scan, not what hardware would do.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks import realdump
from benchmarks.common import REPO, bench_dir
from tests.realkernel import harness

KERNEL = "cma61"
MOUNT = (
    "mkdir -p /host && mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 "
    "hostroot /host && mount -t proc proc /host/proc && mount -t sysfs sys /host/sys && "
    "mount -t devtmpfs dev /host/dev && mount -t tmpfs tmp /host/tmp && echo mounted"
)


def vmlinux() -> str:
    return str(realdump.prepared_kernel(harness.KERNELS[KERNEL]).vmlinux)


@contextmanager
def guest_runner() -> Iterator[Callable[[str, int], dict[str, Any]]]:
    """Boot the guest; yield ``run(mode, sample)`` that runs one measurement inside it."""
    with realdump.boot(KERNEL, None, bench_dir() / f"live-{KERNEL}") as guest:
        status, text = guest.shell(MOUNT, timeout=120)
        if status != 0 or "mounted" not in text:
            raise RuntimeError(f"cannot mount the host root in the guest: {text}")
        python = sys.executable
        env = (f"PYTHONDONTWRITEBYTECODE=1 PYTHONPATH={shlex.quote(str(REPO))} HOME=/tmp "
               f"PATH={shlex.quote(str(Path(python).parent))}:/usr/bin:/bin")

        def run(mode: str, sample: int) -> dict[str, Any]:
            cmd = (f"cd {shlex.quote(str(REPO))} && /usr/bin/env {env} {shlex.quote(python)} "
                   f"-m benchmarks.measure {mode} --vmlinux {shlex.quote(vmlinux())}")
            if sample:
                cmd += f" --sample {sample}"
            status, text = guest.shell(f"chroot /host /bin/sh -c {shlex.quote(cmd)}",
                                       timeout=3600)
            lines = [line for line in text.splitlines() if line.startswith("{")]
            if status != 0 or not lines:
                raise RuntimeError(f"in-guest {mode} exited {status}: {text[-3000:]}")
            return json.loads(lines[-1])  # type: ignore[no-any-return]

        yield run
