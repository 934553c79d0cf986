"""The bulk scan on real ELF dumps: chunks read through the dump's mapping hold exactly what
drgn reads at the same addresses, and a mapping that disagrees with drgn is dropped."""

from __future__ import annotations

import pytest

import pinspect
from pinspect.buddy import free_blocks
from pinspect.elfmem import ElfMemory
from pinspect.scan import ScanStats, iter_chunks, valid_ranges
from tests.realkernel.rksupport import Booted


@pytest.mark.parametrize("chunk_pages", [1 << 12, 1 << 18])
def test_chunks_are_what_drgn_reads(booted: Booted, chunk_pages: int) -> None:
    prog = pinspect.open_program(core=str(booted.dumps["elf"]), vmlinux=[str(booted.vmlinux)])
    kernel = pinspect.probe(prog)
    memory = ElfMemory.of(prog)
    assert memory is not None, "a real x86-64 ELF dump is read through its mapping"
    ranges = valid_ranges(kernel)
    size = kernel.layout.size
    stats = ScanStats()
    compared = views = 0
    for chunk in iter_chunks(kernel, ranges, stats, skip=free_blocks(kernel),
                             chunk_pages=chunk_pages):
        data = chunk.raw.__array_interface__["data"][0]
        base = next(b for s, e, b in ranges if s <= chunk.start_pfn < e)
        if memory.address <= data < memory.address + len(memory.bytes):
            views += 1
        else:  # copied only where the file holds the chunk's struct pages in pieces
            extents = memory._file_extents(base + chunk.start_pfn * size, chunk.n * size)
            assert extents is not None and len(extents) > 1, chunk.start_pfn
        for lo, hi in chunk.read_spans():
            want = prog.read(base + (chunk.start_pfn + lo) * size, (hi - lo) * size)
            assert chunk.raw[lo * size:hi * size].tobytes() == want, chunk.start_pfn + lo
            compared += hi - lo
    assert memory.ok
    if chunk_pages * size <= memory.table_span:
        # A chunk inside one page of PTEs is contiguous in the file wherever the vmemmap is
        # (deb72's vmemmap blocks lie apart, so its 16 MiB chunks are all copied).
        assert views > 0, "the dump is read through its mapping"
    assert compared == stats.pages > 0 and stats.unreadable == 0


def test_a_mapping_that_disagrees_with_drgn_is_dropped(booted: Booted) -> None:
    prog = pinspect.open_program(core=str(booted.dumps["elf"]), vmlinux=[str(booted.vmlinux)])
    kernel = pinspect.probe(prog)
    before = [(p.pfn, p.evidence) for p in pinspect.find_pinned(prog).pages]
    memory = ElfMemory.of(prog)
    assert memory is not None and memory.ok and kernel.vmemmap is not None
    start = valid_ranges(kernel)[0][0]
    address = kernel.vmemmap + start * kernel.layout.size
    original = prog.read(address, 64)

    def flipped(addr: int, count: int, offset: int, physical: bool) -> bytes:
        return bytes(b ^ 0xFF for b in original[offset:offset + count])

    # drgn now reads other bytes there than the file holds: the mapping is not trusted.
    prog.add_memory_segment(address, 64, flipped, False)
    memory.recent_extents.clear()
    assert memory.view(address, 1 << 16) is None and not memory.ok
    after = pinspect.find_pinned(prog)  # read with prog.read from here on
    assert [(p.pfn, p.evidence) for p in after.pages if p.pfn >= start + 1] == \
        [x for x in before if x[0] >= start + 1]
