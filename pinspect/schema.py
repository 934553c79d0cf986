"""The JSON output's schema: for each command, the keys of its document and of the objects in
its lists, written out rather than derived from dataclasses.

How it grows: a release may add keys anywhere (readers ignore keys they do not know); a key
never changes its meaning or type. Removing or changing a key is a new :data:`SCHEMA_VERSION`.
``tests/test_schema.py`` checks every command's output and README.md's key table against this.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

# Every document starts with these.
HEADER = ("schema_version", "command")

# Every document written by a command ends with this: what could not be read
# (``{"counts": {"struct pages": 6144, ...}, "truncated": "sentence" or null}``).
TRAILER = ("unread",)
UNREAD = ("counts", "truncated", "uncertain", "changed")

# One pinned page or folio (``pinned``'s "pages", ``page``'s "folio").
PINNED_PAGE = ("pfn", "nr_pages", "node", "zone", "migratetype", "cma", "order", "refcount",
               "mapcount", "expected_refcount", "pins", "extra", "evidence", "mapping", "flags",
               "lru", "owner", "pinner", "mappers", "holders", "unexplained_pins",
               "unexplained_extra", "uncertain")

# A process mapping a folio (``mappers[]`` of a page object; the reverse map).
MAPPER = ("pid", "tgid", "comm", "vaddr", "vaddr_end", "vma", "vm_flags", "flags", "file", "mm",
          "pinned_vm", "has_pinned", "verified", "others")

# A kernel object holding references to a folio (``holders[]`` of a page object).
HELD = ("holder", "kind", "counts_as", "count", "pid", "comm", "fds", "address", "transient")

# ``pinned``'s "rmap": what the reverse map and the holders found and missed.
RMAP_SUMMARY = ("folios", "with_mappers", "unresolved", "no_process", "unexplained_pins",
                "unexplained_extra", "transient", "holders", "warnings")

# One group of ``owners``: a process or a holder, and the pinned folios it maps or holds.
OWNER_GROUP = ("group", "name", "pid", "comm", "folios", "pages", "pins", "extra", "refs",
               "zones", "cma")

# A page_owner record (``owner`` of a page object, and of ``page``).
OWNER = ("source", "allocated", "order", "gfp_mask", "gfp_flags", "pid", "tgid", "comm",
         "ts_nsec", "free_ts_nsec", "free_pid", "free_tgid", "last_migrate_reason", "handle",
         "free_handle", "stack", "free_stack")

# page_pinner's state of a page (``pinner`` of a page object, and of ``page``).
PINNER = ("source", "flags", "handle", "ts_usec", "count", "stack", "records")

# A record of a page_pinner ring buffer (``pinner-log``'s "records", a PINNER's "records").
PINNER_RECORD = ("source", "buffer", "slot", "pfn", "handle", "state", "reason", "ts_usec",
                 "elapsed", "time_usec", "count", "mapcount", "mapping", "flags", "page_mt",
                 "stack", "text")

# A ring buffer as ``pinner-log`` and ``info`` describe it.
RING = ("name", "file", "kind", "size", "index", "records", "rejected", "wrapped")

# One group of ``stacks``.
STACK_GROUP = ("rank", "stack", "source", "handles", "pages", "folios", "pins", "extra",
               "zones", "cma", "processes", "pfns")

SUMMARY = ("pages", "folios", "by_evidence", "by_zone")

ZONE = ("node", "zone", "start_pfn", "spanned", "present", "managed", "free", "free_cma",
        "cma_pages", "pinned", "pinned_in_movable", "pinned_in_cma")

ZONE_PINNED = ("foll_pin", "extra", "pinner", "total")

PAGE_RAW = ("flags", "compound_head", "mapping", "index", "private", "_mapcount", "_refcount")

FEATURE = ("name", "state", "detail")

# Where ``info``'s types and symbols come from (DWARF or BTF; ELF symbols or kallsyms).
SOURCE = ("name", "origin", "lacks")
# ``cma``: one CMA area, one blocker, one free run of ``--try``.
CMA_AREA = ("name", "base_pfn", "end_pfn", "count", "order_per_bit", "ranges",
            "allocated_pages", "free_pages", "largest_free_run", "largest_clean_run",
            "blockers", "blocked_pages", "by_cause", "nr_pages_succeeded", "nr_pages_failed",
            "nr_pages_released", "available_count")
CMA_RANGE = ("base_pfn", "count", "bitmap_bits")
CMA_BY_CAUSE = ("foll_pin", "extra", "slab", "pgtable", "reserved", "kernel", "non_lru")
CMA_BLOCKER = ("area", "pfn", "nr_pages", "cause", "evidence", "state", "migratetype",
               "refcount", "mapcount", "expected_refcount", "pins", "extra", "flags", "lru",
               "owner", "stack", "uncertain")
CMA_RUN = ("pfn", "pages", "candidates", "working", "first_working_pfn", "blocked_pages")
CMA_TRY = ("area", "pages", "align", "succeeds", "pfn", "attempts_before", "candidates",
           "reason", "runs", "best_failing", "best_failing_blockers")

# Keys of each command's document after HEADER, and of the objects its keys hold.
DOCUMENTS: dict[str, tuple[str, ...]] = {
    "pinned": ("pages", "summary", "scanned", "skipped_free", "unreadable", "sources",
               "warnings", "rmap"),
    "owners": ("processes", "holders", "unexplained", "rmap", "scanned", "warnings"),
    "zones": ("zones", "scanned", "unreadable"),
    "page": ("pfn", "phys", "page", "head_pfn", "state", "node", "zone", "migratetype", "cma",
             "raw", "flags", "flag_names", "folio", "owner", "pinner", "sources", "warnings",
             "mappers", "holders"),
    "info": ("release", "arch", "page_size", "memory", "zones", "pageblock_order", "features",
             "type_source", "symbol_source", "records"),
    "cma": ("areas", "problems", "blockers", "try", "scanned", "unreadable"),
    "stacks": ("by", "ignored_frames", "groups", "pages", "no_stack", "sources", "warnings"),
    "pinner-log": ("variant", "buffers", "records", "warnings"),
    "trace": ("file", "formats", "lines", "events", "by_event", "skipped", "failing_pfns",
              "by_reason", "failure_events", "held_at_end", "ranking", "common", "pfns",
              "cma_allocs", "migrate_failed", "dump", "warnings"),
}

# ``trace``: a ranked callsite, a filtered common-path callsite, a failing pfn, one event of
# its chain, and a failing pfn's state in the dump (-c).
TRACE_CALLSITE = ("rank", "callsite", "pfns", "puts", "reasons", "comms", "example_pfn", "stack")
TRACE_COMMON = ("callsite", "group", "pfns", "puts")
TRACE_PFN = ("pfn", "reasons", "failed_at", "failures", "comm", "pid", "count", "mapcount",
             "failure_stack", "gets", "puts", "last_holder", "last_common", "last_count",
             "state", "chain", "dump")
TRACE_EVENT = ("ts", "kind", "event", "comm", "pid", "count", "callsite", "common", "stack")
TRACE_DUMP = ("pinned", "head_pfn", "evidence", "refcount", "pins", "extra", "owner")
TRACE_SKIPPED = ("truncated", "unknown_events", "garbage", "binary", "out_of_order",
                 "orphan_frames", "dropped")

OBJECTS: dict[str, tuple[str, ...]] = {
    "pinned.pages[]": PINNED_PAGE,
    "pinned.pages[].owner": OWNER,
    "pinned.pages[].mappers[]": MAPPER,
    "pinned.pages[].holders[]": HELD,
    "pinned.rmap": RMAP_SUMMARY,
    "owners.processes[]": OWNER_GROUP,
    "owners.holders[]": OWNER_GROUP,
    "owners.unexplained": ("pins", "extra", "folios"),
    "owners.rmap": RMAP_SUMMARY,
    "page.mappers[]": MAPPER,
    "page.holders[]": HELD,
    "pinned.summary": SUMMARY,
    "pinned.sources[]": FEATURE,
    "zones.zones[]": ZONE,
    "zones.zones[].pinned": ZONE_PINNED,
    "page.raw": PAGE_RAW,
    "page.folio": PINNED_PAGE,
    "page.owner": OWNER,
    "page.sources[]": FEATURE,
    "stacks.groups[]": STACK_GROUP,
    "stacks.groups[].processes[]": ("pid", "comm", "pages"),
    "stacks.sources[]": FEATURE,
    "pinner-log.buffers[]": RING,
    "pinner-log.records[]": PINNER_RECORD,
    "info.records": ("page_owner", "page_pinner", "stack_depot"),
    "info.records.page_owner": ("state", "pages", "allocated"),
    "info.records.stack_depot": ("state", "pools_in_use", "pools_capacity", "pool_size",
                                 "bytes_used"),
    "info.memory": ("present_pages", "managed_pages", "present_bytes"),
    "info.zones[]": ("node", "zone", "start_pfn", "spanned", "present"),
    "info.features[]": FEATURE,
    "info.type_source": SOURCE,
    "info.symbol_source": SOURCE,
    "trace.ranking[]": TRACE_CALLSITE,
    "trace.common[]": TRACE_COMMON,
    "trace.pfns[]": TRACE_PFN,
    "trace.pfns[].chain[]": TRACE_EVENT,
    "trace.pfns[].dump": TRACE_DUMP,
    "trace.pfns[].dump.owner": OWNER,
    "trace.skipped": TRACE_SKIPPED,
    "cma.areas[]": CMA_AREA,
    "cma.areas[].ranges[]": CMA_RANGE,
    "cma.areas[].by_cause": CMA_BY_CAUSE,
    "cma.problems[]": ("name", "problem"),
    "cma.blockers[]": CMA_BLOCKER,
    "cma.try": CMA_TRY,
    "cma.try.runs[]": CMA_RUN,
    "cma.try.best_failing": ("pfn", "pages", "blocked"),
}


# Objects only a kernel with page_pinner has (checked on android-d, not mainline-6.1).
PINNER_OBJECTS: dict[str, tuple[str, ...]] = {
    "pinned.pages[].pinner": PINNER,
    "pinned.pages[].pinner.records[]": PINNER_RECORD,
    "page.pinner": PINNER,
    "info.records.page_pinner": ("state", "variant", "flagged", "with_record", "rings"),
    "info.records.page_pinner.rings[]": RING,
}


def pick(obj: object, keys: tuple[str, ...]) -> dict[str, object]:
    """The attributes *keys* of *obj*, as a JSON object."""
    return {key: getattr(obj, key) for key in keys}
