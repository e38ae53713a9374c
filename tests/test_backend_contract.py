"""The second line of defence (issue #12): a wrong argument that reaches a backend directly —
past the model's own checks — is a ValueError or TypeError naming it, on every backend, before
any pass runs; the state is left as it was. A segfault or out-of-bounds write would take the
test process down; a silent wrong answer shows as a changed state."""

import numpy as np
import pytest

import densefit as df
from densefit import backends
from densefit.plan import State


def _problem(backend, loss="mse", outputs=1):
    layers = [df.Dense(4, activation="relu", input_dim=3), df.BatchNorm(),
              df.Dense(outputs, activation="softmax" if loss == "categorical_crossentropy" else None)]
    model = df.Sequential(layers, seed=0, backend=backend)
    model.compile(loss=loss, optimizer="adam")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 3)).astype(np.float32)
    y = (rng.integers(0, outputs, size=(10, 1)) if outputs > 1 else rng.normal(size=(10, 1))).astype(np.float32)
    model.fit(X, y, epochs=1, verbose=0)
    return model.plan, model.state, X, y


def _with(state, **changes):
    fields = dict(params=state.params, slots=state.slots, stats=state.stats, step=state.step, epoch=state.epoch)
    fields.update(changes)
    return State(**fields)


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


P = 29  # parameters of the network above: 3·4 + 4 + 2·4 + 4 + 1


def _train_cases(X, y, state):
    one = np.array([0.01])
    f32 = np.float32
    return {
        "params too short": (dict(state=_with(state, params=np.zeros(P - 1, f32))), ValueError, "params"),
        "params float64": (dict(state=_with(state, params=np.zeros(P))), TypeError, "params"),
        "params read-only": (dict(state=_with(state, params=_read_only(state.params))), ValueError, "params"),
        "params strided": (dict(state=_with(state, params=np.zeros(2 * P, f32)[::2])), ValueError, "params"),
        "slots (2, 1)": (dict(state=_with(state, slots=np.zeros((2, 1), f32))), ValueError, "slots"),
        "slots flat": (dict(state=_with(state, slots=np.zeros(2 * P, f32))), ValueError, "slots"),
        "stats too short": (dict(state=_with(state, stats=np.zeros(1, f32))), ValueError, "stats"),
        "step negative": (dict(state=_with(state, step=-1)), ValueError, "step"),
        "step 2**70": (dict(state=_with(state, step=2 ** 70)), ValueError, "step"),
        "X one feature short": (dict(X=X[:, :2]), ValueError, "X"),
        "X 1-D": (dict(X=X[:, 0]), ValueError, "X"),
        "X complex": (dict(X=X.astype(np.complex64)), TypeError, "X"),
        "y rows": (dict(y=y[:5]), ValueError, "y"),
        "y columns": (dict(y=np.zeros((10, 3), f32)), ValueError, "y"),
        "orders past n": (dict(orders=np.full((1, 10), 10, np.int64)), ValueError, "orders"),
        "orders huge": (dict(orders=np.full((1, 10), 2 ** 40, np.int64)), ValueError, "orders"),
        "orders negative": (dict(orders=np.full((1, 10), -1, np.int64)), ValueError, "orders"),
        "orders epochs": (dict(orders=np.zeros((2, 10), np.int64)), ValueError, "orders"),
        "orders rows": (dict(orders=np.zeros((1, 5), np.int64)), ValueError, "orders"),
        "orders float": (dict(orders=np.zeros((1, 10))), TypeError, "orders"),
        "lrs 2-D": (dict(lrs=np.zeros((1, 1))), ValueError, "lrs"),
        "batch_size 0": (dict(batch_size=0), ValueError, "batch_size"),
        "batch_size negative": (dict(batch_size=-3), ValueError, "batch_size"),
        "batch_size 2**63": (dict(batch_size=2 ** 63), ValueError, "batch_size"),
        "batch_size float": (dict(batch_size=4.0), TypeError, "batch_size"),
        "sample_weight short": (dict(sample_weight=np.ones(3, f32)), ValueError, "sample_weight"),
        "sample_weight float64": (dict(sample_weight=np.ones(10)), TypeError, "sample_weight"),
        "sample_weight 2-D": (dict(sample_weight=np.ones((10, 1), f32)), ValueError, "sample_weight"),
    }, one


TRAIN_CASES = list(_train_cases(np.zeros((10, 3), np.float32), np.zeros((10, 1), np.float32),
                                State(np.zeros(P, np.float32), np.zeros((2, P), np.float32),
                                      np.zeros(8, np.float32)))[0])


def _snapshot(state):
    return state.params.copy(), state.slots.copy(), state.stats.copy()


def _assert_untouched(state, before):
    for now, then in zip(_snapshot(state), before):
        np.testing.assert_array_equal(now, then)


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_train_epochs_refuses_a_bad_argument(backend, case):
    plan, state, X, y = _problem(backend)
    cases, lrs = _train_cases(X, y, state)
    changes, error, name = cases[case]
    call = dict(state=state, X=X, y=y, orders=None, lrs=lrs, batch_size=4, sample_weight=None)
    call.update(changes)
    before = _snapshot(state)
    with pytest.raises(error, match=name):
        backends.get(backend).train_epochs(plan, call["state"], call["X"], call["y"], call["orders"], call["lrs"],
                                           call["batch_size"], sample_weight=call["sample_weight"])
    _assert_untouched(state, before)


@pytest.mark.parametrize("label", [4, -1, 1.5])
def test_class_indices_out_of_range_are_refused(backend, label):
    plan, state, X, y = _problem(backend, "categorical_crossentropy", 4)
    bad = y.copy()
    bad[3, 0] = label
    module = backends.get(backend)
    before = _snapshot(state)
    with pytest.raises(ValueError, match="class ind"):
        module.train_epochs(plan, state, X, bad, None, np.array([0.01]), 4)
    with pytest.raises(ValueError, match="class ind"):
        module.loss_and_grad(plan, state, X, bad)
    _assert_untouched(state, before)


@pytest.mark.parametrize("case", ["params", "stats", "X", "batch_size", "step"])
def test_predict_and_loss_and_grad_refuse_bad_arguments(backend, case):
    plan, state, X, y = _problem(backend)
    module = backends.get(backend)
    bad_state = {"params": _with(state, params=np.zeros(2, np.float32)),
                 "stats": _with(state, stats=np.zeros(0, np.float32)),
                 "step": _with(state, step=-2)}.get(case, state)
    bad_X = X[:, :1] if case == "X" else X
    error = ValueError
    if case != "step":  # predict does not read the step counter
        with pytest.raises(error, match=case):
            module.predict(plan, bad_state, bad_X, 0 if case == "batch_size" else 4)
    if case != "batch_size":  # loss_and_grad takes the whole of X as one batch
        with pytest.raises(error, match=case):
            module.loss_and_grad(plan, bad_state, bad_X, y)


def test_every_backend_says_the_same_kind_of_thing(available):
    """The messages name the argument in every backend (the compiled core's without ``state.``)."""
    kinds = {}
    for backend in available:
        plan, state, X, y = _problem(backend)
        cases, lrs = _train_cases(X, y, state)
        for case, (changes, error, _) in cases.items():
            call = dict(state=state, X=X, y=y, orders=None, lrs=lrs, batch_size=4, sample_weight=None)
            call.update(changes)
            try:
                backends.get(backend).train_epochs(plan, call["state"], call["X"], call["y"], call["orders"],
                                                   call["lrs"], call["batch_size"], sample_weight=call["sample_weight"])
            except (ValueError, TypeError) as exc:
                kinds.setdefault(case, set()).add(type(exc).__name__)
    assert all(len(found) == 1 for found in kinds.values()), kinds


@pytest.fixture
def available():
    return backends.available_backends()
