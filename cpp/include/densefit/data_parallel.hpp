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
// Only networks whose rows are independent in training (no BatchNorm: its statistics need all
// rows) take this pass; dispatch.hpp's data_parallel_applies decides, from the network and the
// batch size alone.
//
// Size legend: m batch rows, c chunks (⌈m / kDataParallelRows⌉), P parameters, K outputs.
// Chunk i holds rows [⌊i m / c⌋, ⌊(i + 1) m / c⌋): at most kDataParallelRows of them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "dispatch.hpp"
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
    DataParallelPass(int64_t batch, MakeWorkspace&& make) {
        const int64_t c = data_parallel_chunks(batch);
        chunks_.reserve(static_cast<size_t>(c));
        // every chunk sized for the most rows a chunk of any batch up to `batch` gets
        for (int64_t i = 0; i < c; i++) chunks_.push_back(make(std::min(kDataParallelRows, batch)));
        sums_.resize(static_cast<size_t>(c));
        grads_.resize(static_cast<size_t>(c));
    }

    // grad (P) = d(loss)/d(params) of the batch x (m × d), y (m × y_cols) in training mode at step
    // `step`, without the penalty; returns the batch's mean loss (or, with row_scale (m), the
    // weighted one; see loss.hpp) and its correct count: what batch_loss_and_grad computes before
    // its penalty, summed in chunks.
    // x null: chunk i gathers its rows, index[first..first+rows) of X, into its own workspace (on
    // its thread, so a shuffled batch's gather is split too).
    LossValue loss_and_grad(T* grad, const Net& net, const T* params, const T* stats, const T* x,
                            const StridedMatrix<T>& X, const int64_t* index, const T* y, int64_t y_cols, int64_t m,
                            uint64_t step, const T* row_scale) {
        const int64_t c = data_parallel_chunks(m), K = net.n_outputs, d = net.n_features;
        ThreadPool::instance().run(static_cast<int>(c), [&](int i) {
            const int64_t first = data_parallel_first(i, m, c), rows = data_parallel_first(i + 1, m, c) - first;
            W& ws = chunks_[i];
            const T* xc = ws.x;
            if (x != nullptr)
                xc = x + first * d;
            else
                gather_rows(ws.x, X, index + first, rows);
            forward(ws, net, params, stats, static_cast<T*>(nullptr), xc, rows, step, first);
            const T* z = ws.ins.back();
            const T* yc = y + first * y_cols;
            if (row_scale != nullptr) {
                const LossValue v = weighted_loss_rows(ws.d[0], z, yc, row_scale + first, rows, K, y_cols, net.loss);
                sums_[i] = {v.value, v.correct};
            } else {
                sums_[i] = loss_rows(ws.d[0], z, yc, rows, K, y_cols, net.loss, m);  // dz scaled for all m rows
            }
            grads_[i] = i == 0 ? grad : ws.grad;  // chunk 0 writes the sum's buffer: the tree adds into it
            backward(grads_[i], ws, net, params, rows);
        });
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
    std::vector<W> chunks_;    // c: chunk i's activations and its gradient buffer (ws.grad)
    std::vector<LossSum> sums_;  // c: chunk i's loss sum and correct count, then their tree sum
    std::vector<T*> grads_;    // c: chunk i's gradient (chunk 0's is the caller's grad)
};

}  // namespace densefit
