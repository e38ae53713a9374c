"""The benchmark matrix: a curated list of rows beside W1–W6 that covers every activation,
narrow / wide / deep networks, batch sizes 1, 32, 256 and 1024, every optimizer (SGD, SGD with
momentum and Nesterov, Adam, AdamW, RMSprop, Adagrad), BatchNorm and Dropout, float32 and
float64, multinomial softmax and a 5M-row stream, trained by densefit (cpp, numba; numpy on
request) and by PyTorch eager, JAX jit step and JAX ``lax.scan``.

    python -m densefit.bench.matrix [--rows NAME,...] [--trainers cpp,numba,torch,jax-jit,jax-scan]
                                      [--threads N] [--repeats R] [--quick] [--out matrix.md]
    densefit bench --matrix ...           (the same, through the densefit command)

Every row uses ``fit``'s default: **shuffled** epochs. densefit's ``fit`` draws the order of
epoch ``e`` as ``densefit.shuffle.permutation(seed, e, n)`` (each backend computes it from
``(seed, e)``); every peer draws exactly the same permutations, with that numpy function, *inside
its timed loop*,
and gathers its batches through them (torch: ``X[idx]``; JAX: a ``dynamic_slice`` of the
permutation and a gather inside the jitted step or scan), so the permutation and gather costs
are in every trainer's time. Same for everything else: the data, the network, the initial
weights (drawn once by densefit from the row's seed), the loss, the optimizer and its
hyper-parameters, the batch size (the last, smaller batch kept) and the dropout masks: the peers
compute densefit's counter-based mask (:mod:`densefit.rng`, SplitMix64 of ``(seed, step, layer,
index)``) in their own framework (torch int64 with logical shifts, JAX uint64), inside the timed
step, so all trainers follow one trajectory on paper.

Checks, before timing: each trainer's final weights (and BatchNorm running statistics) are
evaluated by densefit's numpy backend on the whole data set in inference mode, and the loss and
accuracy must agree with those of densefit's numpy backend trained the same way (one untimed
run): float64 within 0.1% of the loss, float32 within 5% (10% for the adaptive optimizers and
the long chaotic rows, where float32 rounding differences grow along the trajectory; see
:data:`peers.LONG_FLOAT32_ADAM`). A trainer that disagrees is reported in the "check" column
and its timings are still shown.

Timing: one untimed warm-up (the check run; it absorbs JIT compilation), then ``R`` timed runs
per trainer, interleaved (trainer A, B, C, A, B, C, ...), median reported as samples/s (rows ×
epochs / seconds). GFLOP/s counts 6 FLOPs per multiply-add of the Dense layers and sample
(forward 2, backward 4), against the GEMM peak of the row's dtype measured here (float32 sgemm,
float64 dgemm: half its lanes): the best of a 2048² numpy matmul and of the core's own GEMM
(``densefit._core.gemm``), at the thread count of the run; the single-thread numpy peak is printed too. No result passes or fails on speed.

``--quick``: tiny sizes (hidden widths at most 64, inputs at most 32, at most ~600 rows, at most 2
epochs, one timed run) for tests and smoke runs; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
import zlib
from dataclasses import dataclass, field, replace

import numpy as np

from .. import shuffle
from . import threads_env

MSE, BCE, CCE = "mse", "binary_crossentropy", "categorical_crossentropy"
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "elu", "softplus", "leaky_relu", "identity")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad")
BATCH_SIZES = (1, 32, 256, 1024)
DTYPES = ("float32", "float64")
EXTRAS = ("batchnorm", "dropout")
STREAM_ROWS = 5_000_000
SEED = 2024

LEARNING_RATE = {"sgd": 0.05, "momentum": 0.01, "nesterov": 0.01, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3,
                 "adagrad": 0.02}
MOMENTUM = 0.9
WEIGHT_DECAY = 0.01           # AdamW, Dense kernels only (densefit's rule; the torch peer uses param groups)
DROPOUT_RATE = 0.2
BN_MOMENTUM, BN_EPSILON = 0.1, 1e-5


@dataclass(frozen=True)
class Row:
    """One row of the matrix. ``widths`` from the input to the output; the hidden layers all use
    ``activation``; the output's activation follows the loss (none, sigmoid, softmax).
    ``extras``: ``"batchnorm"`` (Dense → BatchNorm → activation in every hidden layer) and/or
    ``"dropout"`` (Dropout(0.2) after every hidden activation)."""

    name: str
    widths: tuple
    activation: str
    optimizer: str
    batch_size: int
    dtype: str = "float32"
    extras: tuple = ()
    rows: int = 20_000
    epochs: int = 2
    loss: str = BCE
    lr: float | None = None        # None: LEARNING_RATE[optimizer]

    @property
    def learning_rate(self) -> float:
        return LEARNING_RATE[self.optimizer] if self.lr is None else self.lr

    @property
    def macs_per_sample(self) -> int:
        """Multiply-adds of the Dense layers per sample (forward)."""
        return sum(a * b for a, b in zip(self.widths[:-1], self.widths[1:]))

    @property
    def flops_per_sample(self) -> int:
        """Training FLOPs per sample: 2 forward + 4 backward per multiply-add."""
        return 6 * self.macs_per_sample

    @property
    def shape(self) -> str:
        hidden = self.widths[1:-1]
        if len(hidden) > 3 and len(set(hidden)) == 1:
            return f"{self.widths[0]}-{hidden[0]}×{len(hidden)}-{self.widths[-1]}"
        return "-".join(map(str, self.widths))

    def quick(self) -> "Row":
        """Tiny sizes of the same row (for tests and smoke runs)."""
        widths = (min(self.widths[0], 32),) + tuple(min(w, 64) for w in self.widths[1:-1]) + (self.widths[-1],)
        return replace(self, widths=widths, rows=min(self.rows, max(600, 2 * self.batch_size + 37)),
                       epochs=min(self.epochs, 2))


def _deep(d, width, depth, out):
    return (d,) + (width,) * depth + (out,)


ROWS = {r.name: r for r in [
    # activations, narrow networks, batch 32
    Row("relu-narrow-b32", (16, 32, 32, 1), "relu", "sgd", 32, rows=40_000, epochs=3),
    Row("tanh-narrow-momentum", (16, 32, 32, 1), "tanh", "momentum", 32, rows=40_000, epochs=3),
    Row("sigmoid-narrow-nesterov", (16, 32, 32, 1), "sigmoid", "nesterov", 32, rows=40_000, epochs=3, lr=0.05),
    Row("softplus-rmsprop", (32, 64, 64, 1), "softplus", "rmsprop", 32, rows=40_000),
    Row("leaky-relu-adagrad", (32, 64, 64, 1), "leaky_relu", "adagrad", 32, rows=40_000),
    Row("identity-mse-f64", (16, 32, 32, 1), "identity", "sgd", 32, "float64", rows=40_000, loss=MSE, lr=0.01),
    # medium networks, batch 256
    Row("gelu-adam-b256", (32, 128, 128, 1), "gelu", "adam", 256, rows=60_000),
    Row("elu-adamw-b256", (32, 128, 128, 1), "elu", "adamw", 256, rows=60_000),
    Row("tanh-softmax-b256", (32, 128, 128, 10), "tanh", "adam", 256, rows=60_000, loss=CCE),
    # batch 1 (per-sample SGD)
    Row("relu-b1", (16, 32, 32, 1), "relu", "sgd", 1, rows=5_000, lr=0.01),
    Row("tanh-b1-f64", (16, 32, 32, 1), "tanh", "momentum", 1, "float64", rows=5_000, lr=0.001),
    Row("softmax-b1-adam", (16, 32, 5), "relu", "adam", 1, rows=5_000, loss=CCE),
    # wide networks, batch 256 and 1024
    Row("wide-relu-softmax-b256", (784, 512, 512, 10), "relu", "adam", 256, rows=20_000, epochs=1, loss=CCE),
    Row("wide-relu-b1024", (256, 1024, 1024, 10), "relu", "sgd", 1024, rows=16_384, epochs=1, loss=CCE, lr=0.1),
    Row("wide-gelu-adamw-b1024", (256, 1024, 1024, 1), "gelu", "adamw", 1024, rows=16_384, epochs=1),
    Row("wide-f64-b1024", (128, 512, 512, 10), "relu", "momentum", 1024, "float64", rows=16_384, epochs=1, loss=CCE),
    Row("sigmoid-rmsprop-b1024", (64, 256, 256, 1), "sigmoid", "rmsprop", 1024, rows=50_000, epochs=2),
    # deep networks
    Row("deep-relu-b32", _deep(32, 64, 8, 1), "relu", "momentum", 32, rows=20_000),
    Row("deep-tanh-f64-b256", _deep(32, 128, 6, 10), "tanh", "adam", 256, "float64", rows=20_000, loss=CCE),
    Row("deep-elu-adagrad-b1024", _deep(64, 256, 6, 1), "elu", "adagrad", 1024, rows=20_480, epochs=1),
    # BatchNorm and Dropout
    Row("batchnorm-relu-b256", (32, 128, 128, 1), "relu", "momentum", 256, extras=("batchnorm",), rows=60_000),
    Row("dropout-relu-softmax-b256", (64, 256, 256, 10), "relu", "adam", 256, extras=("dropout",), rows=40_000,
        loss=CCE),
    Row("bn-dropout-gelu-b32", (32, 64, 64, 1), "gelu", "sgd", 32, extras=("batchnorm", "dropout"), rows=20_000),
    Row("bn-f64-b1024", (64, 256, 256, 10), "tanh", "adamw", 1024, "float64", extras=("batchnorm",), rows=40_960,
        loss=CCE),
    # the stream: >= 5M rows, one epoch
    Row("stream-5M-b256", (10, 16, 1), "relu", "sgd", 256, rows=STREAM_ROWS, epochs=1),
]}
NAMES = tuple(ROWS)

TRAINERS = ("cpp", "numba", "numpy", "torch", "jax-jit", "jax-scan")
DEFAULT_TRAINERS = ("cpp", "numba", "torch", "jax-jit", "jax-scan")
DENSEFIT = ("cpp", "numba", "numpy")
PEERS = ("torch", "jax-jit", "jax-scan")


# ---------------------------------------------------------------------------------------------- problems
@dataclass(frozen=True, eq=False)
class Problem:
    """A row with its data and shared initial state: ``X`` ``(n, d)`` in the row's dtype,
    ``targets`` what ``fit`` gets (class labels, or ``(n, 1)`` values), ``Y`` the ``(n, 1)`` float
    targets (BCE, MSE) or integer labels (CCE) the peers use, ``init`` the initial weights in
    ``get_weights`` order, ``stats0`` the initial BatchNorm running statistics."""

    row: Row
    X: np.ndarray
    targets: np.ndarray
    init: list = field(repr=False)
    stats0: np.ndarray = field(repr=False)

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def seed(self) -> int:
        return SEED

    def __getattr__(self, name):
        return getattr(self.row, name)


def densefit_layers(row: Row):
    """The row's network as densefit layers (the peers build the same ops, see :func:`ops`)."""
    import densefit as df
    layers = []
    for width in row.widths[1:-1]:
        if "batchnorm" in row.extras:
            layers += [df.Dense(width), df.BatchNorm(BN_MOMENTUM, BN_EPSILON), df.Activation(row.activation)]
        else:
            layers.append(df.Dense(width, row.activation))
        if "dropout" in row.extras:
            layers.append(df.Dropout(DROPOUT_RATE))
    layers.append(df.Dense(row.widths[-1], {MSE: None, BCE: "sigmoid", CCE: "softmax"}[row.loss]))
    layers[0].input_dim = row.widths[0]
    return layers


def ops(row: Row) -> list[tuple]:
    """The network as a list of ops for the peers: ``("dense", n_in, n_out)``, ``("bn", C)``,
    ``("act", name)``, ``("dropout", rate, layer position)`` (the position is the dropout RNG's
    ``layer``); no output activation (the losses take logits)."""
    out, position = [], 0
    for d_in, d_out in zip(row.widths[:-2], row.widths[1:-1]):
        out.append(("dense", d_in, d_out))
        if "batchnorm" in row.extras:
            out += [("bn", d_out), ("act", row.activation)]
            position += 3
        else:
            out.append(("act", row.activation))
            position += 1
        if "dropout" in row.extras:
            out.append(("dropout", DROPOUT_RATE, position))
            position += 1
    out.append(("dense", row.widths[-2], row.widths[-1]))
    return out


def densefit_optimizer(row: Row):
    import densefit as df
    lr = row.learning_rate
    return {"sgd": lambda: df.SGD(lr), "momentum": lambda: df.SGD(lr, momentum=MOMENTUM),
            "nesterov": lambda: df.SGD(lr, momentum=MOMENTUM, nesterov=True), "adam": lambda: df.Adam(lr),
            "adamw": lambda: df.AdamW(lr, weight_decay=WEIGHT_DECAY), "rmsprop": lambda: df.RMSprop(lr),
            "adagrad": lambda: df.Adagrad(lr)}[row.optimizer]()


def make_problem(row: Row) -> Problem:
    """Data from a random teacher (seeded by the row's name) and densefit's initial weights."""
    import densefit as df
    rng = np.random.default_rng([SEED, zlib.crc32(row.name.encode())])
    d, k = row.widths[0], row.widths[-1]
    dtype = np.dtype(row.dtype)
    X = rng.standard_normal((row.rows, d), dtype=np.float32).astype(dtype, copy=False)
    W1 = rng.standard_normal((d, 16), dtype=np.float32) / np.float32(np.sqrt(d))
    hidden = np.empty((row.rows, 16), dtype=np.float32)
    for start in range(0, row.rows, 1 << 18):      # chunked: the stream row has 5M rows
        hidden[start:start + (1 << 18)] = np.tanh(X[start:start + (1 << 18)].astype(np.float32) @ W1)
    if row.loss == CCE:
        scores = hidden @ rng.standard_normal((16, k), dtype=np.float32)
        targets = np.argmax(scores + 0.3 * rng.standard_normal(scores.shape, dtype=np.float32), axis=1)
    else:
        score = hidden @ rng.standard_normal((16, k), dtype=np.float32)
        if row.loss == BCE:
            targets = (score > np.median(score, axis=0)).astype(dtype)
        else:
            targets = (score / 4 + 0.1 * rng.standard_normal(score.shape, dtype=np.float32)).astype(dtype)
    model = df.Sequential(densefit_layers(row), seed=SEED, dtype=row.dtype, backend="numpy")
    model.compile(loss=row.loss, optimizer=densefit_optimizer(row))
    return Problem(row, np.ascontiguousarray(X), targets, model.get_weights(), model.state.stats.copy())


def orders(seed: int, epoch: int, n: int) -> np.ndarray:
    """The sample order of ``epoch``: exactly what ``Sequential.fit(shuffle=True)`` visits."""
    return shuffle.permutation(seed, epoch, n)


# ---------------------------------------------------------------------------------------------- trainers
# A trainer's setup(problem) does the untimed preparation and returns ``prepare``; ``prepare()``
# (untimed) resets to the initial state and returns ``go``; ``go()`` (timed) trains all epochs and
# returns ``result``; ``result()`` (untimed) gives ``(weights, stats)`` in densefit's layout.

def _densefit(backend):
    def setup(p: Problem):
        import densefit as df
        if threads_env.configured():
            df.set_num_threads(threads_env.configured())
        model = df.Sequential(densefit_layers(p.row), seed=p.seed, dtype=p.dtype, backend=backend)

        def prepare():
            model.compile(loss=p.loss, optimizer=densefit_optimizer(p.row))   # fresh slots, step and epoch 0
            model.set_weights(p.init)
            model.state.stats[:] = p.stats0

            def go():
                model.fit(p.X, p.targets, epochs=p.epochs, batch_size=p.batch_size, verbose=0)   # shuffle=True
                return lambda: (model.get_weights(), model.state.stats.copy())
            return go
        return prepare
    return setup


_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _signed(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >> 63 else value


def _mix_python(z: int) -> int:
    mask = (1 << 64) - 1
    z = ((z ^ (z >> 30)) * _M1) & mask
    z = ((z ^ (z >> 27)) * _M2) & mask
    return z ^ (z >> 31)


def _keep_threshold(rate: float) -> int:
    """``uniform >= rate`` as an integer test on the hash's top 24 bits: ``bits >= ceil(rate · 2²⁴)``."""
    return int(np.ceil(rate * 2.0 ** 24))


def _torch_setup(p: Problem):
    import torch
    import torch.nn.functional as F
    if threads_env.configured():
        torch.set_num_threads(threads_env.configured())
    dtype = torch.float64 if p.dtype == "float64" else torch.float32
    activation = {
        "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda x: x,
        "gelu": lambda x: F.gelu(x, approximate="tanh"), "elu": F.elu, "softplus": F.softplus,
        "leaky_relu": lambda x: F.leaky_relu(x, 0.01)}[p.activation]
    M1, M2 = _signed(_M1), _signed(_M2)

    def srl(z, k):                      # logical shift right of int64 holding uint64 bits
        return (z >> k) & ((1 << (64 - k)) - 1)

    def mix(z):
        z = (z ^ srl(z, 30)) * M1       # int64 multiplication wraps like uint64's
        z = (z ^ srl(z, 27)) * M2
        return z ^ srl(z, 31)

    seed_key = _mix_python(p.seed)
    modules, linears, bns, dropouts = [], [], [], []
    for op in ops(p.row):
        if op[0] == "dense":
            m = torch.nn.Linear(op[1], op[2], dtype=dtype)
            linears.append(m)
            modules.append(m)
        elif op[0] == "bn":
            m = torch.nn.BatchNorm1d(op[1], eps=BN_EPSILON, momentum=BN_MOMENTUM, dtype=dtype)
            bns.append(m)
            modules.append(m)
        elif op[0] == "act":
            modules.append(activation)
        else:
            modules.append(("dropout", op[1], op[2]))
            dropouts.append(op)
    params = [q for m in modules if isinstance(m, torch.nn.Module) for q in m.parameters()]
    kernels = [m.weight for m in linears]
    others = [q for q in params if all(q is not k for k in kernels)]
    lr, opt = p.learning_rate, p.optimizer

    def optimizer():
        if opt in ("sgd", "momentum", "nesterov"):
            return torch.optim.SGD(params, lr=lr, momentum=0.0 if opt == "sgd" else MOMENTUM,
                                   nesterov=opt == "nesterov")
        if opt == "adam":
            return torch.optim.Adam(params, lr=lr)
        if opt == "adamw":
            return torch.optim.AdamW([{"params": kernels, "weight_decay": WEIGHT_DECAY},
                                      {"params": others, "weight_decay": 0.0}], lr=lr)
        if opt == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr, alpha=0.99, eps=1e-8)
        return torch.optim.Adagrad(params, lr=lr, eps=1e-10)

    loss_fn = {BCE: F.binary_cross_entropy_with_logits, CCE: F.cross_entropy, MSE: F.mse_loss}[p.loss]
    X = torch.from_numpy(p.X)
    T = torch.from_numpy(p.targets.astype(np.int64) if p.loss == CCE else p.targets)
    def forward(x, step):
        for m in modules:
            if isinstance(m, tuple):
                _, rate, layer = m
                key = _signed(_mix_python(_mix_python(seed_key ^ step) ^ layer))
                rows, width = x.shape
                bits = srl(mix(torch.arange(rows * width, dtype=torch.int64) ^ key), 40).view(rows, width)
                x = x * ((bits >= _keep_threshold(rate)).to(dtype) * (1.0 / (1.0 - rate)))
            else:
                x = m(x)
        return x

    weights_in_order = []                # get_weights order: W, b per Dense, γ, β per BN, as in the network
    for m in modules:
        if isinstance(m, torch.nn.Linear):
            weights_in_order += [(m.weight, True), (m.bias, False)]
        elif isinstance(m, torch.nn.BatchNorm1d):
            weights_in_order += [(m.weight, False), (m.bias, False)]

    def prepare():
        with torch.no_grad():
            for (tensor, transposed), value in zip(weights_in_order, p.init):
                tensor.copy_(torch.from_numpy(value.T.copy() if transposed else value))
            offset = 0
            for bn in bns:
                C = bn.num_features
                bn.running_mean.copy_(torch.from_numpy(p.stats0[offset:offset + C]))
                bn.running_var.copy_(torch.from_numpy(p.stats0[offset + C:offset + 2 * C]))
                bn.num_batches_tracked.zero_()
                offset += 2 * C
        optim = optimizer()

        def go():
            step = 0
            for epoch in range(p.epochs):
                order = torch.from_numpy(orders(p.seed, epoch, p.n))
                for start in range(0, p.n, p.batch_size):
                    idx = order[start:start + p.batch_size]
                    optim.zero_grad()
                    loss_fn(forward(X[idx], step), T[idx]).backward()
                    optim.step()
                    step += 1

            def result():
                weights = [(t.detach().numpy().T if tr else t.detach().numpy()).copy() for t, tr in weights_in_order]
                stats = [np.concatenate([bn.running_mean.numpy(), bn.running_var.numpy()]) for bn in bns]
                return weights, np.concatenate(stats) if stats else np.zeros(0, dtype=p.dtype)
            return result
        return go
    return prepare


_JAX = {}


def _jax():
    """JAX on the CPU with x64 enabled (float64 rows, uint64 dropout hashes)."""
    if not _JAX:
        import os
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        jnp.zeros(()).block_until_ready()
        _JAX.update(jax=jax, jnp=jnp)
    return _JAX["jax"], _JAX["jnp"]


def _jax_functions(p: Problem):
    """The jitted ``step(state, X, Y, order, start, size)`` and ``epoch(state, X, Y, order)``
    (scan over the full batches) of problem ``p``. State: ``(params, slots, stats, t)``."""
    jax, jnp = _jax()
    row, network = p.row, ops(p.row)
    dtype = jnp.dtype(p.dtype)
    act = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "identity": lambda x: x,
           "gelu": lambda x: jax.nn.gelu(x, approximate=True), "elu": jax.nn.elu, "softplus": jax.nn.softplus,
           "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.01)}[row.activation]
    seed_key = jnp.uint64(_mix_python(p.seed))
    M1, M2 = jnp.uint64(_M1), jnp.uint64(_M2)

    def mix(z):
        z = (z ^ (z >> jnp.uint64(30))) * M1
        z = (z ^ (z >> jnp.uint64(27))) * M2
        return z ^ (z >> jnp.uint64(31))

    kernel_index = []          # positions of the Dense kernels in params (AdamW decays them only)

    def forward(params, stats, x, t):
        i, s, new_stats = 0, 0, []
        for op in network:
            if op[0] == "dense":
                x = x @ params[i] + params[i + 1]
                i += 2
            elif op[0] == "bn":
                C = op[1]
                mean = jnp.mean(x, axis=0)
                centered = x - mean
                var = jnp.mean(centered * centered, axis=0)
                x = params[i] * (centered / jnp.sqrt(var + BN_EPSILON)) + params[i + 1]
                m = x.shape[0]
                unbiased = var * (m / (m - 1)) if m > 1 else var
                new_stats += [(1 - BN_MOMENTUM) * stats[s][:C] + BN_MOMENTUM * mean,
                              (1 - BN_MOMENTUM) * stats[s][C:] + BN_MOMENTUM * unbiased]
                i += 2
                s += 1
            elif op[0] == "act":
                x = act(x)
            else:
                _, rate, layer = op
                key = mix(mix(seed_key ^ t.astype(jnp.uint64)) ^ jnp.uint64(layer))
                rows, width = x.shape
                bits = mix(jnp.arange(rows * width, dtype=jnp.uint64) ^ key) >> jnp.uint64(40)
                keep = (bits >= jnp.uint64(_keep_threshold(rate))).reshape(rows, width)
                x = x * jnp.where(keep, jnp.asarray(1 / (1 - rate), dtype), jnp.asarray(0, dtype))
        stats = tuple(jnp.concatenate(new_stats[j:j + 2]) for j in range(0, len(new_stats), 2))
        return x, stats

    def mean_loss(params, stats, x, y, t):
        z, stats = forward(params, stats, x, t)
        if row.loss == MSE:
            value = jnp.mean((z - y) ** 2)
        elif row.loss == BCE:
            value = jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))
        else:
            logp = jax.nn.log_softmax(z, axis=1)
            value = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
        return value, stats

    lr, opt, count = row.learning_rate, row.optimizer, len(p.init)
    position = 0
    for op in network:
        if op[0] == "dense":
            kernel_index.append(position)
        position += 2 if op[0] in ("dense", "bn") else 0

    def update(params, slots, grads, t):
        tf = t.astype(dtype)
        if opt in ("sgd", "momentum", "nesterov"):
            if opt == "sgd":
                return tuple(q - lr * g for q, g in zip(params, grads)), slots
            # torch.optim.SGD: buf = g on the first step, then μ buf + g
            bufs = tuple(jnp.where(t == 1, g, MOMENTUM * b + g) for b, g in zip(slots, grads))
            dirs = tuple(g + MOMENTUM * b for g, b in zip(grads, bufs)) if opt == "nesterov" else bufs
            return tuple(q - lr * d for q, d in zip(params, dirs)), bufs
        if opt in ("adam", "adamw"):
            m = tuple(0.9 * m_ + 0.1 * g for m_, g in zip(slots[:count], grads))
            v = tuple(0.999 * v_ + 0.001 * g * g for v_, g in zip(slots[count:], grads))
            c1, c2 = 1 - 0.9 ** tf, 1 - 0.999 ** tf
            new = []
            for j, (q, m_, v_) in enumerate(zip(params, m, v)):
                if opt == "adamw" and j in kernel_index:
                    q = q - lr * WEIGHT_DECAY * q
                new.append(q - lr * (m_ / c1) / (jnp.sqrt(v_ / c2) + 1e-8))
            return tuple(new), m + v
        if opt == "rmsprop":
            v = tuple(0.99 * v_ + 0.01 * g * g for v_, g in zip(slots, grads))
            return tuple(q - lr * g / (jnp.sqrt(v_) + 1e-8) for q, g, v_ in zip(params, grads, v)), v
        s = tuple(s_ + g * g for s_, g in zip(slots, grads))
        return tuple(q - lr * g / (jnp.sqrt(s_) + 1e-10) for q, g, s_ in zip(params, grads, s)), s

    def train_step(state, X, Y, idx):
        params, slots, stats, t = state
        (_, stats), grads = jax.value_and_grad(mean_loss, has_aux=True)(params, stats, X[idx], Y[idx], t)
        params, slots = update(params, slots, grads, t + 1)
        return params, slots, stats, t + 1

    def step(state, X, Y, order, start, size):
        return train_step(state, X, Y, jax.lax.dynamic_slice(order, (start,), (size,)))

    def epoch(state, X, Y, order, size):
        full = order.shape[0] // size * size
        state, _ = jax.lax.scan(lambda s, idx: (train_step(s, X, Y, idx), None), state,
                                order[:full].reshape(-1, size))
        return state

    n_slots = 2 if opt in ("adam", "adamw") else 0 if opt == "sgd" else 1
    return jax.jit(step, static_argnames="size"), jax.jit(epoch, static_argnames="size"), n_slots


_JAX_FUNCTIONS = {}


def _jax_setup(scan: bool):
    def setup(p: Problem):
        jax, jnp = _jax()
        if p not in _JAX_FUNCTIONS:      # one set per problem: jax-scan reuses jax-jit's compiled last-batch step
            _JAX_FUNCTIONS.clear()
            _JAX_FUNCTIONS[p] = _jax_functions(p)
        step, epoch, n_slots = _JAX_FUNCTIONS[p]
        X = jax.device_put(p.X)
        Y = jax.device_put(p.targets.astype(np.int32) if p.loss == CCE else p.targets)
        params0 = tuple(jax.device_put(a) for a in p.init)
        slots0 = tuple(jnp.zeros_like(q) for q in params0) * n_slots
        stats0, offset = [], 0
        for op in ops(p.row):
            if op[0] == "bn":
                stats0.append(jax.device_put(p.stats0[offset:offset + 2 * op[1]]))
                offset += 2 * op[1]
        bs, n = p.batch_size, p.n
        full = n // bs * bs

        def prepare():
            state0 = (params0, slots0, tuple(stats0), jnp.zeros((), dtype=jnp.int64))

            def go():
                state = state0
                for e in range(p.epochs):
                    order = jax.device_put(orders(p.seed, e, n))
                    if scan:
                        if full:
                            state = epoch(state, X, Y, order, size=bs)
                        if full < n:
                            state = step(state, X, Y, order, full, size=n - full)
                    else:
                        for start in range(0, n, bs):
                            state = step(state, X, Y, order, start, size=min(bs, n - start))
                state = jax.block_until_ready(state)

                def result():
                    stats = [np.asarray(s) for s in state[2]]
                    return [np.asarray(q) for q in state[0]], \
                        np.concatenate(stats) if stats else np.zeros(0, dtype=p.dtype)
                return result
            return go
        return prepare
    return setup


SETUPS = {"cpp": _densefit("cpp"), "numba": _densefit("numba"), "numpy": _densefit("numpy"), "torch": _torch_setup,
          "jax-jit": _jax_setup(scan=False), "jax-scan": _jax_setup(scan=True)}


def unavailable(trainer: str) -> str | None:
    """Why ``trainer`` cannot run here, or ``None``."""
    import importlib.util
    if trainer in DENSEFIT:
        import densefit as df
        if trainer in df.available_backends():
            return None
        return f"backend {trainer} unavailable: {df.backend_info()['unavailable'].get(trainer, '?')}"
    module = "torch" if trainer == "torch" else "jax"
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed"
    if module == "jax":
        try:
            _jax()
        except Exception as exc:  # a broken jaxlib counts as missing
            return f"JAX does not start: {type(exc).__name__}: {exc}"
    return None


# ---------------------------------------------------------------------------------------------- checks
def evaluate(p: Problem, weights, stats) -> tuple[float, float | None]:
    """Loss and accuracy (``None`` for MSE) of ``weights``/``stats`` on the whole data, inference
    mode, computed by densefit's numpy backend the same way for every trainer."""
    import densefit as df
    model = df.Sequential(densefit_layers(p.row), seed=p.seed, dtype=p.dtype, backend="numpy")
    classifier = p.loss != MSE
    model.compile(loss=p.loss, optimizer="sgd", metrics=["accuracy"] if classifier else None)
    model.set_weights(weights)
    model.state.stats[:] = stats
    result = model.evaluate(p.X, p.targets)
    return result["loss"], result.get("accuracy") if classifier else None


def weight_difference(weights, reference) -> float:
    """``max |w - w_ref|`` over all final weights divided by ``max |w_ref|`` (one scale for all: a
    Dense bias before BatchNorm has a zero gradient on paper and stays at rounding noise): how far
    a trainer's trajectory ended from the reference's. Informative only, chaotic float32 rows
    drift apart; the quick test asserts it."""
    gap = max(float(np.max(np.abs(np.asarray(w, np.float64) - r), initial=0.0)) for w, r in zip(weights, reference))
    return gap / max(max(float(np.max(np.abs(r), initial=0.0)) for r in reference), 1e-30)


def tolerance(row: Row):
    """How close a trainer's final loss and accuracy must be to densefit-numpy's."""
    from .peers import LONG_FLOAT32_ADAM, SAME_TRAJECTORY, Tolerance
    if row.dtype == "float64":
        return Tolerance(1e-3, 0.5, loss_atol=1e-4)
    adaptive = row.optimizer in ("adam", "adamw", "rmsprop", "adagrad")
    long = row.batch_size == 1 or len(row.widths) > 5 or "dropout" in row.extras or "batchnorm" in row.extras
    return LONG_FLOAT32_ADAM if adaptive or long else SAME_TRAJECTORY


# ---------------------------------------------------------------------------------------------- measuring
def _seconds(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def measure_row(row: Row, trainers, repeats: int, log=None) -> dict:
    """Check, then time, every trainer on ``row``. Returns ``{"row", "reference", "trainers":
    {name: {...}}}`` where a trainer's entry has ``samples_per_s``, ``seconds`` (all timed runs),
    ``first`` (warm-up seconds), ``loss``, ``accuracy``, ``check`` — or ``skipped``."""
    p = make_problem(row)
    samples = p.n * p.epochs
    reference = reference_weights = None
    if unavailable("numpy") is None:
        reference_weights, reference_stats = SETUPS["numpy"](p)()()()
        reference = evaluate(p, reference_weights, reference_stats)
    out = {"row": row, "reference": reference, "trainers": {}}
    ready = {}
    for name in trainers:
        why = unavailable(name)
        if why:
            out["trainers"][name] = {"skipped": why}
            continue
        try:
            prepare = SETUPS[name](p)
            first, result = _seconds(prepare())
            weights, stats = result()
            loss, accuracy = evaluate(p, weights, stats)
        except Exception as exc:  # one broken trainer must not stop the matrix
            traceback.print_exc(file=sys.stderr)
            out["trainers"][name] = {"skipped": f"error: {type(exc).__name__}: {exc}"}
            continue
        if reference is None:
            check = "unchecked"
        else:
            check = tolerance(row).problem((loss, accuracy), reference) or "ok"
        out["trainers"][name] = {"first": first, "loss": loss, "accuracy": accuracy, "check": check, "seconds": [],
                                 "weight_diff": None if reference_weights is None else
                                 weight_difference(weights, reference_weights)}
        ready[name] = prepare
    for _ in range(repeats):                       # interleaved: A, B, C, A, B, C, ...
        for name, prepare in ready.items():
            go = prepare()
            seconds, _ = _seconds(go)
            out["trainers"][name]["seconds"].append(seconds)
    for name in ready:
        entry = out["trainers"][name]
        entry["median_s"] = statistics.median(entry["seconds"]) if entry["seconds"] else entry["first"]
        entry["samples_per_s"] = samples / entry["median_s"]
        entry["gflops"] = row.flops_per_sample * entry["samples_per_s"] / 1e9
        if log:
            log(f"  {name}: {si(entry['samples_per_s'])} samples/s, check {entry['check']}")
    return out


def gemm_peaks(size: int = 2048, repeats: int = 3, dtype: str = "float32") -> dict:
    """GFLOP/s of a ``size``² matmul in ``dtype``, best of ``repeats``: numpy with one thread, numpy
    with the run's threads, and the core's GEMM (``densefit._core.gemm``, kernel ``auto``) if exposed."""
    a, b = (np.random.default_rng(i).random((size, size)).astype(dtype) for i in range(2))
    flops = 2 * size ** 3

    def best(fn):
        fn()
        return flops / min(_seconds(fn)[0] for _ in range(repeats)) / 1e9

    out = {}
    try:
        import threadpoolctl
        with threadpoolctl.threadpool_limits(1):
            out["numpy_1_thread"] = best(lambda: a @ b)
    except ImportError:
        pass
    out["numpy"] = best(lambda: a @ b)
    try:
        from densefit import _core
        import densefit as df
        if threads_env.configured():
            df.set_num_threads(threads_env.configured())
        out["core_gemm"] = best(lambda: _core.gemm(a, b))
    except (ImportError, AttributeError, TypeError, RuntimeError):
        pass
    out["peak"] = max(out.values())     # the best this machine showed (a busy machine slows the threaded ones)
    return out


# ---------------------------------------------------------------------------------------------- the table
def si(value: float) -> str:
    for factor, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if value >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


HEAD = ["row", "network", "activation", "optimizer", "batch", "dtype", "extras", "rows × epochs"]
RATIO_COLUMNS = ["cpp / best peer", "numba / cpp", "cpp GFLOP/s", "% of peak", "ref loss", "max weight Δ", "check"]


def table(results, trainers, peaks: dict) -> list[str]:
    """The markdown table: one line per row, samples/s per trainer, ratios, cpp GFLOP/s (against
    ``peaks[row.dtype]``), checks."""
    head = HEAD + [f"{t} samples/s" for t in trainers] + RATIO_COLUMNS
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for result in results:
        row, entries = result["row"], result["trainers"]
        rate = {t: e["samples_per_s"] for t, e in entries.items() if "samples_per_s" in e}
        cells = [row.name, row.shape, row.activation, row.optimizer, str(row.batch_size), row.dtype,
                 "+".join(row.extras) or "—", f"{row.rows:,} × {row.epochs}"]
        cells += [si(rate[t]) if t in rate else "—" for t in trainers]
        peers = [rate[t] for t in PEERS if t in rate]
        cells.append(f"{rate['cpp'] / max(peers):.3g}×" if "cpp" in rate and peers else "")
        cells.append(f"{rate['numba'] / rate['cpp']:.3g}×" if "numba" in rate and "cpp" in rate else "")
        if "cpp" in rate:
            gflops = entries["cpp"]["gflops"]
            peak = peaks.get(row.dtype)
            cells += [f"{gflops:.3g}", f"{100 * gflops / peak:.0f}%" if peak else ""]
        else:
            cells += ["", ""]
        cells.append("" if result["reference"] is None else f"{result['reference'][0]:.5g}")
        diffs = [e["weight_diff"] for e in entries.values() if e.get("weight_diff") is not None]
        cells.append(f"{max(diffs):.1e}" if diffs else "")
        problems = [f"{t}: {e['check']}" for t, e in entries.items() if e.get("check") not in ("ok", None)]
        problems += [f"{t} skipped ({e['skipped']})" for t, e in entries.items() if "skipped" in e]
        cells.append("; ".join(problems) or "ok")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


LEGEND = ("samples/s = rows × epochs / median timed run (runs interleaved across trainers, after an untimed "
          "warm-up that is also the check run); every trainer shuffles each epoch with fit's permutation "
          "`densefit.shuffle.permutation(seed, epoch, n)`, drawn inside its timed loop; cpp / best peer = cpp samples/s over "
          "the fastest of torch eager, JAX jit step and JAX lax.scan; GFLOP/s = 6 × Dense multiply-adds per sample × "
          "samples/s; % of peak against the GEMM peak of the row's dtype above (the best of its measurements); ref loss = final "
          "loss of densefit-numpy; max weight Δ = the largest max|w - w_ref| / max|w_ref| (over all weights) of any "
          "trainer (float32 rounding differences grow along chaotic trajectories); check = final loss/accuracy "
          "(densefit-numpy evaluates every trainer's weights) against densefit's numpy backend trained the same way.")


# ---------------------------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser, prefix: bool = False) -> argparse.ArgumentParser:
    """The matrix's options. With ``prefix`` (``densefit bench``, whose report owns ``--threads``
    and ``--out``), only those that do not clash: ``--matrix``, ``--rows``, ``--trainers``,
    ``--repeats``, ``--quick``."""
    if prefix:
        parser.add_argument("--matrix", action="store_true",
                            help="run the benchmark matrix (densefit.bench.matrix) instead of the W1-W6 report")
    parser.add_argument("--rows", default=None, help=f"comma-separated matrix rows (default: all): {', '.join(NAMES)}")
    parser.add_argument("--trainers", default=",".join(DEFAULT_TRAINERS),
                        help=f"comma-separated matrix trainers among {', '.join(TRAINERS)}")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per trainer and matrix row (median)")
    parser.add_argument("--quick", action="store_true", help="tiny matrix sizes, for tests (numbers mean nothing)")
    if not prefix:
        parser.add_argument("--threads", type=int, default=None, help="threads for every library (default: theirs)")
        parser.add_argument("--out", default=None, help="also write the markdown to this file")
    return parser


def selected_rows(spec: str | None, quick: bool) -> list[Row]:
    names = [n.strip() for n in spec.split(",")] if spec else list(NAMES)
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise SystemExit(f"unknown matrix rows {unknown}; known: {', '.join(NAMES)}")
    return [ROWS[n].quick() if quick else ROWS[n] for n in names]


def run(args, command: str) -> int:
    """The matrix for parsed ``args`` (see :func:`add_arguments`); prints and returns 0."""
    threads_env.configure(args.threads)      # before torch, JAX and numba start
    trainers = [t.strip() for t in args.trainers.split(",")]
    unknown = [t for t in trainers if t not in TRAINERS]
    if unknown:
        raise SystemExit(f"unknown matrix trainers {unknown}; known: {', '.join(TRAINERS)}")
    lines, _ = markdown(selected_rows(args.rows, args.quick), trainers, 1 if args.quick else args.repeats,
                        args.threads, command, quick=args.quick)
    text = "\n".join(lines)
    print(text)
    if getattr(args, "out", None):
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


def markdown(rows, trainers, repeats, threads, command, quick=False, log=None) -> tuple[list[str], list[dict]]:
    """The matrix section's lines and the measured results (see :func:`measure_row`)."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    peaks = {dtype: gemm_peaks(512 if quick else 2048, 1 if quick else 3, dtype)
             for dtype in sorted({row.dtype for row in rows})}
    results = []
    for row in rows:
        log(f"{row.name}: {row.rows:,} rows × {row.epochs} epochs")
        results.append(measure_row(row, trainers, repeats, log))
    from .report import machine_lines

    class _Args:
        pass
    info = _Args()
    info.threads, info.scale, info.rounds = threads, "quick" if quick else 1.0, repeats
    header = [line for line in machine_lines(info, None, command) if not line.startswith("- threads")]
    header.insert(2, f"- threads: {threads or 'library defaults'}; median of {repeats} interleaved timed runs "
                     "after one warm-up (check) run per trainer")
    for k, (dtype, peak) in enumerate(peaks.items()):
        header.insert(3 + k, f"- {dtype} GEMM peak: " + ", ".join(
            f"{key.replace('_', ' ')} {v:.1f} GFLOP/s" for key, v in peak.items() if key != "peak")
            + f"; % of peak uses {peak['peak']:.1f}")
    return ["## Benchmark matrix", ""] + header + ["", LEGEND, ""] + table(results, trainers, {dtype: peak["peak"] for dtype, peak in peaks.items()}) \
        + [""], results


def parse_args(argv=None):
    return add_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0])).parse_args(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    return run(parse_args(argv), " ".join(["python -m densefit.bench.matrix", *argv]))


if __name__ == "__main__":
    sys.exit(main())
