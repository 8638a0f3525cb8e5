"""The ``length`` of an InternVL annotation line: what the official loader sorts by for ``group_by_length``.

InternVL's fine-tuning loader (``LazySupervisedDataset`` with ``group_by_length``) reads a line's
``length`` when it has one; otherwise it tokenizes the line's turns joined by ``"\\n"`` at start-up
and adds ``num_image_token * (max_dynamic_patch + use_thumbnail)``, for every line, whatever its
images. The export writes the length instead, per sample:

- text: the tokens of the turns' values joined by ``"\\n"`` (placeholders included), counted by
  the tokenizer the user names (``tokenizer``: a local Hugging Face tokenizer folder, loaded as
  the loader loads it), or, with none, **estimated**: one token per CJK character (Han, kana,
  Hangul), one per ``chars_per_token`` other characters (rounded up), plus one for the BOS token;
- images: ``image_tokens_per_tile`` (256 for InternVL 1.5/2.x at 448 px) per tile of each image's
  planned grid (:func:`pipelines.tiles.tile_count`, the trainer's planning), the thumbnail
  included; a sample's images share the tile budget as the loader shares it,
  ``max(1, max_dynamic_patch // images)`` each. A text-only sample has no image tokens.
"""

from __future__ import annotations

import math

import regex
from pydantic import Field

from pipelines._imports import require
from pipelines._model import ConfigModel
from pipelines.tiles import tile_count

_CJK = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")


class LengthSettings(ConfigModel):
    """How a line's ``length`` is counted (see the module docstring)."""

    tokenizer: str | None = Field(
        None, description="a local tokenizer folder (InternLM2's, Qwen2's...) to count text tokens exactly; "
        "none: estimate them"
    )
    chars_per_token: float = Field(4.0, gt=0, description="the estimate's characters per token outside CJK")
    image_tokens_per_tile: int = Field(256, ge=1, description="tokens of one 448x448 tile (InternVL: 256)")
    min_dynamic_patch: int = Field(1, ge=1, description="fewest tiles of an image")
    use_thumbnail: bool = Field(True, description="a thumbnail tile is added when an image has several")


class LineLength:
    """Counts lines' lengths; built where it runs (the tokenizer is loaded once, not shipped)."""

    def __init__(self, settings: LengthSettings):
        self.settings = settings
        self._tokenizer = None
        if settings.tokenizer is not None:
            transformers = require("transformers", "train")
            try:
                self._tokenizer = transformers.AutoTokenizer.from_pretrained(
                    settings.tokenizer, trust_remote_code=True
                )
            except (OSError, ValueError) as err:
                raise ValueError(f"tokenizer {settings.tokenizer!r} cannot be loaded: {err}") from err

    def text_tokens(self, conversations: list[dict]) -> int:
        text = "\n".join(turn["value"] for turn in conversations)
        if self._tokenizer is not None:
            return len(self._tokenizer(text, padding=False, truncation=False)["input_ids"])
        cjk = len(_CJK.findall(text))
        return 1 + cjk + math.ceil((len(text) - cjk) / self.settings.chars_per_token)

    def image_tokens(self, sizes: list[tuple[int, int]], max_dynamic_patch: int) -> int:
        if not sizes:
            return 0
        most = max(1, max_dynamic_patch // len(sizes))
        least = min(self.settings.min_dynamic_patch, most)
        tiles = sum(tile_count(w, h, least, most, self.settings.use_thumbnail) for w, h in sizes)
        return tiles * self.settings.image_tokens_per_tile

    def __call__(self, conversations: list[dict], sizes: list[tuple[int, int]], max_dynamic_patch: int) -> int:
        return self.text_tokens(conversations) + self.image_tokens(sizes, max_dynamic_patch)
