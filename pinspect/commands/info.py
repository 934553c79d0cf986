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
from pinspect.kernel import Kernel, probe
from pinspect.render import Document
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
    size = present * kernel.page_size
    human = f"{size / (1 << 30):.1f} GiB" if size >= 1 << 30 else f"{size / (1 << 20):.1f} MiB"
    title = "\n".join([
        f"kernel   {kernel.release} ({kernel.arch.name}), page size {kernel.page_size}",
        f"memory   {present} pages present ({human}), {managed} managed",
        "zones    " + ", ".join(f"{z.node}:{z.name} {z.start_pfn:#x}+{z.spanned:#x}"
                                for z in all_zones),
        *source_lines,
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
