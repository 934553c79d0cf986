"""-s DIRECTORY: the kernel's vmlinux found in the layouts of build trees and of Debian,
Ubuntu and Fedora debug packages; and what the error says when nothing is found."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pinspect import debuginfo, elf, vmcoreinfo
from pinspect.errors import DebugInfoError
from pinspect.target import open_program
from tests.sampledata import sample_paths

RELEASE = "6.1.0-pinspect"  # the mainline-6.1 sample's OSRELEASE


def place(root: Path, relative: str, source: Path) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, path)
    return path


@pytest.mark.parametrize("layout", [
    "vmlinux-{release}",
    "vmlinux",                                       # build tree
    "usr/lib/debug/boot/vmlinux-{release}",          # Debian -dbg, Ubuntu -dbgsym (dpkg -x)
    "usr/lib/debug/lib/modules/{release}/vmlinux",   # Fedora kernel-debuginfo (rpm2cpio)
    "boot/vmlinux-{release}",                        # -s /usr/lib/debug
    "lib/modules/{release}/vmlinux",                 # -s /usr/lib/debug, Fedora
    ".build-id/{head}/{tail}.debug",                 # -s /usr/lib/debug, by build ID
])
def test_a_directory_is_searched(tmp_path: Path, layout: str) -> None:
    core, debug = sample_paths("mainline-6.1")
    build_id = elf.build_id(str(debug))
    assert build_id is not None
    place(tmp_path, layout.format(release=RELEASE, head=build_id[:2], tail=build_id[2:]), debug)
    prog = open_program(core=str(core), vmlinux=[str(tmp_path)])
    assert vmcoreinfo.from_program(prog)["OSRELEASE"] == RELEASE
    assert prog.main_module().debug_file_path is not None


def test_the_file_with_the_kernels_build_id_wins(tmp_path: Path) -> None:
    _, debug = sample_paths("mainline-6.1")
    _, other = sample_paths("mainline-6.12")
    place(tmp_path, f"vmlinux-{RELEASE}", other)  # right name, wrong kernel
    right = place(tmp_path, f"usr/lib/debug/lib/modules/{RELEASE}/vmlinux", debug)
    build_id = elf.build_id(str(debug))
    assert debuginfo.find_in_directory(str(tmp_path), RELEASE, build_id) == [str(right)]
    # without a build ID to compare, every candidate in layout order
    assert len(debuginfo.find_in_directory(str(tmp_path), RELEASE, None)) == 2
    # without a release, names are globbed
    assert str(right) in debuginfo.find_in_directory(str(tmp_path), None, build_id)


def test_an_empty_directory_says_what_to_install(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEBUGINFOD_URLS", raising=False)
    core, debug = sample_paths("mainline-6.1")
    with pytest.raises(DebugInfoError) as err:
        open_program(core=str(core), vmlinux=[str(tmp_path)])
    assert err.value.message == f"no vmlinux for kernel {RELEASE} in {tmp_path}"
    hint = err.value.hint
    for text in (f"apt install linux-image-{RELEASE}-dbg", f"linux-image-{RELEASE}-dbgsym",
                 f"dnf debuginfo-install kernel-{RELEASE}", "DEBUGINFOD_URLS=https://",
                 f"readelf -n VMLINUX` shows Build ID: {elf.build_id(str(debug))}",
                 "/sys/kernel/notes"):
        assert text in hint


def test_the_hint_when_debuginfod_was_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEBUGINFOD_URLS", "https://debuginfod.example")
    hint = debuginfo.not_found_hint(None, None)
    assert "DEBUGINFOD_URLS=https://debuginfod.example) had nothing" in hint
    assert "linux-image-$(uname -r)-dbg" in hint and "BUILD-ID in VMCOREINFO" in hint


def test_a_missing_path_is_still_an_error(tmp_path: Path) -> None:
    core, _ = sample_paths("mainline-6.1")
    with pytest.raises(DebugInfoError, match="does not exist"):
        open_program(core=str(core), vmlinux=[os.path.join(tmp_path, "nope")])
