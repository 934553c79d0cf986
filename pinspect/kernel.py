"""The capability probe: what this kernel has, and where its structures keep things.

Everything here is decided from DWARF types, enumerators and symbols (EAFP), never from
the release string. :func:`probe` caches one :class:`Kernel` per ``drgn.Program``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import drgn
from drgn import FaultError, Program

from pinspect import constants
from pinspect.arch import Arch, arch_of
from pinspect.errors import DebugInfoError
from pinspect.features import ABSENT, OFF, PRESENT, UNSUPPORTED, Feature
from pinspect.owner import CLIENT as OWNER_CLIENT
from pinspect.owner import owner_feature
from pinspect.pageext import PageExtLayout, page_ext_layout
from pinspect.pinner import CLIENT as PINNER_CLIENT
from pinspect.pinner import pinner_feature, pinner_variant
from pinspect.probing import enumerators, offset_of
from pinspect.stackdepot import depot_feature
from pinspect.variables import has_variable, required_variable, variable
from pinspect.vmcoreinfo import from_program as vmcoreinfo_from_program


class UnsupportedLayout(DebugInfoError):
    """A structure pinspect reads is laid out in a way it does not know (a newer kernel)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"this kernel's layout is not supported: {what}",
                         "pinspect info shows what could be read; please report the kernel "
                         "release and where its debug info can be found")


@dataclass(frozen=True)
class FolioLayout:
    """Where a large folio keeps its order, mapcounts and pin count.

    Offsets are from the head ``struct page`` (so fields of the first tail page are at
    ``sizeof(struct page) + n``). ``None`` means the kernel has no such field.
    """

    order: int  # u8: folio._folio_order, page[1].compound_order, or low byte of _flags_1
    nr_pages: int | None
    entire_mapcount: int | None  # atomic_t, value + 1 = PMD mappings
    large_mapcount: int | None  # atomic_t, value + 1 = all mappings (6.10+)
    pincount: int | None  # atomic_t, exact FOLL_PIN count
    pincount_min_order: int  # orders below this use the refcount bias instead
    dtor: int | None  # u8 compound destructor (up to 6.8), marks hugetlb folios
    hugetlb_dtor: int | None  # HUGETLB_PAGE_DTOR
    # Up to 6.1 file THPs count compound mappings in every subpage's _mapcount, and anon THPs
    # mapped by PMD and PTE at once carry PG_double_map (removed in 6.2).
    subpages_include_entire: bool


@dataclass(frozen=True)
class PageLayout:
    """Byte offsets of the ``struct page`` fields the scanner decodes in bulk."""

    size: int
    flags: int
    compound_head: int  # the word whose bit 0 marks a tail page (compound_head/compound_info)
    # 7.1+ with HVO and a power-of-2 struct page: a tail's word is a mask that turns the tail's
    # address into its head's, rather than the head's address (commit 8c846c879e22 "mm: rework
    # compound_head() for power-of-2 sizeof(struct page)").
    tail_info_is_mask: bool
    mapping: int
    index: int
    private: int
    mapcount: int
    refcount: int
    folio: FolioLayout


@dataclass(frozen=True)
class PageFlagBits:
    """Bit numbers of the page flags pin logic needs (from ``enum pageflags``)."""

    names: dict[str, int]

    def bit(self, name: str) -> int | None:
        return self.names.get(name)

    def mask(self, name: str) -> int:
        bit = self.names.get(name)
        return 0 if bit is None else 1 << bit

    def decode(self, flags: int) -> str:
        """Names of the flag bits set in *flags*, without aliases (PG_swapcache, PG_pinned, ...)
        which ``enum pageflags`` lists after ``__NR_PAGEFLAGS``."""
        names = []
        for name, bit in self.names.items():
            if name == "__NR_PAGEFLAGS":
                break
            if flags & (1 << bit):
                names.append(name)
        return "|".join(names)


@dataclass
class Kernel:
    """What one kernel has, found once from its types and symbols (never from its version):
    ``release`` (``init_uts_ns.name.release``), ``arch``, ``page_size``, the ``struct page``
    and ``struct folio`` layouts, ``pageblock_flags`` bits, migratetype and zone names, the
    ``struct page_ext`` layout, and ``features`` (what ``info`` shows). Build with
    :func:`probe`."""

    prog: Program
    release: str
    arch: Arch
    page_size: int
    page_shift: int
    flags: PageFlagBits
    vmemmap: int | None
    pageblock_order: int
    nr_pageblock_bits: int
    max_order: int
    migratetypes: dict[int, str]
    zone_names: list[str]
    page_types: dict[str, int]
    page_types_in_top_byte: bool
    page_ext: PageExtLayout | None
    pinner_variant: str | None
    features: list[Feature]
    page_layout: PageLayout | None  # None: struct page could not be interpreted
    unsupported: UnsupportedLayout | None = None  # why not

    @property
    def layout(self) -> PageLayout:
        """Where ``struct page`` keeps what pinspect reads; raises
        :class:`UnsupportedLayout` if this kernel's could not be interpreted."""
        self.check_layout()
        assert self.page_layout is not None
        return self.page_layout

    def check_layout(self) -> None:
        """Raise :class:`UnsupportedLayout` unless this kernel's struct page is understood."""
        if self.page_layout is None:
            assert self.unsupported is not None
            raise self.unsupported

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)


def _folio_layout(prog: Program, page_type: drgn.Type, page_size_bytes: int) -> FolioLayout:
    try:
        folio = prog.type("struct folio")
    except LookupError:
        folio = None
    tail = page_size_bytes
    if folio is not None:
        order = offset_of(folio, "_folio_order")
        if order is None:
            # 6.3+ keeps the order in the low byte of the first tail page's flags.
            order = offset_of(folio, "_flags_1")
        nr_pages = offset_of(folio, "_folio_nr_pages")
        large = offset_of(folio, "_large_mapcount")
        # 6.2 renamed the 6.1 alias _total_mapcount (= page[1].compound_mapcount).
        entire = offset_of(folio, "_entire_mapcount")
        if entire is None:
            entire = offset_of(folio, "_total_mapcount")
        pincount = offset_of(folio, "_pincount")
        dtor = offset_of(folio, "_folio_dtor")
    else:
        # Before folios (5.15 and older): the first tail page's named fields.
        order = offset_of(page_type, "compound_order")
        order = None if order is None else tail + order
        nr_pages = offset_of(page_type, "compound_nr")
        nr_pages = None if nr_pages is None else tail + nr_pages
        large = None
        dtor = offset_of(page_type, "compound_dtor")
        dtor = None if dtor is None else tail + dtor
        entire = offset_of(page_type, "compound_mapcount")
        entire = None if entire is None else tail + entire
        pincount = None
    pincount_min_order = 1
    if pincount is None:
        # 5.18-6.2: page[1].compound_pincount for every compound page.
        off = offset_of(page_type, "compound_pincount")
        if off is not None:
            pincount = tail + off
        else:
            # 5.7-5.17: page[2].hpage_pinned_refcount, only for order > 1
            # (commit 47e29d32afba "mm/gup: page->hpage_pinned_refcount: exact pin counts").
            off = offset_of(page_type, "hpage_pinned_refcount")
            if off is not None:
                pincount = 2 * tail + off
                pincount_min_order = 2
    if order is None:
        raise UnsupportedLayout("cannot find where this kernel stores a folio's order "
                                "(struct folio._folio_order or _flags_1, page.compound_order)")
    has_double_map = "PG_double_map" in enumerators(prog, "enum pageflags")
    return FolioLayout(
        dtor=dtor,
        hugetlb_dtor=enumerators(prog, "enum compound_dtor_id").get("HUGETLB_PAGE_DTOR"),
        order=order,
        nr_pages=nr_pages,
        entire_mapcount=entire,
        large_mapcount=large,
        pincount=pincount,
        pincount_min_order=pincount_min_order,
        subpages_include_entire=has_double_map,
    )


def _page_layout(prog: Program) -> PageLayout:
    try:
        page = prog.type("struct page")
    except LookupError as e:
        raise DebugInfoError(
            "the debug info has no 'struct page'",
            "load the kernel's vmlinux with full DWARF (-s PATH)",
        ) from e

    def need(*names: str) -> int:
        """The offset of the first of *names* that struct page has."""
        for name in names:
            off = offset_of(page, name)
            if off is not None:
                return off
        raise UnsupportedLayout(f"struct page has no member {' or '.join(map(repr, names))}")

    size = page.size or 0
    # 7.1 renamed compound_head to compound_info (commit d50569612c29); before compound_head
    # existed, tails were marked in the word of lru.next.
    compound_head = need("compound_head", "compound_info", "lru")
    # The zone's vmemmap_tails exists with CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP, the condition
    # (with a power-of-2 struct page) of compound_info_has_mask() in include/linux/page-flags.h.
    try:
        hvo = prog.type("struct zone").has_member("vmemmap_tails")
    except LookupError:
        hvo = False
    return PageLayout(
        size=size,
        flags=need("flags"),
        compound_head=compound_head,
        tail_info_is_mask=offset_of(page, "compound_info") is not None and hvo
        and size & (size - 1) == 0,
        mapping=need("mapping"),
        # 6.16 renamed index to __folio_index (commit acc53a0b4c15).
        index=need("index", "__folio_index"),
        private=need("private"),
        mapcount=need("_mapcount"),
        refcount=need("_refcount"),
        folio=_folio_layout(prog, page, page.size or 0),
    )


def _layout_feature(layout: PageLayout | None, unsupported: UnsupportedLayout | None
                    ) -> Feature:
    """How this kernel lays out pages and folios, or which structure pinspect could not
    interpret."""
    if layout is None:
        assert unsupported is not None
        return Feature("folio layout", UNSUPPORTED, unsupported.message)
    folio = layout.folio
    if folio.large_mapcount is not None:
        mapping = "folio._large_mapcount"
    elif folio.subpages_include_entire:
        mapping = "entire + subpage mapcounts, PG_double_map"
    else:
        mapping = "entire + subpage mapcounts"
    pins = ("folio._pincount" if folio.pincount is not None and folio.pincount_min_order == 1
            else "hpage_pinned_refcount (order > 1)" if folio.pincount is not None
            else "refcount bias only")
    return Feature("folio layout", PRESENT,
                   f"struct page {layout.size} bytes; mapcount: {mapping}; pins: {pins}")


def _zone_names(prog: Program) -> list[str]:
    zones = enumerators(prog, "enum zone_type")
    nr = zones.get("__MAX_NR_ZONES", len(zones))
    by_value = sorted((v, k) for k, v in zones.items() if k.startswith("ZONE_") and v < nr)
    pretty = {"ZONE_DMA": "DMA", "ZONE_DMA32": "DMA32", "ZONE_NORMAL": "Normal",
              "ZONE_HIGHMEM": "HighMem", "ZONE_MOVABLE": "Movable", "ZONE_DEVICE": "Device"}
    return [pretty.get(k, k.removeprefix("ZONE_").title()) for _, k in by_value]


def _migratetypes(prog: Program) -> dict[int, str]:
    names: dict[int, str] = {}
    pretty = {"MIGRATE_UNMOVABLE": "Unmovable", "MIGRATE_MOVABLE": "Movable",
              "MIGRATE_RECLAIMABLE": "Reclaimable", "MIGRATE_HIGHATOMIC": "HighAtomic",
              "MIGRATE_CMA": "CMA", "MIGRATE_ISOLATE": "Isolate"}
    for name, value in enumerators(prog, "enum migratetype").items():
        if name in pretty:
            names[value] = pretty[name]
    return names


def _page_types(prog: Program, release: str) -> tuple[dict[str, int], bool]:
    """Page type values, and whether they live in the top byte of page_type (6.12+)."""
    pgty = enumerators(prog, "enum pagetype")
    if any(k.startswith("PGTY_") for k in pgty):
        return {k.removeprefix("PGTY_"): v for k, v in pgty.items()
                if k.startswith("PGTY_") and v >= constants.PGTY_OLDEST}, True
    if pgty:  # 6.9-6.11: enum pagetype holds the PG_* bits cleared under PAGE_TYPE_BASE
        return {k.removeprefix("PG_"): v for k, v in pgty.items()
                if k.startswith("PG_") and 0 < v < constants.PAGE_TYPE_BASE}, False
    if _has_kmemcg_page_type(prog, release):
        return dict(constants.PAGE_TYPE_BITS_KMEMCG), False
    return dict(constants.PAGE_TYPE_BITS_OLD), False


def _has_kmemcg_page_type(prog: Program, release: str) -> bool:
    """Whether page types still include PG_kmemcg (up to 5.10).

    5.11 removed it in the same series that replaced ``page->mem_cgroup`` with
    ``page->memcg_data`` (commit bcfe06bf2622), so that member tells. Only a kernel built
    without memcg has neither; for it the release is the last resort.
    """
    page = prog.type("struct page")
    if page.has_member("mem_cgroup"):
        return True
    if page.has_member("memcg_data"):
        return False
    numbers = [int(n) for n in re.findall(r"\d+", release)[:2]]
    return len(numbers) == 2 and tuple(numbers) < (5, 11)


def page_type_name(kernel: Kernel, raw: int) -> str | None:
    """Name of the page type stored in ``page->page_type`` (*raw*, u32), or None."""
    raw &= 0xFFFFFFFF
    signed = raw - (1 << 32) if raw & 0x80000000 else raw
    if signed > constants.PAGE_MAPCOUNT_RESERVE:
        return None
    if kernel.page_types_in_top_byte:
        top = raw >> 24
        for name, value in kernel.page_types.items():
            if value == top:
                return name
        return f"type {top:#x}"
    cleared = ~raw & ~constants.PAGE_TYPE_BASE & 0xFFFFFFFF
    names = [n for n, bit in kernel.page_types.items() if cleared & bit]
    return "|".join(names) if names else f"type {raw:#x}"


def _pageblock_order(prog: Program, arch: Arch, page_shift: int, max_order: int) -> int:
    """pageblock_order: a variable with CONFIG_HUGETLB_PAGE_SIZE_VARIABLE, else
    HPAGE_PMD_ORDER capped by the largest buddy order (include/linux/pageblock-flags.h)."""
    var = variable(prog, "pageblock_order")
    if var is not None:
        return var.value_()
    return min(arch.pmd_order(page_shift), max_order - 1)


def _max_order(prog: Program) -> int:
    """Number of buddy orders (length of zone.free_area)."""
    free_area = prog.type("struct zone").member("free_area").type
    return free_area.length or 11


def probe(prog: Program) -> Kernel:
    """Probe *prog* once and cache the result on it (``prog.cache``): the :class:`Kernel`."""
    try:
        return prog.cache["pinspect_kernel"]  # type: ignore[no-any-return]
    except KeyError:
        pass
    kernel = _probe(prog)
    prog.cache["pinspect_kernel"] = kernel
    return kernel


def _probe(prog: Program) -> Kernel:
    features: list[Feature] = []
    vmcoreinfo = vmcoreinfo_from_program(prog)
    uts_release = variable(prog, "UTS_RELEASE")
    try:
        release = (uts_release.string_().decode(errors="replace")
                   if uts_release is not None else None)
    except FaultError:
        release = None
    if release is None:
        release = vmcoreinfo.get("OSRELEASE", "unknown")
    page_size = required_variable(prog, "PAGE_SIZE").value_()
    page_shift = required_variable(prog, "PAGE_SHIFT").value_()
    arch = arch_of(prog)
    layout: PageLayout | None
    unsupported: UnsupportedLayout | None = None
    try:
        layout = _page_layout(prog)
    except UnsupportedLayout as e:
        layout, unsupported = None, e
    flag_names = {k: v for k, v in enumerators(prog, "enum pageflags").items()}

    vmemmap_obj = variable(prog, "vmemmap")
    vmemmap = None if vmemmap_obj is None else vmemmap_obj.value_()
    if vmemmap is not None:
        features.append(Feature("memory model", PRESENT, "SPARSEMEM_VMEMMAP"))
    else:
        model = "SPARSEMEM" if has_variable(prog, "mem_section") else "FLATMEM"
        features.append(Feature("memory model", PRESENT, model))

    features.append(_layout_feature(layout, unsupported))

    page_ext, page_ext_feature = page_ext_layout(prog, (OWNER_CLIENT, PINNER_CLIENT))
    features.append(page_ext_feature)
    features.append(owner_feature(page_ext))
    variant = pinner_variant(prog)
    features.append(pinner_feature(prog, page_ext, variant))

    count_obj = variable(prog, "cma_area_count")
    if not has_variable(prog, "cma_areas") or count_obj is None:
        features.append(Feature("cma", ABSENT, "kernel built without CONFIG_CMA"))
    else:
        count = count_obj.value_()
        try:
            prog.type("struct cma_memrange")
            shape = "multi-range struct cma"
        except LookupError:
            shape = "single-range struct cma"
        features.append(Feature("cma", PRESENT if count else OFF,
                                f"{count} area(s), {shape}" if count
                                else f"no CMA area reserved ({shape}); boot with cma=SIZE"))

    features.append(depot_feature(prog))

    pageblock_bits = enumerators(prog, "enum pageblock_bits")
    nr_bits = pageblock_bits.get("NR_PAGEBLOCK_BITS")
    if nr_bits is None:
        # ~6.17: __NR_PAGEBLOCK_BITS rounded up to a power of two.
        raw = pageblock_bits.get("__NR_PAGEBLOCK_BITS", 4)
        nr_bits = 1 << (raw - 1).bit_length()
    max_order = _max_order(prog)
    pageblock_order = _pageblock_order(prog, arch, page_shift, max_order)
    isolate = ", separate isolate bit" if "PB_migrate_isolate" in pageblock_bits else ""
    features.append(Feature("pageblock flags", PRESENT,
                            f"{nr_bits} bits per pageblock of order {pageblock_order}{isolate}"))
    types, top_byte = _page_types(prog, release)
    return Kernel(
        prog=prog,
        release=release,
        arch=arch,
        page_size=page_size,
        page_shift=page_shift,
        flags=PageFlagBits(flag_names),
        vmemmap=vmemmap,
        pageblock_order=pageblock_order,
        nr_pageblock_bits=nr_bits,
        max_order=max_order,
        migratetypes=_migratetypes(prog),
        zone_names=_zone_names(prog),
        page_types=types,
        page_types_in_top_byte=top_byte,
        page_ext=page_ext,
        pinner_variant=variant,
        features=features,
        page_layout=layout,
        unsupported=unsupported,
    )
