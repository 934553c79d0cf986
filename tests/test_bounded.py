"""Every walk over the dump's lists and arrays is bounded: corrupted counts and loops cost a
bounded number of reads and are not trusted."""

from __future__ import annotations

import struct

from drgn import Object, Program

from pinspect.buddy import free_blocks
from pinspect.cma import cma_ranges
from pinspect.kernel import probe
from pinspect.zones import zones
from tests.sampledata import open_sample


def overlay(prog: Program, address: int, data: bytes) -> None:
    """Make *data* what *prog* reads at *address* (a later segment wins)."""

    def read(addr: int, count: int, offset: int, physical: bool) -> bytes:
        return data[offset:offset + count]

    prog.add_memory_segment(address, len(data), read, False)


def test_a_huge_cma_area_count_is_capped() -> None:
    prog = open_sample("mainline-6.1")
    honest = [(r.name, r.base_pfn) for r in cma_ranges(probe(prog))]
    prog = open_sample("mainline-6.1")
    overlay(prog, prog.symbol("cma_area_count").address, struct.pack("<I", 0xFFFFFFFF))
    ranges = cma_ranges(probe(prog))
    assert len(ranges) <= 64  # MAX_CMA_AREAS where the array has no length
    assert set(honest) <= {(r.name, r.base_pfn) for r in ranges}


def test_a_free_list_that_loops_is_not_trusted() -> None:
    prog = open_sample("mainline-6.1")
    kernel = probe(prog)
    before = free_blocks(kernel)
    assert before
    prog = open_sample("mainline-6.1")
    kernel = probe(prog)
    zone = next(z for z in zones(kernel) if z.name == "Normal")
    area = Object(prog, "struct zone *", zone.address).free_area[9]
    head = area.free_list[0].address_of_().value_()
    first = area.free_list[0].next.value_()
    link = prog.type("struct page").member("lru").offset
    assert kernel.vmemmap is not None
    page = first - link if first != head else kernel.vmemmap + 0x100200 * kernel.layout.size
    # nr_free says 2^60 blocks, the list head points to a page whose link points to itself.
    overlay(prog, area.nr_free.address_, struct.pack("<Q", 1 << 60))
    overlay(prog, head, struct.pack("<Q", page + link))
    overlay(prog, page + link, struct.pack("<Q", page + link))
    after = free_blocks(kernel)
    # this order's list is dropped (a loop), the others are kept
    assert set(after) <= set(before)
    assert len(after) >= len(before) - zone.spanned // 512


def test_a_zero_page_ext_size_is_corrupted_not_an_internal_error() -> None:
    """page_ext_size 0 (the long fuzz run: 'When changing to a larger dtype ...' from numpy)
    is an impossible layout: page_owner's records are not read, and that is counted."""
    from pinspect import unread
    from pinspect.owner import owner_records

    prog = open_sample("mainline-6.1")
    overlay(prog, prog.symbol("page_ext_size").address, struct.pack("<Q", 0))
    unread.reset(prog)
    found = owner_records(prog, [0x1441])
    assert not found.records
    assert unread.of(prog).counts == {"page_ext layouts (page_ext_size corrupted)": 1}
