/* Selects the layout headers of one sample variant.  Built with one of
 * -DLINUX_5_10 / -DLINUX_6_1 / -DLINUX_6_12 / -DLINUX_7_2 and optionally -DACK_MIGRATETYPES and
 * -DPINNER_RFC / _A0 / _A2 / _B / _C / _D (see build.py). */
#pragma once
#include <stddef.h>

#if defined(LINUX_5_10)
#include "../layouts/linux-5.10.h"
#include "../layouts/mm-5.10-private.h"
#elif defined(LINUX_6_1)
#include "../layouts/linux-6.1.h"
#elif defined(LINUX_6_12)
#include "../layouts/linux-6.12.h"
#include "../layouts/mm-6.12-private.h"
#elif defined(LINUX_7_2)
#include "../layouts/linux-7.2.h"
#include "../layouts/mm-7.2-private.h"
#else
#error "no kernel version"
#endif

/* enum migratetype: mainline order, or the ACK order with MIGRATE_CMA among
 * the per-cpu list types. */
#ifdef ACK_MIGRATETYPES
enum migratetype {
	MIGRATE_UNMOVABLE = 0,
	MIGRATE_MOVABLE = 1,
	MIGRATE_RECLAIMABLE = 2,
	MIGRATE_CMA = 3,
	MIGRATE_PCPTYPES = 4,
	MIGRATE_HIGHATOMIC = 4,
	MIGRATE_ISOLATE = 5,
	MIGRATE_TYPES = 6,
};
#else
enum migratetype {
	MIGRATE_UNMOVABLE = 0,
	MIGRATE_MOVABLE = 1,
	MIGRATE_RECLAIMABLE = 2,
	MIGRATE_PCPTYPES = 3,
	MIGRATE_HIGHATOMIC = 3,
	MIGRATE_CMA = 4,
#ifdef LINUX_7_2
	__MIGRATE_TYPE_END = 4,
#endif
	MIGRATE_ISOLATE = 5,
	MIGRATE_TYPES = 6,
};
#endif

#include "../layouts/page_pinner.h"
