"""Trace events of page pinning: who held the pages that migration failed on.

Reads, as a stream, the text of

* ``perf script`` and ``trace-cmd report`` / ftrace (``/sys/kernel/tracing/trace``) output of
  the page_pinner events (``page_pinner_failure``, ``page_pinner_put``: the LKML RFC and the
  pp61 test kernel, whose failure event carries a ``reason``), of the upstream ``page_ref``
  events (``CONFIG_DEBUG_PAGE_REF``: ``page_ref_mod``, ``page_ref_mod_and_test``, ...), of
  ``test_pages_isolated`` (its ``fin_pfn`` is the first busy pfn of a failed contiguous
  allocation), ``cma_alloc*`` and ``mm_migrate_pages``, with their stacks (ftrace's
  ``stacktrace`` option, ``perf record -g``);
* the record files of Android's page_pinner variants
  (``/sys/kernel/debug/page_pinner/{buffer,alloc_contig_failed,longterm_pinner,pinner}``,
  reference §1.3-1.7), newest record first.

For every pfn that failed (a *failure*: the page_pinner failure event, an Android
"Failure detected" record, or the busy pfn of ``test_pages_isolated``) it keeps the chain of
gets and puts that followed, and credits the callsite of the last put that is not a common
path (LRU draining, rmap walks of migration, page-cache lookups: :data:`COMMON_PATHS`) as the
pfn's *last holder*; callsites are ranked by the number of failing pfns they last held.

Memory stays bounded whatever the trace's size: per failing pfn a fixed-size state and the last
:data:`CHAIN_LENGTH` events of its chain; stacks and names are interned; events are reordered
by timestamp in a window of :data:`REORDER_WINDOW` events.
"""

from __future__ import annotations

import bz2
import gzip
import heapq
import lzma
import re
import sys
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import IO, Any, cast

from pinspect.errors import PinspectError

CHAIN_LENGTH = 16
KINDS = ("failure", "get", "put", "free", "pin")
NO_COUNT = -(1 << 62)
REORDER_WINDOW = 4096
MAX_LINE = 1 << 16  # longer lines are garbage (read in pieces, never whole)

REASONS = ("cma", "alloc_contig", "compaction", "unknown")

# Frames of the put/get machinery itself, skipped to find the callsite of an event.
_MACHINERY = re.compile(
    r"^(?:__?page_pinner\w*|page_pinner\w*|__page_ref_\w+|page_ref_\w+|folio_ref_\w+"
    r"|trace_\w+|perf_trace_\w+|trace_event_raw_event_\w+|__traceiter_\w+|__trace_\w+"
    r"|__ftrace_trace_stack|ftrace_\w+|stack_trace_save\w*|__bpf_trace_\w+|bpf_trace_\w+"
    r"|put_page|__put_page|put_page_testzero|folio_put|__folio_put|folio_put_refs"
    r"|folio_put_testzero|put_pages_list|release_pages|__folio_batch_release|__pagevec_release"
    r"|unpin_user_pages?|unpin_user_pages?_dirty_lock|unpin_user_page_range_dirty_lock"
    r"|gup_put_folio|put_compound_head|get_page|folio_get|try_get_page|folio_try_get\w*"
    r"|try_grab_folio|try_grab_page|try_get_folio|get_page_unless_zero|put_user_page\w*"
    r"|page_cache_get_speculative|__set_page_pinner|set_page_pinner)$")

# The default common paths: (group, pattern of the callsite's function).
COMMON_PATHS: tuple[tuple[str, str], ...] = (
    ("lru", r"lru_add_drain\w*|__lru_add_drain\w*|folio_batch_move_lru|pagevec_lru_move_fn"
            r"|__pagevec_lru_add\w*|folio_add_lru\w*|lru_cache_\w+|isolate_lru_\w+"
            r"|folio_isolate_lru|putback_lru_page|folio_putback_lru|putback_movable_pages"
            r"|mlock_\w*batch\w*|mlock_folio\w*|lru_deactivate\w*|lru_lazyfree\w*"
            r"|lru_move_tail\w*|folio_activate\w*|folio_rotate_reclaimable|shrink_\w+_list"
            r"|evict_folios|move_folios_to_lru|move_pages_to_lru"),
    ("migration", r"migrate_pages\w*|unmap_and_move\w*|__unmap_and_move\w*|move_to_new_\w+"
                  r"|migrate_folio\w*|migrate_page\w*|folio_migrate_\w+|remove_migration_pte\w*"
                  r"|try_to_migrate\w*|try_to_unmap\w*|rmap_walk\w*|page_vma_mapped_walk"
                  r"|folio_referenced\w*|page_referenced\w*|isolate_migratepages\w*"
                  r"|isolate_movable_page|compact_\w+|__alloc_contig_migrate_range"
                  r"|alloc_contig_range|kcompactd\w*|migration_entry_wait\w*"
                  r"|__migration_entry_wait\w*|do_pages_move|kernel_move_pages"),
    ("page cache", r"filemap_get_\w+|__filemap_get_folio|pagecache_get_page|find_get_\w+"
                   r"|find_lock_\w+|mapping_get_entry|filemap_map_pages|next_uptodate_\w+"
                   r"|filemap_read\w*|filemap_fault|shmem_get_folio\w*|shmem_getpage\w*"
                   r"|shmem_undo_range|shmem_fault|truncate_inode_\w+|invalidate_mapping_\w+"
                   r"|mapping_evict_folio|find_get_pages\w*|filemap_range_has\w+"),
)

HOW_TO_RECORD = (
    "record page_pinner (or, on a CONFIG_DEBUG_PAGE_REF kernel, page_ref) events with their "
    "stacks: echo 1 > /sys/kernel/tracing/events/page_pinner/enable; echo 1 > "
    "/sys/kernel/tracing/options/stacktrace; then save /sys/kernel/tracing/trace (or: perf "
    "record -a -g -e 'page_pinner:*' ... && perf script)")


# --------------------------------------------------------------------------------------------
# Events


@dataclass(slots=True)
class Event:
    """One trace event (or Android record), with its stack as frame strings."""

    name: str  # event name without the system: page_pinner_put, page_ref_mod, ...
    ts: float | None  # seconds (trace clock); None for records without one
    pid: int
    comm: str
    cpu: int
    args: str  # the event's text after its name
    stack: list[str] = field(default_factory=list)
    seq: int = 0  # position in the input
    fields: dict[str, str] | None = None  # Android records: parsed already


_ARG = re.compile(r"(\w+)=(\S*)")

# ftrace (/sys/kernel/tracing/trace) and trace-cmd report:
#   comm-pid [cpu] flags ts: event: args      (flags: "d..2." on ftrace, optional; tgid "(123)")
_FTRACE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*(?:\d+|-+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:[^\s:]{4,6}\s+)?(?P<ts>\d+\.\d+):\s+(?P<event><stack trace>|[\w]+):?\s?(?P<rest>.*)$")
# perf script: comm pid[/tid] [cpu] ts: [period] system:event: args
_PERF = re.compile(
    r"^\s*(?P<comm>.*?)\s+(?P<pid>-?\d+)(?:/(?P<tid>\d+))?\s+(?:\[(?P<cpu>\d+)\]\s+)?"
    r"(?P<ts>\d+\.\d+):\s+(?:\d+\s+)?(?P<system>[\w-]+):(?P<event>[\w-]+):\s?(?P<rest>.*)$")
_PERF_FRAME = re.compile(r"^\s*([0-9a-fA-F]{4,})\s+(.*?)\s+\((.*)\)\s*$")
# trace-cmd report's preamble and notes, and perf's
_BENIGN = re.compile(r"^(?:version = \d+|CPU \d+ is empty|cpus=\d+"
                     r"|\s*CPU:\d+ \[\d+ EVENTS DROPPED\]|\s*\[\s*perf record:.*\])\s*$")
_DROPPED = re.compile(r"\[(\d+) EVENTS DROPPED\]|\[LOST (\d+) EVENTS\]")
_HEADERISH = re.compile(r"\[\d+\]\s+(?:\S+\s+)?\d+\.\d*")  # a cut event line still has these

# Android page_pinner record files (reference §1.3-1.7)
_AND_PUT = re.compile(r"^At least, pinned for (-?\d+) us$")
_AND_FREE = re.compile(r"^Freed at \[\s*(\d+)\.(\d+)\]$")
_AND_FAIL = re.compile(r"^Failure detected at \[\s*(\d+)\.(\d+)\]$")
_AND_LT = re.compile(r"^Page pinned for (-?\d+) us$")
_AND_ACF = re.compile(r"^Page pinned ts \[\s*(\d+)\.(\d+)\]$")
_AND_A0 = re.compile(r"^Page pinned ts (-?\d+) us count (-?\d+)$")
_AND_PFN = re.compile(
    r"^PFN (?P<pfn>0x[0-9a-fA-F]+|\d+) Block (?P<block>\d+) (?:type (?P<type>\S+) )?"
    r"(?:count (?P<count>-?\d+) mapcount (?P<mapcount>-?\d+) mapping (?P<mapping>\S+) )?"
    r"Flags (?P<flags>.*)$")

PAGE_PINNER_EVENTS = frozenset({"page_pinner_failure", "page_pinner_put"})
PAGE_REF_EVENTS = frozenset({"page_ref_set", "page_ref_mod", "page_ref_mod_and_test",
                             "page_ref_mod_and_return", "page_ref_mod_unless",
                             "page_ref_freeze", "page_ref_unfreeze"})
ANDROID_EVENTS = frozenset({"pp_failure", "pp_put", "pp_free", "pp_pin", "pp_record"})
CONTEXT_EVENTS = frozenset({"test_pages_isolated", "cma_alloc_start", "cma_alloc_finish",
                            "cma_alloc_busy_retry", "cma_alloc", "cma_release",
                            "mm_migrate_pages", "mm_migrate_pages_start"})
KNOWN_EVENTS = PAGE_PINNER_EVENTS | PAGE_REF_EVENTS | CONTEXT_EVENTS


@dataclass
class ReadStats:
    """What the reader saw and skipped."""

    lines: int = 0
    events: int = 0
    formats: Counter[str] = field(default_factory=Counter)  # ftrace, perf, android
    by_event: Counter[str] = field(default_factory=Counter)
    truncated: int = 0  # event lines cut short, or relevant events without their fields
    unknown_events: int = 0  # events pinspect does not read
    garbage: int = 0  # lines that are no event, stack or comment
    binary: int = 0  # lines with NUL bytes or that are not text
    out_of_order: int = 0  # events older than the reorder window allows
    orphan_frames: int = 0  # stack lines with no event before them
    dropped: int = 0  # events the tracer says it lost (trace-cmd, ftrace)

    def skipped(self) -> dict[str, int]:
        return {"truncated": self.truncated, "unknown_events": self.unknown_events,
                "garbage": self.garbage, "binary": self.binary,
                "out_of_order": self.out_of_order, "orphan_frames": self.orphan_frames,
                "dropped": self.dropped}


def open_input(path: str) -> IO[bytes]:
    """*path* ("-" for standard input) as a binary stream; .gz, .xz and .bz2 decompressed."""
    if path == "-":
        return sys.stdin.buffer
    if path.endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    if path.endswith(".xz"):
        return cast(IO[bytes], lzma.open(path, "rb"))
    if path.endswith(".bz2"):
        return cast(IO[bytes], bz2.open(path, "rb"))
    return open(path, "rb")  # noqa: SIM115 - the caller closes it


def _lines(stream: IO[bytes], stats: ReadStats) -> Iterator[str]:
    """Text lines of *stream*, never more than MAX_LINE bytes each; binary ones counted."""
    partial = False
    readline = stream.readline
    while True:
        raw = readline(MAX_LINE)
        if not raw:
            return
        stats.lines += 1
        long_piece = not raw.endswith(b"\n") and len(raw) >= MAX_LINE
        if partial or long_piece:
            # a piece of an over-long line: garbage, however it looks
            partial = long_piece
            stats.binary += 1
            continue
        if b"\0" in raw:
            stats.binary += 1
            continue
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            stats.binary += 1
            continue
        yield text.rstrip("\r\n")


class Reader:
    """Turns the lines of a trace into :class:`Event` objects in timestamp order."""

    def __init__(self, stats: ReadStats, window: int = REORDER_WINDOW) -> None:
        self.stats = stats
        self.window = window
        self.heap: list[tuple[float, int, Event]] = []
        self.last_emitted = float("-inf")
        self.seq = 0
        self.by_cpu: dict[int, Event] = {}  # the last event of each CPU: ftrace stack events
        self.current: Event | None = None  # the event stack lines belong to
        self.android: list[Event] = []
        self.android_record: Event | None = None

    # -- output ---------------------------------------------------------------------------

    def _push(self, event: Event) -> Iterator[Event]:
        self.seq += 1
        event.seq = self.seq
        ts = event.ts if event.ts is not None else self.last_emitted
        if ts < self.last_emitted:
            self.stats.out_of_order += 1
            return
        heapq.heappush(self.heap, (ts, event.seq, event))
        while len(self.heap) > self.window:
            yield self._pop()

    def _pop(self) -> Event:
        ts, _, event = heapq.heappop(self.heap)
        self.last_emitted = ts
        return event

    def events(self, lines: Iterable[str]) -> Iterator[Event]:
        pending: Event | None = None
        for line in lines:
            if not line:
                self.current = None
                self._end_android_record()
                continue
            first = line[0]
            if first == "#":
                continue
            if first in " \t" or line.startswith("=>"):
                if self._frame(line):
                    continue
            event = self._event_line(line)
            if event is None:
                if _BENIGN.match(line) or line.startswith("CPU:"):
                    m = _DROPPED.search(line)
                    if m:
                        self.stats.dropped += int(m.group(1) or m.group(2))
                    continue
                if not self._android_line(line):
                    if _HEADERISH.search(line):
                        self.stats.truncated += 1
                    else:
                        self.stats.garbage += 1
                continue
            if event.name == "<stack trace>" or event.name == "kernel_stack":
                owner = self.by_cpu.get(event.cpu)
                self.current = owner
                continue
            if pending is not None:
                yield from self._push(pending)
            pending = event
            self.current = event
            self.by_cpu[event.cpu] = event
        if pending is not None:
            yield from self._push(pending)
        self._end_android_record()
        while self.heap:
            yield self._pop()
        # Android files list records newest first: replay them oldest first.
        for event in reversed(self.android):
            yield event

    # -- event lines ----------------------------------------------------------------------

    def _event_line(self, line: str) -> Event | None:
        m = _PERF.match(line) if ":" in line else None
        if m is not None:
            fmt = "perf"
        else:
            m = _FTRACE.match(line)
            if m is None:
                return None
            fmt = "ftrace"
        self.stats.formats[fmt] += 1
        name = m.group("event")
        cpu = m.group("cpu")
        return Event(name=name, ts=float(m.group("ts")), pid=int(m.group("pid")),
                     comm=sys.intern(m.group("comm").strip()), cpu=int(cpu) if cpu else -1,
                     args=m.group("rest"))

    def _frame(self, line: str) -> bool:
        """Take *line* as a stack frame of the current event or record, if it is one."""
        text = line.strip()
        if not text:
            return True
        if text.startswith("=>"):
            frame = _ftrace_frame(text[2:].strip())
        elif line[0] == "\t" and (m := _PERF_FRAME.match(line)) is not None:
            frame = _perf_frame(m.group(1), m.group(2), m.group(3))
        elif self.android_record is not None and self.current is None and line[0] == " ":
            frame = _plain_frame(text)
        else:
            return False
        target = self.current if self.current is not None else self.android_record
        if target is None:
            self.stats.orphan_frames += 1
            return True
        if len(target.stack) < 64:
            target.stack.append(frame)
        return True

    # -- Android record files -------------------------------------------------------------

    def _android_line(self, line: str) -> bool:
        record = self.android_record
        if record is not None and record.fields is not None and "pfn" not in record.fields:
            m = _AND_PFN.match(line)
            if m:
                record.fields.update({k: v for k, v in m.groupdict().items() if v is not None})
                return True
        for pattern, name in ((_AND_PUT, "pp_put"), (_AND_FREE, "pp_free"),
                              (_AND_FAIL, "pp_failure"), (_AND_LT, "pp_pin"),
                              (_AND_ACF, "pp_record"), (_AND_A0, "pp_record")):
            m = pattern.match(line)
            if m is None:
                continue
            self._end_android_record()
            fields: dict[str, str] = {}
            ts: float | None = None
            if name == "pp_put" or name == "pp_pin":
                fields["elapsed_us"] = m.group(1)
            elif pattern is _AND_A0:
                fields["ts_us"] = m.group(1)
                fields["pin_count"] = m.group(2)
                ts = int(m.group(1)) / 1e6
            else:
                ts = int(m.group(1)) + int(m.group(2)) / 1e6
            self.current = None
            self.android_record = Event(name=name, ts=ts, pid=-1, comm="", cpu=-1, args=line,
                                        fields=fields)
            self.stats.formats["android"] += 1
            return True
        return False

    def _end_android_record(self) -> None:
        record = self.android_record
        if record is None:
            return
        self.android_record = None
        if record.fields is None or "pfn" not in record.fields:
            self.stats.truncated += 1
            return
        self.seq += 1
        record.seq = self.seq
        self.android.append(record)


def _plain_frame(text: str) -> str:
    """A ``%pS`` frame: ``func+0x1c/0x30`` or ``func+0x1c/0x30 [module]``."""
    return text


def _ftrace_frame(text: str) -> str:
    """ftrace's ``func+0x1c/0x30``, ``func [mod]`` or trace-cmd's ``func (ffffffff81234567)``."""
    if text.endswith(")") and " (" in text:
        head, _, addr = text.rpartition(" (")
        if all(c in "0123456789abcdefABCDEF" for c in addr[:-1]):
            return head if head and head != "0" else "0x" + addr[:-1]
    return text


def _perf_frame(addr: str, sym: str, dso: str) -> str:
    """perf's ``ffffffff8123 sym+0x54 (dso)``: ``sym+0x54`` and `` [module]`` for modules."""
    module = ""
    if dso.startswith("[") and dso.endswith("]") and dso not in ("[kernel.kallsyms]",
                                                                 "[unknown]"):
        module = dso
    if sym == "[unknown]" or not sym:
        sym = "0x" + addr.lstrip("0")
    return f"{sym} {module}" if module else sym


def frame_function(frame: str) -> tuple[str, str]:
    """(function, module) of a frame string; function "" when it has only an address."""
    text = frame.strip()
    module = ""
    if text.endswith("]") and " [" in text:
        text, _, mod = text.rpartition(" [")
        module = mod[:-1]
    func = text.split("+", 1)[0].strip()
    if func.startswith("0x") or func.startswith("[") or not func:
        func = ""
    return func, module


def from_callsite(stack: Sequence[str]) -> list[str]:
    """*stack* without its leading get/put machinery frames (for display)."""
    for i, frame in enumerate(stack):
        func, module = frame_function(frame)
        if not func or module or not _MACHINERY.match(func):
            return list(stack[i:])
    return list(stack)


def frame_key(frame: str) -> str:
    """A frame as a callsite: ``func``, ``func [module]``, ``[module]`` without a symbol."""
    func, module = frame_function(frame)
    if func:
        return f"{func} [{module}]" if module else func
    if module:
        return f"[{module}]"
    return frame.strip().split()[0] if frame.strip() else "?"


# --------------------------------------------------------------------------------------------
# Analysis


@dataclass
class CommonPaths:
    """The callsites left out of the ranking: (group, compiled pattern) pairs."""

    groups: list[tuple[str, re.Pattern[str]]]

    @classmethod
    def make(cls, defaults: bool = True, extra: Sequence[str] = ()) -> CommonPaths:
        groups = [(g, re.compile(f"^(?:{p})$")) for g, p in COMMON_PATHS] if defaults else []
        for text in extra:
            group, sep, pattern = text.partition("=")
            if not sep:
                group, pattern = "user", text
            try:
                groups.append((group.strip() or "user", re.compile(f"^(?:{pattern.strip()})$")))
            except re.error as e:
                raise ValueError(f"bad --common pattern {text!r}: {e}") from e
        return cls(groups)

    def group_of(self, func: str) -> str | None:
        if not func:
            return None
        for group, pattern in self.groups:
            if pattern.match(func):
                return group
        return None


@dataclass(slots=True)
class PfnState:
    """What the trace says about one failing pfn."""

    pfn: int
    reasons: list[str]
    first_ts: float | None
    failures: int
    fail_comm: str
    fail_pid: int
    fail_count: int | None
    fail_mapcount: int | None
    fail_stack: int  # interned stack id
    gets: int = 0
    puts: int = 0
    last_count: int | None = None
    freed: bool = False
    last_holder: int = -1  # callsite id of the last put that is no common path
    last_holder_stack: int = -1
    last_common: int = -1  # callsite id of the last common-path put
    pin_callsite: int = -1  # Android GUP pin records: the pinning callsite
    commons: tuple[int, ...] = ()  # common-path callsites that put it
    # the last events of the chain, packed: timestamps, and per event KINDS index, count,
    # callsite id, stack id, pid, comm id and event name id (see Analysis._append)
    chain_ts: array[float] = field(default_factory=lambda: array("d"))
    chain_ints: array[int] = field(default_factory=lambda: array("q"))


@dataclass
class Filters:
    reasons: frozenset[str] = frozenset()
    pfn_range: tuple[int, int] | None = None
    comms: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None

    def comm_ok(self, comm: str) -> bool:
        return not self.comms or any(fnmatchcase(comm, c) for c in self.comms)


class Analysis:
    """Consumes events; holds the per-pfn states and the callsite tallies."""

    def __init__(self, filters: Filters | None = None, common: CommonPaths | None = None,
                 chain_length: int = CHAIN_LENGTH) -> None:
        self.filters = filters or Filters()
        self.common = common or CommonPaths.make()
        self.chain_length = chain_length
        self.pfns: dict[int, PfnState] = {}
        self.stacks: dict[tuple[str, ...], int] = {}
        self.stack_list: list[tuple[str, ...]] = []
        self.names: list[str] = []  # comms and event names of the chains
        self.name_ids: dict[str, int] = {}
        self.callsites: dict[str, int] = {}
        self.callsite_list: list[tuple[str, str | None]] = []  # (key, common group)
        self.callsite_puts: Counter[int] = Counter()
        self.callsite_comms: dict[int, Counter[str]] = {}
        self.relevant = 0  # page_pinner, page_ref and Android page_pinner events
        self.failure_events: Counter[str] = Counter()  # by reason
        self.migrate: Counter[str] = Counter()  # mm_migrate_pages: failed pages by reason
        self.cma_allocs: Counter[str] = Counter()  # cma_alloc_finish: ok / failed
        self.in_cma: set[int] = set()  # pids inside cma_alloc_start..finish
        self.pinner_puts = False  # page_pinner_put events seen
        self.filtered_out = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.truncated = 0

    # -- interning ------------------------------------------------------------------------

    def _stack_id(self, stack: Sequence[str]) -> int:
        key = tuple(stack)
        sid = self.stacks.get(key)
        if sid is None:
            sid = len(self.stack_list)
            self.stacks[key] = sid
            self.stack_list.append(tuple(sys.intern(f) for f in key))
        return sid

    def _callsite(self, stack: Sequence[str]) -> int:
        """The id of the first frame of *stack* outside the get/put machinery."""
        chosen = None
        for frame in stack:
            func, module = frame_function(frame)
            if func and _MACHINERY.match(func) and not module:
                continue
            chosen = frame
            break
        if chosen is None:
            key, func = "(no stack)", ""
        else:
            key = frame_key(chosen)
            func, _ = frame_function(chosen)
        cid = self.callsites.get(key)
        if cid is None:
            cid = len(self.callsite_list)
            self.callsites[key] = cid
            self.callsite_list.append((key, self.common.group_of(func)))
        return cid

    # -- events ---------------------------------------------------------------------------

    def feed(self, event: Event) -> None:
        name = event.name
        f = self.filters
        if event.fields is not None or name in PAGE_PINNER_EVENTS or name in PAGE_REF_EVENTS:
            self.relevant += 1  # (filtered or not: the trace has the events)
        if event.ts is not None:
            if (f.since is not None and event.ts < f.since) or \
                    (f.until is not None and event.ts > f.until):
                self.filtered_out += 1
                return
            if self.first_ts is None:
                self.first_ts = event.ts
            self.last_ts = event.ts
        if event.fields is not None:
            self._android(event)
            return
        if name in PAGE_PINNER_EVENTS or name in PAGE_REF_EVENTS:
            args = dict(_ARG.findall(event.args))
            pfn_text = args.get("pfn")
            if pfn_text is None or "count" not in args:
                self.truncated += 1
                return
            try:
                pfn = int(pfn_text, 16)
                count = int(args["count"])
            except ValueError:
                self.truncated += 1
                return
            if f.pfn_range is not None and not f.pfn_range[0] <= pfn < f.pfn_range[1]:
                return
            if name == "page_pinner_failure":
                reason = args.get("reason") or infer_reason(event.stack)
                mapcount = _int(args.get("mapcount"))
                self._failure(pfn, reason, event, count, mapcount)
            elif name == "page_pinner_put":
                self.pinner_puts = True
                self._holder(pfn, "put", event, count)
            else:
                self._page_ref(pfn, name, args, event, count)
            return
        if name == "test_pages_isolated":
            args = dict(_ARG.findall(event.args))
            if args.get("ret") == "fail" and "fin_pfn" in args:
                try:
                    pfn = int(args["fin_pfn"], 16)
                    end = int(args.get("end_pfn", "0"), 16)
                except ValueError:
                    self.truncated += 1
                    return
                if pfn < end and (f.pfn_range is None
                                  or f.pfn_range[0] <= pfn < f.pfn_range[1]):
                    reason = "cma" if event.pid in self.in_cma else infer_reason(event.stack)
                    if reason == "unknown":
                        reason = "alloc_contig"
                    self._failure(pfn, reason, event, None, None)
            return
        if name == "cma_alloc_start":
            self.in_cma.add(event.pid)
        elif name in ("cma_alloc_finish", "cma_alloc"):
            self.in_cma.discard(event.pid)
            args = dict(_ARG.findall(event.args))
            # errorno since 6.3; before, a failed allocation has a NULL page
            err = args.get("errorno", "0")
            page = args.get("page", "")
            failed = err not in ("0", "") or page.strip("0x") == "" or page == "(nil)"
            self.cma_allocs["failed" if failed else "ok"] += 1
        elif name == "mm_migrate_pages":
            args = dict(_ARG.findall(event.args))
            nr_failed = _int(args.get("nr_failed")) or 0
            self.migrate[args.get("reason", "?")] += nr_failed

    def _failure(self, pfn: int, reason: str, event: Event, count: int | None,
                 mapcount: int | None) -> None:
        if self.filters.reasons and reason not in self.filters.reasons:
            return
        self.failure_events[reason] += 1
        state = self.pfns.get(pfn)
        stack_id = self._stack_id(event.stack)
        if state is None or state.freed:
            state = PfnState(pfn=pfn, reasons=[reason], first_ts=event.ts, failures=0,
                             fail_comm=event.comm, fail_pid=event.pid, fail_count=count,
                             fail_mapcount=mapcount, fail_stack=stack_id)
            self.pfns[pfn] = state
        elif reason not in state.reasons:
            state.reasons.append(reason)
        state.failures += 1
        state.last_count = count if count is not None else state.last_count
        self._append(state, event, "failure", count, self._callsite(event.stack), stack_id)

    def _holder(self, pfn: int, kind: str, event: Event, count: int | None) -> None:
        state = self.pfns.get(pfn)
        if state is None or state.freed:
            return
        if not self.filters.comm_ok(event.comm):
            return
        cid = self._callsite(event.stack)
        sid = self._stack_id(event.stack)
        self._append(state, event, kind, count, cid, sid)
        if count is not None:
            state.last_count = count
        if kind == "free":  # Android's free record: the page went back, no holder
            state.freed = True
            return
        if kind == "get":
            state.gets += 1
            return
        if kind == "pin":
            state.pin_callsite = cid
            return
        state.puts += 1
        self.callsite_puts[cid] += 1
        comms = self.callsite_comms.setdefault(cid, Counter())
        if len(comms) < 16 or event.comm in comms:
            comms[event.comm] += 1
        if self.callsite_list[cid][1] is None:
            state.last_holder = cid
            state.last_holder_stack = sid
        else:
            state.last_common = cid
            if cid not in state.commons and len(state.commons) < 64:
                state.commons += (cid,)
        if kind == "free" or count == 0:
            state.freed = True

    def _page_ref(self, pfn: int, name: str, args: dict[str, str], event: Event,
                  count: int) -> None:
        val = _int(args.get("val")) or 0
        if name in ("page_ref_set", "page_ref_freeze", "page_ref_unfreeze"):
            return
        if name == "page_ref_mod_unless" and args.get("ret") == "0":
            return
        if val > 0:
            self._holder(pfn, "get", event, count)
        elif val < 0 and not self.pinner_puts:
            # (with page_pinner_put events in the trace, every put of a failing page is one of
            # those already: its page_ref event is the same put)
            self._holder(pfn, "put", event, count)

    def _android(self, event: Event) -> None:
        fields = event.fields or {}
        try:
            pfn_text = fields["pfn"]
            pfn = int(pfn_text, 16) if pfn_text.startswith("0x") else int(pfn_text)
        except (KeyError, ValueError):
            self.truncated += 1
            return
        if self.filters.pfn_range is not None and \
                not self.filters.pfn_range[0] <= pfn < self.filters.pfn_range[1]:
            return
        count = _int(fields.get("count"))
        name = event.name
        if name == "pp_record":
            # A0-B: "Page pinned ts": GUP pin records (they hold __set_page_pinner or a
            # try_grab frame, or a pin count), else failure/put records of alloc_contig_failed:
            # the oldest for a pfn is its failure detection, the later ones its puts.
            funcs = {frame_function(f)[0] for f in event.stack}
            if (_int(fields.get("pin_count")) or 0) > 0 or \
                    funcs & {"__set_page_pinner", "try_grab_page", "try_grab_folio"}:
                name = "pp_pin"
            elif pfn in self.pfns and not self.pfns[pfn].freed:
                name = "pp_put"
            else:
                name = "pp_failure"
        if name == "pp_failure":
            reason = infer_reason(event.stack)
            if reason == "unknown":
                reason = "alloc_contig"  # the Android hook is in __alloc_contig_migrate_range
            self._failure(pfn, reason, event, count, _int(fields.get("mapcount")))
        elif name == "pp_put":
            state = self.pfns.get(pfn)
            if event.ts is None and state is not None and state.first_ts is not None:
                elapsed = _int(fields.get("elapsed_us"))
                if elapsed is not None:
                    event.ts = state.first_ts + elapsed / 1e6
            self._holder(pfn, "put", event, count)
        elif name == "pp_free":
            self._holder(pfn, "free", event, count)
        elif name == "pp_pin":
            state = self.pfns.get(pfn)
            if state is None:
                # a long-term pin with no failure: tracked so that a later failure finds it
                state = PfnState(pfn=pfn, reasons=[], first_ts=None, failures=0, fail_comm="",
                                 fail_pid=-1, fail_count=None, fail_mapcount=None,
                                 fail_stack=self._stack_id(()))
                self.pfns[pfn] = state
            self._holder(pfn, "pin", event, count)

    # -- results --------------------------------------------------------------------------

    def failing(self) -> list[PfnState]:
        """The failing pfns (by pfn) that pass the filters."""
        return sorted((s for s in self.pfns.values() if s.failures), key=lambda s: s.pfn)

    def holder_of(self, state: PfnState) -> int:
        """The callsite credited for *state*: the last non-common put, else the GUP pin."""
        if state.last_holder >= 0:
            return state.last_holder
        return state.pin_callsite

    def ranking(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(ranked callsites, filtered common-path callsites), each a list of JSON objects."""
        held: Counter[int] = Counter()
        common: Counter[int] = Counter()
        reasons: dict[int, Counter[str]] = {}
        example: dict[int, int] = {}
        stack_of: dict[int, int] = {}
        for state in self.failing():
            cid = self.holder_of(state)
            if cid >= 0:
                held[cid] += 1
                reasons.setdefault(cid, Counter()).update(state.reasons)
                example.setdefault(cid, state.pfn)
                if state.last_holder_stack >= 0:
                    stack_of.setdefault(cid, state.last_holder_stack)
            for cid in state.commons:
                common[cid] += 1
        ranked = []
        for rank, (cid, n) in enumerate(sorted(held.items(),
                                               key=lambda kv: (-kv[1],
                                                               self.callsite_list[kv[0]][0])),
                                        start=1):
            sid = stack_of.get(cid)
            ranked.append({
                "rank": rank, "callsite": self.callsite_list[cid][0], "pfns": n,
                "puts": self.callsite_puts[cid],
                "reasons": sorted(reasons.get(cid, {})),
                "comms": [c for c, _ in self.callsite_comms.get(cid, Counter()).most_common(3)],
                "example_pfn": example[cid],
                "stack": list(self.stack_list[sid]) if sid is not None else [],
            })
        filtered = []
        for cid, n in sorted(common.items(), key=lambda kv: (-kv[1],
                                                             self.callsite_list[kv[0]][0])):
            key, group = self.callsite_list[cid]
            filtered.append({"callsite": key, "group": group, "pfns": n,
                             "puts": self.callsite_puts[cid]})
        return ranked, filtered

    def pfn_object(self, state: PfnState) -> dict[str, Any]:
        holder = self.holder_of(state)
        return {
            "pfn": state.pfn,
            "reasons": list(state.reasons),
            "failed_at": state.first_ts,
            "failures": state.failures,
            "comm": state.fail_comm,
            "pid": state.fail_pid,
            "count": state.fail_count,
            "mapcount": state.fail_mapcount,
            "failure_stack": list(self.stack_list[state.fail_stack]),
            "gets": state.gets,
            "puts": state.puts,
            "last_holder": self.callsite_list[holder][0] if holder >= 0 else None,
            "last_common": (self.callsite_list[state.last_common][0]
                            if state.last_common >= 0 else None),
            "last_count": state.last_count,
            # freed (the last reference went), released (a put by a holder outside the common
            # paths came), or held (no such put in the trace)
            "state": ("freed" if state.freed else "released" if state.last_holder >= 0
                      else "held"),
            "chain": [self.chain_object(state, i) for i in range(len(state.chain_ts))],
        }

    def chain_object(self, state: PfnState, i: int) -> dict[str, Any]:
        ts = state.chain_ts[i]
        kind, count, cid, sid, pid, comm, name = state.chain_ints[i * 7:i * 7 + 7]
        key, group = self.callsite_list[cid]
        return {"ts": None if ts != ts else ts, "kind": KINDS[kind],
                "event": self.names[name], "comm": self.names[comm], "pid": pid,
                "count": None if count == NO_COUNT else count, "callsite": key,
                "common": group, "stack": list(self.stack_list[sid])}

    def _name_id(self, name: str) -> int:
        nid = self.name_ids.get(name)
        if nid is None:
            nid = self.name_ids[name] = len(self.names)
            self.names.append(name)
        return nid

    def _append(self, state: PfnState, event: Event, kind: str, count: int | None, cid: int,
                sid: int) -> None:
        """Add an event to *state*'s chain, keeping the last ``chain_length``."""
        ts, ints = state.chain_ts, state.chain_ints
        if len(ts) >= self.chain_length:
            del ts[0]
            del ints[0:7]
        ts.append(event.ts if event.ts is not None else float("nan"))
        ints.extend((KINDS.index(kind), NO_COUNT if count is None else count, cid, sid,
                     event.pid, self._name_id(event.comm), self._name_id(event.name)))


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return None


def infer_reason(stack: Sequence[str]) -> str:
    """A failure's reason from its stack, for events that carry none (RFC v1, Android)."""
    funcs = [frame_function(f)[0] for f in stack]
    if any(f.startswith("cma_alloc") or f == "dma_alloc_contiguous" or f.startswith("cma_")
           for f in funcs):
        return "cma"
    if any(f.startswith(("compact_", "kcompactd", "try_to_compact")) for f in funcs):
        return "compaction"
    if any(f in ("alloc_contig_range", "__alloc_contig_migrate_range", "test_pages_isolated",
                 "alloc_contig_pages") for f in funcs):
        return "alloc_contig"
    return "unknown"


@dataclass
class TraceResult:
    """What :func:`analyze` returns."""

    analysis: Analysis
    stats: ReadStats

    def warnings(self) -> list[str]:
        skipped = {k: v for k, v in self.stats.skipped().items() if v}
        if self.analysis.truncated:
            skipped["truncated"] = skipped.get("truncated", 0) + self.analysis.truncated
        if not skipped:
            return []
        total = sum(skipped.values())
        what = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in skipped.items())
        return [f"skipped {total} line(s) or event(s): {what}"]


def analyze(stream: IO[bytes], filters: Filters | None = None,
            common: CommonPaths | None = None, chain_length: int = CHAIN_LENGTH,
            window: int = REORDER_WINDOW) -> TraceResult:
    """Read a trace from *stream* and analyze it (see the module's documentation)."""
    stats = ReadStats()
    analysis = Analysis(filters, common, chain_length)
    reader = Reader(stats, window)
    for event in reader.events(_lines(stream, stats)):
        stats.events += 1
        stats.by_event[event.name] += 1
        if event.fields is None and event.name not in KNOWN_EVENTS:
            stats.unknown_events += 1
            continue
        analysis.feed(event)
    return TraceResult(analysis, stats)


def require_events(result: TraceResult, name: str) -> None:
    """Raise (exit 2) when the trace holds no page_pinner or page_ref events."""
    if result.analysis.relevant:
        return
    seen = result.stats.events
    raise PinspectError(
        f"no page_pinner or page_ref events in {name} ({result.stats.lines} lines, "
        f"{seen} other event(s))", HOW_TO_RECORD)
