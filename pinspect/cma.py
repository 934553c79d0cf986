"""CMA areas (``struct cma``): which pfns belong to which area."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from drgn import FaultError, Object

from pinspect.kernel import Kernel
from pinspect.variables import variable


@dataclass(frozen=True)
class CmaRange:
    """One contiguous pfn range of a CMA area (a whole area before 6.14's multi-range)."""

    name: str
    base_pfn: int
    count: int
    order_per_bit: int
    bitmap: int  # address of the allocation bitmap (unsigned long[])

    @property
    def end_pfn(self) -> int:
        return self.base_pfn + self.count


def _ranges_of(area: Object) -> list[tuple[int, int, int]]:
    try:
        nranges = area.nranges.value_()
    except AttributeError:
        return [(area.base_pfn.value_(), area.count.value_(), area.bitmap.value_())]
    # 6.14+ (multi-range CMA): base_pfn and bitmap moved into struct cma_memrange.
    nranges = min(nranges, _array_length(area.ranges, MAX_CMA_RANGES))
    return [(r.base_pfn.value_(), r.count.value_(), r.bitmap.value_())
            for r in area.ranges[:nranges]]


MAX_CMA_AREAS = 64  # bound of a corrupted cma_area_count where the array has no length
MAX_CMA_RANGES = 8


def _array_length(array: Object, default: int) -> int:
    """The length of an array object's type, or *default* if it has none."""
    try:
        length = array.type_.unaliased().length
    except AttributeError:
        length = None
    return int(length) if length is not None else default


def cma_ranges(kernel: Kernel) -> list[CmaRange]:
    """Every range of every CMA area (``cma_areas[0:cma_area_count]``), sorted by pfn."""
    try:
        return kernel.prog.cache["pinspect_cma"]  # type: ignore[no-any-return]
    except KeyError:
        pass
    result: list[CmaRange] = []
    areas = variable(kernel.prog, "cma_areas")
    count_obj = variable(kernel.prog, "cma_area_count")
    if areas is not None and count_obj is not None:
        count = min(count_obj.value_(), _array_length(areas, MAX_CMA_AREAS))
        for area in areas[:count]:
            try:
                name = area.name.string_().decode(errors="replace")
                order = area.order_per_bit.value_()
                for base, pages, bitmap in _ranges_of(area):
                    result.append(CmaRange(name, base, pages, order, bitmap))
            except FaultError:
                continue
    result.sort(key=lambda r: r.base_pfn)
    kernel.prog.cache["pinspect_cma"] = result
    return result


class CmaLocator:
    """Maps a pfn to the CMA range that holds it."""

    def __init__(self, kernel: Kernel) -> None:
        self.ranges = cma_ranges(kernel)
        self._starts = [r.base_pfn for r in self.ranges]

    def find(self, pfn: int) -> CmaRange | None:
        i = bisect.bisect_right(self._starts, pfn) - 1
        if i >= 0 and pfn < self.ranges[i].end_pfn:
            return self.ranges[i]
        return None

    def uniform(self, start: int, end: int) -> bool:
        """Whether pfns ``[start, end)`` all lie in one CMA range, or all outside any."""
        area = self.find(start)
        if area is not None:
            return end <= area.end_pfn
        # No range covers start: none may begin before end.
        i = bisect.bisect_right(self._starts, start)
        return i == len(self._starts) or self._starts[i] >= end
