"""Compiles and links the debug file (vmlinux stand-in) of a variant."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(HERE, "csrc")
LAYOUTS = os.path.join(HERE, "layouts")
UNITS = ["mm.c", "page_ext.c", "page_owner.c", "cma.c", "stackdepot.c", "page_pinner.c", "funcs.c",
         "tasks.c"]
CFLAGS = [
    "-g",
    "-gdwarf-5",
    "-O0",
    "-mcmodel=kernel",
    "-fno-pic",
    "-fno-pie",
    "-ffreestanding",
    "-fno-common",
    "-fno-asynchronous-unwind-tables",
    "-fno-stack-protector",
    "-fno-eliminate-unused-debug-types",
    "-falign-functions=16",
    "-fno-ident",
    "-frandom-seed=pinspect",
]


def inputs_digest(defines: list[str]) -> str:
    h = hashlib.sha1()
    for d in sorted(defines):
        h.update(d.encode() + b"\0")
    for folder in (CSRC, LAYOUTS):
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), "rb") as f:
                h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()


def build_debug(defines: list[str], out: str) -> None:
    cc = os.environ.get("CC", "gcc")
    build_id = inputs_digest(defines)
    with tempfile.TemporaryDirectory(prefix="pinspect-kbuild-") as tmp:
        objs = []
        for unit in UNITS:
            obj = os.path.join(tmp, unit[:-2] + ".o")
            cmd = [
                cc,
                *CFLAGS,
                *(f"-D{d}" for d in defines),
                f"-ffile-prefix-map={HERE}=vmcore-samples",
                f"-ffile-prefix-map={tmp}=build",
                "-c",
                unit,
                "-o",
                obj,
            ]
            subprocess.run(cmd, cwd=CSRC, check=True)
            objs.append(obj)
        tmp_out = os.path.join(tmp, "vmlinux")
        subprocess.run(
            [
                "ld",
                "-T",
                os.path.join(CSRC, "kernel.ld"),
                f"--build-id=0x{build_id}",
                "-nostdlib",
                "-static",
                "-o",
                tmp_out,
                *objs,
            ],
            check=True,
        )
        shutil.copyfile(tmp_out, out)
