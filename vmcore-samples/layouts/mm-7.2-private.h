/* Layouts of Linux 7.2 (7.2.13, Debian linux-source-7.2 7.2.13-1) that
 * Debian's sid cloud kernel does not build (no CONFIG_PAGE_EXTENSION or
 * PAGE_OWNER), written from that source tree; natural C layout:
 *   include/linux/page_ext.h (page_ext, page_ext_operations with
 *     need_shared_flags)
 *   mm/page_owner.c (page_owner with free_pid/free_tgid, as in 6.12) */
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
