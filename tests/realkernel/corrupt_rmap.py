"""Bad input for the reverse map and the holders: a real dump with overlays of chosen words
(drgn reads the newest memory segment first), turning an anon_vma tree, the task list, an fd
table and a pipe ring into loops and wild pointers."""

from __future__ import annotations

import time
from typing import Any

from drgn import Object, Program

from pinspect.kernel import probe
from pinspect.procs import proc_index
from pinspect.report import attach_mappers, find_pinned
from pinspect.scan import struct_page_address

WILD = 0xDEAD000000000000


def overlay(prog: Program, address: int, value: int) -> None:
    """Make the 8 bytes at *address* read as *value*."""
    data = value.to_bytes(8, "little")

    def read(addr: int, count: int, offset: int, physical: bool) -> bytes:
        return data[offset:offset + count]

    prog.add_memory_segment(address, 8, read, False)


def corrupt_and_map(prog: Program) -> dict[str, Any]:
    """Corrupt one anon_vma tree (a node whose left child is itself, and a wild right child),
    the task list (the last task's next points back to its predecessor), the workload's fd
    array (a wild struct file) and a pipe's ring (a wild buffer array), then map every pinned
    folio. Returns the summary and the seconds it took."""
    report = find_pinned(prog, owners=False)
    anon = next(p for p in report.pages if p.mapping == "anon" and p.pins)
    kernel = probe(prog)
    mapping = int.from_bytes(prog.read(struct_page_address(kernel, anon.pfn)
                                       + kernel.layout.mapping, 8), "little")
    anon_vma = Object(prog, "struct anon_vma", address=mapping & ~3)
    node = anon_vma.rb_root.rb_root.rb_node.value_()
    rb = Object(prog, "struct rb_node", address=node)
    overlay(prog, rb.rb_left.address_, node)  # a cycle
    overlay(prog, rb.rb_right.address_, WILD)  # a wild pointer
    procs = proc_index(prog)
    tasks = procs.procs
    off = prog.type("struct task_struct").member("tasks").offset
    if len(tasks) >= 2:  # the last task's next goes back to the one before it: a loop
        overlay(prog, tasks[-1].task + off, tasks[-2].task + off)
    files = procs.open_files()
    pipe = next(f for f in files if prog.symbol(f.f_op).name.startswith("pipe"))
    overlay(prog, Object(prog, "struct pipe_inode_info", address=pipe.private_data)
            .bufs.address_, WILD)
    fdt = Object(prog, "struct files_struct", address=pipe.proc.files).fdt
    overlay(prog, fdt.fd.value_() + 8 * 3, WILD)  # fd 3 of the workload: a wild file
    prog.cache.clear()  # read the processes again, through the overlays
    t0 = time.monotonic()
    summary = attach_mappers(prog, report.pages)
    return {"summary": summary, "seconds": time.monotonic() - t0, "pages": report.pages}
