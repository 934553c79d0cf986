"""The kernel's own symbol table (kallsyms), for a program without vmlinux.

drgn reads it (:func:`drgn.helpers.linux.kallsyms.load_vmlinux_kallsyms`): from
``/proc/kallsyms`` on the running kernel (root), otherwise from the compressed tables in kernel
memory, which VMCOREINFO locates from Linux 6.0 on (``SYMBOL(kallsyms_names)``,
``kallsyms_num_syms``, ``kallsyms_token_table``, ``kallsyms_token_index``,
``kallsyms_offsets``/``kallsyms_relative_base`` or ``kallsyms_addresses``). This module adds
the error messages and registers the table as the program's symbol finder.
"""

from __future__ import annotations

import os

from drgn import FaultError, Program, ProgramFlags, SymbolIndex
from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms

from pinspect import vmcoreinfo
from pinspect.errors import DebugInfoError

__all__ = ["KALLSYMS_VMCOREINFO", "load", "origin"]

# What drgn needs from VMCOREINFO to decode kallsyms in memory (Linux 6.0+, up to commit
# f09bddbd8661 "vmcoreinfo: add kallsyms_num_syms symbol").
KALLSYMS_VMCOREINFO = ("kallsyms_names", "kallsyms_num_syms", "kallsyms_token_table",
                       "kallsyms_token_index")


def origin(prog: Program) -> str:
    """Where :func:`load` reads the symbols of *prog* from."""
    local = ProgramFlags.IS_LIVE | ProgramFlags.IS_LOCAL
    if prog.flags & local == local and os.geteuid() == 0:
        return "/proc/kallsyms"
    return "kernel memory (tables located through VMCOREINFO)"


def load(prog: Program) -> SymbolIndex:
    """Load kallsyms for vmlinux and register it as *prog*'s first symbol finder."""
    info = vmcoreinfo.from_program(prog)
    local = ProgramFlags.IS_LIVE | ProgramFlags.IS_LOCAL
    if not (prog.flags & local == local and os.geteuid() == 0):
        missing = [s for s in KALLSYMS_VMCOREINFO if f"SYMBOL({s})" not in info]
        if missing:
            release = info.get("OSRELEASE", "this kernel")
            raise DebugInfoError(
                f"cannot locate kallsyms: the VMCOREINFO of {release} has no "
                f"SYMBOL({missing[0]}) (Linux 6.0 and later have it)",
                "pass the kernel's vmlinux with -s PATH")
    try:
        index = load_vmlinux_kallsyms(prog)
    except FaultError as e:
        raise DebugInfoError(
            f"cannot read kallsyms at {e.address:#x}: that part of the kernel image is "
            "missing from the target", "pass the kernel's vmlinux with -s PATH") from e
    except (LookupError, ValueError, OSError) as e:
        raise DebugInfoError(f"cannot read kallsyms: {e}",
                             "pass the kernel's vmlinux with -s PATH") from e
    prog.register_symbol_finder("kallsyms", index, enable_index=0)
    return index
