"""The cpp backend's fused pass for a single Dense layer with one output (linear_pass.hpp).

A model that is exactly one ``Dense(1)`` trains through LinearPass; a ``Dropout(0.0)`` in front
of it makes a two-op plan, which takes the general path with the same math. Both are compared
with the numpy reference backend (DESIGN tolerances) and with each other: parameters, optimizer
slots, the loss/accuracy history, across dtypes, losses, optimizers, penalties, clipping, batch
sizes that leave a smaller last batch or several row blocks, shuffled orders, strided X, one and
two threads, and a NaN found in a later batch.
"""

from __future__ import annotations

import numpy as np
import pytest

import densefit as df
from conftest import assert_runs_close

pytestmark = pytest.mark.skipif("cpp" not in df.available_backends(), reason="the cpp backend is not available")

OUTPUT = {"mse": None, "binary_crossentropy": "sigmoid", "categorical_crossentropy": "softmax"}
# categorical cross-entropy needs two outputs or more, so the fused path (one output) sees mse and
# binary cross-entropy only


def _data(n: int, d: int, loss: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    z = X @ rng.normal(size=d) / np.sqrt(d) + 0.3 * rng.normal(size=n)
    y = z if loss == "mse" else (z > 0).astype(np.float64)
    return X, y[:, None]


def _optimizer(name: str):
    return {
        "sgd": lambda: df.SGD(0.05),
        "momentum": lambda: df.SGD(0.05, momentum=0.9, nesterov=True),
        "adam": lambda: df.Adam(1e-2),
        "adamw-clipnorm": lambda: df.AdamW(1e-2, weight_decay=0.1, clipnorm=0.05),
        "rmsprop-clipvalue": lambda: df.RMSprop(1e-2, clipvalue=0.01),
    }[name]()


def _train(backend, X, y, loss, dtype, optimizer, batch_size, epochs=2, general=False, shuffle=False,
           regularizer=None, use_bias=True, threads=1):
    layers = [df.Dense(1, OUTPUT[loss], use_bias=use_bias, kernel_regularizer=regularizer)]
    if general:
        layers = [df.Dropout(0.0)] + layers
    model = df.Sequential(layers, seed=3, dtype=dtype, backend=backend)
    metrics = ["accuracy"] if loss == "binary_crossentropy" else None
    model.compile(loss, _optimizer(optimizer), metrics=metrics)
    df.set_num_threads(threads)
    try:
        history = model.fit(X, y, epochs=epochs, batch_size=batch_size, shuffle=shuffle, verbose=0).history
    finally:
        df.set_num_threads(1)
    return model, history


CASES = [  # (n, d, batch_size): one row block, several, narrow rows, a smaller last batch, whole batch
    (300, 100, 256),
    (301, 100, 64),
    (200, 37, 7),
    (150, 1, 16),
    (120, 5, 120),
    (90, 700, 32),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ["mse", "binary_crossentropy"])
@pytest.mark.parametrize("n,d,batch_size", CASES)
def test_fused_pass_matches_numpy_and_the_general_path(dtype, loss, n, d, batch_size):
    X, y = _data(n, d, loss)
    fused = _train("cpp", X, y, loss, dtype, "momentum", batch_size)
    assert_runs_close(fused, _train("numpy", X, y, loss, dtype, "momentum", batch_size), dtype, "vs numpy")
    assert_runs_close(fused, _train("cpp", X, y, loss, dtype, "momentum", batch_size, general=True), dtype, "vs general")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw-clipnorm", "rmsprop-clipvalue"])
@pytest.mark.parametrize("regularizer", [None, "l1", "l2", "l1_l2"])
def test_optimizers_penalties_and_clipping(dtype, optimizer, regularizer):
    X, y = _data(257, 30, "binary_crossentropy", seed=1)
    reg = {None: None, "l1": df.regularizers.l1(1e-3), "l2": df.regularizers.l2(1e-2),
           "l1_l2": df.regularizers.l1_l2(1e-3, 1e-2)}[regularizer]
    args = ("binary_crossentropy", dtype, optimizer, 32)
    fused = _train("cpp", X, y, *args, regularizer=reg)
    assert_runs_close(fused, _train("numpy", X, y, *args, regularizer=reg), dtype, "vs numpy")
    assert_runs_close(fused, _train("cpp", X, y, *args, regularizer=reg, general=True), dtype, "vs general")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_no_bias(dtype):
    X, y = _data(200, 12, "binary_crossentropy", seed=2)
    for loss in ("binary_crossentropy", "mse"):
        args = (loss, dtype, "adam", 16)
        fused = _train("cpp", X, y, *args, use_bias=False)
        assert_runs_close(fused, _train("numpy", X, y, *args, use_bias=False), dtype, loss)
        assert_runs_close(fused, _train("cpp", X, y, *args, use_bias=False, general=True), dtype, loss)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ["mse", "categorical_crossentropy"])
def test_several_outputs_stay_on_the_general_path(dtype, loss):
    """K > 1 (categorical cross-entropy needs it) is not fused; loss.hpp's row-range refactor serves it."""
    rng = np.random.default_rng(6)
    X = rng.normal(size=(203, 40))
    labels = np.argmax(X[:, :3] + 0.3 * rng.normal(size=(203, 3)), axis=1)
    y = np.eye(3)[labels] if loss == "categorical_crossentropy" else X[:, :3] * 2.0
    models = []
    for backend in ("cpp", "numpy"):
        model = df.Sequential([df.Dense(3, OUTPUT[loss])], seed=3, dtype=dtype, backend=backend)
        model.compile(loss, df.Adam(1e-2))
        models.append((model, model.fit(X, y, epochs=2, batch_size=50, shuffle=False, verbose=0).history))
    assert_runs_close(models[0], models[1], dtype)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", ["strided", "fortran", "shuffled"])
def test_shuffled_strided_and_threads(threads, layout):
    X, y = _data(1000, 200, "binary_crossentropy", seed=4)
    X = X.astype(np.float32)
    shuffle = layout == "shuffled"
    if layout == "strided":
        X = X[:, ::2]
    elif layout == "fortran":
        X = np.asfortranarray(X)
    args = ("binary_crossentropy", "float32", "adam", 128)
    fused = _train("cpp", X, y, *args, shuffle=shuffle, threads=threads)
    assert_runs_close(fused, _train("numpy", X, y, *args, shuffle=shuffle), "float32", "vs numpy")
    assert_runs_close(fused, _train("cpp", X, y, *args, shuffle=shuffle, general=True), "float32", "vs general")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("d", [3, 100])
def test_non_finite_row_in_a_later_batch(dtype, bad, d):
    X, y = _data(700, d, "binary_crossentropy", seed=5)
    X = X.astype(dtype)
    model = df.Sequential([df.Dense(1, "sigmoid")], seed=0, dtype=dtype, backend="cpp")
    model.compile("binary_crossentropy", df.SGD(0.1, momentum=0.9))
    model.fit(X[:100], y[:100], epochs=1, batch_size=32, verbose=0)  # momentum slots in use
    before = (model.state.params.copy(), model.state.slots.copy(), model.state.step, model.state.epoch)
    X[613, d // 2] = bad  # in the third batch of 256, past its first row block
    with pytest.raises(ValueError, match=r"X contains NaN or infinity \(row 613\)"):
        model.fit(X, y, epochs=2, batch_size=256, shuffle=False, verbose=0)
    np.testing.assert_array_equal(model.state.params, before[0])
    np.testing.assert_array_equal(model.state.slots, before[1])
    assert (model.state.step, model.state.epoch) == before[2:]


@pytest.mark.parametrize("d", [3, 100])
def test_finite_row_whose_logit_overflows_is_not_rejected(d):
    """The check reads z first: a finite row with an infinite z must still pass it."""
    X, y = _data(300, d, "mse", seed=7)
    X = X.astype(np.float32)
    X[250] = np.float32(3e38)  # finite, but x · W (W all ones) overflows float32
    model = df.Sequential([df.Dense(1, kernel_initializer="ones")], seed=0, dtype="float32", backend="cpp")
    model.compile("mse", df.SGD(1e-30))
    with pytest.raises(df.TrainingDiverged):  # no ValueError: X passes; the infinite loss is divergence
        model.fit(X, y, epochs=1, batch_size=64, shuffle=False, verbose=0)
    X[260, d - 1] = np.nan  # a later row of the same batch is rejected, by its own number
    model = df.Sequential([df.Dense(1, kernel_initializer="ones")], seed=0, dtype="float32", backend="cpp")
    model.compile("mse", df.SGD(1e-30))
    with pytest.raises(ValueError, match=r"\(row 260\)"):
        model.fit(X, y, epochs=1, batch_size=64, shuffle=False, verbose=0)
