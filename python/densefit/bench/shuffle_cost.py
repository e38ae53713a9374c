"""What shuffling costs a fit: the W1-W6 workloads through ``Sequential.fit`` with ``shuffle=True``
(fit's default: each epoch's order generated inside the backend) and ``shuffle=False``, the two
alternated in one process, median of ``--rounds`` fits each, per backend.

    python -m densefit.bench.shuffle_cost [--workloads W3,W6] [--backends cpp,numba] [--rounds 9] [--scale 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

from . import workloads
from .peers import SEED


def fit_seconds(w, backend: str, shuffle: bool, rounds: int) -> float:
    """Median seconds of ``rounds`` fits of workload ``w`` from its initial weights."""
    import densefit as df

    model = df.Sequential(w.densefit_layers(), seed=SEED, dtype=w.dtype, backend=backend)
    init = w.init_weights()
    times = []
    for _ in range(rounds + 1):  # the first fit (numba's compile, first-touch of buffers) is not counted
        model.compile(loss=w.loss, optimizer=w.densefit_optimizer())
        model.set_weights(init)
        start = time.perf_counter()
        model.fit(w.X, w.targets, epochs=w.epochs, batch_size=w.batch_size, shuffle=shuffle, verbose=0)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def run(workload_ids=("W3", "W6"), backends=("cpp",), rounds: int = 9, scale: float = 1.0) -> str:
    lines = ["| workload | backend | shuffle=False | shuffle=True | shuffled / unshuffled |", "|---|---|---|---|---|"]
    for wid in workload_ids:
        w = workloads.get(wid, scale)
        for backend in backends:
            fixed, shuffled = [], []
            for _ in range(3):  # alternate, so a change of the machine's load hits both
                fixed.append(fit_seconds(w, backend, False, rounds))
                shuffled.append(fit_seconds(w, backend, True, rounds))
            a, b = statistics.median(fixed), statistics.median(shuffled)
            lines.append(f"| {wid} | {backend} | {a * 1e3:.3f} ms | {b * 1e3:.3f} ms | {b / a:.2f}× |")
            print(lines[-1], flush=True)
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="W3,W6")
    parser.add_argument("--backends", default="cpp")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    run(tuple(args.workloads.split(",")), tuple(args.backends.split(",")), args.rounds, args.scale)


if __name__ == "__main__":
    main()
