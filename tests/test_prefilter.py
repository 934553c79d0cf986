"""The cheap pre-test of the scan (``_maybe_reported``) never drops a page the full evaluation
would report, and chunks with unread spans are judged only where they were read."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import pinspect
import pinspect.evidence
from pinspect.buddy import free_blocks
from pinspect.evidence import Candidates, FlagMasks, evaluate_chunk
from pinspect.kernel import Kernel
from pinspect.pinner import pinner_mask
from pinspect.scan import PageChunk, ScanStats, iter_chunks, valid_ranges
from tests.sampledata import SAMPLES_DIR

SAMPLES = SAMPLES_DIR
MIN_EXTRAS = [-(1 << 31), -(1 << 30), -5, -1, 0, 1, 2, 3, 7, 1 << 20, 10**12]


@pytest.fixture(scope="module", params=["mainline-6.1", "mainline-6.12", "android-d"])
def chunks(request: pytest.FixtureRequest) -> tuple[Kernel, list[PageChunk]]:
    name = request.param
    prog = pinspect.open_program(core=str(SAMPLES / f"{name}.core"),
                                 vmlinux=[str(SAMPLES / f"{name}.debug")])
    kernel = pinspect.probe(prog)
    # Small chunks, with the free blocks inside them left unread: every chunk has spans.
    found = [PageChunk(kernel, c.start_pfn, c.raw.copy(), c.spans)
             for c in iter_chunks(kernel, valid_ranges(kernel), ScanStats(),
                                  skip=free_blocks(kernel), chunk_pages=1 << 12)]
    assert any(c.spans is not None for c in found)
    return kernel, found


def _fuzzed(kernel: Kernel, chunk: PageChunk, rng: np.random.Generator) -> PageChunk:
    """The chunk with random values in the fields the pre-test reads, in random pages."""
    layout = kernel.layout
    raw = chunk.raw.copy()
    pages = rng.integers(0, chunk.n, size=max(1, chunk.n // 8))
    for offset, width in ((layout.refcount, 4), (layout.mapcount, 4), (layout.mapping, 1),
                          (layout.flags, 4)):
        values = rng.choice([0, 1, 2, 3, 0x7F, 0xFF, 0x400, 0x401, 0x7FFFFFFF, 0x80000000,
                             0xFFFFFF7F, 0xFFFFFFFF, int(rng.integers(0, 1 << 32))],
                            size=len(pages))
        for page, value in zip(pages.tolist(), values.tolist(), strict=True):
            at = page * layout.size + offset
            raw[at:at + width] = np.frombuffer(int(value).to_bytes(8, "little")[:width],
                                               np.uint8)
    return PageChunk(kernel, chunk.start_pfn, raw, chunk.spans)


def _same(a: Candidates, b: Candidates) -> bool:
    return all(np.array_equal(x, y) for x, y in
               zip(dataclasses.astuple(a), dataclasses.astuple(b), strict=True))


def test_the_pre_test_drops_nothing_reportable(chunks: tuple[Kernel, list[PageChunk]],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    kernel, pages = chunks
    masks = FlagMasks.of(kernel)
    pins = pinner_mask(kernel)
    rng = np.random.default_rng(7)
    fuzzed = [_fuzzed(kernel, pages[i % len(pages)], rng) for i in range(40)]
    reported = 0
    for chunk in fuzzed:
        for min_extra in MIN_EXTRAS:
            cheap = evaluate_chunk(kernel, chunk, masks, pins, min_extra)
            with monkeypatch.context() as m:
                m.setattr(pinspect.evidence, "_maybe_reported", lambda c, *_: c.indices())
                full = evaluate_chunk(kernel, chunk, masks, pins, min_extra)
            assert _same(cheap, full), (chunk.start_pfn, min_extra)
            reported += len(full.index)
    assert reported > 0


def test_unread_pages_are_never_judged(chunks: tuple[Kernel, list[PageChunk]]) -> None:
    kernel, pages = chunks
    masks = FlagMasks.of(kernel)
    with_spans = [c for c in pages if c.spans is not None]
    for chunk in with_spans:
        # Garbage where nothing was read: a huge refcount in every page.
        raw = chunk.raw.copy()
        size = kernel.layout.size
        unread = np.setdiff1d(np.arange(chunk.n), chunk.indices())
        assert len(unread)
        for page in unread.tolist():
            raw[page * size + kernel.layout.refcount:][:4] = 0x40
        found = evaluate_chunk(kernel, PageChunk(kernel, chunk.start_pfn, raw, chunk.spans),
                               masks, pinner_mask(kernel), report_all=True)
        assert chunk.was_read(found.index).all()
        assert not np.isin(found.index, unread).any()


def test_spans() -> None:
    kernel = pinspect.probe(pinspect.open_program(
        core=str(SAMPLES / "mainline-6.1.core"), vmlinux=[str(SAMPLES / "mainline-6.1.debug")]))
    chunk = PageChunk(kernel, 0, np.zeros(100 * kernel.layout.size, np.uint8),
                      [(0, 10), (20, 25), (99, 100)])
    assert chunk.indices().tolist() == [*range(10), *range(20, 25), 99]
    assert chunk.was_read(np.array([0, 9, 10, 19, 20, 24, 25, 98, 99])).tolist() == \
        [True, True, False, False, True, True, False, False, True]
    whole = PageChunk(kernel, 0, np.zeros(3 * kernel.layout.size, np.uint8))
    assert whole.indices().tolist() == [0, 1, 2] and whole.read_spans() == [(0, 3)]
