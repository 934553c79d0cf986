"""The buddy allocator's free blocks: every RAM page that is neither
allocated nor reserved, as maximal aligned blocks that stay inside one
pageblock migratetype."""

from __future__ import annotations

from . import scenario as S
from .machine import Machine


def free_blocks(m: Machine) -> list[tuple[int, int, str]]:
    """(pfn, order, migratetype) of every free block, in pfn order."""
    blocks: list[tuple[int, int, str]] = []
    max_order = m.k.max_order - 1
    for s, e in S.RAM:
        pfn = s
        while pfn < e:
            if pfn in m.pages:
                pfn += 1
                continue
            order = 0
            while order < max_order:
                n = 2 << order
                if pfn % n or pfn + n > e:
                    break
                if any(q in m.pages for q in range(pfn, pfn + n)):
                    break
                if S.pageblock_mt(pfn) != S.pageblock_mt(pfn + n - 1):
                    break
                order += 1
            blocks.append((pfn, order, S.pageblock_mt(pfn)))
            pfn += 1 << order
    return blocks
