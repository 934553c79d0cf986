"""Bulk reads of the ``struct page`` array, decoded into numpy columns.

The scanner never builds a drgn Object per page: it reads the memory map of each valid pfn
range in large chunks and exposes the fields pin logic needs as column views at offsets the
probe found once (:class:`pinspect.kernel.PageLayout`). From an x86-64 ELF dump the chunks are
views of the mmap'ed file (:class:`pinspect.elfmem.ElfMemory`), not copies.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from drgn import FaultError
from drgn.helpers.linux.mm import for_each_valid_page_range

from pinspect.elfmem import ElfMemory
from pinspect.errors import PinspectError, TargetError
from pinspect.kernel import Kernel

# Pages per chunk, aligned so that no folio of buddy order straddles two chunks. Views of a
# mapped dump: 256 Ki pages (16 MiB of struct page on x86_64), since fewer, larger chunks cost
# fewer numpy calls; two chunks (the one judged, the next one being mapped) bound the scan's
# memory. Copies made by prog.read: 64 Ki pages (4 MiB), which stay in the cache between the
# copy and the test (16 MiB ones scan 20% slower).
CHUNK_PAGES_MAPPED = 1 << 18
CHUNK_PAGES_READ = 1 << 16
# When a chunk cannot be read whole, retry it in pieces of this many pages (a subsection).
RETRY_PAGES = 1 << 9


@dataclass
class ScanStats:
    """What a scan covered: pages read, and pages whose struct page could not be read."""

    pages: int = 0
    unreadable: int = 0


@dataclass
class PageChunk:
    """``struct page`` bytes for pfns ``[start_pfn, start_pfn + n)``, with column views.

    Only the pages of *spans* (chunk-relative ``[lo, hi)``, sorted) were read; the others
    (free buddy blocks, unreadable memory) hold nothing to judge and are never decoded.
    """

    kernel: Kernel
    start_pfn: int
    raw: np.ndarray  # uint8, n * sizeof(struct page)
    spans: Sequence[tuple[int, int]] | None = None  # None: every page was read

    @property
    def n(self) -> int:
        return len(self.raw) // self.kernel.layout.size

    def read_spans(self) -> Sequence[tuple[int, int]]:
        """The chunk-relative ``[lo, hi)`` ranges of pages that were read."""
        return [(0, self.n)] if self.spans is None else self.spans

    def indices(self) -> np.ndarray:
        """Indices of the pages that were read."""
        if self.spans is None:
            return np.arange(self.n)
        return np.concatenate([np.arange(lo, hi) for lo, hi in self.spans] or
                              [np.zeros(0, dtype=np.intp)])

    def was_read(self, index: np.ndarray) -> np.ndarray:
        """Which of the pages at *index* were read."""
        if self.spans is None:
            return np.ones(len(index), dtype=bool)
        lows = np.array([lo for lo, _ in self.spans])
        highs = np.array([hi for _, hi in self.spans])
        span = np.searchsorted(lows, index, side="right") - 1
        return (span >= 0) & (index < highs[np.maximum(span, 0)])

    def column(self, offset: int, dtype: str) -> np.ndarray:
        """The field at *offset* of every page, as a (possibly strided) array."""
        size = self.kernel.layout.size
        width = np.dtype(dtype).itemsize
        if offset % width == 0 and size % width == 0:
            return np.frombuffer(self.raw, dtype=dtype).reshape(-1, size // width)[
                :, offset // width]
        rows = self.raw.reshape(-1, size)[:, offset:offset + width]
        return np.ascontiguousarray(rows).view(dtype).ravel()

    def at(self, index: np.ndarray, offset: int, dtype: str) -> np.ndarray:
        """The field at byte *offset* from page *index* (which may point into later pages).

        A field past the end of the chunk (only a corrupted head page points there) reads 0.
        """
        width = np.dtype(dtype).itemsize
        start = index.astype(np.int64) * self.kernel.layout.size + offset
        inside = start + width <= len(self.raw)
        positions = np.where(inside, start, 0)[:, None] + np.arange(width)
        gathered = np.where(inside[:, None], self.raw[positions], 0).astype(np.uint8)
        return np.ascontiguousarray(gathered).view(dtype).ravel()

    @property
    def flags(self) -> np.ndarray:
        return self.column(self.kernel.layout.flags, "<u8")

    @property
    def compound_head(self) -> np.ndarray:
        return self.column(self.kernel.layout.compound_head, "<u8")

    @property
    def mapping(self) -> np.ndarray:
        return self.column(self.kernel.layout.mapping, "<u8")

    @property
    def mapcount(self) -> np.ndarray:
        return self.column(self.kernel.layout.mapcount, "<i4")

    @property
    def refcount(self) -> np.ndarray:
        return self.column(self.kernel.layout.refcount, "<i4")


def _wrap(address: int) -> int:
    """A kernel address computed from values in the dump, wrapped to 64 bits as the kernel's
    own arithmetic would (a corrupted base must read as a fault, not overflow)."""
    return address & 0xFFFF_FFFF_FFFF_FFFF


def valid_ranges(kernel: Kernel) -> list[tuple[int, int, int]]:
    """Valid pfn ranges as ``(start_pfn, end_pfn, address of mem_map[0])``."""
    try:
        return kernel.prog.cache["pinspect_valid_ranges"]  # type: ignore[no-any-return]
    except KeyError:
        pass
    ranges: list[tuple[int, int, int]] = []
    try:
        for start, end, mem_map in for_each_valid_page_range(kernel.prog):
            base = mem_map.value_()
            if ranges and ranges[-1][1] == start and ranges[-1][2] == base:
                ranges[-1] = (ranges[-1][0], end, base)
            else:
                ranges.append((start, end, base))
    except LookupError as e:  # drgn's helper found no vmemmap or mem_map: a damaged dump
        raise TargetError(f"cannot locate the memory map (struct page array): {e}",
                          "the dump's VMCOREINFO or kernel data is damaged: "
                          "'pinspect info' shows what could be read") from e
    kernel.prog.cache["pinspect_valid_ranges"] = ranges
    return ranges


def clip_ranges(
    ranges: Iterable[tuple[int, int, int]], windows: Iterable[tuple[int, int]]
) -> list[tuple[int, int, int]]:
    """Intersect valid ranges with pfn windows ``[lo, hi)`` (merged, sorted)."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(windows):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    out = []
    for start, end, base in ranges:
        for lo, hi in merged:
            s, e = max(start, lo), min(end, hi)
            if s < e:
                out.append((s, e, base))
    return out


def _read_pages(kernel: Kernel, base: int, start: int, end: int,
                spans: list[tuple[int, int]], stats: ScanStats) -> Iterator[PageChunk]:
    """One chunk for pfns ``[start, end)``, of which only *spans* (absolute) are read."""
    size = kernel.layout.size
    whole = spans == [(start, end)]
    memory = ElfMemory.of(kernel.prog)
    if memory is not None:
        view = memory.view(_wrap(base + start * size), (end - start) * size)
        if view is not None:
            stats.pages += sum(hi - lo for lo, hi in spans)
            yield PageChunk(kernel, start, view,
                            None if whole else [(lo - start, hi - start) for lo, hi in spans])
            memory.release(view)
            return
    pieces = spans
    if whole:
        try:
            data = kernel.prog.read(_wrap(base + start * size), (end - start) * size)
        except FaultError:
            pieces = _split(start, end, RETRY_PAGES)
        else:
            stats.pages += end - start
            yield PageChunk(kernel, start, np.frombuffer(data, dtype=np.uint8))
            return
    # Read piece by piece into a zeroed chunk (pages never written cost no memory).
    raw = np.zeros((end - start) * size, dtype=np.uint8)
    read: list[tuple[int, int]] = []
    for lo, hi in pieces:
        _read_span(kernel, base, start, lo, hi, raw, read, stats)
    if read:
        yield PageChunk(kernel, start, raw, read)


def _read_span(kernel: Kernel, base: int, start: int, lo: int, hi: int, raw: np.ndarray,
               read: list[tuple[int, int]], stats: ScanStats) -> None:
    """Copy the struct pages of pfns ``[lo, hi)`` into *raw* (pfn *start* at 0); where that
    fails, retry subsection by subsection and count what still cannot be read."""
    size = kernel.layout.size
    try:
        data = kernel.prog.read(_wrap(base + lo * size), (hi - lo) * size)
    except FaultError:
        if hi - lo <= RETRY_PAGES:
            stats.unreadable += hi - lo
        else:
            for piece_lo, piece_hi in _split(lo, hi, RETRY_PAGES):
                _read_span(kernel, base, start, piece_lo, piece_hi, raw, read, stats)
        return
    raw[(lo - start) * size:(hi - start) * size] = np.frombuffer(data, dtype=np.uint8)
    stats.pages += hi - lo
    if read and read[-1][1] == lo - start:
        read[-1] = (read[-1][0], hi - start)
    else:
        read.append((lo - start, hi - start))


def _split(lo: int, hi: int, step: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` cut at multiples of *step*."""
    cuts = list(range((lo // step + 1) * step, hi, step))
    return list(zip([lo, *cuts], [*cuts, hi], strict=True))


def outside(lo: int, hi: int, holes: Sequence[tuple[int, int]],
            hole_ends: Sequence[int]) -> list[tuple[int, int]]:
    """The parts of ``[lo, hi)`` outside the sorted, disjoint *holes* (*hole_ends*: their
    ends, for bisection)."""
    parts = []
    i = bisect.bisect_right(hole_ends, lo)
    pos = lo
    while i < len(holes) and holes[i][0] < hi:
        if holes[i][0] > pos:
            parts.append((pos, holes[i][0]))
        pos = max(pos, holes[i][1])
        i += 1
    if pos < hi:
        parts.append((pos, hi))
    return parts


def iter_chunks(
    kernel: Kernel,
    ranges: Iterable[tuple[int, int, int]],
    stats: ScanStats,
    skip: Sequence[tuple[int, int]] = (),
    chunk_pages: int | None = None,
) -> Iterator[PageChunk]:
    """Read the struct pages of *ranges* in aligned chunks of at most *chunk_pages* (default:
    by how they are read), except the pfns of *skip* (sorted, disjoint ``(start, end)``
    blocks)."""
    memory = ElfMemory.of(kernel.prog)
    if chunk_pages is None:
        chunk_pages = CHUNK_PAGES_READ if memory is None else CHUNK_PAGES_MAPPED
    skip_ends = [end for _, end in skip]
    windows = []
    for start, end, base in ranges:
        pfn = start
        while pfn < end:
            stop = min(end, (pfn // chunk_pages + 1) * chunk_pages)
            spans = outside(pfn, stop, skip, skip_ends)
            if spans:
                windows.append((base, pfn, stop, spans))
            pfn = stop
    size = kernel.layout.size

    def map_in(base: int, start: int, stop: int, spans: list[tuple[int, int]]) -> None:
        if memory is not None:
            memory.prefetch(base + start * size, (stop - start) * size,
                            [((lo - start) * size, (hi - lo) * size) for lo, hi in spans])

    if windows:
        map_in(*windows[0])
    for i, (base, start, stop, spans) in enumerate(windows):
        if i + 1 < len(windows):
            # The next chunk's pages are mapped in the background while this one is judged.
            map_in(*windows[i + 1])
        yield from _read_pages(kernel, base, start, stop, spans, stats)


class InvalidPfn(PinspectError, LookupError):
    """A pfn that has no struct page: in a memory hole, or past the last valid pfn."""


def _valid_range_of(kernel: Kernel, pfn: int) -> tuple[int, int, int]:
    ranges = valid_ranges(kernel)
    for found in ranges:
        if found[0] <= pfn < found[1]:
            return found
    where = ("past the last one" if ranges and pfn >= ranges[-1][1]
             else "in a memory hole" if ranges and pfn > ranges[0][0] else "below the first one")
    shown = ", ".join(f"{lo:#x}-{hi - 1:#x}" for lo, hi, _ in ranges[:6])
    raise InvalidPfn(f"pfn {pfn:#x} has no struct page: it is {where} of the valid pfns",
                     f"valid pfns here: {shown or 'none'}"
                     + (", ..." if len(ranges) > 6 else "")
                     + " ('pinspect info' lists the zones)")


def struct_page_address(kernel: Kernel, pfn: int) -> int:
    """The address of the ``struct page`` of *pfn* (a valid pfn)."""
    _, _, base = _valid_range_of(kernel, pfn)
    return _wrap(base + pfn * kernel.layout.size)


def read_page_bytes(kernel: Kernel, pfn: int, count: int = 1) -> bytes:
    """The raw ``struct page`` bytes of *count* pages from *pfn*, fewer where the valid range
    ends (for single-page views)."""
    _, end, base = _valid_range_of(kernel, pfn)
    return kernel.prog.read(_wrap(base + pfn * kernel.layout.size),
                            min(count, end - pfn) * kernel.layout.size)
