"""Kernel objects that pages point to, kmalloc'd in the slab pages: the
shmem and ext4 struct address_space, the inodes (and their i_data) of the
scenario's files, an anon_vma, a KSM stable node and buffer heads; and the
page->mapping / page->private of each folio (gen/tasks.py points the anon
pages that processes map at their own anon_vma)."""

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
    inodes: dict[str, int]  # FileSpec key -> struct inode (its i_data is the mapping)
    mappings: dict[str, int]  # FileSpec key -> struct address_space


def setup_objects(m: Machine) -> Objects:
    t = m.t
    as_size = t.sizeof("struct address_space")
    shmem_mapping = m.kmalloc(as_size)
    file_mapping = m.kmalloc(as_size)
    for mapping, ops in ((shmem_mapping, "shmem_aops"), (file_mapping, "ext4_aops")):
        t.put(mapping, "struct address_space", "a_ops", m.sym(ops))
        t.put(mapping, "struct address_space", "i_mmap.rb_root.rb_node", 0)
    objs = Objects(
        shmem_mapping,
        file_mapping,
        m.kmalloc(ANON_VMA_SIZE),
        m.kmalloc(KSM_STABLE_NODE_SIZE),
        {},
        {},
    )
    nrpages = {shmem_mapping: 0, file_mapping: 0}
    i_data = t.offsetof("struct inode", "i_data")
    for ino, spec in enumerate(m.sc.files, start=0x1000):
        inode = m.kmalloc(t.sizeof("struct inode"))
        mapping = inode + i_data
        objs.inodes[spec.key] = inode
        objs.mappings[spec.key] = mapping
        nrpages[mapping] = 0
        t.put(inode, "struct inode", "i_mode", 0o100600 if spec.shmem else 0o100644)
        t.put(inode, "struct inode", "i_ino", ino)
        t.put(inode, "struct inode", "i_mapping", mapping)
        t.put(mapping, "struct address_space", "host", inode)
        t.put(mapping, "struct address_space", "a_ops", m.sym("shmem_aops" if spec.shmem
                                                             else "ext4_aops"))
    for f in m.folios:
        st = m.pages[f.pfn]
        if f.file is not None:
            st.mapping = objs.mappings[f.file]
            nrpages[st.mapping] += f.nr_pages
            continue
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
