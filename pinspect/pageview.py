"""The one-page view: everything pinspect knows about one page and its folio."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from drgn import Program

from pinspect.evidence import FlagMasks, evaluate_chunk
from pinspect.features import Feature
from pinspect.holders import HeldRef
from pinspect.kernel import Kernel, page_type_name, probe
from pinspect.owner import OwnerRecord, owner_records
from pinspect.pinner import PinnerPage, pinner_mask, pinner_records
from pinspect.places import Places
from pinspect.report import PinnedPage, attach_mappers, rows
from pinspect.rmap import Mapper
from pinspect.scan import PageChunk, read_page_bytes, struct_page_address


@dataclass
class PageVerdict:
    """Everything pinspect knows about one page (``struct page``) and its folio
    (``struct folio``): the fields of ``page``'s JSON document."""

    pfn: int  # page frame number
    phys: int  # physical address: pfn << PAGE_SHIFT
    page: int  # address of the struct page
    head_pfn: int  # pfn of the folio's head (pfn itself for a head or small page)
    state: str  # mapping kind, or free/slab/reserved/page type name
    node: int  # NUMA node
    zone: str  # struct zone .name
    migratetype: str  # of the pageblock
    cma: str | None  # struct cma .name of the CMA area holding the pfn
    raw: dict[str, int]  # raw struct page words: flags, compound_head, mapping, index, ...
    flags: int  # page->flags
    flag_names: str  # the PG_* flags set, joined with |
    folio: PinnedPage | None  # the head's verdict (empty evidence: not pinned); None if free
    owner: OwnerRecord | None = None  # page_owner's record of this pfn
    owner_unreadable: bool = False  # its page_ext entry could not be read
    pinner: PinnerPage | None = None  # page_pinner's record of this pfn (and its ring records)
    sources: list[Feature] = field(default_factory=list)  # page_owner present/off/absent
    warnings: list[str] = field(default_factory=list)
    # Every process mapping the folio and every kernel object holding its references
    # (also in ``folio.mappers``/``folio.holders``); empty for a free page.
    mappers: list[Mapper] = field(default_factory=list)
    holders: list[HeldRef] = field(default_factory=list)


def _chunk(kernel: Kernel, pfn: int, count: int) -> PageChunk:
    """The struct pages of *count* pfns from *pfn* (fewer at the end of a valid range)."""
    data = read_page_bytes(kernel, pfn, count)
    return PageChunk(kernel, pfn, np.frombuffer(data, dtype=np.uint8))


def inspect_page(prog: Program, pfn: int) -> PageVerdict:
    """Read one page (``struct page`` of *pfn*) and judge its folio like
    :func:`pinspect.report.find_pinned` does.

    The page and its first neighbour are read at once; a tail page's folio is read from its
    head, once its order is known.
    """
    kernel = probe(prog)
    layout = kernel.layout
    masks = FlagMasks.of(kernel)
    chunk = _chunk(kernel, pfn, 2)
    raw = {
        "flags": int(chunk.flags[0]),
        "compound_head": int(chunk.compound_head[0]),
        "mapping": int(chunk.mapping[0]),
        "index": int(chunk.column(layout.index, "<u8")[0]),
        "private": int(chunk.column(layout.private, "<u8")[0]),
        "_mapcount": int(chunk.mapcount[0]),
        "_refcount": int(chunk.refcount[0]),
    }
    address = struct_page_address(kernel, pfn)
    head_pfn = pfn
    info = raw["compound_head"]
    if info & 1:
        head = address & info if layout.tail_info_is_mask else info - 1
        head_pfn = pfn - (address - head) // layout.size
        chunk = _chunk(kernel, head_pfn, 2)
    if chunk.flags[0] & np.uint64(masks.head) and chunk.n > 1:
        # The folio's order lives in its first tail page.
        order = int(chunk.raw[layout.folio.order])
        if (1 << order) > chunk.n:
            chunk = _chunk(kernel, head_pfn, 1 << order)
    found = evaluate_chunk(kernel, chunk, masks, pinner_mask(kernel), report_all=True)
    places = Places(kernel)
    folio_rows = list(rows(chunk, found, places, keep_unpinned=True))
    folio = folio_rows[0] if folio_rows and folio_rows[0].pfn == head_pfn else None
    flags = raw["flags"]
    state = _page_state(kernel, raw, masks, folio)
    zone = places.locator.locate(pfn, flags)
    area = places.cma.find(pfn)
    owners = owner_records(prog, {pfn, head_pfn})
    pinners = pinner_records(prog, {pfn, head_pfn}) if kernel.pinner_variant else None
    warnings = owners.warnings() + (pinners.warnings() if pinners else [])
    if folio is not None:
        folio.owner = owners.records.get(head_pfn)
        folio.pinner = pinners.pages.get(head_pfn) if pinners else None
        warnings += attach_mappers(prog, [folio]).warnings
    return PageVerdict(
        pfn=pfn,
        phys=pfn << kernel.page_shift,
        page=address,
        head_pfn=head_pfn,
        state=state,
        node=zone.node if zone else -1,
        zone=zone.name if zone else "unknown",
        migratetype=places.blocks.name(pfn),
        cma=area.name if area else None,
        raw=raw,
        flags=flags,
        flag_names=kernel.flags.decode(flags),
        folio=folio,
        owner=owners.records.get(pfn),
        owner_unreadable=bool(owners.unreadable) and pfn not in owners.records,
        pinner=pinners.pages.get(pfn) if pinners else None,
        sources=[owners.feature] + ([pinners.feature] if pinners else []),
        warnings=warnings,
        mappers=list(folio.mappers or []) if folio is not None else [],
        holders=list(folio.holders or []) if folio is not None else [],
    )


def _page_state(kernel: Kernel, raw: dict[str, int], masks: FlagMasks,
                verdict: PinnedPage | None) -> str:
    """What the page is: a tail, free, a page type, reserved, slab, or its mapping kind."""
    flags = raw["flags"]
    if raw["compound_head"] & 1:
        return "tail of a large folio"
    page_type = page_type_name(kernel, raw["_mapcount"])
    if page_type is not None:
        return "free (buddy)" if page_type == "buddy" else page_type
    if flags & masks.reserved:
        return "reserved"
    if flags & masks.slab:
        return "slab"
    if raw["_refcount"] == 0:
        return "free"
    if verdict is not None:
        return verdict.mapping
    return "in use"
