// Activations, forward and backward, elementwise over n values (n = rows × width of a batch).
// Formulas and their evaluation order follow the numpy reference (python/densefit/backends/numpy_.py);
// exp, expm1, log1p and tanh are vmath.hpp's (within a few ulp of numpy's, and vectorizing), so
// a loop over elements vectorizes; the codes are those of python/densefit/activations.py.
// Backward functions may run in place (dinp == dout).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "codes.hpp"
#include "dispatch.hpp"
#include "inline.hpp"
#include "vmath.hpp"

namespace densefit {

// One activation as a compile-time code, so the loops below and the fused Dense passes
// (layers.hpp) inline its formula; with_activation is the one switch from a run-time code.
template <int64_t A>
using ActivationCode = std::integral_constant<int64_t, A>;

template <class F>
DENSEFIT_ALWAYS_INLINE void with_activation(int64_t act, F&& f) {
    switch (act) {
        case IDENTITY: f(ActivationCode<IDENTITY>{}); break;
        case SIGMOID: f(ActivationCode<SIGMOID>{}); break;
        case TANH: f(ActivationCode<TANH>{}); break;
        case RELU: f(ActivationCode<RELU>{}); break;
        case LEAKY_RELU: f(ActivationCode<LEAKY_RELU>{}); break;
        case ELU: f(ActivationCode<ELU>{}); break;
        case SOFTPLUS: f(ActivationCode<SOFTPLUS>{}); break;
        case GELU: f(ActivationCode<GELU>{}); break;
        default: unknown_code("activation", act);  // SOFTMAX is not elementwise; decode_net allows none here
    }
}

// act(x). SOFTMAX is not elementwise: see softmax_rows.
template <int64_t A, class T>
DENSEFIT_ALWAYS_INLINE T activate(T x, T alpha) {
    if constexpr (A == IDENTITY) return x;
    if constexpr (A == SIGMOID) return vmath::sigmoid(x);
    if constexpr (A == TANH) return vmath::tanh(x);
    if constexpr (A == RELU) return std::max(x, T(0));
    if constexpr (A == LEAKY_RELU) return x > T(0) ? x : x * alpha;
    if constexpr (A == ELU) return vmath::elu(x, alpha);
    if constexpr (A == SOFTPLUS) return vmath::softplus(x);
    if constexpr (A == GELU) return vmath::gelu(x);
}

// Whether activation_gradient reads the input x; the others need only the output y = act(x)
// (relu: y > 0 exactly when x > 0, NaN included), so a fused forward need not keep x.
template <int64_t A>
constexpr bool kGradientReadsInput = A == LEAKY_RELU || A == ELU || A == SOFTPLUS || A == GELU;

// kGradientReadsInput of a run-time code.
inline bool gradient_reads_input(int64_t act) {
    bool reads = false;
    with_activation(act, [&](auto code) { reads = kGradientReadsInput<code()>; });
    return reads;
}

// d · act'(x) given the output y = act(x).
template <int64_t A, class T>
DENSEFIT_ALWAYS_INLINE T activation_gradient(T d, T x, T y, T alpha) {
    if constexpr (A == IDENTITY) return d;
    if constexpr (A == SIGMOID) return d * y * (T(1) - y);
    if constexpr (A == TANH) return d * (T(1) - y * y);
    if constexpr (A == RELU) return y > T(0) ? d : T(0);
    if constexpr (A == LEAKY_RELU) return x > T(0) ? d : d * alpha;
    if constexpr (A == ELU) return x > T(0) ? d : d * (y + alpha);
    if constexpr (A == SOFTPLUS) return d * vmath::sigmoid(x);
    if constexpr (A == GELU) return d * vmath::gelu_derivative(x);
}

// out = act(inp).
template <class T>
DENSEFIT_ALWAYS_INLINE void activation_forward(T* out, const T* inp, int64_t n, int64_t act, T alpha) {
    with_activation(act, [&](auto code) {
        for (int64_t i = 0; i < n; i++) out[i] = activate<code()>(inp[i], alpha);
    });
}

// dinp = dout · act'(inp); out = act(inp) is passed because some derivatives are written in it.
template <class T>
DENSEFIT_ALWAYS_INLINE void activation_backward(T* dinp, const T* dout, const T* inp, const T* out, int64_t n, int64_t act,
                                                T alpha) {
    with_activation(act, [&](auto code) {
        for (int64_t i = 0; i < n; i++) dinp[i] = activation_gradient<code()>(dout[i], inp[i], out[i], alpha);
    });
}

// e = exp(zr - mx) over a row of K logits; returns Σ e, summed in order. Wide rows
// (softmax_inline_math) in two loops, the first vectorized on vmath::exp; narrow ones in one loop
// through the library's exp.
template <class T>
DENSEFIT_ALWAYS_INLINE T softmax_exp_row(T* e, const T* zr, T mx, int64_t K) {
    T sum = 0;
    if (!softmax_inline_math(K)) {
        for (int64_t j = 0; j < K; j++) sum += (e[j] = std::exp(zr[j] - mx));
        return sum;
    }
    for (int64_t j = 0; j < K; j++) e[j] = vmath::exp(zr[j] - mx);
    for (int64_t j = 0; j < K; j++) sum += e[j];
    return sum;
}

// out (m × K) = softmax of each row of z, exp(z - max) / Σ exp(z - max).
template <class T>
void softmax_rows(T* out, const T* z, int64_t m, int64_t K) {
    for (int64_t r = 0; r < m; r++) {
        const T* zr = z + r * K;
        T* o = out + r * K;
        const T sum = softmax_exp_row(o, zr, *std::max_element(zr, zr + K), K);
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
