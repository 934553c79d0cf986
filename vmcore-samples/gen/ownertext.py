"""The text /sys/kernel/debug/page_owner prints for a record (6.1 and 6.12)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import scenario as S
from .pinner import format_pgp, mt_name

if TYPE_CHECKING:
    from .kernel import Builder

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


def format_gfp(version: str, gfp: int) -> str:
    names = _GFP_NAMES_61 if version == "6.1" else _GFP_NAMES_612
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


def page_owner_text(b: Builder, rec: dict[str, Any], frames: list[str]) -> list[str]:
    """Lines of one debugfs page_owner record (an allocated head page)."""
    version = b.k.version
    pfn = rec["pfn"]
    gfp = rec["gfp_mask"]
    head = (
        f"Page allocated via order {rec['order']}, mask {gfp:#x}({format_gfp(version, gfp)}), "
        f"pid {rec['pid']}, tgid {rec['tgid']} ({rec['comm']}), ts {rec['ts_nsec']} ns"
    )
    if version == "6.1":
        head += f", free_ts {rec['free_ts_nsec']} ns"
    gfp_mt = (gfp & 0x18) >> 3
    pb_mt = b.mt_value(b.pageblock_mt(pfn))
    pfn_text = str(pfn) if version == "6.1" else f"{pfn:#x}"
    second = (
        f"PFN {pfn_text} type {mt_name(b, gfp_mt)} Block {pfn >> S.PAGEBLOCK_ORDER} "
        f"type {mt_name(b, pb_mt)} Flags {format_pgp(b, b.pages[pfn].flags)}"
    )
    return [head, second] + [" " + f for f in frames] + [""]
