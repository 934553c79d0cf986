"""A small BTF writer for the tests: builds blobs with the kinds pinspect's reader converts."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pinspect import btf as k


@dataclass
class BtfWriter:
    """Types are added in order and get ids from 1; :meth:`blob` lays out header, types and
    strings (``Documentation/bpf/btf.rst``)."""

    types: list[bytes] = field(default_factory=list)
    strings: bytearray = field(default_factory=lambda: bytearray(b"\0"))

    def name(self, text: str | None) -> int:
        if not text:
            return 0
        needle = b"\0" + text.encode() + b"\0"
        at = bytes(self.strings).find(needle)
        if at >= 0:
            return at + 1
        off = len(self.strings)
        self.strings += text.encode() + b"\0"
        return off

    def add(self, kind: int, name: str | None, vlen: int, size_type: int, extra: bytes = b"",
            kind_flag: int = 0) -> int:
        info = (kind_flag << 31) | (kind << 24) | vlen
        self.types.append(struct.pack("<III", self.name(name), info, size_type) + extra)
        return len(self.types)

    # -- kinds -----------------------------------------------------------------------------

    def int_(self, name: str, size: int, signed: bool = False, bool_: bool = False) -> int:
        encoding = (4 if bool_ else 0) | (1 if signed else 0)
        return self.add(k.INT, name, 0, size, struct.pack("<I", encoding << 24 | size * 8))

    def ptr(self, target: int) -> int:
        return self.add(k.PTR, None, 0, target)

    def array(self, elem: int, index: int, nelems: int) -> int:
        return self.add(k.ARRAY, None, 0, 0, struct.pack("<III", elem, index, nelems))

    def struct(self, name: str | None, size: int,
               members: list[tuple[str | None, int, int, int]], union: bool = False) -> int:
        """members: (name, type id, bit offset, bit-field size)."""
        bitfields = any(bits for *_, bits in members)
        extra = b"".join(
            struct.pack("<III", self.name(m), t, (bits << 24 | off) if bitfields else off)
            for m, t, off, bits in members)
        return self.add(k.UNION if union else k.STRUCT, name, len(members), size, extra,
                        int(bitfields))

    def enum(self, name: str | None, values: list[tuple[str, int]], size: int = 4,
             signed: bool = False) -> int:
        extra = b"".join(struct.pack("<Ii", self.name(n), v) for n, v in values)
        return self.add(k.ENUM, name, len(values), size, extra, int(signed))

    def enum64(self, name: str | None, values: list[tuple[str, int]]) -> int:
        extra = b"".join(struct.pack("<III", self.name(n), v & 0xFFFFFFFF, v >> 32 & 0xFFFFFFFF)
                         for n, v in values)
        return self.add(k.ENUM64, name, len(values), 8, extra)

    def fwd(self, name: str, union: bool = False) -> int:
        return self.add(k.FWD, name, 0, 0, kind_flag=int(union))

    def typedef(self, name: str, target: int) -> int:
        return self.add(k.TYPEDEF, name, 0, target)

    def const(self, target: int) -> int:
        return self.add(k.CONST, None, 0, target)

    def volatile(self, target: int) -> int:
        return self.add(k.VOLATILE, None, 0, target)

    def func_proto(self, ret: int, params: list[tuple[str | None, int]]) -> int:
        extra = b"".join(struct.pack("<II", self.name(n), t) for n, t in params)
        return self.add(k.FUNC_PROTO, None, len(params), ret, extra)

    def func(self, name: str, proto: int) -> int:
        return self.add(k.FUNC, name, 0, proto)

    def var(self, name: str, type_id: int) -> int:
        return self.add(k.VAR, name, 0, type_id, struct.pack("<I", 1))

    def datasec(self, name: str, vars_: list[tuple[int, int, int]]) -> int:
        extra = b"".join(struct.pack("<III", *v) for v in vars_)
        return self.add(k.DATASEC, name, len(vars_), 0, extra)

    def float_(self, name: str, size: int) -> int:
        return self.add(k.FLOAT, name, 0, size)

    def blob(self) -> bytes:
        types = b"".join(self.types)
        header = struct.pack("<HBBIIIII", k.BTF_MAGIC, 1, 0, 24, 0, len(types), len(types),
                             len(self.strings))
        return header + types + bytes(self.strings)


def kernel_like() -> BtfWriter:
    """A blob shaped like a kernel's: struct page with an anonymous union and a bit field,
    enums, typedefs, a per-CPU variable, a function."""
    w = BtfWriter()
    ulong = w.int_("long unsigned int", 8)
    uint = w.int_("unsigned int", 4)
    int_ = w.int_("int", 4, signed=True)
    char = w.int_("char", 1, signed=True)
    bool_ = w.int_("_Bool", 1, bool_=True)
    atomic = w.typedef("atomic_t", w.struct(None, 4, [("counter", int_, 0, 0)]))
    page_fwd = w.fwd("page")
    page_ptr = w.ptr(page_fwd)
    # a type may refer to a later id: list_head's members to the pointer that follows it
    list_ptr = len(w.types) + 2
    list_head = w.struct("list_head", 16, [("next", list_ptr, 0, 0), ("prev", list_ptr, 64, 0)])
    assert w.ptr(list_head) == list_ptr
    union = w.struct(None, 16, [("lru", list_head, 0, 0), ("compound_head", ulong, 0, 0)],
                     union=True)
    w.struct("page", 64, [("flags", ulong, 0, 0), (None, union, 64, 0),
                                 ("mapping", w.ptr(0), 192, 0), ("index", ulong, 256, 0),
                                 ("private", ulong, 320, 0), ("_mapcount", atomic, 384, 0),
                                 ("_refcount", atomic, 416, 0), ("memcg_data", ulong, 448, 0)])
    w.struct("bits", 4, [("low", uint, 0, 3), ("high", uint, 3, 29)])
    w.enum("pageflags", [("PG_locked", 0), ("PG_head", 6), ("__NR_PAGEFLAGS", 25)])
    w.enum(None, [("SECTION_MARKED_PRESENT_BIT", 0), ("SECTION_MAP_LAST_BIT", 5)])
    w.enum("signed_enum", [("NEGATIVE", -2)], signed=True)
    w.enum64("wide", [("WIDE", 1 << 40)])
    w.typedef("nodemask_t", w.struct(None, 8, [("bits", w.array(ulong, int_, 1), 0, 0)]))
    w.const(w.volatile(char))
    proto = w.func_proto(int_, [("page", page_ptr), (None, 0)])
    w.func("page_mapcount", proto)
    w.var("runqueues", w.array(ulong, int_, 4))
    w.datasec(".data..percpu", [(len(w.types), 0, 32)])
    w.float_("double", 8)
    w.typedef("bool", bool_)
    w.ptr(list_ptr)
    return w
