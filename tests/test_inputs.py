"""Bad inputs found by the reliability probe (issue #12, items 4 and 8): each is refused before
any work with an error naming the argument, the same on every backend."""

import numpy as np
import pytest

import densefit as df


def _model(backend, loss="mse", units=1, activation=None, dtype="float32", bn=False):
    layers = [df.Dense(4, activation="tanh", input_dim=3)] + ([df.BatchNorm()] if bn else [])
    model = df.Sequential(layers + [df.Dense(units, activation=activation)], seed=0, dtype=dtype, backend=backend)
    model.compile(loss, "sgd")
    return model


def test_targets_are_checked_after_the_cast_to_the_models_dtype(backend):
    model = _model(backend)
    before = model.get_weights()
    with pytest.raises(ValueError, match="y contains NaN or infinity.*too large for float32"):
        model.fit(np.ones((4, 3)), np.full(4, 1e39), verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    _model(backend, dtype="float64").fit(np.ones((4, 3)), np.full(4, 1e39), epochs=0, verbose=0)  # fits float64


def test_shapes_and_kinds_refused(backend):
    model = _model(backend)
    unbuilt = _compiled_unbuilt(backend)
    with pytest.raises(ValueError, match="X has no features"):
        unbuilt.fit(np.ones((4, 0)), np.ones(4), verbose=0)
    assert unbuilt.plan is None
    unbuilt.fit(np.ones((4, 2)), np.ones(4), verbose=0)  # not stuck at 0 inputs
    assert unbuilt.plan.n_features == 2
    with pytest.raises(TypeError, match="y must be real"):
        model.fit(np.ones((4, 3)), np.ones(4) * (1 + 1j), verbose=0)
    cce = _model(backend, "categorical_crossentropy", 3, "softmax")
    with pytest.raises(ValueError, match="non-negative"):
        cce.fit(np.ones((2, 3)), np.array([[1.5, -0.5, 0.0], [0, 1, 0]]), verbose=0)
    bn = _model(backend, bn=True)
    with pytest.raises(ValueError, match="BatchNorm needs batches of at least 2 rows"):
        bn.fit(np.ones((4, 3)), np.ones(4), batch_size=1, verbose=0)
    bn.fit(np.random.default_rng(0).normal(size=(5, 3)), np.ones(5), batch_size=2, verbose=0)  # a last 1-row batch is fine


def _compiled_unbuilt(backend):
    model = df.Sequential([df.Dense(1)], seed=0, backend=backend)
    model.compile("mse", "sgd")
    return model


def test_any_large_predict_batch_size_means_one_batch(backend):
    model = _model(backend)
    X = np.random.default_rng(0).normal(size=(7, 3))
    assert np.array_equal(model.predict(X, batch_size=2**63), model.predict(X))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        model.predict(X, batch_size=0)


def test_numpy_integer_units_accepted_and_bools_refused():
    layer = df.Dense(np.int64(3), input_dim=np.int32(2))
    assert layer.units == 3 and type(layer.units) is int and layer.input_dim == 2
    with pytest.raises(ValueError, match="input_dim"):
        df.Dense(3, input_dim=True)
    with pytest.raises(ValueError, match="units"):
        df.Dense(np.bool_(True))


def test_one_model_from_two_threads_refuses_instead_of_interleaving(backend):
    import threading
    from densefit import callbacks as C
    X = np.random.default_rng(0).normal(size=(64, 3))
    y = X[:, :1]
    model, other = _model(backend), _model(backend)
    inside, release = threading.Event(), threading.Event()

    def hold(epoch, logs):  # keeps the first thread inside fit until the main thread has tried
        inside.set()
        release.wait(10)

    errors = []
    worker = threading.Thread(target=lambda: model.fit(X, y, epochs=2, verbose=0,
                                                       callbacks=[C.LambdaCallback(on_epoch_begin=hold)]))
    worker.start()
    try:
        assert inside.wait(10)
        for call in (lambda: model.predict(X), lambda: model.fit(X, y, verbose=0), lambda: model.evaluate(X, y),
                     lambda: model.set_weights(model.get_weights())):
            with pytest.raises(RuntimeError, match="in use by another thread"):
                call()
        other.fit(X, y, epochs=1, verbose=0)  # another model trains meanwhile
    except BaseException as exc:  # pragma: no cover - keep the worker from hanging
        errors.append(exc)
    finally:
        release.set()
        worker.join(30)
    assert not errors and model.epoch == 2
    model.predict(X)  # free again
