"""The fuzzer's quick run: a few hundred runs of every command, in every format, on mutated
samples (tests/fuzz). None may end in an internal error, a traceback, a signal, a timeout,
invalid JSON or CSV, a raw control character, a changed input file or a messy error."""

from __future__ import annotations

from tests.fuzz import fuzz
from tests.fuzz.runner import BAD

QUICK_RUNS = 300


def test_quick_fuzz_run_has_no_bad_outcome() -> None:
    tally, files = fuzz(QUICK_RUNS, seed=16, jobs=2, timeout=30)
    assert tally.runs == QUICK_RUNS and files > 0
    bad = {cls: tally.counts[cls] for cls in BAD if tally.counts[cls]}
    details = "\n".join(f"{o.cls}: python3 -m tests.fuzz --replay '{o.run.case}' -- "
                        f"{' '.join(o.run.args)} --format {o.run.fmt}\n    "
                        f"{(o.stderr.strip().splitlines() or [''])[-1][:300]}"
                        for o in tally.bad[:20])
    assert not bad, f"{bad}\n{details}"
    # Every class of result is reached: the mutations are neither all harmless nor all fatal.
    assert tally.counts["ok"] and tally.counts["error"]
