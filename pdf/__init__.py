"""PDFs (Common Crawl's PDF corpora, a folder or bucket of files) into page images and OCR samples.

Per page: render with pdfium (pypdfium2) at ``pdf.dpi`` (longer side capped at ``max_side``), read
the text layer with positions, and decide whether that layer *is* the page's transcription
(:mod:`pdf.decide`); if so, build the OCR samples from it (:mod:`pdf.samples`), else hand the page to
the OCR stage. Rendering runs in a child process with a time and a memory limit per page
(:mod:`pdf.sandbox`). The stage: :mod:`pdf.stage`; its settings: :class:`PdfSettings`; what a run
made of a source's pages: :func:`read_stats` (``vlmix pdf``).

>>> from pdf import PdfSettings, run_pdf_stage  # doctest: +SKIP
>>> run_pdf_stage([source], PdfSettings(dpi=144, scripts=..., prompts=...), "/data/mix")  # doctest: +SKIP
"""

from pdf.settings import PdfOptions, PdfSettings
from pipelines._imports import lazy_exports

_LAZY = {"run_pdf_stage": "pdf.stage", "read_stats": "pdf.stats"}
__getattr__ = lazy_exports(__name__, _LAZY, extra="pdf")
__all__ = ["PdfOptions", "PdfSettings", *_LAZY]
