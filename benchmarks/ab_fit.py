"""W1-W6 through ``fit`` as a user runs it, for an A/B of two trees with the same harness.

For each workload and the cpp and numba backends: compile + set_weights + fit (shuffled where
DESIGN.md says: W3, W4, W6) + get_weights, timed ``rounds`` times (5x as many for workloads of at
most a million samples); prints "workload backend median-samples/s best-samples/s". Run it with
``PYTHONPATH`` at each tree (and a NUMBA_CACHE_DIR per tree), alternating:

    PYTHONPATH=/path/to/tree/python python benchmarks/ab_fit.py W1,W2,W3,W4,W5,W6 5
"""
import statistics
import sys
import time

import densefit as df
from densefit.bench import workloads as W
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
for wid in sys.argv[1].split(","):
    w = W.get(wid)
    shuffle = getattr(w.spec, "shuffle", wid in ("W3", "W4", "W6"))  # (a tree from before Spec.shuffle)
    for backend in ("cpp", "numba"):
        model = df.Sequential(w.densefit_layers(), seed=W.SEED, dtype=w.dtype, backend=backend)
        init = w.init_weights()
        def run():
            model.compile(loss=w.loss, optimizer=w.densefit_optimizer())
            model.set_weights(init)
            model.fit(w.X, w.targets, epochs=w.epochs, batch_size=w.batch_size, shuffle=shuffle, verbose=0)
        run()
        reps = rounds if w.samples > 1e6 else rounds * 5
        ts = []
        for _ in range(reps):
            t = time.perf_counter(); run(); ts.append(time.perf_counter() - t)
        print(f"{wid} {backend} {w.samples / statistics.median(ts):.4g} {w.samples / min(ts):.4g}", flush=True)
