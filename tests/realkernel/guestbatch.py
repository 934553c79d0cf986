"""Run several pinspect command lines in one Python process (inside a real-kernel guest, where
starting Python and importing drgn and numpy takes seconds under TCG).

    python3 guestbatch.py JOBS.json STATUS.json

JOBS.json: a list of {"args": [...]}, each a pinspect command line without the program name.
Each runs through pinspect.cli.main, as the ``pinspect`` command would; STATUS.json gets, per
job, its exit status, seconds and stderr. The target is opened once per distinct set of
arguments (core, vmlinux, QEMU socket, type source) and the drgn Program shared by the jobs
that name the same target, as in a drgn session with pinspect's plugin: under TCG, loading
vmlinux's DWARF in the guest takes tens of seconds. Each command still reads the live kernel
itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from typing import Any


def run(args: list[str]) -> dict[str, Any]:
    from pinspect.cli import main

    err = io.StringIO()
    status: object = 0
    t0 = time.monotonic()
    sys.argv = ["pinspect", *args]
    with contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as e:
            status = e.code
    if status is None:
        status = 0
    elif not isinstance(status, int):
        err.write(f"{status}\n")
        status = 1
    return {"status": status, "seconds": time.monotonic() - t0, "stderr": err.getvalue()}


def share_programs() -> None:
    """Make pinspect's commands open each distinct target once (see the module docstring)."""
    import pinspect.commands.common as common

    opened: dict[tuple[object, ...], Any] = {}
    open_program = common.open_program

    def open_once(**kwargs: Any) -> Any:
        key = tuple(sorted((k, repr(v)) for k, v in kwargs.items()))
        if key not in opened:
            opened[key] = open_program(**kwargs)
        return opened[key]

    common.open_program = open_once  # type: ignore[assignment]


def main(argv: list[str]) -> int:
    jobs = json.loads(open(argv[0]).read())
    t0 = time.monotonic()
    import pinspect.cli  # noqa: F401  (the imports once, timed apart from the commands)

    share_programs()

    results = []
    imported = time.monotonic() - t0
    for job in jobs:
        results.append(run(job["args"]))
        print(f"{results[-1]['seconds']:6.1f}s exit {results[-1]['status']}: "
              f"pinspect {' '.join(job['args'])}", flush=True)
    print(f"imports {imported:.1f}s", flush=True)
    with open(argv[1], "w") as f:
        json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
