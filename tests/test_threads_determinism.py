"""The cpp backend's data-parallel pass (cpp/include/densefit/data_parallel.hpp): a batch cut into
fixed chunks of rows over the core's threads gives the same bits for 1, 2, 3 and 4 threads, and
agrees with the numpy reference within DESIGN.md's tolerances."""

from __future__ import annotations

import numpy as np
import pytest

_core = pytest.importorskip("densefit._core")

import densefit  # noqa: E402
from densefit import optimizers as O  # noqa: E402
from densefit import shuffle  # noqa: E402
from densefit.backends import cpp, numpy_  # noqa: E402
from densefit.layers import Activation, BatchNorm, Dense, Dropout  # noqa: E402
from densefit.plan import build_plan, init_state  # noqa: E402

TUNING = _core.build_info()["tuning"]
CHUNK = TUNING["data_parallel_rows"]
MIN_ROWS = TUNING["data_parallel_min_rows"]
THREADS = (1, 2, 3, 4)
TOL = {"float64": 1e-10, "float32": 1e-4}

# name: (layers, loss, optimizer, target kind); every one is big enough for the data-parallel pass
NETS = {
    "relu-bce-sgd-momentum-l1": (
        lambda: [Dense(64, activation="relu", input_dim=20, kernel_regularizer={"l1": 0.001}),
                 Dense(1, activation="sigmoid")],
        "binary_crossentropy", lambda: O.SGD(0.05, momentum=0.9), "binary"),
    "tanh-dropout-cce-index-adam-clipnorm-l2": (
        lambda: [Dense(48, activation="tanh", input_dim=30), Dropout(0.3),
                 Dense(32, activation="relu", kernel_regularizer={"l2": 0.01}), Dense(4, activation="softmax")],
        "categorical_crossentropy", lambda: O.Adam(0.01, clipnorm=0.5), "index"),
    "gelu-elu-mse-adamw-clipvalue": (
        lambda: [Dense(40, activation="gelu", input_dim=16), Dense(40, activation="elu"), Dense(2)],
        "mse", lambda: O.AdamW(0.01, weight_decay=0.05, clipvalue=0.1), "regression"),
    "leaky-onehot-cce-nobias-rmsprop": (
        lambda: [Dense(56, activation="leaky_relu", input_dim=24),
                 Dropout(0.1), Dense(3, activation="softmax", use_bias=False)],
        "categorical_crossentropy", lambda: O.RMSprop(0.005), "onehot"),
    "sigmoid-softplus-bce-multi-adagrad": (
        lambda: [Dense(36, activation="sigmoid", input_dim=12), Dense(36, activation="softplus"),
                 Dense(3, activation="sigmoid")],
        "binary_crossentropy", lambda: O.Adagrad(0.05), "binary"),
    # between the data-parallel pass's update split and the general pass's: the gradient sum and the
    # optimizer step split over the threads (momentum SGD: Adam's normalized steps would magnify
    # float32's rounding beyond the tolerance of the comparison with numpy)
    "wide-relu-cce-nesterov-split-update": (
        lambda: [Dense(96, activation="relu", input_dim=64), Dense(64, activation="relu"),
                 Dense(3, activation="softmax")],
        "categorical_crossentropy", lambda: O.SGD(0.05, momentum=0.9, nesterov=True), "index"),
    # BatchNorm: the chunks add their statistics at each BatchNorm (on the inputs too: no input gradient)
    "batchnorm-relu-bce-momentum": (
        lambda: [Dense(48, input_dim=20), BatchNorm(), Activation("relu"), Dense(32), BatchNorm(momentum=0.9),
                 Activation("tanh"), Dense(1, activation="sigmoid")],
        "binary_crossentropy", lambda: O.SGD(0.05, momentum=0.9), "binary"),
    "batchnorm-inputs-dropout-cce-adam-l2": (
        lambda: [BatchNorm(), Dense(40, activation="gelu", input_dim=24, kernel_regularizer={"l2": 0.01}),
                 Dropout(0.2), BatchNorm(), Dense(3, activation="softmax")],
        "categorical_crossentropy", lambda: O.Adam(0.01), "index"),
}

# around one chunk (the whole-batch pass), around the smallest data-parallel batch, odd sizes, 1024
BATCHES = (CHUNK - 1, CHUNK, CHUNK + 1, MIN_ROWS - 1, MIN_ROWS, MIN_ROWS + 1, 3 * CHUNK + 7, 1024)
N = 1100  # no batch size above divides it: every epoch ends on a smaller batch


def _problem(name, dtype, seed=0, penalty_per_weight=False):
    layers_fn, loss, optimizer, target = NETS[name]
    d = next(layer.input_dim for layer in layers_fn() if getattr(layer, "input_dim", None))
    plan = build_plan(layers_fn(), d, loss, optimizer(), dtype, seed, penalty_per_weight=penalty_per_weight)
    state = init_state(plan, layers_fn(), seed)
    state.step = 5  # dropout masks and the optimizers' first steps depend on it
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, d)) / np.sqrt(d / 4)
    K = plan.n_outputs
    y = {"binary": lambda: (rng.random((N, K)) > 0.5) * 1.0, "regression": lambda: rng.normal(size=(N, K)),
         "index": lambda: rng.integers(0, K, (N, 1)) * 1.0, "onehot": lambda: np.eye(K)[rng.integers(0, K, N)]}[target]()
    w = rng.uniform(0.0, 2.0, N)
    w[rng.choice(N, 20, replace=False)] = 0.0
    orders = np.stack([rng.permutation(N) for _ in range(3)])
    return plan, state, X.astype(dtype), y.astype(dtype), w.astype(dtype), orders, np.array([0.02, 0.01, 0.015])


@pytest.fixture
def restore_threads():
    before = densefit.get_num_threads()
    yield
    densefit.set_num_threads(before)


def _train_each_thread_count(plan, state, X, y, orders, lrs, batch_size, w):
    results = []
    for threads in THREADS:
        densefit.set_num_threads(threads)
        trained = state.copy()
        stats = cpp.train_epochs(plan, trained, X, y, orders, lrs, batch_size, sample_weight=w)
        results.append((trained, stats))
    return results


def _assert_same_bits(results):
    (first, first_stats), rest = results[0], results[1:]
    for threads, (trained, stats) in zip(THREADS[1:], rest):
        np.testing.assert_array_equal(stats, first_stats, err_msg=f"{threads} threads")
        for name in ("params", "slots", "stats"):
            np.testing.assert_array_equal(getattr(trained, name), getattr(first, name), err_msg=f"{threads} threads")


def relative(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def test_the_pass_rule_reads_no_thread_count(restore_threads):
    plan = _problem("relu-bce-sgd-momentum-l1", "float32")[0]
    for threads in THREADS:
        densefit.set_num_threads(threads)
        batches = (CHUNK, MIN_ROWS - 1, MIN_ROWS, 1024, TUNING["data_parallel_max_rows"],
                   TUNING["data_parallel_max_rows"] + 1)
        assert [cpp._net(plan).training_pass(b) for b in batches] == \
            ["general", "general", "data_parallel", "data_parallel", "data_parallel", "general"]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(NETS))
def test_any_thread_count_gives_the_same_bits(name, dtype, weighted, restore_threads):
    plan, state, X, y, w, orders, lrs = _problem(name, dtype)
    w = w if weighted else None
    passes = set()
    for batch_size in BATCHES:
        passes.add(cpp._net(plan).training_pass(batch_size))
        results = _train_each_thread_count(plan, state, X, y, orders, lrs, batch_size, w)
        _assert_same_bits(results)
        assert np.isfinite(results[0][1]).all() and not np.array_equal(results[0][0].params, state.params)
    assert passes == {"general", "data_parallel"}  # both sides of the rule were run


@pytest.mark.parametrize("name", sorted(NETS))
def test_shuffled_in_the_core_any_thread_count_gives_the_same_bits(name, restore_threads):
    """fit's default: the epoch orders generated in the core from a Shuffle spec, then chunked."""
    plan, state, X, y, w, _, lrs = _problem(name, "float32")
    spec = shuffle.Shuffle(seed=5, first_epoch=2)
    results = _train_each_thread_count(plan, state, X, y, spec, lrs, 3 * CHUNK + 7, w)
    _assert_same_bits(results)
    explicit = state.copy()
    cpp.train_epochs(plan, explicit, X, y, spec.orders(len(lrs), len(X)), lrs, 3 * CHUNK + 7, sample_weight=w)
    np.testing.assert_array_equal(explicit.params, results[0][0].params)


@pytest.mark.parametrize("batch_size", [MIN_ROWS, 3 * CHUNK + 7, 1024])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(NETS))
def test_data_parallel_pass_matches_numpy(name, dtype, batch_size, restore_threads):
    """Unweighted with shuffled orders, then weighted with penalty_per_weight over rows in order."""
    for weighted in (False, True):
        plan, state, X, y, w, orders, lrs = _problem(name, dtype, penalty_per_weight=weighted)
        w, orders = (w, None) if weighted else (None, orders)
        assert cpp._net(plan).training_pass(batch_size) == "data_parallel"
        densefit.set_num_threads(3)
        ref, ours = state.copy(), state.copy()
        stats_ref = numpy_.train_epochs(plan, ref, X, y, orders, lrs, batch_size, sample_weight=w)
        stats = cpp.train_epochs(plan, ours, X, y, orders, lrs, batch_size, sample_weight=w)
        assert relative(stats[:, 0], stats_ref[:, 0]) < TOL[dtype]
        np.testing.assert_array_equal(stats[:, 2:], stats_ref[:, 2:])  # seen, steps
        if dtype == "float64":
            np.testing.assert_array_equal(stats[:, 1], stats_ref[:, 1])  # correct
        for part in ("params", "slots"):
            assert relative(getattr(ours, part), getattr(ref, part)) < TOL[dtype], part


def test_a_net_between_the_update_splits_is_tested():
    """The data-parallel pass splits the optimizer step from fewer parameters than the general pass
    (its workers are awake from the run before); one net of NETS sits between the two sizes, and
    above the size from which the chunks' gradient sum is split."""
    plan = _problem("wide-relu-cce-nesterov-split-update", "float32")[0]
    assert TUNING["data_parallel_update_params"] <= plan.n_params < TUNING["parallel_update_params"]
    assert plan.n_params >= TUNING["data_parallel_reduce_params"]


def test_split_adamw_update_gives_the_same_bits(restore_threads):
    """AdamW's decay splits the step into one update per parameter segment, each split over the
    threads on its own: here the two kernels of 64 × 128 and 128 × 64 (bits only: Adam's steps
    magnify float32's rounding against numpy's)."""
    layers = lambda: [Dense(128, activation="relu", input_dim=64), Dense(64, activation="relu"),
                      Dense(3, activation="softmax")]
    plan = build_plan(layers(), 64, "categorical_crossentropy", O.AdamW(0.01, weight_decay=0.05), "float32", 0)
    assert TUNING["data_parallel_update_params"] <= 64 * 128 and plan.n_params < TUNING["parallel_update_params"]
    state = init_state(plan, layers(), 0)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(N, 64)).astype(np.float32)
    y = rng.integers(0, 3, (N, 1)).astype(np.float32)
    orders = np.stack([rng.permutation(N) for _ in range(2)])
    for batch_size in (MIN_ROWS, 3 * CHUNK + 7, 1024):
        assert cpp._net(plan).training_pass(batch_size) == "data_parallel"
        _assert_same_bits(_train_each_thread_count(plan, state, X, y, orders, np.array([0.01, 0.005]), batch_size, None))


def test_small_nets_stay_whole_batch_and_batchnorm_ones_split():
    small = [Dense(16, activation="relu", input_dim=8), Dense(1, activation="sigmoid")]  # 144 multiply-adds a row
    plan = build_plan(small, 8, "binary_crossentropy", O.SGD(0.1), "float32", 0)
    assert cpp._net(plan).training_pass(1024) == "general"
    bn = [Dense(64, input_dim=20), BatchNorm(), Activation("relu"), Dense(1, activation="sigmoid")]
    plan = build_plan(bn, 20, "binary_crossentropy", O.SGD(0.1), "float32", 0)
    assert cpp._net(plan).training_pass(1024) == "data_parallel"


@pytest.mark.parametrize("name", ["batchnorm-relu-bce-momentum", "batchnorm-inputs-dropout-cce-adam-l2"])
def test_batchnorm_statistics_over_chunks_are_the_whole_batch_ones(name, restore_threads):
    """One step of the data-parallel pass moves the running statistics as the numpy reference's
    whole-batch step does: the chunks' sums make the batch's mean and variance."""
    plan, state, X, y, _, _, _ = _problem(name, "float64")
    densefit.set_num_threads(2)
    ref, ours = state.copy(), state.copy()
    numpy_.train_epochs(plan, ref, X[:300], y[:300], None, np.array([0.01]), 300)
    cpp.train_epochs(plan, ours, X[:300], y[:300], None, np.array([0.01]), 300)
    assert cpp._net(plan).training_pass(300) == "data_parallel"
    assert relative(ours.stats, ref.stats) < 1e-12
    assert relative(ours.params, ref.params) < 1e-10


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_products_the_threads_would_split_stay_whole_batch(dtype):
    """A chunk's product of kParallelGemmMacs or more would go to OpenBLAS and split over the
    threads inside gemm(), unless (float) block_gemm takes it: B up to its few-rows limit."""
    wide = TUNING["parallel_gemm_macs"] // CHUNK  # n_in · n_out at which a chunk's product reaches it
    side = int(np.ceil(np.sqrt(wide)))
    block = TUNING["block_gemm_few_rows_b_elements"] if dtype == "float32" and _core.build_info()["block_gemm"] else 0
    cases = [(side, "general" if side * side > block else "data_parallel"), (side // 2, "data_parallel")]
    if block:
        cases.append((block // side + 1, "general"))  # B over the limit: OpenBLAS
    for n_out, expected in cases:
        layers = [Dense(side, activation="relu", input_dim=8), Dense(n_out, activation="relu"), Dense(1)]
        plan = build_plan(layers, 8, "mse", O.SGD(0.1), dtype, 0)
        assert cpp._net(plan).training_pass(1024) == expected, n_out


def test_block_gemm_chunks_of_wide_layers_give_the_same_bits_and_match_numpy(restore_threads):
    """A 200 × 200 product reaches kParallelGemmMacs in a chunk, but float chunks take it in block_gemm
    (B up to 256 × 256): the data-parallel pass, the same bits for any thread count, numpy's results."""
    layers = lambda: [Dense(200, activation="tanh", input_dim=16), Dropout(0.1), Dense(200, activation="relu"),
                      Dense(3, activation="softmax")]
    # momentum SGD: Adam's normalized steps would magnify float32's rounding beyond the tolerance
    plan = build_plan(layers(), 16, "categorical_crossentropy", O.SGD(0.05, momentum=0.9), "float32", 0)
    state = init_state(plan, layers(), 0)
    assert 200 * 200 >= TUNING["parallel_gemm_macs"] // CHUNK
    rng = np.random.default_rng(1)
    X = rng.normal(size=(700, 16)).astype(np.float32)
    y = rng.integers(0, 3, (700, 1)).astype(np.float32)
    lrs = np.array([0.01, 0.005])
    orders = np.stack([rng.permutation(700) for _ in range(2)])
    for batch_size in (256, 333):
        assert cpp._net(plan).training_pass(batch_size) == "data_parallel"
        _assert_same_bits(_train_each_thread_count(plan, state, X, y, orders, lrs, batch_size, None))
        ref, ours = state.copy(), state.copy()
        numpy_.train_epochs(plan, ref, X, y, orders, lrs, batch_size)
        cpp.train_epochs(plan, ours, X, y, orders, lrs, batch_size)
        assert relative(ours.params, ref.params) < TOL["float32"]
