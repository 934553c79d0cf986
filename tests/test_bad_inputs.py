"""Every bad input of issue 16 and what the user gets: the README's "Bad input" table is made
from :data:`CASES` (``test_readme_table_is_current``) and every row is run here.

Each case writes its input (a cut or patched sample, a bad argument) and runs the CLI in a
child forked from this process (:mod:`tests.fuzz.runner`, as the fuzzer does); the run must
end with the row's exit status, say the row's text on stderr or stdout, and never print a
traceback, die by a signal, or let a control character from the dump reach the terminal.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fuzz import located_samples
from tests.fuzz.runner import Outcome, Run, execute
from tests.sampledata import SAMPLES_DIR, sample_paths

README = Path(__file__).resolve().parent.parent / "README.md"
ELF = "mainline-6.1"
KDUMP = "mainline-6.1.kdump"
PINNED_PFN = json.loads((SAMPLES_DIR / f"{ELF}.truth.json").read_text())["pinned"][0]["pfn"]
CMA_PFN = next(p["pfn"] for p in json.loads((SAMPLES_DIR / f"{ELF}.truth.json").read_text())
               ["pinned"] if p["cma"])


def cut(name: str, percent: int) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        core, _ = sample_paths(name)
        data = core.read_bytes()
        out = tmp / f"{name}-cut{percent}.core"
        out.write_bytes(data[:len(data) * percent // 100])
        return str(out)
    return make


def kdump_regions() -> dict[str, int]:
    """Byte offsets inside the kdump sample, from its own header (block_size, sub_hdr_size
    and bitmap_blocks at 428 in a 64-bit disk_dump_header): the cut points of the cases."""
    data = sample_paths(KDUMP)[0].read_bytes()
    block_size, sub_hdr_size, bitmap_blocks = struct.unpack_from("<iii", data, 428)
    bitmaps = (1 + sub_hdr_size) * block_size
    descriptors = bitmaps + bitmap_blocks * block_size
    (first_page,) = struct.unpack_from("<Q", data, descriptors)  # the first page_desc's offset
    return {"bitmaps": (bitmaps + descriptors) // 2, "bitmaps_end": descriptors - 1,
            "descriptors": (descriptors + first_page) // 2,
            "data": (first_page + len(data)) // 2}


def cut_kdump(where: str) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        data = sample_paths(KDUMP)[0].read_bytes()
        out = tmp / f"{KDUMP}-cut-{where}.core"
        out.write_bytes(data[:kdump_regions()[where]])
        return str(out)
    return make


def head(name: str, n: int) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        out = tmp / f"{name}-{n}b.core"
        out.write_bytes(sample_paths(name)[0].read_bytes()[:n])
        return str(out)
    return make


def patched(name: str, patch: Callable[[bytearray], None], tag: str) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        data = bytearray(sample_paths(name)[0].read_bytes())
        patch(data)
        out = tmp / f"{name}-{tag}.core"
        out.write_bytes(bytes(data))
        return str(out)
    return make


def region(kind: str, index: int = 0, name: str = ELF) -> tuple[int, int]:
    r = located_samples([name])[name].regions[kind][index]
    return r.offset, r.length


def write_string(kind: str, text: bytes, index: int = 0) -> Callable[[bytearray], None]:
    def patch(data: bytearray) -> None:
        offset, length = region(kind, index)
        data[offset:offset + length] = text[:length].ljust(length, b"\0")
    return patch


def zone_named(text: bytes) -> Callable[[bytearray], None]:
    """The Normal zone's name (the second zone's name string in the sample) set to *text*."""
    return write_string("zone_name", text, 1)


def corrupt_compound_head(data: bytearray) -> None:
    located = located_samples([ELF])[ELF]
    for r in located.regions["struct_page"]:
        if r.address and r.length >= 16:
            pfn = (r.address - 0xFFFFEA0000000000) // 64
            if pfn == PINNED_PFN:
                data[r.offset + 8:r.offset + 16] = struct.pack("<Q", 0xDEAD0001)
                return
    raise AssertionError("struct page of the pinned pfn not located")


def vmcoreinfo_line(old: bytes, new: bytes) -> Callable[[bytearray], None]:
    def patch(data: bytearray) -> None:
        at = data.index(old)
        data[at:at + len(old)] = new
    return patch


def word_at(kind: str, value: bytes, index: int = 0, name: str = ELF
            ) -> Callable[[bytearray], None]:
    """*value* written at the start of the *index*-th located region of *kind*."""
    def patch(data: bytearray) -> None:
        offset, _ = region(kind, index, name)
        data[offset:offset + len(value)] = value
    return patch


def filled(kind: str, byte: int, index: int | None = None, name: str = ELF
           ) -> Callable[[bytearray], None]:
    """The located regions of *kind* (all, or the *index*-th) filled with *byte*."""
    def patch(data: bytearray) -> None:
        located = located_samples([name])[name].regions[kind]
        for r in located if index is None else [located[index]]:
            data[r.offset:r.offset + r.length] = bytes([byte]) * r.length
    return patch


def kdump_field(offset: int, value: int) -> Callable[[bytearray], None]:
    def patch(data: bytearray) -> None:
        data[offset:offset + 4] = struct.pack("<i", value)
    return patch


def kdump_eraseinfo(data: bytearray) -> None:
    (block_size,) = struct.unpack_from("<i", data, 428)
    struct.pack_into("<QQ", data, block_size + 64, 8192, 1 << 40)  # offset, size


@dataclass(frozen=True)
class Case:
    """One bad input: what it is (README), how to make it, the arguments, what the user gets."""

    input: str
    args: tuple[str, ...]
    status: int
    says: str  # a piece of stderr (or of stdout, for results)
    core: Callable[[Path], str] | None = None  # makes the dump file (default: the sample)
    debug: str | None = None  # -s (default: the sample's); "" for none
    fmt: str = "table"
    sample: str = ELF  # whose debug info -s names (a cut or patched file of that sample)


CASES = [
    Case("kdump file cut inside its page bitmaps", ("info",), 2,
         "ends inside its page bitmaps", cut_kdump("bitmaps")),
    Case("kdump file cut at the end of its page bitmaps", ("pinned",), 2,
         "so no page of memory is in it", cut_kdump("bitmaps_end")),
    Case("kdump file cut inside its page descriptors", ("zones",), 2,
         "is truncated", cut_kdump("descriptors")),
    Case("kdump file cut in its page data", ("pinned",), 2,
         "is truncated", cut_kdump("data")),
    Case("kdump file of 64 bytes", ("info",), 2, "truncated kdump header", head(KDUMP, 64)),
    Case("kdump header with an impossible block size", ("info",), 2,
         "corrupt kdump header", patched(KDUMP, kdump_field(428, 3), "blocksize")),
    Case("kdump header whose bitmaps run past the end of the file", ("info",), 2,
         "ends inside its page bitmaps", patched(KDUMP, kdump_field(436, 1 << 20), "bitmaps")),
    Case("kdump sub-header with an impossible ERASEINFO size (libkdumpfile refuses it)",
         ("info",), 2, "as a kdump file: Cannot read ERASEINFO",
         patched(KDUMP, kdump_eraseinfo, "eraseinfo")),
    Case("ELF dump cut at 50% (struct pages past the cut)", ("pinned",), 4,
         "incomplete result: could not read: 6144 struct pages", cut(ELF, 50)),
    Case("ELF dump cut at 50%, JSON", ("pinned",), 4, '"struct pages": 6144', cut(ELF, 50),
         fmt="json"),
    Case("ELF dump cut at 50%: `stacks`", ("stacks",), 4,
         "incomplete result: could not read: 6144 struct pages", cut(ELF, 50)),
    Case("ELF dump cut at 50%: `owners`, JSON", ("owners",), 4, '"struct pages": 6144',
         cut(ELF, 50), fmt="json"),
    Case("ELF dump cut at 50%: `zones`", ("zones",), 4,
         "incomplete result: could not read: 6144 struct pages", cut(ELF, 50)),
    Case("ELF dump cut at 50%: `info` (page_ext past the cut)", ("info",), 4,
         "could not read: 6144 page_ext entries", cut(ELF, 50)),
    Case("ELF dump cut at 50%: `cma` (bitmaps past the cut)", ("cma",), 4,
         "could not read: 2 CMA areas", cut(ELF, 50)),
    Case("ELF dump cut at 50%: `cma --blockers`, CSV", ("cma", "--blockers"), 4,
         "could not read: 2 CMA areas", cut(ELF, 50), fmt="csv"),
    Case("ELF dump cut at 50%: `cma NAME --try N`", ("cma", "reserved", "--try", "8"), 2,
         "CMA area 'reserved': its bitmap at 0x", cut(ELF, 50)),
    Case("Android dump cut at 50%: `pinner-log` (ring buffer past the cut)", ("pinner-log",), 4,
         "could not read: 4096 page_pinner ring slots", cut("android-d", 50),
         sample="android-d"),
    Case("page_pinner ring buffer overwritten with 0xff: `pinner-log`", ("pinner-log",), 0,
         "26 slot(s) rejected as never written or garbage",
         patched("android-d", filled("page_pinner", 0xFF, 4, "android-d"), "ringff"),
         sample="android-d"),
    Case("stack depot pool zeroed: `stacks`", ("stacks",), 4,
         "could not read: 4 stacks (stack depot)",
         patched(ELF, filled("stack_pool", 0), "poolzero")),
    Case("`cma_area_count` corrupted (0xffffffff)", ("cma",), 4,
         "could not read: 1 CMA area count (cma_area_count out of range)",
         patched(ELF, word_at("cma", b"\xff\xff\xff\xff"), "cmacount")),
    Case("`cma nope` (no such area)", ("cma", "nope"), 2,
         "no CMA area named 'nope' (areas here: reserved, vidbuf)"),
    Case("`cma NAME --try 0`", ("cma", "reserved", "--try", "0"), 2,
         "0 is not in the range x>=1"),
    Case("`cma NAME --try 8 --align 99`", ("cma", "reserved", "--try", "8", "--align", "99"), 2,
         "99 is not in the range 0<=x<=31"),
    Case("`cma --try 8` without an area", ("cma", "--try", "8"), 2,
         "--try needs the area"),
    Case("`stacks --top -1`", ("stacks", "--top", "-1"), 2, "-1 is not in the range x>=0"),
    Case("`stacks --min-extra 0`", ("stacks", "--min-extra", "0"), 2,
         "0 is not in the range x>=1"),
    Case("`pinner-log` on a kernel without page_pinner", ("pinner-log",), 2,
         "'pinner-log' needs page_pinner"),
    Case("ELF dump cut at 5% (kernel globals past the cut)", ("info",), 2,
         "is truncated: ", cut(ELF, 5)),
    Case("ELF dump of 40 bytes", ("info",), 2, "truncated or corrupt ELF header", head(ELF, 40)),
    Case("empty file", ("info",), 2, "file is empty", head(ELF, 0)),
    Case("VMCOREINFO without SECTION_SIZE_BITS (no memory map found)", ("pinned",), 4,
         "6144 struct pages outside the memory map found",
         patched(ELF, vmcoreinfo_line(b"SECTION_SIZE_BITS", b"SECTION_SIZE_BYTS"), "nossb")),
    Case("`page 0` (below the first valid pfn)", ("page", "0"), 2,
         "pfn 0x0 has no struct page: it is below the first one of the valid pfns"),
    Case("`page 0x200000` (past max pfn)", ("page", "0x200000"), 2,
         "it is past the last one of the valid pfns"),
    Case("`page 0x1800` (a pfn in a memory hole)", ("page", "0x1800"), 2,
         "it is in a memory hole of the valid pfns"),
    Case("`page -- -1`", ("page", "--", "-1"), 2, "-1 is out of range"),
    Case("`page --phys -- -1`", ("page", "--phys", "--", "-1"), 2, "-1 is out of range"),
    Case("`page 18446744073709551616` (2^64)", ("page", "18446744073709551616"), 2,
         "18446744073709551616 is out of range"),
    Case("`page 0xffffea0000000001` (not a struct page address)",
         ("page", "0xffffea0000000001"), 2, "is a kernel address but not that of a struct page"),
    Case("`page PFN` whose struct page has a corrupted compound_head", ("page", hex(PINNED_PFN)),
         0, "points to no head page of this memory map (corrupted): no folio verdict",
         patched(ELF, corrupt_compound_head, "head")),
    Case("`pinned --limit -1`", ("pinned", "--limit", "-1"), 2, "-1 is not in the range x>=0"),
    Case("`pinned --min-extra 0`", ("pinned", "--min-extra", "0"), 2,
         "0 is not in the range x>=1"),
    Case("`pinned --node 99`", ("pinned", "--node", "99"), 2, "no node 99 on this system"),
    Case("`pinned --zone Nope`", ("pinned", "--zone", "Nope"), 2, "no zone named Nope"),
    Case("`-c VMCORE --qemu SOCKET`", ("--qemu", "/nonexistent.sock", "info"), 2,
         "two targets given"),
    Case("`-o /dev/full`", ("-o", "/dev/full", "info"), 2,
         "cannot write /dev/full: No space left on device"),
    Case("`-o DIR/missing/file`", ("-o", "/nonexistent/out.json", "info"), 2,
         "cannot write /nonexistent/out.json: No such file or directory"),
    Case("`-s DIRECTORY` without a vmlinux", ("info",), 2, "no vmlinux for kernel",
         debug=str(SAMPLES_DIR / "layouts")),
    Case("`-s FILE` that does not exist", ("info",), 2, "does not exist",
         debug="/nonexistent/vmlinux"),
    Case("`-s` of another kernel's vmlinux", ("info",), 2,
         "the debug info does not match this kernel",
         debug=str(SAMPLES_DIR / "mainline-6.12.debug")),
    Case("zone name holding `ESC[2J` (clear screen)", ("zones",), 0, "\\x1b[2J",
         patched(ELF, zone_named(b"\x1b[2J\x1b[H"), "zoneesc")),
    Case("zone name holding `ESC[2J`, JSON", ("zones",), 0, '"\\u001b[2J',
         patched(ELF, zone_named(b"\x1b[2J\x1b[H"), "zoneesc"), fmt="json"),
    Case("zone name holding `ESC[2J`, CSV", ("zones",), 0, "\\x1b[2J",
         patched(ELF, zone_named(b"\x1b[2J\x1b[H"), "zoneesc"), fmt="csv"),
    Case("zone name with bytes that are not UTF-8 (0xff)", ("info",), 0, "\ufffd\ufffd",
         patched(ELF, zone_named(b"\xff\xfeNor"), "zoneff")),
    Case("CMA area name holding `ESC[2J`", ("pinned",), 0, "\\x1b[2J",
         patched(ELF, write_string("cma_name", b"\x1b[2Jevil"), "cmaesc")),
    Case("kernel release holding an OSC title sequence", ("info",), 0, "\\x1b]0;owned\\x07",
         patched(ELF, write_string("release", b"\x1b]0;owned\x07", 0), "release")),
]


def _id(case: Case) -> str:
    return re.sub(r"[^a-z0-9]+", "-", case.input.lower()).strip("-")[:60] + f"-{case.fmt}"


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    tmp = tmp_path_factory.mktemp("bad-inputs")
    core, debug = sample_paths(ELF)
    runs = []
    for case in CASES:
        path = case.core(tmp) if case.core else str(core)
        d = case.debug if case.debug is not None else str(
            sample_paths(KDUMP if case.core and "kdump" in case.input else case.sample)[1])
        runs.append(Run(_id(case), path, d, case.args, case.fmt))
    return {o.run.case: o for o in execute(runs, jobs=2, timeout=60)}


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_bad_input(case: Case, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[_id(case)]
    said = outcome.stderr + outcome.stdout
    assert outcome.cls not in ("signal", "timeout", "traceback", "internal", "unescaped",
                               "bad_output", "messy_error"), (outcome.cls, said)
    assert outcome.status == case.status, said
    assert case.says in said, said
    if case.status == 2:
        assert outcome.stderr.startswith(("pinspect: error:", "Usage:")), said


def readme_table() -> str:
    """The README's table of bad inputs, made from CASES."""
    lines = ["| input | exit status | what the user gets (an excerpt) |", "|---|---|---|"]
    for case in CASES:
        shown = case.says.replace("|", "\\|")
        fmt = f" ({case.fmt})" if case.fmt != "table" else ""
        lines.append(f"| {case.input}{fmt} | {case.status} | `{shown}` |")
    return "\n".join(lines)


def test_readme_table_is_current() -> None:
    text = README.read_text()
    assert readme_table() in text, (
        "README's bad-input table is out of date; replace it with:\n" + readme_table())
