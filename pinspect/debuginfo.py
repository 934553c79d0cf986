"""Finding the kernel's vmlinux the way drgn users expect, and saying what to install.

drgn's own finders (``/usr/lib/debug/.build-id``, ``/boot``, ``/lib/modules/RELEASE``,
``/usr/lib/debug/boot``, ``/usr/lib/debug/lib/modules/RELEASE``, and debuginfod when
``DEBUGINFOD_URLS`` is set) run when no ``-s`` is given. This module adds ``-s DIRECTORY``:
a directory is searched for the kernel's vmlinux in the layouts of a kernel build tree and of
Debian, Ubuntu and Fedora debug packages (installed, or unpacked with ``dpkg -x`` or
``rpm2cpio | cpio -id``), and when nothing is found, :func:`not_found_hint` names the package
to install and how to check that a vmlinux matches (its build ID).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

from pinspect import elf

# Where a vmlinux sits under a directory, for kernel release R ({release}); best first.
LAYOUTS = (
    "vmlinux-{release}",                                # a directory of vmlinux files
    "vmlinux",                                          # a kernel build tree
    "usr/lib/debug/boot/vmlinux-{release}",             # Debian -dbg, Ubuntu -dbgsym
    "usr/lib/debug/lib/modules/{release}/vmlinux",      # Fedora/RHEL kernel-debuginfo
    "usr/lib/debug/usr/lib/modules/{release}/vmlinux",  # (merged /usr)
    "boot/vmlinux-{release}",                           # -s /usr/lib/debug, or a root
    "lib/modules/{release}/vmlinux",                    # -s /usr/lib/debug
    "lib/modules/{release}/build/vmlinux",              # a root with kernel headers/build
    "usr/lib/modules/{release}/vmlinux",
)
BUILD_ID_LAYOUTS = (".build-id/{head}/{tail}.debug", "usr/lib/debug/.build-id/{head}/{tail}.debug")

DEBUGINFOD_SERVERS = {
    "Debian": "https://debuginfod.debian.net",
    "Ubuntu": "https://debuginfod.ubuntu.com",
    "Fedora": "https://debuginfod.fedoraproject.org",
}


def find_in_directory(directory: str, release: str | None, build_id: str | None) -> list[str]:
    """The vmlinux files under *directory* that may belong to the kernel, best first: a file
    whose build ID is *build_id* before the others found by name."""
    found: list[str] = []
    if build_id:
        for layout in BUILD_ID_LAYOUTS:
            found.append(os.path.join(directory,
                                      layout.format(head=build_id[:2], tail=build_id[2:])))
    for layout in LAYOUTS:
        if "{release}" in layout and release is None:
            found += sorted(glob.glob(os.path.join(directory, layout.replace("{release}", "*"))))
        else:
            found.append(os.path.join(directory, layout.format(release=release)))
    files = list(dict.fromkeys(os.path.realpath(p) for p in found if os.path.isfile(p)))
    if build_id:
        matching = [p for p in files if elf.build_id(p) == build_id]
        if matching:
            return matching[:1]
    return files


def expand_paths(paths: Sequence[str], release: str | None, build_id: str | None
                 ) -> tuple[list[str], list[str]]:
    """``-s`` values with each directory replaced by the vmlinux found in it: (files,
    directories in which nothing was found)."""
    files: list[str] = []
    empty: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = find_in_directory(path, release, build_id)
            files += found[:1]
            if not found:
                empty.append(path)
        else:
            files.append(path)
    return files, empty


def not_found_hint(release: str | None, build_id: str | None) -> str:
    """What to install on each distribution, and how to check that a vmlinux matches."""
    r = release or "$(uname -r)"
    lines = [
        "pass the kernel's vmlinux (or a directory holding it) with -s PATH, or install the "
        "kernel's debug info:",
        f"    Debian: apt install linux-image-{r}-dbg",
        f"    Ubuntu: apt install linux-image-{r}-dbgsym (from the ddebs archive, "
        "http://ddebs.ubuntu.com)",
        f"    Fedora/RHEL: dnf debuginfo-install kernel-{r} (kernel-debuginfo)",
    ]
    urls = os.environ.get("DEBUGINFOD_URLS")
    if urls:
        lines.append(f"    debuginfod (DEBUGINFOD_URLS={urls}) had nothing for this kernel")
    else:
        lines.append("    or let drgn download it: DEBUGINFOD_URLS="
                     + " or ".join(f"{url} ({name})" for name, url in DEBUGINFOD_SERVERS.items()))
    if build_id:
        lines.append(f"a vmlinux matches when `readelf -n VMLINUX` shows Build ID: {build_id} "
                     "(this kernel's, from VMCOREINFO; on a running kernel also in "
                     "/sys/kernel/notes)")
    else:
        lines.append("a vmlinux matches when `readelf -n VMLINUX` shows the kernel's build ID "
                     "(BUILD-ID in VMCOREINFO, or /sys/kernel/notes on a running kernel)")
    return "\n  ".join(lines)
