"""``pinspect trace``: who held the pages that migration failed on, from trace events; with
``-c DUMP``, which of them are still pinned at dump time and by whom."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import click
from drgn import Program

from pinspect.commands import Needs, register
from pinspect.commands.common import (
    Options,
    Progress,
    emit,
    global_options,
    open_target,
    parse_pfn_range,
    split_options,
)
from pinspect.commands.pinned import owner_object
from pinspect.render import Document, Lines, Rows
from pinspect.report import PinnedPage, find_pinned
from pinspect.trace import (
    CHAIN_LENGTH,
    REASONS,
    CommonPaths,
    Filters,
    PfnState,
    TraceResult,
    analyze,
    from_callsite,
    open_input,
    require_events,
)

VIEWS = ("ranking", "pfns", "chain")
RANKING_COLUMNS = ("rank", "callsite", "pfns", "puts", "reasons", "comms", "example_pfn",
                   "stack")
PFN_COLUMNS = ("pfn", "reasons", "failed_at", "comm", "count", "gets", "puts", "last_holder",
               "last_common", "state")
DUMP_COLUMNS = ("dump", "evidence", "refcount", "owner_pid", "owner_comm", "owner_stack")
CHAIN_COLUMNS = ("pfn", "ts", "kind", "event", "comm", "pid", "count", "callsite", "common",
                 "stack")
STACK_LINES = 8  # frames of a stack in a table cell (JSON has them all)


@dataclass
class TraceReport:
    """``trace``'s result: the analysis, and the dump's view of the failing pfns."""

    result: TraceResult
    ranking: list[dict[str, Any]]
    common: list[dict[str, Any]]
    pfns: list[PfnState]  # the failing pfns, by pfn (JSON objects made when written)
    dump: dict[int, dict[str, Any]] | None = None  # failing pfn -> its state in the dump
    warnings: list[str] = field(default_factory=list)


def join_dump(prog: Program, pfns: list[int]) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """The state at dump time of each of *pfns*: pinned or not, evidence, owner (page_owner)."""
    if not pfns:
        return {}, []
    report = find_pinned(prog, pfn_range=(min(pfns), max(pfns) + 1), progress=Progress(),
                         owners=True)
    starts = sorted((p.pfn, p) for p in report.pages)
    found: dict[int, PinnedPage] = {}
    wanted = set(pfns)
    for start, page in starts:
        for pfn in range(start, start + page.nr_pages):
            if pfn in wanted:
                found[pfn] = page
    out: dict[int, dict[str, Any]] = {}
    for pfn in pfns:
        hit = found.get(pfn)
        if hit is None:
            out[pfn] = {"pinned": False, "head_pfn": None, "evidence": [], "refcount": None,
                        "pins": None, "extra": None, "owner": None}
        else:
            out[pfn] = {"pinned": True, "head_pfn": hit.pfn, "evidence": list(hit.evidence),
                        "refcount": hit.refcount, "pins": hit.pins, "extra": hit.extra,
                        "owner": owner_object(hit.owner)}
    return out, list(report.warnings)


def _top(stack: list[str]) -> Lines:
    """A table cell: the stack from its callsite on, at most STACK_LINES frames."""
    stack = from_callsite(stack)
    shown = stack[:STACK_LINES]
    more = len(stack) - len(shown)
    return Lines(shown + ([f"... {more} more"] if more > 0 else []))


def _ts(ts: float | None) -> str | None:
    return None if ts is None else f"{ts:.6f}"


def _pfn_row(obj: dict[str, Any], dump: dict[str, Any] | None) -> dict[str, Any]:
    row = dict(obj, pfn=hex(obj["pfn"]), failed_at=_ts(obj["failed_at"]))
    if dump is not None:
        owner = dump.get("owner") or {}
        row["dump"] = "pinned" if dump["pinned"] else "not pinned"
        row["evidence"] = dump["evidence"]
        row["refcount"] = dump["refcount"]
        row["owner_pid"] = owner.get("pid")
        row["owner_comm"] = owner.get("comm")
        row["owner_stack"] = _top(owner["stack"]) if owner.get("stack") else None
    return row


def document(report: TraceReport, view: str = "ranking", limit: int | None = None,
             name: str = "-") -> Document:
    """The ``trace`` result as a renderable document."""
    result = report.result
    analysis, stats = result.analysis, result.stats
    states = report.pfns
    by_reason: dict[str, int] = {}
    for state in states:
        for r in state.reasons:
            by_reason[r] = by_reason.get(r, 0) + 1
    held = sum(1 for state in states if not state.freed and state.last_holder < 0)
    dump = report.dump

    def pfn_json(state: PfnState) -> dict[str, Any]:
        obj = analysis.pfn_object(state)
        obj["dump"] = dump.get(state.pfn) if dump is not None else None
        return obj

    body = {
        "file": name,
        "formats": dict(stats.formats),
        "lines": stats.lines,
        "events": stats.events,
        "by_event": dict(stats.by_event),
        "skipped": dict(stats.skipped(), truncated=stats.truncated + analysis.truncated),
        "failing_pfns": len(states),
        "by_reason": by_reason,
        "failure_events": dict(analysis.failure_events),
        "held_at_end": held,
        "ranking": report.ranking,
        "common": report.common,
        "pfns": Rows(states, pfn_json),  # made one at a time while written
        "cma_allocs": dict(analysis.cma_allocs),
        "migrate_failed": dict(analysis.migrate),
        "dump": None if dump is None else {
            "failing_pfns": len(dump),
            "still_pinned": sum(1 for d in dump.values() if d["pinned"]),
        },
        "warnings": list(report.warnings),
    }
    rows: list[dict[str, Any]]
    shown = states if limit is None else states[:limit]
    if view == "ranking":
        columns: tuple[str, ...] = RANKING_COLUMNS
        rows = [dict(r, example_pfn=hex(r["example_pfn"]), stack=_top(r["stack"]))
                for r in report.ranking]
    elif view == "pfns":
        columns = PFN_COLUMNS + (DUMP_COLUMNS if dump is not None else ())
        rows = [_pfn_row(analysis.pfn_object(s), dump.get(s.pfn) if dump is not None else None)
                for s in shown]
    else:
        columns = CHAIN_COLUMNS
        rows = [dict(e, pfn=hex(s.pfn), ts=_ts(e["ts"]), stack=_top(e["stack"]))
                for s in shown for e in analysis.pfn_object(s)["chain"]]
    total = len(rows) if view == "ranking" else len(states)
    if limit is not None:
        rows = rows[:limit]
    notes = [""]
    if limit is not None and total > limit:
        notes.append(f"(showing {limit} of {total} rows; --limit)")
    notes.append(
        f"{len(states)} failing pfn(s)"
        + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(by_reason.items())) + ")"
           if by_reason else "")
        + f"; {held} still held at the end of the trace"
        + f"; {stats.events} events in {stats.lines} lines")
    if report.common:
        notes.append("common paths, left out of the ranking: " + ", ".join(
            f"{c['callsite']} ({c['group']}: {c['puts']} put(s), {c['pfns']} pfn(s))"
            for c in report.common[:8]) + (" ..." if len(report.common) > 8 else ""))
    if dump is not None:
        still = sum(1 for d in dump.values() if d["pinned"])
        notes.append(f"dump: {still} of {len(dump)} failing pfn(s) still pinned")
    if analysis.cma_allocs:
        notes.append("cma allocations: " + ", ".join(
            f"{k} {v}" for k, v in sorted(analysis.cma_allocs.items())))
    notes += [f"warning: {w}" for w in report.warnings]
    return Document(command="trace", body=body, rows=rows, columns=columns, notes=notes)


def run(prog: Program | None, options: Options, *, file: str = "-",
        reasons: tuple[str, ...] = (), pfn_range: tuple[int, int] | None = None,
        comms: tuple[str, ...] = (), since: float | None = None, until: float | None = None,
        view: str = "ranking", common: tuple[str, ...] = (), no_default_common: bool = False,
        limit: int | None = None, chain: int = CHAIN_LENGTH) -> TraceReport:
    """``trace`` on a trace file (and, with *prog*, the dump or kernel to join it with)."""
    filters = Filters(reasons=frozenset(reasons), pfn_range=pfn_range, comms=tuple(comms),
                      since=since, until=until)
    paths = CommonPaths.make(defaults=not no_default_common, extra=common)
    stream = open_input(file)
    try:
        result = analyze(stream, filters, paths, chain_length=chain)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    name = "standard input" if file == "-" else file
    require_events(result, name)
    analysis = result.analysis
    ranking, filtered = analysis.ranking()
    states = analysis.failing()
    report = TraceReport(result, ranking, filtered, states, warnings=result.warnings())
    if prog is not None:
        report.dump, warnings = join_dump(prog, [s.pfn for s in states])
        report.warnings += warnings
    for warning in result.warnings():
        click.echo(f"pinspect: warning: {warning}", err=True)
    emit(document(report, view, limit, name), options)
    return report


def _pfn_range(ctx: click.Context, param: click.Parameter,
               value: str | None) -> tuple[int, int] | None:
    try:
        return parse_pfn_range(value) if value else None
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from e


@register(Needs(features=("folio layout",)), run)
@click.command("trace")
@click.argument("file", metavar="FILE|-", type=click.Path(allow_dash=True, dir_okay=False))
@click.option("--reason", "reasons", multiple=True, type=click.Choice(REASONS),
              help="only failures for this reason (repeatable): CMA allocation, other "
                   "contiguous allocation, compaction.")
@click.option("--pfn", "pfn_range", metavar="START-END", default=None, callback=_pfn_range,
              help="only pfns in START-END (inclusive; decimal or 0x hex).")
@click.option("--comm", "comms", multiple=True, metavar="NAME",
              help="only gets and puts by tasks of this name (glob; repeatable).")
@click.option("--since", type=float, default=None, metavar="SECONDS",
              help="only events from this trace timestamp on.")
@click.option("--until", type=float, default=None, metavar="SECONDS",
              help="only events up to this trace timestamp.")
@click.option("--view", type=click.Choice(VIEWS), default="ranking", show_default=True,
              help="table and CSV rows: ranked callsites, one row per failing pfn, or the "
                   "chain of events of each failing pfn.")
@click.option("--common", multiple=True, metavar="[GROUP=]REGEX",
              help="one more common path: callsites whose function matches are left out of "
                   "the ranking (repeatable).")
@click.option("--no-default-common", is_flag=True,
              help="rank every callsite: no default common paths (LRU, migration, page "
                   "cache).")
@click.option("--chain", type=click.IntRange(1, 4096), default=CHAIN_LENGTH, show_default=True,
              help="events kept per failing pfn.")
@click.option("--limit", type=int, default=None, help="show at most N rows.")
@global_options
@click.pass_context
def command(ctx: click.Context, **values: Any) -> None:
    """Rank who held the pages migration failed on, from page_pinner or page_ref events.

    Reads perf script, trace-cmd report or ftrace text (page_pinner_failure/put of the RFC
    and pp61 kernels, page_ref_* of CONFIG_DEBUG_PAGE_REF, test_pages_isolated, cma_alloc*,
    mm_migrate_pages) or Android page_pinner record files. With -c DUMP (or --qemu), also
    shows which failing pfns are still pinned in the dump, with their page_owner stacks.

    \b
    Examples:
      pinspect trace trace.txt
      pinspect trace - --reason cma < perf-script.txt
      pinspect trace trace.txt --view pfns -c vmcore -s vmlinux
      pinspect trace trace.txt --view chain --pfn 0x13e473 --format json
    """
    options, params = split_options(ctx, values)
    prog = open_target("trace", options) if options.core or options.qemu else None
    run(prog, options, **params)
