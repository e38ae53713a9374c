"""The six benchmark workloads of DESIGN.md ("Benchmark workloads") as plain data.

Every trainer (densefit's backends and the peers in :mod:`peers`) gets the same arrays, the
same initial weights (drawn by a densefit model with the workload's seed) and visits the
samples in the same order, in consecutive slices of ``batch_size`` of the epoch's order, the
last, smaller slice kept, so every peer can follow exactly the same trajectory. The order is
``0..n-1`` every epoch, except in the workloads DESIGN.md shuffles (``Spec.shuffle``: W3, W4,
W6): there epoch ``e`` visits ``densefit.shuffle.permutation(SEED, e, n)``, the order
``fit(shuffle=True)`` draws on a model seeded with ``SEED`` right after ``compile`` (which
restarts the epoch count at 0). densefit draws it inside ``fit``, so generating the orders is
part of its time, as for a user; the peers precompute the same orders (:meth:`Workload.orders`)
before they are timed, which DESIGN.md allows since it only favours them. Every trainer gathers
the rows of a shuffled batch (``X[order[start:stop]]``) in its timed run (scikit-learn: see
:mod:`peers`).

``DENSEFIT_BENCH_SCALE`` (default 1.0) shrinks a workload for smoke runs: rows become
``max(min(n, 1000), round(n * scale))`` (never more than the full size) and epochs
``max(1, round(epochs * scale))``.

Initial weights: glorot_uniform kernels and zero biases drawn by a densefit model seeded with
the workload's ``init_seed`` (``SEED`` except W1/W2). W1/W2 use ``init_seed = 0``: with
``SEED`` (2024) two of the four units of the second hidden layer are active on only 1% and 4%
of the rows at the start and the other two feed the output with negative weights, so every
trainer stalls at the linear solution (accuracy 2/3: class 1 lies between the two class-0
clusters). With seed 0 every hidden unit is active on 41–93% of the rows at the start and
both W1 and W2 reach accuracy 1.000 (loss < 0.001) at full size, which makes the check of
every trainer against densefit's numpy backend meaningful. (Seeds 0–39: 33 reach 1.000 in
both workloads; 8, 20, 25, 27 and 35 stall in both, 15, 29 and 30 in W2.)

Size legend: ``n`` rows, ``d`` features, ``K`` outputs.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import numpy as np

SEED = 2024
MIN_ROWS = 1000

MSE, BCE, CCE = "mse", "binary_crossentropy", "categorical_crossentropy"
OUTPUT_ACTIVATION = {MSE: None, BCE: "sigmoid", CCE: "softmax"}


@dataclass(frozen=True)
class Spec:
    """A workload as DESIGN.md states it, before data is generated or scaled."""

    id: str
    name: str
    rows: int
    sizes: tuple          # layer widths from the input to the output, e.g. (2, 3, 4, 1)
    loss: str
    optimizer: str        # "sgd" or "adam"
    lr: float
    batch_size: int
    epochs: int
    momentum: float = 0.0
    dtype: str = "float32"
    rate: str = ""        # extra throughput to report: "gflops" (W3, W4) or "x_gb_per_s" (W5)
    init_seed: int = SEED  # seed of the densefit model that draws the initial weights (see above)
    shuffle: bool = False  # epoch e visits permutation(SEED, e, n), not 0..n-1 (DESIGN.md's "shuffle" column)


SPECS = {s.id: s for s in [
    Spec("W1", "seed-sgd", 1000, (2, 3, 4, 1), BCE, "sgd", 0.01, 1, 150, init_seed=0),
    Spec("W2", "seed-minibatch", 1000, (2, 3, 4, 1), BCE, "sgd", 0.1, 32, 2000, init_seed=0),
    Spec("W3", "mlp-small", 100_000, (32, 64, 64, 1), BCE, "sgd", 0.01, 64, 5, momentum=0.9, rate="gflops",
         shuffle=True),
    Spec("W4", "mlp-medium", 60_000, (784, 256, 256, 10), CCE, "adam", 1e-3, 128, 2, rate="gflops", shuffle=True),
    Spec("W5", "wide-logreg", 1_000_000, (100, 1), BCE, "sgd", 0.05, 256, 1, rate="x_gb_per_s"),
    Spec("W6", "linreg-f64", 1000, (1, 1), MSE, "sgd", 0.01, 64, 100, dtype="float64", shuffle=True),
]}
IDS = tuple(SPECS)
FAMILIES = {"tiny": ("W1", "W2"), "mlp": ("W3", "W4"), "linear": ("W5", "W6")}


@dataclass(frozen=True, eq=False)
class Workload:
    """A generated workload: data, network, training settings and the shared initial weights.

    ``X`` is ``(n, d)`` C-contiguous in ``dtype``; ``Y`` is the ``(n, K)`` target matrix in
    ``dtype`` (one-hot rows for categorical cross-entropy); ``labels`` the integer classes
    ``(n,)`` of a classification workload, else ``None``.
    """

    spec: Spec
    X: np.ndarray
    Y: np.ndarray
    labels: np.ndarray | None
    epochs: int
    scale: float
    _init: list = field(default_factory=list, repr=False)

    def __getattr__(self, name):          # spec fields read as workload fields: w.lr, w.sizes, ...
        return getattr(self.spec, name)

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def classifier(self) -> bool:
        return self.labels is not None

    @property
    def targets(self) -> np.ndarray:
        """What ``Sequential.fit`` is given: class labels, or ``Y`` for regression."""
        return self.labels if self.classifier else self.Y

    @property
    def n_weights(self) -> int:
        """Trainable parameters, kernels and biases."""
        return sum(a * b + b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    @property
    def flops_per_sample(self) -> int:
        """Training FLOPs per sample: 2 forward + 4 backward per weight."""
        return 6 * self.n_weights

    @property
    def samples(self) -> int:
        """Samples one training run processes (rows × epochs)."""
        return self.n * self.epochs

    @property
    def x_bytes(self) -> int:
        """Bytes of X read by one training run."""
        return self.X.nbytes * self.epochs

    def orders(self) -> np.ndarray | None:
        """The ``(epochs, n)`` int64 row orders of a shuffled workload, ``None`` (``0..n-1``
        every epoch) otherwise: row ``e`` is ``densefit.shuffle.permutation(SEED, e, n)``, what
        ``fit(shuffle=True)`` visits in epoch ``e`` of the first ``fit`` after ``compile`` on a
        model seeded with ``SEED`` (the peers' densefit trainers). For the peers, precomputed
        in their untimed setup."""
        if not self.shuffle:
            return None
        from densefit import shuffle
        return shuffle.orders(SEED, 0, self.epochs, self.n)

    def densefit_layers(self):
        """The network as densefit layers: hidden relu layers, output activation from the loss."""
        import densefit as df
        hidden = [df.Dense(units, "relu") for units in self.sizes[1:-1]]
        layers = hidden + [df.Dense(self.sizes[-1], OUTPUT_ACTIVATION[self.loss])]
        layers[0].input_dim = self.sizes[0]
        return layers

    def densefit_optimizer(self):
        import densefit as df
        if self.optimizer == "adam":
            return df.Adam(self.lr)
        return df.SGD(self.lr, momentum=self.momentum)

    def init_weights(self) -> list[np.ndarray]:
        """Initial ``[W0, b0, W1, b1, ...]`` (``W`` is ``(in, out)``), drawn once by densefit with
        the workload's ``init_seed`` (glorot_uniform kernels, zero biases). Callers get fresh copies."""
        if not self._init:
            import densefit as df
            model = df.Sequential(self.densefit_layers(), seed=self.init_seed, dtype=self.dtype, backend="numpy")
            model.compile(loss=self.loss, optimizer=self.densefit_optimizer())
            self._init.extend(model.get_weights())
        return [w.copy() for w in self._init]


def rates(w: Workload, seconds: float) -> dict:
    """Throughput of one training run of ``w`` that took ``seconds``: samples/s, plus achieved
    GFLOP/s (W3, W4; 6 FLOPs per weight and sample) or GB/s of X read (W5)."""
    out = {"samples_per_s": w.samples / seconds}
    if w.rate == "gflops":
        out["gflops"] = w.flops_per_sample * w.samples / seconds / 1e9
    elif w.rate == "x_gb_per_s":
        out["x_gb_per_s"] = w.x_bytes / seconds / 1e9
    return out


def batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """The ``(start, stop)`` slices of one epoch: consecutive, the last smaller one kept."""
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def batch_rows(order, start: int, stop: int):
    """The index of the batch ``[start, stop)`` of an epoch: the slice itself when the epoch
    visits ``0..n-1`` (``order`` is ``None``; ``X[rows]`` is then a view), else those positions
    of the epoch's order (numpy or torch; ``X[rows]`` gathers the batch's rows)."""
    return slice(start, stop) if order is None else order[start:stop]


def bench_scale() -> float:
    return float(os.environ.get("DENSEFIT_BENCH_SCALE", "1.0"))


@functools.lru_cache(maxsize=None)
def get(workload_id: str, scale: float | None = None) -> Workload:
    """Workload ``workload_id`` ("W1".."W6") at ``scale`` (default ``DENSEFIT_BENCH_SCALE``)."""
    if scale is None:
        return get(workload_id, bench_scale())
    spec = SPECS[workload_id.upper()]
    rows = min(spec.rows, max(MIN_ROWS, round(spec.rows * scale)))
    return make(spec.id, rows, max(1, round(spec.epochs * scale)), scale)


def make(workload_id: str, rows: int, epochs: int, scale: float = 1.0) -> Workload:
    """Workload ``workload_id`` with exactly ``rows`` rows (more than DESIGN.md's too) and
    ``epochs`` epochs, generated afresh (not cached): for the scaling and memory measurements."""
    spec = SPECS[workload_id.upper()]
    rng = np.random.default_rng([SEED, int(spec.id[1:])])
    X, target = _DATA[spec.id](rng, rows)
    dtype = np.dtype(spec.dtype)
    X = np.ascontiguousarray(X, dtype=dtype)
    if spec.loss == MSE:
        return Workload(spec, X, target.reshape(-1, 1).astype(dtype), None, epochs, scale)
    labels = target.astype(np.int64)
    Y = np.eye(spec.sizes[-1], dtype=dtype)[labels] if spec.loss == CCE else labels.reshape(-1, 1).astype(dtype)
    return Workload(spec, X, Y, labels, epochs, scale)


def make_clusters_local(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian clusters in 2-D, two classes: class 0 on both sides of class 1, so the
    boundary needs the hidden layers."""
    centers = np.array([[-2.0, -1.0], [2.0, -1.0], [0.0, 1.5]])
    cluster = np.arange(n) % 3
    X = centers[cluster] + 0.75 * rng.standard_normal((n, 2))
    return X, (cluster == 2).astype(np.int64)


def _clusters(rng, n):
    try:
        from densefit.datasets import make_clusters
    except ImportError:
        return make_clusters_local(n, rng)
    X, y = make_clusters(n=n)
    return np.asarray(X), np.asarray(y).reshape(-1)


def _mlp_teacher(rng, n):
    """W3: normal features, labels from a random 32-16-1 tanh teacher, split at its median."""
    W1, w2 = rng.standard_normal((32, 16), dtype=np.float32), rng.standard_normal(16, dtype=np.float32)
    X = rng.standard_normal((n, 32), dtype=np.float32)
    score = np.tanh(X @ W1 / np.sqrt(32)) @ w2
    return X, (score > np.median(score)).astype(np.int64)


def _linear_teacher(rng, n):
    """W4: uniform pixels in [0, 1), ten classes: the argmax of a random linear teacher."""
    teacher = rng.standard_normal((784, 10), dtype=np.float32)
    X = rng.random((n, 784), dtype=np.float32)
    return X, np.argmax((X - 0.5) @ teacher, axis=1)


def _logistic_teacher(rng, n):
    """W5: normal features, Bernoulli labels with P(y=1) = sigmoid(x·w + 0.5), logits of std ≈ 3."""
    w = rng.standard_normal(100, dtype=np.float32) * (3 / np.sqrt(100))
    X = rng.standard_normal((n, 100), dtype=np.float32)
    p = 1 / (1 + np.exp(-(X @ w + 0.5)))
    return X, (rng.random(n) < p).astype(np.int64)


def _line(rng, n):
    """W6: y = 6 + 4x + ε, x uniform in [0, 2), ε standard normal."""
    x = 2 * rng.random((n, 1))
    return x, 6 + 4 * x[:, 0] + rng.standard_normal(n)


_DATA = {"W1": _clusters, "W2": _clusters, "W3": _mlp_teacher, "W4": _linear_teacher, "W5": _logistic_teacher,
         "W6": _line}


def evaluate(w: Workload, weights: list[np.ndarray], chunk: int = 1 << 16) -> tuple[float, float | None]:
    """Mean loss and accuracy (``None`` for regression) of ``weights`` on the whole workload,
    computed the same way (numpy, float64) for every trainer."""
    total, correct = 0.0, 0
    for start in range(0, w.n, chunk):
        a = w.X[start:start + chunk].astype(np.float64)
        for i in range(0, len(weights), 2):
            a = a @ weights[i].astype(np.float64) + weights[i + 1].astype(np.float64)
            if i + 2 < len(weights):
                a = np.maximum(a, 0.0)
        Y = w.Y[start:start + chunk].astype(np.float64)
        if w.loss == MSE:
            total += np.mean((a - Y) ** 2, axis=1).sum()
        elif w.loss == BCE:
            total += np.mean(np.maximum(a, 0) - a * Y + np.log1p(np.exp(-np.abs(a))), axis=1).sum()
        else:
            shifted = a - a.max(axis=1, keepdims=True)
            log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            total += -(log_softmax * Y).sum()
        if w.classifier:
            predicted = (a[:, 0] > 0) if w.loss == BCE else np.argmax(a, axis=1)
            correct += int(np.sum(predicted == w.labels[start:start + chunk]))
    return float(total / w.n), (correct / w.n if w.classifier else None)
