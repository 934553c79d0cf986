"""The kernel globals pinspect reads, declared once: name, C type, and what for.

Every read of a global goes through :func:`variable`, so that a type source without
variables (BTF has none but per-CPU ones) can supply the same list: the address from the
symbol table, the type from this declaration. Globals that drgn's Linux kernel support makes
up itself (``PAGE_SHIFT``, ``VMCOREINFO``, ...) are declared too, with ``synthetic`` set.
The globals that the drgn helpers pinspect calls read themselves (``prog["node_states"]``)
are declared with ``helper`` set: the BTF source serves them from this list as well.

A declared C type must be the kernel's (the real-kernel tests compare each with DWARF's on
every kernel of the tier); an array's length may be left out (``[]``), since BTF source reads
only the elements it is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from drgn import Object, ObjectNotFoundError, Program

from pinspect.errors import DebugInfoError


@dataclass(frozen=True)
class KernelVariable:
    """One global of the kernel: its name, its C type, and why pinspect reads it."""

    name: str
    c_type: str
    purpose: str
    synthetic: bool = False  # provided by drgn's kernel object finder, not the kernel image
    helper: bool = False  # read by a drgn helper that pinspect calls, not through variable()
    # Where the type changed between kernels: (C type, a symbol that only the kernels with
    # that type have), tried in order before c_type.
    variants: tuple[tuple[str, str], ...] = ()


_DECLARED = (
    # drgn's own objects for a Linux kernel program
    KernelVariable("PAGE_SIZE", "unsigned long", "page size", synthetic=True),
    KernelVariable("PAGE_SHIFT", "int", "page size as a shift", synthetic=True),
    KernelVariable("SECTION_SIZE_BITS", "int", "pfns per SPARSEMEM section", synthetic=True),
    KernelVariable("SECTIONS_PER_ROOT", "unsigned long", "sections per mem_section root",
                   synthetic=True),
    KernelVariable("UTS_RELEASE", "const char []", "kernel release", synthetic=True),
    KernelVariable("VMCOREINFO", "const char []", "the kernel's VMCOREINFO note",
                   synthetic=True),
    KernelVariable("vmemmap", "struct page * const", "base of the struct page array "
                   "(SPARSEMEM_VMEMMAP)", synthetic=True),
    # memory model, nodes, zones
    KernelVariable("mem_section", "struct mem_section **",
                   "SPARSEMEM sections: page_ext tables and pageblock bitmaps"),
    KernelVariable("node_data", "struct pglist_data *[]", "number of nodes in page->flags"),
    KernelVariable("init_mm", "struct mm_struct", "kernel page tables (ELF dump mapping)"),
    KernelVariable("pageblock_order", "unsigned int",
                   "pageblock size where it is a variable (HUGETLB_PAGE_SIZE_VARIABLE)"),
    # page_ext and its clients
    KernelVariable("page_ext_size", "unsigned long", "size of one page_ext entry"),
    KernelVariable("page_owner_ops", "struct page_ext_operations",
                   "page_owner's offset in page_ext"),
    KernelVariable("page_owner_inited", "struct static_key_false",
                   "page_owner enabled at boot"),
    KernelVariable("page_pinner_ops", "struct page_ext_operations",
                   "page_pinner's offset in page_ext (Android)"),
    KernelVariable("page_pinner_inited", "struct static_key_false",
                   "page_pinner enabled at boot (Android)"),
    KernelVariable("pp_buffer", "struct page_pinner_buffer",
                   "page_pinner ring buffer (variant D)"),
    KernelVariable("acf_buffer", "struct page_pinner_buffer",
                   "page_pinner ring buffer of failures (variant C)"),
    KernelVariable("lt_buffer", "struct page_pinner_buffer",
                   "page_pinner ring buffer of long-term pins (variant C)"),
    KernelVariable("acf_pinner", "struct captured_pinner_buffer",
                   "page_pinner ring buffer of failures (variants A1, A2, B)"),
    KernelVariable("lt_pinner", "struct captured_pinner_buffer",
                   "page_pinner ring buffer of long-term pins (variants A0 to B)"),
    KernelVariable("pp_buf_size", "unsigned long",
                   "records in page_pinner's pp_buffer (variant D)"),
    KernelVariable("failure_tracking", "struct static_key_true",
                   "page_pinner records migration failures (variants A1 to D)"),
    KernelVariable("migratetype_names", "const char * const []",
                   "names of enum migratetype as page_pinner's debugfs prints them"),
    KernelVariable("pageflag_names", "const struct trace_print_flags []",
                   "the kernel's own page flag names, as %pGp prints them"),
    KernelVariable("pff", "const struct page_flags_fields []",
                   "the page->flags fields %pGp prints (5.14+: node=, zone=, ...)"),
    KernelVariable("__per_cpu_offset", "unsigned long []",
                   "NR_CPUS (the width of page->flags' last_cpupid field)"),
    # stack depot
    KernelVariable("stack_pools", "void *[]", "stack depot pools (6.3+)",
                   # commit "stackdepot: make max number of pools boot-time configurable"
                   # allocates the array at boot
                   variants=(("void **", "stack_max_pools"),)),
    KernelVariable("stack_slabs", "void *[]", "stack depot slabs (up to 6.2)"),
    KernelVariable("stack_max_pools", "unsigned int",
                   "entries of the stack_pools array (7.x, where it is allocated at boot)"),
    KernelVariable("pools_num", "int", "stack depot pools in use (6.4+)"),
    KernelVariable("pool_index", "int", "the stack depot's current pool (6.3)"),
    KernelVariable("depot_index", "int", "the stack depot's current slab (up to 6.2)"),
    KernelVariable("pool_offset", "size_t", "bytes used in the newest stack depot pool (6.3+)"),
    KernelVariable("depot_offset", "size_t",
                   "bytes used in the newest stack depot slab (up to 6.2)"),
    # symbols of module text, page_owner's names
    KernelVariable("modules", "struct list_head", "loaded modules (their kallsyms name frames)"),
    KernelVariable("gfpflag_names", "const struct trace_print_flags []",
                   "the kernel's own gfp flag names, as %pGg prints them"),
    KernelVariable("migrate_reason_names", "const char *[]",
                   "names of enum migrate_reason (page_owner's last migrate reason)"),
    # CMA
    KernelVariable("cma_areas", "struct cma []", "CMA areas"),
    KernelVariable("cma_area_count", "unsigned int", "number of CMA areas"),
    # reverse map and kernel holders (pinspect.rmap, pinspect.holders)
    KernelVariable("init_task", "struct task_struct", "the task list (processes by mm)"),
    KernelVariable("cpu_fbatches", "struct cpu_fbatches",
                   "per-CPU LRU folio batches (6.1+; lru_pvecs before)"),
    KernelVariable("lru_pvecs", "struct lru_pvecs", "per-CPU LRU page vectors (5.8 to 6.0)"),
    KernelVariable("lru_rotate", "struct lru_rotate", "per-CPU LRU rotate batch (5.8 to 6.2)"),
    KernelVariable("mlock_fbatch", "struct mlock_fbatch", "per-CPU mlock folio batch (6.2+)"),
    KernelVariable("mlock_pvec", "struct mlock_pvec", "per-CPU mlock page vector (6.1)"),
    KernelVariable("__per_cpu_offset", "unsigned long []", "per-CPU areas (per_cpu_ptr)",
                   helper=True),
    KernelVariable("__cpu_possible_mask", "struct cpumask", "possible CPUs",
                   helper=True),
    KernelVariable("nr_cpu_ids", "unsigned int", "bound of CPU ids", helper=True),
    # read by drgn's helpers (for_each_online_pgdat, pfn_to_section, for_each_valid_page_range,
    # page_to_pfn, follow_phys) and by drgn's own Linux support
    KernelVariable("node_states", "nodemask_t []", "online nodes (for_each_online_node)",
                   helper=True),
    KernelVariable("nr_node_ids", "unsigned int", "bound of node ids (for_each_node_mask)",
                   helper=True),
    KernelVariable("contig_page_data", "struct pglist_data", "the only node (!CONFIG_NUMA)",
                   helper=True),
    KernelVariable("__highest_present_section_nr", "unsigned long",
                   "last present SPARSEMEM section", helper=True),
    KernelVariable("mem_map", "struct page *", "FLATMEM struct page array", helper=True),
    KernelVariable("max_mapnr", "unsigned long", "FLATMEM pages", helper=True),
    KernelVariable("memblock", "struct memblock", "FLATMEM memory ranges", helper=True),
)

VARIABLES: dict[str, KernelVariable] = {v.name: v for v in _DECLARED}


def declared(name: str) -> KernelVariable | None:
    """The declaration of the kernel global *name*, or None if pinspect does not read it."""
    return VARIABLES.get(name)


def c_type(decl: KernelVariable, has_symbol: Callable[[str], bool]) -> str:
    """The C type of *decl* in a kernel whose symbols *has_symbol* tells."""
    for variant, symbol in decl.variants:
        if has_symbol(symbol):
            return variant
    return decl.c_type


def variable(prog: Program, name: str) -> Object | None:
    """The kernel global *name* (declared in :data:`VARIABLES`), or None if this kernel
    has no such global."""
    if name not in VARIABLES:
        raise KeyError(f"{name!r} is not declared in pinspect.variables")
    try:
        return prog[name]
    except (KeyError, ObjectNotFoundError):
        return None


def required_variable(prog: Program, name: str) -> Object:
    """The kernel global *name*, which every kernel pinspect reads has."""
    found = variable(prog, name)
    if found is None:
        decl = VARIABLES[name]
        raise DebugInfoError(f"cannot find the kernel global {name!r} ({decl.purpose})",
                             "the debug info looks incomplete; use the vmlinux with full DWARF")
    return found


def has_variable(prog: Program, name: str) -> bool:
    """Whether this kernel has the global *name*."""
    return variable(prog, name) is not None
