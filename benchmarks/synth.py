"""Large synthetic ELF vmcores with a known set of pinned pages, made on demand.

A synthetic dump starts from the real-kernel tier's Debian 6.1 ELF dump (a 4.5 GiB guest,
about 1.2 M pages, with its vmlinux) and grows it to *N* Mi struct pages: the new memory
sections are hot-added the way the kernel's own SPARSEMEM_VMEMMAP code would, by

* appending the new physical memory to the last ``PT_LOAD`` segment (sparse: only the pages
  that hold data take disk space),
* filling ``mem_section`` (allocating a new root page when the sections need one) and
  ``__highest_present_section_nr``,
* mapping the new ``struct page`` arrays into the vmemmap with 2 MiB PMD entries (allocating
  PMD tables when needed), and
* growing the Normal zone, the node and ``max_pfn``.

The new ``struct page`` arrays are built from pages of the original dump, so they carry the
kernel's real flag and field layout: each 128 MiB section holds order-10 free buddy blocks,
small anonymous pages, page cache pages, order-9 anonymous THPs and kernel allocations. The
free blocks are free the way the kernel's are: linked (through their head page's
``buddy_list``) into the Normal zone's ``free_area[10].free_list[MIGRATE_MOVABLE]`` and counted
in its ``nr_free`` and in the zone's and the global ``NR_FREE_PAGES``.
A chosen number of them get pins (FOLL_PIN on small pages and on THPs, and an extra page
reference); ``manifest.json`` beside the dump lists them, with what pinspect reports on the
original dump, so a benchmark run can check every page it finds.

    python3 -m benchmarks.synth --mpages 4 --pins 1000
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import bench_dir, cache_dir, disk_usage, log

PAGE = 4096
PMD_SIZE = 1 << 21
PTE_ADDR = 0x000F_FFFF_FFFF_F000
PSE = 0x80
NX = 1 << 63
PAGE_MAPCOUNT_BUDDY = -129  # 6.1: PG_buddy (0x80) cleared in page_type (_mapcount)
GENERATOR_VERSION = 3

# The order of the template's free blocks (1024 pages) and of the free list they go on.
FREE_ORDER = 10

# Composition of every new 128 MiB section, in 1024-page blocks (32 blocks).
BLOCKS = ("free",) * 8 + ("anon",) * 10 + ("file",) * 6 + ("thp",) * 4 + ("kernel",) * 4


@dataclass
class Source:
    """The real dump a synthetic one grows from."""

    core: Path
    vmlinux: Path


def default_source() -> Source:
    """The real-kernel tier's Debian 6.1 ELF dump, as READY.txt lists it."""
    base = cache_dir() / "dev" / "deb61"
    paths = base / "paths.json"
    if not paths.exists():
        raise FileNotFoundError(
            f"{paths} is missing: make the real-kernel dev dumps first "
            "(python3 tests/realkernel/harness.py dev deb61)")
    entry = json.loads(paths.read_text())
    return Source(Path(entry["elf"]), Path(entry["vmlinux"]))


@dataclass
class Phdr:
    index: int
    type: int
    offset: int
    paddr: int
    filesz: int


class CoreFile:
    """An ELF64 core open for patching by physical address."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "r+b")  # noqa: SIM115
        ident = self.f.read(64)
        if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
            raise ValueError(f"{path} is not a little-endian ELF64 file")
        self.phoff, = struct.unpack_from("<Q", ident, 0x20)
        self.phentsize, self.phnum = struct.unpack_from("<HH", ident, 0x36)
        self.phdrs: list[Phdr] = []
        for i in range(self.phnum):
            self.f.seek(self.phoff + i * self.phentsize)
            p_type, _, off, _, paddr, filesz, _ = struct.unpack("<IIQQQQQ", self.f.read(48))
            self.phdrs.append(Phdr(i, p_type, off, paddr, filesz))

    def loads(self) -> list[Phdr]:
        return [p for p in self.phdrs if p.type == 1]

    def offset(self, phys: int, size: int = 1) -> int:
        for p in self.loads():
            if p.paddr <= phys and phys + size <= p.paddr + p.filesz:
                return p.offset + phys - p.paddr
        raise ValueError(f"physical address {phys:#x} is not in the dump")

    def write(self, phys: int, data: bytes) -> None:
        self.f.seek(self.offset(phys, len(data)))
        self.f.write(data)

    def read(self, phys: int, size: int) -> bytes:
        self.f.seek(self.offset(phys, size))
        return self.f.read(size)

    def u64(self, phys: int) -> int:
        return int.from_bytes(self.read(phys, 8), "little")

    def put_u64(self, phys: int, value: int) -> None:
        self.write(phys, value.to_bytes(8, "little"))

    def grow_last(self, new_end_phys: int) -> None:
        """Extend the last PT_LOAD to *new_end_phys*.

        What follows it in the file (QEMU puts the section name table there) moves along.
        """
        last = max(self.loads(), key=lambda p: p.offset)
        old_end = last.offset + last.filesz
        self.f.seek(old_end)
        trailer = self.f.read()
        if len(trailer) > 1 << 20:
            raise ValueError("the last PT_LOAD is followed by more than 1 MiB of data")
        grown = new_end_phys - last.paddr
        delta = grown - last.filesz
        self.f.seek(self.phoff + last.index * self.phentsize + 32)
        self.f.write(struct.pack("<QQ", grown, grown))  # p_filesz, p_memsz
        self.f.truncate(old_end)
        self.f.truncate(old_end + delta)  # a hole
        self.f.seek(old_end + delta)
        self.f.write(trailer)
        # Section headers pointing into the moved trailer.
        self.f.seek(0x28)
        shoff, = struct.unpack("<Q", self.f.read(8))
        self.f.seek(0x3A)
        shentsize, shnum = struct.unpack("<HH", self.f.read(4))
        for i in range(shnum if shoff else 0):
            at = shoff + i * shentsize + 0x18
            self.f.seek(at)
            offset, = struct.unpack("<Q", self.f.read(8))
            if offset >= old_end:
                self.f.seek(at)
                self.f.write(struct.pack("<Q", offset + delta))
        last.filesz = grown

    def close(self) -> None:
        self.f.close()


@dataclass
class Facts:
    """What the generator needs to know about the source kernel, read once with drgn."""

    page_size_struct: int
    flags_off: int
    compound_head_off: int
    refcount_off: int
    mapcount_off: int
    pincount_off: int | None
    head_mask: int
    reserved_mask: int
    vmemmap: int
    page_offset: int
    pgd_phys: int
    pages_per_section: int
    sections_per_root: int
    section_struct_size: int
    root_array_phys: int  # phys of mem_section[] (the array of root pointers)
    usage_template: int  # a section's usage pointer, shared by the new sections
    section_map_flags: int
    highest_section: int
    end_pfn: int  # end of the original physical memory (a section boundary)
    valid_pages: int
    var_phys: dict[str, int]
    var_value: dict[str, int]
    templates: dict[str, int]  # kind -> pfn of a template page or block in the source
    buddy_link_off: int  # struct page's buddy_list (aliases lru): links a free block's head
    free_list: int  # address of the Normal zone's free_area[10].free_list[MIGRATE_MOVABLE]
    free_list_phys: int
    free_list_last: int  # its prev: the last node now (the list head itself when empty)
    original_pinned: list[dict[str, Any]]


def _gather(source: Source) -> Facts:
    from drgn import Object
    from drgn.helpers.linux.mm import follow_phys, for_each_valid_page_range

    from pinspect.evidence import FlagMasks, mapping_kinds
    from pinspect.kernel import probe
    from pinspect.report import find_pinned
    from pinspect.scan import PageChunk
    from pinspect.target import open_program
    from pinspect.zones import zones

    prog = open_program(core=str(source.core), vmlinux=[str(source.vmlinux)])
    kernel = probe(prog)
    layout = kernel.layout
    if layout.size != 64 or kernel.page_size != PAGE or kernel.vmemmap is None:
        raise ValueError("the source must be an x86_64 SPARSEMEM_VMEMMAP kernel dump")
    init_mm = prog["init_mm"].address_of_()

    def phys(addr: int) -> int:
        return int(follow_phys(init_mm, addr))

    ranges = list(for_each_valid_page_range(prog))
    end_pfn = ranges[-1][1]
    pages_per_section = 1 << (prog["SECTION_SIZE_BITS"].value_() - kernel.page_shift)
    if end_pfn % pages_per_section:
        raise ValueError("the source's memory does not end on a section boundary")
    mem_section = prog["mem_section"]
    last = end_pfn // pages_per_section - 1
    spr = prog["SECTIONS_PER_ROOT"].value_()
    last_section = mem_section[last // spr][last % spr]
    normal = next(z for z in zones(kernel) if z.name == "Normal")
    if normal.end_pfn != end_pfn:
        raise ValueError("the source's Normal zone does not end its memory")
    zone = Object(prog, "struct zone", address=normal.address)
    pgdat = prog["node_data"][0]
    # The free blocks of the new sections go on this list, at its tail (list_add_tail).
    movable = prog["MIGRATE_MOVABLE"].value_()
    area = zone.free_area[FREE_ORDER]
    free_list = area.free_list[movable]
    nr_free_pages = prog["NR_FREE_PAGES"].value_()
    page_type = prog.type("struct page")
    try:
        # 6.1+ names the list member buddy_list; it aliases lru.
        buddy_link_off = page_type.member("buddy_list").offset
    except LookupError:
        buddy_link_off = page_type.member("lru").offset
    variables = {
        "__highest_present_section_nr": prog["__highest_present_section_nr"].address_,
        "max_pfn": prog["max_pfn"].address_,
        "max_low_pfn": prog["max_low_pfn"].address_,
        "node_spanned_pages": pgdat.node_spanned_pages.address_,
        "node_present_pages": pgdat.node_present_pages.address_,
        "zone_spanned_pages": zone.spanned_pages.address_,
        "zone_present_pages": zone.present_pages.address_,
        "zone_managed_pages": zone.managed_pages.address_,
        "free_area_nr_free": area.nr_free.address_,
        "zone_nr_free_pages": zone.vm_stat[nr_free_pages].counter.address_,
        "vm_zone_nr_free_pages": prog["vm_zone_stat"][nr_free_pages].counter.address_,
    }
    var_phys = {k: phys(v) for k, v in variables.items() if v is not None}
    var_value = {k: int.from_bytes(prog.read(v, 8), "little")
                 for k, v in variables.items() if v is not None}

    # Template pages, found by what pinspect itself decodes from the Normal zone.
    masks = FlagMasks.of(kernel)
    start = normal.start_pfn
    raw = prog.read(kernel.vmemmap + start * 64, (end_pfn - start) * 64)
    chunk = PageChunk(kernel, start, np.frombuffer(raw, dtype=np.uint8))
    flags, ref = chunk.flags, chunk.refcount
    mc = chunk.mapcount
    tail = (chunk.compound_head & np.uint64(1)) != 0
    head = (flags & np.uint64(masks.head)) != 0
    kind = mapping_kinds(chunk.mapping, flags, masks)
    lru = (flags & np.uint64(masks.lru)) != 0
    private = chunk.column(layout.private, "<u8")
    small = ~tail & ~head
    report = find_pinned(prog)
    pinned = {p.pfn for p in report.pages}
    near_pin = np.zeros(chunk.n, dtype=bool)  # a 1024-page block from here holds a pin
    for p in report.pages:
        near_pin[max(0, p.pfn - start - 1023):max(0, p.pfn - start + p.nr_pages)] = True
    picks = {
        "anon": small & lru & (kind == 1) & (ref == 1) & (mc == 0),
        "file": small & (kind == 3) & (ref == mc.astype(np.int64) + 2),
        "kernel": small & (kind == 0) & (ref == 1) & (mc == -1)
        & ((flags & np.uint64((1 << 24) - 1)) == 0),
        "free": (mc == PAGE_MAPCOUNT_BUDDY) & (private == 10),
        }
    thp = np.flatnonzero(head & (kind == 1) & (ref == 1) & (np.arange(chunk.n) + 512 <= chunk.n))
    thp_order = chunk.at(thp, layout.folio.order, "u1")
    picks["thp"] = np.isin(np.arange(chunk.n), thp[thp_order == 9])
    picks["file"] &= (flags & np.uint64(masks.private)) == 0
    templates = {}
    for name, ok in picks.items():
        # a block template must hold no pinned page; a single page must not be one
        found = np.flatnonzero(ok & ~near_pin if name in ("free", "thp") else ok)
        found = found[~np.isin(found + start, list(pinned))]
        if not len(found):
            raise ValueError(f"no {name} template page in the source dump")
        templates[name] = start + int(found[0])
    reserved = kernel.flags.mask("PG_reserved")
    original_pinned = [{"pfn": p.pfn, "nr_pages": p.nr_pages, "evidence": p.evidence}
                       for p in report.pages]
    return Facts(
        page_size_struct=64,
        flags_off=layout.flags,
        compound_head_off=layout.compound_head,
        refcount_off=layout.refcount,
        mapcount_off=layout.mapcount,
        pincount_off=layout.folio.pincount,
        head_mask=masks.head,
        reserved_mask=reserved,
        vmemmap=kernel.vmemmap,
        page_offset=prog["page_offset_base"].value_(),
        pgd_phys=phys(prog["init_mm"].pgd.value_()),
        pages_per_section=pages_per_section,
        sections_per_root=spr,
        section_struct_size=prog.type("struct mem_section").size,
        root_array_phys=phys(mem_section.value_()),
        usage_template=last_section.usage.value_(),
        section_map_flags=last_section.section_mem_map.value_() & 0x3F,
        highest_section=prog["__highest_present_section_nr"].value_(),
        end_pfn=end_pfn,
        valid_pages=sum(e - s for s, e, _ in ranges),
        var_phys=var_phys,
        var_value=var_value,
        templates=templates,
        buddy_link_off=buddy_link_off,
        free_list=free_list.address_of_().value_(),
        free_list_phys=phys(free_list.address_of_().value_()),
        free_list_last=free_list.prev.value_(),
        original_pinned=original_pinned,
    )


def _section_template(facts: Facts, core: CoreFile) -> tuple[np.ndarray, np.ndarray]:
    """One section's struct pages (uint8, pages x 64) and which of them are THP tails."""
    n = facts.pages_per_section
    out = np.zeros((n, 64), dtype=np.uint8)
    is_tail = np.zeros(n, dtype=bool)

    def pages(pfn: int, count: int) -> np.ndarray:
        data = core.read(_vmemmap_phys(facts, core, pfn), count * 64)
        return np.frombuffer(data, dtype=np.uint8).reshape(count, 64)

    free = pages(facts.templates["free"], 1024)
    thp = pages(facts.templates["thp"], 512)
    single = {k: pages(facts.templates[k], 1)[0] for k in ("anon", "file", "kernel")}
    for b, kind in enumerate(BLOCKS):
        block = slice(b * 1024, (b + 1) * 1024)
        if kind == "free":
            out[block] = free
        elif kind == "thp":
            out[block] = np.concatenate([thp, thp])
            is_tail[block] = (np.arange(1024) % 512) != 0
        else:
            out[block] = single[kind]
    return out, is_tail


def _vmemmap_phys(facts: Facts, core: CoreFile, pfn: int) -> int:
    """Physical address of pfn's struct page, by walking the page tables in the file."""
    va = facts.vmemmap + pfn * 64
    table = facts.pgd_phys
    for shift in (39, 30, 21, 12):
        entry = core.u64(table + 8 * ((va >> shift) & 511))
        if not entry & 1:
            raise ValueError(f"vmemmap address {va:#x} is not mapped")
        if shift in (30, 21) and entry & PSE:
            return (entry & PTE_ADDR & ~((1 << shift) - 1)) + (va & ((1 << shift) - 1))
        table = entry & PTE_ADDR
    return table + (va & (PAGE - 1))


class _Allocator:
    """Hands out 4 KiB pages of the new memory's metadata area."""

    def __init__(self, start_phys: int, end_phys: int) -> None:
        self.next, self.end = start_phys, end_phys

    def page(self) -> int:
        if self.next >= self.end:
            raise ValueError("metadata area is full")
        self.next += PAGE
        return self.next - PAGE


def _set(arr: np.ndarray, rows: np.ndarray | int | slice, offset: int, dtype: str,
         value: Any) -> None:
    """Set the field at *offset* of struct pages *rows* of *arr* (pages x 64 bytes)."""
    width = np.dtype(dtype).itemsize
    if isinstance(rows, int):
        arr[rows, offset:offset + width] = np.array([value], dtype=dtype).view(np.uint8)
        return
    view = arr[:, offset:offset + width].copy().view(dtype)
    view[rows, 0] = value
    arr[:, offset:offset + width] = view.view(np.uint8)


def _get(arr: np.ndarray, offset: int, dtype: str) -> np.ndarray:
    width = np.dtype(dtype).itemsize
    return arr[:, offset:offset + width].copy().view(dtype).ravel()


def generate(mpages: int, pins: int, source: Source | None = None,
             out: Path | None = None) -> Path:
    """Make (or reuse) a synthetic dump of at least *mpages* Mi struct pages; its path."""
    source = source or default_source()
    out = out or bench_dir() / f"synth-{mpages}M-{pins}pins.elf"
    manifest_path = out.with_suffix(".json")
    if out.exists() and manifest_path.exists():
        m = json.loads(manifest_path.read_text())
        if m.get("version") == GENERATOR_VERSION and m.get("source") == str(source.core):
            return out
    t0 = time.monotonic()
    log(f"reading {source.core}")
    facts = _gather(source)
    pps = facts.pages_per_section
    total_target = mpages << 20
    orig_pages = facts.valid_pages
    new_sections = max(1, -(-(total_target - orig_pages) // pps))
    first_section = facts.end_pfn // pps
    end_pfn = facts.end_pfn + new_sections * pps
    # Metadata (vmemmap backing, then page tables and mem_section roots) at the top of memory.
    meta_end = end_pfn * PAGE
    # (4 MiB aligned, so that no order-10 free block of the template is cut in two)
    backing_base = (meta_end - PMD_SIZE - new_sections * PMD_SIZE) & ~((2 * PMD_SIZE) - 1)
    # Pins go only into sections the metadata area leaves whole.
    usable = (backing_base // PAGE - facts.end_pfn) // pps
    if usable < 1:
        raise ValueError("too few new sections for the metadata area")
    tmp = out.with_suffix(".tmp")
    log(f"copying {source.core} sparsely to {tmp}")
    subprocess.run(["cp", "--sparse=always", str(source.core), str(tmp)], check=True)
    os.chmod(tmp, 0o600)
    core = CoreFile(tmp)
    try:
        core.grow_last(end_pfn * PAGE)
        alloc = _Allocator(meta_end - PMD_SIZE, meta_end)
        template, tails = _section_template(facts, core)
        head_pfns = np.flatnonzero(~tails & (np.arange(pps) % 512 == 0)
                                   & np.isin(np.arange(pps) // 1024,
                                             [i for i, k in enumerate(BLOCKS) if k == "thp"]))
        # Pages in the metadata area are reserved kernel memory.
        reserved_row = np.frombuffer(core.read(_vmemmap_phys(facts, core, facts.templates[
            "kernel"]), 64), dtype=np.uint8).copy()
        _set(reserved_row[None, :], 0, facts.flags_off, "<u8",
             int(_get(reserved_row[None, :], facts.flags_off, "<u8")[0])
             | facts.reserved_mask)
        reserved_from = backing_base // PAGE
        pin_plan = _plan_pins(pins, usable, pps, head_pfns)
        # Every free block outside the metadata area goes on the free list, in pfn order.
        free_rows = np.array([b * 1024 for b, k in enumerate(BLOCKS) if k == "free"])
        free_heads = np.concatenate([first_section * pps + i * pps + free_rows
                                     for i in range(new_sections)])
        free_heads = free_heads[free_heads + (1 << FREE_ORDER) <= reserved_from]
        nodes = [facts.vmemmap + pfn * 64 + facts.buddy_link_off for pfn in free_heads.tolist()]
        # list_head {next, prev}: new nodes between the old last node and the list head.
        chain = [facts.free_list_last] + nodes + [facts.free_list]
        link_of = {pfn: (chain[j + 2], chain[j]) for j, pfn in enumerate(free_heads.tolist())}
        expected: list[dict[str, Any]] = []
        ch_col = _get(template, facts.compound_head_off, "<u8")
        for i in range(new_sections):
            section = first_section + i
            start_pfn = section * pps
            pages = template.copy()
            # THP tails point at their head's struct page.
            heads = np.arange(pps) - (np.arange(pps) % 512)
            head_va = np.uint64(facts.vmemmap) + (np.uint64(start_pfn) + heads.astype(np.uint64)) \
                * np.uint64(64) + np.uint64(1)
            new_ch = np.where(tails, head_va, ch_col)
            _set(pages, slice(None), facts.compound_head_off, "<u8", new_ch.astype(np.uint64))
            for idx, how in pin_plan.get(i, []):
                expected.append(_apply_pin(pages, idx, how, start_pfn, facts))
            for row in free_rows:
                if start_pfn + int(row) in link_of:
                    _set(pages, int(row), facts.buddy_link_off, "<u8",
                         link_of[start_pfn + int(row)][0])
                    _set(pages, int(row), facts.buddy_link_off + 8, "<u8",
                         link_of[start_pfn + int(row)][1])
            lo = max(reserved_from - start_pfn, 0)
            if lo < pps:
                pages[lo:] = reserved_row
            backing = backing_base + i * PMD_SIZE
            core.write(backing, pages.tobytes())
            _map_2m(core, facts, alloc, facts.vmemmap + start_pfn * 64, backing)
            _add_section(core, facts, alloc, section)
        # The direct map covers the new memory too (mem_section roots are read through it).
        for phys in range(facts.end_pfn * PAGE, end_pfn * PAGE, PMD_SIZE):
            _map_2m(core, facts, alloc, facts.page_offset + phys, phys)
        highest = first_section + new_sections - 1
        added = new_sections * pps
        v = facts.var_value
        patches = {
            "__highest_present_section_nr": highest,
            "max_pfn": end_pfn,
            "max_low_pfn": end_pfn if v["max_low_pfn"] == v["max_pfn"] else v["max_low_pfn"],
            "node_spanned_pages": v["node_spanned_pages"] + added,
            "node_present_pages": v["node_present_pages"] + added,
            "zone_spanned_pages": v["zone_spanned_pages"] + added,
            "zone_present_pages": v["zone_present_pages"] + added,
            "zone_managed_pages": v["zone_managed_pages"] + added - (end_pfn - reserved_from),
        }
        linked = len(nodes)
        patches.update({
            "free_area_nr_free": v["free_area_nr_free"] + linked,
            "zone_nr_free_pages": v["zone_nr_free_pages"] + (linked << FREE_ORDER),
            "vm_zone_nr_free_pages": v["vm_zone_nr_free_pages"] + (linked << FREE_ORDER),
        })
        for name, value in patches.items():
            core.put_u64(facts.var_phys[name], value)
        if nodes:
            # The old last node's next and the list head's prev now lead to the new nodes.
            if facts.free_list_last == facts.free_list:
                last_next = facts.free_list_phys
            else:
                node = facts.free_list_last - facts.buddy_link_off - facts.vmemmap
                last_next = _vmemmap_phys(facts, core, node // 64) + node % 64 + \
                    facts.buddy_link_off
            core.put_u64(last_next, nodes[0])
            core.put_u64(facts.free_list_phys + 8, nodes[-1])
    finally:
        core.close()
    expected.sort(key=lambda e: e["pfn"])
    manifest = {
        "version": GENERATOR_VERSION,
        "source": str(source.core),
        "vmlinux": str(source.vmlinux),
        "pages": orig_pages + added,
        "new_sections": new_sections,
        "first_new_pfn": facts.end_pfn,
        "end_pfn": end_pfn,
        "free_blocks_linked": linked,
        "injected": expected,
        "original_pinned": facts.original_pinned,
        "facts": {k: v for k, v in asdict(facts).items() if k in ("templates",)},
    }
    tmp.rename(out)
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    log(f"{out}: {orig_pages + added} pages, {out.stat().st_size >> 30} GiB "
        f"({disk_usage(out) >> 20} MiB on disk), {len(expected)} pins injected, "
        f"{time.monotonic() - t0:.0f}s")
    return out


def _plan_pins(pins: int, sections: int, pps: int,
               head_pfns: np.ndarray) -> dict[int, list[tuple[int, str]]]:
    """Spread *pins* over the new sections: FOLL_PIN small, extra reference, FOLL_PIN THP."""
    anon_rows = np.flatnonzero(np.isin(np.arange(pps) // 1024,
                                       [i for i, k in enumerate(BLOCKS) if k == "anon"]))
    plan: dict[int, list[tuple[int, str]]] = {}
    kinds = ("foll_pin", "extra", "thp_pin")
    used: dict[int, set[int]] = {}
    for k in range(pins):
        section = k * sections // pins
        how = kinds[k % 3]
        taken = used.setdefault(section, set())
        if how == "thp_pin" and taken.issuperset(head_pfns.tolist()):
            how = "foll_pin"  # this section's THPs are all pinned already
        pool = head_pfns if how == "thp_pin" else anon_rows
        if len(taken) >= len(anon_rows):
            raise ValueError(f"too many pins ({pins}) for {sections} sections")
        j = (k * 7919) % len(pool)
        while int(pool[j]) in taken:
            j = (j + 1) % len(pool)
        taken.add(int(pool[j]))
        plan.setdefault(section, []).append((int(pool[j]), how))
    return plan


def _apply_pin(pages: np.ndarray, idx: int, how: str, start_pfn: int,
               facts: Facts) -> dict[str, Any]:
    ref = int(_get(pages[idx:idx + 1], facts.refcount_off, "<i4")[0])
    if how == "foll_pin":
        _set(pages, idx, facts.refcount_off, "<i4", ref + 1024)
        return {"pfn": start_pfn + idx, "nr_pages": 1, "evidence": ["foll_pin"]}
    if how == "extra":
        _set(pages, idx, facts.refcount_off, "<i4", ref + 1)
        return {"pfn": start_pfn + idx, "nr_pages": 1, "evidence": ["extra"]}
    assert facts.pincount_off is not None
    _set(pages, idx, facts.refcount_off, "<i4", ref + 1)
    row, off = divmod(facts.pincount_off, 64)
    _set(pages, idx + row, off, "<i4", 1)
    return {"pfn": start_pfn + idx, "nr_pages": 512, "evidence": ["foll_pin"]}


def _map_2m(core: CoreFile, facts: Facts, alloc: _Allocator, va: int, phys: int) -> None:
    """Map 2 MiB at *va* to *phys* with a PMD entry (no-op if a 1 GiB page maps it)."""
    table = facts.pgd_phys
    for shift in (39, 30):
        slot = table + 8 * ((va >> shift) & 511)
        entry = core.u64(slot)
        if not entry & 1:
            new = alloc.page()
            core.write(new, bytes(PAGE))
            entry = new | 0x63  # present, writable, accessed, dirty
            core.put_u64(slot, entry)
        elif shift == 30 and entry & PSE:
            return
        table = entry & PTE_ADDR
    core.put_u64(table + 8 * ((va >> 21) & 511), phys | 0x1E3 | NX)


def _add_section(core: CoreFile, facts: Facts, alloc: _Allocator, section: int) -> None:
    root_nr, index = divmod(section, facts.sections_per_root)
    root_slot = facts.root_array_phys + 8 * root_nr
    root = core.u64(root_slot)
    if root == 0:
        page = alloc.page()
        core.write(page, bytes(PAGE))
        root = facts.page_offset + page
        core.put_u64(root_slot, root)
    entry = root - facts.page_offset + index * facts.section_struct_size
    core.write(entry, struct.pack("<QQ", facts.vmemmap | facts.section_map_flags,
                                  facts.usage_template))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mpages", type=int, default=4, help="Mi struct pages (4 = 16 GiB)")
    ap.add_argument("--pins", type=int, default=1000, help="pinned folios to add")
    ap.add_argument("--force", action="store_true", help="regenerate even if cached")
    args = ap.parse_args()
    out = bench_dir() / f"synth-{args.mpages}M-{args.pins}pins.elf"
    if args.force:
        out.unlink(missing_ok=True)
    print(generate(args.mpages, args.pins, out=out))


if __name__ == "__main__":
    main()
