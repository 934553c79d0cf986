"""pytest wiring of the real-kernel tier; the fixture and the helpers live in rksupport.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.realkernel import rksupport
from tests.realkernel.rksupport import booted  # noqa: F401  (the session fixture, registered here)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if rksupport.HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.realkernel)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if rksupport._timings:
        terminalreporter.write_sep("-", "real-kernel timings (s)")
        for name, t in rksupport._timings.items():
            for k, v in t.items():
                terminalreporter.write_line(f"{name}: {k}: {v:.1f}")
