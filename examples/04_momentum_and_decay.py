"""Momentum speeds gradient descent up; a decaying learning rate calms it down at the end.

Data: noisy moons, standardized (``datasets.make_moons``, ``datasets.standardize``), learnt by a
2-16-16-1 ReLU network with mini-batch SGD (batch 32). Four optimizers: plain SGD, SGD with
momentum 0.9, and momentum with two learning-rate schedules from ``densefit.schedules``
(exponential decay ``lr0 (1 - d)^epoch`` and step decay ``lr0 factor^(epoch // every)``).
Figure: the training loss per epoch, and the learning rate each epoch used (the History
records it). Printed: the final loss and its jitter over the last epochs.
"""

import matplotlib.pyplot as plt
import numpy as np

import densefit as df
from densefit import datasets, plot
from _common import parse_args, report, save

args = parse_args(__doc__)
n, epochs = (300, 60) if args.quick else (500, 100)
X, y = datasets.make_moons(n=n, noise=0.2, seed=0)
X, _ = datasets.standardize(X)

optimizers = {
    "sgd": ("SGD lr 0.05", df.SGD(0.05)),
    "momentum": ("+ momentum 0.9", df.SGD(0.05, momentum=0.9)),
    "exponential": ("+ momentum, exponential decay 3 %/epoch",
                    df.SGD(df.ExponentialDecay(0.05, decay=0.03), momentum=0.9)),
    "step": ("+ momentum, lr 0.1 halved every 25 epochs",
             df.SGD(df.StepDecay(0.1, every=25, factor=0.5), momentum=0.9)),
}
histories = []
for key, (label, optimizer) in optimizers.items():
    model = df.Sequential([df.Dense(16, activation="relu", input_dim=2),
                           df.Dense(16, activation="relu"),
                           df.Dense(1, activation="sigmoid")], seed=0)
    model.compile(loss="binary_crossentropy", optimizer=optimizer)
    histories.append(model.fit(X, y, epochs=epochs, batch_size=32, verbose=0))
    loss = histories[-1].history["loss"]
    report(**{f"{key}_final_loss": loss[-1], f"{key}_jitter": float(np.std(loss[-epochs // 5:]))})

labels = [label for label, _ in optimizers.values()]
fig, (losses, rates) = plt.subplots(1, 2, figsize=(11, 4))
plot.history(histories, labels=labels, ax=losses)
losses.set_title("training loss per epoch")
for history, label in zip(histories, labels):
    rates.plot(np.asarray(history.epoch) + 1, history.history["learning_rate"], label=label)
rates.set(xlabel="epoch", ylabel="learning rate", title="learning rate per epoch")
rates.legend(fontsize=8)
losses.legend(fontsize=8)
save(fig, args, "momentum_and_decay.png")
