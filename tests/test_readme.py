"""The README's first lines give exactly the two commands that CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    # The commands are the indented block right after the title.
    block = []
    for line in lines[1:]:
        if line.startswith("    "):
            block.append(line.strip())
        elif block:
            break
    return block


def test_readme_starts_with_exactly_two_commands():
    cmds = commands()
    assert len(cmds) == 2
    report, tests = cmds
    assert report.startswith("pip install ") and report.endswith("gradcheck report")
    assert tests.startswith("pip install -e ") and tests.endswith("pytest")


def test_ci_runs_the_readme_commands_as_written():
    ci = (ROOT / ".ci" / "run").read_text()
    patterns = re.findall(r"sed -n 's/\^    \\\((.*?)\\\)\$/\\1/p'", ci)
    assert len(patterns) == 2
    for pattern, cmd in zip(patterns, [commands()[1], commands()[0]]):
        assert re.fullmatch(pattern, cmd), (pattern, cmd)
