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


def test_escape_makes_target_strings_safe() -> None:
    from pinspect.render import escape

    assert escape("plain comm") == "plain comm"
    assert escape("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m"
    assert escape("a\nb\rc\x00\x7f\x9b") == "a\\x0ab\\x0dc\\x00\\x7f\\x9b"
    assert escape("back\\slash") == "back\\\\slash"
    assert escape("rtl\u202eevil\u2028") == "rtl\\u202eevil\\u2028"
    assert escape("bad utf-8 \ufffd") == "bad utf-8 \ufffd"


def test_table_and_csv_escape_every_string_cell() -> None:
    from pinspect.render import Lines

    rows: list[dict[str, Any]] = [{"comm": "\x1b]0;owned\x07", "stack": Lines(["f+0x1/0x2",
                                                                              "g\x1b+0x3/0x4"]),
                                   "cma": "area\r"}]
    doc = Document(command="pinned", body={"pages": []}, rows=rows,
                   columns=("comm", "stack", "cma"))
    for fmt in ("table", "csv"):
        text = render(doc, fmt)
        assert "\x1b" not in text and "\x07" not in text and "\r" not in text
        assert "\\x1b]0;owned\\x07" in text and "g\\x1b+0x3/0x4" in text and "area\\x0d" in text
    table = render(doc, "table")
    lines = table.splitlines()  # a Lines cell is one entry per line
    assert lines[2].split()[1] == "f+0x1/0x2" and lines[3].split() == ["g\\x1b+0x3/0x4"]
    assert "f+0x1/0x2|g\\x1b+0x3/0x4" in render(doc, "csv")
    assert json.loads(render(Document("pinned", {"s": Lines(["a", "b"])}, [], ()), "json"))[
        "s"] == ["a", "b"]


def test_table_is_tabulates_text() -> None:
    """The table writer (render.table_lines, which skips tabulate's per-cell type inference)
    gives tabulate's own text for cells of every shape the commands make: empty, padded,
    several lines (stacks), trailing newlines, a column of one-line and multi-line cells,
    with and without headers; and hands non-ASCII cells to tabulate."""
    import random

    from tabulate import tabulate

    from pinspect.render import table_text

    rnd = random.Random(11)
    parts = ["a", "bb", " ", "x y", "", "0x10", "1", "-", "\n", "\n", "z\n", "  lead", "trail  ",
             "foo+0x1f/0x80 [mod]", "1.5", "None", "\n\n", "1e5", "0"]
    checked = 0
    for _ in range(1500):
        ncols, nrows = rnd.randint(1, 6), rnd.randint(1, 6)
        cells = [["".join(rnd.choice(parts) for _ in range(rnd.randint(0, 4)))
                  for _ in range(ncols)] for _ in range(nrows)]
        if rnd.random() < 0.1:
            cells[0][0] += "é"  # not plain ASCII: tabulate itself
        if rnd.random() < 0.7:
            heads = [rnd.choice(["pfn", "a", "stack", "nr_pages", "x"]) for _ in range(ncols)]
            want = tabulate(cells, headers=heads, tablefmt="simple", disable_numparse=True)
            assert table_text(cells, heads) == want, (cells, heads)
        else:
            want = tabulate(cells, tablefmt="plain", disable_numparse=True)
            assert table_text(cells, None) == want, cells
        checked += 1
    assert checked == 1500
