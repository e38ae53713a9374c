"""Peak resident memory of ``fit`` (issue #3: "peak RSS during fit on W5 ≤ size of X + 64 MB:
no copy of X, no per-epoch allocation"), each case in a fresh process.

    python -m densefit.bench.memory [--backends cpp,numba,numpy] [--memmap-rows 10000000] [--dir /tmp]

1. W5 in RAM (1,000,000 × 100 float32 = 400 MB), batch 256, 1 epoch, per backend: resident
   memory before ``fit`` (X already resident; after one small warm-up ``fit`` that loads the
   core and compiles numba), the kernel's peak during ``fit`` (``VmHWM``, reset just before),
   their difference (what ``fit`` allocates: the target is ≤ 64 MB), and the peak above the
   process before X was made, as a multiple of X's size (≈ 1 when nothing copies X).
2. X as an ``np.memmap`` of ``--memmap-rows`` × 100 float32 (4 GB by default; W5's rows
   repeated) written to a file in ``--dir`` and deleted afterwards, 1 epoch with the cpp
   backend, ``shuffle=False``: peak anonymous memory (``RssAnon``: what densefit allocates)
   and mapped file pages (``RssFile``: the page cache of X, which the kernel can drop) apart.

Prints a markdown section for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time

from . import proc
from .proc import MB, megabytes

LIMIT = 64 * MB
WARMUP_ROWS = 1024


def _model(w, backend: str):
    import densefit as df
    model = df.Sequential(w.densefit_layers(), seed=0, dtype=w.dtype, backend=backend)
    model.compile(loss=w.loss, optimizer=w.densefit_optimizer())
    return model


def _fit(model, w, X, y, shuffle: bool) -> dict:
    """Warm up on the first rows, then one measured epoch of ``fit``."""
    model.fit(X[:WARMUP_ROWS], y[:WARMUP_ROWS], epochs=1, batch_size=w.batch_size, verbose=0)
    gc.collect()
    start = time.perf_counter()
    with proc.Peak() as peak:
        model.fit(X, y, epochs=1, batch_size=w.batch_size, shuffle=shuffle, verbose=0)
    return {"seconds": time.perf_counter() - start, "before": peak.before, "peak": peak.peak,
            "sampled": peak.peaks, "x_bytes": X.nbytes, "rows": X.shape[0]}


def _child_ram(backend: str, shuffle: str) -> dict:
    from . import workloads
    start = proc.status()["VmRSS"]
    w = workloads.get("W5", 1.0)
    return {"start": start, **_fit(_model(w, backend), w, w.X, w.targets, shuffle == "True")}


def _child_memmap(x_path: str, y_path: str, rows: str) -> dict:
    import numpy as np

    from . import workloads
    w = workloads.get("W5", 0.001)          # only for the network and the training settings
    X = np.memmap(x_path, dtype=np.float32, mode="r", shape=(int(rows), w.sizes[0]))
    y = np.memmap(y_path, dtype=np.float32, mode="r", shape=(int(rows), 1))
    return _fit(_model(w, "cpp"), w, X, y, shuffle=False)


def write_memmap(directory: str, rows: int) -> tuple[str, str]:
    """X and y files of ``rows`` rows: W5's rows repeated (float32, y as an (n, 1) column)."""
    import numpy as np

    from . import workloads
    w = workloads.get("W5", 1.0)
    need = rows * (w.X.shape[1] + 1) * 4
    free = shutil.disk_usage(directory).free
    if free < 2 * need:
        raise SystemExit(f"{directory} has {free / 1e9:.1f} GB free; the memmap needs {need / 1e9:.1f} GB (× 2 margin)")
    paths = []
    for name, source in (("X", w.X), ("y", w.Y)):
        fd, path = tempfile.mkstemp(prefix=f"densefit-memmap-{name}-", suffix=".f32", dir=directory)
        os.close(fd)
        paths.append(path)
        out = np.memmap(path, dtype=np.float32, mode="w+", shape=(rows, source.shape[1]))
        for start in range(0, rows, w.n):
            stop = min(rows, start + w.n)
            out[start:stop] = source[:stop - start]
        out.flush()
        del out
    return paths[0], paths[1]


def ram_section(backends: list[str]) -> list[str]:
    rows = []
    for backend in backends:
        for shuffle in ((True, False) if backend == "cpp" else (True,)):
            r = proc.run_child("densefit.bench.memory", "ram", backend, shuffle)
            extra = r["peak"] - r["before"]["VmRSS"]
            rows.append([backend, "yes" if shuffle else "no", megabytes(r["before"]["VmRSS"]), megabytes(r["peak"]),
                         megabytes(extra), f"{(r['peak'] - r['start']) / r['x_bytes']:.3f}×",
                         "yes" if extra <= LIMIT else "**no**", f"{r['seconds']:.2f}"])
            x_bytes, n = r["x_bytes"], r["rows"]
    return [f"W5 in RAM: X is {x_bytes / 1e6:,.0f} MB ({megabytes(x_bytes)}) float32; 1 epoch, batch 256; one fresh "
            "process per row; peak = the kernel's VmHWM, reset just before `fit`.", ""] + proc.table(
        ["backend", "shuffle", "RSS before fit", "peak RSS during fit", "peak − before", "(peak − RSS before X) / X",
         "≤ 64 MB more", "fit s"], rows) + [
        "", f"For comparison, a shuffled epoch's int64 row order is {megabytes(8 * n)} (8 bytes per row); an "
        "unshuffled fit passes no order at all."]


def memmap_section(directory: str, rows: int) -> list[str]:
    x_path, y_path = write_memmap(directory, rows)
    try:
        r = proc.run_child("densefit.bench.memory", "memmap", x_path, y_path, rows)
    finally:
        for path in (x_path, y_path):
            os.remove(path)
    before, sampled = r["before"], r["sampled"]
    gigabytes = r["x_bytes"] / 1e9
    return [f"X as an `np.memmap` ({rows:,} × 100 float32 = {gigabytes:.1f} GB file, read-only, just written so in "
            "the page cache), cpp backend, 1 epoch, batch 256, `shuffle=False`; RssAnon/RssFile sampled every 2 ms "
            "from `/proc/self/status` during `fit`:", "",
            *proc.table(["", "RssAnon (allocated memory)", "RssFile (mapped pages of X, reclaimable)", "VmRSS"],
                        [["before fit", *(megabytes(before[k]) for k in ("RssAnon", "RssFile", "VmRSS"))],
                         ["peak during fit", *(megabytes(sampled[k]) for k in ("RssAnon", "RssFile", "VmRSS"))],
                         ["peak − before", *(megabytes(sampled[k] - before[k]) for k in ("RssAnon", "RssFile",
                                                                                          "VmRSS"))]]),
            "", f"fit: {r['seconds']:.2f} s ({gigabytes / r['seconds']:.2f} GB/s of X; the first read of the file's "
                "pages into the process dominates). `fit` allocates nothing per row (no row order without shuffling, "
                "no copy of X); the mapped pages of X count in VmRSS but are clean page cache the kernel can drop "
                "under pressure."]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == proc.CHILD:
        proc.answer({"ram": _child_ram, "memmap": _child_memmap}[argv[1]](*argv[2:]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="cpp,numba,numpy")
    parser.add_argument("--memmap-rows", type=int, default=10_000_000, help="0: skip the memmap measurement")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the memmap file is written")
    args = parser.parse_args(argv)
    machine = proc.conditions()
    lines = ["### Memory of fit", "", machine, ""] + ram_section(args.backends.split(","))
    if args.memmap_rows:
        lines += [""] + memmap_section(args.dir, args.memmap_rows)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
