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
from pinspect.commands.pinned import mapper_object, owner_object, page_object, pinner_object
from pinspect.kernel import probe
from pinspect.owner import OwnerRecord
from pinspect.pageview import PageVerdict, inspect_page
from pinspect.render import Document, Lines
from pinspect.report import holder_text
from pinspect.schema import DOCUMENTS, FEATURE, HELD, pick


def owner_fields(v: PageVerdict) -> list[tuple[str, Any]]:
    """The page_owner section of ``page``: the record and its stacks, or why there is none."""
    feature = next((f for f in v.sources if f.name == "page_owner"), None)
    label = "owner (page_owner)"
    if feature is None or feature.state != "present":
        state = feature.state if feature else "absent"
        return [(label, f"{state}: {feature.detail}" if feature else state)]
    r: OwnerRecord | None = v.owner
    if r is None:
        why = ("page_ext entry unreadable" if v.owner_unreadable
               else "no record for this page (PAGE_EXT_OWNER clear: never allocated since boot)")
        return [(label, why)]
    who = " / ".join(str(x) for x in (r.pid, r.tgid) if x is not None)
    fields: list[tuple[str, Any]] = [
        (label, f"{'allocated' if r.allocated else 'freed since its last allocation'}, "
                f"order {r.order}"),
        ("owner gfp_mask", f"{r.gfp_mask:#x} {'|'.join(r.gfp_flags)}"),
    ]
    if who or r.comm is not None:
        fields.append(("owner pid / tgid (comm)", f"{who} ({r.comm})" if r.comm is not None
                       else who))
    if r.ts_nsec is not None:
        fields.append(("owner allocated at", f"{r.ts_nsec} ns"))
    if r.free_ts_nsec:
        freed_by = " / ".join(str(x) for x in (r.free_pid, r.free_tgid) if x is not None)
        fields.append(("owner last freed at", f"{r.free_ts_nsec} ns"
                       + (f" by pid / tgid {freed_by}" if freed_by and r.free_pid else "")))
    if r.last_migrate_reason is not None:
        fields.append(("owner last migrate reason", r.last_migrate_reason))
    fields.append(("allocation stack (page_owner)",
                   Lines(r.stack.lines()) if r.stack else
                   f"handle {r.handle:#x} not decoded" if r.handle else "none"))
    if r.free_handle:
        fields.append(("free stack (page_owner)", Lines(r.free_stack.lines()) if r.free_stack
                       else f"handle {r.free_handle:#x} not decoded"))
    return fields


    return fields


def pinner_fields(v: PageVerdict) -> list[tuple[str, Any]]:
    """The page_pinner section of ``page``: flags, the per-page record and its stack, and the
    ring records of this pfn (newest first); nothing on a kernel without page_pinner."""
    feature = next((f for f in v.sources if f.name == "page_pinner"), None)
    if feature is None:
        return []
    label = "pinner (page_pinner)"
    if feature.state != "present":
        return [(label, f"{feature.state}: {feature.detail}")]
    p = v.pinner
    if p is None:
        return [(label, "no flag and no record for this page")]
    fields: list[tuple[str, Any]] = [(label, ", ".join(p.flags) or "no flag set")]
    if p.handle is not None:
        fields.append(("pinner record", f"handle {p.handle:#x}, ts {p.ts_usec} us, "
                                        f"count {p.count}"))
        if p.handle:
            fields.append(("pin stack (page_pinner)", Lines(p.stack.lines()) if p.stack
                           else f"handle {p.handle:#x} not decoded"))
    for r in p.records:
        fields.append((f"{r.buffer}[{r.slot}]", Lines(r.text[:-1])))
    return fields


def mapper_fields(v: PageVerdict) -> list[tuple[str, Any]]:
    """The reverse map and holders section of ``page``: one line per mapper and holder."""
    if v.folio is None:
        return []
    lines = []
    for m in v.mappers:
        who = f"pid {m.pid} ({m.comm})" if m.pid is not None else f"mm {m.mm:#x} (no process)"
        if m.others:
            who += f" +pids {','.join(map(str, m.others))}"
        span = (f"{m.vaddr:#x}-{m.vaddr_end:#x}" if m.vaddr_end - m.vaddr > 4096
                else f"{m.vaddr:#x}")
        hint = []
        if m.has_pinned:
            hint.append("mm has pinned")
        if m.pinned_vm:
            hint.append(f"pinned_vm {m.pinned_vm}")
        lines.append(f"{who} {span} {m.file} [{','.join(m.flags)}]"
                     + (f" ({', '.join(hint)})" if hint else ""))
    fields: list[tuple[str, Any]] = [("mapped by", Lines(lines) if lines else "none found")]
    held = holder_text(v.folio)
    fields.append(("held by", Lines(held.split(", ")) if held else "none found"))
    return fields


def document(v: PageVerdict) -> Document:
    """The ``page`` result as a renderable document."""
    body = pick(v, DOCUMENTS["page"])
    body["raw"] = dict(v.raw)
    body["folio"] = page_object(v.folio) if v.folio is not None else None
    body["owner"] = owner_object(v.owner)
    body["pinner"] = pinner_object(v.pinner)
    body["sources"] = [pick(f, FEATURE) for f in v.sources]
    body["warnings"] = list(v.warnings)
    body["mappers"] = [mapper_object(m) for m in v.mappers]
    body["holders"] = [dict(pick(h, HELD), fds=list(h.fds)) for h in v.holders]
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
    fields += pinner_fields(v)
    fields += mapper_fields(v)
    fields += owner_fields(v)
    rows = [{"field": k, "value": val} for k, val in fields]
    return Document(command="page", body=body, rows=rows, columns=("field", "value"),
                    notes=[f"warning: {w}" for w in v.warnings])


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
