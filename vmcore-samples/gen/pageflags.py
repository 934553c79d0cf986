"""page->flags: the PG_ bits, the node/zone/last_cpupid fields in its top
bits, and the kernel's %pGp format of the whole word."""

from __future__ import annotations

from . import scenario as S
from .machine import Machine

# order of include/trace/events/mmflags.h's page flag name table; entries whose
# PG_ enumerator is absent from the kernel's DWARF are skipped
PAGEFLAG_NAMES_612 = [
    "locked",
    "waiters",
    "referenced",
    "uptodate",
    "dirty",
    "lru",
    "active",
    "workingset",
    "owner_priv_1",
    "owner_2",
    "arch_1",
    "reserved",
    "private",
    "private_2",
    "writeback",
    "head",
    "reclaim",
    "swapbacked",
    "unevictable",
    "dropbehind",
    "mlocked",
    "hwpoison",
    "idle",
    "young",
    "arch_2",
    "arch_3",
]
PAGEFLAG_NAMES = [
    "locked",
    "waiters",
    "error",
    "referenced",
    "uptodate",
    "dirty",
    "lru",
    "active",
    "workingset",
    "slab",
    "owner_priv_1",
    "arch_1",
    "reserved",
    "private",
    "private_2",
    "writeback",
    "head",
    "mappedtodisk",
    "reclaim",
    "swapbacked",
    "unevictable",
    "mlocked",
    "uncached",
    "hwpoison",
    "young",
    "idle",
    "arch_2",
    "arch_3",
    "skip_kasan_poison",
]


def pg(m: Machine, *names: str) -> int:
    """The mask of PG_<name> bits."""
    v = 0
    for n in names:
        v |= 1 << m.enum("PG_" + n)
    return v


def zone_names(m: Machine) -> list[str]:
    """enum zone_type without the ZONE_ prefix, in value order."""
    zone_type = [e.name for e in m.t.type("enum zone_type").enumerators]
    return [n[len("ZONE_") :] for n in zone_type if n.startswith("ZONE_")]


def flags_layout(m: Machine) -> dict[str, int]:
    """Shift and width of the node, zone and last_cpupid fields."""
    nodes_pgshift = 64 - m.k.nodes_shift
    zones_width = max(1, (m.enum("__MAX_NR_ZONES") - 1).bit_length())
    zones_pgshift = nodes_pgshift - zones_width
    cpupid_width = m.k.last_cpupid_width
    return {
        "nodes_pgshift": nodes_pgshift,
        "nodes_width": m.k.nodes_shift,
        "zones_pgshift": zones_pgshift,
        "zones_width": zones_width,
        "last_cpupid_pgshift": zones_pgshift - cpupid_width if cpupid_width else 0,
        "last_cpupid_width": cpupid_width,
    }


def base_flags(m: Machine, pfn: int) -> int:
    """page->flags fields of a pfn: node 0, its zone and, with NUMA
    balancing, last_cpupid at its reset value (all ones)."""
    fl = flags_layout(m)
    zi = zone_names(m).index(S.zone_of(pfn).upper())
    width = fl["last_cpupid_width"]
    cpupid = ((1 << width) - 1) << fl["last_cpupid_pgshift"] if width else 0
    return (zi << fl["zones_pgshift"]) | cpupid


def format_pgp(m: Machine, flags: int) -> str:
    """The kernel's %pGp for a page->flags word (6.x/7.x style: the value,
    then the flag names and the node/zone/lastcpupid fields; 5.10 prints the
    names only, "Flags %#lx(%pGp)" doubling the value)."""
    nr = m.enum("__NR_PAGEFLAGS")
    rest = flags & ((1 << nr) - 1)
    parts: list[str] = []
    for n in PAGEFLAG_NAMES if m.k.version in ("5.10", "6.1") else PAGEFLAG_NAMES_612:
        if not rest:
            break
        if not m.t.has_enum("PG_" + n):
            continue
        mask = 1 << m.enum("PG_" + n)
        if rest & mask == mask:
            parts.append(n)
            rest &= ~mask
    names = "|".join(parts)
    if rest:
        names = (names + "|" if names else "") + f"{rest:#x}"
    fl = flags_layout(m)
    fields = []
    for name, shift, width, hexa in (
        ("node", fl["nodes_pgshift"], fl["nodes_width"], False),
        ("zone", fl["zones_pgshift"], fl["zones_width"], False),
        ("lastcpupid", fl["last_cpupid_pgshift"], fl["last_cpupid_width"], True),
    ):
        if width and m.k.version != "5.10":
            v = (flags >> shift) & ((1 << width) - 1)
            fields.append(f"{name}={v:#x}" if hexa else f"{name}={v}")
    body = "|".join(([names] if names else []) + fields)
    return f"{flags:#x}({body})"
