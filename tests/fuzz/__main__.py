"""``python3 -m tests.fuzz``: the mutation fuzzer (see tests/fuzz/__init__.py).

    python3 -m tests.fuzz --runs 300                 # the quick run (as the test suite does)
    python3 -m tests.fuzz --runs 6000 --json out.json  # the long run of the README
    python3 -m tests.fuzz --replay 'mainline-6.1:zone:word:1234' page
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from tests.fuzz import fuzz, replay
from tests.fuzz.runner import BAD, CLASSES, Tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300, help="command runs (default 300)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per run")
    parser.add_argument("--subprocess", action="store_true",
                        help="run python3 -m pinspect instead of forking")
    parser.add_argument("--json", metavar="FILE", help="write the tally as JSON")
    parser.add_argument("--replay", metavar="MUTATION",
                        help="write the mutated file of MUTATION and print the command lines")
    parser.add_argument("args", nargs="*", help="with --replay: a command line to run")
    options = parser.parse_args(argv)
    if options.replay:
        return replay(options.replay, options.args)
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total} runs", end="", file=sys.stderr, flush=True)

    def save(tally: Tally, cases: int) -> None:
        if options.json:
            write_json(options.json, tally, cases, time.monotonic() - started, options.seed)

    tally, cases = fuzz(options.runs, seed=options.seed, jobs=options.jobs,
                        timeout=options.timeout, use_subprocess=options.subprocess,
                        progress=progress, checkpoint=save)
    elapsed = time.monotonic() - started
    print(file=sys.stderr)
    print(f"{tally.runs} runs on {cases} mutated files in {elapsed:.0f} s "
          f"(seed {options.seed}, {options.jobs} jobs)")
    for cls in CLASSES:
        print(f"  {cls:12} {tally.counts[cls]}")
    no_hint = sum(tally.no_hint.values())
    print(f"  (errors without a hint: {no_hint})")
    for message, n in sorted(tally.errors.items(), key=lambda kv: -kv[1])[:40]:
        print(f"    {n:5}  {message}")
    for outcome in tally.bad[:50]:
        print(f"BAD {outcome.cls}: {outcome.run.case} {' '.join(outcome.run.args)} "
              f"--format {outcome.run.fmt} (status {outcome.status})")
        tail = (outcome.stderr.strip().splitlines() or [""])[-1]
        print(f"    {tail[:200]}")
    save(tally, cases)
    return 1 if any(tally.counts[c] for c in BAD) else 0


def write_json(path: str, tally: Tally, cases: int, seconds: float, seed: int) -> None:
    """The tally as JSON (written every 100 runs and at the end)."""
    with open(path + ".tmp", "w") as f:
        json.dump({"runs": tally.runs, "files": cases, "seconds": round(seconds),
                   "seed": seed, "counts": tally.counts, "errors": tally.errors,
                   "no_hint": tally.no_hint,
                   "bad": [{"case": o.run.case, "args": o.run.args, "format": o.run.fmt,
                            "class": o.cls, "status": o.status,
                            "stderr": o.stderr[-2000:]} for o in tally.bad]},
                  f, indent=1)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    sys.exit(main())
