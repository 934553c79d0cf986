/* Android page_pinner globals, per variant (no code, only the data a dump
 * holds). */
#include "variant.h"

#if defined(PINNER_RFC) || defined(PINNER_A0) || defined(PINNER_A2) || \
	defined(PINNER_B) || defined(PINNER_C) || defined(PINNER_D)
static bool page_pinner_enabled __attribute__((used));
struct static_key_false page_pinner_inited;
static bool need_page_pinner(void) { return 1; }
static void init_page_pinner(void) {}
#endif

#if defined(PINNER_RFC)
struct page_ext_operations page_pinner_ops = {
	.need = need_page_pinner,
	.init = init_page_pinner,
};
#elif defined(PINNER_A0) || defined(PINNER_A2) || defined(PINNER_B) || \
	defined(PINNER_C) || defined(PINNER_D)
struct page_ext_operations page_pinner_ops = {
	.size = sizeof(struct page_pinner),
	.need = need_page_pinner,
	.init = init_page_pinner,
};
static depot_stack_handle_t failure_handle __attribute__((used));
#endif

#if defined(PINNER_A2) || defined(PINNER_B) || defined(PINNER_C) || defined(PINNER_D)
struct static_key_true failure_tracking;
#endif

#if defined(PINNER_A0)
static struct longterm_pinner lt_pinner __attribute__((used));
static s64 threshold_usec __attribute__((used)) = 300000;
#elif defined(PINNER_A2) || defined(PINNER_B)
static struct longterm_pinner lt_pinner __attribute__((used));
static struct longterm_pinner acf_pinner __attribute__((used));
static s64 threshold_usec __attribute__((used)) = 300000;
#elif defined(PINNER_C)
static struct page_pinner_buffer lt_buffer __attribute__((used));
static struct page_pinner_buffer acf_buffer __attribute__((used));
static s64 threshold_usec __attribute__((used)) = 300000;
#elif defined(PINNER_D)
static unsigned long pp_buf_size __attribute__((used)) = 4096;
static struct page_pinner_buffer pp_buffer __attribute__((used));
#endif
