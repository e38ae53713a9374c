"""Plots for teaching: training curves, decision boundaries, sweep results (matplotlib, installed
with ``pip install "densefit[plot]"``).

::

    from densefit import plot
    plot.history(model.fit(X, y, epochs=50, validation_split=0.2, verbose=0))
    plot.decision_boundary(model, X, y)
    plot.sweep(result, "units", "lr")          # result = densefit.sweep.sweep(...)

Each function returns a :class:`matplotlib.figure.Figure`. Without ``ax`` it draws on a new
figure made directly (not through ``pyplot``): no window opens, no global figure list grows, and
scripts and servers need no display. In Jupyter the figure shows as a cell's value; in a script,
``fig.savefig("curves.png")``. To draw into your own layout pass ``ax=`` (a pyplot or Figure
Axes); the figure returned is then that Axes'.

Importing this module does not import matplotlib; calling a function without it installed
raises an ImportError saying what to install.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["history", "decision_boundary", "sweep"]

_INSTALL = 'densefit.plot needs matplotlib: pip install "densefit[plot]" (or pip install matplotlib)'

# A loss axis (and a sweep's colour scale) turns logarithmic when its largest value is at least
# this many times its smallest: two decades, where a linear axis squashes the tail of a curve.
_LOG_SPAN = 100.0

# Columns of a sweep result where larger is better; the others are losses, epochs or seconds.
_HIGHER_IS_BETTER = {"samples_per_s"}


def _matplotlib():
    """matplotlib's Figure class, or the ImportError naming the extra to install. ``import
    matplotlib`` first: a submodule already loaded would otherwise hide a missing package."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    return Figure


def _axes(ax, count: int, width: float = 5.0, height: float = 4.0):
    """``count`` Axes: the ones given (``ax`` an Axes or a sequence of them), else a new row of
    them on a new Figure. Returns ``(figure, [axes])``."""
    Figure = _matplotlib()
    if ax is None:
        figure = Figure(figsize=(width * count, height), layout="constrained")
        return figure, list(figure.subplots(1, count, squeeze=False)[0])
    axes = list(np.ravel(np.asarray(ax, dtype=object)))
    if len(axes) != count or not all(hasattr(a, "plot") and hasattr(a, "figure") for a in axes):
        raise ValueError(f"ax must be {'an Axes' if count == 1 else f'{count} Axes'} for this plot, got {ax!r}")
    return axes[0].figure, axes


def _spans_decades(values) -> bool:
    values = np.asarray([v for v in values if v is not None], dtype=np.float64)
    values = values[np.isfinite(values)]
    return values.size > 0 and values.min() > 0 and values.max() >= _LOG_SPAN * values.min()


# ----------------------------------------------------------------------------- history
def _as_run(h, position: str):
    """``(epochs counted from 1, {name: values})`` of a History or a dict of per-epoch lists."""
    if hasattr(h, "history") and hasattr(h, "epoch"):
        logs = dict(h.history)
        epochs = np.asarray(h.epoch, dtype=np.float64) + 1  # epoch 1: after one pass over the data
    elif isinstance(h, dict):
        logs = dict(h)
        epochs = None
    else:
        raise TypeError(f"h{position} must be a densefit History (what fit returns) or a dict of per-epoch lists, "
                        f"got {type(h).__name__}")
    logs = {k: np.asarray(v, dtype=np.float64) for k, v in logs.items()}
    if "loss" not in logs or logs["loss"].size == 0:
        raise ValueError(f"h{position} has no 'loss' values (keys: {sorted(logs)}); train at least one epoch")
    if epochs is None or epochs.size != logs["loss"].size:
        epochs = np.arange(1, logs["loss"].size + 1, dtype=np.float64)
    return epochs, logs


def history(h, metrics=None, labels=None, ax=None):
    """Training curves: the loss and each metric against the epoch, training solid and
    validation (``val_*``) dashed, one panel per quantity.

    Parameters
    ----------
    h : History, or a list of them
        What :meth:`Sequential.fit <densefit.Sequential.fit>` returns (or a dict ``{name:
        values}`` such as ``History.history``). Several runs share the panels, one colour each.
    metrics : list of str or None
        The metrics to draw beside the loss (``"accuracy"``, …; their ``val_`` curves come with
        them). ``None``: every metric the runs recorded; ``[]``: the loss only.
    labels : list of str or None
        A name per run for the legend (default: "run 1", "run 2", … when there are several).
    ax : Axes, or a sequence of ``1 + len(metrics)`` Axes, or None
        One Axes with ``metrics=None`` draws the loss only.

    The loss axis is logarithmic when the loss spans two decades or more (a linear one would
    flatten everything after the first epochs).
    """
    runs = list(h) if isinstance(h, (list, tuple)) else [h]
    if not runs:
        raise ValueError("h is an empty list: give a History or a list of them")
    runs = [_as_run(run, f"[{i}]" if isinstance(h, (list, tuple)) else "") for i, run in enumerate(runs)]
    recorded = []
    for _, logs in runs:
        recorded += [k for k in logs if not k.startswith("val_") and k not in ("loss", "learning_rate")
                     and k not in recorded]
    if metrics is None:  # every recorded metric; the loss alone when drawing into one given Axes
        single = ax is not None and np.ndim(np.asarray(ax, dtype=object)) == 0
        metrics = [] if single else recorded
    else:
        if isinstance(metrics, str):
            metrics = [metrics]
        metrics = list(metrics)
        unknown = [m for m in metrics if m not in recorded]
        if unknown:
            raise ValueError(f"metrics {unknown} are not in the history (it has {recorded or 'no metrics'})")
    if labels is None:
        labels = [f"run {i + 1}" for i in range(len(runs))] if len(runs) > 1 else [None]
    else:
        labels = [labels] if isinstance(labels, str) else list(labels)
        if len(labels) != len(runs):
            raise ValueError(f"labels has {len(labels)} names for {len(runs)} runs")
    quantities = ["loss"] + metrics
    figure, axes = _axes(ax, len(quantities))
    for panel, name in zip(axes, quantities):
        for i, ((epochs, logs), label) in enumerate(zip(runs, labels)):
            colour = f"C{i % 10}"
            prefix = "" if label is None else f"{label} "
            if name in logs:
                panel.plot(epochs, logs[name], color=colour, linestyle="-", label=f"{prefix}train")
            if f"val_{name}" in logs:
                panel.plot(epochs, logs[f"val_{name}"], color=colour, linestyle="--", label=f"{prefix}validation")
        panel.set_xlabel("epoch")
        panel.set_ylabel(name)
        panel.set_title(name)
        panel.grid(True, alpha=0.3)
        if name == "loss" and _spans_decades(np.concatenate([np.concatenate([logs[k] for k in ("loss", "val_loss")
                                                                           if k in logs]) for _, logs in runs])):
            panel.set_yscale("log")
        panel.legend()
    return figure


# ----------------------------------------------------------------------------- decision boundary
def _class_labels(y, n: int, n_outputs: int) -> np.ndarray:
    """Integer class labels from 0/1 or integer labels, (n, 1) columns or one-hot rows."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        if y.shape[1] != max(n_outputs, 2) and n_outputs > 1:
            raise ValueError(f"y is one-hot with {y.shape[1]} columns but the model has {n_outputs} outputs")
        labels = y.argmax(axis=1)
    elif y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
        labels = y.reshape(-1)
        if labels.dtype == bool:
            labels = labels.astype(np.int64)
        if not np.issubdtype(labels.dtype, np.number) or not np.all(np.isfinite(labels)) \
                or not np.all(labels == np.round(labels)) or labels.min(initial=0) < 0:
            raise ValueError("y must hold class labels (integers 0, 1, …) or one-hot rows")
        labels = labels.astype(np.int64)
    else:
        raise ValueError(f"y must have shape (n,), (n, 1) or (n, classes), got {y.shape}")
    if labels.shape[0] != n:
        raise ValueError(f"y has {labels.shape[0]} labels for the {n} rows of X")
    classes = max(n_outputs, 2)
    if labels.size and labels.max() >= classes:
        raise ValueError(f"y has label {labels.max()}, but the model predicts {classes} classes")
    return labels


def decision_boundary(model, X, y, ax=None, resolution: int = 200):
    """What a classifier on two inputs predicts over the plane of its data.

    Binary (one output): the predicted probability as a colour map with its colour bar and the
    0.5 contour, the decision boundary. Multiclass (a softmax output; ``y`` integer labels or
    one-hot rows): each class's region in its colour, paler where the model is less sure. The
    points are drawn by class, and the misclassified ones crossed out; the title gives the
    accuracy. ``resolution``: grid points along each axis.
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"decision_boundary needs 2-D inputs: X must have shape (n_samples, 2), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError("X has no rows")
    if isinstance(resolution, bool) or not isinstance(resolution, numbers.Integral) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    if getattr(model, "plan", None) is None:
        raise ValueError("model has no weights yet: fit it (or build it) before drawing its decision boundary")
    if model.plan.n_features != 2:
        raise ValueError(f"model takes {model.plan.n_features} inputs; decision_boundary needs a model on 2")
    X = X.astype(np.float64)
    n_outputs = model.plan.n_outputs
    labels = _class_labels(y, X.shape[0], n_outputs)
    figure, (panel,) = _axes(ax, 1, width=6.0, height=5.0)

    low, high = X.min(axis=0), X.max(axis=0)
    margin = np.where(high > low, 0.1 * (high - low), 0.5)
    xs = np.linspace(low[0] - margin[0], high[0] + margin[0], int(resolution))
    ys = np.linspace(low[1] - margin[1], high[1] + margin[1], int(resolution))
    gx, gy = np.meshgrid(xs, ys)
    grid = model.predict(np.column_stack([gx.ravel(), gy.ravel()])).astype(np.float64)

    if n_outputs == 1:
        p = grid[:, 0].reshape(gx.shape)
        shading = panel.contourf(gx, gy, p, levels=np.linspace(0.0, 1.0, 21), cmap="RdBu_r", vmin=0.0, vmax=1.0,
                                 alpha=0.75, extend="both")
        figure.colorbar(shading, ax=panel, label="predicted probability of class 1")
        if p.min() < 0.5 < p.max():  # (else the model predicts one class everywhere: no boundary to draw)
            panel.contour(gx, gy, p, levels=[0.5], colors="black", linewidths=1.5)
        predicted = (model.predict(X)[:, 0] >= 0.5).astype(np.int64)
        colours = ["#2166ac", "#b2182b"]  # the ends of RdBu_r: class 0 blue, class 1 red
    else:
        from matplotlib.colors import to_rgb
        colours = [f"C{k % 10}" for k in range(n_outputs)]
        winner = grid.argmax(axis=1)
        confidence = grid.max(axis=1)
        # each class's colour, blended towards white as the winning probability falls to 1/K
        strength = 0.25 + 0.5 * (confidence - 1.0 / n_outputs) / (1.0 - 1.0 / n_outputs)
        rgb = np.array([to_rgb(c) for c in colours])[winner]
        image = (1.0 - strength[:, None]) + strength[:, None] * rgb
        panel.imshow(image.reshape(gx.shape + (3,)), origin="lower", aspect="auto", interpolation="nearest",
                     extent=(xs[0], xs[-1], ys[0], ys[-1]))
        predicted = model.predict(X).argmax(axis=1)

    for k in np.unique(labels):
        rows = labels == k
        panel.scatter(X[rows, 0], X[rows, 1], s=18, color=colours[k], edgecolors="white", linewidths=0.5,
                      label=f"class {k}", zorder=3)
    wrong = predicted != labels
    if wrong.any():
        panel.scatter(X[wrong, 0], X[wrong, 1], s=40, marker="x", color="black", linewidths=1.2,
                      label=f"misclassified ({int(wrong.sum())})", zorder=4)
    panel.set_xlim(xs[0], xs[-1])
    panel.set_ylim(ys[0], ys[-1])
    panel.set_xlabel("X[:, 0]")
    panel.set_ylabel("X[:, 1]")
    panel.set_title(f"accuracy {1.0 - wrong.mean():.1%} ({X.shape[0]} points)")
    panel.legend(loc="best", framealpha=0.8)
    return figure


# ----------------------------------------------------------------------------- sweep
def _tick(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    text = getattr(value, "__name__", None) or str(value)
    return text if len(text) <= 24 else text[:21] + "..."


def sweep(result, x: str, y: str | None = None, metric: str = "final_val_loss", ax=None):
    """A sweep's ``metric`` over its grid: a heat map over the grid names ``x`` (columns) and
    ``y`` (rows), each cell annotated, or with ``y=None`` a curve against ``x``; the best run
    (lowest ``metric``; highest for ``samples_per_s``) marked.

    A heat map shows, for each cell, the best value over the grid's other names (the title says
    which); curves draw one line per combination of the other names. A numeric ``x`` whose values
    span two decades (learning rates) gets a logarithmic axis, and a metric that does a
    logarithmic colour scale. Runs without a value (``None``: no validation, target not reached)
    stay blank.
    """
    rows = getattr(result, "rows", None)
    grid = getattr(result, "grid", None)
    if rows is None or not isinstance(grid, dict):
        raise TypeError(f"result must be what densefit.sweep.sweep returns, got {type(result).__name__}")
    names = list(grid)
    for axis, name in (("x", x), ("y", y)):
        if name is not None and name not in names:
            raise ValueError(f"{axis}={name!r} is not a name of the sweep's grid ({names})")
    if y is not None and y == x:
        raise ValueError(f"x and y are both {x!r}: give two different grid names, or y=None for curves")
    if not rows or metric not in rows[0] or metric == "history":
        columns = [k for k in (rows[0] if rows else {}) if k not in names and k not in ("history", "diverged")]
        raise ValueError(f"metric={metric!r} is not a column of the sweep's results ({columns})")
    values = np.array([math.nan if r[metric] is None else float(r[metric]) for r in rows], dtype=np.float64)
    if np.isnan(values).all():
        hint = " (the sweep ran without validation data: use metric='final_loss')" if metric.startswith(
            ("final_val", "best_val")) else ""
        raise ValueError(f"metric={metric!r} has no values in this sweep{hint}")
    higher = metric in _HIGHER_IS_BETTER
    shape = [len(grid[n]) for n in names]
    cube = values.reshape(shape)  # rows come in itertools.product order over the grid
    best_index = np.unravel_index(int(np.nanargmax(values) if higher else np.nanargmin(values)), shape)
    best_value = values[np.ravel_multi_index(best_index, shape)]
    others = [n for n in names if n not in (x, y)]
    varying = [n for n in others if len(grid[n]) > 1]
    figure, (panel,) = _axes(ax, 1, width=6.0 if y is not None else 5.5, height=5.0)
    best_text = ", ".join(f"{n}={_tick(grid[n][i])}" for n, i in zip(names, best_index) if len(grid[n]) > 1)

    if y is not None:
        order = [names.index(y), names.index(x)] + [names.index(n) for n in others]
        table = np.transpose(cube, order).reshape(shape[names.index(y)], shape[names.index(x)], -1)
        with np.errstate(all="ignore"):
            all_nan = np.isnan(table).all(axis=2)
            filled = np.where(np.isnan(table), -math.inf if higher else math.inf, table)
            table = np.where(all_nan, math.nan, filled.max(axis=2) if higher else filled.min(axis=2))
        norm = None
        if _spans_decades(table.ravel()):
            from matplotlib.colors import LogNorm
            norm = LogNorm(vmin=np.nanmin(table), vmax=np.nanmax(table))
        image = panel.imshow(np.ma.masked_invalid(table), origin="lower", aspect="auto", cmap="viridis_r" if not higher
                             else "viridis", norm=norm, interpolation="nearest")
        figure.colorbar(image, ax=panel, label=metric)
        panel.set_xticks(range(shape[names.index(x)]), [_tick(v) for v in grid[x]])
        panel.set_yticks(range(shape[names.index(y)]), [_tick(v) for v in grid[y]])
        for (row, col), value in np.ndenumerate(table):
            if not math.isnan(value):
                shade = float(image.norm(value))  # 0..1 along the colour map; viridis is dark at 0
                dark = shade > 0.5 if not higher else shade < 0.5
                panel.text(col, row, f"{value:.3g}", ha="center", va="center", fontsize=9,
                           color="white" if dark else "black")
        from matplotlib.patches import Rectangle
        bx, by = best_index[names.index(x)], best_index[names.index(y)]
        panel.add_patch(Rectangle((bx - 0.5, by - 0.5), 1.0, 1.0, fill=False, edgecolor="red", linewidth=2.5,
                                  label=f"best: {best_value:.4g}", zorder=3))
        panel.set_xlabel(x)
        panel.set_ylabel(y)
        panel.legend(loc="upper left", bbox_to_anchor=(0.0, -0.12), frameon=False)
        suffix = f" (best over {', '.join(varying)})" if varying else ""
        panel.set_title(f"{metric}{suffix}")
    else:
        axis = names.index(x)
        xs = grid[x]
        numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in xs)
        positions = np.asarray(xs, dtype=np.float64) if numeric else np.arange(len(xs), dtype=np.float64)
        moved = np.moveaxis(cube, axis, -1).reshape(-1, len(xs))
        rest = [n for n in names if n != x]
        combos = list(np.ndindex(*[len(grid[n]) for n in rest])) or [()]
        for i, combo in enumerate(combos):
            label = ", ".join(f"{n}={_tick(grid[n][j])}" for n, j in zip(rest, combo) if len(grid[n]) > 1) or None
            panel.plot(positions, moved[i], marker="o", color=f"C{i % 10}", label=label)
        panel.plot([positions[best_index[axis]]], [best_value], linestyle="none", marker="*", markersize=18,
                   color="red", markeredgecolor="black", label=f"best: {best_value:.4g}", zorder=3)
        if numeric and _spans_decades(positions):
            panel.set_xscale("log")
        if not numeric:
            panel.set_xticks(positions, [_tick(v) for v in xs])
        if _spans_decades(values):
            panel.set_yscale("log")
        panel.set_xlabel(x)
        panel.set_ylabel(metric)
        panel.set_title(metric)
        panel.grid(True, alpha=0.3)
        panel.legend()
    if best_text:
        panel.set_title(f"{panel.get_title()}\nbest: {best_text}", fontsize=10)
    return figure
