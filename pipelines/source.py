"""The description of one dataset of a mixture: the contract every stage reads a source by.

A :class:`Source` says where a dataset is (``locations``, ``image_root``), how it is laid out
(``kind``: one of the registry in :mod:`tasks.kinds`, which checks the rest against what
the kind can do), what it feeds (``task``, ``language``) and what the stages do with it (URL-list
``columns`` and ``filters`` for the download, ``ocr``, ``translate_to``). The mixture config
(``flows.config``) holds a list of them.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from pipelines._model import ConfigModel

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


class Columns(ConfigModel):
    """Column names in a URL list. Only ``url`` is required; a filter needs the column it reads."""

    url: str = "url"
    caption: str | None = "caption"
    punsafe: str | None = Field(None, description="LAION's NSFW probability column (0..1)")
    pwatermark: str | None = Field(None, description="LAION's watermark probability column (0..1)")
    width: str | None = Field(None, description="image width in pixels, as listed (before download)")
    height: str | None = Field(None, description="image height in pixels, as listed")
    language: str | None = Field(None, description="language tag of the caption (e.g. LAION-multi's LANGUAGE)")
    sha256: str | None = Field(None, description="expected sha256 of the image bytes; mismatches are dropped")
    extra: list[str] = Field(
        default_factory=list, description="further columns carried into the raw shards' JSON (e.g. boxes)"
    )


class UrlFilters(ConfigModel):
    """Filters on a URL list's own columns, applied before any download. ``None`` disables one."""

    max_punsafe: float | None = Field(None, ge=0, le=1, description="drop rows whose punsafe is above this")
    max_pwatermark: float | None = Field(None, ge=0, le=1, description="drop rows whose pwatermark is above")
    min_width: int | None = Field(None, ge=0, description="pixels, from the listed width")
    min_height: int | None = Field(None, ge=0, description="pixels, from the listed height")
    min_caption_chars: int | None = Field(None, ge=0, description="characters, after stripping whitespace")
    max_caption_chars: int | None = Field(None, ge=1, description="characters, after stripping whitespace")
    languages: list[str] | None = Field(None, description="keep rows whose language tag is one of these")

    @model_validator(mode="after")
    def _caption_bounds(self) -> UrlFilters:
        lo, hi = self.min_caption_chars, self.max_caption_chars
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"min_caption_chars ({lo}) is larger than max_caption_chars ({hi})")
        return self

    def required_columns(self) -> dict[str, str]:
        """Which ``Columns`` attribute each enabled filter reads."""
        needs = {
            "max_punsafe": "punsafe",
            "max_pwatermark": "pwatermark",
            "min_width": "width",
            "min_height": "height",
            "min_caption_chars": "caption",
            "max_caption_chars": "caption",
            "languages": "language",
        }
        return {name: column for name, column in needs.items() if getattr(self, name) is not None}


class OcrSource(ConfigModel):
    """Run OCR on this source's images to build an OCR corpus (Wukong-OCR, LaionCOCO-OCR)."""

    language: str = Field(description="language code of the text to read, e.g. 'zh' or 'en'")


class Source(ConfigModel):
    """One dataset of the mixture."""

    name: str = Field(description="unique id; also the folder name under <root>/<stage>/")
    kind: str = Field(description="how it is laid out: a kind of the registry (tasks.kinds)")
    task: str = Field(description="the task its samples serve; a key of `tasks`")
    language: str = Field(
        description="language code of its annotations ('en', 'zh'); 'auto' = per sample, from its script"
    )
    locations: list[str] = Field(
        default_factory=list, description="files, globs or URIs (local or s3://...) holding the source"
    )
    image_root: str | None = Field(
        None, description="folder the annotation files' image paths are relative to (coco, *_jsonl kinds)"
    )
    image_path_strip: int = Field(
        0, ge=0, description="leading parts of each annotated image path to drop before joining it to "
        "image_root (like tar's --strip-components): Objects365 v2 names 'images/v1/patch8/x.jpg' what its "
        "archives unpack as 'patch8/x.jpg', so 2 there",
    )
    images_from: str | None = Field(None, description="reuse another source's downloaded images")
    columns: Columns = Field(default_factory=Columns)
    filters: UrlFilters = Field(default_factory=UrlFilters)
    weight: float = Field(1.0, description="relative weight among the sources of the same task")
    min_kept_share: float | None = Field(
        None, ge=0, le=1, description="this source's floor on kept records (None: mixture.min_kept_share); "
        "0 lets it lose everything, with a warning",
    )
    translate_to: list[str] = Field(
        default_factory=list, description="language codes its English annotations are translated into"
    )
    keep_original: bool = Field(True, description="also put the untranslated samples into the mixture")
    ocr: OcrSource | None = None
    obtain: str | None = Field(None, description="where a user gets the files named in `locations`")
    preset: str | None = Field(None, description="published kind: the dataset's reading, by name (tasks.published)")
    format: dict[str, Any] = Field(
        default_factory=dict, description="published kind: reader, field paths and conversation settings, "
        "over the preset's (checked by the kind; tasks.published.mapping.Format)",
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lower-case letters, digits, '_' or '-' (it names folders)")
        return value

    @field_validator("weight")
    @classmethod
    def _positive_weight(cls, value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            raise ValueError("must be a finite number above 0")
        return value

    @model_validator(mode="after")
    def _adds_something(self) -> Source:
        if not self.keep_original and not self.translate_to:
            raise ValueError("keep_original is false but translate_to is empty: the source would add nothing")
        return self
