"""What a command could not read: counted per kind of object, kept with the program.

Every reader that skips an object it cannot read (a struct page in a hole of a filtered dump,
a page_ext entry, a list cut short by a cycle or a length cap) counts it here with
:func:`count`; a dump file cut short is recorded when it is opened (:func:`set_file`).
Front ends start each command with :func:`reset` and end it with :func:`summary`: the CLI
adds the counts to the JSON document (``"unread"``) and a line to the table, prints a warning
on stderr and exits with :data:`INCOMPLETE_EXIT_STATUS`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from drgn import Program

__all__ = ["INCOMPLETE_EXIT_STATUS", "Unread", "count", "of", "reset", "set_file"]

INCOMPLETE_EXIT_STATUS = 4
"""Exit status of a command whose result is incomplete: it was written, but some pages or
objects could not be read (a truncated or damaged dump)."""

_KEY = "pinspect_unread"
_FILE_KEY = "pinspect_file_completeness"


@dataclass
class Unread:
    """Objects that could not be read, by kind ("struct pages", "page_ext entries", ...), and
    the sentence about a truncated dump file ("" when complete)."""

    counts: dict[str, int] = field(default_factory=dict)
    file: str = ""
    # A live target: reported objects that changed between two reads, reported as read the
    # second time (uncertain) or left out (changed: no longer what was reported). Not
    # "incomplete": the answer is whole, about memory that moves.
    uncertain: int = 0
    changed: int = 0

    def __bool__(self) -> bool:
        return bool(self.file or any(self.counts.values()))

    def line(self) -> str:
        """One line: ``could not read: 6144 struct pages, 2 page_ext entries``."""
        parts = [f"{n} {what}" for what, n in self.counts.items() if n]
        return "could not read: " + ", ".join(parts) if parts else ""

    def live_line(self) -> str:
        """One line about a live target's changes ("" if none)."""
        if not (self.uncertain or self.changed):
            return ""
        return (f"changed while read: {self.uncertain} reported as read the second time "
                f"(uncertain), {self.changed} left out")

    def as_json(self) -> dict[str, object]:
        return {"counts": {k: v for k, v in self.counts.items() if v},
                "truncated": self.file or None, "uncertain": self.uncertain,
                "changed": self.changed}


def of(prog: Program) -> Unread:
    """The program's counts (made on first use)."""
    try:
        found = prog.cache[_KEY]
    except KeyError:
        found = prog.cache[_KEY] = Unread(file=str(prog.cache.get(_FILE_KEY, "")))
    assert isinstance(found, Unread)
    return found


def count(prog: Program, what: str, n: int = 1) -> None:
    """Count *n* objects of kind *what* (plural: "struct pages") that could not be read."""
    if n:
        counts = of(prog).counts
        counts[what] = counts.get(what, 0) + n


def live(prog: Program, uncertain: int = 0, changed: int = 0) -> None:
    """Count a live target's objects that changed between two reads (see :class:`Unread`)."""
    found = of(prog)
    found.uncertain += uncertain
    found.changed += changed


# Problems of the bounded walks (:class:`pinspect.bounded.Problems`) that mean something was
# not read: a failed read, a cycle, a walk cut at its cap, an implausible object skipped. The
# others (a type this kernel lacks, no init_task) say what the kernel has, not what was lost.
_READ_FAILURE = re.compile(r"unreadable|cycle|rest not read|broken list|loop or too deep|"
                           r"implausible|no struct page")


def count_problems(prog: Program, problems: Mapping[str, int]) -> None:
    """Count the problems of a walk that mean an object was not read."""
    for what, n in problems.items():
        if _READ_FAILURE.search(what):
            count(prog, what, n)


def reset(prog: Program) -> None:
    """Start a command: no counts (the file's truncation stays)."""
    prog.cache[_KEY] = Unread(file=str(prog.cache.get(_FILE_KEY, "")))


def set_file(prog: Program, sentence: str) -> None:
    """Record that the program's dump file is cut short (*sentence* says how much)."""
    global _last_file
    prog.cache[_FILE_KEY] = sentence
    of(prog).file = sentence
    _last_file = sentence


_last_file = ""


def last_file() -> str:
    """The sentence of the last dump file found cut short in this process ("" if none), for
    errors raised before a program is at hand."""
    return _last_file
