"""``pinspect pinned``: one row per pinned page or large folio."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

import click
from drgn import Program

from pinspect.commands import Needs, register
from pinspect.commands.common import (
    FOUND_EXIT_STATUS,
    Options,
    Progress,
    emit,
    global_options,
    open_target,
    page_filter_options,
    split_options,
)
from pinspect.features import Feature
from pinspect.owner import OwnerRecord
from pinspect.pinner import PinnerPage, PinnerRecord
from pinspect.render import Document, Lines, Rows
from pinspect.report import PinnedPage, PinnedReport, RmapSummary, find_pinned, holder_text
from pinspect.rmap import Mapper
from pinspect.schema import (
    FEATURE,
    HELD,
    MAPPER,
    OWNER,
    PINNED_PAGE,
    PINNER,
    PINNER_RECORD,
    RMAP_SUMMARY,
    pick,
)
from pinspect.summary import summarize

COLUMNS = ("pfn", "nr_pages", "zone", "migratetype", "cma", "order", "refcount", "mapcount",
           "pins", "extra", "evidence", "mapping")
STACK_COLUMNS = ("pid", "comm", "source", "stack")
# With --owners: who maps each folio (one line per mapper) and who holds its references.
OWNER_COLUMNS = ("pid", "comm", "vaddr", "file", "holders")
# With --owners and --stacks both, page_owner's allocating task gets columns of its own.
ALLOC_COLUMNS = ("alloc_pid", "alloc_comm", "source", "stack")
HOLDER_KINDS = ("io_uring", "pipe", "lru_batch", "unexplained", "none")
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


def record_object(record: PinnerRecord) -> dict[str, Any]:
    """A page_pinner ring record in JSON (:data:`pinspect.schema.PINNER_RECORD`)."""
    obj = pick(record, PINNER_RECORD)
    obj["stack"] = record.stack.lines() if record.stack else None
    obj["text"] = list(record.text)
    return obj


def pinner_object(page: PinnerPage | None) -> dict[str, Any] | None:
    """page_pinner's state of a page in JSON (:data:`pinspect.schema.PINNER`)."""
    if page is None:
        return None
    obj = pick(page, PINNER)
    obj["flags"] = list(page.flags)
    obj["stack"] = page.stack.lines() if page.stack else None
    obj["records"] = [record_object(r) for r in page.records]
    return obj


def mapper_object(m: Mapper) -> dict[str, Any]:
    obj = pick(m, MAPPER)
    obj["flags"] = list(m.flags)
    obj["others"] = list(m.others)
    return obj


def page_object(page: PinnedPage) -> dict[str, Any]:
    """One page of the JSON document (:data:`pinspect.schema.PINNED_PAGE`)."""
    obj = pick(page, PINNED_PAGE)
    obj["owner"] = owner_object(page.owner)
    obj["pinner"] = pinner_object(page.pinner)
    obj["mappers"] = None if page.mappers is None else [mapper_object(m) for m in page.mappers]
    obj["holders"] = None if page.holders is None else [dict(pick(h, HELD), fds=list(h.fds))
                                                        for h in page.holders]
    return obj


def _vaddr(m: Mapper) -> str:
    if m.vaddr_end - m.vaddr > 4096:
        return f"{m.vaddr:#x}-{m.vaddr_end:#x}"
    return hex(m.vaddr)


def _row(page: PinnedPage, owners: bool = False, stacks: bool = True) -> dict[str, Any]:
    """The table and CSV cells of *page*: the columns of :func:`document`, nothing more (the
    whole JSON object per row cost ~0.1 ms: 10 s for 100 000 rows)."""
    row: dict[str, Any] = {c: getattr(page, c) for c in COLUMNS}
    row["pfn"] = hex(page.pfn)
    owner = page.owner
    alloc = ("alloc_pid", "alloc_comm") if owners else ("pid", "comm")
    row[alloc[0]] = owner.pid if owner else None
    row[alloc[1]] = owner.comm if owner else None
    if stacks:  # (the stack columns exist only with --stacks)
        stack, source = page.stack_source()
        row["source"] = source or None
        row["stack"] = Lines(stack.lines()) if stack else None
    if owners:
        mappers = page.mappers or []
        if len(mappers) == 1 and mappers[0].file:  # (most folios: one line, a plain cell)
            m = mappers[0]
            row["pid"] = str(m.pid) if m.pid is not None else "?"
            row["comm"] = m.comm or "?"
            row["vaddr"] = _vaddr(m)
            row["file"] = m.file
        else:
            row["pid"] = Lines(str(m.pid) if m.pid is not None else "?" for m in mappers)
            row["comm"] = Lines(m.comm or "?" for m in mappers)
            row["vaddr"] = Lines(_vaddr(m) for m in mappers)
            row["file"] = Lines(m.file for m in mappers)
        held = holder_text(page)
        row["holders"] = Lines(held.split(", ")) if ", " in held else held or "-"
    return row


def rmap_notes(rmap: RmapSummary | None) -> list[str]:
    """The reverse map's summary lines."""
    if rmap is None:
        return []
    notes = [f"owners: {rmap.with_mappers} of {rmap.folios} folio(s) with mappers found"
             + (f", {rmap.unresolved} mapped folio(s) unresolved" if rmap.unresolved else "")
             + (f", {rmap.no_process} mapping(s) without a process" if rmap.no_process else "")]
    notes.append(f"unexplained by holders ({', '.join(rmap.holders)}): pins "
                 f"{rmap.unexplained_pins}, extra {rmap.unexplained_extra}"
                 + (f"; transient (LRU batches): {rmap.transient}" if rmap.transient else ""))
    notes += [f"owners warning: {w}" for w in rmap.warnings]
    return notes


def matches(page: PinnedPage, pids: Sequence[int] = (), comms: Sequence[str] = (),
            files: Sequence[str] = (), holders: Sequence[str] = ()) -> bool:
    """Whether *page* passes the owner filters: a mapper or holder with one of *pids* or
    *comms* (shell patterns), a mapper whose file matches one of *files* (shell pattern, or a
    substring), a holder of one of the kinds (or label substrings) *holders*."""
    mappers = page.mappers or []
    held = page.holders or []
    if pids and not ({m.pid for m in mappers} | {h.pid for h in held}) & set(pids):
        return False
    if comms:
        names = [m.comm for m in mappers] + [h.comm for h in held]
        if not any(n is not None and fnmatch.fnmatchcase(n, c) for n in names for c in comms):
            return False
    if files and not any(fnmatch.fnmatchcase(m.file, f) or f in m.file
                         for m in mappers for f in files):
        return False
    if holders:
        kinds = {h.kind for h in held}
        if page.unexplained_pins or page.unexplained_extra:
            kinds.add("unexplained")
        if not held:
            kinds.add("none")
        if not any(k in kinds or any(k in h.holder for h in held) for k in holders):
            return False
    return True


def source_notes(sources: list[Feature], warnings: list[str]) -> list[str]:
    """Lines saying where stacks come from and what could not be decoded."""
    notes = []
    for f in sources:
        what = {"page_owner": "allocation stacks, pid and comm",
                "page_pinner": "pin and release stacks (preferred where present)"}.get(
                    f.name, "records")
        notes.append(f"{what}: {f.name} {f.state}"
                     + ("" if f.state == "present" else f" ({f.detail})"))
    notes += [f"warning: {w}" for w in warnings]
    return notes


def document(report: PinnedReport, sort: str = "pfn", limit: int | None = None,
             stacks: bool = False, owners: bool = False) -> Document:
    """The ``pinned`` result as a renderable document (*stacks*: with the pid, comm and
    allocation stack columns; *owners*: with the mappers' pid, comm, vaddr and file and the
    holders)."""
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
    notes += rmap_notes(report.rmap)
    notes += source_notes(report.sources if stacks else [], report.warnings)
    columns: tuple[str, ...] = COLUMNS
    if owners:
        columns += OWNER_COLUMNS
    if stacks:
        columns += ALLOC_COLUMNS if owners else STACK_COLUMNS
    return Document(
        command="pinned",
        body={"pages": Rows(shown, page_object), "summary": summary,
              "scanned": report.scanned, "skipped_free": report.skipped_free,
              "unreadable": report.unreadable,
              "sources": [pick(f, FEATURE) for f in report.sources],
              "warnings": list(report.warnings),
              "rmap": pick(report.rmap, RMAP_SUMMARY) if report.rmap else None},
        rows=Rows(shown, lambda p: _row(p, owners, stacks)),
        columns=columns,
        notes=notes,
    )


def run(prog: Program, options: Options, *, zone_names: Sequence[str] = (),
        nodes: Sequence[int] = (), pfn_range: tuple[int, int] | None = None,
        evidence: Sequence[str] = (), cma_name: str | None = None, min_extra: int = 1,
        sort: str = "pfn", limit: int | None = None, stacks: bool = False,
        exit_status: bool = False, owners: bool = False, pids: Sequence[int] = (),
        comms: Sequence[str] = (), files: Sequence[str] = (), holders: Sequence[str] = ()
        ) -> PinnedReport:
    """``pinned`` on an open program: find the pinned pages, write them, return the report.

    The mappers and holders are looked up for JSON, for ``--owners`` and for the owner
    filters (*pids*, *comms*, *files*, *holders*)."""
    filtering = bool(pids or comms or files or holders)
    want = owners or filtering or options.format == "json"
    report = find_pinned(prog, zone_names=zone_names, nodes=nodes, pfn_range=pfn_range,
                         evidence=evidence, min_extra=min_extra, progress=Progress(),
                         owners=True, cma=cma_name, mappers=want)
    if filtering:
        report.pages = [p for p in report.pages if matches(p, pids, comms, files, holders)]
        report.summary = summarize(report.pages)
    emit(document(report, sort, limit, stacks, owners), options)
    return report


@register(Needs(features=("folio layout",)), run)
@click.command("pinned")
@page_filter_options
@click.option("--cma", "cma_name", metavar="NAME", default=None,
              help="only pages in this CMA area (pinspect cma lists them).")
@click.option("--min-extra", type=click.IntRange(min=1), default=1, show_default=True,
              help="report extra references only from this many up.")
@click.option("--sort", type=click.Choice(tuple(SORT_KEYS)), default="pfn", show_default=True)
@click.option("--limit", type=click.IntRange(min=0), default=None, metavar="N",
              help="show at most N rows.")
@click.option("--stacks", is_flag=True,
              help="add pid, comm, source and stack columns to the table and CSV: "
                   "page_pinner's stack where it has one, page_owner's allocation stack "
                   "otherwise; JSON always has both records.")
@click.option("--owners", is_flag=True,
              help="add who maps each folio (pid, comm, vaddr, file: one line per process) and "
                   "the kernel objects holding its references (holders) to the table and CSV; "
                   "JSON always has them.")
@click.option("--pid", "pids", multiple=True, type=int, metavar="PID",
              help="only folios this process maps or holds (repeatable).")
@click.option("--comm", "comms", multiple=True, metavar="NAME",
              help="only folios a process of this name maps or holds (shell pattern; "
                   "repeatable).")
@click.option("--file", "files", multiple=True, metavar="PATTERN",
              help="only folios mapped from a file matching PATTERN (shell pattern or "
                   "substring: /dev/shm/*, SYSV, memfd:, [anon], [shmem]; repeatable).")
@click.option("--holder", "holders", multiple=True, metavar="KIND",
              help="only folios with this holder: io_uring, pipe, lru_batch, unexplained, "
                   "none, or a substring of a holder's label (repeatable).")
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
      pinspect pinned --cma reserved
      pinspect -c vmcore -s vmlinux pinned --owners --holder pipe
      pinspect -c vmcore -s vmlinux pinned --owners --comm 'java*' --file /dev/shm/
      pinspect pinned --zone Normal --exit-status >/dev/null || echo "pinned pages in Normal"
    """
    options, params = split_options(ctx, values)
    report = run(open_target("pinned", options), options, **params)
    if params["exit_status"] and report.pages:
        ctx.exit(FOUND_EXIT_STATUS)
