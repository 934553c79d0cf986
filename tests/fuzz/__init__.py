"""A mutation fuzzer for pinspect: mutate the bundled samples, run every command in every
format on them, classify what the user gets.

* :mod:`tests.fuzz.regions` finds, with drgn on the unmutated sample and its truth file,
  where the structures pinspect reads lie in the file (struct pages, page_ext, page_pinner
  records and buffers, the stack depot, CMA areas and bitmaps, zones, mem_section, VMCOREINFO,
  the ELF and kdump headers, bitmaps and page descriptors);
* :mod:`tests.fuzz.mutate` changes one of them (bits flipped, bytes replaced, an 8-byte word
  set to a hostile value or to its own address, zeroed, filled, terminal escapes written over
  a name) or cuts the file at a percentage of its length;
* :mod:`tests.fuzz.runner` runs each command of ``all_commands()`` (commands added later are
  included without a change here) in a format and classifies the outcome: ok, one-line error,
  partial result, internal error, traceback, signal, timeout, output that is not valid
  JSON/CSV, control characters that reached the terminal, a changed input file.

``python3 -m tests.fuzz --runs N`` runs it; ``tests/test_fuzz.py`` runs a quick one.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.fuzz.mutate import Mutation, apply, choose
from tests.fuzz.regions import SampleRegions, cached
from tests.fuzz.runner import FORMATS, Run, Tally, command_lines, execute
from tests.sampledata import SAMPLE_NAMES, sample_paths


def cache_dir() -> Path:
    base = os.environ.get("PINSPECT_CACHE") or os.path.expanduser("~/.cache/pinspect")
    return Path(base) / "fuzz"


def located_samples(names: list[str] | None = None) -> dict[str, SampleRegions]:
    """The located structures of the samples. They are found in a child process the first
    time: the runs are forked from this one, which must hold no drgn program (nor its
    threads and locks) when it forks."""
    names = names or SAMPLE_NAMES
    code = ("import sys; from pathlib import Path; from tests.fuzz.regions import cached\n"
            "for name in sys.argv[2:]: cached(name, Path(sys.argv[1]))")
    subprocess.run([sys.executable, "-c", code, str(cache_dir()), *names], check=True,
                   cwd=Path(__file__).resolve().parent.parent.parent)
    return {name: cached(name, cache_dir()) for name in names}


def write_mutated(mutation: Mutation, located: SampleRegions, directory: str) -> str:
    core, _ = sample_paths(mutation.sample)
    data = apply(mutation, core.read_bytes(), located)
    path = os.path.join(directory, f"{str(mutation).replace(':', '_')}.core")
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o444)  # read-only, as dumps often are: pinspect must not need more
    return path


def plan(runs: int, seed: int, regions: dict[str, SampleRegions], directory: str
         ) -> tuple[list[Run], int]:
    """*runs* command runs: each mutated file gets every command once, formats in turn."""
    rng = random.Random(seed)
    out: list[Run] = []
    files = 0
    seen: set[Mutation] = set()
    turn = 0
    while len(out) < runs:
        mutation = choose(regions, rng)
        if mutation in seen:
            continue
        seen.add(mutation)
        located = regions[mutation.sample]
        path = write_mutated(mutation, located, directory)
        files += 1
        _, debug = sample_paths(mutation.sample)
        for args in command_lines(located.pfns, located.cma_names):
            out.append(Run(str(mutation), path, str(debug), args, FORMATS[turn % len(FORMATS)]))
            turn += 1
        turn += 1  # the next file starts with another format
    return out[:runs], files


def fuzz(runs: int, seed: int = 1, jobs: int = 2, timeout: float = 30.0,
         use_subprocess: bool = False, progress: Callable[[int, int], None] | None = None,
         checkpoint: Callable[[Tally, int], None] | None = None,
         ) -> tuple[Tally, int]:
    """Plan and execute *runs* runs; returns the tally and the number of mutated files.
    *checkpoint* gets the tally so far every 100 runs (a long run cut short keeps them)."""
    regions = located_samples()
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="pinspect-fuzz-") as directory:
        planned, files = plan(runs, seed, regions, directory)
        for i, outcome in enumerate(execute(planned, jobs, timeout, use_subprocess)):
            tally.add(outcome)
            if progress is not None:
                progress(i + 1, len(planned))
            if checkpoint is not None and (i + 1) % 100 == 0:
                checkpoint(tally, files)
    return tally, files


def replay(text: str, args: list[str]) -> int:
    """Write the file of mutation *text* to a temporary directory and run *args* on it."""
    mutation = Mutation.parse(text)
    regions = located_samples([mutation.sample])
    directory = tempfile.mkdtemp(prefix="pinspect-fuzz-replay-")
    path = write_mutated(mutation, regions[mutation.sample], directory)
    _, debug = sample_paths(mutation.sample)
    command = [sys.executable, "-m", "pinspect", "-c", path, "-s", str(debug), *args]
    print(" ".join(command))
    if args:
        return os.spawnv(os.P_WAIT, sys.executable, command)
    return 0
