"""What is specific to the numpy backend: ``train_epochs`` computes the epoch's loss and correct
count from logits kept over many batches (``numpy_.LOSS_ROWS`` rows at a time) instead of per batch.
Here it is checked against the per-batch computation it replaced, written out below, across losses,
output widths, dtypes, batch sizes (a short last batch, one batch, one row), buffer sizes (a flush
every batch, a buffer that is not a multiple of the batch, several flushes per epoch), shuffled and
unshuffled epochs, dropout, BatchNorm and penalties."""

from __future__ import annotations

import numpy as np
import pytest

from densefit import losses as L
from densefit import optimizers as O
from densefit.backends import numpy_
from densefit.layers import BatchNorm, Dense, Dropout
from densefit.plan import build_plan, init_state

SEED = 3


def per_batch_train_epochs(plan, state, X, y, orders, lrs, batch_size):
    """The reference: ``train_epochs`` as it was, the loss and correct count of every batch computed at its step."""
    n = X.shape[0]
    out = np.zeros((len(lrs), 4))
    step = state.step
    for e, lr in enumerate(lrs):
        order = np.arange(n) if orders is None else orders[e]
        loss_sum, right, steps = 0.0, 0, 0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            xb, yb = X[idx], y[idx]
            acts, caches = numpy_.forward(plan, state, xb, training=True, step=step)
            value, correct, dz = numpy_.loss_and_dlogits(plan.loss, acts[-1], yb)
            grad = np.empty(plan.n_params, dtype=plan.dtype)
            numpy_.backward(plan, state.params, acts, caches, dz, grad)
            value += numpy_.add_penalty_gradient(plan, state.params, grad)
            numpy_.clip(plan, grad)
            numpy_.update(plan, state, grad, float(lr), step + 1)
            step += 1
            loss_sum += value * xb.shape[0]
            right += correct
            steps += 1
        out[e] = (loss_sum, right, n, steps)
    return out


def make(loss, k, dtype, n, hidden):
    rng = np.random.default_rng(SEED)
    out_act = {"mse": None, "binary_crossentropy": "sigmoid", "categorical_crossentropy": "softmax"}[loss]
    layers = [Dense(6, activation="relu", kernel_regularizer={"l2": 0.01})]
    if hidden:
        layers += [BatchNorm(momentum=0.2), Dropout(0.3)]
    layers += [Dense(k, activation=out_act)]
    plan = build_plan(layers, 4, loss, O.SGD(0.05, momentum=0.5, clipnorm=1.0), dtype, SEED)
    state = init_state(plan, layers, SEED)
    state.step = 5
    X = rng.normal(size=(n, 4)).astype(dtype)
    if loss == "mse":
        y = rng.normal(size=(n, k))
    elif loss == "binary_crossentropy":
        y = (rng.random(size=(n, k)) < 0.5).astype(float)
    else:  # class indices
        y = rng.integers(0, k, size=(n, 1)).astype(float)
    return plan, state, X, y.astype(dtype)


CASES = [("mse", 1), ("mse", 3), ("binary_crossentropy", 1), ("binary_crossentropy", 2),
         ("categorical_crossentropy", 4)]


@pytest.mark.parametrize("loss,k", CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_size,loss_rows", [(1, 1), (7, 1), (7, 10), (7, 21), (5, 3), (37, 16), (4, None)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_deferred_loss_gives_the_per_batch_history(monkeypatch, loss, k, dtype, batch_size, loss_rows, shuffle):
    """37 rows: batches of 7 leave a last batch of 2; buffers of 1 row (flush before every batch),
    10 and 21 rows (not multiples of 7: flushes mid-epoch at varying points), 3 rows with batches
    of 5 (the buffer holds at least one batch), one full batch, and the default size."""
    if loss_rows is not None:
        monkeypatch.setattr(numpy_, "LOSS_ROWS", loss_rows)
    n, epochs = 37, 3
    plan, state, X, y = make(loss, k, dtype, n, hidden=batch_size > 1)
    rng = np.random.default_rng(1)
    orders = np.stack([rng.permutation(n) for _ in range(epochs)]) if shuffle else None
    lrs = np.array([0.05, 0.04, 0.03])
    got_state, want_state = state.copy(), state.copy()
    got = numpy_.train_epochs(plan, got_state, X, y, orders, lrs, batch_size)
    want = per_batch_train_epochs(plan, want_state, X, y, orders, lrs, batch_size)
    np.testing.assert_array_equal(got[:, 1:], want[:, 1:])  # correct, seen, steps
    if loss != "mse":
        assert want[:, 1].sum() > 0  # the correct counts are really compared
    # the per-element terms are the same numbers; only the float64 sums are grouped differently
    np.testing.assert_allclose(got[:, 0], want[:, 0], rtol=1e-12)
    # the steps do not depend on the loss: bit for bit the same training
    np.testing.assert_array_equal(got_state.params, want_state.params)
    np.testing.assert_array_equal(got_state.slots, want_state.slots)
    np.testing.assert_array_equal(got_state.stats, want_state.stats)


@pytest.mark.parametrize("loss,k", CASES + [("categorical_crossentropy-onehot", 3)])
def test_loss_sum_and_correct_of_many_batches_is_the_sum_over_batches(loss, k):
    """``loss_sum_and_correct`` on the rows of several batches at once is the sum of the batches'
    ``loss_and_dlogits`` values times their rows, and its gradient part is unchanged."""
    rng = np.random.default_rng(0)
    loss_code = L.loss_code(loss.split("-")[0])
    z = rng.normal(size=(50, k)).astype(np.float32) * 3
    if loss.endswith("onehot"):
        y = np.eye(k, dtype=np.float32)[rng.integers(0, k, 50)]
    elif loss == "categorical_crossentropy":
        y = rng.integers(0, k, size=(50, 1)).astype(np.float32)
    elif loss == "binary_crossentropy":
        y = (rng.random((50, k)) < 0.5).astype(np.float32)
    else:
        y = rng.normal(size=(50, k)).astype(np.float32)
    total, correct = numpy_.loss_sum_and_correct(loss_code, z, y)
    want_total, want_correct = 0.0, 0
    for start in range(0, 50, 8):
        value, right, dz = numpy_.loss_and_dlogits(loss_code, z[start:start + 8], y[start:start + 8])
        want_total += value * z[start:start + 8].shape[0]
        want_correct += right
        np.testing.assert_array_equal(dz, numpy_.dlogits(loss_code, z[start:start + 8], y[start:start + 8]))
    assert correct == want_correct
    assert total == pytest.approx(want_total, rel=1e-12)
