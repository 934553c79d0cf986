"""The page scenario shared by every sample: which pfn holds what.

Every folio is described once here; the kernel builder turns the description
into struct pages, page_ext records and allocator state, and the truth builder
derives the expected answers from the same description."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import pairwise

# Zone layout (4 KiB pfns).  Sections are 1 << (SECTION_SIZE_BITS - PAGE_SHIFT)
# = 1024 pages.  Normal has a one-section hole.
SECTION_SIZE_BITS = 22
PAGEBLOCK_ORDER = 9

ZONES = {
    # name: (start pfn, end pfn)
    "DMA": (0, 0),
    "DMA32": (0x1000, 0x1800),
    "Normal": (0x100000, 0x101000),
    "Movable": (0x101000, 0x101400),
}
HOLES = [(0x100800, 0x100C00)]
RAM = [(0x1000, 0x1800), (0x100000, 0x100800), (0x100C00, 0x101400)]

# memblock (reserved) region at the start of DMA32: kernel image first
MEMBLOCK = (0x1000, 0x1300)

# pageblock migratetypes by pageblock start pfn (everything else Movable)
PAGEBLOCKS = {
    0x1000: "Unmovable",
    0x1200: "Unmovable",
    0x1400: "CMA",
    0x1600: "Movable",
    0x100000: "Movable",
    0x100200: "Movable",
    0x100400: "CMA",
    0x100600: "CMA",
    0x100C00: "Unmovable",
    0x100E00: "Reclaimable",
    0x101000: "Movable",
    0x101200: "Movable",
}


@dataclass(frozen=True)
class CmaArea:
    name: str
    base_pfn: int
    count: int
    order_per_bit: int
    allocated: tuple[tuple[int, int], ...]  # pfn ranges handed out by cma_alloc
    # the kernel's counters (CONFIG_CMA_SYSFS, 6.10+ for released): pages cma_release() gave
    # back and pages of failed cma_alloc() calls; nr_pages_succeeded = allocated + released
    released: int = 0
    failed: int = 0
    # 6.14+ multi-range struct cma: pfns at which a new struct cma_memrange starts (where the
    # layout has ranges; one range elsewhere)
    splits: tuple[int, ...] = ()

    def ranges(self, multi: bool) -> list[tuple[int, int]]:
        """(base_pfn, count) of each range: one unless *multi* (struct cma_memrange)."""
        edges = [self.base_pfn, *(self.splits if multi else ()), self.base_pfn + self.count]
        return [(lo, hi - lo) for lo, hi in pairwise(edges)]


CMA_AREAS = (
    CmaArea("reserved", 0x1400, 0x200, 0, ((0x1400, 0x1440), (0x1480, 0x14C0)),
            released=0x40, failed=0x80),
    CmaArea("vidbuf", 0x100400, 0x400, 2,
            ((0x100400, 0x100480), (0x100500, 0x100540), (0x100700, 0x100740)),
            released=0x100, failed=0x400, splits=(0x100600,)),
)


def zone_of(pfn: int) -> str:
    """Name of the zone (a key of ZONES) that spans pfn."""
    for name, (s, e) in ZONES.items():
        if s <= pfn < e:
            return name
    raise ValueError(hex(pfn))


def pageblock_mt(pfn: int) -> str:
    """Migratetype name of the pageblock holding pfn."""
    return PAGEBLOCKS.get(pfn >> PAGEBLOCK_ORDER << PAGEBLOCK_ORDER, "Movable")


def cma_area_of(pfn: int) -> CmaArea | None:
    """The CMA area that holds pfn, if any."""
    for c in CMA_AREAS:
        if c.base_pfn <= pfn < c.base_pfn + c.count:
            return c
    return None


@dataclass
class Folio:
    """One allocated folio (or non-compound allocation head)."""

    pfn: int
    # anon ksm shmem file slab pgtable kernel movable_ops; reserved (a driver's page with
    # PG_reserved), offline (balloon page: PageOffline, no movable_ops), balloon (PageOffline
    # with the balloon's movable_ops)
    kind: str
    order: int = 0
    mapcount: int = 0
    pins: int = 0  # FOLL_PIN pins
    extra: int = 0  # references nobody expects (get_page, FOLL_GET)
    flags: tuple[str, ...] = ()  # additional PG_ names
    alloc: str = "anon_fault"  # allocation stack key (stacks.py)
    pin_stack: str | None = None  # GUP stack of the pins / extra refs
    migration_failed: bool = False  # a CMA allocation failed on this page
    note: str = ""
    # pinner variants: put records after the failure (stack keys)
    puts: tuple[str, ...] = ()
    pid: int = 1
    comm: str = "init"
    compound: bool = True  # large folios are compound; False = plain high-order
    file: str | None = None  # shmem/file folios: the FileSpec key of their file (None: the
    #                          default shmem or ext4 mapping of pages no process maps)

    @property
    def nr_pages(self) -> int:
        return 1 << self.order


@dataclass
class FreedRecord:
    """A page that a page_pinner saw fail migration and that has been freed
    since (a PP_FREE record; the page is free now)."""

    pfn: int
    put_stack: str
    free_stack: str


@dataclass
class LongtermRecord:
    """A long-term GUP pin that was released (A0/A2/B lt_pinner, C lt_buffer)."""

    pfn: int
    elapsed_us: int
    stack: str


@dataclass(frozen=True)
class FileSpec:
    """A file: its pages are folios with ``Folio.file`` = key; processes map and open it."""

    key: str
    # "root": a path on the root mount (ext4); "tmpfs": below the tmpfs mounted at /dev/shm;
    # "shm": a pseudo file of the kernel's internal shmem mount (memfd, SysV shm)
    mount: str
    names: tuple[bytes, ...]  # dentry names from the mount's root down (pseudo: one name)
    path: str  # as /proc/PID/maps shows it
    shmem: bool = True


@dataclass(frozen=True)
class VmaSpec:
    """A VMA: [start, end) at page offset pgoff, of a file (key) or anonymous (None)."""

    start: int
    end: int
    pgoff: int
    flags: tuple[str, ...]  # vm_flags bit names (rmap.VM_FLAG_BITS' names)
    file: str | None = None
    faulted: bool = True  # False: the pages of its range are not mapped in this mm


@dataclass(frozen=True)
class ProcSpec:
    """A process (thread group leader) with its own mm and fd table."""

    pid: int
    comm: bytes
    vmas: tuple[VmaSpec, ...]
    # fd -> ("file", FileSpec key) | ("pipe", PipeSpec key) | ("io_uring", RingSpec key)
    fds: tuple[tuple[int, str, str], ...] = ()
    parent: int | None = None  # forked from (its open files are the parent's)
    has_pinned: bool = False  # FOLL_PIN ran on its mm (MMF_HAS_PINNED / mm->has_pinned)
    pinned_vm: int = 0  # mm->pinned_vm
    pagetables: bool = False  # give the mm user page tables (mm->pgd) for its faulted pages


@dataclass(frozen=True)
class PipeSpec:
    """A pipe holding page references: (pfn, "user" (vmsplice) | "page_cache" (splice))."""

    key: str
    bufs: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class RingSpec:
    """An io_uring ring: registered buffers, each the pfns of its bvecs (one page each)."""

    key: str
    buffers: tuple[tuple[int, ...], ...]


@dataclass
class Scenario:
    folios: list[Folio] = field(default_factory=list)
    freed: list[FreedRecord] = field(default_factory=list)
    longterm: list[LongtermRecord] = field(default_factory=list)
    files: list[FileSpec] = field(default_factory=list)
    procs: list[ProcSpec] = field(default_factory=list)
    pipes: list[PipeSpec] = field(default_factory=list)
    rings: list[RingSpec] = field(default_factory=list)
    lru: dict[int, tuple[int, ...]] = field(default_factory=dict)  # cpu -> lru_add batch pfns

    def add(self, *fs: Folio) -> None:
        self.folios.extend(fs)


def _gpu_held_shmem(pfn: int, note: str, migration_failed: bool = False,
                    puts: tuple[str, ...] = (), file: str | None = None,
                    mapcount: int = 1) -> Folio:
    """A mapped shmem page with one extra reference from a GPU driver's get_page (the case of
    the LKML page-pinner thread)."""
    return Folio(
        pfn,
        "shmem",
        mapcount=mapcount,
        extra=1,
        alloc="gpu_shmem",
        pin_stack="gpu_get",
        migration_failed=migration_failed,
        puts=puts,
        pid=812,
        comm="gpu-submit",
        note=note,
        file=file,
    )


def default() -> Scenario:
    s = Scenario()
    A = Folio
    # DMA32, Unmovable blocks: kernel allocations after the memblock region
    # (stack depot pools are placed by the builder from 0x1300)
    s.add(*(A(0x1340 + i, "slab", alloc="slab") for i in range(8)))
    s.add(*(A(0x1348 + i, "pgtable", alloc="pgtable") for i in range(4)))
    s.add(A(0x134C, "kernel", order=2, compound=False, alloc="driver"))
    # DMA32 CMA area "reserved"
    s.add(A(0x1440, "anon", mapcount=1, note="anon page borrowed by a CMA pageblock"))
    s.add(
        A(
            0x1441,
            "anon",
            mapcount=1,
            pins=1,
            pin_stack="pin_odirect",
            migration_failed=True,
            note="short-term FOLL_PIN (O_DIRECT) on a page in a CMA pageblock",
        )
    )
    for i in range(2):
        s.add(
            _gpu_held_shmem(
                0x1442 + i,
                migration_failed=True,
                puts=("gpu_put",) if i == 0 else (),
                note="GPU driver get_page on a memfd page (LKML page-pinner thread case)",
                file="memfd",
            )
        )
    s.add(
        A(
            0x1444,
            "file",
            mapcount=1,
            flags=("private",),
            alloc="file_read",
            note="file page with buffer heads",
        )
    )
    s.add(
        A(
            0x1445,
            "anon",
            mapcount=1,
            extra=1,
            pin_stack="gup_get",
            migration_failed=True,
            note="FOLL_GET reference held by a driver",
        )
    )
    s.add(
        A(
            0x1446,
            "shmem",
            mapcount=0,
            alloc="gpu_shmem",
            migration_failed=True,
            puts=("gpu_put",),
            pid=812,
            comm="gpu-submit",
            note="migration failed earlier; the extra reference has been dropped since",
            file="memfd",
        )
    )
    # DMA32 Movable block
    s.add(
        *(
            A(0x1600 + i, "anon", mapcount=2 if i == 3 else 1, pid=400 + i, comm="app")
            for i in range(16)
        )
    )
    s.add(A(0x1610, "anon", mapcount=1, flags=("swapcache",), note="anon page in the swap cache"))
    s.add(A(0x1611, "ksm", mapcount=3, note="KSM page shared by three mappings"))
    s.add(
        *(
            A(0x1612 + i, "file", mapcount=1, flags=("private",), alloc="file_read")
            for i in range(2)
        )
    )
    s.add(
        A(
            0x1614,
            "file",
            mapcount=1,
            extra=2,
            alloc="file_read",
            pin_stack="gup_get",
            note="file page with two extra references: two pipe buffers (splice)",
            file="data",
        )
    )
    # Normal: pinned THP
    s.add(
        A(
            0x100000,
            "anon",
            order=9,
            mapcount=1,
            pins=2,
            alloc="thp_fault",
            pin_stack="pin_rdma",
            pid=900,
            comm="rdma-app",
            note="PMD-mapped THP pinned twice by RDMA (FOLL_PIN|FOLL_LONGTERM)",
        )
    )
    for i in range(4):
        s.add(
            A(
                0x100200 + i,
                "anon",
                mapcount=1,
                pins=1,
                pin_stack="pin_io_uring",
                pid=700,
                comm="io_uring-app",
                note="io_uring registered buffer (FOLL_PIN|FOLL_LONGTERM)",
            )
        )
    s.add(
        A(
            0x100208,
            "anon",
            mapcount=1,
            pins=2,
            extra=1,
            pin_stack="pin_io_uring",
            pid=700,
            comm="io_uring-app",
            note="two io_uring registered buffers and a pipe buffer (vmsplice)",
        )
    )
    s.add(*(A(0x100209 + i, "shmem", mapcount=i % 2, alloc="shmem_fault") for i in range(7)))
    s.add(A(0x100210, "file", mapcount=0, alloc="file_read", note="unmapped page cache page"))
    for i in range(3):
        s.add(
            _gpu_held_shmem(
                0x100211 + i,
                note=(
                    "GPU driver get_page on a tmpfs page mapped MAP_SHARED by two processes"
                    if i < 2
                    else "tmpfs page mapped by two processes; cpu 1's LRU batch holds a "
                    "reference"
                ),
                file="frames",
                mapcount=2,
            )
        )
    # Normal: CMA area "vidbuf"
    s.add(
        A(
            0x100490,
            "anon",
            mapcount=1,
            pins=1,
            pin_stack="pin_vb2",
            migration_failed=True,
            pid=1000,
            comm="camera",
            note="V4L2 userptr buffer pinned in a CMA pageblock",
        )
    )
    for i in range(3):
        s.add(
            _gpu_held_shmem(
                0x100491 + i,
                migration_failed=True,
                puts=("gpu_put", "lru_drain") if i == 0 else ("gpu_put",),
                note="GPU driver get_page on a SysV shm page in CMA: cma_alloc fails here",
                file="sysv",
            )
        )
    s.add(
        A(
            0x100494,
            "anon",
            mapcount=1,
            extra=1,
            pin_stack="gup_get",
            migration_failed=True,
            note="FOLL_GET reference in a CMA pageblock",
        )
    )
    # Normal: Unmovable / Reclaimable blocks
    s.add(*(A(0x100C00 + i, "slab", alloc="slab") for i in range(16)))
    s.add(*(A(0x100C10 + i, "pgtable", alloc="pgtable") for i in range(8)))
    s.add(A(0x100C18, "kernel", order=3, compound=False, alloc="driver"))
    # task_struct, mm_struct, files, pipe and io_uring objects (gen/tasks.py)
    s.add(*(A(0x100D00 + i, "slab", alloc="slab") for i in range(32)))
    s.add(*(A(0x100E00 + i, "slab", alloc="slab_reclaim") for i in range(8)))
    s.add(*(A(0x100E08 + i, "movable_ops", alloc="zsmalloc") for i in range(2)))
    # Movable zone
    s.add(
        A(
            0x101000,
            "anon",
            order=9,
            mapcount=1,
            alloc="thp_fault",
            pid=901,
            comm="java",
            note="PMD-mapped THP, not pinned",
        )
    )
    s.add(*(A(0x101200 + i, "anon", mapcount=1, pid=902, comm="java") for i in range(8)))
    s.add(
        A(
            0x101208,
            "anon",
            mapcount=1,
            pins=2,
            pin_stack="pin_rdma",
            pid=900,
            comm="rdma-app",
            note="FOLL_PIN in ZONE_MOVABLE (long-term pins should have migrated it)",
        )
    )
    s.add(A(0x101209, "file", mapcount=2, alloc="file_read"))
    _cma_blockers(s)
    # page_pinner history
    s.freed.append(FreedRecord(0x1447, "gpu_put", "free_page"))
    s.freed.append(FreedRecord(0x100495, "gpu_put", "free_page"))
    s.longterm.append(LongtermRecord(0x1600, 412000, "pin_io_uring_lt"))
    s.longterm.append(LongtermRecord(0x100209, 1530000, "pin_vb2_lt"))
    s.longterm.append(LongtermRecord(0x101200, 987654, "pin_rdma_lt"))
    add_processes(s)
    return s


def anon_vaddr(pfn: int) -> int:
    """The user address of an anon page of the scenario (its page->index is vaddr >> 12)."""
    return (0x7F0000000 + pfn) << 12


def anon_vma(first: int, end: int, *flags: str) -> VmaSpec:
    """An anonymous VMA over the anon pages [first, end) of the scenario."""
    start = anon_vaddr(first)
    return VmaSpec(start, anon_vaddr(end), start >> 12, ("read", "write", *flags))


def file_vma(base: int, key: str, first: int, end: int, *flags: str) -> VmaSpec:
    """A VMA of file *key* over its page indexes [first, end) (shmem/file page->index is
    pfn & 0xfff), at base + index * 4096."""
    return VmaSpec(base + (first << 12), base + (end << 12), first, flags, key)


SHARED = ("read", "write", "shared", "mayshare")


def add_processes(s: Scenario) -> None:
    """The processes of the sample: who maps the pinned pages, and the pipe, io_uring ring
    and LRU batch that hold references to some of them."""
    s.files += [
        FileSpec("data", "root", (b"srv", b"data.bin"), "/srv/data.bin", shmem=False),
        FileSpec("frames", "tmpfs", (b"frames",), "/dev/shm/frames"),
        FileSpec("memfd", "shm", (b"memfd:gpu-heap",), "memfd:gpu-heap (deleted)"),
        FileSpec("sysv", "shm", (b"SYSV0000abcd",), "SYSV0000abcd (deleted)"),
    ]
    s.pipes.append(PipeSpec("splice", ((0x1614, "page_cache"), (0x1614, "page_cache"),
                                       (0x100208, "user"))))
    s.rings.append(RingSpec("ring", ((0x100200, 0x100201, 0x100202, 0x100203), (0x100208,),
                                     (0x100208,))))
    s.lru[1] = (0x100213,)
    s.procs += [
        ProcSpec(1, b"init", (anon_vma(0x1441, 0x1446), anon_vma(0x100494, 0x100495),
                              file_vma(0x7F3000000000, "data", 0x614, 0x615, "read")),
                 fds=((3, "file", "data"),), has_pinned=True),
        ProcSpec(700, b"io_uring-app", (anon_vma(0x100200, 0x100209),),
                 fds=((3, "io_uring", "ring"), (4, "pipe", "splice"), (5, "pipe", "splice")),
                 has_pinned=True, pinned_vm=5),
        ProcSpec(812, b"gpu-submit",
                 (file_vma(0x7F4000000000, "memfd", 0x442, 0x447, *SHARED),
                  file_vma(0x7F5000000000, "frames", 0x211, 0x214, *SHARED),
                  file_vma(0x7F6000000000, "sysv", 0x491, 0x494, *SHARED)),
                 fds=((3, "file", "memfd"), (4, "file", "frames"))),
        # forked from gpu-submit, sharing its MAP_SHARED tmpfs mapping; its name carries an
        # escape character and a byte that is not UTF-8 (prctl(PR_SET_NAME) allows both)
        ProcSpec(813, b"gpu-peer\x1b[1m\xfe",
                 (file_vma(0x7F5000000000, "frames", 0x211, 0x214, *SHARED),),
                 fds=((4, "file", "frames"),), parent=812),
        ProcSpec(900, b"rdma-app", (anon_vma(0x100000, 0x100200, "hugepage"),
                                    anon_vma(0x101208, 0x101209, "locked")),
                 has_pinned=True, pinned_vm=513),
        ProcSpec(1000, b"camera", (anon_vma(0x100490, 0x100491),), has_pinned=True,
                 pinned_vm=1, pagetables=True),
        # forked from camera before its buffer was touched again: the child's copy of the VMA
        # sits in camera's anon_vma tree too (anon_vma_fork()), but its page tables do not map
        # the page, so the reverse map must check both candidates in the page tables
        ProcSpec(1001, b"camera-worker",
                 (replace(anon_vma(0x100490, 0x100491), faulted=False),), parent=1000,
                 pagetables=True),
    ]


def _cma_blockers(s: Scenario) -> None:
    """In the free runs of both CMA areas: a page of every unmovable kind pinspect cma names
    as a blocker, and pages that look busy but migrate (movable_ops, LRU pages)."""
    A = Folio
    for base, tag in ((0x1450, "reserved"), (0x1005A0, "vidbuf")):
        where = f" in CMA area {tag}: cma_alloc fails on it"
        s.add(A(base, "slab", alloc="slab", note="slab page" + where))
        s.add(A(base + 1, "pgtable", alloc="pgtable", note="page table page" + where))
        s.add(A(base + 2, "reserved", alloc="driver",
                note="driver page marked PG_reserved (remap_pfn_range)" + where))
        s.add(A(base + 3, "kernel", alloc="driver",
                note="driver allocation with no mapping, off the LRU" + where))
        s.add(A(base + 4, "offline", alloc="balloon", pid=60, comm="kworker/0:2",
                note="balloon page (PageOffline) without movable_ops" + where))
        s.add(A(base + 5, "balloon", alloc="balloon", pid=60, comm="kworker/0:2",
                note="balloon page with the balloon's movable_ops: migrates"))
        s.add(*(A(base + 6 + i, "movable_ops", alloc="zsmalloc",
                  note="zsmalloc page with movable_ops: migrates") for i in range(2)))
        s.add(A(base + 8, "anon", mapcount=1, note="LRU anon page, no extra reference"))
        s.add(A(base + 9, "file", mapcount=0, alloc="file_read",
                note="LRU page cache page, no extra reference"))
        s.add(A(base + 0x10, "kernel", order=2, alloc="driver",
                note="compound driver allocation (__GFP_COMP), order 2" + where))
    # vidbuf's second range (6.14+): a blocker on either side of the allocation at 0x100700,
    # so that on mainline-7.2 no window of 193-256 pages works
    s.add(A(0x1006C0, "slab", alloc="slab",
            note="slab page in vidbuf's second range: cma_alloc fails on it"))
    s.add(A(0x100780, "kernel", alloc="driver",
            note="driver allocation in vidbuf's second range: cma_alloc fails on it"))
