"""The C++ core's elementwise math (``cpp/include/densefit/vmath.hpp``) for numba: exp, expm1,
log1p and tanh written without library calls, so that a jitted loop calling them on every element
vectorizes (numba's own ``np.exp``/``np.tanh`` are a libm call per element, which LLVM cannot
vectorize without SVML, and numba's llvmlite has none). Same method, constants and order of
operations as vmath.hpp, and numba contracts no multiply-add the source does not write (as the
core's ``-ffp-contract=off``): every function gives the same bits as the core's, which
``tests/test_numba_vmath.py`` checks against ``_core.vmath``. The method and its measured errors
against libm are vmath.hpp's docstring and docs/design.md ("Elementwise math").

Importing this module binds :mod:`densefit.activations`' ``exp``, ``expm1``, ``log1p`` and ``tanh``
(numpy's functions for arrays, which the activation formulas call) in jitted code to these
forms: a float32 or float64 scalar in, the same type out. The constants of the two widths are
in :class:`_Float32` and :class:`_Float64`, picked when numba types a call
(:func:`numba.extending.overload`). Integer steps are on the float's bits (:func:`to_bits`,
:func:`from_bits`: LLVM bitcasts) and cast back to the width after each operation: numba widens
uint32 arithmetic to 64 bits, and the truncation is the C++ code's unsigned wrap-around.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

from .. import activations as A

_OPTIONS = {"cache": True, "error_model": "numpy", "nogil": True}


def _bitcast(source, target):
    """The signature and code of an intrinsic reinterpreting a ``source`` value's bits as ``target``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(target))
    return target(source), codegen


@intrinsic
def to_bits(typingctx, x):
    """The bits of a float32 (float64) as a uint32 (uint64)."""
    U = {types.float32: types.uint32, types.float64: types.uint64}.get(x)
    return None if U is None else _bitcast(x, U)


@intrinsic
def from_bits(typingctx, u):
    """The float32 (float64) whose bits are the uint32 (uint64) ``u``."""
    F = {types.uint32: types.float32, types.uint64: types.float64}.get(u)
    return None if F is None else _bitcast(u, F)


class _Float32:
    T, U = np.float32, np.uint32
    MANTISSA = np.uint32(23)
    BIAS = np.uint32(127)
    SHIFTER = np.float32(12582912.0)  # 1.5 · 2^23: adding it rounds |v| < 2^22 to an integer
    LN2_HI = np.float32(0.693359375)  # 9 significant bits: n · LN2_HI is exact for |n| < 2^15
    LN2_LO = np.float32(-2.12194440e-4)
    EXP_LO, EXP_HI, MAX_EXP = np.float32(-104.0), np.float32(89.0), np.float32(128.0)
    EXPM1_TAIL = tuple(np.float32(1.0 / f) for f in (2, 6, 24, 120, 720, 5040, 40320, 362880))
    LOG1P_SERIES = tuple(np.float32(2.0 / k) for k in (3, 5, 7, 9))
    # Cephes' expf polynomial, highest power first
    EXP_POLY = tuple(np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                                               1.6666665459e-1, 5.0000001201e-1))


class _Float64:
    T, U = np.float64, np.uint64
    MANTISSA = np.uint64(52)
    BIAS = np.uint64(1023)
    SHIFTER = np.float64(6755399441055744.0)  # 1.5 · 2^52
    LN2_HI = np.float64(6.93147180369123816490e-01)  # 32 significant bits
    LN2_LO = np.float64(1.90821492927058770002e-10)
    EXP_LO, EXP_HI, MAX_EXP = np.float64(-746.0), np.float64(710.0), np.float64(1024.0)
    EXPM1_TAIL = tuple(np.float64(1.0 / f) for f in (2, 6, 24, 120, 720, 5040, 40320, 362880, 3628800, 39916800,
                                                       479001600, 6227020800, 87178291200, 1307674368000))
    LOG1P_SERIES = tuple(np.float64(2.0 / k) for k in (3, 5, 7, 9, 11, 13, 15, 17, 19, 21))
    EXP_POLY = ()


def _constants(x):
    return _Float32 if x == types.float32 else _Float64 if x == types.float64 else None


def _estrin(c):
    """A jitted ``p(x) = c[0] + c[1] x + …`` by Estrin's scheme for the constant coefficients ``c``,
    grouped exactly as vmath.hpp's ``estrin<N>`` groups them."""
    n = len(c)
    if n == 1:
        c0 = c[0]
        return lambda x, x2, x4, x8: c0
    if n == 2:
        c0, c1 = c
        return lambda x, x2, x4, x8: c0 + c1 * x
    half = 2 if n <= 4 else 4 if n <= 8 else 8
    low, high = _compile(_estrin(c[:half])), _compile(_estrin(c[half:]))
    if half == 2:
        return lambda x, x2, x4, x8: low(x, x2, x4, x8) + high(x, x2, x4, x8) * x2
    if half == 4:
        return lambda x, x2, x4, x8: low(x, x2, x4, x8) + high(x, x2, x4, x8) * x4
    return lambda x, x2, x4, x8: low(x, x2, x4, x8) + high(x, x2, x4, x8) * x8


def _compile(fn):
    return njit(**_OPTIONS)(fn)


def _series(c):
    """``p(x)`` by :func:`_estrin`, the powers of ``x`` computed as vmath.hpp's ``estrin(c, x)`` does."""
    p = _compile(_estrin(c))

    def series(x):
        x2 = x * x
        x4 = x2 * x2
        return p(x, x2, x4, x4 * x4)
    return _compile(series)


def _kernels(C):
    """The functions for one width, their constants frozen from ``C``."""
    T, U = C.T, C.U
    MANTISSA, BIAS, SHIFTER, LN2_HI, LN2_LO = C.MANTISSA, C.BIAS, C.SHIFTER, C.LN2_HI, C.LN2_LO
    EXP_LO, EXP_HI, MAX_EXP = C.EXP_LO, C.EXP_HI, C.MAX_EXP
    LOG2E, HALF, ONE, TWO, ZERO = T(1.44269504088896340736), T(0.5), T(1), T(2), T(0)
    SQRT_HALF = T(0.70710678118654752440)
    ONE_BITS = U(U(BIAS) << MANTISSA)
    MANTISSA_MASK = U(U(U(1) << MANTISSA) - U(1))
    INF, NAN = T(np.inf), T(np.nan)
    expm1_tail = _series(C.EXPM1_TAIL)
    log1p_series = _series(C.LOG1P_SERIES)
    float32 = T is np.float32
    P = C.EXP_POLY if float32 else (T(0),) * 6

    @_compile
    def select(c, a, b):
        return a if c else b

    @_compile
    def clamp(x, lo, hi):
        return select(x > hi, hi, select(x < lo, lo, x))

    @_compile
    def pow2(n):  # 2^n for n in the normal exponent range, n modulo 2^bits
        return from_bits(U(U(n + BIAS) << MANTISSA))

    @_compile
    def shifted_integer(shifted):
        return U(to_bits(shifted) - to_bits(SHIFTER))

    @_compile
    def reduce_ln2(x):  # x = n ln2 + r: (r, n as a float, n modulo 2^bits)
        k = x * LOG2E + SHIFTER
        nf = k - SHIFTER
        r = (x - nf * LN2_HI) - nf * LN2_LO
        return r, nf, shifted_integer(k)

    @_compile
    def exp_reduced(r):
        if float32:
            p = P[0]
            p = p * r + P[1]
            p = p * r + P[2]
            p = p * r + P[3]
            p = p * r + P[4]
            p = p * r + P[5]
            return p * (r * r) + r + ONE
        return ONE + (r + (r * r) * expm1_tail(r))

    @_compile
    def exp(x):
        r, nf, n = reduce_ln2(clamp(x, EXP_LO, EXP_HI))
        e = exp_reduced(r)
        n1 = shifted_integer(nf * HALF + SHIFTER)
        return (e * pow2(n1)) * pow2(U(n - n1))

    @_compile
    def expm1(x):
        r, nf, n = reduce_ln2(clamp(x, T(-40), EXP_HI))
        em = r + (r * r) * expm1_tail(r)
        top = nf == MAX_EXP
        s = pow2(U(n - U(top)))
        y = s * em + (s - select(top, HALF, ONE))
        full = select(top, y + y, y)
        return select(x == ZERO, x, full)

    @_compile
    def log1p(x):
        u = ONE + x
        shifted = U(to_bits(u) + U(ONE_BITS - to_bits(SQRT_HALF)))
        k = U(U(shifted >> MANTISSA) - BIAS)
        m = from_bits(U(U(shifted & MANTISSA_MASK) + to_bits(SQRT_HALF)))
        kf = from_bits(U(to_bits(SHIFTER) + k)) - SHIFTER
        c = (x - (u - ONE)) / u
        f = m - ONE
        s = f / (TWO + f)
        z = s * s
        R = z * log1p_series(z)
        half_f2 = HALF * f * f
        y = kf * LN2_HI + (f - (half_f2 - (s * (half_f2 + R) + (kf * LN2_LO + c))))
        below = select(x == -ONE, -INF, NAN)
        keep_x = (x == ZERO) | (not (x < INF))
        return select(x <= -ONE, below, select(keep_x, x, y))

    @_compile
    def tanh(x):
        e = expm1(-TWO * abs(x))
        v = -e / (e + TWO)  # ≥ +0 (e in (-1, 0]), so copysign(v, x) is these selects (±0: x itself)
        return select(x < ZERO, -v, select(x == ZERO, x, v))

    return {"exp": exp, "expm1": expm1, "log1p": log1p, "tanh": tanh}


_KERNELS = {np.float32: None, np.float64: None}


def _kernel(name, x):
    C = _constants(x)
    if C is None:
        return None
    if _KERNELS[C.T] is None:
        _KERNELS[C.T] = _kernels(C)
    return _KERNELS[C.T][name]


def _overload(stub):
    """Bind ``stub`` (one of :mod:`densefit.activations`' four, numpy's for arrays) in jitted code to
    the kernel of its name for the argument's width."""
    @overload(stub, inline="always", jit_options=_OPTIONS)
    def typed(x):
        kernel = _kernel(stub.__name__, x)
        if kernel is None:
            return None
        return lambda x: kernel(x)


#: The functions of densefit.activations this module binds in jitted code.
BOUND = (A.exp, A.expm1, A.log1p, A.tanh)
for _stub in BOUND:
    _overload(_stub)
