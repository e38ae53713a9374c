"""Tests of densefit.datasets."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_moons as sklearn_make_moons
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from densefit import datasets

# Every generator, called with small sizes; each takes `seed` as a keyword.
GENERATORS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "xor": lambda seed: datasets.make_xor(n=50, seed=seed),
    "clusters": lambda seed: datasets.make_clusters(n=60, seed=seed),
    "patterns": lambda seed: datasets.make_patterns("circle", n=50, seed=seed),
    "moons": lambda seed: datasets.make_moons(n=50, seed=seed),
    "blobs": lambda seed: datasets.make_blobs(n=50, seed=seed),
    "linear": lambda seed: datasets.make_linear(n=50, seed=seed),
    "teacher": lambda seed: datasets.make_teacher(50, 4, seed=seed),
}

# name -> (n, n_features, dtype of X, dtype of y) for the calls above.
EXPECTED_SHAPES = {
    "xor": (50, 2, np.float64, np.int64),
    "clusters": (60, 2, np.float64, np.int64),
    "patterns": (50, 2, np.float64, np.int64),
    "moons": (50, 2, np.float64, np.int64),
    "blobs": (50, 2, np.float64, np.int64),
    "linear": (50, 1, np.float64, np.float64),
    "teacher": (50, 4, np.float32, np.int64),
}


# --------------------------------------------------------------------------
# Common properties
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", GENERATORS)
def test_shapes_and_dtypes(name: str) -> None:
    X, y = GENERATORS[name](0)
    n, d, x_dtype, y_dtype = EXPECTED_SHAPES[name]
    assert X.shape == (n, d) and X.dtype == x_dtype
    assert y.shape == (n,) and y.dtype == y_dtype
    assert np.isfinite(X).all() and np.isfinite(y).all()


@pytest.mark.parametrize("name", GENERATORS)
def test_same_seed_same_data_other_seed_other_data(name: str) -> None:
    X0, y0 = GENERATORS[name](0)
    X0_again, y0_again = GENERATORS[name](0)
    X1, _ = GENERATORS[name](1)
    np.testing.assert_array_equal(X0, X0_again)
    np.testing.assert_array_equal(y0, y0_again)
    assert not np.array_equal(X0, X1)


def test_seed_is_numpy_default_rng() -> None:
    # make_linear draws x first, so its x values are default_rng(seed)'s first draws.
    X, _ = datasets.make_linear(n=5, seed=7)
    np.testing.assert_array_equal(X[:, 0], np.random.default_rng(7).uniform(0.0, 2.0, 5))


@pytest.mark.parametrize("name", ["xor", "clusters", "moons", "blobs"])
def test_classes_are_shuffled(name: str) -> None:
    _, y = GENERATORS[name](0)
    assert np.count_nonzero(np.diff(y)) > 5  # not sorted by class


# --------------------------------------------------------------------------
# make_xor
# --------------------------------------------------------------------------


def test_xor_without_noise_is_the_four_corners() -> None:
    X, y = datasets.make_xor(n=10, noise=0.0)
    assert set(map(tuple, X)) == {(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)}
    np.testing.assert_array_equal(y, X[:, 0].astype(int) ^ X[:, 1].astype(int))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(4, 400), seed=st.integers(0, 2**32 - 1))
def test_xor_labels_follow_nearest_corner(n: int, seed: int) -> None:
    X, y = datasets.make_xor(n=n, noise=0.1, seed=seed)
    assert X.shape == (n, 2) and y.shape == (n,)
    corner_bits = (X > 0.5).astype(int)
    # With noise 0.1 a point crosses the midline (5 sigma) essentially never.
    np.testing.assert_array_equal(y, corner_bits[:, 0] ^ corner_bits[:, 1])
    counts = np.unique(corner_bits[:, 0] * 2 + corner_bits[:, 1], return_counts=True)[1]
    assert counts.max() - counts.min() <= 1  # n split evenly over the corners


# --------------------------------------------------------------------------
# make_clusters
# --------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(n=st.integers(3, 2000), seed=st.integers(0, 2**32 - 1))
def test_clusters_sizes_and_rescaling(n: int, seed: int) -> None:
    X, y = datasets.make_clusters(n=n, seed=seed)
    assert X.shape == (n, 2) and y.shape == (n,)
    np.testing.assert_allclose(X.min(axis=0), [-1.0, -1.0])
    np.testing.assert_allclose(X.max(axis=0), [1.0, 1.0])
    # Class 1 is the middle one of three clusters of sizes n//3 or n//3 + 1.
    assert np.count_nonzero(y == 1) == n // 3 + (n % 3 == 2)
    assert set(np.unique(y)) <= {0, 1}


def test_clusters_are_not_linearly_separable() -> None:
    X, y = datasets.make_clusters()
    accuracy = LogisticRegression().fit(X, y).score(X, y)
    assert accuracy < 0.8  # the best line gets about 2/3 right


def test_clusters_are_learnable_by_a_small_network() -> None:
    X, y = datasets.make_clusters()
    net = MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=500, random_state=0)
    assert net.fit(X, y).score(X, y) >= 0.99


# --------------------------------------------------------------------------
# make_patterns
# --------------------------------------------------------------------------

# The regions as documented in make_patterns, written out independently.
PATTERN_ORACLES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "diamond": lambda a, b: np.abs(a) + np.abs(b) < 1.0,
    "circle": lambda a, b: np.hypot(a, b) < np.sqrt(2.0 / np.pi),
    "square": lambda a, b: (np.abs(a) < np.sqrt(0.5)) & (np.abs(b) < np.sqrt(0.5)),
    "thick_right_angle": lambda a, b: ((-0.5 <= a) & (a <= 0.5) & (b >= -0.5))
    | ((-0.5 <= b) & (b <= 0.5) & (a >= -0.5)),
    "thin_right_angle": lambda a, b: ((-0.9 <= a) & (a <= -0.4) & (b >= -0.9))
    | ((-0.9 <= b) & (b <= -0.4) & (a >= -0.9)),
}


def test_pattern_kinds_are_documented() -> None:
    assert set(datasets.PATTERN_KINDS) == set(PATTERN_ORACLES)


@pytest.mark.parametrize("kind", sorted(PATTERN_ORACLES))
def test_patterns_labels_and_balance(kind: str) -> None:
    X, y = datasets.make_patterns(kind, n=2000, seed=3)
    assert X.shape == (2000, 2) and y.dtype == np.int64
    assert X.min() >= -1.0 and X.max() <= 1.0
    np.testing.assert_array_equal(y, PATTERN_ORACLES[kind](X[:, 0], X[:, 1]))
    assert 0.35 <= y.mean() <= 0.65


def test_patterns_unknown_kind_lists_valid_kinds() -> None:
    with pytest.raises(ValueError, match="kind") as excinfo:
        datasets.make_patterns("triangle")
    for kind in datasets.PATTERN_KINDS:
        assert kind in str(excinfo.value)


# --------------------------------------------------------------------------
# make_moons
# --------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 7, 200])
def test_moons_without_noise_match_sklearn_geometry(n: int) -> None:
    X, y = datasets.make_moons(n=n, noise=0.0)
    X_ref, y_ref = sklearn_make_moons(n_samples=n, noise=0.0, shuffle=False)
    for label in (0, 1):
        ours = X[y == label]
        ref = X_ref[y_ref == label]
        # Sort by x1, which is strictly monotone along each half circle.
        np.testing.assert_allclose(ours[ours[:, 0].argsort()], ref[ref[:, 0].argsort()], atol=1e-12)
    assert np.count_nonzero(y == 0) == n // 2


def test_moons_noise_has_requested_scale() -> None:
    X, y = datasets.make_moons(n=4000, noise=0.2)
    outer = X[y == 0]
    # The distance to the unit circle is about |N(0, 0.2^2)|, median 0.674 * 0.2.
    radial = np.abs(np.hypot(outer[:, 0], outer[:, 1]) - 1.0)
    assert 0.11 < np.median(radial) < 0.16


# --------------------------------------------------------------------------
# make_blobs
# --------------------------------------------------------------------------


def test_blobs_with_given_centres() -> None:
    centres = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 5.0], [-5.0, 5.0, 0.0], [9.0, -9.0, 1.0]])
    X, y = datasets.make_blobs(n=4001, centers=centres, cluster_std=0.3, seed=1)
    assert X.shape == (4001, 3)
    counts = np.bincount(y)
    assert len(counts) == 4 and counts.max() - counts.min() <= 1
    for label, centre in enumerate(centres):
        points = X[y == label]
        np.testing.assert_allclose(points.mean(axis=0), centre, atol=0.05)
        np.testing.assert_allclose(points.std(axis=0), 0.3, rtol=0.1)


def test_blobs_with_random_centres() -> None:
    X, y = datasets.make_blobs(n=500, centers=5, n_features=4, cluster_std=0.0, seed=2)
    assert X.shape == (500, 4)
    np.testing.assert_array_equal(np.unique(y), np.arange(5))
    centres = np.array([X[y == k][0] for k in range(5)])
    assert np.abs(centres).max() <= 10.0
    # cluster_std = 0: every point sits on its centre.
    np.testing.assert_array_equal(X, centres[y])


# --------------------------------------------------------------------------
# make_linear
# --------------------------------------------------------------------------


def test_linear_ols_recovers_coefficients() -> None:
    X, y = datasets.make_linear(n=1000, noise=1.0, seed=0)
    assert X.min() >= 0.0 and X.max() <= 2.0
    design = np.column_stack([np.ones(len(X)), X[:, 0]])
    intercept, slope = np.linalg.lstsq(design, y, rcond=None)[0]
    assert abs(intercept - 6.0) < 0.3 and abs(slope - 4.0) < 0.3
    residual = y - (intercept + slope * X[:, 0])
    assert 0.9 < residual.std() < 1.1


def test_linear_without_noise_is_exact() -> None:
    X, y = datasets.make_linear(n=20, noise=0.0)
    np.testing.assert_allclose(y, 6.0 + 4.0 * X[:, 0])


# --------------------------------------------------------------------------
# make_teacher
# --------------------------------------------------------------------------


def test_teacher_small_chunks() -> None:
    X, y = datasets.make_teacher(10, 5, n_classes=3, chunk_size=3, seed=4)
    assert X.shape == (10, 5) and X.dtype == np.float32
    assert y.shape == (10,) and y.dtype == np.int64
    assert y.min() >= 0 and y.max() <= 2


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 60),
    extra=st.integers(0, 30),
    chunk_size=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_teacher_rows_depend_only_on_their_chunk(n: int, extra: int, chunk_size: int, seed: int) -> None:
    # Each chunk has its own generator: a longer data set extends a shorter one.
    X, y = datasets.make_teacher(n, 3, chunk_size=chunk_size, seed=seed)
    X_long, y_long = datasets.make_teacher(n + extra, 3, chunk_size=chunk_size, seed=seed)
    whole = n - n % chunk_size  # rows in complete chunks
    np.testing.assert_array_equal(X[:whole], X_long[:whole])
    np.testing.assert_array_equal(y[:whole], y_long[:whole])


def test_teacher_chunks_use_spawned_generators() -> None:
    # As documented: weights first from default_rng(seed), then chunk i draws
    # its rows from the i-th child spawned from that generator.
    n, n_features, chunk_size, seed = 10, 3, 4, 11
    X, _ = datasets.make_teacher(n, n_features, hidden=(5,), chunk_size=chunk_size, seed=seed)
    rng = np.random.default_rng(seed)
    rng.normal(size=(n_features, 5))
    rng.normal(size=(5, 1))
    for i, child in enumerate(rng.spawn(3)):
        rows = X[i * chunk_size : (i + 1) * chunk_size]
        np.testing.assert_array_equal(rows, child.standard_normal(rows.shape, dtype=np.float32))


def test_teacher_binary_classes_are_balanced() -> None:
    _, y = datasets.make_teacher(20000, 10, n_classes=2, chunk_size=4096, seed=5)
    assert set(np.unique(y)) == {0, 1}
    assert 0.45 < y.mean() < 0.55


def test_teacher_multiclass_uses_every_class() -> None:
    _, y = datasets.make_teacher(5000, 8, n_classes=4, hidden=(16, 8), seed=6)
    counts = np.bincount(y, minlength=4)
    assert len(counts) == 4 and counts.min() > 0.05 * len(y)


def test_linear_teacher_regression_is_exactly_linear() -> None:
    X, y = datasets.make_teacher(300, 5, n_classes=None, hidden=(), dtype="float64", seed=7)
    assert X.dtype == np.float64 and y.dtype == np.float64
    weights, *_ = np.linalg.lstsq(X, y, rcond=None)
    np.testing.assert_allclose(X @ weights, y, atol=1e-10)
    assert np.linalg.norm(weights) > 0.1


def test_teacher_regression_noise() -> None:
    X0, y0 = datasets.make_teacher(20000, 5, n_classes=0, noise=0.0, seed=8)
    X1, y1 = datasets.make_teacher(20000, 5, n_classes=0, noise=0.5, seed=8)
    np.testing.assert_array_equal(X0, X1)  # noise is drawn after X in each chunk
    assert abs((y1 - y0).std() - 0.5) < 0.02


def test_teacher_classification_noise_flips_some_labels() -> None:
    _, y0 = datasets.make_teacher(20000, 5, noise=0.0, seed=9)
    _, y1 = datasets.make_teacher(20000, 5, noise=0.3, seed=9)
    agreement = (y0 == y1).mean()
    assert 0.7 < agreement < 0.99


def test_teacher_standard_normal_inputs() -> None:
    X, _ = datasets.make_teacher(20000, 3, seed=10)
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=0.03)
    np.testing.assert_allclose(X.std(axis=0), 1.0, atol=0.03)


# --------------------------------------------------------------------------
# standardize
# --------------------------------------------------------------------------


def test_standardize_zero_mean_unit_std() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal([3.0, -100.0, 0.5], [2.0, 10.0, 0.01], size=(500, 3))
    Z, transform = datasets.standardize(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(transform.mean, X.mean(axis=0))
    np.testing.assert_allclose(transform.std, X.std(axis=0))


def test_standardizer_applies_to_new_data_and_inverts() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(5.0, 3.0, size=(200, 4))
    X_new = rng.normal(0.0, 1.0, size=(30, 4))
    _, transform = datasets.standardize(X)
    expected = (X_new - X.mean(axis=0)) / X.std(axis=0)
    np.testing.assert_allclose(transform(X_new), expected)
    np.testing.assert_allclose(transform.transform(X_new), expected)
    np.testing.assert_allclose(transform.inverse_transform(transform(X_new)), X_new)
    with pytest.raises(ValueError, match="columns"):
        transform(X_new[:, :3])


def test_standardize_constant_column_gives_zeros() -> None:
    X = np.column_stack([np.full(10, 0.1), np.arange(10.0), np.zeros(10)])
    Z, transform = datasets.standardize(X)
    assert not np.isnan(Z).any()
    np.testing.assert_array_equal(Z[:, 0], 0.0)
    np.testing.assert_array_equal(Z[:, 2], 0.0)
    np.testing.assert_array_equal(transform.std[[0, 2]], 1.0)


def test_standardize_float32_large_offset_many_chunks() -> None:
    # More rows than one chunk; float32 values with a large common offset.
    rng = np.random.default_rng(2)
    X = (1e4 + rng.normal(0.0, 1.0, size=(150_000, 2))).astype(np.float32)
    Z, transform = datasets.standardize(X)
    assert Z.dtype == np.float32
    X64 = X.astype(np.float64)
    np.testing.assert_allclose(transform.mean, X64.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(transform.std, X64.std(axis=0), rtol=1e-6)
    np.testing.assert_allclose(Z.mean(axis=0, dtype=np.float64), 0.0, atol=1e-3)


def test_standardize_integer_input_gives_float64() -> None:
    Z, _ = datasets.standardize(np.array([[1, 2], [3, 4], [5, 9]]))
    assert Z.dtype == np.float64


def test_standardizer_is_frozen() -> None:
    _, transform = datasets.standardize(np.eye(3))
    with pytest.raises(AttributeError):
        transform.mean = np.zeros(3)  # type: ignore[misc]


# --------------------------------------------------------------------------
# Argument validation
# --------------------------------------------------------------------------

INVALID_CALLS = [
    (lambda: datasets.make_xor(n=3), ValueError, r"^n must"),
    (lambda: datasets.make_xor(n=10.0), TypeError, r"^n must"),
    (lambda: datasets.make_xor(n=True), TypeError, r"^n must"),
    (lambda: datasets.make_xor(noise=-0.1), ValueError, r"^noise must"),
    (lambda: datasets.make_xor(noise="0.1"), TypeError, r"^noise must"),
    (lambda: datasets.make_xor(seed=-1), ValueError, r"^seed must"),
    (lambda: datasets.make_xor(seed=1.5), TypeError, r"^seed must"),
    (lambda: datasets.make_clusters(n=2), ValueError, r"^n must"),
    (lambda: datasets.make_patterns("circle", n=0), ValueError, r"^n must"),
    (lambda: datasets.make_moons(n=1), ValueError, r"^n must"),
    (lambda: datasets.make_moons(noise=float("nan")), ValueError, r"^noise must"),
    (lambda: datasets.make_blobs(n=0), ValueError, r"^n must"),
    (lambda: datasets.make_blobs(centers=0), ValueError, r"^centers must"),
    (lambda: datasets.make_blobs(centers=[1.0, 2.0]), ValueError, r"^centers must"),
    (lambda: datasets.make_blobs(n_features=0), ValueError, r"^n_features must"),
    (lambda: datasets.make_blobs(cluster_std=-1.0), ValueError, r"^cluster_std must"),
    (lambda: datasets.make_linear(n=0), ValueError, r"^n must"),
    (lambda: datasets.make_linear(noise=-1.0), ValueError, r"^noise must"),
    (lambda: datasets.make_teacher(0, 3), ValueError, r"^n must"),
    (lambda: datasets.make_teacher(10, 0), ValueError, r"^n_features must"),
    (lambda: datasets.make_teacher(10, 3, n_classes=1), ValueError, r"^n_classes must"),
    (lambda: datasets.make_teacher(10, 3, n_classes=-2), ValueError, r"^n_classes must"),
    (lambda: datasets.make_teacher(10, 3, hidden=(4, 0)), ValueError, r"^hidden must"),
    (lambda: datasets.make_teacher(10, 3, hidden=16), TypeError, r"^hidden must"),
    (lambda: datasets.make_teacher(10, 3, noise=-1.0), ValueError, r"^noise must"),
    (lambda: datasets.make_teacher(10, 3, chunk_size=0), ValueError, r"^chunk_size must"),
    (lambda: datasets.make_teacher(10, 3, dtype="int32"), TypeError, r"^dtype must"),
    (lambda: datasets.standardize(np.zeros(5)), ValueError, r"^X must"),
    (lambda: datasets.standardize(np.zeros((0, 3))), ValueError, r"^X must"),
    (lambda: datasets.standardize(np.array([["a"]])), TypeError, r"^X must"),
]


@pytest.mark.parametrize(("call", "error", "message"), INVALID_CALLS)
def test_invalid_arguments_raise_naming_the_argument(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call()
