"""The activations: one registry (:data:`REGISTRY`) of names, integer codes, parameters and
properties, and each formula written once.

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

Each elementwise formula is a plain Python function in the numpy subset that means the same on
an array and on a scalar: ``forward(x, a, T)`` and ``backward(d, x, y, a, T)`` (``d · act'(x)``,
``y = act(x)``), with ``a`` the parameter α and every constant built with ``T``, the dtype's scalar
type (so float32 stays float32 in numba as in numpy). The numpy backend applies them to whole
arrays; the numba backend compiles the same functions element by element (:func:`select` as the
scalar ``a if cond else b``, :func:`masked` as ``a if cond else 0``, and the other functions of
this module that the formulas call, such as :func:`sigmoid`, as jitable helpers; :func:`exp`,
:func:`expm1`, :func:`log1p` and :func:`tanh` as the core's vectorizable forms, numba_vmath.py)
and generates its loops, one per code, from :data:`REGISTRY` (``backends/numba_.py``, issue #13).
So a formula may use only what numba compiles on scalars: numpy's ufuncs, arithmetic,
comparisons, :func:`select`, :func:`masked` and this module's helpers (and for those four
functions, these names rather than numpy's, or numba's loop calls libm per element).
Adding an activation: a :class:`Spec` in :data:`REGISTRY` with its two functions here and the C++
function in ``cpp/``; the tests read the registry. (numba caches compiled code keyed on
``numba_.py``: after a formula here changes, clear that cache.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np


def select(cond, a, b):
    """``a`` where ``cond`` else ``b``: ``numpy.where`` here; numba compiles it as the scalar
    ``a if cond else b`` (``backends/numba_.py``; both sides are computed either way)."""
    return np.where(cond, a, b)


# The transcendental functions the formulas call: numpy's for arrays. The numba backend compiles the
# same formulas with these four bound to the core's vectorizable forms instead of libm's
# (backends/numba_vmath.py: vmath.hpp's bits), so that its loops vectorize as the core's do.

def exp(x):
    return np.exp(x)


def expm1(x):
    return np.expm1(x)


def log1p(x):
    return np.log1p(x)


def tanh(x):
    return np.tanh(x)


def masked(cond, a, T):
    """``a`` where ``cond`` else ``0``: ``a * cond`` here (half ``numpy.where``'s cost; a masked 0 may be
    -0, and a masked inf or nan stays nan); numba compiles it as the scalar ``a if cond else T(0)``."""
    return a * cond


def sigmoid(x, T):
    """``1 / (1 + exp(-x))`` without overflow: ``exp(x) / (1 + exp(x))`` for negative ``x``."""
    e = exp(-np.abs(x))
    return select(x >= T(0), T(1), e) / (T(1) + e)  # one division: 1 / (1 + e) or e / (1 + e)


GELU_C = math.sqrt(2 / math.pi)
GELU_K = 0.044715


# ------------------------------------------------------------------ forward(x, a, T), backward(d, x, y, a, T)

def identity_forward(x, a, T):
    return x


def identity_backward(d, x, y, a, T):
    return d


def sigmoid_forward(x, a, T):
    return sigmoid(x, T)


def sigmoid_backward(d, x, y, a, T):
    return d * y * (T(1) - y)


def tanh_forward(x, a, T):
    return tanh(x)


def tanh_backward(d, x, y, a, T):
    return d * (T(1) - y * y)


def relu_forward(x, a, T):
    return np.maximum(x, T(0))


def relu_backward(d, x, y, a, T):
    return masked(x > T(0), d, T)


def leaky_relu_forward(x, a, T):
    return select(x > T(0), x, x * a)


def leaky_relu_backward(d, x, y, a, T):
    return select(x > T(0), d, d * a)


def elu_forward(x, a, T):
    return select(x > T(0), x, a * expm1(np.minimum(x, T(0))))


def elu_backward(d, x, y, a, T):
    return select(x > T(0), d, d * (y + a))


def softplus_forward(x, a, T):
    return log1p(exp(-np.abs(x))) + np.maximum(x, T(0))


def softplus_backward(d, x, y, a, T):
    return d * sigmoid(x, T)


def gelu_forward(x, a, T):
    t = tanh(T(GELU_C) * (x + T(GELU_K) * (x * x * x)))
    return T(0.5) * x * (T(1) + t)


def gelu_backward(d, x, y, a, T):
    t = tanh(T(GELU_C) * (x + T(GELU_K) * (x * x * x)))
    du = T(GELU_C) * (T(1) + T(3 * GELU_K) * x * x)
    return d * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du)


def softmax(z):
    """Row-wise softmax of ``z (m, K)`` (numpy arrays; the numba backend loops it per row)."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------ the registry

@dataclass(frozen=True)
class Spec:
    """One activation. ``reads``: what its derivative is written in, ``"input"``, ``"output"``,
    ``"both"`` or ``"none"``; ``alpha``: the default of its parameter α, ``None`` if it takes none;
    ``standalone``: it can be an op of its own (softmax is only an output, fused with its loss)."""

    name: str
    code: int
    forward: Callable | None
    backward: Callable | None
    reads: str
    alpha: float | None = None
    aliases: tuple[str, ...] = ()
    standalone: bool = True


REGISTRY: tuple[Spec, ...] = (
    Spec("identity", 0, identity_forward, identity_backward, "none", aliases=("linear",)),
    Spec("sigmoid", 1, sigmoid_forward, sigmoid_backward, "output"),
    Spec("tanh", 2, tanh_forward, tanh_backward, "output"),
    Spec("relu", 3, relu_forward, relu_backward, "input"),
    Spec("leaky_relu", 4, leaky_relu_forward, leaky_relu_backward, "input", alpha=0.01),
    Spec("elu", 5, elu_forward, elu_backward, "both", alpha=1.0),
    Spec("softplus", 6, softplus_forward, softplus_backward, "input"),
    Spec("gelu", 7, gelu_forward, gelu_backward, "input"),
    Spec("softmax", 8, None, None, "output", standalone=False),
)
assert [s.code for s in REGISTRY] == list(range(len(REGISTRY))), "codes are the registry's positions"

IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, ELU, SOFTPLUS, GELU, SOFTMAX = (s.code for s in REGISTRY)

#: Name (and alias) → code.
CODES: dict[str, int] = {name: s.code for s in REGISTRY for name in (s.name, *s.aliases)}

#: The parameter ``α`` each activation uses unless the user gives one.
DEFAULT_ALPHA: dict[int, float] = {s.code: s.alpha for s in REGISTRY if s.alpha is not None}

#: The codes that can be ops of their own (every backend's elementwise forward and backward).
STANDALONE: tuple[int, ...] = tuple(s.code for s in REGISTRY if s.standalone)


def spec(code) -> Spec:
    """The :class:`Spec` of ``code``; ``ValueError`` for a code no activation has."""
    if isinstance(code, (int, np.integer)) and not isinstance(code, bool) and 0 <= code < len(REGISTRY):
        return REGISTRY[code]
    raise ValueError(f"unknown activation code {code!r}")


def canonical_name(name: str | None) -> str:
    """Return the canonical activation name (``None`` and ``"linear"`` are ``"identity"``)."""
    if name is None:
        return "identity"
    if not isinstance(name, str):
        raise TypeError(f"activation must be a string name or None, got {type(name).__name__}")
    key = name.lower()
    if key not in CODES:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(CODES)}")
    return REGISTRY[CODES[key]].name
