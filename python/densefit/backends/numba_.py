"""The numba backend: the math of DESIGN.md, formula for formula the numpy reference
(:mod:`densefit.backends.numpy_`), as one small ``@njit`` function per pass, with whole epochs in
one compiled call.

Size legend: ``n`` samples, ``d`` features, ``mb`` the batch size and ``m`` the rows of the current
batch (the last one may be smaller), ``n_in``/``n_out`` op widths, ``C`` BatchNorm features, ``K``
outputs, ``P`` parameters, ``E`` epochs.

Layout: every array a pass sees is flat and row-major with its sizes passed beside it (outputs
first, then inputs, then sizes): ``x[r * n_in + c]`` is row ``r``, column ``c`` of an ``(m, n_in)``
matrix. Slicing a flat buffer costs almost nothing in numba, whereas each ``reshape`` is a C call that on
tiny networks would cost more than the math; 2-D views are made only around BLAS calls.

Memory: a kernel call allocates one workspace (the gathered batch, every op's output, dropout
scales and BatchNorm caches, two gradient buffers) and the passes work on slices of it; nothing is
allocated per batch. ``T`` is the data's dtype: scalars are cast to it where the reference casts
them, and loss, penalty and gradient-norm sums are accumulated in float64, so float32 results
match the reference.

Every jitted function is cached (``jit`` below): the compiled code lands in ``__pycache__`` (or
``NUMBA_CACHE_DIR``) and the next process loads it instead of compiling. Numba keys that cache on
this file only; the constants imported from ``densefit`` below are frozen into the compiled code,
so a change to them needs the cache cleared.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit  # without numba this raises ImportError and the dispatcher falls back

from .. import activations as A
from .. import losses as L
from .. import optimizers as O
from ..plan import (ACT, ACTIVATION, ALPHA, BATCHNORM, BN_EPSILON, BN_MOMENTUM, DENSE, DROPOUT, KIND, L1, L2,
                    LAYER, N_IN, N_OUT, PARAM_OFF, RATE, STAT_OFF, USE_BIAS, Plan, State)
from . import CORRECT, LOSS_SUM, SEEN, STEPS

# Products with at most this many multiply-adds run as loops: below it BLAS call overhead dominates.
SMALL_GEMM = 512

# Every function: cached on disk; IEEE division (x/0 is inf or nan, as in numpy, instead of
# Python's ZeroDivisionError, whose check would also keep loops from vectorizing); the GIL
# released, so other Python threads run while a kernel trains.
jit = njit(cache=True, error_model="numpy", nogil=True)

_GELU_C = math.sqrt(2 / math.pi)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


# ---------------------------------------------------------------------------------------------
# the counter-based uniform of densefit.rng (uint64 arithmetic wraps)


@jit
def mix(z):
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@jit
def stream_key(seed, step, layer):
    """``mix(mix(mix(seed) ^ step) ^ layer)``; ``seed`` is already a uint64."""
    return mix(mix(mix(seed) ^ np.uint64(step)) ^ np.uint64(layer))


# ---------------------------------------------------------------------------------------------
# small helpers


@jit
def copy(out, src):
    """``out[:] = src`` as a loop (numba's slice assignment compiles slowly)."""
    for i in range(src.size):
        out[i] = src[i]


@jit
def argmax(row):
    """Index of the first maximum, as ``numpy.argmax``."""
    best = 0
    for k in range(1, row.size):
        if row[k] > row[best]:
            best = k
    return best


@jit
def sigmoid(x):
    """``1 / (1 + exp(-x))`` without overflow, in the dtype of ``x``."""
    one = type(x)(1)
    e = np.exp(-abs(x))
    return one / (one + e) if x >= 0 else e / (one + e)


# ---------------------------------------------------------------------------------------------
# activations, elementwise


@jit
def activation_forward(out, inp, act, alpha):
    """``out = act(inp)`` elementwise."""
    T = inp.dtype.type
    a, zero, one, half = T(alpha), T(0), T(1), T(0.5)
    if act == A.IDENTITY:
        copy(out, inp)
    elif act == A.SIGMOID:
        for i in range(inp.size):
            out[i] = sigmoid(inp[i])
    elif act == A.TANH:
        for i in range(inp.size):
            out[i] = np.tanh(inp[i])
    elif act == A.RELU:
        for i in range(inp.size):
            x = inp[i]
            out[i] = zero if x < 0 else x
    elif act == A.LEAKY_RELU:
        for i in range(inp.size):
            x = inp[i]
            out[i] = x if x > 0 else x * a
    elif act == A.ELU:
        for i in range(inp.size):
            x = inp[i]
            out[i] = x if x > 0 else a * np.expm1(x)
    elif act == A.SOFTPLUS:
        for i in range(inp.size):
            x = inp[i]
            out[i] = np.log1p(np.exp(-abs(x))) + (zero if x < 0 else x)
    elif act == A.GELU:
        c, k = T(_GELU_C), T(0.044715)
        for i in range(inp.size):
            x = inp[i]
            out[i] = half * x * (one + np.tanh(c * (x + k * (x * x * x))))
    else:
        raise ValueError("activation has no standalone forward (softmax is fused with the loss)")


@jit
def activation_backward(d, inp, out, act, alpha):
    """``d *= act'(inp)`` in place; ``out = act(inp)`` serves the derivatives written in it."""
    T = inp.dtype.type
    a, zero, one, half = T(alpha), T(0), T(1), T(0.5)
    if act == A.IDENTITY:
        return
    elif act == A.SIGMOID:
        for i in range(d.size):
            y = out[i]
            d[i] = d[i] * y * (one - y)
    elif act == A.TANH:
        for i in range(d.size):
            y = out[i]
            d[i] = d[i] * (one - y * y)
    elif act == A.RELU:
        for i in range(d.size):
            if not inp[i] > 0:
                d[i] = zero
    elif act == A.LEAKY_RELU:
        for i in range(d.size):
            if not inp[i] > 0:
                d[i] = d[i] * a
    elif act == A.ELU:
        for i in range(d.size):
            if not inp[i] > 0:
                d[i] = d[i] * (out[i] + a)
    elif act == A.SOFTPLUS:
        for i in range(d.size):
            d[i] = d[i] * sigmoid(inp[i])
    elif act == A.GELU:
        c, k, k3 = T(_GELU_C), T(0.044715), T(3 * 0.044715)
        for i in range(d.size):
            x = inp[i]
            t = np.tanh(c * (x + k * (x * x * x)))
            du = c * (one + k3 * x * x)
            d[i] = d[i] * (half * (one + t) + half * x * (one - t * t) * du)
    else:
        raise ValueError("activation has no standalone derivative (softmax is fused with the loss)")


@jit
def output_activation(out, z, m, K, act):
    """``out = act(z)`` for the output activation the loss fused (``predict``); softmax per row."""
    if act != A.SOFTMAX:
        activation_forward(out, z, act, 0.0)
        return
    for r in range(m):
        row, prob = z[r * K:(r + 1) * K], out[r * K:(r + 1) * K]
        zmax = row[argmax(row)]
        total = z.dtype.type(0)
        for k in range(K):
            prob[k] = np.exp(row[k] - zmax)
            total += prob[k]
        for k in range(K):
            prob[k] = prob[k] / total


# ---------------------------------------------------------------------------------------------
# Dense: Z = X W + b


@jit
def matmul(out, a, b, m, k, n, a_transposed, b_transposed):
    """``out (m, n) = op(a) (m, k) · op(b) (k, n)`` where ``op`` transposes a stored ``(k, m)`` ``a``
    or ``(n, k)`` ``b`` when asked. BLAS, unless the product is tiny."""
    if m * k * n > SMALL_GEMM:
        C = out.reshape((m, n))
        if a_transposed:
            np.dot(a.reshape((k, m)).T, b.reshape((k, n)), C)
        elif b_transposed:
            np.dot(a.reshape((m, k)), b.reshape((n, k)).T, C)
        else:
            np.dot(a.reshape((m, k)), b.reshape((k, n)), C)
        return
    a_row, a_col = (1, m) if a_transposed else (k, 1)
    b_row, b_col = (1, k) if b_transposed else (n, 1)
    for i in range(m):
        for j in range(n):
            acc = out.dtype.type(0)
            for p in range(k):
                acc += a[i * a_row + p * a_col] * b[p * b_row + j * b_col]
            out[i * n + j] = acc


@jit
def dense_forward(out, inp, W, b, m, n_in, n_out, use_bias):
    matmul(out, inp, W, m, n_in, n_out, False, False)
    if use_bias:
        for r in range(m):
            for j in range(n_out):
                out[r * n_out + j] += b[j]


@jit
def dense_backward(dinp, dW, db, dout, inp, W, m, n_in, n_out, use_bias, need_dinp):
    """``dW = inpᵀ dout``, ``db = Σ_rows dout``, ``dinp = dout Wᵀ`` (only if ``need_dinp``)."""
    matmul(dW, inp, dout, n_in, m, n_out, True, False)
    if use_bias:
        db[:] = 0
        for r in range(m):
            for j in range(n_out):
                db[j] += dout[r * n_out + j]
    if need_dinp:
        matmul(dinp, dout, W, m, n_out, n_in, False, True)


# ---------------------------------------------------------------------------------------------
# Dropout (inverted) and BatchNorm


@jit
def dropout_forward(out, scale, inp, rate, seed, step, layer):
    """Keep element ``i = r·width + c`` iff ``uniform(seed, step, layer, i) >= rate``; ``scale``
    records ``1/(1-rate)`` or 0 per element for the backward pass."""
    T = inp.dtype.type
    kept = T(1 / (1 - rate))
    key = stream_key(seed, step, layer)
    for i in range(inp.size):
        u = np.float64(mix(np.uint64(i) ^ key) >> np.uint64(40)) * 2.0 ** -24
        scale[i] = kept if u >= rate else T(0)
        out[i] = inp[i] * scale[i]


@jit
def dropout_backward(d, scale):
    for i in range(d.size):
        d[i] = d[i] * scale[i]


@jit
def batchnorm_forward_train(out, xhat, invstd, mean, running_mean, running_var, inp, gamma, beta, momentum,
                            epsilon, m, C):
    """Normalize by the batch mean and biased variance (two passes, rows summed in order like
    numpy's axis-0 reductions); keep ``xhat`` and ``invstd`` for the backward pass (``mean`` is
    scratch) and move the running statistics toward the mean and the unbiased variance."""
    T = inp.dtype.type
    var = invstd  # the variance lives in invstd until it is inverted below
    mean[:] = 0
    var[:] = 0
    for r in range(m):
        for c in range(C):
            mean[c] += inp[r * C + c]
    for c in range(C):
        mean[c] = mean[c] / T(m)
    for r in range(m):
        for c in range(C):
            centered = inp[r * C + c] - mean[c]
            xhat[r * C + c] = centered
            var[c] += centered * centered
    mom, keep = T(momentum), T(1) - T(momentum)
    for c in range(C):
        var[c] = var[c] / T(m)
        unbiased = var[c] * T(m / (m - 1)) if m > 1 else var[c]
        running_mean[c] = keep * running_mean[c] + mom * mean[c]
        running_var[c] = keep * running_var[c] + mom * unbiased
        invstd[c] = T(1) / np.sqrt(var[c] + T(epsilon))
    for r in range(m):
        for c in range(C):
            xhat[r * C + c] = xhat[r * C + c] * invstd[c]
            out[r * C + c] = gamma[c] * xhat[r * C + c] + beta[c]


@jit
def batchnorm_forward_infer(out, inp, gamma, beta, running_mean, running_var, epsilon, m, C):
    T = inp.dtype.type
    for r in range(m):
        for c in range(C):
            xhat = (inp[r * C + c] - running_mean[c]) / np.sqrt(running_var[c] + T(epsilon))
            out[r * C + c] = gamma[c] * xhat + beta[c]


@jit
def batchnorm_backward(d, dgamma, dbeta, sum_dxhat, sum_dxhat_xhat, xhat, invstd, gamma, m, C):
    """In place ``d ← invstd/m · (m·dx̂ - Σdx̂ - x̂ Σ(dx̂ x̂))`` with ``dx̂ = d γ``; the two column
    sums are scratch of ``C`` each."""
    T = d.dtype.type
    dgamma[:] = 0
    dbeta[:] = 0
    sum_dxhat[:] = 0
    sum_dxhat_xhat[:] = 0
    for r in range(m):
        for c in range(C):
            i = r * C + c
            dxhat = d[i] * gamma[c]
            dgamma[c] += d[i] * xhat[i]
            dbeta[c] += d[i]
            sum_dxhat[c] += dxhat
            sum_dxhat_xhat[c] += dxhat * xhat[i]
    for r in range(m):
        for c in range(C):
            i = r * C + c
            dxhat = d[i] * gamma[c]
            d[i] = (invstd[c] / T(m)) * (T(m) * dxhat - sum_dxhat[c] - xhat[i] * sum_dxhat_xhat[c])


# ---------------------------------------------------------------------------------------------
# losses: value (float64 mean), count of correct predictions and the fused gradient at the logits


@jit
def loss_and_dlogits(dz, z, y, m, K, y_cols, loss):
    """Return ``(mean loss, correct)`` and fill ``dz (m, K)``. ``y`` is ``(m, y_cols)``: ``y_cols = K``,
    or 1 for class indices with categorical cross-entropy and ``K > 1``."""
    T = z.dtype.type
    total, correct = 0.0, 0
    if loss == L.MSE:
        scale = T(2 / (m * K))
        for i in range(m * K):
            diff = z[i] - y[i]
            total += np.float64(diff) * np.float64(diff)
            dz[i] = diff * scale
        return total / (m * K), correct
    if loss == L.BINARY_CROSSENTROPY:
        scale = T(1 / (m * K))
        for i in range(m * K):
            x, t = z[i], y[i]
            total += np.float64((T(0) if x < 0 else x) - x * t + np.log1p(np.exp(-abs(x))))
            correct += (x > 0) == (t > 0.5)
            dz[i] = (sigmoid(x) - t) * scale
        return total / (m * K), correct
    if loss == L.CATEGORICAL_CROSSENTROPY:
        scale = T(1 / m)
        for r in range(m):
            zr, dzr, yr = z[r * K:(r + 1) * K], dz[r * K:(r + 1) * K], y[r * y_cols:(r + 1) * y_cols]
            predicted = argmax(zr)
            zmax = zr[predicted]
            sum_e = T(0)
            for k in range(K):
                dzr[k] = np.exp(zr[k] - zmax)
                sum_e += dzr[k]
            log_sum_e = np.log(sum_e)
            if y_cols == 1 and K > 1:
                label = np.int64(yr[0])
                if label < 0 or label >= K:
                    raise ValueError("class index out of range for categorical_crossentropy")
                total -= np.float64((zr[label] - zmax) - log_sum_e)
                correct += predicted == label
                for k in range(K):
                    dzr[k] = dzr[k] / sum_e
                dzr[label] -= T(1)
                for k in range(K):
                    dzr[k] = dzr[k] * scale
            else:
                y_sum = T(0)
                for k in range(K):
                    total -= np.float64(yr[k] * ((zr[k] - zmax) - log_sum_e))
                    y_sum += yr[k]
                correct += predicted == argmax(yr)
                for k in range(K):
                    dzr[k] = ((dzr[k] / sum_e) * y_sum - yr[k]) * scale
        return total / m, correct
    raise ValueError("unknown loss code")


# ---------------------------------------------------------------------------------------------
# the optimizer step over the flat buffers: penalty, clip, update


@jit
def add_penalty_gradient(grad, params, ops, op_params):
    """``grad += l1 sign(W) + 2 l2 W`` on Dense kernels; return ``Σ l1 Σ|W| + l2 ΣW²`` (float64)."""
    T = params.dtype.type
    total = 0.0
    for i in range(ops.shape[0]):
        l1, l2 = op_params[i, L1], op_params[i, L2]
        if ops[i, KIND] != DENSE or (l1 == 0 and l2 == 0):
            continue
        start = ops[i, PARAM_OFF]
        l1_t, two_l2_t = T(l1), T(2 * l2)
        sum_abs, sum_sq = 0.0, 0.0
        for j in range(start, start + ops[i, N_IN] * ops[i, N_OUT]):
            w = params[j]
            sum_abs += abs(np.float64(w))
            sum_sq += np.float64(w) * np.float64(w)
            grad[j] += l1_t * np.sign(w) + two_l2_t * w
        total += l1 * sum_abs + l2 * sum_sq
    return total


@jit
def clip(grad, clipvalue, clipnorm):
    """Clamp to ``[-clipvalue, clipvalue]``, then scale by ``min(1, clipnorm / (‖g‖ + 1e-6))``."""
    T = grad.dtype.type
    if clipvalue > 0:
        hi = T(clipvalue)
        for j in range(grad.size):
            if grad[j] > hi:
                grad[j] = hi
            elif grad[j] < -hi:
                grad[j] = -hi
    if clipnorm > 0:
        sum_sq = 0.0
        for j in range(grad.size):
            sum_sq += np.float64(grad[j]) * np.float64(grad[j])
        scale = clipnorm / (np.sqrt(sum_sq) + 1e-6)
        if scale < 1.0:
            s = T(scale)
            for j in range(grad.size):
                grad[j] = grad[j] * s


@jit
def update(params, slots, grad, ops, optimizer, q, lr, t):
    """One optimizer step ``t`` (from 1) with learning rate ``lr``, in place."""
    T = params.dtype.type
    w, s0, s1, g = params, slots[0], slots[1], grad
    lr_t = T(lr)
    if optimizer == O.SGD_:
        mu = q[O.MOMENTUM]
        if mu == 0:
            for j in range(w.size):
                w[j] -= lr_t * g[j]
            return
        mu_t, keep_t = T(mu), T(1 - q[O.DAMPENING])
        nesterov = q[O.NESTEROV] != 0
        for j in range(w.size):
            s0[j] = g[j] if t == 1 else s0[j] * mu_t + keep_t * g[j]
            direction = g[j] + mu_t * s0[j] if nesterov else s0[j]
            w[j] -= lr_t * direction
    elif optimizer == O.ADAM or optimizer == O.ADAMW:
        b1, b2 = q[O.BETA_1], q[O.BETA_2]
        if optimizer == O.ADAMW and q[O.WEIGHT_DECAY] > 0:
            decay = T(1 - lr * q[O.WEIGHT_DECAY])
            for i in range(ops.shape[0]):
                if ops[i, KIND] == DENSE:
                    start = ops[i, PARAM_OFF]
                    for j in range(start, start + ops[i, N_IN] * ops[i, N_OUT]):
                        w[j] *= decay
        b1_t, b2_t, keep1, keep2 = T(b1), T(b2), T(1 - b1), T(1 - b2)
        step_size = T(lr / (1 - b1 ** np.float64(t)))
        bias2 = T(np.sqrt(1 - b2 ** np.float64(t)))
        eps = T(q[O.EPSILON])
        for j in range(w.size):
            s0[j] = s0[j] * b1_t + keep1 * g[j]
            s1[j] = s1[j] * b2_t + keep2 * g[j] * g[j]
            w[j] -= step_size * s0[j] / (np.sqrt(s1[j]) / bias2 + eps)
    elif optimizer == O.RMSPROP:
        rho_t, keep, eps = T(q[O.RHO]), T(1 - q[O.RHO]), T(q[O.EPSILON])
        for j in range(w.size):
            s0[j] = s0[j] * rho_t + keep * g[j] * g[j]
            w[j] -= lr_t * g[j] / (np.sqrt(s0[j]) + eps)
    elif optimizer == O.ADAGRAD:
        eps = T(q[O.EPSILON])
        for j in range(w.size):
            s0[j] += g[j] * g[j]
            w[j] -= lr_t * g[j] / (np.sqrt(s0[j]) + eps)
    else:
        raise ValueError("unknown optimizer code")


# ---------------------------------------------------------------------------------------------
# the network: workspace, forward and backward over the ops


@jit
def workspace_offsets(ops, rows):
    """Offsets into the flat workspace for batches of up to ``rows`` rows: op ``i``'s output at
    ``act_start[i]`` (``rows·n_out``) and its cache from ``cache_start[i]`` to ``cache_start[i + 1]``
    (dropout: the scale of each element; BatchNorm: ``x̂`` then ``invstd``); the last entries are
    the total sizes."""
    n_ops = ops.shape[0]
    act_start = np.zeros(n_ops + 1, dtype=np.int64)
    cache_start = np.zeros(n_ops + 1, dtype=np.int64)
    for i in range(n_ops):
        width = ops[i, N_OUT]
        act_start[i + 1] = act_start[i] + rows * width
        size = 0
        if ops[i, KIND] == DROPOUT:
            size = rows * width
        elif ops[i, KIND] == BATCHNORM:
            size = rows * width + width
        cache_start[i + 1] = cache_start[i] + size
    return act_start, cache_start


@jit
def forward(ops, op_params, params, stats, x, m, acts, act_start, caches, cache_start, scratch, training, seed,
            step):
    """Run the ops on the batch ``x (m, d)``; op ``i`` writes its output at ``acts[act_start[i]:]``.
    Returns the logits ``(m, K)``, a slice of ``acts``. In training mode dropout draws its mask and
    BatchNorm normalizes by batch statistics and updates ``stats``. ``training`` is a typed
    ``np.bool_`` at every call, not a literal, so that all kernels share one compiled forward."""
    inp = x
    for i in range(ops.shape[0]):
        kind, n_in, n_out, off = ops[i, KIND], ops[i, N_IN], ops[i, N_OUT], ops[i, PARAM_OFF]
        out = acts[act_start[i]:act_start[i] + m * n_out]
        cache = caches[cache_start[i]:cache_start[i + 1]] if kind == DROPOUT or kind == BATCHNORM else caches[:0]
        if kind == DENSE:
            W, b = params[off:off + n_in * n_out], params[off + n_in * n_out:off + n_in * n_out + n_out]
            dense_forward(out, inp, W, b, m, n_in, n_out, ops[i, USE_BIAS] != 0)
        elif kind == ACTIVATION:
            activation_forward(out, inp, ops[i, ACT], op_params[i, ALPHA])
        elif kind == DROPOUT:
            if training and op_params[i, RATE] > 0:
                dropout_forward(out, cache[:m * n_in], inp, op_params[i, RATE], seed, step, ops[i, LAYER])
            else:
                copy(out, inp)
        elif kind == BATCHNORM:
            gamma, beta = params[off:off + n_in], params[off + n_in:off + 2 * n_in]
            soff = ops[i, STAT_OFF]
            running_mean, running_var = stats[soff:soff + n_in], stats[soff + n_in:soff + 2 * n_in]
            if training:
                batchnorm_forward_train(out, cache[:m * n_in], cache[cache.size - n_in:], scratch[:n_in],
                                        running_mean, running_var, inp, gamma, beta, op_params[i, BN_MOMENTUM],
                                        op_params[i, BN_EPSILON], m, n_in)
            else:
                batchnorm_forward_infer(out, inp, gamma, beta, running_mean, running_var, op_params[i, BN_EPSILON],
                                        m, n_in)
        else:
            raise ValueError("unknown op kind")
        inp = out
    return inp


@jit
def backward(grad, ops, op_params, params, x, m, acts, act_start, caches, cache_start, scratch, d, d_next):
    """Fill ``grad (P,)`` given the gradient at the logits in ``d``; the running gradient moves to
    ``d_next`` and back at each Dense op (the other ops work in place)."""
    for i in range(ops.shape[0] - 1, -1, -1):
        kind, n_in, n_out, off = ops[i, KIND], ops[i, N_IN], ops[i, N_OUT], ops[i, PARAM_OFF]
        inp = x if i == 0 else acts[act_start[i - 1]:act_start[i - 1] + m * n_in]
        dout = d[:m * n_out]
        cache = caches[cache_start[i]:cache_start[i + 1]] if kind == DROPOUT or kind == BATCHNORM else caches[:0]
        if kind == DENSE:
            W = params[off:off + n_in * n_out]
            dW, db = grad[off:off + n_in * n_out], grad[off + n_in * n_out:off + n_in * n_out + n_out]
            dense_backward(d_next[:m * n_in], dW, db, dout, inp, W, m, n_in, n_out, ops[i, USE_BIAS] != 0, i > 0)
            d, d_next = d_next, d
        elif kind == ACTIVATION:
            out = acts[act_start[i]:act_start[i] + m * n_out]
            activation_backward(dout, inp, out, ops[i, ACT], op_params[i, ALPHA])
        elif kind == DROPOUT:
            if op_params[i, RATE] > 0:
                dropout_backward(dout, cache[:m * n_in])
        elif kind == BATCHNORM:
            batchnorm_backward(dout, grad[off:off + n_in], grad[off + n_in:off + 2 * n_in], scratch[:n_in],
                               scratch[n_in:2 * n_in], cache[:m * n_in], cache[cache.size - n_in:],
                               params[off:off + n_in], m, n_in)


@jit
def batch_loss_and_grad(grad, ops, op_params, loss, seed, params, stats, x, y, m, y_cols, acts, act_start, caches,
                        cache_start, scratch, d, d_next, step):
    """Forward + backward on one batch in training mode (running statistics updated in ``stats``):
    return ``(loss incl. penalty, correct)`` and fill ``grad``."""
    z = forward(ops, op_params, params, stats, x, m, acts, act_start, caches, cache_start, scratch,
                np.bool_(True), seed, step)
    K = ops[ops.shape[0] - 1, N_OUT]
    value, correct = loss_and_dlogits(d[:m * K], z, y, m, K, y_cols, loss)
    backward(grad, ops, op_params, params, x, m, acts, act_start, caches, cache_start, scratch, d, d_next)
    return value + add_penalty_gradient(grad, params, ops, op_params), correct


@jit
def gather_rows(out, X, rows):
    """``out (len(rows), cols)`` flat ``= X[rows]`` for ``X`` of any strides."""
    n, cols = X.shape
    for r in range(rows.size):
        row = rows[r]
        if row < 0 or row >= n:
            raise IndexError("order holds a row index outside X")
        for c in range(cols):
            out[r * cols + c] = X[row, c]


@jit
def network_workspace(ops, d, rows, dtype):
    """The workspace of a kernel call, allocated once, for batches of up to ``rows`` rows: op outputs,
    caches, the gathered batch ``x``, the gradient buffers ``d`` and ``d_next``, BatchNorm scratch."""
    act_start, cache_start = workspace_offsets(ops, rows)
    width = d
    for i in range(ops.shape[0]):
        width = max(width, ops[i, N_OUT])
    acts, caches = np.empty(act_start[-1], dtype), np.empty(cache_start[-1], dtype)
    x, dbuf = np.empty(rows * d, dtype), np.empty((2, rows * width), dtype)
    return act_start, cache_start, acts, caches, x, dbuf[0], dbuf[1], np.empty(2 * width, dtype)


# ---------------------------------------------------------------------------------------------
# the kernels: one compiled call per train_epochs / predict / loss_and_grad


@jit
def train_kernel(ops, op_params, opt_params, loss, optimizer, seed, params, slots, stats, X, y, orders, lrs,
                 batch_size, step):
    """All epochs: epoch ``e`` visits ``orders[e]`` in slices of ``batch_size`` with learning rate
    ``lrs[e]``, one optimizer step per slice, the first one numbered ``step``; returns ``(E, 4)`` stats."""
    n, y_cols = X.shape[0], y.shape[1]
    mb = min(batch_size, n)
    act_start, cache_start, acts, caches, xb, d, d_next, scratch = network_workspace(ops, X.shape[1], mb, X.dtype)
    yb, grad = np.empty(mb * y_cols, X.dtype), np.empty(params.size, X.dtype)
    out = np.zeros((lrs.size, 4))
    for e in range(lrs.size):
        for start in range(0, n, batch_size):
            rows = orders[e, start:start + batch_size]
            m = rows.size
            x, t = xb[:m * X.shape[1]], yb[:m * y_cols]
            gather_rows(x, X, rows)
            gather_rows(t, y, rows)
            value, correct = batch_loss_and_grad(grad, ops, op_params, loss, seed, params, stats, x, t, m, y_cols,
                                                 acts, act_start, caches, cache_start, scratch, d, d_next, step)
            clip(grad, opt_params[O.CLIPVALUE], opt_params[O.CLIPNORM])
            update(params, slots, grad, ops, optimizer, opt_params, lrs[e], step + 1)
            step += 1
            out[e, LOSS_SUM] += value * m
            out[e, CORRECT] += correct
            out[e, SEEN] += m
            out[e, STEPS] += 1
    return out


@jit
def predict_kernel(out, ops, op_params, output_act, params, stats, X, batch_size):
    """``out (n, K)`` flat: the outputs in inference mode, through ``output_act``."""
    n, K = X.shape[0], ops[ops.shape[0] - 1, N_OUT]
    mb = min(batch_size, n)
    act_start, cache_start, acts, caches, xb, _, _, scratch = network_workspace(ops, X.shape[1], mb, X.dtype)
    rows = np.arange(n)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        x = xb[:(stop - start) * X.shape[1]]
        gather_rows(x, X, rows[start:stop])
        z = forward(ops, op_params, params, stats, x, stop - start, acts, act_start, caches, cache_start, scratch,
                    np.bool_(False), np.uint64(0), np.int64(0))
        output_activation(out[start * K:stop * K], z, stop - start, K, output_act)


@jit
def loss_and_grad_kernel(grad, ops, op_params, loss, seed, params, stats, X, y, step):
    """The whole of ``X`` as one training batch: return the loss, fill ``grad`` (``stats`` gets updated)."""
    n, y_cols = X.shape[0], y.shape[1]
    act_start, cache_start, acts, caches, x, d, d_next, scratch = network_workspace(ops, X.shape[1], n, X.dtype)
    t, rows = np.empty(n * y_cols, X.dtype), np.arange(n)
    gather_rows(x, X, rows)
    gather_rows(t, y, rows)
    value, _ = batch_loss_and_grad(grad, ops, op_params, loss, seed, params, stats, x, t, n, y_cols, acts, act_start,
                                   caches, cache_start, scratch, d, d_next, step)
    return value


# ---------------------------------------------------------------------------------------------
# the backend interface (see densefit.backends)


def _data(plan: Plan, X, name: str) -> np.ndarray:
    """``X`` as a read-only 2-D view in the plan's dtype: not copied when it already is in that dtype,
    never written, and typed alike for numba whether the caller's array is writable or not."""
    X = np.asarray(X)
    if X.dtype != plan.dtype:
        X = X.astype(plan.dtype)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {X.shape}")
    view = X.view()
    view.flags.writeable = False
    return view


def _check_features(plan: Plan, X: np.ndarray) -> None:
    if X.shape[1] != plan.n_features:
        raise ValueError(f"X has {X.shape[1]} features, the model expects {plan.n_features}")


def _check_targets(plan: Plan, X: np.ndarray, y: np.ndarray) -> None:
    class_indices = plan.loss == L.CATEGORICAL_CROSSENTROPY and y.shape[1] == 1
    if y.shape[0] != X.shape[0] or (y.shape[1] != plan.n_outputs and not class_indices):
        hint = f" or ({X.shape[0]}, 1) class indices" if plan.loss == L.CATEGORICAL_CROSSENTROPY else ""
        raise ValueError(f"y has shape {y.shape}, expected ({X.shape[0]}, {plan.n_outputs}){hint}")


def _check_state(plan: Plan, state: State) -> None:
    """The kernels write into the state's buffers through flat views: they must be what
    :func:`densefit.plan.init_state` makes."""
    for name in ("params", "slots", "stats"):
        a = getattr(state, name)
        if a.dtype != plan.dtype or not a.flags.c_contiguous or not a.flags.writeable:
            raise TypeError(f"state.{name} must be a writable C-contiguous {plan.dtype} array")


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def _seed(plan: Plan) -> np.uint64:
    return np.uint64(plan.seed)


def train_epochs(plan: Plan, state: State, X, y, orders: np.ndarray, lrs: np.ndarray, batch_size: int) -> np.ndarray:
    X, y = _data(plan, X, "X"), _data(plan, y, "y")
    _check_features(plan, X)
    _check_targets(plan, X, y)
    _check_state(plan, state)
    _check_batch_size(batch_size)
    orders = np.ascontiguousarray(orders, dtype=np.int64)
    lrs = np.ascontiguousarray(lrs, dtype=np.float64).reshape(-1)
    if orders.shape != (lrs.size, X.shape[0]):
        raise ValueError(f"orders has shape {orders.shape}, expected ({lrs.size}, {X.shape[0]})")
    return train_kernel(plan.ops, plan.op_params, plan.opt_params, plan.loss, plan.optimizer, _seed(plan),
                        state.params, state.slots, state.stats, X, y, orders, lrs, int(batch_size), int(state.step))


def predict(plan: Plan, state: State, X, batch_size: int, logits: bool = False) -> np.ndarray:
    X = _data(plan, X, "X")
    _check_features(plan, X)
    _check_state(plan, state)
    _check_batch_size(batch_size)
    out = np.empty(X.shape[0] * plan.n_outputs, dtype=plan.dtype)
    output_act = A.IDENTITY if logits else plan.output_activation
    predict_kernel(out, plan.ops, plan.op_params, output_act, state.params, state.stats, X, int(batch_size))
    return out.reshape(X.shape[0], plan.n_outputs)


def loss_and_grad(plan: Plan, state: State, X, y):
    X, y = _data(plan, X, "X"), _data(plan, y, "y")
    _check_features(plan, X)
    _check_targets(plan, X, y)
    _check_state(plan, state)
    grad = np.empty(plan.n_params, dtype=plan.dtype)
    scratch_stats = state.stats.copy()  # the training-mode forward moves running statistics: not the state's
    value = loss_and_grad_kernel(grad, plan.ops, plan.op_params, plan.loss, _seed(plan), state.params,
                                 scratch_stats, X, y, int(state.step))
    return value, grad
