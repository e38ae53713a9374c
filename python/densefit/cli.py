"""The ``densefit`` command: ``densefit train`` trains a network on a built-in dataset and
prints per-epoch progress and the final metrics; ``densefit info`` says which backends run here;
``densefit bench`` runs the benchmark report (:mod:`densefit.bench.report`)."""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from . import datasets
from .bench import report as bench_report   # the standard library only, until it runs
from .backends import backend_info
from .layers import Dense
from .model import Sequential
from .optimizers import get as get_optimizer
from .optimizers import BY_NAME as OPTIMIZERS  # name → class

_CLASSIFICATION = {
    "clusters": lambda n, seed: datasets.make_clusters(n=n, seed=seed),
    "moons": lambda n, seed: datasets.make_moons(n=n, seed=seed),
    "xor": lambda n, seed: datasets.make_xor(n=n, seed=seed),
    "circle": lambda n, seed: datasets.make_patterns("circle", n=n, seed=seed),
    "diamond": lambda n, seed: datasets.make_patterns("diamond", n=n, seed=seed),
    "teacher": lambda n, seed: datasets.make_teacher(n, 32, n_classes=2, seed=seed),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densefit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train on a built-in dataset (defaults: the W1 workload)")
    train.add_argument("--dataset", choices=sorted([*_CLASSIFICATION, "linear"]), default="clusters")
    train.add_argument("--n", type=int, default=1000, help="number of samples")
    train.add_argument("--hidden", default="3,4", help="hidden widths, comma-separated ('' for none)")
    train.add_argument("--activation", default="relu")
    train.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd")
    train.add_argument("--lr", type=float, default=0.01)
    train.add_argument("--momentum", type=float, default=0.0)
    train.add_argument("--batch-size", type=int, default=1)
    train.add_argument("--epochs", type=int, default=150)
    train.add_argument("--backend", default="auto")
    train.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--verbose", type=int, choices=[0, 1, 2], default=2)
    sub.add_parser("info", help="print which backends are available and which one 'auto' picks")
    bench_report.add_arguments(sub.add_parser("bench", help="benchmark densefit's backends and the installed peers on "
                                        "the workloads W1-W6; prints a markdown report (peers missing are skipped)"))
    return parser


def _train(args) -> dict:
    hidden = [int(w) for w in args.hidden.split(",") if w.strip()]
    if args.dataset == "linear":
        X, y = datasets.make_linear(n=args.n, seed=args.seed)
        loss, out, metrics = "mse", Dense(1), None
    else:
        X, y = _CLASSIFICATION[args.dataset](args.n, args.seed)
        loss, out, metrics = "binary_crossentropy", Dense(1, activation="sigmoid"), ["accuracy"]
    layers = [Dense(w, activation=args.activation) for w in hidden] + [out]
    layers[0].input_dim = X.shape[1]
    model = Sequential(layers, seed=args.seed, dtype=args.dtype, backend=args.backend)
    optimizer = get_optimizer(args.optimizer)
    optimizer = type(optimizer)(learning_rate=args.lr, **({"momentum": args.momentum} if args.optimizer == "sgd" else {}))
    model.compile(loss=loss, optimizer=optimizer, metrics=metrics)
    print(f"densefit: {args.dataset} {X.shape[0]}x{X.shape[1]}, network {'-'.join(map(str, [X.shape[1], *hidden, 1]))}, "
          f"{args.optimizer} lr {args.lr}, batch {args.batch_size}, {args.epochs} epochs, backend {model.backend}")
    start = time.perf_counter()
    model.fit(X, y, epochs=args.epochs, batch_size=args.batch_size, verbose=args.verbose)
    seconds = time.perf_counter() - start
    result = {"backend": model.backend, "seconds": round(seconds, 4),
              "samples_per_second": round(args.epochs * X.shape[0] / seconds), **model.evaluate(X, y)}
    if args.dataset == "linear":
        W, b = model.get_weights()
        result.update(intercept=float(np.ravel(b)[0]), slope=float(np.ravel(W)[0]))
    print("final: " + json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    if args.command == "info":
        print(json.dumps(backend_info(), indent=2))
        return 0
    if args.command == "bench":
        return bench_report.run(args, " ".join(["densefit", *argv]))
    try:
        _train(args)
    except (ValueError, TypeError) as exc:
        print(f"densefit: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
