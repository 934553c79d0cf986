"""page_pinner (Android common kernels, and the LKML RFC it grew from): which variant a
kernel carries, and the page_ext flags that mark the pages it tracks.

The variants (``../shared/reference/kernel-structures.md`` §1.9) differ in their globals and
record types; :func:`pinner_variant` tells them apart from those alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import drgn
import numpy as np
from drgn import FaultError, Program, sizeof

from pinspect.features import ABSENT, OFF, PRESENT, Feature
from pinspect.pageext import ClientSpec, PageExtLayout, read_entries
from pinspect.probing import enumerators, offset_of, static_key_enabled
from pinspect.stackdepot import Stack, stack_depot
from pinspect.variables import has_variable, variable

if TYPE_CHECKING:
    from pinspect.kernel import Kernel

CLIENT = ClientSpec(
    name="page_pinner",
    ops="page_pinner_ops",
    enabled_key="page_pinner_inited",
    # Its record follows the flags word, which therefore exists when the offset leaves room.
    wants_flags=lambda client: client.offset >= 8,
)

# The page_ext flag each variant sets on a page it tracks (reference §1.1).
PINNER_FLAGS = {
    "rfc": ("PAGE_EXT_PINNER",),
    "a0": ("PAGE_EXT_GET",),
    "a1": ("PAGE_EXT_GET", "PAGE_EXT_PINNER_MIGRATION_FAILED"),
    "a2": ("PAGE_EXT_GET", "PAGE_EXT_PINNER_MIGRATION_FAILED"),
    "b": ("PAGE_EXT_GET", "PAGE_EXT_PINNER_MIGRATION_FAILED"),
    "c": ("PAGE_EXT_GET", "PAGE_EXT_PINNER_MIGRATION_FAILED"),
    "d": ("PAGE_EXT_PINNER_MIGRATION_FAILED",),
}


def pinner_variant(prog: Program) -> str | None:
    """Which page_pinner this kernel carries, by its globals and record types."""
    if has_variable(prog, "pp_buffer"):
        return "d"
    if has_variable(prog, "acf_buffer") or has_variable(prog, "lt_buffer"):
        return "c"
    if has_variable(prog, "acf_pinner"):
        try:
            record = prog.type("struct captured_pinner")
        except LookupError:
            return "a1"
        names = {m.name for m in record.members or ()}
        if "mapcount" in names:
            return "b"
        if offset_of(record, "elapsed") is not None:
            return "a2"
        return "a1"
    if has_variable(prog, "lt_pinner"):
        return "a0"
    if "PAGE_EXT_PINNER" in enumerators(prog, "enum page_ext_flags"):
        return "rfc"
    return None


def pinner_feature(prog: Program, page_ext: PageExtLayout | None, variant: str | None
                   ) -> Feature:
    """Whether page_pinner is compiled in and enabled, and which variant."""
    if variant is None:
        return Feature("page_pinner", ABSENT, "kernel built without CONFIG_PAGE_PINNER (an "
                       "Android common kernel feature, enabled with page_pinner=on)")
    client = page_ext.client(CLIENT.name) if page_ext is not None else None
    if page_ext is not None and ((client is not None and client.enabled) or variant == "rfc"):
        enabled = static_key_enabled(prog, CLIENT.enabled_key)
        state = PRESENT if enabled or enabled is None else OFF
        return Feature("page_pinner", state, f"variant {variant.upper()}"
                       + ("" if state == PRESENT else "; boot with page_pinner=on"))
    return Feature("page_pinner", OFF, f"variant {variant.upper()} compiled in but not enabled; "
                   "boot with page_pinner=on")


def pinner_mask(kernel: Kernel) -> int:
    """The page_ext flag bits that mark a page as tracked by page_pinner, or 0."""
    ext = kernel.page_ext
    if ext is None or kernel.pinner_variant is None or not ext.has_flags_word:
        return 0
    mask = 0
    for name in PINNER_FLAGS.get(kernel.pinner_variant, ()):
        bit = ext.flag_bits.get(name)
        if bit is not None:
            mask |= 1 << bit
    return mask


# -- per-page records and ring buffers ------------------------------------------------------

SOURCE = "page_pinner"

# The ring buffers of each variant: (global, debugfs file under /sys/kernel/debug/page_pinner/,
# kind). "longterm" rings hold pins released after the threshold (elapsed time), "failure"
# rings what followed a failed migration (reference §1.3-1.7).
RINGS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "a0": (("lt_pinner", "longterm_pinner", "longterm"),),
    "a1": (("lt_pinner", "longterm_pinner", "longterm"),
           ("acf_pinner", "alloc_contig_failed", "failure")),
    "a2": (("lt_pinner", "longterm_pinner", "longterm"),
           ("acf_pinner", "alloc_contig_failed", "failure")),
    "b": (("lt_pinner", "longterm_pinner", "longterm"),
          ("acf_pinner", "alloc_contig_failed", "failure")),
    "c": (("lt_buffer", "longterm_pinner", "longterm"),
          ("acf_buffer", "alloc_contig_failed", "failure")),
    "d": (("pp_buffer", "buffer", "failure"),),
}

# What detected the migration failure a record belongs to, from the frames of its stack
# (first match wins); records of a longterm ring are "longterm".
REASONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cma", ("cma_alloc",)),
    ("offline", ("offline_pages", "do_migrate_range")),
    ("compaction", ("compact_zone", "kcompactd", "compact_node", "isolate_migratepages")),
    ("alloc_contig", ("alloc_contig_range", "alloc_contig_pages", "__alloc_contig_migrate_range")),
    ("longterm_pin", ("__gup_longterm_locked", "check_and_migrate_movable_pages",
                      "migrate_longterm_unpinnable_pages")),
)
REASON_NAMES = tuple(name for name, _ in REASONS) + ("longterm", "other")

# pp_state names as the CLI takes them (enum pp_state without PP_, lower case).
STATE_NAMES = ("put", "free", "fail_detected")


@dataclass(frozen=True)
class PinnerRecord:
    """One ``struct captured_pinner`` of a ring buffer (fields a variant lacks are None)."""

    buffer: str  # the ring's global: lt_pinner, acf_pinner, lt_buffer, acf_buffer, pp_buffer
    slot: int  # index in the ring
    pfn: int
    handle: int
    ts_usec: int | None  # a CLOCK_BOOTTIME timestamp in µs (failure, free)
    elapsed: int | None  # µs the page stayed pinned (long-term release, put after failure)
    count: int | None  # page_count() at capture (B, C, D)
    mapcount: int | None
    mapping: int | None  # struct address_space * (B, C, D)
    flags: int | None  # page->flags at capture
    page_mt: int | None  # pageblock migratetype at capture (A0-A2)
    state: str | None  # enum pp_state name (C, D): PP_PUT, PP_FREE, PP_FAIL_DETECTED
    reason: str  # what detected the failure (REASON_NAMES), "longterm" for longterm rings
    time_usec: int | None  # when the record was made, where known (timestamp, or failure+elapsed)
    stack: Stack | None
    text: tuple[str, ...] = ()  # the lines the kernel's debugfs reader prints for it
    source: str = SOURCE


@dataclass(frozen=True)
class PinnerPage:
    """page_pinner's state of one page: its page_ext flags and ``struct page_pinner``."""

    pfn: int
    flags: tuple[str, ...]  # page_pinner's page_ext flags set (PAGE_EXT_GET, ...)
    handle: int | None  # None: the variant keeps no per-page record (RFC)
    ts_usec: int | None
    count: int | None
    stack: Stack | None  # of handle (the last GUP pin, A0-C)
    # Ring records of this pfn, newest first (only for a page with a page_pinner flag set).
    records: tuple[PinnerRecord, ...] = ()
    source: str = SOURCE

    @property
    def best_stack(self) -> tuple[Stack | None, str]:
        """The stack that best says who holds the page, and where it comes from: the last
        pin's (per-page handle), else the newest ring record's."""
        if self.stack is not None:
            return self.stack, "page_pinner"
        for record in self.records:
            if record.stack is not None:
                what = f" ({record.state})" if record.state else ""
                return record.stack, f"page_pinner {record.buffer}{what}"
        return None, ""


@dataclass
class Ring:
    """One ring buffer, read as the kernel's debugfs reader reads it."""

    name: str  # its global
    file: str  # its debugfs file
    kind: str  # "longterm" or "failure"
    size: int  # slots
    index: int  # the next slot to write
    address: int  # of slot 0
    record_size: int
    records: list[PinnerRecord] = field(default_factory=list)  # newest first
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (slot, why)
    unreadable: int = 0  # slots that could not be read
    wrapped: bool = False  # records older than slot 0 survive: the ring went round
    problems: list[str] = field(default_factory=list)  # the ring itself (index out of range)


@dataclass
class PinnerLog:
    """page_pinner's ring buffers (:func:`pinner_log`)."""

    variant: str | None
    feature: Feature
    rings: list[Ring] = field(default_factory=list)

    def warnings(self) -> list[str]:
        lines = []
        for ring in self.rings:
            lines += [f"page_pinner {ring.name}: {p}" for p in ring.problems]
            if ring.rejected:
                why = Counter(reason for _, reason in ring.rejected)
                lines.append(f"page_pinner {ring.name}: {len(ring.rejected)} slot(s) rejected "
                             f"as never written or garbage ("
                             + ", ".join(f"{n} {w}" for w, n in sorted(why.items())) + ")")
            if ring.unreadable:
                lines.append(f"page_pinner {ring.name}: {ring.unreadable} slot(s) unreadable")
        return lines


@dataclass
class PinnerReport:
    """The result of :func:`pinner_records`."""

    feature: Feature
    pages: dict[int, PinnerPage] = field(default_factory=dict)
    unreadable: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    log: PinnerLog | None = None

    def warnings(self) -> list[str]:
        lines = [f"page_pinner: {n} page_ext entr{'y' if n == 1 else 'ies'} unreadable"
                 for n in (self.unreadable,) if n]
        lines += [f"stack depot: {n} handle(s): {what}" for what, n in
                  sorted(self.problems.items())]
        if self.log is not None:
            lines += self.log.warnings()
        return lines


def _int_field(record: drgn.Type, name: str) -> tuple[int, int, bool] | None:
    """(offset, size, signed) of the integer (or enum, pointer) member *name*."""
    offset = offset_of(record, name)
    if offset is None:
        return None
    kind = record.member(name).type.unaliased()
    if kind.kind == drgn.TypeKind.ENUM and kind.type is not None:
        kind = kind.type.unaliased()
    if kind.kind == drgn.TypeKind.STRUCT:  # atomic_t
        counter = kind.member("counter")
        return offset + counter.offset, sizeof(counter.type), True
    signed = kind.kind == drgn.TypeKind.INT and bool(kind.is_signed)
    return offset, sizeof(kind), signed


def _unpack(data: bytes | memoryview, where: tuple[int, int, bool] | None, base: int = 0
            ) -> int | None:
    if where is None:
        return None
    offset, size, signed = where
    return int.from_bytes(data[base + offset:base + offset + size], "little", signed=signed)


_RECORD_FIELDS = ("handle", "ts_usec", "elapsed", "pfn", "count", "mapcount", "mapping",
                  "flags", "page_flags", "page_mt", "state")


def _page_record_layout(prog: Program) -> dict[str, tuple[int, int, bool]] | None:
    try:
        record = prog.type("struct page_pinner")
    except LookupError:
        return None
    fields = {n: f for n in ("handle", "ts_usec", "count") if (f := _int_field(record, n))}
    return fields if "handle" in fields else None


def pinner_records(prog: Program, pfns: Iterable[int], stacks: bool = True,
                   rings: bool = True) -> PinnerReport:
    """page_pinner's state of *pfns* (pfns with no flag and no record are left out), read in
    bulk; with *rings*, each flagged page also gets its ring records (newest first)."""
    from pinspect.kernel import probe

    kernel = probe(prog)
    feature = pinner_feature(prog, kernel.page_ext, kernel.pinner_variant)
    report = PinnerReport(feature)
    ext = kernel.page_ext
    variant = kernel.pinner_variant
    client = ext.client(CLIENT.name) if ext is not None else None
    if feature.state != PRESENT or ext is None or variant is None:
        return report
    if client is None and variant != "rfc":
        return report
    wanted = sorted(set(pfns))
    if not wanted:
        return report
    layout = _page_record_layout(prog) if variant != "rfc" else None
    bits = {name: ext.flag_bits[name] for name in PINNER_FLAGS[variant]
            if name in ext.flag_bits} if ext.has_flags_word else {}
    entries, readable = read_entries(kernel, wanted)
    report.unreadable = int((~readable).sum())
    flags = np.ascontiguousarray(entries[:, :8]).view("<u8").reshape(-1)
    depot = stack_depot(prog)
    log = pinner_log(prog, stacks=stacks) if rings and variant in RINGS else None
    report.log = log
    by_pfn: dict[int, list[PinnerRecord]] = {}
    if log is not None:
        for ring in log.rings:
            if ring.kind == "failure":
                for rec in ring.records:
                    by_pfn.setdefault(rec.pfn, []).append(rec)
    size: int | None = max(o + s for o, s, _ in layout.values()) if layout else None
    for row in np.flatnonzero(readable).tolist():
        pfn = wanted[row]
        word = int(flags[row])
        names = tuple(n for n, b in bits.items() if word >> b & 1)
        handle = ts = count = None
        if layout is not None and client is not None and size is not None \
                and client.offset + size <= ext.entry_size:
            data = entries[row, client.offset:client.offset + size].tobytes()
            handle = _unpack(data, layout["handle"])
            ts = _unpack(data, layout.get("ts_usec"))
            count = _unpack(data, layout.get("count"))
        if not names and not (handle or ts or count):
            continue
        records = tuple(by_pfn.get(pfn, ())) if names else ()
        report.pages[pfn] = PinnerPage(
            pfn=pfn, flags=names, handle=handle, ts_usec=ts, count=count,
            stack=depot.stack(handle) if stacks and handle else None, records=records)
    if stacks:
        used = {p.handle for p in report.pages.values() if p.handle}
        report.problems = Counter(p for h in used if (p := depot.problem(h)) is not None)
    return report


def _ring_container(prog: Program, name: str) -> tuple[int, int, int, int] | str:
    """(address of slot 0, slots, index, record size) of the ring *name*, or why not."""
    ring = variable(prog, name)
    if ring is None:
        return "not in this kernel"
    try:
        index = int(ring.index.value_())
        record = prog.type("struct captured_pinner")
        record_size = sizeof(record)
        slots_obj = ring.pinner if ring.type_.has_member("pinner") else ring.buffer
        if slots_obj.type_.kind == drgn.TypeKind.POINTER:  # D: kvmalloc'd array
            address = int(slots_obj.value_())
            size_obj = variable(prog, "pp_buf_size")
            size = int(size_obj.value_()) if size_obj is not None else 0
        else:
            address = int(slots_obj.address_ or 0)
            size = int(slots_obj.type_.length or 0)
    except (FaultError, LookupError, AttributeError) as e:
        return f"unreadable ({e})"
    if not address:
        return "buffer not allocated"
    return address, size, index, record_size


def _read_slots(prog: Program, address: int, size: int, record_size: int
                ) -> tuple[bytes, np.ndarray]:
    """The slots' bytes, and which slots were readable (a page at a time where the whole
    buffer faults)."""
    total = size * record_size
    try:
        return prog.read(address, total), np.ones(size, dtype=bool)
    except FaultError:
        pass
    out = bytearray(total)
    ok = np.zeros(total, dtype=bool)
    page = 4096
    pos = 0
    while pos < total:
        chunk = min(page - (address + pos) % page, total - pos)
        try:
            out[pos:pos + chunk] = prog.read(address + pos, chunk)
            ok[pos:pos + chunk] = True
        except FaultError:
            pass
        pos += chunk
    readable = np.asarray(ok.reshape(size, record_size).all(axis=1), dtype=bool)
    return bytes(out), readable


def _reason_of(stack: Stack | None) -> str | None:
    if stack is None:
        return None
    names = [f.symbol for f in stack.frames if f.symbol]
    for reason, functions in REASONS:
        if any(name in functions or name.split(".")[0] in functions for name in names):
            return reason
    return None


def _valid_pfn(kernel: Kernel, pfn: int) -> bool:
    from pinspect.scan import valid_ranges

    return any(start <= pfn < end for start, end, _ in valid_ranges(kernel))


def pinner_log(prog: Program, stacks: bool = True) -> PinnerLog:
    """Every ring buffer of this kernel's page_pinner, newest record first as the kernel's
    debugfs reader walks it (``idx = (index - 1 - i) mod size``, stopping at a slot with handle
    0). Slots are checked before they are trusted (D's buffer is not zeroed): the handle must
    decode in the stack depot, ``state`` must be an ``enum pp_state`` value and the pfn valid;
    a slot that fails is counted in :attr:`Ring.rejected` and skipped. A valid record at or
    after ``index`` (older than slot 0) means the ring went round (:attr:`Ring.wrapped`)."""
    from pinspect.kernel import probe

    try:
        return prog.cache["pinspect_pinner_log"]  # type: ignore[no-any-return]
    except KeyError:
        pass
    kernel = probe(prog)
    variant = kernel.pinner_variant
    log = PinnerLog(variant, pinner_feature(prog, kernel.page_ext, variant))
    if variant not in RINGS:
        return log
    try:
        record_type = prog.type("struct captured_pinner")
    except LookupError:
        return log
    fields = {n: f for n in _RECORD_FIELDS if (f := _int_field(record_type, n))}
    states = {v: k for k, v in enumerators(prog, "enum pp_state").items()}
    depot = stack_depot(prog)
    for name, file, kind in RINGS[variant]:
        container = _ring_container(prog, name)
        if isinstance(container, str):
            if container != "not in this kernel":
                log.rings.append(Ring(name, file, kind, 0, 0, 0, 0, problems=[container]))
            continue
        address, size, index, record_size = container
        ring = Ring(name, file, kind, size, index, address, record_size)
        log.rings.append(ring)
        if not 0 < size <= 1 << 24:
            ring.problems.append(f"implausible size {size}")
            continue
        if index >= size:
            ring.problems.append(f"index {index} out of range (size {size}); read modulo")
        data, readable = _read_slots(prog, address, size, record_size)
        ring.unreadable = int((~readable).sum())
        view = memoryview(data)
        newest_fail: dict[int, PinnerRecord] = {}
        pending: list[PinnerRecord] = []
        for i in range(size):
            slot = (index - 1 - i) % size
            if not readable[slot]:
                continue
            base = slot * record_size
            handle = _unpack(view, fields["handle"], base) or 0
            if handle == 0:
                break
            pfn = _unpack(view, fields.get("pfn"), base) or 0
            state_value = _unpack(view, fields.get("state"), base)
            stack = depot.stack(handle)  # also the slot's validity check
            why = None
            if stack is None:
                why = depot.problem(handle) or "handle not decoded"
            elif state_value is not None and state_value not in states:
                why = "state out of range"
            elif not _valid_pfn(kernel, pfn):
                why = "pfn not valid"
            if why is not None:
                ring.rejected.append((slot, why))
                continue
            state = states.get(state_value) if state_value is not None else None
            raw_ts = _unpack(view, fields.get("ts_usec"), base)
            raw_elapsed = _unpack(view, fields.get("elapsed"), base)
            ts: int | None
            elapsed: int | None
            if kind == "longterm":
                ts, elapsed = None, raw_elapsed if raw_elapsed is not None else raw_ts
            elif state is not None and state != "PP_FREE" and state != "PP_FAIL_DETECTED":
                ts, elapsed = None, raw_elapsed if raw_elapsed is not None else raw_ts
            else:
                ts, elapsed = raw_ts, None
            flags_value = _unpack(view, fields.get("flags"), base)
            if flags_value is None:
                flags_value = _unpack(view, fields.get("page_flags"), base)
            record = PinnerRecord(
                buffer=name, slot=slot, pfn=pfn, handle=handle, ts_usec=ts, elapsed=elapsed,
                count=_unpack(view, fields.get("count"), base),
                mapcount=_unpack(view, fields.get("mapcount"), base),
                mapping=_unpack(view, fields.get("mapping"), base),
                flags=flags_value,
                page_mt=_unpack(view, fields.get("page_mt"), base),
                state=state,
                reason="longterm" if kind == "longterm" else (_reason_of(stack) or "other"),
                time_usec=ts, stack=stack)
            if slot >= index % size and index < size:
                ring.wrapped = True
            pending.append(record)
        # Oldest first: a put or free after a failure belongs to that failure's episode (its
        # reason) and happened elapsed µs after it (C, D).
        for record in reversed(pending):
            if record.state == "PP_FAIL_DETECTED":
                newest_fail[record.pfn] = record
            elif record.state is not None and record.pfn in newest_fail:
                fail = newest_fail[record.pfn]
                time = record.time_usec
                if time is None and record.elapsed is not None and fail.ts_usec is not None:
                    time = fail.ts_usec + record.elapsed
                record = replace(record, reason=fail.reason, time_usec=time)
            ring.records.append(record)
        ring.records.reverse()
        ring.records = [replace(r, text=tuple(record_text(kernel, variant, ring, r)))
                        for r in ring.records]
    prog.cache["pinspect_pinner_log"] = log
    return log


# -- the debugfs text ---------------------------------------------------------------------

# include/trace/events/mmflags.h's page flag names in table order, for kernels whose dump
# lacks pageflag_names[] (with PG_error: up to 6.11; without: 6.12 on).
PAGEFLAG_NAMES_OLD = (
    "locked", "waiters", "error", "referenced", "uptodate", "dirty", "lru", "active",
    "workingset", "slab", "owner_priv_1", "arch_1", "reserved", "private", "private_2",
    "writeback", "head", "mappedtodisk", "reclaim", "swapbacked", "unevictable", "mlocked",
    "uncached", "hwpoison", "young", "idle", "arch_2", "arch_3", "skip_kasan_poison")
PAGEFLAG_NAMES_NEW = (
    "locked", "waiters", "referenced", "uptodate", "dirty", "lru", "active", "workingset",
    "owner_priv_1", "owner_2", "arch_1", "reserved", "private", "private_2", "writeback",
    "head", "reclaim", "swapbacked", "unevictable", "dropbehind", "mlocked", "hwpoison",
    "idle", "young", "arch_2", "arch_3")


def _pageflag_table(kernel: Kernel) -> list[tuple[int, str]]:
    prog = kernel.prog
    try:
        return prog.cache["pinspect_pageflag_table"]  # type: ignore[no-any-return]
    except KeyError:
        pass
    table: list[tuple[int, str]] = []
    names = variable(prog, "pageflag_names")
    if names is not None:
        try:
            for i in range(names.type_.length or 64):
                entry = names[i]
                if not entry.name.value_():
                    break
                table.append((int(entry.mask.value_()),
                              entry.name.string_().decode(errors="replace")))
        except (FaultError, AttributeError):
            table = []
    if not table:
        bits = kernel.flags.names
        order = PAGEFLAG_NAMES_OLD if "PG_error" in bits else PAGEFLAG_NAMES_NEW
        table = [(1 << bits[f"PG_{n}"], n) for n in order if f"PG_{n}" in bits]
    prog.cache["pinspect_pageflag_table"] = table
    return table


def _flag_fields(kernel: Kernel) -> list[tuple[str, int, int, bool]]:
    """The page->flags fields %pGp prints: (name, shift, width, hex)."""
    from pinspect.zones import _flags_layout

    layout = _flags_layout(kernel)
    fields: list[tuple[str, int, int, bool]] = []
    if layout.nodes_mask:
        fields.append(("node", layout.nodes_shift, layout.nodes_mask.bit_length(), False))
    if layout.zones_mask:
        fields.append(("zone", layout.zones_shift, layout.zones_mask.bit_length(), False))
    prog = kernel.prog
    try:
        numa_balancing = prog.type("struct task_struct").has_member("numa_scan_seq")
        cpupid_in_page = prog.type("struct page").has_member("_last_cpupid")
    except LookupError:
        numa_balancing, cpupid_in_page = False, True
    if numa_balancing and not cpupid_in_page:
        offsets = variable(prog, "__per_cpu_offset")
        nr_cpus = int(offsets.type_.length or 1) if offsets is not None else 1
        width = 8 + max(nr_cpus - 1, 0).bit_length()  # LAST__PID_SHIFT + NR_CPUS_BITS
        low = layout.zones_shift or layout.nodes_shift
        if low and low - width >= kernel.flags.names.get("__NR_PAGEFLAGS", 64):
            fields.append(("lastcpupid", low - width, width, True))
    return fields


def format_pgp(kernel: Kernel, flags: int) -> str:
    """The kernel's ``%pGp`` of a page->flags word: 5.14 on ``0x<value>(<names>|node=N|
    zone=Z|...)``; before, the names only."""
    nr = kernel.flags.names.get("__NR_PAGEFLAGS", 64)
    rest = flags & ((1 << nr) - 1)
    parts: list[str] = []
    for mask, name in _pageflag_table(kernel):
        if not rest:
            break
        if mask and rest & mask == mask:
            parts.append(name)
            rest &= ~mask
    if rest:
        parts.append(f"{rest:#x}")
    if not _pgp_prints_value(kernel):
        return "|".join(parts)
    for name, shift, width, hexa in _flag_fields(kernel):
        value = (flags >> shift) & ((1 << width) - 1)
        parts.append(f"{name}={value:#x}" if hexa else f"{name}={value}")
    return f"{flags:#x}({'|'.join(parts)})"


def _pgp_prints_value(kernel: Kernel) -> bool:
    """Whether %pGp prints the value and the node/zone fields (5.14 on; commit "mm, printk:
    make %pGp print the hex value and the fields of page->flags")."""
    if has_variable(kernel.prog, "pff"):
        return True
    try:
        major, minor = (int(x) for x in kernel.release.split(".")[:2])
    except ValueError:
        return True
    return (major, minor) >= (5, 14)


def _migratetype_name(kernel: Kernel, value: int | None) -> str:
    names = variable(kernel.prog, "migratetype_names")
    if names is not None and value is not None and 0 <= value < (names.type_.length or 0):
        try:
            return str(names[value].string_().decode(errors="replace"))
        except FaultError:
            pass
    return kernel.migratetypes.get(value if value is not None else -1, f"{value}")


def _sec_usec(usec: int) -> str:
    """``[%5lu.%06lu]`` of a µs count."""
    usec &= (1 << 64) - 1
    return f"[{usec // 1_000_000:5d}.{usec % 1_000_000:06d}]"


def record_text(kernel: Kernel, variant: str | None, ring: Ring, r: PinnerRecord) -> list[str]:
    """The lines the kernel's debugfs reader of *ring* prints for *r*, the empty last line
    included (``print_page_pinner()`` of each variant, reference §1.3-1.7)."""
    block = r.pfn >> kernel.pageblock_order
    flags = r.flags or 0
    flags_text = f"Flags {flags:#x}({format_pgp(kernel, flags)})"
    raw = r.elapsed if r.elapsed is not None else (r.ts_usec or 0)
    if variant in ("a0", "a1"):
        first = f"Page pinned ts {raw} us count 0"
    elif variant in ("a2", "b"):
        first = (f"Page pinned for {raw} us" if ring.kind == "longterm"
                 else f"Page pinned ts {_sec_usec(raw)}")
    else:
        first = {
            "PP_PUT": f"At least, pinned for {raw} us",
            "PP_FREE": f"Freed at {_sec_usec(raw)}",
            "PP_FAIL_DETECTED": f"Failure detected at {_sec_usec(raw)}",
        }.get(r.state or "", f"state {r.state}")
    if variant in ("a0", "a1", "a2"):
        second = (f"PFN {r.pfn} Block {block} type {_migratetype_name(kernel, r.page_mt)} "
                  f"{flags_text}")
    else:
        mapping = stack_depot(kernel.prog).symbolizer.frame(r.mapping or 0)
        second = (f"PFN {r.pfn:#x} Block {block} count {r.count} mapcount {r.mapcount} "
                  f"mapping {mapping} {flags_text}")
    lines = [first, second]
    if r.stack is not None:
        lines += [" " + line for line in r.stack.lines()]
    return lines + [""]


def pinner_file_text(prog: Program, pages: Iterable[PinnerPage]) -> list[str]:
    """A0's debugfs ``pinner`` file for *pages*: each page with PAGE_EXT_GET, a count and a
    handle, in pfn order."""
    from pinspect.kernel import probe
    from pinspect.zones import PageblockReader

    kernel = probe(prog)
    blocks = PageblockReader(kernel)
    lines: list[str] = []
    for page in sorted(pages, key=lambda p: p.pfn):
        if "PAGE_EXT_GET" not in page.flags or not page.count or not page.handle:
            continue
        flags = _page_flags(kernel, page.pfn)
        lines += [f"Page pinned ts {page.ts_usec} us count {page.count}",
                  f"PFN {page.pfn} Block {page.pfn >> kernel.pageblock_order} type "
                  f"{_migratetype_name(kernel, blocks.migratetype(page.pfn))} "
                  f"Flags {flags:#x}({format_pgp(kernel, flags)})"]
        lines += [" " + line for line in page.stack.lines()] if page.stack else []
        lines.append("")
    return lines


def _page_flags(kernel: Kernel, pfn: int) -> int:
    from pinspect.scan import read_page_bytes

    data = read_page_bytes(kernel, pfn, 1)
    return int.from_bytes(data[kernel.layout.flags:kernel.layout.flags + 8], "little")


# -- counts for info ----------------------------------------------------------------------

@dataclass(frozen=True)
class RecordCounts:
    """How many pages carry records of each page_ext client (a walk over every page_ext
    entry; only clients enabled at boot are read)."""

    owner_pages: int | None  # PAGE_EXT_OWNER set (None: page_owner not enabled)
    owner_allocated: int | None  # PAGE_EXT_OWNER_ALLOCATED set
    pinner_flagged: int | None  # a page_pinner flag set (None: page_pinner not enabled)
    pinner_with_record: int | None  # struct page_pinner not all zero
    unreadable: int  # pfns whose page_ext could not be read


def record_counts(kernel: Kernel) -> RecordCounts:
    """Count the pages that carry page_owner and page_pinner records, a section at a time."""
    from pinspect.owner import CLIENT as OWNER_CLIENT
    from pinspect.pageext import _flatmem_entry, _section_table
    from pinspect.scan import valid_ranges
    from pinspect.variables import required_variable

    ext = kernel.page_ext
    none = RecordCounts(None, None, None, None, 0)
    if ext is None or ext.entry_size == 0:
        return none
    owner = ext.client(OWNER_CLIENT.name)
    pinner = ext.client(CLIENT.name)
    owner_on = owner is not None and owner.enabled and ext.has_flags_word
    pinner_on = kernel.pinner_variant is not None and (
        (pinner is not None and pinner.enabled) or kernel.pinner_variant == "rfc")
    if not owner_on and not pinner_on:
        return none
    bits = ext.flag_bits
    owner_mask = 1 << bits["PAGE_EXT_OWNER"] if owner_on and "PAGE_EXT_OWNER" in bits else 0
    alloc_mask = (1 << bits["PAGE_EXT_OWNER_ALLOCATED"]
                  if owner_on and "PAGE_EXT_OWNER_ALLOCATED" in bits else 0)
    pin_mask = pinner_mask(kernel) if pinner_on else 0
    record = _page_record_layout(kernel.prog) if pinner_on and pinner is not None else None
    rec_span = (pinner.offset, max(o + s for o, s, _ in record.values())) \
        if record and pinner is not None else None
    size = ext.entry_size
    prog = kernel.prog
    counts = [0, 0, 0, 0]
    unreadable = 0
    section_pages = 1 << (int(required_variable(prog, "SECTION_SIZE_BITS").value_())
                          - kernel.page_shift) if ext.sparse else 1 << 30
    for start, end, _ in valid_ranges(kernel):
        pfn = start
        while pfn < end:
            stop = min(end, (pfn // section_pages + 1) * section_pages)
            try:
                if ext.sparse:
                    table = _section_table(kernel, pfn)
                    address = None if table is None else (table + size * pfn) % (1 << 64)
                else:
                    address = _flatmem_entry(kernel, pfn)
                if address is None:
                    unreadable += stop - pfn
                else:
                    data = np.frombuffer(prog.read(address, (stop - pfn) * size),
                                         np.uint8).reshape(-1, size)
                    words = np.ascontiguousarray(data[:, :8]).view("<u8").reshape(-1) \
                        if ext.has_flags_word else np.zeros(len(data), np.uint64)
                    for i, mask in enumerate((owner_mask, alloc_mask, pin_mask)):
                        if mask:
                            counts[i] += int(np.count_nonzero(words & np.uint64(mask)))
                    if rec_span is not None and rec_span[0] + rec_span[1] <= size:
                        part = data[:, rec_span[0]:rec_span[0] + rec_span[1]]
                        counts[3] += int(np.count_nonzero(part.any(axis=1)))
            except FaultError:
                unreadable += stop - pfn
            pfn = stop
    return RecordCounts(
        owner_pages=counts[0] if owner_on else None,
        owner_allocated=counts[1] if owner_on else None,
        pinner_flagged=counts[2] if pinner_on else None,
        pinner_with_record=counts[3] if rec_span is not None else None,
        unreadable=unreadable)
