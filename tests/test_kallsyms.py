"""pinspect's kallsyms decoder (pinspect.kallsyms) on tables made here the way the kernel's
scripts/kallsyms lays them out: names of tokens (one- or two-byte lengths), a token table and
index, markers every 256 entries, and addresses as kallsyms_addresses, offsets from
kallsyms_relative_base (plain or per-CPU absolute) or offsets relative to their own place.
Each table is decoded both by pinspect and by drgn's own loader, and both must give what the
table was made from. (The real-kernel tier compares the two on real kernels' dumps.)"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import drgn
import numpy as np
import pytest

from pinspect import kallsyms
from pinspect.kallsyms import KallsymsSymbols, read_tables

BASE = 0xFFFFFFFF81000000  # where the fake kernel image's tables live
STEXT = 0xFFFFFFFF82000000


def _tokens(rnd: random.Random) -> list[bytes]:
    """256 tokens: every character a name uses, then common substrings."""
    chars = sorted(set(b"TtDdBbRrWwVvUu_abcdefghijklmnopqrstuvwxyz0123456789."))
    single = [bytes([c]) for c in chars]
    multi = [b"__", b"_init", b"sys_", b"page", b"kmem_", b"cache", b"_lock", b"read", b"write",
             b"irq", b"pin", b"Tpage", b"tdo_", b"foll"]
    while len(single) + len(multi) < 256:
        multi.append(bytes(rnd.choice(b"abcdefghij_") for _ in range(rnd.randint(2, 5))))
    return single + multi


def _encode(name: bytes, tokens: list[bytes]) -> list[int]:
    """Greedy longest-token encoding of *name* (the type letter first)."""
    out = []
    i = 0
    order = sorted(range(len(tokens)), key=lambda t: -len(tokens[t]))
    while i < len(name):
        for t in order:
            if name.startswith(tokens[t], i):
                out.append(t)
                i += len(tokens[t])
                break
        else:
            raise AssertionError(name)
    return out


def make_symbols(rnd: random.Random, n: int, long_names: bool) -> list[tuple[str, int, str]]:
    """(type letter, address, name) sorted by address, with duplicates and aliases."""
    syms: list[tuple[str, int, str]] = []
    address = STEXT - 0x20000 * (n + 1)  # below _stext until entry n // 3
    for i in range(n):
        kind = rnd.choice("TtTtDdBbRrWwVvu")
        length = rnd.randint(1, 30)
        if long_names and i % 97 == 5:
            length = rnd.randint(140, 300)  # a name of more than 127 tokens
        name = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz_0123456789.") for _ in range(length))
        if i % 50 == 7 and syms:
            name = syms[-1][2]  # a static symbol of the same name in another file
        if i == n // 3:
            name = "_stext"
            address = STEXT
        syms.append((kind, address, name))
        address += rnd.choice([0, 0x10, 0x40, 0x100, 0x2000, 0x20000])  # aliases, big gaps
    return syms


def build(rnd: random.Random, n: int, *, long_names: bool, mode: str, markers: bool,
          empty_token: bool = False) -> tuple[bytes, dict[str, int], list[tuple[str, int, str]]]:
    """The tables as one blob at BASE, their VMCOREINFO symbols, and the symbols; with
    *empty_token*, the last token is empty (an unused slot: no name has it)."""
    syms = make_symbols(rnd, n, long_names)
    tokens = _tokens(rnd)
    if empty_token:
        tokens[-1] = b""
    names = bytearray()
    offsets_of = []
    for kind, _, name in syms:
        offsets_of.append(len(names))
        codes = _encode((kind + name).encode(), tokens)
        if len(codes) > 127:
            assert long_names
            names += bytes([0x80 | (len(codes) & 0x7F), len(codes) >> 7])
        else:
            names.append(len(codes))
        names += bytes(codes)
    blob = bytearray()
    where: dict[str, int] = {}

    def put(sym: str, data: bytes, align: int = 8) -> None:
        while len(blob) % align:
            blob.append(0xAA)
        where[sym] = BASE + len(blob)
        blob.extend(data)

    put("kallsyms_num_syms", struct.pack("<I", n))
    put("kallsyms_names", bytes(names), 1)
    if markers:
        put("kallsyms_markers", struct.pack(f"<{(n + 255) // 256}I", *offsets_of[::256]), 4)
    table = b"".join(t + b"\0" for t in tokens)
    index = []
    pos = 0
    for t in tokens:
        index.append(pos)
        pos += len(t) + 1
    put("kallsyms_token_table", table, 4)
    put("kallsyms_token_index", struct.pack("<256H", *index))
    addresses = [a for _, a, _ in syms]
    if mode == "addresses":
        put("kallsyms_addresses", struct.pack(f"<{n}Q", *addresses))
    elif mode == "relative":
        base = min(addresses)
        put("kallsyms_offsets", struct.pack(f"<{n}I", *(a - base for a in addresses)))
        put("kallsyms_relative_base", struct.pack("<Q", base))
    elif mode == "percpu":
        # per-CPU symbols at small absolute addresses (>= 0), the rest below the base
        syms[:5] = [(k, 0x1000 * i, nm) for i, (k, _, nm) in enumerate(syms[:5])]
        addresses = [a for _, a, _ in syms]
        base = min(addresses[5:])  # the lowest kernel address
        values = [a if a < 1 << 31 else (-(a - base + 1)) & 0xFFFFFFFF for a in addresses]
        put("kallsyms_offsets", struct.pack(f"<{n}I", *values))
        put("kallsyms_relative_base", struct.pack("<Q", base))
    elif mode == "self":
        put("kallsyms_offsets", b"\0" * 4 * n)
        at = where["kallsyms_offsets"] - BASE
        for i, a in enumerate(addresses):
            blob[at + 4 * i:at + 4 * i + 4] = struct.pack("<i", a - (BASE + at + 4 * i))
    where["_stext"] = STEXT
    blob.extend(b"\0" * 64)
    return bytes(blob), where, syms


@contextmanager
def program(blob: bytes) -> Iterator[drgn.Program]:
    prog = drgn.Program(drgn.host_platform)

    def read(address: int, count: int, offset: int, physical: bool) -> bytes:
        return blob[offset:offset + count]

    prog.add_memory_segment(BASE, len(blob), read)
    yield prog


def expected(syms: list[tuple[str, int, str]]) -> list[tuple[str, int, int]]:
    out = []
    for i, (_, address, name) in enumerate(syms):
        size = syms[i + 1][1] - address if i + 1 < len(syms) else 0
        out.append((name, address, size if size < kallsyms.MAX_SYMBOL_SIZE else 0))
    return out


def info_of(where: dict[str, int], release: str) -> dict[str, str]:
    info = {f"SYMBOL({k})": f"{v:x}" for k, v in where.items() if k != "kallsyms_markers"}
    info["OSRELEASE"] = release
    return info


CASES = [
    # (symbols, long names, address mode, markers)
    (700, True, "relative", True),
    (700, True, "self", True),
    (600, False, "relative", False),
    (513, False, "percpu", False),
    (300, False, "addresses", True),
    (256, True, "relative", True),
    (1, False, "relative", False),
]


@pytest.mark.parametrize(("n", "long_names", "mode", "markers"), CASES)
def test_decode_as_made(n: int, long_names: bool, mode: str, markers: bool) -> None:
    rnd = random.Random(n * 7 + len(mode))
    if n == 1:  # a single symbol: _stext
        blob, where, syms = build(rnd, 1, long_names=False, mode=mode, markers=markers)
    else:
        blob, where, syms = build(rnd, n, long_names=long_names, mode=mode, markers=markers)
    release = "6.12.0" if long_names else "6.0.0"
    with program(blob) as prog:
        tables = read_tables(prog, info_of(where, release))
        assert (tables.markers is not None) == markers  # found where the kernel puts them
        found = KallsymsSymbols(tables)
        # lookups before every name is decoded (only the entries sifted by length and by first
        # and last character), then after: every entry of that name, in kallsyms' order, with
        # its type letter
        for when in ("lazy", "decoded"):
            for name in {nm for _, _, nm in syms}:
                hits = found(prog, name, None, False)
                assert [(s.name, s.address) for s in hits] == \
                    [(nm, a) for _, a, nm in syms if nm == name], (when, name)
                kinds = [kallsyms._binding_kind(ord(k)) for k, _, nm in syms if nm == name]
                assert [(s.binding, s.kind) for s in hits] == kinds
            for missing in ("no_such_symbol", syms[0][2] + "x", "x" + syms[0][2]):
                assert found(prog, missing, None, False) == []
            # by address: the symbol whose [address, address + size) holds it
            for i in range(0, len(syms) - 1, 37):
                want = expected(syms)[i]
                if want[2]:
                    hit = found(prog, None, want[1] + want[2] - 1, True)
                    assert hit and (hit[0].name, hit[0].address) == (want[0], want[1])
            if when == "lazy":
                assert found._text is None  # (nothing above needed every name)
                got = [(s.name, s.address, s.size) for s in found.all()]
                assert got == expected(syms)


def test_lookups_with_an_empty_token() -> None:
    """A token table with an empty token (an unused slot): lookups by name do not sift by
    the first and last character (which the tokens then do not tell), with the same result."""
    rnd = random.Random(3)
    blob, where, syms = build(rnd, 400, long_names=True, mode="relative", markers=True,
                              empty_token=True)
    with program(blob) as prog:
        found = KallsymsSymbols(read_tables(prog, info_of(where, "6.12.0")))
        assert int(found.token_len.min()) == 0
        for name in {nm for _, _, nm in syms}:
            assert [s.address for s in found(prog, name, None, False)] == \
                [a for _, a, nm in syms if nm == name]
        assert [(s.name, s.address, s.size) for s in found.all()] == expected(syms)


@pytest.mark.parametrize(("n", "long_names", "mode", "markers"), CASES[:5])
def test_same_as_drgn(n: int, long_names: bool, mode: str, markers: bool,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    """drgn's own decoder (its private loader, given the same addresses; long names told
    through the variable it reads) gives the same Symbols."""
    import _drgn

    loader: Any = getattr(_drgn, "_linux_helper_load_builtin_kallsyms", None)
    if loader is None:
        pytest.skip("this drgn has no builtin kallsyms loader to compare with")
    rnd = random.Random(n * 7 + len(mode))
    blob, where, syms = build(rnd, n, long_names=long_names, mode=mode, markers=markers)
    monkeypatch.setenv("DRGN_KALLSYMS_LONG", "1" if long_names else "0")
    with program(blob) as prog:
        try:
            index = loader(prog, *(where.get(k, 0) for k in (
                "kallsyms_names", "kallsyms_token_table", "kallsyms_token_index",
                "kallsyms_num_syms", "kallsyms_offsets", "kallsyms_relative_base",
                "kallsyms_addresses", "_stext")))
        except Exception as e:  # noqa: BLE001  (a drgn without this mode)
            pytest.skip(f"drgn's loader cannot read this layout: {e}")
        ref = index(prog, None, None, False)
        mine = KallsymsSymbols(read_tables(prog, info_of(where, "6.12.0" if long_names
                                                         else "6.0.0"))).all()
    key = [(s.name, s.address, s.size, s.binding, s.kind) for s in ref]
    assert key == [(s.name, s.address, s.size, s.binding, s.kind) for s in mine]
    assert os.environ["DRGN_KALLSYMS_LONG"]


@pytest.mark.parametrize("damage", ["count", "names", "stext"])
def test_bad_tables_raise_value_error(damage: str) -> None:
    """Garbage gives ValueError (load() turns it into a one-line error), never a wrong table."""
    rnd = random.Random(5)
    blob, where, syms = build(rnd, 600, long_names=False, mode="relative", markers=False)
    data = bytearray(blob)
    if damage == "count":
        data[0:4] = struct.pack("<I", 0xFFFFFFF0)
    elif damage == "names":
        at = where["kallsyms_names"] - BASE
        data[at:at + 40] = b"\xff" * 40  # lengths that run past the table
    info = info_of(where, "6.0.0")
    if damage == "stext":
        info["SYMBOL(_stext)"] = "ffffffff81234567"
    with program(bytes(data)) as prog, pytest.raises((ValueError, IndexError, drgn.FaultError)):
        KallsymsSymbols(read_tables(prog, info))


def test_markers_that_lie_are_not_used() -> None:
    """Markers that rise but do not point at entries: the walk notices and goes entry by
    entry, with the same result."""
    rnd = random.Random(9)
    blob, where, syms = build(rnd, 700, long_names=True, mode="relative", markers=True)
    with program(blob) as prog:
        tables = read_tables(prog, info_of(where, "6.12.0"))
        assert tables.markers is not None
        tables.markers = tables.markers + np.array([0, 1, 2])
        got = [(s.name, s.address, s.size) for s in KallsymsSymbols(tables).all()]
    assert got == expected(syms)
