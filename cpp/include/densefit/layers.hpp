// Forward and backward of each op kind over one batch. Size legend: m batch rows, n_in / n_out
// op widths, C BatchNorm features. Every matrix is contiguous row-major (m × width).
// Outputs first, then inputs, then sizes; gradients are prefixed d. A nullable dinp is skipped
// (the first op's input gradient is never needed).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "gemm.hpp"
#include "rng.hpp"

namespace densefit {

// out (m × n_out) = inp (m × n_in) · W (n_in × n_out) + b; b may be null.
template <class T>
void dense_forward(T* out, const T* inp, const T* W, const T* b, int64_t m, int64_t n_in, int64_t n_out) {
    if (b != nullptr) {  // the bias is the GEMM's starting C (beta = 1)
        for (int64_t r = 0; r < m; r++) std::copy(b, b + n_out, out + r * n_out);
    }
    gemm(out, n_out, inp, n_in, false, W, n_out, false, m, n_out, n_in, T(1), b != nullptr ? T(1) : T(0));
}

// dW = inpᵀ · dout, db = Σ_rows dout, dinp = dout · Wᵀ.
template <class T>
void dense_backward(T* dinp, T* dW, T* db, const T* dout, const T* inp, const T* W, int64_t m, int64_t n_in,
                    int64_t n_out) {
    gemm(dW, n_out, inp, n_in, true, dout, n_out, false, n_in, n_out, m, T(1), T(0));
    if (db != nullptr) {
        std::fill(db, db + n_out, T(0));
        for (int64_t r = 0; r < m; r++) {
            const T* d = dout + r * n_out;
            for (int64_t j = 0; j < n_out; j++) db[j] += d[j];
        }
    }
    if (dinp != nullptr) gemm(dinp, n_in, dout, n_out, false, W, n_out, true, m, n_in, n_out, T(1), T(0));
}

// Inverted dropout: element i = r·width + c is kept iff uniform(key, i) >= rate, then scaled by
// 1/(1 - rate). mask (m × width) keeps the factor (0 or the scale) for the backward pass.
template <class T>
void dropout_forward(T* out, T* mask, const T* inp, int64_t m, int64_t width, double rate, uint64_t key) {
    const T scale = T(1.0 / (1.0 - rate));
    const int64_t n = m * width;
    for (int64_t i = 0; i < n; i++) {
        mask[i] = uniform(key, static_cast<uint64_t>(i)) >= rate ? scale : T(0);
        out[i] = inp[i] * mask[i];
    }
}

template <class T>
void dropout_backward(T* dinp, const T* dout, const T* mask, int64_t n) {
    for (int64_t i = 0; i < n; i++) dinp[i] = dout[i] * mask[i];
}

// Training: normalize by the batch mean and biased variance (two passes), out = γ x̂ + β.
// x̂ (m × C) and invstd (C) are kept for the backward pass; mean (C) is scratch. When
// running_mean/running_var are given they move towards the batch statistics (unbiased variance).
template <class T>
void batchnorm_forward_train(T* out, T* xhat, T* invstd, T* mean, T* running_mean, T* running_var, const T* inp,
                             const T* gamma, const T* beta, int64_t m, int64_t C, double momentum, double epsilon) {
    T* var = invstd;  // holds the variance until it becomes 1/sqrt(var + ε)
    std::fill(mean, mean + C, T(0));
    for (int64_t r = 0; r < m; r++)
        for (int64_t c = 0; c < C; c++) mean[c] += inp[r * C + c];
    for (int64_t c = 0; c < C; c++) mean[c] /= T(m);
    std::fill(var, var + C, T(0));
    for (int64_t r = 0; r < m; r++) {
        for (int64_t c = 0; c < C; c++) {
            T centered = inp[r * C + c] - mean[c];
            xhat[r * C + c] = centered;
            var[c] += centered * centered;
        }
    }
    for (int64_t c = 0; c < C; c++) var[c] /= T(m);
    if (running_mean != nullptr) {
        const T mom = T(momentum), keep = T(1) - mom;
        const T unbias = m > 1 ? T(static_cast<double>(m) / static_cast<double>(m - 1)) : T(1);
        for (int64_t c = 0; c < C; c++) {
            running_mean[c] = keep * running_mean[c] + mom * mean[c];
            running_var[c] = keep * running_var[c] + mom * (var[c] * unbias);
        }
    }
    for (int64_t c = 0; c < C; c++) invstd[c] = T(1) / std::sqrt(var[c] + T(epsilon));
    for (int64_t r = 0; r < m; r++) {
        for (int64_t c = 0; c < C; c++) {
            T* x = xhat + r * C + c;
            *x = *x * invstd[c];
            out[r * C + c] = gamma[c] * *x + beta[c];
        }
    }
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

// dγ = Σ dout x̂, dβ = Σ dout, dinp = (invstd/m)(m dx̂ - Σ dx̂ - x̂ Σ dx̂ x̂) with dx̂ = dout γ.
// sums (2C) is scratch; dinp may be dout (in place) or null.
template <class T>
void batchnorm_backward(T* dinp, T* dgamma, T* dbeta, T* sums, const T* dout, const T* xhat, const T* invstd,
                        const T* gamma, int64_t m, int64_t C) {
    T* sum_dxhat = sums;
    T* sum_dxhat_xhat = sums + C;
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
    if (dinp == nullptr) return;
    const T tm = T(m);
    for (int64_t r = 0; r < m; r++) {
        for (int64_t c = 0; c < C; c++) {
            const T dx = dout[r * C + c] * gamma[c];
            dinp[r * C + c] = (invstd[c] / tm) * (tm * dx - sum_dxhat[c] - xhat[r * C + c] * sum_dxhat_xhat[c]);
        }
    }
}

}  // namespace densefit
