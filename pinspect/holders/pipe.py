"""Pipe buffers (vmsplice, splice): each buffer of a pipe holds one reference to its page.

Pipes are found through the open files of every process (``f_op`` is ``pipefifo_fops`` or
``pipeanon_fops``,
``private_data`` is the ``pipe_inode_info``). The ring is ``bufs[tail .. head)`` modulo
``ring_size`` (5.5+: commit "pipe: Use head and tail pointers for the ring, not
cursor and length"; older pipes with ``nrbufs``/``curbuf`` are counted as not read).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from drgn import FaultError, Object

from pinspect.holders import Hold, owner_label

if TYPE_CHECKING:
    from pinspect.holders import HolderContext

NAME = "pipe"
COUNTS_AS = "ref"
MAX_RING = 1 << 20  # buffers of one pipe (pipe-max-size is 1 MiB of pages by default)


def find(ctx: HolderContext) -> Iterator[Hold]:
    prog = ctx.prog
    pipes: dict[int, list] = {}
    # Anonymous pipes have their own file operations from 6.16 on (commit "pipe: don't
    # update {a,c,m}time for anonymous pipes"); FIFOs keep pipefifo_fops.
    for f in [*ctx.files_with_fops("pipefifo_fops"), *ctx.files_with_fops("pipeanon_fops")]:
        if f.private_data:
            pipes.setdefault(f.private_data, []).append(f)
    if not pipes:
        return
    pipe_type = prog.type("struct pipe_inode_info")
    if not pipe_type.has_member("head"):
        ctx.problems.add("pipe: pre-5.5 ring layout, not read")
        return
    buf_type = prog.type("struct pipe_buffer")
    size = buf_type.size or 40
    page_off = buf_type.member("page").offset  # type: ignore[union-attr]
    offset_off = buf_type.member("offset").offset  # type: ignore[union-attr]
    len_off = buf_type.member("len").offset  # type: ignore[union-attr]
    shift = ctx.kernel.page_shift
    for address, files in sorted(pipes.items()):
        label, pid, comm, fds = owner_label(NAME, files)
        try:
            pipe = Object(prog, pipe_type, address=address)
            head, tail = int(pipe.head), int(pipe.tail)
            ring = int(pipe.ring_size)
            bufs = pipe.bufs.value_()
        except FaultError:
            ctx.problems.add("pipe: unreadable pipe_inode_info")
            continue
        used = (head - tail) & 0xFFFFFFFF
        if not ring or ring > MAX_RING or ring & (ring - 1) or used > ring:
            ctx.problems.add("pipe: implausible ring (size or head/tail)")
            continue
        try:
            raw = prog.read(bufs, ring * size)
        except FaultError:
            ctx.problems.add("pipe: unreadable buffers")
            continue
        pages, spans = [], []
        for k in range(used):
            at = ((tail + k) & (ring - 1)) * size
            page = int.from_bytes(raw[at + page_off:at + page_off + 8], "little")
            if not page:
                continue
            offset = int.from_bytes(raw[at + offset_off:at + offset_off + 4], "little")
            length = int.from_bytes(raw[at + len_off:at + len_off + 4], "little")
            pages.append(page + (offset >> shift) * ctx.kernel.layout.size)
            spans.append(max(1, ((offset & ((1 << shift) - 1)) + length + (1 << shift) - 1)
                             >> shift))
        if pages:
            yield Hold(label, pages, spans, pid, comm, fds, address)
