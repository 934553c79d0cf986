"""The synthetic dumps in vmcore-samples/: each opens in plain drgn as a Linux
kernel, drgn's own helpers work on it, and what drgn reads agrees with the
sample's ground-truth file.  Also: the generator is deterministic."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

drgn = pytest.importorskip("drgn")
from drgn import Object, Program, ProgramFlags  # noqa: E402
from drgn.helpers.linux.cpumask import for_each_online_cpu  # noqa: E402
from drgn.helpers.linux.mm import (  # noqa: E402
    PageSlab,
    compound_order,
    decode_page_flags,
    for_each_valid_page_range,
    page_flags,
    pfn_to_page,
)
from drgn.helpers.linux.mmzone import for_each_online_pgdat, pfn_to_section  # noqa: E402
from drgn.helpers.linux.percpu import per_cpu_ptr  # noqa: E402
from drgn.helpers.linux.stackdepot import stack_depot_fetch  # noqa: E402
from drgn.helpers.linux.vmstat import zone_page_state  # noqa: E402

from tests.sampledata import SAMPLE_NAMES, SAMPLES_DIR  # noqa: E402

NAMES = SAMPLE_NAMES


def sample_paths(name: str) -> tuple[Path, Path, Path]:
    """(core, debug, truth) paths of a bundled sample."""
    return (
        SAMPLES_DIR / f"{name}.core",
        SAMPLES_DIR / f"{name}.debug",
        SAMPLES_DIR / f"{name}.truth.json",
    )


@cache
def truth(name: str) -> dict[str, Any]:
    return json.loads(sample_paths(name)[2].read_text())


@cache
def program(name: str) -> Program:
    core, debug, _ = sample_paths(name)
    prog = Program()
    prog.set_core_dump(str(core))
    prog.load_debug_info([str(debug)])
    return prog


def symbolize(prog: Program, pc: int) -> str:
    """*pc* as the kernel's %pS prints it: the size is the distance to the next kernel symbol
    (kallsyms keeps no sizes)."""
    sym = prog.symbol(pc)
    following = [s.address for s in prog.symbols() if s.address > sym.address >= 1 << 63]
    size = min(following) - sym.address if following else sym.size
    return f"{sym.name}+{pc - sym.address:#x}/{size:#x}"


def page_ext_entry(prog: Program, pfn: int) -> int:
    sec = pfn_to_section(prog, pfn)
    base = sec.page_ext.value_()
    assert base and not base & 1
    return (base + prog["page_ext_size"].value_() * pfn) & (2**64 - 1)


pytestmark = pytest.mark.skipif(not NAMES, reason="no samples built")


@pytest.mark.parametrize("name", NAMES)
def test_opens_as_kernel(name: str) -> None:
    prog = program(name)
    t = truth(name)
    assert prog.flags & ProgramFlags.IS_LINUX_KERNEL
    assert prog["UTS_RELEASE"].string_().decode() == t["osrelease"]
    assert prog["init_uts_ns"].name.release.string_().decode() == t["osrelease"]
    main = prog.main_module()
    assert main is not None and main.build_id is not None
    assert main.build_id.hex() == t["build_id"]


@pytest.mark.parametrize("name", NAMES)
def test_pgdat_and_zones(name: str) -> None:
    prog = program(name)
    t = truth(name)
    pgdats = list(for_each_online_pgdat(prog))
    assert len(pgdats) == 1
    zones = {z["zone"]: z for z in t["zones"]}
    seen = 0
    for z in pgdats[0].node_zones[: pgdats[0].nr_zones.value_()]:
        zname = z.name.string_().decode()
        if zname not in zones:
            assert z.present_pages.value_() == 0
            continue
        tz = zones[zname]
        seen += 1
        assert z.zone_start_pfn.value_() == tz["start_pfn"]
        assert z.spanned_pages.value_() == tz["spanned"]
        assert z.present_pages.value_() == tz["present"]
        assert z.managed_pages.counter.value_() == tz["managed"]
        assert zone_page_state(z, prog["NR_FREE_PAGES"]) == tz["free"]
        assert zone_page_state(z, prog["NR_FREE_CMA_PAGES"]) == tz["free_cma"]
        # the buddy free lists hold exactly NR_FREE_PAGES pages
        total = 0
        for order in range(len(z.free_area)):
            area = z.free_area[order]
            n = 0
            for mt in range(len(area.free_list)):
                head = area.free_list[mt].address_of_()
                pos = head.next
                while pos != head:
                    page = drgn.container_of(pos, "struct page", "lru")
                    assert page.private.value_() == order
                    n += 1
                    pos = pos.next
            assert n == area.nr_free.value_()
            total += n << order
        assert total == tz["free"]
    assert seen == len(zones)


@pytest.mark.parametrize("name", NAMES)
def test_per_cpu_page_lists_are_empty(name: str) -> None:
    prog = program(name)
    cpus = list(for_each_online_cpu(prog))
    assert len(cpus) == truth(name)["facts"]["nr_cpus"]
    pgdat = next(for_each_online_pgdat(prog))
    for zone in pgdat.node_zones:
        for cpu in cpus:
            if zone.type_.has_member("pageset"):
                # up to 5.13: struct per_cpu_pageset holds the lists and the diffs
                pageset = per_cpu_ptr(zone.pageset, cpu)
                pcp, diff = pageset.pcp, pageset.vm_stat_diff
            else:
                pcp = per_cpu_ptr(zone.per_cpu_pageset, cpu)
                diff = per_cpu_ptr(zone.per_cpu_zonestats, cpu).vm_stat_diff
            assert pcp.count.value_() == 0
            for lst in pcp.lists:
                assert lst.next == lst.address_of_()
            assert all(d.value_() == 0 for d in diff)


@pytest.mark.parametrize("name", NAMES)
def test_valid_page_ranges(name: str) -> None:
    prog = program(name)
    ranges = [(s, e) for s, e, _ in for_each_valid_page_range(prog)]
    assert ranges == [tuple(r) for r in truth(name)["facts"]["ram"]]


@pytest.mark.parametrize("name", NAMES)
def test_truth_pages_match_struct_pages(name: str) -> None:
    prog = program(name)
    t = truth(name)
    rows = t["pinned"] + t["controls"]
    assert rows and t["pinned"]
    assert [p["pfn"] for p in t["pinned"]] == sorted(p["pfn"] for p in t["pinned"])
    for row in rows:
        page = pfn_to_page(prog, row["pfn"])
        assert page_flags(page).value_() == row["flags"]
        assert page._refcount.counter.value_() == row["refcount"]
        names = decode_page_flags(page)
        if row["order"]:
            assert "PG_head" in names
            if page.type_.type.has_member("hpage_pinned_refcount"):
                # 5.7-5.17: the pin count of an order > 1 page is in page[2]
                assert page[2].hpage_pinned_refcount.counter.value_() == row["pins"]
            else:
                folio = Object(prog, "struct folio", address=page.value_())
                assert folio._pincount.counter.value_() == row["pins"]
        else:
            assert page._mapcount.counter.value_() + 1 == row["mapcount"]
            if "foll_pin" in row["evidence"]:
                assert row["refcount"] >= 1024
        assert "PG_lru" in names
        assert row["refcount"] == (
            row["expected_refcount"] + row["extra"] + row["pins"] * (1 if row["order"] else 1024)
        )


@pytest.mark.parametrize("name", NAMES)
def test_classified_pages(name: str) -> None:
    prog = program(name)
    t = truth(name)
    cls = t["classified"]
    for start, end in cls["slab"]:
        assert PageSlab(pfn_to_page(prog, start))
        assert PageSlab(pfn_to_page(prog, end - 1))
    for start, _ in cls["reserved"]:
        assert "PG_reserved" in decode_page_flags(pfn_to_page(prog, start))
    buddy = int(
        prog["VMCOREINFO"].string_().decode().split("PAGE_BUDDY_MAPCOUNT_VALUE)=")[1].split()[0]
    )
    for pfn, order, _mt in t["free_blocks"]:
        page = pfn_to_page(prog, pfn)
        assert page.page_type.value_() == buddy & 0xFFFFFFFF
        assert page.private.value_() == order
    for row in t["pinned"] + t["controls"]:
        assert compound_order(pfn_to_page(prog, row["pfn"])).value_() == row["order"]
    info = prog["VMCOREINFO"].string_().decode()
    assert f"NUMBER(SECTION_SIZE_BITS)={t['facts']['section_size_bits']}\n" in info


@pytest.mark.parametrize("name", NAMES)
def test_truth_is_self_consistent(name: str) -> None:
    t = truth(name)
    # every RAM pfn is described exactly once
    covered: list[int] = []
    for row in t["pinned"] + t["controls"]:
        covered += range(row["pfn"], row["pfn"] + row["nr_pages"])
    for ranges in t["classified"].values():
        for start, end in ranges:
            covered += range(start, end)
    ram = [p for start, end in t["facts"]["ram"] for p in range(start, end)]
    assert sorted(covered) == ram
    # free blocks are exactly the free pages
    free = sorted(p for pfn, order, _ in t["free_blocks"] for p in range(pfn, pfn + (1 << order)))
    assert free == [p for start, end in t["classified"]["free"] for p in range(start, end)]
    assert sum(z["free"] for z in t["zones"]) == len(free)
    # counts agree with the rows
    pinned_pages = sum(r["nr_pages"] for r in t["pinned"])
    assert t["summary"]["pages"] == pinned_pages == sum(z["pinned"]["total"] for z in t["zones"])
    assert t["summary"]["folios"] == len(t["pinned"])
    for ev in ("foll_pin", "extra", "pinner"):
        n = sum(r["nr_pages"] for r in t["pinned"] if ev in r["evidence"])
        assert t["summary"]["by_evidence"][ev] == n == sum(z["pinned"][ev] for z in t["zones"])
    for c in t["cma"]:
        rows = [r for r in t["pinned"] if r["cma"] == c["name"]]
        assert c["pinned_pages"] == sum(r["nr_pages"] for r in rows)
        assert all(r["migratetype"] == "CMA" for r in rows)
    for row in t["pinned"] + t["controls"]:
        assert row["evidence"] == [
            e for e in ("foll_pin", "extra", "pinner") if e in row["evidence"]
        ]
        assert (row["extra"] > 0) == ("extra" in row["evidence"])


@pytest.mark.parametrize("name", NAMES)
def test_stack_depot(name: str) -> None:
    prog = program(name)
    t = truth(name)
    assert t["stacks"]
    for handle, frames in t["stacks"].items():
        trace = stack_depot_fetch(Object(prog, "depot_stack_handle_t", int(handle, 16)))
        assert trace is not None
        assert [symbolize(prog, f.pc) for f in trace] == frames


@pytest.mark.parametrize("name", NAMES)
def test_page_owner_stack_list(name: str) -> None:
    prog = program(name)
    counts = truth(name)["page_owner"].get("stack_counts") or {}
    try:
        node = prog["stack_list"]
    except KeyError:
        assert not counts
        return
    seen = {}
    while node:
        rec = node.stack_record
        seen[f"{rec.handle.handle.value_():#010x}"] = rec.count.refs.counter.value_()
        node = node.next
    assert seen == counts


@pytest.mark.parametrize("name", NAMES)
def test_cma_areas(name: str) -> None:
    prog = program(name)
    t = truth(name)
    n = prog["cma_area_count"].value_()
    assert n == len(t["cma"])
    for i, tc in enumerate(t["cma"]):
        c = prog["cma_areas"][i]
        assert c.name.string_().decode() == tc["name"]
        # 6.14+: base_pfn and bitmap of each range in struct cma_memrange
        r = c.ranges[0] if c.type_.has_member("ranges") else c
        if c.type_.has_member("ranges"):
            assert c.nranges.value_() == 1 and r.count.value_() == tc["count"]
        assert r.base_pfn.value_() == tc["base_pfn"]
        assert c.count.value_() == tc["count"]
        assert c.order_per_bit.value_() == tc["order_per_bit"]
        nbits = tc["count"] >> tc["order_per_bit"]
        words = prog.read(r.bitmap.value_(), (nbits + 63) // 64 * 8)
        assert bin(int.from_bytes(words, "little")).count("1") == tc["allocated_bits"]
    assert any(c["order_per_bit"] > 0 for c in t["cma"])


@pytest.mark.parametrize("name", NAMES)
def test_page_owner(name: str) -> None:
    prog = program(name)
    t = truth(name)
    owner = t["page_owner"]
    key = prog["page_owner_inited"].key.enabled.counter.value_()
    if owner["state"] == "off":
        assert key == 0
        return
    assert key > 0
    off = prog["page_owner_ops"].offset.value_()
    assert owner["records"]
    for r in owner["records"]:
        entry = page_ext_entry(prog, r["pfn"])
        po = Object(prog, "struct page_owner", address=entry + off)
        assert po.handle.value_() == r["handle"]
        assert po.order.value_() == r["order"]
        assert po.gfp_mask.value_() == r["gfp_mask"]
        if r["pid"] is None:  # 5.10: no task or time in struct page_owner
            assert not po.type_.has_member("pid") and r["comm"] is None
        else:
            assert po.pid.value_() == r["pid"]
            assert po.comm.string_().decode() == r["comm"]
        if t["facts"]["page_ext_has_flags_word"]:
            flags = prog.read_u64(entry)
            for fname in r["page_ext_flags"]:
                assert flags & (1 << prog[fname].value_())
        trace = stack_depot_fetch(po.handle)
        assert trace is not None
        assert [symbolize(prog, f.pc) for f in trace] == r["stack"]
        if r["text"]:
            assert r["text"][2:-1] == [" " + f for f in r["stack"]]
            assert f"order {r['order']}, mask {r['gfp_mask']:#x}(" in r["text"][0]
            page = pfn_to_page(prog, r["pfn"])
            assert f"Flags {page_flags(page).value_():#x}(" in r["text"][1]


@pytest.mark.parametrize("name", NAMES)
def test_page_pinner(name: str) -> None:
    prog = program(name)
    t = truth(name)
    pp = t["page_pinner"]
    if not pp["variant"]:
        with pytest.raises(LookupError):
            prog["page_pinner_ops"]
        return
    assert prog["page_pinner_inited"].key.enabled.counter.value_() > 0
    off = prog["page_pinner_ops"].offset.value_()
    for page in pp["pages"]:
        entry = page_ext_entry(prog, page["pfn"])
        flags = prog.read_u64(entry)
        for fname in page["flags"]:
            assert flags & (1 << prog[fname].value_()), (page["pfn"], fname)
        if page["page_pinner"]:
            rec = Object(prog, "struct page_pinner", address=entry + off)
            assert rec.handle.value_() == page["page_pinner"]["handle"]
            assert rec.ts_usec.value_() == page["page_pinner"]["ts_usec"]
            assert rec.count.counter.value_() == page["page_pinner"]["count"]
    # every truth page with pinner evidence carries a pinner flag
    flagged = {p["pfn"] for p in pp["pages"] if p["flags"]}
    for row in t["pinned"]:
        assert ("pinner" in row["evidence"]) == (row["pfn"] in flagged)
    for sym, ring in pp["rings"].items():
        obj = prog[sym]
        assert obj.index.value_() == ring["index"]
        size = ring["size"]
        if obj.type_.has_member("buffer") and obj.buffer.type_.kind == drgn.TypeKind.POINTER:
            slots = obj.buffer
            assert prog["pp_buf_size"].value_() == size
        elif obj.type_.has_member("buffer"):
            slots = obj.buffer
        else:
            slots = obj.pinner
        for i, r in enumerate(ring["records"]):
            idx = (ring["index"] - 1 - i) % size
            assert idx == r["slot"]
            rec = slots[idx]
            assert rec.handle.value_() == r["handle"]
            assert rec.pfn.value_() == r["pfn"]
            trace = stack_depot_fetch(rec.handle)
            assert trace is not None
            assert [symbolize(prog, f.pc) for f in trace] == r["stack"]
            assert r["text"][-1] == "" and r["text"][2:-1] == [" " + f for f in r["stack"]]
        # garbage slots are there, and are not records
        for g in ring["garbage_slots"]:
            assert slots[g["slot"]].handle.value_() != 0


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build(out: Path) -> None:
    subprocess.run(
        [sys.executable, str(SAMPLES_DIR / "build.py"), "--out", str(out)],
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        stdout=subprocess.DEVNULL,
    )


def _sample_files(d: Path) -> list[str]:
    return sorted(
        p.name for p in d.iterdir() if p.name.endswith((".core", ".debug", ".truth.json"))
    )


def test_rebuild_is_byte_identical(tmp_path: Path) -> None:
    """build.py reproduces the committed samples bit for bit (with the
    toolchain recorded in vmcore-samples/TOOLCHAIN; with another gcc, ld or
    zlib it must at least reproduce its own output)."""
    first = tmp_path / "a"
    _build(first)
    assert _sample_files(first) == _sample_files(SAMPLES_DIR)
    if (first / "TOOLCHAIN").read_text() == (SAMPLES_DIR / "TOOLCHAIN").read_text():
        reference = SAMPLES_DIR
    else:
        reference = tmp_path / "b"
        _build(reference)
    for n in _sample_files(first):
        assert _sha256(first / n) == _sha256(reference / n), n


def test_sample_fixture(sample) -> None:  # type: ignore[no-untyped-def]
    paths = sample("mainline-6.1")
    assert paths.core.exists() and paths.debug.exists() and paths.truth.exists()


def test_samples_are_small() -> None:
    total = sum(
        p.stat().st_size
        for p in SAMPLES_DIR.iterdir()
        if p.name.endswith((".core", ".debug", ".truth.json"))
    )
    assert total <= 20 * 1024 * 1024
