"""Synthetic stacks: each key names a call chain, innermost frame first.
Return addresses are function start + a fixed offset inside the function."""

from __future__ import annotations

import zlib

_SYSCALL = ["do_syscall_64", "entry_SYSCALL_64_after_hwframe"]
_FAULT = [
    "__handle_mm_fault",
    "handle_mm_fault",
    "do_user_addr_fault",
    "exc_page_fault",
    "asm_exc_page_fault",
]
_ALLOC = ["post_alloc_hook", "get_page_from_freelist", "__alloc_pages"]
# A GPU driver pinning a shmem-backed buffer object from its submit ioctl.
_GPU_PIN = [
    "shmem_read_mapping_page_gfp",
    "drm_gem_get_pages",
    "drm_gem_shmem_get_pages_locked",
    "drm_gem_shmem_pin",
    "gpu_gem_pin_pages",
    "gpu_ioctl_submit",
    "drm_ioctl_kernel",
    "drm_ioctl",
    "__x64_sys_ioctl",
] + _SYSCALL

STACKS: dict[str, list[str]] = {
    "anon_fault": _ALLOC + ["__folio_alloc", "vma_alloc_folio", "do_anonymous_page"] + _FAULT,
    "thp_fault": _ALLOC
    + ["__folio_alloc", "vma_alloc_folio", "do_huge_pmd_anonymous_page"]
    + _FAULT,
    "shmem_fault": _ALLOC
    + ["shmem_alloc_folio", "shmem_alloc_and_acct_folio", "shmem_get_folio_gfp"]
    + _FAULT[1:],
    "gpu_shmem": _ALLOC
    + [
        "shmem_alloc_folio",
        "shmem_alloc_and_acct_folio",
        "shmem_get_folio_gfp",
    ]
    + _GPU_PIN,
    "file_read": _ALLOC
    + [
        "filemap_alloc_folio",
        "page_cache_ra_unbounded",
        "filemap_get_pages",
        "filemap_read",
        "ext4_file_read_iter",
        "vfs_read",
        "ksys_read",
    ]
    + _SYSCALL,
    "slab": _ALLOC + ["allocate_slab", "___slab_alloc", "kmem_cache_alloc"] + _SYSCALL,
    "slab_reclaim": _ALLOC
    + [
        "allocate_slab",
        "___slab_alloc",
        "kmem_cache_alloc",
        "filemap_read",
        "vfs_read",
        "ksys_read",
    ]
    + _SYSCALL,
    "zsmalloc": _ALLOC + ["zs_malloc", "zram_write_page", "zram_submit_bio"],
    "pgtable": _ALLOC + ["pte_alloc_one", "__pte_alloc", "do_anonymous_page"] + _FAULT,
    "driver": _ALLOC
    + [
        "dma_direct_alloc",
        "dma_alloc_attrs",
        "gpu_ioctl_submit",
        "drm_ioctl_kernel",
        "drm_ioctl",
        "__x64_sys_ioctl",
    ]
    + _SYSCALL,
    "depot": _ALLOC + ["kmem_cache_alloc", "start_kernel"],
    "balloon": _ALLOC
    + [
        "balloon_page_alloc",
        "fill_balloon",
        "update_balloon_size_func",
        "process_one_work",
        "worker_thread",
        "kthread",
        "ret_from_fork",
    ],
    "cma_alloc": [
        "alloc_contig_range",
        "cma_alloc",
        "dma_alloc_contiguous",
        "dma_direct_alloc",
        "dma_alloc_attrs",
        "cma_heap_allocate",
        "dma_heap_ioctl",
        "__x64_sys_ioctl",
    ]
    + _SYSCALL,
    # GUP stacks (page_pinner A*/B/C record them at pin time)
    "pin_odirect": [
        "__set_page_pinner",
        "try_grab_folio",
        "follow_page_pte",
        "__get_user_pages",
        "__gup_longterm_locked",
        "internal_get_user_pages_fast",
        "pin_user_pages_fast",
        "filemap_read",
        "vfs_read",
        "ksys_read",
    ]
    + _SYSCALL,
    "pin_io_uring": [
        "__set_page_pinner",
        "try_grab_folio",
        "follow_page_pte",
        "__get_user_pages",
        "__gup_longterm_locked",
        "pin_user_pages_fast",
        "io_pin_pages",
        "io_sqe_buffer_register",
        "__io_uring_register",
    ]
    + _SYSCALL,
    "pin_rdma": [
        "__set_page_pinner",
        "try_grab_folio",
        "follow_page_pte",
        "__get_user_pages",
        "__gup_longterm_locked",
        "pin_user_pages_remote",
        "rdma_umem_get",
        "__x64_sys_ioctl",
    ]
    + _SYSCALL,
    "pin_vb2": [
        "__set_page_pinner",
        "try_grab_folio",
        "follow_page_pte",
        "__get_user_pages",
        "__gup_longterm_locked",
        "pin_user_pages_fast",
        "vb2_dma_sg_get_userptr",
        "vb2_qbuf",
        "v4l_qbuf",
        "__x64_sys_ioctl",
    ]
    + _SYSCALL,
    "gup_get": [
        "__set_page_pinner",
        "try_grab_folio",
        "follow_page_pte",
        "__get_user_pages",
        "internal_get_user_pages_fast",
        "get_user_pages_fast",
        "gpu_ioctl_submit",
        "drm_ioctl",
        "__x64_sys_ioctl",
    ]
    + _SYSCALL,
    "gpu_get": _GPU_PIN,
    # release of long-term pins (lt_pinner records carry the unpin stack)
    "pin_io_uring_lt": ["__reset_page_pinner", "unpin_user_pages", "__io_uring_register"]
    + _SYSCALL,
    "pin_vb2_lt": [
        "__reset_page_pinner",
        "unpin_user_pages",
        "vb2_qbuf",
        "v4l_qbuf",
        "__x64_sys_ioctl",
    ]
    + _SYSCALL,
    "pin_rdma_lt": ["__reset_page_pinner", "unpin_user_pages", "__x64_sys_ioctl"] + _SYSCALL,
    # page_pinner failure / put / free records
    "fail_detect": [
        "__page_pinner_failure_detect",
        "__alloc_contig_migrate_range",
        "alloc_contig_range",
        "cma_alloc",
        "dma_alloc_contiguous",
        "dma_direct_alloc",
        "dma_alloc_attrs",
        "cma_heap_allocate",
        "dma_heap_ioctl",
        "__x64_sys_ioctl",
    ]
    + _SYSCALL,
    "gpu_put": [
        "__page_pinner_put_page",
        "put_page",
        "release_pages",
        "drm_gem_put_pages",
        "gpu_gem_unpin_pages",
        "drm_ioctl_kernel",
        "drm_ioctl",
        "__x64_sys_ioctl",
    ]
    + _SYSCALL,
    "lru_drain": [
        "__page_pinner_put_page",
        "folio_put",
        "release_pages",
        "compact_zone",
        "kcompactd_do_work",
        "kcompactd",
        "kthread",
        "ret_from_fork",
    ],
    "free_page": [
        "__free_page_pinner",
        "free_pages_prepare",
        "free_unref_page",
        "release_pages",
        "drm_gem_put_pages",
        "gpu_gem_unpin_pages",
        "drm_ioctl",
        "__x64_sys_ioctl",
    ]
    + _SYSCALL,
    "free_anon": ["free_pages_prepare", "free_unref_page", "release_pages", "__x64_sys_ioctl"]
    + _SYSCALL,
    # static handles registered at init
    "early": ["start_kernel"],
    "failure": ["memblock_alloc_try_nid", "start_kernel"],
    "dummy": ["kmem_cache_alloc", "start_kernel"],
}


def frame_offset(func: str, size: int, depth: int) -> int:
    """A deterministic return-address offset inside func."""
    h = zlib.crc32(f"{func}/{depth}".encode())
    return 5 + h % max(1, size - 6)
