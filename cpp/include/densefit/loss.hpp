// Losses from the logits z (m × K), fused with their gradient: each function writes
// dz = d(mean loss)/dz, never going through the output activation's derivative, and returns the
// mean loss (accumulated in double) with the number of correct predictions. Codes are those of
// python/densefit/losses.py; evaluation order follows the numpy reference.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "activation.hpp"

namespace densefit {

enum Loss : int64_t { MSE, BINARY_CROSSENTROPY, CATEGORICAL_CROSSENTROPY };

struct LossValue {
    double value;     // mean over the batch (and over outputs for mse / binary cross-entropy)
    int64_t correct;  // samples (categorical) or elements (binary) predicted right; 0 for mse
};

// mean((z - y)²), dz = 2 (z - y) / (m K).
template <class T>
LossValue mse_loss(T* dz, const T* z, const T* y, int64_t m, int64_t K) {
    const int64_t n = m * K;
    const T scale = T(2.0 / static_cast<double>(n));
    for (int64_t i = 0; i < n; i++) dz[i] = (z[i] - y[i]) * scale;
    auto square = [&](int64_t i) {
        const double diff = static_cast<double>(z[i] - y[i]);
        return diff * diff;
    };
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;  // independent partial sums: the adds do not wait on each other
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += square(i);
        s1 += square(i + 1);
        s2 += square(i + 2);
        s3 += square(i + 3);
    }
    for (; i < n; i++) s0 += square(i);
    return {((s0 + s1) + (s2 + s3)) / static_cast<double>(n), 0};
}

// log1p(x) for x in [0, 1]. In float32 through logf and the correction of Goldberg ("What every
// computer scientist should know about floating-point arithmetic", thm. 4): log(u)·x/(u - 1)
// with u = 1 + x rounded; within 2 ulp of log1p (max relative error 1.7e-7 against long double
// over x = e^-30..1, glibc's log1pf: 7.6e-8). glibc's log1pf is the old fdlibm code: 5-7 ns a
// call against 3.8 for this one, and W5 (one BCE output per sample) calls it once per sample.
template <class T>
inline T log1p_unit(T x) {
    if constexpr (sizeof(T) == sizeof(float)) {
        const T u = T(1) + x;
        return u == T(1) ? x : std::log(u) * (x / (u - T(1)));
    } else {
        return std::log1p(x);
    }
}

// mean(max(z, 0) - z y + log1p(exp(-|z|))), dz = (sigmoid(z) - y) / (m K).
template <class T>
LossValue bce_loss(T* dz, const T* z, const T* y, int64_t m, int64_t K) {
    const int64_t n = m * K;
    const T scale = T(1.0 / static_cast<double>(n));
    double sum = 0;
    int64_t correct = 0;
    for (int64_t i = 0; i < n; i++) {
        const T e = std::exp(-std::abs(z[i]));  // shared by the loss and sigmoid(z)
        sum += static_cast<double>(std::max(z[i], T(0)) - z[i] * y[i] + log1p_unit(e));
        correct += (z[i] > T(0)) == (y[i] > T(0.5));
        dz[i] = (sigmoid_of_exp(z[i], e) - y[i]) * scale;
    }
    return {sum / static_cast<double>(n), correct};
}

// Categorical cross-entropy of softmax(z). With index targets, labels (m) hold class numbers
// (validated to lie in [0, K) by the caller); with dense targets y (m × K) the gradient is
// (softmax(z) Σ_k y_k - y) / m, which is (softmax(z) - y) / m for one-hot rows.
template <class T>
LossValue cce_loss(T* dz, const T* z, const T* y, int64_t m, int64_t K, bool index_targets) {
    const T scale = T(1.0 / static_cast<double>(m));
    double sum = 0;
    int64_t correct = 0;
    for (int64_t r = 0; r < m; r++) {
        const T* zr = z + r * K;
        T* d = dz + r * K;
        const int64_t predicted = std::max_element(zr, zr + K) - zr;
        const T mx = zr[predicted];
        T sum_e = 0;
        for (int64_t j = 0; j < K; j++) sum_e += (d[j] = std::exp(zr[j] - mx));
        const T log_sum_e = std::log(sum_e);
        if (index_targets) {
            const int64_t label = static_cast<int64_t>(y[r]);
            sum -= static_cast<double>((zr[label] - mx) - log_sum_e);
            correct += predicted == label;
            for (int64_t j = 0; j < K; j++) d[j] = d[j] / sum_e;
            d[label] -= T(1);
            for (int64_t j = 0; j < K; j++) d[j] *= scale;
        } else {
            const T* yr = y + r * K;
            T y_sum = 0;
            for (int64_t j = 0; j < K; j++) {
                y_sum += yr[j];
                sum -= static_cast<double>(yr[j] * ((zr[j] - mx) - log_sum_e));
            }
            correct += predicted == std::max_element(yr, yr + K) - yr;
            for (int64_t j = 0; j < K; j++) d[j] = ((d[j] / sum_e) * y_sum - yr[j]) * scale;
        }
    }
    return {sum / static_cast<double>(m), correct};
}

// y is (m × K), or (m × 1) class indices for categorical cross-entropy when y_cols == 1 < K.
template <class T>
LossValue loss_and_dlogits(T* dz, const T* z, const T* y, int64_t m, int64_t K, int64_t y_cols, int64_t loss) {
    switch (loss) {
        case MSE: return mse_loss(dz, z, y, m, K);
        case BINARY_CROSSENTROPY: return bce_loss(dz, z, y, m, K);
        default: return cce_loss(dz, z, y, m, K, y_cols == 1 && K > 1);
    }
}

}  // namespace densefit
