"""The "tutorial" peer: training loops written by hand with numba, the way a careful tutorial
would, for the networks of the benchmark workloads. Not part of densefit.

- :func:`mlp_epochs`: an MLP with relu hidden layers (W1–W4). Parameters, gradients and
  activations each live in one flat buffer (llm.c style); matrix products are explicit loops
  (over flat offsets for tiny networks, over 2-D views otherwise), or ``np.dot`` (BLAS) when
  ``use_blas`` (W4's 784-256-256-10).
- :func:`linear_epochs`: linear or logistic regression (W5, W6) as per-sample scalar loops
  accumulating the batch gradient.

Both train ``len(orders)`` epochs, epoch ``e`` visiting the rows in the order ``orders[e]``
(``orders``: ``(epochs, n)`` int64, a shuffled workload's precomputed permutations), each
batch's rows read through the order inside the loop (the MLP's 2-D views path gathers them into
a batch buffer); ``orders`` of shape ``(epochs, 0)`` (:func:`in_order`) means ``0..n-1``, the
rows read in place.

Size legend: ``m`` rows of the batch, ``n`` rows of X, ``d`` features, ``K`` outputs.
Losses are means over the batch (MSE also over outputs); gradients are taken w.r.t. the
logits in the fused form. Updates follow torch.optim (SGD with momentum, Adam).
"""

import numpy as np
from numba import njit

MSE, BCE, CCE = 0, 1, 2
SGD, ADAM = 0, 1


def in_order(epochs: int) -> np.ndarray:
    """The ``orders`` argument for ``epochs`` epochs in the order ``0..n-1``."""
    return np.empty((epochs, 0), dtype=np.int64)


@njit
def _row(order, k):
    """The row at position ``k`` of an epoch: ``order[k]``, or ``k`` if the epoch has no order."""
    return order[k] if order.size else k


@njit
def _matmul(out, a, b, use_blas):
    """out = a · b (a, b may be transposed views): np.dot, or explicit loops along rows of b."""
    if use_blas:
        out[:, :] = np.dot(a, b)
        return
    m, k = a.shape
    n = b.shape[1]
    for i in range(m):
        for j in range(n):
            out[i, j] = 0.0
        for p in range(k):
            aip = a[i, p]
            for j in range(n):
                out[i, j] += aip * b[p, j]


@njit
def _loss_grad(dz, z, zo, Y, order, start, m, loss):
    """dz[:m·K] = d(mean loss)/dz for the batch of logits z[zo:zo + m·K] (flat, row-major) and
    the targets of positions start..start + m of the epoch's order; returns the summed (not
    mean) loss of the batch."""
    K = Y.shape[1]
    total = 0.0
    for i in range(m):
        r, y = zo + i * K, _row(order, start + i)
        if loss == CCE:
            zmax = z[r]
            for j in range(K):
                zmax = max(zmax, z[r + j])
            s = 0.0
            for j in range(K):
                dz[i * K + j] = np.exp(z[r + j] - zmax)
                s += dz[i * K + j]
            for j in range(K):
                total -= Y[y, j] * (z[r + j] - zmax - np.log(s))
                dz[i * K + j] = (dz[i * K + j] / s - Y[y, j]) / m
        else:
            for j in range(K):
                zij, yij = z[r + j], Y[y, j]
                if loss == BCE:
                    total += (max(zij, 0.0) - zij * yij + np.log1p(np.exp(-abs(zij)))) / K
                    dz[i * K + j] = (1.0 / (1.0 + np.exp(-zij)) - yij) / (m * K)
                else:
                    total += (zij - yij) ** 2 / K
                    dz[i * K + j] = 2.0 * (zij - yij) / (m * K)
    return total


@njit
def _update(params, grads, slots, optimizer, lr, momentum, t):
    """One pass over the flat buffers. SGD: buf = μ·buf + g, w -= lr·buf. Adam (β1 .9, β2 .999,
    ε 1e-8): slots hold m then v."""
    P = params.size
    if optimizer == SGD:
        for i in range(P):
            slots[i] = momentum * slots[i] + grads[i]
            params[i] -= lr * slots[i]
    else:
        c1, c2 = 1.0 - 0.9 ** t, 1.0 - 0.999 ** t
        for i in range(P):
            g = grads[i]
            slots[i] = 0.9 * slots[i] + 0.1 * g
            slots[P + i] = 0.999 * slots[P + i] + 0.001 * g * g
            params[i] -= lr * (slots[i] / c1) / (np.sqrt(slots[P + i] / c2) + 1e-8)


def mlp_epochs(X, Y, params, slots, sizes, loss, optimizer, lr, momentum, batch_size, orders, use_blas):
    """Train in place for ``len(orders)`` epochs, each in its order (see the module docstring);
    returns the last epoch's mean loss.

    ``params``: flat ``W0, b0, W1, b1, ...`` (``W`` row-major ``in×out``); ``slots``: zeros of
    ``params.size`` (SGD) or ``2·params.size`` (Adam); ``sizes``: widths from input to output.
    Tiny networks (all widths < 16: W1, W2) run on flat offsets with no array views inside a
    step (each view costs numba a reference count and a struct, more than the arithmetic of a
    tiny layer: W1 0.9 -> 4.1 M samples/s). Wider ones use 2-D views, whose separate arrays let
    LLVM vectorize the loops (one flat buffer read and written by the same loop does not), with
    matrix products as explicit loops, or ``np.dot`` when ``use_blas``.
    """
    if max(sizes) < 16 and not use_blas:
        return _mlp_epochs_flat(X, Y, params, slots, sizes, loss, optimizer, lr, momentum, batch_size, orders)
    return _mlp_epochs_views(X, Y, params, slots, sizes, loss, optimizer, lr, momentum, batch_size, orders, use_blas)


@njit
def _dense_forward(acts, out, inp, params, o, m, d_in, d_out, relu):
    """acts[out:] (m × d_out) = acts[inp:] (m × d_in) · W + b, then relu if asked; W at
    params[o:], b after it. Offsets, not slices: no array views inside a step."""
    bo = o + d_in * d_out
    for i in range(m):  # row i of out accumulates rows of W (contiguous inner loops)
        r = out + i * d_out
        for j in range(d_out):
            acts[r + j] = 0.0
        for p in range(d_in):
            a = acts[inp + i * d_in + p]
            w = o + p * d_out
            for j in range(d_out):
                acts[r + j] += a * params[w + j]
        for j in range(d_out):
            s = acts[r + j] + params[bo + j]
            acts[r + j] = 0.0 if relu and s < 0 else s


@njit
def _dense_backward(delta, dinp, dout, acts, inp, grads, params, o, m, d_in, d_out, need_dinp):
    """dW = inpᵀ·dout, db = Σ dout, and (if asked) dinp = dout·Wᵀ masked by relu(inp) > 0;
    dout and dinp are offsets into delta, inp into acts."""
    bo = o + d_in * d_out
    for k in range(o, bo + d_out):
        grads[k] = 0.0
    for i in range(m):  # rank-1 updates along contiguous rows of dW
        r = dout + i * d_out
        for p in range(d_in):
            a = acts[inp + i * d_in + p]
            w = o + p * d_out
            for j in range(d_out):
                grads[w + j] += a * delta[r + j]
        for j in range(d_out):
            grads[bo + j] += delta[r + j]
    if need_dinp:
        for i in range(m):
            for p in range(d_in):
                s = 0.0
                if acts[inp + i * d_in + p] > 0:
                    for j in range(d_out):
                        s += delta[dout + i * d_out + j] * params[o + p * d_out + j]
                delta[dinp + i * d_in + p] = s


@njit
def _layer_offsets(sizes):
    """Where layer l's ``W`` starts in the flat ``params`` (its ``b`` follows it); ``[L]`` is the size."""
    L = sizes.size - 1
    offsets = np.zeros(L + 1, dtype=np.int64)
    for l in range(L):
        offsets[l + 1] = offsets[l] + sizes[l] * sizes[l + 1] + sizes[l + 1]
    return offsets


@njit
def _mlp_epochs_flat(X, Y, params, slots, sizes, loss, optimizer, lr, momentum, batch_size, orders):
    n, d = X.shape
    L = sizes.size - 1
    stride = batch_size * sizes.max()
    grads = np.zeros_like(params)
    acts = np.zeros((L + 1) * stride, dtype=X.dtype)  # layer l's input at l·stride, the logits at L·stride
    delta = np.zeros(2 * stride, dtype=X.dtype)       # dL/d(layer output), ping-pong halves
    offsets = _layer_offsets(sizes)
    t = 0
    total = 0.0
    for e in range(orders.shape[0]):
        order = orders[e]
        total = 0.0
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            for i in range(m):
                row = _row(order, start + i)
                for p in range(d):
                    acts[i * d + p] = X[row, p]
            for l in range(L):
                _dense_forward(acts, (l + 1) * stride, l * stride, params, offsets[l], m, sizes[l], sizes[l + 1],
                               l < L - 1)
            total += _loss_grad(delta, acts, L * stride, Y, order, start, m, loss)
            for l in range(L - 1, -1, -1):
                cur, nxt = (L - 1 - l) % 2, (L - l) % 2
                _dense_backward(delta, nxt * stride, cur * stride, acts, l * stride, grads, params, offsets[l], m,
                                sizes[l], sizes[l + 1], l > 0)
            t += 1
            _update(params, grads, slots, optimizer, lr, momentum, t)
    return total / n


@njit
def _mlp_epochs_views(X, Y, params, slots, sizes, loss, optimizer, lr, momentum, batch_size, orders, use_blas):
    n, d = X.shape
    L = sizes.size - 1
    width = sizes.max()
    grads = np.zeros_like(params)
    acts = np.zeros((L, batch_size * width), dtype=X.dtype)   # outputs of each layer
    delta = np.zeros((2, batch_size * width), dtype=X.dtype)  # dL/d(layer output), ping-pong
    gathered = np.zeros((batch_size, d), dtype=X.dtype)       # a shuffled batch's rows of X
    offsets = _layer_offsets(sizes)
    t = 0
    total = 0.0
    for e in range(orders.shape[0]):
        order = orders[e]
        total = 0.0
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            if order.size:
                for i in range(m):
                    row = order[start + i]
                    for p in range(d):
                        gathered[i, p] = X[row, p]
                x = gathered[:m]
            else:
                x = X[start:start + m]
            # forward
            for l in range(L):
                d_in, d_out, o = sizes[l], sizes[l + 1], offsets[l]
                inp = x if l == 0 else acts[l - 1, :m * d_in].reshape((m, d_in))
                W = params[o:o + d_in * d_out].reshape((d_in, d_out))
                b = params[o + d_in * d_out:o + d_in * d_out + d_out]
                out = acts[l, :m * d_out].reshape((m, d_out))
                _matmul(out, inp, W, use_blas)
                for i in range(m):
                    for j in range(d_out):
                        out[i, j] += b[j]
                        if l < L - 1 and out[i, j] < 0:
                            out[i, j] = 0.0
            total += _loss_grad(delta[0], acts[L - 1], 0, Y, order, start, m, loss)
            # backward
            for l in range(L - 1, -1, -1):
                d_in, d_out, o = sizes[l], sizes[l + 1], offsets[l]
                inp = x if l == 0 else acts[l - 1, :m * d_in].reshape((m, d_in))
                W = params[o:o + d_in * d_out].reshape((d_in, d_out))
                dW = grads[o:o + d_in * d_out].reshape((d_in, d_out))
                db = grads[o + d_in * d_out:o + d_in * d_out + d_out]
                dout = delta[(L - 1 - l) % 2, :m * d_out].reshape((m, d_out))
                _matmul(dW, inp.T, dout, use_blas)
                for j in range(d_out):
                    db[j] = 0.0
                for i in range(m):
                    for j in range(d_out):
                        db[j] += dout[i, j]
                if l > 0:
                    dinp = delta[(L - l) % 2, :m * d_in].reshape((m, d_in))
                    _matmul(dinp, dout, W.T, use_blas)
                    for i in range(m):
                        for j in range(d_in):
                            if inp[i, j] <= 0:
                                dinp[i, j] = 0.0
            t += 1
            _update(params, grads, slots, optimizer, lr, momentum, t)
    return total / n


@njit
def linear_epochs(X, y, w, b, loss, lr, batch_size, orders):
    """Plain mini-batch SGD in place on ``z = X·w + b`` (one output): ``loss`` MSE (linear
    regression) or BCE (logistic regression), ``len(orders)`` epochs, each in its order (rows
    read where they are). ``b`` is a 1-element array."""
    n, d = X.shape
    gw = np.zeros_like(w)
    for e in range(orders.shape[0]):
        order = orders[e]
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            gw[:] = 0.0
            gb = 0.0
            for k in range(start, stop):
                i = _row(order, k)
                z = b[0]
                for j in range(d):
                    z += X[i, j] * w[j]
                r = 1.0 / (1.0 + np.exp(-z)) - y[i] if loss == BCE else 2.0 * (z - y[i])
                for j in range(d):
                    gw[j] += r * X[i, j]
                gb += r
            step = lr / (stop - start)
            for j in range(d):
                w[j] -= step * gw[j]
            b[0] -= step * gb
