"""A one-line progress counter for long runs on a terminal (``gradcheck report``, ``paper``).

It writes only to the stream it is given (the CLI passes stderr, and only when stderr is a
terminal), so what goes to stdout or to a file is never touched.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, TextIO


class Labelled(Protocol):
    """Anything with a ``label``: a runner job, say."""

    @property
    def label(self) -> str: ...


class Progress:
    """A one-line ``[done/total] label elapsed`` counter on a terminal's stderr.

    It appears once the run has lasted ``delay`` seconds (short runs stay silent) and is redrawn
    by a background thread, so that it moves even while one slow step runs; ``close`` erases it.
    """

    def __init__(self, stream: TextIO, delay: float = 1.0, interval: float = 0.2) -> None:
        self.stream = stream
        self.delay = delay
        self.interval = interval
        self.start = time.perf_counter()
        self.text = ""
        self.width = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._tick, name="gradcheck-progress", daemon=True)
        self.thread.start()

    def update(self, done: int, total: int, job: Labelled) -> None:
        """The runner's callback: ``done`` of ``total`` jobs finished, ``job`` the latest."""
        self.show(done, total, job.label)

    def show(self, done: int, total: int, label: str) -> None:
        """Set the counter to ``[done/total] label`` (the label cut to 60 characters)."""
        with self.lock:
            self.text = f"[{done}/{total}] {label[:60]}"
        self._draw()

    def _draw(self) -> None:
        elapsed = time.perf_counter() - self.start
        if elapsed < self.delay:
            return
        with self.lock:
            line = f"{self.text}  {elapsed:.0f} s"
            pad = max(0, self.width - len(line))
            self.width = len(line)
            self.stream.write("\r" + line + " " * pad)
            self.stream.flush()

    def _tick(self) -> None:
        while not self.stop.wait(self.interval):
            self._draw()

    def close(self) -> None:
        """Stop redrawing and erase the line (nothing to erase if it never appeared)."""
        self.stop.set()
        self.thread.join()
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()


__all__ = ["Labelled", "Progress"]
