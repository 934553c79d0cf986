"""Generated documentation stays in sync with the code: the man pages (pinspect/man/), the API
reference (docs/api.md); and the README's Python examples run."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import pathlib
import re
import shutil
import subprocess

import pytest

from pinspect import manpages
from tests.sampledata import open_sample

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_man_pages_are_up_to_date(tmp_path: pathlib.Path) -> None:
    manpages.write_pages(tmp_path)
    fresh = {p.name: p.read_text() for p in tmp_path.glob("*.1")}
    committed = {p.name: p.read_text() for p in manpages.MAN_DIR.glob("*.1")}
    assert fresh.keys() == committed.keys(), "run python3 -m pinspect.manpages"
    for name, text in fresh.items():
        assert committed[name] == text, f"{name} is out of date: run python3 -m pinspect.manpages"


def test_one_man_page_per_command() -> None:
    from pinspect.commands import all_commands

    names = {p.name for p in manpages.MAN_DIR.glob("*.1")}
    assert names == {"pinspect.1"} | {f"pinspect-{c.name}.1" for c in all_commands()}
    main = (manpages.MAN_DIR / "pinspect.1").read_text()
    for section in ("SYNOPSIS", "GLOBAL OPTIONS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT",
                    "SHELL COMPLETION", "EXAMPLES", "SEE ALSO"):
        assert f".SH {section}\n" in main


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_man_pages_render_without_warnings() -> None:
    for page in manpages.MAN_DIR.glob("*.1"):
        result = subprocess.run(["groff", "-ww", "-man", "-z", "-Tutf8", str(page)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and result.stderr == "", (page.name, result.stderr)


def test_api_reference_is_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location("gen_api", ROOT / "docs" / "gen_api.py")
    assert spec is not None and spec.loader is not None
    gen_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_api)
    assert (ROOT / "docs" / "api.md").read_text() == gen_api.render(), \
        "docs/api.md is out of date: run python3 docs/gen_api.py"


def python_blocks(path: pathlib.Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M)


def test_readme_python_examples_run() -> None:
    blocks = python_blocks(ROOT / "README.md")
    assert blocks, "README.md has no ```python example"
    prog = open_sample("mainline-6.1")
    for block in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, "README.md", "exec"), {"prog": prog, "__name__": "__readme__"})
        assert out.getvalue(), f"the example printed nothing:\n{block}"
