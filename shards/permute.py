"""A seeded random permutation of ``[0, n)`` that needs no table: where pick ``j`` lands in the mixture.

The mixer numbers every pick (segment by segment, see :mod:`shards.plan`) and places pick ``j`` at
output position ``permute(j)``. Any worker can compute the positions of its own picks from the
seed and ``n`` alone, so no process ever holds a permutation of all ``n`` samples (800 MB at
``10^8``). The map is a balanced Feistel network over the smallest ``2^(2h) >= n``, with
cycle-walking to stay inside ``[0, n)``: a bijection for every key, so each position is taken
exactly once.

>>> import numpy as np
>>> positions = permute(np.arange(10), n=10, seed=3)
>>> sorted(positions.tolist()) == list(range(10))
True
"""

from __future__ import annotations

import numpy as np

_ROUNDS = 6
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _round_keys(seed: int, salt: int) -> np.ndarray:
    sequence = np.random.SeedSequence([seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF, salt])
    return sequence.generate_state(_ROUNDS, dtype=np.uint64)


def permute(index: np.ndarray, n: int, seed: int, salt: int = 0x6D6978) -> np.ndarray:
    """The positions of picks ``index`` (each in ``[0, n)``) in a seeded permutation of ``[0, n)``."""
    index = np.asarray(index, dtype=np.uint64)
    if n <= 1:
        return index.astype(np.int64)
    if index.size and int(index.max()) >= n:
        raise ValueError(f"pick index {int(index.max())} outside [0, {n})")
    half = max(1, (int(n - 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half) - 1)
    keys = _round_keys(seed, salt)
    out = index.copy()
    outside = np.ones(out.shape, dtype=bool)
    with np.errstate(over="ignore"):
        while outside.any():  # cycle-walk: values past n go round again (expected < 4 rounds)
            x = out[outside]
            left, right = x >> np.uint64(half), x & mask
            for key in keys:
                left, right = right, left ^ (_mix(right ^ key) & mask)
            out[outside] = (left << np.uint64(half)) | right
            outside = out >= np.uint64(n)
    return out.astype(np.int64)
