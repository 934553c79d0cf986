#include "variant.h"

#define TASK_COMM_LEN 16
static bool need_page_owner(void) { return 1; }
static void init_page_owner(void) {}

struct static_key_false page_owner_inited;
static depot_stack_handle_t dummy_handle __attribute__((used));
static depot_stack_handle_t failure_handle __attribute__((used));
static depot_stack_handle_t early_handle __attribute__((used));

struct page_ext_operations page_owner_ops = {
	.size = sizeof(struct page_owner),
	.need = need_page_owner,
	.init = init_page_owner,
#ifdef LINUX_6_12
	.need_shared_flags = 1,
#endif
};
