"""``Sequential``: the Keras-like model. It owns the layer specs, the compiled :class:`Plan`
and the :class:`State`; every computation goes through one backend module.

``fit`` computes, per epoch ``e`` (counted across successive ``fit`` calls), the learning rate
``schedule(e)`` and hands whole epochs to the backend with the sample order
``densefit.shuffle.permutation(seed, e, n)``, which the backend computes itself from the spec
``Shuffle(seed, first_epoch)`` (or ``0..n-1`` without shuffling).
"""

from __future__ import annotations

import functools
import io
import json
import sys
import threading
import time
import warnings

import numpy as np

from . import backends
from . import layers as layer_specs
from . import losses as L
from . import metrics as M
from . import optimizers as O
from . import schedules
from .callbacks import CallbackList, History, TerminateOnNaN
from .savefile import INVALID, MAX_COUNTER, invalid, read_save_file, write_atomically
from .plan import (BATCHNORM, KIND, LAYER, N_IN, N_OUT, STAT_OFF, Plan, State, as_dtype, build_plan, infer_input_dim,
                   init_state, lower, penalty)
from .shuffle import Shuffle
from .validation import as_features, as_sample_weight, as_targets, check_int

FORMAT_VERSION = 2                # 2: shuffled epochs follow densefit.shuffle (1: PCG64 permutations)
_MAX_ORDER_ENTRIES = 1 << 22      # rows × epochs per backend call at most (sized once for materialized orders, which no backend is handed now)
_CALL_SECONDS = 0.1               # target length of one backend call when nothing needs Python
_EVAL_ROWS = 1 << 16              # rows per chunk in evaluate/predict


def _exclusive(method):
    """One call at a time per model: a second thread entering fit, evaluate, predict,
    loss_and_grad or set_weights while another runs gets a RuntimeError instead of an
    interleaving (the backends update the state in place). Re-entrant within a thread, so
    callbacks may call them during fit."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(f"Sequential.{method.__name__}: this model is in use by another thread (fit, evaluate, "
                               "predict, loss_and_grad or set_weights); use one model per thread, or wait for that "
                               "call to return")
        try:
            return method(self, *args, **kwargs)
        finally:
            self._lock.release()
    return guarded


def _interruptible(call):
    """``call(cancel)`` in a worker thread while this (main) thread waits, so that Ctrl-C arrives
    at once even inside a long C++ or numba epoch: the KeyboardInterrupt sets ``cancel``, the
    backend undoes the epoch under way and returns the completed ones. Returns ``(stats,
    interrupted)``."""
    cancel = np.zeros(1, dtype=np.int64)
    result, finished = {}, threading.Event()

    def run():
        try:
            result["stats"] = call(cancel)
        except BaseException as exc:  # re-raised in the calling thread
            result["error"] = exc
        finally:
            finished.set()

    worker = threading.Thread(target=run, name="densefit-train", daemon=True)
    worker.start()
    while True:  # an Event, not Thread.join: a join interrupted by Ctrl-C can report a live thread as ended
        try:
            if finished.wait(0.05):
                break
        except KeyboardInterrupt:
            cancel[0] = 1
    worker.join()
    if "error" in result:
        raise result["error"]
    return result["stats"], bool(cancel[0])


class TrainingDiverged(FloatingPointError):
    """``fit`` stopped because an epoch's loss or the weights became NaN or infinite. The model
    holds the state after the last finite epoch; ``history`` has the finite epochs."""

    def __init__(self, epoch: int, history):
        super().__init__(
            f"training diverged in epoch {epoch}: its loss or the weights became NaN or infinite. The model holds "
            f"the state after epoch {epoch - 1}, the last finite one (history: {len(history.epoch)} epochs of this "
            "fit). Try a lower learning rate, gradient clipping (clipnorm= or clipvalue= on the optimizer) or "
            "standardized inputs.")
        self.epoch, self.history = epoch, history


class _ProgressBar:
    """``fit(verbose=1)``: one tqdm bar over the epochs on stderr (tqdm's notebook bar in
    Jupyter), refreshed at most 10 times a second, with the last epoch's logs and samples/s.

    During a backend call that may be long (the first, and any after an epoch of over a second) a
    thread polls the backend's progress counter (rows trained so far in the call) every 0.1 s and
    moves the bar within the epoch; the backend never calls Python per batch."""

    POLL_SECONDS = 0.1
    LONG_EPOCH_SECONDS = 1.0

    def __init__(self, epochs: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=epochs, unit="epoch", file=sys.stderr, mininterval=self.POLL_SECONDS,
                        dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} epochs [{elapsed}<{remaining}{postfix}]")
        self.done = 0

    def watching(self, history: History) -> bool:
        """Whether the next backend call gets a progress counter and a polling thread."""
        return not history.seconds or history.seconds[-1] > self.LONG_EPOCH_SECONDS

    def poll(self, progress: np.ndarray, rows_per_epoch: int):
        """Start the polling thread; returns the function that stops it."""
        stop = threading.Event()

        def run():
            while not stop.wait(self.POLL_SECONDS):
                self.bar.n = self.done + int(progress[0]) / rows_per_epoch
                self.bar.refresh()

        thread = threading.Thread(target=run, name="densefit-progress", daemon=True)
        thread.start()

        def finish():
            stop.set()
            thread.join()
        return finish

    def update(self, count: int, history: History) -> None:
        postfix = {k: f"{v[-1]:.4g}" for k, v in history.history.items() if k != "learning_rate"}
        postfix["samples/s"] = f"{history.samples_per_s[-1]:.3g}"
        self.done += count
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(self.done - self.bar.n)  # tqdm redraws at most every mininterval

    def close(self) -> None:
        self.bar.close()


class Sequential:
    """A stack of layers trained as one network.

    Parameters
    ----------
    layers : list of Dense, Activation, Dropout, BatchNorm
    seed : int or None
        Seeds initialization (``Generator(PCG64(seed))``), shuffling and dropout masks.
        ``None`` draws one from the OS (readable afterwards as ``model.seed``).
    dtype : "float32" or "float64"
    backend : "auto", "cpp", "numba" or "numpy"
    """

    def __init__(self, layers=None, seed: int | None = None, dtype="float32", backend: str = "auto"):
        self.layers: list = []
        for layer in layers or []:
            self.add(layer)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (1 << 63))
        self.seed = check_int("seed", seed, 0)
        self.dtype = as_dtype(dtype)
        self._backend = backends.resolve(backend)
        self.loss: str | None = None
        self.optimizer: O.Optimizer | None = None
        self.metrics: list[str] = []
        self.penalty_per_weight = False
        self.stop_training = False  # a callback sets it to end fit after the current epoch
        self.history = None  # the History of the last fit (Keras' model.history)
        self._lock = threading.RLock()  # see _exclusive
        self.plan: Plan | None = None
        self.state: State | None = None

    # ----------------------------------------------------------------------------- building
    def add(self, layer) -> None:
        """Append a layer (only before the weights exist)."""
        if not isinstance(layer, layer_specs.Layer):
            raise TypeError(f"layers must be densefit layers (Dense, Activation, Dropout, BatchNorm), got {layer!r}")
        if getattr(self, "state", None) is not None:
            raise ValueError("cannot add layers after the model has weights; build a new model")
        self.layers.append(layer)

    def compile(self, loss: str = "mse", optimizer="sgd", metrics=None, penalty_per_weight: bool = False) -> None:
        """Choose the loss, the optimizer and the metrics. Starts a new training run: keeps the
        weights (if any) but resets the optimizer slots and the step and epoch counters.

        ``penalty_per_weight=True`` divides the kernel regularizers' penalty in each batch by the
        batch's total sample weight (its size when unweighted): scikit-learn's ``½α‖W‖² / Σw``
        instead of Keras' penalty added once per batch.
        """
        L.loss_code(loss)
        if not isinstance(penalty_per_weight, (bool, np.bool_)):
            raise TypeError(f"penalty_per_weight must be a bool, got {type(penalty_per_weight).__name__}")
        self.penalty_per_weight = bool(penalty_per_weight)
        optimizer = O.get(optimizer)
        metrics = M.resolve([] if metrics is None else list(metrics), L.loss_code(loss))
        self.loss, self.optimizer = loss, optimizer
        self.metrics = metrics
        n_features = self.plan.n_features if self.plan else infer_input_dim(self.layers) if self.layers else None
        if n_features is not None:
            self._build(n_features, keep_weights=True)

    def _build(self, n_features: int, keep_weights: bool) -> None:
        old = self.state
        self.plan = build_plan(self.layers, n_features, self.loss, self.optimizer, self.dtype, self.seed,
                               self.penalty_per_weight)
        if keep_weights and old is not None:
            self.state = State(old.params, np.zeros_like(old.slots), old.stats)
        else:
            self.state = init_state(self.plan, self.layers, self.seed)

    def _require_compiled(self) -> None:
        if self.optimizer is None:
            raise ValueError("call model.compile(loss=..., optimizer=...) first")

    def _ensure_built(self, X) -> None:
        self._require_compiled()
        if self.plan is None:
            if X.ndim != 2:
                raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
            if X.shape[1] == 0:  # before building: the model must not stay built for 0 inputs
                raise ValueError(f"X has no features (shape {X.shape})")
            self._build(X.shape[1], keep_weights=False)

    def _require_built(self) -> None:
        if self.state is None:
            raise ValueError("the model has no weights yet: give input_dim to the first layer and compile, or fit it")

    @property
    def epoch(self) -> int:
        """Epochs trained so far, across fit calls and save/load (read-only)."""
        return 0 if self.state is None else self.state.epoch

    @property
    def step(self) -> int:
        """Optimizer steps taken so far (read-only)."""
        return 0 if self.state is None else self.state.step

    # ----------------------------------------------------------------------------- backends
    @property
    def backend(self) -> str:
        """The name of the backend this model computes with."""
        return self._backend

    def set_backend(self, name: str) -> None:
        """Switch backend; weights, optimizer state, BN statistics and counters carry over."""
        self._backend = backends.resolve(name)

    # ----------------------------------------------------------------------------- training
    def _prepare(self, X, y, name_x="X", name_y="y", check_finite_x=True):
        X = np.asarray(X) if not hasattr(X, "dtype") else X
        self._ensure_built(X)
        X = as_features(X, self.plan.dtype, self.plan.n_features, name_x, check_finite=check_finite_x)
        y = as_targets(y, self.plan.loss, self.plan.n_outputs, X.shape[0], self.plan.dtype, name_y)
        return X, y

    def _orders(self, first_epoch: int, shuffle: bool) -> Shuffle | None:
        """The backends' orders argument: None for rows 0..n-1 every epoch, else the spec from
        which each backend computes epoch e's order (no index array is built here)."""
        return Shuffle(self.seed, first_epoch) if shuffle else None

    def _accuracy(self, correct, seen):
        """Fraction of correct predictions (each of the K outputs counts for binary cross-entropy);
        scalars or arrays of per-epoch counts."""
        per_sample = self.plan.n_outputs if self.plan.loss == L.BINARY_CROSSENTROPY else 1
        return correct / (seen * per_sample)

    @_exclusive
    def fit(self, X, y, epochs: int = 1, batch_size: int | None = 32, shuffle: bool = True,
            validation_data=None, verbose: int = 1, sample_weight=None, class_weight=None,
            validation_split: float | None = None, callbacks=None) -> History:
        """Train for ``epochs`` more epochs of mini-batch steps; return the :class:`History`.

        ``batch_size=1`` is SGD, ``batch_size=len(X)`` (or ``None``) full-batch gradient descent;
        the last, smaller batch of an epoch is kept. ``verbose``: 0 silent, 1 a live tqdm bar on
        stderr (at most 10 refreshes a second), 2 one line per epoch on stdout. ``sample_weight`` (n,), finite, ≥ 0:
        each batch's loss is ``Σ wᵢ lossᵢ / Σ wᵢ`` over its rows, so a weight of 2 equals the row
        twice under full-batch training; the epoch's ``loss`` averages the batches by row count.
        ``class_weight={label: w}`` multiplies each row's weight by its class's (1 for a label
        not in the dict): the same as the matching ``sample_weight``. ``validation_data`` is
        ``(X_val, y_val)`` or ``(X_val, y_val, w_val)``; ``validation_split=f`` holds out the
        last ``f`` of the rows instead, taken before shuffling (Keras). ``callbacks``: a list
        of :class:`densefit.callbacks.Callback` (see that module for when they are called).
        """
        epochs = check_int("epochs", epochs, 0)
        if validation_split is not None:
            X, y, sample_weight, validation_data = _split_off(X, y, sample_weight, validation_split, validation_data)
        X, y = self._prepare(X, y, check_finite_x=epochs == 0)  # else the first backend call checks X (below)
        n = X.shape[0]
        sample_weight = self._row_weights(y, sample_weight, class_weight)
        batch_size = n if batch_size is None else min(check_int("batch_size", batch_size, 1), n)
        if epochs and batch_size == 1 and (self.plan.ops[:, KIND] == BATCHNORM).any():
            # (a last batch of one row is fine: the others give the running statistics their spread)
            raise ValueError("BatchNorm needs batches of at least 2 rows to estimate batch statistics; "
                             f"batch_size=1 over {n} rows gives only 1-row batches")
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be a bool, got {type(shuffle).__name__}")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be a tuple (X_val, y_val) or (X_val, y_val, sample_weight_val)")
            Xv, yv = self._prepare(*validation_data[:2], name_x="validation_data X", name_y="validation_data y")
            wv = None if len(validation_data) == 2 or validation_data[2] is None else as_sample_weight(
                validation_data[2], Xv.shape[0], self.plan.dtype, "validation_data sample_weight")
        callbacks = CallbackList(callbacks, self)
        history = self.history = History()
        per_epoch = (validation_data is not None or verbose == 2 or callbacks.needs_each_epoch
                     or M.needs_predictions(self.metrics))
        # Epochs per backend call: one when Python has work after every epoch; all of them when
        # nothing is printed (bounded by the size of the sample orders); else growing calls of
        # about _CALL_SECONDS so progress lines keep coming.
        chunk = 1 if verbose else epochs
        validation = None if validation_data is None else (Xv, yv, wv)
        bar = _ProgressBar(epochs) if verbose == 1 else None
        self.stop_training = False
        try:
            self._fit_loop(X, y, n, epochs, batch_size, shuffle, sample_weight, validation, callbacks, history,
                           per_epoch, chunk, bar, verbose)
        finally:
            if bar is not None:
                bar.close()
        callbacks.on_train_end({k: v[-1] for k, v in history.history.items()})
        return history

    def _fit_loop(self, X, y, n, epochs, batch_size, shuffle, sample_weight, validation, callbacks, history,
                  per_epoch, chunk, bar, verbose) -> None:
        """The epochs of :meth:`fit`, on validated arguments."""
        done, started = 0, time.perf_counter()
        callbacks.on_train_begin({})
        while done < epochs and not self.stop_training:
            count = 1 if per_epoch else min(chunk, epochs - done, max(1, _MAX_ORDER_ENTRIES // n))
            first = self.state.epoch
            if per_epoch:  # else the callbacks only observe: they see the epochs after the call
                callbacks.on_epoch_begin(first, {})
            lrs = self.optimizer.learning_rate.rates(first, count)  # after on_epoch_begin, which may set it
            progress = np.zeros(1, dtype=np.int64) if bar is not None and bar.watching(history) else None
            finish = bar.poll(progress, n) if progress is not None else None
            call_start = time.perf_counter()
            backup = self.state.copy()

            def train(offset, epochs_now, progress=None, cancel=None):
                return backends.train_epochs(self._backend, self.plan, self.state, X, y,
                                             self._orders(first + offset, shuffle),
                                             lrs[offset:offset + epochs_now], batch_size,
                                             check_finite=done == 0 and offset == 0, sample_weight=sample_weight,
                                             progress=progress, cancel=cancel)
            interrupted = False
            try:
                # The first call's first epoch reads every row: NaN/inf in X raises there, state untouched.
                if self._may_be_long(history, count, n, batch_size):
                    stats, interrupted = _interruptible(lambda cancel: train(0, count, progress, cancel))
                    count = stats.shape[0]
                else:
                    stats = train(0, count, progress)
            finally:
                if finish is not None:
                    finish()
            diverged = None
            if not self._finite(stats):  # back to the last finite epoch, replayed from the backup
                stats = self._last_finite(backup, stats, train)
                count = stats.shape[0]
                diverged = first + count
            if count:  # (none when the first epoch of the call diverged or was interrupted)
                elapsed = time.perf_counter() - call_start
                chunk = max(1, min(2 * count, int(count * _CALL_SECONDS / max(elapsed, 1e-9))))
                self._record(first, stats, lrs[:count], elapsed, X, y, validation, history, callbacks, per_epoch)
                done += count
                if bar is not None:
                    bar.update(count, history)
                elif verbose == 2:
                    self._print_progress(done, epochs, history, time.perf_counter() - started)
            if diverged is not None:
                self._stop_diverged(diverged, history, callbacks)
            if interrupted:  # the model is as at the end of the last completed epoch, recorded above
                raise KeyboardInterrupt

    def _record(self, first, stats, lrs, elapsed, X, y, validation, history, callbacks, per_epoch) -> None:
        """The logs of the epochs ``first, first + 1, …`` that one backend call trained (``stats``,
        one row each) into the history, then to the callbacks."""
        count, n = stats.shape[0], X.shape[0]
        logs = {"loss": stats[:, backends.LOSS_SUM] / stats[:, backends.SEEN]}
        for name in self.metrics:
            if M.counted(name):
                logs[name] = self._accuracy(stats[:, backends.CORRECT], stats[:, backends.SEEN])
        if M.needs_predictions(self.metrics):  # count == 1 here
            predictions = self._forward(X, None, logits=False)
            logs.update({k: [v] for k, v in M.compute(self.metrics, self.plan.loss, predictions, y).items()})
        if validation:  # count == 1 here
            logs.update({f"val_{k}": [v] for k, v in self._evaluate(*validation[:2], None, validation[2]).items()})
        logs["learning_rate"] = lrs
        history._extend(range(first, first + count), logs, elapsed, n)
        if not callbacks.callbacks:  # a fit of many short epochs would spend more on the loop below than on training
            return
        values = {k: np.asarray(v, dtype=np.float64).tolist() for k, v in logs.items()}
        for i in range(count):
            if not per_epoch:
                callbacks.on_epoch_begin(first + i, {})
            callbacks.on_epoch_end(first + i, {k: v[i] for k, v in values.items()})

    def _may_be_long(self, history, count: int, n: int, batch_size: int) -> bool:
        """Whether a backend call of ``count`` epochs may outlast the ~0.25 s within which Ctrl-C
        should take effect anyway, so that it runs in a worker thread (see :func:`_interruptible`;
        that costs about a millisecond). The pace of the last epochs says so, or before the first
        a generous estimate: 6 flops per parameter and row at 20 GFLOP/s (5 for numpy) plus a
        per-batch cost. Only the main thread receives Ctrl-C."""
        if threading.current_thread() is not threading.main_thread():
            return False
        if history.seconds:
            return history.seconds[-1] * count > 0.25
        numpy = self._backend == "numpy"
        batches = -(-n // batch_size)
        per_epoch = 6.0 * n * self.plan.n_params / (5e9 if numpy else 2e10) + batches * (5e-5 if numpy else 2e-6)
        return per_epoch * count > 0.25

    def _finite(self, stats: np.ndarray) -> bool:
        """Whether every epoch's loss and the weights after them are finite."""
        return bool(np.isfinite(stats[:, backends.LOSS_SUM]).all() and backends.all_finite(self.state.params))

    def _restore(self, saved: State) -> None:
        """Put ``saved`` back into the state's own arrays (views of them stay valid)."""
        self.state.params[:], self.state.slots[:], self.state.stats[:] = saved.params, saved.slots, saved.stats
        self.state.step, self.state.epoch = saved.step, saved.epoch

    def _last_finite(self, backup: State, stats: np.ndarray, train) -> np.ndarray:
        """After a call whose epochs went non-finite: restore ``backup`` and replay its epochs one
        at a time (the same orders and rates, so the same numbers) up to the last finite one; the
        state is then that epoch's, and its stats are returned."""
        self._restore(backup)
        kept = []
        for offset in range(stats.shape[0] - 1):  # the last epoch of the call is the non-finite one at the latest
            before = self.state.copy()
            row = train(offset, 1)
            if not self._finite(row):
                self._restore(before)
                break
            kept.append(row)
        return np.concatenate(kept) if kept else stats[:0]

    def _stop_diverged(self, epoch: int, history, callbacks) -> None:
        """End fit after divergence in ``epoch``: return quietly with TerminateOnNaN among the
        callbacks (then ``fit`` returns the finite epochs' history), else raise."""
        self.stop_training = True
        if any(isinstance(cb, TerminateOnNaN) for cb in callbacks.callbacks):
            print(f"Epoch {epoch}: invalid loss, terminating training")
            return
        raise TrainingDiverged(epoch, history)

    def _row_weights(self, y: np.ndarray, sample_weight, class_weight) -> np.ndarray | None:
        """``sample_weight`` times each row's ``class_weight`` (validated), or ``None``."""
        n = y.shape[0]
        weights = None if sample_weight is None else as_sample_weight(sample_weight, n, self.plan.dtype)
        if class_weight is None:
            return weights
        if not isinstance(class_weight, dict):
            raise TypeError(f"class_weight must be a dict {{label: weight}}, got {type(class_weight).__name__}")
        if self.plan.loss == L.CATEGORICAL_CROSSENTROPY:
            labels = y[:, 0] if y.shape[1] == 1 else y.argmax(axis=1)
        elif self.plan.loss == L.BINARY_CROSSENTROPY and y.shape[1] == 1:
            labels = y[:, 0]
        else:
            raise ValueError("class_weight needs class labels: use it with categorical_crossentropy or with "
                             "binary_crossentropy on one output (else pass sample_weight)")
        table = np.ones(self.plan.n_outputs if self.plan.loss == L.CATEGORICAL_CROSSENTROPY else 2)
        for label, value in class_weight.items():
            if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < len(table):
                raise ValueError(f"class_weight has label {label!r}; expected integer labels in [0, {len(table)})")
            table[int(label)] = value
        per_row = as_sample_weight(table[labels.astype(np.int64)], n, self.plan.dtype, "class_weight")
        return per_row if weights is None else as_sample_weight(weights * per_row, n, self.plan.dtype)

    def _print_progress(self, done: int, epochs: int, history: History, seconds: float) -> None:
        parts = [f"epoch {self.state.epoch} ({done}/{epochs})"]
        for key, values in history.history.items():
            if key != "learning_rate":
                parts.append(f"{key} {values[-1]:.4f}")
        parts.append(f"{seconds:.2f}s")
        print(" - ".join(parts), file=sys.stdout, flush=True)

    # ----------------------------------------------------------------------------- inference
    @_exclusive
    def predict(self, X, batch_size: int | None = None) -> np.ndarray:
        """Outputs of the last layer in inference mode (probabilities for sigmoid/softmax)."""
        self._require_built()
        X = as_features(X, self.plan.dtype, self.plan.n_features)
        return self._forward(X, batch_size, logits=False)

    def _forward(self, X: np.ndarray, batch_size, logits: bool) -> np.ndarray:
        """The backend's inference pass on an already validated ``X``."""
        batch_size = _EVAL_ROWS if batch_size is None else check_int("batch_size", batch_size, 1)
        batch_size = min(batch_size, max(1, X.shape[0]))  # any larger size means the same: one batch
        return backends.predict(self._backend, self.plan, self.state, X, batch_size, logits=logits)

    @_exclusive
    def evaluate(self, X, y, batch_size: int | None = None, sample_weight=None) -> dict:
        """Mean loss (plus the regularization penalty, once) and metrics in inference mode;
        with ``sample_weight`` the loss is ``Σ wᵢ lossᵢ / Σ wᵢ`` (metrics stay unweighted)."""
        self._require_built()
        X, y = self._prepare(X, y)
        if sample_weight is not None:
            sample_weight = as_sample_weight(sample_weight, X.shape[0], self.plan.dtype)
        return self._evaluate(X, y, batch_size, sample_weight)

    def _evaluate(self, X: np.ndarray, y: np.ndarray, batch_size, sample_weight=None) -> dict:
        """:meth:`evaluate` on already validated arrays (``fit`` validates its validation data once)."""
        total, correct = 0.0, 0
        predicted = M.needs_predictions(self.metrics)
        probabilities = np.empty((X.shape[0], self.plan.n_outputs), dtype=self.plan.dtype) if predicted else None
        for start in range(0, X.shape[0], _EVAL_ROWS):
            rows = slice(start, start + _EVAL_ROWS)
            z = self._forward(X[rows], batch_size, logits=True)
            w = None if sample_weight is None else sample_weight[rows].astype(np.float64)
            value, right = backends.score_logits(self.plan, z, y[rows], w)
            total += value
            correct += right
            if predicted:
                probabilities[rows] = backends.output_activation(self.plan, z)
        weight = X.shape[0] if sample_weight is None else float(np.sum(sample_weight, dtype=np.float64))
        result = {"loss": float(total / weight + penalty(self.plan, self.state.params))}
        for name in self.metrics:
            if M.counted(name):
                result[name] = float(self._accuracy(correct, X.shape[0]))
        if predicted:
            result.update(M.compute(self.metrics, self.plan.loss, probabilities, y))
        return result

    @_exclusive
    def loss_and_grad(self, X, y, sample_weight=None):
        """``(loss, grads)`` on one batch in training mode without updating anything; ``grads``
        in :meth:`get_weights` order. Dropout uses the mask of the next optimizer step.
        ``sample_weight`` weighs the rows as in :meth:`fit`."""
        X, y = self._prepare(X, y)
        if sample_weight is not None:
            sample_weight = as_sample_weight(sample_weight, X.shape[0], self.plan.dtype)
        value, grad = backends.loss_and_grad(self._backend, self.plan, self.state, X, y, sample_weight)
        return float(value), self._unflatten(grad)

    # ----------------------------------------------------------------------------- weights
    def _unflatten(self, flat: np.ndarray) -> list[np.ndarray]:
        return [w.view(flat).copy() for w in self.plan.weights]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the weights, Keras order: ``W0, b0, W1, b1, …`` (BatchNorm: ``γ, β``)."""
        self._require_built()
        return self._unflatten(self.state.params)

    @_exclusive
    def set_weights(self, weights) -> None:
        """Overwrite the weights from a list in :meth:`get_weights` order."""
        self._require_built()
        specs = self.plan.weights
        if len(weights) != len(specs):
            raise ValueError(f"expected {len(specs)} weight arrays, got {len(weights)}")
        arrays = []
        for i, (w, spec) in enumerate(zip(weights, specs)):
            w = np.asarray(w, dtype=np.float64)
            if w.shape != spec.shape:
                raise ValueError(f"weights[{i}] has shape {w.shape}, expected {spec.shape}")
            if not np.isfinite(w).all():
                raise ValueError(f"weights[{i}] contains NaN or infinity")
            arrays.append(w)
        for w, spec in zip(arrays, specs):
            spec.view(self.state.params)[...] = w

    def count_params(self) -> int:
        self._require_built()
        return self.plan.n_params

    def summary(self) -> str:
        """A table of the layers with their output widths and parameter counts (also printed);
        ``?`` where the input width is not known yet."""
        n_features = self.plan.n_features if self.plan else infer_input_dim(self.layers)
        lowered = lower(self.layers, n_features) if n_features else None
        lines = [f"{'layer':<28}{'output':>10}{'params':>10}"]
        for position, layer in enumerate(self.layers):
            name = type(layer).__name__ + (f"({layer.activation})" if hasattr(layer, "activation") else "")
            if lowered is None:
                lines.append(f"{name:<28}{'?':>10}{'?':>10}")
                continue
            width = [row[N_OUT] for row in lowered.ints if row[LAYER] == position][-1]
            params = sum(w.size for w in lowered.weights if w.layer == position)
            lines.append(f"{name:<28}{width:>10}{params:>10}")
        text = "\n".join(lines)
        print(text)
        return text

    # ----------------------------------------------------------------------------- save / load
    def get_config(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "layers": [layer.get_config() for layer in self.layers],
            "seed": self.seed, "dtype": self.dtype.name, "backend": self._backend,
            "loss": self.loss, "metrics": self.metrics, "penalty_per_weight": self.penalty_per_weight,
            "optimizer": None if self.optimizer is None else self.optimizer.get_config(),
            "n_features": None if self.plan is None else self.plan.n_features,
            "step": None if self.state is None else self.state.step,
            "epoch": None if self.state is None else self.state.epoch,
        }

    def save(self, path) -> None:
        """Write an ``.npz`` with the parameters, optimizer slots, BN statistics and a JSON
        config (layers, loss, optimizer, counters): everything needed to continue training.
        ``path`` may also be a binary file object."""
        config = json.dumps(self.get_config())
        arrays = {"config": np.frombuffer(config.encode(), dtype=np.uint8)}
        if self.state is not None:
            arrays.update(params=self.state.params, slots=self.state.slots, stats=self.state.stats)
        if hasattr(path, "write"):
            np.savez(path, **arrays)
            return
        write_atomically(path, lambda f: np.savez(f, **arrays))

    # pickle, copy.deepcopy and joblib go through the save format: the npz bytes (plus a custom
    # learning-rate callable, which JSON cannot hold), never the plan or backend objects.
    def __getstate__(self) -> dict:
        buffer = io.BytesIO()
        self.save(buffer)
        schedule = None if self.optimizer is None else self.optimizer.learning_rate
        fn = schedule.fn if isinstance(schedule, schedules.LambdaSchedule) else None
        return {"npz": buffer.getvalue(), "learning_rate": fn}

    def __setstate__(self, state: dict) -> None:
        loaded = load_model(io.BytesIO(state["npz"]), learning_rate=state.get("learning_rate"))
        self.__dict__.update(loaded.__dict__)


def load_model(path, learning_rate=None, backend: str | None = None) -> Sequential:
    """Rebuild a model saved with :meth:`Sequential.save` (a path or a binary file object),
    ready to continue training.

    ``learning_rate`` replaces the optimizer's learning rate (needed when it was a custom
    callable, which a save file cannot hold). ``backend`` overrides the saved backend choice.
    Everything in the file is checked before anything is built: any defect is one ``ValueError``
    "not a valid densefit model file: …" (a missing path stays ``FileNotFoundError``).
    """
    config, arrays = read_save_file(path)
    try:
        return _model_from_save(config, arrays, learning_rate, backend)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        message = str(exc)
        if message.startswith(INVALID):
            raise
        raise invalid(f"missing entry {message}" if isinstance(exc, KeyError) else message) from None


def _counter(config: dict, name: str) -> int:
    value = config.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_COUNTER:
        raise invalid(f"{name} must be an integer in [0, 2**62), got {value!r}")
    return value


def _model_from_save(config: dict, arrays: dict, learning_rate, backend) -> Sequential:
    version = config.get("format_version")
    if version == 1:  # the same contents; only the order of later shuffled epochs changed
        warnings.warn("this file was saved by a densefit that shuffled epochs with PCG64 permutations: it loads "
                      "unchanged, but shuffled training resumed from it visits rows in densefit.shuffle's order, "
                      "so it will not repeat the old run bit for bit", UserWarning, stacklevel=3)
    elif version != FORMAT_VERSION:
        raise invalid(f"format version {version!r}, expected {FORMAT_VERSION} (or 1)")
    for key, kind in (("layers", list), ("seed", int), ("dtype", str), ("backend", str)):
        if not isinstance(config.get(key), kind) or isinstance(config.get(key), bool):
            raise invalid(f"{key} must be a {kind.__name__}, got {config.get(key)!r}")
    if not all(isinstance(c, dict) and isinstance(c.get("class_name"), str) for c in config["layers"]):
        raise invalid("layers must be layer configs")
    model = Sequential([layer_specs.from_config(c) for c in config["layers"]], seed=config["seed"],
                       dtype=config["dtype"], backend=backend or _available_or_auto(config["backend"]))
    if config.get("optimizer") is not None:
        if not isinstance(config["optimizer"], dict):
            raise invalid("optimizer must be an optimizer config")
        optimizer = O.get(config["optimizer"])
        if learning_rate is not None:
            optimizer.learning_rate = schedules.get(learning_rate, optimizer.learning_rate.initial_learning_rate)
        metrics = config.get("metrics", [])
        if not isinstance(metrics, list):
            raise invalid("metrics must be a list of names")
        model.loss, model.optimizer = config["loss"], optimizer
        model.metrics = M.resolve(metrics, L.loss_code(config["loss"]))
    penalty_per_weight = config.get("penalty_per_weight", False)
    if not isinstance(penalty_per_weight, bool):
        raise invalid("penalty_per_weight must be true or false")
    model.penalty_per_weight = penalty_per_weight
    n_features = config.get("n_features")
    if n_features is None:
        if set(arrays):
            raise invalid("an unbuilt model (no n_features) holds arrays")
        return model
    if isinstance(n_features, bool) or not isinstance(n_features, int) or not 1 <= n_features < 1 << 31:
        raise invalid(f"n_features must be an integer in [1, 2**31), got {n_features!r}")
    if model.optimizer is None:
        raise invalid("a built model without an optimizer")
    step, epoch = _counter(config, "step"), _counter(config, "epoch")
    model.plan = build_plan(model.layers, n_features, model.loss, model.optimizer, model.dtype, model.seed,
                            model.penalty_per_weight)
    P, S = model.plan.n_params, model.plan.n_stats
    for name, shape in (("params", (P,)), ("slots", (2, P)), ("stats", (S,))):
        a = arrays.get(name)
        if a is None:
            raise invalid(f"{name} is missing")
        if a.shape != shape or a.dtype != model.dtype:
            raise invalid(f"{name} has shape {a.shape} and dtype {a.dtype}; the saved layers need {shape} {model.dtype}")
        if not np.isfinite(a).all():
            raise invalid(f"{name} contains NaN or infinity")
    for row in model.plan.ops:
        if row[KIND] == BATCHNORM:  # running variances feed a square root
            var = arrays["stats"][row[STAT_OFF] + row[N_IN]:row[STAT_OFF] + 2 * row[N_IN]]
            if (var < 0).any():
                raise invalid("a BatchNorm running variance is negative")
    model.state = State(arrays["params"], arrays["slots"], arrays["stats"], step=step, epoch=epoch)
    return model


def _split_off(X, y, sample_weight, fraction, validation_data):
    """``fit``'s ``validation_split``: the last ``fraction`` of the rows become the validation data."""
    if validation_data is not None:
        raise ValueError("give validation_data or validation_split, not both")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"validation_split must be a number in (0, 1), got {fraction!r}")
    X = np.asarray(X) if not hasattr(X, "shape") else X
    n = X.shape[0] if X.ndim else 0
    split_at = int(np.floor(n * (1.0 - fraction)))
    if split_at == 0 or split_at == n:
        raise ValueError(f"validation_split={fraction} of {n} rows leaves "
                         f"{'no training' if split_at == 0 else 'no validation'} row")
    y = np.asarray(y)
    w = None if sample_weight is None else np.asarray(sample_weight)
    if y.shape[:1] != (n,) or (w is not None and w.shape[:1] != (n,)):
        raise ValueError(f"y (and sample_weight) must have one row per row of X ({n})")
    validation = (X[split_at:], y[split_at:]) + (() if w is None else (w[split_at:],))
    return X[:split_at], y[:split_at], None if w is None else w[:split_at], validation


def _available_or_auto(name: str) -> str:
    return name if name in backends.available_backends() else "auto"
