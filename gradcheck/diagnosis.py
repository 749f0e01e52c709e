"""Mistake signatures: say what kind of mistake a failing gradient contains, or say nothing.

A failing comparison gives the analytic gradient ``a`` (what backward returned), the numerical
estimate ``n`` and its error ``e`` (all the shape of the argument). Each *signature* below is a
correction ``a -> a'`` that undoes one kind of hand-derivation mistake; a signature is reported
only when ``a'`` **passes** the same comparison (:func:`gradcheck.compare.compare`, same ``rtol``
and ``atol``) that ``a`` failed. Nothing is fitted loosely and nothing is guessed: a discrepancy
no correction explains to within the estimate's error gets no diagnosis at all.

The catalogue, in the order it is tried (the first that passes is reported, so the most
specific explanation wins)::

    zero            a is exactly 0 on every failing entry           a' = a with those set to n
    scale           a = c n                                          a' = a / c
                    (c named when it is -1, 2, 1/2, N, 1/N, D, 1/D; N examples, D features)
    offset          a - n is the same along an axis                  a' = a - mean(a - n, axis)
    transpose       a = n with its axes permuted (a square matrix    a' = a permuted back
                    transposed), or backward(dy^T) = n               a' = backward(dy^T)
    swapped         a = the numeric gradient of another argument     compared with that one
                    of the same shape
    symmetric-part  the layer's backward_symmetrized(dy) passes      a' = that gradient
    rows / columns  the failing entries fill a few rows (columns)    a' = a with them set to n
    entries         the failing entries are few                      a' = a with them set to n
    rank-one        a - n = u v^T                                    a' = a - (best rank-one fit)

Degrees of freedom are guarded: a correction with as many free numbers as the array has
entries explains anything, so ``offset`` needs an axis of length >= 2, ``rank-one`` a matrix
with ``m + n - 1 <= m n / 2``, ``rows``/``columns`` at most a quarter of them, ``entries`` at most
an eighth of the entries.

The *symmetric-part hook*. A layer whose backward passes through a symmetric matrix (a
covariance ``Sigma``) may define ``backward_symmetrized(dy) -> dx``: its own backward for the
last forward, except that the gradient with respect to that matrix, ``G = dL/dSigma`` as the
backward forms it, is replaced by its symmetric part ``(G + G^T) / 2`` before the rest of the
chain uses it; parameter gradients go to ``grads`` as in ``backward``. For a correct layer (one
that symmetrizes already) it is the same as ``backward``. ``layers/paper.py`` and the ZCA mutant
of ``layers/mutants.py`` define it; see ``docs/diagnosis.md``.

:func:`diagnose` is pure (arrays in, a :class:`~gradcheck.result.Diagnosis` or ``None`` out);
:func:`diagnose_results` runs it for every failing full-mode argument of one check, after
making the cheap extra backward calls (``dy^T``, the hook) on the layer, whose state it leaves
as it found it.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .compare import compare
from .objective import is_loss_layer
from .result import ArgumentResult, Diagnosis
from .state import LayerState

Array = np.ndarray

KINDS: Tuple[str, ...] = (
    "zero",
    "scale",
    "offset",
    "transpose",
    "swapped",
    "symmetric-part",
    "rows",
    "columns",
    "entries",
    "rank-one",
)

#: The name of the hook a layer may define for the ``symmetric-part`` signature.
SYMMETRIZED_HOOK = "backward_symmetrized"

# At most this fraction of the rows (columns) or of the entries may be "a few".
_FEW_LINES = 0.25
_FEW_ENTRIES = 0.125
# Entries a message lists before it says how many more there are.
_LISTED = 6

_SCALE_HINTS: Dict[str, str] = {
    "-1": "a sign flipped?",
    "2": "a term counted twice (a symmetric derivative doubled)?",
    "1/2": "a factor 2 forgotten (half of a symmetric term)?",
    "N": "a sum where a mean belongs (the 1/N of a mean forgotten)?",
    "1/N": "a mean where a sum belongs?",
    "D": "a sum over the features where a mean belongs?",
    "1/D": "a mean over the features where a sum belongs?",
}


@dataclasses.dataclass(frozen=True)
class Judge:
    """The comparison a check made, to be repeated on corrected gradients.

    ``numeric`` and ``error`` are the estimate and its error; ``rtol``/``atol`` are the check's
    options as given (``None`` lets :func:`compare` derive its default, as the check did).
    """

    numeric: Array
    error: Array
    rtol: Optional[float]
    atol: Optional[float]

    def passes(
        self, corrected: Array, numeric: Optional[Array] = None, error: Optional[Array] = None
    ) -> bool:
        """Would ``corrected`` pass against ``numeric`` (default: this judge's estimate)?"""
        n = self.numeric if numeric is None else numeric
        e = self.error if error is None else error
        corrected = np.asarray(corrected, dtype=np.float64)
        if corrected.shape != n.shape or not np.all(np.isfinite(corrected)):
            return False
        return compare(corrected, n, e, rtol=self.rtol, atol=self.atol, n_worst=0).status == "pass"

    def failing(self, analytic: Array) -> List[Tuple[int, ...]]:
        """Indices of the entries the comparison fails, from compare's own ranking."""
        c = compare(
            analytic,
            self.numeric,
            self.error,
            rtol=self.rtol,
            atol=self.atol,
            n_worst=int(np.size(analytic)),
        )
        # compare ranks entries by how far they are beyond what they may differ by, so the
        # failed ones are the first n_failed of a complete ranking.
        return [w.index for w in c.worst[: c.n_failed]]


def _index_text(index: Sequence[int]) -> str:
    return "(" + ", ".join(str(i) for i in index) + ")"


def _listed(items: Sequence[Any], fmt: Callable[[Any], str]) -> str:
    shown = ", ".join(fmt(i) for i in items[:_LISTED])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _LISTED else "")


def _replace_entries(analytic: Array, numeric: Array, entries: Sequence[Tuple[int, ...]]) -> Array:
    out = np.array(analytic, dtype=np.float64, copy=True)
    for idx in entries:
        out[idx] = numeric[idx]
    return out


# -- the signatures, one function each; every one returns a Diagnosis only after judge.passes --


def find_zero(analytic: Array, judge: Judge) -> Optional[Diagnosis]:
    """``zero``: backward returned exactly 0 on every failing entry, the gradient is not 0."""
    failing = judge.failing(analytic)
    if not failing or any(analytic[i] != 0.0 for i in failing):
        return None
    if not judge.passes(_replace_entries(analytic, judge.numeric, failing)):
        return None
    n = int(np.size(analytic))
    if np.all(analytic == 0.0):
        message = (
            "backward returned zeros, but the gradient is not zero: a path that never reaches "
            "the result, or a gradient never written?"
        )
    else:
        message = (
            f"backward returned zeros at {len(failing)} of {n} entries where the gradient is not "
            "zero: a derivative dropped on part of the domain, a mask too wide?"
        )
    return Diagnosis("zero", message, count=len(failing))


def named_factors(n_examples: Optional[int], n_features: Optional[int]) -> List[Tuple[str, float]]:
    """The factors a ``scale`` signature names, most specific first; ones equal to 1 dropped."""
    names: List[Tuple[str, float]] = [("-1", -1.0), ("2", 2.0), ("1/2", 0.5)]
    for label, size in (("N", n_examples), ("D", n_features)):
        if size is not None and size > 1:
            names += [(label, float(size)), (f"1/{label}", 1.0 / size)]
    return names


def find_scale(
    analytic: Array,
    judge: Judge,
    n_examples: Optional[int] = None,
    n_features: Optional[int] = None,
) -> Optional[Diagnosis]:
    """``scale``: ``analytic = c * numeric`` for one constant ``c`` (named where it can be)."""
    n = judge.numeric
    nn = float(np.vdot(n, n))
    if nn == 0.0:
        return None
    fitted = float(np.vdot(analytic, n)) / nn
    if fitted == 0.0 or not np.isfinite(fitted):
        return None
    names = named_factors(n_examples, n_features)
    # Try the named factors nearest to the fit first; a name is given only if dividing by that
    # exact constant passes.
    for label, value in sorted(names, key=lambda item: abs(item[1] - fitted) / abs(item[1])):
        if judge.passes(analytic / value):
            aliases = [lab for lab, val in names if val == value and lab != label]
            also = "".join(f" = {alias}" for alias in aliases)
            return Diagnosis(
                "scale",
                f"analytic = numeric x {value:.6g} = {label}{also}: {_SCALE_HINTS[label]}",
                factor=value,
                factor_name=label,
            )
    if judge.passes(analytic / fitted):
        return Diagnosis(
            "scale",
            f"analytic = numeric x {fitted:.8g}: a constant factor off (a wrong constant, a "
            "scaled term)?",
            factor=fitted,
        )
    return None


def find_offset(analytic: Array, judge: Judge) -> Optional[Diagnosis]:
    """``offset``: ``analytic - numeric`` is the same all along one axis."""
    diff = analytic - judge.numeric
    for axis in range(analytic.ndim):
        if analytic.shape[axis] < 2:
            continue
        if not judge.passes(analytic - diff.mean(axis=axis, keepdims=True)):
            continue
        if analytic.ndim == 2 and axis == 0:
            where = (
                "the same in every row (constant along axis 0): a forgotten - mean(dy) over the "
                "examples (centering, batch norm)?"
            )
        elif analytic.ndim == 2 and axis == 1:
            where = (
                "the same in every column (constant along axis 1): a forgotten mean over the "
                "features?"
            )
        elif analytic.ndim == 1:
            where = "the same in every entry: a constant added (a mean term forgotten)?"
        else:
            where = f"constant along axis {axis}: a forgotten mean over that axis?"
        return Diagnosis("offset", f"analytic - numeric is {where}", axis=axis)
    return None


def find_transpose(analytic: Array, judge: Judge) -> Optional[Diagnosis]:
    """``transpose``: ``analytic`` permuted by some non-identity axis order equals ``numeric``."""
    if analytic.ndim < 2:
        return None
    identity = tuple(range(analytic.ndim))
    for perm in itertools.permutations(identity):
        if perm == identity:
            continue
        permuted = np.transpose(analytic, perm)
        if permuted.shape != judge.numeric.shape or not judge.passes(permuted):
            continue
        if analytic.ndim == 2:
            message = "analytic = numeric transposed: a missing (or an extra) transpose?"
        else:
            message = (
                f"analytic = numeric with its axes permuted (axes {_index_text(perm)} of the "
                "analytic give the numeric layout): axes exchanged?"
            )
        return Diagnosis("transpose", message, axes=perm, operand="gradient")
    return None


def find_swapped(
    name: str, analytic: Array, judge: Judge, others: Mapping[str, Tuple[Array, Array]]
) -> Optional[Diagnosis]:
    """``swapped``: ``analytic`` passes against the numeric gradient of another argument.

    ``others`` maps argument names to their ``(numeric, error)`` estimates.
    """
    for other, (numeric, error) in others.items():
        if other == name or np.shape(numeric) != analytic.shape:
            continue
        if judge.passes(analytic, numeric=numeric, error=error):
            return Diagnosis(
                "swapped",
                f"analytic = the numeric gradient of {other!r}: the gradients of {name!r} and "
                f"{other!r} exchanged?",
                other=other,
            )
    return None


def find_alternative(kind: str, alternative: Optional[Array], judge: Judge) -> Optional[Diagnosis]:
    """A signature proved by an extra backward call: ``"symmetric-part"`` (the layer's
    ``backward_symmetrized(dy)``) or ``"transpose-dy"`` (``backward(dy^T)``) passes."""
    if alternative is None or not judge.passes(alternative):
        return None
    if kind == "symmetric-part":
        return Diagnosis(
            "symmetric-part",
            "the discrepancy vanishes when dL/dSigma is symmetrized (the layer's "
            f"{SYMMETRIZED_HOOK}): a gradient with respect to a symmetric matrix used without "
            "its symmetric part (G + G^T)/2",
        )
    if kind == "transpose-dy":
        return Diagnosis(
            "transpose",
            "backward(dy^T) matches the numeric gradient: the backward uses dy transposed "
            "(right only for a symmetric dy)",
            axes=(1, 0),
            operand="dy",
        )
    raise ValueError(f"find_alternative: unknown kind {kind!r}")


def find_confined(analytic: Array, judge: Judge) -> Optional[Diagnosis]:
    """``rows``, ``columns`` or ``entries``: the failing entries are confined to a few of them.

    Rows (columns) of a matrix are named when the failing entries lie in at most a quarter of
    them and fill at least half of those lines; otherwise the entries themselves, when at most
    an eighth of all entries fail. The correction sets the named part to the numeric values.
    """
    failing = judge.failing(analytic)
    if not failing:
        return None
    size = int(np.size(analytic))
    candidates: List[Tuple[float, Diagnosis, Array]] = []
    if analytic.ndim == 2:
        n_rows, n_cols = analytic.shape
        for axis, (count, width, noun) in enumerate(
            ((n_rows, n_cols, "row"), (n_cols, n_rows, "column"))
        ):
            lines = sorted({idx[axis] for idx in failing})
            if count < 2 or len(lines) > max(1, int(_FEW_LINES * count)) or len(lines) >= count:
                continue
            coverage = len(failing) / (len(lines) * width)
            if coverage < 0.5:
                continue
            corrected = np.array(analytic, dtype=np.float64, copy=True)
            if axis == 0:
                corrected[lines, :] = judge.numeric[lines, :]
            else:
                corrected[:, lines] = judge.numeric[:, lines]
            plural = noun + ("s" if len(lines) > 1 else "")
            loop = "examples" if axis == 0 else "features"
            message = (
                f"the discrepancy is confined to {plural} {_listed(lines, str)} (of {count}): a "
                f"boundary or off-by-one bug in a loop over the {loop}?"
            )
            kind = "rows" if axis == 0 else "columns"
            fields = {"rows": tuple(lines)} if axis == 0 else {"columns": tuple(lines)}
            candidates.append((coverage, Diagnosis(kind, message, **fields), corrected))  # type: ignore[arg-type]
    for _, diagnosis, corrected in sorted(candidates, key=lambda c: -c[0]):
        if judge.passes(corrected):
            return diagnosis
    if size >= 2 and len(failing) <= max(1, int(_FEW_ENTRIES * size)):
        entries = sorted(failing)
        if judge.passes(_replace_entries(analytic, judge.numeric, entries)):
            return Diagnosis(
                "entries",
                f"the discrepancy is confined to {len(entries)} of {size} entries: "
                f"{_listed(entries, _index_text)}: a boundary, padding or indexing bug?",
                entries=tuple(entries),
            )
    return None


def find_rank_one(analytic: Array, judge: Judge) -> Optional[Diagnosis]:
    """``rank-one``: ``analytic - numeric`` is an outer product ``u v^T`` (matrices only)."""
    if analytic.ndim != 2:
        return None
    m, n = analytic.shape
    if m < 2 or n < 2 or m + n - 1 > m * n / 2:
        return None
    diff = analytic - judge.numeric
    u, s, vt = np.linalg.svd(diff, full_matrices=False)
    if not judge.passes(analytic - s[0] * np.outer(u[:, 0], vt[0])):
        return None
    return Diagnosis(
        "rank-one",
        "the discrepancy is an outer product u v^T (rank one): a dropped path through a "
        "statistic (a mean, a mean of a product)?",
    )


def diagnose(
    analytic: Array,
    numeric: Array,
    error: Array,
    *,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    name: str = "x",
    n_examples: Optional[int] = None,
    n_features: Optional[int] = None,
    others: Optional[Mapping[str, Tuple[Array, Array]]] = None,
    alternatives: Optional[Mapping[str, Optional[Array]]] = None,
) -> Optional[Diagnosis]:
    """The first signature of the catalogue that explains a failing comparison, or ``None``.

    ``analytic``, ``numeric``, ``error``: the arrays of one full-mode comparison (one shape).
    ``rtol``, ``atol``: the check's tolerance options. ``n_examples``, ``n_features``: ``N`` and
    ``D`` of the layer's input, for naming scale factors. ``others``: ``name -> (numeric,
    error)`` of the check's other arguments, for ``swapped``. ``alternatives``: analytic
    gradients from extra backward calls, keyed ``"transpose-dy"`` and ``"symmetric-part"``.
    Returns ``None`` when the comparison passes or nothing explains it.
    """
    a = np.asarray(analytic, dtype=np.float64)
    judge = Judge(
        np.asarray(numeric, dtype=np.float64), np.asarray(error, dtype=np.float64), rtol, atol
    )
    if a.shape != judge.numeric.shape or a.size == 0 or judge.passes(a):
        return None
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(judge.numeric))):
        return None
    alternatives = alternatives or {}
    steps: List[Callable[[], Optional[Diagnosis]]] = [
        lambda: find_zero(a, judge),
        lambda: find_scale(a, judge, n_examples, n_features),
        lambda: find_offset(a, judge),
        lambda: find_transpose(a, judge),
        lambda: find_swapped(name, a, judge, others or {}),
        lambda: find_alternative("symmetric-part", alternatives.get("symmetric-part"), judge),
        lambda: find_alternative("transpose-dy", alternatives.get("transpose-dy"), judge),
        lambda: find_confined(a, judge),
        lambda: find_rank_one(a, judge),
    ]
    for step in steps:
        found = step()
        if found is not None:
            return found
    return None


# -- one check's arguments -----------------------------------------------------------------


def _sizes(x_shape: Optional[Sequence[int]]) -> Tuple[Optional[int], Optional[int]]:
    """``(N, D)`` of an input: rows are examples, the last axis the features."""
    if not x_shape:
        return None, None
    if len(x_shape) == 1:
        return int(x_shape[0]), None
    return int(x_shape[-2]), int(x_shape[-1])


def _gradients(call: Callable[[], Any], layer: Any, keys: Sequence[str]) -> Dict[str, Array]:
    """Run one extra backward; its gradients by argument name (only well-formed ones)."""
    try:
        dx = call()
        grads = dict(getattr(layer, "grads", None) or {})
    except Exception:
        # An extra call the layer does not support proves nothing either way.
        return {}
    out: Dict[str, Array] = {}
    for key in keys:
        value = dx if key == "x" else grads.get(key)
        if value is None:
            continue
        arr = np.asarray(value)
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)):
            out[key] = np.array(arr, dtype=np.float64)
    return out


def _extra_backwards(
    layer: Any, dy: Optional[Array], keys: Sequence[str]
) -> Dict[str, Dict[str, Array]]:
    """``kind -> {argument: gradient}`` from the extra backward calls that apply to ``layer``.

    ``transpose-dy``: ``backward(dy^T)`` for a square matrix ``dy``. ``symmetric-part``: the
    layer's hook, when it has one. Both follow the check's last forward (at the checked input);
    the layer's state and ``grads`` are put back afterwards.
    """
    if layer is None or dy is None or is_loss_layer(layer):
        return {}
    dy = np.asarray(dy, dtype=np.float64)
    calls: Dict[str, Callable[[], Any]] = {}
    if dy.ndim == 2 and dy.shape[0] == dy.shape[1] and not np.allclose(dy, dy.T):
        calls["transpose-dy"] = lambda: layer.backward(np.array(dy.T))
    hook = getattr(layer, SYMMETRIZED_HOOK, None)
    if callable(hook):
        calls["symmetric-part"] = lambda: hook(np.array(dy))
    if not calls:
        return {}
    state = LayerState.capture(layer)
    saved_grads = getattr(layer, "grads", None)
    try:
        return {kind: _gradients(call, layer, keys) for kind, call in calls.items()}
    finally:
        state.restore()
        if saved_grads is not None:
            layer.grads = saved_grads


def diagnose_results(
    results: Sequence[ArgumentResult],
    *,
    layer: Any = None,
    x_shape: Optional[Sequence[int]] = None,
    dy: Optional[Array] = None,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
) -> List[ArgumentResult]:
    """``results`` with ``diagnosis`` filled for every failing full-mode argument.

    ``layer`` is the checked layer after the check (its cache at the checked input), ``dy`` the
    check's upstream gradient, ``x_shape`` the input's shape (for ``N`` and ``D``), ``rtol``,
    ``atol`` the check's options. Arguments that pass, are inconclusive or were compared in
    directional mode are returned unchanged (``diagnosis`` stays ``None``).
    """
    results = list(results)
    todo = [
        r for r in results if r.status == "fail" and r.mode == "full" and r.analytic is not None
    ]
    if not todo:
        return results
    others = {
        r.name: (r.numeric, r.error_estimate)
        for r in results
        if r.mode == "full" and r.numeric is not None and r.error_estimate is not None
    }
    extra = _extra_backwards(layer, dy, [r.name for r in todo])
    n_examples, n_features = _sizes(x_shape)
    todo_ids = {id(r) for r in todo}
    out = []
    for r in results:
        if id(r) in todo_ids:
            found = diagnose(
                r.analytic,  # type: ignore[arg-type]
                r.numeric,  # type: ignore[arg-type]
                r.error_estimate,  # type: ignore[arg-type]
                rtol=rtol,
                atol=atol,
                name=r.name,
                n_examples=n_examples,
                n_features=n_features,
                others=others,  # type: ignore[arg-type]
                alternatives={kind: grads.get(r.name) for kind, grads in extra.items()},
            )
            r = dataclasses.replace(r, diagnosis=found)
        out.append(r)
    return out
