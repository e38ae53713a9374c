"""Stubs of densefit._core, the C++ core (cpp/src/bindings.cpp). Used through
:mod:`densefit.backends.cpp`; the arrays follow :mod:`densefit.plan` (``P`` parameters,
``S`` BatchNorm statistics, ``K`` outputs, ``d`` features, ``E`` epochs).

Arrays of the plan's dtype are checked, never converted: a wrong dtype is a ``TypeError``, a wrong
shape, layout or a read-only state array a ``ValueError`` naming the argument. ``X`` and ``y`` may
have any strides and be read-only (e.g. memory maps); they are read in place and never written.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

class Net:
    """A Plan decoded and validated once (offsets within the buffers, widths chaining, known codes)."""

    def __init__(
        self,
        dtype: npt.DTypeLike,
        ops: npt.ArrayLike,
        op_params: npt.ArrayLike,
        loss: int,
        output_activation: int,
        optimizer: int,
        opt_params: npt.ArrayLike,
        seed: int,
        n_params: int,
        n_stats: int,
        penalty_per_weight: bool = False,
    ) -> None:
        """``ops`` (n_ops, 8) int64, ``op_params`` (≥ n_ops, 4) and ``opt_params`` (10,) float64 as in
        :class:`densefit.plan.Plan`; ``seed`` in [0, 2⁶⁴); ``penalty_per_weight`` as the plan's (each
        batch's penalty divided by its total sample weight, or its row count without weights).
        ``ValueError`` if inconsistent."""
    @property
    def dtype(self) -> np.dtype: ...
    @property
    def n_features(self) -> int: ...
    @property
    def n_outputs(self) -> int: ...
    @property
    def n_params(self) -> int: ...
    @property
    def n_stats(self) -> int: ...
    @property
    def penalty_per_weight(self) -> bool: ...
    def training_pass(self, batch_size: int) -> str:
        """``'linear'``, ``'tiny'``, ``'data_parallel'`` or ``'general'``: the pass train_epochs runs
        batches of ``batch_size`` rows through (sample weights, ``penalty_per_weight`` and the thread
        count do not change it)."""

def train_epochs(
    net: Net,
    params: np.ndarray,
    slots: np.ndarray,
    stats: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    orders: np.ndarray | None,
    lrs: npt.ArrayLike,
    batch_size: int,
    step: int,
    check_finite: bool = False,
    sample_weight: np.ndarray | None = None,
    progress: np.ndarray | None = None,
    cancel: np.ndarray | None = None,
    shuffle_seed: int | None = None,
    first_epoch: int = 0,
) -> npt.NDArray[np.float64]:
    """Run ``E = len(lrs)`` epochs with the GIL released: epoch ``e`` visits ``orders[e]`` (int64
    ``(E, n)``, values in ``[0, n)``; ``None``: rows ``0..n-1`` in order) in slices of ``batch_size``; the first optimizer step is number
    ``step``. With ``shuffle_seed`` (an integer ≥ 0, taken modulo 2⁶⁴; ``orders`` must then be
    ``None``, else ``ValueError``) epoch ``e`` visits :func:`permutation` ``(shuffle_seed,
    first_epoch + e, n)``, computed in the core. Updates ``params`` (P,), ``slots`` (2, P) and ``stats`` (S,) in place (C-contiguous,
    writeable, the plan's dtype) and returns ``(E, 4)``: loss sum, correct, seen, steps. With
    ``check_finite``, each batch of ``X`` is checked as the first epoch reads it; a NaN or infinity
    raises ``ValueError`` naming the row, with ``params``, ``slots`` and ``stats`` restored.

    ``sample_weight``: ``None`` or ``(n,)`` weights (the plan's dtype, C-contiguous, finite, ≥ 0),
    gathered with each batch's rows: a batch's objective is ``Σ wᵢ ℓᵢ / Σw`` plus the penalty
    (divided by ``Σw`` with ``penalty_per_weight``; nothing from a batch whose weights sum to 0
    but, without that flag, the penalty); the loss sum adds each objective times the batch's row
    count, the correct count stays unweighted. ``TypeError`` for another dtype or a non-array,
    ``ValueError`` for another shape, layout or a negative or non-finite weight."""

def permutation(seed: int, epoch: int, n: int) -> npt.NDArray[np.int64]:
    """The ``(n,)`` row order of a shuffled epoch as ``train_epochs`` computes it with
    ``shuffle_seed``: bit for bit :func:`densefit.shuffle.permutation`. For tests."""

def predict(
    net: Net, params: np.ndarray, stats: np.ndarray, X: np.ndarray, batch_size: int, logits: bool = False
) -> np.ndarray:
    """``(n, K)`` outputs in inference mode, ``batch_size`` rows at a time; the plan's output
    activation (sigmoid or softmax) is applied unless ``logits``."""

def loss_and_grad(
    net: Net,
    params: np.ndarray,
    stats: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    step: int,
    sample_weight: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """Loss (incl. penalty) and flat gradient ``(P,)`` of ``X, y`` as one batch in training mode
    (dropout masks of step ``step``), its rows weighted by ``sample_weight`` as a batch of
    :func:`train_epochs` is; nothing is updated."""

class reference:
    """The submodule ``densefit._core.reference``: the plain C++ reference path
    (``cpp/include/densefit/reference.hpp``, plain loops that never call the fast kernels), with
    the arguments, checks and semantics of the module's own :func:`train_epochs`, :func:`predict`
    and :func:`loss_and_grad`. ``tests/test_cpp_reference.py`` compares the two. For tests."""

    @staticmethod
    def train_epochs(
        net: Net,
        params: np.ndarray,
        slots: np.ndarray,
        stats: np.ndarray,
        X: np.ndarray,
        y: np.ndarray,
        orders: np.ndarray | None,
        lrs: npt.ArrayLike,
        batch_size: int,
        step: int,
        check_finite: bool = False,
        sample_weight: np.ndarray | None = None,
        progress: np.ndarray | None = None,
        cancel: np.ndarray | None = None,
        shuffle_seed: int | None = None,
        first_epoch: int = 0,
    ) -> npt.NDArray[np.float64]:
        """:func:`train_epochs` by the reference path."""
    @staticmethod
    def predict(
        net: Net, params: np.ndarray, stats: np.ndarray, X: np.ndarray, batch_size: int, logits: bool = False
    ) -> np.ndarray:
        """:func:`predict` by the reference path."""
    @staticmethod
    def loss_and_grad(
        net: Net,
        params: np.ndarray,
        stats: np.ndarray,
        X: np.ndarray,
        y: np.ndarray,
        step: int,
        sample_weight: np.ndarray | None = None,
    ) -> tuple[float, np.ndarray]:
        """:func:`loss_and_grad` by the reference path."""

def gemm(
    a: np.ndarray,
    b: np.ndarray,
    trans_a: bool = False,
    trans_b: bool = False,
    kernel: str = "auto",
    alpha: float = 1.0,
    beta: float = 0.0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``out = alpha · op(a) @ op(b) + beta · out`` for float32/float64 matrices with contiguous
    rows, with one of the core's kernels: ``'auto'`` (the dispatch training uses, large products
    split over the thread pool), ``'naive'`` (reference), ``'skinny'`` (M or N = 1), ``'blas'``
    (single-threaded OpenBLAS) or ``'block'`` (float32, AVX-512 builds: ``b`` not transposed,
    ``alpha = 1``, ``beta = 0``, N ≥ 16 and K·N ≤ ``build_info()["tuning"]["block_gemm_b_elements"]``).
    ``out`` is updated in place and returned, or allocated when ``None`` (then ``beta`` must be 0).
    For tests and benchmarks."""

def vmath(name: str, x: np.ndarray) -> np.ndarray:
    """One of the core's elementwise functions (cpp/include/densefit/vmath.hpp, the ones its
    activations and losses use) on every element of ``x`` (float32 or float64, any shape): ``'exp'``,
    ``'expm1'``, ``'log1p'``, ``'tanh'``, ``'sigmoid'``, ``'softplus'``, ``'elu'`` (α = 1), ``'gelu'``
    or ``'gelu_derivative'``; a new array of ``x``'s dtype and shape. ``TypeError`` for another dtype,
    ``ValueError`` for another name. For tests."""

def all_finite(a: np.ndarray) -> bool:
    """True iff every element of ``a`` (float32 or float64, at most 2 dimensions, any strides,
    read-only allowed) is finite. ``a`` is read in place, never written, with the GIL released; the
    scan stops at the first block holding a NaN or ±inf. ``TypeError`` for other dtypes,
    ``ValueError`` for more dimensions."""

def set_num_threads(n: int) -> None:
    """Use ``n >= 1`` threads for the core's large GEMMs (its own pool; OpenBLAS stays single-threaded)."""

def get_num_threads() -> int:
    """The number of threads of the core's GEMM pool."""

def build_info() -> dict[str, Any]:
    """``{"native": bool, "openblas": str, "small_gemm_macs": int, "vector_bytes": int,
    "tiny_pass": bool, "block_gemm": bool, "tuning": dict[str, int | float]}``: -march=native or
    portable, the OpenBLAS build, the size below which Dense products run as direct loops, the
    widest vector the core was compiled for, whether TinyPass and block_gemm are in it, and every
    tuning constant of the kernel selection (``cpp/include/densefit/dispatch.hpp``)."""

def codes() -> dict[str, dict[str, int]]:
    """The Plan's integer codes and table columns as the core reads them
    (``cpp/include/densefit/codes.hpp``): ``{concept: {Python constant name: value}}`` for
    ``'activation'``, ``'loss'``, ``'optimizer'`` (``SGD`` is ``optimizers.SGD_``), ``'opt_params'``,
    ``'op_kind'``, ``'ops'`` (op-table columns, with ``N_OP_COLUMNS``) and ``'op_params'``.
    ``tests/test_codes.py`` compares every entry with :mod:`densefit.activations`,
    :mod:`densefit.losses`, :mod:`densefit.optimizers` and :mod:`densefit.plan`."""
