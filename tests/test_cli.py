"""The ``densefit`` command line: ``train`` on data files, ``predict``, ``sweep``, ``--plot`` and the
one-line errors. The key paths run as ``python -m densefit`` in a subprocess; the rest in process
through ``densefit.cli.main``. Tiny data (at most 300 rows) and few epochs throughout."""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import densefit as df
from densefit import cli, datafiles, datasets

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
needs_matplotlib = pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed")
PNG = b"\x89PNG\r\n\x1a\n"
SPECIES = np.array(["setosa", "versicolor", "virginica"])


def run(*args, cwd):
    """``python -m densefit ARGS`` in ``cwd``: the CompletedProcess (text)."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "densefit", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def final(stdout: str) -> dict:
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("final: "))[len("final: "):])


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def species_csv(tmp_path):
    """Three blobs, 150 rows, labelled with text; far from the origin, so --standardize matters."""
    X, y = datasets.make_blobs(n=150, centers=3, seed=0)
    return write_csv(tmp_path / "species.csv", ["x1", "x2", "species"],
                     [[f"{a:.5f}", f"{b + 20:.5f}", SPECIES[k]] for (a, b), k in zip(X, y)])


@pytest.fixture
def moons_npz(tmp_path):
    X, y = datasets.make_moons(n=200, seed=1)
    np.savez(tmp_path / "moons.npz", X=X, y=y)
    return tmp_path / "moons.npz"


@pytest.fixture
def regression_csv(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    t = X @ np.array([1.0, 2.0, -1.0]) + 0.5 + 0.01 * rng.normal(size=120)
    return write_csv(tmp_path / "reg.csv", ["a", "b", "c", "t"], [[*map(float, r), float(v)] for r, v in zip(X, t)])


def error_line(capsys) -> str:
    """The one stderr line of a failed command (no traceback, nothing on more lines)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("densefit: error: "), err
    return lines[0]


# ----------------------------------------------------------------------------- subprocess: the key paths
def test_python_m_densefit_help(tmp_path):
    done = run("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for command in ("train", "predict", "sweep", "info", "bench"):
        assert command in done.stdout
    train_help = run("train", "--help", cwd=tmp_path)
    assert train_help.returncode == 0 and "--data FILE" in train_help.stdout and ".npy" in train_help.stdout


def test_train_on_csv_with_text_labels_save_then_predict(tmp_path, species_csv):
    done = run("train", "--data", species_csv, "--target", "species", "--hidden", "8", "--optimizer", "adam",
               "--lr", "0.05", "--batch-size", "16", "--epochs", "25", "--standardize", "--validation-split", "0.2",
               "--verbose", "0", "--save", "model.npz", *(["--plot", "boundary.png"] if HAS_MATPLOTLIB else []),
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    if HAS_MATPLOTLIB:  # curves and the decision boundary of a standardized 3-class model
        assert (tmp_path / "boundary.png").read_bytes()[:8] == PNG
    head = done.stdout.splitlines()[0]
    assert "species.csv 150x2" in head and "classification, 3 classes: setosa, versicolor, virginica" in head
    assert "network 2-8-3" in head and "standardized" in head
    result = final(done.stdout)
    assert result["accuracy"] > 0.9 and result["val_accuracy"] > 0.9 and "val_loss" in result
    side = json.loads((tmp_path / "model.npz.json").read_text())
    assert side["classes"] == list(SPECIES) and side["features"] == ["x1", "x2"] and side["target"] == "species"
    assert len(side["standardize"]["mean"]) == 2

    # new rows in another column order, without the target: taken by name, standardized as in training
    X, y = datasets.make_blobs(n=150, centers=3, seed=0)
    write_csv(tmp_path / "new.csv", ["x2", "x1"], [[f"{b + 20:.5f}", f"{a:.5f}"] for a, b in X[:40]])
    done = run("predict", "--model", "model.npz", "--data", "new.csv", "--out", "pred.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = read_csv(tmp_path / "pred.csv")
    assert list(rows[0]) == ["prediction", "p_setosa", "p_versicolor", "p_virginica"]
    assert len(rows) == 40
    assert np.mean([r["prediction"] == SPECIES[k] for r, k in zip(rows, y[:40])]) > 0.9
    p = np.array([[float(r[f"p_{c}"]) for c in SPECIES] for r in rows])
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    # the same numbers as the model itself on the training statistics' standardization
    model = df.load_model(tmp_path / "model.npz")
    mean, std = np.array(side["standardize"]["mean"]), np.array(side["standardize"]["std"])
    raw = np.round(np.column_stack([X[:40, 0], X[:40, 1] + 20]), 5)
    np.testing.assert_allclose(p, model.predict((raw - mean) / std), rtol=1e-5, atol=1e-6)


@needs_matplotlib
def test_train_on_npz_with_plot(tmp_path, moons_npz):
    done = run("train", "--data", moons_npz, "--epochs", "5", "--batch-size", "8", "--verbose", "0",
               "--plot", "curves.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "moons.npz 200x2 (target 'y', classification, 2 classes: 0, 1)" in done.stdout
    assert set(final(done.stdout)) >= {"backend", "seconds", "samples_per_second", "loss", "accuracy"}
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("args, says", [
    (["train", "--data", "points.csv", "--target", "colour"], "no column 'colour'; its columns: a, b, y"),
    (["train", "--data", "missing.csv", "--target", "y"], "cannot read missing.csv"),
    (["predict", "--model", "missing.npz", "--data", "points.csv"], "missing.npz"),
])
def test_input_errors_are_one_line_on_stderr_in_a_real_process(tmp_path, args, says):
    write_csv(tmp_path / "points.csv", ["a", "b", "y"], [[0.5, 1.0, 1], [1.5, -1.0, 0], [0.0, 0.0, 1]])
    done = run(*args, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("densefit: error: ") and says in lines[0], done.stderr
    assert "Traceback" not in done.stderr


@needs_matplotlib
def test_sweep_writes_csv_and_png_in_two_processes(tmp_path):
    done = run("sweep", "--dataset", "moons", "--n", "200", "--lr", "0.01,0.1", "--batch-size", "8,64",
               "--epochs", "5", "--n-jobs", "2", "--verbose", "0", "--out", "sweep.csv", "--plot", "sweep.png",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "4 runs (lr 2 x batch_size 2)" in done.stdout and "best: lr " in done.stdout
    rows = read_csv(tmp_path / "sweep.csv")
    assert [(float(r["lr"]), int(r["batch_size"])) for r in rows] == [(0.01, 8), (0.01, 64), (0.1, 8), (0.1, 64)]
    assert all(float(r["final_val_loss"]) > 0 and r["diverged"] == "False" for r in rows)
    assert {"final_loss", "best_val_loss", "best_epoch", "seconds", "samples_per_s"} <= set(rows[0])
    assert (tmp_path / "sweep.png").read_bytes()[:8] == PNG


# ----------------------------------------------------------------------------- in process: train
def test_default_train_output_is_unchanged(capsys):
    assert cli.main(["train", "--epochs", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("densefit: clusters 1000x2, network 2-3-4-1, sgd lr 0.01, batch 1, 2 epochs, backend ")
    assert lines[1].startswith("epoch 1 (1/2) - loss ") and lines[2].startswith("epoch 2 (2/2) - loss ")
    assert lines[3].startswith("final: ") and len(lines) == 4
    assert list(final(lines[3])) == ["backend", "seconds", "samples_per_second", "loss", "accuracy"]


def test_linear_dataset(capsys):
    assert cli.main(["train", "--dataset", "linear", "--epochs", "2", "--verbose", "0"]) == 0  # hidden layers
    assert set(final(capsys.readouterr().out)) == {"backend", "seconds", "samples_per_second", "loss"}
    assert cli.main(["train", "--dataset", "linear", "--hidden", "", "--epochs", "10", "--verbose", "0",
                     "--standardize", "--n", "300"]) == 0
    result = final(capsys.readouterr().out)
    assert abs(result["intercept"] - 6) < 0.5 and abs(result["slope"] - 4) < 0.5  # in the data's units


def test_npy_target_column_matches_npz(tmp_path, moons_npz, capsys):
    data = np.load(moons_npz)
    np.save(tmp_path / "moons.npy", np.column_stack([data["y"], data["X"]]))  # the target first
    common = ["--epochs", "3", "--batch-size", "16", "--verbose", "0"]
    assert cli.main(["train", "--data", str(moons_npz), *common]) == 0
    from_npz = final(capsys.readouterr().out)
    assert cli.main(["train", "--data", str(tmp_path / "moons.npy"), "--target", "0", *common]) == 0
    out = capsys.readouterr().out
    assert "moons.npy 200x2 (target column 0, classification" in out
    assert final(out)["loss"] == from_npz["loss"]


def test_regression_csv_then_predict_to_stdout(tmp_path, regression_csv, capsys):
    model = tmp_path / "reg.npz"
    plot = ["--plot", str(tmp_path / "reg.png")] if HAS_MATPLOTLIB else []
    assert cli.main(["train", "--data", str(regression_csv), "--target", "t", "--hidden", "", "--epochs", "40",
                     "--batch-size", "8", "--verbose", "0", "--save", str(model), *plot]) == 0
    out = capsys.readouterr().out
    assert "(target 't', regression)" in out and "network 3-1" in out and final(out)["loss"] < 0.01
    if HAS_MATPLOTLIB:  # the loss curve alone
        assert (tmp_path / "reg.png").read_bytes()[:8] == PNG
    assert cli.main(["predict", "--model", str(model), "--data", str(regression_csv)]) == 0  # t is ignored
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "prediction" and len(lines) == 121
    truth = [float(r["t"]) for r in read_csv(regression_csv)]
    np.testing.assert_allclose([float(v) for v in lines[1:]], truth, atol=0.3)


def test_multiclass_integer_labels_and_task_option(tmp_path, capsys):
    X, y = datasets.make_blobs(n=120, centers=4, seed=2)
    np.savez(tmp_path / "blobs.npz", X=X, y=y + 10)  # labels 10..13
    common = ["--data", str(tmp_path / "blobs.npz"), "--epochs", "2", "--verbose", "0", "--save",
              str(tmp_path / "m.npz")]
    assert cli.main(["train", *common]) == 0
    assert "classification, 4 classes: 10, 11, 12, 13), network 2-3-4-4" in capsys.readouterr().out
    assert df.load_model(tmp_path / "m.npz").loss == "sparse_categorical_crossentropy"
    assert cli.main(["predict", "--model", str(tmp_path / "m.npz"), "--data", str(tmp_path / "blobs.npz")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "prediction,p_10,p_11,p_12,p_13"
    assert {line.split(",")[0] for line in lines[1:]} <= {"10", "11", "12", "13"}
    assert cli.main(["train", *common, "--task", "regression"]) == 0
    assert "(target 'y', regression), network 2-3-4-1" in capsys.readouterr().out


@pytest.mark.parametrize("y, task", [
    (np.array([0.0, 1.0, 1.0, 0.0]), "classification"),
    (np.array([3, 1, 2, 2]), "classification"),
    (np.array(["b", "a", "b", "a"]), "classification"),
    (np.array([True, False, True, False]), "classification"),
    (np.array([0.5, 1.0, 1.5, 0.25]), "regression"),
    (np.arange(40), "regression"),  # integers, but more than MAX_AUTO_CLASSES distinct values
])
def test_task_inference(y, task):
    inferred, encoded, classes = datafiles.encode_targets("f", "y", y, "auto")
    assert inferred == task
    if task == "classification":
        assert classes == sorted(classes) and list(np.asarray(classes)[encoded]) == list(y)


def test_predict_without_sidecar_uses_class_indices(tmp_path, moons_npz, capsys):
    data = np.load(moons_npz)
    model = df.Sequential([df.Dense(4, activation="tanh", input_dim=2), df.Dense(1, activation="sigmoid")], seed=0)
    model.compile(loss="binary_crossentropy", optimizer="adam")
    model.fit(data["X"], data["y"], epochs=2, verbose=0)
    model.save(tmp_path / "py.npz")
    assert cli.main(["predict", "--model", str(tmp_path / "py.npz"), "--data", str(moons_npz)]) == 0
    captured = capsys.readouterr()
    assert "note: no " in captured.err
    lines = captured.out.splitlines()
    assert lines[0] == "prediction,p_0,p_1" and len(lines) == 201
    np.testing.assert_allclose([float(line.split(",")[2]) for line in lines[1:]], model.predict(data["X"])[:, 0],
                               rtol=1e-6)


# ----------------------------------------------------------------------------- in process: errors
def test_help_text_on_every_option():
    parser = cli._parser()
    commands = parser._subparsers._group_actions[0].choices
    for name in ("train", "predict", "sweep"):
        for action in commands[name]._actions:
            assert action.help, f"densefit {name} {action.option_strings} has no help text"


def test_unknown_column_lists_the_columns(species_csv, capsys):
    assert cli.main(["train", "--data", str(species_csv), "--target", "kind"]) == 2
    line = error_line(capsys)
    assert "no column 'kind'" in line and "x1, x2, species" in line


@pytest.mark.parametrize("name", ["species.csv", "moons.npy"])
def test_missing_target(tmp_path, species_csv, name, capsys):
    np.save(tmp_path / "moons.npy", np.zeros((4, 3)))
    assert cli.main(["train", "--data", str(tmp_path / name)]) == 2
    line = error_line(capsys)
    assert "needs --target" in line
    if name.endswith(".csv"):
        assert "x1, x2, species" in line


def test_unreadable_files(tmp_path, capsys):
    assert cli.main(["train", "--data", str(tmp_path / "absent.csv"), "--target", "y"]) == 2
    line = error_line(capsys)
    assert "cannot read" in line and "absent.csv: No such file" in line
    (tmp_path / "junk.npz").write_text("not numpy")
    assert cli.main(["train", "--data", str(tmp_path / "junk.npz")]) == 2
    assert "not a NumPy .npy or .npz file" in error_line(capsys)
    (tmp_path / "data.xlsx").write_text("x")
    assert cli.main(["train", "--data", str(tmp_path / "data.xlsx")]) == 2
    assert "unknown file type '.xlsx'" in error_line(capsys)
    assert cli.main(["predict", "--model", str(tmp_path / "junk.npz"), "--data", str(tmp_path / "junk.npz")]) == 2
    assert "not a valid densefit model file" in error_line(capsys)


@pytest.mark.parametrize("option, value", [("--lr", "abc"), ("--lr", "-1"), ("--hidden", "3,x"),
                                           ("--batch-size", "0"), ("--validation-split", "1.5"),
                                           ("--activation", "swish")])
def test_bad_option_values_are_usage_errors(option, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}:" in err and repr(value) in err and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["--backend", "gpu"], "unknown backend 'gpu'"),
    (["--dataset", "moons", "--target", "y"], "--target applies to --data FILE"),
    (["--dataset", "moons", "--task", "regression"], "--task applies to --data FILE"),
    (["--lr", "1e9", "--epochs", "5", "--verbose", "0", "--dataset", "linear", "--hidden", ""], "diverged"),
])
def test_train_errors_are_one_line(argv, message, capsys):
    assert cli.main(["train", *argv]) == 2
    assert message in error_line(capsys)


def test_plot_without_matplotlib_fails_before_training(monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "matplotlib" else find_spec(name, *args))
    assert cli.main(["train", "--plot", "x.png"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing trained
    assert captured.err.startswith("densefit: error: --plot needs matplotlib") and captured.err.count("\n") == 1


def test_bad_data_values(tmp_path, species_csv, capsys):
    assert cli.main(["train", "--data", str(species_csv), "--target", "x1"]) == 2
    assert "column 'species' must be numeric to be a feature, but line 2 has 'setosa'" in error_line(capsys)
    assert cli.main(["train", "--data", str(species_csv), "--target", "species", "--task", "regression"]) == 2
    assert "regression needs a numeric target" in error_line(capsys)
    write_csv(tmp_path / "gap.csv", ["a", "y"], [["1", "0"], ["", "1"]])
    assert cli.main(["train", "--data", str(tmp_path / "gap.csv"), "--target", "y"]) == 2
    assert "line 3 has an empty cell" in error_line(capsys)
    write_csv(tmp_path / "one.csv", ["a", "y"], [["1", "0"], ["2", "0"]])
    assert cli.main(["train", "--data", str(tmp_path / "one.csv"), "--target", "y"]) == 2
    assert "single value" in error_line(capsys)


def test_predict_errors(tmp_path, species_csv, moons_npz, capsys):
    model = str(tmp_path / "m.npz")
    assert cli.main(["train", "--data", str(moons_npz), "--epochs", "1", "--verbose", "0", "--save", model]) == 0
    capsys.readouterr()
    np.save(tmp_path / "three.npy", np.zeros((5, 3)))
    assert cli.main(["predict", "--model", model, "--data", str(tmp_path / "three.npy")]) == 2
    assert "three.npy gives 3 columns (if one is the target, drop it with --target INDEX)" in error_line(capsys)
    assert cli.main(["predict", "--model", model, "--data", str(species_csv)]) == 2  # 'species' is text
    assert "must be numeric" in error_line(capsys)
    assert cli.main(["predict", "--model", model, "--data", str(species_csv), "--target", "species"]) == 0
    capsys.readouterr()
    write_csv(tmp_path / "wide.csv", ["a", "b", "c"], [["1", "2", "3"]])
    assert cli.main(["predict", "--model", model, "--data", str(tmp_path / "wide.csv")]) == 2
    assert "the model takes 2 features, but" in error_line(capsys)
    trained = df.load_model(model)  # trained on from Python: the sidecar no longer belongs to the file
    trained.fit(np.load(moons_npz)["X"], np.load(moons_npz)["y"], epochs=1, verbose=0)
    trained.save(model)
    assert cli.main(["predict", "--model", model, "--data", str(moons_npz)]) == 2
    assert "was written for another version" in error_line(capsys)


def test_sweep_in_process_without_validation(capsys, tmp_path):
    assert cli.main(["sweep", "--dataset", "xor", "--n", "80", "--lr", "0.05,0.5", "--batch-size", "8",
                     "--hidden", "4", "", "--epochs", "3", "--validation-split", "0", "--verbose", "0",
                     "--out", str(tmp_path / "s.csv")]) == 0
    out = capsys.readouterr().out
    assert "4 runs (lr 2 x batch_size 1 x hidden 2)" in out and "no validation" in out
    rows = read_csv(tmp_path / "s.csv")
    assert [r["hidden"] for r in rows] == ["4", "none", "4", "none"] and all(r["final_val_loss"] == "" for r in rows)
