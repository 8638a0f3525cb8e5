"""Perceptual hashes of images (:mod:`pipelines.phash`, computed where an image is first read) and the
distance between two: two images are near-duplicates when their pHashes differ in at most
``max_distance`` bits and their dHashes in at most ``confirm_distance``. Which pHashes are compared at
all: :mod:`decontam.keys`.
"""

from __future__ import annotations

import numpy as np

from pipelines.phash import BITS, hashes, phash, trim

__all__ = ["BITS", "distances", "hashes", "phash", "trim"]


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between uint64 hashes, elementwise (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(a.astype(np.uint64, copy=False), b.astype(np.uint64, copy=False)))

