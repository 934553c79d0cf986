"""``pinspect owners``: the pinned folios grouped by the process that maps them and by the
kernel object that holds their references."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import click
from drgn import Program

from pinspect.commands import Needs, register
from pinspect.commands.common import (
    Options,
    Progress,
    complete_zone,
    emit,
    global_options,
    open_target,
    split_options,
)
from pinspect.commands.pinned import rmap_notes
from pinspect.render import Document
from pinspect.report import PinnedPage, PinnedReport, find_pinned
from pinspect.schema import OWNER_GROUP, RMAP_SUMMARY, pick

COLUMNS = ("group", "name", "folios", "pages", "pins", "extra", "refs", "zones", "cma")


@dataclass
class OwnerGroup:
    """Pinned folios of one process (``group`` = ``process``: the folios it maps) or one
    holder (``holder``: the folios it holds references to)."""

    group: str  # "process" or "holder"
    name: str  # "pid 96 (pinwork)", or the holder's label
    pid: int | None
    comm: str | None
    folios: int = 0
    pages: int = 0  # base pages of those folios
    pins: int = 0  # FOLL_PIN pins of those folios (process), or pins this holder holds
    extra: int = 0  # extra references of those folios (process), or this holder's references
    refs: int = 0  # references this holder holds (pins and plain references); 0 for processes
    zones: list[str] = field(default_factory=list)  # node:zone of those folios
    cma: list[str] = field(default_factory=list)  # CMA areas of those folios


@dataclass
class OwnersReport:
    processes: list[OwnerGroup]
    holders: list[OwnerGroup]
    unexplained: dict[str, int]  # pins, extra, folios: what no holder accounts for
    report: PinnedReport


def _add(group: OwnerGroup, page: PinnedPage, pins: int, extra: int) -> None:
    group.folios += 1
    group.pages += page.nr_pages
    group.pins += pins
    group.extra += extra
    zone = f"{page.node}:{page.zone}"
    if zone not in group.zones:
        group.zones.append(zone)
    if page.cma and page.cma not in group.cma:
        group.cma.append(page.cma)


def group_owners(report: PinnedReport) -> OwnersReport:
    """Group the pages of *report* (with mappers and holders attached) by process and by
    holder, most pages first."""
    procs: dict[Any, OwnerGroup] = {}
    holders: dict[str, OwnerGroup] = {}
    unexplained = {"pins": 0, "extra": 0, "folios": 0}
    for page in report.pages:
        seen = set()
        for m in page.mappers or []:
            key = m.pid if m.pid is not None else f"mm {m.mm:#x}"
            if key in seen:
                continue
            seen.add(key)
            if key not in procs:
                name = f"pid {m.pid} ({m.comm})" if m.pid is not None else f"{key} (no process)"
                procs[key] = OwnerGroup("process", name, m.pid, m.comm)
            _add(procs[key], page, page.pins, page.extra)
        if not page.mappers:
            key = "unmapped"
            if key not in procs:
                procs[key] = OwnerGroup("process", "(no mapper found)", None, None)
            _add(procs[key], page, page.pins, page.extra)
        for h in page.holders or []:
            if h.holder not in holders:
                holders[h.holder] = OwnerGroup("holder", h.holder, h.pid, h.comm)
            group = holders[h.holder]
            _add(group, page, h.count if h.counts_as == "pin" else 0,
                 h.count if h.counts_as == "ref" else 0)
            group.refs += h.count
        if page.unexplained_pins or page.unexplained_extra:
            unexplained["pins"] += page.unexplained_pins or 0
            unexplained["extra"] += page.unexplained_extra or 0
            unexplained["folios"] += 1
            if "unexplained" not in holders:
                holders["unexplained"] = OwnerGroup("holder", "unexplained", None, None)
            group = holders["unexplained"]
            _add(group, page, page.unexplained_pins or 0, page.unexplained_extra or 0)
    def order(g: OwnerGroup) -> tuple[int, int, str]:
        return -g.pages, -g.folios, g.name

    return OwnersReport(sorted(procs.values(), key=order), sorted(holders.values(), key=order),
                        unexplained, report)


def _obj(g: OwnerGroup) -> dict[str, Any]:
    obj = pick(g, OWNER_GROUP)
    obj["zones"] = list(g.zones)
    obj["cma"] = list(g.cma)
    return obj


def document(result: OwnersReport) -> Document:
    report = result.report
    rows = [dict(_obj(g), refs=g.refs if g.group == "holder" else None,
                 zones=" ".join(g.zones), cma=" ".join(g.cma) or "-")
            for g in result.processes + result.holders]
    notes = ["", f"{report.summary['folios']} pinned folio(s), {report.summary['pages']} "
             f"page(s); processes: pins and extra of the folios each maps; holders: the "
             f"references each holds"]
    notes += rmap_notes(report.rmap)
    notes += [f"warning: {w}" for w in report.warnings]
    return Document(
        command="owners",
        body={"processes": [_obj(g) for g in result.processes],
              "holders": [_obj(g) for g in result.holders],
              "unexplained": dict(result.unexplained),
              "rmap": pick(report.rmap, RMAP_SUMMARY) if report.rmap else None,
              "scanned": report.scanned,
              "warnings": list(report.warnings) + (report.rmap.warnings if report.rmap else [])},
        rows=rows, columns=COLUMNS, notes=notes)


def run(prog: Program, options: Options, *, zone_names: Sequence[str] = (),
        evidence: Sequence[str] = ()) -> OwnersReport:
    """``owners`` on an open program: find the pinned pages with their mappers and holders,
    group them, write the groups and return them."""
    report = find_pinned(prog, zone_names=zone_names, evidence=evidence, progress=Progress(),
                         owners=False, mappers=True)
    result = group_owners(report)
    emit(document(result), options)
    return result


@register(Needs(features=("folio layout",)), run)
@click.command("owners")
@click.option("--zone", "zone_names", multiple=True, metavar="NAME",
              shell_complete=complete_zone, help="only this zone (repeatable).")
@click.option("--evidence", "evidence", multiple=True,
              type=click.Choice(("foll_pin", "extra", "pinner")),
              help="only pages with this evidence (repeatable).")
@global_options
@click.pass_context
def command(ctx: click.Context, **values: Any) -> None:
    """Pinned pages by process (the folios each maps) and by holder (the kernel objects
    holding their references: io_uring rings, pipes, LRU batches): folios, pages, pins, extra
    references, zones and CMA areas.

    \b
    Examples:
      sudo pinspect owners
      pinspect -c vmcore -s vmlinux owners --zone Movable --format json
    """
    options, params = split_options(ctx, values)
    run(open_target("owners", options), options, **params)
