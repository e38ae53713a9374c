"""Dropout and batch normalization against overfitting.

Data: only 80 noisy moons to train on, 1,000 fresh ones to validate on. A 2-128-128-1 ReLU
network trained by Adam (batch 16) memorizes the training set: its training loss goes to zero
while the validation loss climbs. The same network with ``Dropout(0.5)`` after each hidden
layer, and with ``BatchNorm`` before each ReLU, overfits much less. Figure: the training and
validation loss and accuracy per epoch of the three (training values are those of training
mode, with dropout active and batch statistics). Printed: final losses, validation accuracy.
"""

import matplotlib.pyplot as plt

import densefit as df
from densefit import datasets, plot
from _common import parse_args, report, save

args = parse_args(__doc__)
epochs = 150 if args.quick else 300
X, y = datasets.make_moons(n=80, noise=0.35, seed=0)
X_val, y_val = datasets.make_moons(n=1000, noise=0.35, seed=1)

networks = {
    "plain": [df.Dense(128, activation="relu", input_dim=2), df.Dense(128, activation="relu")],
    "dropout": [df.Dense(128, activation="relu", input_dim=2), df.Dropout(0.5),
                df.Dense(128, activation="relu"), df.Dropout(0.5)],
    "batchnorm": [df.Dense(128, input_dim=2), df.BatchNorm(), df.Activation("relu"),
                  df.Dense(128), df.BatchNorm(), df.Activation("relu")],
}

fig, axes = plt.subplots(2, 3, figsize=(14, 7), sharey="row", layout="constrained")
for (name, hidden), column in zip(networks.items(), axes.T):
    model = df.Sequential([*hidden, df.Dense(1, activation="sigmoid")], seed=0)
    model.compile(loss="binary_crossentropy", optimizer=df.Adam(0.01), metrics=["accuracy"])
    history = model.fit(X, y, epochs=epochs, batch_size=16, validation_data=(X_val, y_val), verbose=0)
    logs = {key: values[-1] for key, values in history.history.items()}
    report(**{f"{name}_train_loss": logs["loss"], f"{name}_val_loss": logs["val_loss"],
              f"{name}_val_accuracy": logs["val_accuracy"]})
    plot.history(history, metrics=["accuracy"], ax=column)  # loss above, accuracy below
    column[0].set_title(f"{name}: loss")
    column[1].set_title(f"{name}: accuracy (validation {logs['val_accuracy']:.1%})")
axes[0, 0].set_yscale("linear")  # one linear scale for the three loss panels
save(fig, args, "dropout_batchnorm_overfitting.png")
