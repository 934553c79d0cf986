#include "variant.h"

unsigned long page_ext_size = sizeof(struct page_ext);
static unsigned long total_usage __attribute__((used));
bool early_page_ext;
