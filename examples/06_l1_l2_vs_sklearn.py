"""An L2 penalty is ridge regression, an L1 penalty is the lasso.

Data: y = 1 + X w + noise with 8 standard normal features, only some of them relevant. A linear
model (one Dense unit) with ``kernel_regularizer=df.l2(λ)`` minimizes ``mean((Xw + b - y)²) +
λ‖w‖²``: scikit-learn's ``Ridge(alpha=n λ)`` (which minimizes ``‖Xw + b - y‖² + α‖w‖²``) has the
same minimizer. With ``df.l1(λ)`` it minimizes ``mean(...) + λ‖w‖₁``, which is twice
``Lasso(alpha=λ/2)``'s objective ``‖Xw + b - y‖² / (2n) + α‖w‖₁``. Both are trained by
full-batch gradient descent; the L1 run decays its learning rate so that the subgradient steps
settle on the lasso's zeros. Figure: the coefficients of each fit next to the true ones and OLS.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import Lasso, LinearRegression, Ridge

import densefit as df
from _common import parse_args, report, save

args = parse_args(__doc__)
epochs = 1000 if args.quick else 3000
rng = np.random.default_rng(0)
n, true_coef = 200, np.array([3.0, -2.0, 1.5, 0.0, 0.0, 0.5, 0.0, 0.0])
X = rng.normal(size=(n, len(true_coef)))
y = 1.0 + X @ true_coef + rng.normal(size=n)
lam_l2, lam_l1 = 0.1, 0.2


def densefit_linear(regularizer, learning_rate):
    model = df.Sequential([df.Dense(1, input_dim=X.shape[1], kernel_regularizer=regularizer)],
                          seed=0, dtype="float64")
    model.compile(loss="mse", optimizer=df.SGD(learning_rate))
    model.fit(X, y, epochs=epochs, batch_size=None, verbose=0)
    return model.get_weights()[0][:, 0]


fits = {
    "L2": (densefit_linear(df.l2(lam_l2), 0.1),
           Ridge(alpha=n * lam_l2).fit(X, y).coef_, f"Ridge(alpha={n * lam_l2:g})"),
    "L1": (densefit_linear(df.l1(lam_l1), df.ExponentialDecay(0.1, decay=5 / epochs)),
           Lasso(alpha=lam_l1 / 2).fit(X, y).coef_, f"Lasso(alpha={lam_l1 / 2:g})"),
}
ols = LinearRegression().fit(X, y).coef_
for name, (ours, theirs, _) in fits.items():
    report(**{f"{name.lower()}_max_coef_difference": float(np.max(np.abs(ours - theirs))),
              f"{name.lower()}_zero_coefs_sklearn": int(np.sum(theirs == 0)),
              f"{name.lower()}_near_zero_coefs_densefit": int(np.sum(np.abs(ours) < 1e-3))})

fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
index, width = np.arange(len(true_coef)), 0.2
for ax, (name, (ours, theirs, sklearn_name)), lam in zip(axes, fits.items(), [lam_l2, lam_l1]):
    for k, (coef, label) in enumerate([(true_coef, "true"), (ols, "OLS"), (theirs, f"scikit-learn {sklearn_name}"),
                                       (ours, f"densefit {name.lower()}({lam:g})")]):
        ax.bar(index + (k - 1.5) * width, coef, width, label=label)
    ax.axhline(0, color="black", lw=0.5)
    ax.set(xticks=index, xticklabels=[f"w{i}" for i in index], title=f"{name} penalty")
    ax.legend(fontsize=8)
save(fig, args, "l1_l2_vs_sklearn.png")
