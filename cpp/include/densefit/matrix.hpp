// Views over user data. Everything the core allocates is a contiguous row-major block addressed by
// a plain pointer plus sizes (llm.c style); only user arrays (X, y, orders) can have any strides,
// be read-only or unaligned, so they are read through StridedMatrix and gathered into the
// workspace before any math touches them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace densefit {

// A read-only (rows × cols) matrix with arbitrary byte strides (numpy's layout model).
template <class T>
struct StridedMatrix {
    const char* data;
    int64_t rows, cols;
    int64_t row_stride, col_stride;  // bytes, possibly negative or zero

    // memcpy because numpy arrays may be unaligned; it compiles to a plain load.
    T at(int64_t r, int64_t c) const {
        T v;
        std::memcpy(&v, data + r * row_stride + c * col_stride, sizeof(T));
        return v;
    }

    // Row r as a contiguous aligned array, or nullptr when its elements are strided or unaligned.
    const T* row(int64_t r) const {
        const char* p = data + r * row_stride;
        const bool ok = col_stride == static_cast<int64_t>(sizeof(T)) && reinterpret_cast<uintptr_t>(p) % alignof(T) == 0;
        return ok ? reinterpret_cast<const T*>(p) : nullptr;
    }

    // The rows as a contiguous row-major block, or nullptr when the layout is anything else.
    const T* contiguous() const {
        bool dense = col_stride == static_cast<int64_t>(sizeof(T)) &&
                     (rows <= 1 || row_stride == cols * static_cast<int64_t>(sizeof(T)));
        bool aligned = reinterpret_cast<uintptr_t>(data) % alignof(T) == 0;
        return dense && aligned ? reinterpret_cast<const T*>(data) : nullptr;
    }
};

// out (cols) = src row r.
template <class T>
inline void copy_row(T* out, const StridedMatrix<T>& src, int64_t r) {
    const char* row = src.data + r * src.row_stride;
    if (src.col_stride == static_cast<int64_t>(sizeof(T))) {
        std::memcpy(out, row, static_cast<size_t>(src.cols) * sizeof(T));
        return;
    }
    for (int64_t c = 0; c < src.cols; c++) std::memcpy(out + c, row + c * src.col_stride, sizeof(T));
}

// out (m × cols) = the rows index[0..m) of src, contiguous.
template <class T>
inline void gather_rows(T* out, const StridedMatrix<T>& src, const int64_t* index, int64_t m) {
    if (src.cols == 1) {  // one value a row (a target column, one feature): a load each, not a memcpy call
        const char* data = src.data;  // (locals: the stores may alias src, which would be reloaded per row)
        const int64_t stride = src.row_stride;
        for (int64_t k = 0; k < m; k++) std::memcpy(out + k, data + index[k] * stride, sizeof(T));
        return;
    }
    for (int64_t k = 0; k < m; k++) copy_row(out + k * src.cols, src, index[k]);
}

// True iff x[0], x[stride], …, x[(n-1)·stride] are all finite. x - x is 0 for a finite x and NaN
// for ±inf or NaN: the test has no branch, so each block is an OR-reduction (into an integer as
// wide as T: GCC does not vectorize a bool one) that vectorizes when stride is 1 and the scan runs
// at memory bandwidth; it stops at the first block holding a non-finite value.
template <class T>
bool all_finite(const T* x, int64_t n, int64_t stride) {
    using Flag = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
    constexpr int64_t kBlock = 1024;
    for (int64_t start = 0; start < n; start += kBlock) {
        const int64_t end = std::min(n, start + kBlock);
        Flag bad = 0;
        if (stride == 1) {
            for (int64_t i = start; i < end; i++) bad |= !(x[i] - x[i] == T(0));
        } else {
            for (int64_t i = start; i < end; i++) bad |= !(x[i * stride] - x[i * stride] == T(0));
        }
        if (bad) return false;
    }
    return true;
}

// The same over a strided matrix: as one run when it is contiguous, row by row when its elements
// are aligned, else element by element through memcpy.
template <class T>
bool all_finite(const StridedMatrix<T>& a) {
    if (const T* dense = a.contiguous()) return all_finite(dense, a.rows * a.cols, 1);
    constexpr int64_t size = sizeof(T);
    if (reinterpret_cast<uintptr_t>(a.data) % alignof(T) == 0 && a.row_stride % size == 0 && a.col_stride % size == 0) {
        for (int64_t r = 0; r < a.rows; r++) {
            if (!all_finite(reinterpret_cast<const T*>(a.data + r * a.row_stride), a.cols, a.col_stride / size))
                return false;
        }
        return true;
    }
    for (int64_t r = 0; r < a.rows; r++) {
        for (int64_t c = 0; c < a.cols; c++) {
            const T v = a.at(r, c);
            if (!(v - v == T(0))) return false;
        }
    }
    return true;
}

}  // namespace densefit
