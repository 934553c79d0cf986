"""The ``pinspect`` command line: global options, error handling, and the command group.

Global options are accepted before the command name and after it
(``pinspect -c dump --format json pinned`` and ``pinspect pinned -c dump --format json``).
"""

from __future__ import annotations

import gc
import logging
import os
import platform
import sys

import click
import drgn
from drgn import FaultError

from pinspect import __version__, unread
from pinspect.commands import all_commands
from pinspect.commands.common import Options, global_options, incomplete, parse_columns
from pinspect.dumps.layout import REWRITE_HINT
from pinspect.errors import PinspectError
from pinspect.render import escape, escape_lines
from pinspect.unread import INCOMPLETE_EXIT_STATUS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@global_options
@click.version_option(__version__, prog_name="pinspect",
                      message=f"%(prog)s %(version)s (drgn {drgn.__version__}, "
                              f"Python {platform.python_version()})")
@click.pass_context
def cli(ctx: click.Context, core: str | None, vmlinux: tuple[str, ...], qemu: str | None,
        types: str | None, format_: str | None, output: str | None, no_header: bool,
        columns: str | None) -> None:
    """Find pinned physical pages, where they sit, and why they cannot migrate.

    \b
    Examples:
      sudo pinspect pinned --zone Normal
      pinspect -c vmcore -s vmlinux zones
    """
    ctx.obj = Options(core, vmlinux, qemu, format_, output, no_header=no_header,
                      columns=parse_columns(columns), types=types)


for _command in all_commands():
    cli.add_command(_command.click_command)


def describe_error(e: BaseException) -> tuple[str, str] | None:
    """(message, hint) of an error the user gets as one line (exit code 2), or None for an
    internal error (exit code 3). The drgn plugin reports the same errors the same way."""
    if isinstance(e, PinspectError):
        return e.message, e.hint
    if isinstance(e, FaultError):
        if unread.last_file():
            return (f"cannot read kernel memory at {e.address:#x}: {unread.last_file()}",
                    REWRITE_HINT)
        return (f"cannot read kernel memory at {e.address:#x}: the dump is truncated or "
                "filtered, or the structure there is corrupted",
                "compare the dump's size with what was written; with makedumpfile, dump levels "
                "up to -d 31 keep what pinspect reads")
    if isinstance(e, ValueError | OSError):
        return str(e), ""
    return None


def main() -> None:
    """Entry point: run the CLI; errors become one line on stderr and exit code 2."""
    if not os.environ.get("PINSPECT_DEBUG"):
        # pinspect explains missing or mismatched debug info itself.
        logging.getLogger("drgn").setLevel(logging.CRITICAL)
    # A command keeps up to millions of objects (pages, records, rows) until it ends, and
    # makes few reference cycles: the collector's full passes over all of them cost 20-30% of
    # a 100 000-folio `pinned --owners` and find nothing. Young objects are still collected.
    gc.freeze()
    gc.set_threshold(10_000, 10, 1 << 30)  # (a full pass after 2^30 others: never)
    try:
        status = cli.main(prog_name="pinspect", complete_var="_PINSPECT_COMPLETE",
                          standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (``pinspect pinned | head``): stop quietly, like other tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (PinspectError, FaultError, ValueError, OSError) as e:
        message, hint = describe_error(e) or (str(e), "")
        # (messages may quote names from the target: escaped like the tables)
        click.echo(f"pinspect: error: {escape(' '.join(message.split()))}", err=True)
        if hint:
            click.echo(f"  hint: {escape_lines(hint)}", err=True)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - the user gets one line, not a traceback
        if os.environ.get("PINSPECT_DEBUG"):
            raise
        click.echo(f"pinspect: internal error: {type(e).__name__}: "
                   f"{escape(' '.join(str(e).split()))}", err=True)
        click.echo("  hint: rerun with PINSPECT_DEBUG=1 for a traceback and report it",
                   err=True)
        sys.exit(3)
    missing = incomplete()
    if missing is not None:
        click.echo("pinspect: warning: incomplete result: " + escape(
            "; ".join(x for x in (missing.line(), missing.file) if x)), err=True)
    if isinstance(status, int) and status:  # ctx.exit(N): pinned --exit-status
        sys.exit(status)
    if missing is not None:
        sys.exit(INCOMPLETE_EXIT_STATUS)
