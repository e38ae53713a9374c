"""Metrics by name for ``compile(metrics=[...])``: one registry, each entry the losses it fits
and how it is computed.

The accuracy family is counted by the backends while they train (the ``CORRECT`` statistic, as
Keras counts it over the epoch's batches): ``accuracy`` (per element for binary cross-entropy,
per row for categorical), ``binary_accuracy``, ``categorical_accuracy``. The others are
computed from predictions in inference mode: on the training data at the end of each epoch (so
a fit that asks for them runs one epoch per backend call; Keras averages them over the batches
while the weights change), and on validation data and in ``evaluate``:

- ``mae``, ``mse``, ``rmse``: over all outputs; ``r2``: scikit-learn's ``r2_score``
  (per output, averaged) — for the ``mse`` loss;
- ``auc`` (ROC, by ranks with ties averaged: ``roc_auc_score``), ``precision`` and ``recall``
  (threshold 0.5, 0 when undefined) — for binary cross-entropy, all outputs pooled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import losses as L


def _mae(p, y):
    return float(np.mean(np.abs(p - y), dtype=np.float64))


def _mse(p, y):
    return float(np.mean(np.square(p - y, dtype=np.float64)))


def _rmse(p, y):
    return float(np.sqrt(_mse(p, y)))


def _r2(p, y):
    p, y = p.astype(np.float64), y.astype(np.float64)
    residual = np.sum((y - p) ** 2, axis=0)
    total = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(total > 0, 1 - residual / np.where(total > 0, total, 1), np.where(residual == 0, 1.0, 0.0))
    return float(np.mean(scores))


def _auc(p, y):
    p, y = p.ravel().astype(np.float64), y.ravel() > 0.5
    positives = int(np.count_nonzero(y))
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")  # undefined with one class
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(p.size)
    sorted_p = p[order]
    # average ranks over ties: each run of equal scores gets the mean of its positions (1-based)
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
    ends = np.r_[starts[1:], p.size]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _precision(p, y):
    predicted, actual = p.ravel() > 0.5, y.ravel() > 0.5
    called = int(np.count_nonzero(predicted))
    return float(np.count_nonzero(predicted & actual) / called) if called else 0.0


def _recall(p, y):
    predicted, actual = p.ravel() > 0.5, y.ravel() > 0.5
    present = int(np.count_nonzero(actual))
    return float(np.count_nonzero(predicted & actual) / present) if present else 0.0


@dataclass(frozen=True)
class Metric:
    """``fn(probabilities, targets) -> float`` (``None`` for the counted accuracies), the loss
    codes it fits, and whether higher is better (what callbacks' ``mode="auto"`` reads)."""

    name: str
    losses: tuple[int, ...]
    fn: Callable | None = None
    higher_is_better: bool = True


_CLASSIFICATION = (L.BINARY_CROSSENTROPY, L.CATEGORICAL_CROSSENTROPY)
REGISTRY: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", _CLASSIFICATION),
    Metric("binary_accuracy", (L.BINARY_CROSSENTROPY,)),
    Metric("categorical_accuracy", (L.CATEGORICAL_CROSSENTROPY,)),
    Metric("mae", (L.MSE,), _mae, False),
    Metric("mse", (L.MSE,), _mse, False),
    Metric("rmse", (L.MSE,), _rmse, False),
    Metric("r2", (L.MSE,), _r2),
    Metric("auc", (L.BINARY_CROSSENTROPY,), _auc),
    Metric("precision", (L.BINARY_CROSSENTROPY,), _precision),
    Metric("recall", (L.BINARY_CROSSENTROPY,), _recall),
)}
ALIASES = {"acc": "accuracy"}


def resolve(names, loss: int) -> list[str]:
    """Validated canonical metric names for ``loss``; the error names the ones that fit it."""
    fitting = sorted(name for name, m in REGISTRY.items() if loss in m.losses)
    out = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"metrics must be names (strings), got {name!r}")
        canonical = ALIASES.get(name.lower(), name.lower())
        metric = REGISTRY.get(canonical)
        if metric is None or loss not in metric.losses:
            what = "unknown metric" if metric is None else "metric"
            raise ValueError(f"{what} {name!r} does not fit loss={L.CANONICAL[loss]!r}; the metrics that do: {fitting}")
        if canonical not in out:
            out.append(canonical)
    return out


def counted(name: str) -> bool:
    """Whether the backends count this metric during training (the accuracy family)."""
    return REGISTRY[name].fn is None


def needs_predictions(names) -> bool:
    """Whether any of ``names`` is computed from predictions (so fit evaluates after each epoch)."""
    return not all(counted(name) for name in names)


def compute(names, loss: int, probabilities: np.ndarray, y: np.ndarray) -> dict:
    """The predicted-value metrics among ``names`` on ``probabilities`` (n, K) and targets ``y``
    as the backends read them ((n, K), or (n, 1) class indices)."""
    return {name: REGISTRY[name].fn(probabilities, y) for name in names if not counted(name)}


def higher_is_better(name: str) -> bool | None:
    """For a log key (``val_`` prefix allowed): True/False for metrics, None if unknown."""
    key = name[4:] if name.startswith("val_") else name
    key = ALIASES.get(key, key)
    if key == "loss":
        return False
    metric = REGISTRY.get(key)
    return None if metric is None else metric.higher_is_better
