#!/usr/bin/env bash
# Regenerates layouts/linux-{5.10,6.1,6.12,7.2}.h from kernel DWARF.
# Needs the custom 6.1 kernel (tests/realkernel/build-kernel.sh) and Debian's
# 5.10, 6.12 and 7.2 cloud vmlinux (the -dbg packages, dpkg -x into the cache,
# as tests/realkernel/harness.py does); none is committed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${PINSPECT_CACHE:-$HOME/.cache/pinspect}
v61=${V61:-$cache/kernels/linux-6.1-cma/vmlinux}
v612=${V612:-$cache/kernels/linux-image-6.12.117+deb12-cloud-amd64/vmlinux}
v510=${V510:-$cache/kernels/linux-image-5.10.0-32-cloud-amd64/vmlinux}
v72=${V72:-$cache/kernels/linux-image-7.2.13+deb14-cloud-amd64/vmlinux}

common=('struct page' 'struct folio' 'struct pglist_data' 'struct zone' 'struct mem_section'
  'struct mem_section_usage' 'struct address_space' 'struct address_space_operations'
  'struct static_key_false' 'struct static_key_true' 'struct list_head' 'enum pageflags'
  'enum zone_type' 'enum zone_stat_item' 'enum node_stat_item' 'enum pageblock_bits'
  'enum node_states' 'enum lru_list' 'enum migrate_reason' 'enum zone_watermarks' 'nodemask_t'
  'pg_data_t' 'gfp_t' 'depot_stack_handle_t' 'atomic_long_t' 'pid_t' 's64' 'u64' 'u32' 'pgd_t'
  'union handle_parts' 'struct stack_record' 'struct uts_namespace'
  'struct per_cpu_pages' 'struct per_cpu_zonestat' 'struct per_cpu_nodestat' 'struct cpumask')
args61=(); for t in "${common[@]}" 'struct page_ext' 'struct page_ext_operations' \
  'struct page_owner' 'struct cma' 'enum compound_dtor_id'; do args61+=(-t "$t"); done
args612=(); for t in "${common[@]}" 'enum pagetype' 'refcount_t'; do args612+=(-t "$t"); done
# 5.10: no folios; struct per_cpu_pageset (pcp + vm_stat_diff) instead of per_cpu_zonestat; the
# Debian kernel has no STACKDEPOT, so the depot types come from mm-5.10-private.h
args510=(); for t in "${common[@]}" 'struct per_cpu_pageset' 'enum compound_dtor_id' \
  'struct mutex' 'refcount_t'; do
  case $t in 'struct folio'|'struct per_cpu_zonestat'|'union handle_parts'|'struct stack_record'|\
    'depot_stack_handle_t') ;; *) args510+=(-t "$t") ;; esac
done
args72=(); for t in "${common[@]}" 'enum pagetype' 'refcount_t' 'struct cma' 'struct cma_memrange' 'enum cma_flags'
  do args72+=(-t "$t"); done

python3 "$here/dwarf2c.py" -o "$here/../layouts/linux-6.1.h" --comment \
  "Linux 6.1 (Debian linux-source-6.1 6.1.192, x86_64 config with CMA + PAGE_OWNER, NODES_SHIFT=6: tests/realkernel/build-kernel.sh). enum migratetype and enum page_ext_flags are left to the variant headers." \
  "${args61[@]}" "$v61"

python3 "$here/dwarf2c.py" -o "$here/../layouts/linux-6.12.h" --comment \
  "Linux 6.12 (Debian linux-image-6.12.117+deb12-cloud-amd64 vmlinux DWARF, NODES_SHIFT=10, ZONE_DEVICE), changed to CONFIG_CMA=y and CONFIG_PAGE_EXTENSION=y: free_area.free_list has MIGRATE_TYPES=6 entries, struct zone gains cma_pages after present_early_pages, struct mem_section gains page_ext and pad (mem_section, zone and pglist_data laid out again by the C rules). enum migratetype and enum page_ext_flags are left to the variant headers; page_ext, page_owner and cma come from mm-6.12-private.h." \
  --array-len 'struct free_area:free_list:6' \
  --insert 'struct zone:present_early_pages:unsigned long:cma_pages' \
  --insert 'struct mem_section:usage:struct page_ext *:page_ext' \
  --insert 'struct mem_section:usage:unsigned long:pad' \
  "${args612[@]}" "$v612"

python3 "$here/dwarf2c.py" -o "$here/../layouts/linux-5.10.h" --comment \
  "Linux 5.10 (Debian linux-image-5.10.0-32-cloud-amd64 5.10.223 vmlinux DWARF, NODES_SHIFT=10, NR_CPUS=8192, ZONE_DEVICE), changed to CONFIG_CMA=y and CONFIG_PAGE_EXTENSION=y: free_area.free_list has MIGRATE_TYPES=6 entries, struct mem_section gains page_ext and pad (mem_section, zone and pglist_data laid out again by the C rules; 5.10's struct zone has no cma_pages yet). enum migratetype and enum page_ext_flags are left to the variant headers; page_ext, page_owner, cma and the stack depot (this kernel has no CMA, PAGE_OWNER or STACKDEPOT) come from mm-5.10-private.h." \
  --array-len 'struct free_area:free_list:6' \
  --insert 'struct mem_section:usage:struct page_ext *:page_ext' \
  --insert 'struct mem_section:usage:unsigned long:pad' \
  "${args510[@]}" "$v510"

python3 "$here/dwarf2c.py" -o "$here/../layouts/linux-7.2.h" --comment \
  "Linux 7.2 (Debian linux-image-7.2.13+deb14-cloud-amd64 vmlinux DWARF: CMA (multi-range struct cma) with CMA_SYSFS, STACKDEPOT with 64 frames a record, HUGETLB_PAGE_OPTIMIZE_VMEMMAP (zone.vmemmap_tails), NODES_SHIFT=10, ZONE_DEVICE), changed to CONFIG_PAGE_EXTENSION=y: struct mem_section gains page_ext and pad. enum migratetype and enum page_ext_flags are left to the variant headers; page_ext and page_owner (this kernel has no PAGE_OWNER) come from mm-7.2-private.h." \
  --insert 'struct mem_section:usage:struct page_ext *:page_ext' \
  --insert 'struct mem_section:usage:unsigned long:pad' \
  "${args72[@]}" "$v72"

# Processes, files, pipes, io_uring and LRU batches (the reverse map and the kernel holders):
# a header of their own, included by csrc/tasks.c only, so that the other units' DWARF stays
# as it was (every unit repeats the types of the headers it includes).
tasks=('struct task_struct' 'struct mm_struct' 'struct vm_area_struct' 'struct anon_vma'
  'struct anon_vma_chain' 'struct file' 'struct dentry' 'struct inode' 'struct qstr'
  'struct mount' 'struct vfsmount' 'struct path' 'struct files_struct' 'struct fdtable'
  'struct pipe_inode_info' 'struct pipe_buffer' 'struct pipe_buf_operations'
  'struct file_operations' 'struct io_ring_ctx' 'struct io_mapped_ubuf' 'struct bio_vec')
# 6.1+: VMAs in a maple tree (mm->mm_mt), LRU batches in struct cpu_fbatches; 5.10: mm->mmap
# list and mm_rb tree, struct lru_pvecs
mt=('struct maple_tree' 'struct maple_node' 'enum maple_type' 'struct cpu_fbatches')
tasks_header() {
  local out=$1 comment=$2 vmlinux=$3; shift 3
  local args=(); for t in "${tasks[@]}" "$@"; do args+=(-t "$t"); done
  python3 "$here/dwarf2c.py" -o "$here/../layouts/$out" --comment "$comment" "${args[@]}" "$vmlinux"
}
tasks_header tasks-5.10.h "Linux 5.10 (Debian 5.10.223 cloud vmlinux DWARF): tasks, mm, VMAs (mmap list + mm_rb), files, pipes, io_uring, lru_pvecs." "$v510" 'struct lru_pvecs'
tasks_header tasks-6.1.h "Linux 6.1 (the custom 6.1.192 build): tasks, mm, VMAs (maple tree), files, pipes, io_uring, cpu_fbatches." "$v61" "${mt[@]}"
tasks_header tasks-6.12.h "Linux 6.12 (Debian 6.12.117 cloud vmlinux DWARF): tasks, mm, VMAs (maple tree), files, pipes, io_uring (user_bufs), cpu_fbatches." "$v612" "${mt[@]}"
tasks_header tasks-7.2.h "Linux 7.2 (Debian 7.2.13 cloud vmlinux DWARF): tasks, mm, VMAs (maple tree), files, pipes, io_uring (6.13+ buf_table of io_rsrc_nodes), cpu_fbatches." "$v72" "${mt[@]}" 'struct io_rsrc_node' 'struct io_rsrc_data'
