"""What blocks ``cma_alloc()`` in a CMA area: its bitmap, the pages in its free ranges that
could not be migrated or isolated, and whether an allocation of N pages would succeed.

``cma_alloc()`` looks for a run of clear bits in the area's bitmap, then asks
``alloc_contig_range()`` for those pfns: every page there must be free in the buddy
allocator or movable. A page the migration cannot move makes the attempt fail with -EBUSY
(the kernel then tries the next aligned free window). :func:`cma_report` reads the
``struct page``\\ s of the area's free ranges only, in bulk (:func:`pinspect.scan.iter_chunks`
clipped to the area, free buddy blocks and allocated bits skipped), judges them with
:func:`pinspect.evidence.evaluate_chunk` and classifies the unmovable kinds with numpy.

A blocker's cause is one of :data:`CAUSES`:

* ``foll_pin``: FOLL_PIN pins (``folio_maybe_dma_pinned()``); migration refuses the folio;
* ``extra``: references migration cannot account for (``-EAGAIN`` until they go);
* ``slab``, ``pgtable``, ``reserved``: kernel memory that never moves;
* ``kernel``: an in-use page with no mapping and not on the LRU (a driver's or vmalloc page);
* ``non_lru``: any other in-use page neither on the LRU nor with ``movable_ops`` (other page
  types, a user page taken off the LRU).

Limits: a high-order kernel allocation that is not compound keeps its references on its first
page only; its other pages look free here (refcount 0), as pages on the per-CPU free lists do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from drgn import Program

from pinspect import constants
from pinspect.buddy import free_blocks
from pinspect.cma import (
    CmaArea,
    CmaBitmapError,
    CmaRange,
    area_allocated,
    area_named,
    cma_areas,
)
from pinspect.evidence import (
    KIND_MOVABLE_OPS,
    KIND_NAMES,
    FlagMasks,
    _has_type,
    _hugetlb_heads,
    evaluate_chunk,
)
from pinspect.kernel import Kernel, page_type_name, probe
from pinspect.owner import owner_records
from pinspect.pinner import pinner_mask
from pinspect.places import Places
from pinspect.scan import PageChunk, ScanStats, clip_ranges, iter_chunks, valid_ranges

CAUSES = ("foll_pin", "extra", "slab", "pgtable", "reserved", "kernel", "non_lru")
# Page types that are free memory, not in-use pages.
_FREE_TYPES = ("buddy", "guard", "unaccepted")
_CAUSE_CODE = {name: i + 1 for i, name in enumerate(CAUSES)}  # 0: not a blocker


@dataclass(slots=True)
class Blocker:
    """A page (or large folio, at its head) in a CMA area's free range that ``cma_alloc()``
    could not migrate or isolate.

    *owner* and *stack* come from page_owner's record of the head page, where the kernel
    keeps one; None otherwise.
    """

    area: str
    pfn: int
    nr_pages: int
    cause: str
    evidence: list[str]
    state: str  # mapping kind (anon, shmem, file, ...) or slab/pgtable/reserved/page type
    migratetype: str
    refcount: int
    mapcount: int
    expected_refcount: int
    pins: int
    extra: int
    flags: int
    lru: bool
    owner: dict[str, object] | None = None
    stack: list[str] | None = None




@dataclass
class RangeState:
    """Per page of one range of an area: allocated (bitmap) and blocked (a blocker's page)."""

    range: CmaRange
    allocated: np.ndarray  # bool per page
    blocked: np.ndarray  # bool per page

    @property
    def free(self) -> np.ndarray:
        return ~self.allocated


@dataclass
class AreaReport:
    """One CMA area: its bitmap counted, its blockers, and the per-page states."""

    area: CmaArea
    allocated_pages: int
    free_pages: int
    largest_free_run: int  # pages, of clear bits
    largest_clean_run: int  # pages, of clear bits without a blocker
    blockers: list[Blocker]
    by_cause: dict[str, int]  # blocked pages per cause
    blocked_pages: int
    scanned: int  # struct pages read
    unreadable: int
    skipped: int  # pages not read: allocated bits and free buddy blocks
    states: list[RangeState] = field(default_factory=list)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends (exclusive) of the runs of True in *mask*."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.diff(padded)
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _longest(mask: np.ndarray) -> int:
    starts, ends = _runs(mask)
    return int((ends - starts).max()) if len(starts) else 0


def _merge(blocks: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(blocks):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


class _Classifier:
    """Judges the pages of a chunk that lie in a CMA area's free ranges."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.masks = FlagMasks.of(kernel)
        self.places = Places(kernel)
        self.lru = kernel.flags.mask("PG_lru")
        self.pin_mask = pinner_mask(kernel)
        self.movable_ops_flag = kernel.flags.mask("PG_movable_ops")

    def _type_names(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        """For each page type this kernel has, which pages of *raw* (page_type) carry it."""
        return {name: _has_type(self.kernel, raw, name) for name in self.kernel.page_types}

    def blockers(self, chunk: PageChunk, area: str) -> list[Blocker]:
        kernel, masks = self.kernel, self.masks
        layout = kernel.layout
        # Pinned pages and pages with extra references, as pinspect pinned judges them.
        found = evaluate_chunk(kernel, chunk, masks, self.pin_mask, min_extra=1)
        result: dict[int, Blocker] = {}
        for j, index in enumerate(found.index.tolist()):
            evidence = []
            if found.foll_pin[j]:
                evidence.append("foll_pin")
            if found.extra[j] > 0:
                evidence.append("extra")
            if not evidence:
                continue  # page_pinner's flag alone: migration would not fail now
            if found.pinner[j]:
                evidence.append("pinner")
            result[index] = self._blocker(chunk, area, index, evidence[0], evidence,
                                          KIND_NAMES[int(found.kind[j])], int(found.order[j]),
                                          int(found.refcount[j]), int(found.mapcount[j]),
                                          int(found.expected[j]), int(found.pins[j]),
                                          int(found.extra[j]), int(found.flags[j]))
        # Unmovable kinds, over the pages in use (_refcount > 0: free pages and the tails of
        # compound pages have none) and off the LRU (LRU pages move unless pinned, above).
        # Tails go with their heads.
        idx = chunk.indices()
        idx = idx[chunk.refcount[idx] > 0]
        idx = idx[(chunk.flags[idx] & np.uint64(self.lru)) == 0]
        flags = chunk.flags[idx]
        refcount = chunk.refcount[idx].astype(np.int64)
        raw = chunk.mapcount[idx].astype(np.int64)
        mapping = chunk.mapping[idx]
        tail = (chunk.compound_head[idx] & np.uint64(1)) != 0
        typed = raw <= constants.PAGE_MAPCOUNT_RESERVE
        types = self._type_names(raw)
        free_typed = np.zeros(len(idx), dtype=bool)
        for name in _FREE_TYPES:
            if name in types:
                free_typed |= types[name]
        hugetlb = types.get("hugetlb", np.zeros(len(idx), dtype=bool))
        cause = np.zeros(len(idx), dtype=np.int8)
        low = mapping & np.uint64(constants.PAGE_MAPPING_FLAGS)
        movable_ops = (low == constants.PAGE_MAPPING_MOVABLE) & (mapping != 0)
        if self.movable_ops_flag:
            # 6.17+: PG_movable_ops on an offline (balloon) or zsmalloc page replaces the
            # PAGE_MAPPING_MOVABLE bit (page_has_movable_ops()).
            flagged = (flags & np.uint64(self.movable_ops_flag)) != 0
            for name in ("offline", "zsmalloc"):
                if name in types:
                    movable_ops |= flagged & types[name]
        in_use = ~tail
        other_typed = typed & ~free_typed & ~hugetlb & ~tail
        # In order of precedence, the later assignments win: lowest first.
        user = in_use & ~typed & (mapping != 0) & ~movable_ops
        cause[user] = _CAUSE_CODE["non_lru"]
        cause[other_typed & ~movable_ops] = _CAUSE_CODE["non_lru"]
        if "large_kmalloc" in types:
            cause[types["large_kmalloc"] & ~tail] = _CAUSE_CODE["kernel"]
        cause[in_use & ~typed & (mapping == 0)] = _CAUSE_CODE["kernel"]
        cause[((flags & np.uint64(masks.reserved)) != 0) & ~tail] = _CAUSE_CODE["reserved"]
        if "table" in types:
            cause[types["table"] & ~tail] = _CAUSE_CODE["pgtable"]
        slab = (flags & np.uint64(masks.slab)) != 0
        if "slab" in types:
            slab |= types["slab"]
        cause[slab & ~tail] = _CAUSE_CODE["slab"]
        pick = np.flatnonzero(cause)
        if len(pick) == 0:
            return sorted(result.values(), key=lambda b: b.pfn)
        pidx = idx[pick]
        head = (flags[pick] & np.uint64(masks.head)) != 0
        order = np.zeros(len(pick), dtype=np.int64)
        if head.any():
            hidx = pidx[head]
            order[head] = np.minimum(chunk.at(hidx, layout.folio.order, "u1"), 24)
            # A user folio off the LRU may be a hugetlb folio (migratable): not a blocker.
            huge = np.zeros(len(pick), dtype=bool)
            huge[head] = _hugetlb_heads(chunk, hidx, raw[pick][head])
            cause[pick[huge & (cause[pick] == _CAUSE_CODE["non_lru"])]] = 0
        for i, index in enumerate(pidx.tolist()):
            at = int(pick[i])
            code = int(cause[at])
            if code == 0 or index in result:
                continue
            name = CAUSES[code - 1]
            mc = int(raw[at])
            result[index] = self._blocker(
                chunk, area, index, name, [], self._state(name, mc, int(mapping[at]),
                                                          int(flags[at])),
                int(order[i]), int(refcount[at]), mc + 1 if mc >= -1 else 0, 0, 0, 0,
                int(flags[at]))
        return sorted(result.values(), key=lambda b: b.pfn)

    def _state(self, cause: str, raw: int, mapping: int, flags: int) -> str:
        if cause in ("slab", "pgtable", "reserved", "kernel"):
            return cause
        if raw <= constants.PAGE_MAPCOUNT_RESERVE:
            return page_type_name(self.kernel, raw) or "typed"
        low = mapping & constants.PAGE_MAPPING_FLAGS
        if low == constants.PAGE_MAPPING_ANON:
            return "anon"
        if low == constants.PAGE_MAPPING_MOVABLE:
            return KIND_NAMES[KIND_MOVABLE_OPS]
        if low:
            return "ksm"
        return "shmem" if flags & self.masks.swapbacked else "file"

    def _blocker(self, chunk: PageChunk, area: str, index: int, cause: str,
                 evidence: list[str], state: str, order: int, refcount: int, mapcount: int,
                 expected: int, pins: int, extra: int, flags: int) -> Blocker:
        pfn = chunk.start_pfn + index
        _, _, migratetype, _ = self.places.of(pfn, flags)
        return Blocker(area, pfn, 1 << order, cause, evidence, state, migratetype, refcount,
                       mapcount, expected, pins, extra, flags, bool(flags & self.lru))


def _report(kernel: Kernel, area: CmaArea, classifier: _Classifier,
            progress: Callable[[int, int], None] | None) -> AreaReport:
    allocated = area_allocated(kernel, area)
    # Read only the free ranges' struct pages: allocated bits belong to cma_alloc() users, and
    # free buddy blocks hold no references (dumps only).
    skip = list(free_blocks(kernel))
    for rng, alloc in zip(area.ranges, allocated, strict=True):
        starts, ends = _runs(alloc)
        skip += [(rng.base_pfn + s, rng.base_pfn + e) for s, e in
                 zip(starts.tolist(), ends.tolist(), strict=True)]
    skip = _merge(skip)
    windows = [(r.base_pfn, r.end_pfn) for r in area.ranges]
    ranges = clip_ranges(valid_ranges(kernel), windows)
    stats = ScanStats()
    blockers: list[Blocker] = []
    total = area.count
    done = 0
    for chunk in iter_chunks(kernel, ranges, stats, skip=skip):
        done += chunk.n
        if progress is not None:
            progress(min(done, total), total)
        blockers += classifier.blockers(chunk, area.name)
    states = []
    for rng, alloc in zip(area.ranges, allocated, strict=True):
        blocked = np.zeros(rng.count, dtype=bool)
        for b in blockers:
            if rng.base_pfn <= b.pfn < rng.end_pfn:
                lo = b.pfn - rng.base_pfn
                blocked[lo:lo + b.nr_pages] = True
        blocked &= ~alloc
        states.append(RangeState(rng, alloc, blocked))
    blockers = [b for b in blockers if any(
        s.range.base_pfn <= b.pfn < s.range.end_pfn and not s.allocated[b.pfn - s.range.base_pfn]
        for s in states)]
    _annotate_owners(kernel, blockers)
    by_cause = {c: 0 for c in CAUSES}
    for b in blockers:
        by_cause[b.cause] += b.nr_pages
    allocated_pages = sum(int(s.allocated.sum()) for s in states)
    return AreaReport(
        area=area,
        allocated_pages=allocated_pages,
        free_pages=area.count - allocated_pages,
        largest_free_run=max((_longest(s.free) for s in states), default=0),
        largest_clean_run=max((_longest(s.free & ~s.blocked) for s in states), default=0),
        blockers=blockers,
        by_cause=by_cause,
        blocked_pages=sum(int(s.blocked.sum()) for s in states),
        scanned=stats.pages,
        unreadable=stats.unreadable,
        skipped=area.count - stats.pages - stats.unreadable,
        states=states,
    )


def _annotate_owners(kernel: Kernel, blockers: list[Blocker]) -> None:
    """Fill the owner and stack columns from page_owner's records, read in bulk."""
    if not blockers:
        return
    found = owner_records(kernel.prog, [b.pfn for b in blockers]).records
    for b in blockers:
        record = found.get(b.pfn)
        if record is not None:
            b.owner = {"pid": record.pid, "tgid": record.tgid, "comm": record.comm}
            b.stack = record.stack.lines() if record.stack is not None else None


@dataclass
class CmaReport:
    """The result of :func:`cma_report`: the areas read, and those that could not be, why."""

    areas: list[AreaReport]
    problems: list[tuple[str, str]]  # (area name, what is wrong with its struct or bitmap)


def cma_report(prog: Program, name: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> CmaReport:
    """Every CMA area (or the one called *name*) with its bitmap counted and its blockers.

    An area whose struct cma or bitmap cannot be trusted (:class:`CmaBitmapError`) is listed
    in ``problems``; asked for by *name*, it raises. An unknown *name* raises
    :class:`pinspect.errors.FeatureMissing` listing the names.
    """
    kernel = probe(prog)
    kernel.check_layout()
    areas = [area_named(kernel, name)] if name is not None else cma_areas(kernel)
    classifier = _Classifier(kernel)
    reports, problems = [], []
    for area in areas:
        try:
            reports.append(_report(kernel, area, classifier, progress))
        except CmaBitmapError as e:
            if name is not None:
                raise
            problems.append((area.name, e.message.split(": ", 1)[-1]))
    return CmaReport(reports, problems)


# --- Would an allocation of N pages succeed? ---------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One window ``cma_alloc()`` would try: *pages* pfns from *pfn*, with *blocked* of them
    blocked (0: it would succeed there)."""

    pfn: int
    pages: int
    blocked: int


@dataclass(frozen=True)
class FreeRun:
    """A run of clear bits, and how an allocation fares in it."""

    pfn: int
    pages: int
    candidates: int  # aligned windows that fit
    working: int  # of those, windows without a blocker
    first_working_pfn: int | None
    blocked_pages: int


@dataclass
class TryResult:
    """The answer to "would ``cma_alloc(area, pages, align)`` succeed?"."""

    area: str
    pages: int
    align: int  # order
    succeeds: bool
    pfn: int | None  # where the kernel would allocate (the first window that works)
    attempts_before: int  # windows that would fail (-EBUSY) before it
    candidates: int  # windows in total
    reason: str
    runs: list[FreeRun]
    best_failing: Candidate | None  # the failing window with the fewest blocked pages
    best_failing_blockers: list[Blocker]


def try_alloc(report: AreaReport, pages: int, align: int = 0) -> TryResult:
    """Predict ``cma_alloc()`` of *pages* pages aligned to 2^*align* pages in *report*'s area.

    Like the kernel: in each range (in order), every window of clear bits whose start is
    aligned (``cma_bitmap_aligned_mask/offset``) is tried from the lowest up until one holds
    no blocker; a failed window moves the search on by the alignment (one bit without one).
    """
    if pages <= 0:
        raise ValueError(f"--try needs a positive number of pages, not {pages}")
    if align < 0 or align > 40:
        raise ValueError(f"--align {align} is out of range (an order, 0-40)")
    area = report.area
    order = area.order_per_bit
    nbits = -(-pages // (1 << order))  # cma_bitmap_pages_to_bits
    mask = (1 << (align - order)) - 1 if align > order else 0
    pfn_parts: list[np.ndarray] = []  # each window's first pfn, in the kernel's order
    blocked_parts: list[np.ndarray] = []  # and its blocked pages
    runs: list[FreeRun] = []
    for state in report.states:
        rng = state.range
        bits = state.allocated[::1 << order]
        maxno = len(bits)
        offset = (rng.base_pfn & ((1 << align) - 1)) >> order
        clear = np.concatenate([[0], np.cumsum(~bits)])
        blocked_sum = np.concatenate([[0], np.cumsum(state.blocked)])
        starts = np.arange(0, max(maxno - nbits + 1, 0))
        fits = (clear[starts + nbits] - clear[starts]) == nbits
        fits &= ((starts + offset) & mask) == 0
        starts = starts[fits]
        lo = starts << order
        blocked = blocked_sum[np.minimum(lo + pages, rng.count)] - blocked_sum[lo]
        pfn_parts.append(rng.base_pfn + lo)
        blocked_parts.append(blocked)
        run_starts, run_ends = _runs(~bits)
        for s, e in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
            inside = (starts >= s) & (starts + nbits <= e)
            ok = np.flatnonzero(inside & (blocked == 0))
            runs.append(FreeRun(
                pfn=rng.base_pfn + (s << order), pages=(e - s) << order,
                candidates=int(inside.sum()), working=len(ok),
                first_working_pfn=int(rng.base_pfn + lo[ok[0]]) if len(ok) else None,
                blocked_pages=int(blocked_sum[e << order] - blocked_sum[s << order])))
    pfns = np.concatenate(pfn_parts) if pfn_parts else np.zeros(0, dtype=np.int64)
    blocked_all = np.concatenate(blocked_parts) if blocked_parts else pfns
    working = np.flatnonzero(blocked_all == 0)
    failing = np.flatnonzero(blocked_all > 0)
    best_failing = None
    best_blockers = []
    if len(failing):
        # The fewest blocked pages; the lowest pfn among equals (argmin takes the first).
        at = int(failing[np.argmin(blocked_all[failing])])
        best_failing = Candidate(int(pfns[at]), pages, int(blocked_all[at]))
        end = best_failing.pfn + pages
        best_blockers = [b for b in report.blockers
                         if b.pfn < end and b.pfn + b.nr_pages > best_failing.pfn]
    pfn: int | None = None
    if len(working):
        attempts = int(working[0])
        pfn = int(pfns[attempts])
        reason = (f"succeeds at pfn {pfn:#x}" +
                  (f" after {attempts} window(s) fail on blockers (-EBUSY, retried)"
                   if attempts else ""))
    else:
        attempts = len(pfns)
        if not len(pfns):
            reason = (f"fails: no run of {pages} free pages aligned to 2^{align} pages "
                      f"(largest free run {report.largest_free_run} pages)")
        else:
            reason = f"fails: all {len(pfns)} window(s) that fit hold blockers"
    return TryResult(area=area.name, pages=pages, align=align, succeeds=bool(len(working)),
                     pfn=pfn, attempts_before=attempts, candidates=len(pfns),
                     reason=reason, runs=[r for r in runs if r.candidates],
                     best_failing=best_failing, best_failing_blockers=best_blockers)
