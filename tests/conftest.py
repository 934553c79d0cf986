"""Shared test helpers (keep minimal: several owners)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.sampledata import SAMPLES_DIR


class SamplePaths(NamedTuple):
    core: Path
    debug: Path
    truth: Path


@pytest.fixture
def sample() -> Callable[[str], SamplePaths]:
    """sample("mainline-6.1") -> paths of a bundled synthetic dump (see
    vmcore-samples/README.md); skips the test when the sample is missing."""

    def paths(name: str) -> SamplePaths:
        p = SamplePaths(
            SAMPLES_DIR / f"{name}.core",
            SAMPLES_DIR / f"{name}.debug",
            SAMPLES_DIR / f"{name}.truth.json",
        )
        if not all(x.exists() for x in p):
            pytest.skip(f"sample {name} is not built")
        return p

    return paths
