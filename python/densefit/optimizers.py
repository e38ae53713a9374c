"""Optimizers (PyTorch conventions). ``g`` is the gradient after regularization and clipping,
``t`` counts optimizer steps from 1, every slot starts at zero.

- :class:`SGD`: ``buf = μ buf + (1 - dampening) g`` (``buf = g`` on the first step, as
  ``torch.optim.SGD``); direction ``g + μ buf`` if nesterov else ``buf`` (``g`` when μ = 0);
  ``w -= lr direction``.
- :class:`Adam`: ``m = β1 m + (1 - β1) g``, ``v = β2 v + (1 - β2) g²``,
  ``w -= lr (m / (1 - β1ᵗ)) / (sqrt(v / (1 - β2ᵗ)) + ε)``.
- :class:`AdamW`: Adam plus decoupled decay ``w -= lr wd w`` on Dense kernels only.
- :class:`RMSprop`: ``v = ρ v + (1 - ρ) g²``, ``w -= lr g / (sqrt(v) + ε)``.
- :class:`Adagrad`: ``s += g²``, ``w -= lr g / (sqrt(s) + ε)``.

Every optimizer also takes ``clipvalue=c`` (clamp each gradient element to ``[-c, c]``) and
``clipnorm=c`` (scale all gradients by ``min(1, c / (‖g‖₂ + 1e-6))``, the global norm, as
``torch.nn.utils.clip_grad_norm_``), applied after regularization and before the update.
"""

from __future__ import annotations

import math

import numpy as np

from . import schedules

SGD_, ADAM, ADAMW, RMSPROP, ADAGRAD = range(5)

# Columns of Plan.opt_params (float64), the layout every backend reads.
MOMENTUM, DAMPENING, NESTEROV, BETA_1, BETA_2, EPSILON, RHO, WEIGHT_DECAY, CLIPNORM, CLIPVALUE = range(10)
N_OPT_PARAMS = 10


# ---------------------------------------------------------------------------------------------
# The update rules, each written once (issue #13). A rule maps one weight w, its two slots s0, s1
# and its gradient g to their new values, given the step's coefficients c (a tuple, numbers in the
# weights' dtype, from the optimizer's ``coefficients(q, lr, t, T)``: q the Plan.opt_params row,
# t the step from 1, T the dtype's scalar type). The numpy backend applies a rule to whole arrays,
# the numba backend compiles it on one element at a time, and each product and sum is written in
# the order of the formulas above, so both round alike; the C++ core has its own
# (cpp/include/densefit/optimizer.hpp). A rule returns the slots it does not use unchanged.
# AdamW's decoupled decay (Dense kernels only) is not elementwise over every weight: each backend
# applies it before the rule (``decays``).


def sgd_rule(w, s0, s1, g, c):
    """SGD, plain (μ = 0) or with momentum, the velocity in s0. c: lr, μ, 1 - dampening, momentum
    (μ > 0), the first step (buf = g), nesterov."""
    lr, mu, keep, momentum, first, nesterov = c
    if not momentum:
        return w - lr * g, s0, s1
    s0 = g if first else s0 * mu + keep * g
    direction = g + mu * s0 if nesterov else s0
    return w - lr * direction, s0, s1


def adam_rule(w, s0, s1, g, c):
    """Adam (and AdamW after its decay): the moments in s0, s1. c: β1, β2, 1 - β1, 1 - β2,
    lr / (1 - β1ᵗ), sqrt(1 - β2ᵗ), ε."""
    b1, b2, keep1, keep2, step_size, bias2, eps = c
    s0 = s0 * b1 + keep1 * g
    s1 = s1 * b2 + keep2 * g * g
    return w - step_size * s0 / (np.sqrt(s1) / bias2 + eps), s0, s1


def rmsprop_rule(w, s0, s1, g, c):
    """RMSprop: the running mean of g² in s0. c: lr, ρ, 1 - ρ, ε."""
    lr, rho, keep, eps = c
    s0 = s0 * rho + keep * g * g
    return w - lr * g / (np.sqrt(s0) + eps), s0, s1


def adagrad_rule(w, s0, s1, g, c):
    """Adagrad: the sum of g² in s0. c: lr, ε."""
    lr, eps = c
    s0 = s0 + g * g
    return w - lr * g / (np.sqrt(s0) + eps), s0, s1


def sgd_coefficients(q, lr, t, T):
    mu = q[MOMENTUM]
    return T(lr), T(mu), T(1 - q[DAMPENING]), mu > 0, t == 1, q[NESTEROV] != 0


def adam_coefficients(q, lr, t, T):
    b1, b2 = q[BETA_1], q[BETA_2]
    # float(t): both backends take pow(), not a product of t factors
    return (T(b1), T(b2), T(1 - b1), T(1 - b2), T(lr / (1 - b1 ** float(t))), T(np.sqrt(1 - b2 ** float(t))),
            T(q[EPSILON]))


def rmsprop_coefficients(q, lr, t, T):
    return T(lr), T(q[RHO]), T(1 - q[RHO]), T(q[EPSILON])


def adagrad_coefficients(q, lr, t, T):
    return T(lr), T(q[EPSILON])


def decay_factor(q, lr):
    """AdamW's decoupled decay of a Dense kernel weight, ``w *= 1 - lr wd`` (float64; 1: none)."""
    return 1 - lr * q[WEIGHT_DECAY]


def _number(name: str, value, low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be in {left}{low}, {high}{right}, got {value}")
    return value


class Optimizer:
    """Base class: a learning rate (float or schedule) and gradient clipping."""

    code: int
    default_learning_rate: float
    #: Whether the step divides by a running root of squared gradients (Adam, RMSprop, Adagrad):
    #: a gradient that is rounding noise then still moves the weight by about the learning rate.
    adaptive: bool = True
    #: The update rule and its coefficients (above), the slots the rule writes (s0, then s1), and
    #: whether AdamW's decoupled decay runs before the rule.
    rule: staticmethod
    coefficients: staticmethod
    slots: int
    decays: bool = False

    def __init__(self, learning_rate, clipnorm: float | None = None, clipvalue: float | None = None):
        self.learning_rate = schedules.get(learning_rate, self.default_learning_rate)
        self.clipnorm = None if clipnorm is None else _number("clipnorm", clipnorm, 0.0, low_open=True)
        self.clipvalue = None if clipvalue is None else _number("clipvalue", clipvalue, 0.0, low_open=True)

    def params(self) -> np.ndarray:
        """The optimizer's hyper-parameters in the Plan.opt_params layout (0 where unused)."""
        out = np.zeros(N_OPT_PARAMS)
        out[CLIPNORM] = self.clipnorm or 0.0
        out[CLIPVALUE] = self.clipvalue or 0.0
        return out

    def get_config(self) -> dict:
        config = {k: v for k, v in self.__dict__.items() if k != "learning_rate"}
        return {"class_name": type(self).__name__, "learning_rate": self.learning_rate.get_config(), **config}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and dampening."""

    code, default_learning_rate, adaptive = SGD_, 0.01, False
    rule, coefficients, slots = staticmethod(sgd_rule), staticmethod(sgd_coefficients), 1

    def __init__(self, learning_rate=0.01, momentum: float = 0.0, nesterov: bool = False, dampening: float = 0.0,
                 clipnorm: float | None = None, clipvalue: float | None = None):
        super().__init__(learning_rate, clipnorm, clipvalue)
        self.momentum = _number("momentum", momentum, 0.0, 1.0, high_open=True)
        self.dampening = _number("dampening", dampening, 0.0, 1.0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be a bool, got {type(nesterov).__name__}")
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov=True requires momentum > 0 and dampening = 0 (as torch.optim.SGD)")
        self.nesterov = bool(nesterov)

    def params(self):
        out = super().params()
        out[MOMENTUM], out[DAMPENING], out[NESTEROV] = self.momentum, self.dampening, float(self.nesterov)
        return out


class Adam(Optimizer):
    """Adam with bias correction."""

    code, default_learning_rate = ADAM, 1e-3
    rule, coefficients, slots = staticmethod(adam_rule), staticmethod(adam_coefficients), 2

    def __init__(self, learning_rate=1e-3, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 clipnorm: float | None = None, clipvalue: float | None = None):
        super().__init__(learning_rate, clipnorm, clipvalue)
        self.beta_1 = _number("beta_1", beta_1, 0.0, 1.0, high_open=True)
        self.beta_2 = _number("beta_2", beta_2, 0.0, 1.0, high_open=True)
        self.epsilon = _number("epsilon", epsilon, 0.0, low_open=True)

    def params(self):
        out = super().params()
        out[BETA_1], out[BETA_2], out[EPSILON] = self.beta_1, self.beta_2, self.epsilon
        return out


class AdamW(Adam):
    """Adam with decoupled weight decay ``w -= lr wd w`` on Dense kernels (``torch.optim.AdamW``)."""

    code, decays = ADAMW, True

    def __init__(self, learning_rate=1e-3, weight_decay: float = 0.01, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, clipnorm: float | None = None, clipvalue: float | None = None):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, clipnorm, clipvalue)
        self.weight_decay = _number("weight_decay", weight_decay, 0.0)

    def params(self):
        out = super().params()
        out[WEIGHT_DECAY] = self.weight_decay
        return out


class RMSprop(Optimizer):
    """RMSprop (``torch.optim.RMSprop`` without momentum or centering)."""

    code, default_learning_rate = RMSPROP, 1e-2
    rule, coefficients, slots = staticmethod(rmsprop_rule), staticmethod(rmsprop_coefficients), 1

    def __init__(self, learning_rate=1e-2, rho: float = 0.99, epsilon: float = 1e-8,
                 clipnorm: float | None = None, clipvalue: float | None = None):
        super().__init__(learning_rate, clipnorm, clipvalue)
        self.rho = _number("rho", rho, 0.0, 1.0, high_open=True)
        self.epsilon = _number("epsilon", epsilon, 0.0, low_open=True)

    def params(self):
        out = super().params()
        out[RHO], out[EPSILON] = self.rho, self.epsilon
        return out


class Adagrad(Optimizer):
    """Adagrad (``torch.optim.Adagrad`` with no lr decay and a zero initial accumulator)."""

    code, default_learning_rate = ADAGRAD, 1e-2
    rule, coefficients, slots = staticmethod(adagrad_rule), staticmethod(adagrad_coefficients), 1

    def __init__(self, learning_rate=1e-2, epsilon: float = 1e-10,
                 clipnorm: float | None = None, clipvalue: float | None = None):
        super().__init__(learning_rate, clipnorm, clipvalue)
        self.epsilon = _number("epsilon", epsilon, 0.0, low_open=True)

    def params(self):
        out = super().params()
        out[EPSILON] = self.epsilon
        return out


# The registry: every optimizer by name, class name and code (tests/test_optimizers.py checks the
# codes are 0..N-1, one each, and tests/test_codes.py that the core reads them alike).
BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad}
_BY_CLASS = {cls.__name__: cls for cls in BY_NAME.values()}
BY_CODE = {cls.code: cls for cls in BY_NAME.values()}


def get(value) -> Optimizer:
    """An :class:`Optimizer`, a name (``"sgd"``, ``"adam"``, …, defaults) or a saved config dict."""
    if isinstance(value, Optimizer):
        return value
    if isinstance(value, str) and value.lower() in BY_NAME:
        return BY_NAME[value.lower()]()
    if isinstance(value, dict) and value.get("class_name") in _BY_CLASS:
        config = dict(value)
        cls = _BY_CLASS[config.pop("class_name")]
        return cls(**config)
    raise ValueError(f"optimizer must be an Optimizer or one of {sorted(BY_NAME)}; got {value!r}")
