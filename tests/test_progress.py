"""The progress bar: on stderr when it is a terminal, silent otherwise."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from tests.sampledata import SAMPLES_DIR

SAMPLES = SAMPLES_DIR
ARGS = ["-m", "pinspect", "-c", str(SAMPLES / "mainline-6.1.core"),
        "-s", str(SAMPLES / "mainline-6.1.debug"), "pinned", "--format", "json"]


def test_progress_on_a_terminal() -> None:
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, *ARGS], stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    stdout, _ = proc.communicate(timeout=120)
    shown = b""
    while True:
        try:
            data = os.read(controller, 4096)
        except OSError:
            break
        if not data:
            break
        shown += data
    os.close(controller)
    assert proc.returncode == 0
    assert b"scanning pages [" in shown and b"100%" in shown
    assert b"scanning" not in stdout


def test_no_progress_when_not_a_terminal() -> None:
    result = subprocess.run([sys.executable, *ARGS], capture_output=True, timeout=120)
    assert result.returncode == 0
    assert result.stderr == b""
