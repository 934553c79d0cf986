"""Kernel holders: the kernel objects that hold references to reported folios.

A holder is one module of this package with a ``NAME``, a ``COUNTS_AS`` (``"pin"``: each hold
is a FOLL_PIN pin, accounted against ``pins``; ``"ref"``: a plain reference, accounted against
``extra``) and a function ``find(ctx)`` that yields a :class:`Hold` for every reference it
finds: the ``struct page`` it points at, how many pages from there it spans, and who holds it.
:func:`find_holders` runs every module in :data:`HOLDERS` once, maps each hold to the reported
folios it touches (one count per hold and folio), and groups them by holder. Adding a holder
(RDMA umem, VFIO, AF_XDP, a GPU driver) is one new module listed in :data:`HOLDERS`; see
README.md, "Adding a kernel holder".

Walks must be bounded (:mod:`pinspect.bounded`); a read that fails is counted in
``ctx.problems`` and skipped.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType

from drgn import Object, Program
from drgn.helpers.linux.mm import page_to_pfn

from pinspect.bounded import Problems
from pinspect.kernel import Kernel, probe
from pinspect.procs import OpenFile, ProcIndex, proc_index

# The holder modules, in the order their holds are listed.
HOLDERS = ("io_uring", "pipe", "lru_batch")


@dataclass(frozen=True, slots=True)
class Hold:
    """One reference a holder has on a page: what a holder module's ``find()`` yields."""

    page: int  # address of the struct page the reference points at
    label: str  # the holder as a row shows it: "pipe(pid 123 fd 5)", ...
    pid: int | None = None  # the process that owns the holding object, if any
    comm: str | None = None
    fds: tuple[int, ...] = ()  # its fds of that object
    address: int = 0  # the holding kernel object (pipe_inode_info, io_ring_ctx, ...)
    pages: int = 1  # pages spanned from ``page`` (a bvec of a large folio spans several)
    transient: bool = False  # a reference the kernel drops by itself soon (LRU batches)


@dataclass(slots=True)
class HeldRef:
    """The references one holder has on one folio: the JSON ``holders[]`` objects."""

    holder: str  # label: "io_uring(pid 96 fd 5)", "pipe(pid 96 fd 9,10)",
    #              "transient: lru batch (cpu 1)"
    kind: str  # the holder module: io_uring, pipe, lru_batch
    counts_as: str  # "pin" (explains FOLL_PIN pins) or "ref" (explains extra references)
    count: int  # references (pins) of this holder on the folio
    pid: int | None
    comm: str | None
    fds: list[int]
    address: int  # the kernel object holding them
    transient: bool


@dataclass
class HolderContext:
    """What a holder module's ``find()`` gets: the program, its kernel, its processes and
    open files (read once for all holders), and the problem counter."""

    prog: Program
    kernel: Kernel
    procs: ProcIndex
    problems: Problems

    def files_with_fops(self, symbol: str) -> list[OpenFile]:
        """Open files whose ``f_op`` is *symbol*, e.g. ``pipefifo_fops``."""
        return self.procs.files_with_fops(symbol)

    def pfn(self, page: int) -> int | None:
        """The pfn of the struct page at *page* (None: not a struct page address)."""
        kernel = self.kernel
        size = kernel.layout.size
        if kernel.vmemmap is not None:
            offset = page - kernel.vmemmap
            if offset < 0 or offset % size:
                return None
            return offset // size
        try:
            return int(page_to_pfn(Object(self.prog, "struct page *", page)).value_())
        except (LookupError, ValueError):
            return None


@dataclass
class HolderResult:
    """The result of :func:`find_holders`."""

    held: dict[int, list[HeldRef]]  # head pfn -> its holders
    problems: Problems
    holders: list[str] = field(default_factory=list)  # modules that ran


def modules() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{name}") for name in HOLDERS]


def owner_label(kind: str, files: Sequence[OpenFile]) -> tuple[str, int | None, str | None,
                                                               tuple[int, ...]]:
    """A holder's label from the open files that reach it: ``kind(pid P fd 3,4)``, the first
    process's pid, comm and fds (``+N`` more processes)."""
    if not files:
        return f"{kind}(no process)", None, None, ()
    first = min(files, key=lambda f: (f.proc.pid, f.fd)).proc
    fds = tuple(sorted(f.fd for f in files if f.proc == first))
    more = len({f.proc.pid for f in files}) - 1
    label = f"{kind}(pid {first.pid} fd {','.join(map(str, fds))})" + (f" +{more}" if more
                                                                        else "")
    return label, first.pid, first.comm, fds


def find_holders(prog: Program, folios: Sequence[tuple[int, int]]) -> HolderResult:
    """Every reference the holder modules find on the folios given as (head pfn, nr_pages),
    grouped per folio and holder."""
    kernel = probe(prog)
    ctx = HolderContext(prog, kernel, proc_index(prog), Problems())
    head_of: dict[int, int] = {}
    for head, nr in folios:
        for pfn in range(head, head + nr):
            head_of[pfn] = head
    held: dict[int, dict[str, HeldRef]] = {}
    ran = []
    for module in modules():
        ran.append(module.NAME)
        try:
            holds = list(module.find(ctx))
        except LookupError as e:  # a type or symbol this kernel (or its debug info) lacks
            ctx.problems.add(f"{module.NAME}: not read ({e})")
            continue
        for hold in holds:
            start = ctx.pfn(hold.page)
            if start is None:
                ctx.problems.add(f"{module.NAME}: pointer that is no struct page")
                continue
            touched = {head_of[p] for p in range(start, start + max(1, min(hold.pages, 1 << 18)))
                       if p in head_of}
            for head in touched:
                refs = held.setdefault(head, {})
                ref = refs.get(hold.label)
                if ref is None:
                    ref = refs[hold.label] = HeldRef(
                        hold.label, module.NAME, module.COUNTS_AS, 0, hold.pid, hold.comm,
                        list(hold.fds), hold.address, hold.transient)
                ref.count += 1
    return HolderResult({h: list(r.values()) for h, r in held.items()}, ctx.problems, ran)
