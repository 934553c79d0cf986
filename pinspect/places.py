"""Where pages sit: node, zone, pageblock migratetype and CMA area, for many pfns at once."""

from __future__ import annotations

from drgn import FaultError

from pinspect import unread
from pinspect.cma import CmaLocator
from pinspect.kernel import Kernel
from pinspect.zones import PageblockReader, ZoneLocator


class Places:
    """Node, zone, pageblock migratetype and CMA area of pfns, worked out once per pageblock
    (and zone bits of ``page->flags``) where the whole pageblock lies in one zone and one
    CMA range or none."""

    def __init__(self, kernel: Kernel) -> None:
        self.prog = kernel.prog
        self.locator = ZoneLocator(kernel)
        self.blocks = PageblockReader(kernel)
        self.cma = CmaLocator(kernel)
        self.order = kernel.pageblock_order
        layout = self.locator.layout
        self.zone_bits = (layout.zones_mask << layout.zones_shift) | \
            (layout.nodes_mask << layout.nodes_shift)
        self.known: dict[tuple[int, int], tuple[int, str, str, str | None]] = {}

    def of(self, pfn: int, flags: int) -> tuple[int, str, str, str | None]:
        """``(node, zone name, migratetype name, CMA area name)`` of *pfn*."""
        key = (pfn >> self.order, flags & self.zone_bits)
        try:
            return self.known[key]
        except KeyError:
            pass
        try:
            zone = self.locator.locate(pfn, flags)
        except FaultError:
            zone = None
            unread.count(self.prog, "zones")
        try:
            area = self.cma.find(pfn)
        except FaultError:
            area = None
            unread.count(self.prog, "CMA areas")
        try:
            migratetype = self.blocks.name(pfn)
        except FaultError:
            migratetype = "unknown"
            unread.count(self.prog, "pageblock flags")
        place = (zone.node if zone else -1, zone.name if zone else "unknown",
                 migratetype, area.name if area else None)
        first = key[0] << self.order
        end = first + (1 << self.order)
        if zone is not None and zone.start_pfn <= first and end <= zone.end_pfn and \
                self.cma.uniform(first, end):
            self.known[key] = place
        return place
