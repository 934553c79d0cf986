"""Where a page sits (node, zone, migratetype, CMA area), cached per pageblock, is what the
uncached lookups say for every page of every sample."""

from __future__ import annotations

import pytest

import pinspect
from pinspect.cma import CmaLocator, CmaRange
from pinspect.places import Places
from pinspect.scan import ScanStats, iter_chunks, valid_ranges
from pinspect.zones import PageblockReader, ZoneLocator
from tests.sampledata import SAMPLE_NAMES, open_sample

NAMES = SAMPLE_NAMES


@pytest.mark.parametrize("name", NAMES)
def test_cached_places_equal_direct_lookups(name: str) -> None:
    kernel = pinspect.probe(open_sample(name))
    locator, blocks, cma = ZoneLocator(kernel), PageblockReader(kernel), CmaLocator(kernel)
    places = Places(kernel)
    checked = 0
    for chunk in iter_chunks(kernel, valid_ranges(kernel), ScanStats()):
        for index, flags in enumerate(chunk.flags.tolist()):
            pfn = chunk.start_pfn + index
            zone = locator.locate(pfn, flags)
            area = cma.find(pfn)
            want = (zone.node if zone else -1, zone.name if zone else "unknown",
                    blocks.name(pfn), area.name if area else None)
            assert places.of(pfn, flags) == want, pfn
            checked += 1
    assert checked > 0 and places.known


def test_uniform_cma_ranges() -> None:
    locator = CmaLocator.__new__(CmaLocator)
    locator.ranges = [CmaRange("a", 100, 50, 0, 0), CmaRange("b", 300, 100, 0, 0)]
    locator._starts = [100, 300]
    assert locator.uniform(0, 100) and locator.uniform(100, 150) and locator.uniform(150, 300)
    assert locator.uniform(310, 320) and locator.uniform(400, 500)
    assert not locator.uniform(90, 110) and not locator.uniform(140, 160)
    assert not locator.uniform(150, 301) and not locator.uniform(0, 1000)
