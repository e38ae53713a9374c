// The network's passes over a decoded Plan (net.hpp): the workspace every pass writes into (one
// allocation per call), and the three entry points the bindings expose: train_epochs, predict and
// loss_and_grad. Nothing here knows Python.
//
// Size legend: n samples, m batch rows (≤ batch), E epochs, P parameters, S BatchNorm statistics,
// K outputs, d input features; w the optional per-row sample weights (n). The Plan layout (op
// table columns, codes) is that of python/densefit/plan.py; the math is that of the numpy
// reference backend.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "activation.hpp"
#include "data_parallel.hpp"
#include "dispatch.hpp"
#include "layers.hpp"
#include "linear_pass.hpp"
#include "loss.hpp"
#include "matrix.hpp"
#include "net.hpp"
#include "optimizer.hpp"
#include "parallel.hpp"
#include "rng.hpp"
#include "shuffle.hpp"
#include "tiny_pass.hpp"

namespace densefit {

// ---------------------------------------------------------------------------------------------
// workspace

struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
};

template <class T>
struct Workspace {
    std::unique_ptr<T, FreeDeleter> memory;  // the one allocation; the pointers below are views into it
    std::vector<int64_t> index;              // the rows of the current batch
    int64_t batch = 0;                       // rows capacity
    bool training = false;
    bool weighted = false;                   // training with sample weights: w and row_scale exist
    T* x = nullptr;                          // gathered inputs (batch × d)
    T* y = nullptr;                          // gathered targets (batch × y_cols)
    T* w = nullptr;                          // gathered sample weights (batch)
    T* row_scale = nullptr;                  // the batch's w_i / Σw (batch), see batch_scale
    std::vector<T*> out;                     // training: op i's output (batch × n_out); inference: a ping-pong pair
    std::vector<const T*> ins;               // this batch: ins[i] is op i's input, ins.back() the logits
    std::vector<T*> cache;                   // DROPOUT: mask; BATCHNORM: x̂ (batch × width)
    std::vector<T*> invstd;                  // BATCHNORM (width)
    T* scratch = nullptr;                    // BATCHNORM column sums (2 × max width)
    T* d[2] = {nullptr, nullptr};            // backward ping-pong (batch × max width)
    T* grad = nullptr;                       // P
};

// Assign the workspace's views into base (or only count when base is null); returns the size.
template <class T>
size_t layout_workspace(Workspace<T>& ws, const Net& net, int64_t y_cols, T* base) {
    constexpr size_t kAlign = 64 / sizeof(T);  // every block starts on a cache line
    size_t used = 0;
    auto take = [&](int64_t count) -> T* {
        T* p = base != nullptr ? base + used : nullptr;
        used += (static_cast<size_t>(count) + kAlign - 1) / kAlign * kAlign;
        return p;
    };
    const int64_t b = ws.batch, n_ops = static_cast<int64_t>(net.ops.size());
    ws.x = take(b * net.n_features);
    ws.out.assign(ws.training ? n_ops : 2, nullptr);
    ws.cache.assign(n_ops, nullptr);
    ws.invstd.assign(n_ops, nullptr);
    if (!ws.training) {
        ws.out[0] = take(b * net.max_width);
        ws.out[1] = take(b * net.max_width);
        return used;
    }
    ws.y = take(b * y_cols);
    if (ws.weighted) {  // only then: the unweighted workspace keeps its layout
        ws.w = take(b);
        ws.row_scale = take(b);
    }
    for (int64_t i = 0; i < n_ops; i++) {
        const Op& op = net.ops[i];
        const bool identity = op.kind == DROPOUT && op.rate == 0;
        if (!identity) ws.out[i] = take(b * op.n_out);
        if (op.kind == BATCHNORM || (op.kind == DROPOUT && !identity)) ws.cache[i] = take(b * op.n_in);
        if (op.kind == BATCHNORM) ws.invstd[i] = take(op.n_in);
    }
    ws.scratch = take(2 * net.max_width);
    ws.d[0] = take(b * net.max_width);
    ws.d[1] = take(b * net.max_width);
    ws.grad = take(net.n_params);
    return used;
}

template <class T>
Workspace<T> make_workspace(const Net& net, int64_t batch, int64_t y_cols, bool training, bool weighted = false) {
    require(batch <= kMaxDim, "a batch of " + std::to_string(batch) + " rows is more than BLAS can index");
    Workspace<T> ws;
    ws.batch = batch;
    ws.training = training;
    ws.weighted = training && weighted;
    if (training) ws.index.resize(static_cast<size_t>(batch));
    ws.ins.resize(net.ops.size() + 1);
    const size_t size = layout_workspace<T>(ws, net, y_cols, nullptr);
    T* base = static_cast<T*>(std::aligned_alloc(64, std::max<size_t>(size, 1) * sizeof(T)));
    if (base == nullptr) throw std::bad_alloc();
    ws.memory.reset(base);
    layout_workspace<T>(ws, net, y_cols, base);
    if (training) std::fill(ws.grad, ws.grad + net.n_params, T(0));  // parameters no op owns keep a zero gradient
    return ws;
}

// ---------------------------------------------------------------------------------------------
// passes over one batch

// Run the ops on x (m × d). Training mode (ws.training) uses batch statistics and dropout masks
// for step `step`; running_stats, when not null, receives the BatchNorm running-statistics update
// (it is the writable alias of stats). x's rows are rows first_row.. of their batch (a chunk of the
// data-parallel pass): their dropout masks are those rows' masks. Only the ops [begin, end) run
// (the data-parallel pass runs the ops between two BatchNorms; x is read when begin is 0).
template <class T>
void forward(Workspace<T>& ws, const Net& net, const T* params, const T* stats, T* running_stats, const T* x, int64_t m,
             uint64_t step, int64_t first_row = 0, size_t begin = 0, size_t end = SIZE_MAX) {
    if (begin == 0) ws.ins[0] = x;
    end = std::min(end, net.ops.size());
    for (size_t i = begin; i < end; i++) {  // a range never ends between a Dense and its fused activation
        const Op& op = net.ops[i];
        const T* inp = ws.ins[i];
        T* out = ws.training ? ws.out[i] : (inp == ws.out[0] ? ws.out[1] : ws.out[0]);
        const T* result = out;
        const T* p = params + op.param_off;
        switch (op.kind) {
            case DENSE: {
                // Fused in training only (inference has two ping-pong buffers): the activation's output goes
                // to the ACTIVATION op's buffer and that op is skipped (++i). An activation whose derivative
                // reads only its output overwrites z instead (one buffer less for the next passes to read).
                const bool fused = op.fused && ws.training;
                T* a = fused ? (gradient_reads_input(op.act) ? ws.out[i + 1] : out) : nullptr;
                dense_forward(out, a, inp, p, op.use_bias ? p + op.n_in * op.n_out : nullptr, m, op.n_in, op.n_out,
                              op.act, T(op.alpha));
                if (fused) {
                    ws.ins[++i] = out;
                    result = a;
                }
                break;
            }
            case ACTIVATION:  // unfused or inference; elementwise, so a large sweep splits over the pool with the same bits
                parallel_ranges(m * op.n_out, kParallelSweepElements, [&](int64_t b, int64_t e) {
                    activation_forward(out + b, inp + b, e - b, op.act, T(op.alpha));
                });
                break;
            case DROPOUT:
                if (ws.training && op.rate > 0)
                    dropout_forward(out, ws.cache[i], inp, m, op.n_in, op.rate, stream_key(net.seed, step, op.layer),
                                    first_row);
                else
                    result = inp;  // identity: the next op reads the same rows (nobody writes an op's input)
                break;
            case BATCHNORM: {
                const int64_t C = op.n_in;
                const T* s = stats + op.stat_off;
                if (ws.training) {
                    T* r = running_stats != nullptr ? running_stats + op.stat_off : nullptr;
                    batchnorm_forward_train(out, ws.cache[i], ws.invstd[i], ws.scratch, r, r != nullptr ? r + C : nullptr,
                                            inp, p, p + C, m, C, op.bn_momentum, op.bn_epsilon);
                } else {
                    batchnorm_forward_infer(out, inp, p, p + C, s, s + C, m, C, op.bn_epsilon);
                }
                break;
            }
            default: unknown_code("op kind", op.kind);
        }
        ws.ins[i + 1] = result;
    }
}

// grad (P) = d(loss)/d(params) given dz (m × K) in ws.d[0], after a training forward pass. Only
// the ops [begin, end) run, from the top down, the running gradient in ws.d[cur] (the data-parallel
// pass runs the ops between two BatchNorms); returns where it ends (0 or 1).
template <class T>
int backward(T* grad, Workspace<T>& ws, const Net& net, const T* params, int64_t m, size_t begin = 0,
             size_t end = SIZE_MAX, int cur = 0) {
    // d already went through the fused relu of the Dense at i (and has its bias gradient); false
    // where a range starts: a BatchNorm is never a fused activation, so no gate crosses one
    bool gated = false;
    end = std::min(end, net.ops.size());
    for (int64_t i = static_cast<int64_t>(end) - 1; i >= static_cast<int64_t>(begin); i--) {
        const Op& op = net.ops[i];
        const bool need_dinp = i > 0;
        T* d = ws.d[cur];
        switch (op.kind) {
            case DENSE: {
                T* dW = grad + op.param_off;
                T* db = op.use_bias ? dW + op.n_in * op.n_out : nullptr;
                if (op.fused) {  // d is the gradient of the activation's output ws.ins[i + 2]
                    if (!gated)
                        bias_activation_backward(d, db, ws.ins[i + 1], ws.ins[i + 2], m, op.n_out, op.act, T(op.alpha));
                    db = nullptr;
                }
                // A Dense with a fused activation below (at i - 2, its output is this op's input, its
                // input ws.ins[i - 1]) gets that activation's backward and bias gradient in the
                // epilogue of this op's dinp product.
                const Op* below = i >= 2 ? &net.ops[i - 2] : nullptr;
                gated = below != nullptr && below->kind == DENSE && below->fused &&
                        gated_dinp_applies<T>(m, op.n_in, op.n_out, below->act);
                DinpGate gate{};
                if constexpr (std::is_same_v<T, float>) {
                    if (gated)
                        gate = DinpGate{ws.ins[i - 1], ws.ins[i], op.n_in,
                                        below->use_bias ? grad + below->param_off + below->n_in * below->n_out : nullptr,
                                        below->act, static_cast<float>(below->alpha)};
                }
                dense_backward(need_dinp ? ws.d[1 - cur] : nullptr, dW, db, d, ws.ins[i], params + op.param_off, m,
                               op.n_in, op.n_out, gated ? &gate : nullptr);
                cur = 1 - cur;
                break;
            }
            case ACTIVATION:  // a fused one was done by the Dense before it
                if (need_dinp && !op.fused)
                    parallel_ranges(m * op.n_in, kParallelSweepElements, [&](int64_t b, int64_t e) {
                        activation_backward(d + b, d + b, ws.ins[i] + b, ws.ins[i + 1] + b, e - b, op.act, T(op.alpha));
                    });
                break;
            case DROPOUT:
                if (need_dinp && op.rate > 0) dropout_backward(d, d, ws.cache[i], m * op.n_in);
                break;
            case BATCHNORM: {
                T* dgamma = grad + op.param_off;
                batchnorm_backward(need_dinp ? d : nullptr, dgamma, dgamma + op.n_in, ws.scratch, d, ws.cache[i],
                                   ws.invstd[i], params + op.param_off, m, op.n_in);
                break;
            }
            default: unknown_code("op kind", op.kind);
        }
    }
    return cur;
}

// grad += scale · the l1/l2 penalties' gradient; returns scale · the penalty. The scale multiplies
// l1 and l2 (the numpy reference's order), so scale 1 is exactly the unscaled penalty.
template <class T>
double add_penalties(T* grad, const Net& net, const T* params, double scale = 1) {
    double penalty = 0;
    for (const int64_t i : net.penalized) {
        const Op& op = net.ops[i];
        penalty += add_penalty_gradient(grad + op.param_off, params + op.param_off, op.n_in * op.n_out, op.l1 * scale,
                                        op.l2 * scale);
    }
    return penalty;
}

// How one batch weighs its rows and its penalty (the numpy reference's batch_weighting): the
// objective is Σ r_i ℓ_i + penalty · π. row_scale null: the plain mean, r_i = 1/m.
template <class T>
struct BatchScale {
    const T* row_scale = nullptr;  // m: w_i / Σ_batch w
    double penalty = 1;            // π
};

// The BatchScale of a batch of m rows with weights w (m, null without weights), writing r_i into
// row_scale (m). Σw is summed in double; a batch whose weights sum to zero gets r_i = 0 (no data
// loss or gradient) and, with penalty_per_weight, no penalty.
template <class T>
BatchScale<T> batch_scale(T* row_scale, const Net& net, const T* w, int64_t m) {
    if (w == nullptr) return {nullptr, net.penalty_per_weight ? 1.0 / static_cast<double>(m) : 1.0};
    double total = 0;
    for (int64_t i = 0; i < m; i++) total += static_cast<double>(w[i]);
    if (total == 0) {
        std::fill(row_scale, row_scale + m, T(0));
        return {row_scale, net.penalty_per_weight ? 0.0 : 1.0};
    }
    for (int64_t i = 0; i < m; i++) row_scale[i] = T(static_cast<double>(w[i]) / total);
    return {row_scale, net.penalty_per_weight ? 1.0 / total : 1.0};
}

// Forward + loss + backward + penalty on one gathered batch in training mode: fills grad (P)
// and returns the (weighted) mean loss plus the (scaled) penalty, and the count of correct
// predictions.
template <class T>
LossValue batch_loss_and_grad(T* grad, Workspace<T>& ws, const Net& net, const T* params, const T* stats,
                              T* running_stats, const T* x, const T* y, int64_t y_cols, int64_t m, uint64_t step,
                              const BatchScale<T>& scale = {}) {
    forward(ws, net, params, stats, running_stats, x, m, step);
    LossValue result = loss_and_dlogits(ws.d[0], ws.ins.back(), y, m, net.n_outputs, y_cols, net.loss, scale.row_scale);
    backward(grad, ws, net, params, m);
    result.value += add_penalties(grad, net, params, scale.penalty);
    return result;
}

// batch_loss_and_grad for is_linear(net), with X's finite check of the batch in the same pass when
// check_finite: false when x holds a NaN or an infinity.
template <class T>
bool linear_loss_and_grad(LossValue& result, LinearPass<T>& pass, T* grad, const Net& net, const T* params,
                          const T* x, const T* y, int64_t m, bool check_finite, const BatchScale<T>& scale = {}) {
    const Op& op = net.ops[0];
    const T* W = params + op.param_off;
    T* dW = grad + op.param_off;
    const int64_t d = op.n_in;
    const LinearLayer<T> layer{W, op.use_bias ? W + d : nullptr, dW, op.use_bias ? dW + d : nullptr, d, net.loss};
    if (!pass.run(result, layer, x, y, m, check_finite, scale.row_scale)) return false;
    result.value += add_penalties(grad, net, params, scale.penalty);
    return true;
}

// Clip grad, then one optimizer step t (from 1) on params and slots, split over the pool from
// split_params parameters on (dispatch.hpp's update_split_params). (Updating each Dense right
// after its backward, or each kernel tile in the epilogue of its dW product, measured slower: the
// update's writes evict what the next GEMMs read. docs/performance.md.)
template <class T>
void apply_gradient(T* params, T* slot0, T* slot1, T* grad, const Net& net, double lr, int64_t t,
                    int64_t split_params) {
    const Optimizer& opt = net.optimizer;
    const T gscale = clip_gradient(grad, net.n_params, opt.clipvalue, opt.clipnorm);
    // The update is elementwise, so large buffers are split over the pool with the same result.
    auto update = [&](int64_t begin, int64_t end, T decay) {
        parallel_ranges(end - begin, split_params, [&](int64_t b, int64_t e) {
            optimizer_step(params + begin + b, slot0 + begin + b, slot1 + begin + b, grad + begin + b, e - b, opt, lr, t,
                           gscale, decay);
        });
    };
    if (opt.kind == ADAMW && opt.weight_decay > 0) {
        const T decay = T(1 - lr * opt.weight_decay);
        for (const ParamSegment& s : net.segments) update(s.begin, s.end, s.kernel ? decay : T(1));
    } else {
        update(0, net.n_params, T(1));
    }
}

// ---------------------------------------------------------------------------------------------
// entry points

// y must be (n × K), or (n × 1) whole class indices in [0, K) for categorical cross-entropy.
template <class T>
void check_targets(const Net& net, const StridedMatrix<T>& Y) {
    const int64_t K = net.n_outputs;
    const bool index_targets = net.loss == CATEGORICAL_CROSSENTROPY && Y.cols == 1 && K > 1;
    require(Y.cols == K || index_targets,
            "y must have " + std::to_string(K) + " columns" +
                (net.loss == CATEGORICAL_CROSSENTROPY ? " (or 1 column of class indices)" : "") + ", got " +
                std::to_string(Y.cols));
    if (!index_targets) return;
    for (int64_t r = 0; r < Y.rows; r++) {
        const T label = Y.at(r, 0);
        if (!(label >= T(0) && label < T(K) && label == std::floor(label)))  // NaN fails too
            throw std::invalid_argument("y holds class indices: row " + std::to_string(r) + " has " +
                                        std::to_string(static_cast<double>(label)) + ", not a whole number in [0, " +
                                        std::to_string(K) + ")");
    }
}

// Sample weights (n, contiguous) must be finite and ≥ 0 (the Python dispatcher checks them too;
// here a wrong one is an error instead of a meaningless fit).
template <class T>
void check_weights(const T* w, int64_t n) {
    if (w == nullptr) return;
    auto fine = [](T v) { return (v >= T(0)) & (v <= std::numeric_limits<T>::max()); };  // NaN fails both
    bool ok = true;
    for (int64_t i = 0; i < n; i++) ok &= fine(w[i]);  // no early exit: a branch-free scan of the valid case
    for (int64_t i = 0; !ok && i < n; i++)
        if (!fine(w[i]))
            throw std::invalid_argument("sample_weight must be finite and >= 0: sample_weight[" + std::to_string(i) +
                                        "] = " + std::to_string(static_cast<double>(w[i])));
}

// Raised by train_epochs when a row of X it reads holds a NaN or an infinity.
struct NonFiniteInput : std::domain_error {
    using std::domain_error::domain_error;
};

// Every entry of orders (E × n) must be a row index in [0, n).
inline void check_orders(const StridedMatrix<int64_t>& orders, int64_t n) {
    for (int64_t e = 0; e < orders.rows; e++) {
        uint64_t largest = 0;  // as unsigned, so negatives are huge; a max vectorizes, the message searches again
        const int64_t* row = orders.row(e);
        if (row != nullptr)
            for (int64_t k = 0; k < n; k++) largest = std::max(largest, static_cast<uint64_t>(row[k]));
        else
            for (int64_t k = 0; k < n; k++) largest = std::max(largest, static_cast<uint64_t>(orders.at(e, k)));
        for (int64_t k = 0; largest >= static_cast<uint64_t>(n) && k < n; k++) {
            const int64_t r = orders.at(e, k);
            if (r < 0 || r >= n)
                throw std::invalid_argument("orders[" + std::to_string(e) + ", " + std::to_string(k) + "] = " +
                                            std::to_string(r) + " is not a row index in [0, " + std::to_string(n) + ")");
        }
    }
}

// A copy of the training state (parameters and both slots, P each, then S statistics), to put
// back when a call must leave the model as it was (a NaN in X) or an epoch is cancelled.
template <class T>
struct StateCopy {
    std::vector<T> saved;

    void save(const T* params, const T* slot0, const T* slot1, int64_t P, const T* stats, int64_t S) {
        saved.assign(params, params + P);
        saved.insert(saved.end(), slot0, slot0 + P);
        saved.insert(saved.end(), slot1, slot1 + P);
        saved.insert(saved.end(), stats, stats + S);
    }
    void restore(T* params, T* slot0, T* slot1, int64_t P, T* stats) const {
        const T* p = saved.data();
        std::copy(p, p + P, params);
        std::copy(p + P, p + 2 * P, slot0);
        std::copy(p + 2 * P, p + 3 * P, slot1);
        std::copy(p + 3 * P, p + saved.size(), stats);
    }
};

// The pass train_epochs runs (dispatch.hpp's training_pass, chosen once per call) and the buffers
// its optimizer step updates: the plan's, or TinyPass's padded copies of them (written back by
// finish()).
template <class T>
struct TrainingState {
    TrainingPass pass;
    std::unique_ptr<LinearPass<T>> linear;
    std::unique_ptr<TinyPass<T>> tiny;
    std::unique_ptr<DataParallelPass<T, Workspace<T>>> chunked;
    const Net* net;  // the network as the update sees the buffers
    T *params, *slot0, *slot1, *grad;

    TrainingState(const Net& plan_net, Workspace<T>& ws, T* plan_params, T* plan_slot0, T* plan_slot1)
        : pass(training_pass<T>(plan_net, ws.batch)),
          net(&plan_net),
          params(plan_params),
          slot0(plan_slot0),
          slot1(plan_slot1),
          grad(ws.grad) {
        if (pass == TrainingPass::LINEAR) linear = std::make_unique<LinearPass<T>>(ws.batch, plan_net.n_features);
        if (pass == TrainingPass::DATA_PARALLEL)  // chunks read x and y in the batch's rows: no y buffer (0 columns)
            chunked = std::make_unique<DataParallelPass<T, Workspace<T>>>(
                plan_net, ws.batch, [&](int64_t rows) { return make_workspace<T>(plan_net, rows, 0, true); });
        if (pass == TrainingPass::TINY) {
            tiny = std::make_unique<TinyPass<T>>(plan_net, ws.batch);
            tiny->load(plan_params, plan_slot0, plan_slot1);
            net = &tiny->padded_net();
            params = tiny->params(), slot0 = tiny->slot0(), slot1 = tiny->slot1(), grad = tiny->grad();
        }
    }
    // Write what the update changed back into the plan's buffers.
    void finish(T* plan_params, T* plan_slot0, T* plan_slot1) const {
        if (tiny != nullptr) tiny->store(plan_params, plan_slot0, plan_slot1);
    }
};

// One batch's rows: x (m × d) and y (m × y_cols) read in place when the batch is rows first,
// first + 1, ... of a contiguous X (Y), else gathered into the workspace; w the batch's weights
// (null without). consecutive: the rows are first.. in order (else ws.index lists them).
template <class T>
struct BatchRows {
    const T* x;
    const T* y;
    const T* w;
    int64_t first;
    bool consecutive;
    const int64_t* index;  // the batch's rows when not consecutive
};

// out_x (m × X.cols), out_y (m × Y.cols) = the rows index[0..m) of X and Y, contiguous. One value a
// row in both (one feature and one target, W6): one loop that reads each index once, with half the
// loads and branches of two gather_rows.
template <class T>
void gather_batch(T* out_x, T* out_y, const StridedMatrix<T>& X, const StridedMatrix<T>& Y, const int64_t* index,
                  int64_t m) {
    if (X.cols != 1 || Y.cols != 1) {
        gather_rows(out_x, X, index, m);
        gather_rows(out_y, Y, index, m);
        return;
    }
    const char* x = X.data;  // (locals: the stores may alias the matrices, which would be reloaded per row)
    const char* y = Y.data;
    const int64_t x_stride = X.row_stride, y_stride = Y.row_stride;
    if (x_stride == sizeof(T) && y_stride == sizeof(T)) {  // two contiguous columns: plain indexed loads, no stride products
        const T* xc = reinterpret_cast<const T*>(x);
        const T* yc = reinterpret_cast<const T*>(y);
        for (int64_t k = 0; k < m; k++) {
            out_x[k] = xc[index[k]];
            out_y[k] = yc[index[k]];
        }
        return;
    }
    for (int64_t k = 0; k < m; k++) {
        const int64_t r = index[k];
        std::memcpy(out_x + k, x + r * x_stride, sizeof(T));
        std::memcpy(out_y + k, y + r * y_stride, sizeof(T));
    }
}

// The rows start..start+m-1 of epoch e's order (0..n-1 when orders is null). A shuffled epoch's
// batches are gathered without looking for rows in order first: the rows of a random order almost
// never are, and reading them in place or gathered gives the same values. defer_x: x rows that
// would be gathered are left to the data-parallel pass's chunks (x null, index lists them), which
// gather their own rows on their threads.
template <class T>
DENSEFIT_ALWAYS_INLINE BatchRows<T> batch_rows(Workspace<T>& ws, const StridedMatrix<T>& X, const StridedMatrix<T>& Y,
                                               const T* X_direct, const T* Y_direct,
                                               const StridedMatrix<int64_t>* orders, bool shuffled, bool defer_x,
                                               const T* sample_weight, int64_t e, int64_t start, int64_t m) {
    int64_t* own = ws.index.data();
    const int64_t* index = own;  // the batch's rows: a contiguous order's are read where they are
    int64_t first = start;  // rows first..first+m-1 of a contiguous X are used where they are
    bool consecutive = true;
    if (orders != nullptr) {
        const int64_t* row = orders->row(e);
        if (row != nullptr)
            index = row + start;
        else
            for (int64_t k = 0; k < m; k++) own[k] = orders->at(e, start + k);
        first = index[0];
        consecutive = false;
        if (!shuffled) {
            int64_t mismatch = 0;
            for (int64_t k = 0; k < m; k++) mismatch |= index[k] ^ (first + k);
            consecutive = mismatch == 0;
        }
    }
    const T* x = consecutive && X_direct != nullptr ? X_direct + first * X.cols : ws.x;
    const T* y = consecutive && Y_direct != nullptr ? Y_direct + first * Y.cols : ws.y;
    if ((x == ws.x || y == ws.y) && orders == nullptr)  // rows in order, from a strided X or Y
        for (int64_t k = 0; k < m; k++) own[k] = start + k;
    if (x == ws.x && defer_x) x = nullptr;  // the chunks gather it
    if (x == ws.x && y == ws.y) {
        gather_batch(ws.x, ws.y, X, Y, index, m);
    } else {
        if (x == ws.x) gather_rows(ws.x, X, index, m);
        if (y == ws.y) gather_rows(ws.y, Y, index, m);
    }
    // The batch's weights go with its rows, as y does: read in place when consecutive, else gathered.
    const T* w = sample_weight != nullptr && consecutive ? sample_weight + first : nullptr;
    if (sample_weight != nullptr && !consecutive) {
        for (int64_t k = 0; k < m; k++) ws.w[k] = sample_weight[index[k]];
        w = ws.w;
    }
    return {x, y, w, first, consecutive, index};
}

// Loss and gradient of one batch through the call's pass, into state.grad; with check, false
// (nothing else defined) when x holds a NaN or an infinity. x null (data-parallel pass only, never
// with check): the chunks gather rows index[0..m) of X themselves.
template <class T>
DENSEFIT_ALWAYS_INLINE bool train_batch(LossValue& lv, TrainingState<T>& state, Workspace<T>& ws, const Net& net,
                                        T* params, T* stats, const T* x, const StridedMatrix<T>& X,
                                        const int64_t* index, const T* y, int64_t y_cols, int64_t d, int64_t m,
                                        uint64_t step, bool check, const BatchScale<T>& scale) {
    if (state.linear != nullptr) return linear_loss_and_grad(lv, *state.linear, ws.grad, net, params, x, y, m, check, scale);
    if (check && !all_finite(x, m * d, 1)) return false;
    if (state.tiny != nullptr) {
        lv = state.tiny->loss_and_grad(x, y, y_cols, m, scale.row_scale);
        lv.value += add_penalties(state.grad, *state.net, state.params, scale.penalty);
    } else if (state.chunked != nullptr) {
        lv = state.chunked->loss_and_grad(ws.grad, net, params, stats, x, X, index, y, y_cols, m, step, scale.row_scale);
        lv.value += add_penalties(ws.grad, net, params, scale.penalty);
    } else {
        lv = batch_loss_and_grad(ws.grad, ws, net, params, stats, stats, x, y, y_cols, m, step, scale);
    }
    return true;
}

// Epoch e (of E) visits orders[e] (rows 0..n-1 in order when orders is null), or with a shuffle
// (then orders must be null) the order shuffle.hpp computes for epoch shuffle->first_epoch + e, in
// consecutive slices of batch_size (the last one smaller) with learning rate lrs[e]; the first step is number
// `step` (0-based). Updates params, slots (slot0, slot1: P each) and stats in place and writes
// out (E × 4): loss sum (each batch's objective times its row count m), correct (unweighted),
// seen, steps.
//
// sample_weight (n, contiguous; null: none) weighs each batch's rows, gathered with the batch as y
// is: its objective is Σ w_i ℓ_i / Σw + penalty (see batch_scale; net.penalty_per_weight divides the
// penalty by Σw, or by m without weights).
//
// cancel (null: none): polled between batches (another thread sets it on Ctrl-C). When it is set
// the epoch under way is undone (params, slots and stats back to its start) and train_epochs
// returns the number of epochs completed; their rows of out hold their stats, the rest zeros.
// Otherwise it returns E.
//
// check_finite: each batch of X is checked while the first epoch reads it (in cache, instead of a
// separate pass over all of X before training). On a NaN or infinity the parameters, slots and
// statistics are restored to their values at the call and NonFiniteInput names the row, so the
// caller sees an error and an untouched model, as with a check up front.
template <class T>
int64_t train_epochs(double* out, T* params, T* slot0, T* slot1, T* stats, const Net& net, const StridedMatrix<T>& X,
                     const StridedMatrix<T>& Y, const StridedMatrix<int64_t>* orders, int64_t E, const double* lrs,
                     int64_t batch_size, uint64_t step, bool check_finite = false, const T* sample_weight = nullptr,
                     int64_t* progress = nullptr, const int64_t* cancel = nullptr, const Shuffle* shuffle = nullptr) {
    const int64_t n = X.rows;
    require(batch_size >= 1, "batch_size must be >= 1");
    require(orders == nullptr || shuffle == nullptr, "give orders or a shuffle, not both");
    require(orders == nullptr || (orders->rows == E && orders->cols == n), "orders must have shape (E, n)");
    check_targets(net, Y);
    check_weights(sample_weight, n);
    if (orders != nullptr) check_orders(*orders, n);
    std::fill(out, out + 4 * E, 0.0);
    if (n == 0 || E == 0) return E;
    Workspace<T> ws = make_workspace<T>(net, std::min(batch_size, n), Y.cols, true, sample_weight != nullptr);
    const int64_t P = net.n_params, S = net.n_stats;
    StateCopy<T> at_call;  // params, slot0, slot1, stats as they were at the call
    if (check_finite) at_call.save(params, slot0, slot1, P, stats, S);
    // b holds the batch's rows first, first + 1, ... when consecutive, else the rows ws.index.
    auto reject = [&](const BatchRows<T>& b, int64_t m) {
        int64_t k = 0;
        while (k + 1 < m && all_finite(b.x + k * X.cols, X.cols, 1)) k++;
        at_call.restore(params, slot0, slot1, P, stats);
        const int64_t r = b.consecutive ? b.first + k : b.index[k];
        throw NonFiniteInput("X contains NaN or infinity (row " + std::to_string(r) + ")");
    };
    const T* X_direct = X.contiguous();
    const T* Y_direct = Y.contiguous();
    TrainingState<T> state(net, ws, params, slot0, slot1);
    // With a cancel flag: the live state (TinyPass's padded copies when it runs) as each epoch began.
    const int64_t live_P = state.net->n_params;
    StateCopy<T> epoch_start;
    auto cancelled = [&] { return cancel != nullptr && __atomic_load_n(cancel, __ATOMIC_RELAXED) != 0; };
    // A shuffle's epoch order, computed into buffers allocated once and read as a 1-row orders.
    EpochOrder shuffled(shuffle != nullptr ? n : 0);
    StridedMatrix<int64_t> shuffled_rows{nullptr, 1, n, 0, static_cast<int64_t>(sizeof(int64_t))};
    const StridedMatrix<int64_t>* epoch_orders = shuffle != nullptr ? &shuffled_rows : orders;
    for (int64_t e = 0; e < E; e++) {
        double* epoch = out + 4 * e;
        if (shuffle != nullptr)
            shuffled_rows.data = reinterpret_cast<const char*>(shuffled.compute(shuffle->seed, shuffle->first_epoch + e));
        if (cancel != nullptr) epoch_start.save(state.params, state.slot0, state.slot1, live_P, stats, S);
        for (int64_t start = 0; start < n; start += batch_size) {
            if (cancelled()) {  // undo the epoch under way: the state is that of the last completed one
                epoch_start.restore(state.params, state.slot0, state.slot1, live_P, stats);
                std::fill(epoch, epoch + 4, 0.0);
                state.finish(params, slot0, slot1);
                return e;
            }
            const int64_t m = std::min(batch_size, n - start);
            const bool check = check_finite && e == 0;  // (reads the gathered batch)
            const BatchRows<T> b = batch_rows(ws, X, Y, X_direct, Y_direct, epoch_orders, shuffle != nullptr,
                                               state.chunked != nullptr && !check, sample_weight,
                                               shuffle != nullptr ? 0 : e, start, m);
            const BatchScale<T> scale = batch_scale(ws.row_scale, net, b.w, m);
            // The next batch's rows of a small batch read in place are fetched while this one trains.
            if (b.x != ws.x && prefetch_next_batch(state.pass, m * X.cols * static_cast<int64_t>(sizeof(T)))) {
                const char* next = reinterpret_cast<const char*>(b.x + m * X.cols);
                const char* end = reinterpret_cast<const char*>(X_direct + std::min(n, b.first + 2 * m) * X.cols);
                for (; next < end; next += 64) __builtin_prefetch(next);
            }
            LossValue lv;
            if (!train_batch(lv, state, ws, net, params, stats, b.x, X, b.index, b.y, Y.cols, X.cols, m, step, check,
                             scale))
                reject(b, m);
            apply_gradient(state.params, state.slot0, state.slot1, state.grad, *state.net, lrs[e],
                           static_cast<int64_t>(step) + 1, update_split_params(state.pass));
            step++;
            epoch[0] += lv.value * static_cast<double>(m);
            epoch[1] += static_cast<double>(lv.correct);
            epoch[2] += static_cast<double>(m);
            epoch[3] += 1;
            // rows trained so far in this call, for a progress bar polled by another thread
            if (progress != nullptr) __atomic_store_n(progress, e * n + start + m, __ATOMIC_RELAXED);
        }
    }
    state.finish(params, slot0, slot1);
    return E;
}

// out (n × K) = the network's output on X in inference mode, batch_size rows at a time; the
// logits when `logits`, else the output activation of them.
template <class T>
void predict(T* out, const T* params, const T* stats, const Net& net, const StridedMatrix<T>& X, int64_t batch_size,
             bool logits) {
    const int64_t n = X.rows, K = net.n_outputs;
    require(batch_size >= 1, "batch_size must be >= 1");
    if (n == 0) return;
    batch_size = std::min(batch_size, kMaxDim);  // rows are independent in inference
    Workspace<T> ws = make_workspace<T>(net, std::min(batch_size, n), 0, false);
    const T* direct = X.contiguous();
    for (int64_t start = 0; start < n; start += batch_size) {
        const int64_t m = std::min(batch_size, n - start);
        const T* x = direct != nullptr ? direct + start * X.cols : ws.x;
        if (direct == nullptr) {
            for (int64_t k = 0; k < m; k++) copy_row(ws.x + k * X.cols, X, start + k);
        }
        forward(ws, net, params, stats, static_cast<T*>(nullptr), x, m, 0);
        const T* z = ws.ins.back();
        if (logits)
            std::copy(z, z + m * K, out + start * K);
        else
            output_activation(out + start * K, z, m, K, net.output_activation);
    }
}

// grad (P) = the gradient of the loss (incl. penalty) on the whole of X, y as one batch in
// training mode at step `step`, weighted by sample_weight (m, contiguous; null: none) as a batch
// of train_epochs is; returns that loss. Nothing else is modified.
template <class T>
double loss_and_grad(T* grad, const T* params, const T* stats, const Net& net, const StridedMatrix<T>& X,
                     const StridedMatrix<T>& Y, uint64_t step, const T* sample_weight = nullptr) {
    const int64_t m = X.rows;
    require(m >= 1, "X has no rows");
    check_targets(net, Y);
    check_weights(sample_weight, m);
    Workspace<T> ws = make_workspace<T>(net, m, Y.cols, true, sample_weight != nullptr);
    const BatchScale<T> scale = batch_scale(ws.row_scale, net, sample_weight, m);
    for (int64_t r = 0; r < m; r++) {
        copy_row(ws.x + r * X.cols, X, r);
        copy_row(ws.y + r * Y.cols, Y, r);
    }
    std::fill(grad, grad + net.n_params, T(0));
    const LossValue result =
        batch_loss_and_grad(grad, ws, net, params, stats, static_cast<T*>(nullptr), ws.x, ws.y, Y.cols, m, step, scale);
    return result.value;
}

}  // namespace densefit
