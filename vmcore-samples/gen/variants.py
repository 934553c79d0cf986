"""The sample variants and the kernel-version facts each one needs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KernelFacts:
    """Per-version facts that are macros in the kernel (not in DWARF)."""

    version: str  # "5.10" | "6.1" | "6.12" | "7.2"
    layout_define: str
    max_order: int  # number of free_area orders
    nodes_shift: int
    # page types kept in page->page_type: bits cleared under PAGE_TYPE_BASE
    # ("inverted-5.10": PG_kmemcg 0x200, PG_table 0x400, PG_guard 0x800;
    # "inverted", 5.11-6.11: PG_table 0x200, PG_guard 0x400) or PGTY_* in
    # the top byte ("top_byte", >= 6.12)
    page_type_scheme: str
    stackdepot: str  # "slabs-5.10" | "slabs-6.1" | "pools-plus1-6.12" | "pools-plus1-7.2"
    page_ext_shared_flags: bool  # 6.3+: flags word only if a client needs it
    last_cpupid_width: int  # 0 without NUMA_BALANCING; else 8 + NR_CPUS_BITS


# 5.10 and 7.2: NUMA_BALANCING with NR_CPUS 8192, as Debian builds them
K510 = KernelFacts("5.10", "LINUX_5_10", 11, 10, "inverted-5.10", "slabs-5.10", False, 21)
K61 = KernelFacts("6.1", "LINUX_6_1", 11, 6, "inverted", "slabs-6.1", False, 0)
K612 = KernelFacts("6.12", "LINUX_6_12", 11, 10, "top_byte", "pools-plus1-6.12", True, 21)
K72 = KernelFacts("7.2", "LINUX_7_2", 11, 10, "top_byte", "pools-plus1-7.2", True, 21)


@dataclass(frozen=True)
class Variant:
    name: str
    kernel: KernelFacts
    osrelease: str
    pinner: str | None = None  # rfc a0 a2 b c d
    ack_migratetypes: bool = False
    page_owner: str = "enabled"  # enabled | off
    kdump_of: str | None = None  # write this variant's memory as kdump instead of ELF
    description: str = ""

    @property
    def defines(self) -> list[str]:
        d = [self.kernel.layout_define]
        if self.ack_migratetypes:
            d.append("ACK_MIGRATETYPES")
        if self.pinner:
            d.append("PINNER_" + self.pinner.upper())
        return d


VARIANTS: list[Variant] = [
    Variant(
        "mainline-6.1",
        K61,
        "6.1.0-pinspect",
        description=("Mainline 6.1 (folio era): page_owner enabled, CMA, no page_pinner."),
    ),
    Variant(
        "mainline-6.12",
        K612,
        "6.12.0-pinspect",
        description=(
            "Mainline 6.12: stack depot pool_index_plus_1, page_ext flags word only through "
            "need_shared_flags, folio _large_mapcount/_pincount, page types in the top byte."
        ),
    ),
    Variant(
        "mainline-5.10",
        K510,
        "5.10.0-pinspect",
        description=(
            "Mainline 5.10 (before folios): compound_head/compound_order/compound_mapcount in "
            "the first tail page, hpage_pinned_refcount in the second, PG_double_map, stack "
            "depot slabs with 21-bit slab index, page_owner without pid/tgid/comm/timestamps, "
            "page types as cleared bits under PAGE_TYPE_BASE."
        ),
    ),
    Variant(
        "mainline-7.2",
        K72,
        "7.2.0-pinspect",
        description=(
            "Mainline 7.2: compound_info in its mask form (HVO), __folio_index, memdesc_flags_t "
            "flags, folio _large_mapcount/_entire_mapcount/_pincount/_nr_pages/_mm_ids, PGTY "
            "page types (zsmalloc with PG_movable_ops), 5 pageblock bits with "
            "PB_migrate_isolate, multi-range struct cma, stack depot pools behind a pointer."
        ),
    ),
    Variant(
        "android-rfc",
        K61,
        "6.1.0-android-rfc",
        pinner="rfc",
        description=(
            "LKML RFC v1 page pinner: PAGE_EXT_PINNER flag only, no per-page data, no rings."
        ),
    ),
    Variant(
        "android-a0",
        K61,
        "6.1.0-android-a0",
        pinner="a0",
        ack_migratetypes=True,
        description="ACK A0: PAGE_EXT_GET, struct page_pinner, lt_pinner ring.",
    ),
    Variant(
        "android-a2",
        K61,
        "6.1.0-android-a2",
        pinner="a2",
        ack_migratetypes=True,
        description=(
            "ACK A2: PAGE_EXT_GET + PAGE_EXT_PINNER_MIGRATION_FAILED, lt_pinner "
            "and acf_pinner rings with page_mt/page_flags/pfn records."
        ),
    ),
    Variant(
        "android-b",
        K61,
        "6.1.0-android-b",
        pinner="b",
        ack_migratetypes=True,
        description=(
            "ACK B: lt_pinner + acf_pinner with pfn/count/mapcount/mapping/flags records."
        ),
    ),
    Variant(
        "android-c",
        K61,
        "6.1.0-android-c",
        pinner="c",
        ack_migratetypes=True,
        description="ACK C: lt_buffer + acf_buffer (inline arrays), enum pp_state.",
    ),
    Variant(
        "android-d",
        K61,
        "6.1.0-android-d",
        pinner="d",
        ack_migratetypes=True,
        description=(
            "ACK D: PAGE_EXT_PINNER_MIGRATION_FAILED only; vmalloc'd pp_buffer "
            "with put, free and failure-detected records and never-written "
            "garbage slots."
        ),
    ),
    Variant(
        "mainline-6.1-owner-off",
        K61,
        "6.1.0-pinspect",
        page_owner="off",
        description=(
            "mainline-6.1 kernel booted without page_owner=on: page_owner_inited off, "
            "page_ext never allocated."
        ),
    ),
    Variant(
        "mainline-6.1.kdump",
        K61,
        "6.1.0-pinspect",
        kdump_of="mainline-6.1",
        description=("The mainline-6.1 memory written as a kdump-compressed (diskdump) file."),
    ),
]
