"""pinspect's commands inside drgn: a plugin for drgn's command framework.

Installed with pinspect as the ``pinspect`` entry point of the ``drgn.plugins`` group, so in
``drgn -c vmcore -s vmlinux`` (or ``sudo drgn``) the commands run on the session's ``prog``,
with the options and output of the command line::

    >>> %pinspect pinned --zone Normal --limit 10
    >>> %pinned --evidence foll_pin --format json > pins.json
    >>> %page 0x101c51 | less
    >>> report = _           # the last command's result: a PinnedReport, list[ZonePins], ...

Every command registered in :mod:`pinspect.commands` is reachable as ``%pinspect NAME`` and,
unless drgn or another plugin already has a command of that name, as ``%NAME``. The target
options ``-c``, ``-s`` and ``--qemu`` belong to the command line: inside drgn the session's
program is used and never reopened. Disable the plugin with ``DRGN_DISABLE_PLUGINS=pinspect``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
from drgn import Program, ProgramFlags

from pinspect.commands import Command, all_commands
from pinspect.commands.common import check_needs, global_param_names, merged_options
from pinspect.render import escape, escape_lines

try:
    from drgn.commands import (
        DEFAULT_COMMAND_NAMESPACE,
        CommandArgumentError,
        CommandError,
        ParsedCommand,
        parse_shell_command,
    )
except ImportError:  # a drgn without the command framework: the Python API still works
    DEFAULT_COMMAND_NAMESPACE = None  # type: ignore[assignment]

TARGET_OPTIONS = {"core": "-c/--core", "vmlinux": "-s/--vmlinux", "qemu": "--qemu"}

INSIDE_DRGN = ("Inside drgn the command runs on the session's program; -c, -s and --qemu do "
               "not apply. The result is returned (the REPL keeps it in _).")


def _is_kernel(prog: Program) -> bool:
    return bool(prog.flags & ProgramFlags.IS_LINUX_KERNEL)


def _help(command: click.Command, name: str) -> str:
    ctx = click.Context(command, info_name=name)
    return command.get_help(ctx)


class PinspectCommand:
    """One pinspect command as a drgn command (:class:`drgn.commands.Command`)."""

    def __init__(self, command: Command) -> None:
        self.command = command

    def description(self) -> str:
        return self.command.click_command.get_short_help_str(limit=80)

    def format_usage(self) -> str:
        ctx = click.Context(self.command.click_command, info_name=self.command.name)
        return " ".join([self.command.name,
                         *self.command.click_command.collect_usage_pieces(ctx)])

    def format_help(self, *, indent: str = "") -> str:
        text = _help(self.command.click_command, self.command.name) + "\n\n" + INSIDE_DRGN
        return "\n".join(indent + line if line else line for line in text.splitlines())

    def enabled(self, prog: Program) -> bool:
        return _is_kernel(prog)

    def parse(self, source: str, /) -> ParsedCommand[Sequence[str]]:
        return parse_shell_command(source)

    def run(self, prog: Program, name: str, args: Sequence[str], /, **kwargs: Any) -> Any:
        return run_in_drgn(prog, self.command, list(args), name)


class PinspectDispatcher:
    """``%pinspect NAME [OPTIONS]``: every pinspect command under one drgn command."""

    def description(self) -> str:
        return "find pinned physical pages (pinspect): %pinspect COMMAND [OPTIONS]"

    def format_usage(self) -> str:
        return "pinspect COMMAND [OPTIONS]"

    def format_help(self, *, indent: str = "") -> str:
        lines = ["Run a pinspect command on this program: %pinspect COMMAND [OPTIONS].", "",
                 "Commands:"]
        width = max(len(c.name) for c in all_commands())
        lines += [f"  {c.name:<{width}}  {c.click_command.get_short_help_str(limit=70)}"
                  for c in all_commands()]
        lines += ["", "%pinspect COMMAND --help shows a command's options. " + INSIDE_DRGN]
        return "\n".join(indent + line if line else line for line in lines)

    def enabled(self, prog: Program) -> bool:
        return _is_kernel(prog)

    def parse(self, source: str, /) -> ParsedCommand[Sequence[str]]:
        return parse_shell_command(source)

    def run(self, prog: Program, name: str, args: Sequence[str], /, **kwargs: Any) -> Any:
        commands = {c.name: c for c in all_commands()}
        if not args or args[0] in ("-h", "--help"):
            print(self.format_help())
            return None
        if args[0] not in commands:
            raise CommandArgumentError(f"pinspect: no command {args[0]!r}; commands: "
                                       + ", ".join(commands))
        return run_in_drgn(prog, commands[args[0]], list(args[1:]), f"pinspect {args[0]}")


def run_in_drgn(prog: Program, command: Command, args: list[str], name: str) -> Any:
    """Parse *args* with the command's click options and run its body on *prog*."""
    from pinspect.cli import describe_error  # (the CLI module imports every command)

    click_command = command.click_command
    try:
        ctx = click_command.make_context(name, args)
    except click.exceptions.Exit:  # --help
        return None
    except click.ClickException as e:
        raise CommandArgumentError(f"{name}: {e.format_message()}") from e
    names = global_param_names()
    params = {k: v for k, v in ctx.params.items() if k not in names}
    given = {k: v for k, v in ctx.params.items() if k in names}
    used = [flag for key, flag in TARGET_OPTIONS.items() if given.get(key)]
    if used:
        raise CommandArgumentError(
            f"{name}: {', '.join(used)} choose the target of the pinspect command line; inside "
            "drgn the command runs on this session's program")
    if command.run is None:
        raise CommandError(f"{name}: this command does not run inside drgn yet")
    options = merged_options(ctx, **given)
    try:
        check_needs(command.name, prog)
        return command.run(prog, options, **params)
    except click.ClickException as e:
        raise CommandArgumentError(f"{name}: {e.format_message()}") from e
    except BrokenPipeError:
        raise  # drgn's pipeline handling deals with it (`%pinned | head`)
    except Exception as e:
        described = describe_error(e)
        if described is None:
            raise
        message, hint = described
        # (messages may quote names from the target: escaped as the CLI does)
        raise CommandError(escape(message) + (f"\n  hint: {escape_lines(hint)}" if hint
                                              else "")) from e


def register_commands(namespace: Any = None, bare_names: bool = True) -> list[str]:
    """Register ``pinspect`` and (where free) each command's own name in *namespace* (drgn's
    default namespace); return the names registered."""
    namespace = namespace or DEFAULT_COMMAND_NAMESPACE
    if namespace is None:
        return []
    known = getattr(namespace, "_commands", {})
    registered = []
    if "pinspect" not in known:
        namespace.register("pinspect", PinspectDispatcher())
        registered.append("pinspect")
    if bare_names:
        for command in all_commands():
            existing = known.get(command.name)
            if existing is None or isinstance(existing, PinspectCommand):
                namespace.register(command.name, PinspectCommand(command))
                registered.append(command.name)
    return registered


# drgn imports every plugin before it calls any hook: ``pinspect`` is registered on import,
# the commands' own names when a program is set, once drgn's and the other plugins' commands
# are known (theirs win).
register_commands(bare_names=False)


def drgn_prog_set(prog: Program) -> None:
    """drgn plugin hook: called when *prog* gets its target."""
    register_commands()
