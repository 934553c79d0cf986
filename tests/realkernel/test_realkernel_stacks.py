"""`pinspect stacks` and `pinner-log` on real kernels: on the page_owner kernel (cma61) the
pinned pages group by the allocation stacks the guest itself read from
/sys/kernel/debug/page_owner; kernels without page_pinner refuse `pinner-log` in one line."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
from typing import Any

import pytest

from pinspect.commands.stacks import DEFAULT_PATTERNS
from tests.realkernel.rksupport import CLI, REPO, Booted, run_pinspect, target_args


def expected_key(text: str, ignored: tuple[str, ...] = DEFAULT_PATTERNS) -> list[str]:
    """The frames of a page_owner debugfs record without the ignored ones, as `stacks` keys
    them (``func+0xoff``, no size)."""
    key = []
    for line in text.splitlines():
        if not line.startswith(" "):
            continue
        frame = line[1:]
        function, _, rest = frame.partition("+")
        if any(fnmatch.fnmatchcase(function.split(".")[0], p) or fnmatch.fnmatchcase(function, p)
               for p in ignored):
            continue
        key.append(f"{function}+{rest.split('/')[0]}" + (f" {rest.split(' ', 1)[1]}"
                                                           if " [" in rest else ""))
    return key


def group_of(doc: dict[str, Any], pfn: int) -> dict[str, Any] | None:
    for group in doc["groups"]:
        if pfn in group["pfns"]:
            return group
    return None


@pytest.mark.parametrize("target", ["elf", "kdump", "qmp"])
def test_stacks_group_by_the_guests_page_owner_records(booted: Booted, target: str) -> None:
    if not booted.kernel.spec.page_owner:
        pytest.skip(f"{booted.name} has no page_owner")
    assert booted.gt.page_owner
    doc = run_pinspect(booted, target, "stacks", "--top", "0")
    assert doc["by"] == "auto" and doc["warnings"] == []
    assert [s["state"] for s in doc["sources"] if s["name"] == "page_owner"] == ["present"]
    pinned = run_pinspect(booted, target, "pinned")
    if target != "qmp":  # a live kernel's other pages come and go between the two runs
        assert doc["pages"] == pinned["summary"]["pages"]
    assert sum(g["pages"] for g in doc["groups"]) == doc["pages"]
    problems = []
    for rec in booted.gt.page_owner:
        group = group_of(doc, rec["pfn"])
        if group is None:
            problems.append(f"pfn {rec['pfn']}: in no group")
            continue
        want = expected_key(rec["text"])
        if group["stack"] != want:
            problems.append(f"pfn {rec['pfn']}: stack {group['stack']}, want {want}")
        if group["source"] != "page_owner (allocation)":
            problems.append(f"pfn {rec['pfn']}: source {group['source']}")
        if not any(p["comm"] == "pinwork" for p in group["processes"]):
            problems.append(f"pfn {rec['pfn']}: processes {group['processes']}")
    # every pinned page of the workload is in a group that names the workload
    pids = {p["pid"] for p in booted.gt.pinned()}
    for p in booted.gt.pinned():
        group = group_of(doc, p["pfn"])
        if group is None or not {q["pid"] for q in group["processes"]} & pids:
            problems.append(f"{p['kind']} pfn {p['pfn']}: group {group and group['rank']}")
    assert not problems, "\n".join(problems)


def test_stacks_without_default_ignores_keep_the_allocator(booted: Booted) -> None:
    if not booted.kernel.spec.page_owner:
        pytest.skip(f"{booted.name} has no page_owner")
    doc = run_pinspect(booted, "elf", "stacks", "--top", "0", "--no-default-ignores")
    assert doc["ignored_frames"] == []
    for rec in booted.gt.page_owner:
        group = group_of(doc, rec["pfn"])
        assert group is not None
        assert group["stack"] == expected_key(rec["text"], ())


def test_pinner_log_refused_without_page_pinner(booted: Booted) -> None:
    proc = subprocess.run([sys.executable, "-c", CLI, *target_args(booted, "elf"), "pinner-log"],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    if booted.pinner_marked is not None:  # pp61: page_pinner's RFC variant, a flag and no log
        assert "variant RFC keeps no ring buffer" in proc.stderr, proc.stderr
    else:
        assert "page_pinner" in proc.stderr and "CONFIG_PAGE_PINNER" in proc.stderr
    assert "Traceback" not in proc.stderr
