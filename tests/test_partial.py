"""A dump with part of the memory map filtered out: partial results, with a count."""

from __future__ import annotations

import json

from drgn import FaultError

import pinspect
from tests.sampledata import SAMPLES_DIR

SAMPLES = SAMPLES_DIR
HOLE_START, HOLE_PAGES = 0x100200, 512  # the struct pages of one subsection


def test_unreadable_struct_pages_are_counted_and_the_rest_reported() -> None:
    prog = pinspect.open_program(core=str(SAMPLES / "mainline-6.1.core"),
                                 vmlinux=[str(SAMPLES / "mainline-6.1.debug")])
    truth = json.loads((SAMPLES / "mainline-6.1.truth.json").read_text())
    kernel = pinspect.probe(prog)
    assert kernel.vmemmap is not None
    size = kernel.layout.size

    def filtered(address: int, count: int, offset: int, physical: bool) -> bytes:
        raise FaultError("excluded from the dump", address)

    # As if makedumpfile had left these pages of the vmemmap out.
    prog.add_memory_segment(kernel.vmemmap + HOLE_START * size, HOLE_PAGES * size, filtered,
                            False)
    report = pinspect.find_pinned(prog)
    assert report.unreadable == HOLE_PAGES
    outside = [p["pfn"] for p in truth["pinned"]
               if not HOLE_START <= p["pfn"] < HOLE_START + HOLE_PAGES]
    assert len(outside) < len(truth["pinned"]), "the hole must cover some pinned pages"
    assert [p.pfn for p in report.pages] == outside
