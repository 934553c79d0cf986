"""enum migratetype: the names the kernel prints (migratetype_names[]) and
the values, which differ between mainline and ACK, read from DWARF."""

from __future__ import annotations

from .machine import Machine

# (name as printed, enumerator), in the order of the free lists' walk
MIGRATETYPES = (
    ("Unmovable", "MIGRATE_UNMOVABLE"),
    ("Movable", "MIGRATE_MOVABLE"),
    ("Reclaimable", "MIGRATE_RECLAIMABLE"),
    ("HighAtomic", "MIGRATE_HIGHATOMIC"),
    ("CMA", "MIGRATE_CMA"),
    ("Isolate", "MIGRATE_ISOLATE"),
)


def mt_value(m: Machine, name: str) -> int:
    """The enum migratetype value of a printed name ("CMA" -> MIGRATE_CMA)."""
    return m.enum(dict(MIGRATETYPES)[name])


def mt_name(m: Machine, value: int) -> str:
    """The printed name of an enum migratetype value."""
    return next(n for n, e in MIGRATETYPES if m.enum(e) == value)
