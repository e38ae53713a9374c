// The Plan decoded into plain structs: the op table (Op), the network (Net) and decode_net, which
// validates the Plan's arrays so no later access can leave the buffers. The Plan layout (op table
// columns, codes) is that of python/densefit/plan.py.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "codes.hpp"
#include "optimizer.hpp"

namespace densefit {

struct Op {
    int64_t kind, n_in, n_out;
    int64_t param_off, stat_off;  // DENSE: W then b; BATCHNORM: γ then β, and mean then var
    int64_t act;                  // ACTIVATION; a fused DENSE: that of the next op
    uint64_t layer;               // DROPOUT: the RNG's layer number
    bool use_bias;                // DENSE
    bool fused;                   // a DENSE and the ACTIVATION right after it, run as one op by the DENSE
    double alpha;                 // ACTIVATION; a fused DENSE: that of the next op
    double rate;                  // DROPOUT
    double bn_momentum, bn_epsilon;
    double l1, l2;                // DENSE kernel penalty
};

// A run of the flat parameter buffer that is all Dense kernel or all something else.
struct ParamSegment {
    int64_t begin, end;
    bool kernel;
};

struct Net {
    std::vector<Op> ops;
    int64_t loss, output_activation;
    Optimizer optimizer;
    uint64_t seed;
    int64_t n_features, n_outputs, n_params, n_stats, max_width;
    std::vector<ParamSegment> segments;  // cover [0, P) in order; AdamW decays the kernel ones
    std::vector<int64_t> penalized;      // the Dense ops with an l1 or l2 penalty: the only ones a step visits for it
    // The plan's penalty_per_weight: each batch's penalty (and its gradient) is divided by the
    // batch's total sample weight (its row count without weights; zero for a total of zero),
    // scikit-learn's objective; false adds it once per batch (Keras, PyTorch).
    bool penalty_per_weight = false;
};

// Widths and offsets must fit BLAS's 32-bit integers and keep every product far from overflow.
constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;

inline void require(bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument(message);
}

// Decode (and validate, so no later access can leave the buffers) the Plan's arrays:
// ops (n_ops × N_OP_COLUMNS) int64, op_params (n_ops × N_OP_PARAMS) and opt_params
// (N_OPT_PARAMS) float64, all row-major.
inline Net decode_net(const int64_t* ops, const double* op_params, int64_t n_ops, int64_t loss,
                      int64_t output_activation, int64_t optimizer, const double* opt_params, uint64_t seed,
                      int64_t n_params, int64_t n_stats, bool penalty_per_weight = false) {
    require(n_ops >= 1, "the plan has no ops");
    require(n_params >= 1, "plan n_params must be >= 1");
    require(n_stats >= 0 && n_stats <= n_params, "plan n_stats out of range");
    require(listed(kLossCodes, loss), "unknown loss code " + std::to_string(loss));
    require(output_activation == IDENTITY || output_activation == SIGMOID || output_activation == SOFTMAX,
            "unknown output activation code " + std::to_string(output_activation));
    require(listed(kOptimizerCodes, optimizer), "unknown optimizer code " + std::to_string(optimizer));
    Net net;
    net.loss = loss;
    net.output_activation = output_activation;
    net.seed = seed;
    net.n_params = n_params;
    net.n_stats = n_stats;
    net.penalty_per_weight = penalty_per_weight;
    const double* q = opt_params;
    net.optimizer = {optimizer, q[MOMENTUM], q[DAMPENING], q[NESTEROV] != 0, q[BETA_1], q[BETA_2], q[EPSILON], q[RHO],
                     q[WEIGHT_DECAY], q[CLIPNORM], q[CLIPVALUE]};
    std::vector<ParamSegment> kernels;
    int64_t width = ops[N_IN];
    net.n_features = width;
    net.max_width = width;
    for (int64_t i = 0; i < n_ops; i++) {
        const int64_t* row = ops + i * N_OP_COLUMNS;
        const double* p = op_params + i * N_OP_PARAMS;
        const std::string where = "plan op " + std::to_string(i) + ": ";
        Op op{};
        op.kind = row[KIND];
        op.n_in = row[N_IN];
        op.n_out = row[N_OUT];
        require(listed(kOpKinds, op.kind), where + "unknown kind " + std::to_string(op.kind));
        require(op.n_in >= 1 && op.n_in <= kMaxDim && op.n_out >= 1 && op.n_out <= kMaxDim, where + "bad width");
        require(op.n_in == width, where + "input width does not match the previous op's output");
        require(op.kind == DENSE || op.n_in == op.n_out, where + "only Dense changes the width");
        op.param_off = row[PARAM_OFF];
        op.stat_off = row[STAT_OFF];
        op.act = row[ACT];
        require(row[LAYER] >= 0, where + "negative layer");
        op.layer = static_cast<uint64_t>(row[LAYER]);
        op.use_bias = row[USE_BIAS] != 0;
        switch (op.kind) {
            case DENSE: {
                const int64_t size = op.n_in * op.n_out + (op.use_bias ? op.n_out : 0);
                require(op.param_off >= 0 && op.param_off <= n_params - size, where + "parameters out of range");
                op.l1 = p[L1];
                op.l2 = p[L2];
                if (op.l1 != 0 || op.l2 != 0) net.penalized.push_back(i);
                kernels.push_back({op.param_off, op.param_off + op.n_in * op.n_out, true});
                break;
            }
            case ACTIVATION:
                require(listed(kActivationCodes, op.act) && op.act != SOFTMAX, where + "unknown or output-only activation");
                op.alpha = p[ALPHA];
                break;
            case DROPOUT:
                op.rate = p[RATE];
                require(op.rate >= 0 && op.rate < 1, where + "dropout rate must be in [0, 1)");
                break;
            case BATCHNORM:
                require(op.param_off >= 0 && op.param_off <= n_params - 2 * op.n_in, where + "parameters out of range");
                require(op.stat_off >= 0 && op.stat_off <= n_stats - 2 * op.n_in, where + "statistics out of range");
                op.bn_momentum = p[BN_MOMENTUM];
                op.bn_epsilon = p[BN_EPSILON];
                break;
            default: unknown_code("op kind", op.kind);  // rejected above
        }
        width = op.n_out;
        net.max_width = std::max(net.max_width, width);
        net.ops.push_back(op);
    }
    net.n_outputs = width;
    // A Dense followed by its activation: the Dense's passes apply it (bias_activation and its
    // backward) instead of two sweeps more over the batch; the ACTIVATION op is then skipped.
    for (size_t i = 0; i + 1 < net.ops.size(); i++) {
        Op &dense = net.ops[i], &next = net.ops[i + 1];
        if (dense.kind != DENSE || next.kind != ACTIVATION) continue;
        dense.fused = next.fused = true;
        dense.act = next.act;
        dense.alpha = next.alpha;
    }
    std::sort(kernels.begin(), kernels.end(), [](const ParamSegment& a, const ParamSegment& b) { return a.begin < b.begin; });
    int64_t cursor = 0;
    for (const ParamSegment& k : kernels) {
        if (k.begin > cursor) net.segments.push_back({cursor, k.begin, false});
        const int64_t begin = std::max(k.begin, cursor);
        if (k.end > begin) net.segments.push_back({begin, k.end, true});
        cursor = std::max(cursor, k.end);
    }
    if (cursor < n_params) net.segments.push_back({cursor, n_params, false});
    return net;
}

}  // namespace densefit
