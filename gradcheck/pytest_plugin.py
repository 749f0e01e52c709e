"""pytest plugin (entry point ``pytest11``): the standard battery for registered layer variants.

Options
    ``--gradcheck-registered``    run the battery on every registered variant (built-ins and
                                  ``gradcheck.layers`` entry points)
    ``--gradcheck-layer M:ATTR``  run the battery on a layer class or factory (repeatable)
    ``--gradcheck-profile NAME``  Hypothesis profile, ``ci`` (default) or ``thorough``

The battery, per variant: the gradient check in full and in auto (directional screen) mode at
each registered shape and two seeds, with the hygiene findings, plus a Hypothesis property that
draws inputs of the variant's kind and requires that no check fails. Items have readable ids
such as ``gradcheck::zca-eigh-16x4-seed0-auto`` and run under pytest-xdist like any test.

Fixture ``gradcheck`` gives custom tests ``gradcheck.check(layer, x, ...)`` and
``gradcheck.assert_passes(layer, x, ...)`` (see :mod:`gradcheck.testing`).
"""

from __future__ import annotations

from typing import Any, Iterator, List, Optional

import pytest

from .battery import BATTERY_SEEDS, BatteryItem, spec_items
from .profiles import PROFILES, load_profile
from .registry import LayerSpec, entry_point_errors, registered_layers, resolve_reference


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
        help="run the standard gradient battery on this layer class or factory (repeatable)",
    )
    group.addoption(
        "--gradcheck-profile",
        choices=PROFILES,
        default=None,
        help="Hypothesis profile for the gradient properties (default: $HYPOTHESIS_PROFILE or ci)",
    )


def pytest_configure(config: pytest.Config) -> None:
    profile = config.getoption("--gradcheck-profile", default=None)
    if profile is not None:
        load_profile(profile)
    config.addinivalue_line("markers", "gradcheck: a check of the standard gradient battery")


class GradcheckItem(pytest.Item):
    """One check of the battery (a variant at a shape, seed and mode)."""

    def __init__(self, *, battery_item: BatteryItem, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.battery_item = battery_item
        self.add_marker("gradcheck")

    def runtest(self) -> None:
        from .testing import GradientCheckFailed

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
        from .battery import property_test

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
    from .testing import GradientCheckFailed

    if not isinstance(excinfo.value, GradientCheckFailed):
        return None
    notes = getattr(excinfo.value, "__notes__", [])
    return "\n".join([str(excinfo.value), *notes])


def _selected_specs(config: pytest.Config) -> List[LayerSpec]:
    specs: List[LayerSpec] = []
    if config.getoption("--gradcheck-registered"):
        specs.extend(registered_layers())
    for ref in config.getoption("--gradcheck-layer"):
        try:
            factory = resolve_reference(ref)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from exc
        kind = "logits" if getattr(factory(), "is_loss", False) else "matrix"
        specs.append(LayerSpec(name=ref, factory=factory, input=kind, source="--gradcheck-layer"))
    return specs


def _items(session: pytest.Session, specs: List[LayerSpec]) -> Iterator[pytest.Item]:
    for spec in specs:
        for item in spec_items(spec, seeds=BATTERY_SEEDS):
            yield GradcheckItem.from_parent(
                session, name=f"gradcheck::{item.id}", battery_item=item
            )
        yield GradcheckPropertyItem.from_parent(
            session, name=f"gradcheck::{spec.name}-property", spec=spec
        )


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: List[pytest.Item]
) -> None:
    specs = _selected_specs(config)
    if specs:
        items.extend(_items(session, specs))
    if config.getoption("--gradcheck-registered"):
        for name, error in entry_point_errors():
            items.append(
                EntryPointItem.from_parent(
                    session,
                    name=f"gradcheck::entry-point::{name.split(' ')[0]}",
                    entry_point=name,
                    error=error,
                )
            )


class GradcheckFixture:
    """What the ``gradcheck`` fixture gives a test."""

    def check(self, layer: Any, x: Any, **kwargs: Any) -> Any:
        from .check import check_layer

        return check_layer(layer, x, **kwargs)

    def assert_passes(self, layer: Any, x: Any, **kwargs: Any) -> Any:
        from .testing import assert_gradients_pass

        return assert_gradients_pass(layer, x, **kwargs)


@pytest.fixture
def gradcheck() -> GradcheckFixture:
    """Gradient checks inside a test: ``gradcheck.assert_passes(layer, x, seed=0)``."""
    return GradcheckFixture()
