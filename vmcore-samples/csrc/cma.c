#include "variant.h"

#define MAX_CMA_AREAS 20
struct cma cma_areas[MAX_CMA_AREAS];
unsigned int cma_area_count;
unsigned long totalcma_pages;
struct cma *dma_contiguous_default_area;
