"""The "tutorial" numpy peer: the mini-batch training loop of the teaching material, written the
way a tutorial writes it (one list of weight arrays, ``@`` for every product, fresh temporaries
each step). densefit's numpy backend is the same idea done carefully; this peer is the yardstick
it must not fall behind. Not part of densefit.

Size legend: ``m`` batch rows, ``K`` outputs.
"""

from __future__ import annotations

import numpy as np

MSE, BCE, CCE = "mse", "binary_crossentropy", "categorical_crossentropy"


def _dlogits(z: np.ndarray, y: np.ndarray, loss: str) -> np.ndarray:
    """d(mean loss)/dz of a batch of logits ``z`` (m × K) against targets ``y`` (m × K)."""
    m, K = z.shape
    if loss == MSE:
        return 2.0 * (z - y) / (m * K)
    if loss == BCE:
        return (1.0 / (1.0 + np.exp(-z)) - y) / (m * K)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True) - y) / m


def train(X: np.ndarray, Y: np.ndarray, weights: list, loss: str, optimizer: str, lr: float, momentum: float,
          batch_size: int, epochs: int) -> list:
    """Train ``weights`` (``[W0, b0, W1, b1, ...]``, relu hidden layers) in place over ``0..n-1``
    in slices of ``batch_size``; SGD (torch's momentum) or Adam (β 0.9/0.999, ε 1e-8)."""
    slots = [np.zeros_like(w) for w in weights]
    second = [np.zeros_like(w) for w in weights]
    t = 0
    L = len(weights) // 2
    for _ in range(epochs):
        for start in range(0, len(X), batch_size):
            xb, yb = X[start:start + batch_size], Y[start:start + batch_size]
            acts = [xb]
            for l in range(L):
                z = acts[-1] @ weights[2 * l] + weights[2 * l + 1]
                acts.append(np.maximum(z, 0) if l < L - 1 else z)
            dz = _dlogits(acts[-1], yb, loss)
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
    return weights
