"""The command line on the bundled sample, as a user types it."""

from __future__ import annotations

import csv
import io
import json
import pathlib
import subprocess
import sys

from tests.sampledata import SAMPLES_DIR

SAMPLES = SAMPLES_DIR
CORE = str(SAMPLES / "mainline-6.1.core")
DEBUG = str(SAMPLES / "mainline-6.1.debug")
TRUTH = json.loads((SAMPLES / "mainline-6.1.truth.json").read_text())


def run(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "pinspect", *args], capture_output=True,
                            text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_global_options_before_and_after_the_command() -> None:
    before = run("-c", CORE, "-s", DEBUG, "--format", "json", "pinned")
    after = run("pinned", "-c", CORE, "-s", DEBUG, "--format", "json")
    mixed = run("-c", CORE, "pinned", "--format", "json", "-s", DEBUG)
    assert before.returncode == after.returncode == mixed.returncode == 0, before.stderr
    assert before.stdout == after.stdout == mixed.stdout
    pages = json.loads(before.stdout)["pages"]
    assert [p["pfn"] for p in pages] == [p["pfn"] for p in TRUTH["pinned"]]


def test_zone_filter_is_the_design_example() -> None:
    result = run("-c", CORE, "-s", DEBUG, "pinned", "--zone", "Normal", "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    want = [p["pfn"] for p in TRUTH["pinned"] if p["zone"] == "Normal"]
    assert [p["pfn"] for p in doc["pages"]] == want
    assert set(doc["summary"]["by_zone"]) == {"0:Normal"}


def test_table_and_csv_carry_the_same_rows() -> None:
    table = run("-c", CORE, "-s", DEBUG, "pinned")
    rows = list(csv.DictReader(io.StringIO(run("-c", CORE, "-s", DEBUG, "pinned",
                                               "--format", "csv").stdout)))
    assert [int(r["pfn"], 16) for r in rows] == [p["pfn"] for p in TRUTH["pinned"]]
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["pfn", "nr_pages", "zone"]
    assert [int(line.split()[0], 16) for line in lines[2:2 + len(rows)]] == \
        [p["pfn"] for p in TRUTH["pinned"]]
    summary = TRUTH["summary"]
    assert f"{summary['folios']} pinned folio(s), {summary['pages']} page(s)" in table.stdout


def test_output_file(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "zones.json"
    result = run("-c", CORE, "-s", DEBUG, "zones", "--format", "json", "-o", str(out))
    assert result.returncode == 0 and result.stdout == ""
    assert json.loads(out.read_text())["zones"] == TRUTH["zones"]


def test_page_by_pfn_phys_and_struct_page_address() -> None:
    pfn = TRUTH["pinned"][0]["pfn"]
    by_pfn = json.loads(run("-c", CORE, "-s", DEBUG, "page", hex(pfn), "--format", "json").stdout)
    by_phys = json.loads(run("-c", CORE, "-s", DEBUG, "page", "--phys", hex(pfn * 4096 + 123),
                             "--format", "json").stdout)
    by_addr = json.loads(run("-c", CORE, "-s", DEBUG, "page", hex(by_pfn["page"]),
                             "--format", "json").stdout)
    assert by_pfn == by_phys == by_addr
    assert by_pfn["pfn"] == pfn
    assert by_pfn["folio"]["evidence"] == TRUTH["pinned"][0]["evidence"]


def test_wrong_debug_info_is_refused() -> None:
    other = str(SAMPLES / "mainline-6.12.debug")
    result = run("-c", CORE, "-s", other, "pinned")
    assert result.returncode == 2
    assert "does not match" in result.stderr and "build ID" in result.stderr


def test_missing_feature_is_explained() -> None:
    result = run("-c", CORE, "-s", DEBUG, "pinned", "--evidence", "pinner")
    assert result.returncode == 2
    assert "page_pinner" in result.stderr and "hint:" in result.stderr


def test_inside_a_drgn_session() -> None:
    script = ("import pinspect; r = pinspect.find_pinned(prog); "
              "print(len(r.pages), r.summary['pages'])")
    result = subprocess.run([sys.executable, "-m", "drgn", "-q", "-c", CORE, "-s", DEBUG,
                             "--no-default-symbols", "-e", script],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(TRUTH["summary"]["folios"]),
                                     str(TRUTH["summary"]["pages"])]


def test_page_flag_names_have_no_aliases() -> None:
    pfn = TRUTH["pinned"][0]["pfn"]
    doc = json.loads(run("-c", CORE, "-s", DEBUG, "page", str(pfn), "--format", "json").stdout)
    names = doc["flag_names"].split("|")
    assert "PG_lru" in names or "PG_head" in names
    assert not {"PG_swapcache", "PG_pinned", "PG_savepinned", "PG_reported"} & set(names)


def test_min_extra_filters_the_extra_evidence() -> None:
    doc = json.loads(run("-c", CORE, "-s", DEBUG, "pinned", "--min-extra", "2",
                         "--format", "json").stdout)
    for page in doc["pages"]:
        assert ("extra" in page["evidence"]) == (page["extra"] >= 2), page
    want = [p["pfn"] for p in TRUTH["pinned"]
            if "foll_pin" in p["evidence"] or "pinner" in p["evidence"] or p["extra"] >= 2]
    assert [p["pfn"] for p in doc["pages"]] == want
