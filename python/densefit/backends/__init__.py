"""The one place backends are found, chosen and called.

Every backend is a module with the same three functions (the numpy module is the reference):

- ``train_epochs(plan, state, X, y, orders, lrs, batch_size, sample_weight=None) -> stats``: for each epoch ``e``,
  visit ``orders[e]`` (``orders`` is ``(E, n)`` row indices, or ``None`` for rows ``0..n-1`` in
  order, which costs no memory, or a :class:`densefit.shuffle.Shuffle` ``(seed, first_epoch)``:
  then epoch ``e`` visits ``shuffle.permutation(seed, first_epoch + e, n)``, which every backend
  computes itself, one epoch at a time)
  in consecutive slices of ``batch_size`` (the last, smaller slice kept) and
  take one optimizer step per slice with learning rate ``lrs[e]``; the first step uses step
  counter ``state.step``. Updates ``state.params``, ``state.slots`` and ``state.stats`` in place
  (never ``state.step``/``state.epoch``: :func:`train_epochs` here does that) and returns a
  float64 array ``(E, 4)`` of :data:`LOSS_SUM`, :data:`CORRECT`, :data:`SEEN`, :data:`STEPS`.

  ``sample_weight`` (``None``, or ``(n,)`` in the plan's dtype, contiguous, finite, ≥ 0) weights
  each batch's rows: with ``W = Σ_batch wᵢ`` (summed in float64) the batch objective is
  ``Σ wᵢ ℓᵢ / W + π`` where ``ℓᵢ`` is row i's loss and ``π`` the penalty, divided by ``W`` when
  ``plan.penalty_per_weight`` (``W`` is the row count ``m`` without weights). A batch with
  ``W = 0`` contributes no loss, no gradient and, per weight, no penalty. ``LOSS_SUM`` adds
  ``m ×`` each batch's objective (batches weigh by their row count, as Keras' and scikit-learn's
  epoch losses do); ``CORRECT`` counts unweighted. ``progress`` (``None``, or an ``(1,)`` int64
  array) receives the rows trained so far in the call after every batch; another thread may
  read it while the call runs (the cpp and numba backends release the GIL). ``cancel`` (the
  same kind of array) is polled between batches: once nonzero, the backend undoes the epoch under
  way (state as that epoch began) and returns only the completed epochs' rows, so the counters
  advance by those.
- ``predict(plan, state, X, batch_size, logits=False) -> (n, K)``: inference mode.
- ``loss_and_grad(plan, state, X, y) -> (loss, grad)``: one batch in training mode, no update of
  anything (BatchNorm running statistics included); ``grad`` has the flat parameter layout.

``X`` is 2-D in the plan's dtype (any strides, possibly read-only); ``y`` is 2-D in the plan's
dtype, ``(n, K)`` or ``(n, 1)`` class indices for categorical cross-entropy.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from types import ModuleType

import numpy as np

from .. import validation  # (a module: validation imports all_finite from here)
from .._native import core as _compiled

NAMES = ("cpp", "numba", "numpy")
_MODULES = {"cpp": "densefit.backends.cpp", "numba": "densefit.backends.numba_", "numpy": "densefit.backends.numpy_"}
LOSS_SUM, CORRECT, SEEN, STEPS = range(4)

_loaded: dict[str, ModuleType] = {}
_errors: dict[str, str] = {}
_warned = False


def _load(name: str) -> ModuleType | None:
    if name not in _loaded and name not in _errors:
        try:
            _loaded[name] = importlib.import_module(_MODULES[name])
        except Exception as exc:  # any import failure makes the backend unavailable, with its reason
            _errors[name] = f"{type(exc).__name__}: {exc}"
    return _loaded.get(name)


def available_backends() -> list[str]:
    """The backends that import on this machine, fastest first."""
    return [name for name in NAMES if _load(name) is not None]


def _auto() -> str:
    requested = os.environ.get("DENSEFIT_BACKEND", "").strip().lower()
    if requested and requested != "auto":
        return resolve(requested)
    for name in NAMES:
        if _load(name) is not None:
            return name
    raise RuntimeError("no densefit backend could be loaded: " + "; ".join(f"{k}: {v}" for k, v in _errors.items()))


def resolve(name: str) -> str:
    """Turn ``"auto"`` or a backend name into an available backend name, or raise."""
    global _warned
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, got {type(name).__name__}")
    name = name.strip().lower()
    if name == "auto":
        chosen = _auto()
        if chosen != NAMES[0] and not _warned and not os.environ.get("DENSEFIT_BACKEND"):
            _warned = True
            skipped = [f"{n}: {_errors[n]}" for n in NAMES[:NAMES.index(chosen)] if n in _errors]
            warnings.warn(f"densefit is using the {chosen} backend; unavailable: " + "; ".join(skipped), RuntimeWarning,
                          stacklevel=3)
        return chosen
    if name not in NAMES:
        raise ValueError(f"unknown backend {name!r}; expected 'auto' or one of {list(NAMES)}")
    if _load(name) is None:
        raise RuntimeError(f"backend {name!r} is not available here ({_errors[name]}); available: {available_backends()}")
    return name


def get(name: str) -> ModuleType:
    """The module of backend ``name`` (after :func:`resolve`)."""
    return _loaded[resolve(name)]


def backend_info() -> dict:
    """Which backend ``"auto"`` picks and why, what is available, and why the rest is not."""
    available = available_backends()
    env = os.environ.get("DENSEFIT_BACKEND")
    default = _auto() if available else None
    if env and env.strip().lower() != "auto":
        reason = f"DENSEFIT_BACKEND={env}"
    elif default == NAMES[0]:
        reason = "the fastest backend is available"
    else:
        reason = "fell back: " + "; ".join(f"{n} unavailable ({_errors[n]})" for n in NAMES if n in _errors)
    return {"default": default, "reason": reason, "available": available,
            "unavailable": {n: _errors[n] for n in NAMES if n in _errors}}


_FINITE_CHUNK = 1 << 20  # elements checked per numpy pass, so the check never allocates much


def all_finite(a: np.ndarray) -> bool:
    """True if every element is finite: the compiled core's scan (memory bandwidth, stops at the
    first bad value) when it loads, else numpy over row blocks so memory stays flat."""
    if a.size == 0:
        return True
    compiled = _compiled()
    if compiled is not None and a.dtype in (np.float32, np.float64):
        return bool(compiled.all_finite(a))
    rows = max(1, _FINITE_CHUNK // max(1, a.size // max(1, a.shape[0])))
    return all(np.isfinite(a[start:start + rows]).all() for start in range(0, a.shape[0], rows))


def score_logits(plan, z: np.ndarray, y: np.ndarray, row_weights: np.ndarray | None = None) -> tuple[float, int]:
    """The loss summed over rows (weighted by ``row_weights``, float64) and the correct count of
    logits ``z`` that any backend's ``predict(..., logits=True)`` gave: ``evaluate`` scores every
    backend's outputs with the reference formulas, so its numbers differ between backends only by
    their logits."""
    return _reference().loss_sum_and_correct(plan.loss, z, y, row_weights)


def output_activation(plan, z: np.ndarray) -> np.ndarray:
    """The plan's output activation (sigmoid, softmax or identity) applied to logits ``z``."""
    return _reference().output_activation(plan, z)


def _reference() -> ModuleType:
    module = _load("numpy")
    if module is None:
        raise RuntimeError(f"the numpy reference backend does not load: {_errors['numpy']}")
    return module


_blas_libraries = None


def _blas_threads(module: ModuleType):
    """A context in which the BLAS libraries loaded in the process (numpy's and scipy's OpenBLAS,
    which numpy's matmul and numba's np.dot call) use at most :func:`densefit.get_num_threads`
    threads, for a backend whose ``LIMITS_BLAS_THREADS`` is true (numba, numpy), so that
    ``set_num_threads`` governs every backend. A no-op (no cost) while every library already uses
    no more. OpenBLAS's threads wait for each other on every call and spin while another process
    holds a core: on a loaded machine set_num_threads(1) made these backends 11-24x faster, on an
    idle one their threads make batch-sized products 1.2-1.9x faster (BENCHMARKS.md). The cpp backend
    runs its OpenBLAS on one thread and splits work over its own. threadpoolctl's controller is made
    once, on first use (after the backend module has loaded its BLAS)."""
    global _blas_libraries
    if not getattr(module, "LIMITS_BLAS_THREADS", False):
        return contextlib.nullcontext()
    if _blas_libraries is None:
        from threadpoolctl import ThreadpoolController
        _blas_libraries = ThreadpoolController().select(user_api="blas")
    from .. import threads  # (a module: threads imports validation, which imports this one)
    limit = threads.get_num_threads()
    if all(library.num_threads <= limit for library in _blas_libraries.lib_controllers):
        return contextlib.nullcontext()
    return _blas_libraries.limit(limits=limit)


def train_epochs(name: str, plan, state, X, y, orders, lrs: np.ndarray, batch_size: int,
                 check_finite: bool = False, sample_weight: np.ndarray | None = None,
                 progress: np.ndarray | None = None, cancel: np.ndarray | None = None) -> np.ndarray:
    """Run ``len(lrs)`` epochs on backend ``name`` and advance the state's counters.

    ``check_finite``: raise ``ValueError`` if ``X`` holds a NaN or infinity, with the state
    untouched. A backend with ``CHECKS_FINITE_IN_PASS`` checks each batch as its first epoch reads
    it (one pass over ``X`` instead of two); for the others ``X`` is scanned here first.
    """
    module = get(name)
    kwargs = {}
    if sample_weight is not None:
        kwargs["sample_weight"] = validation.as_sample_weight(sample_weight, X.shape[0], plan.dtype)
    for what, flag in (("progress", progress), ("cancel", cancel)):
        if flag is not None:
            if not (isinstance(flag, np.ndarray) and flag.dtype == np.int64 and flag.shape == (1,)
                    and flag.flags.writeable):
                raise ValueError(f"{what} must be a writeable int64 numpy array of shape (1,)")
            kwargs[what] = flag
    if check_finite and getattr(module, "CHECKS_FINITE_IN_PASS", False):
        kwargs["check_finite"] = True
    elif check_finite and not all_finite(X):
        raise ValueError("X contains NaN or infinity")
    with _blas_threads(module):
        stats = module.train_epochs(plan, state, X, y, orders, np.asarray(lrs, dtype=np.float64), batch_size,
                                    **kwargs)
    state.step += int(stats[:, STEPS].sum())
    state.epoch += stats.shape[0]  # fewer than len(lrs) when cancelled
    return stats


def predict(name: str, plan, state, X, batch_size: int, logits: bool = False) -> np.ndarray:
    """Backend ``name``'s inference pass (see the module docstring)."""
    module = get(name)
    with _blas_threads(module):
        return module.predict(plan, state, X, batch_size, logits=logits)


def loss_and_grad(name: str, plan, state, X, y, sample_weight: np.ndarray | None = None):
    """Backend ``name``'s ``(loss, grad)`` of one training-mode batch (see the module docstring)."""
    module = get(name)
    kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
    with _blas_threads(module):
        return module.loss_and_grad(plan, state, X, y, **kwargs)
