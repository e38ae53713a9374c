"""Kernel regularizers (Keras convention), applied to Dense kernels only.

``l1(λ)`` adds ``λ Σ|W|`` to the loss (gradient ``λ sign(W)``, ``sign(0) = 0``);
``l2(λ)`` adds ``λ Σ W²`` (gradient ``2 λ W``); ``l1_l2(λ1, λ2)`` adds both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Regularizer:
    """A penalty ``l1 Σ|W| + l2 Σ W²`` on a Dense kernel."""

    l1: float = 0.0
    l2: float = 0.0

    def __post_init__(self) -> None:
        for name in ("l1", "l2"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"{name} must be a float, got {type(value).__name__}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        object.__setattr__(self, "l1", float(self.l1))
        object.__setattr__(self, "l2", float(self.l2))

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


def l1(l1: float = 0.01) -> Regularizer:  # noqa: E741 - Keras' name
    """``λ Σ|W|``."""
    return Regularizer(l1=l1)


def l2(l2: float = 0.01) -> Regularizer:
    """``λ Σ W²``."""
    return Regularizer(l2=l2)


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> Regularizer:
    """``λ1 Σ|W| + λ2 Σ W²``."""
    return Regularizer(l1=l1, l2=l2)


def get(value) -> Regularizer | None:
    """Accept ``None``, a :class:`Regularizer`, ``"l1"``, ``"l2"`` or ``"l1_l2"`` (defaults)."""
    if value is None or isinstance(value, Regularizer):
        return value
    table = {"l1": l1, "l2": l2, "l1_l2": l1_l2}
    if isinstance(value, str) and value in table:
        return table[value]()
    if isinstance(value, dict):
        return Regularizer(**value)
    raise ValueError(f"kernel_regularizer must be None, a Regularizer or one of {sorted(table)}; got {value!r}")
