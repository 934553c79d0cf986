"""The kernel's BTF (BPF Type Format) as drgn types, parsed lazily and by name.

A kernel built with ``CONFIG_DEBUG_INFO_BTF`` carries a description of its types in the
``.BTF`` section of its image: in memory between ``__start_BTF`` and ``__stop_BTF`` (so in
every full dump) and, on a running kernel, in ``/sys/kernel/btf/vmlinux``. The format is
``Documentation/bpf/btf.rst``: a header, a type section of variable-length records numbered
from 1 in order, and a string section.

:class:`Btf` checks the header and walks the type section once (an offset per type id and a
name offset per type: 20-50 ms for a distribution kernel's 100 000-150 000 types); nothing
else is decoded until drgn asks for a type by name, and a name is found without decoding the
others (the first 8 bytes of every type's name are compared at once, then the few that match
in full). :class:`BtfTypes` turns a BTF type into a
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
        # every enumerator's (name offset, its head, enum type id, index), when first asked
        self._enumerators: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

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
        """Where each type record starts. Records are a whole number of 4-byte words, so the
        length of the record that would start at each word of the type section is worked out
        for all words at once (numpy); following the records from the first is then one
        Python step per type. Name offsets and kinds are read for all records at once."""
        type_len = self.type_end - self.type_start
        nwords = type_len // 4
        words = np.frombuffer(self.data, np.dtype(self.order + "u4"), count=nwords,
                              offset=self.type_start)
        info = np.zeros(nwords, np.uint32)  # the info word of a record starting at each word
        info[:-1] = words[1:]
        kinds = (info >> 24) & 0x1F
        # Words per record by kind: 3 + fixed + per item * vlen; an unknown kind jumps past
        # the end, so that the walk stops at it and the checks below name it.
        fixed = np.full(32, nwords + 1, np.int64)
        per_item = np.zeros(32, np.int64)
        for k, (extra, item) in _EXTRA.items():
            fixed[k], per_item[k] = 3 + extra // 4, item // 4
        step = memoryview(fixed[kinds] + per_item[kinds] * (info & 0xFFFF))
        del info, kinds
        starts = [0]  # in words from the type section; id 0 is void (no record)
        append = starts.append
        w = 0
        while w < nwords:
            append(w)
            w += step[w]
        last = starts[-1] if len(starts) > 1 else None
        if last is not None and (last + 3) * 4 > type_len:
            raise BtfFormatError(f"{self.origin}: truncated type record at byte "
                                 f"{self.type_start + 4 * last}")
        if last is not None and (int(words[last + 1]) >> 24) & 0x1F not in _EXTRA:
            raise BtfFormatError(f"{self.origin}: type {len(starts) - 1} at byte "
                                 f"{self.type_start + 4 * last} has unknown kind "
                                 f"{(int(words[last + 1]) >> 24) & 0x1F}")
        if w * 4 < type_len:  # (a type section whose length is not a whole number of words)
            raise BtfFormatError(f"{self.origin}: truncated type record at byte "
                                 f"{self.type_start + 4 * w}")
        if w * 4 > type_len:
            raise BtfFormatError(f"{self.origin}: the last type record runs past the end of "
                                 "the type section")
        at = np.array(starts, np.int64)
        self._words = words
        self._starts = at  # in words; [0] is unused
        self.offsets = self.type_start + 4 * at  # in bytes
        self.count = len(starts)
        name_offs = np.zeros(self.count, np.uint32)
        infos = np.zeros(self.count, np.uint32)
        name_offs[1:] = words[at[1:]]
        infos[1:] = words[at[1:] + 1]
        self._name_offs = name_offs
        self._kinds = (infos >> 24) & 0x1F
        self._vlens = infos & 0xFFFF
        if int(name_offs.max()) >= len(self.strings):
            raise BtfFormatError(f"{self.origin}: a type name lies outside the string section")
        self._name_heads = self._heads(name_offs)

    def _heads(self, offs: np.ndarray) -> np.ndarray:
        """The first 8 bytes of the strings at *offs* (and what follows a shorter one's NUL)
        as little-endian u64, to find a name among them without decoding them all; an offset
        outside the string section gives 0 (no name's)."""
        padded = np.frombuffer(self.strings + bytes(8), np.uint8)
        inside = np.where(offs < len(self.strings), offs, len(self.strings) - 1)
        rows = np.lib.stride_tricks.sliding_window_view(padded, 8)[inside]
        return rows.view("<u8").reshape(len(offs))

    def _matching(self, heads: np.ndarray, offs: np.ndarray, name: str) -> np.ndarray:
        """Indexes into *offs* (string offsets, with *heads* from :meth:`_heads`) of the
        strings equal to *name*."""
        want = name.encode() + b"\0"
        head = want[:8]
        key = np.uint64(int.from_bytes(head, "little"))
        mask = np.uint64((1 << (8 * len(head))) - 1)
        hits = np.flatnonzero((heads & mask) == key)
        if len(want) > 8:
            strings = self.strings
            hits = hits[[strings.startswith(want, int(offs[i])) for i in hits]] \
                if len(hits) else hits
        return hits

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
                                                       int(self.offsets[type_id]))
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
        start = int(self.offsets[type_id]) + 12 + fixed
        size = struct.calcsize(fmt)
        return struct.iter_unpack(self.order + fmt, self.data[start:start + size * vlen])

    def extra_word(self, type_id: int) -> int:
        """The u32 after the record (INT encoding, VAR linkage, DECL_TAG index)."""
        (word,) = struct.unpack_from(self.order + "I", self.data,
                                     int(self.offsets[type_id]) + 12)
        return int(word)

    def array_info(self, type_id: int) -> tuple[int, int, int]:
        """(element type, index type, number of elements) of the ARRAY *type_id*."""
        elem, index, nelems = struct.unpack_from(self.order + "III", self.data,
                                                 int(self.offsets[type_id]) + 12)
        return int(elem), int(index), int(nelems)

    def kind(self, type_id: int) -> int:
        return int(self._kinds[type_id])

    def name(self, type_id: int) -> str:
        return self.string(int(self._name_offs[type_id]))

    # -- lookups by name -------------------------------------------------------------------

    def ids_named(self, name: str, kinds: Iterable[int]) -> list[int]:
        """Type ids of the given BTF *kinds* called *name*, in id order."""
        if not name:
            return []
        wanted = set(kinds)
        hits = self._matching(self._name_heads, self._name_offs, name)
        return [int(i) for i in hits if int(self._kinds[i]) in wanted]

    def enumerator(self, name: str) -> tuple[int, int] | None:
        """(enum type id, index) of the enumerator *name* (the first enum by id that has
        one), or None."""
        if self._enumerators is None:
            self._enumerators = self._enumerator_table()
        offs, heads, owners, indexes = self._enumerators
        hits = self._matching(heads, offs, name)
        if not len(hits):
            return None
        best = min((int(owners[i]), int(indexes[i])) for i in hits)
        return best

    def _enumerator_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every enumerator of every enum: (name offsets, their heads, enum type ids,
        indexes), read with a few numpy gathers (an item is 8 bytes in an ENUM, 12 in an
        ENUM64, its name offset first)."""
        offs, owners, indexes = [], [], []
        for kind, words_per_item in ((ENUM, 2), (ENUM64, 3)):
            ids = np.flatnonzero(self._kinds == kind)
            vlens = self._vlens[ids].astype(np.int64)
            owner = np.repeat(ids, vlens)
            first = np.cumsum(vlens) - vlens
            index = np.arange(len(owner), dtype=np.int64) - np.repeat(first, vlens)
            at = self._starts[owner] + 3 + words_per_item * index
            offs.append(self._words[at].astype(np.uint32))
            owners.append(owner)
            indexes.append(index)
        all_offs = np.concatenate(offs)
        return all_offs, self._heads(all_offs), np.concatenate(owners), np.concatenate(indexes)

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
