"""The numba and numpy backends' calls run the process's BLAS on one thread (backends/__init__.py,
``_blas_on_one_thread``), and every BLAS keeps its own setting outside them."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import densefit as df
from densefit import backends


def _blas_threads():
    return {info["filepath"]: info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}


def _model(backend):
    model = df.Sequential([df.Dense(32, activation="relu", input_dim=8), df.Dense(1)], seed=0, backend=backend)
    model.compile(loss="mse", optimizer="adam")
    return model


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("call", ["train_epochs", "predict", "loss_and_grad"])
def test_one_blas_thread_inside_a_call_and_the_setting_restored(backend, call, monkeypatch):
    if backend not in backends.available_backends():
        pytest.skip(f"{backend} backend unavailable")
    module = backends.get(backend)
    seen = []
    original = getattr(module, call)

    def spy(*args, **kwargs):
        seen.append(_blas_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(module, call, spy)
    X = np.random.default_rng(0).standard_normal((256, 8)).astype(np.float32)
    y = X[:, :1].copy()
    model = _model(backend)
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        model.fit(X, y, epochs=1, batch_size=64, verbose=0)
        model.predict(X)
        model.loss_and_grad(X, y)
        after = _blas_threads()
    assert seen and all(set(threads.values()) == {1} for threads in seen)
    assert after == before


def test_the_cpp_backend_is_not_limited(monkeypatch):
    if "cpp" not in backends.available_backends():
        pytest.skip("cpp backend unavailable")
    assert not getattr(backends.get("cpp"), "ONE_BLAS_THREAD", False)
