"""KSM pages on real kernels: the workload (pinwork.c, ksm_phase) has ksmd merge pages of
identical content in two processes (its own and a forked child's, two mms) and splices some of
the merged pages into a pipe it keeps open. pinspect must say mapping ``ksm`` for them, name
both processes at their own addresses (the stable node's rmap_items) and the pipe holder with
the workload's pid, on every target; the merged pages nobody holds are not reported by
`pinned` but `page` shows them with both mappers. Kernels without CONFIG_KSM (the custom
cma61, cma72, pp61) skip."""

from __future__ import annotations

from typing import Any

import pytest

from tests.realkernel.expect import KPF_KSM, expected, zone_of_pfn
from tests.realkernel.rksupport import Booted, in_guest_runs, run_pinspect
from tests.realkernel.rmapcheck import ksm_mapper_problems

TARGETS = ["elf", "kdump", "qmp", "kcore"]


def ksm_pages(b: Booted, kind: str | None = None) -> list[dict[str, Any]]:
    """The workload's KSM pages (of *kind*); skips on a kernel without KSM."""
    ksm = b.gt.meta["ksm"]
    if ksm["state"] == "absent":
        pytest.skip(f"{b.name}: no /sys/kernel/mm/ksm/run (kernel built without CONFIG_KSM)")
    assert ksm["state"] == "merged", f"{b.name}: KSM {ksm}; log {b.gt.log}"
    pages = [p for p in b.gt.pages if p["kind"].startswith("ksm")
             and (kind is None or p["kind"] == kind)]
    assert pages, b.gt.log
    return pages


def test_ksm_ground_truth(booted: Booted) -> None:
    """Both processes map each KSM page on one pfn that /proc/kpageflags calls KSM, and the
    splice left it KSM (the workload reads pagemap and kpageflags again at the end)."""
    pages = ksm_pages(booted)
    ksm = booted.gt.meta["ksm"]
    assert ksm["merged"] == ksm["pages"] == len(pages)
    for p in pages:
        assert p["kpageflags"] & KPF_KSM and p["peer_pfn"] == p["pfn"], p
        assert p["mapping"] == "ksm" and p["mapcount"] == 2, p
        assert [m["pid"] for m in p["mappers"]] == [booted.gt.meta["pid"], ksm["child_pid"]]
    assert {p["kind"] for p in pages} == {"ksm_vmsplice", "ksm_control"}
    assert len({p["pfn"] for p in pages}) == len(pages)


def _pinned(b: Booted, target: str) -> dict[str, Any]:
    if target == "kcore":  # the in-guest batch's command (tests/realkernel/rksupport.py)
        return run_pinspect(b, target, "pinned", "--zone", "Normal")
    return run_pinspect(b, target, "pinned")


def pinned_ksm_problems(b: Booted, doc: dict[str, Any], zone: str | None = None) -> list[str]:
    """What `pinned`'s *doc* gets wrong about the KSM pages (those of *zone* only, if given)."""
    rows = {int(r["pfn"]): r for r in doc["pages"]}
    problems = []
    pid = b.gt.meta["pid"]
    for p in ksm_pages(b):
        if zone and zone_of_pfn(p["pfn"]) != zone:
            continue
        where = f"{p['kind']} pfn {p['pfn']}"
        row = rows.get(p["pfn"])
        if not p["pinned"]:
            if row is not None:
                problems.append(f"{where}: reported, but nothing holds it: {row}")
            continue
        if row is None:
            problems.append(f"{where}: not reported")
            continue
        exp = expected(p, b.version)
        got = (row["refcount"], row["mapcount"], row["extra"], row["evidence"])
        if got != (exp.refcount, exp.mapcount, exp.extra, list(exp.evidence)):
            problems.append(f"{where}: refcount/mapcount/extra/evidence {got}, want {exp}")
        problems += ksm_mapper_problems(where, p, row)
        pipes = [(h["kind"], h["pid"], h["count"]) for h in row["holders"] or []]
        if pipes != [("pipe", pid, 1)]:
            problems.append(f"{where}: holders {row['holders']}, want one pipe of pid {pid}")
        if row["unexplained_extra"] or row["unexplained_pins"]:
            problems.append(f"{where}: unexplained {row['unexplained_extra']} extra")
    return problems


@pytest.mark.parametrize("target", TARGETS)
def test_pinned_ksm(booted: Booted, target: str) -> None:
    """`pinned`: the spliced KSM pages as mapping ksm, both mappers, the pipe holder; the
    merged pages nobody holds are not reported. In the guest (/proc/kcore, which the tier
    scans in the Normal zone only) the pages of that zone."""
    ksm_pages(booted)
    zone = None
    if target == "kcore":
        if not in_guest_runs(booted):
            pytest.skip(f"{booted.name} shares no host root for in-guest runs")
        zone = "Normal"
        if not any(zone_of_pfn(p["pfn"]) == zone for p in ksm_pages(booted, "ksm_vmsplice")):
            pytest.skip("no spliced KSM page in the Normal zone, which the in-guest run scans")
    doc = _pinned(booted, target)
    problems = pinned_ksm_problems(booted, doc, zone)
    assert not problems, "\n".join(problems)
    assert doc["rmap"]["unresolved"] == 0, doc["rmap"]


@pytest.mark.parametrize("target", ["elf", "kdump", "qmp"])
def test_page_ksm(booted: Booted, target: str) -> None:
    """`page PFN` of a spliced and of an unheld KSM page: mapping ksm, both mappers at their
    addresses; the pipe holder of the spliced one, no holder of the other."""
    pid = booted.gt.meta["pid"]
    problems = []
    for kind in ("ksm_vmsplice", "ksm_control"):
        p = ksm_pages(booted, kind)[0]
        doc = run_pinspect(booted, target, "page", str(p["pfn"]))
        where = f"{kind} pfn {p['pfn']}"
        folio = doc["folio"]
        if folio is None:
            problems.append(f"{where}: no folio in {doc}")
            continue
        problems += ksm_mapper_problems(where, p, {"mapping": folio["mapping"],
                                                   "mappers": doc["mappers"]})
        holders = [(h["kind"], h["pid"], h["count"]) for h in doc["holders"]]
        want = [("pipe", pid, 1)] if p["pinned"] else []
        if holders != want:
            problems.append(f"{where}: holders {holders}, want {want}")
    assert not problems, "\n".join(problems)
