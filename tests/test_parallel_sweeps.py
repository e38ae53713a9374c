"""The cpp backend splits a large activation sweep of the general pass (forward and backward) over
the core's threads: a Dense's fused bias-and-activation sweep in blocks of columns
(cpp/include/densefit/layers.hpp; the rule is dispatch.hpp's sweep_splits), an unfused Activation
op (after BatchNorm) in ranges of elements (network.hpp). The same bits for 1, 2 and 3 threads,
every activation, both dtypes, and the numpy reference within DESIGN.md's tolerances."""

from __future__ import annotations

import numpy as np
import pytest

_core = pytest.importorskip("densefit._core")

import densefit  # noqa: E402
from densefit import optimizers as O  # noqa: E402
from densefit.backends import cpp, numpy_  # noqa: E402
from densefit.layers import Activation, BatchNorm, Dense  # noqa: E402
from densefit.plan import build_plan, init_state  # noqa: E402

SWEEP_ELEMENTS = _core.build_info()["tuning"]["parallel_sweep_elements"]
THREADS = (1, 2, 3)
ACTIVATIONS = ("relu", "gelu", "tanh", "elu", "sigmoid", "softplus", "leaky_relu")
TOL = {"float64": 1e-10, "float32": 1e-4}
# 300 rows × 256 columns reach dispatch.hpp's kParallelSweepElements (the last batch of 100 rows
# does not); the 256 × 320 product keeps the network off the data-parallel pass (its chunks run
# each sweep on one thread; a float chunk's block_gemm takes B up to 256 × 256), so the general
# pass runs, whole batches at a time.
BATCH, N, WIDTH, WIDER = 300, 700, 256, 320


def _problem(activation, dtype, batchnorm, seed=0):
    def layers():
        if batchnorm:  # the unfused Activation after BatchNorm; the 256 × 320 product as below
            return [Dense(WIDTH, input_dim=12), BatchNorm(), Activation(activation), Dense(WIDER),
                    Dense(3, activation="softmax")]
        return [Dense(WIDTH, activation=activation, input_dim=12), Dense(WIDER, activation=activation),
                Dense(3, activation="softmax")]
    plan = build_plan(layers(), 12, "categorical_crossentropy", O.AdamW(0.01, weight_decay=0.05), dtype, seed)
    state = init_state(plan, layers(), seed)
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(N, 12)) * 2).astype(dtype)
    y = rng.integers(0, 3, (N, 1)).astype(dtype)
    orders = np.stack([rng.permutation(N) for _ in range(2)])
    return plan, state, X, y, orders, np.array([0.01, 0.005])


@pytest.fixture
def restore_threads():
    before = densefit.get_num_threads()
    yield
    densefit.set_num_threads(before)


@pytest.mark.parametrize("batchnorm", [False, True], ids=["fused", "after-batchnorm"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_split_sweeps_give_the_same_bits_for_any_thread_count(activation, dtype, batchnorm, restore_threads):
    plan, state, X, y, orders, lrs = _problem(activation, dtype, batchnorm)
    assert cpp._net(plan).training_pass(BATCH) == "general" and BATCH * WIDTH >= SWEEP_ELEMENTS
    results = []
    for threads in THREADS:
        densefit.set_num_threads(threads)
        trained = state.copy()
        stats = cpp.train_epochs(plan, trained, X, y, orders, lrs, BATCH)
        loss, grad = cpp.loss_and_grad(plan, state, X[:BATCH], y[:BATCH])
        results.append((trained, stats, loss, grad))
    first = results[0]
    for threads, (trained, stats, loss, grad) in zip(THREADS[1:], results[1:]):
        np.testing.assert_array_equal(stats, first[1], err_msg=f"{threads} threads")
        for name in ("params", "slots"):
            np.testing.assert_array_equal(getattr(trained, name), getattr(first[0], name), err_msg=f"{threads} threads")
        assert loss == first[2]
        np.testing.assert_array_equal(grad, first[3], err_msg=f"{threads} threads")
    assert np.isfinite(first[1]).all() and not np.array_equal(first[0].params, state.params)


@pytest.mark.parametrize("batchnorm", [False, True], ids=["fused", "after-batchnorm"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_split_sweeps_match_numpy(activation, dtype, batchnorm, restore_threads):
    plan, state, X, y, _, _ = _problem(activation, dtype, batchnorm)
    densefit.set_num_threads(2)
    loss, grad = cpp.loss_and_grad(plan, state, X[:BATCH], y[:BATCH])
    loss_ref, grad_ref = numpy_.loss_and_grad(plan, state, X[:BATCH], y[:BATCH])
    assert abs(loss - loss_ref) <= TOL[dtype] * max(abs(loss_ref), 1.0)
    scale = max(np.abs(grad_ref).max(), 1e-300)
    assert np.abs(np.asarray(grad, np.float64) - grad_ref).max() / scale <= TOL[dtype]
