"""gfp_t: the bits used here (5.10 to 7.2 agree on each of them), the mask
each synthetic allocation stack used, and the kernel's %pGg format."""

from __future__ import annotations

G_HIGHMEM, G_DMA32, G_MOVABLE, G_RECLAIMABLE = 0x02, 0x04, 0x08, 0x10
G_IO, G_FS, G_ZERO = 0x40, 0x80, 0x100
G_DIRECT_RECLAIM, G_KSWAPD_RECLAIM = 0x400, 0x800
G_NOWARN, G_NORETRY, G_COMP, G_NOMEMALLOC = 0x2000, 0x10000, 0x40000, 0x80000
G_HARDWALL, G_ACCOUNT = 0x100000, 0x400000
G_RECLAIM = G_DIRECT_RECLAIM | G_KSWAPD_RECLAIM
GFP_KERNEL = G_RECLAIM | G_IO | G_FS
GFP_HIGHUSER_MOVABLE = GFP_KERNEL | G_HARDWALL | G_HIGHMEM | G_MOVABLE
GFP_TRANSHUGE = (
    (GFP_HIGHUSER_MOVABLE | G_COMP | G_NOMEMALLOC | G_NOWARN) & ~G_RECLAIM
) | G_DIRECT_RECLAIM
# allocation stack key (stacks.STACKS) -> gfp mask; others are anon faults
GFP_BY_STACK = {
    "anon_fault": GFP_HIGHUSER_MOVABLE | G_ZERO,
    "thp_fault": GFP_TRANSHUGE,
    "shmem_fault": GFP_HIGHUSER_MOVABLE,
    "gpu_shmem": GFP_HIGHUSER_MOVABLE,
    "file_read": GFP_HIGHUSER_MOVABLE,
    "slab": GFP_KERNEL | G_COMP | G_ACCOUNT,
    "slab_reclaim": GFP_KERNEL | G_COMP | G_RECLAIMABLE,
    "pgtable": GFP_KERNEL | G_ZERO | G_ACCOUNT,
    "driver": GFP_KERNEL | G_DMA32,
    "depot": GFP_KERNEL | G_NOWARN,
    "cma_alloc": GFP_KERNEL,
    "balloon": GFP_HIGHUSER_MOVABLE | G_NOMEMALLOC | G_NORETRY | G_NOWARN,
    "zsmalloc": (GFP_KERNEL | G_MOVABLE | G_HIGHMEM | G_NOWARN | G_NORETRY) & ~G_RECLAIM
    | G_KSWAPD_RECLAIM,
}


def gfp_of_stack(key: str) -> int:
    """The gfp mask an allocation with this stack used."""
    return GFP_BY_STACK.get(key, GFP_BY_STACK["anon_fault"])


# the order of include/trace/events/mmflags.h's gfp name table (6.1); %pGg
# prints the first entries whose bits are all set, then the leftover bits
_GFP_NAMES_61 = [
    ("GFP_TRANSHUGE", 0x1C24CA),
    ("GFP_TRANSHUGE_LIGHT", 0x1C20CA),
    ("GFP_HIGHUSER_MOVABLE", 0x100CCA),
    ("GFP_HIGHUSER", 0x100CC2),
    ("GFP_USER", 0x100CC0),
    ("GFP_KERNEL_ACCOUNT", 0x400CC0),
    ("GFP_KERNEL", 0xCC0),
    ("GFP_NOFS", 0xC40),
    ("GFP_ATOMIC", 0xA20),
    ("GFP_NOIO", 0xC00),
    ("GFP_NOWAIT", 0x800),
    ("GFP_DMA", 0x1),
    ("__GFP_HIGHMEM", 0x2),
    ("GFP_DMA32", 0x4),
    ("__GFP_HIGH", 0x20),
    ("__GFP_ATOMIC", 0x200),
    ("__GFP_IO", 0x40),
    ("__GFP_FS", 0x80),
    ("__GFP_NOWARN", 0x2000),
    ("__GFP_RETRY_MAYFAIL", 0x4000),
    ("__GFP_NOFAIL", 0x8000),
    ("__GFP_NORETRY", 0x10000),
    ("__GFP_COMP", 0x40000),
    ("__GFP_ZERO", 0x100),
    ("__GFP_NOMEMALLOC", 0x80000),
    ("__GFP_MEMALLOC", 0x20000),
    ("__GFP_HARDWALL", 0x100000),
    ("__GFP_THISNODE", 0x200000),
    ("__GFP_RECLAIMABLE", 0x10),
    ("__GFP_MOVABLE", 0x8),
    ("__GFP_ACCOUNT", 0x400000),
    ("__GFP_WRITE", 0x1000),
    ("__GFP_RECLAIM", 0xC00),
    ("__GFP_DIRECT_RECLAIM", 0x400),
    ("__GFP_KSWAPD_RECLAIM", 0x800),
    ("__GFP_ZEROTAGS", 0x800000),
]
# 6.3 dropped __GFP_ATOMIC; GFP_ATOMIC became __GFP_HIGH | __GFP_KSWAPD_RECLAIM
_GFP_NAMES_612 = [
    (n, 0x820 if n == "GFP_ATOMIC" else m) for n, m in _GFP_NAMES_61 if n != "__GFP_ATOMIC"
]


# 7.2: GFP_NOWAIT implies __GFP_NOWARN; after the composite masks come GFP_DMA,
# GFP_DMA32, __GFP_RECLAIM and then every __GFP_ bit in bit order
_GFP_NAMES_72 = [
    (n, 0x2800 if n == "GFP_NOWAIT" else m)
    for n, m in _GFP_NAMES_612
    if n.startswith("GFP_") and n not in ("GFP_DMA", "GFP_DMA32")
] + [("GFP_DMA", 0x1), ("GFP_DMA32", 0x4), ("__GFP_RECLAIM", 0xC00)] + [
    ("__GFP_" + n, 1 << i)
    for i, n in enumerate(
        "DMA HIGHMEM DMA32 MOVABLE RECLAIMABLE HIGH IO FS ZERO - DIRECT_RECLAIM "
        "KSWAPD_RECLAIM WRITE NOWARN RETRY_MAYFAIL NOFAIL NORETRY MEMALLOC COMP "
        "NOMEMALLOC HARDWALL THISNODE ACCOUNT ZEROTAGS".split()
    )
    if n != "-"
]


def format_gfp(version: str, gfp: int) -> str:
    """The kernel's %pGg for a gfp mask, without the value itself (5.10 has
    the 6.1 table)."""
    names = {"5.10": _GFP_NAMES_61, "6.1": _GFP_NAMES_61, "7.2": _GFP_NAMES_72}.get(
        version, _GFP_NAMES_612
    )
    parts = []
    rest = gfp
    for n, m in names:
        if not rest:
            break
        if rest & m == m:
            parts.append(n)
            rest &= ~m
    if rest:
        parts.append(f"{rest:#x}")
    return "|".join(parts)
