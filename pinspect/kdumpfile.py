"""Open kdump files that drgn cannot open on its own.

Two kinds of kdump-compressed files trip up drgn (through libkdumpfile):

* makedumpfile's *flattened* format (``makedumpfile -F``, and QEMU's ``dump-guest-memory``
  formats ``kdump-zlib``/``-lzo``/``-snappy``; only the ``kdump-raw-*`` formats that QEMU 8.2
  added are not flattened): a 4 KiB header, then records of
  ``{offset, size}`` (big-endian int64) followed by *size* bytes of data for that offset of the
  real file, then an end marker of two -1s.  :func:`prepare_core` rebuilds it once into a
  sparse, regular kdump file in the cache and reuses that copy afterwards.
* kdump headers without a usable utsname: QEMU fills in ``utsname.machine`` alone, and
  libkdumpfile trusts a utsname only with sysname "Linux", a release and a version, so it does
  not know the architecture: it cannot open the dump (or skips the CPU notes and cannot
  translate addresses).  drgn (>= 0.0.25) hands the platform of a :class:`drgn.Program` to
  libkdumpfile before the file, so :func:`prepare_core` infers the architecture from the dump
  (VMCOREINFO, the size of the ``NT_PRSTATUS`` notes, the machine name, the header's word
  size) and returns a :class:`drgn.Platform` to create the program with.  The file itself is
  left alone.

Usage::

    core = prepare_core(path)
    prog = core.program()  # drgn.Program(core.platform); prog.set_core_dump(core.path)
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import os
import platform as host_platform_mod
import re
import shutil
import stat
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import drgn

from pinspect.errors import TargetError

__all__ = [
    "CoreFile",
    "KdumpHeader",
    "RebuildStats",
    "arch_from_header",
    "default_cache_dir",
    "infer_platform",
    "iter_flat_records",
    "prepare_core",
    "read_kdump_header",
    "rebuild_flattened",
]

ELF_MAGIC = b"\x7fELF"
KDUMP_SIGNATURES = (b"KDUMP   ", b"DISKDUMP")
FLAT_SIGNATURE = b"makedumpfile"
FLAT_HEADER_SIZE = 4096  # the flattened header occupies one 4 KiB block
FLAT_TYPE = 1
FLAT_VERSION = 1
FLAT_RECORD = struct.Struct(">qq")  # offset, size; both -1 at the end of the stream

ET_CORE = 4
NT_PRSTATUS = 1
# utsname is 6 fields of 65 bytes each; machine is the fifth, after signature and version.
UTS_FIELD = 65
UTS_OFFSET = 12
UTS_MACHINE_OFFSET = UTS_OFFSET + 4 * UTS_FIELD

BLOCK = 8 << 20  # rebuild I/O unit: 8 MiB
TEMP_PREFIX = ".rebuild-"
ACCEPTED = (
    "accepted formats: ELF core (vmcore, /proc/kcore, QEMU dump-guest-memory), "
    "kdump-compressed ('KDUMP   '/'DISKDUMP' header) and makedumpfile's flattened format"
)


@dataclass(frozen=True)
class CoreFile:
    """A core dump ready for :meth:`drgn.Program.set_core_dump`."""

    path: str  # what drgn should open
    kind: str  # "elf" | "kdump" | "kdump-flattened" (the kind of the *source* file)
    platform: drgn.Platform | None  # pass to drgn.Program() if not None
    rebuilt: bool  # True if path is a rebuilt copy in the cache (flattened source)

    def program(self, vmcoreinfo: bytes | None = None) -> drgn.Program:
        """Create a :class:`drgn.Program` with the right platform and open the dump in it.

        *vmcoreinfo* overrides the dump's own (for dumps of kernels that shared none).
        Failures become :class:`TargetError`: libkdumpfile's arrive as plain ``Exception``.
        """
        prog = drgn.Program(self.platform, vmcoreinfo=vmcoreinfo)
        try:
            prog.set_core_dump(self.path)
        except PermissionError as e:
            raise TargetError(
                f"{self.path}: permission denied",
                "dumps are often readable by root only: run with sudo or chmod/chown the file",
            ) from e
        except Exception as e:
            text = str(e)
            hint = ""
            if "vmcoreinfo" in text.lower():
                hint = (
                    "the dump carries no VMCOREINFO: dump QEMU guests with -device vmcoreinfo "
                    "and the guest's qemu_fw_cfg driver loaded (CONFIG_FW_CFG_SYSFS)"
                )
            raise TargetError(f"cannot open {self.path} as a kernel dump: {text}", hint) from e
        return prog


def default_cache_dir() -> str:
    """``$PINSPECT_CACHE`` or ``~/.cache/pinspect``."""
    env = os.environ.get("PINSPECT_CACHE")
    if env:
        return env
    return os.path.join(os.path.expanduser("~"), ".cache", "pinspect")


def prepare_core(path: str, cache_dir: str | None = None) -> CoreFile:
    """Detect the format of the dump at *path* and make it openable by drgn.

    A flattened file is rebuilt once into ``<cache_dir>/cores/`` (the source file is never
    written to).  Raises :class:`TargetError` for unreadable, non-dump or truncated files.
    """
    try:
        st = os.stat(path)
    except OSError:
        _read_head(path, 1)  # raises the TargetError that fits
        raise
    if stat.S_ISDIR(st.st_mode):
        raise TargetError(f"{path}: is a directory, not a dump file", ACCEPTED)
    if not stat.S_ISREG(st.st_mode):
        raise TargetError(
            f"{path}: not a regular file (a pipe or device)",
            "save the dump to a file first: drgn reads dumps at random offsets",
        )
    head = _read_head(path, FLAT_HEADER_SIZE)
    if head.startswith(ELF_MAGIC):
        _check_elf_core(path, head)
        return CoreFile(path=path, kind="elf", platform=None, rebuilt=False)
    if head[:8] in KDUMP_SIGNATURES:
        _check_libkdumpfile(path)
        return CoreFile(path=path, kind="kdump", platform=infer_platform(path), rebuilt=False)
    if head.startswith(FLAT_SIGNATURE):
        out = _cached_rebuild(path, cache_dir if cache_dir is not None else default_cache_dir())
        inner = _read_head(out, 64)
        if inner.startswith(ELF_MAGIC):  # makedumpfile -F -E: a flattened ELF file
            _check_elf_core(path, inner)
            plat = None
        elif inner[:8] in KDUMP_SIGNATURES:
            _check_libkdumpfile(path)
            plat = infer_platform(out)
        else:
            raise TargetError(
                f"{path}: the flattened stream does not contain a kernel dump", ACCEPTED
            )
        return CoreFile(path=out, kind="kdump-flattened", platform=plat, rebuilt=True)
    if not head:
        raise TargetError(f"{path}: file is empty, not a kernel dump", ACCEPTED)
    raise TargetError(f"{path}: not a kernel dump (unknown magic {head[:8]!r})", ACCEPTED)


# --- reading and checking ------------------------------------------------------------------


def _read_head(path: str, n: int) -> bytes:
    """Read the first *n* bytes of *path*, turning OS errors into :class:`TargetError`."""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except FileNotFoundError:
        raise TargetError(f"{path}: no such file", "check the path of the dump") from None
    except IsADirectoryError:
        raise TargetError(f"{path}: is a directory, not a dump file", ACCEPTED) from None
    except PermissionError:
        raise TargetError(
            f"{path}: permission denied",
            "dumps are often readable by root only: run with sudo or chmod/chown the file",
        ) from None
    except OSError as e:
        raise TargetError(f"{path}: cannot read: {e.strerror or e}", "") from None


def _check_elf_core(path: str, head: bytes) -> None:
    if len(head) < 18:
        raise TargetError(f"{path}: truncated ELF header", ACCEPTED)
    order = "<" if head[5] == 1 else ">"
    (e_type,) = struct.unpack_from(order + "H", head, 16)
    if e_type != ET_CORE:
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


# --- flattened format ----------------------------------------------------------------------


def _cache_name(path: str, st: os.stat_result) -> tuple[str, str]:
    """(file name, prefix shared by every version of the same source path) in the cache."""
    abspath = os.path.abspath(path)
    where = hashlib.sha256(abspath.encode()).hexdigest()[:8]
    version = f"{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}"
    what = hashlib.sha256(version.encode()).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(path))[:64] or "core"
    prefix = f"{stem}-{where}-"
    return f"{prefix}{what}.kdump", prefix


def _cached_rebuild(path: str, cache_dir: str) -> str:
    """Return the rebuilt copy of flattened *path* in *cache_dir*, rebuilding it if needed."""
    st = os.stat(path)
    cores = os.path.join(cache_dir, "cores")
    name, prefix = _cache_name(path, st)
    out = os.path.join(cores, name)
    if os.path.isfile(out) and _read_head(out, 4) != b"":
        return out
    try:
        os.makedirs(cores, exist_ok=True)
    except OSError as e:
        raise TargetError(
            f"cannot create the cache directory {cores}: {e.strerror or e}",
            "set PINSPECT_CACHE to a writable directory",
        ) from None
    _remove_stale_temps(cores)
    if os.path.isfile(path):
        need = max(st.st_size - FLAT_HEADER_SIZE, 0)
        free = shutil.disk_usage(cores).free
        if free < need:
            raise TargetError(
                f"not enough disk space to rebuild the flattened dump {path}: the rebuilt file "
                f"takes up to {_size(need)}, {cores} has {_size(free)} free",
                "free some space, set PINSPECT_CACHE to a larger file system, or reassemble "
                "it yourself with 'makedumpfile -R out.kdump < dump'",
            )
    rebuild_flattened(path, out)
    for old in os.listdir(cores):  # copies of earlier versions of the same source file
        if old.startswith(prefix) and old != name:
            try:
                os.unlink(os.path.join(cores, old))
            except OSError:
                pass
    return out


def _remove_stale_temps(cores: str, max_age: float = 24 * 3600) -> None:
    """Remove temporary files that an interrupted rebuild left behind a day or more ago."""
    now = time.time()
    try:
        with os.scandir(cores) as it:
            for entry in it:
                if entry.name.startswith(TEMP_PREFIX):
                    try:
                        if now - entry.stat().st_mtime > max_age:
                            os.unlink(entry.path)
                    except OSError:
                        pass
    except OSError:
        pass


def _size(n: int) -> str:
    """A byte count for people: 512 bytes, 1.5 MiB, 3.2 GiB."""
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def _read_exact(f: BinaryIO, n: int) -> bytes:
    """Read up to *n* bytes, looping over short reads (pipes); fewer only at end of file."""
    data = f.read(n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = f.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def iter_flat_records(f: BinaryIO, path: str) -> Iterator[tuple[int, int]]:
    """Yield ``(offset, size)`` of each record of a flattened stream positioned after its
    header; the caller must consume exactly *size* bytes of data before the next step."""
    pos = FLAT_HEADER_SIZE
    while True:
        raw = _read_exact(f, FLAT_RECORD.size)
        if len(raw) < FLAT_RECORD.size:
            raise _Truncated(pos)
        offset, size = FLAT_RECORD.unpack(raw)
        if offset == -1 and size == -1:
            return
        if offset < 0 or size < 0:
            raise TargetError(
                f"{path}: corrupt flattened record at byte {pos}: offset {offset}, size {size}",
                "the file is damaged; re-copy it or dump again",
            )
        pos += FLAT_RECORD.size + size
        yield offset, size


class _Truncated(Exception):
    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.pos = pos


_ZEROS = bytes(BLOCK)


class _SparseWriter:
    """Collects data for the output file in one preallocated block, coalescing records that
    follow each other, and writes it out with pwrite.  An all-zero block is skipped when
    nothing was written to its range before, so it stays a hole."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray(BLOCK)
        self.view = memoryview(self.buf)
        self.fill = 0  # bytes of buf in use
        self.buf_off = 0  # file offset of buf[0]
        # the ranges written so far: sorted, disjoint [start, end) intervals
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.size = 0  # logical size of the output
        self.data_bytes = 0

    def read_from(self, f: BinaryIO, offset: int, size: int) -> int:
        """Read *size* bytes of record data from *f* for file offset *offset*; returns the
        number of bytes read (less than *size* only at end of file)."""
        readinto = f.readinto  # type: ignore[attr-defined]
        view = self.view
        done = 0
        while done < size:
            fill = self.fill
            if fill and (offset != self.buf_off + fill or fill == BLOCK):
                self.flush()
                fill = 0
            if not fill:
                self.buf_off = offset
            n = min(size - done, BLOCK - fill)
            got = readinto(view[fill : fill + n]) or 0
            if not got:
                break
            self.fill = fill + got
            done += got
            offset += got
        self.data_bytes += done
        end = self.buf_off + self.fill
        if end > self.size:
            self.size = end
        return done

    def flush(self) -> None:
        if not self.fill:
            return
        data = self.view[: self.fill]
        off, end = self.buf_off, self.buf_off + self.fill
        zero = data[0] == 0 and data[-1] == 0 and _ZEROS.startswith(data)
        if not (zero and not self._overlaps(off, end)):
            done = 0
            while done < len(data):
                done += os.pwrite(self.fd, data[done:], off + done)
            self._mark(off, end)
        data.release()
        self.fill = 0

    def _overlaps(self, off: int, end: int) -> bool:
        i = bisect.bisect_right(self.ends, off)  # the first range that ends after off
        return i < len(self.starts) and self.starts[i] < end

    def _mark(self, off: int, end: int) -> None:
        starts, ends = self.starts, self.ends
        i = bisect.bisect_right(starts, off) - 1
        if i >= 0 and ends[i] >= off:  # extends (or lies in) range i
            if end <= ends[i]:
                return
            ends[i] = end
        else:
            i += 1
            starts.insert(i, off)
            ends.insert(i, end)
        j = i + 1  # absorb the ranges that range i now reaches
        while j < len(starts) and starts[j] <= ends[i]:
            j += 1
        if j > i + 1:
            ends[i] = max(ends[i], ends[j - 1])
            del starts[i + 1 : j], ends[i + 1 : j]

    def finish(self) -> None:
        self.flush()
        os.ftruncate(self.fd, self.size)


@dataclass(frozen=True)
class RebuildStats:
    """What :func:`rebuild_flattened` did."""

    records: int
    data_bytes: int  # payload bytes in the stream
    size: int  # logical size of the rebuilt file


def rebuild_flattened(src: str, dst: str) -> RebuildStats:
    """Rebuild the flattened dump *src* into a regular file *dst* (written to a temporary
    name in the same directory and renamed at the end).  Memory use is bounded by
    :data:`BLOCK`; all-zero data is left as holes."""
    ddir = os.path.dirname(os.path.abspath(dst))
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=ddir)
    except OSError as e:
        raise TargetError(
            f"cannot create a file in {ddir}: {e.strerror or e}",
            "set PINSPECT_CACHE to a writable directory",
        ) from None
    ok = False
    try:
        try:
            f = open(src, "rb", buffering=1 << 20)
        except OSError:
            _read_head(src, 1)  # raises the right TargetError
            raise
        with f:
            stats = _rebuild_stream(f, src, fd)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.chmod(tmp, 0o600)  # dumps hold the whole of kernel memory
        os.replace(tmp, dst)
        ok = True
        return stats
    except OSError as e:
        hints = {
            errno.ENOSPC: "free some space or set PINSPECT_CACHE to a larger file system",
            errno.EDQUOT: "free some space or set PINSPECT_CACHE to a larger file system",
            errno.EFBIG: "a file size limit (ulimit -f, or the file system's) is in the way; "
            "set PINSPECT_CACHE to another file system",
        }
        hint = hints.get(e.errno or 0, "")
        raise TargetError(f"rebuilding {src} into {dst} failed: {e.strerror or e}", hint) from None
    finally:
        if fd >= 0:
            os.close(fd)
        if not ok:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def _rebuild_stream(f: BinaryIO, src: str, fd: int) -> RebuildStats:
    header = _read_exact(f, FLAT_HEADER_SIZE)
    if len(header) < 32 or not header.startswith(FLAT_SIGNATURE):
        raise TargetError(f"{src}: not a makedumpfile flattened file", ACCEPTED)
    ftype, fversion = struct.unpack_from(">qq", header, 16)
    if ftype != FLAT_TYPE or fversion != FLAT_VERSION:
        raise TargetError(
            f"{src}: unsupported flattened format type {ftype} version {fversion}",
            "only type 1 version 1 is known; reassemble it with 'makedumpfile -R'",
        )
    if len(header) < FLAT_HEADER_SIZE:
        raise TargetError(
            f"{src}: truncated flattened dump: only {len(header)} bytes, the header alone "
            f"takes {FLAT_HEADER_SIZE}; recovered 0 bytes of dump data",
            "the file was cut short (disk full or interrupted copy?); copy or dump it again",
        )
    w = _SparseWriter(fd)
    records = 0
    read = f.read
    unpack = FLAT_RECORD.unpack
    pos = FLAT_HEADER_SIZE
    try:
        while True:
            raw = read(16)
            if len(raw) < 16:
                raw += _read_exact(f, 16 - len(raw))  # a pipe's short read, or the end
                if len(raw) < 16:
                    raise _Truncated(pos)
            offset, size = unpack(raw)
            if offset < 0 or size < 0:
                if offset == -1 and size == -1:
                    break
                raise TargetError(
                    f"{src}: corrupt flattened record at byte {pos}: offset {offset}, size {size}",
                    "the file is damaged; re-copy it or dump it again",
                )
            records += 1
            if w.read_from(f, offset, size) < size:
                raise _Truncated(pos)
            pos += 16 + size
    except _Truncated:
        raise TargetError(
            f"{src}: truncated flattened dump: the stream ends after {records} records "
            f"without its end marker; recovered {w.data_bytes} bytes of dump data "
            f"(a rebuilt file would be at least {_size(w.size)})",
            "the file was cut short (disk full or interrupted copy?); copy or dump it again",
        ) from None
    w.finish()
    return RebuildStats(records=records, data_bytes=w.data_bytes, size=w.size)


# --- architecture of a kdump file ----------------------------------------------------------


@dataclass(frozen=True)
class KdumpHeader:
    """The fields of a kdump (diskdump) header that matter for the architecture."""

    machine: str
    uts_sane: bool  # libkdumpfile trusts the utsname (and so knows the machine)
    header_version: int
    is_64_bit: bool
    little_endian: bool
    block_size: int
    vmcoreinfo: bytes
    notes: bytes


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def read_kdump_header(path: str) -> KdumpHeader:
    """Parse the main header and sub-header of the (unflattened) kdump file at *path*."""
    try:
        with open(path, "rb") as f:
            hdr = f.read(512)
            layout = None
            # (block_size offset, 64-bit?) for the 64- and 32-bit main header layouts.
            for bs_off, is64 in ((428, True), (416, False)):
                for order in ("<", ">"):
                    bs, sub_blocks, bitmap_blocks = struct.unpack_from(order + "iii", hdr, bs_off)
                    if (
                        _pow2(bs)
                        and 512 <= bs <= 1 << 20
                        and sub_blocks >= 0
                        and (bitmap_blocks > 0)
                    ):
                        layout = (bs, is64, order)
                        break
                if layout:
                    break
            if layout is None:
                raise TargetError(f"{path}: corrupt kdump header (no valid block size)", "")
            bs, is64, order = layout
            (version,) = struct.unpack_from(order + "i", hdr, 8)
            f.seek(bs)
            sub = f.read(128)
            vmci = notes = b""
            if version >= 3 and len(sub) >= 64:
                for voff, vsz, noff, nsz in _sub_header_fields(sub, order, is64, bs):
                    if version < 4:
                        noff = nsz = 0
                    vmci = _read_at(f, voff, vsz)
                    notes = _read_at(f, noff, nsz)
                    break
    except OSError as e:
        raise TargetError(f"{path}: cannot read the kdump header: {e.strerror or e}", "") from None

    fields = [hdr[UTS_OFFSET + i * UTS_FIELD : UTS_OFFSET + (i + 1) * UTS_FIELD] for i in range(6)]
    sysname, _, release, kversion, machine, _ = (f.split(b"\0", 1)[0] for f in fields)
    # libkdumpfile uses the utsname only if it is NUL-terminated, says "Linux" and has
    # release, version and machine; QEMU fills in the machine alone.
    sane = (
        sysname == b"Linux"
        and all(f[-1:] == b"\0" for f in fields[:5])
        and bool(release and kversion and machine)
    )
    return KdumpHeader(
        machine=machine.decode("ascii", "replace"),
        uts_sane=sane,
        header_version=version,
        is_64_bit=is64,
        little_endian=order == "<",
        block_size=bs,
        vmcoreinfo=vmci,
        notes=notes,
    )


def _sub_header_fields(
    sub: bytes, order: str, is64: bool, bs: int
) -> Iterator[tuple[int, int, int, int]]:
    """Yield plausible (vmcoreinfo offset, size, notes offset, size) for the sub-header."""
    if is64:
        layouts = [(order + "QQQQ", 32)]
    else:  # i386 packs 64-bit fields to 4 bytes, 32-bit ARM pads them to 8
        layouts = [(order + "QIQI", 20), (order + "4xQI4xQI", 20)]
    for fmt, off in layouts:
        voff, vsz, noff, nsz = struct.unpack_from(fmt, sub, off)
        if all(o == 0 or (o >= bs and s < 1 << 24) for o, s in ((voff, vsz), (noff, nsz))):
            yield voff, vsz, noff, nsz


def _read_at(f: BinaryIO, off: int, size: int) -> bytes:
    if not off or not size:
        return b""
    f.seek(off)
    return f.read(size)


# NT_PRSTATUS descriptor sizes -> architecture (64-bit little-endian unless noted).
_PRSTATUS_SIZES: dict[tuple[int, bool], drgn.Architecture] = {
    (336, True): drgn.Architecture.X86_64,  # also s390x, which is big-endian
    (144, True): drgn.Architecture.I386,
    (392, True): drgn.Architecture.AARCH64,
    (148, True): drgn.Architecture.ARM,
    (504, True): drgn.Architecture.PPC64,
    (504, False): drgn.Architecture.PPC64,
    (376, True): drgn.Architecture.RISCV64,
    (336, False): drgn.Architecture.S390X,
}

# VMCOREINFO keys that only one architecture's kernel writes.
_VMCOREINFO_KEYS: list[tuple[bytes, drgn.Architecture]] = [
    (b"SYMBOL(init_top_pgt)=", drgn.Architecture.X86_64),
    (b"NUMBER(pgtable_l5_enabled)=", drgn.Architecture.X86_64),
    (b"NUMBER(X86_PAE)=", drgn.Architecture.I386),
    (b"NUMBER(kimage_voffset)=", drgn.Architecture.AARCH64),
    (b"NUMBER(TCR_EL1_T1SZ)=", drgn.Architecture.AARCH64),
    (b"SYMBOL(mmu_psize_defs)=", drgn.Architecture.PPC64),
    (b"SYMBOL(lowcore_ptr)=", drgn.Architecture.S390X),
    (b"NUMBER(KERNEL_LINK_ADDR)=", drgn.Architecture.RISCV64),
    (b"NUMBER(va_kernel_pa_offset)=", drgn.Architecture.RISCV64),
]

# Host machine names (os.uname().machine) and kdump machine names -> drgn architecture.
_MACHINES: dict[str, drgn.Architecture] = {
    "x86_64": drgn.Architecture.X86_64,
    "amd64": drgn.Architecture.X86_64,
    "i386": drgn.Architecture.I386,
    "i686": drgn.Architecture.I386,
    "aarch64": drgn.Architecture.AARCH64,
    "arm64": drgn.Architecture.AARCH64,
    "arm": drgn.Architecture.ARM,
    "armv7l": drgn.Architecture.ARM,
    "ppc64": drgn.Architecture.PPC64,
    "ppc64le": drgn.Architecture.PPC64,
    "s390x": drgn.Architecture.S390X,
    "riscv64": drgn.Architecture.RISCV64,
}


def _iter_notes(data: bytes, order: str) -> Iterator[tuple[bytes, int, bytes]]:
    """Yield (name, type, desc) of the ELF notes in *data* (4-byte aligned)."""
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from(order + "III", data, pos)
        pos += 12
        name = data[pos : pos + namesz].rstrip(b"\0")
        pos += (namesz + 3) & ~3
        desc = data[pos : pos + descsz]
        pos += (descsz + 3) & ~3
        if len(desc) < descsz:
            return
        yield name, ntype, desc


def _platform(arch: drgn.Architecture, hdr: KdumpHeader) -> drgn.Platform:
    if arch == drgn.Architecture.PPC64:  # the only bi-endian one we map
        flags = drgn.PlatformFlags.IS_64_BIT
        if hdr.little_endian:
            flags |= drgn.PlatformFlags.IS_LITTLE_ENDIAN
        return drgn.Platform(arch, flags)
    return drgn.Platform(arch)


def arch_from_header(hdr: KdumpHeader) -> tuple[drgn.Architecture | None, str]:
    """Infer the architecture of a kdump header; returns (arch or None, how it was found)."""
    order = "<" if hdr.little_endian else ">"
    notes = list(_iter_notes(hdr.notes, order))
    vmcoreinfo = hdr.vmcoreinfo or b"".join(
        desc for name, _, desc in notes if name == b"VMCOREINFO"
    )
    for key, arch in _VMCOREINFO_KEYS:
        if key in vmcoreinfo:
            return arch, f"VMCOREINFO has {key.decode().rstrip('=')}"
    m = re.search(rb"^OSRELEASE=(\S+)", vmcoreinfo, re.M)
    if m:
        for machine, arch in _MACHINES.items():
            if re.search(rb"[-.+_]" + machine.encode() + rb"\b", m.group(1)):
                return arch, f"VMCOREINFO OSRELEASE={m.group(1).decode('ascii', 'replace')}"
    for name, ntype, desc in notes:
        if name == b"CORE" and ntype == NT_PRSTATUS:
            found = _PRSTATUS_SIZES.get((len(desc), hdr.little_endian))
            if found is not None:
                return found, f"NT_PRSTATUS note of {len(desc)} bytes"
            break
    return None, ""


def infer_platform(path: str) -> drgn.Platform | None:
    """The platform to create the :class:`drgn.Program` with for the kdump file *path*, or
    None when libkdumpfile finds the machine in the header by itself.

    QEMU writes no usable utsname, so libkdumpfile cannot tell the architecture.  In order,
    this trusts VMCOREINFO, the size of the NT_PRSTATUS notes (which libkdumpfile checks
    against the architecture), the machine name in the header, and finally the host if its
    word size matches the header's.
    """
    hdr = read_kdump_header(path)
    if hdr.uts_sane and hdr.machine in _MACHINES:
        return None
    arch, _ = arch_from_header(hdr)
    if arch is None:
        arch = _MACHINES.get(hdr.machine)
    if arch is None:
        host = _MACHINES.get(host_platform_mod.machine())
        host_64 = host not in (drgn.Architecture.I386, drgn.Architecture.ARM)
        if host is not None and host_64 == hdr.is_64_bit:
            arch = host
        elif hdr.is_64_bit and hdr.little_endian:
            arch = drgn.Architecture.X86_64
        elif not hdr.is_64_bit and hdr.little_endian:
            arch = drgn.Architecture.I386
        else:
            return None
    return _platform(arch, hdr)
