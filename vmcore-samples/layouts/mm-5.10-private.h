/* Layouts of Linux 5.10 (5.10.223, Debian linux-source-5.10 5.10.223-1) that
 * Debian's bullseye cloud kernel does not build (no CONFIG_PAGE_EXTENSION,
 * PAGE_OWNER, CMA or STACKDEPOT), written from that source tree with
 * CONFIG_CMA_DEBUGFS off; natural C layout:
 *   include/linux/stackdepot.h, lib/stackdepot.c (handle_parts, stack_record)
 *   include/linux/page_ext.h (page_ext, page_ext_operations: no
 *     need_shared_flags, every entry starts with the flags word)
 *   mm/page_owner.c (page_owner: no ts_nsec, pid, tgid or comm yet)
 *   mm/cma.h (cma: single range, mutex, char name[CMA_MAX_NAME]) */
#pragma once

typedef u32 depot_stack_handle_t;

/* lib/stackdepot.c: STACK_ALLOC_ORDER 2, STACK_ALLOC_ALIGN 4, no extra bits */
#define STACK_ALLOC_NULL_PROTECTION_BITS 1
#define STACK_ALLOC_OFFSET_BITS (2 + 12 - 4)
#define STACK_ALLOC_INDEX_BITS (32 - STACK_ALLOC_NULL_PROTECTION_BITS - STACK_ALLOC_OFFSET_BITS)

union handle_parts {
	depot_stack_handle_t handle;
	struct {
		u32 slabindex : STACK_ALLOC_INDEX_BITS;
		u32 offset : STACK_ALLOC_OFFSET_BITS;
		u32 valid : STACK_ALLOC_NULL_PROTECTION_BITS;
	};
};

struct stack_record {
	struct stack_record *next;
	u32 hash;
	u32 size;
	union handle_parts handle;
	unsigned long entries[1];
};

struct page_ext {
	unsigned long flags;
};

struct page_ext_operations {
	size_t offset;
	size_t size;
	bool (*need)(void);
	void (*init)(void);
};

struct page_owner {
	unsigned short order;
	short last_migrate_reason;
	gfp_t gfp_mask;
	depot_stack_handle_t handle;
	depot_stack_handle_t free_handle;
};

#define CMA_MAX_NAME 64
struct cma {
	unsigned long base_pfn;
	unsigned long count;
	unsigned long *bitmap;
	unsigned int order_per_bit;
	struct mutex lock;
	char name[CMA_MAX_NAME];
};
