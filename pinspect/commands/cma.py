"""``pinspect cma``: CMA areas, what blocks an allocation in them, and a map."""

from __future__ import annotations

import shutil
import sys
from typing import Any

import click
from drgn import Program
from tabulate import tabulate

from pinspect.cmamap import DEFAULT_WIDTH, area_cells, draw_svg, draw_text
from pinspect.cmascan import (
    CAUSES,
    AreaReport,
    Blocker,
    CmaReport,
    TryResult,
    cma_report,
    try_alloc,
)
from pinspect.commands import Needs, register
from pinspect.commands.common import (
    Options,
    Progress,
    emit,
    global_options,
    open_target,
    split_options,
)
from pinspect.render import Document, Rows, use_color
from pinspect.schema import CMA_AREA, CMA_BLOCKER, CMA_RUN, pick

COLUMNS = ("name", "base_pfn", "pages", "order_per_bit", "allocated", "free",
           "largest_free_run", "largest_clean_run", "blockers", "blocked_pages",
           "succeeded", "failed", "released", "available")
BLOCKER_COLUMNS = ("area", "pfn", "nr_pages", "cause", "evidence", "state", "migratetype",
                   "refcount", "mapcount", "pins", "extra", "owner", "stack")
RUN_COLUMNS = ("pfn", "pages", "candidates", "working", "first_working_pfn", "blocked_pages")


def area_object(report: AreaReport) -> dict[str, Any]:
    """One area of the JSON document (:data:`pinspect.schema.CMA_AREA`)."""
    area = report.area
    obj = {
        "name": area.name, "base_pfn": area.base_pfn, "end_pfn": area.end_pfn,
        "count": area.count, "order_per_bit": area.order_per_bit,
        "ranges": [{"base_pfn": r.base_pfn, "count": r.count,
                    "bitmap_bits": r.count >> r.order_per_bit} for r in area.ranges],
        "allocated_pages": report.allocated_pages, "free_pages": report.free_pages,
        "largest_free_run": report.largest_free_run,
        "largest_clean_run": report.largest_clean_run,
        "blockers": len(report.blockers), "blocked_pages": report.blocked_pages,
        "by_cause": report.by_cause,
        "nr_pages_succeeded": area.nr_pages_succeeded, "nr_pages_failed": area.nr_pages_failed,
        "nr_pages_released": area.nr_pages_released, "available_count": area.available_count,
    }
    return {key: obj[key] for key in CMA_AREA}


def _area_row(report: AreaReport) -> dict[str, Any]:
    obj = area_object(report)
    return {
        "name": obj["name"], "base_pfn": hex(obj["base_pfn"]), "pages": obj["count"],
        "order_per_bit": obj["order_per_bit"], "allocated": obj["allocated_pages"],
        "free": obj["free_pages"], "largest_free_run": obj["largest_free_run"],
        "largest_clean_run": obj["largest_clean_run"], "blockers": obj["blockers"],
        "blocked_pages": obj["blocked_pages"], "succeeded": obj["nr_pages_succeeded"],
        "failed": obj["nr_pages_failed"], "released": obj["nr_pages_released"],
        "available": obj["available_count"],
    }


def blocker_object(blocker: Blocker) -> dict[str, Any]:
    """One blocker of the JSON document (:data:`pinspect.schema.CMA_BLOCKER`)."""
    return pick(blocker, CMA_BLOCKER)


def _owner_text(owner: dict[str, object] | None) -> str | None:
    if owner is None:
        return None
    return " ".join(f"{k} {v}" for k, v in owner.items())


def _blocker_row(blocker: Blocker) -> dict[str, Any]:
    return dict(blocker_object(blocker), pfn=hex(blocker.pfn), owner=_owner_text(blocker.owner),
                stack=" < ".join(blocker.stack) if blocker.stack else None)


def try_object(result: TryResult) -> dict[str, Any]:
    """The ``try`` object of the JSON document."""
    best = result.best_failing
    return {
        "area": result.area, "pages": result.pages, "align": result.align,
        "succeeds": result.succeeds, "pfn": result.pfn,
        "attempts_before": result.attempts_before, "candidates": result.candidates,
        "reason": result.reason,
        "runs": [pick(r, CMA_RUN) for r in result.runs],
        "best_failing": None if best is None else
        {"pfn": best.pfn, "pages": best.pages, "blocked": best.blocked},
        "best_failing_blockers": [b.pfn for b in result.best_failing_blockers],
    }


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    cells = [["-" if row.get(c) is None else
              ",".join(map(str, row[c])) if isinstance(row.get(c), list) else str(row[c])
              for c in columns] for row in rows]
    return tabulate(cells, headers=list(columns), tablefmt="simple", disable_numparse=True)


def _cause_note(report: AreaReport) -> str:
    causes = ", ".join(f"{c} {n}" for c, n in report.by_cause.items() if n) or "none"
    return (f"{report.area.name}: blocked pages by cause: {causes}; read {report.scanned} "
            f"struct pages of {report.area.count} (allocated bits and free buddy blocks "
            "skipped)" + (f", {report.unreadable} unreadable" if report.unreadable else ""))


def document(reports: list[AreaReport], problems: list[tuple[str, str]], *,
             blockers: bool = False, tried: TryResult | None = None,
             map_lines: list[str] | None = None, svg: str | None = None,
             limit: int | None = None) -> Document:
    """The ``cma`` result as a renderable document: the areas, or with *blockers* one row per
    blocker, or with *tried* one row per free run that fits."""
    all_blockers = [b for r in reports for b in r.blockers]
    body = {
        "areas": [area_object(r) for r in reports],
        "problems": [{"name": n, "problem": p} for n, p in problems],
        "blockers": Rows(all_blockers, blocker_object),
        "try": try_object(tried) if tried is not None else None,
        "scanned": sum(r.scanned for r in reports),
        "unreadable": sum(r.unreadable for r in reports),
    }
    area_rows = [_area_row(r) for r in reports]
    notes = [""]
    notes += [_cause_note(r) for r in reports]
    notes += [f"{name}: not read: {problem}" for name, problem in problems]
    if any(r.area.nr_pages_succeeded is None for r in reports):
        notes.append("succeeded/failed/released: kept with CONFIG_CMA_SYSFS only; "
                     "available: 6.13+")
    title = ""
    rows: Any = area_rows
    columns: tuple[str, ...] = COLUMNS
    if tried is not None:
        title = _table(area_rows, COLUMNS) + "\n\n" + \
            f"cma_alloc({tried.area}, {tried.pages} pages, align 2^{tried.align}): " \
            f"{tried.reason}\n"
        rows = [dict(pick(r, CMA_RUN), pfn=hex(r.pfn),
                     first_working_pfn=None if r.first_working_pfn is None
                     else hex(r.first_working_pfn)) for r in tried.runs]
        columns = RUN_COLUMNS
        if not rows:
            notes.insert(0, "(no free run is large enough)")
        best = tried.best_failing
        if best is not None:
            notes += ["", f"best failing window: pfn {best.pfn:#x}-{best.pfn + best.pages - 1:#x}"
                      f" ({best.pages} pages), {best.blocked} page(s) blocked by:",
                      _table([_blocker_row(b) for b in tried.best_failing_blockers],
                             BLOCKER_COLUMNS)]
    elif blockers:
        title = _table(area_rows, COLUMNS) + "\n"
        shown = all_blockers if limit is None else all_blockers[:limit]
        rows = Rows(shown, _blocker_row)
        columns = BLOCKER_COLUMNS
        if limit is not None and len(all_blockers) > limit:
            notes.insert(1, f"(showing {limit} of {len(all_blockers)} blockers; --limit)")
        if not all_blockers:
            notes.insert(0, "(no blockers)")
        if all(b.owner is None for b in all_blockers):
            notes.append("owner/stack: from page_owner records (not read yet by this version)")
    if map_lines:
        notes += [""] + map_lines
    return Document(command="cma", body=body, rows=rows, columns=columns, notes=notes,
                    table_title=title, svg=svg)


def use_colour(options: Options) -> bool:
    """ANSI colour: only for a table on a terminal, never into a file, never with NO_COLOR."""
    return (options.format or "table") == "table" and not options.output \
        and use_color(sys.stdout)


def map_width(width: int | None) -> int:
    """Cells per map row: --width, else what fits the terminal, else the default."""
    if width is not None:
        if width < 16 or width > 512:
            raise click.BadParameter("use 16-512 cells", param_hint="--width")
        return width
    if sys.stdout.isatty():
        columns = shutil.get_terminal_size((80, 24)).columns
        return max(16, min(128, (columns - 14) // 16 * 16))
    return DEFAULT_WIDTH


def run(prog: Program, options: Options, *, name: str | None = None,
        list_blockers: bool = False, try_pages: int | None = None, align: int = 0,
        draw_map: bool = False, width: int | None = None, limit: int | None = None
        ) -> CmaReport:
    """``cma`` on an open program: report the areas (and blockers, --try, a map), write it,
    return the report."""
    if try_pages is not None and name is None:
        raise click.UsageError("--try needs the area: pinspect cma NAME --try N")
    fmt = options.format or "table"
    map_width_cells = map_width(width)
    result = cma_report(prog, name, progress=Progress())
    reports, problems = result.areas, result.problems
    tried = try_alloc(reports[0], try_pages, align) if try_pages is not None else None
    grids = [g for r in reports for g in area_cells(r, map_width_cells)] \
        if draw_map or fmt == "svg" else []
    map_lines = draw_text(grids, colour=use_colour(options)) if draw_map and fmt == "table" \
        else None
    svg = draw_svg(grids, "pinspect cma " + (name or "")) if fmt == "svg" else None
    emit(document(reports, problems, blockers=list_blockers, tried=tried, map_lines=map_lines,
                  svg=svg, limit=limit), options)
    return result


@register(Needs(features=("folio layout", "cma")), run)
@click.command("cma")
@click.argument("name", required=False)
@click.option("--blockers", "list_blockers", is_flag=True,
              help="list the blockers page by page (folio by folio) with their evidence.")
@click.option("--try", "try_pages", type=int, default=None, metavar="N",
              help="would cma_alloc of N pages succeed in area NAME, and where?")
@click.option("--align", type=int, default=0, show_default=True, metavar="ORDER",
              help="with --try: align the allocation to 2^ORDER pages.")
@click.option("--map", "draw_map", is_flag=True,
              help="draw the area: allocated, free and blocked pages (with --format svg: "
                   "an SVG picture).")
@click.option("--width", type=int, default=None, metavar="CELLS",
              help="map cells per row (default: fit the terminal, 64 otherwise).")
@click.option("--limit", type=int, default=None, help="with --blockers: show at most N rows.")
@global_options
@click.pass_context
def command(ctx: click.Context, **values: Any) -> None:
    """CMA areas: allocated and free pages, and the pages that would make cma_alloc fail.

    A blocker is an in-use page in the area's free part (bitmap bit clear) that cma_alloc
    could not migrate: FOLL_PIN pins, extra references, slab, page tables, reserved or
    other kernel memory.

    \b
    Examples:
      pinspect -c vmcore -s vmlinux cma
      pinspect cma reserved --blockers
      pinspect cma reserved --try 1024 --align 9
      pinspect cma reserved --map
      pinspect cma reserved --format svg -o reserved.svg
    """
    options, params = split_options(ctx, values)
    if params["try_pages"] is not None and params["name"] is None:
        raise click.UsageError("--try needs the area: pinspect cma NAME --try N")
    map_width(params["width"])  # a bad --width is refused before the target is opened
    run(open_target("cma", options), options, **params)


__all__ = ["CAUSES", "command", "document"]
