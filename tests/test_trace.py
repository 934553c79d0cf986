# ruff: noqa: E501  (trace lines are as long as the kernel writes them)
"""``pinspect trace``: the trace formats (ftrace, trace-cmd, perf script, Android record files),
the ranking with the common paths filtered, the filters, bad input, and the join with a dump."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import tracegen
from pinspect.trace import CommonPaths, Filters, analyze, frame_key, infer_reason

FIXTURES = Path(__file__).resolve().parent / "traces"


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pinspect", *args], capture_output=True,
                          text=True, timeout=120, input=stdin.decode() if stdin else None)


def trace_json(*args: str) -> dict[str, Any]:
    result = run("trace", *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def analyzed(text: str, **filters: Any) -> Any:
    return analyze(io.BytesIO(text.encode()), Filters(**filters))


def ranking(result: Any) -> dict[str, int]:
    return {r["callsite"]: r["pfns"] for r in result.analysis.ranking()[0]}


# --------------------------------------------------------------------------------------------
# Generated ftrace text (pp61's format)


def test_generated_trace_ranks_the_pinners(tmp_path: Path) -> None:
    path = tmp_path / "gen.txt"
    tracegen.write(path, pfns=60)
    want = tracegen.expected(60)
    doc = trace_json(str(path))
    assert doc["command"] == "trace" and doc["failing_pfns"] == want["failing"]
    assert {r["callsite"]: r["pfns"] for r in doc["ranking"]} == want["ranking"]
    assert doc["ranking"][0]["callsite"] == "anon_pipe_buf_release"
    assert doc["held_at_end"] == want["held"]
    common = {c["callsite"]: c["group"] for c in doc["common"]}
    assert common == {"folio_batch_move_lru": "lru", "isolate_migratepages_block": "migration"}
    # the common paths never rank, and the module frame without a symbol is kept
    assert not set(common) & {r["callsite"] for r in doc["ranking"]}
    nvidia = next(r for r in doc["ranking"] if "nvidia" in r["callsite"])
    assert "0xffffffffc14a4546" in nvidia["stack"]


def test_reason_filter_keeps_only_cma_failures(tmp_path: Path) -> None:
    path = tmp_path / "gen.txt"
    tracegen.write(path, pfns=60)
    want = tracegen.expected(60)
    doc = trace_json(str(path), "--reason", "cma")
    assert doc["failing_pfns"] == want["cma"] and doc["by_reason"] == {"cma": want["cma"]}
    assert {r["callsite"]: r["pfns"] for r in doc["ranking"]} == want["cma_ranking"]
    assert all(p["reasons"] == ["cma"] for p in doc["pfns"])


def test_without_the_default_common_paths_they_rank(tmp_path: Path) -> None:
    path = tmp_path / "gen.txt"
    tracegen.write(path, pfns=8)
    doc = trace_json(str(path), "--no-default-common")
    # the last put of a held pfn is then an LRU drain: it takes the credit
    assert "folio_batch_move_lru" in {r["callsite"] for r in doc["ranking"]}
    doc = trace_json(str(path), "--common", "pipes=anon_pipe_buf_\\w+")
    assert "anon_pipe_buf_release" not in {r["callsite"] for r in doc["ranking"]}
    assert {"callsite": "anon_pipe_buf_release", "group": "pipes"}.items() <= \
        next(c for c in doc["common"] if c["callsite"] == "anon_pipe_buf_release").items()


def test_pfn_comm_and_time_filters(tmp_path: Path) -> None:
    path = tmp_path / "gen.txt"
    tracegen.write(path, pfns=20)
    first = tracegen.BASE_PFN
    doc = trace_json(str(path), "--pfn", f"{first:#x}-{first + 5:#x}")
    assert sorted(p["pfn"] for p in doc["pfns"]) == [first, first + 3]
    doc = trace_json(str(path), "--comm", "cuda-*")
    assert [r["callsite"] for r in doc["ranking"]] == ["os_unlock_user_pages [nvidia]"]
    doc = trace_json(str(path), "--until", "100.0003")
    assert 0 < doc["failing_pfns"] < 20
    doc = trace_json(str(path), "--since", "1000")
    assert doc["failing_pfns"] == 0


def test_views_and_formats(tmp_path: Path) -> None:
    path = tmp_path / "gen.txt"
    tracegen.write(path, pfns=4)
    table = run("trace", str(path))
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:3] == ["rank", "callsite", "pfns"]
    assert "common paths, left out of the ranking" in table.stdout
    csv = run("trace", str(path), "--view", "pfns", "--format", "csv")
    assert csv.stdout.splitlines()[0].startswith("pfn,reasons,failed_at,comm,count")
    assert len(csv.stdout.splitlines()) == 5
    chain = run("trace", str(path), "--view", "chain", "--format", "csv", "--columns",
                "pfn,kind,callsite,common")
    kinds = [line.split(",")[1] for line in chain.stdout.splitlines()[1:]]
    assert kinds.count("failure") == 4 and "put" in kinds and "get" in kinds


def test_standard_input(tmp_path: Path) -> None:
    path = tmp_path / "gen.txt"
    tracegen.write(path, pfns=4)
    result = run("trace", "-", "--format", "json", stdin=path.read_bytes())
    assert result.returncode == 0 and json.loads(result.stdout)["failing_pfns"] == 4


# --------------------------------------------------------------------------------------------
# perf script and trace-cmd report

PERF = """\
cma-alloc 4121 [001] 3244.900000: page_pinner:page_pinner_failure: pfn=0x13e473 flags=0x8001e count=3 mapcount=1 mapping=(nil) mt=1 reason=cma
\tffffffff82511be4 __page_pinner_failure+0x54 (/lib/modules/6.1.0/build/vmlinux)
\tffffffff82510000 isolate_migratepages_block+0x6b0 (/lib/modules/6.1.0/build/vmlinux)
\tffffffff82510100 cma_alloc+0x120 (/lib/modules/6.1.0/build/vmlinux)

cuda-EvtHandlr 31023 [000] 3244.976411: page_pinner:page_pinner_put: pfn=0x13e473 flags=0x8001e count=0 mapcount=0 mapping=(nil) mt=1
\tffffffff82511be4 __page_pinner_put+0x54 (/lib/modules/6.1.0/build/vmlinux)
\tffffffff82511be4 __page_pinner_put+0x54 (/lib/modules/6.1.0/build/vmlinux)
\tffffffffc0b71e1f [unknown] ([nvidia])
\tffffffffc14a4546 _nv032165rm+0x96 ([nvidia])

"""

TRACE_CMD = """\
version = 6
CPU 0 is empty
cpus=2
       pinwork-120   [001]   100.000100: page_pinner_failure:  pfn=0x40010 flags=uptodate|lru count=3 mapcount=1 mapping=0x0 mt=4 reason=compaction
       pinwork-120   [001]   100.000101: kernel_stack:         <stack trace >
=> __page_pinner_failure (ffffffff81234560)
=> isolate_migratepages_block (ffffffff81234570)
=> compact_zone (ffffffff81234580)
       pinwork-120   [001]   100.100000: page_pinner_put:      pfn=0x40010 flags=uptodate|lru count=1 mapcount=1 mapping=0x0 mt=4
       pinwork-120   [001]   100.100001: kernel_stack:         <stack trace >
=> __page_pinner_put (ffffffff81234590)
=> put_page (ffffffff812345a0)
=> anon_pipe_buf_release (ffffffff812345b0)
=> pipe_release (ffffffff812345c0)
"""


def test_perf_script_with_module_frames_without_symbols() -> None:
    result = analyzed(PERF)
    assert ranking(result) == {"[nvidia]": 1}
    state = result.analysis.failing()[0]
    assert state.reasons == ["cma"] and state.freed and result.stats.formats["perf"] == 2


def test_trace_cmd_report() -> None:
    result = analyzed(TRACE_CMD)
    assert ranking(result) == {"anon_pipe_buf_release": 1}
    assert result.analysis.failing()[0].reasons == ["compaction"]
    assert result.warnings() == []


def test_page_ref_events_and_test_pages_isolated() -> None:
    """A mainline CONFIG_DEBUG_PAGE_REF trace: the failing pfn from test_pages_isolated (a
    CMA allocation's, by cma_alloc_start), gets and puts from page_ref events."""
    text = """\
   pinwork-120 [000] ..... 10.000000: cma_alloc_start: name=reserved count=65536 align=0
   pinwork-120 [000] ..... 10.100000: test_pages_isolated: start_pfn=0x140000 end_pfn=0x150000 fin_pfn=0x140123 ret=fail
   pinwork-120 [000] ..... 10.100100: cma_alloc_finish: name=reserved pfn=0xffffffffffffffff page=0000000000000000 count=65536 align=0 errorno=-12
   pinwork-120 [000] ..... 10.200000: page_ref_mod: pfn=0x140123 flags=uptodate|lru count=3 mapcount=1 mapping=0000000000000000 mt=4 val=1
   pinwork-120 [000] ..... 10.200001: <stack trace>
 => __page_ref_mod+0x3c/0x50
 => folio_get+0x1b/0x30
 => follow_page_pte+0x1c0/0x4a0
   pinwork-120 [000] ..... 10.300000: page_ref_mod_and_test: pfn=0x140123 flags=uptodate|lru count=2 mapcount=1 mapping=0000000000000000 mt=4 val=-1 ret=0
   pinwork-120 [000] ..... 10.300001: <stack trace>
 => __page_ref_mod_and_test+0x3c/0x50
 => put_page+0x45/0x60
 => anon_pipe_buf_release+0x1c/0x30
   pinwork-120 [000] ..... 10.400000: page_ref_mod_and_test: pfn=0x150000 flags=uptodate|lru count=2 mapcount=1 mapping=0000000000000000 mt=4 val=-1 ret=0
"""
    result = analyzed(text)
    (state,) = result.analysis.failing()
    assert state.pfn == 0x140123 and state.reasons == ["cma"]
    assert (state.gets, state.puts) == (1, 1)
    assert ranking(result) == {"anon_pipe_buf_release": 1}
    assert result.analysis.cma_allocs == {"failed": 1}


# --------------------------------------------------------------------------------------------
# Android page_pinner record files (reference §1.3-1.7), newest record first

FLAGS = "0x8000000000080014(0x8000000000080014(uptodate|lru|swapbacked|zone=1))"
ANDROID = {
    # D (and C): buffer / alloc_contig_failed
    "d": f"""\
Freed at [ 1235.000000]
PFN 0x9f0bb0 Block 20357 count 0 mapcount 0 mapping 0x0 Flags {FLAGS}
 __free_page_pinner+0x80/0xa0
 free_unref_page+0x40/0x100

At least, pinned for 91215 us
PFN 0x9f0bb0 Block 20357 count 1 mapcount 1 mapping 0x0 Flags {FLAGS}
 __page_pinner_put_page+0x80/0xa0
 put_page+0x40/0x60
 os_unlock_user_pages+0xbf/0x120 [nvidia]

At least, pinned for 50000 us
PFN 0x9f0bb0 Block 20357 count 2 mapcount 1 mapping 0x0 Flags {FLAGS}
 __page_pinner_put_page+0x80/0xa0
 release_pages+0x1b6/0x4e0
 lru_add_drain_cpu+0x91/0x130

Failure detected at [ 1234.567890]
PFN 0x9f0bb0 Block 20357 count 3 mapcount 1 mapping 0x0 Flags {FLAGS}
 __page_pinner_failure_detect+0x80/0xa0
 __alloc_contig_migrate_range+0x100/0x1a0
 alloc_contig_range+0x160/0x280
 cma_alloc+0x120/0x420

""",
    # B: Page pinned ts [sec.usec] + PFN 0x.. count mapcount mapping
    "b": f"""\
Page pinned ts [ 1300.000100]
PFN 0x1000 Block 2 count 1 mapcount 1 mapping 0x0 Flags {FLAGS}
 __page_pinner_migration_failed+0x80/0xa0
 put_page+0x40/0x60
 io_buffer_unmap+0x44/0x90

Page pinned ts [ 1300.000000]
PFN 0x1000 Block 2 count 2 mapcount 1 mapping 0x0 Flags {FLAGS}
 __page_pinner_migration_failed+0x80/0xa0
 __alloc_contig_migrate_range+0x100/0x1a0

""",
    # A2: Page pinned ts [sec.usec] + PFN <decimal> Block type
    "a2": f"""\
Page pinned ts [ 1300.000100]
PFN 4096 Block 2 type CMA Flags {FLAGS}
 __page_pinner_migration_failed+0x80/0xa0
 put_page+0x40/0x60
 io_buffer_unmap+0x44/0x90

Page pinned ts [ 1300.000000]
PFN 4096 Block 2 type CMA Flags {FLAGS}
 __page_pinner_migration_failed+0x80/0xa0
 compact_zone+0x100/0x1a0

""",
    # A0/A1: Page pinned ts <us> us count <n>: GUP pins (the pinner file) and acf records
    "a1": f"""\
Page pinned ts 1300000100 us count 0
PFN 4096 Block 2 type CMA Flags {FLAGS}
 __page_pinner_migration_failed+0x80/0xa0
 put_page+0x40/0x60
 io_buffer_unmap+0x44/0x90

Page pinned ts 1300000000 us count 0
PFN 4096 Block 2 type CMA Flags {FLAGS}
 __page_pinner_migration_failed+0x80/0xa0
 __alloc_contig_migrate_range+0x100/0x1a0
 cma_alloc+0x120/0x420

Page pinned ts 1200000000 us count 1
PFN 8192 Block 4 type Movable Flags {FLAGS}
 __set_page_pinner+0x80/0xa0
 try_grab_page+0x40/0x60
 io_sqe_buffer_register+0x100/0x200

""",
}


@pytest.mark.parametrize("variant", sorted(ANDROID))
def test_android_record_files(variant: str) -> None:
    result = analyzed(ANDROID[variant])
    assert result.warnings() == [], result.warnings()
    assert result.stats.formats["android"] > 0
    (state,) = result.analysis.failing()
    if variant == "d":
        assert state.pfn == 0x9F0BB0 and state.reasons == ["cma"] and state.freed
        assert ranking(result) == {"os_unlock_user_pages [nvidia]": 1}
        assert [c["callsite"] for c in result.analysis.ranking()[1]] == ["lru_add_drain_cpu"]
    else:
        assert state.pfn == 4096
        assert ranking(result) == {"io_buffer_unmap": 1}
        assert state.reasons == [{"b": "alloc_contig", "a2": "compaction", "a1": "cma"}[variant]]


# --------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_is_counted_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "gen.txt"
    tracegen.write(path, pfns=10)
    good = path.read_bytes()
    lines = good.splitlines(keepends=True)
    bad = b"".join(lines[:200]) + b"\x00\x01\x02binary\xff\xfe\n" + b"\xff" * 70000 + b"\n"
    bad += b"         pinwork-120     [001] .....   100.00\n"  # a truncated event line
    bad += b"   pinwork-120 [000] ..... 999.000001: page_pinner_put: flags=lru\n"  # no pfn
    bad += b"some words that are no event\n"
    bad += b"         pinwork-120     [001] .....   0.000001: page_pinner_put: pfn=0x1 " \
           b"count=1 mapcount=1 mapping=0 mt=1\n" * 5  # older than the window allows
    bad += b"".join(lines[201:])
    path.write_bytes(bad)
    result = analyze(open(path, "rb"), window=8)
    skipped = result.stats.skipped()
    assert skipped["binary"] >= 2 and skipped["garbage"] >= 1
    assert skipped["out_of_order"] == 5
    assert result.stats.truncated + result.analysis.truncated >= 2
    assert result.analysis.relevant > 0
    cli = run("trace", str(path))
    assert cli.returncode == 0
    assert "pinspect: warning: skipped" in cli.stderr and "warning: skipped" in cli.stdout


def test_cpus_out_of_order_are_reordered() -> None:
    text = TRACE_CMD.splitlines(keepends=True)
    # the put (CPU 1) before the failure in the file: within the window it is reordered
    swapped = "".join(text[:3] + text[7:] + text[3:7])
    result = analyzed(swapped)
    assert ranking(result) == {"anon_pipe_buf_release": 1}
    assert result.stats.out_of_order == 0


def test_no_relevant_events_says_what_to_enable(tmp_path: Path) -> None:
    path = tmp_path / "sched.txt"
    path.write_text("# tracer: nop\n          <idle>-0     [000] d..2.   1.0: sched_switch: "
                    "prev_comm=swapper/0 prev_pid=0 ==> next_comm=sh next_pid=1\n")
    result = run("trace", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("pinspect: error: no page_pinner or page_ref events in")
    assert "events/page_pinner/enable" in lines[-1] and "options/stacktrace" in lines[-1]
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 100)
    assert run("trace", str(garbage)).returncode == 2


# --------------------------------------------------------------------------------------------
# Helpers


def test_frames_and_reasons() -> None:
    assert frame_key("os_unlock_user_pages+0xbf/0x120 [nvidia]") == \
        "os_unlock_user_pages [nvidia]"
    assert frame_key("0xffffffffc0b71e1f [nvidia]") == "[nvidia]"
    assert frame_key("anon_pipe_buf_release+0x1c/0x30") == "anon_pipe_buf_release"
    assert infer_reason(["cma_alloc+0x1/0x2"]) == "cma"
    assert infer_reason(["compact_zone+0x1/0x2"]) == "compaction"
    assert infer_reason(["alloc_contig_range+0x1/0x2"]) == "alloc_contig"
    assert infer_reason([]) == "unknown"
    common = CommonPaths.make()
    assert common.group_of("lru_add_drain_cpu") == "lru"
    assert common.group_of("remove_migration_pte") == "migration"
    assert common.group_of("filemap_get_entry") == "page cache"
    assert common.group_of("anon_pipe_buf_release") is None
    with pytest.raises(ValueError, match="bad --common pattern"):
        CommonPaths.make(extra=["x=("])


def test_memory_stays_bounded_per_pfn() -> None:
    """However many events a pfn gets, its chain keeps the last few."""
    events = "".join(
        f"  pinwork-1 [000] ..... {1 + i / 1e6:.6f}: page_pinner_put: pfn=0x10 count=5 "
        f"mapcount=1 mapping=0 mt=1\n" for i in range(2000))
    text = ("  pinwork-1 [000] ..... 0.5: page_pinner_failure: pfn=0x10 count=6 mapcount=1 "
            "mapping=0 mt=1 reason=cma\n" + events)
    result = analyzed(text)
    (state,) = result.analysis.failing()
    assert state.puts == 2000 and len(state.chain_ts) == 16


# --------------------------------------------------------------------------------------------
# Joined with a dump, and the JSON schema


def test_join_with_a_dump_and_the_schema(tmp_path: Path) -> None:
    from pinspect.schema import DOCUMENTS, HEADER, OBJECTS, TRAILER
    from tests.sampledata import sample_paths

    core, debug = sample_paths("mainline-6.1")
    if not core.exists():
        pytest.skip(f"{core.name} is not in vmcore-samples/")
    truth = json.loads(core.with_suffix(".truth.json").read_text())
    pinned = truth["pinned"][0]["pfn"]
    free = pinned + 0x100000  # no page of the sample's pinned ones
    text = "".join(
        f"  pinwork-120 [000] ..... {1 + i:.6f}: page_pinner_failure: pfn={pfn:#x} count=3 "
        f"mapcount=1 mapping=0 mt=4 reason=cma\n"
        f"  pinwork-120 [000] ..... {1 + i:.6f}: <stack trace>\n => cma_alloc+0x1/0x2\n"
        f"  pinwork-120 [000] ..... {1.2 + i:.6f}: page_pinner_put: pfn={pfn:#x} count=3 "
        f"mapcount=1 mapping=0 mt=4\n"
        f"  pinwork-120 [000] ..... {1.2 + i:.6f}: <stack trace>\n"
        f" => release_pages+0x1/0x2\n => lru_add_drain_cpu+0x1/0x2\n"
        f"  pinwork-120 [000] ..... {1.5 + i:.6f}: page_pinner_put: pfn={pfn:#x} count=2 "
        f"mapcount=1 mapping=0 mt=4\n"
        f"  pinwork-120 [000] ..... {1.5 + i:.6f}: <stack trace>\n"
        f" => put_page+0x1/0x2\n => anon_pipe_buf_release+0x1c/0x30\n"
        for i, pfn in enumerate((pinned, free)))
    path = tmp_path / "t.txt"
    path.write_text(text)
    result = run("trace", str(path), "-c", str(core), "-s", str(debug), "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert tuple(doc) == HEADER + DOCUMENTS["trace"] + TRAILER
    dumps = {p["pfn"]: p["dump"] for p in doc["pfns"]}
    assert dumps[pinned]["pinned"] and not dumps[free]["pinned"]
    assert doc["dump"] == {"failing_pfns": 2, "still_pinned": 1}
    for key, keys in OBJECTS.items():
        owner, _, rest = key.partition(".")
        if owner != "trace":
            continue
        values: list[Any] = [doc]
        for part in rest.split("."):
            name, many = part.removesuffix("[]"), part.endswith("[]")
            values = [v[name] for v in values if v.get(name) is not None]
            if many:
                values = [item for v in values for item in v]
        assert values or key.endswith(".owner"), key
        assert all(tuple(v) == keys for v in values), key
    table = run("trace", str(path), "-c", str(core), "-s", str(debug), "--view", "pfns")
    assert "dump: 1 of 2 failing pfn(s) still pinned" in table.stdout
    assert "not pinned" in table.stdout


# --------------------------------------------------------------------------------------------
# A trace recorded on the pp61 kernel (tests/traces/README.md)


def test_recorded_pp61_trace() -> None:
    truth = json.loads((FIXTURES / "pp61-pinner.json").read_text())
    kept, released = set(truth["kept"]), set(truth["released"])
    doc = trace_json(str(FIXTURES / "pp61-trace.txt"))
    # the pinning callsite (the vmsplice pipe's release) ranks first, with the released pfns
    top = doc["ranking"][0]
    assert top["callsite"] == "page_cache_pipe_buf_release" and top["pfns"] == len(released)
    by_pfn = {p["pfn"]: p for p in doc["pfns"]}
    assert {p for p, o in by_pfn.items() if o["state"] == "released"} == released
    assert {by_pfn[p]["state"] for p in kept} == {"held"}
    # compaction's own puts (isolation) are a common path, never ranked
    assert "isolate_migratepages_block" in {c["callsite"] for c in doc["common"]}
    assert "isolate_migratepages_block" not in {r["callsite"] for r in doc["ranking"]}
    # the workload: cma_alloc of the whole area twice (fails), of 1024 pages once (works)
    assert doc["cma_allocs"] == {"failed": 2, "ok": 1} and doc["skipped"]["truncated"] == 0
    # --reason cma: exactly the 11 pages held in the CMA area, and nothing else
    cma = trace_json(str(FIXTURES / "pp61-trace.txt"), "--reason", "cma")
    assert {p["pfn"] for p in cma["pfns"]} == kept | released
    assert all(p["reasons"] == ["cma"] and p["comm"] == "pinwork" for p in cma["pfns"])
    base, n = truth["cma_base_pfn"], truth["cma_pages"]
    assert all(base <= p["pfn"] < base + n for p in cma["pfns"])
    assert set(doc["by_reason"]) == {"cma", "compaction"}


def test_recorded_pp61_page_ref_trace() -> None:
    """The page_ref events of the same pp61 recording, without its page_pinner events
    (tests/traces/README.md): what a mainline CONFIG_DEBUG_PAGE_REF kernel records. The failing
    pfns are the first busy pfns of the failed CMA allocations (test_pages_isolated), pages the
    workload held; the one of the allocation of the whole area is the lowest of them."""
    truth = json.loads((FIXTURES / "pp61-pinner.json").read_text())
    held = set(truth["kept"]) | set(truth["released"])
    doc = trace_json(str(FIXTURES / "pp61-page_ref.txt"))
    assert not any(event.startswith("page_pinner") for event in doc["by_event"])
    assert doc["by_event"]["test_pages_isolated"] >= 1
    failing = {p["pfn"] for p in doc["pfns"]}
    assert failing and failing <= held and min(failing) == min(held), (failing, held)
    assert all(p["reasons"] == ["cma"] and p["comm"] == "pinwork" for p in doc["pfns"])
    # the chains are the page_ref gets and puts of the area after the failure
    events = {e["event"] for p in doc["pfns"] for e in p["chain"]}
    assert events and all(e.startswith("page_ref_") or e == "test_pages_isolated"
                          for e in events), events
