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
    if text.isascii() and text.isprintable() and "\\" not in text:  # most text: as it is
        return text
    return _UNSAFE.sub(_escaped, text)


def escape_lines(text: str) -> str:
    """:func:`escape` for each line of *text* (the line breaks stay): titles, notes and
    messages made of several lines, which may quote strings from the target."""
    return "\n".join(escape(line) for line in text.split("\n"))


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
    if doc.table_title and header:
        out.write(escape_lines(doc.table_title) + "\n")
    # (the columns are sized from every row, so the cells are made whole; a stack shared by
    # many rows is one string)
    memo: dict[Lines, str] = {}
    cells = [[_cell(row.get(c), memo) for c in shown] for row in doc.rows]
    if cells:
        empty = True
        for line in table_lines(cells, list(shown) if header else None):
            out.write(line + "\n")
            empty = False
        if empty:
            out.write("\n")
    if header:
        for note in doc.notes:
            out.write(escape_lines(note) + "\n")


# What the fast table writer handles exactly as tabulate does: ASCII with no control
# characters but newlines (every cell has passed through escape(), so that is the rule).
_NOT_PLAIN = re.compile("[^\n\x20-\x7e]")


def table_text(cells: list[list[str]], headers: list[str] | None) -> str:
    """*cells* as tabulate's ``simple`` table with *headers* (``plain`` without), numbers not
    parsed: the same text (see :func:`table_lines`)."""
    return "\n".join(table_lines(cells, headers))


def table_lines(cells: list[list[str]], headers: list[str] | None) -> Iterator[str]:
    """The lines of tabulate's ``simple`` table of *cells* with *headers* (``plain`` without),
    numbers not parsed, made without tabulate's per-cell type inference (20-35 s for 100 000
    rows) and a chunk at a time (a chunk may hold several lines): every cell a left-aligned
    string, stripped (the cell, not each line); a header gets two columns of padding; a cell
    of several lines takes that many lines, the others padded below; every line
    right-stripped. Cells that are not plain ASCII go to tabulate itself (its width rules for
    wide characters and escapes differ)."""
    if headers is not None and len(headers) != len(cells[0]):
        raise ValueError("headers and cells differ in length")
    if any(_NOT_PLAIN.search("".join(row)) for row in cells) or \
            any(_NOT_PLAIN.search(h) for h in headers or ()):
        if headers is not None:
            text = tabulate(cells, headers=headers, tablefmt="simple", disable_numparse=True)
        else:
            text = tabulate(cells, tablefmt="plain", disable_numparse=True)
        yield from str(text).split("\n")
        return
    ncols = len(cells[0])
    rows = [[c.strip() for c in row] for row in cells]
    multiline = any("\n" in "".join(row) for row in cells)  # before stripping
    widths = [len(h) + 2 for h in headers] if headers is not None else [0] * ncols
    columns = list(zip(*rows, strict=True))
    # columns whose cells have several lines; the others are sized and written as they are
    multi = [i for i, col in enumerate(columns) if "\n" in "".join(col)] if multiline else []
    split: dict[str, list[str]] = {}  # cell -> its lines (a shared stack is split once)
    for i, col in enumerate(columns):
        if i in multi:
            # (as tabulate: a trailing newline makes no line, an empty cell none at all)
            for c in col:
                if c not in split:
                    split[c] = c.splitlines()
            w = max((max(map(len, split[c]), default=0) for c in set(col)), default=0)
        else:
            w = max(map(len, col), default=0)
        widths[i] = max(widths[i], w)
    if headers is not None:
        yield "  ".join(map(str.ljust, headers, widths)).rstrip()
        yield "  ".join("-" * w for w in widths)
    if not multiline:
        for row in rows:
            yield "  ".join(map(str.ljust, row, widths)).rstrip()
        return
    # A row's lines after its first hold only its cells of several lines (a stack): each at
    # its column's offset. They are made once per such set of cells and yielded as one chunk.
    single = [i for i in range(ncols) if i not in multi]
    offsets = [sum(widths[:i]) + 2 * i for i in range(ncols)]
    rest: dict[tuple[tuple[int, str], ...], str] = {}
    for row in rows:
        n = 1 if any([row[i] for i in single]) else 0  # an empty cell has no line
        first = list(row)
        key = []
        for i in multi:
            lines = split[row[i]]
            first[i] = lines[0] if lines else ""
            if len(lines) > n:
                n = len(lines)
            if len(lines) > 1:
                key.append((i, row[i]))
        if not n:  # a row of empty cells: no line at all
            continue
        yield "  ".join(map(str.ljust, first, widths)).rstrip()
        if n == 1:
            continue
        chunk_key = tuple(key)
        chunk = rest.get(chunk_key)
        if chunk is None:
            out = []
            for k in range(1, n):
                line = ""
                for i, c in chunk_key:
                    if k < len(split[c]):
                        line = line.ljust(offsets[i]) + split[c][k]
                out.append(line.rstrip())
            chunk = rest[chunk_key] = "\n".join(out)
        yield chunk


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


def _cell(value: Any, memo: dict[Lines, str] | None = None) -> str:
    kind = type(value)  # (the common kinds first: a table may have millions of cells)
    if kind is str:
        return escape(value)
    if value is None:
        return "-"
    if kind is int:  # nothing to escape (bools are not ints here)
        return str(value)
    if isinstance(value, Lines):
        if memo is None:
            return "\n".join(escape(v) for v in value) or "-"
        text = memo.get(value)
        if text is None:
            text = memo[value] = "\n".join(escape(v) for v in value) or "-"
        return text
    if isinstance(value, list | tuple):
        return ",".join(escape(str(v)) for v in value)
    return escape(str(value))


def _csv_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return "|".join(escape(str(v)) for v in value)
    if isinstance(value, str):
        return escape(value)
    return "" if value is None else value
