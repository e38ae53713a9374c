"""What is specific to the numba backend: its on-disk compile cache, compiled signatures (a
read-only or strided input never the cause of a recompile beyond one per layout), unknown codes,
and compact checks against the numpy reference. Cross-backend equivalence in general lives in
test_equivalence.py, any layout of the inputs in test_backend_layouts.py, argument checks in
test_backend_contract.py."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

numba_ = pytest.importorskip("densefit.backends.numba_", reason="numba is not installed")

from densefit import activations as A  # noqa: E402
from densefit import optimizers as O  # noqa: E402
from densefit.backends import numpy_  # noqa: E402
from densefit.layers import Activation, BatchNorm, Dense, Dropout  # noqa: E402
from densefit.plan import ACT, ACTIVATION, KIND, build_plan, init_state  # noqa: E402

SEED = 7


def relative_error(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def make_problem(dtype="float64", n=45, d=5, k=4, epochs=3):
    """A network with every op kind, index targets, a short last batch and shuffled epochs.
    The Dense before BatchNorm has no bias: a bias there has an analytically zero gradient, and
    Adam would turn the rounding noise in it into full-size steps of random sign."""
    layers = [Dense(9, activation="relu", use_bias=False), BatchNorm(momentum=0.3), Dropout(0.25),
              Dense(7, activation="gelu", kernel_regularizer={"l1": 0.01, "l2": 0.02}), Activation("tanh"),
              Dense(k, activation="softmax")]
    plan = build_plan(layers, d, "categorical_crossentropy", O.Adam(0.02, clipnorm=0.5, clipvalue=0.2), dtype, SEED)
    state = init_state(plan, layers, SEED)
    state.step = 11  # dropout masks and Adam's bias correction depend on the step counter
    rng = np.random.default_rng(SEED)
    X = rng.normal(size=(n, d)).astype(dtype)
    y = rng.integers(0, k, size=(n, 1)).astype(dtype)
    orders = np.stack([rng.permutation(n) for _ in range(epochs)])
    lrs = np.array([0.02, 0.01, 0.005][:epochs])
    return plan, state, X, y, orders, lrs


def test_matches_numpy_reference_float64():
    plan, state, X, y, orders, lrs = make_problem()
    ours, ref = state.copy(), state.copy()
    got = numba_.train_epochs(plan, ours, X, y, orders, lrs, 8)
    want = numpy_.train_epochs(plan, ref, X, y, orders, lrs, 8)
    np.testing.assert_array_equal(got[:, 1:], want[:, 1:])  # correct, seen, steps: exact counts
    for name, a, b in [("epoch losses", got[:, 0], want[:, 0]), ("params", ours.params, ref.params),
                       ("slots", ours.slots, ref.slots), ("running stats", ours.stats, ref.stats),
                       ("predict", numba_.predict(plan, ours, X, 16), numpy_.predict(plan, ref, X, 16)),
                       ("logits", numba_.predict(plan, ours, X, 7, logits=True),
                        numpy_.predict(plan, ref, X, 7, logits=True))]:
        assert relative_error(a, b) <= 1e-10, name

    before = ours.copy()
    value, grad = numba_.loss_and_grad(plan, ours, X, y)
    ref_value, ref_grad = numpy_.loss_and_grad(plan, ref, X, y)
    assert abs(value - ref_value) <= 1e-10 * abs(ref_value)
    assert relative_error(grad, ref_grad) <= 1e-10
    for a, b in [(ours.params, before.params), (ours.slots, before.slots), (ours.stats, before.stats)]:
        np.testing.assert_array_equal(a, b)  # loss_and_grad updates nothing, BatchNorm statistics included
    assert ours.step == before.step


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", [s.name for s in A.REGISTRY if s.standalone])
def test_one_sample_activations_match_numpy_reference(activation, dtype):
    """At one sample per step the kernel runs each Activation op's loop itself (no call): every
    activation, as a fused Dense activation and as an Activation layer of its own, forward and
    backward, against the numpy reference (last batches of 1 row after batches of 2, too)."""
    alpha = 0.2 if A.REGISTRY[A.CODES[activation]].alpha is not None else None
    layers = [Dense(4, activation=activation, alpha=alpha),
              Activation(activation), Dense(3, activation="tanh"), Dense(1, activation="sigmoid")]
    plan = build_plan(layers, 3, "binary_crossentropy", O.Adam(0.01), dtype, SEED)
    state = init_state(plan, layers, SEED)
    rng = np.random.default_rng(SEED)
    X = rng.normal(size=(25, 3))
    y = (rng.random((25, 1)) < 0.5).astype(float)
    lrs = np.array([0.01, 0.01])
    tol = 1e-10 if dtype == "float64" else 1e-4
    for batch_size in (1, 2):
        ours, ref = state.copy(), state.copy()
        got = numba_.train_epochs(plan, ours, X, y, None, lrs, batch_size)
        want = numpy_.train_epochs(plan, ref, X, y, None, lrs, batch_size)
        np.testing.assert_array_equal(got[:, 1:], want[:, 1:])
        assert relative_error(got[:, 0], want[:, 0]) <= tol
        assert relative_error(ours.params, ref.params) <= tol
        assert relative_error(ours.slots, ref.slots) <= tol


@pytest.mark.parametrize("loss", ["mse", "binary_crossentropy", "categorical_crossentropy"])
@pytest.mark.parametrize("batch_size", [1, 3, 4, 7, 13])
def test_small_batches_match_numpy_reference(loss, batch_size):
    """The loop paths of tiny layers: one row (``dense_backward_one``), and sums over rows taken in four
    partial sums with 0 to 3 rows left over (45 rows: last batches of 1, 3, 1, 3 and 6 rows)."""
    k = 3
    out_act = {"mse": None, "binary_crossentropy": "sigmoid", "categorical_crossentropy": "softmax"}[loss]
    layers = [Dense(4, activation="relu"), Dense(5, activation="tanh"), Dense(k, activation=out_act)]
    plan = build_plan(layers, 3, loss, O.SGD(0.05, momentum=0.5), "float64", SEED)
    state = init_state(plan, layers, SEED)
    rng = np.random.default_rng(SEED)
    X = rng.normal(size=(45, 3))
    y = rng.normal(size=(45, k)) if loss == "mse" else (rng.random((45, k)) < 0.5).astype(float)
    if loss == "categorical_crossentropy":
        y = rng.integers(0, k, size=(45, 1)).astype(float)
    orders = np.stack([rng.permutation(45) for _ in range(2)])
    lrs = np.array([0.05, 0.02])
    ours, ref = state.copy(), state.copy()
    got = numba_.train_epochs(plan, ours, X, y, orders, lrs, batch_size)
    want = numpy_.train_epochs(plan, ref, X, y, orders, lrs, batch_size)
    np.testing.assert_array_equal(got[:, 1:], want[:, 1:])
    assert relative_error(got[:, 0], want[:, 0]) <= 1e-10
    assert relative_error(ours.params, ref.params) <= 1e-10
    assert relative_error(ours.slots, ref.slots) <= 1e-10


def test_orders_none_or_one_repeated_row_visit_the_rows_in_order():
    """``orders=None`` (rows 0..n-1 every epoch) and an unshuffled fit's stride-0 orders (passed on as
    one row) train exactly as the explicit index arrays do, and as the reference does."""
    plan, state, X, y, _, lrs = make_problem()
    n = X.shape[0]
    want = state.copy()
    want_stats = numba_.train_epochs(plan, want, X, y, np.tile(np.arange(n), (lrs.size, 1)), lrs, 8)
    for orders in (None, np.broadcast_to(np.arange(n), (lrs.size, n))):
        got = state.copy()
        np.testing.assert_array_equal(numba_.train_epochs(plan, got, X, y, orders, lrs, 8), want_stats)
        np.testing.assert_array_equal(got.params, want.params)
    ref = state.copy()
    numpy_.train_epochs(plan, ref, X, y, None, lrs, 8)
    assert relative_error(want.params, ref.params) <= 1e-10



# ------------------------------------------------------------------------ sample weights and penalty_per_weight
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}  # DESIGN's, as in test_equivalence.py
TARGETS = ["mse", "binary", "index", "onehot"]   # every loss; categorical with index and one-hot targets


def weighted_problem(target, dtype="float64", penalty_per_weight=False, n=45, d=5, k=3, epochs=3):
    """A network with BatchNorm, Dropout and L1+L2 kernel penalties on every Dense, targets of the given
    kind, shuffled epochs and weights in [0, 2) with zeros among them (n = 45 = 5·8 + 5: batches of 8 leave
    a last one of 5). Whole batches of zero weight: epoch 0's second batch of 8 and epoch 1's last one."""
    loss = {"mse": "mse", "binary": "binary_crossentropy"}.get(target, "categorical_crossentropy")
    out = {"mse": None, "binary": "sigmoid"}.get(target, "softmax")
    penalty = {"l1": 0.01, "l2": 0.02}
    layers = [Dense(9, activation="relu", use_bias=False, kernel_regularizer=penalty), BatchNorm(momentum=0.3),
              Dropout(0.25), Dense(7, activation="tanh", kernel_regularizer=penalty),
              Dense(k, activation=out, kernel_regularizer={"l1": 0.005, "l2": 0.01})]
    plan = build_plan(layers, d, loss, O.Adam(0.02, clipnorm=2.0), dtype, SEED, penalty_per_weight=penalty_per_weight)
    state = init_state(plan, layers, SEED)
    state.step = 5
    rng = np.random.default_rng(SEED + 1)
    X = rng.normal(size=(n, d)).astype(dtype)
    labels = rng.integers(0, k, size=n)
    y = {"mse": lambda: rng.normal(size=(n, k)), "binary": lambda: (rng.random((n, k)) < 0.5).astype(float),
         "index": lambda: labels[:, None].astype(float), "onehot": lambda: np.eye(k)[labels]}[target]().astype(dtype)
    orders = np.stack([rng.permutation(n) for _ in range(epochs)])
    w = rng.uniform(0, 2, size=n) * (rng.random(n) > 0.2)
    w[orders[0, 8:16]] = 0
    w[orders[1, 40:]] = 0
    lrs = np.array([0.02, 0.01, 0.005][:epochs])
    return plan, state, X, y, orders, lrs, w.astype(dtype)


def assert_training_matches_numpy(plan, state, X, y, orders, lrs, batch_size, w, dtype):
    """numba against the numpy reference: exact counts (correct, seen, steps), then epoch losses, parameters,
    optimizer slots and BatchNorm running statistics within DESIGN's tolerance for ``dtype``."""
    ours, ref = state.copy(), state.copy()
    got = numba_.train_epochs(plan, ours, X, y, orders, lrs, batch_size, sample_weight=w)
    want = numpy_.train_epochs(plan, ref, X, y, orders, lrs, batch_size, sample_weight=w)
    np.testing.assert_array_equal(got[:, 1:], want[:, 1:])
    for name, a, b in [("epoch losses", got[:, 0], want[:, 0]), ("params", ours.params, ref.params),
                       ("slots", ours.slots, ref.slots), ("running stats", ours.stats, ref.stats)]:
        assert relative_error(a, b) <= TOLERANCE[dtype], name
    return ours, got


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("penalty_per_weight", [False, True])
@pytest.mark.parametrize("target", TARGETS)
def test_weighted_training_matches_numpy_reference(target, penalty_per_weight, dtype):
    """Shuffled epochs in batches of 8 (a last one of 5), weights with zeros and batches of no weight."""
    plan, state, X, y, orders, lrs, w = weighted_problem(target, dtype, penalty_per_weight)
    trained, stats = assert_training_matches_numpy(plan, state, X, y, orders, lrs, 8, w, dtype)
    np.testing.assert_array_equal(stats[:, 2], X.shape[0])  # SEEN counts rows, weighted or not
    unweighted = state.copy()
    numba_.train_epochs(plan, unweighted, X, y, orders, lrs, 8)
    assert relative_error(trained.params, unweighted.params) > 1e-3  # the weights did change the training


@pytest.mark.parametrize("batch_size", [1, 7])
@pytest.mark.parametrize("target", TARGETS)
def test_weighted_training_in_order_matches_numpy_reference(target, batch_size):
    """Rows in order (``orders=None``): copied, not gathered, and at one row per step copied by the kernel
    itself; a zero weight there is a whole batch of no weight. With penalty_per_weight."""
    plan, state, X, y, _, lrs, w = weighted_problem(target, "float64", penalty_per_weight=True)
    w[7:14] = 0  # the second batch of 7
    assert_training_matches_numpy(plan, state, X, y, None, lrs, batch_size, w, "float64")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("target", TARGETS)
def test_penalty_per_weight_without_sample_weight_matches_numpy_reference(target, dtype):
    """Without weights the penalty is divided by each batch's row count (the last batch's 5 too)."""
    plan, state, X, y, orders, lrs, _ = weighted_problem(target, dtype, penalty_per_weight=True)
    assert_training_matches_numpy(plan, state, X, y, orders, lrs, 8, None, dtype)
    per_batch, _, _, _, _, _, _ = weighted_problem(target, dtype, penalty_per_weight=False)
    assert_training_matches_numpy(per_batch, state, X, y, orders, lrs, 8, None, dtype)


@pytest.mark.parametrize("penalty_per_weight", [False, True])
def test_unit_weights_train_as_no_weights(penalty_per_weight):
    """Weights of 1 are the unweighted objective: ``wᵢ / W = 1/m`` and ``W = m``."""
    plan, state, X, y, orders, lrs, _ = weighted_problem("index", "float64", penalty_per_weight)
    weighted, unweighted = state.copy(), state.copy()
    got = numba_.train_epochs(plan, weighted, X, y, orders, lrs, 8, sample_weight=np.ones(X.shape[0]))
    want = numba_.train_epochs(plan, unweighted, X, y, orders, lrs, 8)
    np.testing.assert_array_equal(got[:, 1:], want[:, 1:])
    assert relative_error(got[:, 0], want[:, 0]) <= 1e-10
    assert relative_error(weighted.params, unweighted.params) <= 1e-10


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("penalty_per_weight", [False, True])
@pytest.mark.parametrize("target", TARGETS)
def test_weighted_loss_and_grad_matches_numpy_reference(target, penalty_per_weight, dtype):
    """One weighted batch, zeros among the weights; and one of no weight at all: no data loss or gradient,
    the penalty alone (times 0 per weight)."""
    plan, state, X, y, _, _, w = weighted_problem(target, dtype, penalty_per_weight)
    tol = TOLERANCE[dtype]
    for weights in (w, np.zeros_like(w)):
        before = state.copy()
        value, grad = numba_.loss_and_grad(plan, state, X, y, sample_weight=weights)
        ref_value, ref_grad = numpy_.loss_and_grad(plan, state.copy(), X, y, sample_weight=weights)
        assert abs(value - ref_value) <= tol * abs(ref_value)
        assert relative_error(grad, ref_grad) <= tol
        for a, b in [(state.params, before.params), (state.stats, before.stats)]:
            np.testing.assert_array_equal(a, b)  # nothing moves, BatchNorm statistics included
    if penalty_per_weight:  # the last batch had no weight: nothing at all
        assert value == 0 and not np.any(grad)
    else:
        assert value > 0 and np.any(grad)


def test_sample_weight_is_checked_and_shares_the_compiled_kernel():
    plan, state, X, y, orders, lrs, w = weighted_problem("index")
    for bad, error, match in [(w[:-1], ValueError, "shape"), (w[:, None], ValueError, "shape"),
                              (w.astype(np.float32), TypeError, "plan's dtype")]:
        with pytest.raises(error, match=match):
            numba_.train_epochs(plan, state.copy(), X, y, orders, lrs, 8, sample_weight=bad)
        with pytest.raises(error, match=match):
            numba_.loss_and_grad(plan, state, X, y, sample_weight=bad)
    numba_.train_epochs(plan, state.copy(), X, y, orders, lrs, 8)
    compiled = len(numba_.kernel.signatures)
    readonly = w.copy()
    readonly.flags.writeable = False
    for weights in (w, readonly, w[::-1]):  # writable, read-only, strided: one column type
        numba_.train_epochs(plan, state.copy(), X, y, orders, lrs, 8, sample_weight=weights)
        numba_.loss_and_grad(plan, state, X, y, sample_weight=weights)
    assert len(numba_.kernel.signatures) == compiled, numba_.kernel.signatures

def test_read_only_input_shares_the_compiled_kernels():
    """Inputs are passed as read-only views, so writable and read-only data use one compiled
    kernel; and training, gradients and inference share it (one signature per dtype and layout)."""
    plan, state, X, y, orders, lrs = make_problem()
    before = len(numba_.kernel.signatures)
    numba_.train_epochs(plan, state, X, y, orders, lrs, 8)
    numba_.predict(plan, state, X, 16)
    numba_.loss_and_grad(plan, state, X, y)
    compiled = len(numba_.kernel.signatures)
    assert compiled <= before + 1, numba_.kernel.signatures
    X_readonly = X.copy()
    X_readonly.flags.writeable = False
    numba_.train_epochs(plan, state, X_readonly, y, orders, lrs, 8)
    numba_.predict(plan, state, X_readonly, 16)
    numba_.loss_and_grad(plan, state, X_readonly, y)
    assert len(numba_.kernel.signatures) == compiled


CACHE_PROBE = textwrap.dedent("""
    import json, sys
    import numba
    sys.path[:0] = {test_dir!r}
    from test_numba_backend import make_problem
    from densefit.backends import numba_
    plan, state, X, y, orders, lrs = make_problem()
    numba_.train_epochs(plan, state, X, y, orders, lrs, 8)
    numba_.predict(plan, state, X, 16)
    numba_.loss_and_grad(plan, state, X, y)
    dispatchers = {{name: f for name, f in vars(numba_).items() if isinstance(f, numba.core.dispatcher.Dispatcher)}}
    print(json.dumps({{"misses": {{n: sum(f.stats.cache_misses.values()) for n, f in dispatchers.items()}},
                      "hits": {{n: sum(f.stats.cache_hits.values()) for n, f in dispatchers.items()}}}}))
""")


def test_a_second_process_loads_the_kernels_from_the_cache():
    """The first run may compile (and writes the cache); the next compiles nothing."""
    script = CACHE_PROBE.format(test_dir=[os.path.dirname(__file__)])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    second = runs[1]
    assert not any(second["misses"].values()), second["misses"]
    assert second["hits"]["kernel"] >= 1, second["hits"]


@pytest.mark.parametrize("backend_module", ["numba", "numpy"])
@pytest.mark.parametrize("what", ["activation", "loss", "optimizer", "op kind"])
def test_an_unknown_code_is_an_error(what, backend_module):
    """A plan whose activation, loss, optimizer or op code no registry has is refused, never run as
    another one (the numba backend once fell through to Adagrad)."""
    module = numba_ if backend_module == "numba" else numpy_
    plan, state, X, y, orders, lrs = make_problem()
    ops = plan.ops.copy()
    changes = {}
    if what == "activation":
        ops[ops[:, KIND] == ACTIVATION, ACT] = len(A.REGISTRY)
    elif what == "op kind":
        ops[0, KIND] = 99
    elif what == "loss":
        changes["loss"] = 99
        y = np.eye(plan.n_outputs, dtype=y.dtype)[y[:, 0].astype(int)]  # (targets an unknown loss could take)
    else:
        changes["optimizer"] = 99
    bad = dataclasses.replace(plan, ops=ops, **changes)
    before = state.copy()
    with pytest.raises(ValueError, match="unknown|no standalone"):
        module.train_epochs(bad, state, X, y, orders, lrs, 8)
    if what != "optimizer":
        with pytest.raises(ValueError, match="unknown|no standalone"):
            module.loss_and_grad(bad, state, X, y)
    if what in ("activation", "op kind"):
        with pytest.raises(ValueError, match="unknown|no standalone"):
            module.predict(bad, state, X, 16)
    if backend_module == "numba":  # checked before any pass runs
        np.testing.assert_array_equal(state.params, before.params)
