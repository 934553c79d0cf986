"""Self-tests of the real-kernel harness: dumps exist, the ground truth is complete, and plain
drgn sees in each target the struct page values that the workload implies."""

from __future__ import annotations

import gc
import json
import re
import struct
import sys
from typing import Any

import drgn
import pytest

from tests.realkernel.expect import (
    CMA_KINDS,
    CONTROL_KINDS,
    KPF_KSM,
    KSM_KINDS,
    PINNED_KINDS,
    expected,
)
from tests.realkernel.pagefacts import page_facts
from tests.realkernel.rksupport import (
    HERE,
    Booted,
    guest_chroot,
    pinspect_available,
    require_in_guest,
)

KPF_COMPOUND_HEAD = 1 << 15
KPF_THP = 1 << 22


def test_ground_truth_complete(booted: Booted) -> None:
    gt = booted.gt
    kinds = {p["kind"] for p in gt.pages}
    want = PINNED_KINDS | CONTROL_KINDS | (CMA_KINDS if booted.kernel.spec.cma else set())
    assert want <= kinds, f"missing kinds {want - kinds}; log {gt.log}"
    assert gt.meta["pid"] > 1 and gt.meta["peer_pid"] > 1
    if gt.meta["ksm"]["state"] != "absent":  # a kernel with KSM: its pages merged, still KSM
        assert gt.meta["ksm"]["state"] == "merged", f"KSM {gt.meta['ksm']}; log {gt.log}"
        assert KSM_KINDS <= kinds, f"missing kinds {KSM_KINDS - kinds}; log {gt.log}"
    for p in gt.pages:
        assert p["pfn"] > 0
        if p["kind"] in KSM_KINDS:
            assert p["kpageflags"] & KPF_KSM, p
    # KPF_KSM on other pages: none, except where the kernel's /proc/kpageflags sets it on every
    # anonymous page (its test was `mapping & PAGE_MAPPING_KSM`, true for any anon mapping;
    # fixed by "fs/proc: fix KPF_KSM reported for all anonymous pages"): deb612's 6.12.117
    anon = {bool(p["kpageflags"] & KPF_KSM) for p in gt.pages if p["mapping"] == "anon"}
    assert len(anon) == 1, "KPF_KSM on some anonymous pages but not on others"
    if anon == {False}:
        assert all(p["kind"] in KSM_KINDS for p in gt.pages if p["kpageflags"] & KPF_KSM)
        if p["mapcount"] == 2:
            assert p["peer_pfn"] == p["pfn"], p
        if p["nr_pages"] > 1:
            assert p["pfn"] % p["nr_pages"] == 0, p
            assert p["kpageflags"] & KPF_THP and p["kpageflags"] & KPF_COMPOUND_HEAD, p
    pfns = [p["pfn"] for p in gt.pages]
    assert len(pfns) == len(set(pfns)), "two ground-truth pages share a pfn"
    if booted.kernel.spec.cma:
        base, count = gt.meta["cma_base_pfn"], gt.meta["cma_pages"]
        assert count > 0
        for p in gt.pages:
            if p["kind"] in CMA_KINDS:
                assert base <= p["pfn"] < base + count, p


def test_page_owner_records(booted: Booted) -> None:
    if not booted.kernel.spec.page_owner:
        pytest.skip(f"{booted.name} has no page_owner")
    gt = booted.gt
    assert len(gt.page_owner) >= 4, gt.log
    for rec in gt.page_owner:
        text = rec["text"]
        m = re.search(r"PFN (0x[0-9a-f]+|\d+) ", text)
        assert m, text
        assert int(m.group(1), 0) == rec["pfn"], text
        assert f"pid {gt.meta['pid']}" in text, text
        assert "Page allocated via order" in text
        kind = next(p["kind"] for p in gt.pages if p["pfn"] == rec["pfn"])
        assert "handle_mm_fault" in text, text  # all were faulted in by the workload
        if kind.startswith("thp"):
            assert "order 9" in text and "do_huge_pmd_anonymous_page" in text, text
        if kind.startswith("tmpfs"):
            assert "shmem_fault" in text, text
        if kind.startswith("cma"):
            assert re.search(r"Block \d+ type CMA", text), text


def test_dump_files(booted: Booted) -> None:
    elf = booted.dumps["elf"]
    with open(elf, "rb") as f:
        head = f.read(64)
    assert head[:4] == b"\x7fELF" and head[4] == 2  # ELFCLASS64
    assert struct.unpack_from("<H", head, 16)[0] == 4  # ET_CORE
    assert elf.stat().st_size >= booted.kernel.spec.mem_mib << 20
    with open(booted.dumps["kdump"], "rb") as f:
        head = f.read(16)
    assert head.startswith(b"makedumpfile") or head.startswith(b"KDUMP   "), head
    assert booted.dumps["kdump"].stat().st_size < elf.stat().st_size // 4


def check_facts(booted: Booted, facts: dict[int, dict[str, Any]]) -> None:
    """The struct page of every ground-truth pfn shows what the workload implies."""
    wrong = []
    for p in booted.gt.pages:
        exp = expected(p, booted.version)
        got = facts[p["pfn"]]
        if (got["refcount"], got["mapcount"]) != (exp.refcount, exp.mapcount) or (
            exp.pincount is not None and got["pincount"] != exp.pincount
        ):
            wrong.append((p["kind"], p["pfn"], got, exp))
    assert not wrong, "\n".join(map(str, wrong))


def pairs(booted: Booted) -> list[tuple[int, int]]:
    return [(p["pfn"], p["nr_pages"]) for p in booted.gt.pages]


def test_struct_pages_elf(booted: Booted) -> None:
    prog = drgn.Program()
    prog.set_core_dump(str(booted.dumps["elf"]))
    prog.load_debug_info([str(booted.vmlinux)])
    assert prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL
    check_facts(booted, page_facts(prog, pairs(booted)))


def test_struct_pages_kdump(booted: Booted) -> None:
    # drgn cannot open QEMU's flattened kdump-compressed file directly; pinspect.target can
    if not pinspect_available():
        pytest.skip("pinspect (which opens QEMU's flattened kdump files) is not importable yet")
    from pinspect.target import open_program

    prog = open_program(core=str(booted.dumps["kdump"]), vmlinux=[str(booted.vmlinux)])
    check_facts(booted, page_facts(prog, pairs(booted)))


def test_struct_pages_qmp_live(booted: Booted) -> None:
    prog = drgn.Program()
    prog.set_qemu_qmp(str(booted.guest.qmp_test_path))
    assert prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL, "no VMCOREINFO over QMP"
    prog.load_debug_info([str(booted.vmlinux)])
    check_facts(booted, page_facts(prog, pairs(booted)))
    del prog
    gc.collect()


def test_struct_pages_kcore_in_guest(booted: Booted) -> None:
    require_in_guest(booted)
    share = booted.guest.share
    (share / "pfns.json").write_text(json.dumps(pairs(booted)))
    (share / "facts.json").unlink(missing_ok=True)
    argv = [sys.executable, str(HERE / "pagefacts.py"), str(booted.vmlinux)]
    status, text = guest_chroot(
        booted, [*argv, str(share / "pfns.json"), str(share / "facts.json")]
    )
    assert status == 0, text
    raw = json.loads((share / "facts.json").read_text())
    check_facts(booted, {int(k): v for k, v in raw.items()})


def test_paging_levels(booted: Booted) -> None:
    """-cpu max gives the guest 5-level page tables (LA57); max,la57=off 4-level."""
    prog = drgn.Program()
    prog.set_core_dump(str(booted.dumps["elf"]))
    prog.load_debug_info([str(booted.vmlinux)])
    want = 0 if "la57=off" in booted.kernel.spec.cpu else 1
    try:
        l5 = prog["__pgtable_l5_enabled"]
    except KeyError:
        # built without CONFIG_X86_5LEVEL (Debian's 5.10): 4-level page tables only, and
        # PGDIR_SHIFT is the constant 39 (there are no such variables)
        assert want == 0, "a kernel without 5-level paging support on an LA57 CPU"
        assert "CONFIG_X86_5LEVEL=y" not in booted.kernel_config()
        return
    assert l5.value_() == want
    assert prog["pgdir_shift"].value_() == (48 if want else 39)
