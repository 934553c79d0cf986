"""pinspect against the ground truth of real kernels, on every target: the ELF and the
kdump-compressed dump of QEMU, the running guest over QMP, and /proc/kcore inside the guest."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from tests.realkernel.expect import CMA_KINDS, Expected, expected
from tests.realkernel.rksupport import Booted, in_guest_runs, run_pinspect

TARGETS = ["elf", "kdump", "qmp", "kcore"]
HOST_TARGETS = ["elf", "kdump", "qmp"]
ROW_KEYS = ("pfn", "nr_pages", "zone", "refcount", "mapcount", "pins", "extra", "evidence",
            "mapping")  # fmt: skip


def rows_by_pfn(doc: dict[str, Any]) -> dict[int, dict[str, Any]]:
    assert doc.get("schema_version") == 1, doc.keys()
    return {int(r["pfn"]): r for r in doc["pages"]}


def covering(rows: dict[int, dict[str, Any]], pfn: int) -> dict[str, Any] | None:
    """The row whose folio contains pfn (rows are keyed by head pfn)."""
    for head in range(pfn, max(pfn - 512, -1), -1):
        r = rows.get(head)
        if r is not None and head + int(r.get("nr_pages", 1)) > pfn:
            return r
    return None


def mismatches(row: dict[str, Any], exp: Expected) -> list[str]:
    want = {
        "nr_pages": exp.nr_pages,
        "zone": exp.zone,
        "refcount": exp.refcount,
        "mapcount": exp.mapcount,
        "pins": exp.pins,
        "extra": exp.extra,
        "evidence": list(exp.evidence),
        "mapping": exp.mapping,
    }
    return [f"{k}: got {row.get(k)!r}, want {v!r}" for k, v in want.items() if row.get(k) != v]


def pinned_doc(b: Booted, target: str) -> dict[str, Any]:
    """The kcore target (inside a TCG guest, slow) scans the Normal zone only."""
    if target == "kcore":
        return run_pinspect(b, target, "pinned", "--zone", "Normal")
    return run_pinspect(b, target, "pinned")


def flagged(b: Booted, pfn: int, nr_pages: int) -> bool:
    """pp61: whether page_pinner marked a page of the folio at *pfn* (its trace says so)."""
    marked = b.pinner_marked
    return marked is not None and any(pfn <= m < pfn + nr_pages for m in marked)


def check_against_ground_truth(b: Booted, doc: dict[str, Any]) -> None:
    """Every pinned page reported as expected, no control page reported; on pp61 a page the
    kernel marked (migration failed on it) also has evidence ``pinner``, and a control page may
    be reported with that evidence only (test_realkernel_trace checks the marks themselves)."""
    assert doc.get("command") == "pinned"
    rows = rows_by_pfn(doc)
    problems = []
    for p in b.gt.pinned():
        exp = expected(p, b.version)
        if flagged(b, p["pfn"], p["nr_pages"]):
            exp = dataclasses.replace(exp, evidence=(*exp.evidence, "pinner"))
        row = rows.get(p["pfn"])
        if row is None:
            problems.append(f"{p['kind']} pfn {p['pfn']}: not reported")
            continue
        bad = mismatches(row, exp)
        if p["kind"] in CMA_KINDS:
            if not row.get("cma"):
                bad.append(f"cma: got {row.get('cma')!r}, want an area name")
            if row.get("migratetype") != "CMA":
                bad.append(f"migratetype: got {row.get('migratetype')!r}, want 'CMA'")
        problems += [f"{p['kind']} pfn {p['pfn']}: {m}" for m in bad]
    for p in b.gt.controls():
        for pfn in range(p["pfn"], p["pfn"] + p["nr_pages"]):
            row = covering(rows, pfn)
            if row is not None and row["evidence"] == ["pinner"] and \
                    flagged(b, int(row["pfn"]), int(row["nr_pages"])):
                continue
            if row is not None:
                problems.append(f"control {p['kind']} pfn {pfn} reported: {row}")
                break
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("target", TARGETS)
def test_pinned_matches_ground_truth(booted: Booted, target: str) -> None:
    check_against_ground_truth(booted, pinned_doc(booted, target))


@pytest.mark.parametrize("target", TARGETS)
def test_pinned_zone_normal(booted: Booted, target: str) -> None:
    doc = run_pinspect(booted, target, "pinned", "--zone", "Normal")
    assert all(r["zone"] == "Normal" for r in doc["pages"])
    check_against_ground_truth(booted, doc)
    summary = doc["summary"]
    # by_zone keys name the zone, perhaps with its node ("0:Normal")
    assert {k.split(":")[-1] for k in summary.get("by_zone", {})} <= {"Normal"}, summary


def test_pinned_summary(booted: Booted) -> None:
    doc = run_pinspect(booted, "elf", "pinned")
    summary = doc["summary"]
    assert summary["pages"] == sum(int(r["nr_pages"]) for r in doc["pages"])
    assert summary["folios"] == len(doc["pages"])
    assert isinstance(doc.get("unreadable"), int)


def test_evidence_filter(booted: Booted) -> None:
    doc = run_pinspect(booted, "elf", "pinned", "--evidence", "foll_pin")
    rows = rows_by_pfn(doc)
    assert all("foll_pin" in r["evidence"] for r in rows.values())
    for p in booted.gt.pinned():
        exp = expected(p, booted.version)
        if "foll_pin" in exp.evidence:
            assert p["pfn"] in rows, p
        else:
            assert p["pfn"] not in rows, p


def test_pfn_range(booted: Booted) -> None:
    pinned = booted.gt.pinned()
    start = min(p["pfn"] for p in pinned)
    end = max(p["pfn"] for p in pinned) + 1
    doc = run_pinspect(booted, "elf", "pinned", "--pfn", f"{start}-{end}")
    rows = rows_by_pfn(doc)
    assert all(start <= pfn <= end for pfn in rows), sorted(rows)
    for p in pinned:
        assert p["pfn"] in rows, p


def _page_object(doc: dict[str, Any], pfn: int) -> dict[str, Any]:
    """The page description in a `page PFN` document (searched, the layout is pinspect's)."""
    stack: list[Any] = [doc]
    while stack:
        d = stack.pop()
        if isinstance(d, dict):
            if d.get("pfn") == pfn and "refcount" in d:
                return d
            stack.extend(d.values())
        elif isinstance(d, list):
            stack.extend(d)
    raise AssertionError(f"no page object for pfn {pfn} in {doc}")


def one_per_kind(b: Booted) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for p in b.gt.pages:
        seen.setdefault(p["kind"], p)
    return list(seen.values())


@pytest.mark.parametrize("target", ["elf", "qmp"])
def test_page_command(booted: Booted, target: str) -> None:
    problems = []
    for p in one_per_kind(booted):
        doc = run_pinspect(booted, target, "page", str(p["pfn"]))
        assert doc.get("command") == "page"
        page = _page_object(doc, p["pfn"])
        exp = expected(p, booted.version)
        if flagged(booted, p["pfn"], p["nr_pages"]):  # pp61: migration failed on it
            exp = dataclasses.replace(exp, evidence=(*exp.evidence, "pinner"))
        want: dict[str, Any] = {"refcount": exp.refcount, "zone": exp.zone}
        for k, v in (("mapcount", exp.mapcount), ("pins", exp.pins), ("extra", exp.extra),
                     ("evidence", list(exp.evidence)), ("nr_pages", exp.nr_pages),
                     ("mapping", exp.mapping)):  # fmt: skip
            if k in page:
                want[k] = v
        problems += [f"{p['kind']} pfn {p['pfn']} {k}: got {page.get(k)!r}, want {v!r}"
                     for k, v in want.items() if page.get(k) != v]  # fmt: skip
    assert not problems, "\n".join(problems)


def _zone_list(doc: dict[str, Any]) -> list[dict[str, Any]]:
    for key in ("zones", "items", "rows"):
        if isinstance(doc.get(key), list):
            return doc[key]  # type: ignore[no-any-return]
    raise AssertionError(f"no zone list in {list(doc)}")


@pytest.mark.parametrize("target", TARGETS)
def test_zones(booted: Booted, target: str) -> None:
    doc = run_pinspect(booted, target, "zones")
    assert doc.get("schema_version") == 1 and doc.get("command") == "zones"
    zones = _zone_list(doc)
    names = {z.get("name", z.get("zone")) for z in zones}
    assert {"DMA", "DMA32", "Normal"} <= names, names
    for z in zones:
        start = z.get("start_pfn")
        end = z.get("end_pfn")
        if end is None and start is not None and "spanned" in z:
            end = start + z["spanned"]
        if start is None or end is None:
            continue
        for p in booted.gt.pages:
            inside = start <= p["pfn"] < end
            if inside:
                assert z.get("name", z.get("zone")) == expected(p, booted.version).zone


def test_info(booted: Booted) -> None:
    doc = run_pinspect(booted, "elf", "info")
    assert doc.get("schema_version") == 1 and doc.get("command") == "info"
    uname = next(line.split()[1] for line in booted.gt.log if line.startswith("uname "))
    assert uname in str(doc), doc


def _gt_rows(b: Booted, doc: dict[str, Any]) -> dict[int, tuple[Any, ...]]:
    rows = rows_by_pfn(doc)
    return {p["pfn"]: tuple(str(rows.get(p["pfn"], {}).get(k)) for k in ROW_KEYS)
            for p in b.gt.pages}  # fmt: skip


def test_same_answers_on_every_target(booted: Booted) -> None:
    """ELF, kdump-compressed, QMP live and in-guest /proc/kcore agree on the ground-truth pages,
    and the two dumps (taken seconds apart from an idle guest) on every long-term pin."""
    docs = {t: run_pinspect(booted, t, "pinned", "--zone", "Normal") for t in HOST_TARGETS}
    if in_guest_runs(booted):
        docs["kcore"] = run_pinspect(booted, "kcore", "pinned", "--zone", "Normal")
    reference = _gt_rows(booted, docs["elf"])
    for t, doc in docs.items():
        assert _gt_rows(booted, doc) == reference, t
        # Live targets re-read each reported page; what changed is flagged page by page and
        # counted in "unread"; a dump is read once and nothing in it changes.
        flagged = sum(bool(r.get("uncertain")) for r in doc["pages"])
        assert doc["unread"]["uncertain"] == flagged, t
        if t in ("elf", "kdump"):
            assert (flagged, doc["unread"]["changed"]) == (0, 0), t
    pins = {t: {r["pfn"] for r in d["pages"] if "foll_pin" in r["evidence"]}
            for t, d in docs.items()}  # fmt: skip
    assert pins["elf"] == pins["kdump"]
    # live targets may see pins come and go in the kernel itself; ours are all there
    gt_pins = {p["pfn"] for p in booted.gt.pinned() if p["pins"]}
    for t, s in pins.items():
        assert gt_pins <= s, t


OWNER_LINE = re.compile(
    r"Page allocated via order (\d+), mask (0x[0-9a-f]+)\((.*)\), pid (-?\d+), "
    r"tgid (-?\d+) \((.*)\), ts (\d+) ns"
)


def _owner_problems(pfn: int, owner: dict[str, Any] | None, text: str) -> list[str]:
    """What differs between pinspect's owner object and the record the guest read from
    /sys/kernel/debug/page_owner: order, gfp mask and names, pid, tgid, comm, timestamp and
    the allocation stack, frame by frame as %pS prints it."""
    if owner is None:
        return [f"pfn {pfn}: no owner"]
    lines = text.splitlines()
    m = OWNER_LINE.match(lines[0])
    assert m, lines[0]
    want = {
        "order": int(m.group(1)),
        "gfp_mask": int(m.group(2), 16),
        "gfp_flags": m.group(3).split("|") if m.group(3) else [],
        "pid": int(m.group(4)),
        "tgid": int(m.group(5)),
        "comm": m.group(6),
        "ts_nsec": int(m.group(7)),
        "stack": [ln[1:] for ln in lines if ln.startswith(" ")],
        "source": "page_owner",
    }
    return [f"pfn {pfn} {k}: got {owner.get(k)!r}, want {v!r}" for k, v in want.items()
            if owner.get(k) != v]


def test_page_owner_stacks(booted: Booted) -> None:
    """`page PFN` on the page_owner kernel shows the allocation stack, pid and comm the guest
    itself read from /sys/kernel/debug/page_owner (ELF dump and live over QMP)."""
    if not booted.kernel.spec.page_owner:
        pytest.skip(f"{booted.name} has no page_owner")
    assert booted.gt.page_owner
    problems = []
    want = {"page_owner": "present"}
    if booted.pinner_marked is not None:  # pp61 also has page_pinner (its RFC variant)
        want["page_pinner"] = "present"
    for target in ("elf", "qmp"):
        for rec in booted.gt.page_owner:
            doc = run_pinspect(booted, target, "page", str(rec["pfn"]))
            assert {s["name"]: s["state"] for s in doc["sources"]} == want, doc["sources"]
            problems += [f"{target}: {p}" for p in
                         _owner_problems(rec["pfn"], doc["owner"], rec["text"])]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("target", TARGETS)
def test_pinned_owner_on_every_target(booted: Booted, target: str) -> None:
    """`pinned` (JSON) carries, for every pinned page the guest read a page_owner record of,
    the same allocation stack, pid and comm: from the ELF and kdump dumps, live over QMP and
    from /proc/kcore inside the guest. Every pinned page of the workload has a record naming
    the workload."""
    if not booted.kernel.spec.page_owner:
        pytest.skip(f"{booted.name} has no page_owner")
    doc = pinned_doc(booted, target)
    rows = rows_by_pfn(doc)
    assert [s["state"] for s in doc["sources"] if s["name"] == "page_owner"] == ["present"]
    # A live target re-reads each reported page: pages whose references came and went
    # between the two reads (the kernel's own, and pinspect's in the guest: cma72 over
    # /proc/kcore had 16) are left out with one warning. The workload's pages must all stay
    # (checked below, page by page).
    live = [w for w in doc["warnings"] if "changed while read (a live kernel)" in w]
    assert not live or target in ("qmp", "kcore"), live
    assert [w for w in doc["warnings"] if w not in live] == []
    problems = []
    for rec in booted.gt.page_owner:
        row = rows.get(rec["pfn"])
        if row is None:
            problems.append(f"pfn {rec['pfn']}: not reported")
            continue
        problems += _owner_problems(rec["pfn"], row["owner"], rec["text"])
    pids = {p["pid"] for p in booted.gt.pinned()}
    for p in booted.gt.pinned():
        row = rows.get(p["pfn"])
        if row is None:
            continue
        owner = row["owner"]
        if owner is None or not owner["stack"] or owner["pid"] not in pids:
            problems.append(f"{p['kind']} pfn {p['pfn']}: owner {owner}")
    assert not problems, "\n".join(problems)


def test_module_frames_named_from_kallsyms(booted: Booted) -> None:
    """Addresses in module text are named from the module's own symbol table in memory (no
    module debug info is loaded): `func+0xoff/0xsize [module]`, the name the kernel's
    find_kallsyms_symbol() picks; drgn's module_kallsyms() reads the same table."""
    from drgn.helpers.linux.kallsyms import module_kallsyms
    from drgn.helpers.linux.module import for_each_module

    from pinspect.stackdepot import Symbolizer
    from pinspect.target import open_program

    if not booted.kernel.modules:
        pytest.skip(f"{booted.name} loads no modules")
    prog = open_program(core=str(booted.dumps["elf"]), vmlinux=[str(booted.vmlinux)])
    symbolizer = Symbolizer(prog)
    checked = 0
    for mod in for_each_module(prog):
        name = mod.name.string_().decode()
        by_address: dict[int, set[str]] = {}
        for sym in module_kallsyms(mod):
            by_address.setdefault(sym.address, set()).add(sym.name)
        for address, names in sorted(by_address.items()):
            frame = symbolizer.frame(address + 1)
            if frame.module is None:  # data, not text
                continue
            assert frame.module == name and frame.symbol in names and frame.offset == 1, frame
            assert str(frame) == f"{frame.symbol}+0x1/{frame.size:#x} [{name}]"
            checked += 1
    assert checked
