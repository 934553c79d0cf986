"""page_owner: the page_ext client that records who allocated each page.

:func:`owner_records` reads the ``struct page_owner`` of given pfns in bulk (the page_ext
entries of a section at a time, :func:`pinspect.pageext.read_entries`), decodes every layout
from 5.10 to 7.x from DWARF (fields a kernel lacks are None), and attaches the allocation and
free stacks from the stack depot (each handle decoded once per program).

A pfn has a record only when page_owner is enabled and its page_ext entry has
``PAGE_EXT_OWNER`` (set on the first allocation, never cleared); ``allocated`` is
``PAGE_EXT_OWNER_ALLOCATED`` (cleared on free). Entries are not read at all when page_owner is
compiled in but off, so nothing from an unused page_ext area is shown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from drgn import FaultError, Program, TypeKind, sizeof

from pinspect import constants
from pinspect.features import ABSENT, OFF, PRESENT, Feature
from pinspect.pageext import ClientSpec, PageExtLayout, read_entries
from pinspect.probing import enumerators
from pinspect.stackdepot import Stack, stack_depot
from pinspect.variables import has_variable, variable

CLIENT = ClientSpec(
    name="page_owner",
    ops="page_owner_ops",
    enabled_key="page_owner_inited",
    wants_flags=lambda client: client.need_shared_flags,
)

SOURCE = "page_owner"


def owner_feature(page_ext: PageExtLayout | None) -> Feature:
    """Whether page_owner is compiled in and enabled."""
    client = page_ext.client(CLIENT.name) if page_ext is not None else None
    if client is None:
        return Feature("page_owner", ABSENT, "kernel built without CONFIG_PAGE_OWNER")
    if client.enabled:
        return Feature("page_owner", PRESENT, "enabled at boot (page_owner=on)")
    return Feature("page_owner", OFF, "compiled in but not enabled; boot with page_owner=on")


@dataclass(frozen=True)
class OwnerRecord:
    """The page_owner record of one page (for a folio: of its head page)."""

    pfn: int
    allocated: bool  # PAGE_EXT_OWNER_ALLOCATED: allocated now (else: freed since)
    order: int
    gfp_mask: int
    gfp_flags: tuple[str, ...]  # the names %pGg prints, then leftover bits in hex
    pid: int | None  # None: this kernel's struct page_owner has no such field (5.10: no pid)
    tgid: int | None
    comm: str | None
    ts_nsec: int | None
    free_ts_nsec: int | None
    free_pid: int | None
    free_tgid: int | None
    handle: int
    free_handle: int
    last_migrate_reason: str | None  # None: never migrated
    stack: Stack | None  # allocation stack
    free_stack: Stack | None
    source: str = SOURCE


@dataclass
class OwnerReport:
    """The result of :func:`owner_records`."""

    feature: Feature  # page_owner present, off or absent
    records: dict[int, OwnerRecord] = field(default_factory=dict)  # pfn -> record
    unreadable: int = 0  # pfns whose page_ext entry could not be read
    problems: Counter[str] = field(default_factory=Counter)  # stack depot problems, counted

    def warnings(self) -> list[str]:
        """One line per kind of problem, with its count."""
        lines = [f"page_owner: {n} page_ext entr{'y' if n == 1 else 'ies'} unreadable"
                 for n in (self.unreadable,) if n]
        lines += [f"stack depot: {n} handle(s): {what}" for what, n in
                  sorted(self.problems.items())]
        return lines


@dataclass(frozen=True)
class OwnerLayout:
    """``struct page_owner``: (offset, size, signed) of each field it has; comm is a char
    array."""

    size: int
    fields: dict[str, tuple[int, int, bool]]


_FIELDS = ("order", "last_migrate_reason", "gfp_mask", "handle", "free_handle", "ts_nsec",
           "free_ts_nsec", "comm", "pid", "tgid", "free_pid", "free_tgid")


def owner_layout(prog: Program) -> OwnerLayout | None:
    """The fields of this kernel's ``struct page_owner``, or None without the type."""
    try:
        record = prog.type("struct page_owner")
    except LookupError:
        return None
    fields: dict[str, tuple[int, int, bool]] = {}
    for name in _FIELDS:
        try:
            member = record.member(name)
        except LookupError:
            continue
        kind = member.type.unaliased()
        signed = kind.kind == TypeKind.INT and bool(kind.is_signed)
        fields[name] = (member.offset, sizeof(kind), signed)
    if not {"order", "gfp_mask", "handle"} <= set(fields):
        return None
    return OwnerLayout(sizeof(record), fields)


def gfp_table(prog: Program) -> list[tuple[int, str]]:
    """(mask, name) in the order %pGg tries them: the kernel's own ``gfpflag_names[]`` when
    the dump has it, else composites and bits from pinspect.constants (bit numbers from the
    6.10+ ``___GFP_*_BIT`` enumerators when DWARF has them)."""
    try:
        return prog.cache["pinspect_gfp_table"]  # type: ignore[no-any-return]
    except KeyError:
        pass
    table = _kernel_gfp_table(prog)
    if not table:
        bits = dict(constants.GFP_BITS)
        for name in list(bits):
            try:
                bits[name] = 1 << int(prog.constant(f"_{name}_BIT").value_())
            except (LookupError, FaultError):
                pass
        # 6.3 dropped __GFP_ATOMIC (the stack depot's slabs became pools in the same release).
        atomic = has_variable(prog, "stack_slabs")
        table = [(mask if name != "GFP_ATOMIC" or atomic else mask & ~bits["__GFP_ATOMIC"],
                  name) for name, mask in constants.GFP_COMPOSITES]
        table += [(mask, name) for name, mask in bits.items()
                  if name != "__GFP_ATOMIC" or atomic]
    prog.cache["pinspect_gfp_table"] = table
    return table


def _kernel_gfp_table(prog: Program) -> list[tuple[int, str]]:
    names = variable(prog, "gfpflag_names")
    if names is None:
        return []
    table: list[tuple[int, str]] = []
    try:
        for i in range(names.type_.length or 64):
            entry = names[i]
            name = entry.name.value_()
            if not name:
                break
            table.append((int(entry.mask.value_()),
                          entry.name.string_().decode(errors="replace")))
    except FaultError:
        return []
    return table


def gfp_flags(prog: Program, mask: int) -> tuple[str, ...]:
    """*mask* as %pGg names it: every table entry whose bits are all set (taken in order),
    then the leftover bits in hex."""
    names: list[str] = []
    rest = mask
    for bits, name in gfp_table(prog):
        if not rest:
            break
        if bits and rest & bits == bits:
            names.append(name)
            rest &= ~bits
    if rest:
        names.append(f"{rest:#x}")
    return tuple(names)


def migrate_reason(prog: Program, value: int) -> str | None:
    """The name of ``enum migrate_reason`` *value* as the kernel prints it; None for -1."""
    if value < 0:
        return None
    table = variable(prog, "migrate_reason_names")
    if table is not None and value < (table.type_.length or 0):
        try:
            return str(table[value].string_().decode(errors="replace"))
        except FaultError:
            pass
    for name, number in enumerators(prog, "enum migrate_reason").items():
        if number == value:
            return constants.MIGRATE_REASON_NAMES.get(name, name)
    return f"reason {value}"


def _column(data: np.ndarray, offset: int, size: int, signed: bool) -> list[int]:
    dtype = {1: "i1", 2: "<i2", 4: "<i4", 8: "<i8"}[size] if signed else \
        {1: "u1", 2: "<u2", 4: "<u4", 8: "<u8"}[size]
    return np.ascontiguousarray(data[:, offset:offset + size]).view(dtype).reshape(-1).tolist()


def owner_records(prog: Program, pfns: Iterable[int], stacks: bool = True) -> OwnerReport:
    """The page_owner records of *pfns* (pfns without one are left out), read in bulk."""
    from pinspect.kernel import probe

    kernel = probe(prog)
    feature = owner_feature(kernel.page_ext)
    report = OwnerReport(feature)
    ext = kernel.page_ext
    layout = owner_layout(prog)
    client = ext.client(CLIENT.name) if ext is not None else None
    if feature.state != PRESENT or ext is None or client is None or layout is None:
        return report
    owner_bit = ext.flag_bits.get("PAGE_EXT_OWNER")
    allocated_bit = ext.flag_bits.get("PAGE_EXT_OWNER_ALLOCATED")
    if owner_bit is None or not ext.has_flags_word:
        return report
    wanted = sorted(set(pfns))
    if not wanted:
        return report
    entries, readable = read_entries(kernel, wanted)
    report.unreadable = int((~readable).sum())
    flags = np.ascontiguousarray(entries[:, :8]).view("<u8").reshape(-1)
    has_record = readable & ((flags >> np.uint64(owner_bit)) & np.uint64(1)).astype(bool)
    if client.offset + layout.size > ext.entry_size:
        return report
    rows = np.flatnonzero(has_record)
    if not len(rows):
        return report
    data = entries[rows, client.offset:client.offset + layout.size]
    columns = {name: _column(data, off, size, signed)
               for name, (off, size, signed) in layout.fields.items() if name != "comm"}
    comms: list[str | None] = [None] * len(rows)
    if "comm" in layout.fields:
        off, size, _ = layout.fields["comm"]
        comms = [bytes(r).split(b"\0", 1)[0].decode(errors="replace")
                 for r in data[:, off:off + size]]
    depot = stack_depot(prog)
    gfp_names: dict[int, tuple[str, ...]] = {}
    reasons: dict[int, str | None] = {}
    nones: list[int | None] = [None] * len(rows)

    def column(name: str) -> list[int | None]:
        return columns.get(name, nones)  # type: ignore[return-value]

    alloc = ([bool(int(w) >> allocated_bit & 1) for w in flags[rows].tolist()]
             if allocated_bit is not None else [False] * len(rows))
    stack_of = depot.stack if stacks else (lambda handle: None)
    for (row, allocated, comm, gfp, order, handle, free_handle, reason, pid, tgid, ts,
         free_ts, free_pid, free_tgid) in zip(
            rows.tolist(), alloc, comms, column("gfp_mask"), column("order"),
            column("handle"), column("free_handle"), column("last_migrate_reason"),
            column("pid"), column("tgid"), column("ts_nsec"), column("free_ts_nsec"),
            column("free_pid"), column("free_tgid"), strict=True):
        pfn = wanted[row]
        gfp = gfp or 0
        names = gfp_names.get(gfp)
        if names is None:
            names = gfp_names[gfp] = gfp_flags(prog, gfp)
        handle = handle or 0
        free_handle = free_handle or 0
        reason_name = None
        if reason is not None:
            if reason not in reasons:
                reasons[reason] = migrate_reason(prog, reason)
            reason_name = reasons[reason]
        report.records[pfn] = OwnerRecord(
            pfn=pfn,
            allocated=allocated,
            order=order or 0,
            gfp_mask=gfp,
            gfp_flags=names,
            pid=pid,
            tgid=tgid,
            comm=comm,
            ts_nsec=ts,
            free_ts_nsec=free_ts,
            free_pid=free_pid,
            free_tgid=free_tgid,
            handle=handle,
            free_handle=free_handle,
            last_migrate_reason=reason_name,
            stack=stack_of(handle),
            free_stack=stack_of(free_handle),
        )
    if stacks:
        used = {h for r in report.records.values() for h in (r.handle, r.free_handle) if h}
        report.problems = Counter(p for h in used if (p := depot.problem(h)) is not None)
    return report

