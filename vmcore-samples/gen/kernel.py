"""Builds the memory of one synthetic kernel from a Scenario and the DWARF of
the variant's debug file, part by part, and records what it built for the
truth file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from . import scenario as S
from .buddy import free_blocks
from .cma import CmaBitmap, setup_cma
from .image import load_image, write_globals
from .machine import Machine, PageState
from .memmap import setup_sections
from .memory import Memory
from .objects import Objects, setup_objects
from .pageext import PageExt, PageExtClient
from .pageflags import flags_layout
from .pageowner import PageOwner
from .pagepinner import PagePinner
from .pages import add_free_pages, add_reserved_pages, add_scenario_pages, write_struct_pages
from .percpu import NR_CPUS_ONLINE, setup_percpu
from .scenario import Scenario
from .stackdepot import StackDepot
from .tasks import Tasks, setup_tasks
from .types import Types
from .variants import Variant
from .vmcoreinfo import make_vmcoreinfo
from .zones import setup_node, write_zones

C = TypeVar("C")


@dataclass
class Built:
    """One built kernel: its memory and what the truth file is derived from."""

    variant: Variant
    scenario: Scenario
    mem: Memory
    types: Types
    pages: dict[int, PageState]
    vmcoreinfo: bytes
    build_id: bytes
    image: tuple[int, int, int]  # kernel image mapping: virtual, physical, size
    stacks: dict[int, list[str]]  # stack depot handle -> symbolized frames
    page_ext: PageExt
    facts: dict[str, Any]
    zone_info: list[dict[str, Any]]
    cma: list[CmaBitmap]  # per S.CMA_AREAS entry
    free_blocks: list[tuple[int, int, str]]
    tasks: Tasks

    def client(self, cls: type[C]) -> C | None:
        """The page_ext client of a class, if the variant boots with it."""
        return next((c for c in self.page_ext.clients if isinstance(c, cls)), None)


def page_ext_clients(m: Machine, depot: StackDepot, objs: Objects) -> list[PageExtClient]:
    """The page_ext clients the variant boots with, in page_ext_ops[] order."""
    clients: list[PageExtClient] = []
    if m.v.page_owner == "enabled":
        clients.append(PageOwner(m, depot))
    if m.v.pinner is not None:
        clients.append(PagePinner(m, depot, objs, m.v.pinner))
    return clients


def build(variant: Variant, debug_path: str, sc: Scenario) -> Built:
    """Lay out the machine in the order boot would: memblock allocations,
    then the page states, the kernel objects and page_ext, the page tables,
    and last the struct pages, zones and globals that describe them all."""
    m = Machine(variant, debug_path, sc)
    image = load_image(m)
    pgdat = setup_node(m)
    setup_percpu(m, pgdat)
    secs = setup_sections(m)
    add_scenario_pages(m)
    depot = StackDepot(m)
    objs = setup_objects(m)
    tasks = setup_tasks(m, objs)
    cma = setup_cma(m)
    ext = PageExt(m, secs, page_ext_clients(m, depot, objs))
    pgd_phys = m.sym("init_top_pgt") - m.arch.start_kernel_map
    m.mem.build_page_tables(pgd_phys, lambda: m.memblock_alloc(m.ps))
    add_reserved_pages(m)
    blocks = free_blocks(m)
    add_free_pages(m, blocks)
    write_struct_pages(m)
    zone_info = write_zones(m, pgdat, secs, blocks)
    ext.write()
    depot.write_globals()
    write_globals(m, sum(z["managed"] for z in zone_info))
    facts = {
        "page_size": m.ps,
        "nr_cpus": NR_CPUS_ONLINE,
        "ram": [list(r) for r in S.RAM],
        "section_size_bits": S.SECTION_SIZE_BITS,
        "pageblock_order": S.PAGEBLOCK_ORDER,
        "max_order": m.k.max_order,
        "flags_layout": flags_layout(m),
        "page_ext_size": ext.size,
        "page_ext_offsets": ext.offsets,
        "page_ext_has_flags_word": ext.has_flags,
    }
    return Built(
        variant,
        sc,
        m.mem,
        m.t,
        m.pages,
        make_vmcoreinfo(m, secs),
        m.build_id,
        image,
        depot.frames,
        ext,
        facts,
        zone_info,
        cma,
        blocks,
        tasks,
    )
