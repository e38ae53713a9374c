// DENSEFIT_ALWAYS_INLINE marks the per-op kernels that the dispatch loops (network.hpp) call once
// per op per batch. At batch size 1 (W1) a kernel does a few dozen flops, so the call itself
// (argument set-up, saved registers, a second switch) is a large share of a step; GCC's heuristics
// keep these large multi-case functions out of line, and inlining them measured 4.9 → 5.4 M
// samples/s on W1. Code size grows by about 1%.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define DENSEFIT_ALWAYS_INLINE __attribute__((always_inline)) inline
#define DENSEFIT_NOINLINE __attribute__((noinline))
#else
#define DENSEFIT_NOINLINE
#define DENSEFIT_ALWAYS_INLINE inline
#endif
