"""PDFs (Common Crawl's PDF corpora, a folder or bucket of files) into page images and OCR samples.

Per page: render with pdfium (pypdfium2) at ``pdf.dpi`` (longer side capped at ``max_side``), read
the text layer with positions, and decide whether that layer *is* the page's transcription
(:mod:`pdf.decide`); if so, build the OCR samples from it (:mod:`pdf.samples`), else hand the page to
the OCR stage. Rendering runs in a child process with a time and a memory limit per page
(:mod:`pdf.sandbox`). The stage: :mod:`pdf.stage`; its settings: :class:`PdfSettings`.

>>> from pdf import PdfSettings, run_pdf_stage  # doctest: +SKIP
>>> run_pdf_stage([source], PdfSettings(dpi=144, scripts=..., prompts=...), "/data/mix")  # doctest: +SKIP
"""

from .settings import PdfSettings

__all__ = ["PdfSettings", "run_pdf_stage"]


def __getattr__(name: str):
    if name == "run_pdf_stage":
        from .stage import run_pdf_stage

        return run_pdf_stage
    raise AttributeError(f"module 'pdf' has no attribute {name!r}")
