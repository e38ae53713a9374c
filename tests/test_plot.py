"""densefit.plot: every figure renders to a PNG and holds what it promises (curves and their
labels, scales, contours, marked points, the best sweep cell); a missing matplotlib names the
extra to install."""

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

import densefit as df  # noqa: E402
from densefit import datasets, plot  # noqa: E402
from densefit.sweep import SweepResult, sweep  # noqa: E402


def render(fig, tmp_path, name):
    """Draw the whole figure into a PNG (so every artist is really rendered) and check the file."""
    assert isinstance(fig, Figure)
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=60)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    return path


def labels(ax):
    return [line.get_label() for line in ax.get_lines()]


def binary_model(epochs=15, seed=0):
    X, y = datasets.make_moons(n=200, noise=0.3, seed=0)
    model = df.Sequential([df.Dense(8, activation="tanh", input_dim=2), df.Dense(1, activation="sigmoid")],
                          seed=seed, dtype="float64")
    model.compile(loss="binary_crossentropy", optimizer=df.Adam(0.05), metrics=["accuracy"])
    history = model.fit(X, y, epochs=epochs, batch_size=32, validation_split=0.25, verbose=0)
    return model, history, X, y


@pytest.fixture(scope="module")
def trained():
    return binary_model()


# ----------------------------------------------------------------------------- history
def test_history_draws_train_and_validation_per_quantity(trained, tmp_path):
    _, h, _, _ = trained
    fig = plot.history(h)
    render(fig, tmp_path, "history")
    loss_ax, accuracy_ax = fig.axes
    assert loss_ax.get_title() == "loss" and accuracy_ax.get_title() == "accuracy"
    assert loss_ax.get_xlabel() == "epoch" and accuracy_ax.get_ylabel() == "accuracy"
    for ax, key in ((loss_ax, "loss"), (accuracy_ax, "accuracy")):
        train, val = ax.get_lines()
        assert labels(ax) == ["train", "validation"]
        assert train.get_linestyle() == "-" and val.get_linestyle() == "--"
        np.testing.assert_array_equal(train.get_xdata(), np.arange(1, 16))
        np.testing.assert_array_equal(train.get_ydata(), h.history[key])
        np.testing.assert_array_equal(val.get_ydata(), h.history[f"val_{key}"])
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "validation"]
    assert loss_ax.get_yscale() == "linear"  # a cross-entropy from ~0.7 to ~0.3: no decades to span


def test_history_of_several_runs_shares_the_panels(tmp_path):
    runs = [binary_model(epochs=5, seed=s)[1] for s in (0, 1)]
    fig = plot.history(runs, labels=["seed 0", "seed 1"], metrics=[])
    render(fig, tmp_path, "runs")
    (ax,) = fig.axes
    assert labels(ax) == ["seed 0 train", "seed 0 validation", "seed 1 train", "seed 1 validation"]
    colours = [line.get_color() for line in ax.get_lines()]
    assert colours[0] == colours[1] != colours[2] == colours[3]
    assert labels(plot.history(runs, metrics=[]).axes[0])[::2] == ["run 1 train", "run 2 train"]


def test_history_loss_axis_turns_logarithmic_over_decades(tmp_path):
    fig = plot.history({"loss": [50.0, 5.0, 0.4, 0.02], "val_loss": [60.0, 7.0, 0.9, 0.1]})
    render(fig, tmp_path, "log")
    assert fig.axes[0].get_yscale() == "log"
    np.testing.assert_array_equal(fig.axes[0].get_lines()[0].get_xdata(), [1, 2, 3, 4])
    assert plot.history({"loss": [0.9, 0.5, 0.3]}).axes[0].get_yscale() == "linear"


def test_history_draws_into_given_axes(trained, tmp_path):
    _, h, _, _ = trained
    own = Figure()
    ax = own.add_subplot()
    assert plot.history(h, ax=ax) is own and labels(ax) == ["train", "validation"]  # one Axes: the loss
    two = Figure().subplots(1, 2)
    assert plot.history(h, metrics=["accuracy"], ax=two) is two[0].figure
    assert two[1].get_title() == "accuracy"
    render(own, tmp_path, "own")


def test_history_rejects_what_it_cannot_draw(trained):
    _, h, _, _ = trained
    with pytest.raises(ValueError, match=r"metrics \['auc'\] are not in the history"):
        plot.history(h, metrics=["auc"])
    with pytest.raises(ValueError, match="labels has 1 names for 2 runs"):
        plot.history([h, h], labels=["one"])
    with pytest.raises(ValueError, match="2 Axes"):
        plot.history(h, metrics=["accuracy"], ax=Figure().add_subplot())
    with pytest.raises(TypeError, match="h must be a densefit History"):
        plot.history(1.0)
    with pytest.raises(ValueError, match="no 'loss' values"):
        plot.history(df.History())


# ----------------------------------------------------------------------------- decision boundary
def test_binary_boundary_shows_probability_contour_classes_and_mistakes(trained, tmp_path):
    model, _, X, y = trained
    fig = plot.decision_boundary(model, X, y, resolution=60)
    render(fig, tmp_path, "boundary")
    ax, colorbar = fig.axes
    assert colorbar.get_ylabel() == "predicted probability of class 1"
    contours = [c for c in ax.collections if isinstance(c, ContourSet)]
    filled = [c for c in contours if c.filled]
    lines = [c for c in contours if not c.filled]
    assert len(filled) == 1 and filled[0].levels[0] == 0 and filled[0].levels[-1] == 1
    assert len(lines) == 1 and list(lines[0].levels) == [0.5]
    points = {c.get_label(): c for c in ax.collections if isinstance(c, PathCollection)}
    wrong = (model.predict(X)[:, 0] >= 0.5).astype(int) != y
    assert 0 < wrong.sum() < 60  # noisy moons: a good but imperfect fit
    assert set(points) == {"class 0", "class 1", f"misclassified ({wrong.sum()})"}
    np.testing.assert_array_equal(points["class 1"].get_offsets(), X[y == 1])
    np.testing.assert_array_equal(points[f"misclassified ({wrong.sum()})"].get_offsets(), X[wrong])
    assert ax.get_title().startswith(f"accuracy {1 - wrong.mean():.1%}")
    assert ax.get_xlim()[0] < X[:, 0].min() and ax.get_ylim()[1] > X[:, 1].max()


def test_multiclass_boundary_shows_regions_for_integer_and_one_hot_labels(tmp_path):
    X, y = datasets.make_blobs(n=150, centers=3, cluster_std=1.5, seed=3)
    model = df.Sequential([df.Dense(3, activation="softmax", input_dim=2)], seed=0, dtype="float64")
    model.compile(loss="categorical_crossentropy", optimizer=df.Adam(0.1))
    model.fit(X, y, epochs=20, verbose=0)
    fig = plot.decision_boundary(model, X, y, resolution=40)
    render(fig, tmp_path, "regions")
    (ax,) = fig.axes
    (image,) = ax.get_images()
    assert image.get_array().shape == (40, 40, 3)
    region_colours = {tuple(np.round(c, 6)) for c in image.get_array().reshape(-1, 3)}
    assert len(region_colours) > 3  # three hues, each paler where the model is unsure
    points = sorted(c.get_label() for c in ax.collections if isinstance(c, PathCollection))
    assert points[:3] == ["class 0", "class 1", "class 2"]
    one_hot = plot.decision_boundary(model, X, np.eye(3)[y], resolution=40)
    np.testing.assert_array_equal(one_hot.axes[0].get_images()[0].get_array(), image.get_array())
    assert one_hot.axes[0].get_title() == ax.get_title()


@pytest.mark.parametrize("shape", [(200, 3), (200,), (2, 2, 50)])
def test_boundary_needs_two_dimensional_inputs(trained, shape):
    model, _, _, y = trained
    with pytest.raises(ValueError) as info:
        plot.decision_boundary(model, np.zeros(shape), y)
    assert "X must have shape (n_samples, 2)" in str(info.value) and str(shape) in str(info.value)


def test_boundary_rejects_bad_labels_and_models(trained):
    model, _, X, y = trained
    with pytest.raises(ValueError, match="y has 199 labels for the 200 rows of X"):
        plot.decision_boundary(model, X, y[:-1])
    with pytest.raises(ValueError, match="class labels"):
        plot.decision_boundary(model, X, y + 0.5)
    with pytest.raises(ValueError, match="resolution"):
        plot.decision_boundary(model, X, y, resolution=1)
    unbuilt = df.Sequential([df.Dense(1, activation="sigmoid")])
    unbuilt.compile(loss="binary_crossentropy")
    with pytest.raises(ValueError, match="no weights yet"):
        plot.decision_boundary(unbuilt, X, y)


# ----------------------------------------------------------------------------- sweep
def handmade(validation=True):
    """A 3 x 2 (x 2) sweep with known numbers: val loss = units / 10 + lr, except one cell."""
    grid = {"units": [2, 4, 8], "lr": [0.001, 0.1], "seed": [0, 1]}
    rows = []
    for units in grid["units"]:
        for lr in grid["lr"]:
            for seed in grid["seed"]:
                value = units / 10 + lr + seed
                value = 0.05 if (units, lr, seed) == (4, 0.1, 1) else value
                rows.append({"units": units, "lr": lr, "seed": seed, "final_loss": value * 2,
                             "final_val_loss": value if validation else None,
                             "best_val_loss": value if validation else None, "best_epoch": 1,
                             "epochs_to_target": None, "seconds": 1.0, "samples_per_s": 100.0 * units,
                             "diverged": False, "history": None})
    return SweepResult(grid, rows, validation=validation)


def test_sweep_heat_map_marks_the_best_cell(tmp_path):
    result = handmade()
    fig = plot.sweep(result, "lr", "units")
    render(fig, tmp_path, "heat")
    ax, colorbar = fig.axes
    (image,) = ax.get_images()
    # rows: units, columns: lr, each cell the best over seed
    expected = [[0.201, 0.3], [0.401, 0.05], [0.801, 0.9]]
    np.testing.assert_allclose(image.get_array(), expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.001", "0.1"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["2", "4", "8"]
    assert sorted(t.get_text() for t in ax.texts) == sorted(f"{v:.3g}" for v in np.ravel(expected))
    (best,) = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_label().startswith("best")]
    assert best.get_xy() == (0.5, 0.5) and best.get_width() == 1  # column lr=0.1, row units=4
    assert "best over seed" in ax.get_title() and "units=4, lr=0.1, seed=1" in ax.get_title()
    assert colorbar.get_ylabel() == "final_val_loss"


def test_sweep_curves_over_one_name(tmp_path):
    result = handmade()
    fig = plot.sweep(result, "lr", metric="best_val_loss")
    render(fig, tmp_path, "curves")
    (ax,) = fig.axes
    curves = [line for line in ax.get_lines() if not line.get_label().startswith("best")]
    assert len(curves) == 6 and curves[0].get_label() == "units=2, seed=0"
    np.testing.assert_array_equal(curves[0].get_xdata(), [0.001, 0.1])
    (star,) = [line for line in ax.get_lines() if line.get_label().startswith("best")]
    assert star.get_marker() == "*" and list(star.get_xdata()) == [0.1] and list(star.get_ydata()) == [0.05]
    assert ax.get_xscale() == "log"  # learning rates two decades apart
    # a metric where more is better marks its largest value
    fast = plot.sweep(result, "units", metric="samples_per_s").axes[0]
    (star,) = [line for line in fast.get_lines() if line.get_label().startswith("best")]
    assert list(star.get_ydata()) == [800.0] and fast.get_xscale() == "linear"


def test_sweep_plot_of_a_real_sweep(tmp_path):
    X, y = datasets.make_moons(n=200, noise=0.2, seed=0)
    result = sweep(_build, X, y, {"units": [2, 6], "lr": [0.05, 0.5]}, epochs=4, validation_split=0.25, verbose=0)
    fig = plot.sweep(result, "units", "lr")
    render(fig, tmp_path, "real")
    values = np.array([r["final_val_loss"] for r in result.rows]).reshape(2, 2).T  # rows lr, columns units
    np.testing.assert_allclose(fig.axes[0].get_images()[0].get_array(), values)


def _build(units, lr, seed):
    model = df.Sequential([df.Dense(units, activation="relu", input_dim=2), df.Dense(1, activation="sigmoid")],
                          seed=seed, dtype="float64")
    model.compile(loss="binary_crossentropy", optimizer=df.SGD(lr))
    return model


def test_sweep_plot_rejects_unknown_names_and_empty_metrics():
    result = handmade(validation=False)
    with pytest.raises(ValueError, match=r"x='depth' is not a name of the sweep's grid"):
        plot.sweep(result, "depth")
    with pytest.raises(ValueError, match="x and y are both 'lr'"):
        plot.sweep(result, "lr", "lr")
    with pytest.raises(ValueError, match="without validation data: use metric='final_loss'"):
        plot.sweep(result, "lr")
    with pytest.raises(ValueError, match="metric='accuracy' is not a column"):
        plot.sweep(result, "lr", metric="accuracy")
    with pytest.raises(TypeError, match="result must be what densefit.sweep.sweep returns"):
        plot.sweep({"rows": []}, "lr")
    assert plot.sweep(result, "lr", metric="final_loss")


# ----------------------------------------------------------------------------- without matplotlib
def test_missing_matplotlib_names_the_extra(trained, monkeypatch):
    model, h, X, y = trained
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for call in (lambda: plot.history(h), lambda: plot.decision_boundary(model, X, y),
                 lambda: plot.sweep(handmade(), "lr")):
        with pytest.raises(ImportError, match=r'pip install "densefit\[plot\]"'):
            call()


def test_importing_densefit_loads_no_plotting_or_cluster_library():
    code = ("import sys, densefit\n"
            "assert densefit.plot.__name__ == 'densefit.plot' and densefit.sweep.sweep\n"
            "heavy = [m for m in ('matplotlib', 'distributed', 'dask', 'pandas') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
