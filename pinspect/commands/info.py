"""``pinspect info``: what this kernel has, and what pinspect can read from it."""

from __future__ import annotations

from typing import Any

import click
from drgn import Program

from pinspect.commands import Needs, register
from pinspect.commands.common import (
    Options,
    emit,
    global_options,
    open_target,
    split_options,
)
from pinspect.features import PRESENT
from pinspect.kernel import Kernel, probe
from pinspect.pinner import pinner_log, record_counts
from pinspect.render import Document
from pinspect.stackdepot import stack_depot
from pinspect.typesource import source_info
from pinspect.zones import zones


def _sources(kernel: Kernel) -> tuple[dict[str, Any], list[str]]:
    """The type and symbol sources as JSON keys and as title lines."""
    info = source_info(kernel.prog)
    if info is None:  # a program that pinspect did not open: drgn loaded DWARF
        return ({"type_source": {"name": "DWARF", "origin": "", "lacks": ""},
                 "symbol_source": {"name": "ELF symbols", "origin": "", "lacks": ""}}, [])
    keys = {
        "type_source": {"name": info.types, "origin": info.types_origin,
                        "lacks": info.types_lack},
        "symbol_source": {"name": info.symbols, "origin": info.symbols_origin,
                          "lacks": info.symbols_lack},
    }
    lines = [f"types    {info.types} from {info.types_origin}; lacks {info.types_lack}",
             f"symbols  {info.symbols} from {info.symbols_origin}; lacks {info.symbols_lack}"]
    return keys, lines


def _records(kernel: Kernel) -> tuple[dict[str, Any], list[str]]:
    """Per record source: the pages that carry records, the stack depot's pools, page_pinner's
    rings and whether they went round; as JSON keys and as title lines."""
    from pinspect.commands.pinner_log import ring_object

    counts = record_counts(kernel)
    state = {f.name: f.state for f in kernel.features}
    owner = {"state": state.get("page_owner", "absent"), "pages": counts.owner_pages,
             "allocated": counts.owner_allocated}
    lines = []
    if counts.owner_pages is not None:
        lines.append(f"records  page_owner: {counts.owner_pages} pages carry a record, "
                     f"{counts.owner_allocated} allocated now")
    pinner = None
    if kernel.pinner_variant is not None:
        log = pinner_log(kernel.prog)
        pinner = {"state": state.get("page_pinner", "absent"),
                  "variant": kernel.pinner_variant, "flagged": counts.pinner_flagged,
                  "with_record": counts.pinner_with_record,
                  "rings": [ring_object(r) for r in log.rings]}
        if state.get("page_pinner") == PRESENT:
            rings = "; ".join(f"{r.name} {len(r.records)} records in {r.size} slots"
                              + (", wrapped" if r.wrapped else ", not wrapped")
                              + (f", {len(r.rejected)} rejected" if r.rejected else "")
                              for r in log.rings)
            lines.append(f"records  page_pinner {kernel.pinner_variant.upper()}: "
                         f"{counts.pinner_flagged} pages flagged"
                         + (f", {counts.pinner_with_record} with a record"
                            if counts.pinner_with_record is not None else "")
                         + (f"; {rings}" if rings else ""))
    layout = stack_depot(kernel.prog).layout
    depot: dict[str, Any] = {"state": state.get("stack depot", "absent"), "pools_in_use": None,
                             "pools_capacity": None, "pool_size": None, "bytes_used": None}
    if layout is not None:
        used = ((layout.pools_in_use - 1) * layout.pool_size + layout.last_pool_used
                if layout.last_pool_used is not None and layout.pools_in_use else None)
        depot.update(pools_in_use=layout.pools_in_use, pools_capacity=layout.pools_capacity,
                     pool_size=layout.pool_size, bytes_used=used)
        lines.append(f"depot    {layout.pools_in_use} of {layout.pools_capacity or '?'} pools "
                     f"of {layout.pool_size} bytes in use"
                     + (f", {used} bytes of records" if used is not None else ""))
    if counts.unreadable:
        lines.append(f"records  {counts.unreadable} pages without a readable page_ext entry")
    return {"page_owner": owner, "page_pinner": pinner, "stack_depot": depot}, lines


def document(kernel: Kernel) -> Document:
    """The ``info`` result as a renderable document."""
    all_zones = zones(kernel)
    present = sum(z.present for z in all_zones)
    managed = sum(z.managed for z in all_zones)
    body = {
        "release": kernel.release,
        "arch": kernel.arch.name,
        "page_size": kernel.page_size,
        "memory": {"present_pages": present, "managed_pages": managed,
                   "present_bytes": present * kernel.page_size},
        "zones": [{"node": z.node, "zone": z.name, "start_pfn": z.start_pfn,
                   "spanned": z.spanned, "present": z.present} for z in all_zones],
        "pageblock_order": kernel.pageblock_order,
        "features": [{"name": f.name, "state": f.state, "detail": f.detail}
                     for f in kernel.features],
    }
    source_keys, source_lines = _sources(kernel)
    body.update(source_keys)
    records, record_lines = _records(kernel)
    body["records"] = records
    size = present * kernel.page_size
    human = f"{size / (1 << 30):.1f} GiB" if size >= 1 << 30 else f"{size / (1 << 20):.1f} MiB"
    title = "\n".join([
        f"kernel   {kernel.release} ({kernel.arch.name}), page size {kernel.page_size}",
        f"memory   {present} pages present ({human}), {managed} managed",
        "zones    " + ", ".join(f"{z.node}:{z.name} {z.start_pfn:#x}+{z.spanned:#x}"
                                for z in all_zones),
        *source_lines,
        *record_lines,
        "",
    ])
    rows = [{"feature": f.name, "state": f.state, "detail": f.detail} for f in kernel.features]
    return Document(command="info", body=body, rows=rows,
                    columns=("feature", "state", "detail"), table_title=title)


def run(prog: Program, options: Options) -> Kernel:
    """``info`` on an open program: write what the kernel has, return the probe."""
    kernel = probe(prog)
    emit(document(kernel), options)
    return kernel


@register(Needs(), run)
@click.command("info")
@global_options
@click.pass_context
def command(ctx: click.Context, **values: Any) -> None:
    """Kernel release, memory, zones, and which features are present, off or absent.

    \b
    Examples:
      sudo pinspect info
      pinspect -c vmcore -s vmlinux info --format json
    """
    options, params = split_options(ctx, values)
    run(open_target("info", options), options, **params)
