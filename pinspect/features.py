"""What a kernel has: one :class:`Feature` per capability pinspect reads, with its state."""

from __future__ import annotations

from dataclasses import dataclass

PRESENT = "present"
OFF = "off"  # compiled in, not enabled at boot
ABSENT = "absent"
UNSUPPORTED = "unsupported"  # present, but laid out in a way pinspect cannot interpret


@dataclass(frozen=True)
class Feature:
    """Whether a kernel feature is present, compiled in but off, or absent, and why."""

    name: str
    state: str
    detail: str
