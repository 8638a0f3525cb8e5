"""The interface every OCR engine implements, and the image scaling they share."""

from __future__ import annotations

import abc

import numpy as np

from ..records import EngineInfo, OcrLine, OcrResult, quad_from_points


class OcrEngine(abc.ABC):
    """Reads text lines in RGB images.

    Subclasses implement :meth:`_read_batch` over images already scaled to at most
    ``max_image_side``; this class scales down, calls it, and maps quadrilaterals back to the
    original pixels, so every engine returns the same :class:`OcrResult`.
    """

    info: EngineInfo

    def __init__(self, max_image_side: int = 2048) -> None:
        self.max_image_side = max_image_side

    @abc.abstractmethod
    def _read_batch(self, images: list[np.ndarray]) -> list[list[tuple[object, str, float]]]:
        """Per image, a list of (4x2 points, text, score) in the given image's pixels."""

    def read(self, images: list[np.ndarray]) -> list[OcrResult]:
        """OCR a batch of HxWx3 uint8 RGB arrays; one result per image, lines in engine order."""
        scaled, factors = [], []
        for img in images:
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(
                    f"expected an HxWx3 uint8 RGB image, got shape {img.shape} dtype {img.dtype}"
                )
            small, factor = _fit(img, self.max_image_side)
            scaled.append(small)
            factors.append(factor)
        raw = self._read_batch(scaled) if scaled else []
        results = []
        for img, factor, lines in zip(images, factors, raw, strict=True):
            out = []
            for points, text, score in lines:
                quad = quad_from_points(np.asarray(points, dtype=np.float64) * factor)
                out.append(OcrLine(str(text), quad, float(score)))
            results.append(OcrResult(int(img.shape[1]), int(img.shape[0]), out, self.info))
        return results

    def read_one(self, image: np.ndarray) -> OcrResult:
        return self.read([image])[0]


def _fit(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Scale ``img`` down so its longer side is at most ``max_side``; returns it and the factor back."""
    h, w = img.shape[:2]
    longest = max(h, w)
    if longest <= max_side:
        return img, 1.0
    import cv2

    scale = max_side / longest
    small = cv2.resize(
        img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    return small, 1.0 / scale
