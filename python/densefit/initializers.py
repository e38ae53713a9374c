"""Weight initializers. They draw, in float64, from the model's ``Generator(PCG64(seed))``.

``fan_in``/``fan_out`` are the kernel's input and output widths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Initializer:
    """Base class: ``__call__(rng, shape, fan_in, fan_out) -> float64 array``."""

    def __call__(self, rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"class_name": type(self).__name__, **self.__dict__}


@dataclass(frozen=True)
class Zeros(Initializer):
    """All zeros."""

    def __call__(self, rng, shape, fan_in, fan_out):
        return np.zeros(shape)


@dataclass(frozen=True)
class Ones(Initializer):
    """All ones."""

    def __call__(self, rng, shape, fan_in, fan_out):
        return np.ones(shape)


def _positive(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Normal(Initializer):
    """``N(0, std²)``."""

    std: float = 0.05

    def __post_init__(self):
        object.__setattr__(self, "std", _positive("std", self.std))

    def __call__(self, rng, shape, fan_in, fan_out):
        return rng.normal(0.0, self.std, shape)


@dataclass(frozen=True)
class Uniform(Initializer):
    """``U(-limit, limit)``."""

    limit: float = 0.05

    def __post_init__(self):
        object.__setattr__(self, "limit", _positive("limit", self.limit))

    def __call__(self, rng, shape, fan_in, fan_out):
        return rng.uniform(-self.limit, self.limit, shape)


@dataclass(frozen=True)
class GlorotUniform(Initializer):
    """``U(-a, a)`` with ``a = sqrt(6 / (fan_in + fan_out))``."""

    def __call__(self, rng, shape, fan_in, fan_out):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, shape)


@dataclass(frozen=True)
class HeNormal(Initializer):
    """``N(0, 2 / fan_in)``."""

    def __call__(self, rng, shape, fan_in, fan_out):
        return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)


@dataclass(frozen=True)
class HeUniform(Initializer):
    """``U(-a, a)`` with ``a = sqrt(6 / fan_in)``."""

    def __call__(self, rng, shape, fan_in, fan_out):
        limit = math.sqrt(6.0 / fan_in)
        return rng.uniform(-limit, limit, shape)


_BY_NAME: dict[str, type[Initializer]] = {
    "zeros": Zeros,
    "ones": Ones,
    "normal": Normal,
    "uniform": Uniform,
    "glorot_uniform": GlorotUniform,
    "he_normal": HeNormal,
    "he_uniform": HeUniform,
}
_BY_CLASS = {cls.__name__: cls for cls in _BY_NAME.values()}


def get(value, argument: str = "initializer") -> Initializer:
    """Accept an :class:`Initializer`, a name from the table above, or a saved config dict."""
    if isinstance(value, Initializer):
        return value
    if isinstance(value, str) and value.lower() in _BY_NAME:
        return _BY_NAME[value.lower()]()
    if isinstance(value, dict) and value.get("class_name") in _BY_CLASS:
        config = dict(value)
        return _BY_CLASS[config.pop("class_name")](**config)
    raise ValueError(f"{argument} must be an Initializer or one of {sorted(_BY_NAME)}; got {value!r}")
