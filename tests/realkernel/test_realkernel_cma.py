"""``pinspect cma`` on the kernels booted with ``cma=256M`` (cma61, cma72): the workload's
pages held by vmsplice inside the CMA area are every one a blocker with cause ``extra``, its
control pages in the area are not, and ``--try`` agrees with the blockers: from the dumps, live
over QMP and from /proc/kcore inside the guest."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest

from tests.realkernel.rksupport import CLI, REPO, Booted, run_pinspect, target_args

# kcore: pinspect inside the guest against /proc/kcore (in one batch with the other in-guest runs)
TARGETS = ["elf", "kdump", "qmp", "kcore"]


def cma_pages(pages: list[dict[str, Any]], kind: str) -> list[int]:
    return [p["pfn"] for p in pages if p["kind"] == kind]


def check_cma_document(doc: dict[str, Any], meta: dict[str, Any],
                       pages: list[dict[str, Any]]) -> list[str]:
    """What is wrong with a ``cma --blockers`` JSON document against the ground truth of the
    workload (``meta``: the area it found in the boot log; ``pages``: PINGT records)."""
    problems = []
    assert doc.get("schema_version") == 1 and doc.get("command") == "cma", doc.keys()
    areas = [a for a in doc["areas"] if a["base_pfn"] <= meta["cma_base_pfn"] < a["end_pfn"]]
    if len(areas) != 1:
        return [f"no single area holds pfn {meta['cma_base_pfn']:#x}: {doc['areas']}"]
    area = areas[0]
    if area["count"] != meta["cma_pages"]:
        problems.append(f"area {area['name']}: {area['count']} pages, boot log says "
                        f"{meta['cma_pages']}")
    if area["allocated_pages"] + area["free_pages"] != area["count"]:
        problems.append(f"allocated + free != count: {area}")
    blockers = {b["pfn"]: b for b in doc["blockers"] if b["area"] == area["name"]}
    for pfn in cma_pages(pages, "cma_vmsplice"):
        b = blockers.get(pfn)
        if b is None:
            problems.append(f"cma_vmsplice pfn {pfn:#x}: not a blocker")
        elif b["cause"] != "extra" or b["extra"] < 1 or b["migratetype"] != "CMA":
            problems.append(f"cma_vmsplice pfn {pfn:#x}: {b}")
    for pfn in cma_pages(pages, "cma_control"):
        if pfn in blockers:
            problems.append(f"cma_control pfn {pfn:#x} is a blocker: {blockers[pfn]}")
    by_cause = area["by_cause"]
    if sum(by_cause.values()) != area["blocked_pages"]:
        problems.append(f"by_cause {by_cause} does not add up to {area['blocked_pages']}")
    if by_cause["extra"] < len(cma_pages(pages, "cma_vmsplice")):
        problems.append(f"by_cause extra {by_cause['extra']} < the workload's vmsplice pages")
    return problems


@pytest.fixture
def cma_booted(booted: Booted) -> Booted:
    if not booted.kernel.spec.cma:
        pytest.skip(f"{booted.name} boots without cma=")
    return booted


@pytest.mark.parametrize("target", TARGETS)
def test_cma_blockers_match_the_workload(cma_booted: Booted, target: str) -> None:
    b = cma_booted
    doc = run_pinspect(b, target, "cma", "--blockers")
    problems = check_cma_document(doc, b.gt.meta, b.gt.pages)
    assert not problems, "\n".join(problems)


def test_pinned_cma_filter(cma_booted: Booted) -> None:
    b = cma_booted
    doc = run_pinspect(b, "elf", "cma")
    (area,) = [a for a in doc["areas"] if a["base_pfn"] <= b.gt.meta["cma_base_pfn"]
               < a["end_pfn"]]
    pinned = run_pinspect(b, "elf", "pinned", "--cma", area["name"])
    pfns = {r["pfn"] for r in pinned["pages"]}
    assert set(cma_pages(b.gt.pages, "cma_vmsplice")) <= pfns
    assert not set(cma_pages(b.gt.pages, "cma_control")) & pfns
    assert all(r["cma"] == area["name"] for r in pinned["pages"])


def test_try_agrees_with_the_blockers(cma_booted: Booted) -> None:
    b = cma_booted
    doc = run_pinspect(b, "elf", "cma", "--blockers")
    (area,) = [a for a in doc["areas"] if a["base_pfn"] <= b.gt.meta["cma_base_pfn"]
               < a["end_pfn"]]
    name = area["name"]
    blocked = {p for x in doc["blockers"] if x["area"] == name
               for p in range(x["pfn"], x["pfn"] + x["nr_pages"])}
    one = run_pinspect(b, "elf", "cma", name, "--try", "1")["try"]
    assert one["succeeds"] and one["pfn"] not in blocked, one
    # The whole area, when its free part holds blockers: fails, and names them.
    whole = run_pinspect(b, "elf", "cma", name, "--try", str(area["count"]))["try"]
    if area["allocated_pages"] == 0 and blocked:
        assert not whole["succeeds"] and whole["best_failing"]["blocked"] == len(blocked), whole
        assert set(whole["best_failing_blockers"]) == {x["pfn"] for x in doc["blockers"]
                                                       if x["area"] == name}
    # A window that avoids every blocker, aligned to a pageblock: succeeds outside them.
    block = run_pinspect(b, "elf", "cma", name, "--try", "512", "--align", "9")["try"]
    if block["succeeds"]:
        assert not any(block["pfn"] <= p < block["pfn"] + 512 for p in blocked), block
        assert block["pfn"] % 512 == 0


def test_cma_debugfs_allocations_agree(cma_booted: Booted) -> None:
    """With CONFIG_CMA_DEBUGFS the workload asked the kernel itself: cma_alloc() of the whole
    area failed on the pages it held, one of 1024 pages succeeded (and was freed). --try on the
    dump predicts both, and the kernel's counters in the dump (CONFIG_CMA_SYSFS) agree."""
    b = cma_booted
    meta = b.gt.meta.get("cma_debugfs")
    if not meta:
        pytest.skip(f"{b.name} has no CMA debugfs (CONFIG_CMA_DEBUGFS)")
    assert meta["fail_errno"] != 0, meta  # the kernel's verdict: -ENOMEM after -EBUSY
    assert meta["ok_errno"] == 0 and meta["free_errno"] == 0, meta
    doc = run_pinspect(b, "elf", "cma", meta["area"])
    (area,) = doc["areas"]
    fail = run_pinspect(b, "elf", "cma", meta["area"], "--try", str(meta["fail_pages"]))["try"]
    assert not fail["succeeds"] and fail["best_failing"] is not None, fail
    assert fail["best_failing_blockers"], fail
    ok = run_pinspect(b, "elf", "cma", meta["area"], "--try", str(meta["ok_pages"]))["try"]
    assert ok["succeeds"], ok
    if area["nr_pages_succeeded"] is not None:  # CONFIG_CMA_SYSFS
        assert area["nr_pages_failed"] == meta["fail_pages"], area
        assert area["nr_pages_succeeded"] >= meta["ok_pages"], area
        if area["nr_pages_released"] is not None:
            assert area["nr_pages_succeeded"] - area["nr_pages_released"] == \
                area["allocated_pages"], area
    if area["available_count"] is not None:
        assert area["available_count"] == area["free_pages"], area


def test_kernels_without_areas_are_refused(booted: Booted) -> None:
    """On the kernels booted without cma=: one line that says why, exit code 2."""
    if booted.kernel.spec.cma:
        pytest.skip(f"{booted.name} has a CMA area")
    proc = subprocess.run([sys.executable, "-c", CLI, *target_args(booted, "elf"), "cma"],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 2, proc
    first = proc.stderr.splitlines()[0]
    assert re.fullmatch(r"pinspect: error: 'cma' needs cma, which is (absent|off) here", first), \
        proc.stderr
