"""lib/stackdepot.c: struct stack_record in order-2 pools, handles in the
layout of the kernel version (union handle_parts: 5.10 and 6.1
slabindex/offset/valid, 6.8+ pool_index_plus_1/offset, bit positions read
from DWARF), and the depot's globals."""

from __future__ import annotations

import bisect
import zlib

from drgn import TypeKind

from .machine import Machine
from .pages import add_folio
from .scenario import Folio
from .stacks import STACKS, frame_offset

POOL_PFNS = (0x1300, 0x1304)  # two order-2 kernel allocations
POOL_ORDER = 2
REFCOUNT_SATURATED = 0xC0000000  # INT_MIN / 2 as stored in refcount_t
# 7.2: stack_max_pools = MIN((1 << DEPOT_POOL_INDEX_BITS) - 1, 8192), and
# stack_pools is kvcalloc'd (64 KiB: an order-4 page allocation) at init
DEPOT_MAX_POOLS = 8192
POOLS_ARRAY_PFN = 0x1310
HANDLE = "union handle_parts"


class StackDepot:
    """The depot's pools and every stack saved in them."""

    def __init__(self, m: Machine) -> None:
        self.m = m
        self._starts: list[int] | None = None  # kernel symbol addresses, sorted
        for pfn in POOL_PFNS:
            add_folio(
                m,
                Folio(
                    pfn,
                    "kernel",
                    order=POOL_ORDER,
                    compound=False,
                    alloc="depot",
                    note="stack depot pool",
                ),
            )
        self.pools = [m.direct(p) for p in POOL_PFNS]
        self.pool_idx = 0
        self.pool_off = 0
        self.handles: dict[tuple[int, ...], int] = {}
        self.frames: dict[int, list[str]] = {}  # handle -> symbolized frames
        self.keys: dict[str, int] = {}  # stack key (stacks.STACKS) -> handle
        self.records: dict[int, int] = {}  # handle -> struct stack_record
        self.pools_array = 0
        if self._pools_behind_pointer():
            order = (8 * DEPOT_MAX_POOLS // m.ps - 1).bit_length()
            add_folio(
                m,
                Folio(
                    POOLS_ARRAY_PFN,
                    "kernel",
                    order=order,
                    compound=False,
                    alloc="depot",
                    note="stack depot stack_pools array",
                ),
            )
            self.pools_array = m.direct(POOLS_ARRAY_PFN)
        for key in ("dummy", "failure", "early"):
            self.save(key)

    def save(self, key: str) -> int:
        """stack_depot_save() of a synthetic stack; returns its handle."""
        if key in self.keys:
            return self.keys[key]
        pcs = []
        frames = []
        for depth, n in enumerate(STACKS[key]):
            sym = self.m.syms[n]
            off = frame_offset(n, sym.size, depth)
            pcs.append(sym.value + off)
            frames.append(f"{n}+{off:#x}/{self._kallsyms_size(sym.value, sym.size):#x}")
        h = self._store(tuple(pcs))
        self.keys[key] = h
        self.frames[h] = frames
        return h

    def _kallsyms_size(self, value: int, elf_size: int) -> int:
        """The size %pS prints: kallsyms knows no sizes, only the distance to the next kernel
        symbol (the ELF size only for the last one)."""
        if self._starts is None:
            self._starts = sorted({s.value for s in self.m.syms.values() if s.value >= 1 << 63})
        i = bisect.bisect_right(self._starts, value)
        return self._starts[i] - value if i < len(self._starts) else elf_size

    def _pools_behind_pointer(self) -> bool:
        if "stack_pools" not in self.m.syms:
            return False
        return bool(self.m.t.prog["stack_pools"].type_.kind == TypeKind.POINTER)

    def _handle(self, pool_idx: int, off_units: int) -> int:
        """A depot_stack_handle_t from the bit fields of union handle_parts."""
        t = self.m.t

        def bit(name: str) -> int:
            return t.field(HANDLE, name)[0]

        if t.has_member(HANDLE, "pool_index_plus_1"):
            h = (pool_idx + 1) << bit("pool_index_plus_1")
        else:
            h = pool_idx << bit("slabindex")
        h |= off_units << bit("offset")
        if t.has_member(HANDLE, "valid"):
            h |= 1 << bit("valid")
        return h

    def _store(self, pcs: tuple[int, ...]) -> int:
        if pcs in self.handles:
            return self.handles[pcs]
        m = self.m
        t = m.t
        hdr = t.offsetof("struct stack_record", "entries")
        # records saved without STACK_DEPOT_FLAG_GET (page_owner, page_pinner)
        # take only the entries they use, also on 6.8+
        size = (hdr + 8 * len(pcs) + 15) // 16 * 16
        if self.pool_off + size > m.ps << POOL_ORDER:
            self.pool_idx += 1
            self.pool_off = 0
        rec = self.pools[self.pool_idx] + self.pool_off
        handle = self._handle(self.pool_idx, self.pool_off >> 4)
        self.pool_off += size
        t.put(rec, "struct stack_record", "hash", zlib.crc32(repr(pcs).encode()))
        t.put(rec, "struct stack_record", "size", len(pcs))
        t.put(rec, "struct stack_record", "handle.handle", handle)
        if t.has_member("struct stack_record", "count"):
            # 6.8+: records saved without STACK_DEPOT_FLAG_GET start saturated
            t.put(rec, "struct stack_record", "count", REFCOUNT_SATURATED)
        for i, pc in enumerate(pcs):
            m.write_ulong(rec + hdr + 8 * i, pc)
        self.handles[pcs] = handle
        self.records[handle] = rec
        return handle

    def set_count(self, handle: int, count: int) -> None:
        """6.8+ stack_record.count (refcount_t) of a saved stack."""
        self.m.t.put(self.records[handle], "struct stack_record", "count", count)

    def write_globals(self) -> None:
        """The pools and the current pool index and offset (5.10, 6.1:
        stack_slabs, depot_index, next_slab_inited, depot_offset; 6.8+:
        stack_pools, pools_num, pool_offset; in 7.2 stack_pools points to
        an array of stack_max_pools)."""
        m = self.m
        used = self.pool_idx + 1
        if m.k.stackdepot.startswith("slabs-"):
            for i, pool in enumerate(self.pools):
                m.write_ulong(m.sym("stack_slabs") + 8 * i, pool)
            m.write_uint(m.sym("depot_index"), self.pool_idx)
            m.write_uint(m.sym("next_slab_inited"), 1 if len(self.pools) > used else 0)
            m.write_ulong(m.sym("depot_offset"), self.pool_off)
        else:
            pools = m.sym("stack_pools")
            if self.pools_array:
                m.write_ulong(pools, self.pools_array)
                m.write_uint(m.sym("stack_max_pools"), DEPOT_MAX_POOLS)
                pools = self.pools_array
            for i, pool in enumerate(self.pools[:used]):
                m.write_ulong(pools + 8 * i, pool)
            m.write_uint(m.sym("pools_num"), used)
            m.write_ulong(m.sym("pool_offset"), self.pool_off)
