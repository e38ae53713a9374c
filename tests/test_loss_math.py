"""The cpp core's binary cross-entropy (its exp and log1p inline from vmath.hpp, so its loop over a
batch vectorizes; their own accuracy is tests/test_vmath.py's) against the same formulas in float64."""

from __future__ import annotations

import numpy as np
import pytest

_core = pytest.importorskip("densefit._core")


@pytest.mark.parametrize("n", [1, 7, 8, 63, 64, 65, 130, 257])
def test_binary_crossentropy_matches_float64(n):
    """The loss and its gradient over one batch (elements one by one below 8, chunks of 64 and
    inline exp/log above) against the same formulas in float64, for logits from -100 to 100."""
    import densefit as df
    rng = np.random.default_rng(n)
    X = rng.uniform(-1, 1, size=(n, 3)).astype(np.float32)
    y = rng.integers(0, 2, n)
    model = df.Sequential([df.Dense(1, "sigmoid", input_dim=3)], seed=0, dtype="float32", backend="cpp")
    model.compile("binary_crossentropy", "sgd")
    W = np.array([[40.0], [-30.0], [25.0]], np.float32)   # logits up to ±95
    model.set_weights([W, np.array([0.5], np.float32)])
    loss, grads = model.loss_and_grad(X, y)
    z = X.astype(np.float64) @ W.astype(np.float64) + 0.5
    t = y.reshape(-1, 1).astype(np.float64)
    exact_loss = np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z))))
    dz = (1 / (1 + np.exp(-z)) - t) / n
    np.testing.assert_allclose(loss, exact_loss, rtol=2e-6)
    np.testing.assert_allclose(grads[0], X.T.astype(np.float64) @ dz, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads[1], dz.sum(0), rtol=1e-4, atol=1e-6)
