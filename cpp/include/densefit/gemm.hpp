// C = alpha · op(A) · op(B) + beta · C, row-major with leading dimensions.
// Size legend: C is (M × N), op(A) is (M × K), op(B) is (K × N); op(X) = Xᵀ when trans_x.
//
// Kernels with the same contract: gemm_naive is the reference (one dot product per element,
// nothing clever), gemm_skinny the matrix-vector products (M = 1 or N = 1), blas_gemm the
// OpenBLAS call (scipy-openblas32, prefixed symbols) and parallel_blas_gemm that call split over
// the core's threads; block_gemm (block_gemm.hpp) the small float products. gemm() runs the one
// dispatch.hpp's gemm_kernel chooses. As in BLAS, beta == 0 means C is not read (it may hold garbage).
#pragma once

#include <cblas.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "block_gemm.hpp"
#include "dispatch.hpp"
#include "inline.hpp"
#include "parallel.hpp"

namespace densefit {

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
// Always inlined: called from gemv_rows too, GCC would otherwise keep it out of line in the tiny
// direct Dense loops, where the call is a large share of a step.
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

// A vector of the build's widest kind (dispatch.hpp's kVectorBytes), through GCC/Clang vector
// extensions, so the matrix-vector kernels compile to whatever the build targets with no intrinsics.
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
// contiguous row of A. (Register blocks over several rows, OpenBLAS with N = 1, and the dot fused
// into the activation sweep were all no faster in the real run: docs/performance.md.)
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
// sums at a time. (Faster than row-by-row axpys into c and than OpenBLAS for W5's dW.)
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
// blocks in registers (several times faster than blocks of scalar copies), the edges element by
// element.
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

// blas_gemm split into independent blocks of C that the pool's threads claim: row blocks when C is
// taller than wide, else column blocks (each a single-threaded OpenBLAS call). Two blocks per
// thread (parallel_gemm_parts), so a thread that loses its core leaves work the others can take.
template <class T>
void parallel_blas_gemm(T* C, int64_t ldc, const T* A, int64_t lda, bool trans_a, const T* B, int64_t ldb,
                        bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, T beta) {
    ThreadPool& pool = ThreadPool::instance();
    const bool by_rows = M >= N;
    const int64_t extent = by_rows ? M : N;
    const int64_t macs = M * N * K;  // callers keep dimensions below 2^31, so this fits in int64
    const int parts = parallel_gemm_parts(extent, macs, pool.threads());
    if (parts <= 1) {
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

// Out of line: Dense's always-inlined passes call it for every shape that is not tiny, and its
// branches (matrix-vector, transpose, threads) need not be inlined into the per-op dispatch of the
// tiny direct-loop workloads.
template <class T>
DENSEFIT_NOINLINE void gemm(T* C, int64_t ldc, const T* A, int64_t lda, bool trans_a, const T* B, int64_t ldb,
                            bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, T beta) {
    const GemmKernel kernel = gemm_kernel<T>(M, N, K, alpha, beta);
    if (kernel == GemmKernel::SKINNY) {
        gemm_skinny(C, ldc, A, lda, trans_a, B, ldb, trans_b, M, N, K, alpha, beta);
        return;
    }
    if (trans_b && transpose_b_first(kernel, trans_a, N, K)) {
        B = transposed(B, ldb, N, K), ldb = N, trans_b = false;
    }
    if constexpr (std::is_same_v<T, float>) {
        if (kernel == GemmKernel::BLOCK) {
            block_gemm(C, ldc, A, lda, trans_a, B, ldb, M, N, K);
            return;
        }
    }
    parallel_blas_gemm(C, ldc, A, lda, trans_a, B, ldb, trans_b, M, N, K, alpha, beta);
}

}  // namespace densefit
