// Losses from the logits z (m × K), fused with their gradient: each function writes
// dz = d(mean loss)/dz, never going through the output activation's derivative, and returns the
// loss summed over its rows (accumulated in double; batch_mean divides) with the number of correct
// predictions. Codes are those of
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

// The loss summed over some rows of a batch (not yet divided by the batch's count), and the count
// of correct predictions among them. The functions below compute it for any run of rows with the
// batch's gradient scale, so a pass that visits a batch in blocks of rows (linear_pass.hpp) shares
// the per-element formulas with loss_and_dlogits, which visits the whole batch at once.
struct LossSum {
    double sum;
    int64_t correct;
};

// Σ (z - y)², dz = (z - y) · scale over n = rows × K elements; scale = 2 / (batch K).
template <class T>
LossSum mse_rows(T* dz, const T* z, const T* y, int64_t n, T scale) {
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
    return {(s0 + s1) + (s2 + s3), 0};
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

// Σ max(z, 0) - z y + log1p(exp(-|z|)), dz = (sigmoid(z) - y) · scale over n = rows × K elements;
// scale = 1 / (batch K).
template <class T>
LossSum bce_rows(T* dz, const T* z, const T* y, int64_t n, T scale) {
    double sum = 0;
    int64_t correct = 0;
    for (int64_t i = 0; i < n; i++) {
        const T e = std::exp(-std::abs(z[i]));  // shared by the loss and sigmoid(z)
        sum += static_cast<double>(std::max(z[i], T(0)) - z[i] * y[i] + log1p_unit(e));
        correct += (z[i] > T(0)) == (y[i] > T(0.5));
        dz[i] = (sigmoid_of_exp(z[i], e) - y[i]) * scale;
    }
    return {sum, correct};
}

// Categorical cross-entropy of softmax(z). With index targets, labels (m) hold class numbers
// (validated to lie in [0, K) by the caller); with dense targets y (m × K) the gradient is
// (softmax(z) Σ_k y_k - y) / batch, which is (softmax(z) - y) / batch for one-hot rows; the loss is
// summed over the m rows given; scale = 1 / batch.
template <class T>
LossSum cce_rows(T* dz, const T* z, const T* y, int64_t m, int64_t K, bool index_targets, T scale) {
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
    return {sum, correct};
}

// Rows [0, m) of a batch of `batch` rows: dz = d(mean loss over the batch)/dz and the loss summed
// over these rows. y is (m × K), or (m × 1) class indices for categorical cross-entropy when
// y_cols == 1 < K.
template <class T>
LossSum loss_rows(T* dz, const T* z, const T* y, int64_t m, int64_t K, int64_t y_cols, int64_t loss, int64_t batch) {
    switch (loss) {
        case MSE: return mse_rows(dz, z, y, m * K, T(2.0 / static_cast<double>(batch * K)));
        case BINARY_CROSSENTROPY: return bce_rows(dz, z, y, m * K, T(1.0 / static_cast<double>(batch * K)));
        default: return cce_rows(dz, z, y, m, K, y_cols == 1 && K > 1, T(1.0 / static_cast<double>(batch)));
    }
}

// The mean loss of a batch of m rows from its LossSum: over the elements for mse and binary
// cross-entropy, over the rows for categorical cross-entropy.
inline LossValue batch_mean(const LossSum& s, int64_t m, int64_t K, int64_t loss) {
    const int64_t count = loss == CATEGORICAL_CROSSENTROPY ? m : m * K;
    return {s.sum / static_cast<double>(count), s.correct};
}

// The whole batch (m rows) at once.
template <class T>
LossValue loss_and_dlogits(T* dz, const T* z, const T* y, int64_t m, int64_t K, int64_t y_cols, int64_t loss) {
    return batch_mean(loss_rows(dz, z, y, m, K, y_cols, loss, m), m, K, loss);
}

}  // namespace densefit
