#include "variant.h"

#if defined(LINUX_5_10)
/* 5.10's stack_table is a static array of STACK_HASH_SIZE (1 << 20) buckets,
 * 8 MiB of .bss; the sample keeps 512 of them so that the image stays small
 * (nothing reads the hash table) */
#define STACK_ALLOC_MAX_SLABS 8192
static void *stack_slabs[STACK_ALLOC_MAX_SLABS] __attribute__((used));
static int depot_index __attribute__((used));
static int next_slab_inited __attribute__((used));
static size_t depot_offset __attribute__((used));
static struct stack_record *stack_table[512] __attribute__((used));
#elif defined(LINUX_6_1)
#define STACK_ALLOC_MAX_SLABS 8192
static void *stack_slabs[STACK_ALLOC_MAX_SLABS] __attribute__((used));
static int depot_index __attribute__((used));
static int next_slab_inited __attribute__((used));
static size_t depot_offset __attribute__((used));
static struct stack_record **stack_table __attribute__((used));
static unsigned int stack_hash_mask __attribute__((used));
#elif defined(LINUX_7_2)
/* 7.2: the pool array is kvcalloc'd at init, stack_max_pools entries */
static unsigned int stack_max_pools __attribute__((used));
static void **stack_pools __attribute__((used));
static int pools_num __attribute__((used));
static size_t pool_offset __attribute__((used));
static struct list_head *stack_table __attribute__((used));
static unsigned int stack_hash_mask __attribute__((used));
#else
#define DEPOT_MAX_POOLS 8192
static void *stack_pools[DEPOT_MAX_POOLS] __attribute__((used));
static int pools_num __attribute__((used));
static size_t pool_offset __attribute__((used));
static struct list_head *stack_table __attribute__((used));
static unsigned int stack_hash_mask __attribute__((used));
#endif
