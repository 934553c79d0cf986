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
from pinspect.cmamap import (
    ALLOCATED,
    BLOCKED,
    CMA_STYLE,
    DEFAULT_WIDTH,
    FREE,
    PARTLY,
    area_cells,
    draw_svg,
    draw_text,
)
from pinspect.cmascan import CAUSES, AreaReport, cma_report, try_alloc
from pinspect.commands import Needs
from pinspect.errors import FeatureMissing
from pinspect.features import ABSENT, OFF, Feature
from tests.sampledata import SAMPLE_NAMES, SAMPLES_DIR, open_sample, sample_paths


def truth(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES_DIR / f"{name}.truth.json").read_text())  # type: ignore[no-any-return]


def allocated_truth(t: dict[str, Any]) -> set[int]:
    """Pfns whose bit is set, from the truth's bitmap runs."""
    return {pfn for area in t["cma"] for r in area["ranges"] for lo, hi, state in r["runs"]
            if state == "allocated" for pfn in range(lo, hi)}


def blockers_truth(t: dict[str, Any], area: str) -> dict[int, str]:
    """pfn -> cause of each page in *area*'s free runs that cma_alloc() would fail on."""
    (a,) = [a for a in t["cma"] if a["name"] == area]
    return {b["pfn"]: b["cause"] for b in a["blockers"]}


def blocked_truth(area: dict[str, Any]) -> set[int]:
    return {p for b in area["blockers"] for p in range(b["pfn"], b["pfn"] + b["nr_pages"])}


@pytest.fixture(scope="module", params=SAMPLE_NAMES)
def sample(request: pytest.FixtureRequest) -> tuple[str, list[AreaReport]]:
    name = request.param
    return name, cma_report(open_sample(name)).areas


def test_areas_and_bitmaps_equal_the_truth(sample: tuple[str, list[AreaReport]]) -> None:
    name, reports = sample
    t = truth(name)
    assert sorted(r.area.name for r in reports) == sorted(a["name"] for a in t["cma"])
    for report in reports:
        area = next(a for a in t["cma"] if a["name"] == report.area.name)
        assert report.area.base_pfn == area["base_pfn"]
        assert report.area.count == area["count"]
        assert report.area.order_per_bit == area["order_per_bit"]
        assert report.area.count >> report.area.order_per_bit == area["bitmap_bits"]
        assert report.allocated_pages == area["allocated_pages"]
        assert report.free_pages == area["free_pages"]
        assert report.largest_free_run == area["largest_free_run"]
        # One state per range (two for mainline-7.2's vidbuf), its bitmap's runs the truth's.
        assert [(s.range.base_pfn, s.range.count) for s in report.states] == [
            (r["base_pfn"], r["count"]) for r in area["ranges"]]
        for state, rng in zip(report.states, area["ranges"], strict=True):
            runs = []
            bits = state.allocated.astype(np.int8)
            edges = np.flatnonzero(np.diff(bits)) + 1
            for lo, hi in zip([0, *edges.tolist()], [*edges.tolist(), len(bits)], strict=True):
                runs.append([rng["base_pfn"] + lo, rng["base_pfn"] + hi,
                             "allocated" if bits[lo] else "free"])
            assert runs == rng["runs"]
        assert {"allocated", "free"} <= {run[2] for r in area["ranges"] for run in r["runs"]}
        # The kernel's own counters where its struct cma keeps them (None elsewhere).
        counters = area["counters"]
        assert report.area.nr_pages_succeeded == counters["nr_pages_succeeded"]
        assert report.area.nr_pages_failed == counters["nr_pages_failed"]
        assert report.area.nr_pages_released == counters["nr_pages_released"]
        assert report.area.available_count == counters["available_count"]
        if counters["nr_pages_succeeded"] is not None:
            assert (counters["nr_pages_succeeded"] - counters["nr_pages_released"]
                    == area["allocated_pages"])
        if counters["available_count"] is not None:
            assert counters["available_count"] == area["free_pages"]
    assert any(a["order_per_bit"] > 0 for a in t["cma"])


def test_blockers_equal_the_truth(sample: tuple[str, list[AreaReport]]) -> None:
    name, reports = sample
    t = truth(name)
    controls = {c["pfn"] for c in t["controls"] if c.get("cma")}
    assert controls, "the samples have control pages in CMA"
    owners = {r["pfn"]: r for r in t["page_owner"].get("records") or ()}
    for report in reports:
        area = next(a for a in t["cma"] if a["name"] == report.area.name)
        got = {b.pfn: (b.cause, b.nr_pages) for b in report.blockers}
        assert got == {b["pfn"]: (b["cause"], b["nr_pages"]) for b in area["blockers"]}
        # Every cause in every area of every sample, and pages that look busy but are not
        # blockers: LRU pages without extra references, movable_ops pages (zsmalloc, balloon),
        # free buddy pages.
        assert {b["cause"] for b in area["blockers"]} == set(CAUSES)
        whys = {n["why"] for n in area["non_blockers"]}
        assert {"lru", "movable_ops"} <= whys and area["free_buddy_pages"] > 0
        assert not {n["pfn"] for n in area["non_blockers"]} & set(got)
        assert not controls & set(got)
        assert report.by_cause == area["by_cause"]
        assert report.blocked_pages == area["blocked_pages"]
        pinned = {b["pfn"] for b in area["blockers"] if b["cause"] in ("foll_pin", "extra")}
        assert pinned <= set(area["pinned_pfns"])
        for b in report.blockers:
            assert b.migratetype == "CMA" and b.area == report.area.name
            assert b.state == next(x["kind"] for x in area["blockers"] if x["pfn"] == b.pfn)
            record = owners.get(b.pfn)
            if t["page_owner"]["state"] != "enabled":
                assert b.owner is None and b.stack is None
            elif record is not None:  # page_owner's record of the blocker
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


def _kernel_alloc(ranges: list[tuple[int, list[bool]]], order: int, blocked: set[int],
                  pages: int, align: int) -> tuple[int | None, int]:
    """cma_alloc() replayed literally from the truth: for each range in turn (6.14+), as long
    as the previous ones ended in -EBUSY, bitmap_find_next_zero_area_off() then
    alloc_contig_range(), which fails on any blocked pfn; the search moves on by mask + 1."""
    nbits = -(-pages // (1 << order))
    mask = (1 << (align - order)) - 1 if align > order else 0
    failures = 0
    for base, bits in ranges:
        offset = (base & ((1 << align) - 1)) >> order
        start = 0
        while True:
            index = start
            while True:
                while index < len(bits) and bits[index]:
                    index += 1
                index = ((index + offset + mask) & ~mask) - offset
                end = index + nbits
                if end > len(bits):
                    break
                taken = [i for i in range(index, end) if bits[i]]
                if not taken:
                    break
                index = taken[0] + 1
            if end > len(bits):
                break  # no window left in this range: -EBUSY, the next range
            pfn = base + (index << order)
            if not any(p in blocked for p in range(pfn, pfn + pages)):
                return pfn, failures
            failures += 1
            start = index + mask + 1
    return None, failures


def _truth_ranges(area: dict[str, Any]) -> list[tuple[int, list[bool]]]:
    """(base_pfn, one bool per bit) of each range, from the truth's runs."""
    order = area["order_per_bit"]
    out = []
    for r in area["ranges"]:
        bits = [False] * r["bitmap_bits"]
        for lo, hi, state in r["runs"]:
            for pfn in range(lo, hi, 1 << order):
                bits[(pfn - r["base_pfn"]) >> order] = state == "allocated"
        out.append((r["base_pfn"], bits))
    return out


SIZES = [1, 3, 8, 64, 200, 256, 257, 320, 448, 449, 704]


@pytest.mark.parametrize("pages", SIZES)
@pytest.mark.parametrize("align", [0, 2, 4, 9])
def test_try_predicts_a_literal_cma_alloc(sample: tuple[str, list[AreaReport]], pages: int,
                                          align: int) -> None:
    name, reports = sample
    t = truth(name)
    for report in reports:
        area = next(a for a in t["cma"] if a["name"] == report.area.name)
        want_pfn, want_failures = _kernel_alloc(_truth_ranges(area), area["order_per_bit"],
                                                blocked_truth(area), pages, align)
        got = try_alloc(report, pages, align)
        assert got.pfn == want_pfn and got.succeeds == (want_pfn is not None)
        assert got.attempts_before == want_failures
        if got.best_failing is not None:
            assert got.best_failing.blocked > 0
            assert got.best_failing_blockers
            assert {b.pfn for b in got.best_failing_blockers} <= set(blockers_truth(t,
                                                                                    area["name"]))


def test_try_meets_each_outcome(sample: tuple[str, list[AreaReport]]) -> None:
    """The samples exercise every path of the search: success at the first window, success
    after -EBUSY failures, failure on blockers, failure for want of room."""
    name, _ = sample
    t = truth(name)
    outcomes = set()
    for area in t["cma"]:
        for pages in SIZES:
            for align in (0, 2, 4, 9):
                pfn, failures = _kernel_alloc(_truth_ranges(area), area["order_per_bit"],
                                              blocked_truth(area), pages, align)
                outcomes.add((pfn is not None, failures > 0))
    assert outcomes == {(True, False), (True, True), (False, True), (False, False)}


def _cells_from_truth(t: dict[str, Any], rng: dict[str, Any], blocked: set[int], width: int
                      ) -> tuple[int, list[int]]:
    """Cell states of one range computed from the truth alone: blocked if a blocker's pfn is in
    the cell, else allocated / free / partly by the truth's allocated pfns."""
    allocated = allocated_truth(t)
    per = 1
    while -(-rng["count"] // per) > width * 16:
        per *= 2
    cells = []
    end = rng["base_pfn"] + rng["count"]
    for first in range(rng["base_pfn"], end, per):
        pfns = range(first, min(first + per, end))
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
        grids = area_cells(report, width)
        assert len(grids) == len(area["ranges"])
        for grid, rng in zip(grids, area["ranges"], strict=True):
            per, cells = _cells_from_truth(t, rng, blocked_truth(area), width)
            assert grid.first_pfn == rng["base_pfn"]
            assert grid.pages_per_cell == per and grid.cells == cells
        seen = {c for g in grids for c in g.cells}
        assert {FREE, ALLOCATED, BLOCKED} <= seen
        # The text shows the same cells, one row per line, after the scale lines.
        text = draw_text(grids)
        rows = [line.split("  ", 1)[1] for line in text if line.startswith("0x")]
        symbols = {FREE: ".", ALLOCATED: "#", PARTLY: ":", BLOCKED: "X"}
        assert "".join(rows) == "".join(symbols[c] for g in grids for c in g.cells)
        assert not any("\x1b" in line for line in text)
        assert any("\x1b[" in line for line in draw_text(grids, colour=True))


def test_svg_is_well_formed(sample: tuple[str, list[AreaReport]]) -> None:
    name, reports = sample
    t = truth(name)
    grids = [g for r in reports for g in area_cells(r)]
    root = ET.fromstring(draw_svg(grids, "a <title> & more"))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    cells = [e for e in root.iter("{http://www.w3.org/2000/svg}rect") if "data-state" in e.attrib]
    # One rect per cell, in order, each with the state and first pfn the truth gives it.
    want = []
    for report in reports:
        area = next(a for a in t["cma"] if a["name"] == report.area.name)
        for rng in area["ranges"]:
            per, states = _cells_from_truth(t, rng, blocked_truth(area), DEFAULT_WIDTH)
            want += [(CMA_STYLE[c][1], rng["base_pfn"] + i * per) for i, c in enumerate(states)]
    got = []
    for e in cells:
        title = e.find("{http://www.w3.org/2000/svg}title")
        assert title is not None and title.text is not None
        got.append((e.attrib["data-state"], int(title.text.split()[1].split("+")[0], 16)))
    assert got == want
    assert any(state.startswith("free but blocked") for state, _ in got)


def test_json_document_equals_the_truth(sample: tuple[str, list[AreaReport]]) -> None:
    """What ``pinspect cma --blockers --format json`` prints, from the same reports."""
    from pinspect.commands.cma import document
    from pinspect.render import render

    name, reports = sample
    t = truth(name)
    doc = json.loads(render(document(reports, [], blockers=True), "json"))
    for obj in doc["areas"]:
        area = next(a for a in t["cma"] if a["name"] == obj["name"])
        assert obj["ranges"] == [{k: r[k] for k in ("base_pfn", "count", "bitmap_bits")}
                                 for r in area["ranges"]]
        for key in ("count", "order_per_bit", "allocated_pages", "free_pages",
                    "largest_free_run", "blocked_pages", "by_cause"):
            assert obj[key] == area[key], key
        assert obj["blockers"] == len(area["blockers"])
        for key, value in area["counters"].items():
            assert obj[key] == value, key
    want = sorted((a["name"], b["pfn"], b["nr_pages"], b["cause"]) for a in t["cma"]
                  for b in a["blockers"])
    assert sorted((b["area"], b["pfn"], b["nr_pages"], b["cause"])
                  for b in doc["blockers"]) == want


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
    t = truth("mainline-6.1")
    assert [(b["pfn"], b["cause"]) for b in doc["blockers"]] == sorted(
        blockers_truth(t, "vidbuf").items())
    table = run("cma", "vidbuf", "--blockers").stdout
    assert "0x100491" in table and "owner" in table and "non_lru" in table
    reserved = next(a for a in t["cma"] if a["name"] == "reserved")
    for pages, align in ((8, 0), (16, 4)):
        pfn, failures = _kernel_alloc(_truth_ranges(reserved), 0, blocked_truth(reserved),
                                      pages, align)
        assert pfn is not None
        tried = run("cma", "reserved", "--try", str(pages), "--align", str(align))
        assert f"succeeds at pfn {pfn:#x}" in tried.stdout, tried.stdout
        assert (f"after {failures} window(s)" in tried.stdout) == (failures > 0), tried.stdout


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
        "pinspect: error: no CMA area named 'nosuch' (areas here: reserved, vidbuf)",
        "  hint: 'pinspect cma' lists the areas with their names as the dump holds them "
        "(a damaged name matches nothing)"]


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


@pytest.mark.parametrize("name", ["mainline-6.1", "android-d", "mainline-7.2"])
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


@pytest.mark.parametrize("name", ["mainline-6.1", "mainline-6.12", "mainline-5.10", "mainline-7.2"])
def test_causes_the_samples_do_not_carry(name: str) -> None:
    """Pages the samples do not have (every cause, a compound kernel allocation, movable_ops,
    balloon, LRU and free pages are in their CMA areas, see test_blockers_equal_the_truth),
    written over free pages of area 'reserved': a mapped anon page taken off the LRU (non_lru),
    an LRU page being freed (refcount 0: not a blocker), and on a kernel with page types in the
    top byte but without PG_movable_ops, that flag emulated on offline pages."""
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
    t = truth(name)
    reserved = next(a for a in t["cma"] if a["name"] == "reserved")
    free = {p for r in reserved["ranges"] for lo, hi, state in r["runs"] if state == "free"
            for p in range(lo, hi)}
    busy = blocked_truth(reserved) | {n["pfn"] for n in reserved["non_blockers"]}
    assert all(base + i in free and base + i not in busy for i in range(0x100, 0x10D))

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
    page(0x104, mapcount=0, mapping=anon)  # an anon page off the LRU
    want[base + 0x104] = ("non_lru", 1)
    page(0x107, flags.mask("PG_lru"), refcount=0, mapcount=-1, mapping=0)  # being freed
    classifier = _Classifier(kernel)
    if "zsmalloc" in kernel.page_types and not classifier.movable_ops_flag:
        # 6.17+ marks movable_ops pages with PG_movable_ops (= PG_uptodate here) instead of the
        # mapping bit (mainline-7.2 has the real flag); pretend this kernel does.
        classifier.movable_ops_flag = flags.mask("PG_uptodate")
        page(0x10B, flags.mask("PG_uptodate"), mapcount=_type_raw(kernel, "offline"))
        page(0x10C, mapcount=_type_raw(kernel, "offline"))
        want[base + 0x10C] = ("non_lru", 1)
    found = classifier.blockers(PageChunk(kernel, base, raw), "reserved")
    got = {b.pfn: (b.cause, b.nr_pages) for b in found}
    # The sample's own blockers stay (in the free runs: the truth's; the classifier also judges
    # the allocated pages, which the report leaves out); the rewritten pages add theirs.
    original = {b.pfn: (b.cause, b.nr_pages)
                for b in _Classifier(kernel).blockers(chunk, "reserved")}
    assert {p: v for p, v in original.items() if p in free} == {
        b["pfn"]: (b["cause"], b["nr_pages"]) for b in reserved["blockers"]}
    assert got == {**original, **want}


def test_pinned_cma_filter_is_complete() -> None:
    """``pinned --cma`` scans the area only: the pages of its zones outside the area are not
    "outside the memory map" (the real-kernel tier's cma72 exited 4 with 1113982 of them)."""
    result = run("pinned", "--cma", "reserved", "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["unread"]["counts"] == {} and doc["pages"]
    assert all(p["cma"] == "reserved" for p in doc["pages"])
