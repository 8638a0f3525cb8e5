"""Generated pictures (shapes on a background, distinct per seed) and their transformed copies."""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps


def picture(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(x) for x in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, size[0] - 20)), int(rng.integers(0, size[1] - 20))
        box = [x0, y0, x0 + int(rng.integers(10, size[0] // 2)), y0 + int(rng.integers(10, size[1] // 2))]
        fill = tuple(int(x) for x in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return image


def encode(image: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return out.getvalue()


TRANSFORMS = {
    "resize": lambda im: im.resize((im.width // 2, im.height // 2)),
    "jpeg60": lambda im: Image.open(io.BytesIO(encode(im, quality=60))),
    "crop5": lambda im: im.crop((im.width * 5 // 200, im.height * 5 // 200, im.width - im.width * 5 // 200,
                                 im.height - im.height * 5 // 200)),
    "brighter10": lambda im: ImageEnhance.Brightness(im).enhance(1.1),
    "darker10": lambda im: ImageEnhance.Brightness(im).enhance(0.9),
    "border": lambda im: ImageOps.expand(im, 10, fill="white"),
}


@functools.cache
def hashed_copies(pictures: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """(pHash, dHash) of ``pictures`` generated pictures (``pictures x 2``), and of their copies
    (``TRANSFORMS x pictures x 2``, TRANSFORMS in order)."""
    from decontam.phash import hashes

    originals = [picture(seed) for seed in range(pictures)]
    hashed = np.array([hashes(encode(im)) for im in originals], dtype=np.uint64)
    copies = np.array([[hashes(encode(transform(im))) for im in originals] for transform in TRANSFORMS.values()],
                      dtype=np.uint64)
    return hashed, copies


def matched(a: np.ndarray, b: np.ndarray, distance: int, confirm: int | None) -> np.ndarray:
    """Whether (pHash, dHash) pairs ``a`` and ``b`` (last axis) match by the stage's rule: pHashes within
    ``distance`` bits, dHashes within ``confirm`` (any, when None)."""
    from decontam.phash import distances

    near = distances(a[..., 0], b[..., 0]) <= distance
    return near if confirm is None else near & (distances(a[..., 1], b[..., 1]) <= confirm)
