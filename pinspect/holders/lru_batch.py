"""Per-CPU LRU batches: a folio just added to (or moved on) the LRU waits in a per-CPU batch
that holds one reference until the batch is drained. Transient: labelled
``transient: lru batch (cpu N)``, so that it is not blamed as a pinner.

The batches are ``cpu_fbatches`` (6.1+: the series of "mm/swap: convert lru_add to a
folio_batch", which made ``struct cpu_fbatches``) or ``lru_pvecs`` (5.8 to 6.0), plus
``lru_rotate`` (up to 6.2) and the mlock batch (``mlock_pvec`` 6.1,
``mlock_fbatch`` 6.2+). Every ``struct folio_batch`` or ``struct pagevec`` member is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from drgn import FaultError, Object
from drgn.helpers.linux.cpumask import for_each_possible_cpu
from drgn.helpers.linux.percpu import per_cpu

from pinspect.holders import Hold
from pinspect.variables import variable

if TYPE_CHECKING:
    from pinspect.holders import HolderContext

NAME = "lru_batch"
COUNTS_AS = "ref"
PER_CPU = ("cpu_fbatches", "lru_pvecs", "lru_rotate", "mlock_fbatch", "mlock_pvec")
BATCH_TYPES = {"folio_batch": "folios", "pagevec": "pages"}


def _batches(obj: Object, path: str, depth: int = 0) -> Iterator[tuple[str, Object]]:
    """The folio_batch and pagevec members of *obj* (two levels deep)."""
    for member in obj.type_.unqualified().members or ():
        if member.name is None:
            continue
        t = member.type.unqualified()
        if t.kind.name != "STRUCT":
            continue
        if t.tag in BATCH_TYPES:
            yield f"{path}.{member.name}", obj.member_(member.name)
        elif depth < 1:
            yield from _batches(obj.member_(member.name), f"{path}.{member.name}", depth + 1)


def find(ctx: HolderContext) -> Iterator[Hold]:
    prog = ctx.prog
    try:
        cpus = list(for_each_possible_cpu(prog))
    except (LookupError, FaultError):
        ctx.problems.add("lru batches: no possible-CPU mask")
        return
    for name in PER_CPU:
        var = variable(prog, name)
        if var is None:
            continue
        for cpu in cpus:
            label = f"transient: lru batch (cpu {cpu})"
            try:
                obj = per_cpu(var, cpu)
                for _where, batch in _batches(obj, name):
                    array = batch.member_(BATCH_TYPES[batch.type_.unqualified().tag or ""])
                    nr = min(int(batch.nr), len(array))
                    raw = prog.read(array.address_, 8 * nr) if nr else b""
                    pages = [page for i in range(nr)
                             if (page := int.from_bytes(raw[8 * i:8 * i + 8], "little"))]
                    if pages:
                        yield Hold(label, pages, address=batch.address_, transient=True)
            except FaultError:
                ctx.problems.add("lru batches: unreadable per-CPU batch")
