"""pinspect.btf: BTF blobs as drgn types (written by tests.btfwriter, and this machine's own
/sys/kernel/btf/vmlinux where it has one), and what a truncated or corrupt blob gives."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import drgn
import pytest
from drgn import FindObjectFlags, Program, Symbol, SymbolBinding, SymbolIndex, SymbolKind, TypeKind

from pinspect import btf as k
from pinspect.btf import Btf, BtfFormatError, BtfTypes
from pinspect.errors import DebugInfoError
from pinspect.typesource import _object_finder
from tests.btfwriter import BtfWriter, kernel_like

SYSFS_BTF = Path("/sys/kernel/btf/vmlinux")


def program(blob: bytes) -> tuple[Program, BtfTypes]:
    prog = Program(drgn.Platform(drgn.Architecture.X86_64, drgn.PlatformFlags.IS_64_BIT
                                 | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
    types = BtfTypes(prog, Btf(blob, "test blob"))
    prog.register_type_finder("btf", types.find_type, enable_index=-1)
    return prog, types


def test_struct_page() -> None:
    prog, _ = program(kernel_like().blob())
    page = prog.type("struct page")
    assert page.size == 64
    assert drgn.offsetof(page, "lru") == 8  # through the anonymous union
    assert drgn.offsetof(page, "compound_head") == 8
    assert drgn.offsetof(page, "_refcount") == 52
    assert page.member("_refcount").type.type_name() == "atomic_t"
    assert page.member("mapping").type.type_name() == "void *"
    lru = page.member("lru").type
    assert lru.member("next").type.type.tag == "list_head"  # a type refers to a later id


def test_bit_fields() -> None:
    prog, _ = program(kernel_like().blob())
    bits = prog.type("struct bits")
    assert [(m.name, m.bit_offset, m.bit_field_size) for m in bits.members or ()] == [
        ("low", 0, 3), ("high", 3, 29)]


def test_enums_and_constants() -> None:
    prog, types = program(kernel_like().blob())
    flags = prog.type("enum pageflags")
    assert [(e.name, e.value) for e in flags.enumerators or ()] == [
        ("PG_locked", 0), ("PG_head", 6), ("__NR_PAGEFLAGS", 25)]
    head = types.constant("PG_head")
    assert head is not None and head.value_() == 6 and head.type_.tag == "pageflags"
    anonymous = types.constant("SECTION_MAP_LAST_BIT")
    assert anonymous is not None and anonymous.value_() == 5
    assert prog.type("enum signed_enum").enumerators[0].value == -2  # type: ignore[index]
    assert prog.type("enum wide").enumerators[0].value == 1 << 40  # type: ignore[index]
    assert types.constant("PG_nonexistent") is None


def test_primitives_typedefs_qualifiers() -> None:
    prog, _ = program(kernel_like().blob())
    assert prog.type("unsigned long").size == 8
    assert prog.type("long unsigned int").size == 8
    nodemask = prog.type("nodemask_t")
    assert nodemask.kind == TypeKind.TYPEDEF
    assert nodemask.type.member("bits").type.length == 1
    assert prog.type("bool").type.kind == TypeKind.BOOL
    assert prog.type("double").kind == TypeKind.FLOAT
    assert prog.type("struct list_head *[]").kind == TypeKind.ARRAY  # drgn parses the rest
    with pytest.raises(LookupError):
        prog.type("struct no_such_struct")


def test_forward_declaration_resolves_to_the_definition() -> None:
    w = BtfWriter()
    ptr = w.ptr(w.fwd("later"))
    w.struct("later", 8, [("x", w.int_("long", 8, signed=True), 0, 0)])
    w.typedef("later_ptr", ptr)
    prog, _ = program(w.blob())
    assert prog.type("later_ptr").type.type.size == 8
    w2 = BtfWriter()
    w2.typedef("opaque_ptr", w2.ptr(w2.fwd("opaque")))
    prog2, _ = program(w2.blob())
    assert not prog2.type("opaque_ptr").type.type.is_complete()


def test_functions_and_object_finder() -> None:
    """Globals: address from the symbol table, type from BTF's VAR (per-CPU) or from
    pinspect.variables; enumerators; functions."""
    prog, types = program(kernel_like().blob())
    symbols = [Symbol(name, addr, size, SymbolBinding.GLOBAL, kind) for name, addr, size, kind in (
        ("runqueues", 0x1000, 32, SymbolKind.OBJECT),
        ("nr_node_ids", 0x2000, 4, SymbolKind.OBJECT),
        ("node_states", 0x3000, 48, SymbolKind.OBJECT),
        ("page_mapcount", 0xFFFFFFFF81000000, 64, SymbolKind.FUNC),
        ("undeclared_global", 0x4000, 8, SymbolKind.OBJECT),
        ("vmemmap_populate", 0xFFFFFFFF81002000, 96, SymbolKind.FUNC),  # not in the BTF
    )]
    prog.register_symbol_finder("test", SymbolIndex(symbols), enable_index=0)
    prog.register_object_finder("btf", _object_finder(types), enable_index=-1)
    runqueues = prog["runqueues"]
    assert runqueues.address_ == 0x1000 and runqueues.type_.length == 4  # from BTF's VAR
    nr = prog["nr_node_ids"]
    assert nr.address_ == 0x2000 and nr.type_.type_name() == "unsigned int"  # declared
    assert prog["node_states"].type_.type.type_name() == "nodemask_t"
    assert prog["PG_head"].value_() == 6
    func = prog.object("page_mapcount", FindObjectFlags.FUNCTION)
    assert func.type_.kind == TypeKind.FUNCTION and func.address_ == 0xFFFFFFFF81000000
    assert func.type_.is_variadic
    # a text symbol BTF does not describe (5.10's BTF has only ftrace's functions): found,
    # of unknown prototype; a data symbol is no function
    untyped = prog.object("vmemmap_populate", FindObjectFlags.FUNCTION)
    assert untyped.type_.kind == TypeKind.FUNCTION and untyped.address_ == 0xFFFFFFFF81002000
    with pytest.raises(LookupError):
        prog.object("undeclared_global", FindObjectFlags.FUNCTION)
    with pytest.raises(LookupError):
        prog["undeclared_global"]  # no type known for it
    with pytest.raises(LookupError):
        prog["mem_section"]  # declared, but no such symbol


class _Unshared(BtfWriter):
    """Every name a string of its own (BTF allows the same string at several offsets)."""

    def name(self, text: str | None) -> int:
        if not text:
            return 0
        off = len(self.strings)
        self.strings += text.encode() + b"\0"
        return off


@pytest.mark.parametrize("writer", [BtfWriter, _Unshared])
def test_lookups_by_name_compare_whole_names(writer: type[BtfWriter]) -> None:
    """Names that share their first 8 bytes, of 1 to 20 bytes, some twice (shared strings or
    not): each lookup by name finds exactly the types and the first enumerator of that name,
    as a naive search of every record does."""
    rnd = random.Random(7)
    w = writer()
    int_id = w.int_("int", 4, signed=True)
    pool = ["m", "me", "mem_sec", "mem_sect", "mem_secti", "mem_section", "mem_section_usage",
            "mem_section_usagf", "page", "page_ext", "page_exts", "pageblock_flags_x"]
    for _ in range(300):
        name = rnd.choice(pool)
        what = rnd.randrange(4)
        if what == 0:
            w.struct(name, 4, [("x", int_id, 0, 0)])
        elif what == 1:
            w.typedef(name, int_id)
        elif what == 2:
            w.enum(name, [(rnd.choice(pool).upper(), rnd.randrange(100)) for _ in range(3)])
        else:
            w.enum64(name, [(rnd.choice(pool).upper(), rnd.randrange(1 << 40)) for _ in range(2)])
    b = Btf(w.blob(), "test blob")
    kinds = {k.STRUCT, k.TYPEDEF, k.ENUM, k.ENUM64}
    for name in [*pool, "mem_section_usag", "mem_section_usage_", "", "x", "page_e"]:
        for wanted in ({k.STRUCT}, {k.TYPEDEF, k.ENUM}, kinds):
            naive = [i for i in range(1, b.count) if b.kind(i) in wanted and b.name(i) == name]
            assert b.ids_named(name, wanted) == naive, (name, wanted)
        first = None
        for i in range(1, b.count):
            if b.kind(i) in (k.ENUM, k.ENUM64) and first is None:
                fmt = "Ii" if b.kind(i) == k.ENUM else "III"
                for index, item in enumerate(b.items(i, fmt)):
                    if b.string(item[0]) == name.upper():
                        first = (i, index)
                        break
        assert b.enumerator(name.upper()) == first, name


# --- corrupt and truncated blobs --------------------------------------------------------------


def test_header_errors() -> None:
    good = kernel_like().blob()
    cases = {
        b"": "shorter than a BTF header",
        b"\x00\x00" + good[2:]: "no BTF magic",
        good[:2] + b"\x02" + good[3:]: "BTF version 2",
        good[:-5]: "truncated: the string section ends at byte",
        good[:30]: "truncated: the type section ends",
    }
    for blob, message in cases.items():
        with pytest.raises(BtfFormatError, match=message) as err:
            Btf(blob, "test blob")
        assert isinstance(err.value, DebugInfoError) and err.value.hint
        assert err.value.message.startswith("the kernel's BTF is corrupt: test blob: ")


def test_bad_records() -> None:
    w = kernel_like()
    blob = bytearray(w.blob())
    first = 24
    bad_kind = bytearray(blob)
    bad_kind[first + 7] = 31  # kind byte of type 1's info
    with pytest.raises(BtfFormatError, match="unknown kind 31"):
        Btf(bytes(bad_kind))
    bad_vlen = bytearray(blob)
    struct.pack_into("<I", bad_vlen, first + 4, k.STRUCT << 24 | 0xFFFF)
    with pytest.raises(BtfFormatError, match="runs past the end|unknown kind|truncated"):
        Btf(bytes(bad_vlen))
    bad_name = bytearray(blob)
    struct.pack_into("<I", bad_name, first, 0xFFFFFF)
    with pytest.raises(BtfFormatError, match="outside the string section"):
        Btf(bytes(bad_name))


def test_dangling_type_id_and_cycles() -> None:
    w = BtfWriter()
    w.typedef("dangling", 999)
    w.struct("holder", 8, [("x", 999, 0, 0)])
    w.typedef("loop", 4)
    w.typedef("loop2", 3)
    prog, _ = program(w.blob())
    with pytest.raises(BtfFormatError, match="type id 999 is out of range"):
        prog.type("dangling")
    with pytest.raises(BtfFormatError, match="type id 999 is out of range"):
        prog.type("struct holder")
    with pytest.raises(BtfFormatError, match="refers to itself"):
        prog.type("loop")


def _walk(prog: Program, names: list[str]) -> None:
    """Look up *names* and touch every member's type, two levels deep."""
    for name in names:
        try:
            t = prog.type(name).unaliased()
        except LookupError:
            continue
        if t.kind not in (TypeKind.STRUCT, TypeKind.UNION):
            continue
        for m in t.members or ():
            inner = m.type.unaliased()
            for m2 in inner.members or () if inner.kind in (TypeKind.STRUCT,
                                                             TypeKind.UNION) else ():
                m2.type.unaliased()


KERNEL_TYPES = ["struct page", "struct folio", "struct zone", "struct pglist_data",
                "struct mem_section", "enum pageflags", "struct mm_struct", "nodemask_t"]


@pytest.mark.skipif(not SYSFS_BTF.exists(), reason="this machine's kernel has no BTF")
def test_this_machines_btf() -> None:
    prog, types = program(SYSFS_BTF.read_bytes())
    page = prog.type("struct page")
    assert page.size == 64 and drgn.offsetof(page, "flags") == 0
    assert types.constant("PG_head") is not None
    _walk(prog, KERNEL_TYPES)


@pytest.mark.skipif(not SYSFS_BTF.exists(), reason="this machine's kernel has no BTF")
def test_corrupted_copies_of_a_real_blob() -> None:
    """Truncations and byte flips of a real blob give BtfFormatError or types, nothing else."""
    real = SYSFS_BTF.read_bytes()
    rng = random.Random(15)
    outcomes = {"error": 0, "parsed": 0}
    for trial in range(40):
        blob = bytearray(real)
        if trial % 2:
            blob = blob[:rng.randrange(len(blob))]
        else:
            for _ in range(1 + trial):
                blob[rng.randrange(24, len(blob))] = rng.randrange(256)
        try:
            prog, _ = program(bytes(blob))
            _walk(prog, KERNEL_TYPES)
        except BtfFormatError:
            outcomes["error"] += 1
        else:
            outcomes["parsed"] += 1
    assert outcomes["error"] >= 20  # every truncation at least


# --- the BTF type source on a program whose memory holds the blob ------------------------------


def _program_with_blob_in_memory(blob: bytes, monkeypatch: pytest.MonkeyPatch) -> Program:
    prog = Program(drgn.Platform(drgn.Architecture.X86_64, drgn.PlatformFlags.IS_64_BIT
                                 | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
    start = 0xFFFFFFFF82000000
    prog.add_memory_segment(start, len(blob), lambda address, count, offset, physical:
                            blob[offset:offset + count])
    symbols = [Symbol("__start_BTF", start, 0, SymbolBinding.GLOBAL, SymbolKind.OBJECT),
               Symbol("__stop_BTF", start + len(blob), 0, SymbolBinding.GLOBAL,
                      SymbolKind.OBJECT)]
    prog.register_symbol_finder("test", SymbolIndex(symbols), enable_index=0)
    monkeypatch.setattr("pinspect.typesource.kallsyms.load", lambda prog: None)
    return prog


def test_btf_source_reads_the_blob_from_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from pinspect.typesource import BTF, source_info

    prog = _program_with_blob_in_memory(kernel_like().blob(), monkeypatch)
    BTF.load(prog)
    assert prog.type("struct page").size == 64
    info = source_info(prog)
    assert info is not None and info.types == "BTF" and info.symbols == "kallsyms"
    assert info.types_origin.startswith("kernel memory at 0xffffffff82000000")


@pytest.mark.parametrize("damage", ["truncate", "magic"])
def test_btf_source_refuses_a_corrupt_blob(monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    from pinspect.typesource import BTF

    blob = kernel_like().blob()
    blob = blob[:len(blob) // 2] if damage == "truncate" else b"\xff\xff" + blob[2:]
    prog = _program_with_blob_in_memory(blob, monkeypatch)
    with pytest.raises(DebugInfoError) as err:
        BTF.load(prog)
    assert err.value.message.startswith(
        "the kernel's BTF is corrupt: kernel memory at 0xffffffff82000000: ")
    assert "-s PATH" in err.value.hint


def test_btf_source_needs_struct_page(monkeypatch: pytest.MonkeyPatch) -> None:
    from pinspect.typesource import BTF

    w = BtfWriter()
    w.int_("int", 4, signed=True)
    prog = _program_with_blob_in_memory(w.blob(), monkeypatch)
    with pytest.raises(DebugInfoError, match="has no struct page"):
        BTF.load(prog)
