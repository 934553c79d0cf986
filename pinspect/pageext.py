"""page_ext: the per-page extension entries (``struct page_ext``) that record sources use.

:func:`page_ext_layout` finds the entry size, the flags word and where each client (page_owner,
page_pinner, ...) keeps its record; :func:`flags_words` reads ``page_ext->flags`` in bulk. The
record sources (:mod:`pinspect.owner`, :mod:`pinspect.pinner`) sit on top of this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from drgn import FaultError, Object, Program
from drgn.helpers.linux.mmzone import for_each_online_pgdat, pfn_to_section

from pinspect import constants, unread
from pinspect.features import ABSENT, OFF, PRESENT, Feature
from pinspect.probing import enumerators, static_key_enabled
from pinspect.variables import has_variable, required_variable, variable

if TYPE_CHECKING:
    from pinspect.kernel import Kernel


@dataclass(frozen=True)
class ClientSpec:
    """A page_ext client as a record source declares it: its ``struct page_ext_operations``
    and the static key that says it was enabled at boot."""

    name: str
    ops: str
    enabled_key: str
    # Whether an enabled client of this kind makes the kernel reserve the flags word.
    wants_flags: Callable[[PageExtClient], bool]


@dataclass(frozen=True)
class PageExtClient:
    """A page_ext client compiled into this kernel: its record's offset in each entry."""

    name: str
    offset: int
    enabled: bool
    need_shared_flags: bool  # ops->need_shared_flags (6.3+; before, every entry had flags)


@dataclass(frozen=True)
class PageExtLayout:
    """page_ext: entry size, the flags word, and the clients compiled in."""

    entry_size: int
    has_flags_word: bool
    sparse: bool
    clients: dict[str, PageExtClient] = field(default_factory=dict)
    flag_bits: dict[str, int] = field(default_factory=dict)

    def client(self, name: str) -> PageExtClient | None:
        return self.clients.get(name)


# The largest page_ext entry believed: a few clients of a few words each (a corrupted
# page_ext_size would make huge reads).
MAX_ENTRY_SIZE = 4096


def _client(prog: Program, spec: ClientSpec) -> PageExtClient | None:
    ops = variable(prog, spec.ops)
    if ops is None:
        return None
    try:
        need_shared = bool(ops.need_shared_flags.value_())
    except AttributeError:
        need_shared = True  # before 6.3 every entry starts with the flags word
    return PageExtClient(spec.name, ops.offset.value_(),
                         bool(static_key_enabled(prog, spec.enabled_key)), need_shared)


def page_ext_layout(prog: Program, specs: Sequence[ClientSpec]
                    ) -> tuple[PageExtLayout | None, Feature]:
    """The page_ext layout with the clients of *specs* that this kernel has, and its state."""
    size_obj = variable(prog, "page_ext_size")
    if size_obj is None:
        return None, Feature("page_ext", ABSENT, "kernel built without CONFIG_PAGE_EXTENSION")
    entry_size = size_obj.value_()
    # (an entry is at least struct page_ext: its flags word; 0 made a numpy view of empty
    # rows fail in the long fuzz run)
    if not 8 <= entry_size <= MAX_ENTRY_SIZE or entry_size % 8:
        unread.count(prog, "page_ext layouts (page_ext_size corrupted)")
        return None, Feature("page_ext", ABSENT,
                             f"unreadable: page_ext_size {entry_size} is impossible "
                             "(a corrupted dump)")
    clients = {}
    has_flags = False
    for spec in specs:
        client = _client(prog, spec)
        # (a client without per-page data, as page_pinner RFC, sits at the entry's end)
        if client is not None and entry_size and not 0 <= client.offset <= entry_size:
            continue  # a corrupted offset: this client's records cannot be found
        if client is not None:
            clients[spec.name] = client
            has_flags = has_flags or (client.enabled and spec.wants_flags(client))
    # 6.3+ reserves the flags word only when an enabled client asks for it (commit
    # "mm/page_ext: do not allocate space for page_ext->flags if not needed").
    try:
        prog.type("struct page_ext_operations").member("need_shared_flags")
    except LookupError:
        has_flags = True
    in_use = entry_size > 0 and any(c.enabled for c in clients.values())
    feature = Feature(
        "page_ext", PRESENT if in_use else OFF,
        f"entry size {entry_size} bytes" if in_use
        else "compiled in, but no page_ext client was enabled at boot",
    )
    return PageExtLayout(
        entry_size=entry_size,
        has_flags_word=has_flags,
        sparse=has_variable(prog, "mem_section"),
        clients=clients,
        flag_bits=enumerators(prog, "enum page_ext_flags"),
    ), feature


def _section_table(kernel: Kernel, pfn: int) -> int | None:
    """Biased ``mem_section->page_ext`` for the section of *pfn*, or None if absent."""
    section = pfn_to_section(kernel.prog, pfn)
    if not section:
        return None
    value = section.page_ext.value_()
    if value == 0 or value & constants.PAGE_EXT_INVALID:
        return None
    return int(value)


def flags_words(kernel: Kernel, start_pfn: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``page_ext->flags`` of pfns ``[start_pfn, start_pfn + n)``, and which were readable."""
    ext = kernel.page_ext
    words = np.zeros(n, dtype=np.uint64)
    readable = np.zeros(n, dtype=bool)
    if ext is None or ext.entry_size == 0:
        return words, readable
    size = ext.entry_size
    prog = kernel.prog
    section_pages = 1 << (required_variable(prog, "SECTION_SIZE_BITS").value_()
                          - kernel.page_shift) if ext.sparse else n
    pfn = start_pfn
    end = start_pfn + n
    while pfn < end:
        stop = min(end, (pfn // section_pages + 1) * section_pages) if ext.sparse else end
        try:
            if ext.sparse:
                table = _section_table(kernel, pfn)
                address = None if table is None else (table + size * pfn) % (1 << 64)
            else:
                address = _flatmem_entry(kernel, pfn)
            if address is not None:
                data = prog.read(address, (stop - pfn) * size)
                col = np.frombuffer(data, dtype="<u8").reshape(-1, size // 8)[:, 0] \
                    if size % 8 == 0 else np.frombuffer(
                        np.ascontiguousarray(np.frombuffer(data, np.uint8)
                                             .reshape(-1, size)[:, :8]).tobytes(), "<u8")
                words[pfn - start_pfn:stop - start_pfn] = col
                readable[pfn - start_pfn:stop - start_pfn] = True
        except FaultError:
            pass
        pfn = stop
    return words, readable


def _flatmem_entry(kernel: Kernel, pfn: int) -> int | None:
    """FLATMEM: ``pgdat->node_page_ext`` indexed from the MAX_ORDER-aligned node start."""
    ext = kernel.page_ext
    assert ext is not None
    pgdat: Object
    for pgdat in for_each_online_pgdat(kernel.prog):
        start = pgdat.node_start_pfn.value_()
        if start <= pfn < start + pgdat.node_spanned_pages.value_():
            base = pgdat.node_page_ext.value_()
            if not base:
                return None
            aligned = start & ~((1 << (kernel.max_order - 1)) - 1)
            return int(base + ext.entry_size * (pfn - aligned))
    return None


def read_entries(kernel: Kernel, pfns: Sequence[int] | np.ndarray, max_gap: int = 64
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Whole page_ext entries of *pfns* (any order), and which were readable.

    Returns an ``(n, entry_size)`` uint8 array in the order of *pfns*. The pfns are read in
    runs (sorted, inside one section, at most *max_gap* pages apart), one ``prog.read`` each;
    a run that faults is retried pfn by pfn. Sections without page_ext (NULL or
    ``PAGE_EXT_INVALID``) and FLATMEM nodes without ``node_page_ext`` are unreadable.
    """
    ext = kernel.page_ext
    wanted = np.asarray(pfns, dtype=np.uint64).reshape(-1)
    n = len(wanted)
    size = ext.entry_size if ext is not None else 0
    out = np.zeros((n, max(size, 1)), dtype=np.uint8)
    readable = np.zeros(n, dtype=bool)
    if ext is None or size == 0 or n == 0:
        return out, readable
    prog = kernel.prog
    order = np.argsort(wanted, kind="stable")
    ordered = wanted[order]
    if ext.sparse:
        shift = required_variable(prog, "SECTION_SIZE_BITS").value_() - kernel.page_shift
        sections = ordered >> np.uint64(shift)
        breaks = (np.diff(ordered) > np.uint64(max_gap)) | (np.diff(sections) != 0)
    else:
        breaks = np.diff(ordered) > np.uint64(max_gap)
    starts = np.concatenate(([0], np.flatnonzero(breaks) + 1, [n])).tolist()

    def entry_address(pfn: int) -> int | None:
        if ext.sparse:
            table = _section_table(kernel, pfn)
            return None if table is None else (table + size * pfn) % (1 << 64)
        return _flatmem_entry(kernel, pfn)

    for lo, hi in zip(starts[:-1], starts[1:], strict=True):
        first, last = int(ordered[lo]), int(ordered[hi - 1])
        try:
            base = entry_address(first)
        except FaultError:
            base = None
        if base is None:
            continue
        flat_ok = ext.sparse or entry_address(last) == base + size * (last - first)
        if flat_ok:
            try:
                rows = np.frombuffer(prog.read(base, (last - first + 1) * size),
                                     dtype=np.uint8).reshape(-1, size)
                index = (ordered[lo:hi] - np.uint64(first)).astype(np.int64)
                out[order[lo:hi]] = rows[index]
                readable[order[lo:hi]] = True
                continue
            except FaultError:
                pass
        for k in range(lo, hi):  # a run that faults (or spans FLATMEM nodes): one by one
            pfn = int(ordered[k])
            try:
                address = entry_address(pfn)
                if address is not None:
                    out[order[k]] = np.frombuffer(prog.read(address, size), dtype=np.uint8)
                    readable[order[k]] = True
            except FaultError:
                pass
    return out, readable
