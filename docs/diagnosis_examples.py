"""Produce the real output and pictures shown in ``docs/diagnosis.md``.

Run from the repository root (needs matplotlib for the pictures)::

    python docs/diagnosis_examples.py

It checks a few mutants of ``layers/mutants.py`` in full mode, prints the text report (the
block in the doc), and draws the error pictures into ``docs/img/diagnosis-*.png`` with the same
function ``gradcheck report --plots`` uses.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, List, Tuple

from gradcheck import check_layer
from gradcheck.plot import draw_error_picture
from gradcheck.registry import make_input
from gradcheck.report import Report, render_text
from layers import mutants

# (class in layers.mutants, input kind, shape, seed, picture name or None)
EXAMPLES: List[Tuple[str, str, Tuple[int, int], int, Any]] = [
    ("CenterForgetsMean", "matrix", (8, 3), 0, "offset"),
    ("ZCANoSymmetrization", "matrix", (16, 4), 0, "symmetric-part"),
    ("SoftmaxCEForgetsTarget", "logits", (8, 10), 0, None),
    ("ZCANoCovariancePath", "matrix", (16, 4), 0, "none"),
]


def main() -> int:
    results = []
    for cls, kind, shape, seed, picture in EXAMPLES:
        factory: Callable[[], Any] = getattr(mutants, cls)
        result = check_layer(factory(), make_input(kind, shape, seed), seed=seed, mode="full")
        result.layer = f"layers.mutants:{cls}"
        result.reproduce = (
            f"gradcheck report --layer layers.mutants:{cls} --shape {shape[0]}x{shape[1]} "
            f"--seed {seed} --mode full"
        )
        results.append(result)
        if picture is not None:
            path = f"docs/img/diagnosis-{picture}.png"
            draw_error_picture(result, path, dpi=90)
            print(f"wrote {path}", file=sys.stderr)
    report = Report(results=results)
    sys.stdout.write(render_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
