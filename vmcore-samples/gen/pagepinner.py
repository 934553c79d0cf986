"""Android's page_pinner as a page_ext client, in the variants of
layouts/page_pinner.h: its page_ext flag bits, struct page_pinner per page,
the ring buffers of struct captured_pinner (lt_pinner/acf_pinner of A0-B,
struct page_pinner_buffer of C and D), and the text the kernel's debugfs
readers print for each record."""

from __future__ import annotations

import random
from typing import Any

from . import scenario as S
from .machine import Machine, PageState
from .migratetype import mt_name, mt_value
from .objects import Objects
from .pageext import PageExt
from .pageflags import base_flags, format_pgp, pg
from .pages import add_folio
from .scenario import Folio
from .stackdepot import StackDepot

# the page_ext flags each variant defines
FLAGS = {
    "rfc": ["PAGE_EXT_PINNER"],
    "a0": ["PAGE_EXT_GET"],
    "a2": ["PAGE_EXT_GET", "PAGE_EXT_PINNER_MIGRATION_FAILED"],
    "b": ["PAGE_EXT_GET", "PAGE_EXT_PINNER_MIGRATION_FAILED"],
    "c": ["PAGE_EXT_GET", "PAGE_EXT_PINNER_MIGRATION_FAILED"],
    "d": ["PAGE_EXT_PINNER_MIGRATION_FAILED"],
}
# ring key -> symbol of the ring, per variant
RINGS = {
    "a0": {"lt": "lt_pinner"},
    "a2": {"lt": "lt_pinner", "acf": "acf_pinner"},
    "b": {"lt": "lt_pinner", "acf": "acf_pinner"},
    "c": {"lt": "lt_buffer", "acf": "acf_buffer"},
    "d": {"acf": "pp_buffer"},
}
RING_SIZE = 4096  # LONTERM_PIN_BUCKETS, PP_BUF_SIZE
GUP_STACKS = {"pin_odirect", "pin_io_uring", "pin_rdma", "pin_vb2", "gup_get"}
FAIL_TS = {"reserved": 1234_567890, "vidbuf": 1301_000123}  # µs of CLOCK_BOOTTIME
PP_BUFFER_PFN = 0x100C20  # first of the pages vmalloc'd for pp_buffer (D)
PP_BUFFER_OFFSET = 0x200000  # pp_buffer's records at vmalloc_base + this
CR = "struct captured_pinner"


def sec_usec(us: int) -> str:
    return f"[{us // 1000000:5d}.{us % 1000000:06d}]"


def folio_mapping(st: PageState) -> int:
    """page_mapping()/folio_mapping(): NULL for anon (not in swap cache)."""
    if st.kind in ("shmem", "file"):
        return st.mapping
    return 0


def mapcount(st: PageState) -> int:
    f = st.folio
    return f.mapcount if f is not None else 0


class PagePinner:
    """The page_pinner of one variant: per-page records by pfn, the rings as
    the truth describes them, and A0's debugfs "pinner" file."""

    ops = "page_pinner_ops"
    need_shared_flags = False

    def __init__(self, m: Machine, depot: StackDepot, objs: Objects, variant: str) -> None:
        self.m = m
        self.depot = depot
        self.objs = objs
        self.variant = variant
        self.flag_names = FLAGS[variant]
        self.pages: dict[int, dict[str, int]] = {}  # pfn -> handle, ts_usec, count
        self.rings: dict[str, dict[str, Any]] = {}
        self.pinner_file_text: list[str] = []
        self.pp_ring = 0  # address of pp_buffer's records (D)

    def record_size(self) -> int:
        return 0 if self.variant == "rfc" else self.m.t.sizeof("struct page_pinner")

    def setup(self) -> None:
        m = self.m
        t = m.t
        p = self.variant
        t.put(m.sym("page_pinner_inited"), "struct static_key_false", "key.enabled", 1)
        m.mem.write(m.sym("page_pinner_enabled"), b"\x01")
        if p != "rfc":
            m.write_uint(m.static("page_pinner.c", "failure_handle"), self.depot.save("failure"))
        if p in ("a2", "b", "c", "d"):
            t.put(m.sym("failure_tracking"), "struct static_key_true", "key.enabled", 1)
        if p == "d":
            # a vmalloc'd ring of pp_buf_size records
            nr = (RING_SIZE * t.sizeof(CR) + m.ps - 1) // m.ps
            self.pp_ring = m.arch.vmalloc_base + PP_BUFFER_OFFSET
            for i in range(nr):
                pfn = PP_BUFFER_PFN + i
                add_folio(m, Folio(pfn, "kernel", alloc="driver", note="vmalloc page of pp_buffer"))
                m.mem.map_page(self.pp_ring + i * m.ps, pfn)
            t.put(m.sym("pp_buffer"), "struct page_pinner_buffer", "buffer", self.pp_ring)

    def write(self, ext: PageExt) -> None:
        """Per-page state and the ring buffers of the variant."""
        m = self.m
        t = m.t
        p = self.variant
        mf = [f for f in m.folios if f.migration_failed]
        gup = [f for f in m.folios if f.pin_stack in GUP_STACKS]
        per_page = self.pages
        # GUP pin tracking (A*, B, C)
        if p in ("a0", "a2", "b", "c"):
            for i, f in enumerate(gup):
                h = self.depot.save(f.pin_stack or "gup_get")
                count = f.pins if f.pins else f.extra
                ext.set_flag(f.pfn, "PAGE_EXT_GET")
                per_page[f.pfn] = {"handle": h, "ts_usec": 900_000_000 + 1000 * i, "count": count}
        # migration-failure flags (RFC: PAGE_EXT_PINNER; A2/B/C/D: MIGRATION_FAILED)
        fail_ts = {f.pfn: _first_failure(f.pfn) for f in mf}
        if p == "rfc":
            for f in mf:
                ext.set_flag(f.pfn, "PAGE_EXT_PINNER")
        elif p in ("a2", "b", "c", "d"):
            for f in mf:
                ext.set_flag(f.pfn, "PAGE_EXT_PINNER_MIGRATION_FAILED")
                if p in ("c", "d"):
                    d = per_page.setdefault(f.pfn, {"handle": 0, "ts_usec": 0, "count": 0})
                    d["ts_usec"] = fail_ts[f.pfn]
        for pfn, d in per_page.items():
            a = ext.record(self, pfn)
            t.put(a, "struct page_pinner", "handle", d["handle"])
            t.put(a, "struct page_pinner", "ts_usec", d["ts_usec"])
            t.put(a, "struct page_pinner", "count", d["count"])
        if p == "a0":
            self.pinner_file_text = self._pinner_file_text()
        if p == "rfc":
            return
        events = self._events(mf, fail_ts)
        for ring_key, sym in RINGS[p].items():
            self._write_ring(sym, ring_key, [e for e in events if e["ring"] == ring_key])

    def _pinner_file_text(self) -> list[str]:
        """A0's debugfs "pinner" file: every page with PAGE_EXT_GET, a count
        and a handle, in pfn order."""
        m = self.m
        lines: list[str] = []
        for pfn in sorted(self.pages):
            d = self.pages[pfn]
            mt = mt_value(m, S.pageblock_mt(pfn))
            lines += [
                f"Page pinned ts {d['ts_usec']} us count {d['count']}",
                f"PFN {pfn} Block {pfn >> S.PAGEBLOCK_ORDER} type {mt_name(m, mt)} "
                f"{self._flags_text(m.pages[pfn].flags)}",
            ]
            lines += [" " + f for f in self.depot.frames[d["handle"]]] + [""]
        return lines

    def _events(self, mf: list[Folio], fail_ts: dict[int, int]) -> list[dict[str, Any]]:
        """Every ring event of the variant, in time order."""
        p = self.variant
        sc = self.m.sc
        events: list[dict[str, Any]] = []
        if p in ("a0", "a2", "b", "c"):
            for i, lt in enumerate(sc.longterm):
                events.append(
                    {
                        "ring": "lt",
                        "kind": "put",
                        "pfn": lt.pfn,
                        "stack": lt.stack,
                        "elapsed": lt.elapsed_us,
                        "ts": 1100_000000 + 37_000 * i,
                    }
                )
        if p in ("a2", "b", "c", "d"):
            for f in mf:
                events.append(
                    {
                        "ring": "acf",
                        "kind": "fail",
                        "pfn": f.pfn,
                        "stack": "fail_detect",
                        "ts": fail_ts[f.pfn],
                    }
                )
                for j, ps in enumerate(f.puts):
                    ts = fail_ts[f.pfn] + 91_215 + 50_000 * j
                    events.append(
                        {
                            "ring": "acf",
                            "kind": "put",
                            "pfn": f.pfn,
                            "stack": ps,
                            "ts": ts,
                            "elapsed": ts - fail_ts[f.pfn],
                        }
                    )
            for k, fr in enumerate(sc.freed):
                f0 = _first_failure(fr.pfn)
                events.append(
                    {
                        "ring": "acf",
                        "kind": "fail",
                        "pfn": fr.pfn,
                        "stack": "fail_detect",
                        "ts": f0,
                        "gone": True,
                    }
                )
                events.append(
                    {
                        "ring": "acf",
                        "kind": "put",
                        "pfn": fr.pfn,
                        "stack": fr.put_stack,
                        "ts": f0 + 120_000,
                        "elapsed": 120_000,
                        "gone": True,
                    }
                )
                if p in ("b", "c", "d"):
                    events.append(
                        {
                            "ring": "acf",
                            "kind": "free",
                            "pfn": fr.pfn,
                            "stack": fr.free_stack,
                            "ts": f0 + 130_000 + k,
                            "gone": True,
                        }
                    )
        events.sort(key=lambda e: (e["ts"], e["pfn"]))
        return events

    def _snapshot(self, e: dict[str, Any]) -> dict[str, int]:
        """Page state the kernel captured for an event."""
        st = self.m.pages[e["pfn"]]
        if e.get("gone"):
            # the page was a mapped shmem page at the time (it is free now)
            flags = base_flags(self.m, e["pfn"]) | pg(
                self.m, "uptodate", "lru", "swapbacked", "dirty"
            )
            return {
                "flags": flags,
                "count": {"fail": 3, "put": 2, "free": 0}[e["kind"]],
                "mapcount": 0 if e["kind"] == "free" else 1,
                "mapping": self.objs.shmem_mapping,
            }
        return {
            "flags": st.flags,
            "count": st.refcount,
            "mapcount": mapcount(st),
            "mapping": folio_mapping(st),
        }

    def _write_ring(self, sym: str, ring_key: str, evs: list[dict[str, Any]]) -> None:
        m = self.m
        t = m.t
        p = self.variant
        addr = m.sym(sym)
        rsize = t.sizeof(CR)
        if p == "d":
            slots = self.pp_ring
            m.write_ulong(m.sym("pp_buf_size"), RING_SIZE)
        elif p == "c":
            slots = addr + t.offsetof("struct page_pinner_buffer", "buffer")
        else:
            slots = addr + t.offsetof("struct longterm_pinner", "pinner")
        records = []
        for idx, e in enumerate(evs):
            a = slots + idx * rsize
            h = self.depot.save(e["stack"])
            snap = self._snapshot(e)
            pfn = e["pfn"]
            rec: dict[str, Any] = {"slot": idx, "pfn": pfn, "handle": h}
            t.put(a, CR, "handle", h)
            if p in ("a0", "a2"):
                mt = mt_value(m, S.pageblock_mt(pfn))
                ts_field = e["elapsed"] if ring_key == "lt" else e["ts"]
                t.put(a, CR, "ts_usec", ts_field)
                t.put(a, CR, "page_mt", mt)
                t.put(a, CR, "page_flags", snap["flags"])
                t.put(a, CR, "pfn", pfn)
                rec.update({"ts_usec": ts_field, "page_mt": mt, "page_flags": snap["flags"]})
            else:
                if ring_key == "lt" or e["kind"] == "put":
                    val = e["elapsed"]
                    rec["elapsed"] = val
                else:
                    val = e["ts"]
                    rec["ts_usec"] = val
                t.put(a, CR, "ts_usec", val)
                t.put(a, CR, "pfn", pfn)
                for name in ("count", "mapcount", "mapping", "flags"):
                    t.put(a, CR, name, snap[name])
                    rec[name] = snap[name]
                if p in ("c", "d"):
                    state = {"put": "PP_PUT", "free": "PP_FREE", "fail": "PP_FAIL_DETECTED"}[
                        e["kind"]
                    ]
                    if ring_key == "lt":
                        state = "PP_PUT"
                    t.put(a, CR, "state", m.enum(state))
                    rec["state"] = state
            rec["event"] = e["kind"]
            rec["time_usec"] = e["ts"]
            rec["stack"] = self.depot.frames[h]
            rec["text"] = self._record_text(ring_key, rec)
            records.append(rec)
        index = len(evs) % RING_SIZE
        ring_type = "struct page_pinner_buffer" if p in ("c", "d") else "struct longterm_pinner"
        t.put(addr, ring_type, "index", index)
        garbage = self._garbage(slots, rsize) if p == "d" else []
        newest_first = list(reversed(records))
        self.rings[sym] = {
            "symbol": sym,
            "size": RING_SIZE,
            "index": index,
            "record_size": rsize,
            "slots_address": slots,
            "records": newest_first,
            "garbage_slots": garbage,
            "kernel_text": [ln for r in newest_first for ln in r["text"]],
        }

    def _flags_text(self, flags: int) -> str:
        return f"Flags {flags:#x}({format_pgp(self.m, flags)})"

    def _record_text(self, ring_key: str, r: dict[str, Any]) -> list[str]:
        p = self.variant
        pfn = r["pfn"]
        block = pfn >> S.PAGEBLOCK_ORDER
        if p in ("a0", "a2"):
            if p == "a0":
                first = f"Page pinned ts {r['ts_usec']} us count 0"
            elif ring_key == "lt":
                first = f"Page pinned for {r['ts_usec']} us"
            else:
                first = f"Page pinned ts {sec_usec(r['ts_usec'])}"
            second = (
                f"PFN {pfn} Block {block} type {mt_name(self.m, r['page_mt'])} "
                f"{self._flags_text(r['page_flags'])}"
            )
        else:
            if p == "b":
                first = (
                    f"Page pinned for {r['elapsed']} us"
                    if "elapsed" in r
                    else f"Page pinned ts {sec_usec(r['ts_usec'])}"
                )
            else:
                first = {
                    "PP_PUT": f"At least, pinned for {r.get('elapsed', 0)} us",
                    "PP_FREE": f"Freed at {sec_usec(r.get('ts_usec', 0))}",
                    "PP_FAIL_DETECTED": f"Failure detected at {sec_usec(r.get('ts_usec', 0))}",
                }[r["state"]]
            second = (
                f"PFN {pfn:#x} Block {block} count {r['count']} mapcount {r['mapcount']} "
                f"mapping {r['mapping']:#x} {self._flags_text(r['flags'])}"
            )
        return [first, second] + [" " + fr for fr in r["stack"]] + [""]

    def _garbage(self, slots: int, rsize: int) -> list[dict[str, Any]]:
        """Never-written slots at the end of the kvmalloc'd ring: stale bytes
        that fail validation in different ways.  The slot before them is zero,
        so the kernel reader would print these four and then stop."""
        m = self.m
        rnd = random.Random(0x5EED)
        out = []
        valid_h = self.depot.save("gpu_put")
        cases = [
            ("handle pool index out of range", {"handle": 0x0400_0007 | (1 << 26), "state": 0}),
            ("state out of range", {"handle": valid_h, "state": 0x5A5A5A5A}),
            ("pfn not valid", {"handle": valid_h, "state": 1, "pfn": 0x7FFF_FFFF_F000}),
            (
                "handle offset beyond the pool's used area",
                {"handle": (1 << 26) | (1000 << 16), "state": 2},
            ),
        ]
        for k, (why, fields) in enumerate(cases):
            slot = RING_SIZE - 1 - k
            a = slots + slot * rsize
            m.mem.write(a, bytes(rnd.randrange(1, 256) for _ in range(rsize)))
            for name in ("handle", "state", "pfn"):
                if name in fields:
                    m.t.put(a, CR, name, fields[name])
            out.append({"slot": slot, "reason": why})
        return out


def _first_failure(pfn: int) -> int:
    """µs of the first failed CMA allocation on pfn: its area's failure time
    plus the pfn's offset in the area."""
    area = S.cma_area_of(pfn)
    assert area is not None
    return FAIL_TS[area.name] + (pfn - area.base_pfn)
