"""The layer specs users put in a :class:`~densefit.Sequential`. They hold configuration only;
:mod:`densefit.plan` turns them into the arrays every backend consumes.

- :class:`Dense`: ``Z = X W + b`` with ``W`` of shape ``(in, out)``, then the activation.
- :class:`Activation`: an activation from :mod:`densefit.activations` on its own.
- :class:`Dropout`: inverted dropout; in training element ``(r, c)`` is kept iff
  ``uniform(seed, t, layer, r·width + c) >= rate`` and scaled by ``1 / (1 - rate)``; identity in inference.
- :class:`BatchNorm`: ``γ (x - μ_B) / sqrt(σ²_B + ε) + β`` with batch statistics in training
  (biased variance) and running statistics in inference; running statistics follow
  ``r = (1 - momentum) r + momentum · batch`` with the unbiased batch variance (PyTorch).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from . import activations, initializers, regularizers


class Layer:
    """Base class of the layer specs."""

    def get_config(self) -> dict:
        raise NotImplementedError


def _saved_alpha(activation: str, alpha: float) -> float | None:
    return alpha if activations.CODES[activation] in activations.DEFAULT_ALPHA else None


def _alpha(activation: str, alpha: float | None) -> float:
    code = activations.CODES[activation]
    if alpha is None:
        return activations.DEFAULT_ALPHA.get(code, 0.0)
    if code not in activations.DEFAULT_ALPHA:
        takes = sorted(a.name for a in activations.REGISTRY if a.alpha is not None)
        raise ValueError(f"alpha only applies to {' and '.join(takes)}, not {activation!r}")
    if not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    return float(alpha)


@dataclass
class Dense(Layer):
    """A fully connected layer ``activation(X W + b)``."""

    units: int
    activation: str | None = None
    use_bias: bool = True
    kernel_initializer: object = "glorot_uniform"
    bias_initializer: object = "zeros"
    kernel_regularizer: object = None
    input_dim: int | None = None
    alpha: float | None = None

    def __post_init__(self):
        if not isinstance(self.units, numbers.Integral) or isinstance(self.units, (bool, np.bool_)) or self.units < 1:
            raise ValueError(f"units must be an integer >= 1, got {self.units!r}")
        self.units = int(self.units)  # numpy integers too, stored as int (the config is JSON)
        if self.input_dim is not None:
            if (not isinstance(self.input_dim, numbers.Integral) or isinstance(self.input_dim, (bool, np.bool_))
                    or self.input_dim < 1):
                raise ValueError(f"input_dim must be an integer >= 1, got {self.input_dim!r}")
            self.input_dim = int(self.input_dim)
        self.activation = activations.canonical_name(self.activation)
        self.alpha = _alpha(self.activation, self.alpha)
        self.use_bias = bool(self.use_bias)
        self.kernel_initializer = initializers.get(self.kernel_initializer, "kernel_initializer")
        self.bias_initializer = initializers.get(self.bias_initializer, "bias_initializer")
        self.kernel_regularizer = regularizers.get(self.kernel_regularizer)

    def get_config(self) -> dict:
        return {
            "class_name": "Dense", "units": self.units, "activation": self.activation,
            "alpha": _saved_alpha(self.activation, self.alpha), "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer.get_config(),
            "bias_initializer": self.bias_initializer.get_config(),
            "kernel_regularizer": None if self.kernel_regularizer is None else self.kernel_regularizer.get_config(),
            "input_dim": self.input_dim,
        }


@dataclass
class Activation(Layer):
    """An activation on its own, e.g. after :class:`BatchNorm`."""

    activation: str
    alpha: float | None = None

    def __post_init__(self):
        self.activation = activations.canonical_name(self.activation)
        self.alpha = _alpha(self.activation, self.alpha)

    def get_config(self) -> dict:
        return {"class_name": "Activation", "activation": self.activation,
                "alpha": _saved_alpha(self.activation, self.alpha)}


@dataclass
class Dropout(Layer):
    """Inverted dropout with drop probability ``rate``."""

    rate: float

    def __post_init__(self):
        if not isinstance(self.rate, (int, float)) or isinstance(self.rate, bool) or not (0.0 <= self.rate < 1.0):
            raise ValueError(f"rate must be a number in [0, 1), got {self.rate!r}")
        self.rate = float(self.rate)

    def get_config(self) -> dict:
        return {"class_name": "Dropout", "rate": self.rate}


@dataclass
class BatchNorm(Layer):
    """Batch normalization over the features, PyTorch's ``BatchNorm1d`` convention."""

    momentum: float = 0.1
    epsilon: float = 1e-5

    def __post_init__(self):
        if not isinstance(self.momentum, (int, float)) or not (0.0 <= self.momentum <= 1.0):
            raise ValueError(f"momentum must be a number in [0, 1], got {self.momentum!r}")
        if not isinstance(self.epsilon, (int, float)) or not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise ValueError(f"epsilon must be a finite number > 0, got {self.epsilon!r}")
        self.momentum, self.epsilon = float(self.momentum), float(self.epsilon)

    def get_config(self) -> dict:
        return {"class_name": "BatchNorm", "momentum": self.momentum, "epsilon": self.epsilon}


_CLASSES = {cls.__name__: cls for cls in (Dense, Activation, Dropout, BatchNorm)}


def from_config(config: dict) -> Layer:
    """Rebuild a layer from :meth:`Layer.get_config`."""
    config = dict(config)
    return _CLASSES[config.pop("class_name")](**config)
