/* Processes, their files, pipes and io_uring rings, and the per-CPU LRU batches
 * (kernel/fork.c, fs/pipe.c, io_uring/io_uring.c, mm/swap.c).  This unit has its own
 * layout header (layouts/tasks-*.h, from the same kernels' DWARF): the types of the other
 * units' headers are not repeated in every unit's DWARF. */
#include <stddef.h>

#if defined(LINUX_5_10)
#include "../layouts/tasks-5.10.h"
#elif defined(LINUX_6_1)
#include "../layouts/tasks-6.1.h"
#elif defined(LINUX_6_12)
#include "../layouts/tasks-6.12.h"
#elif defined(LINUX_7_2)
#include "../layouts/tasks-7.2.h"
#else
#error "no kernel version"
#endif

/* pid 0, the head of the task list (init_task.tasks) */
struct task_struct init_task __attribute__((aligned(64)));

/* file operations the sample's open files point to (only their addresses matter) */
const struct file_operations pipefifo_fops;
const struct file_operations io_uring_fops;
const struct file_operations shmem_file_operations;
const struct file_operations ext4_file_operations;
const struct pipe_buf_operations user_page_pipe_buf_ops;
const struct pipe_buf_operations page_cache_pipe_buf_ops;

/* static per-CPU variables: linked into .data..percpu (see kernel.ld), at a per-CPU offset
 * that __per_cpu_offset[cpu] turns into the CPU's copy */
#ifdef LINUX_5_10
__attribute__((section(".data..percpu"))) struct lru_pvecs lru_pvecs;
#else
__attribute__((section(".data..percpu"))) struct cpu_fbatches cpu_fbatches;
/* a pointer keeps the maple node types in this unit's DWARF */
struct maple_node *__dwarf_maple_node;
enum maple_type __dwarf_maple_type;
#endif

/* include/linux/types.h: drgn's follow_phys() returns one */
typedef u64 phys_addr_t;
phys_addr_t __dwarf_phys_addr_t;

/* types only reached through pointers of the objects the generator writes */
struct anon_vma_chain *__dwarf_anon_vma_chain;
struct mount *__dwarf_mount;
struct pipe_inode_info *__dwarf_pipe_inode_info;
struct io_ring_ctx *__dwarf_io_ring_ctx;
struct io_mapped_ubuf *__dwarf_io_mapped_ubuf;
