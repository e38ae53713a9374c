"""Activation names and the integer codes every backend dispatches on.

The formulas (``x`` the input, ``y`` the output):

========== ===================================================== ==========================
name       forward                                               derivative used backward
========== ===================================================== ==========================
identity   ``y = x``                                             ``1``
sigmoid    ``y = 1 / (1 + exp(-x))``                             ``y (1 - y)``
tanh       ``y = tanh(x)``                                       ``1 - y²``
relu       ``y = max(x, 0)``                                     ``x > 0``
leaky_relu ``y = x if x > 0 else α x`` (α = 0.01 by default)     ``1 if x > 0 else α``
elu        ``y = x if x > 0 else α (exp(x) - 1)`` (α = 1)        ``1 if x > 0 else y + α``
softplus   ``y = log1p(exp(-|x|)) + max(x, 0)``                  ``sigmoid(x)``
gelu       ``0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))``        the exact derivative of it
softmax    ``exp(x - max) / Σ exp(x - max)`` over the last axis  output only, fused with the loss
========== ===================================================== ==========================
"""

from __future__ import annotations

IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, ELU, SOFTPLUS, GELU, SOFTMAX = range(9)

CODES: dict[str, int] = {
    "identity": IDENTITY,
    "linear": IDENTITY,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "elu": ELU,
    "softplus": SOFTPLUS,
    "gelu": GELU,
    "softmax": SOFTMAX,
}

#: The parameter ``α`` each activation uses unless the user gives one.
DEFAULT_ALPHA: dict[int, float] = {LEAKY_RELU: 0.01, ELU: 1.0}


def canonical_name(name: str | None) -> str:
    """Return the canonical activation name (``None`` and ``"linear"`` are ``"identity"``)."""
    if name is None:
        return "identity"
    if not isinstance(name, str):
        raise TypeError(f"activation must be a string name or None, got {type(name).__name__}")
    key = name.lower()
    if key not in CODES:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(CODES)}")
    return "identity" if key == "linear" else key
