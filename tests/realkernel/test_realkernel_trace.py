"""pp61, the page_pinner kernel: `pinspect trace` on the trace the guest recorded, and the
RFC variant read from its dump, against what the workload did (``pinwork --pinner``).

pp61 (built by ``build-kernel.sh 6.1-pp``) is one of the tier's kernels; these tests skip on the
others. The guest writes its ftrace text to the 9p share (``share/trace.txt``) before the dumps.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.realkernel.expect import pinner_marked
from tests.realkernel.rksupport import REPO, Booted


@dataclass
class PP61:
    booted: Booted
    elf: Path  # the kdump-zlib dump (65 MB)
    trace: Path
    log: dict[str, Any]  # PINLOG pinner {...}: kept, released, cma_base_pfn, cma_pages
    vmlinux: Path


@pytest.fixture
def pp61(booted: Booted) -> PP61:
    if "--pinner" not in booted.kernel.spec.workload_args:
        pytest.skip(f"{booted.name} has no page_pinner (pp61 has)")
    lines = [line for line in booted.gt.log if line.startswith("pinner {")]
    assert lines, f"no PINLOG pinner line; log: {booted.gt.log}"
    log = json.loads(lines[0][len("pinner "):])
    trace = booted.guest.share / "trace.txt"
    assert trace.exists() and trace.stat().st_size > 0, "the guest wrote no trace"
    return PP61(booted, booted.dumps["kdump"], trace, log, booted.vmlinux)


def pinspect(*args: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "pinspect", *args, "--format", "json"],
                            capture_output=True, text=True, timeout=1800, cwd=REPO)
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_trace_ranks_the_releasing_pinner_first(pp61: PP61) -> None:
    doc = pinspect("trace", str(pp61.trace))
    released = set(pp61.log["released"])
    assert doc["ranking"], doc["common"]
    top = doc["ranking"][0]
    assert top["callsite"] == "page_cache_pipe_buf_release", doc["ranking"][:3]
    by_pfn = {p["pfn"]: p for p in doc["pfns"]}
    assert released <= set(by_pfn)
    assert {by_pfn[p]["last_holder"] for p in released} == {"page_cache_pipe_buf_release"}
    assert top["pfns"] >= len(released)
    # compaction's and the allocation's own puts are common paths, never ranked
    ranked = {r["callsite"] for r in doc["ranking"]}
    common = {c["callsite"] for c in doc["common"]}
    assert "isolate_migratepages_block" in common and not ranked & common
    for p in pp61.log["kept"]:
        assert by_pfn[p]["state"] == "held"


def test_reason_filter_keeps_only_cma_failures(pp61: PP61) -> None:
    doc = pinspect("trace", str(pp61.trace), "--reason", "cma")
    base, n = pp61.log["cma_base_pfn"], pp61.log["cma_pages"]
    pfns = {p["pfn"] for p in doc["pfns"]}
    assert set(pp61.log["kept"]) | set(pp61.log["released"]) <= pfns
    assert all(base <= p < base + n for p in pfns)
    assert all(p["reasons"] == ["cma"] for p in doc["pfns"])
    everything = pinspect("trace", str(pp61.trace))
    assert "compaction" in everything["by_reason"]


def test_pinned_evidence_pinner_is_what_the_kernel_marked(pp61: PP61) -> None:
    """The folios `pinned --evidence pinner` reports in the dump are those of the pfns the
    trace's events left marked (expect.pinner_marked: failure events, minus pages freed since),
    and `trace` counts the same pfns as not freed."""
    marked = pinner_marked(pp61.trace.read_text(errors="replace"))
    assert set(pp61.log["kept"]) | set(pp61.log["released"]) <= marked
    doc = pinspect("trace", str(pp61.trace))
    assert {p["pfn"] for p in doc["pfns"] if p["state"] != "freed"} == marked
    pinned = pinspect("-c", str(pp61.elf), "-s", str(pp61.vmlinux), "pinned", "--evidence",
                      "pinner")
    heads = {r["pfn"]: r["nr_pages"] for r in pinned["pages"]}
    assert all("pinner" in r["evidence"] for r in pinned["pages"])
    reported = {pfn for pfn in marked if any(h <= pfn < h + n for h, n in heads.items())}
    assert reported == marked
    assert all(any(h <= p < h + n for p in marked) for h, n in heads.items()), (heads, marked)


def test_page_ref_events_alone(pp61: PP61) -> None:
    """The same trace without the page_pinner events is what a mainline CONFIG_DEBUG_PAGE_REF
    kernel (cma61 with DEBUG_PAGE_REF) records: the failing pfn is test_pages_isolated's first
    busy pfn of the failed CMA allocation, one the workload kept pinned, and its chain holds
    the page_ref gets and puts of the area."""
    kept = "\n".join(_without_page_pinner(pp61.trace.read_text(errors="replace")))
    doc = pinspect_stdin(kept, "trace", "-")
    assert set(doc["by_event"]) >= {"test_pages_isolated", "page_ref_mod_and_test"}, doc
    assert not any(e.startswith("page_pinner") for e in doc["by_event"])
    pinned_in_area = set(pp61.log["kept"]) | set(pp61.log["released"])
    failing = {p["pfn"] for p in doc["pfns"]}
    assert failing and failing <= pinned_in_area, (failing, pinned_in_area)
    # the allocation went from the area's start: the first busy pfn is the lowest pinned one
    assert min(failing) == min(pinned_in_area)
    assert all(p["reasons"] == ["cma"] for p in doc["pfns"])


def _without_page_pinner(text: str) -> list[str]:
    """ftrace text minus the page_pinner events and their stack lines."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines():
        if line.startswith(" => "):
            if not skipping:
                out.append(line)
            continue
        skipping = bool(re.search(r" page_pinner_\w+: ", line))
        if not skipping:
            out.append(line)
    return out


def pinspect_stdin(text: str, *args: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "pinspect", *args, "--format", "json"],
                            input=text, capture_output=True, text=True, timeout=1800, cwd=REPO)
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_info_names_the_rfc_variant(pp61: PP61) -> None:
    doc = pinspect("-c", str(pp61.elf), "-s", str(pp61.vmlinux), "info")
    feature = next(f for f in doc["features"] if f["name"] == "page_pinner")
    assert feature["state"] == "present" and "RFC" in feature["detail"]


def test_page_owner_and_the_events_agree(pp61: PP61) -> None:
    doc = pinspect("trace", str(pp61.trace), "--view", "pfns", "-c", str(pp61.elf), "-s",
                   str(pp61.vmlinux), "--reason", "cma")
    by_pfn = {p["pfn"]: p for p in doc["pfns"]}
    pid = pp61.booted.gt.meta["pid"]
    for pfn in pp61.log["kept"]:
        p = by_pfn[pfn]
        assert p["comm"] == "pinwork"  # the task whose CMA allocation failed
        assert p["dump"]["pinned"], p
        owner = p["dump"]["owner"]
        assert owner is not None and owner["pid"] == pid and owner["comm"] == "pinwork"
    for pfn in pp61.log["released"]:
        assert "extra" not in by_pfn[pfn]["dump"]["evidence"]
