"""Sequential.fit's weighting and hold-out arguments: sample_weight (checked against PyTorch's
reduction="none" losses times the weights), class_weight, validation_split, weighted
validation_data and evaluate(sample_weight=), on every backend."""

import numpy as np
import pytest

import densefit as df

from conftest import TOLERANCE, relative_error

torch = pytest.importorskip("torch")

LOSSES = {
    "mse": ("identity", 3),
    "binary_crossentropy": ("sigmoid", 2),
    "categorical_crossentropy": ("softmax", 4),
}


def _model(loss, backend, dtype="float64", l2=0.0, per_weight=False, seed=0):
    activation, units = LOSSES[loss]
    model = df.Sequential([df.Dense(5, activation="tanh", input_dim=3, kernel_regularizer=df.l2(l2) if l2 else None),
                           df.Dense(units, activation=activation, kernel_regularizer=df.l2(l2) if l2 else None)],
                          seed=seed, dtype=dtype, backend=backend)
    model.compile(loss, df.SGD(0.1), penalty_per_weight=per_weight)
    return model


def _targets(loss, rng, n):
    if loss == "mse":
        return rng.normal(size=(n, 3))
    if loss == "binary_crossentropy":
        return (rng.random((n, 2)) > 0.5).astype(float)
    return rng.integers(0, 4, n)


def _torch_loss_and_grad(model, loss, X, y, w, l2, per_weight):
    W0, b0, W1, b1 = [torch.tensor(a, requires_grad=True) for a in model.get_weights()]
    z = torch.tanh(torch.tensor(X) @ W0 + b0) @ W1 + b1
    if loss == "mse":
        per_row = ((z - torch.tensor(y)) ** 2).mean(dim=1)
    elif loss == "binary_crossentropy":
        per_row = torch.nn.functional.binary_cross_entropy_with_logits(z, torch.tensor(y), reduction="none").mean(dim=1)
    else:
        per_row = torch.nn.functional.cross_entropy(z, torch.tensor(y), reduction="none")
    wt = torch.tensor(w)
    value = (per_row * wt).sum() / wt.sum()
    penalty = l2 * ((W0 ** 2).sum() + (W1 ** 2).sum())
    value = value + (penalty / wt.sum() if per_weight else penalty)
    value.backward()
    return float(value.detach()), [t.grad.numpy() for t in (W0, b0, W1, b1)]


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("per_weight", [False, True])
def test_weighted_loss_and_gradient_match_torch(backend, loss, per_weight, rng):
    X = rng.normal(size=(13, 3))
    y = _targets(loss, rng, 13)
    w = rng.uniform(0, 3, 13)
    w[[2, 7]] = 0
    model = _model(loss, backend, l2=0.05, per_weight=per_weight)
    value, grads = model.loss_and_grad(X, y, sample_weight=w)
    ref_value, ref_grads = _torch_loss_and_grad(model, loss, X, y, w, 0.05, per_weight)
    assert abs(value - ref_value) <= 1e-12 * abs(ref_value)
    for g, r in zip(grads, ref_grads):
        assert relative_error(g, r) < 1e-12


@pytest.mark.parametrize("loss", list(LOSSES))
def test_weight_two_equals_a_duplicated_row_in_full_batch_training(backend, loss, rng):
    X = rng.normal(size=(20, 3))
    y = _targets(loss, rng, 20)
    w = np.ones(20)
    w[[1, 5]] = 2
    a, b = _model(loss, backend, l2=0.01), _model(loss, backend, l2=0.01)
    ha = a.fit(X, y, epochs=10, batch_size=None, sample_weight=w, verbose=0)
    hb = b.fit(np.vstack([X, X[[1, 5]]]), np.concatenate([y, y[[1, 5]]]), epochs=10, batch_size=None, verbose=0)
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(p, q, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-9)


@pytest.mark.parametrize("loss", ["binary_crossentropy", "categorical_crossentropy"])
def test_class_weight_is_the_matching_sample_weight_bit_for_bit(backend, loss, rng):
    X = rng.normal(size=(40, 3))
    if loss == "binary_crossentropy":
        y, weights = (rng.random(40) > 0.5).astype(float), {0: 0.5, 1: 3.0}
        model = lambda: df.Sequential([df.Dense(4, activation="relu", input_dim=3), df.Dense(1, activation="sigmoid")],  # noqa: E731
                                      seed=0, backend=backend)
    else:
        y, weights = rng.integers(0, 4, 40), {0: 2.0, 3: 0.25}  # class 1 and 2 keep weight 1
        model = lambda: df.Sequential([df.Dense(4, activation="relu", input_dim=3), df.Dense(4, activation="softmax")],  # noqa: E731
                                      seed=0, backend=backend)
    a, b = model(), model()
    for m in (a, b):
        m.compile(loss, "adam")
    a.fit(X, y, epochs=3, batch_size=8, class_weight=weights, verbose=0)
    b.fit(X, y, epochs=3, batch_size=8, sample_weight=[weights.get(int(label), 1.0) for label in y], verbose=0)
    assert all(np.array_equal(p, q) for p, q in zip(a.get_weights(), b.get_weights()))
    if loss == "categorical_crossentropy":  # one-hot targets give the same labels
        c = model()
        c.compile(loss, "adam")
        c.fit(X, np.eye(4)[y], epochs=3, batch_size=8, class_weight=weights, verbose=0)
        assert all(np.array_equal(p, q) for p, q in zip(a.get_weights(), c.get_weights()))


def test_validation_split_holds_out_the_last_rows(backend, rng):
    X, y = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    a, b = _model("mse", backend), _model("mse", backend)
    ha = a.fit(X, y, epochs=4, batch_size=8, validation_split=0.2, verbose=0)
    hb = b.fit(X[:40], y[:40], epochs=4, batch_size=8, validation_data=(X[40:], y[40:]), verbose=0)
    assert ha.history == hb.history and len(ha.history["val_loss"]) == 4


def test_weighted_validation_and_evaluate(backend, rng):
    X, y = rng.normal(size=(30, 3)), rng.integers(0, 4, 30)
    w = rng.uniform(0, 2, 30)
    model = _model("categorical_crossentropy", backend)
    model.fit(X[:20], y[:20], epochs=2, batch_size=5, verbose=0)
    unweighted = model.evaluate(X, y)["loss"]
    weighted = model.evaluate(X, y, sample_weight=w)["loss"]
    per_row = [model.evaluate(X[i:i + 1], y[i:i + 1])["loss"] for i in range(30)]
    assert abs(weighted - np.dot(per_row, w) / w.sum()) < TOLERANCE["float64"] * abs(weighted)
    assert abs(unweighted - np.mean(per_row)) < TOLERANCE["float64"] * abs(unweighted)
    h = model.fit(X[:20], y[:20], epochs=1, validation_data=(X, y, w), verbose=0)
    assert abs(h.history["val_loss"][0] - model.evaluate(X, y, sample_weight=w)["loss"]) < 1e-12


def test_bad_weights_and_splits_are_refused_before_training(backend, rng):
    X, y = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    model = _model("mse", backend)
    before = model.get_weights()
    for kwargs, match in [
        (dict(sample_weight=np.ones(9)), "shape"),
        (dict(sample_weight=-np.ones(10)), "non-negative"),
        (dict(sample_weight=np.zeros(10)), "zero everywhere"),
        (dict(sample_weight=np.full(10, np.nan)), "NaN"),
        (dict(sample_weight=np.full(10, 1e39)), "NaN or infinity"),  # overflows float32 only
        (dict(class_weight={0: 1.0}), "class labels"),
        (dict(validation_split=0.95), "no training row"),
        (dict(validation_split=1.5), r"\(0, 1\)"),
        (dict(validation_split=0.5, validation_data=(X, y)), "not both"),
        (dict(validation_data=(X, y, np.ones(3))), "validation_data sample_weight"),
    ]:
        if match == "NaN or infinity":
            m = _model("mse", backend, dtype="float32")
            with pytest.raises(ValueError, match=match):
                m.fit(X, y, verbose=0, **kwargs)
            continue
        with pytest.raises((ValueError, TypeError), match=match):
            model.fit(X, y, verbose=0, **kwargs)
    assert all(np.array_equal(p, q) for p, q in zip(before, model.get_weights()))
    assert model.state.step == 0
