"""The kernel's BTF (BPF Type Format) as drgn types, parsed lazily and by name.

A kernel built with ``CONFIG_DEBUG_INFO_BTF`` carries a description of its types in the
``.BTF`` section of its image: in memory between ``__start_BTF`` and ``__stop_BTF`` (so in
every full dump) and, on a running kernel, in ``/sys/kernel/btf/vmlinux``. The format is
``Documentation/bpf/btf.rst``: a header, a type section of variable-length records numbered
from 1 in order, and a string section.

:class:`Btf` checks the header and walks the type section once (an offset per type id and a
name offset per type, about 0.1 s for a distribution kernel's 150 000 types); nothing else is
decoded until drgn asks for a type by name. :class:`BtfTypes` turns a BTF type into a
:class:`drgn.Type` on demand: structure members are lazy, so looking up ``struct page``
converts ``struct page`` and nothing it points to. It also answers enumerator constants
(``PG_head``, ``SECTION_MARKED_PRESENT_BIT``) and the types of the variables BTF describes
(per-CPU ones).

Everything in a blob is checked before it is used: a truncated or corrupt blob raises
:class:`BtfFormatError` (a :class:`~pinspect.errors.DebugInfoError` and a :class:`ValueError`)
with what is wrong and where, never an :class:`IndexError` or a :class:`struct.error` from
deep inside a lookup.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

import numpy as np
from drgn import (
    Object,
    Program,
    Qualifiers,
    Type,
    TypeEnumerator,
    TypeKind,
    TypeKindSet,
    TypeMember,
    TypeParameter,
)

from pinspect.errors import DebugInfoError

__all__ = ["BTF_MAGIC", "Btf", "BtfFormatError", "BtfTypes"]

BTF_MAGIC = 0xEB9F

# BTF_KIND_* (include/uapi/linux/btf.h)
UNKN, INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)

KIND_NAMES = ("UNKN", "INT", "PTR", "ARRAY", "STRUCT", "UNION", "ENUM", "FWD", "TYPEDEF",
              "VOLATILE", "CONST", "RESTRICT", "FUNC", "FUNC_PROTO", "VAR", "DATASEC", "FLOAT",
              "DECL_TAG", "TYPE_TAG", "ENUM64")

# Bytes that follow the 12-byte struct btf_type: (fixed, per vlen item).
_EXTRA = {
    INT: (4, 0), PTR: (0, 0), ARRAY: (12, 0), STRUCT: (0, 12), UNION: (0, 12), ENUM: (0, 8),
    FWD: (0, 0), TYPEDEF: (0, 0), VOLATILE: (0, 0), CONST: (0, 0), RESTRICT: (0, 0),
    FUNC: (0, 0), FUNC_PROTO: (0, 8), VAR: (4, 0), DATASEC: (0, 12), FLOAT: (0, 0),
    DECL_TAG: (4, 0), TYPE_TAG: (0, 0), ENUM64: (0, 12),
}

# BTF_INT_ENCODING bits
_INT_SIGNED = 1
_INT_BOOL = 4

# drgn kinds that each BTF kind can answer when looked up by name
_DRGN_KIND = {
    INT: TypeKind.INT, STRUCT: TypeKind.STRUCT, UNION: TypeKind.UNION, ENUM: TypeKind.ENUM,
    ENUM64: TypeKind.ENUM, TYPEDEF: TypeKind.TYPEDEF, FLOAT: TypeKind.FLOAT,
}


class BtfFormatError(DebugInfoError, ValueError):
    """The BTF blob is truncated or corrupt."""

    def __init__(self, message: str) -> None:
        super().__init__(f"the kernel's BTF is corrupt: {message}",
                         "pass the kernel's vmlinux with -s PATH (DWARF)")


class Btf:
    """One BTF blob: its header checked and its type records located, nothing decoded."""

    def __init__(self, data: bytes, origin: str = "BTF") -> None:
        self.data = bytes(data)
        self.origin = origin
        self._parse_header()
        self._index_types()
        self._enumerators: dict[int, tuple[int, int]] | None = None  # name_off -> (id, index)
        self._vars: dict[int, int] | None = None  # name_off -> VAR type id

    # -- layout ----------------------------------------------------------------------------

    def _parse_header(self) -> None:
        data = self.data
        if len(data) < 24:
            raise BtfFormatError(f"{self.origin}: {len(data)} bytes, shorter than a BTF header")
        for order in "<>":
            (magic,) = struct.unpack_from(order + "H", data, 0)
            if magic == BTF_MAGIC:
                self.order = order
                break
        else:
            raise BtfFormatError(f"{self.origin}: no BTF magic (0xeb9f) at the start "
                                 f"(found {data[:2].hex()})")
        version, _flags, hdr_len = struct.unpack_from(self.order + "BBI", data, 2)
        if version != 1:
            raise BtfFormatError(f"{self.origin}: BTF version {version}, pinspect reads 1")
        if hdr_len < 24 or hdr_len > len(data):
            raise BtfFormatError(f"{self.origin}: header length {hdr_len} is not plausible")
        type_off, type_len, str_off, str_len = struct.unpack_from(self.order + "IIII", data, 8)
        self.type_start = hdr_len + type_off
        self.type_end = self.type_start + type_len
        self.str_start = hdr_len + str_off
        self.str_end = self.str_start + str_len
        for what, end in (("type", self.type_end), ("string", self.str_end)):
            if end > len(data):
                raise BtfFormatError(
                    f"{self.origin}: truncated: the {what} section ends at byte {end}, "
                    f"the blob has {len(data)} bytes")
        if str_len == 0 or data[self.str_start] != 0 or data[self.str_end - 1] != 0:
            raise BtfFormatError(f"{self.origin}: the string section is not NUL-delimited")
        self.strings = data[self.str_start:self.str_end]

    def _index_types(self) -> None:
        """One pass over the type section: where each record starts (name offsets and kinds
        are then read for all records at once)."""
        data, end = self.data, self.type_end
        info_at = struct.Struct(self.order + "I").unpack_from
        # Bytes per record: 12 + fixed + per_item * vlen, by kind (unknown kinds: None).
        fixed = [12 + _EXTRA[k][0] if k in _EXTRA else None for k in range(32)]
        per_item = [_EXTRA[k][1] if k in _EXTRA else 0 for k in range(32)]
        positions = [0]  # id 0 is void
        append = positions.append
        pos = self.type_start
        while pos < end:
            if pos + 12 > end:
                raise BtfFormatError(f"{self.origin}: truncated type record at byte {pos}")
            (info,) = info_at(data, pos + 4)
            kind = (info >> 24) & 0x1F
            size = fixed[kind]
            if size is None:
                raise BtfFormatError(f"{self.origin}: type {len(positions)} at byte {pos} has "
                                     f"unknown kind {kind}")
            append(pos)
            pos += size + per_item[kind] * (info & 0xFFFF)
        if pos != end:
            raise BtfFormatError(f"{self.origin}: the last type record runs past the end of "
                                 "the type section")
        self.offsets = positions
        self.count = len(positions)
        dtype = np.dtype("<u4" if self.order == "<" else ">u4")
        where = np.array(positions[1:], dtype=np.int64)
        name_offs = np.zeros(self.count, dtype=np.uint32)
        infos = np.zeros(self.count, dtype=np.uint32)
        if len(where):
            if self.type_start % 4 == 0:
                words = np.frombuffer(data, dtype=dtype, count=self.type_end // 4)
                name_offs[1:] = words[where // 4]
                infos[1:] = words[where // 4 + 1]
            else:
                name_offs[1:] = [struct.unpack_from(self.order + "I", data, p)[0]
                                 for p in positions[1:]]
                infos[1:] = [info_at(data, p + 4)[0] for p in positions[1:]]
        self._name_offs = name_offs
        self._kinds = (infos >> 24) & 0x1F
        if int(name_offs.max()) >= len(self.strings):
            raise BtfFormatError(f"{self.origin}: a type name lies outside the string section")

    # -- records ---------------------------------------------------------------------------

    def string(self, off: int) -> str:
        if off >= len(self.strings):
            raise BtfFormatError(f"{self.origin}: string offset {off} is out of range")
        end = self.strings.index(b"\0", off)
        return self.strings[off:end].decode("utf-8", "replace")

    def record(self, type_id: int) -> tuple[int, int, int, int, int]:
        """(kind, kind_flag, vlen, name_off, size_or_type) of *type_id*."""
        self.check_id(type_id)
        name_off, info, size_type = struct.unpack_from(self.order + "III", self.data,
                                                       self.offsets[type_id])
        return (info >> 24) & 0x1F, info >> 31, info & 0xFFFF, name_off, size_type

    def check_id(self, type_id: int) -> None:
        if not 0 < type_id < self.count:
            raise BtfFormatError(f"{self.origin}: type id {type_id} is out of range "
                                 f"(1 to {self.count - 1})")

    def items(self, type_id: int, fmt: str) -> Iterable[tuple[int, ...]]:
        """The vlen items that follow *type_id*'s record, each unpacked with *fmt*."""
        kind = self.kind(type_id)
        fixed = _EXTRA[kind][0]
        vlen = self.record(type_id)[2]
        start = self.offsets[type_id] + 12 + fixed
        size = struct.calcsize(fmt)
        return struct.iter_unpack(self.order + fmt, self.data[start:start + size * vlen])

    def extra_word(self, type_id: int) -> int:
        """The u32 after the record (INT encoding, VAR linkage, DECL_TAG index)."""
        (word,) = struct.unpack_from(self.order + "I", self.data, self.offsets[type_id] + 12)
        return int(word)

    def array_info(self, type_id: int) -> tuple[int, int, int]:
        """(element type, index type, number of elements) of the ARRAY *type_id*."""
        elem, index, nelems = struct.unpack_from(self.order + "III", self.data,
                                                 self.offsets[type_id] + 12)
        return int(elem), int(index), int(nelems)

    def kind(self, type_id: int) -> int:
        return int(self._kinds[type_id])

    def name(self, type_id: int) -> str:
        return self.string(int(self._name_offs[type_id]))

    # -- lookups by name -------------------------------------------------------------------

    def _string_offsets(self, name: str) -> list[int]:
        """Offsets of the string *name* in the string section (BTF dedups them: usually one)."""
        needle = b"\0" + name.encode() + b"\0"
        found: list[int] = []
        start = 0
        while True:
            at = self.strings.find(needle, start)
            if at < 0:
                return found
            found.append(at + 1)
            start = at + 1

    def ids_named(self, name: str, kinds: Iterable[int]) -> list[int]:
        """Type ids of the given BTF *kinds* called *name*, in id order."""
        if not name:
            return []
        wanted = np.array(sorted(set(kinds)), dtype=np.uint32)
        ids: list[int] = []
        for off in self._string_offsets(name):
            hits = np.flatnonzero((self._name_offs == off) & np.isin(self._kinds, wanted))
            ids.extend(int(i) for i in hits)
        return sorted(ids)

    def enumerator(self, name: str) -> tuple[int, int] | None:
        """(enum type id, index) of the enumerator *name*, or None."""
        if self._enumerators is None:
            table: dict[int, tuple[int, int]] = {}
            for type_id in np.flatnonzero((self._kinds == ENUM) | (self._kinds == ENUM64)):
                tid = int(type_id)
                fmt = "Ii" if self.kind(tid) == ENUM else "III"
                for index, item in enumerate(self.items(tid, fmt)):
                    table.setdefault(item[0], (tid, index))
            self._enumerators = table
        for off in self._string_offsets(name):
            if off in self._enumerators:
                return self._enumerators[off]
        return None

    def var(self, name: str) -> int | None:
        """The type id of the VAR *name* (BTF describes per-CPU variables only), or None."""
        ids = self.ids_named(name, (VAR,))
        return ids[0] if ids else None

    def func(self, name: str) -> int | None:
        ids = self.ids_named(name, (FUNC,))
        return ids[0] if ids else None


class BtfTypes:
    """Converts :class:`Btf` types to drgn types for one program, and caches them."""

    def __init__(self, prog: Program, btf: Btf) -> None:
        self.prog = prog
        self.btf = btf
        self._cache: dict[int, Type] = {}
        self._converting: set[int] = set()
        self._by_name: dict[tuple[str, frozenset[TypeKind]], Type | None] = {}

    # -- drgn finders ----------------------------------------------------------------------

    def find_type(self, prog: Program, kinds: TypeKindSet, name: str,
                  filename: str | None) -> Type | None:
        """drgn type finder: the type called *name* of one of *kinds*."""
        if filename:
            return None  # BTF has no file names
        key = (name, frozenset(kinds))
        if key in self._by_name:
            return self._by_name[key]
        btf_kinds = [k for k, v in _DRGN_KIND.items() if v in kinds]
        found: Type | None = None
        if TypeKind.STRUCT in kinds or TypeKind.UNION in kinds:
            btf_kinds.append(FWD)
        ids = self.btf.ids_named(name, btf_kinds)
        # A complete definition wins over a forward declaration.
        complete = [i for i in ids if self.btf.kind(i) != FWD]
        for type_id in complete or ids:
            candidate = self.type(type_id)
            if candidate.kind in kinds:
                found = candidate
                break
        self._by_name[key] = found
        return found

    def constant(self, name: str) -> Object | None:
        """The enumerator *name* as an object of its enum type, or None."""
        where = self.btf.enumerator(name)
        if where is None:
            return None
        enum = self.type(where[0])
        assert enum.enumerators is not None
        return Object(self.prog, enum, enum.enumerators[where[1]].value)

    # -- conversion ------------------------------------------------------------------------

    def type(self, type_id: int) -> Type:
        """The drgn type of BTF *type_id* (0 is void)."""
        cached = self._cache.get(type_id)
        if cached is not None:
            return cached
        if type_id in self._converting:
            # Only members and parameters (converted lazily) may refer back to a type.
            raise BtfFormatError(f"{self.btf.origin}: type {type_id} refers to itself")
        self._converting.add(type_id)
        try:
            converted = self._convert(type_id)
        except BtfFormatError:
            raise
        except (ValueError, OverflowError, TypeError, UnicodeError) as e:
            # drgn refuses what a corrupt record describes (a zero-sized int, ...)
            raise BtfFormatError(f"{self.btf.origin}: type {type_id}: {e}") from e
        finally:
            self._converting.discard(type_id)
        self._cache[type_id] = converted
        return converted

    def _lazy(self, type_id: int, bit_field_size: int = 0) -> Callable[[], Type | Object]:
        def thunk() -> Type | Object:
            t = self.type(type_id)
            if bit_field_size:
                return Object(self.prog, t, bit_field_size=bit_field_size)
            return t
        return thunk

    def _convert(self, type_id: int) -> Type:
        prog, btf = self.prog, self.btf
        if type_id == 0:
            return prog.void_type()
        kind, kind_flag, vlen, name_off, size_type = btf.record(type_id)
        name = btf.string(name_off) if name_off else None
        if kind == INT:
            encoding = btf.extra_word(type_id) >> 24
            if encoding & _INT_BOOL:
                return prog.bool_type(name or "_Bool", size_type)
            return prog.int_type(name or "int", size_type, bool(encoding & _INT_SIGNED))
        if kind == FLOAT:
            return prog.float_type(name or "double", size_type)
        if kind == PTR:
            return prog.pointer_type(self.type(size_type))
        if kind == ARRAY:
            elem, _index, nelems = btf.array_info(type_id)
            return prog.array_type(self.type(elem), nelems)
        if kind in (STRUCT, UNION):
            members = []
            for m_name, m_type, m_offset in btf.items(type_id, "III"):
                if m_type:
                    btf.check_id(m_type)
                if kind_flag:
                    bits, offset = m_offset >> 24, m_offset & 0xFFFFFF
                else:
                    bits, offset = 0, m_offset
                members.append(TypeMember(self._lazy(m_type, bits),
                                          btf.string(m_name) if m_name else None, offset))
            make = prog.struct_type if kind == STRUCT else prog.union_type
            return make(name, size_type, members)
        if kind in (ENUM, ENUM64):
            signed = bool(kind_flag)
            if vlen == 0:
                return prog.enum_type(name)
            if kind == ENUM:
                values = [(n, v if signed else v & 0xFFFFFFFF)
                          for n, v in btf.items(type_id, "Ii")]
            else:
                values = []
                for n, lo, hi in btf.items(type_id, "III"):
                    v = (hi << 32) | lo
                    if signed and v >> 63:
                        v -= 1 << 64
                    values.append((n, v))
            compatible = prog.int_type(("" if signed else "unsigned ") + "int"
                                       if size_type <= 4 else
                                       ("" if signed else "unsigned ") + "long",
                                       size_type, signed)
            return prog.enum_type(name, compatible,
                                  [TypeEnumerator(btf.string(n), v) for n, v in values])
        if kind == FWD:
            complete = btf.ids_named(name or "", (UNION,) if kind_flag else (STRUCT,))
            if complete:
                return self.type(complete[0])
            return prog.union_type(name) if kind_flag else prog.struct_type(name)
        if kind == TYPEDEF:
            return prog.typedef_type(name or "", self.type(size_type))
        if kind in (CONST, VOLATILE, RESTRICT):
            inner = self.type(size_type)
            qualifier = {CONST: Qualifiers.CONST, VOLATILE: Qualifiers.VOLATILE,
                         RESTRICT: Qualifiers.RESTRICT}[kind]
            return inner.qualified(inner.qualifiers | qualifier)
        if kind in (TYPE_TAG, FUNC, VAR):
            return self.type(size_type)
        if kind == FUNC_PROTO:
            params = []
            variadic = False
            for p_name, p_type in btf.items(type_id, "II"):
                if p_name == 0 and p_type == 0:
                    variadic = True
                    continue
                params.append(TypeParameter(self._lazy(p_type),
                                            btf.string(p_name) if p_name else None))
            return prog.function_type(self.type(size_type), params, variadic)
        raise BtfFormatError(f"{btf.origin}: type {type_id} is a {KIND_NAMES[kind]}, "
                             "which is not a C type")
