"""page_pinner records (pinspect.pinner), `pinner-log`, `stacks` and info's record counts against
the samples' ground truth, and corrupted rings and records.

The truth prints frame sizes as the ELF symbol size; %pS prints the distance to the next symbol
(kallsyms), as pinspect does: each truth frame line is rewritten with that size before the
debugfs text is compared byte for byte.
"""

from __future__ import annotations

import bisect
import json
import re
import subprocess
import sys
from typing import Any

import drgn
import pytest

import pinspect
from pinspect.commands import pinner_log as log_command
from pinspect.commands import stacks as stacks_command
from pinspect.commands.common import Options
from pinspect.kernel import probe
from pinspect.pinner import (
    PinnerLog,
    format_pgp,
    pinner_file_text,
    pinner_log,
    pinner_records,
    record_counts,
)
from pinspect.render import render
from pinspect.schema import DOCUMENTS, HEADER, OBJECTS, PINNER_OBJECTS
from tests.sampledata import SAMPLES_DIR, open_sample, sample_paths

VARIANTS = ["rfc", "a0", "a2", "b", "c", "d"]
RING_VARIANTS = ["a0", "a2", "b", "c", "d"]
FRAME = re.compile(r"^( ?)(\S+)\+0x([0-9a-f]+)/0x([0-9a-f]+)$")


def _truth(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES_DIR / f"{name}.truth.json").read_text())  # type: ignore[no-any-return]


def _kallsyms_sizes(prog: drgn.Program) -> Any:
    starts = sorted({int(s.address) for s in prog.symbols()})

    def fix(line: str) -> str:
        """A truth frame line with the size %pS prints (distance to the next symbol)."""
        m = FRAME.match(line)
        if not m:
            return line
        start = int(prog.symbol(m.group(2)).address)
        size = starts[bisect.bisect_right(starts, start)] - start
        assert size >= int(m.group(4), 16)
        return f"{m.group(1)}{m.group(2)}+0x{m.group(3)}/{size:#x}"
    return fix


def _b_acf_line(line: str) -> str:
    """Variant B's alloc_contig_failed reader prints every record as a timestamp
    ("Page pinned ts [%5lu.%06lu]", S4's print_page_pinner(false, ...)); the sample generator
    writes its put records as "Page pinned for N us", the longterm reader's wording. The
    kernel's rule wins."""
    m = re.fullmatch(r"Page pinned for (\d+) us", line)
    if not m:
        return line
    usec = int(m.group(1))
    return f"Page pinned ts [{usec // 1_000_000:5d}.{usec % 1_000_000:06d}]"


def _want_text(prog: drgn.Program, variant: str, ring: str, lines: list[str]) -> list[str]:
    fix = _kallsyms_sizes(prog)
    out = [fix(line) for line in lines]
    if variant == "b" and ring == "acf_pinner":
        out = [_b_acf_line(line) for line in out]
    return out


# -- ring buffers -----------------------------------------------------------------------------

@pytest.mark.parametrize("variant", RING_VARIANTS)
def test_rings_decode_as_the_truth(variant: str) -> None:
    name = f"android-{variant}"
    truth = _truth(name)["page_pinner"]
    prog = open_sample(name)
    log = pinner_log(prog)
    assert log.variant == variant
    assert [r.name for r in log.rings] == list(truth["rings"])
    fix = _kallsyms_sizes(prog)
    for ring in log.rings:
        want = truth["rings"][ring.name]
        assert (ring.size, ring.index, ring.record_size, ring.address) == (
            want["size"], want["index"], want["record_size"], want["slots_address"])
        assert not ring.wrapped and not ring.problems and not ring.unreadable
        assert [r.slot for r in ring.records] == [r["slot"] for r in want["records"]]
        for got, exp in zip(ring.records, want["records"], strict=True):
            raw = got.elapsed if got.elapsed is not None else got.ts_usec
            assert raw == exp.get("elapsed", exp.get("ts_usec")), (ring.name, exp["slot"])
            assert (got.pfn, got.handle) == (exp["pfn"], exp["handle"])
            for key in ("count", "mapcount", "mapping", "page_mt", "state"):
                assert getattr(got, key) == exp.get(key), (ring.name, exp["slot"], key)
            assert got.flags == exp.get("flags", exp.get("page_flags"))
            if got.time_usec is not None and not (variant == "b" and "elapsed" in exp):
                # (B's puts in acf_pinner: the generator's elapsed is a timestamp to B)
                assert got.time_usec == exp["time_usec"]
            if variant in ("c", "d") and ring.kind == "failure":
                assert got.time_usec == exp["time_usec"]  # puts: the failure + elapsed
            assert got.stack is not None
            assert got.stack.lines() == [fix(f) for f in exp["stack"]]
        got_text = [line for r in ring.records for line in r.text]
        assert got_text == _want_text(prog, variant, ring.name, want["kernel_text"])


def test_d_rejects_each_garbage_slot() -> None:
    truth = _truth("android-d")["page_pinner"]["rings"]["pp_buffer"]
    ring = pinner_log(open_sample("android-d")).rings[0]
    classes = {"handle pool index out of range": "handle's pool index out of range",
               "handle offset beyond the pool's used area":
                   "handle's offset past the pool's used part",
               "state out of range": "state out of range", "pfn not valid": "pfn not valid"}
    assert ring.rejected == [(g["slot"], classes[g["reason"]]) for g in truth["garbage_slots"]]
    warnings = PinnerLog(ring.name, pinner_log(open_sample("android-d")).feature,
                         [ring]).warnings()
    assert len(warnings) == 1 and "4 slot(s) rejected" in warnings[0]


@pytest.mark.parametrize("variant", RING_VARIANTS)
def test_pinner_log_text_is_the_debugfs_file(variant: str, capsys: pytest.CaptureFixture[str]
                                             ) -> None:
    name = f"android-{variant}"
    truth = _truth(name)["page_pinner"]
    prog = open_sample(name)
    for ring, want in truth["rings"].items():
        log_command.run(prog, Options(format="text"), buffers=(ring,))
        out = capsys.readouterr().out
        lines = _want_text(prog, variant, ring, want["kernel_text"])
        assert out == "".join(line + "\n" for line in lines)


def test_pinner_log_text_cli_byte_for_byte(tmp_path: Any) -> None:
    core, debug = sample_paths("android-d")
    out = tmp_path / "buffer.txt"
    result = subprocess.run([sys.executable, "-m", "pinspect", "-c", str(core), "-s",
                             str(debug), "pinner-log", "--format", "text", "--buffer", "buffer",
                             "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "4 slot(s) rejected" in result.stderr
    prog = open_sample("android-d")
    want = _want_text(prog, "d", "pp_buffer",
                      _truth("android-d")["page_pinner"]["rings"]["pp_buffer"]["kernel_text"])
    assert out.read_bytes() == "".join(line + "\n" for line in want).encode()


def test_pinner_log_filters() -> None:
    log = pinner_log(open_sample("android-d"))
    every = log_command.select(log).records
    assert len(every) == 22
    fails = log_command.select(log, states=("PP_FAIL_DETECTED",)).records
    assert fails and all(r.state == "PP_FAIL_DETECTED" for r in fails)
    assert log_command.select(log, states=("fail_detected",)).records == fails
    cma = log_command.select(log, reasons=("cma",)).records
    # puts and frees after a CMA failure belong to it; the compaction put is its own
    assert {r.reason for r in every} == {"cma"}
    assert cma == every
    window = log_command.select(log, pfn_range=(0x100490, 0x100492)).records
    assert {r.pfn for r in window} == {0x100490, 0x100491}
    late = log_command.select(log, since=log_command.parse_timestamp("1301.1")).records
    assert late and all(r.time_usec is not None and r.time_usec >= 1301_100000 for r in late)
    early = log_command.select(log, until=log_command.parse_timestamp("1234999999us")).records
    assert early and all(r.time_usec is not None and r.time_usec <= 1234_999999 for r in early)
    assert len(late) + len(early) < len(every)
    with pytest.raises(pinspect.errors.FeatureMissing, match="no buffer lt_pinner"):
        log_command.select(log, buffers=("lt_pinner",))


def test_parse_timestamp() -> None:
    parse = log_command.parse_timestamp
    assert parse("1301.000268") == 1301_000268
    assert parse("[ 1301.5]") == 1301_500000
    assert parse("1301000268us") == 1301_000268
    assert parse("1301ms") == 1_301_000
    assert parse("2s") == 2_000_000
    with pytest.raises(ValueError):
        parse("yesterday")


# -- per-page records ---------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_page_records_decode_as_the_truth(variant: str) -> None:
    name = f"android-{variant}"
    truth = _truth(name)["page_pinner"]
    prog = open_sample(name)
    fix = _kallsyms_sizes(prog)
    report = pinner_records(prog, [p["pfn"] for p in truth["pages"]])
    assert report.feature.state == "present"
    assert report.unreadable == 0 and not report.problems
    assert sorted(report.pages) == [p["pfn"] for p in truth["pages"]]
    for want in truth["pages"]:
        got = report.pages[want["pfn"]]
        assert list(got.flags) == want["flags"]
        record = want["page_pinner"]
        if variant == "rfc":
            assert (got.handle, got.ts_usec, got.count, got.stack) == (None, None, None, None)
        elif record is None:  # never written: all zero
            assert (got.handle, got.ts_usec, got.count, got.stack) == (0, 0, 0, None)
        else:
            assert (got.handle, got.ts_usec, got.count) == (
                record["handle"], record["ts_usec"], record["count"])
            assert (got.stack.lines() if got.stack else []) == [fix(f) for f in record["stack"]]
        if variant in ("a2", "b", "c", "d") and "PAGE_EXT_PINNER_MIGRATION_FAILED" in got.flags:
            assert got.records and all(r.pfn == got.pfn for r in got.records)


def test_a0_pinner_file() -> None:
    truth = _truth("android-a0")["page_pinner"]
    prog = open_sample("android-a0")
    pages = pinner_records(prog, [p["pfn"] for p in truth["pages"]]).pages.values()
    assert pinner_file_text(prog, pages) == _want_text(prog, "a0", "", truth["pinner_file_text"])


def test_format_pgp_prints_value_names_and_fields() -> None:
    kernel = probe(open_sample("android-d"))
    flags = 0x20000000008001C
    assert format_pgp(kernel, flags) == (
        "0x20000000008001c(uptodate|dirty|lru|swapbacked|node=0|zone=2)")


def test_pinned_and_page_carry_pinner_stacks() -> None:
    prog = open_sample("android-a0")
    truth = _truth("android-a0")["page_pinner"]
    report = pinspect.find_pinned(prog)
    assert [f.name for f in report.sources] == ["page_owner", "page_pinner"]
    with_record = {p["pfn"] for p in truth["pages"] if p["page_pinner"]}
    by_pfn = {p.pfn: p for p in report.pages}
    shown = [by_pfn[pfn] for pfn in with_record if pfn in by_pfn]
    assert shown
    for page in shown:
        stack, source = page.stack_source()
        assert source == "page_pinner" and stack is not None
        assert stack.frames[0].symbol == "__set_page_pinner"
    unpinned = [p for p in report.pages if p.pinner is None and p.owner is not None]
    assert unpinned and all(p.stack_source()[1] == "page_owner" for p in unpinned)
    from pinspect.commands import pinned as pinned_command

    table = render(pinned_command.document(report, stacks=True), "table")
    assert "__set_page_pinner+" in table and "pin and release stacks" in table


def test_page_shows_pinner_records_and_ring() -> None:
    from pinspect.commands import page as page_command

    prog = open_sample("android-d")
    verdict = pinspect.inspect_page(prog, 0x1442)
    assert verdict.pinner is not None
    assert [r.state for r in verdict.pinner.records] == ["PP_PUT", "PP_FAIL_DETECTED"]
    table = render(page_command.document(verdict), "table")
    assert "pinner (page_pinner)" in table and "pp_buffer[6]" in table
    assert "At least, pinned for 91215 us" in table


# -- corruption ---------------------------------------------------------------------------------

def _overlay(prog: drgn.Program, address: int, data: bytes) -> None:
    prog.add_memory_segment(address, len(data),
                            lambda _a, count, offset, _p: data[offset:offset + count], False)
    prog.cache.clear()


def test_wrapped_ring_is_detected() -> None:
    prog = open_sample("android-d")
    ring = pinner_log(prog).rings[0]
    _overlay(prog, ring.address + 4095 * ring.record_size,
             prog.read(ring.address, ring.record_size))
    ring = pinner_log(prog).rings[0]
    assert ring.wrapped and len(ring.records) == 23 and ring.records[-1].slot == 4095
    assert len(ring.rejected) == 3


def test_garbage_ring_index_is_a_warning() -> None:
    prog = open_sample("android-d")
    address = int(prog["pp_buffer"].index.address_)
    _overlay(prog, address, (0xDEADBEEF12345).to_bytes(8, "little"))
    log = pinner_log(prog)
    assert any("index" in w and "out of range" in w for w in log.warnings())
    doc = json.loads(render(log_command.document(log_command.select(log)), "json"))
    assert doc["warnings"]


def test_garbage_page_handles_are_counted() -> None:
    prog = open_sample("android-a0")
    truth = _truth("android-a0")["page_pinner"]
    pfn = next(p["pfn"] for p in truth["pages"] if p["page_pinner"])
    kernel = probe(prog)
    ext = kernel.page_ext
    assert ext is not None
    from pinspect.pageext import _section_table

    table = _section_table(kernel, pfn)
    assert table is not None
    entry = (table + ext.entry_size * pfn) % (1 << 64)
    client = ext.client("page_pinner")
    assert client is not None
    _overlay(prog, entry + client.offset, (0x7FFFFFFF).to_bytes(4, "little"))
    report = pinner_records(prog, [pfn])
    assert report.pages[pfn].stack is None
    assert report.problems and any("handle" in w for w in report.warnings())
    pinned = pinspect.find_pinned(prog)
    assert any("stack depot" in w for w in pinned.warnings)


# -- commands on kernels without the feature ---------------------------------------------------

def _cli(sample: str, *args: str) -> subprocess.CompletedProcess[str]:
    core, debug = sample_paths(sample)
    return subprocess.run([sys.executable, "-m", "pinspect", "-c", str(core), "-s", str(debug),
                           *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("sample,args,words", [
    ("mainline-6.1", ("pinner-log",), ("page_pinner", "CONFIG_PAGE_PINNER", "page_pinner=on")),
    ("android-rfc", ("pinner-log",), ("RFC", "no ring buffer")),
    ("mainline-6.1-owner-off", ("stacks",), ("page_owner", "page_owner=on")),
    ("mainline-6.1", ("stacks", "--by", "pinner"), ("page_pinner", "CONFIG_PAGE_PINNER")),
])
def test_missing_feature_is_one_line_and_exit_2(sample: str, args: tuple[str, ...],
                                               words: tuple[str, ...]) -> None:
    result = _cli(sample, *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert all(w in result.stderr for w in words), result.stderr


# -- stacks -------------------------------------------------------------------------------------

def _expected_groups(prog: drgn.Program, name: str, ignored: tuple[str, ...]
                     ) -> set[frozenset[int]]:
    """Pinned head pfns grouped by the truth's allocation stack without the ignored frames."""
    import fnmatch

    truth = _truth(name)
    records = {r["pfn"]: r for r in truth["page_owner"]["records"]}
    groups: dict[tuple[str, ...], set[int]] = {}
    for p in truth["pinned"]:
        stack = records[p["pfn"]]["stack"]
        key = []
        for line in stack:
            m = FRAME.match(line)
            assert m
            function = m.group(2)
            if any(fnmatch.fnmatchcase(function.split(".")[0], pat) for pat in ignored):
                continue
            key.append(f"{function}+0x{m.group(3)}")
        groups.setdefault(tuple(key), set()).add(p["pfn"])
    return {frozenset(g) for g in groups.values()}


@pytest.mark.parametrize("defaults", [True, False])
def test_stacks_group_as_the_truth(defaults: bool) -> None:
    name = "mainline-6.1"
    prog = open_sample(name)
    report = stacks_command.run(prog, Options(format="json", output="/dev/null"),
                                no_default_ignores=not defaults, top=None)
    assert report.by == "auto" and not report.no_stack
    ignored = stacks_command.DEFAULT_PATTERNS if defaults else ()
    got = {frozenset(g.pfns) for g in report.groups}
    assert got == _expected_groups(prog, name, ignored)
    truth_pages = sum(p["nr_pages"] for p in _truth(name)["pinned"])
    assert sum(g.pages for g in report.groups) == report.pages == truth_pages
    for g in report.groups:
        assert not defaults or not any(f.startswith("post_alloc_hook") for f in g.stack)
        assert g.processes and all(pid is not None for pid, _ in g.processes)


def test_stacks_ignore_frame_merges_groups() -> None:
    prog = open_sample("mainline-6.1")
    opts = Options(format="json", output="/dev/null")
    base = stacks_command.run(prog, opts, top=None)
    merged = stacks_command.run(prog, opts, top=None,
                                ignore_frames=("*",))
    assert len(merged.groups) == 1 and merged.groups[0].stack == ("(all frames ignored)",)
    assert len(base.groups) > 1


def test_stacks_by_pinner_free_and_table() -> None:
    prog = open_sample("android-d")
    opts = Options(format="json", output="/dev/null")
    pinner = stacks_command.run(prog, opts, by="pinner", top=None)
    assert pinner.groups and pinner.no_stack
    assert all(g.source.startswith("page_pinner") for g in pinner.groups)
    auto = stacks_command.run(prog, opts, top=None)
    assert not auto.no_stack and sum(g.pages for g in auto.groups) == auto.pages
    free = stacks_command.run(prog, opts, by="free", top=None)
    assert sum(free.no_stack.values()) + sum(g.pages for g in free.groups) == free.pages
    table = render(stacks_command.document(auto, top=2), "table")
    assert "showing the top 2" in table and "LRU draining:" in table
    assert "page_owner (allocation)" in table
    table = render(stacks_command.document(auto), "table")
    assert "page_pinner pp_buffer (PP_FAIL_DETECTED)" in table


# -- schema and info ----------------------------------------------------------------------------

def _objects(doc: Any, path: str) -> list[Any]:
    values = [doc]
    for part in path.split("."):
        key, many = part.removesuffix("[]"), part.endswith("[]")
        values = [v[key] for v in values if v.get(key) is not None]
        if many:
            values = [item for v in values for item in v]
    return values


@pytest.mark.parametrize("sample,args", [
    ("android-d", ("pinned",)), ("android-d", ("page", "0x1442")), ("android-d", ("info",)),
    ("android-d", ("pinner-log",)), ("android-a2", ("pinner-log",)),
    ("mainline-6.1", ("stacks",)), ("android-d", ("stacks",)),
])
def test_documents_have_the_schema_keys(sample: str, args: tuple[str, ...]) -> None:
    result = _cli(sample, "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    command = args[0]
    assert tuple(doc) == HEADER + DOCUMENTS[command]
    checked = 0
    for path, keys in {**OBJECTS, **PINNER_OBJECTS}.items():
        owner, _, rest = path.partition(".")
        if owner != command:
            continue
        for obj in _objects(doc, rest):
            assert tuple(obj) == keys, path
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("name", ["android-a0", "android-d", "mainline-6.1",
                                  "mainline-6.1-owner-off"])
def test_info_counts_records(name: str) -> None:
    truth = _truth(name)
    kernel = probe(open_sample(name))
    counts = record_counts(kernel)
    owner = truth["page_owner"]
    if owner["state"] == "enabled":
        assert counts.owner_allocated == owner["allocated_pages"]
    else:
        assert counts.owner_pages is None
    pages = truth["page_pinner"].get("pages") if truth.get("page_pinner") else None
    if pages:
        assert counts.pinner_flagged == sum(1 for p in pages if p["flags"])
        assert counts.pinner_with_record == sum(1 for p in pages if p["page_pinner"])
    else:
        assert counts.pinner_flagged is None
    assert counts.unreadable == 0
