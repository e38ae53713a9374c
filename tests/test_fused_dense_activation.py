"""The C++ core runs a Dense followed by an Activation op as one fused op in training
(bias_activation and bias_activation_backward in layers.hpp): every activation, with and without
bias, on each Dense path (tiny direct loops, narrow column sums, GEMM), batch 1 and odd batches,
both dtypes, must equal the numpy reference; so must Dense followed by Dropout or BatchNorm (not
fused) and a fused pair that is the network's output."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("densefit._core")

from densefit import activations as A  # noqa: E402
from densefit import optimizers as O  # noqa: E402
from densefit.backends import cpp, numpy_  # noqa: E402
from densefit.layers import Activation, BatchNorm, Dense, Dropout  # noqa: E402
from densefit.plan import build_plan, init_state  # noqa: E402

ACTIVATIONS = [spec.name for spec in A.REGISTRY if spec.standalone]
TOL = {"float64": 1e-10, "float32": 1e-4}
# (input features, hidden width, batch rows): the hidden Dense's backward runs the direct loops
# with the sums in the sweep (m·n_in·n_out < 512, width ≥ 8), the direct loops with column_sums
# down narrow columns (width < 8, ≥ 8 rows), or the GEMM; in AVX-512 builds the GEMMs are
# block_gemm's, with the bias and relu (forward) and the relu's backward (dinp) in their
# epilogues, and the single-output Dense's dinp through the relu is gated_outer_dinp: widths of
# exactly one vector, and of two 64-column panels and a 2-lane tail.
SHAPES = {"direct": (3, 9, 5), "narrow": (3, 5, 16), "gemm": (9, 70, 16), "vector": (4, 16, 12),
          "panels": (5, 130, 29)}


def relative(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == 0:
        return 0.0 if b.size == 0 else np.inf
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def check_against_numpy(layers_fn, d, dtype, batch_sizes, loss="binary_crossentropy", n=37, seed=5):
    plan = build_plan(layers_fn(), d, loss, O.SGD(0.1, momentum=0.9), dtype, seed)
    state = init_state(plan, layers_fn(), seed)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(dtype)
    K = plan.n_outputs
    y = ((rng.random((n, K)) > 0.5) * 1.0 if loss == "binary_crossentropy" else rng.normal(size=(n, K))).astype(dtype)
    tol = TOL[dtype]
    loss_ref, grad_ref = numpy_.loss_and_grad(plan, state.copy(), X, y)
    loss_cpp, grad_cpp = cpp.loss_and_grad(plan, state.copy(), X, y)
    assert relative(loss_cpp, loss_ref) < tol and relative(grad_cpp, grad_ref) < tol
    assert np.abs(grad_ref).max() > 0
    orders = np.stack([np.arange(n), rng.permutation(n)])
    lrs = np.array([0.05, 0.02])
    for batch_size in batch_sizes:
        ref, ours = state.copy(), state.copy()
        stats_ref = numpy_.train_epochs(plan, ref, X, y, orders, lrs, batch_size)
        stats = cpp.train_epochs(plan, ours, X, y, orders, lrs, batch_size)
        assert relative(stats[:, 0], stats_ref[:, 0]) < tol, batch_size
        for name in ("params", "slots", "stats"):
            assert relative(getattr(ours, name), getattr(ref, name)) < tol, (batch_size, name)
        assert not np.allclose(ours.params, state.params)
        for logits in (False, True):  # inference runs the ops unfused
            assert relative(cpp.predict(plan, ours, X, 10, logits), numpy_.predict(plan, ref, X, 10, logits)) < tol


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_with_activation_matches_numpy(activation, use_bias, shape, dtype):
    d, width, batch = SHAPES[shape]
    assert set(ACTIVATIONS) == set(A.CODES) - {"softmax", "linear"}

    def layers():
        return [Dense(width, activation=activation, use_bias=use_bias, input_dim=d), Dense(1, activation="sigmoid")]

    check_against_numpy(layers, d, dtype, [1, 7, batch])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", ["relu", "elu", "tanh"])
def test_activation_layer_after_dense_and_fused_output(activation, dtype):
    """A separate Activation layer fuses like Dense(activation=…); a fused pair can be the output."""
    def layers():
        return [Dense(6, input_dim=4), Activation(activation), Dense(3, activation="gelu"), Dense(2),
                Activation(activation)]

    check_against_numpy(layers, 4, dtype, [1, 8], loss="mse")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("after", ["dropout", "batchnorm", "dropout-then-activation"])
def test_dense_followed_by_dropout_or_batchnorm(after, dtype):
    """Only an Activation right after a Dense fuses: Dropout and BatchNorm in between keep their ops."""
    def layers():
        middle = {"dropout": [Dropout(0.3)], "batchnorm": [BatchNorm(), Activation("softplus")],
                  "dropout-then-activation": [Dropout(0.25), Activation("leaky_relu")]}[after]
        return [Dense(10, input_dim=3)] + middle + [Dense(8, activation="relu"), Dense(1, activation="sigmoid")]

    check_against_numpy(layers, 3, dtype, [1, 5, 16])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_fused_pair_equals_unfused_ops(activation, use_bias, shape, dtype):
    """The fused Dense + Activation (whose forward overwrites z with act(z) when the derivative
    reads only the output: identity, sigmoid, tanh, relu) against the same layers run as separate
    ops (a Dropout(0) in between stops the fusion): the same bits, for a hidden pair and for one
    before a single-output Dense, in loss_and_grad and train_epochs."""
    d, width, batch = SHAPES[shape]

    def layers(fused=True):
        def pair(n, **kw):
            return ([Dense(n, activation=activation, use_bias=use_bias, **kw)] if fused else
                    [Dense(n, use_bias=use_bias, **kw), Dropout(0.0), Activation(activation)])
        return pair(width, input_dim=d) + pair(width) + [Dense(1, activation="sigmoid")]

    plans = [build_plan(layers(fused), d, "binary_crossentropy", O.SGD(0.1, momentum=0.9), dtype, 4)
             for fused in (True, False)]
    state = init_state(plans[0], layers(), 4)
    rng = np.random.default_rng(4)
    n = 29
    X = rng.normal(size=(n, d)).astype(dtype)
    y = (rng.random((n, 1)) > 0.5).astype(dtype)
    (loss, grad), (loss_unfused, grad_unfused) = (cpp.loss_and_grad(p, state.copy(), X, y) for p in plans)
    assert loss == loss_unfused and np.array_equal(grad, grad_unfused) and np.abs(grad).max() > 0
    orders = np.stack([np.arange(n), rng.permutation(n)])
    for batch_size in (1, 7, batch):
        trained = [state.copy() for _ in plans]
        stats = [cpp.train_epochs(p, s, X, y, orders, np.array([0.01, 0.005]), batch_size) for p, s in zip(plans, trained)]
        assert np.isfinite(stats[0]).all() and np.array_equal(stats[0], stats[1]), batch_size
        assert np.array_equal(trained[0].params, trained[1].params), batch_size
        assert np.array_equal(trained[0].slots, trained[1].slots), batch_size
