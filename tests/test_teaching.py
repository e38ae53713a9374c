"""Reproductions of the classic teaching results on densefit's own data sets: gradient descent
finds the least-squares line, an l2 penalty is ridge regression, a tiny ReLU network separates
clusters no line can, and a hidden layer bends the decision boundary around two moons."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

import densefit as df
from densefit import datasets


def ols(X, y, intercept=True):
    A = np.c_[X, np.ones(len(X))] if intercept else X
    return np.linalg.lstsq(A, y, rcond=None)[0]


# --------------------------------------------------------------------------------- linear regression
@pytest.mark.parametrize("batch_size", [None, 1000])
def test_full_batch_gradient_descent_reaches_least_squares(backend, batch_size):
    """Full-batch GD on mean((xw + b - y)²) converges to the closed-form OLS solution.

    With x ~ U(0, 2) the Hessian 2 [[E x², E x], [E x, 1]] has eigenvalues ≈ 4.36 and 0.31, so
    lr = 0.4 is stable (< 2 / 4.36) and contracts the slow direction by ≈ 0.88 per step:
    300 steps shrink the initial error by ≈ 1e-17.
    """
    X, y = datasets.make_linear(n=1000)
    assert X.shape == (1000, 1) and X.min() >= 0 and X.max() <= 2
    slope, intercept = ols(X, y)
    assert slope == pytest.approx(4, abs=0.3) and intercept == pytest.approx(6, abs=0.3)

    model = df.Sequential([df.Dense(1, input_dim=1)], seed=0, dtype="float64", backend=backend)
    model.compile(loss="mse", optimizer=df.SGD(0.4))
    history = model.fit(X, y, epochs=300, batch_size=batch_size, shuffle=False, verbose=0)
    W, b = model.get_weights()
    assert model.state.step == 300
    np.testing.assert_allclose([W[0, 0], b[0]], [slope, intercept], rtol=0, atol=1e-6)
    # the loss it reports at the optimum is the OLS mean squared residual
    residual = np.mean((X[:, 0] * slope + intercept - y) ** 2)
    assert model.evaluate(X, y)["loss"] == pytest.approx(residual, rel=1e-10)
    assert np.all(np.diff(history.history["loss"]) <= 1e-12)     # GD with a small step: monotone


def test_minibatch_sgd_lands_near_least_squares(backend):
    """Workload W6 (SGD lr .01, batch 64, 100 epochs) ends within the SGD noise of OLS."""
    X, y = datasets.make_linear(n=1000)
    slope, intercept = ols(X, y)
    model = df.Sequential([df.Dense(1, input_dim=1)], seed=0, dtype="float64", backend=backend)
    model.compile(loss="mse", optimizer=df.SGD(0.01))
    model.fit(X, y, epochs=100, batch_size=64, verbose=0)
    W, b = model.get_weights()
    np.testing.assert_allclose([W[0, 0], b[0]], [slope, intercept], atol=0.15)


# --------------------------------------------------------------------------------- ridge
@pytest.mark.parametrize("lam", [0.05, 0.5, 2.0])
@pytest.mark.parametrize("data", ["make_linear", "five_features"])
def test_l2_penalty_is_ridge_regression(backend, lam, data):
    """densefit minimizes mean((Xw - y)²) + λ‖w‖²; sklearn's Ridge minimizes ‖Xw - y‖² + α‖w‖².
    Multiplying the first by n gives the second with α = n λ: the same minimizer."""
    if data == "make_linear":
        X, y = datasets.make_linear(n=1000)
    else:
        rng = np.random.default_rng(3)
        X = rng.normal(size=(300, 5))
        y = X @ rng.normal(size=5) + 0.5 * rng.normal(size=300)
    n, d = X.shape
    ridge = Ridge(alpha=n * lam, fit_intercept=False, solver="cholesky").fit(X, y).coef_

    model = df.Sequential([df.Dense(1, use_bias=False, input_dim=d, kernel_regularizer=df.l2(lam))],
                          seed=0, dtype="float64", backend=backend)
    model.compile(loss="mse", optimizer=df.SGD(0.2))
    model.fit(X, y, epochs=400, batch_size=None, verbose=0)
    (W,) = model.get_weights()
    np.testing.assert_allclose(W[:, 0], ridge, rtol=0, atol=1e-8)
    # the penalty really acts: the ridge solution is not the OLS one, nor Ridge with α = λ
    assert np.max(np.abs(ridge - ols(X, y, intercept=False))) > 1e-3
    assert np.max(np.abs(ridge - Ridge(alpha=lam, fit_intercept=False).fit(X, y).coef_)) > 1e-3
    # and the reported loss includes it: mean squared error + λ‖w‖²
    expected = np.mean((X @ W[:, 0] - y) ** 2) + lam * np.sum(W**2)
    assert model.evaluate(X, y)["loss"] == pytest.approx(expected, rel=1e-10)


# --------------------------------------------------------------------------------- clusters (W1)
def test_relu_2_3_4_1_separates_the_clusters():
    """Workload W1: the 2-3-4-1 ReLU network trained by plain SGD (lr .01, batch 1, 150 epochs,
    150,000 steps) classifies the three-cluster data perfectly, which no line can.

    Runs once on the default ("auto", fastest) backend only: 150k per-sample steps take ~20 s on
    the numpy backend. With a compiled backend it checks several seeds.
    """
    X, y = datasets.make_clusters(n=1000)
    seeds = [0] if df.backend_info()["default"] == "numpy" else [0, 1, 2]
    for seed in seeds:
        model = df.Sequential([
            df.Dense(3, activation="relu", input_dim=2),
            df.Dense(4, activation="relu"),
            df.Dense(1, activation="sigmoid"),
        ], seed=seed)
        model.compile(loss="binary_crossentropy", optimizer=df.SGD(learning_rate=0.01), metrics=["accuracy"])
        history = model.fit(X, y, epochs=150, batch_size=1, verbose=0)
        assert model.state.step == 150_000
        assert history.history["accuracy"][-1] >= 0.99, (seed, history.history["accuracy"][-1])
        assert model.evaluate(X, y)["accuracy"] >= 0.99, seed


def test_no_line_separates_the_clusters(backend):
    """The contrast: logistic regression on the same clusters stays near the 2/3 majority class."""
    X, y = datasets.make_clusters(n=1000)
    model = df.Sequential([df.Dense(1, activation="sigmoid", input_dim=2)], seed=0, backend=backend)
    model.compile(loss="binary_crossentropy", optimizer=df.Adam(0.05), metrics=["accuracy"])
    model.fit(X, y, epochs=30, batch_size=32, verbose=0)
    best_line = LogisticRegression(C=1e6).fit(X, y).score(X, y)
    assert best_line < 0.75
    assert model.evaluate(X, y)["accuracy"] <= best_line + 0.02


# --------------------------------------------------------------------------------- moons
def test_logistic_regression_fails_on_moons_mlp_succeeds(backend):
    X, y = datasets.make_moons(n=200, noise=0.1)

    logistic = df.Sequential([df.Dense(1, activation="sigmoid", input_dim=2)], seed=0, backend=backend)
    logistic.compile(loss="binary_crossentropy", optimizer=df.Adam(0.05), metrics=["accuracy"])
    logistic.fit(X, y, epochs=200, batch_size=32, verbose=0)
    linear = logistic.evaluate(X, y)
    # trained to the best a line can do (same log-loss as an unregularized sklearn fit) ...
    reference = LogisticRegression(C=1e6).fit(X, y)
    p = reference.predict_proba(X)[:, 1]
    reference_loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert linear["loss"] == pytest.approx(reference_loss, abs=5e-3)
    # ... which is clearly not enough
    assert linear["accuracy"] < 0.92

    mlp = df.Sequential([
        df.Dense(16, activation="tanh", input_dim=2),
        df.Dense(16, activation="tanh"),
        df.Dense(1, activation="sigmoid"),
    ], seed=0, backend=backend)
    mlp.compile(loss="binary_crossentropy", optimizer=df.Adam(0.01), metrics=["accuracy"])
    mlp.fit(X, y, epochs=200, batch_size=32, verbose=0)
    assert mlp.evaluate(X, y)["accuracy"] >= 0.97
    # and it generalizes to fresh moons
    X_new, y_new = datasets.make_moons(n=400, noise=0.1, seed=1)
    assert mlp.evaluate(X_new, y_new)["accuracy"] >= 0.95
