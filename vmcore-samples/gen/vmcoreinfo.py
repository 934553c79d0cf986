"""The VMCOREINFO note: what x86-64 kernels export for dump tools (symbols,
sizes, offsets, lengths and numbers of the mm structures)."""

from __future__ import annotations

from . import scenario as S
from .machine import Machine
from .memmap import Sections
from .pages import page_type_value


def make_vmcoreinfo(m: Machine, secs: Sections) -> bytes:
    t = m.t

    def off(name: str) -> str:
        """OFFSET(struct.member)=value, the kernel's spelling."""
        tname, member = name.split(".", 1)
        return f"OFFSET({name})={t.offsetof(f'struct {tname}', member)}"

    def size(name: str) -> str:
        tn = name if name.endswith("_t") else f"struct {name}"
        return f"SIZE({name})={t.sizeof(tn)}"

    def number(name: str) -> str:
        return f"NUMBER({name})={m.enum(name)}"

    def type_value(name: str, kind: str) -> str:
        return f"NUMBER({name})={page_type_value(m, kind)}"

    online = m.sym("node_states") + t.sizeof("nodemask_t") * m.enum("N_ONLINE")
    lines = [
        f"OSRELEASE={m.v.osrelease}",
        f"BUILD-ID={m.build_id.hex()}",
        f"PAGESIZE={m.ps}",
        f"SYMBOL(node_online_map)={online:x}",
        f"SYMBOL(swapper_pg_dir)={m.sym('init_top_pgt'):x}",
        f"SYMBOL(_stext)={m.sym('_stext'):x}",
        f"SYMBOL(mem_section)={m.sym('mem_section'):x}",
        f"LENGTH(mem_section)={secs.nr_section_roots}",
        size("mem_section"),
        off("mem_section.section_mem_map"),
        f"NUMBER(SECTION_SIZE_BITS)={S.SECTION_SIZE_BITS}",
        f"NUMBER(MAX_PHYSMEM_BITS)={m.arch.max_physmem_bits}",
        size("page"),
        size("pglist_data"),
        size("zone"),
        size("free_area"),
        size("list_head"),
        size("nodemask_t"),
        off("page.flags"),
        off("page._refcount"),
        off("page.mapping"),
        off("page.lru"),
        off("page._mapcount"),
        off("page.private"),
    ]
    if m.k.version in ("5.10", "6.1"):
        lines += [off("page.compound_dtor"), off("page.compound_order")]
    elif t.has_member("struct folio", "_folio_nr_pages"):
        lines += [off("folio._folio_nr_pages")]
    # 7.1 renamed compound_head to compound_info
    info = "compound_info" if t.has_member("struct page", "compound_info") else "compound_head"
    lines += [
        off(f"page.{info}"),
        off("pglist_data.node_zones"),
        off("pglist_data.nr_zones"),
        off("pglist_data.node_start_pfn"),
        off("pglist_data.node_spanned_pages"),
        off("pglist_data.node_id"),
        off("zone.free_area"),
        off("zone.vm_stat"),
        off("zone.spanned_pages"),
        off("free_area.free_list"),
        "OFFSET(list_head.next)=0",
        "OFFSET(list_head.prev)=8",
        f"LENGTH(zone.free_area)={m.k.max_order}",
        f"LENGTH(free_area.free_list)={m.enum('MIGRATE_TYPES')}",
        number("NR_FREE_PAGES"),
        number("PG_lru"),
        number("PG_private"),
        number("PG_swapcache"),
        number("PG_swapbacked"),
    ]
    if t.has_enum("PG_hwpoison"):
        lines.append(number("PG_hwpoison"))
    if m.k.page_type_scheme.startswith("inverted"):
        lines += [
            number("PG_slab"),
            f"NUMBER(PG_head_mask)={1 << m.enum('PG_head')}",
            type_value("PAGE_BUDDY_MAPCOUNT_VALUE", "buddy"),
            number("HUGETLB_PAGE_DTOR"),
            type_value("PAGE_OFFLINE_MAPCOUNT_VALUE", "offline"),
        ]
    else:
        lines += [
            f"NUMBER(PG_head_mask)={1 << m.enum('PG_head')}",
            type_value("PAGE_HUGETLB_MAPCOUNT_VALUE", "hugetlb"),
            type_value("PAGE_BUDDY_MAPCOUNT_VALUE", "buddy"),
            type_value("PAGE_SLAB_MAPCOUNT_VALUE", "slab"),
            type_value("PAGE_OFFLINE_MAPCOUNT_VALUE", "offline"),
            type_value("PAGE_UNACCEPTED_MAPCOUNT_VALUE", "unaccepted"),
        ]
    lines += [
        "NUMBER(phys_base)=0",
        f"SYMBOL(init_top_pgt)={m.sym('init_top_pgt'):x}",
        "NUMBER(pgtable_l5_enabled)=0",
        f"SYMBOL(node_data)={m.sym('node_data'):x}",
        f"LENGTH(node_data)={1 << m.k.nodes_shift}",
        "KERNELOFFSET=0",
    ]
    return ("\n".join(lines) + "\n").encode()
