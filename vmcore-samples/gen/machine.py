"""The build context every part of the generator writes through, as drgn's
helpers take a Program: the variant, the machine's memory, the DWARF and ELF
symbols of the debug file, the boot allocators (memblock and a kmalloc
stand-in), and what was written into each struct page."""

from __future__ import annotations

from dataclasses import dataclass

from . import scenario as S
from .elfread import read_elf
from .memory import X86_64, Memory
from .scenario import Folio, Scenario
from .types import Types, load_debug
from .variants import Variant


@dataclass
class PageState:
    """What the builder wrote into one struct page (head pages carry the folio)."""

    pfn: int
    kind: str  # Folio kinds, cma_allocated, reserved, free, tail, buddy_tail
    flags: int = 0
    refcount: int = 0
    mapcount_raw: int = -1  # _mapcount / page_type word as signed int
    mapping: int = 0
    index: int = 0
    private: int = 0
    folio: Folio | None = None
    head: int | None = None  # for tails


class Machine:
    """One synthetic kernel being built: its memory, types and page states."""

    def __init__(self, variant: Variant, debug_path: str, sc: Scenario) -> None:
        self.v = variant
        self.k = variant.kernel
        self.sc = sc
        self.arch = X86_64
        self.ps = self.arch.page_size
        self.mem = Memory(self.arch, list(S.RAM))
        self.t = Types(load_debug(debug_path, self.arch.drgn_arch), self.mem)
        self.sections, self.syms, self.build_id, self.statics = read_elf(debug_path)
        self.pages: dict[int, PageState] = {}
        # every allocation that has struct pages: the scenario's folios in pfn
        # order, then the kernel's own (stack depot pools, vmalloc'd buffers)
        self.folios: list[Folio] = []
        self.reserved: set[int] = set()
        self.memblock_next = S.MEMBLOCK[0]
        # (the slab pages placed in CMA areas as blockers hold no objects)
        self.kmalloc_pages = sorted(
            f.pfn for f in sc.folios if f.kind == "slab" and S.cma_area_of(f.pfn) is None
        )
        self.kmalloc_cur = 0
        self.kmalloc_off = 0
        self.percpu_offsets: list[int] = []  # __per_cpu_offset[cpu] (gen/percpu.py)

    def sym(self, name: str) -> int:
        """Address of a global symbol of the debug file."""
        return self.syms[name].value

    def static(self, cu: str, name: str) -> int:
        """Address of a static variable that several compilation units define."""
        return self.statics[(cu, name)]

    def enum(self, name: str) -> int:
        return self.t.enum(name)

    def direct(self, pfn: int) -> int:
        """Direct-map address of a pfn (__va(PFN_PHYS(pfn)))."""
        return self.arch.page_offset_base + pfn * self.ps

    def reserve(self, pfn: int) -> None:
        """Mark a page PG_reserved and materialise it (zeroed)."""
        self.reserved.add(pfn)
        self.mem.page(pfn)

    def memblock_alloc(self, size: int) -> int:
        """Page-aligned reserved allocation; returns the pfn."""
        n = (size + self.ps - 1) // self.ps
        pfn = self.memblock_next
        self.memblock_next += n
        assert self.memblock_next <= S.MEMBLOCK[1], "memblock region exhausted"
        for p in range(pfn, pfn + n):
            self.reserve(p)
        return pfn

    def kmalloc(self, size: int, align: int = 8) -> int:
        """Bump allocator over the scenario's slab pages (direct-map addresses); an object
        larger than a page (task_struct) takes consecutive fresh pages."""
        if size > self.ps:
            return self._kmalloc_pages((size + self.ps - 1) // self.ps)
        self.kmalloc_off = (self.kmalloc_off + align - 1) // align * align
        if self.kmalloc_off + size > self.ps:
            self.kmalloc_cur += 1
            self.kmalloc_off = 0
        assert size <= self.ps and self.kmalloc_cur < len(self.kmalloc_pages)
        addr = self.direct(self.kmalloc_pages[self.kmalloc_cur]) + self.kmalloc_off
        self.kmalloc_off += size
        return addr

    def _kmalloc_pages(self, n: int) -> int:
        first = self.kmalloc_cur + (1 if self.kmalloc_off else 0)
        pages = self.kmalloc_pages
        while pages[first + n - 1] - pages[first] != n - 1:
            first += 1
        self.kmalloc_cur = first + n
        self.kmalloc_off = 0
        assert self.kmalloc_cur < len(pages)
        return self.direct(pages[first])

    def write_ulong(self, addr: int, value: int) -> None:
        self.mem.write(addr, value.to_bytes(8, "little"))

    def write_uint(self, addr: int, value: int) -> None:
        self.mem.write(addr, value.to_bytes(4, "little"))
