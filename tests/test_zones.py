"""Zones, zone lookup from page->flags, and pageblock migratetypes, against the truth."""

from __future__ import annotations

import json

import pytest

import pinspect
from pinspect.zones import PageblockReader, ZoneLocator, zones
from tests.sampledata import SAMPLE_NAMES, SAMPLES_DIR, open_sample

COUNTERS = ("node", "zone", "start_pfn", "spanned", "present", "managed", "free", "free_cma",
            "cma_pages")


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_zones_and_places_equal_the_truth(name: str) -> None:
    truth = json.loads((SAMPLES_DIR / f"{name}.truth.json").read_text())
    kernel = pinspect.probe(open_sample(name))
    got = [{"zone": z.name, **{k: getattr(z, k) for k in COUNTERS if k != "zone"}}
           for z in zones(kernel)]
    assert got == [{k: z[k] for k in COUNTERS} for z in truth["zones"]]
    locator, blocks = ZoneLocator(kernel), PageblockReader(kernel)
    checked = 0
    for page in truth["pinned"] + truth["controls"]:
        zone = locator.locate(page["pfn"], page["flags"])
        assert zone is not None and (zone.node, zone.name) == (page["node"], page["zone"])
        assert blocks.name(page["pfn"]) == page["migratetype"]
        checked += 1
    assert checked >= 20


def test_a_pfn_outside_every_zone_has_no_zone() -> None:
    kernel = pinspect.probe(open_sample("mainline-6.1"))
    locator = ZoneLocator(kernel)
    end = max(z.end_pfn for z in zones(kernel))
    assert locator.locate(end + 12345, 0) is None
