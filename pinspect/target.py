"""Opening a target: a vmcore, the running kernel (/proc/kcore) or a QEMU guest over QMP.

:func:`open_program` returns a ``drgn.Program`` with the kernel's debug info loaded, or
raises a :class:`~pinspect.errors.PinspectError` that says what is missing and how to get it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from drgn import Program, ProgramFlags

from pinspect.dumps import prepare_core
from pinspect.errors import TargetError
from pinspect.typesource import AUTO, TYPE_SOURCE_KEY, TypeSource


def open_program(
    core: str | None = None,
    vmlinux: Sequence[str] = (),
    qemu: str | None = None,
    types: TypeSource = AUTO,
) -> Program:
    """Open *core*, the QEMU guest at *qemu*, or (neither given) the running kernel, and load
    the kernel's types from *types* (with the files in *vmlinux*): by default DWARF where drgn
    finds it and the kernel's own BTF otherwise.

    Returns a ``drgn.Program`` (a vmcore: ELF or kdump-compressed, flattened dumps rebuilt
    once; live: ``/proc/kcore``). Raises :class:`~pinspect.errors.PinspectError` with a hint
    when the target or its debug info is missing or does not match."""
    if core is not None and qemu is not None:
        raise TargetError("two targets given: a dump (-c) and a QEMU guest (--qemu)",
                          "give one of them")
    if core is not None:
        prog = _open_core(core)
        where = core
    elif qemu is not None:
        prog = Program()
        try:
            prog.set_qemu_qmp(qemu)
        except (OSError, ValueError) as e:
            raise TargetError(f"cannot attach to the QEMU guest at {qemu}: {e}",
                              "start QEMU with -qmp unix:PATH,server=on,wait=off "
                              "and -device vmcoreinfo") from e
        where = f"QEMU guest at {qemu}"
    else:
        prog = _open_live()
        where = "the running kernel"
    if not prog.flags & ProgramFlags.IS_LINUX_KERNEL:
        raise TargetError(
            f"{where} does not identify itself as a Linux kernel (no VMCOREINFO)",
            "QEMU dumps need -device vmcoreinfo and the guest's fw_cfg driver "
            "(CONFIG_FW_CFG_SYSFS, module qemu_fw_cfg)",
        )
    types.load(prog, vmlinux)
    prog.cache.setdefault(TYPE_SOURCE_KEY, types.name)
    return prog


def type_source_name(prog: Program) -> str:
    """The name of the type source *prog* was opened with ("DWARF" for a program that
    pinspect did not open: drgn loads DWARF)."""
    return str(prog.cache.get(TYPE_SOURCE_KEY, "DWARF"))


def _open_core(path: str) -> Program:
    return prepare_core(path).program()


def _open_live() -> Program:
    if not os.path.exists("/proc/kcore"):
        raise TargetError("/proc/kcore does not exist",
                          "this kernel was built without CONFIG_PROC_KCORE; use -c VMCORE")
    if not os.access("/proc/kcore", os.R_OK):
        raise TargetError("cannot read /proc/kcore: permission denied",
                          "run pinspect as root (sudo pinspect ...)")
    prog = Program()
    try:
        prog.set_kernel()
    except PermissionError as e:
        raise TargetError(f"cannot read the running kernel: {e}",
                          "run pinspect as root (sudo pinspect ...)") from e
    except (OSError, ValueError) as e:
        raise TargetError(f"cannot open the running kernel: {e}") from e
    return prog
