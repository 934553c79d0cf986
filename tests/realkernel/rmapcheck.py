"""The ground-truth check of the reverse map and the holders (shared by the real-kernel tests
and by runs against the dev dumps: python3 -m tests.realkernel.rmapcheck KERNEL)."""

from __future__ import annotations

from typing import Any

from tests.realkernel.expect import expected, thp_pins_per_registration

FILES = {"tmpfs": "/tmp/pinwork.data", "sysv": "SYSV", "shared_anon": "[shmem]"}
HOLDER_OF = {"io_uring_fixed": "io_uring", "vmsplice": "pipe"}


def rmap_problems(pages: list[dict[str, Any]], meta: dict[str, Any], doc: dict[str, Any],
                  version: tuple[int, int]) -> list[str]:
    """What differs between `pinned`'s JSON *doc* and the workload's ground truth: each pinned
    page names the pid that pinned it at its vaddr, its file for tmpfs/shm kinds, the peer for
    shared mappings, and its holder (io_uring or pipe) with the owning pid and the right count;
    nothing is unexplained; LRU-batch references are transient."""
    rows = {int(r["pfn"]): r for r in doc["pages"]}
    problems = []
    for p in pages:
        if not p["pinned"]:
            continue
        where = f"{p['kind']} pfn {p['pfn']}"
        row = rows.get(p["pfn"])
        if row is None:
            problems.append(f"{where}: not reported")
            continue
        mappers = row["mappers"] or []
        mine = [m for m in mappers if m["pid"] == p["pid"]]
        if not mine:
            problems.append(f"{where}: no mapper with pid {p['pid']}: {mappers}")
        elif not any(m["vaddr"] <= p["vaddr"] < m["vaddr_end"] and m["comm"] == p["comm"]
                     for m in mine):
            problems.append(f"{where}: vaddr {p['vaddr']:#x} not in {mine}")
        prefix = next((k for k in FILES if p["kind"].startswith(k)), None)
        if prefix and not all(m["file"].startswith(FILES[prefix]) for m in mappers):
            problems.append(f"{where}: files {[m['file'] for m in mappers]}, want {prefix}")
        if p["kind"].startswith("anon") or p["kind"].startswith("thp") or \
                p["kind"].startswith("cma"):
            if any(m["file"] != "[anon]" for m in mine):
                problems.append(f"{where}: file {[m['file'] for m in mine]}, want [anon]")
        if "mappers" in p:  # KSM: every process mapping the KSM page, at its own address
            problems += ksm_mapper_problems(where, p, row)
        elif p["mapcount"] == 2 and not any(m["pid"] == meta["peer_pid"]
                                          and m["comm"] == meta["peer_comm"] for m in mappers):
            problems.append(f"{where}: peer {meta['peer_pid']} not among {mappers}")
        kind = HOLDER_OF[p["method"]]
        held = [h for h in row["holders"] or [] if h["kind"] == kind]
        count = sum(h["count"] for h in held)
        want = p["pins"] if kind == "io_uring" else p["gets"]
        if kind == "io_uring" and p["nr_pages"] > 1:
            want = p["pins"] * thp_pins_per_registration(version, p["nr_pages"])
        if count != want or not all(h["pid"] == p["pid"] for h in held):
            problems.append(f"{where}: {kind} holders {held}, want x{want} by pid {p['pid']}")
        if row["unexplained_pins"] or row["unexplained_extra"]:
            problems.append(f"{where}: unexplained pins {row['unexplained_pins']} extra "
                            f"{row['unexplained_extra']}: {row['holders']}")
        exp = expected(p, version)
        if kind == "io_uring" and exp.pins != count and p["nr_pages"] == 1:
            problems.append(f"{where}: pins {exp.pins} vs io_uring count {count}")
    for row in doc["pages"]:
        for h in row["holders"] or []:
            if h["kind"] == "lru_batch" and not (h["transient"] and
                                                  h["holder"].startswith("transient: lru batch")):
                problems.append(f"pfn {row['pfn']}: lru batch not transient: {h}")
    return problems


def ksm_mapper_problems(where: str, p: dict[str, Any], row: dict[str, Any]) -> list[str]:
    """A KSM page (ground truth with ``mappers``) in a `pinned` row or a `page` document:
    mapping ``ksm`` and exactly the processes the workload saw on the pfn, each at its own
    address (one base page each) in its VMA (flag ``mergeable``)."""
    problems = []
    if row.get("mapping") != "ksm":
        problems.append(f"{where}: mapping {row.get('mapping')!r}, want 'ksm'")
    got = sorted((m["pid"], m["comm"], m["vaddr"], m["vaddr_end"]) for m in row["mappers"] or [])
    want = sorted((m["pid"], m["comm"], m["vaddr"], m["vaddr"] + 4096) for m in p["mappers"])
    if got != want:
        problems.append(f"{where}: KSM mappers {got}, want {want}")
    # each rmap_item's VMA found through its anon_vma: the workload's madvise(MADV_MERGEABLE)
    if not all(m["vma"] and "mergeable" in m["flags"] for m in row["mappers"] or []):
        problems.append(f"{where}: KSM mappers without their mergeable VMA: {row['mappers']}")
    return problems


def main(argv: list[str]) -> int:
    import json
    import subprocess
    import sys
    from pathlib import Path

    name = argv[0]
    fmt = argv[1] if len(argv) > 1 else "elf"
    base = Path.home() / ".cache/pinspect/dev" / name
    ready = (base.parent / "READY.txt").read_text().split(f"[{name}]")[1]
    vmlinux = ready.split("vmlinux: ")[1].split()[0]
    gt = json.loads((base / "ground-truth.json").read_text())
    out = subprocess.run([sys.executable, "-m", "pinspect", "-c", str(base / f"vmcore.{fmt}"),
                          "-s", vmlinux, "--format", "json", "pinned"], capture_output=True,
                         text=True, check=True).stdout
    doc = json.loads(out)
    major, minor = gt["release"].split(".")[:2]
    problems = rmap_problems(gt["pages"], gt["meta"], doc, (int(major), int(minor)))
    print(f"{name} {fmt}: {len(problems)} problem(s); rmap {doc['rmap']}")
    print("\n".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
