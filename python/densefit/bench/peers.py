"""One trainer per peer, all doing the same training of a :class:`densefit.bench.workloads.Workload`.

A peer's ``setup(workload)`` does the untimed preparation (building the network, converting the
data to the peer's own arrays, pre-slicing batches) and returns ``run()``: one timed training
run from the workload's initial weights, returning the final weights ``[W0, b0, W1, b1, ...]``
(``W`` is ``(in, out)``). :func:`train` is ``setup`` + ``run`` + :func:`workloads.evaluate`.

What is the same for every peer: the data, the network, the loss, the optimizer and its
hyper-parameters, the batch size, the epochs, and the sample order: ``0..n-1``, or in a
shuffled workload (W3, W4, W6) ``fit(shuffle=True)``'s permutation of each epoch, which densefit
draws inside ``fit`` (timed) and the peers precompute in ``setup`` (:meth:`Workload.orders`,
untimed), gathering each batch's rows in the timed run as densefit does. Initial weights are
copied from a densefit model everywhere except where noted:

- scikit-learn's ``MLPClassifier`` gets them through its ``_init_coef`` hook (its SGD without
  Nesterov and with ``alpha=0`` is the same update; its Adam puts ε inside the bias
  correction, a negligible difference). ``SGDClassifier``/``SGDRegressor`` (W5, W6) take
  ``coef_init``/``intercept_init`` but update **per sample** (``batch_size`` 1, not the
  workload's); ``SGDRegressor``'s squared loss is ``½(ŷ - y)²``, so it steps half as far as
  MSE. Their results are checked one-sided (no worse than densefit's numpy backend).
  scikit-learn's ``fit`` takes no sample order. In a shuffled workload ``MLPClassifier`` trains
  one ``partial_fit`` (one epoch, unshuffled) per epoch on ``X[order]``, so it follows fit's
  orders; the per-sample ``SGDRegressor`` (W6), whose trajectory differs anyway, shuffles with
  its own generator (``shuffle=True, random_state=SEED``). (Neither of ``MLPClassifier``'s own
  choices passes its check everywhere: in order ``0..n-1`` its W4 at
  ``DENSEFIT_BENCH_SCALE=0.05`` ends 3.5 accuracy points from densefit's, with its own shuffle
  its full-size W4 loss 14% above.)
- The JAX and hand-written numba trainers write the SGD-with-momentum and Adam updates by
  hand, with torch.optim's formulas.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import numpy as np

from . import threads_env
from .workloads import BCE, CCE, MSE, SEED, Workload, batch_rows, batches, evaluate

DENSEFIT_BACKENDS = ("cpp", "numba", "numpy")
REFERENCE = "densefit-numpy"


@dataclass(frozen=True)
class Tolerance:
    """How close a peer's final loss and accuracy must be to the reference's (densefit numpy)."""

    loss_rtol: float
    accuracy_points: float
    one_sided: bool = False     # the peer may do better (more optimizer steps, e.g. per-sample SGD)
    loss_atol: float = 0.01

    def problem(self, result, reference) -> str | None:
        """``None`` if ``result = (loss, accuracy)`` is close enough to ``reference``, else why not."""
        (loss, acc), (ref_loss, ref_acc) = result, reference
        limit = self.loss_rtol * abs(ref_loss) + self.loss_atol
        bad_loss = loss - ref_loss > limit if self.one_sided else abs(loss - ref_loss) > limit
        if not np.isfinite(loss) or bad_loss:
            return f"loss {loss:.6g} vs reference {ref_loss:.6g} (allowed ±{limit:.3g}{', one-sided' if self.one_sided else ''})"
        if acc is not None and ref_acc is not None:
            gap = 100 * (ref_acc - acc) if self.one_sided else 100 * abs(acc - ref_acc)
            if gap > self.accuracy_points:
                return f"accuracy {acc:.4f} vs reference {ref_acc:.4f} (allowed {self.accuracy_points} points)"
        return None


SAME_TRAJECTORY = Tolerance(0.05, 2.0)      # same init, order and update: only float rounding differs
CLOSE_TRAJECTORY = Tolerance(0.10, 3.0)     # same init and order, slightly different formulas
PER_SAMPLE = Tolerance(0.20, 5.0, one_sided=True)
# W4 (float32 Adam, 938 steps): Adam divides by √v, so rounding differences in float32 GEMM sums
# grow along the trajectory. In float64 densefit's cpp and numpy backends end W4 equal to 1e-12;
# in float32 the trainers' final losses spread over ±7% and accuracies over ±2.2 points (measured:
# 0.514-0.557, 0.793-0.821), none of them wrong. Same trajectory, float32 chaos allowed for.
LONG_FLOAT32_ADAM = Tolerance(0.10, 3.0)


def same_trajectory(w: Workload) -> Tolerance:
    """The tolerance for trainers that follow the reference's trajectory exactly on paper."""
    return LONG_FLOAT32_ADAM if w.optimizer == "adam" and w.dtype == "float32" else SAME_TRAJECTORY


@dataclass(frozen=True)
class Peer:
    name: str
    setup: Callable[[Workload], Callable[[], list]]
    modules: tuple = ()
    tolerance: Callable[[Workload], Tolerance] = same_trajectory
    note: Callable[[Workload], str] = lambda w: ""


# ------------------------------------------------------------------------------ densefit
def _densefit_setup(backend: str):
    def setup(w: Workload):
        import densefit as df
        if threads_env.configured():
            df.set_num_threads(threads_env.configured())
        model = df.Sequential(w.densefit_layers(), seed=SEED, dtype=w.dtype, backend=backend)
        init = w.init_weights()

        def run():
            model.compile(loss=w.loss, optimizer=w.densefit_optimizer())    # fresh optimizer slots and counters
            model.set_weights(init)
            # epoch e visits permutation(SEED, e, n) when shuffled: compile restarted the epoch count
            model.fit(w.X, w.targets, epochs=w.epochs, batch_size=w.batch_size, shuffle=w.shuffle, verbose=0)
            return model.get_weights()
        return run
    return setup


def _densefit_unavailable(backend: str) -> str | None:
    try:
        import densefit as df
    except ImportError as exc:
        return f"densefit does not import: {exc}"
    if backend in df.available_backends():
        return None
    return f"backend {backend} unavailable: {df.backend_info()['unavailable'].get(backend, '?')}"


# ------------------------------------------------------------------------------ PyTorch
def _torch_setup(compiled: bool):
    def setup(w: Workload):
        import torch
        if threads_env.configured():
            torch.set_num_threads(threads_env.configured())
        dtype = torch.float64 if w.dtype == "float64" else torch.float32
        layers = []
        for i, (d_in, d_out) in enumerate(zip(w.sizes[:-1], w.sizes[1:])):
            layers.append(torch.nn.Linear(d_in, d_out, dtype=dtype))
            if i < len(w.sizes) - 2:
                layers.append(torch.nn.ReLU())
        model = torch.nn.Sequential(*layers)
        linears = [layer for layer in model if isinstance(layer, torch.nn.Linear)]
        if w.optimizer == "adam":
            optimizer = torch.optim.Adam(model.parameters(), lr=w.lr)
        else:
            optimizer = torch.optim.SGD(model.parameters(), lr=w.lr, momentum=w.momentum)
        loss_fn = {BCE: torch.nn.BCEWithLogitsLoss(), CCE: torch.nn.CrossEntropyLoss(), MSE: torch.nn.MSELoss()}[w.loss]
        X = torch.from_numpy(w.X)
        T = torch.from_numpy(w.labels if w.loss == CCE else w.Y)

        def step(xb, yb):
            optimizer.zero_grad()
            loss_fn(model(xb), yb).backward()
            optimizer.step()

        if compiled:
            step = torch.compile(step)
        slices = batches(w.n, w.batch_size)
        orders = w.orders()
        orders = [None] * w.epochs if orders is None else list(torch.from_numpy(orders))
        init = w.init_weights()

        def run():
            # Reset in place (compiled code guards on these objects): weights from init, optimizer
            # state to zero, which makes the next steps those of a fresh optimizer.
            with torch.no_grad():
                for layer, W, b in zip(linears, init[0::2], init[1::2]):
                    layer.weight.copy_(torch.from_numpy(W.T))
                    layer.bias.copy_(torch.from_numpy(b))
                for state in optimizer.state.values():
                    for value in state.values():
                        if torch.is_tensor(value):
                            value.zero_()
            for order in orders:
                for start, stop in slices:
                    rows = batch_rows(order, start, stop)
                    step(X[rows], T[rows])
            weights = []
            for layer in linears:
                weights += [layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy()]
            return weights
        return run
    return setup


@functools.lru_cache(maxsize=None)
def _torch_compile_problem() -> str | None:
    """Why ``torch.compile`` does not work here (e.g. no C++ compiler), or ``None``."""
    try:
        import torch
        torch.compile(lambda x: x * 2 + 1)(torch.ones(3))
    except Exception as exc:  # any failure of the toolchain means: skip this peer
        return f"torch.compile fails here: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


# ------------------------------------------------------------------------------ JAX
@functools.lru_cache(maxsize=None)
def _jax():
    """JAX on the CPU with float64 enabled (W6), and the jitted functions: ``step`` (one batch)
    and ``epoch`` (``lax.scan`` over stacked full batches) for epochs in order ``0..n-1``;
    ``step_at`` and ``epoch_at``, the same on the whole ``X``, ``Y`` and an epoch's order: the
    batch's positions are a ``dynamic_slice`` of the order and its rows gathered inside the
    jitted code (matrix.py's way), so the gather is in the peer's time as in densefit's.

    State is ``(params, slots, t)``: ``params`` the tuple ``(W0, b0, ...)``, ``slots`` the
    momentum buffers (SGD) or ``m`` then ``v`` (Adam), ``t`` the step count in the params' dtype.
    ``spec`` (static) is ``(loss, optimizer, lr, momentum)``; ``size`` (static) the batch's rows.
    """
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    jnp.zeros(()).block_until_ready()       # fail here, not in the middle of a benchmark, if XLA cannot start

    def forward(params, x):
        for i in range(0, len(params) - 2, 2):
            x = jax.nn.relu(x @ params[i] + params[i + 1])
        return x @ params[-2] + params[-1]

    def mean_loss(params, x, y, loss):
        z = forward(params, x)
        if loss == MSE:
            return jnp.mean((z - y) ** 2)
        if loss == BCE:
            return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))
        return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(z, axis=1), axis=1))

    def step(state, x, y, spec):
        params, slots, t = state
        loss, optimizer, lr, momentum = spec
        grads = jax.grad(mean_loss)(params, x, y, loss)
        t = t + 1
        if optimizer == "sgd":
            bufs = tuple(momentum * b + g for b, g in zip(slots, grads))
            return tuple(p - lr * b for p, b in zip(params, bufs)), bufs, t
        count = len(params)
        m = tuple(0.9 * m_ + 0.1 * g for m_, g in zip(slots[:count], grads))
        v = tuple(0.999 * v_ + 0.001 * g * g for v_, g in zip(slots[count:], grads))
        c1, c2 = 1 - 0.9 ** t, 1 - 0.999 ** t
        params = tuple(p - lr * (m_ / c1) / (jnp.sqrt(v_ / c2) + 1e-8) for p, m_, v_ in zip(params, m, v))
        return params, m + v, t

    def epoch(state, Xb, Yb, spec):
        state, _ = jax.lax.scan(lambda s, batch: (step(s, *batch, spec), None), state, (Xb, Yb))
        return state

    def step_at(state, X, Y, order, start, spec, size):
        rows = jax.lax.dynamic_slice(order, (start,), (size,))
        return step(state, X[rows], Y[rows], spec)

    def epoch_at(state, X, Y, order, spec, size):
        full = order.shape[0] // size * size
        state, _ = jax.lax.scan(lambda s, rows: (step(s, X[rows], Y[rows], spec), None), state,
                                order[:full].reshape(-1, size))
        return state

    by_order = ("spec", "size")
    return jax, SimpleNamespace(step=jax.jit(step, static_argnames="spec"),
                                epoch=jax.jit(epoch, static_argnames="spec"),
                                step_at=jax.jit(step_at, static_argnames=by_order),
                                epoch_at=jax.jit(epoch_at, static_argnames=by_order))


def _jax_setup(scan: bool):
    def setup(w: Workload):
        jax, jitted = _jax()
        spec = (w.loss, w.optimizer, w.lr, w.momentum)
        params = tuple(jax.device_put(a) for a in w.init_weights())
        slots = tuple(jax.numpy.zeros_like(p) for p in params) * (2 if w.optimizer == "adam" else 1)
        t0 = jax.numpy.zeros((), dtype=w.dtype)
        full = w.n // w.batch_size * w.batch_size if scan else 0   # rows in the full batches lax.scan takes
        steps = batches(w.n, w.batch_size)[full // w.batch_size:]   # the batches stepped one at a time
        if w.shuffle:   # the whole data and each epoch's order on the device; rows gathered in the jitted code
            X, Y = jax.device_put(w.X), jax.device_put(w.Y)
            orders = [jax.device_put(order) for order in w.orders()]

            def epoch(state, order):
                if full:
                    state = jitted.epoch_at(state, X, Y, order, spec=spec, size=w.batch_size)
                for start, stop in steps:
                    state = jitted.step_at(state, X, Y, order, start, spec=spec, size=stop - start)
                return state
        else:           # 0..n-1: the batches sliced once, the full ones stacked as (batches, batch_size, d)
            stacked = [jax.device_put(a[:full].reshape(full // w.batch_size, w.batch_size, a.shape[1]))
                       for a in (w.X, w.Y)]
            data = [(jax.device_put(w.X[start:stop]), jax.device_put(w.Y[start:stop])) for start, stop in steps]
            orders = [None] * w.epochs

            def epoch(state, order):
                if full:
                    state = jitted.epoch(state, *stacked, spec=spec)
                for x, y in data:
                    state = jitted.step(state, x, y, spec=spec)
                return state

        def run():
            state = (params, slots, t0)
            for order in orders:
                state = epoch(state, order)
            return [np.asarray(p) for p in jax.block_until_ready(state[0])]
        return run
    return setup


# ------------------------------------------------------------------------------ scikit-learn
def _sklearn_setup(w: Workload):
    import sklearn.exceptions
    init = w.init_weights()
    if len(w.sizes) > 2:
        from sklearn.neural_network import MLPClassifier

        class SeededMLP(MLPClassifier):
            """MLPClassifier that starts from given weights (its ``_init_coef`` hook, per layer)."""

            def _init_coef(self, fan_in, fan_out, dtype):
                layer = self._next_layer
                self._next_layer += 1
                return init[2 * layer].astype(dtype), init[2 * layer + 1].astype(dtype)

        solver = {"adam": dict(solver="adam", beta_1=0.9, beta_2=0.999, epsilon=1e-8),
                  "sgd": dict(solver="sgd", learning_rate="constant", momentum=w.momentum, nesterovs_momentum=False)}

        orders = w.orders()
        classes = np.arange(max(2, w.sizes[-1]))

        def fit():
            model = SeededMLP(hidden_layer_sizes=w.sizes[1:-1], activation="relu", alpha=0.0, batch_size=w.batch_size,
                              learning_rate_init=w.lr, max_iter=w.epochs, shuffle=False, tol=0.0,
                              n_iter_no_change=w.epochs + 1, random_state=0, **solver[w.optimizer])
            model._next_layer = 0
            if orders is None:
                model.fit(w.X, w.labels)
            for order in [] if orders is None else orders:     # one epoch per call, its rows gathered in order
                model.partial_fit(w.X[order], w.labels[order], classes=classes)
            return [a for pair in zip(model.coefs_, model.intercepts_) for a in pair]
    elif w.loss == BCE:
        from sklearn.linear_model import SGDClassifier

        def fit():
            model = SGDClassifier(loss="log_loss", penalty=None, learning_rate="constant", eta0=w.lr,
                                  max_iter=w.epochs, tol=None, shuffle=w.shuffle, random_state=SEED)
            model.fit(w.X, w.labels, coef_init=init[0].T, intercept_init=init[1])
            return [model.coef_.T, model.intercept_]
    else:
        from sklearn.linear_model import SGDRegressor

        def fit():
            model = SGDRegressor(loss="squared_error", penalty=None, learning_rate="constant", eta0=w.lr,
                                 max_iter=w.epochs, tol=None, shuffle=w.shuffle, random_state=SEED)
            model.fit(w.X, w.Y[:, 0], coef_init=init[0][:, 0], intercept_init=init[1])
            return [model.coef_.reshape(-1, 1), model.intercept_]

    def run():
        with warnings.catch_warnings():     # "maximum iterations reached": we ask for exactly that many
            warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
            return fit()
    return run


def _sklearn_note(w: Workload) -> str:
    if len(w.sizes) > 2:
        return "MLPClassifier" + (", a partial_fit per epoch on X[order]" if w.shuffle else "")
    kind = "SGDClassifier(log_loss)" if w.loss == BCE else "SGDRegressor"
    order = "; its own shuffle, not fit's order" if w.shuffle else ""
    return f"{kind}: per-sample SGD (batch 1), not batch {w.batch_size}{order}"


# ------------------------------------------------------------------------------ hand-written numba
def _numba_loop_setup(w: Workload):
    from . import numba_loops as nl
    init = w.init_weights()
    loss = {MSE: nl.MSE, BCE: nl.BCE, CCE: nl.CCE}[w.loss]
    orders = w.orders()
    orders = nl.in_order(w.epochs) if orders is None else orders
    if len(w.sizes) == 2:                  # linear / logistic regression: per-sample scalar loops
        y = np.ascontiguousarray(w.Y[:, 0])

        def run():
            coef, intercept = init[0][:, 0].copy(), init[1].copy()
            nl.linear_epochs(w.X, y, coef, intercept, loss, w.lr, w.batch_size, orders)
            return [coef.reshape(-1, 1), intercept]
        return run

    flat = np.concatenate([a.ravel() for a in init])
    sizes = np.array(w.sizes, dtype=np.int64)
    optimizer = nl.ADAM if w.optimizer == "adam" else nl.SGD
    use_blas = max(w.sizes) >= 256          # BLAS pays off only for wide layers (W4)

    def run():
        params = flat.copy()
        slots = np.zeros(params.size * (2 if optimizer == nl.ADAM else 1), dtype=params.dtype)
        nl.mlp_epochs(w.X, w.Y, params, slots, sizes, loss, optimizer, w.lr, w.momentum, w.batch_size, orders,
                      use_blas)
        weights, offset = [], 0
        for d_in, d_out in zip(w.sizes[:-1], w.sizes[1:]):
            weights.append(params[offset:offset + d_in * d_out].reshape(d_in, d_out))
            weights.append(params[offset + d_in * d_out:offset + d_in * d_out + d_out])
            offset += d_in * d_out + d_out
        return weights
    return run


def _numba_loop_note(w: Workload) -> str:
    if len(w.sizes) == 2:
        return "per-sample scalar loops"
    return "np.dot (BLAS) matmuls" if max(w.sizes) >= 256 else "explicit-loop matmuls"


# ------------------------------------------------------------------------------ tutorial numpy
def _numpy_tutorial_setup(w: Workload):
    from . import numpy_tutorial
    init = w.init_weights()
    orders = w.orders()

    def run():
        return numpy_tutorial.train(w.X, w.Y, [a.copy() for a in init], w.loss, w.optimizer, w.lr, w.momentum,
                                    w.batch_size, w.epochs, orders)
    return run


# ------------------------------------------------------------------------------ the registry
PEERS = {p.name: p for p in [
    *[Peer(f"densefit-{b}", _densefit_setup(b), ("densefit",)) for b in DENSEFIT_BACKENDS],
    Peer("torch", _torch_setup(compiled=False), ("torch",), note=lambda w: "eager, torch.optim"),
    Peer("torch.compile", _torch_setup(compiled=True), ("torch",), note=lambda w: "compiled step function"),
    Peer("jax-jit", _jax_setup(scan=False), ("jax",), note=lambda w: "jit step per batch"),
    Peer("jax-scan", _jax_setup(scan=True), ("jax",), note=lambda w: "lax.scan over an epoch"),
    Peer("numba-loop", _numba_loop_setup, ("numba",), note=_numba_loop_note),
    Peer("numpy-tutorial", _numpy_tutorial_setup, (), note=lambda w: "the teaching material's numpy loop"),
    Peer("sklearn", _sklearn_setup, ("sklearn",), note=_sklearn_note,
         tolerance=lambda w: CLOSE_TRAJECTORY if len(w.sizes) > 2 else PER_SAMPLE),
]}
NAMES = tuple(PEERS)


def unavailable(name: str, w: Workload | None = None) -> str | None:
    """Why peer ``name`` cannot run here, or ``None`` if it can."""
    peer = PEERS[name]
    for module in peer.modules:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    if name.startswith("densefit-"):
        return _densefit_unavailable(name.removeprefix("densefit-"))
    if name == "torch.compile":
        return _torch_compile_problem()
    if name.startswith("jax"):
        try:
            _jax()
        except Exception as exc:  # an installed but broken jaxlib counts as missing
            return f"JAX does not start: {type(exc).__name__}: {exc}"
    return None


def setup(name: str, w: Workload) -> Callable[[], list]:
    return PEERS[name].setup(w)


def train(name: str, w: Workload) -> tuple[float, float | None]:
    """Train ``w`` with peer ``name`` from the shared initial weights; ``(final loss, final
    accuracy or None)`` of the trained weights on the whole data set."""
    return evaluate(w, setup(name, w)())


def check(name: str, w: Workload, result, reference) -> str | None:
    """``None`` if peer ``name``'s ``result`` agrees with the reference's, else the discrepancy."""
    return PEERS[name].tolerance(w).problem(result, reference)
