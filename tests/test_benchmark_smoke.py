"""A small run of the performance benchmark (benchmarks/), for correctness only.

The timed benchmark is ``python3 -m benchmarks`` (README.md, Performance); here it runs on a
bundled sample dump with one repetition and a tiny drgn loop sample, and the synthetic dump
generator is checked against its own manifest when the real-kernel dev dump it grows from is
in the cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sampledata import sample_paths

REPO = Path(__file__).resolve().parent.parent
SAMPLE, SAMPLE_DEBUG = sample_paths("mainline-6.1")


def test_benchmark_runs_on_a_sample(tmp_path: Path) -> None:
    if not SAMPLE.exists() or not SAMPLE_DEBUG.exists():
        pytest.skip(f"{SAMPLE.name} and {SAMPLE_DEBUG.name} are not in vmcore-samples/")
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--core",
            str(SAMPLE),
            "--vmlinux",
            str(SAMPLE_DEBUG),
            "--repeat",
            "1",
            "--sample",
            "2000",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| (a) find_pinned s |" in proc.stdout
    row = json.loads(out.read_text())["rows"][0]
    s = row["summary"]
    lib = row["pinspect_runs"][0]
    read = row["read_runs"][0]
    # (a) and (c) cover the same pages; the CLI reports what the library reports.
    assert s["pages"] > 0
    assert s["pages"] + lib["unreadable"] == read["pages"] + read["unreadable"]
    assert s["folios"] == s["cli_folios"] > 0
    assert row["drgn"]["sampled"] == min(2000, row["drgn"]["pages"])
    for key in ("a_rate", "b_rate", "c_rate", "rss_a_mib", "rss_cli_mib", "startup_s", "open_s"):
        assert s[key] > 0, key


def test_synthetic_dump_matches_its_manifest(tmp_path: Path) -> None:
    from benchmarks import synth

    try:
        source = synth.default_source()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    if not source.core.exists() or not source.vmlinux.exists():
        pytest.skip(f"{source.core} or {source.vmlinux} is missing")
    from pinspect.report import find_pinned
    from pinspect.target import open_program

    path = synth.generate(2, 30, source=source, out=tmp_path / "synth.elf")
    manifest = json.loads(path.with_suffix(".json").read_text())
    prog = open_program(core=str(path), vmlinux=[str(source.vmlinux)])
    report = find_pinned(prog)
    assert report.unreadable == 0
    assert manifest["pages"] >= 2 << 20
    # every valid pfn but those outside the zones (pfn 0 on x86)
    assert manifest["pages"] - 256 <= report.scanned + report.skipped_free <= manifest["pages"]
    got = {(p.pfn, p.nr_pages, tuple(p.evidence)) for p in report.pages}
    injected = {(e["pfn"], e["nr_pages"], tuple(e["evidence"])) for e in manifest["injected"]}
    original = {
        (e["pfn"], e["nr_pages"], tuple(e["evidence"])) for e in manifest["original_pinned"]
    }
    assert len(injected) == 30
    assert got == injected | original


def test_command_benchmark_measures_a_sample() -> None:
    """benchmarks.commands' one measurement (a pinspect run in a child: wall, CPU, peak RSS)
    on a bundled sample; the timed rows run on the real manypins dump (README)."""
    if not SAMPLE.exists() or not SAMPLE_DEBUG.exists():
        pytest.skip(f"{SAMPLE.name} and {SAMPLE_DEBUG.name} are not in vmcore-samples/")
    from benchmarks.commands import run_cli

    r = run_cli(["-c", str(SAMPLE), "-s", str(SAMPLE_DEBUG)], ("pinned", "--stacks"))
    assert r["wall_s"] > 0 and r["cpu_s"] > 0
    assert 50 < r["rss_mib"] < 4096  # a Python process with drgn, in MiB
    assert r["out_bytes"] > 100  # the table was written
