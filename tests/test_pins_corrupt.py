"""Corrupted struct pages: pin evaluation never raises, whatever the bytes say."""

from __future__ import annotations

import numpy as np
import pytest

import pinspect
from pinspect.evidence import MAX_FOLIO_ORDER, FlagMasks, evaluate_chunk
from pinspect.pinner import pinner_mask
from pinspect.scan import PageChunk, ScanStats, iter_chunks, valid_ranges
from tests.sampledata import SAMPLES_DIR

SAMPLES = SAMPLES_DIR


@pytest.fixture(scope="module", params=["mainline-6.1", "mainline-6.12", "android-d"])
def chunks(request: pytest.FixtureRequest) -> tuple[pinspect.kernel.Kernel, list[PageChunk]]:
    name = request.param
    prog = pinspect.open_program(core=str(SAMPLES / f"{name}.core"),
                                 vmlinux=[str(SAMPLES / f"{name}.debug")])
    kernel = pinspect.probe(prog)
    return kernel, list(iter_chunks(kernel, valid_ranges(kernel), ScanStats()))


def test_head_flag_on_the_last_page_of_a_chunk(
        chunks: tuple[pinspect.kernel.Kernel, list[PageChunk]]) -> None:
    kernel, pages = chunks
    chunk = pages[0]
    raw = chunk.raw.copy()
    size = kernel.layout.size
    last = (chunk.n - 1) * size
    flags = int.from_bytes(raw[last:last + 8].tobytes(), "little")
    flags |= kernel.flags.mask("PG_head")
    raw[last:last + 8] = np.frombuffer(flags.to_bytes(8, "little"), np.uint8)
    raw[last + kernel.layout.refcount:last + kernel.layout.refcount + 4] = \
        np.frombuffer((5).to_bytes(4, "little"), np.uint8)
    found = evaluate_chunk(kernel, PageChunk(kernel, chunk.start_pfn, raw), FlagMasks.of(kernel),
                           pinner_mask(kernel), report_all=True)
    assert chunk.n - 1 in set(found.index.tolist())


def test_random_corruption_never_raises(
        chunks: tuple[pinspect.kernel.Kernel, list[PageChunk]]) -> None:
    kernel, pages = chunks
    masks = FlagMasks.of(kernel)
    rng = np.random.default_rng(1)
    for round_ in range(200):
        chunk = pages[round_ % len(pages)]
        raw = chunk.raw.copy()
        hits = rng.integers(0, len(raw), size=64)
        raw[hits] = rng.integers(0, 256, size=64, dtype=np.uint8)
        found = evaluate_chunk(kernel, PageChunk(kernel, chunk.start_pfn, raw), masks,
                               pinner_mask(kernel), report_all=bool(round_ % 2))
        columns = (found.index, found.order, found.refcount, found.mapcount, found.pins,
                   found.extra, found.kind, found.foll_pin, found.pinner)
        assert len({len(c) for c in columns}) == 1
        assert (found.order <= MAX_FOLIO_ORDER).all()
        assert (found.index < chunk.n).all()
