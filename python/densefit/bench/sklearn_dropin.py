"""Fit time and held-out score of ``densefit.sklearn`` against ``sklearn.neural_network``: the
same estimator call with the import changed, on scikit-learn's bundled data sets and a synthetic
10⁶-row set. Median of ``--rounds`` fits each (the 10⁶-row set once each unless asked), both in
this process, one after the other.

    python -m densefit.bench.sklearn_dropin [--rounds 3] [--rows 1000000] [--big-rounds 1] [--sets NAMES] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings



def _cases(rows: int):
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, make_classification

    yield "load_digits", load_digits(return_X_y=True), "classifier", {}
    yield "load_breast_cancer", load_breast_cancer(return_X_y=True), "classifier", {}
    yield "load_diabetes", load_diabetes(return_X_y=True), "regressor", {"max_iter": 1000, "learning_rate_init": 0.01}
    X, y = make_classification(n_samples=rows, n_features=20, n_informative=10, random_state=0)
    yield f"synthetic {rows:.0e} rows", (X, y), "classifier", {"hidden_layer_sizes": (64,), "max_iter": 5}


def _time_fit(make, X_train, y_train, X_test, y_test, rounds: int):
    """Median fit seconds of ``rounds`` fresh ``make()`` estimators (a pipeline or a bare one), the
    held-out score and the epochs of the last."""
    times, score = [], None
    for _ in range(rounds):
        est = make()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            est.fit(X_train, y_train)
            times.append(time.perf_counter() - start)
        score = est.score(X_test, y_test)
    return statistics.median(times), score, (est[-1] if hasattr(est, "steps") else est).n_iter_


def run(rounds: int = 3, rows: int = 1_000_000, big_rounds: int = 1, sets: tuple[str, ...] | None = None) -> str:
    """Two timings per data set and library: the whole pipeline (scaler included, as a user's
    code runs it) and the estimator alone on the already scaled data (what the import changes).
    ``sets``: the names of the data sets to run (``load_digits``, ..., ``synthetic``); all by default."""
    from sklearn import neural_network as sk
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .. import sklearn as dk

    lines = ["| data | task | scikit-learn fit | densefit fit | speed-up | estimator alone: scikit-learn / densefit "
             "| speed-up | scikit-learn score | densefit score | epochs (sk / df) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, (X, y), task, params in _cases(rows):
        if sets is not None and name.split()[0] not in sets:
            continue
        X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
        scaler = StandardScaler().fit(X_train)
        S_train, S_test = scaler.transform(X_train), scaler.transform(X_test)
        n_rounds = big_rounds if len(X) > 100_000 else rounds
        piped, alone = [], []
        for module in (sk, dk):
            cls = module.MLPClassifier if task == "classifier" else module.MLPRegressor
            make = lambda cls=cls: make_pipeline(StandardScaler(), cls(random_state=0, **params))  # noqa: E731
            piped.append(_time_fit(make, X_train, y_train, X_test, y_test, n_rounds))
            bare = lambda cls=cls: cls(random_state=0, **params)  # noqa: E731
            alone.append(_time_fit(bare, S_train, y_train, S_test, y_test, n_rounds))
        (t_sk, s_sk, e_sk), (t_df, s_df, e_df) = piped
        (a_sk, _, _), (a_df, _, _) = alone
        lines.append(f"| {name} | {task} | {t_sk:.3f} s | {t_df:.3f} s | {t_sk / t_df:.1f}× | {a_sk:.3f} s / {a_df:.3f} s "
                     f"| {a_sk / a_df:.1f}× | {s_sk:.4f} | {s_df:.4f} | {e_sk} / {e_df} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="fits per estimator on the bundled sets (median)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the synthetic set")
    parser.add_argument("--big-rounds", type=int, default=1, help="fits per estimator on the synthetic set")
    parser.add_argument("--sets", help="comma-separated data sets (default: all): load_digits, load_breast_cancer, "
                                       "load_diabetes, synthetic")
    parser.add_argument("--out", help="also write the markdown table here")
    args = parser.parse_args(argv)
    table = run(args.rounds, args.rows, args.big_rounds, tuple(args.sets.split(",")) if args.sets else None)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
