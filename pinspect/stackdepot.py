"""The stack depot: where page_owner and page_pinner keep their stack traces.

A ``depot_stack_handle_t`` names a ``struct stack_record`` by pool (slab up to 6.2) and offset.
:func:`depot_layout` reads the handle's bit fields (``union handle_parts``) and the record's
layout from DWARF, and the pools in use from the depot's globals; :class:`StackDepot` decodes
handles, bounds-checked (pool index below the pools in use, the record inside its pool and its
used part, a plausible frame count, the record's own copy of its handle, 6.8+ a non-zero
refcount), and symbolizes them once each: :func:`stack_depot` keeps one per program.

Frames print like the kernel's ``%pS``: ``func+0xoff/0xsize`` with `` [module]`` for module
text. The size is what kallsyms reports, the distance to the next symbol (not the ELF symbol
size). Addresses in a module are named from the module's own symbol table in memory
(``mod->kallsyms``), so modules without debug info are named as the kernel names them; an
address nobody knows stays a bare hex address.

Problems are counted in :attr:`StackDepot.problems` (one per distinct bad handle), never raised.
"""

from __future__ import annotations

import bisect
import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import drgn
import numpy as np
from drgn import FaultError, Object, Program

from pinspect import constants
from pinspect.features import ABSENT, PRESENT, Feature
from pinspect.variables import has_variable, variable


def depot_feature(prog: Program) -> Feature:
    """Which stack depot layout this kernel has: pools (6.3+) or slabs (up to 6.2), and the
    handle's fields from the low bit up (``stack_pools+pool_index_plus_1/offset/extra``)."""
    for name in ("stack_pools", "stack_slabs"):
        if has_variable(prog, name):
            try:
                fields = _handle_fields(prog.type("union handle_parts"))
            except LookupError:
                return Feature("stack depot", PRESENT, name)
            return Feature("stack depot", PRESENT, f"{name}+{'/'.join(fields)}")
    return Feature("stack depot", ABSENT, "kernel built without CONFIG_STACKDEPOT")


def _handle_fields(union: drgn.Type) -> list[str]:
    """The bit fields of ``union handle_parts`` (its anonymous struct), lowest bit first."""
    for member in union.members or ():
        inner = member.type.unaliased()
        if member.name is None and inner.kind == drgn.TypeKind.STRUCT:
            named = [(m.bit_offset, m.name) for m in inner.members or () if m.name]
            return [n for _, n in sorted(named)]
    return []


@dataclass(frozen=True)
class Frame:
    """One return address of a stack, symbolized."""

    address: int
    symbol: str | None  # None: no symbol covers the address
    offset: int
    size: int
    module: str | None  # the module's name for module text; None for the kernel image

    def __str__(self) -> str:
        """The kernel's ``%pS``: ``func+0xoff/0xsize [module]``, or the bare address."""
        if self.symbol is None:
            return f"{self.address:#x}"
        text = f"{self.symbol}+{self.offset:#x}/{self.size:#x}"
        return f"{text} [{self.module}]" if self.module else text


@dataclass(frozen=True)
class Stack:
    """A decoded stack depot record: its handle and frames, innermost first."""

    handle: int
    frames: tuple[Frame, ...]

    def lines(self) -> list[str]:
        """The frames as ``%pS`` strings."""
        return [str(f) for f in self.frames]


@dataclass(frozen=True)
class BitField:
    """A bit field of ``union handle_parts``."""

    bit: int
    width: int

    def get(self, value: int) -> int:
        return (value >> self.bit) & ((1 << self.width) - 1)

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.bit


@dataclass(frozen=True)
class DepotLayout:
    """How this kernel's handles and records are laid out, and how many pools are in use."""

    pools_name: str  # "stack_pools" (6.3+) or "stack_slabs"
    pools_address: int  # address of the pool pointer array
    pools_capacity: int | None  # entries of the array (None: allocated at boot, 7.x)
    index: BitField
    index_name: str  # slabindex, pool_index or pool_index_plus_1
    index_bias: int  # 1 for pool_index_plus_1
    # 6.8.0-6.8.4 and 6.9-rc1/rc2 store index + 1 in a field still named pool_index; a record's
    # own handle tells them apart (see StackDepot._locate).
    index_bias_unknown: bool
    offset: BitField
    valid: BitField | None  # up to 6.7: always 1 in a real handle
    extra: BitField | None  # bits the depot's users keep for themselves (6.1+)
    pool_size: int
    entries_offset: int  # offsetof(struct stack_record, entries)
    size_offset: int
    handle_offset: int
    count_offset: int | None  # 6.8+ refcount_t count
    max_frames: int
    pools_in_use: int
    last_pool_used: int | None  # bytes used in the newest pool (depot_offset / pool_offset)


def _field(union: drgn.Type, name: str) -> BitField | None:
    try:
        member = union.member(name)
    except LookupError:
        return None
    width = member.bit_field_size or (member.type.size or 4) * 8
    return BitField(member.bit_offset, width)


def _int(prog: Program, name: str) -> int | None:
    obj = variable(prog, name)
    if obj is None:
        return None
    try:
        return int(obj.value_())
    except FaultError:
        return None


def depot_layout(prog: Program) -> DepotLayout | None:
    """The stack depot of *prog*, or None if the kernel has none or it cannot be interpreted."""
    pools_name = next((n for n in ("stack_pools", "stack_slabs") if has_variable(prog, n)), None)
    if pools_name is None:
        return None
    pools = variable(prog, pools_name)
    assert pools is not None
    try:
        union = prog.type("union handle_parts")
        record = prog.type("struct stack_record")
    except LookupError:
        return None
    index_name = next((n for n in ("pool_index_plus_1", "pool_index", "slabindex")
                       if _field(union, n) is not None), None)
    offset = _field(union, "offset")
    if index_name is None or offset is None:
        return None
    index = _field(union, index_name)
    assert index is not None
    valid = _field(union, "valid")
    try:
        if pools.type_.kind == drgn.TypeKind.POINTER:  # 7.x: allocated for stack_max_pools
            address, capacity = int(pools.value_()), _int(prog, "stack_max_pools")
        else:
            address, capacity = int(pools.address_ or 0), pools.type_.length
    except FaultError:
        return None
    if capacity is None:  # an array whose length the type source does not know (BTF)
        capacity = (constants.DEPOT_POOLS_CAP if pools_name == "stack_pools"  # up to 6.2:
                    else min(1 << index.width, constants.DEPOT_POOLS_CAP))  # ..._MAX_SLABS
    # Pools in use: pools_num (6.4+), else the index of the current pool (pool_index in 6.3,
    # depot_index before) + 1.
    in_use = _int(prog, "pools_num")
    if in_use is None:
        current = _int(prog, "depot_index" if pools_name == "stack_slabs" else "pool_index")
        in_use = None if current is None else current + 1
    if in_use is None:
        return None
    used = _int(prog, "pool_offset" if pools_name == "stack_pools" else "depot_offset")
    try:
        entries = record.member("entries")
        entries_offset = entries.offset
        length = entries.type.length
        size_offset = record.member("size").offset
        handle_offset = record.member("handle").offset
    except LookupError:
        return None
    try:
        count_offset: int | None = record.member("count").offset
    except LookupError:
        count_offset = None
    return DepotLayout(
        pools_name=pools_name,
        pools_address=address,
        pools_capacity=capacity,
        index=index,
        index_name=index_name,
        index_bias=1 if index_name == "pool_index_plus_1" else 0,
        index_bias_unknown=index_name == "pool_index" and valid is None,
        offset=offset,
        valid=valid,
        extra=_field(union, "extra"),
        pool_size=1 << (offset.width + constants.DEPOT_STACK_ALIGN),
        entries_offset=entries_offset,
        size_offset=size_offset,
        handle_offset=handle_offset,
        count_offset=count_offset,
        # 6.8+ sizes entries[] (CONFIG_STACKDEPOT_MAX_FRAMES); before it is a flexible array,
        # entries[1] up to 5.11 ("Replace one-element array with flexible-array member").
        max_frames=length if length and length > 1 else constants.STACKDEPOT_MAX_FRAMES,
        pools_in_use=in_use,
        last_pool_used=used,
    )


@dataclass(frozen=True)
class _ModuleText:
    name: str
    start: int
    end: int
    kallsyms: int  # struct mod_kallsyms * (0: none)


# Symbol kinds the kernel's kallsyms leaves out (scripts/kallsyms.c keeps text and data).
_NOT_IN_KALLSYMS = (drgn.SymbolKind.SECTION, drgn.SymbolKind.FILE)


class Symbolizer:
    """Turns return addresses into :class:`Frame` s, each address once."""

    def __init__(self, prog: Program) -> None:
        self.prog = prog
        self._frames: dict[int, Frame] = {}
        self._starts: np.ndarray | None = None
        self._base = 1 << 63
        self._modules: list[_ModuleText] | None = None
        self._module_symbols: dict[int, tuple[list[int], list[str]]] = {}
        self._table: tuple[np.ndarray, list[tuple[int, int, str]]] | None = None

    def frame(self, address: int) -> Frame:
        found = self._frames.get(address)
        if found is None:
            found = self._frames[address] = self._symbolize(address)
        return found

    def _symbolize(self, address: int) -> Frame:
        module = self._module_of(address)
        if module is not None:
            named = self._module_symbol(module, address)
            if named is not None:
                return named
        found = self._table_symbol(address)
        if found is None:
            try:
                symbol = self.prog.symbol(address)
            except LookupError:
                return Frame(address, None, 0, 0, module.name if module else None)
            found = (symbol.name, int(symbol.address), int(symbol.size))
        name, start, elf_size = found
        size = self._kallsyms_size(start, elf_size)
        return Frame(address, name, address - start, size, module.name if module else None)

    def _table_symbol(self, address: int) -> tuple[str, int, int] | None:
        """(name, start, ELF size) of the symbol %pS names for *address*: as kallsyms does, the
        closest symbol starting at or below it, of several at one address the first in
        kallsyms' order (not weak, then fewest leading underscores); from a table of every
        symbol made once (``prog.symbol()`` costs about a millisecond a call on a full vmlinux
        and goes by ELF sizes, which asm labels lack)."""
        if self._table is None:
            symbols = sorted(
                (s.address, s.binding == drgn.SymbolBinding.WEAK,
                 len(s.name) - len(s.name.lstrip("_")), s.name, s.size)
                for s in self.prog.symbols()
                if s.address >= self._base and s.kind not in _NOT_IN_KALLSYMS)
            offsets = np.array([entry[0] - self._base for entry in symbols], dtype=np.int64)
            self._table = (offsets, [(a, size, name) for a, _, _, name, size in symbols])
            if self._starts is None:  # the same symbols give kallsyms' sizes
                self._starts = np.unique(offsets)
        offsets, table = self._table
        if address < self._base:
            return None
        i = int(np.searchsorted(offsets, address - self._base, side="right")) - 1
        if i < 0:
            return None
        # the first of the symbols that start where the closest one does
        i = int(np.searchsorted(offsets, offsets[i], side="left"))
        start, size, name = table[i]
        return name, start, size

    def _kallsyms_size(self, start: int, elf_size: int) -> int:
        """kallsyms' size of the symbol at *start*: the distance to the next symbol."""
        if self._starts is None:
            # Kernel symbols sit in the upper half; absolute ones (small values) are not in
            # kallsyms. Offsets from 2**63 fit an int64 and sort fast.
            self._base = 1 << 63
            self._starts = np.unique(np.array(
                [a - self._base for s in self.prog.symbols() if (a := s.address) >= self._base],
                dtype=np.int64))
        offset = start - self._base
        i = int(np.searchsorted(self._starts, offset, side="right"))
        if i < len(self._starts):
            return int(self._starts[i]) - offset
        return elf_size

    # -- modules ------------------------------------------------------------------------------

    def _module_of(self, address: int) -> _ModuleText | None:
        if self._modules is None:
            self._modules = _module_texts(self.prog)
        for module in self._modules:
            if module.start <= address < module.end:
                return module
        return None

    def _module_symbol(self, module: _ModuleText, address: int) -> Frame | None:
        """The kernel's find_kallsyms_symbol(): the closest preceding named symbol of the
        module; its size runs to the next symbol or the end of the text region."""
        if module.kallsyms not in self._module_symbols:
            self._module_symbols[module.kallsyms] = _read_module_kallsyms(self.prog, module)
        values, names = self._module_symbols[module.kallsyms]
        i = bisect.bisect_right(values, address) - 1
        if i < 0 or values[i] < module.start:
            return None
        j = bisect.bisect_right(values, address)
        end = min(values[j] if j < len(values) else module.end, module.end)
        return Frame(address, names[i], address - values[i], end - values[i], module.name)


def _module_texts(prog: Program) -> list[_ModuleText]:
    """The text regions of the loaded modules: ``mod->mem[MOD_*TEXT]`` (6.4+) or
    ``mod->core_layout``/``init_layout`` (base, text_size)."""
    head = variable(prog, "modules")
    try:
        module_type = prog.type("struct module")
    except LookupError:
        return []
    if head is None:
        return []
    from drgn.helpers.linux.list import list_for_each_entry

    texts: list[_ModuleText] = []
    text_kinds: list[int] = []
    if module_type.has_member("mem"):
        kinds = {e.name: e.value for e in prog.type("enum mod_mem_type").enumerators or ()}
        text_kinds = [v for k, v in kinds.items() if k.endswith("_TEXT")]
    try:
        for mod in list_for_each_entry("struct module", head.address_of_(), "list"):
            name = mod.name.string_().decode(errors="replace")
            kallsyms = int(mod.kallsyms.value_()) if module_type.has_member("kallsyms") else 0
            regions: list[tuple[int, int]] = []
            if text_kinds:
                for kind in text_kinds:
                    mem = mod.mem[kind]
                    regions.append((int(mem.base.value_()), int(mem.size.value_())))
            else:
                for layout in ("core_layout", "init_layout"):
                    lay = getattr(mod, layout)
                    regions.append((int(lay.base.value_()), int(lay.text_size.value_())))
            for base, size in regions:
                if base and size:
                    texts.append(_ModuleText(name, base, base + size, kallsyms))
            if len(texts) > 100_000:  # a corrupted list that loops
                break
    except (FaultError, LookupError, AttributeError):
        pass
    return texts


def _read_module_kallsyms(prog: Program, module: _ModuleText) -> tuple[list[int], list[str]]:
    """A module's named, defined symbols sorted by value, read in bulk from memory."""
    if not module.kallsyms:
        return [], []
    try:
        ks = Object(prog, "struct mod_kallsyms *", module.kallsyms)
        symtab = int(ks.symtab.value_())
        count = int(ks.num_symtab.value_())
        strtab = int(ks.strtab.value_())
        try:
            sym_type = prog.type("Elf64_Sym").unaliased()
            layout = {name: sym_type.member(name).offset
                      for name in ("st_name", "st_shndx", "st_value")}
            entry = sym_type.size or constants.ELF64_SYM["size"]
        except LookupError:
            layout = constants.ELF64_SYM
            entry = constants.ELF64_SYM["size"]
        if not 0 < count <= 1_000_000:
            return [], []
        table = prog.read(symtab, count * entry)
        symbols: list[tuple[int, int]] = []
        for i in range(1, count):
            base = i * entry
            shndx = struct.unpack_from("<H", table, base + layout["st_shndx"])[0]
            if shndx == constants.SHN_UNDEF:
                continue
            name_off = struct.unpack_from("<I", table, base + layout["st_name"])[0]
            value = struct.unpack_from("<Q", table, base + layout["st_value"])[0]
            symbols.append((value, name_off))
        if not symbols:
            return [], []
        # The string table follows the names; read as far as the largest name needs.
        span = max(off for _, off in symbols) + 512
        strings = _read_prefix(prog, strtab, span)
    except (FaultError, LookupError, AttributeError, struct.error):
        return [], []
    # Of symbols at the same address the kernel names the first in the table.
    first: dict[int, str] = {}
    for value, name_off in symbols:
        if value in first or name_off >= len(strings):
            continue
        end = strings.find(b"\0", name_off)
        name = strings[name_off:end if end >= 0 else len(strings)]
        if name:  # unnamed symbols are skipped, as the kernel does
            first[value] = name.decode(errors="replace")
    values = sorted(first)
    return values, [first[v] for v in values]


def _read_prefix(prog: Program, address: int, size: int) -> bytes:
    """Up to *size* bytes at *address*: as many whole pages as are readable."""
    try:
        return prog.read(address, size)
    except FaultError:
        pass
    out = bytearray()
    page = 4096
    pos = address
    while pos < address + size:
        chunk = min(page - pos % page, address + size - pos)
        try:
            out += prog.read(pos, chunk)
        except FaultError:
            break
        pos += chunk
    return bytes(out)


# Reasons a handle fails that a live depot's growth since its counters were read can explain.
_GROWTH = ("handle's pool index out of range", "handle's offset past the pool's used part",
           "stack record with an impossible frame count", "stack record does not carry its handle")


class StackDepot:
    """Decodes handles of one program, each once; see the module docstring."""

    def __init__(self, prog: Program, layout: DepotLayout | None) -> None:
        self.prog = prog
        self.layout = layout
        self.symbolizer = Symbolizer(prog)
        self.problems: Counter[str] = Counter()
        self._failures: dict[int, str] = {}
        self._stacks: dict[int, Stack | None] = {}
        self._pools: dict[int, bytes | None] = {}
        self._pool_addresses: dict[int, int] = {}

    def stack(self, handle: int) -> Stack | None:
        """The stack of *handle*; None for handle 0 or a handle that does not decode (counted
        in :attr:`problems`)."""
        if handle == 0:
            return None
        if handle in self._stacks:
            return self._stacks[handle]
        stack = self._decode(handle)
        self._stacks[handle] = stack
        return stack

    def stacks(self, handles: Iterable[int]) -> dict[int, Stack | None]:
        """The stack of each distinct handle."""
        return {h: self.stack(h) for h in set(handles)}

    def _decode(self, handle: int) -> Stack | None:
        layout = self.layout
        if layout is None:
            self._fail(handle, "no stack depot to decode handles with")
            return None
        if layout.valid is not None and not layout.valid.get(handle):
            self._fail(handle, "handle without its valid bit")
            return None
        index = layout.index.get(handle) - layout.index_bias
        offset = layout.offset.get(handle) << constants.DEPOT_STACK_ALIGN
        candidates = [index, index - 1] if layout.index_bias_unknown else [index]
        reason = ""
        for candidate in candidates:
            found = self._locate(handle, candidate, offset)
            if isinstance(found, Stack):
                return found
            reason = reason or found
        if reason in _GROWTH and self.prog.flags & drgn.ProgramFlags.IS_LIVE:
            # A live depot grows while we read: look at its counters (and newest pool) again.
            self.layout = depot_layout(self.prog) or layout
            self._pools.pop(self.layout.pools_in_use - 1, None)
            self._pools.pop(layout.pools_in_use - 1, None)
            found = self._locate(handle, index, offset)
            if isinstance(found, Stack):
                return found
            reason = found
        self._fail(handle, reason)
        return None

    def _fail(self, handle: int, reason: str) -> None:
        self._failures[handle] = reason
        self.problems[reason] += 1

    def problem(self, handle: int) -> str | None:
        """Why *handle* did not decode (after :meth:`stack`), or None."""
        return self._failures.get(handle)

    def _pool(self, index: int) -> bytes | None:
        """The bytes of pool *index* (read whole, once), or None if unreadable/missing."""
        if index in self._pools:
            return self._pools[index]
        layout = self.layout
        assert layout is not None
        data: bytes | None = None
        try:
            pointer = struct.unpack("<Q", self.prog.read(layout.pools_address + 8 * index, 8))[0]
            if pointer:
                self._pool_addresses[index] = pointer
                data = self.prog.read(pointer, layout.pool_size)
        except FaultError:
            data = None
        self._pools[index] = data
        return data

    def _locate(self, handle: int, index: int, offset: int) -> Stack | str:
        """The record of *handle* in pool *index* at *offset*, or why it is not there."""
        layout = self.layout
        assert layout is not None
        if not 0 <= index < layout.pools_in_use or (
                layout.pools_capacity is not None and index >= layout.pools_capacity):
            return "handle's pool index out of range"
        if offset + layout.entries_offset > layout.pool_size:
            return "handle's offset outside its pool"
        if (index == layout.pools_in_use - 1 and layout.last_pool_used is not None
                and offset >= layout.last_pool_used):
            return "handle's offset past the pool's used part"
        pool = self._pool(index)
        if pool is None:
            return "stack depot pool missing or unreadable"
        size = struct.unpack_from("<I", pool, offset + layout.size_offset)[0]
        end = offset + layout.entries_offset + 8 * size
        if size == 0 or size > layout.max_frames or end > layout.pool_size:
            return "stack record with an impossible frame count"
        own = struct.unpack_from("<I", pool, offset + layout.handle_offset)[0]
        extra = layout.extra.mask if layout.extra is not None else 0
        if own & ~extra != handle & ~extra:
            return "stack record does not carry its handle"
        if layout.count_offset is not None and not struct.unpack_from(
                "<I", pool, offset + layout.count_offset)[0]:
            return "stack record freed (refcount 0)"
        addresses = struct.unpack_from(f"<{size}Q", pool, offset + layout.entries_offset)
        frames = tuple(self.symbolizer.frame(a) for a in addresses)
        return Stack(handle, frames)


def stack_depot(prog: Program) -> StackDepot:
    """The program's :class:`StackDepot` (one per program, so each handle is decoded once)."""
    try:
        return prog.cache["pinspect_stackdepot"]  # type: ignore[no-any-return]
    except KeyError:
        pass
    depot = StackDepot(prog, depot_layout(prog))
    prog.cache["pinspect_stackdepot"] = depot
    return depot
