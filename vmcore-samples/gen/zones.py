"""The node and its zones: struct pglist_data, struct zone (spans, managed
pages, watermarks, vm_stat counters), the buddy free lists in
zone->free_area[], and the pageblock migratetype bits of each section."""

from __future__ import annotations

from typing import Any

from . import scenario as S
from .machine import Machine
from .memmap import Sections, nr_pageblock_bits, pfn_to_page
from .migratetype import MIGRATETYPES, mt_value
from .pageflags import zone_names

ZONE_NAME_SYMBOLS = {
    "DMA": "zone_name_dma",
    "DMA32": "zone_name_dma32",
    "NORMAL": "zone_name_normal",
    "MOVABLE": "zone_name_movable",
    "DEVICE": "zone_name_device",
}


def setup_node(m: Machine) -> int:
    """Allocate node 0's struct pglist_data (memblock), hang it on node_data
    and return its address."""
    pgdat = m.direct(m.memblock_alloc(m.t.sizeof("struct pglist_data")))
    m.write_ulong(m.sym("node_data"), pgdat)
    return pgdat


def zone_addr(m: Machine, pgdat: int, zi: int) -> int:
    """Address of pgdat->node_zones[zi]."""
    return pgdat + m.t.offsetof("struct pglist_data", "node_zones") + zi * m.t.sizeof("struct zone")


def link_list(m: Machine, head: int, nodes: list[int]) -> None:
    """Make head and nodes (struct list_head addresses) one circular list."""
    seq = [head] + nodes
    for i, a in enumerate(seq):
        m.write_ulong(a, seq[(i + 1) % len(seq)])
        m.write_ulong(a + 8, seq[i - 1])


def write_zones(
    m: Machine, pgdat: int, secs: Sections, blocks: list[tuple[int, int, str]]
) -> list[dict[str, Any]]:
    """Fill every zone and the node; returns the populated zones' numbers
    (zone, start_pfn, spanned, present, managed, free, free_cma, cma_pages)."""
    t = m.t
    nr_free_pages = m.enum("NR_FREE_PAGES")
    nr_free_cma = m.enum("NR_FREE_CMA_PAGES")
    free_lists: dict[tuple[str, int, str], list[int]] = {}
    for pfn, order, mtname in blocks:
        free_lists.setdefault((S.zone_of(pfn), order, mtname), []).append(pfn)
    lru = t.offsetof("struct page", "lru")
    present_total = 0
    zone_info: list[dict[str, Any]] = []
    nr_zones = 0
    for zi, zname in enumerate(zone_names(m)[: m.enum("__MAX_NR_ZONES")]):
        z = zone_addr(m, pgdat, zi)
        disp = {"NORMAL": "Normal", "MOVABLE": "Movable"}.get(zname, zname)
        s, e = S.ZONES.get(disp, (0, 0))
        present = sum(max(0, min(e, re_) - max(s, rs)) for rs, re_ in S.RAM)
        reserved = sum(1 for p in m.reserved if s <= p < e)
        t.put(z, "struct zone", "name", m.sym(ZONE_NAME_SYMBOLS[zname]))
        t.put(z, "struct zone", "zone_pgdat", pgdat)
        if present:
            nr_zones = zi + 1
            t.put(z, "struct zone", "zone_start_pfn", s)
        t.put(z, "struct zone", "spanned_pages", e - s)
        t.put(z, "struct zone", "present_pages", present)
        if t.has_member("struct zone", "present_early_pages"):
            t.put(z, "struct zone", "present_early_pages", present)
        managed = present - reserved
        t.put(z, "struct zone", "managed_pages", managed)
        # zone->cma_pages; 5.10 has no such counter (the truth says 0, as
        # the kernel would report nothing)
        cma_pages = 0
        if t.has_member("struct zone", "cma_pages"):
            cma_pages = sum(c.count for c in S.CMA_AREAS if s <= c.base_pfn < e)
            t.put(z, "struct zone", "cma_pages", cma_pages)
        if t.has_member("struct zone", "initialized"):
            t.put(z, "struct zone", "initialized", 1 if present else 0)
        if t.has_member("struct zone", "node"):
            t.put(z, "struct zone", "node", 0)
        if present:
            wmin = max(32, managed // 64)
            t.put(z, "struct zone", "_watermark[0]", wmin)
            t.put(z, "struct zone", "_watermark[1]", wmin * 5 // 4)
            t.put(z, "struct zone", "_watermark[2]", wmin * 3 // 2)
        free = 0
        free_cma = 0
        for order in range(m.k.max_order):
            nr_free = 0
            for mtname, _ in MIGRATETYPES:
                mt = mt_value(m, mtname)
                head = z + t.offsetof("struct zone", f"free_area[{order}].free_list[{mt}]")
                on_list = free_lists.get((disp, order, mtname), []) if present else []
                link_list(m, head, [pfn_to_page(m, p) + lru for p in on_list])
                nr_free += len(on_list)
                free += len(on_list) << order
                if mtname == "CMA":
                    free_cma += len(on_list) << order
            t.put(z, "struct zone", f"free_area[{order}].nr_free", nr_free)
        t.put(z, "struct zone", f"vm_stat[{nr_free_pages}]", free)
        t.put(z, "struct zone", f"vm_stat[{nr_free_cma}]", free_cma)
        present_total += present
        if disp in S.ZONES and present:
            zone_info.append(
                {
                    "zone": disp,
                    "start_pfn": s,
                    "spanned": e - s,
                    "present": present,
                    "managed": managed,
                    "free": free,
                    "free_cma": free_cma,
                    "cma_pages": cma_pages,
                }
            )
    node_start = min(s for s, _ in S.RAM)
    node_end = max(e for _, e in S.RAM)
    t.put(pgdat, "struct pglist_data", "nr_zones", nr_zones)
    t.put(pgdat, "struct pglist_data", "node_start_pfn", node_start)
    t.put(pgdat, "struct pglist_data", "node_present_pages", present_total)
    t.put(pgdat, "struct pglist_data", "node_spanned_pages", node_end - node_start)
    t.put(pgdat, "struct pglist_data", "node_id", 0)
    _write_pageblock_bits(m, secs)
    return zone_info


def _write_pageblock_bits(m: Machine, secs: Sections) -> None:
    """mem_section_usage.pageblock_flags: each pageblock's migratetype."""
    pps = secs.pages_per_section
    off = m.t.offsetof("struct mem_section_usage", "pageblock_flags")
    bits = nr_pageblock_bits(m)
    nbytes = ((pps >> S.PAGEBLOCK_ORDER) * bits + 63) // 64 * 8
    for nr, usage in secs.usage_addr.items():
        word = 0
        for i in range(pps >> S.PAGEBLOCK_ORDER):
            pfn = nr * pps + (i << S.PAGEBLOCK_ORDER)
            word |= mt_value(m, S.pageblock_mt(pfn)) << (i * bits)
        m.mem.write(usage + off, word.to_bytes(nbytes, "little"))
