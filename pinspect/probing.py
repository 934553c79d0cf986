"""Small EAFP helpers for probing a kernel's types, enumerators and static keys."""

from __future__ import annotations

import drgn
from drgn import FaultError, Program

from pinspect.variables import variable


def offset_of(type_: drgn.Type, member: str) -> int | None:
    """Byte offset of *member* in *type_*, or None if it has no such member."""
    try:
        return drgn.offsetof(type_, member)
    except LookupError:
        return None


def enumerators(prog: Program, type_name: str) -> dict[str, int]:
    """The enumerators of the enum type *type_name* (empty if there is no such type)."""
    try:
        enum = prog.type(type_name)
    except LookupError:
        return {}
    return {e.name: e.value for e in enum.enumerators or ()}


def static_key_enabled(prog: Program, name: str) -> bool | None:
    """Read a ``struct static_key_false/true``; None if the symbol is absent or unreadable."""
    key = variable(prog, name)
    if key is None:
        return None
    try:
        return key.key.enabled.counter.value_() > 0
    except (AttributeError, FaultError):
        return None
