"""What the kernel's struct page (and so pinspect) must show for each ground-truth page."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

GUP_PIN_COUNTING_BIAS = 1024

PINNED_KINDS = {
    "anon_uring", "anon_uring_x2", "anon_vmsplice", "anon_vmsplice_x2", "thp_uring",
    "tmpfs_uring", "tmpfs_vmsplice", "sysv_vmsplice", "shared_anon_uring", "shared_anon_vmsplice",
}  # fmt: skip
CONTROL_KINDS = {"anon_control", "tmpfs_control", "sysv_control", "shared_anon_control",
                 "thp_control"}  # fmt: skip
CMA_KINDS = {"cma_vmsplice", "cma_control"}
# KSM pages (kernels with CONFIG_KSM, the Debian ones): mapped by the workload and its KSM child
# on one KSM page each; the first ones spliced into a pipe (extra 1), the others controls
KSM_KINDS = {"ksm_vmsplice", "ksm_control"}
KPF_KSM = 1 << 21  # /proc/kpageflags (include/uapi/linux/kernel-page-flags.h)


@dataclass(frozen=True)
class Expected:
    pfn: int
    nr_pages: int
    refcount: int  # _refcount of the (head) page
    mapcount: int  # mappings of the page / folio
    pins: int  # FOLL_PIN pins as the README defines them
    extra: int  # references FOLL_PIN does not explain (vmsplice)
    evidence: tuple[str, ...]
    mapping: str
    zone: str
    pincount: int | None  # folio _pincount for large folios


def zone_of_pfn(pfn: int) -> str:
    """x86_64 zone boundaries: DMA below 16 MiB, DMA32 below 4 GiB."""
    if pfn < (16 << 20) >> 12:
        return "DMA"
    if pfn < (4 << 30) >> 12:
        return "DMA32"
    return "Normal"


def thp_pins_per_registration(version: tuple[int, int], nr_pages: int) -> int:
    """io_uring pins each subpage of a THP on 5.10 and 6.1: the head's _refcount and the pin
    count grow by nr_pages (FOLL_PIN adds 1, not GUP_PIN_COUNTING_BIAS, to a large folio).
    On 5.10 the pin count is page[2].hpage_pinned_refcount (5.7-5.17, commit 47e29d32afba
    "mm/gup: page->hpage_pinned_refcount: exact pin counts for huge pages"), on 6.1
    folio->_pincount. Since 6.10 io_uring coalesces a folio-backed buffer and keeps one pin
    (6.12, 7.2: _pincount 1, _refcount 2). Measured on deb510 (5.10.223), deb61, deb612,
    deb72 (7.2.13) and the custom kernels: refcount/_pincount/mapcount as computed here."""
    return 1 if version >= (6, 10) else nr_pages


def expected(page: dict[str, Any], version: tuple[int, int]) -> Expected:
    nr = int(page["nr_pages"])
    shmem = page["mapping"] == "shmem"
    mapcount = int(page["mapcount"])
    if nr > 1:
        pins = int(page["pins"]) * thp_pins_per_registration(version, nr)
        refcount = mapcount + (nr if shmem else 0) + pins + int(page["gets"])
        pincount: int | None = pins
    else:
        pins = int(page["pins"])
        refcount = mapcount + (1 if shmem else 0) + pins * GUP_PIN_COUNTING_BIAS + int(page["gets"])
        pincount = None
    evidence: list[str] = []
    if pins:
        evidence.append("foll_pin")
    if int(page["gets"]):
        evidence.append("extra")
    return Expected(
        pfn=int(page["pfn"]),
        nr_pages=nr,
        refcount=refcount,
        mapcount=mapcount,
        pins=pins,
        extra=int(page["gets"]),
        evidence=tuple(evidence),
        mapping=page["mapping"],
        zone=zone_of_pfn(int(page["pfn"])),
        pincount=pincount,
    )


def expected_module_page(page: dict[str, Any]) -> Expected:
    """A page of the test module pinmod.ko (a PINMOD record): a shmem page cache page mapped by
    no process, whose one reference beyond the page cache's is the module's while it holds it."""
    held = 1 if page["held"] else 0
    return Expected(
        pfn=int(page["pfn"]),
        nr_pages=1,
        refcount=1 + held,
        mapcount=0,
        pins=0,
        extra=held,
        evidence=("extra",) if held else (),
        mapping="shmem",
        zone=zone_of_pfn(int(page["pfn"])),
        pincount=None,
    )


_FAILURE = re.compile(r" page_pinner_failure: pfn=0x([0-9a-f]+) ")
_PUT = re.compile(r" page_pinner_put: pfn=0x([0-9a-f]+) .*\bcount=(-?\d+) ")


def pinner_marked(trace: str) -> set[int]:
    """The pfns that carry PAGE_EXT_PINNER at the end of a pp61 ftrace text: marked by a
    ``page_pinner_failure`` event and not freed since (a ``page_pinner_put`` leaving count 0;
    freeing the page clears the mark). A plain reading of the events, independent of
    ``pinspect trace``."""
    marked: set[int] = set()
    for line in trace.splitlines():
        m = _FAILURE.search(line)
        if m:
            marked.add(int(m.group(1), 16))
            continue
        m = _PUT.search(line)
        if m and int(m.group(2)) == 0:
            marked.discard(int(m.group(1), 16))
    return marked
