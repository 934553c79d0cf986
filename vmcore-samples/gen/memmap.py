"""SPARSEMEM_EXTREME with SPARSEMEM_VMEMMAP: the mem_section roots, each
present section's struct mem_section and struct mem_section_usage, and the
vmemmap pages that hold the struct pages."""

from __future__ import annotations

from dataclasses import dataclass

from . import scenario as S
from .machine import Machine

# section_mem_map flags: PRESENT | HAS_MEM_MAP | ONLINE | EARLY
SECTION_FLAGS = 0x1 | 0x2 | 0x4 | 0x8


@dataclass
class Sections:
    """Where the present sections live."""

    pages_per_section: int
    nr_section_roots: int  # LENGTH(mem_section)
    section_addr: dict[int, int]  # section nr -> struct mem_section
    usage_addr: dict[int, int]  # section nr -> struct mem_section_usage


def nr_pageblock_bits(m: Machine) -> int:
    """Bits per pageblock in pageblock_flags: NR_PAGEBLOCK_BITS (4 up to
    6.16), then __NR_PAGEBLOCK_BITS rounded up to a power of two (8 with
    PB_migrate_isolate, include/linux/pageblock-flags.h)."""
    if m.t.has_enum("NR_PAGEBLOCK_BITS"):
        return m.enum("NR_PAGEBLOCK_BITS")
    return 1 << (m.enum("__NR_PAGEBLOCK_BITS") - 1).bit_length()


def pfn_to_page(m: Machine, pfn: int) -> int:
    """vmemmap address of a pfn's struct page."""
    return m.arch.vmemmap_base + pfn * m.t.sizeof("struct page")


def setup_sections(m: Machine) -> Sections:
    """Allocate (memblock) and fill the mem_section roots, the present
    sections, their usage maps and vmemmap backing; pageblock bits are
    written later by the zones."""
    t = m.t
    pps = 1 << (S.SECTION_SIZE_BITS - m.arch.page_shift)
    ms_size = t.sizeof("struct mem_section")
    sections_per_root = m.ps // ms_size
    nr_mem_sections = 1 << (m.arch.max_physmem_bits - S.SECTION_SIZE_BITS)
    nr_roots = nr_mem_sections // sections_per_root
    mem_section = m.direct(m.memblock_alloc(nr_roots * 8))
    m.write_ulong(m.sym("mem_section"), mem_section)
    secs = Sections(pps, nr_roots, {}, {})
    root_pages: dict[int, int] = {}
    usage_size = t.sizeof("struct mem_section_usage")
    sect_pb = pps >> S.PAGEBLOCK_ORDER
    pb_longs = (sect_pb * nr_pageblock_bits(m) + 63) // 64
    sp = t.sizeof("struct page")
    for s, e in S.RAM:
        for start in range(s, e, pps):
            nr = start // pps
            r = nr // sections_per_root
            if r not in root_pages:
                root_pages[r] = m.memblock_alloc(m.ps)
                m.write_ulong(mem_section + 8 * r, m.direct(root_pages[r]))
            addr = m.direct(root_pages[r]) + (nr % sections_per_root) * ms_size
            secs.section_addr[nr] = addr
            usage = m.direct(m.memblock_alloc(usage_size + 8 * pb_longs))
            t.put(addr, "struct mem_section", "usage", usage)
            # subsection map: all subsections of boot memory are present
            nsub = 1 << max(0, S.SECTION_SIZE_BITS - 21)
            t.put(usage, "struct mem_section_usage", "subsection_map[0]", (1 << nsub) - 1)
            nbytes = pps * sp
            back = m.memblock_alloc(nbytes)
            v0 = m.arch.vmemmap_base + start * sp
            for i in range((nbytes + m.ps - 1) // m.ps):
                m.mem.map_page(v0 + i * m.ps, back + i)
            t.put(
                addr, "struct mem_section", "section_mem_map", m.arch.vmemmap_base | SECTION_FLAGS
            )
            secs.usage_addr[nr] = usage
    m.write_ulong(m.sym("__highest_present_section_nr"), max(secs.section_addr))
    return secs
