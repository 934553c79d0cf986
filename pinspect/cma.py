"""CMA areas (``struct cma``): which pfns belong to which area."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
from drgn import FaultError, Object

from pinspect.errors import FeatureMissing, PinspectError
from pinspect.kernel import Kernel
from pinspect.probing import enumerators
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
    return [(r.base_pfn.value_(), r.count.value_(), r.bitmap.value_())
            for r in area.ranges[:nranges]]


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
        count = count_obj.value_()
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


# --- Areas with their bitmaps and counters (``pinspect cma``) ---------------------------------

# No CMA area is larger than this many pages per bit (the kernel takes order_per_bit from a
# reservation's alignment; hugetlb_cma uses the gigantic page order, 18 on x86-64).
MAX_ORDER_PER_BIT = 30


class CmaBitmapError(PinspectError):
    """A CMA area's allocation bitmap cannot be read, or does not fit the area."""


@dataclass(frozen=True)
class CmaArea:
    """One ``struct cma``: its ranges (one before 6.14) and the kernel's own counters.

    The counters are None where this kernel does not keep them: ``nr_pages_*`` with
    CONFIG_CMA_SYSFS (``nr_pages_released`` ≈6.10+), ``available_count`` ≈6.13+.
    *problem* says why the bitmap cannot be trusted (None: it can).
    """

    index: int
    name: str
    address: int  # struct cma *
    count: int  # pages
    order_per_bit: int
    ranges: tuple[CmaRange, ...]
    nr_pages_succeeded: int | None
    nr_pages_failed: int | None
    nr_pages_released: int | None
    available_count: int | None
    problem: str | None

    @property
    def base_pfn(self) -> int:
        return min((r.base_pfn for r in self.ranges), default=0)

    @property
    def end_pfn(self) -> int:
        return max((r.end_pfn for r in self.ranges), default=0)


def _counter(area: Object, member: str) -> int | None:
    """An ``atomic64_t`` or ``unsigned long`` member that only some kernels have."""
    try:
        value = getattr(area, member)
    except AttributeError:
        return None
    try:
        return int(value.counter.value_())
    except AttributeError:
        return int(value.value_())


def _activated(kernel: Kernel, area: Object) -> bool:
    """Whether the area's ranges hold bitmaps: 6.14+ keeps ``early_pfn`` in the same union
    until ``cma_activate_area()`` sets ``CMA_ACTIVATED`` in ``flags``."""
    try:
        flags = area.flags.value_()
    except AttributeError:
        return True
    bit = enumerators(kernel.prog, "enum cma_flags").get("CMA_ACTIVATED")
    return bit is None or bool(flags & (1 << bit))


def _area_problem(count: int, order: int, ranges: list[CmaRange], activated: bool
                  ) -> str | None:
    if order < 0 or order > MAX_ORDER_PER_BIT:
        return f"order_per_bit {order} is out of range (0-{MAX_ORDER_PER_BIT})"
    if count <= 0 or not ranges:
        return "the area has no pages"
    if sum(r.count for r in ranges) != count:
        return (f"its ranges hold {sum(r.count for r in ranges)} pages, "
                f"the area says {count}")
    for r in ranges:
        if r.count % (1 << order):
            return (f"range at pfn {r.base_pfn:#x}: {r.count} pages is not a multiple of "
                    f"2^order_per_bit ({1 << order})")
    if not activated:
        return "the area was never activated (no bitmap yet)"
    for r in ranges:
        if not r.bitmap:
            return f"range at pfn {r.base_pfn:#x} has no bitmap (NULL)"
    return None


def cma_areas(kernel: Kernel) -> list[CmaArea]:
    """Every CMA area (``cma_areas[0:cma_area_count]``) in the kernel's order, with its
    ranges and counters. The bitmaps are read by :func:`area_bitmaps`."""
    try:
        return kernel.prog.cache["pinspect_cma_areas"]  # type: ignore[no-any-return]
    except KeyError:
        pass
    result: list[CmaArea] = []
    areas = variable(kernel.prog, "cma_areas")
    count_obj = variable(kernel.prog, "cma_area_count")
    if areas is not None and count_obj is not None:
        for index, area in enumerate(areas[:count_obj.value_()]):
            try:
                name = area.name.string_().decode(errors="replace")
                order = int(area.order_per_bit.value_())
                count = int(area.count.value_())
                ranges = [CmaRange(name, base, pages, order, bitmap)
                          for base, pages, bitmap in _ranges_of(area)]
                activated = _activated(kernel, area)
            except FaultError as e:
                result.append(CmaArea(index, f"#{index}", 0, 0, 0, (), None, None, None, None,
                                      f"struct cma unreadable at {e.address:#x}"))
                continue
            result.append(CmaArea(
                index=index, name=name, address=area.address_of_().value_(), count=count,
                order_per_bit=order, ranges=tuple(ranges),
                nr_pages_succeeded=_counter(area, "nr_pages_succeeded"),
                nr_pages_failed=_counter(area, "nr_pages_failed"),
                nr_pages_released=_counter(area, "nr_pages_released"),
                available_count=_counter(area, "available_count"),
                problem=_area_problem(count, order, ranges, activated)))
    kernel.prog.cache["pinspect_cma_areas"] = result
    return result


def area_named(kernel: Kernel, name: str) -> CmaArea:
    """The CMA area called *name*; :class:`FeatureMissing` listing the names otherwise."""
    areas = cma_areas(kernel)
    for area in areas:
        if area.name == name:
            return area
    names = ", ".join(a.name for a in areas) or "none"
    raise FeatureMissing(f"no CMA area named {name!r} (areas here: {names})")


def range_bitmap(kernel: Kernel, rng: CmaRange) -> np.ndarray:
    """The allocation bitmap of *rng* as one bool per bit (``count >> order_per_bit`` bits):
    True where ``cma_alloc()`` handed the 2^order_per_bit pages out."""
    nbits = rng.count >> rng.order_per_bit
    word = kernel.prog.type("unsigned long").size
    nwords = (nbits + 8 * word - 1) // (8 * word)
    try:
        data = kernel.prog.read(rng.bitmap, nwords * word)
    except FaultError as e:
        raise CmaBitmapError(
            f"CMA area {rng.name!r}: its bitmap at {rng.bitmap:#x} cannot be read "
            f"({nwords * word} bytes; fault at {e.address:#x})",
            "the dump may have been filtered; the area's pages can still be listed with "
            f"pinned --cma {rng.name}") from e
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    if bits[nbits:].any():
        raise CmaBitmapError(
            f"CMA area {rng.name!r}: its bitmap has bits set past the area's "
            f"{nbits} bits (count {rng.count}, order_per_bit {rng.order_per_bit})",
            "the struct cma or its bitmap is corrupted")
    return bits[:nbits].astype(bool)


def area_allocated(kernel: Kernel, area: CmaArea) -> list[np.ndarray]:
    """Per range of *area*: one bool per page, True where the bitmap marks it allocated."""
    if area.problem is not None:
        raise CmaBitmapError(f"CMA area {area.name!r}: {area.problem}",
                             "the struct cma looks corrupted or uninitialised")
    return [np.repeat(range_bitmap(kernel, r), 1 << area.order_per_bit) for r in area.ranges]
