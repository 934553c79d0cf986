"""pinspect.target, and the parsers beneath it (ELF, VMCOREINFO, kdump header), on the bundled
samples: what the parsers read must be what drgn reads."""

from __future__ import annotations

import mmap
import shutil
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import drgn
import pytest

from pinspect import elf, vmcoreinfo
from pinspect.cache import cache_dir
from pinspect.dumps import kdump, prepare_core
from pinspect.errors import DebugInfoError, TargetError
from pinspect.target import open_program
from pinspect.typesource import DEBUG_INFO_HINT, DWARF

Sample = Callable[[str], Any]  # conftest's sample fixture


def elf_loads(path: Path) -> list[elf.ProgramHeader]:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return [ph for ph in elf.program_headers(data) if ph.type == elf.PT_LOAD]


def elf_notes(path: Path) -> list[elf.Note]:
    data = path.read_bytes()
    header = elf.read_header(data)
    return [
        note
        for ph in elf.program_headers(data, header)
        if ph.type == elf.PT_NOTE
        for note in elf.iter_notes(data[ph.offset : ph.offset + ph.filesz], header.byteorder)
    ]


# --- opening ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kind",
    [("mainline-6.1", "elf"), ("mainline-6.1.kdump", "kdump"), ("mainline-6.12", "elf")],
)
def test_opens_each_kind_of_sample(sample: Sample, name: str, kind: str) -> None:
    p = sample(name)
    assert prepare_core(str(p.core)).kind == kind
    prog = open_program(str(p.core), [str(p.debug)])
    assert prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL
    assert prog.main_module().debug_file_status == drgn.ModuleFileStatus.HAVE
    assert prog.type("struct page").size == 64


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="no such file") as err:
        open_program(str(tmp_path / "nope.core"))
    assert err.value.hint == "check the path of the dump"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="is a directory, not a dump file") as err:
        open_program(str(tmp_path))
    assert "accepted formats" in err.value.hint


def test_not_a_dump(sample: Sample) -> None:
    p = sample("mainline-6.1")
    with pytest.raises(TargetError, match=r"not a kernel dump \(unknown magic") as err:
        open_program(str(p.truth))
    assert "accepted formats" in err.value.hint
    with pytest.raises(TargetError, match="an ELF executable, not a core dump") as err:
        open_program(str(p.debug))
    assert "-s" in err.value.hint


def test_mismatched_vmlinux(sample: Sample) -> None:
    core, other = sample("android-a0"), sample("mainline-6.12")
    wanted = vmcoreinfo.parse(elf_notes(core.core)[0].desc)["BUILD-ID"]
    got = elf.build_id(str(other.debug))
    assert got is not None and got != wanted
    with pytest.raises(DebugInfoError) as err:
        open_program(str(core.core), [str(other.debug)])
    assert err.value.message == (
        f"the debug info does not match this kernel: kernel build ID {wanted}, "
        f"{other.debug} has build ID {got}"
    )
    assert err.value.hint == "use the vmlinux built together with this kernel"


def test_missing_debug_file(sample: Sample, tmp_path: Path) -> None:
    missing = tmp_path / "vmlinux"
    with pytest.raises(DebugInfoError, match=f"debug info file {missing} does not exist") as err:
        open_program(str(sample("mainline-6.1").core), [str(missing)])
    assert err.value.hint == DEBUG_INFO_HINT


def test_no_debug_info_found(sample: Sample, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEBUGINFOD_URLS", raising=False)
    with pytest.raises(DebugInfoError) as err:
        open_program(str(sample("mainline-6.1").core), types=DWARF)
    assert err.value.message == "no debug info found for kernel 6.1.0-pinspect"
    assert "linux-image-6.1.0-pinspect-dbg" in err.value.hint  # (tests/test_debuginfo.py)
    # By default the kernel's BTF is tried next: the synthetic samples have none (no kallsyms
    # in their VMCOREINFO to find it with).
    with pytest.raises(DebugInfoError) as err:
        open_program(str(sample("mainline-6.1").core))
    assert err.value.message == (
        "no debug info found for kernel 6.1.0-pinspect, and no usable BTF: cannot locate "
        "kallsyms: the VMCOREINFO of 6.1.0-pinspect has no SYMBOL(kallsyms_names) "
        "(Linux 6.0 and later have it)")
    assert "linux-image-6.1.0-pinspect-dbg" in err.value.hint
    assert "CONFIG_DEBUG_INFO_BTF" in err.value.hint


def test_type_source_is_pluggable(sample: Sample) -> None:
    """open_program loads the types from the source it is given, with the -s files."""
    p = sample("mainline-6.1")
    calls: list[Sequence[str]] = []

    class Recording:
        name = "recording DWARF"

        def load(self, prog: drgn.Program, paths: Sequence[str] = ()) -> None:
            calls.append(paths)
            DWARF.load(prog, paths)

    prog = open_program(str(p.core), [str(p.debug)], types=Recording())
    assert calls == [[str(p.debug)]]
    assert prog.main_module().debug_file_status == drgn.ModuleFileStatus.HAVE


# --- ELF -------------------------------------------------------------------------------------


def assert_loads_read_as_drgn_reads(core: Path, prog: drgn.Program) -> None:
    """Every PT_LOAD's file bytes are what drgn reads at its physical address."""
    data = core.read_bytes()
    loads = [ph for ph in elf_loads(core) if ph.filesz]
    assert loads
    for ph in loads:
        for at in (0, ph.filesz - 64):
            want = data[ph.offset + at : ph.offset + at + 64]
            assert prog.read(ph.paddr + at, 64, True) == want


def test_program_headers_match_drgn(sample: Sample) -> None:
    p = sample("mainline-6.1")
    assert_loads_read_as_drgn_reads(p.core, open_program(str(p.core), [str(p.debug)]))


def test_program_headers_past_pn_xnum(sample: Sample, tmp_path: Path) -> None:
    """With e_phnum = PN_XNUM the count is in section header 0, which drgn reads too."""
    p = sample("mainline-6.1")
    copy = tmp_path / "xnum.core"
    shutil.copyfile(p.core, copy)
    phnum = len(elf.program_headers(p.core.read_bytes()))
    with open(copy, "r+b") as f:
        shoff = f.seek(0, 2)
        f.write(struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, phnum, 0, 0))  # sh_info
        f.seek(0x28)
        f.write(struct.pack("<Q", shoff))
        f.seek(0x36)
        f.write(struct.pack("<HHHH", 56, 0xFFFF, 64, 1))
    header = elf.read_header(copy.read_bytes())
    assert header.phnum == phnum and header.shnum == 1
    assert elf_loads(copy) == elf_loads(p.core)
    assert_loads_read_as_drgn_reads(copy, open_program(str(copy), [str(p.debug)]))


def test_build_id(sample: Sample) -> None:
    p = sample("mainline-6.1")
    prog = open_program(str(p.core), [str(p.debug)])
    assert prog.main_module().build_id is not None
    assert elf.build_id(str(p.debug)) == prog.main_module().build_id.hex()
    assert elf.build_id(str(p.core)) is None  # no section headers
    assert elf.build_id(str(p.truth)) is None  # not ELF


def test_file_type(sample: Sample) -> None:
    p = sample("mainline-6.1")
    assert elf.file_type(p.core.read_bytes()[:64]) == elf.ET_CORE
    with pytest.raises(ValueError):
        elf.file_type(elf.ELF_MAGIC + b"\x02")  # cut short
    with pytest.raises(ValueError):
        elf.read_header(b"KDUMP   " + bytes(56))


# --- VMCOREINFO ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mainline-6.1", "mainline-6.12", "android-d"])
def test_vmcoreinfo_note_is_drgns(sample: Sample, name: str) -> None:
    p = sample(name)
    prog = open_program(str(p.core), [str(p.debug)])
    (note,) = [n for n in elf_notes(p.core) if n.name == b"VMCOREINFO"]
    info = vmcoreinfo.parse(note.desc)
    assert info == vmcoreinfo.from_program(prog)
    assert info == vmcoreinfo.parse(prog["VMCOREINFO"].string_().decode())
    assert info.symbol("init_top_pgt") == prog["init_top_pgt"].address_
    assert info["BUILD-ID"] == prog.main_module().build_id.hex()


def test_kdump_header_vmcoreinfo_is_drgns(sample: Sample) -> None:
    p = sample("mainline-6.1.kdump")
    prog = open_program(str(p.core), [str(p.debug)])
    hdr = kdump.read_kdump_header(str(p.core))
    assert hdr.parsed_vmcoreinfo() == vmcoreinfo.from_program(prog)
    assert kdump.arch_from_header(hdr) == (
        drgn.Architecture.X86_64,
        "VMCOREINFO has SYMBOL(init_top_pgt)",
    )


def test_vmcoreinfo_parse() -> None:
    info = vmcoreinfo.parse(
        b"OSRELEASE=6.1.0\nno equals sign\nNUMBER(SECTION_SIZE_BITS)=27\n"
        b"SYMBOL(init_top_pgt)=ffffffff8260a000\nCRASHTIME=1\0garbage=after the NUL\n"
    )
    assert info == {
        "OSRELEASE": "6.1.0",
        "NUMBER(SECTION_SIZE_BITS)": "27",
        "SYMBOL(init_top_pgt)": "ffffffff8260a000",
        "CRASHTIME": "1",
    }
    assert vmcoreinfo.parse("A=1\r\nB=x=y") == {"A": "1", "B": "x=y"}
    assert info.number("SECTION_SIZE_BITS") == 27
    assert info.symbol("init_top_pgt") == 0xFFFFFFFF8260A000
    with pytest.raises(KeyError):
        info.number("MAX_PHYSMEM_BITS")
    with pytest.raises(ValueError):
        vmcoreinfo.parse("NUMBER(X)=abc").number("X")


def test_vmcoreinfo_of_a_program_without_one() -> None:
    assert vmcoreinfo.from_program(drgn.Program()) == {}


# --- cache -----------------------------------------------------------------------------------


def test_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PINSPECT_CACHE", str(tmp_path))
    assert cache_dir() == str(tmp_path)
    monkeypatch.delenv("PINSPECT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == str(tmp_path / ".cache" / "pinspect")
