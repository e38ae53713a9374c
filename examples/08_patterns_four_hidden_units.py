"""Four hidden units, four half-planes: what one hidden layer can draw.

Data: points uniform on the square [-1, 1]², labelled 1 inside a shape
(``datasets.make_patterns``): a diamond, a circle, a square and a right angle (an L-shaped
band). Each is learnt by a 2-4-1 network: four ReLU hidden units and a sigmoid output, trained
with Adam. Each hidden unit is zero on one side of a line (dashed in the figure) and linear on
the other, so the network's logit is piecewise linear and the decision boundary is a polygon
that can only bend where it crosses one of the four lines: enough for the four corners of the
diamond and the square, a polygon around the circle, a compromise for the L. Figure: the four
decision boundaries (predicted probability, 0.5 contour in black, misclassified points crossed
out) in a 2x2 grid with the hidden units' lines. Printed: each training accuracy.
"""

import matplotlib.pyplot as plt
import numpy as np

import densefit as df
from densefit import datasets, plot
from _common import parse_args, report, save

args = parse_args(__doc__)
n, epochs = (300, 150) if args.quick else (500, 300)
patterns = {"diamond": "diamond", "circle": "circle", "square": "square",
            "right angle": "thick_right_angle"}

fig, axes = plt.subplots(2, 2, figsize=(10, 9), layout="constrained")
for (title, kind), ax in zip(patterns.items(), axes.flat):
    X, y = datasets.make_patterns(kind, n=n, seed=0)
    model = df.Sequential([df.Dense(4, activation="relu", input_dim=2),
                           df.Dense(1, activation="sigmoid")], seed=0)
    model.compile(loss="binary_crossentropy", optimizer=df.Adam(0.03), metrics=["accuracy"])
    model.fit(X, y, epochs=epochs, batch_size=32, verbose=0)
    accuracy = model.evaluate(X, y)["accuracy"]
    report(**{f"{kind}_accuracy": accuracy})

    plot.decision_boundary(model, X, y, ax=ax)
    W, b = model.get_weights()[:2]
    x1 = np.linspace(-1.2, 1.2, 2)
    for w, bias in zip(W.T, b):  # hidden unit: w·x + bias = 0
        if abs(w[1]) > abs(w[0]):
            ax.plot(x1, -(w[0] * x1 + bias) / w[1], "k--", lw=0.8)
        else:
            ax.plot(-(w[1] * x1 + bias) / w[0], x1, "k--", lw=0.8)
    ax.set(xlim=(-1.1, 1.1), ylim=(-1.1, 1.1), aspect="equal",
           title=f"{title}: accuracy {accuracy:.1%}")
    ax.get_legend().remove()  # the colours and crosses are explained once, in the docstring
save(fig, args, "patterns_four_hidden_units.png")
