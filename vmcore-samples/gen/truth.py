"""Ground truth of a sample, derived from what the builder wrote."""

from __future__ import annotations

from typing import Any

from . import scenario as S
from .cma import CmaBitmap
from .kernel import Built
from .machine import PageState
from .pageowner import PageOwner
from .pagepinner import PagePinner
from .pages import GUP_PIN_COUNTING_BIAS
from .tasks import rmap_truth

SCHEMA_VERSION = 1
MOVABLE_KINDS = ("anon", "ksm", "shmem", "file")


def pinner_flag_names(b: Built) -> list[str]:
    pinner = b.client(PagePinner)
    return pinner.flag_names if pinner is not None else []


def ext_flag_names(b: Built, pfn: int) -> list[str]:
    """Names of the page_ext flags set for a pfn."""
    value = b.page_ext.flags.get(pfn, 0)
    out = []
    for e in b.types.type("enum page_ext_flags").enumerators:
        if value & (1 << e.value):
            out.append(e.name)
    return out


def page_object(b: Built, st: PageState) -> dict[str, Any]:
    f = st.folio
    assert f is not None
    nr = f.nr_pages
    cache = f.kind in ("shmem", "file") or "swapcache" in f.flags
    expected = f.mapcount + (nr if cache else 0) + (1 if "private" in f.flags else 0)
    if f.order == 0:
        foll_pin = st.refcount >= GUP_PIN_COUNTING_BIAS
        pins = (st.refcount - expected) >> 10 if st.refcount > expected else 0
        pin_refs = pins * GUP_PIN_COUNTING_BIAS
    else:
        foll_pin = f.pins > 0
        pins = f.pins
        pin_refs = pins
    extra = st.refcount - expected - pin_refs
    pinner = any(n in pinner_flag_names(b) for n in ext_flag_names(b, st.pfn))
    evidence = []
    if foll_pin:
        evidence.append("foll_pin")
    if extra > 0:
        evidence.append("extra")
    if pinner:
        evidence.append("pinner")
    mapping = {"anon": "anon", "ksm": "ksm", "shmem": "shmem", "file": "file"}[f.kind]
    return {
        "pfn": f.pfn,
        "nr_pages": nr,
        "node": 0,
        "zone": S.zone_of(f.pfn),
        "migratetype": S.pageblock_mt(f.pfn),
        "cma": area.name if (area := S.cma_area_of(f.pfn)) else None,
        "order": f.order,
        "refcount": st.refcount,
        "mapcount": f.mapcount,
        "expected_refcount": expected,
        "pins": pins,
        "extra": extra,
        "evidence": evidence,
        "mapping": mapping,
        "flags": st.flags,
    }


def ranges(pfns: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for p in sorted(pfns):
        if out and out[-1][1] == p:
            out[-1][1] = p + 1
        else:
            out.append([p, p + 1])
    return out


# what pinspect cma calls each unmovable kind of page found in a CMA area's free runs
BLOCKER_KINDS = {"slab": "slab", "pgtable": "pgtable", "reserved": "reserved",
                 "kernel": "kernel", "offline": "non_lru"}


def _bit_runs(bits: list[bool]) -> list[tuple[int, int, bool]]:
    """(start, end, value) of the runs of equal bits."""
    out: list[tuple[int, int, bool]] = []
    for i, v in enumerate(bits):
        if out and out[-1][2] == v:
            out[-1] = (out[-1][0], i + 1, v)
        else:
            out.append((i, i + 1, v))
    return out


def cma_truth(b: Built, c: S.CmaArea, bitmap: CmaBitmap,
              pinned: list[dict[str, Any]]) -> dict[str, Any]:
    """One area: its ranges' bitmaps as runs, the kernel's counters, and what cma_alloc()
    would meet in the free runs (blockers by cause, pages that look busy but migrate)."""
    order = c.order_per_bit
    ranges = []
    free_runs: list[list[int]] = []
    for r in bitmap.ranges:
        bits = [False] * r.bits
        for s, e in c.allocated:
            for pfn in range(max(s, r.base_pfn), min(e, r.base_pfn + r.count)):
                bits[(pfn - r.base_pfn) >> order] = True
        runs = [[r.base_pfn + (lo << order), r.base_pfn + (hi << order),
                 "allocated" if v else "free"] for lo, hi, v in _bit_runs(bits)]
        free_runs += [[lo, hi] for lo, hi, state in runs if state == "free"]
        ranges.append({"base_pfn": r.base_pfn, "count": r.count, "bitmap_bits": r.bits,
                       "allocated_bits": r.allocated_bits, "runs": runs})

    def in_free_run(pfn: int) -> bool:
        return any(lo <= pfn < hi for lo, hi in free_runs)

    rows = {p["pfn"]: p for p in pinned}
    blockers: list[dict[str, Any]] = []
    non_blockers: list[dict[str, Any]] = []
    for pfn in sorted(b.pages):
        st = b.pages[pfn]
        f = st.folio
        if f is None or not in_free_run(pfn):
            continue
        row = rows.get(pfn)
        cause = None
        if row is not None and "foll_pin" in row["evidence"]:
            cause = "foll_pin"
        elif row is not None and "extra" in row["evidence"]:
            cause = "extra"
        elif f.kind in BLOCKER_KINDS:
            cause = BLOCKER_KINDS[f.kind]
        if cause is not None:
            blockers.append({"pfn": pfn, "nr_pages": f.nr_pages, "cause": cause,
                             "kind": f.kind})
            continue
        why = {"movable_ops": "movable_ops", "balloon": "movable_ops"}.get(f.kind, "lru")
        if row is not None:
            why = "pinner_only"  # page_pinner's flag of an old failure, no reference now
        non_blockers.append({"pfn": pfn, "nr_pages": f.nr_pages, "kind": f.kind, "why": why})
    free_pages = [p for lo, hi in free_runs for p in range(lo, hi)]
    buddy = sum(1 for p in free_pages if b.pages.get(p) is None
                or b.pages[p].kind in ("free", "buddy_tail"))
    by_cause = {k: 0 for k in ("foll_pin", "extra", "slab", "pgtable", "reserved", "kernel",
                               "non_lru")}
    for x in blockers:
        by_cause[x["cause"]] += x["nr_pages"]
    inside = [p for p in pinned if c.base_pfn <= p["pfn"] < c.base_pfn + c.count]
    return {
        "name": c.name,
        "base_pfn": c.base_pfn,
        "count": c.count,
        "order_per_bit": order,
        "bitmap_bits": bitmap.bits,
        "allocated_bits": bitmap.allocated_bits,
        "allocated_pages": bitmap.allocated_bits << order,
        "free_pages": c.count - (bitmap.allocated_bits << order),
        "largest_free_run": max((hi - lo for lo, hi in free_runs), default=0),
        "ranges": ranges,
        "flags": bitmap.flags,
        "counters": bitmap.counters,
        "blockers": blockers,
        "blocked_pages": sum(x["nr_pages"] for x in blockers),
        "by_cause": by_cause,
        "non_blockers": non_blockers,
        "free_buddy_pages": buddy,
        "pinned_pages": sum(p["nr_pages"] for p in inside),
        "pinned_pfns": [p["pfn"] for p in inside],
    }


def build_truth(b: Built) -> dict[str, Any]:
    v = b.variant
    pinned: list[dict[str, Any]] = []
    controls: list[dict[str, Any]] = []
    notes: dict[str, str] = {}
    for pfn in sorted(b.pages):
        st = b.pages[pfn]
        if st.folio is None or st.kind not in MOVABLE_KINDS:
            continue
        po = page_object(b, st)
        (pinned if po["evidence"] else controls).append(po)
        if st.folio.note:
            notes[str(pfn)] = st.folio.note
    # every other page, by kind (tails count with their head's kind; the
    # tails of anon/ksm/shmem/file folios are covered by the rows above)
    kinds: dict[str, list[int]] = {}
    for pfn, st in b.pages.items():
        k = st.kind
        if k == "tail":
            assert st.head is not None
            k = b.pages[st.head].kind
        elif k == "buddy_tail":
            k = "free"
        if k in MOVABLE_KINDS:
            continue
        kinds.setdefault(k, []).append(pfn)
    classified = {k: ranges(v_) for k, v_ in sorted(kinds.items())}
    free_blocks = [[pfn, order, mt] for pfn, order, mt in b.free_blocks]
    # zones
    zones = []
    for zi in b.zone_info:
        s, e = zi["start_pfn"], zi["start_pfn"] + zi["spanned"]
        rows = [p for p in pinned if s <= p["pfn"] < e]

        def pages_with(ev: str, rows: list[dict[str, Any]] = rows) -> int:
            return sum(p["nr_pages"] for p in rows if ev in p["evidence"])

        zones.append(
            {
                "node": 0,
                "zone": zi["zone"],
                "start_pfn": s,
                "spanned": zi["spanned"],
                "present": zi["present"],
                "managed": zi["managed"],
                "free": zi["free"],
                "free_cma": zi["free_cma"],
                "cma_pages": zi["cma_pages"],
                "pinned": {
                    "foll_pin": pages_with("foll_pin"),
                    "extra": pages_with("extra"),
                    "pinner": pages_with("pinner"),
                    "total": sum(p["nr_pages"] for p in rows),
                },
                "pinned_in_movable": sum(
                    p["nr_pages"] for p in rows if p["migratetype"] == "Movable"
                ),
                "pinned_in_cma": sum(p["nr_pages"] for p in rows if p["migratetype"] == "CMA"),
            }
        )
    # CMA areas
    cmas = [cma_truth(b, c, bitmap, pinned) for c, bitmap in zip(S.CMA_AREAS, b.cma, strict=True)]
    # page_owner records of the truth pages
    owner: dict[str, Any]
    page_owner = b.client(PageOwner)
    if page_owner is not None:
        wanted = {p["pfn"] for p in pinned + controls} | {fr.pfn for fr in b.scenario.freed}
        text = page_owner.debugfs_text()
        # 5.10's struct page_owner records no pid, tgid, comm or timestamps
        task = b.types.has_member("struct page_owner", "pid")
        recs = []
        for pfn in sorted(wanted):
            r = page_owner.records.get(pfn)
            if r is None:
                continue
            recs.append(
                {
                    "pfn": pfn,
                    "allocated": r["allocated"],
                    "order": r["order"],
                    "gfp_mask": r["gfp_mask"],
                    "pid": r["pid"] if task else None,
                    "tgid": r["tgid"] if task else None,
                    "comm": r["comm"] if task else None,
                    "ts_nsec": r["ts_nsec"] if task else None,
                    "free_ts_nsec": r["free_ts_nsec"] if task else None,
                    "handle": r["handle"],
                    "stack": b.stacks[r["handle"]],
                    "free_handle": r["free_handle"],
                    "free_stack": b.stacks.get(r["free_handle"], []),
                    "page_ext_flags": ext_flag_names(b, pfn),
                    "text": text.get(pfn) if r["allocated"] else None,
                }
            )
        n_alloc = sum(1 for pfn in b.pages if "PAGE_EXT_OWNER_ALLOCATED" in ext_flag_names(b, pfn))
        owner = {
            "state": "enabled",
            "allocated_pages": n_alloc,
            "debugfs_records": len(text),
            # 6.9+: stack_record.count of the stacks on page_owner's stack_list
            "stack_counts": {f"{h:#010x}": n for h, n in sorted(page_owner.stack_counts.items())},
            "records": recs,
        }
    else:
        owner = {"state": "off", "allocated_pages": 0, "debugfs_records": 0, "records": []}
    # page_pinner
    pinner: dict[str, Any] = {"variant": v.pinner}
    page_pinner = b.client(PagePinner)
    if page_pinner is not None:
        pages = []
        for pfn in sorted(b.pages):
            names = [n for n in ext_flag_names(b, pfn) if n in page_pinner.flag_names]
            d = page_pinner.pages.get(pfn)
            if not names and d is None:
                continue
            pages.append(
                {
                    "pfn": pfn,
                    "flags": names,
                    "page_pinner": None
                    if d is None
                    else {
                        "handle": d["handle"],
                        "ts_usec": d["ts_usec"],
                        "count": d["count"],
                        "stack": b.stacks.get(d["handle"], []),
                    },
                }
            )
        pinner["pages"] = pages
        pinner["rings"] = page_pinner.rings
        if v.pinner == "a0":
            pinner["pinner_file_text"] = page_pinner.pinner_file_text
    features = {
        "page_owner": v.page_owner,
        "page_pinner": v.pinner or "absent",
        "cma": "present",
        "page_ext": "present",
        "page_ext_allocated": bool(b.page_ext.clients),
        "stack_depot": {
            "5.10": "stack_slabs+slabindex/offset/valid",
            "6.1": "stack_slabs+slabindex/offset/valid/extra",
            "6.12": "stack_pools+pool_index_plus_1/offset/extra",
            "7.2": "stack_pools+pool_index_plus_1/offset/extra",
        }[v.kernel.version],
        "migratetype_order": "ack" if v.ack_migratetypes else "mainline",
    }
    summary = {
        "pages": sum(p["nr_pages"] for p in pinned),
        "folios": len(pinned),
        "by_evidence": {
            ev: sum(p["nr_pages"] for p in pinned if ev in p["evidence"])
            for ev in ("foll_pin", "extra", "pinner")
        },
        "by_zone": {f"{z['node']}:{z['zone']}": z["pinned"]["total"] for z in zones},
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "sample": v.name,
        "description": v.description,
        "osrelease": v.osrelease,
        "build_id": b.build_id.hex(),
        "kernel_version": v.kernel.version,
        "features": features,
        "facts": b.facts,
        "summary": summary,
        "pinned": pinned,
        "controls": controls,
        "notes": notes,
        "classified": classified,
        "free_blocks": free_blocks,
        "zones": zones,
        "cma": cmas,
        "page_owner": owner,
        "page_pinner": pinner,
        "stacks": {f"{h:#010x}": fr for h, fr in sorted(b.stacks.items())},
        "rmap": rmap_truth(
            b.facts["page_size"],
            b.tasks,
            b.scenario.files,
            pinned,
            {
                pfn: (st.folio.kind, st.folio.file)
                for pfn, st in b.pages.items()
                if st.folio is not None
            },
        ),
    }
