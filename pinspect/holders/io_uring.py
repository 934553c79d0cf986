"""io_uring registered (fixed) buffers: each ring's ``io_mapped_ubuf``s hold FOLL_PIN pins
(``pin_user_pages(FOLL_WRITE | FOLL_LONGTERM)``) on the pages of their ``bvec`` array.

Rings are found through the open files of every process (``f_op == &io_uring_fops``,
``private_data`` is the ``io_ring_ctx``). Where the buffers live differs:

* ``ctx->user_bufs`` (``struct io_mapped_ubuf **``) and ``ctx->nr_user_bufs``, up to 6.12;
* ``ctx->buf_table`` (``struct io_rsrc_data``: ``nr`` and ``nodes``, each
  ``io_rsrc_node->buf``), 6.13+ (the io_uring/rsrc rework of 6.13 that replaced
  ``user_bufs``), or ``ctx->buf_table.data`` where it is wrapped in
  ``struct io_buf_table``.

One bvec is one pin on its folio: 6.1 has one bvec per page (a THP's 512 pins), and 6.3+
coalesces a large folio into one bvec and unpins the rest (one pin), which is what the folio's
``_pincount`` shows either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
from drgn import FaultError, Object

from pinspect.holders import Hold, owner_label
from pinspect.procs import probe_has_pinned_bit

if TYPE_CHECKING:
    from pinspect.holders import HolderContext

NAME = "io_uring"
COUNTS_AS = "pin"
MAX_BUFS = 1 << 16  # IORING_MAX_REG_BUFFERS (16384) with room
MAX_BVECS = 1 << 20  # bvecs of one buffer (a 1 GiB buffer is 2^18 pages)


def _buffers(ctx: HolderContext, ring: Object) -> list[int]:
    """Addresses of the ring's io_mapped_ubufs."""
    prog = ctx.prog
    if ring.type_.has_member("user_bufs"):
        n = min(int(ring.nr_user_bufs), MAX_BUFS)
        array = ring.user_bufs
        if not n or not array.value_():
            return []
        target = array.type_.type.unqualified()
        if target.kind.name == "POINTER":
            raw = prog.read(array.value_(), 8 * n)
            return [int.from_bytes(raw[8 * i:8 * i + 8], "little") for i in range(n)]
        return [array.value_() + i * (target.size or 0) for i in range(n)]
    if ring.type_.has_member("buf_table"):
        table = ring.buf_table
        if table.type_.has_member("data"):
            table = table.data
        n = min(int(table.nr), MAX_BUFS)
        if not n or not table.nodes.value_():
            return []
        raw = prog.read(table.nodes.value_(), 8 * n)
        buf_at = prog.type("struct io_rsrc_node").member("buf").offset
        found = []
        for i in range(n):
            node = int.from_bytes(raw[8 * i:8 * i + 8], "little")
            if node:
                found.append(int.from_bytes(prog.read(node + buf_at, 8), "little"))
        return found
    ctx.problems.add("io_uring: no registered buffer table in struct io_ring_ctx")
    return []


def find(ctx: HolderContext) -> Iterator[Hold]:
    prog = ctx.prog
    rings: dict[int, list] = {}
    for f in ctx.files_with_fops("io_uring_fops"):
        if f.private_data:
            rings.setdefault(f.private_data, []).append(f)
    if not rings:
        return
    ubuf = prog.type("struct io_mapped_ubuf")
    count = ubuf.member("nr_bvecs")
    count_at, count_size = count.offset, count.type.size or 4
    bvecs = ubuf.member("bvec")
    bvecs_at = bvecs.offset
    # Upstream 5.10's io_uring (without the backports Debian's 5.10 carries) pointed at a
    # separate bvec array; later ones embed it at the end of the io_mapped_ubuf.
    apart = bvecs.type.unqualified().kind.name == "POINTER"
    bvec = prog.type("struct bio_vec")
    bvec_type = np.dtype({"names": ["page", "len", "offset"], "formats": ["<u8", "<u4", "<u4"],
                          "offsets": [bvec.member(name).offset  # type: ignore[union-attr]
                                      for name in ("bv_page", "bv_len", "bv_offset")],
                          "itemsize": bvec.size or 16})
    shift = ctx.kernel.page_shift
    mask = (1 << shift) - 1
    accounted = []
    for address, files in sorted(rings.items()):
        label, pid, comm, fds = owner_label(NAME, files)
        try:
            ring = Object(prog, "struct io_ring_ctx", address=address)
            if ring.type_.has_member("mm_account") and ring.mm_account.value_():
                accounted.append(ring.mm_account.value_())
            buffers = _buffers(ctx, ring)
        except FaultError:
            ctx.problems.add("io_uring: unreadable ring")
            continue
        # Each buffer's bvecs are read raw (two reads, no Object: a ring may register 16384
        # buffers) and decoded together.
        raw = bytearray()
        for buf in buffers:
            if not buf:
                continue
            try:
                n = int.from_bytes(prog.read(buf + count_at, count_size), "little")
                if n > MAX_BVECS:
                    ctx.problems.add("io_uring: implausible bvec count")
                    continue
                if n:
                    at = buf + bvecs_at
                    if apart:
                        at = int.from_bytes(prog.read(at, 8), "little")
                    raw += prog.read(at, n * bvec_type.itemsize)
            except FaultError:
                ctx.problems.add("io_uring: unreadable buffer")
        vecs = np.frombuffer(bytes(raw), dtype=bvec_type)
        vecs = vecs[vecs["page"] != 0]
        if not len(vecs):
            continue
        offset = vecs["offset"].astype(np.uint64)
        pages = vecs["page"] + (offset >> np.uint64(shift)) * np.uint64(ctx.kernel.layout.size)
        spans = np.maximum(1, ((offset & np.uint64(mask)) + vecs["len"] + np.uint64(mask))
                           >> np.uint64(shift))
        yield Hold(label, pages.tolist(), spans.astype(np.int64).tolist(), pid, comm, fds,
                   address)
    probe_has_pinned_bit(prog, accounted)
