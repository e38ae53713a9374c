"""Callbacks for :meth:`Sequential.fit`, with Keras' names and semantics.

``fit`` calls ``set_model(model)``, ``on_train_begin(logs)``, then for every epoch
``on_epoch_begin(epoch, logs)`` and ``on_epoch_end(epoch, logs)``, and ``on_train_end(logs)``.
``epoch`` is the model's epoch counter (it goes on across ``fit`` calls; Keras' ``initial_epoch``
is that counter), ``logs`` holds the epoch's ``loss``, metrics, ``val_*`` and ``learning_rate``.
Setting ``self.model.stop_training = True`` stops after the current epoch.

:class:`History` is also what ``fit`` returns (and keeps as ``model.history``).

Training stays in the backends: a callback whose ``needs_each_epoch`` is True (the default, and
every callback here that can change the run) makes ``fit`` hand one epoch per backend call; the
others (:class:`CSVLogger`, a :class:`LambdaCallback` given ``needs_each_epoch=False``) see the
epochs after the backend ran several, in order, with the same logs.

A learning rate set by a callback becomes the optimizer's constant learning rate from the next
epoch on (so it is in ``history["learning_rate"]`` and in a saved model's config).
"""

from __future__ import annotations

import csv
import math
import os
import warnings

import numpy as np

from . import metrics, schedules
from .savefile import write_atomically

class Callback:
    """Base class: every hook does nothing."""

    needs_each_epoch = True

    def __init__(self):
        self.model = None

    def set_model(self, model) -> None:
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass


def current_learning_rate(model) -> float:
    """The rate the model's next epoch trains with."""
    return float(model.optimizer.learning_rate(model.state.epoch if model.state is not None else 0))


def set_learning_rate(model, lr) -> None:
    """Make ``lr`` the optimizer's constant learning rate from the next epoch on."""
    model.optimizer.learning_rate = schedules.Constant(float(lr))


def _monitor_mode(monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    return "max" if metrics.higher_is_better(monitor) else "min"


def _monitored(logs, monitor: str, owner: str):
    value = (logs or {}).get(monitor)
    if value is None:
        warnings.warn(f"{owner} monitors {monitor!r}, which the logs do not hold (they have {sorted(logs or {})})",
                      RuntimeWarning, stacklevel=3)
    return value


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs
    (Keras: the epoch counts from the best one; an epoch before ``start_from_epoch`` is not
    looked at; with ``baseline`` an improvement resets the count only once it beats the
    baseline). ``restore_best_weights``: at the end of training put back the parameters and
    BatchNorm statistics of the best epoch."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor, self.patience, self.verbose = monitor, int(patience), verbose
        self.mode = _monitor_mode(monitor, mode)
        self.min_delta = abs(float(min_delta))
        self.baseline, self.restore_best_weights = baseline, bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)

    def _improves(self, value, reference) -> bool:
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_state = None

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(logs, self.monitor, "EarlyStopping")
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_state is None:
            self.best_state = self._snapshot()
        self.wait += 1
        if self._improves(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_state = self._snapshot()
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def _snapshot(self):
        return self.model.state.params.copy(), self.model.state.stats.copy()

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch}: early stopping")
        if self.restore_best_weights and self.best_state is not None:
            params, stats = self.best_state
            self.model.state.params[:] = params
            self.model.state.stats[:] = stats


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved by more than
    ``min_delta`` for ``patience`` epochs, then wait ``cooldown`` epochs; never below ``min_lr``."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__()
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor!r}")
        self.monitor, self.factor, self.patience, self.verbose = monitor, float(factor), int(patience), verbose
        self.mode = _monitor_mode(monitor, mode)
        self.min_delta, self.cooldown, self.min_lr = abs(float(min_delta)), int(cooldown), float(min_lr)

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait, self.cooldown_counter = 0, 0

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(logs, self.monitor, "ReduceLROnPlateau")
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        better = current < self.best - self.min_delta if self.mode == "min" else current > self.best + self.min_delta
        if better:
            self.best, self.wait = current, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = current_learning_rate(self.model)
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    set_learning_rate(self.model, new)
                    if self.verbose:
                        print(f"Epoch {epoch}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0


class LearningRateScheduler(Callback):
    """Before each epoch set the learning rate to ``schedule(epoch, lr)``."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"schedule must be a callable (epoch, lr) -> lr, got {schedule!r}")
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = self.schedule(epoch, current_learning_rate(self.model))
        if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating)) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"the schedule returned {lr!r} for epoch {epoch}; expected a finite number > 0")
        set_learning_rate(self.model, lr)
        if self.verbose:
            print(f"Epoch {epoch}: LearningRateScheduler setting learning rate to {float(lr)}.")


class TerminateOnNaN(Callback):
    """Stop when an epoch's loss is NaN or infinite (checked after each epoch: the backends run
    whole epochs)."""

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Epoch {epoch}: invalid loss, terminating training")
            self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback from functions: ``on_epoch_begin(epoch, logs)``, ``on_epoch_end(epoch, logs)``,
    ``on_train_begin(logs)``, ``on_train_end(logs)``. ``needs_each_epoch=False`` lets ``fit`` run
    several epochs per backend call when the functions only observe."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 needs_each_epoch=True):
        super().__init__()
        for name, fn in (("on_epoch_begin", on_epoch_begin), ("on_epoch_end", on_epoch_end),
                         ("on_train_begin", on_train_begin), ("on_train_end", on_train_end)):
            if fn is not None:
                setattr(self, name, fn)
        self.needs_each_epoch = bool(needs_each_epoch)


class CSVLogger(Callback):
    """One CSV row per epoch: ``epoch`` and the logs' keys, sorted (Keras' layout)."""

    needs_each_epoch = False

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.separator, self.append = os.fspath(filename), separator, bool(append)
        self._file = self._writer = None

    def on_train_begin(self, logs=None):
        has_rows = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._has_header = has_rows
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        keys = sorted(logs)
        if self._writer is None:
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch"] + keys, delimiter=self.separator)
            if not self._has_header:
                self._writer.writeheader()
        self._writer.writerow({"epoch": epoch, **{k: logs[k] for k in keys}})
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


class ModelCheckpoint(Callback):
    """Save the model after every epoch, or only when ``monitor`` improves (``save_best_only``).
    ``filepath`` may hold ``{epoch}`` (1-based, as Keras) and any log, e.g. ``{val_loss:.4f}``.
    The full model goes through :meth:`Sequential.save`; ``save_weights_only`` writes an ``.npz``
    of :meth:`Sequential.get_weights` (``arr_0, arr_1, …``) for ``set_weights``."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto"):
        super().__init__()
        self.filepath, self.monitor, self.verbose = os.fspath(filepath), monitor, verbose
        self.save_best_only, self.save_weights_only = bool(save_best_only), bool(save_weights_only)
        self.mode = _monitor_mode(monitor, mode)
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            current = _monitored(logs, self.monitor, "ModelCheckpoint")
            if current is None or not (current < self.best if self.mode == "min" else current > self.best):
                return
            self.best = current
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_weights_only:
            weights = self.model.get_weights()
            write_atomically(path, lambda f: np.savez(f, *weights))
        else:
            self.model.save(path)
        if self.verbose:
            print(f"Epoch {epoch}: saved to {path}")


class History(Callback):
    """The record of a run: ``history[name]`` one value per epoch, ``epoch`` the epoch numbers,
    ``seconds`` and ``samples_per_s`` each epoch's wall time and speed (epochs trained in one
    backend call share that call's time). ``fit`` returns a fresh one (also ``model.history``);
    one passed in ``callbacks`` records the logs it is shown."""

    needs_each_epoch = False

    def __init__(self):
        super().__init__()
        self.history: dict = {}
        self.epoch: list = []
        self.seconds: list = []
        self.samples_per_s: list = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))

    def _extend(self, epochs, logs: dict, seconds: float = 0.0, samples: int = 0) -> None:
        """Record consecutive ``epochs``; ``logs[name]`` has one value per epoch; the epochs took
        ``seconds`` together and each saw ``samples`` rows."""
        epochs = list(epochs)
        self.epoch.extend(epochs)
        for key, values in logs.items():
            self.history.setdefault(key, []).extend(np.asarray(values, dtype=np.float64).tolist())
        per_epoch = seconds / max(1, len(epochs))
        self.seconds.extend([per_epoch] * len(epochs))
        self.samples_per_s.extend([samples / per_epoch if per_epoch > 0 else math.inf] * len(epochs))

    def to_dataframe(self):
        """A pandas DataFrame, one row per epoch (index ``epoch``): the logs, ``seconds`` and
        ``samples_per_s`` (when recorded). Needs pandas (``pip install "densefit[pandas]"``)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError('History.to_dataframe needs pandas: pip install "densefit[pandas]"') from exc
        timing = {"seconds": self.seconds, "samples_per_s": self.samples_per_s} if self.seconds else {}
        return pd.DataFrame({**self.history, **timing}, index=pd.Index(self.epoch, name="epoch"))

    def __repr__(self) -> str:
        return f"History({len(self.epoch)} epochs, keys={sorted(self.history)})"


class CallbackList:
    """The callbacks of one ``fit`` call, called in order."""

    def __init__(self, callbacks, model):
        callbacks = [] if callbacks is None else list(callbacks)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be densefit.callbacks.Callback instances, got {cb!r}")
            cb.set_model(model)
        self.callbacks = callbacks
        self.needs_each_epoch = any(cb.needs_each_epoch for cb in callbacks)

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args):
            for cb in self.callbacks:
                getattr(cb, hook)(*args)
        return call
