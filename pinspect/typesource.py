"""Where the kernel's types come from: the debug info a target is read with.

A :class:`TypeSource` loads the types, symbols and variables of the kernel into a
:class:`drgn.Program`, or says what is missing and how to get it:

* :class:`DwarfSource` (``DWARF``): the kernel's vmlinux with DWARF, found by drgn or given
  with ``-s``; symbols from its ELF symbol table.
* :class:`BtfSource` (``BTF``): the kernel's own BTF (``/sys/kernel/btf/vmlinux`` on the
  running kernel, the ``.BTF`` section in kernel memory otherwise) as a drgn type finder, and
  kallsyms as the symbol finder; the globals pinspect and the drgn helpers it calls read are
  served by an object finder from :mod:`pinspect.variables` (address from kallsyms, type from
  BTF's per-CPU variables or the declared C type), enumerators from BTF's enums.
* :class:`AutoSource` (the default): DWARF when drgn finds it, BTF otherwise.

A CTF source (Oracle's kernels) would be one more class with ``name`` and ``load``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import drgn
from drgn import (
    FaultError,
    FindObjectFlags,
    MissingDebugInfoError,
    Object,
    Program,
    ProgramFlags,
    SymbolKind,
)

from pinspect import debuginfo, elf, kallsyms, vmcoreinfo
from pinspect.btf import Btf, BtfTypes
from pinspect.errors import DebugInfoError
from pinspect.variables import c_type, declared

__all__ = ["AUTO", "BTF", "DEBUG_INFO_HINT", "DWARF", "AutoSource", "BtfSource", "DwarfSource",
           "SourceInfo", "TypeSource", "source_info"]

DEBUG_INFO_HINT = (
    "pass the kernel's vmlinux with -s PATH; for a distribution kernel install its debug "
    "package (Debian: linux-image-$(uname -r)-dbg, Ubuntu: linux-image-$(uname -r)-dbgsym, "
    "Fedora/RHEL: kernel-debuginfo) or set DEBUGINFOD_URLS"
)

BTF_HINT = ("pass the kernel's vmlinux with -s PATH, or drop --btf to use DWARF from the "
            "kernel's debug package")

SYSFS_BTF = "/sys/kernel/btf/vmlinux"

TYPE_SOURCE_KEY = "pinspect_type_source"
_INFO_KEY = "pinspect_source_info"


@dataclass(frozen=True)
class SourceInfo:
    """Which type and symbol sources a program was opened with, from where, and what each
    lacks compared with vmlinux's DWARF and symbol table (for ``info``)."""

    types: str
    types_origin: str
    types_lack: str
    symbols: str
    symbols_origin: str
    symbols_lack: str


def source_info(prog: Program) -> SourceInfo | None:
    """What :func:`record` noted for *prog*; for a program pinspect did not open (a drgn
    session), the DWARF drgn loaded, or None."""
    found = prog.cache.get(_INFO_KEY)
    if isinstance(found, SourceInfo):
        return found
    return _dwarf_info(prog)


def _dwarf_info(prog: Program) -> SourceInfo | None:
    """The DWARF source of *prog*'s kernel, if drgn has its debug info."""
    try:
        kernel = prog.main_module()
    except LookupError:
        return None
    if kernel.debug_file_status != drgn.ModuleFileStatus.HAVE:
        return None
    path = kernel.debug_file_path or "vmlinux"
    return SourceInfo("DWARF", path, "#define constants (pinspect.constants has those it needs)",
                      "ELF symbols", path, "nothing")


def record(prog: Program, info: SourceInfo) -> None:
    prog.cache[TYPE_SOURCE_KEY] = info.types
    prog.cache[_INFO_KEY] = info


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
        found = _dwarf_info(prog)
        if found is not None:
            record(prog, found)
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


class BtfSource:
    """The kernel's own BTF for types, kallsyms for symbols, no vmlinux needed."""

    name = "BTF"

    def load(self, prog: Program, paths: Sequence[str] = ()) -> None:
        """Load kallsyms and BTF from the target itself and register drgn finders."""
        if paths:
            raise DebugInfoError("-s gives DWARF, but --btf asks for the kernel's own BTF",
                                 "drop -s, or drop --btf")
        kallsyms.load(prog)
        btf = Btf(*_btf_blob(prog))  # BtfFormatError is a DebugInfoError
        if not btf.ids_named("page", (4,)):  # BTF_KIND_STRUCT
            raise DebugInfoError(f"{btf.origin} has no struct page: it does not describe a "
                                 "kernel", BTF_HINT)
        types = BtfTypes(prog, btf)
        prog.register_type_finder("pinspect-btf", types.find_type, enable_index=-1)
        prog.register_object_finder("pinspect-btf", _object_finder(types), enable_index=-1)
        record(prog, SourceInfo(
            "BTF", f"{btf.origin} ({len(btf.data) / (1 << 20):.1f} MiB, {btf.count - 1} types)",
            "#define constants (pinspect.constants has those it needs), types of globals other "
            "than per-CPU ones (pinspect.variables declares them), file and line information",
            "kallsyms", kallsyms.origin(prog),
            "symbol sizes (taken as the distance to the next symbol), module symbols"))


BTF = BtfSource()


class AutoSource:
    """DWARF when drgn finds it (or ``-s`` gives it), the kernel's BTF otherwise."""

    name = "DWARF or BTF"

    def load(self, prog: Program, paths: Sequence[str] = ()) -> None:
        if paths:
            DWARF.load(prog, paths)  # the user chose a vmlinux: no fallback from it
            return
        try:
            DWARF.load(prog)
        except DebugInfoError as no_dwarf:
            try:
                BTF.load(prog)
            except DebugInfoError as no_btf:
                raise DebugInfoError(
                    f"{no_dwarf.message}, and no usable BTF: {no_btf.message}",
                    no_dwarf.hint + "; a kernel built with CONFIG_DEBUG_INFO_BTF needs "
                    "neither (dumps: Linux 6.0 or later)") from no_btf


AUTO = AutoSource()


def _btf_blob(prog: Program) -> tuple[bytes, str]:
    """The kernel's BTF and where it was read from."""
    local = ProgramFlags.IS_LIVE | ProgramFlags.IS_LOCAL
    if prog.flags & local == local:
        try:
            with open(SYSFS_BTF, "rb") as f:
                return f.read(), SYSFS_BTF
        except FileNotFoundError:
            raise DebugInfoError(f"{SYSFS_BTF} does not exist: the running kernel was built "
                                 "without CONFIG_DEBUG_INFO_BTF", DEBUG_INFO_HINT) from None
        except OSError as e:
            raise DebugInfoError(f"cannot read {SYSFS_BTF}: {e}", DEBUG_INFO_HINT) from e
    try:
        start = prog.symbol("__start_BTF").address
        stop = prog.symbol("__stop_BTF").address
    except LookupError:
        raise DebugInfoError("kallsyms has no __start_BTF: the kernel was built without "
                             "CONFIG_DEBUG_INFO_BTF", DEBUG_INFO_HINT) from None
    if not 0 < stop - start < 1 << 30:
        raise DebugInfoError(f"kallsyms places the BTF at {start:#x}-{stop:#x}, which is not "
                             "plausible", DEBUG_INFO_HINT)
    try:
        return prog.read(start, stop - start), f"kernel memory at {start:#x}"
    except FaultError as e:
        raise DebugInfoError(f"the kernel's BTF at {start:#x} is missing from the target "
                             f"(cannot read {e.address:#x})", DEBUG_INFO_HINT) from e


def _object_finder(types: BtfTypes):  # type: ignore[no-untyped-def]
    """A drgn object finder for the globals of :mod:`pinspect.variables` and BTF's
    enumerators, per-CPU variables and functions."""
    prog, btf = types.prog, types.btf

    def address(name: str, size: int | None) -> int | None:
        try:
            symbols = prog.symbols(name)
        except LookupError:
            return None
        if len(symbols) > 1 and size:
            # kallsyms keeps static symbols: several files may have one of this name.
            sized = [s for s in symbols if s.size == size]
            symbols = sized or symbols
        return symbols[0].address if symbols else None

    def has_symbol(name: str) -> bool:
        try:
            prog.symbol(name)
        except LookupError:
            return False
        return True

    found: dict[tuple[str, FindObjectFlags], Object | None] = {}

    def find(prog_: Program, name: str, flags: FindObjectFlags,
             filename: str | None) -> Object | None:
        if filename:
            return None
        key = (name, flags)
        if key not in found:
            found[key] = look_up(name, flags)
        return found[key]

    def look_up(name: str, flags: FindObjectFlags) -> Object | None:
        if flags & FindObjectFlags.CONSTANT:
            constant = types.constant(name)
            if constant is not None:
                return constant
        if flags & FindObjectFlags.VARIABLE:
            var_id = btf.var(name)
            decl = declared(name)
            if var_id is not None:
                type_ = types.type(var_id)
            elif decl is not None and not decl.synthetic:
                type_ = prog.type(c_type(decl, has_symbol))
            else:
                return None
            try:
                size: int | None = drgn.sizeof(type_)
            except (TypeError, ValueError):
                size = None  # an array of unknown length
            at = address(name, size)
            if at is not None:
                return Object(prog, type_, address=at)
        if flags & FindObjectFlags.FUNCTION:
            func_id = btf.func(name)
            if func_id is not None:
                at = address(name, None)
                if at is not None:
                    return Object(prog, types.type(func_id), address=at)
            else:
                # 5.10's BTF (pahole of its time) describes only the functions ftrace can
                # trace; vmemmap_populate, which drgn looks up to learn the memory model, is
                # not one. A text symbol is still a function: of unknown prototype.
                try:
                    text = [s for s in prog.symbols(name) if s.kind == SymbolKind.FUNC]
                except LookupError:
                    return None
                if text:
                    return Object(prog, prog.function_type(prog.void_type(), ()),
                                  address=text[0].address)
        return None

    return find
