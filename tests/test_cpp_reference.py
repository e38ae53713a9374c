"""The fast C++ path (``_core``) against the plain C++ reference path (``_core.reference``,
cpp/include/densefit/reference.hpp), and the reference against the numpy backend.

Where the fast path sums every product in the reference's order, the two give the same bits (every
loss, parameter, slot and statistic equal, compared as values: a zero may differ in sign, see
reference.hpp's dense_forward); elsewhere they agree within DESIGN.md's tolerances.
The order is the same (see ``same_order``) where every Dense product runs as dispatch.hpp's direct
loops (``dense_is_direct``) and each sum they take over a batch's rows or over a width has fewer
than ``narrow`` terms: ``dot()`` sums 8 partial sums in a tree from there on, and so does
``column_sums`` down narrow columns. That covers the TinyPass (AVX-512 builds; every width and the
batch below 8), the general pass's direct loops on the same shapes (at any batch for a single
layer of 8 or more outputs) and LinearPass on such shapes (the batch is then one of its blocks,
which goes through the same direct loops). The fast path sums in another order in gemm()
(gemm_skinny, block_gemm, OpenBLAS), in LinearPass's later blocks (gemm) and in the tree-ordered
dots above.
Everything else is shared code, one home for each formula (activation.hpp, loss.hpp,
optimizer.hpp, dropout and BatchNorm in layers.hpp), so it cannot differ.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TOLERANCE, relative_error

_core = pytest.importorskip("densefit._core", reason="the cpp backend is not available")

from densefit import activations as A  # noqa: E402
from densefit import optimizers as O  # noqa: E402
from densefit.backends import cpp, numpy_  # noqa: E402
from densefit.layers import Activation, BatchNorm, Dense, Dropout  # noqa: E402
from densefit.plan import DENSE, KIND, N_IN, N_OUT, USE_BIAS, build_plan, init_state  # noqa: E402

TUNING = _core.build_info()["tuning"]
NARROW, SMALL_GEMM_MACS = TUNING["narrow"], TUNING["small_gemm_macs"]

HIDDEN = [A.REGISTRY[code].name for code in A.STANDALONE]

OPTIMIZERS = {
    "sgd": lambda: O.SGD(0.05),
    "sgd-nesterov": lambda: O.SGD(0.05, momentum=0.9, nesterov=True),
    "adam-clipnorm": lambda: O.Adam(0.01, clipnorm=0.5),
    "adamw-clipvalue": lambda: O.AdamW(0.01, weight_decay=0.1, clipvalue=0.05),
    "rmsprop": lambda: O.RMSprop(0.01),
    "adagrad": lambda: O.Adagrad(0.05),
}
assert {name.split("-")[0] for name in OPTIMIZERS} == set(O.BY_NAME), "every optimizer of the registry"

L1L2 = {"l1": 0.01, "l2": 0.02}

# name: (layers, loss, target kind); 4 input features
NETWORKS = {
    **{f"act-{act}": (lambda act=act: [Dense(6, act, input_dim=4), Dense(3, act), Dense(1, "sigmoid")],
                      "binary_crossentropy", "binary") for act in HIDDEN},
    "dropout-activation-cce-index": (
        lambda: [Dense(7, "relu", input_dim=4), Dropout(0.3), Activation("gelu"),
                 Dense(3, "softmax", kernel_regularizer=L1L2)], "categorical_crossentropy", "index"),
    "dropout-bn-cce-index": (
        lambda: [Dense(8, "relu", input_dim=4), Dropout(0.3), BatchNorm(), Activation("tanh"),
                 Dense(3, "softmax", kernel_regularizer=L1L2)], "categorical_crossentropy", "index"),
    "bn-first-mse": (lambda: [BatchNorm(), Dense(5, "elu"), Dense(2)], "mse", "regression"),
    "onehot-cce-nobias": (
        lambda: [Dense(5, "leaky_relu", input_dim=4), Dense(3, "softmax", use_bias=False)],
        "categorical_crossentropy", "onehot"),
    "wide-mse": (lambda: [Dense(64, "sigmoid", input_dim=4), Dense(48, "relu", kernel_regularizer=L1L2), Dense(2)],
                 "mse", "regression"),
    "linear-mse": (lambda: [Dense(1, input_dim=4, kernel_regularizer=L1L2)], "mse", "regression"),
    "logistic-bce": (lambda: [Dense(1, "sigmoid", input_dim=4)], "binary_crossentropy", "binary"),
    "one-layer-10-mse": (lambda: [Dense(10, input_dim=4)], "mse", "regression"),
}

N = 29  # rows: batches of 8 leave a smaller last batch
BATCHES = {"batch1": 1, "batch8": 8, "full": N}


def make(network, optimizer, dtype, weighted=False, seed=7, n=N, zero_weight=True):
    layers_fn, loss, target = NETWORKS[network]
    layers = layers_fn()
    plan = build_plan(layers, 4, loss, OPTIMIZERS[optimizer](), dtype, seed)
    state = init_state(plan, layers, seed)
    state.step = 5  # dropout masks, SGD's first step and Adam's bias correction depend on it
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    K = plan.n_outputs
    y = {"binary": lambda: (rng.random((n, K)) > 0.5) * 1.0, "regression": lambda: rng.normal(size=(n, K)),
         "index": lambda: rng.integers(0, K, (n, 1)) * 1.0,
         "onehot": lambda: np.eye(K)[rng.integers(0, K, n)]}[target]()
    w = rng.uniform(0.0, 2.0, n).astype(dtype) if weighted else None
    if weighted and zero_weight:
        w[3] = 0.0  # at batch 1 a zero gradient: see compare_fast_and_reference
    orders = np.stack([rng.permutation(n) for _ in range(2)])  # shuffled epochs
    return plan, state, X.astype(dtype), y.astype(dtype), w, orders, np.array([0.05, 0.02])


def same_order(plan, m, backward=True):
    """Whether the fast path sums every product of batches of m rows in the reference's order
    (dispatch.hpp's choices; see the module docstring)."""
    for i, op in enumerate(plan.ops):
        if op[KIND] != DENSE:
            continue
        n_in, n_out = int(op[N_IN]), int(op[N_OUT])
        if not (max(m, n_in, n_out) < SMALL_GEMM_MACS and m * n_in * n_out < SMALL_GEMM_MACS):
            return False  # gemm()
        if n_out == 1:  # a dot along the row (forward); backward: DOWN_COLUMNS's dW and db dot down the rows
            ok = n_in < NARROW and (not backward or m < NARROW)
        else:  # rank-1 updates (plain order); dinp: a dot along each row of W; db: column_sums
            ok = not backward or ((i == 0 or n_out < NARROW) and (not op[USE_BIAS] or n_out >= NARROW or m < NARROW))
        if not ok:
            return False
    return True


def assert_agree(fast, ref, exact, dtype, what):
    if exact or np.size(ref) == 0 or not np.any(ref):
        np.testing.assert_array_equal(fast, ref, err_msg=f"{what}: the same bits expected")
    else:
        assert relative_error(fast, ref) < TOLERANCE[dtype], what


def train(impl, plan, state, X, y, orders, lrs, batch_size, w):
    """Epochs of impl (_core, _core.reference or numpy_) from a copy of state: (that copy, stats)."""
    s = state.copy()
    if impl is numpy_:
        stats = numpy_.train_epochs(plan, s, X, y, orders, lrs, batch_size, sample_weight=w)
    else:
        stats = impl.train_epochs(cpp._net(plan), s.params, s.slots, s.stats, X, y, orders, lrs, batch_size, s.step,
                                  False, w)
    return s, stats


def loss_and_grad(impl, plan, state, X, y, w):
    if impl is numpy_:
        return numpy_.loss_and_grad(plan, state, X, y, sample_weight=w)
    return impl.loss_and_grad(cpp._net(plan), state.params, state.stats, X, y, state.step, w)


ADAPTIVE = {"adam-clipnorm", "adamw-clipvalue", "rmsprop", "adagrad"}


def chaotic(network, optimizer, dtype, batch_size):
    """DESIGN.md's runs where rounding differences grow along the run (an adaptive optimizer at
    batch 1 or behind a BatchNorm, in float32): there the tolerance holds per step. An adaptive
    step divides by the gradient's own size, so a gradient that nearly cancels moves its parameter
    by about lr whatever its rounding: per step, the loss and the gradient are compared."""
    has_batchnorm = "bn" in network.split("-")
    return dtype == "float32" and optimizer in ADAPTIVE and (batch_size == 1 or has_batchnorm)


def compare_training(impl, ref_impl, plan, state, X, y, orders, lrs, batch_size, w, exact, dtype, per_step):
    """Train with impl and ref_impl and compare the stats, parameters, slots and BatchNorm
    statistics after the whole run; with per_step, also the loss and gradient of each step from
    the reference's state (then the run's end is compared only as far as it is not chaotic)."""
    if per_step:
        s = state
        for e, lr in enumerate(lrs):
            for start in range(0, len(X), batch_size):
                rows = orders[e][start:start + batch_size]
                Xb, yb, wb = X[rows], y[rows], None if w is None else w[rows]
                for a, b, what in zip(loss_and_grad(impl, plan, s, Xb, yb, wb),
                                      loss_and_grad(ref_impl, plan, s, Xb, yb, wb), ("loss", "grad")):
                    assert_agree(a, b, exact, dtype, f"{what} of step {s.step}")
                s, _ = train(ref_impl, plan, s, Xb, yb, None, [lr], len(rows), wb)
                s.step += 1
    ours, stats = train(impl, plan, state, X, y, orders, lrs, batch_size, w)
    ref, stats_ref = train(ref_impl, plan, state, X, y, orders, lrs, batch_size, w)
    np.testing.assert_array_equal(stats[:, 2:], stats_ref[:, 2:])  # seen, steps
    if per_step:
        return ref
    # the correct counts: in float32 a near tie may flip
    corrects = (stats[:, 1], stats_ref[:, 1]) if dtype == "float64" or exact else ([], [])
    for name, a, b in [("loss", stats[:, 0], stats_ref[:, 0]), ("correct", *corrects),
                       ("params", ours.params, ref.params), ("slots", ours.slots, ref.slots),
                       ("bn statistics", ours.stats, ref.stats)]:
        assert_agree(a, b, exact, dtype, name)
    return ref


def compare_fast_and_reference(network, optimizer, dtype, batch, weighted):
    # A batch of one zero-weight row steps on the penalty's gradient alone, where rounding
    # differences grow along the run under an adaptive optimizer (DESIGN.md: the tolerance holds
    # per step there), so batches of one keep every weight nonzero.
    batch_size = BATCHES[batch]
    plan, state, X, y, w, orders, lrs = make(network, optimizer, dtype, weighted, zero_weight=batch_size > 1)
    net = cpp._net(plan)
    # one batch of that size: loss and gradient (training mode, dropout masks of state.step)
    m = min(batch_size, N)
    exact = same_order(plan, m)
    wb = None if w is None else w[:m]
    loss, grad = _core.loss_and_grad(net, state.params, state.stats, X[:m], y[:m], state.step, wb)
    loss_ref, grad_ref = _core.reference.loss_and_grad(net, state.params, state.stats, X[:m], y[:m], state.step, wb)
    assert_agree(loss, loss_ref, exact, dtype, "loss")
    assert_agree(grad, grad_ref, exact, dtype, "grad")
    # whole epochs over shuffled orders
    per_step = not exact and chaotic(network, optimizer, dtype, batch_size)
    ref = compare_training(_core, _core.reference, plan, state, X, y, orders, lrs, batch_size, w, exact, dtype,
                           per_step)
    for logits in (False, True):
        out = _core.predict(net, ref.params, ref.stats, X, batch_size, logits)
        out_ref = _core.reference.predict(net, ref.params, ref.stats, X, batch_size, logits)
        assert_agree(out, out_ref, same_order(plan, m, backward=False), dtype, "predict")
    return exact


@pytest.mark.parametrize("batch", list(BATCHES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", HIDDEN)
def test_every_activation_fast_vs_reference(activation, dtype, batch):
    optimizer = list(OPTIMIZERS)[HIDDEN.index(activation) % len(OPTIMIZERS)]
    compare_fast_and_reference(f"act-{activation}", optimizer, dtype, batch, weighted=batch == "batch8")


STRUCTURES = [name for name in NETWORKS if not name.startswith("act-")]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("batch", list(BATCHES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("network", STRUCTURES)
def test_networks_and_optimizers_fast_vs_reference(network, optimizer, dtype, batch, weighted):
    compare_fast_and_reference(network, optimizer, dtype, batch, weighted)


def test_the_grid_has_same_bits_and_tolerance_cases():
    """Both kinds of comparison run on every pass: the same bits (TinyPass, LinearPass and the
    general pass's direct loops) and tolerance (gemm(), tree-ordered dots)."""
    kinds = {}
    for network in NETWORKS:
        plan = make(network, "sgd", "float64")[0]
        for batch_size in BATCHES.values():
            kinds.setdefault(same_order(plan, min(batch_size, N)), set()).add(cpp._net(plan).training_pass(batch_size))
    expected_tiny = {"tiny"} if _core.build_info()["tiny_pass"] else set()
    assert kinds[True] == {"general", "linear"} | expected_tiny
    assert kinds[False] == {"general", "linear"}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("batch", ["batch1", "batch8"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_reference_vs_numpy(network, dtype, batch, weighted):
    optimizer = list(OPTIMIZERS)[sorted(NETWORKS).index(network) % len(OPTIMIZERS)]
    tol, batch_size = TOLERANCE[dtype], BATCHES[batch]
    plan, state, X, y, w, orders, lrs = make(network, optimizer, dtype, weighted, zero_weight=batch_size > 1)
    net = cpp._net(plan)
    loss, grad = _core.reference.loss_and_grad(net, state.params, state.stats, X, y, state.step, w)
    loss_np, grad_np = numpy_.loss_and_grad(plan, state, X, y, sample_weight=w)
    assert relative_error(loss, loss_np) < tol and relative_error(grad, grad_np) < tol
    ref = compare_training(_core.reference, numpy_, plan, state, X, y, orders, lrs, batch_size, w, False, dtype,
                           chaotic(network, optimizer, dtype, batch_size))
    for logits in (False, True):
        out = _core.reference.predict(net, ref.params, ref.stats, X, 5, logits)
        assert relative_error(out, numpy_.predict(plan, ref, X, 5, logits)) < tol


def test_reference_checks_arguments_as_the_fast_path_does():
    """The submodule's functions go through the bindings' argument checks: the same errors."""
    plan, state, X, y, w, orders, lrs = make("dropout-bn-cce-index", "adam-clipnorm", "float64", weighted=True)
    net = cpp._net(plan)
    bad_X = X.copy()
    bad_X[orders[0][10]] = np.nan
    bad_y = y.copy()
    bad_y[2] = 7.0
    calls = [
        lambda m: m.train_epochs(net, state.params.copy(), state.slots.copy(), state.stats.copy(), X.astype(np.float32),
                                 y, orders, lrs, 8, 0),
        lambda m: m.train_epochs(net, state.params.copy(), state.slots.copy(), state.stats.copy(), X, y, orders[:1],
                                 lrs, 8, 0),
        lambda m: m.train_epochs(net, state.params.copy(), state.slots.copy(), state.stats.copy(), X, y, orders, lrs,
                                 0, 0),
        lambda m: m.train_epochs(net, state.params.copy(), state.slots.copy(), state.stats.copy(), X, bad_y, orders,
                                 lrs, 8, 0),
        lambda m: m.train_epochs(net, state.params.copy(), state.slots.copy(), state.stats.copy(), bad_X, y, orders,
                                 lrs, 8, 0, True),
        lambda m: m.train_epochs(net, state.params.copy(), state.slots.copy(), state.stats.copy(), X, y, orders, lrs,
                                 8, 0, False, -w),
        lambda m: m.loss_and_grad(net, state.params, state.stats, X[:0], y[:0], 0),
        lambda m: m.predict(net, state.params[:-1], state.stats, X, 8),
    ]
    for call in calls:
        errors = []
        for module in (_core, _core.reference):
            with pytest.raises((TypeError, ValueError)) as info:
                call(module)
            errors.append((info.type, str(info.value)))
        assert errors[0] == errors[1]


def test_reference_check_finite_progress_and_cancel():
    plan, state, X, y, w, orders, lrs = make("dropout-bn-cce-index", "adam-clipnorm", "float64")
    net = cpp._net(plan)
    s = state.copy()
    bad = X.copy()
    bad[orders[0][20]] = np.inf
    bad[orders[0][12], 1] = np.nan  # the first one epoch 0 visits is named
    with pytest.raises(ValueError, match=rf"row {orders[0][12]}\)"):
        _core.reference.train_epochs(net, s.params, s.slots, s.stats, bad, y, orders, lrs, 8, s.step, True)
    for name in ("params", "slots", "stats"):
        np.testing.assert_array_equal(getattr(s, name), getattr(state, name))
    progress, cancel = np.zeros(1, np.int64), np.zeros(1, np.int64)
    _core.reference.train_epochs(net, s.params, s.slots, s.stats, X, y, orders, lrs, 8, s.step, False, None, progress)
    assert progress[0] == 2 * N
    cancel[0] = 1
    before = s.copy()
    stats = _core.reference.train_epochs(net, s.params, s.slots, s.stats, X, y, orders, lrs, 8, s.step, False, None,
                                         None, cancel)
    assert stats.shape == (0, 4)
    np.testing.assert_array_equal(s.params, before.params)


@pytest.mark.parametrize("impl", [_core, _core.reference], ids=["fast", "reference"])
def test_a_shuffle_spec_is_its_explicit_orders(impl):
    """shuffle_seed makes each path visit densefit.shuffle's orders: the same bits as passing them."""
    from densefit import shuffle

    plan, state, X, y, w, _, lrs = make("dropout-bn-cce-index", "adam-clipnorm", "float64")
    net = cpp._net(plan)
    by_spec, explicit = state.copy(), state.copy()
    stats = impl.train_epochs(net, by_spec.params, by_spec.slots, by_spec.stats, X, y, None, lrs, 8, state.step,
                              False, w, shuffle_seed=11, first_epoch=3)
    expected = impl.train_epochs(net, explicit.params, explicit.slots, explicit.stats, X, y,
                                 shuffle.orders(11, 3, len(lrs), N), lrs, 8, state.step, False, w)
    np.testing.assert_array_equal(stats, expected)
    for name in ("params", "slots", "stats"):
        np.testing.assert_array_equal(getattr(by_spec, name), getattr(explicit, name))
    with pytest.raises(ValueError, match="not both"):
        impl.train_epochs(net, by_spec.params, by_spec.slots, by_spec.stats, X, y, shuffle.orders(11, 3, 2, N), lrs,
                          8, state.step, shuffle_seed=11)


def test_stub_lists_the_reference_functions():
    """python/densefit/_core.pyi types the submodule as a class of its functions, with the
    signatures of the module's own."""
    import ast
    import pathlib

    import densefit

    tree = ast.parse((pathlib.Path(densefit.__file__).parent / "_core.pyi").read_text())
    stub = {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    members = {node.name: node for node in stub["reference"].body if isinstance(node, ast.FunctionDef)}
    assert set(members) == {name for name in dir(_core.reference) if not name.startswith("_")}
    for name, node in members.items():
        assert ast.dump(node.args) == ast.dump(stub[name].args), name
        assert ast.dump(node.returns) == ast.dump(stub[name].returns), name
