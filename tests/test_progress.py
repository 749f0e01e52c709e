"""gradcheck.progress: the terminal counter appears after its delay, redraws, and erases itself."""

from __future__ import annotations

import io
from types import SimpleNamespace

from gradcheck.progress import Progress


def test_counter_lines_and_erasure():
    stream = io.StringIO()
    progress = Progress(stream, delay=0.0, interval=3600)  # no background redraw in this test
    progress.show(0, 3, "first step")
    progress.update(1, 3, SimpleNamespace(label="x" * 80))  # a runner job: its label, cut to 60
    progress.close()
    text = stream.getvalue()
    first, second, erase, after = text.split("\r")[1:]
    assert first.startswith("[0/3] first step  ") and first.endswith(" s")
    assert second.startswith("[1/3] " + "x" * 60 + "  ")
    assert erase == " " * len(second) and after == ""  # blanked, cursor back at the start


def test_a_short_run_writes_nothing():
    stream = io.StringIO()
    progress = Progress(stream, delay=3600)
    progress.show(0, 1, "quick")
    progress.close()
    assert stream.getvalue() == ""


def test_a_shorter_line_overwrites_a_longer_one_completely():
    stream = io.StringIO()
    progress = Progress(stream, delay=0.0, interval=3600)
    progress.show(0, 2, "a long label here")
    progress.show(1, 2, "short")
    progress.close()
    long, short = stream.getvalue().split("\r")[1:3]
    assert len(short) == len(long) and short.rstrip().startswith("[1/2] short")
