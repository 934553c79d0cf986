"""``pinspect pinned``: one row per pinned page or large folio."""

from __future__ import annotations

from typing import Any

import click

from pinspect.commands import Needs, register
from pinspect.commands.common import (
    Progress,
    emit,
    global_options,
    merged_options,
    open_target,
    parse_pfn_range,
)
from pinspect.evidence import EVIDENCE_KINDS
from pinspect.render import Document, Rows
from pinspect.report import PinnedPage, PinnedReport, find_pinned
from pinspect.schema import PINNED_PAGE, pick

COLUMNS = ("pfn", "nr_pages", "zone", "migratetype", "cma", "order", "refcount", "mapcount",
           "pins", "extra", "evidence", "mapping")
SORT_KEYS = {
    "pfn": lambda p: p.pfn,
    "extra": lambda p: (-p.extra, p.pfn),
    "pins": lambda p: (-p.pins, p.pfn),
}


def page_object(page: PinnedPage) -> dict[str, Any]:
    """One page of the JSON document (:data:`pinspect.schema.PINNED_PAGE`)."""
    return pick(page, PINNED_PAGE)


def _row(page: PinnedPage) -> dict[str, Any]:
    return dict(page_object(page), pfn=hex(page.pfn))


def document(report: PinnedReport, sort: str = "pfn", limit: int | None = None) -> Document:
    """The ``pinned`` result as a renderable document."""
    pages = sorted(report.pages, key=SORT_KEYS[sort])
    shown = pages if limit is None else pages[:limit]
    summary = report.summary
    notes = [
        "",
        f"{summary['folios']} pinned folio(s), {summary['pages']} page(s); scanned "
        f"{report.scanned} pages"
        + (f", skipped {report.skipped_free} in free buddy blocks" if report.skipped_free else "")
        + (f", {report.unreadable} unreadable" if report.unreadable else ""),
        "by evidence (pages): " + ", ".join(f"{k} {v}" for k, v in
                                            summary["by_evidence"].items()),  # type: ignore[attr-defined]
        "by zone (pages): " + (", ".join(f"{k} {v}" for k, v in
                                         summary["by_zone"].items())  # type: ignore[attr-defined]
                               or "none"),
    ]
    if limit is not None and len(pages) > limit:
        notes.insert(1, f"(showing {limit} of {len(pages)} rows; --limit)")
    return Document(
        command="pinned",
        body={"pages": Rows(shown, page_object), "summary": summary,
              "scanned": report.scanned, "skipped_free": report.skipped_free,
              "unreadable": report.unreadable},
        rows=Rows(shown, _row),
        columns=COLUMNS,
        notes=notes,
    )


@register(Needs(features=("folio layout",)))
@click.command("pinned")
@click.option("--zone", "zone_names", multiple=True, metavar="NAME",
              help="only this zone (repeatable): DMA, DMA32, Normal, Movable, ...")
@click.option("--node", "nodes", multiple=True, type=int, metavar="N",
              help="only this NUMA node (repeatable).")
@click.option("--pfn", "pfn_text", metavar="START-END", default=None,
              help="only pfns in START-END (inclusive; decimal or 0x hex).")
@click.option("--evidence", "evidence", multiple=True, type=click.Choice(EVIDENCE_KINDS),
              help="only pages with this evidence (repeatable).")
@click.option("--cma", "cma_name", metavar="NAME", default=None,
              help="only pages in this CMA area (pinspect cma lists them).")
@click.option("--min-extra", type=int, default=1, show_default=True,
              help="report extra references only from this many up.")
@click.option("--sort", type=click.Choice(tuple(SORT_KEYS)), default="pfn", show_default=True)
@click.option("--limit", type=int, default=None, help="show at most N rows.")
@global_options
@click.pass_context
def command(ctx: click.Context, zone_names: tuple[str, ...], nodes: tuple[int, ...],
            pfn_text: str | None, evidence: tuple[str, ...], cma_name: str | None,
            min_extra: int, sort: str,
            limit: int | None, **global_values: Any) -> None:
    """List pinned pages: FOLL_PIN pins, unexpected extra references, page_pinner flags.

    \b
    Examples:
      sudo pinspect pinned --zone Normal
      pinspect -c vmcore -s vmlinux pinned --evidence foll_pin --sort pins --limit 20
      pinspect pinned --pfn 0x100000-0x10ffff --format json -o pinned.json
      pinspect pinned --cma reserved
    """
    options = merged_options(ctx, **global_values)
    pfn_range = parse_pfn_range(pfn_text) if pfn_text else None
    prog = open_target("pinned", options)
    report = find_pinned(prog, zone_names=zone_names, nodes=nodes, pfn_range=pfn_range,
                         evidence=evidence, min_extra=min_extra, progress=Progress(),
                         cma=cma_name)
    emit(document(report, sort, limit), options)
