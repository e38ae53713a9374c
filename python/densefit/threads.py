"""The number of threads the compiled core (and its BLAS) may use."""

from __future__ import annotations

import os

from ._native import core as _core
from .validation import check_int


def set_num_threads(n: int) -> None:
    """Use at most ``n`` threads in the cpp backend's BLAS calls (``OMP_NUM_THREADS`` is the
    default). Has no effect when the compiled core is unavailable."""
    n = check_int("n", n, 1)
    core = _core()
    if core is not None:
        core.set_num_threads(n)


def get_num_threads() -> int:
    """The thread count of the compiled core, or ``OMP_NUM_THREADS``/1 without it."""
    core = _core()
    if core is not None:
        return int(core.get_num_threads())
    return int(os.environ.get("OMP_NUM_THREADS", "1"))
