"""The numba port of the core's elementwise math (``densefit.backends.numba_vmath``, which binds
``densefit.activations``' exp, expm1, log1p and tanh in jitted code) gives the same bits as the
core's (``cpp/include/densefit/vmath.hpp`` through ``_core.vmath``), over the ranges of
tests/test_vmath.py (every overflow, underflow and saturation threshold), the edge cases, and in a
loop as for a lone element. Its error against libm is then the core's, which test_vmath.py bounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

_core = pytest.importorskip("densefit._core")
numba = pytest.importorskip("numba")

from densefit import activations as A  # noqa: E402
from densefit.backends import numba_vmath  # noqa: E402,F401  (binds A's four functions in jitted code)

FUNCTIONS = ("exp", "expm1", "log1p", "tanh")
DTYPES = (np.float32, np.float64)
RANGE = {np.float32: {"exp": (-110, 95), "expm1": (-50, 95), "log1p": (-1, 1e30), "tanh": (-20, 20)},
         np.float64: {"exp": (-750, 715), "expm1": (-50, 715), "log1p": (-1, 1e300), "tanh": (-30, 30)}}
EDGES = [0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, 1.0, -2.0, 1e-30, -1e-30, 1e-300, -1e-300, 88.72, 88.73, -87.5,
         -103.9, 709.78, 709.79, -745.1, 1e30, -1e30]


def _loop(name):
    f = getattr(A, name)

    @numba.njit(error_model="numpy")
    def run(out, x):
        for i in range(x.size):
            out[i] = f(x[i])
    return run


LOOPS = {name: _loop(name) for name in FUNCTIONS}


def _grid(name, dtype):
    lo, hi = RANGE[dtype][name]
    with np.errstate(over="ignore"):
        x = [np.linspace(lo, hi, 20001), np.linspace(-3, 3, 6001), np.array(EDGES)]
        if name == "log1p":
            tiny = np.finfo(dtype).tiny
            x += [np.geomspace(tiny, hi, 4001), -np.geomspace(tiny, 1, 2001)]
        return np.concatenate(x).astype(dtype)


def _same_bits(a, b):
    u = np.uint32 if a.dtype == np.float32 else np.uint64
    return (a.view(u) == b.view(u)) | (np.isnan(a) & np.isnan(b))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_same_bits_as_the_core(name, dtype):
    x = _grid(name, dtype)
    out = np.empty_like(x)
    LOOPS[name](out, x)
    assert out.dtype == dtype
    differ = ~_same_bits(out, _core.vmath(name, x))
    assert not differ.any(), x[differ][:10]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(FUNCTIONS), st.sampled_from(DTYPES),
       st.floats(allow_nan=True, allow_infinity=True, width=32))
def test_a_lone_element_as_in_a_loop(name, dtype, value):
    """A scalar call (a loop's remainder) gives the bits of the vectorized body."""
    x = np.full(67, value, dtype=dtype)
    out = np.empty_like(x)
    LOOPS[name](out, x)
    alone = np.empty(1, dtype=dtype)
    LOOPS[name](alone, x[:1])
    assert _same_bits(out, np.full_like(out, alone[0])).all()
    assert _same_bits(out[:1], _core.vmath(name, x[:1])).all()


def test_other_types_are_refused():
    @numba.njit
    def call(x):
        return A.exp(x)

    with pytest.raises(numba.core.errors.TypingError):
        call(3)
