"""The reverse map of a KSM folio through its stable node's rmap_items (pinspect.rmap), on the
samples with the KSM structures added: the samples' debug info has no KSM types and their KSM
page's stable node no items, so this test gives the program the types (with the layout of the
Debian kernels' DWARF: hlist at 40 in the stable node; anon_vma 8, mm 16, address 24, hlist 48
in the rmap_item) and writes a node's items into memory overlays. The real-kernel tier checks
the same on real KSM pages (tests/realkernel/test_realkernel_ksm.py)."""

from __future__ import annotations

import json
from typing import Any

import drgn
import pytest

from pinspect.kernel import probe
from pinspect.rmap import _mapping_words, reverse_map
from tests.sampledata import SAMPLES_DIR, open_sample

ITEMS_AT = 0xFFFFFFFFFE000000  # an address no sample maps: the overlay of the rmap_items
ITEM_SIZE = 64
STABLE_FLAG = 0x200  # mm/ksm.c: the item is listed from the stable tree (low bits of address)


def _add_ksm_types(prog: drgn.Program, prefix: str) -> None:
    """struct {prefix}stable_node and struct {prefix}rmap_item as the kernels lay them out."""
    ptr = prog.pointer_type
    ulong = prog.type("unsigned long")
    item = prog.struct_type(f"{prefix}rmap_item", ITEM_SIZE, [
        drgn.TypeMember(ptr(prog.void_type()), "rmap_list", 0),
        drgn.TypeMember(ptr(prog.type("struct anon_vma")), "anon_vma", 64),
        drgn.TypeMember(ptr(prog.type("struct mm_struct")), "mm", 128),
        drgn.TypeMember(ulong, "address", 192),
        drgn.TypeMember(prog.type("struct hlist_node"), "hlist", 384),
    ])
    node = prog.struct_type(f"{prefix}stable_node", 64, [
        drgn.TypeMember(prog.type("struct hlist_head"), "hlist", 320),
        drgn.TypeMember(ulong, "kpfn", 384),
    ])
    types = {t.tag: t for t in (item, node)}

    def find(prog_: drgn.Program, kinds: Any, name: str, filename: str | None) -> Any:
        return types.get(name.removeprefix("struct ").strip())

    prog.register_type_finder("test-ksm", find, enable_index=0)


def _overlay(prog: drgn.Program, address: int, data: bytes) -> None:
    prog.add_memory_segment(address, len(data), lambda a, c, o, p: data[o:o + c], False)


def _word(value: int) -> bytes:
    return value.to_bytes(8, "little")


@pytest.mark.parametrize(("name", "prefix"), [("mainline-5.10", ""), ("mainline-6.1", "ksm_"),
                                              ("mainline-7.2", "ksm_")])
def test_ksm_mappers_through_stable_node(name: str, prefix: str) -> None:
    """Each rmap_item names a mapper: its process, its address without KSM's low flag bits,
    and its VMA found in the tree of the item's anon_vma (flags from that VMA); an item with
    no anon_vma still names the process and address (a one-page stand-in, no VMA)."""
    truth = json.loads((SAMPLES_DIR / f"{name}.truth.json").read_text())
    prog = open_sample(name)
    kernel = probe(prog)
    _add_ksm_types(prog, prefix)
    anon = {p["pfn"] for p in truth["pinned"] if p["mapping"] == "anon" and p["nr_pages"] == 1}
    # two anonymous pages of two processes, each with its one mapper
    picked: dict[int, tuple[int, dict[str, Any]]] = {}
    for p in truth["rmap"]["pages"]:
        if p["pfn"] in anon and len(p["mappers"]) == 1 and p["mappers"][0]["pid"] not in picked:
            picked[p["mappers"][0]["pid"]] = (p["pfn"], p["mappers"][0])
    assert len(picked) >= 2, picked
    (pfn_a, a), (pfn_b, b) = list(picked.values())[:2]
    ksm_pfn = next(c["pfn"] for c in truth["controls"] if c["mapping"] == "ksm")
    node = _mapping_words(prog, kernel, ksm_pfn)[0]
    assert node & 3 == 3  # PAGE_MAPPING_KSM
    node &= ~3
    stand_in = 0x7F00DEAD0000
    items = [  # (anon_vma, mm, address with flag bits)
        (_mapping_words(prog, kernel, pfn_a)[0] & ~3, a["mm"], a["vaddr"] | STABLE_FLAG | 0xAB),
        (_mapping_words(prog, kernel, pfn_b)[0] & ~3, b["mm"], b["vaddr"] | STABLE_FLAG),
        (0, a["mm"], stand_in | STABLE_FLAG | 0x01),
    ]
    data = b""
    for i, (anon_vma, mm, address) in enumerate(items):
        at = ITEMS_AT + i * ITEM_SIZE
        following = ITEMS_AT + (i + 1) * ITEM_SIZE + 48 if i + 1 < len(items) else 0
        pprev = at - ITEM_SIZE + 48 if i else node + 40
        data += (_word(0) + _word(anon_vma) + _word(mm) + _word(address) + bytes(16)
                 + _word(following) + _word(pprev))
    _overlay(prog, ITEMS_AT, data)
    _overlay(prog, node + 40, _word(ITEMS_AT + 48))  # stable_node.hlist.first

    result = reverse_map(prog, [(ksm_pfn, 1, 3)])
    got = [(m.pid, m.comm, m.vaddr, m.vaddr_end, m.vma, sorted(m.flags), m.file)
           for m in result.mappers[ksm_pfn]]
    want = [(x["pid"], x["comm"], x["vaddr"], x["vaddr"] + 4096, x["vma"], sorted(x["flags"]),
             "[ksm]") for x in (a, b)]
    want.append((a["pid"], a["comm"], stand_in, stand_in + 4096, 0, [], "[ksm]"))
    assert got == want
    assert result.unresolved == 0 and not result.warnings()


def test_ksm_without_types_is_counted() -> None:
    """A kernel whose debug info lacks the KSM types: the KSM folio stays unresolved and the
    reason is counted, no exception."""
    truth = json.loads((SAMPLES_DIR / "mainline-6.1.truth.json").read_text())
    prog = open_sample("mainline-6.1")
    ksm_pfn = next(c["pfn"] for c in truth["controls"] if c["mapping"] == "ksm")
    result = reverse_map(prog, [(ksm_pfn, 1, 3)])
    assert result.mappers[ksm_pfn] == [] and result.unresolved == 1
    assert any(w.startswith("KSM: no stable_node type") for w in result.warnings())
