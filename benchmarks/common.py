"""Paths and helpers shared by the benchmark modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.realkernel.harness import cache_dir  # noqa: F401  (one definition, also for synth)

REPO = Path(__file__).resolve().parent.parent


def bench_dir() -> Path:
    """Where generated benchmark dumps live (never in the repository)."""
    d = cache_dir() / "bench"
    d.mkdir(parents=True, exist_ok=True)
    return d


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def make_sparse(path: Path) -> None:
    """Punch holes where *path* holds only zeros (an ELF dump of a big guest is mostly zeros)."""
    subprocess.run(["fallocate", "--dig-holes", str(path)], check=True)


def disk_usage(path: Path) -> int:
    """Bytes *path* occupies on disk (less than its size when sparse)."""
    return path.stat().st_blocks * 512
