"""What differs per architecture: page tables, kernel address layout, PMD order.

One :class:`Arch` per architecture; :func:`arch_of` picks it from the program's platform.
x86-64 is the first with page tables pinspect walks itself (for mapping ELF dumps); the
others have the facts the probe needs and no page-table walk yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import drgn
from drgn import Program


@dataclass(frozen=True)
class PageTableFormat:
    """How to walk this architecture's kernel page tables (4 KiB granule)."""

    level_shifts: tuple[int, ...]  # virtual address shift of each level, top first
    block_shifts: frozenset[int]  # levels whose entries may map a block (huge page)
    entries_per_table: int
    present_bit: int
    block_bit: int  # set in an entry that maps a block rather than pointing to a table
    address_mask: int  # the physical frame bits of an entry

    def shifts(self, levels: int) -> tuple[int, ...]:
        """Shifts of the table levels above the last (the PTEs) with *levels* levels in use."""
        return self.level_shifts[len(self.level_shifts) - levels:-1]


@dataclass(frozen=True)
class Arch:
    """Facts about one architecture."""

    name: str
    page_table: PageTableFormat | None  # None: pinspect does not walk its page tables
    kernel_space_start: int  # addresses from here up are kernel virtual addresses

    def pmd_order(self, page_shift: int) -> int:
        """HPAGE_PMD_ORDER: a PMD entry maps as many pages as a page of PTEs holds."""
        if self.name == "x86_64":
            return 21 - page_shift  # PMD_SHIFT is 21 whatever the paging level
        return page_shift - 3  # arm64: a page of 8-byte entries

    def is_kernel_address(self, address: int) -> bool:
        return self.kernel_space_start <= address < 1 << 64

    def page_table_levels(self, vmcoreinfo: dict[str, str]) -> int:
        """Paging levels in use, from VMCOREINFO."""
        if self.name == "x86_64":
            return 5 if vmcoreinfo.get("NUMBER(pgtable_l5_enabled)") == "1" else 4
        raise NotImplementedError(f"page table levels of {self.name}")


X86_64 = Arch(
    name="x86_64",
    page_table=PageTableFormat(
        level_shifts=(48, 39, 30, 21, 12),
        block_shifts=frozenset((30, 21)),  # 1 GiB and 2 MiB pages (PSE bit)
        entries_per_table=512,
        present_bit=1 << 0,
        block_bit=1 << 7,
        address_mask=0x000F_FFFF_FFFF_F000,
    ),
    kernel_space_start=1 << 63,
)
AARCH64 = Arch(name="aarch64", page_table=None, kernel_space_start=0xFFFF << 48)

_BY_DRGN = {drgn.Architecture.X86_64: X86_64, drgn.Architecture.AARCH64: AARCH64}


def arch_of(prog: Program) -> Arch:
    """The :class:`Arch` of *prog*'s platform (an unknown one gets only its name)."""
    platform = prog.platform
    arch = platform.arch if platform is not None else None
    found = _BY_DRGN.get(arch)  # type: ignore[arg-type]
    if found is not None:
        return found
    return Arch(name=str(arch), page_table=None, kernel_space_start=1 << 63)
