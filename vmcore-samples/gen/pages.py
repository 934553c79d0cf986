"""struct page and struct folio contents: the page state of every allocation,
of reserved and of free pages, page types, and the writing of the vmemmap."""

from __future__ import annotations

from . import scenario as S
from .machine import Machine, PageState
from .memmap import pfn_to_page
from .pageflags import base_flags, pg
from .scenario import Folio

GUP_PIN_COUNTING_BIAS = 1024
POISON_POINTER_DELTA = 0xDEAD000000000000
TAIL_MAPPING = POISON_POINTER_DELTA + 0x400
PAGE_MAPPING_ANON = 0x1
PAGE_MAPPING_MOVABLE = 0x2
PAGE_MAPPING_KSM = 0x3


# include/linux/page-flags.h: the bits cleared under PAGE_TYPE_BASE (5.10 still
# has PG_kmemcg at 0x200, so PG_table and PG_guard sit one bit higher than in
# 5.11-6.11)
PAGE_TYPE_BITS = {
    "inverted-5.10": {"buddy": 0x80, "offline": 0x100, "kmemcg": 0x200, "table": 0x400,
                      "guard": 0x800},
    "inverted": {"buddy": 0x80, "offline": 0x100, "table": 0x200, "guard": 0x400},
}


def page_type_value(m: Machine, kind: str) -> int:
    """The page_type word (as a signed int) of a typed page: inverted bits up
    to 6.11, PGTY_<kind> in the top byte from 6.12."""
    if m.k.page_type_scheme in PAGE_TYPE_BITS:
        bit = PAGE_TYPE_BITS[m.k.page_type_scheme][kind]
        return (0xFFFFFFFF & ~bit) - (1 << 32)
    v = m.enum("PGTY_" + kind) << 24
    return v - (1 << 32) if v & 0x80000000 else v


def add_scenario_pages(m: Machine) -> None:
    """Page states of the pages cma_alloc handed out and of every scenario
    folio, in pfn order."""
    for cma in S.CMA_AREAS:
        for s, e in cma.allocated:
            for pfn in range(s, e):
                m.pages[pfn] = PageState(
                    pfn, "cma_allocated", refcount=1, mapcount_raw=-1, flags=base_flags(m, pfn)
                )
    for f in sorted(m.sc.folios, key=lambda f: f.pfn):
        add_folio(m, f)


def add_folio(m: Machine, f: Folio) -> None:
    """Record an allocation: page states of its head and tail pages."""
    for i in range(f.nr_pages):
        if f.pfn + i in m.pages:
            raise ValueError(f"pfn {f.pfn + i:#x} used twice")
    m.folios.append(f)
    base = base_flags(m, f.pfn)
    nr = f.nr_pages
    head = PageState(f.pfn, f.kind, flags=base, folio=f)
    m.pages[f.pfn] = head
    if f.kind in ("anon", "ksm", "shmem", "file"):
        names = ["uptodate", "lru"]
        if f.kind in ("anon", "ksm", "shmem"):
            names.append("swapbacked")
        if f.kind == "anon" and f.mapcount == 1 and m.t.has_enum("PG_anon_exclusive"):
            names.append("anon_exclusive")  # 5.19+
        if f.kind == "shmem":
            names.append("dirty")
        if f.order and f.compound:
            names.append("head")
        names += f.flags
        head.flags |= pg(m, *names)
        pins_refs = f.pins * (GUP_PIN_COUNTING_BIAS if f.order == 0 else 1)
        cache = f.kind in ("shmem", "file") or "swapcache" in f.flags
        expected = f.mapcount + (nr if cache else 0) + (1 if "private" in f.flags else 0)
        head.refcount = expected + pins_refs + f.extra
        head.mapcount_raw = (f.mapcount - 1) if f.order == 0 else -1
        head.index = (0x7F0000000 + f.pfn) if f.kind in ("anon", "ksm") else f.pfn & 0xFFF
    elif f.kind == "slab":
        if m.t.has_enum("PG_slab"):
            head.flags |= pg(m, "slab")
        else:
            head.mapcount_raw = page_type_value(m, "slab")
        head.refcount = 1
    elif f.kind == "pgtable":
        head.refcount = 1
        head.mapcount_raw = page_type_value(m, "table")
    elif f.kind == "kernel":
        head.refcount = 1
        if f.order and f.compound:
            head.flags |= pg(m, "head")  # alloc_pages(__GFP_COMP)
    elif f.kind == "reserved":
        # a driver's page with SetPageReserved (e.g. before remap_pfn_range)
        head.refcount = 1
        head.flags |= pg(m, "reserved")
    elif f.kind in ("offline", "balloon"):
        # a balloon page: PageOffline; with balloon compaction it also has movable_ops
        # (6.18+: PG_movable_ops; before: a mapping with PAGE_MAPPING_MOVABLE)
        head.refcount = 1
        head.mapcount_raw = page_type_value(m, "offline")
        if f.kind == "balloon" and m.t.has_enum("PG_movable_ops"):
            head.flags |= pg(m, "movable_ops")
        elif f.kind == "balloon":
            head.mapping = m.sym("balloon_mops") | PAGE_MAPPING_MOVABLE
    elif f.kind == "movable_ops" and m.t.has_enum("PG_movable_ops"):
        # 6.18+ zsmalloc page: PG_movable_ops and the PGTY_zsmalloc type say
        # whose movable_ops apply (mm/zpdesc.h); PG_private marks the first
        # page of a zspage; no mapping
        head.refcount = 1
        head.flags |= pg(m, "private", "movable_ops")
        head.mapcount_raw = page_type_value(m, "zsmalloc")
    elif f.kind == "movable_ops":
        # zsmalloc page: movable_ops mapping (low bits PAGE_MAPPING_MOVABLE)
        head.refcount = 1
        head.flags |= pg(m, "private")
        head.mapping = m.sym("zsmalloc_mops") | PAGE_MAPPING_MOVABLE
    else:
        raise ValueError(f.kind)
    for i in range(1, nr):
        pfn = f.pfn + i
        st = PageState(pfn, "tail", flags=base, head=f.pfn)
        if f.compound:
            st.mapcount_raw = -1
        m.pages[pfn] = st


def add_reserved_pages(m: Machine) -> None:
    """PG_reserved page states for the image and every memblock allocation."""
    for pfn in sorted(m.reserved):
        assert pfn not in m.pages, hex(pfn)
        m.pages[pfn] = PageState(
            pfn, "reserved", flags=base_flags(m, pfn) | pg(m, "reserved"), refcount=1
        )


def add_free_pages(m: Machine, blocks: list[tuple[int, int, str]]) -> None:
    """PageBuddy heads (order in private) and their tails."""
    for pfn, order, _ in blocks:
        m.pages[pfn] = PageState(
            pfn,
            "free",
            flags=base_flags(m, pfn),
            mapcount_raw=page_type_value(m, "buddy"),
            private=order,
        )
        for q in range(pfn + 1, pfn + (1 << order)):
            m.pages[q] = PageState(q, "buddy_tail", flags=base_flags(m, q))


def write_struct_pages(m: Machine) -> None:
    """Every page state into the vmemmap, then the compound folio fields."""
    t = m.t
    sp = t.sizeof("struct page")
    off = {
        n: t.offsetof("struct page", n)
        for n in ("flags", "mapping", "private", "_mapcount", "_refcount")
    }
    # 6.16 renamed page->index to __folio_index
    off["index"] = t.offsetof(
        "struct page", "index" if t.has_member("struct page", "index") else "__folio_index"
    )
    for pfn, st in m.pages.items():
        buf = bytearray(sp)

        def w(o: int, v: int, n: int, buf: bytearray = buf) -> None:
            buf[o : o + n] = (v & ((1 << (8 * n)) - 1)).to_bytes(n, "little")

        w(off["flags"], st.flags, 8)
        w(off["mapping"], st.mapping, 8)
        w(off["index"], st.index, 8)
        w(off["private"], st.private, 8)
        w(off["_mapcount"], st.mapcount_raw, 4)
        w(off["_refcount"], st.refcount, 4)
        m.mem.write(pfn_to_page(m, pfn), bytes(buf))
    for f in m.folios:
        if f.order and f.compound:
            _write_compound(m, f)


def compound_info(m: Machine, head: int, order: int) -> int:
    """What a tail page's compound_head (compound_info, 7.1+) holds: the head
    address | 1, or with HVO and a power-of-2 struct page (7.1+,
    compound_info_has_mask() in include/linux/page-flags.h) the mask
    GENMASK(63, order + log2(sizeof(struct page))) | 1."""
    t = m.t
    sp = t.sizeof("struct page")
    if (
        t.has_member("struct page", "compound_info")
        and t.has_member("struct zone", "vmemmap_tails")
        and sp & (sp - 1) == 0
    ):
        shift = order + sp.bit_length() - 1
        return ((1 << 64) - (1 << shift)) | 1
    return head | 1


def _write_compound(m: Machine, f: Folio) -> None:
    """Tail pages' compound_head and the large-folio fields (5.10, 6.1: in
    the first and second tail pages; 6.12, 7.2: through struct folio)."""
    t = m.t
    head = pfn_to_page(m, f.pfn)
    nr = f.nr_pages
    info_member = "compound_info" if t.has_member("struct page", "compound_info") else (
        "compound_head"
    )
    info = compound_info(m, head, f.order)
    for i in range(1, nr):
        a = pfn_to_page(m, f.pfn + i)
        t.put(a, "struct page", info_member, info)
        # 5.10 poisons page[1]'s mapping too: compound_nr then overwrites its
        # low half (a real 5.10 THP's page[1] shows 0xdead000000000200)
        if i >= 2 or (i == 1 and m.k.version == "5.10"):
            t.put(a, "struct page", "mapping", TAIL_MAPPING)
    user = f.kind in ("anon", "ksm", "shmem", "file")
    if not user:
        # a compound kernel allocation (__GFP_COMP): the plain compound destructor, order and
        # nr_pages only; no mapcounts, pins or deferred split list
        p1 = pfn_to_page(m, f.pfn + 1)
        if m.k.version in ("5.10", "6.1"):
            t.put(p1, "struct page", "compound_dtor", m.enum("COMPOUND_PAGE_DTOR"))
            t.put(p1, "struct page", "compound_order", f.order)
            t.put(p1, "struct page", "compound_mapcount", -1)
            t.put(p1, "struct page", "compound_nr", nr)
        else:
            fo = "struct folio"
            t.put(head, fo, "_flags_1", t.get(head, fo, "_flags_1") | f.order)
            t.put(head, fo, "_large_mapcount", -1)
            t.put(head, fo, "_entire_mapcount", -1)
            if t.has_member(fo, "_folio_nr_pages"):
                t.put(head, fo, "_folio_nr_pages", nr)
            if t.has_member(fo, "_nr_pages"):
                t.put(head, fo, "_nr_pages", nr)
            if t.has_member(fo, "_mm_ids"):
                t.put(head, fo, "_mm_id_mapcount[0]", -1)
                t.put(head, fo, "_mm_id_mapcount[1]", -1)
        return
    if m.k.version == "5.10":
        # page[1]: dtor, order, compound_mapcount, compound_nr; page[2]:
        # hpage_pinned_refcount (orders > 1) and the deferred split list
        p1 = pfn_to_page(m, f.pfn + 1)
        p2 = pfn_to_page(m, f.pfn + 2)
        t.put(p1, "struct page", "compound_dtor", m.enum("TRANSHUGE_PAGE_DTOR"))
        t.put(p1, "struct page", "compound_order", f.order)
        t.put(p1, "struct page", "compound_mapcount", f.mapcount - 1)
        t.put(p1, "struct page", "compound_nr", nr)
        t.put(p2, "struct page", "hpage_pinned_refcount", f.pins)
        dl = p2 + t.offsetof("struct page", "deferred_list")
        t.put(p2, "struct page", "deferred_list.next", dl)
        t.put(p2, "struct page", "deferred_list.prev", dl)
    elif m.k.version == "6.1":
        p1 = pfn_to_page(m, f.pfn + 1)
        p2 = pfn_to_page(m, f.pfn + 2)
        t.put(p1, "struct page", "compound_dtor", m.enum("TRANSHUGE_PAGE_DTOR"))
        t.put(p1, "struct page", "compound_order", f.order)
        t.put(p1, "struct page", "compound_mapcount", f.mapcount - 1)
        t.put(p1, "struct page", "compound_pincount", f.pins)
        t.put(p1, "struct page", "compound_nr", nr)
        dl = p2 + t.offsetof("struct page", "deferred_list")
        t.put(p2, "struct page", "deferred_list.next", dl)
        t.put(p2, "struct page", "deferred_list.prev", dl)
    else:
        fo = "struct folio"
        flags1 = (1 << m.enum("PG_large_rmappable")) | f.order
        cur = t.get(head, fo, "_flags_1")
        t.put(head, fo, "_flags_1", cur | flags1)
        t.put(head, fo, "_large_mapcount", f.mapcount - 1)
        t.put(head, fo, "_entire_mapcount", f.mapcount - 1)
        # a PMD mapping counts as ENTIRELY_MAPPED (0x800000) in _nr_pages_mapped
        t.put(head, fo, "_nr_pages_mapped", 0x800000 if f.mapcount else 0)
        t.put(head, fo, "_pincount", f.pins)
        if t.has_member(fo, "_folio_nr_pages"):
            t.put(head, fo, "_folio_nr_pages", nr)
        if t.has_member(fo, "_nr_pages"):
            t.put(head, fo, "_nr_pages", nr)
        if t.has_member(fo, "_mm_ids"):
            # CONFIG_MM_ID (6.15+): the one mm that maps the folio in slot 0
            mapped = f.mapcount > 0
            t.put(head, fo, "_mm_id[0]", 1 if mapped else 0)
            t.put(head, fo, "_mm_id_mapcount[0]", f.mapcount - 1)
            t.put(head, fo, "_mm_id_mapcount[1]", -1)
        dl = head + t.offsetof(fo, "_deferred_list")
        t.put(head, fo, "_deferred_list.next", dl)
        t.put(head, fo, "_deferred_list.prev", dl)
