"""Epoch time of the cpp backend against rows on W5-style data (logistic regression, d = 100
float32, batch 256, ``shuffle=False``), and the machine's read bandwidth to compare with.

    python -m densefit.bench.scaling [--rows 100000,1000000,10000000] [--repeats 3]

Per size: the best of at least ``--repeats`` one-epoch ``fit`` calls, more for small sizes
(after a warm-up call; a call includes the finiteness scan of X and resetting the weights),
then a least-squares line ``time = a + b·rows`` with its R², the per-row cost ``b`` in ns and
the GB/s of X it implies (400 bytes per row). Read bandwidth: numpy's sum over a 1 GB float32
array, best of 5. 10⁷ rows need 4 GB of RAM for X. Prints a markdown section for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import peers, proc, workloads


def best_seconds(fn, repeats: int, min_total: float = 1.0) -> float:
    """Best time of ``fn()`` after a warm-up call: at least ``repeats`` calls, more (up to 100)
    until they add up to ``min_total`` seconds, so short calls get enough tries."""
    fn()
    times = []
    while len(times) < repeats or (sum(times) < min_total and len(times) < 100):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def read_bandwidth(gigabytes: float = 1.0, repeats: int = 5) -> float:
    """GB/s of numpy summing a ``gigabytes`` float32 array (one thread), best of ``repeats``."""
    a = np.ones(int(gigabytes * 1e9) // 4, dtype=np.float32)
    return a.nbytes / best_seconds(a.sum, repeats) / 1e9


def epoch_seconds(rows: int, repeats: int) -> tuple[float, int]:
    """Best one-epoch ``fit`` time of the cpp backend on W5's data with ``rows`` rows."""
    w = workloads.make("W5", rows, epochs=1)
    seconds = best_seconds(peers.setup("densefit-cpp", w), repeats)
    return seconds, w.X.nbytes


def fit_line(rows, seconds) -> tuple[float, float, float]:
    """``(a, b, R²)`` of the least-squares line ``seconds = a + b·rows``."""
    rows, seconds = np.asarray(rows, dtype=float), np.asarray(seconds, dtype=float)
    b, a = np.polyfit(rows, seconds, 1)
    residual = seconds - (a + b * rows)
    return a, b, 1 - residual @ residual / np.sum((seconds - seconds.mean()) ** 2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="100000,1000000,10000000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--read-gb", type=float, default=1.0, help="size of the array the read bandwidth sums")
    args = parser.parse_args(argv)
    import densefit as df
    machine = proc.conditions()
    sizes = [int(r) for r in args.rows.split(",")]
    measured = []
    for rows in sizes:
        seconds, x_bytes = epoch_seconds(rows, args.repeats)
        measured.append((rows, seconds, x_bytes))
        print(f"{rows:,} rows: {seconds:.4f} s", file=sys.stderr, flush=True)
    a, b, r2 = fit_line([m[0] for m in measured], [m[1] for m in measured])
    bytes_per_row = measured[0][2] / measured[0][0]
    bandwidth = read_bandwidth(args.read_gb)
    rows_table = [[f"{rows:,}", f"{x_bytes / 1e9:.2f}", f"{seconds:.4f}", f"{rows / seconds / 1e6:.2f} M",
                   f"{seconds / rows * 1e9:.1f}", f"{x_bytes / seconds / 1e9:.2f}"] for rows, seconds, x_bytes in measured]
    lines = ["### Scaling with rows (cpp backend)", "", machine, "",
             f"W5-style data (d = 100 float32, logistic regression, SGD batch 256, no shuffling): best of at least "
             f"{args.repeats} one-epoch `fit` calls per size (more for small sizes, up to 1 s in all; each includes the finiteness scan of X), "
             f"{df.get_num_threads()} densefit threads.", "",
             *proc.table(["rows", "X GB", "epoch s", "samples/s", "ns/row", "GB/s of X"], rows_table), "",
             f"- fit `time = a + b·rows`: a = {a * 1e3:.2f} ms, b = {b * 1e9:.2f} ns/row, R² = {r2:.5f}; "
             f"{bytes_per_row / b / 1e9:.2f} GB/s of X from the slope",
             f"- machine read bandwidth (numpy float32 sum over {args.read_gb:g} GB, one thread, best of 5): {bandwidth:.2f} GB/s; "
             f"the slope reads X at {100 * bytes_per_row / b / 1e9 / bandwidth:.0f}% of it"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
