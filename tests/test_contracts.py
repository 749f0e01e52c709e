"""Contracts held through the whole check (issue 13, items 1-7 and 10).

Every item has a wrong layer that the check catches and a correct twin that it passes, through
the API and through the real console script. The layers live in one source text, ``LAYERS``:
the API tests execute it here, the CLI tests write it to a module on ``PYTHONPATH`` and check
every layer in one run of ``gradcheck report`` (a module fixture; each test reads its rows).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

from gradcheck import check_layer
from gradcheck.contracts import LayerCalls
from gradcheck.options import DEFAULTS
from layers.activations import ReLU

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = shutil.which("gradcheck", path=str(Path(sys.executable).parent)) or shutil.which(
    "gradcheck"
)
COMMAND = [SCRIPT] if SCRIPT else [sys.executable, "-m", "gradcheck"]
SHAPE = (6, 4)

LAYERS = textwrap.dedent(
    """
    import sys
    import numpy as np

    class Tanh:
        def forward(self, x):
            self.x = x
            return np.tanh(x)
        def backward(self, dy):
            return dy * (1.0 - np.tanh(self.x) ** 2)

    class Affine:
        scale = 1.0
        def __init__(self):
            rng = np.random.default_rng(7)
            self.params = {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
            self.grads = {}
        def forward(self, x):
            self.x = x
            return x @ self.params["W"] + self.params["b"]
        def backward(self, dy):
            self.grads = {"W": self.scale * self.x.T @ dy, "b": dy.sum(axis=0)}
            return dy @ self.params["W"].T

    # 1. Arguments modified in place by a later call than the first forward.
    class BackwardWritesX(Tanh):
        # Right numbers, but backward zeroes a row of the caller's x.
        def backward(self, dy):
            dx = super().backward(dy)
            self.x[0] = 0.0
            return dx

    class ZeroDyOverwritten(Tanh):
        # Writes into dy only when it is all zeros (the linearity check's backward(0)).
        def backward(self, dy):
            dx = super().backward(dy)
            if not dy.any():
                dy += 1.0
            return dx

    class StepsOnThirdBackward(Affine):
        # An optimizer step hidden in backward, from its third call on.
        calls = 0
        def backward(self, dy):
            dx = super().backward(dy)
            self.calls += 1
            if self.calls >= 3:
                self.params["W"] -= 0.1 * self.grads["W"]
            return dx

    # 2. A backward that uses the previous forward's cache.
    class OneForwardBehind(Tanh):
        def forward(self, x):
            self.cache = getattr(self, "last", x)
            self.last = x
            return np.tanh(x)
        def backward(self, dy):
            return dy * (1.0 - np.tanh(self.cache) ** 2)

    # 3. Parameters created on the first forward.
    class Lazy:
        scale = 1.0
        def __init__(self):
            self.params = {}
            self.grads = {}
        def forward(self, x):
            if "W" not in self.params:
                self.params["W"] = np.random.default_rng(1).standard_normal((x.shape[-1], 3))
            self.x = x
            return np.tanh(x @ self.params["W"])
        def backward(self, dy):
            g = dy * (1.0 - np.tanh(self.x @ self.params["W"]) ** 2)
            self.grads = {"W": self.scale * self.x.T @ g}
            return g @ self.params["W"].T

    class LazyWrongW(Lazy):
        scale = 1.001

    # 4. A forward that reads its own reference to the parameter array.
    class Aliased:
        scale = 1.0
        def __init__(self):
            rng = np.random.default_rng(2)
            self.W = rng.standard_normal((4, 3))
            self.b = rng.standard_normal(3)
            self.params = {"W": self.W, "b": self.b}
            self.grads = {}
        def forward(self, x):
            self.x = x
            return x @ self.W + self.b
        def backward(self, dy):
            self.grads = {"W": self.scale * self.x.T @ dy, "b": dy.sum(axis=0)}
            return dy @ self.W.T

    class AliasedWrongW(Aliased):
        scale = 1.001

    # 5. A forward that returns the same output buffer from every call.
    class ReusesBuffer(Tanh):
        factor = 1.0
        def forward(self, x):
            self.x = x
            if getattr(self, "out", None) is None or self.out.shape != x.shape:
                self.out = np.empty(x.shape)
            np.tanh(x, out=self.out)
            return self.out.astype(np.float64, copy=False)
        def backward(self, dy):
            return self.factor * super().backward(dy)

    class ReusesBufferWrong(ReusesBuffer):
        factor = 1.001

    class ReusesBufferBatched(ReusesBuffer):
        supports_batch = True

    # 6. A stack of batches centred by the first batch's mean.
    class FirstSliceMean:
        supports_batch = True
        def forward(self, x):
            return x - x.reshape(-1, *x.shape[-2:])[0].mean(axis=0)
        def backward(self, dy):
            return dy - dy.mean(axis=0)

    class FirstSliceMeanWrong(FirstSliceMean):
        def backward(self, dy):
            return dy  # forgets the gradient through the mean

    # 7. Exceptions at perturbed points.
    class LogShifted:
        # y = log(x + shift), raising outside its domain like math.log. SHIFT puts the
        # smallest entry of the CLI's input (default_rng(0), 6x4) 1e-7 inside the domain.
        shift = 1e-7 - float(np.random.default_rng(0).standard_normal((6, 4)).min())
        scale = 1.0
        def forward(self, x):
            if np.any(x + self.shift <= 0):
                raise ValueError("math domain error")
            self.x = x
            return np.log(x + self.shift)
        def backward(self, dy):
            return self.scale * dy / (self.x + self.shift)

    class ExitsInTheEstimate(Tanh):
        # sys.exit() from its sixth forward on: the analytic phase makes four.
        calls = 0
        def forward(self, x):
            self.calls += 1
            if self.calls >= 6:
                sys.exit("forward gave up")
            return super().forward(x)

    # 10. A backward in float32.
    class Float32Backward(Tanh):
        def backward(self, dy):
            return super().backward(dy).astype(np.float32)

    class Float32ParamGrads(Affine):
        def backward(self, dy):
            dx = super().backward(dy)
            self.grads["W"] = self.grads["W"].astype(np.float32)
            return dx
    """
)

L: Dict[str, Any] = {}
exec(compile(LAYERS, "contract_layers", "exec"), L)


def x_of(shape=SHAPE, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def codes(result):
    return {f.code for f in result.findings}


def message(result, code):
    found = [f.message for f in result.findings if f.code == code]
    assert found, f"no {code} finding in {[f.code for f in result.findings]}"
    return found[0]


# -- 1. every call into the layer is followed by the mutation checks ----------------------------


def test_backward_modifying_x_is_named_with_the_call():
    result = check_layer(L["BackwardWritesX"](), x_of())
    assert result.status == "fail"
    assert message(result, "input-mutated").startswith(
        "backward modified its input x in place (max change"
    )
    assert check_layer(L["Tanh"](), x_of()).status == "pass"


def test_the_check_lets_go_of_inputs_the_layer_no_longer_holds():
    """Every array handed to the layer was kept, with a copy of its value, to the end of the
    check: about 30 input-sized arrays held through the estimates (244 MiB for tanh 5000x200).
    Now an entry goes once the layer holds neither the array nor a view of it."""
    calls = LayerCalls(L["Tanh"](), x_of(), DEFAULTS, dy=None, target=None, seed=0)
    calls.run_analytic()
    alive = [name for name, ref, _ in calls.watched if ref() is not None]
    assert len(calls.watched) <= 2 and alive == ["x"], [e[0] for e in calls.watched]


def test_an_old_input_the_layer_keeps_is_still_watched():
    """The twin: a layer that keeps every input it was given, and writes into the first one on
    its third backward, is named, although many calls came between."""

    class KeepsHistory:
        def __init__(self):
            self.history, self.backwards = [], 0

        def forward(self, x):
            self.history.append(x)
            self.x = x
            return np.tanh(x)

        def backward(self, dy):
            self.backwards += 1
            if self.backwards == 3:
                self.history[0][0, 0] += 1.0
            return dy * (1.0 - np.tanh(self.x) ** 2)

    result = check_layer(KeepsHistory(), x_of())
    assert result.status == "fail"
    assert "modified its input x in place" in message(result, "input-mutated")


def test_a_mutation_in_the_linearity_checks_is_named_with_its_call():
    result = check_layer(L["ZeroDyOverwritten"](), x_of())
    assert result.status == "fail"
    assert message(result, "dy-mutated").startswith(
        "backward (linearity check, dy = 0) modified its argument dy in place"
    )


def test_a_parameter_modified_by_a_later_backward_is_named_and_put_back():
    layer = L["StepsOnThirdBackward"]()
    w = layer.params["W"].copy()
    result = check_layer(layer, x_of())
    assert result.status == "fail"
    text = message(result, "param-mutated")
    assert text.startswith("backward (") and "modified parameter 'W'" in text
    # Put back at once: the estimate ran at the values the gradients were computed at.
    assert result.params["W"].status == "pass"
    assert np.array_equal(layer.params["W"], w)
    assert check_layer(L["Affine"](), x_of()).status == "pass"


# -- 2. stale caches ----------------------------------------------------------------------------


def test_a_backward_using_the_previous_forwards_cache_is_a_stale_cache():
    result = check_layer(L["OneForwardBehind"](), x_of())
    assert result.status == "fail"
    text = message(result, "stale-cache")
    assert text.startswith(
        "backward after forward(x'), forward(x'') then forward(x) differs from backward after "
        "forward(x): backward uses a cache from an earlier forward"
    )
    assert "backward-not-repeatable" not in codes(result)
    assert result.reason.startswith("stale-cache: ")
    assert codes(check_layer(L["Tanh"](), x_of())) == set()


def test_a_forward_that_depends_on_the_previous_input_is_a_stale_cache():
    class SmoothsOutputs(L["Tanh"]):  # type: ignore[misc, valid-type]
        def forward(self, x):
            self.x = x
            y = np.tanh(x)
            out = y if getattr(self, "prev", None) is None else 0.5 * (y + self.prev)
            self.prev = y
            return out

    result = check_layer(SmoothsOutputs(), x_of())
    assert result.status == "fail"
    assert "the forward uses state left by an earlier forward" in message(result, "stale-cache")


def test_accumulating_gradients_are_still_not_repeatable_rather_than_stale():
    class Accumulates(L["Affine"]):  # type: ignore[misc, valid-type]
        def backward(self, dy):
            old = self.grads
            dx = super().backward(dy)
            if old:
                self.grads = {k: old[k] + v for k, v in self.grads.items()}
            return dx

    result = check_layer(Accumulates(), x_of())
    assert "accumulated" in message(result, "backward-not-repeatable")
    assert "stale-cache" not in codes(result)


# -- 3. parameters created on the first forward ------------------------------------------------


def test_parameters_created_on_the_first_forward_are_checked():
    result = check_layer(L["LazyWrongW"](), x_of())
    assert result.status == "fail"
    assert result.params["W"].status == "fail"
    assert "'W'" in message(result, "params-created-lazily")
    good = check_layer(L["Lazy"](), x_of())
    assert good.status == "pass", good.explain()
    assert [a.name for a in good.arguments] == ["x", "W"]
    assert [f.severity for f in good.findings] == ["info"]


def test_a_params_dict_that_only_appears_in_forward_is_found():
    class NoParamsYet:
        def forward(self, x):
            if not hasattr(self, "params"):
                self.params = {"w": np.linspace(0.5, 1.5, x.shape[-1])}
            self.x = x
            return x * self.params["w"]

        def backward(self, dy):
            self.grads = {"w": (dy * self.x)[0]}  # forgets to sum over the examples
            return dy * self.params["w"]

    result = check_layer(NoParamsYet(), x_of())
    assert result.status == "fail" and result.params["w"].status == "fail"
    assert "params-created-lazily" in codes(result)


# -- 4. aliased parameters ---------------------------------------------------------------------


def test_a_forward_reading_its_own_reference_to_the_parameter_is_checked():
    layer = L["Aliased"]()
    w_object, w_bits = layer.W, layer.W.tobytes()
    good = check_layer(layer, x_of())
    assert good.status == "pass", good.explain()
    assert layer.params["W"] is w_object and layer.W is w_object
    assert layer.W.tobytes() == w_bits
    bad = check_layer(L["AliasedWrongW"](), x_of())
    assert bad.status == "fail"
    assert bad.params["W"].status == "fail" and bad.params["b"].status == "pass"


def test_a_parameter_that_cannot_be_perturbed_in_place_is_a_warning():
    layer = L["Affine"]()
    layer.params["W"].flags.writeable = False  # read through params["W"]: rebinding is seen
    result = check_layer(layer, x_of())
    assert result.status == "pass", result.explain()
    assert "read-only" in message(result, "param-rebound")
    assert "param-rebound" not in codes(check_layer(L["Affine"](), x_of()))


# -- 5. a reused output buffer -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "full"])
@pytest.mark.parametrize("name", ["ReusesBuffer", "ReusesBufferBatched"])
def test_a_forward_reusing_its_output_buffer_is_checked(name, mode):
    good = check_layer(L[name](), x_of(), mode=mode)
    assert good.status == "pass", good.explain()
    assert check_layer(L["ReusesBufferWrong"](), x_of(), mode=mode).status == "fail"


# -- 6. supports_batch verified on every slice -------------------------------------------------


def test_batch_support_that_only_holds_for_the_first_slice_is_worked_around():
    good = check_layer(L["FirstSliceMean"](), x_of())
    assert good.status == "pass", good.explain()
    assert "batch-support-broken" in codes(good)
    bad = check_layer(L["FirstSliceMeanWrong"](), x_of())
    assert bad.status == "fail"
    assert "batch-support-broken" in codes(bad)

    class Centres(L["FirstSliceMean"]):  # type: ignore[misc, valid-type]
        def forward(self, x):
            return x - x.mean(axis=-2, keepdims=True)

    assert codes(check_layer(Centres(), x_of())) == set()


# -- 7. exceptions during the estimate ---------------------------------------------------------


class Log:
    scale = 1.0

    def forward(self, x):
        if np.any(x <= 0):
            raise ValueError("math domain error")
        self.x = x
        return np.log(x)

    def backward(self, dy):
        return self.scale * dy / self.x


def near_the_edge():
    """Positive, with one entry 1e-7 inside the domain: central steps leave it there."""
    x = np.abs(x_of()) + 0.5
    x[0, 0] = 1e-7
    return x


@pytest.mark.parametrize("mode", ["auto", "full", "directional"])
def test_a_forward_raising_at_perturbed_points_gives_a_verdict(mode):
    result = check_layer(Log(), near_the_edge(), mode=mode)
    assert "forward-raised" not in codes(result)
    # Every direction crosses the edge, where the gradient is 1e7: the estimate steps back
    # inside the domain (smaller steps, one-sided stencils), and never fails a correct layer.
    assert result.status in ("pass", "inconclusive"), result.explain()


def test_a_wrong_backward_is_caught_although_the_forward_raises_at_some_points():
    class WrongLog(Log):
        scale = 1.001

    assert check_layer(WrongLog(), near_the_edge()).status == "fail"
    assert check_layer(Log(), near_the_edge()).status in ("pass", "inconclusive")


def test_system_exit_during_the_estimate_is_an_error_finding():
    layer = L["ExitsInTheEstimate"]()
    result = check_layer(layer, x_of())
    assert result.status == "error"
    text = message(result, "forward-raised")
    assert "SystemExit: forward gave up" in text and "perturbed point" in text
    assert result.reason.startswith("forward-raised: ")


def test_system_exit_in_backward_is_an_error_finding():
    class Exits(L["Tanh"]):  # type: ignore[misc, valid-type]
        def backward(self, dy):
            sys.exit(3)

    result = check_layer(Exits(), x_of())
    assert result.status == "error"
    assert message(result, "backward-raised") == "backward raised SystemExit: 3"


def test_keyboard_interrupt_reaches_the_caller_and_the_layer_is_restored():
    class Interrupted(L["Affine"]):  # type: ignore[misc, valid-type]
        calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls == 6:
                raise KeyboardInterrupt
            return super().forward(x)

    layer = Interrupted()
    w = layer.params["W"]
    before = w.copy()
    with pytest.raises(KeyboardInterrupt):
        check_layer(layer, x_of(), mode="full")
    assert layer.params["W"] is w and np.array_equal(w, before)


# -- 10. the dtype of what backward returns ----------------------------------------------------


def test_a_float32_backward_is_a_dtype_finding():
    result = check_layer(L["Float32Backward"](), x_of())
    assert result.status == "fail"
    assert message(result, "backward-dtype") == "backward returned float32 for x; expected float64"
    assert result.reason.startswith("backward-dtype: ")
    params = check_layer(L["Float32ParamGrads"](), x_of())
    assert params.status == "fail"
    assert (
        message(params, "backward-dtype")
        == "backward returned float32 for grads['W']; expected float64"
    )
    assert "backward-dtype" not in codes(check_layer(L["Affine"](), x_of()))


def test_with_allow_float32_float32_is_the_expected_dtype():
    x32 = x_of().astype(np.float32)
    f32 = check_layer(L["Float32Backward"](), x32, allow_float32=True)
    assert "backward-dtype" not in codes(f32) and f32.status == "pass", f32.explain()
    # float64 (what a float32 layer returns for the harness's float64 dy) is accepted too.
    assert "backward-dtype" not in codes(check_layer(L["Tanh"](), x32, allow_float32=True))

    class Float16Backward(L["Tanh"]):  # type: ignore[misc, valid-type]
        def backward(self, dy):
            return super().backward(dy).astype(np.float16)

    half = check_layer(Float16Backward(), x32, allow_float32=True)
    assert message(half, "backward-dtype") == "backward returned float16 for x; expected float32"


# -- the same layers through the console script ------------------------------------------------


CLI_LAYERS = (
    "Tanh",
    "Affine",
    "BackwardWritesX",
    "OneForwardBehind",
    "Lazy",
    "LazyWrongW",
    "Aliased",
    "AliasedWrongW",
    "ReusesBuffer",
    "ReusesBufferWrong",
    "FirstSliceMean",
    "FirstSliceMeanWrong",
    "LogShifted",
    "ExitsInTheEstimate",
    "Float32Backward",
)


@pytest.fixture(scope="module")
def cli_rows(tmp_path_factory) -> Dict[str, Dict[str, Any]]:
    """One ``gradcheck report`` over every layer above; rows by class name."""
    d = tmp_path_factory.mktemp("contractlayers")
    (d / "contractlayers.py").write_text(LAYERS)
    out = d / "report.json"
    args = [arg for name in CLI_LAYERS for arg in ("--layer", f"contractlayers:{name}")]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(d), str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    options = ["--shape", "6x4", "--seed", "0", "--format", "json", "--output", str(out)]
    proc = subprocess.run(
        [*COMMAND, "report", *args, *options],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # some layers are wrong on purpose
    doc = json.loads(Path(out).read_text())
    return {r["layer"].split(":")[1]: r for r in doc["results"]}


def cli_codes(row):
    return {f["code"] for f in row["findings"]}


def test_cli_names_a_mutation_by_backward(cli_rows):
    row = cli_rows["BackwardWritesX"]
    assert row["status"] == "fail"
    assert row["reason"].startswith("input-mutated: backward modified its input x in place")
    assert cli_rows["Tanh"]["status"] == "pass"


def test_cli_names_a_stale_cache(cli_rows):
    assert cli_rows["OneForwardBehind"]["status"] == "fail"
    assert cli_rows["OneForwardBehind"]["reason"].startswith("stale-cache: backward after")
    assert cli_rows["Tanh"]["findings"] == []


def test_cli_checks_parameters_created_on_the_first_forward(cli_rows):
    good, bad = cli_rows["Lazy"], cli_rows["LazyWrongW"]
    assert good["status"] == "pass" and "params-created-lazily" in cli_codes(good)
    assert [a["name"] for a in good["arguments"]] == ["x", "W"]
    assert bad["status"] == "fail" and bad["worst_argument"] == "W"


def test_cli_checks_aliased_parameters(cli_rows):
    assert cli_rows["Aliased"]["status"] == "pass"
    assert cli_rows["AliasedWrongW"]["status"] == "fail"
    assert cli_rows["AliasedWrongW"]["worst_argument"] == "W"


def test_cli_checks_a_forward_reusing_its_output_buffer(cli_rows):
    assert cli_rows["ReusesBuffer"]["status"] == "pass"
    assert cli_rows["ReusesBufferWrong"]["status"] == "fail"


def test_cli_works_around_batch_support_broken_beyond_the_first_slice(cli_rows):
    good, bad = cli_rows["FirstSliceMean"], cli_rows["FirstSliceMeanWrong"]
    assert good["status"] == "pass" and "batch-support-broken" in cli_codes(good)
    assert bad["status"] == "fail" and "batch-support-broken" in cli_codes(bad)


def test_cli_survives_exceptions_and_sys_exit_during_the_estimate(cli_rows):
    log = cli_rows["LogShifted"]
    assert log["status"] in ("pass", "inconclusive"), log["reason"]
    assert not cli_codes(log) & {"forward-raised", "check-raised"}
    exits = cli_rows["ExitsInTheEstimate"]
    assert exits["status"] == "error"
    assert exits["reason"].startswith("forward-raised: forward raised SystemExit: forward gave up")
    assert len(cli_rows) == len(CLI_LAYERS)  # every other layer still has its row


def test_cli_reports_a_float32_backward(cli_rows):
    row = cli_rows["Float32Backward"]
    assert row["status"] == "fail"
    assert row["reason"] == "backward-dtype: backward returned float32 for x; expected float64"


# -- a cache set only once --------------------------------------------------------------------


class _FirstCacheOnly:
    """Found by an adversarial helper: the cache of the very first forward, never refreshed.
    The check's own forward(x) is the first, so the gradient at x is right and the estimate
    agreed; on every later batch the backward is wrong."""

    def __init__(self):
        self.cache = None

    def forward(self, x):
        if self.cache is None:
            self.cache = x.copy()
        return np.tanh(x) * x

    def backward(self, dy):
        x = self.cache
        return dy * ((1 - np.tanh(x) ** 2) * x + np.tanh(x))


class _Doubles:
    """y = 2 x: a gradient that does not depend on x, so backward after forward(x') rightly
    returns exactly the gradient at x."""

    def forward(self, x):
        return 2.0 * x

    def backward(self, dy):
        return 2.0 * dy


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mode", ["auto", "full"])
def test_a_cache_set_only_once_is_a_stale_cache(seed, mode):
    result = check_layer(_FirstCacheOnly(), x_of(seed=seed), seed=seed, mode=mode)
    assert result.status == "fail", result.explain()
    assert "is not the gradient at x''" in message(result, "stale-cache")


@pytest.mark.parametrize("layer", [_Doubles, lambda: L["Tanh"](), ReLU])
def test_a_gradient_that_does_not_change_with_x_is_not_a_stale_cache(layer):
    result = check_layer(layer(), x_of())
    assert result.status == "pass", result.explain()


class _Dense:
    """``x @ W + b``; with ``first_only`` its cache is set on the first forward only (found by
    an adversarial helper): dW is the first batch's on every later call, while dx and db
    rightly do not depend on x, so only the parameter gradient is stale."""

    def __init__(self, first_only: bool):
        r = np.random.default_rng(1)
        self.params = {"W": r.standard_normal((4, 3)), "b": r.standard_normal(3)}
        self.first_only = first_only
        self.x = None

    def forward(self, x):
        if self.x is None or not self.first_only:
            self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dy):
        self.grads = {"W": self.x.T @ dy, "b": dy.sum(0)}
        return dy @ self.params["W"].T


class _ReLU:
    """With ``frozen``, the mask of the first forward is kept (found by an adversarial helper):
    a nearby input keeps every sign, so only an input whose entries change sign exposes it."""

    def __init__(self, frozen: bool):
        self.frozen = frozen
        self.mask = None

    def forward(self, x):
        if self.mask is None or not self.frozen:
            self.mask = x > 0
        return np.maximum(x, 0)

    def backward(self, dy):
        return dy * self.mask


class _MaxPool:
    """Max over each row of 4 entries; with ``frozen``, the argmax of the first forward."""

    def __init__(self, frozen: bool):
        self.frozen = frozen
        self.arg = None

    def forward(self, x):
        if self.arg is None or not self.frozen:
            self.arg = np.argmax(x, axis=1)
        self.shape = x.shape
        return np.max(x, axis=1)

    def backward(self, dy):
        dx = np.zeros(self.shape)
        dx[np.arange(self.shape[0]), self.arg] = dy
        return dx


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mode", ["auto", "full"])
@pytest.mark.parametrize("layer", [_Dense, _ReLU, _MaxPool])
def test_a_parameter_gradient_or_mask_from_the_first_forward_only_is_a_stale_cache(
    layer, mode, seed
):
    x = x_of((6, 4), seed=seed)
    result = check_layer(layer(True), x, seed=seed, mode=mode)
    assert result.status == "fail", result.explain()
    assert "is not the gradient at x''" in message(result, "stale-cache")
    assert check_layer(layer(False), x, seed=seed, mode=mode).status == "pass"


def test_a_probe_input_outside_the_domain_falls_back_to_the_nearby_one():
    """Each row must be increasing (a layer of sorted knots): the rolled x'' is outside the
    domain and raises, the nearby x' stands in, and a cache set once is still caught there."""

    class Knots(_FirstCacheOnly):
        def forward(self, x):
            if np.any(np.diff(x, axis=0) <= 0):
                raise ValueError("rows must be increasing")
            return super().forward(x)

    x = np.sort(x_of((6, 4)), axis=0) + np.arange(6)[:, None]
    result = check_layer(Knots(), x)
    assert result.status == "fail", result.explain()
    assert "x'' is the nearby input x'" in message(result, "stale-cache")
    right = check_layer(_SortedTanh(), x)
    assert right.status == "pass", right.explain()


class _SortedTanh:
    def forward(self, x):
        if np.any(np.diff(x, axis=0) <= 0):
            raise ValueError("rows must be increasing")
        self.x = x
        return np.tanh(x) * x

    def backward(self, dy):
        x = self.x
        return dy * ((1 - np.tanh(x) ** 2) * x + np.tanh(x))


class _ClipsTheGradient:
    """Found by an adversarial helper: tanh' * dy clipped to |dx| <= 50. Linear on every draw of
    size 1 (the clip never triggers), wrong for an upstream gradient of 100."""

    def __init__(self, bound=50.0):
        self.bound = bound

    def forward(self, x):
        self.x = x
        return np.tanh(x)

    def backward(self, dy):
        return np.clip(dy * (1.0 - np.tanh(self.x) ** 2), -self.bound, self.bound)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_clip_on_the_gradient_is_not_linear(seed):
    result = check_layer(_ClipsTheGradient(), x_of(seed=seed), seed=seed)
    assert result.status == "fail", result.explain()
    assert "backward(c dy) differs from c backward(dy) for c = 2^" in message(
        result, "backward-not-linear"
    )
    # A bound no dy the check uses can reach is a correct backward.
    assert check_layer(_ClipsTheGradient(np.inf), x_of(seed=seed), seed=seed).status == "pass"


class _ShuffledSum:
    """Found by an adversarial helper: y = x @ W summed in a random order on every call (as a
    threaded or atomic reduction does): outputs differ by a few ulps between calls, and an
    output that cancels to 1e-16 differs by a large relative amount. The backward is exact."""

    def __init__(self, jitter: float = 0.0):
        self.rng = np.random.default_rng()
        self.jitter = jitter
        self.params = {"W": np.random.default_rng(1).standard_normal((8, 8))}
        self.grads = {}

    def forward(self, x):
        self.x = x
        w = self.params["W"]
        perm = self.rng.permutation(w.shape[0])
        y = (x[:, perm, None] * w[None, perm, :]).sum(axis=1)
        return y + self.jitter * self.rng.standard_normal(y.shape)

    def backward(self, dy):
        self.grads["W"] = self.x.T @ dy
        return dy @ self.params["W"].T


def _cancelling_input():
    x = np.random.default_rng(0).standard_normal((16, 8))
    w0 = np.random.default_rng(1).standard_normal((8, 8))[:, 0]
    x[0] -= (x[0] @ w0) / (w0 @ w0) * w0  # y[0, 0] cancels to about 1e-16
    return x


def test_a_summation_order_that_varies_is_repeatable_enough():
    result = check_layer(_ShuffledSum(), _cancelling_input())
    assert result.status == "pass", result.explain()
    # Noise of 1e-6 of the outputs' size is not rounding: the forward is not repeatable.
    noisy = check_layer(_ShuffledSum(jitter=1e-6), _cancelling_input())
    assert "forward-not-repeatable" in codes(noisy), noisy.explain()


class _BranchesOnTheSignOfDy:
    """Found by an adversarial helper: right when dy[0, 0] > 0, 0.1% wrong otherwise. At seed 3
    dy, dy2 and dy + 2 dy2 all have dy[0, 0] > 0, and the check passed; B(-dy) = -B(dy) puts
    every entry on the other branch."""

    def forward(self, x):
        self.x = x
        return np.tanh(x) * x

    def backward(self, dy):
        x = self.x
        g = dy * ((1 - np.tanh(x) ** 2) * x + np.tanh(x))
        return g if dy[0, 0] > 0 else 1.001 * g


@pytest.mark.parametrize("seed", range(6))
def test_a_branch_on_the_sign_of_dy_is_not_linear(seed):
    result = check_layer(_BranchesOnTheSignOfDy(), x_of(seed=seed), seed=seed)
    assert result.status == "fail", result.explain()


class _RescalesColumns:
    """Found by an adversarial helper: ``y = x * s`` with ``s = [1e8, 1, 1, 1]`` per column; the
    wrong backward doubles ``dx`` wherever ``dy < 0`` in the columns of 1. The linearity test
    held every entry to rtol times the largest (about 5 here), and what it measured became the
    entries' own error bars, so a 100% error passed in every mode."""

    scale = np.array([1e8, 1.0, 1.0, 1.0])

    def __init__(self, branch: bool) -> None:
        self.branch = branch

    def forward(self, x):
        return x * self.scale

    def backward(self, dy):
        dx = dy * self.scale
        if self.branch:
            dx[:, 1:] *= np.where(dy[:, 1:] < 0, 2.0, 1.0)
        return dx


@pytest.mark.parametrize("mode", ["auto", "full"])
@pytest.mark.parametrize("seed", range(3))
def test_a_branch_on_dy_in_small_entries_beside_a_large_one_is_not_linear(mode, seed):
    x = np.random.default_rng(seed).standard_normal((8, 4))
    result = check_layer(_RescalesColumns(branch=True), x, seed=seed, mode=mode)
    assert result.status == "fail", result.explain()
    assert "for c = -1 (at x[" in message(result, "backward-not-linear")
    right = check_layer(_RescalesColumns(branch=False), x, seed=seed, mode=mode)
    assert right.status == "pass", right.explain()


_W0 = np.random.default_rng(1).standard_normal((4, 3))


class _ReadsItsOwnW:
    """Found by an adversarial helper: the forward reads ``self.W``; ``params`` holds it as a
    float32 array, a read-only one, or (``copies``) returns a copy on every read. The estimate
    then cannot perturb the array the forward reads, its numerical gradient is exactly zero,
    and a backward returning ``grads['W'] = 0`` passed while the right one failed."""

    def __init__(self, how: str, zero: bool) -> None:
        self.W = _W0.astype(np.float32) if how == "float32" else _W0.copy()
        if how == "read-only":
            self.W.flags.writeable = False
        self.how, self.zero, self.grads = how, zero, {}

    @property
    def params(self):
        return {"W": self.W.copy() if self.how == "copies" else self.W}

    def forward(self, x):
        self.x = x
        return x @ self.W.astype(np.float64)

    def backward(self, dy):
        g = self.x.T @ dy
        self.grads = {"W": np.zeros_like(g) if self.zero else g}
        return dy @ self.W.astype(np.float64).T


@pytest.mark.parametrize("mode", ["auto", "full"])
@pytest.mark.parametrize("how", ["float32", "read-only", "copies"])
def test_a_parameter_the_estimate_cannot_reach_is_inconclusive_never_pass(how, mode):
    for zero in (True, False):
        result = check_layer(_ReadsItsOwnW(how, zero), x_of(), mode=mode)
        assert result.status == "inconclusive", result.explain()
        assert "moved no output" in message(result, "param-unreachable")
        assert result.params["W"].status == "inconclusive"
    # The twin: the same layer with a float64, writable W that params holds itself.
    assert check_layer(_ReadsItsOwnW("float64", False), x_of(), mode=mode).status == "pass"
    assert check_layer(_ReadsItsOwnW("float64", True), x_of(), mode=mode).status == "fail"


def test_an_unused_parameter_is_a_warning_and_held_to_zero():
    class Unused(_ReadsItsOwnW):
        @property
        def params(self):
            return {"W": self.W, "unused": self.spare}

        def backward(self, dy):
            dx = super().backward(dy)
            self.grads["unused"] = self.spare_grad
            return dx

    layer = Unused("float64", False)
    layer.spare, layer.spare_grad = np.ones(3), np.zeros(3)
    result = check_layer(layer, x_of())
    assert result.status == "pass", result.explain()
    assert "does not read it" in message(result, "param-moves-nothing")
    layer = Unused("float64", False)
    layer.spare, layer.spare_grad = np.ones(3), np.ones(3)
    assert check_layer(layer, x_of()).status == "fail"


class _HoldsParamsIn:
    """Found by an adversarial helper: parameters in anything but a plain dict were not
    checked at all, so a dW wrong by a factor 0.5 passed with no finding."""

    def __init__(self, container: str, factor: float) -> None:
        self.W = np.random.default_rng(1).standard_normal((4, 3))
        self.factor, self.container = factor, container
        self.params = {
            "list": lambda: [self.W],
            "MappingProxyType": lambda: types.MappingProxyType({"W": self.W}),
            "UserDict": lambda: collections.UserDict({"W": self.W}),
        }[container]()

    def forward(self, x):
        self.x = x
        return x @ self.W

    def backward(self, dy):
        g = self.factor * self.x.T @ dy
        self.grads = [g] if self.container == "list" else {"W": g}
        return dy @ self.W.T


@pytest.mark.parametrize("container", ["MappingProxyType", "UserDict"])
def test_parameters_in_any_mapping_are_checked(container):
    wrong = check_layer(_HoldsParamsIn(container, 0.5), x_of())
    assert wrong.status == "fail" and wrong.params["W"].status == "fail", wrong.explain()
    assert check_layer(_HoldsParamsIn(container, 1.0), x_of()).status == "pass"


def test_parameters_in_a_list_are_an_error_not_skipped():
    for factor in (0.5, 1.0):
        result = check_layer(_HoldsParamsIn("list", factor), x_of())
        assert result.status == "error"
        assert "layer.params is a list of arrays" in message(result, "params-not-a-mapping")


# -- tied parameters ----------------------------------------------------------------------------


class _TiedAutoencoder:
    """``y = (x W) W^T`` with ``params = {"enc": W, "dec": W}``, one array under two keys (found
    by an adversarial helper). ``grads`` holds the partial under each key (``"partials"``), the
    total under one key and zero under the other (``"total-once"``), or, wrongly, the total
    under both keys (``"total-twice"``: in-place steps under both keys apply it twice)."""

    def __init__(self, grads: str):
        self.W = np.random.default_rng(1).standard_normal((4, 3))
        self.params = {"enc": self.W, "dec": self.W}
        self.how = grads

    def forward(self, x):
        self.x, self.h = x, x @ self.W
        return self.h @ self.W.T

    def backward(self, dy):
        enc = self.x.T @ (dy @ self.W)
        dec = dy.T @ self.h
        if self.how == "total-twice":
            enc = dec = enc + dec
        elif self.how == "total-once":
            enc, dec = enc + dec, np.zeros_like(dec)
        self.grads = {"enc": enc, "dec": dec}
        return dy @ self.W @ self.W.T


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_tied_parameters_are_checked_as_the_sum_of_their_keys(mode):
    x = x_of((6, 4))
    for right in ("partials", "total-once"):
        result = check_layer(_TiedAutoencoder(right), x, mode=mode)
        assert result.status == "pass", result.explain()
        assert "grads['dec'] + grads['enc']" in message(result, "params-tied")
    wrong = check_layer(_TiedAutoencoder("total-twice"), x, mode=mode)
    assert wrong.status == "fail", wrong.explain()


def test_parameters_overlapping_in_part_are_inconclusive_never_pass():
    """``params = {"W": W, "row": W[0]}``: perturbing W[0] moves both keys' uses."""

    class Overlapping:
        def __init__(self):
            self.W = np.random.default_rng(1).standard_normal((4, 3))
            self.params = {"W": self.W, "row": self.W[0]}

        def forward(self, x):
            self.x = x
            return x @ self.W + self.W[0]

        def backward(self, dy):
            self.grads = {"W": self.x.T @ dy, "row": dy.sum(0)}
            return dy @ self.W.T

    result = check_layer(Overlapping(), x_of((6, 4)))
    assert "params-overlap" in codes(result)
    statuses = {a.name: a.status for a in result.arguments}
    assert statuses["W"] == statuses["row"] == "inconclusive", result.explain()
    assert statuses["x"] == "pass"


# -- the memory layout of dy --------------------------------------------------------------------


class _TanhReadingDyAs:
    """tanh whose backward reads dy through ``as_strided`` with the strides of a C-contiguous
    array (the sliding-window idiom of hand-written convolutions; found by an adversarial
    helper): garbage for a transposed or sliced dy. ``how="frombuffer"`` raises on such a dy
    instead; ``how="right"`` is the twin."""

    def __init__(self, how: str):
        self.how = how

    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, dy):
        if self.how == "as_strided":
            n, d = dy.shape
            s = dy.itemsize
            dy = np.lib.stride_tricks.as_strided(dy, shape=(n, d), strides=(d * s, s))
        elif self.how == "frombuffer":
            dy = np.frombuffer(dy, dtype=dy.dtype).reshape(dy.shape)
        return dy * (1 - self.y**2)


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_a_backward_assuming_a_contiguous_dy_fails(mode):
    x = x_of((6, 4))
    wrong = check_layer(_TanhReadingDyAs("as_strided"), x, mode=mode)
    assert wrong.status == "fail", wrong.explain()
    assert "not contiguous" in message(wrong, "backward-layout")
    assert check_layer(_TanhReadingDyAs("right"), x, mode=mode).status == "pass"


def test_a_backward_raising_on_a_non_contiguous_dy_is_a_warning():
    result = check_layer(_TanhReadingDyAs("frombuffer"), x_of((6, 4)))
    assert result.status == "pass", result.explain()
    found = [f for f in result.findings if f.code == "backward-layout"]
    assert found and found[0].severity == "warning" and "raised" in found[0].message


# -- the backward's rounding, pooled by magnitude -------------------------------------------------


class _ScalesColumns:
    """``y = x * [1, 1, 1, R, R]`` per column; ``bug`` scales dx in the columns of 1 by
    ``1 + bug``, a linear error (found by an adversarial helper): the backward's rounding was
    pooled over the whole argument, so the ordinary rounding of the entries of R (about
    eps R) became every small entry's error bar."""

    def __init__(self, big: float, bug: float) -> None:
        self.scale = np.array([1.0, 1.0, 1.0, big, big])
        self.bug = bug

    def forward(self, x):
        return x * self.scale

    def backward(self, dy):
        dx = dy * self.scale
        dx[:, :3] *= 1.0 + self.bug
        return dx


@pytest.mark.parametrize("mode", ["auto", "full"])
@pytest.mark.parametrize("big", [1e8, 1e12])
def test_a_linear_error_in_small_entries_beside_large_ones_is_not_hidden_by_their_rounding(
    mode, big
):
    x = x_of((16, 5))
    for bug in (1e-6, 1e-5):
        wrong = check_layer(_ScalesColumns(big, bug), x, mode=mode)
        assert wrong.status == "fail", wrong.explain()
    right = check_layer(_ScalesColumns(big, 0.0), x, mode=mode)
    assert right.status == "pass", right.explain()


class _NoisyBesideClean:
    """``y = x`` with column 7 times 1e6 (found by an adversarial helper): the backward of
    columns 4-6 is right but computed as ``dy (R + 1) - dy R`` (a rounding of about 1e-4 of
    dy), and ``bug`` scales columns 0-3, whose backward has no rounding at all. The noisy
    columns' pooled rounding was the clean columns' error bar, and the column of 1e6 raised the
    floor that the estimate must resolve to 1e-2: a 1e-4 error in columns 0-3 passed."""

    def __init__(self, bug: float):
        self.bug = bug

    def forward(self, x):
        y = x.copy()
        y[:, 7] *= 1e6
        return y

    def backward(self, dy):
        dx = dy.copy()
        dx[:, :4] *= 1 + self.bug
        dx[:, 4:7] = dy[:, 4:7] * (1e12 + 1.0) - dy[:, 4:7] * 1e12
        dx[:, 7] = dy[:, 7] * 1e6
        return dx


@pytest.mark.parametrize("mode", ["auto", "full", "directional"])
@pytest.mark.parametrize("seed", [0, 1])
def test_entries_whose_error_bar_is_the_backwards_rounding_are_never_a_pass(mode, seed):
    # The resolve floor excuses what finite differences cannot resolve beside large entries,
    # never the backward's own rounding: entries whose bar it sets are inconclusive, and so is
    # the right twin (its noisy columns cannot be verified to the tolerance).
    x = np.random.default_rng(0).standard_normal((16, 8))
    for bug in (1e-6, 1e-4):
        wrong = check_layer(_NoisyBesideClean(bug), x, seed=seed, mode=mode)
        assert wrong.status != "pass", wrong.explain()
    right = check_layer(_NoisyBesideClean(0.0), x, seed=seed, mode=mode)
    assert right.status == "inconclusive", right.explain()
    if mode != "directional":
        assert "backward's own rounding" in (right.reason or ""), right.reason


def test_a_clean_backward_beside_a_column_of_1e6_still_passes():
    # The twin without the noisy columns: nothing but the estimate's resolve floor is at work.
    class Clean(_NoisyBesideClean):
        def backward(self, dy):
            dx = dy.copy()
            dx[:, 7] = dy[:, 7] * 1e6
            return dx

    x = np.random.default_rng(0).standard_normal((16, 8))
    for mode in ("auto", "full"):
        result = check_layer(Clean(0.0), x, seed=0, mode=mode)
        assert result.status == "pass", result.explain()


# -- caches of the target and of the parameters ---------------------------------------------------


class _SoftmaxCE:
    """Softmax cross-entropy; with ``stale``, its one-hot target is built on the first forward
    only (found by an adversarial helper): wrong on every later batch."""

    is_loss = True

    def __init__(self, stale: bool):
        self.stale = stale
        self.onehot = None

    def forward(self, x, target):
        if self.onehot is None or not self.stale:
            self.onehot = np.eye(x.shape[1])[target]
        z = x - x.max(axis=1, keepdims=True)
        self.p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        return float(-np.log(self.p[np.arange(x.shape[0]), target]).mean())

    def backward(self):
        return (self.p - self.onehot) / self.p.shape[0]


class _DenseCachingWT:
    """``x @ W + b``; with ``stale``, its backward computes ``W.T`` on its first call only
    (found by an adversarial helper): dx is wrong after the first optimizer step."""

    def __init__(self, stale: bool):
        r = np.random.default_rng(1)
        self.params = {"W": r.standard_normal((4, 3)), "b": np.zeros(3)}
        self.stale = stale
        self.WT = None

    def forward(self, x):
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dy):
        if self.WT is None or not self.stale:
            self.WT = self.params["W"].T.copy()
        self.grads = {"W": self.x.T @ dy, "b": dy.sum(axis=0)}
        return dy @ self.WT


@pytest.mark.parametrize("mode", ["auto", "full"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("layer", [_SoftmaxCE, _DenseCachingWT])
def test_a_cache_of_the_first_target_or_of_the_first_parameters_is_a_stale_cache(layer, seed, mode):
    x = x_of((8, 4), seed=seed)
    result = check_layer(layer(True), x, seed=seed, mode=mode)
    assert result.status == "fail", result.explain()
    # The one-hot is stale, the probabilities fresh: no gradient is exactly the one at x.
    code = "wrong-away-from-x" if layer is _SoftmaxCE else "stale-cache"
    assert "is not the gradient at x''" in message(result, code)
    right = check_layer(layer(False), x, seed=seed, mode=mode)
    assert right.status == "pass", right.explain()


# -- batch support beyond the probe ---------------------------------------------------------------


class _BatchNormFastPath:
    """Standardizes each column; declares ``supports_batch``, and on stacks of more than four
    (``fast_path``) pools the statistics over the whole stack (found by an adversarial helper).
    ``wrong`` is the classic backward ``dy / std`` that forgets the statistics: what the pooled
    path's stencil points, which share the statistics of x, differentiate."""

    supports_batch = True

    def __init__(self, fast_path: bool, wrong: bool):
        self.fast_path, self.wrong = fast_path, wrong

    @staticmethod
    def _norm(x, axes):
        m = x.mean(axis=axes, keepdims=True)
        s = np.sqrt(x.var(axis=axes, keepdims=True) + 1e-5)
        return (x - m) / s, s

    def forward(self, x):
        if x.ndim == 3:
            if self.fast_path and x.shape[0] > 4:
                return self._norm(x, (0, 1))[0]
            return np.stack([self._norm(xi, 0)[0] for xi in x])
        y, self.s = self._norm(x, 0)
        self.y = y
        return y

    def backward(self, dy):
        if self.wrong:
            return dy / self.s
        return (dy - dy.mean(0) - self.y * (dy * self.y).mean(0)) / self.s


class _CenterPooledOnStacks:
    """``x - mean(x, 0)`` declaring ``supports_batch``, whose mean pools every slice of a stack
    (``x.reshape(-1, D)``), with the wrong backward ``dx = dy``; on inputs of size 1e-6 the
    mixing was within the batch probe's absolute tolerance (found by an adversarial helper)."""

    supports_batch = True

    def forward(self, x):
        return x - x.reshape(-1, x.shape[-1]).mean(axis=0)

    def backward(self, dy):
        return dy


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_a_batch_support_that_breaks_on_larger_stacks_is_found_in_the_estimate(mode):
    x = x_of((8, 4))
    result = check_layer(_BatchNormFastPath(fast_path=True, wrong=True), x, mode=mode)
    assert result.status == "fail", result.explain()
    assert "stacked forward of" in message(result, "batch-support-broken")
    right = check_layer(_BatchNormFastPath(fast_path=True, wrong=False), x, mode=mode)
    assert right.status == "pass", right.explain()
    assert "batch-support-broken" in codes(right)
    clean = check_layer(_BatchNormFastPath(fast_path=False, wrong=False), x, mode=mode)
    assert clean.status == "pass" and "batch-support-broken" not in codes(clean)


@pytest.mark.parametrize("scale", [1.0, 1e-6])
def test_batch_support_is_judged_relative_to_the_outputs_size(scale):
    result = check_layer(_CenterPooledOnStacks(), scale * x_of((8, 4)))
    assert result.status == "fail", result.explain()
    assert "batch-support-broken" in codes(result)


class _DenseBiasAside:
    """``x @ W + b`` whose ``b`` is an attribute that ``params`` lacks (found by an adversarial
    helper) and whose ``grads['b']`` is wrong (a mean for a sum); ``registered`` is the twin
    holding ``b`` in ``params``, so that the wrong gradient is checked and fails."""

    def __init__(self, registered: bool):
        r = np.random.default_rng(1)
        self.W, self.b = r.standard_normal((4, 3)), r.standard_normal(3)
        self.params = {"W": self.W, "b": self.b} if registered else {"W": self.W}

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.grads = {"W": self.x.T @ dy, "b": dy.mean(0)}
        return dy @ self.W.T


def test_a_gradient_under_a_key_params_lacks_is_a_warning_and_checked_once_registered():
    aside = check_layer(_DenseBiasAside(registered=False), x_of((6, 4)))
    assert "grads['b'], which layer.params does not hold" in message(aside, "grads-unmatched")
    registered = check_layer(_DenseBiasAside(registered=True), x_of((6, 4)))
    assert registered.status == "fail" and registered.params["b"].status == "fail"
    assert "grads-unmatched" not in codes(registered)


class _DenseOnTinyInputs:
    """``x @ W + b`` on an input of about 1e-219 beside zeros (found by a Hypothesis property):
    W's gradient, about 1e-219, moves no output of size 1 at any step. The right backward was
    failed against the estimate's exact 0; ``scale`` != 1 makes dW wrong, still unseeable."""

    def __init__(self, scale: float):
        r = np.random.default_rng(1)
        self.params = {"W": r.standard_normal((3, 2)), "b": r.standard_normal(2)}
        self.scale = scale

    def forward(self, x):
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dy):
        self.grads = {"W": self.scale * (self.x.T @ dy), "b": dy.sum(0)}
        return dy @ self.params["W"].T


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_a_parameter_gradient_below_the_outputs_rounding_is_inconclusive_never_fail(mode):
    x = np.array([[-1.27e-219, 0.0, 0.0]])
    for scale in (1.0, 2.0):
        result = check_layer(_DenseOnTinyInputs(scale), x, mode=mode)
        assert result.params["W"].status == "inconclusive", result.explain()
        assert result.status == "inconclusive"
        assert "below the outputs' rounding" in message(result, "param-change-swallowed")
    # A gradient that would have moved an output is still held to what was seen.
    big = check_layer(_DenseOnTinyInputs(1e215), x, mode=mode)
    assert big.status == "fail", big.explain()


class _TransposeTiedAutoencoder:
    """``tanh(x W) W^T`` with ``params = {"enc": W, "dec": W.T}`` (a view of all of W; found by
    an adversarial helper: it was inconclusive, never a pass). ``wrong`` puts the total under
    both keys."""

    def __init__(self, wrong: bool):
        w = np.random.default_rng(1).standard_normal((4, 3))
        self.params = {"enc": w, "dec": w.T}
        self.wrong = wrong

    def forward(self, x):
        self.x = x
        self.h = np.tanh(x @ self.params["enc"])
        return self.h @ self.params["dec"]

    def backward(self, dy):
        da = (dy @ self.params["dec"].T) * (1 - self.h**2)
        enc, dec = self.x.T @ da, self.h.T @ dy
        if self.wrong:
            enc, dec = enc + dec.T, dec + enc.T
        self.grads = {"enc": enc, "dec": dec}
        return da @ self.params["enc"].T


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_parameters_tied_through_a_transpose_are_checked_through_it(mode):
    x = x_of((6, 4))
    right = check_layer(_TransposeTiedAutoencoder(wrong=False), x, mode=mode)
    assert right.status == "pass", right.explain()
    assert "W and W.T" in message(right, "params-tied")
    wrong = check_layer(_TransposeTiedAutoencoder(wrong=True), x, mode=mode)
    assert wrong.status == "fail", wrong.explain()


# -- the fresh-cache probe stays where the layer can be -------------------------------------------


class _Mahalanobis:
    """``y_n = x_n^T A x_n`` with A symmetric, and the backward ``2 dy x A`` that holds for
    symmetric A (which every step of its symmetric gradient keeps); found by an adversarial
    helper: moving each entry of A on its own made A'' asymmetric and the right layer failed.
    ``wrong`` drops the factor 2."""

    def __init__(self, wrong: bool):
        m = np.random.default_rng(1).standard_normal((4, 4))
        self.params = {"A": m @ m.T + np.eye(4)}
        self.factor = 1.0 if wrong else 2.0

    def forward(self, x):
        self.x = x
        return np.einsum("ni,ij,nj->n", x, self.params["A"], x)

    def backward(self, dy):
        self.grads = {"A": np.einsum("n,ni,nj->ij", dy, self.x, self.x)}
        return self.factor * dy[:, None] * (self.x @ self.params["A"])


class _GramLoss:
    """``||X X^T - T||^2 / 2`` with a symmetric pairwise target T (N x N), and the backward
    ``2 (X X^T - T) X`` that holds for symmetric T; found by an adversarial helper: rolling T's
    rows alone made it asymmetric. ``stale`` keeps the first target (a stale cache)."""

    is_loss = True

    def __init__(self, stale: bool):
        self.stale, self.T = stale, None

    def forward(self, x, target):
        if self.T is None or not self.stale:
            self.T = target
        self.x = x
        return 0.5 * float(np.sum((x @ x.T - target) ** 2))

    def backward(self):
        return 2.0 * (self.x @ self.x.T - self.T) @ self.x


def test_a_backward_right_for_the_symmetric_parameter_it_keeps_is_not_failed():
    x = x_of((6, 4))
    result = check_layer(_Mahalanobis(wrong=False), x)
    assert result.status == "pass", result.explain()
    assert "wrong-for-moved-params" in codes(result)
    assert check_layer(_Mahalanobis(wrong=True), x).status == "fail"


def test_a_pairwise_target_is_rolled_on_both_axes():
    x = x_of((6, 3))
    z = np.random.default_rng(2).standard_normal((6, 3))
    target = z @ z.T
    right = check_layer(_GramLoss(stale=False), x, target=target)
    assert right.status == "pass", right.explain()
    stale = check_layer(_GramLoss(stale=True), x, target=target)
    assert stale.status == "fail", stale.explain()


@pytest.mark.parametrize("container", [np.asarray, list])
def test_a_one_hot_cached_from_a_target_given_as_a_list_is_caught(container):
    x = x_of((8, 4))
    labels = container(list(np.arange(8) % 4))
    assert check_layer(_SoftmaxCE(True), x, target=labels).status == "fail"
    assert check_layer(_SoftmaxCE(False), x, target=labels).status == "pass"


@pytest.mark.parametrize("where", ["x", "b"])
def test_a_first_input_cache_is_caught_beside_an_entry_of_1e_9(where):
    """Found by an adversarial helper: the fresh-cache check skipped arguments spanning more
    than 1e8, silently; its direction is now scaled entry by entry."""

    class Cached:
        def __init__(self, stale: bool):
            r = np.random.default_rng(1)
            self.params = {"W": r.standard_normal((4, 3)), "b": r.standard_normal(3)}
            if where == "b":
                self.params["b"][0] = 1e-9
            self.stale, self.x = stale, None

        def forward(self, x):
            if self.x is None or not self.stale:
                self.x = x
            self.y = np.tanh(x @ self.params["W"] + self.params["b"])
            return self.y

        def backward(self, dy):
            da = dy * (1 - self.y**2)
            self.grads = {"W": self.x.T @ da, "b": da.sum(0)}
            return da @ self.params["W"].T

    x = x_of((6, 4))
    if where == "x":
        x[0, 0] = 1e-9
    assert check_layer(Cached(True), x).status == "fail"
    assert check_layer(Cached(False), x).status == "pass"


@pytest.mark.parametrize("read_only", [False, True])
def test_a_cache_of_the_first_parameters_is_caught_when_they_are_read_only(read_only):
    """Found by an adversarial helper: read-only parameters (functional-style training rebinds
    params[k]) were never moved by the fresh-cache check, so W.T cached once passed."""

    class Cached(_DenseCachingWT):
        def __init__(self, stale: bool):
            super().__init__(stale)
            for value in self.params.values():
                value.flags.writeable = not read_only

    x = x_of((8, 4))
    result = check_layer(Cached(True), x)
    assert result.status == "fail", result.explain()
    assert "stale-cache" in codes(result)
    assert check_layer(Cached(False), x).status == "pass"


# -- parameters the check cannot read -------------------------------------------------------------


class _ParamsHeldAs:
    """``y = x W``, its parameter held in one of the ways users write: a list of (name, array)
    pairs, a params() method, a namespace, a nested dict, a list under one name, or plain
    attributes with ``dW`` beside ``W``. ``factor`` 2 makes dW wrong (found by an adversarial
    helper: every one of them passed, the parameter skipped without a word)."""

    def __init__(self, held: str, factor: float) -> None:
        self.W = np.random.default_rng(0).standard_normal((3, 2))
        self.held, self.factor = held, factor
        if held == "pairs":
            self.params = [("W", self.W)]
        elif held == "namespace":
            self.params = types.SimpleNamespace(W=self.W)
        elif held == "nested":
            self.params = {"dense": {"W": self.W}}
        elif held == "list-under-a-name":
            self.params = {"Ws": [self.W]}
        elif held == "dict-under-another-name":
            self.weights = {"W": self.W}
        elif held == "method":
            self.params = lambda: {"W": self.W}

    def forward(self, x):
        self.x = x
        return x @ self.W

    def backward(self, dy):
        self.dW = self.factor * self.x.T @ dy
        if self.held == "dict-under-another-name":
            self.gradients = {"W": self.dW}
        return dy @ self.W.T


@pytest.mark.parametrize("held", ["pairs", "namespace", "nested", "list-under-a-name", "method"])
def test_parameters_the_check_cannot_name_are_an_error_not_skipped(held):
    for factor in (2.0, 1.0):
        result = check_layer(_ParamsHeldAs(held, factor), x_of((4, 3)))
        assert result.status == "error", result.explain()
        assert "so none was checked" in message(result, "params-not-a-mapping")


@pytest.mark.parametrize("held", ["attributes", "dict-under-another-name"])
def test_parameters_held_elsewhere_than_params_are_a_warning(held):
    for factor in (2.0, 1.0):
        result = check_layer(_ParamsHeldAs(held, factor), x_of((4, 3)))
        assert result.status == "pass", result.explain()
        found = message(result, "params-unnamed")
        assert ("arrays W" if held == "attributes" else "weights['W']") in found


def test_a_plain_layer_without_parameters_gets_no_params_warning():
    class Tanh:
        def forward(self, x):
            self.x = x
            self.y = np.tanh(x)
            return self.y

        def backward(self, dy):
            # The cached input and output beside their gradients: no parameters.
            self.dy = dy
            self.dx = dy * (1 - self.y**2)
            return self.dx

    result = check_layer(Tanh(), x_of((4, 3)))
    assert result.status == "pass" and "params-unnamed" not in codes(result), result.explain()


def test_a_loss_of_shape_1_is_told_how_to_return_a_scalar():
    class Loss:
        is_loss = True

        def forward(self, x, target):
            self.x = x
            return np.array([np.sum(x**2)])

        def backward(self):
            return 2 * self.x

    result = check_layer(Loss(), x_of((4, 3)))
    assert result.status == "error"
    assert "return float(loss)" in message(result, "forward-shape")


# -- parameters checked at their initial values -----------------------------------------------


class _RMSNorm:
    """RMS normalisation times ``gamma``, initialised to ones; ``forget_gamma`` leaves gamma
    out of dx (found by an adversarial helper: right while gamma is 1, a warning only)."""

    def __init__(self, forget_gamma: bool, d: int = 4) -> None:
        self.forget_gamma = forget_gamma
        self.params = {"gamma": np.ones(d)}
        self.grads: dict = {}

    def forward(self, x):
        self.inv = 1.0 / np.sqrt((x * x).mean(1, keepdims=True) + 1e-6)
        self.xhat = x * self.inv
        return self.params["gamma"] * self.xhat

    def backward(self, dy):
        self.grads = {"gamma": (dy * self.xhat).sum(0)}
        g = dy if self.forget_gamma else dy * self.params["gamma"]
        return self.inv * (g - self.xhat * (g * self.xhat).mean(1, keepdims=True))


class _DenseReLU:
    """``relu(x W + b)`` with ``b`` initialised to zeros; ``pre_bias_mask`` takes the mask from
    ``x W`` (found by an adversarial helper: right while b is 0, and no finding at all)."""

    def __init__(self, pre_bias_mask: bool) -> None:
        self.pre_bias_mask = pre_bias_mask
        rng = np.random.default_rng(1)
        self.params = {"W": rng.standard_normal((4, 5)) / 2.0, "b": np.zeros(5)}
        self.grads: dict = {}

    def forward(self, x):
        self.x = x
        self.h = x @ self.params["W"]
        self.z = self.h + self.params["b"]
        return np.maximum(self.z, 0.0)

    def backward(self, dy):
        dz = dy * ((self.h if self.pre_bias_mask else self.z) > 0)
        self.grads = {"W": self.x.T @ dz, "b": dz.sum(0)}
        return dz @ self.params["W"].T


class _Mix:
    """``y = x W`` with ``W`` initialised to the identity; ``drop_w`` returns ``dx = dy``."""

    def __init__(self, drop_w: bool) -> None:
        self.drop_w = drop_w
        self.params = {"W": np.eye(4)}
        self.grads: dict = {}

    def forward(self, x):
        self.x = x
        return np.tanh(x) @ self.params["W"]

    def backward(self, dy):
        t = np.tanh(self.x)
        self.grads = {"W": t.T @ dy}
        dt = dy if self.drop_w else dy @ self.params["W"].T
        return dt * (1.0 - t**2)


@pytest.mark.parametrize("mode", ["auto", "full"])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("make", [_RMSNorm, _DenseReLU, _Mix], ids=["gamma", "bias", "identity"])
def test_a_backward_right_only_at_the_initial_parameters_fails_after_a_step(make, seed, mode):
    x = np.random.default_rng(seed).standard_normal((8, 4))
    wrong = check_layer(make(True), x, seed=seed, mode=mode)
    assert wrong.status == "fail", wrong.explain()
    assert "after one gradient step" in message(wrong, "wrong-after-a-step")
    right = check_layer(make(False), x, seed=seed, mode=mode)
    assert right.status == "pass", right.explain()
    assert "wrong-after-a-step" not in codes(right), right.explain()


class _RowMeanTanh:
    """``tanh``; ``mean_dy`` returns ``mean(dy over the row) (1 - y^2)``: linear in dy, right
    for a dy constant along rows (found by an adversarial helper: with ``dy=np.ones`` it
    passed in every mode)."""

    def __init__(self, mean_dy: bool) -> None:
        self.mean_dy = mean_dy

    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, dy):
        if self.mean_dy:
            dy = np.broadcast_to(dy.mean(axis=1, keepdims=True), dy.shape)
        return dy * (1.0 - self.y**2)


@pytest.mark.parametrize("mode", ["auto", "full"])
@pytest.mark.parametrize("dy_kind", ["ones", "row-constant"])
def test_a_backward_right_only_for_the_dy_given_fails(mode, dy_kind):
    x = x_of((6, 4))
    dy = np.ones(x.shape) if dy_kind == "ones" else np.arange(6.0)[:, None] * np.ones((1, 4))
    wrong = check_layer(_RowMeanTanh(True), x, dy=dy, mode=mode)
    assert wrong.status == "fail", wrong.explain()
    assert "not for another" in message(wrong, "wrong-for-other-dy")
    right = check_layer(_RowMeanTanh(False), x, dy=dy, mode=mode)
    assert right.status == "pass", right.explain()


# -- found by the second adversarial helper of 2026-12-02 (afternoon) ---------------------------


class _Softmax:
    """Row softmax; ``mean_dy`` is the backward ``y (dy - mean(dy))``, which forgets the
    weighting by y: right (as exact 0) for a dy of ones."""

    def __init__(self, mean_dy: bool = False) -> None:
        self.mean_dy = mean_dy

    def forward(self, x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        self.y = e / e.sum(axis=1, keepdims=True)
        return self.y

    def backward(self, dy):
        if self.mean_dy:
            return self.y * (dy - dy.mean(axis=1, keepdims=True))
        return self.y * (dy - (dy * self.y).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("scale", [1e-4, 1e-7, 1e-10])
def test_a_small_dy_given_does_not_make_right_layers_inconclusive(scale):
    # The linearity check's dy2 was standard normal whatever the dy: its rounding, that of
    # gradients 1e7 times larger, became the error bar of gradients of dy's size.
    x = x_of((8, 4))
    dy = scale * np.random.default_rng(5).standard_normal((8, 4))
    for layer in (_Softmax(), _RowMeanTanh(False)):
        result = check_layer(layer, x, dy=dy)
        assert result.status == "pass", result.explain()


def test_a_softmax_backward_right_only_for_a_dy_of_ones_fails():
    # The gradient for a dy of ones is exactly 0, so the estimate there is unresolved: the
    # other dy's disagreement stands on its own.
    x = x_of((8, 4))
    wrong = check_layer(_Softmax(mean_dy=True), x, dy=np.ones((8, 4)))
    assert wrong.status == "fail" and "wrong-for-other-dy" in codes(wrong), wrong.explain()
    assert check_layer(_Softmax(), x, dy=np.ones((8, 4))).status != "fail"


class _Scale:
    """``y = tanh(x) * g``; ``g`` read-only (frozen) and also held as ``self.g``, which the
    backward reads (found by the helper: a fail of the step check, which rebound it)."""

    def __init__(self, g):
        g = np.array(g, dtype=float)
        g.flags.writeable = False
        self.g = g
        self.params = {"g": g}

    def forward(self, x):
        self.t = np.tanh(x)
        return self.t * self.params["g"]

    def backward(self, dy):
        self.grads = {"g": (dy * self.t).sum(0)}
        return dy * self.g * (1.0 - self.t**2)


@pytest.mark.parametrize("g", [np.ones(4), [0.5, 1.5, -2.0, 3.0]], ids=["ones", "random"])
def test_a_read_only_parameter_also_held_as_an_attribute_is_not_failed(g):
    # The step check rebound read-only parameters, which the backward's own reference to the
    # array did not see: a false fail. Only parameters writable in place are stepped now.
    for seed in range(3):
        result = check_layer(_Scale(g), x_of((8, 4)), seed=seed)
        assert result.status == "pass", result.explain()


class _Diagonal:
    """``y = tanh(x) @ W`` with ``W`` diagonal; ``transpose_bug`` returns ``dt = dy @ W``."""

    def __init__(self, transpose_bug: bool) -> None:
        self.transpose_bug = transpose_bug
        self.params = {"W": np.diag([0.5, 1.5, -2.0, 3.0])}

    def forward(self, x):
        self.t = np.tanh(x)
        return self.t @ self.params["W"]

    def backward(self, dy):
        self.grads = {"W": self.t.T @ dy}
        W = self.params["W"]
        return (dy @ (W if self.transpose_bug else W.T)) * (1.0 - self.t**2)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_diagonal_weight_hiding_a_missing_transpose_fails_after_a_step(seed):
    x = x_of((8, 4), seed=seed)
    wrong = check_layer(_Diagonal(True), x, seed=seed)
    assert wrong.status == "fail" and "wrong-after-a-step" in codes(wrong), wrong.explain()
    assert check_layer(_Diagonal(False), x, seed=seed).status == "pass"


class _StagedStandardize:
    """Standardization with cs231n-style intermediates kept beside their adjoints (``xc`` and
    ``dxc``, ``std`` and ``dstd``): no parameters, so no params-unnamed warning."""

    def forward(self, x):
        self.xc = x - x.mean(0)
        self.std = np.sqrt((self.xc**2).mean(0) + 1e-5)
        self.out = self.xc / self.std
        return self.out

    def backward(self, dy):
        n = dy.shape[0]
        self.dstd = -(dy * self.xc).sum(0) / self.std**2
        self.dxc = dy / self.std + self.dstd * self.xc / (n * self.std)
        return self.dxc - self.dxc.mean(0)


class _Dense:
    def __init__(self, n_in, n_out, seed, factor=1.0):
        self.W = np.random.default_rng(seed).standard_normal((n_in, n_out))
        self.factor = factor

    def forward(self, x):
        self.x = x
        return x @ self.W

    def backward(self, dy):
        self.dW = self.factor * self.x.T @ dy
        return dy @ self.W.T


class _Net:
    """Two dense layers in a list, without params (found by the helper: a halved dW passed
    with no word)."""

    def __init__(self, factor=1.0):
        self.layers = [_Dense(3, 4, 0, factor), _Dense(4, 2, 1)]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy


def test_unnamed_parameters_are_told_apart_from_intermediates_and_found_in_sub_layers():
    staged = check_layer(_StagedStandardize(), x_of((8, 4)))
    assert staged.status == "pass" and "params-unnamed" not in codes(staged), staged.explain()
    for factor in (0.5, 1.0):
        net = check_layer(_Net(factor), x_of((5, 3)))
        assert net.status == "pass", net.explain()
        assert "layers[0].W, layers[1].W" in message(net, "params-unnamed")


def test_a_parameter_left_none_is_skipped_and_a_string_is_an_error():
    class NoBias:
        def __init__(self, value):
            self.params = {"W": np.eye(3) + 0.1, "b": value}

        def forward(self, x):
            self.x = x
            return x @ self.params["W"]

        def backward(self, dy):
            self.grads = {"W": self.x.T @ dy, "b": None}
            return dy @ self.params["W"].T

    left_out = check_layer(NoBias(None), x_of((5, 3)))
    assert left_out.status == "pass" and not left_out.findings, left_out.explain()
    named = check_layer(NoBias("none"), x_of((5, 3)))
    assert named.status == "error" and "is a str" in message(named, "params-not-a-mapping")


def test_ragged_inputs_and_outputs_are_an_error_verdict_not_a_crash():
    # Found by an adversarial helper: a tuple (q, k) of different shapes as x, and a forward
    # returning (x @ W, x.sum(1)), raised NumPy's ValueError out of check_layer.
    class Attend:
        def forward(self, qk):
            self.q, self.k = qk
            return self.q @ self.k.T

        def backward(self, dy):
            return dy @ self.k, dy.T @ self.q

    class TwoOutputs:
        def forward(self, x):
            return x * 2.0, x.sum(1)

        def backward(self, dys):
            return 2.0 * dys[0] + dys[1][:, None]

    ragged_in = check_layer(Attend(), (x_of((4, 3)), x_of((5, 3))))
    assert ragged_in.status == "error"
    assert "shapes (4, 3), (5, 3)" in message(ragged_in, "x-shape")
    ragged_out = check_layer(TwoOutputs(), x_of((5, 4)))
    assert ragged_out.status == "error"
    assert "shapes (5, 4), (5,)" in message(ragged_out, "forward-shape")


class _StaleDense:
    """``x W + b``; dW from the first forward's x only (a stale cache), db = dy.sum(0), which
    is the same at every input without being stale."""

    def __init__(self) -> None:
        self.params = {"W": np.random.default_rng(2).standard_normal((4, 3)), "b": np.ones(3)}
        self.first = None

    def forward(self, x):
        self.first = x if self.first is None else self.first
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dy):
        self.grads = {"W": self.first.T @ dy, "b": dy.sum(0)}
        return dy @ self.params["W"].T


def test_a_stale_cache_names_only_the_gradients_that_are_wrong():
    # Found by the adversarial helpers: db = dy.sum(0) is bitwise the same at x'' and was
    # named as stale beside the gradient that was.
    result = check_layer(_StaleDense(), x_of((6, 4)))
    assert result.status == "fail", result.explain()
    found = message(result, "stale-cache")
    assert "grads['W']" in found and "grads['b']" not in found, found


class _TanhOfShiftedX:
    """``tanh(x + b)`` with the bias held as ``param_shape``; ``grad_of_b`` makes ``grads['b']``
    from the backward's ``dz`` (N, D), in whatever shape the author wrote."""

    def __init__(self, param_shape: tuple, grad_of_b: Any) -> None:
        self.params = {"b": np.linspace(-1.0, 1.0, 4).reshape(param_shape)}
        self.grads: Dict[str, Any] = {}
        self.grad_of_b = grad_of_b

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.y = np.tanh(x + self.params["b"])
        return self.y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        dz = dy * (1.0 - self.y**2)
        self.grads["b"] = self.grad_of_b(dz)
        return dz


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_bias_gradient_that_broadcasts_onto_its_parameter_is_checked_with_a_warning(mode):
    # A bias held as (1, D) with dy.sum(0) of shape (D,): `b -= lr * g` works the same, so the
    # values are checked (a wrong last entry fails) and the shape is a warning, not an error.
    x = np.random.default_rng(0).standard_normal((8, 4))
    right = check_layer(_TanhOfShiftedX((1, 4), lambda dz: dz.sum(0)), x, seed=0, mode=mode)
    assert right.status == "pass", right.reason
    assert "grad-shape-broadcast" in {f.code for f in right.findings}
    wrong = _TanhOfShiftedX((1, 4), lambda dz: np.r_[dz.sum(0)[:3], 0.0])
    failed = check_layer(wrong, x, seed=0, mode=mode)
    assert failed.status == "fail" and "b[0, 3]" in (failed.reason or "")


@pytest.mark.parametrize(
    "param_shape, grad_of_b",
    [
        ((4,), lambda dz: dz.sum(0, keepdims=True)),  # `b -= g` cannot grow b to (1, 4)
        ((1, 4), lambda dz: dz.sum(0)[:, None]),  # (4, 1) would broadcast b to (4, 4)
    ],
)
def test_bias_gradient_that_does_not_broadcast_onto_its_parameter_is_an_error(
    param_shape, grad_of_b
):
    x = np.random.default_rng(0).standard_normal((8, 4))
    result = check_layer(_TanhOfShiftedX(param_shape, grad_of_b), x, seed=0)
    assert result.status == "error"
    assert "grads['b']-shape" in {f.code for f in result.findings}
