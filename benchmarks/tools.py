"""Wall time of the project's own commands, each in a fresh process as a user runs it.

``gradcheck report`` (every built-in layer), ``gradcheck paper`` (the paper study) and the
README's test command ``pytest`` (without its install step), each run as ``python -m ...`` with
this checkout first on ``PYTHONPATH``: the time includes interpreter start and imports.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent

# With their default --workers (the cores available), and with one worker, the peer row.
REPORT = ("gradcheck report", ("-m", "gradcheck", "report"))
PAPER = ("gradcheck paper", ("-m", "gradcheck", "paper"))
REPORT_ONE = ("gradcheck report --workers 1", ("-m", "gradcheck", "report", "--workers", "1"))
PAPER_ONE = ("gradcheck paper --workers 1", ("-m", "gradcheck", "paper", "--workers", "1"))
# The README's second command is `pip install -e '.[test]' && pytest`; the install is not timed.
# --durations names the slowest tests (the measured cause when the suite is slow).
SUITE = ("pytest", ("-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=5"))
IMPORTS = ("python -c 'import gradcheck, layers'", ("-c", "import gradcheck, layers"))


@dataclass
class CommandTiming:
    """Timed runs of one command: wall seconds, exit codes and the last line it printed."""

    label: str
    seconds: List[float] = field(default_factory=list)
    returncodes: List[int] = field(default_factory=list)
    last_line: str = ""
    output: str = ""
    note: Optional[str] = None  # why it was not measured

    @property
    def median(self) -> Optional[float]:
        return statistics.median(self.seconds) if self.seconds else None


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def time_command(
    label: str, args: Sequence[str], repeats: int = 1, timeout: float = 1800.0
) -> CommandTiming:
    """Run ``python args`` ``repeats`` times in the repository root; never raises for it."""
    timing = CommandTiming(label)
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, *args],
                cwd=ROOT,
                env=_env(),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            timing.note = f"interrupted after {timeout:g} s"
            return timing
        timing.seconds.append(time.perf_counter() - start)
        timing.returncodes.append(proc.returncode)
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        timing.last_line = lines[-1].strip() if lines else proc.stderr.strip()[-200:]
        timing.output = proc.stdout
    return timing


def slowest_tests(output: str, count: int = 3) -> List[Tuple[float, str]]:
    """``(seconds, test id)`` of the slowest tests from pytest's ``--durations`` section."""
    found = []
    for match in re.finditer(r"^([0-9.]+)s (?:call|setup|teardown)\s+(\S+)", output, re.M):
        found.append((float(match.group(1)), match.group(2)))
    return sorted(found, reverse=True)[:count]


def own_seconds(last_line: str) -> Optional[float]:
    """The time a command states for its own work on its last line (``... in 2.57 s``)."""
    match = re.search(r"\(?(?:in )?([0-9.]+) ?s\)?\s*$", last_line)
    return float(match.group(1)) if match else None
