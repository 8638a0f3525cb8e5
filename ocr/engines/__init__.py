"""OCR engines behind one interface; :func:`build_engine` picks one by ``OcrSettings.engine``."""

from __future__ import annotations

from .base import OcrEngine


def _onnx(settings) -> OcrEngine:
    from .onnx import OnnxPpOcrEngine

    return OnnxPpOcrEngine(settings)


def _paddleocr(settings) -> OcrEngine:
    from .paddle import PaddleOcrEngine

    return PaddleOcrEngine(settings)


ENGINES = {"onnx": _onnx, "paddleocr": _paddleocr}


def build_engine(settings) -> OcrEngine:
    """Build the engine ``settings.engine`` names (an :class:`ocr.settings.OcrSettings`)."""
    return ENGINES[settings.engine](settings)


__all__ = ["ENGINES", "OcrEngine", "build_engine"]
