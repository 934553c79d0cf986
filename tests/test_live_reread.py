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
