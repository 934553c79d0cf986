#include "variant.h"

#define TASK_COMM_LEN 16
static bool need_page_owner(void) { return 1; }
static void init_page_owner(void) {}

struct static_key_false page_owner_inited;
static depot_stack_handle_t dummy_handle __attribute__((used));
static depot_stack_handle_t failure_handle __attribute__((used));
static depot_stack_handle_t early_handle __attribute__((used));

#if defined(LINUX_6_12) || defined(LINUX_7_2)
/* stacks counted for page_owner_stacks/show_stacks (6.9+) */
struct stack {
	struct stack_record *stack_record;
	struct stack *next;
};
static struct stack dummy_stack __attribute__((used));
static struct stack failure_stack __attribute__((used));
static struct stack *stack_list __attribute__((used));
#endif

struct page_ext_operations page_owner_ops = {
	.size = sizeof(struct page_owner),
	.need = need_page_owner,
	.init = init_page_owner,
#if defined(LINUX_6_12) || defined(LINUX_7_2)
	.need_shared_flags = 1,
#endif
};
