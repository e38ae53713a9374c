"""The counter-based uniform every backend uses for dropout masks (the numpy reference).

All arithmetic is modulo 2⁶⁴::

    mix(z) = z ^ (z >> 30); z *= 0xBF58476D1CE4E5B9
             z ^= z >> 27;  z *= 0x94D049BB133111EB
             return z ^ (z >> 31)
    uniform(seed, step, layer, i) = (mix(mix(mix(mix(seed) ^ step) ^ layer) ^ i) >> 40) · 2⁻²⁴

A mask element therefore depends only on (seed, step, layer, index), never on the order in
which a backend visits elements, so all backends draw identical masks.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MASK64 = (1 << 64) - 1


def mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer on a uint64 array (wrapping arithmetic)."""
    z = np.asarray(z, dtype=np.uint64)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def stream_key(seed: int, step: int, layer: int) -> np.uint64:
    """``mix(mix(mix(seed) ^ step) ^ layer)``: the part shared by one layer's mask at one step."""
    key = mix(np.array([int(seed) & _MASK64], dtype=np.uint64))
    key = mix(key ^ np.uint64(int(step) & _MASK64))
    key = mix(key ^ np.uint64(int(layer) & _MASK64))
    return key[0]


def uniform(seed: int, step: int, layer: int, index: np.ndarray) -> np.ndarray:
    """``uniform(seed, step, layer, i)`` in ``[0, 1)`` for every ``i`` of ``index`` (float64)."""
    bits = mix(np.asarray(index, dtype=np.uint64) ^ stream_key(seed, step, layer)) >> np.uint64(40)
    return bits.astype(np.float64) * 2.0**-24
