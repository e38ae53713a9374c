"""``Sequential.loss_and_grad`` of every backend against PyTorch autograd on the same network,
weights and data (float64 to 1e-10 relative, float32 to 1e-4), and against central finite
differences (the torch twin lives in tests/torch_reference.py)."""

import numpy as np
import pytest
from conftest import TOLERANCE, relative_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import densefit as df

from torch_reference import ACTIVATIONS, FUSED_OUTPUT, TorchReference, randomize, targets


def build(layers, loss, backend, dtype="float64", seed=7, optimizer=None):
    model = df.Sequential(layers, seed=seed, dtype=dtype, backend=backend)
    model.compile(loss=loss, optimizer=optimizer or df.SGD(0.1))
    return model


def assert_matches_torch(model, X, y, tol=None):
    """loss and every gradient array of ``model`` agree with torch autograd."""
    tol = tol if tol is not None else TOLERANCE[model.dtype.name]
    ref = TorchReference(model)
    loss, grads = model.loss_and_grad(X, y)
    ref_loss, ref_grads = ref.loss_and_grad(X, y)
    assert relative_error(loss, ref_loss) < tol, (loss, ref_loss)
    assert_grads_close(grads, ref_grads, tol, model.dtype)
    return loss, grads


def assert_grads_close(grads, ref_grads, tol, dtype):
    """Each gradient array to ``tol`` relative to its own largest element; an array that is zero
    in exact arithmetic (a Dense bias right before BatchNorm) to ``tol`` of the largest gradient."""
    assert len(grads) == len(ref_grads)
    scale = max(np.abs(r).max() for r in ref_grads)
    assert scale > 0
    for i, (g, r) in enumerate(zip(grads, ref_grads)):
        assert g.shape == r.shape, i
        assert g.dtype == dtype
        assert np.all(np.isfinite(g))
        if np.abs(r).max() > 1e-8 * scale:
            assert relative_error(g, r) < tol, (i, relative_error(g, r))
        else:
            assert np.abs(g).max() < tol * scale, (i, np.abs(g).max() / scale)


ACTIVATION_CASES = [(name, None) for name in ACTIVATIONS] + [("leaky_relu", 0.2), ("elu", 0.5)]


# ------------------------------------------------------------------------------- activations


@pytest.mark.parametrize("form", ["dense", "layer"])
@pytest.mark.parametrize("activation,alpha", ACTIVATION_CASES, ids=[f"{a}-{al}" for a, al in ACTIVATION_CASES])
def test_activation(backend, activation, alpha, form, rng):
    if form == "dense":
        hidden = [df.Dense(6, activation=activation, alpha=alpha, input_dim=4),
                  df.Dense(5, activation=activation, alpha=alpha)]
    else:
        hidden = [df.Dense(6, input_dim=4), df.Activation(activation, alpha=alpha),
                  df.Dense(5), df.Activation(activation, alpha=alpha)]
    model = build(hidden + [df.Dense(3)], "mse", backend)
    randomize(model, rng, scale=1.0)
    X = rng.normal(size=(10, 4))
    assert_matches_torch(model, X, targets("mse", 10, 3, rng))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_activation_large_inputs(backend, activation):
    """Pre-activations out to ±40: no overflow in sigmoid/softplus/elu, the exact derivatives."""
    model = build([df.Dense(8, activation=activation, input_dim=1), df.Dense(2)], "mse", backend)
    W = np.linspace(-40, 40, 8).reshape(1, 8) + 0.1
    model.set_weights([W, np.zeros(8), np.random.default_rng(0).normal(size=(8, 2)), np.zeros(2)])
    X = np.array([[1.0], [0.5], [-1.0]])
    assert_matches_torch(model, X, np.ones((3, 2)))


def test_custom_alpha_is_used(backend, rng):
    """leaky_relu with α = 0.2 is not the default α = 0.01 (the α reaches the backend)."""
    grads = []
    for alpha in (None, 0.2):
        model = build([df.Dense(6, activation="leaky_relu", alpha=alpha, input_dim=4), df.Dense(2)], "mse", backend)
        randomize(model, np.random.default_rng(0), scale=1.0)
        X = np.random.default_rng(1).normal(size=(8, 4))
        grads.append(model.loss_and_grad(X, np.ones((8, 2)))[1][0])
    assert relative_error(grads[0], grads[1]) > 1e-3


# ------------------------------------------------------------------------------- losses

LOSS_CASES = [
    ("mse", 3, False, "dense"),
    ("mse", 1, False, "dense"),
    ("binary_crossentropy", 1, False, "dense"),
    ("binary_crossentropy", 3, False, "dense"),
    ("binary_crossentropy", 2, False, "layer"),
    ("categorical_crossentropy", 4, False, "dense"),
    ("categorical_crossentropy", 4, True, "dense"),
    ("categorical_crossentropy", 3, False, "layer"),
    ("categorical_crossentropy", 2, True, "layer"),
]


@pytest.mark.parametrize("loss,k,one_hot,form", LOSS_CASES,
                         ids=[f"{l}-{k}{'-onehot' if o else ''}-{f}" for l, k, o, f in LOSS_CASES])
def test_loss(backend, loss, k, one_hot, form, rng):
    out_act = FUSED_OUTPUT.get(loss)
    if form == "dense":
        out = [df.Dense(k, activation=out_act)]
    else:
        out = [df.Dense(k), df.Activation(out_act)]
    model = build([df.Dense(5, activation="tanh", input_dim=3)] + out, loss, backend)
    randomize(model, rng, scale=1.5)
    X = rng.normal(size=(9, 3))
    assert_matches_torch(model, X, targets(loss, 9, k, rng, one_hot))


def test_integer_and_one_hot_labels_agree(backend, rng):
    model = build([df.Dense(5, activation="relu", input_dim=3), df.Dense(4, activation="softmax")],
                  "categorical_crossentropy", backend)
    randomize(model, rng)
    X, labels = rng.normal(size=(7, 3)), rng.integers(0, 4, 7)
    loss_int, grads_int = model.loss_and_grad(X, labels)
    loss_hot, grads_hot = model.loss_and_grad(X, np.eye(4)[labels])
    assert relative_error(loss_int, loss_hot) < 1e-12
    for a, b in zip(grads_int, grads_hot):
        assert relative_error(a, b) < 1e-12


def test_soft_labels(backend, rng):
    """Rows of y that are distributions (label smoothing) follow torch's probability targets."""
    model = build([df.Dense(5, activation="tanh", input_dim=3), df.Dense(4, activation="softmax")],
                  "categorical_crossentropy", backend)
    randomize(model, rng)
    y = rng.random((6, 4))
    assert_matches_torch(model, rng.normal(size=(6, 3)), y / y.sum(axis=1, keepdims=True))


def test_dense_without_bias(backend, rng):
    model = build([df.Dense(5, activation="gelu", use_bias=False, input_dim=3), df.Dense(2, use_bias=False)],
                  "mse", backend)
    assert [w.shape for w in model.get_weights()] == [(3, 5), (5, 2)]
    randomize(model, rng)
    assert_matches_torch(model, rng.normal(size=(6, 3)), rng.normal(size=(6, 2)))


# ------------------------------------------------------------------------------- regularizers

REGULARIZERS = {
    "l1": lambda: df.l1(0.03),
    "l2": lambda: df.l2(0.05),
    "l1_l2": lambda: df.l1_l2(0.02, 0.04),
}


@pytest.mark.parametrize("name", sorted(REGULARIZERS))
def test_regularizer(backend, name, rng):
    layers = [df.Dense(6, activation="tanh", kernel_regularizer=REGULARIZERS[name](), input_dim=4),
              df.BatchNorm(),
              df.Dense(5, activation="relu"),  # unregularized: no penalty on this kernel
              df.Dense(2, kernel_regularizer=REGULARIZERS[name]())]
    model = build(layers, "mse", backend)
    weights = [rng.normal(0, 0.7, w.shape) for w in model.get_weights()]
    weights = [np.where(np.abs(w) < 1e-3, 0.5, w) for w in weights]  # keep l1 away from its kink
    model.set_weights(weights)
    X, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 2))
    loss, grads = assert_matches_torch(model, X, y)
    plain = build([df.Dense(6, activation="tanh", input_dim=4), df.BatchNorm(), df.Dense(5, activation="relu"),
                   df.Dense(2)], "mse", backend)
    plain.set_weights(weights)
    plain_loss, plain_grads = plain.loss_and_grad(X, y)
    reg = REGULARIZERS[name]()
    W0, W3 = weights[0], weights[6]
    expected = sum(reg.l1 * np.abs(W).sum() + reg.l2 * (W * W).sum() for W in (W0, W3))
    assert relative_error(loss - plain_loss, expected) < 1e-10
    for i, (g, p) in enumerate(zip(grads, plain_grads)):
        if i in (0, 6):
            assert relative_error(g - p, reg.l1 * np.sign(weights[i]) + 2 * reg.l2 * weights[i]) < 1e-10
        else:
            assert np.array_equal(g, p), f"weights[{i}] is not a regularized kernel"


def test_l1_sign_of_zero(backend, rng):
    """sign(0) = 0: a kernel entry at exactly 0 gets no l1 gradient (as torch's abs)."""
    model = build([df.Dense(3, kernel_regularizer=df.l1(0.5), input_dim=2)], "mse", backend)
    W = rng.normal(size=(2, 3))
    W[0, 1] = 0.0
    model.set_weights([W, np.zeros(3)])
    X = np.zeros((4, 2))                        # the data gradient of W is zero
    _, grads = model.loss_and_grad(X, np.zeros((4, 3)))
    np.testing.assert_allclose(grads[0], 0.5 * np.sign(W), rtol=1e-12, atol=0)
    assert grads[0][0, 1] == 0
    assert_matches_torch(model, X, rng.normal(size=(4, 3)))


# ------------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("step", [0, 5])
def test_dropout_mask(backend, step, rng):
    layers = [df.Dropout(0.25), df.Dense(7, activation="relu", input_dim=5), df.Dropout(0.5),
              df.Dense(6, activation="tanh"), df.Dropout(0.0), df.Dense(3, activation="softmax")]
    model = df.Sequential(layers, seed=11, dtype="float64", backend=backend)
    model.compile(loss="categorical_crossentropy", optimizer="sgd")
    X, y = rng.normal(size=(9, 5)), rng.integers(0, 3, 9)
    model.loss_and_grad(X, y)  # builds the model (no input_dim on the first layer)
    randomize(model, rng)
    model.state.step = step
    loss, grads = assert_matches_torch(model, X, y)
    # The mask depends on the step: another step gives another loss.
    model.state.step = step + 1
    other_loss, _ = model.loss_and_grad(X, y)
    assert abs(other_loss - loss) > 1e-6
    # and dropout is really on: without it (all masks kept) the loss differs too.
    ref = TorchReference(model)
    ref.dropout = False
    assert abs(ref.loss(X, y).item() - loss) > 1e-6


def test_dropout_mask_counts_rows_within_the_batch(backend, rng):
    """Element (r, c) uses index r·width + c with r the row in the batch: the same row placed at
    another position of the batch gets another mask."""
    model = build([df.Dense(8, activation="tanh", input_dim=3), df.Dropout(0.5), df.Dense(1)], "mse", backend)
    randomize(model, rng)
    X = rng.normal(size=(4, 3))
    y = rng.normal(size=(4, 1))
    assert_matches_torch(model, X, y)
    assert_matches_torch(model, X[::-1], y[::-1])
    assert_matches_torch(model, X[:1], y[:1])


# ------------------------------------------------------------------------------- batchnorm


def _state_snapshot(model):
    s = model.state
    return s.params.copy(), s.slots.copy(), s.stats.copy(), s.step, s.epoch


def _assert_state_unchanged(model, before):
    after = _state_snapshot(model)
    for a, b in zip(before[:3], after[:3]):
        assert np.array_equal(a, b)
    assert before[3:] == after[3:]


@pytest.mark.parametrize("momentum,epsilon", [(0.1, 1e-5), (0.3, 1e-3)])
def test_batchnorm(backend, momentum, epsilon, rng):
    layers = [df.Dense(6, input_dim=4), df.BatchNorm(momentum=momentum, epsilon=epsilon), df.Activation("elu"),
              df.Dropout(0.2), df.Dense(5, activation="sigmoid"), df.BatchNorm(momentum=momentum, epsilon=epsilon),
              df.Dense(2, activation="sigmoid")]
    model = build(layers, "binary_crossentropy", backend, optimizer=df.Adam(0.01))
    X, y = rng.normal(size=(10, 4)), targets("binary_crossentropy", 10, 2, rng)
    model.fit(X, y, epochs=2, batch_size=4, verbose=0)  # non-trivial stats, slots and counters
    randomize(model, rng)
    model.state.stats[:] = rng.uniform(0.5, 2.0, model.state.stats.shape)  # training mode must ignore these
    before = _state_snapshot(model)
    assert_matches_torch(model, X, y)
    _assert_state_unchanged(model, before)
    assert before[3] == 6 and before[4] == 2


def test_loss_and_grad_changes_nothing(backend, rng):
    """No write to params, slots, BN running statistics or the counters, and the same answer twice."""
    layers = [df.Dense(6, activation="relu", input_dim=3, kernel_regularizer=df.l2(0.01)), df.BatchNorm(),
              df.Dropout(0.3), df.Dense(3, activation="softmax")]
    model = build(layers, "categorical_crossentropy", backend, optimizer=df.SGD(0.05, momentum=0.9))
    X, y = rng.normal(size=(12, 3)), rng.integers(0, 3, 12)
    model.fit(X, y, epochs=1, batch_size=5, verbose=0)
    before = _state_snapshot(model)
    first = model.loss_and_grad(X, y)
    second = model.loss_and_grad(X, y)
    _assert_state_unchanged(model, before)
    assert first[0] == second[0]
    for a, b in zip(first[1], second[1]):
        assert np.array_equal(a, b)


# ------------------------------------------------------------------------------- float32

FLOAT32_CASES = {
    "tanh-mse": ([df.Dense(6, activation="tanh", input_dim=4), df.Dense(5, activation="gelu"), df.Dense(3)], "mse"),
    "relu-bce-l1_l2": ([df.Dense(6, activation="relu", input_dim=4, kernel_regularizer=df.l1_l2(0.01, 0.02)),
                        df.Dense(2, activation="sigmoid")], "binary_crossentropy"),
    "bn-dropout-cce": ([df.Dense(6, input_dim=4), df.BatchNorm(), df.Activation("softplus"), df.Dropout(0.3),
                        df.Dense(3, activation="softmax")], "categorical_crossentropy"),
}


@pytest.mark.parametrize("case", sorted(FLOAT32_CASES))
def test_float32(backend, case, rng):
    layers, loss = FLOAT32_CASES[case]
    model = build(layers, loss, backend, dtype="float32")
    randomize(model, rng)
    X = rng.normal(size=(16, 4)).astype(np.float32)
    y = targets(loss, 16, model.plan.n_outputs, rng)
    _, grads = assert_matches_torch(model, X, y, tol=TOLERANCE["float32"])
    assert all(g.dtype == np.float32 for g in grads)


# ------------------------------------------------------------------------------- finite differences


def finite_difference_check(model, X, y, n_checked=None, h=1e-5, rtol=1e-6, seed=0):
    """Central differences of ``model.loss_and_grad``'s loss for every parameter (or a random
    subset of ``n_checked``) against its gradient."""
    _, grads = model.loss_and_grad(X, y)
    weights = model.get_weights()
    coords = [(i, j) for i, w in enumerate(weights) for j in range(w.size)]
    if n_checked is not None and n_checked < len(coords):
        picked = np.random.default_rng(seed).choice(len(coords), n_checked, replace=False)
        coords = [coords[k] for k in picked]
    numeric, analytic = [], []
    for i, j in coords:
        values = []
        for sign in (1, -1):
            shifted = [w.copy() for w in weights]
            shifted[i].flat[j] += sign * h
            model.set_weights(shifted)
            values.append(model.loss_and_grad(X, y)[0])
        numeric.append((values[0] - values[1]) / (2 * h))
        analytic.append(grads[i].flat[j])
    model.set_weights(weights)
    numeric, analytic = np.array(numeric), np.array(analytic)
    assert np.abs(numeric).max() > 1e-3
    assert relative_error(analytic, numeric) < rtol, relative_error(analytic, numeric)


FD_CASES = {
    "smooth-activations-mse": ([df.Dense(5, activation="tanh", input_dim=3), df.Dense(4, activation="sigmoid"),
                                df.Dense(4, activation="gelu"), df.Dense(3, activation="softplus"),
                                df.Dense(3, activation="elu"), df.Dense(2)], "mse", None),
    "bn-dropout-cce": ([df.Dense(6, input_dim=3), df.BatchNorm(), df.Activation("tanh"), df.Dropout(0.4),
                        df.Dense(4, activation="softmax")], "categorical_crossentropy", None),
    "l1_l2-bce": ([df.Dense(5, activation="softplus", input_dim=3, kernel_regularizer=df.l1_l2(0.05, 0.1)),
                   df.Dense(2, activation="sigmoid", kernel_regularizer=df.l2(0.2))], "binary_crossentropy", None),
    "wider-subset": ([df.Dense(24, activation="gelu", input_dim=10), df.BatchNorm(), df.Dense(16, activation="tanh"),
                      df.Dense(5, activation="softmax")], "categorical_crossentropy", 60),
}


@pytest.mark.parametrize("case", sorted(FD_CASES))
def test_finite_differences(backend, case, rng):
    layers, loss, n_checked = FD_CASES[case]
    model = build(layers, loss, backend)
    weights = [rng.normal(0, 0.7, w.shape) for w in model.get_weights()]
    model.set_weights([np.where(np.abs(w) < 1e-3, 0.5, w) for w in weights])  # l1 is smooth away from 0
    model.state.step = 3
    X = rng.normal(size=(8, model.plan.n_features))
    finite_difference_check(model, X, targets(loss, 8, model.plan.n_outputs, rng), n_checked)


# ------------------------------------------------------------------------------- random networks

HIDDEN = sorted(ACTIVATIONS)
LOSSES = ["mse", "binary_crossentropy", "categorical_crossentropy"]


@st.composite
def networks(draw):
    m = draw(st.integers(1, 8))
    n_features = draw(st.integers(1, 6))
    loss = draw(st.sampled_from(LOSSES))
    k = draw(st.integers(2 if loss == "categorical_crossentropy" else 1, 6))
    layers = []
    for _ in range(draw(st.integers(0, 3))):
        units = draw(st.integers(1, 6))
        activation = draw(st.sampled_from(HIDDEN))
        layers.append(df.Dense(units, activation=activation, input_dim=None if layers else n_features))
        if m > 1 and draw(st.booleans()):
            layers.append(df.BatchNorm())
        if draw(st.booleans()):
            layers.append(df.Dropout(draw(st.sampled_from([0.1, 0.5, 0.9]))))
    layers.append(df.Dense(k, activation=FUSED_OUTPUT.get(loss), input_dim=None if layers else n_features))
    return layers, loss, m, draw(st.integers(0, 2**32 - 1)), draw(st.booleans())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(networks())
def test_random_networks_match_torch(backend, case):
    layers, loss, m, seed, one_hot = case
    rng = np.random.default_rng(seed)
    model = build(layers, loss, backend, seed=seed)
    randomize(model, rng)
    model.state.step = int(rng.integers(0, 100))
    X = rng.normal(size=(m, model.plan.n_features))
    y = targets(loss, m, model.plan.n_outputs, rng, one_hot)
    ref = TorchReference(model)
    loss_value, grads = model.loss_and_grad(X, y)
    ref_loss, ref_grads = ref.loss_and_grad(X, y)
    assert relative_error(loss_value, ref_loss) < 1e-10
    # Relative to the largest gradient: dead relus, heavy dropout and BatchNorm over tiny
    # batches make some gradients exactly zero in exact arithmetic, rounding noise in both.
    scale = max(max(np.abs(r).max() for r in ref_grads), 1e-30)
    for g, r in zip(grads, ref_grads):
        assert g.shape == r.shape
        assert np.abs(g - r).max() / scale < 1e-10
