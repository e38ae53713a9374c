"""The C++ core's elementwise math (cpp/include/densefit/vmath.hpp, through ``_core.vmath``)
against a higher-precision reference: float32 results against numpy's float64 functions, float64
results against numpy's long double ones (x86's 80-bit format, 11 more bits), in ulp (units of the
result dtype's spacing at the exact value; in the subnormal range, of the least subnormal).

Measured maxima over the grids below, this build (docs/design.md, "Elementwise math"):

=============== ======== ========
function        float32  float64
=============== ======== ========
exp             0.96     0.96
expm1           1.42     2.03
log1p           0.75     0.78
tanh            2.49     2.50
sigmoid         2.19     2.04
softplus        1.54     1.54
elu             0.85     1.13
=============== ======== ========

gelu and its derivative are checked in absolute error, in units of the dtype's epsilon times
max(1, |x|) (gelu) or max(1, x²) (derivative): the tanh form cancels for negative x (1 + tanh → 0),
so its relative error there is the formula's, the same in numpy's reference; measured 1.25 / 1.10
(float32) and 1.29 / 1.15 (float64), where numpy's own is 0.95 / 1.10.

Edge cases are those of libm (NaN, ±inf, overflow, underflow to subnormals and 0, -0), and every
function gives the same bits for an element alone (the scalar remainder of a loop) as inside a
long array (its vectorized body): TinyPass and the general pass rely on it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

_core = pytest.importorskip("densefit._core")

from densefit import activations as A  # noqa: E402

L = np.longdouble
HAVE_LONG_DOUBLE = np.finfo(L).nmant >= 63
DTYPES = [np.float32, pytest.param(np.float64, marks=pytest.mark.skipif(
    not HAVE_LONG_DOUBLE, reason="needs an 80-bit long double for the float64 reference"))]

# Max error in ulp allowed per function (the measured maxima above, rounded up).
BOUND = {"exp": 1.0, "expm1": 2.5, "log1p": 1.0, "tanh": 3.0, "sigmoid": 2.5, "softplus": 2.0, "elu": 1.5}
# gelu, gelu_derivative: absolute error in eps · max(1, |x|) / eps · max(1, x²).
GELU_BOUND = 1.5

# The grid's range per function and dtype: past every threshold of the function (overflow,
# underflow, saturation) on both sides.
RANGE = {
    np.float32: {"exp": (-110, 95), "expm1": (-50, 95), "log1p": (-1, 1e30), "tanh": (-20, 20),
                 "sigmoid": (-110, 110), "softplus": (-110, 110), "elu": (-50, 10), "gelu": (-30, 30)},
    np.float64: {"exp": (-750, 715), "expm1": (-50, 715), "log1p": (-1, 1e300), "tanh": (-30, 30),
                 "sigmoid": (-750, 750), "softplus": (-750, 750), "elu": (-50, 10), "gelu": (-30, 30)},
}


def reference(name, x):
    """The exact function at x (float64 for float32 x, long double for float64 x)."""
    w = x.astype(np.float64 if x.dtype == np.float32 else L)
    with np.errstate(all="ignore"):
        if name == "exp":
            return np.exp(w)
        if name == "expm1":
            return np.expm1(w)
        if name == "log1p":
            return np.log1p(w)
        if name == "tanh":
            return np.tanh(w)
        if name == "sigmoid":
            return 1 / (1 + np.exp(-w))
        if name == "softplus":
            return np.logaddexp(w.dtype.type(0), w)
        if name == "elu":
            return np.where(w > 0, w, np.expm1(np.minimum(w, 0)))
        c = np.sqrt(w.dtype.type(2) / w.dtype.type(np.pi))
        k = w.dtype.type(A.GELU_K)
        t = np.tanh(c * (w + k * w ** 3))
        if name == "gelu":
            return 0.5 * w * (1 + t)
        return 0.5 * (1 + t) + 0.5 * w * (1 - t * t) * c * (1 + 3 * k * w * w)
    raise ValueError(name)


def ulps(got, exact, dtype):
    """|got - exact| in ulp of dtype at exact (0 where both are the same NaN, inf or number)."""
    with np.errstate(over="ignore"):
        rounded = exact.astype(dtype)  # inf where exact overflows dtype
    with np.errstate(all="ignore"):
        spacing = np.maximum(np.spacing(np.abs(rounded)).astype(L), L(np.finfo(dtype).smallest_subnormal))
        err = np.abs(got.astype(L) - exact.astype(L)) / spacing
    same = (got == rounded) | (np.isnan(got) & np.isnan(exact))
    return np.where(same, 0, err)


def gelu_error(name, x, got):
    exact = reference(name, x).astype(L)
    xl = x.astype(L)
    scale = np.maximum(1, np.abs(xl)) if name == "gelu" else np.maximum(1, xl * xl)
    return np.abs(got.astype(L) - exact) / (L(np.finfo(x.dtype).eps) * scale)


def grid(name, dtype):
    lo, hi = RANGE[dtype]["gelu" if name.startswith("gelu") else name]
    parts = [np.linspace(lo, hi, 400_001), np.linspace(max(lo, -2), min(hi, 2), 200_001)]
    if hi > 0:
        parts.append(np.geomspace(1e-40 if dtype == np.float32 else 1e-300, hi, 200_000))
    parts.append(-np.geomspace(1e-40 if dtype == np.float32 else 1e-300, -lo, 200_000))
    x = np.concatenate(parts).astype(dtype)
    return x[x > -1] if name == "log1p" else x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(BOUND))
def test_within_bound_over_a_dense_grid(name, dtype):
    x = grid(name, dtype)
    got = _core.vmath(name, x)
    assert got.dtype == dtype and got.shape == x.shape
    err = ulps(got, reference(name, x), dtype)
    worst = int(np.argmax(err))
    assert err[worst] <= BOUND[name], (name, x[worst], got[worst], err[worst])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["gelu", "gelu_derivative"])
def test_gelu_within_bound_over_a_dense_grid(name, dtype):
    x = grid(name, dtype)
    err = gelu_error(name, x, _core.vmath(name, x))
    assert err.max() <= GELU_BOUND, (name, x[np.argmax(err)], err.max())


# Binary cross-entropy's restricted forms, float32 only (in double they are exp and log1p):
# e^x on [-87, 0] and log(1 + x) on [0, 1], the domains the loss gives them.
RESTRICTED = {"exp_nonpositive": ("exp", (-87.0, 0.0), 1.0), "log1p_unit": ("log1p", (0.0, 1.0), 4.5)}


@pytest.mark.parametrize("name", sorted(RESTRICTED))
def test_restricted_forms_within_bound_on_their_domain(name):
    exact_name, (lo, hi), bound = RESTRICTED[name]
    x = np.concatenate([np.linspace(lo, hi, 400_001), [lo, hi, -0.0, 1e-30, -1e-30]]).astype(np.float32)
    x = x[(x >= lo) & (x <= hi)]
    got = _core.vmath(name, x)
    err = ulps(got, reference(exact_name, x), np.float32)
    worst = int(np.argmax(err))
    assert err[worst] <= bound, (name, x[worst], got[worst], err[worst])
    assert np.isnan(_core.vmath(name, np.array([np.nan], np.float32))[0])
    np.testing.assert_array_equal(_core.vmath(name, x.astype(np.float64)), _core.vmath(exact_name, x.astype(np.float64)))


def test_log1p_near_minus_one():
    x = (-1 + np.geomspace(2 ** -24, 0.5, 100_000)).astype(np.float32)
    assert ulps(_core.vmath("log1p", x), reference("log1p", x), np.float32).max() <= BOUND["log1p"]


INF, NAN = np.inf, np.nan
# (name, x, expected) for both dtypes; the sign of a zero is checked too.
EDGES = [
    ("exp", [0.0, -0.0, INF, -INF, NAN, 1e4, -1e4], [1, 1, INF, 0, NAN, INF, 0]),
    ("expm1", [0.0, -0.0, INF, -INF, NAN, 1e4, -1e4, 1e-300], [0.0, -0.0, INF, -1, NAN, INF, -1, 1e-300]),
    ("log1p", [0.0, -0.0, -1, -2, -INF, INF, NAN, 1e-300], [0.0, -0.0, -INF, NAN, NAN, INF, NAN, 1e-300]),
    ("tanh", [0.0, -0.0, INF, -INF, NAN, 50, -50, 1e-300], [0.0, -0.0, 1, -1, NAN, 1, -1, 1e-300]),
    ("sigmoid", [0.0, -0.0, INF, -INF, NAN, 1e4, -1e4], [0.5, 0.5, 1, 0, NAN, 1, 0]),
    ("softplus", [INF, -INF, NAN, 1e4, -1e4], [INF, 0, NAN, 1e4, 0]),
    ("elu", [0.0, INF, -INF, NAN, 2.5, -1e4], [0.0, INF, -1, NAN, 2.5, -1]),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, x, expected", EDGES, ids=[e[0] for e in EDGES])
def test_edge_cases_as_libm(name, x, expected, dtype):
    with np.errstate(all="ignore"):
        x = np.array(x, dtype)
        expected = np.array(expected, dtype)
    got = _core.vmath(name, x)
    np.testing.assert_array_equal(got, expected)
    assert (np.signbit(got) == np.signbit(expected))[expected == 0].all(), (name, got)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_underflows_through_the_subnormals(dtype):
    """exp rounds once into the subnormal range (no flush to zero, no clamp to the least normal)."""
    tiny = np.finfo(dtype).tiny
    x = np.log(np.geomspace(np.finfo(dtype).smallest_subnormal, tiny, 10_000, dtype=np.float64)).astype(dtype)
    got = _core.vmath("exp", x)
    assert (got < tiny).sum() > 9_000 and (got > 0).all()
    if dtype == np.float32 or HAVE_LONG_DOUBLE:
        assert ulps(got, reference("exp", x), dtype).max() <= 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["gelu", "gelu_derivative"])
def test_gelu_edges_as_the_numpy_reference(name, dtype):
    """Where the tanh form is inf or NaN (x³ overflowing, 0 · inf), numpy's reference is too."""
    big = np.finfo(dtype).max
    x = np.array([0.0, -0.0, INF, -INF, NAN, big, -big, 1e15, -1e15], dtype)
    with np.errstate(all="ignore"):
        ref = (A.gelu_forward(x, None, dtype) if name == "gelu"
               else A.gelu_backward(np.ones_like(x), x, None, None, dtype))
    got = _core.vmath(name, x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    finite = np.isfinite(ref)
    np.testing.assert_array_equal(got[~finite & ~np.isnan(ref)], ref[~finite & ~np.isnan(ref)])
    np.testing.assert_allclose(got[finite], ref[finite], rtol=1e-6, atol=0)


NAMES = sorted(BOUND) + ["gelu", "gelu_derivative"] + sorted(RESTRICTED)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_an_element_alone_has_the_bits_it_has_in_an_array(name, dtype):
    x = np.random.default_rng(7).normal(scale=8, size=1003).astype(dtype)
    together = _core.vmath(name, x)
    alone = np.array([_core.vmath(name, x[i:i + 1])[0] for i in range(0, x.size, 17)])
    np.testing.assert_array_equal(alone.view(np.uint8), np.ascontiguousarray(together[::17]).view(np.uint8))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(BOUND)), st.lists(st.floats(width=32), min_size=1, max_size=40))
def test_any_float32_within_bound(name, values):
    x = np.array(values, np.float32)
    if name == "log1p":
        x = np.where(x < -1, -x, x).astype(np.float32)
    got = _core.vmath(name, x)
    exact = reference(name, x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(exact))
    assert ulps(got, exact, np.float32).max() <= BOUND[name], (name, x, got)


@pytest.mark.skipif(not HAVE_LONG_DOUBLE, reason="needs an 80-bit long double for the float64 reference")
@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(BOUND)), st.lists(st.floats(), min_size=1, max_size=40))
def test_any_float64_within_bound(name, values):
    x = np.array(values, np.float64)
    if name == "log1p":
        x = np.where(x < -1, -x, x)
    got = _core.vmath(name, x)
    exact = reference(name, x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(exact))
    assert ulps(got, exact, np.float64).max() <= BOUND[name], (name, x, got)


def test_shape_and_dtype_are_kept_and_inputs_checked():
    x = np.linspace(-3, 3, 24, dtype=np.float32).reshape(2, 3, 4)
    got = _core.vmath("tanh", x[:, ::-1])  # a strided view is read in its logical order
    assert got.shape == (2, 3, 4) and got.dtype == np.float32
    np.testing.assert_array_equal(got, _core.vmath("tanh", np.ascontiguousarray(x[:, ::-1])))
    with pytest.raises(ValueError, match="'exp', 'expm1'"):
        _core.vmath("cosh", x)
    with pytest.raises(TypeError, match="float32 or float64"):
        _core.vmath("exp", np.arange(3))
