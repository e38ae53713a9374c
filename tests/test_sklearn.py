"""densefit.sklearn: scikit-learn's own estimator checks, the same updates as scikit-learn's MLP,
backends agreeing, sample and class weights, pickling, and scikit-learn's model selection."""

import copy
import pickle
import warnings

import joblib
import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn import neural_network as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402
from sklearn.utils.validation import check_is_fitted  # noqa: E402

import densefit as df  # noqa: E402
import densefit.sklearn  # noqa: E402
from densefit.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

from conftest import BACKENDS, TOLERANCE, relative_error  # noqa: E402


@parametrize_with_checks([MLPClassifier(), MLPRegressor()])
def test_sklearn_estimator_checks(estimator, check):
    """Every check scikit-learn has for these estimators, on the default instances. The two
    sample-weight-equivalence checks compare a weighted fit with one on repeated rows at
    rtol=1e-7, finer than float32's resolution (ε = 1.2e-7), so they run on the float64
    instance: scikit-learn's own MLP fails them as well when fed float32 data (by 2.7e-4)."""
    name = getattr(check, "func", check).__name__
    if name.startswith("check_sample_weight_equivalence"):
        estimator = clone(estimator).set_params(dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def _data(kind, n=103, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 6))
    if kind == "multiclass":
        y = rng.randint(0, 3, n)
    elif kind == "binary":
        y = rng.randint(0, 2, n)
    elif kind == "multilabel":
        y = (X[:, :3] + rng.normal(size=(n, 3)) > 0).astype(int)
    else:
        y = X[:, :2] @ np.array([[1.0, 2.0], [3.0, -1.0]]) + rng.normal(size=(n, 2))
    return X, y, rng.randint(0, 4, n).astype(float)


def _pair(kind):
    return (sk.MLPRegressor, MLPRegressor) if kind == "regression" else (sk.MLPClassifier, MLPClassifier)


def _params(est):
    return est.coefs_ + est.intercepts_


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel", "regression"])
@pytest.mark.parametrize("weighted", [False, True])
def test_sgd_updates_are_scikit_learns(backend, kind, weighted):
    """Same initial weights (same random_state), same batches (shuffle=False, a partial last
    batch), SGD with Nesterov momentum and a large alpha: scikit-learn's weights, to rounding.
    This pins the loss scaling, alpha's ½α‖W‖²/Σw form with and without sample weights, and the
    initialization."""
    X, y, w = _data(kind)
    S, D = _pair(kind)
    kw = dict(hidden_layer_sizes=(7, 5), activation="tanh", solver="sgd", alpha=0.3, batch_size=32, shuffle=False,
              max_iter=15, random_state=1, learning_rate_init=0.01, tol=0)
    sw = w if weighted else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = S(**kw).fit(X, y, sample_weight=sw)
        ours = D(**kw, dtype="float64", backend=backend).fit(X, y, sample_weight=sw)
    for a, b in zip(_params(ours), _params(ref)):
        assert relative_error(a, b) < 1e-12
    if kind != "regression":  # the regressor's reported loss differs for K > 1 outputs (module docstring)
        np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-12)
    assert ours.n_iter_ == ref.n_iter_ == 15 and ours.t_ == ref.t_


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_adam_updates_match_scikit_learns(kind):
    """Adam differs from scikit-learn's only in where ε enters (after the bias correction)."""
    X, y, w = _data(kind)
    S, D = _pair(kind)
    kw = dict(hidden_layer_sizes=(7,), alpha=0.01, batch_size=20, shuffle=False, max_iter=10, random_state=3,
              learning_rate_init=0.01, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = S(**kw).fit(X, y, sample_weight=w)
        ours = D(**kw, dtype="float64").fit(X, y, sample_weight=w)
    for a, b in zip(_params(ours), _params(ref)):
        assert relative_error(a, b) < 1e-4


@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression"])
def test_backends_agree_in_float64(kind):
    X, y, w = _data(kind, n=150)
    S, D = _pair(kind)
    outputs = {}
    for backend in BACKENDS:
        est = D(hidden_layer_sizes=(12, 8), alpha=1e-3, batch_size=16, max_iter=12, random_state=0, dtype="float64",
                backend=backend, dropout=0.1, batch_norm=True, tol=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y, sample_weight=w)
        outputs[backend] = est.predict_proba(X) if kind != "regression" else est.predict(X)
    for backend in BACKENDS[1:]:
        assert relative_error(outputs[backend], outputs[BACKENDS[0]]) < TOLERANCE["float64"], backend


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_weight_two_equals_duplicated_row(backend, kind):
    X, y, _ = _data(kind, n=40)
    D = _pair(kind)[1]
    w = np.ones(len(X))
    w[[3, 17, 29]] = 2
    Xd, yd = np.vstack([X, X[[3, 17, 29]]]), np.concatenate([y, y[[3, 17, 29]]])
    kw = dict(hidden_layer_sizes=(9,), batch_size=100, max_iter=30, random_state=0, dtype="float64", backend=backend,
              alpha=0.05, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = D(**kw).fit(X, y, sample_weight=w)
        b = D(**kw).fit(Xd, yd)
    for p, q in zip(_params(a), _params(b)):
        np.testing.assert_allclose(p, q, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-9)


def test_class_weight_is_the_matching_sample_weight():
    X, y, _ = _data("multiclass")
    kw = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0, batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for class_weight in ({0: 1.0, 1: 3.0, 2: 0.5}, "balanced"):
            a = MLPClassifier(**kw, class_weight=class_weight).fit(X, y)
            from sklearn.utils import compute_sample_weight
            b = MLPClassifier(**kw).fit(X, y, sample_weight=compute_sample_weight(class_weight, y))
            for p, q in zip(_params(a), _params(b)):
                assert np.array_equal(p, q)


def test_stopping_rules_do_not_depend_on_how_epochs_are_grouped():
    """Epochs run in groups of up to n_iter_no_change + 1 per backend call; verbose runs one per
    call. Both stop at the same epoch with the same curve, bit for bit."""
    X, y, _ = _data("binary", n=300)
    kw = dict(hidden_layer_sizes=(16,), max_iter=500, random_state=0, tol=1e-3, n_iter_no_change=4,
              learning_rate_init=0.01)
    grouped = MLPClassifier(**kw).fit(X, y)
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()) as out:
        single = MLPClassifier(**kw, verbose=True).fit(X, y)
    assert grouped.n_iter_ == single.n_iter_ < 500
    assert grouped.loss_curve_ == single.loss_curve_
    assert "Training loss did not improve more than tol=0.001000 for 4 consecutive epochs. Stopping." in out.getvalue()
    assert grouped.best_loss_ == min(grouped.loss_curve_)


def test_max_iter_warns_convergence_and_adaptive_rate_divides_by_five():
    X, y, _ = _data("regression")
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\) reached"):
        MLPRegressor(max_iter=3, random_state=0).fit(X, y)
    est = MLPRegressor(solver="sgd", learning_rate="adaptive", learning_rate_init=0.05, tol=10.0, n_iter_no_change=1,
                       max_iter=200, random_state=0).fit(X, y)
    # with tol=10 no epoch improves: the rate drops by 5 every 2 epochs until below 1e-6
    assert est._learning_rate <= 1e-6 and est.n_iter_ < 200
    assert np.isclose(est._learning_rate, 0.05 / 5 ** round(np.log(0.05 / est._learning_rate) / np.log(5)))


def test_early_stopping_keeps_the_best_weights(monkeypatch):
    X, y = make_classification(n_samples=400, n_features=10, random_state=0)
    split = {}

    def recording_split(*arrays, **kwargs):  # the estimator's own split (its random state has drawn the weights first)
        parts = train_test_split(*arrays, **kwargs)
        split["X_val"], split["y_val"] = parts[1], parts[5]
        return parts

    monkeypatch.setattr(densefit.sklearn, "train_test_split", recording_split)
    est = MLPClassifier(hidden_layer_sizes=(32,), early_stopping=True, n_iter_no_change=3, max_iter=300,
                        random_state=0, learning_rate_init=0.05).fit(X, y)
    assert est.best_loss_ is None and len(est.validation_scores_) == est.n_iter_
    assert est.best_validation_score_ == max(est.validation_scores_)
    assert np.isclose(est.score(split["X_val"], split["y_val"]), est.best_validation_score_)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        est.partial_fit(X, y)


def test_targets_and_attributes():
    pd = pytest.importorskip("pandas")
    X, y, _ = _data("multiclass")
    labels = np.array(["cat", "dog", "eel"])[y]
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    est = MLPClassifier(hidden_layer_sizes=(10, 4), max_iter=20, random_state=0).fit(frame, labels)
    assert list(est.classes_) == ["cat", "dog", "eel"] and set(est.predict(frame)) <= set(est.classes_)
    assert list(est.feature_names_in_) == list(frame.columns) and est.n_features_in_ == 6
    assert est.n_layers_ == 4 and est.n_outputs_ == 3 and est.out_activation_ == "softmax"
    assert [c.shape for c in est.coefs_] == [(6, 10), (10, 4), (4, 3)]
    proba = est.predict_proba(frame)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(est.predict_log_proba(frame), np.log(proba), rtol=1e-6)
    # coefs_/intercepts_ are the trained weights: a forward pass through them is predict_proba
    h = X
    for W, b in zip(est.coefs_[:-1], est.intercepts_[:-1]):
        h = np.maximum(h @ W + b, 0)
    z = h @ est.coefs_[-1] + est.intercepts_[-1]
    np.testing.assert_allclose(np.exp(z) / np.exp(z).sum(axis=1, keepdims=True), proba, rtol=1e-4, atol=1e-6)
    views = est.coefs_
    est.partial_fit(frame, labels)
    assert all(np.array_equal(a, b) for a, b in zip(views, est.coefs_))  # never stale

    Xm, Y, _ = _data("multilabel")
    est = MLPClassifier(max_iter=30, random_state=0).fit(Xm, Y)
    assert est.predict(Xm).shape == Y.shape and est.out_activation_ == "logistic" and est.n_outputs_ == 3

    Xr, Yr, _ = _data("regression")
    est = MLPRegressor(max_iter=30, random_state=0).fit(Xr, Yr)
    assert est.predict(Xr).shape == Yr.shape and est.out_activation_ == "identity"
    assert MLPRegressor(max_iter=5, random_state=0).fit(Xr, Yr[:, 0]).predict(Xr).shape == (len(Xr),)


def test_bad_parameters_and_inputs():
    X, y, _ = _data("binary")
    with pytest.raises(ValueError, match="'adam'.*'sgd'|'sgd'.*'adam'"):
        MLPClassifier(solver="lbfgs").fit(X, y)
    with pytest.raises(ValueError, match="squared_error"):
        MLPRegressor(loss="poisson").fit(X, y)
    with pytest.raises(ValueError, match="dropout"):
        MLPClassifier(dropout=1.0).fit(X, y)
    with pytest.raises(ValueError, match="backend"):
        MLPClassifier(backend="gpu").fit(X, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        MLPClassifier(hidden_layer_sizes=(3, 0)).fit(X, y)
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(X)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        MLPClassifier().partial_fit(X, y)
    est = MLPClassifier(max_iter=2).partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="classes not in"):
        est.partial_fit(X, np.full(len(X), 7))
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :3])
    with pytest.raises(ValueError, match="sample_weight|Sample weights"):
        est.fit(X, y, sample_weight=np.ones(3))


def test_extras_build_the_network():
    X, y, _ = _data("multiclass")
    est = MLPClassifier(hidden_layer_sizes=(8, 8), dropout=0.2, batch_norm=True, max_iter=3, dtype="float64",
                        backend="numpy").fit(X, y)
    kinds = [type(layer).__name__ for layer in est._model.layers]
    assert kinds == ["Dense", "BatchNorm", "Activation", "Dropout", "Dense", "BatchNorm", "Activation", "Dropout",
                     "Dense"]
    assert est.predict_proba(X).dtype == np.float64 and est._model.backend == "numpy"


# ------------------------------------------------------------------------------ Python objects
def _halfway_and_on(make, backend, dump):
    X, y, _ = _data("multiclass")
    a = make(backend).partial_fit(X, y, classes=[0, 1, 2]) if make is _clf else make(backend).partial_fit(X, y)
    b = dump(a)
    for est in (a, b):
        for _ in range(3):
            est.partial_fit(X, y)
    return a, b


def _clf(backend):
    return MLPClassifier(hidden_layer_sizes=(10,), batch_size=16, random_state=0, backend=backend, dropout=0.1,
                         batch_norm=True)


def _reg(backend):
    return MLPRegressor(hidden_layer_sizes=(10,), batch_size=16, random_state=0, backend=backend, solver="sgd")


@pytest.mark.parametrize("dump", [lambda e: pickle.loads(pickle.dumps(e)), copy.deepcopy], ids=["pickle", "deepcopy"])
@pytest.mark.parametrize("make", [_clf, _reg], ids=["classifier", "regressor"])
def test_pickled_halfway_trains_on_bit_identically(backend, make, dump):
    a, b = _halfway_and_on(make, backend, dump)
    assert all(np.array_equal(p, q) for p, q in zip(_params(a), _params(b)))
    assert a.loss_curve_ == b.loss_curve_ and a.t_ == b.t_ and b._model.backend == backend


def test_joblib_and_unfitted_estimators(tmp_path):
    X, y, _ = _data("binary")
    est = MLPClassifier(max_iter=5, random_state=0).fit(X, y)
    joblib.dump(est, tmp_path / "est.joblib")
    loaded = joblib.load(tmp_path / "est.joblib")
    assert np.array_equal(loaded.predict_proba(X), est.predict_proba(X))
    check_is_fitted(loaded)
    fresh = clone(est)
    with pytest.raises(NotFittedError):
        check_is_fitted(fresh)
    assert pickle.loads(pickle.dumps(MLPRegressor(alpha=0.5))).alpha == 0.5
    # the payload holds no pickled densefit objects beyond the estimator and the model's npz bytes
    assert b"Plan" not in pickle.dumps(est)


def test_sequential_pickles_on_every_backend(backend, tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 5)), rng.integers(0, 3, 200)
    unfitted = df.Sequential([df.Dense(8, activation="relu"), df.Dense(3, activation="softmax")], seed=1,
                             backend=backend)
    assert pickle.loads(pickle.dumps(unfitted)).plan is None
    unfitted.compile("categorical_crossentropy", df.SGD(0.1, momentum=0.9), metrics=["accuracy"])
    model = copy.deepcopy(unfitted)
    model.fit(X, y, epochs=2, verbose=0)
    restored = {"pickle": pickle.loads(pickle.dumps(model)), "deepcopy": copy.deepcopy(model)}
    joblib.dump(model, tmp_path / "m.joblib")
    restored["joblib"] = joblib.load(tmp_path / "m.joblib")
    model.fit(X, y, epochs=2, verbose=0)
    for name, other in restored.items():
        assert other.backend == backend and other.state.step == model.state.step - 2 * 7
        other.fit(X, y, epochs=2, verbose=0)
        assert all(np.array_equal(p, q) for p, q in zip(model.get_weights(), other.get_weights())), name
        assert np.array_equal(model.state.slots, other.state.slots), name


# ------------------------------------------------------------------------------ model selection
@pytest.mark.parametrize("loader, kind", [(load_digits, "classifier"), (load_breast_cancer, "classifier"),
                                          (load_diabetes, "regressor")])
def test_same_accuracy_as_scikit_learn_through_pipeline_and_grid_search(loader, kind):
    X, y = loader(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    if kind == "classifier":
        make = lambda E: E(hidden_layer_sizes=(64,), max_iter=200, random_state=0)  # noqa: E731
        classes, limit = (sk.MLPClassifier, MLPClassifier), 0.02
    else:
        make = lambda E: E(hidden_layer_sizes=(64,), max_iter=1000, learning_rate_init=0.01, random_state=0)  # noqa: E731
        classes, limit = (sk.MLPRegressor, MLPRegressor), 0.05
    scores = []
    for E in classes:
        search = GridSearchCV(make_pipeline(StandardScaler(), make(E)), {"mlpclassifier__alpha" if kind == "classifier"
                              else "mlpregressor__alpha": [1e-4, 1e-1]}, cv=3, n_jobs=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(X_train, y_train)
        scores.append(search.score(X_test, y_test))
    assert abs(scores[0] - scores[1]) <= limit, scores


def test_incremental_and_grid_search_on_a_dask_cluster():
    distributed = pytest.importorskip("distributed")
    da = pytest.importorskip("dask.array")
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X, y = make_classification(n_samples=2000, n_features=8, random_state=0)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)  # under load a worker may register after the client connects
        assert len(client.scheduler_info()["workers"]) == 2
        dX, dy = da.from_array(X, chunks=(250, 8)), da.from_array(y, chunks=250)
        inc = wrappers.Incremental(MLPClassifier(hidden_layer_sizes=(16,), random_state=0, learning_rate_init=0.01),
                                   scoring="accuracy", shuffle_blocks=False)
        inc.fit(dX, dy, classes=[0, 1])
        fitted = inc.estimator_
        # one partial_fit per block, in order: the same as streaming the blocks locally
        local = MLPClassifier(hidden_layer_sizes=(16,), random_state=0, learning_rate_init=0.01)
        for start in range(0, 2000, 250):
            local.partial_fit(X[start:start + 250], y[start:start + 250], classes=[0, 1])
        assert all(np.array_equal(p, q) for p, q in zip(_params(fitted), _params(local)))
        assert inc.score(dX, dy) > 0.8

        search = GridSearchCV(MLPClassifier(max_iter=30, random_state=0), {"alpha": [1e-4, 1e-2],
                              "hidden_layer_sizes": [(8,), (16,)]}, cv=2)
        with joblib.parallel_backend("dask"), warnings.catch_warnings(), distributed.get_task_stream(client) as stream:
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(X, y)
        assert search.best_score_ > 0.8
        # the 8 fits (4 candidates x 2 folds) ran as tasks (joblib batches them) on the cluster's workers
        workers = {task["worker"] for task in stream.data}
        assert len(search.cv_results_["params"]) == 4 and stream.data
        assert workers and workers <= set(client.scheduler_info()["workers"])


# ------------------------------------------------------------------------------ properties
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 40), n_features=st.integers(1, 5), n_classes=st.integers(1, 4),
       dtype=st.sampled_from(["float32", "float64"]), input_dtype=st.sampled_from([np.float32, np.float64, np.int64]),
       batch_size=st.one_of(st.just("auto"), st.integers(1, 50)), seed=st.integers(0, 2**16))
def test_classifier_shapes_and_probabilities(n, n_features, n_classes, dtype, input_dtype, batch_size, seed):
    rng = np.random.RandomState(seed)
    X = (rng.normal(size=(n, n_features)) * 3).astype(input_dtype)
    y = rng.randint(0, n_classes, n)
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, batch_size=batch_size, dtype=dtype, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    proba = est.predict_proba(X)
    assert proba.shape == (n, max(2, len(est.classes_))) and proba.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(proba)) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert set(est.predict(X)) <= set(est.classes_) and est.n_iter_ == 3 and est.t_ == 3 * n
    assert len(est.loss_curve_) == 3 and all(np.isfinite(est.loss_curve_))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 40), n_outputs=st.integers(1, 3), dtype=st.sampled_from(["float32", "float64"]),
       weighted=st.booleans(), seed=st.integers(0, 2**16))
def test_regressor_shapes(n, n_outputs, dtype, weighted, seed):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 3))
    y = rng.normal(size=(n, n_outputs)) if n_outputs > 1 else rng.normal(size=n)
    w = rng.uniform(0.5, 2, n) if weighted else None
    est = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, dtype=dtype, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y, sample_weight=w)
    assert est.predict(X).shape == y.shape and est.n_outputs_ == n_outputs
