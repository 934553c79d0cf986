"""Per-CPU areas: two online CPUs (__per_cpu_offset, the cpumasks), each
holding every zone's struct per_cpu_pages (empty pcp lists) and struct
per_cpu_zonestat and the node's struct per_cpu_nodestat (zero diffs)."""

from __future__ import annotations

from .machine import Machine
from .zones import zone_addr

NR_CPUS_ONLINE = 2
PCPU_BASE = 0x2E000  # per-CPU offset of the first dynamic per-CPU object
# the static per-CPU variables (csrc/kernel.ld's .data..percpu, linked at 0x2d000) come first
# in each CPU's chunk, as in a real kernel's first chunk
PCPU_STATIC = 0x2D000


def _chunk(m: Machine, dynamic: int) -> int:
    """One CPU's chunk (memblock): the static per-CPU area, then *dynamic* bytes; returns the
    chunk's __per_cpu_offset (an address minus a per-CPU offset)."""
    static = PCPU_BASE - PCPU_STATIC
    assert m.sym("__per_cpu_end") <= PCPU_BASE, "static per-CPU area too large"
    chunk = m.direct(m.memblock_alloc(static + dynamic))
    return (chunk - PCPU_STATIC) & (2**64 - 1)


def per_cpu_addr(m: Machine, symbol: str, cpu: int) -> int:
    """Address of CPU *cpu*'s copy of a static per-CPU variable (per_cpu_ptr())."""
    return (m.sym(symbol) + m.percpu_offsets[cpu]) & (2**64 - 1)


def _cacheline(size: int) -> int:
    return (size + 63) // 64 * 64


def setup_percpu(m: Machine, pgdat: int) -> None:
    """Allocate (memblock) and fill the per-CPU chunks, point the zones and
    the node at their per-CPU offsets and mark the CPUs online."""
    t = m.t
    if t.has_member("struct zone", "pageset"):
        _setup_percpu_510(m, pgdat)
        return
    pcp_size = _cacheline(t.sizeof("struct per_cpu_pages"))
    zs_size = _cacheline(t.sizeof("struct per_cpu_zonestat"))
    ns_size = _cacheline(t.sizeof("struct per_cpu_nodestat"))
    nz = m.enum("__MAX_NR_ZONES")
    total = nz * (pcp_size + zs_size) + ns_size
    nlists = t.type("struct per_cpu_pages").member("lists").type.length
    offs = []
    for _cpu in range(NR_CPUS_ONLINE):
        off = _chunk(m, total)
        offs.append(off)
        chunk = (off + PCPU_BASE) & (2**64 - 1)
        for zi in range(nz):
            pcp = chunk + zi * pcp_size
            t.put(pcp, "struct per_cpu_pages", "high", 0x400)
            t.put(pcp, "struct per_cpu_pages", "batch", 63)
            for i in range(nlists):
                head = pcp + t.offsetof("struct per_cpu_pages", f"lists[{i}]")
                m.write_ulong(head, head)
                m.write_ulong(head + 8, head)
            zs = chunk + nz * pcp_size + zi * zs_size
            t.put(zs, "struct per_cpu_zonestat", "stat_threshold", 8)
        ns = chunk + nz * (pcp_size + zs_size)
        t.put(ns, "struct per_cpu_nodestat", "stat_threshold", 8)
    for zi in range(nz):
        z = zone_addr(m, pgdat, zi)
        t.put(z, "struct zone", "per_cpu_pageset", PCPU_BASE + zi * pcp_size)
        t.put(z, "struct zone", "per_cpu_zonestats", PCPU_BASE + nz * pcp_size + zi * zs_size)
    t.put(pgdat, "struct pglist_data", "per_cpu_nodestats", PCPU_BASE + nz * (pcp_size + zs_size))
    _cpus_online(m, offs)


def _setup_percpu_510(m: Machine, pgdat: int) -> None:
    """Up to 5.13: one struct per_cpu_pageset (the pcp lists and the zone's
    vm_stat_diff) per zone, at zone->pageset."""
    t = m.t
    ps_size = _cacheline(t.sizeof("struct per_cpu_pageset"))
    ns_size = _cacheline(t.sizeof("struct per_cpu_nodestat"))
    nz = m.enum("__MAX_NR_ZONES")
    total = nz * ps_size + ns_size
    nlists = t.type("struct per_cpu_pages").member("lists").type.length
    offs = []
    for _cpu in range(NR_CPUS_ONLINE):
        off = _chunk(m, total)
        offs.append(off)
        chunk = (off + PCPU_BASE) & (2**64 - 1)
        for zi in range(nz):
            ps = chunk + zi * ps_size
            t.put(ps, "struct per_cpu_pageset", "pcp.high", 0x400)
            t.put(ps, "struct per_cpu_pageset", "pcp.batch", 63)
            for i in range(nlists):
                head = ps + t.offsetof("struct per_cpu_pageset", f"pcp.lists[{i}]")
                m.write_ulong(head, head)
                m.write_ulong(head + 8, head)
            t.put(ps, "struct per_cpu_pageset", "stat_threshold", 8)
        ns = chunk + nz * ps_size
        t.put(ns, "struct per_cpu_nodestat", "stat_threshold", 8)
    for zi in range(nz):
        t.put(zone_addr(m, pgdat, zi), "struct zone", "pageset", PCPU_BASE + zi * ps_size)
    t.put(pgdat, "struct pglist_data", "per_cpu_nodestats", PCPU_BASE + nz * ps_size)
    _cpus_online(m, offs)


def _cpus_online(m: Machine, offs: list[int]) -> None:
    """__per_cpu_offset[] of the online CPUs, the cpumasks and nr_cpu_ids."""
    m.percpu_offsets = list(offs)
    for cpu, off in enumerate(offs):
        m.write_ulong(m.sym("__per_cpu_offset") + 8 * cpu, off)
    mask = (1 << NR_CPUS_ONLINE) - 1
    for name in (
        "__cpu_possible_mask",
        "__cpu_online_mask",
        "__cpu_present_mask",
        "__cpu_active_mask",
    ):
        m.write_ulong(m.sym(name), mask)
    m.write_uint(m.sym("nr_cpu_ids"), NR_CPUS_ONLINE)
