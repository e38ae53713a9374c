// The sample order of a shuffled epoch, from (seed, epoch) alone: the generator that
// python/densefit/shuffle.py specifies (its docstring is the definition) and computes with numpy,
// here bit for bit. All arithmetic is modulo 2^64.
//
//   h = max(1, ceil(bits(n - 1) / 2)), mask = 2^h - 1; k_r = mix(seed ^ mix(4 epoch + r)), r < 4
//   F_r(v) = mix(v ^ k_r) & mask; feistel: (L, R) = (x >> h, x & mask), 4 times (L, R) = (R, L ^ F_r(R))
//   order[i] = feistel(i), re-applied while >= n (cycle walking: a permutation of [0, n))
#pragma once

#include <cstdint>
#include <vector>

#include "rng.hpp"

namespace densefit {

// Epoch e of a train_epochs call given a Shuffle visits the order EpochOrder::compute(seed, first_epoch + e).
struct Shuffle {
    uint64_t seed;
    uint64_t first_epoch;
};

// h: the width of each Feistel half for n rows.
inline int shuffle_half_bits(int64_t n) {
    int bits = 0;
    for (uint64_t v = n > 1 ? static_cast<uint64_t>(n - 1) : 0; v != 0; v >>= 1) bits++;
    return bits < 2 ? 1 : (bits + 1) / 2;
}

// The buffers of one call's epoch orders, sized once for n rows: the order, the rows still cycle
// walking, and F_r tabulated for every h-bit value (2^h < 2 sqrt(n), so the tables are small
// beside the order), which turns each round into a look-up instead of two multiplies.
struct EpochOrder {
    std::vector<int64_t> order, walking;
    std::vector<uint32_t> tables;  // 4 rounds × 2^h (h <= 32)
    int h = 1;

    explicit EpochOrder(int64_t n)
        : order(static_cast<size_t>(n)), walking(static_cast<size_t>(n)), h(shuffle_half_bits(n)) {
        if (n > 0) tables.resize(size_t{4} << h);  // (none for a call that does not shuffle)
    }

    // order = the row order of `epoch` over the n rows the buffers were sized for.
    const int64_t* compute(uint64_t seed, uint64_t epoch) {
        if (order.empty()) return order.data();
        const uint64_t size = uint64_t{1} << h, mask = size - 1;
        for (uint64_t r = 0; r < 4; r++) {
            const uint64_t key = mix(seed ^ mix(epoch * 4 + r));
            uint32_t* F = tables.data() + r * size;
            for (uint64_t v = 0; v < size; v++) F[v] = static_cast<uint32_t>(mix(v ^ key) & mask);
        }
        const int64_t n = static_cast<int64_t>(order.size());
        // Cycle walking one step for all the values still >= n at a time, not to the end value by
        // value: the steps of different values are independent, so they overlap instead of
        // waiting on each other's look-ups, and no branch depends on the random values.
        // (The first pass notes the values to walk on as it goes, which also keeps it scalar: its
        // look-ups as vector gathers measured slower than one load each.)
        int64_t count = 0;  // walking[0..count) are the i whose order[i] is still >= n
        for (int64_t i = 0; i < n; i++) {
            const uint64_t x = feistel(static_cast<uint64_t>(i));
            order[i] = static_cast<int64_t>(x);
            walking[count] = i;
            count += x >= static_cast<uint64_t>(n);
        }
        while (count > 0) {
            int64_t still = 0;
            for (int64_t k = 0; k < count; k++) {
                const int64_t i = walking[k];
                const uint64_t x = feistel(static_cast<uint64_t>(order[i]));
                order[i] = static_cast<int64_t>(x);
                walking[still] = i;
                still += x >= static_cast<uint64_t>(n);
            }
            count = still;
        }
        return order.data();
    }

  private:
    uint64_t feistel(uint64_t x) const {
        const uint64_t size = uint64_t{1} << h;
        const uint32_t* F = tables.data();
        uint64_t left = x >> h, right = x & (size - 1);
        for (int r = 0; r < 4; r++) {
            const uint64_t next = left ^ F[r * size + right];
            left = right;
            right = next;
        }
        return (left << h) | right;
    }
};

}  // namespace densefit
