"""Where the structures pinspect reads lie in a bundled sample's file, found with drgn on the
unmutated sample and its truth file.

ELF samples: every region is a kernel virtual range translated through the dump's own page
tables (:func:`drgn.helpers.linux.mm.follow_phys`) to a physical address and through the
``PT_LOAD`` headers to a file offset. The kdump sample's pages are compressed, so only its
header, sub-header, bitmaps and page descriptors are located (and its length, for cuts).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import drgn
from drgn import FaultError
from drgn.helpers.linux.mm import pfn_to_page
from drgn.helpers.linux.mmzone import for_each_online_pgdat

from pinspect import elf, vmcoreinfo
from pinspect.arch import arch_of
from pinspect.elfmem import ElfMemory
from pinspect.target import open_program
from tests.sampledata import SAMPLES_DIR, sample_paths


@dataclass(frozen=True)
class Region:
    """*length* bytes at file *offset*; *address* is the kernel virtual address (0: none)."""

    offset: int
    length: int
    address: int = 0


@dataclass
class SampleRegions:
    """The located structures of one sample, by kind."""

    name: str
    size: int
    kind: str  # "elf" or "kdump"
    regions: dict[str, list[Region]] = field(default_factory=dict)
    pfns: list[int] = field(default_factory=list)  # pinned pfns of the truth (for ``page``)
    cma_names: list[str] = field(default_factory=list)  # (for ``cma NAME``)
    skipped: dict[str, str] = field(default_factory=dict)  # locator -> why it found nothing

    def add(self, kind: str, region: Region | None) -> None:
        if region is not None and region.length > 0:
            self.regions.setdefault(kind, []).append(region)


# Regions whose bytes are strings the commands print (terminal injection).
STRING_KINDS = ("zone_name", "cma_name", "release", "task_comm")


class _Translator:
    """Kernel virtual address -> file offset of an ELF core."""

    def __init__(self, prog: drgn.Program) -> None:
        # (the samples declare no init_mm: the page tables from VMCOREINFO's init_top_pgt)
        info = vmcoreinfo.from_program(prog)
        pgd = int(info["SYMBOL(init_top_pgt)"], 16) - 0xFFFFFFFF80000000 + \
            int(info.get("NUMBER(phys_base)", "0"), 0)
        arch = arch_of(prog)
        assert arch.page_table is not None, "an x86-64 ELF sample"
        self.memory = ElfMemory(str(prog.core_dump_path), prog, pgd, 4, arch.page_table)

    def region(self, address: int, length: int) -> Region | None:
        """The file range of ``[address, address + length)``, cut where it leaves one
        page; None if its first byte is not in the file."""
        length = min(length, 4096 - (address & 4095))
        try:
            extents = self.memory._translate_extents(address, length)
        except (FaultError, ValueError, LookupError, IndexError):
            return None
        if not extents:
            return None
        offset, size = extents[0]
        return Region(offset, size, address)

    def pages(self, address: int, length: int) -> list[Region]:
        """:meth:`region` page by page over a longer range."""
        out = []
        end = address + length
        while address < end:
            step = min(end - address, 4096 - (address & 4095))
            r = self.region(address, step)
            if r is not None:
                out.append(r)
            address += step
        return out


def _symbol(prog: drgn.Program, name: str) -> tuple[int, int] | None:
    try:
        s = prog.symbol(name)
    except LookupError:
        return None
    return s.address, s.size


def _elf_regions(name: str, out: SampleRegions) -> None:
    core, debug = sample_paths(name)
    data = core.read_bytes()
    header = elf.read_header(data)
    out.add("elf_header", Region(0, 64))
    out.add("elf_phdrs", Region(header.phoff, header.phnum * header.phentsize))
    for ph in elf.program_headers(data, header):
        if ph.type == elf.PT_NOTE:
            out.add("elf_notes", Region(ph.offset, ph.filesz))
            notes = data[ph.offset:ph.offset + ph.filesz]
            at = notes.find(b"VMCOREINFO\0")
            if at >= 0:
                desc = ph.offset + at + 12
                (descsz,) = struct.unpack_from("<I", data, ph.offset + at - 8)
                out.add("vmcoreinfo", Region(desc, descsz))
                release = data.find(b"OSRELEASE=", desc, desc + descsz)
                if release >= 0:
                    end = data.index(b"\n", release)
                    out.add("release", Region(release + 10, end - release - 10))
    prog = open_program(core=str(core), vmlinux=[str(debug)])
    tr = _Translator(prog)
    page_size = prog.type("struct page").size
    for pfn in out.pfns + _control_pfns(name):
        try:
            address = pfn_to_page(prog, pfn).value_()
        except (FaultError, ValueError, LookupError):
            continue
        out.add("struct_page", tr.region(address, page_size))
        out.add("page_ext", _page_ext_region(prog, tr, pfn))
    for pgdat in for_each_online_pgdat(prog):
        zone_type = prog.type("struct zone")
        for i in range(len(pgdat.node_zones)):
            zone = pgdat.node_zones[i]
            if not zone.present_pages.value_():
                continue
            out.add("zone", tr.region(zone.address_, zone_type.size))
            try:
                name_ptr = zone.name.value_()
                text = prog.read(name_ptr, 16).split(b"\0")[0]
                out.add("zone_name", tr.region(name_ptr, len(text)))
            except FaultError:
                pass
        out.add("pgdat", tr.region(pgdat.address_, 4096))
    ms = _symbol(prog, "mem_section")
    if ms is not None:
        out.add("mem_section", tr.region(*ms))
        root = prog.read_u64(ms[0])
        if root:
            out.add("mem_section", tr.region(root, 4096))
            first = prog.read_u64(root)
            if first:
                out.add("mem_section", tr.region(first, 4096))
    for locate_kind in LOCATORS:
        # Each locator finds what this sample has (nothing where it has none): a structure
        # that a sample gains later is mutated from then on without a change here. A locator
        # that fails on a sample locates nothing; the others still run.
        try:
            locate_kind(prog, tr, out)
        except Exception as e:  # noqa: BLE001 - a sample without the structure is no error
            out.skipped[locate_kind.__name__] = f"{type(e).__name__}: {e}"[:200]


def _stack_depot_regions(prog: drgn.Program, tr: _Translator, out: SampleRegions) -> None:
    for sym in ("stack_slabs", "stack_pools", "pools_num", "stack_max_pools",
                "depot_index", "pool_index", "pool_offset", "stack_table", "stack_hash_mask"):
        found = _symbol(prog, sym)
        if found is not None:
            out.add("stack_depot", tr.region(*found))
    _depot_pools(prog, tr, out)


def _page_pinner_regions(prog: drgn.Program, tr: _Translator, out: SampleRegions) -> None:
    for sym in ("lt_pinner", "acf_pinner", "lt_buffer", "acf_buffer", "pp_buffer",
                "pp_buf_size", "page_pinner_inited", "page_pinner_ops"):
        found = _symbol(prog, sym)
        if found is not None:
            out.add("page_pinner", tr.region(found[0], min(found[1], 4096)))
            for r in tr.pages(found[0] + 4096, min(max(found[1] - 4096, 0), 4 * 4096)):
                out.add("page_pinner", r)
    try:
        records = prog["pp_buffer"].buffer.value_()
        for r in tr.pages(records, 4 * 4096):
            out.add("page_pinner", r)
    except (KeyError, LookupError, AttributeError, FaultError):
        pass


def _page_ext_globals(prog: drgn.Program, tr: _Translator, out: SampleRegions) -> None:
    for sym in ("page_owner_ops", "page_owner_inited", "page_ext_size", "total_usage"):
        found = _symbol(prog, sym)
        if found is not None:
            out.add("page_ext_globals", tr.region(*found))


def _release_regions(prog: drgn.Program, tr: _Translator, out: SampleRegions) -> None:
    if _symbol(prog, "init_uts_ns") is not None:
        release = prog["init_uts_ns"].name.release
        out.add("release", tr.region(release.address_, 12))


MAX_TASKS = 64  # tasks, VMAs and files located per sample (mutations pick one region)


def _task_regions(prog: drgn.Program, tr: _Translator, out: SampleRegions) -> None:
    """Tasks, their names, mm_structs, VMAs and maple tree roots, found as pinspect finds
    them (``init_task.tasks``): none in a sample without processes."""
    from drgn.helpers.linux.mm import for_each_vma

    from pinspect.procs import proc_index

    task_type = prog.type("struct task_struct")
    comm = task_type.member("comm").offset  # type: ignore[union-attr]
    vma_size = prog.type("struct vm_area_struct").size
    for proc in proc_index(prog).procs[:MAX_TASKS]:
        out.add("task", tr.region(proc.task, task_type.size))
        out.add("task_comm", tr.region(proc.task + comm, 16))
        if not proc.mm:
            continue
        mm = drgn.Object(prog, "struct mm_struct", address=proc.mm)
        out.add("mm", tr.region(proc.mm, 4096))
        try:
            root = mm.mm_mt.ma_root.value_()  # 6.1+: the VMAs' maple tree
            if root & 2:  # an internal node: the node is the pointer without its low bits
                out.add("vma_tree", tr.region(root & ~0xFF, 256))
        except AttributeError:
            pass
        for i, vma in enumerate(for_each_vma(mm)):
            if i >= MAX_TASKS:
                break
            out.add("vma", tr.region(vma.value_(), vma_size))


def _file_holder_regions(prog: drgn.Program, tr: _Translator, out: SampleRegions) -> None:
    """Pipes and io_uring rings held open by the sample's processes (the objects the pipe and
    io_uring holders read), and the fd tables that lead to them."""
    from pinspect.procs import proc_index

    index = proc_index(prog)
    for proc in index.procs[:MAX_TASKS]:
        if proc.files:
            out.add("fd_table", tr.region(proc.files, 256))
    pipe_size = prog.type("struct pipe_inode_info").size
    buffer_size = prog.type("struct pipe_buffer").size
    for f in index.files_with_fops("pipefifo_fops")[:MAX_TASKS]:
        out.add("file", tr.region(f.file, 256))
        pipe = drgn.Object(prog, "struct pipe_inode_info", address=f.private_data)
        out.add("pipe", tr.region(f.private_data, pipe_size))
        try:
            slots = int(pipe.ring_size) if pipe.type_.has_member("ring_size") \
                else int(pipe.buffers)
            for r in tr.pages(pipe.bufs.value_(), min(slots, 64) * buffer_size):
                out.add("pipe_buffers", r)
        except FaultError:
            pass
    try:
        ctx_size = prog.type("struct io_ring_ctx").size
    except LookupError:
        return
    for f in index.files_with_fops("io_uring_fops")[:MAX_TASKS]:
        out.add("file", tr.region(f.file, 256))
        for r in tr.pages(f.private_data, ctx_size):
            out.add("io_uring", r)


# Where each kind of structure lies (see _elf_regions). A new kind is one more function here.
def _control_pfns(name: str) -> list[int]:
    truth = json.loads((SAMPLES_DIR / f"{name}.truth.json").read_text())
    pfns = [p["pfn"] for p in truth.get("controls", [])]
    for listed in truth.get("classified", {}).values():
        pfns += [x if isinstance(x, int) else x[0] if isinstance(x, list) else x.get("pfn", 0)
                 for x in listed]
    return sorted(set(pfns))[:200]


def _page_ext_region(prog: drgn.Program, tr: _Translator, pfn: int) -> Region | None:
    try:
        size = prog["page_ext_size"].value_()
        section = prog["mem_section"][0][pfn >> (22 - 12)]
        table = section.page_ext.value_()
        if not table or table & 1:
            return None
        return tr.region((table + size * pfn) % (1 << 64), size)
    except (KeyError, LookupError, FaultError, TypeError, drgn.ObjectAbsentError):
        return None


def _cma_regions(prog: drgn.Program, tr: _Translator, out: SampleRegions) -> None:
    found = _symbol(prog, "cma_areas")
    count = _symbol(prog, "cma_area_count")
    if found is None or count is None:
        return
    out.add("cma", tr.region(*count))
    n = prog.read_u32(count[0])
    cma_type = prog.type("struct cma")
    for i in range(min(n, 8)):
        address = found[0] + i * cma_type.size
        area = drgn.Object(prog, cma_type, address=address)
        out.add("cma", tr.region(address, cma_type.size))
        try:
            name = area.name
            if name.type_.kind == drgn.TypeKind.ARRAY:
                out.add("cma_name", tr.region(name.address_, 16))
            out.cma_names.append(name.string_().decode(errors="replace"))
        except (AttributeError, LookupError, FaultError):
            pass
        bitmaps = []
        if cma_type.has_member("bitmap"):
            bitmaps.append(area.bitmap.value_())
        if cma_type.has_member("ranges"):
            for j in range(min(area.nranges.value_(), 4)):
                bitmaps.append(area.ranges[j].bitmap.value_())
        for bitmap in bitmaps:
            if bitmap:
                out.add("cma_bitmap", tr.region(bitmap, 64))


def _depot_pools(prog: drgn.Program, tr: _Translator, out: SampleRegions) -> None:
    for sym in ("stack_slabs", "stack_pools"):
        found = _symbol(prog, sym)
        if found is None:
            continue
        base, size = found
        if sym == "stack_pools" and size == 8:  # 7.2: a pointer to a kvcalloc'd array
            try:
                base = prog.read_u64(base)
            except FaultError:
                continue
            size = 8 * 8
        for i in range(min(size // 8, 4)):
            try:
                pool = prog.read_u64(base + 8 * i)
            except FaultError:
                break
            if pool:
                for r in tr.pages(pool, 2 * 4096):
                    out.add("stack_pool", r)


def _kdump_regions(name: str, out: SampleRegions) -> None:
    core, _ = sample_paths(name)
    data = core.read_bytes()
    block_size, sub_blocks, bitmap_blocks = struct.unpack_from("<iii", data, 428)
    out.add("kdump_header", Region(0, 464))
    out.add("kdump_subheader", Region(block_size, sub_blocks * block_size))
    bitmap = (1 + sub_blocks) * block_size
    half = bitmap_blocks * block_size // 2
    out.add("kdump_bitmap1", Region(bitmap, half))
    out.add("kdump_bitmap2", Region(bitmap + half, half))
    descs = bitmap + 2 * half
    dumpable = sum(bin(b).count("1") for b in data[bitmap + half:bitmap + 2 * half])
    out.add("kdump_descriptors", Region(descs, dumpable * 24))
    out.add("kdump_data", Region(descs + dumpable * 24, len(data) - descs - dumpable * 24))


def locate(name: str) -> SampleRegions:
    """The located structures of sample *name* (opens it with drgn once)."""
    core, _ = sample_paths(name)
    truth = json.loads((SAMPLES_DIR / f"{name}.truth.json").read_text())
    data = core.read_bytes()[:8]
    kind = "elf" if data.startswith(elf.ELF_MAGIC) else "kdump"
    out = SampleRegions(name, core.stat().st_size, kind,
                        pfns=sorted({p["pfn"] for p in truth.get("pinned", [])}))
    if kind == "elf":
        _elf_regions(name, out)
    else:
        _kdump_regions(name, out)
    return out


REGIONS_VERSION = 2  # (part of the cache file's name: a new version locates again)


def cached(name: str, cache_dir: Path) -> SampleRegions:
    """:func:`locate`, kept as JSON in *cache_dir* next to the sample's size and mtime."""
    core, _ = sample_paths(name)
    st = core.stat()
    path = cache_dir / f"regions{REGIONS_VERSION}-{name}-{st.st_size}-{int(st.st_mtime)}.json"
    try:
        raw = json.loads(path.read_text())
        return SampleRegions(raw["name"], raw["size"], raw["kind"],
                             {k: [Region(*r) for r in v] for k, v in raw["regions"].items()},
                             raw["pfns"], raw.get("cma_names", []), raw.get("skipped", {}))
    except (OSError, ValueError, KeyError):
        pass
    found = locate(name)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "name": found.name, "size": found.size, "kind": found.kind, "pfns": found.pfns,
        "cma_names": found.cma_names, "skipped": found.skipped,
        "regions": {k: [[r.offset, r.length, r.address] for r in v]
                    for k, v in found.regions.items()}}))
    return found


# Where each kind of structure lies in an ELF sample (see _elf_regions). A new kind of
# structure is one more function here; a sample without it locates nothing of that kind.
LOCATORS: list[Callable[[drgn.Program, _Translator, SampleRegions], None]] = [
    _cma_regions, _stack_depot_regions, _page_pinner_regions, _page_ext_globals,
    _release_regions, _task_regions, _file_holder_regions,
]
