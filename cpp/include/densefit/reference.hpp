// The reference path: the whole training step written plainly, the way llm.c's train_gpt2.c
// writes GPT-2 beside its fast CUDA kernels. One function per pass; outputs first, then inputs,
// then sizes; gradients prefixed d; loops in the obvious order, no blocking, no SIMD, no fusion,
// no BLAS. It never calls the fast kernels (gemm.hpp, block_gemm.hpp, tiny_pass.hpp,
// linear_pass.hpp, the fused Dense passes of layers.hpp) and never goes through dispatch.hpp's
// choices: tests/test_cpp_reference.py checks the fast path (network.hpp) against it, bit for bit
// where both sum in the same order, within DESIGN.md's tolerances where the fast path does not.
//
// What has one home elsewhere is called, not written again: the scalar formula of each activation
// and its one loop (activation.hpp), the losses at the logits (loss.hpp), the penalty, clipping and
// optimizer step formulas (optimizer.hpp), dropout and BatchNorm (layers.hpp: plain loops, the
// only implementation there is), the counter-based RNG (rng.hpp), and the entry points' argument
// checks, sample weighting (batch_scale) and state copies (network.hpp). Every call of a shared
// pass or formula is written densefit::name, so what is shared can be read off.
//
// Size legend:
//   n      samples in X                   E   epochs (len(lrs))
//   m      rows in the batch              d   input features (n_in of the first op)
//   n_in   an op's input width            K   outputs (n_out of the last op), the logits' width
//   n_out  an op's output width           P   parameters (the flat buffer), S BatchNorm statistics
//   C      a BatchNorm's features (n_in = n_out)
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "activation.hpp"
#include "layers.hpp"
#include "loss.hpp"
#include "matrix.hpp"
#include "net.hpp"
#include "network.hpp"
#include "shuffle.hpp"
#include "optimizer.hpp"
#include "rng.hpp"

namespace densefit {
namespace reference {

// ---------------------------------------------------------------------------------------------
// the passes of one op

// out (m × n_out) = inp (m × n_in) · W (n_in × n_out) + b (n_out; null: no bias). Each sum runs
// over k in order and the bias is added after it (numpy's x @ W + b). Sums start from 0, so a sum
// of -0 terms is +0 here where a fast loop that starts from its first term keeps -0: equal values.
template <class T>
void dense_forward(T* out, const T* inp, const T* W, const T* b, int64_t m, int64_t n_in, int64_t n_out) {
    for (int64_t r = 0; r < m; r++) {
        for (int64_t j = 0; j < n_out; j++) {
            T sum = 0;
            for (int64_t k = 0; k < n_in; k++) sum += inp[r * n_in + k] * W[k * n_out + j];
            out[r * n_out + j] = b != nullptr ? sum + b[j] : sum;
        }
    }
}

// dW (n_in × n_out) = inpᵀ · dout, db (n_out; null: no bias) = Σ_rows dout, dinp (m × n_in; null:
// not needed) = dout · Wᵀ. Sums over the rows run over r in order, the one of dinp over j.
template <class T>
void dense_backward(T* dinp, T* dW, T* db, const T* dout, const T* inp, const T* W, int64_t m, int64_t n_in,
                    int64_t n_out) {
    for (int64_t k = 0; k < n_in; k++) {
        for (int64_t j = 0; j < n_out; j++) {
            T sum = 0;
            for (int64_t r = 0; r < m; r++) sum += inp[r * n_in + k] * dout[r * n_out + j];
            dW[k * n_out + j] = sum;
        }
    }
    if (db != nullptr) {
        for (int64_t j = 0; j < n_out; j++) {
            T sum = 0;
            for (int64_t r = 0; r < m; r++) sum += dout[r * n_out + j];
            db[j] = sum;
        }
    }
    if (dinp == nullptr) return;
    for (int64_t r = 0; r < m; r++) {
        for (int64_t k = 0; k < n_in; k++) {
            T sum = 0;
            for (int64_t j = 0; j < n_out; j++) sum += dout[r * n_out + j] * W[k * n_out + j];
            dinp[r * n_in + k] = sum;
        }
    }
}

// The activations, dropout and BatchNorm are the shared loops named in the header comment:
// densefit::activation_forward / activation_backward, dropout_forward / dropout_backward,
// batchnorm_forward_train / batchnorm_forward_infer / batchnorm_backward.

// ---------------------------------------------------------------------------------------------
// one batch through the network

// Every buffer one batch needs, for batches of up to `rows` rows. out[i] is op i's output and
// dout[i] the loss's gradient with respect to it (dout.back() is dz, the logits' gradient).
template <class T>
struct Buffers {
    std::vector<T> x, y, w, row_scale;  // the batch's rows of X (m × d), y (m × y_cols), weights (m), r_i (m)
    std::vector<std::vector<T>> out, dout;
    std::vector<std::vector<T>> cache;   // DROPOUT: the mask; BATCHNORM: x̂ (m × n_in)
    std::vector<std::vector<T>> invstd;  // BATCHNORM (C)
    std::vector<T> scratch;              // BATCHNORM's column sums (2 × C)
    std::vector<T> grad;                 // P

    Buffers(const Net& net, int64_t rows, int64_t y_cols)
        : x(rows * net.n_features), y(rows * y_cols), w(rows), row_scale(rows), scratch(2 * net.max_width),
          grad(net.n_params) {
        for (const Op& op : net.ops) {
            out.emplace_back(rows * op.n_out);
            dout.emplace_back(rows * op.n_out);
            cache.emplace_back(rows * op.n_in);
            invstd.emplace_back(op.n_in);
        }
    }
};

// Run the ops on x (m × d) into buf.out. training: batch statistics and the dropout masks of step
// `step`; running_stats (null: not updated) receives the BatchNorm running statistics' update.
// Inference: dropout is the identity and BatchNorm uses stats (S).
template <class T>
void forward(Buffers<T>& buf, const Net& net, const T* params, const T* stats, T* running_stats, const T* x,
             int64_t m, uint64_t step, bool training) {
    for (size_t i = 0; i < net.ops.size(); i++) {
        const Op& op = net.ops[i];
        const T* inp = i == 0 ? x : buf.out[i - 1].data();
        T* out = buf.out[i].data();
        const T* p = params + op.param_off;
        switch (op.kind) {
            case DENSE:  // a fused activation (op.fused) is the next op, run by itself below
                dense_forward(out, inp, p, op.use_bias ? p + op.n_in * op.n_out : nullptr, m, op.n_in, op.n_out);
                break;
            case ACTIVATION: densefit::activation_forward(out, inp, m * op.n_in, op.act, T(op.alpha)); break;
            case DROPOUT:
                if (training && op.rate > 0)
                    densefit::dropout_forward(out, buf.cache[i].data(), inp, m, op.n_in, op.rate,
                                              densefit::stream_key(net.seed, step, op.layer));
                else
                    std::copy(inp, inp + m * op.n_in, out);
                break;
            case BATCHNORM: {
                const int64_t C = op.n_in;
                if (training) {
                    T* r = running_stats != nullptr ? running_stats + op.stat_off : nullptr;
                    densefit::batchnorm_forward_train(out, buf.cache[i].data(), buf.invstd[i].data(),
                                                      buf.scratch.data(), r, r != nullptr ? r + C : nullptr, inp, p,
                                                      p + C, m, C, op.bn_momentum, op.bn_epsilon);
                } else {
                    const T* s = stats + op.stat_off;
                    densefit::batchnorm_forward_infer(out, inp, p, p + C, s, s + C, m, C, op.bn_epsilon);
                }
                break;
            }
            default: unknown_code("op kind", op.kind);
        }
    }
}

// grad (P) = d(loss)/d(params), given dz in buf.dout.back(), after a training forward pass on x.
// Parameters no op owns are left as they are (zero: see batch_loss_and_grad).
template <class T>
void backward(T* grad, Buffers<T>& buf, const Net& net, const T* params, const T* x, int64_t m) {
    for (int64_t i = static_cast<int64_t>(net.ops.size()) - 1; i >= 0; i--) {
        const Op& op = net.ops[i];
        const T* inp = i == 0 ? x : buf.out[i - 1].data();
        const T* dout = buf.dout[i].data();
        T* dinp = i == 0 ? nullptr : buf.dout[i - 1].data();  // the first op's input gradient is never needed
        switch (op.kind) {
            case DENSE: {
                T* dW = grad + op.param_off;
                dense_backward(dinp, dW, op.use_bias ? dW + op.n_in * op.n_out : nullptr, dout, inp,
                               params + op.param_off, m, op.n_in, op.n_out);
                break;
            }
            case ACTIVATION:
                if (dinp != nullptr)
                    densefit::activation_backward(dinp, dout, inp, buf.out[i].data(), m * op.n_in, op.act,
                                                  T(op.alpha));
                break;
            case DROPOUT:
                if (dinp == nullptr) break;
                if (op.rate > 0)
                    densefit::dropout_backward(dinp, dout, buf.cache[i].data(), m * op.n_in);
                else
                    std::copy(dout, dout + m * op.n_in, dinp);
                break;
            case BATCHNORM: {
                T* dgamma = grad + op.param_off;
                densefit::batchnorm_backward(dinp, dgamma, dgamma + op.n_in, buf.scratch.data(), dout,
                                             buf.cache[i].data(), buf.invstd[i].data(), params + op.param_off, m,
                                             op.n_in);
                break;
            }
            default: unknown_code("op kind", op.kind);
        }
    }
}

// grad += scale · the l1/l2 penalties' gradient of every Dense kernel, in op order; returns
// scale · the penalty (scale multiplies l1 and l2, as network.hpp's add_penalties does).
template <class T>
double penalty_forward_backward(T* grad, const Net& net, const T* params, double scale) {
    double penalty = 0;
    for (const Op& op : net.ops) {
        if (op.kind != DENSE || (op.l1 == 0 && op.l2 == 0)) continue;
        penalty += densefit::add_penalty_gradient(grad + op.param_off, params + op.param_off, op.n_in * op.n_out,
                                                  op.l1 * scale, op.l2 * scale);
    }
    return penalty;
}

// Forward, loss at the logits, backward and penalty of one batch (x m × d, y m × y_cols) in
// training mode: grad (P) from zero, returns the (weighted) mean loss plus the scaled penalty and
// the count of correct predictions. scale: the batch's row weighting (network.hpp's batch_scale).
template <class T>
LossValue batch_loss_and_grad(T* grad, Buffers<T>& buf, const Net& net, const T* params, const T* stats,
                              T* running_stats, const T* x, const T* y, int64_t y_cols, int64_t m, uint64_t step,
                              const BatchScale<T>& scale) {
    forward(buf, net, params, stats, running_stats, x, m, step, true);
    LossValue result = densefit::loss_and_dlogits(buf.dout.back().data(), buf.out.back().data(), y, m, net.n_outputs,
                                                  y_cols, net.loss, scale.row_scale);
    std::fill(grad, grad + net.n_params, T(0));
    backward(grad, buf, net, params, x, m);
    result.value += penalty_forward_backward(grad, net, params, scale.penalty);
    return result;
}

// Clip grad (P), then optimizer step t (from 1) with learning rate lr on params and the slots.
// AdamW's decoupled decay multiplies the Dense kernels only.
template <class T>
void optimizer_update(T* params, T* slot0, T* slot1, T* grad, const Net& net, double lr, int64_t t) {
    const Optimizer& opt = net.optimizer;
    const T gscale = densefit::clip_gradient(grad, net.n_params, opt.clipvalue, opt.clipnorm);
    const bool decays = opt.kind == ADAMW && opt.weight_decay > 0;
    const T decay = T(1 - lr * opt.weight_decay);
    for (const ParamSegment& s : net.segments) {
        const int64_t at = s.begin;
        densefit::optimizer_step(params + at, slot0 + at, slot1 + at, grad + at, s.end - s.begin, opt, lr, t, gscale,
                                 decays && s.kernel ? decay : T(1));
    }
}

// ---------------------------------------------------------------------------------------------
// the entry points: network.hpp's, same arguments, same semantics

// out (E × 4): per epoch the columns LOSS_SUM (each batch's objective times its m), CORRECT, SEEN
// and STEPS of python/densefit/backends/__init__.py.
// Epoch e visits orders[e] (rows 0..n-1 when null), or with a shuffle (orders then null) the order
// shuffle.hpp computes for epoch shuffle->first_epoch + e, in slices of batch_size, the last smaller, with
// learning rate lrs[e]; the first step is number `step`. sample_weight (n; null: none) weighs each
// batch's rows; check_finite: a NaN or infinity in X raises NonFiniteInput naming the first such
// row the first epoch visits, before anything changes; progress receives the rows trained so far
// after each batch; cancel, polled between batches, undoes the epoch under way and returns the
// number of epochs completed (else E).
template <class T>
int64_t train_epochs(double* out, T* params, T* slot0, T* slot1, T* stats, const Net& net, const StridedMatrix<T>& X,
                     const StridedMatrix<T>& Y, const StridedMatrix<int64_t>* orders, int64_t E, const double* lrs,
                     int64_t batch_size, uint64_t step, bool check_finite = false, const T* sample_weight = nullptr,
                     int64_t* progress = nullptr, const int64_t* cancel = nullptr, const Shuffle* shuffle = nullptr) {
    const int64_t n = X.rows, d = X.cols;
    require(batch_size >= 1, "batch_size must be >= 1");
    require(orders == nullptr || shuffle == nullptr, "give orders or a shuffle, not both");
    require(orders == nullptr || (orders->rows == E && orders->cols == n), "orders must have shape (E, n)");
    densefit::check_targets(net, Y);
    densefit::check_weights(sample_weight, n);
    if (orders != nullptr) densefit::check_orders(*orders, n);
    std::fill(out, out + 4 * E, 0.0);
    if (n == 0 || E == 0) return E;
    EpochOrder shuffled(shuffle != nullptr ? n : 0);
    const int64_t* shuffled_order = nullptr;  // with a shuffle: the order of the epoch under way
    auto begin_epoch = [&](int64_t e) {
        if (shuffle != nullptr) shuffled_order = shuffled.compute(shuffle->seed, shuffle->first_epoch + e);
    };
    auto row_of = [&](int64_t e, int64_t k) {
        return shuffled_order != nullptr ? shuffled_order[k] : orders != nullptr ? orders->at(e, k) : k;
    };
    Buffers<T> buf(net, std::min(batch_size, n), Y.cols);
    begin_epoch(0);
    if (check_finite) {
        for (int64_t k = 0; k < n; k++) {
            copy_row(buf.x.data(), X, row_of(0, k));
            if (!all_finite(buf.x.data(), d, 1))
                throw NonFiniteInput("X contains NaN or infinity (row " + std::to_string(row_of(0, k)) + ")");
        }
    }
    StateCopy<T> epoch_start;
    for (int64_t e = 0; e < E; e++) {
        double* epoch = out + 4 * e;
        begin_epoch(e);
        if (cancel != nullptr) epoch_start.save(params, slot0, slot1, net.n_params, stats, net.n_stats);
        for (int64_t start = 0; start < n; start += batch_size) {
            if (cancel != nullptr && __atomic_load_n(cancel, __ATOMIC_RELAXED) != 0) {
                epoch_start.restore(params, slot0, slot1, net.n_params, stats);
                std::fill(epoch, epoch + 4, 0.0);
                return e;
            }
            const int64_t m = std::min(batch_size, n - start);
            for (int64_t k = 0; k < m; k++) {  // gather the batch's rows
                const int64_t r = row_of(e, start + k);
                copy_row(buf.x.data() + k * d, X, r);
                copy_row(buf.y.data() + k * Y.cols, Y, r);
                if (sample_weight != nullptr) buf.w[k] = sample_weight[r];
            }
            const BatchScale<T> scale =
                densefit::batch_scale(buf.row_scale.data(), net, sample_weight != nullptr ? buf.w.data() : nullptr, m);
            const LossValue lv = batch_loss_and_grad(buf.grad.data(), buf, net, params, stats, stats, buf.x.data(),
                                                     buf.y.data(), Y.cols, m, step, scale);
            optimizer_update(params, slot0, slot1, buf.grad.data(), net, lrs[e], static_cast<int64_t>(step) + 1);
            step++;
            epoch[0] += lv.value * static_cast<double>(m);
            epoch[1] += static_cast<double>(lv.correct);
            epoch[2] += static_cast<double>(m);
            epoch[3] += 1;
            if (progress != nullptr) __atomic_store_n(progress, e * n + start + m, __ATOMIC_RELAXED);
        }
    }
    return E;
}

// out (n × K) = the network on X in inference mode, batch_size rows at a time: the logits when
// `logits`, else the plan's output activation of them.
template <class T>
void predict(T* out, const T* params, const T* stats, const Net& net, const StridedMatrix<T>& X, int64_t batch_size,
             bool logits) {
    const int64_t n = X.rows, K = net.n_outputs;
    require(batch_size >= 1, "batch_size must be >= 1");
    if (n == 0) return;
    Buffers<T> buf(net, std::min(batch_size, n), 0);
    for (int64_t start = 0; start < n; start += batch_size) {
        const int64_t m = std::min(batch_size, n - start);
        for (int64_t k = 0; k < m; k++) copy_row(buf.x.data() + k * X.cols, X, start + k);
        forward(buf, net, params, stats, static_cast<T*>(nullptr), buf.x.data(), m, 0, false);
        const T* z = buf.out.back().data();
        if (logits)
            std::copy(z, z + m * K, out + start * K);
        else
            densefit::output_activation(out + start * K, z, m, K, net.output_activation);
    }
}

// grad (P) = the gradient of the loss (incl. penalty) on all of X, y as one batch in training mode
// at step `step`, weighted by sample_weight (m; null: none); returns that loss. Nothing else changes.
template <class T>
double loss_and_grad(T* grad, const T* params, const T* stats, const Net& net, const StridedMatrix<T>& X,
                     const StridedMatrix<T>& Y, uint64_t step, const T* sample_weight = nullptr) {
    const int64_t m = X.rows;
    require(m >= 1, "X has no rows");
    densefit::check_targets(net, Y);
    densefit::check_weights(sample_weight, m);
    Buffers<T> buf(net, m, Y.cols);
    for (int64_t r = 0; r < m; r++) {
        copy_row(buf.x.data() + r * X.cols, X, r);
        copy_row(buf.y.data() + r * Y.cols, Y, r);
    }
    const BatchScale<T> scale = densefit::batch_scale(buf.row_scale.data(), net, sample_weight, m);
    return batch_loss_and_grad(grad, buf, net, params, stats, static_cast<T*>(nullptr), buf.x.data(), buf.y.data(),
                               Y.cols, m, step, scale)
        .value;
}

}  // namespace reference
}  // namespace densefit
