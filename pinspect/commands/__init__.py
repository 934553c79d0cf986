"""One module per CLI command. Each registers its click command with :func:`register` and
declares what it needs from the target (:class:`Needs`); the CLI, ``--help`` and any other
front end take the same list from :func:`all_commands`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
from drgn import Program, ProgramFlags

from pinspect.errors import FeatureMissing
from pinspect.features import PRESENT
from pinspect.kernel import Kernel

ANY_TARGET = "any"
LIVE = "live"
DUMP = "dump"


@dataclass(frozen=True)
class Needs:
    """What a command needs from its target, checked once the target is open and before any
    other work."""

    target: str = ANY_TARGET  # ANY_TARGET, LIVE or DUMP
    features: tuple[str, ...] = ()  # kernel features (``info``'s names) that must be present
    type_sources: tuple[str, ...] = ("DWARF", "BTF")  # type sources (TypeSource.name) it works with

    def check(self, command: str, prog: Program, kernel: Kernel, type_source: str) -> None:
        """Raise :class:`FeatureMissing` (one line with a hint) if the target falls short."""
        live = bool(prog.flags & ProgramFlags.IS_LIVE)
        if self.target == LIVE and not live:
            raise FeatureMissing(f"'{command}' works on a running kernel only",
                                 "drop -c, or use --qemu SOCKET for a QEMU guest")
        if self.target == DUMP and live:
            raise FeatureMissing(f"'{command}' works on a dump only", "give one with -c VMCORE")
        if type_source not in self.type_sources:
            raise FeatureMissing(
                f"'{command}' needs {' or '.join(self.type_sources)} type information, "
                f"this target has {type_source}",
                "pass the kernel's vmlinux with full DWARF with -s PATH")
        for name in self.features:
            try:
                feature = kernel.feature(name)
            except KeyError:
                feature = None
            if feature is None or feature.state != PRESENT:
                detail = feature.detail if feature is not None else "not found in this kernel"
                raise FeatureMissing(f"'{command}' needs {name}, which is "
                                     f"{feature.state if feature else 'absent'} here", detail)


@dataclass(frozen=True)
class Command:
    """A registered command: its click command, what it needs, and its body.

    *run* is the body without the target handling: ``run(prog, options, **params)`` takes an
    open ``drgn.Program``, the global options (:class:`~pinspect.commands.common.Options`:
    format, output, ...) and the command's own parsed options (click's parameter names), writes
    the output and returns the library's result. The click command opens the target and calls
    it; the drgn plugin (:mod:`pinspect.drgn_plugin`) calls it on the session's program.
    """

    name: str
    click_command: click.Command
    needs: Needs
    run: Callable[..., Any] | None = None


_REGISTRY: dict[str, Command] = {}


def register(needs: Needs, run: Callable[..., Any] | None = None
             ) -> Callable[[click.Command], click.Command]:
    """Register a click command (decorator, outermost) with what it *needs* and its body
    *run* (see :class:`Command`)."""
    def add(command: click.Command) -> click.Command:
        assert command.name is not None
        _REGISTRY[command.name] = Command(command.name, command, needs, run)
        return command
    return add


def all_commands() -> list[Command]:
    """Every command of this package, by name (importing each module registers it)."""
    for module in pkgutil.iter_modules(__path__):
        if module.name != "common":
            importlib.import_module(f"{__name__}.{module.name}")
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def needs_of(name: str) -> Needs:
    """What the registered command *name* needs."""
    if name not in _REGISTRY:
        all_commands()
    return _REGISTRY[name].needs
