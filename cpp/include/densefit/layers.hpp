// Forward and backward of each op kind over one batch. Size legend: m batch rows, n_in / n_out
// op widths, C BatchNorm features. Every matrix is contiguous row-major (m × width).
// Outputs first, then inputs, then sizes; gradients are prefixed d. A nullable dinp is skipped
// (the first op's input gradient is never needed).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "activation.hpp"
#include "dispatch.hpp"
#include "gemm.hpp"
#include "inline.hpp"
#include "parallel.hpp"
#include "rng.hpp"

namespace densefit {

// sums (cols) = Σ_rows a (rows × cols), rows ≥ 1: a dot product down each column where
// sums_down_columns (a narrow matrix: independent partial sums instead of one chain of dependent
// adds per column), else the rows added in order.
template <class T>
void column_sums(T* __restrict sums, const T* __restrict a, int64_t rows, int64_t cols) {
    if (sums_down_columns(rows, cols)) {
        const T one = 1;
        for (int64_t j = 0; j < cols; j++) sums[j] = dot(a + j, cols, &one, 0, rows);
        return;
    }
    for (int64_t j = 0; j < cols; j++) sums[j] = a[j];  // not std::copy: a memmove call for W1's one column
    for (int64_t r = 1; r < rows; r++) {
        const T* row = a + r * cols;
        for (int64_t j = 0; j < cols; j++) sums[j] += row[j];
    }
}

// out (m × n_out) += b (n_out) on every row; b may be null. One output is one loop down the rows.
template <class T>
DENSEFIT_ALWAYS_INLINE void add_bias(T* __restrict out, const T* __restrict b, int64_t m, int64_t n_out) {
    if (b == nullptr) return;
    if (n_out == 1) {
        for (int64_t r = 0; r < m; r++) out[r] += b[0];
        return;
    }
    for (int64_t r = 0; r < m; r++) {
        T* o = out + r * n_out;
        for (int64_t j = 0; j < n_out; j++) o[j] += b[j];
    }
}

// Calls f(width) with a width of a direct Dense as an std::integral_constant when it is below
// kNarrow, else as the int64_t: the loops over a tiny width (W1: 3 and 4 at batch 1) then unroll
// completely instead of running a vector loop's checks and its scalar remainder.
template <class F>
DENSEFIT_ALWAYS_INLINE void with_small_width(int64_t n, F&& f) {
    static_assert(kNarrow == 8, "one case per width below kNarrow");
    switch (n) {
        case 2: f(std::integral_constant<int64_t, 2>{}); break;
        case 3: f(std::integral_constant<int64_t, 3>{}); break;
        case 4: f(std::integral_constant<int64_t, 4>{}); break;
        case 5: f(std::integral_constant<int64_t, 5>{}); break;
        case 6: f(std::integral_constant<int64_t, 6>{}); break;
        case 7: f(std::integral_constant<int64_t, 7>{}); break;
        default: f(n); break;
    }
}

// out (m × n_out) = inp (m × n_in) · W (n_in × n_out) by rank-1 updates of each output row along
// contiguous rows of W. Width: int64_t or an std::integral_constant (with_small_width).
template <class T, class Width>
DENSEFIT_ALWAYS_INLINE void rank1_product(T* __restrict out, const T* __restrict inp, const T* __restrict W, int64_t m,
                                          int64_t n_in, Width n_out) {
    for (int64_t r = 0; r < m; r++) {
        const T* x = inp + r * n_in;
        T* o = out + r * n_out;
        for (int64_t j = 0; j < n_out; j++) o[j] = x[0] * W[j];
        for (int64_t k = 1; k < n_in; k++) {
            const T a = x[k];
            const T* w = W + k * n_out;
            for (int64_t j = 0; j < n_out; j++) o[j] += a * w[j];
        }
    }
}

// dW (n_in × n_out) = inpᵀ · dout by m rank-1 updates along contiguous rows of inp and dout: the
// first row writes, the others add.
template <class T, class Width>
DENSEFIT_ALWAYS_INLINE void rank1_gradient(T* __restrict dW, const T* __restrict inp, const T* __restrict dout, int64_t m,
                                           int64_t n_in, Width n_out) {
    for (int64_t r = 0; r < m; r++) {
        const T* x = inp + r * n_in;
        const T* d = dout + r * n_out;
        for (int64_t k = 0; k < n_in; k++) {
            const T a = x[k];
            T* g = dW + k * n_out;
            if (r == 0)
                for (int64_t j = 0; j < n_out; j++) g[j] = a * d[j];
            else
                for (int64_t j = 0; j < n_out; j++) g[j] += a * d[j];
        }
    }
}

// dinp (m × n_in) = dout · Wᵀ, one dot product along a row of W per element.
template <class T, class Width>
DENSEFIT_ALWAYS_INLINE void rowwise_dinp(T* __restrict dinp, const T* __restrict dout, const T* __restrict W, int64_t m,
                                         int64_t n_in, Width n_out) {
    for (int64_t r = 0; r < m; r++) {
        const T* d = dout + r * n_out;
        T* o = dinp + r * n_in;
        for (int64_t k = 0; k < n_in; k++) o[k] = dot(d, 1, W + k * n_out, 1, n_out);
    }
}

// The single-output Dense (n_out = 1, W a contiguous column of n_in) row by row: out (m) = one dot
// product per row of inp, dW = Σ_r dout[r] · inp row r (axpys along the rows), dinp = dout W
// (an outer product). Width: as for rank1_product, here the input width.
template <class T, class Width>
DENSEFIT_ALWAYS_INLINE void single_output_product(T* __restrict out, const T* __restrict inp, const T* __restrict W,
                                                  int64_t m, Width n_in) {
    for (int64_t r = 0; r < m; r++) out[r] = dot(inp + r * n_in, 1, W, 1, n_in);
}

template <class T, class Width>
DENSEFIT_ALWAYS_INLINE void single_output_gradient(T* __restrict dW, const T* __restrict inp, const T* __restrict dout,
                                                   int64_t m, Width n_in) {
    for (int64_t r = 0; r < m; r++) {
        const T a = dout[r];
        const T* x = inp + r * n_in;
        if (r == 0)
            for (int64_t k = 0; k < n_in; k++) dW[k] = a * x[k];
        else
            for (int64_t k = 0; k < n_in; k++) dW[k] += a * x[k];
    }
}

template <class T, class Width>
DENSEFIT_ALWAYS_INLINE void single_output_dinp(T* __restrict dinp, const T* __restrict dout, const T* __restrict W,
                                               int64_t m, Width n_in) {
    for (int64_t r = 0; r < m; r++)
        for (int64_t k = 0; k < n_in; k++) dinp[r * n_in + k] = dout[r] * W[k];
}

// out (m × n_out) = inp (m × n_in) · W (n_in × n_out), by dispatch.hpp's dense_kernel.
template <class T>
DENSEFIT_ALWAYS_INLINE void dense_product(T* __restrict out, const T* __restrict inp, const T* __restrict W, int64_t m,
                                          int64_t n_in, int64_t n_out) {
    switch (dense_kernel(m, n_in, n_out)) {
        case DenseKernel::GEMM: gemm(out, n_out, inp, n_in, false, W, n_out, false, m, n_out, n_in, T(1), T(0)); break;
        case DenseKernel::DOWN_COLUMNS:
            for (int64_t r = 0; r < m; r++) out[r] = inp[r * n_in] * W[0];
            for (int64_t k = 1; k < n_in; k++)
                for (int64_t r = 0; r < m; r++) out[r] += inp[r * n_in + k] * W[k];
            break;
        case DenseKernel::SINGLE_OUTPUT:
            with_small_width(n_in, [&](auto width) DENSEFIT_INLINE_LAMBDA {
                single_output_product(out, inp, W, m, width);
            });
            break;
        case DenseKernel::RANK1:
            with_small_width(n_out, [&](auto width) DENSEFIT_INLINE_LAMBDA {
                rank1_product(out, inp, W, m, n_in, width);
            });
            break;
    }
}

// The sweeps of bias_activation and its backward for one activation A (functions with restrict
// parameters: pointers captured by a lambda lose them, and the loops were versioned for aliasing),
// over n columns of m rows ld apart (ld = n, or a block of columns of a wider matrix when split, see
// bias_activation). InPlace: a is z (passed as null), overwritten by act(z).
template <int64_t A, bool InPlace, class T, class Width>
DENSEFIT_ALWAYS_INLINE void bias_activation_rows(T* __restrict z, T* __restrict a, const T* __restrict b, int64_t m,
                                                 Width n, Width ld, T alpha) {
    for (int64_t r = 0; r < m; r++) {
        T* zr = z + r * ld;
        T* ar = InPlace ? zr : a + r * ld;
        for (int64_t j = 0; j < n; j++) {
            const T v = b != nullptr ? zr[j] + b[j] : zr[j];
            if constexpr (kGradientReadsInput<A> && !InPlace) zr[j] = v;
            ar[j] = activate<A>(v, alpha);
        }
    }
}

// (Same bits, measured slower: four rows per pass; columns in cache-line blocks down all rows.)
template <int64_t A, class T, class Width>
DENSEFIT_ALWAYS_INLINE void bias_activation_backward_rows(T* __restrict d, T* __restrict db, const T* __restrict z,
                                                          const T* __restrict a, int64_t m, Width n, Width ld,
                                                          T alpha) {
    for (int64_t r = 0; r < m; r++) {
        T* dr = d + r * ld;
        const T* zr = z + r * ld;
        const T* ar = a + r * ld;
        for (int64_t j = 0; j < n; j++) {
            const T g = activation_gradient<A>(dr[j], zr[j], ar[j], alpha);
            dr[j] = g;
            if (db != nullptr) db[j] = r == 0 ? g : db[j] + g;  // column_sums' order: row 0, then + each row
        }
    }
}

// z (m × n) += b (b may be null), then, when a is not null, a = act(z) in the same sweep (a is
// another buffer). Then z keeps the biased values only if act's derivative reads its input
// (kGradientReadsInput; nothing else reads z), so relu's sweep reads z and writes only a.
// a may be z when act's derivative does not read its input: then z is overwritten by act(z), and
// the next passes read one buffer less (see forward()).
// A large sweep (sweep_splits) runs in blocks of columns over the pool's threads: elementwise, so
// the same bits.
template <class T>
DENSEFIT_ALWAYS_INLINE void bias_activation(T* z, T* a, const T* b, int64_t m, int64_t n, int64_t act, T alpha) {
    if (a == nullptr) return add_bias(z, b, m, n);
    with_activation(act, [&](auto code) DENSEFIT_INLINE_LAMBDA {
        const bool in_place = !kGradientReadsInput<code()> && a == z;
        if (sweep_splits(m, n)) {
            parallel_ranges(n, 0, [&](int64_t c0, int64_t c1) {
                const T* bc = b != nullptr ? b + c0 : nullptr;
                if (in_place)
                    bias_activation_rows<code(), true>(z + c0, static_cast<T*>(nullptr), bc, m, c1 - c0, n, alpha);
                else
                    bias_activation_rows<code(), false>(z + c0, a + c0, bc, m, c1 - c0, n, alpha);
            });
            return;
        }
        with_small_width(n, [&](auto width) DENSEFIT_INLINE_LAMBDA {
            if (in_place)
                bias_activation_rows<code(), true>(z, static_cast<T*>(nullptr), b, m, width, width, alpha);
            else
                bias_activation_rows<code(), false>(z, a, b, m, width, width, alpha);
        });
    });
}

// z (m × n_out) = inp (m × n_in) · W (n_in × n_out) + b (b may be null), and a = act(z) when a is
// not null (see bias_activation). The bias is added after the product (numpy's order, x @ W + b),
// not copied into C first for beta = 1: a copy per row is a memmove call per row, which with one
// output cost more than the matrix-vector product itself.
// Where dense_fuses_in_registers (block_gemm), the bias and the activation are applied to each
// tile of the product in registers (BiasActivation), with bias_activation's formulas and bits.
template <class T>
DENSEFIT_ALWAYS_INLINE void dense_forward(T* z, T* a, const T* inp, const T* W, const T* b, int64_t m, int64_t n_in,
                                          int64_t n_out, int64_t act, T alpha) {
    if constexpr (std::is_same_v<T, float>) {
        if (dense_fuses_in_registers<T>(m, n_in, n_out)) {
            float* out = a == z ? nullptr : a;  // null: act(z) replaces z
            with_activation(a == nullptr ? IDENTITY : act, [&](auto code) DENSEFIT_INLINE_LAMBDA {
                block_gemm(z, n_out, inp, n_in, false, W, n_out, m, n_out, n_in,
                           BiasActivation<code()>{b, alpha, out, n_out});
            });
            return;
        }
    }
    dense_product(z, inp, W, m, n_in, n_out);
    bias_activation(z, a, b, m, n_out, act, alpha);
}

// The backward of bias_activation: d (m × n) = d · act'(z) in place, given a = act(z), and
// db (n, may be null) = Σ_rows of the result, in the same sweep unless column_sums would sum
// down the columns (then after it, as for an unfused Dense). (A single-output Dense's dinp folded
// into this sweep was much slower in AVX2 and SSE2 builds; AVX-512 builds have gated_outer_dinp.)
// A large sweep (sweep_splits) runs in blocks of columns over the pool's threads, each column
// still summed down its rows in order: the same bits.
template <class T>
DENSEFIT_ALWAYS_INLINE void bias_activation_backward(T* d, T* db, const T* z, const T* a, int64_t m, int64_t n,
                                                     int64_t act, T alpha) {
    const bool sums_in_sweep = db != nullptr && !sums_down_columns(m, n);
    with_activation(act, [&](auto code) DENSEFIT_INLINE_LAMBDA {
        if (sweep_splits(m, n)) {
            parallel_ranges(n, 0, [&](int64_t c0, int64_t c1) {
                bias_activation_backward_rows<code()>(d + c0, sums_in_sweep ? db + c0 : nullptr, z + c0, a + c0, m,
                                                      c1 - c0, n, alpha);
            });
        } else {
            with_small_width(n, [&](auto width) DENSEFIT_INLINE_LAMBDA {
                bias_activation_backward_rows<code()>(d, sums_in_sweep ? db : nullptr, z, a, m, width, width, alpha);
            });
        }
    });
    if (db != nullptr && !sums_in_sweep) column_sums(db, d, m, n);
}

#if defined(__AVX512F__)
// A single-output Dense's dinp (m × n) = dout (m) ⊗ W (n), single_output_dinp's products, through
// the relu below: · [gate > 0] (gate m × n, the relu's output), and db (may be null) = Σ_rows of
// the result in row order; 64 columns at a time, their sums in registers. One sweep instead of
// single_output_dinp's and bias_activation_backward's.
inline void gated_outer_dinp(float* __restrict dinp, float* __restrict db, const float* __restrict gate,
                             const float* __restrict dout, const float* __restrict W, int64_t m, int64_t n) {
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; j += 64) {
        __mmask16 lanes[4];
        __m512 w[4], sum[4];
        DENSEFIT_UNROLL
        for (int v = 0; v < 4; v++) {
            lanes[v] = first_lanes(n - j - 16 * v);
            w[v] = _mm512_maskz_loadu_ps(lanes[v], W + j + 16 * v);
            sum[v] = zero;
        }
        for (int64_t r = 0; r < m; r++) {
            const __m512 g = _mm512_set1_ps(dout[r]);
            DENSEFIT_UNROLL
            for (int v = 0; v < 4; v++) {
                const int64_t at = r * n + j + 16 * v;
                const __mmask16 open = _mm512_mask_cmp_ps_mask(lanes[v], _mm512_maskz_loadu_ps(lanes[v], gate + at), zero,
                                                               _CMP_GT_OQ);
                const __m512 d = _mm512_maskz_mov_ps(open, _mm512_mul_ps(g, w[v]));
                _mm512_mask_storeu_ps(dinp + at, lanes[v], d);
                sum[v] = r == 0 ? d : _mm512_add_ps(sum[v], d);
            }
        }
        if (db != nullptr)
            for (int v = 0; v < 4; v++) _mm512_mask_storeu_ps(db + j + 16 * v, lanes[v], sum[v]);
    }
}
#endif

// dW = inpᵀ · dout, db = Σ_rows dout, dinp = dout · Wᵀ. With a gate (where gated_dinp_applies),
// dinp is the gradient through the fused activation below that produced inp: dinp · act'(z), and
// gate->db that activation's Dense's bias gradient, Σ_rows of it, in the product's epilogue
// (ActivationGate; one output, through a relu: gated_outer_dinp).
template <class T>
DENSEFIT_ALWAYS_INLINE void dense_backward(T* __restrict dinp, T* __restrict dW, T* __restrict db,
                                           const T* __restrict dout, const T* __restrict inp, const T* __restrict W,
                                           int64_t m, int64_t n_in, int64_t n_out, const DinpGate* gate = nullptr) {
    switch (dense_kernel(m, n_in, n_out)) {
        case DenseKernel::GEMM: gemm(dW, n_out, inp, n_in, true, dout, n_out, false, n_in, n_out, m, T(1), T(0)); break;
        case DenseKernel::DOWN_COLUMNS:  // dW[k] = Σ_r inp[r, k] · dout[r]: a dot down column k
            for (int64_t k = 0; k < n_in; k++) dW[k] = dot(inp + k, n_in, dout, 1, m);
            break;
        case DenseKernel::SINGLE_OUTPUT:
            with_small_width(n_in, [&](auto width) DENSEFIT_INLINE_LAMBDA {
                single_output_gradient(dW, inp, dout, m, width);
            });
            break;
        case DenseKernel::RANK1:
            with_small_width(n_out, [&](auto width) DENSEFIT_INLINE_LAMBDA {
                rank1_gradient(dW, inp, dout, m, n_in, width);
            });
            break;
    }
    if (db != nullptr) column_sums(db, dout, m, n_out);
    if (dinp == nullptr) return;
    switch (dinp_kernel(m, n_in, n_out, gate != nullptr)) {
        case DinpKernel::GATED_OUTER:  // gate is only given where gated_dinp_applies: float, AVX-512
#if defined(__AVX512F__)
            if constexpr (std::is_same_v<T, float>) gated_outer_dinp(dinp, gate->db, gate->a, dout, W, m, n_in);
#endif
            break;
        case DinpKernel::GATED_BLOCK:
            if constexpr (std::is_same_v<T, float>) {
                const float* Wt = transposed(W, n_out, n_in, n_out);
                with_activation(gate->act, [&](auto code) DENSEFIT_INLINE_LAMBDA {
                    block_gemm(dinp, n_in, dout, n_out, false, Wt, n_in, m, n_in, n_out, ActivationGate<code()>{*gate});
                });
            }
            break;
        case DinpKernel::OUTER:
            with_small_width(n_in, [&](auto width) DENSEFIT_INLINE_LAMBDA {
                single_output_dinp(dinp, dout, W, m, width);
            });
            break;
        case DinpKernel::GEMM: gemm(dinp, n_in, dout, n_out, false, W, n_out, true, m, n_in, n_out, T(1), T(0)); break;
        case DinpKernel::ROWWISE:
            with_small_width(n_out, [&](auto width) DENSEFIT_INLINE_LAMBDA {
                rowwise_dinp(dinp, dout, W, m, n_in, width);
            });
            break;
    }
}

// Inverted dropout: element i = r·width + c of the batch (row r counted from the batch's first,
// so these m rows are rows first_row.. of it) is kept iff uniform(key, i) >= rate, then scaled by
// 1/(1 - rate). mask (m × width) keeps the factor (0 or the scale) for the backward pass.
template <class T>
void dropout_forward(T* out, T* mask, const T* inp, int64_t m, int64_t width, double rate, uint64_t key,
                     int64_t first_row = 0) {
    const T scale = T(1.0 / (1.0 - rate));
    const int64_t n = m * width;
    const uint64_t first = static_cast<uint64_t>(first_row * width);  // the rows' place in their batch's stream
    for (int64_t i = 0; i < n; i++) {
        mask[i] = uniform(key, first + static_cast<uint64_t>(i)) >= rate ? scale : T(0);
        out[i] = inp[i] * mask[i];
    }
}

template <class T>
void dropout_backward(T* dinp, const T* dout, const T* mask, int64_t n) {
    for (int64_t i = 0; i < n; i++) dinp[i] = dout[i] * mask[i];
}

// BatchNorm in training, in pieces: the data-parallel pass (data_parallel.hpp) runs each piece on
// its chunks of a batch and adds the chunks' sums between pieces; the whole-batch functions below
// run the same pieces over all rows. M is the whole batch's rows (the divisor of the means), m the
// rows at hand (M for the whole batch, a chunk's rows in the data-parallel pass).

// sum (C) = Σ_rows inp (m × C), the rows added in order.
template <class T>
void batchnorm_sums(T* __restrict sum, const T* __restrict inp, int64_t m, int64_t C) {
    std::fill(sum, sum + C, T(0));
    for (int64_t r = 0; r < m; r++)
        for (int64_t c = 0; c < C; c++) sum[c] += inp[r * C + c];
}

// mean (C) = sum / M (sum may be mean).
template <class T>
void batchnorm_mean(T* mean, const T* sum, int64_t M, int64_t C) {
    for (int64_t c = 0; c < C; c++) mean[c] = sum[c] / T(M);
}

// centered (m × C) = inp - mean; sq (C) = Σ_rows centered², the rows added in order.
template <class T>
void batchnorm_center(T* __restrict centered, T* __restrict sq, const T* __restrict inp, const T* __restrict mean,
                      int64_t m, int64_t C) {
    std::fill(sq, sq + C, T(0));
    for (int64_t r = 0; r < m; r++) {
        for (int64_t c = 0; c < C; c++) {
            const T x = inp[r * C + c] - mean[c];
            centered[r * C + c] = x;
            sq[c] += x * x;
        }
    }
}

// invstd (C) = 1/sqrt(var + ε) with the biased variance var = sq / M (sq may be invstd). When
// running_mean/running_var are given they move towards the batch's mean and unbiased variance.
template <class T>
void batchnorm_statistics(T* invstd, const T* sq, const T* mean, T* running_mean, T* running_var, int64_t M,
                          int64_t C, double momentum, double epsilon) {
    const T mom = T(momentum), keep = T(1) - mom;
    const T unbias = M > 1 ? T(static_cast<double>(M) / static_cast<double>(M - 1)) : T(1);
    for (int64_t c = 0; c < C; c++) {
        const T var = sq[c] / T(M);
        if (running_mean != nullptr) {
            running_mean[c] = keep * running_mean[c] + mom * mean[c];
            running_var[c] = keep * running_var[c] + mom * (var * unbias);
        }
        invstd[c] = T(1) / std::sqrt(var + T(epsilon));
    }
}

// xhat (m × C, centered on entry) = x̂ = centered · invstd; out = γ x̂ + β.
template <class T>
void batchnorm_normalize(T* __restrict out, T* __restrict xhat, const T* __restrict invstd, const T* __restrict gamma,
                         const T* __restrict beta, int64_t m, int64_t C) {
    for (int64_t r = 0; r < m; r++) {
        for (int64_t c = 0; c < C; c++) {
            const T x = xhat[r * C + c] * invstd[c];
            xhat[r * C + c] = x;
            out[r * C + c] = gamma[c] * x + beta[c];
        }
    }
}

// Training over the whole batch (m rows): normalize by the batch mean and biased variance (two
// passes), out = γ x̂ + β. x̂ (m × C) and invstd (C) are kept for the backward pass; mean (C) is
// scratch. When running_mean/running_var are given they move towards the batch statistics.
template <class T>
void batchnorm_forward_train(T* out, T* xhat, T* invstd, T* mean, T* running_mean, T* running_var, const T* inp,
                             const T* gamma, const T* beta, int64_t m, int64_t C, double momentum, double epsilon) {
    batchnorm_sums(mean, inp, m, C);
    batchnorm_mean(mean, mean, m, C);
    batchnorm_center(xhat, invstd, inp, mean, m, C);  // invstd holds Σ centered² until it is computed
    batchnorm_statistics(invstd, invstd, mean, running_mean, running_var, m, C, momentum, epsilon);
    batchnorm_normalize(out, xhat, invstd, gamma, beta, m, C);
}

// Inference: out = γ (x - running_mean) / sqrt(running_var + ε) + β.
template <class T>
void batchnorm_forward_infer(T* out, const T* inp, const T* gamma, const T* beta, const T* running_mean,
                             const T* running_var, int64_t m, int64_t C, double epsilon) {
    for (int64_t r = 0; r < m; r++) {
        for (int64_t c = 0; c < C; c++) {
            T xhat = (inp[r * C + c] - running_mean[c]) / std::sqrt(running_var[c] + T(epsilon));
            out[r * C + c] = gamma[c] * xhat + beta[c];
        }
    }
}

// The backward pass's sums over m rows: dγ = Σ dout x̂, dβ = Σ dout, and sums (2C) = Σ dx̂, Σ dx̂ x̂
// with dx̂ = dout γ, the rows added in order.
template <class T>
void batchnorm_backward_sums(T* __restrict dgamma, T* __restrict dbeta, T* __restrict sums, const T* __restrict dout,
                             const T* __restrict xhat, const T* __restrict gamma, int64_t m, int64_t C) {
    T* __restrict sum_dxhat = sums;
    T* __restrict sum_dxhat_xhat = sums + C;
    std::fill(dgamma, dgamma + C, T(0));
    std::fill(dbeta, dbeta + C, T(0));
    std::fill(sums, sums + 2 * C, T(0));
    for (int64_t r = 0; r < m; r++) {
        for (int64_t c = 0; c < C; c++) {
            const T d = dout[r * C + c], x = xhat[r * C + c], dx = d * gamma[c];
            dgamma[c] += d * x;
            dbeta[c] += d;
            sum_dxhat[c] += dx;
            sum_dxhat_xhat[c] += dx * x;
        }
    }
}

// dinp (m × C) = (invstd/M)(M dx̂ - Σ dx̂ - x̂ Σ dx̂ x̂), the sums (2C) over the whole batch's M rows;
// dinp may be dout (in place).
template <class T>
void batchnorm_backward_dinp(T* dinp, const T* dout, const T* xhat, const T* invstd, const T* gamma, const T* sums,
                             int64_t M, int64_t m, int64_t C) {
    const T* sum_dxhat = sums;
    const T* sum_dxhat_xhat = sums + C;
    const T tm = T(M);
    for (int64_t r = 0; r < m; r++) {
        for (int64_t c = 0; c < C; c++) {
            const T dx = dout[r * C + c] * gamma[c];
            dinp[r * C + c] = (invstd[c] / tm) * (tm * dx - sum_dxhat[c] - xhat[r * C + c] * sum_dxhat_xhat[c]);
        }
    }
}

// Backward over the whole batch (m rows): dγ, dβ and, unless dinp is null, dinp (may be dout, in
// place); sums (2C) is scratch.
template <class T>
void batchnorm_backward(T* dinp, T* dgamma, T* dbeta, T* sums, const T* dout, const T* xhat, const T* invstd,
                        const T* gamma, int64_t m, int64_t C) {
    batchnorm_backward_sums(dgamma, dbeta, sums, dout, xhat, gamma, m, C);
    if (dinp != nullptr) batchnorm_backward_dinp(dinp, dout, xhat, invstd, gamma, sums, m, m, C);
}

}  // namespace densefit
