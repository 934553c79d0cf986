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
from pinspect.kernel import probe
from pinspect.pinner import pinner_mask
from pinspect.places import Places
from pinspect.scan import PageChunk, ScanStats, clip_ranges, iter_chunks, outside, valid_ranges
from pinspect.summary import ZonePins, summarize, zone_counts
from pinspect.zones import zones


@dataclass(slots=True)
class PinnedPage:
    """One pinned small page or large folio (``struct page *`` of its head)."""

    pfn: int
    nr_pages: int
    node: int
    zone: str
    migratetype: str
    cma: str | None
    order: int
    refcount: int
    mapcount: int
    expected_refcount: int
    pins: int
    extra: int
    evidence: list[str]
    mapping: str
    flags: int
    lru: bool


@dataclass
class PinnedReport:
    """The result of :func:`find_pinned`."""

    pages: list[PinnedPage]
    scanned: int  # struct pages read
    unreadable: int  # struct pages that could not be read
    skipped_free: int = 0  # pages of free buddy blocks, not read
    summary: dict[str, object] = field(default_factory=dict)


def find_pinned(
    prog: Program,
    zone_names: Sequence[str] = (),
    nodes: Sequence[int] = (),
    pfn_range: tuple[int, int] | None = None,
    evidence: Iterable[str] = (),
    min_extra: int = 1,
    progress: Callable[[int, int], None] | None = None,
    cma: str | None = None,
) -> PinnedReport:
    """Scan memory and return the pinned pages, optionally only in some zones, nodes or pfns,
    or in the CMA area called *cma* (only its pages are read).

    *evidence* keeps pages with at least one of the given kinds (``foll_pin``, ``extra``,
    ``pinner``); empty keeps all. *progress* is called with (pages done, pages in total).
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
    return PinnedReport(pages=pages, scanned=stats.pages, unreadable=stats.unreadable,
                        skipped_free=skipped_free, summary=summarize(pages))


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
    """Per-zone counts of pinned pages (all evidence), and the report they come from."""
    kernel = probe(prog)
    report = find_pinned(prog, progress=progress)
    return [zone_counts(zone, report.pages) for zone in zones(kernel)], report
