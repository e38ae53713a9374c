"""densefit.sweep: every combination trains from the sweep's seed (unless the grid varies it), so
the rows are the same to 1e-12 in this process, in local worker processes
and on a Dask cluster; the summaries agree with the histories; bad arguments fail up front."""

import math
import sys
import threading

import numpy as np
import pytest

import densefit as df
from densefit import datasets
from densefit.sweep import FIT_KEYS, SweepResult, sweep

X, Y = datasets.make_moons(n=200, noise=0.2, seed=0)
SUMMARY = ("final_loss", "final_val_loss", "best_val_loss", "best_epoch", "epochs_to_target", "seed", "diverged")


# Builders live at module level so that worker processes can load them by name (spawn re-imports
# this module: pytest puts tests/ on sys.path, which spawned processes inherit).
def build_mlp(units, lr, seed, activation="relu"):
    model = df.Sequential([df.Dense(units, activation=activation, input_dim=2), df.Dense(1, activation="sigmoid")],
                          seed=seed, dtype="float64")
    model.compile(loss="binary_crossentropy", optimizer=df.SGD(lr, momentum=0.9), metrics=["accuracy"])
    return model


def build_fixed_seed(lr):
    """A build without a seed parameter: it fixes its own."""
    return build_mlp(4, lr, seed=7)


def build_regression(lr, seed):
    model = df.Sequential([df.Dense(1, input_dim=1)], seed=seed, dtype="float64")
    model.compile(loss="mse", optimizer=df.SGD(lr))
    return model


def build_uncompiled(lr, seed):
    return df.Sequential([df.Dense(1, input_dim=2)], seed=seed)


def build_not_a_model(lr, seed):
    return "a model"


class LockedBuild:
    """A callable that no pickler can carry to another process (it holds a lock)."""

    def __init__(self):
        self.lock = threading.Lock()

    def __call__(self, lr, seed):
        return build_mlp(4, lr, seed)


GRID = {"units": [3, 8], "lr": [0.05, 0.3], "batch_size": [32, 200]}


def assert_same_rows(a, b, tol=1e-12):
    """Two sweeps' rows agree: grid values, summaries and every history series (not the timings)."""
    assert len(a.rows) == len(b.rows)
    for ra, rb in zip(a.rows, b.rows):
        assert a.params(ra) == b.params(rb)
        for key in SUMMARY:
            if isinstance(ra[key], float):
                assert rb[key] == pytest.approx(ra[key], rel=0, abs=tol), key
            else:
                assert ra[key] == rb[key], key
        ha, hb = ra["history"], rb["history"]
        assert ha.epoch == hb.epoch and ha.history.keys() == hb.history.keys()
        for key in ha.history:
            np.testing.assert_allclose(hb.history[key], ha.history[key], rtol=0, atol=tol, err_msg=key)


@pytest.fixture(scope="module")
def serial():
    return sweep(build_mlp, X, Y, GRID, epochs=6, validation_split=0.25, target=0.5, verbose=0)


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)  # under load a worker may register after the client connects
        yield client


# ----------------------------------------------------------------------------- what a sweep returns
def test_rows_cover_the_grid_in_order_and_summarize_their_histories(serial):
    assert isinstance(serial, SweepResult) and len(serial) == 8 and serial.names == ["units", "lr", "batch_size"]
    assert [serial.params(r) for r in serial.rows] == [
        {"units": u, "lr": lr, "batch_size": b} for u in [3, 8] for lr in [0.05, 0.3] for b in [32, 200]]
    for row in serial.rows:
        h = row["history"]
        assert isinstance(h, df.History) and len(h.epoch) == 6
        loss, val = h.history["loss"], h.history["val_loss"]
        assert row["final_loss"] == loss[-1] and row["final_val_loss"] == val[-1]
        assert row["best_val_loss"] == min(val) and row["best_epoch"] == int(np.argmin(val)) + 1
        reached = [i + 1 for i, v in enumerate(val) if v <= 0.5]
        assert row["epochs_to_target"] == (reached[0] if reached else None)
        assert row["seconds"] > 0 and row["samples_per_s"] > 0 and row["diverged"] is False
        assert row["seed"] == 0  # every cell starts from sweep's seed
    assert serial.best is min(serial.rows, key=lambda r: r["best_val_loss"])
    assert serial.metric == "best_val_loss" and "best_val_loss=" in repr(serial)
    frame = serial.to_dataframe()
    assert list(frame.columns) == ["units", "lr", "batch_size", "seed", "final_loss", "final_val_loss",
                                   "best_val_loss", "best_epoch", "epochs_to_target", "seconds", "samples_per_s",
                                   "diverged"]
    assert len(frame) == 8 and frame["final_loss"].tolist() == [r["final_loss"] for r in serial.rows]


def test_a_row_is_the_run_fit_would_give_with_its_seed():
    """The grid's fit names go to fit, over sweep's own epochs and batch_size."""
    result = sweep(build_mlp, X, Y, {"units": [5], "lr": [0.1], "epochs": [4], "shuffle": [False],
                                     "batch_size": [50]}, epochs=99, batch_size=7,
                   validation_data=(X[:40], Y[:40]), verbose=0)
    row = result.rows[0]
    model = build_mlp(5, 0.1, seed=row["seed"])
    direct = model.fit(X, Y, epochs=4, batch_size=50, shuffle=False, validation_data=(X[:40], Y[:40]), verbose=0)
    assert row["history"].history == direct.history and model.step == 16  # 4 epochs x 4 batches of 50
    assert row["seed"] == 0


def test_without_validation_the_loss_ranks_and_validation_columns_are_none():
    result = sweep(build_mlp, X, Y, {"units": [2, 6], "lr": [0.2]}, epochs=5, target=10.0, verbose=0)
    assert result.metric == "final_loss"
    for row in result.rows:
        assert row["final_val_loss"] is None and row["best_val_loss"] is None
        assert row["epochs_to_target"] == 1  # loss <= 10 from the first epoch
        assert row["best_epoch"] == int(np.argmin(row["history"].history["loss"])) + 1
    assert result.best is min(result.rows, key=lambda r: r["final_loss"])
    assert all(r["epochs_to_target"] is None for r in
               sweep(build_mlp, X, Y, {"units": [2], "lr": [0.2]}, epochs=3, target=1e-9, verbose=0).rows)
    assert sweep(build_mlp, X, Y, {"units": [2], "lr": [0.2]}, epochs=2, verbose=0).rows[0]["epochs_to_target"] is None


def test_a_diverging_run_is_recorded_and_never_best():
    Xl, yl = datasets.make_linear(n=200)
    result = sweep(build_regression, Xl, yl, {"lr": [0.05, 50.0]}, epochs=30, verbose=0)
    good, bad = result.rows
    assert not good["diverged"] and bad["diverged"]
    assert len(bad["history"].epoch) < 30 and all(math.isfinite(v) for v in bad["history"].history["loss"])
    assert result.best is good


# ----------------------------------------------------------------------------- seeds
def test_every_cell_starts_from_the_sweep_seed():
    small = sweep(build_mlp, X, Y, {"units": [4], "lr": [0.1]}, epochs=3, verbose=0)
    larger = sweep(build_mlp, X, Y, {"lr": [0.3, 0.1], "units": [8, 4]}, epochs=3, verbose=0)
    same = [r for r in larger.rows if r["units"] == 4 and r["lr"] == 0.1][0]
    assert same["seed"] == small.rows[0]["seed"] == 0                  # order and other values do not matter
    assert same["history"].history == small.rows[0]["history"].history
    assert {r["seed"] for r in larger.rows} == {0}                      # the same initial weights in every cell
    other = sweep(build_mlp, X, Y, {"units": [4], "lr": [0.1]}, epochs=3, seed=1, verbose=0)
    assert other.rows[0]["seed"] != small.rows[0]["seed"]
    assert other.rows[0]["final_loss"] != small.rows[0]["final_loss"]


def test_a_seed_in_the_grid_is_passed_as_given():
    result = sweep(build_mlp, X, Y, {"units": [4], "lr": [0.05, 0.3], "seed": [11]}, epochs=2, verbose=0)
    assert [r["seed"] for r in result.rows] == [11, 11]
    first = build_mlp(4, 0.05, seed=11)
    assert result.rows[0]["history"].history == first.fit(X, Y, epochs=2, verbose=0).history


def test_a_build_without_a_seed_parameter_gets_none():
    result = sweep(build_fixed_seed, X, Y, {"lr": [0.1, 0.2]}, epochs=2, verbose=0)
    assert [r["seed"] for r in result.rows] == [None, None]
    again = sweep(build_fixed_seed, X, Y, {"lr": [0.1, 0.2]}, epochs=2, verbose=0)
    assert_same_rows(result, again, tol=0)


# ----------------------------------------------------------------------------- wherever it runs
def test_local_processes_give_the_serial_rows(serial):
    parallel = sweep(build_mlp, X, Y, GRID, epochs=6, validation_split=0.25, target=0.5, n_jobs=2, verbose=0)
    assert_same_rows(serial, parallel)


def test_a_dask_cluster_gives_the_serial_rows(serial, dask_client):
    distributed = pytest.importorskip("distributed")
    with distributed.get_task_stream(dask_client) as stream:
        on_dask = sweep(build_mlp, X, Y, GRID, epochs=6, validation_split=0.25, target=0.5, client=dask_client,
                        verbose=0)
    assert_same_rows(serial, on_dask)
    runs = [t for t in stream.data if "_train_on_dask" in t["key"]]
    assert len(runs) == 8 and {t["worker"] for t in runs} <= set(dask_client.scheduler_info()["workers"])


def test_a_lambda_build_travels_by_value(dask_client):
    lam = lambda lr, seed: build_mlp(4, lr, seed)  # noqa: E731 (cloudpickle carries it)
    here = sweep(lam, X, Y, {"lr": [0.1, 0.2]}, epochs=3, verbose=0)
    assert_same_rows(here, sweep(lam, X, Y, {"lr": [0.1, 0.2]}, epochs=3, client=dask_client, verbose=0))


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_failing_run_names_its_combination(n_jobs):
    with pytest.raises(ValueError) as info:
        sweep(build_mlp, X, Y, {"units": [2], "lr": [0.1], "activation": ["relu", "no-such-activation"]}, epochs=1,
              n_jobs=n_jobs, verbose=0)
    assert "no-such-activation" in str(info.value)
    if sys.version_info >= (3, 11):  # exception notes
        assert info.value.__notes__ == ["in the sweep run {'units': 2, 'lr': 0.1, 'activation': 'no-such-activation'}"]


def test_progress_bar_on_stderr_only_when_verbose(capsys):
    sweep(build_mlp, X, Y, {"units": [2], "lr": [0.1, 0.2]}, epochs=1, verbose=1)
    out, err = capsys.readouterr()
    assert out == "" and "sweep" in err and "2/2" in err
    sweep(build_mlp, X, Y, {"units": [2], "lr": [0.1, 0.2]}, epochs=1, verbose=0)
    assert capsys.readouterr() == ("", "")


# ----------------------------------------------------------------------------- checked up front
class FakeClient:
    def submit(self, *args, **kwargs):
        raise AssertionError("nothing may be submitted")

    gather = submit


@pytest.mark.parametrize("kwargs, error, words", [
    ({"grid": {}}, ValueError, "grid is empty"),
    ({"grid": [("lr", [0.1])]}, TypeError, "grid must be a dict"),
    ({"grid": {"lr": 0.1}}, TypeError, "grid['lr'] must be a list"),
    ({"grid": {"lr": (0.1, 0.2)}}, TypeError, "write [(0.1, 0.2)]"),
    ({"grid": {"lr": []}}, ValueError, "grid['lr'] is an empty list"),
    ({"grid": {"lr": [0.1], "verbose": [0, 1]}}, ValueError, "grid['verbose']"),
    ({"grid": {"lr": [0.1], "callbacks": [None]}}, ValueError, "only batch_size, epochs, shuffle"),
    ({"grid": {"lr": [0.1], "momentum": [0.9]}}, ValueError, "['momentum']"),
    ({"grid": {"lr": [0.1], "final_loss": [1]}}, ValueError, "'final_loss' is a column"),
    ({"grid": {"units": [2]}}, ValueError, "needs ['lr']"),
    ({"n_jobs": 0}, ValueError, "n_jobs must be >= 1"),
    ({"n_jobs": 2.0}, TypeError, "n_jobs must be an integer"),
    ({"n_jobs": 2, "client": FakeClient()}, ValueError, "not both"),
    ({"client": object()}, TypeError, "client must be a distributed.Client"),
    ({"epochs": 0}, ValueError, "epochs must be >= 1"),
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ({"seed": -1}, ValueError, "seed must be >= 0"),
    ({"target": math.nan}, ValueError, "target must be a finite number"),
    ({"target": "0.1"}, TypeError, "target must be a number"),
    ({"verbose": 2}, ValueError, "verbose must be 0 or 1"),
    ({"validation_split": 0.2, "validation_data": (X, Y)}, ValueError, "not both"),
    ({"build": "build_mlp"}, TypeError, "build must be a callable"),
    ({"build": build_not_a_model, "grid": {"lr": [0.1]}}, TypeError, "must return a densefit.Sequential, got str"),
    ({"build": build_uncompiled, "grid": {"lr": [0.1]}}, ValueError, "compiled"),
    ({"build": LockedBuild(), "grid": {"lr": [0.1, 0.2]}, "n_jobs": 2}, TypeError, "build must be picklable"),
])
def test_bad_arguments_fail_before_any_training(kwargs, error, words):
    arguments = {"build": build_mlp, "X": X, "Y": Y, "grid": {"units": [2], "lr": [0.1]}, "epochs": 1, "verbose": 0}
    arguments.update(kwargs)
    build, grid = arguments.pop("build"), arguments.pop("grid")
    x, y = arguments.pop("X"), arguments.pop("Y")
    with pytest.raises(error) as info:
        sweep(build, x, y, grid, **arguments)
    assert words in str(info.value)


def test_fit_keys_are_the_documented_ones():
    assert FIT_KEYS == ("batch_size", "epochs", "shuffle")
    assert df.sweep.sweep is sweep  # lazy attribute of the package
