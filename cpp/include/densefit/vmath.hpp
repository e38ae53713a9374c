// Elementwise math without library calls: exp, expm1, log1p, tanh, and the activations built on
// them (sigmoid, softplus, elu, gelu and its derivative), in float and double. Each is a scalar
// inline function written branch-free (selects, not jumps; no table lookups; integers only in
// adds and shifts of the float's bits), so a loop that calls one on every element of an array
// vectorizes at -O3: AVX-512 with -march=native, SSE2 without (float only there: GCC leaves the
// double forms, with their 64-bit integer steps, scalar for SSE2; same results). With
// -ffp-contract=off every operation rounds as written, so a vectorized loop, its scalar
// remainder and a scalar call give the same bits: TinyPass, the direct loops and the fused
// epilogues agree bit for bit.
//
// The method: x = n ln2 + r with |r| ≤ ln2/2 (ln2 in two parts, the first with trailing zeros
// so n·ln2_hi is exact), a polynomial in r (Taylor series by Estrin's scheme; float exp:
// Cephes' expf fit), then 2^n built in the exponent bits; log1p splits 1 + x = 2^k m, m in
// [√2/2, √2), and sums the atanh series of s = f / (2 + f), f = m - 1, with the rounding error
// of 1 + x added back. The measured errors against a float64 / long double reference, and where
// they differ from libm, are in docs/design.md ("Elementwise math") and tests/test_vmath.py.
//
// Edge cases as libm: NaN in, NaN out; ±inf and the overflow / underflow ranges give inf, 0, -1
// or ±1 as the function's limit; results in the subnormal range round once (exp scales by 2^n
// in two normal factors); -0 stays -0 wherever libm keeps it (expm1, log1p, tanh).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "inline.hpp"

namespace densefit {
namespace vmath {

template <class T>
struct Traits;

template <>
struct Traits<float> {
    using U = uint32_t;
    static constexpr int kMantissa = 23;
    static constexpr U kBias = 127;
    static constexpr float kShifter = 12582912.0f;  // 1.5 · 2^23: adding it rounds |v| < 2^22 to an integer
    static constexpr float kLn2Hi = 0.693359375f;   // 9 significant bits: n · kLn2Hi is exact for |n| < 2^15
    static constexpr float kLn2Lo = -2.12194440e-4f;
    static constexpr float kExpLo = -104.0f;  // e^x rounds to 0 below (under half the least subnormal)
    static constexpr float kExpHi = 89.0f;    // e^x overflows above 88.73
    static constexpr float kMaxExp = 128.0f;  // the n where 2^n overflows (kExpHi / ln2 rounds to it)
};

template <>
struct Traits<double> {
    using U = uint64_t;
    static constexpr int kMantissa = 52;
    static constexpr U kBias = 1023;
    static constexpr double kShifter = 6755399441055744.0;  // 1.5 · 2^52
    static constexpr double kLn2Hi = 6.93147180369123816490e-01;  // 32 significant bits
    static constexpr double kLn2Lo = 1.90821492927058770002e-10;
    static constexpr double kExpLo = -746.0;
    static constexpr double kExpHi = 710.0;  // e^x overflows above 709.79
    static constexpr double kMaxExp = 1024.0;
};

template <class T>
using Bits = typename Traits<T>::U;

template <class T>
DENSEFIT_ALWAYS_INLINE Bits<T> to_bits(T x) {
    Bits<T> u;
    std::memcpy(&u, &x, sizeof u);
    return u;
}

template <class T>
DENSEFIT_ALWAYS_INLINE T from_bits(Bits<T> u) {
    T x;
    std::memcpy(&x, &u, sizeof x);
    return x;
}

// 2^n for n in the normal exponent range, n given modulo 2^bits (unsigned: wrapping is defined).
template <class T>
DENSEFIT_ALWAYS_INLINE T pow2(Bits<T> n) {
    return from_bits<T>((n + Traits<T>::kBias) << Traits<T>::kMantissa);
}

// The integer k = v + kShifter - kShifter of that sum's bits (v already rounded by the add).
template <class T>
DENSEFIT_ALWAYS_INLINE Bits<T> shifted_integer(T shifted) {
    return to_bits(shifted) - to_bits(Traits<T>::kShifter);
}

// c ? a : b in bit operations on values already computed. A plain ?: lets GCC sink the
// computation of a or b into a branch of its own, and it then refuses to if-convert the loop (the
// floating-point operations could trap), so the loop does not vectorize.
template <class T>
DENSEFIT_ALWAYS_INLINE T select(bool c, T a, T b) {
    const Bits<T> mask = Bits<T>(0) - Bits<T>(c);
    return from_bits<T>((to_bits(a) & mask) | (to_bits(b) & ~mask));
}

// lo ≤ x ≤ hi, NaN kept (both comparisons are false for it).
template <class T>
DENSEFIT_ALWAYS_INLINE T clamp(T x, T lo, T hi) {
    return select(x > hi, hi, select(x < lo, lo, x));
}

// x = n ln2 + r, |r| ≤ ln2/2 (a little more from rounding x/ln2); n as a float (nf) and as an
// integer modulo 2^bits.
template <class T>
struct Reduced {
    T r, nf;
    Bits<T> n;
};

template <class T>
DENSEFIT_ALWAYS_INLINE Reduced<T> reduce_ln2(T x) {
    using C = Traits<T>;
    const T k = x * T(1.44269504088896340736) + C::kShifter;
    const T nf = k - C::kShifter;
    const T r = (x - nf * C::kLn2Hi) - nf * C::kLn2Lo;  // x - nf·ln2_hi is exact
    return {r, nf, shifted_integer(k)};
}

// c[0] + c[1] x + … + c[N-1] x^(N-1) by Estrin's scheme: pairs c[i] + c[i+1] x, then pairs of
// those with x², x⁴, …: a chain of about 2 log2(N) dependent operations instead of Horner's 2N,
// so that the out-of-order core overlaps the elements of a loop instead of waiting on one chain
// (the series below are long: in double, exp's has 14 terms and log1p's 10).
template <int N, class T>
DENSEFIT_ALWAYS_INLINE T estrin(const T* c, T x, T x2, T x4, T x8) {
    static_assert(N >= 1 && N <= 16, "up to 16 coefficients");
    if constexpr (N == 1) return c[0];
    else if constexpr (N == 2) return c[0] + c[1] * x;
    else if constexpr (N <= 4) return estrin<2>(c, x, x2, x4, x8) + estrin<N - 2>(c + 2, x, x2, x4, x8) * x2;
    else if constexpr (N <= 8) return estrin<4>(c, x, x2, x4, x8) + estrin<N - 4>(c + 4, x, x2, x4, x8) * x4;
    else return estrin<8>(c, x, x2, x4, x8) + estrin<N - 8>(c + 8, x, x2, x4, x8) * x8;
}

template <int N, class T>
DENSEFIT_ALWAYS_INLINE T estrin(const T (&c)[N], T x) {
    const T x2 = x * x, x4 = x2 * x2;
    return estrin<N>(&c[0], x, x2, x4, x4 * x4);  // the powers not needed are never computed
}

// e^r - 1 - r for |r| ≤ ~0.35, divided by r² : the series Σ_{j≥2} r^(j-2) / j!, to where the next
// term is below a hundredth of an ulp (float: r^8, double: r^14).
template <class T>
DENSEFIT_ALWAYS_INLINE T expm1_tail(T r) {
    if constexpr (sizeof(T) == sizeof(float)) {
        static constexpr float c[8] = {1.0f / 2, 1.0f / 6, 1.0f / 24, 1.0f / 120, 1.0f / 720, 1.0f / 5040, 1.0f / 40320,
                                       1.0f / 362880};
        return estrin(c, r);
    } else {
        static constexpr double c[14] = {1.0 / 2,          1.0 / 6,           1.0 / 24,           1.0 / 120,
                                         1.0 / 720,        1.0 / 5040,        1.0 / 40320,        1.0 / 362880,
                                         1.0 / 3628800,    1.0 / 39916800,    1.0 / 479001600,    1.0 / 6227020800,
                                         1.0 / 87178291200, 1.0 / 1307674368000};
        return estrin(c, r);
    }
}

// e^r for |r| ≤ ~0.35. Float: Cephes' expf polynomial (a minimax fit, one term shorter than the
// series); double: 1 + (r + r² · expm1_tail(r)).
template <class T>
DENSEFIT_ALWAYS_INLINE T exp_reduced(T r) {
    if constexpr (sizeof(T) == sizeof(float)) {
        float p = 1.9875691500e-4f;
        p = p * r + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        return p * (r * r) + r + 1.0f;
    } else {
        return 1.0 + (r + (r * r) * expm1_tail(r));
    }
}

// e^x.
template <class T>
DENSEFIT_ALWAYS_INLINE T exp(T x) {
    using C = Traits<T>;
    x = clamp(x, C::kExpLo, C::kExpHi);
    const Reduced<T> red = reduce_ln2(x);
    const T e = exp_reduced(red.r);
    // 2^n as 2^n1 · 2^n2, n1 = round(n / 2): both factors are normal for every n from the clamped
    // range, e · 2^n1 is exact, and a result below the normal range rounds once, in the last product.
    const Bits<T> n1 = shifted_integer(red.nf * T(0.5) + C::kShifter);
    return (e * pow2<T>(n1)) * pow2<T>(red.n - n1);
}

// e^x - 1.
template <class T>
DENSEFIT_ALWAYS_INLINE T expm1(T x) {
    using C = Traits<T>;
    // Below -40, e^x is under a hundredth of an ulp of -1 (float and double): the result is -1.
    const Reduced<T> red = reduce_ln2(clamp(x, T(-40), C::kExpHi));
    const T em = red.r + (red.r * red.r) * expm1_tail(red.r);  // e^r - 1
    // e^x - 1 = 2^n (e^r - 1) + (2^n - 1): 2^n · em is exact and the sum rounds once. At the top
    // n, where 2^n overflows, the same with 2^(n-1), doubled after.
    const bool top = red.nf == C::kMaxExp;
    const T s = pow2<T>(red.n - Bits<T>(top));
    const T y = s * em + (s - select(top, T(0.5), T(1)));
    const T full = select(top, y + y, y);
    return select(x == T(0), x, full);  // -0 stays -0 (r + r² q would be +0)
}

// log(1 + x).
template <class T>
DENSEFIT_ALWAYS_INLINE T log1p(T x) {
    using C = Traits<T>;
    using U = Bits<T>;
    constexpr U one = U(C::kBias) << C::kMantissa;  // the bits of 1
    constexpr U mantissa = (U(1) << C::kMantissa) - 1;
    const U sqrt_half = to_bits(T(0.70710678118654752440));
    const T u = T(1) + x;
    // u = 2^k m with m in [√2/2, √2): u's exponent field counted from √2/2 instead of 1.
    const U shifted = to_bits(u) + (one - sqrt_half);
    const U k = (shifted >> C::kMantissa) - C::kBias;  // modulo 2^bits
    const T m = from_bits<T>((shifted & mantissa) + sqrt_half);
    const T kf = from_bits<T>(to_bits(C::kShifter) + k) - C::kShifter;
    // c / u: what rounding 1 + x to u lost, relative to u (log1p(x) = log(u) + c/u to first
    // order). x - (u - 1) is exact while u < 2^(mantissa + 1); beyond, c/u is below 2^-mantissa,
    // far under an ulp of log(u), whatever rounding it has.
    const T c = (x - (u - T(1))) / u;
    // log(m) = log(1 + f) = 2 atanh(s) = f - f²/2 + s (f²/2 + R), s = f / (2 + f), R = Σ_{j≥1} 2 s^(2j) / (2j + 1)
    // to where the next term is below a hundredth of an ulp (|s| ≤ 0.172).
    const T f = m - T(1);
    const T s = f / (T(2) + f);
    const T z = s * s;
    T R;
    if constexpr (sizeof(T) == sizeof(float)) {
        static constexpr float series[4] = {2.0f / 3, 2.0f / 5, 2.0f / 7, 2.0f / 9};
        R = z * estrin(series, z);
    } else {
        static constexpr double series[10] = {2.0 / 3,  2.0 / 5,  2.0 / 7,  2.0 / 9,  2.0 / 11,
                                              2.0 / 13, 2.0 / 15, 2.0 / 17, 2.0 / 19, 2.0 / 21};
        R = z * estrin(series, z);
    }
    const T half_f2 = T(0.5) * f * f;
    const T y = kf * C::kLn2Hi + (f - (half_f2 - (s * (half_f2 + R) + (kf * C::kLn2Lo + c))));
    // Outside (-1, inf): -inf at -1, NaN below (and for -inf), x itself for +inf and NaN.
    const T below = select(x == T(-1), -std::numeric_limits<T>::infinity(), std::numeric_limits<T>::quiet_NaN());
    const bool keep_x = (x == T(0)) | !(x < std::numeric_limits<T>::infinity());  // ±0 (-0 stays -0), +inf, NaN
    return select(x <= T(-1), below, select(keep_x, x, y));
}

// e^x for x ≤ 0 (and NaN) only, for arguments known to be non-positive (binary cross-entropy's
// e^-|z|): in float, one range reduction and Cephes' expf polynomial with no overflow or
// subnormal handling, fewer operations than exp (W5's loss runs on it). Within 1 ulp of expf over
// [-87, 0]; below -87 it returns e^-87 ≈ 1.6e-38 (2^n stays normal), where the loss term is log1p
// of it and sigmoid is 1 or that value. In double: exp.
template <class T>
DENSEFIT_ALWAYS_INLINE T exp_nonpositive(T x) {
    if constexpr (sizeof(T) == sizeof(float)) {
        x = std::max(x, -87.0f);  // NaN stays NaN (the comparison fails)
        const Reduced<float> red = reduce_ln2(x);
        return exp_reduced(red.r) * pow2<float>(red.n);
    } else {
        return exp(x);
    }
}

// log(1 + x) for x in [0, 1] (and NaN) only, the other factor of binary cross-entropy's loss term:
// in float 2 atanh(s), s = x / (2 + x) in [0, 1/3], by its series to s¹⁴/15 (1 + x is never
// rounded, so small x keep their precision), with none of log1p's range handling. Within 1 ulp
// of log1pf over [0, 1]. In double: log1p.
template <class T>
DENSEFIT_ALWAYS_INLINE T log1p_unit(T x) {
    if constexpr (sizeof(T) == sizeof(float)) {
        static constexpr float series[8] = {1.0f, 1.0f / 3, 1.0f / 5, 1.0f / 7, 1.0f / 9, 1.0f / 11, 1.0f / 13, 1.0f / 15};
        const float s = x / (2.0f + x);
        return 2.0f * s * estrin(series, s * s);
    } else {
        return log1p(x);
    }
}

// tanh(x) = sign(x) · (-e / (e + 2)), e = e^(-2|x|) - 1 in (-1, 0]: no cancellation for small
// |x| (e ≈ -2|x| to full relative precision), and 1 exactly once e rounds to -1.
template <class T>
DENSEFIT_ALWAYS_INLINE T tanh(T x) {
    const T e = expm1(T(-2) * std::abs(x));
    return std::copysign(-e / (e + T(2)), x);
}

// sigmoid(x) given e = exp(-|x|), which callers may share with other terms (never overflows:
// exp of a non-positive number only): 1 / (1 + e) for x ≥ 0, e / (1 + e) below, as the numpy
// reference (one division: the numerator is selected).
template <class T>
DENSEFIT_ALWAYS_INLINE T sigmoid_of_exp(T x, T e) {
    return select(x >= T(0), T(1), e) / (T(1) + e);
}

template <class T>
DENSEFIT_ALWAYS_INLINE T sigmoid(T x) {
    return sigmoid_of_exp(x, vmath::exp(-std::abs(x)));
}

// log(1 + e^x) = log1p(e^(-|x|)) + max(x, 0), which never overflows.
template <class T>
DENSEFIT_ALWAYS_INLINE T softplus(T x) {
    return vmath::log1p(vmath::exp(-std::abs(x))) + select(x < T(0), T(0), x);
}

// elu(x) = x for x > 0, else α (e^x - 1).
template <class T>
DENSEFIT_ALWAYS_INLINE T elu(T x, T alpha) {
    return select(x > T(0), x, alpha * vmath::expm1(select(T(0) < x, T(0), x)));  // min(x, 0) as std::min: NaN stays
}

// The tanh form of gelu, with the reference's constants: √(2/π) computed in double, then rounded
// to T as every constant (python/densefit/activations.py).
constexpr double kGeluC = 0.79788456080286535588;  // √(2/π)
constexpr double kGeluA = 0.044715;

// tanh(√(2/π) (x + 0.044715 x³)), shared by gelu and its derivative.
template <class T>
DENSEFIT_ALWAYS_INLINE T gelu_tanh(T x) {
    return vmath::tanh(T(kGeluC) * (x + T(kGeluA) * (x * x * x)));
}

template <class T>
DENSEFIT_ALWAYS_INLINE T gelu(T x) {
    return T(0.5) * x * (T(1) + gelu_tanh(x));
}

template <class T>
DENSEFIT_ALWAYS_INLINE T gelu_derivative(T x) {
    const T t = gelu_tanh(x);
    const T du = T(kGeluC) * (T(1) + T(3 * kGeluA) * x * x);
    return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du;
}

}  // namespace vmath
}  // namespace densefit
