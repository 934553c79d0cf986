"""pinspect against the ground truth of every synthetic sample in vmcore-samples/.

Whole outputs are compared: the set of pinned pages and every field the truth gives for each,
the per-zone counts, the verdict of `page` for pinned and control pages, and the feature states
of `info`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import pinspect
from pinspect.commands import info as info_command
from pinspect.commands import pinned as pinned_command
from pinspect.commands import zones as zones_command
from pinspect.render import render
from tests.sampledata import SAMPLES_DIR

SAMPLES = SAMPLES_DIR
TRUTHS = sorted(SAMPLES.glob("*.truth.json"))


def sample_names() -> list[str]:
    return [t.name.removesuffix(".truth.json") for t in TRUTHS]


def test_samples_exist() -> None:
    assert "mainline-6.1" in sample_names(), "the bundled default sample is missing"


@pytest.fixture(scope="module", params=sample_names())
def sample(request: pytest.FixtureRequest) -> tuple[Any, dict[str, Any]]:
    name = request.param
    truth = json.loads((SAMPLES / f"{name}.truth.json").read_text())
    core = SAMPLES / f"{name}.core"
    if not core.exists():
        core = SAMPLES / f"{name}.kdump"
    debug = SAMPLES / f"{name}.debug"
    if not debug.exists():
        debug = SAMPLES / f"{name.split('.')[0]}.debug"
    prog = pinspect.open_program(core=str(core), vmlinux=[str(debug)])
    return prog, truth


def test_pinned_matches_truth(sample: tuple[Any, dict[str, Any]]) -> None:
    prog, truth = sample
    doc = json.loads(render(pinned_command.document(pinspect.find_pinned(prog)), "json"))
    got = {p["pfn"]: p for p in doc["pages"]}
    want = {p["pfn"]: p for p in truth["pinned"]}
    assert sorted(got) == sorted(want)
    problems = [f"pfn {pfn:#x} {key}: got {got[pfn].get(key)!r}, want {value!r}"
                for pfn, page in want.items() for key, value in page.items()
                if got[pfn].get(key) != value]
    assert not problems, "\n".join(problems)
    assert doc["unreadable"] == 0


def test_controls_not_reported(sample: tuple[Any, dict[str, Any]]) -> None:
    prog, truth = sample
    reported = {p.pfn for p in pinspect.find_pinned(prog).pages}
    controls = {c["pfn"] for c in truth["controls"]}
    assert controls, "the sample has no control pages"
    assert not controls & reported


def test_zones_match_truth(sample: tuple[Any, dict[str, Any]]) -> None:
    prog, truth = sample
    rows, report = pinspect.zone_pins(prog)
    doc = json.loads(render(zones_command.document(rows, report), "json"))
    assert doc["zones"] == truth["zones"]


def test_page_verdicts(sample: tuple[Any, dict[str, Any]]) -> None:
    prog, truth = sample
    for want in truth["pinned"]:
        verdict = pinspect.inspect_page(prog, want["pfn"])
        assert verdict.folio is not None
        assert verdict.folio.evidence == want["evidence"], hex(want["pfn"])
        assert verdict.folio.refcount == want["refcount"]
        if want["nr_pages"] > 1:  # a tail page answers for its folio
            tail = pinspect.inspect_page(prog, want["pfn"] + want["nr_pages"] - 1)
            assert tail.head_pfn == want["pfn"]
            assert tail.folio is not None and tail.folio.evidence == want["evidence"]
    for control in truth["controls"]:
        verdict = pinspect.inspect_page(prog, control["pfn"])
        assert verdict.folio is not None, hex(control["pfn"])
        assert verdict.folio.evidence == [], hex(control["pfn"])
        assert verdict.folio.extra == 0


def test_info_features(sample: tuple[Any, dict[str, Any]]) -> None:
    prog, truth = sample
    doc = json.loads(render(info_command.document(pinspect.probe(prog)), "json"))
    states = {f["name"]: f["state"] for f in doc["features"]}
    features = truth["features"]
    # The truth says "present" for page_ext compiled in; pinspect says "off" when no client
    # asked for it at boot (the tables were never allocated).
    page_ext = features["page_ext"]
    if page_ext == "present" and not features.get("page_ext_allocated", True):
        page_ext = "off"
    assert states["page_ext"] == page_ext
    assert states["page_owner"] == features["page_owner"].replace("enabled", "present")
    assert states["cma"] == features["cma"]
    if "page_pinner" in features:
        pinner = next(f for f in doc["features"] if f["name"] == "page_pinner")
        if features["page_pinner"] == "absent":
            assert pinner["state"] == "absent"
        else:
            assert pinner["detail"].startswith(f"variant {features['page_pinner'].upper()}")
