"""What callbacks cost a fit: a 1,000-row, 200-epoch fit (10-16-1, Adam, batch 32, shuffled,
verbose=0) with no callback, with a CSVLogger (observes: one backend call for all epochs) and with
an EarlyStopping that never fires (may stop: one epoch per backend call). Median of --rounds fits.

    python -m densefit.bench.callbacks_overhead [--rounds 11] [--backend auto]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

import densefit as df
from densefit import callbacks as C


def _fit_seconds(backend: str, make_callbacks, X, y) -> float:
    model = df.Sequential([df.Dense(16, activation="relu", input_dim=10), df.Dense(1, activation="sigmoid")], seed=0,
                          backend=backend)
    model.compile("binary_crossentropy", "adam")
    start = time.perf_counter()
    model.fit(X, y, epochs=200, verbose=0, callbacks=make_callbacks())
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 10))
    y = (X[:, :1] > 0).astype(float)
    with tempfile.TemporaryDirectory() as folder:
        cases = {"none": lambda: None,
                 "CSVLogger": lambda: [C.CSVLogger(os.path.join(folder, "log.csv"))],
                 "EarlyStopping": lambda: [C.EarlyStopping(monitor="loss", patience=1000)]}
        times = {name: [] for name in cases}
        for _ in range(args.rounds):  # interleaved, so drift hits every case alike
            for name, make in cases.items():
                times[name].append(_fit_seconds(args.backend, make, X, y))
    for name, values in times.items():
        print(f"{name:<14} {1000 * statistics.median(values):7.2f} ms")


if __name__ == "__main__":
    main()
