"""Learning-rate schedules, evaluated once at the start of each epoch ``e`` (counted from 0).

``lr(e)`` for each schedule, ``lr0`` its initial learning rate:

- :class:`ExponentialDecay`: ``lr0 (1 - decay)^e``
- :class:`StepDecay`: ``lr0 factor^⌊e / every⌋``
- :class:`InverseTimeDecay`: ``lr0 / (1 + k e)``
- :class:`CosineDecay`: ``lr_min + (lr0 - lr_min) (1 + cos(π min(e, T) / T)) / 2``
- :class:`LambdaSchedule`: ``fn(e, lr0)``, any user callable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np


def _check(name: str, value, low: float | None = None, high: float | None = None, strict_low: bool = False) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (strict_low and value == low)):
        raise ValueError(f"{name} must be {'>' if strict_low else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


class Schedule:
    """A learning rate as a function of the epoch."""

    initial_learning_rate: float

    def __call__(self, epoch: int) -> float:
        raise NotImplementedError

    def rates(self, first: int, count: int) -> np.ndarray:
        """``[lr(first), …, lr(first + count - 1)]`` as float64."""
        return np.array([self(e) for e in range(first, first + count)], dtype=np.float64)

    def get_config(self) -> dict:
        return {"class_name": type(self).__name__, **self.__dict__}


@dataclass(frozen=True)
class Constant(Schedule):
    """``lr0`` at every epoch."""

    initial_learning_rate: float

    def __post_init__(self):
        object.__setattr__(self, "initial_learning_rate", _check("learning_rate", self.initial_learning_rate, 0, strict_low=True))

    def __call__(self, epoch: int) -> float:
        return self.initial_learning_rate

    def rates(self, first: int, count: int) -> np.ndarray:
        return np.full(count, self.initial_learning_rate)


@dataclass(frozen=True)
class ExponentialDecay(Schedule):
    """``lr0 (1 - decay)^e``."""

    initial_learning_rate: float
    decay: float

    def __post_init__(self):
        object.__setattr__(self, "initial_learning_rate", _check("initial_learning_rate", self.initial_learning_rate, 0, strict_low=True))
        object.__setattr__(self, "decay", _check("decay", self.decay, 0.0, 1.0))

    def __call__(self, epoch: int) -> float:
        return self.initial_learning_rate * (1.0 - self.decay) ** epoch


@dataclass(frozen=True)
class StepDecay(Schedule):
    """``lr0 factor^⌊e / every⌋``."""

    initial_learning_rate: float
    every: int
    factor: float = 0.5

    def __post_init__(self):
        object.__setattr__(self, "initial_learning_rate", _check("initial_learning_rate", self.initial_learning_rate, 0, strict_low=True))
        if not isinstance(self.every, int) or isinstance(self.every, bool) or self.every < 1:
            raise ValueError(f"every must be an integer >= 1, got {self.every!r}")
        object.__setattr__(self, "factor", _check("factor", self.factor, 0.0, strict_low=True))

    def __call__(self, epoch: int) -> float:
        return self.initial_learning_rate * self.factor ** (epoch // self.every)


@dataclass(frozen=True)
class InverseTimeDecay(Schedule):
    """``lr0 / (1 + k e)``."""

    initial_learning_rate: float
    k: float

    def __post_init__(self):
        object.__setattr__(self, "initial_learning_rate", _check("initial_learning_rate", self.initial_learning_rate, 0, strict_low=True))
        object.__setattr__(self, "k", _check("k", self.k, 0.0))

    def __call__(self, epoch: int) -> float:
        return self.initial_learning_rate / (1.0 + self.k * epoch)


@dataclass(frozen=True)
class CosineDecay(Schedule):
    """``lr_min + (lr0 - lr_min) (1 + cos(π min(e, T) / T)) / 2``; stays at ``lr_min`` after ``T``."""

    initial_learning_rate: float
    T: int
    lr_min: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "initial_learning_rate", _check("initial_learning_rate", self.initial_learning_rate, 0, strict_low=True))
        if not isinstance(self.T, int) or isinstance(self.T, bool) or self.T < 1:
            raise ValueError(f"T must be an integer >= 1, got {self.T!r}")
        object.__setattr__(self, "lr_min", _check("lr_min", self.lr_min, 0.0, self.initial_learning_rate))

    def __call__(self, epoch: int) -> float:
        progress = min(epoch, self.T) / self.T
        return self.lr_min + (self.initial_learning_rate - self.lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


class LambdaSchedule(Schedule):
    """``fn(e, lr0)``: any callable. It cannot be saved to JSON; a loaded model needs it again."""

    def __init__(self, initial_learning_rate: float, fn: Callable[[int, float], float] | None):
        self.initial_learning_rate = _check("initial_learning_rate", initial_learning_rate, 0, strict_low=True)
        self.fn = fn

    def __call__(self, epoch: int) -> float:
        if self.fn is None:
            raise ValueError(
                "this model was saved with a custom learning-rate callable, which a save file cannot hold; "
                "pass it again with model.compile(optimizer=...) or load_model(path, learning_rate=fn)"
            )
        lr = self.fn(epoch, self.initial_learning_rate)
        return _check(f"learning rate returned by {self.fn!r} for epoch {epoch}", lr, 0.0)

    def get_config(self) -> dict:
        return {"class_name": "LambdaSchedule", "initial_learning_rate": self.initial_learning_rate, "fn": repr(self.fn)}

    def __repr__(self) -> str:
        return f"LambdaSchedule({self.initial_learning_rate}, {self.fn!r})"


_CLASSES = {cls.__name__: cls for cls in (Constant, ExponentialDecay, StepDecay, InverseTimeDecay, CosineDecay)}


def get(value, default_lr: float) -> Schedule:
    """A float, a :class:`Schedule`, a callable ``(epoch, lr0) -> lr`` (with ``lr0 = default_lr``)
    or a saved config dict → :class:`Schedule`."""
    if isinstance(value, Schedule):
        return value
    if isinstance(value, dict):
        config = dict(value)
        name = config.pop("class_name")
        if name == "LambdaSchedule":
            return LambdaSchedule(config["initial_learning_rate"], None)
        return _CLASSES[name](**config)
    if callable(value):
        return LambdaSchedule(default_lr, value)
    return Constant(_check("learning_rate", value, 0, strict_low=True))
