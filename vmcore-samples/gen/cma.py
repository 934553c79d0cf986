"""mm/cma.c: cma_areas[] (struct cma with its kmalloc'd allocation bitmap),
cma_area_count, totalcma_pages and dma_contiguous_default_area."""

from __future__ import annotations

from dataclasses import dataclass

from . import scenario as S
from .machine import Machine


@dataclass(frozen=True)
class CmaBitmap:
    """What the allocation bitmap of one area holds."""

    bits: int  # bitmap length: count >> order_per_bit
    allocated_bits: int


def setup_cma(m: Machine) -> list[CmaBitmap]:
    """Fill one struct cma per scenario area (S.CMA_AREAS order) and return
    their bitmaps."""
    t = m.t
    base = m.sym("cma_areas")
    csize = t.sizeof("struct cma")
    info = []
    for i, c in enumerate(S.CMA_AREAS):
        a = base + i * csize
        nbits = c.count >> c.order_per_bit
        nbytes = (nbits + 63) // 64 * 8
        bm = m.kmalloc(nbytes)
        bits = 0
        for s, e in c.allocated:
            for pfn in range(s, e):
                bits |= 1 << ((pfn - c.base_pfn) >> c.order_per_bit)
        m.mem.write(bm, bits.to_bytes(nbytes, "little"))
        if t.has_member("struct cma", "ranges"):
            # 6.14+: one struct cma_memrange per physical range
            t.put(a, "struct cma", "nranges", 1)
            t.put(a, "struct cma", "ranges[0].base_pfn", c.base_pfn)
            t.put(a, "struct cma", "ranges[0].count", c.count)
            t.put(a, "struct cma", "ranges[0].bitmap", bm)
            t.put(a, "struct cma", "nid", -1)  # NUMA_NO_NODE
        else:
            t.put(a, "struct cma", "base_pfn", c.base_pfn)
            t.put(a, "struct cma", "bitmap", bm)
        t.put(a, "struct cma", "count", c.count)
        t.put(a, "struct cma", "order_per_bit", c.order_per_bit)
        t.put(a, "struct cma", "name", c.name.encode().ljust(64, b"\0"))
        if t.has_member("struct cma", "available_count"):
            alloc = sum(e - s for s, e in c.allocated)
            t.put(a, "struct cma", "available_count", c.count - alloc)
        info.append(CmaBitmap(nbits, bin(bits).count("1")))
    m.write_uint(m.sym("cma_area_count"), len(S.CMA_AREAS))
    m.write_ulong(m.sym("totalcma_pages"), sum(c.count for c in S.CMA_AREAS))
    m.write_ulong(m.sym("dma_contiguous_default_area"), base)
    return info
