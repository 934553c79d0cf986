"""The record, owner, CMA and start-up benchmarks (issues 11, 12, 13, 15) on real dumps.

    python3 -m benchmarks.commands [--repeat 3]            # the manypins dump (makes it first)
    python3 -m benchmarks.commands --startup               # BTF vs DWARF start-up, dev dumps
    python3 -m benchmarks.commands --startup --qmp deb612  # ... and live over QMP (boots it)

**Commands** (``benchmarks.manypins``: cma61, 8 GiB, ``cma=4G``, page_owner on, 50 processes
pinning 2000 small pages each): ``pinspect pinned``, ``pinned --stacks``, ``stacks`` and
``pinned --owners`` (table output, to a file), each in a fresh process, best of ``--repeat``
by wall time, with its CPU time (user + system: what the machine's load does not inflate) and
peak RSS; ratios against ``pinned`` alone. Per page and per unique stack: the extra CPU time
of ``--stacks`` over ``pinned``, divided by the pages and by the distinct stack depot handles.

**CMA scan**: in one process, ``cma_report`` of the 4 GiB area (the struct pages of its free
bitmap ranges, blockers with their page_owner task and stack) against ``find_pinned`` over the
area's pfns (with page_owner records, as ``pinned`` runs it), best of ``--repeat``; rates are
the area's pages per second.

**Start-up**: ``pinspect info`` and ``pinspect pinned`` with ``--btf`` (no vmlinux: BTF
from memory, kallsyms) and with ``-s vmlinux`` (DWARF), ``--repeat`` fresh processes each,
BTF and DWARF runs interleaved (after one unmeasured run of each), best and median wall time
and median CPU time; and ``find_pinned`` (the scan rate) on a BTF and a DWARF program in one
process, in turn (over QMP: one process after the other), best of ``--repeat`` (at least 5)
each. On the dev dumps of the kernels with BTF (deb61, deb612, deb72, cma72: cma61's dev
dump is of the kernel before it had BTF) and, with ``--qmp KERNEL``, on that guest over QMP.
The children compile pinspect's modules once into the benchmark directory
(``PYTHONPYCACHEPREFIX``), as an installed package has them compiled, whatever
``PYTHONDONTWRITEBYTECODE`` says.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import manypins
from benchmarks.common import REPO, bench_dir, log

PYTHON = sys.executable
DEV = Path(os.environ.get("PINSPECT_DEV", Path.home() / ".cache" / "pinspect" / "dev"))
COMMANDS = [("pinned",), ("pinned", "--stacks"), ("stacks",), ("pinned", "--owners")]


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_cli(target: list[str], command: tuple[str, ...]) -> dict[str, float]:
    """One ``pinspect`` run: wall, CPU (user + sys) and peak RSS of the child."""
    out = f"/tmp/pinspect-bench-{os.getpid()}.out"
    cmd = [PYTHON, "-m", "pinspect", *target, *command, "-o", out]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=child_env())
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err[-2000:]}")
    size = os.path.getsize(out)
    os.unlink(out)
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "rss_mib": usage.ru_maxrss / 1024, "out_bytes": size}


def child_env() -> dict[str, str]:
    """The environment of a measured child: compiled modules kept in the benchmark directory
    (written by the first run), as an installed package has them."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(bench_dir() / "pycache")
    return env


def best(runs: list[dict[str, float]]) -> dict[str, float]:
    return min(runs, key=lambda r: r["wall_s"])


LIB = r"""
import json, sys, time
from pinspect.target import open_program
from pinspect.report import find_pinned
from pinspect.cmascan import cma_report
from pinspect.cma import cma_areas
from pinspect.kernel import probe
core, vmlinux, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
prog = open_program(core, [vmlinux])
kernel = probe(prog)
area = max(cma_areas(kernel), key=lambda a: a.count)
out = {"area": area.name, "area_pages": area.count}
pinned = find_pinned(prog)
out["folios"] = len(pinned.pages)
out["pages"] = sum(p.nr_pages for p in pinned.pages)
out["handles"] = len({p.owner.handle for p in pinned.pages if p.owner is not None})
out["with_owner"] = sum(1 for p in pinned.pages if p.owner is not None)
cma, scan = [], []
for _ in range(repeat):
    t = time.perf_counter(); r = cma_report(prog, area.name); cma.append(time.perf_counter() - t)
    t = time.perf_counter()
    p = find_pinned(prog, pfn_range=(area.base_pfn, area.end_pfn))  # with owners, as `pinned`
    scan.append(time.perf_counter() - t)
a = r.areas[0]
out.update(cma_s=min(cma), cma_read=a.scanned, cma_skipped=a.skipped, blockers=len(a.blockers),
           blocked_pages=a.blocked_pages, pinned_s=min(scan),
           pinned_covered=p.scanned + p.skipped_free, pinned_in_area=len(p.pages))
print(json.dumps(out))
"""


def library(core: str, vmlinux: str, repeat: int) -> dict[str, Any]:
    out = subprocess.run([PYTHON, "-c", LIB, core, vmlinux, str(repeat)], cwd=REPO,
                         capture_output=True, text=True, env=child_env())
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def commands(repeat: int) -> dict[str, Any]:
    entry = manypins.paths() or manypins.make(50, 2000, 8, "4G", manypins.default_out())
    vmlinux = entry["vmlinux"]
    result: dict[str, Any] = {"dump": entry, "targets": {}}
    for kind in ("elf", "kdump"):
        if kind not in entry:
            continue
        target = ["-c", entry[kind], "-s", vmlinux]
        rows = {}
        for command in COMMANDS:
            runs = [run_cli(target, command) for _ in range(repeat)]
            rows[" ".join(command)] = dict(best(runs), runs=runs, load=load())
            log(f"{kind} {' '.join(command)}: {rows[' '.join(command)]['wall_s']:.2f} s")
        lib = library(entry[kind], vmlinux, repeat)
        result["targets"][kind] = {"commands": rows, "library": lib, "load": load()}
    return result


def commands_table(result: dict[str, Any]) -> str:
    lines = ["| dump | command | wall s (best) | CPU s | peak RSS MiB | wall / pinned | "
             "CPU / pinned | RSS / pinned | load |", "|---|---|---|---|---|---|---|---|---|"]
    for kind, t in result["targets"].items():
        base = t["commands"]["pinned"]
        for name, r in t["commands"].items():
            lines.append(f"| {kind} | `{name}` | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | "
                         f"{r['rss_mib']:.0f} | {r['wall_s'] / base['wall_s']:.2f} | "
                         f"{r['cpu_s'] / base['cpu_s']:.2f} | "
                         f"{r['rss_mib'] / base['rss_mib']:.2f} | {r['load']} |")
    lines.append("")
    for kind, t in result["targets"].items():
        lib, c = t["library"], t["commands"]
        extra = c["pinned --stacks"]["cpu_s"] - c["pinned"]["cpu_s"]
        owners = c["pinned --owners"]["cpu_s"] - c["pinned"]["cpu_s"]
        lines.append(
            f"- {kind}: {lib['folios']} pinned folios ({lib['pages']} pages, "
            f"{lib['with_owner']} with a page_owner record, {lib['handles']} distinct "
            f"allocation stacks); `--stacks` adds {extra / lib['folios'] * 1e6:.1f} µs CPU "
            f"per folio, {extra / max(lib['handles'], 1) * 1e3:.2f} ms per unique stack; "
            f"`--owners` adds {owners / lib['folios'] * 1e6:.1f} µs per folio")
        rate_cma = lib["area_pages"] / lib["cma_s"]
        rate_pin = lib["pinned_covered"] / lib["pinned_s"]
        lines.append(
            f"- {kind}: CMA area `{lib['area']}` of {lib['area_pages']} pages: `cma_report` "
            f"{lib['cma_s'] * 1e3:.1f} ms ({lib['cma_read']} struct pages read, "
            f"{lib['cma_skipped']} skipped; {lib['blockers']} blockers) = "
            f"{rate_cma / 1e6:.1f} M pages/s; `find_pinned` over the same pfns "
            f"{lib['pinned_s'] * 1e3:.1f} ms = {rate_pin / 1e6:.1f} M pages/s "
            f"({lib['pinned_in_area']} pinned folios there)")
    return "\n".join(lines)


STARTUP_KERNELS = ("deb61", "deb612", "deb72", "cma72")  # (cma61's dev dump: no BTF)
STARTUP_COMMANDS = ("info", "pinned")

SCAN = r"""
import json, sys, time
from pinspect.report import find_pinned
from pinspect.target import open_program
from pinspect.typesource import BTF, DWARF
target, repeat, labels = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
progs = {label: open_program(core=target.get("core"), qemu=target.get("qemu"),
                             vmlinux=target["vmlinux"] if label == "dwarf" else [],
                             types=DWARF if label == "dwarf" else BTF) for label in labels}
out = {label: {"folios": len(find_pinned(prog).pages)}  # (unmeasured: caches warm)
       for label, prog in progs.items()}
times = {label: [] for label in labels}
for _ in range(repeat):
    for label, prog in progs.items():
        t = time.perf_counter()
        find_pinned(prog)
        times[label].append(time.perf_counter() - t)
for label in labels:
    out[label]["best_s"] = min(times[label])
print(json.dumps(out))
"""


def scan(target: dict[str, Any], repeat: int) -> dict[str, Any]:
    """``find_pinned`` over all zones with BTF and with DWARF, best of *repeat* each: two
    programs in one process, measured in turn; over QMP, which serves one client at a time,
    one process after the other."""
    groups = [["btf"], ["dwarf"]] if "qemu" in target else [["btf", "dwarf"]]
    found: dict[str, Any] = {}
    for labels in groups:
        out = subprocess.run([PYTHON, "-c", SCAN, json.dumps(target), str(repeat),
                              ",".join(labels)], cwd=REPO, capture_output=True, text=True,
                             env=child_env())
        if out.returncode:
            raise RuntimeError(out.stderr[-3000:])
        found.update(json.loads(out.stdout.splitlines()[-1]))
    return found


def startup_targets(kernels: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
    """(name, {core, vmlinux}) for the dev dumps of *kernels*."""
    out = []
    for kernel in kernels:
        p = DEV / kernel / "paths.json"
        if not p.exists():
            continue
        e = json.loads(p.read_text())
        for kind in ("elf", "kdump"):
            out.append((f"{kernel} {kind}", {"core": e[kind], "vmlinux": [e["vmlinux"]]}))
    return out


def startup(repeat: int, qmp: str | None,
            kernels: tuple[str, ...] = STARTUP_KERNELS) -> list[dict[str, Any]]:
    rows = []

    def measure(name: str, target: dict[str, Any]) -> None:
        where = ["-c", target["core"]] if "core" in target else ["--qemu", target["qemu"]]
        sources = {"btf": [*where, "--btf"], "dwarf": [*where, "-s", *target["vmlinux"]]}
        r: dict[str, Any] = {"target": name}
        for command in STARTUP_COMMANDS:
            for args in sources.values():  # (unmeasured: modules compiled, cache warm)
                run_cli(args, (command,))
            for _ in range(repeat):
                for label, args in sources.items():
                    x = run_cli(args, (command,))
                    r.setdefault(f"{command} {label}", []).append(x["wall_s"])
                    r.setdefault(f"{command} {label} cpu", []).append(x["cpu_s"])
        scanned = scan(target, max(repeat, 5))
        for label in sources:
            r[f"scan {label}"] = scanned[label]
        r["load"] = load()
        if r["scan btf"]["folios"] != r["scan dwarf"]["folios"]:
            log(f"{name}: find_pinned found {r['scan btf']['folios']} folios with BTF, "
                f"{r['scan dwarf']['folios']} with DWARF")
        log(f"{name}: info btf {min(r['info btf']):.2f} s, dwarf {min(r['info dwarf']):.2f} s; "
            f"pinned btf {min(r['pinned btf']):.2f} s, dwarf {min(r['pinned dwarf']):.2f} s")
        rows.append(r)

    for name, target in startup_targets(kernels):
        measure(name, target)
    if qmp:
        from benchmarks import realdump

        with realdump.boot(qmp, None, bench_dir() / f"startup-{qmp}") as guest:
            measure(f"{qmp} live QMP", {"qemu": str(guest.qmp_drgn_path),
                                        "vmlinux": [str(guest.kernel.vmlinux)]})
    return rows


def startup_table(rows: list[dict[str, Any]]) -> str:
    head = ["target"]
    for command in STARTUP_COMMANDS:
        head += [f"`{command}` --btf s best / median", f"`{command}` DWARF s best / median",
                 f"`{command}` CPU s --btf / DWARF (median)"]
    head += ["`find_pinned` ms --btf / DWARF (best)", "load"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["target"]]
        for c in STARTUP_COMMANDS:
            med = statistics.median
            cells += [f"{min(r[c + ' btf']):.2f} / {med(r[c + ' btf']):.2f}",
                      f"{min(r[c + ' dwarf']):.2f} / {med(r[c + ' dwarf']):.2f}",
                      f"{med(r[c + ' btf cpu']):.2f} / {med(r[c + ' dwarf cpu']):.2f}"]
        cells += [f"{r['scan btf']['best_s'] * 1e3:.0f} / {r['scan dwarf']['best_s'] * 1e3:.0f}",
                  r["load"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--startup", action="store_true", help="the start-up rows instead")
    ap.add_argument("--qmp", metavar="KERNEL", help="with --startup: also live over QMP")
    ap.add_argument("--dumps", default=",".join(STARTUP_KERNELS), metavar="K1,K2",
                    help="with --startup: the dev dumps of these kernels (default: %(default)s; "
                    "'' for none)")
    args = ap.parse_args()
    out = bench_dir() / ("startup.json" if args.startup else "commands.json")
    if args.startup:
        rows = startup(args.repeat, args.qmp, tuple(k for k in args.dumps.split(",") if k))
        out.write_text(json.dumps(rows, indent=1) + "\n")
        print(startup_table(rows))
    else:
        result = commands(args.repeat)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(commands_table(result))
    log(f"results in {out}")


if __name__ == "__main__":
    main()
