"""The judgement of pages in bulk: which pages of a chunk are pinned, and how.

:func:`evaluate_chunk` applies the kernel's own rules (``folio_maybe_dma_pinned()``,
``folio_expected_ref_count()``) to every page of a :class:`~pinspect.scan.PageChunk` at once;
README.md states them. It returns columns for the few pages it reports; building rows from them
is :mod:`pinspect.report`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pinspect import constants
from pinspect.kernel import Kernel
from pinspect.pageext import flags_words
from pinspect.scan import PageChunk

EVIDENCE_KINDS = ("foll_pin", "extra", "pinner")
BIAS = constants.GUP_PIN_COUNTING_BIAS
MAX_FOLIO_ORDER = 24


@dataclass
class FlagMasks:
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
    def of(cls, kernel: Kernel) -> FlagMasks:
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


def mapping_kinds(mapping: np.ndarray, flags: np.ndarray, masks: FlagMasks) -> np.ndarray:
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
    kernel: Kernel, chunk: PageChunk, masks: FlagMasks, pin_mask: int, min_extra: int = 1,
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
    kind = mapping_kinds(mapping_c, flags_c, masks)
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


def _maybe_reported(chunk: PageChunk, masks: FlagMasks, min_extra: int) -> np.ndarray:
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
                    hugetlb: np.ndarray, masks: FlagMasks) -> np.ndarray:
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
