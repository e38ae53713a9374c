// Views over user data. Everything the core allocates is a contiguous row-major block addressed by
// a plain pointer plus sizes (llm.c style); only user arrays (X, y, orders) can have any strides,
// be read-only or unaligned, so they are read through StridedMatrix and gathered into the
// workspace before any math touches them.
#pragma once

#include <cstdint>
#include <cstring>

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
    for (int64_t k = 0; k < m; k++) copy_row(out + k * src.cols, src, index[k]);
}

}  // namespace densefit
