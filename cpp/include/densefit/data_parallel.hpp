// Data parallelism within one batch, with the same bits for any thread count: the batch's rows
// are cut into ⌈m / kDataParallelRows⌉ chunks of nearly equal size (dispatch.hpp; a function of
// the batch size alone, never of the thread count; equal sizes so that a batch of, say, 200 rows
// is 4 × 50 rather than 3 × 64 + 8, which two threads share evenly),
// each chunk's forward, loss and backward run into that chunk's own activation workspace and
// gradient buffer, and the chunk gradients (and loss sums) are added in a fixed pairwise tree
// whose shape depends only on the number of chunks. The pool's threads claim chunks dynamically
// (parallel.hpp), so which thread computed a chunk never enters a result; one thread runs the
// chunks in order and gets the same bits. The caller then adds the penalty and takes one
// optimizer step on the summed gradient, as for a whole batch.
//
// A BatchNorm's statistics need all rows of the batch, so at each BatchNorm the chunks stop and
// their sums are added in the same tree: forward, Σx (then the mean), Σ(x - mean)² (then invstd
// and the running statistics); backward, Σ dx̂ and Σ dx̂ x̂. Between BatchNorms (and from the last
// one through the loss and back) each chunk runs on alone. A network with k BatchNorms takes
// 3k + 1 runs of the pool per batch; one without, one.
//
// dispatch.hpp's data_parallel_applies decides which networks and batches take this pass, from
// the network and the batch size alone.
//
// Size legend: m batch rows, c chunks (⌈m / kDataParallelRows⌉), P parameters, K outputs, C a
// BatchNorm's features. Chunk i holds rows [⌊i m / c⌋, ⌊(i + 1) m / c⌋): at most kDataParallelRows.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "dispatch.hpp"
#include "layers.hpp"
#include "loss.hpp"
#include "matrix.hpp"
#include "net.hpp"
#include "parallel.hpp"

namespace densefit {

// The first row of chunk i of c over m rows (i = c gives m).
inline int64_t data_parallel_first(int64_t i, int64_t m, int64_t c) { return i * m / c; }

// a[k] += b[k] for k in [0, n): one add of the tree.
template <class T>
void add_into(T* a, const T* b, int64_t n) {
    for (int64_t k = 0; k < n; k++) a[k] += b[k];
}

// parts[0] = Σ parts[i] in the fixed pairwise tree over i: at stride s = 1, 2, 4, … part i (a
// multiple of 2s) takes in part i + s. combine(a, b) adds b into a.
template <class Part, class Combine>
void tree_sum(Part* parts, int64_t count, Combine&& combine) {
    for (int64_t s = 1; s < count; s *= 2)
        for (int64_t i = 0; i + s < count; i += 2 * s) combine(parts[i], parts[i + s]);
}

// W is network.hpp's Workspace<T> (a template parameter, so this header needs nothing of
// network.hpp; forward and backward are found with W). One workspace per chunk of the largest
// batch, allocated once per train_epochs call.
template <class T, class W>
class DataParallelPass {
public:
    // make(rows): a training workspace for a chunk of that many rows.
    template <class MakeWorkspace>
    DataParallelPass(const Net& net, int64_t batch, MakeWorkspace&& make) {
        const int64_t c = data_parallel_chunks(batch);
        for (int64_t i = 0; i < static_cast<int64_t>(net.ops.size()); i++)
            if (net.ops[i].kind == BATCHNORM) batchnorms_.push_back(i);
        mean_.resize(static_cast<size_t>(net.max_width));
        totals_.resize(static_cast<size_t>(2 * net.max_width));
        cur_.resize(static_cast<size_t>(c));
        chunks_.reserve(static_cast<size_t>(c));
        // every chunk sized for the most rows a chunk of any batch up to `batch` gets
        for (int64_t i = 0; i < c; i++) {
            chunks_.push_back(make(std::min(kDataParallelRows, batch)));
            scratch_.push_back(chunks_.back().scratch);
        }
        sums_.resize(static_cast<size_t>(c));
        grads_.resize(static_cast<size_t>(c));
    }

    // grad (P) = d(loss)/d(params) of the batch x (m × d), y (m × y_cols) in training mode at step
    // `step`, without the penalty; returns the batch's mean loss (or, with row_scale (m), the
    // weighted one; see loss.hpp) and its correct count: what batch_loss_and_grad computes before
    // its penalty, summed in chunks. stats' BatchNorm running statistics move as there.
    // x null: chunk i gathers its rows, index[first..first+rows) of X, into its own workspace (on
    // its thread, so a shuffled batch's gather is split too).
    LossValue loss_and_grad(T* grad, const Net& net, const T* params, T* stats, const T* x, const StridedMatrix<T>& X,
                            const int64_t* index, const T* y, int64_t y_cols, int64_t m, uint64_t step,
                            const T* row_scale) {
        const int64_t c = data_parallel_chunks(m), K = net.n_outputs, d = net.n_features;
        const int64_t n_ops = static_cast<int64_t>(net.ops.size());
        const std::vector<int64_t>& bn = batchnorms_;
        const int64_t k = static_cast<int64_t>(bn.size());
        ThreadPool& pool = ThreadPool::instance();
        const auto rows_of = [&](int i) { return data_parallel_first(i + 1, m, c) - data_parallel_first(i, m, c); };
        const auto forward_ops = [&](int i, int64_t begin, int64_t end) {
            const int64_t first = data_parallel_first(i, m, c);
            W& ws = chunks_[i];
            const T* xc = ws.x;
            if (begin == 0 && x != nullptr)
                xc = x + first * d;
            else if (begin == 0)
                gather_rows(ws.x, X, index + first, rows_of(i));
            forward(ws, net, params, stats, static_cast<T*>(nullptr), xc, rows_of(i), step, first,
                    static_cast<size_t>(begin), static_cast<size_t>(end));
        };

        // forward: up to each BatchNorm, its sums over the chunks, then through it
        for (int64_t j = 0; j < k; j++) {
            const Op& op = net.ops[bn[j]];
            const int64_t b = bn[j], C = op.n_in, begin = j == 0 ? 0 : bn[j - 1] + 1;
            pool.run(static_cast<int>(c), [&](int i) {
                if (j > 0) normalize(i, rows_of(i), net, params, bn[j - 1]);
                forward_ops(i, begin, b);
                batchnorm_sums(chunks_[i].scratch, chunks_[i].ins[b], rows_of(i), C);
            });
            T* mean = mean_.data();
            batchnorm_mean(mean, sum_scratch(c, C), m, C);
            pool.run(static_cast<int>(c), [&](int i) {
                W& ws = chunks_[i];
                batchnorm_center(ws.cache[b], ws.scratch, ws.ins[b], mean, rows_of(i), C);
            });
            T* running = stats + op.stat_off;
            batchnorm_statistics(chunks_[0].invstd[b], sum_scratch(c, C), mean, running, running + C, m, C,
                                 op.bn_momentum, op.bn_epsilon);
        }

        // from the last BatchNorm through the loss and back to it
        pool.run(static_cast<int>(c), [&](int i) {
            const int64_t first = data_parallel_first(i, m, c), rows = rows_of(i), top = k > 0 ? bn[k - 1] : -1;
            W& ws = chunks_[i];
            if (k > 0) normalize(i, rows, net, params, top);
            forward_ops(i, top + 1, n_ops);
            const T* z = ws.ins.back();
            const T* yc = y + first * y_cols;
            if (row_scale != nullptr) {
                const LossValue v = weighted_loss_rows(ws.d[0], z, yc, row_scale + first, rows, K, y_cols, net.loss);
                sums_[i] = {v.value, v.correct};
            } else {
                sums_[i] = loss_rows(ws.d[0], z, yc, rows, K, y_cols, net.loss, m);  // dz scaled for all m rows
            }
            grads_[i] = i == 0 ? grad : ws.grad;  // chunk 0 writes the sum's buffer: the tree adds into it
            cur_[i] = backward(grads_[i], ws, net, params, rows, static_cast<size_t>(top + 1), SIZE_MAX, 0);
            if (k > 0) backward_sums(i, rows, net, params, top);
        });

        // backward: through each BatchNorm with the chunks' sums, then down to the one below
        for (int64_t j = k - 1; j >= 0; j--) {
            const int64_t b = bn[j], C = net.ops[b].n_in, below = j > 0 ? bn[j - 1] : -1;
            if (b == 0) break;  // a BatchNorm on the inputs: no input gradient (its dγ, dβ are in the chunks' grads)
            const T* sums = sum_scratch(c, 2 * C);
            std::copy(sums, sums + 2 * C, totals_.data());
            pool.run(static_cast<int>(c), [&](int i) {
                W& ws = chunks_[i];
                T* dd = ws.d[cur_[i]];
                batchnorm_backward_dinp(dd, dd, ws.cache[b], chunks_[0].invstd[b], params + net.ops[b].param_off,
                                        totals_.data(), m, rows_of(i), C);
                cur_[i] = backward(grads_[i], ws, net, params, rows_of(i), static_cast<size_t>(below + 1),
                                   static_cast<size_t>(b), cur_[i]);
                if (below >= 0) backward_sums(i, rows_of(i), net, params, below);
            });
        }

        // The tree over the chunks, elementwise: split over the pool by ranges of parameters, which
        // does not change a sum.
        const int64_t P = net.n_params;
        parallel_ranges(P, kDataParallelReduceParams, [&](int64_t begin, int64_t end) {
            tree_sum(grads_.data(), c, [&](T* a, const T* b) { add_into(a + begin, b + begin, end - begin); });
        });
        tree_sum(sums_.data(), c, [](LossSum& a, const LossSum& b) {
            a.sum += b.sum;
            a.correct += b.correct;
        });
        if (row_scale != nullptr) return {sums_[0].sum, sums_[0].correct};
        return batch_mean(sums_[0], m, K, net.loss);
    }

private:
    // The first c chunks' scratch (n values each) added in the tree into chunk 0's, which is returned.
    const T* sum_scratch(int64_t c, int64_t n) {
        tree_sum(scratch_.data(), c, [&](T* a, const T* b) { add_into(a, b, n); });
        return chunks_[0].scratch;
    }

    // Chunk i (rows of them) through the BatchNorm op b, whose batch invstd chunk 0's workspace holds.
    void normalize(int i, int64_t rows, const Net& net, const T* params, int64_t b) {
        W& ws = chunks_[i];
        const Op& op = net.ops[b];
        const T* p = params + op.param_off;
        batchnorm_normalize(ws.out[b], ws.cache[b], chunks_[0].invstd[b], p, p + op.n_in, rows, op.n_in);
        ws.ins[b + 1] = ws.out[b];
    }

    // Chunk i's sums for the backward pass through the BatchNorm op b: its dγ and dβ into its
    // gradient (the tree adds them up with the rest), Σ dx̂ and Σ dx̂ x̂ into its scratch.
    void backward_sums(int i, int64_t rows, const Net& net, const T* params, int64_t b) {
        W& ws = chunks_[i];
        const Op& op = net.ops[b];
        T* dgamma = grads_[i] + op.param_off;
        batchnorm_backward_sums(dgamma, dgamma + op.n_in, ws.scratch, ws.d[cur_[i]], ws.cache[b],
                                params + op.param_off, rows, op.n_in);
    }

    std::vector<W> chunks_;    // c: chunk i's activations and its gradient buffer (ws.grad)
    std::vector<LossSum> sums_;  // c: chunk i's loss sum and correct count, then their tree sum
    std::vector<T*> grads_;    // c: chunk i's gradient (chunk 0's is the caller's grad)
    std::vector<int> cur_;     // c: which of chunk i's ws.d holds its running gradient
    std::vector<T*> scratch_;  // c: chunk i's ws.scratch, for sum_scratch's tree
    std::vector<int64_t> batchnorms_;  // the network's BatchNorm ops, in order
    std::vector<T> mean_, totals_;  // a BatchNorm's batch mean (C); its backward sums (2C)
};

}  // namespace densefit
