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

# One pinned page or folio (``pinned``'s "pages", ``page``'s "folio").
PINNED_PAGE = ("pfn", "nr_pages", "node", "zone", "migratetype", "cma", "order", "refcount",
               "mapcount", "expected_refcount", "pins", "extra", "evidence", "mapping", "flags",
               "lru", "owner")

# A page_owner record (``owner`` of a page object, and of ``page``).
OWNER = ("source", "allocated", "order", "gfp_mask", "gfp_flags", "pid", "tgid", "comm",
         "ts_nsec", "free_ts_nsec", "free_pid", "free_tgid", "last_migrate_reason", "handle",
         "free_handle", "stack", "free_stack")

SUMMARY = ("pages", "folios", "by_evidence", "by_zone")

ZONE = ("node", "zone", "start_pfn", "spanned", "present", "managed", "free", "free_cma",
        "cma_pages", "pinned", "pinned_in_movable", "pinned_in_cma")

ZONE_PINNED = ("foll_pin", "extra", "pinner", "total")

PAGE_RAW = ("flags", "compound_head", "mapping", "index", "private", "_mapcount", "_refcount")

FEATURE = ("name", "state", "detail")

# Where ``info``'s types and symbols come from (DWARF or BTF; ELF symbols or kallsyms).
SOURCE = ("name", "origin", "lacks")

# Keys of each command's document after HEADER, and of the objects its keys hold.
DOCUMENTS: dict[str, tuple[str, ...]] = {
    "pinned": ("pages", "summary", "scanned", "skipped_free", "unreadable", "sources",
               "warnings"),
    "zones": ("zones", "scanned", "unreadable"),
    "page": ("pfn", "phys", "page", "head_pfn", "state", "node", "zone", "migratetype", "cma",
             "raw", "flags", "flag_names", "folio", "owner", "sources", "warnings"),
    "info": ("release", "arch", "page_size", "memory", "zones", "pageblock_order", "features",
             "type_source", "symbol_source"),
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
    "pinned.summary": SUMMARY,
    "pinned.sources[]": FEATURE,
    "zones.zones[]": ZONE,
    "zones.zones[].pinned": ZONE_PINNED,
    "page.raw": PAGE_RAW,
    "page.folio": PINNED_PAGE,
    "page.owner": OWNER,
    "page.sources[]": FEATURE,
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
}


def pick(obj: object, keys: tuple[str, ...]) -> dict[str, object]:
    """The attributes *keys* of *obj*, as a JSON object."""
    return {key: getattr(obj, key) for key in keys}
