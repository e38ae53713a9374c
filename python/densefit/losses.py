"""The losses: one registry (:data:`REGISTRY`) of names, codes and properties, and the elementwise
formulas written once. Every loss is computed from the logits ``z`` of the last layer.

- ``mse``: ``mean((ŷ - y)²)`` over all elements; gradient ``2 (ŷ - y) / (m K)``.
- ``binary_crossentropy``: ``mean(max(z, 0) - z y + log1p(exp(-|z|)))`` over all elements, the
  output activation is sigmoid; gradient ``(sigmoid(z) - y) / (m K)``.
- ``categorical_crossentropy``: ``-mean(Σ_k y_k log softmax(z)_k)`` over the batch, the output
  activation is softmax; labels are integer classes ``(m,)`` or one-hot ``(m, K)``;
  gradient ``(softmax(z) - y) / m``.

The gradient with respect to the logits is always this fused form, never the chain rule
through the output activation's own derivative.

The elementwise formulas (``term``: one element's loss before the mean, ``dz``: the gradient of
the row's mean over its ``K`` outputs, before the batch's row scale ``1/m`` or ``wᵢ / Σw``) are
in the numpy subset that means the same on arrays (the numpy backend) and scalars (for numba to
compile, element by element, into its loops: ``backends/numba_.py``), as in :mod:`densefit.activations`
(whose :func:`~densefit.activations.exp` and :func:`~densefit.activations.log1p` they call: numba binds those
to its vectorizable forms).
Categorical cross-entropy is a row-wise formula (a max and a sum over the row) that each backend
writes in its own shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import activations as A


def mse_term(z, y, T):
    """``(z - y)²`` in float64 (of the difference in ``T``)."""
    diff = np.float64(z - y)
    return diff * diff


def mse_dz(z, y, K, T):
    """The gradient of the row's mean over its ``K`` outputs (before the batch's row scale)."""
    return (z - y) * T(2 / K)


def binary_crossentropy_term(z, y, T):
    """In float64 (of the term in ``T``)."""
    return np.float64(np.maximum(z, T(0)) - z * y + A.log1p(A.exp(-np.abs(z))))


def binary_crossentropy_dz(z, y, K, T):
    return (A.sigmoid(z, T) - y) * T(1 / K)


def binary_crossentropy_hit(z, y, T):
    """Whether the logit predicts the target: ``(z > 0) == (y > 0.5)``."""
    return (z > T(0)) == (y > T(0.5))


@dataclass(frozen=True)
class Spec:
    """One loss. ``output``: the output activation it is fused with (its code); ``correct``: what
    the correct count counts, ``"elements"`` (those where ``hit``), ``"rows"`` or ``"none"``;
    ``term``/``dz``/``hit``: the elementwise formulas (``None`` for the row-wise categorical
    cross-entropy; ``hit`` also for a loss that counts nothing)."""

    name: str
    code: int
    output: int
    correct: str
    term: Callable | None = None
    dz: Callable | None = None
    hit: Callable | None = None
    aliases: tuple[str, ...] = ()


REGISTRY: tuple[Spec, ...] = (
    Spec("mse", 0, A.IDENTITY, "none", mse_term, mse_dz, aliases=("mean_squared_error",)),
    Spec("binary_crossentropy", 1, A.SIGMOID, "elements", binary_crossentropy_term, binary_crossentropy_dz,
         binary_crossentropy_hit),
    Spec("categorical_crossentropy", 2, A.SOFTMAX, "rows", aliases=("sparse_categorical_crossentropy",)),
)
assert [s.code for s in REGISTRY] == list(range(len(REGISTRY))), "codes are the registry's positions"
assert all((s.correct == "elements") == (s.hit is not None) for s in REGISTRY), "hit is what counts elements"

MSE, BINARY_CROSSENTROPY, CATEGORICAL_CROSSENTROPY = (s.code for s in REGISTRY)

CODES: dict[str, int] = {name: s.code for s in REGISTRY for name in (s.name, *s.aliases)}

CANONICAL: dict[int, str] = {s.code: s.name for s in REGISTRY}


def spec(code) -> Spec:
    """The :class:`Spec` of ``code``; ``ValueError`` for a code no loss has."""
    if isinstance(code, (int, np.integer)) and not isinstance(code, bool) and 0 <= code < len(REGISTRY):
        return REGISTRY[code]
    raise ValueError(f"unknown loss code {code!r}")


def loss_code(name: str) -> int:
    """Return the integer code of loss ``name``; raise ``ValueError`` for unknown names."""
    if not isinstance(name, str):
        raise TypeError(f"loss must be a string name, got {type(name).__name__}")
    key = name.lower()
    if key not in CODES:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(set(CANONICAL.values()))}")
    return CODES[key]
