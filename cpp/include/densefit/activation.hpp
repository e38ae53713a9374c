// Activations, forward and backward, elementwise over n values (n = rows × width of a batch).
// Formulas and their evaluation order follow the numpy reference (python/densefit/backends/numpy_.py)
// so float32 results round the same way; the codes are those of python/densefit/activations.py.
// Backward functions may run in place (dinp == dout).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "inline.hpp"

namespace densefit {

enum Activation : int64_t { IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, ELU, SOFTPLUS, GELU, SOFTMAX };

// sigmoid(x) given e = exp(-|x|), which callers may share with other terms (never overflows:
// exp of a non-positive number only).
template <class T>
inline T sigmoid_of_exp(T x, T e) {
    return x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}

template <class T>
inline T sigmoid(T x) {
    return sigmoid_of_exp(x, std::exp(-std::abs(x)));
}

template <class T>
inline T softplus(T x) {
    return std::log1p(std::exp(-std::abs(x))) + std::max(x, T(0));
}

inline const double kGeluC = std::sqrt(2.0 / 3.141592653589793);  // as the reference: sqrt(2 / pi) in double
constexpr double kGeluA = 0.044715;

template <class T>
inline T gelu(T x) {
    T t = std::tanh(T(kGeluC) * (x + T(kGeluA) * (x * x * x)));
    return T(0.5) * x * (T(1) + t);
}

template <class T>
inline T gelu_derivative(T x) {
    T t = std::tanh(T(kGeluC) * (x + T(kGeluA) * (x * x * x)));
    T du = T(kGeluC) * (T(1) + T(3 * kGeluA) * x * x);
    return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du;
}

// out = act(inp). SOFTMAX is not elementwise: see softmax_rows.
template <class T>
DENSEFIT_ALWAYS_INLINE void activation_forward(T* out, const T* inp, int64_t n, int64_t act, T alpha) {
    switch (act) {
        case IDENTITY: std::copy(inp, inp + n, out); break;
        case SIGMOID: for (int64_t i = 0; i < n; i++) out[i] = sigmoid(inp[i]); break;
        case TANH: for (int64_t i = 0; i < n; i++) out[i] = std::tanh(inp[i]); break;
        case RELU: for (int64_t i = 0; i < n; i++) out[i] = std::max(inp[i], T(0)); break;
        case LEAKY_RELU: for (int64_t i = 0; i < n; i++) out[i] = inp[i] > T(0) ? inp[i] : inp[i] * alpha; break;
        case ELU:
            for (int64_t i = 0; i < n; i++) out[i] = inp[i] > T(0) ? inp[i] : alpha * std::expm1(std::min(inp[i], T(0)));
            break;
        case SOFTPLUS: for (int64_t i = 0; i < n; i++) out[i] = softplus(inp[i]); break;
        case GELU: for (int64_t i = 0; i < n; i++) out[i] = gelu(inp[i]); break;
    }
}

// dinp = dout · act'(inp); out = act(inp) is passed because some derivatives are written in it.
template <class T>
DENSEFIT_ALWAYS_INLINE void activation_backward(T* dinp, const T* dout, const T* inp, const T* out, int64_t n, int64_t act,
                                                T alpha) {
    switch (act) {
        case IDENTITY: std::copy(dout, dout + n, dinp); break;
        case SIGMOID: for (int64_t i = 0; i < n; i++) dinp[i] = dout[i] * out[i] * (T(1) - out[i]); break;
        case TANH: for (int64_t i = 0; i < n; i++) dinp[i] = dout[i] * (T(1) - out[i] * out[i]); break;
        case RELU: for (int64_t i = 0; i < n; i++) dinp[i] = inp[i] > T(0) ? dout[i] : T(0); break;
        case LEAKY_RELU: for (int64_t i = 0; i < n; i++) dinp[i] = inp[i] > T(0) ? dout[i] : dout[i] * alpha; break;
        case ELU: for (int64_t i = 0; i < n; i++) dinp[i] = inp[i] > T(0) ? dout[i] : dout[i] * (out[i] + alpha); break;
        case SOFTPLUS: for (int64_t i = 0; i < n; i++) dinp[i] = dout[i] * sigmoid(inp[i]); break;
        case GELU: for (int64_t i = 0; i < n; i++) dinp[i] = dout[i] * gelu_derivative(inp[i]); break;
    }
}

// out (m × K) = softmax of each row of z, exp(z - max) / Σ exp(z - max).
template <class T>
void softmax_rows(T* out, const T* z, int64_t m, int64_t K) {
    for (int64_t r = 0; r < m; r++) {
        const T* zr = z + r * K;
        T* o = out + r * K;
        T mx = *std::max_element(zr, zr + K);
        T sum = 0;
        for (int64_t j = 0; j < K; j++) sum += (o[j] = std::exp(zr[j] - mx));
        for (int64_t j = 0; j < K; j++) o[j] /= sum;
    }
}

// The activation predict applies to the logits: identity, sigmoid or softmax.
template <class T>
void output_activation(T* out, const T* z, int64_t m, int64_t K, int64_t act) {
    if (act == SOFTMAX)
        softmax_rows(out, z, m, K);
    else
        activation_forward(out, z, m * K, act, T(0));
}

}  // namespace densefit
