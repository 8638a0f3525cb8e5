"""OCR corpora (Wukong-OCR, LaionCOCO-OCR): PP-OCR engines, the Ray OCR stage, OCR task samples.

>>> from ocr import OcrSettings, run_ocr_stage  # doctest: +SKIP
>>> run_ocr_stage("/data/mix", "wukong", "zh", OcrSettings(concurrency=4))  # doctest: +SKIP

Heavy modules (engines, Ray) load on first use, so importing ``ocr`` stays cheap.
"""

from .records import EngineInfo, OcrLine, OcrResult
from .settings import OcrFilterSettings, OcrSettings

__all__ = [
    "EngineInfo",
    "OcrFilterSettings",
    "OcrLine",
    "OcrResult",
    "OcrSettings",
    "OcrTaskSettings",
    "OcrTaskStyle",
    "build_engine",
    "ocr_task_records",
    "reading_order",
    "run_ocr_stage",
    "write_ocr_task_tables",
]


def __getattr__(name: str):
    if name == "build_engine":
        from .engines import build_engine

        return build_engine
    if name == "run_ocr_stage":
        from .stage import run_ocr_stage

        return run_ocr_stage
    if name == "reading_order":
        from .reading_order import reading_order

        return reading_order
    if name in ("OcrTaskSettings", "OcrTaskStyle", "ocr_task_records", "write_ocr_task_tables"):
        from . import tasks

        return getattr(tasks, name)
    raise AttributeError(f"module 'ocr' has no attribute {name!r}")
