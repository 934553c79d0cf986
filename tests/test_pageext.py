"""page_ext lookup and the page_pinner flags (pinspect.pageext, pinspect.pinner)."""

from __future__ import annotations

import ast
import json
import pathlib

import numpy as np
import pytest

import pinspect
from pinspect.pageext import flags_words
from pinspect.pinner import pinner_mask
from pinspect.variables import VARIABLES
from tests.sampledata import SAMPLES_DIR, open_sample

PINNER_SAMPLES = ["android-rfc", "android-a0", "android-a2", "android-b", "android-c",
                  "android-d"]


@pytest.mark.parametrize("name", PINNER_SAMPLES)
def test_flags_words_mark_exactly_the_tracked_pages(name: str) -> None:
    truth = json.loads((SAMPLES_DIR / f"{name}.truth.json").read_text())
    kernel = pinspect.probe(open_sample(name))
    ext = kernel.page_ext
    assert ext is not None
    tracked = {p["pfn"]: p["flags"] for p in truth["page_pinner"]["pages"]}
    assert tracked
    mask = pinner_mask(kernel)
    assert mask
    for zone in truth["zones"]:
        words, readable = flags_words(kernel, zone["start_pfn"], zone["spanned"])
        assert readable.any()
        flagged = zone["start_pfn"] + np.flatnonzero(words & np.uint64(mask))
        inside = {pfn for pfn in tracked
                  if zone["start_pfn"] <= pfn < zone["start_pfn"] + zone["spanned"]}
        assert set(flagged.tolist()) == inside
        for pfn in inside:
            names = {n for n, bit in ext.flag_bits.items()
                     if int(words[pfn - zone["start_pfn"]]) >> bit & 1}
            assert set(tracked[pfn]) <= names


def test_no_flags_when_page_ext_was_never_allocated() -> None:
    kernel = pinspect.probe(open_sample("mainline-6.1-owner-off"))
    assert pinner_mask(kernel) == 0
    words, readable = flags_words(kernel, 0x100000, 1024)
    assert not readable.any() and not words.any()


def test_every_global_pinspect_reads_is_declared() -> None:
    """Each variable()/has_variable()/required_variable() call names a declared global."""
    package = pathlib.Path(pinspect.__file__).parent
    used = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id in ("variable", "has_variable", "required_variable") and \
                    len(node.args) == 2 and isinstance(node.args[1], ast.Constant):
                used.add(node.args[1].value)
    assert used and used <= set(VARIABLES), used - set(VARIABLES)
