"""The standard battery: the checks every registered layer variant must pass.

For each shape and seed of a variant: the default check (directional screen, then full mode
where it does not pass) and the full-mode check of every entry. Every check includes the
hygiene findings (no mutation of arguments, a repeatable backward, linearity in ``dy``). The
pytest plugin turns each item into a test; ``gradcheck mutants`` runs the same items against
deliberately wrong layers to prove that the battery catches them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

from .functions import check_adapted
from .literals import format_shape
from .options import CheckOptions
from .registry import LayerSpec, make_input
from .result import CheckResult
from .runner import RunOptions, reproduce_command
from .targets import draw_target
from .testing import GradientCheckFailed

BATTERY_SEEDS: Tuple[int, ...] = (0, 1)
BATTERY_MODES: Tuple[str, ...] = ("auto", "full")


@dataclass(frozen=True)
class BatteryItem:
    """One check of the battery: a variant at a shape (any rank), seed and mode.

    With ``spec``, the input (and a loss layer's target) are drawn as the report draws them
    (:meth:`gradcheck.registry.LayerSpec.draw`) and the reproduce command names the variant as
    the report takes it: ``--only NAME`` for a registered one, ``--layer REF`` for a reference.
    """

    name: str
    factory: Callable[[], Any]
    input: str
    shape: Tuple[int, ...]
    seed: int
    mode: str
    rtol: Optional[float] = None
    atol: Optional[float] = None
    spec: Optional[LayerSpec] = None

    @property
    def id(self) -> str:
        """A readable pytest id, e.g. ``zca-eigh-16x4-seed0-auto``."""
        return f"{self.name}-{format_shape(self.shape)}-seed{self.seed}-{self.mode}"

    @property
    def options(self) -> CheckOptions:
        """The options of this check: its mode and tolerances, the rest at their defaults."""
        return CheckOptions(mode=self.mode, rtol=self.rtol, atol=self.atol)

    def reproduce(self) -> str:
        """A ``gradcheck report`` command that runs this check (the report applies a
        variant's own tolerances itself)."""
        if self.spec is None:
            spec = LayerSpec(self.name, self.factory)
        else:
            spec = dataclasses.replace(self.spec, name=self.name)
        mode = "full" if self.mode == "full" else "auto"
        return reproduce_command(spec, self.shape, self.seed, RunOptions(mode=mode))

    def run(self) -> CheckResult:
        layer = self.factory()
        if self.spec is not None:
            x, target = self.spec.draw(layer, self.shape, self.seed)
        else:
            x, target = make_input(self.input, self.shape, self.seed), None
        result = check_adapted(
            layer, x, target=target, seed=self.seed, **self.options.check_keywords()
        )
        result.layer = self.name
        result.reproduce = self.reproduce()
        return result


def battery_items(
    name: str,
    factory: Callable[[], Any],
    *,
    input: str = "matrix",
    shapes: Iterable[Sequence[int]],
    seeds: Sequence[int] = BATTERY_SEEDS,
    modes: Sequence[str] = BATTERY_MODES,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    spec: Optional[LayerSpec] = None,
) -> List[BatteryItem]:
    """The battery's items for one variant, shapes x seeds x modes."""
    return [
        BatteryItem(name, factory, input, tuple(shape), seed, mode, rtol, atol, spec)
        for shape in shapes
        for seed in seeds
        for mode in modes
    ]


def spec_items(spec: LayerSpec, **kwargs: Any) -> List[BatteryItem]:
    """The battery's items for a registered variant."""
    return battery_items(
        spec.name,
        spec.build,
        input=spec.input,
        shapes=spec.shapes,
        rtol=spec.rtol,
        atol=spec.atol,
        spec=spec,
        **kwargs,
    )


def property_test(spec: LayerSpec) -> Callable[[], None]:
    """A Hypothesis property for ``spec``: on every drawn input, its check does not fail.

    Inputs of the variant's kind: for ``"matrix"``, batches with bounded entries of one of the
    registered shapes but the batch size, ``N`` from ``min_n`` to the largest registered ``N``
    (``N x D``, or ``N x C x H x W`` for a layer registered at such shapes); a loss layer's
    target is drawn from the check's seed as its spec says; for ``"logits"``, logits up to 1e3
    in magnitude with labels; for ``"distinct-spectrum"``, batches whose covariance eigenvalues
    are at least 1% apart (condition number up to 1e3;
    :func:`gradcheck.strategies.batches_with_spectrum`). The check's own seed (its ``dy`` and
    directions) is drawn too. An inconclusive result is allowed (the estimate may be unable to
    resolve, at a kink say); ``fail`` and ``error`` are not.
    """
    # Hypothesis (and hypothesis.extra.numpy, behind gradcheck.strategies) is imported when a
    # property is built, not with this module: the pytest plugin imports the battery in every
    # pytest session it is loaded in, most of which run no property.
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    from . import strategies as gst

    max_n = max(s[0] for s in spec.shapes)
    dims = sorted({s[-1] for s in spec.shapes})
    widths = sorted({tuple(s[1:]) for s in spec.shapes})
    inputs: st.SearchStrategy[Tuple[Any, Any]]
    if spec.input == "logits":
        inputs = gst.logits_and_labels(max_n=max_n, max_c=max(dims))
    elif spec.input == "distinct-spectrum":
        inputs = (
            st.sampled_from(dims)
            .flatmap(
                lambda d: gst.batches_with_spectrum(
                    d=d, min_gap=1e-2, cond_max=1e3, max_n=max(max_n, d + 1), max_d=d
                )
            )
            .map(lambda batch: (batch.x, None))
        )
    else:
        n = st.integers(spec.min_n, max(spec.min_n, max_n))
        shape = st.sampled_from(widths).flatmap(lambda rest: n.map(lambda k: (k, *rest)))
        inputs = gst.matrices(shape).map(lambda x: (x, None))

    # No deadline whatever profile is active (a user's project may keep Hypothesis's default of
    # 200 ms): a check's duration depends on the layer and the machine's load, never its verdict.
    # No explain phase either: after shrinking, it re-ran the check some 200 times (35 to 65 s
    # for a 6x4 layer) only to say which drawn values did not matter, which the failure's own
    # report (the shrunk input's shape and seed, the wrong entries) already makes plain.
    phases = tuple(p for p in settings().phases if p is not Phase.explain)

    @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], phases=phases)
    @given(inputs=inputs, seed=st.integers(0, 2**16))
    def prop(inputs: Tuple[Any, Any], seed: int) -> None:
        x, target = inputs
        if target is None and spec.target is not None:
            target = draw_target(spec.target, x.shape, seed)
        result = check_adapted(
            spec.build(), x, target=target, seed=seed, rtol=spec.rtol, atol=spec.atol
        )
        if result.status in ("fail", "error"):
            raise GradientCheckFailed(result)

    return prop  # type: ignore[no-any-return]
