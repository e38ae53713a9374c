// DENSEFIT_ALWAYS_INLINE marks the per-op kernels that the dispatch loops (network.hpp) call once
// per op per batch. At batch size 1 (W1) a kernel does a few dozen flops, so the call itself
// (argument set-up, saved registers, a second switch) is a large share of a step; GCC's heuristics
// keep these large multi-case functions out of line. Code size grows by about 1%.
//
// DENSEFIT_INLINE_LAMBDA does the same for the lambdas that with_activation and with_small_width
// (layers.hpp) call once per compile-time code: with the 8 activations × 7 widths GCC kept the
// fused sweeps out of line, a call per op that is a large share of W1's step.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define DENSEFIT_ALWAYS_INLINE __attribute__((always_inline)) inline
#define DENSEFIT_NOINLINE __attribute__((noinline))
#define DENSEFIT_INLINE_LAMBDA __attribute__((always_inline))
#else
#define DENSEFIT_NOINLINE
#define DENSEFIT_ALWAYS_INLINE inline
#define DENSEFIT_INLINE_LAMBDA
#endif
