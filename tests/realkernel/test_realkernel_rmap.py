"""The reverse map and the kernel holders against the workload's ground truth, on every
target: each pinned page names the pid that pinned it, its vaddr, its file (tmpfs, SysV,
shared anonymous), the peer process of shared mappings, and its holder (io_uring ring or
pipe) with the owning pid; nothing is unexplained; LRU-batch references are transient."""

from __future__ import annotations

import pytest

from tests.realkernel.rksupport import Booted, run_pinspect
from tests.realkernel.rmapcheck import rmap_problems

TARGETS = ["elf", "kdump", "qmp", "kcore"]


def _pinned(b: Booted, target: str) -> dict:  # type: ignore[type-arg]
    if target == "kcore":
        return run_pinspect(b, target, "pinned", "--zone", "Normal")
    return run_pinspect(b, target, "pinned")


@pytest.mark.parametrize("target", TARGETS)
def test_owners_match_ground_truth(booted: Booted, target: str) -> None:
    doc = _pinned(booted, target)
    meta = booted.gt.meta
    problems = rmap_problems(booted.gt.pages, meta, doc, booted.version)
    assert not problems, "\n".join(problems)
    rmap = doc["rmap"]
    assert rmap["unresolved"] == 0 and rmap["no_process"] == 0, rmap
    assert rmap["holders"] == ["io_uring", "pipe", "lru_batch"]


def test_has_pinned_hint(booted: Booted) -> None:
    """The workload's mm has MMF_HAS_PINNED (or mm->has_pinned) set; the peer, which pinned
    nothing, has not, and has no pinned_vm (io_uring accounts its buffers to the ring's
    mm_account up to 6.x; 7.2 leaves pinned_vm at 0)."""
    doc = run_pinspect(booted, "elf", "pinned")
    meta = booted.gt.meta
    mappers = [m for r in doc["pages"] for m in r["mappers"] or []]
    mine = [m for m in mappers if m["pid"] == meta["pid"]]
    peer = [m for m in mappers if m["pid"] == meta["peer_pid"]]
    assert mine and all(m["has_pinned"] for m in mine), mine[:1]
    assert peer and not any(m["has_pinned"] or m["pinned_vm"] for m in peer), peer[:1]


def test_owners_command(booted: Booted) -> None:
    """`owners` groups the workload's folios under its pid, the shared ones under the peer too,
    and lists an io_uring and a pipe holder of the workload."""
    doc = run_pinspect(booted, "elf", "owners")
    meta = booted.gt.meta
    procs = {g["pid"]: g for g in doc["processes"]}
    pinned = booted.gt.pinned()
    assert procs[meta["pid"]]["folios"] >= len({p["pfn"] for p in pinned})
    assert procs[meta["peer_pid"]]["folios"] >= 2
    kinds = {g["name"].split("(")[0] for g in doc["holders"] if g["pid"] == meta["pid"]}
    assert {"io_uring", "pipe"} <= kinds, doc["holders"]
    assert doc["unexplained"]["pins"] == 0


def test_filters(booted: Booted) -> None:
    meta = booted.gt.meta
    doc = run_pinspect(booted, "elf", "pinned", "--holder", "pipe", "--pid", str(meta["pid"]))
    gets = {p["pfn"] for p in booted.gt.pinned() if p["gets"]}
    assert gets <= {r["pfn"] for r in doc["pages"]}
    assert all(any(h["kind"] == "pipe" for h in r["holders"]) for r in doc["pages"])
    doc = run_pinspect(booted, "elf", "pinned", "--file", "SYSV*")
    sysv = {p["pfn"] for p in booted.gt.pinned() if p["kind"].startswith("sysv")}
    assert {r["pfn"] for r in doc["pages"]} == sysv


def test_bad_input_is_bounded_and_counted(booted: Booted) -> None:
    """Loops and wild pointers in an anon_vma tree, the task list, an fd table and a pipe ring
    (overlaid on the real ELF dump): the walks end, each problem is counted, and every folio
    is either mapped back or counted as unresolved. (Whether the broken tree hides one of the
    pinned folios depends on the tree's shape: on deb72 and deb612 the folio's VMA sits in
    the root node that stays readable.)"""
    from pinspect.target import open_program
    from tests.realkernel.corrupt_rmap import corrupt_and_map

    prog = open_program(core=str(booted.dumps["elf"]), vmlinux=[str(booted.vmlinux)])
    result = corrupt_and_map(prog)
    summary = result["summary"]
    assert result["seconds"] < 30
    kinds = {w.rsplit(":", 1)[0] for w in summary.warnings}
    assert {"anon_vma tree: cycle", "anon_vma tree: unreadable node", "task list: broken list",
            "open file: unreadable struct file", "pipe: unreadable buffers"} <= kinds, kinds
    assert summary.with_mappers > 0
    assert summary.with_mappers + summary.unresolved <= summary.folios
