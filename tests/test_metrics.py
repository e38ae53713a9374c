"""Metrics by name: each against scikit-learn's on the same predictions, in fit's history (train
and val_) and in evaluate, on every backend; errors name the metrics that fit the loss."""

import numpy as np
import pytest

import densefit as df
from densefit import metrics as M

sk_metrics = pytest.importorskip("sklearn.metrics")


def test_each_metric_equals_scikit_learns(rng):
    y = (rng.random((200, 1)) > 0.4).astype(float)
    p = np.clip(0.3 * y + 0.7 * rng.random((200, 1)), 0, 1)
    p[:20] = 0.5  # ties
    assert abs(M.REGISTRY["auc"].fn(p, y) - sk_metrics.roc_auc_score(y, p)) < 1e-12
    assert M.REGISTRY["precision"].fn(p, y) == pytest.approx(sk_metrics.precision_score(y, p > 0.5))
    assert M.REGISTRY["recall"].fn(p, y) == pytest.approx(sk_metrics.recall_score(y, p > 0.5))
    t, q = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    assert M.REGISTRY["mae"].fn(q, t) == pytest.approx(sk_metrics.mean_absolute_error(t, q), rel=1e-12)
    assert M.REGISTRY["mse"].fn(q, t) == pytest.approx(sk_metrics.mean_squared_error(t, q), rel=1e-12)
    assert M.REGISTRY["rmse"].fn(q, t) == pytest.approx(np.sqrt(sk_metrics.mean_squared_error(t, q)), rel=1e-12)
    assert M.REGISTRY["r2"].fn(q, t) == pytest.approx(sk_metrics.r2_score(t, q), rel=1e-12)
    assert np.isnan(M.REGISTRY["auc"].fn(p, np.ones_like(y)))


@pytest.mark.parametrize("loss, metrics", [
    ("binary_crossentropy", ["binary_accuracy", "auc", "precision", "recall"]),
    ("mse", ["mae", "mse", "rmse", "r2"]),
    ("categorical_crossentropy", ["categorical_accuracy", "acc"]),
])
def test_metrics_in_history_and_evaluate(backend, rng, loss, metrics):
    X = rng.normal(size=(120, 4))
    if loss == "binary_crossentropy":
        y, out = (X[:, :1] + 0.5 * rng.normal(size=(120, 1)) > 0).astype(float), df.Dense(1, activation="sigmoid")
    elif loss == "mse":
        y, out = X[:, :2] @ np.array([[1.0, 0.5], [-1.0, 2.0]]), df.Dense(2)
    else:
        y, out = rng.integers(0, 3, 120), df.Dense(3, activation="softmax")
    model = df.Sequential([df.Dense(8, activation="tanh", input_dim=4), out], seed=0, dtype="float64", backend=backend)
    model.compile(loss, "adam", metrics=metrics)
    h = model.fit(X[:90], y[:90], epochs=3, batch_size=16, validation_data=(X[90:], y[90:]), verbose=0)
    names = [M.ALIASES.get(m, m) for m in metrics]
    for name in names:
        assert len(h.history[name]) == 3 and len(h.history["val_" + name]) == 3
    result = model.evaluate(X[90:], y[90:])
    p = model.predict(X[90:])
    for name in names:
        assert result[name] == pytest.approx(h.history["val_" + name][-1], rel=1e-12)
    if loss == "binary_crossentropy":
        assert abs(result["auc"] - sk_metrics.roc_auc_score(y[90:], p)) < 1e-3
        assert result["binary_accuracy"] == pytest.approx(sk_metrics.accuracy_score(y[90:], p > 0.5))
    elif loss == "mse":
        assert result["r2"] == pytest.approx(sk_metrics.r2_score(y[90:], p), rel=1e-9)
        # training-set metrics are taken in inference mode after each epoch
        assert h.history["mae"][-1] == pytest.approx(sk_metrics.mean_absolute_error(y[:90], model.predict(X[:90])))
    else:
        assert result["categorical_accuracy"] == pytest.approx(sk_metrics.accuracy_score(y[90:], p.argmax(axis=1)))


def test_metric_errors_name_the_ones_that_fit():
    model = df.Sequential([df.Dense(1, input_dim=2)])
    with pytest.raises(ValueError, match=r"'accuracy'.*loss='mse'.*\['mae', 'mse', 'r2', 'rmse'\]"):
        model.compile("mse", "sgd", metrics=["accuracy"])
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        model.compile("mse", "sgd", metrics=["f1"])
    with pytest.raises(TypeError, match="names"):
        model.compile("mse", "sgd", metrics=[len])
