"""Bounded traversals of kernel linked structures (rbtrees, lists, hlists), for dumps whose
pointers may loop or point anywhere.

Every walk has a length cap and remembers the nodes it visited (a cycle ends the walk); a read
that faults ends that branch. Each problem is counted in a :class:`Problems`, which callers
turn into one warning line per kind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from drgn import FaultError, Program

# Length caps: far above anything a sane kernel holds, low enough to end a walk in seconds.
MAX_TREE_NODES = 1 << 20  # VMAs in one anon_vma or i_mmap tree
MAX_LIST_NODES = 1 << 22  # tasks, rmap items
MAX_FDS = 1 << 20  # fds of one table (the kernel's sysctl_nr_open cap)
MAX_NAME = 255  # bytes of one dentry name (NAME_MAX)
MAX_DEPTH = 256  # dentries and mounts up to a root


@dataclass
class Problems:
    """Counted problems of the walks: failed reads, cycles, walks cut at their cap."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, what: str, n: int = 1) -> None:
        self.counts[what] += n

    def lines(self) -> list[str]:
        """One warning line per kind of problem, most frequent first."""
        return [f"{what}: {n}" for what, n in self.counts.most_common()]


def read_u64(prog: Program, address: int) -> int:
    return int.from_bytes(prog.read(address, 8), "little")


def rb_nodes(prog: Program, root: int, left: int, right: int, problems: Problems,
             what: str, cap: int = MAX_TREE_NODES) -> Iterator[int]:
    """The addresses of the ``struct rb_node`` of the tree whose first node is *root*
    (``rb_root.rb_node``), in no particular order. *left* and *right* are the offsets of
    ``rb_left`` and ``rb_right``. A node seen twice, a read that faults and a tree of more than
    *cap* nodes end that branch (counted as ``what``)."""
    seen: set[int] = set()
    stack = [root] if root else []
    while stack:
        node = stack.pop()
        if node in seen:
            problems.add(f"{what}: cycle")
            continue
        if len(seen) >= cap:
            problems.add(f"{what}: more than {cap} nodes, rest not read")
            return
        seen.add(node)
        try:
            data = prog.read(node, max(left, right) + 8)
        except FaultError:
            problems.add(f"{what}: unreadable node")
            continue
        yield node
        for off in (right, left):
            child = int.from_bytes(data[off:off + 8], "little")
            if child:
                stack.append(child)


def list_nodes(prog: Program, head: int, problems: Problems, what: str,
               cap: int = MAX_LIST_NODES) -> Iterator[int]:
    """The ``struct list_head`` addresses of a circular list after *head* (``next`` at offset
    0), bounded like :func:`rb_nodes`."""
    seen = {head}
    try:
        node = read_u64(prog, head)
    except FaultError:
        problems.add(f"{what}: unreadable list head")
        return
    while node != head:
        if node in seen or not node:
            problems.add(f"{what}: broken list")
            return
        if len(seen) > cap:
            problems.add(f"{what}: more than {cap} entries, rest not read")
            return
        seen.add(node)
        yield node
        try:
            node = read_u64(prog, node)
        except FaultError:
            problems.add(f"{what}: unreadable entry")
            return


def hlist_nodes(prog: Program, first: int, problems: Problems, what: str,
                cap: int = MAX_LIST_NODES) -> Iterator[int]:
    """The ``struct hlist_node`` addresses from *first* (``hlist_head.first``), bounded."""
    seen: set[int] = set()
    node = first
    while node:
        if node in seen:
            problems.add(f"{what}: cycle")
            return
        if len(seen) >= cap:
            problems.add(f"{what}: more than {cap} entries, rest not read")
            return
        seen.add(node)
        yield node
        try:
            node = read_u64(prog, node)
        except FaultError:
            problems.add(f"{what}: unreadable entry")
            return
