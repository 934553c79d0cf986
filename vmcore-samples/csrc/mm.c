/* Core memory-management globals of the synthetic kernel.  Values are written
 * into the dump by the generator; initialisers here only give defaults. */
#include "variant.h"

#if defined(LINUX_5_10) || defined(LINUX_6_12) || defined(LINUX_7_2)
#define MAX_NUMNODES 1024
#define NR_CPUS 8192
#else
#define MAX_NUMNODES 64
#define NR_CPUS 64
#endif

pg_data_t *node_data[MAX_NUMNODES];
nodemask_t node_states[NR_NODE_STATES];
struct mem_section **mem_section;
unsigned long __highest_present_section_nr;

unsigned long page_offset_base = 0xffff888000000000UL;
unsigned long vmalloc_base = 0xffffc90000000000UL;
unsigned long vmemmap_base = 0xffffea0000000000UL;
unsigned long phys_base;
unsigned int pgdir_shift = 39;
unsigned int ptrs_per_p4d = 1;

unsigned long max_pfn, min_low_pfn, max_low_pfn;
atomic_long_t _totalram_pages;
unsigned long totalreserve_pages;

/* the kernel's top-level page table; SYMBOL(swapper_pg_dir) points here */
pgd_t init_top_pgt[512] __attribute__((aligned(4096), section(".data..page_aligned")));

struct list_head modules = { &modules, &modules };

struct uts_namespace init_uts_ns;

/* per-CPU areas: per_cpu_ptr(p, cpu) = p + __per_cpu_offset[cpu] */
unsigned long __per_cpu_offset[NR_CPUS];
unsigned int nr_cpu_ids;
struct cpumask __cpu_possible_mask;
struct cpumask __cpu_online_mask;
struct cpumask __cpu_present_mask;
struct cpumask __cpu_active_mask;

const char *const migratetype_names[MIGRATE_TYPES] = {
	[MIGRATE_UNMOVABLE] = "Unmovable",
	[MIGRATE_MOVABLE] = "Movable",
	[MIGRATE_RECLAIMABLE] = "Reclaimable",
	[MIGRATE_HIGHATOMIC] = "HighAtomic",
	[MIGRATE_CMA] = "CMA",
	[MIGRATE_ISOLATE] = "Isolate",
};

const char zone_name_dma[] = "DMA";
const char zone_name_dma32[] = "DMA32";
const char zone_name_normal[] = "Normal";
const char zone_name_movable[] = "Movable";
const char zone_name_device[] = "Device";

/* page cache operations the sample's address_space objects point to */
const struct address_space_operations shmem_aops;
const struct address_space_operations ext4_aops;
const struct address_space_operations anon_aops;

/* stand-in for zsmalloc's struct movable_operations (only its address matters) */
const void *const zsmalloc_mops[3];
/* stand-in for the balloon's movable_operations (before 6.18: its mapping) */
const void *const balloon_mops[3];

/* keep the enums that only macros use in the DWARF */
enum migratetype __dwarf_migratetype;
enum page_ext_flags __dwarf_page_ext_flags;
enum pageflags __dwarf_pageflags;
enum zone_type __dwarf_zone_type;
enum zone_stat_item __dwarf_zone_stat_item;
enum node_stat_item __dwarf_node_stat_item;
enum pageblock_bits __dwarf_pageblock_bits;
enum node_states __dwarf_node_states;
enum migrate_reason __dwarf_migrate_reason;

/* section_mem_map flag bits (an anonymous enum in mmzone.h) */
enum {
	SECTION_MARKED_PRESENT_BIT,
	SECTION_HAS_MEM_MAP_BIT,
	SECTION_IS_ONLINE_BIT,
	SECTION_IS_EARLY_BIT,
#if defined(LINUX_6_12) || defined(LINUX_7_2)
	SECTION_TAINT_ZONE_DEVICE_BIT,
#endif
	SECTION_MAP_LAST_BIT,
};
int __dwarf_section_bits = SECTION_MAP_LAST_BIT;
#if defined(LINUX_6_12) || defined(LINUX_7_2)
enum pagetype __dwarf_pagetype;
#endif
#ifdef LINUX_5_10
enum compound_dtor_id __dwarf_compound_dtor_id;
#endif
