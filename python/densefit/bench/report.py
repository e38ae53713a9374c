"""Run every available trainer on the benchmark workloads and print a markdown report.

    python -m densefit.bench.report [--scale S] [--workloads W1,W2] [--peers torch,jax-scan]
                                      [--threads N] [--rounds R] [--out section.md] [--png chart.png]
    densefit bench ...                    (the same, through the densefit command)
    densefit bench --matrix [--rows ...] [--trainers ...] [--repeats R] [--quick] [--threads N] [--out f.md]
                                          (the benchmark matrix of :mod:`.matrix` instead)

Per workload and trainer: one warm-up run (it absorbs JIT compilation; its extra time over
the median is reported as "first run +s", which is the compile time for numba, JAX and
torch.compile), a check of its final loss/accuracy against densefit's numpy backend, then the
median of ``R`` timed runs (more for short runs, until they add up to 1 s). Reported: samples/s, the ratio to torch eager and to densefit's
numpy backend, and for W3/W4 the achieved GFLOP/s against a float32 sgemm peak measured here
(numpy 2048×2048 matmul, best of 5), for W5 the GB/s of X read. No result is a pass or a fail
on speed; a trainer whose result disagrees is marked in the "check" column. A workload's
heading says whether it is shuffled (W3, W4, W6: every trainer visits ``fit(shuffle=True)``'s
orders, see :mod:`.workloads`) or in order ``0..n-1``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import traceback

from . import threads_env

EAGER, NUMPY = "torch", "densefit-numpy"
LEGEND = ("Columns: samples/s = rows × epochs / median run time; × torch eager and × densefit-numpy are ratios "
          "of samples/s in this run; first run +s = warm-up run minus median run, i.e. the JIT compile time for "
          "numba, JAX and torch.compile (paid once per process and signature, so a later workload may show 0); "
          "check = final loss/accuracy on the whole data set against densefit's numpy backend "
          "(see densefit/bench/peers.py for the tolerances); GFLOP/s counts 6 FLOPs per weight and sample. "
          "Sample order (in each workload's heading): in order = rows 0..n-1 every epoch; shuffled = epoch e "
          "visits densefit.shuffle.permutation(seed, e, n), fit(shuffle=True)'s order, for every trainer: densefit "
          "draws it inside fit (timed), the peers precompute the same orders untimed; all gather the batches' rows "
          "in the timed run (scikit-learn: MLPClassifier one partial_fit per epoch on X[order]; the per-sample "
          "SGDRegressor shuffles with its own generator).")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The report's options, on ``parser`` (this module's and ``densefit bench``'s)."""
    parser.add_argument("--scale", type=float, default=None,
                        help="shrink rows/epochs (default DENSEFIT_BENCH_SCALE or 1.0)")
    parser.add_argument("--workloads", default="W1,W2,W3,W4,W5,W6", help="comma-separated ids")
    parser.add_argument("--peers", default=None, help="comma-separated trainers (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="threads for every library (default: theirs)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per trainer (median reported)")
    parser.add_argument("--out", default=None, help="also write the markdown report to this file")
    parser.add_argument("--png", default=None, help="write a bar chart of samples/s (needs matplotlib)")
    from . import matrix        # numpy only (already loaded by densefit); torch and JAX start when it runs
    matrix.add_arguments(parser.add_argument_group("benchmark matrix (--matrix; also --threads, --out)"), prefix=True)
    return parser


def parse_args(argv=None):
    return add_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0])).parse_args(argv)


def sgemm_peak(size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the best of ``repeats`` float32 ``size × size`` numpy matmuls."""
    import numpy as np
    a, b = (np.random.default_rng(i).random((size, size), dtype=np.float32) for i in range(2))
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


MIN_TIMED_SECONDS = 1.0   # short runs are repeated until they add up to this (a 0.3 ms run, W6, is noise otherwise)
MAX_RUNS = 1000


def timed_runs(run, rounds: int) -> list[float]:
    """Durations of at least ``rounds`` runs, more for short ones until they add up to
    :data:`MIN_TIMED_SECONDS` (at most :data:`MAX_RUNS`); every trainer is timed the same way."""
    times = [_seconds(run) for _ in range(rounds)]
    while sum(times) < MIN_TIMED_SECONDS and len(times) < MAX_RUNS:
        times.append(_seconds(run))
    return times


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(name, w, rounds, reference):
    """One row of the report for trainer ``name`` on workload ``w``."""
    from . import peers, workloads
    row = {"trainer": name, "note": peers.PEERS[name].note(w)}
    reason = peers.unavailable(name, w)
    if reason:
        return {**row, "skipped": reason}
    try:
        run = peers.setup(name, w)
        start = time.perf_counter()
        weights = run()
        first = time.perf_counter() - start
        result = workloads.evaluate(w, weights)
        times = timed_runs(run, rounds)
    except Exception as exc:  # one broken trainer must not stop the report
        traceback.print_exc(file=sys.stderr)
        return {**row, "skipped": f"error: {type(exc).__name__}: {exc}"}
    median = statistics.median(times)
    if name == NUMPY:
        check = "reference"
    else:
        check = "unchecked" if reference is None else peers.check(name, w, result, reference) or "ok"
    return {**row, "seconds": median, "first_extra": max(0.0, first - median), "loss": result[0],
            "accuracy": result[1], "check": check, "result": result, **workloads.rates(w, median)}


def si(value: float) -> str:
    for factor, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if value >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _ratio(row, base) -> str:
    if base is None or "samples_per_s" not in row:
        return ""
    return f"{row['samples_per_s'] / base['samples_per_s']:.3g}×"


def workload_table(w, rows, peak) -> list[str]:
    by_name = {r["trainer"]: r for r in rows if "samples_per_s" in r}
    eager, numpy_ = by_name.get(EAGER), by_name.get(NUMPY)
    extra = {"gflops": "GFLOP/s (% sgemm peak)", "x_gb_per_s": "GB/s of X"}.get(w.rate)
    head = ["trainer", "samples/s", "× torch eager", "× densefit-numpy", "median s", "first run +s", "loss", "accuracy",
            "check"] + ([extra] if extra else []) + ["note"]
    lines = [f"### {w.id} {w.name}: {w.n:,} × {w.sizes[0]}, network {'-'.join(map(str, w.sizes))}, "
             f"{w.optimizer} lr {w.lr:g}, batch {w.batch_size}, {w.epochs} epochs, {w.dtype}, "
             f"{'shuffled' if w.shuffle else 'in order'}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "skipped" in r:
            cells = [r["trainer"], "—", "", "", "", "", "", "", "skipped"] + ([""] if extra else []) + [r["skipped"]]
        else:
            rate = ""
            if w.rate == "gflops":
                rate = f"{r['gflops']:.3g} ({100 * r['gflops'] / peak:.0f}%)"
            elif w.rate:
                rate = f"{r[w.rate]:.3g}"
            accuracy = "" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
            cells = [r["trainer"], si(r["samples_per_s"]), _ratio(r, eager), _ratio(r, numpy_), f"{r['seconds']:.4g}",
                     f"{r['first_extra']:.3g}", f"{r['loss']:.5g}", accuracy, r["check"]] + ([rate] if extra else []) \
                + [r["note"]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary_table(results, names) -> list[str]:
    lines = ["| workload | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for w, rows in results:
        by_name = {r["trainer"]: r for r in rows}
        cells = [si(by_name[n]["samples_per_s"]) if "samples_per_s" in by_name.get(n, {}) else "—" for n in names]
        lines.append(f"| {w.id} {w.name} | " + " | ".join(cells) + " |")
    return lines


def machine_lines(args, peak, command) -> list[str]:
    import numpy as np
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    for module in ("densefit", "torch", "jax", "sklearn", "numba"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            versions.append(f"{module} missing")
    threads = args.threads if args.threads else "library defaults"
    lines = [f"- machine: {cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}",
             f"- versions: {', '.join(versions)}",
             f"- threads: {threads}; scale {args.scale}; median of {args.rounds} runs after one warm-up run "
             f"(short runs repeated until they add up to {MIN_TIMED_SECONDS:g} s)"]
    if peak is not None:
        lines.append(f"- float32 sgemm peak (numpy 2048×2048, best of 5): {peak:.1f} GFLOP/s")
    return lines + [f"- command: `{command}`"]


def write_chart(path, results, names) -> str | None:
    """A log-scale bar chart of samples/s: one group per workload, one bar per trainer (none where
    it was skipped), each labelled with its value. Returns why not if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed"
    import math
    rates = {(w.id, r["trainer"]): r["samples_per_s"] for w, rows in results for r in rows if "samples_per_s" in r}
    width = 0.84 / len(names)
    fig, ax = plt.subplots(figsize=(min(16.0, max(8.0, 2 + len(results) * (0.5 + 0.2 * len(names)))), 6.5))
    colors = plt.get_cmap("tab10").colors
    for i, name in enumerate(names):
        xs = [x - 0.42 + (i + 0.5) * width for x in range(len(results))]
        values = [rates.get((w.id, name), math.nan) for w, _ in results]
        bars = ax.bar(xs, values, width * 0.92, label=name, color=colors[i % len(colors)], zorder=2)
        ax.bar_label(bars, [si(v) if v == v else "" for v in values], rotation=90, padding=2, fontsize=7)
    ax.set_xticks(range(len(results)), [f"{w.id} {w.name}\n{w.n:,} × {w.sizes[0]}, batch {w.batch_size}"
                                        for w, _ in results], fontsize=9)
    ax.set_yscale("log")
    if rates:
        low = 10 ** math.floor(math.log10(min(rates.values()) / 2))      # a labelled decade at the bottom
        ax.set_ylim(low, max(rates.values()) * 10)                         # room for the labels on top
    ax.set_ylabel("samples / s (log scale, higher is better)")
    ax.grid(axis="y", which="major", alpha=0.4, zorder=0)
    ax.set_title("Training throughput per workload (same data, weights and sample order for every trainer)",
                 fontsize=10)
    ax.legend(ncol=min(len(names), 9), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    return run(parse_args(argv), " ".join(["python -m densefit.bench.report", *argv]))


def run(args, command: str) -> int:
    """The report for parsed ``args`` (see :func:`add_arguments`); ``command`` is how it was started.
    With ``--matrix``, the benchmark matrix of :mod:`.matrix` instead."""
    if getattr(args, "matrix", False):
        from . import matrix
        return matrix.run(args, command)
    threads_env.configure(args.threads)     # before torch, JAX and numba start
    from . import peers, workloads
    if args.scale is None:
        args.scale = workloads.bench_scale()
    names = args.peers.split(",") if args.peers else list(peers.NAMES)
    unknown = [n for n in names if n not in peers.PEERS]
    if unknown:
        raise SystemExit(f"unknown trainers {unknown}; known: {', '.join(peers.NAMES)}")
    ids = [workload_id.strip().upper() for workload_id in args.workloads.split(",")]
    if set(ids) - set(workloads.IDS):
        raise SystemExit(f"unknown workloads {sorted(set(ids) - set(workloads.IDS))}; known: {', '.join(workloads.IDS)}")
    peak = sgemm_peak() if any(workloads.SPECS[i].rate == "gflops" for i in ids) else None   # W3/W4 only
    results, lines = [], []
    for workload_id in ids:
        w = workloads.get(workload_id, args.scale)
        print(f"{w.id}: {w.n:,} rows × {w.epochs} epochs", file=sys.stderr, flush=True)
        measured = {}
        if NUMPY in names:
            measured[NUMPY] = measure(NUMPY, w, args.rounds, None)
            reference = measured[NUMPY].get("result")
        else:
            reference = None if peers.unavailable(NUMPY, w) else peers.train(NUMPY, w)
        for name in names:
            if name not in measured:
                measured[name] = measure(name, w, args.rounds, reference)
            print(f"  {name}: {measured[name].get('samples_per_s', measured[name].get('skipped'))}", file=sys.stderr,
                  flush=True)
        rows = [measured[name] for name in names]
        results.append((w, rows))
        lines += [""] + workload_table(w, rows, peak)
    report = ["## Benchmarks", ""] + machine_lines(args, peak, command) + ["", "Samples per second:", ""] \
        + summary_table(results, names) + ["", LEGEND] + lines + [""]
    skipped = sum("skipped" in r for _, rows in results for r in rows)
    text = "\n".join(report)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    if args.png:
        problem = write_chart(args.png, results, names)
        print(f"chart: {problem or args.png}", file=sys.stderr)
    if skipped:
        print(f"{skipped} trainer/workload pairs skipped (see the tables)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
