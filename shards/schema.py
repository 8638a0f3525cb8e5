"""The JSON of one sample in the shards, and its encoding.

``<key>.json`` = ``{"id", "source", "task", "language", "width", "height", "conversations",
"meta"}``; ``conversations`` is the public InternVL annotation format (alternating human/gpt turns,
one ``<image>`` placeholder per image; a single image's opens the first turn as ``<image>\\n``).
The images are members ``<key>.jpg`` (or ``png``/``webp``) for the first, ``<key>.1.jpg``,
``<key>.2.png``, ... for further ones; a text-only sample has none. ``width``/``height`` are the
first image's (0 for a text-only sample). ``meta`` has the same keys in every sample, so Arrow
readers (``datasets``, ``ray.data``) infer one schema for the whole mixture:

- ``source_key``: the sample's key in its source;
- ``url``: where the image was downloaded from ("" for local files);
- ``image_sha256``: sha256 of the (first) image member's bytes; for several images or none, the
  duplicate-removal key over all of them or over the conversation;
- ``images``: one ``{"member", "width", "height", "sha256"}`` per image, in placeholder order;
- ``repeat``: 0 for a sample's first use in the mixture, k for its k-th repeat;
- ``original_language`` / ``original_text``: for a translated sample, the language and answer
  text it was translated from (``original_text`` is "" when the sample is not a translation).
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Turn(_Strict):
    speaker: Literal["human", "gpt"] = Field(alias="from")
    value: str


class ImageEntry(_Strict):
    member: str = Field(pattern=r"^(?:[1-9][0-9]*\.)?(?:jpg|png|webp)$")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class SampleMeta(_Strict):
    source_key: str
    url: str
    image_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    images: list[ImageEntry]
    repeat: int = Field(ge=0)
    original_language: str
    original_text: str


class SampleRecord(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    source: str
    task: str
    language: str
    width: int = Field(ge=0)
    height: int = Field(ge=0)
    conversations: list[Turn] = Field(min_length=2)
    meta: SampleMeta

    @model_validator(mode="after")
    def _conversation_shape(self) -> SampleRecord:
        turns = self.conversations
        if len(turns) % 2 or any(t.speaker != ("human", "gpt")[i % 2] for i, t in enumerate(turns)):
            raise ValueError("conversations must alternate human, gpt, ... and end with gpt")
        images = self.meta.images
        if sum(t.value.count("<image>") for t in turns) != len(images):
            raise ValueError(f"{len(images)} images need as many '<image>' placeholders")
        if len(images) == 1 and not turns[0].value.startswith("<image>\n"):
            raise ValueError("the first human turn of a single-image sample must start with '<image>\\n'")
        first = (images[0].width, images[0].height) if images else (0, 0)
        if (self.width, self.height) != first:
            raise ValueError(f"width/height {self.width}x{self.height} are not the first image's {first}")
        return self


def image_member(index: int, image_format: str) -> str:
    """The tar member extension of a sample's ``index``-th image: ``jpg``, then ``1.png``, ``2.jpg``..."""
    return image_format if index == 0 else f"{index}.{image_format}"


def encode_sample(row: dict, sample_id: str, repeat: int) -> bytes:
    """The ``.json`` member of a task-table row, compact and in a fixed key order."""
    images = row["images"]
    first = images[0] if images else {"width": 0, "height": 0}
    record = {
        "id": sample_id,
        "source": row["source"],
        "task": row["task"],
        "language": row["language"],
        "width": first["width"],
        "height": first["height"],
        "conversations": [{"from": t["from"], "value": t["value"]} for t in row["conversations"]],
        "meta": {
            "source_key": row["key"],
            "url": row["url"] or "",
            "image_sha256": row["image_sha256"],
            "images": [{"member": image_member(i, image["format"]), "width": image["width"],
                        "height": image["height"], "sha256": image["sha256"]} for i, image in enumerate(images)],
            "repeat": int(repeat),
            "original_language": row["original_language"] or row["language"],
            "original_text": row["original_text"] or "",
        },
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def check_sample(data: bytes) -> SampleRecord:
    """Parse and validate a ``.json`` member; raises ``pydantic.ValidationError``."""
    return SampleRecord.model_validate_json(data)
