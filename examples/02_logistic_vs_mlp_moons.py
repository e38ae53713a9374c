"""A line cannot separate two moons; one hidden layer bends the boundary around them.

Data: two interleaving half circles (``datasets.make_moons``). Logistic regression (one sigmoid
unit) against an MLP with two hidden layers of 16 tanh units, both trained with Adam on the
binary cross-entropy. Figure: the two decision boundaries side by side, with their training and
test accuracies (test: fresh moons from another seed).
"""

import matplotlib.pyplot as plt

import densefit as df
from densefit import datasets, plot
from _common import parse_args, report, save

args = parse_args(__doc__)
epochs = 100 if args.quick else 200
X, y = datasets.make_moons(n=200, noise=0.1, seed=0)
X_test, y_test = datasets.make_moons(n=400, noise=0.1, seed=1)

models = {
    "logistic regression": (df.Sequential([df.Dense(1, activation="sigmoid", input_dim=2)], seed=0),
                            df.Adam(0.05)),
    "MLP 2-16-16-1 (tanh)": (df.Sequential([df.Dense(16, activation="tanh", input_dim=2),
                                            df.Dense(16, activation="tanh"),
                                            df.Dense(1, activation="sigmoid")], seed=0),
                             df.Adam(0.01)),
}

fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
for (name, (model, optimizer)), ax, key in zip(models.items(), axes, ["logistic", "mlp"]):
    model.compile(loss="binary_crossentropy", optimizer=optimizer, metrics=["accuracy"])
    model.fit(X, y, epochs=epochs, batch_size=32, verbose=0)
    train, test = model.evaluate(X, y)["accuracy"], model.evaluate(X_test, y_test)["accuracy"]
    report(**{f"{key}_train_accuracy": train, f"{key}_test_accuracy": test})
    plot.decision_boundary(model, X, y, ax=ax)
    ax.set_title(f"{name}\ntrain accuracy {train:.1%}, test {test:.1%}")
save(fig, args, "logistic_vs_mlp_moons.png")
