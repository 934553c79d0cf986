/* Layouts private to mm/ in Linux 6.12 (CONFIG_PAGE_EXTENSION, PAGE_OWNER and
 * CMA without CMA_DEBUGFS/CMA_SYSFS), written from the field lists of the
 * reference notes (kernel-structures.md §2.2, §3.1, §6.1); natural C layout. */
#pragma once

struct page_ext {
	unsigned long flags;
};

struct page_ext_operations {
	size_t offset;
	size_t size;
	bool (*need)(void);
	void (*init)(void);
	bool need_shared_flags;
};

struct page_owner {
	unsigned short order;
	short last_migrate_reason;
	gfp_t gfp_mask;
	depot_stack_handle_t handle;
	depot_stack_handle_t free_handle;
	u64 ts_nsec;
	u64 free_ts_nsec;
	char comm[16];
	pid_t pid;
	pid_t tgid;
	pid_t free_pid;
	pid_t free_tgid;
};

#define CMA_MAX_NAME 64
struct cma {
	unsigned long base_pfn;
	unsigned long count;
	unsigned long *bitmap;
	unsigned int order_per_bit;
	spinlock_t lock;
	char name[CMA_MAX_NAME];
	bool reserve_pages_on_error;
};
