"""makedumpfile's flattened format, rebuilt once into a regular kdump file in the cache.

``makedumpfile -F``, and QEMU's ``dump-guest-memory`` formats ``kdump-zlib``/``-lzo``/
``-snappy`` (only the ``kdump-raw-*`` formats that QEMU 8.2 added are not flattened), write a
4 KiB header, then records of ``{offset, size}`` (big-endian int64) followed by *size* bytes of
data for that offset of the real file, then an end marker of two -1s.  drgn (through
libkdumpfile) cannot read that, so :func:`cached_rebuild` rebuilds it once into a sparse,
regular kdump file in the cache and reuses that copy afterwards.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import os
import re
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pinspect.dumps.files import ACCEPTED, read_head
from pinspect.errors import TargetError

__all__ = [
    "FLAT_HEADER_SIZE",
    "FLAT_SIGNATURE",
    "RebuildStats",
    "cached_rebuild",
    "iter_flat_records",
    "rebuild_flattened",
]

FLAT_SIGNATURE = b"makedumpfile"
FLAT_HEADER_SIZE = 4096  # the flattened header occupies one 4 KiB block
FLAT_TYPE = 1
FLAT_VERSION = 1
FLAT_RECORD = struct.Struct(">qq")  # offset, size; both -1 at the end of the stream

BLOCK = 8 << 20  # rebuild I/O unit: 8 MiB
TEMP_PREFIX = ".rebuild-"


def _cache_name(path: str, st: os.stat_result) -> tuple[str, str]:
    """(file name, prefix shared by every version of the same source path) in the cache."""
    abspath = os.path.abspath(path)
    where = hashlib.sha256(abspath.encode()).hexdigest()[:8]
    version = f"{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}"
    what = hashlib.sha256(version.encode()).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(path))[:64] or "core"
    prefix = f"{stem}-{where}-"
    return f"{prefix}{what}.kdump", prefix


def cached_rebuild(path: str, cache_dir: str) -> str:
    """Return the rebuilt copy of flattened *path* in *cache_dir*, rebuilding it if needed."""
    st = os.stat(path)
    cores = os.path.join(cache_dir, "cores")
    name, prefix = _cache_name(path, st)
    out = os.path.join(cores, name)
    if os.path.isfile(out) and read_head(out, 4) != b"":
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
            read_head(src, 1)  # raises the right TargetError
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
