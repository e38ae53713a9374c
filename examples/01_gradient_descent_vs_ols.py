"""Gradient descent finds the least-squares line.

Data: y = 6 + 4x + noise (``datasets.make_linear``). A linear model (one Dense unit, no
activation) trained by full-batch gradient descent on the mean squared error converges to the
ordinary-least-squares solution that ``numpy.linalg.lstsq`` computes in closed form. Figure:
the data with both lines, and the loss per epoch (log scale) falling to the OLS residual.
"""

import numpy as np
import matplotlib.pyplot as plt

import densefit as df
from densefit import datasets, plot
from _common import parse_args, report, save

args = parse_args(__doc__)
X, y = datasets.make_linear(n=200 if args.quick else 1000, seed=0)

# closed form: least squares on [x, 1]
ols_slope, ols_intercept = np.linalg.lstsq(np.c_[X, np.ones(len(X))], y, rcond=None)[0]

# gradient descent: every epoch is one step on the whole data set (batch_size=None)
model = df.Sequential([df.Dense(1, input_dim=1)], seed=0, dtype="float64")
model.compile(loss="mse", optimizer=df.SGD(learning_rate=0.4))
history = model.fit(X, y, epochs=300, batch_size=None, shuffle=False, verbose=0)
W, b = model.get_weights()

report(gd_slope=float(W[0, 0]), gd_intercept=float(b[0]),
       ols_slope=float(ols_slope), ols_intercept=float(ols_intercept),
       final_loss=history.history["loss"][-1])

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
left.scatter(X[:, 0], y, s=6, alpha=0.4, color="gray", label="data")
grid = np.array([0.0, 2.0])
left.plot(grid, ols_intercept + ols_slope * grid, lw=4, alpha=0.5, label="OLS (lstsq)")
left.plot(grid, model.predict(grid[:, None])[:, 0], "k--", label="gradient descent")
left.set(xlabel="x", ylabel="y", title=f"y = {b[0]:.3f} + {W[0, 0]:.3f} x")
left.legend()
plot.history(history, ax=right)
ols_mse = float(np.mean((ols_intercept + ols_slope * X[:, 0] - y) ** 2))
right.axhline(ols_mse, color="gray", ls=":", label=f"OLS residual {ols_mse:.3f}")
right.legend()
right.set_title("mean squared error per epoch")
save(fig, args, "gradient_descent_vs_ols.png")
