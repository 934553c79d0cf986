"""Where the bundled synthetic dumps are (vmcore-samples/), for every test that uses them."""

from __future__ import annotations

from pathlib import Path

import drgn

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "vmcore-samples"
# Every sample that has a ground truth, by name ("mainline-6.1", "android-d", ...).
SAMPLE_NAMES = sorted(p.name.removesuffix(".truth.json") for p in SAMPLES_DIR.glob("*.truth.json"))


def sample_paths(name: str) -> tuple[Path, Path]:
    """The dump and debug file of sample *name*."""
    return SAMPLES_DIR / f"{name}.core", SAMPLES_DIR / f"{name}.debug"


def open_sample(name: str) -> drgn.Program:
    """Sample *name* opened with pinspect, debug info loaded."""
    from pinspect.target import open_program

    core, debug = sample_paths(name)
    return open_program(core=str(core), vmlinux=[str(debug)])
