"""CMA areas (pinspect.cma) against the truth."""

from __future__ import annotations

import json

import pytest

import pinspect
from pinspect.cma import CmaLocator, cma_ranges
from tests.sampledata import SAMPLE_NAMES, SAMPLES_DIR, open_sample


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_areas_equal_the_truth(name: str) -> None:
    truth = json.loads((SAMPLES_DIR / f"{name}.truth.json").read_text())
    kernel = pinspect.probe(open_sample(name))
    got = [(r.name, r.base_pfn, r.count, r.order_per_bit) for r in cma_ranges(kernel)]
    # one row per range (6.14+ multi-range struct cma: mainline-7.2's vidbuf has two)
    want = [(a["name"], r["base_pfn"], r["count"], a["order_per_bit"])
            for a in truth["cma"] for r in a["ranges"]]
    assert got == sorted(want, key=lambda a: a[1])
    locator = CmaLocator(kernel)
    for area in truth["cma"]:
        for pfn in area["pinned_pfns"]:
            found = locator.find(pfn)
            assert found is not None and found.name == area["name"]
        assert locator.find(area["base_pfn"] - 1) is None or \
            locator.find(area["base_pfn"] - 1).name != area["name"]  # type: ignore[union-attr]
        for r in area["ranges"]:
            last = r["base_pfn"] + r["count"]
            assert locator.uniform(r["base_pfn"], last)
            assert not locator.uniform(r["base_pfn"] - 1, last)
            assert not locator.uniform(r["base_pfn"], last + 1)
