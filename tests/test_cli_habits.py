"""What a command-line tool is expected to do: shell completion, examples in every --help,
--version with drgn's version, documented exit codes, --no-header/--columns, NO_COLOR."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys

import drgn
import pytest

from pinspect import __version__
from pinspect.commands import all_commands
from pinspect.render import Document, render, use_color, write
from tests.sampledata import SAMPLES_DIR

CORE = str(SAMPLES_DIR / "mainline-6.1.core")
DEBUG = str(SAMPLES_DIR / "mainline-6.1.debug")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pinspect", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def complete(shell: str, words: str, cword: str) -> subprocess.CompletedProcess[str]:
    """A completion request as the shell's script sends it (click's protocol)."""
    return run(env={"_PINSPECT_COMPLETE": f"{shell}_complete", "COMP_WORDS": words,
                    "COMP_CWORD": cword})


@pytest.mark.parametrize("shell,marker", [("bash", "complete -o nosort -F _pinspect_completion"),
                                          ("zsh", "#compdef pinspect"),
                                          ("fish", "complete --no-files --command pinspect")])
def test_completion_scripts(shell: str, marker: str) -> None:
    result = run(env={"_PINSPECT_COMPLETE": f"{shell}_source"})
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout and "_PINSPECT_COMPLETE" in result.stdout


def test_completion_of_a_partial_command_name() -> None:
    bash = complete("bash", "pinspect pinn", "1")
    assert bash.returncode == 0 and bash.stdout.split() == ["plain,pinned", "plain,pinner-log"]
    zsh = complete("zsh", "pinspect z", "1")
    assert zsh.stdout.splitlines()[:2] == ["plain", "zones"]
    fish = complete("fish", "pinspect pa", "pa")
    assert fish.stdout.startswith("plain,page\t")


def test_completion_of_options_and_their_values() -> None:
    assert complete("bash", "pinspect pinned --zone Nor", "3").stdout.split() == ["plain,Normal"]
    evidence = complete("bash", "pinspect pinned --evidence ", "3").stdout.split()
    assert evidence == ["plain,foll_pin", "plain,extra", "plain,pinner"]
    options = complete("bash", "pinspect zones --", "2").stdout.split()
    assert {"plain,--format", "plain,--no-header", "plain,--columns"} <= set(options)


@pytest.mark.parametrize("name", [None] + [c.name for c in all_commands()])
def test_every_help_ends_with_examples(name: str | None) -> None:
    result = run(*([name] if name else []), "--help")
    assert result.returncode == 0
    # click puts the options after the docstring: the docstring must end with its examples
    doc = result.stdout.split("\nOptions:")[0].rstrip()
    examples = doc.split("Examples:")
    assert len(examples) == 2, f"{name}: no 'Examples:' in --help"
    lines = [line.strip() for line in examples[1].splitlines() if line.strip()]
    assert lines and all(line.startswith(("pinspect ", "sudo pinspect ")) for line in lines)
    if name:
        assert any(f"pinspect {name}" in line or f" {name} " in line or line.endswith(name)
                   for line in lines)


def test_version_names_drgn() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith(f"pinspect {__version__} (drgn {drgn.__version__}, Python ")


def test_exit_codes() -> None:
    assert run("-c", CORE, "-s", DEBUG, "pinned").returncode == 0
    assert run("-c", CORE, "-s", DEBUG, "pinned", "--exit-status").returncode == 1
    none = run("-c", CORE, "-s", DEBUG, "pinned", "--pfn", "0x1-0x2", "--exit-status")
    assert none.returncode == 0 and "by zone (pages): none" in none.stdout
    assert run("pinned", "--no-such-option").returncode == 2  # usage
    assert run("-c", "/nonexistent", "info").returncode == 2  # target
    assert run("-c", CORE, "-s", DEBUG, "zones", "--columns", "nope").returncode == 2


def test_no_header_and_columns() -> None:
    table = run("-c", CORE, "-s", DEBUG, "pinned", "--columns", "pfn,pins,zone", "--no-header")
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows and all(len(r) == 3 and r[0].startswith("0x") for r in rows)
    data = run("-c", CORE, "-s", DEBUG, "--format", "csv", "--columns", "zone,node", "zones")
    parsed = list(csv.reader(io.StringIO(data.stdout)))
    assert parsed[0] == ["zone", "node"] and len(parsed) > 1
    bare = run("-c", CORE, "-s", DEBUG, "zones", "--format", "csv", "--columns", "zone,node",
               "--no-header")
    assert list(csv.reader(io.StringIO(bare.stdout))) == parsed[1:]


def test_render_columns_and_header() -> None:
    doc = Document(command="t", body={}, rows=[{"a": 1, "b": "x"}, {"a": 22, "b": None}],
                   columns=("a", "b"), notes=["", "2 rows"], table_title="title")
    assert render(doc, "table").splitlines()[0] == "title"
    out = io.StringIO()
    write(doc, "table", out, header=False, columns=["b", "a"])
    assert out.getvalue() == "x  1\n-  22\n"
    out = io.StringIO()
    write(doc, "csv", out, header=False, columns=["b"])
    assert out.getvalue() == 'x\n""\n'  # (csv quotes a lone empty field)
    with pytest.raises(ValueError, match="no column 'c' in 't' \\(columns: a,b\\)"):
        write(doc, "csv", io.StringIO(), columns=["c"])


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_use_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_color(Tty()) and not use_color(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(Tty())
    monkeypatch.setenv("NO_COLOR", "")  # empty means unset (no-color.org)
    assert use_color(Tty())
    monkeypatch.setenv("TERM", "dumb")
    assert not use_color(Tty())
