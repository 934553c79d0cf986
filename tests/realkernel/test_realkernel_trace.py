"""pp61, the page_pinner kernel: `pinspect trace` on the trace the guest recorded, and the
RFC variant read from its dump, against what the workload did (``pinwork --pinner``).

Boots pp61 (built by ``build-kernel.sh 6.1-pp``) only when asked: ``PINSPECT_PP61=1`` or
``PINSPECT_REALKERNELS`` naming pp61.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.realkernel.harness import ALL_KERNELS, Guest, HarnessError, cache_dir, prepare_kernel
from tests.realkernel.rksupport import KERNEL_NAMES, REPO, unavailable

WANTED = os.environ.get("PINSPECT_PP61") == "1" or "pp61" in KERNEL_NAMES


class PP61:
    def __init__(self, guest: Guest, elf: Path, trace: Path, log: dict[str, Any]) -> None:
        self.guest = guest
        self.elf = elf
        self.trace = trace
        self.log = log  # PINLOG pinner {...}: kept, released, cma_base_pfn, cma_pages
        self.vmlinux = guest.kernel.vmlinux


@pytest.fixture(scope="module")
def pp61() -> Iterator[PP61]:
    if not WANTED:
        pytest.skip("pp61 runs with PINSPECT_PP61=1 (or pp61 in PINSPECT_REALKERNELS)")
    if shutil.which("qemu-system-x86_64") is None:
        unavailable("qemu-system-x86_64 not installed")
    try:
        kernel = prepare_kernel(ALL_KERNELS["pp61"])
    except HarnessError as e:
        unavailable(f"pp61 kernel: {e}")
    work = cache_dir() / "realkernel" / "run" / "pp61"
    guest = Guest(kernel, work)
    try:
        gt = guest.start()
        lines = [line for line in gt.log if line.startswith("pinner {")]
        assert lines, f"no PINLOG pinner line; log: {gt.log}"
        log = json.loads(lines[0][len("pinner "):])
        trace = guest.share / "trace.txt"
        assert trace.exists() and trace.stat().st_size > 0, "the guest wrote no trace"
        elf = work / "vmcore.kdump"
        guest.dump(elf, "kdump-zlib")  # (65 MB; the ELF dump is 4.6 GB)
        yield PP61(guest, elf, trace, log)
    finally:
        guest.stop()
        if os.environ.get("PINSPECT_KEEP_DUMPS") != "1":
            (work / "vmcore.kdump").unlink(missing_ok=True)


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
    """The marked pages in the dump are the failing pfns of the trace that were not freed."""
    doc = pinspect("trace", str(pp61.trace))
    marked = {p["pfn"] for p in doc["pfns"] if p["state"] != "freed"}
    pinned = pinspect("-c", str(pp61.elf), "-s", str(pp61.vmlinux), "pinned", "--evidence",
                      "pinner")
    heads = {r["pfn"]: r["nr_pages"] for r in pinned["pages"]}
    reported = {pfn for pfn in marked
                if any(h <= pfn < h + n for h, n in heads.items())}
    assert reported == marked
    assert len(heads) == len({h for h in heads if any(h <= p < h + heads[h] for p in marked)})


def test_info_names_the_rfc_variant(pp61: PP61) -> None:
    doc = pinspect("-c", str(pp61.elf), "-s", str(pp61.vmlinux), "info")
    feature = next(f for f in doc["features"] if f["name"] == "page_pinner")
    assert feature["state"] == "present" and "RFC" in feature["detail"]


def test_page_owner_and_the_events_agree(pp61: PP61) -> None:
    doc = pinspect("trace", str(pp61.trace), "--view", "pfns", "-c", str(pp61.elf), "-s",
                   str(pp61.vmlinux), "--reason", "cma")
    by_pfn = {p["pfn"]: p for p in doc["pfns"]}
    pid = pp61.guest.ground_truth.meta["pid"] if pp61.guest.ground_truth else None
    for pfn in pp61.log["kept"]:
        p = by_pfn[pfn]
        assert p["comm"] == "pinwork"  # the task whose CMA allocation failed
        assert p["dump"]["pinned"], p
        owner = p["dump"]["owner"]
        assert owner is not None and owner["pid"] == pid and owner["comm"] == "pinwork"
    for pfn in pp61.log["released"]:
        assert "extra" not in by_pfn[pfn]["dump"]["evidence"]
