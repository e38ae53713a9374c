"""The number of threads the compiled core may use.

The core runs OpenBLAS single-threaded and splits each large GEMM (≥ 2²¹ multiply-adds) into
independent blocks over its own threads, and a batch of a mid-sized network into chunks over
them (the data-parallel pass); smaller work stays on one core. The default is
``DENSEFIT_NUM_THREADS``, else ``OMP_NUM_THREADS``, else the CPUs this process may run on.

The numba and numpy backends run on one thread, and so does the BLAS they call during their
calls (``backends._blas_on_one_thread``); outside them numpy's and scipy's BLAS keep their own
settings.
"""

from __future__ import annotations

import os

from ._native import core as _core
from .validation import check_int


def set_num_threads(n: int) -> None:
    """Use at most ``n`` threads in the cpp backend. Has no effect when the compiled core is
    unavailable (the numba and numpy backends run on one thread)."""
    n = check_int("n", n, 1)
    core = _core()
    if core is not None:
        core.set_num_threads(n)


def get_num_threads() -> int:
    """The thread count of the compiled core, or the default it would take without it."""
    core = _core()
    if core is not None:
        return int(core.get_num_threads())
    for name in ("DENSEFIT_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) >= 1:
            return int(value)
    return len(os.sched_getaffinity(0))
