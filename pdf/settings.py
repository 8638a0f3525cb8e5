"""The PDF stage's settings: rendering, limits, filters and the text-layer checks, one pydantic model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipelines._model import ConfigModel


class PdfOptions(ConfigModel):
    """How PDF pages become page images and OCR samples: the ``pdf`` section of a mixture config."""

    dpi: float = Field(144, gt=0, le=1200, description="render resolution, dots per inch")
    max_side: int = Field(4096, ge=64, description="longer side of a rendered page, at most (the report's 4K)")
    image_format: Literal["jpg", "png"] = Field("jpg", description="how rendered pages are stored")
    jpeg_quality: int = Field(90, ge=50, le=100)
    max_pages: int = Field(50, ge=1, description="pages kept per PDF: the first N; the rest counted too_many_pages")
    max_file_mb: float = Field(256, gt=0, description="PDFs larger than this are counted too_large and skipped")
    files_per_unit: int = Field(16, ge=1, description="PDF files (or URL-list rows) per unit: a resume point, a Ray task")
    page_timeout_s: float = Field(20.0, gt=0, description="wall-clock limit to render and read one page")
    memory_mb: int = Field(3072, ge=256, description="address-space limit of the rendering process")
    # The text-layer checks: a page whose text layer fails one goes to OCR with that reason.
    max_bad_char_share: float = Field(
        0.02, ge=0, le=1, description="share of unmapped, private-use or replacement characters tolerated")
    max_hidden_share: float = Field(0.5, ge=0, le=1, description="share of invisible or off-page characters tolerated")
    max_ink_outside_text: float = Field(
        0.6, ge=0, le=1, description="share of the page's dark ink outside the text layer's boxes tolerated "
        "(more: text drawn as an image or paths, too little text for the ink)")
    blank_ink_share: float = Field(0.0005, ge=0, le=1, description="pages with less dark ink and no text are blank")
    min_language_share: float = Field(
        0.5, ge=0, le=1, description="a page's text must be this much in one configured language's scripts")
    grounded_fraction: float = Field(0.5, ge=0, le=1, description="share of samples given the grounded variant")


class PdfSettings(PdfOptions):
    """The options plus what a run derives from the rest of the mixture config (a config never sets these)."""

    seed: int = Field(0, description="seed of the prompt and variant draws")
    # Filled by the flow from the config's `languages` registry (and its OCR prompt pools).
    scripts: dict[str, list[str]] = Field(
        default_factory=dict, description="language code -> Unicode scripts (the flow fills it from `languages`)")
    prompts: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict, description="instruction pools by purpose (transcribe, grounded), then language")
    perceptual_hash: bool = Field(False, description="hash each text-layer page's image as it is rendered "
                                  "(pipelines.phash), for the decontamination stage: set by the flow when the "
                                  "config decontaminates")
