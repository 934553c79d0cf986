"""Rendering of command results: tables (tabulate), JSON (versioned schema) and CSV.

A command's result is a :class:`Document`: a JSON-able body, the rows that make its main
table and CSV, and optional lines of text shown after the table.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

SCHEMA_VERSION = 1
FORMATS = ("table", "json", "csv")


@dataclass
class Document:
    """What a command returns for rendering."""

    command: str
    body: dict[str, Any]
    rows: list[dict[str, Any]]
    columns: Sequence[str]
    notes: list[str] = field(default_factory=list)
    table_title: str = ""


def render(doc: Document, fmt: str) -> str:
    """Render *doc* as ``table``, ``json`` or ``csv``."""
    if fmt == "json":
        return json.dumps({"schema_version": SCHEMA_VERSION, "command": doc.command, **doc.body},
                          indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(doc.columns), extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        for row in doc.rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
        return out.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    parts = []
    if doc.table_title:
        parts.append(doc.table_title)
    if doc.rows:
        parts.append(tabulate([[_cell(row.get(c)) for c in doc.columns] for row in doc.rows],
                              headers=list(doc.columns), tablefmt="simple",
                              disable_numparse=True))
    parts.extend(doc.notes)
    return "\n".join(parts) + "\n"


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
