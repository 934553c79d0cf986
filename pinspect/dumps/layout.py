"""A dump file checked against what its headers say it holds, before any library maps it.

libkdumpfile maps a kdump file's page bitmaps and dies with SIGBUS when the file ends inside
them (a dump cut while it was written: the most common broken dump), and an ELF core's
``PT_LOAD`` segments may point past the end of a cut file. :func:`check_kdump` and
:func:`check_elf` read the headers, refuse a file that holds no page at all
(:class:`~pinspect.errors.TargetError`, one line) and otherwise return a :class:`Completeness`
that says how much is missing; pages past the cut then read as faults and are counted.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass

import numpy as np

from pinspect import elf
from pinspect.errors import TargetError

__all__ = ["Completeness", "check_elf", "check_kdump"]

# Offsets in the kdump main header (struct disk_dump_header), 64-bit and 32-bit layouts:
# block_size, sub_hdr_size, bitmap_blocks (then max_mapnr, total_ram_blocks, ...).
_KDUMP_FIELDS = {True: 428, False: 416}
_KDUMP_MIN_HEADER = 444
_DESCRIPTOR_SIZE = 24  # struct page_desc: offset (8), size (4), flags (4), page_flags (8)
_MAX_BLOCK_SIZE = 1 << 20
_DESCRIPTORS_AT_ONCE = 1 << 20  # read and checked with numpy, 24 MiB at a time

REWRITE_HINT = ("the dump was cut while it was written (a full disk, an interrupted copy): "
                "write it again, e.g. with makedumpfile -d 31 to make it smaller, or copy the "
                "whole file")


@dataclass(frozen=True)
class Completeness:
    """How much of a dump file is there: its size and the size its headers imply."""

    path: str
    size: int  # bytes in the file
    expected: int  # bytes its headers say it holds (>= size when cut)
    missing_pages: int = 0  # pages of memory whose data lie past the end (kdump: counted)
    total_pages: int = 0  # pages of memory the headers list (0: not counted)

    @property
    def truncated(self) -> bool:
        return self.expected > self.size

    def sentence(self) -> str:
        """One line for the user, e.g. ``the dump is truncated: 356352 of 712704 bytes (50%)
        are in the file``."""
        percent = 100 * self.size // self.expected if self.expected else 0
        text = (f"{self.path} is truncated: {self.size} of {self.expected} bytes ({percent}%) "
                "are in the file")
        if self.total_pages:
            text += (f"; {self.missing_pages} of {self.total_pages} dumped pages lie past the "
                     "end and cannot be read")
        return text


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError as e:
        raise TargetError(f"{path}: cannot read: {e.strerror or e}", "") from None


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def check_kdump(path: str) -> Completeness:
    """Check a kdump-compressed file (not flattened) against its header.

    Refuses (TargetError) a header that is cut or impossible, and a file that ends before the
    end of its page bitmaps (libkdumpfile would die with SIGBUS reading them, and no page
    data follows). A file cut later, in its page descriptors or data, is accepted: the result
    says how many pages lie past the end.
    """
    size = _size(path)
    try:
        with open(path, "rb") as f:
            head = f.read(_KDUMP_MIN_HEADER)
            if len(head) < _KDUMP_MIN_HEADER:
                raise TargetError(
                    f"{path}: truncated kdump header: the file has {size} bytes, a kdump "
                    f"header needs at least {_KDUMP_MIN_HEADER}", REWRITE_HINT)
            found = None
            for is64 in (True, False):
                for order in ("<", ">"):
                    bs, sub, bitmap_blocks = struct.unpack_from(
                        order + "iii", head, _KDUMP_FIELDS[is64])
                    if _pow2(bs) and 512 <= bs <= _MAX_BLOCK_SIZE and sub >= 0 \
                            and bitmap_blocks > 0:
                        found = (bs, sub, bitmap_blocks, order)
                        break
                if found:
                    break
            if found is None:
                raise TargetError(f"{path}: corrupt kdump header: no valid block size",
                                  "the file is damaged; " + REWRITE_HINT)
            bs, sub, bitmap_blocks, order = found
            bitmap_start = (1 + sub) * bs
            bitmap_size = bitmap_blocks * bs
            bitmap_end = bitmap_start + bitmap_size
            if bitmap_end > size:
                raise TargetError(
                    f"{path}: truncated kdump file: it ends inside its page bitmaps "
                    f"({size} of {bitmap_end} bytes before the first page), so no page of "
                    "memory is in it", REWRITE_HINT)
            # The second half of the bitmaps (when both fit) says which pages were dumped;
            # their descriptors follow in pfn order.
            half = bitmap_size // 2
            f.seek(bitmap_start + half)
            dumped = np.frombuffer(f.read(half), dtype=np.uint8)
            total = int(np.unpackbits(dumped).sum())
            desc_start = bitmap_end
            desc_end = desc_start + total * _DESCRIPTOR_SIZE
            expected = desc_end
            whole = max(0, min(desc_end, size) - desc_start) // _DESCRIPTOR_SIZE
            missing = total - whole
            descriptor = np.dtype([("offset", order + "u8"), ("size", order + "u4"),
                                   ("flags", order + "u4"), ("page_flags", order + "u8")])
            f.seek(desc_start)
            for first in range(0, whole, _DESCRIPTORS_AT_ONCE):
                count = min(_DESCRIPTORS_AT_ONCE, whole - first)
                descs = np.frombuffer(f.read(count * _DESCRIPTOR_SIZE), dtype=descriptor)
                ends = descs["offset"] + descs["size"].astype(np.uint64)
                sane = ends[ends < np.uint64(1 << 48)]  # not a corrupt descriptor
                if len(sane):
                    expected = max(expected, int(sane.max()))
                missing += int((ends > np.uint64(size)).sum())
    except OSError as e:
        raise TargetError(f"{path}: cannot read: {e.strerror or e}", "") from None
    return Completeness(path, size, max(expected, size), missing, total)


def check_elf(path: str) -> Completeness:
    """Check an ELF core's program headers against the file's size: refuses headers that
    are cut, says how much of the ``PT_LOAD`` data is missing."""
    size = _size(path)
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            # (a read-only map of the file as it is: nothing past its end is touched)
            try:
                header = elf.read_header(data)
            except ValueError:
                raise TargetError(f"{path}: truncated or corrupt ELF header",
                                  REWRITE_HINT) from None
            table_end = header.phoff + header.phnum * header.phentsize
            if header.phentsize < 56 or table_end > size:
                raise TargetError(
                    f"{path}: the ELF program headers lie past the end of the file "
                    f"({size} of {table_end} bytes) or are corrupt", REWRITE_HINT)
            try:
                headers = elf.program_headers(data, header)
            except ValueError as e:
                raise TargetError(f"{path}: corrupt ELF program headers: {e}",
                                  REWRITE_HINT) from None
    except (OSError, ValueError) as e:
        raise TargetError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}",
                          "") from None
    expected = size
    total = missing = 0
    for ph in headers:
        if ph.type not in (elf.PT_LOAD, elf.PT_NOTE) or not ph.filesz:
            continue
        end = ph.offset + ph.filesz
        if end >= 1 << 48:  # a corrupt header, not a file that size
            continue
        expected = max(expected, end)
        if ph.type == elf.PT_LOAD:
            pages = ph.filesz // 4096
            total += pages
            if end > size:
                missing += min(pages, (end - max(size, ph.offset) + 4095) // 4096)
    return Completeness(path, size, expected, missing, total)
