"""Skipping free buddy blocks: exact on every sample, and safe when a free list is corrupted."""

from __future__ import annotations

import json
from typing import Any

import pytest

import pinspect
import pinspect.report
from pinspect.buddy import MIN_SKIP_ORDER, free_blocks
from pinspect.scan import outside
from tests.sampledata import SAMPLE_NAMES, SAMPLES_DIR, open_sample

NAMES = SAMPLE_NAMES


def open_sample_and_truth(name: str) -> tuple[Any, dict[str, Any]]:
    truth = json.loads((SAMPLES_DIR / f"{name}.truth.json").read_text())
    return open_sample(name), truth


@pytest.mark.parametrize("name", NAMES)
def test_free_blocks_are_the_truths(name: str) -> None:
    prog, truth = open_sample_and_truth(name)
    want = sorted((pfn, pfn + (1 << order)) for pfn, order, _ in truth["free_blocks"]
                  if order >= MIN_SKIP_ORDER)
    assert want, "the sample has no large free block"
    assert free_blocks(pinspect.probe(prog)) == want


@pytest.mark.parametrize("name", NAMES)
def test_skipping_changes_nothing_but_the_pages_read(name: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    prog = open_sample(name)
    skipping = pinspect.find_pinned(prog)
    monkeypatch.setattr(pinspect.report, "free_blocks", lambda kernel: [])
    reading = pinspect.find_pinned(prog)
    assert skipping.pages == reading.pages
    assert skipping.skipped_free > 0 and reading.skipped_free == 0
    assert skipping.scanned + skipping.skipped_free == reading.scanned


def test_a_looping_free_list_is_not_trusted() -> None:
    prog, truth = open_sample_and_truth("mainline-6.1")
    kernel = pinspect.probe(prog)
    assert kernel.vmemmap is not None
    pfn, order, _ = next(b for b in truth["free_blocks"] if b[1] >= MIN_SKIP_ORDER)
    page = kernel.vmemmap + pfn * kernel.layout.size
    link = prog.type("struct page").member("buddy_list").offset
    original = prog.read(page + link, 16)

    def looping(address: int, count: int, offset: int, physical: bool) -> bytes:
        # lru.next of this free block points back at itself: the walk would never end.
        data = (page + link).to_bytes(8, "little") + original[8:]
        return data[offset:offset + count]

    prog.add_memory_segment(page + link, 16, looping, False)
    blocks = free_blocks(kernel)
    assert all(start != pfn for start, _ in blocks)
    assert [p.pfn for p in pinspect.find_pinned(prog).pages] == \
        [p["pfn"] for p in truth["pinned"]]


def test_outside() -> None:
    holes = [(10, 20), (90, 210), (250, 260), (400, 500)]
    ends = [end for _, end in holes]
    assert outside(0, 100, holes, ends) == [(0, 10), (20, 90)]
    assert outside(200, 300, holes, ends) == [(210, 250), (260, 300)]
    assert outside(0, 100, [], []) == [(0, 100)]
    assert outside(95, 205, holes, ends) == []
    assert outside(260, 400, holes, ends) == [(260, 400)]
