"""Read the struct page facts of ground-truth pfns with plain drgn (no pinspect).

Also runs as a script inside a guest against /proc/kcore:
    python3 pagefacts.py VMLINUX PFN_LIST_JSON OUT_JSON
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

import drgn
from drgn.helpers.linux.mm import pfn_to_page


def _counter(obj: drgn.Object) -> int:
    return int(obj.counter.value_())


def _flags(page: drgn.Object) -> int:
    """page->flags: an unsigned long, wrapped in memdesc_flags_t { unsigned long f; } on 7.x."""
    try:
        return int(page.flags.f.value_())
    except AttributeError:
        return int(page.flags.value_())


def _tail(page: drgn.Object, n: int) -> drgn.Object:
    """The n-th tail page of a compound page."""
    prog = page.prog_
    return drgn.Object(prog, "struct page *", page.value_() + n * prog.type("struct page").size)


def _folio(page: drgn.Object) -> drgn.Object | None:
    """The page as a struct folio, or None on kernels without folios (before 5.16)."""
    try:
        return drgn.cast("struct folio *", page)
    except LookupError:
        return None


def _folio_mapcount(page: drgn.Object) -> int:
    """Mappings of a large folio as a whole (PMD mappings), across kernel versions."""
    folio = _folio(page)
    if folio is not None:
        for member in ("_large_mapcount", "_entire_mapcount"):  # 6.10+, 6.2+
            try:
                return _counter(getattr(folio, member)) + 1
            except AttributeError:
                pass
    return _counter(_tail(page, 1).compound_mapcount) + 1  # up to 6.1: first tail page


def _pincount(page: drgn.Object) -> int:
    """FOLL_PIN pins of a large folio (order > 1)."""
    folio = _folio(page)
    if folio is not None:
        return _counter(folio._pincount)
    try:
        return _counter(_tail(page, 1).compound_pincount)  # 5.18-5.19: first tail page
    except AttributeError:
        # 5.7-5.17: hpage_pinned_refcount in the second tail page (5.10 has no folios)
        return _counter(_tail(page, 2).hpage_pinned_refcount)


def page_facts(prog: drgn.Program, pfns: Iterable[tuple[int, int]]) -> dict[int, dict[str, Any]]:
    """{pfn: {refcount, mapcount, pincount, flags}} for (pfn, nr_pages) pairs."""
    out: dict[int, dict[str, Any]] = {}
    for pfn, nr_pages in pfns:
        page = pfn_to_page(prog, pfn)
        facts: dict[str, Any] = {
            "refcount": _counter(page._refcount),
            "flags": _flags(page),
            "pincount": None,
        }
        if nr_pages > 1:
            facts["pincount"] = _pincount(page)
            facts["mapcount"] = _folio_mapcount(page)
        else:
            facts["mapcount"] = _counter(page._mapcount) + 1
        out[pfn] = facts
    return out


def main(argv: list[str]) -> int:
    vmlinux, pfn_list, out = argv
    prog = drgn.Program()
    prog.set_kernel()
    prog.load_debug_info([vmlinux])
    with open(pfn_list) as f:
        pairs = [(int(p), int(n)) for p, n in json.load(f)]
    facts = page_facts(prog, pairs)
    with open(out, "w") as f:
        json.dump({str(k): v for k, v in facts.items()}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
