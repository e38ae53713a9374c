// block_gemm: C (M × N) = op(A) (M × K) · B (K × N) in float, row-major, B not transposed, for
// the small products of W3-sized layers (B up to kBlockGemmBElements, kept in L1/L2 unpacked).
// An AVX-512 register-blocked kernel: MR ≤ 6 rows of C by up to 64 columns (4 vectors) at a
// time, 24 accumulators, each a chain of one FMA per k, k in order. An epilogue finishes each
// tile in registers before it is stored, so Dense fuses its bias and activation (forward), or the
// activation's backward and the bias gradient of the layer below (dinp), into the product instead
// of sweeping the (m × n) buffer again. Rows of A that are mostly zeros (a relu's output, or a
// gradient through one) skip their zero terms in pairs (block_gemm_sparse_six), same bits.
// Where it runs is dispatch.hpp's block_gemm_applies. It is level with OpenBLAS's small-matrix
// kernels and gives OpenBLAS's bits there (both sum k in order with one FMA per step); the
// epilogues in registers are its point (a callback per block of finished rows was slower).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "activation.hpp"
#include "dispatch.hpp"
#include "inline.hpp"

// The loops over a tile's rows and vectors must unroll completely, or the accumulators live in
// memory instead of registers.
#define DENSEFIT_UNROLL _Pragma("GCC unroll 8")

namespace densefit {

// Epilogues, finishing each tile of C in registers before it is stored (finish() below):
// A plain product.
struct NoEpilogue {};

// Dense forward: C = C + bias (per column, when bias is not null), then the activation A as
// bias_activation computes it (activate<A>): into C itself when out is null, else into out
// (leading dimension ldo) with C keeping the biased values (an activation whose gradient reads its
// input). IDENTITY: the bias only. (std::max(x, 0) keeps NaN and -0, as vmaxps(0, x) does.)
template <int64_t A>
struct BiasActivation {
    const float* bias;
    float alpha;
    float* out;
    int64_t ldo;
};

// Dense backward, dinp into a Dense's fused activation below (act, alpha): C = C · act'(z) as
// activation_gradient computes it, given the activation's output a and its input z (both of
// leading dimension ld; z may be a where the gradient does not read it), and when db is not null
// db = Σ_rows C in row order, row 0 first (the order of bias_activation_backward's sweep).
struct DinpGate {
    const float* z;
    const float* a;
    int64_t ld;
    float* db;
    int64_t act;
    float alpha;
};

// DinpGate for one activation code, the epilogue block_gemm instantiates.
template <int64_t A>
struct ActivationGate : DinpGate {};

#if defined(__AVX512F__)
// The mask of lanes [0, n) of a 16-float vector (none for n ≤ 0, all for n ≥ 16).
inline __mmask16 first_lanes(int64_t n) {
    return static_cast<__mmask16>((uint32_t{1} << std::clamp<int64_t>(n, 0, 16)) - 1);
}

// The tile of C at (row, col): acc[r][v] holds columns col + 16v …, the last vector's lanes
// limited by `last`.
template <int MR, int NV>
DENSEFIT_ALWAYS_INLINE void finish(const NoEpilogue&, __m512 (&)[MR][NV], int64_t, int64_t, __mmask16) {}

// activate<A> / activation_gradient<A> on a finished tile gone through memory (n a multiple of
// 16): one vectorized loop, out of line and shared by every tile shape, instead of vmath's code
// inlined for each of a tile's up to 24 vectors; the same functions as every other path, so the
// same bits. (The store and reload cost little next to the function.)
template <int64_t A>
DENSEFIT_NOINLINE void activate_tile(float* __restrict t, int64_t n, float alpha) {
    for (int64_t j = 0; j < n; j++) t[j] = activate<A>(t[j], alpha);
}

template <int64_t A>
DENSEFIT_NOINLINE void gradient_tile(float* __restrict d, const float* __restrict z, const float* __restrict a,
                                     int64_t n, float alpha) {
    for (int64_t j = 0; j < n; j++) d[j] = activation_gradient<A>(d[j], z[j], a[j], alpha);
}

template <int MR, int NV, int64_t A>
DENSEFIT_ALWAYS_INLINE void finish(const BiasActivation<A>& e, __m512 (&acc)[MR][NV], int64_t row, int64_t col,
                                   __mmask16 last) {
    const __m512 zero = _mm512_setzero_ps();
    DENSEFIT_UNROLL
    for (int v = 0; v < NV; v++) {
        const __m512 b = e.bias == nullptr ? zero : _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xFFFF, e.bias + col + 16 * v);
        DENSEFIT_UNROLL
        for (int r = 0; r < MR; r++) {
            if (e.bias != nullptr) acc[r][v] = _mm512_add_ps(acc[r][v], b);
            if constexpr (A == RELU) {
                if (e.out == nullptr)
                    acc[r][v] = _mm512_max_ps(zero, acc[r][v]);
                else
                    _mm512_mask_storeu_ps(e.out + (row + r) * e.ldo + col + 16 * v, v == NV - 1 ? last : 0xFFFF,
                                          _mm512_max_ps(zero, acc[r][v]));
            }
        }
    }
    if constexpr (A != IDENTITY && A != RELU) {
        alignas(64) float t[MR * NV * 16];
        DENSEFIT_UNROLL
        for (int r = 0; r < MR; r++)
            DENSEFIT_UNROLL
            for (int v = 0; v < NV; v++) _mm512_store_ps(t + (r * NV + v) * 16, acc[r][v]);
        activate_tile<A>(t, MR * NV * 16, e.alpha);
        DENSEFIT_UNROLL
        for (int r = 0; r < MR; r++)
            DENSEFIT_UNROLL
            for (int v = 0; v < NV; v++) {
                const __m512 y = _mm512_load_ps(t + (r * NV + v) * 16);
                if (e.out == nullptr)
                    acc[r][v] = y;
                else
                    _mm512_mask_storeu_ps(e.out + (row + r) * e.ldo + col + 16 * v, v == NV - 1 ? last : 0xFFFF, y);
            }
    }
}

template <int MR, int NV, int64_t A>
DENSEFIT_ALWAYS_INLINE void finish(const ActivationGate<A>& e, __m512 (&acc)[MR][NV], int64_t row, int64_t col,
                                   __mmask16 last) {
    const __m512 zero = _mm512_setzero_ps();
    if constexpr (A == RELU) {  // activation_gradient<RELU>: a > 0 ? d : 0, in registers
        DENSEFIT_UNROLL
        for (int v = 0; v < NV; v++)
            DENSEFIT_UNROLL
            for (int r = 0; r < MR; r++) {
                const __m512 a = _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xFFFF, e.a + (row + r) * e.ld + col + 16 * v);
                acc[r][v] = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, zero, _CMP_GT_OQ), acc[r][v]);
            }
    } else {
        alignas(64) float td[MR * NV * 16], tz[MR * NV * 16], ta[MR * NV * 16];
        DENSEFIT_UNROLL
        for (int r = 0; r < MR; r++)
            DENSEFIT_UNROLL
            for (int v = 0; v < NV; v++) {
                const __mmask16 lanes = v == NV - 1 ? last : 0xFFFF;
                const int64_t at = (row + r) * e.ld + col + 16 * v, i = (r * NV + v) * 16;
                _mm512_store_ps(td + i, acc[r][v]);
                _mm512_store_ps(ta + i, _mm512_maskz_loadu_ps(lanes, e.a + at));
                if constexpr (kGradientReadsInput<A>) _mm512_store_ps(tz + i, _mm512_maskz_loadu_ps(lanes, e.z + at));
            }
        gradient_tile<A>(td, kGradientReadsInput<A> ? tz : ta, ta, MR * NV * 16, e.alpha);
        DENSEFIT_UNROLL
        for (int r = 0; r < MR; r++)
            DENSEFIT_UNROLL
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_load_ps(td + (r * NV + v) * 16);
    }
    if (e.db == nullptr) return;
    DENSEFIT_UNROLL
    for (int v = 0; v < NV; v++) {
        const __mmask16 lanes = v == NV - 1 ? last : 0xFFFF;
        float* db = e.db + col + 16 * v;
        __m512 sum = row == 0 ? acc[0][v] : _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, db), acc[0][v]);
        DENSEFIT_UNROLL
        for (int r = 1; r < MR; r++) sum = _mm512_add_ps(sum, acc[r][v]);
        _mm512_mask_storeu_ps(db, lanes, sum);
    }
}

// Rows [0, MR) × columns [0, 16·NV) of C, the last vector's lanes limited by `last`: k over
// 0..K-1, or (LISTED) over ks[0..K), the columns of op(A) where one of the MR rows is not 0.
template <int MR, int NV, bool TRANS_A, bool LISTED, class Epilogue>
DENSEFIT_ALWAYS_INLINE void block_gemm_tile(float* __restrict C, int64_t ldc, const float* __restrict A, int64_t lda,
                                            const float* __restrict B, int64_t ldb, int64_t K,
                                            const int32_t* __restrict ks, __mmask16 last, const Epilogue& epilogue,
                                            int64_t row, int64_t col) {
    __m512 acc[MR][NV];
    DENSEFIT_UNROLL
    for (int r = 0; r < MR; r++)
        DENSEFIT_UNROLL
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
#pragma GCC unroll 2  // unrolled once: behind OpenBLAS without, level with it with
    for (int64_t t = 0; t < K; t++) {
        const int64_t k = LISTED ? ks[t] : t;
        const float* b = B + k * ldb;
        __m512 bv[NV];
        DENSEFIT_UNROLL
        for (int v = 0; v < NV - 1; v++) bv[v] = _mm512_loadu_ps(b + 16 * v);
        bv[NV - 1] = _mm512_maskz_loadu_ps(last, b + 16 * (NV - 1));
        DENSEFIT_UNROLL
        for (int r = 0; r < MR; r++) {
            const __m512 a = _mm512_set1_ps(TRANS_A ? A[k * lda + r] : A[r * lda + k]);
            DENSEFIT_UNROLL
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(a, bv[v], acc[r][v]);
        }
    }
    finish<MR, NV>(epilogue, acc, row, col, last);
    DENSEFIT_UNROLL
    for (int r = 0; r < MR; r++) {
        DENSEFIT_UNROLL
        for (int v = 0; v < NV - 1; v++) _mm512_storeu_ps(C + r * ldc + 16 * v, acc[r][v]);
        _mm512_mask_storeu_ps(C + r * ldc + 16 * (NV - 1), last, acc[r][NV - 1]);
    }
}

// Rows [row, row + MR) of C (C, A at that row), all N columns: panels of 64, then one of the
// remaining 1-63 (k as in block_gemm_tile).
template <int MR, bool TRANS_A, bool LISTED = false, class Epilogue>
DENSEFIT_ALWAYS_INLINE void block_gemm_rows(float* C, int64_t ldc, const float* A, int64_t lda, const float* B,
                                            int64_t ldb, int64_t N, int64_t K, const Epilogue& epilogue, int64_t row,
                                            const int32_t* ks = nullptr) {
    int64_t j = 0;
    for (; j + 64 <= N; j += 64)
        block_gemm_tile<MR, 4, TRANS_A, LISTED>(C + j, ldc, A, lda, B + j, ldb, K, ks, 0xFFFF, epilogue, row, j);
    const int64_t rest = N - j;
    if (rest == 0) return;
    const __mmask16 last = first_lanes(rest - (rest - 1) / 16 * 16);  // the lanes of the last vector
    switch ((rest + 15) / 16) {
        case 1: block_gemm_tile<MR, 1, TRANS_A, LISTED>(C + j, ldc, A, lda, B + j, ldb, K, ks, last, epilogue, row, j); break;
        case 2: block_gemm_tile<MR, 2, TRANS_A, LISTED>(C + j, ldc, A, lda, B + j, ldb, K, ks, last, epilogue, row, j); break;
        case 3: block_gemm_tile<MR, 3, TRANS_A, LISTED>(C + j, ldc, A, lda, B + j, ldb, K, ks, last, epilogue, row, j); break;
        default: block_gemm_tile<MR, 4, TRANS_A, LISTED>(C + j, ldc, A, lda, B + j, ldb, K, ks, last, epilogue, row, j); break;
    }
}

// ks = the k in [0, K) where row 0 or row 1 of A (lda apart, contiguous) is not 0 (NaN is not 0),
// in order; returns how many. ks needs K + 16 entries.
inline int64_t nonzero_columns(int32_t* ks, const float* A, int64_t lda, int64_t K) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 zero = _mm512_setzero_ps();
    int64_t n = 0;
    for (int64_t k = 0; k < K; k += 16) {
        const __mmask16 in = first_lanes(K - k);
        const __mmask16 used = _mm512_mask_cmp_ps_mask(in, _mm512_maskz_loadu_ps(in, A + k), zero, _CMP_NEQ_UQ) |
                               _mm512_mask_cmp_ps_mask(in, _mm512_maskz_loadu_ps(in, A + lda + k), zero, _CMP_NEQ_UQ);
        const __m512i index = _mm512_add_epi32(lane, _mm512_set1_epi32(static_cast<int32_t>(k)));
        _mm512_storeu_si512(ks + n, _mm512_maskz_compress_epi32(used, index));
        n += __builtin_popcount(used);
    }
    return n;
}

// Six rows of C from op(A) not transposed, as three pairs that skip the columns of A where both
// rows are 0, when that leaves at most kSparseShare (dispatch.hpp) of the work; false (nothing
// done) otherwise.
// A skipped term adds 0 · B[k, j] = ±0 to a sum that is never -0 (it starts at +0, and x + ±0 = x
// for x ≠ 0, +0 + ±0 = +0), so C has the bits of the full product, for finite B. (An infinite
// or NaN weight makes 0 · B NaN in the full product; skipped, it reaches only the rows that use
// it.) Relu outputs and the gradients gated by them are about half zeros, so a pair skips about
// a quarter of the terms of a hidden layer's products and of their dinp.

template <class Epilogue>
bool block_gemm_sparse_six(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t N,
                           int64_t K, const Epilogue& epilogue, int64_t row, int32_t* ks) {
    int64_t count[3];
    for (int p = 0; p < 3; p++) count[p] = nonzero_columns(ks + p * (K + 16), A + 2 * p * lda, lda, K);
    if (static_cast<double>(count[0] + count[1] + count[2]) > kSparseShare * 3 * static_cast<double>(K)) return false;
    for (int p = 0; p < 3; p++)
        block_gemm_rows<2, false, true>(C + 2 * p * ldc, ldc, A + 2 * p * lda, lda, B, ldb, N, count[p], epilogue,
                                        row + 2 * p, ks + p * (K + 16));
    return true;
}

// Blocks of 6 rows in order (the epilogues' column sums rely on it), then the last 1-5.
template <bool TRANS_A, class Epilogue>
void block_gemm_impl(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M,
                     int64_t N, int64_t K, const Epilogue& epilogue) {
    // Row i of op(A) starts at A + i·lda, or at A + i (stepping lda down k) when transposed.
    const auto at = [&](int64_t i) { return TRANS_A ? A + i : A + i * lda; };
    // Not transposed, A may be mostly zeros: blocks try block_gemm_sparse_six until one finds A dense.
    bool try_sparse = !TRANS_A && K >= 16;
    int32_t ks[3 * (kBlockGemmMaxK + 16)];
    int64_t i = 0;
    for (; i + 6 <= M; i += 6) {
        if (try_sparse) try_sparse = block_gemm_sparse_six(C + i * ldc, ldc, at(i), lda, B, ldb, N, K, epilogue, i, ks);
        if (!try_sparse) block_gemm_rows<6, TRANS_A>(C + i * ldc, ldc, at(i), lda, B, ldb, N, K, epilogue, i);
    }
    switch (M - i) {
        case 1: block_gemm_rows<1, TRANS_A>(C + i * ldc, ldc, at(i), lda, B, ldb, N, K, epilogue, i); break;
        case 2: block_gemm_rows<2, TRANS_A>(C + i * ldc, ldc, at(i), lda, B, ldb, N, K, epilogue, i); break;
        case 3: block_gemm_rows<3, TRANS_A>(C + i * ldc, ldc, at(i), lda, B, ldb, N, K, epilogue, i); break;
        case 4: block_gemm_rows<4, TRANS_A>(C + i * ldc, ldc, at(i), lda, B, ldb, N, K, epilogue, i); break;
        case 5: block_gemm_rows<5, TRANS_A>(C + i * ldc, ldc, at(i), lda, B, ldb, N, K, epilogue, i); break;
        default: break;
    }
}
#endif

// C = op(A) · B (beta = 0: C is only written), each tile finished by the epilogue; with an
// epilogue, A is never transposed (trans_a must be false). Call only where
// block_gemm_applies(M, N, K).
template <class Epilogue = NoEpilogue>
void block_gemm(float* C, int64_t ldc, const float* A, int64_t lda, bool trans_a, const float* B, int64_t ldb,
                int64_t M, int64_t N, int64_t K, const Epilogue& epilogue = Epilogue{}) {
#if defined(__AVX512F__)
    // Only plain products run op(A) transposed (Dense's epilogues come with A = its input or
    // dout, not transposed): the kernels are not built for the other pairs.
    if constexpr (std::is_same_v<Epilogue, NoEpilogue>) {
        if (trans_a) {
            block_gemm_impl<true>(C, ldc, A, lda, B, ldb, M, N, K, epilogue);
            return;
        }
    }
    block_gemm_impl<false>(C, ldc, A, lda, B, ldb, M, N, K, epilogue);
#else
    (void)C, (void)ldc, (void)A, (void)lda, (void)trans_a, (void)B, (void)ldb, (void)M, (void)N, (void)K,
        (void)epilogue;
#endif
}

}  // namespace densefit
