"""page_ext contents: page_owner records and the page_pinner variants (per-page
data, flags and ring buffers), plus the text the kernel's debugfs readers
would print for each ring record."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from . import scenario as S

if TYPE_CHECKING:
    from .kernel import Builder, PageState

# order of include/trace/events/mmflags.h's page flag name table; entries whose
# PG_ enumerator is absent from the kernel's DWARF are skipped
PAGEFLAG_NAMES_612 = [
    "locked",
    "waiters",
    "referenced",
    "uptodate",
    "dirty",
    "lru",
    "active",
    "workingset",
    "owner_priv_1",
    "owner_2",
    "arch_1",
    "reserved",
    "private",
    "private_2",
    "writeback",
    "head",
    "reclaim",
    "swapbacked",
    "unevictable",
    "dropbehind",
    "mlocked",
    "hwpoison",
    "idle",
    "young",
    "arch_2",
    "arch_3",
]
PAGEFLAG_NAMES = [
    "locked",
    "waiters",
    "error",
    "referenced",
    "uptodate",
    "dirty",
    "lru",
    "active",
    "workingset",
    "slab",
    "owner_priv_1",
    "arch_1",
    "reserved",
    "private",
    "private_2",
    "writeback",
    "head",
    "mappedtodisk",
    "reclaim",
    "swapbacked",
    "unevictable",
    "mlocked",
    "uncached",
    "hwpoison",
    "young",
    "idle",
    "arch_2",
    "arch_3",
    "skip_kasan_poison",
]

GUP_STACKS = {"pin_odirect", "pin_io_uring", "pin_rdma", "pin_vb2", "gup_get"}
FAIL_TS = {"reserved": 1234_567890, "vidbuf": 1301_000123}  # µs of CLOCK_BOOTTIME


def format_pgp(b: Builder, flags: int) -> str:
    """The kernel's %pGp for a page->flags word (6.1/6.12 style)."""
    nr = b.enum("__NR_PAGEFLAGS")
    main = flags & ((1 << nr) - 1)
    parts: list[str] = []
    rest = main
    for n in PAGEFLAG_NAMES if b.k.version == "6.1" else PAGEFLAG_NAMES_612:
        if not rest:
            break
        if not b.t.has_enum("PG_" + n):
            continue
        m = 1 << b.enum("PG_" + n)
        if rest & m == m:
            parts.append(n)
            rest &= ~m
    names = "|".join(parts)
    if rest:
        names = (names + "|" if names else "") + f"{rest:#x}"
    fl = b.flag_layout
    fields = []
    for name, shift, width, hexa in (
        ("node", fl["nodes_pgshift"], fl["nodes_width"], False),
        ("zone", fl["zones_pgshift"], fl["zones_width"], False),
        ("lastcpupid", fl["last_cpupid_pgshift"], fl["last_cpupid_width"], True),
    ):
        if width:
            v = (flags >> shift) & ((1 << width) - 1)
            fields.append(f"{name}={v:#x}" if hexa else f"{name}={v}")
    body = "|".join(([names] if names else []) + fields)
    return f"{flags:#x}({body})"


def flags_text(b: Builder, flags: int) -> str:
    return f"Flags {flags:#x}({format_pgp(b, flags)})"


def sec_usec(us: int) -> str:
    return f"[{us // 1000000:5d}.{us % 1000000:06d}]"


def mapping_text(mapping: int) -> str:
    return f"{mapping:#x}"


def mt_name(b: Builder, mt: int) -> str:
    names = {
        b.enum(f"MIGRATE_{n}"): t
        for n, t in (
            ("UNMOVABLE", "Unmovable"),
            ("MOVABLE", "Movable"),
            ("RECLAIMABLE", "Reclaimable"),
            ("HIGHATOMIC", "HighAtomic"),
            ("CMA", "CMA"),
            ("ISOLATE", "Isolate"),
        )
    }
    return names[mt]


def folio_mapping(st: PageState) -> int:
    """page_mapping()/folio_mapping(): NULL for anon (not in swap cache)."""
    if st.kind in ("shmem", "file"):
        return st.mapping
    return 0


def mapcount(st: PageState) -> int:
    f = st.folio
    return f.mapcount if f is not None else 0


# ----------------------------------------------------------------------
def setup_pinner(b: Builder) -> None:
    t = b.t
    p = b.pinner
    if p is None:
        return
    t.put(b.sym("page_pinner_inited"), "struct static_key_false", "key.enabled", 1)
    b.mem.write(b.sym("page_pinner_enabled"), b"\x01")
    if p != "rfc":
        b.mem.write(
            _static(b, "page_pinner.c", "failure_handle"),
            b.save_stack("failure").to_bytes(4, "little"),
        )
    if p in ("a2", "b", "c", "d"):
        t.put(b.sym("failure_tracking"), "struct static_key_true", "key.enabled", 1)
    if p == "d":
        # vmalloc'd ring of pp_buf_size records
        pages = [f.pfn for f in b.sc.folios if f.note == "vmalloc page of pp_buffer"]
        v0 = b.arch.vmalloc_base + 0x200000
        for i, pfn in enumerate(pages):
            b.mem.map_page(v0 + i * b.ps, pfn)
        b.pp_ring = v0
        t.put(b.sym("pp_buffer"), "struct page_pinner_buffer", "buffer", v0)


def _static(b: Builder, cu: str, name: str) -> int:
    """Address of a static variable that several compilation units define."""
    return b.static_syms[(cu, name)]


# ----------------------------------------------------------------------
def write_page_ext(b: Builder) -> None:
    t = b.t
    ts_ns = 5_000_000_000
    pid_ts: dict[int, int] = {}
    if b.owner_enabled:
        po_off = b.page_ext_offsets["page_owner_ops"]
        po_size = t.sizeof("struct page_owner")
        early = b.save_stack("early")
        dummy = b.save_stack("dummy")
        failure = b.save_stack("failure")
        for name, h in (
            ("early_handle", early),
            ("dummy_handle", dummy),
            ("failure_handle", failure),
        ):
            b.mem.write(_static(b, "page_owner.c", name), h.to_bytes(4, "little"))
    bit = {n: b.enum(n) for n in ("PAGE_EXT_OWNER", "PAGE_EXT_OWNER_ALLOCATED")}
    # allocated folios: page_owner records on every page of the allocation
    allocs: list[tuple[int, int, str, int, str]] = []  # pfn, order, stack, pid, comm
    for f in b.sc.folios:
        allocs.append((f.pfn, f.order, f.alloc, f.pid, f.comm))
    for c in S.CMA_AREAS:
        for s, e in c.allocated:
            for pfn in range(s, e):
                allocs.append((pfn, 0, "cma_alloc", 1500, "camera-hal"))
    allocs.sort()
    for pfn, order, stack, pid, comm in allocs:
        ts_ns += 7_654_321
        pid_ts[pfn] = ts_ns
        if not b.owner_enabled:
            continue
        from .kernel import GFP_BY_STACK

        h = b.save_stack(stack)
        gfp = GFP_BY_STACK.get(stack, GFP_BY_STACK["anon_fault"])
        rec = {
            "pfn": pfn,
            "order": order,
            "gfp_mask": gfp,
            "handle": h,
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
            _write_owner(b, pfn + i, rec, po_off, po_size)
            st = b.pages[pfn + i]
            st.page_ext_flags |= (1 << bit["PAGE_EXT_OWNER"]) | (
                1 << bit["PAGE_EXT_OWNER_ALLOCATED"]
            )
        b.pages[pfn].owner = rec
    # pages that were allocated and freed again (the page_pinner PP_FREE pfns)
    if b.owner_enabled:
        for fr in b.sc.freed:
            h = b.save_stack("gpu_shmem")
            fh = b.save_stack("free_anon")
            rec = {
                "pfn": fr.pfn,
                "order": 0,
                "gfp_mask": GFP_BY_STACK_SHMEM,
                "handle": h,
                "pid": 812,
                "tgid": 812,
                "comm": "gpu-submit",
                "ts_nsec": 700_000_000_000,
                "free_handle": fh,
                "free_ts_nsec": 1_400_000_000_000,
                "last_migrate_reason": -1,
                "allocated": False,
            }
            _write_owner(b, fr.pfn, rec, po_off, po_size)
            b.pages[fr.pfn].page_ext_flags |= 1 << bit["PAGE_EXT_OWNER"]
            b.pages[fr.pfn].owner = rec
    if b.owner_enabled and b.t.has_member("struct stack_record", "count"):
        _owner_stack_counts(b, allocs)
    if b.pinner is not None:
        _pinner_pages(b)
    # flags words
    if b.page_ext_enabled and b.page_ext_has_flags:
        for pfn, st in b.pages.items():
            if st.page_ext_flags:
                b.mem.write(b.page_ext_addr(pfn), st.page_ext_flags.to_bytes(8, "little"))


GFP_BY_STACK_SHMEM = 0x100CCA  # GFP_HIGHUSER_MOVABLE


def _owner_stack_counts(b: Builder, allocs: list[tuple[int, int, str, int, str]]) -> None:
    """6.9+ page_owner: the refcount of each allocation stack is 1 + the
    allocations made with it that are still allocated (frees drop it again),
    and every counted stack sits on stack_list, newest first, in front of
    dummy_stack and failure_stack."""
    t = b.t
    live: dict[int, int] = {}
    order: list[int] = []
    for _pfn, _order, stack, _pid, _comm in allocs:
        h = b.stack_keys[stack]
        if h not in live:
            order.append(h)
            live[h] = 0
        live[h] += 1
    for h, n in live.items():
        t.put(b.depot_records[h], "struct stack_record", "count", 1 + n)
        b.stack_counts[h] = 1 + n
    dummy = _static(b, "page_owner.c", "dummy_stack")
    failure = _static(b, "page_owner.c", "failure_stack")
    for node, key in ((dummy, "dummy"), (failure, "failure")):
        h = b.stack_keys[key]
        t.put(node, "struct stack", "stack_record", b.depot_records[h])
        t.put(b.depot_records[h], "struct stack_record", "count", 1)
        b.stack_counts[h] = 1
    t.put(dummy, "struct stack", "next", failure)
    head = dummy
    for h in order:
        node = b.kmalloc(16)
        t.put(node, "struct stack", "stack_record", b.depot_records[h])
        t.put(node, "struct stack", "next", head)
        head = node
    b.mem.write(_static(b, "page_owner.c", "stack_list"), head.to_bytes(8, "little"))


def _write_owner(b: Builder, pfn: int, rec: dict, off: int, size: int) -> None:
    t = b.t
    a = b.page_ext_addr(pfn) + off
    T = "struct page_owner"
    t.put(a, T, "order", rec["order"])
    t.put(a, T, "last_migrate_reason", rec["last_migrate_reason"])
    t.put(a, T, "gfp_mask", rec["gfp_mask"])
    t.put(a, T, "handle", rec["handle"])
    t.put(a, T, "free_handle", rec["free_handle"])
    t.put(a, T, "ts_nsec", rec["ts_nsec"])
    t.put(a, T, "free_ts_nsec", rec["free_ts_nsec"])
    t.put(a, T, "comm", rec["comm"].encode().ljust(16, b"\0"))
    t.put(a, T, "pid", rec["pid"])
    t.put(a, T, "tgid", rec["tgid"])
    if t.has_member(T, "free_pid") and not rec["allocated"]:
        t.put(a, T, "free_pid", rec["pid"])
        t.put(a, T, "free_tgid", rec["tgid"])


# ----------------------------------------------------------------------
def _pinner_pages(b: Builder) -> None:
    """Per-page page_pinner state and the ring buffers of the variant."""
    t = b.t
    p = b.pinner
    flag_names = [e.name for e in t.type("enum page_ext_flags").enumerators]
    bits = {n: t.enum(n) for n in flag_names}
    pp_off = b.page_ext_offsets["page_pinner_ops"]
    mf = [f for f in b.sc.folios if f.migration_failed]
    gup = [f for f in b.sc.folios if f.pin_stack in GUP_STACKS]
    per_page: dict[int, dict] = {}
    # GUP pin tracking (A*, B, C)
    if p in ("a0", "a2", "b", "c"):
        for i, f in enumerate(gup):
            h = b.save_stack(f.pin_stack or "gup_get")
            ts = 900_000_000 + 1000 * i
            count = f.pins if f.pins else f.extra
            st = b.pages[f.pfn]
            st.page_ext_flags |= 1 << bits["PAGE_EXT_GET"]
            per_page[f.pfn] = {"handle": h, "ts_usec": ts, "count": count}
    # migration-failure flags (RFC: PAGE_EXT_PINNER; A2/B/C/D: MIGRATION_FAILED)
    fail_ts: dict[int, int] = {}
    for f in mf:
        area = next(c for c in S.CMA_AREAS if c.base_pfn <= f.pfn < c.base_pfn + c.count)
        fail_ts[f.pfn] = FAIL_TS[area.name] + (f.pfn - area.base_pfn)
    if p == "rfc":
        for f in mf:
            b.pages[f.pfn].page_ext_flags |= 1 << bits["PAGE_EXT_PINNER"]
    elif p in ("a2", "b", "c", "d"):
        for f in mf:
            b.pages[f.pfn].page_ext_flags |= 1 << bits["PAGE_EXT_PINNER_MIGRATION_FAILED"]
            if p in ("c", "d"):
                d = per_page.setdefault(f.pfn, {"handle": 0, "ts_usec": 0, "count": 0})
                d["ts_usec"] = fail_ts[f.pfn]
    for pfn, d in per_page.items():
        a = b.page_ext_addr(pfn) + pp_off
        t.put(a, "struct page_pinner", "handle", d["handle"])
        t.put(a, "struct page_pinner", "ts_usec", d["ts_usec"])
        t.put(a, "struct page_pinner", "count", d["count"])
        b.pages[pfn].pinner = d
    if p == "a0":
        # A0's debugfs "pinner" file: every page with PAGE_EXT_GET, a count and
        # a handle, in pfn order
        lines: list[str] = []
        for pfn in sorted(per_page):
            d = per_page[pfn]
            st = b.pages[pfn]
            mt = b.mt_value(b.pageblock_mt(pfn))
            lines += [
                f"Page pinned ts {d['ts_usec']} us count {d['count']}",
                f"PFN {pfn} Block {pfn >> S.PAGEBLOCK_ORDER} type {mt_name(b, mt)} "
                f"{flags_text(b, st.flags)}",
            ]
            lines += [" " + f for f in b.stack_frames[d["handle"]]] + [""]
        b.pinner_file_text = lines
    if p == "rfc":
        return
    # ------------------------------------------------------------------
    # events, in time order
    events: list[dict] = []
    if p in ("a0", "a2", "b", "c"):
        for i, lt in enumerate(b.sc.longterm):
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
        for k, fr in enumerate(b.sc.freed):
            area = next(c for c in S.CMA_AREAS if c.base_pfn <= fr.pfn < c.base_pfn + c.count)
            f0 = FAIL_TS[area.name] + (fr.pfn - area.base_pfn)
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
    rings = {
        "a0": {"lt": "lt_pinner"},
        "a2": {"lt": "lt_pinner", "acf": "acf_pinner"},
        "b": {"lt": "lt_pinner", "acf": "acf_pinner"},
        "c": {"lt": "lt_buffer", "acf": "acf_buffer"},
        "d": {"acf": "pp_buffer"},
    }[str(p)]
    for ring_key, sym in rings.items():
        evs = [e for e in events if e["ring"] == ring_key]
        _write_ring(b, sym, ring_key, evs)


def _snapshot(b: Builder, e: dict) -> dict:
    """Page state the kernel captured for an event."""
    st = b.pages[e["pfn"]]
    if e.get("gone"):
        # the page was a mapped shmem page at the time (it is free now)
        flags = b.base_flags(e["pfn"]) | b.pg("uptodate", "lru", "swapbacked", "dirty")
        count = {"fail": 3, "put": 2, "free": 0}[e["kind"]]
        return {
            "flags": flags,
            "count": count,
            "mapcount": 0 if e["kind"] == "free" else 1,
            "mapping": b.shmem_mapping,
        }
    return {
        "flags": st.flags,
        "count": st.refcount,
        "mapcount": mapcount(st),
        "mapping": folio_mapping(st),
    }


def _write_ring(b: Builder, sym: str, ring_key: str, evs: list[dict]) -> None:
    t = b.t
    p = b.pinner
    addr = b.sym(sym)
    T = "struct captured_pinner"
    rsize = t.sizeof(T)
    if p == "d":
        size = 4096
        slots = b.pp_ring
        b.mem.write(b.sym("pp_buf_size"), size.to_bytes(8, "little"))
    elif p == "c":
        size = 4096
        slots = addr + t.offsetof("struct page_pinner_buffer", "buffer")
    else:
        size = 4096
        slots = addr + t.offsetof("struct longterm_pinner", "pinner")
    records = []
    for idx, e in enumerate(evs):
        a = slots + idx * rsize
        h = b.save_stack(e["stack"])
        snap = _snapshot(b, e)
        pfn = e["pfn"]
        mt = b.mt_value(b.pageblock_mt(pfn))
        rec: dict = {"slot": idx, "pfn": pfn, "handle": h}
        t.put(a, T, "handle", h)
        if p in ("a0", "a2"):
            ts_field = e["elapsed"] if ring_key == "lt" else e["ts"]
            t.put(a, T, "ts_usec", ts_field)
            t.put(a, T, "page_mt", mt)
            t.put(a, T, "page_flags", snap["flags"])
            t.put(a, T, "pfn", pfn)
            rec.update({"ts_usec": ts_field, "page_mt": mt, "page_flags": snap["flags"]})
        else:
            if ring_key == "lt" or e["kind"] == "put":
                val = e["elapsed"]
                rec["elapsed"] = val
            else:
                val = e["ts"]
                rec["ts_usec"] = val
            t.put(a, T, "ts_usec", val)
            t.put(a, T, "pfn", pfn)
            t.put(a, T, "count", snap["count"])
            t.put(a, T, "mapcount", snap["mapcount"])
            t.put(a, T, "mapping", snap["mapping"])
            t.put(a, T, "flags", snap["flags"])
            rec.update(
                {
                    "count": snap["count"],
                    "mapcount": snap["mapcount"],
                    "mapping": snap["mapping"],
                    "flags": snap["flags"],
                }
            )
            if p in ("c", "d"):
                state = {"put": "PP_PUT", "free": "PP_FREE", "fail": "PP_FAIL_DETECTED"}[e["kind"]]
                if ring_key == "lt":
                    state = "PP_PUT"
                t.put(a, T, "state", b.enum(state))
                rec["state"] = state
        rec["event"] = e["kind"]
        rec["time_usec"] = e["ts"]
        rec["stack"] = b.stack_frames[h]
        rec["text"] = _record_text(b, ring_key, rec)
        records.append(rec)
    index = len(evs) % size
    idx_path = "index"
    t.put(
        addr,
        "struct page_pinner_buffer" if p in ("c", "d") else "struct longterm_pinner",
        idx_path,
        index,
    )
    garbage = []
    if p == "d":
        garbage = _garbage(b, slots, size, rsize)
    newest_first = list(reversed(records))
    ring: dict = {
        "symbol": sym,
        "size": size,
        "index": index,
        "record_size": rsize,
        "slots_address": slots,
        "records": newest_first,
        "garbage_slots": garbage,
        "kernel_text": [ln for r in newest_first for ln in r["text"]],
    }
    b.rings[sym] = ring


def _record_text(b: Builder, ring_key: str, r: dict) -> list[str]:
    p = b.pinner
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
            f"PFN {pfn} Block {block} type {mt_name(b, r['page_mt'])} "
            f"{flags_text(b, r['page_flags'])}"
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
            f"mapping {mapping_text(r['mapping'])} {flags_text(b, r['flags'])}"
        )
    return [first, second] + [" " + fr for fr in r["stack"]] + [""]


def _garbage(b: Builder, slots: int, size: int, rsize: int) -> list[dict]:
    """Never-written slots at the end of the kvmalloc'd ring: stale bytes that
    fail validation in different ways.  The slot before them is zero, so the
    kernel reader would print these four and then stop."""
    t = b.t
    T = "struct captured_pinner"
    rnd = random.Random(0x5EED)
    out = []
    valid_h = b.save_stack("gpu_put")
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
        slot = size - 1 - k
        a = slots + slot * rsize
        b.mem.write(a, bytes(rnd.randrange(1, 256) for _ in range(rsize)))
        for name in ("handle", "state", "pfn"):
            if name in fields:
                t.put(a, T, name, fields[name])
        out.append({"slot": slot, "reason": why})
    return out
