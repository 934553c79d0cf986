"""Rendering of command results: tables (tabulate), JSON (versioned schema) and CSV.

A command's result is a :class:`Document`: a JSON-able body, the rows that make its main
table and CSV, and optional lines of text shown after the table. Long lists (a row per page)
are :class:`Rows`, made one at a time while they are written.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TextIO, TypeVar

from tabulate import tabulate

from pinspect.schema import SCHEMA_VERSION

FORMATS = ("table", "json", "csv", "svg")  # svg: maps only (cma --map, zones --map)

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


def write(doc: Document, fmt: str, out: TextIO) -> None:
    """Write *doc* as ``table``, ``json`` or ``csv`` to *out*, row by row where it can."""
    if fmt == "json":
        _write_json(doc, out)
        return
    if fmt == "svg":
        if doc.svg is None:
            raise ValueError(f"'{doc.command}' draws no picture; --format svg is for maps "
                             "(pinspect cma NAME --map, pinspect zones --map)")
        out.write(doc.svg)
        return
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(doc.columns), extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        for row in doc.rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
        return
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    parts = []
    if doc.table_title:
        parts.append(doc.table_title)
    # (tabulate sizes its columns from every row, so the table is made whole)
    cells = [[_cell(row.get(c)) for c in doc.columns] for row in doc.rows]
    if cells:
        parts.append(tabulate(cells, headers=list(doc.columns), tablefmt="simple",
                              disable_numparse=True))
    parts.extend(doc.notes)
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
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _csv_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return "|".join(str(v) for v in value)
    return "" if value is None else value
