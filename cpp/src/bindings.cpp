// densefit._core: the only file that knows Python. It checks every array it is given (dtype,
// shape, layout, writeability) so the C++ core can trust its pointers, then runs the core with
// the GIL released. User data (X, y, orders) is read in place through its strides, never copied
// up front and never written; the model's state arrays are updated in place. Sample weights are
// user data too, but must be a contiguous array of the plan's dtype, which is what the dispatcher
// makes of the user's weights (validation.as_sample_weight): the core reads them as a plain array.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <sched.h>

#include <algorithm>
#include <cstdint>
#include <thread>
#include <cstdlib>
#include <string>
#include <vector>

#include "densefit/network.hpp"
#include "densefit/reference.hpp"

namespace py = pybind11;
namespace df = densefit;

namespace {

// A decoded Plan plus its dtype: built once per Plan by the Python adapter, reused every call.
struct BoundNet {
    df::Net net;
    bool f64;
};

template <class T>
const char* dtype_name() {
    if constexpr (std::is_same_v<T, int64_t>) return "int64";
    return sizeof(T) == 4 ? "float32" : "float64";
}

// "a float32", "an int64": for messages.
template <class T>
std::string a_dtype() {
    return std::string(std::is_same_v<T, int64_t> ? "an " : "a ") + dtype_name<T>();
}

std::string shape_string(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); i++) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

std::string dims_string(const std::vector<int64_t>& dims) {
    std::string s = "(";
    for (size_t i = 0; i < dims.size(); i++) s += (i ? ", " : "") + (dims[i] < 0 ? std::string("*") : std::to_string(dims[i]));
    return s + (dims.size() == 1 ? ",)" : ")");
}

template <class T>
void require_dtype(const py::array& a, const char* name, const char* why) {
    if (!py::isinstance<py::array_t<T>>(a))
        throw py::type_error(std::string(name) + " must be " + a_dtype<T>() + " array (" + why + "), got dtype " +
                             py::str(a.dtype()).cast<std::string>());
}

// A counter or size from Python (any integer, numpy's included) in [low, 2**62): a TypeError or
// ValueError naming it otherwise, never pybind11's "incompatible function arguments".
int64_t integer_arg(const py::object& value, const char* name, int64_t low) {
    if (py::isinstance<py::bool_>(value) || !PyIndex_Check(value.ptr()))
        throw py::type_error(std::string(name) + " must be an integer, got " +
                             py::str(py::type::of(value).attr("__name__")).cast<std::string>());
    const auto index = py::reinterpret_steal<py::object>(PyNumber_Index(value.ptr()));
    if (!index) throw py::error_already_set();
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
    if (overflow < 0 || (!overflow && v < low))
        throw py::value_error(std::string(name) + " must be >= " + std::to_string(low) + ", got " +
                              py::str(index).cast<std::string>());
    if (overflow > 0 || v >= (int64_t{1} << 62))
        throw py::value_error(std::string(name) + " must be < 2**62, got " + py::str(index).cast<std::string>());
    return v;
}

// A seed from Python: any integer >= 0, taken modulo 2**64 (as shuffle.py's generator takes it).
uint64_t seed_arg(const py::object& value, const char* name) {
    if (py::isinstance<py::bool_>(value) || !PyIndex_Check(value.ptr()))
        throw py::type_error(std::string(name) + " must be an integer, got " +
                             py::str(py::type::of(value).attr("__name__")).cast<std::string>());
    const auto index = py::reinterpret_steal<py::object>(PyNumber_Index(value.ptr()));
    if (!index) throw py::error_already_set();
    if (PyObject_RichCompareBool(index.ptr(), py::int_(0).ptr(), Py_LT) == 1)
        throw py::value_error(std::string(name) + " must be >= 0, got " + py::str(index).cast<std::string>());
    return PyLong_AsUnsignedLongLongMask(index.ptr());
}

// dims: the expected shape, -1 for any size.
void require_shape(const py::array& a, const char* name, const std::vector<int64_t>& dims) {
    bool ok = a.ndim() == static_cast<py::ssize_t>(dims.size());
    for (size_t i = 0; ok && i < dims.size(); i++) ok = dims[i] < 0 || a.shape(i) == dims[i];
    if (!ok)
        throw py::value_error(std::string(name) + " must have shape " + dims_string(dims) + ", got " + shape_string(a));
}

// A user matrix (X or y): the plan's dtype, any strides, possibly read-only.
template <class T>
df::StridedMatrix<T> input_matrix(const py::array& a, const char* name, const std::vector<int64_t>& dims) {
    require_dtype<T>(a, name, "the plan's dtype");
    require_shape(a, name, dims);
    return {static_cast<const char*>(a.data()), a.shape(0), a.shape(1), a.strides(0), a.strides(1)};
}

df::StridedMatrix<int64_t> orders_matrix(const py::array& a, int64_t E, int64_t n) {
    require_dtype<int64_t>(a, "orders", "row indices");
    require_shape(a, "orders", {E, n});
    return {static_cast<const char*>(a.data()), a.shape(0), a.shape(1), a.strides(0), a.strides(1)};
}

// A model-owned state array: exactly the plan's dtype and shape, C-contiguous and aligned.
template <class T>
const T* state_array(const py::array& a, const char* name, const std::vector<int64_t>& dims) {
    require_dtype<T>(a, name, "the plan's dtype");
    require_shape(a, name, dims);
    if (!(a.flags() & py::array::c_style) || reinterpret_cast<uintptr_t>(a.data()) % alignof(T) != 0)
        throw py::value_error(std::string(name) + " must be C-contiguous and aligned");
    return static_cast<const T*>(a.data());
}

// Optional sample weights: None (null), or an (n,) array of the plan's dtype, C-contiguous and
// aligned; read, never written. Any other object is a TypeError naming the argument (never
// pybind11's "incompatible function arguments").
template <class T>
const T* sample_weight_array(const py::object& w, int64_t n, py::array& keep) {
    if (w.is_none()) return nullptr;
    if (!py::isinstance<py::array>(w))
        throw py::type_error(std::string("sample_weight must be None or a ") + dtype_name<T>() +
                             " numpy array, got " + py::str(py::type::of(w)).cast<std::string>());
    keep = py::reinterpret_borrow<py::array>(w);
    return state_array<T>(keep, "sample_weight", {n});
}

// Optional progress counter or cancel flag: None (null), or a writeable int64 array of shape (1,).
// train_epochs stores the rows trained so far into progress after every batch, and polls cancel
// between batches; another Python thread reads or sets them while the GIL is released.
int64_t* progress_array(const py::object& p, py::array& keep, const char* name) {
    if (p.is_none()) return nullptr;
    if (!py::isinstance<py::array>(p))
        throw py::type_error(std::string(name) + " must be None or an int64 numpy array of shape (1,), got " +
                             py::str(py::type::of(p)).cast<std::string>());
    keep = py::reinterpret_borrow<py::array>(p);
    if (!keep.dtype().is(py::dtype::of<int64_t>()) || keep.ndim() != 1 || keep.shape(0) != 1 || !keep.writeable() ||
        reinterpret_cast<uintptr_t>(keep.data()) % alignof(int64_t) != 0)
        throw py::value_error(std::string(name) + " must be a writeable, aligned int64 array of shape (1,)");
    return static_cast<int64_t*>(keep.mutable_data());
}

template <class T>
T* writable_state_array(py::array& a, const char* name, const std::vector<int64_t>& dims) {
    state_array<T>(a, name, dims);
    if (!a.writeable()) throw py::value_error(std::string(name) + " must be writeable: it is updated in place");
    return static_cast<T*>(a.mutable_data());
}

BoundNet make_net(const py::object& dtype, const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& ops,
                  const py::array_t<double, py::array::c_style | py::array::forcecast>& op_params, int64_t loss,
                  int64_t output_activation, int64_t optimizer,
                  const py::array_t<double, py::array::c_style | py::array::forcecast>& opt_params, uint64_t seed,
                  int64_t n_params, int64_t n_stats, bool penalty_per_weight) {
    const py::dtype dt = py::dtype::from_args(dtype);
    if (dt.kind() != 'f' || (dt.itemsize() != 4 && dt.itemsize() != 8))
        throw py::type_error("dtype must be float32 or float64, got " + py::str(dt).cast<std::string>());
    require_shape(ops, "ops", {-1, df::N_OP_COLUMNS});
    require_shape(op_params, "op_params", {-1, df::N_OP_PARAMS});
    if (op_params.shape(0) < ops.shape(0))  // extra rows are ignored, as the reference's zip(ops, op_params) does
        throw py::value_error("op_params must have a row per op: " + std::to_string(ops.shape(0)) + " ops, got " +
                              shape_string(op_params));
    require_shape(opt_params, "opt_params", {df::N_OPT_PARAMS});
    return {df::decode_net(ops.data(), op_params.data(), ops.shape(0), loss, output_activation, optimizer,
                           opt_params.data(), seed, n_params, n_stats, penalty_per_weight),
            dt.itemsize() == 8};
}

// The entry points below run the fast path (network.hpp) or, with Reference, the plain reference
// path (reference.hpp) behind the same argument checks.
template <class T, bool Reference>
py::array_t<double> train_epochs_t(const df::Net& net, py::array& params, py::array& slots, py::array& stats,
                                   const py::array& X, const py::array& y,
                                   const py::object& orders, const py::array_t<double, py::array::c_style | py::array::forcecast>& lrs,
                                   int64_t batch_size, uint64_t step, bool check_finite,
                                   const py::object& sample_weight, const py::object& progress,
                                   const py::object& cancel, const df::Shuffle* shuffle) {
    const int64_t P = net.n_params;
    T* p = writable_state_array<T>(params, "params", {P});
    T* s = writable_state_array<T>(slots, "slots", {2, P});
    T* st = writable_state_array<T>(stats, "stats", {net.n_stats});
    const auto Xm = input_matrix<T>(X, "X", {-1, net.n_features});
    const auto Ym = input_matrix<T>(y, "y", {Xm.rows, -1});
    require_shape(lrs, "lrs", {-1});
    const int64_t E = lrs.shape(0);
    py::array orders_array;           // kept alive while Om points into it
    df::StridedMatrix<int64_t> Om{};  // None: rows 0..n-1 in order every epoch
    if (!orders.is_none() && shuffle != nullptr)
        throw py::value_error("give orders or shuffle_seed, not both: orders must be None when shuffling");
    if (!orders.is_none()) {
        orders_array = py::array(orders);
        Om = orders_matrix(orders_array, E, Xm.rows);
    }
    py::array weights_array;  // kept alive while w points into it
    const T* w = sample_weight_array<T>(sample_weight, Xm.rows, weights_array);
    py::array progress_keep;  // kept alive while counter points into it
    int64_t* counter = progress_array(progress, progress_keep, "progress");
    py::array cancel_keep;  // kept alive while flag points into it
    const int64_t* flag = progress_array(cancel, cancel_keep, "cancel");
    std::vector<double> lr(lrs.data(), lrs.data() + E);  // forcecast made lrs contiguous float64
    py::array_t<double> out({E, int64_t{4}});
    double* o = out.mutable_data();
    int64_t completed;
    {
        py::gil_scoped_release release;
        const df::StridedMatrix<int64_t>* rows = orders.is_none() ? nullptr : &Om;
        if constexpr (Reference) {
            completed = df::reference::train_epochs<T>(o, p, s, s + P, st, net, Xm, Ym, rows, E, lr.data(), batch_size,
                                                       step, check_finite, w, counter, flag, shuffle);
        } else {
            completed = df::train_epochs<T>(o, p, s, s + P, st, net, Xm, Ym, rows, E, lr.data(), batch_size, step,
                                            check_finite, w, counter, flag, shuffle);
        }
    }
    if (completed == E) return out;
    return out[py::slice(0, completed, 1)].cast<py::array_t<double>>();  // cancelled: the completed epochs' rows
}

template <class T, bool Reference>
py::array_t<T> predict_t(const df::Net& net, const py::array& params, const py::array& stats, const py::array& X,
                         int64_t batch_size, bool logits) {
    const T* p = state_array<T>(params, "params", {net.n_params});
    const T* st = state_array<T>(stats, "stats", {net.n_stats});
    const auto Xm = input_matrix<T>(X, "X", {-1, net.n_features});
    py::array_t<T> out({Xm.rows, net.n_outputs});
    T* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        if constexpr (Reference)
            df::reference::predict<T>(o, p, st, net, Xm, batch_size, logits);
        else
            df::predict<T>(o, p, st, net, Xm, batch_size, logits);
    }
    return out;
}

template <class T, bool Reference>
py::tuple loss_and_grad_t(const df::Net& net, const py::array& params, const py::array& stats, const py::array& X,
                          const py::array& y, uint64_t step, const py::object& sample_weight) {
    const T* p = state_array<T>(params, "params", {net.n_params});
    const T* st = state_array<T>(stats, "stats", {net.n_stats});
    const auto Xm = input_matrix<T>(X, "X", {-1, net.n_features});
    const auto Ym = input_matrix<T>(y, "y", {Xm.rows, -1});
    py::array weights_array;
    const T* w = sample_weight_array<T>(sample_weight, Xm.rows, weights_array);
    py::array_t<T> grad(net.n_params);
    T* g = grad.mutable_data();
    double value;
    {
        py::gil_scoped_release release;
        if constexpr (Reference)
            value = df::reference::loss_and_grad<T>(g, p, st, net, Xm, Ym, step, w);
        else
            value = df::loss_and_grad<T>(g, p, st, net, Xm, Ym, step, w);
    }
    return py::make_tuple(value, grad);
}

// Any float array of ndim ≤ 2 as a matrix walked in memory order: the smaller stride is the column step.
template <class T>
bool all_finite_t(const py::array& a) {
    const int64_t nd = a.ndim();
    const int64_t rows = nd == 2 ? a.shape(0) : 1, cols = nd == 0 ? 1 : a.shape(nd - 1);
    const int64_t row_stride = nd == 2 ? a.strides(0) : 0, col_stride = nd == 0 ? 0 : a.strides(nd - 1);
    df::StridedMatrix<T> m{static_cast<const char*>(a.data()), rows, cols, row_stride, col_stride};
    if (rows > 1 && cols > 1 && std::abs(row_stride) < std::abs(col_stride)) m = {m.data, cols, rows, col_stride, row_stride};
    py::gil_scoped_release release;
    return df::all_finite(m);
}

// The leading dimension (elements between rows) of a 2-D array whose rows are contiguous, e.g. a
// C-contiguous array or a column slice of one; rejects any other layout.
int64_t leading_dimension(const py::array& x, const char* name) {
    const int64_t item = x.itemsize(), rows = x.shape(0), cols = x.shape(1);
    const int64_t ld = rows <= 1 || cols == 0 ? std::max<int64_t>(cols, 1) : x.strides(0) / item;
    if ((cols > 1 && rows > 0 && x.strides(1) != item) || (rows > 1 && cols > 0 && (x.strides(0) % item != 0 || ld < std::max<int64_t>(cols, 1))))
        throw py::value_error(std::string(name) + " must have contiguous rows (C-contiguous or a column slice of such an array)");
    return ld;
}

// block_gemm (float, AVX-512 builds) behind gemm()'s signature, for tests: the caller has checked
// block_gemm_applies, alpha = 1, beta = 0 and that B is not transposed.
void block_kernel(float* C, int64_t ldc, const float* A, int64_t lda, bool trans_a, const float* B, int64_t ldb, bool,
                  int64_t M, int64_t N, int64_t K, float, float) {
    df::block_gemm(C, ldc, A, lda, trans_a, B, ldb, M, N, K);
}

#define VMATH_NAMES "'exp', 'expm1', 'log1p', 'tanh', 'sigmoid', 'softplus', 'elu', 'gelu', 'gelu_derivative'"

// out[i] = f(in[i]) for one of vmath.hpp's functions, each a plain loop the compiler vectorizes
// as the core's loops over a batch do.
template <class T, class F>
void vmath_loop(T* __restrict out, const T* __restrict in, int64_t n, F f) {
    for (int64_t i = 0; i < n; i++) out[i] = f(in[i]);
}

template <class T>
py::array vmath_t(const std::string& name, const py::array& x) {
    namespace vm = df::vmath;
    using Loop = void (*)(T*, const T*, int64_t);
    const Loop loop = name == "exp"     ? Loop([](T* o, const T* i, int64_t n) { vmath_loop(o, i, n, [](T v) { return vm::exp(v); }); })
                    : name == "expm1"   ? Loop([](T* o, const T* i, int64_t n) { vmath_loop(o, i, n, [](T v) { return vm::expm1(v); }); })
                    : name == "log1p"   ? Loop([](T* o, const T* i, int64_t n) { vmath_loop(o, i, n, [](T v) { return vm::log1p(v); }); })
                    : name == "exp_nonpositive" ? Loop([](T* o, const T* i, int64_t n) { vmath_loop(o, i, n, [](T v) { return vm::exp_nonpositive(v); }); })
                    : name == "log1p_unit" ? Loop([](T* o, const T* i, int64_t n) { vmath_loop(o, i, n, [](T v) { return vm::log1p_unit(v); }); })
                    : name == "tanh"    ? Loop([](T* o, const T* i, int64_t n) { vmath_loop(o, i, n, [](T v) { return vm::tanh(v); }); })
                    : name == "sigmoid" ? Loop([](T* o, const T* i, int64_t n) { vmath_loop(o, i, n, [](T v) { return vm::sigmoid(v); }); })
                    : name == "softplus" ? Loop([](T* o, const T* i, int64_t n) { vmath_loop(o, i, n, [](T v) { return vm::softplus(v); }); })
                    : name == "elu"     ? Loop([](T* o, const T* i, int64_t n) { vmath_loop(o, i, n, [](T v) { return vm::elu(v, T(1)); }); })
                    : name == "gelu"    ? Loop([](T* o, const T* i, int64_t n) { vmath_loop(o, i, n, [](T v) { return vm::gelu(v); }); })
                    : name == "gelu_derivative"
                        ? Loop([](T* o, const T* i, int64_t n) { vmath_loop(o, i, n, [](T v) { return vm::gelu_derivative(v); }); })
                        : nullptr;
    if (loop == nullptr) throw py::value_error("name must be one of " VMATH_NAMES ", got '" + name + "'");
    const auto in = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(x);
    py::array_t<T> out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    {
        py::gil_scoped_release release;
        loop(out.mutable_data(), in.data(), static_cast<int64_t>(in.size()));
    }
    return out;
}

template <class T>
py::array_t<T> gemm_t(const py::array& a, const py::array& b, bool trans_a, bool trans_b, const std::string& kernel,
                      double alpha, double beta, const py::object& out) {
    require_dtype<T>(a, "a", "the dtype of b");
    require_shape(a, "a", {-1, -1});
    require_shape(b, "b", {-1, -1});
    const int64_t lda = leading_dimension(a, "a"), ldb = leading_dimension(b, "b");
    const int64_t M = trans_a ? a.shape(1) : a.shape(0), K = trans_a ? a.shape(0) : a.shape(1);
    const int64_t N = trans_b ? b.shape(0) : b.shape(1);
    if ((trans_b ? b.shape(1) : b.shape(0)) != K) throw py::value_error("inner dimensions of op(a) and op(b) differ");
    using Kernel = void (*)(T*, int64_t, const T*, int64_t, bool, const T*, int64_t, bool, int64_t, int64_t, int64_t, T, T);
    Kernel run = kernel == "auto" ? Kernel(&df::gemm<T>) : kernel == "naive" ? Kernel(&df::gemm_naive<T>)
               : kernel == "skinny" ? Kernel(&df::gemm_skinny<T>) : kernel == "blas" ? Kernel(&df::blas_gemm) : nullptr;
    if constexpr (std::is_same_v<T, float>) {
        if (kernel == "block") {
            if (!df::kBlockGemmBuilt) throw py::value_error("the 'block' kernel is built for AVX-512 only (build_info()['block_gemm'])");
            if (trans_b || alpha != 1 || beta != 0 || !df::block_gemm_applies(M, N, K))
                throw py::value_error("the 'block' kernel needs b not transposed, alpha = 1, beta = 0, N >= 16 and K·N <= " +
                                      std::to_string(df::block_gemm_b_limit(M)) + " (for " + std::to_string(M) +
                                      " rows)");
            run = &block_kernel;
        }
    }
    if (run == nullptr)
        throw py::value_error("kernel must be 'auto', 'naive', 'skinny', 'blas' or 'block' (float32), got '" +
                              kernel + "'");
    if (kernel == "skinny" && !((M == 1 || N == 1) && M >= 1 && N >= 1 && K >= 1))
        throw py::value_error("the 'skinny' kernel needs M == 1 or N == 1 (and no empty dimension)");
    py::array_t<T> c;
    if (out.is_none()) {
        if (beta != 0) throw py::value_error("beta != 0 needs out (the starting C)");
        c = py::array_t<T>({M, N});  // uninitialized: beta = 0 must not read it
    } else {
        c = out.cast<py::array>();
        require_dtype<T>(c, "out", "the dtype of b");
        require_shape(c, "out", {M, N});
        if (!c.writeable()) throw py::value_error("out must be writable");
    }
    const int64_t ldc = leading_dimension(c, "out");
    const T* A = static_cast<const T*>(a.data());
    const T* B = static_cast<const T*>(b.data());
    T* C = c.mutable_data();
    {
        py::gil_scoped_release release;
        run(C, ldc, A, lda, trans_a, B, ldb, trans_b, M, N, K, T(alpha), T(beta));
    }
    return c;
}

// DENSEFIT_NUM_THREADS, else OMP_NUM_THREADS (a positive integer), else the CPUs this process may use.
int default_threads() {
    for (const char* name : {"DENSEFIT_NUM_THREADS", "OMP_NUM_THREADS"}) {
        const char* value = std::getenv(name);
        if (value == nullptr || *value == '\0') continue;
        char* end = nullptr;
        const long n = std::strtol(value, &end, 10);
        if (*end == '\0' && n >= 1 && n <= 1024) return static_cast<int>(n);
    }
    cpu_set_t cpus;
    if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0) return std::max(1, CPU_COUNT(&cpus));
    return std::max(1u, std::thread::hardware_concurrency());
}

// train_epochs, predict and loss_and_grad on mod: the fast path's, or with Reference the reference
// path's (the _core.reference submodule), with the same arguments and checks.
template <bool Reference>
void def_entry_points(py::module_& mod) {
    mod.def(
        "train_epochs",
        [](const BoundNet& b, py::array params, py::array slots, py::array stats, const py::array& X, const py::array& y,
           const py::object& orders, const py::array_t<double, py::array::c_style | py::array::forcecast>& lrs,
           const py::object& batch_size, const py::object& step, bool check_finite, const py::object& sample_weight,
           const py::object& progress, const py::object& cancel, const py::object& shuffle_seed,
           const py::object& first_epoch) -> py::object {
            const int64_t size = integer_arg(batch_size, "batch_size", 1);
            const auto t = static_cast<uint64_t>(integer_arg(step, "step", 0));
            df::Shuffle spec{};
            const df::Shuffle* shuffle = nullptr;
            if (!shuffle_seed.is_none()) {
                spec = {seed_arg(shuffle_seed, "shuffle_seed"),
                        static_cast<uint64_t>(integer_arg(first_epoch, "first_epoch", 0))};
                shuffle = &spec;
            }
            if (b.f64)
                return train_epochs_t<double, Reference>(b.net, params, slots, stats, X, y, orders, lrs, size, t,
                                                         check_finite, sample_weight, progress, cancel, shuffle);
            return train_epochs_t<float, Reference>(b.net, params, slots, stats, X, y, orders, lrs, size, t,
                                                    check_finite, sample_weight, progress, cancel, shuffle);
        },
        py::arg("net"), py::arg("params"), py::arg("slots"), py::arg("stats"), py::arg("X"), py::arg("y"),
        py::arg("orders"), py::arg("lrs"), py::arg("batch_size"), py::arg("step"), py::arg("check_finite") = false,
        py::arg("sample_weight") = py::none(), py::arg("progress") = py::none(), py::arg("cancel") = py::none(),
        py::arg("shuffle_seed") = py::none(), py::arg("first_epoch") = 0,
        "Run len(lrs) epochs; update params, slots and stats in place; return (E, 4) float64 stats. orders: "
        "None (rows in order, or shuffled when shuffle_seed is given) or (E, n) int64 row indices. "
        "shuffle_seed (with orders None): epoch e visits permutation(shuffle_seed, first_epoch + e, n). With "
        "check_finite, a NaN or infinity in a row of X the first epoch reads raises ValueError and leaves the "
        "state as it was. sample_weight: None or (n,) weights (the plan's dtype, C-contiguous, finite, >= 0), "
        "gathered with each batch's rows. progress: None or an int64 array of shape (1,) that receives the rows "
        "trained so far in the call after every batch. cancel: None or an int64 array of shape (1,) polled "
        "between batches: once nonzero, the epoch under way is undone and only the completed epochs' rows are "
        "returned.");

    mod.def(
        "predict",
        [](const BoundNet& b, const py::array& params, const py::array& stats, const py::array& X,
           const py::object& batch_size, bool logits) -> py::object {
            const int64_t size = integer_arg(batch_size, "batch_size", 1);
            if (b.f64) return predict_t<double, Reference>(b.net, params, stats, X, size, logits);
            return predict_t<float, Reference>(b.net, params, stats, X, size, logits);
        },
        py::arg("net"), py::arg("params"), py::arg("stats"), py::arg("X"), py::arg("batch_size"),
        py::arg("logits") = false, "Inference-mode outputs (n, K); the output activation unless logits.");

    mod.def(
        "loss_and_grad",
        [](const BoundNet& b, const py::array& params, const py::array& stats, const py::array& X, const py::array& y,
           const py::object& step, const py::object& sample_weight) -> py::tuple {
            const auto t = static_cast<uint64_t>(integer_arg(step, "step", 0));
            if (b.f64) return loss_and_grad_t<double, Reference>(b.net, params, stats, X, y, t, sample_weight);
            return loss_and_grad_t<float, Reference>(b.net, params, stats, X, y, t, sample_weight);
        },
        py::arg("net"), py::arg("params"), py::arg("stats"), py::arg("X"), py::arg("y"), py::arg("step"),
        py::arg("sample_weight") = py::none(),
        "Loss (incl. penalty) and flat gradient of one batch in training mode, its rows weighted by "
        "sample_weight (None or (n,), as for train_epochs); nothing is updated.");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "densefit's C++ core: whole training epochs, inference and single-batch gradients of a Plan.";

    py::class_<BoundNet>(m, "Net", "A densefit Plan decoded and validated once, reusable across calls.")
        .def(py::init(&make_net), py::arg("dtype"), py::arg("ops"), py::arg("op_params"), py::arg("loss"),
             py::arg("output_activation"), py::arg("optimizer"), py::arg("opt_params"), py::arg("seed"),
             py::arg("n_params"), py::arg("n_stats"), py::arg("penalty_per_weight") = false)
        .def_property_readonly("dtype", [](const BoundNet& b) { return py::dtype(b.f64 ? "float64" : "float32"); })
        .def_property_readonly("n_features", [](const BoundNet& b) { return b.net.n_features; })
        .def_property_readonly("n_outputs", [](const BoundNet& b) { return b.net.n_outputs; })
        .def_property_readonly("n_params", [](const BoundNet& b) { return b.net.n_params; })
        .def_property_readonly("n_stats", [](const BoundNet& b) { return b.net.n_stats; })
        .def_property_readonly("penalty_per_weight", [](const BoundNet& b) { return b.net.penalty_per_weight; })
        .def(
            "training_pass",
            [](const BoundNet& b, int64_t batch_size) {
                if (batch_size < 1) throw py::value_error("batch_size must be >= 1");
                const df::TrainingPass pass = b.f64 ? df::training_pass<double>(b.net, batch_size)
                                                    : df::training_pass<float>(b.net, batch_size);
                switch (pass) {
                    case df::TrainingPass::LINEAR: return "linear";
                    case df::TrainingPass::TINY: return "tiny";
                    case df::TrainingPass::DATA_PARALLEL: return "data_parallel";
                    default: return "general";
                }
            },
            py::arg("batch_size"),
            "Which pass train_epochs runs batches of batch_size rows through: 'linear' (one Dense "
            "layer with one output), 'tiny' (Dense layers under 8 wide, batches under 8 rows), "
            "'data_parallel' (batches cut into chunks of rows over the threads, the same bits for any "
            "thread count) or 'general'. Sample weights and penalty_per_weight do not change it.");

    def_entry_points<false>(m);
    py::module_ reference = m.def_submodule(
        "reference",
        "The plain C++ reference path (cpp/include/densefit/reference.hpp): train_epochs, predict and "
        "loss_and_grad with the arguments, checks and semantics of densefit._core's, computed by plain loops "
        "that never call the fast kernels. For tests.");
    def_entry_points<true>(reference);

    m.def(
        "permutation",
        [](const py::object& seed, const py::object& epoch, const py::object& n) {
            const uint64_t s = seed_arg(seed, "seed");
            const auto e = static_cast<uint64_t>(integer_arg(epoch, "epoch", 0));
            const int64_t rows = integer_arg(n, "n", 0);
            py::array_t<int64_t> out(rows);
            int64_t* o = out.mutable_data();
            {
                py::gil_scoped_release release;
                df::EpochOrder order(rows);
                const int64_t* computed = order.compute(s, e);
                std::copy(computed, computed + rows, o);
            }
            return out;
        },
        py::arg("seed"), py::arg("epoch"), py::arg("n"),
        "The int64 (n,) row order of a shuffled epoch, as train_epochs computes it with shuffle_seed (the "
        "generator of densefit.shuffle). For tests.");

    m.def(
        "gemm",
        [](const py::array& a, const py::array& b, bool trans_a, bool trans_b, const std::string& kernel, double alpha,
           double beta, const py::object& out) -> py::object {
            if (py::isinstance<py::array_t<double>>(b)) return gemm_t<double>(a, b, trans_a, trans_b, kernel, alpha, beta, out);
            require_dtype<float>(b, "b", "float32 or float64");
            return gemm_t<float>(a, b, trans_a, trans_b, kernel, alpha, beta, out);
        },
        py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("kernel") = "auto",
        py::arg("alpha") = 1.0, py::arg("beta") = 0.0, py::arg("out") = py::none(),
        "out = alpha · op(a) @ op(b) + beta · out with one of the core's GEMM kernels ('auto', 'naive', "
        "'skinny' (M or N = 1), 'blas', 'block' (float32, AVX-512 builds)); a, b and out need contiguous rows (column slices test leading dimensions); out is "
        "updated in place and returned, or allocated when None (then beta must be 0). For tests and benchmarks.");

    m.def(
        "vmath",
        [](const std::string& name, const py::array& x) -> py::array {
            if (py::isinstance<py::array_t<double>>(x)) return vmath_t<double>(name, x);
            require_dtype<float>(x, "x", "float32 or float64");
            return vmath_t<float>(name, x);
        },
        py::arg("name"), py::arg("x"),
        "One of vmath.hpp's elementwise functions (" VMATH_NAMES ") on every element of x "
        "(float32 or float64, any shape), as a new array of x's dtype and shape; elu with alpha = 1. For tests.");

    m.def(
        "all_finite",
        [](const py::array& a) {
            if (a.ndim() > 2) throw py::value_error("a must have at most 2 dimensions, got shape " + shape_string(a));
            if (py::isinstance<py::array_t<double>>(a)) return all_finite_t<double>(a);
            require_dtype<float>(a, "a", "float32 or float64");
            return all_finite_t<float>(a);
        },
        py::arg("a"),
        "True iff every element of a (float32/float64, ndim ≤ 2, any strides, read-only is fine) is finite; "
        "a is never written and the GIL is released.");

    // OpenBLAS runs single-threaded; the core splits large GEMMs over its own pool (parallel.hpp).
    scipy_openblas_set_num_threads(1);
    df::ThreadPool::instance().set_threads(default_threads());
    m.def(
        "set_num_threads",
        [](int n) {
            if (n < 1) throw py::value_error("the number of threads must be >= 1, got " + std::to_string(n));
            py::gil_scoped_release release;  // waits for a training running in another Python thread
            df::ThreadPool::instance().set_threads(n);
        },
        py::arg("n"),
        "Use at most n threads for the core's large GEMMs (default: DENSEFIT_NUM_THREADS, else OMP_NUM_THREADS, "
        "else the CPUs this process may run on).");
    m.def("get_num_threads", []() { return df::ThreadPool::instance().threads(); },
          "The number of threads the core's large GEMMs use.");

    m.def(
        "build_info",
        []() {
            py::dict info;
#ifdef DENSEFIT_NATIVE
            info["native"] = true;
#else
            info["native"] = false;
#endif
            info["openblas"] = std::string(scipy_openblas_get_config());
            info["small_gemm_macs"] = df::kSmallGemmMacs;
            info["vector_bytes"] = df::kVectorBytes;
            info["tiny_pass"] = df::kTinyPassBuilt;
            info["block_gemm"] = df::kBlockGemmBuilt;
            py::dict tuning;  // every constant of dispatch.hpp
            tuning["narrow"] = df::kNarrow;
            tuning["small_gemm_macs"] = df::kSmallGemmMacs;
            tuning["block_gemm_b_elements"] = df::kBlockGemmBElements;
            tuning["block_gemm_few_rows_b_elements"] = df::kBlockGemmFewRowsBElements;
            tuning["sparse_share"] = df::kSparseShare;
            tuning["transpose_b_elements"] = df::kTransposeBElements;
            tuning["parallel_gemm_macs"] = df::kParallelGemmMacs;
            tuning["parallel_update_params"] = df::kParallelUpdateParams;
            tuning["data_parallel_update_params"] = df::kDataParallelUpdateParams;
            tuning["prefetch_batch_bytes"] = df::kPrefetchBatchBytes;
            tuning["linear_block_bytes"] = df::kLinearBlockBytes;
            tuning["tiny_width"] = df::kTinyWidth;
            tuning["bce_inline_math_elements"] = df::kBceInlineMathElements;
            tuning["softmax_inline_math_elements"] = df::kSoftmaxInlineMathElements;
            tuning["parallel_sweep_elements"] = df::kParallelSweepElements;
            tuning["data_parallel_rows"] = df::kDataParallelRows;
            tuning["data_parallel_min_rows"] = df::kDataParallelMinRows;
            tuning["data_parallel_min_row_macs"] = df::kDataParallelMinRowMacs;
            tuning["data_parallel_max_rows"] = df::kDataParallelMaxRows;
            tuning["data_parallel_max_grad_elements"] = df::kDataParallelMaxGradElements;
            tuning["data_parallel_reduce_params"] = df::kDataParallelReduceParams;
            info["tuning"] = tuning;
            return info;
        },
        "How this core was built: -march=native or portable, the OpenBLAS build, the small-GEMM "
        "threshold, the widest vector it was compiled for, whether TinyPass and block_gemm are in it, "
        "and every tuning constant of the kernel selection (cpp/include/densefit/dispatch.hpp) under 'tuning'.");

    m.def(
        "codes",
        []() {
            py::dict all;
            for (const df::CodeTable& table : df::kCodeTables) {
                py::dict entries;
                for (int i = 0; i < table.count; i++) entries[table.entries[i].name] = table.entries[i].code;
                all[table.concept] = entries;
            }
            return all;
        },
        "The Plan's integer codes and table columns as the core reads them (cpp/include/densefit/codes.hpp): "
        "{concept: {Python constant name: value}} for 'activation', 'loss', 'optimizer', 'opt_params', "
        "'op_kind', 'ops' (op-table columns) and 'op_params'.");
}
