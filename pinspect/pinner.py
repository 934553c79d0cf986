"""page_pinner (Android common kernels, and the LKML RFC it grew from): which variant a
kernel carries, and the page_ext flags that mark the pages it tracks.

The variants (``../shared/reference/kernel-structures.md`` §1.9) differ in their globals and
record types; :func:`pinner_variant` tells them apart from those alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drgn import Program

from pinspect.features import ABSENT, OFF, PRESENT, Feature
from pinspect.pageext import ClientSpec, PageExtLayout
from pinspect.probing import enumerators, offset_of, static_key_enabled
from pinspect.variables import has_variable

if TYPE_CHECKING:
    from pinspect.kernel import Kernel

CLIENT = ClientSpec(
    name="page_pinner",
    ops="page_pinner_ops",
    enabled_key="page_pinner_inited",
    # Its record follows the flags word, which therefore exists when the offset leaves room.
    wants_flags=lambda client: client.offset >= 8,
)

# The page_ext flag each variant sets on a page it tracks (reference §1.1).
PINNER_FLAGS = {
    "rfc": ("PAGE_EXT_PINNER",),
    "a0": ("PAGE_EXT_GET",),
    "a1": ("PAGE_EXT_GET", "PAGE_EXT_PINNER_MIGRATION_FAILED"),
    "a2": ("PAGE_EXT_GET", "PAGE_EXT_PINNER_MIGRATION_FAILED"),
    "b": ("PAGE_EXT_GET", "PAGE_EXT_PINNER_MIGRATION_FAILED"),
    "c": ("PAGE_EXT_GET", "PAGE_EXT_PINNER_MIGRATION_FAILED"),
    "d": ("PAGE_EXT_PINNER_MIGRATION_FAILED",),
}


def pinner_variant(prog: Program) -> str | None:
    """Which page_pinner this kernel carries, by its globals and record types."""
    if has_variable(prog, "pp_buffer"):
        return "d"
    if has_variable(prog, "acf_buffer") or has_variable(prog, "lt_buffer"):
        return "c"
    if has_variable(prog, "acf_pinner"):
        try:
            record = prog.type("struct captured_pinner")
        except LookupError:
            return "a1"
        names = {m.name for m in record.members or ()}
        if "mapcount" in names:
            return "b"
        if offset_of(record, "elapsed") is not None:
            return "a2"
        return "a1"
    if has_variable(prog, "lt_pinner"):
        return "a0"
    if "PAGE_EXT_PINNER" in enumerators(prog, "enum page_ext_flags"):
        return "rfc"
    return None


def pinner_feature(prog: Program, page_ext: PageExtLayout | None, variant: str | None
                   ) -> Feature:
    """Whether page_pinner is compiled in and enabled, and which variant."""
    if variant is None:
        return Feature("page_pinner", ABSENT, "no page_pinner (an Android common kernel feature)")
    client = page_ext.client(CLIENT.name) if page_ext is not None else None
    if page_ext is not None and ((client is not None and client.enabled) or variant == "rfc"):
        enabled = static_key_enabled(prog, CLIENT.enabled_key)
        state = PRESENT if enabled or enabled is None else OFF
        return Feature("page_pinner", state, f"variant {variant.upper()}"
                       + ("" if state == PRESENT else "; boot with page_pinner=on"))
    return Feature("page_pinner", OFF, f"variant {variant.upper()} compiled in but not enabled; "
                   "boot with page_pinner=on")


def pinner_mask(kernel: Kernel) -> int:
    """The page_ext flag bits that mark a page as tracked by page_pinner, or 0."""
    ext = kernel.page_ext
    if ext is None or kernel.pinner_variant is None or not ext.has_flags_word:
        return 0
    mask = 0
    for name in PINNER_FLAGS.get(kernel.pinner_variant, ()):
        bit = ext.flag_bits.get(name)
        if bit is not None:
            mask |= 1 << bit
    return mask
