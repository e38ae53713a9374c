// One training batch of a network that is a single Dense layer with one output (d → 1, the output
// activation folded into the loss): W5's logistic regression, W6's linear regression.
//
// The general path reads a batch of X three times: the finite check (from memory), z = x W + b
// and dW = xᵀ dz (from L2), each pass over the whole batch. Here the batch is visited in blocks of
// rows that stay in L1 (dispatch.hpp's linear_block_rows): z of the block (the first read, from
// memory), its finite check through z (see forward: only a row whose z is not finite is scanned),
// the loss of the block (loss.hpp's loss_rows, the general path's formulas) and the block's share
// of dW, read from L1. (What else was tried, with the figures: docs/performance.md.)
//
// Several outputs (K > 1) stay on the general path (not measured fused): the work per row grows
// with K while the read of X does not, and the general path runs one BLAS GEMM over the batch
// where blocks of a few rows would run many small ones.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "dispatch.hpp"
#include "gemm.hpp"
#include "layers.hpp"
#include "loss.hpp"
#include "matrix.hpp"

namespace densefit {

// The layer, in plain pointers: W (d), b (1) or null, and their gradients dW, db (db null when b
// is).
template <class T>
struct LinearLayer {
    const T* W;
    const T* b;
    T* dW;
    T* db;
    int64_t d;
    int64_t loss;
};

template <class T>
class LinearPass {
public:
    // For batches of up to `batch` rows of d features.
    LinearPass(int64_t batch, int64_t d)
        : block_(linear_block_rows(batch, d * static_cast<int64_t>(sizeof(T)))),
          z_(static_cast<size_t>(block_)),
          dz_(static_cast<size_t>(block_)) {}

    // The batch x (m × d, contiguous), y (m × 1, contiguous): writes dW and db (the gradient of the
    // mean loss) and returns the mean loss and the correct count in `value`. With row_scale (m,
    // the rows' w_i / Σw), the weighted mean loss and its gradient instead (weighted_loss_rows,
    // block by block: the blocks' values add up). With check_finite, returns false (value and the
    // gradients unspecified) as soon as a row of x holds a NaN or an infinity.
    bool run(LossValue& value, const LinearLayer<T>& layer, const T* x, const T* y, int64_t m, bool check_finite,
             const T* row_scale = nullptr) {
        const int64_t d = layer.d;
        T* z = z_.data();
        T* dz = dz_.data();
        LossSum total{0, 0};  // unweighted: the loss summed over the rows; weighted: Σ r_i ℓ_i
        for (int64_t r = 0; r < m; r += block_) {
            const int64_t rows = std::min(block_, m - r);
            const T* xb = x + r * d;
            if (!forward(z, layer, xb, rows, check_finite)) return false;
            if (row_scale != nullptr) {
                const LossValue part = weighted_loss_rows(dz, z, y + r, row_scale + r, rows, 1, 1, layer.loss);
                total.sum += part.value;
                total.correct += part.correct;
            } else {
                const LossSum part = loss_rows(dz, z, y + r, rows, 1, 1, layer.loss, m);
                total.sum += part.sum;
                total.correct += part.correct;
            }
            if (r == 0) {  // the first block writes the gradient, the others add theirs
                dense_backward(static_cast<T*>(nullptr), layer.dW, layer.db, dz, xb, layer.W, rows, d, 1);
                continue;
            }
            gemm(layer.dW, 1, xb, d, true, dz, 1, false, d, 1, rows, T(1), T(1));
            if (layer.db != nullptr)
                for (int64_t k = 0; k < rows; k++) layer.db[0] += dz[k];
        }
        value = row_scale != nullptr ? LossValue{total.sum, total.correct} : batch_mean(total, m, 1, layer.loss);
        return true;
    }

private:
    // z (rows) = xb (rows × d) · W + b; with check_finite, false if xb holds a NaN or an infinity.
    //
    // The check looks at z first: a NaN or an infinity in a row makes its z a NaN or an infinity
    // (NaN · w and ±inf · 0 are NaN, ±inf · w ≠ 0 is ±inf, and a sum that holds one of them is
    // not finite), so a finite z proves its row finite and only the rows with a non-finite z are
    // scanned (a finite row may still overflow into an infinite z: the scan tells them apart).
    static bool forward(T* z, const LinearLayer<T>& layer, const T* xb, int64_t rows, bool check_finite) {
        const int64_t d = layer.d;
        if (d < kNarrow) {  // narrow rows: dense_forward's loops down the columns
            dense_forward(z, static_cast<T*>(nullptr), xb, layer.W, layer.b, rows, d, int64_t{1}, int64_t{IDENTITY}, T(0));
        } else {  // a dot product per row, as gemv_rows then add_bias (dense_forward via gemm() is slower)
            const T bias = layer.b != nullptr ? layer.b[0] : T(0);
            for (int64_t k = 0; k < rows; k++) z[k] = dot(xb + k * d, 1, layer.W, 1, d) + bias;
        }
        if (!check_finite || all_finite(z, rows, 1)) return true;
        for (int64_t k = 0; k < rows; k++)
            if (!(z[k] - z[k] == T(0)) && !all_finite(xb + k * d, d, 1)) return false;
        return true;
    }

    int64_t block_;
    std::vector<T> z_, dz_;  // one block's logits and their gradient
};

}  // namespace densefit
