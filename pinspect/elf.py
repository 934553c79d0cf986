"""The parts of ELF that pinspect reads: the ELF64 header, program headers, notes and the GNU
build ID.

Functions take the file's bytes (``bytes``, an ``mmap`` or a ``memoryview``) and raise
ValueError when those are not the ELF structure asked for, or are cut short.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "ELF_MAGIC",
    "ET_CORE",
    "NT_GNU_BUILD_ID",
    "NT_PRSTATUS",
    "PT_LOAD",
    "PT_NOTE",
    "SHT_NOTE",
    "ElfHeader",
    "Note",
    "ProgramHeader",
    "build_id",
    "file_type",
    "iter_notes",
    "program_headers",
    "read_header",
]

Buffer = bytes | bytearray | memoryview | mmap.mmap

ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1
ET_CORE = 4
PT_LOAD = 1
PT_NOTE = 4
PN_XNUM = 0xFFFF  # e_phnum when the count is in section header 0's sh_info
SHT_NOTE = 7
NT_PRSTATUS = 1  # in "CORE" notes
NT_GNU_BUILD_ID = 3  # in "GNU" notes

_EHDR_SIZE = 64


def _unpack(fmt: str, data: Buffer, offset: int) -> tuple[int, ...]:
    try:
        return struct.unpack_from(fmt, data, offset)
    except struct.error:
        raise ValueError(f"ELF data cut short at byte {offset}") from None


@dataclass(frozen=True)
class ElfHeader:
    """The fields of an ELF64 file header that locate its program and section headers."""

    byteorder: str  # struct prefix: "<" little-endian, ">" big-endian
    type: int  # e_type: ET_CORE, ...
    phoff: int
    phentsize: int
    phnum: int  # the real count, also past PN_XNUM
    shoff: int
    shentsize: int
    shnum: int


def file_type(data: Buffer) -> int:
    """``e_type`` of the ELF file (32- or 64-bit) whose first bytes are *data*."""
    if bytes(data[:4]) != ELF_MAGIC:
        raise ValueError("not an ELF file")
    if len(data) < 18:
        raise ValueError("ELF header cut short")
    order = "<" if data[5] == ELFDATA2LSB else ">"
    return _unpack(order + "H", data, 16)[0]


def read_header(data: Buffer) -> ElfHeader:
    """The header of the ELF64 file in *data*.  With PN_XNUM program headers, *data* must
    also hold section header 0."""
    if len(data) < _EHDR_SIZE or bytes(data[:4]) != ELF_MAGIC or data[4] != ELFCLASS64:
        raise ValueError("not an ELF64 file")
    order = "<" if data[5] == ELFDATA2LSB else ">"
    (e_type,) = _unpack(order + "H", data, 16)
    phoff, shoff = _unpack(order + "QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum = _unpack(order + "HHHH", data, 0x36)
    if phnum == PN_XNUM:
        (phnum,) = _unpack(order + "I", data, shoff + 0x2C)
    return ElfHeader(order, e_type, phoff, phentsize, phnum, shoff, shentsize, shnum)


class ProgramHeader(NamedTuple):
    """One ELF64 program header (segment)."""

    type: int
    flags: int
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int


def program_headers(data: Buffer, header: ElfHeader | None = None) -> list[ProgramHeader]:
    """The program headers of the ELF64 file in *data* (its header read again if not given)."""
    if header is None:
        header = read_header(data)
    fmt = header.byteorder + "IIQQQQQ"
    return [
        ProgramHeader(*_unpack(fmt, data, header.phoff + i * header.phentsize))
        for i in range(header.phnum)
    ]


class Note(NamedTuple):
    """One ELF note: its name (without the NUL), type and descriptor."""

    name: bytes
    type: int
    desc: bytes


def iter_notes(data: Buffer, byteorder: str) -> Iterator[Note]:
    """The notes in *data* (the contents of a note segment or section, 4-byte aligned), up to
    the first one cut short; *byteorder* is ``"<"`` or ``">"``."""
    pos = 0
    end = len(data)
    while pos + 12 <= end:
        namesz, descsz, ntype = struct.unpack_from(byteorder + "III", data, pos)
        pos += 12
        name = bytes(data[pos : pos + namesz]).rstrip(b"\0")
        pos += (namesz + 3) & ~3
        desc = bytes(data[pos : pos + descsz])
        pos += (descsz + 3) & ~3
        if len(desc) < descsz:
            return
        yield Note(name, ntype, desc)


def build_id(path: str) -> str | None:
    """The GNU build ID (hex) of the ELF64 file at *path*, from its note sections; None if it
    has none or is not such a file."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            header = read_header(data)
            for i in range(header.shnum):
                entry = header.shoff + i * header.shentsize
                (sh_type,) = _unpack(header.byteorder + "I", data, entry + 4)
                if sh_type != SHT_NOTE:
                    continue
                offset, size = _unpack(header.byteorder + "QQ", data, entry + 0x18)
                for note in iter_notes(data[offset : offset + size], header.byteorder):
                    if note.name == b"GNU" and note.type == NT_GNU_BUILD_ID:
                        return note.desc.hex()
    except (OSError, ValueError):
        return None
    return None
