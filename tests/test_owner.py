"""page_owner records and stack depot handles (pinspect.owner, pinspect.stackdepot) against the
samples' ground truth, the owner-off sample, and corrupted handles and pools."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest

import pinspect
from pinspect import owner as owner_module
from pinspect.commands import page as page_command
from pinspect.commands import pinned as pinned_command
from pinspect.owner import owner_records
from pinspect.pageext import read_entries
from pinspect.render import render
from pinspect.stackdepot import Frame, Stack, StackDepot, depot_layout, stack_depot
from tests.sampledata import SAMPLE_NAMES, SAMPLES_DIR, open_sample


def _truth(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES_DIR / f"{name}.truth.json").read_text())  # type: ignore[no-any-return]


OWNER_SAMPLES = [n for n in SAMPLE_NAMES if _truth(n)["page_owner"]["state"] == "enabled"]
FRAME = re.compile(r"(\S+)\+0x([0-9a-f]+)/0x([0-9a-f]+)$")


def _check_frames(prog: Any, frames: tuple[Frame, ...], want: list[str]) -> None:
    """Frame by frame, exactly as the truth prints it (%pS: the size is kallsyms', the
    distance to the next symbol)."""
    assert len(frames) == len(want)
    for frame, text in zip(frames, want, strict=True):
        m = FRAME.match(text)
        assert m, text
        assert (frame.symbol, frame.offset) == (m.group(1), int(m.group(2), 16)), (frame, text)
        assert frame.address - frame.offset == int(prog.symbol(m.group(1)).address)
        assert frame.module is None
        assert str(frame) == text


@pytest.mark.parametrize("name", OWNER_SAMPLES)
def test_records_decode_as_the_truth(name: str) -> None:
    truth = _truth(name)
    prog = open_sample(name)
    records = truth["page_owner"]["records"]
    assert records
    report = owner_records(prog, [r["pfn"] for r in records])
    assert report.feature.state == "present"
    assert report.unreadable == 0 and not report.problems
    assert sorted(report.records) == sorted(r["pfn"] for r in records)
    for want in records:
        got = report.records[want["pfn"]]
        for key in ("allocated", "order", "gfp_mask", "pid", "tgid", "comm", "ts_nsec",
                    "free_ts_nsec", "handle", "free_handle"):
            assert getattr(got, key) == want[key], (want["pfn"], key)
        assert got.last_migrate_reason is None
        assert got.stack is not None
        _check_frames(prog, got.stack.frames, want["stack"])
        if want["free_handle"]:
            assert got.free_stack is not None
            _check_frames(prog, got.free_stack.frames, want["free_stack"])
        else:
            assert got.free_stack is None
        if want.get("text"):  # the debugfs line names the gfp flags as %pGg does
            assert f"mask {got.gfp_mask:#x}({'|'.join(got.gfp_flags)})" in want["text"][0]


@pytest.mark.parametrize("name", OWNER_SAMPLES)
def test_every_stack_of_the_truth_decodes(name: str) -> None:
    prog = open_sample(name)
    depot = stack_depot(prog)
    for handle, frames in _truth(name)["stacks"].items():
        stack = depot.stack(int(handle, 16))
        assert isinstance(stack, Stack), handle
        _check_frames(prog, stack.frames, frames)
    assert not depot.problems


@pytest.mark.parametrize("name", OWNER_SAMPLES)
def test_each_handle_is_decoded_once(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    prog = open_sample(name)
    calls: list[int] = []
    original = StackDepot._decode

    def counting(self: StackDepot, handle: int) -> Stack | None:
        calls.append(handle)
        return original(self, handle)

    monkeypatch.setattr(StackDepot, "_decode", counting)
    pfns = [r["pfn"] for r in _truth(name)["page_owner"]["records"]]
    first = owner_records(prog, pfns)
    again = owner_records(prog, pfns)
    assert len(calls) == len(set(calls))
    assert first.records == again.records


def test_owner_off_shows_no_records() -> None:
    truth = _truth("mainline-6.1-owner-off")
    prog = open_sample("mainline-6.1-owner-off")
    report = owner_records(prog, [p["pfn"] for p in truth["pinned"]])
    assert report.feature.state == "off" and not report.records
    doc = json.loads(render(pinned_command.document(pinspect.find_pinned(prog)), "json"))
    assert doc["pages"] and all(p["owner"] is None for p in doc["pages"])
    assert [s["state"] for s in doc["sources"] if s["name"] == "page_owner"] == ["off"]
    page = page_command.document(pinspect.inspect_page(prog, truth["pinned"][0]["pfn"]))
    text = render(page, "table")
    assert "owner (page_owner)" in text and "off: compiled in but not enabled" in text
    assert "allocation stack" not in text


def test_enabled_but_no_record_differs_from_off() -> None:
    """A free page never handed out since boot has no PAGE_EXT_OWNER: page_owner is present,
    the page has no record, and nothing of its page_ext entry is shown."""
    truth = _truth("mainline-6.1")
    prog = open_sample("mainline-6.1")
    recorded = {r["pfn"] for r in truth["page_owner"]["records"]}
    free = [b[0] for b in truth["free_blocks"] if b[0] not in recorded]
    report = owner_records(prog, free)
    assert report.feature.state == "present" and report.unreadable == 0
    empty = next(p for p in free if p not in report.records)
    verdict = pinspect.inspect_page(prog, empty)
    assert verdict.owner is None and not verdict.owner_unreadable
    text = render(page_command.document(verdict), "table")
    assert "no record for this page" in text and "allocation stack" not in text
    assert json.loads(render(page_command.document(verdict), "json"))["owner"] is None


def test_pinned_json_carries_the_owner_of_every_page() -> None:
    truth = _truth("mainline-6.1")
    prog = open_sample("mainline-6.1")
    doc = json.loads(render(pinned_command.document(pinspect.find_pinned(prog)), "json"))
    records = {r["pfn"]: r for r in truth["page_owner"]["records"]}
    assert doc["warnings"] == []
    for page in doc["pages"]:
        want = records[page["pfn"]]
        owner = page["owner"]
        assert owner["source"] == "page_owner"
        assert (owner["pid"], owner["comm"], owner["handle"]) == \
            (want["pid"], want["comm"], want["handle"])
        assert [f.rsplit("/", 1)[0] for f in owner["stack"]] == \
            [f.rsplit("/", 1)[0] for f in want["stack"]]


def test_pinned_stacks_columns_and_page_section() -> None:
    truth = _truth("mainline-6.1")
    prog = open_sample("mainline-6.1")
    report = pinspect.find_pinned(prog)
    table = render(pinned_command.document(report, stacks=True), "table")
    header = table.splitlines()[0].split()
    assert header[-4:] == ["pid", "comm", "source", "stack"]
    assert "allocation stacks, pid and comm: page_owner present" in table
    csv_text = render(pinned_command.document(report, stacks=True), "csv")
    assert csv_text.splitlines()[0].endswith("pid,comm,source,stack")
    pfn = truth["pinned"][0]["pfn"]
    want = next(r for r in truth["page_owner"]["records"] if r["pfn"] == pfn)
    page = render(page_command.document(pinspect.inspect_page(prog, pfn)), "table")
    assert "allocation stack (page_owner)" in page
    for frame in want["stack"]:
        assert frame.rsplit("/", 1)[0] in page


def test_read_entries_returns_rows_in_the_given_order() -> None:
    kernel = pinspect.probe(open_sample("mainline-6.1"))
    pfns = [r["pfn"] for r in _truth("mainline-6.1")["page_owner"]["records"]]
    shuffled = list(reversed(pfns)) + [pfns[0]]
    rows, readable = read_entries(kernel, shuffled)
    assert readable.all()
    one_by_one = np.stack([read_entries(kernel, [p])[0][0] for p in shuffled])
    assert (rows == one_by_one).all()
    assert rows.shape == (len(shuffled), kernel.page_ext.entry_size)  # type: ignore[union-attr]


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mainline-6.1", "mainline-6.12"])
def test_bad_handles_are_counted_not_raised(name: str) -> None:
    prog = open_sample(name)
    layout = depot_layout(prog)
    assert layout is not None
    good = max(int(h, 16) for h in _truth(name)["stacks"])  # a non-zero offset
    depot = StackDepot(prog, layout)

    def with_index(handle: int, index: int) -> int:
        return handle & ~layout.index.mask | (index + layout.index_bias) << layout.index.bit

    def with_offset(handle: int, units: int) -> int:
        return handle & ~layout.offset.mask | units << layout.offset.bit

    cases = {
        with_index(good, layout.pools_in_use): "handle's pool index out of range",
        with_offset(good, (layout.last_pool_used or 0) // 16 + 1):
            "handle's offset past the pool's used part",
        with_offset(good, layout.offset.get(good) + 1):
            "stack record with an impossible frame count",
    }
    if layout.valid is not None:
        cases[good & ~layout.valid.mask] = "handle without its valid bit"
    for handle, reason in cases.items():
        assert depot.stack(handle) is None
        assert depot.problem(handle) == reason, hex(handle)
    assert sum(depot.problems.values()) == len(cases)
    assert depot.stack(good) is not None and depot.stack(0) is None
    # a record whose own copy of its handle differs (a reused or overwritten pool)
    other = StackDepot(prog, layout)
    pool = bytearray(other._pool(layout.index.get(good) - layout.index_bias) or b"")
    at = (layout.offset.get(good) << 4) + layout.handle_offset
    pool[at:at + 4] = (good ^ (1 << layout.offset.bit)).to_bytes(4, "little")
    other._pools[layout.index.get(good) - layout.index_bias] = bytes(pool)
    assert other.stack(good) is None
    assert other.problem(good) == "stack record does not carry its handle"
    rng = np.random.default_rng(7)
    for handle in rng.integers(0, 1 << 32, size=3000, dtype=np.uint64).tolist():
        stack = depot.stack(int(handle))
        assert stack is None or all(isinstance(f, Frame) for f in stack.frames)


@pytest.mark.parametrize("name", ["mainline-6.1", "mainline-6.12"])
def test_corrupted_pool_is_counted(name: str) -> None:
    prog = open_sample(name)
    depot = StackDepot(prog, depot_layout(prog))
    pool = depot._pool(0)
    assert pool is not None
    rng = np.random.default_rng(3)
    depot._pools[0] = rng.integers(0, 256, size=len(pool), dtype=np.uint8).tobytes()
    for handle in _truth(name)["stacks"]:
        assert depot.stack(int(handle, 16)) is None
    assert sum(depot.problems.values()) == len(_truth(name)["stacks"])


def test_owner_records_with_bad_handles_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Handles that point outside the depot give a counted warning in pinned's output."""
    prog = open_sample("mainline-6.1")
    layout = depot_layout(prog)
    assert layout is not None
    kernel = pinspect.probe(prog)
    offset = kernel.page_ext.client("page_owner").offset  # type: ignore[union-attr]
    handle_at = offset + owner_module.owner_layout(prog).fields["handle"][0]  # type: ignore[union-attr]
    real = read_entries

    def corrupt(kernel: Any, pfns: Any, max_gap: int = 64) -> tuple[np.ndarray, np.ndarray]:
        rows, readable = real(kernel, pfns, max_gap)
        bad = (layout.pools_in_use + 5) << layout.index.bit | 1 << 26
        rows = rows.copy()
        rows[::2, handle_at:handle_at + 4] = np.frombuffer(bad.to_bytes(4, "little"), np.uint8)
        return rows, readable

    monkeypatch.setattr(owner_module, "read_entries", corrupt)
    report = pinspect.find_pinned(prog)
    assert report.warnings == ["stack depot: 1 handle(s): handle's pool index out of range"]
    text = render(pinned_command.document(report), "table")
    assert "warning: stack depot: 1 handle(s): handle's pool index out of range" in text
    assert any(p.owner is not None and p.owner.stack is None for p in report.pages)
