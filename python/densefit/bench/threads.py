"""Samples/s of the cpp backend on W1–W4 with 1 and with 2 threads, each thread count in a
fresh process (``OMP_NUM_THREADS`` and every library's thread variable set before it starts,
``densefit.set_num_threads`` in it), and their ratio.

    python -m densefit.bench.threads [--threads 1,2] [--workloads W1,W2,W3,W4] [--rounds 3]

Each number is the median of ``--rounds`` timed runs after a warm-up run (as in
:mod:`.report`). Prints a markdown section for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys

from . import proc, threads_env

TRAINER = "densefit-cpp"


def _child(workload_ids: str, rounds: str) -> dict:
    threads_env.configure(threads_env.configured())
    import densefit as df

    from . import report, workloads
    rates = {}
    for workload_id in workload_ids.split(","):
        row = report.measure(TRAINER, workloads.get(workload_id, 1.0), int(rounds), None)
        rates[workload_id] = row.get("samples_per_s")
    return {"threads": df.get_num_threads(), "rates": rates}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == proc.CHILD:
        proc.answer(_child(*argv[1:]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--workloads", default="W1,W2,W3,W4")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.threads.split(",")]
    machine = proc.conditions()
    results = {}
    for n in counts:
        results[n] = proc.run_child("densefit.bench.threads", args.workloads, args.rounds,
                                    env={"OMP_NUM_THREADS": str(n), threads_env.VARIABLE: str(n)})
        print(f"{n} threads: {results[n]}", file=sys.stderr, flush=True)
    from . import report, workloads
    first, last = counts[0], counts[-1]
    rows = []
    for workload_id in args.workloads.split(","):
        w = workloads.SPECS[workload_id]
        rates = [results[n]["rates"][workload_id] for n in counts]
        ratio = f"{rates[-1] / rates[0]:.2f}×" if None not in (rates[0], rates[-1]) else "—"
        rows.append([f"{w.id} {w.name}", *(report.si(r) if r else "error" for r in rates), ratio])
    lines = ["### Threads (cpp backend)", "", machine, "",
             f"Samples/s, median of {args.rounds} runs after a warm-up run, full-size workloads; one fresh process per "
             f"thread count (densefit reported {', '.join(str(results[n]['threads']) for n in counts)} threads).", "",
             *proc.table(["workload", *(f"{n} thread{'s' * (n > 1)}" for n in counts), f"{last} / {first}"], rows)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
