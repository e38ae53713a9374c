"""Layer specs + loss + optimizer → :class:`Plan` (immutable, plain arrays) and :class:`State`
(the mutable numbers). Every backend consumes exactly these; nothing else crosses to them.

Size legend: ``P`` trainable parameters, ``S`` BatchNorm running statistics, ``K`` outputs.

``Plan.ops`` is an int64 array, one row per op, columns named by the constants below:

=========== ========================================================================
KIND        DENSE, ACTIVATION, DROPOUT or BATCHNORM
N_IN/N_OUT  input and output widths (equal except for DENSE)
PARAM_OFF   DENSE: ``W`` (``N_IN×N_OUT`` row-major) then ``b`` (if USE_BIAS);
            BATCHNORM: ``γ`` then ``β`` (``N_IN`` each); offsets into ``State.params``
STAT_OFF    BATCHNORM: running mean then running variance, offsets into ``State.stats``
ACT         ACTIVATION: the code from :mod:`densefit.activations`
LAYER       the op's layer position in the user's model (DROPOUT: the RNG's ``layer``)
USE_BIAS    DENSE: 1 if the layer has a bias
=========== ========================================================================

``Plan.op_params`` is float64, one row per op: ``ALPHA`` (activation α), ``RATE`` (dropout),
``BN_MOMENTUM`` and ``BN_EPSILON``, ``L1`` and ``L2`` (DENSE kernel penalty).

A Dense layer with an activation becomes a DENSE op followed by an ACTIVATION op. The output
activation that the loss fuses with (sigmoid with binary cross-entropy, softmax with categorical
cross-entropy) is not an op: backends train on the logits and apply
``Plan.output_activation`` only in ``predict``.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field

import numpy as np

from . import activations as A
from . import losses as L
from . import optimizers as O
from .layers import Activation, BatchNorm, Dense, Dropout, Layer

DENSE, ACTIVATION, DROPOUT, BATCHNORM = range(4)
KIND, N_IN, N_OUT, PARAM_OFF, STAT_OFF, ACT, LAYER, USE_BIAS = range(8)
N_OP_COLUMNS = 8
ALPHA = RATE = BN_MOMENTUM = 0
BN_EPSILON, L1, L2 = 1, 2, 3
N_OP_PARAMS = 4

DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


def as_dtype(dtype) -> np.dtype:
    """``"float32"``/``"float64"`` (or the numpy types) → ``np.dtype``; anything else → TypeError."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in DTYPES.values():
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return resolved


@dataclass(frozen=True)
class WeightSpec:
    """Where one user-visible weight array lives in the flat parameter buffer, and the position
    of the layer it belongs to."""

    offset: int
    shape: tuple[int, ...]
    layer: int = 0

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def view(self, flat: np.ndarray) -> np.ndarray:
        """This weight as a view of the flat buffer ``flat`` (parameters or a gradient)."""
        return flat[self.offset:self.offset + self.size].reshape(self.shape)


@dataclass(frozen=True, eq=False)
class Plan:
    """Everything a backend needs to know about the network, loss and optimizer."""

    dtype: np.dtype
    n_features: int
    n_outputs: int
    ops: np.ndarray
    op_params: np.ndarray
    loss: int
    output_activation: int
    optimizer: int
    opt_params: np.ndarray
    seed: int  # the dropout hash's seed, the model's seed reduced mod 2**64 (a uint64)
    n_params: int
    n_stats: int
    max_width: int
    weights: tuple[WeightSpec, ...] = field(repr=False)
    # False: each batch's objective adds the penalty once (Keras, PyTorch weight decay).
    # True: it adds the penalty divided by the batch's total sample weight (the batch size when
    # unweighted), scikit-learn's ``½α‖W‖² / Σw``.
    penalty_per_weight: bool = False


@dataclass(eq=False)
class State:
    """The mutable numbers of a model: flat parameters, optimizer slots ``(2, P)``, BatchNorm
    running statistics, the optimizer step counter and the epoch counter."""

    params: np.ndarray
    slots: np.ndarray
    stats: np.ndarray
    step: int = 0
    epoch: int = 0

    def copy(self) -> "State":
        return State(self.params.copy(), self.slots.copy(), self.stats.copy(), self.step, self.epoch)


def _op(kind: int, n_in: int, n_out: int, layer: int, param_off: int = 0, stat_off: int = 0, act: int = 0,
        use_bias: int = 0, **params: float) -> tuple[list[int], list[float]]:
    row = [0.0] * N_OP_PARAMS
    names = {"alpha": ALPHA, "rate": RATE, "momentum": BN_MOMENTUM, "epsilon": BN_EPSILON, "l1": L1, "l2": L2}
    for name, value in params.items():
        row[names[name]] = value
    return [kind, n_in, n_out, param_off, stat_off, act, layer, use_bias], row


def infer_input_dim(layers: list[Layer]) -> int | None:
    first = layers[0]
    return first.input_dim if isinstance(first, Dense) else None


@dataclass
class Lowered:
    """A network's layers as op rows, with the weights and the buffer sizes they need."""

    ints: list = field(default_factory=list)
    floats: list = field(default_factory=list)
    weights: list = field(default_factory=list)
    n_params: int = 0
    n_stats: int = 0
    width: int = 0

    def add(self, kind: int, n_out: int, layer: int, **fields) -> None:
        row_ints, row_floats = _op(kind, self.width, n_out, layer, **fields)
        self.ints.append(row_ints)
        self.floats.append(row_floats)
        self.width = n_out

    def weight(self, shape: tuple, layer: int) -> None:
        self.weights.append(WeightSpec(self.n_params, shape, layer))
        self.n_params += math.prod(shape)


def _lower_dense(layer: Dense, position: int, out: Lowered) -> None:
    if position > 0 and layer.input_dim is not None and layer.input_dim != out.width:
        raise ValueError(f"layer {position} (Dense) has input_dim={layer.input_dim} but receives {out.width} features")
    reg = layer.kernel_regularizer
    n_in, offset = out.width, out.n_params
    out.weight((n_in, layer.units), position)
    if layer.use_bias:
        out.weight((layer.units,), position)
    out.add(DENSE, layer.units, position, param_off=offset, use_bias=int(layer.use_bias),
            l1=reg.l1 if reg else 0.0, l2=reg.l2 if reg else 0.0)
    if layer.activation != "identity":
        out.add(ACTIVATION, layer.units, position, act=A.CODES[layer.activation], alpha=layer.alpha)


def _lower_activation(layer: Activation, position: int, out: Lowered) -> None:
    out.add(ACTIVATION, out.width, position, act=A.CODES[layer.activation], alpha=layer.alpha)


def _lower_dropout(layer: Dropout, position: int, out: Lowered) -> None:
    out.add(DROPOUT, out.width, position, rate=layer.rate)


def _lower_batchnorm(layer: BatchNorm, position: int, out: Lowered) -> None:
    width, param_off, stat_off = out.width, out.n_params, out.n_stats
    out.weight((width,), position)  # γ
    out.weight((width,), position)  # β
    out.n_stats += 2 * width        # running mean, running variance
    out.add(BATCHNORM, width, position, param_off=param_off, stat_off=stat_off, momentum=layer.momentum,
            epsilon=layer.epsilon)


# Each layer kind's lowering into op rows: the one place build_plan learns a layer kind.
LOWERINGS = {Dense: _lower_dense, Activation: _lower_activation, Dropout: _lower_dropout, BatchNorm: _lower_batchnorm}


def lower(layers: list[Layer], n_features: int) -> Lowered:
    """The op rows, weights and buffer sizes of ``layers`` on ``n_features`` inputs."""
    out = Lowered(width=n_features)
    for position, layer in enumerate(layers):
        lowering = LOWERINGS.get(type(layer))
        if lowering is None:
            raise TypeError(f"layer {position} is a {type(layer).__name__}, not a densefit layer")
        lowering(layer, position, out)
    return out


def build_plan(layers: list[Layer], n_features: int, loss: str, optimizer: O.Optimizer, dtype, seed: int,
               penalty_per_weight: bool = False) -> Plan:
    """Compile layer specs into a :class:`Plan`; raise ``ValueError`` on an impossible network."""
    if not layers:
        raise ValueError("the model has no layers; add at least one Dense layer")
    loss_code = L.loss_code(loss)
    lowered = lower(layers, n_features)
    ints, floats, weights = lowered.ints, lowered.floats, lowered.weights
    n_params, n_stats, width = lowered.n_params, lowered.n_stats, lowered.width
    if n_params == 0:
        raise ValueError("the model has no trainable parameters; add a Dense layer")

    output_activation = _fuse_output_activation(ints, loss_code)
    del floats[len(ints):]
    for row in ints:
        if row[KIND] == ACTIVATION and row[ACT] == A.SOFTMAX:
            raise ValueError("softmax is only supported as the last activation, with loss='categorical_crossentropy'")
    widths = [n_features] + [row[N_OUT] for row in ints]
    return Plan(
        dtype=as_dtype(dtype), n_features=n_features, n_outputs=width,
        ops=np.array(ints, dtype=np.int64).reshape(-1, N_OP_COLUMNS),
        op_params=np.array(floats, dtype=np.float64).reshape(-1, N_OP_PARAMS),
        loss=loss_code, output_activation=output_activation,
        optimizer=optimizer.code, opt_params=optimizer.params(), seed=int(seed) % (1 << 64),
        n_params=n_params, n_stats=n_stats, max_width=max(widths), weights=tuple(weights),
        penalty_per_weight=bool(penalty_per_weight),
    )


def _fuse_output_activation(ints: list[list[int]], loss_code: int) -> int:
    """Remove the output activation that the loss computes from logits; return its code."""
    wanted = {L.BINARY_CROSSENTROPY: A.SIGMOID, L.CATEGORICAL_CROSSENTROPY: A.SOFTMAX}.get(loss_code)
    if wanted is None:
        return A.IDENTITY
    last = ints[-1] if ints else None
    if last is None or last[KIND] != ACTIVATION or last[ACT] != wanted:
        name = "sigmoid" if wanted == A.SIGMOID else "softmax"
        raise ValueError(f"loss={L.CANONICAL[loss_code]!r} needs a {name} output: end the model with "
                         f"Dense(..., activation={name!r}) or Activation({name!r})")
    if wanted == A.SOFTMAX and last[N_OUT] < 2:
        raise ValueError("categorical_crossentropy needs at least 2 output units")
    ints.pop()
    return wanted


def init_state(plan: Plan, layers: list[Layer], seed: int) -> State:
    """Initial parameters drawn from ``Generator(PCG64(seed))`` layer by layer (``W`` then ``b``),
    BatchNorm ``γ = 1, β = 0``, running mean 0 and variance 1, zero optimizer slots."""
    rng = np.random.Generator(np.random.PCG64(seed))
    params = np.zeros(plan.n_params, dtype=plan.dtype)
    stats = np.zeros(plan.n_stats, dtype=plan.dtype)
    for row in plan_rows_with_params(plan):
        kind, n_in, n_out, off = row[KIND], row[N_IN], row[N_OUT], row[PARAM_OFF]
        if kind == DENSE:
            layer = layers[row[LAYER]]
            params[off:off + n_in * n_out] = layer.kernel_initializer(rng, (n_in, n_out), n_in, n_out).ravel()
            if row[USE_BIAS]:
                params[off + n_in * n_out:off + n_in * n_out + n_out] = layer.bias_initializer(rng, (n_out,), n_in, n_out)
        elif kind == BATCHNORM:
            params[off:off + n_in] = 1.0
            stats[row[STAT_OFF] + n_in:row[STAT_OFF] + 2 * n_in] = 1.0
        else:
            raise ValueError(f"op kind {kind} has no parameters to initialize")
    return State(params=params, slots=np.zeros((2, plan.n_params), dtype=plan.dtype), stats=stats)


def plan_rows_with_params(plan: Plan) -> list[np.ndarray]:
    """The DENSE and BATCHNORM rows of ``plan.ops``, in order."""
    return [row for row in plan.ops if row[KIND] in (DENSE, BATCHNORM)]


def penalty(plan: Plan, params: np.ndarray) -> float:
    """``Σ_dense l1 Σ|W| + l2 Σ W²`` accumulated in float64."""
    total = 0.0
    for row, p in zip(plan.ops, plan.op_params):
        if row[KIND] == DENSE and (p[L1] or p[L2]):
            W = params[row[PARAM_OFF]:row[PARAM_OFF] + row[N_IN] * row[N_OUT]].astype(np.float64)
            total += p[L1] * np.abs(W).sum() + p[L2] * np.dot(W, W)
    return float(total)
