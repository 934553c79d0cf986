/* Functions whose addresses appear in the synthetic stacks.  Each body is an
 * opaque block of int3 bytes so that its symbol size is exactly as listed. */
#define FN(name, size)                                                        \
	__attribute__((naked, used, noinline)) void name(void)                \
	{                                                                     \
		__asm__ volatile(".skip " #size ", 0xcc");                    \
	}
#include "stackfuncs.h"
