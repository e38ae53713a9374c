"""The learning rate and the batch size go together.

Data: noisy moons, with fresh moons from another seed as validation data. A 2-16-16-1 ReLU
network trained by plain SGD for a fixed number of epochs, over a grid of learning rates and
batch sizes, with ``densefit.sweep``. Figure: a heat map of the final validation loss. The good
runs lie on a diagonal: a larger batch takes fewer steps per epoch and wants a larger learning
rate; too small a rate for the batch has not converged yet, too large a one for a small batch
is too noisy.
"""

import densefit as df
from densefit import datasets, plot
from densefit.sweep import sweep
from _common import parse_args, report, save

args = parse_args(__doc__)
if args.quick:
    n, epochs = 300, 10
    grid = {"learning_rate": [0.01, 0.1, 1.0], "batch_size": [4, 32, 256]}
else:
    n, epochs = 1000, 20
    grid = {"learning_rate": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0],
            "batch_size": [1, 4, 16, 64, 256, 1000]}
X, y = datasets.make_moons(n=n, noise=0.2, seed=0)
X_val, y_val = datasets.make_moons(n=n, noise=0.2, seed=1)


def build(learning_rate):  # no seed parameter: every run starts from the same weights (seed=0)
    model = df.Sequential([df.Dense(16, activation="relu", input_dim=2),
                           df.Dense(16, activation="relu"),
                           df.Dense(1, activation="sigmoid")], seed=0)
    model.compile(loss="binary_crossentropy", optimizer=df.SGD(learning_rate))
    return model


# batch_size is a fit argument, learning_rate goes to build()
result = sweep(build, X, y, grid, epochs=epochs, validation_data=(X_val, y_val), verbose=0)
best = min(result, key=lambda row: row["final_val_loss"])  # (result.best ranks by best_val_loss)
report(runs=len(result), best_learning_rate=best["learning_rate"],
       best_batch_size=best["batch_size"], best_final_val_loss=best["final_val_loss"])

fig = plot.sweep(result, x="learning_rate", y="batch_size", metric="final_val_loss")
fig.suptitle(f"moons, 2-16-16-1 ReLU, {epochs} epochs of SGD")
save(fig, args, "learning_rate_batch_size_grid.png")
