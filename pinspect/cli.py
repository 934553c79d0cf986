"""The ``pinspect`` command line: global options, error handling, and the command group.

Global options are accepted before the command name and after it
(``pinspect -c dump --format json pinned`` and ``pinspect pinned -c dump --format json``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from drgn import FaultError, Program

from pinspect import __version__
from pinspect.errors import PinspectError
from pinspect.render import FORMATS, Document, render
from pinspect.target import open_program

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Options:
    """The global options after merging group-level and command-level values."""

    core: str | None = None
    vmlinux: tuple[str, ...] = ()
    qemu: str | None = None
    format: str | None = None
    output: str | None = None


_GLOBAL_OPTIONS = [
    click.option("-c", "--core", metavar="VMCORE", default=None,
                 help="ELF or kdump-compressed vmcore (default: the running kernel)."),
    click.option("-s", "--vmlinux", metavar="PATH", multiple=True,
                 help="vmlinux with debug info (repeatable; default: drgn's search)."),
    click.option("--qemu", metavar="ADDRESS", default=None,
                 help="attach to a QEMU guest over QMP (unix socket path or host:port)."),
    click.option("--format", "format_", type=click.Choice(FORMATS), default=None,
                 help="output format (default: table)."),
    click.option("-o", "--output", metavar="FILE", default=None,
                 help="write the output to FILE instead of standard output."),
]


def global_options(f: F) -> F:
    """Add the global options to a command (or the group)."""
    for option in reversed(_GLOBAL_OPTIONS):
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
    )


def open_target(options: Options) -> Program:
    return open_program(core=options.core, vmlinux=options.vmlinux, qemu=options.qemu)


def emit(doc: Document, options: Options) -> None:
    """Render *doc* in the chosen format to standard output or ``--output``."""
    text = render(doc, options.format or "table")
    if options.output:
        with open(options.output, "w") as f:
            f.write(text)
    else:
        click.echo(text, nl=False)


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@global_options
@click.version_option(__version__, prog_name="pinspect")
@click.pass_context
def cli(ctx: click.Context, core: str | None, vmlinux: tuple[str, ...], qemu: str | None,
        format_: str | None, output: str | None) -> None:
    """Find pinned physical pages, where they sit, and why they cannot migrate.

    \b
    Examples:
      sudo pinspect pinned --zone Normal
      pinspect -c vmcore -s vmlinux zones
    """
    ctx.obj = Options(core, vmlinux, qemu, format_, output)


def _register() -> None:
    from pinspect.commands import info, page, pinned, zones

    for module in (info, pinned, zones, page):
        cli.add_command(module.command)


_register()


def main() -> None:
    """Entry point: run the CLI; errors become one line on stderr and exit code 2."""
    if not os.environ.get("PINSPECT_DEBUG"):
        # pinspect explains missing or mismatched debug info itself.
        logging.getLogger("drgn").setLevel(logging.CRITICAL)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except PinspectError as e:
        click.echo(f"pinspect: error: {e.message}", err=True)
        if e.hint:
            click.echo(f"  hint: {e.hint}", err=True)
        sys.exit(2)
    except FaultError as e:
        click.echo(f"pinspect: error: cannot read kernel memory at {e.address:#x}: the dump is "
                   "truncated or filtered, or the structure there is corrupted", err=True)
        click.echo("  hint: compare the dump's size with what was written; with makedumpfile, "
                   "dump levels up to -d 31 keep what pinspect reads", err=True)
        sys.exit(2)
    except (ValueError, OSError) as e:
        click.echo(f"pinspect: error: {e}", err=True)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - the user gets one line, not a traceback
        if os.environ.get("PINSPECT_DEBUG"):
            raise
        click.echo(f"pinspect: internal error: {type(e).__name__}: {e}", err=True)
        click.echo("  hint: rerun with PINSPECT_DEBUG=1 for a traceback and report it",
                   err=True)
        sys.exit(3)
