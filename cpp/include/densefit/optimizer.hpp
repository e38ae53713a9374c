// The update after each batch, over the flat parameter buffer (size legend: n values of it):
// 1. add_penalty_gradient on each regularized Dense kernel,
// 2. clip_gradient: clamp by value, then accumulate the global norm (in double) → a scale,
// 3. optimizer_step: one pass that scales the gradient and updates parameters and slots.
// Codes and hyper-parameter columns are those of python/densefit/optimizers.py; the scalar forms
// and their evaluation order are those of the numpy reference.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "codes.hpp"

namespace densefit {

struct Optimizer {
    int64_t kind;
    double momentum, dampening;
    bool nesterov;
    double beta_1, beta_2, epsilon, rho, weight_decay;
    double clipnorm, clipvalue;  // 0 = off
};

// grad += l1 sign(W) + 2 l2 W; returns the penalty l1 Σ|W| + l2 Σ W² (in double). The two sums
// run in 8 partial sums each, added pairwise at the end: independent adds vectorize, where one
// running sum would wait on every add (the loop ran at the latency of a double add per weight).
template <class T>
double add_penalty_gradient(T* grad, const T* W, int64_t n, double l1, double l2) {
    const T tl1 = T(l1), tl2 = T(2 * l2);
    for (int64_t i = 0; i < n; i++) {
        const T w = W[i];
        const T sign = w > T(0) ? T(1) : w < T(0) ? T(-1) : w;  // sign(0) = 0, sign(NaN) = NaN
        grad[i] = grad[i] + (tl1 * sign + tl2 * w);
    }
    constexpr int kLanes = 8;
    double abs_sum[kLanes] = {}, square_sum[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (int j = 0; j < kLanes; j++) {
            const double w = static_cast<double>(W[i + j]);
            abs_sum[j] += std::abs(w);
            square_sum[j] += w * w;
        }
    for (int j = 0; i < n; i++, j++) {
        const double w = static_cast<double>(W[i]);
        abs_sum[j] += std::abs(w);
        square_sum[j] += w * w;
    }
    for (int width = kLanes / 2; width > 0; width /= 2)
        for (int j = 0; j < width; j++) {
            abs_sum[j] += abs_sum[j + width];
            square_sum[j] += square_sum[j + width];
        }
    return l1 * abs_sum[0] + l2 * square_sum[0];
}

// Clamp each element to [-clipvalue, clipvalue] (if > 0), then return the factor
// min(1, clipnorm / (‖grad‖₂ + 1e-6)) the gradient must be scaled by (1 without clipnorm).
template <class T>
T clip_gradient(T* grad, int64_t n, double clipvalue, double clipnorm) {
    if (clipvalue > 0) {
        const T hi = T(clipvalue), lo = -hi;
        for (int64_t i = 0; i < n; i++) grad[i] = std::min(std::max(grad[i], lo), hi);
    }
    if (!(clipnorm > 0)) return T(1);
    double square_sum = 0;
    for (int64_t i = 0; i < n; i++) square_sum += static_cast<double>(grad[i]) * static_cast<double>(grad[i]);
    return T(std::min(1.0, clipnorm / (std::sqrt(square_sum) + 1e-6)));
}

// One step t (from 1) with learning rate lr on w[0..n), gradient grad · gscale. decay multiplies w
// before the update (AdamW's decoupled weight decay; 1 elsewhere, which is exact).
template <class T>
void optimizer_step(T* w, T* slot0, T* slot1, const T* grad, int64_t n, const Optimizer& opt, double lr, int64_t t,
                    T gscale, T decay) {
    const T tlr = T(lr);
    switch (opt.kind) {
        case SGD: {
            if (!(opt.momentum > 0)) {
                for (int64_t i = 0; i < n; i++) w[i] = w[i] - tlr * (grad[i] * gscale);
                break;
            }
            const T mu = T(opt.momentum), keep = T(1 - opt.dampening);
            for (int64_t i = 0; i < n; i++) {
                const T g = grad[i] * gscale;
                T buf = slot0[i];
                if (t == 1) {
                    buf = g;  // torch.optim.SGD starts the momentum buffer at the first gradient
                } else {
                    buf = buf * mu;
                    buf = buf + keep * g;
                }
                slot0[i] = buf;
                w[i] = w[i] - tlr * (opt.nesterov ? g + mu * buf : buf);
            }
            break;
        }
        case ADAM:
        case ADAMW: {
            const T b1 = T(opt.beta_1), b2 = T(opt.beta_2), one_b1 = T(1 - opt.beta_1), one_b2 = T(1 - opt.beta_2);
            const double td = static_cast<double>(t);
            const T step_size = T(lr / (1 - std::pow(opt.beta_1, td)));
            const T correction2 = T(std::sqrt(1 - std::pow(opt.beta_2, td)));
            const T eps = T(opt.epsilon);
            for (int64_t i = 0; i < n; i++) {
                const T g = grad[i] * gscale;
                T m = slot0[i] * b1;
                m = m + one_b1 * g;
                T v = slot1[i] * b2;
                v = v + one_b2 * g * g;
                slot0[i] = m;
                slot1[i] = v;
                const T denom = std::sqrt(v) / correction2 + eps;
                const T decayed = w[i] * decay;
                w[i] = decayed - step_size * m / denom;
            }
            break;
        }
        case RMSPROP: {
            const T rho = T(opt.rho), one_rho = T(1 - opt.rho), eps = T(opt.epsilon);
            for (int64_t i = 0; i < n; i++) {
                const T g = grad[i] * gscale;
                T v = slot0[i] * rho;
                v = v + one_rho * g * g;
                slot0[i] = v;
                w[i] = w[i] - tlr * g / (std::sqrt(v) + eps);
            }
            break;
        }
        case ADAGRAD: {
            const T eps = T(opt.epsilon);
            for (int64_t i = 0; i < n; i++) {
                const T g = grad[i] * gscale;
                const T s = slot0[i] + g * g;
                slot0[i] = s;
                w[i] = w[i] - tlr * g / (std::sqrt(s) + eps);
            }
            break;
        }
        default: unknown_code("optimizer", opt.kind);
    }
}

}  // namespace densefit
