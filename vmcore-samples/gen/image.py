"""The kernel image (its sections mapped at __START_KERNEL_map, reserved like
memblock), the direct map of RAM, and the globals no other part owns:
init_uts_ns, max_pfn, _totalram_pages, node_states."""

from __future__ import annotations

from . import scenario as S
from .machine import Machine

HUGE = 1 << 21  # the image and the direct map use 2 MiB pages


def load_image(m: Machine) -> tuple[int, int, int]:
    """Copy the debug file's allocated sections into memory, reserve their
    pages and map the image and all RAM linearly.  Returns the image mapping
    (virtual start, physical start, size) for the dump's PT_LOAD."""
    start = m.arch.kernel_text
    end = start
    for sec in m.sections:
        end = max(end, sec.addr + sec.size)
    image_end = max(end, m.sym("_end"))
    phys0 = start - m.arch.start_kernel_map
    size = (image_end - start + HUGE - 1) // HUGE * HUGE
    m.mem.linear.append((start, phys0, size))
    for s, e in S.RAM:
        m.mem.linear.append((m.direct(s), s * m.ps, (e - s) * m.ps))
    for sec in m.sections:
        if not sec.nobits:
            m.mem.write(sec.addr, sec.data)
    first = phys0 // m.ps
    last = (image_end - m.arch.start_kernel_map + m.ps - 1) // m.ps
    for p in range(first, last):
        m.reserve(p)
    m.memblock_next = last
    return start, phys0, size


def write_globals(m: Machine, managed: int) -> None:
    """init_uts_ns, the pfn limits, _totalram_pages (managed pages) and
    node_states (node 0 in every state)."""
    uts = m.sym("init_uts_ns")
    for field_name, value in (
        ("sysname", "Linux"),
        ("nodename", "pinspect-sample"),
        ("release", m.v.osrelease),
        ("version", "#1 SMP PREEMPT_DYNAMIC"),
        ("machine", m.arch.name),
        ("domainname", "(none)"),
    ):
        m.t.put(uts, "struct uts_namespace", f"name.{field_name}", value.encode().ljust(65, b"\0"))
    m.write_ulong(m.sym("max_pfn"), max(e for _, e in S.RAM))
    m.write_ulong(m.sym("max_low_pfn"), 0x1800)
    m.write_ulong(m.sym("min_low_pfn"), 0)
    m.write_ulong(m.sym("_totalram_pages"), managed)
    ns = m.sym("node_states")
    nsize = m.t.sizeof("nodemask_t")
    for e in m.t.type("enum node_states").enumerators:
        if e.name == "NR_NODE_STATES":
            continue
        m.write_ulong(ns + e.value * nsize, 1)
