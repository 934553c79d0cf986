"""Free blocks of the buddy allocator (``zone->free_area[order].free_list[type]``).

A free block holds no reference to any of its pages, so the scanner need not read their
``struct page``\\ s at all. Only used on dumps (a live kernel changes its lists while we walk
them), only for large blocks, and only for blocks whose head page confirms it: buddy page
type, ``private`` equal to the order, refcount 0.
"""

from __future__ import annotations

import numpy as np
from drgn import FaultError, Object, ProgramFlags

from pinspect.kernel import Kernel, page_type_name
from pinspect.zones import zones

# Blocks of at least this order (64 pages, 4 KiB of struct pages) are worth skipping.
MIN_SKIP_ORDER = 6


def free_blocks(kernel: Kernel, min_order: int = MIN_SKIP_ORDER) -> list[tuple[int, int]]:
    """Free buddy blocks of order >= *min_order* as sorted ``(start_pfn, end_pfn)``.

    Empty for live targets and for kernels whose struct page has no list member we know.
    A list that runs longer than its zone's ``nr_free`` (corrupted) is not trusted.
    """
    prog = kernel.prog
    if prog.flags & ProgramFlags.IS_LIVE or kernel.vmemmap is None:
        return []
    page_type = prog.type("struct page")
    try:
        # 6.1+ names the list member buddy_list; it aliases lru.
        link = page_type.member("buddy_list").offset
    except LookupError:
        link = page_type.member("lru").offset
    size = kernel.layout.size
    heads: list[tuple[int, int]] = []
    for zone in zones(kernel):
        zobj = Object(prog, "struct zone *", zone.address)
        for order in range(min_order, kernel.max_order):
            try:
                heads.extend((pfn, order) for pfn in
                             _walk(zobj.free_area[order], link, size, kernel.vmemmap))
            except FaultError:
                continue
    return _confirmed(kernel, kernel.vmemmap, heads)


def _walk(area: Object, link: int, size: int, vmemmap: int) -> list[int]:
    """Head pfns on every free list of one ``struct free_area``, bounded by ``nr_free``."""
    prog = area.prog_
    budget = area.nr_free.value_()
    pfns = []
    for free_list in area.free_list:
        head = free_list.address_of_().value_()
        node = prog.read_u64(head)
        while node != head:
            if budget == 0:
                return []  # longer than nr_free: corrupted or changing, trust none of it
            budget -= 1
            offset = node - link - vmemmap
            if offset % size:
                return []
            pfns.append(offset // size)
            node = prog.read_u64(node)
    return pfns


def _confirmed(kernel: Kernel, vmemmap: int,
               heads: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Keep the blocks whose head page says: buddy, this order, no references."""
    layout = kernel.layout
    blocks = []
    for pfn, order in heads:
        try:
            raw = np.frombuffer(kernel.prog.read(vmemmap + pfn * layout.size,
                                                 layout.size), dtype=np.uint8)
        except FaultError:
            continue
        mapcount = int(raw[layout.mapcount:layout.mapcount + 4].view("<i4")[0])
        refcount = int(raw[layout.refcount:layout.refcount + 4].view("<i4")[0])
        private = int(raw[layout.private:layout.private + 8].view("<u8")[0])
        if page_type_name(kernel, mapcount) == "buddy" and private == order and refcount == 0:
            blocks.append((pfn, pfn + (1 << order)))
    blocks.sort()
    return blocks


def subtract(ranges: list[tuple[int, int, int]],
             holes: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """*ranges* ``(start, end, base)`` without the sorted, disjoint *holes* ``(start, end)``."""
    out = []
    i = 0
    for start, end, base in ranges:
        while i < len(holes) and holes[i][1] <= start:
            i += 1
        j = i
        pos = start
        while j < len(holes) and holes[j][0] < end:
            lo, hi = holes[j]
            if lo > pos:
                out.append((pos, lo, base))
            pos = max(pos, hi)
            j += 1
        if pos < end:
            out.append((pos, end, base))
    return out
