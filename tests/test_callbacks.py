"""densefit.callbacks in Sequential.fit, on every backend: Keras' semantics for what "best" and
"patience" count, learning rates that land in the history and the save file, files that match
the history, and callbacks that only observe leaving whole-epoch backend calls alone."""

import csv
import math

import numpy as np
import pytest

import densefit as df
from densefit import callbacks as C


def _model(backend, seed=0):
    model = df.Sequential([df.Dense(8, activation="tanh", input_dim=3), df.BatchNorm(), df.Dense(1)], seed=seed,
                          dtype="float64", backend=backend)
    model.compile("mse", df.SGD(0.05))
    return model


def _data(rng, n=60):
    X = rng.normal(size=(n, 3))
    return X, X @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * rng.normal(size=(n, 1))


class Scripted(C.Callback):
    """Feeds EarlyStopping/ReduceLROnPlateau a scripted monitor value, recording every call."""

    def __init__(self, values):
        super().__init__()
        self.values, self.calls = list(values), []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("end", epoch))
        logs["score"] = self.values[len([c for c in self.calls if c[0] == "end"]) - 1]

    def on_train_end(self, logs=None):
        self.calls.append("train_end")


def test_custom_callback_sees_every_epoch_and_can_stop(backend, rng):
    X, y = _data(rng)
    model = _model(backend)
    model.fit(X, y, epochs=2, verbose=0)

    class StopAt(C.Callback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def on_epoch_end(self, epoch, logs=None):
            self.seen.append((epoch, sorted(logs)))
            if epoch == 4:
                self.model.stop_training = True

    cb = StopAt()
    h = model.fit(X, y, epochs=10, validation_split=0.25, callbacks=[cb], verbose=0)
    assert [e for e, _ in cb.seen] == [2, 3, 4] and h.epoch == [2, 3, 4]
    assert cb.seen[0][1] == ["learning_rate", "loss", "val_loss"] and cb.model is model


@pytest.mark.parametrize("restore", [False, True])
def test_early_stopping_stops_at_best_plus_patience_and_restores_the_best_weights(backend, rng, restore):
    X, y = _data(rng)
    model = _model(backend)
    kept = {}

    class Keep(C.Callback):  # the parameters and BN statistics after each epoch
        def on_epoch_end(self, epoch, logs=None):
            kept[epoch] = (self.model.state.params.copy(), self.model.state.stats.copy(), logs["val_loss"])

    stop = C.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=restore)
    # an lr that makes the run diverge after a few epochs, so val_loss has a clear best
    model.compile("mse", df.SGD(df.LambdaSchedule(0.05, lambda e, lr: lr if e < 6 else 3.0)))
    h = model.fit(X, y, epochs=40, batch_size=60, validation_data=(X, y), callbacks=[Keep(), stop], verbose=0)
    losses = h.history["val_loss"]
    best = int(np.argmin(losses))
    assert stop.best_epoch == best and stop.best == losses[best]
    assert h.epoch[-1] == best + 3 == stop.stopped_epoch  # patience epochs after the best, then stop
    params, stats, _ = kept[best if restore else h.epoch[-1]]
    assert np.array_equal(model.state.params, params) and np.array_equal(model.state.stats, stats)
    if restore:
        assert model.evaluate(X, y)["loss"] == pytest.approx(losses[best], rel=1e-12)


def test_early_stopping_counts_like_keras():
    def run(values, **kwargs):
        cb = C.EarlyStopping(monitor="score", **kwargs)
        model = type("M", (), {"stop_training": False})()
        cb.set_model(model)
        cb.on_train_begin()
        for epoch, value in enumerate(values):
            cb.on_epoch_end(epoch, {"score": value})
            if model.stop_training:
                return epoch
        return None

    assert run([5, 4, 4, 4], patience=2) == 3  # best at 1, two epochs without improvement
    assert run([5, 4, 3.9, 3.8], patience=1, min_delta=0.5) == 2  # 3.9 does not beat 4 by 0.5
    # improvements that do not beat the baseline do not reset the count (Keras 3)
    assert run([5, 4, 3, 3], patience=2) is None
    assert run([5, 4, 3, 3], patience=2, baseline=1.0) == 3
    assert run([5, 6, 7], patience=1, start_from_epoch=2) is None  # epochs 0-1 are not looked at
    assert run([0.5, 0.6, 0.6], patience=1, mode="max") == 2
    with pytest.warns(RuntimeWarning, match="monitors 'val_loss'"):
        cb = C.EarlyStopping()
        cb.set_model(None)
        cb.on_train_begin()
        cb.on_epoch_end(0, {"loss": 1.0})


def test_reduce_lr_on_plateau_lowers_the_rate_down_to_min_lr(backend, rng, tmp_path):
    X, y = _data(rng)
    model = _model(backend)
    scripted = Scripted([1.0] * 30)  # never improves after the first epoch
    reduce = C.ReduceLROnPlateau(monitor="score", factor=0.5, patience=2, cooldown=1, min_lr=0.01)
    h = model.fit(X, y, epochs=14, callbacks=[scripted, reduce], verbose=0)
    rates = h.history["learning_rate"]
    assert rates[:3] == [0.05] * 3 and min(rates) == 0.01
    expected, lr, wait, cooldown = [], 0.05, 0, 0
    for epoch in range(14):  # Keras' rule, written out
        expected.append(lr)
        if epoch == 0:
            continue
        if cooldown > 0:
            cooldown, wait = cooldown - 1, 0
        if cooldown == 0:
            wait += 1
            if wait >= 2 and lr > 0.01:
                lr, cooldown, wait = max(lr * 0.5, 0.01), 1, 0
    assert rates == pytest.approx(expected, rel=1e-15)
    model.save(tmp_path / "m.npz")  # the lowered rate is the optimizer's, so it is saved
    assert C.current_learning_rate(df.load_model(tmp_path / "m.npz")) == 0.01


def test_learning_rate_scheduler_rates_land_in_history_and_training(backend, rng):
    X, y = _data(rng)
    a, b = _model(backend), _model(backend)
    sched = C.LearningRateScheduler(lambda epoch, lr: 0.1 / (1 + epoch))
    ha = a.fit(X, y, epochs=5, callbacks=[sched], verbose=0)
    assert ha.history["learning_rate"] == pytest.approx([0.1 / (1 + e) for e in range(5)])
    b.compile("mse", df.SGD(df.LambdaSchedule(0.1, lambda e, lr: 0.1 / (1 + e))))
    b.fit(X, y, epochs=5, verbose=0)
    assert np.array_equal(a.state.params, b.state.params)
    with pytest.raises(ValueError, match="schedule returned"):
        a.fit(X, y, epochs=1, callbacks=[C.LearningRateScheduler(lambda e, lr: -1.0)], verbose=0)


def test_csv_logger_rows_match_the_history_and_keep_whole_epoch_calls(backend, rng, tmp_path, monkeypatch):
    X, y = _data(rng)
    model = _model(backend)
    calls = []
    from densefit import backends
    real = backends.train_epochs
    monkeypatch.setattr(backends, "train_epochs", lambda *a, **k: calls.append(len(a[6])) or real(*a, **k))
    path = tmp_path / "log.csv"
    h = model.fit(X, y, epochs=50, verbose=0, callbacks=[C.CSVLogger(path)])
    assert calls == [50]  # the logger only observes: one backend call for all the epochs
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "learning_rate", "loss"]
    assert [int(r["epoch"]) for r in rows] == h.epoch
    assert [float(r["loss"]) for r in rows] == h.history["loss"]  # repr round-trips floats
    model.fit(X, y, epochs=2, verbose=0, callbacks=[C.CSVLogger(path, append=True)])
    with open(path) as f:
        assert len(list(csv.DictReader(f))) == 52


def test_model_checkpoint_best_file_is_the_best_val_loss(backend, rng, tmp_path):
    X, y = _data(rng)
    model = _model(backend)
    model.compile("mse", df.SGD(df.LambdaSchedule(0.05, lambda e, lr: lr if e < 5 else 2.0)))
    best = C.ModelCheckpoint(tmp_path / "best.npz", monitor="val_loss", save_best_only=True)
    every = C.ModelCheckpoint(str(tmp_path / "e{epoch:02d}-{val_loss:.4f}.npz"))
    weights = C.ModelCheckpoint(tmp_path / "w.npz", save_weights_only=True)
    h = model.fit(X, y, epochs=9, batch_size=60, validation_data=(X, y), callbacks=[best, every, weights], verbose=0)
    losses = h.history["val_loss"]
    restored = df.load_model(tmp_path / "best.npz")
    assert restored.evaluate(X, y)["loss"] == pytest.approx(min(losses), rel=1e-12)
    assert sorted(p.name for p in tmp_path.glob("e*.npz")) == [f"e{e + 1:02d}-{v:.4f}.npz" for e, v in enumerate(losses)]
    with np.load(tmp_path / "w.npz") as f:
        assert all(np.array_equal(f[f"arr_{i}"], w) for i, w in enumerate(model.get_weights()))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the numpy backend's overflow on the way to NaN
def test_terminate_on_nan_and_lambda_callback(backend, rng, capsys):
    X, y = _data(rng)
    model = _model(backend)
    model.compile("mse", df.SGD(1e3))
    seen = []
    h = model.fit(X, y, epochs=50, batch_size=60, verbose=0,
                  callbacks=[C.TerminateOnNaN(), C.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(e))])
    # it returns the finite epochs, the model at the last of them
    assert all(math.isfinite(v) for v in h.history["loss"]) and len(h.epoch) < 50 and seen == h.epoch
    assert np.isfinite(model.state.params).all() and model.epoch == len(h.epoch)
    assert "invalid loss" in capsys.readouterr().out
    with pytest.raises(TypeError, match="Callback instances"):
        model.fit(X, y, callbacks=[print], verbose=0)


def test_progress_bar_and_history_timing(backend, rng, capsys):
    """verbose=1 draws one tqdm bar on stderr, redrawn with carriage returns; History records
    each epoch's wall time and speed, and becomes a DataFrame."""
    X, y = _data(rng)
    model = _model(backend)
    h = model.fit(X, y, epochs=30, validation_split=0.2, verbose=1)
    out, err = capsys.readouterr()
    assert out == ""
    assert "30.0/30 epochs" in err and "\r" in err and "loss=" in err and "val_loss=" in err and "samples/s=" in err
    assert len(h.seconds) == len(h.samples_per_s) == 30 and all(s > 0 for s in h.seconds)
    assert h.samples_per_s[0] == pytest.approx(48 / h.seconds[0])
    pd = pytest.importorskip("pandas")
    frame = h.to_dataframe()
    assert isinstance(frame, pd.DataFrame) and list(frame.index) == h.epoch
    assert list(frame["val_loss"]) == h.history["val_loss"] and "samples_per_s" in frame


def test_backends_report_progress_within_a_call(backend, rng):
    """The counter a progress bar polls: rows trained so far in the call, after every batch."""
    from densefit import backends
    X, y = _data(rng, n=50)
    model = _model(backend)
    model.fit(X, y, epochs=1, verbose=0)
    progress = np.zeros(1, dtype=np.int64)
    backends.train_epochs(backend, model.plan, model.state, X, y, None, np.full(3, 0.01), 16, progress=progress)
    assert progress[0] == 3 * 50
    with pytest.raises(ValueError, match="progress"):
        backends.train_epochs(backend, model.plan, model.state, X, y, None, np.full(1, 0.01), 16,
                              progress=np.zeros(2, dtype=np.int64))


def test_a_long_epoch_moves_the_bar_within_the_epoch(rng, capsys):
    """An epoch of about a second on the cpp backend: the polled counter redraws the bar at
    fractional epochs before the epoch ends."""
    if "cpp" not in df.available_backends():
        pytest.skip("the cpp backend is not built here")
    X = rng.normal(size=(400_000, 32)).astype(np.float32)
    y = X[:, :1] * 2
    model = df.Sequential([df.Dense(256, activation="relu", input_dim=32), df.Dense(256, activation="relu"),
                           df.Dense(1)], seed=0, backend="cpp")
    model.compile("mse", "adam")
    model.fit(X, y, epochs=1, batch_size=256, verbose=1)
    err = capsys.readouterr().err
    fractions = {part.split("/")[0].strip() for part in err.split("|") if "/1 epochs" in part}
    assert "1.0" in fractions and any(f not in ("0.0", "1.0") for f in fractions), err[-500:]


def test_history_callback_records_what_fit_returns(backend, rng):
    X, y = _data(rng)
    model = _model(backend)
    recorder = C.History()
    h = model.fit(X, y, epochs=4, validation_split=0.25, callbacks=[recorder], verbose=0)
    assert model.history is h and isinstance(h, C.History) and h is not recorder
    assert recorder.history == h.history and recorder.epoch == h.epoch == [0, 1, 2, 3]
    assert df.History is C.History


def test_to_dataframe_without_pandas_names_the_extra(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "densefit\[pandas\]"'):
        C.History().to_dataframe()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("verbose", [0, 2])  # all epochs in one backend call, or one per call
def test_divergence_restores_the_last_finite_epoch_and_raises(backend, rng, verbose, capsys):
    X, y = _data(rng)
    model = _model(backend)
    model.compile("mse", df.SGD(df.LambdaSchedule(0.05, lambda e, lr: lr if e < 4 else 50.0)))
    with pytest.raises(df.TrainingDiverged, match="diverged in epoch") as info:
        model.fit(X, y, epochs=30, batch_size=60, verbose=verbose)
    error = info.value
    assert isinstance(error, FloatingPointError) and error.history.epoch == list(range(error.epoch))
    assert error.epoch >= 4 and all(math.isfinite(v) for v in error.history.history["loss"])
    # the state is exactly that of a run stopped after the last finite epoch
    fresh = _model(backend)
    fresh.compile("mse", df.SGD(df.LambdaSchedule(0.05, lambda e, lr: lr if e < 4 else 50.0)))
    fresh.fit(X, y, epochs=error.epoch, batch_size=60, verbose=0)
    assert (model.epoch, model.step) == (fresh.epoch, fresh.step)
    for a, b in zip((model.state.params, model.state.slots, model.state.stats),
                    (fresh.state.params, fresh.state.slots, fresh.state.stats)):
        assert np.array_equal(a, b)
