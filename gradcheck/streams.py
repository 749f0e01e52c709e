"""The harness's own random streams: one per purpose, all of them apart from the user's.

Every random draw the harness makes (upstream gradients, directions, labels, nearby inputs)
comes from :func:`harness_rng` for the check's seed and one of the purposes below, never from
``np.random.default_rng(seed)``, the stream a user (and :func:`gradcheck.registry.make_input`)
draws the input ``x`` from. The purposes are listed here, in one place, so that two draws share
a stream only where that is meant: a study that draws from a check's stream for the same seed
(the step-size study, the paper's gap study) studies the very objective the check
differentiates.

Tier 0: NumPy only.
"""

from __future__ import annotations

import numpy as np

# Key mixed into every seed so the harness's draws (dy, directions, labels) never coincide with
# a user's ``np.random.default_rng(seed)`` draws of ``x``: with the same seed and shape, ``dy``
# would otherwise equal the standard-normal part of ``x``, a special case that hides errors.
HARNESS_KEY = 0x6A7C_2B1D

#: The upstream gradient ``dy`` of a check, standard normal of the forward output's shape
#: (:func:`gradcheck.check_layer`); the step-size study (:mod:`gradcheck.plot`) and the paper's
#: gap study draw their ``dy`` from it too.
PURPOSE_DY = 1
#: A loss layer's default labels when ``check_layer`` is given no target: integers ``(N,)`` in
#: ``[0, C)``; the step-size study draws a loss layer's labels from it too.
PURPOSE_DEFAULT_LABELS = 2
#: The second upstream gradient ``dy2`` of the linearity check, standard normal like ``dy``.
PURPOSE_DY2 = 3
#: The one Gaussian direction of the complex-step trial (is the forward holomorphic in an
#: argument?), of that argument's shape.
PURPOSE_COMPLEX_TRIAL = 4
#: The factors ``1 + 1e-3 z`` (``z`` standard normal) of the nearby input ``x'`` of the
#: stale-cache check.
PURPOSE_STALE_CACHE = 5
#: The factors of the nearby inputs of the batch-support check (one or two inputs).
PURPOSE_BATCH_PROBE = 6
#: The fresh-cache check's input ``x''`` (the moves of its entries, of the input's shape), then
#: the one Gaussian direction through the input and the parameters along which it estimates the
#: gradient at ``x''`` (one draw per entry of each, in the order x, then the parameters by key).
PURPOSE_FRESH_CACHE = 7
#: The factors ``1 + 1e-3 z`` of each parameter's nearby value in the reach probe (does the
#: estimate's perturbation of ``params[key]`` move any output?), one parameter after another
#: in sorted key order.
PURPOSE_PARAM_REACH = 8
#: The Gaussian directions of the directional screen: ``PURPOSE_DIRECTIONS + 0`` for the input
#: ``x``, ``PURPOSE_DIRECTIONS + 1 + k`` for the ``k``-th parameter in sorted key order (so up to
#: 989 parameters stay below :data:`PURPOSE_LOCALIZE`).
PURPOSE_DIRECTIONS = 10
#: Localization by bisection (auto mode over the budget): the block directions and the random
#: sample of entries, ``PURPOSE_LOCALIZE + 0`` for ``x``, ``+ 1 + k`` for the ``k``-th parameter.
PURPOSE_LOCALIZE = 1000
#: Targets drawn from a target spec (``labels:C``, ``onehot:C``, ``normal:SHAPE``;
#: :mod:`gradcheck.targets`), all of one check's targets one after another in order.
#:
#: The same number as ``PURPOSE_LOCALIZE + 0``: a loss layer or function checked with a spec'd
#: target whose input is localized draws both from one stream for the same seed, so the first
#: block direction repeats the target's draws (as floats, or as the bits behind the labels).
#: Localization runs only after a failed screen and only names entries; the verdict is the
#: screen's. Kept as it is: changing either number changes the numbers of existing reports.
PURPOSE_TARGET = 1000


def harness_rng(seed: int, purpose: int = 0) -> np.random.Generator:
    """The harness's own random stream for ``seed``, independent of ``default_rng(seed)``.

    ``purpose`` (one of the ``PURPOSE_*`` ids of this module) separates streams used for
    different draws (upstream gradient, directions, ...).
    """
    return np.random.default_rng(
        np.random.SeedSequence(int(seed), spawn_key=(HARNESS_KEY, purpose))
    )
