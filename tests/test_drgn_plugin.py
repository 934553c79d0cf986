"""The drgn plugin: pinspect's commands inside a drgn session, on the session's program, with
the options and output of the command line."""

from __future__ import annotations

import importlib.metadata
import json
import pathlib
import subprocess
import sys

import pytest

from pinspect import drgn_plugin
from pinspect.commands import all_commands
from tests.sampledata import SAMPLES_DIR

# drgn's command framework as pinspect uses it (parse_shell_command, ParsedCommand) came after
# drgn 0.0.33; with an older drgn the plugin registers nothing and the Python API still works.
needs_framework = pytest.mark.skipif(drgn_plugin.DEFAULT_COMMAND_NAMESPACE is None,
                                     reason="this drgn has no command framework")

CORE = str(SAMPLES_DIR / "mainline-6.1.core")
DEBUG = str(SAMPLES_DIR / "mainline-6.1.debug")
SEPARATOR = "----8<----"

# The same command lines on the CLI and in drgn (after `%` / run_command).
COMMAND_LINES = [
    "pinned",
    "pinned --zone Normal --evidence foll_pin --sort pins --limit 5",
    "pinned --format json",
    "pinned --format csv --pfn 0x1000-0x1fff",
    "zones",
    "info --format json",
    "page 0x1441",
]


def drgn(code: str) -> subprocess.CompletedProcess[str]:
    """Run *code* with `drgn -c CORE -s DEBUG -e` (the plugin loads as installed)."""
    return subprocess.run([sys.executable, "-m", "drgn", "-q", "-c", CORE, "-s", DEBUG, "-e", code],
                          capture_output=True, text=True, timeout=180)


def cli(line: str) -> str:
    result = subprocess.run([sys.executable, "-m", "pinspect", "-c", CORE, "-s", DEBUG,
                             *line.split()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_plugin_is_an_installed_entry_point() -> None:
    points = importlib.metadata.entry_points(group="drgn.plugins")
    assert [p.value for p in points if p.name == "pinspect"] == ["pinspect.drgn_plugin"]


def test_every_command_has_a_body_that_takes_a_program() -> None:
    for command in all_commands():
        assert command.run is not None, f"{command.name}: register(Needs(...), run)"


@needs_framework
def test_drgn_runs_the_commands_with_the_cli_output() -> None:
    code = "\n".join(
        ["from drgn.commands import run_command", "import sys"]
        + [f"run_command(prog, {line!r}); sys.stdout.flush(); print({SEPARATOR!r})"
           for line in COMMAND_LINES]
        + [f"run_command(prog, {'pinspect ' + COMMAND_LINES[0]!r})"])
    result = drgn(code)
    assert result.returncode == 0, result.stderr
    outputs = result.stdout.split(SEPARATOR + "\n")
    assert len(outputs) == len(COMMAND_LINES) + 1
    for line, output in zip(COMMAND_LINES, outputs, strict=False):
        assert output == cli(line), line
    assert outputs[-1] == outputs[0]  # %pinspect pinned == %pinned


@needs_framework
def test_results_redirection_and_errors_in_drgn(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "pins.json"
    code = f"""
from drgn.commands import run_command, CommandError
report = run_command(prog, "pinned --evidence foll_pin --format json > {out}")
print("result", type(report).__name__, len(report.pages))
for line in ("pinned -c /x", "pinned --zone DMA", "pinned --pfn zz", "pinspect nosuch",
             "page 0x1441 --phys -s vmlinux"):
    try:
        run_command(prog, line)
    except CommandError as e:
        print("error", type(e).__name__, str(e).splitlines()[0])
print(run_command(prog, "pinned --help") is None)
"""
    result = drgn(code)
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    lines = result.stdout.splitlines()
    assert lines[0] == f"result PinnedReport {len(doc['pages'])}"
    assert all("foll_pin" in p["evidence"] for p in doc["pages"]) and doc["pages"]
    errors = [line for line in lines if line.startswith("error ")]
    assert errors[0].startswith("error CommandArgumentError pinned: -c/--core choose the target")
    assert errors[1] == "error CommandError no zone named DMA on this system"
    assert "bad pfn range" in errors[2] and "CommandArgumentError" in errors[2]
    assert "no command 'nosuch'" in errors[3]
    assert "-s/--vmlinux" in errors[4]
    assert "Examples:" in result.stdout and lines[-1] == "True"


@needs_framework
def test_registration_leaves_other_commands_alone() -> None:
    from drgn.commands import CommandNamespace

    namespace = CommandNamespace()
    namespace.register("info", object())  # type: ignore[arg-type]  # someone else's `info`
    names = drgn_plugin.register_commands(namespace)
    assert "pinspect" in names and "pinned" in names and "info" not in names
    assert drgn_plugin.register_commands(namespace) == [c for c in names if c != "pinspect"]
