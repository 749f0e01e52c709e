"""pytest plugin (entry point ``pytest11``): the standard battery for registered layer variants.

Options
    ``--gradcheck-registered``       run the battery on every registered variant (built-ins and
                                     ``gradcheck.layers`` entry points)
    ``--gradcheck-layer REF``        run the battery on a layer class or factory, ``MODULE:ATTR``
                                     or ``'MODULE:ATTR(ARGS)'`` with constructor arguments as
                                     Python literals (repeatable)
    ``--gradcheck-shape SHAPE``      the input shapes for ``--gradcheck-layer``, any rank:
                                     ``8x4``, ``2x3x8x8`` (repeatable; default 8x3 and 16x5)
    ``--gradcheck-target SPEC``      the target of a ``--gradcheck-layer`` loss layer
                                     (``labels:C``, ``onehot:C``, ``normal:Nx1``)
    ``--gradcheck-profile NAME``     Hypothesis profile, ``ci`` (default) or ``thorough``

The battery, per variant: the gradient check in full and in auto (directional screen) mode at
each shape and two seeds, with the hygiene findings, plus a Hypothesis property that draws inputs
of the variant's kind and requires that no check fails.

Items are collected like any test, under the project's configuration file (``pyproject.toml``,
``pytest.ini``, ``tox.ini`` or ``setup.cfg``), so ``--collect-only`` lists exactly what runs,
``-k`` and ``--deselect`` work, and a listed node id selects its item::

    pytest --gradcheck-registered --collect-only -q
    pytest --gradcheck-registered 'pyproject.toml::gradcheck::zca-eigh-16x4-seed0-auto'

A failure shows the worst entries side by side and a ``gradcheck report`` command that reruns
the check. (Without a configuration file the items still run, but cannot be selected by id.)

Fixture ``gradcheck`` gives custom tests ``gradcheck.check(layer, x, ...)``,
``gradcheck.assert_passes(layer, x, ...)``, and for function pairs and value-and-gradient
functions ``gradcheck.check_functions(forward, backward, *inputs, ...)``,
``gradcheck.assert_functions_pass(...)`` and ``gradcheck.assert_value_and_grad_pass(...)``
(see :mod:`gradcheck.testing`).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Iterator, List, Optional

import pytest

from . import literals
from .battery import BATTERY_SEEDS, BatteryItem, property_test, spec_items
from .functions import check_adapted, check_functions, check_value_and_grad
from .objective import is_loss_layer
from .profiles import PROFILES, load_profile
from .registry import LayerSpec, entry_point_errors, registered_layers, spec_from_reference
from .result import CheckResult
from .targets import TargetSpec, parse_target
from .testing import (
    GradientCheckFailed,
    assert_functions_pass,
    assert_gradients_pass,
    assert_value_and_grad_pass,
)

_SPECS = pytest.StashKey[List[LayerSpec]]()
_COLLECTED = pytest.StashKey[bool]()


def _shape(text: str) -> Any:
    try:
        return literals.parse_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _target(text: str) -> TargetSpec:
    try:
        return parse_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradcheck", "gradient checks of registered layer variants")
    group.addoption(
        "--gradcheck-registered",
        action="store_true",
        help="run the standard gradient battery on every registered layer variant",
    )
    group.addoption(
        "--gradcheck-layer",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="run the standard gradient battery on this layer class or factory, with "
        "constructor arguments as literals if needed: 'mypkg:BatchNorm(4)' (repeatable)",
    )
    group.addoption(
        "--gradcheck-shape",
        action="append",
        default=[],
        type=_shape,
        metavar="SHAPE",
        help="input shape for --gradcheck-layer, any rank: 8x4, 2x3x8x8 (repeatable; "
        "default 8x3 and 16x5)",
    )
    group.addoption(
        "--gradcheck-target",
        default=None,
        type=_target,
        metavar="SPEC",
        help="target of a --gradcheck-layer loss layer: labels:C, onehot:C or normal:SHAPE",
    )
    group.addoption(
        "--gradcheck-profile",
        choices=PROFILES,
        default=None,
        help="Hypothesis profile for the gradient properties (default: $HYPOTHESIS_PROFILE or ci)",
    )


def _selected_specs(config: pytest.Config) -> List[LayerSpec]:
    """The variants the options select; a ``pytest.UsageError`` for a reference that does not
    name a layer (raised while pytest configures, so the run stops with a usage error)."""
    specs: List[LayerSpec] = []
    if config.getoption("--gradcheck-registered"):
        specs.extend(registered_layers())
    # Once each, in the order given: a repeated shape would repeat its items' ids.
    shapes = list(dict.fromkeys(config.getoption("--gradcheck-shape"))) or None
    target = config.getoption("--gradcheck-target")
    for ref in config.getoption("--gradcheck-layer"):
        try:
            spec = spec_from_reference(ref, "--gradcheck-layer", target, shapes)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from exc
        try:
            layer = spec.factory()
        except Exception:
            layer = None  # its items will report the error
        if layer is not None and not (hasattr(layer, "forward") and hasattr(layer, "backward")):
            raise pytest.UsageError(
                f"--gradcheck-layer {ref}: it returned {type(layer).__name__}, which has no "
                "forward/backward"
            )
        if layer is not None and not is_loss_layer(layer):
            spec = dataclasses.replace(spec, target=None)  # a target is for loss layers only
        specs.append(spec)
    return specs


def pytest_configure(config: pytest.Config) -> None:
    profile = config.getoption("--gradcheck-profile", default=None)
    if profile is not None:
        load_profile(profile)
    config.addinivalue_line("markers", "gradcheck: a check of the standard gradient battery")
    config.stash[_COLLECTED] = False
    config.stash[_SPECS] = _selected_specs(config)


def _active(config: pytest.Config) -> bool:
    return bool(config.stash.get(_SPECS, None)) or bool(
        config.getoption("--gradcheck-registered", default=False)
    )


def _anchor(config: pytest.Config) -> Path:
    """The file the items are collected under: the configuration file, whose path pytest can
    resolve in a node id (the root folder's conftest.py without one)."""
    if config.inipath is not None:
        return Path(config.inipath)
    return Path(config.rootpath) / "conftest.py"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Optional[pytest.Collector]:
    config = parent.config
    if _active(config) and file_path == _anchor(config):
        return GradcheckFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: List[pytest.Item]
) -> None:
    # The configuration file is not among the collected paths (testpaths = tests, say): collect
    # the items here, before -k and --deselect apply, through the session so that every item is
    # counted in "collected N items".
    if _active(config) and not config.stash.get(_COLLECTED, False):
        anchor = GradcheckFile.from_parent(session, path=_anchor(config))
        items.extend(session.genitems(anchor))


class GradcheckFile(pytest.File):
    """The configuration file, as the parent of the battery's items."""

    def collect(self) -> Iterator[pytest.Collector]:
        self.config.stash[_COLLECTED] = True
        yield GradcheckGroup.from_parent(self, name="gradcheck")


class GradcheckGroup(pytest.Collector):
    """Every battery item, property and broken entry point, named ``gradcheck::...``."""

    def collect(self) -> Iterator[pytest.Item]:
        for spec in self.config.stash.get(_SPECS, []):
            for item in spec_items(spec, seeds=BATTERY_SEEDS):
                yield GradcheckItem.from_parent(self, name=item.id, battery_item=item)
            yield GradcheckPropertyItem.from_parent(self, name=f"{spec.name}-property", spec=spec)
        if self.config.getoption("--gradcheck-registered"):
            for name, error in entry_point_errors():
                yield EntryPointItem.from_parent(
                    self,
                    name=f"entry-point-{name.split(' ')[0]}",
                    entry_point=name,
                    error=error,
                )


class GradcheckItem(pytest.Item):
    """One check of the battery (a variant at a shape, seed and mode)."""

    def __init__(self, *, battery_item: BatteryItem, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.battery_item = battery_item
        self.add_marker("gradcheck")

    def runtest(self) -> None:
        __tracebackhide__ = True
        result = self.battery_item.run()
        if result.status != "pass":
            raise GradientCheckFailed(result)

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Optional[str] = None
    ) -> Any:
        return _failure_text(excinfo) or super().repr_failure(excinfo)

    def reportinfo(self) -> Any:
        return self.path, None, f"gradcheck {self.battery_item.id}"


class GradcheckPropertyItem(pytest.Item):
    """A Hypothesis property for one variant: no drawn input makes its check fail."""

    def __init__(self, *, spec: LayerSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.add_marker("gradcheck")

    def runtest(self) -> None:
        __tracebackhide__ = True
        property_test(self.spec)()

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Optional[str] = None
    ) -> Any:
        return _failure_text(excinfo) or super().repr_failure(excinfo)

    def reportinfo(self) -> Any:
        return self.path, None, f"gradcheck property {self.spec.name}"


class EntryPointItem(pytest.Item):
    """A ``gradcheck.layers`` entry point that failed to load: reported by name, as a failure."""

    def __init__(self, *, entry_point: str, error: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entry_point = entry_point
        self.error = error

    def runtest(self) -> None:
        __tracebackhide__ = True
        raise EntryPointBroken(f"entry point {self.entry_point} failed to load: {self.error}")

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Optional[str] = None
    ) -> Any:
        return str(excinfo.value)

    def reportinfo(self) -> Any:
        return self.path, None, f"gradcheck entry point {self.entry_point}"


class EntryPointBroken(Exception):
    pass


def _failure_text(excinfo: pytest.ExceptionInfo[BaseException]) -> Optional[str]:
    """A gradient failure as the harness explains it, with Hypothesis's falsifying example."""
    if not isinstance(excinfo.value, GradientCheckFailed):
        return None
    notes = getattr(excinfo.value, "__notes__", [])
    return "\n".join([str(excinfo.value), *notes])


class GradcheckFixture:
    """What the ``gradcheck`` fixture gives a test: checks that return a
    :class:`~gradcheck.result.CheckResult` and assertions that raise
    :class:`~gradcheck.testing.GradientCheckFailed` with the side-by-side explanation."""

    def check(self, layer: Any, x: Any, **kwargs: Any) -> CheckResult:
        """:func:`gradcheck.check_layer`, with the layer's file and line when it raises."""
        return check_adapted(layer, x, **kwargs)

    def assert_passes(self, layer: Any, x: Any, **kwargs: Any) -> CheckResult:
        __tracebackhide__ = True
        return assert_gradients_pass(layer, x, **kwargs)

    def check_functions(self, forward: Any, backward: Any, *inputs: Any, **kwargs: Any) -> Any:
        """:func:`gradcheck.check_functions`: ``out, cache = forward(*inputs)``,
        ``backward(dout, cache)``."""
        return check_functions(forward, backward, *inputs, **kwargs)

    def check_value_and_grad(self, fun: Any, *inputs: Any, **kwargs: Any) -> CheckResult:
        """:func:`gradcheck.check_value_and_grad`: ``value, grad = fun(*inputs)``."""
        return check_value_and_grad(fun, *inputs, **kwargs)

    def assert_functions_pass(
        self, forward: Any, backward: Any, *inputs: Any, **kwargs: Any
    ) -> CheckResult:
        __tracebackhide__ = True
        return assert_functions_pass(forward, backward, *inputs, **kwargs)

    def assert_value_and_grad_pass(self, fun: Any, *inputs: Any, **kwargs: Any) -> CheckResult:
        __tracebackhide__ = True
        return assert_value_and_grad_pass(fun, *inputs, **kwargs)


@pytest.fixture
def gradcheck() -> GradcheckFixture:
    """Gradient checks inside a test: ``gradcheck.assert_passes(layer, x, seed=0)``, or for a
    function pair ``gradcheck.assert_functions_pass(affine_forward, affine_backward, x, w, b)``."""
    return GradcheckFixture()
