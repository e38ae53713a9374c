"""Input checks shared by every public entry point: clear errors before any work starts."""

from __future__ import annotations

import numbers

import numpy as np

from . import losses as L
from .backends import all_finite


def check_int(name: str, value, low: int, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def as_features(X, dtype: np.dtype, n_features: int | None, name: str = "X", check_finite: bool = True) -> np.ndarray:
    """A 2-D array of ``dtype`` with finite values; no copy when the dtype already matches
    (read-only and non-contiguous arrays, memmaps included, are passed through).
    ``check_finite=False`` leaves the NaN/inf check to the caller (``fit`` hands it to the backend)."""
    if isinstance(X, (list, tuple)) or not hasattr(X, "dtype"):
        X = np.asarray(X)
    if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {X.dtype}")
    if np.issubdtype(X.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {X.dtype}")
    if X.ndim == 1:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}; "
                         f"use {name}.reshape(-1, 1) for a single feature")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    if X.shape[1] == 0:
        raise ValueError(f"{name} has no features (shape {X.shape})")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features but the model expects {n_features}")
    if X.dtype != dtype:
        with np.errstate(over="ignore"):  # a value too large for dtype becomes inf: refused as such
            X = np.asarray(X, dtype=dtype)
    if check_finite and not all_finite(X):
        raise ValueError(f"{name} contains NaN or infinity (or a value too large for {dtype})")
    return X


def as_targets(y, loss: int, n_outputs: int, n_rows: int, dtype: np.dtype, name: str = "y") -> np.ndarray:
    """Targets as the 2-D ``dtype`` array the backends read: ``(n, K)``, or ``(n, 1)`` class
    indices for categorical cross-entropy with integer labels."""
    y = np.asarray(y)
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {y.dtype}")
    if y.shape[:1] != (n_rows,):
        raise ValueError(f"{name} has {y.shape[0] if y.ndim else 0} rows but X has {n_rows}")
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {y.shape}")
    with np.errstate(over="ignore"):  # checked after the cast: a value too large for dtype becomes inf
        y = np.asarray(y, dtype=dtype)
    if not all_finite(y):
        raise ValueError(f"{name} contains NaN or infinity (or a value too large for {dtype})")
    if loss == L.CATEGORICAL_CROSSENTROPY and y.shape[1] == 1:
        if not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0 or y.max() >= n_outputs:
            raise ValueError(f"{name} must hold integer class labels in [0, {n_outputs}) for categorical_crossentropy "
                             f"with {n_outputs} outputs (or one-hot rows of width {n_outputs})")
    elif y.shape[1] != n_outputs:
        raise ValueError(f"{name} has {y.shape[1]} columns but the model has {n_outputs} outputs")
    if loss == L.BINARY_CROSSENTROPY and (y.min() < 0 or y.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1] for binary_crossentropy")
    if loss == L.CATEGORICAL_CROSSENTROPY and y.shape[1] > 1 and y.min() < 0:
        raise ValueError(f"{name} must hold non-negative class probabilities (one-hot rows) for categorical_crossentropy")
    return y


def as_sample_weight(sample_weight, n_rows: int, dtype: np.dtype, name: str = "sample_weight") -> np.ndarray:
    """Per-row weights as the contiguous ``(n,)`` ``dtype`` array the backends read: finite, ≥ 0,
    not all zero (checked after the cast, so a weight that overflows the dtype is refused)."""
    w = np.asarray(sample_weight)
    if w.dtype == object or not (np.issubdtype(w.dtype, np.number) or w.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {w.dtype}")
    if np.issubdtype(w.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {w.dtype}")
    if w.ndim != 1 or w.shape[0] != n_rows:
        raise ValueError(f"{name} must have shape ({n_rows},), one weight per row, got shape {w.shape}")
    with np.errstate(over="ignore"):  # a weight too large for dtype becomes inf, refused below
        w = np.ascontiguousarray(w, dtype=dtype)
    if not np.isfinite(w).all():
        raise ValueError(f"{name} contains NaN or infinity (or a value too large for {dtype})")
    if (w < 0).any():
        raise ValueError(f"{name} must be non-negative")
    if not w.any():
        raise ValueError(f"{name} is zero everywhere: at least one row needs a positive weight")
    return w
