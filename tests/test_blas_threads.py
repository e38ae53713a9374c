"""During the numba and numpy backends' calls the process's BLAS uses at most densefit's thread
count (backends/__init__.py, ``_blas_threads``), and every BLAS keeps its own setting outside them."""

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


@pytest.fixture
def one_thread():
    before = df.get_num_threads()
    df.set_num_threads(1)
    yield
    df.set_num_threads(before)


def _spy(monkeypatch, backend):
    module = backends.get(backend)
    seen = []
    for call in ("train_epochs", "predict", "loss_and_grad"):
        original = getattr(module, call)

        def spy(*args, _original=original, _call=call, **kwargs):
            seen.append((_call, _blas_threads()))
            return _original(*args, **kwargs)
        monkeypatch.setattr(module, call, spy)
    return seen


def _run(backend):
    X = np.random.default_rng(0).standard_normal((256, 8)).astype(np.float32)
    y = X[:, :1].copy()
    model = _model(backend)
    model.fit(X, y, epochs=1, batch_size=64, verbose=0)
    model.predict(X)
    model.loss_and_grad(X, y)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_set_num_threads_limits_blas_inside_the_calls_only(backend, monkeypatch, one_thread):
    if backend not in backends.available_backends():
        pytest.skip(f"{backend} backend unavailable")
    seen = _spy(monkeypatch, backend)
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        _run(backend)
        after = _blas_threads()
    assert [call for call, _ in seen] == ["train_epochs", "predict", "loss_and_grad"]
    assert all(set(threads.values()) == {1} for _, threads in seen)
    assert after == before and set(before.values()) == {2}


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_lower_blas_setting_is_kept(backend, monkeypatch):
    """The limit never raises a library's threads: OPENBLAS_NUM_THREADS=1 stays 1."""
    if backend not in backends.available_backends():
        pytest.skip(f"{backend} backend unavailable")
    seen = _spy(monkeypatch, backend)
    with threadpool_limits(1, user_api="blas"):
        _run(backend)
    assert seen and all(set(threads.values()) == {1} for _, threads in seen)


def test_the_cpp_backend_is_not_limited():
    if "cpp" not in backends.available_backends():
        pytest.skip("cpp backend unavailable")
    assert not getattr(backends.get("cpp"), "LIMITS_BLAS_THREADS", False)
