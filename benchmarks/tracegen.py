"""Synthetic page_pinner traces (ftrace text, as pp61 writes them) for tests and the
``pinspect trace`` benchmark.

    python3 -m benchmarks.tracegen OUT --mib 1024      # a 1 GiB trace
    python3 -m benchmarks.tracegen OUT --pfns 50       # a small one

Each failing pfn gets a ``page_pinner_failure`` (reason cma or compaction, alternately), a few
``page_pinner_put`` events from common paths (LRU drain, compaction's isolation) and, for 3 in
4 pfns, the release by its pinner: ``anon_pipe_buf_release`` (vmsplice) for most,
``os_unlock_user_pages [nvidia]`` for every fifth, ``io_buffer_unmap`` for every seventh. Other
events (sched_switch) and page_ref gets and puts fill the rest. The expected answer of a
generated trace is in :func:`expected`.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BASE_PFN = 0x140000

STACKS = {
    "cma": ["__page_pinner_failure+0x5c/0x80", "isolate_migratepages_block+0x6b0/0xd90",
            "isolate_migratepages_range+0x50/0x80", "__alloc_contig_migrate_range+0x8d/0x1a0",
            "alloc_contig_range+0x160/0x280", "cma_alloc+0x120/0x420",
            "cma_alloc_write+0x47/0x70", "simple_attr_write_xsigned.constprop.0+0xb4/0x100",
            "full_proxy_write+0x54/0x80", "vfs_write+0xc5/0x3c0", "ksys_write+0x5f/0xe0",
            "do_syscall_64+0x38/0x90", "entry_SYSCALL_64_after_hwframe+0x64/0xce"],
    "compaction": ["__page_pinner_failure+0x5c/0x80", "isolate_migratepages_block+0x6b0/0xd90",
                   "isolate_migratepages+0x1c9/0x470", "compact_zone+0x2b5/0x9e0",
                   "compact_node+0x8d/0xd0", "sysctl_compaction_handler+0x6d/0xa0",
                   "proc_sys_call_handler+0x1b2/0x2a0", "vfs_write+0xc5/0x3c0",
                   "ksys_write+0x5f/0xe0", "do_syscall_64+0x38/0x90"],
    "isolation_put": ["__page_pinner_put+0x40/0x50", "page_pinner_ref_mod_and_test+0x2a/0x40",
                      "__page_ref_mod_and_test+0x3c/0x50", "put_page+0x45/0x60",
                      "isolate_migratepages_block+0x6f6/0xd90",
                      "isolate_migratepages_range+0x50/0x80"],
    "lru_put": ["__page_pinner_put+0x40/0x50", "page_pinner_ref_mod_and_test+0x2a/0x40",
                "__page_ref_mod_and_test+0x3c/0x50", "release_pages+0x1b6/0x4e0",
                "folio_batch_move_lru+0x12f/0x170", "lru_add_drain_cpu+0x91/0x130",
                "lru_add_drain+0x1d/0x40"],
    "pipe": ["__page_pinner_put+0x40/0x50", "page_pinner_ref_mod_and_test+0x2a/0x40",
             "__page_ref_mod_and_test+0x3c/0x50", "put_page+0x45/0x60",
             "anon_pipe_buf_release+0x1c/0x30", "pipe_release+0x50/0x100", "__fput+0x8e/0x260",
             "task_work_run+0x5a/0x90", "exit_to_user_mode_prepare+0x1b6/0x1c0"],
    "nvidia": ["__page_pinner_put+0x40/0x50", "put_page+0x45/0x60",
               "os_unlock_user_pages+0xbf/0x120 [nvidia]", "0xffffffffc14a4546",
               "_nv032165rm+0x96/0x100 [nvidia]"],
    "io_uring": ["__page_pinner_put+0x40/0x50", "page_pinner_ref_mod_and_test+0x2a/0x40",
                 "__page_ref_mod_and_test+0x3c/0x50", "folio_put_refs+0x12/0x30",
                 "gup_put_folio+0x4f/0x80", "unpin_user_page+0x1a/0x30",
                 "io_buffer_unmap+0x44/0x90", "__io_sqe_buffers_unregister+0x4b/0x90",
                 "io_ring_exit_work+0x8a/0x5c0", "process_one_work+0x1e5/0x3b0"],
    "get": ["__page_ref_mod+0x3c/0x50", "folio_get+0x1b/0x30", "filemap_get_entry+0x8e/0x150"],
}
HOLDER = {"pipe": "anon_pipe_buf_release", "nvidia": "os_unlock_user_pages [nvidia]",
          "io_uring": "io_buffer_unmap"}


def holder_of(i: int) -> str | None:
    """The pinner releasing failing pfn number *i*, or None (still held)."""
    if i % 4 == 3:
        return None
    if i % 5 == 0:
        return "nvidia"
    if i % 7 == 0:
        return "io_uring"
    return "pipe"


def reason_of(i: int) -> str:
    return "cma" if i % 2 == 0 else "compaction"


def _header(comm: str, pid: int, cpu: int, ts: float, event: str, args: str) -> str:
    return f"{comm:>16}-{pid:<7} [{cpu:03d}] .....  {ts:12.6f}: {event}: {args}\n"


def _stack(comm: str, pid: int, cpu: int, ts: float, frames: list[str]) -> str:
    return (f"{comm:>16}-{pid:<7} [{cpu:03d}] .....  {ts:12.6f}: <stack trace>\n"
            + "".join(f" => {f}\n" for f in frames))


def _page(pfn: int, count: int, mt: int = 4) -> str:
    return (f"pfn=0x{pfn:x} flags=uptodate|lru|swapbacked count={count} mapcount=1 "
            f"mapping=0000000000000000 mt={mt}")


def episodes(pfns: int, start: float = 100.0, seed: int = 1, first: int = 0,
             distinct: int | None = None) -> Iterator[str]:
    """The text of *pfns* failures and the puts after them, with filler, in timestamp order:
    failure number *first* + i hits pfn number (*first* + i) % *distinct* (every one a new pfn
    without *distinct*)."""
    rng = random.Random(seed)
    ts = start
    for k in range(first, first + pfns):
        i = k % distinct if distinct else k
        pfn = BASE_PFN + i * 3
        reason = reason_of(i)
        comm, pid = ("pinwork", 120) if reason == "cma" else ("kcompactd0", 31)
        ts += 0.000050
        yield _header(comm, pid, 0, ts, "page_pinner_failure",
                      _page(pfn, 3) + f" reason={reason}")
        yield _stack(comm, pid, 0, ts, STACKS[reason])
        ts += 0.000010
        yield _header(comm, pid, 0, ts, "page_pinner_put", _page(pfn, 2))
        yield _stack(comm, pid, 0, ts, STACKS["isolation_put"])
        for _ in range(rng.randrange(1, 4)):
            ts += 0.000020
            yield _header("swapper/1", 0, 1, ts, "sched_switch",
                          "prev_comm=swapper/1 prev_pid=0 prev_prio=120 prev_state=R ==> "
                          "next_comm=pinwork next_pid=120 next_prio=120")
            ts += 0.000010
            yield _header("pinwork", 120, 1, ts, "page_ref_mod",
                          _page(pfn, 3) + " val=1")
            yield _stack("pinwork", 120, 1, ts, STACKS["get"])
            ts += 0.000010
            yield _header("pinwork", 120, 1, ts, "page_pinner_put", _page(pfn, 2))
            yield _stack("pinwork", 120, 1, ts, STACKS["lru_put"])
        holder = holder_of(i)
        if holder is not None:
            ts += 0.000030
            comm, pid = {"pipe": ("pinwork", 120), "nvidia": ("cuda-EvtHandlr", 3102),
                         "io_uring": ("kworker/u4:2", 57)}[holder]
            yield _header(comm, pid, 1, ts, "page_pinner_put", _page(pfn, 1))
            yield _stack(comm, pid, 1, ts, STACKS[holder])


def expected(pfns: int) -> dict[str, Any]:
    """What ``pinspect trace`` should find in ``episodes(pfns)``."""
    counts: dict[str, int] = {}
    cma_counts: dict[str, int] = {}
    for i in range(pfns):
        h = holder_of(i)
        if h is not None:
            counts[HOLDER[h]] = counts.get(HOLDER[h], 0) + 1
            if reason_of(i) == "cma":
                cma_counts[HOLDER[h]] = cma_counts.get(HOLDER[h], 0) + 1
    return {"failing": pfns, "held": sum(1 for i in range(pfns) if holder_of(i) is None),
            "ranking": counts, "cma_ranking": cma_counts,
            "cma": sum(1 for i in range(pfns) if reason_of(i) == "cma")}


HEADER = ("# tracer: nop\n#\n# entries-in-buffer/entries-written: 0/0   #P:2\n#\n"
          "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
          "#              | |         |   |||||     |         |\n")


def write(out: Path, mib: float | None = None, pfns: int = 50,
          distinct: int | None = None) -> dict[str, Any]:
    """Write a trace: *pfns* failures, or as many as make *mib* MiB, on *distinct* pfns (or all
    different ones). Returns its size, line count and failures."""
    limit = int(mib * (1 << 20)) if mib else None
    size = lines = 0
    n = 0
    with open(out, "w") as f:
        f.write(HEADER)
        size += len(HEADER)
        chunk = 1000
        while True:
            if limit is None and n >= pfns:
                break
            if limit is not None and size >= limit:
                break
            count = chunk if limit is not None else min(chunk, pfns - n)
            text = "".join(episodes(count, start=100.0 + n * 0.01, seed=n, first=n,
                                    distinct=distinct))
            f.write(text)
            size += len(text)
            lines += text.count("\n")
            n += count
    return {"bytes": size, "lines": lines + HEADER.count("\n"), "failures": n,
            "pfns": min(n, distinct) if distinct else n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--mib", type=float, default=None, help="size of the trace (MiB)")
    ap.add_argument("--pfns", type=int, default=50, help="failures (without --mib)")
    ap.add_argument("--distinct", type=int, default=None,
                    help="distinct failing pfns (default: every failure a new pfn)")
    args = ap.parse_args()
    info = write(args.out, args.mib, args.pfns, args.distinct)
    print(f"{args.out}: {info['bytes']} bytes, {info['lines']} lines, {info['pfns']} pfns",
          file=sys.stderr)


if __name__ == "__main__":
    main()
