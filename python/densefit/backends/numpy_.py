"""The numpy backend: the math of DESIGN.md, vectorized per mini-batch. The reference the
other backends are tested against, and the fallback that works wherever numpy does.

Size legend: ``m`` batch rows, ``n_in``/``n_out`` op widths, ``K`` outputs, ``P`` parameters.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import numpy as np

from .. import activations as A
from .. import losses as L
from .. import optimizers as O
from .. import rng, shuffle
from ..plan import (ACT, ACTIVATION, ALPHA, BATCHNORM, BN_EPSILON, DENSE, DROPOUT, KIND, L1, L2, LAYER, N_IN,
                    N_OUT, PARAM_OFF, STAT_OFF, USE_BIAS, Plan, State)
from . import contract

# ---------------------------------------------------------------------------------------------
# activations: the registry's formulas (densefit.activations), applied to whole arrays


def sigmoid(x: np.ndarray) -> np.ndarray:
    return A.sigmoid(x, x.dtype.type)


def softmax(z: np.ndarray) -> np.ndarray:
    return A.softmax(z)


def activation_forward(x: np.ndarray, act: int, alpha: float) -> np.ndarray:
    if act == A.SOFTMAX:
        return A.softmax(x)
    spec = A.spec(act)
    T = x.dtype.type
    return spec.forward(x, T(alpha), T)


def activation_backward(dout: np.ndarray, x: np.ndarray, y: np.ndarray, act: int, alpha: float) -> np.ndarray:
    """``dout · act'(x)``; ``y = act(x)`` is passed so derivatives written in ``y`` reuse it."""
    spec = A.spec(act)
    if not spec.standalone:
        raise ValueError(f"activation code {act} has no standalone derivative")
    T = x.dtype.type
    return spec.backward(dout, x, y, T(alpha), T)


def output_activation(plan: Plan, z: np.ndarray) -> np.ndarray:
    return z if plan.output_activation == A.IDENTITY else activation_forward(z, plan.output_activation, 0.0)


# ---------------------------------------------------------------------------------------------
# losses: value and count of correct predictions (for many batches at once), and the gradient at the logits


def loss_and_dlogits(loss: int, z: np.ndarray, y: np.ndarray, need_grad: bool = True):
    """Return ``(mean loss (float64), correct, dz)`` for logits ``z (m, K)`` and targets ``y``.

    ``y`` is ``(m, K)``, or ``(m, 1)`` integer class indices for categorical cross-entropy.
    ``correct`` counts samples (categorical) or elements (binary); 0 for mse. ``dz`` is
    :func:`dlogits` (``None`` unless ``need_grad``).
    """
    total, correct = loss_sum_and_correct(loss, z, y)
    return total / z.shape[0], correct, (dlogits(loss, z, y) if need_grad else None)


def _is_class_indices(z: np.ndarray, y: np.ndarray) -> bool:
    return y.shape[1] == 1 and z.shape[1] > 1


def loss_sum_and_correct(loss: int, z: np.ndarray, y: np.ndarray, row_weights: np.ndarray | None = None
                         ) -> tuple[float, int]:
    """``(Σ over the m rows of the per-sample loss (float64), correct)`` for logits ``z (m, K)``
    and targets ``y`` (as :func:`loss_and_dlogits`); with ``row_weights`` (``(m,)`` float64) the
    sum is ``Σ rᵢ ℓᵢ`` (``correct`` stays a count). Row by row, so the rows of many batches can be
    given at once: the per-element terms do not depend on which rows are given together."""
    terms, correct = per_sample_loss(loss, z, y)
    if row_weights is None:
        return float(np.add.reduce(terms, dtype=np.float64)), correct
    return float(np.dot(terms.astype(np.float64), row_weights)), correct


def per_sample_loss(loss: int, z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int]:
    """``(ℓ (m,) float64, correct)``: each row's loss (mean over the K outputs for mse and binary
    cross-entropy, the cross-entropy of the row for categorical) and the count of correct predictions."""
    spec, K, T = L.spec(loss), z.shape[1], z.dtype.type
    if spec.code == L.CATEGORICAL_CROSSENTROPY:
        shifted = z - z.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        predicted = z.argmax(axis=1)
        if _is_class_indices(z, y):
            labels = y[:, 0].astype(np.int64)
            return -logp[np.arange(z.shape[0]), labels].astype(np.float64), int(np.count_nonzero(predicted == labels))
        return (-np.add.reduce(y * logp, axis=1, dtype=np.float64),
                int(np.count_nonzero(predicted == y.argmax(axis=1))))
    correct = int(np.count_nonzero(spec.hit(z, y, T))) if spec.hit is not None else 0
    return np.add.reduce(spec.term(z, y, T), axis=1, dtype=np.float64) / K, correct


def dlogits(loss: int, z: np.ndarray, y: np.ndarray, row_scale: np.ndarray | None = None) -> np.ndarray:
    """``dz (m, K)``: the gradient of the batch's mean loss with respect to the logits ``z``; with
    ``row_scale`` (``(m,)`` in z's dtype, ``wᵢ / Σw``) that of ``Σ rᵢ ℓᵢ`` instead."""
    m, K = z.shape
    T = z.dtype.type
    r = T(1 / m) if row_scale is None else row_scale[:, None]
    spec = L.spec(loss)
    if spec.code != L.CATEGORICAL_CROSSENTROPY:
        return spec.dz(z, y, K, T) * r
    e = np.exp(z - z.max(axis=1, keepdims=True))
    sum_e = e.sum(axis=1, keepdims=True)
    if _is_class_indices(z, y):
        dz = e / sum_e
        dz[np.arange(m), y[:, 0].astype(np.int64)] -= 1
        return dz * r
    dz = (e / sum_e) * y.sum(axis=1, keepdims=True) - y
    return dz * r


def batch_weighting(plan: Plan, w: np.ndarray | None, m: int, dtype) -> tuple[np.ndarray | None, float]:
    """``(row_scale, penalty_scale)`` of a batch of ``m`` rows with weights ``w`` (or ``None``):
    ``row_scale = w / Σw`` in ``dtype`` (``None`` without weights: ``1/m``), ``penalty_scale`` 1, or
    ``1 / Σw`` when ``plan.penalty_per_weight``; both 0 for a batch whose weights sum to 0."""
    if w is None:
        return None, (1.0 / m if plan.penalty_per_weight else 1.0)
    total = float(np.add.reduce(w, dtype=np.float64))
    if total == 0.0:
        return np.zeros(m, dtype=dtype), 0.0 if plan.penalty_per_weight else 1.0
    return (w / total).astype(dtype), (1.0 / total if plan.penalty_per_weight else 1.0)


# ---------------------------------------------------------------------------------------------
# forward and backward over the ops


class _Op(NamedTuple):
    """One row of the plan's op table (and its op_params) as Python numbers: a step reads them
    dozens of times, and indexing numpy rows costs more than a small layer's arithmetic."""

    kind: int
    n_in: int
    n_out: int
    off: int
    stat_off: int
    act: int
    layer: int
    use_bias: bool
    p0: float   # ALPHA / RATE / BN_MOMENTUM
    eps: float  # BN_EPSILON
    l1: float
    l2: float


_op_lists: "weakref.WeakKeyDictionary[Plan, list[_Op]]" = weakref.WeakKeyDictionary()


def _ops(plan: Plan) -> list[_Op]:
    ops = _op_lists.get(plan)
    if ops is None:
        ops = _op_lists[plan] = [
            _Op(int(r[KIND]), int(r[N_IN]), int(r[N_OUT]), int(r[PARAM_OFF]), int(r[STAT_OFF]), int(r[ACT]),
                int(r[LAYER]), bool(r[USE_BIAS]), float(p[ALPHA]), float(p[BN_EPSILON]), float(p[L1]), float(p[L2]))
            for r, p in zip(plan.ops, plan.op_params)]
    return ops


def _dense_views(op: _Op, params):
    end = op.off + op.n_in * op.n_out
    W = params[op.off:end].reshape(op.n_in, op.n_out)
    b = params[end:end + op.n_out] if op.use_bias else None
    return W, b


def forward(plan: Plan, state: State, X: np.ndarray, training: bool, update_stats: bool = True, step: int = 0):
    """Run the ops on batch ``X``; return the list of op inputs/outputs and per-op caches.

    ``acts[i]`` is the input of op ``i`` and ``acts[i + 1]`` its output (the logits at the end).
    """
    params, stats = state.params, state.stats
    acts, caches = [X], []
    for op in _ops(plan):
        x, cache = acts[-1], None
        T = x.dtype.type
        kind = op.kind
        if kind == DENSE:
            W, b = _dense_views(op, params)
            out = x @ W
            if b is not None:
                out += b
        elif kind == ACTIVATION:
            out = activation_forward(x, op.act, op.p0)
        elif kind == DROPOUT:
            rate = op.p0
            if training and rate > 0:
                m, width = x.shape
                keep = rng.uniform(plan.seed, step, op.layer, np.arange(m * width)).reshape(m, width) >= rate
                cache = np.where(keep, T(1 / (1 - rate)), T(0))
                out = x * cache
            else:
                out = x
        elif kind == BATCHNORM:
            C, off, soff = op.n_in, op.off, op.stat_off
            gamma, beta = params[off:off + C], params[off + C:off + 2 * C]
            running_mean, running_var = stats[soff:soff + C], stats[soff + C:soff + 2 * C]
            if training:
                m = x.shape[0]
                mean = x.mean(axis=0)
                centered = x - mean
                var = (centered * centered).mean(axis=0)
                invstd = T(1) / np.sqrt(var + T(op.eps))
                xhat = centered * invstd
                cache = (xhat, invstd)
                if update_stats:
                    mom = T(op.p0)
                    unbiased = var * T(m / (m - 1)) if m > 1 else var
                    running_mean[:] = (1 - mom) * running_mean + mom * mean
                    running_var[:] = (1 - mom) * running_var + mom * unbiased
            else:
                xhat = (x - running_mean) / np.sqrt(running_var + T(op.eps))
            out = gamma * xhat + beta
        else:
            raise ValueError(f"unknown op kind {kind}")
        acts.append(out)
        caches.append(cache)
    return acts, caches


def backward(plan: Plan, params: np.ndarray, acts, caches, dz: np.ndarray, grad: np.ndarray) -> None:
    """Fill ``grad`` (shape ``(P,)``) with the gradient of the batch loss, given ``dz`` at the logits."""
    d = dz
    ops = _ops(plan)
    for i in range(len(ops) - 1, -1, -1):
        op = ops[i]
        x, y, kind = acts[i], acts[i + 1], op.kind
        if kind == DENSE:
            off, n_in, n_out = op.off, op.n_in, op.n_out
            W, _ = _dense_views(op, params)
            np.matmul(x.T, d, out=grad[off:off + n_in * n_out].reshape(n_in, n_out))  # straight into grad
            if op.use_bias:
                np.add.reduce(d, axis=0, out=grad[off + n_in * n_out:off + n_in * n_out + n_out])
            if i > 0:
                d = d @ W.T
        elif kind == ACTIVATION:
            d = activation_backward(d, x, y, op.act, op.p0)
        elif kind == DROPOUT:
            if caches[i] is not None:
                d = d * caches[i]
        elif kind == BATCHNORM:
            C, off = op.n_in, op.off
            xhat, invstd = caches[i]
            gamma = params[off:off + C]
            grad[off:off + C] = (d * xhat).sum(axis=0)
            grad[off + C:off + 2 * C] = d.sum(axis=0)
            m = x.shape[0]
            dxhat = d * gamma
            d = (invstd / m) * (m * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))


def add_penalty_gradient(plan: Plan, params: np.ndarray, grad: np.ndarray, scale: float = 1.0) -> float:
    """``grad += c (l1 sign(W) + 2 l2 W)`` on Dense kernels; return the penalty ``c (l1 Σ|W| + l2 ΣW²)``
    (``c`` = ``scale``, see :func:`batch_weighting`)."""
    total = 0.0
    for op in _ops(plan):
        if op.kind != DENSE or not (op.l1 or op.l2):
            continue
        s = slice(op.off, op.off + op.n_in * op.n_out)
        W, T = params[s], params.dtype.type
        l1, l2 = op.l1 * scale, op.l2 * scale
        total += l1 * np.sum(np.abs(W), dtype=np.float64) + l2 * np.sum(np.square(W, dtype=np.float64))
        grad[s] += T(l1) * np.sign(W) + T(2 * l2) * W
    return float(total)


# ---------------------------------------------------------------------------------------------
# the optimizer step: clip, then update, over the flat buffers


def clip(plan: Plan, grad: np.ndarray) -> None:
    """Clip in place: by value, then by global norm (``min(1, c / (‖g‖ + 1e-6))``)."""
    clipvalue, clipnorm = plan.opt_params[O.CLIPVALUE], plan.opt_params[O.CLIPNORM]
    if clipvalue > 0:
        np.clip(grad, -clipvalue, clipvalue, out=grad)
    if clipnorm > 0:
        norm = np.sqrt(np.sum(np.square(grad, dtype=np.float64)))
        scale = min(1.0, clipnorm / (norm + 1e-6))
        if scale < 1.0:
            grad *= grad.dtype.type(scale)


def decay_mask(plan: Plan) -> np.ndarray:
    """1 on Dense kernels, 0 elsewhere: where AdamW's decoupled weight decay applies."""
    mask = np.zeros(plan.n_params, dtype=bool)
    for row in plan.ops:
        if row[KIND] == DENSE:
            mask[row[PARAM_OFF]:row[PARAM_OFF] + row[N_IN] * row[N_OUT]] = True
    return mask


# In-place forms of the optimizers' rules (densefit.optimizers), with the rule's coefficients: the
# rule applied to whole arrays makes a temporary per operation, which made a step of Adam on 669 k
# weights 1.5x slower. Each computes the rule's operations in the rule's order, so it gives the
# rule's bits (tests/test_optimizers.py checks every one); an optimizer without one here runs its rule.


def _sgd_in_place(w, s0, s1, g, c):
    lr, mu, keep, momentum, first, nesterov = c
    direction = g
    if momentum:
        if first:
            s0[:] = g
        else:
            s0 *= mu
            s0 += keep * g
        direction = g + mu * s0 if nesterov else s0
    w -= lr * direction


def _adam_in_place(w, s0, s1, g, c):
    b1, b2, keep1, keep2, step_size, bias2, eps = c
    tmp = np.multiply(keep1, g)  # two scratch arrays instead of a fresh temporary per operation
    s0 *= b1
    s0 += tmp
    np.multiply(keep2, g, out=tmp)
    tmp *= g
    s1 *= b2
    s1 += tmp
    denom = np.sqrt(s1)
    denom /= bias2
    denom += eps
    np.multiply(step_size, s0, out=tmp)
    tmp /= denom
    w -= tmp


def _rmsprop_in_place(w, s0, s1, g, c):
    lr, rho, keep, eps = c
    s0 *= rho
    s0 += keep * g * g
    w -= lr * g / (np.sqrt(s0) + eps)


def _adagrad_in_place(w, s0, s1, g, c):
    lr, eps = c
    s0 += g * g
    w -= lr * g / (np.sqrt(s0) + eps)


IN_PLACE = {O.SGD_: _sgd_in_place, O.ADAM: _adam_in_place, O.ADAMW: _adam_in_place, O.RMSPROP: _rmsprop_in_place,
            O.ADAGRAD: _adagrad_in_place}


def update(plan: Plan, state: State, grad: np.ndarray, lr: float, t: int) -> None:
    """One optimizer step ``t`` (from 1) with learning rate ``lr``, in place on ``state``: the
    optimizer's rule (densefit.optimizers), after AdamW's decay."""
    opt = O.BY_CODE.get(int(plan.optimizer))
    if opt is None:
        raise ValueError(f"unknown optimizer code {plan.optimizer}")
    w, s0, s1, q = state.params, state.slots[0], state.slots[1], plan.opt_params
    T = w.dtype.type
    if opt.decays and q[O.WEIGHT_DECAY] > 0:
        w[decay_mask(plan)] *= T(O.decay_factor(q, lr))
    c = opt.coefficients(q, lr, t, T)
    if opt.code in IN_PLACE:
        IN_PLACE[opt.code](w, s0, s1, grad, c)
        return
    new = opt.rule(w, s0, s1, grad, c)
    for buffer, value in zip((w, s0, s1)[:1 + opt.slots], new):
        buffer[...] = value


# ---------------------------------------------------------------------------------------------
# the backend interface


def batch_loss_and_grad(plan: Plan, state: State, X: np.ndarray, y: np.ndarray, step: int, update_stats: bool,
                        sample_weight: np.ndarray | None = None):
    """Forward + backward on one batch in training mode: ``(loss incl. penalty, correct, grad)``."""
    acts, caches = forward(plan, state, X, training=True, update_stats=update_stats, step=step)
    z = acts[-1]
    row_scale, penalty_scale = batch_weighting(plan, sample_weight, z.shape[0], plan.dtype)
    terms, correct = per_sample_loss(plan.loss, z, y)
    value = float(terms.mean()) if row_scale is None else float(np.dot(terms, row_scale.astype(np.float64)))
    grad = np.empty(plan.n_params, dtype=plan.dtype)
    backward(plan, state.params, acts, caches, dlogits(plan.loss, z, y, row_scale), grad)
    return value + add_penalty_gradient(plan, state.params, grad, penalty_scale), correct, grad


# Each epoch's order is computed here from a Shuffle spec (densefit.shuffle.permutation).
SHUFFLES = True
LIMITS_BLAS_THREADS = True  # the dispatcher runs this module's calls with BLAS on at most densefit's threads (see there)

# Rows of logits kept for the loss (see train_epochs): 16384 rows of K outputs, 64 KB per output in
# float32 (or one batch, if larger).
LOSS_ROWS = 1 << 14


def train_epochs(plan: Plan, state: State, X, y, orders: np.ndarray | shuffle.Shuffle | None, lrs: np.ndarray,
                 batch_size: int, sample_weight: np.ndarray | None = None,
                 progress: np.ndarray | None = None, cancel: np.ndarray | None = None) -> np.ndarray:
    """The loss and the correct count of the epoch's statistics are computed from the logits, which
    each step keeps (in ``logits``, a buffer of :data:`LOSS_ROWS` rows) for when that buffer is full
    or the epoch ends: a step then only computes the gradient at the logits, and the loss of the rows
    of many batches is computed with one call per operation instead of one per batch (on small
    batches each numpy call costs more than its arithmetic). The rows kept are consecutive in the
    epoch's order, and the logits are those of the parameters at the step, as if computed then."""
    X, y, orders, lrs, batch_size, sample_weight = contract.training(plan, state, X, y, orders, lrs, batch_size,
                                                                    sample_weight)
    n = X.shape[0]
    out = np.zeros((len(lrs), 4))
    step = state.step
    identity = np.arange(n) if orders is not None else None  # only to recognise an order that is 0..n-1
    spec = orders if isinstance(orders, shuffle.Shuffle) else None
    logits = np.empty((max(LOSS_ROWS, min(batch_size, n)), plan.n_outputs), dtype=plan.dtype)
    # with weights, each kept row's factor in LOSS_SUM: m · wᵢ / Σ_batch w
    factors = None if sample_weight is None else np.empty(logits.shape[0])
    grad = np.empty(plan.n_params, dtype=plan.dtype)
    for e, lr in enumerate(lrs):
        saved = state.copy() if cancel is not None else None  # to undo this epoch if cancelled
        if spec is not None:
            order = shuffle.permutation(spec.seed, spec.first_epoch + e, n)
        else:
            order = None if orders is None else orders[e]
        in_order = order is None or np.array_equal(order, identity)  # then batches are slices: no gathers
        loss_sum, right, steps = 0.0, 0, 0
        kept_from, kept = 0, 0  # logits[:kept] are those of the rows at kept_from.. in the epoch's order

        def flush():
            rows = slice(kept_from, kept_from + kept)
            return loss_sum_and_correct(plan.loss, logits[:kept], y[rows] if in_order else y[order[rows]],
                                        None if factors is None else factors[:kept])

        for start in range(0, n, batch_size):
            if saved is not None and cancel[0]:
                state.params[:], state.slots[:], state.stats[:] = saved.params, saved.slots, saved.stats
                return out[:e]
            if in_order:
                rows = slice(start, start + batch_size)
            else:
                rows = order[start:start + batch_size]
            xb, yb = np.ascontiguousarray(X[rows]), y[rows]  # contiguous: the same bits from any layout (see predict)
            wb = None if sample_weight is None else sample_weight[rows]
            m = xb.shape[0]
            acts, caches = forward(plan, state, xb, training=True, step=step)
            z = acts[-1]
            row_scale, penalty_scale = batch_weighting(plan, wb, m, plan.dtype)
            backward(plan, state.params, acts, caches, dlogits(plan.loss, z, yb, row_scale), grad)  # fills all of grad
            loss_sum += add_penalty_gradient(plan, state.params, grad, penalty_scale) * m
            if kept + m > logits.shape[0]:
                total, correct = flush()
                loss_sum, right, kept_from, kept = loss_sum + total, right + correct, start, 0
            logits[kept:kept + m] = z
            if factors is not None:
                factors[kept:kept + m] = m * row_scale.astype(np.float64)
            kept += m
            clip(plan, grad)
            update(plan, state, grad, float(lr), step + 1)
            step += 1
            steps += 1
            if progress is not None:  # rows trained so far in this call, for a polled progress bar
                progress[0] = e * n + start + m
        total, correct = flush()
        out[e] = (loss_sum + total, right + correct, n, steps)
    return out


def predict(plan: Plan, state: State, X, batch_size: int, logits: bool = False) -> np.ndarray:
    X, batch_size = contract.prediction(plan, state, X, batch_size)
    out = np.empty((X.shape[0], plan.n_outputs), dtype=plan.dtype)
    for start in range(0, X.shape[0], batch_size):
        # a contiguous batch: BLAS rounds strided operands differently, and every layout gives the same bits
        z = forward(plan, state, np.ascontiguousarray(X[start:start + batch_size]), training=False)[0][-1]
        out[start:start + batch_size] = z if logits else output_activation(plan, z)
    return out


def loss_and_grad(plan: Plan, state: State, X, y, sample_weight: np.ndarray | None = None):
    X, y, sample_weight = contract.gradient(plan, state, X, y, sample_weight)
    value, _, grad = batch_loss_and_grad(plan, state, X, y, state.step, update_stats=False,
                                         sample_weight=sample_weight)
    return value, grad
