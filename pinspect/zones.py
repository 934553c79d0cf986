"""Nodes, zones and pageblocks: where a page sits."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from drgn import FaultError, Object
from drgn.helpers.linux.mmzone import for_each_online_pgdat, nr_to_section

from pinspect import vmcoreinfo
from pinspect.kernel import Kernel
from pinspect.probing import enumerators
from pinspect.variables import has_variable, required_variable, variable


@dataclass(frozen=True)
class Zone:
    """One ``struct zone``: its node, name and pfn span, and its page counters."""

    node: int  # pglist_data .node_id
    index: int  # zone_idx(): ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ...
    name: str  # zone .name
    start_pfn: int  # zone_start_pfn
    spanned: int  # spanned_pages
    present: int  # present_pages
    managed: int  # managed_pages
    free: int  # vm_stat[NR_FREE_PAGES]
    free_cma: int  # vm_stat[NR_FREE_CMA_PAGES]
    cma_pages: int  # cma_pages (0 without CONFIG_CMA)
    address: int  # address of the struct zone

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.spanned


def _vm_stat(zone: Object, item: int | None) -> int:
    if item is None:
        return 0
    value = zone.vm_stat[item].counter.value_()
    return max(value, 0)


def _member_value(obj: Object, member: str) -> int:
    """An integer member that only some configurations have (0 when absent)."""
    try:
        return int(getattr(obj, member).value_())
    except AttributeError:
        return 0


def zones(kernel: Kernel) -> list[Zone]:
    """Every populated zone of every online node (``struct zone``), cached per program."""
    try:
        return kernel.prog.cache["pinspect_zones"]  # type: ignore[no-any-return]
    except KeyError:
        pass
    stat_items = enumerators(kernel.prog, "enum zone_stat_item")
    free_item = stat_items.get("NR_FREE_PAGES")
    free_cma_item = stat_items.get("NR_FREE_CMA_PAGES")
    result = []
    for pgdat in for_each_online_pgdat(kernel.prog):
        node = pgdat.node_id.value_()
        for index in range(len(kernel.zone_names)):
            zone = pgdat.node_zones[index]
            spanned = zone.spanned_pages.value_()
            if not spanned:
                continue
            managed = zone.managed_pages
            try:
                managed_value = managed.counter.value_()
            except AttributeError:  # before 5.0 a plain unsigned long
                managed_value = managed.value_()
            result.append(Zone(
                node=node,
                index=index,
                name=zone.name.string_().decode(errors="replace"),
                start_pfn=zone.zone_start_pfn.value_(),
                spanned=spanned,
                present=zone.present_pages.value_(),
                managed=managed_value,
                free=_vm_stat(zone, free_item),
                free_cma=_vm_stat(zone, free_cma_item),
                cma_pages=_member_value(zone, "cma_pages"),
                address=zone.address_of_().value_(),
            ))
    kernel.prog.cache["pinspect_zones"] = result
    return result


@dataclass(frozen=True)
class FlagsLayout:
    """Where ``page->flags`` keeps the node and zone (ZONES_PGSHIFT and friends)."""

    zones_shift: int
    zones_mask: int
    nodes_shift: int
    nodes_mask: int


def _flags_layout(kernel: Kernel) -> FlagsLayout:
    """Derive the macros of include/linux/page-flags-layout.h from DWARF."""
    prog = kernel.prog
    nr_zones = len(kernel.zone_names)
    zones_width = 0 if nr_zones < 2 else (nr_zones - 1).bit_length()
    try:
        node_data = variable(prog, "node_data")
        nodes_shift = 0 if node_data is None else (len(node_data) - 1).bit_length()
    except TypeError:
        nodes_shift = 0
    sections_width = 0
    if kernel.vmemmap is None:
        try:
            info = vmcoreinfo.from_program(prog)
            sections_width = info.number("MAX_PHYSMEM_BITS") - info.number("SECTION_SIZE_BITS")
        except (KeyError, ValueError):
            sections_width = 0
    nr_pageflags = kernel.flags.names.get("__NR_PAGEFLAGS", 32)
    bits = 8 * prog.type("unsigned long").size
    nodes_width = nodes_shift
    if sections_width + zones_width + nodes_shift > bits - nr_pageflags:
        nodes_width = 0  # NODE_NOT_IN_PAGE_FLAGS
    nodes_pgoff = bits - sections_width - nodes_width
    zones_pgoff = nodes_pgoff - zones_width
    return FlagsLayout(
        zones_shift=zones_pgoff if zones_width else 0,
        zones_mask=(1 << zones_width) - 1,
        nodes_shift=nodes_pgoff if nodes_width else 0,
        nodes_mask=(1 << nodes_width) - 1,
    )


class ZoneLocator:
    """Finds the zone of a page from its flags, checked against the zone spans."""

    def __init__(self, kernel: Kernel) -> None:
        self.zones = zones(kernel)
        self.layout = _flags_layout(kernel)
        self.by_key = {(z.node, z.index): z for z in self.zones}
        ordered = sorted(self.zones, key=lambda z: z.start_pfn)
        self._starts = [z.start_pfn for z in ordered]
        self._ordered = ordered

    def locate(self, pfn: int, flags: int) -> Zone | None:
        layout = self.layout
        node = (flags >> layout.nodes_shift) & layout.nodes_mask if layout.nodes_mask else 0
        index = (flags >> layout.zones_shift) & layout.zones_mask
        zone = self.by_key.get((node, index))
        if zone is not None and zone.start_pfn <= pfn < zone.end_pfn:
            return zone
        # Flags disagree (or node not in flags): fall back to the span that holds the pfn.
        i = bisect.bisect_right(self._starts, pfn) - 1
        while i >= 0:
            candidate = self._ordered[i]
            if candidate.start_pfn <= pfn < candidate.end_pfn:
                return candidate
            i -= 1
        return None


class PageblockReader:
    """Reads pageblock migratetypes from the ``pageblock_flags`` bitmaps.

    With SPARSEMEM each section's bitmap is read once, whole; with FLATMEM each zone's.
    """

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        prog = kernel.prog
        self.sparse = has_variable(prog, "mem_section")
        self.section_shift = (int(required_variable(prog, "SECTION_SIZE_BITS").value_())
                              - kernel.page_shift
                              if self.sparse else 0)
        self.word_bits = 8 * prog.type("unsigned long").size
        self.isolate_bit = enumerators(prog, "enum pageblock_bits").get("PB_migrate_isolate")
        self.isolate = enumerators(prog, "enum migratetype").get("MIGRATE_ISOLATE")
        # Bitmaps by section number (SPARSEMEM) or zone address (FLATMEM), with the pfn their
        # bit 0 describes; None where there is none or it cannot be read.
        self.bitmaps: dict[int, tuple[list[int], int] | None] = {}
        self.locator = None if self.sparse else ZoneLocator(kernel)
        if self.sparse:
            self.sections_per_root = int(required_variable(prog, "SECTIONS_PER_ROOT").value_())
            self.section_type = prog.type("struct mem_section")
            # Where each section's bitmap is: mem_section->usage->pageblock_flags (5.3+).
            self.usage_offset = self.section_type.member("usage").offset
            self.flags_offset = prog.type("struct mem_section_usage").member(
                "pageblock_flags").offset
            self.roots: dict[int, list[int] | None] = {}

    def _bitmap(self, pfn: int) -> tuple[list[int], int] | None:
        kernel = self.kernel
        blocks_bits = kernel.nr_pageblock_bits
        if self.sparse:
            key = pfn >> self.section_shift
            if key not in self.bitmaps:
                self.bitmaps[key] = self._read_section_bitmap(pfn, blocks_bits)
            return self.bitmaps[key]
        assert self.locator is not None
        zone = self.locator.locate(pfn, 0)
        if zone is None:
            return None
        if zone.address not in self.bitmaps:
            self.bitmaps[zone.address] = self._read_zone_bitmap(zone, blocks_bits)
        return self.bitmaps[zone.address]

    def _read_words(self, address: int, nbits: int) -> list[int]:
        nwords = (nbits + self.word_bits - 1) // self.word_bits
        data = self.kernel.prog.read(address, nwords * self.word_bits // 8)
        size = self.word_bits // 8
        return [int.from_bytes(data[i:i + size], "little") for i in range(0, len(data), size)]

    def _read_section_bitmap(self, pfn: int, blocks_bits: int) -> tuple[list[int], int] | None:
        nr = pfn >> self.section_shift
        usage = self._usage_pointers(nr // self.sections_per_root)
        if usage is None:
            return None
        address = usage[nr % self.sections_per_root]
        if not address:
            return None
        blocks = 1 << (self.section_shift - self.kernel.pageblock_order)
        first = pfn & ~((1 << self.section_shift) - 1)
        try:
            return self._read_words(address + self.flags_offset, blocks * blocks_bits), first
        except FaultError:
            return None

    def _usage_pointers(self, root: int) -> list[int] | None:
        """``mem_section[root][i].usage`` for every section *i* of one root, read at once."""
        if root in self.roots:
            return self.roots[root]
        prog = self.kernel.prog
        usage: list[int] | None = None
        try:
            # The first section of the root (NULL if the root is not allocated).
            first = nr_to_section(prog, root * self.sections_per_root)
            if first:
                size = self.section_type.size
                data = prog.read(first.value_(), size * self.sections_per_root)
                at, width = self.usage_offset, self.word_bits // 8
                usage = [int.from_bytes(data[i + at:i + at + width], "little")
                         for i in range(0, len(data), size)]
        except FaultError:
            usage = None
        self.roots[root] = usage
        return usage

    def _read_zone_bitmap(self, zone: Zone, blocks_bits: int) -> tuple[list[int], int] | None:
        try:
            zobj = Object(self.kernel.prog, "struct zone *", zone.address)
            first = zone.start_pfn & ~((1 << self.kernel.pageblock_order) - 1)
            blocks = ((zone.end_pfn - first) >> self.kernel.pageblock_order) + 1
            return self._read_words(zobj.pageblock_flags.value_(), blocks * blocks_bits), first
        except FaultError:
            return None

    def migratetype(self, pfn: int) -> int | None:
        """The ``enum migratetype`` value of the pageblock holding *pfn*."""
        found = self._bitmap(pfn)
        if found is None:
            return None
        words, first = found
        bit = ((pfn - first) >> self.kernel.pageblock_order) * self.kernel.nr_pageblock_bits
        word = bit // self.word_bits
        if word >= len(words):
            return None
        return self._decode((words[word] >> (bit % self.word_bits))
                            & ((1 << self.kernel.nr_pageblock_bits) - 1))

    def _decode(self, bits: int) -> int:
        """Migratetype from a block's bits; ~6.17 keeps isolation in its own bit."""
        if self.isolate_bit is not None and self.isolate is not None \
                and bits & (1 << self.isolate_bit):
            return self.isolate
        return bits & 0x7

    def name(self, pfn: int) -> str:
        """The migratetype name of the pageblock holding *pfn* ("unknown" if unreadable)."""
        value = self.migratetype(pfn)
        if value is None:
            return "unknown"
        return self.kernel.migratetypes.get(value, str(value))
