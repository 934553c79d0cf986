"""The capability probe: what this kernel has, and where its structures keep things.

Everything here is decided from DWARF types, enumerators and symbols (EAFP), never from
the release string. :func:`probe` caches one :class:`Kernel` per ``drgn.Program``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import drgn
from drgn import FaultError, ObjectNotFoundError, Program

from pinspect import constants
from pinspect.errors import DebugInfoError
from pinspect.vmcoreinfo import from_program as vmcoreinfo_from_program

PRESENT = "present"
OFF = "off"
ABSENT = "absent"


@dataclass(frozen=True)
class Feature:
    """Whether a kernel feature is present, compiled in but off, or absent, and why."""

    name: str
    state: str
    detail: str


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
    compound_head: int
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


@dataclass(frozen=True)
class PageExtLayout:
    """page_ext: entry size and which clients are compiled in, with their offsets."""

    entry_size: int
    has_flags_word: bool
    sparse: bool
    owner_offset: int | None
    owner_enabled: bool
    pinner_offset: int | None
    pinner_enabled: bool
    flag_bits: dict[str, int] = field(default_factory=dict)


@dataclass
class Kernel:
    """What one kernel has; build with :func:`probe`."""

    prog: Program
    release: str
    arch: str
    page_size: int
    page_shift: int
    layout: PageLayout
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

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)


def _offset(type_: drgn.Type, member: str) -> int | None:
    try:
        return drgn.offsetof(type_, member)
    except LookupError:
        return None


def enumerators(prog: Program, type_name: str) -> dict[str, int]:
    try:
        enum = prog.type(type_name)
    except LookupError:
        return {}
    return {e.name: e.value for e in enum.enumerators or ()}


def _static_key_enabled(prog: Program, name: str) -> bool | None:
    """Read a ``struct static_key_false/true``; None if the symbol is absent."""
    try:
        key = prog[name]
    except KeyError:
        return None
    try:
        return key.key.enabled.counter.value_() > 0
    except (AttributeError, FaultError):
        return None


def _variable(prog: Program, name: str) -> drgn.Object | None:
    try:
        return prog[name]
    except KeyError:
        return None


def _folio_layout(prog: Program, page_type: drgn.Type, page_size_bytes: int) -> FolioLayout:
    try:
        folio = prog.type("struct folio")
    except LookupError:
        folio = None
    tail = page_size_bytes
    if folio is not None:
        order = _offset(folio, "_folio_order")
        if order is None:
            # 6.3+ keeps the order in the low byte of the first tail page's flags.
            order = _offset(folio, "_flags_1")
        nr_pages = _offset(folio, "_folio_nr_pages")
        large = _offset(folio, "_large_mapcount")
        # 6.2 renamed the 6.1 alias _total_mapcount (= page[1].compound_mapcount).
        entire = _offset(folio, "_entire_mapcount")
        if entire is None:
            entire = _offset(folio, "_total_mapcount")
        pincount = _offset(folio, "_pincount")
        dtor = _offset(folio, "_folio_dtor")
    else:
        # Before folios (5.15 and older): the first tail page's named fields.
        order = _offset(page_type, "compound_order")
        order = None if order is None else tail + order
        nr_pages = _offset(page_type, "compound_nr")
        nr_pages = None if nr_pages is None else tail + nr_pages
        large = None
        dtor = _offset(page_type, "compound_dtor")
        dtor = None if dtor is None else tail + dtor
        entire = _offset(page_type, "compound_mapcount")
        entire = None if entire is None else tail + entire
        pincount = None
    pincount_min_order = 1
    if pincount is None:
        # 5.18-6.2: page[1].compound_pincount for every compound page.
        off = _offset(page_type, "compound_pincount")
        if off is not None:
            pincount = tail + off
        else:
            # 5.7-5.17: page[2].hpage_pinned_refcount, only for order > 1
            # (commit 47e29d32afba "mm/gup: page->hpage_pinned_refcount: exact pin counts").
            off = _offset(page_type, "hpage_pinned_refcount")
            if off is not None:
                pincount = 2 * tail + off
                pincount_min_order = 2
    if order is None:
        raise DebugInfoError(
            "cannot find where this kernel stores the compound page order",
            "the debug info looks incomplete; use the vmlinux with full DWARF",
        )
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

    def need(name: str) -> int:
        off = _offset(page, name)
        if off is None:
            raise DebugInfoError(f"struct page has no member {name!r}",
                                 "this kernel layout is not supported yet")
        return off

    compound_head = _offset(page, "compound_head")
    if compound_head is None:
        compound_head = need("lru")
    return PageLayout(
        size=page.size or 0,
        flags=need("flags"),
        compound_head=compound_head,
        mapping=need("mapping"),
        index=need("index"),
        private=need("private"),
        mapcount=need("_mapcount"),
        refcount=need("_refcount"),
        folio=_folio_layout(prog, page, page.size or 0),
    )


def _page_ext_layout(prog: Program, features: list[Feature]) -> PageExtLayout | None:
    size_obj = _variable(prog, "page_ext_size")
    if size_obj is None:
        features.append(Feature("page_ext", ABSENT, "kernel built without CONFIG_PAGE_EXTENSION"))
        return None
    entry_size = size_obj.value_()
    sparse = _variable(prog, "mem_section") is not None
    flag_bits = enumerators(prog, "enum page_ext_flags")

    def client(ops_name: str, key_name: str) -> tuple[int | None, bool, bool]:
        ops = _variable(prog, ops_name)
        if ops is None:
            return None, False, False
        enabled = bool(_static_key_enabled(prog, key_name))
        try:
            need_shared = bool(ops.need_shared_flags.value_())
        except AttributeError:
            need_shared = True  # before 6.3 every entry starts with the flags word
        return ops.offset.value_(), enabled, need_shared

    owner_offset, owner_enabled, owner_shared = client("page_owner_ops", "page_owner_inited")
    pinner_offset, pinner_enabled, _ = client("page_pinner_ops", "page_pinner_inited")
    # 6.3+ reserves the flags word only when an enabled client asks for it (commit
    # "mm/page_ext: do not allocate space for page_ext->flags if not needed").
    try:
        prog.type("struct page_ext_operations").member("need_shared_flags")
        has_flags = owner_enabled and owner_shared
        if pinner_offset is not None and pinner_enabled:
            has_flags = has_flags or pinner_offset >= 8
    except (LookupError, AttributeError):
        has_flags = True
    in_use = entry_size > 0 and (owner_enabled or pinner_enabled)
    features.append(Feature(
        "page_ext", PRESENT if in_use else OFF,
        f"entry size {entry_size} bytes" if in_use
        else "compiled in, but no page_ext client was enabled at boot",
    ))
    return PageExtLayout(
        entry_size=entry_size,
        has_flags_word=has_flags,
        sparse=sparse,
        owner_offset=owner_offset,
        owner_enabled=owner_enabled,
        pinner_offset=pinner_offset,
        pinner_enabled=pinner_enabled,
        flag_bits=flag_bits,
    )


def _pinner_variant(prog: Program) -> str | None:
    """Which page_pinner this kernel carries (reference §1.9), by its globals."""
    def has(name: str) -> bool:
        return _variable(prog, name) is not None

    if has("pp_buffer"):
        return "d"
    if has("acf_buffer") or has("lt_buffer"):
        return "c"
    if has("acf_pinner"):
        try:
            record = prog.type("struct captured_pinner")
        except LookupError:
            return "a1"
        names = {m.name for m in record.members or ()}
        if "mapcount" in names:
            return "b"
        if _offset(record, "elapsed") is not None:
            return "a2"
        return "a1"
    if has("lt_pinner"):
        return "a0"
    if "PAGE_EXT_PINNER" in enumerators(prog, "enum page_ext_flags"):
        return "rfc"
    return None


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


def _page_types(prog: Program) -> tuple[dict[str, int], bool]:
    """Page type values, and whether they live in the top byte of page_type (6.12+)."""
    pgty = enumerators(prog, "enum pagetype")
    if any(k.startswith("PGTY_") for k in pgty):
        return {k.removeprefix("PGTY_"): v for k, v in pgty.items()
                if k.startswith("PGTY_") and v >= constants.PGTY_OLDEST}, True
    if pgty:  # 6.9-6.11: enum pagetype holds the PG_* bits cleared under PAGE_TYPE_BASE
        return {k.removeprefix("PG_"): v for k, v in pgty.items()
                if k.startswith("PG_") and 0 < v < constants.PAGE_TYPE_BASE}, False
    return dict(constants.PAGE_TYPE_BITS_OLD), False


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


def read_vmcoreinfo(prog: Program) -> dict[str, str]:
    """Parse VMCOREINFO (``KEY=value`` lines) from the program, or {} if unavailable."""
    return vmcoreinfo_from_program(prog)


def _pageblock_order(prog: Program, arch: str, page_shift: int, max_order: int) -> int:
    var = _variable(prog, "pageblock_order")
    if var is not None:  # CONFIG_HUGETLB_PAGE_SIZE_VARIABLE
        return var.value_()
    return min(constants.pmd_order(arch, page_shift), max_order - 1)


def _max_order(prog: Program) -> int:
    """Number of buddy orders (length of zone.free_area)."""
    free_area = prog.type("struct zone").member("free_area").type
    return free_area.length or 11


def _arch_name(prog: Program) -> str:
    arch = prog.platform.arch if prog.platform else None
    return {drgn.Architecture.X86_64: "x86_64",
            drgn.Architecture.AARCH64: "aarch64"}.get(arch, str(arch))  # type: ignore[arg-type]


def probe(prog: Program) -> Kernel:
    """Probe *prog* once and cache the result on it."""
    try:
        return prog.cache["pinspect_kernel"]  # type: ignore[no-any-return]
    except KeyError:
        pass
    kernel = _probe(prog)
    prog.cache["pinspect_kernel"] = kernel
    return kernel


def _probe(prog: Program) -> Kernel:
    features: list[Feature] = []
    vmcoreinfo = read_vmcoreinfo(prog)
    try:
        release = prog["UTS_RELEASE"].string_().decode()
    except (KeyError, FaultError):
        release = vmcoreinfo.get("OSRELEASE", "unknown")
    page_size = prog["PAGE_SIZE"].value_()
    page_shift = prog["PAGE_SHIFT"].value_()
    arch = _arch_name(prog)
    layout = _page_layout(prog)
    flag_names = {k: v for k, v in enumerators(prog, "enum pageflags").items()}

    vmemmap: int | None
    try:
        vmemmap = prog["vmemmap"].value_()
        features.append(Feature("memory model", PRESENT, "SPARSEMEM_VMEMMAP"))
    except (KeyError, ObjectNotFoundError):
        vmemmap = None
        model = "SPARSEMEM" if _variable(prog, "mem_section") is not None else "FLATMEM"
        features.append(Feature("memory model", PRESENT, model))

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
    features.append(Feature("folio layout", PRESENT,
                            f"struct page {layout.size} bytes; mapcount: {mapping}; pins: {pins}"))

    page_ext = _page_ext_layout(prog, features)
    if page_ext is None or page_ext.owner_offset is None:
        features.append(Feature("page_owner", ABSENT, "kernel built without CONFIG_PAGE_OWNER"))
    elif page_ext.owner_enabled:
        features.append(Feature("page_owner", PRESENT, "enabled at boot (page_owner=on)"))
    else:
        features.append(Feature("page_owner", OFF,
                                "compiled in but not enabled; boot with page_owner=on"))

    variant = _pinner_variant(prog)
    if variant is None:
        features.append(Feature("page_pinner", ABSENT,
                                "no page_pinner (an Android common kernel feature)"))
    elif page_ext is not None and (page_ext.pinner_enabled or variant == "rfc"):
        enabled = _static_key_enabled(prog, "page_pinner_inited")
        state = PRESENT if enabled or enabled is None else OFF
        features.append(Feature("page_pinner", state, f"variant {variant.upper()}"
                                + ("" if state == PRESENT else "; boot with page_pinner=on")))
    else:
        features.append(Feature("page_pinner", OFF,
                                f"variant {variant.upper()} compiled in but not enabled; "
                                "boot with page_pinner=on"))

    if _variable(prog, "cma_areas") is None:
        features.append(Feature("cma", ABSENT, "kernel built without CONFIG_CMA"))
    else:
        count = prog["cma_area_count"].value_()
        try:
            prog.type("struct cma_memrange")
            shape = "multi-range struct cma"
        except LookupError:
            shape = "single-range struct cma"
        features.append(Feature("cma", PRESENT if count else OFF,
                                f"{count} area(s), {shape}" if count
                                else f"no CMA area reserved ({shape}); boot with cma=SIZE"))

    if _variable(prog, "stack_pools") is not None:
        depot = "stack_pools"
    elif _variable(prog, "stack_slabs") is not None:
        depot = "stack_slabs"
    else:
        depot = None
    features.append(Feature("stack depot", PRESENT if depot else ABSENT,
                            depot or "kernel built without CONFIG_STACKDEPOT"))

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
    types, top_byte = _page_types(prog)
    return Kernel(
        prog=prog,
        release=release,
        arch=arch,
        page_size=page_size,
        page_shift=page_shift,
        layout=layout,
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
    )
