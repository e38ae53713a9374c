// C = alpha · op(A) · op(B) + beta · C, row-major with leading dimensions.
// Size legend: C is (M × N), op(A) is (M × K), op(B) is (K × N); op(X) = Xᵀ when trans_x.
//
// Kernels with the same contract: gemm_naive is the reference (one dot product per element,
// nothing clever), gemm_tiled register-blocked tiles (used for
// tiny shapes where a BLAS call costs more than the arithmetic), gemm_skinny the matrix-vector
// products (M = 1 or N = 1), blas_gemm the OpenBLAS call (scipy-openblas32, prefixed symbols).
// gemm() picks one. As in BLAS, beta == 0 means C is not read (it may hold garbage).
#pragma once

#include <cblas.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "block_gemm.hpp"
#include "inline.hpp"
#include "parallel.hpp"

namespace densefit {

// Below this many multiply-adds gemm() runs gemm_tiled instead of calling the BLAS.
//
// Measured (float32, one thread, AMD EPYC Zen 4, -march=native, OpenBLAS 0.3.34 DYNAMIC_ARCH,
// which picks its SkylakeX kernels, incl. the "small matrix" ones, on any AVX-512 machine;
// ns per call, best of 7 batches, OpenBLAS / gemm_tiled / the direct loops gemm_tiled replaced):
//   NN  4³    24 /   42 /   60      8³   41 /   63 /  209     16³   95 /  149 / 1155
//   NT  4³    67 /   41 /   59      8³  107 /   72 /  276     16³  218 /  211 / 1142
//   TN  4³    53 /   40 /   60      8³   94 /   65 /  204     16³   91 /  134 /  465
//   NN 64×64×64  4.6 µs (114 GFLOP/s) / 8.8 µs / -       NT 6.1 / 9.9      TN 4.6 / 8.5
// OpenBLAS runs at the machine's peak from ~32³ on (108-114 GFLOP/s; 64 × 64 × 32 takes 2.4 µs),
// so the W3 shapes stay on the BLAS: its cost there is arithmetic, not call overhead. Only the
// tiny shapes skip it, where the tiles beat the old direct loops everywhere and the BLAS for the
// transposed cases; the threshold of 512 (≈ 8³) is where the BLAS pulls ahead for every layout.
constexpr int64_t kSmallGemmMacs = 512;

template <class T>
void gemm_naive(T* C, int64_t ldc, const T* A, int64_t lda, bool trans_a, const T* B, int64_t ldb, bool trans_b,
                int64_t M, int64_t N, int64_t K, T alpha, T beta) {
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            T acc = 0;
            for (int64_t k = 0; k < K; k++) {
                T a = trans_a ? A[k * lda + i] : A[i * lda + k];
                T b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                acc += a * b;
            }
            T* c = C + i * ldc + j;
            *c = beta == T(0) ? alpha * acc : alpha * acc + beta * *c;
        }
    }
}

// Σ_k a[k·sa] b[k·sb] with independent partial sums, so the adds do not wait on each other and
// the contiguous case (sa = sb = 1) vectorizes without reassociation flags.
// Always inlined: once gemv_rows called it too, GCC stopped inlining it into the tiny direct
// Dense loops (a profile showed dot<double> out of line, 9% of W6). Caveat for every W6 number
// in this file: W6 steps take ~160-600 ns, and the same binary loaded from a package directory
// with a longer path measured up to 7% slower, so W6 differences below ~7% are not resolved.
template <class T>
DENSEFIT_ALWAYS_INLINE T dot(const T* a, int64_t sa, const T* b, int64_t sb, int64_t K) {
    constexpr int kLanes = 8;
    if (K < kLanes) {
        T sum = 0;
        for (int64_t k = 0; k < K; k++) sum += a[k * sa] * b[k * sb];
        return sum;
    }
    T acc[kLanes] = {};
    int64_t k = 0;
    if (sa == 1 && sb == 1) {
        for (; k + kLanes <= K; k += kLanes)
            for (int l = 0; l < kLanes; l++) acc[l] += a[k + l] * b[k + l];
    } else {
        for (; k + kLanes <= K; k += kLanes)
            for (int l = 0; l < kLanes; l++) acc[l] += a[(k + l) * sa] * b[(k + l) * sb];
    }
    for (; k < K; k++) acc[0] += a[k * sa] * b[k * sb];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// ---------------------------------------------------------------------------------------------
// Register-blocked kernel (written for W3's 64 × 64 × 64 and 64 × 64 × 32, where it turned out to
// reach only half of OpenBLAS's speed: see kSmallGemmMacs; gemm() uses it for tiny shapes). A tile of kTileRows rows × 2 vectors of C stays in registers while k runs
// over op(A)'s columns and op(B)'s rows: each step loads two vectors of a row of op(B) and
// broadcasts one element of op(A) per tile row. op(A) is read in place (both layouts are a
// broadcast of one element); op(B) must have contiguous rows, so a transposed B, or one whose
// width is not a whole number of vectors, is first packed into a zero-padded (K × N rounded up)
// buffer. Written with GCC/Clang vector extensions, so it compiles to whatever the build targets
// (zmm with AVX-512, ymm with AVX2, xmm with plain x86-64) with no intrinsics, and the products
// and sums stay separate roundings like the rest of the core (-ffp-contract=off). Fused
// multiply-adds (tried with a local fp-contract=fast) made 64³ 1.3× faster, still 1.4-1.7×
// slower than OpenBLAS; ymm tiles of 6 or 12 rows and zmm tiles of 4 or 6 rows were no better.
#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif
// Accumulators: kTileRows × 2 vectors, plus 2 for the row of op(B) and 1 broadcast, within the
// 16 vector registers of SSE/AVX2 and the 32 of AVX-512.
constexpr int kTileRows = kVectorBytes == 64 ? 8 : kVectorBytes == 32 ? 6 : 4;

template <class T>
struct Vector;
template <>
struct Vector<float> {
    typedef float type __attribute__((vector_size(kVectorBytes)));
};
template <>
struct Vector<double> {
    typedef double type __attribute__((vector_size(kVectorBytes)));
};

// One (R × width) tile of C, width ≤ V·L; B has contiguous rows of at least V·L readable
// elements (ldb apart). C columns past width are neither read nor written.
template <class T, int R, int V>
inline void gemm_tile(T* __restrict C, int64_t ldc, const T* __restrict A, int64_t a_row, int64_t a_col,
                      const T* __restrict B, int64_t ldb, int64_t K, int64_t width, T alpha, T beta) {
    using Vec = typename Vector<T>::type;
    constexpr int L = kVectorBytes / sizeof(T);
    Vec acc[R][V];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) acc[r][v] = Vec{};
    for (int64_t k = 0; k < K; k++) {
        Vec b[V];
        for (int v = 0; v < V; v++) std::memcpy(&b[v], B + k * ldb + v * L, sizeof(Vec));
        for (int r = 0; r < R; r++) {
            const T a = A[r * a_row + k * a_col];
            for (int v = 0; v < V; v++) acc[r][v] += a * b[v];
        }
    }
    for (int r = 0; r < R; r++) {
        T* c = C + r * ldc;
        for (int v = 0; v < V; v++) {
            const int64_t n = std::min<int64_t>(L, width - v * L);
            if (n <= 0) break;
            Vec out = alpha * acc[r][v];
            if (beta != T(0)) {
                Vec old{};
                std::memcpy(&old, c + v * L, static_cast<size_t>(n) * sizeof(T));
                out += beta * old;
            }
            std::memcpy(c + v * L, &out, static_cast<size_t>(n) * sizeof(T));
        }
    }
}

// An R-row tile, one or two vectors wide.
template <class T, int R>
inline void gemm_tile_rows(T* C, int64_t ldc, const T* A, int64_t a_row, int64_t a_col, const T* B, int64_t ldb,
                           int64_t K, int64_t width, T alpha, T beta) {
    if (width > static_cast<int64_t>(kVectorBytes / sizeof(T)))
        gemm_tile<T, R, 2>(C, ldc, A, a_row, a_col, B, ldb, K, width, alpha, beta);
    else
        gemm_tile<T, R, 1>(C, ldc, A, a_row, a_col, B, ldb, K, width, alpha, beta);
}

// The last rows < kTileRows of a column block: one tile of exactly `rows` rows.
template <class T, int R>
inline void gemm_tile_tail(int64_t rows, T* C, int64_t ldc, const T* A, int64_t a_row, int64_t a_col, const T* B,
                           int64_t ldb, int64_t K, int64_t width, T alpha, T beta) {
    if constexpr (R >= 1) {
        if (rows == R) return gemm_tile_rows<T, R>(C, ldc, A, a_row, a_col, B, ldb, K, width, alpha, beta);
        gemm_tile_tail<T, R - 1>(rows, C, ldc, A, a_row, a_col, B, ldb, K, width, alpha, beta);
    }
}

// The same contract as gemm_naive.
template <class T>
void gemm_tiled(T* C, int64_t ldc, const T* A, int64_t lda, bool trans_a, const T* B, int64_t ldb, bool trans_b,
                int64_t M, int64_t N, int64_t K, T alpha, T beta) {
    constexpr int L = kVectorBytes / sizeof(T);
    constexpr int R = kTileRows;
    const int64_t a_row = trans_a ? 1 : lda, a_col = trans_a ? lda : 1;
    const T* b = B;
    int64_t ldp = ldb;
    thread_local std::vector<T> packed;
    if (trans_b || N % L != 0) {
        ldp = (N + L - 1) / L * L;
        packed.assign(static_cast<size_t>(K * ldp), T(0));
        T* p = packed.data();
        if (trans_b) {
            for (int64_t j = 0; j < N; j++)
                for (int64_t k = 0; k < K; k++) p[k * ldp + j] = B[j * ldb + k];
        } else {
            for (int64_t k = 0; k < K; k++) std::copy(B + k * ldb, B + k * ldb + N, p + k * ldp);
        }
        b = p;
    }
    for (int64_t j = 0; j < N; j += 2 * L) {
        const int64_t width = std::min<int64_t>(2 * L, N - j);
        int64_t i = 0;
        for (; i + R <= M; i += R)
            gemm_tile_rows<T, R>(C + i * ldc + j, ldc, A + i * a_row, a_row, a_col, b + j, ldp, K, width, alpha, beta);
        if (i < M)
            gemm_tile_tail<T, R - 1>(M - i, C + i * ldc + j, ldc, A + i * a_row, a_row, a_col, b + j, ldp, K, width,
                                     alpha, beta);
    }
}

// ---------------------------------------------------------------------------------------------
// Matrix-vector products: a GEMM with one column (N = 1; W5's z = X_b · w and dW = X_bᵀ · dz) or
// one row (M = 1), which the BLAS treats as a GEMM and packs. vector_load reads L elements.
template <class T>
inline typename Vector<T>::type vector_load(const T* p) {
    typename Vector<T>::type v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// c[i·ldc] = alpha · Σ_k A[i·lda + k] x[k] + beta · c[i·ldc] (i < M): one dot() along each
// contiguous row of A. Measured on W5 in the real run (M samples/s, thread CPU time, A/B in one
// session on Zen 4): dot() per row 18.5; register blocks of 16-float vectors over 4 rows at once
// 16.1, 2 rows 16.7, 1 row 15.7 — although a C++ harness (X from std::vector, no huge pages)
// had ranked 4 rows first (33 against 30 M/s from memory). OpenBLAS sgemm with N = 1 was slower
// than both in the harness (26 M/s). W3 (64 × 64, from L2): 4 rows at a time with dot()'s partial
// sums (same bits) 0.228 → 0.210 µs in a harness, 1 % slower in the real run; computing each dot
// in the activation sweep that writes the row (same bits) no faster either.
template <class T>
void gemv_rows(T* __restrict c, int64_t ldc, const T* __restrict A, int64_t lda, const T* __restrict x, int64_t M,
               int64_t K, T alpha, T beta) {
    for (int64_t i = 0; i < M; i++) {
        const T sum = alpha * dot(A + i * lda, 1, x, 1, K);
        T* out = c + i * ldc;
        *out = beta == T(0) ? sum : sum + beta * *out;
    }
}

// V vectors of c (V·L elements from c, contiguous) = alpha · Σ_k x[k] A[k·lda + 0..V·L) + beta · c:
// S interleaved partial sums over k so that V·S ≥ 4 accumulators are in flight.
template <class T, int V>
inline void gemv_cols_block(T* __restrict c, const T* __restrict A, int64_t lda, const T* __restrict x, int64_t K,
                            T alpha, T beta) {
    using Vec = typename Vector<T>::type;
    constexpr int L = kVectorBytes / sizeof(T);
    constexpr int S = V >= 4 ? 1 : 4 / V;
    Vec acc[S][V];
    for (int s = 0; s < S; s++)
        for (int v = 0; v < V; v++) acc[s][v] = Vec{};
    int64_t k = 0;
    for (; k + S <= K; k += S)
        for (int s = 0; s < S; s++)
            for (int v = 0; v < V; v++) acc[s][v] += x[k + s] * vector_load(A + (k + s) * lda + v * L);
    for (; k < K; k++)
        for (int v = 0; v < V; v++) acc[0][v] += x[k] * vector_load(A + k * lda + v * L);
    for (int v = 0; v < V; v++) {
        Vec sum = acc[0][v];
        for (int s = 1; s < S; s++) sum += acc[s][v];
        Vec out = alpha * sum;
        if (beta != T(0)) out += beta * vector_load(c + v * L);
        std::memcpy(c + v * L, &out, sizeof out);
    }
}

// c[i] = alpha · Σ_k x[k] A[k·lda + i] + beta · c[i] (i < M, c contiguous): axpys along the
// contiguous rows of A, accumulated in registers for blocks of 4 vectors of c, then 1 vector.
// The last M mod L elements are the end of one more vector block over the last L columns
// (recomputing a few, into a copy); only when M < L are they summed one by one, four partial
// sums at a time. W5's dW (M = 100, K = 256) in the real run: 18.4-19.1 M samples/s against
// 18.1-18.5 with the previous row-by-row axpys into dW; alone in L2, 1.24 µs against 1.71
// (OpenBLAS sgemm: 1.44).
template <class T>
void gemv_cols(T* __restrict c, const T* __restrict A, int64_t lda, const T* __restrict x, int64_t M, int64_t K, T alpha,
               T beta) {
    constexpr int L = kVectorBytes / sizeof(T);
    int64_t i = 0;
    for (; i + 4 * L <= M; i += 4 * L) gemv_cols_block<T, 4>(c + i, A + i, lda, x, K, alpha, beta);
    for (; i + L <= M; i += L) gemv_cols_block<T, 1>(c + i, A + i, lda, x, K, alpha, beta);
    if (i == M) return;
    if (M >= L) {
        T last[L];
        std::memcpy(last, c + M - L, sizeof last);
        gemv_cols_block<T, 1>(last, A + M - L, lda, x, K, alpha, beta);
        std::memcpy(c + i, last + (i - (M - L)), static_cast<size_t>(M - i) * sizeof(T));
        return;
    }
    for (; i < M; i++) {
        T sum[4] = {};
        int64_t k = 0;
        for (; k + 4 <= K; k += 4)
            for (int s = 0; s < 4; s++) sum[s] += x[k + s] * A[(k + s) * lda + i];
        for (; k < K; k++) sum[0] += x[k] * A[k * lda + i];
        const T total = (sum[0] + sum[1]) + (sum[2] + sum[3]);
        c[i] = beta == T(0) ? alpha * total : alpha * total + beta * c[i];
    }
}

// The GEMM with N = 1 or M = 1 (the other sizes ≥ 1) as one of the two matrix-vector kernels;
// a strided vector operand is first copied into a contiguous buffer.
template <class T>
void gemm_skinny(T* C, int64_t ldc, const T* A, int64_t lda, bool trans_a, const T* B, int64_t ldb, bool trans_b,
                 int64_t M, int64_t N, int64_t K, T alpha, T beta) {
    thread_local std::vector<T> buffer;
    auto contiguous = [&](const T* v, int64_t stride) -> const T* {
        if (stride == 1 || K <= 1) return v;
        buffer.resize(static_cast<size_t>(K));
        for (int64_t k = 0; k < K; k++) buffer[k] = v[k * stride];
        return buffer.data();
    };
    if (N == 1) {  // C (M × 1), column stride irrelevant: element i at C[i·ldc]
        const T* x = contiguous(B, trans_b ? 1 : ldb);
        if (!trans_a) {
            gemv_rows(C, ldc, A, lda, x, M, K, alpha, beta);
        } else if (ldc == 1 || M == 1) {
            gemv_cols(C, A, lda, x, M, K, alpha, beta);
        } else {  // a strided column of C: through a contiguous one
            thread_local std::vector<T> column;
            column.resize(static_cast<size_t>(M));
            for (int64_t i = 0; i < M; i++) column[i] = beta == T(0) ? T(0) : C[i * ldc];
            gemv_cols(column.data(), A, lda, x, M, K, alpha, beta);
            for (int64_t i = 0; i < M; i++) C[i * ldc] = column[i];
        }
        return;
    }
    // M == 1: C (1 × N) is contiguous; row 0 of op(A) is the vector, op(B) the matrix.
    const T* x = contiguous(A, trans_a ? lda : 1);
    if (trans_b)
        gemv_rows(C, 1, B, ldb, x, N, K, alpha, beta);
    else
        gemv_cols(C, B, ldb, x, N, K, alpha, beta);
}

inline void blas_gemm(float* C, int64_t ldc, const float* A, int64_t lda, bool trans_a, const float* B, int64_t ldb,
                      bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, float beta) {
    scipy_cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                      static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha, A,
                      static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

inline void blas_gemm(double* C, int64_t ldc, const double* A, int64_t lda, bool trans_a, const double* B, int64_t ldb,
                      bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, double beta) {
    scipy_cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                      static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha, A,
                      static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

// An 8 × 8 block of T as 8 vectors of 8 (32 bytes of float, 64 of double), and the integer
// vector of the same shape that __builtin_shuffle takes as its index.
template <class T>
struct Block8 {
    typedef T row __attribute__((vector_size(8 * sizeof(T))));
    typedef std::conditional_t<sizeof(T) == 4, int32_t, int64_t> index_element;
    typedef index_element index __attribute__((vector_size(8 * sizeof(T))));
};

// Shuffle indices interleaving two rows a, b: (a0 b0 a1 b1 a2 b2 a3 b3) and (a4 b4 … a7 b7).
template <class T, size_t... k>
constexpr typename Block8<T>::index interleave_index(size_t first, std::index_sequence<k...>) {
    using Index = typename Block8<T>::index_element;
    return typename Block8<T>::index{static_cast<Index>(k % 2 ? 8 + first + k / 2 : first + k / 2)...};
}

// out rows 0..7 (ldo apart) = the transpose of the 8 × 8 block at in (rows ldi apart), in
// registers: three rounds of interleaving row i with row i + 4 (a perfect shuffle of the
// element indices each round) take element (i, j) to (j, i).
template <class T>
DENSEFIT_ALWAYS_INLINE void transpose_block8(T* __restrict out, int64_t ldo, const T* __restrict in, int64_t ldi) {
    using Row = typename Block8<T>::row;
    constexpr auto low = interleave_index<T>(0, std::make_index_sequence<8>{});
    constexpr auto high = interleave_index<T>(4, std::make_index_sequence<8>{});
    Row r[8], s[8];
    for (int i = 0; i < 8; i++) std::memcpy(&r[i], in + i * ldi, sizeof(Row));
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 4; i++) {
            s[2 * i] = __builtin_shuffle(r[i], r[i + 4], low);
            s[2 * i + 1] = __builtin_shuffle(r[i], r[i + 4], high);
        }
        std::copy(s, s + 8, r);
    }
    for (int i = 0; i < 8; i++) std::memcpy(out + i * ldo, &r[i], sizeof(Row));
}

// out (cols × rows, contiguous) = the transpose of in (rows × cols, leading dimension ld): 8 × 8
// blocks in registers, the edges element by element. W3's 64 × 64 float (dinp's Wᵀ, every step),
// alone in L1: 0.34-0.5 µs against 1.8 µs for the previous 16 × 16 blocks of scalar copies
// (double: 0.98 against 1.4).
template <class T>
void transpose_into(T* __restrict out, const T* __restrict in, int64_t ld, int64_t rows, int64_t cols) {
    int64_t i = 0;
    for (; i + 8 <= rows; i += 8) {
        int64_t j = 0;
        for (; j + 8 <= cols; j += 8) transpose_block8(out + j * rows + i, rows, in + i * ld + j, ld);
        for (; j < cols; j++)
            for (int64_t k = i; k < i + 8; k++) out[j * rows + k] = in[k * ld + j];
    }
    for (int64_t j = 0; j < cols; j++)
        for (int64_t k = i; k < rows; k++) out[j * rows + k] = in[k * ld + j];
}

// The transpose (cols × rows) of in (rows × cols, leading dimension ld), in a buffer of the calling
// thread that the next call reuses.
template <class T>
const T* transposed(const T* in, int64_t ld, int64_t rows, int64_t cols) {
    thread_local std::vector<T> out;
    out.resize(static_cast<size_t>(rows * cols));
    transpose_into(out.data(), in, ld, rows, cols);
    return out.data();
}

// A · Bᵀ with a small B (Dense backward's dinp = dout · Wᵀ) is a transpose of B and a plain
// product: OpenBLAS's NT path is the slow one (64³: 6.1 µs, 85 GFLOP/s, against 4.6 µs for NN;
// a blocked 64 × 64 transpose costs ~0.3-0.6 µs). W3 (A/B in one session): 2.57 → 2.64 M
// samples/s. Harness ratios (transpose + NN) / NT, float / double: 64³ 0.84-1.05 / 0.87,
// 128 × 256 × 10 0.81 / 0.86; for 128 × 256 × 256 and larger NT was as fast or faster, hence the
// bound on B's size.
constexpr int64_t kTransposeBElements = 128 * 128;

// Below this many multiply-adds one thread does the whole GEMM: a block must take much longer than
// waking a worker (~5-50 µs). 2^21 MACs take ~30 µs at 140 GFLOP/s.
constexpr int64_t kParallelGemmMacs = int64_t{1} << 21;

// blas_gemm split into independent blocks of C that the pool's threads claim: row blocks when C is
// taller than wide, else column blocks (each a single-threaded OpenBLAS call). Two blocks per
// thread, so a thread that loses its core leaves work the others can take.
template <class T>
void parallel_blas_gemm(T* C, int64_t ldc, const T* A, int64_t lda, bool trans_a, const T* B, int64_t ldb,
                        bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, T beta) {
    ThreadPool& pool = ThreadPool::instance();
    const bool by_rows = M >= N;
    const int64_t extent = by_rows ? M : N;
    const int64_t macs = M * N * K;  // callers keep dimensions below 2^31, so this fits in int64
    const int parts = static_cast<int>(std::min<int64_t>({2 * pool.threads(), extent / 16, macs / kParallelGemmMacs}));
    if (parts <= 1 || pool.threads() == 1) {
        blas_gemm(C, ldc, A, lda, trans_a, B, ldb, trans_b, M, N, K, alpha, beta);
        return;
    }
    pool.run(parts, [&](int part) {
        const int64_t begin = extent * part / parts, end = extent * (part + 1) / parts;
        if (by_rows)  // rows [begin, end) of C and of op(A)
            blas_gemm(C + begin * ldc, ldc, A + (trans_a ? begin : begin * lda), lda, trans_a, B, ldb, trans_b,
                      end - begin, N, K, alpha, beta);
        else  // columns [begin, end) of C and of op(B)
            blas_gemm(C + begin, ldc, A, lda, trans_a, B + (trans_b ? begin * ldb : begin), ldb, trans_b, M,
                      end - begin, K, alpha, beta);
    });
}

// Whether gemm() runs gemm_tiled for C = op(A) · op(B) (M, N > 1).
inline bool gemm_takes_tiles(int64_t M, int64_t N, int64_t K) {
    const bool small = M < kSmallGemmMacs && N < kSmallGemmMacs && K < kSmallGemmMacs;  // keeps M·N·K from overflowing
    return small && M * N * K < kSmallGemmMacs;
}

// Whether gemm() runs block_gemm (float in AVX-512 builds, where the matrix-vector products and
// the tiles do not). Dense fuses its epilogues into block_gemm exactly where this holds, so a
// fused op and the same ops run apart give the same bits.
template <class T>
bool gemm_takes_block_gemm(int64_t M, int64_t N, int64_t K) {
    return std::is_same_v<T, float> && M > 1 && N > 1 && !gemm_takes_tiles(M, N, K) && block_gemm_applies(M, N, K);
}

// Out of line: Dense's always-inlined passes call it for every shape that is not tiny, and its
// branches (matrix-vector, tiles, transpose, threads) need not be inlined into the per-op
// dispatch of the tiny direct-loop workloads. W6 against main (same-length package paths, see
// dot()): main 427, this branch 390-405 M samples/s, the gap unexplained (W6 runs none of this
// file's new code); W1/W2/W3/W5 unchanged by this attribute.
template <class T>
DENSEFIT_NOINLINE void gemm(T* C, int64_t ldc, const T* A, int64_t lda, bool trans_a, const T* B, int64_t ldb, bool trans_b, int64_t M,
          int64_t N, int64_t K, T alpha, T beta) {
    if ((N == 1 || M == 1) && M >= 1 && N >= 1 && K >= 1) {
        gemm_skinny(C, ldc, A, lda, trans_a, B, ldb, trans_b, M, N, K, alpha, beta);
        return;
    }
    if (gemm_takes_tiles(M, N, K)) {
        gemm_tiled(C, ldc, A, lda, trans_a, B, ldb, trans_b, M, N, K, alpha, beta);
        return;
    }
    const bool own_kernel = alpha == T(1) && beta == T(0) && gemm_takes_block_gemm<T>(M, N, K);
    if (trans_b && (own_kernel || (!trans_a && N * K <= kTransposeBElements))) {
        B = transposed(B, ldb, N, K), ldb = N, trans_b = false;
    }
    if constexpr (std::is_same_v<T, float>) {
        if (own_kernel) {
            block_gemm(C, ldc, A, lda, trans_a, B, ldb, M, N, K);
            return;
        }
    }
    parallel_blas_gemm(C, ldc, A, lda, trans_a, B, ldb, trans_b, M, N, K, alpha, beta);
}

}  // namespace densefit
