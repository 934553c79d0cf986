"""Fixtures and helpers of the real-kernel tier: each kernel boots once per test session.

conftest.py registers the fixture and the hooks; test modules import the helpers from here (a
module of its own name, since tests/conftest.py is also called conftest).

Environment:
  PINSPECT_REALKERNELS   comma-separated kernels to test (default: all of harness.KERNELS:
                         deb510,deb61,deb612,deb72,cma61,cma72,pp61)
  PINSPECT_CACHE         cache directory (default ~/.cache/pinspect)
  PINSPECT_KEEP_DUMPS=1  keep the dumps of the last run in $PINSPECT_CACHE/realkernel/run/
  CI=true                a missing tool or kernel fails the tests instead of skipping them
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.realkernel.expect import pinner_marked
from tests.realkernel.harness import (
    KERNELS,
    GroundTruth,
    Guest,
    HarnessError,
    Kernel,
    cache_dir,
    in_ci,
    log,
    virtiofsd_binary,
)
from tests.realkernel.harness import prepare_kernel as _prepare_kernel

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

KERNEL_NAMES = [
    k.strip()
    for k in os.environ.get("PINSPECT_REALKERNELS", ",".join(KERNELS)).split(",")
    if k.strip()
]
TOOLS = ("qemu-system-x86_64", "gcc", "busybox", "cpio", "apt-get", "dpkg-deb", "xz", "make")


def unavailable(why: str) -> None:
    """A resource is missing: fail loudly in CI, skip elsewhere."""
    if in_ci():
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)


def pinspect_available() -> bool:
    return importlib.util.find_spec("pinspect") is not None and (
        importlib.util.find_spec("pinspect.cli") is not None
    )


@dataclass
class Booted:
    """A kernel booted with the workload, its ground truth and its dumps."""

    name: str
    kernel: Kernel
    guest: Guest
    gt: GroundTruth
    dumps: dict[str, Path]  # "elf", "kdump"
    timings: dict[str, float]
    cli_cache: dict[tuple[str, ...], Any] = field(default_factory=dict)
    guest_runs: list[tuple[int, float]] = field(default_factory=list)  # (commands, seconds)

    def guest_timings(self) -> dict[str, float]:
        return {f"in-guest run {i + 1} ({n} commands)": t
                for i, (n, t) in enumerate(self.guest_runs)}

    @property
    def version(self) -> tuple[int, int]:
        major, minor = self.kernel.release.split(".")[:2]
        return int(major), int(minor.split("-")[0])

    @property
    def vmlinux(self) -> Path:
        return self.kernel.vmlinux

    @functools.cached_property
    def pinner_marked(self) -> set[int] | None:
        """pp61 (``pinwork --pinner``): the pfns its trace left marked by page_pinner
        (:func:`expect.pinner_marked`); None on kernels without page_pinner."""
        if "--pinner" not in self.kernel.spec.workload_args:
            return None
        trace = self.guest.share / "trace.txt"
        assert trace.exists(), f"{self.name}: the guest wrote no {trace}; log {self.gt.log}"
        return pinner_marked(trace.read_text(errors="replace"))

    def kernel_config(self) -> str:
        """The kernel's .config where the cache has it (fetch-debian-kernel.sh, build-kernel.sh)."""
        path = self.kernel.bzimage.parent / "config"
        return path.read_text() if path.exists() else ""


_timings: dict[str, dict[str, float]] = {}


@pytest.fixture(scope="session", params=KERNEL_NAMES)
def booted(request: pytest.FixtureRequest) -> Iterator[Booted]:
    name: str = request.param
    if name not in KERNELS:
        pytest.fail(f"unknown kernel {name!r} in PINSPECT_REALKERNELS", pytrace=False)
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        unavailable(f"tools missing: {' '.join(missing)} (bash .ci/run installs them)")
    if KERNELS[name].virtiofs and (virtiofsd_binary() is None or shutil.which("unshare") is None):
        unavailable(f"{name} shares the host's / over virtio-fs: virtiofsd (qemu-system-common)"
                    " and unshare (util-linux) needed")
    t0 = time.monotonic()
    try:
        kernel = _prepare_kernel(KERNELS[name])
    except (HarnessError, subprocess.CalledProcessError, OSError) as e:
        unavailable(f"kernel {name} unavailable: {e}")
        raise
    timings = {"prepare_kernel": time.monotonic() - t0}
    workdir = cache_dir() / "realkernel" / "run" / name
    if workdir.exists():
        shutil.rmtree(workdir)
    guest = Guest(kernel, workdir)
    try:
        gt = guest.start()
        timings["boot_to_ready"] = guest.boot_seconds
        (workdir / "ground-truth.json").write_text(json.dumps(gt.to_json(), indent=1) + "\n")
        # distinctive names: pinspect caches its rebuild of a flattened kdump file under
        # $PINSPECT_CACHE/cores/<basename>-<hash>.kdump, removed below with the dumps
        dumps = {"elf": workdir / f"rk-{name}.elf", "kdump": workdir / f"rk-{name}.kdump"}
        timings["dump_elf"] = guest.dump(dumps["elf"], "elf")
        timings["dump_kdump"] = guest.dump(dumps["kdump"], "kdump-zlib")
        _timings.setdefault(name, {}).update(timings)
        yield Booted(name, kernel, guest, gt, dumps, timings)
    finally:
        guest.stop()
        if os.environ.get("PINSPECT_KEEP_DUMPS") != "1":
            for f in [*workdir.glob(f"rk-{name}.*"), *(cache_dir() / "cores").glob(f"rk-{name}.*")]:
                f.unlink()


# --------------------------------------------------------------------------------------------
# Running pinspect


CLI = "import sys; from pinspect.cli import main; sys.exit(main())"


def require_pinspect() -> None:
    if not pinspect_available():
        pytest.skip("pinspect CLI (pinspect.cli) is not importable yet")


def target_args(b: Booted, target: str) -> list[str]:
    if target in ("elf", "kdump"):
        return ["-c", str(b.dumps[target]), "-s", str(b.vmlinux)]
    if target == "qmp":
        return ["--qemu", str(b.guest.qmp_drgn_path), "-s", str(b.vmlinux)]
    raise ValueError(target)


def run_pinspect_host(args: list[str], timeout: float = 1800) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"pinspect {' '.join(args)} exited {proc.returncode}\n"
            f"stdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}"
        )
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def run_pinspect(b: Booted, target: str, *command: str) -> dict[str, Any]:
    """pinspect --format json COMMAND against one target; results cached per session. The first
    kcore request runs KCORE_BATCH with it in one in-guest run."""
    require_pinspect()
    key = (target, *command)
    if key in b.cli_cache:
        return b.cli_cache[key]  # type: ignore[no-any-return]
    if target == "kcore":
        batch = [c for c in kcore_batch(b) if ("kcore", *c) not in b.cli_cache]
        if command not in batch:
            batch.append(command)
        args = [["-s", str(b.vmlinux), "--format", "json", *c] for c in batch]
        for c, doc in zip(batch, run_pinspect_in_guest_batch(b, args), strict=True):
            b.cli_cache[("kcore", *c)] = doc
        _timings.setdefault(b.name, {}).update(b.guest_timings())
        return b.cli_cache[key]  # type: ignore[no-any-return]
    t0 = time.monotonic()
    result = run_pinspect_host([*target_args(b, target), "--format", "json", *command])
    took = time.monotonic() - t0
    log(f"{b.name}: pinspect {' '.join(command)} on {target}: {took:.1f}s")
    if command[0] == "pinned":
        _timings.setdefault(b.name, {})[f"{' '.join(command)} on {target}"] = took
    b.cli_cache[key] = result
    return result


def kcore_batch(b: Booted) -> list[tuple[str, ...]]:
    """The commands the tests ask of /proc/kcore with DWARF, run together in the guest (each
    in-guest Python start costs seconds under TCG). The kcore target scans the Normal zone
    only."""
    batch: list[tuple[str, ...]] = [("pinned", "--zone", "Normal"), ("zones",)]
    if b.kernel.spec.cma:
        batch.append(("cma", "--blockers"))
    return batch


def in_guest_runs(b: Booted) -> bool:
    """Whether pinspect can run inside the guest (the host's / shared over 9p or virtio-fs)."""
    return bool(b.kernel.spec.host_root)


def require_in_guest(b: Booted) -> None:
    if not in_guest_runs(b):
        pytest.skip(f"{b.name} shares no host root (9p or virtio-fs) for in-guest runs")


def run_pinspect_in_guest(b: Booted, args: list[str], hide_vmlinux: bool = False
                          ) -> dict[str, Any]:
    """Run pinspect once inside the guest against /proc/kcore."""
    return run_pinspect_in_guest_batch(b, [args], hide_vmlinux)[0]


def run_pinspect_in_guest_batch(b: Booted, jobs: list[list[str]], hide_vmlinux: bool = False
                                ) -> list[dict[str, Any]]:
    """Run several pinspect command lines inside the guest against /proc/kcore, one after the
    other in one Python process (tests/realkernel/guestbatch.py: each through pinspect.cli.main
    as the command line would, the target opened anew each time); the host's / is shared
    read-only and the JSON outputs come back through the writable share. With *hide_vmlinux*
    the directories holding the kernels' vmlinux files are covered by empty tmpfs mounts for
    the run, so the guest sees no vmlinux at all."""
    require_in_guest(b)
    share = b.guest.share
    outs = [share / f"result-{i}.json" for i in range(len(jobs))]
    for o in outs:
        o.unlink(missing_ok=True)
    status_file = share / "batch-status.json"
    status_file.unlink(missing_ok=True)
    spec = [{"args": [*a, "-o", str(o)]} for a, o in zip(jobs, outs, strict=True)]
    (share / "batch.json").write_text(json.dumps(spec))
    t0 = time.monotonic()
    status, text = guest_chroot(
        b, [sys.executable, str(HERE / "guestbatch.py"), str(share / "batch.json"),
            str(status_file)], hide=vmlinux_dirs(b) if hide_vmlinux else ())
    took = time.monotonic() - t0
    log(f"{b.name}: in-guest batch of {len(jobs)} ({'BTF only' if hide_vmlinux else 'DWARF'}):"
        f" {took:.1f}s")
    b.guest_runs.append((len(jobs), took))
    for line in text.strip().splitlines()[-len(jobs) - 1:]:
        log(f"{b.name}:   guest: {line}")
    if status != 0 or not status_file.exists():
        raise AssertionError(f"in-guest pinspect batch exited {status}:\n{text[-4000:]}")
    results = json.loads(status_file.read_text())
    docs = []
    for job, res, o in zip(jobs, results, outs, strict=True):
        if res["status"] != 0:
            raise AssertionError(f"in-guest pinspect {' '.join(job)} exited {res['status']} "
                                 f"after {res['seconds']:.1f}s:\n{res['stderr'][-3000:]}")
        docs.append(json.loads(o.read_text()))
    return docs


def vmlinux_dirs(b: Booted) -> list[Path]:
    """Directories that hold a vmlinux the guest could find: the kernel's own cache directory
    and every kernels/ directory of the caches on this machine (other developers' private
    caches hold the same kernels)."""
    dirs = {b.vmlinux.resolve().parent, cache_dir().resolve() / "kernels"}
    for kernels in Path.home().glob(".cache/pinspect*/kernels"):
        dirs.add(kernels.resolve())
    return sorted(d for d in dirs if d.is_dir())


def _sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def guest_chroot(b: Booted, argv: list[str], timeout: float = 1800,
                 hide: Sequence[Path] = ()) -> tuple[int, str]:
    """Run argv inside the guest in a chroot of the host's / (read-only 9p or virtio-fs), where
    the host path of the guest's share directory is writable (and the same directory as on the
    host). Each directory of *hide* is covered by an empty read-only tmpfs during the run."""
    enter_host_root(b)
    share = _sh_quote(str(b.guest.share))
    env = f"PYTHONDONTWRITEBYTECODE=1 PYTHONPATH={_sh_quote(str(REPO))} HOME={share} "
    env += f"PINSPECT_CACHE={share}/cache"
    run = f"chroot /host /usr/bin/env {env} {' '.join(_sh_quote(a) for a in argv)}"
    if hide:
        points = " ".join(_sh_quote("/host" + str(d)) for d in hide)
        # a directory gone since (another cache removed) has nothing to hide; a failed mount
        # stops the run (status 9); every mount is undone either way
        run = (f"( s=0; for d in {points}; do [ -d \"$d\" ] || continue; "
               f"mount -t tmpfs -o ro,size=4k hidden \"$d\" || s=9; done; "
               f"[ $s = 0 ] && {{ {run}; s=$?; }}; "
               f"for d in {points}; do umount \"$d\" 2>/dev/null; done; (exit $s) )")
    # The guest's shell on ttyS1 is busybox ash reading a tty, whose line editor keeps at most
    # 1024 characters of a line and drops the rest: a longer command (many caches to hide)
    # left the shell waiting for the rest of a compound command forever. So the command goes
    # through a script on the writable share, and the line stays short.
    script = b.guest.share / "guest-command.sh"
    script.write_text(run + "\n")
    return b.guest.shell(f"sh {_sh_quote('/host' + str(script))}", timeout=timeout)


def enter_host_root(b: Booted) -> None:
    """Mount the host's / (read-only 9p or virtio-fs) at /host in the guest with proc, sys and
    dev, and the writable share "out" over the host path of the share directory. Nothing is
    mounted over the host's /tmp: the checkout (and so the tests) may live there."""
    if getattr(b.guest, "_host_root", False):
        return
    share = _sh_quote("/host" + str(b.guest.share))
    if b.kernel.spec.host_root == "virtiofs":
        root = "mount -t virtiofs -o ro hostroot /host"
        out = f"mount -t virtiofs out {share}"
    else:
        root = ("mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /host")
        out = f"mount -t 9p -o trans=virtio,version=9p2000.L out {share}"
    script = (
        f"mkdir -p /host && {root} && mount -t proc proc /host/proc && "
        f"mount -t sysfs sys /host/sys && mount -t devtmpfs dev /host/dev && {out} && "
        "echo mounted"
    )
    status, text = b.guest.shell(script, timeout=120)
    if status != 0 or "mounted" not in text:
        raise AssertionError(f"cannot mount the host root in the guest: {text}")
    b.guest._host_root = True  # type: ignore[attr-defined]
