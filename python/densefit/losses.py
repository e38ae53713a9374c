"""Loss names and codes. Every loss is computed from the logits ``z`` of the last layer.

- ``mse``: ``mean((ŷ - y)²)`` over all elements; gradient ``2 (ŷ - y) / (m K)``.
- ``binary_crossentropy``: ``mean(max(z, 0) - z y + log1p(exp(-|z|)))`` over all elements, the
  output activation is sigmoid; gradient ``(sigmoid(z) - y) / (m K)``.
- ``categorical_crossentropy``: ``-mean(Σ_k y_k log softmax(z)_k)`` over the batch, the output
  activation is softmax; labels are integer classes ``(m,)`` or one-hot ``(m, K)``;
  gradient ``(softmax(z) - y) / m``.

The gradient with respect to the logits is always this fused form, never the chain rule
through the output activation's own derivative.
"""

from __future__ import annotations

MSE, BINARY_CROSSENTROPY, CATEGORICAL_CROSSENTROPY = range(3)

CODES: dict[str, int] = {
    "mse": MSE,
    "mean_squared_error": MSE,
    "binary_crossentropy": BINARY_CROSSENTROPY,
    "categorical_crossentropy": CATEGORICAL_CROSSENTROPY,
    "sparse_categorical_crossentropy": CATEGORICAL_CROSSENTROPY,
}

CANONICAL: dict[int, str] = {
    MSE: "mse",
    BINARY_CROSSENTROPY: "binary_crossentropy",
    CATEGORICAL_CROSSENTROPY: "categorical_crossentropy",
}


def loss_code(name: str) -> int:
    """Return the integer code of loss ``name``; raise ``ValueError`` for unknown names."""
    if not isinstance(name, str):
        raise TypeError(f"loss must be a string name, got {type(name).__name__}")
    key = name.lower()
    if key not in CODES:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(set(CANONICAL.values()))}")
    return CODES[key]
