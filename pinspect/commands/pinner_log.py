"""``pinspect pinner-log``: page_pinner's ring buffers, newest record first.

``--format text`` prints what the kernel's debugfs files under
``/sys/kernel/debug/page_pinner/`` print for this variant, line for line, so that a dump can
be diffed against a capture from the running system.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import click
from drgn import Program

from pinspect.commands import Needs, register
from pinspect.commands.common import (
    Options,
    emit,
    global_options,
    open_target,
    pfn_range_callback,
    split_options,
)
from pinspect.commands.pinned import record_object
from pinspect.errors import FeatureMissing
from pinspect.kernel import probe
from pinspect.pinner import (
    REASON_NAMES,
    RINGS,
    STATE_NAMES,
    PinnerLog,
    PinnerRecord,
    Ring,
    pinner_log,
)
from pinspect.render import FORMATS, Document, Lines, Rows
from pinspect.schema import RING

COLUMNS = ("buffer", "slot", "pfn", "state", "reason", "time", "elapsed_us", "count",
           "mapcount", "stack")
TEXT = "text"


@dataclass
class LogResult:
    """What ``pinner-log`` shows: the rings read and the records that pass the filters."""

    log: PinnerLog
    rings: list[Ring]
    records: list[PinnerRecord] = field(default_factory=list)  # by ring, newest first


def _seconds(usec: int | None) -> str | None:
    return None if usec is None else f"{usec // 1_000_000}.{usec % 1_000_000:06d}"


def _row(r: PinnerRecord) -> dict[str, Any]:
    return {"buffer": r.buffer, "slot": r.slot, "pfn": hex(r.pfn), "state": r.state,
            "reason": r.reason, "time": _seconds(r.time_usec), "elapsed_us": r.elapsed,
            "count": r.count, "mapcount": r.mapcount,
            "stack": Lines(r.stack.lines()) if r.stack else None}


def ring_object(ring: Ring) -> dict[str, Any]:
    """A ring buffer in JSON (:data:`pinspect.schema.RING`)."""
    obj = {"name": ring.name, "file": ring.file, "kind": ring.kind, "size": ring.size,
           "index": ring.index, "records": len(ring.records),
           "rejected": [{"slot": s, "why": why} for s, why in ring.rejected],
           "wrapped": ring.wrapped}
    return {key: obj[key] for key in RING}


def parse_timestamp(text: str) -> int:
    """A CLOCK_BOOTTIME timestamp as µs: seconds (``1301.000268``, as debugfs prints it) or
    a count with a unit (``1301000268us``, ``1301000ms``, ``1301s``)."""
    value = text.strip().strip("[]").strip()
    units = {"us": 1, "ms": 1000, "s": 1_000_000}
    for unit in ("us", "ms", "s"):
        if value.endswith(unit):
            try:
                return int(float(value[:-len(unit)]) * units[unit])
            except ValueError:
                break
    try:
        seconds, _, fraction = value.partition(".")
        return int(seconds) * 1_000_000 + int((fraction + "000000")[:6] if fraction else 0)
    except ValueError:
        raise ValueError(f"bad timestamp {text!r}: use seconds (1301.000268) or a count "
                         "with a unit (1301000268us, 1301000ms, 1301s)") from None


def _state_value(name: str) -> str:
    name = name.lower().removeprefix("pp_")
    return {"fail": "fail_detected", "failure": "fail_detected"}.get(name, name)


def select(log: PinnerLog, buffers: Sequence[str] = (), states: Sequence[str] = (),
           reasons: Sequence[str] = (), pfn_range: tuple[int, int] | None = None,
           since: int | None = None, until: int | None = None) -> LogResult:
    """The rings named in *buffers* (global or debugfs file name; all when empty) and their
    records that pass every filter. *states* are ``enum pp_state`` names with or without
    ``PP_`` (C and D only keep a state); *since* and *until* are µs of CLOCK_BOOTTIME and keep
    only records whose time is known (:attr:`PinnerRecord.time_usec`)."""
    rings = log.rings
    if buffers:
        names = {ring.name for ring in rings} | {ring.file for ring in rings}
        unknown = [b for b in buffers if b not in names]
        if unknown:
            raise FeatureMissing(
                f"page_pinner variant {(log.variant or '?').upper()} has no buffer "
                f"{', '.join(unknown)}",
                "buffers here: " + ", ".join(f"{r.name} ({r.file})" for r in rings))
        rings = [r for r in rings if r.name in buffers or r.file in buffers]
    wanted_states = {_state_value(s) for s in states}
    result = LogResult(log, rings)
    for ring in rings:
        for r in ring.records:
            if wanted_states and (r.state is None
                                  or _state_value(r.state) not in wanted_states):
                continue
            if reasons and r.reason not in reasons:
                continue
            if pfn_range is not None and not pfn_range[0] <= r.pfn < pfn_range[1]:
                continue
            if since is not None and (r.time_usec is None or r.time_usec < since):
                continue
            if until is not None and (r.time_usec is None or r.time_usec > until):
                continue
            result.records.append(r)
    return result


def text_lines(result: LogResult) -> list[str]:
    """The debugfs text of the selected records; with more than one buffer, each file's text
    after a ``==> /sys/kernel/debug/page_pinner/FILE <==`` line (as ``head`` and ``tail``
    print several files)."""
    lines: list[str] = []
    for ring in result.rings:
        chosen = [r for r in result.records if r.buffer == ring.name]
        if len(result.rings) > 1:
            if lines:
                lines.append("")
            lines.append(f"==> /sys/kernel/debug/page_pinner/{ring.file} <==")
        for r in chosen:
            lines += r.text
    return lines


def document(result: LogResult) -> Document:
    """The ``pinner-log`` result as a renderable document."""
    log = result.log
    notes = [""]
    for ring in result.rings:
        shown = sum(1 for r in result.records if r.buffer == ring.name)
        notes.append(f"{ring.name} ({ring.file}): {shown} of {len(ring.records)} record(s) "
                     f"shown, {ring.size} slots, next {ring.index}"
                     + (", wrapped (older records overwritten)" if ring.wrapped else ""))
    notes += [f"warning: {w}" for w in log.warnings()]
    return Document(
        command="pinner-log",
        body={"variant": log.variant, "buffers": [ring_object(r) for r in result.rings],
              "records": Rows(result.records, record_object), "warnings": log.warnings()},
        rows=Rows(result.records, _row),
        columns=COLUMNS,
        notes=notes,
    )


def run(prog: Program, options: Options, *, buffers: Sequence[str] = (),
        states: Sequence[str] = (), reasons: Sequence[str] = (),
        pfn_range: tuple[int, int] | None = None, since: str | int | None = None,
        until: str | int | None = None) -> LogResult:
    """``pinner-log`` on an open program: read the ring buffers, write the records that pass
    the filters (``options.format`` ``text``: the debugfs text), return them."""
    kernel = probe(prog)
    if kernel.pinner_variant not in RINGS:
        variant = (kernel.pinner_variant or "none").upper()
        raise FeatureMissing(f"page_pinner variant {variant} keeps no ring buffer",
                             "the RFC variant only sets a page_ext flag: see pinned "
                             "--evidence pinner")
    since_us = parse_timestamp(since) if isinstance(since, str) else since
    until_us = parse_timestamp(until) if isinstance(until, str) else until
    result = select(pinner_log(prog), buffers, states, reasons, pfn_range, since_us, until_us)
    if options.format == TEXT:
        text = "".join(line + "\n" for line in text_lines(result))
        if options.output:
            with open(options.output, "w") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
        for warning in result.log.warnings():
            sys.stderr.write(f"pinspect: warning: {warning}\n")
        return result
    emit(document(result), options)
    return result


def _timestamp(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    try:
        return parse_timestamp(value) if value else None
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from e


@register(Needs(features=("page_pinner", "stack depot")), run)
@click.command("pinner-log")
@click.option("--buffer", "buffers", multiple=True, metavar="NAME",
              help="only this ring buffer (repeatable), by global or debugfs file name: "
                   "lt_pinner/acf_pinner (A0-B), lt_buffer/acf_buffer (C), pp_buffer (D); "
                   "longterm_pinner, alloc_contig_failed, buffer.")
@click.option("--state", "states", multiple=True,
              type=click.Choice(STATE_NAMES + tuple(f"PP_{s.upper()}" for s in STATE_NAMES),
                                case_sensitive=False),
              help="only records in this pp_state (repeatable; variants C and D).")
@click.option("--reason", "reasons", multiple=True, type=click.Choice(REASON_NAMES),
              help="only records of failures detected by this path (repeatable): from the "
                   "failure's stack (cma_alloc, offline_pages, compaction, alloc_contig_range, "
                   "a long-term GUP pin's migration), longterm for the long-term pin buffer.")
@click.option("--pfn", "pfn_range", metavar="START-END", default=None, callback=pfn_range_callback,
              help="only pfns in START-END (inclusive; decimal or 0x hex).")
@click.option("--since", metavar="TIMESTAMP", default=None, callback=_timestamp,
              help="only records made at or after TIMESTAMP (CLOCK_BOOTTIME seconds as "
                   "debugfs prints them, 1301.000268, or 1301000268us); records whose time "
                   "is unknown (long-term releases) are left out.")
@click.option("--until", metavar="TIMESTAMP", default=None, callback=_timestamp,
              help="only records made at or before TIMESTAMP.")
@global_options
@click.pass_context
def command(ctx: click.Context, **values: Any) -> None:
    """page_pinner's ring buffers, newest record first: long-term pins, and the puts, frees
    and failure detections that followed a failed migration. --format text prints what the
    kernel's debugfs files (/sys/kernel/debug/page_pinner/) print, line for line.

    \b
    Examples:
      pinspect -c vmcore -s vmlinux pinner-log
      pinspect -c vmcore -s vmlinux pinner-log --format text --buffer buffer -o buffer.txt
      pinspect pinner-log --state fail_detected --reason cma --since 1301.0
      pinspect pinner-log --pfn 0x100490-0x1004ff --format json
    """
    options, params = split_options(ctx, values)
    run(open_target("pinner-log", options), options, **params)


# --format text: this command's own format, next to table, json and csv.
for _param in command.params:
    if _param.name == "format_":
        _param.type = click.Choice(FORMATS + (TEXT,))
        _param.help = "output format (default: table); text: the kernel's debugfs text."
