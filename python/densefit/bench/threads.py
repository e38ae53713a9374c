"""Samples/s of the cpp backend on W1–W4 with 1 and with 2 threads, each thread count in a
fresh process (``OMP_NUM_THREADS`` and every library's thread variable set before it starts,
``densefit.set_num_threads`` in it), and their ratio.

    python -m densefit.bench.threads [--threads 1,2] [--workloads W1,W2,W3,W4] [--rounds 3]
        [--nets 20-64-1:1024:1000000,100-128-128-10:256:100000,100-128-128-10:1024:100000] [--alternate]

``--nets`` adds networks given as ``sizes:batch:rows`` (relu hidden layers, a sigmoid or softmax
output, Adam, float32, one epoch over random rows in order; ``sizes`` ending in ``bn``, as
``32-128-128-1bn``, puts a BatchNorm between each hidden Dense and its relu), which show the data-parallel pass
within a batch (cpp/include/densefit/data_parallel.hpp); each row names the pass that ran. With
``--alternate`` they are timed in one process, every thread count in each round, so that on a
machine shared with other work a change in its load falls on every count alike.

Each number is the median of ``--rounds`` timed runs after a warm-up run (as in
:mod:`.report`). Prints a markdown section for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from . import proc, threads_env

TRAINER = "densefit-cpp"


def _net_rates(net: str, rounds: int, counts: list[int] | None = None) -> tuple[dict, str]:
    """Samples/s of one epoch of a ``sizes:batch:rows`` network for each thread count of
    ``counts`` (None: the process's), and the pass train_epochs took. With several counts each
    round times them all, in turn, reversing the order every other round, so that a change in
    the machine's load falls on every count alike."""
    import numpy as np

    import densefit as df

    from .. import optimizers
    from ..backends import cpp
    from ..layers import Activation, BatchNorm, Dense
    from ..plan import build_plan, init_state
    sizes_text, batch_text, rows_text = net.split(":")
    batchnorm = sizes_text.endswith("bn")
    sizes = [int(s) for s in sizes_text.removesuffix("bn").split("-")]
    batch, rows = int(batch_text), int(rows_text)
    K = sizes[-1]
    loss = "binary_crossentropy" if K == 1 else "categorical_crossentropy"

    def layers():
        hidden = []
        for i, w in enumerate(sizes[1:-1]):
            first = {"input_dim": sizes[0]} if i == 0 else {}
            hidden += ([Dense(w, **first), BatchNorm(), Activation("relu")] if batchnorm
                       else [Dense(w, activation="relu", **first)])
        return hidden + [Dense(K, activation="sigmoid" if K == 1 else "softmax")]
    plan = build_plan(layers(), sizes[0], loss, optimizers.Adam(1e-3), "float32", 0)
    start_state = init_state(plan, layers(), 0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, sizes[0])).astype(np.float32)
    y = ((rng.random((rows, 1)) > 0.5) if K == 1 else rng.integers(0, K, (rows, 1))).astype(np.float32)
    times: dict[int | None, list[float]] = {n: [] for n in counts or [None]}
    for r in range(rounds + 1):  # the first is the warm-up
        for n in (list(times) if r % 2 == 0 else list(times)[::-1]):
            if n is not None:
                df.set_num_threads(n)
            state = start_state.copy()
            start = time.perf_counter()
            cpp.train_epochs(plan, state, X, y, None, np.array([1e-3]), batch)
            if r > 0:
                times[n].append(time.perf_counter() - start)
    return {n: rows / statistics.median(t) for n, t in times.items()}, cpp._net(plan).training_pass(batch)


def _child(workload_ids: str, rounds: str, nets: str = "") -> dict:
    threads_env.configure(threads_env.configured())
    import densefit as df

    from . import report, workloads
    rates, passes = {}, {}
    for workload_id in filter(None, workload_ids.split(",")):
        row = report.measure(TRAINER, workloads.get(workload_id, 1.0), int(rounds), None)
        rates[workload_id] = row.get("samples_per_s")
    for net in filter(None, nets.split(",")):
        by_count, passes[net] = _net_rates(net, int(rounds))
        rates[net] = by_count[None]
    return {"threads": df.get_num_threads(), "rates": rates, "passes": passes}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == proc.CHILD:
        proc.answer(_child(*argv[1:]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--workloads", default="W1,W2,W3,W4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nets", default="", help="networks sizes:batch:rows, comma-separated (default: none)")
    parser.add_argument("--alternate", action="store_true",
                        help="time the --nets in this process, the thread counts in turn in every round")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.threads.split(",")]
    machine = proc.conditions()
    results = {}
    for n in counts:
        results[n] = proc.run_child("densefit.bench.threads", args.workloads, args.rounds,
                                    "" if args.alternate else args.nets,
                                    env={"OMP_NUM_THREADS": str(n), threads_env.VARIABLE: str(n)})
        print(f"{n} threads: {results[n]}", file=sys.stderr, flush=True)
    from . import report, workloads
    first, last = counts[0], counts[-1]
    rows = []
    for workload_id in filter(None, args.workloads.split(",")):
        w = workloads.SPECS[workload_id]
        rates = [results[n]["rates"][workload_id] for n in counts]
        ratio = f"{rates[-1] / rates[0]:.2f}×" if None not in (rates[0], rates[-1]) else "—"
        rows.append([f"{w.id} {w.name}", *(report.si(r) if r else "error" for r in rates), ratio])
    for net in filter(None, args.nets.split(",")):
        sizes, batch, n_rows = net.split(":")
        if args.alternate:
            by_count, pass_name = _net_rates(net, args.rounds, counts)
            rates = [by_count[n] for n in counts]
        else:
            rates, pass_name = [results[n]["rates"][net] for n in counts], results[first]["passes"][net]
        rows.append([f"{sizes}, batch {batch}, {int(n_rows):,} rows ({pass_name} pass)",
                     *(report.si(r) for r in rates), f"{rates[-1] / rates[0]:.2f}×"])
    lines = ["### Threads (cpp backend)", "", machine, "",
             f"Samples/s, median of {args.rounds} runs after a warm-up run, full-size workloads; one fresh process per "
             f"thread count (densefit reported {', '.join(str(results[n]['threads']) for n in counts)} threads)" +
             ("; the networks in this process, the thread counts in turn in every round." if args.alternate else "."), "",
             *proc.table(["workload", *(f"{n} thread{'s' * (n > 1)}" for n in counts), f"{last} / {first}"], rows)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
