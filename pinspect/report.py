"""The report of pinned pages: run a scan, judge every chunk, build one row per pinned folio.

:func:`find_pinned` scans pages in bulk (:mod:`pinspect.scan`), judges them
(:mod:`pinspect.evidence`) and returns one :class:`PinnedPage` per pinned small page or large
folio; :func:`zone_pins` counts them per zone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from drgn import Program

from pinspect.buddy import free_blocks
from pinspect.cma import area_named
from pinspect.errors import FeatureMissing
from pinspect.evidence import EVIDENCE_KINDS, KIND_NAMES, Candidates, FlagMasks, evaluate_chunk
from pinspect.features import Feature
from pinspect.holders import HeldRef, find_holders
from pinspect.kernel import probe
from pinspect.owner import OwnerRecord, owner_records
from pinspect.pinner import PinnerPage, pinner_mask, pinner_records
from pinspect.places import Places
from pinspect.rmap import Mapper, reverse_map
from pinspect.scan import PageChunk, ScanStats, clip_ranges, iter_chunks, outside, valid_ranges
from pinspect.stackdepot import Stack
from pinspect.summary import ZonePins, summarize, zone_counts
from pinspect.zones import zones


@dataclass(slots=True)
class PinnedPage:
    """One pinned small page or large folio (``struct folio``), read from the ``struct page``
    of its head; the fields are those of ``pinned``'s JSON page objects."""

    pfn: int  # page frame number of the (head) page
    nr_pages: int  # base pages in the folio: 1 << order
    node: int  # NUMA node (page->flags)
    zone: str  # struct zone .name: DMA, DMA32, Normal, Movable, ...
    migratetype: str  # of the pageblock (pageblock_flags): Unmovable, Movable, CMA, ...
    cma: str | None  # struct cma .name of the CMA area holding the pfn
    order: int  # folio_order()
    refcount: int  # page->_refcount of the head
    mapcount: int  # folio_mapcount(): page-table mappings, each holding a reference
    expected_refcount: int  # references an idle, unpinned folio of this kind holds
    pins: int  # FOLL_PIN pins: folio->_pincount, or (refcount - expected) >> 10
    extra: int  # references beyond expected_refcount that FOLL_PIN does not explain
    evidence: list[str]  # subset of foll_pin, extra, pinner (page_ext page_pinner flag)
    mapping: str  # anon, ksm, shmem, file, hugetlb, none (kernel page), movable_ops
    flags: int  # raw page->flags of the head
    lru: bool  # PG_lru is set
    owner: OwnerRecord | None = None  # page_owner's record of the (head) page
    pinner: PinnerPage | None = None  # page_pinner's record of the (head) page
    # Who maps the folio now (reverse map) and which kernel objects hold its references
    # (attach_mappers); None where they were not looked up.
    mappers: list[Mapper] | None = None
    holders: list[HeldRef] | None = None
    unexplained_pins: int | None = None  # pins no holder accounts for
    unexplained_extra: int | None = None  # extra references no holder accounts for

    def stack_source(self) -> tuple[Stack | None, str]:
        """The stack that best says who holds the page, and its source: page_pinner's when
        present, page_owner's allocation stack otherwise."""
        if self.pinner is not None:
            stack, source = self.pinner.best_stack
            if stack is not None:
                return stack, source
        if self.owner is not None and self.owner.stack is not None:
            return self.owner.stack, "page_owner"
        return None, ""


@dataclass
class PinnedReport:
    """The result of :func:`find_pinned`: the pinned folios and what the scan covered."""

    pages: list[PinnedPage]  # one per pinned folio, by pfn
    scanned: int  # struct pages read
    unreadable: int  # struct pages that could not be read
    skipped_free: int = 0  # pages of free buddy blocks, not read
    summary: dict[str, object] = field(default_factory=dict)  # pages, folios, by_evidence, by_zone
    # The record sources read for the pages (page_owner, ...): present, off or absent.
    sources: list[Feature] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # counted problems, one line each
    # The reverse map and holders' summary (attach_mappers); None where not looked up.
    rmap: RmapSummary | None = None


@dataclass
class RmapSummary:
    """What :func:`attach_mappers` found and missed, over all reported folios."""

    folios: int  # folios looked up
    with_mappers: int  # folios with at least one mapper found
    unresolved: int  # folios with page-table mappings none of which was found
    no_process: int  # mappers whose mm has no process (exiting, or a broken task list)
    unexplained_pins: int  # pins no holder accounts for, summed over folios
    unexplained_extra: int  # extra references no holder accounts for
    transient: int  # extra references held by LRU batches (drained by the kernel soon)
    holders: list[str]  # the holder modules that ran
    warnings: list[str]  # counted failed reads, loops and cut walks


def attach_mappers(prog: Program, pages: Sequence[PinnedPage]) -> RmapSummary:
    """Set each page's ``mappers`` (the reverse map, :mod:`pinspect.rmap`), ``holders``
    (:mod:`pinspect.holders`) and the pins and extra references no holder accounts for.
    Holders run first: io_uring rings tell which mm flag bit is MMF_HAS_PINNED."""
    held = find_holders(prog, [(p.pfn, p.nr_pages) for p in pages])
    rmap = reverse_map(prog, [(p.pfn, p.nr_pages, p.mapcount) for p in pages])
    if rmap.unavailable:
        rmap.unresolved = sum(p.mapcount > 0 for p in pages)
    no_process = transient = unexplained_pins = unexplained_extra = with_mappers = 0
    for page in pages:
        page.mappers = rmap.mappers.get(page.pfn, [])
        page.holders = held.held.get(page.pfn, [])
        with_mappers += bool(page.mappers)
        no_process += sum(m.pid is None for m in page.mappers)
        pins = sum(h.count for h in page.holders if h.counts_as == "pin")
        refs = sum(h.count for h in page.holders if h.counts_as == "ref")
        transient += sum(h.count for h in page.holders if h.transient)
        page.unexplained_pins = max(0, page.pins - pins)
        page.unexplained_extra = max(0, page.extra - refs)
        unexplained_pins += page.unexplained_pins
        unexplained_extra += page.unexplained_extra
    return RmapSummary(len(pages), with_mappers, rmap.unresolved, no_process, unexplained_pins,
                       unexplained_extra, transient, held.holders,
                       rmap.warnings() + held.problems.lines())


def holder_text(page: PinnedPage) -> str:
    """The holders of a page as one line: ``io_uring(pid 96 fd 5) x1, pipe(...) x1``, and
    what no holder explains (``unexplained pins x1``)."""
    parts = [f"{h.holder} x{h.count}" for h in page.holders or ()]
    if page.unexplained_pins:
        parts.append(f"unexplained pins x{page.unexplained_pins}")
    if page.unexplained_extra:
        parts.append(f"unexplained x{page.unexplained_extra}")
    return ", ".join(parts)


def attach_owners(prog: Program, pages: Sequence[PinnedPage]) -> tuple[Feature, list[str]]:
    """Read the page_owner records of *pages* in bulk and set each page's ``owner``; returns
    page_owner's state and the counted problems."""
    found = owner_records(prog, [p.pfn for p in pages])
    for page in pages:
        page.owner = found.records.get(page.pfn)
    return found.feature, found.warnings()


def attach_pinners(prog: Program, pages: Sequence[PinnedPage]) -> tuple[Feature, list[str]]:
    """Read the page_pinner records of *pages* in bulk (with their ring buffer records) and
    set each page's ``pinner``; returns page_pinner's state and the counted problems."""
    found = pinner_records(prog, [p.pfn for p in pages])
    for page in pages:
        page.pinner = found.pages.get(page.pfn)
    return found.feature, found.warnings()


def find_pinned(
    prog: Program,
    zone_names: Sequence[str] = (),
    nodes: Sequence[int] = (),
    pfn_range: tuple[int, int] | None = None,
    evidence: Iterable[str] = (),
    min_extra: int = 1,
    progress: Callable[[int, int], None] | None = None,
    owners: bool = True,
    cma: str | None = None,
    mappers: bool = False,
) -> PinnedReport:
    """Scan memory and return the pinned pages, optionally only in some zones, nodes or pfns,
    or in the CMA area called *cma* (only its pages are read).

    Reads the ``struct page`` array (``vmemmap`` or ``mem_map``) in bulk and judges every
    in-use page by the kernel's rules: ``folio_maybe_dma_pinned()`` for FOLL_PIN, the
    references migration expects (``folio_expected_refs()``) for extra references, and the
    page_pinner flags in ``struct page_ext``. *zone_names* are ``struct zone`` names, *nodes*
    NUMA node ids, *pfn_range* a half-open ``(start, end)``.

    *evidence* keeps pages with at least one of the given kinds (``foll_pin``, ``extra``,
    ``pinner``); empty keeps all. *progress* is called with (pages done, pages in total).
    With *owners*, each page gets its page_owner record and, on a kernel with page_pinner, its
    page_pinner record (read for the reported pages only); with *mappers*, its mappers and
    holders (:func:`attach_mappers`).
    """
    kernel = probe(prog)
    kernel.check_layout()
    wanted = set(evidence)
    unknown = wanted - set(EVIDENCE_KINDS)
    if unknown:
        raise ValueError(f"unknown evidence kind(s): {', '.join(sorted(unknown))}")
    all_zones = zones(kernel)
    chosen = [z for z in all_zones
              if (not zone_names or z.name.lower() in {n.lower() for n in zone_names})
              and (not nodes or z.node in nodes)]
    if zone_names and not chosen:
        names = sorted({z.name for z in all_zones})
        raise FeatureMissing(f"no zone named {', '.join(zone_names)} on this system",
                             f"zones here: {', '.join(names)}")
    windows = [(z.start_pfn, z.end_pfn) for z in chosen]
    if pfn_range is not None:
        windows = [(max(lo, pfn_range[0]), min(hi, pfn_range[1])) for lo, hi in windows]
        windows = [w for w in windows if w[0] < w[1]]
    if cma is not None:
        areas = [(r.base_pfn, r.end_pfn) for r in area_named(kernel, cma).ranges]
        windows = [(max(lo, a_lo), min(hi, a_hi)) for lo, hi in windows for a_lo, a_hi in areas]
        windows = [w for w in windows if w[0] < w[1]]
    ranges = clip_ranges(valid_ranges(kernel), windows)
    # Free buddy blocks hold no references: their struct pages need not be read (dumps only).
    free = free_blocks(kernel)
    free_ends = [end for _, end in free]
    total = sum(hi - lo for start, end, _ in ranges
                for lo, hi in outside(start, end, free, free_ends))
    skipped_free = sum(end - start for start, end, _ in ranges) - total

    pin_mask = pinner_mask(kernel) if not wanted or "pinner" in wanted else 0
    if "pinner" in wanted and not pin_mask:
        raise FeatureMissing("this kernel has no page_pinner flags to read",
                             "page_pinner is an Android common kernel feature "
                             "(CONFIG_PAGE_PINNER, boot with page_pinner=on)")
    masks = FlagMasks.of(kernel)
    places = Places(kernel)
    chosen_keys = {(z.node, z.name) for z in chosen}
    stats = ScanStats()
    pages: list[PinnedPage] = []
    done = 0
    for chunk in iter_chunks(kernel, ranges, stats, skip=free):
        done += sum(hi - lo for lo, hi in chunk.read_spans())
        if progress is not None:
            progress(min(done, total), total)
        found = evaluate_chunk(kernel, chunk, masks, pin_mask, min_extra)
        for row in rows(chunk, found, places, min_extra):
            if (zone_names or nodes) and (row.node, row.zone) not in chosen_keys:
                continue
            if wanted and not wanted & set(row.evidence):
                continue
            if cma is not None and row.cma != cma:
                continue
            pages.append(row)
    if progress is not None:
        progress(total, total)
    report = PinnedReport(pages=pages, scanned=stats.pages, unreadable=stats.unreadable,
                          skipped_free=skipped_free, summary=summarize(pages))
    if owners:
        feature, warnings = attach_owners(prog, pages)
        report.sources.append(feature)
        report.warnings += warnings
        if kernel.pinner_variant is not None:
            feature, warnings = attach_pinners(prog, pages)
            report.sources.append(feature)
            report.warnings += warnings
    if mappers:
        report.rmap = attach_mappers(prog, pages)
    return report


def rows(chunk: PageChunk, found: Candidates, places: Places, min_extra: int = 1,
         keep_unpinned: bool = False) -> Iterable[PinnedPage]:
    """The :class:`PinnedPage` of each candidate *found* in *chunk* that has evidence (with
    *keep_unpinned*: of each candidate)."""
    lru_mask = chunk.kernel.flags.mask("PG_lru")
    # Python ints and bools once per column, not a numpy scalar per field.
    columns = zip(found.index.tolist(), found.flags.tolist(), found.foll_pin.tolist(),
                  found.extra.tolist(), found.pinner.tolist(), found.order.tolist(),
                  found.refcount.tolist(), found.mapcount.tolist(), found.expected.tolist(),
                  found.pins.tolist(), found.kind.tolist(), strict=True)
    for (index, flags, foll_pin, extra, pinner, order, refcount, mapcount, expected, pins,
         kind) in columns:
        evidence = []
        if foll_pin:
            evidence.append("foll_pin")
        if extra > 0 and extra >= min_extra:
            evidence.append("extra")
        if pinner:
            evidence.append("pinner")
        if not evidence and not keep_unpinned:
            continue
        pfn = chunk.start_pfn + index
        node, zone, migratetype, area = places.of(pfn, flags)
        yield PinnedPage(pfn, 1 << order, node, zone, migratetype, area, order, refcount,
                         mapcount, expected, pins, extra, evidence, KIND_NAMES[kind], flags,
                         bool(flags & lru_mask))


def zone_pins(prog: Program, progress: Callable[[int, int], None] | None = None
              ) -> tuple[list[ZonePins], PinnedReport]:
    """Per-zone counts of pinned pages (all evidence), and the report they come from.

    One :class:`~pinspect.summary.ZonePins` per populated ``struct zone`` of every node
    (``pglist_data.node_zones``), in node and zone order."""
    kernel = probe(prog)
    report = find_pinned(prog, progress=progress, owners=False)
    return [zone_counts(zone, report.pages) for zone in zones(kernel)], report
