"""The docs' output blocks are the code's real output (docs/generate.py), numbers aside.

Each page's generated blocks are rerun and compared with what the page shows; a difference
beyond numbers (a new line, a changed word or status) fails with a diff, and
``python docs/generate.py`` rewrites the page. Blocks marked ``slow`` (pytest runs, the paper's
suite, the mutation test, plots, the timeout demonstration) are rerun only with
``GRADCHECK_DOCS=all`` (and always by ``python docs/generate.py --check``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
_spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
assert _spec is not None and _spec.loader is not None
generate = importlib.util.module_from_spec(_spec)
sys.modules["docs_generate"] = generate  # dataclasses look their module up there
_spec.loader.exec_module(generate)

ALL = os.environ.get("GRADCHECK_DOCS") == "all"


@pytest.mark.parametrize("name", generate.PAGES)
def test_documented_output_matches_a_real_run(name):
    page = generate.parse(DOCS / name)
    assert page.blocks, f"{name} has no generated blocks"
    _, problems = generate.generate(page, fast=not ALL)
    assert not problems, (
        f"{name}: output changed; run python docs/generate.py docs/{name}\n\n"
        + "\n\n".join(problems)
    )


def test_every_console_block_of_the_pages_is_generated():
    for name in generate.PAGES:
        lines = (DOCS / name).read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith(("```console", "````console")):
                assert lines[i - 1].startswith("<!-- run"), f"{name}:{i + 1} is not generated"


def test_a_changed_word_fails_and_a_changed_number_does_not(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- file: hello.py\nprint('checked 3 layers in 0.25 s: pass')\n-->\n\n"
        "<!-- run -->\n```console\n$ python hello.py\nchecked 4 layers in 9.1 s: pass\n"
        "$ echo $?\n0\n```\n"
    )
    assert generate.generate(generate.parse(page))[1] == []
    page.write_text(page.read_text().replace("9.1 s: pass", "9.1 s: fail"))
    lines, problems = generate.generate(generate.parse(page))
    assert len(problems) == 1 and "+checked 3 layers in 0.25 s: pass" in problems[0]
    assert "checked 3 layers in 0.25 s: pass" in lines


def test_excerpts_keep_slices_and_mark_gaps():
    out = [str(i) for i in range(10)]
    assert generate.excerpt(out, [(None, 2), (-2, None)]) == ["0", "1", "...", "8", "9"]
    assert generate.excerpt(out, [(3, 5)]) == ["...", "3", "4", "..."]
    assert generate.excerpt(out, []) == out
    assert generate.normalize(["a  1.5e-08  --- b"]) == ["a 0 - b"]
