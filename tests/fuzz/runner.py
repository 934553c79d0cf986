"""Run pinspect commands on mutated samples and classify what the user gets.

Each run is a child forked from this (warmed) process that calls :func:`pinspect.cli.main`
with its own argv, standard output and error redirected to files: as the installed script
would behave, without paying Python's and drgn's start-up for every run. ``subprocess=True``
runs ``python3 -m pinspect`` instead.

Classes, worst first (:data:`BAD` must never happen):

* ``signal``: killed by a signal (SIGBUS, SIGSEGV, ...);
* ``timeout``: still running after the time limit (killed);
* ``traceback``: a Python traceback on stderr;
* ``internal``: exit status 3 (``internal error``);
* ``bad_output``: exit 0/1/4 but the JSON does not parse or the CSV rows do not match the
  header;
* ``unescaped``: a control character (ESC, BEL, C1) from the target reached the output;
* ``wrote_input``: the dump file changed;
* ``messy_error``: exit 2 without the one ``pinspect: error:`` line (and optional hint);
* ``error``: exit 2, one line with a hint (the ``error_no_hint`` count tells those without);
* ``partial``: a result with a warning on stderr, or exit status 4 (incomplete);
* ``ok``: a result, nothing on stderr.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

BAD = ("signal", "timeout", "traceback", "internal", "bad_output", "unescaped", "wrote_input",
       "messy_error")
CLASSES = (*BAD, "error", "partial", "ok")
FORMATS = ("table", "json", "csv")
# What must not reach a terminal: C0 controls but tab and newline, DEL, C1 controls.
_RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Run:
    """One command line on one file."""

    case: str  # the mutation (see tests.fuzz.mutate.Mutation), for replay
    core: str
    debug: str
    args: tuple[str, ...]  # the command and its arguments
    fmt: str


@dataclass
class Outcome:
    run: Run
    cls: str
    status: int | None
    stdout: str
    stderr: str
    seconds: float
    hint: bool = True  # an exit-2 error came with a hint


@dataclass
class Tally:
    """Counts per class, the runs of bad classes, and the distinct one-line errors."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))
    bad: list[Outcome] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)  # normalized message -> count
    no_hint: dict[str, int] = field(default_factory=dict)
    runs: int = 0
    seconds: float = 0.0

    def add(self, outcome: Outcome) -> None:
        self.runs += 1
        self.seconds += outcome.seconds
        self.counts[outcome.cls] += 1
        if outcome.cls in BAD:
            self.bad.append(outcome)
        if outcome.cls == "error":
            first = outcome.stderr.strip().splitlines()[-1 if not outcome.hint else 0]
            key = _normalize(first)
            self.errors[key] = self.errors.get(key, 0) + 1
            if not outcome.hint:
                self.no_hint[key] = self.no_hint.get(key, 0) + 1


def _normalize(line: str) -> str:
    line = re.sub(r"/\S+", "PATH", line)
    line = re.sub(r"0x[0-9a-f]+", "0xN", line)
    return re.sub(r"\b\d+\b", "N", line)[:160]


def classify(run: Run, status: int | None, signalled: int | None, timed_out: bool,
             stdout: str, stderr: str, changed: bool, seconds: float) -> Outcome:
    """What the user got from one run."""
    def out(cls: str, hint: bool = True) -> Outcome:
        return Outcome(run, cls, status, stdout, stderr, seconds, hint)

    if timed_out:
        return out("timeout")
    if signalled:
        return out("signal")
    if "Traceback (most recent call last)" in stderr:
        return out("traceback")
    if status == 3:
        return out("internal")
    if changed:
        return out("wrote_input")
    if _RAW_CONTROL.search(stdout) or _RAW_CONTROL.search(stderr):
        return out("unescaped")
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("pinspect: error:")]
    if status == 2:
        if lines and lines[0].startswith("Usage: ") and lines[-1].startswith("Error: "):
            return out("error")  # click's usage error: usage, "Try ... --help", the error
        others = [line for line in lines if not line.startswith(("pinspect: error:", "  hint:",
                                                                 "pinspect: warning:", " "))]
        if len(errors) != 1 or others:
            return out("messy_error")
        return out("error", hint=any(line.startswith("  hint:") for line in lines))
    if status not in (0, 1, 4):
        return out("messy_error")
    if not _valid_output(run.fmt, stdout):
        return out("bad_output")
    if status == 4 or lines:
        return out("partial")
    return out("ok")


def _valid_output(fmt: str, stdout: str) -> bool:
    if fmt == "json":
        try:
            doc = json.loads(stdout)
        except ValueError:
            return False
        return isinstance(doc, dict) and doc.get("schema_version") == 1
    if fmt == "csv":
        try:
            rows = list(csv.reader(io.StringIO(stdout)))
        except csv.Error:
            return False
        return bool(rows) and all(len(r) == len(rows[0]) for r in rows)
    return True


# More command lines than the bare command: the options that read more structures (page_owner
# and page_pinner stacks, the reverse map and holders, CMA blockers, an allocation's
# prediction, the map). "{pfn}" is a pinned pfn of the sample's truth, "{cma}" a CMA area of
# the sample (a line naming a CMA area is left out where the sample has none).
VARIANTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "pinned": (("--stacks",), ("--owners",), ("--stacks", "--owners", "--limit", "5")),
    "page": (("--phys", "{phys}"),),
    "stacks": (("--by", "free", "--top", "0"), ("--no-default-ignores",)),
    "zones": (("--map",),),
    "cma": (("--blockers",), ("{cma}", "--try", "64", "--align", "2"), ("{cma}", "--map")),
}


def command_lines(pfns: list[int], cma_names: list[str] | None = None
                  ) -> list[tuple[str, ...]]:
    """Every registered command (``all_commands()``: the ones that land later too), with a
    value for each required argument (a pfn of the sample's truth), then its
    :data:`VARIANTS` whose options it has."""
    from pinspect.commands import all_commands

    lines = []
    pfn = hex(pfns[0]) if pfns else "0x1000"
    values = {"{pfn}": pfn, "{phys}": hex(int(pfn, 16) << 12),
              "{cma}": cma_names[0] if cma_names else None}
    for command in all_commands():
        params = command.click_command.params
        required = [pfn for p in params if p.param_type_name == "argument" and p.required]
        options = {o for p in params for o in getattr(p, "opts", ())}
        lines.append((command.name, *required))
        for variant in VARIANTS.get(command.name, ()):
            found = [values.get(a, a) for a in variant]
            args = [a for a in found if a is not None]
            if len(args) < len(found) or not all(a in options for a in args
                                                  if a.startswith("--")):
                continue  # no CMA area here, or the command has no such option (yet)
            positional = [] if "{phys}" in variant else required
            lines.append((command.name, *positional, *args))
    return lines


def _argv(run: Run) -> list[str]:
    return ["-c", run.core, "-s", run.debug, "--format", run.fmt, *run.args]


def _child(run: Run, out_path: str, err_path: str) -> None:
    """In the forked child: run the CLI and exit with its status (never returns)."""
    status = 99
    try:
        out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        err_fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        # (under pytest, sys.stdout and sys.stderr are capture objects, not fds 1 and 2)
        sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
        sys.stdin = open(os.devnull)
        os.environ.pop("PINSPECT_DEBUG", None)
        sys.argv = ["pinspect", *_argv(run)]
        from pinspect.cli import main

        try:
            main()
            status = 0
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - a traceback is a finding, printed for the report
        import traceback

        traceback.print_exc()
        status = 98
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
        os._exit(status)


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def execute(runs: Iterable[Run], jobs: int = 2, timeout: float = 30.0,
            use_subprocess: bool = False) -> Iterator[Outcome]:
    """Run *runs*, *jobs* at a time, yielding each outcome as it ends.

    The runs are forked from a fresh worker process (``python3 -m tests.fuzz.runner``) that
    has imported pinspect and opened nothing: a process that has used drgn (pytest's, after
    other tests) holds locks and threads a forked child can deadlock on."""
    request = {"runs": [vars(run) for run in runs], "jobs": jobs, "timeout": timeout,
               "subprocess": use_subprocess}
    root = Path(__file__).resolve().parent.parent.parent
    with subprocess.Popen([sys.executable, "-m", "tests.fuzz.runner"], cwd=root,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as worker:
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.write(json.dumps(request))
        worker.stdin.close()
        for line in worker.stdout:
            raw = json.loads(line)
            raw["run"] = Run(**{**raw["run"], "args": tuple(raw["run"]["args"])})
            yield Outcome(**raw)
    if worker.returncode:
        raise RuntimeError(f"fuzz worker exited with status {worker.returncode}")


def _serve() -> None:
    """The worker: read the request on stdin, write one JSON outcome per line."""
    request = json.load(sys.stdin)
    runs = [Run(**{**r, "args": tuple(r["args"])}) for r in request["runs"]]
    out = sys.stdout
    for outcome in _execute_here(runs, request["jobs"], request["timeout"],
                                 request["subprocess"]):
        record = vars(outcome).copy()
        record["run"] = vars(outcome.run)
        out.write(json.dumps(record) + "\n")
        out.flush()


def _execute_here(runs: Iterable[Run], jobs: int, timeout: float,
                  use_subprocess: bool) -> Iterator[Outcome]:
    """:func:`execute` in this process (which must hold no drgn program)."""
    workdir = tempfile.mkdtemp(prefix="pinspect-fuzz-run-")
    pending = iter(enumerate(runs))
    active: dict[int, tuple[Run, float, str, str, str, subprocess.Popen[bytes] | None]] = {}
    done = False
    if not use_subprocess:
        import pinspect.cli  # noqa: F401 - imported once, before the forks
    try:
        while active or not done:
            while not done and len(active) < jobs:
                try:
                    i, run = next(pending)
                except StopIteration:
                    done = True
                    break
                out_path = os.path.join(workdir, f"{i}.out")
                err_path = os.path.join(workdir, f"{i}.err")
                digest = _digest(run.core)
                if use_subprocess:
                    with open(out_path, "wb") as o, open(err_path, "wb") as e:
                        env = dict(os.environ)
                        env.pop("PINSPECT_DEBUG", None)
                        proc = subprocess.Popen([sys.executable, "-m", "pinspect", *_argv(run)],
                                                stdout=o, stderr=e, env=env)
                    active[proc.pid] = (run, time.monotonic(), out_path, err_path, digest, proc)
                else:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    pid = os.fork()
                    if pid == 0:
                        _child(run, out_path, err_path)
                    active[pid] = (run, time.monotonic(), out_path, err_path, digest, None)
            if not active:
                break
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                now = time.monotonic()
                for other, (_run, started, *_rest) in list(active.items()):
                    if now - started > timeout:
                        os.kill(other, signal.SIGKILL)
                        os.waitpid(other, 0)
                        yield _finish(active.pop(other), None, timed_out=True)
                time.sleep(0.005)
                continue
            if pid in active:
                yield _finish(active.pop(pid), wait_status, timed_out=False)
    finally:
        for pid in active:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        for name in os.listdir(workdir):
            os.unlink(os.path.join(workdir, name))
        os.rmdir(workdir)


def _finish(entry: tuple[Run, float, str, str, str, subprocess.Popen[bytes] | None],
            wait_status: int | None, timed_out: bool) -> Outcome:
    run, started, out_path, err_path, digest, proc = entry
    if proc is not None:
        proc.returncode = -1  # reaped by waitpid above
    seconds = time.monotonic() - started
    status = signalled = None
    if wait_status is not None:
        if os.WIFSIGNALED(wait_status):
            signalled = os.WTERMSIG(wait_status)
        else:
            status = os.WEXITSTATUS(wait_status)
    if status in (98, 99):  # the child's own traceback (see _child)
        signalled = None
    stdout = Path(out_path).read_text(errors="replace")
    stderr = Path(err_path).read_text(errors="replace")
    os.unlink(out_path)
    os.unlink(err_path)
    changed = _digest(run.core) != digest
    return classify(run, status, signalled, timed_out, stdout, stderr, changed, seconds)


if __name__ == "__main__":
    _serve()
