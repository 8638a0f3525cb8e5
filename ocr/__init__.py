"""OCR corpora (Wukong-OCR, LaionCOCO-OCR): PP-OCR engines, the Ray OCR stage, OCR task samples.

The stage's entry, as the flow calls it, is :func:`run` over an :class:`OcrRun` (:mod:`ocr.entry`);
one source's OCR alone is :func:`run_ocr_stage`:

>>> from ocr import OcrSettings, run_ocr_stage  # doctest: +SKIP
>>> run_ocr_stage("/data/mix", "wukong", "zh", OcrSettings(concurrency=4))  # doctest: +SKIP

Heavy modules (engines, Ray) load on first use, so importing ``ocr`` stays cheap.
"""

from ocr.records import EngineInfo, OcrLine, OcrResult
from ocr.settings import OcrFilterSettings, OcrSettings
from pipelines._imports import lazy_exports

_LAZY = {"build_engine": "ocr.engines", "run_ocr_stage": "ocr.stage", "reading_order": "ocr.reading_order",
         **dict.fromkeys(("run", "OcrRun", "OcrInput"), "ocr.entry"),
         **dict.fromkeys(("OcrTaskSettings", "OcrTaskStyle", "ocr_task_records", "write_ocr_task_tables"), "ocr.tasks")}
__getattr__ = lazy_exports(__name__, _LAZY, extra="ocr")
__all__ = ["EngineInfo", "OcrFilterSettings", "OcrLine", "OcrResult", "OcrSettings", *_LAZY]
