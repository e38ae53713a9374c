"""Whole training runs of every backend against ``torch.optim`` on the same network, weights,
data and batch order: every optimizer, gradient clipping, learning-rate schedules,
regularizers, Dropout and BatchNorm, and the step counter across ``fit`` calls. float64 to
1e-10 relative on the final weights (and the BatchNorm running statistics and the reported
losses)."""

import math

import numpy as np
import pytest
import torch
from conftest import TOLERANCE, relative_error
from torch_reference import TorchReference, randomize, targets

import densefit as df
from densefit.shuffle import permutation as epoch_order

TOL = TOLERANCE["float64"]


def make_model(backend, optimizer, layers=None, loss="mse", dtype="float64", seed=3):
    layers = layers or [df.Dense(6, activation="tanh", input_dim=4), df.Dense(5, activation="elu"), df.Dense(2)]
    model = df.Sequential(layers, seed=seed, dtype=dtype, backend=backend)
    model.compile(loss=loss, optimizer=optimizer)
    randomize(model, np.random.default_rng(seed))
    return model


def make_data(model, n=12, seed=5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, model.plan.n_features))
    return X, targets(model.loss, n, model.plan.n_outputs, rng)


def torch_fit(ref, optimizer, X, y, epochs, batch_size, lrs=None, orders=None, clipvalue=None, clipnorm=None):
    """The reference loop: per epoch set the lr, visit ``orders[e]`` (default ``0..n-1``) in
    slices of ``batch_size``; per step clip by value, then by global norm, then step.
    Returns the mean loss of each epoch and how many steps clipping changed the gradient."""
    n = len(X)
    epoch_losses, clipped = [], 0
    for e in range(epochs):
        if lrs is not None:
            for group in optimizer.param_groups:
                group["lr"] = lrs[e]
        order = np.arange(n) if orders is None else orders[e]
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            optimizer.zero_grad()
            loss = ref.loss(X[idx], y[idx])
            loss.backward()
            before = [p.grad.clone() for p in ref.params]
            if clipvalue is not None:
                torch.nn.utils.clip_grad_value_(ref.params, clipvalue)
            if clipnorm is not None:
                torch.nn.utils.clip_grad_norm_(ref.params, clipnorm)
            clipped += any(not torch.equal(b, p.grad) for b, p in zip(before, ref.params))
            optimizer.step()
            ref.step += 1
            total += loss.item() * len(idx)
        epoch_losses.append(total / n)
    return epoch_losses, clipped


def assert_same_run(model, ref, hist=None, losses=None, tol=TOL):
    """Final weights (and BN running statistics, and reported losses) agree with torch, and
    training actually moved the weights."""
    weights, expected = model.get_weights(), ref.weights()
    for i, (w, r) in enumerate(zip(weights, expected)):
        assert relative_error(w, r) < tol, (i, relative_error(w, r))
    if model.plan.n_stats:
        assert relative_error(model.state.stats, ref.stats()) < tol
    if hist is not None:
        assert relative_error(hist.history["loss"], losses) < tol


def initial(model):
    return [w.copy() for w in model.get_weights()]


def assert_moved(before, model, at_least=1e-3):
    """Every weight array changed (the comparison above is not trivially satisfied)."""
    for i, (b, a) in enumerate(zip(before, model.get_weights())):
        assert relative_error(a, b) > at_least, i


def run_both(model, torch_optimizer, X, y, epochs=5, batch_size=4, **clip):
    ref = TorchReference(model)
    before = initial(model)
    hist = model.fit(X, y, epochs=epochs, batch_size=batch_size, shuffle=False, verbose=0)
    opt = torch_optimizer(ref)
    losses, clipped = torch_fit(ref, opt, X, y, epochs, batch_size, **clip)
    assert_same_run(model, ref, hist, losses)
    assert_moved(before, model)
    assert model.state.step == epochs * math.ceil(len(X) / batch_size)
    return clipped


# ------------------------------------------------------------------------------- optimizers

OPTIMIZERS = {
    "sgd": (lambda: df.SGD(0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "momentum": (lambda: df.SGD(0.05, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    "nesterov": (lambda: df.SGD(0.05, momentum=0.8, nesterov=True),
                 lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
    "dampening": (lambda: df.SGD(0.2, momentum=0.9, dampening=0.9),
                  lambda p: torch.optim.SGD(p, lr=0.2, momentum=0.9, dampening=0.9)),
    "adam": (lambda: df.Adam(0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    "adam-betas": (lambda: df.Adam(0.02, beta_1=0.5, beta_2=0.9, epsilon=1e-4),
                   lambda p: torch.optim.Adam(p, lr=0.02, betas=(0.5, 0.9), eps=1e-4)),
    "rmsprop": (lambda: df.RMSprop(0.01, rho=0.9), lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-8)),
    "rmsprop-default": (lambda: df.RMSprop(), lambda p: torch.optim.RMSprop(p, lr=1e-2, alpha=0.99, eps=1e-8)),
    "adagrad": (lambda: df.Adagrad(0.1), lambda p: torch.optim.Adagrad(p, lr=0.1, eps=1e-10)),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer(backend, name):
    ours, theirs = OPTIMIZERS[name]
    model = make_model(backend, ours())
    X, y = make_data(model, n=11)              # batches of 4, 4, 3: the smaller last batch is kept
    run_both(model, lambda ref: theirs(ref.params), X, y)


@pytest.mark.parametrize("weight_decay", [0.01, 0.3])
def test_adamw_decays_kernels_only(backend, weight_decay):
    layers = [df.Dense(6, input_dim=4, use_bias=False), df.BatchNorm(), df.Activation("relu"),
              df.Dense(2, activation="sigmoid")]
    model = make_model(backend, df.AdamW(0.02, weight_decay=weight_decay), layers, loss="binary_crossentropy")
    X, y = make_data(model, n=12)

    def adamw(ref):
        return torch.optim.AdamW([{"params": ref.kernels, "weight_decay": weight_decay},
                                  {"params": ref.others, "weight_decay": 0.0}], lr=0.02)
    run_both(model, adamw, X, y)


def test_adamw_differs_from_adam(backend):
    runs = []
    for optimizer in (df.Adam(0.02), df.AdamW(0.02, weight_decay=0.3)):
        model = make_model(backend, optimizer)
        model.fit(*make_data(model), epochs=3, batch_size=4, shuffle=False, verbose=0)
        runs.append(model.get_weights())
    assert relative_error(runs[1][0], runs[0][0]) > 1e-3


def test_sgd_first_step_takes_the_gradient(backend):
    """torch.optim.SGD: buf = g on the first step (not (1 - dampening) g)."""
    model = make_model(backend, df.SGD(0.1, momentum=0.9, dampening=0.5))
    X, y = make_data(model)
    before = model.get_weights()
    _, grads = model.loss_and_grad(X, y)
    model.fit(X, y, epochs=1, batch_size=len(X), shuffle=False, verbose=0)
    for w0, g, w1 in zip(before, grads, model.get_weights()):
        assert relative_error(w1, w0 - 0.1 * g) < TOL


def test_float32_adam(backend):
    model = make_model(backend, df.Adam(0.01), dtype="float32")
    X, y = make_data(model)
    ref = TorchReference(model)
    model.fit(X, y, epochs=5, batch_size=4, shuffle=False, verbose=0)
    torch_fit(ref, torch.optim.Adam(ref.params, lr=0.01), X, y, 5, 4)
    assert model.state.params.dtype == np.float32
    assert_same_run(model, ref, tol=TOLERANCE["float32"])


# ------------------------------------------------------------------------------- clipping

CLIPS = {
    "value": dict(clipvalue=0.05),
    "norm": dict(clipnorm=0.1),
    "value-then-norm": dict(clipvalue=0.05, clipnorm=0.08),
}


@pytest.mark.parametrize("clip", list(CLIPS))
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_clipping(backend, clip, optimizer):
    kwargs = CLIPS[clip]
    if optimizer == "sgd":
        ours, theirs = df.SGD(0.3, momentum=0.5, **kwargs), lambda ref: torch.optim.SGD(ref.params, lr=0.3, momentum=0.5)
    else:
        ours, theirs = df.Adam(0.05, **kwargs), lambda ref: torch.optim.Adam(ref.params, lr=0.05)
    model = make_model(backend, ours)
    X, y = make_data(model)
    clipped = run_both(model, theirs, X, y, **kwargs)
    assert clipped >= 10            # of 15 steps: the clip was active


def test_clipping_changes_the_result(backend):
    runs = []
    for optimizer in (df.SGD(0.3), df.SGD(0.3, clipnorm=0.1), df.SGD(0.3, clipvalue=0.05)):
        model = make_model(backend, optimizer)
        model.fit(*make_data(model), epochs=2, batch_size=4, shuffle=False, verbose=0)
        runs.append(model.get_weights()[0])
    assert relative_error(runs[1], runs[0]) > 1e-3
    assert relative_error(runs[2], runs[0]) > 1e-3


# ------------------------------------------------------------------------------- schedules

SCHEDULES = {
    "exponential": (lambda: df.ExponentialDecay(0.2, decay=0.3), lambda e: 0.2 * 0.7**e),
    "step": (lambda: df.StepDecay(0.2, every=2, factor=0.25), lambda e: 0.2 * 0.25 ** (e // 2)),
    "inverse_time": (lambda: df.InverseTimeDecay(0.2, k=1.5), lambda e: 0.2 / (1 + 1.5 * e)),
    "cosine": (lambda: df.CosineDecay(0.2, T=3, lr_min=0.01),
               lambda e: 0.01 + 0.19 * (1 + math.cos(math.pi * min(e, 3) / 3)) / 2),
    "callable": (lambda: (lambda epoch, lr0: lr0 * (epoch + 1) ** 2), lambda e: 0.01 * (e + 1) ** 2),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule(backend, name):
    schedule, closed_form = SCHEDULES[name]
    epochs = 6
    lrs = [closed_form(e) for e in range(epochs)]
    assert len(set(lrs)) >= 3
    model = make_model(backend, df.SGD(schedule(), momentum=0.5))
    X, y = make_data(model)
    ref = TorchReference(model)
    before = initial(model)
    hist = model.fit(X, y, epochs=epochs, batch_size=5, shuffle=False, verbose=0)
    losses, _ = torch_fit(ref, torch.optim.SGD(ref.params, lr=1.0, momentum=0.5), X, y, epochs, 5, lrs=lrs)
    assert hist.history["learning_rate"] == pytest.approx(lrs, rel=1e-14)
    assert_same_run(model, ref, hist, losses)
    assert_moved(before, model)
    # the schedule continues from the epoch counter in the next fit call
    hist = model.fit(X, y, epochs=2, batch_size=5, shuffle=False, verbose=0)
    assert hist.history["learning_rate"] == pytest.approx([closed_form(e) for e in (6, 7)], rel=1e-14)
    assert hist.epoch == [6, 7]


# ------------------------------------------------------------------------------- whole steps


@pytest.mark.parametrize("optimizer", ["momentum", "adam", "adagrad"])
def test_regularizers(backend, optimizer):
    layers = [df.Dense(6, activation="softplus", input_dim=4, kernel_regularizer=df.l1_l2(0.01, 0.02)),
              df.Dense(5, activation="tanh", kernel_regularizer=df.l1(0.05)),
              df.Dense(3, activation="softmax", kernel_regularizer=df.l2(0.1))]
    ours, theirs = OPTIMIZERS[optimizer]
    model = make_model(backend, ours(), layers, loss="categorical_crossentropy")
    X, y = make_data(model)
    run_both(model, lambda ref: theirs(ref.params), X, y)


@pytest.mark.parametrize("optimizer", ["nesterov", "adam", "rmsprop"])
def test_dropout_and_batchnorm(backend, optimizer):
    # No bias right before BatchNorm: its exact gradient is 0, so Adam would step on rounding noise.
    layers = [df.Dense(7, input_dim=4, use_bias=False), df.BatchNorm(momentum=0.2), df.Activation("relu"), df.Dropout(0.3),
              df.Dense(6, activation="gelu"), df.BatchNorm(), df.Dropout(0.5), df.Dense(3, activation="softmax")]
    ours, theirs = OPTIMIZERS[optimizer]
    model = make_model(backend, ours(), layers, loss="categorical_crossentropy")
    X, y = make_data(model, n=14)           # batches of 4, 4, 4, 2
    stats = model.state.stats.copy()
    run_both(model, lambda ref: theirs(ref.params), X, y)
    assert relative_error(model.state.stats, stats) > 1e-3


def test_full_batch(backend):
    layers = [df.Dense(5, activation="sigmoid", input_dim=4), df.BatchNorm(), df.Dense(1, activation="sigmoid")]
    model = make_model(backend, df.SGD(0.5, momentum=0.9, nesterov=True), layers, loss="binary_crossentropy")
    X, y = make_data(model, n=10)
    run_both(model, lambda ref: torch.optim.SGD(ref.params, lr=0.5, momentum=0.9, nesterov=True), X, y,
             epochs=8, batch_size=10)


# ------------------------------------------------------------------------------- the step counter


def _counter_model(backend):
    layers = [df.Dense(6, activation="relu", input_dim=4), df.Dropout(0.4), df.Dense(5, activation="tanh"),
              df.BatchNorm(), df.Dense(2)]
    return make_model(backend, df.Adam(0.02, clipnorm=0.5), layers)


@pytest.mark.parametrize("shuffle", [False, True])
def test_fit_twice_equals_fit_once(backend, shuffle):
    """fit(epochs=2) twice = fit(epochs=4) once: Adam's bias correction, dropout masks, shuffle
    orders and the learning-rate schedule all continue from the model's counters; and both
    equal torch with the documented orders densefit.shuffle.permutation(seed, e, n)."""
    schedule = df.StepDecay(0.02, every=3, factor=0.5)
    once, twice = _counter_model(backend), _counter_model(backend)
    for model in (once, twice):
        model.compile(loss="mse", optimizer=df.Adam(schedule, clipnorm=0.5))
    X, y = make_data(once, n=11)            # batches of 3, 3, 3, 2 (torch's BatchNorm refuses 1 row)
    ref = TorchReference(once)
    hist = once.fit(X, y, epochs=4, batch_size=3, shuffle=shuffle, verbose=0)
    first = twice.fit(X, y, epochs=2, batch_size=3, shuffle=shuffle, verbose=0)
    assert (twice.state.step, twice.state.epoch) == (8, 2)
    second = twice.fit(X, y, epochs=2, batch_size=3, shuffle=shuffle, verbose=0)
    assert (once.state.step, once.state.epoch) == (twice.state.step, twice.state.epoch) == (16, 4)
    assert second.epoch == [2, 3]
    assert first.history["loss"] + second.history["loss"] == pytest.approx(hist.history["loss"], rel=TOL)
    for a, b in zip(once.get_weights(), twice.get_weights()):
        assert relative_error(b, a) < TOL
    assert relative_error(twice.state.slots, once.state.slots) < TOL
    assert relative_error(twice.state.stats, once.state.stats) < TOL

    orders = [epoch_order(once.seed, e, len(X)) if shuffle else np.arange(len(X)) for e in range(4)]
    lrs = [0.02 * 0.5 ** (e // 3) for e in range(4)]
    losses, clipped = torch_fit(ref, torch.optim.Adam(ref.params, lr=0.02), X, y, 4, 3, lrs=lrs, orders=orders,
                                clipnorm=0.5)
    assert clipped > 0
    assert_same_run(once, ref, hist, losses)


def test_restarting_the_counter_would_differ(backend):
    """The continuation test above can fail: a model whose counters restart (a new compile)
    takes different steps."""
    continued, restarted = _counter_model(backend), _counter_model(backend)
    X, y = make_data(continued, n=11)
    for model in (continued, restarted):
        model.fit(X, y, epochs=2, batch_size=3, shuffle=False, verbose=0)
    restarted.compile(loss="mse", optimizer=df.Adam(0.02, clipnorm=0.5))   # resets slots and counters
    assert restarted.state.step == 0
    continued.fit(X, y, epochs=2, batch_size=3, shuffle=False, verbose=0)
    restarted.fit(X, y, epochs=2, batch_size=3, shuffle=False, verbose=0)
    assert relative_error(restarted.get_weights()[0], continued.get_weights()[0]) > 1e-6


def test_the_registry_has_one_code_per_optimizer():
    from densefit import optimizers as O
    assert sorted(O.BY_CODE) == list(range(len(O.BY_NAME)))
    assert {cls.code for cls in O.BY_NAME.values()} == set(O.BY_CODE)
    assert [name for name, cls in O.BY_NAME.items() if not cls.adaptive] == ["sgd"]


# The update rules (densefit.optimizers): each written once, compiled by numba, applied by numpy;
# numpy's in-place forms must give the rule's bits.
RULE_CASES = {"sgd": {}, "momentum": {"momentum": 0.9, "dampening": 0.1}, "nesterov": {"momentum": 0.8, "nesterov": True},
              "adam": {}, "adamw": {}, "rmsprop": {}, "adagrad": {}}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(RULE_CASES))
def test_numpy_in_place_forms_give_the_rules_bits(case, dtype):
    from densefit.backends import numpy_
    name = "sgd" if case in ("momentum", "nesterov") else case
    opt = df.optimizers.BY_NAME[name](**RULE_CASES[case])
    q, T = opt.params(), np.dtype(dtype).type
    rng = np.random.default_rng(3)
    w, g = rng.normal(size=500).astype(dtype), rng.normal(size=500).astype(dtype)
    g[:5] = [0.0, -0.0, 1e-30, -1e30, 3.0]
    s0, s1 = np.abs(rng.normal(size=500)).astype(dtype), np.abs(rng.normal(size=500)).astype(dtype)
    for t in (1, 2, 17):
        c = opt.coefficients(q, 0.01, t, T)
        with np.errstate(over="ignore"):  # -1e30² in float32
            expected = opt.rule(w.copy(), s0.copy(), s1.copy(), g, c)
            ours = [w.copy(), s0.copy(), s1.copy()]
            numpy_.IN_PLACE[opt.code](*ours, g, c)
        for got, want, part in zip(ours, expected, ("w", "s0", "s1")):
            assert got.dtype == np.dtype(dtype), part
            np.testing.assert_array_equal(got.view(np.uint8), np.asarray(want, dtype).view(np.uint8), err_msg=f"{part}, t={t}")


def test_an_optimizer_without_an_in_place_form_runs_its_rule(monkeypatch):
    """numpy_.update falls back to the rule: what a new optimizer gets before (or without) one."""
    from densefit.backends import numpy_
    X = np.random.default_rng(0).normal(size=(64, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]])
    results = []
    for in_place in (True, False):
        if not in_place:
            monkeypatch.setattr(numpy_, "IN_PLACE", {})
        m = df.Sequential([df.Dense(4, activation="tanh", input_dim=3), df.Dense(1)], seed=0, dtype="float64",
                          backend="numpy")
        m.compile(loss="mse", optimizer=df.optimizers.Adam(0.01))
        m.fit(X, y, epochs=3, batch_size=16, verbose=0)
        results.append(np.concatenate([p.ravel() for p in m.get_weights()]))
    np.testing.assert_array_equal(results[0], results[1])
