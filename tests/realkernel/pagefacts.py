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


def _folio_mapcount(page: drgn.Object) -> int:
    """Mappings of a large folio as a whole (PMD mappings), across kernel versions."""
    prog = page.prog_
    folio = drgn.cast("struct folio *", page)
    for member in ("_large_mapcount", "_entire_mapcount"):  # 6.10+, 6.2+
        try:
            return _counter(getattr(folio, member)) + 1
        except AttributeError:
            pass
    tail = drgn.Object(prog, "struct page *", page.value_() + prog.type("struct page").size)
    return _counter(tail.compound_mapcount) + 1  # 5.18 - 6.1


def page_facts(prog: drgn.Program, pfns: Iterable[tuple[int, int]]) -> dict[int, dict[str, Any]]:
    """{pfn: {refcount, mapcount, pincount, flags}} for (pfn, nr_pages) pairs."""
    out: dict[int, dict[str, Any]] = {}
    for pfn, nr_pages in pfns:
        page = pfn_to_page(prog, pfn)
        facts: dict[str, Any] = {
            "refcount": _counter(page._refcount),
            "flags": int(page.flags.value_()),
            "pincount": None,
        }
        if nr_pages > 1:
            folio = drgn.cast("struct folio *", page)
            facts["pincount"] = _counter(folio._pincount)
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
