"""The reverse map: for each reported folio, every process that maps it, at which address,
through which VMA and file.

The kernel's own structures are walked, as ``rmap_walk()`` does:

* anonymous folios (``folio->mapping`` = ``anon_vma | PAGE_MAPPING_ANON``): the ``anon_vma``'s
  interval tree of ``anon_vma_chain``s, each naming a VMA;
* file and shmem folios (``mapping`` = the ``address_space``): its ``i_mmap`` tree of VMAs
  (``vma->shared.rb``);
* KSM folios (``PAGE_MAPPING_KSM``): the stable node's list of ``rmap_item``s, each with its
  mm, address and the ``anon_vma`` of the VMA it was merged in; as ``rmap_walk_ksm()`` does, that
  anon_vma's tree gives the VMA (the one of the item's mm that covers the address).

Each tree is walked once, whatever the number of reported folios in it; then every folio is
answered from the VMAs read. A VMA maps folio index *i* at
``vm_start + (i - vm_pgoff) * PAGE_SIZE`` when that falls inside it. Where a tree offers more
candidate VMAs than the folio has mappings (a forked child's copy-on-write, a file mapped but
not faulted in everywhere), each candidate is checked in its page tables
(``follow_pfn()``). The mm of a VMA gives its processes from one walk of the task list
(:mod:`pinspect.procs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from drgn import FaultError, Object, Program, offsetof
from drgn.helpers.linux.mm import follow_pfn

from pinspect.bounded import Problems, hlist_nodes, rb_nodes
from pinspect.kernel import Kernel, probe
from pinspect.procs import ProcIndex, file_path, proc_index
from pinspect.scan import read_page_bytes, struct_page_address

PAGE_MAPPING_ANON = 1
PAGE_MAPPING_KSM = 3  # PAGE_MAPPING_ANON | PAGE_MAPPING_MOVABLE

# vm_flags bits (include/linux/mm.h; these have kept their values since 4.3, VM_UFFD_MISSING's
# introduction). 6.19+ kernels name them in an enum (VMA_READ_BIT, ...; commit "mm: introduce
# VMA flags bitmap type"), which wins where present.
VM_FLAG_BITS = {
    "read": 0, "write": 1, "exec": 2, "shared": 3, "mayread": 4, "maywrite": 5,
    "mayexec": 6, "mayshare": 7, "growsdown": 8, "uffd_missing": 9, "pfnmap": 10,
    "uffd_wp": 12, "locked": 13, "io": 14, "seq_read": 15, "rand_read": 16, "dontcopy": 17,
    "dontexpand": 18, "lockonfault": 19, "account": 20, "noreserve": 21, "hugetlb": 22,
    "sync": 23, "arch_1": 24, "wipeonfork": 25, "dontdump": 26, "softdirty": 27,
    "mixedmap": 28, "hugepage": 29, "nohugepage": 30, "mergeable": 31,
}
# The ones worth a reader's attention (the may* bits and read hints are left out).
SHOWN_FLAGS = ("read", "write", "exec", "shared", "growsdown", "pfnmap", "locked", "io",
               "dontcopy", "dontexpand", "lockonfault", "hugetlb", "wipeonfork", "mixedmap",
               "hugepage", "nohugepage", "mergeable", "uffd_missing", "uffd_wp")


@dataclass(slots=True)
class Mapper:
    """One process mapping a folio: the JSON ``mappers[]`` objects of a page."""

    pid: int | None  # the process (thread group leader) whose mm holds the VMA; None: unknown
    tgid: int | None
    comm: str | None
    vaddr: int  # first address of the folio's part in this VMA
    vaddr_end: int  # end of that part (exclusive): vaddr + PAGE_SIZE for a small page
    vma: int  # address of the vm_area_struct
    vm_flags: int  # raw vma->vm_flags
    flags: list[str]  # the notable vm_flags by name: read, write, shared, locked, io, ...
    file: str  # the file as /proc/PID/maps shows it, [anon], [shmem], SYSV..., memfd:...
    mm: int  # the mm_struct
    pinned_vm: int | None  # mm->pinned_vm
    has_pinned: bool | None  # MMF_HAS_PINNED: FOLL_PIN ran on this mm at some point
    verified: bool  # checked in the page tables (there was more than one candidate)
    others: list[int] = field(default_factory=list)  # more pids sharing the mm (CLONE_VM)


@dataclass
class ReverseMap:
    """The result of :func:`reverse_map`."""

    mappers: dict[int, list[Mapper]]  # head pfn -> its mappers
    unresolved: int  # folios with page-table mappings of which none was found
    problems: Problems
    trees: int = 0  # anon_vma, i_mmap and stable-node trees walked
    unavailable: str | None = None  # why no reverse map could be made (types missing)

    def warnings(self) -> list[str]:
        return self.problems.lines()


@dataclass(frozen=True, slots=True)
class _Vma:
    address: int
    start: int
    end: int
    pgoff: int
    mm: int
    vm_flags: int
    file: int


def vm_flag_names(prog: Program, vm_flags: int) -> list[str]:
    """The notable flags of *vm_flags* by name."""
    bits = prog.cache.get("pinspect_vm_flag_bits")
    if bits is None:
        bits = dict(VM_FLAG_BITS)
        try:
            enum = prog.constant("VMA_READ_BIT").type_
            for name, value in enum.enumerators or ():  # type: ignore[union-attr]
                if name.startswith("VMA_") and name.endswith("_BIT"):
                    bits[name[4:-4].lower()] = value
        except LookupError:
            pass
        prog.cache["pinspect_vm_flag_bits"] = bits
    return [n for n in SHOWN_FLAGS if n in bits and vm_flags >> bits[n] & 1]


class _Reader:
    def __init__(self, prog: Program, kernel: Kernel, procs: ProcIndex,
                 problems: Problems) -> None:
        self.prog = prog
        self.kernel = kernel
        self.procs = procs
        self.problems = problems
        self.page_shift = kernel.page_shift
        vma_type = prog.type("struct vm_area_struct")
        self.vma_type = vma_type
        self.vm_flags_member = "vm_flags"
        rb = prog.type("struct rb_node")
        self.rb_left = rb.member("rb_left").offset  # type: ignore[union-attr]
        self.rb_right = rb.member("rb_right").offset  # type: ignore[union-attr]
        self.vma_shared_rb = offsetof(vma_type, "shared.rb")
        avc = prog.type("struct anon_vma_chain")
        self.avc_rb = offsetof(avc, "rb")
        self.avc_vma = offsetof(avc, "vma")
        self.vmas: dict[int, _Vma | None] = {}
        self.paths: dict[int, str] = {}
        self.trees: dict[int, list[_Vma]] = {}
        self.ksm: dict[int, list[tuple[_Vma, int]]] = {}  # stable node -> its items
        # per VMA: pid, tgid, comm, flag names, path, pinned_vm, has_pinned, other pids
        self.vma_parts: dict[int, tuple[int | None, int | None, str | None, list[str], str,
                                         int | None, bool | None, list[int]]] = {}

    def vma(self, address: int) -> _Vma | None:
        if address in self.vmas:
            return self.vmas[address]
        try:
            v = Object(self.prog, self.vma_type, address=address)
            found: _Vma | None = _Vma(address, v.vm_start.value_(), v.vm_end.value_(),
                                      v.vm_pgoff.value_(), v.vm_mm.value_(),
                                      v.vm_flags.value_(), v.vm_file.value_())
        except FaultError:
            self.problems.add("vm_area_struct: unreadable")
            found = None
        self.vmas[address] = found
        return found

    def anon_tree(self, anon_vma: int) -> list[_Vma]:
        """The VMAs of *anon_vma*'s interval tree of anon_vma_chains."""
        if anon_vma in self.trees:
            return self.trees[anon_vma]
        vmas = []
        try:
            root = Object(self.prog, "struct anon_vma", address=anon_vma).rb_root
            first = (root.rb_root.rb_node if root.type_.has_member("rb_root")
                     else root.rb_node).value_()
        except FaultError:
            self.problems.add("anon_vma: unreadable")
            first = 0
        for node in rb_nodes(self.prog, first, self.rb_left, self.rb_right, self.problems,
                             "anon_vma tree"):
            avc = node - self.avc_rb
            try:
                vma = self.vma(int.from_bytes(self.prog.read(avc + self.avc_vma, 8), "little"))
            except FaultError:
                self.problems.add("anon_vma_chain: unreadable")
                continue
            if vma is not None:
                vmas.append(vma)
        self.trees[anon_vma] = vmas
        return vmas

    def file_tree(self, mapping: int) -> list[_Vma]:
        """The VMAs of *mapping*'s i_mmap tree."""
        if mapping in self.trees:
            return self.trees[mapping]
        vmas = []
        try:
            first = Object(self.prog, "struct address_space",
                           address=mapping).i_mmap.rb_root.rb_node.value_()
        except FaultError:
            self.problems.add("address_space: unreadable")
            first = 0
        for node in rb_nodes(self.prog, first, self.rb_left, self.rb_right, self.problems,
                             "i_mmap tree"):
            vma = self.vma(node - self.vma_shared_rb)
            if vma is not None:
                vmas.append(vma)
        self.trees[mapping] = vmas
        return vmas

    def ksm_items(self, stable_node: int) -> list[tuple[_Vma, int]]:
        """(VMA, address) of each rmap_item of a KSM stable node (struct ksm_stable_node,
        before 6.0 struct stable_node): the VMA of the item's mm that covers its address in the
        tree of the item's anon_vma, else a stand-in (address 0) of that one page."""
        if stable_node in self.ksm:
            return self.ksm[stable_node]
        items: list[tuple[_Vma, int]] = []
        # The "ksm_" prefix came with 6.1 (commit 21fbd59136e0 "ksm: add the ksm prefix to the
        # names of the ksm private structures"); before: struct stable_node, struct rmap_item
        # (members hlist, mm, address, anon_vma unchanged: deb510's and deb61's DWARF).
        for type_name in ("struct ksm_stable_node", "struct stable_node"):
            try:
                node_type = self.prog.type(type_name)
                item_type = self.prog.type(type_name.replace("stable_node", "rmap_item"))
                break
            except LookupError:
                continue
        else:
            self.problems.add("KSM: no stable_node type")
            self.ksm[stable_node] = items
            return items
        try:
            first = Object(self.prog, node_type, address=stable_node).hlist.first.value_()
        except FaultError:
            self.problems.add("KSM stable node: unreadable")
            first = 0
        hoff = offsetof(item_type, "hlist")
        page_mask = ~((1 << self.page_shift) - 1)
        for node in hlist_nodes(self.prog, first, self.problems, "KSM rmap items"):
            try:
                item = Object(self.prog, item_type, address=node - hoff)
                # the address's low bits are KSM's own flags, all below PAGE_SIZE (mm/ksm.c:
                # SEQNR_MASK 0xff, UNSTABLE_FLAG 0x100, STABLE_FLAG 0x200 since 3.x, unchanged
                # in 6.1 and 6.12)
                mm, address = item.mm.value_(), item.address.value_() & page_mask
                anon_vma = item.anon_vma.value_()
            except FaultError:
                self.problems.add("KSM rmap item: unreadable")
                continue
            vma = next((v for v in (self.anon_tree(anon_vma) if anon_vma else [])
                        if v.mm == mm and v.start <= address < v.end), None)
            items.append((vma or _Vma(0, address, address + (1 << self.page_shift), 0, mm, 0, 0),
                          address))
        self.ksm[stable_node] = items
        return items

    def path(self, vma: _Vma) -> str:
        if not vma.file:
            return "[ksm]" if not vma.address else "[anon]"
        found = self.paths.get(vma.file)
        if found is None:
            found = self.paths[vma.file] = file_path(self.prog, vma.file, self.problems)
        return found

    def maps(self, vma: _Vma, pfn: int, vaddr: int) -> bool:
        """Whether *vma*'s mm maps *vaddr* to a pfn of the folio at head *pfn*."""
        try:
            got = follow_pfn(Object(self.prog, "struct mm_struct *", vma.mm), vaddr).value_()
        except (FaultError, ValueError, LookupError):
            return False
        return bool(got == pfn)

    def mapper(self, vma: _Vma, start: int, end: int, verified: bool) -> Mapper:
        # what depends on the VMA alone is worked out once per VMA (not per page)
        # (keyed by identity: a _Vma lives as long as the reader's caches, and hashing its
        # fields for each of 100 000 folios costs more than the rest of this function)
        parts = self.vma_parts.get(id(vma))
        if parts is None:
            procs = self.procs.owners_of_mm(vma.mm)
            info = self.procs.mm_info(vma.mm)
            first = procs[0] if procs else None
            parts = self.vma_parts[id(vma)] = (
                first.pid if first else None, first.tgid if first else None,
                first.comm if first else None, vm_flag_names(self.prog, vma.vm_flags),
                self.path(vma), info.pinned_vm, info.has_pinned, [p.pid for p in procs[1:]])
        pid, tgid, comm, flags, path, pinned_vm, has_pinned, others = parts
        # (positional: keywords cost a third of the time for 100 000 folios)
        return Mapper(pid, tgid, comm, start, end, vma.address, vma.vm_flags, list(flags), path,
                      vma.mm, pinned_vm, has_pinned, verified, list(others))


def _mapping_words(prog: Program, kernel: Kernel, pfn: int) -> tuple[int, int]:
    layout = kernel.layout
    base = struct_page_address(kernel, pfn)
    data = prog.read(base + layout.mapping, 8)
    index = prog.read(base + layout.index, 8)
    return int.from_bytes(data, "little"), int.from_bytes(index, "little")


def _mapping_words_bulk(kernel: Kernel, pfns: Sequence[int],
                        span: int = 512) -> dict[int, tuple[int, int]]:
    """``mapping`` and ``index`` of the struct pages of *pfns*, read a run of up to *span*
    pages at a time (one read per run instead of two per page: the pinned pages of a process
    sit close together). Pfns whose run cannot be read are left out (the caller reads those
    one by one, counting the failures)."""
    layout = kernel.layout
    size, mapping_at, index_at = layout.size, layout.mapping, layout.index
    found: dict[int, tuple[int, int]] = {}
    ordered = sorted(set(pfns))
    i = 0
    while i < len(ordered):
        first = ordered[i]
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] - first < span:
            j += 1
        try:
            data = read_page_bytes(kernel, first, ordered[j] - first + 1)
        except (FaultError, LookupError):
            data = b""
        for pfn in ordered[i:j + 1]:
            at = (pfn - first) * size
            if at + size <= len(data):
                found[pfn] = (int.from_bytes(data[at + mapping_at:at + mapping_at + 8], "little"),
                              int.from_bytes(data[at + index_at:at + index_at + 8], "little"))
        i = j + 1
    return found


def reverse_map(prog: Program, folios: Sequence[tuple[int, int, int]]) -> ReverseMap:
    """The mappers of each folio given as (head pfn, nr_pages, mapcount).

    Trees are walked once per anon_vma, address_space or KSM stable node; a folio whose
    ``struct page`` cannot be read, or with mappings none of which is found, counts as
    unresolved; failed reads, loops and cut walks are counted in ``problems``."""
    kernel = probe(prog)
    problems = Problems()
    try:
        procs = proc_index(prog)
        reader = _Reader(prog, kernel, procs, problems)
    except LookupError as e:  # a dump's debug info without the mm types (pinspect's samples)
        problems.add(f"reverse map unavailable: {e}")
        return ReverseMap({}, 0, problems, 0, str(e))
    shift = kernel.page_shift
    result: dict[int, list[Mapper]] = {}
    unresolved = 0
    words = _mapping_words_bulk(kernel, [f[0] for f in folios])
    for pfn, nr_pages, mapcount in folios:
        try:
            mapping, index = words.get(pfn) or _mapping_words(prog, kernel, pfn)
        except FaultError:
            problems.add("struct page: unreadable")
            unresolved += 1
            continue
        if not mapping or mapcount <= 0:
            continue
        kind = mapping & 3
        base = mapping & ~3
        found: list[Mapper] = []
        if kind == PAGE_MAPPING_KSM:
            for vma, address in reader.ksm_items(base):
                m = reader.mapper(vma, address, address + (1 << shift), False)
                m.file = "[ksm]"  # anonymous memory, merged: the mapping says so
                found.append(m)
        elif kind in (0, PAGE_MAPPING_ANON):
            vmas = reader.anon_tree(base) if kind else reader.file_tree(base)
            hits = []
            for vma in vmas:
                start = vma.start + ((index - vma.pgoff) << shift)
                end = start + (nr_pages << shift)
                lo, hi = max(start, vma.start), min(end, vma.end)
                if lo < hi:
                    hits.append((vma, lo, hi))
            check = len(hits) > (mapcount if nr_pages == 1 else 1)
            for vma, lo, hi in hits:
                if check:
                    want = pfn + ((lo - (vma.start + ((index - vma.pgoff) << shift))) >> shift)
                    if not reader.maps(vma, want, lo):
                        continue
                found.append(reader.mapper(vma, lo, hi, check))
        else:  # PAGE_MAPPING_MOVABLE alone: not a user page
            continue
        if not found:
            unresolved += 1
        result[pfn] = found
    for name, n in procs.problems.counts.items():
        problems.add(name, n)
    return ReverseMap(result, unresolved, problems, len(reader.trees) + len(reader.ksm))
