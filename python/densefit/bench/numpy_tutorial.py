"""The "tutorial" numpy peer: the mini-batch training loop of the teaching material, written the
way a tutorial writes it (one list of weight arrays, ``@`` for every product, fresh temporaries
each step). densefit's numpy backend is the same idea done carefully; this peer is the yardstick
it must not fall behind. It records the epoch's training loss as the tutorial does for its loss
curves (densefit's ``fit`` reports it, and its accuracy, every epoch). Not part of densefit.

Size legend: ``m`` batch rows, ``K`` outputs.
"""

from __future__ import annotations

import numpy as np

from .workloads import batch_rows

MSE, BCE, CCE = "mse", "binary_crossentropy", "categorical_crossentropy"


def _loss_and_dlogits(z: np.ndarray, y: np.ndarray, loss: str) -> tuple[float, np.ndarray]:
    """The batch's mean loss (for the loss curve) and d(mean loss)/dz, for logits ``z`` (m × K)
    against targets ``y`` (m × K)."""
    m, K = z.shape
    if loss == MSE:
        return float(np.mean((z - y) ** 2)), 2.0 * (z - y) / (m * K)
    if loss == BCE:
        p = 1.0 / (1.0 + np.exp(-z))
        value = -np.mean(y * np.log(p + 1e-7) + (1 - y) * np.log(1 - p + 1e-7))
        return float(value), (p - y) / (m * K)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    return float(-np.mean(np.sum(y * np.log(p + 1e-7), axis=1))), (p - y) / m


def train(X: np.ndarray, Y: np.ndarray, weights: list, loss: str, optimizer: str, lr: float, momentum: float,
          batch_size: int, epochs: int, orders: np.ndarray | None = None) -> list:
    """Train ``weights`` (``[W0, b0, W1, b1, ...]``, relu hidden layers) in place over ``0..n-1``,
    or epoch ``e`` over ``orders[e]`` (``orders``: ``(epochs, n)``), in slices of ``batch_size``;
    SGD (torch's momentum) or Adam (β 0.9/0.999, ε 1e-8). Like the tutorial (and like densefit's
    ``fit``), it records each epoch's mean training loss."""
    slots = [np.zeros_like(w) for w in weights]
    second = [np.zeros_like(w) for w in weights]
    t = 0
    L = len(weights) // 2
    curve = []
    for e in range(epochs):
        total = 0.0
        for start in range(0, len(X), batch_size):
            rows = batch_rows(None if orders is None else orders[e], start, start + batch_size)
            xb, yb = X[rows], Y[rows]
            acts = [xb]
            for l in range(L):
                z = acts[-1] @ weights[2 * l] + weights[2 * l + 1]
                acts.append(np.maximum(z, 0) if l < L - 1 else z)
            value, dz = _loss_and_dlogits(acts[-1], yb, loss)
            total += value * len(xb)
            grads = [None] * len(weights)
            for l in range(L - 1, -1, -1):
                grads[2 * l] = acts[l].T @ dz
                grads[2 * l + 1] = dz.sum(axis=0)
                if l > 0:
                    dz = (dz @ weights[2 * l].T) * (acts[l] > 0)
            t += 1
            for w, g, s, v in zip(weights, grads, slots, second):
                if optimizer == "adam":
                    s[...] = 0.9 * s + 0.1 * g
                    v[...] = 0.999 * v + 0.001 * g * g
                    w -= lr * (s / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
                else:
                    s[...] = momentum * s + g if t > 1 else g
                    w -= lr * s
        curve.append(total / len(X))
    return weights
