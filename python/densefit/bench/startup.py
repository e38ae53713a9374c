"""First-call overhead, each case in a fresh process: the time of ``import densefit``, of the
first model (``Sequential`` + ``compile``: it loads the backend) and ``fit`` (a tiny W1-like
run: 1,000 rows × 2, 2-3-4-1, batch 1, 1 epoch), of a second ``fit`` of the same model, and of
a new model of the same shape and its ``fit``.

    python -m densefit.bench.startup

Cases: the cpp backend as a wheel would load it (this editable install's rebuild check
skipped) and as the editable install does (scikit-build-core checks for a rebuild of the core
the first time it is imported); the numba backend with a cold compilation cache (a new
``NUMBA_CACHE_DIR``) and then warm (a second process, same directory); the numpy backend.
Prints a markdown section for BENCHMARKS.md.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time

from . import proc

# Run with ``python -c``: ``python -m densefit.bench.startup`` would import densefit first.
CHILD = ("import sys, time; start = time.perf_counter(); import densefit; seconds = time.perf_counter() - start; "
         "from densefit.bench import startup; startup.child(seconds, *sys.argv[1:])")


def _skip_editable_rebuild() -> None:
    """Mark scikit-build-core's editable finder as already rebuilt (no effect on a wheel)."""
    for finder in sys.meta_path:
        if hasattr(finder, "rebuild_flag"):
            finder.rebuilt = True


def child(import_seconds: float, backend: str, rebuild: str) -> None:
    import densefit as df

    from . import workloads
    if rebuild == "skip":
        _skip_editable_rebuild()
    w = workloads.get("W1", 0.001)

    def new_model():
        model = df.Sequential(w.densefit_layers(), seed=0, dtype=w.dtype, backend=backend)
        model.compile(loss=w.loss, optimizer=w.densefit_optimizer())
        return model

    def fit(model=None):
        start = time.perf_counter()
        model = model or new_model()
        model.fit(w.X, w.targets, epochs=w.epochs, batch_size=w.batch_size, verbose=0)
        return time.perf_counter() - start, model

    first, model = fit()
    proc.answer({"import": import_seconds, "first": first, "second": fit(model)[0], "new_model": fit()[0]})


def main(argv=None) -> int:
    machine = proc.conditions()
    cache = tempfile.mkdtemp(prefix="densefit-numba-cache-")
    try:
        cases = [("cpp, as from a wheel", "cpp", "skip", {}),
                 ("cpp, editable install (rebuild check)", "cpp", "check", {}),
                 ("numba, cold cache", "numba", "skip", {"NUMBA_CACHE_DIR": cache}),
                 ("numba, warm cache", "numba", "skip", {"NUMBA_CACHE_DIR": cache}),
                 ("numpy", "numpy", "skip", {})]
        rows = []
        for label, backend, rebuild, env in cases:
            r = proc.run_python("-c", CHILD, backend, rebuild, env=env)
            rows.append([label, *(f"{r[k] * 1e3:,.1f}" for k in ("import", "first", "second", "new_model"))])
            print(f"{label}: {r}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    lines = ["### First-call overhead", "", machine, "",
             "Fresh process per row; a tiny W1-like `fit` (1,000 × 2, 2-3-4-1, batch 1, 1 epoch); \"model\" is "
             "`Sequential` + `compile` (the backend loads there). Milliseconds.", "",
             *proc.table(["case", "import densefit", "first model + fit", "second fit, same model",
                          "new model + fit"], rows)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
