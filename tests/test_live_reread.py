"""Live targets: every reported page is read a second time (a torn first read is not
trusted), a changed page is reported as read the second time with ``uncertain``, a page
no longer pinned is left out; both are counted in a warning."""

from __future__ import annotations

import json
import struct

import pytest

import pinspect
import pinspect.report as report_module
from pinspect.kernel import probe
from pinspect.scan import read_page_bytes
from tests.sampledata import SAMPLES_DIR, open_sample

TRUTH = json.loads((SAMPLES_DIR / "mainline-6.1.truth.json").read_text())
SMALL = [p for p in TRUTH["pinned"] if p["nr_pages"] == 1 and "foll_pin" in p["evidence"]]


def test_a_dump_is_read_once() -> None:
    prog = open_sample("mainline-6.1")
    assert not report_module.is_live(prog)


def test_unchanged_pages_are_confirmed(monkeypatch: pytest.MonkeyPatch) -> None:
    prog = open_sample("mainline-6.1")
    monkeypatch.setattr(report_module, "is_live", lambda prog: True)
    report = pinspect.find_pinned(prog, owners=False)
    assert [p.pfn for p in report.pages] == [p["pfn"] for p in TRUTH["pinned"]]
    assert not any(p.uncertain for p in report.pages) and not report.warnings


def test_changed_pages_are_uncertain_or_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    prog = open_sample("mainline-6.1")
    kernel = probe(prog)
    refcount_at = kernel.layout.refcount
    dropped, changed = SMALL[0]["pfn"], SMALL[1]["pfn"]

    def torn(kernel_: object, pfn: int, count: int = 1) -> bytes:
        data = bytearray(read_page_bytes(kernel, pfn, count))
        if pfn in (dropped, changed):
            (refcount,) = struct.unpack_from("<i", data, refcount_at)
            # unpinned since the first read / pinned once more
            new = 1 if pfn == dropped else refcount + 1024
            struct.pack_into("<i", data, refcount_at, new)
        return bytes(data)

    monkeypatch.setattr(report_module, "is_live", lambda prog: True)
    monkeypatch.setattr(report_module, "read_page_bytes", torn)
    report = pinspect.find_pinned(prog, owners=False)
    pfns = [p.pfn for p in report.pages]
    assert dropped not in pfns
    second = next(p for p in report.pages if p.pfn == changed)
    assert second.uncertain and second.pins == SMALL[1]["pins"] + 1
    assert sum(p.uncertain for p in report.pages) == 1
    assert report.warnings == ["2 page(s) changed while read (a live kernel): 1 reported as "
                               "read the second time (uncertain), 1 no longer pinned and "
                               "left out"]


def test_cma_blockers_are_reread_on_a_live_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """``cma``'s blockers are confirmed by a second read as ``pinned``'s pages are: a blocker
    unpinned since the first read is left out, one pinned once more is reported as read the
    second time (``uncertain``); both are counted in the document's ``unread``."""
    import pinspect.cmascan as cmascan_module
    from pinspect import unread

    prog = open_sample("mainline-6.1")
    kernel = probe(prog)
    refcount_at = kernel.layout.refcount
    first = cmascan_module.cma_report(prog, "reserved").areas[0].blockers
    pinned = [b for b in first if b.cause == "foll_pin" and b.nr_pages == 1]
    extra = [b for b in first if b.cause == "extra" and b.nr_pages == 1]
    assert pinned and extra, "the sample's reserved area has a pinned and an extra blocker"
    dropped, changed = extra[0].pfn, pinned[0].pfn

    def torn(kernel_: object, pfn: int, count: int = 1) -> bytes:
        data = bytearray(read_page_bytes(kernel, pfn, count))
        if pfn in (dropped, changed):
            (refcount,) = struct.unpack_from("<i", data, refcount_at)
            # no references left since the first read / pinned once more
            new = 1 if pfn == dropped else refcount + 1024
            struct.pack_into("<i", data, refcount_at, new)
        return bytes(data)

    prog = open_sample("mainline-6.1")
    monkeypatch.setattr(cmascan_module, "is_live", lambda prog: True)
    monkeypatch.setattr(cmascan_module, "read_page_bytes", torn)
    unread.reset(prog)
    second = cmascan_module.cma_report(prog, "reserved").areas[0].blockers
    pfns = [b.pfn for b in second]
    assert dropped not in pfns and len(second) == len(first) - 1
    again = next(b for b in second if b.pfn == changed)
    assert again.uncertain and again.pins == pinned[0].pins + 1
    assert sum(b.uncertain for b in second) == 1
    counts = unread.of(prog)
    assert (counts.uncertain, counts.changed) == (1, 1) and not counts
    assert counts.as_json()["uncertain"] == 1
    assert counts.live_line() == ("changed while read: 1 reported as read the second time "
                                  "(uncertain), 1 left out")


def test_pinned_counts_its_changes_in_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``pinned`` re-read and found changed reaches every document's ``unread``."""
    from pinspect import unread

    prog = open_sample("mainline-6.1")
    kernel = probe(prog)
    refcount_at = kernel.layout.refcount
    changed = SMALL[1]["pfn"]

    def torn(kernel_: object, pfn: int, count: int = 1) -> bytes:
        data = bytearray(read_page_bytes(kernel, pfn, count))
        if pfn == changed:
            (refcount,) = struct.unpack_from("<i", data, refcount_at)
            struct.pack_into("<i", data, refcount_at, refcount + 1024)
        return bytes(data)

    monkeypatch.setattr(report_module, "is_live", lambda prog: True)
    monkeypatch.setattr(report_module, "read_page_bytes", torn)
    unread.reset(prog)
    pinspect.find_pinned(prog, owners=False)
    assert (unread.of(prog).uncertain, unread.of(prog).changed) == (1, 0)


def test_page_shows_a_changed_struct_page_as_read_the_second_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``page`` on a live target reads the struct page twice; a difference is shown as read the
    second time, with a warning, and counted as uncertain."""
    import pinspect.pageview as pageview_module
    from pinspect import unread

    prog = open_sample("mainline-6.1")
    kernel = probe(prog)
    refcount_at = kernel.layout.refcount
    pfn = SMALL[0]["pfn"]
    reads = []

    def moving(kernel_: object, at: int, count: int = 1) -> bytes:
        data = bytearray(read_page_bytes(kernel, at, count))
        if at == pfn:
            reads.append(at)
            (refcount,) = struct.unpack_from("<i", data, refcount_at)
            struct.pack_into("<i", data, refcount_at, refcount + len(reads) - 1)
        return bytes(data)

    monkeypatch.setattr(pageview_module, "is_live", lambda prog: True)
    monkeypatch.setattr(pageview_module, "read_page_bytes", moving)
    unread.reset(prog)
    verdict = pageview_module.inspect_page(prog, pfn)
    assert verdict.raw["_refcount"] == SMALL[0]["refcount"] + 1
    assert any("changed between two reads" in w for w in verdict.warnings)
    assert unread.of(prog).uncertain == 1 and not unread.of(prog)
