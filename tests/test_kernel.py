"""The capability probe (pinspect.kernel) and the record sources' features, against each
sample's ground truth and drgn's own view of the types."""

from __future__ import annotations

import json
from typing import Any

import drgn
import pytest

import pinspect
from pinspect.features import ABSENT, OFF, PRESENT
from pinspect.kernel import Kernel, page_type_name
from tests.sampledata import SAMPLE_NAMES, SAMPLES_DIR, open_sample


def _sample(name: str) -> tuple[Kernel, dict[str, Any]]:
    truth = json.loads((SAMPLES_DIR / f"{name}.truth.json").read_text())
    return pinspect.probe(open_sample(name)), truth


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_features_match_the_truth(name: str) -> None:
    kernel, truth = _sample(name)
    want = truth["features"]
    states = {f.name: f.state for f in kernel.features}
    owner = {"enabled": PRESENT, "off": OFF, "absent": ABSENT}[want["page_owner"]]
    assert states["page_owner"] == owner
    if want["page_pinner"] == "absent":
        assert states["page_pinner"] == ABSENT and kernel.pinner_variant is None
    else:
        assert states["page_pinner"] == PRESENT
        assert kernel.pinner_variant == want["page_pinner"]
        assert f"variant {want['page_pinner'].upper()}" in kernel.feature("page_pinner").detail
    assert states["cma"] == PRESENT
    assert states["page_ext"] == (PRESENT if want["page_ext_allocated"] else OFF)
    depot = kernel.feature("stack depot").detail
    assert want["stack_depot"].startswith(depot)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_layout_equals_drgn_offsets(name: str) -> None:
    kernel, truth = _sample(name)
    page = kernel.prog.type("struct page")
    layout = kernel.layout
    assert layout.size == page.size
    index = "index" if page.has_member("index") else "__folio_index"  # 6.16 renamed it
    for attribute, member in (("flags", "flags"), ("mapping", "mapping"), ("index", index),
                              ("private", "private"), ("mapcount", "_mapcount"),
                              ("refcount", "_refcount")):
        assert getattr(layout, attribute) == drgn.offsetof(page, member), member
    assert kernel.pageblock_order == truth["facts"]["pageblock_order"]
    assert kernel.max_order == truth["facts"]["max_order"]
    assert kernel.page_size == truth["facts"]["page_size"]
    assert kernel.arch.name == "x86_64"


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_page_ext_layout_matches_the_truth(name: str) -> None:
    kernel, truth = _sample(name)
    ext = kernel.page_ext
    assert ext is not None
    facts = truth["facts"]
    assert ext.entry_size == facts["page_ext_size"]
    if truth["features"]["page_ext_allocated"]:
        offsets = {f"{c.name}_ops": c.offset for c in ext.clients.values()}
        assert offsets == facts["page_ext_offsets"]
        assert ext.has_flags_word == facts["page_ext_has_flags_word"]
    else:  # compiled in, never enabled: offsets are never assigned
        assert not any(c.enabled for c in ext.clients.values())


def test_page_type_names() -> None:
    kernel, _ = _sample("mainline-6.1")
    assert page_type_name(kernel, 0) is None  # mapped once
    assert page_type_name(kernel, 0xFFFFFFFF) is None  # _mapcount -1: not mapped
    assert page_type_name(kernel, 0xFFFFFFFF & ~0x80) == "buddy"  # PG_buddy cleared
    kernel612, _ = _sample("mainline-6.12")
    buddy = kernel612.page_types["buddy"]
    assert page_type_name(kernel612, (buddy << 24) | 0xFFFFFF) == "buddy"


def test_probe_is_cached_per_program() -> None:
    prog = open_sample("mainline-6.1")
    assert pinspect.probe(prog) is pinspect.probe(prog)


def test_page_types_of_5_10_have_kmemcg() -> None:
    kernel, _ = _sample("mainline-5.10")
    assert page_type_name(kernel, 0xFFFFFFFF & ~0x400) == "table"  # 0x200 was PG_kmemcg
    assert page_type_name(kernel, 0xFFFFFFFF & ~0x80) == "buddy"
    newer, _ = _sample("mainline-6.1")
    assert page_type_name(newer, 0xFFFFFFFF & ~0x200) == "table"
