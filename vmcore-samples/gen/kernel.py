"""Builds the memory of one synthetic kernel from a Scenario and the DWARF of
the variant's debug file, and records what it built for the truth file."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from . import scenario as S
from .elfread import read_elf
from .memory import X86_64, Memory
from .scenario import Folio, Scenario
from .stacks import STACKS, frame_offset
from .types import Types, load_debug
from .variants import Variant

GUP_PIN_COUNTING_BIAS = 1024
REFCOUNT_SATURATED = 0xC0000000  # INT_MIN / 2 as stored in refcount_t
POISON_POINTER_DELTA = 0xDEAD000000000000
TAIL_MAPPING = POISON_POINTER_DELTA + 0x400
PAGE_MAPPING_ANON = 0x1
PAGE_MAPPING_MOVABLE = 0x2
PAGE_MAPPING_KSM = 0x3

# gfp bits (6.1 and 6.12 agree on every bit used here)
G_HIGHMEM, G_DMA32, G_MOVABLE, G_RECLAIMABLE = 0x02, 0x04, 0x08, 0x10
G_IO, G_FS, G_ZERO = 0x40, 0x80, 0x100
G_DIRECT_RECLAIM, G_KSWAPD_RECLAIM = 0x400, 0x800
G_NOWARN, G_NORETRY, G_COMP, G_NOMEMALLOC = 0x2000, 0x10000, 0x40000, 0x80000
G_HARDWALL, G_ACCOUNT = 0x100000, 0x400000
G_RECLAIM = G_DIRECT_RECLAIM | G_KSWAPD_RECLAIM
GFP_KERNEL = G_RECLAIM | G_IO | G_FS
GFP_HIGHUSER_MOVABLE = GFP_KERNEL | G_HARDWALL | G_HIGHMEM | G_MOVABLE
GFP_TRANSHUGE = (
    (GFP_HIGHUSER_MOVABLE | G_COMP | G_NOMEMALLOC | G_NOWARN) & ~G_RECLAIM
) | G_DIRECT_RECLAIM
GFP_BY_STACK = {
    "anon_fault": GFP_HIGHUSER_MOVABLE | G_ZERO,
    "thp_fault": GFP_TRANSHUGE,
    "shmem_fault": GFP_HIGHUSER_MOVABLE,
    "gpu_shmem": GFP_HIGHUSER_MOVABLE,
    "file_read": GFP_HIGHUSER_MOVABLE,
    "slab": GFP_KERNEL | G_COMP | G_ACCOUNT,
    "slab_reclaim": GFP_KERNEL | G_COMP | G_RECLAIMABLE,
    "pgtable": GFP_KERNEL | G_ZERO | G_ACCOUNT,
    "driver": GFP_KERNEL | G_DMA32,
    "depot": GFP_KERNEL | G_NOWARN,
    "cma_alloc": GFP_KERNEL,
    "zsmalloc": (GFP_KERNEL | G_MOVABLE | G_HIGHMEM | G_NOWARN | G_NORETRY) & ~G_RECLAIM
    | G_KSWAPD_RECLAIM,
}


@dataclass
class PageState:
    """What the builder wrote into one struct page (head pages carry the folio)."""

    pfn: int
    kind: str  # free reserved anon ksm shmem file slab pgtable kernel cma tail buddy_tail
    flags: int = 0
    refcount: int = 0
    mapcount_raw: int = -1  # _mapcount / page_type word as signed int
    mapping: int = 0
    index: int = 0
    private: int = 0
    folio: Folio | None = None
    head: int | None = None  # for tails
    order: int = 0  # buddy order for free heads
    free_mt: str | None = None
    page_ext_flags: int = 0
    owner: dict | None = None
    pinner: dict | None = None


@dataclass
class Built:
    variant: Variant
    mem: Memory
    types: Types
    pages: dict[int, PageState]
    vmcoreinfo: bytes
    build_id: bytes
    symbols: dict[str, tuple[int, int]]  # name -> (address, size) of functions
    stacks: dict[int, list[str]]  # handle -> symbolized frames
    stack_keys: dict[str, int]  # stack key -> handle
    rings: dict[str, dict] = field(default_factory=dict)
    features: dict = field(default_factory=dict)
    cma: list[dict] = field(default_factory=list)
    zones: list[dict] = field(default_factory=list)
    image: tuple[int, int, int] = (0, 0, 0)
    facts: dict = field(default_factory=dict)
    zone_info: list[dict] = field(default_factory=list)
    cma_info: list[dict] = field(default_factory=list)
    scenario_freed: list = field(default_factory=list)
    free_blocks: list[tuple[int, int, str]] = field(default_factory=list)
    owner_text: dict[int, list[str]] = field(default_factory=dict)
    pinner_file_text: list[str] = field(default_factory=list)
    stack_counts: dict[int, int] = field(default_factory=dict)


class Builder:
    def __init__(self, variant: Variant, debug_path: str, sc: Scenario) -> None:
        self.v = variant
        self.k = variant.kernel
        self.sc = sc
        self.arch = X86_64
        self.ps = self.arch.page_size
        self.mem = Memory(self.arch, list(S.RAM))
        self.prog = load_debug(debug_path, self.arch.drgn_arch)
        self.t = Types(self.prog, self.mem)
        self.sections, self.syms, self.build_id, self.static_syms = read_elf(debug_path)
        self.pages: dict[int, PageState] = {}
        self.reserved: set[int] = set()
        self.pages_per_section = 1 << (S.SECTION_SIZE_BITS - self.arch.page_shift)
        self.kmalloc_pages: list[int] = []
        self.kmalloc_cur = 0
        self.kmalloc_off = 0
        self.stack_handles: dict[tuple[int, ...], int] = {}
        self.stack_frames: dict[int, list[str]] = {}
        self.stack_keys: dict[str, int] = {}
        self.depot_records: dict[int, int] = {}  # handle -> stack_record address
        self.stack_counts: dict[int, int] = {}  # 6.9+: page_owner's counted stacks
        self.depot_pools: list[int] = []  # virtual addresses
        self.depot_pool_off = 0
        self.ts_us = 0
        self.owner_enabled = variant.page_owner == "enabled"
        self.pinner = variant.pinner
        self.rings: dict[str, dict] = {}
        self.pp_ring = 0  # address of pp_buffer's records (variant D)
        self.pinner_file_text: list[str] = []  # A0's debugfs "pinner" file

    # ------------------------------------------------------------------
    # small helpers
    def sym(self, name: str) -> int:
        return self.syms[name].value

    def direct(self, pfn: int) -> int:
        return self.arch.page_offset_base + pfn * self.ps

    def enum(self, name: str) -> int:
        return self.t.enum(name)

    def pg(self, *names: str) -> int:
        v = 0
        for n in names:
            v |= 1 << self.enum("PG_" + n)
        return v

    def memblock_alloc(self, size: int) -> int:
        """Page-aligned reserved allocation; returns the pfn."""
        n = (size + self.ps - 1) // self.ps
        pfn = self.memblock_next
        self.memblock_next += n
        assert self.memblock_next <= S.MEMBLOCK[1], "memblock region exhausted"
        for p in range(pfn, pfn + n):
            self.reserved.add(p)
            self.mem.page(p)  # materialise (zeroed)
        return pfn

    def kmalloc(self, size: int, align: int = 8) -> int:
        """Bump allocator over the scenario's slab pages (direct-map addresses)."""
        self.kmalloc_off = (self.kmalloc_off + align - 1) // align * align
        if self.kmalloc_off + size > self.ps:
            self.kmalloc_cur += 1
            self.kmalloc_off = 0
        assert size <= self.ps and self.kmalloc_cur < len(self.kmalloc_pages)
        addr = self.direct(self.kmalloc_pages[self.kmalloc_cur]) + self.kmalloc_off
        self.kmalloc_off += size
        return addr

    def tick(self, us: int = 1500) -> int:
        self.ts_us += us
        return self.ts_us

    # ------------------------------------------------------------------
    def build(self) -> Built:
        self.load_image()
        self.setup_node()
        self.setup_percpu()
        self.setup_sections()
        self.setup_folios()
        self.setup_depot()
        self.setup_objects()
        self.setup_cma()
        self.setup_page_ext()
        self.setup_pinner()
        self.page_tables()
        self.finish_free()
        self.write_struct_pages()
        self.write_zones()
        self.write_page_ext()
        self.write_globals()
        vmcoreinfo = self.make_vmcoreinfo()
        img_v = self.arch.kernel_text
        img_p = img_v - self.arch.start_kernel_map
        img_n = (self.image_end - img_v + (1 << 21) - 1) // (1 << 21) * (1 << 21)
        funcs = {s.name: (s.value, s.size) for s in self.syms.values() if s.kind == 2 and s.size}
        b = Built(
            self.v,
            self.mem,
            self.t,
            self.pages,
            vmcoreinfo,
            self.build_id,
            funcs,
            self.stack_frames,
            self.stack_keys,
            self.rings,
        )
        b.image = (img_v, img_p, img_n)
        b.facts = self.facts()
        b.zone_info = self.zone_info
        b.cma_info = self.cma_info
        b.scenario_freed = list(self.sc.freed)
        b.free_blocks = list(self.free_blocks)
        b.owner_text = self.owner_texts()
        b.pinner_file_text = self.pinner_file_text
        b.stack_counts = self.stack_counts
        return b

    # ------------------------------------------------------------------
    def load_image(self) -> None:
        start = self.arch.kernel_text
        end = start
        for sec in self.sections:
            end = max(end, sec.addr + sec.size)
        self.image_end = max(end, self.sym("_end"))
        phys0 = start - self.arch.start_kernel_map
        size2m = (self.image_end - start + (1 << 21) - 1) // (1 << 21) * (1 << 21)
        self.mem.linear.append((start, phys0, size2m))
        for s, e in S.RAM:
            self.mem.linear.append((self.direct(s), s * self.ps, (e - s) * self.ps))
        for sec in self.sections:
            if not sec.nobits:
                self.mem.write(sec.addr, sec.data)
        first = phys0 // self.ps
        last = (self.image_end - self.arch.start_kernel_map + self.ps - 1) // self.ps
        for p in range(first, last):
            self.reserved.add(p)
            self.mem.page(p)
        self.memblock_next = last

    def setup_node(self) -> None:
        t = self.t
        self.pgdat_pfn = self.memblock_alloc(t.sizeof("struct pglist_data"))
        self.pgdat = self.direct(self.pgdat_pfn)
        self.mem.write(self.sym("node_data"), self.pgdat.to_bytes(8, "little"))
        zone_type = [e.name for e in self.t.type("enum zone_type").enumerators]
        self.zone_names = [n[len("ZONE_") :] for n in zone_type if n.startswith("ZONE_")]
        self.nr_zones_total = self.enum("__MAX_NR_ZONES")

    NR_CPUS_ONLINE = 2
    PCPU_BASE = 0x2E000  # per-CPU offset of the first dynamic per-CPU object

    def setup_percpu(self) -> None:
        """Two CPUs with per-CPU areas holding each zone's per_cpu_pages (empty
        pcp lists), per_cpu_zonestat and the node's per_cpu_nodestat."""
        t = self.t
        ncpu = self.NR_CPUS_ONLINE
        zsize = t.sizeof("struct zone")
        zoff = t.offsetof("struct pglist_data", "node_zones")
        pcp_size = (t.sizeof("struct per_cpu_pages") + 63) // 64 * 64
        zs_size = (t.sizeof("struct per_cpu_zonestat") + 63) // 64 * 64
        ns_size = (t.sizeof("struct per_cpu_nodestat") + 63) // 64 * 64
        nz = self.nr_zones_total
        total = nz * (pcp_size + zs_size) + ns_size
        nlists = t.type("struct per_cpu_pages").member("lists").type.length
        offs = []
        for _cpu in range(ncpu):
            chunk = self.direct(self.memblock_alloc(total))
            offs.append((chunk - self.PCPU_BASE) & (2**64 - 1))
            for zi in range(nz):
                pcp = chunk + zi * pcp_size
                t.put(pcp, "struct per_cpu_pages", "high", 0x400)
                t.put(pcp, "struct per_cpu_pages", "batch", 63)
                for i in range(nlists):
                    head = pcp + t.offsetof("struct per_cpu_pages", f"lists[{i}]")
                    self.mem.write(head, head.to_bytes(8, "little") * 2)
                zs = chunk + nz * pcp_size + zi * zs_size
                t.put(zs, "struct per_cpu_zonestat", "stat_threshold", 8)
            ns = chunk + nz * (pcp_size + zs_size)
            t.put(ns, "struct per_cpu_nodestat", "stat_threshold", 8)
        for cpu, off in enumerate(offs):
            self.mem.write(self.sym("__per_cpu_offset") + 8 * cpu, off.to_bytes(8, "little"))
        for zi in range(nz):
            z = self.pgdat + zoff + zi * zsize
            t.put(z, "struct zone", "per_cpu_pageset", self.PCPU_BASE + zi * pcp_size)
            t.put(
                z, "struct zone", "per_cpu_zonestats", self.PCPU_BASE + nz * pcp_size + zi * zs_size
            )
        t.put(
            self.pgdat,
            "struct pglist_data",
            "per_cpu_nodestats",
            self.PCPU_BASE + nz * (pcp_size + zs_size),
        )
        mask = ((1 << ncpu) - 1).to_bytes(8, "little")
        for m in (
            "__cpu_possible_mask",
            "__cpu_online_mask",
            "__cpu_present_mask",
            "__cpu_active_mask",
        ):
            self.mem.write(self.sym(m), mask)
        self.mem.write(self.sym("nr_cpu_ids"), ncpu.to_bytes(4, "little"))

    def setup_sections(self) -> None:
        t = self.t
        pps = self.pages_per_section
        ms_size = t.sizeof("struct mem_section")
        self.sections_per_root = self.ps // ms_size
        nr_mem_sections = 1 << (self.arch.max_physmem_bits - S.SECTION_SIZE_BITS)
        self.nr_section_roots = nr_mem_sections // self.sections_per_root
        roots_pfn = self.memblock_alloc(self.nr_section_roots * 8)
        self.mem_section = self.direct(roots_pfn)
        self.mem.write(self.sym("mem_section"), self.mem_section.to_bytes(8, "little"))
        self.section_addr: dict[int, int] = {}
        root_pages: dict[int, int] = {}
        usage_size = t.sizeof("struct mem_section_usage")
        self.nr_pageblock_bits = 4
        sect_pb = pps >> S.PAGEBLOCK_ORDER
        pb_longs = (sect_pb * self.nr_pageblock_bits + 63) // 64
        for s, e in S.RAM:
            for start in range(s, e, pps):
                nr = start // pps
                r = nr // self.sections_per_root
                if r not in root_pages:
                    root_pages[r] = self.memblock_alloc(self.ps)
                    self.mem.write(
                        self.mem_section + 8 * r, self.direct(root_pages[r]).to_bytes(8, "little")
                    )
                addr = self.direct(root_pages[r]) + (nr % self.sections_per_root) * ms_size
                self.section_addr[nr] = addr
                usage = self.direct(self.memblock_alloc(usage_size + 8 * pb_longs))
                t.put(addr, "struct mem_section", "usage", usage)
                # subsection map: all subsections of boot memory are present
                nsub = 1 << max(0, S.SECTION_SIZE_BITS - 21)
                t.put(usage, "struct mem_section_usage", "subsection_map[0]", (1 << nsub) - 1)
                # vmemmap backing for this section
                sp = self.t.sizeof("struct page")
                nbytes = pps * sp
                back = self.memblock_alloc(nbytes)
                v0 = self.arch.vmemmap_base + start * sp
                for i in range((nbytes + self.ps - 1) // self.ps):
                    self.mem.map_page(v0 + i * self.ps, back + i)
                flags = 0x1 | 0x2 | 0x4 | 0x8  # PRESENT | HAS_MEM_MAP | ONLINE | EARLY
                t.put(addr, "struct mem_section", "section_mem_map", self.arch.vmemmap_base | flags)
                self.usage_addr = getattr(self, "usage_addr", {})
                self.usage_addr[nr] = usage
        self.highest_section = max(self.section_addr)
        self.mem.write(
            self.sym("__highest_present_section_nr"), self.highest_section.to_bytes(8, "little")
        )

    def page_addr(self, pfn: int) -> int:
        return self.arch.vmemmap_base + pfn * self.t.sizeof("struct page")

    # ------------------------------------------------------------------
    def zone_of(self, pfn: int) -> str:
        for name, (s, e) in S.ZONES.items():
            if s <= pfn < e:
                return name
        raise ValueError(hex(pfn))

    def pageblock_mt(self, pfn: int) -> str:
        pb = pfn >> S.PAGEBLOCK_ORDER << S.PAGEBLOCK_ORDER
        return S.PAGEBLOCKS.get(pb, "Movable")

    def mt_value(self, name: str) -> int:
        return self.enum(
            {
                "Unmovable": "MIGRATE_UNMOVABLE",
                "Movable": "MIGRATE_MOVABLE",
                "Reclaimable": "MIGRATE_RECLAIMABLE",
                "HighAtomic": "MIGRATE_HIGHATOMIC",
                "CMA": "MIGRATE_CMA",
                "Isolate": "MIGRATE_ISOLATE",
            }[name]
        )

    def base_flags(self, pfn: int) -> int:
        """page->flags fields of a pfn: node, zone and, with NUMA balancing,
        lastcpupid at its reset value (all ones)."""
        zi = self.zone_names.index(self.zone_of(pfn).upper())
        nodes_pgshift = 64 - self.k.nodes_shift
        zones_width = max(1, (self.nr_zones_total - 1).bit_length())
        zones_pgshift = nodes_pgshift - zones_width
        cpupid_width = self.k.last_cpupid_width
        cpupid_pgshift = zones_pgshift - cpupid_width if cpupid_width else 0
        self.flag_layout = {
            "nodes_pgshift": nodes_pgshift,
            "nodes_width": self.k.nodes_shift,
            "zones_pgshift": zones_pgshift,
            "zones_width": zones_width,
            "last_cpupid_pgshift": cpupid_pgshift,
            "last_cpupid_width": cpupid_width,
        }
        cpupid = ((1 << cpupid_width) - 1) << cpupid_pgshift if cpupid_width else 0
        return (0 << nodes_pgshift) | (zi << zones_pgshift) | cpupid

    # ------------------------------------------------------------------
    def setup_folios(self) -> None:
        """Python-side page states for every scenario folio."""
        sc = self.sc
        # stack depot pools: two order-2 kernel allocations at 0x1300
        for i in range(2):
            sc.folios.append(
                Folio(
                    0x1300 + 4 * i,
                    "kernel",
                    order=2,
                    compound=False,
                    alloc="depot",
                    note="stack depot pool",
                )
            )
        # pp_buffer (variant D): 56 order-0 pages for the vmalloc'd ring
        if self.pinner == "d":
            for i in range(56):
                sc.folios.append(
                    Folio(0x100C20 + i, "kernel", alloc="driver", note="vmalloc page of pp_buffer")
                )
        sc.folios.sort(key=lambda f: f.pfn)
        for cma in S.CMA_AREAS:
            for s, e in cma.allocated:
                for pfn in range(s, e):
                    self.pages[pfn] = PageState(
                        pfn,
                        "cma_allocated",
                        refcount=1,
                        mapcount_raw=-1,
                        flags=self.base_flags(pfn),
                    )
        for f in sc.folios:
            for i in range(f.nr_pages):
                if f.pfn + i in self.pages:
                    raise ValueError(f"pfn {f.pfn + i:#x} used twice")
            self.add_folio(f)
        self.kmalloc_pages = [f.pfn for f in sc.folios if f.kind == "slab"]

    def add_folio(self, f: Folio) -> None:
        base = self.base_flags(f.pfn)
        nr = f.nr_pages
        head = PageState(f.pfn, f.kind, flags=base, folio=f)
        self.pages[f.pfn] = head
        extra_flags = [x for x in f.flags]
        if f.kind in ("anon", "ksm", "shmem", "file"):
            names = ["uptodate", "lru"]
            if f.kind in ("anon", "ksm", "shmem"):
                names.append("swapbacked")
            if f.kind == "anon" and f.mapcount == 1:
                names.append("anon_exclusive")
            if f.kind in ("shmem",):
                names.append("dirty")
            if f.order and f.compound:
                names.append("head")
            names += extra_flags
            head.flags |= self.pg(*names)
            pins_refs = f.pins * (GUP_PIN_COUNTING_BIAS if f.order == 0 else 1)
            cache = f.kind in ("shmem", "file") or "swapcache" in f.flags
            expected = f.mapcount + (nr if cache else 0) + (1 if "private" in f.flags else 0)
            head.refcount = expected + pins_refs + f.extra
            head.mapcount_raw = (f.mapcount - 1) if f.order == 0 else -1
            head.index = (0x7F0000000 + f.pfn) if f.kind in ("anon", "ksm") else f.pfn & 0xFFF
        elif f.kind == "slab":
            if self.t.has_enum("PG_slab"):
                head.flags |= self.pg("slab")
            else:
                head.mapcount_raw = self.page_type_value("slab")
            head.refcount = 1
        elif f.kind == "pgtable":
            head.refcount = 1
            head.mapcount_raw = self.page_type_value("table")
        elif f.kind == "kernel":
            head.refcount = 1
        elif f.kind == "movable_ops":
            # zsmalloc page: movable_ops mapping (low bits PAGE_MAPPING_MOVABLE)
            head.refcount = 1
            head.flags |= self.pg("private")
            head.mapping = self.sym("zsmalloc_mops") | PAGE_MAPPING_MOVABLE
        else:
            raise ValueError(f.kind)
        for i in range(1, nr):
            pfn = f.pfn + i
            st = PageState(pfn, "tail", flags=base, head=f.pfn)
            if f.compound:
                st.mapcount_raw = -1
            self.pages[pfn] = st

    def page_type_value(self, kind: str) -> int:
        if self.k.page_type_scheme == "inverted":
            bit = {"buddy": 0x80, "offline": 0x100, "table": 0x200, "guard": 0x400}[kind]
            return (0xFFFFFFFF & ~bit) - (1 << 32)
        pgty = self.enum("PGTY_" + kind)
        v = pgty << 24
        return v - (1 << 32) if v & 0x80000000 else v

    # ------------------------------------------------------------------
    # stack depot
    def setup_depot(self) -> None:
        pools = [f.pfn for f in self.sc.folios if f.alloc == "depot"]
        self.depot_pools = [self.direct(p) for p in pools]
        self.depot_pool_idx = 0
        self.depot_pool_off = 0
        for key in ("dummy", "failure", "early"):
            self.save_stack(key)

    def save_stack(self, key: str) -> int:
        if key in self.stack_keys:
            return self.stack_keys[key]
        names = STACKS[key]
        pcs = []
        frames = []
        for depth, n in enumerate(names):
            sym = self.syms[n]
            off = frame_offset(n, sym.size, depth)
            pcs.append(sym.value + off)
            frames.append(f"{n}+{off:#x}/{sym.size:#x}")
        h = self.depot_store(tuple(pcs))
        self.stack_keys[key] = h
        self.stack_frames[h] = frames
        return h

    def depot_store(self, pcs: tuple[int, ...]) -> int:
        if pcs in self.stack_handles:
            return self.stack_handles[pcs]
        t = self.t
        hdr = t.offsetof("struct stack_record", "entries")
        # records saved without STACK_DEPOT_FLAG_GET (page_owner, page_pinner)
        # take only the entries they use, also on 6.8+
        size = (hdr + 8 * len(pcs) + 15) // 16 * 16
        pool_size = 4 * self.ps
        if self.depot_pool_off + size > pool_size:
            self.depot_pool_idx += 1
            self.depot_pool_off = 0
        pool = self.depot_pools[self.depot_pool_idx]
        rec = pool + self.depot_pool_off
        off_units = self.depot_pool_off >> 4
        if self.k.stackdepot == "slabs-6.1":
            handle = self.depot_pool_idx | (off_units << 16) | (1 << 26)
        else:
            handle = (self.depot_pool_idx + 1) | (off_units << 17)
        self.depot_pool_off += size
        t.put(rec, "struct stack_record", "hash", zlib.crc32(repr(pcs).encode()))
        t.put(rec, "struct stack_record", "size", len(pcs))
        t.put(rec, "struct stack_record", "handle.handle", handle)
        if self.k.stackdepot != "slabs-6.1":
            # 6.8+: records saved without STACK_DEPOT_FLAG_GET start saturated
            t.put(rec, "struct stack_record", "count", REFCOUNT_SATURATED)
        for i, pc in enumerate(pcs):
            self.mem.write(rec + hdr + 8 * i, pc.to_bytes(8, "little"))
        self.stack_handles[pcs] = handle
        self.depot_records[handle] = rec
        return handle

    # ------------------------------------------------------------------
    # kernel objects that pages point to
    def setup_objects(self) -> None:
        t = self.t
        as_size = t.sizeof("struct address_space")
        self.shmem_mapping = self.kmalloc(as_size)
        self.file_mapping = self.kmalloc(as_size)
        for m, ops, n in (
            (self.shmem_mapping, "shmem_aops", 0),
            (self.file_mapping, "ext4_aops", 0),
        ):
            t.put(m, "struct address_space", "a_ops", self.sym(ops))
            t.put(m, "struct address_space", "i_mmap.rb_root.rb_node", n)
        self.anon_vma = self.kmalloc(120)
        self.ksm_node = self.kmalloc(64)
        nrp = {self.shmem_mapping: 0, self.file_mapping: 0}
        for f in self.sc.folios:
            st = self.pages[f.pfn]
            if f.kind == "anon":
                st.mapping = self.anon_vma | PAGE_MAPPING_ANON
                if "swapcache" in f.flags:
                    st.private = (f.pfn & 0xFFFF) << 5 | 1  # a swp_entry_t value
            elif f.kind == "ksm":
                st.mapping = self.ksm_node | PAGE_MAPPING_KSM
            elif f.kind == "shmem":
                st.mapping = self.shmem_mapping
                nrp[self.shmem_mapping] += f.nr_pages
            elif f.kind == "file":
                st.mapping = self.file_mapping
                nrp[self.file_mapping] += f.nr_pages
                if "private" in f.flags:
                    st.private = self.kmalloc(104)  # a buffer_head
        for m, n in nrp.items():
            t.put(m, "struct address_space", "nrpages", n)

    # ------------------------------------------------------------------
    def setup_cma(self) -> None:
        t = self.t
        base = self.sym("cma_areas")
        csize = t.sizeof("struct cma")
        self.cma_info = []
        for i, c in enumerate(S.CMA_AREAS):
            a = base + i * csize
            nbits = c.count >> c.order_per_bit
            bm = self.kmalloc((nbits + 63) // 64 * 8)
            bits = 0
            for s, e in c.allocated:
                for pfn in range(s, e):
                    bits |= 1 << ((pfn - c.base_pfn) >> c.order_per_bit)
            self.mem.write(bm, bits.to_bytes((nbits + 63) // 64 * 8, "little"))
            t.put(a, "struct cma", "base_pfn", c.base_pfn)
            t.put(a, "struct cma", "count", c.count)
            t.put(a, "struct cma", "bitmap", bm)
            t.put(a, "struct cma", "order_per_bit", c.order_per_bit)
            t.put(a, "struct cma", "name", c.name.encode().ljust(64, b"\0"))
            if t.has_member("struct cma", "available_count"):
                alloc = sum(e - s for s, e in c.allocated)
                t.put(a, "struct cma", "available_count", c.count - alloc)
            self.cma_info.append(
                {
                    "name": c.name,
                    "base_pfn": c.base_pfn,
                    "count": c.count,
                    "order_per_bit": c.order_per_bit,
                    "bitmap_addr": bm,
                    "bitmap_bits": nbits,
                    "allocated_bits": bin(bits).count("1"),
                }
            )
        self.mem.write(self.sym("cma_area_count"), len(S.CMA_AREAS).to_bytes(4, "little"))
        total = sum(c.count for c in S.CMA_AREAS)
        self.mem.write(self.sym("totalcma_pages"), total.to_bytes(8, "little"))
        self.mem.write(self.sym("dma_contiguous_default_area"), base.to_bytes(8, "little"))

    # ------------------------------------------------------------------
    # page_ext: layout
    def setup_page_ext(self) -> None:
        t = self.t
        self.page_ext_enabled = self.owner_enabled or self.pinner is not None
        clients = []
        if self.owner_enabled:
            clients.append(("page_owner_ops", t.sizeof("struct page_owner"), True))
        if self.pinner is not None:
            psize = t.sizeof("struct page_pinner") if self.pinner != "rfc" else 0
            clients.append(("page_pinner_ops", psize, False))
        if self.k.page_ext_shared_flags:
            size = 8 if any(c[2] for c in clients) else 0
        else:
            size = 8
        self.page_ext_offsets: dict[str, int] = {}
        for name, csize, _ in clients:
            self.page_ext_offsets[name] = size
            t.put(self.sym(name), "struct page_ext_operations", "offset", size)
            size += csize
        self.page_ext_size = size
        self.page_ext_has_flags = not self.k.page_ext_shared_flags or any(c[2] for c in clients)
        self.mem.write(self.sym("page_ext_size"), size.to_bytes(8, "little"))
        self.page_ext_tables: dict[int, int] = {}
        if not self.page_ext_enabled:
            return
        pps = self.pages_per_section
        for nr, addr in sorted(self.section_addr.items()):
            base = self.direct(self.memblock_alloc(size * pps))
            self.page_ext_tables[nr] = base
            biased = (base - size * nr * pps) & (2**64 - 1)
            t.put(addr, "struct mem_section", "page_ext", biased)
        if self.owner_enabled:
            self.mem.write(self.sym("page_owner_inited"), (1).to_bytes(4, "little"))

    def page_ext_addr(self, pfn: int) -> int:
        pps = self.pages_per_section
        return self.page_ext_tables[pfn // pps] + self.page_ext_size * (pfn % pps)

    # ------------------------------------------------------------------
    def setup_pinner(self) -> None:
        from .pinner import setup_pinner

        setup_pinner(self)

    # ------------------------------------------------------------------
    def page_tables(self) -> None:
        pgd_phys = self.sym("init_top_pgt") - self.arch.start_kernel_map

        def alloc() -> int:
            return self.memblock_alloc(self.ps)

        self.mem.build_page_tables(pgd_phys, alloc)

    # ------------------------------------------------------------------
    def finish_free(self) -> None:
        """Reserved pages for memblock, buddy blocks for everything else."""
        for pfn in sorted(self.reserved):
            assert pfn not in self.pages, hex(pfn)
            self.pages[pfn] = PageState(
                pfn, "reserved", flags=self.base_flags(pfn) | self.pg("reserved"), refcount=1
            )
        self.free_blocks: list[tuple[int, int, str]] = []
        max_order = self.k.max_order - 1
        for s, e in S.RAM:
            pfn = s
            while pfn < e:
                if pfn in self.pages:
                    pfn += 1
                    continue
                order = 0
                while order < max_order:
                    n = 2 << order
                    if pfn % n or pfn + n > e:
                        break
                    if any(q in self.pages for q in range(pfn, pfn + n)):
                        break
                    if self.pageblock_mt(pfn) != self.pageblock_mt(pfn + n - 1):
                        break
                    order += 1
                mt = self.pageblock_mt(pfn)
                self.free_blocks.append((pfn, order, mt))
                self.pages[pfn] = PageState(
                    pfn,
                    "free",
                    flags=self.base_flags(pfn),
                    order=order,
                    mapcount_raw=self.page_type_value("buddy"),
                    private=order,
                    free_mt=mt,
                )
                for q in range(pfn + 1, pfn + (1 << order)):
                    self.pages[q] = PageState(q, "buddy_tail", flags=self.base_flags(q))
                pfn += 1 << order

    # ------------------------------------------------------------------
    def write_struct_pages(self) -> None:
        t = self.t
        sp = t.sizeof("struct page")
        off = {
            n: t.offsetof("struct page", n)
            for n in ("flags", "mapping", "index", "private", "_mapcount", "_refcount")
        }
        for pfn, st in self.pages.items():
            a = self.page_addr(pfn)
            buf = bytearray(sp)

            def w(o: int, v: int, n: int, buf: bytearray = buf) -> None:
                buf[o : o + n] = (v & ((1 << (8 * n)) - 1)).to_bytes(n, "little")

            w(off["flags"], st.flags, 8)
            w(off["mapping"], st.mapping, 8)
            w(off["index"], st.index, 8)
            w(off["private"], st.private, 8)
            w(off["_mapcount"], st.mapcount_raw, 4)
            w(off["_refcount"], st.refcount, 4)
            self.mem.write(a, bytes(buf))
        # compound folios
        for f in self.sc.folios:
            if f.order and f.compound:
                self.write_compound(f)
        # buddy free lists
        self.free_lists: dict[tuple[str, int, str], list[int]] = {}
        for pfn, order, mt in self.free_blocks:
            self.free_lists.setdefault((self.zone_of(pfn), order, mt), []).append(pfn)

    def write_compound(self, f: Folio) -> None:
        t = self.t
        head = self.page_addr(f.pfn)
        nr = f.nr_pages
        for i in range(1, nr):
            a = self.page_addr(f.pfn + i)
            t.put(a, "struct page", "compound_head", head | 1)
            if i >= 2:
                t.put(a, "struct page", "mapping", TAIL_MAPPING)
        p1 = self.page_addr(f.pfn + 1)
        p2 = self.page_addr(f.pfn + 2)
        if self.k.version == "6.1":
            t.put(p1, "struct page", "compound_dtor", self.enum("TRANSHUGE_PAGE_DTOR"))
            t.put(p1, "struct page", "compound_order", f.order)
            t.put(p1, "struct page", "compound_mapcount", f.mapcount - 1)
            t.put(p1, "struct page", "compound_pincount", f.pins)
            t.put(p1, "struct page", "compound_nr", nr)
            dl = p2 + t.offsetof("struct page", "deferred_list")
            t.put(p2, "struct page", "deferred_list.next", dl)
            t.put(p2, "struct page", "deferred_list.prev", dl)
        else:
            fo = "struct folio"
            # folio fields of the first tail page, via struct folio offsets
            flags1 = (1 << self.enum("PG_large_rmappable")) | f.order
            cur = t.get(head, fo, "_flags_1")
            t.put(head, fo, "_flags_1", cur | flags1)
            t.put(head, fo, "_large_mapcount", f.mapcount - 1)
            t.put(head, fo, "_entire_mapcount", f.mapcount - 1)
            # a PMD mapping counts as ENTIRELY_MAPPED (0x800000) in _nr_pages_mapped
            t.put(head, fo, "_nr_pages_mapped", 0x800000 if f.mapcount else 0)
            t.put(head, fo, "_pincount", f.pins)
            if t.has_member(fo, "_folio_nr_pages"):
                t.put(head, fo, "_folio_nr_pages", nr)
            dl = head + t.offsetof(fo, "_deferred_list")
            t.put(head, fo, "_deferred_list.next", dl)
            t.put(head, fo, "_deferred_list.prev", dl)

    # ------------------------------------------------------------------
    def write_zones(self) -> None:
        t = self.t
        pg = self.pgdat
        zsize = t.sizeof("struct zone")
        zoff = t.offsetof("struct pglist_data", "node_zones")
        nr_free_pages = self.enum("NR_FREE_PAGES")
        nr_free_cma = self.enum("NR_FREE_CMA_PAGES")
        name_sym = {
            "DMA": "zone_name_dma",
            "DMA32": "zone_name_dma32",
            "NORMAL": "zone_name_normal",
            "MOVABLE": "zone_name_movable",
            "DEVICE": "zone_name_device",
        }
        present_total = 0
        self.zone_info = []
        pps = self.pages_per_section
        node_start = min(s for s, _ in S.RAM)
        node_end = max(e for _, e in S.RAM)
        nr_zones = 0
        for zi, zname in enumerate(self.zone_names[: self.nr_zones_total]):
            z = pg + zoff + zi * zsize
            disp = {"NORMAL": "Normal", "MOVABLE": "Movable"}.get(zname, zname)
            s, e = S.ZONES.get(disp, (0, 0))
            present = sum(max(0, min(e, re_) - max(s, rs)) for rs, re_ in S.RAM)
            reserved = sum(1 for p in self.reserved if s <= p < e)
            t.put(z, "struct zone", "name", self.sym(name_sym[zname]))
            t.put(z, "struct zone", "zone_pgdat", pg)
            if present:
                nr_zones = zi + 1
                t.put(z, "struct zone", "zone_start_pfn", s)
            t.put(z, "struct zone", "spanned_pages", e - s)
            t.put(z, "struct zone", "present_pages", present)
            if t.has_member("struct zone", "present_early_pages"):
                t.put(z, "struct zone", "present_early_pages", present)
            t.put(z, "struct zone", "managed_pages", present - reserved)
            cma_pages = sum(c.count for c in S.CMA_AREAS if s <= c.base_pfn < e)
            if t.has_member("struct zone", "cma_pages"):
                t.put(z, "struct zone", "cma_pages", cma_pages)
            if t.has_member("struct zone", "initialized"):
                t.put(z, "struct zone", "initialized", 1 if present else 0)
            if t.has_member("struct zone", "node"):
                t.put(z, "struct zone", "node", 0)
            managed = present - reserved
            if present:
                wmin = max(32, managed // 64)
                t.put(z, "struct zone", "_watermark[0]", wmin)
                t.put(z, "struct zone", "_watermark[1]", wmin * 5 // 4)
                t.put(z, "struct zone", "_watermark[2]", wmin * 3 // 2)
            free = 0
            free_cma = 0
            for order in range(self.k.max_order):
                nr_free = 0
                for mtname in (
                    "Unmovable",
                    "Movable",
                    "Reclaimable",
                    "HighAtomic",
                    "CMA",
                    "Isolate",
                ):
                    mt = self.mt_value(mtname)
                    head = z + t.offsetof("struct zone", f"free_area[{order}].free_list[{mt}]")
                    blocks = self.free_lists.get((disp, order, mtname), []) if present else []
                    nodes = [self.page_addr(p) + t.offsetof("struct page", "lru") for p in blocks]
                    self.link_list(head, nodes)
                    nr_free += len(blocks)
                    free += len(blocks) << order
                    if mtname == "CMA":
                        free_cma += len(blocks) << order
                t.put(z, "struct zone", f"free_area[{order}].nr_free", nr_free)
            t.put(z, "struct zone", f"vm_stat[{nr_free_pages}]", free)
            t.put(z, "struct zone", f"vm_stat[{nr_free_cma}]", free_cma)
            present_total += present
            if disp in S.ZONES and present:
                self.zone_info.append(
                    {
                        "zone": disp,
                        "start_pfn": s,
                        "spanned": e - s,
                        "present": present,
                        "managed": managed,
                        "free": free,
                        "free_cma": free_cma,
                        "cma_pages": cma_pages,
                    }
                )
        t.put(pg, "struct pglist_data", "nr_zones", nr_zones)
        t.put(pg, "struct pglist_data", "node_start_pfn", node_start)
        t.put(pg, "struct pglist_data", "node_present_pages", present_total)
        t.put(pg, "struct pglist_data", "node_spanned_pages", node_end - node_start)
        t.put(pg, "struct pglist_data", "node_id", 0)
        # pageblock migratetypes
        pps_pb = pps >> S.PAGEBLOCK_ORDER
        for nr, usage in self.usage_addr.items():
            word = 0
            for i in range(pps_pb):
                pfn = nr * pps + (i << S.PAGEBLOCK_ORDER)
                word |= self.mt_value(self.pageblock_mt(pfn)) << (i * self.nr_pageblock_bits)
            off = t.offsetof("struct mem_section_usage", "pageblock_flags")
            self.mem.write(usage + off, word.to_bytes(8, "little"))

    def link_list(self, head: int, nodes: list[int]) -> None:
        seq = [head] + nodes
        for i, a in enumerate(seq):
            nxt = seq[(i + 1) % len(seq)]
            prv = seq[i - 1]
            self.mem.write(a, nxt.to_bytes(8, "little") + prv.to_bytes(8, "little"))

    # ------------------------------------------------------------------
    def write_page_ext(self) -> None:
        from .pinner import write_page_ext

        write_page_ext(self)

    # ------------------------------------------------------------------
    def write_globals(self) -> None:
        w = self.mem.write
        uts = self.sym("init_uts_ns")
        for field_name, value in (
            ("sysname", "Linux"),
            ("nodename", "pinspect-sample"),
            ("release", self.v.osrelease),
            ("version", "#1 SMP PREEMPT_DYNAMIC"),
            ("machine", self.arch.name),
            ("domainname", "(none)"),
        ):
            self.t.put(
                uts, "struct uts_namespace", f"name.{field_name}", value.encode().ljust(65, b"\0")
            )
        # stack depot: every pool, current pool index and offset
        used = self.depot_pool_idx + 1
        if self.k.stackdepot == "slabs-6.1":
            for i, pool in enumerate(self.depot_pools):
                w(self.sym("stack_slabs") + 8 * i, pool.to_bytes(8, "little"))
            w(self.sym("depot_index"), self.depot_pool_idx.to_bytes(4, "little"))
            w(
                self.sym("next_slab_inited"),
                (1 if len(self.depot_pools) > used else 0).to_bytes(4, "little"),
            )
            w(self.sym("depot_offset"), self.depot_pool_off.to_bytes(8, "little"))
        else:
            for i, pool in enumerate(self.depot_pools[:used]):
                w(self.sym("stack_pools") + 8 * i, pool.to_bytes(8, "little"))
            w(self.sym("pools_num"), used.to_bytes(4, "little"))
            w(self.sym("pool_offset"), self.depot_pool_off.to_bytes(8, "little"))
        node_end = max(e for _, e in S.RAM)
        w(self.sym("max_pfn"), node_end.to_bytes(8, "little"))
        w(self.sym("max_low_pfn"), (0x1800).to_bytes(8, "little"))
        w(self.sym("min_low_pfn"), (0).to_bytes(8, "little"))
        managed = sum(z["managed"] for z in self.zone_info)
        w(self.sym("_totalram_pages"), managed.to_bytes(8, "little"))
        # node_states: node 0 possible/online/has memory/has normal memory/cpu
        ns = self.sym("node_states")
        nsize = self.t.sizeof("nodemask_t")
        for e in self.t.type("enum node_states").enumerators:
            if e.name == "NR_NODE_STATES":
                continue
            w(ns + e.value * nsize, (1).to_bytes(8, "little"))

    # ------------------------------------------------------------------
    def make_vmcoreinfo(self) -> bytes:
        t = self.t
        ps = self.ps

        def off(name: str) -> str:
            """OFFSET(struct.member)=value, the kernel's spelling."""
            tname, member = name.split(".", 1)
            return f"OFFSET({name})={t.offsetof(f'struct {tname}', member)}"

        def size(name: str) -> str:
            tn = name if name.endswith("_t") else f"struct {name}"
            return f"SIZE({name})={t.sizeof(tn)}"

        online = self.sym("node_states") + t.sizeof("nodemask_t") * self.enum("N_ONLINE")
        lines = [
            f"OSRELEASE={self.v.osrelease}",
            f"BUILD-ID={self.build_id.hex()}",
            f"PAGESIZE={ps}",
            f"SYMBOL(node_online_map)={online:x}",
            f"SYMBOL(swapper_pg_dir)={self.sym('init_top_pgt'):x}",
            f"SYMBOL(_stext)={self.sym('_stext'):x}",
            f"SYMBOL(mem_section)={self.sym('mem_section'):x}",
            f"LENGTH(mem_section)={self.nr_section_roots}",
            size("mem_section"),
            off("mem_section.section_mem_map"),
            f"NUMBER(SECTION_SIZE_BITS)={S.SECTION_SIZE_BITS}",
            f"NUMBER(MAX_PHYSMEM_BITS)={self.arch.max_physmem_bits}",
            size("page"),
            size("pglist_data"),
            size("zone"),
            size("free_area"),
            size("list_head"),
            size("nodemask_t"),
            off("page.flags"),
            off("page._refcount"),
            off("page.mapping"),
            off("page.lru"),
            off("page._mapcount"),
            off("page.private"),
        ]
        if self.k.version == "6.1":
            lines += [off("page.compound_dtor"), off("page.compound_order")]
        elif t.has_member("struct folio", "_folio_nr_pages"):
            lines += [off("folio._folio_nr_pages")]
        lines += [
            off("page.compound_head"),
            off("pglist_data.node_zones"),
            off("pglist_data.nr_zones"),
            off("pglist_data.node_start_pfn"),
            off("pglist_data.node_spanned_pages"),
            off("pglist_data.node_id"),
            off("zone.free_area"),
            off("zone.vm_stat"),
            off("zone.spanned_pages"),
            off("free_area.free_list"),
            "OFFSET(list_head.next)=0",
            "OFFSET(list_head.prev)=8",
            f"LENGTH(zone.free_area)={self.k.max_order}",
            f"LENGTH(free_area.free_list)={self.enum('MIGRATE_TYPES')}",
            f"NUMBER(NR_FREE_PAGES)={self.enum('NR_FREE_PAGES')}",
            f"NUMBER(PG_lru)={self.enum('PG_lru')}",
            f"NUMBER(PG_private)={self.enum('PG_private')}",
            f"NUMBER(PG_swapcache)={self.enum('PG_swapcache')}",
            f"NUMBER(PG_swapbacked)={self.enum('PG_swapbacked')}",
            f"NUMBER(PG_hwpoison)={self.enum('PG_hwpoison')}" if t.has_enum("PG_hwpoison") else "",
        ]
        if self.k.page_type_scheme == "inverted":
            lines += [
                f"NUMBER(PG_slab)={self.enum('PG_slab')}",
                f"NUMBER(PG_head_mask)={1 << self.enum('PG_head')}",
                f"NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)={self.page_type_value('buddy')}",
                f"NUMBER(HUGETLB_PAGE_DTOR)={self.enum('HUGETLB_PAGE_DTOR')}",
                f"NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)={self.page_type_value('offline')}",
            ]
        else:
            lines += [
                f"NUMBER(PG_head_mask)={1 << self.enum('PG_head')}",
                f"NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)={self.page_type_value('hugetlb')}",
                f"NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)={self.page_type_value('buddy')}",
                f"NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)={self.page_type_value('slab')}",
                f"NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)={self.page_type_value('offline')}",
                f"NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)={self.page_type_value('unaccepted')}",
            ]
        lines += [
            "NUMBER(phys_base)=0",
            f"SYMBOL(init_top_pgt)={self.sym('init_top_pgt'):x}",
            "NUMBER(pgtable_l5_enabled)=0",
            f"SYMBOL(node_data)={self.sym('node_data'):x}",
            f"LENGTH(node_data)={1 << self.k.nodes_shift}",
            "KERNELOFFSET=0",
        ]
        return ("\n".join(x for x in lines if x) + "\n").encode()

    # ------------------------------------------------------------------
    def owner_texts(self) -> dict[int, list[str]]:
        """debugfs page_owner text of every record the reader prints: pages
        with PAGE_EXT_OWNER_ALLOCATED whose pfn is aligned to their order."""
        from .ownertext import page_owner_text

        out: dict[int, list[str]] = {}
        if not self.owner_enabled:
            return out
        for pfn in sorted(self.pages):
            r = self.pages[pfn].owner
            if r is None or not r["allocated"] or pfn % (1 << r["order"]):
                continue
            out[pfn] = page_owner_text(self, r, self.stack_frames[r["handle"]])
        return out

    # ------------------------------------------------------------------
    def facts(self) -> dict:
        return {
            "page_size": self.ps,
            "nr_cpus": self.NR_CPUS_ONLINE,
            "ram": [list(r) for r in S.RAM],
            "section_size_bits": S.SECTION_SIZE_BITS,
            "pageblock_order": S.PAGEBLOCK_ORDER,
            "max_order": self.k.max_order,
            "flags_layout": self.flag_layout,
            "page_ext_size": self.page_ext_size,
            "page_ext_offsets": self.page_ext_offsets,
            "page_ext_has_flags_word": self.page_ext_has_flags,
        }
