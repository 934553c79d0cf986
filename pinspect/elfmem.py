"""Reading an ELF vmcore's kernel memory as views of the mmap'ed file.

For the bulk scan only: :class:`ElfMemory` hands out read-only numpy views of large ranges of
kernel virtual memory (the struct page array) without copying them through ``prog.read``.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from drgn import FaultError, Program
from drgn.helpers.linux.mm import follow_phys

from pinspect import elf, vmcoreinfo
from pinspect.arch import PageTableFormat, arch_of
from pinspect.variables import variable

_UNMAP_ALL_EVERY = 16  # views between two unmaps of the whole file (see release())
_MADV_POPULATE_READ = 22  # Linux 5.14+; without it the pages are faulted in on first use


class ElfMemory:
    """Kernel virtual memory read straight from an mmap'ed ELF core, without copies.

    A virtual address is translated by the page tables held in the dump (4 or 5 levels) and
    the physical address found in a ``PT_LOAD`` segment. :meth:`view` answers None whenever
    that is not plain (not mapped, not contiguous in the file, zero-filled past ``p_filesz``);
    the caller then reads with ``prog.read``. Both ends of every view are compared with
    ``prog.read``; one difference turns the fast path off for the program.
    """

    def __init__(self, path: str, prog: Program, pgd: int, levels: int,
                 page_table: PageTableFormat) -> None:
        self.prog = prog
        self.page_table = page_table
        with open(path, "rb") as f:
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.bytes = np.frombuffer(self.map, dtype=np.uint8)
        self.pgd = pgd
        self.shifts = page_table.shifts(levels)
        self.page_shift = page_table.level_shifts[-1]
        self.table_span = 1 << page_table.level_shifts[-2]  # what one page of PTEs maps
        self.segments = _elf_loads(self.map)
        self.address: int = self.bytes.__array_interface__["data"][0]
        self.ok = True
        self.released = 0
        self.next_extent = (0, 0)  # file (offset, size) of the last prefetched view
        self.worker: ThreadPoolExecutor | None = None
        self.recent_extents: dict[tuple[int, int], list[tuple[int, int]] | None] = {}

    @classmethod
    def of(cls, prog: Program) -> ElfMemory | None:
        """The program's ElfMemory (made once), or None if its core is not such a file."""
        try:
            return prog.cache["pinspect_elf_memory"]  # type: ignore[no-any-return]
        except KeyError:
            pass
        memory = None
        path = prog.core_dump_path
        arch = arch_of(prog)
        # (not /proc/kcore: live memory, and a file that size cannot be mapped)
        if path and not path.startswith("/proc/") and arch.page_table is not None and \
                _is_elf_core(path):
            try:
                init_mm = variable(prog, "init_mm")
                if init_mm is None:
                    raise LookupError("init_mm")
                pgd = follow_phys(init_mm.address_of_(), init_mm.pgd.value_())
                levels = arch.page_table_levels(vmcoreinfo.from_program(prog))
                memory = cls(path, prog, pgd, levels, arch.page_table)
            except (OSError, ValueError, LookupError, FaultError):
                memory = None
        prog.cache["pinspect_elf_memory"] = memory
        return memory

    def prefetch(self, address: int, size: int,
                 used: Sequence[tuple[int, int]] | None = None) -> None:
        """Start mapping in the *used* ``(offset, length)`` parts (default: all) of the view
        :meth:`view` will be asked for next, in the background, while the caller works on
        the current one."""
        if not self.ok:
            return
        extents = self._file_extents(address, size)
        if extents is None or len(extents) != 1:
            return
        offset = extents[0][0]
        self.next_extent = (offset, size)
        for part_offset, length in used or [(0, size)]:
            self._advise_later(offset + part_offset, length, _MADV_POPULATE_READ)

    def view(self, address: int, size: int) -> np.ndarray | None:
        """The *size* bytes at kernel virtual *address*, as a read-only uint8 array, or None.

        Its pages are mapped in on first use, unless :meth:`prefetch` did it already.
        """
        if not self.ok:
            return None
        extents = self._file_extents(address, size)
        if extents is None:
            return None
        if len(extents) == 1:
            offset = extents[0][0]
            view = self.bytes[offset:offset + size]
        else:  # not contiguous in the file: copied out
            view = np.concatenate([self.bytes[o:o + n] for o, n in extents])
            for offset, length in extents:
                self._advise_later(offset, length, mmap.MADV_DONTNEED)
        n = min(64, size)
        try:
            same = (view[:n].tobytes() == self.prog.read(address, n)
                    and view[-n:].tobytes() == self.prog.read(address + size - n, n))
        except FaultError:
            same = False
        if not same:
            self.ok = False
            return None
        return view

    def release(self, view: np.ndarray) -> None:
        """Unmap the pages of a view the caller is done with (they stay in the page cache).

        The kernel's fault-around also maps file pages next to a view; every few views the
        whole file but the prefetched view is unmapped, so that those stay bounded too (an
        unpopulated range costs little to unmap).
        """
        if view.base is not None and len(view):
            offset = view.__array_interface__["data"][0] - self.address
            if 0 <= offset < len(self.bytes):
                self._advise_later(offset, len(view), mmap.MADV_DONTNEED)
        self.released += 1
        if self.released % _UNMAP_ALL_EVERY == 0:
            keep_offset, keep_size = self.next_extent
            self._advise_later(0, keep_offset, mmap.MADV_DONTNEED)
            end = keep_offset + keep_size
            self._advise_later(end, len(self.bytes) - end, mmap.MADV_DONTNEED)

    def _advise_later(self, offset: int, length: int, advice: int) -> None:
        """madvise() a range of the file's mapping on the background thread, in order."""
        start = offset & ~(mmap.PAGESIZE - 1)
        length += offset - start
        if length <= 0:
            return
        if self.worker is None:
            self.worker = ThreadPoolExecutor(1, thread_name_prefix="pinspect-madvise")
        self.worker.submit(_madvise, self.map, self.address + start, start, length, advice)

    def _file_extents(self, address: int, size: int) -> list[tuple[int, int]] | None:
        """File (offset, length) pieces holding the virtual range, merged; None if unclear."""
        # prefetch() and then view() ask for the same range, with another one between.
        try:
            return self.recent_extents[(address, size)]
        except KeyError:
            pass
        extents = self._translate_extents(address, size)
        if len(self.recent_extents) > 2:
            self.recent_extents.pop(next(iter(self.recent_extents)))
        self.recent_extents[(address, size)] = extents
        return extents

    def _translate_extents(self, address: int, size: int) -> list[tuple[int, int]] | None:
        extents: list[tuple[int, int]] = []
        va, end = address, address + size
        while va < end:
            block_end = min(end, (va | (self.table_span - 1)) + 1)
            phys = self._translate(va, block_end - va)
            if phys is None:
                return None
            offset = self._offset(phys, block_end - va)
            if offset is None:
                return None
            if extents and extents[-1][0] + extents[-1][1] == offset:
                extents[-1] = (extents[-1][0], extents[-1][1] + block_end - va)
            else:
                extents.append((offset, block_end - va))
            va = block_end
        return extents

    def _translate(self, va: int, length: int) -> int | None:
        """Physical address of *va* if [va, va + length) (inside one 2 MiB block) is mapped
        to contiguous physical memory; else None."""
        fmt = self.page_table
        last = fmt.entries_per_table - 1
        table = self.pgd
        for shift in self.shifts:
            entry = self._entry(table, (va >> shift) & last)
            if entry is None or not entry & fmt.present_bit:
                return None
            if shift in fmt.block_shifts and entry & fmt.block_bit:
                mask = (1 << shift) - 1
                return (entry & fmt.address_mask & ~mask) + (va & mask)
            table = entry & fmt.address_mask
        page_shift = self.page_shift
        first = (va >> page_shift) & last
        count = ((va + length - 1) >> page_shift) - (va >> page_shift) + 1
        offset = self._offset(table + 8 * first, 8 * count)
        if offset is None:
            return None
        entries = self.bytes[offset:offset + 8 * count].view("<u8")
        if not np.all(entries & np.uint64(fmt.present_bit)):
            return None
        frames = entries & np.uint64(fmt.address_mask)
        expected = frames[0] + np.arange(count, dtype=np.uint64) * np.uint64(1 << page_shift)
        if not np.array_equal(frames, expected):
            return None
        return int(frames[0]) + (va & ((1 << page_shift) - 1))

    def _entry(self, table: int, index: int) -> int | None:
        offset = self._offset(table + 8 * index, 8)
        if offset is None:
            return None
        return int.from_bytes(self.map[offset:offset + 8], "little")

    def _offset(self, phys: int, length: int) -> int | None:
        for paddr, offset, filesz in self.segments:
            if paddr <= phys and phys + length <= paddr + filesz:
                return offset + phys - paddr
        return None


def _libc_madvise() -> Callable[[int, int, int], int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


# Called through ctypes, madvise() runs without the GIL, so mapping pages in on the background
# thread overlaps the scan (mmap.madvise() holds the GIL throughout).
_LIBC_MADVISE = _libc_madvise()


def _madvise(mapping: mmap.mmap, address: int, offset: int, length: int, advice: int) -> None:
    """Advice for *length* bytes at *offset* of *mapping* (at *address*); failures (e.g.
    MADV_POPULATE_READ before Linux 5.14) only cost speed."""
    if _LIBC_MADVISE is not None:
        _LIBC_MADVISE(address, length, advice)
        return
    try:
        mapping.madvise(advice, offset, length)
    except OSError:
        pass


def _is_elf_core(path: str) -> bool:
    """A regular file holding a little-endian ELF64 core (ET_CORE)."""
    try:
        if not os.path.isfile(path):
            return False
        with open(path, "rb") as f:
            ident = f.read(18)
        return ident[4:6] == b"\x02\x01" and elf.file_type(ident) == elf.ET_CORE
    except (OSError, ValueError):
        return False


def _elf_loads(data: mmap.mmap) -> list[tuple[int, int, int]]:
    """``(p_paddr, p_offset, p_filesz)`` of each ``PT_LOAD`` of an ELF64 core."""
    return [(ph.paddr, ph.offset, ph.filesz) for ph in elf.program_headers(data)
            if ph.type == elf.PT_LOAD and ph.filesz]
