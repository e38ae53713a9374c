// The sample order of a shuffled epoch, from (seed, epoch) alone: the generator that
// python/densefit/shuffle.py specifies (its docstring is the definition) and computes with numpy,
// here bit for bit. All arithmetic is modulo 2^64.
//
//   h = max(1, ceil(bits(n - 1) / 2)), mask = 2^h - 1; k_r = mix(seed ^ mix(4 epoch + r)), r < 4
//   F_r(v) = mix(v ^ k_r) & mask; feistel: (L, R) = (x >> h, x & mask), 4 times (L, R) = (R, L ^ F_r(R))
//   order[i] = feistel(i), re-applied while >= n (cycle walking: a permutation of [0, n))
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "dispatch.hpp"
#include "inline.hpp"
#include "rng.hpp"

#if defined(__AVX512BW__) && defined(__AVX512VBMI2__)
#include <immintrin.h>
#endif

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
//
// The first pass (feistel(i) for every i) runs in vector lanes where dispatch.hpp's
// feistel_vector_applies says so, 32 rows at a time with the tables in registers, else one row at
// a time; cycle walking, for the values still >= n, is the scalar feistel on both paths.
struct EpochOrder {
    static constexpr int64_t kLanes = 32;  // rows per vector of the first pass (16-bit lanes)

    int64_t n;
    int h;
    bool in_lanes;  // the first pass in vector lanes (first_pass_lanes)
    std::vector<int64_t> order;       // n, rounded up to kLanes on the vector path (it stores whole vectors)
    std::vector<int64_t> walking;     // the rows still cycle walking
    std::vector<uint32_t> tables;     // 4 rounds × 2^h (h <= 32)
    std::vector<uint16_t> words;      // the vector path's copy of tables: 4 rounds × max(2^h, kLanes)
    std::vector<uint16_t> walking16;  // the vector path's walking rows as it notes them, kLanes at a time

    explicit EpochOrder(int64_t rows)
        : n(rows),
          h(shuffle_half_bits(rows)),
          in_lanes(rows > 0 && feistel_vector_applies(h)),
          order(static_cast<size_t>(in_lanes ? (rows + kLanes - 1) / kLanes * kLanes : rows)),
          walking(static_cast<size_t>(rows)) {
        if (n > 0) tables.resize(size_t{4} << h);  // (none for a call that does not shuffle)
        if (in_lanes) {
            words.resize(4 * word_stride());  // (the entries past 2^h stay 0 and are never read)
            walking16.resize(static_cast<size_t>(rows + kLanes));
        }
    }

    // order = the row order of `epoch` over the n rows the buffers were sized for.
    const int64_t* compute(uint64_t seed, uint64_t epoch) {
        if (n == 0) return order.data();
        const uint64_t size = uint64_t{1} << h, mask = size - 1;
        for (uint64_t r = 0; r < 4; r++) {
            const uint64_t key = mix(seed ^ mix(epoch * 4 + r));
            uint32_t* F = tables.data() + r * size;
            for (uint64_t v = 0; v < size; v++) F[v] = static_cast<uint32_t>(mix(v ^ key) & mask);
            if (in_lanes) std::copy(F, F + size, words.data() + r * word_stride());
        }
        // Cycle walking one step for all the values still >= n at a time, not to the end value by
        // value: the steps of different values are independent, so they overlap instead of
        // waiting on each other's look-ups, and no branch depends on the random values.
        int64_t count = in_lanes ? first_pass_vector() : first_pass();  // walking[0..count) are still >= n
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
    size_t word_stride() const { return std::max(size_t{1} << h, static_cast<size_t>(kLanes)); }

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

    // order[i] = feistel(i) for every i < n, noting in walking the i whose value is >= n; returns
    // their count. (The pass notes the values to walk on as it goes, which also keeps it scalar:
    // its look-ups as vector gathers measured slower than one load each.)
    int64_t first_pass() {
        int64_t count = 0;
        for (int64_t i = 0; i < n; i++) {
            const uint64_t x = feistel(static_cast<uint64_t>(i));
            order[i] = static_cast<int64_t>(x);
            walking[count] = i;
            count += x >= static_cast<uint64_t>(n);
        }
        return count;
    }

#if defined(__AVX512BW__) && defined(__AVX512VBMI2__)
    // F_r of each lane's index, from the round's table in `chunks` registers of 32 words: a word
    // permute reads one register (chunks = 1) or a pair (the index's low 6 bits), and with more
    // pairs the index's higher bits select between the pairs' results.
    template <int chunks>
    static DENSEFIT_ALWAYS_INLINE __m512i look_up(const __m512i* table, __m512i index) {
        if (chunks == 1) return _mm512_permutexvar_epi16(index, table[0]);
        __m512i out = _mm512_permutex2var_epi16(table[0], index, table[1]);
        const __m512i pair = _mm512_srli_epi16(index, 6);
        for (int c = 2; c < chunks; c += 2) {
            const __mmask32 in_pair = _mm512_cmpeq_epi16_mask(pair, _mm512_set1_epi16(static_cast<short>(c / 2)));
            out = _mm512_mask_blend_epi16(in_pair, out, _mm512_permutex2var_epi16(table[c], index, table[c + 1]));
        }
        return out;
    }

    // first_pass, 32 rows i at a time: the halves of i in 16-bit lanes through the four rounds, the
    // values widened into order, and the rows whose value is >= n compressed into walking16 (no
    // branch on the random values: a branch per vector on whether any lane walks is unpredictable
    // and measured slower; so did compressing the rows as int64 into walking, 8 at a time). Lanes
    // past n are computed and stored (order is padded) but never walked.
    template <int chunks>
    int64_t first_pass_lanes() {
        __m512i table[4][chunks];
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < chunks; c++) table[r][c] = _mm512_loadu_si512(words.data() + r * word_stride() + 32 * c);
        const __m512i lane = _mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14,
                                              13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
        const __m512i mask = _mm512_set1_epi16(static_cast<short>((1 << h) - 1));
        const __m512i last = _mm512_set1_epi16(static_cast<short>(n - 1));  // n <= 2^16
        const __m128i shift = _mm_cvtsi32_si128(h);
        int64_t count = 0;
        for (int64_t base = 0; base < n; base += kLanes) {
            const __m512i i = _mm512_add_epi16(lane, _mm512_set1_epi16(static_cast<short>(base)));
            __m512i left = _mm512_srl_epi16(i, shift), right = _mm512_and_si512(i, mask);
            for (int r = 0; r < 4; r++) {
                const __m512i next = _mm512_xor_si512(left, look_up<chunks>(table[r], right));
                left = right;
                right = next;
            }
            const __m512i x = _mm512_or_si512(_mm512_sll_epi16(left, shift), right);
            uint32_t outside = _mm512_cmpgt_epu16_mask(x, last);
            if (n - base < kLanes) outside &= (uint32_t{1} << (n - base)) - 1;
            for (int j = 0; j < 4; j++)  // 8 lanes at a time, as int64
                _mm512_storeu_si512(order.data() + base + 8 * j, _mm512_cvtepu16_epi64(_mm512_extracti32x4_epi32(x, j)));
            _mm512_storeu_si512(walking16.data() + count, _mm512_maskz_compress_epi16(outside, i));
            count += __builtin_popcount(outside);
        }
        std::copy(walking16.data(), walking16.data() + count, walking.data());
        return count;
    }

    int64_t first_pass_vector() {
        switch (word_stride() / 32) {
            case 1: return first_pass_lanes<1>();
            case 2: return first_pass_lanes<2>();
            case 4: return first_pass_lanes<4>();
            default: return first_pass_lanes<8>();  // h = 8 (feistel_vector_applies)
        }
    }
#else
    int64_t first_pass_vector() { return first_pass(); }  // (never called: feistel_vector_applies is false)
#endif
};

}  // namespace densefit
