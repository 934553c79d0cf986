"""pinspect.dumps against real dumps written by QEMU's dump-guest-memory.

A paused guest is dumped twice, as ELF and as kdump-zlib (makedumpfile's flattened format with
no usable utsname), so both files hold the same memory: every physical byte that drgn reads
from the prepared kdump file must equal the byte at that address in the ELF file, read here
with a small PT_LOAD reader of our own.  A known pattern is loaded into guest RAM with QEMU's
generic loader device as a third, independent reference.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import drgn
import pytest

from pinspect.cache import cache_dir
from pinspect.dumps import CoreFile, flattened, kdump, prepare_core
from pinspect.elf import iter_notes
from pinspect.errors import TargetError
from pinspect.vmcoreinfo import VmcoreInfo

IN_CI = os.environ.get("CI", "").lower() == "true"
QEMU = "qemu-system-x86_64"
PATTERN_ADDR = 0x1000000  # 16 MiB: above what SeaBIOS touches, below the 64 MiB of RAM
PATTERN_SIZE = 1 << 20
# drgn wants a VMCOREINFO for a kernel core dump; these guests have none (no kernel, or no
# qemu_fw_cfg driver), so give the least that drgn and libkdumpfile accept.  Physical reads do
# not depend on it.
VMCOREINFO = b"OSRELEASE=6.1.0\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)=ffffffff82000000\n"


def need(ok: bool, what: str) -> None:
    """Skip (outside CI) or fail (in CI) when a resource the test needs is missing."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{what} (required in CI)")
    pytest.skip(what)


def pattern() -> bytes:
    """1 MiB of deterministic, incompressible bytes with a zero page in the middle."""
    out = bytearray()
    i = 0
    while len(out) < PATTERN_SIZE:
        out += hashlib.sha256(i.to_bytes(8, "little")).digest()
        i += 1
    out[PATTERN_SIZE // 2 : PATTERN_SIZE // 2 + 4096] = bytes(4096)
    return bytes(out)


# --- QEMU --------------------------------------------------------------------------------


class Qmp:
    """A minimal QMP client over a Unix socket."""

    def __init__(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.settimeout(timeout)
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.f = self.sock.makefile("rw")
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name: str, **args: object) -> object:
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            reply = json.loads(self.f.readline())
            if "event" in reply:
                continue
            if "error" in reply:
                raise RuntimeError(f"QMP {name}: {reply['error']}")
            return reply["return"]

    def close(self) -> None:
        self.f.close()
        self.sock.close()


@dataclass
class Dumps:
    elf: Path
    flat: Path  # kdump-zlib, as QEMU writes it: flattened
    ram: int  # guest RAM size in bytes


def run_guest(tmp: Path, extra: list[str], ram_mb: int, ready: str | None) -> Dumps:
    """Start a paused TCG guest, let it run until *ready* shows on the serial console (or a
    moment for a BIOS-only guest), stop it and dump it as ELF and kdump-zlib."""
    need(shutil.which(QEMU) is not None, f"{QEMU} is not installed")
    pat = tmp / "pattern.bin"
    pat.write_bytes(pattern())
    sock = tmp / "qmp.sock"
    serial = tmp / "serial.log"
    cmd = [
        QEMU, "-machine", "pc", "-accel", "tcg", "-m", str(ram_mb), "-display", "none",
        "-nodefaults", "-no-reboot", "-S", "-qmp", f"unix:{sock},server=on,wait=off",
        "-serial", f"file:{serial}",
        "-device", f"loader,file={pat},addr={PATTERN_ADDR:#x},force-raw=on",
        *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        qmp = Qmp(str(sock))
        qmp.cmd("cont")
        deadline = time.monotonic() + 120
        if ready is None:
            time.sleep(1.0)
        else:
            while ready not in serial.read_text(errors="replace"):
                assert proc.poll() is None, f"QEMU exited: {proc.stderr.read()!r}"  # type: ignore[union-attr]
                assert time.monotonic() < deadline, serial.read_text(errors="replace")[-2000:]
                time.sleep(0.2)
        qmp.cmd("stop")
        dumps = Dumps(elf=tmp / "guest.elf", flat=tmp / "guest.kdump-zlib", ram=ram_mb << 20)
        for path, fmt in ((dumps.elf, "elf"), (dumps.flat, "kdump-zlib")):
            qmp.cmd("dump-guest-memory", paging=False, protocol=f"file:{path}", format=fmt)
        qmp.cmd("quit")
        qmp.close()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return dumps


@pytest.fixture(scope="session")
def bios_dumps(tmp_path_factory: pytest.TempPathFactory) -> Dumps:
    """A 64 MiB guest that runs SeaBIOS only (32-bit mode, i386 notes)."""
    return run_guest(tmp_path_factory.mktemp("bios-guest"), [], 64, None)


def _cloud_debs(debs: Path) -> list[Path]:
    found = sorted(debs.glob("linux-image-*-cloud-amd64*.deb"))
    return [d for d in found if "-dbg_" not in d.name]


def _download_cloud_kernel(debs: Path) -> None:
    """apt-get download the kernel image package that linux-image-cloud-amd64 depends on."""
    if not (shutil.which("apt-get") and shutil.which("apt-cache")):
        return

    def resolve() -> list[str]:
        out = subprocess.run(
            ["apt-cache", "depends", "linux-image-cloud-amd64"],
            capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        names = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Depends:" in ln]
        return [n for n in names if n.startswith("linux-image-")]

    names = resolve()
    if not names:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False)
        names = resolve()
    if names:
        debs.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", names[0]], cwd=debs, check=False,
                       capture_output=True)  # fmt: skip


def find_kernel(cache: Path) -> Path | None:
    """An x86_64 kernel image to boot: $PINSPECT_TEST_KERNEL, one that the real-kernel tier
    built or fetched into the cache, or Debian's cloud kernel (downloaded with apt-get)."""
    env = os.environ.get("PINSPECT_TEST_KERNEL")
    if env:
        return Path(env)
    built = cache / "kernels" / "linux-6.1-cma" / "bzImage"
    if built.is_file():
        return built
    fetched = sorted(cache.glob("kernels/*/vmlinuz"))
    if fetched:
        return fetched[-1]
    debs = cache / "debs"
    if not _cloud_debs(debs):
        _download_cloud_kernel(debs)
    found = _cloud_debs(debs)
    if not found:
        return None
    out = cache / "kernels" / "debian-cloud" / found[-1].stem
    images = sorted(out.glob("boot/vmlinuz-*"))
    if not images:  # unpack the kernel image alone, not the modules
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            f"dpkg-deb --fsys-tarfile '{found[-1]}' | tar -x -C '{out}' --wildcards "
            "'./boot/vmlinuz-*'",
            shell=True, check=True,
        )  # fmt: skip
        images = sorted(out.glob("boot/vmlinuz-*"))
    return images[0] if images else None


@pytest.fixture(scope="session")
def kernel_dumps(tmp_path_factory: pytest.TempPathFactory) -> Dumps:
    """A 128 MiB guest whose Linux kernel panicked (no root file system): 64-bit long mode."""
    need(shutil.which(QEMU) is not None, f"{QEMU} is not installed")
    kernel = find_kernel(Path(cache_dir()))
    need(kernel is not None, "no x86_64 kernel to boot (set PINSPECT_TEST_KERNEL)")
    assert kernel is not None
    extra = ["-kernel", str(kernel), "-append", "console=ttyS0 panic=0 root=/dev/nonexistent",
             "-device", "vmcoreinfo"]  # fmt: skip
    return run_guest(tmp_path_factory.mktemp("kernel-guest"), extra, 128, "end Kernel panic")


# --- reading the reference ELF dump -------------------------------------------------------


class ElfCore:
    """Physical memory of an ELF64 little-endian core file, read from its PT_LOAD segments."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "rb")
        ehdr = self.f.read(64)
        assert ehdr[:4] == b"\x7fELF" and ehdr[4] == 2 and ehdr[5] == 1
        (self.machine,) = struct.unpack_from("<H", ehdr, 18)
        phoff, phentsize, phnum = (
            struct.unpack_from("<Q", ehdr, 32)[0],
            *struct.unpack_from("<HH", ehdr, 54),
        )
        self.loads: list[tuple[int, int, int]] = []  # paddr, filesz, offset
        for i in range(phnum):
            self.f.seek(phoff + i * phentsize)
            p_type, _, p_offset, _, p_paddr, p_filesz = struct.unpack("<IIQQQQ", self.f.read(40))
            if p_type == 1:
                self.loads.append((p_paddr, p_filesz, p_offset))

    def read(self, addr: int, n: int) -> bytes:
        for paddr, size, off in self.loads:
            if paddr <= addr and addr + n <= paddr + size:
                self.f.seek(off + addr - paddr)
                return self.f.read(n)
        raise KeyError(hex(addr))

    def chunks(self, step: int = 1 << 20) -> Iterator[tuple[int, int]]:
        for paddr, size, _ in self.loads:
            for a in range(paddr, paddr + size, step):
                yield a, min(step, paddr + size - a)


def dump_vmcoreinfo(core: CoreFile) -> VmcoreInfo:
    """The VMCOREINFO that the kdump file at core.path carries, if any."""
    return kdump.read_kdump_header(core.path).parsed_vmcoreinfo()


def open_with_drgn(core: CoreFile) -> drgn.Program:
    """Open the prepared core with drgn, giving it a stand-in VMCOREINFO if it has none."""
    own = dump_vmcoreinfo(core)
    prog = drgn.Program(core.platform, vmcoreinfo=None if own else VMCOREINFO)
    prog.set_core_dump(core.path)
    return prog


def check_kernel_vaddr(prog: drgn.Program, core: CoreFile) -> None:
    """With a real VMCOREINFO, libkdumpfile translates kernel virtual addresses through the
    guest's page tables, which works only with the right platform: read init_uts_ns."""
    own = dump_vmcoreinfo(core)
    if not own:
        return
    uts = own.symbol("init_uts_ns") + int(own.get("OFFSET(uts_namespace.name)", "0"))
    assert prog.read(uts, 6) == b"Linux\0"
    release = prog.read(uts + 2 * 65, 65).split(b"\0")[0].decode()
    assert release == own["OSRELEASE"]


def assert_same_memory(
    prog: drgn.Program, elf_path: Path, check_pattern: bool = True, limit: int = 1 << 64
) -> int:
    """Compare the ELF dump's memory (below *limit*) with drgn's physical reads; returns the
    bytes compared.
    The pattern survives only in a guest that runs no kernel (Linux decompresses itself
    to 16 MiB)."""
    ref = ElfCore(elf_path)
    total = 0
    for addr, n in ref.chunks():
        if addr >= limit:
            continue
        assert prog.read(addr, n, True) == ref.read(addr, n), f"memory differs at {addr:#x}"
        total += n
    if check_pattern:
        assert prog.read(PATTERN_ADDR, PATTERN_SIZE, True) == pattern()
    return total


# --- tests: real QEMU dumps ---------------------------------------------------------------


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_qemu_flattened_is_rebuilt_and_matches_elf(bios_dumps: Dumps, cache: Path) -> None:
    src_stat = bios_dumps.flat.stat()
    core = prepare_core(str(bios_dumps.flat), str(cache))
    assert core.kind == "kdump-flattened" and core.rebuilt
    assert Path(core.path).parent == cache / "cores"
    assert Path(core.path).read_bytes()[:8] == b"KDUMP   "
    # SeaBIOS runs in 32-bit mode: QEMU writes i386 PRSTATUS notes, and says "x86_64" only in
    # a utsname that libkdumpfile ignores.
    assert core.platform is not None and core.platform.arch == drgn.Architecture.I386
    compared = assert_same_memory(open_with_drgn(core), bios_dumps.elf)
    assert compared >= bios_dumps.ram - (1 << 20)
    # never written to the source
    after = bios_dumps.flat.stat()
    assert (after.st_mtime_ns, after.st_size) == (src_stat.st_mtime_ns, src_stat.st_size)
    assert not [p for p in (cache / "cores").iterdir() if p.name.startswith(".")]


def test_drgn_alone_cannot_open_it(bios_dumps: Dumps, cache: Path) -> None:
    """Documents why prepare_core exists: without the platform, libkdumpfile has no arch."""
    core = prepare_core(str(bios_dumps.flat), str(cache))
    prog = drgn.Program(vmcoreinfo=VMCOREINFO)
    with pytest.raises(Exception, match="ARCH_NAME|arch"):
        prog.set_core_dump(core.path)
        prog.read(PATTERN_ADDR, 8, True)


def test_rebuild_equals_makedumpfile_R(bios_dumps: Dumps, cache: Path, tmp_path: Path) -> None:
    need(shutil.which("makedumpfile") is not None, "makedumpfile is not installed")
    core = prepare_core(str(bios_dumps.flat), str(cache))
    theirs = tmp_path / "makedumpfile-R.kdump"
    with open(bios_dumps.flat, "rb") as stdin:
        subprocess.run(["makedumpfile", "-R", str(theirs)], stdin=stdin, check=True,
                       capture_output=True)  # fmt: skip
    assert Path(core.path).read_bytes() == theirs.read_bytes()


def test_rebuilt_copy_is_reused_until_the_source_changes(
    bios_dumps: Dumps, cache: Path, tmp_path: Path
) -> None:
    src = tmp_path / "vmcore.flat"
    shutil.copyfile(bios_dumps.flat, src)
    first = prepare_core(str(src), str(cache))
    st = os.stat(first.path)
    second = prepare_core(str(src), str(cache))
    assert second == first
    st2 = os.stat(second.path)
    assert (st2.st_ino, st2.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = prepare_core(str(src), str(cache))
    assert third.path != first.path and Path(third.path).is_file()
    assert not Path(first.path).exists()  # the copy of the old version is gone
    other = tmp_path / "other" / "vmcore.flat"  # same name, another directory: kept apart
    other.parent.mkdir()
    shutil.copyfile(bios_dumps.flat, other)
    fourth = prepare_core(str(other), str(cache))
    assert fourth.path != third.path and Path(third.path).exists()


def test_cache_dir_defaults_to_env(bios_dumps: Dumps, cache: Path, monkeypatch) -> None:
    monkeypatch.setenv("PINSPECT_CACHE", str(cache))
    core = prepare_core(str(bios_dumps.flat))
    assert Path(core.path).parent == cache / "cores"


def test_plain_kdump_with_empty_machine_gets_a_platform(bios_dumps: Dumps, cache: Path) -> None:
    rebuilt = prepare_core(str(bios_dumps.flat), str(cache)).path
    core = prepare_core(rebuilt, str(cache))
    assert core == CoreFile(path=rebuilt, kind="kdump", platform=core.platform, rebuilt=False)
    assert core.platform is not None and core.platform.arch == drgn.Architecture.I386
    assert_same_memory(open_with_drgn(core), bios_dumps.elf)
    hdr = kdump.read_kdump_header(rebuilt)
    assert hdr.machine == "x86_64" and not hdr.uts_sane and hdr.is_64_bit
    assert kdump.arch_from_header(hdr)[1] == "NT_PRSTATUS note of 144 bytes"


def test_elf_is_passed_through(bios_dumps: Dumps, cache: Path) -> None:
    core = prepare_core(str(bios_dumps.elf), str(cache))
    assert core == CoreFile(path=str(bios_dumps.elf), kind="elf", platform=None, rebuilt=False)
    assert not cache.exists()


def patched_copy(src: str, dst: Path, edits: list[tuple[int, bytes]]) -> str:
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        for off, data in edits:
            f.seek(off)
            f.write(data)
    return str(dst)


def test_platform_inference_order(bios_dumps: Dumps, cache: Path, tmp_path: Path) -> None:
    rebuilt = prepare_core(str(bios_dumps.flat), str(cache)).path
    data = Path(rebuilt).read_bytes()
    uts = kdump.UTS_OFFSET
    # A utsname that libkdumpfile accepts: it then knows the machine, no platform needed.
    sane = patched_copy(
        rebuilt, tmp_path / "sane.kdump",
        [(uts, b"Linux\0"), (uts + 2 * 65, b"6.1.0\0"), (uts + 3 * 65, b"#1 SMP\0")],
    )  # fmt: skip
    assert kdump.read_kdump_header(sane).uts_sane
    assert prepare_core(sane, str(cache)).platform is None
    # Without a PRSTATUS note, the machine name that libkdumpfile ignored is the next hint.
    note = struct.pack("<III", 5, 144, 1) + b"CORE\0\0\0\0"
    at = data.index(note)
    no_prstatus = patched_copy(
        rebuilt, tmp_path / "noprstatus.kdump", [(at + 8, struct.pack("<I", 0x7FF))]
    )
    assert kdump.arch_from_header(kdump.read_kdump_header(no_prstatus))[0] is None
    core = prepare_core(no_prstatus, str(cache))
    assert core.platform == drgn.Platform(drgn.Architecture.X86_64)
    # ... and with no machine name either, the host (same word size as the 64-bit header).
    bare = patched_copy(
        no_prstatus, tmp_path / "bare.kdump", [(kdump.UTS_MACHINE_OFFSET, b"\0")]
    )
    assert prepare_core(bare, str(cache)).platform == drgn.host_platform


def test_corefile_program(bios_dumps: Dumps, cache: Path) -> None:
    core = prepare_core(str(bios_dumps.flat), str(cache))
    prog = core.program(vmcoreinfo=VMCOREINFO)
    assert prog.platform == core.platform
    assert prog.read(PATTERN_ADDR, 64, True) == pattern()[:64]


@pytest.mark.realkernel
def test_qemu_flattened_of_a_64_bit_kernel(kernel_dumps: Dumps, cache: Path) -> None:
    core = prepare_core(str(kernel_dumps.flat), str(cache))
    assert core.kind == "kdump-flattened" and core.rebuilt
    assert core.platform == drgn.Platform(drgn.Architecture.X86_64)
    assert ElfCore(kernel_dumps.elf).machine == 62  # EM_X86_64: the same guest, as ELF
    prog = open_with_drgn(core)
    compared = assert_same_memory(prog, kernel_dumps.elf, check_pattern=False)
    assert compared >= kernel_dumps.ram - (1 << 20)
    check_kernel_vaddr(prog, core)
    if dump_vmcoreinfo(core):  # a kernel with qemu_fw_cfg built in shares its VMCOREINFO
        hdr = kdump.read_kdump_header(core.path)
        assert kdump.arch_from_header(hdr)[1].startswith("VMCOREINFO")


def classic_elf_copy(src: Path, dst: Path) -> None:
    """Copy a QEMU ELF dump with its program headers moved right after the ELF header, where
    makedumpfile looks for them (QEMU puts a section header there first)."""
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        ehdr = bytearray(f.read(64))
        (phoff,) = struct.unpack_from("<Q", ehdr, 32)
        phentsize, phnum = struct.unpack_from("<HH", ehdr, 54)
        f.seek(phoff)
        phdrs = f.read(phentsize * phnum)
        first_data = min(
            struct.unpack_from("<Q", phdrs, i * phentsize + 8)[0] for i in range(phnum)
        )
        assert 64 + len(phdrs) <= first_data
        struct.pack_into("<QQ", ehdr, 32, 64, 0)  # e_phoff, e_shoff
        struct.pack_into("<HHH", ehdr, 58, 0, 0, 0)  # e_shentsize, e_shnum, e_shstrndx
        f.seek(0)
        f.write(ehdr + phdrs)


def elf_notes(elf: Path) -> list[tuple[bytes, int, bytes]]:
    """The notes of QEMU's ELF dump (its PT_NOTE comes first)."""
    with open(elf, "rb") as f:
        ehdr = f.read(64)
        (phoff,) = struct.unpack_from("<Q", ehdr, 32)
        f.seek(phoff)
        p_type, _, p_offset, _, _, p_filesz = struct.unpack("<IIQQQQ", f.read(40))
        assert p_type == 4
        f.seek(p_offset)
        return list(iter_notes(f.read(p_filesz), "<"))


def qemu_cr3(elf: Path) -> int:
    """CR3 of the first CPU, from QEMU's "QEMU" note (x86_64 QEMUCPUState)."""
    for name, _, desc in elf_notes(elf):
        if name == b"QEMU":
            # version, size, 18 general registers, 10 segment/table descriptors, cr0..cr4
            return struct.unpack_from("<Q", desc, 8 + 18 * 8 + 10 * 24 + 3 * 8)[0]
    raise AssertionError("no QEMU note")


def kernel_text_vaddr(ref: ElfCore, cr3: int, paddr: int) -> int:
    """The address in the kernel image mapping (0xffffffff80000000, 1 GiB) of *paddr*,
    found by walking the guest's page tables."""
    mask = 0x000FFFFFFFFFF000

    def entry(table: int, i: int) -> int:
        return struct.unpack("<Q", ref.read((table & mask) + i * 8, 8))[0]

    pdpt = entry(cr3, 511)
    pd = entry(pdpt, 510)
    assert pd & 1
    base_va = 0xFFFFFFFF80000000
    for i2 in range(512):
        e2 = entry(pd, i2)
        if not e2 & 1:
            continue
        va = base_va + (i2 << 21)
        if e2 & 0x80:  # 2 MiB page
            start = e2 & 0x000FFFFFFFE00000
            if start <= paddr < start + (1 << 21):
                return va + paddr - start
            continue
        for i1 in range(512):
            e1 = entry(e2, i1)
            if e1 & 1 and e1 & mask == paddr & ~0xFFF:
                return va + (i1 << 12) + (paddr & 0xFFF)
    raise AssertionError(f"{paddr:#x} is not in the kernel image mapping")


def synthesize_vmcoreinfo(elf: Path, out: Path) -> Path:
    """A VMCOREINFO for a kernel that shared none (qemu_fw_cfg not loaded): makedumpfile reads
    init_uts_ns through the guest's page tables, so find it and CR3 in the dump itself."""
    ref = ElfCore(elf)
    uts = None
    for addr, n in ref.chunks(1 << 22):
        try:  # overlap the next chunk a little so that no match is cut in two
            data = ref.read(addr, n + 512)
        except KeyError:
            data = ref.read(addr, n)
        at = data.find(b"Linux" + bytes(60) + b"(none)")
        if at >= 0 and at + 195 <= len(data):
            release = data[at + 130 : at + 195].split(b"\0")[0]
            uts = (addr + at, release)
            break
    assert uts is not None, "init_uts_ns not found in guest memory"
    cr3 = qemu_cr3(elf)
    uts_va = kernel_text_vaddr(ref, cr3, uts[0])
    out.write_text(
        f"OSRELEASE={uts[1].decode()}\nPAGESIZE=4096\n"
        f"SYMBOL(init_uts_ns)={uts_va:x}\nOFFSET(uts_namespace.name)=0\n"
        # with phys_base 0, makedumpfile finds the page tables at CR3
        f"SYMBOL(init_top_pgt)={0xFFFFFFFF80000000 + cr3:x}\nNUMBER(phys_base)=0\n"
        # a flat mem_map: makedumpfile insists on one, -d 0 never reads it
        f"SYMBOL(mem_map)={uts_va:x}\nSIZE(page)=64\nOFFSET(page.flags)=0\n"
        "OFFSET(page._refcount)=52\nOFFSET(page.mapping)=24\n"
    )
    return out


@pytest.fixture(scope="session")
def makedumpfile_flat(kernel_dumps: Dumps, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """makedumpfile -F output for the panicked kernel guest, from its ELF dump."""
    need(shutil.which("makedumpfile") is not None, "makedumpfile is not installed")
    tmp = tmp_path_factory.mktemp("makedumpfile")
    elf = tmp / "classic.elf"
    classic_elf_copy(kernel_dumps.elf, elf)
    args = []
    if not any(name == b"VMCOREINFO" for name, _, _ in elf_notes(elf)):
        args = ["-i", str(synthesize_vmcoreinfo(elf, tmp / "vmcoreinfo"))]
    out = tmp / "vmcore.flat"
    with open(out, "wb") as stdout:
        r = subprocess.run(
            ["makedumpfile", "-F", "-c", "-d", "0", *args, str(elf)],
            stdout=stdout, stderr=subprocess.PIPE, text=True, check=False,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    elf.unlink()
    return out


@pytest.mark.realkernel
def test_makedumpfile_F_output(kernel_dumps: Dumps, makedumpfile_flat: Path, cache: Path) -> None:
    # makedumpfile writes page descriptors and page data as interleaved, out-of-order records
    offsets = []
    with open(makedumpfile_flat, "rb") as f:
        f.seek(flattened.FLAT_HEADER_SIZE)
        for off, size in flattened.iter_flat_records(f, str(makedumpfile_flat)):
            offsets.append(off)
            f.seek(size, os.SEEK_CUR)
    assert any(b < a for a, b in zip(offsets, offsets[1:], strict=False))
    core = prepare_core(str(makedumpfile_flat), str(cache))
    assert core.kind == "kdump-flattened" and core.rebuilt
    hdr = kdump.read_kdump_header(core.path)
    assert hdr.uts_sane and hdr.machine == "x86_64"  # makedumpfile copies init_uts_ns
    assert core.platform is None  # libkdumpfile knows the machine itself
    prog = open_with_drgn(core)
    # with the kernel's VMCOREINFO makedumpfile stops at the end of RAM (no ROM, no VRAM)
    compared = assert_same_memory(prog, kernel_dumps.elf, False, limit=kernel_dumps.ram)
    assert compared >= kernel_dumps.ram - (1 << 20)
    check_kernel_vaddr(prog, core)


# --- tests: errors -----------------------------------------------------------------------


def test_truncated_flattened_stream(bios_dumps: Dumps, cache: Path, tmp_path: Path) -> None:
    data = bios_dumps.flat.read_bytes()
    cut = tmp_path / "cut.flat"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(TargetError, match="truncated") as err:
        prepare_core(str(cut), str(cache))
    assert "recovered" in err.value.message and err.value.hint
    recovered = int(err.value.message.split("recovered ")[1].split()[0])
    assert 0 < recovered < len(data) // 2
    assert list((cache / "cores").iterdir()) == []  # no partial output left behind


def test_truncated_end_marker_and_header(bios_dumps: Dumps, cache: Path, tmp_path: Path) -> None:
    data = bios_dumps.flat.read_bytes()
    assert data[-16:] == b"\xff" * 16  # the end marker
    for n in (len(data) - 16, len(data) - 8, 100, 4096):
        cut = tmp_path / f"cut{n}.flat"
        cut.write_bytes(data[:n])
        with pytest.raises(TargetError, match="truncated"):
            prepare_core(str(cut), str(cache))


def test_corrupt_record(bios_dumps: Dumps, cache: Path, tmp_path: Path) -> None:
    data = bytearray(bios_dumps.flat.read_bytes())
    data[4096:4112] = struct.pack(">qq", -5, 10)
    bad = tmp_path / "bad.flat"
    bad.write_bytes(data)
    with pytest.raises(TargetError, match="corrupt flattened record"):
        prepare_core(str(bad), str(cache))


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, this is not a dump\n" * 100, b"KDUMP", b"\x1f\x8b\x08\x00" + bytes(100)],
    ids=["empty", "text", "short", "gzip"],
)
def test_not_a_dump(content: bytes, cache: Path, tmp_path: Path) -> None:
    p = tmp_path / "file"
    p.write_bytes(content)
    with pytest.raises(TargetError, match="not a kernel dump") as err:
        prepare_core(str(p), str(cache))
    assert "accepted formats" in err.value.hint


def test_elf_that_is_not_a_core(cache: Path) -> None:
    exe = shutil.which("ls") or "/bin/sh"
    with pytest.raises(TargetError, match="not a core dump") as err:
        prepare_core(os.path.realpath(exe), str(cache))
    assert "-s" in err.value.hint


def test_missing_and_unreadable(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="no such file"):
        prepare_core(str(tmp_path / "nope"), str(cache))
    with pytest.raises(TargetError, match="directory"):
        prepare_core(str(tmp_path), str(cache))
    if os.geteuid() != 0:
        p = tmp_path / "secret"
        p.write_bytes(b"KDUMP   ")
        p.chmod(0)
        with pytest.raises(TargetError, match="permission denied") as err:
            prepare_core(str(p), str(cache))
        assert "sudo" in err.value.hint


def test_write_failure_leaves_nothing_behind(bios_dumps: Dumps, cache: Path) -> None:
    """A real write error (the file size limit, EFBIG) in the middle of a rebuild."""
    code = """
import json, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, resource.RLIM_INFINITY))
from pinspect.errors import TargetError
from pinspect.dumps import prepare_core
try:
    prepare_core(sys.argv[1], sys.argv[2])
except TargetError as e:
    print(json.dumps([e.message, e.hint]))
"""
    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    r = subprocess.run(
        [sys.executable, "-c", code, str(bios_dumps.flat), str(cache)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    message, hint = json.loads(r.stdout)
    assert "failed: File too large" in message and "ulimit" in hint
    assert list((cache / "cores").iterdir()) == []


def test_overlapping_records_and_holes(cache: Path, tmp_path: Path) -> None:
    """A stream that rewrites regions (with data, then zeros), goes backwards and leaves holes,
    against makedumpfile -R, the reference reassembler."""
    need(shutil.which("makedumpfile") is not None, "makedumpfile is not installed")
    blob = pattern()
    records = [
        (0, b"KDUMP   " + blob[:4088]),
        (64 << 20, blob[:4096]),  # far out: a 64 MiB hole before it
        (8192, blob[: 3 << 20]),  # larger than nothing, smaller than a rebuild block
        (8192, bytes(4096)),  # zeros over data must be written, not skipped
        (4096, blob[100:4196]),  # backwards
        (16 << 20, bytes(12 << 20)),  # zeros past everything: stays a hole
        (30 << 20, blob[:10]),
        (30 << 20, b"overwritten"),  # the later record wins
    ]
    stream = bytearray(b"makedumpfile".ljust(16, b"\0") + struct.pack(">qq", 1, 1))
    stream = stream.ljust(4096, b"\0")
    for off, data in records:
        stream += struct.pack(">qq", off, len(data)) + data
    stream += struct.pack(">qq", -1, -1)
    src = tmp_path / "synthetic.flat"
    src.write_bytes(stream)
    out = tmp_path / "mine.kdump"
    stats = flattened.rebuild_flattened(str(src), str(out))
    assert (stats.records, stats.size) == (len(records), (64 << 20) + 4096)
    theirs = tmp_path / "theirs.kdump"
    with open(src, "rb") as stdin:
        subprocess.run(["makedumpfile", "-R", str(theirs)], stdin=stdin, check=True,
                       capture_output=True)  # fmt: skip
    assert out.read_bytes() == theirs.read_bytes()
    assert out.stat().st_blocks * 512 < 8 << 20  # 64 MiB long, about 3 MiB of data


def test_dump_without_vmcoreinfo(bios_dumps: Dumps, cache: Path) -> None:
    """A guest that shared no VMCOREINFO: a TargetError that says what to do, no traceback."""
    for path in (bios_dumps.flat, bios_dumps.elf):
        core = prepare_core(str(path), str(cache))
        with pytest.raises(TargetError, match="cannot open") as err:
            core.program()
        assert "-device vmcoreinfo" in err.value.hint


def test_pipe_is_refused(bios_dumps: Dumps, cache: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(TargetError, match="not a regular file") as err:
        prepare_core(str(fifo), str(cache))
    assert "save the dump to a file" in err.value.hint


def test_stale_temp_files_are_removed(bios_dumps: Dumps, cache: Path, tmp_path: Path) -> None:
    cores = cache / "cores"
    cores.mkdir(parents=True)
    old = cores / (flattened.TEMP_PREFIX + "old.tmp")
    new = cores / (flattened.TEMP_PREFIX + "new.tmp")
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    prepare_core(str(bios_dumps.flat), str(cache))
    assert not old.exists() and new.exists()  # a rebuild running right now may own "new"


def test_not_enough_disk(bios_dumps: Dumps, cache: Path, monkeypatch) -> None:
    real = shutil.disk_usage

    def tiny(path: str) -> object:
        u = real(path)
        return type(u)(u.total, u.total - 4096, 4096)

    monkeypatch.setattr(flattened.shutil, "disk_usage", tiny)
    with pytest.raises(TargetError, match="not enough disk space") as err:
        prepare_core(str(bios_dumps.flat), str(cache))
    assert "PINSPECT_CACHE" in err.value.hint
    assert "MiB" in err.value.message


def test_unwritable_cache(bios_dumps: Dumps, tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    with pytest.raises(TargetError, match="cache directory") as err:
        prepare_core(str(bios_dumps.flat), str(blocker))
    assert "PINSPECT_CACHE" in err.value.hint
