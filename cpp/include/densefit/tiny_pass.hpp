// Training steps of a tiny network: Dense layers (each with its activation or none) of fewer than
// kNarrow (8) units and inputs, on batches of fewer than kNarrow rows. W1 (2-3-4-1 relu, batch 1)
// and the teaching networks of the tutorials: a step is a few dozen multiply-adds, so the general
// path's per-op dispatch (workspace pointers, the kind switch, the direct-loop choice, the width
// and activation switches of every sweep) was nearly all of its time.
//
// Here every layer is padded to rows of kTinyWidth lanes: the pass keeps its own copy of the
// parameters, each Dense as n_in rows of kTinyWidth kernel values and one row of biases, zero in
// the lanes past n_out, and the optimizer runs on that copy (store() writes it back). A row's
// product is then n_in fixed-length vector multiply-adds, and the activations, their gradients
// and the outer products of dW are fixed-length loops too. The padding never changes a value:
// padded lanes hold zero activations and zero gradients, so their parameters, slots and
// gradients stay exactly zero through every optimizer, penalty and clipping (a zero's square and
// absolute value add nothing to the norms and penalties, which see the real values in their
// original order). Every sum runs in the general path's order (layers.hpp below kNarrow rows and
// widths: over k, then the rows in order), so results are those of the general path bit for bit
// (tests/test_tiny_pass.py: parameters, slots and history equal to a plan the pass does not take).
// Where it runs is dispatch.hpp's tiny_pass_applies.
//
// GCC puts vectors written lane by lane through lambdas by reference, or read at run-time lane
// indices, through the stack, and a vector load of a row just written lane by lane waits for the
// stores (no store forwarding). Hence the rules below: lanes at run-time indices are read from
// memory, rows are written whole, relu stays off the switch.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "activation.hpp"
#include "dispatch.hpp"
#include "inline.hpp"
#include "layers.hpp"
#include "loss.hpp"
#include "net.hpp"

namespace densefit {

template <class T>
class TinyPass {
public:
    // For batches of up to `batch` rows (batch < kNarrow, tiny_pass_applies).
    TinyPass(const Net& net, int64_t batch) : net_(net), padded_(net), batch_(batch) {
        for (const Op& op : net.ops) {
            if (op.kind != DENSE) continue;
            const int64_t act = op.fused ? op.act : int64_t{IDENTITY};
            const int64_t buffer = static_cast<int64_t>(layers_.size());
            layers_.push_back({op.n_in, op.n_out, act, T(op.fused ? op.alpha : 0), op.use_bias, op.param_off, 0, buffer});
        }
        // Padded offsets in the order of the plan's buffer, so the clipping norm and the penalties
        // meet the real values in the same order.
        std::vector<Layer*> by_offset;
        for (Layer& l : layers_) by_offset.push_back(&l);
        std::sort(by_offset.begin(), by_offset.end(), [](const Layer* a, const Layer* b) { return a->original < b->original; });
        padded_.ops.clear();
        padded_.penalized.clear();
        padded_.segments.clear();
        int64_t offset = 0;
        for (Layer* l : by_offset) {
            l->padded = offset;
            const int64_t kernel_end = offset + l->n_in * kTinyWidth;
            Op op = net.ops[op_index(net, l->original)];
            op.param_off = offset;
            op.n_out = kTinyWidth;  // add_penalties visits n_in × kTinyWidth values, zeros included
            if (op.l1 != 0 || op.l2 != 0) padded_.penalized.push_back(static_cast<int64_t>(padded_.ops.size()));
            padded_.ops.push_back(op);
            padded_.segments.push_back({offset, kernel_end, true});
            padded_.segments.push_back({kernel_end, kernel_end + kTinyWidth, false});
            offset = kernel_end + kTinyWidth;
        }
        padded_.n_params = offset;
        const size_t L = layers_.size(), P = static_cast<size_t>(offset), rows = static_cast<size_t>(batch) * kTinyWidth;
        params_.assign(P + kTinyWidth * kTinyWidth, T(0));  // backward's transpose reads 8 rows from any layer
        slot0_.assign(P, T(0));
        slot1_.assign(P, T(0));
        grad_.assign(P, T(0));
        a_.assign((L + 1) * rows, T(0));
        z_.assign(L * rows, T(0));
        d_.assign(L * rows, T(0));
        logits_.assign(static_cast<size_t>(batch * net.n_outputs), T(0));
        dz_.assign(logits_.size() + kTinyWidth, T(0));  // a vector load of K < kTinyWidth lanes may read past
    }

    // Copy params and the optimizer slots (P each, the plan's layout) into the padded copy.
    void load(const T* params, const T* slot0, const T* slot1) {
        for (const Layer& l : layers_) {
            copy_layer(params_.data() + l.padded, kTinyWidth, params + l.original, l.n_out, l);
            copy_layer(slot0_.data() + l.padded, kTinyWidth, slot0 + l.original, l.n_out, l);
            copy_layer(slot1_.data() + l.padded, kTinyWidth, slot1 + l.original, l.n_out, l);
        }
    }

    // Write the padded copy back into params and the slots.
    void store(T* params, T* slot0, T* slot1) const {
        for (const Layer& l : layers_) {
            copy_layer(params + l.original, l.n_out, params_.data() + l.padded, kTinyWidth, l);
            copy_layer(slot0 + l.original, l.n_out, slot0_.data() + l.padded, kTinyWidth, l);
            copy_layer(slot1 + l.original, l.n_out, slot1_.data() + l.padded, kTinyWidth, l);
        }
    }

    // The network as the optimizer sees the padded copy (each Dense n_in × kTinyWidth), and the
    // copy's parameters, slots and gradient: train_epochs adds the penalties and applies the
    // gradient on them as it does on the plan's buffers.
    const Net& padded_net() const { return padded_; }
    T* params() { return params_.data(); }
    T* slot0() { return slot0_.data(); }
    T* slot1() { return slot1_.data(); }
    T* grad() { return grad_.data(); }

    // Forward, loss and backward of the batch x (m × d rows, contiguous), y (m × y_cols) into the
    // padded gradient: the mean loss (without penalties) and the correct count; with row_scale (m,
    // the rows' w_i / Σw) the weighted mean, through the general path's weighted_loss_rows.
    LossValue loss_and_grad(const T* x, const T* y, int64_t y_cols, int64_t m, const T* row_scale = nullptr) {
        const int64_t K = net_.n_outputs, d = net_.n_features;
        for (int64_t r = 0; r < m; r++) copy_lanes(input(r), x + r * d, d);
        for (const Layer& l : layers_) forward(l, m);
        const Layer& last = layers_.back();
        for (int64_t r = 0; r < m; r++) copy_lanes(logits_.data() + r * K, output(last, r), K);
        const LossValue result = loss_and_dlogits(dz_.data(), logits_.data(), y, m, K, y_cols, net_.loss, row_scale);
        for (int64_t r = 0; r < m; r++) {
            // K lanes of dz_ (it has kTinyWidth more readable elements), zeros after
            const Row dz = K == 1 ? Row{} + dz_[r] : load(dz_.data() + r * K);
            store(gradient(last, r), lane_below(K) ? dz : Row{});
        }
        for (auto l = layers_.rbegin(); l != layers_.rend(); ++l) backward(*l, m, l + 1 != layers_.rend());
        return result;
    }

private:
    using Row = typename Block8<T>::row;  // kTinyWidth lanes
    static_assert(sizeof(Row) == kTinyWidth * sizeof(T), "a row is kTinyWidth lanes");

    struct Layer {
        int64_t n_in, n_out, act;
        T alpha;
        bool use_bias;
        int64_t original, padded;  // offsets of the layer's W in the plan's buffer and in the padded copy
        int64_t buffer;            // its place in the network: output rows in a_, z_, d_
    };

    static size_t op_index(const Net& net, int64_t param_off) {
        size_t i = 0;
        while (net.ops[i].kind != DENSE || net.ops[i].param_off != param_off) i++;
        return i;
    }

    // A layer's kernel rows then its bias row (when it has one), n_out values each, between two row
    // strides (the plan's n_out, the padded kTinyWidth).
    static void copy_layer(T* to, int64_t to_stride, const T* from, int64_t from_stride, const Layer& l) {
        const int64_t rows = l.n_in + (l.use_bias ? 1 : 0);
        for (int64_t k = 0; k < rows; k++)
            for (int64_t j = 0; j < l.n_out; j++) to[k * to_stride + j] = from[k * from_stride + j];
    }

    static Row load(const T* p) {
        Row v;
        std::memcpy(&v, p, sizeof v);
        return v;
    }
    static void store(T* p, const Row& v) { std::memcpy(p, &v, sizeof v); }
    // The first n lanes of a row, element by element (not std::copy: a memmove call per row).
    static void copy_lanes(T* __restrict to, const T* __restrict from, int64_t n) {
        for (int64_t j = 0; j < n; j++) to[j] = from[j];
    }

    T* input(int64_t r) { return a_.data() + r * kTinyWidth; }  // the network's input is a_'s first block
    T* output(const Layer& l, int64_t r) { return a_.data() + ((l.buffer + 1) * batch_ + r) * kTinyWidth; }
    T* layer_input(const Layer& l, int64_t r) { return a_.data() + (l.buffer * batch_ + r) * kTinyWidth; }
    T* preactivation(const Layer& l, int64_t r) { return z_.data() + (l.buffer * batch_ + r) * kTinyWidth; }
    T* gradient(const Layer& l, int64_t r) { return d_.data() + (l.buffer * batch_ + r) * kTinyWidth; }  // of l's output

    // z = x W (+ b) and a = act(z) on every lane, row by row (past n_out, z is zero and a = act(0):
    // the next layer reads only its n_in lanes, and backward's gradient there is zero). Lanes are
    // read from memory by index (x[k], d[j]): an element of a vector register at a run-time index
    // made GCC spill the register to the stack for each access.
    DENSEFIT_ALWAYS_INLINE void forward(const Layer& l, int64_t m) {
        const T* W = params_.data() + l.padded;
        for (int64_t r = 0; r < m; r++) {
            const T* x = layer_input(l, r);
            Row z = x[0] * load(W);
            for (int64_t k = 1; k < l.n_in; k++) z += x[k] * load(W + k * kTinyWidth);
            if (l.use_bias) z = z + load(W + l.n_in * kTinyWidth);
            store(preactivation(l, r), z);
            store(output(l, r), activate_lanes(l, z));
        }
    }

    // The activation's gradient on l's output gradient (in place), then dW, db (the first row
    // writes, the others add) and, when need_dinp, the gradient of l's input on its first n_in lanes
    // (zero after): Σ_j d_j W_kj in j order, as a vector over k from the columns of W (a register
    // transpose of the kernel rows). The output gradient is zero past n_out, and so is the
    // activation's gradient there (0 times a finite factor), so dW and db stay zero there.
    // Every row of d_ is written as a whole vector: a vector load of a row written element by
    // element stalls until the stores retire (store forwarding fails).
    DENSEFIT_ALWAYS_INLINE void backward(const Layer& l, int64_t m, bool need_dinp) {
        const T* W = params_.data() + l.padded;
        T* dW = grad_.data() + l.padded;
        T* db = dW + l.n_in * kTinyWidth;
        Row columns[kTinyWidth];
        if (need_dinp) {
            T wt[kTinyWidth * kTinyWidth];  // rows past n_in (the biases, the next layer) are masked below
            transpose_block8(wt, kTinyWidth, W, kTinyWidth);
            for (int64_t j = 0; j < l.n_out; j++) columns[j] = load(wt + j * kTinyWidth);
        }
        for (int64_t r = 0; r < m; r++) {
            T* dout = gradient(l, r);
            const Row d = gradient_lanes(l, load(dout), load(preactivation(l, r)), load(output(l, r)));
            store(dout, d);  // dout[j] below: an element of a register at a run-time index would spill it
            const T* x = layer_input(l, r);
            for (int64_t k = 0; k < l.n_in; k++) {
                T* g = dW + k * kTinyWidth;
                store(g, r == 0 ? x[k] * d : load(g) + x[k] * d);
            }
            if (l.use_bias) store(db, r == 0 ? d : load(db) + d);
            if (!need_dinp) continue;
            Row dinp = dout[0] * columns[0];
            for (int64_t j = 1; j < l.n_out; j++) dinp += dout[j] * columns[j];
            store(d_.data() + ((l.buffer - 1) * batch_ + r) * kTinyWidth, lane_below(l.n_in) ? dinp : Row{});
        }
    }

    // act(z) and d · act'(z) on every lane (given a = act(z)), as values: a vector captured by
    // reference and written lane by lane went through the stack.
    // Identity and relu (the hidden layers of most tiny networks) as vector operations, GCC did not
    // vectorize their lane loops; relu as activation.hpp's std::max(z, 0) and y > 0 ? d : 0 (NaN
    // and -0 included). The other activations lane by lane through activation.hpp.
    template <int64_t A>
    static DENSEFIT_ALWAYS_INLINE Row activate_row(Row z, T alpha) {
        if constexpr (A == IDENTITY) return z;
        if constexpr (A == RELU) return z < T(0) ? Row{} : z;
        Row a;
        for (int j = 0; j < kTinyWidth; j++) a[j] = activate<A>(z[j], alpha);
        return a;
    }
    template <int64_t A>
    static DENSEFIT_ALWAYS_INLINE Row gradient_row(Row d, Row z, Row a, T alpha) {
        if constexpr (A == IDENTITY) return d;
        if constexpr (A == RELU) return a > T(0) ? d : Row{};
        Row g;
        for (int j = 0; j < kTinyWidth; j++) g[j] = activation_gradient<A>(d[j], z[j], a[j], alpha);
        return g;
    }
    // Relu and identity inline; the others out of line (the switch's lambdas capture their vectors
    // by reference, which put every path's vectors through the stack, relu's included).
    static DENSEFIT_ALWAYS_INLINE Row activate_lanes(const Layer& l, Row z) {
        if (l.act == RELU) return activate_row<RELU>(z, l.alpha);
        if (l.act == IDENTITY) return z;
        return activate_other(l.act, z, l.alpha);
    }
    static DENSEFIT_ALWAYS_INLINE Row gradient_lanes(const Layer& l, Row d, Row z, Row a) {
        if (l.act == RELU) return gradient_row<RELU>(d, z, a, l.alpha);
        if (l.act == IDENTITY) return d;
        return gradient_other(l.act, d, z, a, l.alpha);
    }
    static DENSEFIT_NOINLINE Row activate_other(int64_t act, Row z, T alpha) {
        Row a = z;
        with_activation(act, [&](auto code) DENSEFIT_INLINE_LAMBDA { a = activate_row<code()>(z, alpha); });
        return a;
    }
    static DENSEFIT_NOINLINE Row gradient_other(int64_t act, Row d, Row z, Row a, T alpha) {
        Row g = d;
        with_activation(act, [&](auto code) DENSEFIT_INLINE_LAMBDA { g = gradient_row<code()>(d, z, a, alpha); });
        return g;
    }

    // Lanes below n as a mask (all bits set) for a vector select.
    static auto lane_below(int64_t n) {
        using Index = typename Block8<T>::index;
        Index lanes;
        for (int j = 0; j < kTinyWidth; j++) lanes[j] = j;
        return lanes < static_cast<typename Block8<T>::index_element>(n);
    }

    const Net& net_;
    Net padded_;                 // the network as the optimizer sees the padded copy
    std::vector<Layer> layers_;  // in the order the network runs them
    std::vector<T> params_, slot0_, slot1_, grad_;
    std::vector<T> a_;           // (L + 1) blocks of batch rows × kTinyWidth: the input, then each layer's output
    std::vector<T> z_, d_;       // L blocks: each layer's pre-activation and the gradient of its output
    std::vector<T> logits_, dz_; // batch × K
    int64_t batch_ = 0;
};

}  // namespace densefit
