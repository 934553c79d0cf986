"""Typed writes into a Memory, driven by the DWARF of the sample's debug file
(read with drgn), so that every offset comes from the compiled layout."""

from __future__ import annotations

import re
from functools import cache

import drgn
from drgn import Type, TypeKind

from .memory import Memory

_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")


def load_debug(path: str, arch: str = "X86_64") -> drgn.Program:
    """drgn over the DWARF of a debug file alone (no core): types and the
    addresses of variables."""
    prog = drgn.Program(
        drgn.Platform(
            getattr(drgn.Architecture, arch),
            drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN,
        )
    )
    m = prog.extra_module(path, 0, create=True)
    m.try_file(path, force=True)
    return prog


def _find_member(t: Type, name: str) -> tuple[int, Type, int]:
    """(bit offset, type, bit field size) of a member, searching anonymous
    members."""
    for m in t.members or ():
        if m.name == name:
            return m.bit_offset, m.type, m.bit_field_size or 0
        if m.name is None:
            inner = m.type.unaliased()
            if inner.kind in (TypeKind.STRUCT, TypeKind.UNION):
                try:
                    off, mt, bf = _find_member(inner, name)
                except KeyError:
                    continue
                return m.bit_offset + off, mt, bf
    raise KeyError(name)


class Types:
    def __init__(self, prog: drgn.Program, mem: Memory) -> None:
        self.prog = prog
        self.mem = mem
        self._cache: dict[tuple[str, str], tuple[int, Type, int]] = {}

    def type(self, name: str) -> Type:
        return _type(self.prog, name)

    def sizeof(self, name: str) -> int:
        return drgn.sizeof(self.type(name))

    def has_member(self, tname: str, path: str) -> bool:
        try:
            self.field(tname, path)
            return True
        except (KeyError, LookupError, AttributeError):  # AttributeError: not a struct
            return False

    def enum(self, name: str) -> int:
        return self.prog.constant(name).value_()

    def has_enum(self, name: str) -> bool:
        try:
            self.prog.constant(name)
            return True
        except LookupError:
            return False

    def field(self, tname: str, path: str) -> tuple[int, Type, int]:
        """(bit offset, type, bit field size) of a member path like
        'free_area[3].free_list[1].next' inside struct tname."""
        key = (tname, path)
        r = self._cache.get(key)
        if r is not None:
            return r
        t = self.type(tname)
        off = 0
        bf = 0
        for tok in path.split("."):
            m = _TOKEN.fullmatch(tok)
            if not m:
                raise KeyError(tok)
            o, t, bf = _find_member(t.unaliased(), m.group(1))
            off += o
            for idx in re.findall(r"\[(\d+)\]", m.group(2)):
                t = t.unaliased()
                assert t.kind == TypeKind.ARRAY, path
                off += int(idx) * 8 * drgn.sizeof(t.type)
                t = t.type
        r = (off, t, bf)
        self._cache[key] = r
        return r

    def offsetof(self, tname: str, path: str) -> int:
        off, _, _ = self.field(tname, path)
        assert off % 8 == 0
        return off // 8

    def put(self, addr: int, tname: str, path: str, value: int | bytes) -> None:
        off, t, bf = self.field(tname, path)
        u = t.unaliased()
        # descend into single-member wrappers (atomic_t, atomic_long_t, ...)
        while u.kind == TypeKind.STRUCT and len(u.members or ()) == 1 and not bf:
            off += u.members[0].bit_offset
            u = u.members[0].type.unaliased()
        if isinstance(value, bytes):
            self.mem.write(addr + off // 8, value)
            return
        size = drgn.sizeof(u)
        if bf:
            base = addr + off // 8
            shift = off % 8
            nbytes = (shift + bf + 7) // 8
            cur = int.from_bytes(self.mem.read(base, nbytes), "little")
            mask = ((1 << bf) - 1) << shift
            cur = (cur & ~mask) | ((value << shift) & mask)
            self.mem.write(base, cur.to_bytes(nbytes, "little"))
            return
        assert off % 8 == 0, path
        self.mem.write(addr + off // 8, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))

    def get(self, addr: int, tname: str, path: str) -> int:
        off, t, bf = self.field(tname, path)
        u = t.unaliased()
        while u.kind == TypeKind.STRUCT and len(u.members or ()) == 1 and not bf:
            off += u.members[0].bit_offset
            u = u.members[0].type.unaliased()
        size = drgn.sizeof(u)
        assert not bf and off % 8 == 0
        return int.from_bytes(self.mem.read(addr + off // 8, size), "little")


@cache
def _type(prog: drgn.Program, name: str) -> Type:
    return prog.type(name)
