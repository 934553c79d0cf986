"""Free blocks of the buddy allocator (``zone->free_area[order].free_list[type]``).

A free block holds no reference to any of its pages, so the scanner need not read their
``struct page``\\ s at all. Only used on dumps (a live kernel changes its lists while we walk
them), only for large blocks, and only for blocks whose head page confirms it: buddy page
type, ``private`` equal to the order, refcount 0.
"""

from __future__ import annotations

import struct

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
    walker = _Walker(kernel, link)
    blocks: list[tuple[int, int]] = []
    for zone in zones(kernel):
        zobj = Object(prog, "struct zone *", zone.address)
        walker.span = zone.spanned
        for order in range(min_order, kernel.max_order):
            try:
                blocks.extend((pfn, pfn + (1 << order)) for pfn in
                              walker.walk(zobj.free_area[order], order))
            except FaultError:
                continue
    blocks.sort()
    return blocks


class _Walker:
    """Walks free lists, reading each listed ``struct page`` once: its link to the next
    block and the fields that confirm it is a free block head."""

    def __init__(self, kernel: Kernel, link: int) -> None:
        layout = kernel.layout
        assert kernel.vmemmap is not None
        self.kernel = kernel
        self.vmemmap = kernel.vmemmap
        self.size = layout.size
        self.link = link
        self.next_field = struct.Struct("<Q")
        self.offsets = (layout.mapcount, layout.refcount, layout.private)
        self.buddy_types: dict[int, bool] = {}
        self.span = 1 << 62  # pages spanned by the zone walked

    def walk(self, area: Object, order: int) -> list[int]:
        """Head pfns on every free list of one ``struct free_area``, bounded by ``nr_free``,
        keeping the heads that say: buddy, this order, no references."""
        prog = area.prog_
        # (a corrupted nr_free can be anything: no zone holds more blocks than its span)
        budget = min(area.nr_free.value_(), (self.span >> order) + 1)
        seen: set[int] = set()
        pfns = []
        mapcount_at, refcount_at, private_at = self.offsets
        for free_list in area.free_list:
            head = free_list.address_of_().value_()
            node = prog.read_u64(head)
            while node != head:
                if budget == 0:
                    return []  # longer than nr_free: corrupted or changing, trust none of it
                budget -= 1
                if node in seen:
                    return []  # a loop: corrupted, trust none of it
                seen.add(node)
                page = node - self.link
                offset = page - self.vmemmap
                if offset % self.size:
                    return []
                raw = prog.read(page, self.size)
                mapcount = int.from_bytes(raw[mapcount_at:mapcount_at + 4], "little")
                if self._is_buddy(mapcount) and order == int.from_bytes(
                        raw[private_at:private_at + 8], "little") and \
                        not any(raw[refcount_at:refcount_at + 4]):
                    pfns.append(offset // self.size)
                node, = self.next_field.unpack_from(raw, self.link)
        return pfns

    def _is_buddy(self, mapcount: int) -> bool:
        try:
            return self.buddy_types[mapcount]
        except KeyError:
            found = self.buddy_types[mapcount] = \
                page_type_name(self.kernel, mapcount) == "buddy"
            return found
