"""Side-by-side timings and accuracy of the harness against peers (not part of the test suite).

Run ``python benchmarks/run.py`` (or ``python -m benchmarks.run``); see ``docs/performance.md``.
"""
