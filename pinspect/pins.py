"""Pin evidence per page: FOLL_PIN counts, references beyond the expected count, page_pinner.

:func:`find_pinned` scans pages in bulk (:mod:`pinspect.scan`) and returns one
:class:`PinnedPage` per pinned small page or large folio. The rules follow the kernel's own
(``folio_maybe_dma_pinned()``, ``folio_expected_ref_count()``); README.md states them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from drgn import Program
from numpy.lib.stride_tricks import sliding_window_view

from pinspect import constants
from pinspect.buddy import free_blocks
from pinspect.cma import CmaLocator
from pinspect.errors import FeatureMissing
from pinspect.kernel import Kernel, probe
from pinspect.pageext import flags_words, pinner_mask
from pinspect.scan import PageChunk, ScanStats, clip_ranges, iter_chunks, outside, valid_ranges
from pinspect.zones import PageblockReader, Zone, ZoneLocator, zones

EVIDENCE_KINDS = ("foll_pin", "extra", "pinner")
BIAS = constants.GUP_PIN_COUNTING_BIAS
MAX_FOLIO_ORDER = 24


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


@dataclass
class _Masks:
    """Page flag masks, computed once per kernel."""

    head: int
    lru: int
    private: int
    swapbacked: int
    swapcache: int
    reserved: int
    slab: int
    double_map: int

    @classmethod
    def of(cls, kernel: Kernel) -> _Masks:
        f = kernel.flags
        return cls(
            head=f.mask("PG_head"),
            lru=f.mask("PG_lru"),
            private=f.mask("PG_private"),
            swapbacked=f.mask("PG_swapbacked"),
            swapcache=f.mask("PG_swapcache"),
            reserved=f.mask("PG_reserved"),
            slab=f.mask("PG_slab"),
            double_map=f.mask("PG_double_map"),
        )


# Mapping kinds, as small integers in the bulk arrays.
KIND_NONE, KIND_ANON, KIND_KSM, KIND_FILE, KIND_SHMEM, KIND_MOVABLE_OPS, KIND_HUGETLB = range(7)
KIND_NAMES = ["none", "anon", "ksm", "file", "shmem", "movable_ops", "hugetlb"]


@dataclass
class Candidates:
    """Per-candidate columns of one chunk (indices into the chunk)."""

    index: np.ndarray
    order: np.ndarray
    refcount: np.ndarray
    mapcount: np.ndarray
    expected: np.ndarray
    pins: np.ndarray
    extra: np.ndarray
    kind: np.ndarray
    flags: np.ndarray
    foll_pin: np.ndarray
    pinner: np.ndarray


def _kinds(mapping: np.ndarray, flags: np.ndarray, masks: _Masks) -> np.ndarray:
    low = mapping & np.uint64(constants.PAGE_MAPPING_FLAGS)
    kind = np.full(len(mapping), KIND_NONE, dtype=np.int8)
    kind[low == constants.PAGE_MAPPING_ANON] = KIND_ANON
    kind[low == constants.PAGE_MAPPING_KSM] = KIND_KSM
    kind[low == constants.PAGE_MAPPING_MOVABLE] = KIND_MOVABLE_OPS
    is_file = (low == 0) & (mapping != 0)
    swapbacked = (flags & np.uint64(masks.swapbacked)) != 0
    kind[is_file & ~swapbacked] = KIND_FILE
    kind[is_file & swapbacked] = KIND_SHMEM
    return kind


def _has_type(kernel: Kernel, page_type: np.ndarray, name: str) -> np.ndarray:
    """Which pages carry page type *name* (``page->page_type``, as int64 of the s32)."""
    value = kernel.page_types.get(name)
    if value is None:
        return np.zeros(len(page_type), dtype=bool)
    raw = page_type & 0xFFFFFFFF
    if kernel.page_types_in_top_byte:
        return (raw >> 24) == value
    base = constants.PAGE_TYPE_BASE
    return (raw & (base | value)) == base


def _hugetlb_heads(chunk: PageChunk, hidx: np.ndarray, head_type: np.ndarray) -> np.ndarray:
    """Which large folio heads (*head_type*: their page types) are hugetlb folios, by whichever
    marker this kernel uses."""
    kernel = chunk.kernel
    folio = kernel.layout.folio
    if folio.dtor is not None and folio.hugetlb_dtor is not None:
        # Up to 6.8: compound_dtor / _folio_dtor == HUGETLB_PAGE_DTOR.
        return chunk.at(hidx, folio.dtor, "u1") == folio.hugetlb_dtor
    flag = kernel.flags.mask("PG_hugetlb")
    if flag:  # 6.9: PG_hugetlb on the first tail page
        first_tail = chunk.at(hidx, kernel.layout.size + kernel.layout.flags, "<u8")
        return (first_tail & np.uint64(flag)) != 0
    return _has_type(kernel, head_type, "hugetlb")  # 6.10+: a page type


def evaluate_chunk(
    kernel: Kernel, chunk: PageChunk, masks: _Masks, pin_mask: int, min_extra: int = 1,
    report_all: bool = False,
) -> Candidates:
    """Decide, for every page of *chunk*, whether it is pinned; return the pinned ones.

    With *report_all*, return every in-use head or small page, pinned or not.
    """
    layout = kernel.layout
    folio = layout.folio
    # Only pages that pass a cheap necessary condition are decoded further.
    if report_all or min_extra < _MIN_PREFILTERED_EXTRA:
        idx = chunk.indices()
    else:
        idx = _maybe_reported(chunk, masks, min_extra)
    pinner_words = None
    if pin_mask:
        words, _ = flags_words(kernel, chunk.start_pfn, chunk.n)
        pinner_words = (words & np.uint64(pin_mask)) != 0
        flagged = np.flatnonzero(pinner_words)
        flagged = flagged[chunk.was_read(flagged)]
        if len(flagged):
            idx = np.sort(np.concatenate([idx, flagged]))
            idx = idx[np.concatenate([[True], idx[1:] != idx[:-1]])]
    flags = chunk.flags[idx]
    refcount = chunk.refcount[idx].astype(np.int64)
    mapcount_raw = chunk.mapcount[idx].astype(np.int64)
    tail = (chunk.compound_head[idx] & np.uint64(1)) != 0
    typed = mapcount_raw <= constants.PAGE_MAPCOUNT_RESERVE
    # 6.10+ marks hugetlb folios with a page type; they are still user memory.
    typed &= ~_has_type(kernel, mapcount_raw, "hugetlb")
    not_movable = np.uint64(masks.reserved | masks.slab)
    live = (refcount > 0) & ~tail & ~typed & ((flags & not_movable) == 0)

    pinner = np.zeros(len(idx), dtype=bool)
    if pinner_words is not None:
        pinner = pinner_words[idx] & ~tail  # a folio is reported once, at its head

    keep = np.flatnonzero(live | pinner)
    if len(keep) == 0:
        return _empty()
    idx = idx[keep]
    flags_c = flags[keep]
    mapping_c = chunk.mapping[idx]
    kind = _kinds(mapping_c, flags_c, masks)
    ref = refcount[keep]
    raw_c = mapcount_raw[keep]
    mapcount = np.where(raw_c < -1, 0, raw_c + 1)
    head = (flags_c & np.uint64(masks.head)) != 0
    order = np.zeros(len(idx), dtype=np.int64)
    pincount = np.full(len(idx), -1, dtype=np.int64)  # -1: this folio has no exact counter
    hugetlb = np.zeros(len(idx), dtype=bool)

    if head.any():
        hidx = idx[head]
        horder = chunk.at(hidx, folio.order, "u1").astype(np.int64)
        # No folio is larger than a PUD (order 18 with 4 KiB pages); a larger value is a
        # corrupted struct page, judged as a small page rather than trusted.
        horder = np.where(horder <= MAX_FOLIO_ORDER, horder, 0)
        order[head] = horder
        hhuge = _hugetlb_heads(chunk, hidx, raw_c[head])
        hugetlb[head] = hhuge
        mapcount[head] = _large_mapcount(chunk, hidx, horder, kind[head], hhuge, masks)
        if folio.pincount is not None:
            exact = horder >= folio.pincount_min_order
            counts = chunk.at(hidx, folio.pincount, "<i4").astype(np.int64)
            pincount[head] = np.where(exact, counts, -1)

    nr_pages = np.int64(1) << order
    swapcache = ((flags_c & np.uint64(masks.swapbacked)) != 0) & \
        ((flags_c & np.uint64(masks.swapcache)) != 0) & (kind == KIND_ANON)
    cached = (kind == KIND_FILE) | (kind == KIND_SHMEM) | swapcache
    private = ((flags_c & np.uint64(masks.private)) != 0).astype(np.int64)
    user = (kind == KIND_ANON) | (kind == KIND_KSM) | (kind == KIND_FILE) | \
        (kind == KIND_SHMEM) | hugetlb
    # The page cache holds one reference per base page, but a single one for a hugetlb
    # folio (hugetlb migration expects 2 = caller + page cache); a kernel page with no
    # mapping still has its allocation's own reference.
    cache_refs = np.where(hugetlb, 1, nr_pages)
    expected = mapcount + np.where(cached, cache_refs, 0) + np.where(hugetlb, 0, private) + \
        np.where(kind == KIND_NONE, 1, 0)
    kind = np.where(hugetlb, KIND_HUGETLB, kind).astype(np.int8)
    diff = ref - expected

    exact = pincount >= 0
    bias_pins = np.where(ref >= BIAS, np.maximum(diff, 0) // BIAS, 0)
    pins = np.where(exact, np.maximum(pincount, 0), bias_pins)
    pin_refs = np.where(exact, pins, pins * BIAS)
    foll_pin = np.where(exact, pincount > 0, ref >= BIAS) & (kind != KIND_MOVABLE_OPS)
    extra = np.where(user, diff - pin_refs, 0)

    pinned_pinner = pinner[keep]
    report = foll_pin | (user & (extra >= min_extra)) | pinned_pinner | report_all
    sel = np.flatnonzero(report)
    return Candidates(
        index=idx[sel],
        order=order[sel],
        refcount=ref[sel],
        mapcount=mapcount[sel],
        expected=expected[sel],
        pins=np.where(foll_pin, pins, 0)[sel],
        extra=extra[sel],
        kind=kind[sel],
        flags=flags_c[sel],
        foll_pin=foll_pin[sel],
        pinner=pinned_pinner[sel],
    )


# Below this min_extra, _maybe_reported's 32-bit test could wrap: every page is decoded.
_MIN_PREFILTERED_EXTRA = -(1 << 30)
# Pages per strided copy in _maybe_reported: their struct pages (512 KiB on x86_64) stay in
# the L2 cache while the fields of the test are copied out.
_PREFILTER_PAGES = 1 << 13


def _maybe_reported(chunk: PageChunk, masks: _Masks, min_extra: int) -> np.ndarray:
    """Indices of the pages :func:`evaluate_chunk` could report (a superset), found cheaply.

    Large folio heads always pass: their counts are in their tail pages. A small page has
    ``foll_pin`` only with ``_refcount >= GUP_PIN_COUNTING_BIAS``, and ``extra >= min_extra``
    only if ``_refcount - mapcount - cache >= min_extra``, where ``cache`` is 1 when the low
    bits of ``mapping`` are clear (page cache, or a kernel page that is never ``extra``):
    its expected count is at least ``mapcount + cache`` and pins only lower ``extra``.
    The test is 32-bit; ``_refcount - _mapcount`` can wrap only for a page type (never
    reported) or a refcount near 2**31 (which passes as >= the bias).

    What this costs is fetching each struct page once and the number of numpy passes: the
    four fields of the pages read are copied out block by block (while the block's struct
    pages are in the cache) into contiguous arrays, then tested over the whole chunk in place.
    """
    layout = chunk.kernel.layout
    if not masks.head:
        return chunk.indices()
    head_bit = masks.head.bit_length() - 1
    spans = chunk.read_spans()
    n = sum(hi - lo for lo, hi in spans)  # the fields are packed: span after span
    sources = (chunk.mapcount, chunk.refcount, chunk.column(layout.mapping, "u1"),
               chunk.column(layout.flags + head_bit // 8, "u1"))
    mapcounts, refcounts, mapping_bytes, flags_bytes = packed = (
        np.empty(n, dtype="<i4"), np.empty(n, dtype="<i4"), np.empty(n, dtype=np.uint8),
        np.empty(n, dtype=np.uint8))
    starts = []  # packed position of each span
    position = 0
    for lo, hi in spans:
        starts.append(position)
        for start in range(lo, hi, _PREFILTER_PAGES):
            stop = min(hi, start + _PREFILTER_PAGES)
            out = slice(position, position + stop - start)
            for source, target in zip(sources, packed, strict=True):
                target[out] = source[start:stop]
            position += stop - start
    slack = np.subtract(refcounts, mapcounts, out=mapcounts)  # = _refcount - mapcount + 1
    np.bitwise_and(mapping_bytes, 3, out=mapping_bytes)
    np.subtract(slack, mapping_bytes == 0, out=slack, casting="unsafe")
    maybe = slack > min(min_extra, (1 << 31) - 2)
    np.logical_or(maybe, refcounts >= BIAS, out=maybe)
    np.bitwise_and(flags_bytes, np.uint8(1 << head_bit % 8), out=flags_bytes)
    np.logical_or(maybe, flags_bytes.view(bool), out=maybe)
    found = np.flatnonzero(maybe)
    if chunk.spans is None:
        return found
    # Packed positions back to chunk indices: add each span's offset.
    span = np.searchsorted(np.array(starts), found, side="right") - 1
    return found + (np.array([lo for lo, _ in spans]) - np.array(starts))[span]


def _large_mapcount(chunk: PageChunk, hidx: np.ndarray, horder: np.ndarray, kind: np.ndarray,
                    hugetlb: np.ndarray, masks: _Masks) -> np.ndarray:
    """Page-table mappings of each large folio (what ``folio_mapcount()`` returns)."""
    folio = chunk.kernel.layout.folio
    if folio.large_mapcount is not None:  # 6.10+: one counter for the whole folio
        return chunk.at(hidx, folio.large_mapcount, "<i4").astype(np.int64) + 1
    entire = np.zeros(len(hidx), dtype=np.int64)
    if folio.entire_mapcount is not None:
        entire = chunk.at(hidx, folio.entire_mapcount, "<i4").astype(np.int64) + 1
    # Gigantic folios may reach past the chunk; only hugetlb ones are that large, and
    # hugetlb folios are mapped whole (entire mapcount only).
    nr = np.int64(1) << horder
    # Mappings per subpage, summed over the pages of each folio (hugetlb folios: none).
    lengths = np.where(hugetlb, 0, np.minimum(hidx + nr, chunk.n) - hidx)
    subpages = np.zeros(len(hidx), dtype=np.int64)
    # (a set, not np.unique(): that imports numpy.ma, 14 ms, on first use)
    for length in sorted(set(lengths[lengths > 0].tolist())):
        group = np.flatnonzero(lengths == length)
        subpages[group] = _subpage_mappings(
            sliding_window_view(chunk.mapcount, length)[hidx[group]])
    total = entire + subpages
    if folio.subpages_include_entire:
        # Up to 6.1: file THP subpages include the compound mappings in their _mapcount;
        # anon THP mapped by PMD and PTE at once add one per subpage (PG_double_map).
        file_like = ((kind == KIND_FILE) | (kind == KIND_SHMEM)) & ~hugetlb
        total = np.where(file_like, total - entire * nr, total)
        if masks.double_map:
            tail_flags = chunk.at(hidx, chunk.kernel.layout.size + chunk.kernel.layout.flags,
                                  "<u8")
            double = (tail_flags & np.uint64(masks.double_map)) != 0
            total = np.where(~file_like & ~hugetlb & double, total - nr, total)
    return total


def _subpage_mappings(mapcounts: np.ndarray) -> np.ndarray:
    """Per row of subpage ``_mapcount``\\ s: the sum of ``_mapcount + 1``, where a page type
    (below -1, only in a corrupted folio) counts none."""
    sums = mapcounts.sum(axis=1, dtype=np.int64) + mapcounts.shape[1]
    odd = mapcounts.min(axis=1) < -1
    if odd.any():
        sums[odd] = np.maximum(mapcounts[odd].astype(np.int64) + 1, 0).sum(axis=1)
    return sums


def _empty() -> Candidates:
    z = np.zeros(0, dtype=np.int64)
    return Candidates(z, z, z, z, z, z, z, z.astype(np.int8), z.astype(np.uint64),
                      z.astype(bool), z.astype(bool))


def parse_pfn_range(text: str) -> tuple[int, int]:
    """``START-END`` (inclusive, decimal or 0x hex) to a half-open ``(start, end)``."""
    start, sep, end = text.partition("-")
    try:
        lo = int(start, 0)
        hi = int(end, 0) + 1 if sep else lo + 1
    except ValueError as e:
        raise ValueError(f"bad pfn range {text!r}: use START-END, e.g. 0x100000-0x1fffff") from e
    if hi <= lo:
        raise ValueError(f"bad pfn range {text!r}: END is below START")
    return lo, hi


def find_pinned(
    prog: Program,
    zone_names: Sequence[str] = (),
    nodes: Sequence[int] = (),
    pfn_range: tuple[int, int] | None = None,
    evidence: Iterable[str] = (),
    min_extra: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> PinnedReport:
    """Scan memory and return the pinned pages, optionally only in some zones, nodes or pfns.

    *evidence* keeps pages with at least one of the given kinds (``foll_pin``, ``extra``,
    ``pinner``); empty keeps all. *progress* is called with (pages done, pages in total).
    """
    kernel = probe(prog)
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
    masks = _Masks.of(kernel)
    places = _Places(kernel, ZoneLocator(kernel), PageblockReader(kernel), CmaLocator(kernel))
    chosen_keys = {(z.node, z.name) for z in chosen}
    stats = ScanStats()
    pages: list[PinnedPage] = []
    done = 0
    for chunk in iter_chunks(kernel, ranges, stats, skip=free):
        done += sum(hi - lo for lo, hi in chunk.read_spans())
        if progress is not None:
            progress(min(done, total), total)
        found = evaluate_chunk(kernel, chunk, masks, pin_mask, min_extra)
        for row in _rows(chunk, found, places, min_extra):
            if (zone_names or nodes) and (row.node, row.zone) not in chosen_keys:
                continue
            if wanted and not wanted & set(row.evidence):
                continue
            pages.append(row)
    if progress is not None:
        progress(total, total)
    return PinnedReport(pages=pages, scanned=stats.pages, unreadable=stats.unreadable,
                        skipped_free=skipped_free, summary=summarize(pages))


class _Places:
    """Node, zone, pageblock migratetype and CMA area of pfns, worked out once per pageblock
    (and zone bits of ``page->flags``) where the whole pageblock lies in one zone and one
    CMA range or none."""

    def __init__(self, kernel: Kernel, locator: ZoneLocator, blocks: PageblockReader,
                 cma: CmaLocator) -> None:
        self.locator, self.blocks, self.cma = locator, blocks, cma
        self.order = kernel.pageblock_order
        layout = locator.layout
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
        zone = self.locator.locate(pfn, flags)
        area = self.cma.find(pfn)
        place = (zone.node if zone else -1, zone.name if zone else "unknown",
                 self.blocks.name(pfn), area.name if area else None)
        first = key[0] << self.order
        end = first + (1 << self.order)
        if zone is not None and zone.start_pfn <= first and end <= zone.end_pfn and \
                self.cma.uniform(first, end):
            self.known[key] = place
        return place


def _rows(chunk: PageChunk, found: Candidates, places: _Places, min_extra: int = 1,
          keep_unpinned: bool = False) -> Iterable[PinnedPage]:
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


def summarize(pages: Sequence[PinnedPage]) -> dict[str, object]:
    """Counts in base pages per evidence kind and per zone, and the number of folios."""
    by_evidence: Counter[str] = Counter()
    by_zone: Counter[str] = Counter()
    total = 0
    for page in pages:
        total += page.nr_pages
        by_zone[f"{page.node}:{page.zone}"] += page.nr_pages
        for kind in page.evidence:
            by_evidence[kind] += page.nr_pages
    return {
        "pages": total,
        "folios": len(pages),
        "by_evidence": {k: by_evidence.get(k, 0) for k in EVIDENCE_KINDS},
        "by_zone": dict(sorted(by_zone.items())),
    }


@dataclass
class ZonePins:
    """A zone (``struct zone``) with its pinned pages counted, in base pages."""

    zone: Zone
    foll_pin: int
    extra: int
    pinner: int
    total: int
    in_movable: int
    in_cma: int


def zone_pins(prog: Program, progress: Callable[[int, int], None] | None = None
              ) -> tuple[list[ZonePins], PinnedReport]:
    """Per-zone counts of pinned pages (all evidence), and the report they come from."""
    kernel = probe(prog)
    report = find_pinned(prog, progress=progress)
    result = []
    for zone in zones(kernel):
        mine = [p for p in report.pages if p.node == zone.node and p.zone == zone.name]
        result.append(ZonePins(
            zone=zone,
            foll_pin=sum(p.nr_pages for p in mine if "foll_pin" in p.evidence),
            extra=sum(p.nr_pages for p in mine if "extra" in p.evidence),
            pinner=sum(p.nr_pages for p in mine if "pinner" in p.evidence),
            total=sum(p.nr_pages for p in mine),
            in_movable=sum(p.nr_pages for p in mine if p.migratetype == "Movable"),
            in_cma=sum(p.nr_pages for p in mine if p.migratetype == "CMA"),
        ))
    return result, report


@dataclass
class PageVerdict:
    """Everything pinspect knows about one page (``struct page *``) and its folio."""

    pfn: int
    phys: int
    page: int  # address of the struct page
    head_pfn: int
    state: str  # mapping kind, or free/slab/reserved/page type name
    node: int
    zone: str
    migratetype: str
    cma: str | None
    raw: dict[str, int]
    flags: int
    flag_names: str
    folio: PinnedPage | None  # the head's verdict (empty evidence: not pinned); None if free


def inspect_page(prog: Program, pfn: int) -> PageVerdict:
    """Read one page and judge its folio like :func:`find_pinned` does."""
    from drgn.helpers.linux.mm import pfn_to_page

    from pinspect.kernel import page_type_name
    from pinspect.scan import read_page_bytes

    kernel = probe(prog)
    layout = kernel.layout
    data = read_page_bytes(kernel, pfn)
    chunk = PageChunk(kernel, pfn, np.frombuffer(data, dtype=np.uint8))
    raw = {
        "flags": int(chunk.flags[0]),
        "compound_head": int(chunk.compound_head[0]),
        "mapping": int(chunk.mapping[0]),
        "index": int(chunk.column(layout.index, "<u8")[0]),
        "private": int(chunk.column(layout.private, "<u8")[0]),
        "_mapcount": int(chunk.mapcount[0]),
        "_refcount": int(chunk.refcount[0]),
    }
    head_pfn = pfn
    if raw["compound_head"] & 1:
        head_addr = raw["compound_head"] - 1
        head_pfn = pfn - (pfn_to_page(prog, pfn).value_() - head_addr) // layout.size
    masks = _Masks.of(kernel)
    head_data = read_page_bytes(kernel, head_pfn, 1)
    head_chunk = PageChunk(kernel, head_pfn, np.frombuffer(head_data, dtype=np.uint8))
    if head_chunk.flags[0] & np.uint64(masks.head):
        # The folio's order lives in its first tail page.
        first_tail = read_page_bytes(kernel, head_pfn, 2)
        order = first_tail[layout.folio.order]
        head_chunk = PageChunk(kernel, head_pfn, np.frombuffer(
            read_page_bytes(kernel, head_pfn, max(2, 1 << order)), dtype=np.uint8))
    found = evaluate_chunk(kernel, head_chunk, masks, pinner_mask(kernel), report_all=True)
    places = _Places(kernel, ZoneLocator(kernel), PageblockReader(kernel), CmaLocator(kernel))
    rows = list(_rows(head_chunk, found, places, keep_unpinned=True))
    folio = rows[0] if rows else None
    flags = raw["flags"]
    state = _page_state(kernel, raw, masks, folio)
    zone = ZoneLocator(kernel).locate(pfn, flags)
    area = CmaLocator(kernel).find(pfn)
    page_type = page_type_name(kernel, raw["_mapcount"])
    if page_type is not None and state == "in use":
        state = page_type
    return PageVerdict(
        pfn=pfn,
        phys=pfn << kernel.page_shift,
        page=pfn_to_page(prog, pfn).value_(),
        head_pfn=head_pfn,
        state=state,
        node=zone.node if zone else -1,
        zone=zone.name if zone else "unknown",
        migratetype=PageblockReader(kernel).name(pfn),
        cma=area.name if area else None,
        raw=raw,
        flags=flags,
        flag_names=kernel.flags.decode(flags),
        folio=folio,
    )


def _page_state(kernel: Kernel, raw: dict[str, int], masks: _Masks,
                verdict: PinnedPage | None) -> str:
    from pinspect.kernel import page_type_name

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
