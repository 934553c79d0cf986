"""``pinspect cma`` on the samples: bitmaps, blockers, --try against a literal replay of
cma_alloc(), the terminal map's cells, the SVG, and bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from drgn import Program

import pinspect
from pinspect.cma import CmaBitmapError, cma_areas
from pinspect.cmamap import ALLOCATED, BLOCKED, FREE, PARTLY, area_cells, draw_svg, draw_text
from pinspect.cmascan import AreaReport, cma_report, try_alloc
from pinspect.commands import Needs
from pinspect.errors import FeatureMissing
from pinspect.features import ABSENT, OFF, Feature
from tests.sampledata import SAMPLE_NAMES, SAMPLES_DIR, open_sample, sample_paths


def truth(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES_DIR / f"{name}.truth.json").read_text())  # type: ignore[no-any-return]


def allocated_truth(t: dict[str, Any]) -> set[int]:
    return {pfn for lo, hi in t["classified"].get("cma_allocated", []) for pfn in range(lo, hi)}


def blockers_truth(t: dict[str, Any], area: str) -> dict[int, str]:
    """pfn -> cause of each pinned page in *area* that migration would fail on."""
    want = {}
    for p in t["pinned"]:
        if p["cma"] != area:
            continue
        if "foll_pin" in p["evidence"]:
            want[p["pfn"]] = "foll_pin"
        elif "extra" in p["evidence"]:
            want[p["pfn"]] = "extra"
    return want


@pytest.fixture(scope="module", params=SAMPLE_NAMES)
def sample(request: pytest.FixtureRequest) -> tuple[str, list[AreaReport]]:
    name = request.param
    return name, cma_report(open_sample(name)).areas


def test_areas_and_bitmaps_equal_the_truth(sample: tuple[str, list[AreaReport]]) -> None:
    name, reports = sample
    t = truth(name)
    allocated = allocated_truth(t)
    assert sorted(r.area.name for r in reports) == sorted(a["name"] for a in t["cma"])
    for report in reports:
        area = next(a for a in t["cma"] if a["name"] == report.area.name)
        assert report.area.base_pfn == area["base_pfn"]
        assert report.area.count == area["count"]
        assert report.area.order_per_bit == area["order_per_bit"]
        assert report.area.count >> report.area.order_per_bit == area["bitmap_bits"]
        assert report.allocated_pages == area["allocated_pages"]
        assert report.free_pages == area["count"] - area["allocated_pages"]
        (state,) = report.states
        mine = {area["base_pfn"] + i for i in np.flatnonzero(state.allocated).tolist()}
        assert mine == {p for p in allocated if area["base_pfn"] <= p < area["base_pfn"] +
                        area["count"]}
        # Largest free run, from the truth's allocated pfns.
        run = best = 0
        for pfn in range(area["base_pfn"], area["base_pfn"] + area["count"]):
            run = 0 if pfn in allocated else run + 1
            best = max(best, run)
        assert report.largest_free_run == best


def test_blockers_are_the_pinned_pages_in_free_ranges(
        sample: tuple[str, list[AreaReport]]) -> None:
    name, reports = sample
    t = truth(name)
    controls = {c["pfn"] for c in t["controls"] if c.get("cma")}
    assert controls, "the samples have control pages in CMA"
    for report in reports:
        got = {b.pfn: b.cause for b in report.blockers}
        assert got == blockers_truth(t, report.area.name)
        assert not controls & set(got)
        area = next(a for a in t["cma"] if a["name"] == report.area.name)
        assert set(got) <= set(area["pinned_pfns"])
        assert report.blocked_pages == sum(b.nr_pages for b in report.blockers)
        assert sum(report.by_cause.values()) == report.blocked_pages
        owners = {r["pfn"]: r for r in t["page_owner"].get("records") or ()}
        for b in report.blockers:
            assert b.migratetype == "CMA" and b.area == report.area.name
            record = owners.get(b.pfn)
            if record is None or t["page_owner"]["state"] != "enabled":
                assert b.owner is None and b.stack is None
            else:  # page_owner's record of the blocker
                assert b.owner == {"pid": record["pid"], "tgid": record["tgid"],
                                   "comm": record["comm"]}
                assert b.stack == record["stack"]


def test_zones_count_pins_in_cma_pageblocks(sample: tuple[str, list[AreaReport]]) -> None:
    name, _ = sample
    t = truth(name)
    rows, _ = pinspect.zone_pins(open_sample(name))
    got = {(z.zone.node, z.zone.name): z.in_cma for z in rows}
    for zone in t["zones"]:
        assert got[(zone["node"], zone["zone"])] == zone["pinned_in_cma"]


def _kernel_alloc(bits: list[bool], order: int, base: int, blocked: set[int], pages: int,
                  align: int) -> tuple[int | None, int]:
    """cma_alloc() replayed literally: bitmap_find_next_zero_area_off() then
    alloc_contig_range(), which fails on any blocked pfn; the search moves on by mask + 1."""
    nbits = -(-pages // (1 << order))
    mask = (1 << (align - order)) - 1 if align > order else 0
    offset = (base & ((1 << align) - 1)) >> order
    start, failures = 0, 0
    while True:
        index = start
        while True:
            while index < len(bits) and bits[index]:
                index += 1
            index = ((index + offset + mask) & ~mask) - offset
            end = index + nbits
            if end > len(bits):
                return None, failures
            taken = [i for i in range(index, end) if bits[i]]
            if not taken:
                break
            index = taken[0] + 1
        pfn = base + (index << order)
        if not any(p in blocked for p in range(pfn, pfn + pages)):
            return pfn, failures
        failures += 1
        start = index + mask + 1


@pytest.mark.parametrize("pages", [1, 3, 8, 64, 200, 448, 449, 704])
@pytest.mark.parametrize("align", [0, 2, 4, 9])
def test_try_predicts_a_literal_cma_alloc(sample: tuple[str, list[AreaReport]], pages: int,
                                          align: int) -> None:
    _, reports = sample
    for report in reports:
        (state,) = report.states
        order = report.area.order_per_bit
        bits = state.allocated[::1 << order].tolist()
        blocked = {report.area.base_pfn + i for i in np.flatnonzero(state.blocked).tolist()}
        want_pfn, want_failures = _kernel_alloc(bits, order, report.area.base_pfn, blocked,
                                                pages, align)
        got = try_alloc(report, pages, align)
        assert got.pfn == want_pfn and got.succeeds == (want_pfn is not None)
        if got.succeeds:
            assert got.attempts_before == want_failures
        if got.best_failing is not None:
            assert got.best_failing.blocked > 0
            assert got.best_failing_blockers


def _cells_from_truth(t: dict[str, Any], area: dict[str, Any], width: int
                      ) -> tuple[int, list[int]]:
    """Cell states computed from the truth alone: blocked if a blocker's pfn is in the cell,
    else allocated / free / partly by the truth's allocated pfns."""
    allocated = allocated_truth(t)
    blocked = set(blockers_truth(t, area["name"]))
    per = 1
    while -(-area["count"] // per) > width * 16:
        per *= 2
    cells = []
    for first in range(area["base_pfn"], area["base_pfn"] + area["count"], per):
        pfns = range(first, min(first + per, area["base_pfn"] + area["count"]))
        n = sum(p in allocated for p in pfns)
        if any(p in blocked for p in pfns):
            cells.append(BLOCKED)
        else:
            cells.append(FREE if n == 0 else ALLOCATED if n == len(pfns) else PARTLY)
    return per, cells


@pytest.mark.parametrize("width", [16, 64])
def test_map_cells_match_the_bitmap(sample: tuple[str, list[AreaReport]], width: int) -> None:
    name, reports = sample
    t = truth(name)
    for report in reports:
        area = next(a for a in t["cma"] if a["name"] == report.area.name)
        (grid,) = area_cells(report, width)
        per, cells = _cells_from_truth(t, area, width)
        assert grid.pages_per_cell == per and grid.cells == cells
        # The text shows the same cells, one row per line, after the scale lines.
        text = draw_text([grid])
        rows = [line.split("  ", 1)[1] for line in text[3:] if line.startswith("0x")]
        symbols = {FREE: ".", ALLOCATED: "#", PARTLY: ":", BLOCKED: "X"}
        assert "".join(rows) == "".join(symbols[c] for c in cells)
        assert not any("\x1b" in line for line in text)
        assert any("\x1b[" in line for line in draw_text([grid], colour=True))


def test_svg_is_well_formed(sample: tuple[str, list[AreaReport]]) -> None:
    _, reports = sample
    grids = [g for r in reports for g in area_cells(r)]
    root = ET.fromstring(draw_svg(grids, "a <title> & more"))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    cells = [e for e in root.iter("{http://www.w3.org/2000/svg}rect") if "data-state" in e.attrib]
    assert len(cells) == sum(len(g.cells) for g in grids)
    blocked = [e for e in cells if e.attrib["data-state"].startswith("free but blocked")]
    assert len(blocked) == sum(c == BLOCKED for g in grids for c in g.cells)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    core, debug = sample_paths("mainline-6.1")
    return subprocess.run([sys.executable, "-m", "pinspect", "-c", str(core), "-s", str(debug),
                           *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_cli_table_json_and_blockers() -> None:
    result = run("cma")
    assert result.returncode == 0, result.stderr
    assert "reserved" in result.stdout and "vidbuf" in result.stdout
    doc = json.loads(run("cma", "vidbuf", "--blockers", "--format", "json").stdout)
    assert [a["name"] for a in doc["areas"]] == ["vidbuf"]
    assert [b["pfn"] for b in doc["blockers"]] == sorted(blockers_truth(truth("mainline-6.1"),
                                                                        "vidbuf"))
    table = run("cma", "vidbuf", "--blockers").stdout
    assert "0x100491" in table and "owner" in table
    tried = run("cma", "reserved", "--try", "8")
    assert "succeeds at pfn 0x1446" in tried.stdout, tried.stdout


def test_cli_map_to_a_file_has_no_colour(tmp_path: Path) -> None:
    out = tmp_path / "map.txt"
    result = run("cma", "reserved", "--map", "-o", str(out), env={"TERM": "xterm"})
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "\x1b" not in text and "0x1440  .XXX.X" in text
    svg = tmp_path / "area.svg"
    assert run("cma", "vidbuf", "--format", "svg", "-o", str(svg)).returncode == 0
    ET.parse(svg)
    zones_svg = tmp_path / "zones.svg"
    assert run("zones", "--map", "--format", "svg", "-o", str(zones_svg)).returncode == 0
    ET.parse(zones_svg)
    zones = run("zones", "--map").stdout
    assert "zone Normal" in zones and "UPPER CASE" in zones


def test_unknown_area_is_one_line_listing_the_names() -> None:
    result = run("cma", "nosuch")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "pinspect: error: no CMA area named 'nosuch' (areas here: reserved, vidbuf)"]


def test_try_needs_a_name_and_svg_needs_a_map() -> None:
    assert run("cma", "--try", "4").returncode == 2
    result = run("pinned", "--format", "svg")
    assert result.returncode == 2 and "draws no picture" in result.stderr


class _Kernel:
    def __init__(self, state: str) -> None:
        self.state = state

    def feature(self, name: str) -> Feature:
        return Feature(name, self.state, "kernel built without CONFIG_CMA")


@pytest.mark.parametrize("state", [ABSENT, OFF])
def test_a_kernel_without_cma_is_refused(state: str) -> None:
    from pinspect.commands import needs_of

    needs = needs_of("cma")
    assert "cma" in needs.features
    with pytest.raises(FeatureMissing, match="needs cma"):
        Needs(features=("cma",)).check("cma", open_sample("mainline-6.1"),
                                       _Kernel(state), "DWARF")  # type: ignore[arg-type]


def _patched(name: str, member: str, value: int, area: int = 0) -> Program:
    """Sample *name* with one member of ``cma_areas[area]`` overwritten."""
    prog = open_sample(name)
    obj = getattr(prog["cma_areas"][area], member)
    size = obj.type_.size
    data = value.to_bytes(size, "little")
    prog.add_memory_segment(obj.address_, size,
                            lambda address, count, offset, physical: data[offset:offset + count],
                            False)
    return prog


@pytest.mark.parametrize(("member", "value", "words"), [
    ("order_per_bit", 40, "order_per_bit 40 is out of range"),
    ("order_per_bit", 10, "not a multiple of 2^order_per_bit"),
    ("count", 0, "no pages"),
    ("bitmap", 0, "no bitmap"),
    ("bitmap", 0xFFFF_8000_DEAD_0000, "cannot be read"),
])
def test_bad_struct_cma(member: str, value: int, words: str) -> None:
    prog = _patched("mainline-6.1", member, value)
    result = cma_report(prog)  # the full list names the problem and carries on
    assert [r.area.name for r in result.areas] == ["vidbuf"]
    ((name, problem),) = result.problems
    assert name == "reserved" and words in problem
    with pytest.raises(CmaBitmapError, match=re.escape(words)):
        cma_report(_patched("mainline-6.1", member, value), "reserved")


def test_order_per_bit_zero_is_fine() -> None:
    kernel = pinspect.probe(open_sample("mainline-6.1"))
    area = next(a for a in cma_areas(kernel) if a.name == "reserved")
    assert area.order_per_bit == 0 and area.problem is None


def test_bits_past_the_end_are_refused() -> None:
    prog = open_sample("mainline-6.1")
    area = prog["cma_areas"][1]  # vidbuf: 256 bits, 4 words
    assert area.count.value_() >> area.order_per_bit.value_() == 256
    # Shrink the area to 64 pages (16 bits): its first word has bits 16-31 set (allocated at
    # the old size), past the end.
    prog = _patched("mainline-6.1", "count", 64, area=1)
    result = cma_report(prog)
    assert [n for n, _ in result.problems] == ["vidbuf"]
    assert "past the area's 16 bits" in result.problems[0][1]


def test_document_has_exactly_the_schema_keys() -> None:
    from pinspect.commands.cma import document
    from pinspect.render import render
    from pinspect.schema import DOCUMENTS, HEADER, OBJECTS
    from tests.test_schema import _objects

    # A sample with a broken area (problems), blockers, and a --try with a failing window.
    result = cma_report(_patched("mainline-6.1", "bitmap", 0))
    tried = try_alloc(result.areas[0], 8)
    assert tried.best_failing is not None
    doc = json.loads(render(document(result.areas, result.problems, blockers=True,
                                     tried=tried), "json"))
    assert tuple(doc) == HEADER + DOCUMENTS["cma"]
    for path, keys in OBJECTS.items():
        owner, _, rest = path.partition(".")
        if owner != "cma":
            continue
        objects = _objects(doc, rest)
        assert objects, path
        for obj in objects:
            assert tuple(obj) == keys, path


@pytest.mark.parametrize("name", ["mainline-6.1", "android-d"])
def test_pinned_cma_filter(name: str) -> None:
    t = truth(name)
    for area in t["cma"]:
        report = pinspect.find_pinned(open_sample(name), cma=area["name"])
        assert [p.pfn for p in report.pages] == area["pinned_pfns"]
        assert all(p.cma == area["name"] for p in report.pages)
        assert report.scanned + report.skipped_free <= area["count"]
    with pytest.raises(FeatureMissing, match="areas here: reserved, vidbuf"):
        pinspect.find_pinned(open_sample(name), cma="nosuch")


def _type_raw(kernel: Any, name: str) -> int:
    """The page_type word (u32) of page type *name* on this kernel."""
    value = kernel.page_types[name]
    if kernel.page_types_in_top_byte:
        return value << 24
    return 0xFFFFFFFF & ~value


@pytest.mark.parametrize("name", ["mainline-6.1", "mainline-6.12"])
def test_every_cause_on_synthetic_pages(name: str) -> None:
    """Pages of the free part of area 'reserved' rewritten into each unmovable kind (the samples
    have pinned and extra blockers only)."""
    from pinspect.cmascan import _Classifier
    from pinspect.scan import PageChunk, ScanStats, clip_ranges, iter_chunks, valid_ranges

    kernel = pinspect.probe(open_sample(name))
    layout = kernel.layout
    base = 0x1400
    ranges = clip_ranges(valid_ranges(kernel), [(base, base + 512)])
    (chunk,) = list(iter_chunks(kernel, ranges, ScanStats(), chunk_pages=512))
    assert chunk.start_pfn == base
    raw = chunk.raw.copy()
    size = layout.size

    def put(index: int, offset: int, value: int, width: int) -> None:
        at = index * size + offset
        raw[at:at + width] = np.frombuffer(value.to_bytes(width, "little"), np.uint8)

    def page(index: int, flags: int = 0, refcount: int = 1, mapcount: int = -1,
             mapping: int = 0) -> None:
        node_zone = int(chunk.flags[index]) & ~((1 << 32) - 1)  # keep node/zone bits
        put(index, layout.flags, node_zone | flags, 8)
        put(index, layout.refcount, refcount, 4)
        put(index, layout.mapcount, mapcount & 0xFFFFFFFF, 4)
        put(index, layout.mapping, mapping, 8)
        put(index, layout.compound_head, 0, 8)

    flags = kernel.flags
    anon = 0xFFFF888000100000 | 1
    want = {}
    page(0x100, flags.mask("PG_reserved"))
    want[base + 0x100] = ("reserved", 1)
    if "slab" in kernel.page_types:
        page(0x101, mapcount=_type_raw(kernel, "slab"))
    else:
        page(0x101, flags.mask("PG_slab"))
    want[base + 0x101] = ("slab", 1)
    page(0x102, mapcount=_type_raw(kernel, "table"))
    want[base + 0x102] = ("pgtable", 1)
    page(0x103)  # a kernel page: no mapping, off the LRU
    want[base + 0x103] = ("kernel", 1)
    page(0x104, mapcount=0, mapping=anon)  # an anon page off the LRU
    want[base + 0x104] = ("non_lru", 1)
    page(0x105, mapcount=-1, mapping=0xFFFFFFFF81000000 | 2)  # movable_ops: migratable
    page(0x106, flags.mask("PG_lru"), refcount=1, mapcount=0, mapping=anon)  # a mapped anon page
    page(0x107, flags.mask("PG_lru"), refcount=0, mapcount=-1, mapping=0)  # being freed
    page(0x108, mapcount=_type_raw(kernel, "buddy"), refcount=0)  # free
    # A balloon page (offline type) with movable_ops: migratable; without: not.
    page(0x109, mapcount=_type_raw(kernel, "offline"), mapping=0xFFFFFFFF81000000 | 2)
    page(0x10A, mapcount=_type_raw(kernel, "offline"))
    want[base + 0x10A] = ("non_lru", 1)
    # An order-2 compound kernel allocation: one blocker of 4 pages.
    page(0x110, flags.mask("PG_head"))
    head = chunk.start_pfn  # (any address: tails only need bit 0)
    for tail in range(0x111, 0x114):
        page(tail, refcount=0)
        put(tail, layout.compound_head, head | 1, 8)
    put(0x110, layout.folio.order, 2, 1)
    want[base + 0x110] = ("kernel", 4)
    classifier = _Classifier(kernel)
    if "zsmalloc" in kernel.page_types:
        # 6.17+ marks movable_ops pages with PG_movable_ops (= PG_uptodate) instead of the
        # mapping bit; pretend this kernel does.
        classifier.movable_ops_flag = flags.mask("PG_uptodate")
        page(0x10B, flags.mask("PG_uptodate"), mapcount=_type_raw(kernel, "zsmalloc"))
        page(0x10C, mapcount=_type_raw(kernel, "zsmalloc"))
        want[base + 0x10C] = ("non_lru", 1)
    found = classifier.blockers(PageChunk(kernel, base, raw), "reserved")
    got = {b.pfn: (b.cause, b.nr_pages) for b in found}
    # The sample's own blockers stay; the rewritten pages add theirs and nothing else.
    original = {b.pfn: (b.cause, b.nr_pages)
                for b in _Classifier(kernel).blockers(chunk, "reserved")}
    assert got == {**original, **want}
