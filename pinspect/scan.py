"""Bulk reads of the ``struct page`` array, decoded into numpy columns.

The scanner never builds a drgn Object per page: it reads the memory map of each valid pfn
range in large chunks and exposes the fields pin logic needs as column views at offsets the
probe found once (:class:`pinspect.kernel.PageLayout`). From an x86-64 ELF dump the chunks are
views of the mmap'ed file (:class:`pinspect.elfmem.ElfMemory`), not copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from drgn import FaultError
from drgn.helpers.linux.mm import for_each_valid_page_range

from pinspect.elfmem import ElfMemory
from pinspect.kernel import Kernel

# 64 Ki pages per read: 4 MiB of struct page on x86_64, aligned so that no folio of buddy
# order straddles two chunks.
CHUNK_PAGES = 1 << 16
# When a chunk cannot be read whole, retry it in pieces of this many pages (a subsection).
RETRY_PAGES = 1 << 9


@dataclass
class ScanStats:
    """What a scan covered: pages read, and pages whose struct page could not be read."""

    pages: int = 0
    unreadable: int = 0


@dataclass
class PageChunk:
    """``struct page`` bytes for pfns ``[start_pfn, start_pfn + n)``, with column views."""

    kernel: Kernel
    start_pfn: int
    raw: np.ndarray  # uint8, n * sizeof(struct page)

    @property
    def n(self) -> int:
        return len(self.raw) // self.kernel.layout.size

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


def valid_ranges(kernel: Kernel) -> list[tuple[int, int, int]]:
    """Valid pfn ranges as ``(start_pfn, end_pfn, address of mem_map[0])``."""
    try:
        return kernel.prog.cache["pinspect_valid_ranges"]  # type: ignore[no-any-return]
    except KeyError:
        pass
    ranges: list[tuple[int, int, int]] = []
    for start, end, mem_map in for_each_valid_page_range(kernel.prog):
        base = mem_map.value_()
        if ranges and ranges[-1][1] == start and ranges[-1][2] == base:
            ranges[-1] = (ranges[-1][0], end, base)
        else:
            ranges.append((start, end, base))
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
                stats: ScanStats) -> Iterator[PageChunk]:
    size = kernel.layout.size
    memory = ElfMemory.of(kernel.prog)
    if memory is not None:
        view = memory.view(base + start * size, (end - start) * size)
        if view is not None:
            stats.pages += end - start
            yield PageChunk(kernel, start, view)
            memory.release(view)
            return
    try:
        data = kernel.prog.read(base + start * size, (end - start) * size)
    except FaultError:
        if end - start <= RETRY_PAGES:
            stats.unreadable += end - start
            return
        step = RETRY_PAGES
        for s in range(start, end, step):
            yield from _read_pages(kernel, base, s, min(s + step, end), stats)
        return
    stats.pages += end - start
    yield PageChunk(kernel, start, np.frombuffer(data, dtype=np.uint8))


def iter_chunks(
    kernel: Kernel,
    ranges: Iterable[tuple[int, int, int]],
    stats: ScanStats,
    chunk_pages: int = CHUNK_PAGES,
) -> Iterator[PageChunk]:
    """Read the struct pages of *ranges* in aligned chunks of at most *chunk_pages*."""
    for start, end, base in ranges:
        pfn = start
        while pfn < end:
            stop = min(end, (pfn // chunk_pages + 1) * chunk_pages)
            yield from _read_pages(kernel, base, pfn, stop, stats)
            pfn = stop


def read_page_bytes(kernel: Kernel, pfn: int, count: int = 1) -> bytes:
    """The raw ``struct page`` bytes of *count* pages from *pfn* (for single-page views)."""
    for start, end, base in valid_ranges(kernel):
        if start <= pfn < end:
            return kernel.prog.read(base + pfn * kernel.layout.size,
                                    min(count, end - pfn) * kernel.layout.size)
    raise LookupError(f"pfn {pfn:#x} is not a valid page frame")
