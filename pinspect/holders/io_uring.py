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
        found = []
        for i in range(n):
            node = int.from_bytes(raw[8 * i:8 * i + 8], "little")
            if node:
                found.append(Object(prog, "struct io_rsrc_node", address=node).buf.value_())
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
    bvec = prog.type("struct bio_vec")
    bsize = bvec.size or 16
    page_off = bvec.member("bv_page").offset  # type: ignore[union-attr]
    len_off = bvec.member("bv_len").offset  # type: ignore[union-attr]
    offset_off = bvec.member("bv_offset").offset  # type: ignore[union-attr]
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
        for ubuf in buffers:
            if not ubuf:
                continue
            try:
                u = Object(prog, "struct io_mapped_ubuf", address=ubuf)
                n = int(u.nr_bvecs)
                if n > MAX_BVECS:
                    ctx.problems.add("io_uring: implausible bvec count")
                    continue
                raw = prog.read(u.bvec.address_, n * bsize) if n else b""
            except FaultError:
                ctx.problems.add("io_uring: unreadable buffer")
                continue
            for i in range(n):
                at = i * bsize
                page = int.from_bytes(raw[at + page_off:at + page_off + 8], "little")
                length = int.from_bytes(raw[at + len_off:at + len_off + 4], "little")
                offset = int.from_bytes(raw[at + offset_off:at + offset_off + 4], "little")
                if not page:
                    continue
                pages = max(1, ((offset & mask) + length + mask) >> shift)
                yield Hold(page + (offset >> shift) * ctx.kernel.layout.size, label, pid, comm,
                           fds, address, pages)
    probe_has_pinned_bit(prog, accounted)
