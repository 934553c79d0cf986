"""Processes of the target, read once: tasks (thread group leaders) by ``mm_struct``, their
open files, and file paths through the dentry chain.

The walks are bounded (:mod:`pinspect.bounded`): a task list, an fd table or a dentry chain
that loops or points into unreadable memory ends where it breaks, and the problem is counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from drgn import FaultError, Object, Program, ProgramFlags

from pinspect.bounded import MAX_DEPTH, MAX_FDS, MAX_NAME, Problems, list_nodes, read_u64
from pinspect.variables import variable


@dataclass(frozen=True, slots=True)
class Proc:
    """One process: a thread group leader of ``init_task.tasks``."""

    pid: int  # task_struct.pid of the leader (= tgid)
    tgid: int
    comm: str  # task_struct.comm, decoded with backslashreplace
    task: int  # address of the task_struct
    mm: int  # its mm_struct (0: kernel thread or exiting)
    files: int  # its files_struct (0: none)


@dataclass(frozen=True, slots=True)
class OpenFile:
    """One open file of a process: fd number and ``struct file`` fields."""

    proc: Proc
    fd: int
    file: int  # struct file address
    f_op: int  # file->f_op
    private_data: int  # file->private_data


@dataclass
class ProcIndex:
    """Every process of the target, read once per program (:func:`proc_index`)."""

    prog: Program
    procs: list[Proc]
    by_mm: dict[int, list[Proc]]
    problems: Problems
    _files: list[OpenFile] | None = None
    _mm_info: dict[int, MmInfo] = field(default_factory=dict)

    def open_files(self) -> list[OpenFile]:
        """Every open file of every process (the fd tables read once)."""
        if self._files is None:
            self._files = list(_open_files(self.prog, self.procs, self.problems))
        return self._files

    def files_with_fops(self, symbol: str) -> list[OpenFile]:
        """The open files whose ``f_op`` is the kernel's *symbol* (``pipefifo_fops``, ...)."""
        try:
            address = self.prog.symbol(symbol).address
        except LookupError:
            return []
        if not self.procs:
            return []
        return [f for f in self.open_files() if f.f_op == address]

    def owners_of_mm(self, mm: int) -> list[Proc]:
        """The processes using *mm*; ``mm->owner`` (CONFIG_MEMCG) where no task was found."""
        found = self.by_mm.get(mm)
        if found:
            return found
        owner = self.mm_info(mm).owner
        if owner:
            try:
                task = Object(self.prog, "struct task_struct", address=owner)
                return [_proc(task, owner)]
            except FaultError:
                self.problems.add("mm->owner: unreadable task")
        return []

    def mm_info(self, mm: int) -> MmInfo:
        info = self._mm_info.get(mm)
        if info is None:
            info = self._mm_info[mm] = _mm_info(self.prog, mm, self.problems)
        return info


@dataclass(frozen=True, slots=True)
class MmInfo:
    """What an ``mm_struct`` says about pinning."""

    pinned_vm: int | None  # mm->pinned_vm (pages accounted as pinned: io_uring, RDMA, ...)
    has_pinned: bool | None  # MMF_HAS_PINNED (or mm->has_pinned): FOLL_PIN ran on this mm
    owner: int  # mm->owner task (CONFIG_MEMCG), 0 where absent


def _proc(task: Object, address: int) -> Proc:
    return Proc(pid=int(task.pid), tgid=int(task.tgid),
                comm=task.comm.string_().decode("utf-8", "backslashreplace"),
                task=address, mm=task.mm.value_(), files=task.files.value_())


def _index(prog: Program) -> ProcIndex:
    problems = Problems()
    procs: list[Proc] = []
    try:
        init = variable(prog, "init_task")
    except LookupError:
        init = None
    if init is None:
        problems.add("processes unknown: no init_task")
    else:
        offset = prog.type("struct task_struct").member("tasks").offset  # type: ignore[union-attr]
        head = init.address_of_().value_() + offset
        for node in list_nodes(prog, head, problems, "task list"):
            address = node - offset
            try:
                procs.append(_proc(Object(prog, "struct task_struct", address=address),
                                   address))
            except FaultError:
                problems.add("task list: unreadable task")
    by_mm: dict[int, list[Proc]] = {}
    for p in procs:
        if p.mm:
            by_mm.setdefault(p.mm, []).append(p)
    return ProcIndex(prog, procs, by_mm, problems)


def proc_index(prog: Program) -> ProcIndex:
    """The processes of *prog*, read once per program (a live target: once per call)."""
    cache = prog.cache
    live = bool(prog.flags & ProgramFlags.IS_LIVE)
    if live or "pinspect_procs" not in cache:
        cache["pinspect_procs"] = _index(prog)
    return cache["pinspect_procs"]  # type: ignore[no-any-return]


def _open_files(prog: Program, procs: list[Proc], problems: Problems) -> Iterator[OpenFile]:
    """Every fd of every process: one read of each fd array, then each ``struct file``'s
    ``f_op`` and ``private_data``. Threads sharing a files_struct are read once."""
    file_type = prog.type("struct file")
    f_op = file_type.member("f_op").offset  # type: ignore[union-attr]
    private = file_type.member("private_data").offset  # type: ignore[union-attr]
    span = max(f_op, private) + 8
    seen: set[int] = set()
    for proc in procs:
        if not proc.files or proc.files in seen:
            continue
        seen.add(proc.files)
        try:
            files = Object(prog, "struct files_struct", address=proc.files)
            fdt = files.fdt
            max_fds = int(fdt.max_fds)
            array = fdt.fd.value_()
        except FaultError:
            problems.add("fd table: unreadable")
            continue
        if max_fds > MAX_FDS:
            problems.add(f"fd table: more than {MAX_FDS} fds, rest not read")
            max_fds = MAX_FDS
        try:
            raw = prog.read(array, 8 * max_fds)
        except FaultError:
            problems.add("fd table: unreadable fd array")
            continue
        for fd in range(max_fds):
            file = int.from_bytes(raw[8 * fd:8 * fd + 8], "little")
            if not file:
                continue
            try:
                data = prog.read(file, span)
            except FaultError:
                problems.add("open file: unreadable struct file")
                continue
            yield OpenFile(proc, fd, file, int.from_bytes(data[f_op:f_op + 8], "little"),
                           int.from_bytes(data[private:private + 8], "little"))


# --- mm_struct hints -------------------------------------------------------------------------

# MMF_HAS_PINNED is a #define (no DWARF or BTF for it), set once FOLL_PIN ran on the mm.
# Its history: mm->has_pinned (an atomic_t, 5.9: commit "mm: Introduce
# mm_struct.has_pinned") became MMF_HAS_PINNED bit 28 in 5.15 (commit "mm: gup:
# pack has_pinned in MMF_HAS_PINNED"), and bit 27 in 6.0 (commit "mm: delete unused
# MMF_OOM_VICTIM flag" renumbered the bits after it). A kernel that names it in an enum wins;
# otherwise the maple tree (mm->mm_mt, 6.1) tells 27 from 28 (6.0 itself reads as 28), and
# :func:`probe_has_pinned_bit` checks the choice against mms known to hold FOLL_PIN pins.
MMF_HAS_PINNED_CANDIDATES = (27, 28)


def _has_pinned_bit(prog: Program) -> int | None:
    cache = prog.cache
    if "pinspect_mmf_has_pinned" in cache:
        return cache["pinspect_mmf_has_pinned"]  # type: ignore[no-any-return]
    bit: int | None
    try:
        bit = int(prog.constant("MMF_HAS_PINNED"))
    except (LookupError, ValueError):
        mm = prog.type("struct mm_struct")
        if mm.has_member("has_pinned"):
            bit = None
        else:
            bit = 27 if mm.has_member("mm_mt") else 28
    cache["pinspect_mmf_has_pinned"] = bit
    return bit


def probe_has_pinned_bit(prog: Program, pinned_mms: list[int]) -> None:
    """Check the MMF_HAS_PINNED bit against *pinned_mms* (mms that hold FOLL_PIN pins: an
    io_uring ring's ``mm_account``): where exactly one candidate bit is set in all of them,
    that is the bit."""
    if not pinned_mms or prog.type("struct mm_struct").has_member("has_pinned"):
        return
    words = []
    for mm in pinned_mms:
        try:
            words.append(_mm_flags_word(prog, mm))
        except FaultError:
            continue
    fits = [b for b in MMF_HAS_PINNED_CANDIDATES if words and all(w >> b & 1 for w in words)]
    if len(fits) == 1:
        prog.cache["pinspect_mmf_has_pinned"] = fits[0]


def _mm_flags_word(prog: Program, mm: int) -> int:
    member = prog.type("struct mm_struct").member("flags")
    # 6.18+: mm_flags_t, a bitmap (commit "mm: convert mm flags to a bitmap type"); the word
    # with the MMF_ bits below 64 is its first.
    return read_u64(prog, mm + member.offset)  # type: ignore[operator]


def _mm_info(prog: Program, mm: int, problems: Problems) -> MmInfo:
    try:
        obj = Object(prog, "struct mm_struct", address=mm)
        pinned_vm: int | None
        try:
            pinned = obj.pinned_vm
            pinned_vm = int(pinned.counter if pinned.type_.unqualified().kind.name != "INT"
                            else pinned)
        except (AttributeError, LookupError):
            pinned_vm = None
        has_pinned: bool | None = None
        if obj.type_.has_member("has_pinned"):
            has_pinned = int(obj.has_pinned.counter) > 0
        else:
            bit = _has_pinned_bit(prog)
            if bit is not None:
                has_pinned = bool(_mm_flags_word(prog, mm) >> bit & 1)
        owner = obj.owner.value_() if obj.type_.has_member("owner") else 0
        return MmInfo(pinned_vm, has_pinned, owner)
    except FaultError:
        problems.add("mm_struct: unreadable")
        return MmInfo(None, None, 0)


# --- paths -----------------------------------------------------------------------------------


def _dentry_name(prog: Program, dentry: Object) -> bytes:
    name = dentry.d_name
    length = min(int(name.len), MAX_NAME)
    return prog.read(name.name.value_(), length) if length else b""


def file_path(prog: Program, file: int, problems: Problems) -> str:
    """The path of ``struct file`` *file* as ``/proc/PID/maps`` shows it, with files of the
    kernel's internal mounts by name: ``/tmp/x``, ``/dev/shm/x (deleted)``,
    ``SYSV0000abcd (deleted)``, ``memfd:name (deleted)``, ``[shmem]`` (shared anonymous
    memory: shmem's ``dev/zero`` file). Bounded: a chain of more than 256 dentries or mounts,
    or one that loops, ends with ``...``."""
    try:
        f = Object(prog, "struct file", address=file)
        mnt = f.f_path.mnt
        dentry = f.f_path.dentry
        mount_type = prog.type("struct mount")
        vfs_offset = mount_type.member("mnt").offset  # type: ignore[union-attr]
        mount = Object(prog, mount_type, address=mnt.value_() - vfs_offset)
        parts: list[bytes] = []
        deleted = False
        first = True
        seen: set[tuple[int, int]] = set()
        attached = True
        while True:
            key = (dentry.value_(), mount.address_)
            if key in seen or len(seen) > MAX_DEPTH:
                problems.add("dentry chain: loop or too deep")
                parts.append(b"...")
                break
            seen.add(key)
            d = dentry[0]
            if first:  # d_unlinked(): unhashed and not a root
                deleted = not d.d_hash.pprev.value_() and d.d_parent.value_() != dentry.value_()
                first = False
            root = mount.mnt.mnt_root.value_()
            if dentry.value_() == root or d.d_parent.value_() == dentry.value_():
                up = mount.mnt_parent
                if dentry.value_() == root and up.value_() != mount.address_:
                    dentry = mount.mnt_mountpoint
                    mount = up[0]
                    continue
                if dentry.value_() != root:
                    # A pseudo file's own dentry (alloc_file_pseudo(): SysV shm, memfd,
                    # shared anonymous memory) is a root of its own, never hashed: maps
                    # shows it as deleted.
                    parts.append(_dentry_name(prog, d))
                    deleted = True
                # The top: a mount of a namespace, or one of the kernel's internal mounts
                # (kern_mount() sets mnt_ns to MNT_NS_INTERNAL, ERR_PTR(-EINVAL)).
                ns = mount.mnt_ns.value_() if mount_type.has_member("mnt_ns") else 1
                attached = ns not in (0, (1 << 64) - 22)
                break
            parts.append(_dentry_name(prog, d))
            dentry = d.d_parent
    except FaultError:
        problems.add("file path: unreadable dentry or mount")
        return "(unreadable)"
    name = b"/".join(reversed(parts)).decode("utf-8", "backslashreplace")
    if not attached:
        if name == "dev/zero":  # shmem_zero_setup(): MAP_SHARED | MAP_ANONYMOUS, /dev/zero
            return "[shmem]"
        return name + (" (deleted)" if deleted else "")
    return "/" + name + (" (deleted)" if deleted else "")
