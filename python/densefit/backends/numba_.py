"""The numba backend: the math of DESIGN.md, formula for formula the numpy reference
(:mod:`densefit.backends.numpy_`), as one small ``@njit`` function per pass, with whole epochs in
one compiled call.

Size legend: ``n`` samples, ``d`` features, ``mb`` the batch size and ``m`` the rows of the current
batch (the last one may be smaller), ``n_in``/``n_out`` op widths, ``C`` BatchNorm features, ``K``
outputs, ``P`` parameters, ``E`` epochs.

Layout: every buffer is flat and row-major. A pass is given each of its arrays as a ``buffer,
offset`` pair (outputs first, then inputs, then sizes), the offset named after the array with
``_at``: ``ws, inp_at`` with ``m, n_in`` is the ``(m, n_in)`` matrix ``inp`` whose row ``r``, column
``c`` is ``ws[inp_at + r * n_in + c]``. The pass takes its own 1-D views (``inp = ws[inp_at:...]``)
and loops over them.

Why: numba counts the references to an array's memory with atomic operations. A function that
calls another compiled function takes a reference on each array it uses (two atomic operations
per array per call), and so does each slice made outside the pass that uses it; on a network of a
few dozen weights trained one sample at a time those cost more than the math. Views made and used
inside a pass that calls nothing (a "leaf") cost nothing, numba prunes their counting, and keep its
loops vectorizable. The pruning gives up on some control flow (a raise among the loops, branches
that stop using an array at different points): hence one leaf per loss, weighted or not, and per
optimizer rule, and codes, class indices and row indices checked before the loops. The loop over batches (one
:func:`kernel` for training, gradients and inference) holds the forward and backward loops over
the ops and calls leaves on few buffers (``ws`` holds the whole workspace): a function taking
arrays costs that counting on every call even when numba pastes it in (``inline``), so only
helpers on scalars or on a leaf's own views (``argmax``, the activation formulas, the partial sums) are
``inline``. 2-D views are made only around BLAS calls.

Memory: a kernel call allocates one workspace ``ws`` (see :func:`workspace`) and the passes work
inside it; nothing is allocated per batch: the gathered batch and every op's output (op ``i``
reads segment ``i`` at ``at[SEGMENT, i]`` and writes segment ``i + 1`` at ``at[SEGMENT, i + 1]``),
the dropout scales and BatchNorm ``x̂``/``invstd`` (op ``i``'s at ``at[CACHE, i]``), BatchNorm's
scratch, and the two halves between which the running gradient moves at each Dense op. A shuffled
call (a :class:`densefit.shuffle.Shuffle` spec) computes each epoch's order in the kernel
(:func:`epoch_order`) into one int64 buffer of ``n`` rows allocated once per call. ``T`` is
the data's dtype: scalars are cast to it where the reference casts them, and loss, penalty and
gradient-norm sums are accumulated in float64, so float32 results match the reference.

Every jitted function is cached: the compiled code lands in ``__pycache__`` (or ``NUMBA_CACHE_DIR``)
and the next process loads it instead of compiling. Numba keys that cache on this file only; the
constants imported from ``densefit`` below and the activation formulas of
:mod:`densefit.activations` (compiled here, see "activations, elementwise") are frozen into the
compiled code, so a change to them needs the cache cleared.
"""

from __future__ import annotations

import inspect

import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  the BLAS numba's np.dot calls, loaded before the dispatcher limits it
from numba import njit, types  # without numba this raises ImportError and the dispatcher falls back
from numba.extending import overload, register_jitable

from .. import activations as A
from .. import losses as L
from .. import optimizers as O
from .. import shuffle
from ..plan import (ACT, ACTIVATION, ALPHA, BATCHNORM, BN_EPSILON, BN_MOMENTUM, DENSE, DROPOUT, KIND, L1, L2,
                    LAYER, N_IN, N_OUT, PARAM_OFF, RATE, STAT_OFF, USE_BIAS, Plan, State)
from . import CORRECT, LOSS_SUM, SEEN, STEPS, contract, numba_vmath

# The dispatcher runs this module's calls with the process's BLAS on at most densefit's threads (see there).
LIMITS_BLAS_THREADS = True

# Softmax rows of at least this many logits take numba_vmath's exp in a loop that vectorizes; fewer take
# libm's, one element at a time, which is faster for a few. The core's threshold (dispatch.hpp's
# softmax_inline_math).
SOFTMAX_INLINE_MATH = 8

# Products with at most this many multiply-adds run as loops: below it BLAS call overhead dominates.
SMALL_GEMM = 512
# The same for one sample (a matrix-vector product), whose loops vectorize (dense_forward_loops,
# dense_backward_one): BLAS's call, views and reshapes cost more than them up to far larger layers.
SMALL_GEMV = 1 << 14

# Rows of the workspace's offset table (see workspace).
SEGMENT, CACHE = 0, 1

# Every function: cached on disk; IEEE division (x/0 is inf or nan, as in numpy, instead of
# Python's ZeroDivisionError, whose check would also keep loops from vectorizing); the GIL
# released, so other Python threads run while a kernel trains. ``inline``: the same, pasted into
# the caller at numba-IR level instead of called (see the module docstring).
jit = njit(cache=True, error_model="numpy", nogil=True)
inline = njit(cache=True, error_model="numpy", nogil=True, inline="always")

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
# the epoch order of densefit.shuffle (its docstring is the definition; shuffle.hpp's EpochOrder
# computes the same bits): every value is a uint64 (a uint64 meeting an int64 would make a float64)


@inline
def feistel(F0, F1, F2, F3, h, mask, x):
    """The four rounds on ``x`` (uint64, ``< 2²ʰ``) as look-ups in the round tables ``F0 .. F3`` (uint32)."""
    left, right = x >> h, x & mask
    left, right = right, left ^ np.uint64(F0[right])
    left, right = right, left ^ np.uint64(F1[right])
    left, right = right, left ^ np.uint64(F2[right])
    left, right = right, left ^ np.uint64(F3[right])
    return (left << h) | right


@jit
def epoch_order(order, walking, tables, seed, epoch, h):
    """``order[:] = shuffle.permutation(seed, epoch, order.size)``, given ``h`` (``shuffle.half_bits``)
    and the buffers ``walking`` (int64, ``order.size``) and ``tables`` (uint32, ``4·2ʰ``): ``F_r`` tabulated
    for every ``h``-bit value, then ``feistel(i)`` for every row, then cycle walking one step at a time for
    all the values still ``>= n`` (their steps are independent, so they overlap)."""
    n = order.size
    size = 1 << h
    hu, mask, nu = np.uint64(h), np.uint64(size - 1), np.uint64(n)
    for r in range(4):
        key = mix(seed ^ mix(epoch * np.uint64(4) + np.uint64(r)))
        F = tables[r * size:(r + 1) * size]
        for v in range(size):
            F[v] = np.uint32(mix(np.uint64(v) ^ key) & mask)
    F0, F1, F2, F3 = tables[:size], tables[size:2 * size], tables[2 * size:3 * size], tables[3 * size:4 * size]
    count = 0
    for i in range(n):
        x = feistel(F0, F1, F2, F3, hu, mask, np.uint64(i))
        order[i] = np.int64(x)
        walking[count] = i
        count += np.int64(x >= nu)
    while count > 0:
        still = 0
        for k in range(count):
            i = walking[k]
            x = feistel(F0, F1, F2, F3, hu, mask, np.uint64(order[i]))
            order[i] = np.int64(x)
            walking[still] = i
            still += np.int64(x >= nu)
        count = still


# ---------------------------------------------------------------------------------------------
# small helpers


@jit
def copy(dst, out_at, src, inp_at, size):
    """``dst[out_at:out_at + size] = src[inp_at:inp_at + size]`` as a loop."""
    out, inp = dst[out_at:out_at + size], src[inp_at:inp_at + size]
    for i in range(size):
        out[i] = inp[i]


@inline
def argmax(row):
    """Index of the first maximum, as ``numpy.argmax``."""
    best = 0
    for k in range(1, row.size):
        if row[k] > row[best]:
            best = k
    return best


# Sums of a batch's terms (its rows' MSE terms, dW and db over its rows) are taken in four partial
# sums. A single running sum ``acc += x`` makes each add wait for the previous one to finish (a few
# cycles of latency, ~64 waits for a batch of 64); four sums that take every fourth term (4k, 4k+1,
# 4k+2, 4k+3) are four independent chains that the CPU runs overlapped, and the four are added at
# the end. Only the order of the additions changes, which DESIGN.md's tolerances allow (numpy's own
# sums are pairwise, also not sequential).


@inline
def sum64(a, size):
    """``Σ_i a[i]`` over the first ``size`` elements of ``a``, each term and the sum in float64, in four
    partial sums."""
    s0 = s1 = s2 = s3 = 0.0
    quads = size - size % 4
    for i in range(0, quads, 4):
        s0 += np.float64(a[i])
        s1 += np.float64(a[i + 1])
        s2 += np.float64(a[i + 2])
        s3 += np.float64(a[i + 3])
    for i in range(quads, size):
        s0 += np.float64(a[i])
    return (s0 + s1) + (s2 + s3)


# ---------------------------------------------------------------------------------------------
# activations, elementwise: the formulas of densefit.activations, compiled here (issue #13)
#
# Each registry formula is written once, in activations.py, in numpy's array/scalar subset. numba
# compiles it on scalars: ``activations.select`` as ``a if cond else b`` and ``activations.masked``
# as ``a if cond else 0`` (the overloads below), the module's other helpers that the formulas call
# (``activations.sigmoid``) as jitable functions, and each ``spec.forward`` / ``spec.backward`` as
# an inline function (``_forward_<code>``, ``_backward_<code>``). The functions that pick a formula
# by code are generated from the registry (``_ACTIVATION_SOURCE``, below): one branch per standalone
# code, each a loop over that one constant
# formula, so that LLVM vectorizes it; adding an activation needs no edit here. The generated code
# is compiled with this file as its file name, so numba caches it with the rest of this module (the
# line numbers in its error messages are those of _ACTIVATION_SOURCE); like the constants (see the
# module docstring), a changed formula needs the cache cleared.


@overload(A.select, inline="always")
def _select(cond, a, b):
    """``activations.select`` on scalars: ``a if cond else b`` (arrays are numpy's, not compiled here)."""
    if isinstance(cond, types.Boolean):
        def select(cond, a, b):
            if cond:
                return a
            return b
        return select
    return None


@overload(A.masked, inline="always")
def _masked(cond, a, T):
    """``activations.masked`` on scalars: ``a if cond else T(0)`` (numpy's ``a * cond`` is no faster here,
    and unlike it keeps a masked inf or nan out)."""
    if isinstance(cond, types.Boolean):
        def masked(cond, a, T):
            if cond:
                return a
            return T(0)
        return masked
    return None


def _jitable_helpers(function, seen):
    """Make every function of densefit.activations that ``function`` calls (by global name) callable
    from compiled code, inline, and the ones those call; ``select`` and ``masked`` have their overloads
    above, exp, expm1, log1p and tanh theirs in numba_vmath (the core's vectorizable forms)."""
    for name in function.__code__.co_names:
        helper = function.__globals__.get(name)
        if (inspect.isfunction(helper) and helper.__module__ in (A.__name__, L.__name__)
                and helper not in (A.select, A.masked, *numba_vmath.BOUND) and helper not in seen):
            seen.add(helper)
            _jitable_helpers(helper, seen)
            register_jitable(inline="always")(helper)


_STANDALONE = tuple(A.spec(code) for code in A.STANDALONE)
_helpers: set = set()
for _spec in _STANDALONE:
    _jitable_helpers(_spec.forward, _helpers)
    _jitable_helpers(_spec.backward, _helpers)
    globals()[f"_forward_{_spec.code}"] = inline(_spec.forward)
    globals()[f"_backward_{_spec.code}"] = inline(_spec.backward)


def _branches(template, first="if", rest="elif"):
    """One ``if act == <code>:`` branch per standalone code, its body ``template`` with ``{c}`` the code."""
    return "".join(f"    {first if k == 0 else rest} act == {s.code}:\n" + template.format(c=s.code)
                   for k, s in enumerate(_STANDALONE))


_ACTIVATION_SOURCE = (
    "def activation_forward_one(ws, out_at, inp_at, size, act, a):\n"
    "    T = type(a)\n"
    + _branches("        for k in range(size):\n"
                "            ws[out_at + k] = _forward_{c}(ws[inp_at + k], a, T)\n")
    + "\n\n"
    "def activation_backward_one(ws, d_at, inp_at, out_at, size, act, a):\n"
    "    T = type(a)\n"
    + _branches("        for k in range(size):\n"
                "            ws[d_at + k] = _backward_{c}(ws[d_at + k], ws[inp_at + k], ws[out_at + k], a, T)\n")
    + "\n\n"
    "def activation_forward(dst, out_at, src, inp_at, size, act, alpha):\n"
    "    out, inp = dst[out_at:out_at + size], src[inp_at:inp_at + size]\n"
    "    T = inp.dtype.type\n"
    "    a = T(alpha)\n"
    + _branches("        for i in range(size):\n"
                "            out[i] = _forward_{c}(inp[i], a, T)\n")
    + "\n\n"
    "def activation_backward(dbuf, d_at, acts, inp_at, out_at, size, act, alpha):\n"
    "    d, inp, out = dbuf[d_at:d_at + size], acts[inp_at:inp_at + size], acts[out_at:out_at + size]\n"
    "    T = inp.dtype.type\n"
    "    a = T(alpha)\n"
    + _branches("        for i in range(size):\n"
                "            d[i] = _backward_{c}(d[i], inp[i], out[i], a, T)\n")
)
exec(compile(_ACTIVATION_SOURCE, __file__, "exec"), globals())

activation_forward_one.__doc__ = """``ws[out_at:out_at + size] = act(ws[inp_at:])`` for one sample's few values, in
    the kernel (inline: see its docstring) on ``ws`` itself rather than on views; ``a`` is alpha in the data's
    dtype. The code is picked once, outside the loop over the values (a pick per value cost more than the
    formula)."""
activation_backward_one.__doc__ = """``ws[d_at:d_at + size] *= act'(ws[inp_at:])`` (``ws[out_at:]``: ``act`` of it,
    which some derivatives are written in) for one sample, as :func:`activation_forward_one`."""
activation_forward.__doc__ = """``out = act(inp)`` elementwise for ``out, inp`` the ``size`` elements at
    ``dst[out_at:]``, ``src[inp_at:]``: one loop per code, each over that code's constant formula."""
activation_backward.__doc__ = """``d *= act'(inp)`` in place for ``d`` at ``dbuf[d_at:]``; ``out = act(inp)``
    (``acts[out_at:]``, ``acts[inp_at:]``) serves the derivatives written in it. One loop per code, as
    above."""
activation_forward_one, activation_backward_one = inline(activation_forward_one), inline(activation_backward_one)
activation_forward, activation_backward = jit(activation_forward), jit(activation_backward)

_IS_STANDALONE = tuple(code in A.STANDALONE for code in range(len(A.REGISTRY)))


@jit
def is_standalone(act):
    """Whether ``act`` is the code of an activation with a standalone forward and backward."""
    return 0 <= act < len(_IS_STANDALONE) and _IS_STANDALONE[act]


@jit
def output_activation(dst, out_at, acts, z_at, m, K, act):
    """``out = act(z)`` for the output activation the loss fused (``predict``), ``out`` at ``dst[out_at:]``
    and ``z`` at ``acts[z_at:]`` both ``(m, K)``; softmax per row."""
    if act != A.SOFTMAX:
        activation_forward(dst, out_at, acts, z_at, m * K, act, 0.0)
        return
    out, z = dst[out_at:out_at + m * K], acts[z_at:z_at + m * K]
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
# Dense: Z = X W + b, as loops for tiny layers (a BLAS call would cost more than the product), else
# through BLAS


@jit
def use_blas(m, n_in, n_out):
    return m * n_in * n_out > (SMALL_GEMM if m > 1 else SMALL_GEMV)


@jit
def dense_forward_loops(acts, out_at, inp_at, params, w_at, m, n_in, n_out, use_bias):
    """``out = inp W + b`` for ``inp (m, n_in)``, ``out (m, n_out)`` at ``acts[inp_at:]``, ``acts[out_at:]``
    and ``W (n_in, n_out)`` then ``b`` at ``params[w_at:]``."""
    out, inp = acts[out_at:out_at + m * n_out], acts[inp_at:inp_at + m * n_in]
    b_at = w_at + n_in * n_out
    W, b = params[w_at:b_at], params[b_at:b_at + n_out]
    T = out.dtype.type
    if m == 1 and n_out < 8:  # one sample, a few outputs: a dot product per output, its sum in a register
        for j in range(n_out):
            acc = T(0)
            for p in range(n_in):
                acc += inp[p] * W[p * n_out + j]
            out[j] = acc + b[j] if use_bias else acc
    elif m == 1:  # one sample: W's rows scaled by the inputs added into out in turn, the loop over the
        # outputs innermost: it vectorizes, where a dot product per output would be one chain of
        # dependent adds; each output still sums p = 0, 1, ... in order, then the bias (same bits)
        for j in range(n_out):
            out[j] = T(0)
        for p in range(n_in):
            x = inp[p]
            for j in range(n_out):
                out[j] += x * W[p * n_out + j]
        if use_bias:
            for j in range(n_out):
                out[j] += b[j]
    else:  # a batch: rows innermost, the long loop of a tiny layer (same sums, same order)
        for j in range(n_out):
            for r in range(m):
                out[r * n_out + j] = T(0)
            for p in range(n_in):
                w = W[p * n_out + j]
                for r in range(m):
                    out[r * n_out + j] += inp[r * n_in + p] * w
            if use_bias:
                for r in range(m):
                    out[r * n_out + j] += b[j]


@jit
def dense_forward_blas(acts, out_at, inp_at, params, w_at, m, n_in, n_out, use_bias):
    """:func:`dense_forward_loops` with the product through BLAS."""
    out, inp = acts[out_at:out_at + m * n_out], acts[inp_at:inp_at + m * n_in]
    b_at = w_at + n_in * n_out
    np.dot(inp.reshape((m, n_in)), params[w_at:b_at].reshape((n_in, n_out)), out.reshape((m, n_out)))
    if use_bias:
        b = params[b_at:b_at + n_out]
        for r in range(m):
            for j in range(n_out):
                out[r * n_out + j] += b[j]


@jit
def dense_backward_loops(dbuf, dinp_at, grad, w_at, dout_at, acts, inp_at, params, m, n_in, n_out, use_bias,
                         need_dinp):
    """``dW = inpᵀ dout`` then ``db = Σ_rows dout`` into ``grad[w_at:]``, and ``dinp = dout Wᵀ`` into
    ``dbuf[dinp_at:]`` (only if ``need_dinp``), for ``dout (m, n_out)`` at ``dbuf[dout_at:]``."""
    dinp, dout = dbuf[dinp_at:dinp_at + m * n_in], dbuf[dout_at:dout_at + m * n_out]
    inp, W = acts[inp_at:inp_at + m * n_in], params[w_at:w_at + n_in * n_out]
    b_at = w_at + n_in * n_out
    dW, db = grad[w_at:b_at], grad[b_at:b_at + n_out]
    T = dout.dtype.type
    # the sums over rows in four partial sums (rows r ≡ 0, 1, 2, 3 mod 4; see the note above sum64),
    # written out here: a helper given these arrays would cost reference counting on every call
    quads = m - m % 4
    for p in range(n_in):
        for j in range(n_out):
            s0 = s1 = s2 = s3 = T(0)
            for r in range(0, quads, 4):
                s0 += inp[r * n_in + p] * dout[r * n_out + j]
                s1 += inp[(r + 1) * n_in + p] * dout[(r + 1) * n_out + j]
                s2 += inp[(r + 2) * n_in + p] * dout[(r + 2) * n_out + j]
                s3 += inp[(r + 3) * n_in + p] * dout[(r + 3) * n_out + j]
            for r in range(quads, m):
                s0 += inp[r * n_in + p] * dout[r * n_out + j]
            dW[p * n_out + j] = (s0 + s1) + (s2 + s3)
    if use_bias:
        for j in range(n_out):
            s0 = s1 = s2 = s3 = T(0)
            for r in range(0, quads, 4):
                s0 += dout[r * n_out + j]
                s1 += dout[(r + 1) * n_out + j]
                s2 += dout[(r + 2) * n_out + j]
                s3 += dout[(r + 3) * n_out + j]
            for r in range(quads, m):
                s0 += dout[r * n_out + j]
            db[j] = (s0 + s1) + (s2 + s3)
    if need_dinp:  # rows innermost
        for p in range(n_in):
            for r in range(m):
                dinp[r * n_in + p] = T(0)
            for j in range(n_out):
                w = W[p * n_out + j]
                for r in range(m):
                    dinp[r * n_in + p] += dout[r * n_out + j] * w


@jit
def dense_backward_one(dbuf, dinp_at, grad, w_at, dout_at, acts, inp_at, params, n_in, n_out, use_bias, need_dinp):
    """:func:`dense_backward_loops` for one sample (a batch of one row, no sums over rows): ``dW`` is the
    outer product of ``inp`` and ``dout``, ``db`` is ``dout``, ``dinp`` a dot product per input. A function
    of its own rather than a branch in the loops: a branch that uses the arrays differently would keep
    numba from pruning their reference counting."""
    dinp, dout = dbuf[dinp_at:dinp_at + n_in], dbuf[dout_at:dout_at + n_out]
    inp, W = acts[inp_at:inp_at + n_in], params[w_at:w_at + n_in * n_out]
    b_at = w_at + n_in * n_out
    dW, db = grad[w_at:b_at], grad[b_at:b_at + n_out]
    T = dout.dtype.type
    for p in range(n_in):
        x = inp[p]
        for j in range(n_out):
            dW[p * n_out + j] = x * dout[j]
    if use_bias:
        for j in range(n_out):
            db[j] = dout[j]
    if need_dinp:  # the outputs outermost: n_in independent sums (not one chain of dependent adds per
        # input), each still over j = 0, 1, ... in order (same bits)
        for p in range(n_in):
            dinp[p] = T(0)
        for j in range(n_out):
            g = dout[j]
            for p in range(n_in):
                dinp[p] += g * W[p * n_out + j]


@jit
def dense_backward_blas(dbuf, dinp_at, grad, w_at, dout_at, acts, inp_at, params, m, n_in, n_out, use_bias,
                        need_dinp):
    """:func:`dense_backward_loops` with the products through BLAS."""
    dout = dbuf[dout_at:dout_at + m * n_out]
    inp = acts[inp_at:inp_at + m * n_in].reshape((m, n_in))
    b_at = w_at + n_in * n_out
    np.dot(inp.T, dout.reshape((m, n_out)), grad[w_at:b_at].reshape((n_in, n_out)))
    if use_bias:
        db = grad[b_at:b_at + n_out]
        db[:] = 0
        for r in range(m):
            for j in range(n_out):
                db[j] += dout[r * n_out + j]
    if need_dinp:
        np.dot(dout.reshape((m, n_out)), params[w_at:b_at].reshape((n_in, n_out)).T,
               dbuf[dinp_at:dinp_at + m * n_in].reshape((m, n_in)))


# ---------------------------------------------------------------------------------------------
# Dropout (inverted) and BatchNorm


@jit
def dropout_forward(acts, out_at, inp_at, caches, scale_at, size, rate, seed, step, layer):
    """Keep element ``i = r·width + c`` iff ``uniform(seed, step, layer, i) >= rate``; ``scale``
    (``caches[scale_at:]``) records ``1/(1-rate)`` or 0 per element for the backward pass."""
    out, inp, scale = acts[out_at:out_at + size], acts[inp_at:inp_at + size], caches[scale_at:scale_at + size]
    T = inp.dtype.type
    kept = T(1 / (1 - rate))
    key = stream_key(seed, step, layer)
    for i in range(size):
        u = np.float64(mix(np.uint64(i) ^ key) >> np.uint64(40)) * 2.0 ** -24
        scale[i] = kept if u >= rate else T(0)
        out[i] = inp[i] * scale[i]


@jit
def dropout_backward(dbuf, d_at, caches, scale_at, size):
    d, scale = dbuf[d_at:d_at + size], caches[scale_at:scale_at + size]
    for i in range(size):
        d[i] = d[i] * scale[i]


@jit
def batchnorm_forward_train(acts, out_at, inp_at, caches, xhat_at, invstd_at, stats, running_at, params, gamma_at,
                            scratch, mean_at, momentum, epsilon, m, C):
    """Normalize by the batch mean and biased variance (two passes, rows summed in order like
    numpy's axis-0 reductions); keep ``xhat`` and ``invstd`` (in ``caches``) for the backward pass
    (``mean`` at ``scratch[mean_at:]`` is scratch) and move the running statistics (mean then
    variance at ``stats[running_at:]``) toward the mean and the unbiased variance. ``γ`` then ``β``
    at ``params[gamma_at:]``."""
    out, inp = acts[out_at:out_at + m * C], acts[inp_at:inp_at + m * C]
    xhat, invstd = caches[xhat_at:xhat_at + m * C], caches[invstd_at:invstd_at + C]
    running_mean, running_var = stats[running_at:running_at + C], stats[running_at + C:running_at + 2 * C]
    gamma, beta = params[gamma_at:gamma_at + C], params[gamma_at + C:gamma_at + 2 * C]
    mean = scratch[mean_at:mean_at + C]
    T = inp.dtype.type
    var = invstd  # the variance lives in invstd until it is inverted below
    for c in range(C):
        mean[c] = 0
        var[c] = 0
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
def batchnorm_forward_infer(acts, out_at, inp_at, params, gamma_at, stats, running_at, epsilon, m, C):
    out, inp = acts[out_at:out_at + m * C], acts[inp_at:inp_at + m * C]
    running_mean, running_var = stats[running_at:running_at + C], stats[running_at + C:running_at + 2 * C]
    gamma, beta = params[gamma_at:gamma_at + C], params[gamma_at + C:gamma_at + 2 * C]
    T = inp.dtype.type
    for r in range(m):
        for c in range(C):
            xhat = (inp[r * C + c] - running_mean[c]) / np.sqrt(running_var[c] + T(epsilon))
            out[r * C + c] = gamma[c] * xhat + beta[c]


@jit
def batchnorm_backward(dbuf, d_at, grad, caches, xhat_at, invstd_at, params, gamma_at, scratch, sums_at, m, C):
    """In place ``d ← invstd/m · (m·dx̂ - Σdx̂ - x̂ Σ(dx̂ x̂))`` with ``dx̂ = d γ`` (``d`` at
    ``dbuf[d_at:]``); ``dγ`` then ``dβ`` into ``grad[gamma_at:]``; the two column sums live at
    ``scratch[sums_at:]`` (``2C``)."""
    d = dbuf[d_at:d_at + m * C]
    xhat, invstd = caches[xhat_at:xhat_at + m * C], caches[invstd_at:invstd_at + C]
    gamma = params[gamma_at:gamma_at + C]
    dgamma, dbeta = grad[gamma_at:gamma_at + C], grad[gamma_at + C:gamma_at + 2 * C]
    sum_dxhat, sum_dxhat_xhat = scratch[sums_at:sums_at + C], scratch[sums_at + C:sums_at + 2 * C]
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
# losses: value (float64), count of correct predictions and the fused gradient at the logits
# ``dz (m, K)`` at ``dbuf[dz_at:]``, given the logits ``z`` at ``acts[z_at:]``, the flat targets ``y`` and
# the row scales ``rs`` (``rᵢ = wᵢ / W``, see batch_weighting; empty: the batch mean, every row 1/m).
#
# The elementwise losses are the formulas of densefit.losses, compiled here as the activations are:
# each spec's ``term``, ``dz`` and ``hit`` become inline functions and :func:`elementwise_loss` is
# generated from the registry, one branch per code, each a loop over that code's constant formulas
# (so that it vectorizes, on numba_vmath's exp and log1p); adding one needs no edit here. Categorical
# cross-entropy is row-wise (a max and a sum per row): written here in its own shape.

_N_LOSSES = len(L.REGISTRY)
_ELEMENTWISE = tuple(s for s in L.REGISTRY if s.term is not None)
for _spec in _ELEMENTWISE:
    for _part in ("term", "dz", "hit"):
        if getattr(_spec, _part) is not None:
            _jitable_helpers(getattr(_spec, _part), _helpers)
            globals()[f"_{_part}_{_spec.code}"] = inline(getattr(_spec, _part))


def _loss_branch(spec, scaled):
    """One ``if loss == <code>:`` branch: one loop over the elements, each element's term, its ``dz`` (times
    ``scale`` unless rows are ``scaled`` after it) and its hit."""
    hit = f"            correct += _hit_{spec.code}(z[i], y[i], T)\n" if spec.hit is not None else ""
    return (f"    {'if' if spec is _ELEMENTWISE[0] else 'elif'} loss == {spec.code}:\n"
            "        for i in range(n):\n"
            f"            terms[i] = _term_{spec.code}(z[i], y[i], T)\n"
            f"            dz[i] = _dz_{spec.code}(z[i], y[i], K, T){'' if scaled else ' * scale'}\n" + hit)


def _loss_source(name, rows_scaled):
    """:func:`elementwise_loss` (the batch mean) or :func:`elementwise_loss_weighted` (``rows_scaled``)."""
    return (f"def {name}(dbuf, dz_at, acts, z_at, y, {'rs, ' if rows_scaled else ''}scratch, m, K, loss):\n"
            "    n = m * K\n"
            "    dz, z, terms = dbuf[dz_at:dz_at + n], acts[z_at:z_at + n], scratch[:n]\n"
            "    T = z.dtype.type\n"
            "    scale = T(1 / m)\n"
            "    correct = 0\n"
            + "".join(_loss_branch(spec, rows_scaled) for spec in _ELEMENTWISE)
            + ("    total = 0.0\n"
               "    for r in range(m):\n"
               "        for i in range(r * K, (r + 1) * K):\n"
               "            dz[i] = dz[i] * rs[r]\n"
               "        total += sum64(terms[r * K:(r + 1) * K], K) / K * np.float64(rs[r])\n"
               "    return total, correct\n" if rows_scaled else
               "    return sum64(terms, n) / n, correct\n"))


exec(compile(_loss_source("elementwise_loss", False) + "\n\n" + _loss_source("elementwise_loss_weighted", True),
             __file__, "exec"), globals())
elementwise_loss.__doc__ = """The elementwise loss with code ``loss``, the mean over the ``m·K`` elements: each
    element's term (float64) into ``scratch`` and its ``dz`` (of the row's mean over its ``K`` outputs) divided
    by ``m``; ``correct`` counts the elements its ``hit`` holds for (0 for a loss without one)."""
elementwise_loss_weighted.__doc__ = """:func:`elementwise_loss` with row ``r``'s mean weighted by ``rs[r]``
    (``Σ rᵢ ℓᵢ``, ``dz · rᵢ``). A leaf of its own: one leaf with a branch on ``rs`` would keep numba from pruning
    the reference counting of its views."""
elementwise_loss, elementwise_loss_weighted = jit(elementwise_loss), jit(elementwise_loss_weighted)


@inline
def softmax_exps(dz, z, m, K):
    """``dz = e^(z - max)`` for the ``m`` rows of ``K`` logits ``z``, each row less its own maximum, on
    numba_vmath's exp in one loop over the whole batch (over a row of ten it would hardly vectorize)."""
    for r in range(m):
        zr = z[r * K:(r + 1) * K]
        zmax = zr[0]  # zr[argmax(zr)], as a running select rather than argmax's unpredictable branches
        for k in range(1, K):
            zmax = zr[k] if zr[k] > zmax else zmax
        for k in range(K):
            dz[r * K + k] = zr[k] - zmax
    for i in range(m * K):
        dz[i] = A.exp(dz[i])


@inline
def softmax_crossentropy_row(dzr, zr, yr, K, y_cols, scale, acc):
    """One row's softmax cross-entropy: return ``acc`` plus it (float64) and whether the row's argmax is
    the target's; ``dzr`` gets the gradient at the logits ``zr`` times ``scale``. ``yr`` is the row's
    ``K`` targets, or one class index (``y_cols == 1``, ``K > 1``; in range: backends.contract checks). The
    row's terms are added to ``acc`` one by one: the batch mean passes its running total, so its sum
    is the one it has always been, term by term; the weighted sum passes 0 and weighs the row's sum.
    Rows of ``SOFTMAX_INLINE_MATH`` logits or more come with ``dzr = e^(zr - max)`` (:func:`softmax_exps`)."""
    T = zr.dtype.type
    predicted = argmax(zr)
    zmax = zr[predicted]
    sum_e = T(0)
    if K >= SOFTMAX_INLINE_MATH:  # dzr holds the exps already (softmax_exps): their sum, in order
        for k in range(K):
            sum_e += dzr[k]
    else:
        for k in range(K):
            dzr[k] = np.exp(zr[k] - zmax)
            sum_e += dzr[k]
    log_sum_e = np.log(sum_e)
    if y_cols == 1 and K > 1:
        label = np.int64(yr[0])
        acc -= np.float64((zr[label] - zmax) - log_sum_e)
        for k in range(K):
            dzr[k] = dzr[k] / sum_e
        dzr[label] -= T(1)
        for k in range(K):
            dzr[k] = dzr[k] * scale
        return acc, predicted == label
    y_sum = T(0)
    for k in range(K):
        acc -= np.float64(yr[k] * ((zr[k] - zmax) - log_sum_e))
        y_sum += yr[k]
    for k in range(K):
        dzr[k] = ((dzr[k] / sum_e) * y_sum - yr[k]) * scale
    return acc, predicted == argmax(yr)


@jit
def categorical_crossentropy(dbuf, dz_at, acts, z_at, y, rs, m, K, y_cols):
    """Softmax cross-entropy per row (:func:`softmax_crossentropy_row`), averaged, or with row scales
    ``Σ rᵢ ℓᵢ``; ``correct`` counts rows. One leaf for both, unlike the elementwise losses (whose
    one-sample steps feel a call's reference counting): each row's max, exps and sums outweigh it here."""
    dz, z = dbuf[dz_at:dz_at + m * K], acts[z_at:z_at + m * K]
    total, correct = 0.0, 0
    scale = z.dtype.type(1 / m)
    if K >= SOFTMAX_INLINE_MATH:
        softmax_exps(dz, z, m, K)
    for r in range(m):
        dzr, zr, yr = dz[r * K:(r + 1) * K], z[r * K:(r + 1) * K], y[r * y_cols:(r + 1) * y_cols]
        if rs.size == 0:
            total, hit = softmax_crossentropy_row(dzr, zr, yr, K, y_cols, scale, total)
        else:
            term, hit = softmax_crossentropy_row(dzr, zr, yr, K, y_cols, rs[r], 0.0)
            total += term * np.float64(rs[r])
        correct += hit
    return (total / m if rs.size == 0 else total), correct


@inline
def penalty_scale(total, penalty_per_weight):
    """The factor of a batch's L1/L2 penalty: 1, or with ``plan.penalty_per_weight`` one over the batch's
    total weight ``total`` (its row count without sample weights; 0 for a batch of no weight)."""
    if not penalty_per_weight:
        return 1.0
    return 1.0 / total if total != 0 else 0.0


@jit
def batch_weighting(wb, m, penalty_per_weight):
    """Turn the batch's weights ``wb[:m]`` into its row scales ``rᵢ = wᵢ / W`` in place, ``W = Σ wᵢ``
    summed in float64 (all 0 if ``W == 0``: the batch has no data loss and no data gradient); return
    the penalty's factor (:func:`penalty_scale` of ``W``)."""
    w = wb[:m]
    T = w.dtype.type
    total = 0.0
    for r in range(m):
        total += np.float64(w[r])
    for r in range(m):
        w[r] = T(np.float64(w[r]) / total) if total != 0 else T(0)
    return penalty_scale(total, penalty_per_weight)


# ---------------------------------------------------------------------------------------------
# the optimizer step over the flat buffers: penalty, clip, update


@jit
def add_penalty_gradient(grad, params, ops, op_params, scale):
    """``grad += c (l1 sign(W) + 2 l2 W)`` on Dense kernels; return ``Σ c (l1 Σ|W| + l2 ΣW²)`` (float64),
    ``c = scale`` (:func:`penalty_scale`; at 1 the products are exact: the unscaled penalty)."""
    T = params.dtype.type
    total = 0.0
    for i in range(ops.shape[0]):
        if ops[i, KIND] != DENSE or (op_params[i, L1] == 0 and op_params[i, L2] == 0):
            continue
        l1, l2 = op_params[i, L1] * scale, op_params[i, L2] * scale
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
def has_penalty(ops, op_params):
    """Whether a Dense kernel has an L1 or L2 penalty (else steps skip :func:`add_penalty_gradient`)."""
    for i in range(ops.shape[0]):
        if ops[i, KIND] == DENSE and (op_params[i, L1] != 0 or op_params[i, L2] != 0):
            return True
    return False


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


# The update rules of densefit.optimizers, compiled here (issue #13) as the activation formulas are:
# each optimizer's ``rule`` and ``coefficients`` become inline functions (``_rule_<code>``,
# ``_coefficients_<code>``), and ``optimizer_step`` is generated from the registry, one branch per
# code, each a loop over that one rule; adding an optimizer needs no edit here. It is inlined into
# the kernel (numba-IR level): a call would take a reference on each of its arrays per step.
_OPTIMIZERS = tuple(O.BY_CODE[code] for code in sorted(O.BY_CODE))
_N_OPTIMIZERS = len(_OPTIMIZERS)
for _opt in _OPTIMIZERS:
    globals()[f"_rule_{_opt.code}"] = inline(_opt.rule)
    globals()[f"_coefficients_{_opt.code}"] = inline(_opt.coefficients)
_decay_factor = inline(O.decay_factor)


@jit
def decay_kernels(w, ops, decay):
    """AdamW's decoupled decay: ``w *= decay`` on the Dense kernels."""
    for i in range(ops.shape[0]):
        if ops[i, KIND] == DENSE:
            start = ops[i, PARAM_OFF]
            for j in range(start, start + ops[i, N_IN] * ops[i, N_OUT]):
                w[j] *= decay


def _optimizer_branch(opt):
    lines = f"    {'if' if opt is _OPTIMIZERS[0] else 'elif'} optimizer == {opt.code}:\n"
    if opt.decays:
        lines += ("        if q[O.WEIGHT_DECAY] > 0:\n"
                  "            decay_kernels(w, ops, T(_decay_factor(q, lr)))\n")
    written = ("w[j]", "s0[j]", "s1[j]")[:1 + opt.slots] + ("_",) * (2 - opt.slots)
    return lines + (f"        c = _coefficients_{opt.code}(q, lr, t, T)\n"
                    "        for j in range(w.size):\n"
                    f"            {', '.join(written)} = _rule_{opt.code}(w[j], s0[j], s1[j], g[j], c)\n")


_OPTIMIZER_SOURCE = (
    "def optimizer_step(w, slots, g, ops, optimizer, q, lr, t):\n"
    "    T = w.dtype.type\n"
    "    s0, s1 = slots[0], slots[1]\n"
    + "".join(_optimizer_branch(opt) for opt in _OPTIMIZERS)
)
exec(compile(_OPTIMIZER_SOURCE, __file__, "exec"), globals())
optimizer_step.__doc__ = """Step ``t`` (from 1) of the optimizer with code ``optimizer`` at learning rate
    ``lr``, in place on the weights ``w``, their ``slots`` (2, P) given the gradient ``g``; ``q`` its
    ``opt_params``."""
optimizer_step = inline(optimizer_step)


# ---------------------------------------------------------------------------------------------
# the network: workspace, forward and backward over the ops


@jit
def workspace(ops, d, rows, dtype):
    """The workspace of a kernel call, allocated once, for batches of up to ``rows`` rows: one buffer
    ``ws`` and the offsets into it, in one table ``at`` (one array, not two: each array a loop
    function is given costs reference counting per call). ``at[SEGMENT, i]``: segment ``i`` of the
    activations (the batch, ``rows·d``, at ``at[SEGMENT, 0] = 0``; op ``i``'s output, ``rows·n_out``,
    at ``at[SEGMENT, i + 1]``). ``at[CACHE, i]`` to ``at[CACHE, i + 1]``: op ``i``'s cache (dropout:
    the scale of each element; BatchNorm: ``x̂`` then ``invstd``). Then BatchNorm's scratch
    (``2·width``) at ``scratch_at = at[CACHE, n_ops]`` and the two halves of the running gradient
    (``rows·width`` each) at ``d_at`` and ``d_next_at``."""
    n_ops = ops.shape[0]
    at = np.zeros((2, n_ops + 2), dtype=np.int64)
    at[SEGMENT, 1] = rows * d
    width = d
    for i in range(n_ops):
        width = max(width, ops[i, N_OUT])
        at[SEGMENT, i + 2] = at[SEGMENT, i + 1] + rows * ops[i, N_OUT]
    at[CACHE, 0] = at[SEGMENT, n_ops + 1]
    for i in range(n_ops):
        size = 0
        if ops[i, KIND] == DROPOUT:
            size = rows * ops[i, N_OUT]
        elif ops[i, KIND] == BATCHNORM:
            size = rows * ops[i, N_OUT] + ops[i, N_OUT]
        at[CACHE, i + 1] = at[CACHE, i] + size
    scratch_at = at[CACHE, n_ops]
    d_at = scratch_at + 2 * width
    d_next_at = d_at + rows * width
    return np.empty(d_next_at + rows * width, dtype), at, scratch_at, d_at, d_next_at


@jit
def is_identity(order):
    """``order`` is ``0..n-1`` (an unshuffled epoch): then rows are copied without the index lookups."""
    for i in range(order.size):
        if order[i] != i:
            return False
    return True


@jit
def copy_rows(dst, out_at, X, start, m):
    """``out (m, cols) = X[start:start + m]`` at ``dst[out_at:]``, for ``X`` of any strides."""
    cols = X.shape[1]
    out = dst[out_at:out_at + m * cols]
    rows = X[start:start + m]  # a view: indexed from 0, the loops skip numpy's negative-index checks
    if cols == 1:  # one loop down the column (a target, or a single feature), not m loops of one element
        for r in range(m):
            out[r] = rows[r, 0]
    else:
        for r in range(m):
            for c in range(cols):
                out[r * cols + c] = rows[r, c]


@jit
def gather_rows(dst, out_at, X, order, start, m):
    """``out (m, cols) = X[order[start:start + m]]`` at ``dst[out_at:]``, for ``X`` of any strides
    (the indices were checked at the call's entry, :func:`densefit.backends.contract.epochs`)."""
    cols = X.shape[1]
    out = dst[out_at:out_at + m * cols]
    for r in range(m):
        row = order[start + r]
        for c in range(cols):
            out[r * cols + c] = X[row, c]


# ---------------------------------------------------------------------------------------------
# checks, once per kernel call: the passes trust the codes and class indices (a raise inside a pass
# would keep numba from pruning the reference counting of its views)


@jit
def check_codes(ops, loss, optimizer):
    """Raise for an op kind, standalone activation, loss or optimizer code this module does not know."""
    for i in range(ops.shape[0]):
        kind = ops[i, KIND]
        if kind != DENSE and kind != ACTIVATION and kind != DROPOUT and kind != BATCHNORM:
            raise ValueError("unknown op kind")
        if kind == ACTIVATION and not is_standalone(ops[i, ACT]):
            raise ValueError("activation has no standalone forward (softmax is fused with the loss)")
    if not 0 <= loss < _N_LOSSES:
        raise ValueError("unknown loss code")
    if not 0 <= optimizer < _N_OPTIMIZERS:
        raise ValueError("unknown optimizer code")


# ---------------------------------------------------------------------------------------------
# the kernel: one compiled call per train_epochs / predict / loss_and_grad

TRAIN, GRADIENT, PREDICT = range(3)


@jit
def kernel(mode, ops, op_params, opt_params, loss, optimizer, output_act, seed, penalty_per_weight, params, slots,
           stats, grad, outputs, X, y, sample_weight, orders, half_bits, shuffle_seed, first_epoch, lrs, batch_size,
           step, progress, cancel):
    """The network run over batches, in one of three modes:

    - ``TRAIN``: every epoch ``e`` (learning rate ``lrs[e]``) in slices of ``batch_size``, one optimizer step
      per slice, the first numbered ``step``, in the order ``orders[e]`` (``orders[0]`` every epoch if it has
      one row; rows ``0..n-1`` if that row is empty), or for a shuffled call (``half_bits`` =
      ``shuffle.half_bits(n)`` not 0) in :func:`epoch_order`'s order of epoch ``first_epoch + e`` with
      ``shuffle_seed``; returns the ``(E, 4)`` stats.
    - ``GRADIENT``: one training-mode batch of all ``n`` rows: fills ``grad (P,)``, no step; returns its stats.
    - ``PREDICT``: the inference-mode outputs through ``output_act`` into ``outputs (n·K,)``.

    ``sample_weight``: the ``(n, 1)`` row weights, gathered with each batch as its targets are, or ``(0, 1)``.
    ``progress`` (``(1,)`` int64, or ``(0,)``) gets the rows trained so far after every batch; ``cancel`` (the
    same) is polled between batches: once nonzero the epoch under way is undone and the completed epochs'
    stats are returned.

    The loops over the ops are written out here rather than in functions of their own (see the module
    docstring: each call given arrays costs reference counting), and at one sample per step so are an
    Activation op's few values and the row's copy. At one sample a Dense op takes loops up to far larger
    layers (``SMALL_GEMV``): BLAS's matrix-vector call, with its views, costs more than a small network's step."""
    n_ops, K = ops.shape[0], ops[ops.shape[0] - 1, N_OUT]
    check_codes(ops, loss, optimizer)
    training = mode != PREDICT
    penalized = has_penalty(ops, op_params)
    n, y_cols = X.shape[0], y.shape[1]
    rows = min(batch_size, n)
    ws, at, scratch_at, d_at, d_next_at = workspace(ops, X.shape[1], rows, X.dtype)
    yb = np.empty(rows * y_cols if training else 0, X.dtype)
    elementwise = training and loss != L.CATEGORICAL_CROSSENTROPY
    terms = np.empty(rows * K if elementwise else 0, np.float64)  # the elementwise loss's terms
    weighted = training and sample_weight.shape[0] > 0
    wb = np.empty(rows if weighted else 0, X.dtype)  # the batch's weights, then its row scales
    out = np.zeros((lrs.size, 4))
    watch = cancel.size > 0
    saved_params, saved_slots, saved_stats = params[:0].copy(), slots[:, :0].copy(), stats[:0].copy()
    # a shuffled call's epoch order, computed into one buffer (with its tables, see epoch_order) per epoch
    shuffled, h = half_bits > 0, half_bits
    shuffled_order = np.empty(n if shuffled else 0, np.int64)
    walking = np.empty(n if shuffled else 0, np.int64)
    tables = np.empty((4 << h) if shuffled else 0, np.uint32)
    for e in range(lrs.size):
        if shuffled:
            epoch_order(shuffled_order, walking, tables, shuffle_seed, first_epoch + np.uint64(e), h)
            order = shuffled_order
        else:
            order = orders[min(e, orders.shape[0] - 1)]
        in_order = is_identity(order)  # then every batch is rows start..start + m - 1 (always if order is empty)
        if watch:  # the state as the epoch began, to undo it if cancelled
            saved_params, saved_slots, saved_stats = params.copy(), slots.copy(), stats.copy()
        for start in range(0, n, batch_size):
            if watch and cancel[0] != 0:
                params[:] = saved_params
                slots[:, :] = saved_slots
                stats[:] = saved_stats
                out[e, :] = 0.0
                return out[:e]
            m = min(batch_size, n - start)
            if m == 1:  # one sample: its few values copied here rather than in two or three calls
                row = start if in_order else order[start]
                for c in range(X.shape[1]):
                    ws[c] = X[row, c]  # at[SEGMENT, 0] = 0
                if training:
                    for c in range(y_cols):
                        yb[c] = y[row, c]
                if weighted:
                    wb[0] = sample_weight[row, 0]
            elif in_order:
                copy_rows(ws, at[SEGMENT, 0], X, start, m)
                if training:
                    copy_rows(yb, 0, y, start, m)
                if weighted:
                    copy_rows(wb, 0, sample_weight, start, m)
            else:
                gather_rows(ws, at[SEGMENT, 0], X, order, start, m)
                gather_rows(yb, 0, y, order, start, m)
                if weighted:
                    gather_rows(wb, 0, sample_weight, order, start, m)

            # forward: op i reads activation segment i and writes segment i + 1, so the logits end in segment
            # n_ops. In training mode dropout draws its mask and BatchNorm normalizes by batch statistics and
            # updates the running ones in ``stats``.
            for i in range(n_ops):
                kind, n_in, n_out, off = ops[i, KIND], ops[i, N_IN], ops[i, N_OUT], ops[i, PARAM_OFF]
                inp_at, out_at = at[SEGMENT, i], at[SEGMENT, i + 1]
                if kind == DENSE:
                    use_bias = ops[i, USE_BIAS] != 0
                    if use_blas(m, n_in, n_out):
                        dense_forward_blas(ws, out_at, inp_at, params, off, m, n_in, n_out, use_bias)
                    else:
                        dense_forward_loops(ws, out_at, inp_at, params, off, m, n_in, n_out, use_bias)
                elif kind == ACTIVATION:
                    if m == 1:  # one sample: a few values, looped here rather than in a call (see the docstring)
                        activation_forward_one(ws, out_at, inp_at, n_in, ops[i, ACT], X.dtype.type(op_params[i, ALPHA]))
                    else:
                        activation_forward(ws, out_at, ws, inp_at, m * n_in, ops[i, ACT], op_params[i, ALPHA])
                elif kind == DROPOUT:
                    if training and op_params[i, RATE] > 0:
                        dropout_forward(ws, out_at, inp_at, ws, at[CACHE, i], m * n_in, op_params[i, RATE], seed,
                                        step, ops[i, LAYER])
                    else:
                        copy(ws, out_at, ws, inp_at, m * n_in)
                elif kind == BATCHNORM:
                    xhat_at, invstd_at = at[CACHE, i], at[CACHE, i + 1] - n_in
                    if training:
                        batchnorm_forward_train(ws, out_at, inp_at, ws, xhat_at, invstd_at, stats, ops[i, STAT_OFF],
                                                params, off, ws, scratch_at, op_params[i, BN_MOMENTUM],
                                                op_params[i, BN_EPSILON], m, n_in)
                    else:
                        batchnorm_forward_infer(ws, out_at, inp_at, params, off, stats, ops[i, STAT_OFF],
                                                op_params[i, BN_EPSILON], m, n_in)
            if mode == PREDICT:
                output_activation(outputs, start * K, ws, at[SEGMENT, n_ops], m, K, output_act)
                continue

            # the loss: its mean (weighted: Σ rᵢ ℓᵢ) and correct count, and the gradient at the logits into
            # ws[d_at:]; yb holds y_cols = K values per row, or 1: class indices (categorical, K > 1)
            z_at = at[SEGMENT, n_ops]
            if weighted:
                penalty_factor = batch_weighting(wb, m, penalty_per_weight)
            else:
                penalty_factor = penalty_scale(np.float64(m), penalty_per_weight)
            if loss == L.CATEGORICAL_CROSSENTROPY:
                value, correct = categorical_crossentropy(ws, d_at, ws, z_at, yb, wb, m, K, y_cols)
            elif weighted:
                value, correct = elementwise_loss_weighted(ws, d_at, ws, z_at, yb, wb, terms, m, K, loss)
            else:
                value, correct = elementwise_loss(ws, d_at, ws, z_at, yb, terms, m, K, loss)

            # backward: fills grad given the gradient at the logits at ws[d_at:]; the running gradient moves to
            # ws[d_next_at:] and back at each Dense op (the other ops work in place)
            d, d_next = d_at, d_next_at
            for i in range(n_ops - 1, -1, -1):
                kind, n_in, n_out, off = ops[i, KIND], ops[i, N_IN], ops[i, N_OUT], ops[i, PARAM_OFF]
                inp_at, out_at = at[SEGMENT, i], at[SEGMENT, i + 1]
                if kind == DENSE:
                    use_bias = ops[i, USE_BIAS] != 0
                    if use_blas(m, n_in, n_out):
                        dense_backward_blas(ws, d_next, grad, off, d, ws, inp_at, params, m, n_in, n_out, use_bias,
                                            i > 0)
                    elif m == 1:
                        dense_backward_one(ws, d_next, grad, off, d, ws, inp_at, params, n_in, n_out, use_bias, i > 0)
                    else:
                        dense_backward_loops(ws, d_next, grad, off, d, ws, inp_at, params, m, n_in, n_out, use_bias,
                                             i > 0)
                    d, d_next = d_next, d
                elif kind == ACTIVATION:
                    if m == 1:
                        activation_backward_one(ws, d, inp_at, out_at, n_out, ops[i, ACT],
                                                X.dtype.type(op_params[i, ALPHA]))
                    else:
                        activation_backward(ws, d, ws, inp_at, out_at, m * n_out, ops[i, ACT], op_params[i, ALPHA])
                elif kind == DROPOUT:
                    if op_params[i, RATE] > 0:
                        dropout_backward(ws, d, ws, at[CACHE, i], m * n_in)
                elif kind == BATCHNORM:
                    batchnorm_backward(ws, d, grad, ws, at[CACHE, i], at[CACHE, i + 1] - n_in, params, off, ws,
                                       scratch_at, m, n_in)
            if penalized:
                value += add_penalty_gradient(grad, params, ops, op_params, penalty_factor)
            out[e, LOSS_SUM] += value * m  # m × the batch objective, weighted or not
            out[e, CORRECT] += correct
            out[e, SEEN] += m
            out[e, STEPS] += 1
            if mode == GRADIENT:
                continue

            if opt_params[O.CLIPVALUE] > 0 or opt_params[O.CLIPNORM] > 0:
                clip(grad, opt_params[O.CLIPVALUE], opt_params[O.CLIPNORM])
            optimizer_step(params, slots, grad, ops, optimizer, opt_params, lrs[e], step + 1)
            step += 1
            if progress.size > 0:
                progress[0] = e * n + start + m
    return out


# ---------------------------------------------------------------------------------------------
# the backend interface (see densefit.backends)


def _read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a``: never written, and typed alike for numba whether the caller's
    array is writable or not (one compiled specialization)."""
    view = a.view()
    view.flags.writeable = False
    return view


def _seed(plan: Plan) -> np.uint64:
    return np.uint64(plan.seed)


def _sample_weight(plan: Plan, sample_weight, n: int) -> np.ndarray:
    """The row weights as the kernel reads them: an ``(n, 1)`` read-only column in the plan's dtype,
    gathered with each batch by the functions that gather its targets (typed as ``y`` usually is, so
    they compile nothing more); ``(0, 1)`` for none. Values (finite, ≥ 0) are the dispatcher's check."""
    if sample_weight is None:
        return _read_only(np.empty((0, 1), dtype=plan.dtype))
    return _read_only(np.ascontiguousarray(sample_weight).reshape(n, 1))


_IN_ORDER = np.zeros((1, 0), dtype=np.int64)  # an empty order: rows 0..n-1 every epoch
_M64 = (1 << 64) - 1                           # a Shuffle's seed and first epoch are taken modulo 2⁶⁴

# Each shuffled epoch's order is computed in the kernel from a Shuffle spec (epoch_order).
SHUFFLES = True
_ONE_PASS = np.zeros(1)                        # one epoch (its learning rate unused)


_NO_PROGRESS = np.zeros(0, dtype=np.int64)


def _run(mode, plan: Plan, state: State, X, y, orders, lrs, batch_size, grad, outputs, stats=None, output_act=0,
         sample_weight=None, progress=None, cancel=None, spec=None):
    return kernel(mode, plan.ops, plan.op_params, plan.opt_params, plan.loss, plan.optimizer, output_act,
                  _seed(plan), bool(plan.penalty_per_weight), state.params, state.slots,
                  state.stats if stats is None else stats, grad, outputs, X, y,
                  _sample_weight(plan, sample_weight, X.shape[0]), orders,
                  0 if spec is None else shuffle.half_bits(X.shape[0]),
                  np.uint64(0 if spec is None else spec.seed & _M64),
                  np.uint64(0 if spec is None else spec.first_epoch & _M64), lrs, int(batch_size), int(state.step),
                  _NO_PROGRESS if progress is None else progress, _NO_PROGRESS if cancel is None else cancel)


def train_epochs(plan: Plan, state: State, X, y, orders: np.ndarray | shuffle.Shuffle | None, lrs: np.ndarray,
                 batch_size: int, sample_weight: np.ndarray | None = None, progress: np.ndarray | None = None,
                 cancel: np.ndarray | None = None) -> np.ndarray:
    X, y, orders, lrs, batch_size, sample_weight = contract.training(plan, state, X, y, orders, lrs, batch_size,
                                                                    sample_weight)
    X, y, lrs = _read_only(X), _read_only(y), np.ascontiguousarray(lrs, dtype=np.float64)
    spec = orders if isinstance(orders, shuffle.Shuffle) else None
    if orders is None or spec is not None:
        orders = _IN_ORDER
    else:
        if orders.shape[0] > 1 and orders.strides[0] == 0:
            orders = orders[:1]  # the same order every epoch (an unshuffled fit): one row, not a copy per epoch
        orders = np.ascontiguousarray(orders, dtype=np.int64)
    grad = np.empty(plan.n_params, dtype=plan.dtype)
    return _run(TRAIN, plan, state, X, y, orders, lrs, batch_size, grad, grad[:0], sample_weight=sample_weight,
                progress=progress, cancel=cancel, spec=spec)


def permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The ``(n,)`` row order of ``epoch`` as the kernel computes it (:func:`epoch_order`), for the
    tests: ``shuffle.permutation`` bit for bit."""
    n = int(n)
    h = shuffle.half_bits(n)
    order, walking, tables = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(4 << h, np.uint32)
    epoch_order(order, walking, tables, np.uint64(seed & _M64), np.uint64(epoch & _M64), h)
    return order


def predict(plan: Plan, state: State, X, batch_size: int, logits: bool = False) -> np.ndarray:
    X, batch_size = contract.prediction(plan, state, X, batch_size)
    X = _read_only(X)
    out = np.empty(X.shape[0] * plan.n_outputs, dtype=plan.dtype)
    no_targets = X[:0, :1]  # typed as y always is: 2-D, read-only, the plan's dtype
    output_act = A.IDENTITY if logits else plan.output_activation
    _run(PREDICT, plan, state, X, no_targets, _IN_ORDER, _ONE_PASS, batch_size, out[:0], out, output_act=output_act)
    return out.reshape(X.shape[0], plan.n_outputs)


def loss_and_grad(plan: Plan, state: State, X, y, sample_weight: np.ndarray | None = None):
    X, y, sample_weight = contract.gradient(plan, state, X, y, sample_weight)
    X, y = _read_only(X), _read_only(y)
    grad = np.empty(plan.n_params, dtype=plan.dtype)
    scratch_stats = state.stats.copy()  # the training-mode forward moves running statistics: not the state's
    stats = _run(GRADIENT, plan, state, X, y, _IN_ORDER, _ONE_PASS, max(X.shape[0], 1), grad, grad[:0],
                 stats=scratch_stats, sample_weight=sample_weight)
    return stats[0, LOSS_SUM] / X.shape[0], grad
