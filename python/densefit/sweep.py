"""Hyperparameter sweeps: train one model per combination of a grid and compare the runs.

::

    import densefit as df
    from densefit.sweep import sweep

    def build(units, lr, seed):               # module level: other processes can load it
        model = df.Sequential([df.Dense(units, activation="relu", input_dim=2),
                               df.Dense(1, activation="sigmoid")], seed=seed)
        model.compile(loss="binary_crossentropy", optimizer=df.SGD(lr))
        return model

    result = sweep(build, X, y, {"units": [4, 16], "lr": [0.03, 0.3], "batch_size": [16, 64]},
                   epochs=50, validation_split=0.25, n_jobs=2)
    result.best                # the row with the lowest best_val_loss
    result.to_dataframe()      # one row per run (pandas)
    densefit.plot.sweep(result, "units", "lr")

**Grid.** ``grid`` maps names to lists of values; every combination trains, in
``itertools.product`` order (the last name varies fastest), and the rows come back in that order
however the runs are spread over processes. The names ``batch_size``, ``epochs`` and ``shuffle``
are arguments of :meth:`Sequential.fit <densefit.Sequential.fit>` and go there (overriding
``sweep``'s own ``epochs`` and ``batch_size``); every other name is a keyword argument of
``build``, which returns a compiled :class:`~densefit.Sequential`.

**Seeds.** Every run starts from the same seed, ``seed``, unless the grid varies it: runs that
differ only in, say, the learning rate then start from the same initial weights and visit the
rows in the same orders, so the comparison shows the learning rate alone. When ``build`` takes a
``seed`` parameter it receives that seed and should pass it to ``Sequential(seed=...)``; a
``build`` without one must fix its own seeds, else the runs are not reproducible. ``{"seed": [0,
1, 2]}`` in the grid repeats each cell with three seeds. The seed a run used is its row's
``seed`` (``None`` when ``build`` took none). A run computes the same numbers wherever it runs.

**Parallel runs.** ``n_jobs > 1`` trains in that many fresh local processes (``spawn``); each
sets :func:`densefit.set_num_threads(1) <densefit.set_num_threads>` so the runs, not the matrix
products, share the cores. ``client=`` (a ``distributed.Client``) trains every run as a task on
that Dask cluster, again on one core thread per task. The data go to every process once. In both
cases ``build`` travels pickled: cloudpickle, when installed, also carries lambdas and functions
defined in a notebook or script by value; a function from a module travels by name, and the
workers must be able to import that module (on a remote Dask cluster: install it there, or
``client.upload_file``). A run computes the same numbers wherever it runs. As with any ``spawn``
pool, a script that calls ``sweep(..., n_jobs=2)`` must do so under ``if __name__ ==
"__main__":`` (each worker imports the script).

**Divergence.** A run whose loss becomes NaN or infinite (a learning rate too high) does not stop
the sweep: its row has ``diverged=True`` and the numbers of its finite epochs, and it is never
:attr:`SweepResult.best` while any run finished.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import itertools
import math
import multiprocessing
import numbers
import pickle
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .model import Sequential, TrainingDiverged
from .threads import set_num_threads
from .validation import check_int

__all__ = ["sweep", "SweepResult", "FIT_KEYS"]

#: Grid names that go to ``fit`` instead of ``build``.
FIT_KEYS = ("batch_size", "epochs", "shuffle")

# fit's other arguments: sweep sets them (or they are per-sweep), so a grid may not vary them.
_FIXED_FIT_KEYS = ("validation_data", "validation_split", "verbose", "callbacks", "sample_weight", "class_weight")

# The columns sweep adds to every row; a grid name may not shadow one ("seed" may be in the grid).
RESULT_COLUMNS = ("seed", "final_loss", "final_val_loss", "best_val_loss", "best_epoch", "epochs_to_target",
                  "seconds", "samples_per_s", "diverged", "history")


# ----------------------------------------------------------------------------- result
@dataclass
class SweepResult:
    """What :func:`sweep` returns.

    ``rows``: one dict per run, in grid order: the combination's values under their grid names,
    then ``seed`` (the model seed the run used, ``None`` when ``build`` takes none),
    ``final_loss`` and ``final_val_loss`` (the last epoch's), ``best_val_loss`` (the lowest),
    ``best_epoch`` (the epoch, counted from 1, of the lowest ``val_loss``, or of the lowest
    ``loss`` without validation), ``epochs_to_target`` (the first epoch, from 1, whose
    ``val_loss`` (``loss`` without validation) is ``<= target``; ``None`` when never or without a
    target), ``seconds`` (the wall time of ``fit``), ``samples_per_s`` (training rows per second
    of training epochs, validation not counted), ``diverged`` and ``history`` (the
    :class:`~densefit.History`). Validation columns are ``None`` without validation data.
    """

    grid: dict
    rows: list
    validation: bool
    target: float | None = None
    _names: list = field(init=False, repr=False)

    def __post_init__(self):
        self._names = list(self.grid)

    @property
    def names(self) -> list:
        """The grid's names, in grid order."""
        return list(self._names)

    @property
    def metric(self) -> str:
        """The column :attr:`best` ranks by: ``best_val_loss``, or ``final_loss`` without
        validation."""
        return "best_val_loss" if self.validation else "final_loss"

    @property
    def best(self) -> dict:
        """The row with the lowest :attr:`metric` among the runs that did not diverge (among all
        of them when every run diverged); the first in grid order on a tie."""
        metric = self.metric

        def rank(row):
            value = row[metric]
            missing = value is None or not math.isfinite(value)
            return (bool(row["diverged"]), missing, math.inf if missing else value)
        return min(self.rows, key=rank)

    def params(self, row: dict) -> dict:
        """The grid values of ``row`` (a row of :attr:`rows`): with ``row["seed"]``, what it takes
        to rebuild and retrain that run's model."""
        return {name: row[name] for name in self._names}

    def to_dataframe(self):
        """The rows as a pandas DataFrame, without the ``history`` column (one row per run, grid
        order). Needs pandas (``pip install "densefit[pandas]"``)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError('SweepResult.to_dataframe needs pandas: pip install "densefit[pandas]"') from exc
        return pd.DataFrame([{k: v for k, v in row.items() if k != "history"} for row in self.rows])

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __repr__(self) -> str:
        if not self.rows:
            return f"SweepResult(0 runs over {self._names})"
        best = self.best
        value = best[self.metric]
        shown = "None" if value is None else f"{value:.4g}"
        return (f"SweepResult({len(self.rows)} runs over {self._names}; best {self.params(best)} "
                f"with {self.metric}={shown})")


# ----------------------------------------------------------------------------- what a run needs
@dataclass
class _Job:
    """What every run of one sweep shares; sent to each worker process once. ``build`` is the
    callable itself in this process, its pickled bytes when it travels."""

    build: object
    build_name: str
    X: object
    y: object
    validation_data: object
    validation_split: float | None
    epochs: int
    batch_size: int | None
    target: float | None

    def load_build(self):
        if not isinstance(self.build, bytes):
            return self.build
        try:
            return pickle.loads(self.build)
        except Exception as exc:
            raise RuntimeError(f"this worker process could not load build ({self.build_name}): {exc!r}. The "
                               "workers must be able to import the module build comes from (install it there, "
                               "or use client.upload_file on a Dask cluster), or define build in the script or "
                               "notebook that runs the sweep, with cloudpickle installed") from exc


@dataclass
class _Task:
    """One combination: its values by grid name, split into build's and fit's, and the seed."""

    index: int
    params: dict
    build_params: dict
    fit_params: dict
    seed: int | None


def _train(job: _Job, task: _Task) -> dict:
    """Build, train and summarize one run (in whichever process runs it)."""
    kwargs = _seeded(task)
    model = job.load_build()(**kwargs)
    _check_model(model, task.params)
    fit_kwargs = {"epochs": job.epochs, "batch_size": job.batch_size, **task.fit_params}
    if job.validation_split is not None:
        fit_kwargs["validation_split"] = job.validation_split
    start = time.perf_counter()
    try:
        history = model.fit(job.X, job.y, validation_data=job.validation_data, verbose=0, **fit_kwargs)
        diverged = False
    except TrainingDiverged as exc:  # a sweep goes on: the row shows the finite epochs
        history, diverged = exc.history, True
    seconds = time.perf_counter() - start
    return _summarize(task.params, kwargs.get("seed"), history, seconds, diverged, job.target)


def _summarize(params: dict, seed, history, seconds: float, diverged: bool, target) -> dict:
    """A result row from one run's History."""
    loss = history.history.get("loss", [])
    val = history.history.get("val_loss")
    watched = val if val is not None else loss  # what best_epoch and epochs_to_target look at
    best_epoch = int(np.argmin(watched)) + 1 if watched else None  # (a History holds finite epochs only)
    reached = None
    if target is not None:
        reached = next((i + 1 for i, v in enumerate(watched) if v <= target), None)
    train_seconds = float(np.sum(history.seconds))
    rows_trained = sum(s * r for s, r in zip(history.seconds, history.samples_per_s) if math.isfinite(r))
    row = dict(params)
    row.update(
        seed=seed,
        final_loss=loss[-1] if loss else None,
        final_val_loss=val[-1] if val else None,
        best_val_loss=min(val) if val else None,
        best_epoch=best_epoch,
        epochs_to_target=reached,
        seconds=seconds,
        samples_per_s=rows_trained / train_seconds if train_seconds > 0 else math.inf,
        diverged=diverged,
        history=history,
    )
    return row


def _check_model(model, params: dict) -> None:
    if not isinstance(model, Sequential):
        raise TypeError(f"build must return a densefit.Sequential, got {type(model).__name__} for {params}")
    if model.optimizer is None:
        raise ValueError(f"build must return a compiled model (call model.compile(...) in build); the model "
                         f"for {params} is not compiled")


# ----------------------------------------------------------------------------- in other processes
_WORKER_JOB: _Job | None = None  # a pool worker's copy of the sweep's shared data


def _init_worker(job: _Job) -> None:
    """A ProcessPoolExecutor worker's start: keep the sweep's shared data, train on one thread."""
    global _WORKER_JOB
    _WORKER_JOB = job
    set_num_threads(1)


def _train_in_worker(task: _Task) -> dict:
    return _train(_WORKER_JOB, task)


def _train_on_dask(job: _Job, task: _Task) -> dict:
    set_num_threads(1)  # the worker's task threads are the parallelism (a per-process setting)
    return _train(job, task)


def _dump_build(build) -> bytes:
    """``build`` as bytes another process can load: cloudpickle when installed (lambdas and
    functions of ``__main__`` by value), else pickle (module-level functions by name)."""
    try:
        import cloudpickle
        dumps = cloudpickle.dumps
    except ImportError:
        dumps = pickle.dumps
    try:
        return dumps(build)
    except Exception as exc:
        raise TypeError(f"build must be picklable to run in other processes (n_jobs > 1 or client=): pickling "
                        f"{_name(build)} failed with {exc!r}. Use a function defined at module level, or one that "
                        "holds no open files, locks or models") from exc


def _name(fn) -> str:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{name}" if module else name


def _with_context(exc: BaseException, task: _Task) -> BaseException:
    """Add which combination failed to an exception raised by its run."""
    if hasattr(exc, "add_note"):
        exc.add_note(f"in the sweep run {task.params}")
    return exc


# ----------------------------------------------------------------------------- the sweep
def sweep(build, X, y, grid: dict, epochs: int, batch_size: int | None = 32, validation_data=None,
          validation_split: float | None = None, n_jobs: int = 1, client=None, seed: int = 0,
          target: float | None = None, verbose: int = 1) -> SweepResult:
    """Train ``build(**params)`` on ``(X, y)`` for every combination of ``grid``; see the module
    docstring for how names, seeds and processes work.

    Parameters
    ----------
    build : callable
        ``build(**params)`` (plus ``seed=`` when it takes one) returns a compiled
        :class:`~densefit.Sequential`. Called once here up front, to check it, then once per run.
    X, y : the training data, as for ``fit``.
    grid : dict of name -> list
        The values to try. ``batch_size``, ``epochs`` and ``shuffle`` go to ``fit``.
    epochs, batch_size : ``fit``'s, for every run whose grid does not set them.
    validation_data, validation_split : ``fit``'s, for every run.
    n_jobs : int
        Local processes to train in (1: in this process).
    client : distributed.Client or None
        Train on this Dask cluster instead (then ``n_jobs`` must stay 1).
    seed : int
        The seed of every run (passed to ``build``), unless the grid has ``seed``.
    target : float or None
        The loss (``val_loss`` with validation) whose first epoch at or below it is the row's
        ``epochs_to_target``.
    verbose : 0 or 1
        1: a progress bar over the runs on stderr.

    Returns
    -------
    SweepResult
    """
    if not callable(build):
        raise TypeError(f"build must be a callable returning a compiled densefit.Sequential, got {build!r}")
    names = _check_grid(grid)
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1, allow_none=True)
    n_jobs = check_int("n_jobs", n_jobs, 1)
    seed = check_int("seed", seed, 0)
    if client is not None and n_jobs > 1:
        raise ValueError(f"give client= (train on the Dask cluster) or n_jobs > 1 (local processes), not both; "
                         f"got n_jobs={n_jobs} with a client")
    if client is not None and not (hasattr(client, "submit") and hasattr(client, "gather")):
        raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
    if validation_data is not None and validation_split is not None:
        raise ValueError("give validation_data or validation_split, not both")
    if target is not None:
        if isinstance(target, bool) or not isinstance(target, numbers.Real):
            raise TypeError(f"target must be a number or None, got {type(target).__name__}")
        if not math.isfinite(target):
            raise ValueError(f"target must be a finite number, got {target!r}")
        target = float(target)
    if verbose not in (0, 1):
        raise ValueError(f"verbose must be 0 or 1, got {verbose!r}")
    takes_seed = _check_build_params(build, names)

    tasks = _tasks(grid, names, seed, takes_seed)
    try:  # a wrong build fails here, not in a worker
        _check_model(build(**_seeded(tasks[0])), tasks[0].params)
    except Exception as exc:
        raise _with_context(exc, tasks[0])
    job = _Job(build, _name(build), X, y, validation_data, validation_split, epochs, batch_size, target)
    if client is not None:
        job.build = _dump_build(build)
        rows = _run_on_dask(client, job, tasks, verbose)
    elif n_jobs > 1 and len(tasks) > 1:
        job.build = _dump_build(build)
        rows = _run_in_processes(min(n_jobs, len(tasks)), job, tasks, verbose)
    else:
        rows = _run_here(job, tasks, verbose)
    return SweepResult(dict(grid), rows, validation=validation_data is not None or validation_split is not None,
                       target=target)


def _check_grid(grid) -> list:
    if not isinstance(grid, dict):
        raise TypeError(f"grid must be a dict mapping names to lists of values, got {type(grid).__name__}")
    if not grid:
        raise ValueError("grid is empty: give at least one name with a list of values, e.g. {'lr': [0.01, 0.1]}")
    for name, values in grid.items():
        if not isinstance(name, str):
            raise TypeError(f"grid names must be strings, got {name!r}")
        if not isinstance(values, list):
            hint = f"; for the single value {values!r} write [{values!r}]" if isinstance(values, tuple) else ""
            raise TypeError(f"grid[{name!r}] must be a list of the values to try, got {type(values).__name__}"
                            f"{hint}")
        if not values:
            raise ValueError(f"grid[{name!r}] is an empty list: give at least one value")
        if name in _FIXED_FIT_KEYS:
            raise ValueError(f"grid[{name!r}]: {name} is a fit argument that a sweep does not vary (only "
                             f"{', '.join(FIT_KEYS)} can be in the grid); pass it to sweep() for every run")
        if name in RESULT_COLUMNS and name != "seed":
            raise ValueError(f"grid[{name!r}]: {name!r} is a column of the sweep's results; rename it in build")
    return list(grid)


def _check_build_params(build, names: list) -> bool:
    """Check that ``build`` accepts the grid's build names (and nothing it needs is missing);
    return whether it takes ``seed``."""
    try:
        signature = inspect.signature(build)
    except (TypeError, ValueError):  # no signature to read (some builtins): the first call checks
        return False
    params = signature.parameters
    keywords = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    open_ended = any(p.kind == p.VAR_KEYWORD for p in params.values())
    build_names = [n for n in names if n not in FIT_KEYS]
    unknown = [n for n in build_names if n not in keywords and not open_ended]
    if unknown:
        raise ValueError(f"grid names {unknown} are neither fit arguments ({', '.join(FIT_KEYS)}) nor parameters "
                         f"of build {_name(build)}{signature}")
    takes_seed = "seed" in keywords
    given = set(build_names) | ({"seed"} if takes_seed else set())
    missing = [n for n, p in params.items() if p.default is p.empty and n not in given
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if missing:
        raise ValueError(f"build {_name(build)}{signature} needs {missing}, which the grid does not give: add them "
                         "to the grid or give them defaults")
    return takes_seed


def _tasks(grid: dict, names: list, seed: int, takes_seed: bool) -> list:
    tasks = []
    for index, positions in enumerate(itertools.product(*(range(len(grid[n])) for n in names))):
        params = {n: grid[n][p] for n, p in zip(names, positions)}
        derived = seed if takes_seed and "seed" not in params else None
        tasks.append(_Task(index, params, {n: v for n, v in params.items() if n not in FIT_KEYS},
                           {n: v for n, v in params.items() if n in FIT_KEYS}, derived))
    return tasks


def _seeded(task: _Task) -> dict:
    kwargs = dict(task.build_params)
    if task.seed is not None:
        kwargs["seed"] = task.seed
    return kwargs


def _progress(total: int, verbose: int):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="sweep", unit="run", file=sys.stderr, disable=verbose == 0, dynamic_ncols=True)


def _run_here(job: _Job, tasks: list, verbose: int) -> list:
    rows = []
    with _progress(len(tasks), verbose) as bar:
        for task in tasks:
            try:
                rows.append(_train(job, task))
            except Exception as exc:
                raise _with_context(exc, task)
            bar.update(1)
    return rows


def _run_in_processes(workers: int, job: _Job, tasks: list, verbose: int) -> list:
    # spawn: a fresh interpreter per worker, the same on Linux, macOS and Windows, and safe with
    # the threads this process may run (fork would copy them mid-state)
    context = multiprocessing.get_context("spawn")
    rows = [None] * len(tasks)
    with _progress(len(tasks), verbose) as bar, concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(job,)) as pool:
        futures = {pool.submit(_train_in_worker, task): task for task in tasks}
        try:
            for future in concurrent.futures.as_completed(futures):
                task = futures[future]
                try:
                    rows[task.index] = future.result()
                except Exception as exc:
                    raise _with_context(exc, task)
                bar.update(1)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return rows


def _run_on_dask(client, job: _Job, tasks: list, verbose: int) -> list:
    from distributed import as_completed

    shared = client.scatter(job, broadcast=True, hash=False)  # the data travel to each worker once
    futures = [client.submit(_train_on_dask, shared, task, pure=False) for task in tasks]
    by_key = {future.key: task for future, task in zip(futures, tasks)}
    with _progress(len(tasks), verbose) as bar:
        try:
            for future in as_completed(futures):
                if future.status == "error":
                    try:
                        future.result()
                    except Exception as exc:
                        raise _with_context(exc, by_key[future.key])
                bar.update(1)
        except BaseException:
            client.cancel(futures)
            raise
    return client.gather(futures)
