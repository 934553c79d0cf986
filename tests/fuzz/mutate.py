"""Mutations of a bundled sample: a seeded, replayable change to its bytes.

A :class:`Mutation` names the sample, the kind of structure (a key of
:class:`~tests.fuzz.regions.SampleRegions`, ``truncate`` or ``anywhere``), the operation and a
seed; :func:`apply` makes the mutated bytes from the unmutated file, the same every time.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from tests.fuzz.regions import STRING_KINDS, Region, SampleRegions

# Operations on a located region.
OPERATIONS = ("flip", "bytes", "word", "zero", "ones")
# 8-byte values that break bounds, signs and lists ("self" is the word's own address: a cycle).
WORDS = (0, 1, 0xFFFFFFFFFFFFFFFF, 0x8000000000000000, 0x7FFFFFFF, 0xFFFFFFFF, 0x100000000,
         0xFFFF888000000000, 0xFFFFEA0000000000, "self")
# Written over strings the commands print: screen clear, OSC title, invalid UTF-8, bidi.
INJECTIONS = (b"\x1b[2J\x1b[H", b"\x1b]0;owned\x07", b"\xff\xfe\x80", b"N\x9b1m\xe2\x80\xae")


@dataclass(frozen=True)
class Mutation:
    """One replayable mutation: *kind* of structure, *operation*, *seed* (cut: a percentage)."""

    sample: str
    kind: str
    operation: str
    seed: int

    def __str__(self) -> str:
        return f"{self.sample}:{self.kind}:{self.operation}:{self.seed}"

    @classmethod
    def parse(cls, text: str) -> Mutation:
        sample, kind, operation, seed = text.rsplit(":", 3)
        return cls(sample, kind, operation, int(seed))


def choose(regions: dict[str, SampleRegions], rng: random.Random) -> Mutation:
    """A random mutation of one of the samples in *regions*."""
    name = rng.choice(sorted(regions))
    located = regions[name]
    seed = rng.randrange(1 << 30)
    roll = rng.random()
    if roll < 0.12:
        return Mutation(name, "truncate", "cut", rng.randrange(1, 100))
    if roll < 0.17:
        return Mutation(name, "anywhere", rng.choice(("flip", "bytes")), seed)
    kinds = sorted(located.regions)
    kind = rng.choice(kinds)
    if kind in STRING_KINDS and rng.random() < 0.7:
        return Mutation(name, kind, "inject", seed)
    return Mutation(name, kind, rng.choice(OPERATIONS), seed)


def apply(mutation: Mutation, data: bytes, located: SampleRegions) -> bytes:
    """The bytes of the sample (*data*) after *mutation*."""
    if mutation.kind == "truncate":
        return data[:len(data) * mutation.seed // 100]
    rng = random.Random(mutation.seed)
    out = bytearray(data)
    if mutation.kind == "anywhere":
        region = Region(0, len(data))
    else:
        region = rng.choice(located.regions[mutation.kind])
    start, length = region.offset, min(region.length, len(data) - region.offset)
    if length <= 0:
        return bytes(out)
    op = mutation.operation
    if op == "flip":
        for _ in range(rng.randint(1, 8)):
            out[start + rng.randrange(length)] ^= 1 << rng.randrange(8)
    elif op == "bytes":
        at = start + rng.randrange(length)
        n = min(rng.randint(1, 16), start + length - at)
        out[at:at + n] = bytes(rng.randrange(256) for _ in range(n))
    elif op == "word":
        words = max(length // 8, 1)
        at = start + 8 * rng.randrange(words)
        value = rng.choice(WORDS)
        if value == "self":
            value = (region.address + at - start) or 0xFFFFFFFF81000000
        n = min(8, len(out) - at)
        out[at:at + n] = struct.pack("<Q", int(value))[:n]
    elif op == "zero":
        out[start:start + length] = bytes(length)
    elif op == "ones":
        out[start:start + length] = b"\xff" * length
    elif op == "inject":
        text = rng.choice(INJECTIONS)[:max(length, 1)]
        out[start:start + len(text)] = text
    else:
        raise ValueError(f"unknown operation {op!r}")
    return bytes(out)
