"""``pinspect stacks``: pinned pages grouped by the stack that pinned, allocated or freed them.

The stacks come from page_pinner (``--by pinner``: the last pin's stack, else the newest ring
record of the page) or page_owner (``--by alloc``, ``--by free``). Frames of common paths
(:data:`DEFAULT_IGNORED_FRAMES`) are left out before grouping, so that pages pinned from the
same place group together however the page was allocated or reached.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import click
from drgn import Program

from pinspect.commands import Needs, register
from pinspect.commands.common import (
    Options,
    Progress,
    emit,
    global_options,
    open_target,
    page_filter_options,
    split_options,
)
from pinspect.commands.pinned import source_notes
from pinspect.errors import FeatureMissing
from pinspect.features import PRESENT, Feature
from pinspect.render import Document, Lines, Rows
from pinspect.report import PinnedPage, find_pinned
from pinspect.schema import FEATURE, STACK_GROUP
from pinspect.stackdepot import Frame, Stack

# Frames left out when grouping, by the path they belong to (fnmatch patterns on the function
# name; a compiler suffix such as ".constprop.0" is ignored). The one list of them: --help and
# the output print it.
DEFAULT_IGNORED_FRAMES: dict[str, tuple[str, ...]] = {
    "page allocator and freeing": (
        "__alloc_pages*", "alloc_pages*", "__alloc_frozen_pages*", "alloc_frozen_pages*",
        "get_page_from_freelist", "prep_new_page", "post_alloc_hook", "__folio_alloc*",
        "folio_alloc*", "vma_alloc_folio*", "vma_alloc_anon_folio_pmd", "alloc_page_interleave",
        "__set_page_owner", "set_page_owner*", "free_pages_prepare", "free_pcp_prepare",
        "free_unref_page*", "free_unref_folios", "__free_pages*",
        "__folio_put*", "folio_put", "put_page", "release_pages"),
    "page_pinner's own": (
        "__set_page_pinner", "__reset_page_pinner", "__free_page_pinner", "__page_pinner_*"),
    "LRU draining": (
        "lru_add_drain*", "__lru_add_drain_all", "lru_add_fn", "folio_batch_move_lru",
        "__pagevec_lru_add*", "pagevec_lru_move_fn", "folio_add_lru*", "lru_cache_add*",
        "__folio_batch_release", "folios_put_refs"),
    "rmap during migration": (
        "rmap_walk*", "try_to_migrate*", "remove_migration_pte*", "migrate_pages*",
        "migrate_folio*", "__migrate_folio", "unmap_and_move*", "__unmap_and_move*",
        "move_to_new_folio", "page_vma_mapped_walk", "try_to_unmap*"),
    "page-cache lookups": (
        "filemap_get_entry", "__filemap_get_folio*", "filemap_get_folio*", "pagecache_get_page",
        "find_get_entry", "find_lock_entry", "find_get_page*", "filemap_get_pages",
        "filemap_get_read_batch", "xas_load", "xa_load"),
}
DEFAULT_PATTERNS: tuple[str, ...] = tuple(p for ps in DEFAULT_IGNORED_FRAMES.values() for p in ps)

BY = ("pinner", "alloc", "free")  # and "auto", the default
COLUMNS = ("rank", "pages", "folios", "pins", "extra", "zones", "cma", "processes", "source",
           "stack")


@dataclass
class StackGroup:
    """Pinned folios that share a stack (after the ignored frames are left out)."""

    stack: tuple[str, ...]  # the kept frames, %pS
    source: str
    handles: set[int] = field(default_factory=set)
    pages: int = 0
    folios: int = 0
    pins: int = 0
    extra: int = 0
    zones: Counter[str] = field(default_factory=Counter)
    cma: Counter[str] = field(default_factory=Counter)
    processes: Counter[tuple[int | None, str | None]] = field(default_factory=Counter)
    pfns: list[int] = field(default_factory=list)
    rank: int = 0


@dataclass
class StacksReport:
    """The result of :func:`group_stacks`."""

    by: str
    ignored: tuple[str, ...]
    groups: list[StackGroup]
    pages: int  # pinned pages in all
    no_stack: Counter[str]  # pages without a stack, by why
    sources: list[Feature]
    warnings: list[str]


def ignore_matcher(patterns: Sequence[str]) -> Callable[[Frame], bool]:
    """Whether a frame's function matches one of *patterns* (fnmatch; a compiler suffix such
    as ``.constprop.0`` is ignored), each function name decided once."""
    regex = re.compile("|".join(fnmatch.translate(p) for p in patterns)) if patterns else None
    decided: dict[str, bool] = {}

    def ignored(frame: Frame) -> bool:
        name = frame.symbol
        if name is None or regex is None:
            return False
        found = decided.get(name)
        if found is None:
            found = decided[name] = bool(regex.match(name)
                                         or regex.match(name.split(".", 1)[0]))
        return found
    return ignored


def _key(frame: Frame) -> str:
    """A frame without its symbol size: the call site."""
    if frame.symbol is None:
        return f"{frame.address:#x}"
    text = f"{frame.symbol}+{frame.offset:#x}"
    return f"{text} [{frame.module}]" if frame.module else text


def _stack_of(page: PinnedPage, by: str) -> tuple[Stack | None, str, str]:
    """(stack, source, why there is none) of *page* for ``--by`` (``auto``: page_pinner's
    stack where the page has one, page_owner's allocation stack otherwise)."""
    if by == "auto":
        stack, source = page.stack_source()
        if stack is not None:
            return stack, ("page_owner (allocation)" if source == "page_owner" else source), ""
        return None, "", ("no page_owner or page_pinner record"
                          if page.owner is None and page.pinner is None
                          else "records without a stack")
    if by == "pinner":
        if page.pinner is None:
            return None, "", "no page_pinner record"
        stack, source = page.pinner.best_stack
        return stack, source, "" if stack else "page_pinner record without a stack"
    owner = page.owner
    if owner is None:
        return None, "", "no page_owner record"
    stack = owner.stack if by == "alloc" else owner.free_stack
    if stack is None:
        handle = owner.handle if by == "alloc" else owner.free_handle
        return None, "", (f"page_owner handle {handle:#x} not decoded" if handle
                          else "page_owner record without a free stack" if by == "free"
                          else "page_owner record without a stack")
    return stack, f"page_owner ({'allocation' if by == 'alloc' else 'free'})", ""


def group_stacks(pages: Sequence[PinnedPage], by: str, ignored: Sequence[str]
                 ) -> tuple[list[StackGroup], Counter[str]]:
    """Group *pages* by their ``--by`` stack without the frames matching *ignored*, largest
    group (pages) first."""
    is_ignored = ignore_matcher(ignored)
    buckets: dict[tuple[str, ...], list[PinnedPage]] = {}
    sources: dict[tuple[str, ...], dict[str, None]] = {}  # in order of appearance
    handles: dict[tuple[str, ...], set[int]] = {}
    no_stack: Counter[str] = Counter()
    kept: dict[int, tuple[str, ...]] = {}  # per handle: frames are decided once
    for page in pages:
        stack, source, why = _stack_of(page, by)
        if stack is None:
            no_stack[why] += page.nr_pages
            continue
        key = kept.get(stack.handle)
        if key is None:
            frames = [f for f in stack.frames if not is_ignored(f)]
            key = kept[stack.handle] = tuple(_key(f) for f in frames) or ("(all frames ignored)",)
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = []
            sources[key] = {}
            handles[key] = set()
        bucket.append(page)
        sources[key][source] = None
        handles[key].add(stack.handle)
    groups = []
    for key, members in buckets.items():
        group = StackGroup(key, "; ".join(sources[key]), handles[key])
        zones: dict[str, int] = {}
        cma: dict[str, int] = {}
        processes: dict[tuple[int | None, str | None], int] = {}
        for page in members:
            n = page.nr_pages
            zones[page.zone] = zones.get(page.zone, 0) + n
            if page.cma:
                cma[page.cma] = cma.get(page.cma, 0) + n
            owner = page.owner
            who = (owner.pid, owner.comm) if owner is not None else (None, None)
            processes[who] = processes.get(who, 0) + n
        group.pages = sum(p.nr_pages for p in members)
        group.folios = len(members)
        group.pins = sum(p.pins for p in members)
        group.extra = sum(max(p.extra, 0) for p in members)
        group.zones, group.cma = Counter(zones), Counter(cma)
        group.processes = Counter(processes)
        group.pfns = [p.pfn for p in members]
        groups.append(group)
    ordered = sorted(groups, key=lambda g: (-g.pages, -g.folios, g.stack))
    for rank, group in enumerate(ordered, 1):
        group.rank = rank
    return ordered, no_stack


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counter.most_common()) or "-"


def _processes(group: StackGroup, top: int = 3) -> list[tuple[int | None, str | None, int]]:
    return [(pid, comm, n) for (pid, comm), n in group.processes.most_common(top)]


def _process_text(pid: int | None, comm: str | None, n: int) -> str:
    if pid is None and comm is None:
        return f"? {n}"
    return f"{comm if comm is not None else '?'}({pid if pid is not None else '?'}) {n}"


def group_object(group: StackGroup) -> dict[str, Any]:
    """One group in JSON (:data:`pinspect.schema.STACK_GROUP`)."""
    obj = {
        "rank": group.rank, "stack": list(group.stack), "source": group.source,
        "handles": sorted(group.handles), "pages": group.pages, "folios": group.folios,
        "pins": group.pins, "extra": group.extra, "zones": dict(group.zones),
        "cma": dict(group.cma),
        "processes": [{"pid": pid, "comm": comm, "pages": n}
                      for pid, comm, n in _processes(group, len(group.processes))],
        "pfns": group.pfns,
    }
    return {key: obj[key] for key in STACK_GROUP}


def _row(group: StackGroup) -> dict[str, Any]:
    return {
        "rank": group.rank, "pages": group.pages, "folios": group.folios, "pins": group.pins,
        "extra": group.extra, "zones": _counts(group.zones), "cma": _counts(group.cma),
        "processes": Lines(_process_text(*p) for p in _processes(group)),
        "source": Lines(group.source.split("; ")),
        "stack": Lines(group.stack),
    }


def ignored_note(ignored: Sequence[str]) -> list[str]:
    """The ignored frames, one line per path (the default list) plus the user's own."""
    if not ignored:
        return ["ignored frames: none (--no-default-ignores)"]
    lines = ["ignored frames (change with --ignore-frame, --no-default-ignores):"]
    rest = list(ignored)
    for path, patterns in DEFAULT_IGNORED_FRAMES.items():
        if all(p in rest for p in patterns):
            lines.append(f"  {path}: {' '.join(patterns)}")
            rest = [p for p in rest if p not in patterns]
    if rest:
        lines.append(f"  given: {' '.join(rest)}")
    return lines


def document(report: StacksReport, top: int | None = None) -> Document:
    """The ``stacks`` result as a renderable document."""
    shown = report.groups if top is None else report.groups[:top]
    grouped = sum(g.pages for g in report.groups)
    notes = ["",
             f"{len(report.groups)} stack(s) ({report.by}) over {grouped} of {report.pages} "
             f"pinned page(s)"
             + (f"; showing the top {top} (--top)" if top is not None
                and len(report.groups) > top else "")]
    if report.no_stack:
        notes.append("no stack: " + ", ".join(f"{n} page(s) {why}" for why, n in
                                              report.no_stack.most_common()))
    notes += ignored_note(report.ignored)
    notes += source_notes(report.sources, report.warnings)
    return Document(
        command="stacks",
        body={"by": report.by, "ignored_frames": list(report.ignored),
              "groups": Rows(shown, group_object), "pages": report.pages,
              "no_stack": dict(report.no_stack),
              "sources": [{k: getattr(f, k) for k in FEATURE} for f in report.sources],
              "warnings": list(report.warnings)},
        rows=Rows(shown, _row),
        columns=COLUMNS,
        notes=notes,
    )


def run(prog: Program, options: Options, *, zone_names: Sequence[str] = (),
        nodes: Sequence[int] = (), pfn_range: tuple[int, int] | None = None,
        evidence: Sequence[str] = (), min_extra: int = 1, by: str | None = None,
        ignore_frames: Sequence[str] = (), no_default_ignores: bool = False,
        top: int | None = 20) -> StacksReport:
    """``stacks`` on an open program: group the pinned pages by stack, write the groups,
    return the report."""
    from pinspect.kernel import probe

    kernel = probe(prog)
    features = {f.name: f for f in kernel.features}
    owner = features.get("page_owner")
    pinner = features.get("page_pinner")
    have = {name for name, f in (("alloc", owner), ("free", owner), ("pinner", pinner))
            if f is not None and f.state == PRESENT}
    if not have:
        raise FeatureMissing(
            "'stacks' needs page_owner or page_pinner records, and this kernel has "
            f"page_owner {owner.state if owner else 'absent'}, "
            f"page_pinner {pinner.state if pinner else 'absent'}",
            "boot with page_owner=on (CONFIG_PAGE_OWNER=y), or page_pinner=on on an Android "
            "kernel with CONFIG_PAGE_PINNER=y")
    if by is not None and by not in have:
        name = "page_pinner" if by == "pinner" else "page_owner"
        f = pinner if by == "pinner" else owner
        raise FeatureMissing(f"'stacks --by {by}' needs {name}, which is "
                             f"{f.state if f else 'absent'} here",
                             f.detail if f else f"kernel built without {name}")
    report = find_pinned(prog, zone_names=zone_names, nodes=nodes, pfn_range=pfn_range,
                         evidence=evidence, min_extra=min_extra, progress=Progress(),
                         owners=True)
    chosen = by or "auto"
    ignored = tuple(() if no_default_ignores else DEFAULT_PATTERNS) + tuple(ignore_frames)
    groups, no_stack = group_stacks(report.pages, chosen, ignored)
    result = StacksReport(by=chosen, ignored=ignored, groups=groups,
                          pages=sum(p.nr_pages for p in report.pages), no_stack=no_stack,
                          sources=report.sources, warnings=report.warnings)
    emit(document(result, top), options)
    return result


def _ignored_help() -> str:
    return "\n".join(f"  {path}: {' '.join(patterns)}"
                     for path, patterns in DEFAULT_IGNORED_FRAMES.items())


@register(Needs(features=("folio layout", "stack depot")), run)
@click.command("stacks", help=f"""Pinned pages grouped by stack: who pinned, allocated or
freed them, with pages, folios, pins, extra references, zones, CMA areas and the processes
(page_owner's pid and comm) of each stack, largest first.

--by pinner uses page_pinner's stack (the last pin, else the newest ring buffer record of the
page), --by alloc page_owner's allocation stack, --by free page_owner's last free stack; by
default page_pinner's where a page has one and page_owner's allocation stack otherwise (as
pinned --stacks shows them). Before grouping, frames of these common paths are left out
(fnmatch patterns on the function name):

\b
{_ignored_help()}

\b
Examples:
  pinspect -c vmcore -s vmlinux stacks
  pinspect -c vmcore -s vmlinux stacks --zone Movable --top 5
  pinspect stacks --by alloc --ignore-frame 'shmem_*' --format json
  pinspect stacks --no-default-ignores --evidence foll_pin
""")
@page_filter_options
@click.option("--min-extra", type=int, default=1, show_default=True,
              help="report extra references only from this many up.")
@click.option("--by", type=click.Choice(BY), default=None,
              help="which stack: pinner (page_pinner), alloc or free (page_owner); default: "
                   "page_pinner's where present, else page_owner's allocation stack.")
@click.option("--ignore-frame", "ignore_frames", multiple=True, metavar="PATTERN",
              help="also leave out frames whose function matches PATTERN (repeatable).")
@click.option("--no-default-ignores", is_flag=True,
              help="keep the frames of the common paths listed above.")
@click.option("--top", type=int, default=20, show_default=True,
              help="show the N largest groups (0: all).")
@global_options
@click.pass_context
def command(ctx: click.Context, **values: Any) -> None:
    options, params = split_options(ctx, values)
    params["top"] = params["top"] or None
    run(open_target("stacks", options), options, **params)
