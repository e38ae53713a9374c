"""Thread count for every trainer, set through the environment before torch, JAX and numba are
imported (they read these variables when they start). ``import densefit`` has already loaded
numpy, whose BLAS read its variables then: its pool is resized through threadpoolctl (installed
with scikit-learn) when available. Kept free of heavy imports so :mod:`report` and the
benchmarks' ``conftest.py`` can call it first."""

from __future__ import annotations

import os

VARIABLE = "DENSEFIT_BENCH_THREADS"


def configure(threads: int | None) -> None:
    """Use ``threads`` threads everywhere (``None``: leave each library's default)."""
    if threads is None:
        return
    n = str(int(threads))
    os.environ[VARIABLE] = n
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = n
    flags = os.environ.get("XLA_FLAGS", "")
    flags += f" --xla_cpu_multi_thread_eigen={'false' if n == '1' else 'true'} intra_op_parallelism_threads={n}"
    os.environ["XLA_FLAGS"] = flags.strip()
    try:
        import threadpoolctl
    except ImportError:
        return
    threadpoolctl.threadpool_limits(int(n))     # BLAS and OpenMP pools already loaded (numpy's)


def configured() -> int | None:
    """The thread count set by :func:`configure` (or ``DENSEFIT_BENCH_THREADS``), else ``None``."""
    value = os.environ.get(VARIABLE)
    return int(value) if value else None
