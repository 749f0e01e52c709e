"""Regenerate the output blocks of the docs from real runs, or check that they are up to date.

    python docs/generate.py                  # rewrite every generated block in place
    python docs/generate.py --check          # exit 1, with a diff, where a block is out of date
    python docs/generate.py --check --fast   # the same, skipping the blocks marked slow
    python docs/generate.py docs/cli.md      # one page

Markup, in the Markdown source (HTML comments, invisible on the rendered page):

``<!-- file: PATH -->`` right before a fenced block
    the block's content is the file ``PATH`` in the folder where the page's commands run (the
    page shows exactly the code it runs).
``<!-- file: PATH`` ... ``-->``
    a file the page does not show; its content is the rest of the comment.
``<!-- file: PATH = REPO_PATH -->``
    a copy of a file of this repository (``examples/course_layers.py``) that the page refers to.
``<!-- run -->`` or ``<!-- run: OPTIONS -->`` right before a fenced block
    the block is generated: each ``$ COMMAND`` line in it is run (``$ echo $?`` prints the exit
    status of the command before it) and followed by its output, stdout and stderr together.
    OPTIONS: ``lines=A:B,C:D`` keeps those slices of each command's output (Python slices of
    its lines; ``:12`` the first twelve, ``-2:`` the last two) with ``...`` for every gap;
    ``slow`` marks a block that ``--fast`` (and the default test run) leaves unchecked.

Commands run with ``bash`` in a fresh folder per page holding the page's files, with
``NO_COLOR=1``, ``COLUMNS=100`` and this source tree first on ``PYTHONPATH`` (whatever a
command sets ``PYTHONPATH`` to, the tree is appended to it), so that the output is this code's.
The folder's path is written as ``/tmp/docrun``, and this tree's files relative to its root
(``layers/dense.py``).

``--check`` compares numbers aside: every number becomes ``0`` and runs of spaces and dashes
collapse, so that timings, rounding and column widths do not count, but every word, status,
name and line does (tests/test_docs.py runs this check).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
PAGES = ("cli.md", "adding-a-layer-variant.md", "your-own-code.md")
PLACEHOLDER = "/tmp/docrun"
TIMEOUT = 300

_FILE = re.compile(r"^<!-- file: (\S+)\s*(?:=\s*(\S+)\s*)?(-->)?\s*$")
_RUN = re.compile(r"^<!-- run(?::\s*(.*?))?\s*-->\s*$")
_FENCE = re.compile(r"^(```+|~~~+)")


@dataclass
class Block:
    """A generated block: the lines ``start:end`` of its page (inside the fences)."""

    start: int
    end: int
    commands: List[str]
    slices: List[Tuple[Optional[int], Optional[int]]] = field(default_factory=list)
    slow: bool = False


@dataclass
class Page:
    path: Path
    lines: List[str]
    files: Dict[str, str]
    blocks: List[Block]


def _fence_end(lines: Sequence[str], start: int) -> int:
    """The index of the line closing the fence opened at ``start``."""
    fence = _FENCE.match(lines[start])
    assert fence is not None
    for i in range(start + 1, len(lines)):
        if lines[i].strip() == fence.group(1):
            return i
    raise ValueError(f"line {start + 1}: the fenced block is never closed")


def _parse_slices(text: str) -> List[Tuple[Optional[int], Optional[int]]]:
    out = []
    for part in text.split(","):
        a, sep, b = part.partition(":")
        if not sep:
            raise ValueError(f"lines={text}: each part is a slice A:B")
        out.append((int(a) if a.strip() else None, int(b) if b.strip() else None))
    return out


def parse(path: Path) -> Page:
    """The page's files and generated blocks."""
    lines = path.read_text().splitlines()
    files: Dict[str, str] = {}
    blocks: List[Block] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if (m := _FILE.match(line)) is not None:
            name = m.group(1)
            if m.group(2):  # a copy of one of the repository's files
                files[name] = (ROOT / m.group(2)).read_text()
                i += 1
                continue
            if m.group(3):  # the file is the next fenced block
                start = i + 1
                end = _fence_end(lines, start)
                files[name] = "\n".join(lines[start + 1 : end]) + "\n"
                i = end + 1
                continue
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "-->")
            files[name] = "\n".join(lines[i + 1 : end]) + "\n"
            i = end + 1
            continue
        if (m := _RUN.match(line)) is not None:
            options = (m.group(1) or "").split()
            start = i + 1
            end = _fence_end(lines, start)
            commands = [ln[2:] for ln in lines[start + 1 : end] if ln.startswith("$ ")]
            block = Block(start + 1, end, commands)
            for opt in options:
                if opt == "slow":
                    block.slow = True
                elif opt.startswith("lines="):
                    block.slices = _parse_slices(opt[len("lines=") :])
                else:
                    raise ValueError(f"{path.name}:{i + 1}: unknown option {opt!r}")
            blocks.append(block)
            i = end + 1
            continue
        i += 1
    return Page(path, lines, files, blocks)


def excerpt(output: List[str], slices: List[Tuple[Optional[int], Optional[int]]]) -> List[str]:
    """The lines of ``output`` the slices keep, in order, with ``...`` for every gap."""
    if not slices:
        return output
    keep = sorted({i for a, b in slices for i in range(len(output))[slice(a, b)]})
    out: List[str] = []
    previous = -1
    for i in keep:
        if i != previous + 1:
            out.append("...")
        out.append(output[i])
        previous = i
    if keep and keep[-1] != len(output) - 1:
        out.append("...")
    return out


def _prelude() -> str:
    """Shell functions that run this tree's gradcheck (and Python, for pytest and the API
    examples) whatever PYTHONPATH a command sets."""
    script = shutil.which("gradcheck", path=str(Path(sys.executable).parent))
    exe = f'"{script}"' if script else f'"{sys.executable}" -m gradcheck'
    path = f'PYTHONPATH="${{PYTHONPATH:+$PYTHONPATH:}}{ROOT}"'
    return f'gradcheck() {{ {path} {exe} "$@"; }}\npython() {{ {path} "{sys.executable}" "$@"; }}\n'


def _environment(folder: Path) -> Dict[str, str]:
    env = dict(os.environ)
    for key in ("PYTHONPATH", "FORCE_COLOR", "HYPOTHESIS_PROFILE"):
        env.pop(key, None)
    env.update(NO_COLOR="1", COLUMNS="100", PYTHONUNBUFFERED="1", PYTHONPATH=str(folder))
    return env


def run_block(block: Block, folder: Path) -> List[str]:
    """The block's new content: every command with its (excerpted) output."""
    out: List[str] = []
    status = 0
    env = _environment(folder)
    for command in block.commands:
        out.append(f"$ {command}")
        if command.strip() == "echo $?":
            out.append(str(status))
            continue
        proc = subprocess.run(
            ["bash", "-c", _prelude() + command],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=TIMEOUT,
        )
        status = proc.returncode
        # Paths as a reader's would read: the run folder, and this tree's files relative to it.
        text = proc.stdout.replace(str(folder), PLACEHOLDER).replace(f"{ROOT}{os.sep}", "")
        out.extend(excerpt([ln.rstrip() for ln in text.splitlines()], block.slices))
    return out


def normalize(lines: Sequence[str]) -> List[str]:
    """Numbers aside: every number is 0, runs of spaces and of dashes are one."""
    out = []
    for line in lines:
        line = re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "0", line)
        # Which term of the tolerance decided is as much a number as its value (a layer drawing
        # from the global RNG, shown as such, decides differently on every run).
        line = re.sub(r"\b[ar]tol 0", "tol 0", line)
        line = re.sub(r"-{2,}", "-", line)
        out.append(re.sub(r"\s+", " ", line).strip())
    return out


def generate(page: Page, fast: bool = False, jobs: int = 0) -> Tuple[List[str], List[str]]:
    """The page with its blocks regenerated, and a description of every block that changed
    beyond numbers (a unified diff each). ``jobs`` blocks run at a time (default: one per CPU);
    a block's own commands run in order."""
    lines = list(page.lines)
    problems: List[str] = []
    blocks = [b for b in page.blocks if not (fast and b.slow)]
    with tempfile.TemporaryDirectory(prefix="gradcheck-docs-") as tmp:
        folder = Path(tmp).resolve()
        for name, content in page.files.items():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            outputs = list(pool.map(lambda b: run_block(b, folder), blocks))
    # From the last block up, so that earlier indices stay valid as blocks change length.
    for block, new in sorted(zip(blocks, outputs), key=lambda pair: -pair[0].start):
        old = lines[block.start : block.end]
        if normalize(old) != normalize(new):
            where = f"{page.path.name} (line {block.start + 1})"
            diff = difflib.unified_diff(old, new, where, "real output", lineterm="")
            problems.append("\n".join(diff))
        lines[block.start : block.end] = new
    return lines, problems


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", help=f"pages (default: {', '.join(PAGES)})")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a change")
    parser.add_argument("--fast", action="store_true", help="skip the blocks marked slow")
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.pages] or [DOCS / p for p in PAGES]
    failed = False
    for path in paths:
        page = parse(path)
        lines, problems = generate(page, fast=args.fast)
        if args.check:
            for problem in problems:
                print(problem + "\n")
            failed = failed or bool(problems)
        else:
            path.write_text("\n".join(lines) + "\n")
            print(f"{path}: {len(page.blocks)} blocks, {len(problems)} changed beyond numbers")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
