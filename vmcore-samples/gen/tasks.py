"""Processes and what hangs off them (kernel/fork.c, mm/mmap.c, mm/rmap.c, fs/, io_uring/,
mm/swap.c): the task list from init_task, each process's mm_struct with its VMAs (a maple
tree leaf on 6.1+, the mmap list and mm_rb tree on 5.10), the anon_vma of its anonymous
VMAs with the interval tree of anon_vma_chains, the i_mmap interval tree of every mapped
file, the fd tables, struct file / dentry / mount chains (a root mount, tmpfs at /dev/shm,
the kernel's internal shmem mount of memfd and SysV shm), a pipe holding page references
(vmsplice, splice), an io_uring ring with registered buffers, and the per-CPU LRU batches.

Everything is described by the scenario (``Scenario.procs``, ``files``, ``pipes``, ``rings``,
``lru``); :class:`Tasks` records the addresses the truth file names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .machine import Machine
from .memmap import pfn_to_page
from .objects import Objects
from .pages import PAGE_MAPPING_ANON
from .percpu import NR_CPUS_ONLINE, per_cpu_addr
from .scenario import FileSpec, ProcSpec, VmaSpec, anon_vaddr, cma_area_of

# vm_flags bits (include/linux/mm.h, unchanged since 4.3)
VM_BITS = {
    "read": 0, "write": 1, "exec": 2, "shared": 3, "mayread": 4, "maywrite": 5,
    "mayexec": 6, "mayshare": 7, "locked": 13, "hugepage": 29,
}
# MMF_HAS_PINNED (include/linux/sched/coredump.h, a #define): bit 27 from 6.0 on; 5.9-5.14
# have mm->has_pinned instead
MMF_HAS_PINNED = 27
MMF_DUMPABLE = 1  # SUID_DUMP_USER in the low bits of mm->flags
MNT_NS_INTERNAL = (-22) & (2**64 - 1)  # ERR_PTR(-EINVAL): kern_mount()'s mounts
MA_ROOT_PARENT = 1
MAPLE_LEAF_64 = 1  # enum maple_type
MAPLE_ROOT_NODE = 2
MM_MT_FLAGS = 0x301  # MT_FLAGS_ALLOC_RANGE | MT_FLAGS_LOCK_EXTERN
TASK_INTERRUPTIBLE = 1
PF_KTHREAD = 0x00200000
PIPE_RING = 16  # PIPE_DEF_BUFFERS
NR_OPEN_DEFAULT = 64
IORING_RSRC_BUFFER = 1
RB_BLACK = 1
# x86-64 PTE bits: present, rw, user, accessed, dirty (_PAGE_TABLE); a page adds NX
USER_TABLE = 0x67
USER_PAGE = 0x67 | 1 << 63


def vm_flags(names: tuple[str, ...]) -> int:
    flags = 0
    for n in names:
        flags |= 1 << VM_BITS[n]
    if "read" in names:
        flags |= 1 << VM_BITS["mayread"]
    if "write" in names:
        flags |= 1 << VM_BITS["maywrite"]
    return flags


@dataclass
class BuiltVma:
    spec: VmaSpec
    address: int
    flags: int


@dataclass
class BuiltProc:
    spec: ProcSpec
    task: int
    mm: int
    files: int
    vmas: list[BuiltVma]
    anon_vma: int  # 0: no anonymous VMA


@dataclass
class Tasks:
    """What was built: addresses the truth names."""

    procs: list[BuiltProc] = field(default_factory=list)
    files: dict[str, int] = field(default_factory=dict)  # FileSpec key -> its struct file
    pipes: dict[str, int] = field(default_factory=dict)  # PipeSpec key -> pipe_inode_info
    rings: dict[str, int] = field(default_factory=dict)  # RingSpec key -> io_ring_ctx
    lru: dict[int, int] = field(default_factory=dict)  # cpu -> its lru_add batch
    lru_pfns: dict[int, tuple[int, ...]] = field(default_factory=dict)  # cpu -> pfns in it
    pipe_bufs: dict[str, tuple[tuple[int, str], ...]] = field(default_factory=dict)
    ring_bufs: dict[str, tuple[tuple[int, ...], ...]] = field(default_factory=dict)


def _list_init(m: Machine, head: int) -> None:
    m.write_ulong(head, head)
    m.write_ulong(head + 8, head)


def _list_add_tail(m: Machine, head: int, node: int) -> None:
    prev = int.from_bytes(m.mem.read(head + 8, 8), "little")
    m.write_ulong(node, head)
    m.write_ulong(node + 8, prev)
    m.write_ulong(prev, node)
    m.write_ulong(head + 8, node)


class _Rb:
    """Writes balanced red-black trees (include/linux/rbtree.h): a node's parent pointer
    and color share __rb_parent_color; augmented interval trees also get each node's
    subtree maximum."""

    def __init__(self, m: Machine) -> None:
        self.m = m
        t = m.t
        self.pc = t.offsetof("struct rb_node", "__rb_parent_color")
        self.right = t.offsetof("struct rb_node", "rb_right")
        self.left = t.offsetof("struct rb_node", "rb_left")

    def build(self, nodes: list[int], root: int, leftmost: int | None = None,
              last: list[tuple[int, int]] | None = None) -> None:
        """*nodes*: rb_node addresses in key order; *root*: the rb_root's rb_node field;
        *leftmost*: rb_root_cached's rb_leftmost; *last*: per node (address of its
        rb_subtree_last, its own last value)."""
        m = self.m
        n = len(nodes)
        depth = max(0, n.bit_length() - 1)
        perfect = n == (1 << (depth + 1)) - 1

        def build(lo: int, hi: int, parent: int, d: int) -> tuple[int, int]:
            if lo >= hi:
                return 0, -1
            mid = (lo + hi) // 2
            node = nodes[mid]
            red = d == depth and not perfect and d > 0
            m.write_ulong(node + self.pc, parent | (0 if red else RB_BLACK))
            left, lmax = build(lo, mid, node, d + 1)
            right, rmax = build(mid + 1, hi, node, d + 1)
            m.write_ulong(node + self.left, left)
            m.write_ulong(node + self.right, right)
            top = -1
            if last is not None:
                top = max(last[mid][1], lmax, rmax)
                m.write_ulong(last[mid][0], top)
            return node, top

        top, _ = build(0, n, 0, 0)
        m.write_ulong(root, top)
        if leftmost is not None:
            m.write_ulong(leftmost, nodes[0] if nodes else 0)


class _Builder:
    def __init__(self, m: Machine, objs: Objects) -> None:
        self.m = m
        self.t = m.t
        self.objs = objs
        self.rb = _Rb(m)
        self.out = Tasks()
        self.hashed = m.kmalloc(64)  # a dentry hash bucket: hashed dentries' d_hash.pprev
        # the scenario's page-table pages, for the user page tables of some mms
        # (outside CMA areas, where page-table pages stand for blockers)
        self.pt_pages = sorted(f.pfn for f in m.folios
                               if f.kind == "pgtable" and cma_area_of(f.pfn) is None)

    # --- files -------------------------------------------------------------------------

    def dentry(self, name: bytes, parent: int | None, inode: int = 0,
               hashed: bool = True) -> int:
        t, m = self.t, self.m
        d = m.kmalloc(t.sizeof("struct dentry"))
        if t.has_member("struct dentry", "d_iname"):
            inline = d + t.offsetof("struct dentry", "d_iname")
            t.put(d, "struct dentry", "d_iname", name + b"\0")
        else:  # 6.14+: d_shortname (a union)
            inline = d + t.offsetof("struct dentry", "d_shortname")
            t.put(d, "struct dentry", "d_shortname", name + b"\0")
        t.put(d, "struct dentry", "d_name.len", len(name))
        t.put(d, "struct dentry", "d_name.name", inline)
        t.put(d, "struct dentry", "d_parent", d if parent is None else parent)
        t.put(d, "struct dentry", "d_inode", inode)
        if hashed:
            t.put(d, "struct dentry", "d_hash.pprev", self.hashed)
        return d

    def mount(self, root: int, parent: int | None, mountpoint: int | None, ns: int) -> int:
        t, m = self.t, self.m
        mnt = m.kmalloc(t.sizeof("struct mount"))
        t.put(mnt, "struct mount", "mnt.mnt_root", root)
        t.put(mnt, "struct mount", "mnt_parent", mnt if parent is None else parent)
        t.put(mnt, "struct mount", "mnt_mountpoint", root if mountpoint is None else mountpoint)
        t.put(mnt, "struct mount", "mnt_ns", ns)
        _list_init(m, mnt + t.offsetof("struct mount", "mnt_mounts"))
        return mnt

    def file(self, fops: str, mnt: int = 0, dentry: int = 0, inode: int = 0, mapping: int = 0,
             private: int = 0, count: int = 1) -> int:
        t, m = self.t, self.m
        f = m.kmalloc(t.sizeof("struct file"))
        t.put(f, "struct file", "f_op", m.sym(fops))
        if mnt:
            t.put(f, "struct file", "f_path.mnt", mnt + t.offsetof("struct mount", "mnt"))
        t.put(f, "struct file", "f_path.dentry", dentry)
        t.put(f, "struct file", "f_inode", inode)
        t.put(f, "struct file", "f_mapping", mapping)
        t.put(f, "struct file", "private_data", private)
        t.put(f, "struct file", "f_mode", 0x3)  # FMODE_READ | FMODE_WRITE
        for counter in ("f_count", "f_ref"):  # 6.13+: file_ref_t f_ref
            if t.has_member("struct file", counter):
                t.put(f, "struct file", counter, count)
        return f

    def files(self, specs: list[FileSpec], users: dict[str, int]) -> None:
        """The mounts, dentry chains and one struct file per FileSpec."""
        m = self.m
        ns = m.kmalloc(64)  # the mount namespace (struct mnt_namespace, opaque here)
        root_d = self.dentry(b"/", None)
        root = self.mount(root_d, None, None, ns)
        dev = self.dentry(b"dev", root_d)
        shm_dir = self.dentry(b"shm", dev)
        tmpfs_root = self.dentry(b"/", None)
        tmpfs = self.mount(tmpfs_root, root, shm_dir, ns)
        shm_root = self.dentry(b"/", None)
        shm = self.mount(shm_root, None, None, MNT_NS_INTERNAL)
        for spec in specs:
            inode = self.objs.inodes[spec.key]
            mapping = self.objs.mappings[spec.key]
            if spec.mount == "shm":  # alloc_file_pseudo(): its own root, never hashed
                d = self.dentry(spec.names[0], None, inode, hashed=False)
                mnt = shm
            else:
                d = root_d if spec.mount == "root" else tmpfs_root
                for name in spec.names:
                    d = self.dentry(name, d, 0)
                self.t.put(d, "struct dentry", "d_inode", inode)
                mnt = root if spec.mount == "root" else tmpfs
            fops = "shmem_file_operations" if spec.shmem else "ext4_file_operations"
            self.out.files[spec.key] = self.file(fops, mnt, d, inode, mapping,
                                                 count=users.get(spec.key, 1))

    # --- processes -----------------------------------------------------------------------

    def anon_vma(self) -> int:
        t = self.t
        av = self.m.kmalloc(t.sizeof("struct anon_vma"))
        t.put(av, "struct anon_vma", "root", av)
        t.put(av, "struct anon_vma", "refcount", 1)
        return av

    def mm(self, spec: ProcSpec) -> int:
        t, m = self.t, self.m
        mm = m.kmalloc(t.sizeof("struct mm_struct"))
        t.put(mm, "struct mm_struct", "mm_users", 1)
        t.put(mm, "struct mm_struct", "mm_count", 1)
        t.put(mm, "struct mm_struct", "map_count", len(spec.vmas))
        t.put(mm, "struct mm_struct", "pinned_vm", spec.pinned_vm)
        flags = MMF_DUMPABLE
        if t.has_member("struct mm_struct", "has_pinned"):  # 5.9-5.14
            t.put(mm, "struct mm_struct", "has_pinned", int(spec.has_pinned))
        elif spec.has_pinned:
            flags |= 1 << MMF_HAS_PINNED
        if t.has_member("struct mm_struct", "flags.__mm_flags"):  # 6.18+: mm_flags_t
            t.put(mm, "struct mm_struct", "flags.__mm_flags[0]", flags)
        else:
            t.put(mm, "struct mm_struct", "flags", flags)
        if spec.vmas:
            t.put(mm, "struct mm_struct", "mmap_base", spec.vmas[-1].end)
        return mm

    def vma(self, spec: VmaSpec, mm: int) -> BuiltVma:
        t, m = self.t, self.m
        v = m.kmalloc(t.sizeof("struct vm_area_struct"))
        flags = vm_flags(spec.flags)
        t.put(v, "struct vm_area_struct", "vm_start", spec.start)
        t.put(v, "struct vm_area_struct", "vm_end", spec.end)
        t.put(v, "struct vm_area_struct", "vm_mm", mm)
        t.put(v, "struct vm_area_struct", "vm_flags", flags)
        t.put(v, "struct vm_area_struct", "vm_pgoff", spec.pgoff)
        _list_init(m, v + t.offsetof("struct vm_area_struct", "anon_vma_chain"))
        if spec.file is not None:
            t.put(v, "struct vm_area_struct", "vm_file", self.out.files[spec.file])
        return BuiltVma(spec, v, flags)

    def vma_tree(self, mm: int, vmas: list[BuiltVma]) -> None:
        """The mm's VMAs: a maple tree with one leaf node (6.1+: mm->mm_mt), or the mmap
        list and mm_rb tree (up to 6.0)."""
        t, m = self.t, self.m
        if t.has_member("struct mm_struct", "mm_mt"):
            node = m.kmalloc(t.sizeof("struct maple_node"), align=256)
            mt = mm + t.offsetof("struct mm_struct", "mm_mt")
            t.put(node, "struct maple_node", "mr64.parent", mt | MA_ROOT_PARENT)
            # ranges: gap, vma, gap, vma, ..., gap to ULONG_MAX (the last slot has no pivot)
            slot = 0
            prev_end = 0
            for v in vmas:
                for value, last in ((0, v.spec.start - 1), (v.address, v.spec.end - 1)):
                    if last < prev_end:
                        continue
                    t.put(node, "struct maple_node", f"mr64.pivot[{slot}]", last)
                    t.put(node, "struct maple_node", f"mr64.slot[{slot}]", value)
                    slot += 1
                    prev_end = last + 1
            assert slot < 15
            t.put(node, "struct maple_node", "mr64.meta.end", slot)
            t.put(mt, "struct maple_tree", "ma_flags", MM_MT_FLAGS)
            t.put(mt, "struct maple_tree", "ma_root",
                  node | MAPLE_LEAF_64 << 3 | MAPLE_ROOT_NODE)
            return
        # up to 6.0: sorted list and an rbtree keyed by vm_start
        for i, v in enumerate(vmas):
            nxt = vmas[i + 1].address if i + 1 < len(vmas) else 0
            prv = vmas[i - 1].address if i else 0
            t.put(v.address, "struct vm_area_struct", "vm_next", nxt)
            t.put(v.address, "struct vm_area_struct", "vm_prev", prv)
        t.put(mm, "struct mm_struct", "mmap", vmas[0].address if vmas else 0)
        if vmas:
            t.put(mm, "struct mm_struct", "highest_vm_end", vmas[-1].spec.end)
        rb = t.offsetof("struct vm_area_struct", "vm_rb")
        self.rb.build([v.address + rb for v in vmas],
                      mm + t.offsetof("struct mm_struct", "mm_rb.rb_node"))

    def task(self, address: int, pid: int, comm: bytes, mm: int, files: int,
             leader: int, parent: int) -> None:
        t, m = self.t, self.m
        ts = "struct task_struct"
        t.put(address, ts, "pid", pid)
        t.put(address, ts, "tgid", pid)
        t.put(address, ts, "comm", comm.ljust(16, b"\0")[:16])
        t.put(address, ts, "mm", mm)
        t.put(address, ts, "active_mm", mm)
        t.put(address, ts, "files", files)
        t.put(address, ts, "group_leader", leader)
        t.put(address, ts, "real_parent", parent)
        t.put(address, ts, "parent", parent)
        t.put(address, ts, "__state" if t.has_member(ts, "__state") else "state",
              TASK_INTERRUPTIBLE)
        t.put(address, ts, "usage", 1)
        for head in ("children", "sibling", "thread_group", "thread_node"):
            if t.has_member(ts, head):
                _list_init(m, address + t.offsetof(ts, head))

    def fd_table(self, fds: dict[int, int]) -> int:
        t, m = self.t, self.m
        fs = "struct files_struct"
        files = m.kmalloc(t.sizeof(fs))
        t.put(files, fs, "count", 1)
        fdt = files + t.offsetof(fs, "fdtab")
        t.put(files, fs, "fdt", fdt)
        t.put(fdt, "struct fdtable", "max_fds", NR_OPEN_DEFAULT)
        array = files + t.offsetof(fs, "fd_array")
        t.put(fdt, "struct fdtable", "fd", array)
        t.put(fdt, "struct fdtable", "open_fds", files + t.offsetof(fs, "open_fds_init"))
        t.put(fdt, "struct fdtable", "close_on_exec",
              files + t.offsetof(fs, "close_on_exec_init"))
        t.put(fdt, "struct fdtable", "full_fds_bits",
              files + t.offsetof(fs, "full_fds_bits_init"))
        bits = 0
        for fd, f in fds.items():
            assert fd < NR_OPEN_DEFAULT
            m.write_ulong(array + 8 * fd, f)
            bits |= 1 << fd
        t.put(files, fs, "open_fds_init", bits)
        t.put(files, fs, "next_fd", max(fds, default=-1) + 1)
        return files

    def page_tables(self, mm: int, mapped: list[tuple[int, int]]) -> None:
        """User page tables of *mm* (x86-64, 4 levels, 4 KiB pages) mapping each (address,
        pfn), in the scenario's page-table pages; mm->pgd is the top table's direct-map
        address."""
        m = self.m

        def table() -> int:
            return self.pt_pages.pop(0)

        def entry(table_pfn: int, idx: int) -> int:
            return int.from_bytes(m.mem.read_phys(table_pfn * m.ps + 8 * idx, 8), "little")

        pgd = table()
        for vaddr, pfn in mapped:
            cur = pgd
            for level in (4, 3, 2):
                idx = (vaddr >> (12 + 9 * (level - 1))) & 511
                e = entry(cur, idx)
                if not e & 1:
                    e = table() << 12 | USER_TABLE
                    m.mem.write_phys(cur * m.ps + 8 * idx, e.to_bytes(8, "little"))
                cur = e >> 12 & (2**40 - 1)
            pte = pfn << 12 | USER_PAGE
            m.mem.write_phys(cur * m.ps + 8 * (vaddr >> 12 & 511), pte.to_bytes(8, "little"))
        self.t.put(mm, "struct mm_struct", "pgd", m.direct(pgd))

    # --- holders -------------------------------------------------------------------------

    def pipe(self, bufs: tuple[tuple[int, str], ...]) -> int:
        t, m = self.t, self.m
        pi = "struct pipe_inode_info"
        pipe = m.kmalloc(t.sizeof(pi))
        size = t.sizeof("struct pipe_buffer")
        array = m.kmalloc(PIPE_RING * size)
        for i, (pfn, kind) in enumerate(bufs):
            b = array + i * size
            t.put(b, "struct pipe_buffer", "page", pfn_to_page(m, pfn))
            t.put(b, "struct pipe_buffer", "offset", 0)
            t.put(b, "struct pipe_buffer", "len", m.ps)
            ops = "user_page_pipe_buf_ops" if kind == "user" else "page_cache_pipe_buf_ops"
            t.put(b, "struct pipe_buffer", "ops", m.sym(ops))
        t.put(pipe, pi, "head", len(bufs))
        t.put(pipe, pi, "tail", 0)
        t.put(pipe, pi, "ring_size", PIPE_RING)
        t.put(pipe, pi, "max_usage", PIPE_RING)
        t.put(pipe, pi, "readers", 1)
        t.put(pipe, pi, "writers", 1)
        t.put(pipe, pi, "files", 2)
        t.put(pipe, pi, "bufs", array)
        return pipe

    def ring(self, buffers: tuple[tuple[int, ...], ...], mm: int) -> int:
        t, m = self.t, self.m
        rc = "struct io_ring_ctx"
        ctx = m.kmalloc(t.sizeof(rc), align=64)
        bvec = t.sizeof("struct bio_vec")
        ubufs = []
        for pfns in buffers:
            imu = m.kmalloc(t.sizeof("struct io_mapped_ubuf") + len(pfns) * bvec)
            ub = "struct io_mapped_ubuf"
            t.put(imu, ub, "ubuf", anon_vaddr(pfns[0]))
            if t.has_member(ub, "ubuf_end"):  # up to 6.9
                t.put(imu, ub, "ubuf_end", anon_vaddr(pfns[0]) + len(pfns) * m.ps)
            else:
                t.put(imu, ub, "len", len(pfns) * m.ps)
            t.put(imu, ub, "nr_bvecs", len(pfns))
            if t.has_member(ub, "refs"):
                t.put(imu, ub, "refs", 1)
            if t.has_member(ub, "folio_shift"):
                t.put(imu, ub, "folio_shift", 12)
            first = imu + t.offsetof(ub, "bvec")
            for i, pfn in enumerate(pfns):
                t.put(first + i * bvec, "struct bio_vec", "bv_page", pfn_to_page(m, pfn))
                t.put(first + i * bvec, "struct bio_vec", "bv_len", m.ps)
                t.put(first + i * bvec, "struct bio_vec", "bv_offset", 0)
            ubufs.append(imu)
        if t.has_member(rc, "user_bufs"):  # up to 6.12
            array = m.kmalloc(8 * len(ubufs))
            for i, imu in enumerate(ubufs):
                m.write_ulong(array + 8 * i, imu)
            t.put(ctx, rc, "user_bufs", array)
            t.put(ctx, rc, "nr_user_bufs", len(ubufs))
        else:  # 6.13+: buf_table of io_rsrc_nodes
            nodes = m.kmalloc(8 * len(ubufs))
            for i, imu in enumerate(ubufs):
                node = m.kmalloc(t.sizeof("struct io_rsrc_node"))
                t.put(node, "struct io_rsrc_node", "type", IORING_RSRC_BUFFER)
                t.put(node, "struct io_rsrc_node", "refs", 1)
                t.put(node, "struct io_rsrc_node", "buf", imu)
                m.write_ulong(nodes + 8 * i, node)
            t.put(ctx, rc, "buf_table.nr", len(ubufs))
            t.put(ctx, rc, "buf_table.nodes", nodes)
        t.put(ctx, rc, "mm_account", mm)
        return ctx

    def lru(self, cpu: int, pfns: tuple[int, ...]) -> int:
        t, m = self.t, self.m
        if "cpu_fbatches" in m.syms:  # 6.1+
            batch = per_cpu_addr(m, "cpu_fbatches", cpu) + t.offsetof("struct cpu_fbatches",
                                                                      "lru_add")
            tname, array = "struct folio_batch", "folios"
        else:  # 5.8-6.0: struct lru_pvecs
            batch = per_cpu_addr(m, "lru_pvecs", cpu) + t.offsetof("struct lru_pvecs",
                                                                   "lru_add")
            tname, array = "struct pagevec", "pages"
        t.put(batch, tname, "nr", len(pfns))
        for i, pfn in enumerate(pfns):
            t.put(batch, tname, f"{array}[{i}]", pfn_to_page(m, pfn))
        return batch


def setup_tasks(m: Machine, objs: Objects) -> Tasks:
    """Build the scenario's processes; point their anon pages at their anon_vma."""
    b = _Builder(m, objs)
    t = m.t
    sc = m.sc
    out = b.out
    users: dict[str, int] = {}
    for p in sc.procs:
        for _fd, kind, key in p.fds:
            if kind == "file":
                users[key] = users.get(key, 0) + 1
    b.files(list(sc.files), users)
    procs = {p.pid: p for p in sc.procs}
    # tasks (task_struct spans pages: kmalloc'd whole), in pid order
    tasks = {p.pid: m.kmalloc(t.sizeof("struct task_struct")) for p in sc.procs}
    init_task = m.sym("init_task")
    # anonymous VMAs and their anon_vma; file VMAs by file
    by_file: dict[str, list[BuiltVma]] = {}
    avc_size = t.sizeof("struct anon_vma_chain")
    ringed = {key: pid for pid, p in procs.items() for _fd, kind, key in p.fds
              if kind == "io_uring"}
    anon_vmas: dict[int, int] = {}
    chains: dict[int, list[tuple[int, int, int]]] = {}  # anon_vma -> (pgoff, avc, last)
    for p in sc.procs:
        mapped: list[tuple[int, int]] = []  # (user address, pfn) for the page tables
        mm = b.mm(p)
        vmas = [b.vma(v, mm) for v in p.vmas]
        b.vma_tree(mm, vmas)
        anon = [v for v in vmas if v.spec.file is None]
        av = b.anon_vma() if anon else 0
        anon_vmas[p.pid] = av
        # anon_vma_fork(): a child's VMA is chained to its parent's anon_vma too
        linked = [av] + ([anon_vmas[p.parent]] if p.parent and anon_vmas.get(p.parent) else [])
        for v in anon:
            for target in linked:
                avc = m.kmalloc(avc_size)
                t.put(avc, "struct anon_vma_chain", "vma", v.address)
                t.put(avc, "struct anon_vma_chain", "anon_vma", target)
                _list_add_tail(m, v.address + t.offsetof("struct vm_area_struct",
                                                         "anon_vma_chain"),
                               avc + t.offsetof("struct anon_vma_chain", "same_vma"))
                chains.setdefault(target, []).append(
                    (v.spec.pgoff, avc, v.spec.pgoff + (v.spec.end - v.spec.start) // m.ps - 1))
            t.put(v.address, "struct vm_area_struct", "anon_vma", av)
            if not v.spec.faulted:
                continue
            for f in m.folios:  # the anon pages this VMA maps are of this anon_vma
                if f.kind == "anon" and v.spec.start <= anon_vaddr(f.pfn) < v.spec.end:
                    m.pages[f.pfn].mapping = av | PAGE_MAPPING_ANON
                    if p.pagetables:
                        mapped.append((anon_vaddr(f.pfn), f.pfn))
        if av:
            t.put(av, "struct anon_vma", "num_children", 1)
            if t.has_member("struct anon_vma", "num_active_vmas"):
                t.put(av, "struct anon_vma", "num_active_vmas", len(anon))
            if p.parent and anon_vmas.get(p.parent):
                t.put(av, "struct anon_vma", "parent", anon_vmas[p.parent])
                t.put(av, "struct anon_vma", "root", anon_vmas[p.parent])
        if p.pagetables:
            b.page_tables(mm, mapped)
        for v in vmas:
            if v.spec.file is not None:
                by_file.setdefault(v.spec.file, []).append(v)
        # fds: files, pipes, rings
        fds: dict[int, int] = {}
        for fd, kind, key in p.fds:
            if kind == "file":
                fds[fd] = out.files[key]
            elif kind == "pipe":
                if key not in out.pipes:
                    spec = next(x for x in sc.pipes if x.key == key)
                    out.pipes[key] = b.pipe(spec.bufs)
                    out.pipe_bufs[key] = spec.bufs
                fds[fd] = b.file("pipefifo_fops", private=out.pipes[key])
            elif kind == "io_uring":
                spec_r = next(x for x in sc.rings if x.key == key)
                out.rings[key] = b.ring(spec_r.buffers, mm if ringed[key] == p.pid else 0)
                out.ring_bufs[key] = spec_r.buffers
                fds[fd] = b.file("io_uring_fops", private=out.rings[key])
        files = b.fd_table(fds)
        parent = tasks.get(p.parent, init_task) if p.parent else tasks.get(1, init_task)
        if p.pid == 1:
            parent = init_task
        b.task(tasks[p.pid], p.pid, p.comm, mm, files, tasks[p.pid], parent)
        if t.has_member("struct mm_struct", "owner"):
            t.put(mm, "struct mm_struct", "owner", tasks[p.pid])
        out.procs.append(BuiltProc(p, tasks[p.pid], mm, files, vmas, av))
    # the anon_vmas' interval trees of anon_vma_chains, keyed by pgoff
    for av, items in chains.items():
        items.sort()
        rb = t.offsetof("struct anon_vma_chain", "rb")
        root = av + t.offsetof("struct anon_vma", "rb_root")
        b.rb.build([c[1] + rb for c in items], root, root + 8,
                   [(c[1] + t.offsetof("struct anon_vma_chain", "rb_subtree_last"), c[2])
                    for c in items])
    # i_mmap interval trees of the mapped files, keyed by pgoff
    for key, vmas in by_file.items():
        vmas = sorted(vmas, key=lambda v: (v.spec.pgoff, v.address))
        mapping = objs.mappings[key]
        shared = t.offsetof("struct vm_area_struct", "shared.rb")
        last = t.offsetof("struct vm_area_struct", "shared.rb_subtree_last")
        root = mapping + t.offsetof("struct address_space", "i_mmap")
        b.rb.build([v.address + shared for v in vmas], root, root + 8,
                   [(v.address + last,
                     v.spec.pgoff + (v.spec.end - v.spec.start) // m.ps - 1) for v in vmas])
    # the task list: init_task, then the processes in pid order
    ts = "struct task_struct"
    head = init_task + t.offsetof(ts, "tasks")
    b.task(init_task, 0, b"swapper/0", 0, 0, init_task, init_task)
    t.put(init_task, ts, "flags", PF_KTHREAD)
    t.put(init_task, ts, "__state" if t.has_member(ts, "__state") else "state", 0)
    _list_init(m, head)
    for p in sorted(sc.procs, key=lambda x: x.pid):
        _list_add_tail(m, head, tasks[p.pid] + t.offsetof(ts, "tasks"))
    for cpu, pfns in sorted(sc.lru.items()):
        assert cpu < NR_CPUS_ONLINE
        out.lru[cpu] = b.lru(cpu, pfns)
        out.lru_pfns[cpu] = pfns
    return out


# --- ground truth --------------------------------------------------------------------------

SHOWN = ("read", "write", "exec", "shared", "locked", "hugepage")  # not the may* bits


def _label(kind: str, owners: list[tuple[int, int]]) -> tuple[str, int, list[int]]:
    """A holder's label as the README documents it: ``kind(pid P fd 3,4)`` (+N more)."""
    first = min(pid for pid, _fd in owners)
    fds = sorted(fd for pid, fd in owners if pid == first)
    more = len({pid for pid, _fd in owners}) - 1
    label = f"{kind}(pid {first} fd {','.join(map(str, fds))})" + (f" +{more}" if more else "")
    return label, first, fds


def rmap_truth(m_ps: int, tasks: Tasks, files: list[FileSpec], pinned: list[dict[str, Any]],
               kinds: dict[int, tuple[str, str | None]]) -> dict[str, Any]:
    """The truth's "rmap": the processes, their VMAs and fds, the holders, and per pinned
    folio its mappers, holders and the pins and extra references no holder explains.
    *kinds*: head pfn -> (folio kind, FileSpec key)."""
    paths = {f.key: f.path for f in files}
    comm = {bp.spec.pid: bp.spec.comm.decode("utf-8", "backslashreplace") for bp in tasks.procs}
    procs = []
    owners: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for bp in tasks.procs:
        p = bp.spec
        for fd, kind, key in p.fds:
            owners.setdefault((kind, key), []).append((p.pid, fd))
        procs.append({
            "pid": p.pid, "tgid": p.pid, "comm": comm[p.pid], "comm_bytes": p.comm.hex(),
            "task": bp.task, "mm": bp.mm, "files": bp.files, "parent": p.parent,
            "has_pinned": p.has_pinned, "pinned_vm": p.pinned_vm, "anon_vma": bp.anon_vma,
            "vmas": [{"address": v.address, "start": v.spec.start, "end": v.spec.end,
                      "pgoff": v.spec.pgoff, "vm_flags": v.flags,
                      "flags": [n for n in SHOWN if n in v.spec.flags],
                      "file": paths[v.spec.file] if v.spec.file else "[anon]"}
                     for v in bp.vmas],
            "fds": [{"fd": fd, "kind": kind, "key": key} for fd, kind, key in p.fds],
        })
    # holds: (pfn, label, kind, counts_as, pid, fds, address, transient)
    holds: list[tuple[int, str, str, str, int | None, list[int], int, bool]] = []
    # in the order pinspect's holder modules run: io_uring, pipe, lru_batch
    for key, address in tasks.rings.items():
        label, pid, fds = _label("io_uring", owners[("io_uring", key)])
        for buf in tasks.ring_bufs[key]:
            for pfn in buf:
                holds.append((pfn, label, "io_uring", "pin", pid, fds, address, False))
    for key, address in tasks.pipes.items():
        label, pid, fds = _label("pipe", owners[("pipe", key)])
        for pfn, _kind in tasks.pipe_bufs[key]:
            holds.append((pfn, label, "pipe", "ref", pid, fds, address, False))
    for cpu, address in tasks.lru.items():
        for pfn in tasks.lru_pfns[cpu]:
            holds.append((pfn, f"transient: lru batch (cpu {cpu})", "lru_batch", "ref", None,
                          [], address, True))
    pages = []
    summary = {"folios": len(pinned), "with_mappers": 0, "unresolved": 0, "no_process": 0,
               "unexplained_pins": 0, "unexplained_extra": 0, "transient": 0}
    for row in pinned:
        pfn, nr = row["pfn"], row["nr_pages"]
        kind, key = kinds[pfn]
        # the VMAs the kernel's rmap walk meets (the anon_vma tree holds the owner's VMAs and
        # its forked children's; the i_mmap tree every VMA of the file), and the ones whose
        # page tables map the folio
        candidates = []
        owner = next((bp.spec.pid for bp in tasks.procs for v in bp.vmas
                      if kind == "anon" and v.spec.file is None and v.spec.faulted
                      and v.spec.start <= anon_vaddr(pfn) < v.spec.end), None)
        for bp in tasks.procs if row["mapcount"] > 0 else ():
            for v in bp.vmas:
                s = v.spec
                if kind == "anon" and s.file is None and owner in (bp.spec.pid, bp.spec.parent):
                    start = anon_vaddr(pfn)
                elif kind in ("shmem", "file") and s.file is not None and s.file == key:
                    start = s.start + ((pfn & 0xFFF) - s.pgoff) * m_ps
                else:
                    continue
                lo, hi = max(start, s.start), min(start + nr * m_ps, s.end)
                if lo < hi:
                    candidates.append((bp, v, lo, hi))
        verified = len(candidates) > (row["mapcount"] if nr == 1 else 1)
        mappers = [{
            "pid": bp.spec.pid, "tgid": bp.spec.pid, "comm": comm[bp.spec.pid],
            "vaddr": lo, "vaddr_end": hi, "vma": v.address, "vm_flags": v.flags,
            "flags": [n for n in SHOWN if n in v.spec.flags],
            "file": paths[v.spec.file] if v.spec.file else "[anon]", "mm": bp.mm,
            "pinned_vm": bp.spec.pinned_vm, "has_pinned": bp.spec.has_pinned,
            "verified": verified,
        } for bp, v, lo, hi in candidates if v.spec.faulted]
        held: dict[str, dict[str, Any]] = {}
        for hpfn, label, hkind, counts_as, pid, fds, address, transient in holds:
            if not pfn <= hpfn < pfn + nr:
                continue
            h = held.setdefault(label, {
                "holder": label, "kind": hkind, "counts_as": counts_as, "count": 0,
                "pid": pid, "comm": comm.get(pid) if pid else None, "fds": fds,
                "address": address, "transient": transient})
            h["count"] += 1
        pins = sum(h["count"] for h in held.values() if h["counts_as"] == "pin")
        refs = sum(h["count"] for h in held.values() if h["counts_as"] == "ref")
        page = {
            "pfn": pfn,
            "mappers": sorted(mappers, key=lambda x: (x["pid"], x["vaddr"])),
            "holders": list(held.values()),
            "unexplained_pins": max(0, row["pins"] - pins),
            "unexplained_extra": max(0, row["extra"] - refs),
        }
        pages.append(page)
        summary["with_mappers"] += bool(mappers)
        summary["unexplained_pins"] += page["unexplained_pins"]
        summary["unexplained_extra"] += page["unexplained_extra"]
        summary["transient"] += sum(h["count"] for h in held.values() if h["transient"])
    return {
        "processes": procs,
        "files": {key: {"path": paths[key], "file": address}
                  for key, address in tasks.files.items()},
        "pipes": [{"address": a, "holder": _label("pipe", owners[("pipe", k)])[0],
                   "bufs": [[pfn, kind] for pfn, kind in tasks.pipe_bufs[k]]}
                  for k, a in tasks.pipes.items()],
        "io_uring": [{"address": a, "holder": _label("io_uring", owners[("io_uring", k)])[0],
                      "buffers": [list(b) for b in tasks.ring_bufs[k]]}
                     for k, a in tasks.rings.items()],
        "lru_batches": [{"cpu": cpu, "address": a, "pfns": list(tasks.lru_pfns[cpu])}
                        for cpu, a in tasks.lru.items()],
        "pages": pages,
        "summary": summary,
    }
