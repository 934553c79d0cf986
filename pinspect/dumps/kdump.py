"""The kdump (diskdump) header, and the architecture of a dump whose header does not say it.

libkdumpfile trusts a kdump header's utsname only with sysname "Linux", a release and a
version; QEMU fills in ``utsname.machine`` alone, so libkdumpfile does not know the
architecture of its dumps: it cannot open them (or skips the CPU notes and cannot translate
addresses).  drgn (>= 0.0.25) hands the platform of a :class:`drgn.Program` to libkdumpfile
before the file, so :func:`infer_platform` infers the architecture from the dump
(VMCOREINFO, the size of the ``NT_PRSTATUS`` notes, the machine name, the header's word size)
and returns a :class:`drgn.Platform` to create the program with.  The file itself is left alone.
"""

from __future__ import annotations

import platform as host_platform_mod
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import drgn

from pinspect import elf
from pinspect.errors import TargetError
from pinspect.vmcoreinfo import VmcoreInfo
from pinspect.vmcoreinfo import parse as parse_vmcoreinfo

__all__ = [
    "KDUMP_SIGNATURES",
    "KdumpHeader",
    "arch_from_header",
    "infer_platform",
    "read_kdump_header",
]

KDUMP_SIGNATURES = (b"KDUMP   ", b"DISKDUMP")
# utsname is 6 fields of 65 bytes each; machine is the fifth, after signature and version.
UTS_FIELD = 65
UTS_OFFSET = 12
UTS_MACHINE_OFFSET = UTS_OFFSET + 4 * UTS_FIELD


@dataclass(frozen=True)
class KdumpHeader:
    """The fields of a kdump (diskdump) header that matter for the architecture."""

    machine: str
    uts_sane: bool  # libkdumpfile trusts the utsname (and so knows the machine)
    header_version: int
    is_64_bit: bool
    little_endian: bool
    block_size: int
    vmcoreinfo: bytes  # the sub-header's VMCOREINFO text (header version 3 and up)
    notes: bytes  # the ELF notes (header version 4 and up)

    def iter_notes(self) -> Iterator[elf.Note]:
        """The dump's ELF notes (CPU registers, VMCOREINFO, ...)."""
        return elf.iter_notes(self.notes, "<" if self.little_endian else ">")

    def parsed_vmcoreinfo(self) -> VmcoreInfo:
        """The sub-header's VMCOREINFO, else the one in the notes (empty if neither)."""
        text = self.vmcoreinfo or b"".join(
            note.desc for note in self.iter_notes() if note.name == b"VMCOREINFO"
        )
        return parse_vmcoreinfo(text)


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def read_kdump_header(path: str) -> KdumpHeader:
    """Parse the main header and sub-header of the (unflattened) kdump file at *path*."""
    try:
        with open(path, "rb") as f:
            hdr = f.read(512)
            layout = None
            # (block_size offset, 64-bit?) for the 64- and 32-bit main header layouts.
            for bs_off, is64 in ((428, True), (416, False)):
                for order in ("<", ">"):
                    bs, sub_blocks, bitmap_blocks = struct.unpack_from(order + "iii", hdr, bs_off)
                    if (
                        _pow2(bs)
                        and 512 <= bs <= 1 << 20
                        and sub_blocks >= 0
                        and (bitmap_blocks > 0)
                    ):
                        layout = (bs, is64, order)
                        break
                if layout:
                    break
            if layout is None:
                raise TargetError(f"{path}: corrupt kdump header (no valid block size)", "")
            bs, is64, order = layout
            (version,) = struct.unpack_from(order + "i", hdr, 8)
            f.seek(bs)
            sub = f.read(128)
            vmci = notes = b""
            if version >= 3 and len(sub) >= 64:
                for voff, vsz, noff, nsz in _sub_header_fields(sub, order, is64, bs):
                    if version < 4:
                        noff = nsz = 0
                    vmci = _read_at(f, voff, vsz)
                    notes = _read_at(f, noff, nsz)
                    break
    except OSError as e:
        raise TargetError(f"{path}: cannot read the kdump header: {e.strerror or e}", "") from None

    fields = [hdr[UTS_OFFSET + i * UTS_FIELD : UTS_OFFSET + (i + 1) * UTS_FIELD] for i in range(6)]
    sysname, _, release, kversion, machine, _ = (f.split(b"\0", 1)[0] for f in fields)
    # libkdumpfile uses the utsname only if it is NUL-terminated, says "Linux" and has
    # release, version and machine; QEMU fills in the machine alone.
    sane = (
        sysname == b"Linux"
        and all(f[-1:] == b"\0" for f in fields[:5])
        and bool(release and kversion and machine)
    )
    return KdumpHeader(
        machine=machine.decode("ascii", "replace"),
        uts_sane=sane,
        header_version=version,
        is_64_bit=is64,
        little_endian=order == "<",
        block_size=bs,
        vmcoreinfo=vmci,
        notes=notes,
    )


def _sub_header_fields(
    sub: bytes, order: str, is64: bool, bs: int
) -> Iterator[tuple[int, int, int, int]]:
    """Yield plausible (vmcoreinfo offset, size, notes offset, size) for the sub-header."""
    if is64:
        layouts = [(order + "QQQQ", 32)]
    else:  # i386 packs 64-bit fields to 4 bytes, 32-bit ARM pads them to 8
        layouts = [(order + "QIQI", 20), (order + "4xQI4xQI", 20)]
    for fmt, off in layouts:
        voff, vsz, noff, nsz = struct.unpack_from(fmt, sub, off)
        if all(o == 0 or (o >= bs and s < 1 << 24) for o, s in ((voff, vsz), (noff, nsz))):
            yield voff, vsz, noff, nsz


def _read_at(f: BinaryIO, off: int, size: int) -> bytes:
    """*size* bytes at *off*, fewer past the end of the file; none at an offset no file has
    (a corrupt sub-header)."""
    if not off or not size or off >= 1 << 62:
        return b""
    f.seek(off)
    return f.read(size)


# NT_PRSTATUS descriptor sizes -> architecture (64-bit little-endian unless noted).
_PRSTATUS_SIZES: dict[tuple[int, bool], drgn.Architecture] = {
    (336, True): drgn.Architecture.X86_64,  # also s390x, which is big-endian
    (144, True): drgn.Architecture.I386,
    (392, True): drgn.Architecture.AARCH64,
    (148, True): drgn.Architecture.ARM,
    (504, True): drgn.Architecture.PPC64,
    (504, False): drgn.Architecture.PPC64,
    (376, True): drgn.Architecture.RISCV64,
    (336, False): drgn.Architecture.S390X,
}

# VMCOREINFO keys that only one architecture's kernel writes.
_VMCOREINFO_KEYS: list[tuple[str, drgn.Architecture]] = [
    ("SYMBOL(init_top_pgt)", drgn.Architecture.X86_64),
    ("NUMBER(pgtable_l5_enabled)", drgn.Architecture.X86_64),
    ("NUMBER(X86_PAE)", drgn.Architecture.I386),
    ("NUMBER(kimage_voffset)", drgn.Architecture.AARCH64),
    ("NUMBER(TCR_EL1_T1SZ)", drgn.Architecture.AARCH64),
    ("SYMBOL(mmu_psize_defs)", drgn.Architecture.PPC64),
    ("SYMBOL(lowcore_ptr)", drgn.Architecture.S390X),
    ("NUMBER(KERNEL_LINK_ADDR)", drgn.Architecture.RISCV64),
    ("NUMBER(va_kernel_pa_offset)", drgn.Architecture.RISCV64),
]

# Host machine names (os.uname().machine) and kdump machine names -> drgn architecture.
_MACHINES: dict[str, drgn.Architecture] = {
    "x86_64": drgn.Architecture.X86_64,
    "amd64": drgn.Architecture.X86_64,
    "i386": drgn.Architecture.I386,
    "i686": drgn.Architecture.I386,
    "aarch64": drgn.Architecture.AARCH64,
    "arm64": drgn.Architecture.AARCH64,
    "arm": drgn.Architecture.ARM,
    "armv7l": drgn.Architecture.ARM,
    "ppc64": drgn.Architecture.PPC64,
    "ppc64le": drgn.Architecture.PPC64,
    "s390x": drgn.Architecture.S390X,
    "riscv64": drgn.Architecture.RISCV64,
}


def _platform(arch: drgn.Architecture, hdr: KdumpHeader) -> drgn.Platform:
    if arch == drgn.Architecture.PPC64:  # the only bi-endian one we map
        flags = drgn.PlatformFlags.IS_64_BIT
        if hdr.little_endian:
            flags |= drgn.PlatformFlags.IS_LITTLE_ENDIAN
        return drgn.Platform(arch, flags)
    return drgn.Platform(arch)


def arch_from_header(hdr: KdumpHeader) -> tuple[drgn.Architecture | None, str]:
    """Infer the architecture of a kdump header; returns (arch or None, how it was found)."""
    info = hdr.parsed_vmcoreinfo()
    for key, arch in _VMCOREINFO_KEYS:
        if key in info:
            return arch, f"VMCOREINFO has {key}"
    m = re.match(r"\S+", info.get("OSRELEASE", ""))
    if m:
        for machine, arch in _MACHINES.items():
            if re.search(r"[-.+_]" + machine + r"\b", m.group()):
                return arch, f"VMCOREINFO OSRELEASE={m.group()}"
    for note in hdr.iter_notes():
        if note.name == b"CORE" and note.type == elf.NT_PRSTATUS:
            found = _PRSTATUS_SIZES.get((len(note.desc), hdr.little_endian))
            if found is not None:
                return found, f"NT_PRSTATUS note of {len(note.desc)} bytes"
            break
    return None, ""


def infer_platform(path: str) -> drgn.Platform | None:
    """The platform to create the :class:`drgn.Program` with for the kdump file *path*, or
    None when libkdumpfile finds the machine in the header by itself.

    QEMU writes no usable utsname, so libkdumpfile cannot tell the architecture.  In order,
    this trusts VMCOREINFO, the size of the NT_PRSTATUS notes (which libkdumpfile checks
    against the architecture), the machine name in the header, and finally the host if its
    word size matches the header's.
    """
    hdr = read_kdump_header(path)
    if hdr.uts_sane and hdr.machine in _MACHINES:
        return None
    arch, _ = arch_from_header(hdr)
    if arch is None:
        arch = _MACHINES.get(hdr.machine)
    if arch is None:
        host = _MACHINES.get(host_platform_mod.machine())
        host_64 = host not in (drgn.Architecture.I386, drgn.Architecture.ARM)
        if host is not None and host_64 == hdr.is_64_bit:
            arch = host
        elif hdr.is_64_bit and hdr.little_endian:
            arch = drgn.Architecture.X86_64
        elif not hdr.is_64_bit and hdr.little_endian:
            arch = drgn.Architecture.I386
        else:
            return None
    return _platform(arch, hdr)
