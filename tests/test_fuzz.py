"""The fuzzer's quick run: a few hundred runs of every command, in every format, on mutated
samples (tests/fuzz). None may end in an internal error, a traceback, a signal, a timeout,
invalid JSON or CSV, a raw control character, a changed input file or a messy error."""

from __future__ import annotations

from tests.fuzz import fuzz
from tests.fuzz.runner import BAD

QUICK_RUNS = 300


def test_quick_fuzz_run_has_no_bad_outcome() -> None:
    tally, files = fuzz(QUICK_RUNS, seed=16, jobs=2, timeout=30)
    assert tally.runs == QUICK_RUNS and files > 0
    bad = {cls: tally.counts[cls] for cls in BAD if tally.counts[cls]}
    details = "\n".join(f"{o.cls}: python3 -m tests.fuzz --replay '{o.run.case}' -- "
                        f"{' '.join(o.run.args)} --format {o.run.fmt}\n    "
                        f"{(o.stderr.strip().splitlines() or [''])[-1][:300]}"
                        for o in tally.bad[:20])
    assert not bad, f"{bad}\n{details}"
    # Every class of result is reached: the mutations are neither all harmless nor all fatal.
    assert tally.counts["ok"] and tally.counts["error"]


def test_every_command_and_variant_is_run() -> None:
    """Each registered command runs bare, and each of its VARIANTS still names options the
    command has (a renamed option would silently drop a variant)."""
    from pinspect.commands import all_commands
    from tests.fuzz.runner import VARIANTS, command_lines

    lines = command_lines([0x1441], ["reserved"])
    names = {c.name for c in all_commands()}
    assert {line[0] for line in lines} == names
    for command, variants in VARIANTS.items():
        assert command in names, command
        ran = [line for line in lines if line[0] == command]
        assert len(ran) == 1 + len(variants), (command, ran)


def test_structures_are_located() -> None:
    """The locators find what the samples hold: CMA areas and bitmaps, the stack depot's
    pools, page_ext entries, page_pinner rings; tasks, VMAs, pipes and io_uring rings where a
    sample has processes (none has them yet: those locators say why they found nothing)."""
    from tests.fuzz import located_samples

    located = located_samples(["mainline-6.1", "android-d"])
    m61, android = located["mainline-6.1"], located["android-d"]
    for kind in ("struct_page", "page_ext", "cma", "cma_name", "cma_bitmap", "stack_pool",
                 "stack_depot", "zone", "mem_section", "vmcoreinfo", "release"):
        assert m61.regions.get(kind), kind
    assert m61.cma_names == ["reserved", "vidbuf"]
    assert android.regions.get("page_pinner")
    for sample in (m61, android):
        if "task" in sample.regions:
            assert sample.regions.get("task_comm") and sample.regions.get("mm")
        else:
            assert "_task_regions" in sample.skipped, sample.skipped
