"""Maps to look at: a CMA area's pages (allocated, free, blocked) and a zone's pageblocks (by
migratetype, pinned ones marked), as terminal text or SVG.

A map is a grid of cells, each standing for a run of pages (a power of two, chosen so that the
grid fits the width and at most :data:`MAX_ROWS` rows); rows are labelled with their first pfn.
The cell computation (:func:`area_cells`, :func:`zone_cells`) is separate from drawing, so tests
compare cells with the truth. Terminal maps are plain ASCII; :func:`draw_text` adds ANSI colour
only when asked (the command asks on a terminal without NO_COLOR, never for a file).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

import numpy as np

from pinspect.cmascan import AreaReport
from pinspect.kernel import Kernel
from pinspect.report import PinnedPage
from pinspect.zones import PageblockReader, Zone, zones

MAX_ROWS = 16
DEFAULT_WIDTH = 64

# CMA cell states: symbol, legend text, ANSI colour, SVG fill.
FREE, ALLOCATED, PARTLY, BLOCKED, OUTSIDE = range(5)
CMA_STYLE = {
    FREE: (".", "free (bit clear, no blocker)", "32", "#b8e0b0"),
    ALLOCATED: ("#", "allocated (bit set)", "34", "#4a78c2"),
    PARTLY: (":", "partly allocated, no blocker", "36", "#9db8e0"),
    BLOCKED: ("X", "free but blocked (a page cma_alloc cannot migrate)", "1;31", "#d62828"),
    OUTSIDE: (" ", "past the end", "0", "#ffffff"),
}

# Pageblock migratetypes: symbol (lower case; upper case when the block holds pinned pages).
MIGRATETYPE_STYLE = {
    "Unmovable": ("u", "33", "#e0a040"),
    "Movable": ("m", "32", "#8cc084"),
    "Reclaimable": ("r", "35", "#b08cd0"),
    "HighAtomic": ("h", "36", "#60c0c0"),
    "CMA": ("c", "34", "#4a78c2"),
    "Isolate": ("i", "37", "#a0a0a0"),
}
UNKNOWN_STYLE = ("?", "0", "#e8e8e8")  # no pageblock bits: a hole, or unreadable
UNKNOWN_TEXT = "hole or unreadable"
PINNED_FILL = "#d62828"


@dataclass
class Grid:
    """Cells of one map: cell *i* covers *pages_per_cell* pfns from
    ``first_pfn + i * pages_per_cell``."""

    title: str
    first_pfn: int
    pages_per_cell: int
    width: int  # cells per row
    cells: list[int]  # states (CMA) or indexes into *labels* (zones)
    marked: list[bool]  # zones: the cell holds pinned pages
    labels: list[str]  # zones: migratetype names, by cell value


def _pages_per_cell(count: int, width: int, unit: int = 1) -> int:
    """The smallest power of two (at least *unit*) giving at most MAX_ROWS rows."""
    per = unit
    while -(-count // per) > width * MAX_ROWS:
        per *= 2
    return per


def area_cells(report: AreaReport, width: int = DEFAULT_WIDTH) -> list[Grid]:
    """One grid per range of a CMA area: a cell is BLOCKED if any of its pages is blocked,
    else ALLOCATED if all are allocated, FREE if none is, PARTLY otherwise."""
    grids = []
    for n, state in enumerate(report.states):
        rng = state.range
        per = _pages_per_cell(rng.count, width)
        ncells = -(-rng.count // per)
        pad = ncells * per - rng.count
        alloc = np.concatenate([state.allocated, np.zeros(pad, dtype=bool)]).reshape(ncells, per)
        blocked = np.concatenate([state.blocked, np.zeros(pad, dtype=bool)]).reshape(ncells, per)
        counts = alloc.sum(axis=1)
        real = np.full(ncells, per)
        if pad:
            real[-1] = per - pad
        cells = np.where(counts == 0, FREE, np.where(counts == real, ALLOCATED, PARTLY))
        cells = np.where(blocked.any(axis=1), BLOCKED, cells)
        title = f"CMA area {rng.name}"
        if len(report.states) > 1:
            title += f", range {n}"
        grids.append(Grid(title, rng.base_pfn, per, width, cells.tolist(), [False] * ncells, []))
    return grids


def zone_cells(zone: Zone, blocks: PageblockReader, pinned: Sequence[PinnedPage],
               pageblock_order: int, width: int = DEFAULT_WIDTH) -> Grid:
    """A zone's pageblocks: each cell shows the most common migratetype of its pageblocks
    (the first in the zone on a tie) and is marked when any of its pages is pinned."""
    block = 1 << pageblock_order
    first = zone.start_pfn & ~(block - 1)
    nblocks = -(-(zone.end_pfn - first) // block)
    per_blocks = _pages_per_cell(nblocks, width)
    labels: list[str] = []
    index: dict[str, int] = {}
    types = np.empty(nblocks, dtype=np.int64)
    for i in range(nblocks):
        name = blocks.name(first + i * block)
        if name not in index:
            index[name] = len(labels)
            labels.append(name)
        types[i] = index[name]
    ncells = -(-nblocks // per_blocks)
    cells = []
    for c in range(ncells):
        chunk = types[c * per_blocks:(c + 1) * per_blocks]
        cells.append(int(np.bincount(chunk, minlength=len(labels)).argmax()))
    marked = [False] * ncells
    per_pages = per_blocks * block
    for page in pinned:
        if page.node != zone.node or page.zone != zone.name:
            continue
        lo = max(page.pfn, zone.start_pfn) - first
        hi = min(page.pfn + page.nr_pages, zone.end_pfn) - first
        for c in range(lo // per_pages, (hi - 1) // per_pages + 1):
            if 0 <= c < ncells:
                marked[c] = True
    return Grid(f"node {zone.node} zone {zone.name}", first, per_pages, width, cells, marked,
                labels)


def zone_grids(kernel: Kernel, pinned: Sequence[PinnedPage], width: int = DEFAULT_WIDTH
               ) -> list[Grid]:
    """One grid per populated zone (:func:`zone_cells`)."""
    blocks = PageblockReader(kernel)
    return [zone_cells(zone, blocks, pinned, kernel.pageblock_order, width)
            for zone in zones(kernel)]


def _colour(text: str, code: str, on: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if on and code != "0" else text


def _symbol(grid: Grid, value: int, marked: bool) -> tuple[str, str]:
    """A cell's symbol and ANSI colour code."""
    if grid.labels:
        sym, code, _ = MIGRATETYPE_STYLE.get(grid.labels[value], UNKNOWN_STYLE)
        return (sym.upper(), "1;41") if marked else (sym, code)
    sym, _, code, _ = CMA_STYLE[value]
    return sym, code


def _row_text(grid: Grid, start: int, colour: bool) -> str:
    """One row of cells; with *colour*, one escape sequence per run of equal cells."""
    symbols = [_symbol(grid, v, m) for v, m in zip(grid.cells[start:start + grid.width],
                                                   grid.marked[start:start + grid.width],
                                                   strict=True)]
    if not colour:
        return "".join(sym for sym, _ in symbols)
    out, i = [], 0
    while i < len(symbols):
        j = i
        while j < len(symbols) and symbols[j][1] == symbols[i][1]:
            j += 1
        out.append(_colour("".join(sym for sym, _ in symbols[i:j]), symbols[i][1], True))
        i = j
    return "".join(out)


def draw_text(grids: Sequence[Grid], colour: bool = False) -> list[str]:
    """The grids as lines of text: a title with the scale, rows labelled by pfn, a legend."""
    lines: list[str] = []
    for grid in grids:
        span = grid.pages_per_cell * grid.width
        lines.append(f"{grid.title}: pfn {grid.first_pfn:#x}, 1 cell = {grid.pages_per_cell} "
                     f"page(s), 1 row = {span} pages ({span:#x})")
        last_row = grid.first_pfn + (len(grid.cells) - 1) // grid.width * span
        label_width = len(f"{last_row:#x}")
        ruler = "".join("|" if i % 16 == 0 else " " for i in range(grid.width))
        marks = "".join(f"+{i * grid.pages_per_cell:#x}".ljust(16)
                        for i in range(0, grid.width, 16))
        lines.append(" " * (label_width + 2) + marks.rstrip())
        lines.append(" " * (label_width + 2) + ruler.rstrip())
        for row in range(0, len(grid.cells), grid.width):
            cells = _row_text(grid, row, colour)
            pfn = grid.first_pfn + row * grid.pages_per_cell
            lines.append(f"{pfn:#0{label_width}x}  {cells}")
        lines.append("")
    lines.extend(legend(grids, colour))
    return lines


def legend(grids: Sequence[Grid], colour: bool = False) -> list[str]:
    """What the symbols mean."""
    if any(g.labels for g in grids):
        names = []
        for grid in grids:
            names += [n for n in grid.labels if n not in names]
        parts = []
        for n in names:
            sym, code, _ = MIGRATETYPE_STYLE.get(n, UNKNOWN_STYLE)
            parts.append(f"{_colour(sym, code, colour)} "
                         f"{n if n in MIGRATETYPE_STYLE else UNKNOWN_TEXT}")
        return ["legend: " + ", ".join(parts) + " (pageblock migratetype, the most common in "
                "the cell); UPPER CASE: the cell holds pinned pages"]
    return ["legend: " + ", ".join(f"{_colour(sym, code, colour)} {text}"
                                   for state, (sym, text, code, _) in CMA_STYLE.items()
                                   if state != OUTSIDE)]


CELL = 10  # SVG cell size (px)
LABEL = 90  # SVG width of the pfn labels (px)


def draw_svg(grids: Sequence[Grid], title: str) -> str:
    """The grids as one SVG document (well-formed XML; fixed colours, text labels)."""
    width = LABEL + max((g.width for g in grids), default=DEFAULT_WIDTH) * CELL + 20
    parts: list[str] = []
    y = 30
    for grid in grids:
        span = grid.pages_per_cell * grid.width
        parts.append(_text(10, y, f"{grid.title}: pfn {grid.first_pfn:#x}, 1 cell = "
                           f"{grid.pages_per_cell} page(s), 1 row = {span} pages", 13))
        y += 10
        for row in range(0, len(grid.cells), grid.width):
            pfn = grid.first_pfn + row * grid.pages_per_cell
            parts.append(_text(10, y + CELL - 1, f"{pfn:#x}", 10, "monospace"))
            for i, (value, marked) in enumerate(zip(grid.cells[row:row + grid.width],
                                                    grid.marked[row:row + grid.width],
                                                    strict=True)):
                x = LABEL + i * CELL
                first = pfn + i * grid.pages_per_cell
                if grid.labels:
                    name = grid.labels[value]
                    fill = MIGRATETYPE_STYLE.get(name, UNKNOWN_STYLE)[2]
                    what = name + (", pinned pages" if marked else "")
                else:
                    fill = CMA_STYLE[value][3]
                    what = CMA_STYLE[value][1]
                parts.append(
                    f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="{fill}" '
                    f'stroke="#ffffff" stroke-width="0.5" data-state="{escape(what)}">'
                    f"<title>{escape(f'pfn {first:#x}+{grid.pages_per_cell}: {what}')}</title>"
                    "</rect>")
                if marked:
                    parts.append(f'<circle cx="{x + CELL / 2}" cy="{y + CELL / 2}" r="3" '
                                 f'fill="{PINNED_FILL}"/>')
            y += CELL
        y += 25
    # Legend.
    entries: list[tuple[str, str]] = []
    if any(g.labels for g in grids):
        for grid in grids:
            for name in grid.labels:
                item = (MIGRATETYPE_STYLE.get(name, UNKNOWN_STYLE)[2],
                        name if name in MIGRATETYPE_STYLE else UNKNOWN_TEXT)
                if item not in entries:
                    entries.append(item)
        entries.append((PINNED_FILL, "dot: pinned pages in the cell"))
    else:
        entries = [(fill, text) for state, (_, text, _, fill) in CMA_STYLE.items()
                   if state != OUTSIDE]
    for fill, text in entries:
        parts.append(f'<rect x="10" y="{y}" width="{CELL}" height="{CELL}" fill="{fill}"/>')
        parts.append(_text(10 + CELL + 6, y + CELL - 1, text, 11))
        y += CELL + 6
    height = y + 10
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif">'
            f"<title>{escape(title)}</title>"
            f'<rect width="100%" height="100%" fill="#ffffff"/>')
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + head + "\n" + "\n".join(parts) + \
        "\n</svg>\n"


def _text(x: int, y: int, text: str, size: int, family: str = "sans-serif") -> str:
    return (f'<text x="{x}" y="{y}" font-size="{size}" font-family="{family}">'
            f"{escape(text)}</text>")
