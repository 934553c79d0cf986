"""Physical memory of a synthetic machine, its kernel page tables, and writers
for the two dump formats (ELF vmcore and kdump-compressed "diskdump")."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Arch:
    """Architecture parameters.  Only x86-64 with 4-level paging exists now;
    arm64 (4 KiB / 16 KiB pages) will add its own instance."""

    name: str = "x86_64"
    drgn_arch: str = "X86_64"  # drgn.Architecture member
    elf_machine: int = 62  # EM_X86_64
    page_shift: int = 12
    pgtable_levels: int = 4
    page_offset_base: int = 0xFFFF888000000000
    vmalloc_base: int = 0xFFFFC90000000000
    vmemmap_base: int = 0xFFFFEA0000000000
    start_kernel_map: int = 0xFFFFFFFF80000000
    kernel_text: int = 0xFFFFFFFF81000000
    max_physmem_bits: int = 46

    @property
    def page_size(self) -> int:
        return 1 << self.page_shift


X86_64 = Arch()

PTE_PRESENT = 0x1
PTE_RW = 0x2
PTE_ACCESSED = 0x20
PTE_DIRTY = 0x40
PTE_PSE = 0x80
PTE_GLOBAL = 0x100
PTE_NX = 1 << 63
KERNEL_TABLE = PTE_PRESENT | PTE_RW | PTE_ACCESSED | PTE_DIRTY
KERNEL_PAGE = PTE_PRESENT | PTE_RW | PTE_ACCESSED | PTE_DIRTY | PTE_GLOBAL | PTE_NX


@dataclass
class Memory:
    arch: Arch
    ram: list[tuple[int, int]]  # (start pfn, end pfn), sorted
    pages: dict[int, bytearray] = field(default_factory=dict)
    # 4 KiB virtual page -> pfn, for vmemmap and vmalloc mappings
    vmap: dict[int, int] = field(default_factory=dict)
    # (virtual start, physical start, size) of linear kernel mappings
    linear: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def psize(self) -> int:
        return self.arch.page_size

    def is_ram(self, pfn: int) -> bool:
        return any(s <= pfn < e for s, e in self.ram)

    # -- physical access -------------------------------------------------
    def page(self, pfn: int) -> bytearray:
        if not self.is_ram(pfn):
            raise ValueError(f"pfn {pfn:#x} is not RAM")
        p = self.pages.get(pfn)
        if p is None:
            p = self.pages[pfn] = bytearray(self.psize)
        return p

    def write_phys(self, paddr: int, data: bytes) -> None:
        ps = self.psize
        off = 0
        while off < len(data):
            pfn, po = divmod(paddr + off, ps)
            n = min(ps - po, len(data) - off)
            self.page(pfn)[po : po + n] = data[off : off + n]
            off += n

    def read_phys(self, paddr: int, size: int) -> bytes:
        ps = self.psize
        out = bytearray()
        while len(out) < size:
            pfn, po = divmod(paddr + len(out), ps)
            n = min(ps - po, size - len(out))
            p = self.pages.get(pfn)
            out += p[po : po + n] if p is not None else bytes(n)
        return bytes(out)

    # -- virtual access --------------------------------------------------
    def virt_to_phys(self, vaddr: int) -> int:
        for v, p, n in self.linear:
            if v <= vaddr < v + n:
                return p + vaddr - v
        vp, off = divmod(vaddr, self.psize)
        if vp in self.vmap:
            return self.vmap[vp] * self.psize + off
        raise ValueError(f"unmapped virtual address {vaddr:#x}")

    def direct(self, paddr: int) -> int:
        return self.arch.page_offset_base + paddr

    def write(self, vaddr: int, data: bytes) -> None:
        ps = self.psize
        off = 0
        while off < len(data):
            n = min(ps - (vaddr + off) % ps, len(data) - off)
            self.write_phys(self.virt_to_phys(vaddr + off), data[off : off + n])
            off += n

    def read(self, vaddr: int, size: int) -> bytes:
        ps = self.psize
        out = bytearray()
        while len(out) < size:
            n = min(ps - (vaddr + len(out)) % ps, size - len(out))
            out += self.read_phys(self.virt_to_phys(vaddr + len(out)), n)
        return bytes(out)

    def map_page(self, vaddr: int, pfn: int) -> None:
        assert vaddr % self.psize == 0
        self.vmap[vaddr // self.psize] = pfn

    # -- page tables -----------------------------------------------------
    def build_page_tables(self, pgd_phys: int, alloc_table: Callable[[], int]) -> None:
        """Fill the kernel page tables rooted at pgd_phys.  alloc_table() returns
        the pfn of a fresh zeroed table page.  Linear mappings use 2 MiB pages
        (they are 2 MiB aligned), vmap pages 4 KiB pages."""
        if self.arch.name != "x86_64" or self.arch.pgtable_levels != 4:
            raise NotImplementedError(f"page tables for {self.arch.name}")

        def entry(table_phys: int, idx: int) -> int:
            return int.from_bytes(self.read_phys(table_phys + 8 * idx, 8), "little")

        def set_entry(table_phys: int, idx: int, val: int) -> None:
            self.write_phys(table_phys + 8 * idx, val.to_bytes(8, "little"))

        def walk(vaddr: int, stop_level: int) -> int:
            """Return the physical address of the table at stop_level (1=PTE
            table, 2=PMD table) covering vaddr, creating tables as needed."""
            table = pgd_phys
            for level in (4, 3, 2):
                if level == stop_level:
                    break
                idx = (vaddr >> (12 + 9 * (level - 1))) & 511
                e = entry(table, idx)
                if not e & PTE_PRESENT:
                    pfn = alloc_table()
                    e = (pfn << 12) | KERNEL_TABLE
                    set_entry(table, idx, e)
                table = e & 0x000FFFFFFFFFF000
            return table

        huge = 1 << 21
        for v, p, n in self.linear:
            assert v % huge == 0 and p % huge == 0
            for off in range(0, (n + huge - 1) // huge * huge, huge):
                pmd = walk(v + off, 2)
                idx = ((v + off) >> 21) & 511
                set_entry(pmd, idx, (p + off) | KERNEL_PAGE | PTE_PSE)
        for vp in sorted(self.vmap):
            vaddr = vp * self.psize
            pte = walk(vaddr, 1)
            set_entry(pte, (vaddr >> 12) & 511, (self.vmap[vp] << 12) | KERNEL_PAGE)

    # -- dump writers ----------------------------------------------------
    def _runs(self) -> list[tuple[int, int, bool]]:
        """Split RAM into runs of stored (non-zero) and zero pages."""
        out: list[tuple[int, int, bool]] = []
        for s, e in self.ram:
            pfn = s
            while pfn < e:
                nz = self._nonzero(pfn)
                q = pfn + 1
                while q < e and self._nonzero(q) == nz:
                    q += 1
                out.append((pfn, q, nz))
                pfn = q
        return out

    def _nonzero(self, pfn: int) -> bool:
        p = self.pages.get(pfn)
        return p is not None and any(p)

    def write_elf(self, path: str, vmcoreinfo: bytes, image: tuple[int, int, int]) -> None:
        """Write an ELF64 ET_CORE vmcore: one PT_NOTE holding VMCOREINFO, PT_LOADs
        for the kernel image mapping and for the direct mapping of all RAM (zero
        runs have p_filesz 0, like makedumpfile's ELF output)."""
        ps = self.psize
        runs = self._runs()
        note = _note(b"VMCOREINFO", 0, vmcoreinfo)
        # segments: (vaddr, paddr, filesz, memsz, file_offset_of_run_page or None)
        img_v, img_p, img_n = image
        segs: list[tuple[int, int, int, int, int | None]] = []

        def add(v0: int, p0: int, n: int) -> None:
            for s, e, nz in runs:
                lo = max(s * ps, p0)
                hi = min(e * ps, p0 + n)
                if lo >= hi:
                    continue
                segs.append((v0 + lo - p0, lo, (hi - lo) if nz else 0, hi - lo, s if nz else None))

        add(img_v, img_p, img_n)
        for s, e in self.ram:
            add(self.direct(s * ps), s * ps, (e - s) * ps)
        phnum = 1 + len(segs)
        ehsize, phentsize = 64, 56
        note_off = ehsize + phnum * phentsize
        data_off = (note_off + len(note) + ps - 1) // ps * ps
        run_off: dict[int, int] = {}
        off = data_off
        for s, e, nz in runs:
            if nz:
                run_off[s] = off
                off += (e - s) * ps
        out = bytearray()
        out += b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
        out += struct.pack(
            "<HHIQQQIHHHHHH",
            4,
            self.arch.elf_machine,
            1,
            0,
            ehsize,
            0,
            0,
            ehsize,
            phentsize,
            phnum,
            0,
            0,
            0,
        )
        out += struct.pack("<IIQQQQQQ", 4, 0, note_off, 0, 0, len(note), 0, 0)
        for v, p, fsz, msz, run in segs:
            if run is not None:
                foff = run_off[run] + (p - run * ps)
            else:
                foff = data_off
            out += struct.pack("<IIQQQQQQ", 1, 7, foff, v, p, fsz, msz, 0)
        out += note
        out += bytes(data_off - len(out))
        with open(path, "wb") as f:
            f.write(out)
            for s, e, nz in runs:
                if nz:
                    for pfn in range(s, e):
                        f.write(self.pages[pfn])

    def write_kdump(self, path: str, vmcoreinfo: bytes, release: str, compress: bool) -> None:
        """Write a kdump-compressed dump (makedumpfile's "diskdump" format,
        header version 6) with every RAM page present; pages are zlib
        compressed when that saves space.  No timestamps: the header time is 0."""
        ps = self.psize
        max_mapnr = max(e for _, e in self.ram)
        bitmap_bytes = (max_mapnr + 7) // 8
        bitmap_blocks = (bitmap_bytes + ps - 1) // ps * 2  # two bitmaps
        # disk_dump_header (struct new_utsname is 6 x 65 bytes)
        uts = b"".join(
            s.encode().ljust(65, b"\0")
            for s in ("Linux", "pinspect-sample", release, "#1", self.arch.name, "")
        )
        sub_off = ps  # kdump_sub_header at block 1
        note = _note(b"VMCOREINFO", 0, vmcoreinfo)
        # kdump_sub_header (LP64): phys_base, dump_level, split, start_pfn,
        # end_pfn (32 bytes), then offset/size of vmcoreinfo, notes and
        # eraseinfo, start_pfn_64, end_pfn_64, max_mapnr_64 (9 x 8 bytes)
        info_off = sub_off + 32 + 9 * 8
        note_off = info_off + len(vmcoreinfo)
        sub_size_blocks = (note_off + len(note) - sub_off + ps - 1) // ps
        hdr = bytearray()
        hdr += b"KDUMP   "
        hdr += struct.pack("<i", 6)  # header_version
        hdr += uts
        hdr += bytes((-len(hdr)) % 8)  # struct timeval is 8-aligned
        hdr += struct.pack("<qq", 0, 0)  # timestamp: none, for determinism
        hdr += struct.pack("<I", 1 if compress else 0)  # status: DUMP_DH_COMPRESSED_ZLIB
        hdr += struct.pack("<i", ps)  # block_size
        # sub_hdr_size, bitmap_blocks, max_mapnr (32-bit, obsolete),
        # total_ram_blocks, device_blocks, written_blocks, current_cpu, nr_cpus
        hdr += struct.pack(
            "<iIIIIIIi", sub_size_blocks, bitmap_blocks, max_mapnr & 0xFFFFFFFF, 0, 0, 0, 0, 1
        )
        hdr = hdr.ljust(ps, b"\0")
        sub = struct.pack("<QiiQQ", 0, 0, 0, 0, 0)
        sub += struct.pack(
            "<QQQQQQQQQ",
            info_off,
            len(vmcoreinfo),
            note_off,
            len(note),
            0,
            0,
            0,
            max_mapnr,
            max_mapnr,
        )
        body = bytearray(sub)
        body += bytes(info_off - sub_off - len(body))
        body += vmcoreinfo
        body += note
        body = body.ljust(sub_size_blocks * ps, b"\0")
        bitmap = bytearray(bitmap_bytes)
        pfns: list[int] = []
        for s, e in self.ram:
            for pfn in range(s, e):
                bitmap[pfn // 8] |= 1 << (pfn % 8)
                pfns.append(pfn)
        half = bitmap_blocks // 2 * ps
        bm = bytes(bitmap).ljust(half, b"\0") * 2
        data_start = (1 + sub_size_blocks) * ps + len(bm)
        descs = bytearray()
        pagedata = bytearray()
        zero_off: int | None = None
        pd_base = data_start + len(pfns) * 24
        for pfn in pfns:
            raw = bytes(self.pages.get(pfn, bytes(ps)))
            if not any(raw):
                if zero_off is None:
                    zero_off = pd_base + len(pagedata)
                    pagedata += raw
                descs += struct.pack("<qIIQ", zero_off, ps, 0, 0)
                continue
            flags, payload = 0, raw
            if compress:
                z = zlib.compress(raw, 9)
                if len(z) < ps:
                    flags, payload = 1, z  # DUMP_DH_COMPRESSED_ZLIB
            descs += struct.pack("<qIIQ", pd_base + len(pagedata), len(payload), flags, 0)
            pagedata += payload
        with open(path, "wb") as f:
            f.write(hdr)
            f.write(body)
            f.write(bm)
            f.write(descs)
            f.write(pagedata)


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    n = name + b"\0"
    out = struct.pack("<III", len(n), len(desc), ntype)
    out += n + bytes((-len(n)) % 4)
    out += desc + bytes((-len(desc)) % 4)
    return out
