"""Kernel objects that pages point to, kmalloc'd in the slab pages: the
shmem and ext4 struct address_space, an anon_vma, a KSM stable node and
buffer heads; and the page->mapping / page->private of each folio."""

from __future__ import annotations

from dataclasses import dataclass

from .machine import Machine
from .pages import PAGE_MAPPING_ANON, PAGE_MAPPING_KSM

ANON_VMA_SIZE = 120
KSM_STABLE_NODE_SIZE = 64
BUFFER_HEAD_SIZE = 104


@dataclass(frozen=True)
class Objects:
    """Addresses of the objects the folios point to."""

    shmem_mapping: int
    file_mapping: int
    anon_vma: int
    ksm_node: int


def setup_objects(m: Machine) -> Objects:
    t = m.t
    as_size = t.sizeof("struct address_space")
    shmem_mapping = m.kmalloc(as_size)
    file_mapping = m.kmalloc(as_size)
    for mapping, ops in ((shmem_mapping, "shmem_aops"), (file_mapping, "ext4_aops")):
        t.put(mapping, "struct address_space", "a_ops", m.sym(ops))
        t.put(mapping, "struct address_space", "i_mmap.rb_root.rb_node", 0)
    objs = Objects(
        shmem_mapping, file_mapping, m.kmalloc(ANON_VMA_SIZE), m.kmalloc(KSM_STABLE_NODE_SIZE)
    )
    nrpages = {shmem_mapping: 0, file_mapping: 0}
    for f in m.folios:
        st = m.pages[f.pfn]
        if f.kind == "anon":
            st.mapping = objs.anon_vma | PAGE_MAPPING_ANON
            if "swapcache" in f.flags:
                st.private = (f.pfn & 0xFFFF) << 5 | 1  # a swp_entry_t value
        elif f.kind == "ksm":
            st.mapping = objs.ksm_node | PAGE_MAPPING_KSM
        elif f.kind == "shmem":
            st.mapping = shmem_mapping
            nrpages[shmem_mapping] += f.nr_pages
        elif f.kind == "file":
            st.mapping = file_mapping
            nrpages[file_mapping] += f.nr_pages
            if "private" in f.flags:
                st.private = m.kmalloc(BUFFER_HEAD_SIZE)
    for mapping, n in nrpages.items():
        t.put(mapping, "struct address_space", "nrpages", n)
    return objs
