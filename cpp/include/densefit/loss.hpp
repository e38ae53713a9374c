// Losses from the logits z (m × K), fused with their gradient: each function writes
// dz = d(mean loss)/dz, never going through the output activation's derivative, and returns the
// loss summed over its rows (accumulated in double; batch_mean divides) with the number of correct
// predictions. Codes are those of
// python/densefit/losses.py; evaluation order follows the numpy reference.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "activation.hpp"
#include "dispatch.hpp"
#include "inline.hpp"
#include "vmath.hpp"

namespace densefit {

struct LossValue {
    double value;     // mean over the batch (and over outputs for mse / binary cross-entropy), or weighted mean
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
    // Sixteen independent partial sums (element i into sum i mod 16), added pairwise at the end,
    // then the tail's own sum: the adds do not wait on each other, the sums stay in two vector
    // registers (a tail added into one of them would send them through memory).
    constexpr int kSums = 16;
    double s[kSums] = {};
    int64_t i = 0;
    for (; i + kSums <= n; i += kSums)
        for (int j = 0; j < kSums; j++) s[j] += square(i + j);
    double tail = 0;
    for (; i < n; i++) tail += square(i);
    for (int j = 0; j < 8; j++) s[j] += s[j + 8];
    for (int j = 0; j < 4; j++) s[j] += s[j + 4];
    return {((s[0] + s[2]) + (s[1] + s[3])) + tail, 0};
}

// log1p(x) for x in [0, 1] through the library's logf and the correction of Goldberg ("What every
// computer scientist should know about floating-point arithmetic", thm. 4): log(u)·x/(u - 1) with
// u = 1 + x rounded; within 2 ulp of log1pf, and a shorter chain of dependent operations than
// vmath::log1p for a lone element (glibc's own log1pf is slower).
template <class T>
inline T log1p_unit_libm(T x) {
    const T u = T(1) + x;
    return u == T(1) ? x : std::log(u) * (x / (u - T(1)));
}

// One element of binary cross-entropy: dz = (sigmoid(z) - y) · scale; returns the loss term
// max(z, 0) - z y + log1p(exp(-|z|)) and adds 1 to correct for a right prediction. Branch-free.
// kInline uses vmath.hpp's exp_nonpositive and log1p_unit (a loop over elements vectorizes), else the library's
// exp and, in float32, log1p_unit_libm (faster for one element at a time; the inline forms for a
// loop over many: dispatch.hpp's bce_inline_math).
template <bool kInline, class T>
DENSEFIT_ALWAYS_INLINE T bce_element(T& dz, int64_t& correct, T z, T y, T scale) {
    const T e = kInline ? vmath::exp_nonpositive(-std::abs(z)) : std::exp(-std::abs(z));  // for the loss and sigmoid(z)
    correct += (z > T(0)) == (y > T(0.5));
    dz = (vmath::sigmoid_of_exp(z, e) - y) * scale;
    const T log_term = kInline ? vmath::log1p_unit(e) : sizeof(T) == sizeof(float) ? log1p_unit_libm(e) : std::log1p(e);
    return std::max(z, T(0)) - z * y + log_term;
}

// Σ max(z, 0) - z y + log1p(exp(-|z|)), dz = (sigmoid(z) - y) · scale over n = rows × K elements;
// scale = 1 / (batch K). In chunks: a loop over the elements (it vectorizes: exp and log1p are
// vmath's), then the chunk's terms summed in double in 4 partial sums. A few elements
// (!bce_inline_math, e.g. one per step) go one by one through the library's exp and log.
template <class T>
LossSum bce_rows(T* dz, const T* z, const T* y, int64_t n, T scale) {
    constexpr int64_t kChunk = 64;
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t correct = 0;
    if (!bce_inline_math(n)) {
        for (int64_t i = 0; i < n; i++) s0 += static_cast<double>(bce_element<false>(dz[i], correct, z[i], y[i], scale));
        return {s0, correct};
    }
    T terms[kChunk];
    for (int64_t c = 0; c < n; c += kChunk) {
        const int64_t len = std::min(kChunk, n - c);
        for (int64_t i = 0; i < len; i++) terms[i] = bce_element<true>(dz[c + i], correct, z[c + i], y[c + i], scale);
        int64_t i = 0;
        for (; i + 4 <= len; i += 4) {
            s0 += static_cast<double>(terms[i]);
            s1 += static_cast<double>(terms[i + 1]);
            s2 += static_cast<double>(terms[i + 2]);
            s3 += static_cast<double>(terms[i + 3]);
        }
        for (; i < len; i++) s0 += static_cast<double>(terms[i]);
    }
    return {(s0 + s1) + (s2 + s3), correct};
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
        const T sum_e = softmax_exp_row(d, zr, mx, K);
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
        case CATEGORICAL_CROSSENTROPY:
            return cce_rows(dz, z, y, m, K, y_cols == 1 && K > 1, T(1.0 / static_cast<double>(batch)));
    }
    unknown_code("loss", loss);
}

// The mean loss of a batch of m rows from its LossSum: over the elements for mse and binary
// cross-entropy, over the rows for categorical cross-entropy.
inline LossValue batch_mean(const LossSum& s, int64_t m, int64_t K, int64_t loss) {
    const int64_t count = loss == CATEGORICAL_CROSSENTROPY ? m : m * K;
    return {s.sum / static_cast<double>(count), s.correct};
}

// Rows [0, m) of a weighted batch, row i scaled by row_scale[i] = w_i / Σ_batch w (zero for every
// row of a batch whose weights sum to zero): dz_i = r_i ∂ℓ_i/∂z_i, and the value Σ r_i ℓ_i (in
// double), ℓ_i being row i's loss (mean over the K outputs for mse and binary cross-entropy). Each
// row goes through the unweighted formulas as a batch of one, then its gradient is multiplied by
// r_i: the numpy reference's order, ((z - y) · 2/K) · r_i and so on. Sums over rows are additive,
// so a pass that visits a batch in blocks of rows adds the values of its blocks.
template <class T>
LossValue weighted_loss_rows(T* dz, const T* z, const T* y, const T* row_scale, int64_t m, int64_t K, int64_t y_cols,
                             int64_t loss) {
    double value = 0;
    int64_t correct = 0;
    for (int64_t i = 0; i < m; i++) {
        T* d = dz + i * K;
        const LossValue row = batch_mean(loss_rows(d, z + i * K, y + i * y_cols, 1, K, y_cols, loss, 1), 1, K, loss);
        const T r = row_scale[i];
        for (int64_t j = 0; j < K; j++) d[j] *= r;
        value += static_cast<double>(r) * row.value;
        correct += row.correct;
    }
    return {value, correct};
}

// The whole batch (m rows) at once: the mean loss, or with row_scale (m, see weighted_loss_rows)
// the weighted one.
template <class T>
LossValue loss_and_dlogits(T* dz, const T* z, const T* y, int64_t m, int64_t K, int64_t y_cols, int64_t loss,
                           const T* row_scale = nullptr) {
    if (row_scale != nullptr) return weighted_loss_rows(dz, z, y, row_scale, m, K, y_cols, loss);
    return batch_mean(loss_rows(dz, z, y, m, K, y_cols, loss, m), m, K, loss);
}

}  // namespace densefit
