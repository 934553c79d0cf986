"""Just enough ELF64 reading for the generator: allocated sections and the
symbol table of the linked debug file."""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass
class Section:
    name: str
    addr: int
    size: int
    nobits: bool
    data: bytes


@dataclass
class Symbol:
    name: str
    value: int
    size: int
    kind: int  # STT_*


def read_elf(
    path: str,
) -> tuple[list[Section], dict[str, Symbol], bytes, dict[tuple[str, str], int]]:
    """Sections, global-first symbol table, build ID, and the addresses of
    static symbols by (source file, name)."""
    with open(path, "rb") as f:
        raw = f.read()
    assert raw[:4] == b"\x7fELF" and raw[4] == 2
    (shoff,) = struct.unpack_from("<Q", raw, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", raw, 0x3A)
    hdrs = [struct.unpack_from("<IIQQQQIIQQ", raw, shoff + i * shentsize) for i in range(shnum)]
    strtab_off = hdrs[shstrndx][4]

    def name_at(base: int, off: int) -> str:
        end = raw.index(b"\0", base + off)
        return raw[base + off : end].decode()

    sections: list[Section] = []
    syms: dict[str, Symbol] = {}
    build_id = b""
    statics: dict[tuple[str, str], int] = {}
    for h in hdrs:
        name = name_at(strtab_off, h[0])
        sh_type, flags, addr, off, size = h[1], h[2], h[3], h[4], h[5]
        if flags & 0x2 and size:  # SHF_ALLOC
            nob = sh_type == 8
            sections.append(Section(name, addr, size, nob, b"" if nob else raw[off : off + size]))
        if name == ".note.gnu.build-id":
            namesz, descsz, _ = struct.unpack_from("<III", raw, off)
            d = off + 12 + (namesz + 3) // 4 * 4
            build_id = raw[d : d + descsz]
        if sh_type == 2:  # SHT_SYMTAB
            link_off = hdrs[h[6]][4]
            cur_file = ""
            for i in range(size // 24):
                st_name, st_info, _, _, st_value, st_size = struct.unpack_from(
                    "<IBBHQQ", raw, off + i * 24
                )
                if not st_name:
                    continue
                n = name_at(link_off, st_name)
                if st_info & 0xF == 4:  # STT_FILE
                    cur_file = n
                    continue
                if st_info >> 4 == 0:  # STB_LOCAL
                    statics[(cur_file, n)] = st_value
                    syms.setdefault(n, Symbol(n, st_value, st_size, st_info & 0xF))
                else:
                    syms[n] = Symbol(n, st_value, st_size, st_info & 0xF)
    return sections, syms, build_id, statics
