"""The number of threads the compiled core may use.

The core runs OpenBLAS single-threaded and splits each large GEMM (≥ 2²¹ multiply-adds) into
independent blocks over its own threads, and a batch of a mid-sized network into chunks over
them (the data-parallel pass); smaller work stays on one core. The default is
``DENSEFIT_NUM_THREADS``, else ``OMP_NUM_THREADS``, else the CPUs this process may run on.

The numba and numpy backends run on one thread; during their calls the BLAS they call (numpy's
and scipy's OpenBLAS) uses at most this many threads too (``backends._blas_threads``); outside
them those libraries keep their own settings. On a machine that other work keeps busy,
``set_num_threads(1)`` avoids OpenBLAS's threads waiting for a core (BENCHMARKS.md).
"""

from __future__ import annotations

import os

from ._native import core as _core
from .validation import check_int


_chosen: int | None = None  # set_num_threads' n, for when the compiled core is unavailable


def set_num_threads(n: int) -> None:
    """Use at most ``n`` threads: the cpp backend's own, and the BLAS threads of the numba and
    numpy backends' calls."""
    global _chosen
    n = check_int("n", n, 1)
    core = _core()
    if core is not None:
        core.set_num_threads(n)
    _chosen = n


def get_num_threads() -> int:
    """The thread count of the compiled core, or without it the one set, else the default."""
    core = _core()
    if core is not None:
        return int(core.get_num_threads())
    if _chosen is not None:
        return _chosen
    for name in ("DENSEFIT_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) >= 1:
            return int(value)
    return len(os.sched_getaffinity(0))
