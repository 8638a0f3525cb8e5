"""The PDF stage's one entry: :func:`run` over a :class:`PdfRun`, as the flow's registry calls it:
every PDF source's pages rendered (sandboxed pdfium), text-layer samples written, the other pages
handed to the OCR stage; per source, its totals (:func:`pdf.stage.run_pdf_stage`).

>>> run(PdfRun("/data/mix", settings=PdfSettings(), sources=(common_crawl_pdf,)))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pdf.settings import PdfSettings
from pipelines.source import Source
from pipelines.stage import StageContext


@dataclass(frozen=True)
class PdfRun(StageContext):
    """What the stage runs on: the root, its settings, the PDF sources, and ``fetch``, the guarded
    downloader of URL lists (``url -> (bytes | None, reason | None, transient)``, picklable)."""

    settings: PdfSettings = field(default_factory=PdfSettings)
    sources: tuple[Source, ...] = ()
    fetch: Callable | None = None


def run(ctx: PdfRun) -> dict[str, Any]:
    """Render and read every source's PDFs (resumable per unit); per source, pages, decisions and drops."""
    from pdf.stage import run_pdf_stage

    return run_pdf_stage(list(ctx.sources), ctx.settings, ctx.root, ctx.options, fetch=ctx.fetch)
