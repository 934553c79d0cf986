"""mm/cma.c: cma_areas[] (struct cma with its kmalloc'd allocation bitmaps, one per range on
6.14+), cma_area_count, totalcma_pages and dma_contiguous_default_area."""

from __future__ import annotations

from dataclasses import dataclass

from . import scenario as S
from .machine import Machine


@dataclass(frozen=True)
class CmaRangeBits:
    """What the allocation bitmap of one range holds."""

    base_pfn: int
    count: int
    bits: int  # bitmap length: count >> order_per_bit
    allocated_bits: int
    bitmap: int  # address


@dataclass(frozen=True)
class CmaBitmap:
    """One area as written: its ranges' bitmaps and the counters its struct cma has
    (None where the layout lacks the member)."""

    ranges: tuple[CmaRangeBits, ...]
    counters: dict[str, int | None]
    flags: int | None  # struct cma.flags (6.14+), CMA_ACTIVATED among them

    @property
    def bits(self) -> int:
        return sum(r.bits for r in self.ranges)

    @property
    def allocated_bits(self) -> int:
        return sum(r.allocated_bits for r in self.ranges)


def _bitmap(m: Machine, c: S.CmaArea, base: int, count: int) -> CmaRangeBits:
    """kmalloc and fill the bitmap of pfns [base, base + count) of area c."""
    nbits = count >> c.order_per_bit
    nbytes = (nbits + 63) // 64 * 8
    bm = m.kmalloc(nbytes)
    bits = 0
    for s, e in c.allocated:
        for pfn in range(max(s, base), min(e, base + count)):
            bits |= 1 << ((pfn - base) >> c.order_per_bit)
    m.mem.write(bm, bits.to_bytes(nbytes, "little"))
    return CmaRangeBits(base, count, nbits, bin(bits).count("1"), bm)


def setup_cma(m: Machine) -> list[CmaBitmap]:
    """Fill one struct cma per scenario area (S.CMA_AREAS order) and return
    their bitmaps."""
    t = m.t
    base = m.sym("cma_areas")
    csize = t.sizeof("struct cma")
    multi = t.has_member("struct cma", "ranges")
    info = []
    for i, c in enumerate(S.CMA_AREAS):
        a = base + i * csize
        ranges = tuple(_bitmap(m, c, lo, n) for lo, n in c.ranges(multi))
        flags = None
        if multi:
            # 6.14+: one struct cma_memrange per physical range; the bitmap shares a union
            # with early_pfn until cma_activate_area() sets CMA_ACTIVATED
            t.put(a, "struct cma", "nranges", len(ranges))
            for j, r in enumerate(ranges):
                t.put(a, "struct cma", f"ranges[{j}].base_pfn", r.base_pfn)
                t.put(a, "struct cma", f"ranges[{j}].count", r.count)
                t.put(a, "struct cma", f"ranges[{j}].bitmap", r.bitmap)
            t.put(a, "struct cma", "nid", -1)  # NUMA_NO_NODE
            flags = (1 << m.enum("CMA_ZONES_VALID")) | (1 << m.enum("CMA_ACTIVATED"))
            t.put(a, "struct cma", "flags", flags)
        else:
            (r,) = ranges
            t.put(a, "struct cma", "base_pfn", r.base_pfn)
            t.put(a, "struct cma", "bitmap", r.bitmap)
        t.put(a, "struct cma", "count", c.count)
        t.put(a, "struct cma", "order_per_bit", c.order_per_bit)
        t.put(a, "struct cma", "name", c.name.encode().ljust(64, b"\0"))
        allocated = sum(r.allocated_bits for r in ranges) << c.order_per_bit
        values = {
            "nr_pages_succeeded": allocated + c.released,
            "nr_pages_failed": c.failed,
            "nr_pages_released": c.released,
            "available_count": c.count - allocated,
        }
        counters: dict[str, int | None] = {}
        for member, value in values.items():
            if not t.has_member("struct cma", member):
                counters[member] = None
                continue
            counters[member] = value
            # atomic64_t (CONFIG_CMA_SYSFS) or unsigned long (available_count)
            t.put(a, "struct cma", member, value)
        info.append(CmaBitmap(ranges, counters, flags))
    m.write_uint(m.sym("cma_area_count"), len(S.CMA_AREAS))
    m.write_ulong(m.sym("totalcma_pages"), sum(c.count for c in S.CMA_AREAS))
    m.write_ulong(m.sym("dma_contiguous_default_area"), base)
    return info
