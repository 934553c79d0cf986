"""Rendering of command results: tables (tabulate), JSON (versioned schema) and CSV.

A command's result is a :class:`Document`: a JSON-able body, the rows that make its main
table and CSV, and optional lines of text shown after the table. Long lists (a row per page)
are :class:`Rows`, made one at a time while they are written.

Strings in tables and CSV pass through :func:`escape`: task names, symbols and CMA area names
come from the target and may hold terminal control sequences. A :class:`Lines` cell (a stack)
is one line per entry in a table and ``|``-joined in CSV; JSON gets a list.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TextIO, TypeVar

from tabulate import tabulate

from pinspect.schema import SCHEMA_VERSION

FORMATS = ("table", "json", "csv", "svg")  # svg: maps only (cma --map, zones --map)

# C0 and C1 controls, DEL, the backslash itself, and the Unicode line separators and
# bidirectional overrides that reorder or break terminal output.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\\\\\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape(text: str) -> str:
    """*text* safe for a terminal or a CSV cell: control characters as ``\\xNN`` (``\\x1b``),
    Unicode separators and bidi overrides as ``\\uNNNN``, a backslash doubled."""
    return _UNSAFE.sub(_escaped, text)


class Lines(tuple[str, ...]):
    """A cell of several lines (a stack's frames): one per line in a table, ``|``-joined in
    CSV, a list in JSON."""

    __slots__ = ()

T = TypeVar("T")


class Rows(Generic[T]):
    """JSON-able items made from *source* by *make* each time they are iterated (none kept)."""

    def __init__(self, source: Sequence[T], make: Callable[[T], Any]) -> None:
        self.source = source
        self.make = make

    def __iter__(self) -> Iterator[Any]:
        return map(self.make, self.source)

    def __len__(self) -> int:
        return len(self.source)


@dataclass
class Document:
    """What a command returns for rendering."""

    command: str
    body: dict[str, Any]
    rows: Iterable[dict[str, Any]]
    columns: Sequence[str]
    notes: list[str] = field(default_factory=list)
    table_title: str = ""
    svg: str | None = None  # the picture, for commands that draw one (--format svg)


def render(doc: Document, fmt: str) -> str:
    """Render *doc* as ``table``, ``json`` or ``csv``."""
    out = io.StringIO()
    write(doc, fmt, out)
    return out.getvalue()


def use_color(stream: TextIO) -> bool:
    """Whether colour (ANSI escapes) may be written to *stream*: not when ``NO_COLOR`` is set to
    anything but the empty string (https://no-color.org), not when ``TERM`` is ``dumb``, and
    only when *stream* is a terminal."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty is not None and isatty())
    except ValueError:  # closed
        return False


def select_columns(doc: Document, columns: Sequence[str] | None) -> Sequence[str]:
    """The columns of *doc* to show: *columns* (``--columns``) in that order, or all of them.
    Raises ValueError naming the columns *doc* has when one is unknown."""
    if not columns:
        return doc.columns
    unknown = [c for c in columns if c not in doc.columns]
    if unknown:
        raise ValueError(f"no column {', '.join(map(repr, unknown))} in '{doc.command}' "
                         f"(columns: {','.join(doc.columns)})")
    return list(columns)


def write(doc: Document, fmt: str, out: TextIO, *, header: bool = True,
          columns: Sequence[str] | None = None) -> None:
    """Write *doc* as ``table``, ``json`` or ``csv`` to *out*, row by row where it can.

    For ``table`` and ``csv``: *columns* picks and orders the columns (``--columns``); without
    *header* (``--no-header``) a CSV has no header row and a table shows its rows only (no
    header, title or notes). JSON always has every key of the schema.
    """
    if fmt == "json":
        _write_json(doc, out)
        return
    if fmt == "svg":
        if doc.svg is None:
            raise ValueError(f"'{doc.command}' draws no picture; --format svg is for maps "
                             "(pinspect cma NAME --map, pinspect zones --map)")
        out.write(doc.svg)
        return
    shown = select_columns(doc, columns)
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(shown), extrasaction="ignore",
                                lineterminator="\n")
        if header:
            writer.writeheader()
        for row in doc.rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
        return
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    parts = []
    if doc.table_title and header:
        parts.append(doc.table_title)
    # (tabulate sizes its columns from every row, so the table is made whole)
    cells = [[_cell(row.get(c)) for c in shown] for row in doc.rows]
    if cells and header:
        parts.append(tabulate(cells, headers=list(shown), tablefmt="simple",
                              disable_numparse=True))
    elif cells:
        parts.append(tabulate(cells, tablefmt="plain", disable_numparse=True))
    if header:
        parts.extend(doc.notes)
    if parts:
        out.write("\n".join(parts) + "\n")


def _write_json(doc: Document, out: TextIO) -> None:
    """One JSON object; the entries of a list or :class:`Rows` value one per line."""
    items = [("schema_version", SCHEMA_VERSION), ("command", doc.command), *doc.body.items()]
    out.write("{\n")
    for i, (key, value) in enumerate(items):
        out.write(f"  {json.dumps(key)}: ")
        if isinstance(value, list | Rows):
            separator = "[\n    "
            for entry in value:
                out.write(separator + json.dumps(entry))
                separator = ",\n    "
            out.write("[]" if separator.startswith("[") else "\n  ]")
        else:
            out.write(json.dumps(value, indent=2).replace("\n", "\n  "))
        out.write(",\n" if i + 1 < len(items) else "\n")
    out.write("}\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Lines):
        return "\n".join(escape(v) for v in value) or "-"
    if isinstance(value, list | tuple):
        return ",".join(escape(str(v)) for v in value)
    return escape(str(value))


def _csv_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return "|".join(escape(str(v)) for v in value)
    if isinstance(value, str):
        return escape(value)
    return "" if value is None else value
