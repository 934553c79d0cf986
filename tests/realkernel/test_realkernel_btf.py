"""No debug info needed (issue 15): on every kernel of the tier with BTF, pinspect gives the same
rows and summaries from the kernel's own BTF and kallsyms (``--btf``, no vmlinux) as from
vmlinux's DWARF, on the ELF and kdump dumps, live over QMP and from /proc/kcore inside the guest
(the host's / shared over 9p or virtio-fs, every vmlinux hidden). Kernels without BTF, or whose
dumps do not locate kallsyms (VMCOREINFO has it from 6.0 on), give one line and exit 2."""

from __future__ import annotations

import functools
import logging
import mmap
import subprocess
import sys
import time
from typing import Any

import drgn
import pytest

from tests.realkernel.rksupport import (
    CLI,
    REPO,
    Booted,
    guest_chroot,
    log,
    require_in_guest,
    require_pinspect,
    run_pinspect,
    run_pinspect_host,
    run_pinspect_in_guest_batch,
    vmlinux_dirs,
)

SOURCE_KEYS = ("type_source", "symbol_source")


@functools.cache
def _btf_of(vmlinux: str) -> bool:
    """Whether vmlinux's symbol table has the linker's __start_BTF."""
    with open(vmlinux, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return data.find(b"\0__start_BTF\0") >= 0


def has_btf(b: Booted) -> bool:
    """CONFIG_DEBUG_INFO_BTF: from the config where the cache has it, otherwise from vmlinux's
    symbol table (the linker's __start_BTF)."""
    config = b.kernel_config()
    if config:
        return "CONFIG_DEBUG_INFO_BTF=y" in config
    return _btf_of(str(b.vmlinux))


def dumps_locate_kallsyms(b: Booted) -> bool:
    return b.version >= (6, 0)


def btf_args(b: Booted, target: str) -> list[str]:
    if target in ("elf", "kdump"):
        return ["-c", str(b.dumps[target]), "--btf"]
    if target == "qmp":
        return ["--qemu", str(b.guest.qmp_drgn_path), "--btf"]
    raise ValueError(target)


def run_btf(b: Booted, target: str, *command: str) -> dict[str, Any]:
    """pinspect --btf --format json COMMAND, without vmlinux; cached per session."""
    require_pinspect()
    key = ("btf", target, *command)
    if key in b.cli_cache:
        return b.cli_cache[key]  # type: ignore[no-any-return]
    if target == "kcore":
        run_kcore_btf_batch(b, command)
        return b.cli_cache[key]  # type: ignore[no-any-return]
    t0 = time.monotonic()
    result = run_pinspect_host([*btf_args(b, target), "--format", "json", *command])
    log(f"{b.name}: pinspect --btf {' '.join(command)} on {target}: "
        f"{time.monotonic() - t0:.1f}s")
    b.cli_cache[key] = result
    return result


# What the tests ask of /proc/kcore without vmlinux, in one in-guest run; ("auto", "info") is
# `pinspect info` with neither -s nor --btf: BTF must be chosen by itself.
KCORE_BTF_BATCH = [("pinned", "--zone", "Normal"), ("info",), ("zones",), ("auto", "info")]


def run_kcore_btf_batch(b: Booted, command: tuple[str, ...]) -> None:
    """Run KCORE_BTF_BATCH (and *command*) inside the guest with every vmlinux hidden; the
    documents go to the session cache under ("btf", "kcore", ...)."""
    batch = [c for c in KCORE_BTF_BATCH if ("btf", "kcore", *c) not in b.cli_cache]
    if command not in batch:
        batch.append(command)
    jobs = [["--format", "json", *c[1:]] if c[0] == "auto" else ["--btf", "--format", "json", *c]
            for c in batch]
    docs = run_pinspect_in_guest_batch(b, jobs, hide_vmlinux=True)
    for c, doc in zip(batch, docs, strict=True):
        b.cli_cache[("btf", "kcore", *c)] = doc


def need_btf_target(b: Booted, target: str) -> None:
    if not has_btf(b):
        pytest.skip(f"{b.name} is built without CONFIG_DEBUG_INFO_BTF")
    if target != "kcore" and not dumps_locate_kallsyms(b):
        pytest.skip(f"{b.name} ({b.kernel.release}): VMCOREINFO locates kallsyms from 6.0 on")
    if target == "kcore":
        require_in_guest(b)


def without_sources(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in SOURCE_KEYS}


def gt_rows(b: Booted, doc: dict[str, Any], live: bool = False) -> dict[int, dict[str, Any]]:
    """The rows of the ground-truth pages; *live*: without their page flags, which a running
    kernel changes between two runs (a THP's referenced/active bits moved between the BTF and
    the DWARF run on deb72 under load)."""
    rows = {int(r["pfn"]): r for r in doc["pages"]}
    return {p["pfn"]: {k: v for k, v in rows.get(p["pfn"], {}).items()
                       if not (live and k == "flags")} for p in b.gt.pages}


def stable_info(doc: dict[str, Any]) -> dict[str, Any]:
    """``info`` of a live kernel without its sources and without the counts that change
    between two runs (page_owner's allocated pages, the stack depot's pools, pages re-read
    because they changed): the states of the record sources stay."""
    out = without_sources(doc)
    out.pop("unread", None)
    out["records"] = {name: (r or {}).get("state") for name, r in doc["records"].items()}
    return out


DUMPS = ["elf", "kdump"]
ALL = ["elf", "kdump", "qmp", "kcore"]


@pytest.mark.parametrize("target", DUMPS)
@pytest.mark.parametrize("command", [("info",), ("pinned",), ("zones",)])
def test_dump_same_without_vmlinux(booted: Booted, target: str, command: tuple[str, ...]) -> None:
    need_btf_target(booted, target)
    btf = run_btf(booted, target, *command)
    dwarf = run_pinspect(booted, target, *command)
    assert without_sources(btf) == without_sources(dwarf)
    if command == ("info",):
        assert btf["type_source"]["name"] == "BTF"
        assert btf["symbol_source"]["name"] == "kallsyms"
        assert dwarf["type_source"]["name"] == "DWARF"


@pytest.mark.parametrize("target", ["qmp", "kcore"])
def test_live_same_without_vmlinux(booted: Booted, target: str) -> None:
    """Live targets: info and zones' layout are the same; the pinned rows of the ground-truth
    pages (a live kernel's other pages come and go between two runs) too."""
    need_btf_target(booted, target)
    btf = run_btf(booted, target, "pinned", "--zone", "Normal")
    dwarf = run_pinspect(booted, target, "pinned", "--zone", "Normal")
    assert gt_rows(booted, btf, live=True) == gt_rows(booted, dwarf, live=True)
    info_btf = run_btf(booted, target, "info")
    assert info_btf["type_source"]["name"] == "BTF"
    if target == "kcore":
        assert info_btf["type_source"]["origin"].startswith("/sys/kernel/btf/vmlinux")
        assert info_btf["symbol_source"]["origin"] == "/proc/kallsyms"
        # with no vmlinux to be found, plain `pinspect info` picks BTF and kallsyms itself
        auto = run_btf(booted, target, "auto", "info")
        assert auto["type_source"]["name"] == "BTF", auto["type_source"]
        assert auto["symbol_source"]["name"] == "kallsyms", auto["symbol_source"]
        assert stable_info(auto) == stable_info(info_btf)
    zones_btf = run_btf(booted, target, "zones")
    zones_dwarf = run_pinspect(booted, target, "zones")
    layout = ("node", "zone", "start_pfn", "spanned", "present")
    assert ([{k: z[k] for k in layout} for z in zones_btf["zones"]]
            == [{k: z[k] for k in layout} for z in zones_dwarf["zones"]])


def test_page_same_without_vmlinux(booted: Booted) -> None:
    need_btf_target(booted, "elf")
    seen: set[str] = set()
    for p in booted.gt.pages:
        if p["kind"] in seen:
            continue
        seen.add(p["kind"])
        btf = run_btf(booted, "elf", "page", str(p["pfn"]))
        dwarf = run_pinspect(booted, "elf", "page", str(p["pfn"]))
        assert btf == dwarf, p


def test_declared_globals_match_dwarf(booted: Booted) -> None:
    """Each global of pinspect.variables that the kernel has: BTF's object (kallsyms address,
    declared or per-CPU type) is DWARF's: same address, same kind and size of type."""
    need_btf_target(booted, "elf")
    from pinspect.target import open_program
    from pinspect.typesource import BTF, DWARF
    from pinspect.variables import VARIABLES

    logging.getLogger("drgn").setLevel(logging.CRITICAL)
    dump = str(booted.dumps["elf"])
    btf = open_program(dump, types=BTF)
    dwarf = open_program(dump, [str(booted.vmlinux)], types=DWARF)
    problems = []
    for name in VARIABLES:
        try:
            want = dwarf[name]
        except LookupError:
            continue
        try:
            got = btf[name]
        except LookupError:
            problems.append(f"{name}: not found with BTF")
            continue
        if got.address_ != want.address_:
            problems.append(f"{name}: address {got.address_} != {want.address_}")
        if got.address_ is None and got.value_() != want.value_():
            problems.append(f"{name}: value {got.value_()} != {want.value_()}")
        t_got, t_want = got.type_.unaliased(), want.type_.unaliased()
        if t_got.kind != t_want.kind:
            problems.append(f"{name}: {t_got} is not {t_want}")
        elif t_got.kind == drgn.TypeKind.ARRAY:
            if drgn.sizeof(t_got.type) != drgn.sizeof(t_want.type):
                problems.append(f"{name}: element {t_got.type} is not {t_want.type}")
        elif drgn.sizeof(t_got) != drgn.sizeof(t_want):
            problems.append(f"{name}: {t_got} is not {t_want}")
    assert not problems, "\n".join(problems)


def test_without_btf_one_line(booted: Booted) -> None:
    """Where BTF cannot be had from a dump, --btf says why in one line, exit 2."""
    if has_btf(booted) and dumps_locate_kallsyms(booted):
        pytest.skip(f"{booted.name} has BTF and kallsyms in VMCOREINFO")
    proc = subprocess.run([sys.executable, "-c", CLI, *btf_args(booted, "elf"), "info"],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and lines[1].startswith("  hint: "), proc.stderr
    want = "CONFIG_DEBUG_INFO_BTF" if dumps_locate_kallsyms(booted) else "cannot locate kallsyms"
    assert want in lines[0], lines[0]


def _drgn_program(b: Booted, target: str) -> drgn.Program:
    """A drgn Program on *target* (a dump, or the running guest over QMP), no debug info."""
    from pinspect.target import _open_core

    if target == "qmp":
        prog = drgn.Program()
        prog.set_qemu_qmp(str(b.guest.qmp_drgn_path))
        return prog
    return _open_core(str(b.dumps[target]))


@pytest.mark.parametrize("target", ["elf", "kdump", "qmp"])
def test_kallsyms_same_as_drgns(booted: Booted, target: str) -> None:
    """pinspect's bulk kallsyms decoder gives drgn's symbol table: every symbol (name,
    address, size, binding, kind, in order), lookups by the duplicated names and by address;
    and in fewer reads (timed both ways in the log)."""
    if not dumps_locate_kallsyms(booted):
        pytest.skip(f"{booted.name} ({booted.kernel.release}): VMCOREINFO locates kallsyms "
                    "from 6.0 on")
    from collections import Counter

    from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms

    from pinspect import vmcoreinfo
    from pinspect.kallsyms import symbols_from_memory

    logging.getLogger("drgn").setLevel(logging.CRITICAL)
    prog = _drgn_program(booted, target)
    t0 = time.monotonic()
    ref_index = load_vmlinux_kallsyms(prog)
    t1 = time.monotonic()
    mine = symbols_from_memory(prog, vmcoreinfo.from_program(prog))
    t2 = time.monotonic()
    log(f"{booted.name} {target}: kallsyms drgn {t1 - t0:.2f}s, pinspect {t2 - t1:.2f}s")
    ref = ref_index(prog, None, None, False)

    def key(symbols: list[drgn.Symbol]) -> list[tuple[Any, ...]]:
        return [(s.name, s.address, s.size, s.binding, s.kind) for s in symbols]

    assert len(ref) > 10_000
    assert key(mine(prog, None, None, False)) == key(ref)
    dups = [n for n, c in Counter(s.name for s in ref).items() if c > 1][:300]
    for name in [*dups, "_stext", "jiffies", "init_task"]:
        assert key(mine(prog, name, None, False)) == key(ref_index(prog, name, None, False)), name
    for s in ref[:: max(1, len(ref) // 500)]:
        for address in (s.address, s.address + max(s.size - 1, 0)):
            assert key(mine(prog, None, address, True)) == \
                key(ref_index(prog, None, address, True)), hex(address)


def test_guest_sees_no_vmlinux(booted: Booted) -> None:
    """The in-guest BTF runs see no vmlinux: not in the places pinspect and drgn look for one
    (by the guest's release), not in the caches' kernels/ directories."""
    need_btf_target(booted, "kcore")
    release = booted.kernel.release
    places = [f"/boot/vmlinux-{release}", f"/lib/modules/{release}",
              f"/usr/lib/debug/boot/vmlinux-{release}", f"/usr/lib/debug/lib/modules/{release}",
              str(booted.vmlinux)]
    script = ("for p in " + " ".join(places) + "; do [ -e \"$p\" ] && echo \"seen $p\"; done; "
              "find " + " ".join(str(d) for d in vmlinux_dirs(booted)) +
              " -maxdepth 2 -name 'vmlinux*' | sed 's/^/seen /'; echo checked")
    hidden_status, hidden = guest_chroot(booted, ["sh", "-c", script],
                                         hide=vmlinux_dirs(booted))
    assert hidden_status == 0 and "checked" in hidden, hidden
    assert "seen " not in hidden, hidden
    # without hiding, the same check finds the vmlinux the DWARF runs use: the check can fail
    _, shown = guest_chroot(booted, ["sh", "-c", script])
    assert f"seen {booted.vmlinux}" in shown, shown
