"""The reverse map and the kernel holders against the ground truth of every synthetic sample.

Each sample has processes (tasks, mms, VMAs in a maple tree or in 5.10's mmap list and rbtree,
anon_vmas, files through their dentry chains, a pipe, an io_uring ring and an LRU batch); its
truth file's ``rmap`` section names every pinned folio's mappers and holders. Compared here:
``find_pinned(mappers=True)``, ``pinned`` (JSON and ``--owners`` table/CSV), ``owners`` and
``page``; the kernel structures themselves through drgn's own helpers; and bad input (loops and
wild pointers overlaid on a sample) that must end bounded, with every problem counted.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from typing import Any

import drgn
import pytest
from drgn import Object

import pinspect
from pinspect.commands import owners as owners_command
from pinspect.commands import page as page_command
from pinspect.commands import pinned as pinned_command
from pinspect.render import render
from pinspect.report import attach_mappers, find_pinned
from tests.sampledata import SAMPLE_NAMES, SAMPLES_DIR, open_sample, sample_paths

WILD = 0xDEAD000000000000
MAPPER_KEYS = ("pid", "tgid", "comm", "vaddr", "vaddr_end", "vma", "vm_flags", "file", "mm",
               "pinned_vm", "has_pinned", "verified")
HOLDER_KEYS = ("holder", "kind", "counts_as", "count", "pid", "comm", "fds", "address",
               "transient")


def _truth(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES_DIR / f"{name}.truth.json").read_text())


@pytest.fixture(scope="module", params=SAMPLE_NAMES)
def sample(request: pytest.FixtureRequest) -> tuple[str, drgn.Program, dict[str, Any]]:
    name = request.param
    return name, open_sample(name), _truth(name)


def _mappers(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mappers in a comparable form: the truth's keys, flags as a set, sorted by pid and
    address."""
    out = [dict({k: m[k] for k in MAPPER_KEYS}, flags=sorted(m["flags"])) for m in objs]
    return sorted(out, key=lambda m: (m["pid"], m["vaddr"]))


def _holders(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(({k: h[k] for k in HOLDER_KEYS} for h in objs), key=lambda h: h["holder"])


def _expected(truth: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {p["pfn"]: p for p in truth["rmap"]["pages"]}


def _compare(got: dict[int, dict[str, Any]], want: dict[int, dict[str, Any]]) -> list[str]:
    problems = []
    assert sorted(got) == sorted(want)
    for pfn, w in want.items():
        g = got[pfn]
        if _mappers(g["mappers"]) != _mappers(w["mappers"]):
            problems.append(f"{pfn:#x} mappers: got {_mappers(g['mappers'])}, "
                            f"want {_mappers(w['mappers'])}")
        if _holders(g["holders"]) != _holders(w["holders"]):
            problems.append(f"{pfn:#x} holders: got {_holders(g['holders'])}, "
                            f"want {_holders(w['holders'])}")
        for key in ("unexplained_pins", "unexplained_extra"):
            if g[key] != w[key]:
                problems.append(f"{pfn:#x} {key}: got {g[key]}, want {w[key]}")
    return problems


def test_truth_covers_the_kinds() -> None:
    """The samples show what the brief asks: mappers of every pinned folio that is mapped, a
    MAP_SHARED page of two processes, shm/memfd/tmpfs/file paths, pipe, io_uring and LRU
    holders, and a name with control and non-UTF-8 bytes."""
    for name in SAMPLE_NAMES:
        rmap = _truth(name)["rmap"]
        pages = rmap["pages"]
        kinds = {h["kind"] for p in pages for h in p["holders"]}
        assert kinds == {"io_uring", "pipe", "lru_batch"}, name
        files = {m["file"] for p in pages for m in p["mappers"]}
        assert {"[anon]", "/srv/data.bin", "/dev/shm/frames", "memfd:gpu-heap (deleted)",
                "SYSV0000abcd (deleted)"} <= files, name
        assert any(len({m["pid"] for m in p["mappers"]}) == 2 for p in pages), name
        # a forked child's copy of an anon VMA that does not map the page: checked in the
        # page tables
        assert any(m["verified"] for p in pages for m in p["mappers"]), name
        assert any("\x1b" in p["comm"] and "\\xfe" in p["comm"] for p in rmap["processes"])


def test_find_pinned_mappers_and_holders(sample: tuple[str, drgn.Program, dict[str, Any]]
                                         ) -> None:
    name, prog, truth = sample
    report = find_pinned(prog, owners=False, mappers=True)
    got = {p.pfn: {"mappers": [vars_(m) for m in p.mappers or []],
                   "holders": [vars_(h) for h in p.holders or []],
                   "unexplained_pins": p.unexplained_pins,
                   "unexplained_extra": p.unexplained_extra} for p in report.pages}
    problems = _compare(got, _expected(truth))
    assert not problems, "\n".join(problems)
    assert report.rmap is not None
    want = truth["rmap"]["summary"]
    summary = {k: getattr(report.rmap, k) for k in want}
    assert summary == want
    assert report.rmap.warnings == []
    assert set(report.rmap.holders) == {"io_uring", "pipe", "lru_batch"}


def vars_(obj: Any) -> dict[str, Any]:
    return {k: getattr(obj, k) for k in obj.__slots__}


def test_pinned_json_carries_mappers_and_holders(
        sample: tuple[str, drgn.Program, dict[str, Any]]) -> None:
    name, prog, truth = sample
    report = find_pinned(prog, mappers=True)
    doc = json.loads(render(pinned_command.document(report), "json"))
    got = {p["pfn"]: p for p in doc["pages"]}
    problems = _compare(got, _expected(truth))
    assert not problems, "\n".join(problems)
    assert {k: doc["rmap"][k] for k in truth["rmap"]["summary"]} == truth["rmap"]["summary"]


def test_owners_groups(sample: tuple[str, drgn.Program, dict[str, Any]]) -> None:
    """``owners``: per process the folios it maps with their pins and extra references, per
    holder the references it holds, all derived from the truth."""
    name, prog, truth = sample
    report = find_pinned(prog, owners=False, mappers=True)
    doc = json.loads(render(owners_command.document(owners_command.group_owners(report)),
                            "json"))
    pinned = {p["pfn"]: p for p in truth["pinned"]}
    want_procs: dict[int | None, dict[str, int]] = {}
    want_holders: dict[str, dict[str, int]] = {}
    for page in truth["rmap"]["pages"]:
        row = pinned[page["pfn"]]
        # a folio nobody maps (android's pinner-only shmem page) groups as "(no mapper found)"
        for pid in sorted({m["pid"] for m in page["mappers"]}) or [None]:
            w = want_procs.setdefault(pid, {"folios": 0, "pages": 0, "pins": 0, "extra": 0})
            w["folios"] += 1
            w["pages"] += row["nr_pages"]
            w["pins"] += row["pins"]
            w["extra"] += row["extra"]
        for h in page["holders"]:
            w = want_holders.setdefault(h["holder"], {"folios": 0, "refs": 0})
            w["folios"] += 1
            w["refs"] += h["count"]
    got_procs = {g["pid"]: {k: g[k] for k in ("folios", "pages", "pins", "extra")}
                 for g in doc["processes"]}
    assert got_procs == want_procs
    got_holders = {g["name"]: {"folios": g["folios"], "refs": g["refs"]}
                   for g in doc["holders"] if g["name"] != "unexplained"}
    assert got_holders == want_holders
    summary = truth["rmap"]["summary"]
    assert doc["unexplained"]["pins"] == summary["unexplained_pins"]
    assert doc["unexplained"]["extra"] == summary["unexplained_extra"]


def test_page_shows_mappers_and_holders(sample: tuple[str, drgn.Program, dict[str, Any]]
                                        ) -> None:
    name, prog, truth = sample
    got = {}
    for want in truth["rmap"]["pages"]:
        doc = json.loads(render(page_command.document(pinspect.inspect_page(prog, want["pfn"])),
                                "json"))
        got[want["pfn"]] = {"mappers": doc["mappers"], "holders": doc["holders"],
                            "unexplained_pins": doc["folio"]["unexplained_pins"],
                            "unexplained_extra": doc["folio"]["unexplained_extra"]}
    problems = _compare(got, _expected(truth))
    assert not problems, "\n".join(problems)


def test_kernel_structures_through_drgn(sample: tuple[str, drgn.Program, dict[str, Any]]
                                        ) -> None:
    """drgn's own helpers read the samples' processes as the truth describes them: the task
    list, each mm's VMAs (maple tree on 6.1+, mmap list on 5.10), the rbtrees (valid red-black
    trees in their key order) and the per-CPU LRU batch."""
    from drgn.helpers.linux.list import list_for_each_entry
    from drgn.helpers.linux.mm import follow_pfn, for_each_vma, page_to_pfn
    from drgn.helpers.linux.percpu import per_cpu
    from drgn.helpers.linux.rbtree import rbtree_inorder_for_each_entry, validate_rbtree

    name, prog, truth = sample
    procs = truth["rmap"]["processes"]
    # (the samples have no pid namespace: drgn's for_each_task() needs init_pid_ns's idr)
    init = prog["init_task"]
    tasks = {t.pid.value_(): t for t in list_for_each_entry(
        "struct task_struct", init.tasks.address_of_(), "tasks")}
    assert init.pid.value_() == 0 and init.comm.string_() == b"swapper/0"
    assert list(tasks) == sorted(p["pid"] for p in procs)
    for p in procs:
        task = tasks[p["pid"]]
        assert task.comm.string_().hex() == p["comm_bytes"]
        assert task.mm.value_() == p["mm"]
        vmas = [(v.vm_start.value_(), v.vm_end.value_(), v.value_()) for v in
                for_each_vma(task.mm)]
        assert vmas == [(v["start"], v["end"], v["address"]) for v in p["vmas"]]
        mm = task.mm
        if mm.type_.type.has_member("mm_rb"):  # 5.10: the mm_rb tree too, by vm_start
            validate_rbtree("struct vm_area_struct", mm.mm_rb.address_of_(), "vm_rb",
                            lambda a, b: (a.vm_start > b.vm_start) - (a.vm_start < b.vm_start),
                            False)
            assert [v.value_() for v in rbtree_inorder_for_each_entry(
                "struct vm_area_struct", mm.mm_rb.address_of_(), "vm_rb")] == \
                [v["address"] for v in p["vmas"]]
        if p["anon_vma"]:
            av = Object(prog, "struct anon_vma", address=p["anon_vma"])
            validate_rbtree("struct anon_vma_chain", av.rb_root.rb_root.address_of_(), "rb",
                            lambda a, b: (a.vma.vm_pgoff > b.vma.vm_pgoff)
                            - (a.vma.vm_pgoff < b.vma.vm_pgoff), True)  # a forked copy: equal
    # the mappers checked in the page tables: drgn's follow_pfn() finds the page there, and
    # not in the forked child whose copy of the VMA is a candidate too
    checked = [(p["pfn"], m) for p in truth["rmap"]["pages"] for m in p["mappers"]
               if m["verified"]]
    assert checked
    for pfn, m in checked:
        mm = Object(prog, "struct mm_struct *", m["mm"])
        assert follow_pfn(mm, m["vaddr"]).value_() == pfn
        for child in (p for p in procs if p["parent"] == m["pid"]):
            with pytest.raises(drgn.FaultError):
                follow_pfn(Object(prog, "struct mm_struct *", child["mm"]), m["vaddr"])
    for batch in truth["rmap"]["lru_batches"]:
        name_ = "cpu_fbatches" if "cpu_fbatches" in [s.name for s in prog.symbols()] \
            else "lru_pvecs"
        lru_add = per_cpu(prog[name_], batch["cpu"]).lru_add
        assert lru_add.address_ == batch["address"]
        entries = lru_add.folios if lru_add.type_.has_member("folios") else lru_add.pages
        assert [page_to_pfn(
            Object(prog, "struct page *", entries[i].value_())).value_()
            for i in range(lru_add.nr.value_())] == batch["pfns"]


def test_pinned_owners_table_and_csv_escape_names() -> None:
    """``pinned --owners`` as a user types it: a row per pinned folio with its mappers, and the
    name with an escape character and a non-UTF-8 byte escaped in table and CSV output."""
    core, debug = sample_paths("mainline-6.1")
    truth = _truth("mainline-6.1")
    for fmt in ("table", "csv"):
        result = subprocess.run([sys.executable, "-m", "pinspect", "-c", str(core), "-s",
                                 str(debug), "--format", fmt, "pinned", "--owners"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "\x1b" not in out and "\ufffd" not in out
        assert "gpu-peer\\x1b[1m\\\\xfe" in out, out
        for page in truth["rmap"]["pages"]:
            for m in page["mappers"]:
                assert f"{m['vaddr']:#x}" in out
                assert m["file"] in out
        if fmt == "csv":  # one row per folio, its mappers joined with "|"
            rows = {int(r["pfn"], 16): r for r in csv.DictReader(io.StringIO(out))}
            for page in truth["rmap"]["pages"]:
                row = rows[page["pfn"]]
                want = page["mappers"]
                assert sorted(row["pid"].split("|")) == sorted(str(m["pid"]) for m in want)
                assert sorted(row["file"].split("|")) == sorted(m["file"] for m in want)


def _overlay(prog: drgn.Program, address: int, value: int) -> None:
    data = value.to_bytes(8, "little")
    prog.add_memory_segment(address, 8, lambda a, c, o, p: data[o:o + c], False)


@pytest.mark.parametrize("name", ["mainline-5.10", "mainline-6.1", "mainline-6.12",
                                  "mainline-7.2", "android-d"])
def test_loops_and_wild_pointers_are_bounded_and_counted(name: str) -> None:
    """Overlays on a sample: a cycle and a wild pointer in init's anon_vma tree, a wild node
    in an i_mmap tree, a dentry loop, a task list that loops back, a wild struct file in an fd
    table, a wild pipe ring and a wild io_uring bvec page. The reverse map finishes, counts
    each problem, and answers the rest of the truth."""
    prog = open_sample(name)
    truth = _truth(name)
    rmap = truth["rmap"]
    report = find_pinned(prog, owners=False)
    procs = {p["pid"]: p for p in rmap["processes"]}
    rb = prog.type("struct rb_node")
    # init's anon_vma: two chains, the root (its 0x100494 VMA) and a left child (0x1441-0x1445)
    av = Object(prog, "struct anon_vma", address=procs[1]["anon_vma"])
    root = av.rb_root.rb_root.rb_node.value_()
    _overlay(prog, root + rb.member("rb_left").offset, root)  # a cycle
    _overlay(prog, root + rb.member("rb_right").offset, WILD)  # a wild child
    # /dev/shm/frames: the i_mmap root's left child (one of the two VMAs) is wild
    frames = Object(prog, "struct file", address=rmap["files"]["frames"]["file"])
    iroot = frames.f_mapping.i_mmap.rb_root.rb_node.value_()
    _overlay(prog, iroot + rb.member("rb_left").offset, WILD)
    # /srv/data.bin: "srv"'s parent is "data.bin" (a loop)
    data = Object(prog, "struct file", address=rmap["files"]["data"]["file"]).f_path.dentry
    srv = data.d_parent
    _overlay(prog, srv.d_parent.address_, data.value_())
    # the task list: the last task's next goes back to its predecessor
    off = prog.type("struct task_struct").member("tasks").offset
    last, before = (procs[p]["task"] for p in sorted(procs)[-1:-3:-1])
    _overlay(prog, last + off, before + off)
    # gpu-submit's fd 3 (its memfd) is a wild pointer
    files = Object(prog, "struct files_struct", address=procs[812]["files"])
    _overlay(prog, files.fdt.fd.value_() + 8 * 3, WILD)
    # the pipe's buffer array is wild
    pipe = Object(prog, "struct pipe_inode_info", address=rmap["pipes"][0]["address"])
    _overlay(prog, pipe.bufs.address_, WILD)
    # the first registered buffer's first bvec points at no struct page
    ring = Object(prog, "struct io_ring_ctx", address=rmap["io_uring"][0]["address"])
    if ring.type_.has_member("user_bufs"):
        ubuf = ring.user_bufs[0]
    else:
        ubuf = ring.buf_table.nodes[0].buf
    _overlay(prog, ubuf.bvec[0].bv_page.address_, WILD)
    prog.cache.clear()
    summary = attach_mappers(prog, report.pages)
    kinds = {w.rsplit(":", 1)[0] for w in summary.warnings}
    assert {"anon_vma tree: cycle", "anon_vma tree: unreadable node",
            "i_mmap tree: unreadable node", "dentry chain: loop or too deep",
            "task list: broken list", "open file: unreadable struct file",
            "pipe: unreadable buffers", "io_uring: pointer that is no struct page"} <= kinds, kinds
    got = {p.pfn: p.mappers or [] for p in report.pages}
    pages = {p.pfn: p for p in report.pages}
    want = _expected(truth)
    # init's first anon VMA is cut off: its two folios are unresolved, 0x100494 is not
    assert summary.unresolved == 2
    assert got[0x1441] == [] and got[0x1445] == []
    assert [m.pid for m in got[0x100494]] == [1]
    # one of the two mappers of the tmpfs pages is lost with the wild i_mmap node
    for pfn in (0x100211, 0x100212, 0x100213):
        assert len(got[pfn]) == 1
        assert got[pfn][0].pid in {m["pid"] for m in want[pfn]["mappers"]}
    assert "..." in got[0x1614][0].file and got[0x1614][0].pid == 1
    # no pipe holds any more: its references are unexplained; the wild bvec's pin too
    assert pages[0x1614].unexplained_extra == 2 and pages[0x100208].unexplained_extra == 1
    assert pages[0x100200].unexplained_pins == 1 and pages[0x100201].unexplained_pins == 0
    # every task was still read (the loop starts after the last one)
    untouched = [pfn for pfn in want if pfn not in (0x1441, 0x1445, 0x100211, 0x100212,
                                                     0x100213, 0x1614)]
    for pfn in untouched:
        assert sorted((m.pid, m.vaddr) for m in got[pfn]) == \
            sorted((m["pid"], m["vaddr"]) for m in want[pfn]["mappers"]), hex(pfn)


def test_pinned_filters_match_truth() -> None:
    """``pinned --pid/--comm/--file/--holder`` keep the folios the truth says: those a process
    maps or holds, those mapped from a matching file, those with a holder of that kind."""
    name = "mainline-7.2"
    core, debug = sample_paths(name)
    rmap = _truth(name)["rmap"]
    pages = rmap["pages"]

    def pfns(*args: str) -> list[int]:
        result = subprocess.run([sys.executable, "-m", "pinspect", "-c", str(core), "-s",
                                 str(debug), "--format", "csv", "pinned", *args],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return [int(r["pfn"], 16) for r in csv.DictReader(io.StringIO(result.stdout))]

    def by_pid(pid: int) -> list[int]:
        return [p["pfn"] for p in pages if any(m["pid"] == pid for m in p["mappers"])
                or any(h["pid"] == pid for h in p["holders"])]

    assert pfns("--pid", "813") == by_pid(813) and len(by_pid(813)) == 3
    assert pfns("--comm", "gpu-peer*") == by_pid(813)
    assert pfns("--file", "SYSV") == [p["pfn"] for p in pages
                                      if any(m["file"].startswith("SYSV") for m in p["mappers"])]
    for kind in ("pipe", "lru_batch"):
        assert pfns("--holder", kind) == [p["pfn"] for p in pages
                                          if any(h["kind"] == kind for h in p["holders"])]
