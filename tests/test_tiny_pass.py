"""The cpp backend's pass for tiny networks (tiny_pass.hpp): Dense layers of at most 7 units and
inputs, batches of at most 7 rows (W1: 2-3-4-1 relu, batch 1).

The pass trains a zero-padded copy of the parameters and runs every sum in the general path's
order, so it must give the general path's results bit for bit. A ``Dropout(0.0)`` in front of the
network makes a plan the pass does not take (same math), so each case trains both and compares
parameters, optimizer slots and the loss/accuracy history exactly; the numpy reference backend is
compared within DESIGN's tolerances. Covered: every hidden activation, both dtypes, the three
losses (one or several outputs, class-index and one-hot targets), every optimizer, penalties,
clipping, no bias, widths 1 and 7 (and 8, which is not tiny), batch sizes 1-7 with a smaller last
batch, shuffled rows, strided X, training continued over several fit calls, and a NaN row.
"""

from __future__ import annotations

import numpy as np
import pytest

import densefit as df
from conftest import assert_runs_close, relative_error, TOLERANCE

_core = pytest.importorskip("densefit._core", reason="the cpp backend is not available")

from densefit.backends import cpp  # noqa: E402

OUTPUT = {"mse": None, "binary_crossentropy": "sigmoid", "categorical_crossentropy": "softmax"}

OPTIMIZERS = {
    "sgd": lambda: df.SGD(0.05),
    "momentum": lambda: df.SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: df.Adam(1e-2),
    "adamw-clipnorm": lambda: df.AdamW(1e-2, weight_decay=0.1, clipnorm=0.05),
    "rmsprop-clipvalue": lambda: df.RMSprop(1e-2, clipvalue=0.01),
    "adagrad": lambda: df.Adagrad(0.05),
}


def _data(n, d, loss, K=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    Z = X @ rng.normal(size=(d, K)) / np.sqrt(d) + 0.3 * rng.normal(size=(n, K))
    if loss == "mse":
        return X, Z
    if loss == "binary_crossentropy":
        return X, (Z > 0).astype(np.float64)
    return X, np.argmax(Z, axis=1)


def _model(widths, d, loss, activation="relu", backend="cpp", dtype="float64", general=False, regularizer=None,
           use_bias=True, alpha=None):
    layers = [df.Dense(w, activation, input_dim=d if i == 0 else None, use_bias=use_bias, alpha=alpha,
                       kernel_regularizer=regularizer) for i, w in enumerate(widths[:-1])]
    layers.append(df.Dense(widths[-1], OUTPUT[loss], input_dim=d if len(widths) == 1 else None, use_bias=use_bias,
                           kernel_regularizer=regularizer))
    if general:
        layers = [df.Dropout(0.0)] + layers
    return df.Sequential(layers, seed=3, dtype=dtype, backend=backend)


def _fit(model, X, y, loss, optimizer, batch_size, epochs=2, shuffle=False, init=None):
    """Compile and fit from the weights init (a get_weights() list; None: the model's own)."""
    metrics = ["accuracy"] if loss != "mse" else None
    model.compile(loss, OPTIMIZERS[optimizer](), metrics=metrics)
    model.fit(X, y, epochs=0, verbose=0)  # builds a model whose first layer has no input_dim
    if init is not None:
        model.set_weights(init)
    history = model.fit(X, y, epochs=epochs, batch_size=batch_size, shuffle=shuffle, verbose=0).history
    return model, history


def _assert_identical(tiny, general):
    (mt, ht), (mg, hg) = tiny, general
    np.testing.assert_array_equal(mt.state.params, mg.state.params)
    np.testing.assert_array_equal(mt.state.slots, mg.state.slots)
    assert ht.keys() == hg.keys()
    for key in ht:
        np.testing.assert_array_equal(ht[key], hg[key], err_msg=key)


# TinyPass is compiled in for AVX-512 builds only (tiny_pass.hpp); elsewhere the same networks
# take the general path, and every comparison below still holds.
TINY = "tiny" if _core.build_info()["tiny_pass"] else "general"


def _pass(model, batch_size, n):
    return cpp._net(model.plan).training_pass(min(batch_size, n))


def _three_ways(widths, d, loss, dtype, optimizer, batch_size, K=1, n=61, seed=0, epochs=2, shuffle=False,
                X=None, expect=TINY, **model_args):
    """Train the cpp backend (through the pass `expect`), its general path and the numpy backend;
    compare."""
    Xd, y = _data(n, d, loss, K=K, seed=seed)
    X = Xd if X is None else X
    runs = {}
    init = _model(widths, d, loss, dtype=dtype, **model_args)
    init.compile(loss, "sgd")
    init = init.get_weights()  # the same start whatever the layer list
    for name, backend, general in [("tiny", "cpp", False), ("general", "cpp", True), ("numpy", "numpy", False)]:
        model = _model(widths, d, loss, backend=backend, dtype=dtype, general=general, **model_args)
        runs[name] = _fit(model, X, y, loss, optimizer, batch_size, epochs=epochs, shuffle=shuffle, init=init)
    assert _pass(runs["tiny"][0], batch_size, n) == expect
    assert _pass(runs["general"][0], batch_size, n) == "general"
    _assert_identical(runs["tiny"], runs["general"])
    assert_runs_close(runs["tiny"], runs["numpy"], dtype, "vs numpy")
    return runs


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", [df.activations.REGISTRY[code].name for code in df.activations.STANDALONE])
@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_activations_and_batch_sizes(dtype, activation, batch_size):
    _three_ways([3, 4, 1], 2, "binary_crossentropy", dtype, "momentum", batch_size, activation=activation)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("regularizer", [None, "l1_l2"])
def test_optimizers_penalties_and_clipping(dtype, optimizer, regularizer):
    reg = df.regularizers.l1_l2(1e-3, 1e-2) if regularizer else None
    _three_ways([5, 3, 1], 4, "binary_crossentropy", dtype, optimizer, 2, regularizer=reg)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss, K", [("mse", 1), ("mse", 3), ("categorical_crossentropy", 4),
                                     ("binary_crossentropy", 2)])
def test_losses_and_several_outputs(dtype, loss, K):
    _three_ways([6, K], 3, loss, dtype, "adam", 4, K=K)


def test_one_hot_targets():
    X, labels = _data(40, 3, "categorical_crossentropy", K=3, seed=2)
    Y = np.eye(3)[labels]
    init = _model([4, 3], 3, "categorical_crossentropy")
    init.compile("categorical_crossentropy", "sgd")
    _assert_identical(*[_fit(_model([4, 3], 3, "categorical_crossentropy", general=general), X, Y,
                             "categorical_crossentropy", "sgd", 5, init=init.get_weights()) for general in (False, True)])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("widths, d", [([1], 1), ([7, 7, 7], 7), ([2, 1], 7), ([7, 1], 1), ([7, 3, 2, 1], 5),
                                        ([8, 8, 8], 8), ([2, 1], 8), ([8, 1], 1), ([3, 8, 2], 2)])
def test_widths_at_the_edges(dtype, widths, d):
    """Widths up to 7 are tiny, 8 is not; one Dense with one output is LinearPass's."""
    expect = "linear" if widths == [1] else TINY if max(widths + [d]) < 8 else "general"
    _three_ways(widths, d, "mse", dtype, "momentum", 3, K=widths[-1], expect=expect)


def test_batches_of_eight_are_not_tiny():
    _three_ways([3, 4, 1], 2, "binary_crossentropy", "float32", "adam", 8, expect="general")
    _three_ways([3, 4, 1], 2, "binary_crossentropy", "float64", "adam", 9, expect="general")
    _three_ways([3, 4, 1], 2, "binary_crossentropy", "float64", "adam", 20, n=7)  # a batch of all 7 rows


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_no_bias_and_alpha(dtype):
    _three_ways([4, 3, 1], 2, "binary_crossentropy", dtype, "adam", 1, use_bias=False)
    _three_ways([4, 1], 2, "binary_crossentropy", dtype, "adam", 1, activation="leaky_relu", alpha=0.3)
    _three_ways([4, 1], 2, "binary_crossentropy", dtype, "adam", 1, activation="elu", alpha=0.5)


def test_shuffled_and_strided_rows():
    X, _ = _data(61, 6, "binary_crossentropy")
    _three_ways([3, 4, 1], 3, "binary_crossentropy", "float32", "sgd", 1, shuffle=True)
    _three_ways([3, 4, 1], 3, "binary_crossentropy", "float64", "momentum", 5, X=X[:, ::2])
    _three_ways([3, 4, 1], 3, "binary_crossentropy", "float64", "momentum", 5, X=np.asfortranarray(X[:, :3]))


def test_training_continues_across_fit_calls():
    """The padded copy is written back after each call: two calls of one epoch are one of two."""
    X, y = _data(50, 2, "binary_crossentropy")
    once = _model([3, 4, 1], 2, "binary_crossentropy")
    once.compile("binary_crossentropy", df.Adam(1e-2))
    once.fit(X, y, epochs=2, batch_size=1, shuffle=False, verbose=0)
    twice = _model([3, 4, 1], 2, "binary_crossentropy")
    twice.compile("binary_crossentropy", df.Adam(1e-2))
    for _ in range(2):
        twice.fit(X, y, epochs=1, batch_size=1, shuffle=False, verbose=0)
    np.testing.assert_array_equal(once.state.params, twice.state.params)
    np.testing.assert_array_equal(once.state.slots, twice.state.slots)


def test_switching_backend_mid_training():
    """The padded copy is the cpp backend's alone: a model moved to numpy and back goes on exactly."""
    X, y = _data(40, 2, "binary_crossentropy")
    ref = _model([3, 4, 1], 2, "binary_crossentropy", backend="numpy")
    ref.compile("binary_crossentropy", df.SGD(0.05, momentum=0.9))
    ref.fit(X, y, epochs=3, batch_size=1, shuffle=False, verbose=0)
    model = _model([3, 4, 1], 2, "binary_crossentropy")
    model.compile("binary_crossentropy", df.SGD(0.05, momentum=0.9))
    for backend in ("cpp", "numpy", "cpp"):
        model.set_backend(backend)
        model.fit(X, y, epochs=1, batch_size=1, shuffle=False, verbose=0)
    assert relative_error(model.state.params, ref.state.params) < TOLERANCE["float64"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_row_is_named_and_the_model_untouched(dtype, bad):
    X, y = _data(60, 2, "binary_crossentropy", seed=5)
    X = X.astype(dtype)
    model = _model([3, 4, 1], 2, "binary_crossentropy", dtype=dtype)
    model.compile("binary_crossentropy", df.SGD(0.1, momentum=0.9))
    model.fit(X[:10], y[:10], epochs=1, batch_size=1, verbose=0)  # momentum slots in use
    before = (model.state.params.copy(), model.state.slots.copy())
    X[37, 1] = bad
    with pytest.raises(ValueError, match=r"X contains NaN or infinity \(row 37\)"):
        model.fit(X, y, epochs=2, batch_size=3, shuffle=False, verbose=0)
    np.testing.assert_array_equal(model.state.params, before[0])
    np.testing.assert_array_equal(model.state.slots, before[1])
