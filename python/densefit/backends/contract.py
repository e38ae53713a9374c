"""The arguments every backend call must receive, checked where the numpy and numba backends
start (the compiled core checks the same in C++, in ``bindings.cpp``).

The public entry points validate the user's data first (:mod:`densefit.validation`) and say what
was wrong in the user's terms; these checks are the second line, for a caller that reaches a
backend directly or a state that was tampered with: any array of the wrong shape, dtype or
layout is a ``ValueError``/``TypeError`` naming it before a pass runs, so no kernel ever reads
or writes outside a buffer. Each check is O(size of its argument) numpy work, once per call.
"""

from __future__ import annotations

import numpy as np

from .. import losses as L
from ..plan import Plan, State
from ..shuffle import Shuffle
from ..validation import check_int

STEP_LIMIT = 2 ** 62  # the step counter of a state: any int the backends' 64-bit counters hold with room to spare


def _shape(name: str, a: np.ndarray, expected: tuple) -> None:
    if a.ndim != len(expected) or any(e is not None and s != e for s, e in zip(a.shape, expected)):
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + (",)" if len(expected) == 1 else ")")
        raise ValueError(f"{name} must have shape {want}, got {a.shape}")


def _dtype(name: str, a: np.ndarray, dtype: np.dtype, why: str = "the plan's dtype") -> None:
    if a.dtype != dtype:
        kind = np.dtype(dtype).name
        raise TypeError(f"{name} must be {'an' if kind[0] in 'aeiou' else 'a'} {kind} array ({why}), got dtype {a.dtype}")


def _array(name: str, a) -> np.ndarray:
    """A state buffer is the model's own numpy array, never a conversion (it is written in place)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    return a


def _integer(name: str, value, low: int) -> int:
    value = check_int(name, value, low)
    if value >= STEP_LIMIT:
        raise ValueError(f"{name} must be < 2**{STEP_LIMIT.bit_length() - 1}, got {value}")
    return value


def state(plan: Plan, st: State, writes: bool) -> None:
    """The state's buffers are exactly what :func:`densefit.plan.init_state` makes for ``plan``:
    the kernels address them through flat offsets from the plan."""
    for name, expected in (("params", (plan.n_params,)), ("slots", (2, plan.n_params)), ("stats", (plan.n_stats,))):
        a = _array(f"state.{name}", getattr(st, name))
        _dtype(f"state.{name}", a, plan.dtype)
        _shape(f"state.{name}", a, expected)
        if not a.flags.c_contiguous:
            raise ValueError(f"state.{name} must be C-contiguous")
        if writes and not a.flags.writeable:
            raise ValueError(f"state.{name} must be writeable: it is updated in place")
    _integer("state.step", st.step, 0)


def _data(name: str, a, dtype) -> np.ndarray:
    """A user matrix in the plan's dtype: as it is when it already is (any strides, read-only
    allowed), else a converted copy. The dtype is not a hazard to the passes, only the shape."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return a if a.dtype == dtype else a.astype(dtype)


def features(plan: Plan, X) -> np.ndarray:
    X = _data("X", X, plan.dtype)
    _shape("X", X, (None, plan.n_features))
    return X


def targets(plan: Plan, X: np.ndarray, y) -> np.ndarray:
    """``(n, K)``, or ``(n, 1)`` class indices in ``[0, K)`` for categorical cross-entropy."""
    y = _data("y", y, plan.dtype)
    class_indices = plan.loss == L.CATEGORICAL_CROSSENTROPY and plan.n_outputs > 1 and y.ndim == 2 and y.shape[1] == 1
    _shape("y", y, (X.shape[0], 1 if class_indices else plan.n_outputs))
    if class_indices and y.size:
        labels = y[:, 0]
        if not (np.all(labels >= 0) and np.all(labels < plan.n_outputs) and np.all(labels == np.floor(labels))):
            raise ValueError(f"y must hold whole class indices in [0, {plan.n_outputs}) for categorical_crossentropy")
    return y


def batch_size(value) -> int:
    return _integer("batch_size", value, 1)


def sample_weight(plan: Plan, w, n: int) -> np.ndarray | None:
    """``None``, or ``(n,)`` weights in the plan's dtype (values are the dispatcher's check)."""
    if w is None:
        return None
    w = _array("sample_weight", w)
    _dtype("sample_weight", w, plan.dtype)
    _shape("sample_weight", w, (n,))
    return w


def epochs(lrs, orders, n: int) -> tuple[np.ndarray, np.ndarray | Shuffle | None]:
    """One learning rate per epoch, and ``None``, a :class:`~densefit.shuffle.Shuffle` (checked
    when made) or an ``(E, n)`` int64 array of row indices in ``[0, n)`` (checked here once, so
    the passes gather without a bounds check)."""
    lrs = np.asarray(lrs, dtype=np.float64)
    _shape("lrs", lrs, (None,))
    if orders is None or isinstance(orders, Shuffle):
        return lrs, orders
    orders = np.asarray(orders)
    if orders.dtype.kind in "iu" and orders.dtype != np.int64:
        orders = orders.astype(np.int64)
    _dtype("orders", orders, np.dtype(np.int64), "row indices")
    _shape("orders", orders, (lrs.shape[0], n))
    distinct = orders[:1] if orders.shape[0] > 1 and orders.strides[0] == 0 else orders  # one order, broadcast
    if distinct.size:
        low, high = int(distinct.min()), int(distinct.max())
        if low < 0 or high >= n:
            bad = low if low < 0 else high
            raise ValueError(f"orders holds {bad}, which is not a row index in [0, {n})")
    return lrs, orders


def training(plan: Plan, st: State, X, y, orders, lrs, size, w) -> tuple:
    """All of a ``train_epochs`` call: ``(X, y, orders, lrs, batch_size, sample_weight)``."""
    state(plan, st, writes=True)
    X = features(plan, X)
    y = targets(plan, X, y)
    lrs, orders = epochs(lrs, orders, X.shape[0])
    return X, y, orders, lrs, batch_size(size), sample_weight(plan, w, X.shape[0])


def prediction(plan: Plan, st: State, X, size) -> tuple:
    """All of a ``predict`` call: ``(X, batch_size)``."""
    state(plan, st, writes=False)
    return features(plan, X), batch_size(size)


def gradient(plan: Plan, st: State, X, y, w) -> tuple:
    """All of a ``loss_and_grad`` call: ``(X, y, sample_weight)``."""
    state(plan, st, writes=False)
    X = features(plan, X)
    return X, targets(plan, X, y), sample_weight(plan, w, X.shape[0])
