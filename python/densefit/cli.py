"""The ``densefit`` command (also ``python -m densefit``).

- ``densefit train`` trains a network on a built-in dataset (the default: the W1 workload, a
  2-3-4-1 network on three clusters) or on your data (``--data`` a CSV, ``.npy`` or ``.npz``
  file), prints per-epoch progress and the final metrics; ``--plot`` draws the loss curves,
  ``--save`` writes the model for ``densefit predict``.
- ``densefit predict`` applies a saved model to new data and writes the predictions as CSV.
- ``densefit sweep`` trains one network per combination of learning rates and batch sizes
  (:mod:`densefit.sweep`) and writes a CSV table and a plot of the runs.
- ``densefit info`` says which backends run here; ``densefit bench`` runs the benchmark report
  (:mod:`densefit.bench.report`).

Errors in the input (an unknown column, an unreadable file, a value a model cannot take) print
one line ``densefit: error: ...`` on stderr and exit with status 2, as argparse does for bad
options.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import importlib.util
import json
import math
import os
import sys
import time

import numpy as np

from . import activations, backends, datafiles, datasets
from . import losses as L
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
_DATASETS = sorted([*_CLASSIFICATION, "linear"])

#: Marks the JSON written beside a saved model (``<model>.json``); its format version.
SIDECAR_FORMAT = 1

_DATA_HELP = """\
data files (--data):
  .csv   a header row, then one row per sample, comma-separated (.tsv: tab-separated).
         --target names the target column; every other column is a feature and must be
         numeric. The target may be text (class labels such as "setosa").
  .npz   arrays X (n, d) and y (n,) or (n, k); y may hold text labels. --target is not
         needed (it names another array to use as y).
  .npy   one numeric 2-D array; --target is the integer index of the target column
         (-1: the last); the other columns are the features, in order.

task (--task auto): text or boolean targets, and integer-valued targets with at most
%d distinct values, are classification; others regression. Two classes: a sigmoid output
and binary_crossentropy; more: softmax and sparse_categorical_crossentropy (metric
accuracy). Regression: a linear output and mse. Classes are the sorted distinct target
values, trained as 0..K-1.""" % datafiles.MAX_AUTO_CLASSES

_SAVE_HELP = """\
--save model.npz writes the model (densefit.load_model reads it) and model.npz.json beside
it: the task, the class labels, the feature column names, the --standardize means and
standard deviations, and the model file's SHA-256. densefit predict reads both, so it
standardizes new data the same way and prints the original class labels; it refuses a JSON
that belongs to another model file."""


_DESCRIPTION = """\
Train dense neural networks on the CPU (python -m densefit is the same command).

  densefit train --data iris.csv --target species --hidden 16 --save model.npz
  densefit predict --model model.npz --data new.csv --out predictions.csv
  densefit sweep --dataset moons --lr 0.01,0.1 --batch-size 8,64 --out sweep.csv --plot sweep.png

Input errors print one line "densefit: error: ..." and exit with status 2.
'densefit COMMAND --help' describes each command's options."""


# An input problem: printed as one ``densefit: error:`` line, exit status 2.
CLIError = datafiles.DataError


# ----------------------------------------------------------------------------- option values
def _argtype(name: str):
    """Give an argparse ``type`` function the name argparse shows in its error message."""
    def wrap(fn):
        fn.__name__ = name
        return fn
    return wrap


def _number(text: str, kind, low, what: str, inclusive: bool):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if (kind is float and not math.isfinite(value)) or (value < low if inclusive else value <= low):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


@_argtype("positive integer")
def _positive_int(text):
    return _number(text, int, 1, "an integer >= 1", True)


@_argtype("non-negative integer")
def _count(text):
    return _number(text, int, 0, "an integer >= 0", True)


@_argtype("positive number")
def _positive_float(text):
    return _number(text, float, 0.0, "a number > 0", False)


@_argtype("non-negative number")
def _nonnegative_float(text):
    return _number(text, float, 0.0, "a number >= 0", True)


@_argtype("number")
def _finite_float(text):
    return _number(text, float, -math.inf, "a finite number", False)


@_argtype("fraction")
def _fraction(text):
    value = _number(text, float, 0.0, "a number between 0 and 1", False)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


@_argtype("hidden widths")
def _widths(text):
    """``"3,4"`` → ``[3, 4]``; ``""`` (or ``"none"``) → ``[]``."""
    if text.strip().lower() in ("", "none"):
        return []
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated layer widths (integers >= 1) such as 3,4, "
                                         f"or '' for no hidden layer; got {text!r}")
    return [int(p) for p in parts]


def _list_of(convert):
    """An argparse type for comma-separated values of ``convert``'s kind."""
    def parse(text):
        values = [convert(part.strip()) for part in text.split(",")]
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"values repeat in {text!r}")
        return values
    parse.__name__ = f"list of {convert.__name__}s"
    return parse


@_argtype("activation")
def _activation(text):
    try:
        return activations.canonical_name(text)
    except ValueError:
        names = sorted(name for name, code in activations.CODES.items() if code in activations.STANDALONE)
        raise argparse.ArgumentTypeError(f"unknown activation {text!r}; expected one of {', '.join(names)}") from None


# ----------------------------------------------------------------------------- the parser
def _add_data_options(p: argparse.ArgumentParser):
    source = p.add_argument_group("data (a built-in dataset or --data FILE)")
    source.add_argument("--dataset", choices=_DATASETS, default=None,
                        help="a built-in dataset (default: clusters, unless --data is given); linear is regression "
                             "(y = 6 + 4x + noise), the others binary classification")
    source.add_argument("--n", type=_positive_int, default=None,
                        help="number of samples of the built-in dataset (default: 1000)")
    source.add_argument("--data", metavar="FILE",
                        help="train on this .csv, .npy or .npz file instead of a built-in dataset (see below)")
    source.add_argument("--target", metavar="COL",
                        help="the target: a column name for .csv, a column index for .npy (-1: the last), an "
                             "array name for .npz (default: y)")
    source.add_argument("--task", choices=["auto", "classification", "regression"], default="auto",
                        help="for --data: what the target is (default: auto, see below)")
    source.add_argument("--standardize", action="store_true",
                        help="rescale each feature to mean 0 and standard deviation 1, with the statistics of "
                             "the training rows (not the validation ones); train --save stores them for predict")
    source.add_argument("--seed", type=_count, default=0,
                        help="seeds the built-in dataset, the initial weights and the sample order (default: 0)")
    return source


def _add_network_options(p: argparse.ArgumentParser):
    net = p.add_argument_group("network and optimizer")
    net.add_argument("--activation", type=_activation, default="relu", metavar="NAME",
                     help="activation of the hidden layers: "
                          f"{', '.join(activations.REGISTRY[c].name for c in activations.STANDALONE)} (default: relu)")
    net.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sgd", help="the optimizer (default: sgd)")
    net.add_argument("--momentum", type=_nonnegative_float, default=0.0, metavar="M",
                     help="momentum of the sgd optimizer (default: 0)")
    net.add_argument("--backend", default="auto", metavar="NAME",
                     help="auto (the fastest available), cpp, numba or numpy (default: auto)")
    net.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                     help="floating-point precision of the weights and data (default: float32)")
    return net


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densefit", description=_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    train = sub.add_parser(
        "train", formatter_class=raw, help="train on a built-in dataset (defaults: the W1 workload) or a data file",
        description="Train a dense network and print per-epoch progress and the final metrics (loss; accuracy\n"
                    "for classification; the val_ ones too with --validation-split). Without options: the\n"
                    "2-3-4-1 network of the W1 workload on the clusters dataset, SGD, batch 1, 150 epochs.",
        epilog=_DATA_HELP + "\n\nplot (--plot FILE.png): the loss curves (and accuracy; val_ curves with "
                            "--validation-split);\nfor classification on 2 features a second panel beside them "
                            "shows the decision\nboundary over the data, in the original feature units.\n\n"
                            + _SAVE_HELP)
    data = _add_data_options(train)
    data.add_argument("--validation-split", type=_fraction, default=None, metavar="F",
                       help="hold out the last fraction F of the rows (before shuffling) as validation data")
    opts = _add_network_options(train)
    opts.add_argument("--hidden", type=_widths, default="3,4", metavar="WIDTHS",
                      help="hidden layer widths, comma-separated ('' for none: a linear or logistic model; "
                           "default: 3,4)")
    opts.add_argument("--lr", type=_positive_float, default=0.01, help="learning rate (default: 0.01)")
    opts.add_argument("--batch-size", type=_positive_int, default=1, metavar="N",
                      help="rows per optimizer step (default: 1, plain SGD)")
    opts.add_argument("--epochs", type=_count, default=150, metavar="N",
                      help="passes over the training rows (default: 150)")
    opts.add_argument("--verbose", type=int, choices=[0, 1, 2], default=2,
                      help="0 silent, 1 a progress bar, 2 a line per epoch (default: 2)")
    out = train.add_argument_group("output")
    out.add_argument("--plot", metavar="FILE.png",
                     help="write the loss curves (plus the decision boundary for 2-feature classification) to this "
                          "image; needs matplotlib")
    out.add_argument("--save", metavar="MODEL.npz",
                     help="save the trained model here, and its preprocessing in MODEL.npz.json (see below)")

    predict = sub.add_parser(
        "predict", formatter_class=raw, help="apply a saved model (densefit train --save) to new data",
        description="Predict with a model saved by densefit train --save and write one CSV row per input row:\n"
                    "the column prediction (the class label for classification, the value for regression)\n"
                    "and, for classification, a probability column p_<label> per class.",
        epilog="The data file is read as for train. CSV: when the model came from a CSV its feature\ncolumns "
               "are taken by name (others, such as the target, are ignored); else every\ncolumn but --target is a "
               "feature. .npy: every column is a feature unless --target\nnames one to drop. .npz: the array X.\n\n"
               + _SAVE_HELP + "\n\nA model without that JSON (saved from Python) predicts on the data as given, with "
                              "class\nindices 0..K-1 as labels.")
    predict.add_argument("--model", required=True, metavar="MODEL.npz", help="the saved model")
    predict.add_argument("--data", required=True, metavar="FILE", help="the .csv, .npy or .npz file to predict on")
    predict.add_argument("--target", metavar="COL",
                         help="a column of the data to ignore (the target, when present): a name for .csv, an index "
                              "for .npy")
    predict.add_argument("--out", metavar="FILE.csv", help="write the predictions here (default: to stdout)")
    predict.add_argument("--backend", default=None, metavar="NAME",
                         help="auto, cpp, numba or numpy (default: the one the model was saved with, if available)")

    sweep = sub.add_parser(
        "sweep", formatter_class=raw, help="train one network per learning rate and batch size, and compare",
        description="Train the same network once per combination of --lr, --batch-size (and --hidden)\n"
                    "values, print a table of the runs and the best one, and write them as CSV and a plot.",
        epilog=_DATA_HELP + "\n\nThe runs' seeds derive from --seed and each run's values (densefit.sweep), so "
                            "a sweep\nis reproducible whatever --n-jobs. The best run has the lowest best_val_loss "
                            "(the\nlowest final_loss with --validation-split 0).")
    data = _add_data_options(sweep)
    data.add_argument("--validation-split", type=float, default=0.2, metavar="F",
                       help="hold out the last fraction F of the rows as validation data (default: 0.2; 0: none)")
    _add_network_options(sweep)
    grid = sweep.add_argument_group("the grid")
    grid.add_argument("--lr", type=_list_of(_positive_float), default=[0.001, 0.01, 0.1], metavar="LRS",
                      help="learning rates, comma-separated (default: 0.001,0.01,0.1)")
    grid.add_argument("--batch-size", type=_list_of(_positive_int), default=[1, 32, 256], metavar="SIZES",
                      help="batch sizes, comma-separated (default: 1,32,256)")
    grid.add_argument("--hidden", type=_widths, nargs="+", default=[[3, 4]], metavar="WIDTHS",
                      help="hidden layer widths, comma-separated (default: 3,4); several architectures separated "
                           "by spaces (e.g. --hidden 3,4 16 '') become a grid dimension")
    grid.add_argument("--epochs", type=_positive_int, default=150, metavar="N",
                      help="epochs of every run (default: 150)")
    grid.add_argument("--n-jobs", type=_positive_int, default=1, metavar="N",
                      help="train in this many processes at once (default: 1)")
    grid.add_argument("--target-loss", type=_finite_float, default=None, metavar="LOSS",
                      help="report each run's first epoch whose val_loss (loss without validation) is at or below "
                           "LOSS (column epochs_to_target)")
    grid.add_argument("--verbose", type=int, choices=[0, 1], default=1,
                      help="1: a progress bar over the runs on stderr (default: 1)")
    out = sweep.add_argument_group("output")
    out.add_argument("--out", metavar="FILE.csv", help="write one row per run: its values and results")
    out.add_argument("--plot", metavar="FILE.png", help="plot --metric over the grid; needs matplotlib")
    out.add_argument("--metric", default=None,
                     choices=["final_loss", "final_val_loss", "best_val_loss", "seconds", "samples_per_s",
                              "epochs_to_target"],
                     help="what --plot shows (default: best_val_loss, final_loss without validation: what picks "
                          "the best run)")

    sub.add_parser("info", help="print which backends are available and which one 'auto' picks")
    bench_report.add_arguments(sub.add_parser("bench", help="benchmark densefit's backends and the installed peers on "
                                        "the workloads W1-W6; prints a markdown report (peers missing are skipped)"))
    return parser


# ----------------------------------------------------------------------------- the problem
class _Problem:
    """The data and what the network's output must be for them."""

    def __init__(self, name, X, y, task, classes, features=None, target=None, dataset=None):
        self.name, self.X, self.y, self.task, self.classes = name, X, y, task, classes
        self.features, self.target, self.dataset = features, target, dataset
        if task == "regression":
            self.n_outputs = 1 if y.ndim == 1 else y.shape[1]
        else:
            self.n_outputs = 1 if len(classes) == 2 else len(classes)

    def head(self):
        """``(loss, output layer kwargs, metrics)``."""
        if self.task == "regression":
            return "mse", {"units": self.n_outputs}, None
        if len(self.classes) == 2:
            return "binary_crossentropy", {"units": 1, "activation": "sigmoid"}, ["accuracy"]
        return "sparse_categorical_crossentropy", {"units": len(self.classes), "activation": "softmax"}, ["accuracy"]

    def describe(self) -> str:
        if self.dataset is not None:
            return f"{self.dataset} {self.X.shape[0]}x{self.X.shape[1]}"
        what = (f"target column {self.target}" if isinstance(self.target, int) else f"target {self.target!r}")
        what += f", {self.task}"
        if self.task == "classification":
            plain = all(isinstance(c, (int, float)) or (c and c.strip() == c and "," not in c) for c in self.classes)
            shown = ", ".join(map(str if plain else repr, self.classes[:8]))
            shown += ", ..." if len(self.classes) > 8 else ""
            what += f", {len(self.classes)} classes: {shown}"
        return f"{self.name} {self.X.shape[0]}x{self.X.shape[1]} ({what})"


def _problem(args) -> _Problem:
    if args.data is not None:
        if args.dataset is not None:
            raise CLIError("give --dataset or --data, not both")
        if args.n is not None:
            raise CLIError("--n sets the size of a built-in dataset; it does not apply to --data")
        X, y, features, target = datafiles.read_training_data(args.data, args.target)
        task, y, classes = datafiles.encode_targets(args.data, target, y, args.task)
        return _Problem(os.path.basename(args.data), X, y, task, classes, features, target)
    for option, value in (("--target", args.target), ("--task", None if args.task == "auto" else args.task)):
        if value is not None:
            raise CLIError(f"{option} applies to --data FILE; the built-in datasets have their own targets")
    name = args.dataset or "clusters"
    n = 1000 if args.n is None else args.n
    if name == "linear":
        X, y = datasets.make_linear(n=n, seed=args.seed)
        return _Problem(name, X, y, "regression", None, dataset=name)
    X, y = _CLASSIFICATION[name](n, args.seed)
    return _Problem(name, X, y, "classification", [0, 1], dataset=name)


def _check_outputs(args, *options: str) -> None:
    """Fail before any training when an output file's folder does not exist."""
    for option in options:
        path = getattr(args, option)
        if path is None:
            continue
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path) or not os.path.isdir(folder):
            what = "is a folder" if os.path.isdir(path) else f"its folder {folder} does not exist"
            raise CLIError(f"cannot write --{option} {path}: {what}")


def _training_rows(n: int, validation_split: float | None) -> int:
    """How many leading rows fit trains on (the rest validate: fit's validation_split)."""
    return n if validation_split is None else max(1, int(np.floor(n * (1.0 - validation_split))))


def _standardized(X: np.ndarray, validation_split):
    """``X`` standardized with the statistics of its training rows, and the Standardizer."""
    _, scaler = datasets.standardize(X[:_training_rows(X.shape[0], validation_split)])
    return scaler.transform(X), scaler


def _model(n_features: int, hidden: list[int], head, args, lr: float, seed: int) -> Sequential:
    loss, out, metrics = head
    layers = [Dense(w, activation=args.activation) for w in hidden] + [Dense(**out)]
    layers[0].input_dim = n_features
    model = Sequential(layers, seed=seed, dtype=args.dtype, backend=args.backend)
    optimizer = get_optimizer(args.optimizer)
    optimizer = type(optimizer)(learning_rate=lr, **({"momentum": args.momentum} if args.optimizer == "sgd" else {}))
    model.compile(loss=loss, optimizer=optimizer, metrics=metrics)
    return model


def _network(problem: _Problem, hidden: list[int]) -> str:
    return "-".join(map(str, [problem.X.shape[1], *hidden, problem.n_outputs]))


# ----------------------------------------------------------------------------- plotting
def _plot_modules():
    """:mod:`densefit.plot` (which draws on Figures made directly: no pyplot, no window)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise CLIError('--plot needs matplotlib: pip install matplotlib (or "densefit[plot]")')
    from . import plot
    return plot


def _save_figure(fig, path: str) -> None:
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None


class _StandardizingModel:
    """A model seen through --standardize: ``predict`` takes features in their original units,
    so plots can show the data as it was given."""

    def __init__(self, model: Sequential, scaler):
        self._model, self._scaler = model, scaler

    def predict(self, X, *args, **kwargs):
        return self._model.predict(self._scaler.transform(np.asarray(X, dtype=np.float64)), *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


def _plot_training(path: str, history, model, problem: _Problem, scaler) -> None:
    """The loss curves (and a panel per metric); for classification on 2 features, the decision
    boundary beside them, over the data in its original units."""
    plot = _plot_modules()
    if not (problem.task == "classification" and problem.X.shape[1] == 2):
        _save_figure(plot.history(history), path)
        return
    from matplotlib.figure import Figure
    metrics = [k for k in history.history if not k.startswith("val_") and k not in ("loss", "learning_rate")]
    fig = Figure(figsize=(5.0 * (1 + len(metrics)) + 6.0, 5.0), layout="constrained")
    *curves, boundary = fig.subplots(1, 2 + len(metrics))
    plot.history(history, metrics=metrics, ax=curves)
    plot.decision_boundary(model if scaler is None else _StandardizingModel(model, scaler), problem.X, problem.y,
                           ax=boundary)
    if problem.features:
        boundary.set_xlabel(problem.features[0])
        boundary.set_ylabel(problem.features[1])
    if problem.dataset is None:  # the legend's "class k" as the data's own labels
        handles, labels = boundary.get_legend_handles_labels()
        names = {f"class {k}": str(c) for k, c in enumerate(problem.classes)}
        boundary.legend(handles, [names.get(label, label) for label in labels], loc="best", framealpha=0.8)
    _save_figure(fig, path)


# ----------------------------------------------------------------------------- save sidecar
def _sidecar_path(model_path: str) -> str:
    return model_path + ".json"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _save(path: str, model: Sequential, problem: _Problem, scaler) -> str:
    from .savefile import write_atomically
    try:
        model.save(path)
        info = {
            "densefit_cli": SIDECAR_FORMAT,
            "model_sha256": _sha256(path),
            "source": problem.dataset or problem.name,
            "task": problem.task,
            "classes": problem.classes,
            "target": problem.target,
            "features": problem.features,
            "n_features": int(problem.X.shape[1]),
            "standardize": None if scaler is None else {"mean": scaler.mean.tolist(), "std": scaler.std.tolist()},
        }
        text = json.dumps(info, indent=1) + "\n"
        sidecar = _sidecar_path(path)
        write_atomically(sidecar, lambda f: f.write(text.encode()))
    except OSError as exc:
        raise CLIError(f"cannot write {exc.filename or path}: {exc.strerror or exc}") from None
    return sidecar


def _read_sidecar(model_path: str) -> dict | None:
    path = _sidecar_path(model_path)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot read {path}: {exc}") from None
    if not isinstance(info, dict) or info.get("densefit_cli") != SIDECAR_FORMAT:
        raise CLIError(f"{path} is not a densefit train --save description (format {SIDECAR_FORMAT})")
    if info.get("model_sha256") != _sha256(model_path):
        raise CLIError(f"{path} was written for another version of {model_path} (the model file changed after "
                       f"densefit train --save); retrain with --save, or delete {path} to predict without it")
    try:
        if info.get("standardize") is not None:
            s = info["standardize"]
            info["standardize"] = datasets.Standardizer(mean=np.asarray(s["mean"], dtype=np.float64),
                                                        std=np.asarray(s["std"], dtype=np.float64))
        if info.get("features") is not None and not all(isinstance(c, str) for c in info["features"]):
            raise ValueError("features must be column names")
    except (KeyError, TypeError, ValueError) as exc:
        raise CLIError(f"{path} is damaged: {exc}") from None
    return info


# ----------------------------------------------------------------------------- the commands
def _train(args) -> dict:
    _check_outputs(args, "save", "plot")
    problem = _problem(args)
    if args.plot:
        _plot_modules()  # before training: a missing matplotlib fails at once
        if args.epochs == 0:
            raise CLIError("--plot needs at least one epoch to draw (--epochs 0 given)")
    X, y, scaler = problem.X, problem.y, None
    if args.standardize:
        X, scaler = _standardized(X, args.validation_split)
    model = _model(X.shape[1], args.hidden, problem.head(), args, args.lr, args.seed)
    extras = "".join([", standardized" if scaler is not None else "",
                      f", validation {args.validation_split}" if args.validation_split else ""])
    print(f"densefit: {problem.describe()}, network {_network(problem, args.hidden)}, "
          f"{args.optimizer} lr {args.lr}, batch {args.batch_size}, {args.epochs} epochs, backend {model.backend}"
          + extras)
    start = time.perf_counter()
    history = model.fit(X, y, epochs=args.epochs, batch_size=args.batch_size, verbose=args.verbose,
                        validation_split=args.validation_split)
    seconds = time.perf_counter() - start
    n_train = _training_rows(X.shape[0], args.validation_split)
    result = {"backend": model.backend, "seconds": round(seconds, 4),
              "samples_per_second": round(args.epochs * n_train / max(seconds, 1e-9))}
    result.update(model.evaluate(X[:n_train], y[:n_train]))
    if args.validation_split:
        result.update({f"val_{k}": v for k, v in model.evaluate(X[n_train:], y[n_train:]).items()})
    if problem.dataset == "linear" and not args.hidden:  # y = intercept + slope x, in the data's units
        W, b = model.get_weights()
        slope, intercept = float(np.ravel(W)[0]), float(np.ravel(b)[0])
        if scaler is not None:
            slope /= float(scaler.std[0])
            intercept -= slope * float(scaler.mean[0])
        result.update(intercept=intercept, slope=slope)
    print("final: " + json.dumps(result))
    if args.save:
        sidecar = _save(args.save, model, problem, scaler)
        print(f"saved: {args.save} (and {sidecar})")
    if args.plot:
        _plot_training(args.plot, history, model, problem, scaler)
        print(f"plot: {args.plot}")
    return result


def _prediction_features(args, info: dict | None, n_features: int) -> np.ndarray:
    path, kind = args.data, datafiles.file_kind(args.data)
    if kind == "csv":
        table = datafiles.Table(path)
        if info is not None and info.get("features") is not None:
            missing = [c for c in info["features"] if c not in table.columns]
            if missing:
                raise CLIError(f"{path} lacks the model's feature columns {', '.join(map(repr, missing))}; its "
                               f"columns: {table.listing()}")
            names = info["features"]
        else:
            if args.target is not None:
                table.index(args.target)
            names = [c for c in table.columns if c != args.target]
        X = table.features(names)
        where = f"{len(names)} columns ({', '.join(names)})"
    elif kind == "npz":
        if args.target is not None:
            raise CLIError("--target does not apply to an .npz file: predict reads its array X")
        arrays = datafiles.npz_arrays(path)
        if "X" not in arrays:
            raise CLIError(f"{path} has no array 'X' (the features); its arrays: {', '.join(arrays) or '(none)'}")
        X = datafiles.as_features(path, arrays["X"])
        where = f"{X.shape[1]} columns"
    else:
        a = datafiles.npy_array(path)
        if args.target is not None:
            a = np.delete(a, datafiles.column_index(path, args.target, a.shape[1]), axis=1)
        X = datafiles.as_features(path, a)
        where = f"{X.shape[1]} columns" + ("" if args.target is not None else
                                            " (if one is the target, drop it with --target INDEX)")
    if X.shape[1] != n_features:
        raise CLIError(f"the model takes {n_features} features, but {path} gives {where}")
    return X


def _predict(args) -> None:
    from .model import load_model
    _check_outputs(args, "out")
    try:
        model = load_model(args.model, backend=args.backend)
    except OSError as exc:
        raise CLIError(f"cannot read {args.model}: {exc.strerror or exc}") from None
    if model.plan is None:
        raise CLIError(f"{args.model} holds a model without weights (never built or trained)")
    info = _read_sidecar(args.model)
    if info is None:
        print(f"densefit: note: no {_sidecar_path(args.model)} beside the model: predicting on the data as given, "
              "with class indices as labels", file=sys.stderr)
    elif info.get("n_features") != model.plan.n_features:
        raise CLIError(f"{_sidecar_path(args.model)} describes {info.get('n_features')} features, the model takes "
                       f"{model.plan.n_features}")
    X = _prediction_features(args, info, model.plan.n_features)
    if info is not None and info.get("standardize") is not None:
        X = info["standardize"].transform(X)
    outputs = model.predict(X)  # the model's dtype: str() gives each value's shortest exact text
    if model.plan.loss == L.MSE:
        k = outputs.shape[1]
        header = ["prediction"] if k == 1 else [f"prediction_{j}" for j in range(k)]
        rows = ([str(v) for v in r] for r in outputs)
    elif model.plan.loss == L.BINARY_CROSSENTROPY and outputs.shape[1] > 1:  # yes/no outputs (saved from Python)
        k = outputs.shape[1]
        header = [f"prediction_{j}" for j in range(k)] + [f"p_{j}" for j in range(k)]
        rows = ([str(int(v > 0.5)) for v in r] + [str(v) for v in r] for r in outputs)
    else:
        p = np.column_stack([1 - outputs[:, 0], outputs[:, 0]]) if outputs.shape[1] == 1 else outputs
        classes = None if info is None else info.get("classes")
        if classes is None or len(classes) != p.shape[1]:
            classes = list(range(p.shape[1]))
        header = ["prediction"] + [f"p_{c}" for c in classes]
        rows = ([str(classes[j])] + [str(v) for v in r] for j, r in zip(np.argmax(p, axis=1), p))
    if args.out is None:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return
    try:
        with open(args.out, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
    except OSError as exc:
        raise CLIError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    print(f"densefit: {X.shape[0]} predictions written to {args.out}")


def _sweep_model(lr, *, n_features, hidden, loss, out, metrics, activation, optimizer, momentum, dtype, backend,
                 seed=0):
    """``build`` for :func:`densefit.sweep.sweep`: module level, so that worker processes can
    import it (bound to the fixed settings with :func:`functools.partial`)."""
    settings = argparse.Namespace(activation=activation, optimizer=optimizer, momentum=momentum, dtype=dtype,
                                  backend=backend)
    widths = hidden if isinstance(hidden, list) else [] if hidden == "none" else [int(w) for w in hidden.split("-")]
    return _model(n_features, widths, (loss, out, metrics), settings, lr, seed)


def _hidden_label(widths: list[int]) -> str:
    return "-".join(map(str, widths)) if widths else "none"


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _short(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _sweep(args) -> None:
    if not 0 <= args.validation_split < 1:
        raise CLIError(f"--validation-split must be in [0, 1), got {args.validation_split}")
    split = args.validation_split or None
    if args.metric in ("final_val_loss", "best_val_loss") and not split:
        raise CLIError(f"--metric {args.metric} needs validation data (--validation-split > 0)")
    if args.metric == "epochs_to_target" and args.target_loss is None:
        raise CLIError("--metric epochs_to_target needs --target-loss")
    _check_outputs(args, "out", "plot")
    problem = _problem(args)
    if args.plot:
        _plot_modules()
    X, scaler = problem.X, None
    if args.standardize:
        X, scaler = _standardized(X, split)
    loss, out, metrics = problem.head()
    backend = backends.resolve(args.backend)
    grid = {"lr": args.lr, "batch_size": args.batch_size}
    fixed = dict(n_features=X.shape[1], loss=loss, out=out, metrics=metrics, activation=args.activation,
                 optimizer=args.optimizer, momentum=args.momentum, dtype=args.dtype, backend=backend)
    architectures = []
    for widths in args.hidden:
        if _hidden_label(widths) not in architectures:
            architectures.append(_hidden_label(widths))
    if len(architectures) > 1:
        grid["hidden"] = architectures
    else:
        fixed["hidden"] = args.hidden[0]
    build = functools.partial(_sweep_model, **fixed)
    from .sweep import sweep as run_sweep
    runs = math.prod(len(v) for v in grid.values())
    sizes = " x ".join(f"{name} {len(values)}" for name, values in grid.items())
    network = "network " + (_network(problem, args.hidden[0]) if len(architectures) == 1 else
                            f"{problem.X.shape[1]}-[hidden]-{problem.n_outputs}")
    print(f"densefit sweep: {problem.describe()}, {network}, {args.optimizer}, {runs} runs ({sizes}), "
          f"{args.epochs} epochs, " + (f"validation {split}" if split else "no validation") +
          (", standardized" if scaler is not None else "") +
          f", backend {backend}, {args.n_jobs} job{'s' if args.n_jobs > 1 else ''}", flush=True)
    result = run_sweep(build, X, problem.y, grid, epochs=args.epochs, validation_split=split, n_jobs=args.n_jobs,
                       seed=args.seed, target=args.target_loss, verbose=args.verbose)
    columns = [*grid, "final_loss", "final_val_loss", "best_val_loss", "best_epoch",
               *(["epochs_to_target"] if args.target_loss is not None else []), "seconds", "samples_per_s",
               "diverged"]
    table = [columns] + [[_short(row[c]) for c in columns] for row in result.rows]
    widths = [max(len(r[j]) for r in table) for j in range(len(columns))]
    for r in table:
        print("  ".join(cell.rjust(w) for cell, w in zip(r, widths)))
    best = result.best
    print("best: " + ", ".join(f"{k} {v}" for k, v in result.params(best).items())
          + f" ({result.metric} {_short(best[result.metric])})")
    if args.out:
        names = [c for c in best if c != "history"]
        try:
            with open(args.out, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(names)
                writer.writerows([_cell(row[c]) for c in names] for row in result.rows)
        except OSError as exc:
            raise CLIError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        print(f"table: {args.out}")
    if args.plot:
        metric = args.metric or result.metric
        varied = [name for name, values in grid.items() if len(values) > 1] or ["lr"]
        plot = _plot_modules()
        fig = plot.sweep(result, varied[0], varied[1] if len(varied) > 1 else None, metric=metric)
        _save_figure(fig, args.plot)
        print(f"plot: {args.plot}")


_COMMANDS = {"train": _train, "predict": _predict, "sweep": _sweep}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    try:
        return _run(args, argv)
    except BrokenPipeError:  # stdout went away (densefit predict ... | head): stop quietly
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        except (OSError, ValueError, AttributeError):
            pass
        return 1


def _run(args, argv: list[str]) -> int:
    if args.command == "info":
        print(json.dumps(backend_info(), indent=2))
        return 0
    if args.command == "bench":
        return bench_report.run(args, " ".join(["densefit", *argv]))
    try:
        _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("densefit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise
    except (CLIError, ValueError, TypeError, RuntimeError, ArithmeticError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"densefit: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
