"""The epoch-order generator of densefit.shuffle: a permutation of [0, n) for every n, a function
of (seed, epoch, n) alone, the same bits from numpy, the scalar form and the C++ core, and the
orders every backend's shuffled fit visits."""

import numpy as np
import pytest
from conftest import BACKENDS, TOLERANCE, relative_error
from hypothesis import given, settings
from hypothesis import strategies as st

import densefit as df
from densefit import backends, shuffle
from densefit.backends import cpp as cpp_backend
from densefit.shuffle import Shuffle, permutation

core = pytest.importorskip("densefit._core") if "cpp" in BACKENDS else None
needs_cpp = pytest.mark.skipif("cpp" not in BACKENDS, reason="the compiled core is not available")


def is_permutation(order, n):
    return order.dtype == np.int64 and order.shape == (n,) and np.array_equal(np.sort(order), np.arange(n))


def test_a_permutation_for_every_small_n():
    for n in range(0, 3001):
        assert is_permutation(permutation(12, n % 7, n), n), n


@settings(max_examples=15, deadline=None)
@given(n=st.integers(3001, 1 << 20), seed=st.integers(0, (1 << 64) - 1), epoch=st.integers(0, 1 << 40))
def test_a_permutation_for_large_n(n, seed, epoch):
    assert is_permutation(permutation(seed, epoch, n), n)


def test_the_scalar_form_is_the_vectorized_one():
    for n in (1, 2, 3, 5, 64, 1000, 1025):
        order = permutation(99, 4, n)
        assert [shuffle.position(99, 4, n, i) for i in range(n)] == order.tolist()


def test_mix64_is_rng_mix():
    values = [0, 1, 12345, (1 << 64) - 1, 0xDEADBEEFCAFEF00D]
    from densefit import rng
    assert [shuffle.mix64(v) for v in values] == [int(z) for z in rng.mix(np.array(values, dtype=np.uint64))]


def test_the_written_definition():
    """The docstring's formulas, spelled out once more, for one small n."""
    M = (1 << 64) - 1

    def mix(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        return z ^ (z >> 31)

    seed, epoch, n = 7, 3, 10  # bits(9) = 4, so h = 2: a domain of 16
    keys = [mix(seed ^ mix(4 * epoch + r)) for r in range(4)]

    def feistel(x):
        left, right = x >> 2, x & 3
        for k in keys:
            left, right = right, left ^ (mix(right ^ k) & 3)
        return (left << 2) | right

    want = []
    for i in range(n):
        x = feistel(i)
        while x >= n:
            x = feistel(x)
        want.append(x)
    assert permutation(seed, epoch, n).tolist() == want


def test_deterministic_and_different_across_epochs_and_seeds():
    n = 500
    a = permutation(5, 0, n)
    assert np.array_equal(a, permutation(5, 0, n))
    others = [permutation(5, 1, n), permutation(6, 0, n), permutation(5, 2, n), permutation(2**63, 0, n)]
    for b in others:
        assert not np.array_equal(a, b)
        assert np.mean(a == b) < 0.05  # unrelated orders: about 1/n of the positions agree by chance
    assert not np.array_equal(a, np.arange(n))


def test_seed_is_taken_modulo_2_64():
    assert np.array_equal(permutation(3 + (1 << 64), 2, 100), permutation(3, 2, 100))


def test_orders_and_the_spec():
    got = shuffle.orders(8, 5, 3, 40)
    assert got.shape == (3, 40) and got.dtype == np.int64
    for e in range(3):
        assert np.array_equal(got[e], permutation(8, 5 + e, 40))
    assert np.array_equal(Shuffle(8, 5).orders(3, 40), got)
    assert Shuffle(np.int64(8), 5) == Shuffle(8, 5)


@pytest.mark.parametrize("args, error", [((-1, 0), ValueError), ((0, -1), ValueError), ((1.5, 0), TypeError),
                                         ((True, 0), TypeError)])
def test_bad_specs(args, error):
    with pytest.raises(error):
        Shuffle(*args)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n must be >= 0"):
        permutation(0, 0, -1)
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        permutation(0, -1, 5)


@needs_cpp
@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 16, 17, 1000, 1024, 1025, 4097, 65537, 300_001])
def test_core_is_the_reference_bit_for_bit(n):
    for seed, epoch in ((0, 0), (2024, 9), ((1 << 64) - 1, (1 << 62) - 1), ((1 << 70) + 5, 3)):
        assert np.array_equal(core.permutation(seed, epoch, n), permutation(seed, epoch, n)), (n, seed, epoch)


# Both ends of every half width h = 2 .. 9 (n in (2^(2h-2), 2^(2h)]) and the top of h = 1: the core's
# first pass runs in vector lanes up to h = 8 (AVX-512 BW + VBMI2 builds), with 1, 2, 4 or 8 registers per
# round table, and one row at a time above; the ends are where a vector holds rows past n or cycle
# walking is the most or the least work.
HALF_WIDTH_EDGES = [4] + [n for h in range(2, 10) for n in ((1 << (2 * h - 2)) + 1, 1 << (2 * h))]


def _compiled_permutation(name):
    """The epoch order as backend ``name`` computes it: the core's ``permutation``, numba's kernel's."""
    if name not in BACKENDS:
        pytest.skip(f"the {name} backend is not available")
    if name == "cpp":
        return core.permutation
    from densefit.backends import numba_
    return numba_.permutation


@pytest.mark.parametrize("backend", ["cpp", "numba"])
@pytest.mark.parametrize("n", HALF_WIDTH_EDGES)
def test_compiled_orders_are_the_reference_at_every_half_width(backend, n):
    compiled = _compiled_permutation(backend)
    for seed, epoch in ((3, 0), ((1 << 64) - 1, 77)):
        assert np.array_equal(compiled(seed, epoch, n), permutation(seed, epoch, n)), (backend, n, seed, epoch)


@needs_cpp
@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 5000), seed=st.integers(0, (1 << 64) - 1), epoch=st.integers(0, (1 << 62) - 1))
def test_core_is_the_reference_everywhere(n, seed, epoch):
    assert np.array_equal(core.permutation(seed, epoch, n), permutation(seed, epoch, n))


@needs_cpp
def test_core_argument_errors():
    with pytest.raises(ValueError, match="seed must be >= 0"):
        core.permutation(-1, 0, 3)
    with pytest.raises(TypeError, match="n must be an integer"):
        core.permutation(0, 0, 3.0)


# ------------------------------------------------------------------------------------- training

def order_sensitive_problem(dtype="float64"):
    """Batches of 3 rows, SGD with momentum: the result depends on which rows share a batch and
    in which order the batches come."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((47, 4)).astype(dtype)
    y = (X @ rng.standard_normal((4, 2)) + 0.1 * rng.standard_normal((47, 2))).astype(dtype)
    return X, y


def make_model(backend, dtype="float64"):
    model = df.Sequential([df.Dense(5, activation="tanh", input_dim=4), df.Dense(2)], seed=77, dtype=dtype,
                          backend=backend)
    model.compile(loss="mse", optimizer=df.SGD(0.05, momentum=0.9))
    return model


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_shuffled_fit_visits_the_same_orders_on_every_backend(dtype):
    X, y = order_sensitive_problem(dtype)
    runs = {}
    for name in BACKENDS:
        model = make_model(name, dtype)
        history = model.fit(X, y, epochs=4, batch_size=3, verbose=0)
        runs[name] = (model, history.history["loss"])
    ref_model, ref_loss = runs["numpy"]
    for name, (model, loss) in runs.items():
        assert relative_error(model.state.params, ref_model.state.params) < TOLERANCE[dtype], name
        assert relative_error(loss, ref_loss) < TOLERANCE[dtype], name
    # and the order matters here: another seed's orders give other weights
    other = make_model("numpy", dtype)
    backends.train_epochs("numpy", other.plan, other.state, X, y, Shuffle(78, 0), np.full(4, 0.05), 3)
    assert relative_error(other.state.params, ref_model.state.params) > 1e-3


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_the_spec_is_the_explicit_orders(backend_name):
    """A backend given the spec computes exactly the orders that shuffle.orders materializes."""
    X, y = order_sensitive_problem()
    lrs = np.array([0.05, 0.04, 0.03])
    results = []
    for orders in (Shuffle(77, 5), shuffle.orders(77, 5, 3, len(X))):
        model = make_model(backend_name)
        stats = backends.train_epochs(backend_name, model.plan, model.state, X, y, orders, lrs, 3)
        results.append((model.state.params.copy(), model.state.slots.copy(), stats))
    (p1, s1, t1), (p2, s2, t2) = results
    assert np.array_equal(p1, p2) and np.array_equal(s1, s2) and np.array_equal(t1, t2)


@needs_cpp
def test_cpp_spec_against_explicit_orders_on_a_large_set():
    """Bit for bit on the core's other passes too: a linear model (LinearPass) and n past a power of 4."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4100, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.01 * rng.standard_normal((4100, 1))
    finals = []
    for orders in (Shuffle(11, 2), shuffle.orders(11, 2, 2, len(X))):
        model = df.Sequential([df.Dense(1, input_dim=3)], seed=1, dtype="float64", backend="cpp")
        model.compile(loss="mse", optimizer=df.SGD(0.01))
        cpp_backend.train_epochs(model.plan, model.state, X, y, orders, np.full(2, 0.01), 16)
        finals.append(model.state.params.copy())
    assert np.array_equal(*finals)


@needs_cpp
@pytest.mark.parametrize("sample_weight", [False, True])
def test_cpp_shuffled_batches_are_the_rows_read_in_place(sample_weight):
    """One feature and one target (W6's shape, gathered in one loop): a shuffled epoch trains on
    exactly the batches an unshuffled epoch reads in place from the rows permuted beforehand."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((1000, 1))
    y = 6 + 4 * X + 0.1 * rng.standard_normal((1000, 1))
    w = rng.uniform(0.5, 2.0, 1000) if sample_weight else None
    spec, lrs = Shuffle(21, 4), np.array([0.01, 0.02, 0.005])
    models = []
    for _ in range(2):
        model = df.Sequential([df.Dense(1, input_dim=1)], seed=1, dtype="float64", backend="cpp")
        model.compile(loss="mse", optimizer=df.SGD(0.01))
        models.append(model)
    shuffled, in_place = models
    stats = cpp_backend.train_epochs(shuffled.plan, shuffled.state, X, y, spec, lrs, 64, sample_weight=w)
    for e, order in enumerate(spec.orders(len(lrs), len(X))):
        permuted_w = None if w is None else np.ascontiguousarray(w[order])
        epoch = cpp_backend.train_epochs(in_place.plan, in_place.state, np.ascontiguousarray(X[order]),
                                         np.ascontiguousarray(y[order]), None, lrs[e:e + 1], 64,
                                         sample_weight=permuted_w)
        assert np.array_equal(epoch[0], stats[e])
    assert np.array_equal(shuffled.state.params, in_place.state.params)


@needs_cpp
def test_core_refuses_orders_and_a_shuffle_together():
    X, y = order_sensitive_problem()
    model = make_model("cpp")
    net = cpp_backend._net(model.plan)
    with pytest.raises(ValueError, match="not both"):
        core.train_epochs(net, model.state.params, model.state.slots, model.state.stats, X, y,
                          shuffle.orders(1, 0, 1, len(X)), np.array([0.1]), 3, 0, shuffle_seed=1, first_epoch=0)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_resumed_shuffled_fit_equals_one_fit(backend_name):
    X, y = order_sensitive_problem()
    once, twice = make_model(backend_name), make_model(backend_name)
    once.fit(X, y, epochs=5, batch_size=3, verbose=0)
    twice.fit(X, y, epochs=3, batch_size=3, verbose=0)
    twice.fit(X, y, epochs=2, batch_size=3, verbose=0)
    assert np.array_equal(once.state.params, twice.state.params)
    assert np.array_equal(once.state.slots, twice.state.slots)


# ------------------------------------------------------------------------------------- numba

needs_numba = pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not available")


@needs_numba
@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 64, 1000, 65536, 65537, 100003])
def test_numba_order_is_the_reference_bit_for_bit(n):
    """The kernel's jitted order (numba_.epoch_order, uint64 arithmetic throughout) is shuffle.permutation,
    seeds of 2^63 and above included (a uint64 meeting an int64 in numba would make a float64)."""
    from densefit.backends import numba_
    for seed, epoch in ((0, 0), (2024, 9), (1 << 63, 5), ((1 << 64) - 1, (1 << 62) - 1), ((1 << 70) + 5, 3),
                        (0x9E3779B97F4A7C15, 1 << 63)):
        assert np.array_equal(numba_.permutation(seed, epoch, n), permutation(seed, epoch, n)), (n, seed, epoch)


@needs_numba
@pytest.mark.parametrize("dtype, batch_size, sample_weight", [("float64", 3, False), ("float64", 1, True),
                                                              ("float32", 64, True), ("float32", 1000, False)])
def test_numba_spec_is_the_explicit_orders(dtype, batch_size, sample_weight):
    """numba's own train_epochs (no dispatcher between) given the spec computes each epoch's order in the
    kernel, and trains bit for bit as when given the orders Shuffle.orders materializes: one-sample steps,
    batches, the whole set in one batch, with and without row weights, n = 1025 just past a power of 4
    (the most cycle walking)."""
    from densefit.backends import numba_
    rng = np.random.default_rng(5)
    X = rng.standard_normal((1025, 4)).astype(dtype)
    y = (X @ rng.standard_normal((4, 2))).astype(dtype)
    w = rng.uniform(0.5, 2.0, len(X)).astype(dtype) if sample_weight else None
    spec, lrs = Shuffle((1 << 64) - 3, 7), np.array([0.01, 0.02, 0.005])
    results = []
    for orders in (spec, spec.orders(len(lrs), len(X))):
        model = make_model("numba", dtype)
        stats = numba_.train_epochs(model.plan, model.state, X, y, orders, lrs, batch_size, sample_weight=w)
        results.append((model.state.params.copy(), model.state.slots.copy(), stats))
    (p1, s1, t1), (p2, s2, t2) = results
    assert np.array_equal(p1, p2) and np.array_equal(s1, s2) and np.array_equal(t1, t2)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_no_backend_is_given_materialized_orders(backend_name, monkeypatch):
    """A shuffled fit hands every backend the spec: nothing builds the (E, n) orders on the way."""
    def refuse(*args, **kwargs):
        raise AssertionError("the (E, n) orders were materialized")
    monkeypatch.setattr(shuffle, "orders", refuse)
    monkeypatch.setattr(Shuffle, "orders", refuse)
    X, y = order_sensitive_problem()
    model = make_model(backend_name)
    model.fit(X, y, epochs=2, batch_size=3, verbose=0)
    assert np.all(np.isfinite(model.state.params))
