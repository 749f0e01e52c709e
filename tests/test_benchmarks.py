"""The benchmark's own parts: its layers and their wrong twins, call counts, targets, parsing.

No timing assertions, and no peers (PyTorch, numdifftools) needed: what is tested here is what
the benchmark's figures rest on (a right layer that passes, wrong twins that fail, counts and
verdicts read correctly), at sizes that take milliseconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import detection, memory, ours, targets, tools
from benchmarks.peers import Outcome
from benchmarks.run import parse_args
from benchmarks.tanh import WRONG_FACTOR, TanhLayer, make_tanh_problem
from benchmarks.timing import Timing
from gradcheck import check_layer


def test_tanh_backward_matches_the_derivative_of_tanh():
    p = make_tanh_problem(6, 5)
    layer = TanhLayer()
    layer.forward(p.x)
    # Independent oracle: d tanh / dx = 1 / cosh(x)^2.
    np.testing.assert_allclose(layer.backward(p.dy), p.dy / np.cosh(p.x) ** 2, rtol=1e-13)


def test_tanh_stacked_forward_is_slice_by_slice():
    p = make_tanh_problem(4, 3)
    stack = np.stack([p.x, 2 * p.x, -p.x])
    out = TanhLayer().forward(stack)
    for k in range(3):
        np.testing.assert_array_equal(out[k], np.tanh(stack[k]))


def test_tanh_wrong_twins_are_wrong_where_they_say_and_linear_in_dy():
    p = make_tanh_problem(20, 10)
    right = TanhLayer()
    right.forward(p.x)
    expected = right.backward(p.dy)
    scale = TanhLayer("scale")
    scale.forward(p.x)
    np.testing.assert_allclose(scale.backward(p.dy), WRONG_FACTOR * expected, rtol=1e-15)
    sparse = TanhLayer("sparse")
    sparse.forward(p.x)
    mask = sparse.mask(p.x.shape)
    assert mask.sum() == 2  # 1% of 200 entries
    got = sparse.backward(p.dy)
    np.testing.assert_array_equal(got[~mask], expected[~mask])
    np.testing.assert_allclose(got[mask], WRONG_FACTOR * expected[mask], rtol=1e-15)
    np.testing.assert_allclose(sparse.backward(3.0 * p.dy), 3.0 * got, rtol=1e-15)


def test_tanh_layer_refuses_an_unknown_wrong_kind():
    with pytest.raises(ValueError, match="wrong must be None or one of scale, sparse"):
        TanhLayer("upside-down")


@pytest.mark.parametrize("wrong", [None, "scale", "sparse"])
def test_the_default_check_passes_the_right_tanh_and_fails_its_wrong_twins(wrong):
    p = make_tanh_problem(20, 10).with_wrong(wrong)
    out = ours.outcome(check_layer(p.layer(), p.x, dy=p.dy, seed=0))
    if wrong is None:
        assert out.status == "pass"
        assert out.named is None
    else:
        assert out.status == "fail"
        assert out.named and out.named > 0
        if wrong == "sparse":
            assert p.layer().mask(p.x.shape)[out.worst]


def test_the_planted_entry_is_the_only_wrong_one_and_the_check_names_it():
    planted = detection.plant(0, size=(16, 4))
    assert 0 < planted.factor - 1 < 1e-3
    p = planted.problem
    wrong = detection.WrongEntryZCA(p.eps, planted.index, planted.factor)
    wrong.forward(p.x)
    diff = wrong.backward(p.dy) - p.grad
    assert np.count_nonzero(diff) == 1 and diff[planted.index] != 0
    out = ours.outcome(check_layer(wrong, p.x, dy=p.dy, seed=0))
    assert out.status == "fail" and out.worst == planted.index
    twin = ours.outcome(check_layer(p.layer(), p.x, dy=p.dy, seed=0))
    assert twin.status == "pass"


def test_counted_layer_counts_calls_and_leaves_the_verdict_alone():
    p = make_tanh_problem(8, 3)
    layer, counts = ours.counted(p.layer())
    assert type(layer).__name__ == "TanhLayer"
    result = check_layer(layer, p.x, dy=p.dy)
    assert result.status == check_layer(p.layer(), p.x, dy=p.dy).status == "pass"
    assert counts.forward >= 2 and counts.backward >= 2
    assert counts.points >= counts.forward  # stacked calls count every point
    assert not hasattr(layer, "counts")  # the counter is not layer state


def _timing(seconds: float, **outcome: object) -> Timing:
    return Timing(samples=[seconds], outcome=Outcome(**outcome))  # type: ignore[arg-type]


def _measured(times, **kw):
    defaults = dict(
        sizes=["64x16", "128x32"],
        entries={"64x16": 1024, "128x32": 4096},
        times=times,
        counts={},
        tanh=None,
        detection=None,
        memory=[],
        tools={},
        workers_option=False,
    )
    defaults.update(kw)
    return targets.Measured(**defaults)


def test_a_ratio_target_is_met_only_at_or_above_its_minimum_and_names_a_cause():
    times = {
        ("torch-slow", "64x16"): _timing(1.0),
        ("ours-auto", "64x16"): _timing(0.05, status="pass", evaluations=40),
        ("torch-slow", "128x32"): _timing(1.0),
        ("ours-auto", "128x32"): _timing(0.2, status="pass", evaluations=200, detail="a -> b"),
    }
    rows = targets.speed_targets(_measured(times))
    default = next(r for r in rows if r.what.startswith("the default check"))
    assert default.met is False
    assert "64x16: 20.0x" in default.measured and "128x32: 5.00x" in default.measured
    assert "at 128x32" in default.cause and "200 forward evaluations (a -> b)" in default.cause
    times["ours-auto", "128x32"] = _timing(0.1, status="pass", evaluations=200)
    rows = targets.speed_targets(_measured(times))
    assert next(r for r in rows if r.what.startswith("the default check")).met is True


def test_a_target_at_a_size_not_run_is_not_met():
    rows = targets.speed_targets(_measured({}))
    big = next(r for r in rows if "256x64" in r.what)
    assert big.met is False and "256x64: not run" in big.measured


def test_workers_target_says_what_is_missing():
    row = targets.workers_target(_measured({}))
    assert row.met is False and "no `workers` option" in row.cause
    assert targets.workers_target(_measured({}, workers_option=True)).met is None


def test_memory_target_compares_the_peak_with_four_chunks_plus_the_layer():
    base = dict(
        case="zca-128x32",
        status="pass",
        size=100,
        chunk=10,
        chunk_bytes=8000,
        layer_single=1000,
        layer_stack=2000,
        rss_growth=0,
        rss_reset=True,
        largest_batch=8,
        directions=8,
        held_after_contracts=16000,
    )
    (ok,) = targets.memory_targets(_measured({}, memory=[dict(base, traced_peak=34000)]))
    assert ok.met is True
    (bad,) = targets.memory_targets(_measured({}, memory=[dict(base, traced_peak=34001)]))
    assert bad.met is False and "20 input-sized arrays" in bad.cause


def test_memory_measure_reports_a_check_and_its_bounds(monkeypatch):
    monkeypatch.setitem(memory.CASES, "tiny", ("tanh 30x4", lambda: make_tanh_problem(30, 4)))
    r = memory.measure("tiny")
    assert r["status"] == "pass" and r["size"] == 120
    assert r["chunk_bytes"] == r["chunk"] * 120 * 8
    assert r["traced_peak"] > 0 and r["layer_single"] > 0
    assert r["held_after_contracts"] is not None


def test_command_output_parsers():
    out = (
        "===== slowest 5 durations =====\n"
        "12.50s call     tests/test_a.py::test_x\n"
        "3.00s setup    tests/test_b.py::test_y\n"
    )
    assert tools.slowest_tests(out) == [
        (12.5, "tests/test_a.py::test_x"),
        (3.0, "tests/test_b.py::test_y"),
    ]
    assert tools.own_seconds("OK: 124 checks, 124 passed in 2.57 s") == 2.57
    assert tools.own_seconds("measured verdicts match the prediction (29.4 s)") == 29.4
    assert tools.own_seconds("no time here") is None


def test_parse_args_defaults_and_the_command_it_shows():
    args = parse_args(["--output", "docs/performance.md"])
    assert args.command == "python benchmarks/run.py --output docs/performance.md"
    assert [f"{n}x{d}" for n, d in args.size_list][-1] == "256x64"
    assert args.suite
    quick = parse_args(["--quick", "--no-memory"])
    assert quick.command == "python benchmarks/run.py --quick --no-memory"
    assert not quick.suite
