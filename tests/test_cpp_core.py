"""C++-specific tests of densefit._core and its adapter (cross-backend equivalence lives elsewhere):
agreement with the numpy reference, any input layout without copies or writes, argument
validation instead of crashes, the GIL released, the GEMM kernels, the BLAS thread count."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

_core = pytest.importorskip("densefit._core")

from densefit import optimizers as O  # noqa: E402
from densefit.backends import cpp, numpy_  # noqa: E402
from densefit.layers import Activation, BatchNorm, Dense, Dropout  # noqa: E402
from densefit.plan import State, build_plan, init_state  # noqa: E402

CASES = {
    "relu-bce-sgd-momentum": (lambda: [Dense(6, activation="relu", input_dim=4), Dense(1, activation="sigmoid")],
                              "binary_crossentropy", lambda: O.SGD(0.1, momentum=0.9), "binary", 8),
    "dropout-bn-cce-index-adam-clipnorm-l1l2": (
        lambda: [Dense(8, activation="relu", input_dim=4), Dropout(0.3), BatchNorm(), Activation("tanh"),
                 Dense(3, activation="softmax", kernel_regularizer={"l1": 0.01, "l2": 0.02})],
        "categorical_crossentropy", lambda: O.Adam(0.01, clipnorm=0.5), "index", 7),
    "onehot-cce-adamw-clipvalue": (
        lambda: [Dense(5, activation="leaky_relu", input_dim=4), Dense(3, activation="softmax", use_bias=False)],
        "categorical_crossentropy", lambda: O.AdamW(0.01, weight_decay=0.1, clipvalue=0.05), "onehot", 16),
    "gelu-softplus-mse-rmsprop": (
        lambda: [Dense(7, activation="gelu", input_dim=4), Dense(7, activation="softplus"), Dense(2)],
        "mse", lambda: O.RMSprop(0.01), "regression", 5),
    "elu-adagrad-batch1": (lambda: [Dense(4, activation="elu", input_dim=4), Dense(2, activation="sigmoid")],
                           "binary_crossentropy", lambda: O.Adagrad(0.05), "binary", 1),
    "sigmoid-sgd-nesterov-wide": (
        lambda: [Dense(64, activation="sigmoid", input_dim=4), Dense(48, activation="relu"), Dense(1)],
        "mse", lambda: O.SGD(0.05, momentum=0.8, nesterov=True), "regression", 40),
}


def make(case: str, dtype: str = "float64", n: int = 45, seed: int = 3, step: int = 11):
    layers_fn, loss, opt_fn, target, batch_size = CASES[case]
    layers = layers_fn()
    plan = build_plan(layers, 4, loss, opt_fn(), dtype, seed)
    state = init_state(plan, layers, seed)
    state.step = step  # dropout masks, SGD's first step and Adam's bias correction depend on it
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    K = plan.n_outputs
    y = {"binary": lambda: (rng.random((n, K)) > 0.5) * 1.0, "regression": lambda: rng.normal(size=(n, K)),
         "index": lambda: rng.integers(0, K, (n, 1)) * 1.0, "onehot": lambda: np.eye(K)[rng.integers(0, K, n)]}[target]()
    orders = np.stack([rng.permutation(n) for _ in range(3)])
    return plan, state, X.astype(dtype), y.astype(dtype), orders, np.array([0.05, 0.01, 0.03]), batch_size


def relative(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == 0:
        return 0.0 if b.size == 0 else np.inf
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.mark.parametrize("step", [0, 11])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-4)])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_numpy_reference(case, dtype, tol, step):
    plan, state, X, y, orders, lrs, batch_size = make(case, dtype, step=step)
    ours = state.copy()
    loss_ref, grad_ref = numpy_.loss_and_grad(plan, state, X, y)
    loss, grad = cpp.loss_and_grad(plan, ours, X, y)
    assert grad.dtype == plan.dtype and grad.shape == (plan.n_params,)
    assert relative(loss, loss_ref) < tol and relative(grad, grad_ref) < tol
    stats_ref = numpy_.train_epochs(plan, state, X, y, orders, lrs, batch_size)
    stats = cpp.train_epochs(plan, ours, X, y, orders, lrs, batch_size)
    assert stats.shape == (3, 4) and stats.dtype == np.float64
    assert relative(stats[:, 0], stats_ref[:, 0]) < tol
    if dtype == "float64":
        np.testing.assert_array_equal(stats[:, 1:], stats_ref[:, 1:])
    for name in ("params", "slots", "stats"):
        assert relative(getattr(ours, name), getattr(state, name)) < tol, name
    for logits in (False, True):
        out = cpp.predict(plan, ours, X, 10, logits)
        assert out.dtype == plan.dtype
        assert relative(out, numpy_.predict(plan, state, X, 10, logits)) < tol


def test_loss_and_grad_updates_nothing():
    plan, state, X, y, *_ = make("dropout-bn-cce-index-adam-clipnorm-l1l2")
    before = state.copy()
    cpp.loss_and_grad(plan, state, X, y)
    for name in ("params", "slots", "stats"):
        np.testing.assert_array_equal(getattr(state, name), getattr(before, name))


def _train(plan, state, X, y, orders, lrs, batch_size):
    state = state.copy()
    stats = cpp.train_epochs(plan, state, X, y, orders, lrs, batch_size)
    return state, stats


def test_batch_size_beyond_the_data_is_one_batch():
    plan, state, X, y, orders, lrs, _ = make("dropout-bn-cce-index-adam-clipnorm-l1l2")
    full, stats = _train(plan, state, X, y, orders, lrs, len(X))
    huge, huge_stats = _train(plan, state, X, y, orders, lrs, 2**40)  # no allocation of 2**40 rows either
    np.testing.assert_array_equal(huge.params, full.params)
    np.testing.assert_array_equal(huge_stats, stats)
    np.testing.assert_array_equal(stats[:, 3], 1)
    np.testing.assert_array_equal(cpp.predict(plan, full, X, 2**40), cpp.predict(plan, full, X, len(X)))


def test_state_arrays_are_checked_and_named():
    plan, state, X, y, orders, lrs, batch_size = make("relu-bce-sgd-momentum")

    def train(**changes):
        s = state.copy()
        for name, value in changes.items():
            setattr(s, name, value)
        return cpp.train_epochs(plan, s, X, y, orders, lrs, batch_size)

    with pytest.raises(TypeError, match="params"):
        train(params=state.params.astype(np.float32))
    with pytest.raises(ValueError, match="params"):
        train(params=state.params[:-1].copy())
    with pytest.raises(ValueError, match="slots"):
        train(slots=state.slots.ravel().copy())
    with pytest.raises(ValueError, match="slots"):
        train(slots=np.zeros((2, plan.n_params), order="F"))  # right shape, not C-contiguous
    read_only = state.params.copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="params"):
        train(params=read_only)
    with pytest.raises(TypeError, match="stats"):
        train(stats=np.zeros(plan.n_stats, np.int64))
    with pytest.raises(TypeError):
        train(params=list(state.params))  # never silently a converted copy that would not be updated
    with pytest.raises(TypeError, match="X"):
        cpp.train_epochs(plan, state.copy(), X.astype(np.float32), y, orders, lrs, batch_size)
    with pytest.raises(ValueError, match="X"):
        cpp.train_epochs(plan, state.copy(), X[:, :3], y, orders, lrs, batch_size)
    with pytest.raises(ValueError, match="y"):
        cpp.train_epochs(plan, state.copy(), X, y[:-1], orders, lrs, batch_size)
    with pytest.raises(ValueError, match="y must have 1 columns"):
        cpp.train_epochs(plan, state.copy(), X, np.hstack([y, y]), orders, lrs, batch_size)
    with pytest.raises(ValueError, match="batch_size"):
        cpp.train_epochs(plan, state.copy(), X, y, orders, lrs, 0)
    with pytest.raises(TypeError, match="params"):
        cpp.predict(plan, State(state.params.astype(np.float32), state.slots, state.stats), X, 4)


def test_bad_row_indices_and_labels_raise_and_change_nothing():
    plan, state, X, y, orders, lrs, batch_size = make("dropout-bn-cce-index-adam-clipnorm-l1l2")
    before = state.copy()
    for bad in (len(X), -1):
        wrong = orders.copy()
        wrong[2, 17] = bad
        with pytest.raises(ValueError, match="orders"):
            cpp.train_epochs(plan, state, X, y, wrong, lrs, batch_size)
    with pytest.raises(ValueError, match="orders"):
        cpp.train_epochs(plan, state, X, y, orders[:, :-1], lrs, batch_size)
    with pytest.raises(ValueError, match="orders"):
        cpp.train_epochs(plan, state, X, y, orders[:2], lrs, batch_size)
    with pytest.raises(TypeError, match="orders"):
        cpp.train_epochs(plan, state, X, y, orders.astype(np.float64), lrs, batch_size)
    for label in (3.0, -1.0, np.nan):
        wrong = y.copy()
        wrong[5, 0] = label
        with pytest.raises(ValueError, match="class indices"):
            cpp.train_epochs(plan, state, X, wrong, orders, lrs, batch_size)
        with pytest.raises(ValueError, match="class indices"):
            cpp.loss_and_grad(plan, state, X, wrong)
    for name in ("params", "slots", "stats"):
        np.testing.assert_array_equal(getattr(state, name), getattr(before, name))


def test_int32_orders_are_accepted():
    plan, state, X, y, orders, lrs, batch_size = make("relu-bce-sgd-momentum")
    expected, _ = _train(plan, state, X, y, orders, lrs, batch_size)
    got, _ = _train(plan, state, X, y, orders.astype(np.int32), lrs, batch_size)
    np.testing.assert_array_equal(got.params, expected.params)


def test_inconsistent_plan_arrays_raise_instead_of_reading_out_of_bounds():
    plan, *_ = make("relu-bce-sgd-momentum")
    args = dict(dtype=plan.dtype, ops=plan.ops, op_params=plan.op_params, loss=plan.loss,
                output_activation=plan.output_activation, optimizer=plan.optimizer, opt_params=plan.opt_params,
                seed=plan.seed, n_params=plan.n_params, n_stats=plan.n_stats)
    _core.Net(**args)
    ops = plan.ops.copy()
    ops[-1, 3] = plan.n_params - 1  # PARAM_OFF of the last Dense past the end of the buffer
    with pytest.raises(ValueError, match="out of range"):
        _core.Net(**{**args, "ops": ops})
    ops = plan.ops.copy()
    ops[1, 1] += 1  # widths do not chain
    with pytest.raises(ValueError, match="width"):
        _core.Net(**{**args, "ops": ops})
    with pytest.raises(ValueError, match="loss"):
        _core.Net(**{**args, "loss": 7})
    with pytest.raises(TypeError, match="dtype"):
        _core.Net(**{**args, "dtype": np.int32})


def test_epochs_run_with_the_gil_released():
    layers = [Dense(128, activation="relu", input_dim=64), Dense(128, activation="relu"), Dense(1)]
    plan = build_plan(layers, 64, "mse", O.SGD(0.001), "float32", 0)
    state = init_state(plan, layers, 0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2048, 64)).astype(np.float32)
    y = rng.normal(size=(2048, 1)).astype(np.float32)
    epochs = 20
    orders = np.tile(np.arange(2048), (epochs, 1))
    call = {}

    def work():
        call["start"] = time.perf_counter()
        cpp.train_epochs(plan, state, X, y, orders, np.full(epochs, 0.001), 32)
        call["end"] = time.perf_counter()

    worker = threading.Thread(target=work)
    threads = _core.get_num_threads()
    _core.set_num_threads(1)  # leave a core to this thread's loop
    try:
        ticks = [time.perf_counter()]
        worker.start()
        while worker.is_alive():  # the main thread only runs while nobody holds the GIL
            ticks.append(time.perf_counter())
        worker.join()
    finally:
        _core.set_num_threads(threads)
    duration = call["end"] - call["start"]
    assert duration > 0.05, "the workload is too small to tell"
    inside = [t for t in ticks if call["start"] < t < call["end"]]
    assert len(inside) > 100 and np.diff(ticks).max() < duration / 2


def test_set_num_threads_roundtrip():
    old = _core.get_num_threads()
    try:
        _core.set_num_threads(1)
        assert _core.get_num_threads() == 1
        _core.set_num_threads(2)
        assert _core.get_num_threads() == 2
        with pytest.raises(ValueError):
            _core.set_num_threads(0)
    finally:
        _core.set_num_threads(old)
    assert _core.get_num_threads() == old


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("kernel", ["naive", "blas", "auto"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 2), (17, 9, 33), (70, 65, 80)])
def test_gemm_kernels(kernel, shape, dtype, tol):
    M, N, K = shape
    rng = np.random.default_rng(M * N * K)
    A = rng.normal(size=(M, K)).astype(dtype)
    B = rng.normal(size=(K, N)).astype(dtype)
    expected = A.astype(np.float64) @ B.astype(np.float64)
    for trans_a in (False, True):
        for trans_b in (False, True):
            a = np.ascontiguousarray(A.T) if trans_a else A
            b = np.ascontiguousarray(B.T) if trans_b else B
            C = _core.gemm(a, b, trans_a, trans_b, kernel)
            assert C.dtype == dtype and C.shape == (M, N)
            np.testing.assert_allclose(C, expected, rtol=tol, atol=tol * np.sqrt(K))
    with pytest.raises(ValueError, match="inner"):
        _core.gemm(A, np.zeros((K + 1, N), dtype), False, False, kernel)


def test_adapter_raises_import_error_without_core(monkeypatch):
    import densefit

    monkeypatch.setitem(sys.modules, "densefit._core", None)
    monkeypatch.delattr(densefit, "_core", raising=False)
    monkeypatch.delitem(sys.modules, "densefit.backends.cpp")
    with pytest.raises(ImportError):
        importlib.import_module("densefit.backends.cpp")


def _layouts_of(a: np.ndarray, tmp_path) -> dict:
    """``a`` (2-D) in every memory layout all_finite must read in place."""
    wide = np.zeros((2 * a.shape[0], 3 * a.shape[1]), a.dtype)
    wide[::2, ::3] = a
    padded = np.zeros((a.shape[0], a.shape[1] + 3), a.dtype)
    padded[:, 1:-2] = a
    unaligned = np.zeros(a.nbytes + 1, np.uint8)[1:].view(a.dtype).reshape(a.shape)
    unaligned[:] = a
    np.save(tmp_path / "a.npy", a)
    read_only = a.copy()
    read_only.flags.writeable = False
    return {"contiguous": a, "read-only": read_only, "read-only memmap": np.load(tmp_path / "a.npy", mmap_mode="r"),
            "fortran": np.asfortranarray(a), "strided": wide[::2, ::3], "padded rows": padded[:, 1:-2],
            "negative strides": a[::-1, ::-1].copy()[::-1, ::-1], "unaligned": unaligned, "flat": a.reshape(-1),
            "strided flat": np.repeat(a.reshape(-1), 2)[::2]}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_finite_finds_every_non_finite_value_in_any_layout(dtype, bad, tmp_path):
    rows, cols = 257, 10  # 2570 values: more than two of the scan's blocks of 1024
    clean = np.random.default_rng(0).normal(scale=1e30, size=(rows, cols)).astype(dtype)
    clean[0, 0] = np.finfo(dtype).max  # large and tiny finite values are finite
    clean[1, 1] = -np.finfo(dtype).max
    clean[2, 2] = np.finfo(dtype).smallest_subnormal
    for name, a in _layouts_of(clean, tmp_path).items():
        assert _core.all_finite(a) is True, name
    for position in [0, 1, 1023, 1024, 1025, rows * cols // 2, rows * cols - 1]:
        dirty = clean.copy()
        dirty.reshape(-1)[position] = bad
        for name, a in _layouts_of(dirty, tmp_path).items():
            before = np.array(a)
            assert _core.all_finite(a) is False, (name, position)
            np.testing.assert_array_equal(a, before, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_small_empty_and_wrong_inputs(dtype):
    for shape in [(0,), (0, 5), (5, 0), (1, 1), (3,), ()]:
        assert _core.all_finite(np.ones(shape, dtype)) is True, shape
    assert _core.all_finite(np.array(np.nan, dtype)) is False
    assert _core.all_finite(np.array([1, np.inf], dtype)) is False
    assert _core.all_finite(np.array([[1], [-np.inf]], dtype)) is False
    with pytest.raises(TypeError, match="float32 or float64"):
        _core.all_finite(np.ones(3, np.int64))
    with pytest.raises(ValueError, match="at most 2 dimensions"):
        _core.all_finite(np.ones((2, 2, 2), dtype))


def _threaded_gemm(threads, a, b, trans_a=False, trans_b=False):
    old = _core.get_num_threads()
    try:
        _core.set_num_threads(threads)
        return _core.gemm(a, b, trans_a, trans_b)
    finally:
        _core.set_num_threads(old)


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("shape", [(300, 200, 100), (40, 900, 300), (1000, 30, 200), (17, 515, 333)])
def test_gemm_split_over_threads_matches_numpy(shape, trans_a, trans_b):
    """Large GEMMs are split into row or column blocks of C over the core's threads; every
    thread count and split gives the single-threaded product."""
    M, N, K = shape
    rng = np.random.default_rng(0)
    a = rng.normal(size=(K, M) if trans_a else (M, K))
    b = rng.normal(size=(N, K) if trans_b else (K, N))
    expected = (a.T if trans_a else a) @ (b.T if trans_b else b)
    for threads in (1, 2, 3, 5):
        np.testing.assert_allclose(_threaded_gemm(threads, a, b, trans_a, trans_b), expected, rtol=1e-10, atol=1e-10)


def test_default_threads_follow_environment():
    """DENSEFIT_NUM_THREADS, then OMP_NUM_THREADS, then the usable CPUs choose the default."""
    code = "import densefit; print(densefit.get_num_threads())"

    def threads(**env):
        full = {k: v for k, v in os.environ.items() if k not in ("DENSEFIT_NUM_THREADS", "OMP_NUM_THREADS")}
        full.update(env)
        out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    assert threads(OMP_NUM_THREADS="3") == 3
    assert threads(OMP_NUM_THREADS="3", DENSEFIT_NUM_THREADS="1") == 1
    assert threads(OMP_NUM_THREADS="nonsense") == len(os.sched_getaffinity(0))


def test_threads_survive_fork():
    """A forked child (multiprocessing's default on Linux) gets fresh worker threads."""
    import multiprocessing as mp
    old = _core.get_num_threads()
    _core.set_num_threads(2)
    try:
        rng = np.random.default_rng(1)
        a, b = rng.normal(size=(400, 300)), rng.normal(size=(300, 500))
        _core.gemm(a, b)  # the parent's workers exist and have run
        with mp.get_context("fork").Pool(1) as pool:
            result = pool.apply(_core.gemm, (a, b))
        np.testing.assert_allclose(result, a @ b, rtol=1e-10, atol=1e-10)
    finally:
        _core.set_num_threads(old)


def test_gemm_pool_many_runs_and_thread_changes():
    """Back-to-back runs (the workers' spin-then-sleep hand-over) and pool resizes in between."""
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(256, 128)), rng.normal(size=(128, 300))
    expected = a @ b
    for i in range(300):
        got = _threaded_gemm(1 + i % 4, a, b) if i % 50 == 0 else _core.gemm(a, b)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_concurrent_trainings_share_the_pool_while_it_is_resized():
    """Python threads training models at once (GIL released) while the pool is resized: every
    run finishes with the result of a run alone."""
    import densefit as df
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1024, 300)).astype(np.float32)
    y = rng.integers(0, 10, 1024)

    def train(out, i):
        model = df.Sequential([df.Dense(256, "relu", input_dim=300), df.Dense(10, "softmax")], seed=1, backend="cpp")
        model.compile("categorical_crossentropy", df.Adam(1e-3))
        model.fit(X, y, epochs=2, batch_size=256, verbose=0)
        out[i] = model.get_weights()[0]

    old = _core.get_num_threads()
    results = {}
    try:
        train(results, "alone")
        workers = [threading.Thread(target=train, args=(results, i)) for i in range(3)]
        for w in workers:
            w.start()
        for k in range(10):
            _core.set_num_threads(1 + k % 3)
        for w in workers:
            w.join()
    finally:
        _core.set_num_threads(old)
    assert len(results) == 4
    for i in range(3):
        np.testing.assert_allclose(results[i], results["alone"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend_module", [cpp, numpy_], ids=["cpp", "numpy"])
def test_orders_none_is_rows_in_order(backend_module):
    """orders=None trains exactly like an explicit 0..n-1 order every epoch, without the array."""
    plan = build_plan([Dense(3, "relu", input_dim=4), Dense(1)], 4, "mse", O.SGD(0.05, momentum=0.9), "float64", 0)
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(50, 4)), rng.normal(size=(50, 1))
    states = [init_state(plan, [Dense(3, "relu", input_dim=4), Dense(1)], 0) for _ in range(2)]
    explicit = backend_module.train_epochs(plan, states[0], X, y, np.tile(np.arange(50), (3, 1)), np.full(3, 0.05), 8)
    implicit = backend_module.train_epochs(plan, states[1], X, y, None, np.full(3, 0.05), 8)
    np.testing.assert_array_equal(explicit, implicit)
    np.testing.assert_array_equal(states[0].params, states[1].params)


@pytest.mark.parametrize("optimizer", [
    lambda: O.SGD(0.05), lambda: O.SGD(0.05, momentum=0.9, nesterov=True), lambda: O.Adam(1e-3, clipnorm=1.0),
    lambda: O.AdamW(1e-3, weight_decay=0.1, clipvalue=0.01), lambda: O.RMSprop(1e-3), lambda: O.Adagrad(0.01)],
    ids=["sgd", "nesterov", "adam-clipnorm", "adamw-clipvalue", "rmsprop", "adagrad"])
def test_optimizer_update_split_over_threads_is_exact(optimizer):
    """Updates of ≥ 2^15 parameters are split over the pool: every thread count gives the
    one-thread parameters and slots bit for bit. Batches of 4 keep the GEMMs below the size that
    is split, so only the update runs on several threads; 171·203 + 203 + 203·7 + 7 parameters
    leave ranges that are not multiples of 16."""
    import densefit as df
    rng = np.random.default_rng(5)
    X = rng.normal(size=(64, 171)).astype(np.float32)
    y = rng.integers(0, 7, 64)

    def train(threads):
        _core.set_num_threads(threads)
        model = df.Sequential([df.Dense(203, "tanh", input_dim=171), df.Dense(7, "softmax")], seed=2, backend="cpp")
        model.compile("categorical_crossentropy", optimizer())
        model.fit(X, y, epochs=2, batch_size=4, verbose=0)
        return model.state.params.copy(), model.state.slots.copy()

    old = _core.get_num_threads()
    try:
        params, slots = train(1)
        assert params.size >= 2 ** 15
        for threads in (2, 3):
            got_params, got_slots = train(threads)
            np.testing.assert_array_equal(got_params, params)
            np.testing.assert_array_equal(got_slots, slots)
    finally:
        _core.set_num_threads(old)


@pytest.mark.parametrize("layout", ["contiguous", "column-slice", "fortran"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_non_finite_row_is_named_for_every_layout_and_order(layout, shuffle):
    """The error names X's own row number whether the batch was used in place (rows in order,
    contiguous X), gathered in order from a strided X, or gathered in a shuffled order."""
    import densefit as df
    rng = np.random.default_rng(4)
    wide = rng.normal(size=(300, 8)).astype(np.float32)
    X = {"contiguous": np.ascontiguousarray(wide[:, :4]), "column-slice": wide[:, 1:5],
         "fortran": np.asfortranarray(wide[:, :4])}[layout]
    X[217, 2] = np.nan
    y = rng.integers(0, 2, 300)
    model = df.Sequential([df.Dense(3, "relu", input_dim=4), df.Dense(1, "sigmoid")], seed=0, backend="cpp")
    model.compile("binary_crossentropy", "sgd")
    with pytest.raises(ValueError, match=r"X contains NaN or infinity \(row 217\)"):
        model.fit(X, y, epochs=2, batch_size=16, shuffle=shuffle, verbose=0)


# ---------------------------------------------------------------------------------------------
# sample weights and plan.penalty_per_weight (the numpy backend is the reference)

_L1L2 = {"l1": 0.01, "l2": 0.02}

# name: (layers, loss, target, batch_size, the pass train_epochs takes). Batch sizes leave a smaller
# last batch of the 47 rows; every loss, one-hot and index targets, BatchNorm and Dropout.
WEIGHTED_CASES = {
    "tiny-mse": (lambda: [Dense(5, activation="relu", input_dim=4, kernel_regularizer=_L1L2), Dense(2)],
                 "mse", "regression", 5, "tiny"),
    "tiny-cce-index": (lambda: [Dense(6, activation="tanh", input_dim=4, kernel_regularizer=_L1L2),
                                Dense(3, activation="softmax", kernel_regularizer=_L1L2)],
                       "categorical_crossentropy", "index", 6, "tiny"),
    "linear-bce": (lambda: [Dense(1, activation="sigmoid", input_dim=4, kernel_regularizer=_L1L2)],
                   "binary_crossentropy", "binary", 10, "linear"),
    "linear-mse": (lambda: [Dense(1, input_dim=4, kernel_regularizer=_L1L2)], "mse", "regression", 9, "linear"),
    # 100 features: LinearPass visits a batch of 23 in blocks of 5 (float64) or 10 (float32) rows
    "linear-bce-blocks": (lambda: [Dense(1, activation="sigmoid", input_dim=100, kernel_regularizer=_L1L2)],
                          "binary_crossentropy", "binary", 23, "linear"),
    "general-bn-dropout-cce-index": (
        lambda: [Dense(8, activation="relu", input_dim=4, kernel_regularizer=_L1L2), Dropout(0.3), BatchNorm(),
                 Activation("tanh"), Dense(3, activation="softmax", kernel_regularizer=_L1L2)],
        "categorical_crossentropy", "index", 10, "general"),
    "general-cce-onehot": (lambda: [Dense(9, activation="elu", input_dim=4, kernel_regularizer=_L1L2),
                                    Dense(4, activation="softmax", use_bias=False)],
                           "categorical_crossentropy", "onehot", 12, "general"),
    "general-bce-2-outputs": (lambda: [Dense(16, activation="relu", input_dim=4, kernel_regularizer=_L1L2),
                                       Dense(2, activation="sigmoid", kernel_regularizer=_L1L2)],
                              "binary_crossentropy", "binary", 8, "general"),
    "general-mse-wide": (lambda: [Dense(40, activation="sigmoid", input_dim=4, kernel_regularizer=_L1L2),
                                  Dense(3, kernel_regularizer=_L1L2)], "mse", "regression", 16, "general"),
}

N_WEIGHTED, EPOCHS = 47, 4


def _targets(rng, target, n, K):
    return {"binary": lambda: (rng.random((n, K)) > 0.5) * 1.0, "regression": lambda: rng.normal(size=(n, K)),
            "index": lambda: rng.integers(0, K, (n, 1)) * 1.0,
            "onehot": lambda: np.eye(K)[rng.integers(0, K, n)]}[target]()


def make_weighted(case: str, dtype: str = "float64", penalty_per_weight: bool = False, seed: int = 5,
                  optimizer=lambda: O.Adam(0.01, clipnorm=2.0)):
    """A plan, its state, data, weights and (E, n) orders in which each epoch has one batch whose
    rows all weigh 0 (at a different place every epoch) besides zeros scattered elsewhere."""
    layers_fn, loss, target, batch_size, expected_pass = WEIGHTED_CASES[case]
    layers = layers_fn()
    d = layers[0].input_dim
    plan = build_plan(layers, d, loss, optimizer(), dtype, seed, penalty_per_weight=penalty_per_weight)
    state = init_state(plan, layers, seed)
    state.step = 7
    n = N_WEIGHTED
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) / np.sqrt(d / 4)
    y = _targets(rng, target, n, plan.n_outputs)
    w = rng.uniform(0.0, 3.0, n)
    zero_rows = rng.choice(n, batch_size, replace=False)
    w[zero_rows] = 0.0
    others = np.setdiff1d(np.arange(n), zero_rows)
    w[rng.choice(others, 5, replace=False)] = 0.0
    n_full = n // batch_size
    orders = []
    for e in range(EPOCHS):
        rest = list(rng.permutation(others))
        at = (e % n_full) * batch_size  # the all-zero batch starts on a batch boundary
        orders.append(rest[:at] + list(rng.permutation(zero_rows)) + rest[at:])
    orders = np.array(orders, dtype=np.int64)
    lrs = np.array([0.05, 0.01, 0.03, 0.02])
    return plan, state, X.astype(dtype), y.astype(dtype), w.astype(dtype), orders, lrs, batch_size, expected_pass


def _assert_training_matches(plan, state, X, y, orders, lrs, batch_size, dtype, w):
    tol = {"float64": 1e-10, "float32": 1e-4}[dtype]
    ref, ours = state.copy(), state.copy()
    stats_ref = numpy_.train_epochs(plan, ref, X, y, orders, lrs, batch_size, sample_weight=w)
    stats = cpp.train_epochs(plan, ours, X, y, orders, lrs, batch_size, sample_weight=w)
    assert relative(stats[:, 0], stats_ref[:, 0]) < tol
    np.testing.assert_array_equal(stats[:, 2:], stats_ref[:, 2:])  # seen = n, steps
    if dtype == "float64":
        np.testing.assert_array_equal(stats[:, 1], stats_ref[:, 1])  # correct: an unweighted count
    for name in ("params", "slots", "stats"):
        assert relative(getattr(ours, name), getattr(ref, name)) < tol, name
    return ours, stats


@pytest.mark.parametrize("penalty_per_weight", [False, True], ids=["penalty", "penalty-per-weight"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", sorted(WEIGHTED_CASES))
def test_weighted_training_matches_numpy(case, dtype, penalty_per_weight):
    plan, state, X, y, w, orders, lrs, batch_size, expected_pass = make_weighted(case, dtype, penalty_per_weight)
    pass_ = cpp._net(plan).training_pass(batch_size)
    assert pass_ == (expected_pass if expected_pass != "tiny" or _core.build_info()["tiny_pass"] else "general")
    assert cpp._net(plan).penalty_per_weight is penalty_per_weight
    # shuffled orders (rows gathered with their weights), then rows in order (weights read in place)
    _assert_training_matches(plan, state, X, y, orders, lrs, batch_size, dtype, w)
    _assert_training_matches(plan, state, X, y, None, lrs, batch_size, dtype, w)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", sorted(WEIGHTED_CASES))
def test_penalty_per_weight_without_weights_matches_numpy(case, dtype):
    """Without weights the penalty is divided by each batch's row count (the last one smaller)."""
    plan, state, X, y, _, orders, lrs, batch_size, _ = make_weighted(case, dtype, penalty_per_weight=True)
    _assert_training_matches(plan, state, X, y, orders, lrs, batch_size, dtype, None)


@pytest.mark.parametrize("penalty_per_weight", [False, True], ids=["penalty", "penalty-per-weight"])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-4)])
@pytest.mark.parametrize("case", sorted(WEIGHTED_CASES))
def test_weighted_loss_and_grad_matches_numpy(case, dtype, tol, penalty_per_weight):
    plan, state, X, y, w, *_ = make_weighted(case, dtype, penalty_per_weight)
    before = state.copy()
    for weights in (w, np.zeros_like(w), np.ones_like(w)):
        loss_ref, grad_ref = numpy_.loss_and_grad(plan, state, X, y, sample_weight=weights)
        loss, grad = cpp.loss_and_grad(plan, state, X, y, sample_weight=weights)
        assert grad.dtype == plan.dtype and grad.shape == (plan.n_params,)
        assert relative(loss, loss_ref) < tol and relative(grad, grad_ref) < tol
    for name in ("params", "slots", "stats"):
        np.testing.assert_array_equal(getattr(state, name), getattr(before, name))
    # all weights zero: no data term; the penalty alone, or nothing per weight
    penalty_only, grad = cpp.loss_and_grad(plan, state, X, y, sample_weight=np.zeros_like(w))
    if penalty_per_weight:
        assert penalty_only == 0.0 and not grad.any()
    else:
        assert penalty_only > 0.0


def test_the_all_zero_batch_steps_on_the_penalty_alone():
    """A batch whose weights sum to 0 adds no loss and no data gradient: with penalty_per_weight and
    plain SGD it changes nothing at all; without, it steps on the penalty's gradient only."""
    for penalty_per_weight in (True, False):
        plan, state, X, y, w, _, _, batch_size, _ = make_weighted("general-mse-wide", "float64", penalty_per_weight,
                                                                  optimizer=lambda: O.SGD(0.1))
        w = np.ones_like(w)
        w[:batch_size] = 0.0
        ours = state.copy()
        stats = cpp.train_epochs(plan, ours, X[:batch_size], y[:batch_size], None, np.array([0.1]), batch_size,
                                 sample_weight=w[:batch_size])
        if penalty_per_weight:
            np.testing.assert_array_equal(ours.params, state.params)
            assert stats[0, 0] == 0.0
        else:
            ref = state.copy()
            numpy_.train_epochs(plan, ref, X[:batch_size], y[:batch_size], None, np.array([0.1]), batch_size,
                                sample_weight=w[:batch_size])
            assert not np.array_equal(ours.params, state.params)
            assert relative(ours.params, ref.params) < 1e-12
            _, grad = numpy_.loss_and_grad(plan, state, X[:batch_size], y[:batch_size], sample_weight=w[:batch_size])
            np.testing.assert_allclose(ours.params, state.params - 0.1 * grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("case", sorted(WEIGHTED_CASES))
def test_unit_weights_are_the_unweighted_fit(case, dtype, tol):
    plan, state, X, y, w, orders, lrs, batch_size, _ = make_weighted(case, dtype)
    plain, ones = state.copy(), state.copy()
    stats = cpp.train_epochs(plan, plain, X, y, orders, lrs, batch_size)
    stats_ones = cpp.train_epochs(plan, ones, X, y, orders, lrs, batch_size, sample_weight=np.ones_like(w))
    assert relative(stats_ones, stats) < tol
    assert relative(ones.params, plain.params) < tol


def test_tiny_pass_with_weights_is_the_general_pass_bit_for_bit():
    """TinyPass and the general pass share weighted_loss_rows and the penalty scale; a Dropout(0.0)
    in front makes the general-pass twin of the same network."""
    for penalty_per_weight in (False, True):
        plan, state, X, y, w, orders, lrs, batch_size, _ = make_weighted("tiny-cce-index", "float64",
                                                                         penalty_per_weight)
        layers = [Dropout(0.0)] + WEIGHTED_CASES["tiny-cce-index"][0]()
        twin = build_plan(layers, 4, "categorical_crossentropy", O.Adam(0.01, clipnorm=2.0), "float64", 5,
                          penalty_per_weight=penalty_per_weight)
        assert cpp._net(twin).training_pass(batch_size) == "general"
        assert twin.n_params == plan.n_params
        tiny, general = state.copy(), State(state.params.copy(), state.slots.copy(), state.stats.copy())
        general.step = state.step
        stats_tiny = cpp.train_epochs(plan, tiny, X, y, orders, lrs, batch_size, sample_weight=w)
        stats_general = cpp.train_epochs(twin, general, X, y, orders, lrs, batch_size, sample_weight=w)
        np.testing.assert_array_equal(tiny.params, general.params)
        np.testing.assert_array_equal(tiny.slots, general.slots)
        np.testing.assert_array_equal(stats_tiny, stats_general)


def test_bad_sample_weights_are_refused_with_a_clear_error():
    plan, state, X, y, w, orders, lrs, batch_size, _ = make_weighted("general-bn-dropout-cce-index")
    before = state.copy()
    n = len(X)
    wide = np.zeros(2 * n)
    wide[::2] = w
    negative, nan, inf = w.copy(), w.copy(), w.copy()
    negative[3], nan[4], inf[5] = -1.0, np.nan, np.inf
    bad = [
        (TypeError, "sample_weight must be a float64 array", w.astype(np.float32)),
        (TypeError, "sample_weight must be a float64 array", np.ones(n, np.int64)),
        (TypeError, "sample_weight must be None or a float64 numpy array, got <class 'list'>", list(w)),
        (TypeError, "sample_weight must be None or a float64 numpy array", 1.0),
        (ValueError, r"sample_weight must have shape \(47,\), got \(46,\)", w[:-1].copy()),
        (ValueError, r"sample_weight must have shape \(47,\), got \(47, 1\)", w[:, None].copy()),
        (ValueError, "sample_weight must be C-contiguous", wide[::2]),
        (ValueError, r"sample_weight must be finite and >= 0: sample_weight\[3\] = -1", negative),
        (ValueError, r"sample_weight must be finite and >= 0: sample_weight\[4\]", nan),
        (ValueError, r"sample_weight must be finite and >= 0: sample_weight\[5\]", inf),
    ]
    for error, message, weights in bad:
        with pytest.raises(error, match=message):
            cpp.train_epochs(plan, state, X, y, orders, lrs, batch_size, sample_weight=weights)
        with pytest.raises(error, match=message):
            cpp.loss_and_grad(plan, state, X, y, sample_weight=weights)
    for name in ("params", "slots", "stats"):
        np.testing.assert_array_equal(getattr(state, name), getattr(before, name))
    read_only = w.copy()
    read_only.flags.writeable = False  # weights are only read
    cpp.train_epochs(plan, state.copy(), X, y, orders, lrs, batch_size, sample_weight=read_only)


def test_stub_lists_every_bound_name():
    """python/densefit/_core.pyi declares exactly the names the compiled module binds (and Net's members)."""
    import ast
    import pathlib

    import densefit

    tree = ast.parse((pathlib.Path(densefit.__file__).parent / "_core.pyi").read_text())
    stub = {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    bound = {name for name in dir(_core) if not name.startswith("_")}
    assert set(stub) == bound
    members = {node.name for node in stub["Net"].body if isinstance(node, ast.FunctionDef)} - {"__init__"}
    assert members == {name for name in dir(_core.Net) if not name.startswith("_")}
