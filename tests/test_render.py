"""Rendering: the same document as table, JSON and CSV."""

import csv
import io
import json
from typing import Any

import pytest

from pinspect.render import SCHEMA_VERSION, Document, Rows, render


def _doc() -> Document:
    rows: list[dict[str, Any]] = [{"pfn": "0x10", "evidence": ["foll_pin", "extra"], "cma": None},
            {"pfn": "0x20", "evidence": ["pinner"], "cma": "reserved"}]
    return Document(command="pinned", body={"pages": [{"pfn": 16}, {"pfn": 32}]}, rows=rows,
                    columns=("pfn", "evidence", "cma"), notes=["", "2 pinned"])


def test_json_has_schema_and_body() -> None:
    data = json.loads(render(_doc(), "json"))
    assert data == {"schema_version": SCHEMA_VERSION, "command": "pinned",
                    "pages": [{"pfn": 16}, {"pfn": 32}]}


def test_csv_has_one_header_and_joined_lists() -> None:
    rows = list(csv.reader(io.StringIO(render(_doc(), "csv"))))
    assert rows == [["pfn", "evidence", "cma"], ["0x10", "foll_pin|extra", ""],
                    ["0x20", "pinner", "reserved"]]


def test_table_has_headers_rows_and_notes() -> None:
    lines = render(_doc(), "table").splitlines()
    assert lines[0].split() == ["pfn", "evidence", "cma"]
    assert lines[2].split() == ["0x10", "foll_pin,extra", "-"]
    assert lines[3].split() == ["0x20", "pinner", "reserved"]
    assert lines[-1] == "2 pinned"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render(_doc(), "xml")


def test_rows_are_made_while_written_and_render_like_lists() -> None:
    made = []

    def make(n: int) -> dict[str, Any]:
        made.append(n)
        return {"pfn": hex(n), "evidence": ["extra"] * (n % 3), "cma": None}

    pages = Rows(range(1000), lambda n: {"pfn": n, "nested": {"a": [n, n]}})
    doc = Document(command="pinned", body={"pages": pages, "summary": {"pages": 1000},
                                           "empty": Rows([], make)},
                   rows=Rows(range(1000), make), columns=("pfn", "evidence", "cma"))
    assert not made and len(pages) == 1000
    data = json.loads(render(doc, "json"))
    assert data["pages"] == [{"pfn": n, "nested": {"a": [n, n]}} for n in range(1000)]
    assert data["summary"] == {"pages": 1000} and data["empty"] == []
    rows = list(csv.reader(io.StringIO(render(doc, "csv"))))
    assert len(rows) == 1001 and rows[5] == ["0x4", "extra", ""]
    table = render(doc, "table").splitlines()
    assert len(table) == 1002 and table[-1].split() == ["0x3e7", "-"]
    assert len(made) == 2000
