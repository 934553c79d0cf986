"""Commands register themselves with what they need; the CLI takes the same list."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pinspect
from pinspect.cli import cli
from pinspect.commands import DUMP, LIVE, Needs, all_commands
from pinspect.errors import FeatureMissing
from tests.sampledata import open_sample, sample_paths


def test_the_cli_has_every_registered_command() -> None:
    names = [c.name for c in all_commands()]
    assert names == sorted(names) and {"info", "pinned", "zones", "page"} <= set(names)
    assert set(cli.commands) == set(names)  # type: ignore[attr-defined]


def test_needs_are_checked() -> None:
    prog = open_sample("mainline-6.1-owner-off")
    kernel = pinspect.probe(prog)
    Needs().check("x", prog, kernel, "DWARF")
    Needs(target=DUMP, features=("cma",)).check("x", prog, kernel, "DWARF")
    with pytest.raises(FeatureMissing, match="'x' works on a running kernel only"):
        Needs(target=LIVE).check("x", prog, kernel, "DWARF")
    with pytest.raises(FeatureMissing, match="'x' needs page_owner, which is off here") as e:
        Needs(features=("page_owner",)).check("x", prog, kernel, "DWARF")
    assert "page_owner=on" in e.value.hint
    with pytest.raises(FeatureMissing, match="needs page_pinner, which is absent here"):
        Needs(features=("page_pinner",)).check("x", prog, kernel, "DWARF")
    with pytest.raises(FeatureMissing, match="needs BTF type information, this target has DWARF"):
        Needs(type_sources=("BTF",)).check("x", prog, kernel, "DWARF")


def test_help_lists_every_command() -> None:
    result = subprocess.run([sys.executable, "-m", "pinspect", "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    for command in all_commands():
        assert f"  {command.name} " in result.stdout


def test_a_command_runs_through_the_registry() -> None:
    core, debug = sample_paths("mainline-6.1")
    result = subprocess.run([sys.executable, "-m", "pinspect", "-c", str(core), "-s", str(debug),
                             "info"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "page_owner" in result.stdout
