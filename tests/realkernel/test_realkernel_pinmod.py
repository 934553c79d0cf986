"""Stacks with module frames (issue 11): on cma61 the test module pinmod.ko (pinmod.c) allocated
shmem pages from its own functions, holds an extra reference on some and released the others.
pinspect reports the held pages pinned (evidence ``extra``) and not the released ones, and their
page_owner allocation stacks equal, frame by frame (``func+0xoff/0xsize [pinmod]``), what the
guest read from /sys/kernel/debug/page_owner: with the module's debug info given to drgn, with
it stripped, with none (the module's kallsyms in memory) and with no vmlinux at all (BTF)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.realkernel.expect import expected_module_page
from tests.realkernel.rksupport import (
    Booted,
    log,
    require_pinspect,
    run_pinspect_host,
    run_pinspect_in_guest,
    unavailable,
)
from tests.realkernel.test_realkernel_stacks import expected_key, group_of

MODULE = "pinmod"
# where the module's debug info comes from: drgn gets pinmod.ko with its DWARF, the same file
# stripped of it, or no module file at all; "btf": no vmlinux either (BTF and kallsyms)
DEBUG_MODES = ["module_dwarf", "module_stripped", "no_module_file", "btf"]
TARGETS = ["elf", "kdump", "qmp"]


def module_file(b: Booted) -> Path:
    for m in b.kernel.modules:
        if m.name == f"{MODULE}.ko":
            return m
    pytest.skip(f"{b.name} does not load {MODULE}.ko")


def stripped_module(b: Booted) -> Path:
    """pinmod.ko without its debug info (as a vendor ships a driver), beside the run's dumps."""
    out = b.dumps["elf"].parent / f"{MODULE}-stripped.ko"
    if shutil.which("objcopy") is None or shutil.which("readelf") is None:
        unavailable("binutils (objcopy, readelf) not installed")
    if not out.exists():
        subprocess.run(["objcopy", "--strip-debug", str(module_file(b)), str(out)], check=True)
    return out


def _has_section(path: Path, prefix: str) -> bool:
    out = subprocess.run(["readelf", "-S", "-W", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return any(f" {prefix}" in line for line in out.splitlines())


def mode_args(b: Booted, target: str, mode: str) -> list[str]:
    if target in ("elf", "kdump"):
        where = ["-c", str(b.dumps[target])]
    elif target == "qmp":
        where = ["--qemu", str(b.guest.qmp_drgn_path)]
    else:
        where = []  # kcore: the running kernel inside the guest
    if mode == "btf":
        return [*where, "--btf"]
    if mode == "auto":  # nothing given: pinspect finds no DWARF and falls back to BTF itself
        return where
    files = [str(b.vmlinux)]
    if mode == "module_dwarf":
        files.append(str(module_file(b)))
    elif mode == "module_stripped":
        files.append(str(stripped_module(b)))
    return [*where, *(a for f in files for a in ("-s", f))]


def run(b: Booted, target: str, mode: str, *command: str) -> dict[str, Any]:
    require_pinspect()
    key = ("pinmod", target, mode, *command)
    if key not in b.cli_cache:
        args = [*mode_args(b, target, mode), "--format", "json", *command]
        if target == "kcore":
            b.cli_cache[key] = run_pinspect_in_guest(b, args)
        else:
            b.cli_cache[key] = run_pinspect_host(args)
        log(f"{b.name}: pinspect [{mode}] {' '.join(command)} on {target}")
    return b.cli_cache[key]  # type: ignore[no-any-return]


def need_module_pages(b: Booted) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    module_file(b)
    held = [p for p in b.gt.module_pages if p["held"]]
    released = [p for p in b.gt.module_pages if not p["held"]]
    assert held and released, f"no pinmod pages in the ground truth; log {b.gt.log}"
    return held, released


def need_mode(b: Booted, mode: str) -> None:
    if mode in ("btf", "auto") and "CONFIG_DEBUG_INFO_BTF=y" not in b.kernel_config():
        pytest.skip(f"{b.name} is built without CONFIG_DEBUG_INFO_BTF")


def pfn_range(b: Booted) -> str:
    pfns = [p["pfn"] for p in b.gt.module_pages]
    return f"{min(pfns)}-{max(pfns)}"


def frames(text: str) -> list[str]:
    """The stack of a page_owner debugfs record, one %pS frame per line."""
    return [line[1:] for line in text.splitlines() if line.startswith(" ")]


def test_module_ground_truth(booted: Booted) -> None:
    """The guest's own page_owner records of the held pages name the module's functions."""
    held, _ = need_module_pages(booted)
    assert {r["pfn"] for r in booted.gt.module_owner} == {p["pfn"] for p in held}
    for rec in booted.gt.module_owner:
        stack = frames(rec["text"])
        mine = [f for f in stack if f.endswith(f" [{MODULE}]")]
        names = [f.split("+")[0] for f in mine]
        assert {"pinmod_alloc_page", "pinmod_fill", "pinmod_write"} <= set(names), stack
        assert any(f.startswith("shmem_read_mapping_page_gfp+") for f in stack), stack
        assert f"pid {booted.gt.meta['pid']}" in rec["text"], rec["text"]
    pfns = [p["pfn"] for p in booted.gt.module_pages]
    assert len(set(pfns)) == len(pfns) and not set(pfns) & {p["pfn"] for p in booted.gt.pages}


def test_module_struct_pages(booted: Booted) -> None:
    """The premise, read with drgn alone from the ELF dump: each held page has the page cache's
    reference and the module's, each released page the page cache's only; none is mapped."""
    import drgn

    from tests.realkernel.pagefacts import page_facts

    need_module_pages(booted)
    prog = drgn.Program()
    prog.set_core_dump(str(booted.dumps["elf"]))
    prog.load_debug_info([str(booted.vmlinux)])
    facts = page_facts(prog, [(p["pfn"], 1) for p in booted.gt.module_pages])
    wrong = []
    for p in booted.gt.module_pages:
        exp = expected_module_page(p)
        got = facts[p["pfn"]]
        if (got["refcount"], got["mapcount"]) != (exp.refcount, exp.mapcount):
            wrong.append((p, got))
    assert not wrong, wrong


def test_stripped_module_has_no_debug_info(booted: Booted) -> None:
    """The premise of the stripped mode: the module file pinspect gets there has a symbol
    table but no DWARF, while the built module has both."""
    module = module_file(booted)
    assert _has_section(module, ".debug_info") and _has_section(module, ".symtab")
    stripped = stripped_module(booted)
    assert not _has_section(stripped, ".debug_info") and _has_section(stripped, ".symtab")


@pytest.mark.parametrize("mode", DEBUG_MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_module_pages_and_stacks(booted: Booted, target: str, mode: str) -> None:
    """The held pages are pinned (extra 1, refcount 2: page cache + the module; no mapping by a
    process), the released ones are not; each held page's owner is the guest's record, its
    stack frame by frame with the [pinmod] frames."""
    held, released = need_module_pages(booted)
    need_mode(booted, mode)
    doc = run(booted, target, mode, "pinned", "--pfn", pfn_range(booted))
    assert doc["warnings"] == []
    rows = {int(r["pfn"]): r for r in doc["pages"]}
    owner_text = {r["pfn"]: r["text"] for r in booted.gt.module_owner}
    problems = []
    for p in held:
        row = rows.get(p["pfn"])
        if row is None:
            problems.append(f"held pfn {p['pfn']}: not reported")
            continue
        exp = expected_module_page(p)
        for k, v in (("refcount", exp.refcount), ("mapcount", exp.mapcount), ("pins", exp.pins),
                     ("extra", exp.extra), ("evidence", list(exp.evidence)),
                     ("mapping", exp.mapping), ("zone", exp.zone)):
            if row.get(k) != v:
                problems.append(f"held pfn {p['pfn']} {k}: got {row.get(k)!r}, want {v!r}")
        owner = row.get("owner") or {}
        want = frames(owner_text[p["pfn"]])
        if owner.get("stack") != want:
            problems.append(f"held pfn {p['pfn']} stack:\n  got  {owner.get('stack')}\n"
                            f"  want {want}")
        if owner.get("pid") != booted.gt.meta["pid"] or owner.get("comm") != "pinwork":
            problems.append(f"held pfn {p['pfn']}: owner {owner.get('pid')} {owner.get('comm')}")
    for p in released:
        if p["pfn"] in rows:
            problems.append(f"released pfn {p['pfn']} reported: {rows[p['pfn']]}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("mode", ["module_stripped", "auto"])
def test_in_guest_kcore(booted: Booted, mode: str) -> None:
    """The same from /proc/kcore inside the guest (the host's / over 9p): with vmlinux and the
    stripped module, and with no file given at all: no DWARF for this kernel anywhere drgn
    looks, so pinspect takes /sys/kernel/btf/vmlinux and /proc/kallsyms by itself."""
    held, _ = need_module_pages(booted)
    need_mode(booted, mode)
    if not booted.kernel.spec.virtfs:
        pytest.skip(f"{booted.name} has no 9p root for in-guest runs")
    doc = run(booted, "kcore", mode, "pinned", "--pfn", pfn_range(booted))
    rows = {int(r["pfn"]): r for r in doc["pages"]}
    for rec in booted.gt.module_owner:
        row = rows.get(rec["pfn"])
        assert row is not None and row["evidence"] == ["extra"], (rec["pfn"], row)
        assert row["owner"]["stack"] == frames(rec["text"]), rec["pfn"]
    info = run(booted, "kcore", mode, "info")
    if mode == "auto":
        assert info["type_source"]["name"] == "BTF", info["type_source"]
        assert info["type_source"]["origin"].startswith("/sys/kernel/btf/vmlinux")
        assert info["symbol_source"]["origin"] == "/proc/kallsyms"
    else:
        assert info["type_source"]["name"] == "DWARF", info["type_source"]


@pytest.mark.parametrize("mode", ["module_stripped", "btf"])
def test_stacks_groups_the_module_pages(booted: Booted, mode: str) -> None:
    """`stacks` puts the held pages into one group keyed by the guest's frames, [pinmod]
    frames included, with the workload as the allocating process."""
    held, _ = need_module_pages(booted)
    need_mode(booted, mode)
    doc = run(booted, "elf", mode, "stacks", "--top", "0")
    owner_text = {r["pfn"]: r["text"] for r in booted.gt.module_owner}
    groups = set()
    for p in held:
        group = group_of(doc, p["pfn"])
        assert group is not None, p
        assert group["stack"] == expected_key(owner_text[p["pfn"]]), group["stack"]
        assert any(f.endswith(f" [{MODULE}]") for f in group["stack"]), group["stack"]
        assert any(q["comm"] == "pinwork" for q in group["processes"]), group
        groups.add(group["rank"])
    assert len(groups) == 1, groups
