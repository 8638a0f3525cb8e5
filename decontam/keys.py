"""Which hashes the match pass compares: each image's index keys, equal keys meaning "compare these two".

A key is a mask of the 64 hash bits (a *band*) and the value of the hash under it; two images are
compared when they agree on every bit of some band. Two layouts (``near_duplicates.index``):

- ``exact``: the bits cut into ``d + 1`` disjoint bands (``d`` the larger distance asked for, or
  ``bands`` when set). Pigeonhole: two hashes at most ``d`` apart agree on some band, so no pair is
  missed; but a band is then ~6 bits, the images per key grow as N / 64, the comparisons as N^2.
- ``sampled``: ``partitions`` random orderings of the 63 informative bits (the pHash's first bit,
  the DCT's constant term, is always set), each cut into bands of ``key_bits`` bits. ``key_bits`` grows
  with the number of images, ``round(log2(N)) - 6``, so a key holds 45 to 90 unrelated images at any N
  (the comparisons per band row stay constant); a pair ``k`` bits apart is found when, in some ordering, one band holds none of
  the ``k`` bits: exactly for ``k`` below the bands per ordering, with a probability
  (:func:`pair_recall`) that falls with ``k`` beyond it. ``partitions`` is the fewest orderings that
  find ``recall`` of the pairs exactly ``max_distance`` apart (closer pairs: more), at most
  :data:`MAX_PARTITIONS`: longer bands need more orderings, so the bands per image grow about 2x per
  tenfold N (the price of holding the recall at the distance), and the work as N x bands.

``auto`` (the default) is ``exact`` up to :data:`EXACT_UP_TO` images and ``sampled`` beyond.
Measured in ``bench/decontam`` (see decontam/README.md).
"""

from __future__ import annotations

import math

import numpy as np

BITS = 64
INFORMATIVE = 63  # bit 63 (the DCT's constant term, first in imagehash's order) is always set
EXACT_UP_TO = 30_000
KEY_SLACK = 6  # key bits: log2(N) - 6, 45 to 90 unrelated images a key (measured: cheaper than fewer)
MAX_PARTITIONS = 32
_SEED = 20240


def band_slices(bands: int) -> list[tuple[int, int]]:
    """(shift, width) of each band: the 64 bits cut as evenly as they go."""
    widths = [BITS // bands + (1 if i < BITS % bands else 0) for i in range(bands)]
    shifts = np.cumsum([0, *widths[:-1]]).tolist()
    return list(zip(shifts, widths, strict=True))


def exact_masks(bands: int) -> np.ndarray:
    """``bands`` disjoint masks covering the 64 bits."""
    return np.array([((1 << width) - 1) << shift for shift, width in band_slices(bands)], dtype=np.uint64)


def sampled_masks(key_bits: int, partitions: int) -> np.ndarray:
    """``partitions`` seeded random orderings of the 63 informative bits, each cut into ``63 // key_bits``
    disjoint bands of ``key_bits`` bits; the same masks in every worker and every run."""
    rng = np.random.default_rng(_SEED)
    per = INFORMATIVE // key_bits
    masks = []
    for _ in range(partitions):
        order = rng.permutation(INFORMATIVE)
        for band in range(per):
            masks.append(sum(1 << int(bit) for bit in order[band * key_bits:(band + 1) * key_bits]))
    return np.array(masks, dtype=np.uint64)


def pair_recall(distance: int, key_bits: int, partitions: int) -> float:
    """The probability that ``sampled_masks(key_bits, partitions)`` find a pair ``distance`` bits apart
    (its differing bits anywhere among the 63): one minus the chance that every ordering has each of its
    bands touched (inclusion-exclusion over the bands left untouched)."""
    per = INFORMATIVE // key_bits
    clean = sum((-1) ** (j + 1) * math.comb(per, j) * math.comb(INFORMATIVE - j * key_bits, distance)
                for j in range(1, per + 1)) / math.comb(INFORMATIVE, distance)
    return 1.0 - (1.0 - clean) ** partitions


def key_bits_for(images: int) -> int:
    """Bits per band so that a key holds 45 to 90 unrelated images: round(log2(N)) - 6, within 8..31."""
    return min(31, max(8, round(math.log2(max(images, 2))) - KEY_SLACK))


def partitions_for(distance: int, key_bits: int, recall: float) -> int:
    """The fewest orderings finding ``recall`` of the pairs ``distance`` apart, at most MAX_PARTITIONS."""
    for partitions in range(1, MAX_PARTITIONS + 1):
        if pair_recall(distance, key_bits, partitions) >= recall:
            return partitions
    return MAX_PARTITIONS


def index_masks(index: str, distance: int, images: int, bands: int | None = None, key_bits: int | None = None,
                partitions: int | None = None, recall: float = 0.9) -> np.ndarray:
    """The masks of the index for a run of ``images`` images finding pairs up to ``distance`` apart."""
    if index == "auto":
        index = "exact" if bands or images <= EXACT_UP_TO else "sampled"
    if index == "exact":
        return exact_masks(bands or distance + 1)
    bits = key_bits or key_bits_for(images)
    return sampled_masks(bits, partitions or partitions_for(distance, bits, recall))


def keys(hashes: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """For each hash (uint64) its key under each mask (rows: hashes, columns: masks): a 64-bit mix of the
    mask's number and the hash's bits under it, so equal keys mean the same band holds the same bits."""
    hashes = hashes.astype(np.uint64)
    out = np.empty((len(hashes), len(masks)), dtype=np.uint64)
    for number, mask in enumerate(masks.tolist()):
        salt = np.uint64(((number + 1) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
        out[:, number] = _mix((hashes & np.uint64(mask)) ^ _mix(salt))
    return out


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads a band's bits over 64, so ``key % buckets`` balances buckets."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))
