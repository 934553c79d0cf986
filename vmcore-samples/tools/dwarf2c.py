"""Turn structure layouts found in real kernel DWARF into a compilable C header.

Run by hand (needs a kernel's vmlinux or object files with DWARF, which are not
committed); the generated headers under ``layouts/`` are committed.  Every
struct/union is emitted ``packed`` with explicit padding so that gcc reproduces
the byte and bit offsets of the source DWARF exactly, whatever the alignment
attributes of the original declarations were.  Pointers to types outside the
requested closure stay pointers to incomplete types.

    python tools/dwarf2c.py -o layouts/linux-6.1.h -t 'struct page' ... FILE...
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

import drgn
from drgn import Type, TypeKind

COMPOUND = (TypeKind.STRUCT, TypeKind.UNION)


def align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def natural_align(t: Type) -> int:
    """C alignment of a type as the x86-64 ABI gives it without attributes."""
    u = t.unaliased()
    if u.kind == TypeKind.ARRAY:
        return natural_align(u.type)
    if u.kind in COMPOUND:
        return max([member_aligns(u)[1]] + [1])
    if u.kind in (TypeKind.VOID, TypeKind.FUNCTION):
        return 1
    return min(drgn.sizeof(u), 16)


def member_aligns(t: Type) -> tuple[list[int], int]:
    """Alignment of every member as the real layout shows it (an aligned
    attribute shows as a member placed further than its natural alignment),
    and the alignment of the whole type."""
    aligns = []
    pos = 0
    for m in t.members or ():
        if m.bit_field_size:
            raise ValueError(f"cannot re-lay out bit fields of {t}")
        off = m.bit_offset // 8
        a = natural_align(m.type)
        nat = align_up(pos, a) if t.kind == TypeKind.STRUCT else 0
        while nat != off and a < 4096:
            a *= 2
            nat = align_up(pos, a)
        if nat != off:
            raise ValueError(f"cannot explain offset of {m.name} in {t}")
        aligns.append(a)
        if t.kind == TypeKind.STRUCT:
            pos = off + drgn.sizeof(m.type)
        else:
            pos = max(pos, drgn.sizeof(m.type))
    whole = max(aligns + [1])
    while align_up(pos, whole) < t.size and whole < 4096:
        whole *= 2
    return aligns, whole


class Patcher:
    """Changes a layout the way a different kernel configuration would (an
    array with another length, an extra member) and lays the changed structs
    and everything that embeds them out again by the C rules, keeping the
    alignment attributes the original layout shows."""

    def __init__(self, prog: drgn.Program) -> None:
        self.prog = prog
        self.repl: dict[tuple[str, str], Type] = {}

    def subst(self, t: Type) -> Type:
        u = t
        if u.kind == TypeKind.ARRAY:
            inner = self.subst(u.type)
            if inner is u.type:
                return t
            return self.prog.array_type(inner, u.length, qualifiers=u.qualifiers)
        if u.kind in COMPOUND and u.tag is not None:
            return self.repl.get((u.kind.name, u.tag), t)
        return t

    def relayout(
        self,
        t: Type,
        changes: dict[str, Type] | None = None,
        insert_after: dict[str, list[tuple[str, Type]]] | None = None,
    ) -> Type:
        aligns, whole = member_aligns(t)
        members = []
        pos = 0
        for m, a in zip(t.members or (), aligns, strict=True):
            items = [(m.name, changes.get(m.name, m.type) if changes else m.type, a)]
            if insert_after and m.name in insert_after:
                for n, nt in insert_after[m.name]:
                    items.append((n, nt, natural_align(nt)))
            for name, mt, al in items:
                mt = self.subst(mt)
                off = align_up(pos, al) if t.kind == TypeKind.STRUCT else 0
                members.append(drgn.TypeMember(mt, name, 8 * off))
                if t.kind == TypeKind.STRUCT:
                    pos = off + drgn.sizeof(mt)
                else:
                    pos = max(pos, drgn.sizeof(mt))
        size = align_up(pos, whole)
        mk = self.prog.struct_type if t.kind == TypeKind.STRUCT else self.prog.union_type
        new = mk(t.tag, size, members)
        if t.tag is not None:
            self.repl[(t.kind.name, t.tag)] = new
        return new

    def propagate(self, roots: list[Type]) -> None:
        """Re-lay out every struct reachable from roots that embeds a
        replaced struct by value."""
        seen: set[tuple[str, str]] = set()

        def embeds(t: Type) -> bool:
            u = t.unaliased()
            while u.kind == TypeKind.ARRAY:
                u = u.type.unaliased()
            if u.kind not in COMPOUND:
                return False
            if u.tag is not None and (u.kind.name, u.tag) in self.repl:
                return True
            return any(embeds(m.type) for m in u.members or ())

        def visit(t: Type) -> None:
            u = t.unaliased()
            while u.kind == TypeKind.ARRAY:
                u = u.type.unaliased()
            if u.kind not in COMPOUND or u.tag is None:
                return
            key = (u.kind.name, u.tag)
            if key in seen or key in self.repl:
                return
            seen.add(key)
            for m in u.members or ():
                visit(m.type)
            if any(embeds(m.type) for m in u.members or ()):
                self.relayout(u)

        for r in roots:
            visit(r)


class Emitter:
    def __init__(self, prog: drgn.Program, patcher: Patcher | None = None) -> None:
        self.prog = prog
        self.patcher = patcher
        self.done: set[tuple[str, str]] = set()
        self.visiting: set[tuple[str, str]] = set()
        self.forward: set[str] = set()
        self.out: list[str] = []
        self.pad = 0

    # -- dependency walk -------------------------------------------------
    def sub(self, t: Type) -> Type:
        return self.patcher.subst(t) if self.patcher else t

    def require(self, t: Type, byvalue: bool) -> None:
        t = self.sub(t)
        k = t.kind
        if k == TypeKind.TYPEDEF:
            self.emit_typedef(t)
            if byvalue:
                self.require(t.type, True)
        elif k in COMPOUND:
            if t.tag is None:
                if byvalue:
                    for m in t.members or ():
                        self.require(m.type, True)
                return
            self.forward.add(f"{k.name.lower()} {t.tag}")
            if byvalue:
                self.emit_compound(t)
        elif k == TypeKind.ENUM:
            if t.tag is not None:
                self.emit_enum(t)
        elif k == TypeKind.POINTER:
            self.require(t.type, False)
        elif k == TypeKind.ARRAY:
            self.require(t.type, byvalue)
        elif k == TypeKind.FUNCTION:
            self.require(t.type, False)
            for p in t.parameters:
                self.require(p.type, False)

    def emit_typedef(self, t: Type) -> None:
        key = ("typedef", t.name)
        if key in self.done or key in self.visiting:
            return
        self.visiting.add(key)
        target = t.type
        anon = target.kind in COMPOUND and target.tag is None
        self.require(target, anon or target.kind not in COMPOUND)
        self.visiting.discard(key)
        self.done.add(key)
        self.out.append(f"typedef {self.decl(target, t.name, 0)};\n")

    def emit_enum(self, t: Type) -> None:
        key = ("enum", t.tag)
        if key in self.done:
            return
        self.done.add(key)
        self.out.append(self.enum_body(t, 0) + ";\n")

    def emit_compound(self, t: Type) -> None:
        t = self.sub(t)
        key = (t.kind.name, t.tag)
        if key in self.done or key in self.visiting:
            return
        self.visiting.add(key)
        for m in t.members or ():
            self.require(m.type, True)
        self.visiting.discard(key)
        self.done.add(key)
        self.out.append(self.compound_body(t, 0) + ";\n")
        self.out.append(f'_Static_assert(sizeof({self.kw(t)} {t.tag}) == {t.size}, "size");\n')

    # -- text ------------------------------------------------------------
    @staticmethod
    def kw(t: Type) -> str:
        return {TypeKind.STRUCT: "struct", TypeKind.UNION: "union", TypeKind.ENUM: "enum"}[t.kind]

    def enum_body(self, t: Type, ind: int) -> str:
        sp = "\t" * ind
        name = f" {t.tag}" if t.tag else ""
        lines = [f"enum{name} {{"]
        for e in t.enumerators or ():
            lines.append(f"{sp}\t{e.name} = {e.value},")
        # an enum declared __packed (6.12's enum rw_hint: one byte)
        packed = " __attribute__((packed))" if t.is_complete() and drgn.sizeof(t) < 4 else ""
        lines.append(f"{sp}}}{packed}")
        return "\n".join(lines)

    def padding(self, pos: int, target: int, ind: int) -> tuple[list[str], int]:
        sp = "\t" * (ind + 1)
        lines = []
        if pos % 8 and target > pos:
            n = min(8 - pos % 8, target - pos)
            lines.append(f"{sp}unsigned char : {n};")
            pos += n
        if target - pos >= 8:
            self.pad += 1
            lines.append(f"{sp}unsigned char __pad{self.pad}[{(target - pos) // 8}];")
            pos += (target - pos) // 8 * 8
        if target > pos:
            lines.append(f"{sp}unsigned char : {target - pos};")
            pos = target
        return lines, pos

    def compound_body(self, t: Type, ind: int, anonymous: bool = False) -> str:
        sp = "\t" * ind
        kw = self.kw(t)
        name = f" {t.tag}" if t.tag and not anonymous else ""
        lines = [f"{kw} __attribute__((packed)){name} {{"]
        pos = 0
        maxend = 0
        for m in t.members or ():
            off = m.bit_offset
            if t.kind == TypeKind.STRUCT:
                if off < pos:
                    raise ValueError(f"overlap in {t}: {m.name}")
                pad, pos = self.padding(pos, off, ind)
                lines += pad
            elif off:
                raise ValueError(f"union member at offset {off} in {t}")
            if m.bit_field_size:
                lines.append(
                    f"{sp}\t{self.decl(m.type, m.name or '', ind + 1)} : {m.bit_field_size};"
                )
                end = off + m.bit_field_size
            elif m.name is None and self.sub(m.type).kind in COMPOUND and m.type.tag:
                # an unnamed member of a tagged type (-fms-extensions, e.g. 7.x
                # ns_common's struct ns_tree): its members, inline
                lines.append(f"{sp}\t{self.compound_body(self.sub(m.type), ind + 1, True)};")
                end = off + 8 * drgn.sizeof(m.type)
            else:
                lines.append(f"{sp}\t{self.decl(m.type, m.name or '', ind + 1)};")
                end = off + (8 * drgn.sizeof(m.type) if self.complete(m.type) else 0)
            pos = max(pos, end)
            maxend = max(maxend, end)
        if t.kind == TypeKind.STRUCT:
            pad, pos = self.padding(pos, 8 * t.size, ind)
            lines += pad
        elif 8 * t.size > maxend:
            self.pad += 1
            lines.append(f"{sp}\tunsigned char __pad{self.pad}[{t.size}];")
        lines.append(f"{sp}}}")
        return "\n".join(lines)

    @staticmethod
    def complete(t: Type) -> bool:
        try:
            drgn.sizeof(t)
            return True
        except Exception:
            return False

    def base(self, t: Type, ind: int) -> str:
        q = t.qualifiers
        pre = ("const " if q & drgn.Qualifiers.CONST else "") + (
            "volatile " if q & drgn.Qualifiers.VOLATILE else ""
        )
        k = t.kind
        if k in COMPOUND:
            if t.tag is None:
                return pre + self.compound_body(t, ind)
            return f"{pre}{self.kw(t)} {t.tag}"
        if k == TypeKind.ENUM:
            if t.tag is None:
                return pre + self.enum_body(t, ind)
            return f"{pre}enum {t.tag}"
        if k == TypeKind.VOID:
            return pre + "void"
        return pre + t.name

    def decl(self, t: Type, name: str, ind: int) -> str:
        # build the declarator inside-out
        t = self.sub(t)
        k = t.kind
        if k == TypeKind.POINTER:
            q = " const" if t.qualifiers & drgn.Qualifiers.CONST else ""
            inner = f"*{q}{' ' if q and name else ''}{name}"
            if t.type.kind in (TypeKind.ARRAY, TypeKind.FUNCTION):
                inner = f"({inner})"
            return self.decl(t.type, inner, ind)
        if k == TypeKind.ARRAY:
            n = "" if t.length is None else str(t.length)
            return self.decl(t.type, f"{name}[{n}]", ind)
        if k == TypeKind.FUNCTION:
            ps = [self.decl(p.type, "", ind) for p in t.parameters]
            if t.is_variadic:
                ps.append("...")
            if not ps:
                ps = ["void"]
            return self.decl(t.type, f"{name}({', '.join(ps)})", ind)
        b = self.base(t, ind)
        return f"{b} {name}" if name else b

    def header(self) -> str:
        fw = "".join(f"{f};\n" for f in sorted(self.forward))
        return fw + "\n" + "\n".join(self.out)


def load(paths: Iterable[str]) -> drgn.Program:
    prog = drgn.Program(
        drgn.Platform(
            drgn.Architecture.X86_64,
            drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN,
        )
    )
    for i, p in enumerate(paths):
        m = prog.extra_module(p, i, create=True)
        m.try_file(p, force=True)
    return prog


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--comment", default="")
    ap.add_argument("-t", "--type", action="append", default=[], help="root type name")
    ap.add_argument(
        "--array-len",
        action="append",
        default=[],
        help="'struct X:member:N': give an array member another length",
    )
    ap.add_argument(
        "--insert",
        action="append",
        default=[],
        help="'struct X:after:type:name': add a member after another",
    )
    ap.add_argument("files", nargs="+", help="files with DWARF")
    args = ap.parse_args(argv)
    types = args.type
    prog = load(args.files)
    patcher = Patcher(prog)
    by_type: dict[str, tuple[dict[str, Type], dict[str, list[tuple[str, Type]]]]] = {}
    for spec in args.array_len:
        tname, member, n = spec.split(":")
        t = prog.type(tname)
        mt = next(m.type for m in t.members if m.name == member)
        by_type.setdefault(tname, ({}, {}))[0][member] = prog.array_type(mt.type, int(n))
    for spec in args.insert:
        tname, after, mtype, name = spec.split(":")
        try:
            nt = prog.type(mtype)
        except LookupError:
            # pointer to a struct this kernel's DWARF does not have
            tag = mtype.rstrip(" *").split()[-1]
            nt = prog.pointer_type(prog.struct_type(tag))
        by_type.setdefault(tname, ({}, {}))[1].setdefault(after, []).append((name, nt))
    for tname, (changes, inserts) in by_type.items():
        patcher.relayout(prog.type(tname), changes, inserts)
    if by_type:
        patcher.propagate([prog.type(n) for n in args.type])
    em = Emitter(prog, patcher)
    for name in types:
        t = prog.type(name)
        if t.kind in COMPOUND:
            em.require(t, True)
            if t.tag is not None:
                em.emit_compound(t)
        else:
            em.require(t, True)
    with open(args.output, "w") as f:
        f.write(
            "/* Generated by tools/dwarf2c.py from kernel DWARF: layouts only, no code.\n"
            f" * {args.comment}\n */\n#pragma once\n\n"
        )
        f.write(em.header())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
