"""Kernel holders: the kernel objects that hold references to reported folios.

A holder is one module of this package with a ``NAME``, a ``COUNTS_AS`` (``"pin"``: each
reference is a FOLL_PIN pin, accounted against ``pins``; ``"ref"``: a plain reference,
accounted against ``extra``) and a function ``find(ctx)`` that yields a :class:`Hold` for every
kernel object it finds (a pipe, a ring, a per-CPU batch): the ``struct page`` each of its
references points at, how many pages each spans from there, and who holds it.
:func:`find_holders` runs every module in :data:`HOLDERS` once, maps the references to the
reported folios they touch in bulk (one count per reference and folio), and groups them by
holder. Adding a holder (RDMA umem, VFIO, AF_XDP, a GPU driver) is one new module listed in
:data:`HOLDERS`; see README.md, "Adding a kernel holder".

Walks must be bounded (:mod:`pinspect.bounded`); a read that fails is counted in
``ctx.problems`` and skipped.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np
from drgn import Object, Program
from drgn.helpers.linux.mm import page_to_pfn

from pinspect.bounded import Problems
from pinspect.kernel import Kernel, probe
from pinspect.procs import OpenFile, ProcIndex, proc_index

# The holder modules, in the order their holds are listed.
HOLDERS = ("io_uring", "pipe", "lru_batch")


@dataclass(frozen=True, slots=True)
class Hold:
    """The references one kernel object holds on pages: what a holder module's ``find()``
    yields (one per object, not per page: a dump may hold 100 000 references)."""

    label: str  # the holder as a row shows it: "pipe(pid 123 fd 5)", ...
    pages: Sequence[int]  # the struct page address each reference points at
    spans: Sequence[int] = ()  # pages each reference spans from there (a bvec of a large
    #                            folio spans several); empty: one page each
    pid: int | None = None  # the process that owns the holding object, if any
    comm: str | None = None
    fds: tuple[int, ...] = ()  # its fds of that object
    address: int = 0  # the holding kernel object (pipe_inode_info, io_ring_ctx, ...)
    transient: bool = False  # references the kernel drops by itself soon (LRU batches)


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

    def pfns(self, pages: Sequence[int]) -> np.ndarray:
        """The pfns of the struct pages at the addresses *pages* (int64; -1 where an address
        is not a struct page's)."""
        kernel = self.kernel
        size = kernel.layout.size
        if kernel.vmemmap is not None:
            try:
                address = np.asarray(pages, dtype=np.uint64)
            except OverflowError:  # garbage past 64 bits (a corrupted buffer): never a page
                address = np.array([p if 0 <= p < 1 << 64 else 0 for p in pages],
                                   dtype=np.uint64)
            offset = address - np.uint64(kernel.vmemmap)  # (wraps below vmemmap: masked)
            bad = (address < np.uint64(kernel.vmemmap)) | (offset % np.uint64(size) != 0)
            return np.where(bad, -1, (offset // np.uint64(size)).astype(np.int64))
        found = []
        for page in pages:
            try:
                found.append(int(page_to_pfn(Object(self.prog, "struct page *", page)).value_()))
            except (LookupError, ValueError, OverflowError):
                found.append(-1)
        return np.array(found, dtype=np.int64)


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


MAX_SPAN = 1 << 18  # pages one reference may span (a 1 GiB folio)


def _touched(heads: np.ndarray, ends: np.ndarray, pfns: np.ndarray,
             spans: np.ndarray) -> np.ndarray:
    """The index in *heads* of the folio each reference at *pfns* touches, once per reference
    and folio (a reference spanning several folios touches each)."""
    first = np.searchsorted(heads, pfns, side="right") - 1
    single = spans <= 1
    hit = first[single]
    inside = (hit >= 0) & (pfns[single] < ends[np.maximum(hit, 0)])
    touched = [hit[inside]]
    for pfn, span in zip(pfns[~single].tolist(), spans[~single].tolist(), strict=True):
        end = pfn + min(span, MAX_SPAN)
        lo = max(int(np.searchsorted(heads, pfn, side="right")) - 1, 0)
        hi = int(np.searchsorted(heads, end, side="left"))
        touched.append(np.array([i for i in range(lo, hi) if ends[i] > pfn], dtype=np.int64))
    return np.concatenate(touched)


def find_holders(prog: Program, folios: Sequence[tuple[int, int]]) -> HolderResult:
    """Every reference the holder modules find on the folios given as (head pfn, nr_pages),
    grouped per folio and holder."""
    kernel = probe(prog)
    ctx = HolderContext(prog, kernel, proc_index(prog), Problems())
    order = sorted(folios)
    heads = np.array([head for head, _ in order], dtype=np.int64)
    ends = heads + np.array([nr for _, nr in order], dtype=np.int64)
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
            if not len(hold.pages) or not len(heads):
                continue
            pfns = ctx.pfns(hold.pages)
            spans = (np.asarray(hold.spans, dtype=np.int64) if len(hold.spans)
                     else np.ones(len(pfns), dtype=np.int64))
            good = pfns >= 0
            if not good.all():
                ctx.problems.add(f"{module.NAME}: pointer that is no struct page",
                                 int((~good).sum()))
            index, counts = np.unique(_touched(heads, ends, pfns[good], spans[good]),
                                      return_counts=True)
            for i, n in zip(index.tolist(), counts.tolist(), strict=True):
                refs = held.setdefault(order[i][0], {})
                ref = refs.get(hold.label)
                if ref is None:
                    ref = refs[hold.label] = HeldRef(
                        hold.label, module.NAME, module.COUNTS_AS, 0, hold.pid, hold.comm,
                        list(hold.fds), hold.address, hold.transient)
                ref.count += n
    return HolderResult({h: list(r.values()) for h, r in held.items()}, ctx.problems, ran)
