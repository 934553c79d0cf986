"""mm/page_owner.c as a page_ext client: a struct page_owner on every page
of each allocation (and of the pages freed since), the static handles, the
6.9+ stack_list of counted stacks, and the text /sys/kernel/debug/page_owner
prints for a record (5.10, 6.1, 6.12 and 7.2; 5.10's struct page_owner has no
pid, tgid, comm or timestamps: the records keep them for the other versions'
text, the truth leaves them out)."""

from __future__ import annotations

from typing import Any

from . import scenario as S
from .gfp import GFP_HIGHUSER_MOVABLE, format_gfp, gfp_of_stack
from .machine import Machine
from .migratetype import mt_name, mt_value
from .pageext import PageExt
from .pageflags import format_pgp
from .stackdepot import StackDepot

T = "struct page_owner"
FIRST_ALLOC_NS = 5_000_000_000
ALLOC_INTERVAL_NS = 7_654_321


class PageOwner:
    """page_owner=on: records by allocation head pfn, as dicts with the
    struct page_owner fields plus pfn and allocated."""

    ops = "page_owner_ops"
    need_shared_flags = True

    def __init__(self, m: Machine, depot: StackDepot) -> None:
        self.m = m
        self.depot = depot
        self.records: dict[int, dict[str, Any]] = {}
        self.stack_counts: dict[int, int] = {}  # 6.9+: handle -> stack_record.count

    def record_size(self) -> int:
        return self.m.t.sizeof(T)

    def setup(self) -> None:
        self.m.write_uint(self.m.sym("page_owner_inited"), 1)

    def write(self, ext: PageExt) -> None:
        m = self.m
        depot = self.depot
        for name, key in (
            ("early_handle", "early"),
            ("dummy_handle", "dummy"),
            ("failure_handle", "failure"),
        ):
            m.write_uint(m.static("page_owner.c", name), depot.save(key))
        # allocated pages: a record on every page of the allocation
        allocs = [(f.pfn, f.order, f.alloc, f.pid, f.comm) for f in m.folios]
        for c in S.CMA_AREAS:
            for s, e in c.allocated:
                allocs += [(pfn, 0, "cma_alloc", 1500, "camera-hal") for pfn in range(s, e)]
        allocs.sort()
        ts_ns = FIRST_ALLOC_NS
        for pfn, order, stack, pid, comm in allocs:
            ts_ns += ALLOC_INTERVAL_NS
            rec = {
                "pfn": pfn,
                "order": order,
                "gfp_mask": gfp_of_stack(stack),
                "handle": depot.save(stack),
                "pid": pid,
                "tgid": pid,
                "comm": comm,
                "ts_nsec": ts_ns,
                "free_handle": 0,
                "free_ts_nsec": 0,
                "last_migrate_reason": -1,
                "allocated": True,
            }
            for i in range(1 << order):
                self._write_record(ext.record(self, pfn + i), rec)
                ext.set_flag(pfn + i, "PAGE_EXT_OWNER")
                ext.set_flag(pfn + i, "PAGE_EXT_OWNER_ALLOCATED")
            self.records[pfn] = rec
        # pages allocated and freed again (the page_pinner PP_FREE pfns)
        for fr in m.sc.freed:
            rec = {
                "pfn": fr.pfn,
                "order": 0,
                "gfp_mask": GFP_HIGHUSER_MOVABLE,
                "handle": depot.save("gpu_shmem"),
                "pid": 812,
                "tgid": 812,
                "comm": "gpu-submit",
                "ts_nsec": 700_000_000_000,
                "free_handle": depot.save("free_anon"),
                "free_ts_nsec": 1_400_000_000_000,
                "last_migrate_reason": -1,
                "allocated": False,
            }
            self._write_record(ext.record(self, fr.pfn), rec)
            ext.set_flag(fr.pfn, "PAGE_EXT_OWNER")
            self.records[fr.pfn] = rec
        if m.t.has_member("struct stack_record", "count"):
            self._write_stack_list([stack for _, _, stack, _, _ in allocs])

    def _write_record(self, a: int, rec: dict[str, Any]) -> None:
        t = self.m.t
        t.put(a, T, "order", rec["order"])
        t.put(a, T, "last_migrate_reason", rec["last_migrate_reason"])
        t.put(a, T, "gfp_mask", rec["gfp_mask"])
        t.put(a, T, "handle", rec["handle"])
        t.put(a, T, "free_handle", rec["free_handle"])
        if not t.has_member(T, "ts_nsec"):
            return  # 5.10
        t.put(a, T, "ts_nsec", rec["ts_nsec"])
        t.put(a, T, "free_ts_nsec", rec["free_ts_nsec"])
        t.put(a, T, "comm", rec["comm"].encode().ljust(16, b"\0"))
        t.put(a, T, "pid", rec["pid"])
        t.put(a, T, "tgid", rec["tgid"])
        if t.has_member(T, "free_pid") and not rec["allocated"]:
            t.put(a, T, "free_pid", rec["pid"])
            t.put(a, T, "free_tgid", rec["tgid"])

    def _write_stack_list(self, alloc_stacks: list[str]) -> None:
        """6.9+: the refcount of each allocation stack is 1 + the allocations
        made with it that are still allocated (frees drop it again), and every
        counted stack sits on stack_list (struct stack), newest first, in
        front of dummy_stack and failure_stack."""
        m = self.m
        t = m.t
        depot = self.depot
        live: dict[int, int] = {}  # handle -> allocations, in first-use order
        for stack in alloc_stacks:
            h = depot.keys[stack]
            live[h] = live.get(h, 0) + 1
        for h, n in live.items():
            depot.set_count(h, 1 + n)
            self.stack_counts[h] = 1 + n
        dummy = m.static("page_owner.c", "dummy_stack")
        failure = m.static("page_owner.c", "failure_stack")
        for node, key in ((dummy, "dummy"), (failure, "failure")):
            h = depot.keys[key]
            t.put(node, "struct stack", "stack_record", depot.records[h])
            depot.set_count(h, 1)
            self.stack_counts[h] = 1
        t.put(dummy, "struct stack", "next", failure)
        head = dummy
        for h in live:
            node = m.kmalloc(16)
            t.put(node, "struct stack", "stack_record", depot.records[h])
            t.put(node, "struct stack", "next", head)
            head = node
        m.write_ulong(m.static("page_owner.c", "stack_list"), head)

    def debugfs_text(self) -> dict[int, list[str]]:
        """The lines the debugfs reader prints for each record it prints: pages
        with PAGE_EXT_OWNER_ALLOCATED whose pfn is aligned to their order."""
        return {
            pfn: self._text(r)
            for pfn, r in sorted(self.records.items())
            if r["allocated"] and not pfn % (1 << r["order"])
        }

    def _text(self, rec: dict[str, Any]) -> list[str]:
        m = self.m
        version = m.k.version
        pfn = rec["pfn"]
        gfp = rec["gfp_mask"]
        head = f"Page allocated via order {rec['order']}, mask {gfp:#x}({format_gfp(version, gfp)})"
        if version != "5.10":
            head += (
                f", pid {rec['pid']}, tgid {rec['tgid']} ({rec['comm']}), "
                f"ts {rec['ts_nsec']} ns"
            )
        if version == "6.1":
            head += f", free_ts {rec['free_ts_nsec']} ns"
        gfp_mt = (gfp & 0x18) >> 3
        pb_mt = mt_value(m, S.pageblock_mt(pfn))
        pfn_text = str(pfn) if version in ("5.10", "6.1") else f"{pfn:#x}"
        second = (
            f"PFN {pfn_text} type {mt_name(m, gfp_mt)} Block {pfn >> S.PAGEBLOCK_ORDER} "
            f"type {mt_name(m, pb_mt)} Flags {format_pgp(m, m.pages[pfn].flags)}"
        )
        return [head, second] + [" " + f for f in self.depot.frames[rec["handle"]]] + [""]
