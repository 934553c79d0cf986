"""The wheel: what it holds (the CLI, the drgn plugin entry point, the man pages in the package
and under share/man/man1) and that pinspect runs from it, not from the checkout."""

from __future__ import annotations

import configparser
import os
import pathlib
import subprocess
import sys
import zipfile

import pytest

from pinspect import manpages
from tests.sampledata import SAMPLES_DIR

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                             "-w", str(out), str(ROOT)],
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and "No module named" in result.stderr:
        pytest.skip(f"cannot build a wheel here: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr
    (path,) = out.glob("pinspect-*.whl")
    return path


def test_the_wheel_holds_the_cli_the_plugin_and_the_man_pages(wheel: pathlib.Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(z.read(entry_points).decode())
        pages = {p.name: p.read_bytes() for p in manpages.MAN_DIR.glob("*.1")}
        for name, text in pages.items():
            assert z.read(f"pinspect/man/{name}") == text
            (data,) = [n for n in names if n.endswith(f".data/data/share/man/man1/{name}")]
            assert z.read(data) == text
    assert parser["console_scripts"]["pinspect"] == "pinspect.cli:main"
    assert parser["drgn.plugins"]["pinspect"] == "pinspect.drgn_plugin"
    assert "pinspect/__main__.py" in names and not any(n.startswith("tests/") for n in names)


def test_pinspect_runs_from_the_wheel(wheel: pathlib.Path, tmp_path: pathlib.Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import pinspect; print(pinspect.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert where.stdout.startswith(str(target)), where.stdout + where.stderr
    result = subprocess.run([sys.executable, "-m", "pinspect", "-c",
                             str(SAMPLES_DIR / "mainline-6.1.core"), "-s",
                             str(SAMPLES_DIR / "mainline-6.1.debug"), "pinned", "--columns",
                             "pfn", "--no-header"], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0].startswith("0x")
