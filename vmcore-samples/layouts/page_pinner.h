/* page_ext flag bits and Android page_pinner structures, one block per
 * variant.  Field lists follow the reference notes (kernel-structures.md §1,
 * §2.1); written from those facts, no kernel code. */
#pragma once

#if defined(PINNER_RFC)
enum page_ext_flags {
	PAGE_EXT_OWNER = 0,
	PAGE_EXT_OWNER_ALLOCATED = 1,
	PAGE_EXT_PINNER = 2,
};
#elif defined(PINNER_A0)
enum page_ext_flags {
	PAGE_EXT_OWNER = 0,
	PAGE_EXT_OWNER_ALLOCATED = 1,
	PAGE_EXT_GET = 2,
};
#elif defined(PINNER_A2) || defined(PINNER_B) || defined(PINNER_C)
enum page_ext_flags {
	PAGE_EXT_OWNER = 0,
	PAGE_EXT_OWNER_ALLOCATED = 1,
	PAGE_EXT_GET = 2,
	PAGE_EXT_PINNER_MIGRATION_FAILED = 3,
};
#elif defined(PINNER_D)
enum page_ext_flags {
	PAGE_EXT_OWNER = 0,
	PAGE_EXT_OWNER_ALLOCATED = 1,
	PAGE_EXT_PINNER_MIGRATION_FAILED = 2,
};
#else
enum page_ext_flags {
	PAGE_EXT_OWNER = 0,
	PAGE_EXT_OWNER_ALLOCATED = 1,
};
#endif

#if defined(PINNER_A0) || defined(PINNER_A2) || defined(PINNER_B) || defined(PINNER_C)
struct page_pinner {
	depot_stack_handle_t handle;
	s64 ts_usec;
	atomic_t count;
};
#elif defined(PINNER_D)
struct page_pinner {
	depot_stack_handle_t handle;
	u64 ts_usec;
	atomic_t count;
};
#endif

#if defined(PINNER_A0)
#define LONTERM_PIN_BUCKETS 4096
struct captured_pinner {
	depot_stack_handle_t handle;
	s64 ts_usec;
	int page_mt;
	unsigned long page_flags;
	unsigned long pfn;
};
struct longterm_pinner {
	spinlock_t lock;
	unsigned int index;
	struct captured_pinner pinner[LONTERM_PIN_BUCKETS];
};
#elif defined(PINNER_A2)
#define LONGTERM_PIN_BUCKETS 4096
struct captured_pinner {
	depot_stack_handle_t handle;
	union {
		s64 ts_usec;
		s64 elapsed;
	};
	int page_mt;
	unsigned long page_flags;
	unsigned long pfn;
};
struct longterm_pinner {
	spinlock_t lock;
	unsigned int index;
	struct captured_pinner pinner[LONGTERM_PIN_BUCKETS];
};
#elif defined(PINNER_B)
#define LONGTERM_PIN_BUCKETS 4096
struct captured_pinner {
	depot_stack_handle_t handle;
	union {
		s64 ts_usec;
		s64 elapsed;
	};
	unsigned long pfn;
	int count;
	int mapcount;
	struct address_space *mapping;
	unsigned long flags;
};
struct longterm_pinner {
	spinlock_t lock;
	unsigned int index;
	struct captured_pinner pinner[LONGTERM_PIN_BUCKETS];
};
#elif defined(PINNER_C) || defined(PINNER_D)
#define PP_BUF_SIZE 4096
enum pp_state {
	PP_PUT = 0,
	PP_FREE = 1,
	PP_FAIL_DETECTED = 2,
};
struct captured_pinner {
	depot_stack_handle_t handle;
	union {
#if defined(PINNER_C)
		s64 ts_usec;
		s64 elapsed;
#else
		u64 ts_usec;
		u64 elapsed;
#endif
	};
	unsigned long pfn;
	int count;
	int mapcount;
	struct address_space *mapping;
	unsigned long flags;
	enum pp_state state;
};
struct page_pinner_buffer {
	spinlock_t lock;
#if defined(PINNER_C)
	unsigned int index;
	struct captured_pinner buffer[PP_BUF_SIZE];
#else
	unsigned long index;
	struct captured_pinner *buffer;
#endif
};
#endif
