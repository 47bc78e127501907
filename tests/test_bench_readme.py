"""bench/readme.py, which regenerates the README's benchmark figures: its blocks, its exports of older
revisions and its tables (the regeneration itself, which runs a benchmark, is in tests/test_bench_smoke.py)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from bench.__main__ import cpu_model, describe_machine, describe_run
from bench.readme import README, blocks, realign, revisions

BLOCKS = """Prose.

<!-- bench: download --size 9 --runs 1 -->
```
old figures
```
<!-- /bench -->

More prose, and a block of code that is not figures:

```
./dev bench
```
<!-- bench: control --other-gateway {HEAD} -->
```text
old
```
<!-- /bench -->
"""


def test_blocks_are_found_by_their_markers_only():
    assert blocks(BLOCKS) == ["download --size 9 --runs 1", "control --other-gateway {HEAD}"]
    # Every block of the README names a benchmark that exists.
    from bench.__main__ import BENCHMARKS

    assert {command.split()[0] for command in blocks(README.read_text())} <= set(BENCHMARKS)
    assert "download --size 256 --runs 5 --other-cdn {702aa0c}" in blocks(README.read_text())


def test_a_revision_is_exported_for_the_run_and_removed_after():
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                          cwd=README.parent).stdout.strip()
    with revisions(f"control --runs 1 --other-gateway {{{head}}} --other-gateway {{{head}}}") as (argv, root):
        assert argv[:3] == ["control", "--runs", "1"]
        assert argv[4] == argv[6] == str(root / head)  # one export per revision
        committed = subprocess.run(["git", "show", f"{head}:bench/__main__.py"], capture_output=True, text=True,
                                   check=True, cwd=README.parent).stdout
        assert (Path(argv[4]) / "bench" / "__main__.py").read_text() == committed
    assert not root.exists()


def test_tables_are_padded_again_after_a_path_became_a_name():
    text = "title\n| a   | b |\n| --- | - |\n| /tmp/x/zz | 1 |\n| c   | - |\nafter\n| alone |"
    assert realign(text.replace("/tmp/x/", "")) == (
        "title\n| a  | b |\n| -- | - |\n| zz | 1 |\n| c  | - |\nafter\n| alone |"
    )
    wide = "| name | counted |\n| ---- | ------- |\n| /tmp/x/a long name | - |"
    assert realign(wide.replace("/tmp/x/", "")) == (
        "| name        | counted |\n| ----------- | ------- |\n| a long name | -       |"
    )


def test_the_machine_and_the_run_are_labelled():
    assert cpu_model() in describe_machine()
    assert " cores, " in describe_machine()
    assert "unknown CPU" not in cpu_model()  # this machine has a /proc/cpuinfo
    run = describe_run()
    assert " UTC, commit " in run and "load average" in run
