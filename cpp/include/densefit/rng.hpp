// The counter-based uniform of DESIGN.md (identical in numpy, numba and here): a dropout mask
// element depends only on (seed, step, layer, index), never on the visiting order.
// All arithmetic is modulo 2^64.
#pragma once

#include <cstdint>

namespace densefit {

// SplitMix64's finalizer.
inline uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// mix(mix(mix(seed) ^ step) ^ layer): the part shared by one layer's mask at one step.
inline uint64_t stream_key(uint64_t seed, uint64_t step, uint64_t layer) {
    return mix(mix(mix(seed) ^ step) ^ layer);
}

// uniform(seed, step, layer, i) in [0, 1) with 24 random bits, given key = stream_key(...).
inline double uniform(uint64_t key, uint64_t i) {
    return static_cast<double>(mix(i ^ key) >> 40) * 0x1p-24;
}

}  // namespace densefit
