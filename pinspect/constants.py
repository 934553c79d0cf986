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
