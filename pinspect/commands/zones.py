"""``pinspect zones``: per node and zone, its size, free pages and pinned pages."""

from __future__ import annotations

from typing import Any

import click
from drgn import Program

from pinspect.cmamap import draw_svg, draw_text, zone_grids
from pinspect.commands import Needs, register
from pinspect.commands.cma import map_width, use_colour
from pinspect.commands.common import (
    Options,
    Progress,
    emit,
    global_options,
    open_target,
    split_options,
)
from pinspect.kernel import probe
from pinspect.render import Document
from pinspect.report import PinnedReport, zone_pins
from pinspect.summary import ZonePins

COLUMNS = ("node", "zone", "start_pfn", "spanned", "present", "managed", "free", "cma_pages",
           "free_cma",
           "pinned_foll_pin", "pinned_extra", "pinned_pinner", "pinned_total",
           "pinned_in_movable", "pinned_in_cma")


def document(rows_in: list[ZonePins], report: PinnedReport, map_lines: list[str] | None = None,
             svg: str | None = None) -> Document:
    """The ``zones`` result as a renderable document."""
    objects = []
    rows: list[dict[str, Any]] = []
    for z in rows_in:
        obj = {
            "node": z.zone.node, "zone": z.zone.name, "start_pfn": z.zone.start_pfn,
            "spanned": z.zone.spanned, "present": z.zone.present, "managed": z.zone.managed,
            "free": z.zone.free, "free_cma": z.zone.free_cma, "cma_pages": z.zone.cma_pages,
            "pinned": {"foll_pin": z.foll_pin, "extra": z.extra, "pinner": z.pinner,
                       "total": z.total},
            "pinned_in_movable": z.in_movable, "pinned_in_cma": z.in_cma,
        }
        objects.append(obj)
        rows.append({**{k: v for k, v in obj.items() if k != "pinned"},
                     "start_pfn": hex(z.zone.start_pfn),
                     "pinned_foll_pin": z.foll_pin, "pinned_extra": z.extra,
                     "pinned_pinner": z.pinner, "pinned_total": z.total})
    notes = ["", "pinned counts are in base pages; movable/cma: by pageblock migratetype"]
    if report.unreadable:
        notes.append(f"{report.unreadable} pages could not be read")
    if map_lines:
        notes += [""] + map_lines
    return Document(command="zones",
                    body={"zones": objects, "scanned": report.scanned,
                          "unreadable": report.unreadable},
                    rows=rows, columns=COLUMNS, notes=notes, svg=svg)


def run(prog: Program, options: Options, *, draw_map: bool = False,
        width: int | None = None) -> list[ZonePins]:
    """``zones`` on an open program: count pinned pages per zone (and draw the pageblocks
    with --map), write them, return the rows."""
    fmt = options.format or "table"
    cells = map_width(width)
    rows, report = zone_pins(prog, progress=Progress())
    map_lines = svg = None
    if draw_map or fmt == "svg":
        grids = zone_grids(probe(prog), report.pages, cells)
        if fmt == "svg":
            svg = draw_svg(grids, "pinspect zones --map")
        elif fmt == "table":
            map_lines = draw_text(grids, colour=use_colour(options))
    emit(document(rows, report, map_lines, svg), options)
    return rows


@register(Needs(features=("folio layout",)), run)
@click.command("zones")
@click.option("--map", "draw_map", is_flag=True,
              help="draw each zone's pageblocks by migratetype, pinned ones marked (with "
                   "--format svg: an SVG picture).")
@click.option("--width", type=int, default=None, metavar="CELLS",
              help="map cells per row (default: fit the terminal, 64 otherwise).")
@global_options
@click.pass_context
def command(ctx: click.Context, **values: Any) -> None:
    """Per node and zone: span, present, managed and free pages, and pinned pages.

    \b
    Examples:
      sudo pinspect zones
      pinspect -c vmcore -s vmlinux zones --format json
      pinspect -c vmcore -s vmlinux zones --columns node,zone,pinned_total --no-header
      pinspect zones --map
      pinspect zones --format svg -o zones.svg
    """
    options, params = split_options(ctx, values)
    run(open_target("zones", options), options, **params)
