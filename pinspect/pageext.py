"""page_ext lookup: per-page extension entries (``struct page_ext``) read in bulk."""

from __future__ import annotations

import numpy as np
from drgn import FaultError
from drgn.helpers.linux.mmzone import pfn_to_section

from pinspect import constants
from pinspect.kernel import Kernel

# The page_ext flag each page_pinner variant sets on a page it tracks (reference §1.1).
PINNER_FLAGS = {
    "rfc": ("PAGE_EXT_PINNER",),
    "a0": ("PAGE_EXT_GET",),
    "a1": ("PAGE_EXT_GET", "PAGE_EXT_PINNER_MIGRATION_FAILED"),
    "a2": ("PAGE_EXT_GET", "PAGE_EXT_PINNER_MIGRATION_FAILED"),
    "b": ("PAGE_EXT_GET", "PAGE_EXT_PINNER_MIGRATION_FAILED"),
    "c": ("PAGE_EXT_GET", "PAGE_EXT_PINNER_MIGRATION_FAILED"),
    "d": ("PAGE_EXT_PINNER_MIGRATION_FAILED",),
}


def pinner_mask(kernel: Kernel) -> int:
    """The page_ext flag bits that mark a page as tracked by page_pinner, or 0."""
    ext = kernel.page_ext
    if ext is None or kernel.pinner_variant is None or not ext.has_flags_word:
        return 0
    mask = 0
    for name in PINNER_FLAGS.get(kernel.pinner_variant, ()):
        bit = ext.flag_bits.get(name)
        if bit is not None:
            mask |= 1 << bit
    return mask


def _section_table(kernel: Kernel, pfn: int) -> int | None:
    """Biased ``mem_section->page_ext`` for the section of *pfn*, or None if absent."""
    section = pfn_to_section(kernel.prog, pfn)
    if not section:
        return None
    value = section.page_ext.value_()
    if value == 0 or value & constants.PAGE_EXT_INVALID:
        return None
    return int(value)


def flags_words(kernel: Kernel, start_pfn: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``page_ext->flags`` of pfns ``[start_pfn, start_pfn + n)``, and which were readable."""
    ext = kernel.page_ext
    words = np.zeros(n, dtype=np.uint64)
    readable = np.zeros(n, dtype=bool)
    if ext is None or ext.entry_size == 0:
        return words, readable
    size = ext.entry_size
    prog = kernel.prog
    section_pages = 1 << (prog["SECTION_SIZE_BITS"].value_() - kernel.page_shift) \
        if ext.sparse else n
    pfn = start_pfn
    end = start_pfn + n
    while pfn < end:
        stop = min(end, (pfn // section_pages + 1) * section_pages) if ext.sparse else end
        try:
            if ext.sparse:
                table = _section_table(kernel, pfn)
                address = None if table is None else (table + size * pfn) % (1 << 64)
            else:
                address = _flatmem_entry(kernel, pfn)
            if address is not None:
                data = prog.read(address, (stop - pfn) * size)
                col = np.frombuffer(data, dtype="<u8").reshape(-1, size // 8)[:, 0] \
                    if size % 8 == 0 else np.frombuffer(
                        np.ascontiguousarray(np.frombuffer(data, np.uint8)
                                             .reshape(-1, size)[:, :8]).tobytes(), "<u8")
                words[pfn - start_pfn:stop - start_pfn] = col
                readable[pfn - start_pfn:stop - start_pfn] = True
        except FaultError:
            pass
        pfn = stop
    return words, readable


def _flatmem_entry(kernel: Kernel, pfn: int) -> int | None:
    """FLATMEM: ``pgdat->node_page_ext`` indexed from the MAX_ORDER-aligned node start."""
    from drgn.helpers.linux.mmzone import for_each_online_pgdat

    ext = kernel.page_ext
    assert ext is not None
    for pgdat in for_each_online_pgdat(kernel.prog):
        start = pgdat.node_start_pfn.value_()
        if start <= pfn < start + pgdat.node_spanned_pages.value_():
            base = pgdat.node_page_ext.value_()
            if not base:
                return None
            aligned = start & ~((1 << (kernel.max_order - 1)) - 1)
            return int(base + ext.entry_size * (pfn - aligned))
    return None
