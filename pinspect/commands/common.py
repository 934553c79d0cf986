"""What every command shares: the global options, opening the target, emitting output."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from drgn import Program

from pinspect.commands import needs_of
from pinspect.evidence import EVIDENCE_KINDS
from pinspect.kernel import probe
from pinspect.render import FORMATS, Document, select_columns, write
from pinspect.target import open_program, type_source_name
from pinspect.typesource import AUTO, BTF, DWARF, TypeSource

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Options:
    """The global options after merging group-level and command-level values."""

    core: str | None = None
    vmlinux: tuple[str, ...] = ()
    qemu: str | None = None
    format: str | None = None
    output: str | None = None
    no_header: bool = False
    columns: tuple[str, ...] = ()
    types: str | None = None  # "btf", "dwarf" or None (DWARF where found, BTF otherwise)


_GLOBAL_OPTIONS = [
    click.option("-c", "--core", metavar="VMCORE", default=None,
                 help="ELF or kdump-compressed vmcore (default: the running kernel)."),
    click.option("-s", "--vmlinux", metavar="PATH", multiple=True,
                 help="vmlinux with debug info, or a directory to search for it "
                      "(repeatable; default: drgn's search)."),
    click.option("--qemu", metavar="ADDRESS", default=None,
                 help="attach to a QEMU guest over QMP (unix socket path or host:port)."),
    click.option("--btf", "types", flag_value="btf", default=None,
                 help="read types from the kernel's own BTF and symbols from kallsyms, "
                      "even where DWARF is installed."),
    click.option("--dwarf", "types", flag_value="dwarf", default=None,
                 help="require DWARF (vmlinux); do not fall back to the kernel's BTF."),
    click.option("--format", "format_", type=click.Choice(FORMATS), default=None,
                 help="output format (default: table)."),
    click.option("-o", "--output", metavar="FILE", default=None,
                 help="write the output to FILE instead of standard output."),
]


_OUTPUT_OPTIONS = [
    click.option("--no-header", "no_header", is_flag=True, default=False,
                 help="table and CSV: leave out the header (a table prints its rows only)."),
    click.option("--columns", metavar="NAME,...", default=None,
                 help="table and CSV: only these columns, in this order."),
]


def global_options(f: F) -> F:
    """Add the global options to a command (or the group)."""
    for option in reversed(_GLOBAL_OPTIONS + _OUTPUT_OPTIONS):
        f = option(f)
    return f


def merged_options(ctx: click.Context, **given: Any) -> Options:
    """Command-level values override group-level ones."""
    base: Options = ctx.find_object(Options) or Options()
    return Options(
        core=given.get("core") or base.core,
        vmlinux=tuple(given.get("vmlinux") or ()) or base.vmlinux,
        qemu=given.get("qemu") or base.qemu,
        format=given.get("format_") or base.format,
        output=given.get("output") or base.output,
        no_header=bool(given.get("no_header")) or base.no_header,
        columns=parse_columns(given.get("columns")) or base.columns,
        types=given.get("types") or base.types,
    )


def parse_columns(text: str | None) -> tuple[str, ...]:
    """``--columns a,b,c`` as a tuple of names."""
    return tuple(c.strip() for c in (text or "").split(",") if c.strip())


FOUND_EXIT_STATUS = 1
"""Exit status of ``pinned --exit-status`` when it reports pinned pages (like diff and grep,
which also exit 1 with a result of the other kind; errors stay 2)."""

ZONE_NAMES = ("DMA", "DMA32", "Normal", "HighMem", "Movable", "Device")


def complete_zone(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of ``--zone``: the kernel's zone names (the target is not opened)."""
    return [z for z in ZONE_NAMES if z.lower().startswith(incomplete.lower())]


def global_param_names() -> frozenset[str]:
    """The parameter names of the global options (as click passes them to a callback)."""
    def probe_params() -> None:
        pass
    global_options(probe_params)
    return frozenset(p.name for p in probe_params.__click_params__  # type: ignore[attr-defined]
                     if p.name)


def split_options(ctx: click.Context, values: dict[str, Any]) -> tuple[Options, dict[str, Any]]:
    """A command callback's *values* as (the merged global options, the command's own)."""
    names = global_param_names()
    options = merged_options(ctx, **{k: v for k, v in values.items() if k in names})
    return options, {k: v for k, v in values.items() if k not in names}


def open_target(command: str, options: Options) -> Program:
    """Open the target of *options* and check that it has what *command* needs."""
    sources: dict[str, TypeSource] = {"btf": BTF, "dwarf": DWARF}
    types = sources.get(options.types or "", AUTO)
    prog = open_program(core=options.core, vmlinux=options.vmlinux, qemu=options.qemu,
                        types=types)
    check_needs(command, prog)
    return prog


def check_needs(command: str, prog: Program) -> None:
    """Check that *prog* (opened by pinspect or by a drgn session) has what *command* needs."""
    needs_of(command).check(command, prog, probe(prog), type_source_name(prog))


def pfn_range_callback(ctx: click.Context, param: click.Parameter,
                       value: str | None) -> tuple[int, int] | None:
    """click callback: an option's ``START-END`` as a half-open pfn range (None if not given)."""
    try:
        return parse_pfn_range(value) if value else None
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from e


def page_filter_options(f: F) -> F:
    """The page filters of ``pinned`` and the commands built on it: --zone, --node, --pfn,
    --evidence."""
    for option in reversed([
        click.option("--zone", "zone_names", multiple=True, metavar="NAME",
                     shell_complete=complete_zone,
                     help="only this zone (repeatable): DMA, DMA32, Normal, Movable, ..."),
        click.option("--node", "nodes", multiple=True, type=int, metavar="N",
                     help="only this NUMA node (repeatable)."),
        click.option("--pfn", "pfn_range", metavar="START-END", default=None,
                     callback=pfn_range_callback,
                     help="only pfns in START-END (inclusive; decimal or 0x hex)."),
        click.option("--evidence", "evidence", multiple=True, type=click.Choice(EVIDENCE_KINDS),
                     help="only pages with this evidence (repeatable)."),
    ]):
        f = option(f)
    return f


def parse_pfn_range(text: str) -> tuple[int, int]:
    """``START-END`` (inclusive, decimal or 0x hex) to a half-open ``(start, end)``."""
    start, sep, end = text.partition("-")
    try:
        lo = int(start, 0)
        hi = int(end, 0) + 1 if sep else lo + 1
    except ValueError as e:
        raise ValueError(f"bad pfn range {text!r}: use START-END, e.g. 0x100000-0x1fffff") from e
    if hi <= lo:
        raise ValueError(f"bad pfn range {text!r}: END is below START")
    return lo, hi


def emit(doc: Document, options: Options) -> None:
    """Render *doc* in the chosen format to standard output or ``--output``."""
    fmt = options.format or "table"
    header, columns = not options.no_header, options.columns
    if fmt != "json":
        select_columns(doc, columns)  # an unknown column fails before -o FILE is written
    if options.output:
        with open(options.output, "w") as f:
            write(doc, fmt, f, header=header, columns=columns)
    else:
        write(doc, fmt, sys.stdout, header=header, columns=columns)
        sys.stdout.flush()


class Progress:
    """A one-line progress bar on stderr, shown only when stderr is a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        percent = done * 100 // total
        if percent == self.last:
            return
        self.last = percent
        bar = "#" * (percent // 4)
        sys.stderr.write(f"\rscanning pages [{bar:<25}] {percent:3d}%")
        if done >= total:
            sys.stderr.write("\r" + " " * 45 + "\r")
        sys.stderr.flush()
