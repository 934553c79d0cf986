"""Opening a target: a vmcore, the running kernel (/proc/kcore) or a QEMU guest over QMP.

:func:`open_program` returns a ``drgn.Program`` with the kernel's debug info loaded, or
raises a :class:`~pinspect.errors.PinspectError` that says what is missing and how to get it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence

import drgn
from drgn import MissingDebugInfoError, Program, ProgramFlags

from pinspect import kdumpfile
from pinspect.errors import DebugInfoError, TargetError

DEBUG_INFO_HINT = (
    "pass the kernel's vmlinux with -s PATH; for a distribution kernel install its debug "
    "package (Debian: linux-image-$(uname -r)-dbg, Ubuntu: linux-image-$(uname -r)-dbgsym, "
    "Fedora/RHEL: kernel-debuginfo) or set DEBUGINFOD_URLS"
)


def open_program(
    core: str | None = None,
    vmlinux: Sequence[str] = (),
    qemu: str | None = None,
) -> Program:
    """Open *core*, the QEMU guest at *qemu*, or (neither given) the running kernel."""
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
    load_kernel_debug_info(prog, vmlinux)
    return prog


def _open_core(path: str) -> Program:
    return kdumpfile.prepare_core(path).program()


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


def load_kernel_debug_info(prog: Program, vmlinux: Sequence[str] = ()) -> None:
    """Load vmlinux debug info from *vmlinux* or drgn's standard places; check it matches."""
    for path in vmlinux:
        if not os.path.isfile(path):
            raise DebugInfoError(f"debug info file {path} does not exist", DEBUG_INFO_HINT)
    try:
        prog.load_debug_info(vmlinux, main=True)
    except MissingDebugInfoError:
        pass  # checked below, with a better message
    kernel = prog.main_module()
    if kernel.debug_file_status == drgn.ModuleFileStatus.HAVE:
        return
    if vmlinux:
        wanted = kernel.build_id.hex() if kernel.build_id else None
        got = [f"{p} has build ID {build_id_of(p) or 'none'}" for p in vmlinux]
        raise DebugInfoError(
            "the debug info does not match this kernel: kernel build ID "
            f"{wanted or 'unknown'}, " + "; ".join(got),
            "use the vmlinux built together with this kernel",
        )
    raise DebugInfoError(f"no debug info found for kernel {_release(prog)}", DEBUG_INFO_HINT)


def _release(prog: Program) -> str:
    from pinspect.kernel import read_vmcoreinfo

    return read_vmcoreinfo(prog).get("OSRELEASE", "(unknown release)")


def build_id_of(path: str) -> str | None:
    """The GNU build ID of an ELF file, read from its section headers, or None."""
    try:
        with open(path, "rb") as f:
            ident = f.read(64)
            if ident[:4] != b"\x7fELF" or ident[4] != 2:
                return None
            endian = "<" if ident[5] == 1 else ">"
            shoff, = struct.unpack_from(endian + "Q", ident, 0x28)
            shentsize, shnum = struct.unpack_from(endian + "HH", ident, 0x3A)
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            for i in range(shnum):
                sh_type, = struct.unpack_from(endian + "I", table, i * shentsize + 4)
                if sh_type != 7:  # SHT_NOTE
                    continue
                offset, size = struct.unpack_from(endian + "QQ", table, i * shentsize + 0x18)
                f.seek(offset)
                notes = f.read(size)
                pos = 0
                while pos + 12 <= len(notes):
                    namesz, descsz, ntype = struct.unpack_from(endian + "III", notes, pos)
                    name_end = pos + 12 + ((namesz + 3) & ~3)
                    if ntype == 3 and notes[pos + 12:pos + 15] == b"GNU":
                        return notes[name_end:name_end + descsz].hex()
                    pos = name_end + ((descsz + 3) & ~3)
    except (OSError, struct.error):
        return None
    return None
