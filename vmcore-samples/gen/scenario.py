"""The page scenario shared by every sample: which pfn holds what.

Every folio is described once here; the kernel builder turns the description
into struct pages, page_ext records and allocator state, and the truth builder
derives the expected answers from the same description."""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass
class Scenario:
    folios: list[Folio] = field(default_factory=list)
    freed: list[FreedRecord] = field(default_factory=list)
    longterm: list[LongtermRecord] = field(default_factory=list)

    def add(self, *fs: Folio) -> None:
        self.folios.extend(fs)


def _gpu_held_shmem(pfn: int, note: str, migration_failed: bool = False,
                    puts: tuple[str, ...] = ()) -> Folio:
    """A mapped shmem page with one extra reference from a GPU driver's get_page (the case of
    the LKML page-pinner thread)."""
    return Folio(
        pfn,
        "shmem",
        mapcount=1,
        extra=1,
        alloc="gpu_shmem",
        pin_stack="gpu_get",
        migration_failed=migration_failed,
        puts=puts,
        pid=812,
        comm="gpu-submit",
        note=note,
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
                note="GPU driver get_page on a shmem page (LKML page-pinner thread case)",
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
            note="file page with two extra references",
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
            note="two FOLL_PIN pins and one extra reference",
        )
    )
    s.add(*(A(0x100209 + i, "shmem", mapcount=i % 2, alloc="shmem_fault") for i in range(7)))
    s.add(A(0x100210, "file", mapcount=0, alloc="file_read", note="unmapped page cache page"))
    for i in range(3):
        s.add(_gpu_held_shmem(0x100211 + i, note="GPU driver get_page on a shmem page"))
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
                note="GPU driver get_page on a shmem page in CMA: cma_alloc fails here",
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
    return s


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
