#!/usr/bin/env python3
"""Regenerate the synthetic kernel dumps of vmcore-samples/ (see README.md).

    python vmcore-samples/build.py [--out DIR] [NAME ...]

Deterministic: the same inputs give byte-identical files."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from gen import scenario  # noqa: E402
from gen.cbuild import build_debug  # noqa: E402
from gen.kernel import build  # noqa: E402
from gen.truth import build_truth  # noqa: E402
from gen.variants import VARIANTS, Variant  # noqa: E402


def build_variant(v: Variant, out: str, cache: dict[tuple[str, ...], str]) -> None:
    base = v
    if v.kdump_of:
        base = next(x for x in VARIANTS if x.name == v.kdump_of)
    key = tuple(base.defines)
    debug = os.path.join(out, v.name + ".debug")
    if key in cache:
        shutil.copyfile(cache[key], debug)
    else:
        build_debug(list(key), debug)
        cache[key] = debug
    built = build(base, debug, scenario.default())
    truth = build_truth(built)
    truth["sample"] = v.name
    truth["description"] = v.description
    core = os.path.join(out, v.name + ".core")
    if v.kdump_of:
        built.mem.write_kdump(core, built.vmcoreinfo, base.osrelease, compress=True)
        truth["format"] = "kdump-compressed (diskdump, zlib)"
    else:
        built.mem.write_elf(core, built.vmcoreinfo, built.image)
        truth["format"] = "ELF vmcore"
    truth["files"] = {"core": v.name + ".core", "debug": v.name + ".debug"}
    with open(os.path.join(out, v.name + ".truth.json"), "w") as f:
        json.dump(truth, f, indent=1, sort_keys=False)
        f.write("\n")


def toolchain() -> str:
    """The tools whose versions decide the bytes of the samples."""
    cc = os.environ.get("CC", "gcc")
    gcc = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True)
    ld = subprocess.run(["ld", "--version"], capture_output=True, text=True, check=True)
    return (
        f"cc: {gcc.stdout.splitlines()[0]}\n"
        f"ld: {ld.stdout.splitlines()[0]}\n"
        f"zlib: {zlib.ZLIB_RUNTIME_VERSION}\n"
    )


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=HERE, help="output directory (default: vmcore-samples/)")
    ap.add_argument("names", nargs="*", help="variants to build (default: all)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    cache: dict[tuple[str, ...], str] = {}
    for v in VARIANTS:
        if args.names and v.name not in args.names:
            continue
        build_variant(v, args.out, cache)
        print(f"built {v.name}")
    with open(os.path.join(args.out, "TOOLCHAIN"), "w") as f:
        f.write(toolchain())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
