// C = alpha · op(A) · op(B) + beta · C, row-major with leading dimensions.
// Size legend: C is (M × N), op(A) is (M × K), op(B) is (K × N); op(X) = Xᵀ when trans_x.
//
// Three kernels with the same contract: gemm_naive is the reference (one dot product per
// element, nothing clever), gemm_small the direct loops used for tiny shapes where a BLAS call
// costs more than the arithmetic, blas_gemm the OpenBLAS call (scipy-openblas32, prefixed
// symbols). gemm() picks one. As in BLAS, beta == 0 means C is not read (it may hold garbage).
#pragma once

#include <cblas.h>

#include <algorithm>
#include <cstdint>

#include "parallel.hpp"

namespace densefit {

// Below this many multiply-adds the loops beat the fixed cost of a BLAS call (~0.1 µs with
// OpenBLAS 0.3.x on AVX2; measured crossover 128-512 depending on the shape).
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
template <class T>
inline T dot(const T* a, int64_t sa, const T* b, int64_t sb, int64_t K) {
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

template <class T>
void gemm_small(T* __restrict C, int64_t ldc, const T* __restrict A, int64_t lda, bool trans_a,
                const T* __restrict B, int64_t ldb, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, T beta) {
    // Element strides of op(A) (M × K) and op(B) (K × N).
    const int64_t a_row = trans_a ? 1 : lda, a_col = trans_a ? lda : 1;
    const int64_t b_row = trans_b ? 1 : ldb, b_col = trans_b ? ldb : 1;
    if (trans_b || N < 8) {
        // One dot product per element: along contiguous rows of A and B when B is transposed; and
        // when N is tiny, an inner loop over N would be too short to pay for itself.
        for (int64_t i = 0; i < M; i++) {
            for (int64_t j = 0; j < N; j++) {
                T* c = C + i * ldc + j;
                const T acc = alpha * dot(A + i * a_row, a_col, B + j * b_col, b_row, K);
                *c = beta == T(0) ? acc : acc + beta * *c;
            }
        }
        return;
    }
    // Rank-1 updates of C's rows: the inner loop runs along contiguous rows of B and C.
    for (int64_t i = 0; i < M; i++) {
        T* c = C + i * ldc;
        for (int64_t j = 0; j < N; j++) c[j] = beta == T(0) ? T(0) : beta * c[j];
        for (int64_t k = 0; k < K; k++) {
            const T a = alpha * A[i * a_row + k * a_col];
            const T* b = B + k * ldb;
            for (int64_t j = 0; j < N; j++) c[j] += a * b[j];
        }
    }
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

template <class T>
void gemm(T* C, int64_t ldc, const T* A, int64_t lda, bool trans_a, const T* B, int64_t ldb, bool trans_b, int64_t M,
          int64_t N, int64_t K, T alpha, T beta) {
    const bool small = M < kSmallGemmMacs && N < kSmallGemmMacs && K < kSmallGemmMacs;  // keeps M·N·K from overflowing
    if (small && M * N * K < kSmallGemmMacs)
        gemm_small(C, ldc, A, lda, trans_a, B, ldb, trans_b, M, N, K, alpha, beta);
    else
        parallel_blas_gemm(C, ldc, A, lda, trans_a, B, ldb, trans_b, M, N, K, alpha, beta);
}

}  // namespace densefit
