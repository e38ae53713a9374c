// Every choice of pass and kernel the core makes, with every tuning constant behind it, in one
// place. The kernels (gemm.hpp, block_gemm.hpp, layers.hpp, linear_pass.hpp, tiny_pass.hpp,
// loss.hpp) implement; this file decides which of them runs. What was measured to set each
// constant, and what was tried and dropped, is in docs/performance.md; here is only the why.
//
// The decisions, from the outside in:
//   training_pass         once per train_epochs call: LinearPass, TinyPass, the data-parallel pass
//                         (data_parallel_applies) or the general op-by-op pass
//   dense_kernel, dinp_kernel   per Dense product: which direct loop (layers.hpp) or gemm()
//   gemm_kernel           per gemm() call: matrix-vector (gemm_skinny), block_gemm or OpenBLAS
//   transpose_b_first     per gemm() call: transpose a small B and run the NN product
//   parallel_gemm_parts   per OpenBLAS product: how many blocks of C the thread pool splits it into
//   dense_fuses_in_registers / gated_dinp_applies   where Dense's epilogues go into block_gemm
//   sweep_splits, sums_down_columns, bce_inline_math, softmax_inline_math, prefetch_next_batch,
//   linear_block_rows, update_split_params, kParallelSweepElements: the smaller per-sweep
//   choices below.
// Every choice keeps the results of the general pass bit for bit (TinyPass, block_gemm and its
// epilogues, the zero-skipping pairs), or within the rounding DESIGN.md allows where the summation
// order differs (LinearPass's blocks, OpenBLAS against the direct loops).
//
// Size legend: m batch rows, n_in / n_out Dense widths; a GEMM C (M × N) = op(A) (M × K) · op(B).
#pragma once

#include <cstdint>
#include <type_traits>

#include "net.hpp"

namespace densefit {

// ---------------------------------------------------------------------------------------------
// what the build has

// The widest vector the build targets (the matrix-vector kernels and TinyPass's rows use it).
#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif

// block_gemm is written in AVX-512 intrinsics; other builds run OpenBLAS for its shapes.
#if defined(__AVX512F__)
constexpr bool kBlockGemmBuilt = true;
#else
constexpr bool kBlockGemmBuilt = false;
#endif

// TinyPass only in AVX-512 builds: elsewhere GCC emulates its 8-lane shuffles and selects, and the
// general pass is faster. Without it train_epochs takes the general pass, with the same results.
constexpr bool kTinyPassBuilt = kVectorBytes == 64;

// shuffle.hpp's vector Feistel rounds are AVX-512BW and VBMI2 intrinsics (16-bit lanes, word
// permutes, word compress); other builds run every round as a scalar table look-up.
#if defined(__AVX512BW__) && defined(__AVX512VBMI2__)
constexpr bool kFeistelVectorBuilt = true;
#else
constexpr bool kFeistelVectorBuilt = false;
#endif

// ---------------------------------------------------------------------------------------------
// tuning constants

// Below this width a rank-1 (row by row) accumulation is one long chain of dependent adds per
// column, so sums go down the columns instead; from this width on dot() sums 8 partial sums in a
// tree, which is why TinyPass (which sums in plain order) stops below it.
constexpr int64_t kNarrow = 8;

// Below this many multiply-adds a Dense product runs as direct loops: the fixed cost of a BLAS
// call is more than the arithmetic.
constexpr int64_t kSmallGemmMacs = 512;

// block_gemm reads B (K × N) unpacked once per block of 6 rows, so B must stay in cache: up to
// this many elements (64 KB of float). Larger products go to OpenBLAS, which packs.
constexpr int64_t kBlockGemmBElements = 128 * 128;

// ... except a product of at most kDataParallelRows rows (a chunk of the data-parallel pass, or a
// small batch), which takes block_gemm with B up to this many elements (256 KB, read from L2):
// OpenBLAS packs B on every call, which for so few rows costs more than block_gemm's reads of it.
constexpr int64_t kBlockGemmFewRowsBElements = 256 * 256;
constexpr int64_t kBlockGemmMaxK = kBlockGemmFewRowsBElements / 16;  // N ≥ 16

// block_gemm's zero-skipping pairs of rows run when they leave at most this share of the work.
constexpr double kSparseShare = 0.85;

// A · Bᵀ with B up to this many elements: transpose B, then the NN product (OpenBLAS's NT path is
// the slow one for small B; for large B NT is as fast).
constexpr int64_t kTransposeBElements = 128 * 128;

// Below this many multiply-adds one thread does the whole OpenBLAS product: a block must take much
// longer than waking a worker.
constexpr int64_t kParallelGemmMacs = int64_t{1} << 21;

// From this many parameters the optimizer update is split over the pool's threads ...
constexpr int64_t kParallelUpdateParams = int64_t{1} << 15;

// ... and from this many after a batch of the data-parallel pass (update_split_params): its
// workers are still spinning from the run just before (the chunks', or the gradient sum's), so a
// range handed to them costs no wake-up, and a smaller update is worth splitting.
constexpr int64_t kDataParallelUpdateParams = int64_t{1} << 13;

// From this many elements (m × n) the activation sweeps, forward and backward, are split over the
// pool's threads (Dense's fused ones in blocks of columns, sweep_splits; an unfused Activation op
// in ranges of elements): a transcendental activation over a wide layer's batch is far more work
// than waking a worker, and the second core otherwise waits between the products it shares.
constexpr int64_t kParallelSweepElements = int64_t{1} << 16;

// Batches of X up to this size are prefetched one batch ahead by the general pass.
constexpr int64_t kPrefetchBatchBytes = 32 * 1024;

// LinearPass visits a batch in blocks of about this many bytes of X, so each block stays in L1.
constexpr int64_t kLinearBlockBytes = 4 * 1024;

// The widest Feistel half EpochOrder computes in vector lanes (feistel_vector_applies): the value
// both halves make, 2h bits, must fit a 16-bit lane.
constexpr int kFeistelVectorMaxHalfBits = 8;

// TinyPass's lanes per row (a row of float in one ymm, of double in one zmm).
constexpr int64_t kTinyWidth = 8;
static_assert(kTinyWidth == kNarrow, "TinyPass pads every width below kNarrow to one row");

// The data-parallel pass (data_parallel.hpp) cuts a batch into chunks of this many rows. A constant,
// never derived from the thread count: the chunks fix the order of the gradient's sums, so any
// number of threads gives the same bits. Each chunk's products stay large enough for the kernels'
// blocks of rows, and a batch of 256 still gives each of a few threads more than one chunk to claim.
constexpr int64_t kDataParallelRows = 64;

// The data-parallel pass runs batches of at least two chunks: one chunk is the whole-batch pass.
constexpr int64_t kDataParallelMinRows = 2 * kDataParallelRows;

// ... and only networks of at least this many multiply-adds per row (forward, Dense products): a
// chunk must take much longer than handing it to a worker.
constexpr int64_t kDataParallelMinRowMacs = 1024;

// ... and batches of up to this many rows and this many gradient buffers' worth of parameters
// (chunks × P): each chunk keeps its own workspace and gradient until the tree adds them, so the
// pass's memory grows with the batch. Larger batches have products large enough that gemm()
// splits them over the threads itself.
constexpr int64_t kDataParallelMaxRows = int64_t{1} << 14;
constexpr int64_t kDataParallelMaxGradElements = int64_t{1} << 24;

// From this many parameters the chunks' gradient sum is split over the pool's threads.
constexpr int64_t kDataParallelReduceParams = int64_t{1} << 13;

// Binary cross-entropy over fewer elements than this uses the library's exp and log one element at
// a time (faster for a lone element); more vectorize with vmath's inline forms (other bits).
constexpr int64_t kBceInlineMathElements = 8;

// Softmax rows (and categorical cross-entropy's) of fewer than this many logits take the library's
// exp inside the loop that sums them: for a few elements a separate loop for the exp, vectorized
// on vmath's inline form, costs more than its lanes save. Wider rows take that loop (other bits).
constexpr int64_t kSoftmaxInlineMathElements = 8;

// ---------------------------------------------------------------------------------------------
// the training pass: once per train_epochs call

// A network that is one Dense layer with one output trains through LinearPass (linear_pass.hpp).
inline bool is_linear(const Net& net) {
    return net.ops.size() == 1 && net.ops[0].kind == DENSE && net.ops[0].n_out == 1;
}

// Whether train_epochs runs batches of up to `batch` rows of this network through TinyPass: only
// Dense ops, each followed by at most its (fused) activation, every width and the batch below
// kNarrow (from there on the general pass sums products in another order: dot()'s partial sums).
inline bool tiny_pass_applies(const Net& net, int64_t batch) {
    if (!kTinyPassBuilt || batch >= kNarrow) return false;
    for (const Op& op : net.ops) {
        const bool fused_activation = op.kind == ACTIVATION && op.fused;
        if (op.kind != DENSE && !fused_activation) return false;
        if (op.n_in >= kNarrow || op.n_out >= kNarrow) return false;
    }
    return true;
}

// The pass train_epochs runs batches of up to `batch` rows through. The choice never changes a
// result beyond rounding in the order DESIGN.md allows (TinyPass: not at all). Sample weights and
// penalty_per_weight do not enter it: every pass takes a batch's BatchScale, so the same networks
// keep their fast pass with weights.
enum class TrainingPass { GENERAL, LINEAR, TINY, DATA_PARALLEL };

// The data-parallel pass's chunks of a batch of m rows.
inline int64_t data_parallel_chunks(int64_t m) { return (m + kDataParallelRows - 1) / kDataParallelRows; }

// Whether train_epochs runs batches of up to `batch` rows of this network through the data-parallel
// pass (data_parallel.hpp): a rule on the network and the batch only, never on the thread count, so
// 1 thread and N threads take the same pass and get the same bits. BatchNorm networks too (the
// chunks add their statistics at each BatchNorm). Not when a chunk's Dense product would reach
// kParallelGemmMacs and go to OpenBLAS: gemm() would split it over the threads, which a chunk
// running on one of them cannot do, and the whole-batch pass's products split over the threads
// anyway. A float chunk's product that block_gemm takes (B up to kBlockGemmFewRowsBElements) does
// qualify: block_gemm on a chunk's rows outruns OpenBLAS on the whole batch split in parts.
template <class T>
bool gemm_takes_block_gemm(int64_t M, int64_t N, int64_t K);  // below, with the Dense products

template <class T>
bool data_parallel_applies(const Net& net, int64_t batch) {
    if (batch < kDataParallelMinRows || batch > kDataParallelMaxRows) return false;
    const int64_t chunks = data_parallel_chunks(batch);
    if (net.n_params > kDataParallelMaxGradElements / chunks) return false;
    int64_t row_macs = 0;
    for (const Op& op : net.ops) {
        if (op.kind != DENSE) continue;
        const int64_t macs = op.n_in * op.n_out;  // ≤ n_params ≤ 2^24
        const bool block_gemm_chunk = gemm_takes_block_gemm<T>(kDataParallelRows, op.n_out, op.n_in);
        if (macs >= kParallelGemmMacs / kDataParallelRows && !block_gemm_chunk) return false;
        row_macs += macs;
    }
    return row_macs >= kDataParallelMinRowMacs;
}

template <class T>
TrainingPass training_pass(const Net& net, int64_t batch) {
    if (is_linear(net)) return TrainingPass::LINEAR;
    if (tiny_pass_applies(net, batch)) return TrainingPass::TINY;
    if (data_parallel_applies<T>(net, batch)) return TrainingPass::DATA_PARALLEL;
    return TrainingPass::GENERAL;
}

// From how many parameters the optimizer step after a batch of this pass is split over the pool's
// threads (elementwise: the split changes no bit).
inline int64_t update_split_params(TrainingPass pass) {
    return pass == TrainingPass::DATA_PARALLEL ? kDataParallelUpdateParams : kParallelUpdateParams;
}

// The general pass prefetches the next batch of an unshuffled X read in place when a batch is
// this small (LinearPass streams X at memory speed, and prefetching slows it).
inline bool prefetch_next_batch(TrainingPass pass, int64_t batch_bytes) {
    return pass == TrainingPass::GENERAL && batch_bytes <= kPrefetchBatchBytes;
}

// LinearPass's rows per block for batches of up to `batch` rows of `row_bytes` bytes.
inline int64_t linear_block_rows(int64_t batch, int64_t row_bytes) {
    const int64_t rows = kLinearBlockBytes / row_bytes;
    return rows < 1 ? 1 : rows < batch ? rows : batch;
}

// EpochOrder's first Feistel pass, 32 rows at a time in 16-bit lanes, for halves of up to 8 bits
// (n ≤ 2^16): both halves and the value they make fit a lane, and each round's table is 2^h / 32
// registers, looked up by word permutes (one instruction to h = 6, then a select between pairs).
// Wider halves take the scalar pass (their values do not fit 16-bit lanes; wider lanes with
// tables of 2^h / 16 registers were not tried).
inline bool feistel_vector_applies(int half_bits) { return kFeistelVectorBuilt && half_bits <= kFeistelVectorMaxHalfBits; }

// ---------------------------------------------------------------------------------------------
// Dense products

// Dense shapes that skip gemm(): tiny layers (the call and gemm's generic loops cost more than the
// arithmetic). Single-output layers go through gemm(), whose matrix-vector kernels handle N = 1.
inline bool dense_is_direct(int64_t m, int64_t n_in, int64_t n_out) {
    const bool small = m < kSmallGemmMacs && n_in < kSmallGemmMacs && n_out < kSmallGemmMacs;  // no overflow below
    return small && m * n_in * n_out < kSmallGemmMacs;
}

// How a Dense layer computes its product z = inp · W (forward) and its dW = inpᵀ · dout.
enum class DenseKernel {
    GEMM,           // gemm(), which chooses its kernel again (gemm_kernel)
    DOWN_COLUMNS,   // one output, narrow rows, many of them: loops down the columns, vectorized across rows
    SINGLE_OUTPUT,  // one output: a dot product (forward) or an axpy (dW) per row
    RANK1,          // rank-1 updates of each output row along the contiguous rows of W
};

inline DenseKernel dense_kernel(int64_t m, int64_t n_in, int64_t n_out) {
    if (!dense_is_direct(m, n_in, n_out)) return DenseKernel::GEMM;
    if (n_out == 1 && n_in < kNarrow && m >= kNarrow) return DenseKernel::DOWN_COLUMNS;
    if (n_out == 1) return DenseKernel::SINGLE_OUTPUT;
    return DenseKernel::RANK1;
}

// How a Dense layer computes dinp = dout · Wᵀ; gated: through the fused activation below (gated_dinp_applies).
enum class DinpKernel {
    GATED_OUTER,  // one output, through the relu below: gated_outer_dinp
    GATED_BLOCK,  // through the fused activation below: block_gemm with the ActivationGate epilogue
    OUTER,        // one output: dout ⊗ W, whatever the size
    GEMM,         // gemm() with Bᵀ
    ROWWISE,      // a dot product along a row of W per element
};

inline DinpKernel dinp_kernel(int64_t m, int64_t n_in, int64_t n_out, bool gated) {
    if (gated) return n_out == 1 ? DinpKernel::GATED_OUTER : DinpKernel::GATED_BLOCK;
    if (n_out == 1) return DinpKernel::OUTER;
    if (!dense_is_direct(m, n_in, n_out)) return DinpKernel::GEMM;
    return DinpKernel::ROWWISE;
}

// The most elements of B that block_gemm takes for a product of M rows.
inline int64_t block_gemm_b_limit(int64_t M) {
    return M <= kDataParallelRows ? kBlockGemmFewRowsBElements : kBlockGemmBElements;
}

// Whether block_gemm can compute C (M × N) = op(A) · B.
inline bool block_gemm_applies(int64_t M, int64_t N, int64_t K) {
    return kBlockGemmBuilt && M >= 1 && N >= 16 && K >= 1 && K * N <= block_gemm_b_limit(M);
}

// Whether gemm() runs block_gemm for a plain product (float, M and N > 1). Dense fuses its
// epilogues into block_gemm exactly where this holds, so a fused op and the same ops run apart
// give the same bits.
template <class T>
bool gemm_takes_block_gemm(int64_t M, int64_t N, int64_t K) {
    return std::is_same_v<T, float> && M > 1 && N > 1 && block_gemm_applies(M, N, K);
}

enum class GemmKernel { SKINNY, BLOCK, BLAS };

// gemm()'s kernel for C = alpha · op(A) · op(B) + beta · C (sizes ≥ 1 unless SKINNY cannot apply).
template <class T>
GemmKernel gemm_kernel(int64_t M, int64_t N, int64_t K, T alpha, T beta) {
    if ((N == 1 || M == 1) && M >= 1 && N >= 1 && K >= 1) return GemmKernel::SKINNY;
    if (alpha == T(1) && beta == T(0) && gemm_takes_block_gemm<T>(M, N, K)) return GemmKernel::BLOCK;
    return GemmKernel::BLAS;
}

// Whether gemm() transposes op(B) = Bᵀ (N × K stored) into a buffer first: block_gemm needs B
// untransposed, and OpenBLAS's NN product beats its NT one for a small B.
inline bool transpose_b_first(GemmKernel kernel, bool trans_a, int64_t N, int64_t K) {
    return kernel == GemmKernel::BLOCK || (!trans_a && N * K <= kTransposeBElements);
}

// The blocks of C an OpenBLAS product is split into over `threads` threads (1: one call): two per
// thread, so a thread that loses its core leaves work the others can take; each block at least 16
// rows or columns along `extent` and kParallelGemmMacs of work.
inline int parallel_gemm_parts(int64_t extent, int64_t macs, int threads) {
    if (threads <= 1) return 1;
    int64_t parts = 2 * int64_t{threads};
    if (extent / 16 < parts) parts = extent / 16;
    if (macs / kParallelGemmMacs < parts) parts = macs / kParallelGemmMacs;
    return parts < 1 ? 1 : static_cast<int>(parts);
}

// Whether Dense's forward adds its bias and applies its activation (any: vmath.hpp's functions
// vectorize on a tile as on a row) in block_gemm's registers instead of a sweep after the product.
template <class T>
bool dense_fuses_in_registers(int64_t m, int64_t n_in, int64_t n_out) {
    return std::is_same_v<T, float> && !dense_is_direct(m, n_in, n_out) && gemm_takes_block_gemm<T>(m, n_out, n_in);
}

// Whether dense_backward can take the gate of the fused activation `act` below for its dinp:
// block_gemm's ActivationGate epilogue, or for a single output through a relu gated_outer_dinp
// (float, AVX-512 builds).
template <class T>
bool gated_dinp_applies(int64_t m, int64_t n_in, int64_t n_out, int64_t act) {
    if (n_out == 1) return std::is_same_v<T, float> && kBlockGemmBuilt && n_in >= 16 && act == RELU;
    return !dense_is_direct(m, n_in, n_out) && gemm_takes_block_gemm<T>(m, n_in, n_out);
}

// Whether Dense's bias-and-activation sweep over m × n splits into blocks of columns over the
// pool's threads (bias_activation, bias_activation_backward): every element has its own formula
// and every column keeps its sum down the rows in order, so the split changes no bit; at least 32
// columns, two blocks of 16 (parallel_ranges's alignment).
inline bool sweep_splits(int64_t m, int64_t n) { return n >= 32 && m >= kParallelSweepElements / n; }

// Whether column_sums takes a dot product down each column (else it adds the rows in order).
inline bool sums_down_columns(int64_t rows, int64_t cols) { return cols < kNarrow && rows >= kNarrow; }

// Whether binary cross-entropy over n elements uses the inline exp and log1p (see bce_rows).
inline bool bce_inline_math(int64_t n) { return n >= kBceInlineMathElements; }

// Whether a softmax row of K logits takes vmath's exp in a loop of its own (see softmax_exp_row).
inline bool softmax_inline_math(int64_t K) { return K >= kSoftmaxInlineMathElements; }

}  // namespace densefit
