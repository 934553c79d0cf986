"""The JSON schema is explicit (pinspect.schema): every command's output has exactly its keys,
and README.md documents the same keys."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
from typing import Any

import pytest

from pinspect.schema import DOCUMENTS, HEADER, OBJECTS, PINNED_PAGE, SCHEMA_VERSION
from tests.sampledata import sample_paths

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _json(*args: str) -> dict[str, Any]:
    core, debug = sample_paths("mainline-6.1")
    result = subprocess.run([sys.executable, "-m", "pinspect", "-c", str(core), "-s", str(debug),
                             "--format", "json", *args], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _objects(doc: Any, path: str) -> list[Any]:
    """The values at *path* ("zones[].pinned") in *doc*."""
    values = [doc]
    for part in path.split("."):
        key, many = part.removesuffix("[]"), part.endswith("[]")
        values = [v[key] for v in values if v.get(key) is not None]
        if many:
            values = [item for v in values for item in v]
    return values


PINNED_PFN = hex(json.loads(sample_paths("mainline-6.1")[0].with_suffix(".truth.json")
                            .read_text())["pinned"][0]["pfn"])


# Objects the bundled samples cannot have: they hold no tasks, VMAs, pipes or io_uring rings
# (the real-kernel tier checks these keys: tests/realkernel/test_realkernel_rmap.py).
NEEDS_PROCESSES = {"pinned.pages[].mappers[]", "pinned.pages[].holders[]", "page.mappers[]",
                   "page.holders[]", "owners.processes[]", "owners.holders[]"}


@pytest.mark.parametrize("args", [("pinned",), ("zones",), ("info",), ("page", PINNED_PFN),
                                  ("owners",)])
def test_documents_have_exactly_the_schema_keys(args: tuple[str, ...]) -> None:
    doc = _json(*args)
    command = args[0]
    assert tuple(doc) == HEADER + DOCUMENTS[command]
    assert doc["schema_version"] == SCHEMA_VERSION and doc["command"] == command
    checked = 0
    for path, keys in OBJECTS.items():
        owner, _, rest = path.partition(".")
        if owner != command:
            continue
        objects = _objects(doc, rest)
        assert objects or path in NEEDS_PROCESSES, path
        for obj in objects:
            assert tuple(obj) == keys, path
            checked += 1
    assert checked > 0


def test_readme_documents_the_page_object() -> None:
    text = README.read_text()
    table = text.split("Each page object has:", 1)[1].split("\n\n", 2)[1]
    keys = [key for line in table.splitlines()[2:]
            for key in re.findall(r"`([a-z_]+)`", line.split("|")[1])]
    assert tuple(keys) == PINNED_PAGE


def test_readme_documents_the_owner_object() -> None:
    from pinspect.schema import OWNER

    text = README.read_text()
    table = text.split("Each `owner` object has:", 1)[1].split("\n\n", 2)[1]
    keys = [key for line in table.splitlines()[2:]
            for key in re.findall(r"`([a-z_]+)`", line.split("|")[1])]
    assert tuple(keys) == OWNER
