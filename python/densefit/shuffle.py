"""The sample order of every shuffled epoch: one generator, computed from ``(seed, epoch)`` alone.

``fit(shuffle=True)`` visits the rows of epoch ``e`` in the order ``permutation(seed, e, n)``.
Every backend computes that order itself (the C++ core in ``cpp/include/densefit/shuffle.hpp``,
the numba kernel with ``densefit.backends.numba_.epoch_order``, the numpy backend with
:func:`permutation`), so a fit hands a backend only the small spec :class:`Shuffle` instead of an
``(epochs, n)`` index array built in Python.

The generator, exactly (all arithmetic on unsigned 64-bit integers, wrapping modulo 2⁶⁴)::

    mix64(z):  z ^= z >> 30;  z *= 0xBF58476D1CE4E5B9
               z ^= z >> 27;  z *= 0x94D049BB133111EB
               z ^= z >> 31              (the splitmix64 finalizer: densefit.rng.mix, rng.hpp's mix)

    seed, epoch    taken modulo 2⁶⁴
    b              = the bit length of n - 1 (0 for n = 1)
    h              = max(1, ceil(b / 2));  mask = 2ʰ - 1   (a domain of 2²ʰ ≥ n values)
    k_r            = mix64(seed ^ mix64(4·epoch + r))    for the rounds r = 0, 1, 2, 3
    F_r(v)         = mix64(v ^ k_r) & mask               (v < 2ʰ)
    feistel(x)     : L = x >> h, R = x & mask;
                     for r = 0..3:  L, R = R, L ^ F_r(R)
                     return (L << h) | R                 (a bijection on [0, 2²ʰ))
    perm(i)        : x = feistel(i); while x ≥ n: x = feistel(x); return x     (cycle walking)
    order[i]       = perm(i)  for i in [0, n)

Cycle walking follows ``i``'s cycle under ``feistel`` to its next member below ``n``, so ``perm``
is a bijection on ``[0, n)`` (the cycle returns to ``i`` at the latest). Since ``2²ʰ < 4n``, a
value is re-applied fewer than 3 times on average. ``F_r`` only ever sees ``h``-bit values, and
``2ʰ < 2√n``: the implementations tabulate ``F_r`` once per epoch (``4·2ʰ`` values, far fewer
than ``n``) and run the rounds as table look-ups, which gives the same bits as the formula.

:func:`position` is the scalar form (Python integers, masked to 64 bits, so that it also reads as
numba's uint64 arithmetic); :func:`permutation` and :func:`orders` are the vectorized reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _native, rng, validation  # (modules: validation imports the backends, which import this)

_M64 = (1 << 64) - 1
_C1, _C2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
ROUNDS = 4


@dataclass(frozen=True)
class Shuffle:
    """Epoch ``first_epoch + e`` of a backend call visits ``permutation(seed, first_epoch + e, n)``."""

    seed: int
    first_epoch: int

    def __post_init__(self):
        object.__setattr__(self, "seed", validation.check_int("seed", self.seed, 0))  # plain ints, so the spec compares
        object.__setattr__(self, "first_epoch", validation.check_int("first_epoch", self.first_epoch, 0))

    def orders(self, count: int, n: int) -> np.ndarray:
        """The ``(count, n)`` int64 orders of the spec's first ``count`` epochs."""
        return orders(self.seed, self.first_epoch, count, n)


def mix64(z: int) -> int:
    """:func:`densefit.rng.mix` (the splitmix64 finalizer) of one Python int, taken modulo 2⁶⁴:
    the scalar form's, in masked integer arithmetic; the vectorized form calls ``rng.mix``."""
    z = z & _M64
    z = ((z ^ (z >> 30)) * _C1) & _M64
    z = ((z ^ (z >> 27)) * _C2) & _M64
    return z ^ (z >> 31)


def half_bits(n: int) -> int:
    """``h``: the width of each Feistel half for ``n`` rows."""
    return max(1, (max(0, n - 1).bit_length() + 1) // 2)


def round_keys(seed: int, epoch: int) -> list[int]:
    """``k_0 .. k_3`` of ``epoch``."""
    return [mix64((seed & _M64) ^ mix64(4 * (epoch & _M64) + r)) for r in range(ROUNDS)]


def _feistel_scalar(keys, h: int, x: int) -> int:
    mask = (1 << h) - 1
    left, right = x >> h, x & mask
    for r in range(ROUNDS):
        left, right = right, left ^ (mix64(right ^ keys[r]) & mask)
    return (left << h) | right


def position(seed: int, epoch: int, n: int, i: int) -> int:
    """``order[i]`` of epoch ``epoch`` over ``n`` rows, one value at a time (the scalar form)."""
    keys, h = round_keys(seed, epoch), half_bits(n)
    x = _feistel_scalar(keys, h, i)
    while x >= n:
        x = _feistel_scalar(keys, h, x)
    return x


def _tables(seed: int, epoch: int, h: int) -> np.ndarray:
    """``F_r(v)`` for every round ``r`` and every ``h``-bit ``v``: ``(4, 2ʰ)`` uint64."""
    v = np.arange(1 << h, dtype=np.uint64)
    keys = np.array(round_keys(seed, epoch), dtype=np.uint64)
    return rng.mix(v[None, :] ^ keys[:, None]) & np.uint64((1 << h) - 1)


def _feistel(tables: np.ndarray, h: int, x: np.ndarray) -> np.ndarray:
    left, right = x >> np.uint64(h), x & np.uint64((1 << h) - 1)
    for table in tables:
        left, right = right, left ^ table[right]
    return (left << np.uint64(h)) | right


def permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The int64 ``(n,)`` row order of ``epoch`` (see the module docstring)."""
    check = validation.check_int
    seed, epoch, n = check("seed", seed, 0), check("epoch", epoch, 0), check("n", n, 0)
    h = half_bits(n)
    tables = _tables(seed, epoch, h)
    x = _feistel(tables, h, np.arange(n, dtype=np.uint64))
    walking = np.flatnonzero(x >= np.uint64(n))
    while walking.size:  # cycle walking, on the values still outside [0, n)
        x[walking] = _feistel(tables, h, x[walking])
        walking = walking[x[walking] >= np.uint64(n)]
    return x.astype(np.int64)


def orders(seed: int, first_epoch: int, count: int, n: int) -> np.ndarray:
    """The ``(count, n)`` int64 orders of epochs ``first_epoch .. first_epoch + count - 1``: the
    compiled core's ``permutation`` when it loads (the same bits, and much faster), else
    :func:`permutation`. No backend needs them (each computes its orders from a :class:`Shuffle`);
    they are the explicit ``(E, n)`` orders a backend also accepts, for tests and comparisons."""
    check = validation.check_int
    seed, first_epoch, count, n = check("seed", seed, 0), check("first_epoch", first_epoch, 0), \
        check("count", count, 0), check("n", n, 0)
    compiled = _native.core()
    make = permutation if compiled is None else compiled.permutation
    out = np.empty((count, n), dtype=np.int64)
    for e in range(count):
        out[e] = make(seed, first_epoch + e, n)
    return out
