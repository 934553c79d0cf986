"""Run the pinspect performance benchmark and print the table (README.md, Performance).

    python3 -m benchmarks                 # synthetic 4 Mi and 16 Mi page dumps, 16 GiB guest
    python3 -m benchmarks --live          # also a live 16 GiB guest over QMP
    python3 -m benchmarks --core C --vmlinux V   # just one dump

For every target it measures, each in a fresh subprocess: (a) ``find_pinned`` over all zones
and the ``pinspect pinned`` CLI, (b) drgn's ``for_each_page`` loop reading flags and
``_refcount``, sampled and extrapolated, (c) a bare ``prog.read`` of the same struct page bytes
in 4 MiB chunks. (a) and (c) are best of ``--repeat`` runs, after one unmeasured read pass
that brings the dump into the page cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import kcore, realdump, synth
from benchmarks.common import REPO, bench_dir, disk_usage, log

PYTHON = sys.executable  # the interpreter itself, not a pyenv shim (start-up is measured)


@dataclass
class Target:
    name: str
    core: str | None
    vmlinux: str
    qemu: str | None = None
    expected: set[tuple[int, int, str]] | None = None  # (pfn, nr_pages, evidence) if known
    note: str = ""
    results: dict[str, Any] = field(default_factory=dict)
    runner: Callable[[str, int], dict[str, Any]] | None = None  # runs a measurement elsewhere
    warm: bool = True  # do an unmeasured read pass first


def measure(mode: str, target: Target, sample: int = 0) -> dict[str, Any]:
    if target.runner is not None:
        t = time.perf_counter()
        remote = target.runner(mode, sample)
        remote["process_s"] = time.perf_counter() - t
        return remote
    cmd = [PYTHON, "-m", "benchmarks.measure", mode, "--vmlinux", target.vmlinux]
    if target.core:
        cmd += ["--core", target.core]
    if target.qemu:
        cmd += ["--qemu", target.qemu]
    if sample:
        cmd += ["--sample", str(sample)]
    env = dict(os.environ, PATH=f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if out.returncode:
        raise RuntimeError(f"{mode} on {target.name} failed: {out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    result["process_s"] = time.perf_counter() - t
    return result


def best(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return min(runs, key=lambda r: r[key])


def run_target(target: Target, repeat: int, sample: int) -> dict[str, Any]:
    if target.warm:
        log(f"{target.name}: warming the page cache")
        measure("read", target)
    r: dict[str, Any] = {}
    r["read_runs"] = [measure("read", target) for _ in range(repeat)]
    r["pinspect_runs"] = [measure("pinspect", target) for _ in range(repeat)]
    r["cli_runs"] = [measure("cli", target) for _ in range(max(1, repeat // 2))]
    log(f"{target.name}: drgn loop, {sample} pages")
    r["drgn"] = measure("drgn", target, sample)
    lib = best(r["pinspect_runs"], "scan_s")
    read = best(r["read_runs"], "scan_s")
    cli = best(r["cli_runs"], "wall_s")
    loop = r["drgn"]
    found = {(pfn, nr, ",".join(ev)) for pfn, nr, ev in lib.pop("found")}
    for run in r["pinspect_runs"]:
        run.pop("found", None)
    pages = lib["pages"]
    summary = {
        "pages": pages,
        "startup_s": lib["startup_s"],
        "open_s": lib["open_s"],
        "probe_s": lib["probe_s"],
        "a_s": lib["scan_s"],
        "a_rate": pages / lib["scan_s"],
        "cli_s": cli["wall_s"],
        "b_rate": loop["sampled"] / loop["sample_s"],
        "b_s": loop["scan_s"],
        "c_s": read["scan_s"],
        "c_rate": read["pages"] / read["scan_s"],
        "rss_a_mib": lib["peak_rss_kib"] / 1024,
        "rss_a_open_mib": lib["rss_after_open_kib"] / 1024,
        "rss_cli_mib": cli["child_peak_rss_kib"] / 1024,
        "rss_b_mib": loop["peak_rss_kib"] / 1024,
        "rss_c_mib": read["peak_rss_kib"] / 1024,
        "folios": lib["folios"],
        "cli_folios": cli["folios"],
    }
    summary["a_over_b"] = summary["a_rate"] / summary["b_rate"]
    summary["a_over_c"] = summary["a_rate"] / summary["c_rate"]
    if target.expected is not None:
        summary["missing"] = len(target.expected - found)
        summary["unexpected"] = len(found - target.expected)
    r["summary"] = summary
    log(f"{target.name}: a {summary['a_rate'] / 1e6:.1f} M pages/s, "
        f"b {summary['b_rate'] / 1e6:.2f} M pages/s, c {summary['c_rate'] / 1e6:.1f} M pages/s")
    return r


def synth_target(mpages: int, pins: int) -> Target:
    path = synth.generate(mpages, pins)
    manifest = json.loads(path.with_suffix(".json").read_text())
    expected = {(e["pfn"], e["nr_pages"], ",".join(e["evidence"]))
                for e in manifest["injected"] + manifest["original_pinned"]}
    return Target(f"synthetic ELF, {mpages} Mi pages, {pins} pins", str(path),
                  manifest["vmlinux"], expected=expected,
                  note=f"{path.stat().st_size >> 30} GiB sparse, "
                       f"{disk_usage(path) >> 20} MiB on disk")


def real_targets(gib: int) -> list[Target]:
    entry = realdump.paths("deb61", gib) or realdump.make("deb61", gib)
    elf = Path(entry["elf"])
    return [
        Target(f"real 6.1 guest {gib} GiB, ELF", str(elf), entry["vmlinux"],
               note=f"{elf.stat().st_size >> 30} GiB sparse, {disk_usage(elf) >> 20} MiB on disk"),
        Target(f"real 6.1 guest {gib} GiB, kdump-zlib", entry["kdump"], entry["vmlinux"],
               note=f"{Path(entry['kdump']).stat().st_size >> 20} MiB"),
    ]


def live_target(gib: int, repeat: int, sample: int) -> dict[str, Any]:
    """Boot the guest again and measure over QMP while it runs."""
    results: dict[str, Any] = {}
    entry = realdump.paths("deb61", gib) or realdump.make("deb61", gib)
    workdir = bench_dir() / f"live-deb61-{gib}g"
    with realdump.boot("deb61", gib, workdir) as guest:
        target = Target(f"live 6.1 guest {gib} GiB, QMP", None, entry["vmlinux"],
                        qemu=str(guest.qmp_drgn_path), note="QEMU TCG, guest running")
        results = run_target(target, repeat, sample)
        results["name"] = target.name
        results["note"] = target.note
    return results


def kcore_target(repeat: int, sample: int) -> dict[str, Any]:
    """Boot the custom 6.1 guest and measure against /proc/kcore inside it."""
    with kcore.guest_runner() as runner:
        target = Target("live 6.1 guest 4.5 GiB, /proc/kcore in the guest", None,
                        kcore.vmlinux(), runner=runner, warm=False,
                        note="pinspect, drgn and Python run inside the TCG guest")
        results = run_target(target, repeat, sample)
        results["name"] = target.name
        results["note"] = target.note
    return results


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| target | pages | start-up s | open + debug info s | probe s | (a) find_pinned s | "
            "(a) M pages/s | CLI s | (b) drgn loop M pages/s | (b) extrapolated s | "
            "(c) prog.read M pages/s | a/b | a/c | peak RSS MiB a (after open) / CLI / b / c | "
            "pinned folios | load |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for row in rows:
        s = row["summary"]
        check = f"{s['folios']}"
        if "missing" in s:
            check += " (all expected)" if not s["missing"] and not s["unexpected"] else \
                f" ({s['missing']} missing, {s['unexpected']} unexpected)"
        lines.append(
            f"| {row['name']} | {s['pages'] / 2**20:.2f} Mi | {s['startup_s']:.2f} | "
            f"{s['open_s']:.2f} | {s['probe_s']:.2f} | {s['a_s']:.3f} | "
            f"{s['a_rate'] / 1e6:.1f} | {s['cli_s']:.2f} | "
            f"{s['b_rate'] / 1e6:.3f} | {s['b_s']:.0f} | {s['c_rate'] / 1e6:.1f} | "
            f"{s['a_over_b']:.0f}x | {s['a_over_c']:.2f} | "
            f"{s['rss_a_mib']:.0f} ({s['rss_a_open_mib']:.0f}) / {s['rss_cli_mib']:.0f} / "
            f"{s['rss_b_mib']:.0f} / {s['rss_c_mib']:.0f} | {check} | {row['load']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python3 -m benchmarks",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--core", help="measure only this dump (with --vmlinux)")
    ap.add_argument("--vmlinux")
    ap.add_argument("--mpages", type=int, nargs="*", default=[4, 16],
                    help="synthetic dump sizes in Mi pages (default 4 16)")
    ap.add_argument("--pins", type=int, nargs="*", default=[1000],
                    help="pins injected into each synthetic dump (default 1000)")
    ap.add_argument("--extra-pins", type=int, default=100_000,
                    help="also a smallest-size synthetic dump with this many pins (0: none)")
    ap.add_argument("--real-gib", type=int, default=16, help="real guest size (0: skip)")
    ap.add_argument("--live", action="store_true", help="also a live guest over QMP")
    ap.add_argument("--kcore", action="store_true",
                    help="also /proc/kcore inside a guest (the custom 6.1 kernel, slow)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sample", type=int, default=200_000, help="pages for the drgn loop")
    ap.add_argument("--json", help="write all results here too")
    args = ap.parse_args()

    targets: list[Target] = []
    if args.core:
        if not args.vmlinux:
            ap.error("--core needs --vmlinux")
        targets.append(Target(os.path.basename(args.core), args.core, args.vmlinux))
    else:
        for mpages in args.mpages:
            for pins in args.pins:
                targets.append(synth_target(mpages, pins))
        if args.extra_pins and args.mpages:
            targets.append(synth_target(min(args.mpages), args.extra_pins))
        if args.real_gib:
            targets.extend(real_targets(args.real_gib))
    rows = []
    failed = []
    for target in targets:
        try:
            row = run_target(target, args.repeat, args.sample)
        except RuntimeError as e:
            log(str(e))
            failed.append(target.name)
            continue
        row.update(name=target.name, note=target.note, load=load())
        rows.append(row)
    if args.live:
        try:
            row = live_target(args.real_gib or 16, args.repeat, min(args.sample, 50_000))
            row["load"] = load()
            rows.append(row)
        except RuntimeError as e:
            log(str(e))
            failed.append("live QMP")
    if args.kcore:
        try:
            row = kcore_target(1, min(args.sample, 5_000))
            row["load"] = load()
            rows.append(row)
        except RuntimeError as e:
            log(str(e))
            failed.append("/proc/kcore")
    print(table(rows))
    print()
    for row in rows:
        print(f"- {row['name']}: {row['note']}")
    doc = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "nproc": os.cpu_count(),
           "rows": rows}
    out = Path(args.json) if args.json else bench_dir() / "results.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    log(f"results in {out}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
