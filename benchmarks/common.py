"""Paths and helpers shared by the benchmark modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """``$PINSPECT_CACHE`` (default ``~/.cache/pinspect``), as the real-kernel harness uses."""
    return Path(os.environ.get("PINSPECT_CACHE", Path.home() / ".cache" / "pinspect"))


def bench_dir() -> Path:
    """Where generated benchmark dumps live (never in the repository)."""
    d = cache_dir() / "bench"
    d.mkdir(parents=True, exist_ok=True)
    return d


def harness():  # type: ignore[no-untyped-def]
    """The real-kernel harness module (tests/realkernel/harness.py), imported read-only."""
    path = str(REPO / "tests" / "realkernel")
    if path not in sys.path:
        sys.path.insert(0, path)
    import harness as h  # noqa: PLC0415

    return h


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def make_sparse(path: Path) -> None:
    """Punch holes where *path* holds only zeros (an ELF dump of a big guest is mostly zeros)."""
    subprocess.run(["fallocate", "--dig-holes", str(path)], check=True)


def disk_usage(path: Path) -> int:
    """Bytes *path* occupies on disk (less than its size when sparse)."""
    return path.stat().st_blocks * 512
