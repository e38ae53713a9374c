"""What OpenBLAS's threads do to the numba and numpy backends: one epoch of ``Sequential.fit`` (fit's
defaults, shuffled) with the BLAS they call at its default thread count and at one thread
(``threadpoolctl``), alternated in one process, median of ``--rounds`` fits each.

    python -m densefit.bench.blas_threads [--backends numba,numpy] [--rounds 3]
        [--nets 32-128-128-1:256,256-1024-1024-1:1024]

A net is ``widths:batch`` (relu hidden layers, a sigmoid output, binary cross-entropy, Adam).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _model(widths, backend):
    import densefit as df

    layers = [df.Dense(widths[1], activation="relu", input_dim=widths[0])]
    layers += [df.Dense(w, activation="relu") for w in widths[2:-1]]
    layers.append(df.Dense(widths[-1], activation="sigmoid"))
    model = df.Sequential(layers, seed=0, backend=backend)
    model.compile(loss="binary_crossentropy", optimizer="adam")
    return model


def samples_per_second(backend: str, widths, batch: int, rounds: int) -> dict:
    """``{"default": …, "1": …}``: samples/s of one epoch with BLAS at its default and at one thread."""
    from threadpoolctl import threadpool_limits

    n = max(8 * batch, 20_000 if widths[1] <= 256 else 8192)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, widths[0])).astype(np.float32)
    y = (X[:, :1] > 0).astype(np.float32)
    _model(widths, backend).fit(X[:2 * batch], y[:2 * batch], epochs=1, batch_size=batch, verbose=0)  # compile
    times = {"default": [], "1": []}
    for _ in range(rounds):
        for setting in times:
            model = _model(widths, backend)
            with threadpool_limits(1 if setting == "1" else None, user_api="blas"):
                start = time.perf_counter()
                model.fit(X, y, epochs=1, batch_size=batch, verbose=0)
                times[setting].append(time.perf_counter() - start)
    return {setting: n / statistics.median(t) for setting, t in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="numba,numpy")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nets", default="32-128-128-1:256,256-1024-1024-1:1024,784-512-512-1:256")
    args = parser.parse_args(argv)
    print("| backend | network | batch | BLAS default | BLAS 1 thread |\n|---|---|---|---|---|")
    for backend in args.backends.split(","):
        for net in args.nets.split(","):
            widths, batch = net.split(":")
            rates = samples_per_second(backend, [int(w) for w in widths.split("-")], int(batch), args.rounds)
            print(f"| {backend} | {widths} | {batch} | {rates['default']:,.0f} | {rates['1']:,.0f} |")


if __name__ == "__main__":
    main()
