"""A kernel whose struct page pinspect cannot interpret (a future layout): info still reports
everything else and names the structure; the commands that need it stop with one line."""

from __future__ import annotations

import drgn
import pytest

import pinspect
from pinspect.commands.info import document
from pinspect.features import UNSUPPORTED
from pinspect.kernel import UnsupportedLayout
from pinspect.render import render
from tests.sampledata import open_sample


def _future(prog: drgn.Program) -> drgn.Program:
    """*prog* with a struct page that has no 'mapping' member, as a future kernel might."""
    real = prog.type("struct page")
    kept = ("flags", "compound_head", "index", "private", "_mapcount", "_refcount")
    members = [drgn.TypeMember(real.member(name).type, name, 8 * drgn.offsetof(real, name))
               for name in kept]
    future = prog.struct_type("page", real.size, members)

    def find(prog: drgn.Program, kinds: drgn.TypeKindSet, name: str,
             filename: str | None) -> drgn.Type | None:
        return future if name == "page" and drgn.TypeKind.STRUCT in kinds else None

    prog.register_type_finder("future-page", find, enable_index=0)
    return prog


def test_info_names_the_structure_and_the_rest_still_works() -> None:
    prog = _future(open_sample("mainline-6.1"))
    kernel = pinspect.probe(prog)
    layout = kernel.feature("folio layout")
    assert layout.state == UNSUPPORTED
    assert "struct page has no member 'mapping'" in layout.detail
    assert kernel.feature("page_owner").state == "present"
    text = render(document(kernel), "table")
    assert "unsupported" in text and "Normal" in text


def test_commands_that_need_the_layout_stop_with_one_error() -> None:
    prog = _future(open_sample("mainline-6.1"))
    with pytest.raises(UnsupportedLayout, match="struct page has no member 'mapping'") as e:
        pinspect.find_pinned(prog)
    assert "pinspect info" in e.value.hint


def test_the_commands_declare_the_layout_and_fail_before_any_work() -> None:
    from pinspect.commands import FeatureMissing, needs_of

    prog = _future(open_sample("mainline-6.1"))
    kernel = pinspect.probe(prog)
    needs_of("info").check("info", prog, kernel, "DWARF")
    for command in ("pinned", "zones", "page"):
        with pytest.raises(FeatureMissing, match="needs folio layout, which is unsupported"):
            needs_of(command).check(command, prog, kernel, "DWARF")
