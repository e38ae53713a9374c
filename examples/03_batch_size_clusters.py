"""Stochastic, mini-batch and full-batch gradient descent on the three-cluster data.

Data: three Gaussian clusters, the middle one the other class (``datasets.make_clusters``),
learnt by the 2-3-4-1 ReLU network of the teaching material (benchmark workloads W1 and W2).
Batch size 1 (SGD) takes n noisy steps per epoch, a mini-batch of 32 takes n/32 and full-batch
gradient descent one exact step, each with a learning rate suited to it. Figure: the training
loss per epoch (SGD gets there in the fewest epochs) and per optimizer step (the larger batches
make better use of each step).
"""

import math

import matplotlib.pyplot as plt
import numpy as np

import densefit as df
from densefit import datasets, plot
from _common import parse_args, report, save

args = parse_args(__doc__)
n, epochs = (300, 50) if args.quick else (1000, 150)
X, y = datasets.make_clusters(n=n, seed=0)

runs = {"SGD (batch 1, lr 0.01)": (1, 0.01),
        "mini-batch (32, lr 0.1)": (32, 0.1),
        "full batch (lr 0.5)": (n, 0.5)}
histories = []
for name, (batch_size, lr) in runs.items():
    model = df.Sequential([df.Dense(3, activation="relu", input_dim=2),
                           df.Dense(4, activation="relu"),
                           df.Dense(1, activation="sigmoid")], seed=0)
    model.compile(loss="binary_crossentropy", optimizer=df.SGD(lr), metrics=["accuracy"])
    # the notebook's order: no shuffling
    histories.append(model.fit(X, y, epochs=epochs, batch_size=batch_size, shuffle=False, verbose=0))
    key = f"batch_{batch_size if batch_size < n else 'full'}"
    report(**{f"{key}_final_loss": histories[-1].history["loss"][-1],
              f"{key}_accuracy": histories[-1].history["accuracy"][-1]})

fig, (per_epoch, per_step) = plt.subplots(1, 2, figsize=(11, 4))
plot.history(histories, labels=list(runs), ax=per_epoch)
per_epoch.set(yscale="log", title="training loss per epoch")
for history, (name, (batch_size, _)) in zip(histories, runs.items()):
    steps = (np.arange(epochs) + 1) * math.ceil(n / batch_size)
    per_step.plot(steps, history.history["loss"], label=name)
per_step.set(xscale="log", yscale="log", xlabel="optimizer steps", ylabel="loss",
             title="training loss per optimizer step")
per_step.legend()
save(fig, args, "batch_size_clusters.png")
