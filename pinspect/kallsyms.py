"""The kernel's own symbol table (kallsyms), for a program without vmlinux.

On the running kernel (root) drgn parses ``/proc/kallsyms``
(:func:`drgn.helpers.linux.kallsyms.load_vmlinux_kallsyms`). Otherwise the compressed tables
are read from kernel memory, which VMCOREINFO locates from Linux 6.0 on
(``SYMBOL(kallsyms_names)``, ``kallsyms_num_syms``, ``kallsyms_token_table``,
``kallsyms_token_index``, ``kallsyms_offsets``/``kallsyms_relative_base`` or
``kallsyms_addresses``): :func:`read_tables` reads each table with a few large reads and
:func:`decode` expands the names in bulk. (drgn's own decoder reads each name's length with a
memory read of its own: ~90 000-200 000 reads, which cost 0.3-0.8 s on an ELF dump and more
over QMP.) The symbols are the ones drgn's decoder makes (name, address, size, binding, kind),
checked against it on the real-kernel dumps. This module adds the error messages and registers
the table as the program's symbol finder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
from drgn import FaultError, Program, ProgramFlags, Symbol, SymbolBinding, SymbolIndex, SymbolKind
from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms

from pinspect import vmcoreinfo
from pinspect.errors import DebugInfoError

__all__ = ["KALLSYMS_VMCOREINFO", "KallsymsTables", "decode", "load", "origin", "read_tables",
           "symbols_from_memory"]

# What drgn needs from VMCOREINFO to decode kallsyms in memory (Linux 6.0+, up to commit
# f09bddbd8661 "vmcoreinfo: add kallsyms_num_syms symbol").
KALLSYMS_VMCOREINFO = ("kallsyms_names", "kallsyms_num_syms", "kallsyms_token_table",
                       "kallsyms_token_index")


def origin(prog: Program) -> str:
    """Where :func:`load` reads the symbols of *prog* from."""
    local = ProgramFlags.IS_LIVE | ProgramFlags.IS_LOCAL
    if prog.flags & local == local and os.geteuid() == 0:
        return "/proc/kallsyms"
    return "kernel memory (tables located through VMCOREINFO)"


# A symbol's size is the distance to the next symbol's address, but a gap of this much or more
# is no symbol's body (per-CPU symbols sit near 0, far below the text): size 0 then, as drgn.
MAX_SYMBOL_SIZE = 0x10000
MAX_SYMS = 1 << 22  # a kernel has ~100 000-250 000; more is a corrupt count
CHUNK = 1 << 20  # bytes per read of the names table, whose length is known only when walked


@dataclass
class KallsymsTables:
    """The raw kallsyms tables of a kernel, as read from its memory."""

    num_syms: int
    names: bytes  # kallsyms_names: per symbol a length (1 or 2 bytes), then token numbers
    token_table: bytes  # NUL-terminated tokens, concatenated
    token_index: np.ndarray  # u16[256]: where each token starts in token_table
    values: np.ndarray  # kallsyms_offsets (u32) or kallsyms_addresses (u64)
    relative_base: int | None  # kallsyms_relative_base; None without one
    long_names: bool  # 6.1+: a length with bit 7 set continues in a second byte
    stext: int  # _stext from VMCOREINFO: tells how offsets are meant
    markers: np.ndarray | None = None  # where every 256th entry starts in names, if found
    offsets_at: int = 0  # kallsyms_offsets' address, with offsets but no relative base


def long_names(release: str) -> bool:
    """Whether names' lengths may take two bytes: from 6.1 on (commit 73bbb94466fd
    "kallsyms: support "big" kernel symbols"; nothing in the tables says so, drgn decides by
    the release too)."""
    m = re.match(r"(\d+)\.(\d+)", release)
    if not m:
        return False
    major, minor = int(m.group(1)), int(m.group(2))
    return major > 6 or (major == 6 and minor >= 1)


def _read_more(prog: Program, address: int, need: int) -> bytes:
    """A megabyte from *address*; if that runs into memory the target lacks, up to the end of
    the page, or at least *need* bytes."""
    for size in (CHUNK, 4096 - address % 4096):
        if size >= need:
            try:
                return prog.read(address, size)
            except FaultError:
                pass
    return prog.read(address, need)


def _read_names(prog: Program, address: int, num_syms: int, two_byte: bool) -> bytes:
    """kallsyms_names up to the end of its last entry, read a megabyte at a time."""
    data = bytearray()
    pos = 0
    for _ in range(num_syms):
        if pos + 2 > len(data):  # (a length may take two bytes)
            data += _read_more(prog, address + len(data), pos + 1 - len(data))
        if pos + 2 > len(data) and data[pos] & 0x80 and two_byte:
            data += prog.read(address + len(data), 1)
        length = data[pos]
        if length & 0x80 and two_byte:
            length = (length & 0x7F) | (data[pos + 1] << 7)
            pos += 1
        pos += length + 1
    while pos > len(data):
        data += prog.read(address + len(data), pos - len(data))
    return bytes(data[:pos])


def read_tables(prog: Program, info: dict[str, str]) -> KallsymsTables:
    """The kallsyms tables located by VMCOREINFO *info*, in a few large reads."""
    def symbol(name: str) -> int:
        return int(info.get(f"SYMBOL({name})", "0"), 16)

    num_syms = int.from_bytes(prog.read(symbol("kallsyms_num_syms"), 4), "little")
    if not 0 < num_syms <= MAX_SYMS:
        raise ValueError(f"kallsyms_num_syms is {num_syms}")
    token_index = np.frombuffer(prog.read(symbol("kallsyms_token_index"), 512), "<u2")
    table_at = symbol("kallsyms_token_table")
    end = int(token_index.max())
    token_table = prog.read(table_at, end + 1)
    while b"\0" not in token_table[end:]:  # the last token: read on to its NUL
        token_table += prog.read(table_at + len(token_table), 64)
        if len(token_table) > end + 4096:
            raise ValueError("kallsyms_token_table: no end to the last token")
    two_byte = long_names(info.get("OSRELEASE", ""))
    names_at = symbol("kallsyms_names")
    names, markers = b"", None
    if 0 < table_at - names_at <= 64 * CHUNK:
        # From 6.2 (at least) kallsyms_markers, u32 each, lie between the names and the token
        # table: one read gives both, and the markers let the names be walked 256 at a time.
        try:
            region = prog.read(names_at, table_at - names_at)
        except FaultError:
            region = b""
        markers = _find_markers(region, num_syms)
        if markers is not None:
            names = region[:int(markers[-1]) + 2 * 256 * 256 + 2]  # past the last block's end
    if markers is None:
        names = _read_names(prog, names_at, num_syms, two_byte)
    offsets_at = 0
    if symbol("kallsyms_addresses"):
        values = np.frombuffer(prog.read(symbol("kallsyms_addresses"), 8 * num_syms), "<u8")
        base = None
    else:
        offsets_at = symbol("kallsyms_offsets")
        values = np.frombuffer(prog.read(offsets_at, 4 * num_syms), "<u4")
        base = None
        if symbol("kallsyms_relative_base"):
            base = int.from_bytes(prog.read(symbol("kallsyms_relative_base"), 8), "little")
    return KallsymsTables(num_syms, names, token_table, token_index, values, base, two_byte,
                          symbol("_stext"), markers, offsets_at)


def _find_markers(region: bytes, num_syms: int) -> np.ndarray | None:
    """kallsyms_markers (u32: where entries 0, 256, 512, ... start in kallsyms_names) at the
    end of *region* (names, markers, a few bytes of alignment), or None. A candidate starts
    with 0, rises strictly and stays inside the names; the walk checks it again."""
    blocks = (num_syms + 255) // 256
    if len(region) < 4 * blocks + 4:
        return None
    for pad in range(0, 64, 4):
        end = len(region) - pad
        end -= end % 4
        start = end - 4 * blocks
        if start <= 0:
            return None
        cand = np.frombuffer(region[start:end], "<u4").astype(np.int64)
        if cand[0] == 0 and (blocks == 1 or bool(np.all(np.diff(cand) > 0))) and \
                cand[-1] < start:
            return cand
    return None


def _binding_kind(kind: int) -> tuple[SymbolBinding, SymbolKind]:
    """What drgn makes of a kallsyms type letter (``nm``'s): ``u`` unique, ``v``/``w``
    weak, upper case global, other lower case unknown (usually local, not always); ``t``
    function, ``b``/``c``/``d``/``g``/``r``/``v`` object."""
    c = chr(kind)
    low = c.lower()
    if c == "u":
        binding = SymbolBinding.UNIQUE
    elif low in "vw":
        binding = SymbolBinding.WEAK
    elif c.isupper():
        binding = SymbolBinding.GLOBAL
    else:
        binding = SymbolBinding.UNKNOWN
    if low == "t":
        what = SymbolKind.FUNC
    elif low in "bcdgrv":
        what = SymbolKind.OBJECT
    else:
        what = SymbolKind.UNKNOWN
    return binding, what


def _walk(tables: KallsymsTables) -> tuple[np.ndarray, np.ndarray]:
    """Where each entry's tokens start in kallsyms_names and how many it has, entry by
    entry."""
    names = tables.names
    start_list: list[int] = []
    count_list: list[int] = []
    pos = 0
    two_byte = tables.long_names
    for _ in range(tables.num_syms):
        length = names[pos]
        if length & 0x80 and two_byte:
            length = (length & 0x7F) | (names[pos + 1] << 7)
            pos += 1
        start_list.append(pos + 1)
        count_list.append(length)
        pos += length + 1
    if pos > len(names):
        raise ValueError("kallsyms_names is truncated")
    return np.array(start_list, np.int64), np.array(count_list, np.int64)


def _walk_blocks(tables: KallsymsTables) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`_walk` done for all blocks of 256 entries at once from kallsyms_markers (256
    vector steps instead of one Python step per entry); None when a block does not end where
    the next marker says (then the markers were not what they seemed)."""
    assert tables.markers is not None
    n = tables.num_syms
    raw = np.frombuffer(tables.names + b"\0\0", np.uint8)  # (+2: a two-byte length at the end)
    pos = tables.markers.copy()
    blocks = len(pos)
    starts = np.zeros(blocks * 256, np.int64)
    counts = np.zeros(blocks * 256, np.int64)
    live = np.arange(blocks) * 256
    for step in range(256):
        active = live + step < n
        if not active.any():
            break
        at = np.where(active, pos, 0)
        if int(at.max()) >= len(raw) - 2:
            return None
        length = raw[at].astype(np.int64)
        if tables.long_names:
            two = (length & 0x80) != 0
            length = np.where(two, (length & 0x7F) | (raw[at + 1].astype(np.int64) << 7),
                              length)
            at = at + two
        starts[live + step] = at + 1
        counts[live + step] = length
        pos = np.where(active, at + length + 1, pos)
    if blocks > 1 and not np.array_equal(pos[:-1], tables.markers[1:]):
        return None
    if int(pos[-1]) > len(tables.names):
        return None
    return starts[:n], counts[:n]


class KallsymsSymbols:
    """vmlinux's kallsyms, decoded only as far as each question needs. Called by drgn as a
    symbol finder (``register_symbol_finder``).

    Made from the tables: where each entry's tokens are (a walk of the names), each entry's
    decoded length (a running sum of token lengths) and the addresses. A lookup by name
    decodes only the entries of the right length whose first and last characters match
    (a few hundred of the ~100 000-200 000); a lookup by address decodes only the entries
    found; every name is decoded (in bulk) only when every symbol is asked for."""

    def __init__(self, tables: KallsymsTables) -> None:
        n = tables.num_syms
        walked = _walk_blocks(tables) if tables.markers is not None else None
        self.starts, self.counts = walked if walked is not None else _walk(tables)
        self.tables = tables
        table = tables.token_table
        self.tokens = [table[o:table.index(b"\0", o)] for o in tables.token_index.tolist()]
        self.token_len = np.array([len(t) for t in self.tokens], np.int64)
        # each token's first, second (-1: none) and last byte, to sift entries by name
        self._byte0 = np.array([t[0] if t else -1 for t in self.tokens], np.int16)
        self._byte1 = np.array([t[1] if len(t) > 1 else -1 for t in self.tokens], np.int16)
        self._last = np.array([t[-1] if t else -1 for t in self.tokens], np.int16)
        # each entry's decoded length (type letter included): a running sum over the names
        # table of the length of the token each byte would be, taken at the entries' ends
        self.raw = np.frombuffer(tables.names, np.uint8)
        run = np.zeros(len(self.raw) + 1, np.int64)
        np.cumsum(self.token_len[self.raw], out=run[1:])
        self.lengths = run[self.starts + self.counts] - run[self.starts]
        del run
        self._text: tuple[bytes, np.ndarray, np.ndarray] | None = None
        stext = self.named("_stext")
        self.addresses = _addresses(tables, stext[0] if stext else None)
        sizes = np.zeros(n, np.uint64)
        if n > 1:
            gaps = self.addresses[1:] - self.addresses[:-1]
            sizes[:-1] = np.where(gaps < MAX_SYMBOL_SIZE, gaps, 0)
        self.sizes = sizes
        self.count = n
        self._kinds: dict[int, tuple[SymbolBinding, SymbolKind]] = {}
        self._all: list[Symbol] | None = None

    def _entry(self, i: int) -> bytes:
        """Entry *i* decoded: its type letter, then its name."""
        if self._text is not None:
            text, begins, ends = self._text
            return text[int(begins[i]):int(ends[i])]
        tokens = self.tokens
        start = int(self.starts[i])
        return b"".join([tokens[c] for c in self.tables.names[start:start + int(self.counts[i])]])

    def symbol(self, i: int) -> Symbol:
        """The drgn Symbol of entry *i*."""
        entry = self._entry(i)
        kind = entry[0] if entry else 0
        bk = self._kinds.get(kind)
        if bk is None:
            bk = self._kinds[kind] = _binding_kind(kind)
        name = entry[1:].decode(errors="replace")
        return Symbol(name, int(self.addresses[i]), int(self.sizes[i]), bk[0], bk[1])

    def all(self) -> list[Symbol]:
        """Every symbol, in kallsyms' (address) order."""
        if self._all is None:
            if self._text is None:
                self._text = _decode_all(self.tables, self.starts, self.counts)
            text, begins, ends = self._text
            if not text.isascii():  # (names are ASCII; else each decoded on its own)
                self._all = [self.symbol(i) for i in range(self.count)]
                return self._all
            # One string and plain lists: 200 000 Symbols cost ~1 s made one by one through
            # symbol() (a `pinned` with page_owner stacks asks for all of them).
            names = text.decode()
            kinds = {}
            for kind in set(text[b] for b in begins[ends > begins].tolist()) | {0}:
                kinds[kind] = self._kinds.get(kind) or _binding_kind(kind)
            self._all = [
                Symbol(names[b + 1:e], address, size,
                       *kinds[text[b] if e > b else 0])
                for b, e, address, size in zip(begins.tolist(), ends.tolist(),
                                               self.addresses.tolist(), self.sizes.tolist(),
                                               strict=True)]
        return self._all

    def named(self, name: str) -> list[int]:
        """The entries named *name*, in kallsyms' order: only those of its length (plus the
        type letter) whose second and last decoded bytes match are decoded and compared."""
        want = name.encode(errors="replace")
        if not want:
            return []
        hits = np.flatnonzero(self.lengths == len(want) + 1)
        if len(hits) and bool(np.all(self.token_len > 0)):
            # With no empty token, the last byte is the last token's, and the byte after
            # the type letter is the first token's second or the second token's first.
            starts, counts = self.starts[hits], self.counts[hits]
            keep = self._last[self.raw[starts + counts - 1]] == want[-1]
            hits, starts = hits[keep], starts[keep]
            first = self.raw[starts]
            second = self.raw[np.minimum(starts + 1, len(self.raw) - 1)]
            byte1 = np.where(self._byte1[first] >= 0, self._byte1[first], self._byte0[second])
            hits = hits[byte1 == want[0]]
        return [int(i) for i in hits if self._entry(int(i))[1:] == want]

    def containing(self, address: int) -> list[int]:
        """The entries whose [address, address + size) holds *address*."""
        i = int(np.searchsorted(self.addresses, np.uint64(address), side="right")) - 1
        found = []
        while i >= 0 and int(self.addresses[i]) <= address:
            if address < int(self.addresses[i]) + int(self.sizes[i]):
                found.append(i)
            elif int(self.sizes[i]) and int(self.addresses[i]) < address:
                break
            i -= 1
        return found[::-1]

    def __call__(self, prog: Program, name: str | None, address: int | None,
                 one: bool) -> list[Symbol]:
        if name is None and address is None:
            found = self.all()
            return found[:1] if one else list(found)
        if name is not None:
            hits = self.named(name)
            if address is not None:
                hits = [i for i in hits if i in set(self.containing(address))]
        else:
            assert address is not None
            hits = self.containing(address)
        if one:
            hits = hits[:1]
        return [self.symbol(i) for i in hits]


def _decode_all(tables: KallsymsTables, starts: np.ndarray,
                counts: np.ndarray) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Every entry decoded in bulk: (the names one after another, each with its type letter
    first; where each begins; where each ends)."""
    n = tables.num_syms
    names = tables.names
    table = tables.token_table
    token_at = tables.token_index.astype(np.int64)
    token_len = np.array([table.index(b"\0", o) - o for o in token_at.tolist()], np.int64)
    # every entry's token numbers, concatenated: mark the bytes that are tokens
    # (32-bit arrays: the tables are a few MB, and these passes are memory-bound)
    raw = np.frombuffer(names, np.uint8)
    is_token = np.zeros(len(raw) + 1, np.int8)
    is_token[starts] = 1  # entries with no tokens: start == next entry's length byte
    is_token[starts + counts] -= 1
    codes = raw[np.cumsum(is_token[:-1], dtype=np.int8).view(bool)]
    # the tokens' bytes gathered in one pass: byte k of the text comes from the token
    # table at (its code's token start) + (k - where that code's text starts)
    code_len = token_len.astype(np.int32)[codes]
    total = int(code_len.sum(dtype=np.int64))
    code_begin = np.cumsum(code_len, dtype=np.int32) - code_len
    # (np.repeat of the per-code shift, made as the running sum of its steps)
    shift = token_at.astype(np.int32)[codes] - code_begin
    steps = np.zeros(total, np.int32)
    used = code_len > 0
    steps[code_begin[used]] = np.diff(shift[used], prepend=np.int32(0))
    gather = np.cumsum(steps, dtype=np.int32)
    gather += np.arange(total, dtype=np.int32)
    text = np.frombuffer(table, np.uint8)[gather].tobytes()
    # each name's decoded length, then its place in the text (the type letter first)
    lengths = np.zeros(n, np.int64)
    nonempty = counts > 0
    first = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    if nonempty.any():
        lengths[nonempty] = np.add.reduceat(code_len, first[nonempty], dtype=np.int64)
    ends = np.cumsum(lengths)
    return text, ends - lengths, ends


def decode(tables: KallsymsTables) -> list[Symbol]:
    """Every symbol of *tables*, in kallsyms' (address) order. Raises ValueError when the
    tables do not decode (truncated, or offsets that match neither way of storing them)."""
    return KallsymsSymbols(tables).all()


def _addresses(tables: KallsymsTables, stext: int | None) -> np.ndarray:
    """The symbols' addresses: kallsyms_addresses as they are, or kallsyms_offsets from
    kallsyms_relative_base, either plainly or (CONFIG_KALLSYMS_ABSOLUTE_PERCPU, dropped in
    6.15) with negative offsets below the base; _stext tells which, as for drgn."""
    if tables.offsets_at and tables.relative_base is None:
        # No kallsyms_relative_base (the 7.x kernels: VMCOREINFO names none): each offset is
        # signed and relative to its own place in kallsyms_offsets (checked against drgn's
        # decoder on the 7.2 dumps).
        own = np.uint64(tables.offsets_at) + np.arange(len(tables.values), dtype=np.uint64) * \
            np.uint64(4)
        return own + tables.values.view("<i4").astype(np.int64).astype(np.uint64)
    if tables.relative_base is None:
        return tables.values.astype(np.uint64)
    base = tables.relative_base
    offsets = tables.values
    if stext is None:
        raise ValueError("no _stext in kallsyms")
    value = int(offsets[stext])
    plain = (base + value) & (2**64 - 1)
    signed = value - (1 << 32) if value & 0x80000000 else value
    percpu = value if signed >= 0 else (base - 1 - signed) & (2**64 - 1)
    if plain == tables.stext:
        return (np.uint64(base) + offsets.astype(np.uint64)).astype(np.uint64)
    if percpu == tables.stext:
        as_signed = offsets.view("<i4").astype(np.int64)
        out = np.where(as_signed >= 0, as_signed.astype(np.uint64),
                       np.uint64(base - 1) - as_signed.astype(np.uint64))
        return out.astype(np.uint64)
    raise ValueError("kallsyms offsets match neither plain nor per-CPU-absolute addresses")


def symbols_from_memory(prog: Program, info: dict[str, str]) -> KallsymsSymbols:
    """vmlinux's symbols decoded from the kallsyms tables in *prog*'s memory."""
    return KallsymsSymbols(read_tables(prog, info))


def load(prog: Program) -> SymbolIndex | KallsymsSymbols:
    """Load kallsyms for vmlinux and register it as *prog*'s first symbol finder."""
    info = vmcoreinfo.from_program(prog)
    local = ProgramFlags.IS_LIVE | ProgramFlags.IS_LOCAL
    if not (prog.flags & local == local and os.geteuid() == 0):
        missing = [s for s in KALLSYMS_VMCOREINFO if f"SYMBOL({s})" not in info]
        if missing:
            release = info.get("OSRELEASE", "this kernel")
            raise DebugInfoError(
                f"cannot locate kallsyms: the VMCOREINFO of {release} has no "
                f"SYMBOL({missing[0]}) (Linux 6.0 and later have it)",
                "pass the kernel's vmlinux with -s PATH")
    finder: SymbolIndex | KallsymsSymbols
    try:
        if prog.flags & local == local and os.geteuid() == 0:
            finder = load_vmlinux_kallsyms(prog)  # /proc/kallsyms, parsed by drgn
        else:
            finder = symbols_from_memory(prog, info)
    except FaultError as e:
        raise DebugInfoError(
            f"cannot read kallsyms at {e.address:#x}: that part of the kernel image is "
            "missing from the target", "pass the kernel's vmlinux with -s PATH") from e
    except (LookupError, ValueError, OSError, IndexError) as e:
        raise DebugInfoError(f"cannot read kallsyms: {e}",
                             "pass the kernel's vmlinux with -s PATH") from e
    prog.register_symbol_finder("kallsyms", finder, enable_index=0)
    return finder
