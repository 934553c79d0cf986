"""``pinspect pinned``: one row per pinned page or large folio."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
from drgn import Program

from pinspect.commands import Needs, register
from pinspect.commands.common import (
    FOUND_EXIT_STATUS,
    Options,
    Progress,
    complete_zone,
    emit,
    global_options,
    open_target,
    parse_pfn_range,
    split_options,
)
from pinspect.evidence import EVIDENCE_KINDS
from pinspect.features import Feature
from pinspect.owner import OwnerRecord
from pinspect.render import Document, Lines, Rows
from pinspect.report import PinnedPage, PinnedReport, find_pinned
from pinspect.schema import FEATURE, OWNER, PINNED_PAGE, pick

COLUMNS = ("pfn", "nr_pages", "zone", "migratetype", "cma", "order", "refcount", "mapcount",
           "pins", "extra", "evidence", "mapping")
STACK_COLUMNS = ("pid", "comm", "stack")
SORT_KEYS = {
    "pfn": lambda p: p.pfn,
    "extra": lambda p: (-p.extra, p.pfn),
    "pins": lambda p: (-p.pins, p.pfn),
}


def owner_object(record: OwnerRecord | None) -> dict[str, Any] | None:
    """A page_owner record in JSON (:data:`pinspect.schema.OWNER`): stacks as lists of
    ``%pS`` strings (null when there is none)."""
    if record is None:
        return None
    obj = pick(record, OWNER)
    obj["gfp_flags"] = list(record.gfp_flags)
    obj["stack"] = record.stack.lines() if record.stack else None
    obj["free_stack"] = record.free_stack.lines() if record.free_stack else None
    return obj


def page_object(page: PinnedPage) -> dict[str, Any]:
    """One page of the JSON document (:data:`pinspect.schema.PINNED_PAGE`)."""
    obj = pick(page, PINNED_PAGE)
    obj["owner"] = owner_object(page.owner)
    return obj


def _row(page: PinnedPage) -> dict[str, Any]:
    row = dict(page_object(page), pfn=hex(page.pfn))
    owner = page.owner
    row["pid"] = owner.pid if owner else None
    row["comm"] = owner.comm if owner else None
    row["stack"] = Lines(owner.stack.lines()) if owner and owner.stack else None
    return row


def source_notes(sources: list[Feature], warnings: list[str]) -> list[str]:
    """Lines saying where stacks come from and what could not be decoded."""
    notes = []
    for f in sources:
        what = "allocation stacks, pid and comm" if f.name == "page_owner" else "records"
        notes.append(f"{what}: {f.name} {f.state}"
                     + ("" if f.state == "present" else f" ({f.detail})"))
    notes += [f"warning: {w}" for w in warnings]
    return notes


def document(report: PinnedReport, sort: str = "pfn", limit: int | None = None,
             stacks: bool = False) -> Document:
    """The ``pinned`` result as a renderable document (*stacks*: with the pid, comm and
    allocation stack columns)."""
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
    notes += source_notes(report.sources if stacks else [], report.warnings)
    return Document(
        command="pinned",
        body={"pages": Rows(shown, page_object), "summary": summary,
              "scanned": report.scanned, "skipped_free": report.skipped_free,
              "unreadable": report.unreadable,
              "sources": [pick(f, FEATURE) for f in report.sources],
              "warnings": list(report.warnings)},
        rows=Rows(shown, _row),
        columns=COLUMNS + STACK_COLUMNS if stacks else COLUMNS,
        notes=notes,
    )


def run(prog: Program, options: Options, *, zone_names: Sequence[str] = (),
        nodes: Sequence[int] = (), pfn_range: tuple[int, int] | None = None,
        evidence: Sequence[str] = (), min_extra: int = 1, sort: str = "pfn",
        limit: int | None = None, stacks: bool = False, exit_status: bool = False
        ) -> PinnedReport:
    """``pinned`` on an open program: find the pinned pages, write them, return the report."""
    report = find_pinned(prog, zone_names=zone_names, nodes=nodes, pfn_range=pfn_range,
                         evidence=evidence, min_extra=min_extra, progress=Progress(),
                         owners=True)
    emit(document(report, sort, limit, stacks), options)
    return report


def _pfn_range(ctx: click.Context, param: click.Parameter,
               value: str | None) -> tuple[int, int] | None:
    try:
        return parse_pfn_range(value) if value else None
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from e


@register(Needs(features=("folio layout",)), run)
@click.command("pinned")
@click.option("--zone", "zone_names", multiple=True, metavar="NAME",
              shell_complete=complete_zone,
              help="only this zone (repeatable): DMA, DMA32, Normal, Movable, ...")
@click.option("--node", "nodes", multiple=True, type=click.IntRange(min=0), metavar="N",
              help="only this NUMA node (repeatable).")
@click.option("--pfn", "pfn_range", metavar="START-END", default=None, callback=_pfn_range,
              help="only pfns in START-END (inclusive; decimal or 0x hex).")
@click.option("--evidence", "evidence", multiple=True, type=click.Choice(EVIDENCE_KINDS),
              help="only pages with this evidence (repeatable).")
@click.option("--min-extra", type=click.IntRange(min=1), default=1, show_default=True,
              help="report extra references only from this many up.")
@click.option("--sort", type=click.Choice(tuple(SORT_KEYS)), default="pfn", show_default=True)
@click.option("--limit", type=click.IntRange(min=0), default=None, metavar="N",
              help="show at most N rows.")
@click.option("--stacks", is_flag=True,
              help="add pid, comm and allocation stack columns (from page_owner) to the table "
                   "and CSV; JSON always has them.")
@click.option("--exit-status", is_flag=True,
              help="exit with status 1 when pinned pages are reported, 0 when none.")
@global_options
@click.pass_context
def command(ctx: click.Context, **values: Any) -> None:
    """List pinned pages: FOLL_PIN pins, unexpected extra references, page_pinner flags.

    \b
    Examples:
      sudo pinspect pinned --zone Normal
      pinspect -c vmcore -s vmlinux pinned --evidence foll_pin --sort pins --limit 20
      pinspect pinned --pfn 0x100000-0x10ffff --format json -o pinned.json
      pinspect -c vmcore -s vmlinux pinned --stacks --limit 10
      pinspect pinned --zone Normal --exit-status >/dev/null || echo "pinned pages in Normal"
    """
    options, params = split_options(ctx, values)
    report = run(open_target("pinned", options), options, **params)
    if params["exit_status"] and report.pages:
        ctx.exit(FOUND_EXIT_STATUS)
