"""Real-kernel test tier: fetch/build kernels, build the guest initramfs, boot QEMU, dump memory.

Stdlib only. Everything downloaded or built is cached in ``$PINSPECT_CACHE`` (default
``~/.cache/pinspect``); nothing is written to the repository.

Command line (for development)::

    python3 tests/realkernel/harness.py dev [deb510 deb61 deb612 deb72 cma61 cma72 pp61]

boots each kernel, waits for the workload, writes an ELF and a kdump-zlib dump plus the ground
truth to ``$PINSPECT_CACHE/dev/<kernel>/`` and lists the paths in ``$PINSPECT_CACHE/dev/READY.txt``;

    python3 tests/realkernel/harness.py serve cma61

boots one kernel and keeps it running for ``pinspect --qemu SOCKET`` until interrupted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

READY_MARKER = "PINSPECT-READY"


class HarnessError(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("PINSPECT_CACHE", Path.home() / ".cache" / "pinspect"))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def log(msg: str) -> None:
    print(f"[realkernel {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Kernels


@dataclass(frozen=True)
class KernelSpec:
    """One guest configuration of the tier."""

    name: str
    kind: str  # "debian" (fetched by metapackage) or "custom" (built by build-kernel.sh)
    metapackage: str = ""
    suite: str = ""  # Debian suite through private lists (debian-apt.sh); "" = the machine's apt
    version: str = ""  # custom kernels: the linux-source-<version> that build-kernel.sh builds
    cpu: str = "max"  # "max" gives LA57 (5-level paging); "max,la57=off" 4-level
    append: str = ""
    workload_args: tuple[str, ...] = ()
    mem_mib: int = 4608
    smp: int = 2  # the workload faults on CPU 1 and drains from CPU 0
    page_owner: bool = False
    cma: bool = False
    virtfs: bool = False  # share the host's / read-only over virtio-9p (custom kernel only)
    # custom kernels: out-of-tree modules build-kernel.sh leaves beside the kernel, for /init
    custom_modules: tuple[str, ...] = ()
    virtiofs: bool = False  # share it over virtio-fs instead (Debian's cloud kernels lack 9p)

    @property
    def host_root(self) -> str:
        """How the guest reaches the host's / for in-guest runs: "9p", "virtiofs" or ""."""
        return "9p" if self.virtfs else "virtiofs" if self.virtiofs else ""


def _custom(name: str, version: str, modules: tuple[str, ...] = ()) -> KernelSpec:
    """A kernel built by build-kernel.sh VERSION: CMA, page_owner, 9p root, 5-level paging;
    with *modules* (pinmod.ko: the workload's --pinmod pages)."""
    pinmod = ("--pinmod",) if "pinmod.ko" in modules else ()
    return KernelSpec(
        name,
        "custom",
        version=version,
        cpu="max",
        append="page_owner=on cma=256M",
        workload_args=("--cma", "--page-owner", *pinmod),
        page_owner=True,
        cma=True,
        virtfs=True,
        custom_modules=modules,
    )


# pp61: cma61 with linux-6.1-page_pinner.patch (page_pinner events and page_ext flag), page_ref
# tracepoints and CMA debugfs; page_pinner, page_isolation, cma and mm_migrate_pages events are
# traced from boot with their stacks. Its workload (--pinner) makes a CMA allocation fail on
# pinned pages, compacts memory, and releases some pins, then leaves the trace in the ring
# buffer (PINLOG pinner {...} says which pfns it pinned and released), copied to the 9p share.
# The shared tests expect the page_pinner flag (evidence "pinner") on the pfns the trace's
# page_pinner_failure events marked; tests/realkernel/test_realkernel_trace.py checks the rest.
PP61_TRACE_EVENTS = "page_pinner:*,page_isolation:*,cma:*,migrate:mm_migrate_pages"
PP61 = KernelSpec(
    "pp61",
    "custom",
    version="6.1-pp",
    cpu="max",
    append=f"page_owner=on cma=256M page_pinner=on trace_event={PP61_TRACE_EVENTS} "
    "trace_options=stacktrace trace_buf_size=16M",
    workload_args=("--cma", "--page-owner", "--pinner"),
    page_owner=True,
    cma=True,
    virtfs=True,
)


# Debian's 5.10 is built without CONFIG_X86_5LEVEL (4-level only); deb72 runs 7.2 (which always
# has 5-level support) on 4-level page tables, cma72 on 5-level ones.
# The Debian cloud kernels have no 9p (CONFIG_NET_9P unset) but virtio-fs: built in from 6.12,
# modules up to 6.1 (virtiofs.ko, fuse.ko and the virtio PCI transport, loaded by /init).
KERNELS: dict[str, KernelSpec] = {
    "deb510": KernelSpec(
        "deb510", "debian", "linux-image-cloud-amd64", suite="bullseye", cpu="max,la57=off",
        virtiofs=True,
    ),
    "deb61": KernelSpec(
        "deb61", "debian", "linux-image-cloud-amd64", cpu="max,la57=off", virtiofs=True
    ),
    "deb612": KernelSpec(
        "deb612", "debian", "linux-image-6.12-cloud-amd64", cpu="max", virtiofs=True
    ),
    "deb72": KernelSpec(
        "deb72", "debian", "linux-image-cloud-amd64", suite="sid", cpu="max,la57=off",
        virtiofs=True,
    ),
    "cma61": _custom("cma61", "6.1", modules=("pinmod.ko",)),
    "cma72": _custom("cma72", "7.2"),
    "pp61": PP61,
}


@dataclass(frozen=True)
class Kernel:
    spec: KernelSpec
    bzimage: Path
    vmlinux: Path
    release: str
    modules: tuple[Path, ...]  # loaded in this order by /init


def bzimage_release(path: Path) -> str:
    """The kernel release string of a bzImage (setup header field kernel_version, 0x20E)."""
    data = path.read_bytes()[:0x10000]
    if data[0x202:0x206] != b"HdrS":
        raise HarnessError(f"{path} is not a bzImage")
    offset = int.from_bytes(data[0x20E:0x210], "little") + 0x200
    return data[offset : data.index(b"\0", offset)].decode().split()[0]


def _run_script(args: list[str]) -> str:
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=None, text=True)
    if proc.returncode != 0:
        raise HarnessError(f"{' '.join(args)} failed with exit code {proc.returncode}")
    return proc.stdout


def prepare_kernel(spec: KernelSpec) -> Kernel:
    """Fetch (Debian) or build (custom) the kernel; both are cached."""
    if spec.kind == "debian":
        suite = ["--suite", spec.suite] if spec.suite else []
        args = ["bash", str(HERE / "fetch-debian-kernel.sh"), *suite, spec.metapackage]
        kdir = Path(_run_script(args).strip().splitlines()[-1])
        release = bzimage_release(kdir / "vmlinuz")
        fw_dir = kdir / "modules" / "kernel" / "drivers" / "firmware"
        mods = tuple(sorted(fw_dir.glob("qemu_fw_cfg.ko*")))[:1]
        if not mods:
            raise HarnessError(f"qemu_fw_cfg module not found in {fw_dir}")
        if spec.virtiofs:
            mods += _virtiofs_modules(kdir / "modules")
        return Kernel(spec, kdir / "vmlinuz", kdir / "vmlinux", release, mods)
    _wait_for_foreign_build()
    _run_script(["bash", str(HERE / "build-kernel.sh"), spec.version])
    kdir = custom_kernel_dir(spec.version)
    mods = tuple(kdir / m for m in spec.custom_modules)
    for m in mods:
        if not m.exists():
            raise HarnessError(f"{m} missing: build-kernel.sh {spec.version} builds it")
    return Kernel(spec, kdir / "bzImage", kdir / "vmlinux", bzimage_release(kdir / "bzImage"), mods)


def custom_kernel_dir(version: str) -> Path:
    """Where build-kernel.sh VERSION leaves bzImage and vmlinux."""
    if version.endswith("-pp"):
        return cache_dir() / "kernels" / f"linux-{version}"
    return cache_dir() / "kernels" / f"linux-{version}-cma"


# virtio-fs and what it needs, in load order (each one's modinfo depends= comes earlier);
# 6.1 split the PCI transport's legacy and modern device code into modules of their own.
VIRTIOFS_MODULES = ("drivers/virtio/virtio_ring", "drivers/virtio/virtio",
                    "drivers/virtio/virtio_pci_modern_dev", "drivers/virtio/virtio_pci_legacy_dev",
                    "drivers/virtio/virtio_pci", "fs/fuse/fuse", "fs/fuse/virtiofs")


def _virtiofs_modules(moddir: Path) -> tuple[Path, ...]:
    """The modules of VIRTIOFS_MODULES that the kernel has as modules (built-in ones are listed
    in modules.builtin); an error if one is neither."""
    builtin = (moddir / "modules.builtin").read_text().split()
    found = []
    for name in VIRTIOFS_MODULES:
        files = sorted((moddir / "kernel").glob(f"{name}.ko*"))
        if files:
            found.append(files[0])
        elif f"kernel/{name}.ko" not in builtin and name.endswith("virtiofs"):
            raise HarnessError(f"{moddir}: no virtiofs module and not built in")
    return tuple(found)


def virtiofsd_binary() -> str | None:
    """QEMU's virtiofsd (the C daemon of QEMU <= 7.2, in /usr/lib/qemu on Debian)."""
    for path in ("/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd"):
        if os.access(path, os.X_OK):
            return path
    return shutil.which("virtiofsd")


def _wait_for_foreign_build(timeout: float = 3600) -> None:
    """Don't start a second kernel build while another build-kernel.sh runs; wait for it."""
    deadline = time.monotonic() + timeout
    announced = False
    while time.monotonic() < deadline:
        r = subprocess.run(["pgrep", "-f", "build-kernel.sh"], capture_output=True, text=True)
        pids = [p for p in r.stdout.split() if int(p) != os.getpid()]
        if not pids:
            return
        if not announced:
            log(f"waiting for a running build-kernel.sh (pids {' '.join(pids)})")
            announced = True
        time.sleep(10)
    raise HarnessError("timed out waiting for another build-kernel.sh")


# --------------------------------------------------------------------------------------------
# Workload and initramfs


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


def build_workload() -> Path:
    src = HERE / "pinwork.c"
    out = cache_dir() / "realkernel" / f"pinwork-{_digest(src.read_bytes())}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    cmd = ["gcc", "-static", "-O2", "-Wall", "-o", str(tmp), str(src)]
    subprocess.run(cmd, check=True)
    tmp.rename(out)
    return out


def _has_interpreter(path: Path) -> bool:
    """True for a dynamically linked ELF executable (it has a PT_INTERP program header)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    phoff = int.from_bytes(data[32:40], "little")
    phentsize = int.from_bytes(data[54:56], "little")
    phnum = int.from_bytes(data[56:58], "little")
    for i in range(phnum):
        off = phoff + i * phentsize
        if int.from_bytes(data[off : off + 4], "little") == 3:  # PT_INTERP
            return True
    return False


def build_initramfs(kernel: Kernel) -> Path:
    """A newc cpio (uncompressed) with busybox, /init, the workload and the modules."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise HarnessError("busybox (busybox-static) not installed")
    if _has_interpreter(Path(busybox)):
        raise HarnessError(f"{busybox} is dynamically linked: install busybox-static")
    workload = build_workload()
    init = (HERE / "init.sh").read_bytes()
    args = " ".join(kernel.spec.workload_args).encode()
    mods = [m.read_bytes() for m in kernel.modules]
    key = _digest(Path(busybox).read_bytes(), workload.read_bytes(), init, args, *mods)
    out = cache_dir() / "realkernel" / f"initramfs-{kernel.spec.name}-{key}.cpio"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory() as td:
        root = Path(td)
        for d in ("bin", "sbin", "proc", "sys", "dev", "tmp", "host", "lib/modules"):
            (root / d).mkdir(parents=True)
        shutil.copy(busybox, root / "bin" / "busybox")
        (root / "bin" / "sh").symlink_to("busybox")
        (root / "init").write_bytes(init)
        (root / "init").chmod(0o755)
        shutil.copy(workload, root / "pinwork")
        (root / "pinwork").chmod(0o755)
        (root / "pinwork.args").write_bytes(args + b"\n")
        names = []
        for m in kernel.modules:
            name = m.name.split(".ko")[0] + ".ko"
            dest = root / "lib" / "modules" / name
            if m.name.endswith(".ko"):
                shutil.copy(m, dest)
            else:  # .ko.xz / .ko.zst: busybox insmod wants it uncompressed
                tool = "xz" if m.name.endswith(".xz") else "zstd"
                with open(dest, "wb") as f:
                    subprocess.run([tool, "-dc", str(m)], stdout=f, check=True)
            names.append(name)
        (root / "lib" / "modules" / "order").write_text("".join(n + "\n" for n in names))
        files = subprocess.run(["find", "."], cwd=root, check=True, capture_output=True).stdout
        tmp = out.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            subprocess.run(
                ["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"],
                cwd=root,
                input=files,
                stdout=f,
                check=True,
            )
        tmp.rename(out)
    return out


# --------------------------------------------------------------------------------------------
# QMP


class QMP:
    """A minimal QMP client over a unix socket."""

    def __init__(self, path: Path, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.file = self.sock.makefile("rwb")
        greeting = self._recv()
        if "QMP" not in greeting:
            raise HarnessError(f"unexpected QMP greeting {greeting}")
        self.execute("qmp_capabilities")

    def _recv(self) -> dict[str, Any]:
        line = self.file.readline()
        if not line:
            raise HarnessError("QMP connection closed")
        return json.loads(line)  # type: ignore[no-any-return]

    def execute(self, command: str, **arguments: Any) -> Any:
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.file.write(json.dumps(msg).encode() + b"\n")
        self.file.flush()
        while True:
            reply = self._recv()
            if "event" in reply:
                continue
            if "error" in reply:
                raise HarnessError(f"QMP {command}: {reply['error']}")
            return reply.get("return")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


# --------------------------------------------------------------------------------------------
# Ground truth


@dataclass
class GroundTruth:
    kernel: str
    release: str
    cpu: str
    meta: dict[str, Any]
    pages: list[dict[str, Any]]
    page_owner: list[dict[str, Any]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    # pages of the test module pinmod.ko (PINMOD: index, pfn, held) and the page_owner records
    # of the held ones (PINMODOWNER); not in pages: no process maps them
    module_pages: list[dict[str, Any]] = field(default_factory=list)
    module_owner: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def parse(cls, console: str, kernel: Kernel) -> GroundTruth:
        meta: dict[str, Any] = {}
        pages: list[dict[str, Any]] = []
        owners: list[dict[str, Any]] = []
        logs: list[str] = []
        mod_pages: list[dict[str, Any]] = []
        mod_owners: list[dict[str, Any]] = []
        for raw in console.splitlines():
            line = raw.strip()
            for tag, dest in (("PINGT ", pages), ("PINOWNER ", owners), ("PINMOD ", mod_pages),
                              ("PINMODOWNER ", mod_owners)):
                i = line.find(tag)
                if i >= 0:
                    dest.append(json.loads(line[i + len(tag) :]))
            i = line.find("PINMETA ")
            if i >= 0:
                meta = json.loads(line[i + len("PINMETA ") :])
            i = line.find("PINLOG ")
            if i >= 0:
                logs.append(line[i + len("PINLOG ") :])
            if "PINERR " in line:
                raise HarnessError(f"workload failed: {line}")
        return cls(kernel.spec.name, kernel.release, kernel.spec.cpu, meta, pages, owners, logs,
                   mod_pages, mod_owners)

    def to_json(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "release": self.release,
            "cpu": self.cpu,
            "meta": self.meta,
            "pages": self.pages,
            "page_owner": self.page_owner,
            "log": self.log,
            "module_pages": self.module_pages,
            "module_owner": self.module_owner,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GroundTruth:
        return cls(
            d["kernel"], d["release"], d["cpu"], d["meta"], d["pages"], d["page_owner"], d["log"],
            d.get("module_pages", []), d.get("module_owner", []),
        )

    def pinned(self) -> list[dict[str, Any]]:
        return [p for p in self.pages if p["pinned"]]

    def controls(self) -> list[dict[str, Any]]:
        return [p for p in self.pages if not p["pinned"]]


# --------------------------------------------------------------------------------------------
# Guest


class Guest:
    """A QEMU/TCG guest running the workload; use as a context manager."""

    def __init__(self, kernel: Kernel, workdir: Path) -> None:
        self.kernel = kernel
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.console = workdir / "console.log"
        # unix socket paths must stay under 108 bytes: use a short directory for a long workdir
        socks = workdir
        if len(str(workdir)) > 80:
            socks = Path(tempfile.mkdtemp(prefix="pinspect-rk-"))
        self.qmp_path = socks / "qmp.sock"  # the harness's own QMP connection
        self.qmp_drgn_path = socks / "qmp-drgn.sock"  # free for drgn / pinspect --qemu
        self.qmp_test_path = socks / "qmp-test.sock"  # for the harness self-tests' drgn
        self.cmd_path = socks / "cmd.sock"  # guest shell on ttyS1
        self.share = workdir / "share"  # writable 9p/virtio-fs share "out" (in-guest runs)
        self.fs_paths = {tag: socks / f"fs-{tag}.sock" for tag in ("hostroot", "out")}
        self.fs_root = workdir / "hostroot"  # virtiofsd's read-only bind mount of the host's /
        self.fs_procs: list[subprocess.Popen[bytes]] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.qmp: QMP | None = None
        self.ground_truth: GroundTruth | None = None
        self.boot_seconds = 0.0

    def command_line(self, initrd: Path) -> list[str]:
        spec = self.kernel.spec
        append = "console=ttyS0 quiet loglevel=1 panic=-1 " + spec.append
        cmd = [
            "qemu-system-x86_64",
            "-nodefaults",
            "-display", "none",
            "-no-reboot",
            "-machine", "pc,accel=tcg" + (",memory-backend=mem" if spec.virtiofs else ""),
            "-cpu", spec.cpu,
            "-smp", str(spec.smp),
            "-m", str(spec.mem_mib),
            "-kernel", str(self.kernel.bzimage),
            "-initrd", str(initrd),
            "-append", append.strip(),
            "-device", "vmcoreinfo",
            "-chardev", f"file,id=con,path={self.console}",
            "-serial", "chardev:con",
            "-chardev", f"socket,id=cmd,path={self.cmd_path},server=on,wait=off",
            "-serial", "chardev:cmd",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            "-qmp", f"unix:{self.qmp_drgn_path},server=on,wait=off",
            "-qmp", f"unix:{self.qmp_test_path},server=on,wait=off",
        ]  # fmt: skip
        if spec.virtfs:
            cmd += [
                "-virtfs",
                "local,path=/,mount_tag=hostroot,security_model=none,readonly=on",
                "-virtfs",
                f"local,path={self.share},mount_tag=out,security_model=none",
            ]
            self.share.mkdir(parents=True, exist_ok=True)
        if spec.virtiofs:
            # vhost-user needs guest RAM the daemon can map: a shared memfd
            cmd += ["-object", f"memory-backend-memfd,id=mem,size={spec.mem_mib}M,share=on"]
            for tag, path in self.fs_paths.items():
                cmd += ["-chardev", f"socket,id=fs{tag},path={path}",
                        "-device", f"vhost-user-fs-pci,chardev=fs{tag},tag={tag}"]
        return cmd

    def start_virtiofsd(self) -> None:
        """One virtiofsd per share: the host's / read-only, the share directory writable.

        QEMU's C virtiofsd has no read-only mode: it serves a read-only bind mount of / made
        in a mount namespace of its own (unshare -m), so the host's mounts are untouched and
        the guest cannot write to the host's / even if it mounted it read-write. The bind is
        not recursive: the host's /proc, /sys and /dev stay empty directories (the guest mounts
        its own). cache=none on "out": files the host writes there are seen at once."""
        daemon = virtiofsd_binary()
        if daemon is None:
            raise HarnessError("virtiofsd not installed (Debian: qemu-system-common)")
        if shutil.which("unshare") is None:
            raise HarnessError("unshare (util-linux) not installed")
        self.share.mkdir(parents=True, exist_ok=True)
        self.fs_root.mkdir(parents=True, exist_ok=True)
        bind = ('mount --make-rprivate / && mount --bind / "$1" && '
                'mount -o remount,bind,ro "$1" && exec "$2" --socket-path="$3" -o source="$1" '
                '-o cache=auto -o sandbox=namespace')
        commands = {
            "hostroot": ["unshare", "-m", "sh", "-c", bind, "sh", str(self.fs_root), daemon,
                         str(self.fs_paths["hostroot"])],
            "out": [daemon, f"--socket-path={self.fs_paths['out']}", "-o",
                    f"source={self.share}", "-o", "cache=none", "-o", "sandbox=namespace"],
        }
        for tag, argv in commands.items():
            self.fs_paths[tag].unlink(missing_ok=True)
            self.fs_procs.append(subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=open(self.workdir / f"virtiofsd-{tag}.log", "wb"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            ))
        deadline = time.monotonic() + 30
        while not all(p.exists() for p in self.fs_paths.values()):
            if any(p.poll() is not None for p in self.fs_procs) or time.monotonic() > deadline:
                raise HarnessError(f"virtiofsd did not start; see {self.workdir}/virtiofsd-*.log")
            time.sleep(0.1)

    def start(self, timeout: float = 600) -> GroundTruth:
        if shutil.which("qemu-system-x86_64") is None:
            raise HarnessError("qemu-system-x86_64 not installed")
        initrd = build_initramfs(self.kernel)
        for p in (
            self.console,
            self.qmp_path,
            self.qmp_drgn_path,
            self.qmp_test_path,
            self.cmd_path,
        ):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        if self.kernel.spec.virtiofs:
            self.start_virtiofsd()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.command_line(initrd),
            stdin=subprocess.DEVNULL,
            stdout=open(self.workdir / "qemu.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.qmp = QMP(self.qmp_path)
        deadline = t0 + timeout
        text = ""
        while True:
            text = self.console.read_text(errors="replace") if self.console.exists() else ""
            if READY_MARKER in text:
                break
            if "PINERR " in text or "Kernel panic" in text:
                break
            if self.proc.poll() is not None:
                raise HarnessError(f"QEMU exited ({self.proc.returncode}); see {self.workdir}")
            if time.monotonic() > deadline:
                raise HarnessError(f"no {READY_MARKER} after {timeout}s; see {self.console}")
            time.sleep(0.5)
        self.boot_seconds = time.monotonic() - t0
        if "Kernel panic" in text:
            raise HarnessError(f"guest panicked; see {self.console}")
        self.ground_truth = GroundTruth.parse(text, self.kernel)
        log(f"{self.kernel.spec.name}: ready after {self.boot_seconds:.1f}s, "
            f"{len(self.ground_truth.pages)} ground-truth pages")  # fmt: skip
        return self.ground_truth

    def dump(self, path: Path, fmt: str) -> float:
        """QMP dump-guest-memory; fmt is "elf" or "kdump-zlib". Returns seconds taken."""
        assert self.qmp is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")  # readers of path never see a partial dump
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        t0 = time.monotonic()
        self.qmp.execute("dump-guest-memory", paging=False, protocol=f"file:{tmp}", format=fmt)
        # dump-guest-memory without detach returns when the file is complete
        took = time.monotonic() - t0
        tmp.replace(path)
        log(f"{self.kernel.spec.name}: {fmt} dump {path.stat().st_size >> 20} MiB in {took:.1f}s")
        return took

    def shell(self, command: str, timeout: float = 600) -> tuple[int, str]:
        """Run a command in the guest's shell on ttyS1; returns (exit status, output)."""
        tag = hashlib.sha256(f"{time.time()}{command}".encode()).hexdigest()[:12]
        begin, end = f"BEGIN-{tag}", f"END-{tag}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(self.cmd_path))
            s.settimeout(timeout)
            # markers are assembled by the guest's shell so that an echo of the input can't match
            line = f"echo {begin[:3]}''{begin[3:]}; {command} 2>&1; echo {end[:3]}''{end[3:]}-$?\n"
            s.sendall(line.encode())
            buf = b""
            deadline = time.monotonic() + timeout
            while True:
                if time.monotonic() > deadline:
                    raise HarnessError(f"guest command timed out: {command}")
                chunk = s.recv(1 << 16)
                if not chunk:
                    raise HarnessError("guest command channel closed")
                buf += chunk
                text = buf.decode(errors="replace").replace("\r", "")
                i = text.find(begin + "\n")
                j = text.find(end + "-")
                if i >= 0 and j > i and "\n" in text[j:]:
                    status = int(text[j + len(end) + 1 :].split("\n", 1)[0].strip() or 0)
                    return status, text[i + len(begin) + 1 : j]

    def stop(self) -> None:
        if self.qmp is not None:
            with contextlib.suppress(Exception):
                self.qmp.execute("quit")
            self.qmp.close()
            self.qmp = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.proc = None
        for p in self.fs_procs:  # virtiofsd exits when QEMU closes its socket
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.fs_procs = []

    def __enter__(self) -> Guest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the QEMU child: get SIGKILL when the harness dies (PR_SET_PDEATHSIG), so that no guest
    outlives a killed test run."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


@contextlib.contextmanager
def running_guest(name: str, workdir: Path) -> Iterator[Guest]:
    kernel = prepare_kernel(KERNELS[name])
    guest = Guest(kernel, workdir)
    try:
        guest.start()
        yield guest
    finally:
        guest.stop()


# --------------------------------------------------------------------------------------------
# Development: leave dumps and ground truth in $PINSPECT_CACHE/dev


def dev(names: list[str]) -> None:
    base = cache_dir() / "dev"
    for name in names:
        out = base / name
        with running_guest(name, out / "run") as guest:
            assert guest.ground_truth is not None
            elf = out / "vmcore.elf"
            kdump = out / "vmcore.kdump"
            guest.dump(elf, "elf")
            guest.dump(kdump, "kdump-zlib")
            gt = out / "ground-truth.json"
            gt.write_text(json.dumps(guest.ground_truth.to_json(), indent=1) + "\n")
            entry = {
                "kernel": name,
                "release": guest.kernel.release,
                "elf": str(elf),
                "kdump": str(kdump),
                "vmlinux": str(guest.kernel.vmlinux),
                "ground_truth": str(gt),
                "console": str(guest.console),
            }
            (out / "paths.json").write_text(json.dumps(entry, indent=1) + "\n")
        _write_ready(base)


def serve(name: str) -> None:
    """Boot one kernel and keep it running (for pinspect --qemu) until interrupted."""
    out = cache_dir() / "dev" / name / "live"
    with running_guest(name, out) as guest:
        print(f"kernel {name} ({guest.kernel.release}) running; ground truth in {out}")
        assert guest.ground_truth is not None
        (out / "ground-truth.json").write_text(json.dumps(guest.ground_truth.to_json(), indent=1))
        print(f"  pinspect --qemu {guest.qmp_drgn_path} -s {guest.kernel.vmlinux} pinned")
        print("  Ctrl-C stops the guest", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while guest.proc is not None and guest.proc.poll() is None:
                time.sleep(1)


def _write_ready(base: Path) -> None:
    lines = ["# pinspect real-kernel dev artefacts (tests/realkernel/harness.py dev)"]
    for paths in sorted(base.glob("*/paths.json")):
        e = json.loads(paths.read_text())
        lines.append(f"[{e['kernel']}] release {e['release']}")
        for k in ("elf", "kdump", "vmlinux", "ground_truth", "console"):
            lines.append(f"  {k}: {e[k]}")
    (base / "READY.txt").write_text("\n".join(lines) + "\n")


def main(argv: list[str]) -> int:
    if len(argv) >= 1 and argv[0] == "dev":
        dev(argv[1:] or list(KERNELS))
        return 0
    if len(argv) == 2 and argv[0] == "serve":
        serve(argv[1])
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
