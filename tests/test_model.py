"""The public model API: Sequential, compile/fit/evaluate/predict, weights, save/load, input
validation, input immutability and backend selection. Computing tests run on every backend."""

import json
import math
import warnings
import zipfile

import numpy as np
import pytest

import densefit as df
from densefit import backends as backend_registry

N, D = 120, 4


# --------------------------------------------------------------------------------- helpers
def binary_data(seed=0, n=N, d=D):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] + 0.5 * X[:, 1] - 0.25 * X[:, 2] > 0).astype(np.float64)
    return X, y


def multiclass_data(seed=0, n=N, d=D, k=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.argmax(X[:, :k] + 0.1 * rng.normal(size=(n, k)), axis=1)
    return X, y


def small_binary_model(backend, dtype="float64", seed=7, optimizer=None, dropout=True, batchnorm=True):
    layers = [df.Dense(8, "relu", input_dim=D)]
    if dropout:
        layers.append(df.Dropout(0.25))
    layers.append(df.Dense(6))
    if batchnorm:
        layers.append(df.BatchNorm())
    layers += [df.Activation("tanh"), df.Dense(1, "sigmoid")]
    model = df.Sequential(layers, seed=seed, dtype=dtype, backend=backend)
    model.compile(loss="binary_crossentropy", optimizer=optimizer or df.SGD(0.1, momentum=0.9),
                  metrics=["accuracy"])
    return model


def snapshot(model):
    s = model.state
    return s.params.copy(), s.slots.copy(), s.stats.copy(), s.step, s.epoch


def assert_same_state(a, b):
    """Bit-identical parameters, optimizer slots, BN statistics and counters."""
    np.testing.assert_array_equal(a.state.params, b.state.params)
    np.testing.assert_array_equal(a.state.slots, b.state.slots)
    np.testing.assert_array_equal(a.state.stats, b.state.stats)
    assert (a.state.step, a.state.epoch) == (b.state.step, b.state.epoch)


def assert_state_unchanged(model, before):
    params, slots, stats, step, epoch = before
    np.testing.assert_array_equal(model.state.params, params)
    np.testing.assert_array_equal(model.state.slots, slots)
    np.testing.assert_array_equal(model.state.stats, stats)
    assert (model.state.step, model.state.epoch) == (step, epoch)


# --------------------------------------------------------------------------------- API tour
def test_api_tour_binary(backend):
    X, y = binary_data(0)
    Xv, yv = binary_data(1, n=50)
    model = df.Sequential([
        df.Dense(16, activation="relu", input_dim=D),
        df.Dropout(0.2),
        df.Dense(8),
        df.BatchNorm(),
        df.Activation("tanh"),
        df.Dense(1, activation="sigmoid"),
    ], seed=3, backend=backend)
    assert model.backend == backend
    model.compile(loss="binary_crossentropy",
                  optimizer=df.SGD(learning_rate=df.ExponentialDecay(0.1, decay=0.1), momentum=0.9),
                  metrics=["accuracy"])
    history = model.fit(X, y, epochs=6, batch_size=16, validation_data=(Xv, yv), verbose=0)

    assert isinstance(history, df.History)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    assert all(len(v) == 6 for v in history.history.values())
    assert history.epoch == list(range(6))
    np.testing.assert_allclose(history.history["learning_rate"], [0.1 * 0.9**e for e in range(6)], rtol=1e-12)
    assert all(math.isfinite(v) for v in history.history["loss"] + history.history["val_loss"])
    assert all(0.0 <= a <= 1.0 for a in history.history["accuracy"] + history.history["val_accuracy"])
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] >= 0.85     # a nearly linear problem
    assert model.state.epoch == 6 and model.state.step == 6 * math.ceil(N / 16)

    result = model.evaluate(Xv, yv)
    assert set(result) == {"loss", "accuracy"}
    # validation after the last epoch was computed on exactly this state
    assert result["loss"] == pytest.approx(history.history["val_loss"][-1], rel=1e-12)
    assert result["accuracy"] == history.history["val_accuracy"][-1]

    p = model.predict(Xv)
    assert p.shape == (50, 1)
    assert np.all((p >= 0) & (p <= 1))
    # evaluate agrees with the probabilities predict returns (inference mode both)
    assert result["accuracy"] == pytest.approx(np.mean((p[:, 0] > 0.5) == (yv > 0.5)))
    pc = np.clip(p[:, 0].astype(np.float64), 1e-7, 1 - 1e-7)
    bce = -np.mean(yv * np.log(pc) + (1 - yv) * np.log(1 - pc))
    assert result["loss"] == pytest.approx(bce, rel=1e-3)
    # predict is deterministic and batch-size independent (dropout off, BN running stats)
    np.testing.assert_allclose(model.predict(Xv, batch_size=7), p, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.predict(Xv), p)


def test_api_tour_softmax(backend):
    X, y = multiclass_data(0)
    model = df.Sequential([df.Dense(12, "relu", input_dim=D), df.Dense(3, "softmax")],
                          seed=0, backend=backend, dtype="float64")
    model.compile(loss="categorical_crossentropy", optimizer=df.Adam(0.02), metrics=["accuracy"])
    history = model.fit(X, y, epochs=15, batch_size=16, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "learning_rate"}
    assert history.history["loss"][-1] < history.history["loss"][0]
    p = model.predict(X)
    assert p.shape == (N, 3)
    assert np.all(p >= 0) and np.all(p <= 1)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    result = model.evaluate(X, y)
    assert result["accuracy"] == pytest.approx(np.mean(p.argmax(axis=1) == y))
    assert result["loss"] == pytest.approx(-np.mean(np.log(p[np.arange(N), y])), rel=1e-9)
    assert result["accuracy"] > 0.8
    # one-hot labels give the same loss and accuracy as integer labels
    onehot = np.eye(3)[y]
    assert model.evaluate(X, onehot) == pytest.approx(result, rel=1e-12)


def test_regression_predict_is_affine_output(backend):
    """A linear model's predict is exactly X W + b (the weight layout is what predict uses)."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 3))
    model = df.Sequential([df.Dense(2, input_dim=3)], seed=1, dtype="float64", backend=backend)
    model.compile(loss="mse", optimizer="sgd")
    W, b = model.get_weights()
    np.testing.assert_allclose(model.predict(X), X @ W + b, rtol=1e-12)


# --------------------------------------------------------------------------------- weights
def test_get_weights_order_and_shapes():
    model = df.Sequential([
        df.Dense(5, "relu", input_dim=3),
        df.BatchNorm(),
        df.Dropout(0.1),
        df.Dense(2, use_bias=False),
        df.Activation("elu"),
        df.Dense(1),
    ], seed=0)
    model.compile(loss="mse", optimizer="sgd")
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(3, 5), (5,), (5,), (5,), (5, 2), (2, 1), (1,)]
    assert all(w.dtype == np.float32 for w in weights)
    np.testing.assert_array_equal(weights[1], 0)     # bias: zeros
    np.testing.assert_array_equal(weights[2], 1)     # gamma: ones
    np.testing.assert_array_equal(weights[3], 0)     # beta: zeros
    limit = math.sqrt(6 / (3 + 5))                   # glorot_uniform by default
    assert np.all(np.abs(weights[0]) <= limit) and np.any(weights[0] != 0)
    assert model.count_params() == sum(w.size for w in weights) == (15 + 5) + (5 + 5) + 10 + (2 + 1)
    # copies: editing them does not touch the model
    weights[0][:] = 123.0
    assert not np.any(model.get_weights()[0] == 123.0)


def test_weights_layout_matches_forward_pass(backend):
    """W is (in, out) and applied as X W + b: predict equals a hand-written forward pass."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(20, 3))
    model = df.Sequential([df.Dense(4, "relu", input_dim=3), df.Dense(2, "tanh"), df.Dense(1, "sigmoid")],
                          seed=0, dtype="float64", backend=backend)
    model.compile(loss="binary_crossentropy", optimizer="sgd")
    weights = [rng.normal(size=w.shape) for w in model.get_weights()]
    model.set_weights(weights)
    W0, b0, W1, b1, W2, b2 = weights
    h = np.tanh(np.maximum(X @ W0 + b0, 0) @ W1 + b1)
    expected = 1 / (1 + np.exp(-(h @ W2 + b2)))
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-12)


def test_set_weights_round_trip_and_errors(backend):
    X, _ = binary_data(0)
    a = small_binary_model(backend, seed=1)
    b = small_binary_model(backend, seed=2)
    assert not np.array_equal(a.predict(X), b.predict(X))
    b.set_weights(a.get_weights())
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))

    good = a.get_weights()
    before = snapshot(b)
    with pytest.raises(ValueError, match="expected 8 weight arrays"):
        b.set_weights(good[:-1])
    wrong_shape = [w.copy() for w in good]
    wrong_shape[2] = wrong_shape[2].T
    with pytest.raises(ValueError, match=r"weights\[2\]"):
        b.set_weights(wrong_shape)
    with_nan = [w.copy() for w in good]
    with_nan[-1] = with_nan[-1] + np.nan     # the last array fails: nothing may be written before
    with pytest.raises(ValueError, match=r"weights\[7\].*NaN"):
        b.set_weights(with_nan)
    with_inf = [w.copy() for w in good]
    with_inf[0][0, 0] = np.inf
    with pytest.raises(ValueError, match=r"weights\[0\]"):
        b.set_weights(with_inf)
    assert_state_unchanged(b, before)


@pytest.mark.parametrize("name, cls", [("sgd", df.SGD), ("adam", df.Adam), ("AdamW", df.AdamW),
                                       ("rmsprop", df.RMSprop), ("adagrad", df.Adagrad)])
def test_string_optimizers(backend, name, cls):
    X, y = binary_data(0)
    model = df.Sequential([df.Dense(6, "tanh", input_dim=D), df.Dense(1, "sigmoid")], seed=0, backend=backend)
    model.compile(loss="binary_crossentropy", optimizer=name)
    assert isinstance(model.optimizer, cls)
    assert model.optimizer.learning_rate(0) == cls().learning_rate(0)
    start = model.evaluate(X, y)["loss"]
    history = model.fit(X, y, epochs=5, batch_size=8, verbose=0)
    assert history.history["learning_rate"] == [cls.default_learning_rate] * 5
    assert model.evaluate(X, y)["loss"] < start
    assert model.state.slots.dtype == np.float32


def test_initializer_objects_and_names():
    model = df.Sequential([
        df.Dense(200, input_dim=100, kernel_initializer=df.initializers.Normal(0.1),
                 bias_initializer=df.initializers.Ones()),
        df.Dense(100, kernel_initializer=df.initializers.Uniform(0.2), bias_initializer="ones"),
        df.Dense(50, kernel_initializer="he_normal"),
        df.Dense(10, kernel_initializer="he_uniform"),
        df.Dense(1, kernel_initializer=df.initializers.Zeros()),
    ], seed=0, dtype="float64")
    model.compile(loss="mse", optimizer="sgd")
    W0, b0, W1, b1, W2, _, W3, _, W4, b4 = model.get_weights()
    assert abs(W0.mean()) < 0.005 and W0.std() == pytest.approx(0.1, rel=0.02)
    np.testing.assert_array_equal(b0, 1.0)
    np.testing.assert_array_equal(b1, 1.0)
    assert np.abs(W1).max() <= 0.2 and np.abs(W1).max() > 0.199
    assert W1.std() == pytest.approx(0.2 / math.sqrt(3), rel=0.02)
    assert W2.std() == pytest.approx(math.sqrt(2 / 100), rel=0.05)
    assert np.abs(W3).max() <= math.sqrt(6 / 50) and np.abs(W3).max() > 0.9 * math.sqrt(6 / 50)
    np.testing.assert_array_equal(W4, 0.0)
    np.testing.assert_array_equal(b4, 0.0)
    with pytest.raises(ValueError, match="kernel_initializer"):
        df.Dense(3, kernel_initializer="nope")
    with pytest.raises(ValueError, match="std"):
        df.initializers.Normal(-1.0)


def test_seed_reproducibility(backend):
    X, y = binary_data(0)

    def trained(seed):
        model = small_binary_model(backend, seed=seed, optimizer=df.Adam(0.01))
        initial = model.get_weights()
        history = model.fit(X, y, epochs=3, batch_size=10, verbose=0)
        return model, initial, history

    a, a0, ha = trained(11)
    b, b0, hb = trained(11)
    c, c0, hc = trained(12)
    for wa, wb in zip(a0, b0):
        np.testing.assert_array_equal(wa, wb)
    assert_same_state(a, b)
    assert ha.history == hb.history
    assert not np.array_equal(a0[0], c0[0])
    assert not np.array_equal(a.state.params, c.state.params)
    # seed=None draws a seed, readable afterwards, and reusing it reproduces the model
    u1 = df.Sequential([df.Dense(3, input_dim=2)])
    u2 = df.Sequential([df.Dense(3, input_dim=2)])
    assert isinstance(u1.seed, int) and u1.seed != u2.seed
    u3 = df.Sequential([df.Dense(3, input_dim=2)], seed=u1.seed)
    for m in (u1, u3):
        m.compile(loss="mse", optimizer="sgd")
    np.testing.assert_array_equal(u1.get_weights()[0], u3.get_weights()[0])


def test_seed_changes_shuffle_and_dropout_not_only_init(backend):
    """Same initial weights, different seeds: shuffling and dropout masks must differ."""
    X, y = binary_data(0)
    a = small_binary_model(backend, seed=1)
    b = small_binary_model(backend, seed=2)
    b.set_weights(a.get_weights())
    a.fit(X, y, epochs=1, batch_size=N, shuffle=False, verbose=0)  # full batch, no shuffle: dropout only
    b.fit(X, y, epochs=1, batch_size=N, shuffle=False, verbose=0)
    assert not np.array_equal(a.state.params, b.state.params)
    c = small_binary_model(backend, seed=1, dropout=False)
    d = small_binary_model(backend, seed=2, dropout=False)
    d.set_weights(c.get_weights())
    c.fit(X, y, epochs=1, batch_size=10, verbose=0)                # shuffle only
    d.fit(X, y, epochs=1, batch_size=10, verbose=0)
    assert not np.array_equal(c.state.params, d.state.params)


# --------------------------------------------------------------------------------- continuing
def continued_model(backend, dtype="float64"):
    model = df.Sequential([
        df.Dense(10, "relu", input_dim=D, kernel_regularizer=df.l2(1e-3)),
        df.Dropout(0.3),
        df.Dense(6),
        df.BatchNorm(momentum=0.2),
        df.Activation("gelu"),
        df.Dense(1, "sigmoid"),
    ], seed=21, dtype=dtype, backend=backend)
    model.compile(loss="binary_crossentropy", optimizer=df.Adam(df.ExponentialDecay(0.01, 0.2), clipnorm=1.0),
                  metrics=["accuracy"])
    return model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_successive_fits_continue(backend, dtype):
    X, y = binary_data(3, n=101)
    whole = continued_model(backend, dtype)
    h_whole = whole.fit(X, y, epochs=4, batch_size=16, verbose=0)
    parts = continued_model(backend, dtype)
    h1 = parts.fit(X, y, epochs=2, batch_size=16, verbose=0)
    h2 = parts.fit(X, y, epochs=2, batch_size=16, verbose=0)
    assert_same_state(whole, parts)
    assert parts.state.epoch == 4 and parts.state.step == 4 * math.ceil(101 / 16)
    assert h1.epoch == [0, 1] and h2.epoch == [2, 3]
    for key in ("loss", "accuracy", "learning_rate"):
        assert h1.history[key] + h2.history[key] == h_whole.history[key]
    np.testing.assert_allclose(h2.history["learning_rate"], [0.01 * 0.8**2, 0.01 * 0.8**3], rtol=1e-12)


def test_successive_fits_continue_with_validation_and_verbose(backend, capsys):
    """Per-epoch calls (validation, verbose=2) and chunked calls give the same training."""
    X, y = binary_data(3, n=101)
    Xv, yv = binary_data(4, n=30)
    chunked = continued_model(backend)
    chunked.fit(X, y, epochs=3, batch_size=16, verbose=0)
    per_epoch = continued_model(backend)
    per_epoch.fit(X, y, epochs=1, batch_size=16, verbose=2)
    per_epoch.fit(X, y, epochs=2, batch_size=16, validation_data=(Xv, yv), verbose=0)
    assert_same_state(chunked, per_epoch)
    assert "epoch 1" in capsys.readouterr().out


def test_compile_again_restarts_the_run(backend):
    X, y = binary_data(0)
    model = continued_model(backend)
    model.fit(X, y, epochs=2, batch_size=32, verbose=0)
    weights = model.get_weights()
    model.compile(loss="binary_crossentropy", optimizer="sgd")
    assert (model.state.step, model.state.epoch) == (0, 0)
    assert not np.any(model.state.slots)
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_zero_epochs_is_a_no_op(backend):
    X, y = binary_data(0)
    model = continued_model(backend)
    before = snapshot(model)
    history = model.fit(X, y, epochs=0, verbose=0)
    assert history.history == {} and history.epoch == []
    assert_state_unchanged(model, before)


def test_full_batch_takes_one_step_per_epoch(backend):
    X, y = binary_data(0)
    model = continued_model(backend)
    model.fit(X, y, epochs=3, batch_size=None, verbose=0)
    assert model.state.step == 3
    other = continued_model(backend)
    other.fit(X, y, epochs=3, batch_size=10_000, verbose=0)   # larger than n: clamped to n
    assert_same_state(model, other)


# --------------------------------------------------------------------------------- save / load
def test_save_load_continue_equals_uninterrupted(backend, tmp_path):
    X, y = binary_data(5, n=90)
    whole = continued_model(backend)
    whole.fit(X, y, epochs=5, batch_size=16, verbose=0)

    first = continued_model(backend)
    first.fit(X, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "model.npz"
    first.save(path)
    loaded = df.load_model(path, backend=backend)
    assert_same_state(first, loaded)
    assert loaded.backend == backend
    for attribute in ("seed", "dtype", "loss", "metrics"):
        assert getattr(loaded, attribute) == getattr(first, attribute), attribute
    assert type(loaded.optimizer) is type(first.optimizer)
    assert loaded.optimizer.get_config() == first.optimizer.get_config()
    np.testing.assert_array_equal(loaded.predict(X), first.predict(X))
    assert loaded.evaluate(X, y) == first.evaluate(X, y)
    # the slots and BN statistics really carry information at this point
    assert np.any(loaded.state.slots) and not np.array_equal(loaded.state.stats[-6:], np.ones(6))

    loaded.fit(X, y, epochs=3, batch_size=16, verbose=0)
    assert_same_state(whole, loaded)


def test_save_file_is_npz_with_json_config(tmp_path):
    model = continued_model("numpy")
    path = tmp_path / "m.npz"
    model.save(path)
    assert zipfile.is_zipfile(path)
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"config", "params", "slots", "stats"}
        config = json.loads(bytes(data["config"]).decode())
        np.testing.assert_array_equal(data["params"], model.state.params)
        assert data["params"].dtype == np.float64
    assert [layer["class_name"] for layer in config["layers"]] == ["Dense", "Dropout", "Dense", "BatchNorm",
                                                                  "Activation", "Dense"]
    assert config["loss"] == "binary_crossentropy" and config["seed"] == 21
    assert config["optimizer"]["class_name"] == "Adam"


def test_save_load_uncompiled_and_unbuilt(tmp_path):
    model = df.Sequential([df.Dense(3, "relu"), df.Dense(1)], seed=4)
    model.save(tmp_path / "raw.npz")
    loaded = df.load_model(tmp_path / "raw.npz")
    assert loaded.state is None and loaded.optimizer is None
    loaded.compile(loss="mse", optimizer="sgd")
    X = np.random.default_rng(0).normal(size=(10, 5))
    loaded.fit(X, X[:, 0], epochs=1, verbose=0)
    assert loaded.get_weights()[0].shape == (5, 3)


@pytest.mark.parametrize("lr", [lambda e, lr0: lr0 / (1 + e),
                                df.LambdaSchedule(0.2, lambda e, lr0: lr0 / (1 + e))],
                         ids=["callable", "LambdaSchedule(0.2)"])
def test_callable_schedule_save_and_continue(backend, tmp_path, lr):
    fn = lr.fn if isinstance(lr, df.LambdaSchedule) else lr
    X, y = binary_data(6, n=64)

    def fresh():
        model = df.Sequential([df.Dense(5, "tanh", input_dim=D), df.Dense(1, "sigmoid")],
                              seed=9, dtype="float64", backend=backend)
        model.compile(loss="binary_crossentropy", optimizer=df.SGD(lr, momentum=0.5))
        return model

    whole = fresh()
    h_whole = whole.fit(X, y, epochs=4, batch_size=16, verbose=0)
    first = fresh()
    first.fit(X, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "callable.npz"
    first.save(path)

    without_fn = df.load_model(path, backend=backend)
    before = snapshot(without_fn)
    with pytest.raises(ValueError, match="learning_rate"):
        without_fn.fit(X, y, epochs=1, batch_size=16, verbose=0)
    assert_state_unchanged(without_fn, before)

    loaded = df.load_model(path, learning_rate=fn, backend=backend)
    h_rest = loaded.fit(X, y, epochs=2, batch_size=16, verbose=0)
    assert h_rest.history["learning_rate"] == h_whole.history["learning_rate"][2:]
    assert_same_state(whole, loaded)


def saved_as_format(model, version, path):
    """model's save file with its config's format_version replaced by version."""
    config = model.get_config()
    config["format_version"] = version
    np.savez(path, config=np.frombuffer(json.dumps(config).encode(), dtype=np.uint8),
             params=model.state.params, slots=model.state.slots, stats=model.state.stats)
    return path


def test_load_model_rejects_other_format(tmp_path):
    path = saved_as_format(continued_model("numpy"), 999, tmp_path / "future.npz")
    with pytest.raises(ValueError, match="format version"):
        df.load_model(path)


def test_load_model_reads_format_version_1_with_a_warning(tmp_path):
    """Version 1 files (PCG64 epoch orders) hold the same arrays: they load, and say that resumed
    shuffled training no longer repeats the old orders."""
    model = continued_model("numpy")
    path = saved_as_format(model, 1, tmp_path / "old.npz")
    with pytest.warns(UserWarning, match="PCG64"):
        loaded = df.load_model(path)
    assert_same_state(model, loaded)


# --------------------------------------------------------------------------------- errors
def compiled(backend="numpy", loss="binary_crossentropy", out="sigmoid", units=1, metrics=None):
    model = df.Sequential([df.Dense(5, "relu", input_dim=D), df.Dense(units, out)], seed=0, backend=backend)
    model.compile(loss=loss, optimizer="sgd", metrics=metrics)
    return model


def _with(a, index, value):
    a = a.copy()
    a[index] = value
    return a


X0, Y0 = binary_data(0)
XM, YM = multiclass_data(0)

FIT_ERRORS = [
    # (id, model factory kwargs, X, y, fit kwargs, exception, message pattern naming the argument)
    ("feature-count", {}, X0[:, :3], Y0, {}, ValueError, "X has 3 features"),
    ("1-D X", {}, X0[:, 0], Y0, {}, ValueError, "X must be 2-D"),
    ("3-D X", {}, X0[:, :, None], Y0, {}, ValueError, "X must be 2-D"),
    ("empty X", {}, X0[:0], Y0[:0], {}, ValueError, "X has no rows"),
    ("y-length", {}, X0, Y0[:-1], {}, ValueError, "y has 119 rows"),
    ("NaN in X", {}, _with(X0, (5, 2), np.nan), Y0, {}, ValueError, "X contains NaN"),
    ("inf in X", {}, _with(X0, (7, 0), -np.inf), Y0, {}, ValueError, "X contains NaN or inf"),
    ("NaN in y", {}, X0, _with(Y0, 3, np.nan), {}, ValueError, "y contains NaN"),
    ("inf in y", {"loss": "mse", "out": None}, X0, _with(Y0, 3, np.inf), {}, ValueError, "y contains NaN or inf"),
    ("string X", {}, X0.astype(str), Y0, {}, TypeError, "X must hold numbers"),
    ("object X", {}, X0.astype(object), Y0, {}, TypeError, "X must hold numbers"),
    ("string y", {}, X0, Y0.astype(str), {}, TypeError, "y must hold numbers"),
    ("y outside [0,1] for BCE", {}, X0, 2 * Y0, {}, ValueError, r"y must lie in \[0, 1\]"),
    ("y negative for BCE", {}, X0, -Y0, {}, ValueError, r"y must lie in \[0, 1\]"),
    ("y columns", {"loss": "mse", "out": None}, X0, np.c_[Y0, Y0], {}, ValueError, "y has 2 columns"),
    ("label == K", {"loss": "categorical_crossentropy", "out": "softmax", "units": 3}, XM, _with(YM, 0, 3), {},
     ValueError, r"y must hold integer class labels in \[0, 3\)"),
    ("label < 0", {"loss": "categorical_crossentropy", "out": "softmax", "units": 3}, XM, _with(YM, 0, -1), {},
     ValueError, "y must hold integer class labels"),
    ("fractional label", {"loss": "categorical_crossentropy", "out": "softmax", "units": 3}, XM,
     _with(YM.astype(float), 0, 1.5), {}, ValueError, "y must hold integer class labels"),
    ("one-hot width", {"loss": "categorical_crossentropy", "out": "softmax", "units": 3}, XM, np.eye(4)[YM % 4], {},
     ValueError, "y has 4 columns"),
    ("batch_size 0", {}, X0, Y0, {"batch_size": 0}, ValueError, "batch_size"),
    ("batch_size float", {}, X0, Y0, {"batch_size": 2.5}, TypeError, "batch_size"),
    ("epochs -1", {}, X0, Y0, {"epochs": -1}, ValueError, "epochs"),
    ("epochs float", {}, X0, Y0, {"epochs": 1.5}, TypeError, "epochs"),
    ("verbose", {}, X0, Y0, {"verbose": 3}, ValueError, "verbose"),
    ("shuffle", {}, X0, Y0, {"shuffle": "yes"}, TypeError, "shuffle"),
    ("validation_data shape", {}, X0, Y0, {"validation_data": (X0[:, :2], Y0)}, ValueError,
     "validation_data X has 2 features"),
    ("validation_data NaN", {}, X0, Y0, {"validation_data": (X0, _with(Y0, 0, np.nan))}, ValueError,
     "validation_data y contains NaN"),
    ("validation_data not a pair", {}, X0, Y0, {"validation_data": X0}, ValueError, "validation_data"),
]


@pytest.mark.parametrize("case", FIT_ERRORS, ids=[c[0] for c in FIT_ERRORS])
def test_fit_rejects_bad_input_before_training(backend, case):
    _, kwargs, X, y, fit_kwargs, exc, pattern = case
    model = compiled(backend, **kwargs)
    before = snapshot(model)
    with pytest.raises(exc, match=pattern):
        model.fit(X, y, **{"epochs": 1, "verbose": 0, **fit_kwargs})
    assert_state_unchanged(model, before)


def test_predict_and_evaluate_reject_bad_input(backend):
    model = compiled(backend)
    with pytest.raises(ValueError, match="X has 3 features"):
        model.predict(X0[:, :3])
    with pytest.raises(ValueError, match="X must be 2-D"):
        model.predict(X0[0])
    with pytest.raises(ValueError, match="X contains NaN"):
        model.predict(_with(X0, (0, 0), np.nan))
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(X0, batch_size=0)
    with pytest.raises(ValueError, match="y has 119 rows"):
        model.evaluate(X0, Y0[:-1])
    with pytest.raises(ValueError, match=r"y must lie in \[0, 1\]"):
        model.evaluate(X0, Y0 + 1)


@pytest.mark.parametrize("build, exc, pattern", [
    (lambda: df.Dense(3, activation="relux"), ValueError, "activation 'relux'"),
    (lambda: df.Activation("swishy"), ValueError, "activation 'swishy'"),
    (lambda: df.Dense(3, activation=3), TypeError, "activation"),
    (lambda: df.Dense(0), ValueError, "units"),
    (lambda: df.Dense(2.0), ValueError, "units"),
    (lambda: df.Dense(3, input_dim=0), ValueError, "input_dim"),
    (lambda: df.Dense(3, activation="relu", alpha=0.1), ValueError, "alpha"),
    (lambda: df.Dense(3, kernel_regularizer="l3"), ValueError, "kernel_regularizer"),
    (lambda: df.l2(-1.0), ValueError, "l2"),
    (lambda: df.Dropout(1.0), ValueError, "rate"),
    (lambda: df.Dropout(-0.1), ValueError, "rate"),
    (lambda: df.BatchNorm(momentum=1.5), ValueError, "momentum"),
    (lambda: df.BatchNorm(epsilon=0.0), ValueError, "epsilon"),
    (lambda: df.SGD(-0.1), ValueError, "learning_rate"),
    (lambda: df.SGD(0.0), ValueError, "learning_rate"),
    (lambda: df.SGD(float("nan")), ValueError, "learning_rate"),
    (lambda: df.SGD("fast"), TypeError, "learning_rate"),
    (lambda: df.SGD(0.1, momentum=1.0), ValueError, "momentum"),
    (lambda: df.SGD(0.1, momentum=-0.5), ValueError, "momentum"),
    (lambda: df.SGD(0.1, nesterov=True), ValueError, "nesterov"),
    (lambda: df.Adam(beta_1=1.0), ValueError, "beta_1"),
    (lambda: df.Adam(beta_2=-0.1), ValueError, "beta_2"),
    (lambda: df.Adam(epsilon=0.0), ValueError, "epsilon"),
    (lambda: df.RMSprop(rho=1.0), ValueError, "rho"),
    (lambda: df.AdamW(weight_decay=-1.0), ValueError, "weight_decay"),
    (lambda: df.SGD(0.1, clipnorm=0.0), ValueError, "clipnorm"),
    (lambda: df.SGD(0.1, clipvalue=-1.0), ValueError, "clipvalue"),
    (lambda: df.ExponentialDecay(0.1, decay=1.5), ValueError, "decay"),
    (lambda: df.Sequential([df.Dense(1)], backend="gpu"), ValueError, "backend 'gpu'"),
    (lambda: df.Sequential([df.Dense(1)], backend=3), TypeError, "backend"),
    (lambda: df.Sequential([df.Dense(1)], dtype="float16"), TypeError, "dtype"),
    (lambda: df.Sequential([df.Dense(1)], seed=-1), ValueError, "seed"),
    (lambda: df.Sequential(["dense"]), TypeError, "layers"),
])
def test_construction_errors(build, exc, pattern):
    with pytest.raises(exc, match=pattern):
        build()


def test_compile_errors():
    def fresh(*layers):
        return df.Sequential(list(layers) or [df.Dense(4, "relu", input_dim=D), df.Dense(1, "sigmoid")], seed=0)

    with pytest.raises(ValueError, match="loss 'hinge'"):
        fresh().compile(loss="hinge", optimizer="sgd")
    with pytest.raises(ValueError, match="optimizer.*'sgdd'"):
        fresh().compile(loss="mse", optimizer="sgdd")
    with pytest.raises(ValueError, match="accuracy"):
        fresh().compile(loss="mse", optimizer="sgd", metrics=["accuracy"])
    with pytest.raises(ValueError, match="metric 'f1'"):
        fresh().compile(loss="binary_crossentropy", optimizer="sgd", metrics=["f1"])
    with pytest.raises(ValueError, match="metric 'r2'"):
        fresh().compile(loss="binary_crossentropy", optimizer="sgd", metrics=["r2"])
    # the loss needs its output activation; softmax only as the last layer
    with pytest.raises(ValueError, match="sigmoid"):
        fresh(df.Dense(4, input_dim=D), df.Dense(1)).compile(loss="binary_crossentropy", optimizer="sgd")
    with pytest.raises(ValueError, match="softmax"):
        fresh(df.Dense(4, input_dim=D), df.Dense(3, "sigmoid")).compile(loss="categorical_crossentropy",
                                                                         optimizer="sgd")
    with pytest.raises(ValueError, match="softmax"):
        fresh(df.Dense(4, "softmax", input_dim=D), df.Dense(3, "softmax")).compile(
            loss="categorical_crossentropy", optimizer="sgd")
    with pytest.raises(ValueError, match="softmax"):
        fresh(df.Dense(3, "softmax", input_dim=D)).compile(loss="mse", optimizer="sgd")
    with pytest.raises(ValueError, match="at least 2 output units"):
        fresh(df.Dense(1, "softmax", input_dim=D)).compile(loss="categorical_crossentropy", optimizer="sgd")
    with pytest.raises(ValueError, match="input_dim=5"):
        fresh(df.Dense(4, input_dim=D), df.Dense(2, input_dim=5)).compile(loss="mse", optimizer="sgd")


def test_network_errors_without_input_dim_raise_at_fit_before_training():
    model = df.Sequential([df.Dense(4), df.Dense(1)], seed=0)       # no input_dim: built by fit
    model.compile(loss="binary_crossentropy", optimizer="sgd")
    with pytest.raises(ValueError, match="sigmoid"):
        model.fit(X0, Y0, verbose=0)
    assert model.state is None


def test_order_errors():
    model = df.Sequential([df.Dense(1, input_dim=D)], seed=0)
    with pytest.raises(ValueError, match="compile"):
        model.fit(X0, Y0, verbose=0)
    assert model.state is None
    with pytest.raises(ValueError, match="no weights"):
        model.predict(X0)
    with pytest.raises(ValueError, match="no weights"):
        model.get_weights()
    model.compile(loss="mse", optimizer="sgd")
    with pytest.raises(ValueError, match="cannot add layers"):
        model.add(df.Dense(1))
    with pytest.raises(ValueError, match="compile"):
        df.Sequential(seed=0).fit(X0, Y0, verbose=0)
    empty = df.Sequential(seed=0)
    empty.compile(loss="mse", optimizer="sgd")
    with pytest.raises(ValueError, match="no layers"):
        empty.fit(X0, Y0, verbose=0)


# --------------------------------------------------------------------------------- inputs untouched
def _variants(tmp_path, X):
    readonly = X.copy()
    readonly.flags.writeable = False
    path = tmp_path / "X.dat"
    writer = np.memmap(path, dtype=X.dtype, mode="w+", shape=X.shape)
    writer[:] = X
    writer.flush()
    del writer
    memmap = np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape)
    wide = np.zeros((X.shape[0], 2 * X.shape[1]), dtype=X.dtype)
    wide[:, ::2] = X
    return {"read-only": readonly, "memmap": memmap, "strided": wide[:, ::2],
            "fortran": np.asfortranarray(X), "float64-for-float32": X}


@pytest.mark.parametrize("kind", ["read-only", "memmap", "strided", "fortran", "float64-for-float32"])
def test_inputs_are_not_modified_and_layout_does_not_matter(backend, tmp_path, kind):
    X, y = binary_data(8, n=64)
    dtype = "float32" if kind == "float64-for-float32" else "float64"
    variant = _variants(tmp_path, X)[kind]
    reference_X = np.ascontiguousarray(X, dtype=dtype)
    y_ro = y.copy()
    y_ro.flags.writeable = False
    X_before, y_before = np.array(variant, copy=True), y.copy()

    reference = small_binary_model(backend, dtype=dtype)
    reference.fit(reference_X, y, epochs=2, batch_size=16, validation_data=(reference_X, y), verbose=0)
    model = small_binary_model(backend, dtype=dtype)
    model.fit(variant, y_ro, epochs=2, batch_size=16, validation_data=(variant, y_ro), verbose=0)
    assert_same_state(reference, model)
    np.testing.assert_array_equal(model.predict(variant), reference.predict(reference_X))
    assert model.evaluate(variant, y_ro) == reference.evaluate(reference_X, y)

    np.testing.assert_array_equal(variant, X_before)
    np.testing.assert_array_equal(y_ro, y_before)
    assert variant.dtype == np.float64


def test_integer_and_list_inputs(backend):
    rng = np.random.default_rng(0)
    Xi = rng.integers(-3, 4, size=(40, D))
    y = (Xi.sum(axis=1) > 0).astype(np.int64)
    a = small_binary_model(backend)
    a.fit(Xi, y, epochs=2, batch_size=8, verbose=0)
    b = small_binary_model(backend)
    b.fit(Xi.tolist(), y.tolist(), epochs=2, batch_size=8, verbose=0)
    c = small_binary_model(backend)
    c.fit(Xi.astype(np.float64), y.astype(np.float64), epochs=2, batch_size=8, verbose=0)
    assert_same_state(a, b)
    assert_same_state(a, c)
    assert Xi.dtype == np.int64


def test_training_does_not_modify_user_arrays(backend):
    X, y = binary_data(1)
    Xc, yc = X.copy(), y.copy()
    model = small_binary_model(backend)
    model.fit(X, y, epochs=2, batch_size=8, validation_data=(X, y), verbose=0)
    model.evaluate(X, y)
    model.predict(X)
    np.testing.assert_array_equal(X, Xc)
    np.testing.assert_array_equal(y, yc)
    # and the weights handed to set_weights stay the caller's
    weights = model.get_weights()
    copies = [w.copy() for w in weights]
    model.set_weights(weights)
    model.fit(X, y, epochs=1, verbose=0)
    for w, c in zip(weights, copies):
        np.testing.assert_array_equal(w, c)


# --------------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32, np.float64])
def test_float32_and_float64_train(backend, dtype):
    X, y = multiclass_data(2)
    model = df.Sequential([df.Dense(10, "tanh", input_dim=D), df.BatchNorm(), df.Dense(3, "softmax")],
                          seed=0, dtype=dtype, backend=backend)
    model.compile(loss="categorical_crossentropy", optimizer=df.SGD(0.1, momentum=0.9), metrics=["accuracy"])
    expected = np.dtype(dtype)
    assert model.state.params.dtype == expected and model.state.slots.dtype == expected
    history = model.fit(X, y, epochs=10, batch_size=16, verbose=0)
    assert model.state.params.dtype == expected and model.state.stats.dtype == expected
    assert all(w.dtype == expected for w in model.get_weights())
    assert model.predict(X).dtype == expected
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert model.evaluate(X, y)["accuracy"] > 0.85


def test_float32_tracks_float64(backend):
    X, y = binary_data(0)
    runs = {}
    for dtype in ("float32", "float64"):
        model = small_binary_model(backend, dtype=dtype, dropout=False)
        runs[dtype] = model.fit(X, y, epochs=2, batch_size=16, verbose=0).history["loss"]
    np.testing.assert_allclose(runs["float32"], runs["float64"], rtol=1e-4)


# --------------------------------------------------------------------------------- backends
def test_backend_registry():
    available = df.available_backends()
    assert "numpy" in available
    assert available == [name for name in ("cpp", "numba", "numpy") if name in available]
    info = df.backend_info()
    assert set(info) >= {"default", "reason", "available", "unavailable"}
    assert info["available"] == available
    assert info["default"] in available
    assert isinstance(info["reason"], str) and info["reason"]
    assert set(info["unavailable"]) == {"cpp", "numba", "numpy"} - set(available)
    assert all(isinstance(why, str) and why for why in info["unavailable"].values())


def test_auto_picks_the_fastest_available(monkeypatch):
    monkeypatch.delenv("DENSEFIT_BACKEND", raising=False)
    fastest = df.available_backends()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)    # the fall-back warning, if any
        assert df.Sequential([df.Dense(1)]).backend == fastest
        assert df.Sequential([df.Dense(1)], backend="AUTO").backend == fastest
        assert df.backend_info()["default"] == fastest


@pytest.mark.parametrize("name", ["numpy", "NumPy", " numpy "])
def test_environment_variable_chooses_auto(monkeypatch, name):
    monkeypatch.setenv("DENSEFIT_BACKEND", name)
    assert df.Sequential([df.Dense(1)]).backend == "numpy"
    info = df.backend_info()
    assert info["default"] == "numpy"
    assert "DENSEFIT_BACKEND" in info["reason"]
    # an explicit backend argument wins over the environment
    for explicit in df.available_backends():
        assert df.Sequential([df.Dense(1)], backend=explicit).backend == explicit


def test_environment_variable_unknown_backend(monkeypatch):
    monkeypatch.setenv("DENSEFIT_BACKEND", "tpu")
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        df.Sequential([df.Dense(1)])
    assert df.Sequential([df.Dense(1)], backend="numpy").backend == "numpy"


def test_unavailable_backend_is_a_clear_error():
    missing = [name for name in ("cpp", "numba") if name not in df.available_backends()]
    if not missing:
        pytest.skip("every backend is available here")
    with pytest.raises(RuntimeError, match=f"backend '{missing[0]}' is not available"):
        df.Sequential([df.Dense(1)], backend=missing[0])


def test_set_backend(backend):
    X, y = binary_data(0)
    model = small_binary_model("numpy")
    model.fit(X, y, epochs=1, batch_size=16, verbose=0)
    before = snapshot(model)
    model.set_backend(backend)
    assert model.backend == backend
    assert_state_unchanged(model, before)
    model.fit(X, y, epochs=1, batch_size=16, verbose=0)
    assert model.state.epoch == 2
    with pytest.raises(ValueError, match="unknown backend"):
        model.set_backend("gpu")
    assert model.backend == backend
    assert backend_registry.resolve(backend) == backend


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("epochs", [0, 1, 3])
def test_fit_rejects_nan_in_x_and_leaves_the_model_untouched(backend, shuffle, epochs):
    """NaN/inf in X raises ValueError before any update is kept: the cpp backend finds it while
    its first epoch reads the batch (and restores the state), the others scan X first."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    X[217, 2] = np.inf if shuffle else np.nan
    model = df.Sequential([df.Dense(8, "relu", input_dim=4), df.BatchNorm(), df.Dense(1, "sigmoid")], seed=0,
                          backend=backend)
    model.compile("binary_crossentropy", df.SGD(0.1, momentum=0.9))
    model.fit(X[:200], y[:200], epochs=1, batch_size=16, verbose=0)   # optimizer slots and BN stats in use
    before = (model.state.params.copy(), model.state.slots.copy(), model.state.stats.copy(), model.state.step,
              model.state.epoch)
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        model.fit(X, y, epochs=epochs, batch_size=16, shuffle=shuffle, verbose=0)
    after = (model.state.params, model.state.slots, model.state.stats, model.state.step, model.state.epoch)
    for a, b in zip(before[:3], after[:3]):
        np.testing.assert_array_equal(a, b)
    assert before[3:] == after[3:]


def test_summary_counts_every_parameter_of_the_plan(capsys):
    """summary() reads the lowered network: its counts add up to the plan's, layer by layer."""
    model = df.Sequential([df.Dense(4, activation="relu", input_dim=3), df.BatchNorm(), df.Dropout(0.2),
                           df.Activation("tanh"), df.Dense(2, use_bias=False), df.Dense(1)])
    model.compile(loss="mse", optimizer="sgd")
    model.fit(np.zeros((4, 3)), np.zeros(4), epochs=1, verbose=0)
    rows = [line.split() for line in model.summary().splitlines()[1:]]
    assert [row[1:] for row in rows] == [["4", "16"], ["4", "8"], ["4", "0"], ["4", "0"], ["2", "8"], ["1", "3"]]
    assert sum(int(row[2]) for row in rows) == model.plan.n_params
    unknown = df.Sequential([df.Dense(3), df.Dense(1)]).summary()
    assert unknown.splitlines()[1].split()[1:] == ["?", "?"]
    assert "Dense(relu)" in capsys.readouterr().out
