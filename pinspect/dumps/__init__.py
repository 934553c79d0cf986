"""Opening a dump file: detect its format and make it openable by drgn.

drgn opens ELF cores and (through libkdumpfile) kdump-compressed files, but two kinds of
kdump file trip it up: makedumpfile's flattened format, which :mod:`pinspect.dumps.flattened`
rebuilds once into a regular file in the cache, and kdump headers without a usable utsname,
whose architecture :mod:`pinspect.dumps.kdump` infers.  :func:`prepare_core` does what the file
needs and returns a :class:`CoreFile`.

Usage::

    core = prepare_core(path)
    prog = core.program()  # drgn.Program(core.platform); prog.set_core_dump(core.path)
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field

import drgn

from pinspect import cache, elf, unread
from pinspect.dumps.files import ACCEPTED, read_head
from pinspect.dumps.flattened import FLAT_HEADER_SIZE, FLAT_SIGNATURE, cached_rebuild
from pinspect.dumps.kdump import KDUMP_SIGNATURES, infer_platform
from pinspect.dumps.layout import Completeness, check_elf, check_kdump
from pinspect.errors import TargetError

__all__ = ["CoreFile", "prepare_core"]


@dataclass(frozen=True)
class CoreFile:
    """A core dump ready for :meth:`drgn.Program.set_core_dump`."""

    path: str  # what drgn should open
    kind: str  # "elf" | "kdump" | "kdump-flattened" (the kind of the *source* file)
    platform: drgn.Platform | None  # pass to drgn.Program() if not None
    rebuilt: bool  # True if path is a rebuilt copy in the cache (flattened source)
    # how much of the file its headers promise (not part of what the file is)
    completeness: Completeness | None = field(default=None, compare=False)

    def program(self, vmcoreinfo: bytes | None = None) -> drgn.Program:
        """Create a :class:`drgn.Program` with the right platform and open the dump in it.

        *vmcoreinfo* overrides the dump's own (for dumps of kernels that shared none).
        Failures become :class:`TargetError`: libkdumpfile's arrive as plain ``Exception``.
        """
        prog = drgn.Program(self.platform, vmcoreinfo=vmcoreinfo)
        if self.completeness is not None and self.completeness.truncated:
            unread.set_file(prog, self.completeness.sentence())
        try:
            prog.set_core_dump(self.path)
        except PermissionError as e:
            raise TargetError(
                f"{self.path}: permission denied",
                "dumps are often readable by root only: run with sudo or chmod/chown the file",
            ) from e
        except Exception as e:
            text = _library_text(str(e))
            hint = ("the file is damaged or not a complete dump: compare its size and checksum "
                    "with the original, or write the dump again")
            if "vmcoreinfo" in text.lower():
                hint = (
                    "the dump carries no usable VMCOREINFO: dump QEMU guests with -device "
                    "vmcoreinfo and the guest's qemu_fw_cfg driver loaded (CONFIG_FW_CFG_SYSFS); "
                    "a damaged dump may have lost it"
                )
            what = "a kdump file" if self.kind != "elf" else "an ELF core"
            raise TargetError(f"cannot open {self.path} as {what}: {text}", hint) from e
        return prog


def prepare_core(path: str, cache_dir: str | None = None) -> CoreFile:
    """Detect the format of the dump at *path* and make it openable by drgn.

    A flattened file is rebuilt once into ``<cache_dir>/cores/`` (default:
    :func:`pinspect.cache.cache_dir`; the source file is never written to).  Raises
    :class:`TargetError` for unreadable, non-dump or truncated files.
    """
    try:
        st = os.stat(path)
    except OSError:
        read_head(path, 1)  # raises the TargetError that fits
        raise
    if stat.S_ISDIR(st.st_mode):
        raise TargetError(f"{path}: is a directory, not a dump file", ACCEPTED)
    if not stat.S_ISREG(st.st_mode):
        raise TargetError(
            f"{path}: not a regular file (a pipe or device)",
            "save the dump to a file first: drgn reads dumps at random offsets",
        )
    head = read_head(path, FLAT_HEADER_SIZE)
    if head.startswith(elf.ELF_MAGIC):
        _check_elf_core(path, head)
        return CoreFile(path=path, kind="elf", platform=None, rebuilt=False,
                        completeness=check_elf(path))
    if head[:8] in KDUMP_SIGNATURES:
        _check_libkdumpfile(path)
        completeness = check_kdump(path)  # before libkdumpfile maps anything
        return CoreFile(path=path, kind="kdump", platform=infer_platform(path), rebuilt=False,
                        completeness=completeness)
    if head.startswith(FLAT_SIGNATURE):
        out = cached_rebuild(path, cache_dir if cache_dir is not None else cache.cache_dir())
        inner = read_head(out, 64)
        if inner.startswith(elf.ELF_MAGIC):  # makedumpfile -F -E: a flattened ELF file
            _check_elf_core(path, inner)
            completeness = check_elf(out)
            plat = None
        elif inner[:8] in KDUMP_SIGNATURES:
            _check_libkdumpfile(path)
            completeness = check_kdump(out)
            plat = infer_platform(out)
        else:
            raise TargetError(
                f"{path}: the flattened stream does not contain a kernel dump", ACCEPTED
            )
        return CoreFile(path=out, kind="kdump-flattened", platform=plat, rebuilt=True,
                        completeness=completeness)
    if not head:
        raise TargetError(f"{path}: file is empty, not a kernel dump", ACCEPTED)
    raise TargetError(f"{path}: not a kernel dump (unknown magic {head[:8]!r})", ACCEPTED)


def _library_text(text: str) -> str:
    """libkdumpfile's message without its call chain (``kdump_set_number_attr(...): file #0:
    file #0: Cannot read ...`` -> ``Cannot read ...``), on one line."""
    text = re.sub(r"^kdump_\w+\([^)]*\):\s*", "", text.strip())
    text = re.sub(r"^(file #\d+:\s*)+", "", text)
    return " ".join(text.split())


def _check_elf_core(path: str, head: bytes) -> None:
    try:
        e_type = elf.file_type(head)
    except ValueError:
        raise TargetError(f"{path}: truncated ELF header", ACCEPTED) from None
    if e_type != elf.ET_CORE:
        kinds = {1: "relocatable object", 2: "executable", 3: "shared object"}
        raise TargetError(
            f"{path}: an ELF {kinds.get(e_type, f'file of type {e_type}')}, not a core dump",
            "give the dump with -c and vmlinux/debug info with -s; " + ACCEPTED,
        )


def _check_libkdumpfile(path: str) -> None:
    if not getattr(drgn, "_with_libkdumpfile", True):
        raise TargetError(
            f"{path}: kdump-compressed dumps need drgn built with libkdumpfile",
            "install drgn from PyPI (its wheels include libkdumpfile), or convert the dump "
            "to ELF with 'makedumpfile -E'",
        )
