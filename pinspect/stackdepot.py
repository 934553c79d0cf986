"""The stack depot: where page_owner and page_pinner keep their stack traces."""

from __future__ import annotations

from drgn import Program

from pinspect.features import ABSENT, PRESENT, Feature
from pinspect.variables import has_variable


def depot_feature(prog: Program) -> Feature:
    """Which stack depot layout this kernel has: pools (6.3+) or slabs (up to 6.2)."""
    for name in ("stack_pools", "stack_slabs"):
        if has_variable(prog, name):
            return Feature("stack depot", PRESENT, name)
    return Feature("stack depot", ABSENT, "kernel built without CONFIG_STACKDEPOT")
