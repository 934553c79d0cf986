"""mm/page_ext.c: the per-section tables of struct page_ext (a flags word,
then each client's record at its page_ext_operations.offset) hung on
mem_section.page_ext, and PageExtClient, the interface of the clients that
fill them (page_owner, page_pinner)."""

from __future__ import annotations

from typing import Protocol

from .machine import Machine
from .memmap import Sections


class PageExtClient(Protocol):
    """One user of page_ext: a struct page_ext_operations and what it keeps
    per page and globally."""

    ops: str  # symbol of its struct page_ext_operations ("page_owner_ops")
    need_shared_flags: bool  # 6.3+: it needs the page_ext flags word

    def record_size(self) -> int:
        """Size of its per-page record (struct page_owner, ...); 0 for none."""
        ...

    def setup(self) -> None:
        """Boot-time state: static keys, buffers it allocates (through
        pages.add_folio) and maps; runs before the page tables are built."""
        ...

    def write(self, ext: PageExt) -> None:
        """Its per-page records (at ext.record(self, pfn)), its page_ext flag
        bits (ext.set_flag) and the global structures that refer to them;
        runs once every struct page is final."""
        ...


class PageExt:
    """The page_ext layout of the clients, in the order given, and its
    tables (none when no client is enabled: page_ext is never allocated).
    Built once the struct pages exist; sets the clients up."""

    def __init__(self, m: Machine, secs: Sections, clients: list[PageExtClient]) -> None:
        self.m = m
        self.clients = clients
        self.pages_per_section = secs.pages_per_section
        t = m.t
        if m.k.page_ext_shared_flags:
            self.has_flags = any(c.need_shared_flags for c in clients)
        else:
            self.has_flags = True
        size = 8 if self.has_flags else 0
        self.offsets: dict[str, int] = {}  # ops symbol -> offset of its record
        for c in clients:
            self.offsets[c.ops] = size
            t.put(m.sym(c.ops), "struct page_ext_operations", "offset", size)
            size += c.record_size()
        self.size = size
        m.write_ulong(m.sym("page_ext_size"), size)
        self.tables: dict[int, int] = {}  # section nr -> its struct page_ext array
        self.flags: dict[int, int] = {}  # pfn -> page_ext flags word
        if not clients:
            return
        pps = self.pages_per_section
        for nr, addr in sorted(secs.section_addr.items()):
            base = m.direct(m.memblock_alloc(size * pps))
            self.tables[nr] = base
            # mem_section.page_ext is biased by the section's first pfn
            biased = (base - size * nr * pps) & (2**64 - 1)
            t.put(addr, "struct mem_section", "page_ext", biased)
        for c in clients:
            c.setup()

    def addr(self, pfn: int) -> int:
        """Address of a pfn's struct page_ext (lookup_page_ext())."""
        pps = self.pages_per_section
        return self.tables[pfn // pps] + self.size * (pfn % pps)

    def record(self, client: PageExtClient, pfn: int) -> int:
        """Address of a client's record for a pfn."""
        return self.addr(pfn) + self.offsets[client.ops]

    def set_flag(self, pfn: int, name: str) -> None:
        """Set an enum page_ext_flags bit (PAGE_EXT_OWNER, ...) of a pfn."""
        self.flags[pfn] = self.flags.get(pfn, 0) | 1 << self.m.enum(name)

    def write(self) -> None:
        """Let every client write its records, then write the flags words."""
        for c in self.clients:
            c.write(self)
        if self.clients and self.has_flags:
            for pfn, value in self.flags.items():
                self.m.write_ulong(self.addr(pfn), value)
