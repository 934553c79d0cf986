"""VMCOREINFO: the ``KEY=value`` lines a kernel leaves for dump tools.

The kernel writes ``OSRELEASE=``, ``PAGESIZE=``, ``SYMBOL(name)=`` (hex address),
``NUMBER(name)=`` (decimal), ``OFFSET(type.member)=``, ``SIZE(type)=`` and a few more, one a
line.  :func:`parse` reads that text from a dump's note or header, :func:`from_program` from a
:class:`drgn.Program`.
"""

from __future__ import annotations

from drgn import FaultError, Program

__all__ = ["VmcoreInfo", "from_program", "parse"]


class VmcoreInfo(dict[str, str]):
    """The lines of VMCOREINFO as a dict from key to value (both as written)."""

    def number(self, name: str) -> int:
        """The value of ``NUMBER(name)``; KeyError if absent, ValueError if not a number."""
        return int(self[f"NUMBER({name})"])

    def symbol(self, name: str) -> int:
        """The address in ``SYMBOL(name)``; KeyError if absent, ValueError if not hex."""
        return int(self[f"SYMBOL({name})"], 16)


def parse(data: bytes | str) -> VmcoreInfo:
    """Parse VMCOREINFO text, up to its first NUL; lines without ``=`` are skipped."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    info = VmcoreInfo()
    for line in text.split("\0", 1)[0].splitlines():
        key, sep, value = line.partition("=")
        if sep:
            info[key] = value
    return info


def from_program(prog: Program) -> VmcoreInfo:
    """The VMCOREINFO of *prog* (its ``VMCOREINFO`` object), empty if unavailable."""
    try:
        raw = prog["VMCOREINFO"]
    except KeyError:
        return VmcoreInfo()
    try:
        return parse(raw.string_())
    except (FaultError, ValueError):
        return VmcoreInfo()
