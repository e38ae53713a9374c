"""The float32 exp and log1p that the cpp core's binary cross-entropy computes inline (so its loop
over a batch vectorizes), against float64 numpy, and the loss they feed against numpy's backend."""

from __future__ import annotations

import numpy as np
import pytest

_core = pytest.importorskip("densefit._core")


def _ulps(got, exact):
    """|got - exact| in units of the float32 spacing at exact."""
    return np.abs(got.astype(np.float64) - exact) / np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)


def test_exp_nonpositive_within_one_ulp():
    x = -np.concatenate([np.geomspace(1e-30, 87, 400_000), np.linspace(0, 87, 200_000)]).astype(np.float32)
    exact = np.exp(x.astype(np.float64))
    assert _ulps(_core.elementary("exp_nonpositive", x), exact).max() <= 1.0


def test_exp_nonpositive_edges():
    got = _core.elementary("exp_nonpositive", np.array([0, -0.0, -87, -88, -1e30, -np.inf, np.nan], np.float32))
    assert got[0] == got[1] == 1
    assert 0 < got[2] < 2e-38 and got[3] == got[4] == got[5] == got[2]  # clamped to e^-87, a normal number
    assert np.isnan(got[6])


def test_log1p_unit_within_three_ulp():
    x = np.concatenate([np.geomspace(1e-38, 1, 400_000), np.linspace(0, 1, 200_000)[1:]]).astype(np.float32)
    exact = np.log1p(x.astype(np.float64))
    assert _ulps(_core.elementary("log1p_unit", x), exact).max() <= 3.0
    edges = _core.elementary("log1p_unit", np.array([0, 1, np.nan], np.float32))
    assert edges[0] == 0 and edges[1] == np.float32(np.log(2)) and np.isnan(edges[2])


def test_elementary_rejects_unknown_names():
    with pytest.raises(ValueError, match="exp_nonpositive"):
        _core.elementary("exp", np.zeros(3, np.float32))


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
