"""The command line on bad input: one line with a hint, exit code 2, never a traceback."""

import os
import pathlib
import subprocess
import sys

import pytest

from pinspect.commands.common import parse_pfn_range
from tests.sampledata import SAMPLES_DIR

COMMANDS = ("info", "pinned", "zones", "page", "cma")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pinspect", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("pinspect 0.1.0 (drgn ")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_shows_an_example(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0
    assert "Examples:" in result.stdout
    assert "pinspect " in result.stdout.split("Examples:")[1]


def test_not_a_dump(tmp_path: pathlib.Path) -> None:
    path = os.path.join(str(tmp_path), "notes.txt")
    with open(path, "w") as f:
        f.write("hello, this is not a kernel dump\n" * 10)
    result = run("-c", path, "pinned")
    assert result.returncode == 2
    assert result.stderr.startswith("pinspect: error: ")
    assert "not a kernel dump" in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_dump_file() -> None:
    result = run("-c", "/nonexistent/vmcore", "info")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "/nonexistent/vmcore" in result.stderr


def test_live_without_kcore_or_root() -> None:
    if os.access("/proc/kcore", os.R_OK):
        pytest.skip("/proc/kcore is readable here; the in-guest real-kernel test covers it")
    result = run("pinned")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    expected = "root" if os.path.exists("/proc/kcore") else "/proc/kcore does not exist"
    assert expected in result.stderr


def test_bad_pfn_range_is_a_usage_error() -> None:
    result = run("pinned", "--pfn", "zzz")
    assert result.returncode == 2
    assert "bad pfn range" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("text,expected", [
    ("0x100-0x1ff", (0x100, 0x200)),
    ("4096-4096", (4096, 4097)),
    ("0x10", (0x10, 0x11)),
])
def test_parse_pfn_range(text: str, expected: tuple[int, int]) -> None:
    assert parse_pfn_range(text) == expected


@pytest.mark.parametrize("text", ["", "a-b", "0x20-0x10"])
def test_parse_pfn_range_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_pfn_range(text)


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    samples = SAMPLES_DIR
    # `pinspect pinned | head -1`: the pipe closes after one line.
    proc = subprocess.Popen([sys.executable, "-m", "pinspect", "-c",
                             str(samples / "mainline-6.1.core"), "-s",
                             str(samples / "mainline-6.1.debug"), "pinned", "--format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == b"{\n"
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 1)
    assert stderr == ""


def test_no_dwarf_and_no_btf() -> None:
    """A synthetic sample without its .debug: no DWARF, and its VMCOREINFO has no kallsyms to
    find BTF with."""
    core = str(SAMPLES_DIR / "mainline-6.1.core")
    for extra in ((), ("--btf",)):
        result = run("-c", core, *extra, "info", env={"DEBUGINFOD_URLS": ""})
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        lines = result.stderr.splitlines()
        # one error line, then the hint (with the packages to install, several lines)
        assert lines[1].startswith("  hint: ") and all(x.startswith("  ") for x in lines[1:])
        assert "cannot locate kallsyms" in lines[0]
        assert "-s PATH" in lines[1]
    result = run("-c", core, "--dwarf", "info", env={"DEBUGINFOD_URLS": ""})
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "pinspect: error: no debug info found for kernel 6.1.0-pinspect")


def test_btf_with_vmlinux_is_a_usage_error() -> None:
    core = SAMPLES_DIR / "mainline-6.1.core"
    result = run("-c", str(core), "-s", str(core.with_suffix(".debug")), "--btf", "zones")
    assert result.returncode == 2
    assert "-s gives DWARF, but --btf asks for the kernel's own BTF" in result.stderr
