"""Where the kernel's types come from: the debug info a target is read with.

A :class:`TypeSource` loads the types, symbols and variables of the kernel into a
:class:`drgn.Program`, or says what is missing and how to get it.  :class:`DwarfSource` (the
kernel's vmlinux with DWARF, found by drgn or given with ``-s``) is the only one today.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

import drgn
from drgn import MissingDebugInfoError, Program

from pinspect import debuginfo, elf, vmcoreinfo
from pinspect.errors import DebugInfoError

__all__ = ["DEBUG_INFO_HINT", "DWARF", "DwarfSource", "TypeSource"]

DEBUG_INFO_HINT = (
    "pass the kernel's vmlinux with -s PATH; for a distribution kernel install its debug "
    "package (Debian: linux-image-$(uname -r)-dbg, Ubuntu: linux-image-$(uname -r)-dbgsym, "
    "Fedora/RHEL: kernel-debuginfo) or set DEBUGINFOD_URLS"
)


class TypeSource(Protocol):
    """A source of the kernel's types for a program."""

    name: str  # for messages: "DWARF", ...

    def load(self, prog: Program, paths: Sequence[str] = ()) -> None:
        """Load the kernel's types into *prog*, from *paths* or the standard places.

        Raises :class:`DebugInfoError` (with a hint) when they are missing or do not match.
        """
        ...


class DwarfSource:
    """The DWARF debug info of vmlinux, checked against the kernel's build ID."""

    name = "DWARF"

    def load(self, prog: Program, paths: Sequence[str] = ()) -> None:
        """Load vmlinux debug info from *paths* (files, or directories to search: see
        :mod:`pinspect.debuginfo`) or drgn's standard places; check it matches."""
        info = vmcoreinfo.from_program(prog)
        release, build_id = info.get("OSRELEASE"), info.get("BUILD-ID")
        for path in paths:
            if not os.path.exists(path):
                raise DebugInfoError(f"debug info file {path} does not exist", DEBUG_INFO_HINT)
        paths, empty = debuginfo.expand_paths(paths, release, build_id)
        if empty:
            raise DebugInfoError(f"no vmlinux for kernel {release or '(unknown release)'} in "
                                 + ", ".join(empty), debuginfo.not_found_hint(release, build_id))
        try:
            prog.load_debug_info(paths, main=True)
        except MissingDebugInfoError:
            pass  # checked below, with a better message
        kernel = prog.main_module()
        if kernel.debug_file_status == drgn.ModuleFileStatus.HAVE:
            return
        if paths:
            wanted = kernel.build_id.hex() if kernel.build_id else None
            got = [f"{p} has build ID {elf.build_id(p) or 'none'}" for p in paths]
            raise DebugInfoError(
                "the debug info does not match this kernel: kernel build ID "
                f"{wanted or 'unknown'}, " + "; ".join(got),
                "use the vmlinux built together with this kernel",
            )
        raise DebugInfoError(f"no debug info found for kernel {release or '(unknown release)'}",
                             debuginfo.not_found_hint(release, build_id))


DWARF = DwarfSource()
