"""The architecture seam (pinspect.arch). The page-table walk built on it is checked against
drgn's reads on real dumps (tests/realkernel/test_realkernel_scan.py): the samples have no
kernel page tables."""

from __future__ import annotations

import pinspect
from pinspect.arch import AARCH64, X86_64
from tests.sampledata import open_sample


def test_x86_64_facts() -> None:
    table = X86_64.page_table
    assert table is not None
    assert table.shifts(4) == (39, 30, 21) and table.shifts(5) == (48, 39, 30, 21)
    assert X86_64.pmd_order(12) == 9 and AARCH64.pmd_order(12) == 9
    assert AARCH64.pmd_order(14) == 11 and AARCH64.page_table is None
    assert X86_64.is_kernel_address(0xFFFFEA0000000000)
    assert not X86_64.is_kernel_address(0x101C51)
    assert X86_64.page_table_levels({"NUMBER(pgtable_l5_enabled)": "1"}) == 5
    assert X86_64.page_table_levels({}) == 4


def test_the_sample_is_x86_64() -> None:
    assert pinspect.probe(open_sample("mainline-6.1")).arch is X86_64
