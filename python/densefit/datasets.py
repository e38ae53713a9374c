"""Synthetic data sets used in teaching material on neural networks.

Every generator is pure numpy, takes a keyword ``seed=0`` and draws all of its
randomness from ``np.random.default_rng(seed)`` (a ``Generator(PCG64(seed))``),
so the same arguments always give the same arrays.  Each returns ``(X, y)``
with ``X`` of shape ``(n, d)`` (float64 unless stated) and ``y`` of shape
``(n,)``: int64 class labels for classification, float64 targets for
regression.  Classification samples are returned in random order (not sorted
by class), so mini-batches drawn in order are mixed.

What each set teaches:

* :func:`make_xor` -- the XOR problem: the classic example that a single
  linear unit (a perceptron) cannot solve, but one hidden layer can.
* :func:`make_clusters` -- three Gaussian clusters, two classes, the middle
  cluster belonging to the other class: not linearly separable, yet easy for
  a tiny ReLU network (benchmark workload W1, a 2-3-4-1 network).
* :func:`make_patterns` -- points in the square ``[-1, 1]^2`` labelled by a
  geometric shape (diamond, circle, square, thick or thin right angle): how
  hidden units combine half-planes into a decision region, and how thin
  regions need more capacity or training.
* :func:`make_moons` -- two interleaving half circles: a curved boundary.
* :func:`make_blobs` -- isotropic Gaussian blobs: multi-class classification.
* :func:`make_linear` -- ``y = 6 + 4x + noise``: linear regression and
  gradient descent on a problem with a known answer.
* :func:`make_teacher` -- arbitrarily large data labelled by a random
  "teacher" network, generated chunk by chunk: performance and scaling tests.

:func:`standardize` rescales features to zero mean and unit variance and
returns a :class:`Standardizer` to apply the same transform to new data.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from .validation import check_int

__all__ = [
    "PATTERN_KINDS",
    "Standardizer",
    "make_blobs",
    "make_clusters",
    "make_linear",
    "make_moons",
    "make_patterns",
    "make_teacher",
    "make_xor",
    "standardize",
]

FloatArray = NDArray[np.floating]
IntArray = NDArray[np.int64]

# Rows per chunk when standardize() accumulates statistics and writes output.
_STANDARDIZE_CHUNK = 65536


# --------------------------------------------------------------------------
# Argument checking and shared helpers
# --------------------------------------------------------------------------


def _check_nonnegative(name: str, value: object) -> float:
    """Return ``value`` as a float, or raise if it is not a real number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number >= 0, got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite real number >= 0, got {value!r}")
    return float(value)


def _rng(seed: object) -> np.random.Generator:
    """The generator every data set draws from: ``default_rng(seed)``."""
    return np.random.default_rng(check_int("seed", seed, 0))


def _split_evenly(n: int, k: int) -> NDArray[np.int64]:
    """Sizes of ``k`` groups summing to ``n``, differing by at most one."""
    return np.array([n // k + (i < n % k) for i in range(k)], dtype=np.int64)


def _chunks(n: int, chunk_size: int) -> Iterator[slice]:
    """Consecutive row slices of at most ``chunk_size`` rows covering ``range(n)``."""
    for start in range(0, n, chunk_size):
        yield slice(start, min(start + chunk_size, n))


def _gaussian_clusters(
    rng: np.random.Generator, centres: FloatArray, sizes: NDArray[np.int64], std: float
) -> tuple[FloatArray, IntArray]:
    """Sample ``sizes[i]`` points from ``N(centres[i], std^2 I)`` for each cluster i.

    Returns the points and, for each point, the index of its cluster, in a
    random order.
    """
    cluster = np.repeat(np.arange(len(centres), dtype=np.int64), sizes)
    X = centres[cluster] + rng.normal(0.0, std, size=(len(cluster), centres.shape[1]))
    order = rng.permutation(len(cluster))
    return X[order], cluster[order]


# --------------------------------------------------------------------------
# Classification sets
# --------------------------------------------------------------------------

_XOR_CORNERS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
_XOR_LABELS = np.array([0, 1, 1, 0], dtype=np.int64)


def make_xor(n: int = 200, noise: float = 0.1, seed: int = 0) -> tuple[FloatArray, IntArray]:
    """Noisy XOR: points around the four corners of the unit square.

    The ``n`` points are split as evenly as possible among the corners
    ``c = (b1, b2)`` with ``b1, b2 in {0, 1}``; a point is
    ``x = c + e`` with ``e ~ N(0, noise^2 I)`` and label ``y = b1 xor b2``.

    Args:
        n: number of points, at least 4.
        noise: standard deviation of the Gaussian noise, >= 0.
        seed: seed of ``np.random.default_rng``.

    Returns:
        ``X`` float64 of shape ``(n, 2)``, ``y`` int64 of shape ``(n,)``.
    """
    n = check_int("n", n, 4)
    noise = _check_nonnegative("noise", noise)
    rng = _rng(seed)
    X, corner = _gaussian_clusters(rng, _XOR_CORNERS, _split_evenly(n, 4), noise)
    return X, _XOR_LABELS[corner]


_CLUSTER_CENTRES = np.array([[-3.0, -3.0], [0.0, 0.0], [3.0, 3.0]])
_CLUSTER_LABELS = np.array([0, 1, 0], dtype=np.int64)
_CLUSTER_STD = 0.5


def _rescale_to_unit_box(X: FloatArray) -> FloatArray:
    """Min-max rescale every column of ``X`` affinely onto ``[-1, 1]``."""
    low, high = X.min(axis=0), X.max(axis=0)
    return 2.0 * (X - low) / (high - low) - 1.0


def make_clusters(n: int = 1000, seed: int = 0) -> tuple[FloatArray, IntArray]:
    """Three Gaussian clusters, two classes, not linearly separable.

    The data set of benchmark workload W1 (a 2-3-4-1 ReLU network with a
    sigmoid output trained by SGD).  The ``n`` points are split as evenly as
    possible among three clusters ``N(c_i, 0.5^2 I)`` with centres

    * ``c_0 = (-3, -3)``, class 0,
    * ``c_1 = ( 0,  0)``, class 1,
    * ``c_2 = ( 3,  3)``, class 0.

    Class 1 lies between the two class-0 clusters, so no line separates the
    classes (the best line is right on only about 2/3 of the points), while
    two ReLU units (a band ``|x1 + x2| < t``) separate them with a margin of
    about four standard deviations.

    Rescaling: after sampling, each feature is mapped affinely onto
    ``[-1, 1]`` by ``x' = 2 (x - min) / (max - min) - 1``, with ``min`` and
    ``max`` taken over the sample, so every column has minimum -1 and
    maximum 1.

    Args:
        n: number of points, at least 3.
        seed: seed of ``np.random.default_rng``.

    Returns:
        ``X`` float64 of shape ``(n, 2)`` in ``[-1, 1]^2``, ``y`` int64 of
        shape ``(n,)``.
    """
    n = check_int("n", n, 3)
    rng = _rng(seed)
    X, cluster = _gaussian_clusters(rng, _CLUSTER_CENTRES, _split_evenly(n, 3), _CLUSTER_STD)
    return _rescale_to_unit_box(X), _CLUSTER_LABELS[cluster]


# Right-angle (L-shaped) band: x1 in [a, a + w] and x2 >= a, or the same with
# x1 and x2 swapped.  Inside [-1, 1]^2 its area is 2 w (1 - a) - w^2.
_THICK_CORNER, _THICK_WIDTH = -0.5, 1.0  # area 2.00: 50 % of the square
_THIN_CORNER, _THIN_WIDTH = -0.9, 0.5  # area 1.65: about 41 % of the square


def _right_angle(corner: float, width: float) -> Callable[[FloatArray, FloatArray], NDArray[np.bool_]]:
    def inside(x1: FloatArray, x2: FloatArray) -> NDArray[np.bool_]:
        arm1 = (corner <= x1) & (x1 <= corner + width) & (x2 >= corner)
        arm2 = (corner <= x2) & (x2 <= corner + width) & (x1 >= corner)
        return arm1 | arm2

    return inside


_PATTERNS: dict[str, Callable[[FloatArray, FloatArray], NDArray[np.bool_]]] = {
    # |x1| + |x2| < 1: area 2, half of the square.
    "diamond": lambda x1, x2: np.abs(x1) + np.abs(x2) < 1.0,
    # pi r^2 = 2: half of the square.
    "circle": lambda x1, x2: x1**2 + x2**2 < 2.0 / np.pi,
    # (2 s)^2 = 2 with s = sqrt(1/2): half of the square.
    "square": lambda x1, x2: np.maximum(np.abs(x1), np.abs(x2)) < np.sqrt(0.5),
    "thick_right_angle": _right_angle(_THICK_CORNER, _THICK_WIDTH),
    "thin_right_angle": _right_angle(_THIN_CORNER, _THIN_WIDTH),
}

#: Valid values of the ``kind`` argument of :func:`make_patterns`.
PATTERN_KINDS: tuple[str, ...] = tuple(_PATTERNS)


def make_patterns(kind: str, n: int = 500, seed: int = 0) -> tuple[FloatArray, IntArray]:
    """Points uniform on ``[-1, 1]^2``, labelled 1 inside a shape, 0 outside.

    ``X ~ U([-1, 1]^2)``; ``y = 1`` if the point lies in the region named by
    ``kind`` (areas relative to the square's area 4):

    * ``"diamond"``: ``|x1| + |x2| < 1`` (50 %),
    * ``"circle"``: ``x1^2 + x2^2 < 2 / pi``, i.e. ``pi r^2 = 2`` (50 %),
    * ``"square"``: ``max(|x1|, |x2|) < sqrt(1/2)`` (50 %),
    * ``"thick_right_angle"``: an L-shaped band of width ``w = 1`` with its
      corner at ``a = -0.5``: ``a <= x1 <= a + w and x2 >= a``, or
      ``a <= x2 <= a + w and x1 >= a`` (area ``2 w (1 - a) - w^2``: 50 %),
    * ``"thin_right_angle"``: the same L with ``a = -0.9``, ``w = 0.5``
      (about 41 %).

    Args:
        kind: one of :data:`PATTERN_KINDS`.
        n: number of points, at least 1.
        seed: seed of ``np.random.default_rng``.

    Returns:
        ``X`` float64 of shape ``(n, 2)``, ``y`` int64 of shape ``(n,)``.

    Raises:
        ValueError: if ``kind`` is not a known pattern.
    """
    if kind not in _PATTERNS:
        raise ValueError(f"kind must be one of {', '.join(PATTERN_KINDS)}; got {kind!r}")
    n = check_int("n", n, 1)
    rng = _rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(n, 2))
    return X, _PATTERNS[kind](X[:, 0], X[:, 1]).astype(np.int64)


def make_moons(n: int = 200, noise: float = 0.1, seed: int = 0) -> tuple[FloatArray, IntArray]:
    """Two interleaving half circles (the geometry of sklearn's ``make_moons``).

    Class 0 has ``n // 2`` points ``(cos t, sin t)`` and class 1 has
    ``n - n // 2`` points ``(1 - cos t, 1/2 - sin t)``, with ``t`` evenly
    spaced on ``[0, pi]`` in each class; ``N(0, noise^2 I)`` noise is added
    to every point and the points are shuffled.

    Args:
        n: number of points, at least 2.
        noise: standard deviation of the Gaussian noise, >= 0.
        seed: seed of ``np.random.default_rng``.

    Returns:
        ``X`` float64 of shape ``(n, 2)``, ``y`` int64 of shape ``(n,)``.
    """
    n = check_int("n", n, 2)
    noise = _check_nonnegative("noise", noise)
    rng = _rng(seed)
    t_outer = np.linspace(0.0, np.pi, n // 2)
    t_inner = np.linspace(0.0, np.pi, n - n // 2)
    outer = np.column_stack([np.cos(t_outer), np.sin(t_outer)])
    inner = np.column_stack([1.0 - np.cos(t_inner), 0.5 - np.sin(t_inner)])
    X = np.concatenate([outer, inner]) + rng.normal(0.0, noise, size=(n, 2))
    y = np.repeat(np.array([0, 1], dtype=np.int64), [len(outer), len(inner)])
    order = rng.permutation(n)
    return X[order], y[order]


def make_blobs(
    n: int = 300,
    centers: int | ArrayLike = 3,
    n_features: int = 2,
    cluster_std: float = 1.0,
    seed: int = 0,
) -> tuple[FloatArray, IntArray]:
    """Isotropic Gaussian blobs.

    With ``k`` centres ``c_0 .. c_{k-1}``, the ``n`` points are split as
    evenly as possible among the blobs and blob ``i`` is sampled from
    ``N(c_i, cluster_std^2 I)`` with label ``i``.

    Args:
        n: number of points, at least 1.
        centers: either the number ``k`` of centres, drawn uniformly from
            ``[-10, 10]^n_features`` (before the points), or an array of
            shape ``(k, d)`` of centres.
        n_features: dimension ``d`` when ``centers`` is an int; ignored when
            ``centers`` is an array (as in sklearn).
        cluster_std: standard deviation of every blob, >= 0.
        seed: seed of ``np.random.default_rng``.

    Returns:
        ``X`` float64 of shape ``(n, d)``, ``y`` int64 of shape ``(n,)`` with
        values in ``0 .. k-1``.
    """
    n = check_int("n", n, 1)
    cluster_std = _check_nonnegative("cluster_std", cluster_std)
    rng = _rng(seed)
    if isinstance(centers, numbers.Integral) and not isinstance(centers, bool):
        k = check_int("centers", centers, 1)
        d = check_int("n_features", n_features, 1)
        centres = rng.uniform(-10.0, 10.0, size=(k, d))
    else:
        centres = np.asarray(centers, dtype=np.float64)
        if centres.ndim != 2 or centres.shape[0] < 1 or centres.shape[1] < 1:
            raise ValueError(
                f"centers must be an int or an array of shape (k, d) with k, d >= 1, "
                f"got shape {centres.shape}"
            )
    return _gaussian_clusters(rng, centres, _split_evenly(n, len(centres)), cluster_std)


# --------------------------------------------------------------------------
# Regression set
# --------------------------------------------------------------------------


def make_linear(n: int = 1000, noise: float = 1.0, seed: int = 0) -> tuple[FloatArray, FloatArray]:
    """Noisy straight line: ``y = 6 + 4 x + e``.

    ``x ~ U(0, 2)`` and ``e ~ N(0, noise^2)``, independently for each of the
    ``n`` points (the classic "y = 4 + 3x" notebook example, other
    coefficients).

    Args:
        n: number of points, at least 1.
        noise: standard deviation of ``e``, >= 0.
        seed: seed of ``np.random.default_rng``.

    Returns:
        ``X`` float64 of shape ``(n, 1)``, ``y`` float64 of shape ``(n,)``.
    """
    n = check_int("n", n, 1)
    noise = _check_nonnegative("noise", noise)
    rng = _rng(seed)
    x = rng.uniform(0.0, 2.0, size=n)
    y = 6.0 + 4.0 * x + rng.normal(0.0, noise, size=n)
    return x.reshape(n, 1), y


# --------------------------------------------------------------------------
# Large synthetic set
# --------------------------------------------------------------------------


def make_teacher(
    n: int,
    n_features: int,
    n_classes: int | None = 2,
    hidden: Sequence[int] = (16,),
    noise: float = 0.0,
    chunk_size: int = 65536,
    dtype: DTypeLike = "float32",
    seed: int = 0,
) -> tuple[FloatArray, IntArray | FloatArray]:
    """Large data set labelled by a random "teacher" network.

    Teacher: an MLP ``n_features -> hidden[0] -> ... -> hidden[-1] -> m``
    with tanh hidden units and no biases, whose weight matrices
    ``W ~ N(0, 1/fan_in)`` are drawn from ``default_rng(seed)`` first, layer
    by layer.  ``hidden=()`` gives a linear teacher (a logistic or linear
    regression model).  Having no biases makes the teacher an odd function
    of ``x``, so the two classes of a binary teacher are equally likely.

    Data: ``x ~ N(0, I)`` in ``dtype``; with ``o`` the teacher output plus
    ``N(0, noise^2)`` noise on each output,

    * ``n_classes == 2``: ``m = 1`` and ``y = 1 if o > 0 else 0`` (int64),
    * ``n_classes >= 3``: ``m = n_classes`` and ``y = argmax o`` (int64),
    * ``n_classes in (0, None)``: regression, ``m = 1`` and ``y = o``
      (float64).

    Rows are generated ``chunk_size`` at a time straight into the
    preallocated outputs, so memory use stays at the size of the outputs
    plus one chunk.  Chunk ``i`` uses its own generator, the ``i``-th child
    spawned (``Generator.spawn``) from ``default_rng(seed)`` after the
    weights are drawn, so the data depend on ``seed`` *and* on
    ``chunk_size``: the same seed with a different ``chunk_size`` gives a
    different (equally valid) sample from the same teacher.

    Args:
        n: number of rows, at least 1.
        n_features: number of input features, at least 1.
        n_classes: 2 or more for classification; 0 or None for regression.
        hidden: widths of the teacher's hidden layers, each at least 1.
        noise: standard deviation of the noise added to the teacher output
            (for classification it flips labels near the boundary), >= 0.
        chunk_size: rows per chunk, at least 1.
        dtype: ``float32`` or ``float64``, dtype of ``X`` and of the teacher's
            arithmetic.
        seed: seed of ``np.random.default_rng``.

    Returns:
        ``X`` of shape ``(n, n_features)`` in ``dtype``; ``y`` of shape
        ``(n,)``, int64 labels in ``0 .. n_classes-1`` or float64 targets.
    """
    n = check_int("n", n, 1)
    n_features = check_int("n_features", n_features, 1)
    regression = n_classes is None or (check_int("n_classes", n_classes, 0) == 0)
    if not regression and n_classes == 1:
        raise ValueError("n_classes must be 0 or None (regression) or >= 2, got 1")
    if isinstance(hidden, (str, numbers.Number)):
        raise TypeError(f"hidden must be a sequence of layer widths, got {hidden!r}")
    widths = [check_int("hidden", width, 1) for width in hidden]
    noise = _check_nonnegative("noise", noise)
    chunk_size = check_int("chunk_size", chunk_size, 1)
    x_dtype = np.dtype(dtype)
    if x_dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    rng = _rng(seed)

    n_outputs = n_classes if not regression and n_classes > 2 else 1
    sizes = [n_features, *widths, n_outputs]
    weights = [
        rng.normal(0.0, 1.0 / np.sqrt(fan_in), size=(fan_in, fan_out)).astype(x_dtype)
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:])
    ]

    X = np.empty((n, n_features), dtype=x_dtype)
    y = np.empty(n, dtype=np.float64 if regression else np.int64)
    for rows in _chunks(n, chunk_size):
        chunk_rng = rng.spawn(1)[0]
        x = X[rows]  # a view: filled in place
        chunk_rng.standard_normal(dtype=x_dtype, out=x)
        out = x
        for W in weights[:-1]:
            out = np.tanh(out @ W)
        out = out @ weights[-1]
        if noise > 0:
            out += noise * chunk_rng.standard_normal(out.shape, dtype=x_dtype)
        if regression:
            y[rows] = out[:, 0]
        elif n_outputs == 1:
            y[rows] = out[:, 0] > 0
        else:
            y[rows] = out.argmax(axis=1)
    return X, y


# --------------------------------------------------------------------------
# Standardization
# --------------------------------------------------------------------------


def _as_2d_float(name: str, X: ArrayLike) -> FloatArray:
    """``X`` as a 2-D array of floats (float64 unless already floating)."""
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array, got dtype {X.dtype}")
    if X.dtype.kind != "f":
        X = X.astype(np.float64)
    if X.ndim != 2 or X.shape[0] < 1:
        raise ValueError(f"{name} must be a 2-D array with at least one row, got shape {X.shape}")
    return X


@dataclass(frozen=True)
class Standardizer:
    """Affine per-feature transform ``x' = (x - mean) / std``.

    ``mean`` and ``std`` are float64 arrays of shape ``(d,)``; ``std`` is
    positive (constant features get ``std = 1``).  Calling the object is the
    same as :meth:`transform`.  Outputs keep the input's floating dtype
    (integer input gives float64).
    """

    mean: NDArray[np.float64]
    std: NDArray[np.float64]

    def _check(self, X: ArrayLike) -> FloatArray:
        X = _as_2d_float("X", X)
        if X.shape[1] != self.mean.shape[0]:
            raise ValueError(f"X must have {self.mean.shape[0]} columns, got {X.shape[1]}")
        return X

    def transform(self, X: ArrayLike) -> FloatArray:
        """Return ``(X - mean) / std``, computed chunk by chunk into the output."""
        X = self._check(X)
        mean, std = self.mean.astype(X.dtype), self.std.astype(X.dtype)
        result = np.empty_like(X)
        for rows in _chunks(len(X), _STANDARDIZE_CHUNK):
            np.subtract(X[rows], mean, out=result[rows])
            result[rows] /= std
        return result

    def inverse_transform(self, X: ArrayLike) -> FloatArray:
        """Return ``X * std + mean``, undoing :meth:`transform`."""
        X = self._check(X)
        return X * self.std.astype(X.dtype) + self.mean.astype(X.dtype)

    def __call__(self, X: ArrayLike) -> FloatArray:
        return self.transform(X)


def standardize(X: ArrayLike) -> tuple[FloatArray, Standardizer]:
    """Standardize every column of ``X`` to mean 0 and standard deviation 1.

    ``mean_j = sum_i X_ij / n`` and ``std_j = sqrt(sum_i (X_ij - mean_j)^2 / n)``
    (population standard deviation), accumulated in float64 over row chunks
    in two passes (mean, then squared deviations), so float32 input of any
    size is handled accurately without a full float64 copy.  Constant
    columns (minimum == maximum) get ``mean_j`` = their value and
    ``std_j = 1``, so they become exact zeros rather than NaN.

    Args:
        X: array of shape ``(n, d)`` with ``n >= 1``.

    Returns:
        The standardized array (input's floating dtype, float64 for integer
        input) and the :class:`Standardizer` that produced it, to apply the
        same transform to new data.
    """
    X = _as_2d_float("X", X)
    n, d = X.shape
    total = np.zeros(d)
    low = np.full(d, np.inf)
    high = np.full(d, -np.inf)
    for rows in _chunks(n, _STANDARDIZE_CHUNK):
        total += X[rows].sum(axis=0, dtype=np.float64)
        low = np.minimum(low, X[rows].min(axis=0))
        high = np.maximum(high, X[rows].max(axis=0))
    mean = total / n
    squares = np.zeros(d)
    for rows in _chunks(n, _STANDARDIZE_CHUNK):
        squares += np.square(X[rows] - mean).sum(axis=0)
    std = np.sqrt(squares / n)
    # Exactly constant columns: rounding in the mean could leave a tiny
    # nonzero std, so detect them by min == max and map them to exact zeros.
    constant = low == high
    mean[constant] = low[constant]
    std[constant] = 1.0
    transform = Standardizer(mean=mean, std=std)
    return transform(X), transform
