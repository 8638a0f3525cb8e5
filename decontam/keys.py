"""Which hashes the match pass compares: each image's index keys, equal keys meaning "compare these two".

A key is a mask of the 64 hash bits (a *band*) and the value of the hash under it; two images are
compared when they agree on every bit of some band. Two layouts (``near_duplicates.index``):

- ``exact``: the bits cut into ``d + 1`` disjoint bands (``d`` the larger distance asked for, or
  ``bands`` when set). Pigeonhole: two hashes at most ``d`` apart agree on some band, so no pair is
  missed; but a band is then ~6 bits, the images per key grow as N / 64, the comparisons as N^2.
- ``sampled``: seeded random orderings of the 63 informative bits (the pHash's first bit, the DCT's
  constant term, is always set), each cut into bands of ``k`` bits; ``L`` bands in all, the last
  ordering possibly cut short. A pair ``d`` bits apart is found when some band holds none of its ``d``
  bits: probability :func:`pair_recall`, one for ``d`` below the bands per ordering.

The cost model (:func:`cost`): an image costs ``L`` band rows (``ROW_COST`` each: made and written by
the hash pass, read and sorted by the match pass) and ``L (N - 1) / 2^(k+1)`` comparisons with the
unrelated images sharing its keys (``PAIR_COST`` each), so ``N L (ROW_COST + PAIR_COST N / 2^(k+1))``.
:func:`plan` takes, for each ``k``, the fewest ``L`` finding ``recall`` of the pairs exactly
``max_distance`` apart, and keeps the ``(k, L)`` of least cost: wider bands when comparisons are
cheap relative to rows. Holding the recall at ``d`` with ``k``-bit bands takes ``L ~ 1 / p1^k`` (``p1``
the chance that a band misses all ``d`` bits, about ``(1 - d/63)^k``), and the cheapest ``k`` grows as
``log2 N``, so the cost grows as ``N^(1 + rho)``, ``rho = ln(1 / (1 - d/63)) / ln 2``: 0.25 at ``d = 10``
for short bands, rising to 0.31-0.36 for bands of 11-18 bits (drawn without replacement from 63 bits,
each further bit is likelier to hit one of the ``d``: ``p1 = C(63 - k, d) / C(63, d)``, below
``(1 - d/63)^k``). That is the floor of any index of sampled bits of this hash at this recall.
Modelled, ``d = 10``, recall 0.8: 6, 7, 11, 29, 63 bands of 8, 9, 11, 15, 18 bits at 10^4 ... 10^8
images, cost x14, x21, x22, x23 per tenfold N; measured in ``bench/dedup`` (decontam/README.md).

``auto`` (the default) is ``exact`` up to :data:`EXACT_UP_TO` images and ``sampled`` beyond.
Measured in ``bench/dedup`` (see decontam/README.md).
"""

from __future__ import annotations

import math

import numpy as np

BITS = 64
INFORMATIVE = 63  # bit 63 (the DCT's constant term, first in imagehash's order) is always set
EXACT_UP_TO = 30_000
MIN_KEY_BITS, MAX_KEY_BITS = 8, 31
MAX_BANDS = 256
# The cost model's two prices (CPU seconds, bench/dedup on this machine's cores): a band row (built and
# written by the hash pass, read and sorted by the match pass) and a pair of images compared in a key.
ROW_COST = 1.3e-6
PAIR_COST = 3.6e-9
_SEED = 20240


def band_slices(bands: int) -> list[tuple[int, int]]:
    """(shift, width) of each band: the 64 bits cut as evenly as they go."""
    widths = [BITS // bands + (1 if i < BITS % bands else 0) for i in range(bands)]
    shifts = np.cumsum([0, *widths[:-1]]).tolist()
    return list(zip(shifts, widths, strict=True))


def exact_masks(bands: int) -> np.ndarray:
    """``bands`` disjoint masks covering the 64 bits."""
    return np.array([((1 << width) - 1) << shift for shift, width in band_slices(bands)], dtype=np.uint64)


def sampled_masks(key_bits: int, partitions: int, bands: int | None = None) -> np.ndarray:
    """Seeded random orderings of the 63 informative bits, each cut into ``63 // key_bits`` disjoint bands
    of ``key_bits`` bits: ``partitions`` orderings, or the first ``bands`` bands of as many orderings as
    they take (the last one partly); the same masks in every worker and every run."""
    rng = np.random.default_rng(_SEED)
    per = INFORMATIVE // key_bits
    bands = partitions * per if bands is None else bands
    masks = []
    for _ in range(-(-bands // per)):
        order = rng.permutation(INFORMATIVE)
        for band in range(per):
            masks.append(sum(1 << int(bit) for bit in order[band * key_bits:(band + 1) * key_bits]))
    return np.array(masks[:bands], dtype=np.uint64)


def pair_recall(distance: int, key_bits: int, partitions: int = 0, bands: int | None = None) -> float:
    """The probability that ``sampled_masks(key_bits, partitions, bands)`` find a pair ``distance`` bits
    apart (its differing bits anywhere among the 63): one minus the chance that every ordering has each
    of its bands touched (inclusion-exclusion over the bands left untouched)."""
    per = INFORMATIVE // key_bits
    whole, part = divmod(partitions * per if bands is None else bands, per)
    return 1.0 - (1.0 - _untouched(distance, key_bits, per)) ** whole * (1.0 - _untouched(distance, key_bits, part))


def _untouched(distance: int, key_bits: int, bands: int) -> float:
    """The chance that some of ``bands`` disjoint bands of ``key_bits`` bits holds none of ``distance`` random bits."""
    return sum((-1) ** (j + 1) * math.comb(bands, j) * math.comb(INFORMATIVE - j * key_bits, distance)
               for j in range(1, bands + 1)) / math.comb(INFORMATIVE, distance)


def bands_for(distance: int, key_bits: int, recall: float) -> int:
    """The fewest bands of ``key_bits`` bits finding ``recall`` of the pairs ``distance`` apart, at most MAX_BANDS."""
    for bands in range(1, MAX_BANDS + 1):
        if pair_recall(distance, key_bits, bands=bands) >= recall:
            return bands
    return MAX_BANDS


def cost(images: int, key_bits: int, bands: int) -> float:
    """The model of the index's CPU seconds for ``images`` uniform hashes: each image's band rows (written,
    read, sorted: ROW_COST each) and the pairs sharing a key (PAIR_COST each; a row meets
    ``(images - 1) / 2 ** key_bits`` others in its key, each pair counted once)."""
    return images * bands * (ROW_COST + PAIR_COST * (images - 1) / 2 ** (key_bits + 1))


def plan(distance: int, images: int, recall: float, key_bits: int | None = None) -> tuple[int, int]:
    """The sampled index for ``images`` images: (key bits, bands) of least :func:`cost` that finds ``recall``
    of the pairs ``distance`` apart (``key_bits`` fixed when given); where MAX_BANDS bands of no width
    reach it (a distance near half the bits), the width that finds the most."""
    options = [(bits, bands_for(distance, bits, recall))
               for bits in ([key_bits] if key_bits else range(MIN_KEY_BITS, MAX_KEY_BITS + 1))]
    enough = [kb for kb in options if pair_recall(distance, kb[0], bands=kb[1]) >= recall]
    if not enough:
        return max(options, key=lambda kb: pair_recall(distance, kb[0], bands=kb[1]))
    return min(enough, key=lambda kb: cost(images, *kb))


def index_masks(index: str, distance: int, images: int, bands: int | None = None, key_bits: int | None = None,
                partitions: int | None = None, recall: float = 0.9) -> np.ndarray:
    """The masks of the index for a run of ``images`` images finding pairs up to ``distance`` apart."""
    if index == "auto":
        index = "exact" if bands or images <= EXACT_UP_TO else "sampled"
    if index == "exact":
        return exact_masks(bands or distance + 1)
    if partitions:
        return sampled_masks(key_bits or plan(distance, images, recall)[0], partitions)
    bits, count = plan(distance, images, recall, key_bits)
    return sampled_masks(bits, 0, count)


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
