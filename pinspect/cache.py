"""pinspect's cache directory, where what is made once is kept for reuse (rebuilt dumps)."""

from __future__ import annotations

import os

__all__ = ["cache_dir"]


def cache_dir() -> str:
    """``$PINSPECT_CACHE`` or ``~/.cache/pinspect``."""
    env = os.environ.get("PINSPECT_CACHE")
    if env:
        return env
    return os.path.join(os.path.expanduser("~"), ".cache", "pinspect")
