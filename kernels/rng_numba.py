"""The counter-based stream of :mod:`fastdqn.kernels.rng` as numba functions (uint64 arithmetic),
shared by every numba kernel."""

import numpy as np
from numba import njit

from .rng import GOLDEN, INV_2_32, MIX1, MIX2

GOLDEN_U64 = np.uint64(GOLDEN)
_MIX1 = np.uint64(MIX1)
_MIX2 = np.uint64(MIX2)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)


@njit(inline="always")
def mix64(z):
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(inline="always")
def uniform_pair(key, k):
    """The two uniforms in [0, 1) of word ``k`` of the stream keyed by ``key`` (high bits first)."""
    h = mix64(key + k * GOLDEN_U64)
    return (h >> _S32) * INV_2_32, (h & _LOW32) * INV_2_32


@njit(inline="always")
def below(key, k, n):
    """An integer uniform in ``[0, n)`` from word ``k``: ``(high 32 bits * n) >> 32``."""
    h = mix64(key + k * GOLDEN_U64)
    return np.int64(((h >> _S32) * np.uint64(n)) >> _S32)
