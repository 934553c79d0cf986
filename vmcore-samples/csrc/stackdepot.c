#include "variant.h"

#if defined(LINUX_6_1)
#define STACK_ALLOC_MAX_SLABS 8192
static void *stack_slabs[STACK_ALLOC_MAX_SLABS] __attribute__((used));
static int depot_index __attribute__((used));
static int next_slab_inited __attribute__((used));
static size_t depot_offset __attribute__((used));
static struct stack_record **stack_table __attribute__((used));
static unsigned int stack_hash_mask __attribute__((used));
#else
#define DEPOT_MAX_POOLS 8192
static void *stack_pools[DEPOT_MAX_POOLS] __attribute__((used));
static int pools_num __attribute__((used));
static size_t pool_offset __attribute__((used));
static struct list_head *stack_table __attribute__((used));
static unsigned int stack_hash_mask __attribute__((used));
#endif
