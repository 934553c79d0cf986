"""The few kernel constants that are ``#define``\\ s and therefore absent from DWARF.

Everything else (struct offsets, enumerators, array lengths) is probed from debug info in
:mod:`pinspect.kernel`. Each entry names where the value comes from.
"""

# include/linux/mm.h: FOLL_PIN adds this much to _refcount of a small folio (5.7+).
GUP_PIN_COUNTING_BIAS = 1 << 10

# include/linux/page-flags.h: low bits of page->mapping.
PAGE_MAPPING_ANON = 0x1
PAGE_MAPPING_MOVABLE = 0x2
PAGE_MAPPING_KSM = PAGE_MAPPING_ANON | PAGE_MAPPING_MOVABLE
PAGE_MAPPING_FLAGS = PAGE_MAPPING_ANON | PAGE_MAPPING_MOVABLE

# include/linux/page-flags.h: page types live in page->page_type (aliasing _mapcount).
# Up to 6.11 a type is a cleared bit under PAGE_TYPE_BASE; from 6.12 the top byte holds a
# PGTY_* value. Either way a typed page has a value at or below this as a signed 32-bit
# number, while a mapcount is >= -1 (PAGE_MAPCOUNT_RESERVE, 6.x).
PAGE_MAPCOUNT_RESERVE = -128
# Up to 6.11 (commit "mm: add PGTY_* page types" changed this in 6.12).
PAGE_TYPE_BASE = 0xF0000000
# Up to 6.8 these were #defines; 6.9 moved them (and new ones) into enum pagetype.
PAGE_TYPE_BITS_OLD = {"buddy": 0x80, "offline": 0x100, "table": 0x200, "guard": 0x400}
# Up to 5.10 PG_kmemcg sat at 0x200 and pushed table and guard up one bit (5.11's commit
# 18b2db3b0385 "mm: Convert page kmemcg type to a page memcg flag" removed it).
PAGE_TYPE_BITS_KMEMCG = {"buddy": 0x80, "offline": 0x100, "kmemcg": 0x200, "table": 0x400,
                         "guard": 0x800}
# 6.12+: top byte of page_type (enum pagetype in DWARF gives these too; used as fallback).
PGTY_OLDEST = 0xF0

# mm/page_ext.c: bit 0 of mem_section->page_ext marks a table being freed (6.1+).
PAGE_EXT_INVALID = 0x1

# include/linux/mmzone.h: subsections are 2 MiB on every architecture (SUBSECTION_SHIFT).
SUBSECTION_SHIFT = 21

# lib/stackdepot.c (include/linux/stackdepot.h from 6.8): a handle's offset counts units of
# 1 << DEPOT_STACK_ALIGN bytes (STACK_ALLOC_ALIGN before 6.3); unchanged since 4.6.
DEPOT_STACK_ALIGN = 4
# CONFIG_STACKDEPOT_MAX_FRAMES' default (6.8+ sizes struct stack_record.entries with it; before,
# entries[] is a flexible array and nothing in DWARF bounds a record's size).
STACKDEPOT_MAX_FRAMES = 64

# include/uapi/linux/elf.h: a symbol in no section.
SHN_UNDEF = 0
# include/uapi/linux/elf.h: sizeof(Elf64_Sym) and its fields' offsets, for module kallsyms
# (struct mod_kallsyms.symtab) when the debug info lacks the type.
ELF64_SYM = {"size": 24, "st_name": 0, "st_info": 4, "st_shndx": 6, "st_value": 8,
             "st_size": 16}

# include/linux/gfp_types.h (gfp.h before 6.0): the ___GFP_* bits, #defines up to 6.9 (6.10
# enumerates them as ___GFP_*_BIT, which pinspect reads from DWARF when present). Bit 0x200 was
# __GFP_ATOMIC until 6.2 and is unused since 6.3. Bits above __GFP_ZEROTAGS depend on the
# configuration (KASAN_HW_TAGS, LOCKDEP, slab extensions) and are printed as hex.
GFP_BITS = {  # in the order of 6.1's gfpflag_names[] (names only print in this order)
    "__GFP_DMA": 0x1, "__GFP_HIGHMEM": 0x2, "__GFP_DMA32": 0x4, "__GFP_HIGH": 0x20,
    "__GFP_ATOMIC": 0x200, "__GFP_IO": 0x40, "__GFP_FS": 0x80, "__GFP_NOWARN": 0x2000,
    "__GFP_RETRY_MAYFAIL": 0x4000, "__GFP_NOFAIL": 0x8000, "__GFP_NORETRY": 0x10000,
    "__GFP_COMP": 0x40000, "__GFP_ZERO": 0x100, "__GFP_NOMEMALLOC": 0x80000,
    "__GFP_MEMALLOC": 0x20000, "__GFP_HARDWALL": 0x100000, "__GFP_THISNODE": 0x200000,
    "__GFP_RECLAIMABLE": 0x10, "__GFP_MOVABLE": 0x8, "__GFP_ACCOUNT": 0x400000,
    "__GFP_WRITE": 0x1000, "__GFP_DIRECT_RECLAIM": 0x400, "__GFP_KSWAPD_RECLAIM": 0x800,
    "__GFP_ZEROTAGS": 0x800000,
}
# include/trace/events/mmflags.h: the composite names %pGg tries first, in the kernel's order
# (gfpflag_names[]). GFP_ATOMIC included __GFP_ATOMIC up to 6.2.
_RECLAIM = 0x400 | 0x800
_KERNEL = _RECLAIM | 0x40 | 0x80
_HIGHUSER_MOVABLE = _KERNEL | 0x100000 | 0x2 | 0x8
_TRANSHUGE_LIGHT = (_HIGHUSER_MOVABLE | 0x40000 | 0x80000 | 0x2000) & ~_RECLAIM
GFP_COMPOSITES = (
    ("GFP_TRANSHUGE", _TRANSHUGE_LIGHT | 0x400),
    ("GFP_TRANSHUGE_LIGHT", _TRANSHUGE_LIGHT),
    ("GFP_HIGHUSER_MOVABLE", _HIGHUSER_MOVABLE),
    ("GFP_HIGHUSER", _KERNEL | 0x100000 | 0x2),
    ("GFP_USER", _KERNEL | 0x100000),
    ("GFP_KERNEL_ACCOUNT", _KERNEL | 0x400000),
    ("GFP_KERNEL", _KERNEL),
    ("GFP_NOFS", _RECLAIM | 0x40),
    ("GFP_ATOMIC", 0x20 | 0x200 | 0x800),  # 6.3+: 0x20 | 0x800 (see gfp_table())
    ("GFP_NOIO", _RECLAIM),
    ("GFP_NOWAIT", 0x800),
    ("GFP_DMA", 0x1),
    ("GFP_DMA32", 0x4),
    ("__GFP_RECLAIM", _RECLAIM),
)

# include/trace/events/migrate.h (MIGRATE_REASON): the names migrate_reason_names[] holds for
# each enum migrate_reason enumerator, used when the array is not in the dump's symbols.
MIGRATE_REASON_NAMES = {
    "MR_COMPACTION": "compaction", "MR_MEMORY_FAILURE": "memory_failure",
    "MR_MEMORY_HOTPLUG": "memory_hotplug", "MR_SYSCALL": "syscall_or_cpuset",
    "MR_MEMPOLICY_MBIND": "mempolicy_mbind", "MR_NUMA_MISPLACED": "numa_misplaced",
    "MR_CONTIG_RANGE": "contig_range", "MR_LONGTERM_PIN": "longterm_pin",
    "MR_DEMOTION": "demotion", "MR_DAMON": "damon",
}

# lib/stackdepot.c: the length of stack_pools[] where it is an array (DEPOT_POOLS_CAP, 6.3+), and
# the cap of stack_slabs[] before (STACK_ALLOC_SLABS_CAP); BTF has no length of a global array.
DEPOT_POOLS_CAP = 8192
