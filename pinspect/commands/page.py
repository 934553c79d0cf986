"""``pinspect page``: everything known about one page."""

from __future__ import annotations

from typing import Any

import click
from drgn import Object, Program
from drgn.helpers.linux.mm import page_to_pfn

from pinspect.commands import Needs, register
from pinspect.commands.common import (
    Options,
    emit,
    global_options,
    open_target,
    split_options,
)
from pinspect.commands.pinned import page_object
from pinspect.kernel import probe
from pinspect.pageview import PageVerdict, inspect_page
from pinspect.render import Document
from pinspect.schema import DOCUMENTS, pick


def document(v: PageVerdict) -> Document:
    """The ``page`` result as a renderable document."""
    body = pick(v, DOCUMENTS["page"])
    body["raw"] = dict(v.raw)
    body["folio"] = page_object(v.folio) if v.folio is not None else None
    fields: list[tuple[str, Any]] = [
        ("pfn", hex(v.pfn)), ("phys", hex(v.phys)), ("struct page", hex(v.page)),
        ("state", v.state), ("node", v.node), ("zone", v.zone),
        ("migratetype", v.migratetype), ("cma", v.cma or "-"),
        ("flags", f"{v.flags:#x} {v.flag_names}"),
    ]
    if v.head_pfn != v.pfn:
        fields.append(("head pfn", hex(v.head_pfn)))
    labels = {"compound_head": "raw lru.next / compound_head"}
    for name, value in v.raw.items():
        fields.append((labels.get(name, f"raw {name}"),
                       hex(value) if name not in ("_mapcount", "_refcount") else value))
    if v.folio is not None:
        f = v.folio
        fields += [
            ("folio", f"order {f.order} ({f.nr_pages} pages), {f.mapping}"),
            ("refcount", f.refcount), ("mapcount", f.mapcount),
            ("expected refcount", f.expected_refcount), ("pins (FOLL_PIN)", f.pins),
            ("extra references", f.extra),
            ("verdict", "pinned: " + ", ".join(f.evidence) if f.evidence else "not pinned"),
        ]
    rows = [{"field": k, "value": val} for k, val in fields]
    return Document(command="page", body=body, rows=rows, columns=("field", "value"))


def resolve_pfn(prog: Any, text: str, phys: bool) -> int:
    """A pfn from a pfn, a physical address (--phys) or a ``struct page *`` address."""
    try:
        value = int(text, 0)
    except ValueError as e:
        raise click.BadParameter(f"{text!r} is not a number (use decimal or 0x hex)") from e
    kernel = probe(prog)
    if phys:
        return value >> kernel.page_shift
    if kernel.arch.is_kernel_address(value):  # a struct page *
        return int(page_to_pfn(Object(prog, "struct page *", value)).value_())
    return value


def run(prog: Program, options: Options, *, address: str, phys: bool = False) -> PageVerdict:
    """``page`` on an open program: write what is known about the page, return the verdict."""
    verdict = inspect_page(prog, resolve_pfn(prog, address, phys))
    emit(document(verdict), options)
    return verdict


@register(Needs(features=("folio layout",)), run)
@click.command("page")
@click.argument("address")
@click.option("--phys", is_flag=True, help="ADDRESS is a physical address.")
@global_options
@click.pass_context
def command(ctx: click.Context, **values: Any) -> None:
    """Everything known about one page: ADDRESS is a pfn, a physical address with --phys,
    or a struct page pointer (0xffff...).

    \b
    Examples:
      sudo pinspect page 0x102a4f
      pinspect -c vmcore -s vmlinux page --phys 0x102a4f000
      pinspect -c vmcore -s vmlinux page 0xffffea00040a93c0
    """
    options, params = split_options(ctx, values)
    run(open_target("page", options), options, **params)
