"""The C++ core's GEMM kernels (densefit._core.gemm) against numpy, kernel by kernel.

Every kernel has the BLAS contract C = alpha · op(A) · op(B) + beta · C on row-major matrices
with leading dimensions; beta == 0 must not read C. Shapes cover the edges of the register
tiles (1, 7, 17, 63, 64, 65, 129), the skinny shapes of the dense layers (N = 1, M = 1, K = 1)
and all transpose combinations, in float32 and float64.
"""

import itertools

import numpy as np
import pytest

_core = pytest.importorskip("densefit._core")

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

KERNELS = ["auto", "naive", "blas"]  # and "skinny", only for M or N = 1: below
TOL = {np.float32: 2e-5, np.float64: 1e-12}
EDGES = [1, 7, 17, 63, 64, 65, 129]


def _operands(rng, M, N, K, dtype, trans_a, trans_b, pad=0):
    """op(a) (M × K), op(b) (K × N) and their float64 values; pad > 0 stores a and b as column
    slices of wider arrays (leading dimension > width)."""
    A = rng.standard_normal((M, K))
    B = rng.standard_normal((K, N))
    stored = []
    for X, trans in ((A, trans_a), (B, trans_b)):
        X = X.T if trans else X
        if pad:
            wide = np.full((X.shape[0], X.shape[1] + pad), np.nan, dtype)
            wide[:, : X.shape[1]] = X
            stored.append(wide[:, : X.shape[1]])
        else:
            stored.append(np.ascontiguousarray(X, dtype))
    a, b = stored
    A = (a.T if trans_a else a).astype(np.float64)
    B = (b.T if trans_b else b).astype(np.float64)
    return a, b, A, B


def _check(C, expected, K, dtype):
    tol = TOL[dtype]
    np.testing.assert_allclose(C, expected, rtol=tol, atol=tol * np.sqrt(max(K, 1)) * 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_edge_shapes(kernel, trans_a, trans_b, dtype):
    rng = np.random.default_rng(7)
    shapes = list(itertools.product(EDGES, [1, 7, 17, 64, 65], [1, 7, 64, 65]))
    if kernel == "naive":  # the reference loops are slow: a subset
        shapes = shapes[::7]
    for M, N, K in shapes:
        a, b, A, B = _operands(rng, M, N, K, dtype, trans_a, trans_b)
        C = _core.gemm(a, b, trans_a, trans_b, kernel)
        assert C.dtype == dtype and C.shape == (M, N)
        _check(C, A @ B, K, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", [(64, 64, 32), (64, 64, 64), (32, 64, 64), (256, 1, 100), (100, 1, 256),
                                   (1, 100, 256), (64, 1, 1), (1, 1, 64), (129, 65, 17), (3, 200, 5)])
@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5])
def test_alpha_beta_and_leading_dimensions(kernel, shape, beta, dtype):
    """beta = 0 must ignore C (it holds NaN here); other betas scale it; a, b and C are column
    slices of wider arrays so every leading dimension exceeds the width."""
    M, N, K = shape
    rng = np.random.default_rng(M * 1000 + N * 10 + K)
    for trans_a, trans_b in itertools.product((False, True), repeat=2):
        a, b, A, B = _operands(rng, M, N, K, dtype, trans_a, trans_b, pad=3)
        C0 = rng.standard_normal((M, N))
        wide = np.full((M, N + 5), np.nan, dtype)
        out = wide[:, :N]
        if beta != 0:
            out[...] = C0
        C = _core.gemm(a, b, trans_a, trans_b, kernel, alpha=0.75, beta=beta, out=out)
        assert np.shares_memory(C, wide)
        expected = 0.75 * (A @ B) + (beta * out.astype(np.float64) if beta != 0 else 0)
        if beta != 0:
            expected = 0.75 * (A @ B) + beta * C0.astype(dtype).astype(np.float64)
        _check(C, expected, K, dtype)
        assert np.isnan(wide[:, N:]).all(), "the kernel wrote past the leading dimension's width"


@pytest.mark.parametrize("kernel", KERNELS)
def test_zero_inner_dimension(kernel):
    """K = 0: C = beta · C."""
    a = np.zeros((3, 0), np.float32)
    b = np.zeros((0, 4), np.float32)
    out = np.full((3, 4), 2.0, np.float32)
    C = _core.gemm(a, b, kernel=kernel, beta=0.5, out=out)
    np.testing.assert_array_equal(C, np.ones((3, 4), np.float32))
    np.testing.assert_array_equal(_core.gemm(a, b, kernel=kernel), np.zeros((3, 4), np.float32))


@settings(max_examples=150, deadline=None)
@given(M=st.integers(1, 80), N=st.integers(1, 80), K=st.integers(0, 80), trans_a=st.booleans(),
       trans_b=st.booleans(), f64=st.booleans(), kernel=st.sampled_from(["auto", "blas"]),
       beta=st.sampled_from([0.0, 1.0]), seed=st.integers(0, 2**32 - 1))
def test_random_shapes(M, N, K, trans_a, trans_b, f64, kernel, beta, seed):
    dtype = np.float64 if f64 else np.float32
    rng = np.random.default_rng(seed)
    a, b, A, B = _operands(rng, M, N, K, dtype, trans_a, trans_b)
    C0 = rng.standard_normal((M, N)).astype(dtype)
    out = C0.copy() if beta else np.full((M, N), np.nan, dtype)
    C = _core.gemm(a, b, trans_a, trans_b, kernel, beta=beta, out=out)
    _check(C, A @ B + beta * C0.astype(np.float64), K, dtype)


def test_bad_arguments():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="kernel"):
        _core.gemm(a, a.T.copy(), kernel="fast")
    with pytest.raises(ValueError, match="out"):
        _core.gemm(a, a.T.copy(), beta=1.0)
    with pytest.raises(ValueError, match="contiguous rows"):
        _core.gemm(np.ones((4, 3), np.float32).T, a)
    with pytest.raises(ValueError):
        _core.gemm(a, a, out=np.zeros((3, 3), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", ["skinny", "auto"])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_matrix_vector_shapes(kernel, beta, dtype):
    """N = 1 (one dot per row, or axpys along op(A)'s rows) and M = 1, every layout, padded
    leading dimensions (strided vectors and a strided column of C), the vector-width edges."""
    rng = np.random.default_rng(11)
    sizes = [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 129, 256]
    for (M, N), other, trans_a, trans_b, pad in itertools.product(
            [(1, 1)] + [(s, 1) for s in sizes] + [(1, s) for s in sizes], [1, 3, 16, 17, 100, 256],
            (False, True), (False, True), (0, 2)):
        K = other
        a, b, A, B = _operands(rng, M, N, K, dtype, trans_a, trans_b, pad=pad)
        C0 = rng.standard_normal((M, N))
        wide = np.full((M, N + pad), np.nan, dtype)
        out = wide[:, :N]
        out[...] = C0 if beta else np.nan
        C = _core.gemm(a, b, trans_a, trans_b, kernel, alpha=1.5, beta=beta, out=out)
        expected = 1.5 * (A @ B) + (beta * C0.astype(dtype).astype(np.float64) if beta else 0)
        _check(C, expected, K, dtype)
        assert np.isnan(wide[:, N:]).all()


def test_skinny_kernel_rejects_other_shapes():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="skinny"):
        _core.gemm(a, np.ones((4, 2), np.float32), kernel="skinny")


BLOCK_BUILT = _core.build_info()["block_gemm"]
needs_block = pytest.mark.skipif(not BLOCK_BUILT, reason="block_gemm is compiled for AVX-512 builds only")


@needs_block
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("pad", [0, 3])
def test_block_kernel_edges(trans_a, pad):
    """block_gemm (float32, AVX-512): blocks of 6 rows then the last 1-5, panels of 64 columns then
    one of 1-4 vectors whose last is masked. Every M up to 13 and around 64, N around the vector
    widths, K from 1; padded leading dimensions, and no write past N (out holds NaN there)."""
    rng = np.random.default_rng(3)
    for M, N, K in itertools.product(list(range(1, 14)) + [63, 64, 65], [16, 17, 31, 47, 48, 63, 64, 65, 80, 129, 200],
                                     [1, 2, 7, 64]):
        a, b, A, B = _operands(rng, M, N, K, np.float32, trans_a, False, pad=pad)
        wide = np.full((M, N + 2), np.nan, np.float32)
        C = _core.gemm(a, b, trans_a, False, "block", out=wide[:, :N])
        _check(C, A @ B, K, np.float32)
        assert np.isnan(wide[:, N:]).all(), (M, N, K)


@needs_block
@settings(max_examples=100, deadline=None)
@given(M=st.integers(1, 40), N=st.integers(16, 200), K=st.integers(1, 80), trans_a=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_block_kernel_random_shapes(M, N, K, trans_a, seed):
    rng = np.random.default_rng(seed)
    a, b, A, B = _operands(rng, M, N, K, np.float32, trans_a, False)
    _check(_core.gemm(a, b, trans_a, False, "block"), A @ B, K, np.float32)


def test_block_kernel_rejects_what_it_does_not_do():
    a = np.ones((8, 8), np.float32)
    b = np.ones((8, 32), np.float32)
    if not BLOCK_BUILT:
        with pytest.raises(ValueError, match="AVX-512"):
            _core.gemm(a, b, kernel="block")
        return
    for kwargs in ({"trans_b": True, "b": b.T.copy()}, {"alpha": 2.0}, {"b": np.ones((8, 15), np.float32)},
                   {"b": np.ones((8, 9000), np.float32)},  # K·N over the limit for a few rows
                   {"a": np.ones((65, 8), np.float32), "b": np.ones((8, 3000), np.float32)}):  # ... and for 65 rows
        args = {"a": a, "b": b, "kernel": "block", **kwargs}
        with pytest.raises(ValueError, match="'block' kernel needs"):
            _core.gemm(**args)
    with pytest.raises(ValueError, match="kernel must be"):  # float64 has no block kernel
        _core.gemm(a.astype(np.float64), b.astype(np.float64), kernel="block")


def _relu_like(rng, rows, cols, zeros):
    """|normal| values with a share `zeros` of exact zeros (what a relu writes)."""
    a = np.abs(rng.standard_normal((rows, cols))).astype(np.float32)
    a[rng.random((rows, cols)) < zeros] = 0.0
    return a


@needs_block
@pytest.mark.parametrize("zeros", [0.3, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("M, N, K", [(64, 64, 64), (64, 64, 32), (13, 70, 33), (20, 130, 17), (12, 16, 100)])
def test_block_kernel_skipping_zeros_keeps_the_bits(M, N, K, zeros):
    """Blocks of six rows of A that are mostly zeros run as pairs over the columns where a row is
    not 0; the first block that is dense ends that. So with dense first rows every block runs the
    full product, and with sparse ones the zero-skipping pairs: rows 6.. must be the same bits
    either way, and close to numpy's product."""
    rng = np.random.default_rng(M + N + K)
    b = rng.standard_normal((K, N)).astype(np.float32)
    rest = _relu_like(rng, M - 6, K, zeros)
    dense_head = np.abs(rng.standard_normal((6, K))).astype(np.float32) + 1.0
    sparse_head = _relu_like(rng, 6, K, 0.95)
    full = _core.gemm(np.vstack([dense_head, rest]), b, kernel="block")
    skipping = _core.gemm(np.vstack([sparse_head, rest]), b, kernel="block")
    np.testing.assert_array_equal(skipping[6:], full[6:])
    _check(skipping, np.vstack([sparse_head, rest]).astype(np.float64) @ b.astype(np.float64), K, np.float32)
    if zeros == 1.0:
        assert (skipping[6:] == 0).all() and not np.signbit(skipping[6:]).any()


@needs_block
def test_block_kernel_skipping_zeros_keeps_nan_rows():
    """NaN is not 0: a NaN in a mostly-zero row of A reaches that row of C, as in the full product."""
    rng = np.random.default_rng(5)
    a = _relu_like(rng, 12, 64, 0.8)
    a[7, 3] = np.nan
    C = _core.gemm(a, rng.standard_normal((64, 64)).astype(np.float32), kernel="block")
    assert np.isnan(C[7]).all() and np.isfinite(np.delete(C, 7, axis=0)).all()


@needs_block
@settings(max_examples=60, deadline=None)
@given(M=st.integers(1, 40), N=st.integers(16, 150), K=st.integers(1, 80), zeros=st.floats(0.0, 1.0),
       seed=st.integers(0, 2**32 - 1))
def test_block_kernel_random_sparse_rows(M, N, K, zeros, seed):
    rng = np.random.default_rng(seed)
    a = _relu_like(rng, M, K, zeros)
    b = rng.standard_normal((K, N)).astype(np.float32)
    _check(_core.gemm(a, b, kernel="block"), a.astype(np.float64) @ b.astype(np.float64), K, np.float32)
