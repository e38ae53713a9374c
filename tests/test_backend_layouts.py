"""Every backend reads the user's X and y in any memory layout, in place, and never writes them:
a read-only memmap, a read-only array, Fortran order, strided and negatively strided views and
an unaligned buffer all give the results of the C-contiguous array, bit for bit (the same rows
gathered into the same batches), for training (batches of one row, which some passes copy
themselves, and of several), inference and single-batch gradients. The public API's version of
this (dtype conversion included) is in test_model.py."""

import numpy as np
import pytest

import densefit as df
from densefit import backends


def _problem(backend, tmp_path):
    model = df.Sequential([df.Dense(6, activation="tanh", input_dim=5), df.Dropout(0.2), df.BatchNorm(),
                           df.Dense(3, activation="softmax", kernel_regularizer=df.l1_l2(1e-4, 1e-3))],
                          seed=3, dtype="float64", backend=backend)
    model.compile(loss="categorical_crossentropy", optimizer=df.Adam(0.01, clipnorm=1.0))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(37, 5))
    y = rng.integers(0, 3, size=(37, 1)).astype(np.float64)
    model.fit(X, y, epochs=1, verbose=0)
    return model.plan, model.state, X, y


def layouts(X: np.ndarray, y: np.ndarray, tmp_path) -> dict:
    """The same values of (X, y) in every memory layout a user may pass."""
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    wide = np.zeros((2 * X.shape[0], 3 * X.shape[1]))
    wide[::2, ::3] = X
    unaligned = np.zeros(X.size * 8 + 1, np.uint8)[1:].view(np.float64).reshape(X.shape)
    unaligned[:] = X
    read_only = X.copy(), y.copy()
    for a in read_only:
        a.flags.writeable = False
    return {
        "read-only memmap": (np.load(tmp_path / "X.npy", mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r")),
        "read-only": read_only,
        "fortran": (np.asfortranarray(X), np.asfortranarray(y)),
        "strided": (wide[::2, ::3], np.repeat(y, 2, axis=0)[::2]),
        "negative strides": (X[::-1, ::-1].copy()[::-1, ::-1], y[::-1].copy()[::-1]),
        "unaligned": (unaligned, y),
    }


@pytest.mark.parametrize("batch_size", [1, 8])
@pytest.mark.parametrize("shuffled", [False, True])
def test_any_layout_gives_the_same_bits_and_is_never_written(backend, tmp_path, batch_size, shuffled):
    plan, state, X, y = _problem(backend, tmp_path)
    module = backends.get(backend)
    lrs = np.array([0.01, 0.005])
    orders = np.stack([np.random.default_rng(e).permutation(X.shape[0]) for e in range(2)]) if shuffled else None
    want = state.copy()
    want_stats = module.train_epochs(plan, want, X, y, orders, lrs, batch_size)
    want_predict = {b: module.predict(plan, want, X, b) for b in (1, X.shape[0] - 1)}
    want_loss, want_grad = module.loss_and_grad(plan, want, X, y)
    for name, (Xl, yl) in layouts(X, y, tmp_path).items():
        assert np.array_equal(Xl, X) and np.array_equal(yl, y), name
        X_before, y_before = np.array(Xl), np.array(yl)
        got = state.copy()
        np.testing.assert_array_equal(module.train_epochs(plan, got, Xl, yl, orders, lrs, batch_size), want_stats,
                                      err_msg=name)
        for buffer in ("params", "slots", "stats"):
            np.testing.assert_array_equal(getattr(got, buffer), getattr(want, buffer), err_msg=f"{name} {buffer}")
        for b, expected in want_predict.items():
            np.testing.assert_array_equal(module.predict(plan, got, Xl, b), expected, err_msg=f"{name} batch {b}")
        loss, grad = module.loss_and_grad(plan, got, Xl, yl)
        assert loss == want_loss, name
        np.testing.assert_array_equal(grad, want_grad, err_msg=name)
        np.testing.assert_array_equal(Xl, X_before, err_msg=name)
        np.testing.assert_array_equal(yl, y_before, err_msg=name)
